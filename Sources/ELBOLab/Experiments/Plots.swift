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

    /// The gnuplot `drawing` asks for, and the warning to give when it is wanted but missing
    /// (`rerun` says how to draw the scripts once it is installed).
    static func executable(for drawing: PlotDrawing, folder: String, rerun: String) -> (path: String?, warning: String?) {
        switch drawing {
        case .off: return (nil, nil)
        case let .executable(path): return (path, nil)
        case .automatic:
            if let path = locate() { return (path, nil) }
            return (nil, "gnuplot was not found on PATH: the plot scripts (*.gp) in \(folder) are written but not drawn; install gnuplot (`make deps`) and \(rerun)")
        }
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
///
/// Series are keyed by number, never by label: the tables gnuplot reads carry a run's index in
/// the first column and its label (which may hold commas, quotes or any text) only as the last
/// column, which no script reads; labels reach gnuplot only as quoted titles in the scripts.
enum PlotScripts {
    /// The strategy families, in panel order, with their colours (colour encodes the family).
    static let families: [(strategy: String, title: String, color: (Int, Int, Int))] = [
        ("em", "exact EM", (0x33, 0x33, 0x33)),
        ("per-datapoint", "per-datapoint VI (part A)", (0x1f, 0x77, 0xb4)),
        ("amortized", "amortized VI (part B)", (0xe6, 0x6a, 0x00)),
        ("joint", "joint training (part C)", (0xc6, 0x28, 0x28)),
        ("mle", "closed-form MLE", (0x7f, 0x7f, 0x7f)),
    ]

    /// At most this many series share a panel; larger families are split over panels.
    static let panelLimit = 6

    /// The axes the gap is drawn against: (bands.csv axis, axis label, file stem).
    static let axes = [("iteration", "iteration", "gap-iteration"),
                       ("data_passes", "data passes (sweeps over the N points)", "gap-passes"),
                       ("seconds", "training seconds (scoring excluded)", "gap-seconds")]

    /// Gaps at or below `zeroGap` are zero up to rounding; they are drawn at `floorLevel`, on a
    /// tic labelled as such, so that a zero is not mistaken for a missing value.
    static let zeroGap = 1e-10
    static let floorLevel = 3.1622776601683794e-11

    struct Style {
        var color: String
        var dash: String
        var family: Int
    }

    /// The family index of a strategy name (unknown strategies join the last family).
    static func familyIndex(_ strategy: String) -> Int {
        families.firstIndex { $0.strategy == strategy } ?? families.count - 1
    }

    /// `#rrggbb` for a family's colour, lighter or darker by `shade` (−1…1).
    static func hex(_ c: (Int, Int, Int), shade: Double = 0) -> String {
        func mix(_ v: Int) -> Int {
            let x = Double(v)
            let y = shade >= 0 ? x + (255 - x) * shade : x * (1 + shade)
            return max(0, min(255, Int(y.rounded())))
        }
        return String(format: "#%02x%02x%02x", mix(c.0), mix(c.1), mix(c.2))
    }

    /// Colour by family, dash (and a slight shade) by the run's place within its family.
    static func styles(_ runs: [ExperimentMeta.Run]) -> [Style] {
        var seen: [Int: Int] = [:]
        // gnuplot's dash types 1–5, then a long dash: a sixth index would wrap to solid.
        let dashes = ["1", "2", "4", "5", "3", "(18,6)"]
        let shades = [0, -0.25, 0.3, -0.45, 0.5, -0.1]
        return runs.map { r in
            let f = familyIndex(r.strategy)
            let k = seen[f, default: 0]
            seen[f] = k + 1
            return Style(color: hex(families[f].color, shade: shades[k % shades.count]), dash: dashes[k % dashes.count], family: f)
        }
    }

    /// The panels of a small-multiples figure: (title, run indices), one or more per family.
    static func panels(_ runs: [ExperimentMeta.Run], include: (Int) -> Bool = { _ in true }) -> [(String, [Int])] {
        var byFamily: [Int: [Int]] = [:]
        for (i, r) in runs.enumerated() where include(i) { byFamily[familyIndex(r.strategy), default: []].append(i) }
        var out: [(String, [Int])] = []
        for f in byFamily.keys.sorted() {
            let members = byFamily[f] ?? []
            let parts = stride(from: 0, to: members.count, by: panelLimit).map { Array(members[$0..<min($0 + panelLimit, members.count)]) }
            for (k, p) in parts.enumerated() {
                out.append((families[f].title + (parts.count > 1 ? " (\(k + 1) of \(parts.count))" : ""), p))
            }
        }
        return out
    }

    /// A gnuplot single-quoted string.
    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }

    /// The lines that draw the same plot as PNG and as an interactive SVG (a click on a legend
    /// entry hides its series; gnuplot's own script is embedded, nothing is fetched).
    static func frame(stem: String, width: Int = 1100, height: Int = 700, header: String, body: String,
                      redraw: String = "(`elbolab plot <folder>` rewrites it)") -> String {
        """
        # \(stem).gp — written by elbolab; edit it and run `gnuplot \(stem).gp` in this folder to redraw
        # \(stem).png and \(stem).svg \(redraw).
        \(header)
        set datafile separator ','
        set termoption noenhanced
        do for [fmt in 'png svg'] {
          if (fmt eq 'png') { set terminal pngcairo size \(width),\(height) noenhanced font 'Sans,11'; set output '\(stem).png' } else { set terminal svg size \(width),\(height) mouse standalone noenhanced font 'Sans,11' background rgb 'white'; set output '\(stem).svg' }
        \(body)
          set output
        }

        """
    }

    /// A multiplot layout (rows, columns) for `count` panels.
    static func layout(_ count: Int) -> (rows: Int, cols: Int) {
        let cols = count <= 1 ? 1 : 2
        return ((count + cols - 1) / cols, cols)
    }

    // MARK: Bands

    /// For each run and axis, the ELBO of every seed on a common grid of x values (the union of
    /// the seeds' logged x > 0, linear interpolation between logged rows, a seed that stopped
    /// held at its final value), then min, median and max over seeds; gaps are MLE − ELBO.
    static func bands(points: [CurvePoint], runs: [ExperimentMeta.Run], mle: [String: Double]) -> CSVTable {
        var rows: [[String]] = []
        let byRun = grouped(points)
        for (index, run) in runs.enumerated() {
            guard let curves = byRun[run.label], let ceiling = mle[run.label] else { continue }
            for (axis, _, _) in axes {
                for (gx, lo, mid, hi) in spread(curves, axis: axis, value: \.elbo) {
                    rows.append([String(index), axis, field(gx), field(lo), field(mid), field(hi),
                                 field(ceiling - hi), field(ceiling - mid), field(ceiling - lo), run.label])
                }
            }
        }
        return CSVTable(header: ["run_index", "axis", "x", "elbo_min", "elbo_median", "elbo_max",
                                 "gap_min", "gap_median", "gap_max", "run"], rows: rows, name: "bands.csv")
    }

    /// Points by run label, then by seed in file order.
    static func grouped(_ points: [CurvePoint]) -> [String: [[CurvePoint]]] {
        var byRun: [String: [UInt64: [CurvePoint]]] = [:]
        var seedOrder: [String: [UInt64]] = [:]
        for p in points {
            if byRun[p.run]?[p.seed] == nil { seedOrder[p.run, default: []].append(p.seed) }
            byRun[p.run, default: [:]][p.seed, default: []].append(p)
        }
        var out: [String: [[CurvePoint]]] = [:]
        for (run, seeds) in seedOrder { out[run] = seeds.compactMap { byRun[run]?[$0] } }
        return out
    }

    /// The x of a point on `axis`.
    static func x(_ p: CurvePoint, _ axis: String) -> Double {
        switch axis {
        case "iteration": return Double(p.iteration)
        case "data_passes": return p.dataPasses
        default: return p.seconds
        }
    }

    /// (x, min, median, max) over seeds of `value` on the union grid of x > 0 (at most 1500 points).
    static func spread(_ curves: [[CurvePoint]], axis: String, value: (CurvePoint) -> Double) -> [(Double, Double, Double, Double)] {
        let series = curves.map { c in c.map { (x($0, axis), value($0)) } }
        var grid = Array(Set(series.flatMap { $0.map(\.0) }.filter { $0 > 0 })).sorted()
        if grid.count > 1500 {
            // Thin evenly: the plot needs shape, not every row.
            let step = Double(grid.count - 1) / 1499
            grid = (0..<1500).map { grid[Int((Double($0) * step).rounded())] }
        }
        return grid.compactMap { gx in
            let values = series.map { interpolate($0, at: gx) }.sorted()
            guard let lo = values.first, let hi = values.last else { return nil }
            return (gx, lo, median(values), hi)
        }
    }

    /// The median of sorted values.
    static func median(_ sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
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

    /// The y-axis lines shared by every gap plot: log scale, zero marked at the floor.
    static func gapAxis(top: Double) -> String {
        let upper = max(10, pow(10, ceil(log10(max(top, 1e-9)))) * 3)
        return """
        set logscale y
        set format y '%.0e'
        set yrange [\(formatNumber(floorLevel / 2)):\(formatNumber(upper))]
        set ytics add ('0 (≤1e-10)' \(formatNumber(floorLevel)))
        # Gaps at or below 1e-10 are zero up to rounding (exact methods reach ~1e-15): drawn on the '0' tic.
        floor = \(formatNumber(floorLevel))
        fl(v) = v <= \(formatNumber(zeroGap)) ? floor : v
        """
    }

    /// The gap MLE − ELBO against `axis`, log–log, small multiples by strategy family: median
    /// line and min–max band over seeds per run, the 0.1 / 0.01 / 0.001 thresholds dotted.
    static func gap(axis: (String, String, String), experiment: String, runs: [ExperimentMeta.Run], seeds: Int,
                    mle: [String: Double], bands: CSVTable) -> String {
        let styles = styles(runs)
        let panels = panels(runs) { mle[runs[$0].label] != nil }
        // Shared ranges, so panels compare at a glance.
        let ax = (try? bands.strings("axis")) ?? [], xs = (try? bands.numbers("x")) ?? [], hi = (try? bands.numbers("gap_max")) ?? []
        let sel = ax.indices.filter { ax[$0] == axis.0 }
        let xmin = sel.compactMap { xs[$0] }.min() ?? 1, xmax = sel.compactMap { xs[$0] }.max() ?? 10
        let top = sel.compactMap { hi[$0] }.filter { $0.isFinite }.max() ?? 1
        let (rows, cols) = layout(panels.count)
        var body = "  set multiplot layout \(rows),\(cols) title \(quote("\(experiment): gap to the MLE (MLE − ELBO, nats/point) vs \(axis.0 == "data_passes" ? "data passes" : axis.0) — median over \(seeds) seed\(seeds == 1 ? "" : "s"), band = min–max; click a legend entry to hide it (SVG)"))\n"
        for (title, members) in panels {
            var parts: [String] = []
            for i in members {
                let s = styles[i]
                let xsel = "(strcol(2) eq \(quote(axis.0)) && $1 == \(i) ? $3 : NaN)"
                parts.append("'bands.csv' skip 1 using \(xsel):(fl($7)):(fl($9)) with filledcurves fc rgb '\(s.color)' fs transparent solid 0.15 noborder notitle")
                parts.append("'bands.csv' skip 1 using \(xsel):(fl($8)) with lines lw 2 dt \(s.dash) lc rgb '\(s.color)' title \(quote(runs[i].label))")
            }
            for (k, t) in FitResult.thresholds.enumerated() {
                parts.append("\(formatNumber(t)) with lines dt 3 lw 1 lc rgb '#999999' " + (k == 0 ? "title '0.1, 0.01, 0.001'" : "notitle"))
            }
            body += "  set title \(quote(title))\n  plot \\\n    " + parts.joined(separator: ", \\\n    ") + "\n"
        }
        body += "  unset multiplot"
        let header = """
        set xlabel \(quote(axis.1 + " (log scale)"))
        set ylabel 'MLE − ELBO (nats/point, log scale)'
        set logscale x
        set format x '%g'
        set xrange [\(formatNumber(xmin)):\(formatNumber(xmax * 1.05))]
        \(gapAxis(top: top))
        set grid
        set key top right font ',9' samplen 2.5 spacing 0.9 noopaque
        """
        return frame(stem: axis.2, width: cols == 1 ? 900 : 1300, height: 90 + 430 * rows, header: header, body: body)
    }

    /// `split.csv`: the final gap to the MLE per run, split three ways (medians over seeds).
    static func splitTable(_ summaries: [RunSummary]) -> CSVTable {
        CSVTable(header: ["row", "strategy", "model_gap", "approximation_gap", "amortization_gap", "gap_to_mle", "run"],
                 rows: summaries.enumerated().map { index, s in
                     [String(index), s.strategy, field(s.statistics["model_gap"]?.median),
                             field(s.statistics["approximation_gap"]?.median), field(s.statistics["amortization_gap"]?.median),
                             field(s.statistics["gap_to_mle"]?.median), s.run]
                 }, name: "split.csv")
    }

    /// The final gap split per run: three bars on a log scale (the parts differ by orders of
    /// magnitude); a part that is zero to rounding is a marked point on the '0' tic, not a missing bar.
    static func split(experiment: String, runs: [String]) -> String {
        // The first label, rotated 30° and ending at its bar, reaches left of the axis by about
        // cos 30° of its length: room for it, in characters, or it is cut at the figure's edge.
        let leftMargin = max(10, Int((Double(runs.first?.count ?? 0) * 0.8).rounded(.up)))
        let tics = runs.enumerated().map { "\(quote($0.element)) \($0.offset)" }.joined(separator: ", ")
        let header = """
        set title \(quote("\(experiment): the final gap to the MLE split three ways (median over seeds; click a legend entry to hide it)"))
        set ylabel 'nats per point (log scale)'
        set xtics (\(tics)) rotate by 30 right
        set xrange [-0.6:\(runs.count) - 0.4]
        set style fill solid 0.85 border rgb '#333333'
        set boxwidth 0.26
        set grid ytics
        set key above
        set bmargin 10
        set lmargin \(leftMargin)
        \(gapAxis(top: 1e2))
        set yrange [\(formatNumber(floorLevel / 2)):*]
        bar(v) = v > \(formatNumber(zeroGap)) ? v : NaN
        zero(v) = v <= \(formatNumber(zeroGap)) ? floor : NaN
        """
        let body = """
          plot 'split.csv' skip 1 using ($1 - 0.27):(bar($3)) with boxes lc rgb '#7f7f7f' title 'θ short of the MLE (MLE − log p(Y; θ))', \\
               '' skip 1 using ($1):(bar($4)) with boxes lc rgb '#1f77b4' title 'approximation gap (log p(Y; θ) − best ELBO in the family)', \\
               '' skip 1 using ($1 + 0.27):(bar($5)) with boxes lc rgb '#ff7f0e' title 'amortisation / optimisation gap (best ELBO − ELBO of q)', \\
               '' skip 1 using ($1 - 0.27):(zero($3)) with points pt 6 ps 1.6 lc rgb '#7f7f7f' notitle, \\
               '' skip 1 using ($1):(zero($4)) with points pt 6 ps 1.6 lc rgb '#1f77b4' notitle, \\
               '' skip 1 using ($1 + 0.27):(zero($5)) with points pt 6 ps 1.6 lc rgb '#ff7f0e' title 'open circle: zero (≤ 1e-10, rounding)'
        """
        return frame(stem: "gap-split", width: max(1000, 200 + 90 * runs.count), height: 700, header: header, body: body)
    }
}
