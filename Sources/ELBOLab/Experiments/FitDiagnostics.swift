/// The per-fit diagnostics beyond the ELBO that `summary.json` reports: posterior collapse (§16)
/// and the importance-weighted bound at the final θ and q (§13).
extension FitResult {
    /// The standard error `iwae_bound` is estimated to, in nats per point.
    public static let iwaeTargetStandardError = 1e-3
    /// The most draws of z the estimate may take (then its standard error is reported as it is):
    /// at O(J²) a draw, well under a second.
    public static let iwaeMaxDraws = 5_000_000

    /// Collapse diagnostics of the final q; nil when the run logged no q.
    public func collapse() -> CollapseDiagnostics? {
        posteriors.flatMap { try? CollapseDiagnostics(q: $0) }
    }

    /// L_K at the final θ and q with `particles` particles, to a standard error of
    /// ``iwaeTargetStandardError`` (at most ``iwaeMaxDraws`` draws), from a stream seeded by the
    /// run's seed; nil when the run logged no q or the final θ is not valid.
    public func importanceWeightedBound(data: Dataset, particles: Int) -> ImportanceWeightedEstimate? {
        guard let q = posteriors else { return nil }
        // Its own stream: the estimate does not depend on how many draws the fit took.
        let rng = RandomSource(seed: options.seed ^ 0x1A5E_B0D5_0000_0001)
        return try? ImportanceWeightedBound.estimate(data: data, model: model, q: q, particles: particles,
                                                     targetStandardError: Self.iwaeTargetStandardError,
                                                     maxDraws: Self.iwaeMaxDraws, rng: rng)
    }

    /// The diagnostics' fields of `summary.json`: `activity`, `active_units`, `active_dimensions`,
    /// `kl_per_latent`, `iwae_particles`, `iwae_bound`, `iwae_bound_se`, `iwae_draws`.
    public func diagnosticsSummary(data: Dataset, particles: Int = 1) -> [(String, JSON)] {
        let c = collapse()
        let iw = importanceWeightedBound(data: data, particles: particles)
        return [
            ("activity", c.map { .array($0.activity.map { .number($0) }) } ?? .null),
            ("active_units", .number(c.map { Double($0.activeUnits) })),
            ("active_dimensions", .number(c.map { Double($0.activeDimensions) })),
            ("kl_per_latent", c.map { .array($0.klPerLatent.map { .number($0) }) } ?? .null),
            ("iwae_particles", .number(Double(particles))),
            ("iwae_bound", .number(iw?.value)),
            ("iwae_bound_se", .number(iw?.standardError)),
            ("iwae_draws", .number(iw.map { Double($0.draws) })),
        ]
    }

    /// `posterior.csv`: the final q (nil when the run logged none).
    public var posteriorCSV: String? { posteriors.map(PosteriorFile.csv) }
}
