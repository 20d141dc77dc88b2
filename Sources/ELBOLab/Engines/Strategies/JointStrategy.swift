extension Strategy {
    /// Part C of the notes: θ and φ together by gradient ascent on the ELBO (the VAE;
    /// `EncoderEngine`).
    public static let joint = Strategy(
        name: "joint",
        summary: "part C (joint training, the VAE): θ and φ together, by one L-BFGS iteration on the exact ELBO (the default) or one Adam step (--gradient reparam, …).",
        capabilities: [
            .iterations: .always, .encoder: .always, .encoderTraining: .always, .averaging: .always,
            .monteCarlo: .monteCarloGradient,
            .adamSteps: .when("with --optimizer adam") { $0.resolvedOptimizer == .adam },
            .adamSchedule: .when("with --optimizer adam") { $0.resolvedOptimizer == .adam },
        ],
        describeRun: encoderRun("joint"),
        makeEngine: { try EncoderEngine(data: $0.data, initial: $0.initial, options: $0.options, rng: $0.rng, coupling: .joint) })
}
