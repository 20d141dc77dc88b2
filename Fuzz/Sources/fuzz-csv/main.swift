// Any bytes as a CSV file, through the same getline loop that reads files. A table that is
// read is also written back with CSV.text(of:) and must read back as itself.
import ELBOLab
import FuzzDriver

runFuzzer { data, size in
    let bytes = fuzzBytes(data, size)
    guard let table = expectValueOrInputError({ try CSV.read(bytes: bytes, name: "fuzz.csv") }) else { return 0 }
    let again = expectValueOrInputError { try CSV.read(bytes: Array(CSV.text(of: table).utf8), name: "again.csv") }
    if again != table { fatalError("CSV.text(of:) of an accepted table does not read back as that table") }
    _ = expectValueOrInputError { try Dataset.load(csvBytes: bytes, name: "fuzz.csv") }
    return 0
}
