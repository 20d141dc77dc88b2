// Section 1: time and iterations to 0.1 / 0.01 / 0.001 nats/point below the MLE, steps per
// second and the final gap, for every strategy with its default settings and with the notes'
// Monte Carlo method, on the peers' synth file and on simulated data of growing N.
import Foundation
import ELBOLab

/// One way of running a strategy.
struct Method: Sendable {
    /// `default` or `notes`.
    let kind: String
    let strategy: Strategy
    /// What the settings are, in words.
    let settings: String
    let configure: @Sendable (inout FitOptions) -> Void

    static let all: [Method] = [
        Method(kind: "default", strategy: .em, settings: "exact EM (moment form)") { _ in },
        Method(kind: "default", strategy: .perDatapoint, settings: "closed-form E, closed-form M") { _ in },
        Method(kind: "default", strategy: .amortized, settings: "linear encoder, exact gradient, Adam") { _ in },
        Method(kind: "default", strategy: .joint, settings: "linear encoder, exact gradient, Adam") { _ in },
        Method(kind: "notes", strategy: .perDatapoint, settings: "Adam E-step (5 reparam steps), closed-form M") { $0.eSolver = .adam },
        Method(kind: "notes", strategy: .amortized, settings: "reparam, 1 sample, analytic KL") { $0.gradient = .reparam; $0.samples = 1 },
        Method(kind: "notes", strategy: .joint, settings: "reparam, 1 sample, analytic KL") { $0.gradient = .reparam; $0.samples = 1 },
    ]
}

/// A data set of section 1 with its caps.
struct ConvergenceCase {
    let label: String
    let data: Dataset
    let latent: Int
    /// Training-seconds cap per fit.
    let maxSeconds: Double
    /// Iteration cap per fit (nil: the strategy's default).
    let iterations: Int?
}

struct ConvergenceRow {
    let dataset: String
    let n: Int
    let dim: Int
    let method: Method
    let iterations: Int
    let trainSeconds: Double
    let wallSeconds: Double
    let secondsTo: [Double?]
    let iterationsTo: [Int?]
    let finalGap: Double?
    let stop: String
    let fault: String?

    var stepsPerSecond: Double? { trainSeconds > 0 ? Double(iterations) / trainSeconds : nil }
}

enum ConvergenceBench {
    static let thresholds = FitResult.thresholds   // 0.1, 0.01, 0.001

    /// Simulated data from a random model (W, b ~ N(0, 1), s2 = 0.5), as `elbolab simulate` makes it.
    static func simulate(count: Int, dimension: Int, latent: Int, seed: UInt64 = 1) -> Dataset {
        let rng = RandomSource(seed: seed)
        let truth = LinearGaussianModel.random(dimension: dimension, latent: latent, noiseVariance: 0.5, using: rng)
        return Dataset(points: truth.sample(count: count, using: rng), name: "simulated N=\(count) D=\(dimension) J=\(latent)")
    }

    static func cases(quick: Bool, synthPath: String?) throws -> [ConvergenceCase] {
        var out: [ConvergenceCase] = []
        if let synthPath {
            out.append(ConvergenceCase(label: "synth", data: try Dataset.load(csv: synthPath), latent: 3,
                                       maxSeconds: quick ? 2 : 8, iterations: nil))
        }
        let sizes: [(Int, Double, Int?)] = quick
            ? [(1_000, 1, nil), (10_000, 1, nil), (100_000, 1, 200)]
            : [(1_000, 3, nil), (10_000, 3, nil), (100_000, 4, nil), (1_000_000, 3, 70)]
        for (n, seconds, iterations) in sizes {
            out.append(ConvergenceCase(label: "sim", data: simulate(count: n, dimension: 20, latent: 3),
                                       latent: 3, maxSeconds: seconds, iterations: iterations))
        }
        return out
    }

    static func run(_ c: ConvergenceCase, method m: Method) -> ConvergenceRow {
        var options = FitOptions(strategy: m.strategy, latent: c.latent)
        m.configure(&options)
        options.maxSeconds = c.maxSeconds
        if let cap = c.iterations { options.iterations = min(cap, options.resolvedIterations) }
        let t0 = now()
        let result: FitResult
        do {
            result = try FitRunner().fit(c.data, options: options)
        } catch {
            return ConvergenceRow(dataset: c.label, n: c.data.count, dim: c.data.dimension, method: m, iterations: 0, trainSeconds: 0,
                                  wallSeconds: now() - t0, secondsTo: thresholds.map { _ in nil },
                                  iterationsTo: thresholds.map { _ in nil }, finalGap: nil, stop: "error",
                                  fault: "\(error)")
        }
        let wall = now() - t0
        let last = result.final
        return ConvergenceRow(dataset: c.label, n: c.data.count, dim: c.data.dimension, method: m,
                              iterations: last?.iteration ?? 0, trainSeconds: last?.seconds ?? 0, wallSeconds: wall,
                              secondsTo: thresholds.map { result.secondsTo(within: $0) },
                              iterationsTo: thresholds.map { result.iterationsTo(within: $0) },
                              finalGap: last.map { result.mle.logLikelihood - $0.score.elbo },
                              stop: result.stopReason.rawValue, fault: result.fault)
    }

    static func table(_ rows: [ConvergenceRow]) -> Table {
        var t = Table(["data", "N", "strategy", "method", "iters", "train s", "steps/s",
                       "s→0.1", "s→0.01", "s→0.001", "iters→0.1/0.01/0.001", "final gap", "stop"],
                      numeric: [1, 4, 5, 6, 7, 8, 9, 11])
        for r in rows {
            t.add([r.dataset, sizeLabel(r.n), r.method.strategy.rawValue, r.method.kind, grouped(r.iterations),
                   fixed(r.trainSeconds), fixed(r.stepsPerSecond, 0),
                   fixed(r.secondsTo[0]), fixed(r.secondsTo[1]), fixed(r.secondsTo[2]),
                   r.iterationsTo.map { $0.map(String.init) ?? "—" }.joined(separator: " / "),
                   sci(r.finalGap), r.stop])
        }
        return t
    }

    static func json(_ rows: [ConvergenceRow]) -> JSON {
        .array(rows.map { r in
            var pairs: [(String, JSON)] = [
                ("dataset", .string(r.dataset)), ("n", jint(r.n)), ("dim", jint(r.dim)),
                ("strategy", .string(r.method.strategy.rawValue)), ("method", .string(r.method.kind)),
                ("settings", .string(r.method.settings)),
                ("iterations", jint(r.iterations)), ("train_seconds", jnum(r.trainSeconds)),
                ("wall_seconds", jnum(r.wallSeconds)), ("steps_per_second", jnum(r.stepsPerSecond)),
                ("seconds_to", .object(zip(thresholds, r.secondsTo).map { (formatNumber($0), jnum($1)) })),
                ("iterations_to", .object(zip(thresholds, r.iterationsTo).map { (formatNumber($0), jint($1)) })),
                ("final_gap", jnum(r.finalGap)), ("stop_reason", .string(r.stop)),
            ]
            if let f = r.fault { pairs.append(("fault", .string(f))) }
            return .object(pairs)
        })
    }
}
