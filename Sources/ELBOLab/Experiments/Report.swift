import Foundation

/// What redrawing a report produced.
public struct ReportOutcome: Sendable {
    /// Plot files drawn (PNG and SVG), relative to the folder.
    public var plots: [String]
    /// Gnuplot scripts written, relative to the folder.
    public var scripts: [String]
    /// Problems that did not stop the report (gnuplot missing or failing).
    public var warnings: [String]
}

/// Builds an experiment's summary and plots from the files of record in its results folder
/// (`meta.json`, `curves.csv`, `runs.csv`, and `variance.csv` for the gradient study), so that
/// `elbolab plot` can redraw everything without rerunning.
public enum ExperimentReport {
    /// Writes `summary.csv`, `summary.md`, `bands.csv`, `split.csv` (and `scaling.csv` for a
    /// scaling experiment), the gnuplot scripts, and — when gnuplot is there — the PNG and SVG plots.
    public static func write(folder: String, plots drawing: PlotDrawing = .automatic) throws -> ReportOutcome {
        let meta = try ExperimentMeta.read(path: folder + "/meta.json")
        let points = try CurvePoint.points(from: try CSVTable.read(path: folder + "/curves.csv"))
        let records = try RunRecord.records(from: try CSVTable.read(path: folder + "/runs.csv"))
        let labels = meta.runs.map(\.label)
        let summaries = ExperimentSummary.summarize(records, runs: labels)
        try AtomicFile.write(ExperimentSummary.table(summaries, experiment: meta.experiment).text, to: folder + "/summary.csv")

        var mle: [String: Double] = [:]
        for r in records where mle[r.run] == nil { mle[r.run] = r.mleLogLikelihood }
        try AtomicFile.write(PlotScripts.bands(points: points, runs: meta.runs, mle: mle).text, to: folder + "/bands.csv")
        try AtomicFile.write(PlotScripts.splitTable(summaries).text, to: folder + "/split.csv")

        let seeds = meta.seeds.count
        var scripts: [(stem: String, text: String)] = []
        let range = elboRange(summaries: summaries, points: points, mle: mle)
        for axis in PlotScripts.axes {
            scripts.append((axis.2, PlotScripts.elbo(axis: axis, experiment: meta.experiment, runs: meta.runs, seeds: seeds, mle: mle, yRange: range)))
        }
        scripts.append(("gap-seconds", PlotScripts.gap(experiment: meta.experiment, runs: meta.runs, seeds: seeds, mle: mle)))
        scripts.append(("gap-split", PlotScripts.split(experiment: meta.experiment, runs: summaries.count)))

        var extra = ""
        switch meta.kind {
        case .curves:
            break
        case .gradientVariance:
            let table = try CSVTable.read(path: folder + "/variance.csv")
            let rows = try varianceRows(table)
            scripts.insert(("variance", GradientVarianceStudy.script(experiment: meta.experiment, rows: rows)), at: 0)
            extra = varianceMarkdown(rows, note: meta.varianceNote)
        case .scaling:
            let table = scalingTable(meta: meta, summaries: summaries)
            try AtomicFile.write(table.text, to: folder + "/scaling.csv")
            scripts.insert(("scaling", scalingScript(experiment: meta.experiment, meta: meta)), at: 0)
            extra = scalingMarkdown(table)
        }

        for s in scripts { try AtomicFile.write(s.text, to: "\(folder)/\(s.stem).gp") }
        var warnings: [String] = []
        var drawn: [String] = []
        let executable: String?
        switch drawing {
        case .off: executable = nil
        case let .executable(path): executable = path
        case .automatic:
            executable = Gnuplot.locate()
            if executable == nil {
                warnings.append("gnuplot was not found on PATH: the plot scripts (*.gp) in \(folder) are written but not drawn; install gnuplot (`make deps`) and run `elbolab plot \(folder)`")
            }
        }
        if let executable {
            for s in scripts {
                // Stale images must not pass for new ones.
                for ext in ["png", "svg"] { try? FileManager.default.removeItem(atPath: "\(folder)/\(s.stem).\(ext)") }
                if let problem = Gnuplot.draw(script: "\(s.stem).gp", in: folder, executable: executable) {
                    warnings.append(problem)
                } else {
                    drawn += ["\(s.stem).png", "\(s.stem).svg"]
                }
            }
        }
        try AtomicFile.write(markdown(meta: meta, summaries: summaries, extra: extra, drawn: drawn,
                                      scripts: scripts.map(\.stem)), to: folder + "/summary.md")
        return ReportOutcome(plots: drawn, scripts: scripts.map { "\($0.stem).gp" }, warnings: warnings)
    }

    /// The ELBO plots' y-range: the last stretch of the approach to the MLE, ten times the
    /// largest final gap (at least 0.05 nats), never beyond where the curves start.
    static func elboRange(summaries: [RunSummary], points: [CurvePoint], mle: [String: Double]) -> (Double, Double)? {
        let ceilings = summaries.compactMap { mle[$0.run] }
        guard let top = ceilings.max(), let bottom = ceilings.min() else { return nil }
        let finalGap = summaries.compactMap { $0.statistics["gap_to_mle"]?.mean }.filter { $0.isFinite }.max() ?? 0
        let lowest = points.map(\.elbo).filter { $0.isFinite }.min() ?? bottom
        let span = min(max(10 * max(finalGap, 0), 0.05), max(bottom - lowest, 0.05))
        return (bottom - span, top + 0.1 * span)
    }

    // MARK: Markdown

    static func markdown(meta: ExperimentMeta, summaries: [RunSummary], extra: String, drawn: [String], scripts: [String]) -> String {
        var out = "# \(meta.experiment)" + (meta.title.isEmpty || meta.title == meta.experiment ? "" : ": \(meta.title)") + "\n\n"
        if !meta.description.isEmpty { out += meta.description + "\n\n" }
        out += "- Data: \(meta.data).\n"
        out += "- Seeds: \(meta.seeds.map(String.init).joined(separator: ", ")) (each seed sets the initial θ, the encoder's initial weights and the Monte Carlo draws).\n"
        if !meta.spec.isEmpty { out += "- Spec: `\(meta.spec)`; files of record: `curves.csv`, `runs.csv`, `meta.json` (see results/README.md).\n" }
        if meta.wallSeconds > 0 { out += "- Wall-clock time of the whole experiment: \(String(format: "%.1f", meta.wallSeconds)) s.\n" }
        out += "\n## Runs\n\n"
        out += ExperimentSummary.markdownTable(["run", "strategy", "settings"], meta.runs.map {
            [$0.label, $0.strategy, $0.settings.joined(separator: ", ")]
        })
        out += "\n" + ExperimentSummary.markdown(summaries, truthKnown: meta.truthKnown, seeds: meta.seeds.count)
        if !extra.isEmpty { out += "\n" + extra }
        out += "\n## Plots\n\n"
        let captions = ["variance": "Variance of the gradient estimators against K",
                        "scaling": "Cost against the data size N",
                        "elbo-iteration": "ELBO against iterations",
                        "elbo-passes": "ELBO against data passes",
                        "elbo-seconds": "ELBO against training seconds",
                        "gap-seconds": "Gap to the MLE against training seconds (log–log)",
                        "gap-split": "The final gap split: θ short of the MLE, approximation, amortisation"]
        for stem in scripts {
            let caption = captions[stem] ?? stem
            if drawn.contains("\(stem).png") {
                out += "### \(caption)\n\n![\(caption)](\(stem).png)\n\n([SVG](\(stem).svg), script [\(stem).gp](\(stem).gp))\n\n"
            } else {
                out += "- \(caption): not drawn; script [\(stem).gp](\(stem).gp)\n"
            }
        }
        return out
    }

    // MARK: Gradient variance

    static func varianceRows(_ t: CSVTable) throws -> [GradientVarianceStudy.Row] {
        let est = try t.strings("estimator"), kl = try t.strings("kl"), k = try t.counts("samples"), block = try t.strings("block")
        let coords = try t.counts("coordinates"), reps = try t.counts("repeats"), tv = try t.numbers("total_variance")
        let norm = try t.numbers("exact_norm2"), me = try t.numbers("mean_error2")
        return try t.rows.indices.map { i in
            guard let e = GradientEstimator(rawValue: est[i]), let l = KLEstimator(rawValue: kl[i]) else {
                throw InputError("\(t.name):\(i + 2): unknown estimator \(JSON.quote(est[i])) or kl \(JSON.quote(kl[i]))")
            }
            return GradientVarianceStudy.Row(estimator: e, kl: l, samples: k[i], block: block[i], coordinates: coords[i],
                                             repeats: reps[i], totalVariance: tv[i] ?? .nan,
                                             exactNorm2: norm[i] ?? .nan, meanError2: me[i] ?? .nan)
        }
    }

    static func varianceMarkdown(_ rows: [GradientVarianceStudy.Row], note: String) -> String {
        var out = "## Gradient-estimator variance\n\n"
        if !note.isEmpty { out += note + "\n\n" }
        out += "Total variance = Σ over the block's coordinates of the sample variance of the estimates; relative = "
        out += "total variance / ‖exact gradient‖². \"mean error²\" is ‖mean estimate − exact gradient‖²; for an unbiased "
        out += "estimator it is about total variance / repeats. The score-function estimator's baseline is the mean of the "
        out += "other K − 1 samples (leave-one-out), so with K = 1 it has none.\n\n"
        out += ExperimentSummary.markdownTable(
            ["estimator", "KL", "K", "block", "total variance", "relative", "mean error²", "variance / repeats"],
            rows.map { r in
                [r.estimator.rawValue, r.kl.rawValue, String(r.samples), r.block, ExperimentSummary.general(r.totalVariance),
                 ExperimentSummary.general(r.totalVariance / r.exactNorm2), ExperimentSummary.general(r.meanError2),
                 ExperimentSummary.general(r.totalVariance / Double(r.repeats))]
            })
        return out
    }

    // MARK: Scaling

    /// `scaling.csv`: per base run and N, the mean seconds per iteration and the mean seconds
    /// to 0.01 nats/point of the MLE (over the seeds that got there).
    static func scalingTable(meta: ExperimentMeta, summaries: [RunSummary]) -> CSVTable {
        var rows: [[String]] = []
        for run in meta.runs {
            guard let s = summaries.first(where: { $0.run == run.label }) else { continue }
            let to = s.statistics["seconds_to_0.01"]
            rows.append([run.base, s.strategy, String(run.count), String(s.seeds),
                         field(s.statistics["seconds_per_iteration"]?.mean), field(s.statistics["iterations"]?.mean),
                         field(to?.mean), String(to?.count ?? 0), field(s.statistics["gap_to_mle"]?.mean)])
        }
        return CSVTable(header: ["run", "strategy", "n", "seeds", "seconds_per_iteration", "iterations",
                                 "seconds_to_0.01", "reached_0.01", "final_gap"], rows: rows, name: "scaling.csv")
    }

    static func scalingScript(experiment: String, meta: ExperimentMeta) -> String {
        var bases: [String] = []
        for r in meta.runs where !bases.contains(r.base) { bases.append(r.base) }
        let sizes = meta.runs.map(\.count).filter { $0 > 0 }
        let xRange = sizes.isEmpty ? "[*:*]" : "[\(formatNumber(Double(sizes.min() ?? 1) / 2)):\(formatNumber(Double(sizes.max() ?? 1) * 2))]"
        func panel(column: Int, title: String, ylabel: String, key: Bool) -> String {
            let parts = bases.enumerated().map { i, b in
                "'scaling.csv' skip 1 using (strcol(1) eq \(PlotScripts.quote(b)) ? $3 : NaN):\(column) with linespoints lw 2 pt 7 lc rgb '\(PlotScripts.palette[i % PlotScripts.palette.count])' title \(PlotScripts.quote(b))"
            }
            return """
                set title \(PlotScripts.quote(title))
                set ylabel \(PlotScripts.quote(ylabel))
                \(key ? "set key below" : "unset key")
                plot \\
                  \(parts.joined(separator: ", \\\n      "))
            """
        }
        let header = """
        set logscale xy
        set xlabel 'number of points N (log scale)'
        set format y '%.0e'
        set grid
        set xrange \(xRange)
        """
        let body = """
            set multiplot layout 1,2 title \(PlotScripts.quote("\(experiment): cost against the data size (means over seeds)"))
        \(panel(column: 5, title: "seconds per iteration", ylabel: "seconds per iteration (log scale)", key: true))
        \(panel(column: 7, title: "seconds to within 0.01 nats/point of the MLE (seeds that got there)", ylabel: "seconds (log scale)", key: true))
            unset multiplot
        """
        return PlotScripts.frame(stem: "scaling", width: 1300, height: 600, header: header, body: body)
    }

    static func scalingMarkdown(_ t: CSVTable) -> String {
        var out = "## Scaling with N\n\n"
        out += "Means over seeds. Seconds to 0.01: training seconds until the exact ELBO was within 0.01 nats/point of "
        out += "the MLE (seeds that got there, out of all seeds).\n\n"
        out += ExperimentSummary.markdownTable(
            ["run", "N", "s / iteration", "iterations", "seconds to 0.01", "final gap"],
            t.rows.map { r in
                func g(_ i: Int) -> String { Double(r[i]).map(ExperimentSummary.general) ?? "—" }
                return [r[0], r[2], g(4), g(5), "\(g(6)) (\(r[7])/\(r[3]))", g(8)]
            })
        return out
    }
}
