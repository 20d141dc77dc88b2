import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Joint training on the importance-weighted bound (`--objective iwae --particles K`).
@Suite("Importance-weighted training")
struct ImportanceWeightedTrainingTests {
    static func options(_ gradient: GradientEstimator, particles: Int = 5) -> FitOptions {
        var o = FitOptions(strategy: .joint, latent: 2)
        o.objective = .iwae
        o.particles = particles
        o.gradient = gradient
        o.iterations = 1500
        o.tolerance = 0
        return o
    }

    @Test("joint IWAE and DReG (K = 5) bring θ within 0.001 nats/point of the MLE; L_K sits between the ELBO and log p",
          arguments: [GradientEstimator.reparam, .dreg])
    func reachesMLE(gradient: GradientEstimator) throws {
        let data = VT.engineData()
        let result = try FitRunner().fit(data, options: Self.options(gradient))
        let final = try #require(result.final)
        #expect(result.fault == nil)
        let gap = result.mle.logLikelihood - final.score.logLikelihood
        #expect(gap >= 0 && gap < 1e-3, "\(gradient): log-likelihood \(gap) nats/point short of the MLE")
        #expect(result.secondsTo(within: 1e-3) != nil)
        let bound = try #require(result.importanceWeightedBound(data: data, particles: 5))
        let tolerance = VT.standardErrors * bound.standardError
        #expect(bound.value > final.score.elbo + tolerance && bound.value < final.score.logLikelihood + tolerance,
                "\(gradient): L_5 \(bound.value) ± \(bound.standardError) vs ELBO \(final.score.elbo), log p \(final.score.logLikelihood)")
    }

    @Test("amortized IWAE and DReG (K = 5, θ by Adam steps on L_K) bring θ within 0.01 nats/point of the MLE",
          arguments: [GradientEstimator.reparam, .dreg])
    func amortizedReachesMLE(gradient: GradientEstimator) throws {
        let data = VT.engineData()
        var o = Self.options(gradient)
        o.strategy = .amortized
        o.mStep = .gradient
        o.iterations = 3000
        let result = try FitRunner().fit(data, options: o)
        let final = try #require(result.final)
        #expect(result.fault == nil)
        let gap = result.mle.logLikelihood - final.score.logLikelihood
        #expect(gap >= 0 && gap < 1e-2, "\(gradient): log-likelihood \(gap) nats/point short of the MLE")
        var closedForm = o
        closedForm.mStep = .closedForm
        #expect(throws: InputError.self) { try closedForm.validate() }
    }

    @Test("Options that do not fit the objective are one-line input errors")
    func invalidCombinations() throws {
        let data = VT.engineData(count: 100)
        var exact = Self.options(.exact)
        exact.gradient = nil
        var amortized = Self.options(.reparam)
        amortized.strategy = .amortized
        var dregELBO = FitOptions(strategy: .joint, latent: 2)
        dregELBO.gradient = .dreg
        var particlesELBO = FitOptions(strategy: .joint, latent: 2)
        particlesELBO.particles = 4
        var kl = Self.options(.reparam)
        kl.kl = .stl
        for (options, fragment) in [(exact, "--gradient reparam"), (amortized, "needs --m-step gradient"),
                                    (dregELBO, "--objective iwae"), (particlesELBO, "--particles does not apply"), (kl, "drop --kl")] {
            #expect {
                _ = try makeEngine(options, data: data)
            } throws: { error in
                let message = (error as? InputError)?.message ?? ""
                return message.contains(fragment) && !message.contains("\n")
            }
        }
    }

    @Test("Specs read objective and particles")
    func specOptions() throws {
        let json = """
        {"name": "iw", "data": {"dim": 4, "latent": 2, "count": 200, "noise-variance": 0.5, "seed": 3}, "seeds": [1],
         "runs": [{"label": "dreg", "strategy": "joint", "objective": "iwae", "particles": 10, "gradient": "dreg"},
                  {"label": "elbo", "strategy": "joint", "gradient": "reparam"}]}
        """
        let spec = try ExperimentSpec.parse(Data(json.utf8), path: "iw.json")
        let options = spec.runs.map(\.options)
        #expect(options[0].resolvedObjective == .iwae && options[0].resolvedParticles == 10 && options[0].resolvedGradient == .dreg)
        #expect(options[1].resolvedObjective == .elbo && options[1].resolvedParticles == 1)
        #expect(throws: InputError.self) {
            try ExperimentSpec.parse(Data(json.replacingOccurrences(of: "\"particles\": 10", with: "\"particles\": 0").utf8), path: "iw.json")
        }
    }
}
