#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ELBOLab

/// The function libFuzzer calls with each input.
public typealias FuzzTest = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

// libFuzzer's entry for programs that keep their own main: SwiftPM renames an executable's
// main and links it in place of libFuzzer's, so each target starts the fuzzer itself.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ test: FuzzTest
) -> CInt

/// Runs libFuzzer on `test` with the command line's flags (a corpus folder, `-max_total_time`,
/// `-merge=1`, …) and exits with its status.
public func runFuzzer(_ test: FuzzTest) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, test))
}

/// The input's bytes.
public func fuzzBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    guard let data, size > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: size))
}

/// The contract of every reader, for any input: it returns a value, or throws an ``InputError``
/// whose message is one non-empty line. Anything else stops the fuzzer as a finding; a trap
/// inside `read` does so by itself.
public func expectValueOrInputError<T>(_ read: () throws -> T) -> T? {
    do {
        return try read()
    } catch let error as InputError {
        if error.message.isEmpty || error.message.contains(where: \.isNewline) {
            fatalError("an InputError that is not one line: \(String(reflecting: error.message))")
        }
        return nil
    } catch {
        fatalError("an error that is not an InputError: \(String(reflecting: error))")
    }
}
