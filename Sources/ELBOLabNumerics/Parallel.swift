import Dispatch

/// Splits `0..<count` into fixed blocks and runs `body` on each, on all cores.
///
/// The blocks depend on `count` and `blockSize` alone, never on the number of threads, and
/// `body` returns one partial result per block; the partials are combined in block order. So
/// the result is bit-identical however the blocks were scheduled.
public func blockedReduce<T>(count: Int, blockSize: Int = 2048, parallel: Bool = true,
                      _ body: (Range<Int>) -> T) -> [T] {
    let blocks = count == 0 ? 0 : (count + blockSize - 1) / blockSize
    if blocks <= 1 || !parallel || ParallelSettings.threads <= 1 {
        return (0..<blocks).map { body(($0 * blockSize)..<min(count, ($0 + 1) * blockSize)) }
    }
    let results = UnsafeMutableBufferPointer<T?>.allocate(capacity: blocks)
    results.initialize(repeating: nil)
    // Deinitialise before freeing: the partials are references, which would otherwise leak.
    defer { _ = results.deinitialize(); results.deallocate() }
    nonisolated(unsafe) let out = results
    withoutActuallyEscaping(body) { work in
        nonisolated(unsafe) let work = work
        DispatchQueue.concurrentPerform(iterations: blocks) { k in
            out[k] = work((k * blockSize)..<min(count, (k + 1) * blockSize))
        }
    }
    return results.map { $0! }
}

/// How many threads ELBOLab's own block loops may use (OpenBLAS itself stays single-threaded).
public enum ParallelSettings {
    nonisolated(unsafe) private static var _threads = 2
    /// Threads for block loops; 1 runs everything on the calling thread.
    public static var threads: Int {
        get { _threads }
        set { _threads = max(1, newValue) }
    }
}
