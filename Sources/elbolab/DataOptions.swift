import ArgumentParser
import ELBOLab
import Foundation

/// How `fit` and `loglik` read their CSV file, and the memory they may use.
struct DataOptions: ParsableArguments {
    @Option(help: "The CSV field delimiter: tab, comma, semicolon, space, pipe or one character (default: detected from the first line: tab, else semicolon, else comma).")
    var delimiter: String?

    @Option(help: "The columns to read, in order: header names or 1-based numbers and ranges, comma-separated (e.g. 2- to drop a row-index column, 1,3-5, height,weight). Default: every column.")
    var columns: String?

    @OptionGroup var memory: MemoryOptions

    func validate() throws {
        do {
            if let delimiter { _ = try CSVOptions.delimiter(named: delimiter) }
            if let columns { _ = try CSVColumn.list(columns) }
        } catch let error as InputError {
            throw ValidationError(error.message)
        }
    }

    /// Reads `path` as a data set; unless `quiet`, says on stderr how it was read (the
    /// delimiter, and whether it was detected). `estimate` gives what the command will need
    /// for N rows of D columns; it is checked against the budget before the numbers are read.
    /// `check` runs before the line is printed, so that bad input still ends in one line.
    func load(_ path: String, quiet: Bool, estimate: (@Sendable (Int, Int) -> MemoryEstimate)? = nil,
              request: String = "", check: (Dataset) throws -> Void = { _ in }) throws -> Dataset {
        var options = CSVOptions(delimiter: try delimiter.map { try CSVOptions.delimiter(named: $0) },
                                 columns: try columns.map { try CSVColumn.list($0) },
                                 memory: try memory.budget())
        options.estimate = estimate
        options.request = request
        let (data, read) = try Dataset.load(csv: path, options: options)
        try check(data)
        if !quiet {
            FileHandle.standardError.write(Data("\(path): \(data.count) rows × \(data.dimension) columns, \(read.summary)\n".utf8))
        }
        return data
    }
}

/// `--max-memory`, for every command that allocates in proportion to its input.
struct MemoryOptions: ParsableArguments {
    @Option(name: .customLong("max-memory"), help: "Refuse a request whose memory estimate exceeds this (bytes, or with K, M, G, T; default: the physical memory, or ELBOLAB_MAX_MEMORY).")
    var maxMemory: String?

    func validate() throws {
        if let maxMemory, MemoryBudget.parseSize(maxMemory) == nil {
            throw ValidationError("--max-memory \(maxMemory): expected a size in bytes, e.g. 500M, 8G or 1500000000")
        }
    }

    func budget() throws -> MemoryBudget { try MemoryBudget.resolved(maxMemory: maxMemory) }
}
