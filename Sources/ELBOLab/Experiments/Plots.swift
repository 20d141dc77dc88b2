import Foundation

/// Whether and with which gnuplot the report draws its plots.
public enum PlotDrawing: Sendable, Equatable {
    /// `gnuplot` from PATH; when missing, the scripts are written and the drawing is skipped.
    case automatic
    /// Write the scripts, draw nothing.
    case off
    /// This gnuplot executable.
    case executable(String)
}

/// Runs gnuplot as a subprocess.
public enum Gnuplot {
    /// The gnuplot on PATH, or nil.
    public static func locate() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/gnuplot"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `executable script` in `folder`; nil on success, otherwise what went wrong.
    public static func draw(script: String, in folder: String, executable: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [script]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch {
            return "\(executable): could not start: \((error as NSError).localizedDescription)"
        }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus != 0 {
            let lines = text.split(separator: "\n").suffix(3).joined(separator: " / ")
            return "gnuplot \(script) failed (status \(process.terminationStatus)): \(lines)"
        }
        return nil
    }
}

/// The gnuplot scripts of a report and the derived tables they read.
enum PlotScripts {
    /// A colour per run (matplotlib's tab10, then darker variants).
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                          "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]

    /// The axes the ELBO is drawn against: (bands.csv name, axis label, file stem).
    static let axes = [("iteration", "iteration", "elbo-iteration"),
                       ("data_passes", "data passes (sweeps over the N points)", "elbo-passes"),
                       ("seconds", "training seconds (scoring excluded)", "elbo-seconds")]

    /// Below this, gaps are drawn at this value on log axes (exact methods reach ~1e-15).
    static let gapFloor = 1e-10

    struct Style {
        var color: String
        var dash: Int
    }

    /// Colour by base run, dash type by data size (scaling) — one style per run label.
    static func styles(_ runs: [ExperimentMeta.Run]) -> [Style] {
        var bases: [String] = [], counts: [Int] = []
        for r in runs {
            if !bases.contains(r.base) { bases.append(r.base) }
            if !counts.contains(r.count) { counts.append(r.count) }
        }
        counts.sort()
        return runs.map { r in
            let b = bases.firstIndex(of: r.base) ?? 0
            let c = counts.count > 1 ? (counts.firstIndex(of: r.count) ?? 0) : 0
            return Style(color: palette[b % palette.count], dash: [1, 2, 4, 5][c % 4])
        }
    }

    /// A gnuplot single-quoted string.
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    /// The lines that draw the same plot as PNG and SVG.
    static func frame(stem: String, width: Int = 1100, height: Int = 700, header: String, body: String) -> String {
        """
        # \(stem).gp — written by elbolab; edit it and run `gnuplot \(stem).gp` in this folder to redraw
        # \(stem).png and \(stem).svg (`elbolab plot <folder>` rewrites it).
        \(header)
        set datafile separator ','
        set termoption noenhanced
        do for [fmt in 'png svg'] {
          if (fmt eq 'png') { set terminal pngcairo size \(width),\(height) noenhanced font 'Sans,11'; set output '\(stem).png' } else { set terminal svg size \(width),\(height) noenhanced font 'Sans,11' background rgb 'white'; set output '\(stem).svg' }
        \(body)
          set output
        }

        """
    }

    // MARK: Bands

    /// For each run and axis, the ELBO of every seed on a common grid of x values (the union of
    /// the seeds' logged x > 0, linear interpolation between logged rows, a seed that stopped
    /// held at its final value), then min, median and max over seeds; gaps are MLE − ELBO.
    static func bands(points: [CurvePoint], runs: [ExperimentMeta.Run], mle: [String: Double]) -> CSVTable {
        var rows: [[String]] = []
        var byRun: [String: [UInt64: [CurvePoint]]] = [:]
        var seedOrder: [String: [UInt64]] = [:]
        for p in points {
            if byRun[p.run]?[p.seed] == nil { seedOrder[p.run, default: []].append(p.seed) }
            byRun[p.run, default: [:]][p.seed, default: []].append(p)
        }
        for (index, run) in runs.enumerated() {
            guard let curves = byRun[run.label], let ceiling = mle[run.label] else { continue }
            let seeds = seedOrder[run.label] ?? []
            for (axis, _, _) in axes {
                func x(_ p: CurvePoint) -> Double {
                    switch axis {
                    case "iteration": return Double(p.iteration)
                    case "data_passes": return p.dataPasses
                    default: return p.seconds
                    }
                }
                let series = seeds.compactMap { curves[$0] }.map { c in c.map { (x($0), $0.elbo) } }
                var grid = Array(Set(series.flatMap { $0.map(\.0) }.filter { $0 > 0 })).sorted()
                if grid.count > 1500 {
                    // Thin evenly: the plot needs shape, not every row.
                    let step = Double(grid.count - 1) / 1499
                    grid = (0..<1500).map { grid[Int((Double($0) * step).rounded())] }
                }
                for gx in grid {
                    let values = series.map { interpolate($0, at: gx) }.sorted()
                    guard let lo = values.first, let hi = values.last else { continue }
                    let mid = values.count % 2 == 1 ? values[values.count / 2]
                        : (values[values.count / 2 - 1] + values[values.count / 2]) / 2
                    rows.append([String(index), run.label, axis, field(gx), field(lo), field(mid), field(hi),
                                 field(ceiling - hi), field(ceiling - mid), field(ceiling - lo)])
                }
            }
        }
        return CSVTable(header: ["run_index", "run", "axis", "x", "elbo_min", "elbo_median", "elbo_max",
                                 "gap_min", "gap_median", "gap_max"], rows: rows, name: "bands.csv")
    }

    /// The value of a piecewise-linear series (x non-decreasing) at `x`, held flat past its end.
    static func interpolate(_ s: [(Double, Double)], at x: Double) -> Double {
        guard let last = s.last else { return .nan }
        if x >= last.0 { return last.1 }
        var lo = 0, hi = s.count - 1
        // Binary search for the last row with x_k ≤ x.
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if s[mid].0 <= x { lo = mid } else { hi = mid }
        }
        let (x0, y0) = s[lo], (x1, y1) = s[hi]
        if x <= x0 || x1 <= x0 { return y0 }
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }

    // MARK: Scripts

    /// ELBO against `axis`: median line and min–max band per run, the MLE as a dashed line.
    static func elbo(axis: (String, String, String), experiment: String, runs: [ExperimentMeta.Run], seeds: Int,
                     mle: [String: Double], yRange: (Double, Double)?) -> String {
        let styles = styles(runs)
        var parts: [String] = []
        for (i, run) in runs.enumerated() where mle[run.label] != nil {
            let s = styles[i]
            let xsel = "(strcol(3) eq \(quote(axis.0)) && $1 == \(i) ? $4 : NaN)"
            parts.append("'bands.csv' skip 1 using \(xsel):5:7 with filledcurves fc rgb '\(s.color)' fs transparent solid 0.18 noborder notitle")
            parts.append("'bands.csv' skip 1 using \(xsel):6 with lines lw 2 dt \(s.dash) lc rgb '\(s.color)' title \(quote(run.label))")
        }
        let ceilings = Array(Set(runs.compactMap { mle[$0.label] })).sorted()
        for (k, c) in ceilings.enumerated() {
            parts.append("\(formatNumber(c)) with lines dt 2 lw 1.5 lc rgb 'black' " + (k == 0 ? "title 'MLE log-likelihood (closed form)'" : "notitle"))
        }
        let header = """
        set title \(quote("\(experiment): exact ELBO vs \(axis.0 == "data_passes" ? "data passes" : axis.0) — median over \(seeds) seed\(seeds == 1 ? "" : "s"), band = min–max"))
        set xlabel \(quote(axis.1 + " (log scale)"))
        set ylabel 'ELBO (nats per point)'
        set logscale x
        set format x '%g'
        set grid
        set key outside right top
        \(yRange.map { "set yrange [\(formatNumber($0.0)):\(formatNumber($0.1))]  # the approach to the MLE; use [*:*] for the whole curve" } ?? "set yrange [*:*]")
        """
        return frame(stem: axis.2, header: header, body: "  plot \\\n    " + parts.joined(separator: ", \\\n    "))
    }

    /// The gap MLE − ELBO against training seconds, log–log, with the report's thresholds.
    static func gap(experiment: String, runs: [ExperimentMeta.Run], seeds: Int, mle: [String: Double]) -> String {
        let styles = styles(runs)
        var parts: [String] = []
        for (i, run) in runs.enumerated() where mle[run.label] != nil {
            let s = styles[i]
            let xsel = "(strcol(3) eq 'seconds' && $1 == \(i) ? $4 : NaN)"
            parts.append("'bands.csv' skip 1 using \(xsel):(fl($8)):(fl($10)) with filledcurves fc rgb '\(s.color)' fs transparent solid 0.18 noborder notitle")
            parts.append("'bands.csv' skip 1 using \(xsel):(fl($9)) with lines lw 2 dt \(s.dash) lc rgb '\(s.color)' title \(quote(run.label))")
        }
        for (k, t) in FitResult.thresholds.enumerated() {
            parts.append("\(formatNumber(t)) with lines dt 3 lw 1 lc rgb '#555555' " + (k == 0 ? "title 'thresholds 0.1, 0.01, 0.001'" : "notitle"))
        }
        let header = """
        set title \(quote("\(experiment): gap to the MLE (MLE − ELBO) vs training seconds — median over \(seeds) seed\(seeds == 1 ? "" : "s"), band = min–max"))
        set xlabel 'training seconds (scoring excluded, log scale)'
        set ylabel 'MLE − ELBO (nats per point, log scale)'
        set logscale xy
        set format x '%g'
        set format y '%.0e'
        set grid
        set key outside right top
        # Exact methods reach rounding (~1e-15); gaps below the floor are drawn at the floor.
        floor = \(formatNumber(gapFloor))
        fl(v) = v < floor ? floor : v
        """
        return frame(stem: "gap-seconds", header: header, body: "  plot \\\n    " + parts.joined(separator: ", \\\n    "))
    }

    /// `split.csv`: the final gap to the MLE per run, split three ways (means over seeds).
    static func splitTable(_ summaries: [RunSummary]) -> CSVTable {
        CSVTable(header: ["run", "strategy", "model_gap", "approximation_gap", "amortization_gap", "gap_to_mle"],
                 rows: summaries.map { s in
                     let ll = s.statistics["loglik"]?.mean, mle = s.statistics["mle_loglik"]?.mean
                     return [s.run, s.strategy, field(mle.flatMap { m in ll.map { m - $0 } }),
                             field(s.statistics["approximation_gap"]?.mean), field(s.statistics["amortization_gap"]?.mean),
                             field(s.statistics["gap_to_mle"]?.mean)]
                 }, name: "split.csv")
    }

    /// Grouped bars of the split on a log scale (the parts differ by orders of magnitude).
    static func split(experiment: String, runs: Int) -> String {
        let header = """
        set title \(quote("\(experiment): the final gap to the MLE, split three ways (mean over seeds)"))
        set ylabel 'nats per point (log scale)'
        set logscale y
        set format y '%.0e'
        set style data histograms
        set style histogram clustered gap 1
        set style fill solid 0.85 border rgb '#333333'
        set xtics rotate by 30 right
        set grid ytics
        set key above
        set bmargin 9
        # Exact parts are 0 or rounding (~1e-15): parts below the floor get no bar.
        floor = 1e-12
        set yrange [floor:*]
        cut(v) = v < floor ? floor : v
        """
        let body = """
          plot 'split.csv' skip 1 using (cut($3)):xtic(1) lc rgb '#7f7f7f' title 'θ short of the MLE (MLE − log p(Y; θ))', \\
               '' skip 1 using (cut($4)) lc rgb '#1f77b4' title 'approximation gap (log p(Y; θ) − best ELBO in the family)', \\
               '' skip 1 using (cut($5)) lc rgb '#ff7f0e' title 'amortisation / optimisation gap (best ELBO − ELBO of q)'
        """
        return frame(stem: "gap-split", width: max(1000, 200 + 110 * runs), height: 700, header: header, body: body)
    }
}
