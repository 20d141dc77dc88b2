import Foundation
import Testing
import ELBOLab

// The inputs `make fuzz` kept (Tests/FuzzCorpus/<reader>/: hand-written seeds plus what libFuzzer
// found that reaches new code), replayed through the same entry points the fuzz targets in Fuzz/
// call, with the same checks. A crash here is a crash the fuzzer found, or one it would find again.

/// The files of Tests/FuzzCorpus/`reader`, found from this file's location.
private func corpus(_ reader: String) throws -> [URL] {
    let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus").appendingPathComponent(reader)
    return try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
}

/// What a reader made of one input: a value, or the message of the InputError it threw.
private enum Outcome<Value> {
    case value(Value)
    case rejected(String)

    var value: Value? {
        if case let .value(v) = self { return v }
        return nil
    }
}

/// Runs `read` and checks the readers' contract: a value, or an ``InputError`` whose message is
/// one line naming `file` first. Any other error is recorded as an issue (and counts as rejected).
private func outcome<Value>(_ file: String, sourceLocation: SourceLocation = #_sourceLocation,
                            _ read: () throws -> Value) -> Outcome<Value> {
    do {
        return .value(try read())
    } catch let error as InputError {
        let oneLine = !error.message.contains { $0.isNewline }
        #expect(oneLine, "\(file): message is not one line: \(String(reflecting: error.message))",
                sourceLocation: sourceLocation)
        #expect(error.message.hasPrefix(file + ":"), "\(file): message does not name the file first: \(error.message)",
                sourceLocation: sourceLocation)
        return .rejected(error.message)
    } catch {
        Issue.record("\(file): threw \(String(reflecting: error)), not an InputError", sourceLocation: sourceLocation)
        return .rejected("")
    }
}

/// Each kept corpus holds inputs a reader accepts and inputs it rejects, or the replay proves little.
private func expectBothOutcomes<Value>(_ outcomes: [Outcome<Value>], _ reader: String,
                                       sourceLocation: SourceLocation = #_sourceLocation) {
    let accepted = outcomes.filter { $0.value != nil }.count
    #expect(accepted > 0 && accepted < outcomes.count,
            "\(reader) corpus: \(accepted) of \(outcomes.count) inputs accepted; it needs some of each",
            sourceLocation: sourceLocation)
}

@Suite("Fuzz corpus replay")
struct FuzzCorpusTests {
    @Test("CSV: file and in-memory reads agree, accepted tables survive a write and a re-read")
    func csv() throws {
        let outcomes = try corpus("csv").map { url -> Outcome<Dataset> in
            let path = url.path
            let bytes = try [UInt8](Data(contentsOf: url))
            let fromFile = outcome(path) { try CSV.read(path: path) }
            let fromBytes = outcome(path) { try CSV.read(bytes: bytes, name: path) }
            switch (fromFile, fromBytes) {
            case let (.value(a), .value(b)):
                #expect(a == b, "\(path): the file and in-memory reads differ")
                let again = outcome("again.csv") { try CSV.read(bytes: Array(CSV.text(of: a).utf8), name: "again.csv") }
                #expect(again.value == a, "\(path): CSV.text(of:) does not read back as the table")
            case let (.rejected(a), .rejected(b)):
                #expect(a == b, "\(path): the file and in-memory reads reject it differently")
            default:
                Issue.record("\(path): one of the file and in-memory reads accepts it, the other does not")
            }
            // The explicit dialects fuzz-csv also reads every input with (quotes, delimiters, --columns).
            for options in [CSVOptions(delimiter: 0x09), CSVOptions(delimiter: 0x3B, columns: [.range(2, nil)]),
                            CSVOptions(columns: [.name("a"), .index(1)])] {
                if let read = outcome(path, { try CSV.read(path: path, options: options) }).value {
                    #expect(read.matrix.cols == read.columns.count && (read.header?.count ?? read.columns.count) == read.columns.count)
                }
            }
            let data = outcome(path) { try Dataset.load(csv: path) }
            let dataFromBytes = outcome(path) { try Dataset.load(csvBytes: bytes, name: path) }
            #expect(data.value?.covariance == dataFromBytes.value?.covariance, "\(path): the file and in-memory loads differ")
            if let points = data.value?.points, let table = fromFile.value {
                #expect(points.rows == table.rows && points.cols == table.cols, "\(path): the data set's shape is not the table's")
            }
            return data
        }
        expectBothOutcomes(outcomes, "csv")
    }

    @Test("experiment specs: parsed or rejected in one line")
    func spec() throws {
        let outcomes = try corpus("spec").map { url in
            outcome(url.path) { try ExperimentSpec.load(path: url.path) }
        }
        expectBothOutcomes(outcomes, "spec")
    }

    @Test("parameters files: accepted models survive a write and a re-read")
    func params() throws {
        let outcomes = try corpus("params").map { url -> Outcome<LinearGaussianModel> in
            let read = outcome(url.path) { try ParamsFile.read(path: url.path) }
            if let model = read.value {
                let text = Data(ParamsFile.json(model).text().utf8)
                let again = outcome("again.json") { try ParamsFile.parse(text, path: "again.json") }.value
                #expect(again?.loadings == model.loadings && again?.offset == model.offset
                            && again?.noiseVariance == model.noiseVariance,
                        "\(url.path): ParamsFile.json does not read back as the model")
            }
            return read
        }
        expectBothOutcomes(outcomes, "params")
    }

    @Test("parameters files: a written model reads back bit for bit")
    func paramsExactNumbers() throws {
        // The round-trip check found this: JSONSerialization read 0.30000000000000004 as 0.3000000000000001.
        let tricky = [0.30000000000000004, 0.18888888888888888, 1.0 / 3, -0.1, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
        // The largest double only in b: a W whose squared entries overflow is refused on reading.
        let model = LinearGaussianModel(loadings: Matrix(tricky.map { x in let w = x > 1e300 ? 1e150 : x; return [w, -w] }),
                                        offset: tricky.reversed(), noiseVariance: 0.30000000000000004)
        let again = try ParamsFile.parse(Data(ParamsFile.json(model).text().utf8), path: "p.json")
        #expect(again.loadings == model.loadings && again.offset == model.offset && again.noiseVariance == model.noiseVariance)
    }

    @Test("parameters files: 0 and 1 are numbers, true and false are not")
    func paramsIntegersAndBooleans() throws {
        // The corpus's first seed found this: W and b entries 0 and 1 were taken for booleans,
        // so a model fitted with b = 0 could not be read back.
        let model = try ParamsFile.parse(Data(#"{"W": [[1], [0]], "b": [0, 1], "noise_variance": 1}"#.utf8), path: "p.json")
        #expect(model.loadings == Matrix([[1], [0]]) && model.offset == [0, 1] && model.noiseVariance == 1)
        for bad in [#"{"W": [[true], [0]], "b": [0, 1], "noise_variance": 1}"#,
                    #"{"W": [[1], [0]], "b": [false, 1], "noise_variance": 1}"#,
                    #"{"W": [[1], [0]], "b": [0, 1], "noise_variance": true}"#] {
            #expect(throws: InputError.self, "\(bad)") { try ParamsFile.parse(Data(bad.utf8), path: "p.json") }
        }
    }
}
