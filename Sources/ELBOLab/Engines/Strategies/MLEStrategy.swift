extension Strategy {
    /// The closed-form maximum-likelihood fit (Tipping & Bishop): no iterations, the ceiling.
    public static let mle = Strategy(
        name: "mle",
        summary: "the closed-form maximum-likelihood fit (Tipping & Bishop), the ceiling.",
        capabilities: [:],
        defaultIterations: 0,
        makeEngine: { inputs in
            let o = inputs.options
            let fit = try inputs.maximumLikelihood
                ?? LinearGaussianModel.maximumLikelihood(for: inputs.data, latent: o.latent, constraints: o.constraints)
            return try ClosedFormEngine(data: inputs.data, fit: fit)
        })
}
