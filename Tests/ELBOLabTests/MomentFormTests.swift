import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The moment-form shortcuts against the per-point computations they replace.
@Suite("Moment form")
struct MomentFormTests {
    /// Rounding allowance for quantities assembled from O(N·D) sums in two different orders.
    static let sumsTolerance = 1e-9

    static func data(dimension: Int, latent: Int, count: Int, seed: UInt64) -> (Dataset, LinearGaussianModel) {
        let rng = RandomSource(seed: seed)
        let truth = LinearGaussianModel.random(dimension: dimension, latent: latent, noiseVariance: 0.4, using: rng)
        let data = Dataset(points: truth.sample(count: count, using: rng))
        let start = LinearGaussianModel.initial(for: data, latent: latent, constraints: .free, using: rng)
        return (data, start)
    }

    static func relativeDistance(_ a: LinearGaussianModel, _ b: LinearGaussianModel) -> Double {
        let dw = (a.loadings - b.loadings).maxAbs / max(1, b.loadings.maxAbs)
        let db = zip(a.offset, b.offset).map { abs($0 - $1) }.max()! / max(1, b.offset.map(abs).max()!)
        let ds = abs(a.noiseVariance - b.noiseVariance) / b.noiseVariance
        return max(dw, db, ds)
    }

    /// (D, N): tall data, where S is formed, and wide data, where products go through the points.
    static let shapes = [(7, 300), (150, 12)]

    @Test("mean-field (§6) and exact (§5) EM in moment form equal the explicit E-step and M-step (maximizingELBO)",
          arguments: [ModelConstraints.free, ModelConstraints(noiseVariance: 0.4), ModelConstraints(zeroOffset: true),
                      ModelConstraints(noiseVariance: 0.4, zeroOffset: true)], shapes)
    func meanFieldStep(constraints: ModelConstraints, shape: (Int, Int)) throws {
        for family in [GaussianPosteriors.Family.diagonal, .full] {
            var (data, model) = Self.data(dimension: shape.0, latent: 2, count: shape.1, seed: 11)
            if constraints.zeroOffset { model.offset = [Double](repeating: 0, count: shape.0) }
            if let s2 = constraints.noiseVariance { model.noiseVariance = s2 }
            for _ in 0..<5 {
                let fast = family == .diagonal ? try model.meanFieldEMStep(on: data, constraints: constraints)
                                               : try model.emStep(on: data, constraints: constraints)
                let q = try GaussianPosteriors.optimal(family, model: model, data: data)
                let explicit = try LinearGaussianModel.maximizingELBO(data: data, q: q, constraints: constraints)
                #expect(Self.relativeDistance(fast, explicit) < Self.sumsTolerance, "\(family)")
                model = explicit
            }
        }
    }

    @Test("the per-datapoint engine's closed-form iterates match explicit variational EM step by step, plain and parameter-expanded",
          arguments: [Acceleration.none, .px])
    func engineIterates(acceleration: Acceleration) throws {
        let (data, _) = Self.data(dimension: 6, latent: 2, count: 300, seed: 5)
        var options = FitOptions(strategy: .perDatapoint, latent: 2)
        options.seed = 3
        options.acceleration = acceleration
        let engine = try makeEngine(options, data: data)
        var model = engine.model
        for _ in 0..<10 {
            _ = try engine.step()
            var q = try GaussianPosteriors.optimal(.diagonal, model: model, data: data)
            model = try LinearGaussianModel.maximizingELBO(data: data, q: q, constraints: .free)
            if acceleration == .px {
                // The expanded prior N(μ, diag c) from the per-point q_n, then z ↦ (z − μ)/√c.
                let n = Double(data.count)
                for k in 0..<2 {
                    let mu = (0..<data.count).reduce(0) { $0 + q.means[$1, k] } / n
                    let c = (0..<data.count).reduce(0) { $0 + (q.means[$1, k] - mu) * (q.means[$1, k] - mu) + q.scales[q.isShared ? 0 : $1, k] } / n
                    for i in 0..<6 { model.loadings[i, k] *= c.squareRoot() }
                    for p in 0..<data.count { q.means[p, k] = (q.means[p, k] - mu) / c.squareRoot() }
                    for r in 0..<q.scales.rows { q.scales[r, k] /= c }
                }
                model.offset = data.mean
            }
            #expect(Self.relativeDistance(engine.model, model) < Self.sumsTolerance)
            // The q the scorer sees is the E-step's q at the previous θ (carried to the new θ by px).
            let seen = try engine.posteriors()
            #expect((seen.means - q.means).maxAbs < Self.sumsTolerance * max(1, q.means.maxAbs))
            #expect((seen.scales - q.scales).maxAbs < Self.sumsTolerance * max(1, q.scales.maxAbs))
        }
    }

    @Test("joint and amortized with --optimizer bfgs reach the MLE on the exact objective")
    func bfgsOptimizer() throws {
        let (data, _) = Self.data(dimension: 6, latent: 2, count: 500, seed: 9)
        for strategy in [Strategy.joint, .amortized] {
            var options = FitOptions(strategy: strategy, latent: 2)
            options.optimizer = .bfgs
            if strategy == .amortized { options.encoderSteps = 5 }
            options.maxSeconds = 20
            let result = try FitRunner().fit(data, options: options)
            let final = try #require(result.final)
            #expect(result.mle.logLikelihood - final.score.elbo < 1e-3, "\(strategy): gap \(result.mle.logLikelihood - final.score.elbo)")
            #expect(result.curve.allSatisfy { $0.score.elbo <= $0.score.logLikelihood + 1e-9 })
        }
    }

    @Test("--optimizer bfgs refuses Monte Carlo gradients")
    func bfgsNeedsExactGradient() {
        let (data, _) = Self.data(dimension: 4, latent: 1, count: 50, seed: 2)
        var options = FitOptions(strategy: .joint, latent: 1)
        options.optimizer = .bfgs
        options.gradient = .reparam
        #expect(throws: InputError.self) { _ = try makeEngine(options, data: data) }
    }

    @Test("the linear encoder's ELBO and gradients from moments equal the per-point computation",
          arguments: [ModelConstraints.free, ModelConstraints(zeroOffset: true)], shapes)
    func linearEncoderMoments(constraints: ModelConstraints, shape: (Int, Int)) throws {
        let (data, start) = Self.data(dimension: shape.0, latent: 2, count: shape.1, seed: 17)
        var model = start
        if constraints.zeroOffset { model.offset = [Double](repeating: 0, count: shape.0) }
        let rng = RandomSource(seed: 99)
        var encoder = LinearEncoder(data: data, latent: 2)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.3 * rng.gaussian() }
        let fast = LinearEncoderMoments(data: data, encoder: encoder).evaluate(model: model, encoder: encoder.parameters)

        let batch = Batch(data)
        let out = encoder.forward(batch)
        let q = GaussianPosteriors(means: out.means, family: .diagonal,
                                   scales: Matrix(rows: data.count, cols: 2, storage: out.logVariances.storage.map { exp($0) }))
        let value = ExactELBO.average(data: data, model: model, q: q)
        let g = ELBOGradient.meanField(batch: batch, model: model, means: out.means, logVariances: out.logVariances,
                                       estimator: .exact, kl: .analytic, samples: 1, rng: rng)
        let encoderGradient = encoder.backward(batch, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                               scale: 1 / Double(data.count))
        func close(_ a: Double, _ b: Double, scale: Double) -> Bool { abs(a - b) <= Self.sumsTolerance * max(1, scale) }
        #expect(close(fast.value, value, scale: abs(value)), "value \(fast.value) vs \(value)")
        let wScale = g.model.loadings.maxAbs
        #expect((fast.model.loadings - g.model.loadings).maxAbs <= Self.sumsTolerance * max(1, wScale))
        let bScale = g.model.offset.map(abs).max()!
        #expect(zip(fast.model.offset, g.model.offset).allSatisfy { close($0, $1, scale: bScale) })
        #expect(close(fast.model.noiseVariance, g.model.noiseVariance, scale: abs(g.model.noiseVariance)))
        let eScale = encoderGradient.map(abs).max()!
        let worst = zip(fast.encoder, encoderGradient).map { abs($0 - $1) }.max()!
        #expect(worst <= Self.sumsTolerance * max(1, eScale), "encoder gradient differs by \(worst)")
    }

    @Test("the linear encoder's M-step from moments equals maximizingELBO on the per-point q",
          arguments: [ModelConstraints.free, ModelConstraints(noiseVariance: 0.4), ModelConstraints(zeroOffset: true)], shapes)
    func linearEncoderMStep(constraints: ModelConstraints, shape: (Int, Int)) throws {
        let (data, _) = Self.data(dimension: shape.0, latent: 2, count: shape.1, seed: 23)
        let rng = RandomSource(seed: 7)
        var encoder = LinearEncoder(data: data, latent: 2)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.3 * rng.gaussian() }
        let fast = try LinearEncoderMoments(data: data, encoder: encoder).maximizingModel(encoder: encoder.parameters, constraints: constraints)
        let out = encoder.forward(Batch(data))
        let q = GaussianPosteriors(means: out.means, family: .diagonal,
                                   scales: Matrix(rows: data.count, cols: 2, storage: out.logVariances.storage.map { exp($0) }))
        let explicit = try LinearGaussianModel.maximizingELBO(data: data, q: q, constraints: constraints)
        #expect(Self.relativeDistance(fast, explicit) < Self.sumsTolerance)
    }
}
