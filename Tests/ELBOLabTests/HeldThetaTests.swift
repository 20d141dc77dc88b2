import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// θ held fixed (`fit --theta`, a spec's `"theta"`): θ never moves, and the gap to the MLE is
/// then the θ term (fixed) plus the approximation and amortisation gaps of what is fitted.
@Suite struct HeldThetaTests {
    static let truth = LinearGaussianModel.random(dimension: 5, latent: 2, noiseVariance: 0.4, using: RandomSource(seed: 11))
    static let points = truth.sample(count: 400, using: RandomSource(seed: 12))
    static let data = Dataset(points: points, name: "held")

    static func fit(_ strategy: Strategy, theta: HeldTheta, _ configure: (inout FitOptions) -> Void = { _ in }) throws -> FitResult {
        var o = FitOptions(strategy: strategy, latent: 2)
        o.theta = theta
        o.iterations = 60
        o.tolerance = 1e-12
        o.maxSeconds = 100
        configure(&o)
        return try FitRunner().fit(data, options: o)
    }

    @Test func thetaHeldAtTheMLENeverMovesAndLeavesNoThetaTerm() throws {
        let mle = try LinearGaussianModel.maximumLikelihood(for: Self.data, latent: 2)
        for (strategy, configure) in [(Strategy.em, { (_: inout FitOptions) in }),
                                      (.perDatapoint, { (_: inout FitOptions) in }),
                                      (.perDatapoint, { (o: inout FitOptions) in o.eSolver = .bfgs }),
                                      (.amortized, { (o: inout FitOptions) in o.optimizer = .bfgs; o.encoderSteps = 10 })] {
            let r = try Self.fit(strategy, theta: .mle, configure)
            #expect(r.model == mle.model, "\(strategy): θ moved")
            let last = try #require(r.final)
            // The θ term, MLE − log p(Y; θ), is rounding: log p is evaluated at the MLE itself.
            #expect(abs(mle.logLikelihood - last.score.logLikelihood) < 1e-12, "\(strategy)")
            // What is left is the approximation + amortisation gap, which fitting q (or a linear
            // encoder, which can express the optimal mean-field q of this model) closes.
            #expect(mle.logLikelihood - last.score.elbo < 1e-6, "\(strategy): gap \(mle.logLikelihood - last.score.elbo)")
        }
    }

    @Test func thetaHeldAtGivenParametersScoresThoseParameters() throws {
        // Not the MLE: the θ term is MLE − log p(Y; θ), computed independently from the model.
        let held = Self.truth
        let r = try Self.fit(.em, theta: .fixed(held))
        let last = try #require(r.final)
        #expect(r.model == held)
        let direct = try held.logLikelihood(of: Self.data)
        #expect(abs(last.score.logLikelihood - direct) < 1e-12 * max(1, abs(direct)))
        // em with θ held is the exact E-step: q = p(z | y; θ), so the ELBO is log p(Y; θ).
        #expect(abs(last.score.elbo - direct) < 1e-10)
        #expect(r.mle.logLikelihood - direct > 0, "the true θ is short of the MLE on its own sample")
    }

    @Test func strategiesThatCannotHoldThetaSaySo() {
        for strategy in [Strategy.mle, .joint] {
            #expect(throws: InputError.self) { try Self.fit(strategy, theta: .mle) }
        }
        let wrong = LinearGaussianModel.random(dimension: 3, latent: 2, noiseVariance: 1, using: RandomSource(seed: 1))
        do {
            _ = try Self.fit(.em, theta: .fixed(wrong))
            Issue.record("a θ of the wrong shape was accepted")
        } catch let e as InputError {
            #expect(e.message.contains("--theta") && !e.message.contains("\n"), "\(e.message)")
        } catch { Issue.record("\(error)") }
    }

    @Test func specThetaReadsMleOrAParamsFileRelativeToTheSpec() throws {
        try withTemporaryFolder { folder in
            try AtomicFile.write(ParamsFile.json(Self.truth).text(), to: folder.path + "/held.json")
            let json = """
            {"name": "held", "data": {"dim": 5, "latent": 2, "count": 100, "noise-variance": 0.4},
             "seeds": [1], "runs": [{"label": "a", "strategy": "em", "theta": "mle"},
                                    {"label": "b", "strategy": "per-datapoint", "theta": "held.json"},
                                    {"label": "c", "strategy": "em", "theta": null}]}
            """
            let spec = try ExperimentSpec.parse(Data(json.utf8), path: folder.path + "/held-spec.json")
            #expect(spec.runs[0].options.theta == .mle)
            #expect(spec.runs[1].options.theta == .fixed(Self.truth))
            #expect(spec.runs[2].options.theta == nil)
            let bad = json.replacingOccurrences(of: "held.json", with: "missing.json")
            #expect(throws: InputError.self) { try ExperimentSpec.parse(Data(bad.utf8), path: folder.path + "/held-spec.json") }
        }
    }

    @Test func cliFitThetaHoldsTheParametersAndSaysSoInTheSummary() throws {
        try withTemporaryFolder { folder in
            try AtomicFile.write(ParamsFile.json(Self.truth).text(), to: folder.path + "/held.json")
            var csv = ""
            for p in 0..<Self.data.count { csv += (0..<5).map { formatNumber(Self.points[p, $0]) }.joined(separator: ",") + "\n" }
            try AtomicFile.write(csv, to: folder.path + "/data.csv")
            let run = try elbolab(["fit", "--data", "data.csv", "--latent", "2", "--strategy", "per-datapoint", "--theta", "held.json",
                                   "--iterations", "5", "--output", "out", "--quiet"], in: folder)
            try #require(run.status == 0, "fit failed: \(run.stderr)")
            #expect(try ParamsFile.read(path: folder.path + "/out/params.json") == Self.truth)
            let summary = try String(contentsOfFile: folder.path + "/out/summary.json", encoding: .utf8)
            #expect(summary.contains("\"theta\": \"held at the --theta parameters"), "\(summary)")
            let joint = try elbolab(["fit", "--data", "data.csv", "--latent", "2", "--strategy", "joint", "--theta", "mle",
                                     "--output", "out2", "--quiet"], in: folder)
            #expect(joint.status != 0 && joint.stderrLines.count == 1 && joint.stderr.contains("--theta"), "\(joint.stderr)")
        }
    }
}
