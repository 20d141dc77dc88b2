import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The `elbolab` executable SwiftPM built next to the test bundle, if it can be found.
///
/// On Linux the test runner is itself an executable in the products folder (`CommandLine
/// .arguments[0]`, `/proc/self/exe`); on macOS it is inside `ELBOLabPackageTests.xctest/
/// Contents/MacOS`. Each candidate folder and a few of its parents are searched.
let elbolabExecutable: URL? = {
    var folders: [URL] = []
    if let arg0 = CommandLine.arguments.first {
        folders.append(URL(fileURLWithPath: arg0).resolvingSymlinksInPath().deletingLastPathComponent())
    }
    folders.append(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent())
    if let exe = Bundle.main.executableURL { folders.append(exe.resolvingSymlinksInPath().deletingLastPathComponent()) }
    folders.append(Bundle.main.bundleURL)
    for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
        folders.append(bundle.bundleURL.deletingLastPathComponent())
    }
    for start in folders {
        var folder = start
        for _ in 0..<4 {
            let candidate = folder.appendingPathComponent("elbolab")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
            folder = folder.deletingLastPathComponent()
        }
    }
    return nil
}()

struct Run {
    let status: Int32
    let stdout: String
    let stderr: String
    /// Non-empty lines of stderr (progress lines rewritten with \r count as one).
    var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
}

/// Runs elbolab with `arguments` in `folder`; its output goes through files in a separate
/// folder so that nothing is added to `folder` but what elbolab itself writes.
func elbolab(_ arguments: [String], in folder: URL) throws -> Run {
    let executable = try #require(elbolabExecutable, "the elbolab executable was not found next to the test bundle: build all products first")
    return try withTemporaryFolder { logs in
        let outURL = logs.appendingPathComponent("stdout"), errURL = logs.appendingPathComponent("stderr")
        try Data().write(to: outURL)
        try Data().write(to: errURL)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = folder
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return Run(status: process.terminationStatus,
                   stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                   stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
    }
}

func jsonObject(at url: URL) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

func number(_ x: Any?) throws -> Double { try #require((x as? NSNumber)?.doubleValue) }

/// The simulation every CLI test starts from.
private let dim = 6, latent = 2, count = 400

private func simulateData(in folder: URL) throws {
    let run = try elbolab(["simulate", "--dim", "\(dim)", "--latent", "\(latent)", "--count", "\(count)",
                           "--noise-variance", "0.5", "--seed", "3", "--output", "data.csv", "--truth", "truth.json"], in: folder)
    try #require(run.status == 0, "simulate failed: \(run.stderr)")
}

@Suite("elbolab command line")
struct CLITests {
    @Test("the elbolab executable is found next to the tests")
    func executableFound() {
        #expect(elbolabExecutable != nil)
    }

    @Test("simulate → fit --strategy mle → loglik agree with each other and with the library")
    func mlePipeline() throws {
        try withTemporaryFolder { folder in
            try simulateData(in: folder)
            let data = try Dataset.load(csv: folder.appendingPathComponent("data.csv").path)
            #expect(data.count == count && data.dimension == dim)
            let truth = try ParamsFile.read(path: folder.appendingPathComponent("truth.json").path)
            #expect(truth.dimension == dim && truth.latent == latent && truth.noiseVariance == 0.5)

            let fit = try elbolab(["fit", "--data", "data.csv", "--latent", "\(latent)", "--strategy", "mle",
                                   "--output", "out/mle", "--quiet"], in: folder)
            try #require(fit.status == 0, "fit failed: \(fit.stderr)")
            let outFolder = folder.appendingPathComponent("out/mle")
            let summary = try jsonObject(at: outFolder.appendingPathComponent("summary.json"))
            let ll = try elbolab(["loglik", "--data", "data.csv", "--params", "out/mle/params.json"], in: folder)
            try #require(ll.status == 0, "loglik failed: \(ll.stderr)")
            let printed = try #require(Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "loglik printed \(ll.stdout)")

            let summaryLL = try number(summary["loglik"]), mleLL = try number(summary["mle_loglik"])
            #expect(approximatelyEqual(printed, summaryLL, relative: Tolerance.cliAgreement))
            #expect(approximatelyEqual(printed, mleLL, relative: Tolerance.cliAgreement))
            let libraryMLE = try LinearGaussianModel.maximumLikelihood(for: data, latent: latent)
            #expect(approximatelyEqual(mleLL, libraryMLE.logLikelihood, relative: Tolerance.cliAgreement))
            #expect(printed >= (try truth.logLikelihood(of: data)))
            #expect(summary["strategy"] as? String == "mle")

            try checkOutputFiles(outFolder)
        }
    }

    @Test("fit --strategy em reaches the MLE and writes consistent files")
    func emPipeline() throws {
        try withTemporaryFolder { folder in
            try simulateData(in: folder)
            let fit = try elbolab(["fit", "--data", "data.csv", "--latent", "\(latent)", "--strategy", "em",
                                   "--output", "em", "--quiet"], in: folder)
            try #require(fit.status == 0, "fit failed: \(fit.stderr)")
            let summary = try jsonObject(at: folder.appendingPathComponent("em/summary.json"))
            let ll = try elbolab(["loglik", "--data", "data.csv", "--params", "em/params.json"], in: folder)
            try #require(ll.status == 0, "loglik failed: \(ll.stderr)")
            let printed = try #require(Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            let summaryLL = try number(summary["loglik"]), mleLL = try number(summary["mle_loglik"])
            #expect(approximatelyEqual(printed, summaryLL, relative: Tolerance.cliAgreement))
            #expect(approximatelyEqual(printed, mleLL, relative: Tolerance.cliAgreement), "EM log-likelihood \(printed) vs MLE \(mleLL)")
            #expect(summary["strategy"] as? String == "em")
            try checkOutputFiles(folder.appendingPathComponent("em"))
        }
    }

    @Test("fit with s2 held and b = 0 on the notes' scalar model")
    func scalarPipeline() throws {
        try withTemporaryFolder { folder in
            let sim = try elbolab(["simulate", "--dim", "1", "--latent", "1", "--count", "500", "--noise-variance", "0.25",
                                   "--no-offset", "--output", "scalar.csv"], in: folder)
            try #require(sim.status == 0, "\(sim.stderr)")
            let fit = try elbolab(["fit", "--data", "scalar.csv", "--latent", "1", "--strategy", "mle",
                                   "--noise-variance", "0.25", "--no-offset", "--output", "s", "--quiet"], in: folder)
            try #require(fit.status == 0, "\(fit.stderr)")
            let params = try jsonObject(at: folder.appendingPathComponent("s/params.json"))
            let data = try Dataset.load(csv: folder.appendingPathComponent("scalar.csv").path)
            let y = data.points.column(0)
            let meanSquare = y.reduce(0) { $0 + $1 * $1 } / Double(y.count)
            let w = try #require((params["W"] as? [[NSNumber]])?.first?.first?.doubleValue)
            #expect(approximatelyEqual(w * w, meanSquare - 0.25, relative: Tolerance.rounding))
            #expect(try number(params["noise_variance"]) == 0.25)
            #expect((params["b"] as? [NSNumber])?.map(\.doubleValue) == [0])
        }
    }

    /// curve.csv's header, params.json's shapes, summary.json's key fields.
    private func checkOutputFiles(_ folder: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let curve = try String(contentsOf: folder.appendingPathComponent("curve.csv"), encoding: .utf8)
        let lines = curve.split(separator: "\n")
        #expect(lines.first == "iteration,data_passes,gradient_evaluations,seconds,elbo,loglik,approximation_gap,amortization_gap",
                sourceLocation: sourceLocation)
        #expect(lines.count >= 2, sourceLocation: sourceLocation)
        for line in lines.dropFirst() {
            #expect(line.split(separator: ",", omittingEmptySubsequences: false).count == 8, "\(line)", sourceLocation: sourceLocation)
        }
        let params = try jsonObject(at: folder.appendingPathComponent("params.json"))
        let w = try #require(params["W"] as? [[NSNumber]], sourceLocation: sourceLocation)
        #expect(w.count == dim && w.allSatisfy { $0.count == latent }, sourceLocation: sourceLocation)
        let b = try #require(params["b"] as? [NSNumber], sourceLocation: sourceLocation)
        #expect(b.count == dim, sourceLocation: sourceLocation)
        #expect(try number(params["noise_variance"]) > 0, sourceLocation: sourceLocation)
        // params.json reads back as the model it describes.
        let model = try ParamsFile.read(path: folder.appendingPathComponent("params.json").path)
        #expect(model.dimension == dim && model.latent == latent, sourceLocation: sourceLocation)
    }

    // MARK: Bad input

    /// One bad invocation, with what to set up in the folder first.
    struct BadInput: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let setUp: @Sendable (URL) throws -> Void
        let arguments: [String]
    }

    static let fitArguments = ["fit", "--data", "data.csv", "--latent", "2", "--strategy", "mle", "--quiet"]

    static let badInputs: [BadInput] = [
        BadInput(testDescription: "fit: missing --data file", setUp: { _ in },
                 arguments: ["fit", "--data", "absent.csv", "--latent", "2", "--strategy", "mle", "--output", "out"]),
        BadInput(testDescription: "fit: --latent out of range", setUp: smallData,
                 arguments: ["fit", "--data", "data.csv", "--latent", "4", "--strategy", "mle", "--output", "out"]),
        BadInput(testDescription: "fit: --latent 0", setUp: smallData,
                 arguments: ["fit", "--data", "data.csv", "--latent", "0", "--strategy", "em", "--output", "out"]),
        BadInput(testDescription: "fit: non-positive --noise-variance", setUp: smallData,
                 arguments: fitArguments + ["--noise-variance", "0", "--output", "out"]),
        BadInput(testDescription: "fit: negative --noise-variance", setUp: smallData,
                 arguments: fitArguments + ["--noise-variance=-1", "--output", "out"]),
        BadInput(testDescription: "fit: rank-deficient data (no noise to estimate)",
                 setUp: { try writeFile("0,0,0\n1,2,3\n2,4,6\n3,6,9\n", named: "data.csv", in: $0) },
                 arguments: ["fit", "--data", "data.csv", "--latent", "1", "--strategy", "em", "--quiet", "--output", "new/nested/out"]),
        BadInput(testDescription: "simulate: non-positive --noise-variance", setUp: { _ in },
                 arguments: ["simulate", "--dim", "3", "--latent", "1", "--count", "10", "--noise-variance", "0", "--output", "d.csv"]),
        BadInput(testDescription: "simulate: --count 0", setUp: { _ in },
                 arguments: ["simulate", "--dim", "3", "--latent", "1", "--count", "0", "--noise-variance", "1", "--output", "d.csv"]),
        BadInput(testDescription: "simulate: --latent above --dim", setUp: { _ in },
                 arguments: ["simulate", "--dim", "3", "--latent", "4", "--count", "10", "--noise-variance", "1", "--output", "d.csv"]),
        BadInput(testDescription: "fit: unknown strategy", setUp: smallData,
                 arguments: ["fit", "--data", "data.csv", "--latent", "2", "--strategy", "magic", "--output", "out"]),
        BadInput(testDescription: "fit: unwritable --output under a regular file", setUp: smallDataAndRegularFile,
                 arguments: fitArguments + ["--output", "file.txt/out"]),
        BadInput(testDescription: "fit: --output is a regular file", setUp: smallDataAndRegularFile,
                 arguments: fitArguments + ["--output", "file.txt"]),
        BadInput(testDescription: "simulate: unwritable --output under a regular file", setUp: smallDataAndRegularFile,
                 arguments: ["simulate", "--dim", "3", "--latent", "1", "--count", "10", "--noise-variance", "1", "--output", "file.txt/d.csv"]),
        BadInput(testDescription: "simulate: unwritable --truth under a regular file", setUp: smallDataAndRegularFile,
                 arguments: ["simulate", "--dim", "3", "--latent", "1", "--count", "10", "--noise-variance", "1",
                             "--output", "new.csv", "--truth", "file.txt/truth.json"]),
        BadInput(testDescription: "fit: malformed data file", setUp: { try writeFile("1,2,3\n4,x,6\n", named: "data.csv", in: $0) },
                 arguments: fitArguments + ["--output", "out"]),
        BadInput(testDescription: "loglik: malformed params.json", setUp: { folder in
                     try smallData(folder)
                     try writeFile("{\"W\": [[1, 2], [3", named: "params.json", in: folder)
                 }, arguments: ["loglik", "--data", "data.csv", "--params", "params.json"]),
        BadInput(testDescription: "loglik: params.json with a non-positive noise variance", setUp: { folder in
                     try smallData(folder)
                     try writeFile("{\"W\": [[1], [2], [3]], \"b\": [0, 0, 0], \"noise_variance\": 0}", named: "params.json", in: folder)
                 }, arguments: ["loglik", "--data", "data.csv", "--params", "params.json"]),
        BadInput(testDescription: "loglik: params whose shape does not match the data", setUp: { folder in
                     try smallData(folder)
                     try writeFile("{\"W\": [[1], [2]], \"b\": [0, 0], \"noise_variance\": 1}", named: "params.json", in: folder)
                 }, arguments: ["loglik", "--data", "data.csv", "--params", "params.json"]),
        BadInput(testDescription: "loglik: missing params file", setUp: smallData,
                 arguments: ["loglik", "--data", "data.csv", "--params", "absent.json"]),
    ]

    /// A valid 3-column data set (D = 3), 30 rows.
    @Sendable static func smallData(_ folder: URL) throws {
        let y = simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 0.5), count: 30)
        try writeFile(CSV.text(of: y), named: "data.csv", in: folder)
    }

    @Sendable static func smallDataAndRegularFile(_ folder: URL) throws {
        try smallData(folder)
        try writeFile("not a folder\n", named: "file.txt", in: folder)
    }

    @Test("bad input exits non-zero with one line on stderr and leaves no files", arguments: badInputs)
    func badInput(_ bad: BadInput) throws {
        try expectRejected(bad.arguments, setUp: bad.setUp)
    }
}
