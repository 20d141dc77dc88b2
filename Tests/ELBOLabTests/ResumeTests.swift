import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// `elbolab run --resume`: the finished run × seed pairs of an interrupted run are kept verbatim,
/// the rest rerun, and the folder ends as an uninterrupted run would leave it.
@Suite("Resuming a run")
struct ResumeTests {
    static func timeColumn(_ name: String) -> Bool { name == "seconds" || name.hasPrefix("seconds_") }

    /// The rows of a CSV table, keyed by run and seed, with or without the time columns.
    static func rows(_ path: String, withTime: Bool) throws -> [String: [[String]]] {
        let t = try CSVTable.read(path: path)
        let run = try t.column("run"), seed = try t.column("seed")
        let keep = t.header.indices.filter { withTime || !timeColumn(t.header[$0]) }
        var out: [String: [[String]]] = [:]
        for r in t.rows { out["\(r[run]) seed \(r[seed])", default: []].append(keep.map { r[$0] }) }
        return out
    }

    /// Marks `run` with `seed` interrupted in `folder`'s runs.csv and cuts its curve to two rows,
    /// as an interrupted job leaves them.
    static func markInterrupted(run: String, seed: String, in folder: String) throws {
        var runs = try CSVTable.read(path: folder + "/runs.csv")
        let (r, s, stop) = (try runs.column("run"), try runs.column("seed"), try runs.column("stop_reason"))
        let i = try #require(runs.rows.firstIndex { $0[r] == run && $0[s] == seed })
        runs.rows[i][stop] = StopReason.interrupted.rawValue
        try AtomicFile.write(runs.text, to: folder + "/runs.csv")
        var curves = try CSVTable.read(path: folder + "/curves.csv")
        let (cr, cs) = (try curves.column("run"), try curves.column("seed"))
        let mine = curves.rows.indices.filter { curves.rows[$0][cr] == run && curves.rows[$0][cs] == seed }
        let cut = Set(mine.dropFirst(2))
        curves.rows = curves.rows.indices.filter { !cut.contains($0) }.map { curves.rows[$0] }
        try AtomicFile.write(curves.text, to: folder + "/curves.csv")
    }

    @Test("finished pairs are kept verbatim, the interrupted one reruns, the files end as an uninterrupted run's")
    func keepsFinishedPairs() throws {
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let complete = try ExperimentTests.runTiny(in: folder + "/a").folder
        try FileManager.default.copyItem(atPath: folder + "/a", toPath: folder + "/b")
        let resumed = folder + "/b/results"
        try Self.markInterrupted(run: "joint", seed: "2", in: resumed)

        let spec = try ExperimentSpec.load(path: folder + "/b/tiny.json")
        let outcome = try ExperimentRunner(workers: 2, resume: true).run(spec, output: resumed)
        #expect(outcome.keptJobs == 11)
        for file in ["runs.csv", "curves.csv"] {
            // Everything but the seconds matches the uninterrupted run ...
            #expect(try Self.rows(complete + "/" + file, withTime: false) == Self.rows(resumed + "/" + file, withTime: false))
            // ... and the kept pairs match to the seconds: they were not run again.
            let before = try Self.rows(complete + "/" + file, withTime: true)
            let after = try Self.rows(resumed + "/" + file, withTime: true)
            for (key, value) in before where key != "joint seed 2" { #expect(after[key] == value, "\(file): \(key) changed") }
        }
        let runs = try CSVTable.read(path: resumed + "/runs.csv")
        #expect(try !runs.strings("stop_reason").contains(StopReason.interrupted.rawValue))
        #expect(try runs.strings("run") == CSVTable.read(path: complete + "/runs.csv").strings("run"), "rows out of spec order")
    }

    @Test("a folder with nothing to resume runs everything")
    func emptyFolderRunsAll() throws {
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try AtomicFile.write(ExperimentTests.tinySpec, to: folder + "/tiny.json")
        let spec = try ExperimentSpec.load(path: folder + "/tiny.json")
        let outcome = try ExperimentRunner(workers: 2, resume: true).run(spec, output: folder + "/out")
        #expect(outcome.keptJobs == 0)
        #expect(try CSVTable.read(path: folder + "/out/runs.csv").rows.count == 12)
    }

    @Test("results of another spec are not resumed")
    func refusesAnotherSpec() throws {
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try ExperimentTests.runTiny(in: folder)
        let changed = ExperimentTests.tinySpec.replacingOccurrences(of: "\"iterations\": 40", with: "\"iterations\": 41")
        try AtomicFile.write(changed, to: folder + "/tiny.json")
        let spec = try ExperimentSpec.load(path: folder + "/tiny.json")
        let error = #expect(throws: InputError.self) {
            try ExperimentRunner(workers: 2, resume: true).run(spec, output: folder + "/results")
        }
        #expect(error?.message.contains("spec.json differs from") == true, "\(String(describing: error))")
    }

    @Test("SIGINT during run, then run --resume: the finished pairs are kept and the interrupted ones finish")
    func interruptThenResume() throws {
        try withTemporaryFolder { folder in
            // One long job and one quick one, each on its own worker; SIGINT goes out once the
            // progress lines say the quick one finished.
            let spec = """
            {"name": "resume", "data": {"dim": 20, "latent": 3, "count": 20000, "noise-variance": 0.5, "seed": 1},
             "seeds": [1],
             "runs": [{"label": "slow", "strategy": "joint", "gradient": "reparam", "tolerance": 0, "max-seconds": 4},
                      {"label": "quick", "strategy": "em", "max-seconds": 1}]}
            """
            try AtomicFile.write(spec, to: folder.appendingPathComponent("resume.json").path)
            let arguments = ["run", "resume.json", "--output", "out", "--no-plots", "--workers", "2"]
            let executable = try #require(elbolabExecutable)
            let process = Process()
            process.executableURL = executable
            process.arguments = arguments
            process.currentDirectoryURL = folder
            let progress = Pipe()
            process.standardError = progress
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            var seen = ""
            while !seen.contains("quick seed 1:") {
                let chunk = progress.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen += String(decoding: chunk, as: UTF8.self)
            }
            #expect(process.isRunning, "the run ended before it could be interrupted: \(seen)")
            process.interrupt()
            process.waitUntilExit()
            #expect(process.terminationStatus != 0)
            let out = folder.appendingPathComponent("out").path
            let before = try Self.rows(out + "/runs.csv", withTime: true)
            #expect(before["slow seed 1"]?.first?.contains(StopReason.interrupted.rawValue) == true)
            #expect(before["quick seed 1"]?.first?.contains(StopReason.interrupted.rawValue) == false)

            let result = try elbolab(arguments + ["--resume", "--quiet"], in: folder)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("1 finished run × seed pairs kept"), "\(result.stdout)")
            let after = try Self.rows(out + "/runs.csv", withTime: true)
            #expect(after["quick seed 1"] == before["quick seed 1"])
            #expect(after["slow seed 1"]?.first?.contains(StopReason.interrupted.rawValue) == false)
        }
    }
}
