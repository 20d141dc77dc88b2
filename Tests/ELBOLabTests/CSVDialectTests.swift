import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// The CSV files pandas, R and spreadsheets write (issue 15): RFC 4180 quoting, other
// delimiters, column selection; a row-index column and missing values refused with a hint.

private let table = Matrix([[1.5, -2, 3e-3], [4, 5.25, -6], [7, 8, 9.125], [-0.5, 11, 12]])

/// The numbers of `table` as text, one row per line, fields joined by `separator`, each
/// passed through `field`.
private func rows(_ m: Matrix = table, separator: String = ",", field: (String) -> String = { $0 }) -> String {
    (0..<m.rows).map { i in (0..<m.cols).map { field(String(m[i, $0])) }.joined(separator: separator) }.joined(separator: "\n") + "\n"
}

private func read(_ text: String, _ options: CSVOptions = CSVOptions()) throws -> NumericCSV {
    try CSV.read(bytes: Array(text.utf8), name: "t.csv", options: options)
}

private func refusal(_ text: String, _ options: CSVOptions = CSVOptions()) -> String {
    do { _ = try read(text, options); return "" } catch let e as InputError { return e.message } catch { return "\(error)" }
}

@Suite("CSV dialects")
struct CSVDialectTests {
    @Test("quoted numbers and quoted header names with doubled quotes read as the bare ones")
    func quoting() throws {
        let quoted = try read("\"a \"\"x\"\"\", \"b,c\" ,\"\"\n" + rows { "\"\($0)\"" }, CSVOptions(columns: [.range(1, nil)]))
        #expect(quoted.matrix == table)
        #expect(quoted.header == ["a \"x\"", "b,c", ""])
        #expect(try read(rows { " \"\($0)\" " }).matrix == table)
    }

    @Test("tab and semicolon are detected from the first line and named; a given delimiter is used as given")
    func delimiters() throws {
        let tab = try read("a\tb\tc\n" + rows(separator: "\t"))
        #expect(tab.matrix == table && tab.delimiter == 0x09 && tab.delimiterDetected)
        #expect(tab.summary == "tab-delimited (detected from the first line), a header")
        let semicolon = try read(rows(separator: ";"))
        #expect(semicolon.matrix == table && semicolon.delimiter == 0x3B)
        #expect(try read(rows()).summary == "comma-delimited (detected from the first line), no header")
        let piped = try read(rows(separator: "|"), CSVOptions(delimiter: try CSVOptions.delimiter(named: "pipe")))
        #expect(piped.matrix == table && !piped.delimiterDetected && piped.summary.hasPrefix("pipe-delimited, "))
        // A tab file read with the comma: one field per line, and the message points at --delimiter.
        #expect(refusal(rows(separator: "\t"), CSVOptions(delimiter: 0x2C)).contains("is not a number"))
        #expect(refusal("1,2,3\n4\t5\t6\n") == "t.csv:2:1: value \"4\\t5\\t6\" is not a number (tab-delimited? see --delimiter)")
        #expect(refusal("1,2,3\n4\n") == "t.csv:2: has 1 column(s), earlier rows have 3 (is the delimiter comma? see --delimiter)")
        #expect(refusal("a,b,c\n1;2;3\n").hasSuffix("(semicolon-delimited? see --delimiter)"))
        // Most frequent outside quotes wins: a tab among commas is space around a number.
        #expect(try read(" 1 , 2.5,\t-3\n").matrix == Matrix([[1, 2.5, -3]]))
        #expect(refusal("1;2\n3,5;4\n").contains("(a decimal comma? write decimal points)"))
        #expect(throws: InputError.self) { try CSVOptions.delimiter(named: "ab") }
        #expect(throws: InputError.self) { try CSVOptions.delimiter(named: "-") }
        #expect(try CSVOptions.delimiter(named: "\\t") == 0x09 && (try CSVOptions.delimiter(named: "semicolon")) == 0x3B)
    }

    @Test("--columns by header name, number and range, in the order given")
    func columns() throws {
        let text = "id,species,x,y,z\n" + (0..<table.rows).map { i in
            "r\(i),\"Iris setosa\"," + (0..<3).map { String(table[i, $0]) }.joined(separator: ",") }.joined(separator: "\n") + "\n"
        #expect(try read(text, CSVOptions(columns: try CSVColumn.list("3-"))).matrix == table)
        #expect(try read(text, CSVOptions(columns: try CSVColumn.list("x, y,5"))).matrix == table)
        let swapped = try read(text, CSVOptions(columns: try CSVColumn.list("z,x")))
        #expect(swapped.matrix == Matrix((0..<table.rows).map { [table[$0, 2], table[$0, 0]] }))
        #expect(swapped.header == ["z", "x"] && swapped.summary.hasSuffix("columns 5,3 of 5"))
        #expect(refusal(text).contains("t.csv:2:1: value \"r0\" is not a number"))
        #expect(refusal(text, CSVOptions(columns: [.name("w")])) == "t.csv: --columns \"w\": no column has this name (the header has \"id\", \"species\", \"x\", \"y\", \"z\")")
        #expect(refusal(text, CSVOptions(columns: [.range(3, 6)])).contains("the file has 5 column(s)"))
        #expect(refusal(text, CSVOptions(columns: [.index(3), .name("x")])).contains("selects column 3 more than once"))
        #expect(refusal(rows(), CSVOptions(columns: [.name("x")])).contains("has no header line"))
        #expect(try CSVColumn.list("2-…") == [.range(2, nil)])
        #expect(throws: InputError.self) { try CSVColumn.list("0") }
        #expect(throws: InputError.self) { try CSVColumn.list("1,,2") }
        #expect(throws: InputError.self) { try CSVColumn.list("4-2") }
    }

    @Test("a row index as pandas and R write it is refused with the way to drop it; dropped, the data read")
    func rowIndex() throws {
        let pandas = ",a,b,c\n" + (0..<table.rows).map { i in "\(i)," + (0..<3).map { j in String(table[i, j]) }.joined(separator: ",") }.joined(separator: "\n") + "\n"
        let r = "\"\",\"a\",\"b\",\"c\"\n" + (0..<table.rows).map { i in "\"\(i + 1)\"," + (0..<3).map { j in String(table[i, j]) }.joined(separator: ",") }.joined(separator: "\n") + "\n"
        #expect(refusal(pandas) == "t.csv: column 1 has an empty header name and holds 0…N−1: it is a row index, not data; drop it with --columns 2- (or write the file with pandas' to_csv(index=False) or R's write.csv(row.names = FALSE))")
        #expect(refusal(r).contains("holds 1…N: it is a row index"))
        #expect(try read(pandas, CSVOptions(columns: [.range(2, nil)])).matrix == table)
        #expect(try read(r, CSVOptions(columns: [.range(2, nil)])).matrix == table)
        // pandas' default for a frame made from an array: unnamed columns are numbered 0, 1, … in the header.
        let numbered = ",0,1,2\n" + pandas.split(separator: "\n").dropFirst().joined(separator: "\n") + "\n"
        #expect(refusal(numbered).contains("holds 0…N−1: it is a row index"))
        let dropped = try read(numbered, CSVOptions(columns: [.range(2, nil)]))
        #expect(dropped.matrix == table && dropped.header == ["0", "1", "2"])
        // A named counter, or an empty name over other values, is data.
        #expect(try read("id,a\n0,1\n1,5\n2,2\n").matrix.cols == 2)
        #expect(try read(",a\n0,1\n2,5\n3,2\n").matrix.cols == 2)
    }

    @Test("missing values keep their error, which now says how to proceed", arguments: [
        ("1,2\n3,\n", "t.csv:2:2: value is empty: a missing value"),
        ("a,b\n1,NA\n", "t.csv:2:2: value \"NA\" is a missing value"),
        ("1,2\nNaN,4\n", "t.csv:2:1: value \"NaN\" is a missing value"),
        ("1,\"\"\n", "t.csv:1:2: value is empty: a missing value"),
    ])
    func missing(_ text: String, _ expected: String) {
        let message = refusal(text)
        #expect(message.hasPrefix(expected), "\(message)")
        #expect(message.hasSuffix("drop the rows with missing values (pandas dropna(), R na.omit) or fill them in"))
    }

    @Test("broken quoting is refused with line and column", arguments: [
        ("1,\"2\n", "t.csv:1:2: a quoted field is not closed on its line"),
        ("1,\"2\"x\n", "t.csv:1:2: text after the closing quote"),
        ("1,2\"3\n", "t.csv:1:2: a quote inside an unquoted field"),
        ("1,\"2\"\"\"\n", "t.csv:1:2: value \"2\\\"\" is not a number"),
    ])
    func badQuoting(_ text: String, _ expected: String) {
        #expect(refusal(text).hasPrefix(expected), "\(refusal(text))")
    }

    @Test("the numbers' buffer is checked against the budget and probed before it is made")
    func memory() throws {
        let text = rows()
        let small = MemoryBudget(limit: 50, source: "a test limit")
        #expect(refusal(text, CSVOptions(memory: small)) == "t.csv: up to 4 rows × 3 columns: needs about 96 bytes of memory, more than the 50 bytes of a test limit: use fewer rows or columns (--columns), or raise --max-memory")
        let refusing = MemoryBudget(limit: 1 << 40, source: "test", canAllocate: { _ in false })
        #expect(refusal(text, CSVOptions(memory: refusing)) == "t.csv: 4 rows × 3 columns: the system refused to allocate 96 bytes (free memory, or use less data)")
        #expect(try read(text, CSVOptions(memory: MemoryBudget(limit: 96, source: "exact"))).matrix == table)
    }
}

@Suite("CSV dialects in specs")
struct SpecCSVDialectTests {
    @Test("a spec's CSV source takes delimiter and columns; they are refused for simulated data")
    func specKeys() throws {
        try withTemporaryFolder { folder in
            let text = ",a,b,c\n" + (0..<table.rows).map { i in "\(i)\t" + (0..<3).map { String(table[i, $0]) }.joined(separator: "\t") }.joined(separator: "\n") + "\n"
            try writeFile(text.replacingOccurrences(of: ",", with: "\t"), named: "d.tsv", in: folder)
            func spec(_ data: String) throws -> ExperimentSpec {
                try ExperimentSpec.parse(Data(#"{"name": "x", "data": \#(data), "seeds": [1], "runs": [{"label": "mle", "strategy": "mle"}]}"#.utf8),
                                         path: folder.appendingPathComponent("s.json").path)
            }
            let byRange = try spec(#"{"csv": "d.tsv", "latent": 1, "delimiter": "tab", "columns": "2-"}"#)
            #expect(maxRelativeDifference(nested(try byRange.data.dataset(name: "d").points), nested(table)) <= Tolerance.rounding)
            let byList = try spec(#"{"csv": "d.tsv", "latent": 1, "columns": ["a", 3, "c"]}"#)
            #expect(maxRelativeDifference(nested(try byList.data.dataset(name: "d").points), nested(table)) <= Tolerance.rounding)
            let unselected = try spec(#"{"csv": "d.tsv", "latent": 1}"#)
            #expect(throws: InputError.self) { try unselected.data.dataset(name: "d") }
            #expect(throws: InputError.self) { try spec(#"{"csv": "d.tsv", "latent": 1, "delimiter": "ab"}"#) }
            #expect(throws: InputError.self) { try spec(#"{"csv": "d.tsv", "latent": 1, "columns": [0]}"#) }
            #expect(throws: InputError.self) { try spec(#"{"dim": 3, "latent": 1, "count": 10, "noise-variance": 1, "columns": "2-"}"#) }
        }
    }
}

@Suite("CSV dialects on the command line")
struct CLICSVDialectTests {
    @Test("fit names the detected delimiter; --delimiter and --columns reach the reader; loglik takes them too")
    func options() throws {
        try withTemporaryFolder { folder in
            let m = simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 0.5), count: 60)
            let text = "\"\"\tx\ty\tz\n" + (0..<m.rows).map { i in "\"\(i)\"\t" + (0..<3).map { String(m[i, $0]) }.joined(separator: "\t") }.joined(separator: "\n") + "\n"
            try writeFile(text, named: "d.tsv", in: folder)
            let refused = try elbolab(["fit", "--data", "d.tsv", "--latent", "1", "--strategy", "mle", "--output", "a"], in: folder)
            #expect(refused.status != 0 && refused.stderrLines.count == 1 && refused.stderr.contains("it is a row index, not data; drop it with --columns 2-"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("a").path))
            let fit = try elbolab(["fit", "--data", "d.tsv", "--columns", "2-", "--latent", "1", "--strategy", "mle", "--output", "b"], in: folder)
            #expect(fit.status == 0, "\(fit.stderr)")
            #expect(fit.stderr.hasPrefix("d.tsv: 60 rows × 3 columns, tab-delimited (detected from the first line), a header, columns 2,3,4 of 4\n"), "\(fit.stderr)")
            let given = try elbolab(["fit", "--data", "d.tsv", "--delimiter", "comma", "--latent", "1", "--strategy", "mle", "--output", "c"], in: folder)
            #expect(given.status != 0 && given.stderrLines.count == 1 && given.stderr.contains("d.tsv:1:1: text after the closing quote"), "\(given.stderr)")
            let ll = try elbolab(["loglik", "--data", "d.tsv", "--columns", "x,y,z", "--params", "b/params.json"], in: folder)
            #expect(ll.status == 0 && Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) != nil, "\(ll.stderr)")
            let badOption = try elbolab(["fit", "--data", "d.tsv", "--delimiter", "::", "--latent", "1", "--strategy", "mle", "--output", "e"], in: folder)
            #expect(badOption.status != 0 && badOption.stderrLines.count == 1 && badOption.stderr.contains("--delimiter"), "\(badOption.stderr)")
        }
    }
}
