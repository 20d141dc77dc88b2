import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Semi-amortised VI (§15): the per-point refinement against finite differences of the exact
/// per-point ELBO, its amortisation gap against R, and the engine end to end.
@Suite("Semi-amortized inference") struct SemiAmortizedTests {
    static let problem = VT.problem(count: 60, dimension: 6, latent: 2, seed: 41)

    /// A deliberately poor proposal: means N(0, 1), log-variances 0.5 N(0, 1).
    static func proposal(rows n: Int, latent j: Int, seed: UInt64) -> (Matrix, Matrix) {
        let rng = RandomSource(seed: seed)
        var m = Matrix(rows: n, cols: j), l = Matrix(rows: n, cols: j)
        rng.fillGaussian(&m.storage)
        rng.fillGaussian(&l.storage)
        for i in l.storage.indices { l.storage[i] *= 0.5 }
        return (m, l)
    }

    static func posteriors(_ m: Matrix, _ l: Matrix) -> GaussianPosteriors {
        GaussianPosteriors(means: m, family: .diagonal, scales: Matrix(rows: l.rows, cols: l.cols, storage: l.storage.map { exp($0) }))
    }

    @Test("one refinement step is λ + α × the central-difference gradient of each point's exact ELBO")
    func oneStepIsAGradientStep() throws {
        let p = Self.problem, j = 2
        let (m, l) = Self.proposal(rows: p.data.count, latent: j, seed: 3)
        let alpha = 0.05
        let step = try PerPointRefinement(steps: 1, rate: alpha).refine(means: m, logVariances: l, model: p.model,
                                                                       projections: p.model.projections(of: p.data))
        for n in [0, 17, 59] {
            // ELBO_n as a function of λ_n = (m_n, log v_n), by the library's exact per-point ELBO.
            let one = VT.subset(p.data, rows: [n])
            func elbo(_ x: [Double]) -> Double {
                let q = Self.posteriors(Matrix(rows: 1, cols: j, storage: Array(x[..<j])), Matrix(rows: 1, cols: j, storage: Array(x[j...])))
                return ExactELBO.pointValues(data: one, model: p.model, q: q)[0]
            }
            let x = m.row(n) + l.row(n)
            let g = VT.numericGradient(at: x, elbo)
            let expected = zip(x, g).map { $0 + alpha * $1 }
            VT.expectClose(step.means.row(n) + step.logVariances.row(n), expected, tolerance: alpha * VT.fdTolerance, "point \(n)",
                           nonTrivial: false)
            #expect(zip(x, expected).map { abs($0 - $1) }.max()! > 1e-3, "the step must move λ")
        }
    }

    @Test("at θ = MLE the amortisation gap of the refined q falls with R (never rises) to the per-datapoint gap, 0")
    func gapFallsWithR() throws {
        let p = Self.problem, j = 2
        let mle = try LinearGaussianModel.maximumLikelihood(for: p.data, latent: j).model
        let (m, l) = Self.proposal(rows: p.data.count, latent: j, seed: 9)
        let projections = mle.projections(of: p.data)
        var previous = Double.infinity
        var gaps: [Double] = []
        for r in [0, 1, 2, 5, 10, 50, 200, 1000] {
            let refined = try PerPointRefinement(steps: r).refine(means: m, logVariances: l, model: mle, projections: projections)
            let gap = try Scorer.score(data: p.data, model: mle, q: Self.posteriors(refined.means, refined.logVariances)).amortizationGap
            #expect(gap <= previous + 1e-12, "R = \(r): gap \(gap) rose from \(previous)")
            previous = gap
            gaps.append(gap)
        }
        #expect(gaps[0] > 0.1, "the proposal must start far from q*: \(gaps[0])")
        #expect(gaps.last! < 1e-9, "R = 1000 must reach the per-datapoint optimum: \(gaps.last!)")
    }

    @Test("with R = 0 it is the amortized strategy: the same curve to rounding")
    func zeroStepsIsAmortized() throws {
        let data = VT.engineData(count: 400)
        var semi = FitOptions(strategy: .semiAmortized, latent: 2)
        semi.refineSteps = 0
        semi.iterations = 60
        semi.maxSeconds = 1e9
        var amortized = FitOptions(strategy: .amortized, latent: 2)
        amortized.iterations = 60
        amortized.maxSeconds = 1e9
        let a = try FitRunner().fit(data, options: semi).curve, b = try FitRunner().fit(data, options: amortized).curve
        #expect(a.count == b.count && a.count > 10)
        for (x, y) in zip(a, b) {
            #expect(abs(x.score.elbo - y.score.elbo) < 1e-9 * (1 + abs(y.score.elbo)), "iteration \(x.iteration)")
        }
    }

    @Test("semi-amortized with its defaults converges to the MLE, every ELBO under its log-likelihood")
    func convergesToTheMLE() throws {
        let data = VT.engineData(count: 400)
        for encoder in [EncoderKind.linear, .mlp] {
            var o = FitOptions(strategy: .semiAmortized, latent: 2)
            o.encoder = encoder
            o.maxSeconds = 30
            let r = try FitRunner().fit(data, options: o)
            let final = try #require(r.final)
            #expect(r.mle.logLikelihood - final.score.elbo < 1e-3, "\(encoder): gap \(r.mle.logLikelihood - final.score.elbo)")
            #expect(r.curve.allSatisfy { $0.score.elbo <= $0.score.logLikelihood + 1e-9 })
        }
    }

    @Test("the refinement options apply to semi-amortized only")
    func optionsScope() throws {
        #expect(OptionTableTests.refusal(.amortized, ["--refine-steps", "3"])?.contains("it is for semi-amortized") == true)
        #expect(OptionTableTests.refusal(.semiAmortized, ["--refine-steps", "3", "--refine-rate", "0.1", "--encoder", "mlp"]) == nil)
        #expect(OptionTableTests.refusal(.semiAmortized, ["--optimizer", "bfgs"])?.contains("does not apply") == true)
    }
}
