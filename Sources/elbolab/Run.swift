import ArgumentParser
import ELBOLab
import Foundation

/// Set by the first Ctrl-C: jobs stop at their next step and the results so far are written.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

/// Installs the Ctrl-C (and SIGTERM) handler; a second signal kills the process as usual.
func installInterruptHandler() {
    // A parent that starts us from a thread with these signals blocked (a Dispatch worker, say)
    // passes the block on: unblock them, or Ctrl-C would never arrive.
    var unblock = sigset_t()
    sigemptyset(&unblock)
    sigaddset(&unblock, SIGINT)
    sigaddset(&unblock, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    for sig in [SIGINT, SIGTERM] {
        signal(sig) { received in
            interruptRequested = 1
            signal(received, SIG_DFL)
        }
    }
}

struct ExperimentOptions: ParsableArguments {
    @Flag(help: "No progress line on stderr.") var quiet = false
    @Flag(name: .customLong("no-plots"), help: "Write the gnuplot scripts but do not run gnuplot.") var noPlots = false
    @Option(help: "Jobs (run × seed) run at once (default: the number of cores).") var workers: Int?
    @Flag(help: "Keep the run × seed pairs an earlier, interrupted run of the same spec finished in the output folder; run the rest.")
    var resume = false
    @OptionGroup var memory: MemoryOptions

    func validate() throws {
        if let w = workers, w < 1 { throw ValidationError("--workers must be at least 1, got \(w)") }
    }

    func runner() throws -> ExperimentRunner {
        installInterruptHandler()
        var progress: (@Sendable (ExperimentProgress) -> Void)? = nil
        if !quiet {
            let line = ProgressLine()
            progress = { (p: ExperimentProgress) in line.update(p) }
        }
        let stop: @Sendable () -> Bool = { interruptRequested != 0 }
        var runner = ExperimentRunner(progress: progress, shouldStop: stop, plots: noPlots ? .off : .automatic,
                                      workers: workers ?? ProcessInfo.processInfo.activeProcessorCount, resume: resume)
        runner.memory = try memory.budget()
        return runner
    }
}

/// The live progress line on stderr: rewritten in place on a terminal (at most ten times a
/// second), one line per finished job otherwise.
final class ProgressLine: @unchecked Sendable {
    private let lock = NSLock()
    private var last = 0.0
    private let terminal = isatty(STDERR_FILENO) != 0

    func update(_ p: ExperimentProgress) {
        lock.lock()
        defer { lock.unlock() }
        let jobs = "[\(p.finishedJobs)/\(p.totalJobs)]"
        if terminal {
            guard p.stopReason != nil || p.elapsed - last >= 0.1 else { return }
            last = p.elapsed
            var text = "\(p.experiment) \(jobs)  \(p.run)  seed \(p.seed)  iteration \(p.iteration)  ELBO \(fixed(p.elbo, 6))  \(fixed(p.elapsed, 1)) s"
            if text.count > 150 { text = String(text.prefix(150)) }
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
        } else if let reason = p.stopReason {
            let text = "\(p.experiment) \(jobs) \(p.run) seed \(p.seed): \(reason.rawValue) after \(p.iteration) iterations, ELBO \(fixed(p.elbo, 6)) (\(fixed(p.elapsed, 1)) s)\n"
            FileHandle.standardError.write(Data(text.utf8))
        }
    }

    /// Ends the line on a terminal.
    func finish() {
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// Prints what an experiment produced; warnings to stderr.
func announce(_ o: ExperimentOutcome, quiet: Bool) {
    if !quiet && isatty(STDERR_FILENO) != 0 { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    let plots = o.report.plots.filter { $0.hasSuffix(".png") }.count
    print("\(o.name): \(o.folder)/summary.md" + (plots > 0 ? ", \(plots) plots (PNG + SVG)" : ", plots not drawn") + " [\(fixed(o.wallSeconds, 1)) s]"
          + (o.keptJobs > 0 ? " (\(o.keptJobs) finished run × seed pairs kept)" : ""))
    if !o.faults.isEmpty {
        print("  \(o.faults.count) job(s) stopped on a numerical fault, e.g. \(o.faults[0])")
    }
    for w in o.report.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one experiment spec: every run × seed, then its CSVs, summary and plots.",
        discussion: """
        The spec format is described in experiments/README.md; the files written in
        results/README.md. Jobs run in parallel, one per core, each single-threaded and
        seeded, so a seed's figures do not depend on scheduling (only its seconds do).
        Ctrl-C stops the jobs at their next step and writes what they have; `--resume`
        then reruns only the pairs that did not finish.

        Examples:
          elbolab run experiments/ppca.json
          elbolab run experiments/ppca.json --output /tmp/ppca --workers 1
          elbolab run experiments/ppca.json --resume      # after a Ctrl-C
        """
    )

    @Argument(help: "The spec, a JSON file.") var spec: String
    @Option(help: "The results folder (default: results/<name>).") var output: String?
    @OptionGroup var experiment: ExperimentOptions

    func run() throws {
        try runReportingErrors {
            let loaded = try ExperimentSpec.load(path: spec)
            let outcome = try experiment.runner().run(loaded, output: output ?? "results/\(loaded.name)")
            announce(outcome, quiet: experiment.quiet)
            if outcome.interrupted { throw InputError("interrupted: the partial results are in \(outcome.folder); `--resume` finishes the rest") }
        }
    }
}

struct RunAll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-all",
        abstract: "Run every spec in a folder (by their `order`, then name) and write an index.",
        discussion: """
        Every spec is loaded and checked before the first runs. Each experiment goes to
        OUTPUT/<name>; OUTPUT/index.md links every summary and plot. `make experiments` runs
          elbolab run-all experiments --output results
        """
    )

    @Argument(help: "The folder of specs.") var folder: String
    @Option(help: "The results folder.") var output: String = "results"
    @OptionGroup var experiment: ExperimentOptions

    func run() throws {
        try runReportingErrors {
            let outcomes = try experiment.runner().runAll(folder: folder, output: output)
            for o in outcomes { announce(o, quiet: true) }
            let total = outcomes.reduce(0) { $0 + $1.wallSeconds }
            print("All results: \(output)/index.md (\(outcomes.count) experiments, \(fixed(total, 1)) s)")
            if interruptRequested != 0 { throw InputError("interrupted: the results so far are in \(output)") }
        }
    }
}

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Redraw an experiment's summary and plots from its CSV files, without rerunning.",
        discussion: """
        Reads meta.json, curves.csv and runs.csv (and variance.csv) in the folder; rewrites
        summary.csv, summary.md, the derived tables, the gnuplot scripts and the PNG/SVG plots.

        Example:
          elbolab plot results/ppca
        """
    )

    @Argument(help: "A results folder written by `elbolab run`.") var folder: String
    @Flag(name: .customLong("no-plots"), help: "Write the gnuplot scripts but do not run gnuplot.") var noPlots = false

    func run() throws {
        try runReportingErrors {
            let report = try ExperimentReport.write(folder: folder, plots: noPlots ? .off : .automatic)
            for w in report.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            let pngs = report.plots.filter { $0.hasSuffix(".png") }.count
            print("\(folder)/summary.md" + (pngs > 0 ? ", \(pngs) plots (PNG + SVG)" : ", plots not drawn"))
        }
    }
}
