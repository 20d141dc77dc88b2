import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// All-or-nothing result folders (issue 15): a set of result files lands whole or not at all,
// and a failure leaves the previous complete set untouched, on a real full disk too.

/// The files of `folder` and their contents.
private func contents(of folder: URL) -> [String: Data] {
    var out: [String: Data] = [:]
    for name in listing(of: folder) {
        var isDirectory: ObjCBool = false
        let path = folder.appendingPathComponent(name).path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            out[name] = FileManager.default.contents(atPath: path)
        }
    }
    return out
}

/// A tmpfs of `kilobytes` mounted on a fresh folder for `body`, or nil when this process may not
/// mount one (not root, or a container without CAP_SYS_ADMIN).
func withSmallDisk<T>(kilobytes: Int, _ body: (URL) throws -> T) throws -> T? {
    try withTemporaryFolder { folder in
        let mountPoint = folder.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        guard mount("tmpfs", mountPoint.path, "tmpfs", 0, "size=\(kilobytes)k,mode=0777") == 0 else { return nil }
        defer { umount2(mountPoint.path, Int32(MNT_DETACH)) }
        return try body(mountPoint)
    }
}

/// Whether a tmpfs can be mounted here; tests that need a full disk are skipped otherwise.
let smallDisksAvailable: Bool = ((try? withSmallDisk(kilobytes: 64) { _ in true }) ?? nil) ?? false

/// Fills the file system of `folder` with one file until a write fails, then frees `spare` bytes.
func fillDisk(_ folder: URL, leaving spare: Int = 0) throws {
    let path = folder.appendingPathComponent("filler").path
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    try #require(fd >= 0)
    defer { close(fd) }
    let chunk = [UInt8](repeating: 0x55, count: 4096)
    var size = 0
    while true {
        let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        size += n
    }
    #expect(errno == ENOSPC)
    if spare > 0 { ftruncate(fd, off_t(max(0, size - spare))) }
}

@Suite("All-or-nothing result folders")
struct ResultSetTests {
    @Test("a new folder appears with every file, and no staging folder is left")
    func newFolder() throws {
        try withTemporaryFolder { folder in
            let target = folder.appendingPathComponent("a/b/out")
            try ResultSet.write([("x.csv", "1\n"), ("y.json", "{}\n")], into: target.path)
            #expect(contents(of: target) == ["x.csv": Data("1\n".utf8), "y.json": Data("{}\n".utf8)])
            #expect(listing(of: folder) == ["a", "a/b", "a/b/out", "a/b/out/x.csv", "a/b/out/y.json"])
        }
    }

    @Test("a write that fails part-way leaves the previous set, and a missing folder is not created")
    func failedWrite() throws {
        try withTemporaryFolder { folder in
            let target = folder.appendingPathComponent("out")
            try ResultSet.write([("x.csv", "old\n"), ("y.json", "old\n")], into: target.path)
            let before = contents(of: target)
            // The second file cannot be created (its folder does not exist): the first must not land.
            #expect(throws: InputError.self) {
                try ResultSet.write([("x.csv", "new\n"), ("missing/y.json", "new\n")], into: target.path)
            }
            #expect(contents(of: target) == before)
            #expect(listing(of: target) == ["x.csv", "y.json"])

            let fresh = folder.appendingPathComponent("p/q")
            #expect(throws: InputError.self) {
                try ResultSet.write([("x.csv", "new\n"), ("missing/y.json", "new\n")], into: fresh.path)
            }
            #expect(listing(of: folder) == ["out", "out/x.csv", "out/y.json"])
        }
    }

    @Test("a rename that fails part-way puts back the files already moved")
    func failedRename() throws {
        try withTemporaryFolder { folder in
            let target = folder.appendingPathComponent("out")
            try ResultSet.write([("a.csv", "old a\n")], into: target.path)
            // "b" is a non-empty folder: renaming a file over it fails after a.csv was moved.
            try FileManager.default.createDirectory(at: target.appendingPathComponent("b"), withIntermediateDirectories: true)
            try writeFile("keep", named: "b/inside", in: target)
            let before = contents(of: target)
            var message = ""
            do { try ResultSet.write([("a.csv", "new a\n"), ("b", "new b\n"), ("c.csv", "new c\n")], into: target.path) }
            catch let e as InputError { message = e.message }
            #expect(message.hasPrefix(target.path + "/b: cannot write: "), "\(message)")
            #expect(message.hasSuffix("(the folder's previous results are restored)"))
            #expect(contents(of: target) == before)
            #expect(listing(of: target) == ["a.csv", "b", "b/inside"])
        }
    }

    @Test("a full disk: one line naming the file, the previous set untouched",
          .enabled(if: smallDisksAvailable, "skipped: this process may not mount a tmpfs (needs root and CAP_SYS_ADMIN)"))
    func fullDisk() throws {
        _ = try withSmallDisk(kilobytes: 256) { disk in
            let target = disk.appendingPathComponent("out")
            try ResultSet.write([("curve.csv", "old\n"), ("summary.json", "old\n"), ("params.json", "old\n")], into: target.path)
            let before = contents(of: target)
            // Room for the small first file but not the large second one.
            try fillDisk(disk, leaving: 8192)
            let big = String(repeating: "0.123456789,", count: 20_000)
            var message = ""
            do { try ResultSet.write([("curve.csv", "new\n"), ("summary.json", big), ("params.json", "new\n")], into: target.path) }
            catch let e as InputError { message = e.message }
            #expect(message == "\(target.path)/summary.json: cannot write: No space left on device (the folder's previous results are untouched)")
            #expect(contents(of: target) == before)
            #expect(listing(of: target) == ["curve.csv", "params.json", "summary.json"])
            // A folder that did not exist is not created.
            #expect(throws: InputError.self) { try ResultSet.write([("a", big)], into: disk.appendingPathComponent("new").path) }
            #expect(listing(of: disk).filter { !$0.hasPrefix("out") } == ["filler"])
        }
    }

    @Test("fit on a full disk: non-zero exit, one line naming the path, the previous results untouched",
          .enabled(if: smallDisksAvailable, "skipped: this process may not mount a tmpfs (needs root and CAP_SYS_ADMIN)"))
    func fitOnFullDisk() throws {
        _ = try withSmallDisk(kilobytes: 1024) { disk in
            let sim = try elbolab(["simulate", "--dim", "4", "--latent", "1", "--count", "200", "--noise-variance", "0.5",
                                   "--output", "data.csv"], in: disk)
            try #require(sim.status == 0, "\(sim.stderr)")
            let fit = ["fit", "--data", "data.csv", "--latent", "1", "--strategy", "em", "--iterations", "30", "--quiet", "--output", "out"]
            let first = try elbolab(fit, in: disk)
            try #require(first.status == 0, "\(first.stderr)")
            let out = disk.appendingPathComponent("out")
            let before = contents(of: out)
            #expect(before.keys.sorted() == ["curve.csv", "params.json", "posterior.csv", "summary.json"])
            try fillDisk(disk)
            let second = try elbolab(fit + ["--seed", "2"], in: disk)
            #expect(second.status != 0 && second.status < 128)
            #expect(second.stderrLines.count == 1, "\(second.stderr)")
            #expect(second.stderr.hasPrefix("Error: out/curve.csv: cannot write: No space left on device"), "\(second.stderr)")
            #expect(contents(of: out) == before)
            #expect(listing(of: disk).sorted() == ["data.csv", "filler", "out", "out/curve.csv", "out/params.json", "out/posterior.csv",
                                                   "out/summary.json"])
        }
    }
    @Test("run on a full disk: its files of record stay the previous complete set, which --resume then keeps",
          .enabled(if: smallDisksAvailable, "skipped: this process may not mount a tmpfs (needs root and CAP_SYS_ADMIN)"))
    func runOnFullDisk() throws {
        _ = try withSmallDisk(kilobytes: 2048) { disk in
            let json = #"{"name": "tiny", "data": {"dim": 4, "latent": 1, "count": 100, "noise-variance": 0.5}, "seeds": [1, 2], "stop": {"iterations": 20}, "runs": [{"label": "em", "strategy": "em"}, {"label": "pd", "strategy": "per-datapoint"}]}"#
            let spec = try ExperimentSpec.parse(Data(json.utf8), path: disk.appendingPathComponent("tiny.json").path)
            let out = disk.appendingPathComponent("out")
            _ = try ExperimentRunner(plots: .off, workers: 1).run(spec, output: out.path)
            let records = ["curves.csv", "meta.json", "runs.csv", "spec.json", "truth.json"]
            let before = contents(of: out).filter { records.contains($0.key) }
            #expect(before.keys.sorted() == records)
            try fillDisk(disk)
            var message = ""
            do { _ = try ExperimentRunner(plots: .off, workers: 1).run(spec, output: out.path) }
            catch let e as InputError { message = e.message }
            #expect(message.hasPrefix(out.path + "/") && message.contains(": cannot write: No space left on device"), "\(message)")
            #expect(contents(of: out).filter { records.contains($0.key) } == before)
            #expect(!listing(of: out).contains { $0.contains(".elbolab-partial") })
            try FileManager.default.removeItem(at: disk.appendingPathComponent("filler"))
            let resumed = try ExperimentRunner(plots: .off, workers: 1, resume: true).run(spec, output: out.path)
            #expect(resumed.keptJobs == 4)
            let after = contents(of: out)
            #expect(after["runs.csv"] == before["runs.csv"] && after["curves.csv"] == before["curves.csv"])
        }
    }
    @Test("a folder without write permission: one line naming the file, nothing changed",
          .enabled(if: !permissionsAreBypassed, "skipped: this process bypasses file permissions (root)"))
    func noPermission() throws {
        try withTemporaryFolder { folder in
            let target = folder.appendingPathComponent("out")
            try ResultSet.write([("a.csv", "old\n")], into: target.path)
            chmod(target.path, 0o555)
            defer { chmod(target.path, 0o755) }
            var message = ""
            do { try ResultSet.write([("a.csv", "new\n")], into: target.path) } catch let e as InputError { message = e.message }
            #expect(message == "\(target.path)/a.csv: cannot write: Permission denied (nothing was written)")
            #expect(contents(of: target) == ["a.csv": Data("old\n".utf8)])
        }
    }
    @Test("a staging folder left by a killed process is removed by the next write; a live one is kept")
    func abandonedStaging() throws {
        try withTemporaryFolder { folder in
            let target = folder.appendingPathComponent("out")
            try ResultSet.write([("a.csv", "1\n")], into: target.path)
            // A pid above the kernel's limit (4194304) belongs to no process.
            let dead = target.appendingPathComponent(ResultSet.stagingPrefix + "999999999")
            let live = target.appendingPathComponent(ResultSet.stagingPrefix + "\(getpid())-other")
            let alive = target.appendingPathComponent(ResultSet.stagingPrefix + "\(getppid())")
            for f in [dead, live, alive] { try FileManager.default.createDirectory(at: f, withIntermediateDirectories: false) }
            try writeFile("half", named: dead.lastPathComponent + "/a.csv", in: target)
            try ResultSet.write([("a.csv", "2\n")], into: target.path)
            #expect(Set(listing(of: target)) == [".elbolab-partial-\(getpid())-other", ".elbolab-partial-\(getppid())", "a.csv"])
        }
    }
}
