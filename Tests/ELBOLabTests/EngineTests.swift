import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The strategies end to end through FitRunner: convergence to the MLE with default settings,
/// the bound on every logged row, reproducibility, and numerical faults.
@Suite("Engines through FitRunner", .serialized)
struct EngineTests {
    /// D = 8, J = 2, N = 1000, simulated with a fixed seed.
    static let data = VT.engineData()
    /// How close the final ELBO must come to the closed-form maximum log-likelihood (nats/point).
    static let convergenceTolerance = 0.01
    /// An ELBO may not exceed the log-likelihood at the same θ, nor a log-likelihood the MLE,
    /// beyond rounding of per-point averages of O(10) numbers.
    static let boundTolerance = 1e-9
    /// Wall-clock cap per fit in seconds (scoring excluded). Alone, in release, every default fit
    /// converges in well under 0.5 s; the cap leaves room for a loaded machine.
    static let budget = 5.0

    static let iterativeStrategies: [Strategy] = [.em, .perDatapoint, .amortized, .joint]

    static func options(_ strategy: Strategy, seed: UInt64 = 7) -> FitOptions {
        var o = FitOptions(strategy: strategy, latent: 2)
        o.seed = seed
        o.maxSeconds = budget
        return o
    }

    /// The bound on every logged row: ELBO ≤ log p(Y | θ) ≤ max_θ log p(Y).
    static func expectBounds(_ r: FitResult, sourceLocation: SourceLocation = #_sourceLocation) {
        for row in r.curve {
            #expect(row.score.elbo <= row.score.logLikelihood + boundTolerance,
                    "\(r.options.strategy.rawValue) row \(row.iteration): ELBO \(row.score.elbo) > log-likelihood \(row.score.logLikelihood)",
                    sourceLocation: sourceLocation)
            #expect(row.score.logLikelihood <= r.mle.logLikelihood + boundTolerance,
                    "\(r.options.strategy.rawValue) row \(row.iteration): log-likelihood \(row.score.logLikelihood) > MLE \(r.mle.logLikelihood)",
                    sourceLocation: sourceLocation)
        }
    }

    @Test("each strategy with default settings ends within 0.01 nats/point of the MLE", arguments: iterativeStrategies)
    func convergesToMLE(strategy: Strategy) throws {
        let r = try FitRunner().fit(Self.data, options: Self.options(strategy))
        let last = try #require(r.final)
        let gap = r.mle.logLikelihood - last.score.elbo
        print("[vt] \(strategy.rawValue): stop \(r.stopReason.rawValue) at iteration \(last.iteration) after \(last.seconds) s, ELBO gap to MLE \(gap), approx \(last.score.approximationGap), amort \(last.score.amortizationGap)")
        #expect(r.stopReason != .fault, "\(strategy.rawValue): \(r.fault ?? "")")
        #expect(gap <= Self.convergenceTolerance,
                "\(strategy.rawValue): final ELBO \(last.score.elbo) is \(gap) nats/point below the MLE \(r.mle.logLikelihood) (stop: \(r.stopReason.rawValue), iteration \(last.iteration), \(last.seconds) s)")
        Self.expectBounds(r)
        #expect(r.curve.count >= 2)
    }

    /// The 1-sample Monte Carlo runs with path-derivative (`stl`) gradients whose noise vanishes at
    /// the optimum: per-datapoint Adam E-steps and the amortized encoder (with its default constant
    /// step). Plain reparameterised gradients stall above this on `synth` (results/README.md).
    static let pathDerivativeTolerance = 1e-3

    @Test("1-sample path-derivative (stl) runs end within 0.001 nats/point of the MLE", arguments: [Strategy.perDatapoint, .amortized])
    func pathDerivativeReachesTheMLE(strategy: Strategy) throws {
        var o = Self.options(strategy)
        o.maxSeconds = 4 * Self.budget
        o.kl = .stl
        if strategy == .perDatapoint { o.eSolver = .adam } else { o.gradient = .reparam }
        #expect(o.resolvedSchedule == (strategy == .amortized ? .constant : .decay(halfLife: 300, power: 1)))
        let r = try FitRunner().fit(Self.data, options: o)
        let last = try #require(r.final)
        let gap = r.mle.logLikelihood - last.score.elbo
        #expect(r.stopReason != .fault, "\(strategy.rawValue): \(r.fault ?? "")")
        #expect(gap <= Self.pathDerivativeTolerance,
                "\(strategy.rawValue) stl: final ELBO \(last.score.elbo) is \(gap) nats/point below the MLE (stop: \(r.stopReason.rawValue), iteration \(last.iteration), \(last.seconds) s)")
        Self.expectBounds(r)
    }

    /// The curve CSV without its `seconds` column (the only wall-clock field).
    static func curveWithoutSeconds(_ r: FitResult) -> String {
        let header = CurveRow.csvHeader.split(separator: ",")
        let column = header.firstIndex(of: "seconds")!
        return r.curveCSV.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            var fields = line.split(separator: ",", omittingEmptySubsequences: false)
            if fields.count == header.count { fields.remove(at: column) }
            return fields.joined(separator: ",")
        }.joined(separator: "\n")
    }

    /// A fixed number of iterations, every one logged, and no time cap, so curves can be compared.
    static func fixedLength(_ strategy: Strategy, seed: UInt64, iterations: Int = 20) -> FitOptions {
        var o = FitOptions(strategy: strategy, latent: 2)
        o.seed = seed
        guard strategy != .mle else { return o }   // no iterations: the stop options do not apply
        o.iterations = iterations
        o.logEvery = 1
        o.maxSeconds = 1e9
        o.window = .max   // a window longer than any run: never "converged", every run has exactly `iterations` steps
        return o
    }

    /// Every strategy with its defaults, plus the Monte Carlo and BFGS variants whose draws and
    /// solver must also be reproducible.
    static let reproducibleCases: [(String, FitOptions)] = {
        var cases = Strategy.allCases.map { ($0.rawValue, fixedLength($0, seed: 11)) }
        var o = fixedLength(.joint, seed: 11)
        o.gradient = .reparam
        o.batch = 100
        cases.append(("joint reparam minibatch", o))
        o = fixedLength(.amortized, seed: 11)
        o.gradient = .score
        o.samples = 4
        o.encoder = .mlp
        o.hidden = 8
        cases.append(("amortized score mlp", o))
        o = fixedLength(.perDatapoint, seed: 11)
        o.eSolver = .adam
        o.kl = .mc
        cases.append(("per-datapoint adam mc", o))
        o = fixedLength(.amortized, seed: 11)
        o.gradient = .reparam
        o.kl = .stl
        cases.append(("amortized reparam stl", o))
        o = fixedLength(.perDatapoint, seed: 11)
        o.eSolver = .bfgs
        o.covariance = .full
        o.mStep = .gradient
        cases.append(("per-datapoint bfgs full gradient", o))
        for strategy in [Strategy.amortized, .joint] {
            o = fixedLength(strategy, seed: 11)
            o.optimizer = .bfgs
            cases.append(("\(strategy.rawValue) bfgs", o))
        }
        return cases
    }()

    @Test("same seed → identical curve.csv (except seconds); another seed → a different one",
          arguments: reproducibleCases.map(\.0))
    func reproducible(label: String) throws {
        let options = try #require(Self.reproducibleCases.first { $0.0 == label }).1
        let a = try FitRunner().fit(Self.data, options: options)
        let b = try FitRunner().fit(Self.data, options: options)
        #expect(a.stopReason != .fault && b.stopReason != .fault, "\(label): \(a.fault ?? b.fault ?? "")")
        #expect(Self.curveWithoutSeconds(a) == Self.curveWithoutSeconds(b), "\(label): same seed, different curves")
        #expect(a.model == b.model, "\(label): same seed, different final θ")
        if options.strategy != .mle {
            #expect(a.curve.count == options.resolvedIterations + 1)
            // The seed is really used (the initial θ differs), so equality above is not vacuous.
            var other = options
            other.seed += 1
            let c = try FitRunner().fit(Self.data, options: other)
            #expect(Self.curveWithoutSeconds(a) != Self.curveWithoutSeconds(c), "\(label): the seed changes nothing")
        }
    }

    /// Strategies whose work goes through the blocked parallel loops, on enough points for several
    /// blocks (residuals use blocks of 1024, the BFGS E-step blocks of 256): 1100 points.
    static let threadCases: [(String, FitOptions)] = {
        var cases: [(String, FitOptions)] = []
        for s in [Strategy.em, .perDatapoint, .amortized, .joint] {
            cases.append((s.rawValue, fixedLength(s, seed: 5, iterations: 10)))
        }
        var bfgs = fixedLength(.perDatapoint, seed: 5, iterations: 10)
        bfgs.eSolver = .bfgs
        cases.append(("per-datapoint bfgs diagonal", bfgs))
        bfgs.covariance = .full
        cases.append(("per-datapoint bfgs full", bfgs))
        var mc = fixedLength(.perDatapoint, seed: 5, iterations: 10)
        mc.eSolver = .adam
        cases.append(("per-datapoint adam", mc))
        return cases
    }()

    @Test("ParallelSettings.threads = 1 and 2 give bit-identical curves", arguments: threadCases.map(\.0))
    func threadIndependent(label: String) throws {
        let options = try #require(Self.threadCases.first { $0.0 == label }).1
        let big = VT.engineData(count: 1100, seed: 99)
        let saved = ParallelSettings.threads
        defer { ParallelSettings.threads = saved }
        ParallelSettings.threads = 1
        let one = try FitRunner().fit(big, options: options)
        ParallelSettings.threads = 2
        let two = try FitRunner().fit(big, options: options)
        #expect(one.stopReason != .fault, "\(label): \(one.fault ?? "")")
        #expect(one.curve.count == options.resolvedIterations + 1)
        #expect(Self.curveWithoutSeconds(one) == Self.curveWithoutSeconds(two), "\(label): curves differ between 1 and 2 threads")
        #expect(one.model == two.model, "\(label): final θ differs between 1 and 2 threads")
    }

    @Test("per-datapoint with a BFGS E-step and full covariance reaches the exact log-likelihood")
    func bfgsFullIsExact() throws {
        // Fewer points than the engines' other tests so the run can converge within the budget.
        let data = VT.engineData(count: 300, seed: 31)
        var o = Self.options(.perDatapoint)
        o.eSolver = .bfgs
        o.covariance = .full
        o.maxSeconds = 3
        let r = try FitRunner().fit(data, options: o)
        let last = try #require(r.final)
        print("[vt] per-datapoint bfgs full: stop \(r.stopReason.rawValue) at \(last.iteration), \(last.seconds) s, loglik − ELBO \(last.score.logLikelihood - last.score.elbo), MLE − ELBO \(r.mle.logLikelihood - last.score.elbo)")
        #expect(r.stopReason == .converged, "\(r.stopReason.rawValue) \(r.fault ?? "")")
        Self.expectBounds(r)
        // The full family contains the posterior: no approximation gap at any row …
        for row in r.curve { #expect(abs(row.score.approximationGap) <= Self.boundTolerance) }
        // … the BFGS E-step finds it, so the iterates are exact EM's (same seed, same start): the
        // log-likelihood column matches exact EM's row for row …
        var em = Self.options(.em)
        em.acceleration = Acceleration.none   // the notes' EM steps, which BFGS-full's explicit steps are
        em.iterations = last.iteration
        em.window = .max
        em.maxSeconds = 1e9
        let exact = try FitRunner().fit(data, options: em)
        let emRows = Dictionary(uniqueKeysWithValues: exact.curve.map { ($0.iteration, $0.score.logLikelihood) })
        var compared = 0
        for row in r.curve {
            guard let ll = emRows[row.iteration] else { continue }
            compared += 1
            #expect(abs(row.score.logLikelihood - ll) <= Self.eStepAgreement,
                    "iteration \(row.iteration): BFGS-full log-likelihood \(row.score.logLikelihood) vs exact EM \(ll)")
        }
        #expect(compared == r.curve.count)
        // … and at convergence the gap log p(Y) − ELBO has closed, at the MLE.
        #expect(last.score.logLikelihood - last.score.elbo <= Self.closedGap)
        #expect(r.mle.logLikelihood - last.score.elbo <= Self.closedGap)
    }

    /// BFGS stops at ‖∇‖ ≈ 1e-7 (no further progress in double precision), so q_n and hence θ
    /// sit ~1e-8 from exact EM's; early on, where |∂ℓ/∂θ| is O(10), log-likelihoods then differ
    /// by up to ~1e-7 (2e-8 observed). A wrong E-step differs by orders of magnitude more.
    static let eStepAgreement = 1e-6
    /// What remains of log p(Y) − ELBO once EM has converged to the stop tolerance 1e-6 nats/point.
    static let closedGap = 1e-5

    /// 1e6 breaks θ at the first step (s2 overflows); 1000 breaks it too, at the first step or a
    /// few later. (The encoder's inputs are scaled by 1/√D, so its outputs move less per step than θ.)
    @Test("a huge learning rate for joint raises a NumericalFault naming engine, iteration and quantity; rows before it are kept",
          arguments: [1e6, 1000])
    func jointFault(learningRate: Double) throws {
        var o = Self.options(.joint)
        o.learningRate = learningRate
        o.logEvery = 1
        // Straight from the engine, stepping and reading q as the runner does: the error itself.
        let engine = try makeEngine(o, data: Self.data)
        var caught: NumericalFault? = nil
        for _ in 0..<20 {
            do {
                _ = try engine.step()
                _ = try engine.posteriors()
            } catch let f as NumericalFault { caught = f; break }
        }
        let fault = try #require(caught, "no NumericalFault within 20 steps at learning rate \(learningRate)")
        #expect(fault.engine == "joint")
        #expect(fault.iteration >= 1)
        #expect(!fault.quantity.isEmpty && !fault.detail.isEmpty)
        #expect(fault.description.contains("joint") && fault.description.contains("iteration \(fault.iteration)")
                && fault.description.contains(fault.quantity), "\(fault.description)")
        // Through the runner: the run stops with .fault. Either the engine's own fault, with every
        // row logged before the faulty step kept, or — no later — the runner's divergence check on a
        // logged ELBO that fell far below its best, with that row kept as the evidence.
        let r = try FitRunner().fit(Self.data, options: o)
        #expect(r.stopReason == .fault)
        if r.fault == fault.description {
            #expect(r.curve.map(\.iteration) == Array(0..<fault.iteration))
        } else {
            let last = try #require(r.curve.last)
            #expect(r.fault?.contains("joint: iteration \(last.iteration): ELBO fell") == true, "\(r.fault ?? "no fault")")
            #expect(last.iteration <= fault.iteration)
            #expect(r.curve.map(\.iteration) == Array(0...last.iteration))
        }
        for row in r.curve { #expect(row.score.elbo.isFinite && row.score.logLikelihood.isFinite) }
        Self.expectBounds(r)
    }
}

/// ``AveragedEngine`` against the averages written out: the same seed gives the same iterates
/// with and without averaging (it draws nothing), so the averaged θ and q must equal closed-form
/// weighted sums of the plain run's iterates.
@Suite("Iterate averaging")
struct IterateAveragingTests {
    static let steps = 7

    /// The weights of iterates 1…t in the average after t steps, in closed form: η = 0 is the
    /// plain mean 1/t; η = 1 is linear, 2s/(t(t + 1)).
    static func weights(power: Double, steps t: Int) -> [Double] {
        let n = Double(t)
        return (1...t).map { power == 0 ? 1 / n : 2 * Double($0) / (n * (n + 1)) }
    }

    static func flat(_ engine: InferenceEngine) throws -> [Double] {
        let q = try engine.posteriors()
        let j = q.means.cols
        let logV = (0..<q.means.storage.count).map { log(q.scales.storage[q.isShared ? $0 % j : $0]) }
        return VT.flat(engine.model) + q.means.storage + logV
    }

    @Test("the averaged θ and q are the closed-form weighted means of the iterates", arguments: [
        (Strategy.joint, 0.0), (Strategy.joint, 1.0), (Strategy.perDatapoint, 1.0),
    ])
    func closedFormWeights(strategy: Strategy, power: Double) throws {
        var o = FitOptions(strategy: strategy, latent: 2)
        o.seed = 5
        o.kl = .stl
        o.decay = 300   // one schedule for both runs (averaging alone would resolve to another)
        if strategy == .perDatapoint { o.eSolver = .adam } else { o.gradient = .reparam }
        let plain = try makeEngine(o, data: EngineTests.data)
        o.averaging = power
        let averaged = try makeEngine(o, data: EngineTests.data)
        var iterates: [[Double]] = []
        for _ in 0..<Self.steps {
            _ = try plain.step()
            _ = try averaged.step()
            iterates.append(try Self.flat(plain))
        }
        let w = Self.weights(power: power, steps: Self.steps)
        let expected = (0..<iterates[0].count).map { i in zip(w, iterates).reduce(0) { $0 + $1.0 * $1.1[i] } }
        let actual = try Self.flat(averaged)
        let scale = iterates.flatMap { $0.map(abs) }.max()!
        for i in expected.indices {
            #expect(abs(actual[i] - expected[i]) <= Tolerance.rounding * scale, "coordinate \(i): \(actual[i]) vs \(expected[i])")
        }
        // Power: the average is not the last iterate.
        #expect(zip(actual, iterates.last!).contains { abs($0 - $1) > 1e-6 * scale })
    }

    @Test("--averaging runs its engine with the decay it resolves to (τ = 1000), not the plain run's (τ = 100)",
          arguments: [Strategy.joint, .perDatapoint])
    func averagingDecayReachesTheEngine(strategy: Strategy) throws {
        func curve(decay: Double?) throws -> String {
            var o = EngineTests.fixedLength(strategy, seed: 4, iterations: 30)
            if strategy == .perDatapoint { o.eSolver = .adam } else { o.gradient = .reparam }
            o.averaging = 4
            o.decay = decay
            #expect(decay != nil || o.resolvedSchedule == .decay(halfLife: 1000, power: 1))
            return EngineTests.curveWithoutSeconds(try FitRunner().fit(EngineTests.data, options: o))
        }
        let resolved = try curve(decay: nil)
        #expect(resolved == (try curve(decay: 1000)))
        #expect(resolved != (try curve(decay: 100)))
    }

    @Test("averaging is refused where it has no meaning: em, and a full covariance")
    func refused() {
        var o = FitOptions(strategy: .em, latent: 2)
        o.averaging = 1
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: EngineTests.data) }
        o = FitOptions(strategy: .perDatapoint, latent: 2)
        o.eSolver = .bfgs
        o.covariance = .full
        o.averaging = 1
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: EngineTests.data) }
    }
}
