#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The memory a request may use, and the check that refuses a request too large for it before
/// anything large is allocated.
///
/// Swift traps when an allocation fails, so a request for 10¹² points would end in a signal
/// and a backtrace. Instead every command estimates what it needs (``MemoryEstimate``, with
/// overflow-checked arithmetic) and ``check(_:request:hint:)`` refuses it in one line when it
/// exceeds the budget; the largest buffers are then also probed with `malloc` first
/// (``probe(bytes:what:)``), so an allocation the system refuses anyway is a clear error too.
public struct MemoryBudget: Sendable {
    /// The bytes a request may use.
    public var limit: Int
    /// Where the limit comes from, for messages (`physical memory`, `--max-memory 2G`, …).
    public var source: String
    /// Whether `bytes` can be allocated now (malloc and free); injectable so that tests can
    /// simulate a refusal.
    public var canAllocate: @Sendable (Int) -> Bool

    public init(limit: Int, source: String, canAllocate: @escaping @Sendable (Int) -> Bool = MemoryBudget.systemCanAllocate) {
        self.limit = limit
        self.source = source
        self.canAllocate = canAllocate
    }

    /// Asks the system for `bytes` and gives them back.
    public static let systemCanAllocate: @Sendable (Int) -> Bool = { bytes in
        guard let p = malloc(max(1, bytes)) else { return false }
        free(p)
        return true
    }

    /// The machine's physical memory, or the cgroup limit of this process when lower (read once).
    public static var machine: MemoryBudget { machineBudget }

    private static let machineBudget: MemoryBudget = {
        let pages = Int(sysconf(Int32(_SC_PHYS_PAGES))), pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var physical = pages > 0 && pageSize > 0 ? pages.multipliedReportingOverflow(by: pageSize).partialValue : Int.max
        var source = "physical memory"
        if let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
           let cgroup = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), cgroup < physical {
            physical = cgroup
            source = "the cgroup memory limit"
        }
        return MemoryBudget(limit: physical, source: source)
    }()

    /// The budget a command runs with: `--max-memory` when given, else the environment
    /// variable `ELBOLAB_MAX_MEMORY`, else ``machine``. The environment variable
    /// `ELBOLAB_REFUSE_ALLOCATIONS_ABOVE` (bytes) makes every probe above that size fail, to
    /// test the refusal of an allocation the system does not grant.
    public static func resolved(maxMemory: String?) throws -> MemoryBudget {
        var budget = machine
        let environment = ProcessInfo.processInfo.environment
        if let text = maxMemory ?? environment["ELBOLAB_MAX_MEMORY"] {
            let name = maxMemory != nil ? "--max-memory" : "ELBOLAB_MAX_MEMORY"
            guard let bytes = parseSize(text) else {
                throw InputError("\(name) \(String(reflecting: text)): expected a size in bytes, e.g. 500M, 8G or 1500000000")
            }
            budget.limit = bytes
            budget.source = "\(name) \(text)"
        }
        if let text = environment["ELBOLAB_REFUSE_ALLOCATIONS_ABOVE"], let above = parseSize(text) {
            budget.canAllocate = { $0 <= above && MemoryBudget.systemCanAllocate($0) }
        }
        return budget
    }

    /// `text` as bytes: a whole number with an optional suffix K, M, G or T (powers of 1024).
    public static func parseSize(_ text: String) -> Int? {
        var digits = text.trimmingCharacters(in: .whitespaces).uppercased()
        if digits.hasSuffix("B") { digits.removeLast() }
        var scale = 1
        if let last = digits.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][String(last)] {
            digits.removeLast()
            scale = 1 << (10 * power)
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let n = Int(digits), n > 0 else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : bytes
    }

    /// Refuses `estimate` when it exceeds the budget: one line naming the request, the
    /// estimate and what the machine has, then `hint`.
    public func check(_ estimate: MemoryEstimate, request: String, hint: String) throws {
        guard let total = estimate.total, total <= limit else {
            let need = estimate.total == nil ? "more than \(MemoryEstimate.format(Int.max)) of memory (the size overflows)" : "about \(estimate.shown) of memory"
            throw InputError("\(request): needs \(need), more than the \(MemoryEstimate.format(limit)) of \(source): \(hint)")
        }
    }

    /// Asks the system for `bytes` before a buffer that large is made, so that a refusal is an
    /// ``InputError`` rather than a trap.
    public func probe(bytes: Int, what: String) throws {
        guard canAllocate(bytes) else {
            throw InputError("\(what): the system refused to allocate \(MemoryEstimate.format(bytes)) (free memory, or use less data)")
        }
    }
}

/// What a request needs, by part (bytes), with arithmetic that cannot overflow unnoticed:
/// a part whose size overflows `Int` makes the total nil ("more than 9.2 EB").
public struct MemoryEstimate: Sendable {
    /// The parts (`data`, `per-point state`, …) and their bytes; nil when the size overflowed.
    public var parts: [(name: String, bytes: Int?)] = []

    public init() {}

    /// The process itself (code, libraries, the Swift runtime, BLAS threads): a fit of 50
    /// points peaks at 27 MB resident; counted in every fit.
    public static let runtime = 32 << 20

    /// Adds `name` of `count` doubles, `count` the product of `factors` (checked).
    public mutating func add(_ name: String, doubles factors: Int...) {
        parts.append((name, MemoryEstimate.product(factors + [MemoryLayout<Double>.stride])))
    }

    /// Adds `bytes` under `name`.
    public mutating func add(_ name: String, bytes: Int?) {
        parts.append((name, bytes))
    }

    /// Adds every part of `other`.
    public mutating func add(_ other: MemoryEstimate) {
        parts += other.parts
    }

    /// The product of non-negative `factors`, or nil when it overflows `Int`.
    public static func product(_ factors: [Int]) -> Int? {
        var p = 1
        for f in factors {
            let (next, overflow) = p.multipliedReportingOverflow(by: max(0, f))
            if overflow { return nil }
            p = next
        }
        return p
    }

    /// The sum of the parts, or nil when one overflowed or the sum does.
    public var total: Int? {
        var sum = 0
        for part in parts {
            guard let b = part.bytes else { return nil }
            let (next, overflow) = sum.addingReportingOverflow(b)
            if overflow { return nil }
            sum = next
        }
        return sum
    }

    /// `12 GB (data 8.0 GB, per-point state 4.0 GB)`; the parts below 1% of the total are left out.
    public var shown: String {
        guard let total else { return "more than \(MemoryEstimate.format(Int.max))" }
        let major = parts.filter { ($0.bytes ?? 0) * 100 >= total }.map { "\($0.name) \(MemoryEstimate.format($0.bytes ?? 0))" }
        return MemoryEstimate.format(total) + (major.count > 1 ? " (" + major.joined(separator: ", ") + ")" : "")
    }

    /// `bytes` in decimal units with three significant digits: `1.07 GB`, `24.0 TB`.
    public static func format(_ bytes: Int) -> String {
        let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"]
        var x = Double(bytes), k = 0
        while x >= 1000 && k < units.count - 1 { x /= 1000; k += 1 }
        if k == 0 { return "\(bytes) bytes" }
        return String(format: x < 10 ? "%.2f" : x < 100 ? "%.1f" : "%.0f", x) + " " + units[k]
    }
}
