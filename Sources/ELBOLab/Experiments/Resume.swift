import Foundation

/// The run × seed pairs an earlier `elbolab run` finished in a results folder, for `--resume`.
///
/// A pair counts as finished when `runs.csv` has its row with any stop reason but
/// `interrupted` (a numerical fault is a finished result: the same seed would fault again) and
/// `curves.csv` has its curve. Their rows are kept verbatim, so a resumed folder holds the same
/// files as an uninterrupted run (but for the seconds of the rerun pairs).
struct FinishedJobs {
    private var results: [Key: ExperimentRunner.JobResult] = [:]

    private struct Key: Hashable {
        var run: String
        var seed: UInt64
    }

    /// Nothing finished.
    init() {}

    /// Reads the finished pairs in `folder`, which must have been written from the same spec.
    ///
    /// - Throws: ``InputError`` when the folder holds results of another spec, or its files do
    ///   not read back.
    init(folder: String, spec: ExperimentSpec) throws {
        let runsPath = folder + "/runs.csv", curvesPath = folder + "/curves.csv"
        let files = FileManager.default
        guard files.fileExists(atPath: runsPath), files.fileExists(atPath: curvesPath) else { return }
        guard let before = files.contents(atPath: folder + "/spec.json") else {
            throw InputError("\(folder): has runs.csv but no spec.json, so it cannot be resumed: rerun without --resume")
        }
        guard before == spec.text else {
            throw InputError("\(folder)/spec.json differs from \(spec.path): the results there are of another spec; rerun without --resume or choose another --output")
        }
        let runs = try CSVTable.read(path: runsPath)
        let curves = try CSVTable.read(path: curvesPath)
        guard runs.header == RunRecord.header, curves.header == curvesHeader else {
            throw InputError("\(folder): runs.csv or curves.csv has other columns than this version writes: rerun without --resume")
        }
        var curveRows: [Key: [[String]]] = [:]
        let curveRun = try curves.strings("run"), curveSeed = try curves.counts("seed")
        for (i, row) in curves.rows.enumerated() {
            curveRows[Key(run: curveRun[i], seed: UInt64(curveSeed[i])), default: []].append(row)
        }
        for (record, row) in zip(try RunRecord.records(from: runs), runs.rows)
        where record.experiment == spec.name && record.stopReason != StopReason.interrupted.rawValue {
            let key = Key(run: record.run, seed: record.seed)
            guard let rows = curveRows[key] else { continue }
            results[key] = ExperimentRunner.JobResult(record: record, runRow: row, curveRows: rows)
        }
    }

    /// The kept result of `run` with `seed`, or nil when it must run.
    func result(run: String, seed: UInt64) -> ExperimentRunner.JobResult? {
        results[Key(run: run, seed: seed)]
    }
}
