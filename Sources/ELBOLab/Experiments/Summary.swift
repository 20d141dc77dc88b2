import Foundation

/// Mean, spread and a 95% Student-t interval of one quantity over seeds.
public struct SampleStatistics: Sendable, Equatable {
    /// How many values entered (non-finite and missing values are left out).
    public var count: Int
    public var mean: Double
    /// The sample standard deviation (n − 1); nil with fewer than two values.
    public var standardDeviation: Double?
    /// mean ∓ t_{0.975, n−1} · sd/√n; nil with fewer than two values.
    public var interval: (low: Double, high: Double)?
    public var minimum: Double
    public var maximum: Double

    public static func == (a: SampleStatistics, b: SampleStatistics) -> Bool {
        a.count == b.count && a.mean == b.mean && a.standardDeviation == b.standardDeviation
            && a.interval?.low == b.interval?.low && a.interval?.high == b.interval?.high
            && a.minimum == b.minimum && a.maximum == b.maximum
    }

    /// Statistics of the finite values among `values`; nil when there are none.
    public init?(_ values: [Double?]) {
        let xs = values.compactMap { $0 }.filter { $0.isFinite }
        guard !xs.isEmpty else { return nil }
        count = xs.count
        let n = Double(xs.count)
        mean = xs.reduce(0, +) / n
        minimum = xs.min() ?? mean
        maximum = xs.max() ?? mean
        if xs.count >= 2 {
            let sd = (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot()
            standardDeviation = sd
            let half = studentTQuantile(0.975, degreesOfFreedom: n - 1) * sd / n.squareRoot()
            interval = (mean - half, mean + half)
        } else {
            standardDeviation = nil
            interval = nil
        }
    }

    /// Half the width of the 95% interval.
    public var halfWidth: Double? { interval.map { ($0.high - $0.low) / 2 } }
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
            ("approximation_gap", { $0.approximationGap }),
            ("amortization_gap", { $0.amortizationGap }),
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
    public static let header = ["experiment", "run", "strategy", "quantity", "seeds", "n", "mean", "sd",
                                "ci95_low", "ci95_high", "min", "max"]

    /// `summary.csv`: one row per run and quantity (`n` counts the seeds with a value: for
    /// `seconds_to_*`, the seeds that got within the threshold).
    public static func table(_ summaries: [RunSummary], experiment: String) -> CSVTable {
        var rows: [[String]] = []
        for s in summaries {
            for q in quantities {
                let st = s.statistics[q.name]
                rows.append([experiment, s.run, s.strategy, q.name, String(s.seeds), String(st?.count ?? 0),
                             field(st?.mean), field(st?.standardDeviation), field(st?.interval?.low),
                             field(st?.interval?.high), field(st?.minimum), field(st?.maximum)])
            }
        }
        return CSVTable(header: header, rows: rows, name: "summary.csv")
    }

    // MARK: Markdown

    /// `mean ± half-width` with `format` applied to both.
    static func cell(_ st: SampleStatistics?, _ format: (Double) -> String) -> String {
        guard let st else { return "—" }
        if let h = st.halfWidth { return "\(format(st.mean)) ± \(format(h))" }
        return format(st.mean)
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
        out += "Per point, in nats; mean ± half-width of the 95% t interval over seeds (no interval with one seed). "
        out += "The gap to the MLE splits as (MLE − log-lik) + approximation gap + amortisation gap.\n\n"
        out += markdownTable(
            ["run", "strategy", "final ELBO", "final log-lik", "MLE log-lik", "gap to MLE", "approximation gap", "amortisation gap"],
            summaries.map { s in
                [s.run, s.strategy, cell(s.statistics["elbo"], fixed(6)), cell(s.statistics["loglik"], fixed(6)),
                 cell(s.statistics["mle_loglik"], fixed(6)), cell(s.statistics["gap_to_mle"], general),
                 cell(s.statistics["approximation_gap"], general), cell(s.statistics["amortization_gap"], general)]
            })
        out += "\n## Work and speed\n\n"
        out += "Training seconds (scoring excluded). \"to ε\": seconds until the exact ELBO first came within ε "
        out += "nats/point of the MLE, at logged iterations, mean over the seeds that got there (how many in brackets).\n\n"
        let thresholds = FitResult.thresholds.map(formatNumber)
        out += markdownTable(
            ["run", "iterations", "data passes", "seconds", "s / iteration"] + thresholds.map { "to \($0)" },
            summaries.map { s in
                [s.run, cell(s.statistics["iterations"], count), cell(s.statistics["data_passes"], count),
                 cell(s.statistics["seconds"], general), cell(s.statistics["seconds_per_iteration"], general)]
                    + thresholds.map { t in
                        let st = s.statistics["seconds_to_\(t)"]
                        return "\(cell(st, general)) (\(st?.count ?? 0)/\(s.seeds))"
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
