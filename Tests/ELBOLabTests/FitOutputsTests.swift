import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// posterior.csv and the diagnostics summary.json gains (collapse, importance-weighted bound).
@Suite("Per-fit outputs")
struct FitOutputsTests {
    static func options(_ strategy: Strategy, covariance: GaussianPosteriors.Family = .diagonal) -> FitOptions {
        var o = FitOptions(strategy: strategy, latent: 2)
        if strategy == .perDatapoint { o.covariance = covariance }   // em and mle give the exact (full) posterior
        if strategy != .mle { o.iterations = 300 }
        return o
    }

    static let cases: [(Strategy, GaussianPosteriors.Family)] = [
        (.mle, .full), (.em, .full), (.perDatapoint, .diagonal), (.perDatapoint, .full), (.amortized, .diagonal), (.joint, .diagonal),
    ]

    @Test("posterior.csv round-trips: its q's exact ELBO is the summary's elbo; em and mle write the exact posterior",
          arguments: 0..<6)
    func posteriorRoundTrip(index: Int) throws {
        let (strategy, covariance) = Self.cases[index]
        let data = VT.engineData(count: 300)
        let result = try FitRunner().fit(data, options: Self.options(strategy, covariance: covariance))
        let text = try #require(result.posteriorCSV)
        let q = try PosteriorFile.parse(Array(text.utf8), name: "posterior.csv")
        #expect(q.count == data.count && q.latent == 2)
        #expect(q.family == (strategy == .em || strategy == .mle ? .full : covariance))
        #expect(PosteriorFile.csv(q) == text, "\(strategy): the file does not read back to the same numbers")
        let elbo = ExactELBO.average(data: data, model: result.model, q: q)
        let final = try #require(result.final)
        #expect(approximatelyEqual(elbo, final.score.elbo, relative: Tolerance.rounding), "\(strategy): \(elbo) vs \(final.score.elbo)")
        if strategy == .em || strategy == .mle {
            #expect(approximatelyEqual(elbo, try result.model.logLikelihood(of: data), relative: VT.identityTolerance))
        }
    }

    @Test("posterior.csv header and a bad file's one-line error")
    func posteriorHeader() throws {
        #expect(PosteriorFile.header(.diagonal, latent: 2) == ["m_1", "m_2", "v_1", "v_2"])
        #expect(PosteriorFile.header(.full, latent: 2) == ["m_1", "m_2", "l_1_1", "l_2_1", "l_2_2"])
        #expect(throws: InputError.self) { try PosteriorFile.parse(Array("m_1,v_1\n0.5,-1\n".utf8), name: "p.csv") }
        #expect(throws: InputError.self) { try PosteriorFile.parse(Array("a,b\n1,2\n".utf8), name: "p.csv") }
    }

    @Test("summary.json: activity and active units from the final q, iwae_bound = the exact ELBO within its error (K = 1)")
    func summaryFields() throws {
        let data = VT.engineData(count: 400)
        let result = try FitRunner().fit(data, options: Self.options(.perDatapoint))
        let pairs = result.diagnosticsSummary(data: data)
        let dict = Dictionary(uniqueKeysWithValues: pairs)
        for key in ["activity", "active_units", "iwae_bound", "iwae_bound_se", "iwae_particles", "iwae_draws"] {
            #expect(dict[key] != nil && dict[key] != .null, "\(key) missing")
        }
        let q = try #require(result.posteriors)
        // Activity: the variance over points of each latent's mean, by a plain loop.
        guard case let .array(activity)? = dict["activity"] else { Issue.record("activity is not an array"); return }
        for j in 0..<2 {
            let m = (0..<q.count).map { q.means[$0, j] }
            let mean = m.reduce(0, +) / Double(m.count)
            let variance = m.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(m.count)
            let fitted = try Self.value(activity[j])
            #expect(approximatelyEqual(fitted, variance, relative: VT.identityTolerance), "A_\(j + 1) \(fitted) vs \(variance)")
        }
        let active = try Self.value(dict["active_units"])
        #expect(active == 2)
        let bound = try Self.value(dict["iwae_bound"]), se = try Self.value(dict["iwae_bound_se"])
        #expect(se <= FitResult.iwaeTargetStandardError)
        let elbo = try #require(result.final).score.elbo
        #expect(abs(bound - elbo) <= VT.standardErrors * se, "L_1 \(bound) ± \(se) vs exact ELBO \(elbo)")
        let text = result.summaryJSON(data: data).text()
        #expect(text.contains("\"iwae_bound\"") && text.contains("\"active_units\""))
    }

    static func value(_ json: JSON?) throws -> Double {
        guard case let .number(x)? = json else { throw InputError("not a number: \(String(describing: json))") }
        return x
    }

    @Test("elbolab fit writes posterior.csv; the ELBO recomputed from it and params.json is summary.json's elbo")
    func cliRoundTrip() throws {
        try withTemporaryFolder { folder in
            let data = VT.engineData(count: 300)
            try AtomicFile.write(CSV.text(of: data.points), to: folder.appendingPathComponent("data.csv").path)
            let run = try elbolab(["fit", "--data", "data.csv", "--latent", "2", "--strategy", "per-datapoint", "--covariance", "full",
                                   "--iterations", "200", "--output", "out", "--quiet"], in: folder)
            try #require(run.status == 0, "fit failed: \(run.stderr)")
            let out = folder.appendingPathComponent("out")
            let q = try PosteriorFile.read(path: out.appendingPathComponent("posterior.csv").path)
            let model = try ParamsFile.read(path: out.appendingPathComponent("params.json").path)
            let summary = try jsonObject(at: out.appendingPathComponent("summary.json"))
            let loaded = try Dataset.load(csv: folder.appendingPathComponent("data.csv").path)
            let elbo = ExactELBO.average(data: loaded, model: model, q: q)
            #expect(approximatelyEqual(elbo, try number(summary["elbo"]), relative: Tolerance.cliAgreement))
            #expect((summary["activity"] as? [NSNumber])?.count == 2)
            #expect(try number(summary["iwae_bound_se"]) <= FitResult.iwaeTargetStandardError)
        }
    }
}
