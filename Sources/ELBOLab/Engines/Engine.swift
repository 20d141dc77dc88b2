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

    /// The status of the quasi-Newton solver the step ran, nil where it ran none.
    public var solverStatus: SolverStatus?
    /// Whether that solver minimises the whole objective the run climbs ((θ, φ) together, or
    /// φ with θ held): then its ``/ELBOLabNumerics/SolverStatus/converged`` or
    /// ``/ELBOLabNumerics/SolverStatus/stalled`` means no further step can change anything, and
    /// the run stops.
    public var solverCoversObjective: Bool
    /// For per-point BFGS E-steps, how many points' minimisations ended in each status.
    public var pointStatusCounts: SolverStatusCounts?

    /// The work of one step: data passes and gradient evaluations, and the status of its solver, if any.
    public init(dataPasses: Double, gradientEvaluations: Int, solverStatus: SolverStatus? = nil,
                solverCoversObjective: Bool = false, pointStatusCounts: SolverStatusCounts? = nil) {
        self.dataPasses = dataPasses
        self.gradientEvaluations = gradientEvaluations
        self.solverStatus = solverStatus
        self.solverCoversObjective = solverCoversObjective
        self.pointStatusCounts = pointStatusCounts
    }

    /// Whether the run can stop: a solver over the whole objective can make no further progress.
    var finishesRun: Bool {
        solverCoversObjective && (solverStatus == .converged || solverStatus == .stalled)
    }
}

/// An inference strategy as a stepper: it owns θ and its variational parameters and knows
/// how to take one step. It does not score itself; the ``/ELBOLabVariational/Scorer`` does, from outside.
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
///
/// - Throws: ``/ELBOLabNumerics/InputError`` when the options do not hold together (``FitOptions/validate(given:)``)
///   or do not fit the data.
public func makeEngine(_ options: FitOptions, data: Dataset) throws -> InferenceEngine {
    try makeEngine(options, data: data, maximumLikelihood: nil)
}

/// ``makeEngine(_:data:)`` reusing the closed-form fit when the caller has it already.
func makeEngine(_ options: FitOptions, data: Dataset, maximumLikelihood: MaximumLikelihoodFit?) throws -> InferenceEngine {
    try options.validate()
    try data.validate(latent: options.latent, noiseFixed: options.constraints.noiseVariance != nil)
    if let b = options.batch, b > data.count {
        throw InputError("--batch \(b) is out of range: it must be in 1…\(data.count) (the number of rows)")
    }
    return try buildEngine(options, data: data, maximumLikelihood: maximumLikelihood)
}

/// The engine of checked options.
private func buildEngine(_ options: FitOptions, data: Dataset, maximumLikelihood: MaximumLikelihoodFit?) throws -> InferenceEngine {
    if let power = options.averaging {
        var plain = options
        plain.averaging = nil
        // The step-size decay that averaging calls for, which the plain options would not resolve to.
        plain.decay = options.decay ?? options.defaultDecay
        return AveragedEngine(try buildEngine(plain, data: data, maximumLikelihood: nil), power: power)
    }
    let rng = RandomSource(seed: options.seed)
    // Drawn first, from the same stream, for every strategy: curves start from one point.
    var initial = LinearGaussianModel.initial(for: data, latent: options.latent, constraints: options.constraints, using: rng)
    if let theta = options.theta {
        initial = try theta.model(for: data, latent: options.latent, constraints: options.constraints)
    }
    return try options.strategy.makeEngine(EngineInputs(data: data, initial: initial, options: options, rng: rng,
                                                        maximumLikelihood: maximumLikelihood))
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

/// The mean-field q of means and log-variances (`N × J` each), checked: a variance that
/// collapsed to 0 or overflowed, or a mean that is not finite, is a ``NumericalFault`` naming
/// `what` ("encoder", "refined") and the remedy.
func meanFieldPosteriors(means: Matrix, logVariances: Matrix, engine: String, iteration: Int, what: String,
                         remedy: String) throws -> GaussianPosteriors {
    let v = logVariances.storage.map { exp($0) }
    if let bad = v.firstIndex(where: { !($0 > 0 && $0.isFinite) }) {
        throw NumericalFault(engine: engine, iteration: iteration, quantity: "\(what) variance",
                             detail: "of point \(bad / max(1, means.cols) + 1) is \(v[bad]) (log v = \(logVariances.storage[bad])): the variance collapsed or overflowed (\(remedy))")
    }
    if !means.isFinite {
        throw NumericalFault(engine: engine, iteration: iteration, quantity: "\(what) means", detail: "are not finite (\(remedy))")
    }
    return GaussianPosteriors(means: means, family: .diagonal, scales: Matrix(rows: means.rows, cols: means.cols, storage: v))
}

/// The closed-form MLE as an engine that has converged before its first step.
final class ClosedFormEngine: InferenceEngine {
    let name = Strategy.mle.name
    let model: LinearGaussianModel
    private let q: GaussianPosteriors

    init(data: Dataset, fit: MaximumLikelihoodFit) throws {
        model = fit.model
        q = try GaussianPosteriors.exactPosterior(of: fit.model, data: data)
    }

    func posteriors() throws -> GaussianPosteriors { q }

    func step() throws -> StepWork { StepWork(dataPasses: 0, gradientEvaluations: 0) }
}

/// Exact EM (§5): E-step q = p(z|y), M-step in closed form, in moment form on S.
final class ExactEMEngine: InferenceEngine {
    let name = Strategy.em.name
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
