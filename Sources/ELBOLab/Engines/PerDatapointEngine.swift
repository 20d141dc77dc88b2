import Foundation

/// Part A of the notes, variational EM: every point owns q_n = N(m_n, S_n); an E-step
/// optimises each q_n with θ held, then an M-step updates θ with q held.
final class PerDatapointEngine: InferenceEngine {
    let name = Strategy.perDatapoint.rawValue
    let data: Dataset
    let options: FitOptions
    let rng: RandomSource
    /// The Monte Carlo draws' own stream (see ``monteCarloStream(from:)``).
    let draws: RandomSource
    private(set) var model: LinearGaussianModel
    private var q: GaussianPosteriors
    private let parameterization: ModelParameterization
    private var modelOptimizer: Adam
    private var localOptimizer: Adam?
    /// The Adam E-step's buffers: [m; log v] and its gradient (2NJ), the draws and √v (NJ).
    private var adamState: (values: [Double], gradient: [Double], noise: [Double], scales: [Double])?
    /// Whether the vector kernels run here (``Kernels/usable``, read once).
    private let vectorKernels = Kernels.usable
    private var iteration = 0

    init(data: Dataset, initial: LinearGaussianModel, options: FitOptions, rng: RandomSource) throws {
        self.data = data
        self.options = options
        self.rng = rng
        draws = monteCarloStream(from: rng)
        model = initial
        let n = data.count, j = options.latent
        // q starts at the prior N(0, I) for every point, as the peers' AutoNormal guides do.
        let width = options.covariance == .diagonal ? j : j * j
        var scales = Matrix(rows: n, cols: width)
        for p in 0..<n { for k in 0..<j { scales[p, options.covariance == .diagonal ? k : k * j + k] = 1 } }
        q = GaussianPosteriors(means: Matrix(rows: n, cols: j), family: options.covariance, scales: scales)
        parameterization = ModelParameterization(data: data, latent: j, constraints: options.constraints)
        modelOptimizer = Adam(count: parameterization.count, learningRate: options.resolvedLearningRate)
        if options.eSolver == .adam {
            // e-steps Adam steps per iteration: decay per iteration, not per inner step.
            localOptimizer = Adam(count: 2 * n * j, learningRate: options.resolvedLearningRate,
                                  schedule: options.resolvedSchedule.stretched(by: options.resolvedESteps))
            // q starts at the prior: m = 0, log v = 0.
            adamState = ([Double](repeating: 0, count: 2 * n * j), [Double](repeating: 0, count: 2 * n * j),
                         [Double](repeating: 0, count: n * j), [Double](repeating: 0, count: n * j))
        }
    }

    /// With both steps in closed form, the θ whose optimal q is the current q (q is formed
    /// only when asked for: the step itself runs on the sufficient statistics), and with
    /// parameter expansion the change of coordinates that carries that q to the new θ.
    private var eStep: (model: LinearGaussianModel, reduction: LatentReduction?)?

    func posteriors() throws -> GaussianPosteriors {
        guard let eStep else { return q }
        let optimal = try GaussianPosteriors.optimal(options.covariance, model: eStep.model, data: data)
        return eStep.reduction?.apply(to: optimal) ?? optimal
    }

    func step() throws -> StepWork {
        iteration += 1
        if options.eSolver == .closedForm && options.mStep == .closedForm && options.theta == nil {
            // The same iterates as the explicit E- and M-steps below, in moment form (O(D²J)).
            let expanded = options.resolvedAcceleration == .px
            let next = options.covariance == .full
                ? try model.emStepAndReduction(on: data, constraints: options.constraints, expanded: expanded)
                : try model.meanFieldEMStepAndReduction(on: data, constraints: options.constraints, expanded: expanded)
            eStep = (model, next.reduction)
            model = next.model
            try checkModel(model, engine: name, iteration: iteration)
            return StepWork(dataPasses: 2, gradientEvaluations: 0)
        }
        var work = StepWork(dataPasses: 0, gradientEvaluations: 0)
        switch options.eSolver {
        case .closedForm:
            q = try GaussianPosteriors.optimal(options.covariance, model: model, data: data)
            eStep = nil
            work.dataPasses += 1
        case .bfgs:
            let iterations = try bfgsEStep()
            work.dataPasses += 1
            work.gradientEvaluations += iterations
        case .adam:
            adamEStep()
            work.dataPasses += Double(options.resolvedESteps)
            work.gradientEvaluations += options.resolvedESteps
        }
        switch options.mStep {
        case _ where options.theta != nil:
            // θ held: no M-step.
            return work
        case .closedForm:
            model = try LinearGaussianModel.maximizingELBO(data: data, q: q, constraints: options.constraints)
        case .gradient:
            let g = ELBOGradient.model(batch: Batch(data), model: model, locations: q.means, covarianceSum: q.covarianceSum())
            var x = parameterization.pack(model)
            modelOptimizer.step(&x, gradient: parameterization.pullback(g, at: model))
            model = parameterization.unpack(x)
            work.gradientEvaluations += 1
        }
        work.dataPasses += 1
        try checkModel(model, engine: name, iteration: iteration)
        return work
    }

    /// The E-step of the notes: Adam on (m_n, log v_n) with reparameterised one-sample gradients.
    /// `adamState` holds [m; log v] (2NJ) between steps, so nothing is copied or allocated per step.
    private func adamEStep() {
        guard var optimizer = localOptimizer, var state = adamState else { return }
        // Hand the buffers over, so changing them below does not copy them (copy-on-write).
        localOptimizer = nil
        adamState = nil
        let n = data.count, j = options.latent, size = n * j
        let projections = model.projections(of: data), gram = model.gram
        for _ in 0..<options.resolvedESteps {
            state.values.withUnsafeBufferPointer { x in
                state.scales.withUnsafeMutableBufferPointer { scales in
                    Kernels.exponentials(of: UnsafeBufferPointer(rebasing: x[size...]), scaledBy: 0.5, into: scales, vector: vectorKernels)
                }
                projections.storage.withUnsafeBufferPointer { p in
                    state.scales.withUnsafeBufferPointer { scales in
                        state.noise.withUnsafeMutableBufferPointer { noise in
                            state.gradient.withUnsafeMutableBufferPointer { g in
                                ELBOGradient.pointwiseReparameterized(
                                    projections: p, gram: gram, noiseVariance: model.noiseVariance,
                                    means: UnsafeBufferPointer(rebasing: x[0..<size]), scales: scales,
                                    kl: options.kl, samples: options.samples, rng: draws, noise: noise,
                                    gradMeans: UnsafeMutableBufferPointer(rebasing: g[0..<size]),
                                    gradLogVariances: UnsafeMutableBufferPointer(rebasing: g[size...]))
                            }
                        }
                    }
                }
            }
            optimizer.step(&state.values, gradient: state.gradient)
        }
        q.means.storage.replaceSubrange(0..<size, with: state.values[0..<size])
        state.values.withUnsafeBufferPointer { x in
            q.scales.storage.withUnsafeMutableBufferPointer { v in
                Kernels.exponentials(of: UnsafeBufferPointer(rebasing: x[size...]), scaledBy: 1, into: v, vector: vectorKernels)
            }
        }
        localOptimizer = optimizer
        adamState = state
    }

    /// GSL BFGS2 on each point's exact negative ELBO, warm-started from the current q_n,
    /// points split into fixed blocks across cores. Returns the mean iterations per point.
    private func bfgsEStep() throws -> Int {
        let j = options.latent, n = data.count
        let full = options.covariance == .full
        let dim = full ? j + j * (j + 1) / 2 : 2 * j
        let p = model.projections(of: data)          // Wᵀ(y_n − b), N × J
        let g = model.gram, s2 = model.noiseVariance
        let current = q
        let maxIterations = options.resolvedESteps
        let blocks = try blockedReduce(count: n, blockSize: 256) { range -> Result<(Matrix, Matrix, Int), Error> in
            Result {
                let problem = PointProblem(latent: j, full: full, gram: g, noiseVariance: s2)
                let minimizer = try BFGSMinimizer(dimension: dim, objective: problem.evaluate)
                var means = Matrix(rows: range.count, cols: j)
                var scales = Matrix(rows: range.count, cols: current.scales.cols)
                var x = [Double](repeating: 0, count: dim)
                var total = 0
                for (k, point) in range.enumerated() {
                    for c in 0..<j { problem.projection[c] = p[point, c] }
                    problem.encode(mean: current.means, scales: current.scales, row: current.isShared ? 0 : point, point: point, into: &x)
                    total += minimizer.minimize(&x, maxIterations: maxIterations, gradientTolerance: 1e-9)
                    problem.decode(x, means: &means, scales: &scales, row: k)
                }
                return (means, scales, total)
            }
        }.map { try $0.get() }
        var means = Matrix(rows: n, cols: j), scales = Matrix(rows: n, cols: current.scales.cols)
        var total = 0
        var offset = 0
        for (m, s, t) in blocks {
            for i in 0..<m.storage.count { means.storage[offset * j + i] = m.storage[i] }
            for i in 0..<s.storage.count { scales.storage[offset * s.cols + i] = s.storage[i] }
            offset += m.rows
            total += t
        }
        q = GaussianPosteriors(means: means, family: options.covariance, scales: scales)
        return total / max(n, 1)
    }
}
