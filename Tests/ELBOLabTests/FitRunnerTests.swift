import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

@Suite("FitRunner schedule and stop rule")
struct FitRunnerTests {
    static func data() -> Dataset {
        let rng = RandomSource(seed: 21)
        let truth = LinearGaussianModel.random(dimension: 6, latent: 2, noiseVariance: 0.3, using: rng)
        return Dataset(points: truth.sample(count: 400, using: rng))
    }

    @Test("the log grid: every iteration to 10, then about 20 a decade")
    func logGrid() {
        let logged = (1...10_000).filter { FitRunner.isLogged($0, every: nil) }
        #expect(Array(logged.prefix(10)) == Array(1...10))
        let perDecade = [(10, 100), (100, 1000), (1000, 10_000)].map { range in logged.filter { $0 > range.0 && $0 <= range.1 }.count }
        #expect(perDecade.allSatisfy { (18...20).contains($0) }, "rows per decade: \(perDecade)")
        #expect((1...50).filter { FitRunner.isLogged($0, every: 7) } == [7, 14, 21, 28, 35, 42, 49])
    }

    @Test("converged: no row of the window beats the best before it by the tolerance; settled: nor does the curve move by it")
    func stopRule() {
        func curve(_ elbos: [Double]) -> [CurveRow] {
            elbos.enumerated().map { CurveRow(iteration: $0.offset, dataPasses: 0, gradientEvaluations: 0, seconds: 0,
                                              score: Score(elbo: $0.element, logLikelihood: 0, approximationGap: 0, amortizationGap: 0)) }
        }
        let runner = FitRunner()
        #expect(!runner.converged(curve([-3, -2, -1]), window: 3, tolerance: 1e-6))          // too few rows
        #expect(!runner.converged(curve([-3, -2, -1, -0.5]), window: 3, tolerance: 1e-6))    // still improving
        #expect(runner.converged(curve([-3, -1, -1, -1 + 1e-8, -1]), window: 3, tolerance: 1e-6))
        // A fall below the best: noise for a Monte Carlo run, not convergence for an exact one.
        let fallen = curve([-3, -1, -1.5, -1.2, -1.1])
        #expect(runner.converged(fallen, window: 3, tolerance: 1e-6))
        #expect(!runner.converged(fallen, window: 3, tolerance: 1e-6, settled: true))
        #expect(runner.converged(curve([-3, -1, -1, -1 + 1e-8, -1]), window: 3, tolerance: 1e-6, settled: true))
        // The row before the window counts: a drop into a flat window is not settled.
        #expect(!runner.converged(curve([-3, -1, -1.1, -1.1, -1.1]), window: 3, tolerance: 1e-6, settled: true))
    }

    @Test("a diverging optimiser is a numerical fault, not convergence; the rows before it are kept")
    func divergence() throws {
        var options = FitOptions(strategy: .joint, latent: 2)
        options.learningRate = 1
        options.decay = 0
        options.maxSeconds = 10
        let result = try FitRunner().fit(Self.data(), options: options)
        #expect(result.stopReason == .fault)
        let fault = try #require(result.fault)
        #expect(fault.contains("joint") && fault.contains("ELBO") && fault.contains("diverged"), "\(fault)")
        #expect(result.curve.count >= 2)
        let best = result.curve.dropLast().map(\.score.elbo).max()!
        #expect(best - result.curve.last!.score.elbo > FitRunner.divergenceMargin(best))
    }

    @Test("training seconds exclude scoring and grow with the iterations")
    func secondsColumn() throws {
        var options = FitOptions(strategy: .em, latent: 2)
        options.iterations = 50
        options.tolerance = 0
        let result = try FitRunner().fit(Self.data(), options: options)
        let seconds = result.curve.map(\.seconds)
        #expect(seconds.first == 0)
        #expect(zip(seconds, seconds.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(result.curve.last?.iteration == 50 && result.stopReason == .iterations)
    }
}
