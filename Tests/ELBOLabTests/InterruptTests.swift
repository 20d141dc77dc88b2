import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

@Suite("Interrupted runs")
struct InterruptTests {
    /// How long the process may take to stop after SIGINT (the promise is "within a second").
    static let stopWithin = 1.0

    /// Starts elbolab with `arguments` in `folder`, sends SIGINT after `seconds`, checks that it
    /// was still running then and stopped within ``stopWithin``; returns its exit status.
    static func interrupt(_ arguments: [String], in folder: URL, after seconds: Double) throws -> Int32 {
        let executable = try #require(elbolabExecutable, "the elbolab executable was not found next to the test bundle")
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = folder
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: seconds)
        #expect(process.isRunning, "elbolab \(arguments[0]) ended before it could be interrupted")
        let sent = Date()
        process.interrupt()
        process.waitUntilExit()
        let took = Date().timeIntervalSince(sent)
        #expect(took < stopWithin, "stopped \(took) s after SIGINT")
        return process.terminationStatus
    }

    @Test("SIGINT during fit: the process stops within a second and every file it leaves is complete")
    func fitInterrupted() throws {
        try withTemporaryFolder { folder in
            let rng = RandomSource(seed: 5)
            let model = LinearGaussianModel.random(dimension: 20, latent: 3, noiseVariance: 0.5, using: rng)
            try AtomicFile.write(CSV.text(of: model.sample(count: 20_000, using: rng)), to: folder.appendingPathComponent("data.csv").path)
            let status = try Self.interrupt(["fit", "--data", "data.csv", "--latent", "3", "--strategy", "joint",
                                             "--gradient", "reparam", "--tolerance", "0", "--max-seconds", "120",
                                             "--output", "out", "--quiet"], in: folder, after: 2)
            #expect(status == 130)

            let out = folder.appendingPathComponent("out")
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(names == ["curve.csv", "params.json", "posterior.csv", "summary.json"], "left \(names)")
            let curve = try String(contentsOf: out.appendingPathComponent("curve.csv"), encoding: .utf8)
            #expect(curve.hasSuffix("\n"))
            let lines = curve.split(separator: "\n")
            #expect(lines.first == Substring(CurveRow.csvHeader))
            #expect(lines.count >= 3)
            for line in lines.dropFirst() {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                #expect(fields.count == 8 && fields.allSatisfy { Double($0) != nil }, "bad row \(line)")
            }
            let summaryText = try String(contentsOf: out.appendingPathComponent("summary.json"), encoding: .utf8)
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(summaryText.utf8)) as? [String: Any])
            #expect(summary["stop_reason"] as? String == "interrupted")
            // The summary's final figures are the curve's last row, digit for digit (read from the
            // text: Foundation's JSON parser does not round-trip every double).
            let last = lines.last!.split(separator: ",")
            #expect((summary["iterations"] as? NSNumber)?.intValue == Int(last[0]))
            #expect(summaryText.contains("\"elbo\": \(last[4]),"), "summary's elbo differs from the curve's \(last[4])")
            _ = try ParamsFile.read(path: out.appendingPathComponent("params.json").path)
        }
    }

    @Test("SIGINT during run: the jobs stop within a second and every file the run leaves is complete")
    func runInterrupted() throws {
        try withTemporaryFolder { folder in
            let spec = """
            {"name": "sigint", "title": "interrupted", "description": "a run that is stopped by SIGINT",
             "data": {"dim": 20, "latent": 3, "count": 20000, "noise-variance": 0.5, "seed": 1},
             "seeds": [1, 2],
             "stop": {"tolerance": 0, "max-seconds": 120},
             "runs": [{"label": "joint reparam", "strategy": "joint", "gradient": "reparam"}]}
            """
            try AtomicFile.write(spec, to: folder.appendingPathComponent("sigint.json").path)
            let status = try Self.interrupt(["run", "sigint.json", "--output", "out", "--quiet", "--no-plots"],
                                            in: folder, after: 3)
            #expect(status != 0)

            let out = folder.appendingPathComponent("out")
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path)
            #expect(!names.contains { $0.contains(".tmp") }, "temporary files left: \(names)")
            for required in ["curves.csv", "runs.csv", "summary.csv", "summary.md", "meta.json"] {
                #expect(names.contains(required), "\(required) missing from \(names)")
            }
            let curves = try String(contentsOf: out.appendingPathComponent("curves.csv"), encoding: .utf8)
            #expect(curves.hasSuffix("\n"))
            let lines = curves.split(separator: "\n")
            #expect(lines.first == "experiment,run,strategy,seed,iteration,data_passes,gradient_evaluations,seconds,elbo,loglik,approximation_gap,amortization_gap")
            for line in lines.dropFirst() {
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                #expect(fields.count == 12 && fields[4...].allSatisfy { Double($0) != nil }, "bad row \(line)")
            }
            // Both seeds ran at once and each logged rows before the interruption.
            #expect(Set(lines.dropFirst().map { $0.split(separator: ",")[3] }) == ["1", "2"])
            let runs = try String(contentsOf: out.appendingPathComponent("runs.csv"), encoding: .utf8)
            #expect(runs.contains("interrupted"), "runs.csv does not mark the jobs interrupted")
        }
    }
}
