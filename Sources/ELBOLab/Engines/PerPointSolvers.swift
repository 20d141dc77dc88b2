import Foundation

/// How per-datapoint VI's E-step moves every q_n towards its optimum at θ, with θ held.
protocol PerPointSolver: AnyObject {
    /// Updates `q` at `model`; returns the work done.
    func update(_ q: inout GaussianPosteriors, model: LinearGaussianModel) throws -> StepWork
}

/// θ's step given q, with q held.
protocol ModelStep: AnyObject {
    /// The next θ from `model` given `q`, and the work done.
    func update(_ model: LinearGaussianModel, q: GaussianPosteriors) throws -> (model: LinearGaussianModel, work: StepWork)
}

/// Every q_n at its optimum of §6, in closed form.
final class ClosedFormPerPoint: PerPointSolver {
    let data: Dataset
    let family: GaussianPosteriors.Family

    init(data: Dataset, family: GaussianPosteriors.Family) {
        self.data = data
        self.family = family
    }

    func update(_ q: inout GaussianPosteriors, model: LinearGaussianModel) throws -> StepWork {
        q = try GaussianPosteriors.optimal(family, model: model, data: data)
        return StepWork(dataPasses: 1, gradientEvaluations: 0)
    }
}

/// GSL BFGS2 on each point's exact negative ELBO (``PointProblem``), warm-started from the
/// current q_n, points split into fixed blocks across cores. Its gradient evaluations are the
/// mean iterations per point; its work carries how many points converged, stalled or hit the cap.
final class BFGSPerPoint: PerPointSolver {
    let data: Dataset
    let latent: Int
    let family: GaussianPosteriors.Family
    /// BFGS iterations per point per E-step.
    let iterations: Int

    init(data: Dataset, latent: Int, family: GaussianPosteriors.Family, iterations: Int) {
        self.data = data
        self.latent = latent
        self.family = family
        self.iterations = iterations
    }

    func update(_ q: inout GaussianPosteriors, model: LinearGaussianModel) throws -> StepWork {
        let j = latent, n = data.count
        let full = family == .full
        let dim = full ? j + j * (j + 1) / 2 : 2 * j
        let p = model.projections(of: data)          // Wᵀ(y_n − b), N × J
        let g = model.gram, s2 = model.noiseVariance
        let current = q
        let maxIterations = iterations
        let blocks = try blockedReduce(count: n, blockSize: 256) { range -> Result<(Matrix, Matrix, Int, SolverStatusCounts), Error> in
            Result {
                let problem = PointProblem(latent: j, full: full, gram: g, noiseVariance: s2)
                let minimizer = try BFGSMinimizer(dimension: dim, objective: problem.evaluate)
                var means = Matrix(rows: range.count, cols: j)
                var scales = Matrix(rows: range.count, cols: current.scales.cols)
                var x = [Double](repeating: 0, count: dim)
                var total = 0
                var counts = SolverStatusCounts()
                for (k, point) in range.enumerated() {
                    for c in 0..<j { problem.projection[c] = p[point, c] }
                    problem.encode(mean: current.means, scales: current.scales, row: current.isShared ? 0 : point, point: point, into: &x)
                    let result = minimizer.minimize(&x, maxIterations: maxIterations, gradientTolerance: 1e-9)
                    total += result.iterations
                    counts.add(result.status)
                    problem.decode(x, means: &means, scales: &scales, row: k)
                }
                return (means, scales, total, counts)
            }
        }.map { try $0.get() }
        var means = Matrix(rows: n, cols: j), scales = Matrix(rows: n, cols: current.scales.cols)
        var total = 0
        var counts = SolverStatusCounts()
        var offset = 0
        for (m, s, t, c) in blocks {
            for i in 0..<m.storage.count { means.storage[offset * j + i] = m.storage[i] }
            for i in 0..<s.storage.count { scales.storage[offset * s.cols + i] = s.storage[i] }
            offset += m.rows
            total += t
            counts.add(c)
        }
        q = GaussianPosteriors(means: means, family: family, scales: scales)
        return StepWork(dataPasses: 1, gradientEvaluations: total / max(n, 1), pointStatusCounts: counts)
    }
}

/// The E-step of the notes: `steps` Adam steps on every (m_n, log v_n) along reparameterised
/// gradients (``ELBOGradient/pointwiseReparameterized(projections:gram:noiseVariance:means:scales:kl:samples:rng:noise:gradMeans:gradLogVariances:)``),
/// the step size decaying per iteration, not per inner step. A diagonal q only.
final class AdamPerPoint: PerPointSolver {
    let latent: Int
    let data: Dataset
    let steps: Int
    let kl: KLEstimator
    let samples: Int
    /// The Monte Carlo draws' own stream (see ``monteCarloStream(from:)``).
    let draws: RandomSource
    /// Whether the vector kernels run here (``Kernels/usable``, read once).
    private let vectorKernels = Kernels.usable
    /// Adam, [m; log v] and its gradient (2NJ), the draws and √v (NJ), kept between steps so
    /// nothing is copied or allocated per step.
    private var state: (optimizer: Adam, values: [Double], gradient: [Double], noise: [Double], scales: [Double])?

    init(data: Dataset, options: FitOptions, draws: RandomSource) {
        self.data = data
        latent = options.latent
        steps = options.resolvedESteps
        kl = options.kl
        samples = options.samples
        self.draws = draws
        let size = data.count * options.latent
        // q starts at the prior: m = 0, log v = 0.
        state = (Adam(count: 2 * size, learningRate: options.resolvedLearningRate, schedule: options.resolvedSchedule.stretched(by: steps)),
                 [Double](repeating: 0, count: 2 * size), [Double](repeating: 0, count: 2 * size),
                 [Double](repeating: 0, count: size), [Double](repeating: 0, count: size))
    }

    func update(_ q: inout GaussianPosteriors, model: LinearGaussianModel) throws -> StepWork {
        guard var state else { return StepWork(dataPasses: 0, gradientEvaluations: 0) }
        // Hand the buffers over, so changing them below does not copy them (copy-on-write).
        self.state = nil
        let size = data.count * latent
        let projections = model.projections(of: data), gram = model.gram
        for _ in 0..<steps {
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
                                    kl: kl, samples: samples, rng: draws, noise: noise,
                                    gradMeans: UnsafeMutableBufferPointer(rebasing: g[0..<size]),
                                    gradLogVariances: UnsafeMutableBufferPointer(rebasing: g[size...]))
                            }
                        }
                    }
                }
            }
            state.optimizer.step(&state.values, gradient: state.gradient)
        }
        q.means.storage.replaceSubrange(0..<size, with: state.values[0..<size])
        state.values.withUnsafeBufferPointer { x in
            q.scales.storage.withUnsafeMutableBufferPointer { v in
                Kernels.exponentials(of: UnsafeBufferPointer(rebasing: x[size...]), scaledBy: 1, into: v, vector: vectorKernels)
            }
        }
        self.state = state
        return StepWork(dataPasses: Double(steps), gradientEvaluations: steps)
    }
}

/// θ at the maximiser of the ELBO given q, in closed form.
final class ClosedFormModelStep: ModelStep {
    let data: Dataset
    let constraints: ModelConstraints

    init(data: Dataset, constraints: ModelConstraints) {
        self.data = data
        self.constraints = constraints
    }

    func update(_ model: LinearGaussianModel, q: GaussianPosteriors) throws -> (model: LinearGaussianModel, work: StepWork) {
        (try LinearGaussianModel.maximizingELBO(data: data, q: q, constraints: constraints), StepWork(dataPasses: 1, gradientEvaluations: 0))
    }
}

/// One Adam step on θ along the exact gradient of the ELBO given q (``ELBOGradient/model(batch:model:locations:covarianceSum:)``),
/// at a constant step size.
final class GradientModelStep: ModelStep {
    let batch: Batch
    let parameterization: ModelParameterization
    private var optimizer: Adam

    init(data: Dataset, latent: Int, constraints: ModelConstraints, learningRate: Double) {
        batch = Batch(data)
        parameterization = ModelParameterization(data: data, latent: latent, constraints: constraints)
        optimizer = Adam(count: parameterization.count, learningRate: learningRate)
    }

    func update(_ model: LinearGaussianModel, q: GaussianPosteriors) throws -> (model: LinearGaussianModel, work: StepWork) {
        let g = ELBOGradient.model(batch: batch, model: model, locations: q.means, covarianceSum: q.covarianceSum())
        var x = parameterization.pack(model)
        optimizer.step(&x, gradient: parameterization.pullback(g, at: model))
        return (parameterization.unpack(x), StepWork(dataPasses: 1, gradientEvaluations: 1))
    }
}
