import Foundation

/// What is held fixed when fitting the linear-Gaussian model.
public struct ModelConstraints: Equatable, Sendable, Codable {
    /// The noise variance s2, when it is known and held fixed; nil to estimate it.
    public var noiseVariance: Double?
    /// Hold the offset b at 0 (the notes' `y = θ₁ z` has no offset).
    public var zeroOffset: Bool

    /// Holds s2 at `noiseVariance` when given, and b at 0 when `zeroOffset`.
    public init(noiseVariance: Double? = nil, zeroOffset: Bool = false) {
        self.noiseVariance = noiseVariance
        self.zeroOffset = zeroOffset
    }

    /// Nothing held: W, b and s2 all estimated.
    public static let free = ModelConstraints()
}

/// The linear-Gaussian latent model (probabilistic PCA, Tipping & Bishop 1999):
///
/// ```
/// z ~ N(0, I_J),   y | z ~ N(W z + b, s2 · I_D)
/// y ~ N(b, C),     C = W Wᵀ + s2 I_D
/// ```
///
/// Every exact quantity goes through the `J × J` matrix `M = WᵀW + s2 I_J` (Woodbury):
/// `C⁻¹ = (I − W M⁻¹ Wᵀ)/s2`, `log|C| = (D − J) log s2 + log|M|`; no `D × D` inverse is formed.
public struct LinearGaussianModel: Equatable, Sendable {
    /// Loadings W, `D × J`.
    public var loadings: Matrix
    /// Offset b, length D.
    public var offset: [Double]
    /// Noise variance s2 > 0.
    public var noiseVariance: Double

    /// Dimension D of the observations.
    public var dimension: Int { loadings.rows }
    /// Dimension J of the latent variable.
    public var latent: Int { loadings.cols }

    /// The model with loadings W (`D × J`), offset b (length D) and noise variance s2.
    public init(loadings: Matrix, offset: [Double], noiseVariance: Double) {
        precondition(offset.count == loadings.rows, "offset length \(offset.count) ≠ D = \(loadings.rows)")
        self.loadings = loadings
        self.offset = offset
        self.noiseVariance = noiseVariance
    }

    /// A model with W and b entries drawn N(0, 1): the generator `simulate` uses.
    public static func random(dimension: Int, latent: Int, noiseVariance: Double, zeroOffset: Bool = false,
                              using rng: RandomSource) -> LinearGaussianModel {
        var w = Matrix(rows: dimension, cols: latent)
        rng.fillGaussian(&w.storage)
        var b = [Double](repeating: 0, count: dimension)
        if !zeroOffset { rng.fillGaussian(&b) }
        return LinearGaussianModel(loadings: w, offset: b, noiseVariance: noiseVariance)
    }

    /// The starting point every strategy shares for a given seed: W = 0.1·σ·N(0, 1) entries,
    /// b = ȳ (or 0 when held), s2 = the average column variance (or the held value), where σ²
    /// is the average column variance of the data.
    public static func initial(for data: Dataset, latent: Int, constraints: ModelConstraints,
                               using rng: RandomSource) -> LinearGaussianModel {
        let d = data.dimension
        let scale = max(data.totalVariance / Double(d), .leastNormalMagnitude)
        var w = Matrix(rows: d, cols: latent)
        rng.fillGaussian(&w.storage)
        let wScale = 0.1 * scale.squareRoot()
        for i in w.storage.indices { w.storage[i] *= wScale }
        let b = constraints.zeroOffset ? [Double](repeating: 0, count: d) : data.mean
        return LinearGaussianModel(loadings: w, offset: b, noiseVariance: constraints.noiseVariance ?? scale)
    }

    /// G = WᵀW, `J × J`.
    public var gram: Matrix { symmetrized(loadings.multiplied(by: loadings, transposeSelf: true)) }

    /// M = WᵀW + s2 I_J, `J × J`.
    public var innerMatrix: Matrix {
        var m = gram
        for j in 0..<latent { m[j, j] += noiseVariance }
        return m
    }

    /// Draws `count` points, `count × D`.
    public func sample(count: Int, using rng: RandomSource) -> Matrix {
        var z = Matrix(rows: count, cols: latent)
        rng.fillGaussian(&z.storage)
        var y = Matrix(rows: count, cols: dimension)
        let sd = noiseVariance.squareRoot()
        // Noise straight into y, in the stream's order: no second N × D array.
        y.storage.withUnsafeMutableBufferPointer { p in
            for n in 0..<count { for i in 0..<dimension { p[n * dimension + i] = offset[i] + sd * rng.gaussian() } }
        }
        gemm(z, false, loadings, true, alpha: 1, beta: 1, into: &y)
        return y
    }

    /// The projections P = (Y − 1bᵀ) W, `N × J`: row n is Wᵀ(y_n − b).
    public func projections(of data: Dataset) -> Matrix {
        var p = Matrix(rows: data.count, cols: latent)
        gemm(data.centered, false, loadings, false, into: &p)
        let delta = (0..<dimension).map { offset[$0] - data.mean[$0] }
        let shift = loadings.transposeTimes(delta)   // Wᵀ(b − ȳ)
        p.storage.withUnsafeMutableBufferPointer { q in
            for n in 0..<data.count { for j in 0..<latent { q[n * latent + j] -= shift[j] } }
        }
        return p
    }

    /// The exact posterior p(z_n | y_n) = N(M⁻¹Wᵀ(y_n − b), s2 M⁻¹) for every point.
    ///
    /// - Returns: the means (`N × J`, one row per point) and the covariance (`J × J`, shared).
    public func posterior(of data: Dataset) throws -> (means: Matrix, covariance: Matrix) {
        let chol = try factorInner()
        let p = projections(of: data)
        let minv = symmetrized(chol.inverse)
        var means = Matrix(rows: data.count, cols: latent)
        gemm(p, false, minv, false, into: &means)
        return (means, noiseVariance * minv)
    }

    package func factorInner() throws -> Cholesky {
        guard noiseVariance > 0, noiseVariance.isFinite, loadings.isFinite else {
            throw InputError("model parameters are not valid: s2 = \(noiseVariance) must be positive and W finite")
        }
        return try Cholesky(innerMatrix)
    }

    /// log|C| = (D − J) log s2 + log|M|.
    public func logDeterminantCovariance() throws -> Double {
        Double(dimension - latent) * log(noiseVariance) + (try factorInner()).logDeterminant
    }

    /// The exact log-likelihood of every point:
    /// `log p(y_n) = −½ [D log 2π + log|C| + (y_n − b)ᵀ C⁻¹ (y_n − b)]`.
    ///
    /// The quadratic form is evaluated as `‖r − Wμ‖²/s2 + ‖μ‖²` with r = y_n − b and μ the
    /// posterior mean: a sum of non-negative terms, free of the cancellation in `‖r‖² − pᵀM⁻¹p`.
    public func pointLogLikelihoods(of data: Dataset) throws -> [Double] {
        precondition(data.dimension == dimension)
        let (means, _) = try posterior(of: data)
        return try pointLogLikelihoods(posteriorMeans: means, residuals: residualSquaredNorms(of: data, means: means))
    }

    /// `log p(y_n) = −½ [D log 2π + log|C| + ‖r_n − Wμ_n‖²/s2 + ‖μ_n‖²]` from the posterior means
    /// μ_n (`N × J`) and their residuals ‖y_n − Wμ_n − b‖².
    package func pointLogLikelihoods(posteriorMeans means: Matrix, residuals: [Double]) throws -> [Double] {
        let constant = Double(dimension) * log(2 * Double.pi) + (try logDeterminantCovariance())
        let j = latent
        var out = [Double](repeating: 0, count: means.rows)
        means.storage.withUnsafeBufferPointer { m in
            for n in 0..<means.rows {
                var mm = 0.0
                for c in 0..<j { mm += m[n * j + c] * m[n * j + c] }
                out[n] = -0.5 * (constant + residuals[n] / noiseVariance + mm)
            }
        }
        return out
    }

    /// The average exact log-likelihood per point, (1/N) Σ log p(y_n), in nats.
    public func logLikelihood(of data: Dataset) throws -> Double {
        let ll = try pointLogLikelihoods(of: data)
        return neumaierSum(ll) / Double(data.count)
    }

    /// ‖y_n − W m_n − b‖² for every point, given one mean m_n per point (`means`: `N × J`).
    ///
    /// Evaluated block by block on the centred data (`(y_n − ȳ) − (b − ȳ) − W m_n`).
    public func residualSquaredNorms(of data: Dataset, means: Matrix) -> [Double] {
        precondition(means.rows == data.count && means.cols == latent)
        let d = dimension, j = latent
        let delta = (0..<d).map { offset[$0] - data.mean[$0] }
        let w = loadings
        let parts = blockedReduce(count: data.count, blockSize: 1024) { range -> [Double] in
            let rows = range.count
            var block = [Double](repeating: 0, count: rows * d)
            data.centered.storage.withUnsafeBufferPointer { y in
                means.storage.withUnsafeBufferPointer { m in
                    w.storage.withUnsafeBufferPointer { wp in
                        block.withUnsafeMutableBufferPointer { r in
                            for n in 0..<rows {
                                let src = (range.lowerBound + n) * d
                                for i in 0..<d { r[n * d + i] = y[src + i] - delta[i] }
                            }
                            // R ← R − M Wᵀ
                            gemmRaw(m.baseAddress! + range.lowerBound * j, rows, j, false,
                                    wp.baseAddress, d, j, true, r.baseAddress, rows, d, alpha: -1, beta: 1)
                        }
                    }
                }
            }
            var out = [Double](repeating: 0, count: rows)
            block.withUnsafeBufferPointer { r in
                for n in 0..<rows {
                    var s = 0.0
                    for i in 0..<d { let v = r[n * d + i]; s += v * v }
                    out[n] = s
                }
            }
            return out
        }
        return parts.flatMap { $0 }
    }
}

/// Σ x_i with Neumaier's compensation: the sums behind per-point averages stay exact to rounding.
public func neumaierSum(_ xs: [Double]) -> Double {
    var sum = 0.0, c = 0.0
    for x in xs {
        let t = sum + x
        if abs(sum) >= abs(x) { c += (sum - t) + x } else { c += (x - t) + sum }
        sum = t
    }
    return sum + c
}
