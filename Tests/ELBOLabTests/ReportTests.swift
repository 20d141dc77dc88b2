import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The report drawn from a quick run: every legend entry of every SVG draws its series (labels
/// with commas, quotes and non-ASCII text included), and `## What this shows` says nothing a
/// rerun with other seeds contradicts.
@Suite struct ReportTests {
    /// Labels that split or merge series when a plot keys them by text.
    static let awkward = ["em, plain \"steps\"", "em's default θ", "joint linear, batch 50", "joint linear"]

    static func quickSpec(seeds: [Int], kind: String = "curves") -> String {
        let runs = """
          {"label": "\(JSON.escaped(awkward[0]))", "strategy": "em", "acceleration": "none", "iterations": 30},
          {"label": "\(JSON.escaped(awkward[1]))", "strategy": "em", "iterations": 30},
          {"label": "per-datapoint closed-form", "strategy": "per-datapoint", "iterations": 60},
          {"label": "amortized linear", "strategy": "amortized", "iterations": 60},
          {"label": "\(JSON.escaped(awkward[2]))", "strategy": "joint", "batch": 50, "iterations": 80},
          {"label": "\(JSON.escaped(awkward[3]))", "strategy": "joint", "iterations": 80}
        """
        var data = kind == "scaling" ? "\"data\": {\"dim\": 4, \"latent\": 2, \"noise-variance\": 0.5, \"seed\": 5}, \"counts\": [100, 300],"
            : "\"data\": {\"dim\": 4, \"latent\": 2, \"count\": 300, \"noise-variance\": 0.5, \"seed\": 5},"
        if kind == "gradient-variance" {
            data += """
             "variance": {"warmup": {"strategy": "joint", "iterations": [2, 20]}, "samples": [1, 4], "kl": ["analytic", "mc", "stl"],
                          "no-baseline": true, "repeats": 20, "points": 50},
            """
        }
        return """
        {"name": "quick-\(kind)", "kind": "\(kind)", \(data)
         "seeds": [\(seeds.map(String.init).joined(separator: ", "))],
         "stop": {"max-seconds": 1000, "tolerance": 1e-12},
         "runs": [\(runs)]}
        """
    }

    static func run(_ json: String, in folder: String, plots: PlotDrawing) throws -> ExperimentOutcome {
        let spec = try ExperimentSpec.parse(Data(json.utf8), path: folder + "/spec.json")
        return try ExperimentRunner(plots: plots, workers: 2).run(spec, output: folder)
    }

    /// The numbers in `text` as (x, y) pairs.
    static func pairs(_ text: Substring) -> [(Double, Double)] {
        let numbers = text.split(whereSeparator: { !"0123456789.-e".contains($0) }).compactMap { Double($0) }
        return stride(from: 0, to: numbers.count - 1, by: 2).map { (numbers[$0], numbers[$0 + 1]) }
    }

    /// The legend entries of a gnuplot SVG (`svg mouse`) whose plot group draws nothing but its
    /// key sample, and every legend text. gnuplot draws the key sample just right of the key
    /// text, on its line, outside the `_keyentry` group; anything else the group draws is data.
    static func legendEntries(svg: String) -> (texts: [String], empty: [String]) {
        var texts: [String] = [], empty: [String] = []
        var rest = Substring(svg)
        while let start = rest.range(of: "<g id=\"gnuplot_plot_") {
            var depth = 0, inKey = -1, key = "", anchor: (Double, Double)? = nil
            var drawn: [[(Double, Double)]] = []
            var cursor = start.lowerBound
            repeat {
                guard let open = rest[cursor...].firstIndex(of: "<"), let close = rest[open...].firstIndex(of: ">") else { break }
                let tag = rest[open...close]
                if tag.hasPrefix("</g") {
                    depth -= 1
                    if depth == inKey { inKey = -1 }
                } else if tag.hasPrefix("<g") {
                    if tag.contains("_keyentry\"") { inKey = depth }
                    if inKey >= 0, anchor == nil, let t = tag.range(of: "translate(") { anchor = pairs(tag[t.upperBound...]).first }
                    depth += 1
                } else if inKey < 0, tag.hasPrefix("<path"), let d = tag.range(of: " d='") {
                    drawn.append(pairs(tag[d.upperBound...].prefix { $0 != "'" }))
                } else if inKey < 0, tag.hasPrefix("<use") || tag.hasPrefix("<circle"), let t = tag.range(of: "translate(") {
                    drawn.append(Array(pairs(tag[t.upperBound...]).prefix(1)))
                } else if inKey >= 0, tag.hasPrefix("<text"), let end = rest[close...].firstIndex(of: "<") {
                    key += rest[rest.index(after: close)..<end]
                }
                cursor = rest.index(after: close)
            } while depth > 0
            let text = key.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&amp;", with: "&").trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty, let (kx, ky) = anchor {
                texts.append(text)
                let isSample: ([(Double, Double)]) -> Bool = { pts in
                    !pts.isEmpty && pts.allSatisfy { abs($0.1 - ky) < 10 && $0.0 >= kx - 2 && $0.0 <= kx + 90 }
                }
                if !drawn.contains(where: { !isSample($0) }) { empty.append(text) }
            }
            rest = rest[cursor...]
        }
        return (texts, empty)
    }

    @Test func legendCheckerFindsAnEmptySeries() throws {
        // The checker itself, on gnuplot's own output: one series with data, one with none.
        let gnuplot = try #require(Gnuplot.locate(), "gnuplot is needed (make deps installs it)")
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let script = """
        set terminal svg mouse standalone noenhanced
        set output 't.svg'
        plot '-' using 1:2 with lines title 'has data, yes', '-' using 1:2 with lines title 'no data'
        1 1
        2 3
        e
        1 NaN
        e
        """
        try AtomicFile.write(script, to: folder + "/t.gp")
        #expect(Gnuplot.draw(script: "t.gp", in: folder, executable: gnuplot) == nil)
        let found = Self.legendEntries(svg: try String(contentsOfFile: folder + "/t.svg", encoding: .utf8))
        #expect(found.texts == ["has data, yes", "no data"] && found.empty == ["no data"])
    }

    @Test func everyLegendEntryOfAQuickRunDrawsItsSeries() throws {
        _ = try #require(Gnuplot.locate(), "gnuplot is needed (make deps installs it)")
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for kind in ["curves", "scaling", "gradient-variance"] {
            let out = try Self.run(Self.quickSpec(seeds: [1, 2], kind: kind), in: "\(folder)/\(kind)", plots: .automatic)
            #expect(out.report.warnings.isEmpty, "\(out.report.warnings)")
            var legends: Set<String> = []
            for file in out.report.plots where file.hasSuffix(".svg") {
                let svg = try String(contentsOfFile: "\(out.folder)/\(file)", encoding: .utf8)
                let found = Self.legendEntries(svg: svg)
                #expect(!found.texts.isEmpty, "\(kind)/\(file) has no legend")
                #expect(found.empty.isEmpty, "\(kind)/\(file): legend entries that draw nothing: \(found.empty)")
                legends.formUnion(found.texts)
            }
            // Each awkward label is one legend entry, whole (not cut at its comma or quote).
            for label in Self.awkward {
                #expect(legends.contains(label) || legends.contains { $0.hasPrefix(label + " N=") }, "\(kind): no legend entry \(label)")
            }
        }
    }

    @Test func findingsAreGeneratedCiteTheirSourceAndSurviveOtherSeeds() throws {
        let folder = try ExperimentTests.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let a = try Self.run(Self.quickSpec(seeds: [1, 2, 3]), in: folder + "/a", plots: .off)
        let b = try Self.run(Self.quickSpec(seeds: [4, 5, 6]), in: folder + "/b", plots: .off)
        for outcome in [a, b] {
            let findings = outcome.report.findings
            #expect((3...6).contains(findings.count), "\(findings.map(\.text))")
            for f in findings { #expect(f.text.contains("(figure ") || f.text.contains("(table "), "cites nothing: \(f.text)") }
            let md = try String(contentsOfFile: outcome.folder + "/summary.md", encoding: .utf8)
            #expect(md.contains("\n## What this shows\n"))
        }
        // A firm claim of one seed set is never firmly reversed by the other.
        let clash = Finding.contradictions(a.report.findings, b.report.findings)
        #expect(clash.isEmpty, "\(clash.map { "\($0.0.key): \($0.0.value) vs \($0.1.value)" })")
        // And the check does catch a reversal.
        var flipped = a.report.findings
        if let i = flipped.firstIndex(where: { $0.claims.contains(where: \.firm) }), let j = flipped[i].claims.firstIndex(where: \.firm) {
            flipped[i].claims[j].value += " (reversed)"
            #expect(!Finding.contradictions(a.report.findings, flipped).isEmpty)
        } else {
            Issue.record("no firm claim to check: \(a.report.findings.map(\.text))")
        }
    }
}
