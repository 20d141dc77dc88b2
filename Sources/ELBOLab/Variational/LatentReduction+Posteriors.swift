// The model's parameter-expanded M-step (Model) returns the latent map; moving every q_n with it
// is variational, so it lives here, above the model.
extension LatentReduction {
    /// q_n ↦ N(L⁻¹(m_n − μ), L⁻¹ S_n L⁻ᵀ); a diagonal q needs a diagonal L to stay diagonal.
    public func apply(to q: GaussianPosteriors) -> GaussianPosteriors {
        let j = shift.count
        precondition(q.latent == j)
        // L⁻¹ by forward substitution (J is small).
        var inv = Matrix(rows: j, cols: j)
        for c in 0..<j {
            for r in c..<j {
                var sum = r == c ? 1.0 : 0.0
                for k in c..<r { sum -= scale[r, k] * inv[k, c] }
                inv[r, c] = sum / scale[r, r]
            }
        }
        var means = q.means
        for n in 0..<q.count {
            let centred = (0..<j).map { q.means[n, $0] - shift[$0] }
            for r in 0..<j { var s = 0.0; for c in 0...r { s += inv[r, c] * centred[c] }; means[n, r] = s }
        }
        var scales = q.scales
        switch q.family {
        case .diagonal:
            precondition((0..<j).allSatisfy { r in (0..<r).allSatisfy { scale[r, $0] == 0 } }, "a diagonal q needs a diagonal L")
            for row in 0..<scales.rows { for k in 0..<j { scales[row, k] /= scale[k, k] * scale[k, k] } }
        case .full:
            for row in 0..<scales.rows {
                let factor = Matrix(rows: j, cols: j, storage: q.scales.row(row))
                let moved = inv.multiplied(by: factor)        // lower × lower: still lower, positive diagonal
                for i in 0..<(j * j) { scales.storage[row * j * j + i] = moved.storage[i] }
            }
        }
        return GaussianPosteriors(means: means, family: q.family, scales: scales)
    }
}
