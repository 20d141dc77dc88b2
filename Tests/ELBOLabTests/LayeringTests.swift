import Foundation
import Testing

// SwiftPM lets a target import any module already built, not only its declared dependencies, so
// an upward import can compile (in an incremental build) without the manifest saying so. This
// reads every Sources target's import lines and holds them to the layer order:
//
//     CELBOLabKernels → ELBOLabKernels → ELBOLabNumerics → ELBOLabModel → ELBOLabVariational
//         → ELBOLabEngines → ELBOLabExperiments → ELBOLab → elbolab
//
// Only ELBOLabNumerics sees GSL (CGSL), only ELBOLabExperiments writes HTML (Plot, Ink), only the
// command-line tool parses arguments (ArgumentParser).

/// The project's modules, lowest first: a module may import only those before it.
private let layerOrder = ["CELBOLabKernels", "ELBOLabKernels", "ELBOLabNumerics", "ELBOLabModel", "ELBOLabVariational",
                  "ELBOLabEngines", "ELBOLabExperiments", "ELBOLab", "elbolab"]

/// Outside modules that only one target may import.
private let confinedImports = ["CGSL": "ELBOLabNumerics", "Plot": "ELBOLabExperiments", "Ink": "ELBOLabExperiments",
                       "ArgumentParser": "elbolab"]

/// The target a file under Sources/ belongs to (`path` relative to Sources/): the layers above
/// numerics are the folders of Sources/ELBOLab, whose own top-level files are the umbrella's.
private func sourceTarget(of path: String) -> String? {
    let parts = path.split(separator: "/").map(String.init)
    guard parts.count >= 2 else { return nil }
    if parts[0] == "ELBOLab", parts.count >= 3 { return "ELBOLab" + parts[1] }
    return parts[0]
}

/// The modules a Swift file imports, with their line numbers: every form of the import
/// declaration (attributes, an access level, `import struct M.T`), not `canImport`.
private func importedModules(_ text: String) -> [(line: Int, module: String)] {
    let pattern = #"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+(?:(?:typealias|struct|class|enum|protocol|let|var|func)\s+)?([A-Za-z_][A-Za-z0-9_]*)"#
    guard let regex = try? NSRegularExpression(pattern: pattern) else { return [] }
    var found: [(Int, String)] = []
    for (i, line) in text.components(separatedBy: "\n").enumerated() {
        let range = NSRange(line.startIndex..., in: line)
        if let match = regex.firstMatch(in: line, range: range), let name = Range(match.range(at: 1), in: line) {
            found.append((i + 1, String(line[name])))
        }
    }
    return found
}

/// Every import in `files` (path relative to Sources/, text) that the layer order forbids, one
/// line each: `ELBOLab/Model/X.swift:3: ELBOLabModel imports ELBOLabEngines, a layer above it`.
private func layeringViolations(_ files: [(path: String, text: String)]) -> [String] {
    var problems: [String] = []
    for (path, text) in files {
        guard let target = sourceTarget(of: path) else { continue }
        let rank = layerOrder.firstIndex(of: target)
        for (line, module) in importedModules(text) {
            let at = "\(path):\(line): \(target) imports \(module)"
            if let owner = confinedImports[module], owner != target {
                problems.append("\(at): only \(owner) may import it")
            } else if let imported = layerOrder.firstIndex(of: module) {
                guard let rank else { problems.append("\(at): \(target) is not in the layer order"); continue }
                if imported >= rank { problems.append("\(at), a layer \(imported == rank ? "of its own" : "above it")") }
            }
        }
    }
    return problems
}

@Suite struct LayeringTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources")

    /// The Swift files under Sources/, paths relative to it.
    static func sourceFiles() throws -> [(path: String, text: String)] {
        let root = sources.standardizedFileURL.path + "/"
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        return try walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted().map {
            ($0, try String(contentsOfFile: root + $0, encoding: .utf8))
        }
    }

    @Test func everySourceImportFollowsTheLayerOrder() throws {
        let files = try Self.sourceFiles()
        // The walk must have found every layer, or a moved folder would make this pass vacuously.
        let targets = Set(files.compactMap { sourceTarget(of: $0.path) })
        for layer in layerOrder where layer != "CELBOLabKernels" {
            #expect(targets.contains(layer), "no Swift file of \(layer) found under \(Self.sources.path)")
        }
        // A new folder in Sources/ELBOLab would compile into the umbrella, outside every layer.
        for target in targets.sorted() {
            #expect(layerOrder.contains(target), "Sources has Swift files of \(target), which is not in the layer order")
        }
        #expect(files.contains { importedModules($0.text).contains { $0.module == "CGSL" } },
                "no file imports CGSL: the import reader is broken")
        let problems = layeringViolations(files)
        #expect(problems.isEmpty, "imports against the layer order:\n\(problems.joined(separator: "\n"))")
    }

    @Test func plantedBadImportsAreFound() {
        let planted: [(path: String, text: String)] = [
            ("ELBOLab/Model/A.swift", "import Foundation\n@_exported import ELBOLabEngines\n"),
            ("ELBOLab/Variational/B.swift", "#if canImport(CGSL)\nimport CGSL\n#endif\n"),
            ("ELBOLab/Engines/C.swift", "internal import Plot\n"),
            ("ELBOLab/Engines/D.swift", "import struct ELBOLabExperiments.ExperimentSpec\n"),
            ("ELBOLabNumerics/E.swift", "@preconcurrency import ELBOLabNumerics\n"),
            ("ELBOLab/Experiments/Studies/F.swift", "  import ELBOLab\n"),
            ("ELBOLab/Experiments/G.swift", "import ArgumentParser\n"),
        ]
        let problems = layeringViolations(planted)
        #expect(problems == [
            "ELBOLab/Model/A.swift:2: ELBOLabModel imports ELBOLabEngines, a layer above it",
            "ELBOLab/Variational/B.swift:2: ELBOLabVariational imports CGSL: only ELBOLabNumerics may import it",
            "ELBOLab/Engines/C.swift:1: ELBOLabEngines imports Plot: only ELBOLabExperiments may import it",
            "ELBOLab/Engines/D.swift:1: ELBOLabEngines imports ELBOLabExperiments, a layer above it",
            "ELBOLabNumerics/E.swift:1: ELBOLabNumerics imports ELBOLabNumerics, a layer of its own",
            "ELBOLab/Experiments/Studies/F.swift:1: ELBOLabExperiments imports ELBOLab, a layer above it",
            "ELBOLab/Experiments/G.swift:1: ELBOLabExperiments imports ArgumentParser: only elbolab may import it",
        ])
        // What is allowed: downward, outside modules, comments, canImport, Foundation.
        let fine: [(path: String, text: String)] = [
            ("ELBOLab/Engines/H.swift", "import Foundation\n// import ELBOLabExperiments\n#if canImport(Glibc)\nimport Glibc\n#endif\nimport ELBOLabModel\n"),
            ("ELBOLab/Exports.swift", "@_exported import ELBOLabExperiments\n"),
            ("ELBOLabNumerics/I.swift", "import CGSL\nimport ELBOLabKernels\n"),
            ("elbolab/J.swift", "import ArgumentParser\nimport ELBOLab\n"),
        ]
        #expect(layeringViolations(fine).isEmpty)
    }
}
