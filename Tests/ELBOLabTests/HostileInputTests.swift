import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// Hostile input through the `elbolab` executable (issue 6): each case must end with a non-zero
// exit, exactly one line on stderr that names the file (and line and column where they exist),
// nothing on stdout and no file added — never a crash, a hang or a runtime trap. The cases here
// are the ones DatasetCSVTests and CLITests do not already cover.

/// What one run of the executable left behind.
struct HostileRun {
    var status: Int32
    var stdout: String
    var stderr: String
    /// True when the process was killed for running past the time limit.
    var timedOut: Bool
    var stderrLines: [Substring] { stderr.split(separator: "\n", omittingEmptySubsequences: true) }
}

/// Longest a hostile case may run before it counts as a hang (the slowest, a 10⁶-character
/// line, takes well under a second; the margin is for a loaded machine).
private let hangLimit: TimeInterval = 60

/// Runs elbolab in `folder` (with `environment` added to this process's) with stdout and stderr
/// captured through files in a separate folder, killing it after `hangLimit` seconds.
func runHostile(_ arguments: [String], in folder: URL, environment: [String: String] = [:]) throws -> HostileRun {
    let executable = try #require(elbolabExecutable, "build every product first: the elbolab executable was not found")
    return try withTemporaryFolder { capture in
        let paths = ["out", "err"].map { capture.appendingPathComponent($0) }
        for p in paths { try Data().write(to: p) }
        let handles = try paths.map { try FileHandle(forWritingTo: $0) }
        let child = Process()
        child.executableURL = executable
        child.arguments = arguments
        child.currentDirectoryURL = folder
        if !environment.isEmpty { child.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        (child.standardOutput, child.standardError, child.standardInput) = (handles[0], handles[1], FileHandle.nullDevice)
        let done = DispatchSemaphore(value: 0)
        child.terminationHandler = { _ in done.signal() }
        try child.run()
        let timedOut = done.wait(timeout: .now() + hangLimit) == .timedOut
        if timedOut { child.terminate(); done.wait() }
        for h in handles { try h.close() }
        let text = try paths.map { String(decoding: try Data(contentsOf: $0), as: UTF8.self) }
        return HostileRun(status: child.terminationStatus, stdout: text[0], stderr: text[1], timedOut: timedOut)
    }
}

/// The promise for bad input, on a folder `setUp` prepares: elbolab exits non-zero below 128 (not
/// a signal: no crash, no trap) without hanging, writes one stderr line under 400 characters that
/// mentions each of `mentions`, nothing on stdout, and adds or changes no file.
func expectRejected(_ arguments: [String], setUp: (URL) throws -> Void, mentions: [String] = [],
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
    try withTemporaryFolder { folder in
        try setUp(folder)
        let before = listing(of: folder)
        let run = try runHostile(arguments, in: folder)
        #expect(!run.timedOut, "still running after \(hangLimit) s", sourceLocation: sourceLocation)
        #expect(run.status != 0 && run.status < 128, "exit status \(run.status) (≥ 128 is a signal: a crash or a trap)",
                sourceLocation: sourceLocation)
        #expect(run.stderrLines.count == 1, "stderr was:\n\(run.stderr)", sourceLocation: sourceLocation)
        let line = String(run.stderrLines.first ?? "")
        for m in mentions { #expect(line.contains(m), "stderr line does not mention \(m): \(line)", sourceLocation: sourceLocation) }
        // One readable line, even when the offending text is a megabyte long.
        #expect(line.count < 400, "stderr line is \(line.count) characters", sourceLocation: sourceLocation)
        #expect(run.stdout.isEmpty, "stdout was:\n\(run.stdout)", sourceLocation: sourceLocation)
        #expect(listing(of: folder) == before, "files changed: \(listing(of: folder)) vs \(before)", sourceLocation: sourceLocation)
    }
}

/// Whether this process can read a file whose permissions are 000 (root, or CAP_DAC_OVERRIDE).
let permissionsAreBypassed: Bool = {
    (try? withTemporaryFolder { folder -> Bool in
        let path = try writeFile("1,2\n", named: "probe", in: folder)
        chmod(path, 0)
        let fd = open(path, O_RDONLY)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }) ?? true
}()

@Suite("Hostile input through the elbolab executable")
struct HostileInputTests {
    /// One hostile invocation: what to put in the folder, the arguments, and what the one
    /// stderr line must contain (the file, its line and column where they exist, the problem).
    struct Case: Sendable, CustomTestStringConvertible {
        let testDescription: String
        let setUp: @Sendable (URL) throws -> Void
        let arguments: [String]
        let mentions: [String]
    }

    static func fit(_ file: String, latent: Int = 1) -> [String] {
        ["fit", "--data", file, "--latent", "\(latent)", "--strategy", "mle", "--quiet", "--output", "out"]
    }
    static func loglik(_ params: String) -> [String] { ["loglik", "--data", "data.csv", "--params", params] }
    static func run(_ spec: String) -> [String] { ["run", spec, "--output", "out", "--quiet", "--no-plots", "--workers", "1"] }

    /// A valid data set, D = 3, 30 rows (for the params cases).
    @Sendable static func data(_ folder: URL) throws {
        try writeFile(CSV.text(of: simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 0.5), count: 30)),
                      named: "data.csv", in: folder)
    }

    /// `data.csv` and a params file with `json` as its text.
    static func params(_ json: String) -> @Sendable (URL) throws -> Void {
        { folder in try data(folder); try writeFile(json, named: "params.json", in: folder) }
    }

    /// loglik on `data.csv` with a params file whose text is `json`.
    static func paramsCase(_ description: String, _ json: String, _ mentions: String...) -> Case {
        Case(testDescription: description, setUp: params(json), arguments: loglik("params.json"), mentions: mentions)
    }

    /// A spec whose `data` block is `dataBlock`.
    static func spec(data dataBlock: String) -> @Sendable (URL) throws -> Void {
        { folder in
            try writeFile(#"{"name": "x", "data": \#(dataBlock), "seeds": [1], "runs": [{"label": "a", "strategy": "em"}]}"#,
                          named: "spec.json", in: folder)
        }
    }

    /// `rows` rows of seeded N(0, 1) numbers with `columns` columns, as CSV text.
    static func gaussianRows(_ rows: Int, _ columns: Int, seed: UInt64, scales: [Double]? = nil) -> String {
        let rng = RandomSource(seed: seed)
        var m = Matrix(rows: rows, cols: columns)
        for r in 0..<rows { for c in 0..<columns { m[r, c] = (scales?[c] ?? 1) * rng.gaussian() } }
        return CSV.text(of: m)
    }

    static let million = 1_000_000

    static let cases: [Case] = [
        // Data files (fit).
        Case(testDescription: "an empty data file", setUp: { try writeFile("", named: "empty.csv", in: $0) },
             arguments: fit("empty.csv"), mentions: ["empty.csv:", "no data rows"]),
        Case(testDescription: "binary garbage with NUL bytes", setUp: { folder in
                 let rng = RandomSource(seed: 61)
                 try writeFile((0..<4096).map { _ in UInt8(rng.uniform() * 256) }, named: "garbage.bin", in: folder)
             }, arguments: fit("garbage.bin"), mentions: ["garbage.bin:", "not a text CSV file"]),
        Case(testDescription: "binary garbage without NUL bytes or line ends (not valid UTF-8)", setUp: { folder in
                 let rng = RandomSource(seed: 62)
                 try writeFile((0..<4096).map { _ in UInt8(128 + rng.uniform() * 128) }, named: "high.bin", in: folder)
             }, arguments: fit("high.bin"), mentions: ["high.bin:1:", "is not text", "not a text CSV file"]),
        Case(testDescription: "a device (/dev/zero: endless NUL bytes)", setUp: { _ in },
             arguments: fit("/dev/zero"), mentions: ["/dev/zero:", "device"]),
        Case(testDescription: "a single column with a free noise variance", setUp: { try writeFile("1\n2\n4\n3\n", named: "one.csv", in: $0) },
             arguments: fit("one.csv"), mentions: ["one.csv:", "1 column(s)", "--noise-variance"]),
        Case(testDescription: "a column of 1e300s next to a column of 1e-300s",
             setUp: { try writeFile(gaussianRows(30, 2, seed: 63, scales: [1e300, 1e-300]), named: "wide-range.csv", in: $0) },
             arguments: fit("wide-range.csv"), mentions: ["wide-range.csv: column 1:", "rescale"]),
        Case(testDescription: "a value that overflows to infinity when parsed",
             setUp: { try writeFile("1,2\n3,4\n5,-1e309\n", named: "overflow.csv", in: $0) },
             arguments: fit("overflow.csv"), mentions: ["overflow.csv:3:2:", "-1e309", "overflows"]),
        Case(testDescription: "a 10⁶-digit number",
             setUp: { try writeFile("1,2\n3," + String(repeating: "7", count: million) + "\n", named: "digits.csv", in: $0) },
             arguments: fit("digits.csv"), mentions: ["digits.csv:2:2:", "overflows"]),
        Case(testDescription: "a 10⁶-character line of letters",
             setUp: { try writeFile("1,2\n3,4\n" + String(repeating: "x", count: million) + "\n", named: "letters.csv", in: $0) },
             arguments: fit("letters.csv"), mentions: ["letters.csv:3:1:", "not a number"]),
        Case(testDescription: "3000 columns, the last row one short", setUp: { folder in
                 let text = gaussianRows(6, 3000, seed: 64) + Array(repeating: "1", count: 2999).joined(separator: ",") + "\n"
                 try writeFile(text, named: "wide.csv", in: folder)
             }, arguments: fit("wide.csv"), mentions: ["wide.csv:7:", "2999 column(s)", "3000"]),
        Case(testDescription: "a data path that is a directory",
             setUp: { try FileManager.default.createDirectory(at: $0.appendingPathComponent("folder.csv"), withIntermediateDirectories: false) },
             arguments: fit("folder.csv"), mentions: ["folder.csv:", "directory"]),
        Case(testDescription: "a data file that has disappeared (a dangling symbolic link)",
             setUp: { try FileManager.default.createSymbolicLink(atPath: $0.appendingPathComponent("gone.csv").path, withDestinationPath: "deleted.csv") },
             arguments: fit("gone.csv"), mentions: ["gone.csv:", "No such file"]),
        Case(testDescription: "data on a J-dimensional subspace plus 1e-12 noise: s2 would be 0", setUp: { folder in
                 let model = randomModel(dimension: 5, latent: 2, noiseVariance: 1e-24)
                 try writeFile(CSV.text(of: simulate(model, count: 200)), named: "flat.csv", in: folder)
             }, arguments: fit("flat.csv", latent: 2), mentions: ["flat.csv:", "rank", "--noise-variance"]),
        // Specs (run).
        Case(testDescription: "spec: \"latent\": \"three\"",
             setUp: spec(data: #"{"dim": 3, "latent": "three", "count": 20, "noise-variance": 0.5}"#),
             arguments: run("spec.json"), mentions: ["spec.json: data.latent: expected an integer, got \"three\""]),
        Case(testDescription: "spec: an array where a number is expected",
             setUp: spec(data: #"{"dim": 3, "latent": 1, "count": 20, "noise-variance": [0.5]}"#),
             arguments: run("spec.json"), mentions: ["spec.json: data.noise-variance: expected a number, got an array"]),
        Case(testDescription: "spec: a loadings matrix of the wrong shape",
             setUp: spec(data: #"{"latent": 1, "count": 20, "noise-variance": 0.5, "loadings": [[1], [2, 3], [4]]}"#),
             arguments: run("spec.json"), mentions: ["spec.json: data.loadings[1]: has 2 entries"]),
        Case(testDescription: "spec: its CSV data are ragged (no empty results folder is left)", setUp: { folder in
                 try writeFile("1,2\n3,4\n5\n", named: "rows.csv", in: folder)
                 try spec(data: #"{"csv": "rows.csv", "latent": 1}"#)(folder)
             }, arguments: run("spec.json"), mentions: ["rows.csv:3:", "1 column(s)"]),
        Case(testDescription: "spec: binary bytes",
             setUp: { try writeFile([0xFF, 0xFE, 0x7B, 0x00, 0x81], named: "spec.json", in: $0) },
             arguments: run("spec.json"), mentions: ["spec.json: is not valid JSON"]),
        Case(testDescription: "spec: a directory",
             setUp: { try FileManager.default.createDirectory(at: $0.appendingPathComponent("spec.json"), withIntermediateDirectories: false) },
             arguments: run("spec.json"), mentions: ["spec.json: is a directory"]),
        // Parameter files (loglik).
        paramsCase("params: noise_variance is a string", #"{"W": [[1], [2], [3]], "b": [0, 0, 0], "noise_variance": "0.5"}"#,
                   "params.json: \"noise_variance\" must be a positive number, got \"0.5\""),
        paramsCase("params: W rows of different lengths", #"{"W": [[1, 2], [2], [3, 4]], "b": [0, 0, 0], "noise_variance": 0.5}"#,
                   "params.json: \"W\" row 2 has 1 entries, row 1 has 2"),
        paramsCase("params: W a flat array", #"{"W": [1, 2, 3], "b": [0, 0, 0], "noise_variance": 0.5}"#,
                   "params.json: \"W\" row 1 must be a non-empty array of numbers, got 1"),
        paramsCase("params: a boolean inside W", #"{"W": [[true], [2], [3]], "b": [0, 0, 0], "noise_variance": 0.5}"#,
                   "params.json: \"W\" row 1 entry 1 must be a finite number, got true"),
        paramsCase("params: W so large that W Wᵀ overflows", #"{"W": [[1e200], [2], [3]], "b": [0, 0, 0], "noise_variance": 0.5}"#,
                   "params.json: \"W\" is too large"),
        paramsCase("params: a subnormal noise_variance", #"{"W": [[1], [2], [3]], "b": [0, 0, 0], "noise_variance": 1e-320}"#,
                   "params.json: \"noise_variance\"", "too small"),
        Case(testDescription: "params: a directory",
             setUp: { folder in try data(folder); try FileManager.default.createDirectory(at: folder.appendingPathComponent("p.json"), withIntermediateDirectories: false) },
             arguments: loglik("p.json"), mentions: ["p.json: is a directory"]),
    ]

    @Test("hostile input: non-zero exit, one stderr line naming the problem, no files", arguments: cases)
    func hostile(_ c: Case) throws {
        try expectRejected(c.arguments, setUp: c.setUp, mentions: c.mentions)
    }

    @Test("an unreadable data file (chmod 000)",
          .enabled(if: !permissionsAreBypassed, "this process reads files whatever their permissions (root): chmod 000 cannot make one unreadable"))
    func unreadable() throws {
        try withTemporaryFolder { folder in
            try Self.data(folder)
            let path = folder.appendingPathComponent("data.csv").path
            #expect(chmod(path, 0) == 0)
            defer { chmod(path, 0o644) }
            let before = listing(of: folder)
            let run = try runHostile(Self.fit("data.csv"), in: folder)
            #expect(run.status != 0 && run.status < 128)
            #expect(run.stderrLines.count == 1 && run.stderr.contains("data.csv: cannot open") && run.stderr.contains("Permission denied"),
                    "stderr was:\n\(run.stderr)")
            #expect(listing(of: folder) == before)
        }
    }

    @Test("duplicated rows fit fine, with the same MLE as the rows once (same mean and covariance)")
    func duplicatedRows() throws {
        try withTemporaryFolder { folder in
            let once = Self.gaussianRows(40, 4, seed: 65)
            try writeFile(once, named: "once.csv", in: folder)
            try writeFile(once + once, named: "twice.csv", in: folder)
            var values: [Double] = []
            for name in ["once", "twice"] {
                let fit = try runHostile(["fit", "--data", "\(name).csv", "--latent", "2", "--strategy", "em", "--quiet", "--output", name], in: folder)
                try #require(fit.status == 0, "\(fit.stderr)")
                let ll = try runHostile(["loglik", "--data", "\(name).csv", "--params", "\(name)/params.json"], in: folder)
                try #require(ll.status == 0, "\(ll.stderr)")
                values.append(try #require(Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines))))
            }
            // EM run to its tolerance on either file reaches the same closed-form maximum.
            #expect(abs(values[0] - values[1]) <= Tolerance.emToMLE, "\(values)")
            let direct = try LinearGaussianModel.maximumLikelihood(for: Dataset.load(csv: folder.appendingPathComponent("once.csv").path), latent: 2)
            #expect(abs(values[1] - direct.logLikelihood) <= Tolerance.emToMLE)
        }
    }

    @Test("a params file with integer entries (b = 0 from --no-offset, s2 = 1) reads back")
    func integerParameters() throws {
        try withTemporaryFolder { folder in
            try Self.data(folder)
            let fit = try runHostile(["fit", "--data", "data.csv", "--latent", "1", "--strategy", "mle", "--no-offset",
                                      "--noise-variance", "1", "--quiet", "--output", "z"], in: folder)
            try #require(fit.status == 0, "\(fit.stderr)")
            let text = try String(contentsOf: folder.appendingPathComponent("z/params.json"), encoding: .utf8)
            #expect(text.contains("\"b\": [0, 0, 0]") && text.contains("\"noise_variance\": 1"), "\(text)")
            let ll = try runHostile(["loglik", "--data", "data.csv", "--params", "z/params.json"], in: folder)
            try #require(ll.status == 0, "\(ll.stderr)")
            let printed = try #require(Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            let model = try ParamsFile.read(path: folder.appendingPathComponent("z/params.json").path)
            let data = try Dataset.load(csv: folder.appendingPathComponent("data.csv").path)
            #expect(printed == (try model.logLikelihood(of: data)))
            #expect(approximatelyEqual(printed, directAverageLogLikelihood(model, points: data.points), relative: Tolerance.independentRoute))
        }
    }
}
