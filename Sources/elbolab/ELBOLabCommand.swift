import ArgumentParser
import ELBOLab
import Foundation

@main
struct ELBOLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elbolab",
        abstract: "Compare variational-inference strategies on a model whose every answer is known exactly.",
        discussion: """
        The model is linear-Gaussian (probabilistic PCA): z ~ N(0, I_J), y | z ~ N(W z + b, s2 I_D).
        Its exact log-likelihood, posterior and maximum-likelihood fit have closed forms, so every
        strategy's ELBO is scored against the truth.

        Typical session:
          elbolab simulate --dim 20 --latent 3 --count 5000 --noise-variance 0.5 --seed 1 --output data.csv
          elbolab fit --data data.csv --latent 3 --strategy joint --output out/joint
          elbolab loglik --data data.csv --params out/joint/params.json
          elbolab run experiments/ppca.json
        """,
        subcommands: [Simulate.self, Fit.self, LogLik.self, Run.self, RunAll.self, Plot.self]
    )

    /// Runs the command line. A failure is one line on stderr (`Error: …`) and a non-zero exit:
    /// ArgumentParser's own `main()` follows every error with usage lines (and, for errors
    /// thrown by `run()`, the root command's usage). Help and version requests print in full.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }
            let text = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
            if !text.isEmpty { FileHandle.standardError.write(Data("Error: \(text)\n".utf8)) }
            exit(withError: ExitCode(code.rawValue))
        }
    }
}

/// Refuses, before anything is written, a destination whose folder is missing or not writable,
/// so a command that writes several files fails without leaving some of them behind.
func checkWritable(_ path: String) throws {
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw InputError("\(path): cannot write: the folder \(folder) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: folder) else {
        throw InputError("\(path): cannot write: the folder \(folder) is not writable")
    }
}

/// Prints a one-line error and exits non-zero for the library's own error types.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as InputError {
        throw ValidationError(error.message)
    } catch let error as GSLError {
        throw ValidationError(error.description)
    } catch let error as NumericalFault {
        throw ValidationError(error.description)
    }
}

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a data set from the model with random parameters.",
        discussion: """
        W and b have N(0, 1) entries; the noise variance is the one given.

        Examples:
          elbolab simulate --dim 20 --latent 3 --count 5000 --noise-variance 0.5 --seed 1 --output data.csv
          elbolab simulate --dim 1 --latent 1 --count 1000 --noise-variance 0.25 --no-offset --output scalar.csv --truth truth.json
        """
    )

    @Option(help: "Observation dimension D.") var dim: Int
    @Option(help: "Latent dimension J.") var latent: Int
    @Option(help: "Number of points N.") var count: Int
    @Option(name: .customLong("noise-variance"), help: "Noise variance s2.") var noiseVariance: Double
    @Option(help: "Seed of the GSL generator (MT19937).") var seed: UInt64 = 1
    @Flag(name: .customLong("no-offset"), help: "Draw with b = 0.") var noOffset = false
    @Option(help: "Where to write the CSV (one point per row, no header).") var output: String
    @Option(help: "Also write the true parameters as JSON here.") var truth: String?
    @OptionGroup var memory: MemoryOptions

    func validate() throws {
        if dim < 1 { throw ValidationError("--dim must be at least 1, got \(dim)") }
        if latent < 1 || latent > dim { throw ValidationError("--latent must be in 1…\(dim) (the dimension), got \(latent)") }
        if count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        if !(noiseVariance > 0 && noiseVariance.isFinite) { throw ValidationError("--noise-variance must be a positive number, got \(noiseVariance)") }
    }

    func run() throws {
        try runReportingErrors {
            try checkWritable(output)
            if let truth { try checkWritable(truth) }
            let budget = try memory.budget()
            try budget.check(Simulate.memoryEstimate(count: count, dimension: dim, latent: latent),
                             request: "simulate --count \(count) --dim \(dim)", hint: "ask for fewer points or dimensions, or raise --max-memory")
            try budget.probe(bytes: MemoryEstimate.product([count, dim, 8]) ?? Int.max, what: "simulate --count \(count) --dim \(dim)")
            let rng = RandomSource(seed: seed)
            let model = LinearGaussianModel.random(dimension: dim, latent: latent, noiseVariance: noiseVariance, zeroOffset: noOffset, using: rng)
            let y = model.sample(count: count, using: rng)
            try AtomicFile.write(CSV.text(of: y), to: output)
            if let truth { try AtomicFile.write(ParamsFile.json(model).text() + "\n", to: truth) }
        }
    }
}

extension Simulate {
    /// What simulating and writing `count` points needs: the points, their latent draws, and
    /// the CSV text (built whole, up to ~24 bytes a number, then copied into bytes to write).
    static func memoryEstimate(count: Int, dimension: Int, latent: Int) -> MemoryEstimate {
        var e = MemoryEstimate()
        e.add("data", doubles: count, dimension)
        e.add("latent draws", doubles: count, latent)
        e.add("CSV text", bytes: MemoryEstimate.product([count, dimension, 48]))
        return e
    }
}

struct LogLik: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loglik",
        abstract: "Print the average exact log-likelihood per point of data under given parameters.",
        discussion: """
        Example:
          elbolab loglik --data data.csv --params out/params.json
        """
    )

    @Option(help: "The data, a numeric CSV file.") var data: String
    @Option(help: "The parameters, a params.json written by fit (or simulate --truth).") var params: String
    @OptionGroup var input: DataOptions

    func run() throws {
        try runReportingErrors {
            let model = try ParamsFile.read(path: params)
            let latent = model.latent
            let dataset = try input.load(data, quiet: true, estimate: { n, d in
                var e = MemoryEstimate()
                e.add("data", doubles: n, d)
                e.add("D × D matrices", doubles: 4, d, d)
                e.add("scoring buffers", doubles: n, 2 * latent + 4)
                return e
            }, request: "loglik")
            guard model.dimension == dataset.dimension else {
                throw InputError("\(params): W has \(model.dimension) rows but \(data) has \(dataset.dimension) columns")
            }
            let value = try model.logLikelihood(of: dataset)
            guard value.isFinite else {
                throw InputError("\(params): the log-likelihood of \(data) under these parameters is \(value), not finite: W or noise_variance is too extreme for this data (rescale)")
            }
            print(formatNumber(value))
        }
    }
}
