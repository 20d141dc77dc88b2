import Dispatch
import Foundation

/// A progress report from a running experiment.
public struct ExperimentProgress: Sendable {
    public var experiment: String
    public var run: String
    public var seed: UInt64
    public var iteration: Int
    /// The exact ELBO at the last logged row (nats/point).
    public var elbo: Double
    /// Wall-clock seconds since the experiment started.
    public var elapsed: Double
    /// Jobs (run × seed) finished so far, and in all.
    public var finishedJobs: Int
    public var totalJobs: Int
    /// Set when this report is the job's last: how it stopped.
    public var stopReason: StopReason?
}

/// What running one experiment produced.
public struct ExperimentOutcome: Sendable {
    public var name: String
    public var title: String
    /// The results folder.
    public var folder: String
    public var wallSeconds: Double
    public var report: ReportOutcome
    /// Run × seed jobs that stopped on a numerical fault (`run seed: fault`).
    public var faults: [String]
    /// Whether the user stopped it.
    public var interrupted: Bool
    /// Run × seed pairs kept from an earlier run (`--resume`) rather than run again.
    public var keptJobs: Int = 0
}

/// Runs experiments: every run × seed (× data size) as an independent job, jobs spread over
/// the cores, each job single-threaded and seeded, so a seed's result never depends on
/// scheduling. Writes the files of record (`curves.csv`, `runs.csv`, `meta.json`) with
/// ``ResultSet`` (all or none) and then the report (``ExperimentReport``).
public struct ExperimentRunner: Sendable {
    /// Called after every logged row of every job, and when a job finishes.
    public var progress: (@Sendable (ExperimentProgress) -> Void)?
    /// Checked between steps; true stops every job (their rows so far are kept).
    public var shouldStop: (@Sendable () -> Bool)?
    public var plots: PlotDrawing
    /// Jobs run at once (default: the number of cores).
    public var workers: Int
    /// Keep the finished run × seed pairs already in the output folder and run only the rest
    /// (see `FinishedJobs`).
    public var resume: Bool
    /// The memory the data and the running jobs may use (see ``memoryEstimate(_:counts:dimension:)``).
    public var memory: MemoryBudget = .machine

    public init(progress: (@Sendable (ExperimentProgress) -> Void)? = nil, shouldStop: (@Sendable () -> Bool)? = nil,
                plots: PlotDrawing = .automatic, workers: Int = ProcessInfo.processInfo.activeProcessorCount,
                resume: Bool = false) {
        self.progress = progress
        self.shouldStop = shouldStop
        self.plots = plots
        self.workers = max(1, workers)
        self.resume = resume
    }

    struct Job: Sendable {
        var runIndex: Int
        var label: String
        var options: FitOptions
        var dataIndex: Int
        var seed: UInt64
    }

    struct JobResult: Sendable {
        var record: RunRecord
        /// The job's row of `runs.csv` (kept verbatim when resumed).
        var runRow: [String]
        var curveRows: [[String]]
    }

    /// Runs `spec` and writes its results into `output` (created if missing).
    public func run(_ spec: ExperimentSpec, output: String) throws -> ExperimentOutcome {
        if let study = spec.study {
            return try StudyRunner.run(spec, settings: study, output: output, plots: plots, workers: workers, memory: memory)
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let elapsed: @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
        // The data: one set, or one per size for a scaling experiment.
        let sizes: [Int?] = spec.kind == .scaling ? spec.counts.map { Optional($0) } : [nil]
        // Refuse what would not fit before allocating: simulated data from the spec's sizes,
        // a CSV file from its line count (its reader checks the numbers' buffer), then the jobs.
        if case let .simulated(s) = spec.data.source {
            try checkMemory(spec, counts: sizes.map { $0 ?? s.count }, dimension: s.dimension)
        }
        let datasets = try sizes.map { n in
            try spec.data.dataset(count: n, name: "\(spec.path): data" + (n.map { " (N = \($0))" } ?? ""), memory: memory)
        }
        if case .csv = spec.data.source { try checkMemory(spec, counts: datasets.map(\.count), dimension: datasets[0].dimension) }
        let truth = spec.data.truth
        for (i, run) in spec.runs.enumerated() {
            for d in datasets {
                do {
                    try d.validate(latent: run.options.latent, noiseFixed: run.options.constraints.noiseVariance != nil)
                    if let b = run.options.batch, b > d.count {
                        throw InputError("batch \(b) is larger than the \(d.count) points")
                    }
                } catch let error as InputError {
                    throw InputError("\(spec.path): runs[\(i)] (\(run.label)): \(error.message)")
                }
            }
            if let truth, truth.dimension != datasets[0].dimension {
                throw InputError("\(spec.path): data: the true W has \(truth.dimension) rows but the data have \(datasets[0].dimension) columns")
            }
        }

        // Only now that the inputs are good: a failed check leaves no empty folder behind.
        try AtomicFile.makeFolder(output)
        var jobs: [Job] = []
        var metaRuns: [ExperimentMeta.Run] = []
        for (r, run) in spec.runs.enumerated() {
            for (k, n) in sizes.enumerated() {
                let label = n.map { "\(run.label) N=\($0)" } ?? run.label
                metaRuns.append(ExperimentMeta.Run(label: label, strategy: run.options.strategy.rawValue,
                                                   settings: run.settings.map { "\($0.0) \($0.1)" }, base: run.label,
                                                   count: datasets[k].count))
                for seed in spec.seeds {
                    var options = run.options
                    options.seed = seed
                    jobs.append(Job(runIndex: r, label: label, options: options, dataIndex: k, seed: seed))
                }
            }
        }

        let finished = resume ? try FinishedJobs(folder: output, spec: spec) : FinishedJobs()
        let kept = jobs.map { finished.result(run: $0.label, seed: $0.seed) }
        let pending = jobs.indices.filter { kept[$0] == nil }
        let fresh = try runJobs(pending.map { jobs[$0] }, datasets: datasets, truth: truth, experiment: spec.name,
                                alreadyFinished: jobs.count - pending.count, elapsed: elapsed)
        var results = kept
        for (k, i) in pending.enumerated() { results[i] = fresh[k] }
        let allResults = results.compactMap { $0 }

        // The files of record are written together, all or none (``ResultSet``): `--resume` trusts
        // the pairs in runs.csv and curves.csv only beside the spec.json they were run from.
        var records: [ResultSet.File] = []
        var varianceNote = ""
        if spec.kind == .gradientVariance, let v = spec.variance {
            let study = try withJobThreads(workers) {
                try GradientVarianceStudy.run(v, data: datasets[0], seed: spec.seeds.first ?? 1, workers: workers)
            }
            varianceNote = study.note
            records.append(("variance.csv", GradientVarianceStudy.table(study.rows).text))
        }

        // The files of record, in spec order whatever order the jobs ran in.
        let curves = CSVTable(header: curvesHeader, rows: allResults.flatMap(\.curveRows), name: "curves.csv")
        records.append(("curves.csv", curves.text))
        records.append(("runs.csv", CSVTable(header: RunRecord.header, rows: allResults.map(\.runRow), name: "runs.csv").text))
        if let truth { records.append(("truth.json", ParamsFile.json(truth).text() + "\n")) }
        // The bytes that were run, not the file as it is now: it may have been edited meanwhile.
        if let text = spec.text {
            records.append(("spec.json", String(decoding: text, as: UTF8.self)))
        }
        let interrupted = shouldStop?() == true
        var meta = ExperimentMeta(experiment: spec.name, title: spec.title, description: spec.description, kind: spec.kind,
                                  spec: spec.path, data: spec.data.summary + (spec.kind == .scaling
                                      ? ", N ∈ {\(spec.counts.map(String.init).joined(separator: ", "))}"
                                      : ", N = \(datasets[0].count)"),
                                  truthKnown: truth != nil, seeds: spec.seeds, runs: metaRuns, varianceNote: varianceNote)
        meta.wallSeconds = elapsed()
        meta.overview = spec.overview ?? ""
        records.append(("meta.json", meta.json.text() + "\n"))
        try ResultSet.write(records, into: output)
        let report = try ExperimentReport.write(folder: output, plots: plots)
        let faults = allResults.compactMap { r in r.record.fault.isEmpty ? nil : "\(r.record.run) seed \(r.record.seed): \(r.record.fault)" }
        return ExperimentOutcome(name: spec.name, title: spec.title, folder: output, wallSeconds: elapsed(), report: report,
                                 faults: faults, interrupted: interrupted, keptJobs: jobs.count - pending.count)
    }

    /// What `spec` needs with data sets of `counts` points in `dimension` columns: every data
    /// set (all are held while the jobs run) and the state of the `workers` largest jobs at once.
    public func memoryEstimate(_ spec: ExperimentSpec, counts: [Int], dimension: Int) -> MemoryEstimate {
        var e = MemoryEstimate()
        let latent = spec.data.truth?.latent ?? spec.data.latent
        for n in counts {
            e.add("data", doubles: n, dimension)
            if case .simulated = spec.data.source { e.add("latent draws", doubles: n, latent) }
        }
        var jobs: [Int?] = []
        for run in spec.runs {
            for n in counts {
                var state = run.options.memoryEstimate(count: n, dimension: dimension)
                state.parts.removeAll { $0.name == "data" }   // shared by the jobs, counted above
                jobs += Array(repeating: state.total, count: spec.seeds.count)
            }
        }
        var running = MemoryEstimate()
        for b in jobs.sorted(by: { ($0 ?? .max) > ($1 ?? .max) }).prefix(workers) { running.add("job", bytes: b) }
        e.add("running jobs' state", bytes: running.total)
        return e
    }

    private func checkMemory(_ spec: ExperimentSpec, counts: [Int], dimension: Int) throws {
        let sizes = counts.count == 1 ? "N = \(counts[0])" : "N = " + counts.map(String.init).joined(separator: " + ")
        try memory.check(memoryEstimate(spec, counts: counts, dimension: dimension),
                         request: "\(spec.path): data \(sizes), D = \(dimension), \(workers) job(s) at once",
                         hint: "use fewer points (data.count, counts) or --workers, or raise --max-memory")
        for n in counts {
            try memory.probe(bytes: MemoryEstimate.product([n, dimension, 8]) ?? Int.max, what: "\(spec.path): data N = \(n), D = \(dimension)")
        }
    }

    /// Runs every job, `workers` at a time, longest caps first; results come back in job order.
    func runJobs(_ jobs: [Job], datasets: [Dataset], truth: LinearGaussianModel?, experiment: String,
                 alreadyFinished: Int = 0, elapsed: @escaping @Sendable () -> Double) throws -> [JobResult] {
        let slots = ResultSlots<Result<JobResult, Error>>(count: jobs.count)
        let order = Array(jobs.indices).sorted { a, b in
            let ca = jobs[a].options.maxSeconds * Double(datasets[jobs[a].dataIndex].count)
            let cb = jobs[b].options.maxSeconds * Double(datasets[jobs[b].dataIndex].count)
            return ca != cb ? ca > cb : a < b
        }
        let queue = JobQueue(order: order)
        let finished = Counter(alreadyFinished)
        let progress = self.progress, shouldStop = self.shouldStop
        let total = jobs.count + alreadyFinished
        let threads = min(workers, jobs.count)
        let work: @Sendable (Int) -> Void = { _ in
            while let i = queue.take() {
                let job = jobs[i]
                let data = datasets[job.dataIndex]
                var report: (@Sendable (CurveRow) -> Void)? = nil
                if let progress {
                    report = { (row: CurveRow) in
                        progress(ExperimentProgress(experiment: experiment, run: job.label, seed: job.seed, iteration: row.iteration,
                                                    elbo: row.score.elbo, elapsed: elapsed(), finishedJobs: finished.value,
                                                    totalJobs: total, stopReason: nil))
                    }
                }
                let outcome: Result<JobResult, Error>
                do {
                    let result = try FitRunner(progress: report, shouldStop: shouldStop).fit(data, options: job.options)
                    let rows: [[String]] = result.curve.map { row in
                        [experiment, job.label, job.options.strategy.rawValue, String(job.seed)] + row.csvValues
                    }
                    let record = ExperimentRunner.record(of: result, job: job, data: data, truth: truth, experiment: experiment)
                    outcome = .success(JobResult(record: record, runRow: record.fields, curveRows: rows))
                } catch {
                    outcome = .failure(error)
                }
                slots.set(i, outcome)
                let done = finished.increment()
                if let progress, case let .success(r) = outcome {
                    progress(ExperimentProgress(experiment: experiment, run: job.label, seed: job.seed,
                                                iteration: r.record.iterations, elbo: r.record.elbo, elapsed: elapsed(),
                                                finishedJobs: done, totalJobs: total,
                                                stopReason: StopReason(rawValue: r.record.stopReason)))
                }
            }
        }
        withJobThreads(threads) {
            DispatchQueue.concurrentPerform(iterations: max(1, threads), execute: work)
        }
        return try slots.values.enumerated().map { i, slot in
            guard let slot else { throw InputError("\(experiment): job \(i) did not run") }
            return try slot.get()
        }
    }

    /// The final figures of one fit.
    static func record(of result: FitResult, job: Job, data: Dataset, truth: LinearGaussianModel?, experiment: String) -> RunRecord {
        let last = result.final
        return RunRecord(
            experiment: experiment, run: job.label, strategy: job.options.strategy.rawValue, seed: job.seed, count: data.count,
            stopReason: result.stopReason.rawValue, iterations: last?.iteration ?? 0, dataPasses: last?.dataPasses ?? 0,
            gradientEvaluations: last?.gradientEvaluations ?? 0, seconds: last?.seconds ?? 0,
            elbo: last?.score.elbo ?? .nan, logLikelihood: last?.score.logLikelihood ?? .nan,
            approximationGap: last?.score.approximationGap ?? .nan, amortizationGap: last?.score.amortizationGap ?? .nan,
            mleLogLikelihood: result.mle.logLikelihood,
            secondsTo: FitResult.thresholds.map { result.secondsTo(within: $0) },
            iterationsTo: FitResult.thresholds.map { result.iterationsTo(within: $0).map(Double.init) },
            recovery: truth.map { Recovery(fit: result.model, truth: $0) },
            mleRecovery: truth.map { Recovery(fit: result.mle.model, truth: $0) },
            fault: result.fault ?? "", bestAmortizationGap: result.bestAmortizationGap(data: data))
    }

    // MARK: All experiments

    /// The specs in `folder` (every `*.json`), in run order: by `order`, then by name.
    ///
    /// - Throws: ``/ELBOLabNumerics/InputError`` for the first spec that does not load, or for two specs with one name.
    public static func specs(in folder: String) throws -> [ExperimentSpec] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw InputError("\(folder): cannot list the folder of specs")
        }
        let specs = try names.filter { $0.hasSuffix(".json") }.sorted().map { try ExperimentSpec.load(path: "\(folder)/\($0)") }
        var seen: [String: String] = [:]
        for s in specs {
            if let other = seen[s.name] { throw InputError("\(s.path): name \"\(s.name)\" is also the name of \(other)") }
            seen[s.name] = s.path
        }
        if specs.isEmpty { throw InputError("\(folder): has no experiment specs (*.json)") }
        return specs.sorted { ($0.order, $0.name) < ($1.order, $1.name) }
    }

    /// Runs every spec in `folder` into `output/<name>` and writes `output/index.md`.
    ///
    /// Every spec is loaded and checked before the first one runs.
    public func runAll(folder: String, output: String) throws -> [ExperimentOutcome] {
        let start = DispatchTime.now().uptimeNanoseconds
        let specs = try ExperimentRunner.specs(in: folder)
        try AtomicFile.makeFolder(output)
        var outcomes: [ExperimentOutcome] = []
        for spec in specs {
            if shouldStop?() == true { break }
            outcomes.append(try run(spec, output: "\(output)/\(spec.name)"))
        }
        let overview = try Overview.write(output: output, experiments: outcomes.map(\.name), plots: plots)
        let total = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        try AtomicFile.write(ExperimentRunner.index(outcomes, output: output, totalSeconds: total, overview: overview.drawn,
                                                    overviewWarnings: overview.warnings), to: output + "/index.md")
        try ResultsSite.write(output: output, experiments: outcomes.map { ($0.name, $0.title, $0.report.plots) },
                              overview: overview.drawn.contains("overview.svg"), totalSeconds: total)
        return outcomes
    }

    /// `index.md`: every experiment with links to its summary and plots.
    static func index(_ outcomes: [ExperimentOutcome], output: String, totalSeconds: Double, overview: [String] = [],
                      overviewWarnings: [String] = []) -> String {
        var out = "# ELBOLab results\n\n"
        if overview.contains("overview.png") {
            out += "![The gap to the MLE by strategy, and the gap split over training](overview.png)\n\n"
            out += "The overview ([SVG](overview.svg), data [overview.csv](overview.csv), script [overview.gp](overview.gp)); "
            out += "the whole report as one page: [index.html](index.html).\n\n"
        }
        for w in overviewWarnings { out += "- Warning: \(w)\n" }
        out += "Written by `elbolab run-all` (`make experiments`) in \(String(format: "%.0f", totalSeconds)) s of wall-clock time. "
        out += "Each folder holds the files of record (`curves.csv`, `runs.csv`, `meta.json`), the summary and the plots; "
        out += "`elbolab plot \(output)/<name>` redraws them. Every file and column is explained in [README.md](README.md).\n\n"
        for o in outcomes {
            let name = o.name
            out += "## [\(name)](\(name)/summary.md)" + (o.title.isEmpty || o.title == name ? "" : ": \(o.title)") + "\n\n"
            // Studies write their own tables, not curves.csv and runs.csv: link what is there.
            let csvs = ((try? FileManager.default.contentsOfDirectory(atPath: "\(output)/\(name)")) ?? []).filter { $0.hasSuffix(".csv") }
            let present = ["summary.md"] + csvs.sorted()
            out += "- Files: " + present.map { "[\($0)](\(name)/\($0))" }.joined(separator: ", ") + "\n"
            let pngs = o.report.plots.filter { $0.hasSuffix(".png") }
            if pngs.isEmpty {
                out += "- Plots: not drawn (scripts: " + o.report.scripts.map { "[\($0)](\(name)/\($0))" }.joined(separator: ", ") + ")\n"
            } else {
                out += "- Plots: " + pngs.map { p in
                    let stem = String(p.dropLast(4))
                    return "[\(stem)](\(name)/\(p)) ([svg](\(name)/\(stem).svg))"
                }.joined(separator: ", ") + "\n"
            }
            out += "- Wall-clock time: \(String(format: "%.1f", o.wallSeconds)) s"
            if o.interrupted { out += " (interrupted: partial results)" }
            out += "\n"
            if !o.faults.isEmpty { out += "- Numerical faults: \(o.faults.count) job(s) stopped on one (see summary.md)\n" }
            for f in o.report.findings.prefix(6) { out += "- \(f.text)\n" }
            for w in o.report.warnings { out += "- Warning: \(w)\n" }
            out += "\n"
        }
        return out
    }
}

/// Runs `body` with ELBOLab's block loops single-threaded when `threads` jobs share the cores,
/// restoring the setting afterwards (results are the same either way; only speed differs).
func withJobThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
    let saved = ParallelSettings.threads
    if threads > 1 { ParallelSettings.threads = 1 }
    defer { ParallelSettings.threads = saved }
    return try body()
}

/// A thread-safe counter.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count: Int

    init(_ start: Int = 0) { count = start }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        count += 1
        return count
    }
}
