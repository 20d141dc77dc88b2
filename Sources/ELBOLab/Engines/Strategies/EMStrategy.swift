extension Strategy {
    /// Exact EM: exact posterior E-step, closed-form M-step (`ExactEMEngine`).
    public static let em = Strategy(
        name: "em",
        summary: "exact EM: the notes' \"E step / M step\" with q = p(z|y) in closed form, parameter-expanded by default.",
        capabilities: [.iterations: .always, .heldTheta: .always, .acceleration: .always],
        defaultIterations: 10_000,
        defaultTolerance: 1e-10,
        makeEngine: { inputs in
            let o = inputs.options
            return ExactEMEngine(data: inputs.data, initial: inputs.initial, constraints: o.constraints,
                                 acceleration: o.resolvedAcceleration, holdsModel: o.theta != nil)
        })
}
