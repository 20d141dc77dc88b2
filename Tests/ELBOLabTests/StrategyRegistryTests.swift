import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabEngines

/// The strategies come from one registry: names, `fit --strategy`, the spec reader and the
/// option scopes' texts all read it, and the texts say what the scopes' predicates do.
@Suite struct StrategyRegistryTests {
    @Test("every registered strategy round-trips by name and through JSON; an unknown name is refused")
    func namesRoundTrip() throws {
        let names = Strategy.registered.map(\.name)
        #expect(Set(names).count == names.count, "repeated names in the registry: \(names)")
        #expect(Strategy.allCases == Strategy.registered)
        for s in Strategy.registered {
            #expect(Strategy(rawValue: s.name) == s)
            let json = try JSONEncoder().encode(s)
            #expect(String(decoding: json, as: UTF8.self) == "\"\(s.name)\"")
            #expect(try JSONDecoder().decode(Strategy.self, from: json) == s)
        }
        #expect(Strategy(rawValue: "vae") == nil)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(Strategy.self, from: Data("\"vae\"".utf8)) }
    }

    /// Settings that switch each capability's conditions on and off.
    static func contexts(_ strategy: Strategy) -> [FitOptions] {
        var all: [FitOptions] = []
        for eSolver in ESolver.allCases {
            for mStep in MStep.allCases {
                for gradient: GradientEstimator? in [nil, .reparam] {
                    for optimizer: OptimizerKind? in [nil, .adam, .bfgs] {
                        for objective: Objective? in [nil, .iwae] {
                            var o = FitOptions(strategy: strategy, latent: 2)
                            o.eSolver = eSolver
                            o.mStep = mStep
                            o.gradient = gradient
                            o.optimizer = optimizer
                            o.objective = objective
                            for encoder in EncoderKind.allCases {
                                o.encoder = encoder
                                all.append(o)
                            }
                        }
                    }
                }
            }
        }
        return all
    }

    /// The strategies a scope's text names: its words, or all but one after "every strategy but".
    static func named(in text: String) -> Set<String> {
        let all = Set(Strategy.registered.map(\.name))
        if text.hasPrefix("every strategy but ") {
            let rest = text.dropFirst("every strategy but ".count).prefix { $0.isLetter || $0 == "-" }
            return all.subtracting([String(rest)])
        }
        if text.hasPrefix("every strategy") { return all }
        let words = text.split { !($0.isLetter || $0 == "-") }.map(String.init)
        return all.intersection(words)
    }

    @Test("each option's scope text names exactly the strategies its predicate admits under some setting",
          arguments: FitOptionTable.entries.map(\.name))
    func scopeTextsMatchPredicates(name: String) throws {
        let entry = try #require(FitOptionTable.entry(name))
        // A scope with fixed words ("runs whose Adam step decays") names no strategy.
        let mentioned = Self.named(in: entry.scope.text)
        guard !mentioned.isEmpty || entry.scope === FitOptionScope.decaying else {
            Issue.record("--\(name): \(entry.scope.text) names no strategy")
            return
        }
        guard entry.scope !== FitOptionScope.decaying else { return }
        for s in Strategy.registered {
            let admitted = Self.contexts(s).contains { entry.scope.contains($0) }
            #expect(admitted == mentioned.contains(s.name),
                    "--\(name) for \(s.name): the predicate says \(admitted), the text \"\(entry.scope.text)\" says \(!admitted)")
        }
    }

    @Test("--iterations' and --tolerance's default rules state each strategy's resolved default")
    func defaultRulesMatchTheResolvedDefaults() throws {
        /// The value the rule "common; v for a and b; …" gives `name`.
        func value(in rule: String, for name: String) -> String? {
            let parts = rule.components(separatedBy: "; ")
            for part in parts.dropFirst() {
                let split = part.components(separatedBy: " for ")
                guard split.count == 2 else { return nil }
                let names = split[1].components(separatedBy: ", ").flatMap { $0.components(separatedBy: " and ") }
                if names.contains(name) { return split[0] }
            }
            return parts.first
        }
        let iterations = try #require(FitOptionTable.entry("iterations")?.defaultRule)
        let tolerance = try #require(FitOptionTable.entry("tolerance")?.defaultRule)
        for s in Strategy.registered where s.offers(.iterations) {
            let o = FitOptions(strategy: s, latent: 2)
            #expect(value(in: iterations, for: s.name).flatMap { Int($0) } == o.resolvedIterations, "\(s.name): \(iterations)")
            #expect(value(in: tolerance, for: s.name).flatMap { Double($0) } == o.resolvedTolerance, "\(s.name): \(tolerance)")
        }
    }

    @Test("fit --help lists every registered strategy; --strategy takes exactly the registered names")
    func fitTakesTheRegistry() throws {
        try withTemporaryFolder { folder in
            let help = try elbolab(["fit", "--help"], in: folder)
            for s in Strategy.registered {
                #expect(help.stdout.contains("  \(s.name) "), "fit --help misses \(s.name)")
            }
            let bad = try elbolab(["fit", "--data", "missing.csv", "--latent", "2", "--strategy", "vae", "--output", "out"], in: folder)
            #expect(bad.status != 0)
            for s in Strategy.registered { #expect(bad.stderr.contains("- \(s.name)"), "\(bad.stderr)") }
        }
    }

    @Test("the READMEs list exactly the registered strategies for fit --strategy and a spec's strategy")
    func docsListTheRegistry() throws {
        let names = Set(Strategy.registered.map(\.name))
        func listed(_ file: String, row: String) throws -> Set<String> {
            let text = try String(contentsOf: OptionTableTests.root.appendingPathComponent(file), encoding: .utf8)
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(row) }, "\(file) has no row \(row)")
            return Set(line.dropFirst(row.count).split(separator: "`").enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) })
        }
        #expect(try listed("README.md", row: "| `--strategy` |") == names)
        #expect(try listed("experiments/README.md", row: "| `strategy` |") == names)
    }
}
