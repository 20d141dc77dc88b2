import Foundation

/// Part A of the notes, variational EM: every point owns q_n = N(m_n, S_n); an E-step
/// optimises each q_n with θ held, then an M-step updates θ with q held.
///
/// Glue of two choices made once, when the engine is made:
/// - the E-step solver (``PerPointSolver``): the optimum of §6 in closed form, GSL's BFGS2 per
///   point, or Adam on reparameterised one-sample gradients;
/// - the θ step (``ModelStep``): the maximiser in closed form, one Adam step along the exact
///   gradient, or none when θ is held.
/// With both in closed form and θ free, the two run as one step in moment form.
final class PerDatapointEngine: InferenceEngine {
    let name = Strategy.perDatapoint.name
    let data: Dataset
    let family: GaussianPosteriors.Family
    let constraints: ModelConstraints
    private(set) var model: LinearGaussianModel
    private var q: GaussianPosteriors
    private let schedule: Schedule
    private var iteration = 0

    /// What one step does.
    private enum Schedule {
        /// Variational EM in moment form (O(D²J)): the same iterates as the closed-form E- and
        /// M-steps, with parameter expansion when `expanded`.
        case momentForm(expanded: Bool)
        /// The E-step solver on every q_n, then θ's step (none: θ is held).
        case alternating(PerPointSolver, ModelStep?)
    }

    /// In moment form, the θ whose optimal q is the current q (q is formed only when asked
    /// for: the step itself runs on the sufficient statistics), and with parameter expansion
    /// the change of coordinates that carries that q to the new θ.
    private var eStep: (model: LinearGaussianModel, reduction: LatentReduction?)?

    init(data: Dataset, initial: LinearGaussianModel, options: FitOptions, rng: RandomSource) throws {
        self.data = data
        family = options.covariance
        constraints = options.constraints
        let draws = monteCarloStream(from: rng)
        model = initial
        let n = data.count, j = options.latent
        // q starts at the prior N(0, I) for every point, as the peers' AutoNormal guides do.
        let width = family == .diagonal ? j : j * j
        var scales = Matrix(rows: n, cols: width)
        for p in 0..<n { for k in 0..<j { scales[p, family == .diagonal ? k : k * j + k] = 1 } }
        q = GaussianPosteriors(means: Matrix(rows: n, cols: j), family: family, scales: scales)
        if options.isVariationalEM && options.theta == nil {
            schedule = .momentForm(expanded: options.resolvedAcceleration == .px)
            return
        }
        let solver: PerPointSolver
        switch options.eSolver {
        case .closedForm: solver = ClosedFormPerPoint(data: data, family: family)
        case .bfgs: solver = BFGSPerPoint(data: data, latent: j, family: family, iterations: options.resolvedESteps)
        case .adam: solver = AdamPerPoint(data: data, options: options, draws: draws)
        }
        let mStep: ModelStep?
        switch options.mStep {
        case _ where options.theta != nil: mStep = nil
        case .closedForm: mStep = ClosedFormModelStep(data: data, constraints: constraints)
        case .gradient: mStep = GradientModelStep(data: data, latent: j, constraints: constraints, learningRate: options.resolvedLearningRate)
        }
        schedule = .alternating(solver, mStep)
    }

    func posteriors() throws -> GaussianPosteriors {
        guard let eStep else { return q }
        let optimal = try GaussianPosteriors.optimal(family, model: eStep.model, data: data)
        return eStep.reduction?.apply(to: optimal) ?? optimal
    }

    func step() throws -> StepWork {
        iteration += 1
        var work: StepWork
        switch schedule {
        case let .momentForm(expanded):
            let next = family == .full
                ? try model.emStepAndReduction(on: data, constraints: constraints, expanded: expanded)
                : try model.meanFieldEMStepAndReduction(on: data, constraints: constraints, expanded: expanded)
            eStep = (model, next.reduction)
            model = next.model
            work = StepWork(dataPasses: 2, gradientEvaluations: 0)
        case let .alternating(solver, mStep):
            work = try solver.update(&q, model: model)
            guard let mStep else { return work }   // θ held: the E-step is the whole iteration
            let next = try mStep.update(model, q: q)
            model = next.model
            work.dataPasses += next.work.dataPasses
            work.gradientEvaluations += next.work.gradientEvaluations
        }
        try checkModel(model, engine: name, iteration: iteration)
        return work
    }
}
