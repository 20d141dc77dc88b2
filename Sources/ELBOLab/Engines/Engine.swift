#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The work one step did, for the comparable axes of a curve.
public struct StepWork: Sendable, Equatable {
    /// Sweeps over the data, in units of N point-visits (a minibatch of B counts B/N).
    public var dataPasses: Double
    /// Gradient evaluations over a batch (or, for BFGS E-steps, the mean iterations per point).
    public var gradientEvaluations: Int

    public init(dataPasses: Double, gradientEvaluations: Int) {
        self.dataPasses = dataPasses
        self.gradientEvaluations = gradientEvaluations
    }
}

/// An inference strategy as a stepper: it owns θ and its variational parameters and knows
/// how to take one step. It does not score itself; the ``Scorer`` does, from outside.
public protocol InferenceEngine: AnyObject {
    /// The strategy's name (`per-datapoint`, …), for messages.
    var name: String { get }
    /// The current θ.
    var model: LinearGaussianModel { get }
    /// The current q over all N points.
    func posteriors() throws -> GaussianPosteriors
    /// Takes one step.
    func step() throws -> StepWork
}

/// Builds the engine that `options` describe, starting from the seed's shared initial θ.
public func makeEngine(_ options: FitOptions, data: Dataset) throws -> InferenceEngine {
    try data.validate(latent: options.latent, noiseFixed: options.constraints.noiseVariance != nil)
    if let power = options.averaging {
        guard options.strategy != .mle && options.strategy != .em else {
            throw InputError("--averaging applies to per-datapoint, amortized and joint runs, not \(options.strategy.rawValue)")
        }
        guard power >= 0 && power.isFinite else { throw InputError("--averaging \(power) must be a non-negative number") }
        guard options.covariance == .diagonal else {
            throw InputError("--averaging works with a diagonal covariance only (drop --covariance full)")
        }
        var plain = options
        plain.averaging = nil
        // The step-size decay that averaging calls for, which the plain options would not resolve to.
        plain.decay = options.decay ?? options.defaultDecay
        return AveragedEngine(try makeEngine(plain, data: data), power: power)
    }
    let rng = RandomSource(seed: options.seed)
    // Drawn first, from the same stream, for every strategy: curves start from one point.
    var initial = LinearGaussianModel.initial(for: data, latent: options.latent, constraints: options.constraints, using: rng)
    if let theta = options.theta {
        try HeldTheta.check(options.strategy)
        initial = try theta.model(for: data, latent: options.latent, constraints: options.constraints)
    }
    switch options.resolvedAcceleration {
    case .none: break
    case .px where options.strategy == .em || options.isVariationalEM: break
    case .squarem where options.strategy == .em: break
    case let other:
        let scope = other == .px ? "em and per-datapoint with closed-form E- and M-steps" : "em only"
        throw InputError("--acceleration \(other.rawValue) applies to \(scope), not this \(options.strategy.rawValue) run")
    }
    switch options.strategy {
    case .mle:
        return ClosedFormEngine(data: data, options: options)
    case .em:
        return ExactEMEngine(data: data, initial: initial, constraints: options.constraints, acceleration: options.resolvedAcceleration,
                             holdsModel: options.theta != nil)
    case .perDatapoint:
        return try PerDatapointEngine(data: data, initial: initial, options: options, rng: rng)
    case .amortized, .joint:
        return try EncoderEngine(data: data, initial: initial, options: options, rng: rng)
    }
}

/// Checks θ after a step: finite W and b, s2 positive and finite.
func checkModel(_ model: LinearGaussianModel, engine: String, iteration: Int) throws {
    if !(model.noiseVariance.isFinite && model.noiseVariance > 0) {
        throw NumericalFault(engine: engine, iteration: iteration, quantity: "noise variance s2",
                             detail: "is \(model.noiseVariance): it must stay positive and finite (lower the learning rate)")
    }
    if !model.loadings.isFinite {
        throw NumericalFault(engine: engine, iteration: iteration, quantity: "loadings W", detail: "are not finite (lower the learning rate)")
    }
    if !model.offset.allSatisfy({ $0.isFinite }) {
        throw NumericalFault(engine: engine, iteration: iteration, quantity: "offset b", detail: "is not finite (lower the learning rate)")
    }
}

/// The closed-form MLE as an engine that has converged before its first step.
final class ClosedFormEngine: InferenceEngine {
    let name = Strategy.mle.rawValue
    let data: Dataset
    let options: FitOptions
    lazy var fit: Result<MaximumLikelihoodFit, Error> = Result {
        try LinearGaussianModel.maximumLikelihood(for: data, latent: options.latent, constraints: options.constraints)
    }

    init(data: Dataset, options: FitOptions) {
        self.data = data
        self.options = options
    }

    var model: LinearGaussianModel {
        // The fit was checked in `posteriors()` before the runner asks for the model.
        (try? fit.get().model) ?? LinearGaussianModel.initial(for: data, latent: options.latent, constraints: options.constraints, using: RandomSource(seed: options.seed))
    }

    func posteriors() throws -> GaussianPosteriors {
        try GaussianPosteriors.exactPosterior(of: try fit.get().model, data: data)
    }

    func step() throws -> StepWork { StepWork(dataPasses: 0, gradientEvaluations: 0) }
}

/// Exact EM (§5): E-step q = p(z|y), M-step in closed form, in moment form on S.
final class ExactEMEngine: InferenceEngine {
    let name = Strategy.em.rawValue
    let data: Dataset
    let constraints: ModelConstraints
    let acceleration: Acceleration
    /// θ held (`--theta`): a step is the E-step alone.
    let holdsModel: Bool
    private(set) var model: LinearGaussianModel

    init(data: Dataset, initial: LinearGaussianModel, constraints: ModelConstraints, acceleration: Acceleration = .none,
         holdsModel: Bool = false) {
        self.data = data
        self.constraints = constraints
        self.acceleration = acceleration
        self.holdsModel = holdsModel
        model = initial
    }

    func posteriors() throws -> GaussianPosteriors { try GaussianPosteriors.exactPosterior(of: model, data: data) }

    func step() throws -> StepWork {
        if holdsModel { return StepWork(dataPasses: 1, gradientEvaluations: 0) }
        guard acceleration == .squarem else {
            model = try model.emStep(on: data, constraints: constraints, expanded: acceleration == .px)
            return StepWork(dataPasses: 1, gradientEvaluations: 0)
        }
        return try squaremStep()
    }

    /// One SQUAREM cycle (Varadhan & Roland 2008, scheme S3) in the coordinates (W, b, log s2):
    /// θ₁ = F(θ₀), θ₂ = F(θ₁), r = θ₁ − θ₀, v = θ₂ − θ₁ − r, α = −‖r‖/‖v‖ (at most −1),
    /// θ′ = F(θ₀ − 2αr + α²v). θ′ is kept only when log p rises past θ₂'s, so the cycle never
    /// does worse than two EM steps and the log-likelihood never falls.
    private func squaremStep() throws -> StepWork {
        let start = model
        let first = try start.emStep(on: data, constraints: constraints)
        let second = try first.emStep(on: data, constraints: constraints)
        let x0 = Self.coordinates(start), x1 = Self.coordinates(first), x2 = Self.coordinates(second)
        let r = zip(x1, x0).map { $0 - $1 }
        let v = (0..<x0.count).map { x2[$0] - x1[$0] - r[$0] }
        let rNorm = r.reduce(0) { $0 + $1 * $1 }.squareRoot(), vNorm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        model = second
        guard vNorm > 0, rNorm.isFinite, vNorm.isFinite else { return StepWork(dataPasses: 2, gradientEvaluations: 0) }
        let alpha = min(-1, -rNorm / vNorm)
        let jump = (0..<x0.count).map { x0[$0] - 2 * alpha * r[$0] + alpha * alpha * v[$0] }
        guard jump.allSatisfy({ $0.isFinite }),
              let landed = try? Self.model(jump, like: start).emStep(on: data, constraints: constraints),
              let gained = try? landed.logLikelihood(of: data), gained.isFinite,
              gained > (try second.logLikelihood(of: data)) else {
            return StepWork(dataPasses: 5, gradientEvaluations: 0)
        }
        model = landed
        return StepWork(dataPasses: 5, gradientEvaluations: 0)
    }

    /// θ as one vector: W row by row, b, log s2 (so an extrapolated s2 stays positive).
    private static func coordinates(_ m: LinearGaussianModel) -> [Double] {
        m.loadings.storage + m.offset + [log(m.noiseVariance)]
    }

    private static func model(_ x: [Double], like m: LinearGaussianModel) -> LinearGaussianModel {
        let w = m.loadings.rows * m.loadings.cols, d = m.offset.count
        return LinearGaussianModel(loadings: Matrix(rows: m.loadings.rows, cols: m.loadings.cols, storage: Array(x[..<w])),
                                   offset: Array(x[w..<(w + d)]), noiseVariance: exp(x[w + d]))
    }
}

/// The stream a Monte Carlo engine draws its noise from: GSL's taus2 (L'Ecuyer's maximally
/// equidistributed combined Tausworthe generator, period 2⁸⁸), seeded from the run's MT19937
/// stream when the engine is made. The draws are most of the work of a Monte Carlo step, and a
/// taus2 word costs about half an MT19937 one here (`make bench`, section 5), so they come from
/// it; the run's seed still fixes every draw.
func monteCarloStream(from rng: RandomSource) -> RandomSource {
    RandomSource(seed: rng.childSeed(), generator: .taus2)
}
