// Section 6: the joint IWAE step (the importance-weighted bound L_K, §13–§14) on synth — the
// one-pass kernel against the reference route, and time to tolerance over seeds.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ELBOLab

enum ImportanceWeightedBench {
    /// Joint IWAE options: linear encoder, full batch, ELBOLab's default Adam schedule.
    static func options(particles: Int, estimator: GradientEstimator, seed: UInt64 = 1) -> FitOptions {
        var o = FitOptions(strategy: .joint, latent: 3)
        o.objective = .iwae
        o.particles = particles
        o.gradient = estimator
        o.seed = seed
        return o
    }

    /// The middle value of the finite ones (the lower of the two middle ones when even).
    static func median(_ xs: [Double]) -> Double? {
        let s = xs.sorted()
        return s.isEmpty ? nil : s[(s.count - 1) / 2]
    }

    static func run(quick: Bool, synthPath: String?) throws -> SectionReport {
        let data = try synthPath.map { try Dataset.load(csv: $0) } ?? ConvergenceBench.simulate(count: 5000, dimension: 20, latent: 3)
        let label = synthPath == nil ? "simulated N = 5000, D = 20, J = 3 (synth file missing)" : "synth (N = 5000, D = 20, J = 3)"
        var md = "On \(label), one core's worth (single-threaded OpenBLAS, no block loops in the step).\n\n"
        var json: [(String, JSON)] = []

        // Steps per second: the one-pass kernel (default here) against the reference route
        // (ImportanceWeightedGradient: encoder forward, per-point loop, backward), interleaved.
        let rounds = quick ? 3 : 5
        var rates = Table(["K", "estimator", "one-pass steps/s (median)", "(best)", "reference steps/s (median)", "(best)",
                           "speed-up (medians)"], numeric: [0, 2, 3, 4, 5, 6])
        var rateJSON: [JSON] = []
        for k in [1, 10, 100] {
            for estimator in [GradientEstimator.dreg] {
                note("iwae: step rate K = \(k)")
                let steps = max(5, 400 / k), warmup = max(2, steps / 10)
                let o = options(particles: k, estimator: estimator)
                var fast: [Double] = [], reference: [Double] = []
                for _ in 0..<rounds {
                    fast.append(try ThroughputBench.stepSeconds(data, options: o, warmup: warmup, repeats: steps).mean)
                    setenv("ELBOLAB_KERNELS", "portable", 1)
                    defer { unsetenv("ELBOLAB_KERNELS") }
                    reference.append(try ThroughputBench.stepSeconds(data, options: o, warmup: warmup, repeats: steps).mean)
                }
                let f = Timings(samples: fast), r = Timings(samples: reference)
                rates.add([String(k), estimator.rawValue, fixed(1 / f.median, 0), fixed(1 / f.min, 0), fixed(1 / r.median, 0),
                           fixed(1 / r.min, 0), fixed(r.median / f.median, 1) + "×"])
                rateJSON.append(.object([("particles", jint(k)), ("estimator", .string(estimator.rawValue)),
                                         ("one_pass_steps_per_second_median", jnum(1 / f.median)),
                                         ("one_pass_steps_per_second_best", jnum(1 / f.min)),
                                         ("reference_steps_per_second_median", jnum(1 / r.median)),
                                         ("reference_steps_per_second_best", jnum(1 / r.min))]))
            }
        }
        md += "**Step rate** of the full-batch joint IWAE step (DReG for the encoder; the IWAE estimator costs the same): "
        md += "\(rounds) interleaved rounds, each timing a fresh engine's steps (400/K of them, at least 5, after a tenth as "
        md += "many warm-up steps) with the one-pass kernel (`LinearEncoderImportanceWeighted`, the default where the vector "
        md += "kernels run) and then with the reference route (`ELBOLAB_KERNELS=portable`: `ImportanceWeightedGradient` "
        md += "between the encoder's forward and backward passes). A round's figure is its mean step; median and best of the rounds.\n\n"
        md += rates.markdown + "\n\n"
        json.append(("step_rates", .array(rateJSON)))

        // Time to tolerance, K = 10, over seeds.
        let seeds: [UInt64] = quick ? [1, 2] : [1, 2, 3, 4, 5]
        let cap = quick ? 2.0 : 4.0
        var ttt = Table(["estimator", "K", "s→0.01 median", "s→0.01 min–max", "reached", "s→0.001 median", "s→0.001 min–max",
                         "reached", "steps/s (median)"], numeric: [1, 2, 5, 8])
        var tttJSON: [JSON] = []
        for estimator in [GradientEstimator.reparam, .dreg] {
            var to01: [Double] = [], to001: [Double] = [], sps: [Double] = []
            var perSeed: [JSON] = []
            for seed in seeds {
                note("iwae: time to tolerance \(estimator.rawValue) K = 10 seed \(seed)")
                var o = options(particles: 10, estimator: estimator, seed: seed)
                o.maxSeconds = cap
                o.window = 1_000_000   // no stop rule: every run goes to the cap, as the peers' do
                let result = try FitRunner().fit(data, options: o)
                let a = result.secondsTo(within: 0.01), b = result.secondsTo(within: 0.001)
                if let a { to01.append(a) }
                if let b { to001.append(b) }
                if let last = result.final, last.seconds > 0 { sps.append(Double(last.iteration) / last.seconds) }
                perSeed.append(.object([("seed", jint(Int(seed))), ("seconds_to_0.01", jnum(a)), ("seconds_to_0.001", jnum(b)),
                                        ("iterations", jint(result.final?.iteration)), ("train_seconds", jnum(result.final?.seconds))]))
            }
            func range(_ xs: [Double]) -> String { xs.isEmpty ? "—" : "\(fixed(xs.min()!))–\(fixed(xs.max()!))" }
            ttt.add([estimator.rawValue, "10", fixed(median(to01)), range(to01), "\(to01.count) of \(seeds.count)",
                     fixed(median(to001)), range(to001), "\(to001.count) of \(seeds.count)", fixed(median(sps), 0)])
            tttJSON.append(.object([("estimator", .string(estimator.rawValue)), ("particles", jint(10)),
                                    ("seconds_to_0.01_median", jnum(median(to01))), ("reached_0.01", jint(to01.count)),
                                    ("seconds_to_0.001_median", jnum(median(to001))), ("reached_0.001", jint(to001.count)),
                                    ("seeds", jint(seeds.count)), ("runs", .array(perSeed))]))
        }
        md += "**Time to tolerance**, joint IWAE with K = 10 (`fit --strategy joint --objective iwae --particles 10 --gradient "
        md += "reparam|dreg`, defaults otherwise: linear encoder, full batch, Adam 0.1/(1+t/100)), seeds "
        md += seeds.map(String.init).joined(separator: ", ") + ", each run to \(formatNumber(cap)) training seconds with no stop rule: "
        md += "training seconds until the exact log-likelihood at the fitted θ (what an IWAE run tracks) is within 0.01 and "
        md += "0.001 nats/point of the MLE's (read at the runner's logged rows, up to ~12% late). The median is of the seeds that reached "
        md += "the tolerance. NumPyro's RenyiELBO(alpha=0, num_particles=10) is set beside these by `Benchmarks/peers.sh`.\n\n"
        md += ttt.markdown + "\n\n"
        json.append(("time_to_tolerance", .array(tttJSON)))
        return SectionReport(markdown: md, json: .object(json))
    }
}
