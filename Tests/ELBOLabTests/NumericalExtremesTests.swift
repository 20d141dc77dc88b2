import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// Numerical extremes (issue 6): data scaled by 1e±8, nearly rank-deficient data, and learning
// rates large enough to blow a step up. Each checks a number against a route that does not
// share the code under test, or that a failure is reported rather than propagated.

@Suite("Numerical extremes")
struct NumericalExtremesTests {
    static let d = 6, j = 2, n = 300

    /// Seeded data from a random model (D = 6, J = 2, s2 = 0.5), every entry multiplied by `scale`.
    static func scaledData(_ scale: Double) -> Dataset {
        var y = simulate(randomModel(dimension: d, latent: j, noiseVariance: 0.5, seed: 91), count: n, seed: 92)
        for i in y.storage.indices { y.storage[i] *= scale }
        return Dataset(points: y, name: "scaled by \(scale)")
    }

    static let scales = [1e8, 1e-8]

    @Test("scaling the data by c shifts the maximum log-likelihood by exactly −D log c per point", arguments: scales)
    func mleShiftsByTheJacobian(scale: Double) throws {
        // y ↦ c y is a change of variables with Jacobian c^D: log p drops by D log c per point
        // at the maximum (which moves to c W, c b, c² s2). Independent of the eigen-solver.
        let base = try LinearGaussianModel.maximumLikelihood(for: Self.scaledData(1), latent: Self.j)
        let data = Self.scaledData(scale)
        let scaled = try LinearGaussianModel.maximumLikelihood(for: data, latent: Self.j)
        let expected = base.logLikelihood - Double(Self.d) * log(scale)
        // c·y is rounded once per entry (relative ε), which moves each log λ_i by O(ε) and the
        // per-point value by O(D ε): 1e-12 relative to |log-likelihood| ~ 100 is ample.
        #expect(approximatelyEqual(scaled.logLikelihood, expected, relative: Tolerance.rounding),
                "\(scaled.logLikelihood) vs \(expected)")
        #expect(approximatelyEqual(scaled.model.noiseVariance, base.model.noiseVariance * scale * scale, relative: Tolerance.independentRoute))
        // The closed-form value is the log-likelihood of the θ it returns, by the dense D × D route.
        #expect(approximatelyEqual(scaled.logLikelihood, directAverageLogLikelihood(scaled.model, points: data.points),
                                   relative: Tolerance.independentRoute))
    }

    /// Every iterative strategy with its default settings (exact gradients, closed-form steps).
    static let strategies: [Strategy] = [.em, .perDatapoint, .amortized, .joint]

    /// The gap (nats/point) between the MLE and the final ELBO of a default fit, and how it stopped.
    static func fitGap(_ data: Dataset, _ strategy: Strategy, latent: Int = j, seed: UInt64 = 1) throws -> (gap: Double, stop: StopReason, iterations: Int) {
        var options = FitOptions(strategy: strategy, latent: latent)
        options.seed = seed
        options.maxSeconds = 30
        let result = try FitRunner().fit(data, options: options)
        let last = try #require(result.final)
        return (result.mle.logLikelihood - last.score.elbo, result.stopReason, last.iteration)
    }

    @Test("every strategy converges on data scaled by 1e8 and 1e-8, as on the unscaled data", arguments: strategies)
    func scaledFitsConverge(strategy: Strategy) throws {
        for scale in [1] + Self.scales {
            let fit = try Self.fitGap(Self.scaledData(scale), strategy)
            // 1e-3 nats/point is the coarsest threshold summary.json reports; the runs stop on the
            // exact ELBO's own 1e-6 rule, far inside it. A gap below −1e-6 would be an ELBO above
            // the maximum log-likelihood, which no q can reach.
            #expect(fit.stop == .converged && fit.gap >= -Tolerance.emToMLE && fit.gap <= 1e-3, "scale \(scale): \(fit)")
        }
    }

    /// Columns in units a factor of ~10 apart, from 1e-2 to 1e3 (like the wine data: proline in the
    /// hundreds, hue below one). The noise is isotropic in these units, so the small columns are
    /// mostly noise at the MLE.
    static func mixedUnits() -> Dataset {
        var y = simulate(randomModel(dimension: d, latent: j, noiseVariance: 0.5, seed: 95), count: n, seed: 96)
        let units = [1e3, 1e-2, 1e2, 1e-1, 1e1, 1]
        for p in 0..<y.rows { for i in 0..<d { y[p, i] *= units[i] } }
        return Dataset(points: y, name: "mixed units")
    }

    @Test("columns in units from 1e-2 to 1e3: every strategy converges to the MLE from three starts", arguments: strategies)
    func mixedUnitsFitsConverge(strategy: Strategy) throws {
        for seed: UInt64 in 1...3 {
            let fit = try Self.fitGap(Self.mixedUnits(), strategy, seed: seed)
            #expect(fit.stop == .converged && fit.gap >= -Tolerance.emToMLE && fit.gap <= 1e-3, "seed \(seed): \(fit)")
        }
    }

    /// Rank-3 data in D = 6 plus N(0, 1e-4) noise: s2 at the MLE is ~1e-4 of the signal.
    static func nearlyRankDeficient() -> Dataset {
        Dataset(points: simulate(randomModel(dimension: d, latent: 3, noiseVariance: 1e-4, seed: 93), count: n, seed: 94),
                name: "rank 3 + 1e-4 noise")
    }

    @Test("nearly rank-deficient data (rank 3, J = 2): every strategy converges to the MLE", arguments: strategies)
    func nearlyRankDeficientFitsConverge(strategy: Strategy) throws {
        let fit = try Self.fitGap(Self.nearlyRankDeficient(), strategy)
        #expect(fit.stop == .converged && fit.gap >= -Tolerance.emToMLE && fit.gap <= 1e-3, "\(fit)")
    }

    @Test("nearly rank-deficient data with J = rank: the closed-form MLE is the log-likelihood of its θ")
    func nearlyRankDeficientMLE() throws {
        let data = Self.nearlyRankDeficient()
        let fit = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3)
        #expect(fit.activeDirections == 3)
        // cond(C) = λ₁/s2 ≈ 1e4 here, so the dense Cholesky route loses about four digits more
        // than Tolerance.independentRoute assumes (cond ≤ 1e3): allow 10× that.
        let direct = directAverageLogLikelihood(fit.model, points: data.points)
        #expect(approximatelyEqual(fit.logLikelihood, direct, relative: 10 * Tolerance.independentRoute), "\(fit.logLikelihood) vs \(direct)")
        // And exact EM from a perturbed MLE never lowers the log-likelihood.
        var model = fit.model
        let rng = RandomSource(seed: 95)
        for i in model.loadings.storage.indices { model.loadings.storage[i] += 0.1 * rng.gaussian() }
        model.noiseVariance *= 3
        var previous = try model.logLikelihood(of: data)
        for _ in 0..<50 {
            model = try model.emStep(on: data)
            let next = try model.logLikelihood(of: data)
            #expect(next >= previous - Tolerance.rounding * abs(previous), "EM lowered log p from \(previous) to \(next)")
            previous = next
        }
        #expect(previous <= fit.logLikelihood + Tolerance.rounding * abs(previous))
    }

    /// A learning rate of 1e6 through the CLI, with what the fault must name.
    struct HugeStep: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let arguments: [String]
        let mentions: [String]
    }

    static let hugeSteps: [HugeStep] = [
        HugeStep(testDescription: "joint", arguments: ["--strategy", "joint"], mentions: ["joint: iteration 1:", "noise variance s2"]),
        HugeStep(testDescription: "amortized", arguments: ["--strategy", "amortized"], mentions: ["amortized: iteration 1:", "encoder variance"]),
        HugeStep(testDescription: "per-datapoint, Adam E-step", arguments: ["--strategy", "per-datapoint", "--e-solver", "adam"],
                 mentions: ["per-datapoint: iteration 1:", "noise variance s2"]),
        HugeStep(testDescription: "per-datapoint, gradient M-step", arguments: ["--strategy", "per-datapoint", "--m-step", "gradient"],
                 mentions: ["per-datapoint: iteration 1:", "noise variance s2"]),
    ]

    @Test("--learning-rate 1e6 stops with a fault naming engine, iteration and quantity, keeping the rows logged", arguments: hugeSteps)
    func hugeLearningRate(_ c: HugeStep) throws {
        try withTemporaryFolder { folder in
            try writeFile(CSV.text(of: Self.scaledData(1).points), named: "data.csv", in: folder)
            let run = try runHostile(["fit", "--data", "data.csv", "--latent", "2", "--learning-rate", "1e6", "--quiet", "--output", "out"]
                                     + c.arguments, in: folder)
            #expect(run.status != 0 && run.status < 128, "exit \(run.status)")
            #expect(run.stderrLines.count == 1, "stderr was:\n\(run.stderr)")
            let line = String(run.stderrLines.first ?? "")
            for m in c.mentions + ["numerical fault", "out/curve.csv"] { #expect(line.contains(m), "\(line)") }
            // The curve keeps every row logged before the fault: the start, iteration 0.
            let curve = try String(contentsOf: folder.appendingPathComponent("out/curve.csv"), encoding: .utf8)
            let rows = curve.split(separator: "\n").dropFirst()
            #expect(rows.map { $0.split(separator: ",").first } == ["0"], "\(curve)")
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("out/summary.json"))) as? [String: Any])
            #expect(summary["stop_reason"] as? String == "fault")
            #expect((summary["fault"] as? String).map { line.contains($0) } == true, "\(String(describing: summary["fault"]))")
            #expect(summary["elbo"] is NSNumber, "the ELBO of the last good row is kept")
        }
    }
}
