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
    }

    /// The CSV header of `variance.csv`.
    public static let header = ["estimator", "kl", "samples", "block", "coordinates", "repeats", "total_variance",
                                "exact_norm2", "relative_variance", "mean_error2", "expected_mean_error2"]

    /// Rows as a table.
    public static func table(_ rows: [Row]) -> CSVTable {
        CSVTable(header: header, rows: rows.map { r in
            [r.estimator.rawValue, r.kl.rawValue, String(r.samples), r.block, String(r.coordinates), String(r.repeats),
             field(r.totalVariance), field(r.exactNorm2), field(r.totalVariance / r.exactNorm2), field(r.meanError2),
             field(r.totalVariance / Double(r.repeats))]
        }, name: "variance.csv")
    }

    /// Warms up `spec.warmup`, freezes (θ, q), and measures every setting.
    ///
    /// Each setting draws from its own stream, seeded from `seed` and the setting's index, so the
    /// figures do not depend on how the settings are spread over `workers` threads.
    /// - Returns: the rows, by block, then estimators × KL × samples, and a one-line note on (θ, q).
    public static func run(_ spec: VarianceSpec, data: Dataset, seed: UInt64, workers: Int) throws -> (rows: [Row], note: String) {
        var options = spec.warmup
        options.seed = seed
        let engine = try makeEngine(options, data: data)
        for _ in 0..<spec.warmupIterations { _ = try engine.step() }
        let model = engine.model
        let q = try engine.posteriors()
        guard q.family == .diagonal else {
            throw InputError("the gradient-variance warm-up must leave a mean-field (diagonal) q")
        }
        let score = try Scorer.score(data: data, model: model, q: q)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: options.latent, constraints: options.constraints)

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
        var combos: [(GradientEstimator, KLEstimator, Int)] = []
        for e in spec.estimators { for k in spec.kl { for s in spec.samples { combos.append((e, k, s)) } } }
        let settings = combos

        let results = ResultSlots<[Row]>(count: settings.count)
        let queue = JobQueue(order: Array(settings.indices).sorted { settings[$0].2 > settings[$1].2 })
        let repeats = spec.repeats
        let (frozenMeans, frozenLogV) = (means, logVariances)
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, settings.count))) { _ in
            while let index = queue.take() {
                let (estimator, kl, samples) = settings[index]
                let rng = RandomSource(seed: seed &* 1_000_003 &+ UInt64(index) &+ 17)
                var accumulators = [Welford(count: exact.model.count), Welford(count: exact.variational.count)]
                for _ in 0..<repeats {
                    let g = flatten(ELBOGradient.meanField(batch: frozenBatch, model: model, means: frozenMeans,
                                                           logVariances: frozenLogV, estimator: estimator, kl: kl,
                                                           samples: samples, rng: rng))
                    accumulators[0].add(g.model)
                    accumulators[1].add(g.variational)
                }
                let rows = [("variational", exact.variational, accumulators[1]), ("model", exact.model, accumulators[0])].map { block, ex, acc in
                    Row(estimator: estimator, kl: kl, samples: samples, block: block, coordinates: ex.count, repeats: repeats,
                        totalVariance: acc.totalVariance, exactNorm2: dot(ex, ex),
                        meanError2: zip(acc.mean, ex).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) })
                }
                results.set(index, rows)
            }
        }
        let note = "(θ, q) frozen after \(spec.warmupIterations) iterations of \(options.strategy.rawValue) "
            + "(\(options.encoder.rawValue) encoder, \(options.resolvedGradient.rawValue) gradients, seed \(seed)): "
            + "exact ELBO \(String(format: "%.4f", score.elbo)), \(String(format: "%.3g", mle.logLikelihood - score.elbo)) nats/point below the MLE; "
            + "the batch is the first \(n) points; \(repeats) independent estimates per setting."
        // Grouped by block, then setting: each plotted line's points are consecutive rows.
        let all = results.values.flatMap { $0 ?? [] }
        return (all.filter { $0.block == "variational" } + all.filter { $0.block == "model" }, note)
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

    /// The log–log plot of variance against K, one panel per block.
    static func script(experiment: String, rows: [Row]) -> String {
        let combos: [(GradientEstimator, KLEstimator)] = rows.reduce(into: []) { acc, r in
            if !acc.contains(where: { $0 == (r.estimator, r.kl) }) { acc.append((r.estimator, r.kl)) }
        }
        let colors = ["reparam": ["#1f77b4", "#17becf"], "score": ["#d62728", "#ff7f0e"]]
        func panel(_ block: String, _ title: String) -> String {
            var parts: [String] = []
            for (e, k) in combos {
                let color = colors[e.rawValue]?[k == .analytic ? 0 : 1] ?? "#333333"
                let sel = "(strcol(1) eq '\(e.rawValue)' && strcol(2) eq '\(k.rawValue)' && strcol(4) eq '\(block)' ? $3 : NaN)"
                parts.append("'variance.csv' skip 1 using \(sel):7 with linespoints lw 2 pt 7 dt \(k == .analytic ? 1 : 2) lc rgb '\(color)' title '\(e.rawValue), \(k.rawValue) KL'")
            }
            // A 1/K reference through the first setting at its smallest K.
            if let first = rows.filter({ $0.block == block }).min(by: { $0.samples < $1.samples }), first.totalVariance > 0 {
                parts.append("\(formatNumber(first.totalVariance * Double(first.samples)))/x with lines dt 3 lc rgb '#555555' title '∝ 1/K'")
            }
            return """
                set title \(PlotScripts.quote(title))
                plot \\
                  \(parts.joined(separator: ", \\\n      "))
            """
        }
        let header = """
        set logscale xy
        set xlabel 'samples K per point (log scale)'
        set ylabel 'total variance over coordinates (log scale)'
        set format y '%.0e'
        set grid
        set key bottom left
        set xrange [*:*]
        """
        let body = """
            set multiplot layout 1,2 title \(PlotScripts.quote("\(experiment): variance of the ELBO gradient at a fixed (θ, q)"))
        \(panel("variational", "q's parameters (m_n, log v_n)"))
        \(panel("model", "θ = (W, b, s2): pathwise for both estimators"))
            unset multiplot
        """
        return PlotScripts.frame(stem: "variance", width: 1300, height: 600, header: header, body: body)
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
