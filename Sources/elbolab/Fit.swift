import ArgumentParser
import ELBOLab
import Foundation

extension Strategy: ExpressibleByArgument {}

struct Fit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fit the model to a CSV file with one strategy and score it exactly.",
        usage: "elbolab fit --data <csv> --latent <J> --strategy <strategy> --output <dir> [<fit options>]",
        discussion: """
        Strategies:
        """ + "\n" + Strategy.help(width: 76) + "\n\n" + """
        Writes DIR/curve.csv (the exact ELBO, log-likelihood and both gaps at
        logged iterations), DIR/summary.json (with collapse diagnostics and the
        importance-weighted bound at the final θ and q, to a standard error of
        1e-3 nats/point), DIR/params.json and DIR/posterior.csv (the final q of
        every point: m_1…m_J then v_1…v_J, or the Cholesky factor l_i_j for a
        full covariance; em and mle write the exact posterior), all together or
        none of them.

        Examples:
          elbolab fit --data data.csv --latent 3 --strategy mle --output out/mle
          elbolab fit --data data.csv --latent 3 --strategy per-datapoint
              --e-solver bfgs --output out/a
          elbolab fit --data data.csv --latent 3 --strategy joint
              --gradient reparam --samples 1 --output out/c
          elbolab fit --data data.csv --latent 3 --strategy amortized
              --gradient reparam --kl stl --output out/b
          elbolab fit --data data.csv --latent 3 --strategy joint
              --objective iwae --particles 10 --gradient dreg --output out/iw
          elbolab fit --data scalar.csv --latent 1 --strategy em
              --noise-variance 0.25 --no-offset --output out/em

        Fit options (also the run options of experiment specs; an option given to a
        run it does not apply to is refused):
        """ + "\n" + FitOptionTable.help(width: 76)
    )

    @Option(help: "The data, a numeric CSV file (one point per row; one header line allowed).") var data: String
    @OptionGroup var input: DataOptions
    @Option(help: ArgumentHelp(Strategy.allCases.map(\.name).joined(separator: " | ") + ".")) var strategy: Strategy
    @Option(help: "Seed of the run's random stream (initial θ, encoder, Monte Carlo draws).") var seed: UInt64 = 1
    @Option(help: "Output folder (created if missing).") var output: String
    @Flag(help: "No progress on stderr.") var quiet = false
    /// Every other flag: the fit options of ``FitOptionTable`` (listed in the discussion above).
    @Argument(parsing: .allUnrecognized, help: .hidden) var settings: [String] = []

    /// The options the flags give, checked (ranges, scope, combinations) before any data is read.
    func options() throws -> FitOptions {
        var o = FitOptions(strategy: strategy, latent: 0)
        o.seed = seed
        let given = try FitOptionTable.parse(settings, into: &o)
        guard given.contains("latent") else { throw InputError("--latent is required: the latent dimension J (see elbolab fit --help)") }
        try o.validate(given: given)
        return o
    }

    func run() throws {
        try runReportingErrors(fit)
    }

    private func fit() throws {
        // Bad input must leave no files: the options are checked before the data is read, the data
        // against the options and the output folder before the fit; the files are then written
        // all together or not at all.
        let fitOptions = try options()
        let dataset = try input.load(data, quiet: quiet, estimate: { fitOptions.memoryEstimate(count: $0, dimension: $1) },
                                     request: "fit --strategy \(strategy.rawValue) --latent \(fitOptions.latent)") { dataset in
            try dataset.validate(latent: fitOptions.latent, noiseFixed: fitOptions.constraints.noiseVariance != nil)
            if case .fixed? = fitOptions.theta {   // a held θ's shape must fit the data
                _ = try fitOptions.theta?.model(for: dataset, latent: fitOptions.latent, constraints: fitOptions.constraints)
            }
            try ResultSet.checkDestination(output)
        }
        let name = strategy.rawValue
        let progress = quiet ? nil : progressLine(name)
        installInterruptHandler()
        let result = try FitRunner(progress: progress, shouldStop: { interruptRequested != 0 }).fit(dataset, options: fitOptions)
        if !quiet { FileHandle.standardError.write(Data("\n".utf8)) }
        try ResultSet.write(result.files(data: dataset), into: output)
        if result.stopReason == .interrupted {
            FileHandle.standardError.write(Data("elbolab fit: interrupted after iteration \(result.final?.iteration ?? 0); the rows logged so far are in \(output) (stop_reason \"interrupted\")\n".utf8))
            throw ExitCode(130)
        }
        if let fault = result.fault {
            throw InputError("stopped by a numerical fault: \(fault); the rows logged before it are in \(output)/curve.csv")
        }
        if !quiet, let last = result.final {
            let gap = result.mle.logLikelihood - last.score.elbo
            print("\(name): ELBO \(fixed(last.score.elbo, 6)), log-lik \(fixed(last.score.logLikelihood, 6)), MLE \(fixed(result.mle.logLikelihood, 6)) (gap \(scientific(gap)) nats/point) after \(last.iteration) iterations, \(fixed(last.seconds, 3)) s [\(result.stopReason.rawValue)]")
        }
    }
}

/// `x` with `digits` decimals.
func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
/// `x` as `1.23e-04`.
func scientific(_ x: Double) -> String { String(format: "%.2e", x) }

/// A progress callback that rewrites one line on stderr.
func progressLine(_ name: String) -> @Sendable (CurveRow) -> Void {
    return { row in
        let elbo = fixed(row.score.elbo, 6), ll = fixed(row.score.logLikelihood, 6), sec = fixed(row.seconds, 2)
        let line = "\r\(name) iteration \(row.iteration)  ELBO \(elbo)  log-lik \(ll)  \(sec) s   "
        FileHandle.standardError.write(Data(line.utf8))
    }
}
