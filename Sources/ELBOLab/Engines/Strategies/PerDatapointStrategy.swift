extension Strategy {
    /// Part A of the notes: a Gaussian q_n per data point, optimised per point, alternating with θ
    /// (`PerDatapointEngine`).
    public static let perDatapoint = Strategy(
        name: "per-datapoint",
        summary: "part A of the notes (variational inference): one Gaussian q_n per point, optimised by --e-solver, alternating with a θ step (--m-step).",
        capabilities: [
            .iterations: .always, .perPointQ: .always, .mStepChoice: .always, .heldTheta: .always, .averaging: .always,
            .acceleration: .when("with closed-form E- and M-steps") { $0.isVariationalEM },
            .monteCarlo: .when("with --e-solver adam") { $0.eSolver == .adam },
            .adamSteps: .when("with --e-solver adam or --m-step gradient") { $0.eSolver == .adam || $0.mStep == .gradient },
            .adamSchedule: .when("with --e-solver adam") { $0.eSolver == .adam },
        ],
        describeRun: { "per-datapoint run (--e-solver \($0.eSolver.rawValue), --m-step \($0.mStep.rawValue))" },
        makeEngine: { try PerDatapointEngine(data: $0.data, initial: $0.initial, options: $0.options, rng: $0.rng) })
}
