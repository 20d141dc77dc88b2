import Foundation

/// `results/overview.{csv,gp,png,svg}`: the whole comparison in one figure — the gap to the MLE
/// against data passes and against seconds, one line per strategy (EM, A, B, C) in each setting
/// an experiment stands for (its spec's `overview`), next to the gap split over training
/// (θ short of the MLE, approximation, amortisation) of B and C in the last such setting.
public enum Overview {
    /// The strategies, in legend order, with the notes' letters.
    static let strategies = [("em", "EM"), ("per-datapoint", "A per-datapoint"), ("amortized", "B amortized"), ("joint", "C joint")]
    static let terms = [("model_gap", "θ short of the MLE", "#7f7f7f"), ("approximation_gap", "approximation gap", "#1f77b4"),
                        ("amortization_gap", "amortisation gap", "#ff7f0e")]

    /// One drawn line: its legend text and style.
    struct Line {
        var title: String
        var color: String
        var dash: Int
        var panel: Int
    }

    /// Writes the overview from the experiment folders in `output`; returns the files drawn (PNG,
    /// SVG) — none when no experiment has an `overview` setting or gnuplot is missing — and warnings.
    public static func write(output: String, experiments: [String], plots drawing: PlotDrawing = .automatic) throws -> (drawn: [String], warnings: [String]) {
        var rows: [[String]] = []
        var lines: [Line] = []
        var settings: [String] = []
        var splitSource: (setting: String, curves: [String: [[CurvePoint]]], mle: [String: Double], runs: [(String, String)])? = nil
        for name in experiments {
            let folder = "\(output)/\(name)"
            guard let meta = try? ExperimentMeta.read(path: folder + "/meta.json"), !meta.overview.isEmpty else { continue }
            let points = try CurvePoint.points(from: try CSVTable.read(path: folder + "/curves.csv"))
            let records = try RunRecord.records(from: try CSVTable.read(path: folder + "/runs.csv"))
            var mle: [String: Double] = [:]
            for r in records where mle[r.run] == nil { mle[r.run] = r.mleLogLikelihood }
            let curves = PlotScripts.grouped(points)
            let dash = settings.count == 0 ? 1 : 2
            settings.append(meta.overview)
            var chosen: [(String, String)] = []
            for (strategy, letter) in strategies {
                guard let run = meta.runs.first(where: { $0.strategy == strategy && curves[$0.label] != nil }), let ceiling = mle[run.label],
                      let c = curves[run.label] else { continue }
                chosen.append((strategy, run.label))
                let f = PlotScripts.familyIndex(strategy)
                for (panel, axis) in [(0, "data_passes"), (1, "seconds")] {
                    let index = lines.count
                    lines.append(Line(title: "\(letter) (\(meta.overview))", color: PlotScripts.hex(PlotScripts.families[f].color),
                                      dash: dash, panel: panel))
                    for (x, lo, mid, hi) in PlotScripts.spread(c, axis: axis, value: \.elbo) {
                        rows.append([String(index), field(x), field(ceiling - hi), field(ceiling - mid), field(ceiling - lo), lines[index].title])
                    }
                }
            }
            splitSource = (meta.overview, curves, mle, chosen.filter { $0.0 == "amortized" || $0.0 == "joint" })
        }
        guard !lines.isEmpty else { return ([], []) }
        if let split = splitSource {
            for (strategy, label) in split.runs {
                guard let c = split.curves[label], let ceiling = split.mle[label] else { continue }
                let letter = strategy == "amortized" ? "B" : "C"
                for (name, title, color) in terms {
                    let index = lines.count
                    lines.append(Line(title: "\(letter): \(title)", color: color, dash: strategy == "amortized" ? 1 : 2, panel: 2))
                    let value: (CurvePoint) -> Double = { p in
                        switch name {
                        case "model_gap": return ceiling - p.logLikelihood
                        case "approximation_gap": return p.approximationGap
                        default: return p.amortizationGap
                        }
                    }
                    for (x, lo, mid, hi) in PlotScripts.spread(c, axis: "data_passes", value: value) {
                        rows.append([String(index), field(x), field(lo), field(mid), field(hi), lines[index].title])
                    }
                }
            }
        }
        let table = CSVTable(header: ["line", "x", "gap_min", "gap_median", "gap_max", "title"], rows: rows, name: "overview.csv")
        try AtomicFile.write(table.text, to: output + "/overview.csv")
        try AtomicFile.write(script(lines: lines, settings: settings, splitSetting: splitSource?.setting ?? "", table: table), to: output + "/overview.gp")

        let executable: String?
        switch drawing {
        case .off: executable = nil
        case let .executable(path): executable = path
        case .automatic: executable = Gnuplot.locate()
        }
        guard let executable else { return ([], ["gnuplot was not found: \(output)/overview.gp is written but not drawn"]) }
        for ext in ["png", "svg"] { try? FileManager.default.removeItem(atPath: "\(output)/overview.\(ext)") }
        if let problem = Gnuplot.draw(script: "overview.gp", in: output, executable: executable) { return ([], [problem]) }
        return (["overview.png", "overview.svg"], [])
    }

    static func script(lines: [Line], settings: [String], splitSetting: String, table: CSVTable) -> String {
        let q = PlotScripts.quote
        let idx = (try? table.numbers("line")) ?? [], xs = (try? table.numbers("x")) ?? [], hi = (try? table.numbers("gap_max")) ?? []
        func xRange(_ panel: Int) -> String {
            let sel = idx.indices.filter { i in idx[i].map { lines[Int($0)].panel == panel } ?? false }
            let lo = sel.compactMap { xs[$0] }.min() ?? 1, up = sel.compactMap { xs[$0] }.max() ?? 10
            return "set xrange [\(formatNumber(lo)):\(formatNumber(up * 1.05))]"
        }
        let top = hi.compactMap { $0 }.filter { $0.isFinite }.max() ?? 1
        var body = "  set multiplot layout 1,3 title \(q("ELBOLab overview: the gap to the MLE by strategy (solid: \(settings.first ?? ""); dashed: \(settings.dropFirst().joined(separator: ", "))) — median over seeds, band = min–max; click a legend entry to hide it"))\n"
        let panels = [("gap to the MLE vs data passes", "data passes (log scale)"),
                      ("gap to the MLE vs training seconds", "training seconds (log scale)"),
                      ("the gap split over training: B and C, \(splitSetting)", "data passes (log scale)")]
        for (p, (title, xlabel)) in panels.enumerated() {
            var parts: [String] = []
            for (i, line) in lines.enumerated() where line.panel == p {
                let sel = "($1 == \(i) ? $2 : NaN)"
                parts.append("'overview.csv' skip 1 using \(sel):(fl($3)):(fl($5)) with filledcurves fc rgb '\(line.color)' fs transparent solid 0.12 noborder notitle")
                parts.append("'overview.csv' skip 1 using \(sel):(fl($4)) with lines lw 2 dt \(line.dash) lc rgb '\(line.color)' title \(q(line.title))")
            }
            guard !parts.isEmpty else { continue }
            body += "  set title \(q(title))\n  set xlabel \(q(xlabel))\n  \(xRange(p))\n"
            body += "  set ylabel \(q(p == 2 ? "nats/point (log scale)" : "MLE − ELBO (nats/point, log scale)"))\n"
            body += "  plot \\\n    " + parts.joined(separator: ", \\\n    ") + "\n"
        }
        body += "  unset multiplot"
        let header = """
        set logscale x
        set format x '%g'
        \(PlotScripts.gapAxis(top: top * 1e4))  # headroom above the curves for the legends
        set grid
        set key top right font ',8' samplen 2 spacing 0.85 noopaque
        """
        return PlotScripts.frame(stem: "overview", width: 1650, height: 560, header: header, body: body)
    }
}
