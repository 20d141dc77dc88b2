import Foundation

/// A checkable statement behind a sentence of `## What this shows`: on `key` (a topic and the
/// runs it compares) the numbers say `value`; `firm` when every seed agrees, otherwise the
/// sentence says the seeds leave it open.
public struct Claim: Sendable, Equatable {
    public var key: String
    public var value: String
    public var firm: Bool
}

/// One sentence of `## What this shows`, generated from the measured values, citing the figure
/// or table it rests on.
public struct Finding: Sendable, Equatable {
    public var text: String
    public var claims: [Claim]
    /// Lower is kept first when there are more than six sentences.
    var priority: Int

    init(_ text: String, claims: [Claim] = [], priority: Int = 2) {
        self.text = text
        self.claims = claims
        self.priority = priority
    }

    /// Claims that two sets of findings (say, from reruns with other seeds) state firmly and
    /// oppositely: the same key with different values, both firm.
    public static func contradictions(_ a: [Finding], _ b: [Finding]) -> [(Claim, Claim)] {
        let firmB = b.flatMap(\.claims).filter(\.firm)
        return a.flatMap(\.claims).filter(\.firm).flatMap { c in
            firmB.filter { $0.key == c.key && $0.value != c.value }.map { (c, $0) }
        }
    }
}

/// Generates `## What this shows` from an experiment's files of record.
enum ExperimentFindings {
    /// The tightest threshold of the report (0.001 nats/point).
    static var target: Double { FitResult.thresholds.min() ?? 1e-3 }

    /// Per run label and seed: (data passes, seconds) at which the gap first came within `epsilon`; nil when never.
    static func reach(_ points: [CurvePoint], mle: [String: Double], epsilon: Double) -> [String: [(Double, Double)?]] {
        var out: [String: [(Double, Double)?]] = [:]
        for (run, curves) in PlotScripts.grouped(points) {
            guard let ceiling = mle[run] else { continue }
            out[run] = curves.map { c in c.first { ceiling - $0.elbo <= epsilon }.map { ($0.dataPasses, $0.seconds) } }
        }
        return out
    }

    static func g(_ x: Double) -> String {
        abs(x) >= 100 && abs(x) < 1e7 ? String(format: "%.0f", x) : ExperimentSummary.general(x)
    }
    static func range(_ xs: [Double]) -> String {
        let s = xs.sorted()
        guard let lo = s.first, let hi = s.last else { return "—" }
        return lo == hi ? g(lo) : "\(g(PlotScripts.median(s))) [\(g(lo))–\(g(hi))]"
    }
    static func b(_ run: String) -> String { "**\(run)**" }

    /// The findings of the curves every experiment has: who gets close first by data passes and
    /// by seconds, who never does, where the remaining gap sits, how the runs stopped.
    static func curves(meta: ExperimentMeta, summaries: [RunSummary], points: [CurvePoint], mle: [String: Double]) -> [Finding] {
        var out: [Finding] = []
        let eps = target, epsText = formatNumber(eps)
        let reached = reach(points, mle: mle, epsilon: eps)
        let labels = summaries.map(\.run).filter { reached[$0] != nil }
        let everySeed = labels.filter { l in reached[l]?.allSatisfy { $0 != nil } == true }
        // Who reaches ε first, per axis: the fastest run of each family, and whether every seed
        // puts the first ahead of the second.
        let strategyOf = Dictionary(summaries.map { ($0.run, $0.strategy) }, uniquingKeysWith: { a, _ in a })
        for (axis, name, figure, factor) in [(0, "data passes", "gap-passes", 1.0), (1, "training seconds", "gap-seconds", 2.0)] {
            let ranked = everySeed.map { l in (l, (reached[l] ?? []).compactMap { $0.map { axis == 0 ? $0.0 : $0.1 } }) }
                .sorted { PlotScripts.median($0.1.sorted()) < PlotScripts.median($1.1.sorted()) }
            var best: [(String, [Double])] = []
            for r in ranked where !best.contains(where: { strategyOf[$0.0] == strategyOf[r.0] }) { best.append(r) }
            guard let first = best.first else { continue }
            let unit = axis == 0 ? "passes" : "s"
            guard best.count > 1 else {
                let family = PlotScripts.families[PlotScripts.familyIndex(strategyOf[first.0] ?? "")].title
                out.append(Finding("Only runs of one family (\(family)) got within \(epsText) nats/point of the MLE in every seed, the fastest \(b(first.0)) after \(range(first.1)) \(name) (figure \(figure)).", priority: axis == 0 ? 2 : 3))
                continue
            }
            let second = best[1]
            let firm = (first.1.max() ?? .infinity) * factor < (second.1.min() ?? 0)
            var text = "To get within \(epsText) nats/point of the MLE, the fastest run of each family took "
            text += best.map { "\(b($0.0)) \(range($0.1)) \(range($0.1) == "1" && axis == 0 ? "pass" : unit)" }.joined(separator: ", ")
            text += firm ? "; \(b(first.0)) is ahead of \(b(second.0))" + (factor > 1 ? " by at least \(formatNumber(factor))×" : "") + " in every seed"
                : "; the seeds' ranges for \(b(first.0)) and \(b(second.0)) overlap" + (factor > 1 ? " or differ by less than 2× (timing noise)" : "") + ", so these seeds do not settle which is faster"
            text += " (figure \(figure); median [min–max] over seeds)."
            let pair = [first.0, second.0].sorted()
            out.append(Finding(text, claims: [Claim(key: "first-to-\(epsText)-by-\(axis == 0 ? "passes" : "seconds"):\(pair.joined(separator: "|"))",
                                                    value: first.0, firm: firm)], priority: axis == 0 ? 2 : 3))
        }
        // Runs that never (or not always) got there.
        let never = labels.filter { l in reached[l]?.allSatisfy { $0 == nil } == true }
        let some = labels.filter { l in !never.contains(l) && !everySeed.contains(l) }
        if !never.isEmpty || !some.isEmpty {
            var parts: [String] = []
            if !never.isEmpty { parts.append("\(never.map(b).joined(separator: ", ")) never got within \(epsText) nats/point of the MLE in any seed") }
            if !some.isEmpty {
                parts.append(some.map { l in "\(b(l)) did in \((reached[l] ?? []).filter { $0 != nil }.count) of \((reached[l] ?? []).count) seeds" }.joined(separator: ", ")
                             + " (so whether it does is left open)")
            }
            let capped = summaries.filter { never.contains($0.run) && ($0.stopReasons["time"] ?? 0) > 0 }.map(\.run)
            var text = parts.joined(separator: "; ")
            if !capped.isEmpty { text += "; of those, \(capped.map(b).joined(separator: ", ")) stopped at the time cap, so more time might have got there" }
            out.append(Finding(text.prefix(1).uppercased() + text.dropFirst() + " (figure gap-seconds; table Work and speed).",
                               claims: never.map { Claim(key: "reaches-\(epsText):\($0)", value: "no", firm: true) }
                                   + some.map { Claim(key: "reaches-\(epsText):\($0)", value: "sometimes", firm: false) }
                                   + everySeed.map { Claim(key: "reaches-\(epsText):\($0)", value: "yes", firm: true) }, priority: 1))
        } else if labels.count > 1 {
            out.append(Finding("Every run got within \(epsText) nats/point of the MLE in every seed (figure gap-seconds; table Work and speed).",
                               claims: labels.map { Claim(key: "reaches-\(epsText):\($0)", value: "yes", firm: true) }))
        }
        // Where the remaining gap sits, for runs that end short of the MLE.
        let short = summaries.filter { ($0.statistics["gap_to_mle"]?.median ?? 0) > 1e-6 }
        if !short.isEmpty {
            let terms = [("model_gap", "θ short of the MLE"), ("approximation_gap", "the approximation gap"), ("amortization_gap", "the amortisation (or, unamortised, optimisation) gap")]
            let named = short.prefix(4).map { s -> (String, String) in
                let values = terms.map { s.statistics[$0.0]?.median ?? 0 }
                let k = values.indices.max { values[$0] < values[$1] } ?? 0
                return (s.run, "\(b(s.run)): \(g(s.statistics["gap_to_mle"]?.median ?? .nan)), mostly \(terms[k].1) (\(g(values[k])))")
            }
            let closed = summaries.filter { ($0.statistics["gap_to_mle"]?.median ?? .infinity) <= 1e-6 }.map(\.run)
            let closedText = closed.isEmpty ? "" : "; " + (closed.count > 3 ? "\(closed.count) runs" : closed.map(b).joined(separator: ", "))
                + " end within 1e-6 of it, with no gap left"
            out.append(Finding("Where runs end short of the MLE (median final gap above 1e-6 nats/point), the gap splits as follows — "
                               + named.map(\.1).joined(separator: "; ") + (short.count > 4 ? "; and \(short.count - 4) more" : "")
                               + closedText + " (figure gap-split; table Where the runs ended)."))
        } else if !summaries.isEmpty {
            out.append(Finding("Every run ends within 1e-6 nats/point of the MLE (median over seeds), so neither the approximation nor the amortisation gap is left in this model at these settings (figure gap-split)."))
        }
        let cappedRuns = summaries.filter { ($0.stopReasons["time"] ?? 0) > 0 }
        let converged = summaries.filter { $0.stopReasons["converged"] == $0.seeds }
        if !summaries.isEmpty {
            var text = "In this run \(converged.count) of \(summaries.count) runs converged in every seed"
            if !cappedRuns.isEmpty {
                let names: String = cappedRuns.prefix(5).map { b($0.run) }.joined(separator: ", ") + (cappedRuns.count > 5 ? ", …" : "")
                text += "; \(cappedRuns.count) stopped at the time cap in at least one seed (" + names
                text += "), whose final values are where the clock stopped them, not converged values"
            }
            out.append(Finding(text + " (table How the runs stopped).", priority: 1))
        }
        return out
    }

    /// Runs (with θ held) whose encoder family's least amortisation gap is known in closed form: whether each
    /// ended at it (the gap the family cannot avoid) or short of it (unfinished optimisation).
    static func amortizationOptimum(_ summaries: [RunSummary]) -> [Finding] {
        let known = summaries.compactMap { s -> (run: String, best: Double, gap: SampleStatistics)? in
            guard let best = s.statistics["best_amortization_gap"]?.maximum, let gap = s.statistics["amortization_gap"] else { return nil }
            return (s.run, best, gap)
        }
        guard known.count > 1 else { return [] }
        // Within 1e-6 nats/point (relative to the gap where it is large) of the least: the stop
        // rule's reach, and zero on every plot of the report.
        func reached(_ k: (run: String, best: Double, gap: SampleStatistics)) -> Bool { k.gap.maximum - k.best <= 1e-6 * (1 + k.best) }
        let at = known.filter(reached), short = known.filter { !reached($0) }
        let unavoidable = at.filter { $0.best > 1e-6 }.sorted { $0.best > $1.best }
        let none = at.filter { $0.best <= 1e-6 }
        var parts: [String] = []
        if !unavoidable.isEmpty {
            let off = unavoidable.map { max(abs($0.gap.maximum - $0.best), abs($0.gap.minimum - $0.best)) }.max() ?? 0
            parts.append(unavoidable.map { "\(b($0.run)) \(g($0.gap.median))" }.joined(separator: ", ")
                         + (unavoidable.count == 1 ? " ends" : " end") + " at the least amortisation gap their family can reach, which no training removes (the closed form"
                         + " differs by at most \(g(off)) nats/point in any seed)")
        }
        if !none.isEmpty {
            parts.append(none.map { b($0.run) }.joined(separator: ", ") + (none.count == 1 ? " contains" : " contain")
                         + " the optimal encoder and " + (none.count == 1 ? "closes" : "close") + " the gap (at most \(g(none.map(\.gap.maximum).max() ?? 0)) nats/point left in any seed)")
        }
        if !short.isEmpty {
            parts.append(short.map { "\(b($0.run)) ends \(g($0.gap.maximum - $0.best)) above its family's least in its worst seed" }.joined(separator: ", ")
                         + ": unfinished optimisation, not amortisation")
        }
        let text = "With θ held, an encoder's amortisation gap at convergence is its family's: "
            + parts.joined(separator: "; ") + " (table Where the runs ended; column best_amortization_gap of runs.csv)."
        return [Finding(text, claims: known.map { Claim(key: "at-least-amortization-gap:\($0.run)", value: reached($0) ? "yes" : "no", firm: true) },
                        priority: 0)]
    }

    /// The variance study: every estimator against the reparameterised one near the optimum,
    /// how the variance changes along training, and how it falls with K.
    static func variance(_ rows: [GradientVarianceStudy.Row]) -> [Finding] {
        var out: [Finding] = []
        let v = rows.filter { $0.block == "variational" }
        let ks = Array(Set(v.map(\.samples))).sorted()
        var stages: [String] = []
        for r in v where !stages.contains(r.stage) { stages.append(r.stage) }
        guard let k = ks.count > 1 ? ks[ks.count / 2] : ks.first, let last = stages.last else { return out }
        let at = v.filter { $0.samples == k && $0.stage == last }
        if let reparam = at.first(where: { $0.estimator == .reparam && $0.kl == .analytic }) {
            var parts: [String] = [], claims: [Claim] = [], ratios: [String: Double] = [:]
            for other in at where other.name != reparam.name {
                let ratio = other.totalVariance / reparam.totalVariance
                guard ratio.isFinite && ratio > 0 else { continue }
                // 50–100 repeats estimate a total variance to well within ±20%: closer than 2× is not called.
                let firm = ratio > 2 || ratio < 0.5
                let size = ratio < 1e-6 ? "effectively zero" : firm ? (ratio >= 1 ? "\(g(ratio))× higher" : "\(g(1 / ratio))× lower") : "within 2×, not called"
                parts.append("\(other.name) \(g(other.totalVariance)) (\(size))")
                ratios[other.name] = ratio
                claims.append(Claim(key: "variance-vs-reparam:\(other.name):\(last):K=\(k)", value: ratio >= 1 ? "higher" : "lower", firm: firm))
            }
            // The reason, said only when both numbers show it: at the exact posterior
            // log p(y, z) − log q(z) = log p(y) for every z, so stl's term and the baseline-corrected score vanish.
            let both = (ratios["stl (reparam, path derivative)"] ?? 1) < 1e-3 && (ratios["score, leave-one-out baseline, mc KL"] ?? 1) < 1e-3
            let why = both ? "; stl and the score function with the leave-one-out baseline and Monte Carlo KL both vanish because there q is (nearly) the exact posterior, where log p(y, z) − log q(z) = log p(y) for every z" : ""
            out.append(Finding("At the last point along training (\(last)), with K = \(k) samples per point, the total variance of q's gradient is \(g(reparam.totalVariance)) nats² for \(reparam.name), against "
                               + parts.joined(separator: ", ") + why + " (figure variance, right panel; table Gradient-estimator variance).", claims: claims, priority: 0))
        }
        if stages.count > 1, let first = stages.first {
            var parts: [String] = [], claims: [Claim] = [], ratios: [String: Double] = [:]
            for name in ["reparam, analytic KL", "stl (reparam, path derivative)"] {
                guard let a = v.first(where: { $0.name == name && $0.stage == first && $0.samples == k }),
                      let z = v.first(where: { $0.name == name && $0.stage == last && $0.samples == k }), a.totalVariance > 0 else { continue }
                let ratio = z.totalVariance / a.totalVariance
                ratios[name] = ratio
                let change = ratio < 0.5 ? "falls \(g(1 / ratio))×" : ratio > 2 ? "rises \(g(ratio))×" : "changes by less than 2×"
                parts.append("\(name) \(change) (\(g(a.totalVariance)) to \(g(z.totalVariance)))")
                claims.append(Claim(key: "variance-along-training:\(name)", value: ratio < 1 ? "falls" : "rises", firm: ratio < 0.5 || ratio > 2))
            }
            // Said only when the numbers show it: stl's noise vanishing as q nears the exact posterior.
            var reading = ""
            if let stl = ratios["stl (reparam, path derivative)"], let plain = ratios["reparam, analytic KL"], stl < 0.1, plain > 0.5 {
                reading = ": the path-derivative estimator's noise shrinks as q nears the exact posterior, the analytic-KL estimator's does not"
            }
            if !parts.isEmpty {
                out.append(Finding("From \(first) to \(last) (K = \(k)), the variance of " + parts.joined(separator: "; ") + reading
                                   + " (figure variance, panels left to right; the note above the table gives each stage's gap to the MLE).",
                                   claims: claims, priority: 0))
            }
        }
        // The slope in K of the reparameterised estimator.
        if ks.count > 1 {
            let line = v.filter { $0.estimator == .reparam && $0.kl == .analytic && $0.stage == last }.sorted { $0.samples < $1.samples }
            if let lo = line.first, let hi = line.last, hi.samples > lo.samples, lo.totalVariance > 0, hi.totalVariance > 0 {
                let slope = log(hi.totalVariance / lo.totalVariance) / log(Double(hi.samples) / Double(lo.samples))
                let firm = abs(slope + 1) < 0.2
                out.append(Finding("The reparameterised variance falls with K at slope \(String(format: "%.2f", slope)) on log–log axes"
                                   + (firm ? ", the 1/K of independent samples" : ", not clearly the 1/K of independent samples")
                                   + " (figure variance, dotted slope −1 guide).",
                                   claims: [Claim(key: "reparam-slope-one-over-K", value: "yes", firm: firm)], priority: 1))
            }
        }
        return out
    }

    /// The scaling study: how seconds per iteration grow with N, per run.
    static func scaling(_ table: CSVTable) -> [Finding] {
        guard let runs = try? table.strings("run"), let ns = try? table.numbers("n"), let spi = try? table.numbers("seconds_per_iteration") else { return [] }
        var order: [String] = []
        for r in runs where !order.contains(r) { order.append(r) }
        var flat: [String] = [], linear: [String] = [], between: [(String, Double)] = [], claims: [Claim] = []
        for r in order {
            let pts = runs.indices.filter { runs[$0] == r }.compactMap { i -> (Double, Double)? in
                guard let n = ns[i], let s = spi[i], s > 0 else { return nil }
                return (n, s)
            }.sorted { $0.0 < $1.0 }
            guard let a = pts.first, let z = pts.last, z.0 > a.0 else { continue }
            let slope = log(z.1 / a.1) / log(z.0 / a.0)
            if slope < 0.3 { flat.append(r) } else if slope > 0.7 { linear.append(r) } else { between.append((r, slope)) }
            claims.append(Claim(key: "cost-in-N:\(r)", value: slope < 0.5 ? "flat" : "grows", firm: slope < 0.3 || slope > 0.7))
        }
        var text = ""
        if !flat.isEmpty { text += "An iteration of \(flat.map(b).joined(separator: ", ")) costs about the same at every N (log–log slope below 0.3: sufficient statistics, or a fixed minibatch)" }
        if !linear.isEmpty { text += (text.isEmpty ? "An iteration of " : "; one of ") + "\(linear.map(b).joined(separator: ", ")) grows with N (slope above 0.7: they touch every point every step)" }
        if !between.isEmpty { text += (text.isEmpty ? "" : "; ") + between.map { "\(b($0.0)) grows at slope \(String(format: "%.2f", $0.1)), between the two" }.joined(separator: ", ") }
        guard !text.isEmpty else { return [] }
        var out = [Finding(text + " (figure scaling, left; table Scaling with N).", claims: claims, priority: 0)]
        // At the largest N: who got within 0.01, how fast, in how many seeds.
        if let reached = try? table.counts("reached_0.01"), let seeds = try? table.counts("seeds"),
           let to = try? table.numbers("seconds_to_0.01"), let top = ns.compactMap({ $0 }).max() {
            let rows = runs.indices.filter { ns[$0] == top }
            let got = rows.filter { reached[$0] > 0 }.sorted { (to[$0] ?? .infinity) < (to[$1] ?? .infinity) }
            let missed = rows.filter { reached[$0] == 0 }.map { b(runs[$0]) }
            var t = "At N = \(formatNumber(top)), "
            t += got.isEmpty ? "no run got within 0.01 nats/point of the MLE"
                : "within 0.01 nats/point of the MLE: " + got.map { "\(b(runs[$0])) after \(g(to[$0] ?? .nan)) s (median; \(reached[$0]) of \(seeds[$0]) seeds)" }.joined(separator: ", ")
            if !missed.isEmpty { t += "; never, before the time cap: " + missed.joined(separator: ", ") }
            out.append(Finding(t + " (figure scaling, right; table Scaling with N).", priority: 0))
        }
        return out
    }

    /// At most six findings, the most important kept, in their original order.
    static func selected(_ findings: [Finding]) -> [Finding] {
        guard findings.count > 6 else { return findings }
        let keep = Set(findings.indices.sorted { (findings[$0].priority, $0) < (findings[$1].priority, $1) }.prefix(6))
        return findings.indices.filter { keep.contains($0) }.map { findings[$0] }
    }

    /// `## What this shows`.
    static func markdown(_ findings: [Finding]) -> String {
        var out = "## What this shows\n\n"
        out += "Generated from this run's numbers (`elbolab plot` regenerates it); a statement the seeds do not all support says so.\n\n"
        out += findings.prefix(6).map { "- " + $0.text }.joined(separator: "\n") + "\n"
        return out
    }
}
