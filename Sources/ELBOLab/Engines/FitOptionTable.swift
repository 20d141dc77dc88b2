import Foundation

/// The settings of a fit, each declared once: its name (the `fit` flag and the spec key), its
/// values, the strategies it applies to, its checks and its help. `elbolab fit` parses its
/// flags with it, the spec reader reads runs with it, `fit --help` is generated from it and a
/// test holds the READMEs to it.
///
/// Every check runs on ``FitOptions`` alone, before any data is read: a value out of range, an
/// option given to a run it does not apply to, or a combination that cannot run is refused with
/// one line naming the option and what would apply.
public enum FitOptionTable {
    /// The options, in the order `--help` lists them.
    static var entries: [FitOptionEntry] {
        typealias E = FitOptionEntry
        return [
            E.integer("latent", \.latent, min: 1, metavar: "J", scope: .all,
                      help: "Latent dimension J (1…D−1, or 1…D with --noise-variance).", defaultRule: "required by fit; in a spec, data.latent"),
            E.reals("noise-variance", { $0.constraints.noiseVariance }, { $0.constraints.noiseVariance = $1 }, .positive,
                    metavar: "S2", scope: .all, help: "Hold the noise variance s2 fixed at this value (known noise).", defaultRule: "estimated"),
            E.flag("no-offset", { $0.constraints.zeroOffset }, { $0.constraints.zeroOffset = $1 }, scope: .all,
                   help: "Hold the offset b at 0 (the notes' model y = θ₁z)."),
            E.integers("iterations", \.iterations, min: 0, metavar: "N", scope: .iterative,
                       help: "Iteration cap.", defaultRule: Strategy.defaultRule(among: .iterations) { "\($0.defaultIterations)" }),
            E.real("max-seconds", \.maxSeconds, .positive, metavar: "S", scope: .iterative,
                   help: "Training-time cap in seconds (scoring excluded).", defaultRule: "60"),
            E.reals("tolerance", \.tolerance, .nonNegative, metavar: "T", scope: .iterative,
                    help: "Stop when the best exact ELBO of the last window of logged rows beats the best before it by less than this (nats/point) and, for exact gradients, the window and the row before it lie within this of each other.",
                    defaultRule: Strategy.defaultRule(among: .iterations) { formatNumber($0.defaultTolerance) }),
            E.integers("window", \.window, min: 1, metavar: "K", scope: .iterative,
                       help: "Logged rows the stop rule looks back over.", defaultRule: "5; 10 with Monte Carlo gradients; 30 with --objective iwae"),
            E.integers("log-every", \.logEvery, min: 1, metavar: "K", scope: .iterative,
                       help: "Log every K iterations.", defaultRule: "a geometric grid: every iteration up to 10, then about 20 rows a decade"),
            E.choice("covariance", \.covariance, scope: .perDatapoint,
                     help: "The family of each q_n: diagonal (mean field) or full.", defaultRule: "diagonal"),
            E.choice("e-solver", \.eSolver, scope: .perDatapoint,
                     help: "The E-step: closed-form (the optimum of each q_n), bfgs (GSL's BFGS2 per point, both cores) or adam (reparameterised Monte Carlo steps, as in the notes).",
                     defaultRule: "closed-form"),
            E.integers("e-steps", \.eSteps, min: 1, metavar: "K", scope: .iterativeEStep,
                       help: "Inner iterations per E-step (BFGS iterations or Adam steps).", defaultRule: "50 for bfgs, 5 for adam"),
            E.choice("m-step", \.mStep, scope: .alternating,
                     help: "The θ update given q: closed-form (the maximiser) or gradient (one Adam step on the exact gradient).",
                     defaultRule: "closed-form"),
            E.choice("encoder", \.encoder, scope: .encoder,
                     help: "The encoder g_φ(y): linear, mlp (one tanh layer of --hidden units), residual (the mlp plus a linear path from y, so it contains the linear encoder) or low-rank (a linear mean map of rank at most --rank).",
                     defaultRule: "linear"),
            E.integer("hidden", \.hidden, min: 1, metavar: "H", scope: .mlp, help: "Width of the MLP encoder.", defaultRule: "32"),
            E.integers("rank", \.rank, min: 0, metavar: "R", scope: .lowRank,
                       help: "The low-rank encoder's bound on the rank of its mean map, 0…J (0: a mean blind to y).", defaultRule: "1"),
            E.integer("encoder-steps", \.encoderSteps, min: 1, metavar: "K", scope: .amortized,
                      help: "Encoder steps per θ step.", defaultRule: "1"),
            E.choices("gradient", \.gradient, scope: .encoder,
                      help: "The gradient of q's parameters: exact (the closed-form expected gradient), reparam (the notes' Monte Carlo method), score (REINFORCE) or, with --objective iwae, dreg.",
                      defaultRule: "exact"),
            E.choice("kl", \.kl, scope: .monteCarlo,
                     help: "The KL term of a Monte Carlo gradient: analytic (closed form, the peers' choice), mc (log q − log p at the draws) or stl (mc with q's parameters held fixed inside log q: the path-derivative, 'sticking the landing' estimator, whose noise vanishes as q reaches the exact posterior).",
                     defaultRule: "analytic"),
            E.integer("samples", \.samples, min: 1, metavar: "K", scope: .monteCarlo,
                      help: "Monte Carlo samples per point per step.", defaultRule: "1"),
            E.choices("objective", \.objective, scope: .encoderOptimizer,
                      help: "elbo, or iwae: the importance-weighted bound L_K of Burda et al. with --particles K, trained with --gradient reparam (the IWAE estimator) or dreg (Tucker et al.'s doubly-reparameterised encoder gradient; θ's gradient is pathwise either way); the stop rule and the times to tolerance then follow the exact log-likelihood, since q is not trained to maximise the ELBO.",
                      defaultRule: "elbo"),
            E.integers("particles", \.particles, min: 1, metavar: "K", scope: .importanceWeighted,
                       help: "Particles K per point of L_K (K = 1 is the ELBO).", defaultRule: "1"),
            E.integers("batch", \.batch, min: 1, metavar: "B", scope: .encoderOptimizer,
                       help: "Minibatch size (at most N).", defaultRule: "the full batch"),
            E.choices("optimizer", \.optimizer, scope: .encoderOptimizer,
                      help: "adam, or on the exact full-batch ELBO (--gradient exact) bfgs (GSL's BFGS2, restarted each amortized step) or lbfgs (limited-memory BFGS, 30 pairs; for joint in whitened linear-encoder coordinates; for amortized with θ held, one minimisation across steps).",
                      defaultRule: "lbfgs for joint with the exact gradient, the full batch and no Adam setting; adam otherwise"),
            E.choices("acceleration", \.acceleration, scope: .accelerable,
                      help: "px (parameter expansion: the M-step also fits the prior of z, then maps back to N(0, I); same cost a step), none (the notes' plain steps) or, for em only, squarem (extrapolate from two EM steps; keep the result only when log p rises).",
                      defaultRule: "px"),
            E.reals("learning-rate", \.learningRate, .positive, metavar: "α", scope: .adam,
                    help: "Adam step size.", defaultRule: "0.05; 0.1 for amortized, joint and semi-amortized with Monte Carlo gradients (amortized only with the closed-form M-step)"),
            E.reals("decay", \.decay, .nonNegative, metavar: "τ", scope: .adamSchedule,
                    help: "Step-size decay α/(1 + t/τ)^κ: τ; 0 keeps the step constant.",
                    defaultRule: "300; 100 with Monte Carlo gradients; with --kl stl constant for amortized with the closed-form M-step and 300 per-datapoint; 1000 for joint and per-datapoint with --averaging"),
            E.reals("decay-power", \.decayPower, .positive, metavar: "κ", scope: .decaying,
                    help: "The power κ of the decay α/(1 + t/τ)^κ.", defaultRule: "1"),
            E.integer("refine-steps", \.refineSteps, min: 0, metavar: "R", scope: .semiAmortized,
                      help: "Exact gradient steps per point that refine the encoder's q_n (0: the amortized q).", defaultRule: "5"),
            E.reals("refine-rate", \.refineRate, .positive, metavar: "α", scope: .semiAmortized,
                    help: "The refinement's step size.", defaultRule: "1/λ_max(WᵀW/s2 + I) at the current θ, so every step raises each point's ELBO"),
            E.heldTheta(),
            E.reals("averaging", \.averaging, .nonNegative, metavar: "η", scope: .averageable,
                    help: "Score the Polyak–Ruppert average of the iterates (θ and every q_n), weights growing like t^η (0: the plain average; larger forgets the start sooner).",
                    defaultRule: "off: the iterate itself"),
        ]
    }

    /// The option named `name` (kebab-case), if any.
    package static func entry(_ name: String) -> FitOptionEntry? { entries.first { $0.name == name } }

    /// Every option's name, in `--help` order.
    public static var names: [String] { entries.map(\.name) }

    /// The options block of `elbolab fit --help`, wrapped to `width` columns.
    public static func help(width: Int = 80) -> String {
        var lines: [String] = []
        for e in entries {
            let flag = "--\(e.name)" + (e.metavar.map { " \($0)" } ?? "")
            var text = e.help
            if let choices = e.choices { text += " One of: \(choices.joined(separator: ", "))." }
            if let rule = e.defaultRule { text += " Default: \(rule)." }
            if e.scope !== FitOptionScope.all { text += " For \(e.scope.text)." }
            lines.append("  " + flag)
            lines.append(contentsOf: wrap(text, width: width - 6).map { "      " + $0 })
        }
        return lines.joined(separator: "\n")
    }

    /// The settings `arguments` give (`--name value`, `--name=value`, `--flag`), on top of
    /// `options`, each checked; returns the names given.
    ///
    /// - Throws: ``/ELBOLabNumerics/InputError`` for an unknown option, a missing or malformed value, or a
    ///   value out of range, naming the option.
    public static func parse(_ arguments: [String], into options: inout FitOptions) throws -> Set<String> {
        var given = Set<String>()
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            i += 1
            guard word.hasPrefix("--"), word.count > 2 else {
                throw InputError("unexpected argument \(JSON.quote(word)) (options are written --name value; see elbolab fit --help)")
            }
            var name = String(word.dropFirst(2)), inline: String? = nil
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let entry = entry(name) else {
                throw InputError("unknown option --\(name)" + suggestion(for: name))
            }
            guard !given.contains(name) else { throw InputError("--\(name) is given twice") }
            let input: OptionInput
            if entry.isFlag {
                if inline != nil { throw InputError("--\(name) is a flag and takes no value") }
                input = .flag
            } else if let inline {
                input = .text(inline)
            } else {
                guard i < arguments.count, !arguments[i].hasPrefix("--") else {
                    throw InputError("--\(name) needs a value (\(entry.metavar ?? "a value"))")
                }
                input = .text(arguments[i])
                i += 1
            }
            do {
                try entry.apply(input, &options)
            } catch let problem as OptionProblem {
                throw InputError("--\(name): \(problem.message)")
            }
            given.insert(name)
        }
        return given
    }

    /// " (did you mean --x?)" for a near miss, else "".
    static func suggestion(for name: String) -> String {
        let close = entries.map(\.name).filter { editDistance($0, name) <= 2 || $0.hasPrefix(name) }
        return close.isEmpty ? " (see elbolab fit --help)" : " (did you mean \(close.map { "--\($0)" }.joined(separator: " or "))?)"
    }
}

/// A problem with one option's value, without the option's name (the caller adds it, as a
/// flag for `fit` or as a field for a spec).
package struct OptionProblem: Error {
    package let message: String
}

/// A value as given: text on the command line, a typed JSON value in a spec, or a flag.
package enum OptionInput {
    case text(String)
    case json(SpecValue)
    case flag
}

/// Where an option applies: a predicate on the options in force, and how `--help` and the
/// refusals say it.
package final class FitOptionScope: Sendable {
    /// The scope's words, built from the registry when asked (``Strategy/described(_:)``).
    private let words: @Sendable () -> String
    package let contains: @Sendable (FitOptions) -> Bool

    var text: String { words() }

    init(_ text: String, _ contains: @escaping @Sendable (FitOptions) -> Bool) {
        words = { text }
        self.contains = contains
    }

    /// The strategies that have `capability` (and, when given, where `condition` holds, which
    /// `qualifier` says: "with --encoder mlp").
    init(_ capability: StrategyCapability, _ qualifier: String? = nil, prefix: String = "",
         _ condition: @escaping @Sendable (FitOptions) -> Bool = { _ in true }) {
        words = { prefix + Strategy.described(capability) + (qualifier.map { " " + $0 } ?? "") }
        contains = { $0.strategy.has(capability, in: $0) && condition($0) }
    }

    static let all = FitOptionScope("every strategy") { _ in true }
    static let iterative = FitOptionScope(.iterations)
    static let perDatapoint = FitOptionScope(.perPointQ)
    static let iterativeEStep = FitOptionScope(.perPointQ, "with --e-solver bfgs or adam") { $0.eSolver != .closedForm }
    static let alternating = FitOptionScope(.mStepChoice)
    static let encoder = FitOptionScope(.encoder)
    static let encoderOptimizer = FitOptionScope(.encoderTraining)
    static let mlp = FitOptionScope(.encoder, "with --encoder mlp or residual") { $0.encoder == .mlp || $0.encoder == .residual }
    static let lowRank = FitOptionScope(.encoder, "with --encoder low-rank") { $0.encoder == .lowRank }
    static let amortized = FitOptionScope(.encoderSteps)
    static let semiAmortized = FitOptionScope(.refinement)
    static let heldTheta = FitOptionScope(.heldTheta)
    static let importanceWeighted = FitOptionScope(.encoderTraining, "with --objective iwae") { $0.resolvedObjective == .iwae }
    static let monteCarlo = FitOptionScope(.monteCarlo, prefix: "Monte Carlo gradients: ")
    static let adam = FitOptionScope(.adamSteps, prefix: "runs that take Adam steps: ")
    static let adamSchedule = FitOptionScope(.adamSchedule, prefix: "runs whose Adam step follows the schedule: ")
    static let decaying = FitOptionScope("runs whose Adam step decays (--decay above 0)") {
        adamSchedule.contains($0) && ($0.decay ?? $0.defaultDecay) > 0
    }
    static let averageable = FitOptionScope(.averaging)
    static let accelerable = FitOptionScope(.acceleration)
}

/// One option of ``FitOptionTable``.
package struct FitOptionEntry {
    let name: String
    /// The value's name in `--help`; nil for a flag.
    let metavar: String?
    let help: String
    let defaultRule: String?
    package let scope: FitOptionScope
    /// The allowed words, for an option that takes one of a list.
    let choices: [String]?
    /// Parses, checks and stores a given value.
    package let apply: (OptionInput, inout FitOptions) throws -> Void
    /// Restores the default (a spec's `null`); nil where the option has no optional default.
    package let reset: ((inout FitOptions) -> Void)?
    /// Checks the value in force (a ``FitOptions`` built in code); nil when it is fine.
    let check: (FitOptions) -> String?
    /// Whether the value in force is the default.
    let isDefault: (FitOptions) -> Bool
    /// The value in force as reports show it.
    let shown: (FitOptions) -> String

    var isFlag: Bool { metavar == nil }
}

/// A numeric domain and its check.
enum NumberDomain {
    case positive, nonNegative

    func problem(_ x: Double) -> String? {
        switch self {
        case .positive: return x > 0 && x.isFinite ? nil : "must be a positive number, got \(formatNumber(x))"
        case .nonNegative: return x >= 0 && x.isFinite ? nil : "must be a non-negative number, got \(formatNumber(x))"
        }
    }
}

extension FitOptionEntry {
    /// `--theta`: "mle", or a params.json (read when the option is parsed).
    static func heldTheta() -> FitOptionEntry {
        FitOptionEntry(name: "theta", metavar: "FILE", help: "Hold θ fixed and fit only q (em's E-step, per-datapoint) or the encoder (amortized, semi-amortized): a params.json as fit writes it, or mle for the closed-form MLE of the data (mle computes θ; joint training with θ held is amortized). The gap to the MLE is then the approximation and amortisation gaps (and θ's own shortfall when θ is not the MLE); in a spec the path is relative to the spec's folder.",
                       defaultRule: "θ is fitted", scope: .heldTheta, choices: nil,
                       apply: { input, o in
                           switch input {
                           case .text("mle"), .json(.string("mle")): o.theta = .mle
                           case let .text(path), let .json(.string(path)): o.theta = .fixed(try ParamsFile.read(path: path))
                           default: throw OptionProblem(message: "expected mle or the path of a params.json")
                           }
                       },
                       reset: { o in o.theta = nil }, check: { _ in nil },
                       isDefault: { o in o.theta == nil },
                       shown: { o in
                           switch o.theta {
                           case nil: return "fitted"
                           case .mle?: return "mle"
                           case .fixed?: return "params"
                           }
                       })
    }

    private static func defaults(_ o: FitOptions) -> FitOptions { FitOptions(strategy: o.strategy, latent: o.latent) }

    /// An integer field with a lower bound.
    static func integer(_ name: String, _ field: WritableKeyPath<FitOptions, Int>, min: Int, metavar: String,
                        scope: FitOptionScope, help: String, defaultRule: String?) -> FitOptionEntry {
        FitOptionEntry(name: name, metavar: metavar, help: help, defaultRule: defaultRule, scope: scope, choices: nil,
                       apply: { input, o in o[keyPath: field] = try parseInteger(input, min: min) },
                       reset: nil,
                       check: { o in o[keyPath: field] >= min ? nil : "must be at least \(min), got \(o[keyPath: field])" },
                       isDefault: { o in o[keyPath: field] == defaults(o)[keyPath: field] },
                       shown: { o in "\(o[keyPath: field])" })
    }

    /// An optional integer field (nil: the default rule).
    static func integers(_ name: String, _ field: WritableKeyPath<FitOptions, Int?>, min: Int, metavar: String,
                         scope: FitOptionScope, help: String, defaultRule: String?) -> FitOptionEntry {
        FitOptionEntry(name: name, metavar: metavar, help: help, defaultRule: defaultRule, scope: scope, choices: nil,
                       apply: { input, o in o[keyPath: field] = try parseInteger(input, min: min) },
                       reset: { o in o[keyPath: field] = nil },
                       check: { o in o[keyPath: field].flatMap { $0 >= min ? nil : "must be at least \(min), got \($0)" } },
                       isDefault: { o in o[keyPath: field] == nil },
                       shown: { o in o[keyPath: field].map { "\($0)" } ?? "default" })
    }

    /// A real field in a domain.
    static func real(_ name: String, _ field: WritableKeyPath<FitOptions, Double>, _ domain: NumberDomain, metavar: String,
                     scope: FitOptionScope, help: String, defaultRule: String?) -> FitOptionEntry {
        reals(name, { $0[keyPath: field] }, { o, x in if let x { o[keyPath: field] = x } }, domain, metavar: metavar,
              scope: scope, help: help, defaultRule: defaultRule, optional: false)
    }

    /// An optional real field in a domain (nil: the default rule).
    static func reals(_ name: String, _ field: WritableKeyPath<FitOptions, Double?>, _ domain: NumberDomain, metavar: String,
                      scope: FitOptionScope, help: String, defaultRule: String?) -> FitOptionEntry {
        reals(name, { $0[keyPath: field] }, { $0[keyPath: field] = $1 }, domain, metavar: metavar,
              scope: scope, help: help, defaultRule: defaultRule)
    }

    /// A real setting read and written through closures (nested fields such as s2).
    static func reals(_ name: String, _ get: @escaping (FitOptions) -> Double?, _ set: @escaping (inout FitOptions, Double?) -> Void,
                      _ domain: NumberDomain, metavar: String, scope: FitOptionScope, help: String, defaultRule: String?,
                      optional: Bool = true) -> FitOptionEntry {
        FitOptionEntry(name: name, metavar: metavar, help: help, defaultRule: defaultRule, scope: scope, choices: nil,
                       apply: { input, o in
                           let x = try parseReal(input)
                           if let problem = domain.problem(x) { throw OptionProblem(message: problem) }
                           set(&o, x)
                       },
                       reset: optional ? { o in set(&o, nil) } : nil,
                       check: { o in get(o).flatMap(domain.problem) },
                       isDefault: { o in get(o) == get(defaults(o)) },
                       shown: { o in get(o).map(formatNumber) ?? "default" })
    }

    /// A Boolean setting: a flag on the command line, `true`/`false` in a spec.
    static func flag(_ name: String, _ get: @escaping (FitOptions) -> Bool, _ set: @escaping (inout FitOptions, Bool) -> Void,
                     scope: FitOptionScope, help: String) -> FitOptionEntry {
        FitOptionEntry(name: name, metavar: nil, help: help, defaultRule: nil, scope: scope, choices: nil,
                       apply: { input, o in
                           switch input {
                           case .flag: set(&o, true)
                           case let .json(.bool(b)): set(&o, b)
                           case let .json(v): throw OptionProblem(message: "expected true or false, got \(v.shown)")
                           case let .text(t): throw OptionProblem(message: "is a flag and takes no value, got \(JSON.quote(t))")
                           }
                       },
                       reset: nil, check: { _ in nil },
                       isDefault: { o in get(o) == get(defaults(o)) },
                       shown: { o in get(o) ? "true" : "false" })
    }

    /// One of an enumeration's words.
    static func choice<C: RawRepresentable & CaseIterable & Equatable>(
        _ name: String, _ field: WritableKeyPath<FitOptions, C>, scope: FitOptionScope, help: String, defaultRule: String?
    ) -> FitOptionEntry where C.RawValue == String {
        FitOptionEntry(name: name, metavar: "WORD", help: help, defaultRule: defaultRule, scope: scope,
                       choices: C.allCases.map(\.rawValue),
                       apply: { input, o in o[keyPath: field] = try parseChoice(input, name, C.self) },
                       reset: nil, check: { _ in nil },
                       isDefault: { o in o[keyPath: field] == defaults(o)[keyPath: field] },
                       shown: { o in o[keyPath: field].rawValue })
    }

    /// One of an enumeration's words, or nil for the default rule.
    static func choices<C: RawRepresentable & CaseIterable & Equatable>(
        _ name: String, _ field: WritableKeyPath<FitOptions, C?>, scope: FitOptionScope, help: String, defaultRule: String?
    ) -> FitOptionEntry where C.RawValue == String {
        FitOptionEntry(name: name, metavar: "WORD", help: help, defaultRule: defaultRule, scope: scope,
                       choices: C.allCases.map(\.rawValue),
                       apply: { input, o in o[keyPath: field] = try parseChoice(input, name, C.self) },
                       reset: { o in o[keyPath: field] = nil }, check: { _ in nil },
                       isDefault: { o in o[keyPath: field] == nil },
                       shown: { o in o[keyPath: field]?.rawValue ?? "default" })
    }
}

private func parseInteger(_ input: OptionInput, min: Int) throws -> Int {
    let value: Int?
    switch input {
    case let .text(t): value = Int(t)
    case let .json(.number(x)): value = x.isFinite && x == x.rounded() && abs(x) < 9e15 ? Int(x) : nil
    default: value = nil
    }
    guard let value else { throw OptionProblem(message: "expected an integer, got \(shown(input))") }
    guard value >= min else { throw OptionProblem(message: "must be at least \(min), got \(value)") }
    return value
}

private func parseReal(_ input: OptionInput) throws -> Double {
    let value: Double?
    switch input {
    case let .text(t): value = Double(t)
    case let .json(.number(x)): value = x
    default: value = nil
    }
    guard let value, value.isFinite else { throw OptionProblem(message: "expected a number, got \(shown(input))") }
    return value
}

private func parseChoice<C: RawRepresentable & CaseIterable>(_ input: OptionInput, _ name: String, _: C.Type) throws -> C
where C.RawValue == String {
    let word: String?
    switch input {
    case let .text(t): word = t
    case let .json(.string(s)): word = s
    default: word = nil
    }
    guard let word, let value = C(rawValue: word) else {
        throw OptionProblem(message: "unknown \(name) \(shown(input)) (expected one of \(C.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return value
}

private func shown(_ input: OptionInput) -> String {
    switch input {
    case let .text(t): return JSON.quote(t)
    case let .json(v): return v.shown
    case .flag: return "no value"
    }
}

/// Words of `text` in lines of at most `width` characters.
func wrap(_ text: String, width: Int) -> [String] {
    var lines: [String] = [], line = ""
    for word in text.split(separator: " ") {
        if !line.isEmpty && line.count + 1 + word.count > width {
            lines.append(line)
            line = ""
        }
        line += (line.isEmpty ? "" : " ") + word
    }
    if !line.isEmpty { lines.append(line) }
    return lines
}

/// The Levenshtein distance between two short strings.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var row = Array(0...b.count)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        var previous = row[0]
        row[0] = i
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let current = row[j]
            row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
            previous = current
        }
    }
    return row[b.count]
}

// MARK: - Checks before any data is read

extension FitOptions {
    /// Whether some step of this run is an Adam step (whose step size and schedule apply).
    var usesAdam: Bool { strategy.has(.adamSteps, in: self) }

    /// Checks every value and combination: the ranges, the options `given` (by name) that do not
    /// apply to this run, and the combinations that cannot run. Nothing here needs the data.
    ///
    /// - Parameter given: the options set explicitly; nil takes those whose value differs from
    ///   the default (for options built in code).
    /// - Throws: ``/ELBOLabNumerics/InputError`` naming the option, e.g. `--hidden does not apply to this joint
    ///   run: it is for amortized and joint with --encoder mlp`.
    public func validate(given: Set<String>? = nil) throws {
        let table = FitOptionTable.entries
        for e in table {
            if let problem = e.check(self) { throw InputError("--\(e.name): \(problem)") }
        }
        let named = given ?? Set(table.filter { !$0.isDefault(self) }.map(\.name))
        for e in table where named.contains(e.name) && !e.scope.contains(self) {
            throw InputError("--\(e.name) does not apply to this \(describedRun): it is for \(e.scope.text)")
        }
        if let rank, rank > latent {
            throw InputError("--rank \(rank) is out of range: the low-rank encoder's rank is at most the latent dimension J = \(latent)")
        }
        if strategy == .perDatapoint && eSolver == .adam && covariance == .full {
            throw InputError("--e-solver adam supports --covariance diagonal only (use closed-form or bfgs for full)")
        }
        if averaging != nil && covariance == .full {
            throw InputError("--averaging works with a diagonal covariance only (drop --covariance full)")
        }
        if let optimizer, optimizer != .adam {
            if resolvedGradient != .exact {
                throw InputError("--optimizer \(optimizer.rawValue) needs the exact objective: use --gradient exact (Monte Carlo gradients need adam)")
            }
            if batch != nil { throw InputError("--optimizer \(optimizer.rawValue) works on the full batch: drop --batch") }
        }
        if resolvedObjective == .iwae {
            guard resolvedGradient == .reparam || resolvedGradient == .dreg else {
                throw InputError("--objective iwae needs a Monte Carlo gradient: add --gradient reparam (IWAE) or --gradient dreg")
            }
            if optimizer != nil && optimizer != .adam {
                throw InputError("--objective iwae is trained by adam: drop --optimizer \(resolvedOptimizer.rawValue)")
            }
            if kl != .analytic || samples != 1 {
                throw InputError("--objective iwae uses the whole log-weight log p(y, z) − log q(z): drop --kl and --samples (use --particles)")
            }
            if strategy == .amortized && mStep != .gradient {
                throw InputError("--objective iwae with amortized needs --m-step gradient: θ's closed-form step maximises the ELBO, not L_K")
            }
        } else if resolvedGradient == .dreg {
            throw InputError("--gradient dreg estimates the importance-weighted bound's gradient: add --objective iwae (for the ELBO, --gradient reparam --kl stl is the same estimator)")
        }
        if acceleration == .squarem && strategy != .em {
            throw InputError("--acceleration squarem is for em only; this \(describedRun) takes px or none")
        }
    }

    /// "joint run", "per-datapoint run with --e-solver closed-form", … for messages.
    var describedRun: String { strategy.describeRun?(self) ?? "\(strategy.name) run" }
}
