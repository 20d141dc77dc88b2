import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The residual and low-rank encoder families: their backward passes against differences, and
/// the low-rank family's closed-form amortisation gap (Eckart–Young) against an encoder trained
/// to convergence and, at rank 0, against the posterior means themselves.
@Suite("Encoder families")
struct EncoderFamilyTests {
    static let n = 11, d = 5, j = 2

    @Test("MLPEncoder with the linear path: backward vs differences of the average exact ELBO")
    func residualBackward() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 45)
        let rng = RandomSource(seed: 405)
        var encoder = MLPEncoder(data: p.data, latent: Self.j, hidden: 3, linearPath: true, using: rng)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.4 * rng.gaussian() }
        EncoderTests.checkBackward(encoder, data: p.data, model: p.model, "residual MLP ∂/∂φ")
    }

    @Test("LowRankEncoder.backward vs differences, at ranks 0, 1 and J", arguments: [0, 1, 2])
    func lowRankBackward(rank: Int) {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 46)
        let rng = RandomSource(seed: 406)
        var encoder = LowRankEncoder(data: p.data, latent: Self.j, rank: rank, using: rng)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.4 * rng.gaussian() }
        EncoderTests.checkBackward(encoder, data: p.data, model: p.model, "low-rank (r = \(rank)) ∂/∂φ")
    }

    @Test("the residual and low-rank encoders start at the prior N(0, I)")
    func startAtPrior() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 47)
        let outputs = [MLPEncoder(data: p.data, latent: Self.j, hidden: 3, linearPath: true, using: RandomSource(seed: 1)).forward(Batch(p.data)),
                       LowRankEncoder(data: p.data, latent: Self.j, rank: 1, using: RandomSource(seed: 1)).forward(Batch(p.data))]
        for out in outputs {
            #expect(out.means.storage.allSatisfy { $0 == 0 })
            #expect(out.logVariances.storage.allSatisfy { $0 == 0 })
        }
    }

    /// The encoder's exact average ELBO maximised in φ with θ held, by L-BFGS until it stalls.
    static func trained(_ start: AmortizedEncoder, data: Dataset, model: LinearGaussianModel) -> AmortizedEncoder {
        let fit = FixedThetaEncoderFit(encoder: start, batch: Batch(data), model: model)
        for _ in 0..<20_000 { if fit.solver.iterate() == .stalled { break } }
        return fit.encoder
    }

    static func amortizationGap(_ encoder: AmortizedEncoder, data: Dataset, model: LinearGaussianModel) throws -> Double {
        let out = encoder.forward(Batch(data))
        let v = Matrix(rows: data.count, cols: encoder.latent, storage: out.logVariances.storage.map { exp($0) })
        return try Scorer.score(data: data, model: model, q: GaussianPosteriors(means: out.means, family: .diagonal, scales: v)).amortizationGap
    }

    @Test("the low-rank encoder trained at fixed θ ends at the closed-form gap of its rank", arguments: [0, 1, 2, 3])
    func trainedReachesClosedForm(rank: Int) throws {
        // θ is not the MLE: the closed form holds at any θ.
        let p = VT.problem(count: 80, dimension: 6, latent: 3, seed: 48)
        let exact = try LowRankEncoder.amortizationGap(model: p.model, data: p.data, rank: rank)
        let encoder = Self.trained(LowRankEncoder(data: p.data, latent: 3, rank: rank, using: RandomSource(seed: 7)),
                                   data: p.data, model: p.model)
        let measured = try Self.amortizationGap(encoder, data: p.data, model: p.model)
        // L-BFGS stalls at rounding of the ELBO (~1e-13 of values near 10): the gaps agree to that.
        #expect(abs(measured - exact) <= 1e-9 * (1 + exact), "rank \(rank): trained \(measured), closed form \(exact)")
        if rank < 3 { #expect(exact > 1e-3, "the problem must leave a gap at rank \(rank) for the check to mean something") }
        else { #expect(abs(exact) <= VT.identityTolerance) }
    }

    @Test("at rank 0 the closed form is ½ mean (μ_n − μ̄)ᵀ P (μ_n − μ̄) from the exact posterior means")
    func rankZeroFromPosteriorMeans() throws {
        let p = VT.problem(count: 50, dimension: 7, latent: 3, seed: 49)
        let post = try p.model.posterior(of: p.data)
        let precision = try Cholesky(post.covariance).inverse
        let n = p.data.count, j = 3
        let mean = (0..<j).map { k in (0..<n).reduce(0) { $0 + post.means[$1, k] } / Double(n) }
        var direct = 0.0
        for r in 0..<n {
            let e = (0..<j).map { post.means[r, $0] - mean[$0] }
            for a in 0..<j { for b in 0..<j { direct += 0.5 * e[a] * precision[a, b] * e[b] } }
        }
        direct /= Double(n)
        let closed = try LowRankEncoder.amortizationGap(model: p.model, data: p.data, rank: 0)
        #expect(abs(closed - direct) <= 1e-12 * direct, "closed form \(closed), from the posterior means \(direct)")
        // Each rank removes one eigenvalue: the gaps fall, to zero at r = J.
        let gaps = try (0...j).map { try LowRankEncoder.amortizationGap(model: p.model, data: p.data, rank: $0) }
        #expect(zip(gaps, gaps.dropFirst()).allSatisfy { $0.0 > $0.1 }, "\(gaps)")
    }

    @Test("a residual encoder trained at fixed θ closes the amortisation gap, as the linear one does")
    func residualClosesTheGap() throws {
        let p = VT.problem(count: 80, dimension: 6, latent: 3, seed: 50)
        let encoder = Self.trained(MLPEncoder(data: p.data, latent: 3, hidden: 4, linearPath: true, using: RandomSource(seed: 8)),
                                   data: p.data, model: p.model)
        let gap = try Self.amortizationGap(encoder, data: p.data, model: p.model)
        // The optimum (tanh heads at zero) is attained but flat to fourth order in the tanh
        // weights, where L-BFGS stalls about 1e-8 above it: far below the plain MLP's gap.
        #expect(gap >= -VT.identityTolerance && gap <= 1e-7, "residual encoder's amortisation gap \(gap)")
        let plain = Self.trained(MLPEncoder(data: p.data, latent: 3, hidden: 4, using: RandomSource(seed: 8)),
                                 data: p.data, model: p.model)
        let plainGap = try Self.amortizationGap(plain, data: p.data, model: p.model)
        #expect(plainGap > 100 * max(gap, 1e-12), "the plain MLP's gap \(plainGap) against the residual's \(gap)")
    }

    @Test("--rank is refused above J, and for an encoder other than low-rank")
    func rankChecks() {
        var o = FitOptions(strategy: .amortized, latent: 2)
        o.encoder = .lowRank
        o.rank = 3
        #expect(throws: InputError.self) { try o.validate() }
        o.rank = 2
        #expect(throws: Never.self) { try o.validate() }
        o.encoder = .linear
        #expect(throws: InputError.self) { try o.validate(given: ["rank"]) }
    }
}

@Suite("Amortisation gap at the family's optimum")
struct AmortizationOptimumFindingTests {
    static func record(_ run: String, seed: UInt64, gap: Double, best: Double?) -> RunRecord {
        RunRecord(experiment: "x", run: run, strategy: "amortized", seed: seed, count: 10, stopReason: "converged", iterations: 5,
                  dataPasses: 5, gradientEvaluations: 5, seconds: 1, elbo: -1 - gap, logLikelihood: -1, approximationGap: 0,
                  amortizationGap: gap, mleLogLikelihood: -1, secondsTo: FitResult.thresholds.map { _ in nil },
                  iterationsTo: FitResult.thresholds.map { _ in nil }, recovery: nil, mleRecovery: nil, fault: "",
                  bestAmortizationGap: best)
    }

    @Test("runs at their family's least gap, at zero, and short of it are told apart; runs without a closed form are left out")
    func classifies() throws {
        let records = [1, 2].flatMap { (s: UInt64) in [
            Self.record("small", seed: s, gap: 10 + 1e-9 * Double(s), best: 10),
            Self.record("contains", seed: s, gap: 2e-8, best: 0),
            Self.record("short", seed: s, gap: 5 + 0.1 * Double(s), best: 5),
            Self.record("mlp", seed: s, gap: 1e-3, best: nil),
        ] }
        let summaries = ExperimentSummary.summarize(records, runs: ["small", "contains", "short", "mlp"])
        let finding = try #require(ExperimentFindings.amortizationOptimum(summaries).first)
        #expect(finding.text.contains("**small** 10 ends at the least amortisation gap"), "\(finding.text)")
        #expect(finding.text.contains("differs by at most 2.00e-09"), "\(finding.text)")
        #expect(finding.text.contains("**contains** contains the optimal encoder and closes the gap"), "\(finding.text)")
        #expect(finding.text.contains("**short** ends 0.2 above"), "\(finding.text)")
        #expect(!finding.text.contains("mlp"))
        let values = Dictionary(uniqueKeysWithValues: finding.claims.map { ($0.key, $0.value) })
        #expect(values == ["at-least-amortization-gap:small": "yes", "at-least-amortization-gap:contains": "yes",
                           "at-least-amortization-gap:short": "no"])
    }
}
