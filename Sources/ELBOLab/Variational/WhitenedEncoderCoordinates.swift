/// Coordinates u for a linear encoder's weights in which its inputs are white: a fixed linear
/// change of variables for the quasi-Newton solvers, not a change of encoder or of any ELBO.
///
/// The data are whitened in standard units: with s the columns' standard deviations and the
/// correlation matrix R = diag(1/s) S diag(1/s) = V Λ Vᵀ, u's inputs Λ^{-1/2} Vᵀ diag(1/s)(y − ȳ)
/// have covariance I, and the weights are p = u T with T = Λ^{-1/2} Vᵀ diag(1/(s ⊙ c)), c the
/// encoder's own input scales. In those coordinates the curvature of the ELBO in the weights no
/// longer carries R's eigenvalue spread (a factor of ~60 on `synth`). Standard units matter:
/// in raw units (the breast-cancer data: areas of ~10³, smoothness of ~10⁻¹) real directions
/// look like rounding noise next to the largest eigenvalue.
package struct WhitenedEncoderCoordinates {
    /// T, `D × D`, and T⁻¹.
    let map: Matrix, inverse: Matrix
    /// Weight rows (2J); the biases after them pass through unchanged.
    let rows: Int

    package init(data: Dataset, encoder: LinearEncoder) throws {
        let d = data.dimension
        let sd = data.columnVariances.map { $0 > 0 ? $0.squareRoot() : 1 }
        var correlation = data.covariance
        for a in 0..<d { for b in 0..<d { correlation[a, b] /= sd[a] * sd[b] } }
        let eigen = try SymmetricEigen(correlation)
        let largest = max(eigen.values.first ?? 0, .leastNormalMagnitude)
        var t = Matrix(rows: d, cols: d), inv = Matrix(rows: d, cols: d)
        for j in 0..<d {
            // Directions without variance (constant columns, exact collinearity) carry no
            // signal: keep them at the largest scale.
            let lambda = eigen.values[j] > 1e-8 * largest ? eigen.values[j] : largest
            let root = lambda.squareRoot()
            for i in 0..<d {
                let units = sd[i] * encoder.invScale[i]
                t[j, i] = eigen.vectors[i, j] / (root * units)
                inv[i, j] = eigen.vectors[i, j] * root * units
            }
        }
        map = t
        inverse = inv
        rows = 2 * encoder.latent
    }

    /// `[W · m]` for the weight block of `v` (rows × D, row-major) times `m`, biases copied.
    private func transform(_ v: [Double], _ m: Matrix, transpose: Bool) -> [Double] {
        let d = map.rows
        var out = v
        v.withUnsafeBufferPointer { pv in
            out.withUnsafeMutableBufferPointer { po in
                m.storage.withUnsafeBufferPointer { pm in
                    gemmRaw(pv.baseAddress, rows, d, false, pm.baseAddress, d, d, transpose, po.baseAddress, rows, d, alpha: 1, beta: 0)
                }
            }
        }
        return out
    }

    /// The encoder's parameters at coordinates `u`.
    package func parameters(_ u: [Double]) -> [Double] { transform(u, map, transpose: false) }
    /// The coordinates of the encoder's parameters `p`.
    package func coordinates(_ p: [Double]) -> [Double] { transform(p, inverse, transpose: false) }
    /// A gradient with respect to the parameters, pulled back to the coordinates (times Tᵀ).
    package func pullback(_ g: [Double]) -> [Double] { transform(g, map, transpose: true) }
}
