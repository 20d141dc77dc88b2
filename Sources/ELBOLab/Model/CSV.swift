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
        var info = stat()
        if stat(path, &info) != 0 {
            throw InputError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw InputError("\(path): is a directory, not a CSV file")
        }
        guard let file = fopen(path, "rb") else {
            throw InputError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }

        var values: [Double] = []
        // A regular file is counted first (a cheap pass), so the numbers get one buffer of the
        // right size: regrowth would hold the old and the new buffer at once.
        let lineBound = (info.st_mode & S_IFMT) == S_IFREG ? try countLines(file, path: path) : nil
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
            if !parsed { width = -2; continue }   // the header line: only the first line with content
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
            let quoted = bad.text.isEmpty ? "value" : "value \"\(shown)\""
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
        let d = Dataset(points: try CSV.read(path: path), name: path)
        if !d.columnVariances.allSatisfy({ $0.isFinite }) || !d.mean.allSatisfy({ $0.isFinite }) {
            throw InputError("\(path): the values are too large for their mean and variance to be finite (rescale the data)")
        }
        return d
    }
}
