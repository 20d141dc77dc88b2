import Foundation

/// Gaussian variational posteriors q(z_n) = N(m_n, S_n), one per data point.
///
/// The means are an `N × J` matrix. The covariances are either diagonal (mean field, the notes'
/// choice: `S_n = diag(v_n)`) or full, stored as the lower Cholesky factor `L_n` with
/// `S_n = L_n L_nᵀ`. A single row of scales may be shared by every point (the exact posterior
/// and the closed-form mean-field optimum have one covariance for all n).
public struct GaussianPosteriors: Sendable {
    /// The covariance family.
    public enum Family: String, Sendable, CaseIterable, Codable {
        /// `S_n = diag(v_n)`: mean field.
        case diagonal
        /// `S_n = L_n L_nᵀ` with L_n lower triangular.
        case full
    }

    /// Means m_n, `N × J`.
    public var means: Matrix
    /// The covariance family.
    public var family: Family
    /// Diagonal: variances v_nj (`N × J`). Full: Cholesky factors, row-major `J × J` per row
    /// (`N × J²`). One row means the same covariance for every point.
    public var scales: Matrix

    /// q with `means` (`N × J`) and `scales` in the layout of `family` (one row: shared by every point).
    public init(means: Matrix, family: Family, scales: Matrix) {
        let width = family == .diagonal ? means.cols : means.cols * means.cols
        precondition(scales.cols == width && (scales.rows == means.rows || scales.rows == 1),
                     "scales \(scales.rows)×\(scales.cols) do not fit \(means.rows) points with J = \(means.cols)")
        self.means = means
        self.family = family
        self.scales = scales
    }

    /// Number of points N.
    public var count: Int { means.rows }
    /// Latent dimension J.
    public var latent: Int { means.cols }
    /// Whether one covariance serves every point.
    public var isShared: Bool { scales.rows == 1 && means.rows != 1 }

    /// The covariance S_n of point n, `J × J`.
    public func covariance(of n: Int) -> Matrix {
        let j = latent
        let row = isShared ? 0 : n
        switch family {
        case .diagonal:
            return Matrix.diagonal(scales.row(row))
        case .full:
            let l = Matrix(rows: j, cols: j, storage: scales.row(row))
            return l.multiplied(by: l, transposeOther: true)
        }
    }

    /// The exact posterior of `model` for every point of `data`, in the full family:
    /// q_n = p(z_n | y_n), so the ELBO equals log p(y_n).
    public static func exactPosterior(of model: LinearGaussianModel, data: Dataset) throws -> GaussianPosteriors {
        let post = try model.posterior(of: data)
        let l = try Cholesky(symmetrized(post.covariance)).lower
        return GaussianPosteriors(means: post.means, family: .full, scales: Matrix(rows: 1, cols: l.storage.count, storage: l.storage))
    }

    /// The best member of `family` for every point of `data` under `model` (§6):
    /// diagonal: `m_n = M⁻¹Wᵀ(y_n − b)`, `v_nj = s2 / (‖w_j‖² + s2)`; full: the exact posterior.
    public static func optimal(_ family: Family, model: LinearGaussianModel, data: Dataset) throws -> GaussianPosteriors {
        switch family {
        case .full:
            return try exactPosterior(of: model, data: data)
        case .diagonal:
            let post = try model.posterior(of: data)
            let m = model.innerMatrix
            let v = (0..<model.latent).map { model.noiseVariance / m[$0, $0] }
            return GaussianPosteriors(means: post.means, family: .diagonal, scales: Matrix(rows: 1, cols: v.count, storage: v))
        }
    }

    /// Per point: (tr(G S_n), tr S_n, log|S_n|) for G = WᵀW.
    func covarianceTerms(gram g: Matrix) -> (traceGS: [Double], trace: [Double], logDet: [Double]) {
        let j = latent
        let rows = scales.rows
        var tgs = [Double](repeating: 0, count: rows)
        var tr = [Double](repeating: 0, count: rows)
        var ld = [Double](repeating: 0, count: rows)
        scales.storage.withUnsafeBufferPointer { s in
            switch family {
            case .diagonal:
                for n in 0..<rows {
                    var a = 0.0, b = 0.0, c = 0.0
                    for k in 0..<j {
                        let v = s[n * j + k]
                        a += g[k, k] * v; b += v; c += log(v)
                    }
                    tgs[n] = a; tr[n] = b; ld[n] = c
                }
            case .full:
                let jj = j * j
                for n in 0..<rows {
                    var a = 0.0, b = 0.0, c = 0.0
                    for col in 0..<j {
                        // column `col` of L_n: l_i = L[i, col]; tr(LᵀGL) = Σ_col l_colᵀ G l_col
                        for p in 0..<j {
                            let lp = s[n * jj + p * j + col]
                            if lp == 0 { continue }
                            b += lp * lp
                            for q in 0..<j { a += lp * g[p, q] * s[n * jj + q * j + col] }
                        }
                        c += 2 * log(abs(s[n * jj + col * j + col]))
                    }
                    tgs[n] = a; tr[n] = b; ld[n] = c
                }
            }
        }
        return (tgs, tr, ld)
    }
}

/// The exact ELBO of the linear-Gaussian model for Gaussian q (§6):
/// ```
/// E_q log p(y|z) = −(D/2) log(2π s2) − [‖y − W m − b‖² + tr(W S Wᵀ)] / (2 s2)
/// KL(q ‖ N(0, I)) = ½ [tr S + mᵀm − J − log|S|]
/// ELBO = E_q log p(y|z) − KL
/// ```
public enum ExactELBO {
    /// ELBO_n for every point, in nats.
    public static func pointValues(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors) -> [Double] {
        let residuals = model.residualSquaredNorms(of: data, means: q.means)
        return pointValues(residuals: residuals, model: model, q: q)
    }

    /// ELBO_n from precomputed residuals ‖y_n − W m_n − b‖².
    static func pointValues(residuals: [Double], model: LinearGaussianModel, q: GaussianPosteriors) -> [Double] {
        let d = Double(model.dimension), jd = Double(model.latent), s2 = model.noiseVariance
        let terms = q.covarianceTerms(gram: model.gram)
        let shared = q.isShared
        let j = model.latent
        let logNorm = d * log(2 * Double.pi * s2)
        var out = [Double](repeating: 0, count: q.count)
        q.means.storage.withUnsafeBufferPointer { m in
            for n in 0..<q.count {
                let k = shared ? 0 : n
                var mm = 0.0
                for c in 0..<j { let v = m[n * j + c]; mm += v * v }
                let expectedLogLik = -0.5 * logNorm - (residuals[n] + terms.traceGS[k]) / (2 * s2)
                let kl = 0.5 * (terms.trace[k] + mm - jd - terms.logDet[k])
                out[n] = expectedLogLik - kl
            }
        }
        return out
    }

    /// The average ELBO per point, (1/N) Σ ELBO_n.
    public static func average(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors) -> Double {
        neumaierSum(pointValues(data: data, model: model, q: q)) / Double(data.count)
    }

    /// KL(N(m, S) ‖ N(m_p, S_p)) = ½ [tr(S_p⁻¹S) + (m_p − m)ᵀS_p⁻¹(m_p − m) − J + log|S_p| − log|S|].
    public static func gaussianKL(mean m: [Double], covariance s: Matrix, toMean mp: [Double], covariance sp: Matrix) throws -> Double {
        let cp = try Cholesky(symmetrized(sp)), cs = try Cholesky(symmetrized(s))
        let diff = zip(mp, m).map { $0 - $1 }
        let trace = cp.solve(s).trace
        let quad = dot(diff, cp.solve(diff))
        return 0.5 * (trace + quad - Double(m.count) + cp.logDeterminant - cs.logDeterminant)
    }
}

/// What the scorer reports at a logged iteration, per point in nats.
public struct Score: Sendable, Equatable {
    /// The exact ELBO of the engine's θ and q, (1/N) Σ ELBO_n.
    public var elbo: Double
    /// The exact log-likelihood at the engine's θ, (1/N) Σ log p(y_n).
    public var logLikelihood: Double
    /// log p(Y) − ELBO(q*): what the family loses at its best (q* closed form, §10).
    public var approximationGap: Double
    /// ELBO(q*) − ELBO(q): what the engine's q loses against the best of its family.
    public var amortizationGap: Double
}

/// The one exact scorer every engine is measured by (§10):
/// `log p(Y) − ELBO(q) = [log p(Y) − ELBO(q*)] + [ELBO(q*) − ELBO(q)]`.
public enum Scorer {
    /// Scores θ = `model` and `q` on all of `data`.
    public static func score(data: Dataset, model: LinearGaussianModel, q: GaussianPosteriors) throws -> Score {
        let best = try GaussianPosteriors.optimal(q.family, model: model, data: data)
        let bestResiduals = model.residualSquaredNorms(of: data, means: best.means)
        // q*'s means are the posterior means in both families.
        let ll = try model.pointLogLikelihoods(posteriorMeans: best.means, residuals: bestResiduals)
        let invN = 1.0 / Double(data.count)
        let logLik = neumaierSum(ll) * invN
        let bestELBO = q.family == .full
            ? logLik
            : neumaierSum(ExactELBO.pointValues(residuals: bestResiduals, model: model, q: best)) * invN
        let elbo = neumaierSum(ExactELBO.pointValues(data: data, model: model, q: q)) * invN
        return Score(elbo: elbo, logLikelihood: logLik,
                     approximationGap: logLik - bestELBO, amortizationGap: bestELBO - elbo)
    }
}

extension GaussianPosteriors {
    /// V = Σ_n S_n, `J × J`.
    public func covarianceSum() -> Matrix {
        let j = latent
        var v = Matrix(rows: j, cols: j)
        let weight = isShared ? Double(count) : 1
        for n in 0..<scales.rows {
            switch family {
            case .diagonal:
                for k in 0..<j { v[k, k] += weight * scales[n, k] }
            case .full:
                for a in 0..<j {
                    for b in 0...a {
                        var s = 0.0
                        for c in 0...b { s += scales.storage[n * j * j + a * j + c] * scales.storage[n * j * j + b * j + c] }
                        v[a, b] += weight * s
                        if a != b { v[b, a] += weight * s }
                    }
                }
            }
        }
        return v
    }
}

extension LinearGaussianModel {
    /// The θ that maximises the ELBO given q (the M-step of variational EM):
    /// regress y on m̃_n = [m_n; 1] with the second moments of q,
    /// ```
    /// [W b] = [Σ y_n m̃_nᵀ] [Σ (m̃_n m̃_nᵀ + S̃_n)]⁻¹,   s2 = (1/(N D)) Σ [‖y_n − W m_n − b‖² + tr(W S_n Wᵀ)]
    /// ```
    /// (in centred coordinates; without the constant when b = 0 is held; s2 kept when held).
    public static func maximizingELBO(data: Dataset, q: GaussianPosteriors, constraints: ModelConstraints) throws -> LinearGaussianModel {
        let d = data.dimension, j = q.latent, n = Double(data.count)
        let v = q.covarianceSum()
        var ym = Matrix(rows: d, cols: j)
        gemm(data.centered, true, q.means, false, into: &ym)             // Σ (y_n − ȳ) m_nᵀ
        var mm = Matrix(rows: j, cols: j)
        gemm(q.means, true, q.means, false, into: &mm)
        let (w, b) = try regressOnMeans(data: data, dataTimesMeans: ym, second: mm + v,
                                        meanSum: q.means.columnSums(), constraints: constraints)
        var model = LinearGaussianModel(loadings: w, offset: b, noiseVariance: constraints.noiseVariance ?? 1)
        if constraints.noiseVariance == nil {
            let residual = neumaierSum(model.residualSquaredNorms(of: data, means: q.means))
            model.noiseVariance = (residual + model.gram.frobeniusDot(v)) / (n * Double(d))
        }
        return model
    }

    /// The regression step shared by every M-step given q: W and b from the sums over points
    /// `Σ (y_n − ȳ) m_nᵀ` (`D × J`), `Σ (m_n m_nᵀ + S_n)` (`J × J`) and `Σ m_n`, by regressing y on
    /// `[m_n; 1]` (on `m_n` alone, with b = 0, when the offset is held).
    static func regressOnMeans(data: Dataset, dataTimesMeans ym: Matrix, second: Matrix, meanSum msum: [Double],
                               constraints: ModelConstraints) throws -> (loadings: Matrix, offset: [Double]) {
        let d = data.dimension, j = second.rows, n = Double(data.count)
        var b = [Double](repeating: 0, count: d)
        if constraints.zeroOffset {
            var yUncentred = ym                                       // Σ y_n m_nᵀ
            for i in 0..<d { for k in 0..<j { yUncentred[i, k] += data.mean[i] * msum[k] } }
            return (try Cholesky(symmetrized(second)).solve(yUncentred.transposed).transposed, b)
        }
        var syx = Matrix(rows: d, cols: j + 1), sxx = Matrix(rows: j + 1, cols: j + 1)
        for i in 0..<d {
            for k in 0..<j { syx[i, k] = ym[i, k] }
            syx[i, j] = data.centeredColumnSums[i]
        }
        for k in 0..<j {
            for l in 0..<j { sxx[k, l] = second[k, l] }
            sxx[k, j] = msum[k]; sxx[j, k] = msum[k]
        }
        sxx[j, j] = n
        let wb = try Cholesky(symmetrized(sxx)).solve(syx.transposed).transposed
        var w = Matrix(rows: d, cols: j)
        for i in 0..<d {
            for k in 0..<j { w[i, k] = wb[i, k] }
            b[i] = data.mean[i] + wb[i, j]
        }
        return (w, b)
    }
}
