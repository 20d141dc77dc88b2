import Foundation

/// A Monte Carlo estimate of the importance-weighted bound L_K averaged over the data, with
/// its standard error.
public struct ImportanceWeightedEstimate: Sendable, Equatable {
    /// (1/N) Σ_n L̂_K,n in nats per point: each L̂_K,n the mean over `replicates` independent
    /// values of log (1/K) Σ_k w_k.
    public var value: Double
    /// The standard error of `value`: √(Σ_n s_n² / R) / N with s_n² the sample variance of point
    /// n's R values (exact zero when every log-weight is the same, as for q = the exact posterior).
    public var standardError: Double
    /// K, the particles inside each log-mean-exp.
    public var particles: Int
    /// R, the independent values of log (1/K) Σ_k w_k per point.
    public var replicates: Int
    /// The draws of z in all: N · K · R.
    public var draws: Int
    /// L̂_K,n for every point.
    public var pointValues: [Double]
}

/// The importance-weighted bound of Burda, Grosse & Salakhutdinov (2016) for Gaussian q (§13):
/// ```
/// L_K = E[ log (1/K) Σ_k w_k ],   w_k = p_θ(y, z_k) / q(z_k),   z_k ~ q
/// L_1 = ELBO ≤ L_K ≤ L_{K+1} ≤ log p(y)
/// ```
///
/// The log-weights go through the exact posterior p(z|y) = N(a, A), A = s2 M⁻¹ (§3), which
/// this model has in closed form:
/// ```
/// log w = log p(y) + log N(z; a, A) − log q(z)
///       = log p(y) − ½ log|A| + ½ log|S| − ½ (z − a)ᵀ (M/s2) (z − a) + ½ ‖ε‖²,   z = m + L ε
/// ```
/// so each draw costs O(J²) whatever D is, and for q = p(z|y) every weight is p(y) to rounding
/// (zero variance). The log-mean-exp over the K particles is accumulated with a running maximum
/// (no overflow, no underflow of the largest weight).
public enum ImportanceWeightedBound {
    /// An estimate of the data-averaged L_K from `replicates` (≥ 2) independent values per point.
    ///
    /// - Parameters:
    ///   - data: the N data points y_n.
    ///   - model: θ, which the weights p_θ(y, z_k) use.
    ///   - q: one Gaussian per point of `data` (either family, shared or per-point covariance).
    ///   - particles: K ≥ 1.
    ///   - replicates: R, the independent values per point behind the standard error (fewer
    ///     than 2 is taken as 2).
    ///   - rng: the stream of every draw, in the order replicate → particle → point → latent.
    /// - Throws: ``/ELBOLabNumerics/InputError`` for a q that does not fit the data, an invalid θ, or a q whose
    ///   log-weights are not finite (a zero or infinite variance).
    public static func estimate(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors,
                                particles: Int, replicates: Int, rng: RandomSource) throws -> ImportanceWeightedEstimate {
        var state = try Accumulator(data: data, model: model, q: q, particles: particles)
        state.run(replicates: max(2, replicates), rng: rng)
        return try checked(state.result)
    }

    /// `estimate` when its value and error are finite; an ``InputError`` naming the cause otherwise.
    private static func checked(_ estimate: ImportanceWeightedEstimate) throws -> ImportanceWeightedEstimate {
        guard estimate.value.isFinite && estimate.standardError.isFinite else {
            throw InputError("the importance-weighted bound is \(estimate.value) ± \(estimate.standardError): q has a non-finite mean or a zero or infinite variance")
        }
        return estimate
    }

    /// An estimate with a standard error at most `targetStandardError` where that takes at most
    /// `maxDraws` draws of z: 16 replicates first, then as many more as their variance says are
    /// needed (with 20% to spare), capped by `maxDraws`. The result says how many were taken.
    public static func estimate(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors, particles: Int,
                                targetStandardError: Double, maxDraws: Int = 50_000_000,
                                rng: RandomSource) throws -> ImportanceWeightedEstimate {
        var state = try Accumulator(data: data, model: model, q: q, particles: particles)
        let perReplicate = max(1, data.count * max(1, particles))
        let pilot = max(2, min(16, maxDraws / perReplicate))
        state.run(replicates: pilot, rng: rng)
        let se = state.result.standardError
        if se > targetStandardError, targetStandardError > 0 {
            let wanted = Double(pilot) * (se / targetStandardError) * (se / targetStandardError) * 1.2
            let cap = max(pilot, maxDraws / perReplicate)
            let total = Int(min(Double(cap), wanted.rounded(.up)))
            if total > pilot { state.run(replicates: total - pilot, rng: rng) }
        }
        return try checked(state.result)
    }

    /// Per point: running sums over replicates, and the fixed parts of the log-weights.
    private struct Accumulator {
        let n: Int, j: Int, k: Int
        let family: GaussianPosteriors.Family
        let shared: Bool
        /// m_n − a_n, `N × J`.
        let offsets: [Double]
        /// q's scales: variances (diagonal) or Cholesky factors (full), one row or N.
        let scales: [Double]
        /// C with M = C Cᵀ, divided by √s2: ‖Cᵀu‖² = uᵀ A⁻¹ u.
        let precisionFactor: Matrix
        /// log p(y_n) − ½ log|A| + ½ log|S_n|.
        let constants: [Double]
        var count = 0
        var mean: [Double], m2: [Double]
        // Scratch, reused across particles.
        var noise: Matrix, u: Matrix, v: Matrix
        var maxima: [Double], sums: [Double]

        init(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors, particles: Int) throws {
            guard q.count == data.count, q.latent == model.latent, data.dimension == model.dimension else {
                throw InputError("the posteriors (\(q.count) points, J = \(q.latent)) do not fit the data (\(data.count) points) and model (J = \(model.latent))")
            }
            guard particles >= 1 else { throw InputError("the number of particles must be at least 1, got \(particles)") }
            n = data.count; j = model.latent; k = particles
            family = q.family
            shared = q.scales.rows == 1
            let chol = try model.factorInner()
            let post = try model.posterior(of: data)
            let ll = try model.pointLogLikelihoods(posteriorMeans: post.means,
                                                   residuals: model.residualSquaredNorms(of: data, means: post.means))
            // log|A| = J log s2 − log|M|.
            let logDetA = Double(j) * log(model.noiseVariance) - chol.logDeterminant
            let logDetS = q.covarianceTerms(gram: Matrix(rows: j, cols: j)).logDet
            let isShared = shared
            constants = (0..<data.count).map { ll[$0] - 0.5 * logDetA + 0.5 * logDetS[isShared ? 0 : $0] }
            offsets = (q.means - post.means).storage
            scales = q.scales.storage
            precisionFactor = (1 / model.noiseVariance.squareRoot()) * chol.lower
            mean = [Double](repeating: 0, count: n)
            m2 = mean
            noise = Matrix(rows: n, cols: j)
            u = noise
            v = noise
            maxima = mean
            sums = mean
        }

        mutating func run(replicates: Int, rng: RandomSource) {
            for _ in 0..<replicates {
                for i in 0..<n { maxima[i] = -.infinity; sums[i] = 0 }
                for _ in 0..<k {
                    rng.fillGaussian(&noise.storage)
                    shiftAndScale()
                    gemm(u, false, precisionFactor, false, into: &v)          // rows (Cᵀu_n)ᵀ
                    accumulateParticle()
                }
                count += 1
                let logK = log(Double(k)), c = Double(count)
                for i in 0..<n {
                    let x = maxima[i] + log(sums[i]) - logK
                    let delta = x - mean[i]
                    mean[i] += delta / c
                    m2[i] += delta * (x - mean[i])
                }
            }
        }

        /// u_n = (m_n − a_n) + L_n ε_n.
        private mutating func shiftAndScale() {
            let n = self.n, j = self.j, shared = self.shared, family = self.family
            u.storage.withUnsafeMutableBufferPointer { up in
            noise.storage.withUnsafeBufferPointer { e in
            offsets.withUnsafeBufferPointer { off in
            scales.withUnsafeBufferPointer { s in
                switch family {
                case .diagonal:
                    for p in 0..<n {
                        let row = p * j, srow = shared ? 0 : row
                        for c in 0..<j { up[row + c] = off[row + c] + s[srow + c].squareRoot() * e[row + c] }
                    }
                case .full:
                    let jj = j * j
                    for p in 0..<n {
                        let row = p * j, srow = shared ? 0 : p * jj
                        for a in 0..<j {
                            var x = off[row + a]
                            for b in 0...a { x += s[srow + a * j + b] * e[row + b] }
                            up[row + a] = x
                        }
                    }
                }
            }}}}
        }

        /// log w_n = constant_n − ½ ‖Cᵀu_n‖² + ½ ‖ε_n‖², folded into the running log-sum-exp.
        private mutating func accumulateParticle() {
            let n = self.n, j = self.j
            v.storage.withUnsafeBufferPointer { vp in
            noise.storage.withUnsafeBufferPointer { e in
            constants.withUnsafeBufferPointer { cst in
            maxima.withUnsafeMutableBufferPointer { mx in
            sums.withUnsafeMutableBufferPointer { sm in
                for p in 0..<n {
                    let row = p * j
                    var quad = 0.0
                    for c in 0..<j { let a = vp[row + c], b = e[row + c]; quad += b * b - a * a }
                    let lw = cst[p] + 0.5 * quad
                    if lw > mx[p] {
                        sm[p] = sm[p] * exp(mx[p] - lw) + 1
                        mx[p] = lw
                    } else {
                        sm[p] += exp(lw - mx[p])
                    }
                }
            }}}}}
        }

        var result: ImportanceWeightedEstimate {
            let r = Double(max(count, 1))
            let variance = neumaierSum(m2.map { $0 / max(r - 1, 1) })
            return ImportanceWeightedEstimate(value: neumaierSum(mean) / Double(n),
                                              standardError: (max(variance, 0) / r).squareRoot() / Double(n),
                                              particles: k, replicates: count, draws: n * k * count, pointValues: mean)
        }
    }
}

extension ImportanceWeightedBound {
    /// log E_q[(p(z|y)/q(z))^α] = log ∫ p(z|y)^α q(z)^{1−α} dz for every point, in closed form
    /// for p(z|y) = N(a, A) and q = N(m, S) (§13 for α = 2). With d = m − a, x = S⁻¹d and
    /// P_α = α A⁻¹ + (1 − α) S⁻¹:
    /// ```
    /// −(α/2) log|A| − ((1−α)/2) log|S| − ½ log|P_α| − ½ (1−α) dᵀx + ½ (1−α)² xᵀ P_α⁻¹ x
    /// ```
    /// +∞ where P_α is not positive definite (the moment does not exist).
    public static func logWeightMoments(order alpha: Double, data: Dataset, model: LinearGaussianModel,
                                        q: GaussianPosteriors) throws -> [Double] {
        guard q.count == data.count, q.latent == model.latent else {
            throw InputError("the posteriors (\(q.count) points, J = \(q.latent)) do not fit the data (\(data.count) points)")
        }
        let j = model.latent
        let post = try model.posterior(of: data)
        let precision = (1 / model.noiseVariance) * model.innerMatrix          // A⁻¹ = M/s2
        let logDetA = -(try Cholesky(symmetrized(precision))).logDeterminant
        var out = [Double](repeating: 0, count: q.count)
        var cached: (row: Int, s: Cholesky, p: Cholesky?)? = nil
        for n in 0..<q.count {
            let row = q.scales.rows == 1 ? 0 : n
            if cached?.row != row {
                let s = try Cholesky(symmetrized(q.covariance(of: n)))
                let pAlpha = symmetrized(alpha * precision + (1 - alpha) * s.inverse)
                cached = (row, s, try? Cholesky(pAlpha))
            }
            guard let c = cached, let p = c.p else { out[n] = .infinity; continue }
            let d = (0..<j).map { q.means[n, $0] - post.means[n, $0] }
            let x = c.s.solve(d)
            out[n] = -0.5 * alpha * logDetA - 0.5 * (1 - alpha) * c.s.logDeterminant - 0.5 * p.logDeterminant
                - 0.5 * (1 - alpha) * dot(d, x) + 0.5 * (1 - alpha) * (1 - alpha) * dot(x, p.solve(x))
        }
        return out
    }

    /// χ²(p(z|y_n) ‖ q_n) = E_q[(p/q)²] − 1 for every point (§13); +∞ unless S_n ≻ A/2.
    public static func chiSquare(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors) throws -> [Double] {
        try logWeightMoments(order: 2, data: data, model: model, q: q).map { $0.isFinite ? expm1($0) : .infinity }
    }

    /// The leading term of the bound's gap, (1/N) Σ_n χ²_n / (2K) (Maddison et al. 2017; Domke &
    /// Sheldon 2018): log p − L_K = χ²/(2K) + O(1/K²) where Var[w²] is finite too. +∞ when some
    /// χ²_n is.
    public static func predictedGap(particles: Int, data: Dataset, model: LinearGaussianModel,
                                    q: GaussianPosteriors) throws -> Double {
        let chi = try chiSquare(data: data, model: model, q: q)
        return neumaierSum(chi) / Double(chi.count) / (2 * Double(particles))
    }
}
