extension Strategy {
    /// Between parts A and B: the encoder proposes each q_n, R per-point gradient steps refine it,
    /// θ steps on the refined q (`SemiAmortizedEngine`).
    public static let semiAmortized = Strategy(
        name: "semi-amortized",
        summary: "between A and B: the encoder proposes each q_n, --refine-steps exact gradient steps per point refine it, θ steps on the refined q; the encoder trains on its own ELBO (no gradient flows through the steps).",
        capabilities: [
            .iterations: .always, .encoder: .always, .encoderSteps: .always, .refinement: .always, .heldTheta: .always,
            .monteCarlo: .monteCarloGradient, .adamSteps: .always, .adamSchedule: .always,
        ],
        describeRun: { "semi-amortized run (--encoder \($0.encoder.rawValue), --gradient \($0.resolvedGradient.rawValue))" },
        makeEngine: { SemiAmortizedEngine(data: $0.data, initial: $0.initial, options: $0.options, rng: $0.rng) })
}
