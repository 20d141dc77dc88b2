// The bench's small harness: a monotonic clock, repeated timing, resident-memory probes,
// Markdown tables and number formatting. Nothing here knows about ELBOLab's model.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ELBOLab

/// Seconds on the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`).
@inline(__always)
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Seconds `body` took.
@inline(__always)
func elapsed(_ body: () throws -> Void) rethrows -> Double {
    let t0 = now()
    try body()
    return now() - t0
}

/// Repeated timings of one piece of work.
struct Timings {
    var samples: [Double]
    var min: Double { samples.min() ?? .nan }
    var max: Double { samples.max() ?? .nan }
    var mean: Double { samples.isEmpty ? .nan : samples.reduce(0, +) / Double(samples.count) }
    var median: Double {
        let s = samples.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
    }
}

/// Runs `body` `warmup` times untimed, then `repeats` times timed; stops early once
/// `budget` seconds of timed work have run (at least one timed run always happens).
func measure(repeats: Int, warmup: Int = 1, budget: Double = .infinity, _ body: () throws -> Void) rethrows -> Timings {
    for _ in 0..<warmup { try body() }
    var samples: [Double] = []
    var total = 0.0
    for _ in 0..<max(1, repeats) {
        let t = try elapsed(body)
        samples.append(t)
        total += t
        if total >= budget { break }
    }
    return Timings(samples: samples)
}

/// The process's peak resident set so far (`getrusage` ru_maxrss), in bytes.
func peakResidentBytes() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) * 1024   // Linux reports KiB
}

/// A /proc file's text (read to the end: their stat size is 0), nil where unavailable.
func readProcFile(_ path: String) -> String? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}

/// CPU seconds (user + system) this process has used, all threads.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) * 1e-6
        + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) * 1e-6
}

/// The process's resident set now (`/proc/self/statm`), in bytes; nil where unavailable.
func currentResidentBytes() -> Double? {
    guard let text = readProcFile("/proc/self/statm") else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Double(fields[1]) else { return nil }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE)))
}

/// The peak resident set of this process image (`VmHWM` of /proc/self/status), in bytes.
/// Unlike `ru_maxrss`, which Linux carries over from the parent across posix_spawn/exec, it
/// starts afresh with the new program.
func highWaterResidentBytes() -> Double? {
    guard let text = readProcFile("/proc/self/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        if parts.count >= 2, let kib = Double(parts[1]) { return kib * 1024 }
    }
    return nil
}

/// The 1-minute load average (other work on the machine skews every timing here).
func loadAverage() -> String {
    readProcFile("/proc/loadavg").map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "unknown"
}

/// A Markdown table.
struct Table {
    var header: [String]
    var rows: [[String]] = []
    /// Columns whose cells are right-aligned (numbers).
    var numeric: Set<Int> = []

    init(_ header: [String], numeric: Set<Int> = []) {
        self.header = header
        self.numeric = numeric
    }

    mutating func add(_ row: [String]) { rows.append(row) }

    var markdown: String {
        let widths = header.indices.map { c in max(3, ([header[c]] + rows.map { c < $0.count ? $0[c] : "" }).map(\.count).max() ?? 3) }
        func line(_ cells: [String]) -> String {
            "| " + header.indices.map { c in
                let s = c < cells.count ? cells[c] : ""
                let pad = String(repeating: " ", count: widths[c] - s.count)
                return numeric.contains(c) ? pad + s : s + pad
            }.joined(separator: " | ") + " |"
        }
        let rule = "|" + header.indices.map { c in
            numeric.contains(c) ? String(repeating: "-", count: widths[c] + 1) + ":" : String(repeating: "-", count: widths[c] + 2)
        }.joined(separator: "|") + "|"
        return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// Fixed-point with `digits` decimals, or "—" for nil/non-finite.
func fixed(_ x: Double?, _ digits: Int = 3) -> String {
    guard let x, x.isFinite else { return "—" }
    return String(format: "%.\(digits)f", x)
}

/// Three significant digits in scientific notation (gaps), "—" for nil.
func sci(_ x: Double?) -> String {
    guard let x, x.isFinite else { return "—" }
    return String(format: "%.2e", x)
}

/// A count with thin grouping (1000000 → 1,000,000).
func grouped(_ n: Int) -> String {
    let s = String(n)
    var out = ""
    for (i, c) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

/// N as a power of ten when it is one (10^5), else grouped.
func sizeLabel(_ n: Int) -> String {
    var p = 0, m = n
    while m >= 10 && m % 10 == 0 { m /= 10; p += 1 }
    return m == 1 && p >= 3 ? "10^\(p)" : grouped(n)
}

/// Bytes in MiB.
func mib(_ bytes: Double) -> String { String(format: "%.0f MiB", bytes / 1_048_576) }

/// A JSON number (null for nil or non-finite).
func jnum(_ x: Double?) -> JSON { .number(x) }
func jint(_ x: Int?) -> JSON { .number(x.map(Double.init)) }

/// Progress on standard error, so standard output stays the Markdown report.
func note(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}
