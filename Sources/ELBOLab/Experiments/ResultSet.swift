#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Writes a set of result files into a folder all together or not at all.
///
/// A reader (or `run --resume`) must never see a summary without the parameters it summarises,
/// so every file is first written and flushed into a hidden staging folder on the same file
/// system — beside the target when the target does not exist yet, inside it otherwise — and
/// only then renamed into place. A failed write (disk full, no permission) removes the staging
/// folder and leaves the target as it was; if a rename fails part-way, the files already moved
/// are put back (the previous versions were kept as hard links).
public enum ResultSet {
    /// One file of a set: its name inside the folder and its text.
    public typealias File = (name: String, contents: String)

    /// Staging folders start with this; a process killed mid-write may leave one behind.
    static let stagingPrefix = ".elbolab-partial-"

    /// Refuses, before any work, a destination folder that cannot be created or written:
    /// `folder` exists and is not a folder, or its nearest existing ancestor is not writable.
    public static func checkDestination(_ folder: String) throws {
        var isDirectory: ObjCBool = false
        let files = FileManager.default
        if files.fileExists(atPath: folder, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw InputError("\(folder): exists and is not a folder") }
            guard files.isWritableFile(atPath: folder) else { throw InputError("\(folder): cannot write: the folder is not writable") }
            return
        }
        var ancestor = URL(fileURLWithPath: folder).standardizedFileURL.deletingLastPathComponent()
        while ancestor.path != "/" && !files.fileExists(atPath: ancestor.path, isDirectory: &isDirectory) {
            ancestor = ancestor.deletingLastPathComponent()
        }
        _ = files.fileExists(atPath: ancestor.path, isDirectory: &isDirectory)
        guard isDirectory.boolValue else { throw InputError("\(folder): cannot create the folder: \(ancestor.path) is not a folder") }
        guard files.isWritableFile(atPath: ancestor.path) else {
            throw InputError("\(folder): cannot create the folder: \(ancestor.path) is not writable")
        }
    }

    /// Writes `files` into `folder` (created with its parents if missing), all or none.
    ///
    /// - Throws: ``/ELBOLabNumerics/InputError`` naming the file that could not be written and why; the folder
    ///   then holds exactly what it held before (a folder that did not exist is not created).
    public static func write(_ files: [File], into folder: String) throws {
        let target = URL(fileURLWithPath: folder).standardizedFileURL
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue { throw InputError("\(folder): exists and is not a folder") }
        let parent = target.deletingLastPathComponent().path
        var createdParents: String? = nil
        if !exists {
            createdParents = try makeParents(parent)
        }
        let stagingFolder = exists ? target.path : parent
        removeAbandonedStaging(in: stagingFolder)
        let staging = stagingFolder + "/" + stagingPrefix + (exists ? "" : target.lastPathComponent + "-") + "\(getpid())"
        func cleanUp() {
            try? FileManager.default.removeItem(atPath: staging)
            if let createdParents { try? FileManager.default.removeItem(atPath: createdParents) }
        }
        guard mkdir(staging, 0o755) == 0 else {
            let reason = String(cString: strerror(errno))
            cleanUp()
            throw InputError("\(folder)/\(files.first?.name ?? ""): cannot write: \(reason) (nothing was written)")
        }
        for file in files {
            do {
                try writeFlushed(file.contents, to: staging + "/" + file.name)
            } catch let reason as Failure {
                cleanUp()
                throw InputError("\(folder)/\(file.name): cannot write: \(reason.text)" +
                                 (exists ? " (the folder's previous results are untouched)" : " (nothing was written)"))
            }
        }
        if !exists {
            guard rename(staging, target.path) == 0 else {
                let reason = String(cString: strerror(errno))
                cleanUp()
                throw InputError("\(folder): cannot create the folder: \(reason) (nothing was written)")
            }
            return
        }
        // Keep each previous version as a hard link, so a failed rename can restore it.
        var previous: [String: String] = [:]
        for file in files {
            let old = target.path + "/" + file.name, keep = staging + "/.previous-" + file.name
            if access(old, F_OK) == 0 && link(old, keep) == 0 { previous[file.name] = keep }
        }
        var moved: [String] = []
        for file in files {
            let destination = target.path + "/" + file.name
            if rename(staging + "/" + file.name, destination) != 0 {
                let reason = String(cString: strerror(errno))
                for name in moved {
                    let path = target.path + "/" + name
                    if let keep = previous[name] { _ = rename(keep, path) } else { _ = unlink(path) }
                }
                cleanUp()
                throw InputError("\(folder)/\(file.name): cannot write: \(reason) (the folder's previous results are restored)")
            }
            moved.append(file.name)
        }
        try? FileManager.default.removeItem(atPath: staging)
    }

    private struct Failure: Error { let text: String }

    /// Removes the staging folders in `folder` whose process is gone (killed mid-write).
    static func removeAbandonedStaging(in folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(stagingPrefix) {
            guard let pid = name.split(separator: "-").last.flatMap({ Int32($0) }), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: folder + "/" + name) }
        }
    }

    /// Creates the missing folders of `path`; returns the outermost one created (to remove on failure).
    private static func makeParents(_ path: String) throws -> String? {
        var missing: String? = nil
        var ancestor = URL(fileURLWithPath: path).standardizedFileURL
        while ancestor.path != "/" && !FileManager.default.fileExists(atPath: ancestor.path) {
            missing = ancestor.path
            ancestor = ancestor.deletingLastPathComponent()
        }
        guard missing != nil else { return nil }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw InputError("\(path): cannot create the folder: \((error as NSError).localizedDescription)")
        }
        return missing
    }

    /// Writes `text` to a new file at `path` and flushes it to the disk, so that a full disk
    /// shows here (delayed allocation may only report it at fsync).
    private static func writeFlushed(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw Failure(text: String(cString: strerror(errno))) }
        var failure: String? = nil
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let n = Foundation.write(fd, base + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = String(cString: strerror(errno))
                    return
                }
                offset += n
            }
        }
        if failure == nil && fsync(fd) != 0 && errno != EINVAL { failure = String(cString: strerror(errno)) }
        if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
        if let failure { throw Failure(text: failure) }
    }
}

extension FitResult {
    /// The files `elbolab fit` writes, in order: `curve.csv`, `summary.json`, `params.json`.
    /// ``ResultSet`` writes them all or none.
    public func files(data: Dataset) -> [ResultSet.File] {
        var files: [ResultSet.File] = [
            ("curve.csv", curveCSV),
            ("summary.json", summaryJSON(data: data).text() + "\n"),
            ("params.json", ParamsFile.json(model).text() + "\n"),
        ]
        if let posterior = posteriorCSV { files.append(("posterior.csv", posterior)) }
        return files
    }
}
