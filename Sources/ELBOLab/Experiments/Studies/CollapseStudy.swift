import Foundation

/// Posterior collapse in the linear model (§16; Lucas et al. 2019): with the noise variance σ²
/// held, the number of active units (Burda et al.'s A_j > 0.01) and each latent's average KL to
/// the prior, fitted by a mean-field strategy, against the closed form of the MLE at that σ²
/// (``/ELBOLabVariational/CollapseDiagnostics/closedForm(eigenvalues:noiseVariance:latent:)``), over a sweep of σ²
/// across the data's eigenvalues; then J larger than the data's true rank with σ² free.
public enum CollapseStudy {
    public struct Settings: Sendable, Equatable {
        /// The held noise variances; nil: ``points`` values log-spaced from half the smallest
        /// eigenvalue to twice the largest, nudged off the eigenvalues themselves.
        public var noiseVariances: [Double]? = nil
        public var points: Int = 14
        /// The fitting strategy: `per-datapoint` (mean field, closed-form E-step) or `em`.
        public var strategy: Strategy = .perDatapoint
        /// The latent dimension of the s2-free fit (nil: no such fit).
        public var extraLatent: Int? = nil
        /// The fits' step cap and stop rule.
        public var iterations: Int = 3000
        public var tolerance: Double = 1e-10

        public init() {}
    }

    public struct Row: Sendable, Equatable {
        /// `held` (σ² fixed) or `free`.
        public var noise: String
        public var noiseVariance: Double
        public var latent: Int
        public var activeFitted: Int
        public var activeClosedForm: Int
        /// Per latent, sorted in decreasing order (the fit's latent order is arbitrary).
        public var klFitted: [Double]
        public var klClosedForm: [Double]
        public var activityFitted: [Double]
        public var activityClosedForm: [Double]
        /// How far the fit's ELBO stayed below its MLE log-likelihood, nats/point.
        public var gapToMLE: Double
        public var iterations: Int
    }

    /// The sweep's σ² values.
    static func grid(eigenvalues lambda: [Double], settings s: Settings) -> [Double] {
        if let given = s.noiseVariances { return given }
        guard let top = lambda.first, let bottom = lambda.last(where: { $0 > 0 }), s.points >= 2 else { return [] }
        let lo = log(0.5 * bottom), hi = log(2 * top)
        return (0..<s.points).map { i in
            var x = lo + (hi - lo) * Double(i) / Double(s.points - 1)
            // At λ_j = σ²/0.99 the threshold sits on an eigenvalue: keep the grid 5% clear of them.
            if let near = lambda.first(where: { abs(x - log($0)) < 0.05 }) { x = log(near) + (x >= log(near) ? 0.05 : -0.05) }
            return exp(x)
        }
    }

    static func fit(data: Dataset, latent: Int, noiseVariance: Double?, settings s: Settings, seed: UInt64,
                    eigenvalues: [Double]) throws -> Row {
        var options = FitOptions(strategy: s.strategy, latent: latent)
        options.constraints = ModelConstraints(noiseVariance: noiseVariance)
        options.seed = seed
        options.iterations = s.iterations
        options.tolerance = s.tolerance
        options.maxSeconds = 20
        let result = try FitRunner().fit(data, options: options)
        if let fault = result.fault { throw InputError("the collapse study's fit at s2 = \(formatNumber(noiseVariance ?? .nan)) stopped: \(fault)") }
        guard let q = result.posteriors else { throw InputError("the collapse study's \(s.strategy.rawValue) fit returned no posteriors") }
        let fitted = try CollapseDiagnostics(q: q)
        let closed = CollapseDiagnostics.closedForm(result.mle)
        // em's q is the exact posterior in an arbitrary rotation: count its rotation-free dimensions.
        let activeFitted = s.strategy == .em ? fitted.activeDimensions : fitted.activeUnits
        return Row(noise: noiseVariance == nil ? "free" : "held", noiseVariance: result.model.noiseVariance, latent: latent,
                   activeFitted: activeFitted, activeClosedForm: closed.activeUnits,
                   klFitted: fitted.klPerLatent.sorted(by: >), klClosedForm: closed.klPerLatent.sorted(by: >),
                   activityFitted: fitted.activity.sorted(by: >), activityClosedForm: closed.activity.sorted(by: >),
                   gapToMLE: result.mle.logLikelihood - (result.final?.score.elbo ?? .nan),
                   iterations: result.final?.iteration ?? 0)
    }

    public static func run(data: Dataset, latent: Int, settings s: Settings, seed: UInt64, workers: Int) throws -> [Row] {
        guard s.strategy == .perDatapoint || s.strategy == .em else {
            throw InputError("the collapse study fits with per-datapoint or em, got \(s.strategy.rawValue)")
        }
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: latent)
        let sweep = grid(eigenvalues: mle.eigenvalues, settings: s)
        var jobs: [(Double?, Int)] = sweep.map { ($0, latent) }
        if let extra = s.extraLatent { jobs.append((nil, extra)) }
        let all = jobs
        return try StudyFormat.parallel(all.count, workers: workers) { i in
            try fit(data: data, latent: all[i].1, noiseVariance: all[i].0, settings: s, seed: seed, eigenvalues: mle.eigenvalues)
        }
    }

    static func product(data: Dataset, latent: Int, settings s: Settings, seed: UInt64, workers: Int,
                        experiment: String) throws -> StudyProduct {
        let rows = try run(data: data, latent: latent, settings: s, seed: seed, workers: workers)
        let eigen = try LinearGaussianModel.maximumLikelihood(for: data, latent: latent).eigenvalues
        let g = { (x: Double) in StudyFormat.g(x) }
        var csv: [[String]] = []
        // Held rows latent by latent (each curve's rows contiguous for gnuplot), then the free fit.
        let maxLatent = rows.map(\.latent).max() ?? 0
        let ordered = (0..<maxLatent).flatMap { j in rows.filter { $0.noise == "held" && j < $0.latent }.map { ($0, j) } }
            + rows.filter { $0.noise == "free" }.flatMap { r in (0..<r.latent).map { (r, $0) } }
        for (r, j) in ordered {
            csv.append([r.noise, StudyFormat.csv(r.noiseVariance), String(r.latent), String(j + 1),
                        StudyFormat.csv(r.activityFitted[j]), StudyFormat.csv(r.activityClosedForm[j]),
                        StudyFormat.csv(r.klFitted[j]), StudyFormat.csv(r.klClosedForm[j])])
        }
        let latents = CSVTable(header: ["noise", "s2", "latent", "rank", "activity_fitted", "activity_closed_form",
                                        "kl_fitted", "kl_closed_form"], rows: csv, name: "latents.csv")
        let counts = CSVTable(header: ["noise", "s2", "latent", "active_fitted", "active_closed_form", "kl_total_fitted",
                                       "kl_total_closed_form", "gap_to_mle", "iterations"],
                              rows: rows.map { r in
                                  [r.noise, StudyFormat.csv(r.noiseVariance), String(r.latent), String(r.activeFitted),
                                   String(r.activeClosedForm), StudyFormat.csv(r.klFitted.reduce(0, +)),
                                   StudyFormat.csv(r.klClosedForm.reduce(0, +)), StudyFormat.csv(r.gapToMLE), String(r.iterations)]
                              }, name: "collapse.csv")
        var findings: [String] = []
        let held = rows.filter { $0.noise == "held" }
        let matches = held.filter { $0.activeFitted == $0.activeClosedForm }
        findings.append("Over \(held.count) held noise variances from \(g(held.map(\.noiseVariance).min() ?? .nan)) to \(g(held.map(\.noiseVariance).max() ?? .nan)), the fitted number of active units equals the closed form #{j ≤ J : λ_j > σ²/0.99} at \(matches.count) of them\(matches.count == held.count ? "" : " (it differs at σ² = " + held.filter { $0.activeFitted != $0.activeClosedForm }.map { g($0.noiseVariance) }.joined(separator: ", ") + ")"): collapse here is a property of the maximum-likelihood solution, set by where σ² falls among the eigenvalues \(eigen.prefix(latent + 1).map { g($0) }.joined(separator: ", ")), … (collapse.csv, collapse.png).")
        let klErr = held.map { r in zip(r.klFitted, r.klClosedForm).map { abs($0 - $1) }.max() ?? 0 }.max() ?? .nan
        let worstGap = held.map(\.gapToMLE).max() ?? .nan
        findings.append("Per latent, the fitted average KL to the prior matches ½ log(λ_j/σ²)₊ to within \(g(klErr)) nats/point (largest difference over the sweep; the fits end at most \(g(worstGap)) nats/point below their MLE) — a collapsed latent costs no KL and carries no information (latents.csv, kl.png).")
        if let free = rows.first(where: { $0.noise == "free" }) {
            let weak = zip(free.activityClosedForm, free.activityFitted).enumerated().filter { $0.element.0 > CollapseDiagnostics.threshold && $0.element.0 < 0.5 }
            var sentence = "With J = \(free.latent) and σ² free the MLE's σ² is \(g(free.noiseVariance)) (the mean of the discarded eigenvalues): \(free.activeFitted) units are active in the fit and \(free.activeClosedForm) in the closed form, with activities \(free.activityFitted.map { g($0) }.joined(separator: ", ")) (fitted) against \(free.activityClosedForm.map { g($0) }.joined(separator: ", "))"
            if !weak.isEmpty {
                sentence += "; the latents beyond the data's signal do not collapse exactly: sampling noise leaves their eigenvalues above σ², so Burda's 0.01 threshold counts them as active with activity below 0.5 — the count alone overstates the rank"
            }
            findings.append(sentence + " (collapse.csv).")
        }
        let markdown = "## Active units and total KL against the held σ²\n\n" + StudyFormat.table(
            ["noise", "σ²", "J", "active (fitted)", "active (closed form)", "KL fitted", "KL closed form", "gap to MLE", "iterations"],
            rows.map { r in [r.noise, g(r.noiseVariance), String(r.latent), String(r.activeFitted), String(r.activeClosedForm),
                             g(r.klFitted.reduce(0, +)), g(r.klClosedForm.reduce(0, +)), g(r.gapToMLE), String(r.iterations)] })
        let method = "each σ² fitted by \(s.strategy.rawValue) with the noise variance held (`--noise-variance`), up to \(s.iterations) iterations or a change below \(g(s.tolerance)); the closed form is `CollapseDiagnostics.closedForm` of the MLE at that σ²\(s.strategy == .em ? "; em's q is rotation-free, so its count is the rotation-free `activeDimensions`" : ""); seed \(seed)"
        return StudyProduct(tables: [counts, latents],
                            figures: [("collapse", countScript(experiment, eigenvalues: Array(eigen.prefix(latent)))), ("kl", klScript(experiment, latent: latent))],
                            markdown: markdown, findings: findings, method: method)
    }

    static func countScript(_ experiment: String, eigenvalues: [Double]) -> String {
        let arrows = eigenvalues.enumerated().map { i, l in
            "set arrow from \(formatNumber(l)), graph 0 to \(formatNumber(l)), graph 1 nohead dt 3 lc rgb '#777777'\nset label 'λ_\(i + 1)' at \(formatNumber(l)), graph 0.97 offset 0.3,0 tc rgb '#555555'"
        }.joined(separator: "\n")
        let header = """
        set title \(StudyFormat.quote("\(experiment): active units (A_j > 0.01) against the held noise variance"))
        set xlabel 'held noise variance σ² (log scale)'
        set ylabel 'active units'
        set logscale x
        set format x '%g'
        set grid
        set key bottom left
        set yrange [-0.3:\(eigenvalues.count).3]
        set samples 2000
        # The closed form as a function of σ² (§16): a unit is active when 1 − σ²/λ_j > 0.01.
        cf(x) = \(eigenvalues.isEmpty ? "0" : eigenvalues.map { "(\(formatNumber($0)) > x/0.99)" }.joined(separator: " + "))
        \(arrows)
        """
        let body = """
          plot cf(x) with lines lw 2 dt 2 lc rgb '\(StudyFormat.palette[0])' title 'closed form #{j: λ_j > σ²/0.99}', \\
               'collapse.csv' skip 1 using (strcol(1) eq 'held' ? $2 : NaN):4 with points pt 7 ps 1.3 lc rgb '\(StudyFormat.palette[1])' title 'fitted (mean field, σ² held)'
        """
        return StudyFormat.frame(stem: "collapse", header: header, body: body)
    }

    static func klScript(_ experiment: String, latent: Int) -> String {
        var parts: [String] = []
        for j in 1...max(1, min(latent, 6)) {
            let colour = StudyFormat.palette[(j - 1) % StudyFormat.palette.count]
            parts.append("'latents.csv' skip 1 using (strcol(1) eq 'held' && $4 == \(j) ? $2 : NaN):8 with lines lw 2 dt 2 lc rgb '\(colour)' title 'latent \(j), closed form'")
            parts.append("'' skip 1 using (strcol(1) eq 'held' && $4 == \(j) ? $2 : NaN):7 with points pt 7 lc rgb '\(colour)' title 'latent \(j), fitted'")
        }
        let header = """
        set title \(StudyFormat.quote("\(experiment): average KL(q(z_j|y) ‖ N(0,1)) per latent (sorted) against the held noise variance"))
        set xlabel 'held noise variance σ² (log scale)'
        set ylabel 'KL, nats per point'
        set logscale x
        set format x '%g'
        set grid
        set key outside right top
        """
        return StudyFormat.frame(stem: "kl", width: 1100, header: header, body: "  plot \\\n    " + parts.joined(separator: ", \\\n    "))
    }
}
