extension Strategy {
    /// Part B of the notes: an encoder g_φ(y) fitted with θ held, alternating with θ (variational
    /// EM; `EncoderEngine`).
    public static let amortized = Strategy(
        name: "amortized",
        summary: "part B (amortization): an encoder g_φ(y) fitted by --encoder-steps steps with θ held, alternating with a θ step (variational EM).",
        capabilities: [
            .iterations: .always, .encoder: .always, .encoderTraining: .always, .encoderSteps: .always,
            .mStepChoice: .always, .heldTheta: .always, .averaging: .always,
            .monteCarlo: .monteCarloGradient,
            .adamSteps: .when("with --optimizer adam or --m-step gradient") { $0.resolvedOptimizer == .adam || $0.mStep == .gradient },
            .adamSchedule: .when("with --optimizer adam or --m-step gradient") { $0.resolvedOptimizer == .adam || $0.mStep == .gradient },
        ],
        describeRun: encoderRun("amortized"),
        makeEngine: { try EncoderEngine(data: $0.data, initial: $0.initial, options: $0.options, rng: $0.rng, coupling: .alternating) })
}

extension StrategyCondition {
    /// An encoder's gradient that is a Monte Carlo estimate.
    static let monteCarloGradient = StrategyCondition.when("with --gradient reparam or score") { $0.resolvedGradient != .exact }
}

/// "NAME run (--encoder …, --gradient …, --optimizer …)", for an encoder strategy's refusals.
func encoderRun(_ name: String) -> @Sendable (FitOptions) -> String {
    { "\(name) run (--encoder \($0.encoder.rawValue), --gradient \($0.resolvedGradient.rawValue), --optimizer \($0.resolvedOptimizer.rawValue))" }
}
