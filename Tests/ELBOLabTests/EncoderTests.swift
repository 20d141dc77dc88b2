import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Amortised encoders (§9): backward passes against differences of the exact ELBO of q_φ, and
/// the linear encoder's ability to represent the mean-field optimum exactly.
@Suite("Encoders")
struct EncoderTests {
    static let n = 11, d = 5, j = 2

    /// The average exact ELBO of q_φ = N(m_φ(y_n), diag(exp(ℓ_φ(y_n)))).
    static func averageELBO(_ encoder: some AmortizedEncoder, data: Dataset, model: LinearGaussianModel) -> Double {
        let out = encoder.forward(Batch(data))
        let q = GaussianPosteriors(means: out.means, family: .diagonal,
                                   scales: Matrix(rows: data.count, cols: encoder.latent, storage: out.logVariances.storage.map { exp($0) }))
        return ExactELBO.average(data: data, model: model, q: q)
    }

    /// Checks encoder.backward, fed the exact per-point gradients with scale 1/N, against central
    /// differences of the average exact ELBO in φ.
    static func checkBackward<E: AmortizedEncoder>(_ encoder: E, data: Dataset, model: LinearGaussianModel, _ what: String) {
        let batch = Batch(data)
        let out = encoder.forward(batch)
        let g = ELBOGradient.meanField(batch: batch, model: model, means: out.means, logVariances: out.logVariances,
                                       estimator: .exact, kl: .analytic, samples: 1, rng: RandomSource(seed: 0))
        let analytic = encoder.backward(batch, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                        scale: 1 / Double(data.count))
        var probe = encoder
        let fd = VT.numericGradient(at: encoder.parameters) { phi in
            probe.parameters = phi
            return averageELBO(probe, data: data, model: model)
        }
        VT.expectClose(analytic, fd, tolerance: VT.fdTolerance, what)
    }

    @Test("LinearEncoder.backward vs differences of the average exact ELBO")
    func linearBackward() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 41)
        var encoder = LinearEncoder(data: p.data, latent: Self.j)
        let rng = RandomSource(seed: 401)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.3 * rng.gaussian() }
        Self.checkBackward(encoder, data: p.data, model: p.model, "LinearEncoder ∂/∂φ")
    }

    @Test("MLPEncoder.backward vs differences of the average exact ELBO")
    func mlpBackward() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 42)
        let rng = RandomSource(seed: 402)
        var encoder = MLPEncoder(data: p.data, latent: Self.j, hidden: 4, using: rng)
        // Every weight non-zero, so that every block of the backward pass is exercised.
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.4 * rng.gaussian() }
        Self.checkBackward(encoder, data: p.data, model: p.model, "MLPEncoder ∂/∂φ")
    }

    @Test("both encoders start at the prior N(0, I)")
    func encodersStartAtPrior() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 43)
        let outputs = [LinearEncoder(data: p.data, latent: Self.j).forward(Batch(p.data)),
                       MLPEncoder(data: p.data, latent: Self.j, hidden: 4, using: RandomSource(seed: 1)).forward(Batch(p.data))]
        for out in outputs {
            #expect(out.means.storage.allSatisfy { $0 == 0 })
            #expect(out.logVariances.storage.allSatisfy { $0 == 0 })
        }
    }

    @Test("the linear encoder at A = M⁻¹Wᵀ, c = −A(b − ȳ), E = 0, f = log v* has zero amortisation gap")
    func linearEncoderReachesTheOptimum() throws {
        let count = 30
        let p = VT.problem(count: count, dimension: Self.d, latent: Self.j, seed: 44)
        let model = p.model
        // A = M⁻¹Wᵀ (J × D), from the model's inner matrix.
        let a = try Cholesky(model.innerMatrix).solve(model.loadings.transposed)
        let delta = (0..<Self.d).map { model.offset[$0] - p.data.mean[$0] }
        let c = a.times(delta).map { -$0 }
        let m = model.innerMatrix
        let f = (0..<Self.j).map { log(model.noiseVariance / m[$0, $0]) }
        var encoder = LinearEncoder(data: p.data, latent: Self.j)
        encoder.set(meanWeights: a, meanBias: c, logVariance: f)
        let out = encoder.forward(Batch(p.data))
        // The documented map, m = A(y − ȳ) + c, evaluated by hand on the raw points.
        let y = p.data.points
        for r in 0..<count {
            for k in 0..<Self.j {
                var expected = c[k]
                for i in 0..<Self.d { expected += a[k, i] * (y[r, i] - p.data.mean[i]) }
                #expect(abs(out.means[r, k] - expected) <= VT.identityTolerance * (1 + abs(expected)))
                #expect(abs(out.logVariances[r, k] - f[k]) <= VT.identityTolerance)
            }
        }
        let q = GaussianPosteriors(means: out.means, family: .diagonal,
                                   scales: Matrix(rows: count, cols: Self.j, storage: out.logVariances.storage.map { exp($0) }))
        let score = try Scorer.score(data: p.data, model: model, q: q)
        #expect(abs(score.amortizationGap) <= VT.identityTolerance, "amortisation gap \(score.amortizationGap)")
        #expect(score.approximationGap > 1e-3, "the model must have a mean-field gap for the check to mean something")
        // A nudge to any weight opens the gap.
        var nudged = encoder
        nudged.parameters[0] += 0.05
        let worse = try Scorer.score(data: p.data, model: model, q: GaussianPosteriors(
            means: nudged.forward(Batch(p.data)).means, family: .diagonal, scales: q.scales))
        #expect(worse.amortizationGap > 1e-6)
    }
}
