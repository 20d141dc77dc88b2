#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// `params.json`: `{"W": [[…] D rows of J], "b": […D], "noise_variance": s2}`.
public enum ParamsFile {
    /// The JSON of `model`.
    public static func json(_ model: LinearGaussianModel) -> JSON {
        .object([
            ("W", .array(model.loadings.nestedRows.map { .array($0.map { .number($0) }) })),
            ("b", .array(model.offset.map { .number($0) })),
            ("noise_variance", .number(model.noiseVariance)),
        ])
    }

    /// Reads a model from `path`. - Throws: ``/ELBOLabNumerics/InputError`` naming the field that is wrong.
    ///
    /// JSON's own types are kept apart (a number is never read from `true`, and `1` is never a
    /// boolean), so every number the writer emits, integers included, reads back.
    public static func read(path: String) throws -> LinearGaussianModel {
        try parse(try readFile(path, what: "parameters file"), path: path)
    }

    /// Reads a model from the contents of a parameters file; `path` names the file in messages.
    ///
    /// `StrictJSON`, not JSONSerialization: on Linux the latter rounds some numbers wrongly (it
    /// reads 0.30000000000000004 as 0.3000000000000001), so a written model would not read back.
    public static func parse(_ bytes: Data, path: String) throws -> LinearGaussianModel {
        let value = try StrictJSON.parse(bytes, path: path)
        guard case let .object(dict) = value else {
            throw InputError("\(path): must be a JSON object with W, b and noise_variance, got \(value.shown)")
        }
        guard case let .array(rowValues)? = dict["W"], !rowValues.isEmpty else {
            throw InputError("\(path): \"W\" must be a non-empty array of rows (D arrays of J numbers), got \(dict["W"]?.shown ?? "nothing")")
        }
        var rows: [[Double]] = []
        for (i, r) in rowValues.enumerated() {
            guard case let .array(row) = r, !row.isEmpty else {
                throw InputError("\(path): \"W\" row \(i + 1) must be a non-empty array of numbers, got \(r.shown)")
            }
            let values = try numbers(row, path: path, field: "\"W\" row \(i + 1)")
            if let first = rows.first, first.count != values.count {
                throw InputError("\(path): \"W\" row \(i + 1) has \(values.count) entries, row 1 has \(first.count) (W is D rows of J numbers)")
            }
            rows.append(values)
        }
        guard case let .array(bValues)? = dict["b"] else {
            throw InputError("\(path): \"b\" must be an array of D numbers, got \(dict["b"]?.shown ?? "nothing")")
        }
        let b = try numbers(bValues, path: path, field: "\"b\"")
        guard b.count == rows.count else {
            throw InputError("\(path): \"b\" has \(b.count) entries but \"W\" has \(rows.count) rows")
        }
        guard case let .number(s2)? = dict["noise_variance"], s2.isFinite, s2 > 0 else {
            throw InputError("\(path): \"noise_variance\" must be a positive number, got \(dict["noise_variance"]?.shown ?? "nothing")")
        }
        // 1/s2 and ‖W‖² enter every density: past these limits log p(y) would be NaN.
        guard s2 >= Double.leastNormalMagnitude else {
            throw InputError("\(path): \"noise_variance\" \(formatNumber(s2)) is too small (below \(Double.leastNormalMagnitude), 1/s2 overflows)")
        }
        guard rows.joined().reduce(0, { $0 + $1 * $1 }).isFinite else {
            throw InputError("\(path): \"W\" is too large: the sum of its squared entries overflows a double (rescale)")
        }
        return LinearGaussianModel(loadings: Matrix(rows), offset: b, noiseVariance: s2)
    }

    private static func numbers(_ xs: [SpecValue], path: String, field: String) throws -> [Double] {
        try xs.enumerated().map { k, x in
            guard case let .number(v) = x, v.isFinite else {
                throw InputError("\(path): \(field) entry \(k + 1) must be a finite number, got \(x.shown)")
            }
            return v
        }
    }
}

/// The bytes of the file at `path`, or an ``InputError`` saying why they cannot be read
/// (missing, a directory or a device, no permission), with `what` naming the file's role.
package func readFile(_ path: String, what: String) throws -> Data {
    try refuseNonFile(path, what: what)
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw InputError("\(path): cannot read the \(what): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw InputError("\(path): cannot read the \(what): \(String(cString: strerror(errno)))")
        }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}
