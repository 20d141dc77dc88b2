#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes numeric CSV files.
///
/// Accepted: comma-separated numbers, LF or CRLF line ends, a UTF-8 byte-order mark, one
/// non-numeric header line, blank lines at the end. Everything else is an ``InputError`` that
/// names the file, the line, the column and what is wrong. The file is read line by line, so
/// the text is never held whole next to the numbers.
public enum CSV {
    /// Reads the numeric table in `path` as an `N × D` matrix.
    public static func read(path: String) throws -> Matrix {
        let regular = try refuseNonFile(path, what: "CSV file")
        guard let file = fopen(path, "rb") else {
            throw InputError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        return try read(file, path: path, countable: regular)
    }

    /// Reads the numeric table in `bytes`, the contents of a CSV file, exactly as ``read(path:)``
    /// reads the file; `name` stands for the file in messages.
    public static func read(bytes: [UInt8], name: String) throws -> Matrix {
        try bytes.withUnsafeBufferPointer { buffer in
            // fmemopen serves the bytes in place to the same getline loop; read-only, it never writes them.
            guard let file = fmemopen(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count, "rb") else {
                throw InputError("\(name): cannot open: \(String(cString: strerror(errno)))")
            }
            defer { fclose(file) }
            return try read(file, path: name, countable: true)
        }
    }

    private static func read(_ file: UnsafeMutablePointer<FILE>, path: String, countable: Bool) throws -> Matrix {
        var values: [Double] = []
        // A regular file (or bytes in memory) is counted first, a cheap pass, so the numbers get
        // one buffer of the right size: regrowth would hold the old and the new buffer at once.
        let lineBound = countable ? try countLines(file, path: path) : nil
        var width = -1
        var rows = 0
        var lineNumber = 0
        var blankSince = 0   // first of a run of blank lines, 0 when the last line had data
        var linePointer: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(linePointer) }
        var fields: [Double] = []

        while true {
            errno = 0
            let length = getline(&linePointer, &capacity, file)
            if length < 0 {
                if ferror(file) != 0 {
                    throw InputError("\(path): read error after line \(lineNumber): \(String(cString: strerror(errno)))")
                }
                break
            }
            lineNumber += 1
            guard let raw = linePointer else { break }
            var start = 0
            var end = length
            raw.withMemoryRebound(to: UInt8.self, capacity: length) { bytes in
                if lineNumber == 1, length >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { start = 3 }
                while end > start, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
            }
            if memchr(raw + start, 0, end - start) != nil {
                throw InputError("\(path):\(lineNumber): contains a NUL byte: this is not a text CSV file")
            }
            if isBlank(raw, start, end) {
                if blankSince == 0 { blankSince = lineNumber }
                continue
            }
            if blankSince != 0 && rows > 0 {
                throw InputError("\(path):\(blankSince): blank line inside the data (remove it)")
            }
            blankSince = 0
            fields.removeAll(keepingCapacity: true)
            let parsed = try parseLine(raw, start, end, path: path, line: lineNumber, into: &fields,
                                       headerAllowed: rows == 0 && width == -1)
            if !parsed {   // the header line: only the first line with content
                guard isText(raw, start, end) else {
                    throw InputError("\(path):\(lineNumber): is not text (control characters or invalid UTF-8): this is not a text CSV file")
                }
                width = -2
                continue
            }
            if width < 0 {
                width = fields.count
                if let lineBound { values.reserveCapacity(width * max(1, lineBound - lineNumber + 1)) }
            } else if fields.count != width {
                throw InputError("\(path):\(lineNumber): has \(fields.count) column(s), earlier rows have \(width)")
            }
            values.append(contentsOf: fields)
            rows += 1
        }
        if rows == 0 {
            throw InputError("\(path): contains no data rows")
        }
        return Matrix(rows: rows, cols: width, storage: values)
    }

    /// Valid UTF-8 without control characters other than tab.
    private static func isText(_ p: UnsafeMutablePointer<CChar>, _ start: Int, _ end: Int) -> Bool {
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(p + start).assumingMemoryBound(to: UInt8.self), count: end - start)
        guard let line = String(validating: bytes, as: UTF8.self) else { return false }
        return !line.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }
    }

    /// The number of lines in `file` (an upper bound on its rows), leaving it rewound.
    private static func countLines(_ file: UnsafeMutablePointer<FILE>, path: String) throws -> Int {
        let size = 1 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var lines = 0
        var last: UInt8 = 0x0A
        while true {
            let got = fread(buffer, 1, size, file)
            if got == 0 { break }
            var p = buffer
            let end = buffer + got
            while let hit = memchr(p, 0x0A, end - p) {
                lines += 1
                p = UnsafeMutableRawPointer(hit) + 1
            }
            last = buffer.load(fromByteOffset: got - 1, as: UInt8.self)
        }
        if ferror(file) != 0 {
            throw InputError("\(path): read error: \(String(cString: strerror(errno)))")
        }
        rewind(file)
        return last == 0x0A ? lines : lines + 1
    }

    private static func isBlank(_ p: UnsafeMutablePointer<CChar>, _ start: Int, _ end: Int) -> Bool {
        var i = start
        while i < end {
            let c = p[i]
            if c != 0x20 && c != 0x09 { return false }
            i += 1
        }
        return true
    }

    /// Parses one line into `fields`. Returns false when the line is a header (no field is a number).
    private static func parseLine(_ p: UnsafeMutablePointer<CChar>, _ start: Int, _ end: Int, path: String, line: Int,
                                  into fields: inout [Double], headerAllowed: Bool) throws -> Bool {
        p[end] = 0   // terminate the line for strtod; getline's buffer holds at least end + 1 bytes
        var column = 0
        var fieldStart = start
        var firstBad: (column: Int, text: String, why: String)? = nil
        var numbers = 0
        while true {
            var fieldEnd = fieldStart
            while fieldEnd < end && p[fieldEnd] != 0x2C { fieldEnd += 1 }
            column += 1
            // Trim spaces and tabs on both sides.
            var a = fieldStart, b = fieldEnd
            while a < b && (p[a] == 0x20 || p[a] == 0x09) { a += 1 }
            while b > a && (p[b - 1] == 0x20 || p[b - 1] == 0x09) { b -= 1 }
            let saved = p[b]
            p[b] = 0
            var stop: UnsafeMutablePointer<CChar>? = nil
            errno = 0
            let value = strtod(p + a, &stop)
            let consumed = stop.map { $0 - (p + a) } ?? 0
            let overflow = errno == ERANGE && abs(value) > 1
            p[b] = saved
            if a == b {
                if firstBad == nil { firstBad = (column, "", "is empty") }
            } else if consumed != b - a || !isPlainNumber(p, a, b) {
                if firstBad == nil { firstBad = (column, text(p, a, b), "is not a number") }
            } else if overflow || !value.isFinite {
                numbers += 1
                if firstBad == nil {
                    firstBad = (column, text(p, a, b), overflow ? "overflows a double (magnitude above 1.8e308)" : "is not finite")
                }
            } else {
                numbers += 1
                fields.append(value)
            }
            if fieldEnd >= end { break }
            fieldStart = fieldEnd + 1
        }
        if let bad = firstBad {
            if headerAllowed && numbers == 0 { return false }
            let shown = bad.text.count > 40 ? String(bad.text.prefix(40)) + "…" : bad.text
            let quoted = bad.text.isEmpty ? "value" : "value \(JSON.quote(shown))"   // escaped: one line whatever the bytes
            throw InputError("\(path):\(line):\(bad.column): \(quoted) \(bad.why)")
        }
        return true
    }

    /// strtod also reads "inf", "nan" and hexadecimal; a CSV number is decimal only.
    private static func isPlainNumber(_ p: UnsafeMutablePointer<CChar>, _ a: Int, _ b: Int) -> Bool {
        for i in a..<b {
            switch UInt8(bitPattern: p[i]) {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E"),
                 UInt8(ascii: "+"), UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return true
    }

    private static func text(_ p: UnsafeMutablePointer<CChar>, _ a: Int, _ b: Int) -> String {
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(p + a).assumingMemoryBound(to: UInt8.self), count: min(b - a, 200))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The CSV text of `matrix`, one row per line, each number in its shortest exact form.
    public static func text(of matrix: Matrix, header: [String]? = nil) -> String {
        var out = ""
        out.reserveCapacity(matrix.rows * matrix.cols * 20)
        if let header { out += header.joined(separator: ",") + "\n" }
        for i in 0..<matrix.rows {
            for j in 0..<matrix.cols {
                if j > 0 { out += "," }
                out += String(matrix[i, j])
            }
            out += "\n"
        }
        return out
    }
}

extension Dataset {
    /// Loads a numeric CSV file (see ``CSV``) as a data set.
    public static func load(csv path: String) throws -> Dataset {
        try checkedFinite(Dataset(points: try CSV.read(path: path), name: path))
    }

    /// Loads the contents of a CSV file (see ``CSV/read(bytes:name:)``) as a data set named `name`.
    public static func load(csvBytes bytes: [UInt8], name: String) throws -> Dataset {
        try checkedFinite(Dataset(points: try CSV.read(bytes: bytes, name: name), name: name))
    }

    private static func checkedFinite(_ d: Dataset) throws -> Dataset {
        let variances = d.columnVariances
        if !variances.allSatisfy({ $0.isFinite }) || !d.mean.allSatisfy({ $0.isFinite }) {
            // Name the first column at fault.
            let column = (0..<d.dimension).first { !d.mean[$0].isFinite || !variances[$0].isFinite }
            let which = column.map { "column \($0 + 1): " } ?? ""
            throw InputError("\(d.name): \(which)the values are too large for their mean and variance to be finite (rescale the data)")
        }
        return d
    }
}

/// Throws an ``InputError`` when `path` is missing, a directory or a device (reading
/// `/dev/zero` as a text file would never end); otherwise says whether it is a regular file.
@discardableResult
func refuseNonFile(_ path: String, what: String) throws -> Bool {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw InputError("\(path): cannot open the \(what): \(String(cString: strerror(errno)))")
    }
    switch info.st_mode & S_IFMT {
    case S_IFDIR: throw InputError("\(path): is a directory, not a \(what)")
    case S_IFCHR, S_IFBLK: throw InputError("\(path): is a device, not a \(what)")
    default: return (info.st_mode & S_IFMT) == S_IFREG
    }
}
