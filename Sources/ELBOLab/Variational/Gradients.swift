import Foundation

/// A set of rows of a data set (all of it, or a minibatch), centred on the data set's mean.
public struct Batch {
    /// The rows, centred on the full data's mean ȳ, `B × D`.
    public var centered: Matrix
    /// The full data's mean ȳ.
    public let mean: [Double]
    /// Column sums of `centered`.
    public var columnSums: [Double]
    /// Σ_n ‖y_n − ȳ‖² over the rows.
    public var sumOfSquares: Double

    /// Number of rows B.
    public var count: Int { centered.rows }

    /// All of `data`.
    public init(_ data: Dataset) {
        centered = data.centered
        mean = data.mean
        columnSums = data.centeredColumnSums
        sumOfSquares = data.totalVariance * Double(data.count)
    }

    /// An empty batch of `size` rows to be filled by ``gather(from:rows:)``.
    public init(capacity size: Int, dimension: Int, mean: [Double]) {
        centered = Matrix(rows: size, cols: dimension)
        self.mean = mean
        columnSums = [Double](repeating: 0, count: dimension)
        sumOfSquares = 0
    }

    /// Copies the given rows of `data` into this batch (its size must equal `rows.count`).
    public mutating func gather(from data: Dataset, rows: ArraySlice<Int>) {
        let d = centered.cols
        precondition(rows.count == centered.rows)
        var sums = [Double](repeating: 0, count: d)
        var squares = 0.0
        data.centered.storage.withUnsafeBufferPointer { src in
            centered.storage.withUnsafeMutableBufferPointer { dst in
                for (k, n) in rows.enumerated() {
                    for i in 0..<d {
                        let v = src[n * d + i]
                        dst[k * d + i] = v
                        sums[i] += v
                        squares += v * v
                    }
                }
            }
        }
        columnSums = sums
        sumOfSquares = squares
    }
}

/// The gradient of an average ELBO with respect to θ = (W, b, s2).
public struct ModelGradient: Sendable {
    /// ∂/∂W, `D × J`.
    public var loadings: Matrix
    /// ∂/∂b, length D.
    public var offset: [Double]
    /// ∂/∂s2.
    public var noiseVariance: Double
}

/// Gradients of the ELBO of the linear-Gaussian model (§7), on whole batches.
public enum ELBOGradient {
    /// ∂/∂θ of (1/B) Σ_n ELBO_n over the batch.
    ///
    /// Given per-point locations `z` (`B × J`) and the summed extra covariance `V = Σ_n S_n`:
    /// with `locations` = the means m_n and V = Σ S_n this is the exact gradient of §7; with
    /// `locations` = reparameterised draws z_n and V = 0 it is the one-sample estimator of §8.
    /// ```
    /// ∂W  = [Σ r_n z_nᵀ − W (Σ z_n z_nᵀ + V)] / s2
    /// ∂b  = [Σ r_n − W Σ z_n] / s2
    /// ∂s2 = −B D / (2 s2) + [Σ ‖r_n − W z_n‖² + tr(WᵀW V)] / (2 s2²)
    /// ```
    /// with `r_n = y_n − b`.
    public static func model(batch: Batch, model: LinearGaussianModel, locations z: Matrix, covarianceSum v: Matrix) -> ModelGradient {
        modelAndResidual(batch: batch, model: model, locations: z, covarianceSum: v).gradient
    }

    /// ``model(batch:model:locations:covarianceSum:)`` and Σ_n ‖r_n − W z_n‖², which it computes on the way.
    static func modelAndResidual(batch: Batch, model: LinearGaussianModel, locations z: Matrix,
                                 covarianceSum v: Matrix) -> (gradient: ModelGradient, residual: Double) {
        let d = model.dimension, j = model.latent
        precondition(z.rows == batch.count && z.cols == j)
        var yz = Matrix(rows: d, cols: j)
        gemm(batch.centered, true, z, false, into: &yz)                // Σ (y_n − ȳ) z_nᵀ
        var zz = Matrix(rows: j, cols: j)
        gemm(z, true, z, false, into: &zz)
        return modelAndResidual(batch: batch, model: model, dataTimesLocations: yz, locationSum: z.columnSums(),
                                locationSquares: zz, covarianceSum: v)
    }

    /// ``modelAndResidual(batch:model:locations:covarianceSum:)`` from the sums it needs:
    /// Σ (y_n − ȳ) z_nᵀ (`D × J`), Σ z_n and Σ z_n z_nᵀ. All enter linearly, so averages of
    /// them over K draws give the average of the K one-draw gradients.
    static func modelAndResidual(batch: Batch, model: LinearGaussianModel, dataTimesLocations yz: Matrix,
                                 locationSum zsum: [Double], locationSquares zz: Matrix,
                                 covarianceSum v: Matrix) -> (gradient: ModelGradient, residual: Double) {
        let d = model.dimension, j = model.latent
        let count = Double(batch.count)
        let w = model.loadings, s2 = model.noiseVariance
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }   // r_n = (y_n − ȳ) − δ
        var a = yz                                                      // Σ r_n z_nᵀ
        for i in 0..<d { for k in 0..<j { a[i, k] -= delta[i] * zsum[k] } }
        let g = model.gram
        var rsq = batch.sumOfSquares                                    // Σ ‖r_n‖²
        for i in 0..<d { rsq += -2 * delta[i] * batch.columnSums[i] + count * delta[i] * delta[i] }
        let residual = rsq - 2 * w.frobeniusDot(a) + g.frobeniusDot(zz)
        let second = zz + v
        var gw = a - w.multiplied(by: second)
        let invS2B = 1 / (s2 * count)
        for i in gw.storage.indices { gw.storage[i] *= invS2B }
        let wz = w.times(zsum)
        var gb = [Double](repeating: 0, count: d)
        for i in 0..<d { gb[i] = (batch.columnSums[i] - count * delta[i] - wz[i]) * invS2B }
        let gs2 = (-count * Double(d) / (2 * s2) + (residual + g.frobeniusDot(v)) / (2 * s2 * s2)) / count
        return (ModelGradient(loadings: gw, offset: gb, noiseVariance: gs2), residual)
    }

    /// `g_n = Wᵀ(r_n − W z_n) / s2` for every row: the gradient of log p(y_n | z) at z = z_n,
    /// `B × J`.
    public static func latent(batch: Batch, model: LinearGaussianModel, locations z: Matrix) -> Matrix {
        let d = model.dimension, j = model.latent
        var p = Matrix(rows: batch.count, cols: j)
        gemm(batch.centered, false, model.loadings, false, into: &p)    // (Y − ȳ) W
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        let shift = model.loadings.transposeTimes(delta)
        gemm(z, false, model.gram, false, alpha: -1, beta: 1, into: &p) // − Z G
        let inv = 1 / model.noiseVariance
        p.storage.withUnsafeMutableBufferPointer { q in
            for n in 0..<batch.count { for k in 0..<j { q[n * j + k] = (q[n * j + k] - shift[k]) * inv } }
        }
        return p
    }

    /// ‖r_n − W z_n‖² for every row of the batch.
    static func residualSquares(batch: Batch, model: LinearGaussianModel, locations z: Matrix) -> [Double] {
        let d = model.dimension
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        var r = batch.centered
        r.storage.withUnsafeMutableBufferPointer { p in
            for n in 0..<batch.count { for i in 0..<d { p[n * d + i] -= delta[i] } }
        }
        gemm(z, false, model.loadings, true, alpha: -1, beta: 1, into: &r)
        var out = [Double](repeating: 0, count: batch.count)
        r.storage.withUnsafeBufferPointer { p in
            for n in 0..<batch.count {
                var s = 0.0
                for i in 0..<d { s += p[n * d + i] * p[n * d + i] }
                out[n] = s
            }
        }
        return out
    }
}

/// How a strategy estimates the gradient of the ELBO with respect to q's parameters.
public enum GradientEstimator: String, Sendable, CaseIterable, Codable {
    /// The reparameterised (pathwise) estimator, z = m + √v ε (§8).
    case reparam
    /// The score-function (REINFORCE) estimator, f(z) ∇ log q(z).
    case score
    /// The exact expected gradient in closed form (§7): no Monte Carlo noise.
    case exact
    /// The doubly-reparameterised estimator of the importance-weighted bound's encoder gradient
    /// (Tucker et al. 2019; ``ImportanceWeightedEstimator/dreg``); for the ELBO (K = 1) it is the
    /// path-derivative estimator, reparameterised with ``KLEstimator/stl``.
    case dreg
}

/// How the KL term enters a Monte Carlo ELBO estimate (§8).
public enum KLEstimator: String, Sendable, CaseIterable, Codable {
    /// KL(q ‖ N(0, I)) in closed form.
    case analytic
    /// log q(z) − log p(z) at the draws.
    case mc
    /// log q(z) − log p(z) at the draws, with q's parameters held fixed inside log q: the
    /// path-derivative ("sticking the landing") estimator of Roeder, Wu & Duvenaud (2017). It
    /// drops the score term ∇_λ log q(z; λ), whose expectation is zero, so it stays unbiased;
    /// q's gradient is then ∇_z[log p(y, z) − log q(z)] · ∂z/∂λ, which vanishes for every draw
    /// when q is the exact posterior. The score-function estimator never uses that term, so
    /// for it this is the same as `mc`.
    case stl
}

/// Gradients of (1/B) Σ ELBO_n with respect to θ and to each point's (m_n, log v_n) for a
/// mean-field q, by one of the estimators.
public struct MeanFieldGradientEstimate {
    /// ∂/∂θ.
    public var model: ModelGradient
    /// ∂/∂m_n, `B × J` (per point, not divided by B).
    public var means: Matrix
    /// ∂/∂log v_n, `B × J` (per point).
    public var logVariances: Matrix
}

extension ELBOGradient {
    /// Estimates the gradient of the average ELBO at θ and q_n = N(m_n, diag(exp(ℓ_n))).
    ///
    /// - Parameters:
    ///   - batch: the B data points, centred on the full data's mean.
    ///   - model: θ, where the gradient is taken.
    ///   - means: m_n, `B × J`.
    ///   - logVariances: ℓ_n = log v_n, `B × J`.
    ///   - estimator: the estimator; `.dreg` is `.reparam` with the `.stl` KL.
    ///   - kl: how the KL term enters the Monte Carlo estimate (ignored by `.exact` and `.dreg`).
    ///   - samples: K draws per point (ignored by `.exact`).
    ///   - rng: the draws ε, K matrices `B × J` in turn (none for `.exact`).
    ///   - useBaseline: score function with K > 1: subtract the leave-one-out baseline (the default);
    ///     false gives the plain estimator, for the variance study.
    public static func meanField(batch: Batch, model: LinearGaussianModel, means: Matrix, logVariances: Matrix,
                                 estimator: GradientEstimator, kl: KLEstimator, samples: Int,
                                 rng: RandomSource, baseline useBaseline: Bool = true) -> MeanFieldGradientEstimate {
        let b = batch.count, j = model.latent
        let sd = logVariances.storage.map { exp(0.5 * $0) }
        var gm = Matrix(rows: b, cols: j), gl = Matrix(rows: b, cols: j)
        switch estimator {
        case .dreg:
            return meanField(batch: batch, model: model, means: means, logVariances: logVariances,
                             estimator: .reparam, kl: .stl, samples: samples, rng: rng)
        case .exact:
            var vsum = Matrix(rows: j, cols: j)
            for n in 0..<b { for k in 0..<j { vsum[k, k] += sd[n * j + k] * sd[n * j + k] } }
            let theta = ELBOGradient.model(batch: batch, model: model, locations: means, covarianceSum: vsum)
            let g = ELBOGradient.latent(batch: batch, model: model, locations: means)
            let gram = model.gram, s2 = model.noiseVariance
            for n in 0..<b {
                for k in 0..<j {
                    let i = n * j + k, v = sd[i] * sd[i]
                    gm.storage[i] = g.storage[i] - means.storage[i]
                    gl.storage[i] = v * (-gram[k, k] / (2 * s2) - 0.5) + 0.5
                }
            }
            return MeanFieldGradientEstimate(model: theta, means: gm, logVariances: gl)
        case .reparam, .score:
            let k = max(1, samples)
            var eps = Matrix(rows: b, cols: j)
            var z = Matrix(rows: b, cols: j)
            var theta: ModelGradient? = nil
            let zeroV = Matrix(rows: j, cols: j)
            var fValues: [[Double]] = []
            var draws: [Matrix] = []
            for _ in 0..<k {
                rng.fillGaussian(&eps.storage)
                for i in z.storage.indices { z.storage[i] = means.storage[i] + sd[i] * eps.storage[i] }
                let t = ELBOGradient.model(batch: batch, model: model, locations: z, covarianceSum: zeroV)
                theta = theta.map { accumulate($0, t) } ?? t
                if estimator == .reparam {
                    let g = ELBOGradient.latent(batch: batch, model: model, locations: z)
                    for i in gm.storage.indices {
                        let d = reparameterizedTerms(kl, latent: g.storage[i], z: z.storage[i], noise: eps.storage[i], scale: sd[i])
                        gm.storage[i] += d.mean
                        gl.storage[i] += d.logVariance
                    }
                } else {
                    // f_n = log p(y_n | z_n) (+ log p(z_n) − log q(z_n) with the MC KL), up to constants
                    // that the leave-one-out baseline or the zero-mean score removes.
                    let res = residualSquares(batch: batch, model: model, locations: z)
                    var f = [Double](repeating: 0, count: b)
                    let logNorm = -0.5 * Double(model.dimension) * log(2 * Double.pi * model.noiseVariance)
                    for n in 0..<b {
                        var value = logNorm - res[n] / (2 * model.noiseVariance)
                        if kl != .analytic {
                            for c in 0..<j {
                                let i = n * j + c
                                value += -0.5 * z.storage[i] * z.storage[i] + 0.5 * eps.storage[i] * eps.storage[i] + 0.5 * logVariances.storage[i]
                            }
                        }
                        f[n] = value
                    }
                    fValues.append(f)
                    draws.append(eps)
                }
            }
            if estimator == .score {
                for s in 0..<k {
                    for n in 0..<b {
                        // Leave-one-out baseline: unbiased, and it removes the large constant in f.
                        var baseline = 0.0
                        if k > 1 && useBaseline {
                            for t in 0..<k where t != s { baseline += fValues[t][n] }
                            baseline /= Double(k - 1)
                        }
                        let weight = fValues[s][n] - baseline
                        for c in 0..<j {
                            let i = n * j + c, e = draws[s].storage[i]
                            gm.storage[i] += weight * e / sd[i]
                            gl.storage[i] += weight * 0.5 * (e * e - 1)
                        }
                    }
                }
            }
            let invK = 1 / Double(k)
            for i in gm.storage.indices {
                gm.storage[i] *= invK
                gl.storage[i] *= invK
                if kl == .analytic {
                    let v = sd[i] * sd[i]
                    gm.storage[i] -= means.storage[i]
                    gl.storage[i] -= 0.5 * (v - 1)
                }
            }
            var t = theta!
            for i in t.loadings.storage.indices { t.loadings.storage[i] *= invK }
            for i in t.offset.indices { t.offset[i] *= invK }
            t.noiseVariance *= invK
            return MeanFieldGradientEstimate(model: t, means: gm, logVariances: gl)
        }
    }

    private static func accumulate(_ a: ModelGradient, _ b: ModelGradient) -> ModelGradient {
        ModelGradient(loadings: a.loadings + b.loadings, offset: zip(a.offset, b.offset).map(+),
                      noiseVariance: a.noiseVariance + b.noiseVariance)
    }
}

extension ELBOGradient {
    /// One draw's contribution to ∂/∂(m, log v) of one coordinate, z = m + s ε, from
    /// `latent` = ∂/∂z log p(y | z) at z. Analytic KL: its terms are added once after the draws.
    @inline(__always)
    static func reparameterizedTerms(_ kl: KLEstimator, latent g: Double, z: Double, noise e: Double,
                                     scale s: Double) -> (mean: Double, logVariance: Double) {
        switch kl {
        case .analytic:
            return (g, g * 0.5 * s * e)
        case .mc:
            return (g - z, (g - z) * 0.5 * s * e + 0.5)
        case .stl:
            // ∂/∂z [log p(y, z) − log q(z)] = g − z + ε/s; ∂z/∂m = 1, ∂z/∂log v = ½ s ε.
            let path = g - z + e / s
            return (path, path * 0.5 * s * e)
        }
    }

    /// The reparameterised estimate of ∂ELBO_n/∂(m_n, log v_n) for every point with θ held, as
    /// ``meanField(batch:model:means:logVariances:estimator:kl:samples:rng:)`` with `.reparam`
    /// computes it from the same draws, but from p_n = Wᵀ(y_n − b) instead of the rows:
    /// ```
    /// ∇_z log p(y_n | z) = (p_n − G z)/s2,   G = WᵀW
    /// ```
    /// O(J²) a point instead of O(DJ), and no θ gradient, which the E-step does not use. The
    /// per-datapoint E-step takes many steps with one θ, so p_n is formed once per θ.
    ///
    /// - Parameters:
    ///   - projections: p_n, `N × J` (``LinearGaussianModel/projections(of:)``).
    ///   - means, logVariances, gradMeans, gradLogVariances: `N × J`, row-major; the gradients
    ///     are overwritten.
    ///   - scales: √v_n = exp(log v_n / 2), `N × J`.
    ///   - noise: scratch for the draws, `N × J`.
    package static func pointwiseReparameterized(projections p: UnsafeBufferPointer<Double>, gram: Matrix, noiseVariance s2: Double,
                                         means: UnsafeBufferPointer<Double>, scales sd: UnsafeBufferPointer<Double>,
                                         kl: KLEstimator, samples: Int, rng: RandomSource,
                                         noise: UnsafeMutableBufferPointer<Double>,
                                         gradMeans gm: UnsafeMutableBufferPointer<Double>,
                                         gradLogVariances gl: UnsafeMutableBufferPointer<Double>) {
        let j = gram.rows, count = p.count / max(j, 1), k = max(1, samples)
        let g = gram.storage, inverseS2 = 1 / s2
        for i in 0..<gm.count { gm[i] = 0; gl[i] = 0 }
        var z = [Double](repeating: 0, count: j)
        for _ in 0..<k {
            rng.fillGaussian(noise)
            for n in 0..<count {
                let row = n * j
                for c in 0..<j { z[c] = means[row + c] + sd[row + c] * noise[row + c] }
                for c in 0..<j {
                    var gz = 0.0
                    for l in 0..<j { gz += g[c * j + l] * z[l] }
                    let i = row + c
                    let d = reparameterizedTerms(kl, latent: (p[i] - gz) * inverseS2, z: z[c], noise: noise[i], scale: sd[i])
                    gm[i] += d.mean
                    gl[i] += d.logVariance
                }
            }
        }
        let invK = 1 / Double(k)
        for i in 0..<gm.count {
            gm[i] *= invK
            gl[i] *= invK
            if kl == .analytic {
                gm[i] -= means[i]
                gl[i] -= 0.5 * (sd[i] * sd[i] - 1)
            }
        }
    }
}
