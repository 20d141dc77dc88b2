import CGSL

/// Parts B and C of the notes: q_n = N(m_φ(y_n), diag(exp(ℓ_φ(y_n)))) from an encoder.
///
/// - `amortized` (part B, variational EM): K encoder steps with θ held, then one θ step.
/// - `joint` (part C, the VAE): one Adam step on (θ, φ) together.
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
    private var encoderOptimizer: Adam
    private var modelOptimizer: Adam
    private var jointOptimizer: Adam
    private var iteration = 0
    private let batchSize: Int
    private var order: [Int]
    private var cursor: Int
    private var batch: Batch
    private let fullBatch: Batch
    private var jointSolver: QuasiNewton?
    /// The coordinates the joint quasi-Newton solver sees for φ (whitened inputs), nil: φ itself.
    private var jointCoordinates: WhitenedEncoderCoordinates?
    private var encoderSolver: BFGSMinimizer?
    private var evaluations = 0
    /// The exact objective in moment form (linear encoder, exact gradient, full batch), else nil.
    private let moments: LinearEncoderMoments?
    /// The fused reparameterised gradient (linear encoder, one or more draws, analytic KL or on the
    /// full batch the path derivative), else nil.
    private let fusedReparameterized: LinearEncoderReparameterized?

    init(data: Dataset, initial: LinearGaussianModel, options: FitOptions, rng: RandomSource) throws {
        precondition(options.strategy == .amortized || options.strategy == .joint)
        if let b = options.batch, b < 1 || b > data.count {
            throw InputError("--batch \(b) is out of range: it must be in 1…\(data.count) (the number of rows)")
        }
        if options.samples < 1 { throw InputError("--samples \(options.samples) must be at least 1") }
        if options.encoder == .mlp && options.hidden < 1 { throw InputError("--hidden \(options.hidden) must be at least 1") }
        name = options.strategy.rawValue
        self.data = data
        self.options = options
        self.rng = rng
        draws = monteCarloStream(from: rng)
        model = initial
        switch options.encoder {
        case .linear: encoder = LinearEncoder(data: data, latent: options.latent)
        case .mlp: encoder = MLPEncoder(data: data, latent: options.latent, hidden: options.hidden, using: rng)
        }
        let quasiNewtonJoint = options.strategy == .joint && options.resolvedOptimizer != .adam
        parameterization = ModelParameterization(data: data, latent: options.latent, constraints: options.constraints,
                                                 units: quasiNewtonJoint ? .common : .standard)
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
        if options.resolvedGradient == .exact, batchSize == data.count, let linear = encoder as? LinearEncoder {
            moments = LinearEncoderMoments(data: data, encoder: linear)
        } else {
            moments = nil
        }
        fusedReparameterized = options.resolvedGradient == .reparam && encoder is LinearEncoder
            ? LinearEncoderReparameterized(data: data, kl: options.kl).flatMap { [batchSize] in $0.accepts(batchSize: batchSize) ? $0 : nil }
            : nil
        if options.resolvedOptimizer != .adam {
            guard options.resolvedGradient == .exact else {
                throw InputError("--optimizer \(options.resolvedOptimizer.rawValue) needs the exact objective: use --gradient exact (Monte Carlo gradients need adam)")
            }
            guard options.batch == nil || options.batch == data.count else {
                throw InputError("--optimizer \(options.resolvedOptimizer.rawValue) works on the full batch: drop --batch")
            }
            let thetaCount = parameterization.count, phiCount = encoder.parameters.count
            if options.strategy == .joint {
                // Whitening needs S's eigenvectors: skipped for wide data (D > N), where S is never formed.
                let whitening = data.prefersCovariance
                    ? (encoder as? LinearEncoder).flatMap { try? WhitenedEncoderCoordinates(data: data, encoder: $0) } : nil
                jointCoordinates = whitening
                let objective: BFGSMinimizer.Objective = { [unowned self] x, g in
                    let theta = parameterization.unpack(Array(x[..<thetaCount]))
                    let u = Array(x[thetaCount...])
                    let r = exactObjective(model: theta, encoderParameters: whitening?.parameters(u) ?? u)
                    let gPhi = whitening?.pullback(r.encoder) ?? r.encoder
                    for i in 0..<thetaCount { g[i] = -r.model[i] }
                    for i in 0..<phiCount { g[thetaCount + i] = -gPhi[i] }
                    return -r.value
                }
                jointSolver = options.resolvedOptimizer == .lbfgs
                    ? .limitedMemory(LBFGSMinimizer(dimension: thetaCount + phiCount, objective: objective))
                    : .gsl(try BFGSMinimizer(dimension: thetaCount + phiCount, objective: objective))
            } else {
                encoderSolver = try BFGSMinimizer(dimension: phiCount) { [unowned self] x, g in
                    let r = exactObjective(model: model, encoderParameters: Array(x))
                    for i in 0..<phiCount { g[i] = -r.encoder[i] }
                    return -r.value
                }
            }
        }
    }

    /// The exact average ELBO (1/N) Σ ELBO_n of q_φ at θ, and its gradients with respect to
    /// the flat θ coordinates and φ, on all of the data.
    private func exactObjective(model theta: LinearGaussianModel, encoderParameters: [Double]) -> (value: Double, model: [Double], encoder: [Double]) {
        evaluations += 1
        if let moments {
            let r = moments.evaluate(model: theta, encoder: encoderParameters)
            return (r.value.isFinite ? r.value : -.infinity, parameterization.pullback(r.model, at: theta), r.encoder)
        }
        var enc = encoder
        enc.parameters = encoderParameters
        let out = enc.forward(fullBatch)
        let n = data.count, j = options.latent
        let v = out.logVariances.storage.map { exp($0) }
        var vsum = Matrix(rows: j, cols: j)
        var vTotal = 0.0, logVTotal = 0.0, meanSquares = 0.0
        for p in 0..<n {
            for k in 0..<j {
                let i = p * j + k
                vsum[k, k] += v[i]
                vTotal += v[i]
                logVTotal += out.logVariances.storage[i]
                meanSquares += out.means.storage[i] * out.means.storage[i]
            }
        }
        let (gTheta, residual) = ELBOGradient.modelAndResidual(batch: fullBatch, model: theta, locations: out.means, covarianceSum: vsum)
        let s2 = theta.noiseVariance, gram = theta.gram
        let count = Double(n), d = Double(data.dimension)
        let value = -0.5 * d * log(2 * Double.pi * s2)
            - (residual + gram.frobeniusDot(vsum)) / (2 * s2 * count)
            - 0.5 * (vTotal + meanSquares - count * Double(j) - logVTotal) / count
        var gm = ELBOGradient.latent(batch: fullBatch, model: theta, locations: out.means)
        var gl = Matrix(rows: n, cols: j)
        for p in 0..<n {
            for k in 0..<j {
                let i = p * j + k
                gm.storage[i] -= out.means.storage[i]
                gl.storage[i] = v[i] * (-gram[k, k] / (2 * s2) - 0.5) + 0.5
            }
        }
        let gPhi = enc.backward(fullBatch, output: out, gradMeans: gm, gradLogVariances: gl, scale: 1 / count)
        return (value.isFinite ? value : -.infinity, parameterization.pullback(gTheta, at: theta), gPhi)
    }

    func posteriors() throws -> GaussianPosteriors {
        let out = encoder.forward(fullBatch)
        let v = out.logVariances.storage.map { exp($0) }
        if let bad = v.firstIndex(where: { !($0 > 0 && $0.isFinite) }) {
            throw NumericalFault(engine: name, iteration: iteration, quantity: "encoder variance",
                                 detail: "of point \(bad / options.latent + 1) is \(v[bad]) (log v = \(out.logVariances.storage[bad])): the variance collapsed or overflowed (lower the learning rate)")
        }
        if !out.means.isFinite {
            throw NumericalFault(engine: name, iteration: iteration, quantity: "encoder means", detail: "are not finite (lower the learning rate)")
        }
        return GaussianPosteriors(means: out.means, family: .diagonal, scales: Matrix(rows: data.count, cols: options.latent, storage: v))
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

    private func estimate(_ b: Batch) -> (MeanFieldGradientEstimate, EncoderOutput) {
        let out = encoder.forward(b)
        let g = ELBOGradient.meanField(batch: b, model: model, means: out.means, logVariances: out.logVariances,
                                       estimator: options.resolvedGradient, kl: options.kl, samples: options.samples, rng: draws)
        return (g, out)
    }

    func step() throws -> StepWork {
        iteration += 1
        let fraction = Double(batchSize) / Double(data.count)
        var work = StepWork(dataPasses: 0, gradientEvaluations: 0)
        if let solver = jointSolver {
            let before = evaluations
            if iteration == 1 {
                var x = parameterization.pack(model)
                x.append(contentsOf: jointCoordinates?.coordinates(encoder.parameters) ?? encoder.parameters)
                solver.begin(at: x, initialStep: 0.01)
            }
            solver.iterate()
            let x = solver.point
            let split = parameterization.count
            model = parameterization.unpack(Array(x[..<split]))
            let u = Array(x[split...])
            encoder.parameters = jointCoordinates?.parameters(u) ?? u
            work = StepWork(dataPasses: Double(evaluations - before), gradientEvaluations: evaluations - before)
        } else if let solver = encoderSolver {
            let before = evaluations
            var phi = encoder.parameters   // the objective reads `encoder`: no inout access to it meanwhile
            solver.minimize(&phi, maxIterations: max(1, options.encoderSteps), gradientTolerance: 1e-10, initialStep: 0.01)
            encoder.parameters = phi
            work.dataPasses += Double(evaluations - before)
            work.gradientEvaluations += evaluations - before
            if options.theta == nil {
                model = try closedFormModel()
                work.dataPasses += 1
            }
        } else if let moments, options.strategy == .joint {
            let r = moments.evaluate(model: model, encoder: encoder.parameters)
            var x = parameterization.pack(model)
            let split = x.count
            x.append(contentsOf: encoder.parameters)
            var grad = parameterization.pullback(r.model, at: model)
            grad.append(contentsOf: r.encoder)
            jointOptimizer.step(&x, gradient: grad)
            model = parameterization.unpack(Array(x[..<split]))
            encoder.parameters = Array(x[split...])
            work = StepWork(dataPasses: 1, gradientEvaluations: 1)
        } else if options.strategy == .joint {
            let b = nextBatch()
            let gTheta: ModelGradient, gPhi: [Double]
            if let fused = fusedReparameterized, let linear = encoder as? LinearEncoder {
                (gTheta, gPhi) = fused.gradient(batch: b, model: model, encoder: linear, samples: options.samples, rng: draws)
            } else {
                let (g, out) = estimate(b)
                gTheta = g.model
                gPhi = encoder.backward(b, output: out, gradMeans: g.means, gradLogVariances: g.logVariances, scale: 1 / Double(b.count))
            }
            var x = parameterization.pack(model)
            let split = x.count
            x.append(contentsOf: encoder.parameters)
            var grad = parameterization.pullback(gTheta, at: model)
            grad.append(contentsOf: gPhi)
            jointOptimizer.step(&x, gradient: grad)
            model = parameterization.unpack(Array(x[..<split]))
            encoder.parameters = Array(x[split...])
            work = StepWork(dataPasses: fraction, gradientEvaluations: 1)
        } else {
            for _ in 0..<max(1, options.encoderSteps) {
                let grad: [Double]
                if let moments {
                    grad = moments.evaluate(model: model, encoder: encoder.parameters).encoder
                } else if let fused = fusedReparameterized, let linear = encoder as? LinearEncoder {
                    // θ's half of the joint estimate is left unused: θ is held during the encoder steps.
                    grad = fused.gradient(batch: nextBatch(), model: model, encoder: linear, samples: options.samples, rng: draws).encoder
                } else {
                    let b = nextBatch()
                    let (g, out) = estimate(b)
                    grad = encoder.backward(b, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                            scale: 1 / Double(b.count))
                }
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
                let b = nextBatch()
                let (g, _) = estimate(b)
                var x = parameterization.pack(model)
                modelOptimizer.step(&x, gradient: parameterization.pullback(g.model, at: model))
                model = parameterization.unpack(x)
                work.dataPasses += fraction
                work.gradientEvaluations += 1
            }
        }
        if !encoder.parameters.allSatisfy({ $0.isFinite }) {
            throw NumericalFault(engine: name, iteration: iteration, quantity: "encoder weights", detail: "are not finite (lower the learning rate)")
        }
        try checkModel(model, engine: name, iteration: iteration)
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

    func iterate() {
        switch self {
        case let .gsl(s): _ = s.iterate()
        case let .limitedMemory(s): s.iterate()
        }
    }

    var point: [Double] {
        switch self {
        case let .gsl(s): return s.point
        case let .limitedMemory(s): return s.point
        }
    }
}

/// Coordinates u for a linear encoder's weights in which its inputs are white: a fixed linear
/// change of variables for the quasi-Newton solvers, not a change of encoder or of any ELBO.
///
/// The data are whitened in standard units: with s the columns' standard deviations and the
/// correlation matrix R = diag(1/s) S diag(1/s) = V Λ Vᵀ, u's inputs Λ^{-1/2} Vᵀ diag(1/s)(y − ȳ)
/// have covariance I, and the weights are p = u T with T = Λ^{-1/2} Vᵀ diag(1/(s ⊙ c)), c the
/// encoder's own input scales. In those coordinates the curvature of the ELBO in the weights no
/// longer carries R's eigenvalue spread (a factor of ~60 on `synth`). Standard units matter:
/// in raw units (the breast-cancer data: areas of ~10³, smoothness of ~10⁻¹) real directions
/// look like rounding noise next to the largest eigenvalue.
struct WhitenedEncoderCoordinates {
    /// T, `D × D`, and T⁻¹.
    let map: Matrix, inverse: Matrix
    /// Weight rows (2J); the biases after them pass through unchanged.
    let rows: Int

    init(data: Dataset, encoder: LinearEncoder) throws {
        let d = data.dimension
        let sd = data.columnVariances.map { $0 > 0 ? $0.squareRoot() : 1 }
        var correlation = data.covariance
        for a in 0..<d { for b in 0..<d { correlation[a, b] /= sd[a] * sd[b] } }
        let eigen = try SymmetricEigen(correlation)
        let largest = max(eigen.values.first ?? 0, .leastNormalMagnitude)
        var t = Matrix(rows: d, cols: d), inv = Matrix(rows: d, cols: d)
        for j in 0..<d {
            // Directions without variance (constant columns, exact collinearity) carry no
            // signal: keep them at the largest scale.
            let lambda = eigen.values[j] > 1e-8 * largest ? eigen.values[j] : largest
            let root = lambda.squareRoot()
            for i in 0..<d {
                let units = sd[i] * encoder.invScale[i]
                t[j, i] = eigen.vectors[i, j] / (root * units)
                inv[i, j] = eigen.vectors[i, j] * root * units
            }
        }
        map = t
        inverse = inv
        rows = 2 * encoder.latent
    }

    /// `[W · m]` for the weight block of `v` (rows × D, row-major) times `m`, biases copied.
    private func transform(_ v: [Double], _ m: Matrix, transpose: Bool) -> [Double] {
        let d = map.rows
        var out = v
        v.withUnsafeBufferPointer { pv in
            out.withUnsafeMutableBufferPointer { po in
                m.storage.withUnsafeBufferPointer { pm in
                    gemmRaw(pv.baseAddress, rows, d, false, pm.baseAddress, d, d, transpose, po.baseAddress, rows, d, alpha: 1, beta: 0)
                }
            }
        }
        return out
    }

    /// The encoder's parameters at coordinates `u`.
    func parameters(_ u: [Double]) -> [Double] { transform(u, map, transpose: false) }
    /// The coordinates of the encoder's parameters `p`.
    func coordinates(_ p: [Double]) -> [Double] { transform(p, inverse, transpose: false) }
    /// A gradient with respect to the parameters, pulled back to the coordinates (times Tᵀ).
    func pullback(_ g: [Double]) -> [Double] { transform(g, map, transpose: true) }
}
