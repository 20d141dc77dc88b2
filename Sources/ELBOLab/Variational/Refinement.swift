import Foundation

/// Semi-amortised refinement (§15; Kim et al. 2018): from an encoder's proposal λ⁽⁰⁾ = g_φ(y_n),
/// R steps of gradient ascent on each point's exact ELBO with θ held,
///
///     λ⁽ʳ⁾ = λ⁽ʳ⁻¹⁾ + α ∇_λ ELBO_n(θ, λ⁽ʳ⁻¹⁾),   λ = (m_n, log v_n),
///
/// with the exact gradient of §7: ∂/∂m = (p_n − G m)/s2 − m and ∂/∂log v_k = v_k(−G_kk/(2 s2) − ½) + ½,
/// where p_n = Wᵀ(y_n − b) and G = WᵀW. Each ELBO_n is concave in λ and separable in m and
/// log v; the mean's part is a quadratic with curvature G/s2 + I.
public struct PerPointRefinement: Sendable, Equatable {
    /// R, the steps per point.
    public var steps: Int
    /// α; nil takes ``defaultRate(for:)`` at each θ.
    public var rate: Double?

    public init(steps: Int, rate: Double? = nil) {
        self.steps = steps
        self.rate = rate
    }

    /// 1/λ_max(WᵀW/s2 + I): the inverse of the mean's largest curvature, so that every step
    /// raises the mean's part of every ELBO_n and the steps contract towards its optimum.
    public static func defaultRate(for model: LinearGaussianModel) throws -> Double {
        let largest = try SymmetricEigen(model.gram).values.first ?? 0
        return 1 / (max(largest, 0) / model.noiseVariance + 1)
    }

    /// The refined means and log-variances (`N × J` each) from the proposal, at θ = `model`, with
    /// `projections` = P = (Y − 1bᵀ)W (``/ELBOLabModel/LinearGaussianModel/projections(of:)``).
    public func refine(means: Matrix, logVariances: Matrix, model: LinearGaussianModel,
                       projections: Matrix) throws -> (means: Matrix, logVariances: Matrix) {
        var m = means, l = logVariances
        guard steps > 0 else { return (m, l) }
        let alpha = try rate ?? Self.defaultRate(for: model)
        let gram = model.gram, s2 = model.noiseVariance
        let j = gram.rows, n = m.rows
        // ∂/∂log v_k = v_k c_k + ½ with c_k = −(G_kk/s2 + 1)/2.
        let c = (0..<j).map { -(gram[$0, $0] / s2 + 1) / 2 }
        for _ in 0..<steps {
            let mg = m.multiplied(by: gram)   // row n: (G m_n)ᵀ; G is symmetric
            m.storage.withUnsafeMutableBufferPointer { mp in
                l.storage.withUnsafeMutableBufferPointer { lp in
                    projections.storage.withUnsafeBufferPointer { pp in
                        mg.storage.withUnsafeBufferPointer { gp in
                            for i in 0..<(n * j) {
                                let k = i % j
                                mp[i] += alpha * ((pp[i] - gp[i]) / s2 - mp[i])
                                lp[i] += alpha * (exp(lp[i]) * c[k] + 0.5)
                            }
                        }
                    }
                }
            }
        }
        return (m, l)
    }
}
