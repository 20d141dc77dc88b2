import Dispatch
import Foundation

/// The variance of Monte Carlo estimates of the ELBO gradient at one fixed (θ, q), by
/// estimator (reparameterised or score function), KL term (analytic or Monte Carlo) and number
/// of samples K: the gradient-estimators experiment's study.
public enum GradientVarianceStudy {
    /// One estimator setting and parameter block: a row of `variance.csv`.
    public struct Row: Sendable, Equatable {
        public var estimator: GradientEstimator
        public var kl: KLEstimator
        public var samples: Int
        /// `variational` (each point's m_n and log v_n) or `model` (θ = W, b, s2).
        public var block: String
        public var coordinates: Int
        public var repeats: Int
        /// Σ over coordinates of the sample variance of the estimates (n − 1).
        public var totalVariance: Double
        /// ‖exact gradient‖² over the block (§7), the signal the variance is noise on.
        public var exactNorm2: Double
        /// ‖mean of the estimates − exact gradient‖²: about totalVariance / repeats when unbiased.
        public var meanError2: Double
        /// Where along training (θ, q) was frozen, e.g. `iteration 60`.
        public var stage: String = ""
        /// Score function: whether the leave-one-out baseline was subtracted.
        public var baseline: Bool = true

        /// The estimator as the report names it.
        public var name: String {
            switch (estimator, kl) {
            case (.reparam, .stl): return "stl (reparam, path derivative)"
            case (.reparam, _): return "reparam, \(kl.rawValue) KL"
            case (.score, _): return "score, \(baseline ? "leave-one-out baseline" : "no baseline"), \(kl.rawValue) KL"
            case (.exact, _): return "exact"
            case (.dreg, _): return "dreg (path derivative)"
            }
        }
    }

    /// The CSV header of `variance.csv`.
    public static let header = ["stage", "estimator", "kl", "baseline", "samples", "block", "coordinates", "repeats", "total_variance",
                                "exact_norm2", "relative_variance", "mean_error2", "expected_mean_error2"]

    /// Rows as a table.
    public static func table(_ rows: [Row]) -> CSVTable {
        CSVTable(header: header, rows: rows.map { r in
            [r.stage, r.estimator.rawValue, r.kl.rawValue, r.estimator == .score ? (r.baseline ? "leave-one-out" : "none") : "",
             String(r.samples), r.block, String(r.coordinates), String(r.repeats),
             field(r.totalVariance), field(r.exactNorm2), field(r.totalVariance / r.exactNorm2), field(r.meanError2),
             field(r.totalVariance / Double(r.repeats))]
        }, name: "variance.csv")
    }

    /// Warms up `spec.warmup`, freezes (θ, q) at each stage, and measures every setting there.
    ///
    /// Each setting draws from its own stream, seeded from `seed`, the stage and the setting's
    /// index, so the figures do not depend on how the settings are spread over `workers` threads.
    /// - Returns: the rows, by stage, block, then setting, and a note on each (θ, q).
    public static func run(_ spec: VarianceSpec, data: Dataset, seed: UInt64, workers: Int) throws -> (rows: [Row], note: String) {
        var options = spec.warmup
        options.seed = seed
        let engine = try makeEngine(options, data: data)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: options.latent, constraints: options.constraints)
        var done = 0
        var all: [Row] = [], notes: [String] = []
        for (s, stageIterations) in spec.stages.enumerated() {
            while done < stageIterations { _ = try engine.step(); done += 1 }
            let model = engine.model
            let q = try engine.posteriors()
            guard q.family == .diagonal else {
                throw InputError("the gradient-variance warm-up must leave a mean-field (diagonal) q")
            }
            let score = try Scorer.score(data: data, model: model, q: q)
            let stage = "iteration \(stageIterations)"
            notes.append("\(stage): exact ELBO \(String(format: "%.4f", score.elbo)), \(String(format: "%.3g", mle.logLikelihood - score.elbo)) nats/point below the MLE")
            all += measure(spec, data: data, model: model, q: q, seed: seed &+ UInt64(s) &* 7_919, workers: workers, stage: stage)
        }
        let n = min(spec.points ?? data.count, data.count)
        let note = "(θ, q) frozen along \(options.strategy.rawValue) training (\(options.encoder.rawValue) encoder, \(options.resolvedGradient.rawValue) gradients, seed \(seed)) at "
            + notes.joined(separator: "; ") + "; the batch is the first \(n) points; \(spec.repeats) independent estimates per setting."
        return (all, note)
    }

    /// The settings of a study: every estimator × KL × K, the score function also without its
    /// baseline when asked, and never score × stl (the same as score × mc).
    static func settings(_ spec: VarianceSpec) -> [(GradientEstimator, KLEstimator, Int, Bool)] {
        var combos: [(GradientEstimator, KLEstimator, Int, Bool)] = []
        for e in spec.estimators {
            for k in spec.kl where !(e == .score && k == .stl) {
                for s in spec.samples { combos.append((e, k, s, true)) }
            }
        }
        if spec.noBaseline && spec.estimators.contains(.score) {
            for k in spec.kl where k != .stl { for s in spec.samples where s > 1 { combos.append((.score, k, s, false)) } }
        }
        return combos
    }

    /// The variance of every setting at one frozen (θ, q).
    static func measure(_ spec: VarianceSpec, data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors, seed: UInt64,
                        workers: Int, stage: String) -> [Row] {
        let n = min(spec.points ?? data.count, data.count), j = model.latent
        var batch = n == data.count ? Batch(data) : Batch(capacity: n, dimension: data.dimension, mean: data.mean)
        if n < data.count { batch.gather(from: data, rows: Array(0..<n)[...]) }
        var means = Matrix(rows: n, cols: j), logVariances = Matrix(rows: n, cols: j)
        for p in 0..<n {
            for k in 0..<j {
                means[p, k] = q.means[p, k]
                logVariances[p, k] = log(q.scales[q.isShared ? 0 : p, k])
            }
        }
        // Read-only from here on; Batch is not declared Sendable.
        nonisolated(unsafe) let frozenBatch = batch
        let exact = flatten(ELBOGradient.meanField(batch: frozenBatch, model: model, means: means, logVariances: logVariances,
                                                   estimator: .exact, kl: .analytic, samples: 1, rng: RandomSource(seed: seed)))
        let settings = settings(spec)
        let results = ResultSlots<[Row]>(count: settings.count)
        let queue = JobQueue(order: Array(settings.indices).sorted { settings[$0].2 > settings[$1].2 })
        let repeats = spec.repeats
        let (frozenMeans, frozenLogV) = (means, logVariances)
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, settings.count))) { _ in
            while let index = queue.take() {
                let (estimator, kl, samples, baseline) = settings[index]
                let rng = RandomSource(seed: seed &* 1_000_003 &+ UInt64(index) &+ 17)
                var accumulators = [Welford(count: exact.model.count), Welford(count: exact.variational.count)]
                for _ in 0..<repeats {
                    let g = flatten(ELBOGradient.meanField(batch: frozenBatch, model: model, means: frozenMeans,
                                                           logVariances: frozenLogV, estimator: estimator, kl: kl,
                                                           samples: samples, rng: rng, baseline: baseline))
                    accumulators[0].add(g.model)
                    accumulators[1].add(g.variational)
                }
                let rows = [("variational", exact.variational, accumulators[1]), ("model", exact.model, accumulators[0])].map { block, ex, acc in
                    Row(estimator: estimator, kl: kl, samples: samples, block: block, coordinates: ex.count, repeats: repeats,
                        totalVariance: acc.totalVariance, exactNorm2: dot(ex, ex),
                        meanError2: zip(acc.mean, ex).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }, stage: stage, baseline: baseline)
                }
                results.set(index, rows)
            }
        }
        // Grouped by block, then setting: each plotted line's points are consecutive rows.
        let all = results.values.flatMap { $0 ?? [] }
        return all.filter { $0.block == "variational" } + all.filter { $0.block == "model" }
    }

    /// The gradient as (θ block: W, b, s2; variational block: m then log v).
    static func flatten(_ g: MeanFieldGradientEstimate) -> (model: [Double], variational: [Double]) {
        (g.model.loadings.storage + g.model.offset + [g.model.noiseVariance], g.means.storage + g.logVariances.storage)
    }

    /// Running mean and sum of squared deviations per coordinate (Welford).
    struct Welford {
        var n = 0
        var mean: [Double]
        var m2: [Double]

        init(count: Int) {
            mean = [Double](repeating: 0, count: count)
            m2 = [Double](repeating: 0, count: count)
        }

        mutating func add(_ x: [Double]) {
            n += 1
            let inv = 1 / Double(n)
            for i in x.indices {
                let d = x[i] - mean[i]
                mean[i] += d * inv
                m2[i] += d * (x[i] - mean[i])
            }
        }

        var totalVariance: Double { n > 1 ? m2.reduce(0, +) / Double(n - 1) : .nan }
    }

    /// The log–log plot of the variance of q's gradient against K, one panel per stage along
    /// training, one line per estimator (colour by estimator family, dash by variant). Series are
    /// keyed by their row numbers in variance.csv, never by text.
    static func script(experiment: String, rows: [Row]) -> String {
        var stages: [String] = []
        for r in rows where !stages.contains(r.stage) { stages.append(r.stage) }
        var names: [String] = []
        for r in rows where r.block == "variational" && !names.contains(r.name) { names.append(r.name) }
        func style(_ name: String) -> (String, Int) {
            let reparam = ["reparam, analytic KL": ("#1f77b4", 1), "reparam, mc KL": ("#1f77b4", 2), "stl (reparam, path derivative)": ("#2ca02c", 1)]
            if let s = reparam[name] { return s }
            if name.contains("no baseline") { return ("#d62728", name.contains("analytic") ? 4 : 2) }
            return ("#ff7f0e", name.contains("analytic") ? 1 : 2)
        }
        let top = rows.filter { $0.block == "variational" }.map(\.totalVariance).filter { $0.isFinite && $0 > 0 }
        let (lo, hi) = (top.min() ?? 1e-3, top.max() ?? 1e3)
        let ks = rows.map(\.samples)
        let kmin = Double(ks.min() ?? 1), kmax = Double(ks.max() ?? 100)
        var body = "    set multiplot layout 1,\(max(1, stages.count)) title \(PlotScripts.quote("\(experiment): variance of the ELBO gradient in q's parameters against K, at points along training (click a legend entry to hide it)"))\n"
        for (panel, stage) in stages.enumerated() {
            // One legend, in the first panel (its lines sit high, the bottom is free).
            body += panel == 0 ? "    set key bottom left font ',9' samplen 2.5\n" : "    unset key\n"
            var parts: [String] = []
            for name in names {
                let (color, dash) = style(name)
                // Row numbers of this line (data rows start at line 2 of the file; `$0` counts from 0).
                let idx = rows.indices.filter { rows[$0].stage == stage && rows[$0].block == "variational" && rows[$0].name == name }
                guard let first = idx.first, let last = idx.last else { continue }
                parts.append("'variance.csv' skip 1 every ::\(first)::\(last) using 5:9 with linespoints lw 2 pt 7 ps 0.8 dt \(dash) lc rgb '\(color)' title \(PlotScripts.quote(name))")
            }
            // A 1/K guide, placed above the lines so that it hides none of them.
            parts.append("\(formatNumber(hi * 3 * kmin))/x with lines dt 3 lw 1.5 lc rgb '#555555' title 'slope −1 (∝ 1/K)'")
            body += "    set title \(PlotScripts.quote(stage))\n    plot \\\n      " + parts.joined(separator: ", \\\n      ") + "\n"
        }
        body += "    unset multiplot"
        let header = """
        set logscale xy
        set xlabel 'samples K per point (log scale)'
        set ylabel \(PlotScripts.quote("total variance of q's gradient (nats², log scale)"))
        set format y '%.0e'
        set grid
        set xrange [\(formatNumber(kmin / 1.3)):\(formatNumber(kmax * 1.3))]
        set yrange [\(formatNumber(lo / 10)):\(formatNumber(hi * 30))]
        """
        return PlotScripts.frame(stem: "variance", width: 600 * max(1, stages.count), height: 620, header: header, body: body)
    }
}

/// Hands out job indices to worker threads in a fixed order.
final class JobQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let order: [Int]

    init(order: [Int]) { self.order = order }

    func take() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < order.count else { return nil }
        next += 1
        return order[next - 1]
    }
}

/// One result slot per job, written by whichever thread ran it.
final class ResultSlots<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T?]

    init(count: Int) { items = [T?](repeating: nil, count: count) }

    func set(_ i: Int, _ value: T) {
        lock.lock()
        items[i] = value
        lock.unlock()
    }

    var values: [T?] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}
