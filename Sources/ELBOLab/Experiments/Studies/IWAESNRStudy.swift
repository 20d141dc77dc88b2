import Foundation

/// The signal-to-noise ratio of the IWAE and DReG gradient estimators against K (§14;
/// Rainforth et al. 2018, Tucker et al. 2019), measured at fixed (θ, φ) away from the optimum
/// (``GradientSNRStudy/setting(data:latent:loadingScale:meanOffset:varianceFactor:rng:)``, one
/// setting per seed).
///
/// Per component, SNR = |mean| / sd over R repeats; a block (encoder φ, decoder θ) is the
/// median (or geometric mean) of its components' SNRs, over the components of every seed's setting.
/// Slopes of log SNR against log K are fitted per seed over K ≥ ``Settings/slopeFrom``.
public enum IWAESNRStudy {
    public struct Settings: Sendable, Equatable {
        public var particles: [Int] = [1, 3, 10, 30, 100, 300, 1000]
        /// R, the independent estimates per estimator and K.
        public var repeats: Int = 4000
        /// The batch: the first this many points.
        public var points: Int = 10
        public var estimators: [ImportanceWeightedEstimator] = [.iwae, .dreg]
        /// The setting: θ = the MLE with W scaled by this …
        public var loadingScale: Double = 0.8
        /// … and q's means this many posterior sds off, its variances this factor too large.
        public var meanOffset: Double = 0.3
        public var varianceFactor: Double = 1.5
        /// The setting's random per-weight log-variances are multiplied by this: at 0 every point's
        /// q has variances `varianceFactor` × the best (so χ²(p‖q) and Var[w²] stay finite, §13);
        /// at 1 some points' variances may fall below half the posterior's, where the weights are
        /// heavy-tailed and the 1/K asymptotics the slopes rest on do not apply.
        public var varianceSpread: Double = 0
        /// Slopes are fitted over K ≥ this.
        public var slopeFrom: Int = 10
        /// How a block's component SNRs are summarised: the median (default; the components
        /// nearest the floor 0.8/√R do not move it) or the geometric mean.
        public var blockSummary: BlockSummary = .median

        public init() {}
    }

    public enum BlockSummary: String, Sendable, CaseIterable {
        case median
        case geometricMean = "geometric-mean"

        func apply(_ xs: [Double]) -> Double {
            self == .median ? GradientSNRStudy.median(xs) : IWAESNRStudy.geometricMean(xs)
        }
    }

    /// Per-component running sums of one (seed, estimator, K).
    struct Moments: Sendable {
        var encoder: [Double], decoder: [Double]
    }

    /// |mean| / sd per component from sums of x and x² (sd with divisor R − 1), dropping
    /// components with no spread.
    static func snr(sum: [Double], squares: [Double], count r: Int) -> [Double] {
        let n = Double(r)
        return zip(sum, squares).compactMap { s, q in
            let mean = s / n
            let variance = max(0, (q - n * mean * mean) / (n - 1))
            return variance > 0 ? abs(mean) / variance.squareRoot() : nil
        }
    }

    static func geometricMean(_ xs: [Double]) -> Double {
        let logs = xs.filter { $0 > 0 && $0.isFinite }.map { log($0) }
        return logs.isEmpty ? 0 : exp(logs.reduce(0, +) / Double(logs.count))
    }

    /// The rows of `snr.csv` (over all seeds) and each seed's rows (for the slopes' spread).
    public static func run(data: Dataset, latent: Int, settings s: Settings, seeds: [UInt64],
                           workers: Int) throws -> (rows: [GradientSNRStudy.Row], perSeed: [[GradientSNRStudy.Row]],
                                                    corrected: [GradientSNRStudy.Row]) {
        guard s.points <= data.count else {
            throw InputError("the iwae-snr study's batch of \(s.points) points is larger than the \(data.count) points of the data")
        }
        let settingsBySeed = try seeds.map { seed in
            var setting = try GradientSNRStudy.setting(data: data, latent: latent, loadingScale: s.loadingScale, meanOffset: s.meanOffset,
                                                       varianceFactor: s.varianceFactor, rng: RandomSource(seed: seed))
            // The log-variance weights follow the mean weights in the encoder's parameters (LinearEncoder's layout).
            let d = data.dimension
            for c in 0..<latent { for i in 0..<d { setting.encoder.parameters[(latent + c) * d + i] *= s.varianceSpread } }
            return setting
        }
        let ks = s.particles, es = s.estimators
        let items = seeds.count * es.count * ks.count
        // Longest items first would balance better, but item order fixes nothing numeric: each has its own stream.
        let moments: [Moments] = try StudyFormat.parallel(items, workers: workers) { i in
            let si = i / (es.count * ks.count), ei = (i / ks.count) % es.count, ki = i % ks.count
            let (model, encoder) = settingsBySeed[si]
            let rng = RandomSource(seed: seeds[si] &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(ei * ks.count + ki) &+ 1)
            let gradient = ImportanceWeightedGradient()
            // The batch: the first `points` rows (Batch is not Sendable, so each item gathers its own).
            var frozen = Batch(capacity: s.points, dimension: data.dimension, mean: data.mean)
            frozen.gather(from: data, rows: Array(0..<s.points)[...])
            let phiCount = encoder.parameters.count, thetaCount = model.dimension * model.latent + model.dimension + 1
            var sums = Moments(encoder: [Double](repeating: 0, count: 2 * phiCount), decoder: [Double](repeating: 0, count: 2 * thetaCount))
            for _ in 0..<s.repeats {
                let g = gradient.encoder(batch: frozen, model: model, encoder: encoder, particles: ks[ki], estimator: es[ei], rng: rng)
                for (c, x) in g.encoder.enumerated() { sums.encoder[c] += x; sums.encoder[phiCount + c] += x * x }
                let theta = g.model.loadings.storage + g.model.offset + [g.model.noiseVariance]
                for (c, x) in theta.enumerated() { sums.decoder[c] += x; sums.decoder[thetaCount + c] += x * x }
            }
            return sums
        }
        var rows: [GradientSNRStudy.Row] = [], corrected: [GradientSNRStudy.Row] = []
        var perSeed = [[GradientSNRStudy.Row]](repeating: [], count: seeds.count)
        // Estimator, then block, then K: each curve's rows are contiguous (gnuplot breaks a line at a filtered row).
        for (ei, e) in es.enumerated() {
            for block in ["encoder", "decoder"] {
                for (ki, k) in ks.enumerated() {
                    var all: [Double] = []
                    for si in seeds.indices {
                        let m = moments[si * es.count * ks.count + ei * ks.count + ki]
                        let v = block == "encoder" ? m.encoder : m.decoder
                        let half = v.count / 2
                        let comps = snr(sum: Array(v[..<half]), squares: Array(v[half...]), count: s.repeats)
                        all += comps
                        perSeed[si].append(GradientSNRStudy.Row(estimator: e, particles: k, block: block, snr: s.blockSummary.apply(comps),
                                                                medianSNR: GradientSNRStudy.median(comps), repeats: s.repeats))
                    }
                    rows.append(GradientSNRStudy.Row(estimator: e, particles: k, block: block, snr: s.blockSummary.apply(all),
                                                     medianSNR: GradientSNRStudy.median(all), repeats: s.repeats))
                    // §14's bias-corrected SNR² = max(0, x̄² − s²/R)/s² per component: zero for some, so its median.
                    let fixed = GradientSNRStudy.median(all.map { (max(0, $0 * $0 - 1 / Double(s.repeats))).squareRoot() })
                    corrected.append(GradientSNRStudy.Row(estimator: e, particles: k, block: block, snr: fixed, medianSNR: fixed,
                                                          repeats: s.repeats))
                }
            }
        }
        return (rows, perSeed, corrected)
    }

    /// The three curves the papers make claims about, with their expected slopes.
    static let claims: [(ImportanceWeightedEstimator, String, Double, String)] = [
        (.iwae, "encoder", -0.5, "IWAE encoder"), (.iwae, "decoder", 0.5, "decoder"), (.dreg, "encoder", 0.5, "DReG encoder"),
    ]

    static func product(data: Dataset, latent: Int, settings s: Settings, seeds: [UInt64], workers: Int,
                        experiment: String) throws -> StudyProduct {
        let (rows, perSeed, corrected) = try run(data: data, latent: latent, settings: s, seeds: seeds, workers: workers)
        let g = { (x: Double) in StudyFormat.g(x) }
        let floor = 0.8 / Double(s.repeats).squareRoot()
        var slopeRows: [[String]] = []
        var findings: [String] = []
        var slopeText: [String] = []
        for (e, block, expected, name) in claims where s.estimators.contains(e) {
            guard let pooled = GradientSNRStudy.slope(rows, estimator: e, block: block, from: s.slopeFrom) else { continue }
            let seedSlopes = perSeed.compactMap { GradientSNRStudy.slope($0, estimator: e, block: block, from: s.slopeFrom) }
            for (i, v) in seedSlopes.enumerated() {
                slopeRows.append([e.rawValue, block, String(seeds[i]), StudyFormat.csv(v)])
            }
            slopeRows.append([e.rawValue, block, "all", StudyFormat.csv(pooled)])
            let lo = seedSlopes.min() ?? pooled, hi = seedSlopes.max() ?? pooled
            let spread = seedSlopes.count > 1 ? " (per seed \(g(lo)) to \(g(hi)) over \(seedSlopes.count) settings)" : ""
            let verdict: String
            if abs(pooled - expected) <= 0.15 && (seedSlopes.count < 2 || (lo - 0.1 <= expected && expected <= hi + 0.1)) {
                verdict = "close to the predicted \(expected > 0 ? "+" : "−")½"
            } else if pooled * expected > 0 {
                verdict = "the predicted sign but not clearly \(expected > 0 ? "+" : "−")½"
            } else {
                verdict = "not the predicted sign: the claim is not reproduced here"
            }
            slopeText.append("\(name) \(g(pooled))\(spread), \(verdict)")
        }
        if !slopeText.isEmpty {
            findings.append("Fitted slopes of log SNR against log K over K ≥ \(s.slopeFrom): " + slopeText.joined(separator: "; ") + " (snr.png, snr-slopes.csv).")
        }
        if let iw1 = rows.first(where: { $0.estimator == .iwae && $0.block == "encoder" && $0.particles == s.particles.min() }),
           let dr1 = rows.first(where: { $0.estimator == .dreg && $0.block == "encoder" && $0.particles == s.particles.min() }),
           let iwK = rows.first(where: { $0.estimator == .iwae && $0.block == "encoder" && $0.particles == s.particles.max() }),
           let drK = rows.first(where: { $0.estimator == .dreg && $0.block == "encoder" && $0.particles == s.particles.max() }) {
            findings.append("At K = \(iwK.particles) the DReG encoder gradient's SNR is \(g(drK.snr)) against IWAE's \(g(iwK.snr)) (\(g(drK.snr / iwK.snr))× larger); at K = \(iw1.particles) they are \(g(dr1.snr)) (DReG, there the path-derivative estimator) and \(g(iw1.snr)) (IWAE, the reparameterised ELBO gradient) — a tighter bound starves the IWAE encoder gradient of signal, DReG's is not starved (snr.csv, snr.png).")
        }
        let smallest = rows.map(\.snr).min() ?? .nan
        var floorText = smallest > 3 * floor
            ? "Every SNR reported is at least \(g(smallest / floor))× the floor 0.8/√R = \(g(floor)) that |mean|/sd shows from R = \(s.repeats) repeats even when the true SNR is 0, so the floor does not shape these slopes"
            : "The smallest SNR reported, \(g(smallest)), is only \(g(smallest / floor))× the floor 0.8/√R = \(g(floor)) of R = \(s.repeats) repeats: the lowest points may be pulled up by it, flattening the fitted slope"
        if s.estimators.contains(.iwae), let raw = GradientSNRStudy.slope(rows, estimator: .iwae, block: "encoder", from: s.slopeFrom) {
            if let fixed = GradientSNRStudy.slope(corrected, estimator: .iwae, block: "encoder", from: s.slopeFrom) {
                floorText += "; with the bias-corrected per-component SNR of §14 (median over the components) the IWAE encoder's slope is \(g(fixed)) against \(g(raw)) uncorrected, \(abs(fixed - raw) < 0.02 ? "so the floor barely moves it" : fixed < raw ? "so the floor flattens the uncorrected slope and more repeats would steepen it" : "a change the floor alone does not explain")"
            } else {
                floorText += "; the bias-corrected SNR of §14 is 0 for most components at some K, so it gives no slope here"
            }
        }
        findings.append(floorText + " (snr.csv).")
        let markdown = "## SNR (\(s.blockSummary == .median ? "median" : "geometric mean") over the block's components)\n\n" + StudyFormat.table(
            ["estimator", "block"] + s.particles.map { "K = \($0)" },
            s.estimators.flatMap { e in ["encoder", "decoder"].map { b in
                [e.rawValue, b] + s.particles.map { k in g(rows.first { $0.estimator == e && $0.block == b && $0.particles == k }?.snr ?? .nan) }
            } })
        let method = "\(seeds.count) setting(s) (seeds \(seeds.map(String.init).joined(separator: ", "))): θ = the MLE with W × \(g(s.loadingScale)), a linear encoder at that θ's best mean-field q with means \(g(s.meanOffset)) sd off and variances × \(g(s.varianceFactor)) (`GradientSNRStudy.setting`, its random log-variance weights × \(g(s.varianceSpread))); a batch of \(s.points) points; R = \(s.repeats) repeats per estimator and K; a block is the \(s.blockSummary == .median ? "median" : "geometric mean") of its components' |mean|/sd"
        let slopes = CSVTable(header: ["estimator", "block", "seed", "slope"], rows: slopeRows, name: "snr-slopes.csv")
        return StudyProduct(tables: [GradientSNRStudy.table(rows), slopes], figures: [("snr", script(experiment, rows: rows, settings: s))],
                            markdown: markdown, findings: findings, method: method)
    }

    static func script(_ experiment: String, rows: [GradientSNRStudy.Row], settings s: Settings) -> String {
        var parts: [String] = []
        // Colour = estimator, dash = block.
        for (ei, e) in s.estimators.enumerated() {
            for (bi, block) in ["encoder", "decoder"].enumerated() {
                parts.append("'snr.csv' skip 1 using (strcol(1) eq '\(e.rawValue)' && strcol(3) eq '\(block)' ? $2 : NaN):4 with linespoints lw 2 pt \(bi == 0 ? 7 : 5) dt \(bi == 0 ? 1 : 2) lc rgb '\(StudyFormat.palette[ei])' title '\(e.rawValue), \(block)'")
            }
        }
        // Reference slopes ±½, anchored at K = 1 on the IWAE encoder and decoder values.
        let anchor = { (e: ImportanceWeightedEstimator, b: String) in
            rows.first { $0.estimator == e && $0.block == b && $0.particles == s.particles.min() }?.snr ?? 1
        }
        let k0 = Double(s.particles.min() ?? 1)
        parts.append("\(formatNumber(anchor(.iwae, "encoder") * k0.squareRoot()))/sqrt(x) with lines dt 3 lw 1.5 lc rgb '#555555' title 'slope −½'")
        parts.append("\(formatNumber(anchor(.iwae, "decoder") / k0.squareRoot()))*sqrt(x) with lines dt 4 lw 1.5 lc rgb '#555555' title 'slope +½'")
        parts.append("\(formatNumber(0.8 / Double(s.repeats).squareRoot())) with lines dt 2 lw 1 lc rgb '#d62728' title 'floor 0.8/√R'")
        let header = """
        set title \(StudyFormat.quote("\(experiment): gradient SNR against K (\(s.blockSummary == .median ? "median" : "geometric mean") over each block's components, R = \(s.repeats))"))
        set xlabel 'K, particles per point (log scale)'
        set ylabel 'SNR = |mean| / sd (log scale)'
        set logscale xy
        set format x '%g'
        set format y '%g'
        set xrange [\(formatNumber(Double(s.particles.min() ?? 1) * 0.8)):\(formatNumber(Double(s.particles.max() ?? 1000) * 1.25))]
        set grid
        set key outside right top
        """
        return StudyFormat.frame(stem: "snr", width: 1100, header: header, body: "  plot \\\n    " + parts.joined(separator: ", \\\n    "))
    }
}
