import Foundation

/// Parts B and C of the notes: q_n = N(m_φ(y_n), diag(exp(ℓ_φ(y_n)))) from an encoder.
///
/// Glue of three choices made once, when the engine is made:
/// - the guide: the encoder (linear or MLP);
/// - the gradient route (``EncoderGradient``): the exact objective from the moments, the
///   one-pass reparameterised kernel, or per point for any encoder and estimator;
/// - the schedule and its stepper: `joint` (part C, the VAE) moves (θ, φ) together by one Adam
///   step or one quasi-Newton iteration; `amortized` (part B, variational EM) takes K encoder
///   steps (Adam, or BFGS2 iterations) with θ held, then one θ step.
final class EncoderEngine: InferenceEngine {
    let name: String
    let data: Dataset
    let options: FitOptions
    let rng: RandomSource
    /// The Monte Carlo draws' own stream (see ``monteCarloStream(from:)``).
    let draws: RandomSource
    private(set) var model: LinearGaussianModel
    private var encoder: AmortizedEncoder
    private let parameterization: ModelParameterization
    private let gradient: EncoderGradient
    /// Set at the end of `init` (its solvers capture the engine).
    private var schedule = Schedule.jointAdam
    private var encoderOptimizer: Adam
    private var modelOptimizer: Adam
    private var jointOptimizer: Adam
    private var iteration = 0
    private let batchSize: Int
    private var order: [Int]
    private var cursor: Int
    private var batch: Batch
    private let fullBatch: Batch
    private var evaluations = 0

    /// How θ's and φ's steps are paired: together (joint, part C) or K encoder steps with θ
    /// held, then a θ step (amortized, part B). The strategy says which.
    enum Coupling {
        case joint
        case alternating
    }

    /// What one step does.
    private enum Schedule {
        /// joint: one iteration of a quasi-Newton solver on (θ, φ), φ in `coordinates` when given.
        case jointQuasiNewton(QuasiNewton, coordinates: WhitenedEncoderCoordinates?)
        /// amortized: BFGS2 iterations on φ with θ held, then θ in closed form.
        case alternatingQuasiNewton(BFGSMinimizer)
        /// amortized: L-BFGS iterations on φ with θ held, then θ in closed form; with θ held for
        /// the whole run, one minimisation that keeps its curvature pairs from step to step.
        case alternatingLimitedMemory(LBFGSMinimizer)
        /// joint: one Adam step on (θ, φ).
        case jointAdam
        /// amortized: Adam steps on φ with θ held, then a θ step.
        case alternatingAdam
    }

    /// The moments of the exact full-batch objective of a linear encoder, when that is the route.
    private var moments: LinearEncoderMoments? {
        if case let .moments(m) = gradient { return m }
        return nil
    }

    init(data: Dataset, initial: LinearGaussianModel, options: FitOptions, rng: RandomSource, coupling: Coupling) throws {
        name = options.strategy.name
        self.data = data
        self.options = options
        self.rng = rng
        draws = monteCarloStream(from: rng)
        model = initial
        encoder = options.encoder.make(data: data, latent: options.latent, hidden: options.hidden, rank: options.rank ?? 1, using: rng)
        let quasiNewton = options.resolvedOptimizer != .adam
        parameterization = ModelParameterization(data: data, latent: options.latent, constraints: options.constraints,
                                                 units: quasiNewton && coupling == .joint ? .common : .standard)
        let lr = options.resolvedLearningRate, schedule = options.resolvedSchedule
        // K encoder steps per iteration: the encoder's step size decays per iteration, like θ's.
        encoderOptimizer = Adam(count: encoder.parameters.count, learningRate: lr, schedule: schedule.stretched(by: options.encoderSteps))
        modelOptimizer = Adam(count: parameterization.count, learningRate: lr, schedule: schedule)
        jointOptimizer = Adam(count: parameterization.count + encoder.parameters.count, learningRate: lr, schedule: schedule)
        batchSize = options.batch ?? data.count
        order = Array(0..<data.count)
        cursor = data.count
        fullBatch = Batch(data)
        batch = batchSize == data.count ? fullBatch : Batch(capacity: batchSize, dimension: data.dimension, mean: data.mean)
        gradient = options.resolvedObjective == .iwae
            ? .importanceWeighted(options.resolvedGradient == .dreg ? .dreg : .iwae, particles: options.resolvedParticles,
                                  encoder: encoder)
            : .fastest(for: options.resolvedGradient, kl: options.kl, samples: options.samples,
                       encoder: encoder, data: data, batchSize: batchSize)
        guard quasiNewton else {
            self.schedule = coupling == .joint ? .jointAdam : .alternatingAdam
            return
        }
        // The options were checked: a quasi-Newton solver gets the exact objective on the full batch.
        let thetaCount = parameterization.count, phiCount = encoder.parameters.count
        if coupling == .joint {
            // Whitening needs S's eigenvectors: skipped for wide data (D > N), where S is never formed.
            let whitening = data.prefersCovariance
                ? (encoder as? LinearEncoder).flatMap { try? WhitenedEncoderCoordinates(data: data, encoder: $0) } : nil
            let objective: BFGSMinimizer.Objective = { [unowned self] x, g in
                let theta = parameterization.unpack(Array(x[..<thetaCount]))
                let u = Array(x[thetaCount...])
                let r = exactObjective(model: theta, encoderParameters: whitening?.parameters(u) ?? u)
                let gPhi = whitening?.pullback(r.encoder) ?? r.encoder
                for i in 0..<thetaCount { g[i] = -r.model[i] }
                for i in 0..<phiCount { g[thetaCount + i] = -gPhi[i] }
                return -r.value
            }
            let solver: QuasiNewton = options.resolvedOptimizer == .lbfgs
                ? .limitedMemory(LBFGSMinimizer(dimension: thetaCount + phiCount, objective: objective))
                : .gsl(try BFGSMinimizer(dimension: thetaCount + phiCount, objective: objective))
            self.schedule = .jointQuasiNewton(solver, coordinates: whitening)
        } else {
            let objective: BFGSMinimizer.Objective = { [unowned self] x, g in
                let r = exactObjective(model: model, encoderParameters: Array(x))
                for i in 0..<phiCount { g[i] = -r.encoder[i] }
                return -r.value
            }
            self.schedule = options.resolvedOptimizer == .lbfgs
                ? .alternatingLimitedMemory(LBFGSMinimizer(dimension: phiCount, objective: objective))
                : .alternatingQuasiNewton(try BFGSMinimizer(dimension: phiCount, objective: objective))
        }
    }

    /// The exact average ELBO of q_φ at θ on all of the data, with its gradients with respect to
    /// the flat θ coordinates and φ (−∞ where it is not finite, so the line searches back off).
    private func exactObjective(model theta: LinearGaussianModel, encoderParameters: [Double]) -> (value: Double, model: [Double], encoder: [Double]) {
        evaluations += 1
        let r: (value: Double, model: ModelGradient, encoder: [Double])
        if let moments {
            let e = moments.evaluate(model: theta, encoder: encoderParameters)
            r = (e.value, e.model, e.encoder)
        } else {
            var enc = encoder
            enc.parameters = encoderParameters
            r = EncoderGradient.exactELBO(batch: fullBatch, model: theta, encoder: enc)
        }
        return (r.value.isFinite ? r.value : -.infinity, parameterization.pullback(r.model, at: theta), r.encoder)
    }

    func posteriors() throws -> GaussianPosteriors {
        let out = encoder.forward(fullBatch)
        return try meanFieldPosteriors(means: out.means, logVariances: out.logVariances, engine: name, iteration: iteration,
                                       what: "encoder", remedy: "lower the learning rate")
    }

    /// The M-step given the encoder's q, from the moments where the encoder is linear.
    private func closedFormModel() throws -> LinearGaussianModel {
        if let moments { return try moments.maximizingModel(encoder: encoder.parameters, constraints: options.constraints) }
        return try LinearGaussianModel.maximizingELBO(data: data, q: try posteriors(), constraints: options.constraints)
    }

    /// The next minibatch (a fresh permutation each epoch), or all of the data.
    private func nextBatch() -> Batch {
        if batchSize == data.count { return fullBatch }
        if cursor + batchSize > order.count {
            // Fisher–Yates with the run's generator.
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.index(below: i + 1)) }
            cursor = 0
        }
        batch.gather(from: data, rows: order[cursor..<(cursor + batchSize)])
        cursor += batchSize
        return batch
    }

    func step() throws -> StepWork {
        iteration += 1
        let work: StepWork
        switch schedule {
        case let .jointQuasiNewton(solver, coordinates): work = jointQuasiNewtonStep(solver, coordinates)
        case let .alternatingQuasiNewton(solver): work = try alternatingQuasiNewtonStep(solver)
        case let .alternatingLimitedMemory(solver): work = try alternatingLimitedMemoryStep(solver)
        case .jointAdam: work = jointAdamStep()
        case .alternatingAdam: work = try alternatingAdamStep()
        }
        if !encoder.parameters.allSatisfy({ $0.isFinite }) {
            throw NumericalFault(engine: name, iteration: iteration, quantity: "encoder weights", detail: "are not finite (lower the learning rate)")
        }
        try checkModel(model, engine: name, iteration: iteration)
        return work
    }

    /// The share of the data one batch is.
    private var fraction: Double { Double(batchSize) / Double(data.count) }

    private func jointQuasiNewtonStep(_ solver: QuasiNewton, _ coordinates: WhitenedEncoderCoordinates?) -> StepWork {
        let before = evaluations
        if iteration == 1 {
            var x = parameterization.pack(model)
            x.append(contentsOf: coordinates?.coordinates(encoder.parameters) ?? encoder.parameters)
            solver.begin(at: x, initialStep: 0.01)
        }
        let status = solver.iterate()
        let x = solver.point
        let split = parameterization.count
        model = parameterization.unpack(Array(x[..<split]))
        let u = Array(x[split...])
        encoder.parameters = coordinates?.parameters(u) ?? u
        return StepWork(dataPasses: Double(evaluations - before), gradientEvaluations: evaluations - before,
                        solverStatus: status, solverCoversObjective: true)
    }

    private func alternatingQuasiNewtonStep(_ solver: BFGSMinimizer) throws -> StepWork {
        let before = evaluations
        var phi = encoder.parameters   // the objective reads `encoder`: no inout access to it meanwhile
        let status = solver.minimize(&phi, maxIterations: max(1, options.encoderSteps), gradientTolerance: 1e-10, initialStep: 0.01).status
        encoder.parameters = phi
        return try alternatingModelStep(evaluationsBefore: before, encoderStatus: status)
    }

    private func alternatingLimitedMemoryStep(_ solver: LBFGSMinimizer) throws -> StepWork {
        let before = evaluations
        // A new θ is a new objective: its old curvature pairs no longer apply.
        if iteration == 1 || options.theta == nil { solver.begin(at: encoder.parameters, initialStep: 0.01) }
        var status = SolverStatus.progressing
        for _ in 0..<max(1, options.encoderSteps) {
            status = solver.iterate()
            if status != .progressing { break }
        }
        encoder.parameters = solver.point
        return try alternatingModelStep(evaluationsBefore: before, encoderStatus: status)
    }

    /// After a quasi-Newton encoder step: θ in closed form, or, with θ held, nothing (the encoder's
    /// iterations were the whole step, over the whole objective).
    private func alternatingModelStep(evaluationsBefore before: Int, encoderStatus status: SolverStatus) throws -> StepWork {
        guard options.theta == nil else {
            return StepWork(dataPasses: Double(evaluations - before), gradientEvaluations: evaluations - before,
                            solverStatus: status, solverCoversObjective: true)
        }
        model = try closedFormModel()
        return StepWork(dataPasses: Double(evaluations - before) + 1, gradientEvaluations: evaluations - before, solverStatus: status)
    }

    private func jointAdamStep() -> StepWork {
        let (gTheta, gPhi) = gradient.gradient(model: model, encoder: encoder, batch: nextBatch, rng: draws)
        var x = parameterization.pack(model)
        let split = x.count
        x.append(contentsOf: encoder.parameters)
        var grad = parameterization.pullback(gTheta, at: model)
        grad.append(contentsOf: gPhi)
        jointOptimizer.step(&x, gradient: grad)
        model = parameterization.unpack(Array(x[..<split]))
        encoder.parameters = Array(x[split...])
        return StepWork(dataPasses: fraction, gradientEvaluations: 1)
    }

    private func alternatingAdamStep() throws -> StepWork {
        var work = StepWork(dataPasses: 0, gradientEvaluations: 0)
        for _ in 0..<max(1, options.encoderSteps) {
            // θ's half of the gradient is left unused: θ is held during the encoder steps.
            let grad = gradient.gradient(model: model, encoder: encoder, batch: nextBatch, rng: draws).encoder
            encoderOptimizer.step(&encoder.parameters, gradient: grad)
            work.dataPasses += fraction
            work.gradientEvaluations += 1
        }
        switch options.mStep {
        case _ where options.theta != nil:
            break   // θ held: the encoder steps are the whole iteration
        case .closedForm:
            model = try closedFormModel()
            work.dataPasses += 1
        case .gradient:
            let g: ModelGradient
            if case .importanceWeighted = gradient {
                // θ climbs L_K along its pathwise gradient, like the encoder.
                g = gradient.gradient(model: model, encoder: encoder, batch: nextBatch, rng: draws).model
            } else {
                let b = nextBatch()
                let out = encoder.forward(b)
                g = ELBOGradient.meanField(batch: b, model: model, means: out.means, logVariances: out.logVariances,
                                           estimator: options.resolvedGradient, kl: options.kl, samples: options.samples, rng: draws).model
            }
            var x = parameterization.pack(model)
            modelOptimizer.step(&x, gradient: parameterization.pullback(g, at: model))
            model = parameterization.unpack(x)
            work.dataPasses += fraction
            work.gradientEvaluations += 1
        }
        return work
    }
}

/// The joint strategy's quasi-Newton solvers, advanced one iteration per engine step.
private enum QuasiNewton {
    case gsl(BFGSMinimizer)
    case limitedMemory(LBFGSMinimizer)

    func begin(at x: [Double], initialStep: Double) {
        switch self {
        case let .gsl(s): s.begin(at: x, initialStep: initialStep)
        case let .limitedMemory(s): s.begin(at: x, initialStep: initialStep)
        }
    }

    func iterate() -> SolverStatus {
        switch self {
        case let .gsl(s): return s.iterate()
        case let .limitedMemory(s): return s.iterate()
        }
    }

    var point: [Double] {
        switch self {
        case let .gsl(s): return s.point
        case let .limitedMemory(s): return s.point
        }
    }
}

