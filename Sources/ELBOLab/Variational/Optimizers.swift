import CGSL

/// A first-order optimiser that *ascends* an objective over a flat parameter vector.
public protocol GradientAscent: Sendable {
    /// Moves `parameters` one step along `gradient` (the gradient of the objective to maximise).
    mutating func step(_ parameters: inout [Double], gradient: [Double])
}

/// How the step size changes with the step count t = 1, 2, ….
public enum StepSchedule: Equatable, Sendable, Codable {
    /// α_t = α.
    case constant
    /// α_t = α / (1 + t/τ)^κ (Robbins–Monro for κ ∈ (½, 1]; κ = ½ is a common compromise).
    case decay(halfLife: Double, power: Double)

    /// The same schedule for an optimiser that takes `k` steps per iteration, so that it decays
    /// per iteration rather than per step.
    public func stretched(by k: Int) -> StepSchedule {
        switch self {
        case .constant: return .constant
        case let .decay(tau, kappa): return .decay(halfLife: tau * Double(max(1, k)), power: kappa)
        }
    }

    func factor(_ t: Int) -> Double {
        switch self {
        case .constant: return 1
        case let .decay(tau, kappa): return pow(1 + Double(t) / tau, -kappa)
        }
    }
}

/// Adam (Kingma & Ba 2015) for ascent, with bias-corrected moments and an optional schedule.
public struct Adam: GradientAscent {
    /// Base step size α.
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    public var schedule: StepSchedule
    private var m: [Double]
    private var v: [Double]
    /// Steps taken so far.
    public private(set) var t = 0

    public init(count: Int, learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8, schedule: StepSchedule = .constant) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule = schedule
        m = [Double](repeating: 0, count: count)
        v = [Double](repeating: 0, count: count)
    }

    public mutating func step(_ parameters: inout [Double], gradient: [Double]) {
        precondition(parameters.count == m.count && gradient.count == m.count)
        t += 1
        let c1 = 1 - pow(beta1, Double(t)), c2 = 1 - pow(beta2, Double(t))
        let alpha = learningRate * schedule.factor(t) * c2.squareRoot() / c1
        let b1 = beta1, b2 = beta2, eps = epsilon * c2.squareRoot()
        m.withUnsafeMutableBufferPointer { mp in
            v.withUnsafeMutableBufferPointer { vp in
                parameters.withUnsafeMutableBufferPointer { p in
                    gradient.withUnsafeBufferPointer { g in
                        for i in 0..<p.count {
                            mp[i] = b1 * mp[i] + (1 - b1) * g[i]
                            vp[i] = b2 * vp[i] + (1 - b2) * g[i] * g[i]
                            p[i] += alpha * mp[i] / (vp[i].squareRoot() + eps)
                        }
                    }
                }
            }
        }
    }
}

/// Plain gradient ascent, `x ← x + α_t ∇f`.
public struct PlainGradientAscent: GradientAscent {
    public var learningRate: Double
    public var schedule: StepSchedule
    public private(set) var t = 0

    public init(learningRate: Double, schedule: StepSchedule = .constant) {
        self.learningRate = learningRate
        self.schedule = schedule
    }

    public mutating func step(_ parameters: inout [Double], gradient: [Double]) {
        t += 1
        let a = learningRate * schedule.factor(t)
        for i in parameters.indices { parameters[i] += a * gradient[i] }
    }
}

/// Minimises a smooth function with GSL's `vector_bfgs2` (a quasi-Newton method with a
/// Moré–Thuente line search). The objective gives its value and gradient at a point.
///
/// One minimiser is made per thread and reused for many problems of the same size (one per
/// data point in the per-datapoint E-step), so nothing is allocated per problem: the caller
/// changes what the objective reads between calls to ``minimize(_:maxIterations:gradientTolerance:initialStep:lineTolerance:)``.
public final class BFGSMinimizer {
    /// Value and gradient at `x`: returns f(x) and writes ∇f(x) into the buffer.
    public typealias Objective = (_ x: UnsafeBufferPointer<Double>, _ gradient: UnsafeMutableBufferPointer<Double>) -> Double

    private let dimension: Int
    private let state: UnsafeMutablePointer<gsl_multimin_fdfminimizer>
    private let start: UnsafeMutablePointer<gsl_vector>
    private let context: Context
    private var function: gsl_multimin_function_fdf

    private final class Context {
        let objective: Objective
        let n: Int
        let scratch: UnsafeMutableBufferPointer<Double>
        init(_ objective: @escaping Objective, _ n: Int) {
            self.objective = objective
            self.n = n
            scratch = .allocate(capacity: n)
            scratch.initialize(repeating: 0)
        }
        deinit { scratch.deallocate() }
    }

    /// A minimiser of `objective` in `dimension` variables.
    public init(dimension: Int, objective: @escaping Objective) throws {
        GSLRuntime.ensure()
        guard dimension > 0, let s = gsl_multimin_fdfminimizer_alloc(elbolab_multimin_bfgs2(), dimension),
              let v = gsl_vector_alloc(dimension) else {
            throw GSLError(status: Int32(GSL_ENOMEM), context: "allocating a BFGS minimiser in \(dimension) dimensions")
        }
        self.dimension = dimension
        state = s
        start = v
        context = Context(objective, dimension)
        // The callbacks are @convention(c): the context travels through `params`.
        function = gsl_multimin_function_fdf(
            f: { v, params in
                let c = Unmanaged<Context>.fromOpaque(params!).takeUnretainedValue()
                return c.objective(UnsafeBufferPointer(start: v!.pointee.data, count: c.n), c.scratch)
            },
            df: { v, params, g in
                let c = Unmanaged<Context>.fromOpaque(params!).takeUnretainedValue()
                _ = c.objective(UnsafeBufferPointer(start: v!.pointee.data, count: c.n),
                                UnsafeMutableBufferPointer(start: g!.pointee.data, count: c.n))
            },
            fdf: { v, params, f, g in
                let c = Unmanaged<Context>.fromOpaque(params!).takeUnretainedValue()
                f!.pointee = c.objective(UnsafeBufferPointer(start: v!.pointee.data, count: c.n),
                                         UnsafeMutableBufferPointer(start: g!.pointee.data, count: c.n))
            },
            n: dimension, params: Unmanaged.passUnretained(context).toOpaque())
    }

    deinit {
        gsl_multimin_fdfminimizer_free(state)
        gsl_vector_free(start)
    }

    /// Minimises from `x` (overwritten with the result) for at most `maxIterations`, stopping
    /// when ‖∇f‖ < `gradientTolerance`. Returns the iterations taken.
    @discardableResult
    public func minimize(_ x: UnsafeMutableBufferPointer<Double>, maxIterations: Int, gradientTolerance: Double,
                         initialStep: Double = 0.1, lineTolerance: Double = 0.1) -> Int {
        precondition(x.count == dimension)
        for i in 0..<dimension { start.pointee.data[i * start.pointee.stride] = x[i] }
        guard gsl_multimin_fdfminimizer_set(state, &function, start, initialStep, lineTolerance) == Int32(GSL_SUCCESS) else { return 0 }
        var iterations = 0
        if gsl_multimin_test_gradient(state.pointee.gradient, gradientTolerance) != Int32(GSL_SUCCESS) {
            while iterations < maxIterations {
                iterations += 1
                if gsl_multimin_fdfminimizer_iterate(state) != Int32(GSL_SUCCESS) { break }   // no further progress
                if gsl_multimin_test_gradient(state.pointee.gradient, gradientTolerance) == Int32(GSL_SUCCESS) { break }
            }
        }
        let best = state.pointee.x!
        for i in 0..<dimension { x[i] = best.pointee.data[i * best.pointee.stride] }
        return iterations
    }

    /// Starts a minimisation at `x` that ``iterate()`` then advances one step at a time,
    /// keeping the quasi-Newton curvature between steps.
    public func begin(at x: [Double], initialStep: Double = 0.1, lineTolerance: Double = 0.1) {
        precondition(x.count == dimension)
        for i in 0..<dimension { start.pointee.data[i * start.pointee.stride] = x[i] }
        running = gsl_multimin_fdfminimizer_set(state, &function, start, initialStep, lineTolerance) == Int32(GSL_SUCCESS)
    }

    private var running = false

    /// One BFGS iteration of the minimisation ``begin(at:initialStep:lineTolerance:)`` started.
    /// Returns false when it can make no further progress (at a minimum to rounding).
    public func iterate() -> Bool {
        guard running else { return false }
        running = gsl_multimin_fdfminimizer_iterate(state) == Int32(GSL_SUCCESS)
        return running
    }

    /// The current point of the running minimisation.
    public var point: [Double] {
        let x = state.pointee.x!
        return (0..<dimension).map { x.pointee.data[$0 * x.pointee.stride] }
    }

    /// Minimises from the array `x` (overwritten).
    @discardableResult
    public func minimize(_ x: inout [Double], maxIterations: Int, gradientTolerance: Double,
                         initialStep: Double = 0.1, lineTolerance: Double = 0.1) -> Int {
        x.withUnsafeMutableBufferPointer {
            minimize($0, maxIterations: maxIterations, gradientTolerance: gradientTolerance,
                     initialStep: initialStep, lineTolerance: lineTolerance)
        }
    }
}
