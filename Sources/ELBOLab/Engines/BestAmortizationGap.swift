extension FitResult {
    /// The least amortisation gap the run's encoder family can reach at the run's final θ, where
    /// it is known in closed form: 0 for the families that contain the optimal (linear) encoder,
    /// ``/ELBOLabVariational/LowRankEncoder/amortizationGap(model:data:rank:)`` for a low-rank encoder; nil for an MLP
    /// (whose best is a supremum it never attains) and for runs without an encoder.
    public func bestAmortizationGap(data: Dataset) -> Double? {
        // A semi-amortized q is refined per point: its family is not the encoder's.
        guard options.strategy.hasEncoder, options.strategy != .semiAmortized else { return nil }
        switch options.encoder {
        case .linear, .residual: return 0
        case .lowRank: return try? LowRankEncoder.amortizationGap(model: model, data: data, rank: options.rank ?? 1)
        case .mlp: return nil
        }
    }
}
