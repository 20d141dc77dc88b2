import Foundation

/// How close a fitted θ is to the true one, by the parts of θ the data identify.
///
/// W itself is identified only up to a rotation of the latent space, so it is compared through
/// its column span and through W Wᵀ, both rotation-free.
public struct Recovery: Sendable, Equatable {
    /// The largest principal angle between span(W) and span(W_true), in degrees (0 = same subspace).
    public var principalAngleDegrees: Double
    /// The fitted s2.
    public var noiseVariance: Double
    /// |s2 − s2_true| / s2_true.
    public var noiseVarianceRelativeError: Double
    /// ‖W Wᵀ − W_true W_trueᵀ‖_F / ‖W_true W_trueᵀ‖_F.
    public var loadingRelativeError: Double

    public init(principalAngleDegrees: Double, noiseVariance: Double, noiseVarianceRelativeError: Double, loadingRelativeError: Double) {
        self.principalAngleDegrees = principalAngleDegrees
        self.noiseVariance = noiseVariance
        self.noiseVarianceRelativeError = noiseVarianceRelativeError
        self.loadingRelativeError = loadingRelativeError
    }

    /// Compares `fit` with `truth` (same D).
    public init(fit: LinearGaussianModel, truth: LinearGaussianModel) {
        principalAngleDegrees = Recovery.largestPrincipalAngle(fit.loadings, truth.loadings) * 180 / Double.pi
        noiseVariance = fit.noiseVariance
        noiseVarianceRelativeError = abs(fit.noiseVariance - truth.noiseVariance) / truth.noiseVariance
        // ‖AAᵀ − BBᵀ‖² = ‖AᵀA‖² − 2‖AᵀB‖² + ‖BᵀB‖², all in J × J.
        let a = fit.loadings, b = truth.loadings
        let aa = a.multiplied(by: a, transposeSelf: true), bb = b.multiplied(by: b, transposeSelf: true)
        let ab = a.multiplied(by: b, transposeSelf: true)
        let num = max(0, aa.frobeniusDot(aa) - 2 * ab.frobeniusDot(ab) + bb.frobeniusDot(bb))
        let den = bb.frobeniusDot(bb)
        loadingRelativeError = den > 0 ? (num / den).squareRoot() : .nan
    }

    /// The largest principal angle between the column spans of `a` and `b` (radians).
    ///
    /// With Q_a, Q_b orthonormal bases, sin θ_max is the largest singular value of
    /// (I − Q_b Q_bᵀ) Q_a (accurate for small angles, unlike arccos of Q_aᵀQ_b); where the
    /// spans have different dimensions the extra directions count as 90°. A column span that
    /// has collapsed (rank below J) is 90° from anything of full rank.
    static func largestPrincipalAngle(_ a: Matrix, _ b: Matrix) -> Double {
        guard let qa = orthonormalBasis(a), let qb = orthonormalBasis(b) else { return Double.pi / 2 }
        if qa.cols > qb.cols { return Double.pi / 2 }
        let projection = qb.multiplied(by: qb.multiplied(by: qa, transposeSelf: true))   // Q_b Q_bᵀ Q_a
        let residual = qa - projection
        let gram = symmetrized(residual.multiplied(by: residual, transposeSelf: true))
        guard let eig = try? SymmetricEigen(gram) else { return .nan }
        let largest = max(0, eig.values.max() ?? 0)
        return asin(min(1, largest.squareRoot()))
    }

    /// Q = A (AᵀA)^{-1/2}, or nil when A has (numerically) lost rank.
    static func orthonormalBasis(_ a: Matrix) -> Matrix? {
        let gram = symmetrized(a.multiplied(by: a, transposeSelf: true))
        guard let eig = try? SymmetricEigen(gram) else { return nil }
        let top = eig.values.max() ?? 0
        // Rank loss: an eigenvalue this far below the largest is rounding, not a direction.
        guard top > 0, eig.values.allSatisfy({ $0 > 1e-12 * top }) else { return nil }
        return a.multiplied(by: eig.inverseSquareRoot)
    }
}
