import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Specs, the experiment runner, its files of record, the summary recomputed from them, and
/// reproducibility across reruns.
@Suite struct ExperimentTests {
    // MARK: Helpers

    /// A fresh temporary folder.
    static func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "elbolab-experiment-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The message of the InputError that parsing `json` throws.
    static func parseError(_ json: String) -> String? {
        do {
            _ = try ExperimentSpec.parse(Data(json.utf8), path: "experiments/bad.json")
            return nil
        } catch let error as InputError {
            return error.message
        } catch {
            return "not an InputError: \(error)"
        }
    }

    /// A valid spec with `runs` spliced in.
    static func spec(runs: String, extra: String = "") -> String {
        """
        {"name": "tiny", "data": {"dim": 4, "latent": 2, "count": 200, "noise-variance": 0.5, "seed": 3},
         "seeds": [1, 2], \(extra) "runs": [\(runs)]}
        """
    }

    /// The tiny experiment the end-to-end tests run: iteration caps only, so reruns are identical.
    static let tinySpec = """
    {
      "name": "tiny",
      "title": "A tiny end-to-end run",
      "data": {"dim": 4, "latent": 2, "count": 300, "noise_variance": 0.5, "seed": 7},
      "seeds": [1, 2, 3],
      "stop": {"max-seconds": 1000, "tolerance": 1e-12},
      "runs": [
        {"label": "em", "strategy": "em", "iterations": 40},
        {"label": "per-datapoint closed-form", "strategy": "per-datapoint", "e-solver": "closed-form", "iterations": 60},
        {"label": "amortized, reparam", "strategy": "amortized", "gradient": "reparam", "iterations": 25},
        {"label": "joint", "strategy": "joint", "iterations": 80}
      ]
    }
    """

    static func runTiny(in folder: String) throws -> ExperimentOutcome {
        try AtomicFile.makeFolder(folder)
        let specPath = folder + "/tiny.json"
        try AtomicFile.write(tinySpec, to: specPath)
        let spec = try ExperimentSpec.load(path: specPath)
        return try ExperimentRunner(workers: 2).run(spec, output: folder + "/results")
    }

    /// Relative closeness for recomputed figures (same values, possibly summed in another order).
    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-12 * max(1, abs(a), abs(b)) }

    // MARK: Spec loading

    @Test func rejectsAnUnknownStrategyNamingTheField() {
        let message = Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em"}, {"label": "b", "strategy": "em"}, {"label": "c", "strategy": "vae"}"#))
        #expect(message == #"experiments/bad.json: runs[2].strategy: unknown strategy "vae" (expected one of mle, em, per-datapoint, amortized, joint, semi-amortized)"#)
    }

    @Test func rejectsAnUnknownOption() throws {
        let message = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "joint", "learning_rat": 0.1}"#)))
        #expect(message.hasPrefix("experiments/bad.json: runs[0].learning_rat: unknown key \"learning_rat\""))
        let top = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em"}"#, extra: #""sedes": [1],"#)))
        #expect(top.hasPrefix("experiments/bad.json: sedes: unknown key"))
        let value = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "per-datapoint", "e-solver": "lbfgs"}"#)))
        #expect(value == #"experiments/bad.json: runs[0].e-solver: unknown e-solver "lbfgs" (expected one of closed-form, bfgs, adam)"#)
    }

    @Test func rejectsMissingFields() throws {
        let strategy = try #require(Self.parseError(Self.spec(runs: #"{"label": "a"}"#)))
        #expect(strategy.hasPrefix("experiments/bad.json: runs[0].strategy: is missing"))
        let label = try #require(Self.parseError(Self.spec(runs: #"{"strategy": "em"}"#)))
        #expect(label.hasPrefix("experiments/bad.json: runs[0].label: is missing"))
        let noData = try #require(Self.parseError(#"{"name": "x", "seeds": [1], "runs": [{"label": "a", "strategy": "em"}]}"#))
        #expect(noData.hasPrefix("experiments/bad.json: data: is missing"))
        let noCount = try #require(Self.parseError(#"{"name": "x", "data": {"dim": 3, "latent": 1, "noise-variance": 1}, "seeds": [1], "runs": [{"label": "a", "strategy": "em"}]}"#))
        #expect(noCount.hasPrefix("experiments/bad.json: data.count: is missing"))
    }

    @Test func rejectsWrongTypes() throws {
        let iterations = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em", "iterations": "ten"}"#)))
        #expect(iterations == #"experiments/bad.json: runs[0].iterations: expected an integer, got "ten""#)
        let fraction = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em", "iterations": 2.5}"#)))
        #expect(fraction == "experiments/bad.json: runs[0].iterations: expected an integer, got 2.5")
        let flag = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em", "no-offset": 1}"#)))
        #expect(flag == "experiments/bad.json: runs[0].no-offset: expected true or false, got 1")
        let seeds = try #require(Self.parseError(#"{"name": "x", "data": {"dim": 3, "latent": 1, "count": 10, "noise-variance": 1}, "seeds": 1, "runs": [{"label": "a", "strategy": "em"}]}"#))
        #expect(seeds == "experiments/bad.json: seeds: expected an array, got 1")
        let runs = try #require(Self.parseError(Self.spec(runs: #""em""#)))
        #expect(runs == #"experiments/bad.json: runs[0]: expected an object, got "em""#)
        let json = try #require(Self.parseError("{\"name\": "))
        #expect(json.hasPrefix("experiments/bad.json: is not valid JSON"))
    }

    @Test func rejectsRepeatedLabelsAndSeedsAndMisplacedBlocks() throws {
        let label = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em"}, {"label": "a", "strategy": "joint"}"#)))
        #expect(label.hasPrefix("experiments/bad.json: runs[1].label: repeats the label"))
        let seed = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em", "seed": 4}"#)))
        #expect(seed.hasPrefix("experiments/bad.json: runs[0].seed: seeds are set for the whole experiment"))
        let counts = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "em"}"#, extra: #""counts": [10, 20],"#)))
        #expect(counts == #"experiments/bad.json: counts: is only used by kind "scaling""#)
    }

    @Test func readsOptionsInEitherCaseAndLayersDefaults() throws {
        let json = Self.spec(runs: #"{"label": "a", "strategy": "per-datapoint", "e_solver": "bfgs", "e-steps": 7, "max-seconds": 9}"#,
                             extra: #""stop": {"tolerance": 1e-5, "max_seconds": 3}, "log-every": 2, "defaults": {"noise-variance": 0.5, "no_offset": true},"#)
        let spec = try ExperimentSpec.parse(Data(json.utf8), path: "spec.json")
        let o = try #require(spec.runs.first).options
        #expect(o.strategy == .perDatapoint && o.eSolver == .bfgs && o.eSteps == 7)
        #expect(o.maxSeconds == 9 && o.tolerance == 1e-5 && o.logEvery == 2)
        #expect(o.constraints == ModelConstraints(noiseVariance: 0.5, zeroOffset: true))
        #expect(o.latent == 2 && spec.seeds == [1, 2] && spec.kind == .curves)
    }

    @Test func readsTheMonteCarloLevers() throws {
        let json = Self.spec(runs: #"{"label": "a", "strategy": "joint", "gradient": "reparam", "kl": "stl", "averaging": 8}"#)
        let o = try #require(try ExperimentSpec.parse(Data(json.utf8), path: "spec.json").runs.first).options
        #expect(o.kl == .stl && o.averaging == 8 && o.resolvedSchedule == .decay(halfLife: 1000, power: 1))
        let negative = try #require(Self.parseError(Self.spec(runs: #"{"label": "a", "strategy": "joint", "averaging": -1}"#)))
        #expect(negative.hasPrefix("experiments/bad.json: runs[0].averaging"), "\(negative)")
    }

    @Test func everyShippedSpecLoads() throws {
        // The specs in experiments/ (found from this file's location) must all parse.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("experiments").path
        guard FileManager.default.fileExists(atPath: folder) else { return }
        let specs = try ExperimentRunner.specs(in: folder)
        #expect(specs.map(\.name) == ["seed-scalar", "ppca", "amortization-gap", "alternating-vs-joint", "gradient-estimators", "scaling",
                                     "iwae-bound", "iwae-snr", "semi-amortized", "collapse"])
        let scalar = try #require(specs.first)
        #expect(scalar.data.truth?.loadings == Matrix([[2]]))
        #expect(scalar.data.truth?.offset == [0])
    }

    // MARK: Statistics and recovery

    @Test func medianIntervalIsTheOrderStatisticOneWithExactBinomialCoverage() throws {
        let s = try #require(SampleStatistics([3, 1, 2, nil, .nan]))
        #expect(s.count == 3 && s.mean == 2 && s.median == 2 && s.standardDeviation == 1 && s.minimum == 1 && s.maximum == 3)
        // Fewer than ten values: no interval (a t-interval from 3 seeds is ±4.3 sd/√3).
        #expect(s.interval == nil && SampleStatistics([5])?.interval == nil && SampleStatistics([nil]) == nil)
        // The binomial tail by exact integer counts, independent of GSL's CDF.
        func tail(_ k: Int, _ n: Int) -> Double {
            var c = 1.0, sum = 0.0
            for i in 0...k { if i > 0 { c = c * Double(n - i + 1) / Double(i) }; sum += c }
            return sum / pow(2, Double(n))
        }
        for n in [10, 11, 20, 37] {
            let xs = (1...n).map { Double($0) * 0.5 }   // positive, sorted: x₍ᵢ₎ = i/2
            let ci = try #require(SampleStatistics(xs.reversed())?.interval)
            let k = Int((ci.low / 0.5).rounded())
            #expect(ci.high == xs[n - k], "n = \(n): symmetric order statistics")
            #expect(1 - 2 * tail(k - 1, n) >= 0.95, "n = \(n): coverage of [x₍\(k)₎, x₍\(n - k + 1)₎]")
            #expect(1 - 2 * tail(k, n) < 0.95, "n = \(n): k = \(k) is the largest with 95% coverage")
            #expect(ci.low > 0, "a positive quantity keeps a positive bound")
        }
    }

    @Test func principalAnglesAreRotationFree() {
        let w = Matrix([[1, 0], [0, 2], [1, 1], [0, 0]])
        let c = cos(0.7), s = sin(0.7)
        let rotated = w.multiplied(by: Matrix([[c, -s], [s, c]]))
        let truth = LinearGaussianModel(loadings: w, offset: [0, 0, 0, 0], noiseVariance: 0.5)
        let fit = LinearGaussianModel(loadings: rotated, offset: [0, 0, 0, 0], noiseVariance: 0.55)
        let r = Recovery(fit: fit, truth: truth)
        #expect(r.principalAngleDegrees < 1e-6)
        #expect(abs(r.noiseVarianceRelativeError - 0.1) < 1e-12)
        #expect(r.loadingRelativeError < 1e-12)
        let orthogonal = Matrix([[0, 0], [0, 0], [0, 0], [1, 0]])
        let far = Recovery.largestPrincipalAngle(Matrix([[0], [0], [0], [1]]), Matrix([[1], [0], [0], [0]]))
        #expect(abs(far - Double.pi / 2) < 1e-12)
        #expect(abs(Recovery.largestPrincipalAngle(orthogonal, w) - Double.pi / 2) < 1e-12)   // rank lost: 90°
    }

    @Test func csvTablesRoundTripQuotedFields() throws {
        let t = CSVTable(header: ["run", "x"], rows: [["a, \"b\"", "1.5"], ["plain", ""]])
        let back = try CSVTable.parse(t.text, name: "t.csv")
        #expect(back.rows == t.rows && back.header == t.header)
        #expect(try back.numbers("x") == [1.5, nil])
    }

    // MARK: End to end

    @Test func tinyExperimentWritesEveryFileWithTheRightColumns() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try Self.runTiny(in: folder)
        let out = outcome.folder
        for file in ["curves.csv", "runs.csv", "summary.csv", "summary.md", "meta.json", "bands.csv", "split.csv",
                     "truth.json", "spec.json"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(file)"), "missing \(file)")
        }
        let curves = try CSVTable.read(path: out + "/curves.csv")
        #expect(curves.header == ["experiment", "run", "strategy", "seed", "iteration", "data_passes", "gradient_evaluations",
                                  "seconds", "elbo", "loglik", "approximation_gap", "amortization_gap"])
        #expect(Set(try curves.strings("run")) == ["em", "per-datapoint closed-form", "amortized, reparam", "joint"])
        let runs = try CSVTable.read(path: out + "/runs.csv")
        #expect(runs.header == RunRecord.header && runs.rows.count == 12)
        let summary = try CSVTable.read(path: out + "/summary.csv")
        #expect(summary.header == ["experiment", "run", "strategy", "quantity", "seeds", "n", "median", "min", "max",
                                   "mean", "sd", "median_ci95_low", "median_ci95_high"])
        let markdown = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
        #expect(markdown.contains("| amortized, reparam |") && markdown.contains("## Parameter recovery"))
        #expect(markdown.hasPrefix("# tiny: A tiny end-to-end run\n\n## What this shows\n"))

        for stem in ["gap-iteration", "gap-passes", "gap-seconds", "gap-split"] {
            #expect(FileManager.default.fileExists(atPath: "\(out)/\(stem).gp"))
            if Gnuplot.locate() != nil {
                for ext in ["png", "svg"] {
                    let size = (try? FileManager.default.attributesOfItem(atPath: "\(out)/\(stem).\(ext)")[.size] as? Int) ?? 0
                    #expect(size > 0, "\(stem).\(ext) is missing or empty")
                }
            }
        }
        if Gnuplot.locate() != nil { #expect(outcome.report.warnings.isEmpty, "\(outcome.report.warnings)") }
    }

    @Test func summaryEqualsWhatCurvesRecompute() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = try Self.runTiny(in: folder).folder
        let points = try CurvePoint.points(from: try CSVTable.read(path: out + "/curves.csv"))
        let records = try RunRecord.records(from: try CSVTable.read(path: out + "/runs.csv"))
        let summary = try CSVTable.read(path: out + "/summary.csv")
        let run = try summary.strings("run"), quantity = try summary.strings("quantity")
        let mean = try summary.numbers("mean"), n = try summary.numbers("n")
        func reported(_ r: String, _ q: String) -> (mean: Double?, n: Int) {
            guard let i = summary.rows.indices.first(where: { run[$0] == r && quantity[$0] == q }) else { return (nil, -1) }
            return (mean[i], Int(n[i] ?? -1))
        }
        for label in ["em", "per-datapoint closed-form", "amortized, reparam", "joint"] {
            var finals: [CurvePoint] = [], gaps: [Double] = [], reach: [Double] = []
            for seed in [UInt64(1), 2, 3] {
                let curve = points.filter { $0.run == label && $0.seed == seed }
                let last = try #require(curve.last)
                let mle = try #require(records.first { $0.run == label && $0.seed == seed }).mleLogLikelihood
                finals.append(last)
                gaps.append(mle - last.elbo)
                if let hit = curve.first(where: { mle - $0.elbo <= 0.1 }) { reach.append(hit.seconds) }
            }
            let k = Double(finals.count)
            let expected: [(String, Double)] = [
                ("elbo", finals.map(\.elbo).reduce(0, +) / k),
                ("loglik", finals.map(\.logLikelihood).reduce(0, +) / k),
                ("approximation_gap", finals.map(\.approximationGap).reduce(0, +) / k),
                ("amortization_gap", finals.map(\.amortizationGap).reduce(0, +) / k),
                ("gap_to_mle", gaps.reduce(0, +) / k),
                ("iterations", finals.map { Double($0.iteration) }.reduce(0, +) / k),
                ("data_passes", finals.map(\.dataPasses).reduce(0, +) / k),
                ("seconds", finals.map(\.seconds).reduce(0, +) / k),
            ]
            for (q, value) in expected {
                let got = try #require(reported(label, q).mean, "\(label) \(q) missing")
                #expect(Self.close(got, value), "\(label) \(q): summary \(got), recomputed \(value)")
            }
            let to = reported(label, "seconds_to_0.1")
            #expect(to.n == reach.count, "\(label): seeds reaching 0.1")
            if !reach.isEmpty, let got = to.mean {
                #expect(Self.close(got, reach.reduce(0, +) / Double(reach.count)))
            }
        }
    }

    @Test func rerunningGivesIdenticalFilesExceptSeconds() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = try Self.runTiny(in: folder + "/a")
        let second = try Self.runTiny(in: folder + "/b")
        func withoutTime(_ path: String, dropping: (String) -> Bool) throws -> [[String]] {
            let t = try CSVTable.read(path: path)
            let keep = t.header.indices.filter { !dropping(t.header[$0]) }
            return t.rows.map { r in keep.map { r[$0] } }
        }
        let timeColumn: (String) -> Bool = { $0 == "seconds" || $0.hasPrefix("seconds_") }
        let a = try withoutTime(first.folder + "/curves.csv", dropping: timeColumn)
        let b = try withoutTime(second.folder + "/curves.csv", dropping: timeColumn)
        #expect(!a.isEmpty && a == b)
        #expect(try withoutTime(first.folder + "/runs.csv", dropping: timeColumn)
                == withoutTime(second.folder + "/runs.csv", dropping: timeColumn))
        // In summary.csv the time figures are rows (quantities), not columns.
        func summaryRows(_ folder: String) throws -> [[String]] {
            let t = try CSVTable.read(path: folder + "/summary.csv")
            let q = try t.column("quantity")
            return t.rows.filter { !timeColumn($0[q]) }
        }
        #expect(try summaryRows(first.folder) == summaryRows(second.folder))
    }

    @Test func plotRedrawsTheSummaryFromTheFiles() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = try Self.runTiny(in: folder).folder
        let before = try String(contentsOfFile: out + "/summary.csv", encoding: .utf8)
        try FileManager.default.removeItem(atPath: out + "/summary.csv")
        try FileManager.default.removeItem(atPath: out + "/summary.md")
        let report = try ExperimentReport.write(folder: out, plots: .off)
        #expect(try String(contentsOfFile: out + "/summary.csv", encoding: .utf8) == before)
        #expect(FileManager.default.fileExists(atPath: out + "/summary.md"))
        #expect(report.plots.isEmpty && report.scripts.contains("gap-split.gp"))
    }

    @Test func gradientVarianceAndScalingKindsRun() throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let variance = """
        {"name": "gv", "kind": "gradient-variance",
         "data": {"dim": 5, "latent": 2, "count": 200, "noise-variance": 0.5, "seed": 2}, "seeds": [1],
         "stop": {"max-seconds": 100},
         "variance": {"warmup": {"strategy": "joint", "iterations": 10}, "samples": [1, 4], "repeats": 40, "points": 50},
         "runs": [{"label": "joint reparam", "strategy": "joint", "gradient": "reparam", "iterations": 5}]}
        """
        let gv = try ExperimentSpec.parse(Data(variance.utf8), path: folder + "/gv.json")
        let outcome = try ExperimentRunner(plots: .off, workers: 2).run(gv, output: folder + "/gv")
        let table = try CSVTable.read(path: outcome.folder + "/variance.csv")
        #expect(table.header == GradientVarianceStudy.header && table.rows.count == 2 * 2 * 2 * 2)
        // More samples, less variance: the reparameterised q-gradient with K = 4 beats K = 1.
        let rows = try ExperimentReport.varianceRows(table)
        let k1 = try #require(rows.first { $0.estimator == .reparam && $0.kl == .analytic && $0.samples == 1 && $0.block == "variational" })
        let k4 = try #require(rows.first { $0.estimator == .reparam && $0.kl == .analytic && $0.samples == 4 && $0.block == "variational" })
        #expect(k4.totalVariance < k1.totalVariance)

        let scaling = """
        {"name": "sc", "kind": "scaling", "data": {"dim": 5, "latent": 2, "noise-variance": 0.5}, "counts": [100, 400],
         "seeds": [1], "runs": [{"label": "em", "strategy": "em", "iterations": 20}]}
        """
        let sc = try ExperimentSpec.parse(Data(scaling.utf8), path: folder + "/sc.json")
        let scaled = try ExperimentRunner(plots: .off, workers: 2).run(sc, output: folder + "/sc")
        let st = try CSVTable.read(path: scaled.folder + "/scaling.csv")
        #expect(try st.strings("n") == ["100", "400"] && Set(try st.strings("run")) == ["em"])
        #expect(Set(try CSVTable.read(path: scaled.folder + "/curves.csv").strings("run")) == ["em N=100", "em N=400"])
    }
}
