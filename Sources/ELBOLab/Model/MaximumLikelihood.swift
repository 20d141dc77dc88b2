import Foundation

/// The closed-form maximum-likelihood fit of the linear-Gaussian model (Tipping & Bishop 1999),
/// the ceiling every ELBO curve sits under.
public struct MaximumLikelihoodFit: Sendable {
    /// θ at the maximum (W = U_J (Λ_J − s2 I)^{1/2}, columns with λ_i ≤ s2 set to zero).
    public let model: LinearGaussianModel
    /// The maximum average log-likelihood per point, from the eigenvalues in closed form.
    public let logLikelihood: Double
    /// Eigenvalues of the second moment the fit used, in decreasing order.
    public let eigenvalues: [Double]
    /// How many latent directions carry signal (λ_i > s2); the rest have collapsed to zero.
    public let activeDirections: Int
}

extension LinearGaussianModel {
    /// The closed-form MLE for `latent` dimensions under `constraints`.
    ///
    /// With ȳ, S the sample mean and covariance and λ₁ ≥ … ≥ λ_D the eigenvalues of S:
    /// ```
    /// b = ȳ,  s2 = (1/(D−J)) Σ_{i>J} λ_i,  W = U_J (Λ_J − s2 I)^{1/2}
    /// max (1/N) log p(Y) = −½ [D log 2π + Σ_i log c_i + Σ_i λ_i / c_i]
    /// ```
    /// with `c_i = λ_i` on the kept directions and `c_i = s2` elsewhere. With `zeroOffset` the
    /// uncentred second moment replaces S; with a fixed s2 only directions with λ_i > s2 are kept.
    /// The eigen-pairs come from `principalDirections(of:about:keep:throughCovariance:)`: no
    /// `D × D` matrix when N < D.
    ///
    /// - Throws: ``/ELBOLabNumerics/InputError`` when the data leave no noise to estimate (rank ≤ J).
    public static func maximumLikelihood(for data: Dataset, latent: Int,
                                         constraints: ModelConstraints = .free) throws -> MaximumLikelihoodFit {
        try maximumLikelihood(for: data, latent: latent, constraints: constraints, throughCovariance: data.prefersCovariance)
    }

    /// ``maximumLikelihood(for:latent:constraints:)`` by a chosen route (tests compare the two).
    static func maximumLikelihood(for data: Dataset, latent: Int, constraints: ModelConstraints,
                                  throughCovariance: Bool) throws -> MaximumLikelihoodFit {
        let d = data.dimension
        try data.validate(latent: latent, noiseFixed: constraints.noiseVariance != nil)
        let b = constraints.zeroOffset ? [Double](repeating: 0, count: d) : data.mean
        let (lambda, vectors) = try principalDirections(of: data, about: b, keep: latent, throughCovariance: throughCovariance)
        let s2: Double
        if let fixed = constraints.noiseVariance {
            s2 = fixed
        } else {
            s2 = lambda[latent...].reduce(0, +) / Double(d - latent)
            // The eigenvalues of S carry rounding errors of order ε·λ₁, so data of rank ≤ J leave
            // s2 at that level rather than at 0. Below this fraction of λ₁ it is rounding, not noise.
            let roundingFloor = 1e-12 * lambda[0]
            guard s2 > roundingFloor else {
                throw InputError("\(data.name): the data have rank ≤ J = \(latent), so the noise variance would be 0: lower --latent or hold s2 with --noise-variance")
            }
        }
        var w = Matrix(rows: d, cols: latent)
        var active = 0
        for j in 0..<latent where lambda[j] > s2 {
            active += 1
            let scale = (lambda[j] - s2).squareRoot()
            // Fix each eigenvector's sign (largest entry positive) so fits are reproducible.
            var sign = 1.0, largest = 0.0
            for i in 0..<d where abs(vectors[i, j]) > largest { largest = abs(vectors[i, j]); sign = vectors[i, j] < 0 ? -1 : 1 }
            for i in 0..<d { w[i, j] = sign * scale * vectors[i, j] }
        }
        var sum = Double(d) * log(2 * Double.pi)
        for i in 0..<d {
            let c = (i < latent && lambda[i] > s2) ? lambda[i] : s2
            sum += log(c) + lambda[i] / c
        }
        return MaximumLikelihoodFit(model: LinearGaussianModel(loadings: w, offset: b, noiseVariance: s2),
                                    logLikelihood: -0.5 * sum, eigenvalues: lambda, activeDirections: active)
    }

    /// All D eigenvalues (decreasing, rounding negatives set to 0) of the second moment about
    /// `b`, and the eigenvectors of the first `keep`, `D × keep`.
    ///
    /// Through the covariance: the eigen-decomposition of the `D × D` moment. Otherwise (N ≤ D)
    /// the thin SVD of Xᵀ (`D × N`), X = Y − 1bᵀ: XᵀX/N has the eigenvalues σ_k²/N with the left
    /// singular vectors as eigenvectors, and the D − N remaining eigenvalues are exactly zero.
    static func principalDirections(of data: Dataset, about b: [Double], keep: Int,
                                    throughCovariance: Bool) throws -> (values: [Double], vectors: Matrix) {
        let n = data.count, d = data.dimension
        var lambda = [Double](repeating: 0, count: d)
        var vectors = Matrix(rows: d, cols: keep)
        if throughCovariance || n > d {
            let moment = b == data.mean ? data.covariance : data.secondMoment(about: b)
            let eig = try SymmetricEigen(moment)
            // Rounding can leave the eigenvalues of a singular moment slightly negative.
            for i in 0..<d { lambda[i] = max(eig.values[i], 0) }
            for i in 0..<d { for k in 0..<keep { vectors[i, k] = eig.vectors[i, k] } }
        } else {
            var xt = Matrix(rows: d, cols: n)                      // Xᵀ = (Y − 1bᵀ)ᵀ
            data.centered.storage.withUnsafeBufferPointer { y in
                for p in 0..<n { for i in 0..<d { xt[i, p] = y[p * d + i] - (b[i] - data.mean[i]) } }
            }
            let svd = try ThinSVD(xt)
            for k in 0..<n { lambda[k] = svd.values[k] * svd.values[k] / Double(n) }
            for i in 0..<d { for k in 0..<keep { vectors[i, k] = svd.left[i, k] } }
        }
        return (lambda, vectors)
    }

    /// One step of exact EM (exact E-step §3, closed-form M-step §5), in moment form:
    /// ```
    /// b ← ȳ,  W ← S W (s2 I + M⁻¹ Wᵀ S W)⁻¹,  s2 ← (1/D) tr(S − S W M⁻¹ W_newᵀ)
    /// ```
    /// with S the second moment about the new b. Never lowers the log-likelihood.
    ///
    /// With `expanded`, the step is PX-EM's (Liu, Rubin & Wu 1998): the M-step also fits the
    /// prior's covariance, C = (1/N) Σ E[z zᵀ] = (s2 I + M⁻¹ Wᵀ S W) M⁻¹, and the reduction
    /// back to N(0, I), z = L z′ (L Lᵀ = C), gives W ← W_new L. Plain EM moves the scale of each column of W by a
    /// factor ≈ 1 − 2 s2(λ − s2)/λ² per step, slow when λ/s2 is large (~10⁵ on the wine data);
    /// the expansion fits that scale in one step. PX-EM is EM on a model with the same marginal
    /// p(y), so it never lowers the log-likelihood either.
    public func emStep(on data: Dataset, constraints: ModelConstraints = .free, expanded: Bool = false) throws -> LinearGaussianModel {
        try emStepAndReduction(on: data, constraints: constraints, expanded: expanded).model
    }

    /// ``emStep(on:constraints:expanded:)`` and, when `expanded`, the change of latent coordinates
    /// that carries the E-step's q to the new θ (μ = 0: the posterior means average to 0 about b = ȳ).
    public func emStepAndReduction(on data: Dataset, constraints: ModelConstraints = .free,
                                   expanded: Bool) throws -> (model: LinearGaussianModel, reduction: LatentReduction?) {
        let d = dimension, j = latent
        let b = constraints.zeroOffset ? [Double](repeating: 0, count: d) : data.mean
        let minv = symmetrized(try factorInner().inverse)
        let sw = data.secondMomentTimes(loadings, about: b)                    // S W, D × J
        var inner = minv.multiplied(by: loadings.multiplied(by: sw, transposeSelf: true))   // M⁻¹ Wᵀ S W
        for k in 0..<j { inner[k, k] += noiseVariance }
        // W_new = S W · inner⁻¹: solve innerᵀ W_newᵀ = (S W)ᵀ (inner is not symmetric, use LU).
        let wNew = try solveRight(sw, inner)
        var s2 = noiseVariance
        if constraints.noiseVariance == nil {
            let swMinv = sw.multiplied(by: minv)
            s2 = (data.secondMomentTrace(about: b) - swMinv.frobeniusDot(wNew)) / Double(d)
        }
        guard expanded else { return (LinearGaussianModel(loadings: wNew, offset: b, noiseVariance: s2), nil) }
        let l = try Cholesky(symmetrized(inner.multiplied(by: minv))).lower
        return (LinearGaussianModel(loadings: wNew.multiplied(by: l), offset: b, noiseVariance: s2),
                LatentReduction(shift: [Double](repeating: 0, count: j), scale: l))
    }
}

/// X = B A⁻¹ for a small square A: A⁻¹ from the LU factorisation with partial pivoting
/// (`gsl_linalg_LU_*`), then one product, so tall B (D × J with D large) costs one gemm.
func solveRight(_ b: Matrix, _ a: Matrix) throws -> Matrix {
    b.multiplied(by: try LUFactorization(a).solve(.identity(a.rows)))
}

extension LinearGaussianModel {
    /// One step of mean-field variational EM with both steps in closed form, in moment form:
    /// the E-step q_n = N(B(y_n − b), diag(v)) with `B = M⁻¹Wᵀ`, `v_j = s2/M_jj` (§6), then the
    /// M-step that maximises the ELBO given those q_n (`maximizingELBO(data:q:constraints:)`, in ELBOLabVariational).
    ///
    /// Because every m_n is affine in y_n, the M-step's sums reduce to the second moment S:
    /// ```
    /// W ← S Bᵀ (B S Bᵀ + diag v)⁻¹,   b ← ȳ + W B (b_old − ȳ)
    /// s2 ← (1/D) [tr((I − W B) S (I − W B)ᵀ) + Σ_j ‖w_j‖² v_j]
    /// ```
    /// (S uncentred and no intercept when b = 0 is held). Only S W is needed
    /// (``Dataset/secondMomentTimes(_:about:)``): O(min(N, D)·DJ) per step, with the same
    /// iterates as the explicit per-point computation.
    ///
    /// With `expanded`, the M-step also fits a prior N(μ, diag c) on z (parameter-expanded
    /// variational EM, after Qi & Jaakkola 2006): μ = the mean of the m_n, c = diag(B S Bᵀ + diag v),
    /// the spread of q about μ. The reduction z = μ + diag(√c) z′ keeps every q_n diagonal and
    /// gives W ← W_new diag(√c), b ← b_new + W_new μ = ȳ. Plain steps move the scale of W's
    /// columns and b by factors near 1 when λ/s2 is large; these moves take one step. The
    /// ELBO never falls: the reduced (θ, q) have the expanded step's ELBO, and the next
    /// E-step is optimal. A diagonal c, not a full one, is what keeps q in its family.
    public func meanFieldEMStep(on data: Dataset, constraints: ModelConstraints = .free, expanded: Bool = false) throws -> LinearGaussianModel {
        try meanFieldEMStepAndReduction(on: data, constraints: constraints, expanded: expanded).model
    }

    /// ``meanFieldEMStep(on:constraints:expanded:)`` and, when `expanded`, the change of latent
    /// coordinates (μ, diag √c) that carries the E-step's q to the new θ.
    public func meanFieldEMStepAndReduction(on data: Dataset, constraints: ModelConstraints = .free,
                                            expanded: Bool) throws -> (model: LinearGaussianModel, reduction: LatentReduction?) {
        let d = dimension, j = latent
        let chol = try factorInner()
        let minv = symmetrized(chol.inverse)
        let inner = innerMatrix
        let v = (0..<j).map { noiseVariance / inner[$0, $0] }
        let about = constraints.zeroOffset ? [Double](repeating: 0, count: d) : data.mean
        let sb = data.secondMomentTimes(loadings, about: about).multiplied(by: minv)   // S Bᵀ = S W M⁻¹, D × J
        let bm = minv.multiplied(by: loadings, transposeOther: true)             // B, J × D
        var bsb = symmetrized(bm.multiplied(by: sb))                             // B S Bᵀ
        for k in 0..<j { bsb[k, k] += v[k] }
        let wNew = sb.multiplied(by: symmetrized(try Cholesky(bsb).inverse))    // one gemm however large D is
        let spread = (0..<j).map { bsb[$0, $0] }                                // c of the expanded prior
        var b = [Double](repeating: 0, count: d)
        if !constraints.zeroOffset {
            let delta = (0..<d).map { offset[$0] - data.mean[$0] }
            let shift = wNew.times(bm.times(delta))
            for i in 0..<d { b[i] = data.mean[i] + shift[i] }
        }
        var s2 = noiseVariance
        if constraints.noiseVariance == nil {
            for k in 0..<j { bsb[k, k] -= v[k] }
            let gNew = wNew.multiplied(by: wNew, transposeSelf: true)
            var residual = data.secondMomentTrace(about: about) - 2 * wNew.frobeniusDot(sb) + gNew.frobeniusDot(bsb)
            for k in 0..<j { residual += gNew[k, k] * v[k] }
            s2 = residual / Double(d)
        }
        guard expanded else { return (LinearGaussianModel(loadings: wNew, offset: b, noiseVariance: s2), nil) }
        // The reduction leaves s2 as it is. μ = B(ȳ − b_old), the mean of the m_n (0 with b = 0 held).
        let roots = spread.map { $0.squareRoot() }
        var w = wNew
        for i in 0..<d { for k in 0..<j { w[i, k] *= roots[k] } }
        let shift = constraints.zeroOffset ? [Double](repeating: 0, count: j) : bm.times((0..<d).map { data.mean[$0] - offset[$0] })
        return (LinearGaussianModel(loadings: w, offset: constraints.zeroOffset ? b : data.mean, noiseVariance: s2),
                LatentReduction(shift: shift, scale: .diagonal(roots)))
    }
}

/// The change of latent coordinates that ends a parameter-expanded step: the expanded prior
/// N(μ, L Lᵀ) on z becomes N(0, I) under z ↦ L⁻¹(z − μ), and every q_n moves with it, so
/// (θ_new, q) have the expanded step's ELBO.
public struct LatentReduction: Sendable {
    /// μ, length J.
    public let shift: [Double]
    /// L, lower triangular `J × J` (diagonal after a mean-field step).
    public let scale: Matrix
}
