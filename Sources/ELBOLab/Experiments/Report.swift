import Foundation

/// What redrawing a report produced.
public struct ReportOutcome: Sendable {
    /// Plot files drawn (PNG and SVG), relative to the folder.
    public var plots: [String]
    /// Gnuplot scripts written, relative to the folder.
    public var scripts: [String]
    /// Problems that did not stop the report (gnuplot missing or failing).
    public var warnings: [String]
    /// The sentences of `## What this shows`.
    public var findings: [Finding] = []
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
        let bands = PlotScripts.bands(points: points, runs: meta.runs, mle: mle)
        try AtomicFile.write(bands.text, to: folder + "/bands.csv")
        try AtomicFile.write(PlotScripts.splitTable(summaries).text, to: folder + "/split.csv")

        let seeds = meta.seeds.count
        var scripts: [(stem: String, text: String)] = []
        for axis in PlotScripts.axes {
            scripts.append((axis.2, PlotScripts.gap(axis: axis, experiment: meta.experiment, runs: meta.runs, seeds: seeds, mle: mle, bands: bands)))
        }
        scripts.append(("gap-split", PlotScripts.split(experiment: meta.experiment, runs: summaries.map(\.run))))

        var extra = ""
        var findings: [Finding] = []
        switch meta.kind {
        case .curves:
            break
        case .gradientVariance:
            let table = try CSVTable.read(path: folder + "/variance.csv")
            let rows = try varianceRows(table)
            scripts.insert(("variance", GradientVarianceStudy.script(experiment: meta.experiment, rows: rows)), at: 0)
            extra = varianceMarkdown(rows, note: meta.varianceNote)
            findings += ExperimentFindings.variance(rows)
        case .scaling:
            let table = scalingTable(meta: meta, summaries: summaries)
            try AtomicFile.write(table.text, to: folder + "/scaling.csv")
            scripts.insert(("scaling", scalingScript(experiment: meta.experiment, meta: meta, table: table)), at: 0)
            extra = scalingMarkdown(table)
            findings += ExperimentFindings.scaling(table)
        }
        // Only with θ held is the final amortisation gap the encoder family's alone to answer for.
        let held = Set(meta.runs.filter { $0.settings.contains { $0.hasPrefix("theta ") } }.map(\.label))
        findings += ExperimentFindings.amortizationOptimum(summaries.filter { held.contains($0.run) })
        var curveFindings = ExperimentFindings.curves(meta: meta, summaries: summaries, points: points, mle: mle)
        if meta.kind == .scaling {
            // Runs at different N are not rivals: who reaches a tolerance first is read per N in
            // the scaling table and figure, not across sizes.
            curveFindings.removeAll { f in f.claims.contains { $0.key.hasPrefix("first-to-") || $0.key.hasPrefix("reaches-") }
                || f.text.hasPrefix("Only runs of one family") || f.text.hasPrefix("Every run got within") }
        }
        findings += curveFindings
        findings = ExperimentFindings.selected(findings)

        for s in scripts { try AtomicFile.write(s.text, to: "\(folder)/\(s.stem).gp") }
        var drawn: [String] = []
        let (executable, missing) = Gnuplot.executable(for: drawing, folder: folder, rerun: "run `elbolab plot \(folder)`")
        var warnings = missing.map { [$0] } ?? []
        // Plots of an earlier layout (renamed since) must not pass for this run's.
        for old in ["elbo-iteration", "elbo-passes", "elbo-seconds"] {
            for ext in ["gp", "png", "svg"] { try? FileManager.default.removeItem(atPath: "\(folder)/\(old).\(ext)") }
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
        try AtomicFile.write(markdown(meta: meta, summaries: summaries, findings: findings, extra: extra, drawn: drawn,
                                      scripts: scripts.map(\.stem)), to: folder + "/summary.md")
        return ReportOutcome(plots: drawn, scripts: scripts.map { "\($0.stem).gp" }, warnings: warnings, findings: findings)
    }

    /// The figure captions, by file stem.
    static let captions = ["variance": "Variance of the gradient estimators against K (total over the points' m_n and log v_n; legend in the first panel)",
                           "scaling": "Cost against the data size N",
                           "gap-iteration": "Gap to the MLE against iterations (log–log)",
                           "gap-passes": "Gap to the MLE against data passes (log–log)",
                           "gap-seconds": "Gap to the MLE against training seconds (log–log)",
                           "gap-split": "The final gap split: θ short of the MLE, approximation, amortisation"]

    // MARK: Markdown

    static func markdown(meta: ExperimentMeta, summaries: [RunSummary], findings: [Finding], extra: String, drawn: [String], scripts: [String]) -> String {
        var out = "# \(meta.experiment)" + (meta.title.isEmpty || meta.title == meta.experiment ? "" : ": \(meta.title)") + "\n\n"
        out += ExperimentFindings.markdown(findings) + "\n"
        out += "## Setting\n\n"
        if !meta.description.isEmpty { out += meta.description + "\n\n" }
        out += "- Data: \(meta.data).\n"
        out += "- Seeds: \(meta.seeds.map(String.init).joined(separator: ", ")) (each seed sets the initial θ, the encoder's initial weights and the Monte Carlo draws).\n"
        if !meta.spec.isEmpty { out += "- Spec: `\(meta.spec)`; files of record: `curves.csv`, `runs.csv`, `meta.json` (see results/README.md).\n" }
        if meta.wallSeconds > 0 { out += "- Wall-clock time of the whole experiment: \(String(format: "%.1f", meta.wallSeconds)) s.\n" }
        out += tables(meta: meta, summaries: summaries, extra: extra)
        out += "\n## Plots\n\n"
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

    /// The tables of the summary (runs, final values, work, recovery, stops, and the study's own).
    static func tables(meta: ExperimentMeta, summaries: [RunSummary], extra: String) -> String {
        var out = "\n## Runs\n\n"
        out += ExperimentSummary.markdownTable(["run", "strategy", "settings"], meta.runs.map {
            [$0.label, $0.strategy, $0.settings.joined(separator: ", ")]
        })
        if meta.runs.contains(where: { $0.settings.contains { $0.hasPrefix("theta ") } }) {
            out += "\nRuns with `theta` set hold θ fixed (only q or the encoder is fitted): their θ term, MLE − log-lik, is fixed "
            out += "by construction (0 with `theta mle`), so their gap to the MLE is the approximation and amortisation gaps.\n"
        }
        out += "\n" + ExperimentSummary.markdown(summaries, truthKnown: meta.truthKnown, seeds: meta.seeds.count)
        if !extra.isEmpty { out += "\n" + extra }
        return out
    }

    // MARK: Gradient variance

    static func varianceRows(_ t: CSVTable) throws -> [GradientVarianceStudy.Row] {
        let est = try t.strings("estimator"), kl = try t.strings("kl"), k = try t.counts("samples"), block = try t.strings("block")
        let coords = try t.counts("coordinates"), reps = try t.counts("repeats"), tv = try t.numbers("total_variance")
        let norm = try t.numbers("exact_norm2"), me = try t.numbers("mean_error2")
        let stage = try t.strings("stage"), baseline = try t.strings("baseline")
        return try t.rows.indices.map { i in
            guard let e = GradientEstimator(rawValue: est[i]), let l = KLEstimator(rawValue: kl[i]) else {
                throw InputError("\(t.name):\(i + 2): unknown estimator \(JSON.quote(est[i])) or kl \(JSON.quote(kl[i]))")
            }
            return GradientVarianceStudy.Row(estimator: e, kl: l, samples: k[i], block: block[i], coordinates: coords[i],
                                             repeats: reps[i], totalVariance: tv[i] ?? .nan,
                                             exactNorm2: norm[i] ?? .nan, meanError2: me[i] ?? .nan, stage: stage[i],
                                             baseline: baseline[i] != "none")
        }
    }

    static func varianceMarkdown(_ rows: [GradientVarianceStudy.Row], note: String) -> String {
        var out = "## Gradient-estimator variance\n\n"
        if !note.isEmpty { out += note + "\n\n" }
        out += "Total variance = Σ over the block's coordinates of the sample variance of the estimates, in nats² (the "
        out += "gradient of a point's ELBO, in nats, with respect to its m_n and log v_n, or to θ); relative = total variance / "
        out += "‖exact gradient‖². \"mean error²\" is ‖mean estimate − exact gradient‖²; for an unbiased estimator it is about "
        out += "total variance / repeats. The score-function baseline is the mean of the other K − 1 samples (leave-one-out), "
        out += "so with K = 1 there is none. The θ block is pathwise for every estimator (only q's block differs).\n\n"
        out += ExperimentSummary.markdownTable(
            ["stage", "estimator", "K", "block", "total variance (nats²)", "relative", "mean error²", "variance / repeats"],
            rows.map { r in
                [r.stage, r.name, String(r.samples), r.block, ExperimentSummary.general(r.totalVariance),
                 ExperimentSummary.general(r.totalVariance / r.exactNorm2), ExperimentSummary.general(r.meanError2),
                 ExperimentSummary.general(r.totalVariance / Double(r.repeats))]
            })
        return out
    }

    // MARK: Scaling

    /// `scaling.csv`: per base run and N, the median seconds per iteration and the median seconds
    /// to 0.01 nats/point of the MLE (over the seeds that got there, with how many did).
    static func scalingTable(meta: ExperimentMeta, summaries: [RunSummary]) -> CSVTable {
        var rows: [[String]] = []
        var bases: [String] = []
        for r in meta.runs where !bases.contains(r.base) { bases.append(r.base) }
        for run in meta.runs {
            guard let s = summaries.first(where: { $0.run == run.label }) else { continue }
            let to = s.statistics["seconds_to_0.01"]
            rows.append([String(bases.firstIndex(of: run.base) ?? 0), s.strategy, String(run.count), String(s.seeds),
                         field(s.statistics["seconds_per_iteration"]?.median), field(s.statistics["iterations"]?.median),
                         field(to?.median), field(to?.minimum), field(to?.maximum), String(to?.count ?? 0),
                         field(s.statistics["gap_to_mle"]?.median), String(s.stopReasons["time"] ?? 0), run.base])
        }
        return CSVTable(header: ["run_index", "strategy", "n", "seeds", "seconds_per_iteration", "iterations",
                                 "seconds_to_0.01", "seconds_to_0.01_min", "seconds_to_0.01_max", "reached_0.01",
                                 "final_gap", "capped", "run"], rows: rows, name: "scaling.csv")
    }

    static func scalingScript(experiment: String, meta: ExperimentMeta, table: CSVTable) -> String {
        var bases: [String] = []
        for r in meta.runs where !bases.contains(r.base) { bases.append(r.base) }
        let reachedCounts = (try? table.counts("reached_0.01")) ?? [], indices = (try? table.counts("run_index")) ?? []
        let reached = Set(indices.indices.filter { reachedCounts.indices.contains($0) && reachedCounts[$0] > 0 }.map { indices[$0] })
        let sizes = meta.runs.map(\.count).filter { $0 > 0 }
        let xRange = sizes.isEmpty ? "[*:*]" : "[\(formatNumber(Double(sizes.min() ?? 1) / 2)):\(formatNumber(Double(sizes.max() ?? 1) * 2))]"
        func panel(column: Int, title: String, ylabel: String, key: Bool) -> String {
            let styles = PlotScripts.styles(bases.map { b in
                ExperimentMeta.Run(label: b, strategy: meta.runs.first { $0.base == b }?.strategy ?? "", settings: [], base: b, count: 0)
            })
            // The legend is the left panel's, where every run has points; the right panel draws
            // only the runs that got within 0.01 and names the others.
            let parts = bases.enumerated().compactMap { i, b -> String? in
                if !key && !reached.contains(i) { return nil }
                return "'scaling.csv' skip 1 using ($1 == \(i) ? $3 : NaN):\(column) with linespoints lw 2 pt 7 dt \(styles[i].dash) lc rgb '\(styles[i].color)' " + (key ? "title \(PlotScripts.quote(b))" : "notitle")
                    + (column == 7 ? ", 'scaling.csv' skip 1 using ($1 == \(i) ? $3 : NaN):\(column):8:9 with yerrorbars pt 7 lc rgb '\(styles[i].color)' notitle" : "")
            }
            let missing = bases.indices.filter { !reached.contains($0) }.map { bases[$0] }
            let note = key || missing.isEmpty ? "unset label" : "set label 1 \(PlotScripts.quote("not within 0.01 in any seed: " + missing.joined(separator: "; "))) at graph 0.02, graph 0.04 font ',9'"
            return """
                set title \(PlotScripts.quote(title))
                set ylabel \(PlotScripts.quote(ylabel))
                \(key ? "set key top left font ',9'" : "unset key")
                \(note)
                plot \\
                  \(parts.isEmpty ? "NaN notitle" : parts.joined(separator: ", \\\n      "))
            """
        }
        let header = """
        set logscale xy
        set xlabel 'number of points N (log scale)'
        set format y '%.0e'
        set grid
        set xrange \(xRange)
        set offsets 0, 0, graph 0.4, 0  # headroom above the lines for the legend
        """
        let body = """
            set multiplot layout 1,2 title \(PlotScripts.quote("\(experiment): cost against the data size (medians over seeds, bars = min–max; click a legend entry to hide it)"))
        \(panel(column: 5, title: "seconds per iteration", ylabel: "seconds per iteration (log scale)", key: true))
        \(panel(column: 7, title: "seconds to within 0.01 nats/point of the MLE (seeds that got there)", ylabel: "seconds (log scale)", key: false))
            unset multiplot
        """
        return PlotScripts.frame(stem: "scaling", width: 1300, height: 600, header: header, body: body)
    }

    static func scalingMarkdown(_ t: CSVTable) -> String {
        var out = "## Scaling with N\n\n"
        out += "Medians over seeds. Seconds to 0.01: training seconds until the exact ELBO was within 0.01 nats/point of "
        out += "the MLE, median [min – max] over the seeds that got there, and how many did. \"capped\": seeds stopped by the time cap.\n\n"
        out += ExperimentSummary.markdownTable(
            ["run", "N", "s / iteration", "iterations", "seconds to 0.01", "final gap", "capped"],
            t.rows.map { r in
                func g(_ i: Int) -> String { Double(r[i]).map(ExperimentSummary.general) ?? "—" }
                let reach = r[9] == "0" ? "not reached (0 of \(r[3]) seeds)"
                    : "\(g(6)) [\(g(7)) – \(g(8))], reached in \(r[9]) of \(r[3]) seeds"
                return [r[12], r[2], g(4), g(5), reach, g(10), "\(r[11]) of \(r[3])"]
            })
        return out
    }
}
