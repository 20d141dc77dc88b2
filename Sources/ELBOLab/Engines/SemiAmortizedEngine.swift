import Foundation

/// Semi-amortised VI (§15), the bridge between parts A and B of the notes: the encoder g_φ
/// proposes each q_n, R exact gradient steps per point refine it with θ held
/// (``PerPointRefinement``), and θ takes its closed-form step on the refined q. The encoder
/// trains on its own ELBO, ELBO(θ, g_φ(y)), by Adam steps along ``EncoderGradient``: no
/// gradient flows back through the refinement (Kim et al. 2018 also backpropagate through it;
/// this is the variant that keeps the encoder's objective the amortized one).
final class SemiAmortizedEngine: InferenceEngine {
    let name = Strategy.semiAmortized.rawValue
    let data: Dataset
    let options: FitOptions
    private(set) var model: LinearGaussianModel
    private var encoder: AmortizedEncoder
    private let gradient: EncoderGradient
    private var optimizer: Adam
    private let refinement: PerPointRefinement
    private let fullBatch: Batch
    /// The Monte Carlo draws' own stream (see ``monteCarloStream(from:)``).
    private let draws: RandomSource
    private var iteration = 0

    init(data: Dataset, initial: LinearGaussianModel, options: FitOptions, rng: RandomSource) {
        self.data = data
        self.options = options
        model = initial
        encoder = options.encoder.make(data: data, latent: options.latent, hidden: options.hidden, rank: options.rank ?? 1, using: rng)
        draws = monteCarloStream(from: rng)
        fullBatch = Batch(data)
        gradient = .fastest(for: options.resolvedGradient, kl: options.kl, samples: options.samples,
                            encoder: encoder, data: data, batchSize: data.count)
        optimizer = Adam(count: encoder.parameters.count, learningRate: options.resolvedLearningRate,
                         schedule: options.resolvedSchedule.stretched(by: options.encoderSteps))
        refinement = PerPointRefinement(steps: options.refineSteps, rate: options.refineRate)
    }

    /// The refined q at the current θ: R steps from the encoder's proposal.
    func posteriors() throws -> GaussianPosteriors {
        let out = encoder.forward(fullBatch)
        let r = try refinement.refine(means: out.means, logVariances: out.logVariances, model: model,
                                      projections: model.projections(of: data))
        return try meanFieldPosteriors(means: r.means, logVariances: r.logVariances, engine: name, iteration: iteration,
                                       what: "refined", remedy: "lower --refine-rate or the learning rate")
    }

    func step() throws -> StepWork {
        iteration += 1
        for _ in 0..<max(1, options.encoderSteps) {
            let grad = gradient.gradient(model: model, encoder: encoder, batch: { fullBatch }, rng: draws).encoder
            optimizer.step(&encoder.parameters, gradient: grad)
        }
        if !encoder.parameters.allSatisfy({ $0.isFinite }) {
            throw NumericalFault(engine: name, iteration: iteration, quantity: "encoder weights", detail: "are not finite (lower the learning rate)")
        }
        if options.theta == nil {   // θ held: the encoder steps are the whole iteration
            model = try LinearGaussianModel.maximizingELBO(data: data, q: try posteriors(), constraints: options.constraints)
        }
        try checkModel(model, engine: name, iteration: iteration)
        // Encoder steps, the refinement's projections and the M-step each read the rows once.
        return StepWork(dataPasses: Double(max(1, options.encoderSteps) + 2),
                        gradientEvaluations: max(1, options.encoderSteps) + options.refineSteps)
    }
}
