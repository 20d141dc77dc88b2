import CGSL
import ELBOLabKernels

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
    /// Decay rate β₁ of the first-moment average.
    public var beta1: Double
    /// Decay rate β₂ of the second-moment average.
    public var beta2: Double
    /// ε, added to √v̂ in the step's denominator.
    public var epsilon: Double
    /// How α changes with the step count.
    public var schedule: StepSchedule
    private var m: [Double]
    private var v: [Double]
    /// Steps taken so far.
    public private(set) var t = 0
    /// Whether the vector kernel takes the step (``Kernels/usable`` when made; bit-identical).
    /// Internal and settable so that tests can run both paths.
    var vector = Kernels.usable

    /// Adam over `count` parameters, with zero moments.
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

    /// One Adam step along `gradient`, ascending.
    public mutating func step(_ parameters: inout [Double], gradient: [Double]) {
        precondition(parameters.count == m.count && gradient.count == m.count)
        t += 1
        let c1 = 1 - pow(beta1, Double(t)), c2 = 1 - pow(beta2, Double(t))
        let alpha = learningRate * schedule.factor(t) * c2.squareRoot() / c1
        let b1 = beta1, b2 = beta2, eps = epsilon * c2.squareRoot()
        if vector {
            m.withUnsafeMutableBufferPointer { mp in
                v.withUnsafeMutableBufferPointer { vp in
                    parameters.withUnsafeMutableBufferPointer { p in
                        gradient.withUnsafeBufferPointer { g in
                            adamUpdate(parameters: p, gradient: g, firstMoment: mp, secondMoment: vp,
                                       beta1: b1, beta2: b2, stepSize: alpha, epsilon: eps)
                        }
                    }
                }
            }
            return
        }
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
    /// Base step size α.
    public var learningRate: Double
    /// How α changes with the step count.
    public var schedule: StepSchedule
    /// Steps taken so far.
    public private(set) var t = 0

    /// Gradient ascent with base step `learningRate` on `schedule`.
    public init(learningRate: Double, schedule: StepSchedule = .constant) {
        self.learningRate = learningRate
        self.schedule = schedule
    }

    /// One step `x ← x + α_t ∇f`.
    public mutating func step(_ parameters: inout [Double], gradient: [Double]) {
        t += 1
        let a = learningRate * schedule.factor(t)
        for i in parameters.indices { parameters[i] += a * gradient[i] }
    }
}

/// Where a quasi-Newton minimisation (``BFGSMinimizer``, ``LBFGSMinimizer``) stands after an
/// iteration or a whole `minimize`: the "test" of a set/iterate/test loop, kept so that the
/// caller can tell why it stopped.
public enum SolverStatus: String, Sendable, Hashable, CaseIterable {
    /// The last iteration moved the point and no stopping test holds yet.
    case progressing
    /// The gradient test passed: ‖∇f‖ fell below the requested tolerance.
    case converged
    /// No further progress: the point is a minimum to rounding (no descent direction, or a
    /// predicted decrease below rounding of f), or the line search found no lower point.
    /// Iterating again changes nothing.
    case stalled
    /// The iteration cap was reached first.
    case iterationLimit = "iteration-limit"

    /// A one-line reading for summaries: the status and what it means.
    public var explanation: String {
        switch self {
        case .progressing: return "progressing: still lowering the objective"
        case .converged: return "converged: the gradient test passed"
        case .stalled: return "stalled: no further progress (a minimum to rounding)"
        case .iterationLimit: return "iteration-limit: the solver's iteration cap was reached"
        }
    }
}

/// How many minimisations (one per data point in a per-point E-step) ended in each status.
public struct SolverStatusCounts: Sendable, Equatable {
    /// Minimisations whose gradient test passed.
    public var converged = 0
    /// Minimisations that could make no further progress.
    public var stalled = 0
    /// Minimisations stopped by the iteration cap.
    public var iterationLimit = 0

    /// No minimisations counted.
    public init() {}

    /// Counts one minimisation that ended in `status` (a ``SolverStatus/progressing`` one counts as capped).
    public mutating func add(_ status: SolverStatus) {
        switch status {
        case .converged: converged += 1
        case .stalled: stalled += 1
        case .progressing, .iterationLimit: iterationLimit += 1
        }
    }

    /// Adds another set of counts.
    public mutating func add(_ other: SolverStatusCounts) {
        converged += other.converged
        stalled += other.stalled
        iterationLimit += other.iterationLimit
    }

    /// The number of minimisations counted.
    public var total: Int { converged + stalled + iterationLimit }
}

/// What a whole minimisation did: why it stopped and how many iterations it took.
public struct Minimization: Sendable, Equatable {
    /// Why it stopped: ``SolverStatus/converged``, ``SolverStatus/stalled`` or ``SolverStatus/iterationLimit``.
    public var status: SolverStatus
    /// Iterations taken.
    public var iterations: Int
}

/// Minimises a smooth function with GSL's `vector_bfgs2` (a quasi-Newton method with a
/// Moré–Thuente line search). The objective gives its value and gradient at a point.
///
/// One minimiser is made per thread and reused for many problems of the same size (one per
/// data point in the per-datapoint E-step), so nothing is allocated per problem: the caller
/// changes what the objective reads between calls to ``minimize(_:maxIterations:gradientTolerance:initialStep:lineTolerance:)-(UnsafeMutableBufferPointer<Double>,_,_,_,_)``.
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
    /// when ‖∇f‖ < `gradientTolerance` (``SolverStatus/converged``), when GSL reports no
    /// further progress (``SolverStatus/stalled``), or at the cap (``SolverStatus/iterationLimit``).
    public func minimize(_ x: UnsafeMutableBufferPointer<Double>, maxIterations: Int, gradientTolerance: Double,
                         initialStep: Double = 0.1, lineTolerance: Double = 0.1) -> Minimization {
        precondition(x.count == dimension)
        for i in 0..<dimension { start.pointee.data[i * start.pointee.stride] = x[i] }
        guard gsl_multimin_fdfminimizer_set(state, &function, start, initialStep, lineTolerance) == Int32(GSL_SUCCESS) else {
            return Minimization(status: .stalled, iterations: 0)
        }
        var iterations = 0
        var status = SolverStatus.iterationLimit
        if gsl_multimin_test_gradient(state.pointee.gradient, gradientTolerance) == Int32(GSL_SUCCESS) {
            status = .converged
        } else {
            while iterations < maxIterations {
                iterations += 1
                if gsl_multimin_fdfminimizer_iterate(state) != Int32(GSL_SUCCESS) { status = .stalled; break }
                if gsl_multimin_test_gradient(state.pointee.gradient, gradientTolerance) == Int32(GSL_SUCCESS) { status = .converged; break }
            }
        }
        let best = state.pointee.x!
        for i in 0..<dimension { x[i] = best.pointee.data[i * best.pointee.stride] }
        return Minimization(status: status, iterations: iterations)
    }

    /// Starts a minimisation at `x` that ``iterate()`` then advances one step at a time,
    /// keeping the quasi-Newton curvature between steps. Its gradient test is ‖∇f‖ <
    /// `gradientTolerance` (0: never, only a stall ends it) and its cap `maxIterations`.
    public func begin(at x: [Double], initialStep: Double = 0.1, lineTolerance: Double = 0.1,
                      gradientTolerance: Double = 0, maxIterations: Int = .max) {
        precondition(x.count == dimension)
        for i in 0..<dimension { start.pointee.data[i * start.pointee.stride] = x[i] }
        running = gsl_multimin_fdfminimizer_set(state, &function, start, initialStep, lineTolerance) == Int32(GSL_SUCCESS)
        stepTolerance = gradientTolerance
        stepCap = maxIterations
        iterations = 0
        status = running ? .progressing : .stalled
    }

    private var running = false
    private var stepTolerance = 0.0
    private var stepCap = Int.max
    /// Iterations since ``begin(at:initialStep:lineTolerance:gradientTolerance:maxIterations:)``.
    public private(set) var iterations = 0
    /// The status the last ``iterate()`` returned (``SolverStatus/stalled`` before any ``begin(at:initialStep:lineTolerance:gradientTolerance:maxIterations:)``).
    public private(set) var status = SolverStatus.stalled

    /// One BFGS iteration of the minimisation ``begin(at:initialStep:lineTolerance:gradientTolerance:maxIterations:)``
    /// started, then the tests. Once ``SolverStatus/stalled`` it stays so (further iterations
    /// would change nothing); after ``SolverStatus/converged`` or ``SolverStatus/iterationLimit``
    /// a further call iterates again.
    public func iterate() -> SolverStatus {
        guard running else { status = .stalled; return status }
        iterations += 1
        if gsl_multimin_fdfminimizer_iterate(state) != Int32(GSL_SUCCESS) {
            running = false
            status = .stalled
        } else if stepTolerance > 0 && gsl_multimin_test_gradient(state.pointee.gradient, stepTolerance) == Int32(GSL_SUCCESS) {
            status = .converged
        } else {
            status = iterations >= stepCap ? .iterationLimit : .progressing
        }
        return status
    }

    /// The current point of the running minimisation.
    public var point: [Double] {
        let x = state.pointee.x!
        return (0..<dimension).map { x.pointee.data[$0 * x.pointee.stride] }
    }

    /// Minimises from the array `x` (overwritten), as the buffer version does.
    public func minimize(_ x: inout [Double], maxIterations: Int, gradientTolerance: Double,
                         initialStep: Double = 0.1, lineTolerance: Double = 0.1) -> Minimization {
        x.withUnsafeMutableBufferPointer {
            minimize($0, maxIterations: maxIterations, gradientTolerance: gradientTolerance,
                     initialStep: initialStep, lineTolerance: lineTolerance)
        }
    }
}

/// Limited-memory BFGS (Nocedal 1980) for smooth minimisation, one iteration at a time.
///
/// The direction comes from the two-loop recursion over the last `memory` steps, scaled by
/// sᵀy/yᵀy of the newest pair; the step is the first of 1, then shorter steps by quadratic
/// interpolation, that satisfies Armijo's condition. Pairs with sᵀy ≤ 0 are skipped, so the
/// implied inverse Hessian stays positive definite. Unlike GSL's `vector_bfgs2` (which builds
/// each direction from the last step alone) it keeps curvature from many steps, so it needs
/// several times fewer evaluations on the joint ELBO.
public final class LBFGSMinimizer {
    /// f and ∇f at x (see ``BFGSMinimizer/Objective``).
    public typealias Objective = BFGSMinimizer.Objective

    /// Number of variables.
    public let dimension: Int
    /// Step pairs kept.
    public let memory: Int
    private let objective: Objective
    private var x: [Double], g: [Double], f = Double.infinity
    private var trialX: [Double], trialG: [Double], direction: [Double]
    private var steps: [[Double]] = [], changes: [[Double]] = [], curvatures: [Double] = []
    private var alphas: [Double]
    private var firstStep = 1.0
    private var running = false
    /// Objective evaluations so far.
    public private(set) var evaluations = 0

    /// A minimiser of `objective` in `dimension` variables keeping `memory` step pairs.
    public init(dimension: Int, memory: Int = 30, objective: @escaping Objective) {
        precondition(dimension > 0 && memory > 0)
        self.dimension = dimension
        self.memory = memory
        self.objective = objective
        x = [Double](repeating: 0, count: dimension)
        g = x
        trialX = x
        trialG = x
        direction = x
        alphas = [Double](repeating: 0, count: memory)
    }

    private func evaluate(_ point: [Double], into gradient: inout [Double]) -> Double {
        evaluations += 1
        return point.withUnsafeBufferPointer { p in gradient.withUnsafeMutableBufferPointer { objective(p, $0) } }
    }

    /// Starts at `start`; the first step has length `initialStep` along the steepest descent.
    /// The gradient test of ``iterate()`` is ‖∇f‖ < `gradientTolerance` (0: never, only a
    /// stall ends the minimisation) and its cap `maxIterations`.
    public func begin(at start: [Double], initialStep: Double, gradientTolerance: Double = 0, maxIterations: Int = .max) {
        precondition(start.count == dimension)
        x = start
        f = evaluate(x, into: &g)
        steps.removeAll()
        changes.removeAll()
        curvatures.removeAll()
        firstStep = initialStep
        running = f.isFinite
        tolerance = gradientTolerance
        cap = maxIterations
        iterations = 0
        status = running ? .progressing : .stalled
    }

    private var tolerance = 0.0
    private var cap = Int.max
    /// Iterations since ``begin(at:initialStep:gradientTolerance:maxIterations:)``.
    public private(set) var iterations = 0
    /// The status the last ``iterate()`` returned (``SolverStatus/stalled`` before any ``begin(at:initialStep:gradientTolerance:maxIterations:)``).
    public private(set) var status = SolverStatus.stalled

    /// Minimises from `x` (overwritten with the result): ``begin(at:initialStep:gradientTolerance:maxIterations:)``,
    /// then ``iterate()`` until it returns anything but ``SolverStatus/progressing``. A start
    /// that already passes the gradient test is ``SolverStatus/converged`` after 0 iterations.
    public func minimize(_ x: inout [Double], maxIterations: Int, gradientTolerance: Double, initialStep: Double = 0.1) -> Minimization {
        begin(at: x, initialStep: initialStep, gradientTolerance: gradientTolerance, maxIterations: maxIterations)
        var result = SolverStatus.progressing
        if !running {
            result = .stalled
        } else if dot(g, g).squareRoot() < gradientTolerance {
            result = .converged
        } else if maxIterations <= 0 {
            result = .iterationLimit
        }
        while result == .progressing { result = iterate() }
        x = point
        return Minimization(status: result, iterations: iterations)
    }

    /// The point reached.
    public var point: [Double] { x }
    /// The objective there.
    public var value: Double { f }

    /// −H∇f by the two-loop recursion into `direction`; plain steepest descent of length
    /// `firstStep` while no curvature is known.
    private func computeDirection() {
        let n = dimension, k = steps.count
        for i in 0..<n { direction[i] = -g[i] }
        if k == 0 {
            let norm = dot(g, g).squareRoot()
            for i in 0..<n { direction[i] *= firstStep / norm }
            return
        }
        for p in stride(from: k - 1, through: 0, by: -1) {
            let a = curvatures[p] * dot(steps[p], direction)
            alphas[p] = a
            changes[p].withUnsafeBufferPointer { y in for i in 0..<n { direction[i] -= a * y[i] } }
        }
        let gamma = 1 / (curvatures[k - 1] * dot(changes[k - 1], changes[k - 1]))
        for i in 0..<n { direction[i] *= gamma }
        for p in 0..<k {
            let b = curvatures[p] * dot(changes[p], direction)
            let a = alphas[p]
            steps[p].withUnsafeBufferPointer { s in for i in 0..<n { direction[i] += (a - b) * s[i] } }
        }
    }

    /// One iteration: a direction, a line search along it, the new step pair; then the tests.
    /// ``SolverStatus/stalled`` when no step lowers the objective (at a minimum to rounding, or
    /// the line search failed), and from then on until the next `begin`; after
    /// ``SolverStatus/converged`` or ``SolverStatus/iterationLimit`` a further call iterates again.
    public func iterate() -> SolverStatus {
        guard running else { status = .stalled; return status }
        iterations += 1
        status = advance() ? test() : .stalled
        if status == .stalled { running = false }
        return status
    }

    /// The gradient test, then the cap.
    private func test() -> SolverStatus {
        if tolerance > 0 && dot(g, g).squareRoot() < tolerance { return .converged }
        return iterations >= cap ? .iterationLimit : .progressing
    }

    /// The iteration itself; false when it could not move.
    private func advance() -> Bool {
        let n = dimension
        computeDirection()
        var slope = dot(g, direction)
        if !(slope < 0) {
            // Rounding made the direction useless: forget the curvature and descend.
            steps.removeAll(); changes.removeAll(); curvatures.removeAll()
            computeDirection()
            slope = dot(g, direction)
            guard slope < 0 else { running = false; return false }
        }
        // A predicted decrease below rounding of f: at the minimum, nothing left to gain.
        if -slope <= 1e-15 * max(1, abs(f)) { running = false; return false }
        var alpha = 1.0
        var accepted = false
        for _ in 0..<40 {
            for i in 0..<n { trialX[i] = x[i] + alpha * direction[i] }
            let trial = evaluate(trialX, into: &trialG)
            if trial.isFinite && trial <= f + 1e-4 * alpha * slope {
                f = trial
                accepted = true
                break
            }
            // The minimiser of the quadratic through f, the slope and the trial, kept in [α/10, α/2].
            let next = trial.isFinite ? -slope * alpha * alpha / (2 * (trial - f - slope * alpha)) : 0.1 * alpha
            alpha = min(max(next, 0.1 * alpha), 0.5 * alpha)
        }
        guard accepted else { running = false; return false }
        var s = [Double](repeating: 0, count: n), y = s
        for i in 0..<n { s[i] = trialX[i] - x[i]; y[i] = trialG[i] - g[i] }
        let sy = dot(s, y)
        if sy > 1e-12 * (dot(s, s) * dot(y, y)).squareRoot() {
            if steps.count == memory { steps.removeFirst(); changes.removeFirst(); curvatures.removeFirst() }
            steps.append(s); changes.append(y); curvatures.append(1 / sy)
        }
        swap(&x, &trialX)
        swap(&g, &trialG)
        return true
    }
}
