import Foundation

extension FitOptions {
    /// The memory a fit of `count` points in `dimension` columns needs, by part: the data,
    /// the D × D matrices of the covariance and the MLE, the per-point variational state
    /// (q's means and scales, the optimiser's moments, the E-step's new q, iterate averages,
    /// a minibatch and its Monte Carlo draws) and the exact scorer's buffers. Each part is an
    /// upper bound on what the engines allocate; the figure was validated against the peak
    /// resident memory of `elbolab fit` (README, "Input data").
    public func memoryEstimate(count n: Int, dimension d: Int) -> MemoryEstimate {
        let j = latent
        var e = MemoryEstimate()
        e.add("data", doubles: n, d)
        e.add("runtime", bytes: MemoryEstimate.runtime)
        e.add("D × D matrices", doubles: 6, d, min(d, n) + j)
        e.add("scoring buffers", doubles: n, 4 * j + 8)
        let b = min(n, batch ?? n)
        if strategy.offers(.perPointQ) {
            let width = covariance == .full ? j * j : j
            var perPoint = 2 * (j + width)                       // q, and the E-step's new q
            if eSolver == .adam { perPoint += 6 * j }            // Adam's moments and step buffers
            if eSolver == .bfgs { perPoint += 2 * (j + width) }  // per-block solver state
            if averaging != nil { perPoint += 2 * j }
            e.add("per-point state", doubles: n, perPoint)
        } else if strategy.hasEncoder {
            let draws = (gradient == nil || gradient == .exact) ? 0 : 3 * samples
            let hiddenWidth = encoder == .mlp || encoder == .residual ? 3 * hidden : encoder == .lowRank ? 3 * (rank ?? 1) : 0
            e.add("per-point state", doubles: b, 8 * j + draws * j + hiddenWidth)
            if b < n { e.add("minibatch", doubles: b, d) }
        }
        return e
    }
}
