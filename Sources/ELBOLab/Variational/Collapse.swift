import Foundation

/// Posterior-collapse diagnostics of a fitted q (§16; Burda et al. 2016; Lucas et al. 2019).
///
/// ```
/// A_j = Cov_n( E_q[z_j | y_n] )                                 activity of latent j (1/N normalisation)
/// KL_j = (1/N) Σ_n KL( q(z_nj) ‖ N(0, 1) ) = (1/N) Σ_n ½ (S_n,jj + m_nj² − 1 − log S_n,jj)
/// ```
/// A latent is active when A_j exceeds ``threshold``. Per-latent activity depends on the
/// rotation of the latent space, which the exact posterior (em, mle) does not fix; the
/// eigenvalues of the J × J matrix Cov_n(m_n) do not, and ``activeDimensions`` counts those.
public struct CollapseDiagnostics: Sendable, Equatable {
    /// Burda et al.'s threshold on A_j.
    public static let threshold = 0.01

    /// A_j for every latent.
    public var activity: [Double]
    /// #{ j : A_j > 0.01 }.
    public var activeUnits: Int
    /// The eigenvalues of Cov_n(m_n) above 0.01: the rotation-free count.
    public var activeDimensions: Int
    /// The average KL of each latent's marginal q(z_j) to N(0, 1), in nats per point.
    public var klPerLatent: [Double]

    /// The diagnostics of `q` (either family).
    public init(q: GaussianPosteriors) throws {
        let n = q.count, j = q.latent
        let invN = 1 / Double(max(n, 1))
        let sums = q.means.columnSums()
        let mean = sums.map { $0 * invN }
        var centered = q.means
        for p in 0..<n { for c in 0..<j { centered[p, c] -= mean[c] } }
        var cov = Matrix(rows: j, cols: j)
        gemm(centered, true, centered, false, alpha: invN, into: &cov)
        activity = cov.diagonalEntries
        activeUnits = activity.filter { $0 > Self.threshold }.count
        activeDimensions = try SymmetricEigen(symmetrized(cov)).values.filter { $0 > Self.threshold }.count
        var kl = [Double](repeating: 0, count: j)
        let rows = q.scales.rows
        for r in 0..<rows {
            // The marginal variances S_jj of this row's covariance.
            let variances: [Double] = (0..<j).map { c in
                switch q.family {
                case .diagonal: return q.scales[r, c]
                case .full: return (0...c).reduce(0.0) { $0 + q.scales[r, c * j + $1] * q.scales[r, c * j + $1] }
                }
            }
            let weight = q.isShared ? Double(n) : 1
            for c in 0..<j { kl[c] += weight * 0.5 * (variances[c] - 1 - log(variances[c])) }
        }
        for c in 0..<j {
            var squares = 0.0
            for p in 0..<n { squares += q.means[p, c] * q.means[p, c] }
            kl[c] = (kl[c] + 0.5 * squares) * invN
        }
        klPerLatent = kl
    }

    /// The diagnostics at the maximum-likelihood solution with noise variance σ² (§16): for the
    /// eigenvalues λ_1 ≥ … of the sample covariance and each latent j ≤ J,
    /// `A_j = max(0, 1 − σ²/λ_j)` and `KL_j = ½ log(λ_j/σ²)` where λ_j > σ², else 0.
    public static func closedForm(eigenvalues: [Double], noiseVariance s2: Double, latent: Int) -> CollapseDiagnostics {
        let lambda = (0..<latent).map { $0 < eigenvalues.count ? eigenvalues[$0] : 0 }
        let activity = lambda.map { $0 > s2 ? 1 - s2 / $0 : 0 }
        let active = activity.filter { $0 > threshold }.count
        return CollapseDiagnostics(activity: activity, activeUnits: active, activeDimensions: active,
                                   klPerLatent: lambda.map { $0 > s2 ? 0.5 * log($0 / s2) : 0 })
    }

    /// The closed form for an MLE fit (its eigenvalues and noise variance).
    public static func closedForm(_ fit: MaximumLikelihoodFit) -> CollapseDiagnostics {
        closedForm(eigenvalues: fit.eigenvalues, noiseVariance: fit.model.noiseVariance, latent: fit.model.latent)
    }

    private init(activity: [Double], activeUnits: Int, activeDimensions: Int, klPerLatent: [Double]) {
        self.activity = activity
        self.activeUnits = activeUnits
        self.activeDimensions = activeDimensions
        self.klPerLatent = klPerLatent
    }
}
