#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to read a CSV file: the delimiter, the columns, and the memory the numbers may take.
public struct CSVOptions: Sendable {
    /// The field delimiter (an ASCII byte); nil detects it from the first line (tab, then
    /// semicolon, then comma, whichever appears outside quotes first in that order).
    public var delimiter: UInt8?
    /// The columns to read, in order; nil reads every column.
    public var columns: [CSVColumn]?
    /// The budget the numbers are checked against before their buffer is allocated.
    public var memory: MemoryBudget
    /// What the caller will need for N rows of D columns (the numbers included), checked
    /// against ``memory`` once the lines are counted, before the numbers are read; nil: the
    /// numbers alone.
    public var estimate: (@Sendable (_ rows: Int, _ columns: Int) -> MemoryEstimate)? = nil
    /// What the caller will do with the data, for the refusal message (`fit --strategy em`).
    public var request: String = ""

    public init(delimiter: UInt8? = nil, columns: [CSVColumn]? = nil, memory: MemoryBudget = .machine) {
        self.delimiter = delimiter
        self.columns = columns
        self.memory = memory
    }

    /// A delimiter as the user names it: `tab`, `comma`, `semicolon`, `space`, `pipe`, or one
    /// ASCII character that cannot be part of a number (`\t` is read as tab).
    public static func delimiter(named text: String) throws -> UInt8 {
        switch text.lowercased() {
        case "tab", "\\t", "\t": return 0x09
        case "comma", ",": return 0x2C
        case "semicolon", ";": return 0x3B
        case "space", " ": return 0x20
        case "pipe", "|": return 0x7C
        default:
            let bytes = Array(text.utf8)
            guard bytes.count == 1, let c = bytes.first, c >= 0x20, c < 0x7F,
                  !"0123456789.+-eE\"".utf8.contains(c) else {
                throw InputError("--delimiter \(JSON.quote(text)): expected one ASCII character that is not part of a number or a quote, or tab, comma, semicolon, space, pipe")
            }
            return c
        }
    }

    /// The name of `delimiter` in messages.
    public static func name(of delimiter: UInt8) -> String {
        switch delimiter {
        case 0x09: return "tab"
        case 0x2C: return "comma"
        case 0x3B: return "semicolon"
        case 0x20: return "space"
        case 0x7C: return "pipe"
        default: return JSON.quote(String(UnicodeScalar(delimiter)))
        }
    }
}

/// One item of a column selection (`--columns`): a 1-based index, a range of them, or a header name.
public enum CSVColumn: Sendable, Equatable {
    /// A column by its 1-based number.
    case index(Int)
    /// `first-last`, or `first-` up to the last column (last nil).
    case range(Int, Int?)
    /// A column by its name in the header line.
    case name(String)

    /// Reads `2-`, `1,3,5`, `2-4,x7` or `height,weight`: comma-separated items, each an index,
    /// a range `a-b` or `a-` (a number wins over a header name of the same spelling).
    public static func list(_ text: String) throws -> [CSVColumn] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.isEmpty, !items.contains(where: \.isEmpty) else {
            throw InputError("--columns \(JSON.quote(text)): expected comma-separated column names or 1-based numbers, e.g. 2- or 1,3-5 or height,weight")
        }
        return try items.map { item in
            if let i = Int(item) {
                guard i >= 1 else { throw InputError("--columns \(JSON.quote(text)): column numbers start at 1, got \(i)") }
                return .index(i)
            }
            let ends = item.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            if ends.count == 2, let a = Int(ends[0]), a >= 1 {
                if ends[1].isEmpty || ends[1] == "…" { return .range(a, nil) }
                if let b = Int(ends[1]) {
                    guard b >= a else { throw InputError("--columns \(JSON.quote(text)): the range \(JSON.quote(item)) is empty") }
                    return .range(a, b)
                }
            }
            return .name(item)
        }
    }
}

/// A table read from a CSV file: the numbers, and how they were read.
public struct NumericCSV: Sendable {
    /// The numbers, `rows × selected columns`.
    public var matrix: Matrix
    /// The header's names of the selected columns, when the file has a header.
    public var header: [String]?
    /// The delimiter the fields were split at, and whether it was detected.
    public var delimiter: UInt8
    public var delimiterDetected: Bool
    /// The selected columns, 0-based, in the order read.
    public var columns: [Int]
    /// Columns in the file.
    public var width: Int

    /// Hands over the numbers, leaving an empty matrix, so that the caller holds their only
    /// reference (a ``Dataset`` built from a shared matrix would copy it).
    public mutating func takeMatrix() -> Matrix {
        let m = matrix
        matrix = Matrix(rows: 0, cols: 0)
        return m
    }

    /// How the file was read, for the progress output: `tab-delimited (detected from the first
    /// line), a header, columns 2–6 of 6`.
    public var summary: String {
        var parts = ["\(CSVOptions.name(of: delimiter))-delimited" + (delimiterDetected ? " (detected from the first line)" : "")]
        parts.append(header == nil ? "no header" : "a header")
        if columns != Array(0..<width) {
            parts.append("columns " + columns.map { String($0 + 1) }.joined(separator: ",") + " of \(width)")
        }
        return parts.joined(separator: ", ")
    }
}

/// Reads and writes numeric CSV files.
///
/// Accepted: numbers separated by one delimiter (comma, tab, semicolon, …; detected from the
/// first line unless given), fields quoted as RFC 4180 says (`"1.5"`, `"a ""b"""` in a header),
/// LF or CRLF line ends, a UTF-8 byte-order mark, one non-numeric header line, blank lines at
/// the end. A first column that looks like a row index (an empty header name over 0…N−1 or
/// 1…N, as pandas' and R's writers add) is refused rather than fitted as data. Everything else
/// is an ``/ELBOLabNumerics/InputError`` that names the file, the line, the column and what is wrong. The file
/// is read line by line into one buffer of the exact size, counted first, so the text is never
/// held whole next to the numbers.
public enum CSV {
    /// Reads the numeric table in `path` as an `N × D` matrix.
    public static func read(path: String) throws -> Matrix {
        try read(path: path, options: CSVOptions()).matrix
    }

    /// Reads the table in `path` as `options` say.
    public static func read(path: String, options: CSVOptions) throws -> NumericCSV {
        let regular = try refuseNonFile(path, what: "CSV file")
        guard let file = fopen(path, "rb") else {
            throw InputError("\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        return try read(file, path: path, countable: regular, options: options)
    }

    /// Reads the numeric table in `bytes`, the contents of a CSV file, exactly as ``read(path:)``
    /// reads the file; `name` stands for the file in messages.
    public static func read(bytes: [UInt8], name: String) throws -> Matrix {
        try read(bytes: bytes, name: name, options: CSVOptions()).matrix
    }

    /// Reads the table in `bytes` as `options` say; `name` stands for the file in messages.
    public static func read(bytes: [UInt8], name: String, options: CSVOptions) throws -> NumericCSV {
        try bytes.withUnsafeBufferPointer { buffer in
            // fmemopen serves the bytes in place to the same getline loop; read-only, it never writes them.
            guard let file = fmemopen(UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count, "rb") else {
                throw InputError("\(name): cannot open: \(String(cString: strerror(errno)))")
            }
            defer { fclose(file) }
            return try read(file, path: name, countable: true, options: options)
        }
    }

    /// One field of a line: its text is `p[a..<b]` (spaces and quotes removed).
    private struct Field {
        var a: Int
        var b: Int
        var quoted: Bool
        /// A quoted field with `""` inside: its text needs unescaping, and it is not a number.
        var doubledQuote: Bool
    }

    private static func read(_ file: UnsafeMutablePointer<FILE>, path: String, countable: Bool,
                             options: CSVOptions) throws -> NumericCSV {
        var values: [Double] = []
        // A regular file (or bytes in memory) is counted first, a cheap pass, so the numbers get
        // one buffer of the right size: regrowth would hold the old and the new buffer at once.
        let lineBound = countable ? try countLines(file, path: path) : nil
        var width = -1          // fields in a row; -1 before the first line with content
        var selected: [Int] = []
        var header: [String]? = nil
        var delimiter = options.delimiter ?? 0x2C
        var rows = 0
        var lineNumber = 0
        var blankSince = 0   // first of a run of blank lines, 0 when the last line had data
        var linePointer: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(linePointer) }
        var fields: [Field] = []
        var row: [Double] = []

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
            let first = width < 0
            if first && options.delimiter == nil { delimiter = detectDelimiter(raw, start, end) }
            try split(raw, start, end, delimiter: delimiter, into: &fields, path: path, line: lineNumber)
            if first {
                width = fields.count
                if isHeader(raw, fields) {
                    guard isText(raw, start, end) else {
                        throw InputError("\(path):\(lineNumber): is not text (control characters or invalid UTF-8): this is not a text CSV file")
                    }
                    header = fields.map { text(raw, $0) }
                }
                selected = try resolve(options.columns, header: header, width: width, path: path)
                // The numbers' one buffer: checked against the budget and probed before it is made.
                if let lineBound {
                    let rowBound = max(1, lineBound - lineNumber + (header == nil ? 1 : 0))
                    let count = MemoryEstimate.product([selected.count, rowBound]) ?? Int.max
                    var estimate = MemoryEstimate()
                    if let whole = options.estimate { estimate = whole(rowBound, selected.count) } else { estimate.add("data", doubles: count) }
                    let request = options.request.isEmpty ? "" : " for \(options.request)"
                    try options.memory.check(estimate, request: "\(path): up to \(rowBound) rows × \(selected.count) columns\(request)",
                                             hint: "use fewer rows or columns (--columns), or raise --max-memory")
                    try options.memory.probe(bytes: MemoryEstimate.product([count, 8]) ?? Int.max, what: "\(path): \(rowBound) rows × \(selected.count) columns")
                    values.reserveCapacity(count)
                }
                row.reserveCapacity(selected.count)
                if header != nil { continue }
            } else if fields.count != width {
                // A bad value says more than the count: report it first, as for a full row.
                try parseRow(raw, fields, selected.filter { $0 < fields.count }, path: path, line: lineNumber, delimiter: delimiter, into: &row)
                throw InputError("\(path):\(lineNumber): has \(fields.count) column(s), earlier rows have \(width)" +
                                 (fields.count == 1 && width > 1 ? " (is the delimiter \(CSVOptions.name(of: delimiter))? see --delimiter)" : ""))
            }
            row.removeAll(keepingCapacity: true)
            try parseRow(raw, fields, selected, path: path, line: lineNumber, delimiter: delimiter, into: &row)
            values.append(contentsOf: row)
            rows += 1
        }
        if rows == 0 {
            throw InputError("\(path): contains no data rows")
        }
        let names = header.map { h in selected.map { h[$0] } }
        if options.columns == nil {   // a column the user selected is taken as data
            try refuseRowIndex(values, rows: rows, width: selected.count, names: names, path: path)
        }
        return NumericCSV(matrix: Matrix(rows: rows, cols: selected.count, storage: values), header: names,
                        delimiter: delimiter, delimiterDetected: options.delimiter == nil, columns: selected, width: width)
    }

    /// The delimiter of a file whose first line is `p[start..<end]`: of tab, semicolon and
    /// comma, the one found most often outside quotes (ties in that order); comma if none is.
    private static func detectDelimiter(_ p: UnsafeMutablePointer<CChar>, _ start: Int, _ end: Int) -> UInt8 {
        var counts: [UInt8: Int] = [0x09: 0, 0x3B: 0, 0x2C: 0]
        var quoted = false
        for i in start..<end {
            let c = UInt8(bitPattern: p[i])
            if c == 0x22 { quoted.toggle() } else if !quoted, let n = counts[c] { counts[c] = n + 1 }
        }
        var best: UInt8 = 0x2C, most = 0
        for c: UInt8 in [0x09, 0x3B, 0x2C] where counts[c, default: 0] > most { best = c; most = counts[c, default: 0] }
        return best
    }

    /// Splits `p[start..<end]` into fields at `delimiter` as RFC 4180 says: a field is either
    /// bare (no quote inside) or wholly quoted, with `""` standing for a quote; spaces around a
    /// field are dropped (tabs too unless they delimit). A quoted field must end on its line.
    private static func split(_ p: UnsafeMutablePointer<CChar>, _ start: Int, _ end: Int, delimiter: UInt8,
                              into fields: inout [Field], path: String, line: Int) throws {
        fields.removeAll(keepingCapacity: true)
        let d = CChar(bitPattern: delimiter)
        func isSpace(_ c: CChar) -> Bool { (c == 0x20 || c == 0x09) && c != d }
        var i = start
        while true {
            while i < end && isSpace(p[i]) { i += 1 }
            let column = fields.count + 1
            if i < end && p[i] == 0x22 {
                let a = i + 1
                var j = a, doubled = false, close = -1
                while j < end {
                    if p[j] == 0x22 {
                        if j + 1 < end && p[j + 1] == 0x22 { doubled = true; j += 2; continue }
                        close = j
                        break
                    }
                    j += 1
                }
                guard close >= 0 else {
                    throw InputError("\(path):\(line):\(column): a quoted field is not closed on its line (line breaks inside quotes are not supported; close the quote)")
                }
                i = close + 1
                while i < end && isSpace(p[i]) { i += 1 }
                if i < end && p[i] != d {
                    throw InputError("\(path):\(line):\(column): text after the closing quote of a quoted field (quote the whole field, with \"\" for a quote inside)")
                }
                fields.append(Field(a: a, b: close, quoted: true, doubledQuote: doubled))
            } else {
                let a = i
                while i < end && p[i] != d {
                    if p[i] == 0x22 {
                        throw InputError("\(path):\(line):\(column): a quote inside an unquoted field (quote the whole field, with \"\" for a quote inside)")
                    }
                    i += 1
                }
                var b = i
                while b > a && isSpace(p[b - 1]) { b -= 1 }
                fields.append(Field(a: a, b: b, quoted: false, doubledQuote: false))
            }
            if i >= end { break }
            i += 1   // the delimiter
        }
    }

    /// The first line is a header when none of its fields is a number, or when it is the one
    /// pandas writes for unnamed columns with its row index: an empty field, then 0, 1, 2, ….
    private static func isHeader(_ p: UnsafeMutablePointer<CChar>, _ fields: [Field]) -> Bool {
        if fields.count >= 2, fields[0].a == fields[0].b,
           fields.dropFirst().enumerated().allSatisfy({ k, f in
               if case let .number(x) = number(p, f.a, f.b) { return x == Double(k) && !f.doubledQuote }
               return false
           }) {
            return true
        }
        return !fields.contains { f in
            if f.doubledQuote || f.a == f.b { return false }
            if case .notNumber = number(p, f.a, f.b) { return false }
            return true
        }
    }

    /// The column numbers (0-based) `columns` selects in a file of `width` columns.
    private static func resolve(_ columns: [CSVColumn]?, header: [String]?, width: Int, path: String) throws -> [Int] {
        guard let columns else { return Array(0..<width) }
        var out: [Int] = []
        for c in columns {
            switch c {
            case let .index(i):
                guard i <= width else { throw InputError("\(path): --columns \(i): the file has \(width) column(s)") }
                out.append(i - 1)
            case let .range(a, b):
                let last = b ?? width
                guard a <= width, last <= width else {
                    throw InputError("\(path): --columns \(a)-\(b.map(String.init) ?? ""): the file has \(width) column(s)")
                }
                out += Array((a - 1)..<last)
            case let .name(n):
                guard let header else {
                    throw InputError("\(path): --columns \(JSON.quote(n)): the file has no header line to find the name in (give 1-based column numbers)")
                }
                let hits = header.indices.filter { header[$0] == n }
                guard hits.count == 1 else {
                    let names = header.prefix(12).map { JSON.quote($0) }.joined(separator: ", ") + (header.count > 12 ? ", …" : "")
                    throw InputError("\(path): --columns \(JSON.quote(n)): " + (hits.isEmpty ? "no column has this name (the header has \(names))" : "\(hits.count) columns have this name (give its number)"))
                }
                out.append(hits[0])
            }
        }
        if let repeated = out.first(where: { c in out.filter { $0 == c }.count > 1 }) {
            throw InputError("\(path): --columns selects column \(repeated + 1) more than once")
        }
        return out
    }

    private enum Parsed {
        case number(Double)
        case overflow
        case notNumber
    }

    private static func number(_ p: UnsafeMutablePointer<CChar>, _ a: Int, _ b: Int) -> Parsed {
        let saved = p[b]
        p[b] = 0   // terminate the field for strtod; getline's buffer holds at least end + 1 bytes
        defer { p[b] = saved }
        var stop: UnsafeMutablePointer<CChar>? = nil
        errno = 0
        let value = strtod(p + a, &stop)
        let consumed = stop.map { $0 - (p + a) } ?? 0
        guard consumed == b - a, isPlainNumber(p, a, b) else { return .notNumber }
        if (errno == ERANGE && abs(value) > 1) || !value.isFinite { return .overflow }
        return .number(value)
    }

    /// The spellings of a missing value in the files R, pandas and spreadsheets write.
    private static let missing: Set<String> = ["NA", "N/A", "NaN", "nan", "NAN", "na", "n/a", "null", "NULL", "None", "#N/A", "."]

    /// Parses the selected fields of one data line into `row`.
    private static func parseRow(_ p: UnsafeMutablePointer<CChar>, _ fields: [Field], _ selected: [Int], path: String, line: Int,
                                 delimiter: UInt8, into row: inout [Double]) throws {
        for k in selected {
            let f = fields[k]
            var where_: String { "\(path):\(line):\(k + 1)" }   // only for a message: built per field, it would cost half the read
            if f.a == f.b {
                throw InputError("\(where_): value is empty: a missing value; every value is needed: drop the rows with missing values (pandas dropna(), R na.omit) or fill them in")
            }
            switch f.doubledQuote ? .notNumber : number(p, f.a, f.b) {
            case let .number(x):
                row.append(x)
            case .overflow:
                throw InputError("\(where_): value \(JSON.quote(shown(text(p, f)))) overflows a double (magnitude above 1.8e308)")
            case .notNumber:
                let t = text(p, f)
                if missing.contains(t) {
                    throw InputError("\(where_): value \(JSON.quote(t)) is a missing value; every value is needed: drop the rows with missing values (pandas dropna(), R na.omit) or fill them in")
                }
                var hint = ""
                if delimiter == 0x2C && t.contains(";") {
                    hint = " (semicolon-delimited? see --delimiter)"
                } else if delimiter == 0x2C && t.contains("\t") {
                    hint = " (tab-delimited? see --delimiter)"
                } else if delimiter != 0x2C, t.contains(","), t.filter({ $0 != "," && $0 != "." && !$0.isNumber && $0 != "-" && $0 != "+" && $0 != "e" && $0 != "E" }).isEmpty {
                    hint = " (a decimal comma? write decimal points)"
                } else if t.lowercased().contains("inf") || t.lowercased().hasPrefix("0x") {
                    hint = " (only finite decimal numbers are read)"
                }
                throw InputError("\(where_): value \(JSON.quote(shown(t))) is not a number\(hint)")
            }
        }
    }

    /// A pandas or R row index (an empty header name over 0…N−1 or 1…N) in the first selected
    /// column is refused: fitted as data it would silently distort the model.
    private static func refuseRowIndex(_ values: [Double], rows: Int, width: Int, names: [String]?, path: String) throws {
        guard let names, let first = names.first, first.isEmpty, width > 1, rows >= 2 else { return }
        let start = values[0]
        guard start == 0 || start == 1 else { return }
        for i in 0..<rows where values[i * width] != start + Double(i) { return }
        throw InputError("\(path): column 1 has an empty header name and holds \(start == 0 ? "0…N−1" : "1…N"): it is a row index, not data; drop it with --columns 2- (or write the file with pandas' to_csv(index=False) or R's write.csv(row.names = FALSE))")
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

    /// The text of a field, quotes unescaped.
    private static func text(_ p: UnsafeMutablePointer<CChar>, _ f: Field) -> String {
        let bytes = UnsafeBufferPointer(start: UnsafeRawPointer(p + f.a).assumingMemoryBound(to: UInt8.self), count: f.b - f.a)
        let s = String(decoding: bytes, as: UTF8.self)
        return f.doubledQuote ? s.replacingOccurrences(of: "\"\"", with: "\"") : s
    }

    /// At most 40 characters of `t`, for messages.
    private static func shown(_ t: String) -> String {
        t.count > 40 ? String(t.prefix(40)) + "…" : t
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

    /// Loads the CSV file at `path` as `options` say; also returns how it was read (its matrix
    /// handed over to the data set, see ``NumericCSV/summary``).
    public static func load(csv path: String, options: CSVOptions) throws -> (data: Dataset, read: NumericCSV) {
        var table = try CSV.read(path: path, options: options)
        let data = try checkedFinite(Dataset(points: table.takeMatrix(), name: path))
        return (data, table)
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
