import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The table every accepted variant must read as.
private let table = Matrix([[1, 2.5, -3], [4e-2, 5, 6], [-7.25, 8, 9e3]])
private let plainText = "1,2.5,-3\n4e-2,5,6\n-7.25,8,9e3\n"

/// Reads `bytes` written to a file in a fresh folder with ``CSV/read(path:)``, and checks that
/// ``Dataset/load(csv:)`` accepts it too with the same points (up to the rounding of centring).
private func load(_ bytes: [UInt8], named name: String = "data.csv",
                  sourceLocation: SourceLocation = #_sourceLocation) throws -> Matrix {
    try withTemporaryFolder { folder in
        let path = try writeFile(bytes, named: name, in: folder)
        let table = try CSV.read(path: path)
        let data = try Dataset.load(csv: path)
        #expect(data.name == path, sourceLocation: sourceLocation)
        #expect(maxRelativeDifference(nested(data.points), nested(table)) <= Tolerance.rounding, sourceLocation: sourceLocation)
        return table
    }
}

private func load(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Matrix {
    try load(Array(text.utf8), sourceLocation: sourceLocation)
}

/// The InputError from loading `bytes`, with the file's path, so messages can be checked.
private func loadError(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> (message: String, path: String) {
    try withTemporaryFolder { folder in
        let path = try writeFile(bytes, named: "bad.csv", in: folder)
        let error = try #require(throws: InputError.self, sourceLocation: sourceLocation) { try Dataset.load(csv: path) }
        return (error.message, path)
    }
}

private func loadError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> (message: String, path: String) {
    try loadError(Array(text.utf8), sourceLocation: sourceLocation)
}

@Suite("CSV and Dataset")
struct DatasetCSVTests {
    // MARK: Accepted

    @Test("plain comma-separated numbers")
    func plain() throws {
        #expect(try load(plainText) == table)
        // Dataset.load and CSV.read agree, and the last line may lack its newline.
        try withTemporaryFolder { folder in
            let path = try writeFile("1,2.5,-3\n4e-2,5,6\n-7.25,8,9e3", named: "d.csv", in: folder)
            #expect(try CSV.read(path: path) == table)
            #expect(try Dataset.load(csv: path).name == path)
        }
    }

    @Test("CRLF line ends")
    func crlf() throws {
        #expect(try load(plainText.replacingOccurrences(of: "\n", with: "\r\n")) == table)
    }

    @Test("a UTF-8 byte-order mark")
    func byteOrderMark() throws {
        #expect(try load([0xEF, 0xBB, 0xBF] + Array(plainText.utf8)) == table)
    }

    @Test("one non-numeric header line")
    func header() throws {
        #expect(try load("x1,x2,x3\n" + plainText) == table)
        #expect(try load([0xEF, 0xBB, 0xBF] + Array(("\"a\",\"b\",\"c\"\r\n" + plainText).utf8)) == table)
    }

    @Test("trailing blank lines")
    func trailingBlankLines() throws {
        #expect(try load(plainText + "\n\n  \n\t\n") == table)
    }

    @Test("spaces and tabs around numbers")
    func spacesAroundNumbers() throws {
        #expect(try load(" 1 , 2.5,\t-3\n4e-2 ,5 , 6\n-7.25,  8  ,9e3 \n") == table)
    }

    @Test("a single column")
    func singleColumn() throws {
        #expect(try load("3\n-1\n2\n") == Matrix([[3], [-1], [2]]))
    }

    // MARK: Rejected, each naming file, line and column

    @Test("a ragged row")
    func ragged() throws {
        let (message, path) = try loadError("1,2,3\n4,5,6\n7,8\n")
        #expect(message.hasPrefix("\(path):3:"), "\(message)")
        #expect(message.contains("2 column(s)") && message.contains("3"))
    }

    @Test("a non-numeric value mid-file names line and column")
    func nonNumeric() throws {
        let (message, path) = try loadError("1,2,3\n4,5,6\n7,abc,9\n")
        #expect(message.hasPrefix("\(path):3:2:"), "\(message)")
        #expect(message.contains("\"abc\"") && message.contains("not a number"))
    }

    @Test("a number followed by junk is not a number")
    func trailingJunk() throws {
        let (message, path) = try loadError("1,2\n3,4x\n")
        #expect(message.hasPrefix("\(path):2:2:"), "\(message)")
    }

    @Test("NaN")
    func nan() throws {
        let (message, path) = try loadError("1,2\n3,NaN\n5,6\n")
        #expect(message.hasPrefix("\(path):2:2:"), "\(message)")
        #expect(message.contains("NaN"))
    }

    @Test("inf text")
    func infinity() throws {
        let (message, path) = try loadError("1,2\n3,4\n-inf,6\n")
        #expect(message.hasPrefix("\(path):3:1:"), "\(message)")
        #expect(message.contains("inf"))
    }

    @Test("1e400 overflows a double")
    func overflow() throws {
        let (message, path) = try loadError("1,2\n3,4\n5,1e400\n")
        #expect(message.hasPrefix("\(path):3:2:"), "\(message)")
        #expect(message.contains("1e400") && message.contains("overflow"))
    }

    @Test("an empty file")
    func emptyFile() throws {
        let (message, path) = try loadError("")
        #expect(message.hasPrefix("\(path):"), "\(message)")
        #expect(message.contains("no data"))
    }

    @Test("a header only")
    func headerOnly() throws {
        let (message, path) = try loadError("a,b,c\n")
        #expect(message.hasPrefix("\(path):"), "\(message)")
        #expect(message.contains("no data"))
    }

    @Test("a blank line inside the data")
    func blankLineInside() throws {
        let (message, path) = try loadError("1,2\n3,4\n\n5,6\n")
        #expect(message.hasPrefix("\(path):3:"), "\(message)")
        #expect(message.contains("blank line"))
    }

    @Test("an empty field")
    func emptyField() throws {
        let (message, path) = try loadError("1,2,3\n4,,6\n")
        #expect(message.hasPrefix("\(path):2:2:"), "\(message)")
    }

    @Test("a second non-numeric line is not a header")
    func secondHeader() throws {
        let (message, path) = try loadError("a,b\nc,d\n1,2\n")
        #expect(message.hasPrefix("\(path):2:1:"), "\(message)")
    }

    @Test("a directory")
    func directory() throws {
        try withTemporaryFolder { folder in
            let error = try #require(throws: InputError.self) { try Dataset.load(csv: folder.path) }
            #expect(error.message.hasPrefix(folder.path), "\(error.message)")
            #expect(error.message.contains("directory"))
        }
    }

    @Test("a missing file")
    func missingFile() throws {
        try withTemporaryFolder { folder in
            let path = folder.appendingPathComponent("absent.csv").path
            let error = try #require(throws: InputError.self) { try Dataset.load(csv: path) }
            #expect(error.message.hasPrefix(path), "\(error.message)")
            #expect(error.message.contains("cannot open"))
        }
    }

    @Test("a NUL byte")
    func nulByte() throws {
        let (message, path) = try loadError(Array("1,2\n3,".utf8) + [0] + Array("4\n".utf8))
        #expect(message.hasPrefix("\(path):2:"), "\(message)")
        #expect(message.contains("NUL"))
    }

    @Test("values whose mean or variance overflow")
    func hugeValues() throws {
        let (message, path) = try loadError("1e308,1\n1.5e308,2\n")
        #expect(message.hasPrefix("\(path):"), "\(message)")
        #expect(message.contains("rescale"))
    }

    // MARK: Dataset

    @Test("mean, covariance and second moment match direct sums")
    func statistics() throws {
        let y = simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 0.4, offsetScale: 50), count: 300)
        let data = Dataset(points: y)
        #expect(data.count == 300 && data.dimension == 3)
        let n = Double(y.rows)
        let mean = (0..<3).map { j in (0..<y.rows).reduce(0) { $0 + y[$1, j] } / n }
        #expect(maxRelativeDifference([data.mean], [mean]) <= Tolerance.rounding)
        let cov = (0..<3).map { a in (0..<3).map { b in (0..<y.rows).reduce(0) { $0 + (y[$1, a] - mean[a]) * (y[$1, b] - mean[b]) } / n } }
        #expect(maxRelativeDifference(nested(data.covariance), cov) <= Tolerance.rounding)
        let about: [Double] = [1, -2, 0.5]
        let moment = (0..<3).map { a in (0..<3).map { b in (0..<y.rows).reduce(0) { $0 + (y[$1, a] - about[a]) * (y[$1, b] - about[b]) } / n } }
        #expect(maxRelativeDifference(nested(data.secondMoment(about: about)), moment) <= Tolerance.rounding)
        #expect(maxRelativeDifference(nested(data.points), nested(y)) <= Tolerance.rounding)
    }

    @Test("validate: too few rows for J")
    func tooFewRows() {
        let data = Dataset(points: Matrix([[1, 2, 3], [2, 1, 0], [0, 0, 1]]), name: "small.csv")
        #expect(throws: Never.self) { try data.validate(latent: 1, noiseFixed: false) }   // 3 ≥ J + 2
        let error = #expect(throws: InputError.self) { try data.validate(latent: 2, noiseFixed: false) }
        #expect(error?.message.hasPrefix("small.csv") == true)
        #expect(error?.message.contains("too few") == true)
    }

    @Test("validate: J out of range", arguments: [(0, false), (3, false), (4, true), (-1, true)])
    func latentOutOfRange(latent: Int, noiseFixed: Bool) {
        let data = Dataset(points: simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 1), count: 20), name: "d.csv")
        let error = #expect(throws: InputError.self) { try data.validate(latent: latent, noiseFixed: noiseFixed) }
        #expect(error?.message.contains("out of range") == true, "\(String(describing: error))")
    }

    @Test("validate: J = D is allowed only with s2 held fixed")
    func latentEqualsDimension() {
        let data = Dataset(points: simulate(randomModel(dimension: 3, latent: 1, noiseVariance: 1), count: 20), name: "d.csv")
        #expect(throws: Never.self) { try data.validate(latent: 3, noiseFixed: true) }
        #expect(throws: InputError.self) { try data.validate(latent: 3, noiseFixed: false) }
        let column = Dataset(points: Matrix([[1], [2], [4]]), name: "one.csv")
        #expect(throws: InputError.self) { try column.validate(latent: 1, noiseFixed: false) }
        #expect(throws: Never.self) { try column.validate(latent: 1, noiseFixed: true) }
    }

    @Test("validate: every column constant")
    func constantColumns() {
        let data = Dataset(points: Matrix([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, 3]]), name: "flat.csv")
        let error = #expect(throws: InputError.self) { try data.validate(latent: 1, noiseFixed: false) }
        #expect(error?.message.contains("constant") == true)
        // One varying column is enough.
        let one = Dataset(points: Matrix([[1, 2, 3], [1, 2, 4], [1, 2, 3], [1, 2, 3]]))
        #expect(throws: Never.self) { try one.validate(latent: 1, noiseFixed: false) }
    }

    @Test("CSV text round-trips every double exactly")
    func roundTrip() throws {
        let m = Matrix([[0.1, -1e-300, 123456789.123], [1.0 / 3, 2, -0.0]])
        let text = CSV.text(of: m, header: ["a", "b", "c"])
        #expect(text.hasPrefix("a,b,c\n"))
        #expect(try load(text) == m)
    }
}
