import Foundation

/// Median, range, mean and spread of one quantity over seeds.
///
/// With fewer than ten values no interval is given (a t-interval from two or three seeds is
/// mostly the t quantile, and goes negative for positive quantities); from ten on, the 95%
/// distribution-free interval of the median from order statistics, which lies within the
/// values and so keeps the sign of a positive quantity.
public struct SampleStatistics: Sendable, Equatable {
    /// How many values entered (non-finite and missing values are left out).
    public var count: Int
    public var median: Double
    public var mean: Double
    /// The sample standard deviation (n − 1); nil with fewer than two values.
    public var standardDeviation: Double?
    /// The 95% order-statistic interval of the median; nil with fewer than ``intervalMinimum`` values.
    public var interval: (low: Double, high: Double)?
    public var minimum: Double
    public var maximum: Double

    /// Values needed before an interval is reported.
    public static let intervalMinimum = 10

    public static func == (a: SampleStatistics, b: SampleStatistics) -> Bool {
        a.count == b.count && a.median == b.median && a.mean == b.mean && a.standardDeviation == b.standardDeviation
            && a.interval?.low == b.interval?.low && a.interval?.high == b.interval?.high
            && a.minimum == b.minimum && a.maximum == b.maximum
    }

    /// Statistics of the finite values among `values`; nil when there are none.
    public init?(_ values: [Double?]) {
        let xs = values.compactMap { $0 }.filter { $0.isFinite }.sorted()
        guard let lo = xs.first, let hi = xs.last else { return nil }
        count = xs.count
        let n = Double(xs.count)
        mean = xs.reduce(0, +) / n
        median = PlotScripts.median(xs)
        minimum = lo
        maximum = hi
        standardDeviation = xs.count >= 2 ? (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot() : nil
        interval = SampleStatistics.medianInterval(xs)
    }

    /// [x₍ₖ₎, x₍ₙ₋ₖ₊₁₎] with the largest k such that P(Bin(n, ½) ≤ k − 1) ≤ 0.025: covers the
    /// median with probability at least 95% whatever the distribution.
    static func medianInterval(_ sorted: [Double]) -> (low: Double, high: Double)? {
        let n = sorted.count
        guard n >= intervalMinimum else { return nil }
        var k = 0
        while k + 1 <= n / 2, binomialCDF(k, probability: 0.5, trials: n) <= 0.025 { k += 1 }
        guard k >= 1 else { return nil }
        return (sorted[k - 1], sorted[n - k])
    }
}

/// One run's figures over its seeds.
public struct RunSummary: Sendable {
    public var run: String
    public var strategy: String
    /// Seeds that ran.
    public var seeds: Int
    /// Statistics by quantity name (see ``ExperimentSummary/quantities``); absent when no seed has a value.
    public var statistics: [String: SampleStatistics]
    /// How the seeds stopped, e.g. `["converged": 3, "time": 2]`.
    public var stopReasons: [String: Int]
    /// Distinct faults, if any seed stopped on one.
    public var faults: [String]
    /// Recovery of the closed-form MLE (the sampling floor), when the truth is known.
    public var mleRecovery: Recovery?
}

/// Summaries of an experiment's runs: `summary.csv` and the tables of `summary.md`.
public enum ExperimentSummary {
    /// The quantities summarised per run, with how each is read from a seed's final record.
    public static let quantities: [(name: String, value: @Sendable (RunRecord) -> Double?)] = {
        var q: [(name: String, value: @Sendable (RunRecord) -> Double?)] = [
            ("elbo", { $0.elbo }),
            ("loglik", { $0.logLikelihood }),
            ("mle_loglik", { $0.mleLogLikelihood }),
            ("gap_to_mle", { $0.mleLogLikelihood - $0.elbo }),
            ("model_gap", { $0.mleLogLikelihood - $0.logLikelihood }),
            ("approximation_gap", { $0.approximationGap }),
            ("amortization_gap", { $0.amortizationGap }),
            ("best_amortization_gap", { $0.bestAmortizationGap }),
            ("iterations", { Double($0.iterations) }),
            ("data_passes", { $0.dataPasses }),
            ("gradient_evaluations", { Double($0.gradientEvaluations) }),
            ("seconds", { $0.seconds }),
            ("seconds_per_iteration", { $0.iterations > 0 ? $0.seconds / Double($0.iterations) : nil }),
        ]
        for (k, t) in FitResult.thresholds.enumerated() {
            q.append(("seconds_to_\(formatNumber(t))", { $0.secondsTo[k] }))
        }
        for (k, t) in FitResult.thresholds.enumerated() {
            q.append(("iterations_to_\(formatNumber(t))", { $0.iterationsTo[k] }))
        }
        q.append(("principal_angle_deg", { $0.recovery?.principalAngleDegrees }))
        q.append(("noise_variance_rel_error", { $0.recovery?.noiseVarianceRelativeError }))
        q.append(("loading_rel_error", { $0.recovery?.loadingRelativeError }))
        return q
    }()

    /// Groups `records` by run in the order of `runs` and summarises each.
    public static func summarize(_ records: [RunRecord], runs: [String]) -> [RunSummary] {
        runs.compactMap { label in
            let rs = records.filter { $0.run == label }
            guard let first = rs.first else { return nil }
            var stats: [String: SampleStatistics] = [:]
            for q in quantities { stats[q.name] = SampleStatistics(rs.map(q.value)) }
            var reasons: [String: Int] = [:]
            for r in rs { reasons[r.stopReason, default: 0] += 1 }
            var faults: [String] = []
            for r in rs where !r.fault.isEmpty && !faults.contains(r.fault) { faults.append(r.fault) }
            return RunSummary(run: label, strategy: first.strategy, seeds: rs.count, statistics: stats,
                              stopReasons: reasons, faults: faults, mleRecovery: first.mleRecovery)
        }
    }

    /// The header of `summary.csv`.
    public static let header = ["experiment", "run", "strategy", "quantity", "seeds", "n", "median", "min", "max",
                                "mean", "sd", "median_ci95_low", "median_ci95_high"]

    /// `summary.csv`: one row per run and quantity (`n` counts the seeds with a value: for
    /// `seconds_to_*`, the seeds that got within the threshold).
    public static func table(_ summaries: [RunSummary], experiment: String) -> CSVTable {
        var rows: [[String]] = []
        for s in summaries {
            for q in quantities {
                let st = s.statistics[q.name]
                rows.append([experiment, s.run, s.strategy, q.name, String(s.seeds), String(st?.count ?? 0),
                             field(st?.median), field(st?.minimum), field(st?.maximum), field(st?.mean),
                             field(st?.standardDeviation), field(st?.interval?.low), field(st?.interval?.high)])
            }
        }
        return CSVTable(header: header, rows: rows, name: "summary.csv")
    }

    // MARK: Markdown

    /// `median [min – max]` (one value: the value; ten or more: the median's 95% interval too).
    static func cell(_ st: SampleStatistics?, _ format: (Double) -> String) -> String {
        guard let st else { return "—" }
        if st.count == 1 || st.minimum == st.maximum { return format(st.median) }
        var text = "\(format(st.median)) [\(format(st.minimum)) – \(format(st.maximum))]"
        if let ci = st.interval { text += " (95% CI of the median \(format(ci.low)) – \(format(ci.high)))" }
        return text
    }

    /// A time-to-tolerance cell: the median and range over the seeds that got there, and how many did.
    static func reachedCell(_ st: SampleStatistics?, seeds: Int, _ format: (Double) -> String) -> String {
        guard let st else { return "not reached (0 of \(seeds) seeds)" }
        return "\(cell(st, format)), reached in \(st.count) of \(seeds) seeds"
    }

    static func fixed(_ digits: Int) -> (Double) -> String { { String(format: "%.\(digits)f", $0) } }
    static func general(_ x: Double) -> String {
        if x == 0 { return "0" }
        let a = abs(x)
        return a >= 1e-3 && a < 1e5 ? String(format: "%.3g", x) : String(format: "%.2e", x)
    }
    static func count(_ x: Double) -> String { x >= 100 ? String(format: "%.0f", x) : String(format: "%.3g", x) }

    /// A Markdown table.
    static func markdownTable(_ header: [String], _ rows: [[String]]) -> String {
        func line(_ cells: [String]) -> String {
            "| " + cells.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |"
        }
        return ([line(header), "|" + header.map { _ in "---|" }.joined()] + rows.map(line)).joined(separator: "\n") + "\n"
    }

    /// The tables of `summary.md`: final values, work and speed, recovery, stop reasons.
    public static func markdown(_ summaries: [RunSummary], truthKnown: Bool, seeds: Int) -> String {
        var out = "## Where the runs ended\n\n"
        out += "Per point, in nats; median [min – max] over seeds (with ten or more seeds also the median's 95% "
        out += "order-statistic interval). The gap to the MLE splits as (MLE − log-lik: θ short of the MLE) + approximation gap + amortisation gap.\n\n"
        out += markdownTable(
            ["run", "strategy", "final ELBO", "final log-lik", "MLE log-lik", "gap to MLE", "approximation gap", "amortisation gap"],
            summaries.map { s in
                [s.run, s.strategy, cell(s.statistics["elbo"], fixed(6)), cell(s.statistics["loglik"], fixed(6)),
                 cell(s.statistics["mle_loglik"], fixed(6)), cell(s.statistics["gap_to_mle"], general),
                 cell(s.statistics["approximation_gap"], general), cell(s.statistics["amortization_gap"], general)]
            })
        out += "\n## Work and speed\n\n"
        out += "Training seconds (scoring excluded); median [min – max] over seeds. \"to ε\": seconds until the exact ELBO "
        out += "first came within ε nats/point of the MLE, at logged iterations, over the seeds that got there, and how many did.\n\n"
        let thresholds = FitResult.thresholds.map(formatNumber)
        out += markdownTable(
            ["run", "iterations", "data passes", "seconds", "s / iteration"] + thresholds.map { "to \($0)" },
            summaries.map { s in
                [s.run, cell(s.statistics["iterations"], count), cell(s.statistics["data_passes"], count),
                 cell(s.statistics["seconds"], general), cell(s.statistics["seconds_per_iteration"], general)]
                    + thresholds.map { t in
                        let st = s.statistics["seconds_to_\(t)"]
                        return reachedCell(st, seeds: s.seeds, general)
                    }
            })
        if truthKnown {
            out += "\n## Parameter recovery\n\n"
            out += "Against the true θ the data were drawn from: the largest principal angle between span(W) and "
            out += "span(W_true), |s2 − s2_true|/s2_true, and ‖WWᵀ − W_true W_trueᵀ‖/‖W_true W_trueᵀ‖. The last row is "
            out += "the closed-form MLE: the floor that sampling error sets for every strategy.\n\n"
            var rows = summaries.map { s in
                [s.run, cell(s.statistics["principal_angle_deg"], general), cell(s.statistics["noise_variance_rel_error"], general),
                 cell(s.statistics["loading_rel_error"], general)]
            }
            var floors: [(run: String, recovery: Recovery)] = []
            for s in summaries {
                // Compared by the figures shown (the MLE's own s2 is not stored).
                if let m = s.mleRecovery, !floors.contains(where: {
                    $0.recovery.principalAngleDegrees == m.principalAngleDegrees
                        && $0.recovery.noiseVarianceRelativeError == m.noiseVarianceRelativeError
                        && $0.recovery.loadingRelativeError == m.loadingRelativeError
                }) { floors.append((s.run, m)) }
            }
            for f in floors {
                let m = f.recovery
                rows.append([floors.count == 1 ? "closed-form MLE" : "closed-form MLE (\(f.run))", general(m.principalAngleDegrees),
                             general(m.noiseVarianceRelativeError), general(m.loadingRelativeError)])
            }
            out += markdownTable(["run", "largest principal angle (°)", "s2 relative error", "WWᵀ relative error"], rows)
        }
        out += "\n## How the runs stopped\n\n"
        out += markdownTable(["run", "seeds", "stop reasons", "faults"], summaries.map { s in
            [s.run, String(s.seeds),
             s.stopReasons.keys.sorted().map { "\($0) ×\(s.stopReasons[$0] ?? 0)" }.joined(separator: ", "),
             s.faults.isEmpty ? "" : s.faults.joined(separator: "; ")]
        })
        return out
    }
}
