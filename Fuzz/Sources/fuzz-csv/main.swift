// Any bytes as a CSV file, through the same getline loop that reads files. A table that is
// read is also written back with CSV.text(of:) and must read back as itself. The same bytes are
// then read with a given delimiter and column selections (the quoted-field, delimiter and
// --columns paths), and their first line is parsed as a --columns list and a --delimiter name.
import ELBOLab
import FuzzDriver

/// The explicit dialects every input is also read with (FuzzCorpusTests replays the same).
let dialects: [CSVOptions] = [
    CSVOptions(delimiter: 0x09),
    CSVOptions(delimiter: 0x3B, columns: [.range(2, nil)]),
    CSVOptions(columns: [.name("a"), .index(1)]),
]

runFuzzer { data, size in
    let bytes = fuzzBytes(data, size)
    if let table = expectValueOrInputError({ try CSV.read(bytes: bytes, name: "fuzz.csv") }) {
        let again = expectValueOrInputError { try CSV.read(bytes: Array(CSV.text(of: table).utf8), name: "again.csv") }
        if again != table { fatalError("CSV.text(of:) of an accepted table does not read back as that table") }
    }
    _ = expectValueOrInputError { try Dataset.load(csvBytes: bytes, name: "fuzz.csv") }
    for options in dialects {
        if let read = expectValueOrInputError({ try CSV.read(bytes: bytes, name: "fuzz.csv", options: options) }),
           read.matrix.cols != read.columns.count || read.header.map({ $0.count != read.columns.count }) == true {
            fatalError("a table's columns do not match its selection")
        }
    }
    let firstLine = String(decoding: bytes.prefix { $0 != 0x0A }.prefix(64), as: UTF8.self)
    _ = expectValueOrInputError { try CSVColumn.list(firstLine) }
    _ = expectValueOrInputError { try CSVOptions.delimiter(named: firstLine) }
    return 0
}
