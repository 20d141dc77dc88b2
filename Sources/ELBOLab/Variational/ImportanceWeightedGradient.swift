import Foundation

/// What a Monte Carlo encoder run maximises.
public enum Objective: String, Sendable, CaseIterable, Codable {
    /// The ELBO (§6, §8).
    case elbo
    /// The importance-weighted bound L_K with K particles (§13); K = 1 is the ELBO.
    case iwae
}

/// How the gradient of the importance-weighted bound L_K is estimated for q's (encoder's)
/// parameters (§14); θ always gets the pathwise Σ_k w̃_k ∇_θ log p_θ(y, z_k).
public enum ImportanceWeightedEstimator: String, Sendable, CaseIterable, Codable {
    /// Burda et al.'s reparameterised estimator Σ_k w̃_k ∇ log w_k(z_k(ε_k)), total derivative.
    case iwae
    /// Tucker et al.'s doubly-reparameterised estimator Σ_k w̃_k² (∂ log w_k/∂z_k)(∂z_k/∂λ), with
    /// q's parameters held inside log q: unbiased for the same gradient, and its noise falls as
    /// K grows where IWAE's signal does.
    case dreg
}

/// One estimate of ∇ (1/B) Σ_n L_K,n for a mean-field q_n = N(m_n, diag(exp(ℓ_n))).
public struct ImportanceWeightedGradientEstimate {
    /// ∂/∂θ (the same for both estimators).
    public var model: ModelGradient
    /// ∂/∂m_n, `B × J` (per point, not divided by B).
    public var means: Matrix
    /// ∂/∂ℓ_n, `B × J` (per point).
    public var logVariances: Matrix
    /// The estimate of (1/B) Σ_n L_K,n at these draws, (1/B) Σ_n log (1/K) Σ_k w_nk.
    public var bound: Double
}

/// Gradient estimators of the importance-weighted bound (§14) on a batch, for a mean-field q
/// given per point or by an encoder.
///
/// With z_k = m + s ∘ ε_k (s = exp(ℓ/2)), g_k = ∇_z log p(y, z)|_{z_k} = Wᵀ(r − W z_k)/s2 − z_k
/// (r = y − b) and w̃_k = w_k / Σ_j w_j, per point:
/// ```
/// IWAE:  ∂/∂m = Σ_k w̃_k g_k,                       ∂/∂ℓ_j = Σ_k w̃_k g_kj ½ s_j ε_kj + ½
/// DReG:  ∂/∂m = Σ_k w̃_k² (g_k + ε_k/s),            ∂/∂ℓ_j = Σ_k w̃_k² (g_kj + ε_kj/s_j) ½ s_j ε_kj
/// θ:     Σ_k w̃_k ∇_θ log p(y | z_k)   (through Σ_n r_n z̄_nᵀ, z̄_n = Σ_k w̃_k z_k, and Σ_n Σ_k w̃_k z_k z_kᵀ)
/// ```
/// (the total derivative of log q(z(ε)) is −½ per ℓ_j and 0 per m; DReG's ε/s is −∇_z log q with
/// q held). K = 1 gives the reparameterised ELBO gradient with the Monte Carlo KL (§8).
///
/// Each draw costs O(J²) from p_n = Wᵀ(y_n − b), formed for the batch by one product; the
/// scratch is kept between calls, so a loop of estimates allocates per call, not per point.
public final class ImportanceWeightedGradient {
    private var projections = Matrix(rows: 0, cols: 0), weightedMeans = Matrix(rows: 0, cols: 0)
    private var noise: [Double] = [], latents: [Double] = [], gradients: [Double] = [], logWeights: [Double] = []
    private var small: [Double] = []

    public init() {}

    /// Estimates the gradient of (1/B) Σ_n L_K,n at θ = `model` and q_n = N(m_n, diag(exp(ℓ_n))).
    ///
    /// - Parameters:
    ///   - batch: the B data points, centred on the full data's mean.
    ///   - model: θ, where the gradient is taken.
    ///   - means: m_n, `B × J`.
    ///   - logVariances: ℓ_n = log v_n, `B × J`.
    ///   - particles: K ≥ 1.
    ///   - estimator: IWAE or DReG for q's gradient (θ's is the same for both).
    ///   - rng: the draws, point by point, K·J each (for K = 1 the order of
    ///     ``ELBOGradient/meanField(batch:model:means:logVariances:estimator:kl:samples:rng:baseline:)``).
    public func meanField(batch: Batch, model: LinearGaussianModel, means: Matrix, logVariances: Matrix,
                          particles: Int, estimator: ImportanceWeightedEstimator,
                          rng: RandomSource) -> ImportanceWeightedGradientEstimate {
        let b = batch.count, j = model.latent, d = model.dimension, k = max(1, particles)
        precondition(means.rows == b && means.cols == j && logVariances.rows == b && logVariances.cols == j)
        if projections.rows != b || projections.cols != j {
            projections = Matrix(rows: b, cols: j)
            weightedMeans = Matrix(rows: b, cols: j)
        }
        if noise.count != k * j {
            noise = [Double](repeating: 0, count: k * j)
            latents = noise
            gradients = noise
            logWeights = [Double](repeating: 0, count: k)
        }
        if small.count != 2 * j + j * j { small = [Double](repeating: 0, count: 2 * j + j * j) }
        // p_n = Wᵀ(y_n − b) = Wᵀ(y_n − ȳ) − Wᵀ(b − ȳ); ‖r_n‖² = ‖y_n − ȳ‖² − 2 δᵀ(y_n − ȳ) + ‖δ‖².
        gemm(batch.centered, false, model.loadings, false, into: &projections)
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        let shift = model.loadings.transposeTimes(delta)
        let deltaSquares = dot(delta, delta)
        let gram = model.gram.storage, s2 = model.noiseVariance, inv = 1 / s2
        let logNorm = -0.5 * Double(d) * log(2 * Double.pi * s2)
        let logK = log(Double(k))
        var gm = Matrix(rows: b, cols: j), gl = Matrix(rows: b, cols: j)
        var zz = Matrix(rows: j, cols: j)
        var bound = 0.0
        let dreg = estimator == .dreg
        batch.centered.storage.withUnsafeBufferPointer { y in
        projections.storage.withUnsafeMutableBufferPointer { pp in
        weightedMeans.storage.withUnsafeMutableBufferPointer { zbar in
        means.storage.withUnsafeBufferPointer { m in
        logVariances.storage.withUnsafeBufferPointer { lv in
        gm.storage.withUnsafeMutableBufferPointer { gmp in
        gl.storage.withUnsafeMutableBufferPointer { glp in
        zz.storage.withUnsafeMutableBufferPointer { zzp in
        noise.withUnsafeMutableBufferPointer { e in
        latents.withUnsafeMutableBufferPointer { z in
        gradients.withUnsafeMutableBufferPointer { g in
        logWeights.withUnsafeMutableBufferPointer { lw in
        small.withUnsafeMutableBufferPointer { sc in
        gram.withUnsafeBufferPointer { gr in
            let sd = sc.baseAddress!, gz = sd + j
            for n in 0..<b {
                let row = n * j
                var rr = deltaSquares
                for i in 0..<d { let v = y[n * d + i]; rr += v * v - 2 * delta[i] * v }
                for c in 0..<j { pp[row + c] -= shift[c] }
                var halfLogDet = 0.0
                for c in 0..<j { sd[c] = exp(0.5 * lv[row + c]); halfLogDet += 0.5 * lv[row + c] }
                let base = logNorm - rr * 0.5 * inv + halfLogDet
                rng.fillGaussian(e)
                var top = -Double.infinity
                for t in 0..<k {
                    let at = t * j
                    for c in 0..<j { z[at + c] = m[row + c] + sd[c] * e[at + c] }
                    var value = base
                    for c in 0..<j {
                        var s = 0.0
                        for l in 0..<j { s += gr[c * j + l] * z[at + l] }
                        gz[c] = s
                    }
                    for c in 0..<j {
                        let zc = z[at + c], ec = e[at + c]
                        // log p(y|z) − log p(y|0)-part, the prior and q (the ½ log|S| is in base).
                        value += (zc * pp[row + c] - 0.5 * zc * gz[c]) * inv - 0.5 * zc * zc + 0.5 * ec * ec
                        g[at + c] = (pp[row + c] - gz[c]) * inv - zc
                    }
                    lw[t] = value
                    if value > top { top = value }
                }
                var total = 0.0
                for t in 0..<k { let w = exp(lw[t] - top); lw[t] = w; total += w }
                bound += top + log(total) - logK
                let norm = 1 / total
                for c in 0..<j { gmp[row + c] = 0; glp[row + c] = dreg ? 0 : 0.5; zbar[row + c] = 0 }
                for t in 0..<k {
                    let at = t * j, w = lw[t] * norm
                    let factor = dreg ? w * w : w
                    for c in 0..<j {
                        let ec = e[at + c]
                        let path = dreg ? g[at + c] + ec / sd[c] : g[at + c]
                        gmp[row + c] += factor * path
                        glp[row + c] += factor * path * 0.5 * sd[c] * ec
                        let zc = z[at + c]
                        zbar[row + c] += w * zc
                        let wz = w * zc
                        for l in 0..<j { zzp[c * j + l] += wz * z[at + l] }
                    }
                }
            }
        }}}}}}}}}}}}}}
        var yz = Matrix(rows: d, cols: j)
        gemm(batch.centered, true, weightedMeans, false, into: &yz)
        let theta = ELBOGradient.modelAndResidual(batch: batch, model: model, dataTimesLocations: yz,
                                                  locationSum: weightedMeans.columnSums(), locationSquares: zz,
                                                  covarianceSum: Matrix(rows: j, cols: j)).gradient
        return ImportanceWeightedGradientEstimate(model: theta, means: gm, logVariances: gl, bound: bound / Double(max(b, 1)))
    }

    /// The estimate for an encoder's q: forward, ``meanField(batch:model:means:logVariances:particles:estimator:rng:)``,
    /// backward. Returns ∂/∂θ and ∂/∂φ of (1/B) Σ_n L_K,n and the bound's estimate at the draws.
    public func encoder(batch: Batch, model: LinearGaussianModel, encoder: any AmortizedEncoder, particles: Int,
                        estimator: ImportanceWeightedEstimator,
                        rng: RandomSource) -> (model: ModelGradient, encoder: [Double], bound: Double) {
        let out = encoder.forward(batch)
        let e = meanField(batch: batch, model: model, means: out.means, logVariances: out.logVariances,
                          particles: particles, estimator: estimator, rng: rng)
        let phi = encoder.backward(batch, output: out, gradMeans: e.means, gradLogVariances: e.logVariances,
                                   scale: 1 / Double(max(batch.count, 1)))
        return (e.model, phi, e.bound)
    }
}
