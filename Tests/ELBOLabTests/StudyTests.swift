import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments

/// The four studies of issue 14 (iwae-bound, iwae-snr, semi-amortized, collapse): quick specs
/// run and write their files with the right columns, and the claims they report hold on small
/// settings.
@Suite struct StudyTests {
    static func spec(kind: String, data: String, study: String, seeds: String = "[1]") -> String {
        #"{"name": "quick-\#(kind)", "kind": "\#(kind)", "data": \#(data), "seeds": \#(seeds), "study": \#(study)}"#
    }

    static func parseError(_ json: String) -> String? { ExperimentTests.parseError(json) }

    /// Runs `json` into a fresh folder, drawing the figures when gnuplot is installed; returns
    /// the folder and the problems the drawing met.
    static func run(_ json: String) throws -> (folder: String, warnings: [String]) {
        let spec = try ExperimentSpec.parse(Data(json.utf8), path: "quick.json")
        let folder = try ExperimentTests.temporaryFolder() + "/out"
        let drawing: PlotDrawing = Gnuplot.locate().map { .executable($0) } ?? .off
        let outcome = try ExperimentRunner(plots: drawing).run(spec, output: folder)
        return (folder, outcome.report.warnings)
    }

    static func header(_ path: String) throws -> [String] {
        try CSVTable.read(path: path).header
    }

    @Test("Each quick study spec runs and writes its CSVs, scripts and a summary with generated findings")
    func quickSpecsWriteTheirFiles() throws {
        let small = #"{"dim": 6, "latent": 2, "count": 200, "noise-variance": 0.5, "seed": 4}"#
        let cases: [(String, String, [String: [String]], [String])] = [
            ("iwae-bound", #"{"particles": [1, 10, 100], "max-draws": 200000}"#,
             ["bound.csv": ["q", "particles", "bound", "se", "log_p", "gap", "predicted_gap", "draws"]], ["bound.gp", "gap.gp"]),
            ("iwae-snr", #"{"particles": [1, 10], "repeats": 50, "points": 5, "slope-from": 1}"#,
             ["snr.csv": ["estimator", "particles", "block", "snr"], "snr-slopes.csv": ["estimator", "block", "seed", "slope"]], ["snr.gp"]),
            ("semi-amortized", #"{"refine-steps": [0, 1, 5], "train-steps": 100, "hidden": 8}"#,
             ["gap.csv": ["inference", "refine_steps", "amortization_gap", "elbo"]], ["gap.gp"]),
            ("collapse", #"{"points": 4, "extra-latent": 4, "iterations": 300}"#,
             ["collapse.csv": ["noise", "s2", "latent", "active_fitted", "active_closed_form", "kl_total_fitted",
                               "kl_total_closed_form", "gap_to_mle", "iterations"],
              "latents.csv": ["noise", "s2", "latent", "rank", "activity_fitted", "activity_closed_form", "kl_fitted", "kl_closed_form"]],
             ["collapse.gp", "kl.gp"]),
        ]
        for (kind, study, tables, scripts) in cases {
            let (folder, warnings) = try Self.run(Self.spec(kind: kind, data: small, study: study))
            // Every script draws (a gnuplot error would leave a figure missing).
            #expect(warnings.isEmpty, "\(kind): \(warnings)")
            if Gnuplot.locate() != nil {
                for s in scripts {
                    let stem = s.dropLast(3)
                    #expect(FileManager.default.fileExists(atPath: "\(folder)/\(stem).png") && FileManager.default.fileExists(atPath: "\(folder)/\(stem).svg"), "\(kind): \(stem)")
                }
            }
            for (name, columns) in tables {
                #expect(try Self.header("\(folder)/\(name)") == columns, "\(kind): \(name)")
                #expect(try CSVTable.read(path: "\(folder)/\(name)").rows.count > 0, "\(kind): \(name) is empty")
            }
            for s in scripts { #expect(FileManager.default.fileExists(atPath: "\(folder)/\(s)"), "\(kind): \(s)") }
            let summary = try String(contentsOfFile: "\(folder)/summary.md", encoding: .utf8)
            let findings = summary.components(separatedBy: "## What this shows\n\n").last?.split(separator: "\n").prefix { $0.hasPrefix("- ") } ?? []
            #expect((2...6).contains(findings.count), "\(kind): \(findings.count) sentences")
            #expect(FileManager.default.fileExists(atPath: "\(folder)/spec.json"))
        }
    }

    @Test("Study specs are checked strictly: file and field in every message")
    func studySpecErrors() throws {
        let data = #"{"dim": 6, "latent": 2, "count": 50, "noise-variance": 0.5}"#
        let unknown = try #require(Self.parseError(Self.spec(kind: "iwae-snr", data: data, study: #"{"repeat": 10}"#)))
        #expect(unknown.hasPrefix("experiments/bad.json: study.repeat: unknown key"), "\(unknown)")
        let order = try #require(Self.parseError(Self.spec(kind: "iwae-bound", data: data, study: #"{"particles": [10, 1]}"#)))
        #expect(order.hasPrefix("experiments/bad.json: study.particles[1]:"), "\(order)")
        let runs = try #require(Self.parseError(#"{"name": "x", "kind": "collapse", "data": \#(data), "seeds": [1], "runs": []}"#))
        #expect(runs.hasPrefix("experiments/bad.json: runs: is not used by kind \"collapse\""), "\(runs)")
        let kind = try #require(Self.parseError(#"{"name": "x", "kind": "colapse", "data": \#(data), "seeds": [1]}"#))
        #expect(kind.contains("unknown kind \"colapse\"") && kind.contains("iwae-snr"), "\(kind)")
        let strategy = try #require(Self.parseError(Self.spec(kind: "collapse", data: data, study: #"{"strategy": "joint"}"#)))
        #expect(strategy.hasPrefix("experiments/bad.json: study.strategy: must be per-datapoint or em"), "\(strategy)")
        let stray = try #require(Self.parseError(#"{"name": "x", "data": \#(data), "seeds": [1], "runs": [{"label": "a", "strategy": "em"}], "study": {}}"#))
        #expect(stray.hasPrefix("experiments/bad.json: study: is only used by the kinds"), "\(stray)")
    }

    @Test("SNR slopes from a quick run have the predicted signs: IWAE encoder falls, decoder and DReG encoder rise")
    func snrSlopeSigns() throws {
        let rng = RandomSource(seed: 2026)
        let truth = LinearGaussianModel.random(dimension: 20, latent: 3, noiseVariance: 1, using: rng)
        let data = Dataset(points: truth.sample(count: 200, using: rng), name: "snr")
        var s = IWAESNRStudy.Settings()
        s.particles = [1, 4, 16, 64]
        s.repeats = 1500
        s.slopeFrom = 1
        let (rows, _, _) = try IWAESNRStudy.run(data: data, latent: 3, settings: s, seeds: [1], workers: 2)
        let iwae = try #require(GradientSNRStudy.slope(rows, estimator: .iwae, block: "encoder"))
        let decoder = try #require(GradientSNRStudy.slope(rows, estimator: .iwae, block: "decoder"))
        let dreg = try #require(GradientSNRStudy.slope(rows, estimator: .dreg, block: "encoder"))
        #expect(iwae < 0 && decoder > 0 && dreg > 0, "slopes \(iwae), \(decoder), \(dreg)")
        // At K = 1 both estimators are the reparameterised ELBO gradient: the same decoder SNR up to Monte Carlo noise.
        let d1 = rows.filter { $0.particles == 1 && $0.block == "decoder" }.map(\.snr)
        #expect(d1.count == 2 && abs(log(d1[0] / d1[1])) < 0.2, "\(d1)")
    }

    @Test("Collapse: the fitted active units equal the closed form at every held noise variance")
    func collapseCountsMatchTheClosedForm() throws {
        let sim = SimulationSpec(dimension: 8, latent: 3, count: 1500, noiseVariance: 0.5, seed: 3)
        let data = sim.dataset(count: 1500, name: "collapse")
        var s = CollapseStudy.Settings()
        s.points = 8
        let rows = try CollapseStudy.run(data: data, latent: 3, settings: s, seed: 1, workers: 2)
        #expect(rows.count == 8)
        // The sweep spans every count from J down to 0.
        #expect(Set(rows.map(\.activeClosedForm)) == Set(0...3), "\(rows.map(\.activeClosedForm))")
        for r in rows {
            #expect(r.activeFitted == r.activeClosedForm, "σ² = \(r.noiseVariance): \(r.activeFitted) vs \(r.activeClosedForm)")
            // The fit stops within its tolerance of the MLE, so its KLs agree with the closed form to a few digits.
            for (a, b) in zip(r.klFitted, r.klClosedForm) { #expect(abs(a - b) < 1e-3, "σ² = \(r.noiseVariance): KL \(a) vs \(b)") }
        }
    }

    @Test("Semi-amortized: the gap is non-increasing in R; the linear encoder's is ~0 at the MLE")
    func semiAmortizedGapFallsWithR() throws {
        let sim = SimulationSpec(dimension: 8, latent: 2, count: 300, noiseVariance: 0.5, seed: 5)
        let data = sim.dataset(count: 300, name: "semi")
        var s = SemiAmortizedStudy.Settings()
        s.refineSteps = [0, 1, 2, 5, 10, 50]
        s.hidden = 8
        s.trainSteps = 3000
        let (rows, training, _) = try SemiAmortizedStudy.run(data: data, latent: 2, settings: s, seed: 1)
        for name in ["linear", "mlp", "per-datapoint"] {
            let gaps = rows.filter { $0.inference == name }.map(\.amortizationGap)
            #expect(gaps.count == s.refineSteps.count)
            // Each exact step raises every ELBO_n; 1e-12 allows the scorer's rounding.
            #expect(zip(gaps, gaps.dropFirst()).allSatisfy { $1 <= $0 + 1e-12 }, "\(name): \(gaps)")
        }
        let linear = try #require(training.first { $0.encoder == "linear" })
        #expect(linear.converged, "the linear encoder did not converge in \(linear.steps) steps")
        #expect(rows.filter { $0.inference == "linear" }.allSatisfy { $0.amortizationGap < 1e-5 })
        let pd = rows.filter { $0.inference == "per-datapoint" }
        #expect(pd.last!.amortizationGap < 0.1 * pd.first!.amortizationGap)
    }
}
