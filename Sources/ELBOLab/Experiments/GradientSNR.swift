import Foundation

/// The signal-to-noise ratio of the gradient estimators of the importance-weighted bound
/// against the number of particles K (Rainforth et al. 2018; Tucker et al. 2019; §14).
///
/// At one fixed (θ, φ), each estimator is called R times; per component i of a block,
/// SNR_i = |mean_i| / sd_i over the R estimates, and a block (encoder φ, decoder θ) is
/// summarised by the geometric mean of its components' SNRs, which a few large components
/// cannot dominate. Expected slopes on log–log axes: −½ (IWAE, encoder), +½ (decoder), positive
/// (DReG, encoder). An SNR estimated from R repeats has a floor near 0.8/√R even where the true
/// SNR is zero, so R must keep that floor well below the values reported.
public enum GradientSNRStudy {
    /// One estimator, K and block: a row of `snr.csv`.
    public struct Row: Sendable, Equatable {
        public var estimator: ImportanceWeightedEstimator
        public var particles: Int
        /// `encoder` (φ) or `decoder` (θ = W, b, s2).
        public var block: String
        /// The geometric mean over the block's components of |mean| / sd.
        public var snr: Double
        /// The median over the block's components of |mean| / sd.
        public var medianSNR: Double
        public var repeats: Int
    }

    /// The header of `snr.csv`.
    public static let header = ["estimator", "particles", "block", "snr"]

    /// Rows as `snr.csv`.
    public static func table(_ rows: [Row]) -> CSVTable {
        CSVTable(header: header, rows: rows.map { [$0.estimator.rawValue, String($0.particles), $0.block, field($0.snr)] },
                 name: "snr.csv")
    }

    /// A fixed point away from the optimum, as in §14's check: θ = the MLE with W scaled by
    /// `loadingScale`, and a linear encoder at that θ's best mean-field q (§6) whose means are
    /// off by `meanOffset` posterior sds (a shared shift and a random per-weight part of the same
    /// size) and whose variances are `varianceFactor` times the best, with random log-variance
    /// weights of sd log(`varianceFactor`), so every encoder weight has a gradient to measure.
    public static func setting(data: Dataset, latent: Int, loadingScale: Double = 0.8, meanOffset: Double = 0.3,
                               varianceFactor: Double = 1.5,
                               rng: RandomSource) throws -> (model: LinearGaussianModel, encoder: LinearEncoder) {
        var model = try LinearGaussianModel.maximumLikelihood(for: data, latent: latent).model
        model.loadings = loadingScale * model.loadings
        let m = model.innerMatrix, chol = try Cholesky(symmetrized(m))
        let j = latent, d = data.dimension
        let a = chol.solve(model.loadings.transposed)                       // M⁻¹Wᵀ, J × D
        let delta = (0..<d).map { data.mean[$0] - model.offset[$0] }
        let c0 = a.times(delta)
        let sd = (0..<j).map { (model.noiseVariance / m[$0, $0]).squareRoot() }
        var encoder = LinearEncoder(data: data, latent: j)
        encoder.set(meanWeights: a, meanBias: (0..<j).map { c0[$0] + meanOffset * sd[$0] },
                    logVariance: (0..<j).map { log(varianceFactor * sd[$0] * sd[$0]) })
        // The encoder's inputs have about unit norm, so a weight change of s moves an output by about s.
        for c in 0..<j {
            for i in 0..<d {
                encoder.parameters[c * d + i] += meanOffset * sd[c] * rng.gaussian()
                encoder.parameters[(j + c) * d + i] = log(varianceFactor) * rng.gaussian()
            }
        }
        return (model, encoder)
    }

    /// SNRs of every estimator at every K, each setting on its own stream seeded from `seed`
    /// and the setting's index (the figures do not depend on the order they are computed in).
    public static func run(batch: Batch, model: LinearGaussianModel, encoder: any AmortizedEncoder, particles: [Int],
                           repeats: Int, estimators: [ImportanceWeightedEstimator] = ImportanceWeightedEstimator.allCases,
                           seed: UInt64) -> [Row] {
        var rows: [Row] = []
        let phiCount = encoder.parameters.count
        let thetaCount = model.dimension * model.latent + model.dimension + 1
        for (e, estimator) in estimators.enumerated() {
            for (index, k) in particles.enumerated() {
                let rng = RandomSource(seed: seed &+ UInt64(e * particles.count + index) &* 0x9E37_79B9)
                let gradient = ImportanceWeightedGradient()
                var phi = Welford(count: phiCount), theta = Welford(count: thetaCount)
                for _ in 0..<max(2, repeats) {
                    let g = gradient.encoder(batch: batch, model: model, encoder: encoder, particles: k,
                                             estimator: estimator, rng: rng)
                    phi.add(g.encoder)
                    theta.add(g.model.loadings.storage + g.model.offset + [g.model.noiseVariance])
                }
                for (block, moments) in [("encoder", phi), ("decoder", theta)] {
                    let snr = moments.signalToNoise
                    rows.append(Row(estimator: estimator, particles: k, block: block, snr: geometricMean(snr),
                                    medianSNR: median(snr), repeats: max(2, repeats)))
                }
            }
        }
        return rows
    }

    /// The least-squares slope of log SNR against log K over the rows of one estimator and block
    /// with K ≥ `from`; nil with fewer than two such rows.
    public static func slope(_ rows: [Row], estimator: ImportanceWeightedEstimator, block: String, from: Int = 1,
                             median useMedian: Bool = false) -> Double? {
        let points = rows.filter { $0.estimator == estimator && $0.block == block && $0.particles >= from }
            .map { (log(Double($0.particles)), log(useMedian ? $0.medianSNR : $0.snr)) }
            .filter { $0.1.isFinite }
        guard points.count >= 2 else { return nil }
        let mx = points.map(\.0).reduce(0, +) / Double(points.count)
        let my = points.map(\.1).reduce(0, +) / Double(points.count)
        let sxy = points.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        let sxx = points.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
        return sxx > 0 ? sxy / sxx : nil
    }

    /// exp(mean log x) over the positive finite entries (a component with no spread, or no
    /// signal at all, has no SNR to average); 0 when there are none.
    static func geometricMean(_ xs: [Double]) -> Double {
        let logs = xs.filter { $0 > 0 && $0.isFinite }.map { log($0) }
        return logs.isEmpty ? 0 : exp(logs.reduce(0, +) / Double(logs.count))
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.filter { $0.isFinite }.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
    }

    /// Per-component running mean and variance (Welford).
    struct Welford {
        private(set) var n = 0
        private var mean: [Double], m2: [Double]
        init(count: Int) { mean = [Double](repeating: 0, count: count); m2 = mean }
        mutating func add(_ x: [Double]) {
            n += 1
            let c = Double(n)
            for i in x.indices { let d = x[i] - mean[i]; mean[i] += d / c; m2[i] += d * (x[i] - mean[i]) }
        }
        /// |mean| / sd per component (sd with divisor n − 1); +∞ where sd is 0.
        var signalToNoise: [Double] {
            mean.indices.map { i in
                let sd = (m2[i] / Double(max(n - 1, 1))).squareRoot()
                return sd > 0 ? abs(mean[i]) / sd : .infinity
            }
        }
    }
}
