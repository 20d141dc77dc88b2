/// An inference strategy ELBOLab compares: its name, its one-line help, what it has (which
/// decides the options that apply to it) and how it builds its engine.
///
/// Each strategy is declared once, as a static member in its own file under `Strategies/`,
/// and listed once in ``Strategy/registered``; `fit --strategy`, its help, the spec reader and
/// the option table's scopes all read that list.
public struct Strategy: Sendable {
    /// The name `fit --strategy` and specs take (`per-datapoint`, …).
    public let name: String
    /// One line for `fit --help`.
    public let summary: String
    /// What the strategy has, each under the condition (on the other options) where it holds.
    let capabilities: [StrategyCapability: StrategyCondition]
    /// The iteration cap when `--iterations` is not given.
    let defaultIterations: Int
    /// The stop tolerance (nats/point) when `--tolerance` is not given.
    let defaultTolerance: Double
    /// The run as refusals name it ("joint run (--encoder linear, …)"); nil: "NAME run".
    let describeRun: (@Sendable (FitOptions) -> String)?
    /// The engine of checked options.
    let makeEngine: @Sendable (EngineInputs) throws -> InferenceEngine

    init(name: String, summary: String, capabilities: [StrategyCapability: StrategyCondition],
         defaultIterations: Int = 100_000, defaultTolerance: Double = 1e-6,
         describeRun: (@Sendable (FitOptions) -> String)? = nil,
         makeEngine: @escaping @Sendable (EngineInputs) throws -> InferenceEngine) {
        self.name = name
        self.summary = summary
        self.capabilities = capabilities
        self.defaultIterations = defaultIterations
        self.defaultTolerance = defaultTolerance
        self.describeRun = describeRun
        self.makeEngine = makeEngine
    }

    /// Whether the strategy has `capability` under some setting of the other options.
    public func offers(_ capability: StrategyCapability) -> Bool { capabilities[capability] != nil }

    /// Whether the strategy has `capability` with these options.
    public func has(_ capability: StrategyCapability, in options: FitOptions) -> Bool {
        capabilities[capability]?.holds(options) ?? false
    }

    /// Whether q comes from an encoder g_φ(y).
    public var hasEncoder: Bool { offers(.encoder) }
}

/// What a strategy has. The option table's scopes ask these, so an option reaches every
/// strategy that has what it sets, and a new strategy gets its options by declaring them.
public enum StrategyCapability: String, Sendable, CaseIterable {
    /// It iterates (the stop rule and the log schedule apply); mle is closed form.
    case iterations
    /// Each point owns a q_n, fitted by an E-step solver (`--covariance`, `--e-solver`).
    case perPointQ
    /// It alternates q's steps with a θ step that `--m-step` picks.
    case mStepChoice
    /// q comes from an encoder g_φ(y) (`--encoder`, `--gradient`).
    case encoder
    /// Its encoder's optimiser, minibatch and objective can be chosen (`--optimizer`, `--batch`, `--objective`).
    case encoderTraining
    /// Several encoder steps per θ step (`--encoder-steps`).
    case encoderSteps
    /// Per-point gradient steps refine the encoder's q_n (`--refine-steps`, `--refine-rate`).
    case refinement
    /// θ can be held fixed while q is fitted (`--theta`).
    case heldTheta
    /// Its iterates can be averaged (`--averaging`).
    case averaging
    /// Its EM steps can be accelerated (`--acceleration`).
    case acceleration
    /// Its gradients are Monte Carlo estimates (`--kl`, `--samples`).
    case monteCarlo
    /// Some step is an Adam step (`--learning-rate`).
    case adamSteps
    /// Its Adam steps follow the step-size schedule (`--decay`).
    case adamSchedule
}

/// When a strategy has a capability: always, or under a condition on the other options,
/// with the words `--help` says it in ("with --e-solver adam").
public struct StrategyCondition: Sendable {
    /// The condition as `--help` and refusals say it; nil when it always holds.
    let text: String?
    let holds: @Sendable (FitOptions) -> Bool

    /// The capability holds whatever the other options.
    public static let always = StrategyCondition(text: nil) { _ in true }

    /// The capability holds when `holds` does, which `text` says ("with --e-solver adam").
    static func when(_ text: String, _ holds: @escaping @Sendable (FitOptions) -> Bool) -> StrategyCondition {
        StrategyCondition(text: text, holds: holds)
    }
}

/// What a strategy's engine is made from: the data, the seed's shared initial θ (or the held
/// one), the checked options, the run's random stream, and the closed-form fit when the caller
/// has it.
struct EngineInputs {
    let data: Dataset
    let initial: LinearGaussianModel
    let options: FitOptions
    let rng: RandomSource
    let maximumLikelihood: MaximumLikelihoodFit?
}

extension Strategy: RawRepresentable, CaseIterable, Hashable, Codable, CustomStringConvertible {
    /// The registered strategy named `rawValue`.
    public init?(rawValue: String) {
        guard let s = Strategy.registered.first(where: { $0.name == rawValue }) else { return nil }
        self = s
    }

    /// The name (`per-datapoint`, …).
    public var rawValue: String { name }
    public var description: String { name }

    /// Every registered strategy, in the registry's order.
    public static var allCases: [Strategy] { registered }

    public static func == (a: Strategy, b: Strategy) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    public init(from decoder: Decoder) throws {
        let word = try decoder.singleValueContainer().decode(String.self)
        guard let s = Strategy(rawValue: word) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "unknown strategy \(word) (expected one of \(Strategy.names))"))
        }
        self = s
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }

    /// "mle, em, …": the registered names.
    static var names: String { registered.map(\.name).joined(separator: ", ") }
}

extension Strategy {
    /// The strategies block of `elbolab fit --help`, each name beside its summary, wrapped to `width` columns.
    public static func help(width: Int = 80) -> String {
        let column = (registered.map(\.name.count).max() ?? 0) + 1
        var lines: [String] = []
        for s in registered {
            let text = wrap(s.summary, width: max(20, width - column - 2))
            for (i, line) in text.enumerated() {
                let head = i == 0 ? s.name + String(repeating: " ", count: column - s.name.count) : String(repeating: " ", count: column)
                lines.append("  " + head + line)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The strategies that have `capability`, as `--help` says it: "amortized, joint and
    /// semi-amortized", "per-datapoint with --e-solver adam; amortized and joint with …",
    /// "every strategy but mle".
    static func described(_ capability: StrategyCapability) -> String {
        let having = registered.filter { $0.offers(capability) }
        let always = having.allSatisfy { $0.capabilities[capability]?.text == nil }
        if always && having.count == registered.count { return "every strategy" }
        let lacking = registered.filter { !$0.offers(capability) }
        if always && lacking.count == 1 && registered.count > 2 { return "every strategy but \(lacking[0].name)" }
        // Strategies under the same condition together, in the registry's order.
        var groups: [(condition: String?, names: [String])] = []
        for s in having {
            let condition = s.capabilities[capability]?.text
            if let i = groups.firstIndex(where: { $0.condition == condition }) {
                groups[i].names.append(s.name)
            } else {
                groups.append((condition, [s.name]))
            }
        }
        return groups.map { g in listed(g.names) + (g.condition.map { " " + $0 } ?? "") }.joined(separator: "; ")
    }
}

extension Strategy {
    /// A default that strategies declare, as `--help` says it: the value most of those with
    /// `capability` share, then the others by name ("100000; 10000 for em").
    static func defaultRule(among capability: StrategyCapability, _ value: (Strategy) -> String) -> String {
        var groups: [(value: String, names: [String])] = []
        for s in registered where s.offers(capability) {
            let v = value(s)
            if let i = groups.firstIndex(where: { $0.value == v }) { groups[i].names.append(s.name) } else { groups.append((v, [s.name])) }
        }
        guard let common = groups.max(by: { $0.names.count < $1.names.count }) else { return "none" }
        let others = groups.filter { $0.value != common.value }.map { "\($0.value) for \(listed($0.names))" }
        return ([common.value] + others).joined(separator: "; ")
    }
}

/// "a", "a and b", "a, b and c".
func listed(_ words: [String]) -> String {
    guard let last = words.last else { return "none" }
    return words.count == 1 ? last : words.dropLast().joined(separator: ", ") + " and " + last
}
