import Foundation

/// The experiments that compute their own tables instead of the curves of runs (issue 14):
/// each writes its CSV files, its gnuplot figures and a `summary.md` whose `## What this shows`
/// sentences are computed from the measured values.
public enum StudyKind: String, Sendable, CaseIterable {
    /// L_K against K beside the exact log p (§13): ``IWAEBoundStudy``.
    case iwaeBound = "iwae-bound"
    /// The SNR of the IWAE and DReG gradients against K (§14): ``IWAESNRStudy``.
    case iwaeSNR = "iwae-snr"
    /// The amortisation gap against the refinement steps R at θ = the MLE (§15): ``SemiAmortizedStudy``.
    case semiAmortized = "semi-amortized"
    /// Active units and per-latent KL against the held noise variance (§16): ``CollapseStudy``.
    case collapse
}

/// A study's settings (the spec's `study` block), one case per ``StudyKind``.
public enum StudySettings: Sendable, Equatable {
    case iwaeBound(IWAEBoundStudy.Settings)
    case iwaeSNR(IWAESNRStudy.Settings)
    case semiAmortized(SemiAmortizedStudy.Settings)
    case collapse(CollapseStudy.Settings)

    public var kind: StudyKind {
        switch self {
        case .iwaeBound: return .iwaeBound
        case .iwaeSNR: return .iwaeSNR
        case .semiAmortized: return .semiAmortized
        case .collapse: return .collapse
        }
    }
}

/// What a study computed: its tables, figure scripts, the markdown of its tables, and the
/// generated sentences of its `## What this shows`.
struct StudyProduct {
    var tables: [CSVTable]
    var figures: [(stem: String, script: String)]
    var markdown: String
    var findings: [String]
    /// One line on how the study was computed (settings, draws, convergence), for the summary.
    var method: String
}

enum StudyRunner {
    /// Runs the study of `spec` into `output`: the tables, scripts, `spec.json` and `summary.md`
    /// are written together (``ResultSet``: all or none), then the figures are drawn.
    static func run(_ spec: ExperimentSpec, settings: StudySettings, output: String, plots drawing: PlotDrawing,
                    workers: Int, memory: MemoryBudget) throws -> ExperimentOutcome {
        let start = DispatchTime.now().uptimeNanoseconds
        let data = try spec.data.dataset(name: "\(spec.path): data", memory: memory)
        let seed = spec.seeds.first ?? 1
        let product: StudyProduct
        switch settings {
        case let .iwaeBound(s):
            product = try IWAEBoundStudy.product(data: data, latent: spec.data.latent, settings: s, seed: seed, experiment: spec.name)
        case let .iwaeSNR(s):
            product = try IWAESNRStudy.product(data: data, latent: spec.data.latent, settings: s, seeds: spec.seeds,
                                               workers: workers, experiment: spec.name)
        case let .semiAmortized(s):
            product = try SemiAmortizedStudy.product(data: data, latent: spec.data.latent, settings: s, seed: seed,
                                                     experiment: spec.name)
        case let .collapse(s):
            product = try CollapseStudy.product(data: data, latent: spec.data.latent, settings: s, seed: seed,
                                                workers: workers, experiment: spec.name)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9

        var files: [ResultSet.File] = product.tables.map { ($0.name, $0.text) }
        files += product.figures.map { ("\($0.stem).gp", $0.script) }
        if let text = spec.text { files.append(("spec.json", String(decoding: text, as: UTF8.self))) }
        files.append(("summary.md", summary(spec, product: product, seconds: seconds, data: data)))
        try ResultSet.write(files, into: output)

        var drawn: [String] = []
        let (executable, missing) = Gnuplot.executable(for: drawing, folder: output, rerun: "run them there")
        var warnings = missing.map { [$0] } ?? []
        if let executable {
            for f in product.figures {
                // Stale images must not pass for new ones.
                for ext in ["png", "svg"] { try? FileManager.default.removeItem(atPath: "\(output)/\(f.stem).\(ext)") }
                if let problem = Gnuplot.draw(script: "\(f.stem).gp", in: output, executable: executable) {
                    warnings.append(problem)
                } else {
                    drawn += ["\(f.stem).png", "\(f.stem).svg"]
                }
            }
        }
        let report = ReportOutcome(plots: drawn, scripts: product.figures.map { "\($0.stem).gp" }, warnings: warnings)
        return ExperimentOutcome(name: spec.name, title: spec.title, folder: output,
                                 wallSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9,
                                 report: report, faults: [], interrupted: false)
    }

    static func summary(_ spec: ExperimentSpec, product: StudyProduct, seconds: Double, data: Dataset) -> String {
        var out = "# \(spec.title)\n\n"
        if !spec.description.isEmpty { out += spec.description + "\n\n" }
        out += "- Spec: `\(spec.path)` (kind `\(spec.study?.kind.rawValue ?? "")`)\n"
        out += "- Data: \(spec.data.summary), N = \(data.count)\n"
        out += "- Method: \(product.method)\n"
        out += "- Computed in \(String(format: "%.1f", seconds)) s of wall-clock time\n"
        out += "- Files: " + product.tables.map { "[\($0.name)](\($0.name))" }.joined(separator: ", ")
        out += "; figures: " + product.figures.map { "[\($0.stem).png](\($0.stem).png) ([svg](\($0.stem).svg))" }.joined(separator: ", ") + "\n\n"
        out += "## What this shows\n\n"
        for sentence in product.findings { out += "- \(sentence)\n" }
        out += "\n" + product.markdown
        return out
    }
}

/// Helpers shared by the studies' tables, figures and sentences.
enum StudyFormat {
    /// A number as a CSV field: shortest exact form, empty when not finite.
    static func csv(_ x: Double) -> String { x.isFinite ? formatNumber(x) : "" }

    /// A number for prose and markdown tables: 4 significant digits.
    static func g(_ x: Double, _ digits: Int = 3) -> String {
        guard x.isFinite else { return x.isNaN ? "—" : (x > 0 ? "∞" : "−∞") }
        if x == 0 { return "0" }
        let a = abs(x)
        if a >= 1e-3 && a < 1e5 { return String(format: "%.\(digits)g", x) }
        return String(format: "%.\(max(1, digits - 1))e", x)
    }

    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var out = "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for r in rows { out += "| " + r.joined(separator: " | ") + " |\n" }
        return out
    }

    /// A gnuplot single-quoted string.
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    /// Colours by family (matplotlib's tab10).
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]

    /// The lines that draw one figure as PNG and as an interactive standalone SVG.
    static func frame(stem: String, width: Int = 1000, height: Int = 650, header: String, body: String) -> String {
        PlotScripts.frame(stem: stem, width: width, height: height, header: header, body: body, redraw: "(a rerun of the study rewrites it)")
    }

    /// The least-squares slope of y on x, with its standard error; nil with fewer than 3 points
    /// (2 points give a slope but no spread).
    static func slope(_ points: [(Double, Double)]) -> (slope: Double, se: Double)? {
        let p = points.filter { $0.0.isFinite && $0.1.isFinite }
        guard p.count >= 2 else { return nil }
        let n = Double(p.count)
        let mx = p.map(\.0).reduce(0, +) / n, my = p.map(\.1).reduce(0, +) / n
        let sxx = p.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
        guard sxx > 0 else { return nil }
        let b = p.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) } / sxx
        guard p.count >= 3 else { return (b, .nan) }
        let rss = p.reduce(0) { let r = $1.1 - my - b * ($1.0 - mx); return $0 + r * r }
        return (b, (rss / (n - 2) / sxx).squareRoot())
    }

    /// Work items `0..<count` on `workers` threads; results in item order (each item seeds its
    /// own stream, so the result does not depend on the schedule).
    static func parallel<T: Sendable>(_ count: Int, workers: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [T] {
        let slots = ResultSlots<Result<T, Error>>(count: count)
        let queue = JobQueue(order: Array(0..<count))
        let threads = max(1, min(workers, count))
        withJobThreads(threads) {
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while let i = queue.take() {
                    slots.set(i, Result { try body(i) })
                }
            }
        }
        return try slots.values.map { slot in
            guard let slot else { throw InputError("a study's work item did not run") }
            return try slot.get()
        }
    }
}
