import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The one table of fit options: `fit`'s flags, the spec reader and the docs all read it, and
/// every check runs before any data is read.
@Suite struct OptionTableTests {
    /// The options `arguments` give a `strategy` run with J = 2, checked; the error message if refused.
    static func parsed(_ strategy: Strategy, _ arguments: [String]) -> Result<FitOptions, InputError> {
        var o = FitOptions(strategy: strategy, latent: 2)
        do {
            let given = try FitOptionTable.parse(arguments, into: &o)
            try o.validate(given: given)
            return .success(o)
        } catch let error as InputError {
            return .failure(error)
        } catch {
            return .failure(InputError("not an InputError: \(error)"))
        }
    }

    static func refusal(_ strategy: Strategy, _ arguments: [String]) -> String? {
        if case let .failure(error) = parsed(strategy, arguments) { return error.message }
        return nil
    }

    @Test("every option parses from its flag form and shows back the value given", arguments: FitOptionTable.entries.map(\.name))
    func everyOptionRoundTrips(name: String) throws {
        let entry = try #require(FitOptionTable.entry(name))
        // A run the option applies to, and a value in its domain.
        let runs: [(Strategy, [String])] = [
            (.joint, ["--encoder", "mlp", "--gradient", "reparam"]), (.amortized, ["--encoder", "mlp"]),
            (.perDatapoint, ["--e-solver", "adam"]), (.em, []), (.perDatapoint, []), (.semiAmortized, []),
            (.joint, ["--objective", "iwae", "--gradient", "reparam"]),
        ]
        let values: [String?] = entry.isFlag ? [nil] : entry.choices ?? [name == "latent" ? "3" : name == "theta" ? "mle" : "2"]
        var matched = false
        for (strategy, context) in runs {
            for value in values {
                // The context's own setting of this option, if any, is replaced by the value tried.
                var arguments: [String] = []
                var i = 0
                while i < context.count {
                    if context[i] == "--\(name)" { i += 2; continue }
                    arguments.append(context[i])
                    i += 1
                }
                arguments.append("--\(name)")
                if let value { arguments.append(value) }
                guard case let .success(o) = Self.parsed(strategy, arguments) else { continue }
                let expected = value.map { entry.choices == nil && $0 != "mle" ? formatNumber(Double($0) ?? .nan) : $0 } ?? "true"
                #expect(entry.shown(o) == expected, "--\(name) \(value ?? "") shows as \(entry.shown(o))")
                matched = true
            }
        }
        #expect(matched, "no run accepted --\(name)")
    }

    @Test("an option given to a run it does not apply to is refused, naming it and where it applies")
    func scopeIsEnforced() throws {
        let cases: [(Strategy, [String], String)] = [
            (.em, ["--encoder", "mlp"], "--encoder does not apply to this em run: it is for amortized, joint and semi-amortized"),
            (.perDatapoint, ["--batch", "10"], "--batch does not apply to this per-datapoint run"),
            (.joint, ["--hidden", "8"], "it is for amortized, joint and semi-amortized with --encoder mlp"),
            (.joint, ["--m-step", "gradient"], "it is for per-datapoint and amortized"),
            (.joint, ["--kl", "stl"], "it is for Monte Carlo gradients"),
            (.mle, ["--tolerance", "1e-3"], "--tolerance does not apply to this mle run"),
            (.perDatapoint, ["--learning-rate", "0.1"], "--learning-rate does not apply"),
            (.perDatapoint, ["--e-solver", "bfgs", "--decay", "10"], "--decay does not apply"),
            (.joint, ["--gradient", "reparam", "--kl", "stl", "--decay", "0", "--decay-power", "2"], "--decay-power does not apply"),
            (.joint, ["--optimizer", "lbfgs", "--learning-rate", "0.1"], "--learning-rate does not apply"),
            (.perDatapoint, ["--e-solver", "bfgs", "--acceleration", "px"], "--acceleration does not apply"),
            (.em, ["--averaging", "1"], "--averaging does not apply to this em run"),
            (.em, ["--e-steps", "3"], "--e-steps does not apply"),
            (.perDatapoint, ["--e-steps", "3"], "it is for per-datapoint with --e-solver bfgs or adam"),
        ]
        for (strategy, arguments, expected) in cases {
            let message = try #require(Self.refusal(strategy, arguments), "\(strategy) \(arguments) was accepted")
            #expect(message.contains(expected), "\(message)")
            #expect(!message.contains("\n"))
        }
        // The same options where they apply are accepted.
        #expect(Self.refusal(.amortized, ["--encoder", "mlp", "--hidden", "8", "--batch", "10"]) == nil)
        #expect(Self.refusal(.perDatapoint, ["--e-solver", "adam", "--decay", "10", "--kl", "stl"]) == nil)
        #expect(Self.refusal(.em, ["--acceleration", "squarem"]) == nil)
        #expect(Self.refusal(.joint, ["--learning-rate", "0.1"]) == nil)   // the step size makes joint take Adam steps
    }

    @Test("values out of range, combinations that cannot run and malformed flags are refused")
    func rangesAndCombinations() throws {
        let cases: [(Strategy, [String], String)] = [
            (.joint, ["--gradient", "reparam", "--decay-power=-1"], "--decay-power: must be a positive number, got -1"),
            (.joint, ["--gradient", "reparam", "--learning-rate", "0"], "--learning-rate: must be a positive number, got 0"),
            (.joint, ["--gradient", "reparam", "--samples", "0"], "--samples: must be at least 1, got 0"),
            (.joint, ["--gradient", "reparam", "--samples", "x"], "--samples: expected an integer, got \"x\""),
            (.joint, ["--max-seconds", "nan"], "--max-seconds: expected a number"),
            (.joint, ["--gradient", "vae"], "--gradient: unknown gradient \"vae\" (expected one of reparam, score, exact, dreg)"),
            (.joint, ["--learnin-rate", "0.1"], "unknown option --learnin-rate (did you mean --learning-rate?)"),
            (.joint, ["--samples"], "--samples needs a value"),
            (.joint, ["--no-offset=yes"], "--no-offset is a flag and takes no value"),
            (.joint, ["--batch", "5", "--batch", "6"], "--batch is given twice"),
            (.joint, ["stray"], "unexpected argument \"stray\""),
            (.joint, ["--optimizer", "bfgs", "--gradient", "score"], "--optimizer bfgs needs the exact objective"),
            (.joint, ["--optimizer", "lbfgs", "--batch", "10"], "--optimizer lbfgs works on the full batch"),
            (.amortized, ["--optimizer", "lbfgs"], "--optimizer lbfgs is for joint"),
            (.perDatapoint, ["--e-solver", "adam", "--covariance", "full"], "--e-solver adam supports --covariance diagonal only"),
            (.perDatapoint, ["--covariance", "full", "--averaging", "1"], "--averaging works with a diagonal covariance only"),
            (.perDatapoint, ["--acceleration", "squarem"], "--acceleration squarem is for em only"),
        ]
        for (strategy, arguments, expected) in cases {
            let message = try #require(Self.refusal(strategy, arguments), "\(strategy) \(arguments) was accepted")
            #expect(message.contains(expected), "\(message)")
        }
    }

    @Test("options built in code are checked too: out-of-range values and non-default settings that do not apply")
    func optionsBuiltInCode() throws {
        var o = FitOptions(strategy: .joint, latent: 2)
        o.samples = 0
        #expect(throws: InputError.self) { try o.validate() }
        var em = FitOptions(strategy: .em, latent: 2)
        em.encoder = .mlp
        #expect(throws: InputError.self) { try em.validate() }
        em.encoder = .linear   // the default: nothing was asked of em
        try em.validate()
    }

    @Test("fit refuses bad options before reading the data or creating the output folder")
    func fitRefusesUpFront() throws {
        try withTemporaryFolder { folder in
            // The data file does not exist: the refusal must be about the option, not the file.
            let run = try elbolab(["fit", "--data", "missing.csv", "--latent", "2", "--strategy", "em", "--encoder", "mlp",
                                   "--output", "out"], in: folder)
            #expect(run.status != 0)
            #expect(run.stderr == "Error: --encoder does not apply to this em run: it is for amortized, joint and semi-amortized\n")
            #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("out").path))
            let help = try elbolab(["fit", "--help"], in: folder)
            for name in FitOptionTable.names { #expect(help.stdout.contains("--\(name)"), "fit --help misses --\(name)") }
        }
    }

    @Test("a spec's run keys must apply to the run; inherited defaults reach only the runs they apply to")
    func specScope() throws {
        let own = try #require(ExperimentTests.parseError(ExperimentTests.spec(runs: #"{"label": "a", "strategy": "em", "hidden": 8}"#)))
        #expect(own == "experiments/bad.json: runs[0]: --hidden does not apply to this em run: it is for amortized, joint and semi-amortized with --encoder mlp")
        let json = ExperimentTests.spec(runs: #"{"label": "a", "strategy": "em"}, {"label": "b", "strategy": "joint", "gradient": "reparam"}"#,
                                        extra: #""stop": {"tolerance": 1e-6}, "defaults": {"learning-rate": 0.2, "encoder": "linear"},"#)
        let runs = try ExperimentSpec.parse(Data(json.utf8), path: "spec.json").runs
        #expect(runs[0].options.learningRate == nil && runs[0].options.tolerance == 1e-6)
        #expect(!runs[0].settings.contains { $0.0 == "learning-rate" || $0.0 == "encoder" })
        #expect(runs[1].options.learningRate == 0.2 && runs[1].settings.contains { $0 == ("learning-rate", "0.2") })
        let decay = try #require(ExperimentTests.parseError(ExperimentTests.spec(runs: #"{"label": "a", "strategy": "joint", "decay-power": -1}"#)))
        #expect(decay == "experiments/bad.json: runs[0].decay-power: must be a positive number, got -1")
    }

    /// The repository's root, found from this file.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("the docs list exactly the table's options: README's fit table and experiments/README.md's run options")
    func docsMatchTheTable() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let specs = try String(contentsOf: Self.root.appendingPathComponent("experiments/README.md"), encoding: .utf8)
        // README: the rows of the options table of `fit` (`| `--name` …`).
        let section = try #require(readme.range(of: "### Options of `fit`"))
        let rows = readme[section.upperBound...].split(separator: "\n").drop { !$0.hasPrefix("|") }.prefix { $0.hasPrefix("|") }
        var documented = Set<String>()
        for row in rows {
            var rest = row[...]
            while let start = rest.range(of: "`--") {
                let tail = rest[start.upperBound...]
                let name = tail.prefix { $0.isLetter || $0 == "-" }
                documented.insert(String(name))
                rest = tail.dropFirst(name.count)
            }
        }
        // fit's own flags: the data file and how it is read, the strategy, the seed, the output.
        let own: Set<String> = ["data", "delimiter", "columns", "max-memory", "strategy", "seed", "output", "quiet"]
        #expect(documented.subtracting(own) == Set(FitOptionTable.names), "README's fit table and the option table differ")
        // experiments/README.md: the run-options paragraph names each option as `name`.
        let paragraph = try #require(specs.range(of: "Run options:"))
        let after = specs[paragraph.upperBound...]
        let text = after[..<(after.range(of: "\n\n")?.lowerBound ?? after.endIndex)]
        for name in FitOptionTable.names { #expect(text.contains("`\(name)`"), "experiments/README.md misses `\(name)`") }
    }
}
