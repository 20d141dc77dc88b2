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
        model = initial
        switch options.encoder {
        case .linear: encoder = LinearEncoder(data: data, latent: options.latent)
        case .mlp: encoder = MLPEncoder(data: data, latent: options.latent, hidden: options.hidden, using: rng)
        }
        parameterization = ModelParameterization(data: data, latent: options.latent, constraints: options.constraints)
        let lr = options.resolvedLearningRate, schedule = options.resolvedSchedule
        encoderOptimizer = Adam(count: encoder.parameters.count, learningRate: lr, schedule: schedule)
        modelOptimizer = Adam(count: parameterization.count, learningRate: lr, schedule: schedule)
        jointOptimizer = Adam(count: parameterization.count + encoder.parameters.count, learningRate: lr, schedule: schedule)
        batchSize = options.batch ?? data.count
        order = Array(0..<data.count)
        cursor = data.count
        fullBatch = Batch(data)
        batch = batchSize == data.count ? fullBatch : Batch(capacity: batchSize, dimension: data.dimension, mean: data.mean)
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
                                       estimator: options.resolvedGradient, kl: options.kl, samples: options.samples, rng: rng)
        return (g, out)
    }

    func step() throws -> StepWork {
        iteration += 1
        let fraction = Double(batchSize) / Double(data.count)
        var work = StepWork(dataPasses: 0, gradientEvaluations: 0)
        if options.strategy == .joint {
            let b = nextBatch()
            let (g, out) = estimate(b)
            var x = parameterization.pack(model)
            let split = x.count
            x.append(contentsOf: encoder.parameters)
            var grad = parameterization.pullback(g.model, at: model)
            grad.append(contentsOf: encoder.backward(b, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                                     scale: 1 / Double(b.count)))
            jointOptimizer.step(&x, gradient: grad)
            model = parameterization.unpack(Array(x[..<split]))
            encoder.parameters = Array(x[split...])
            work = StepWork(dataPasses: fraction, gradientEvaluations: 1)
        } else {
            for _ in 0..<max(1, options.encoderSteps) {
                let b = nextBatch()
                let (g, out) = estimate(b)
                let grad = encoder.backward(b, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                            scale: 1 / Double(b.count))
                encoderOptimizer.step(&encoder.parameters, gradient: grad)
                work.dataPasses += fraction
                work.gradientEvaluations += 1
            }
            switch options.mStep {
            case .closedForm:
                model = try LinearGaussianModel.maximizingELBO(data: data, q: try posteriors(), constraints: options.constraints)
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
