import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Posterior collapse (§16): the fitted activity and per-latent KL against the closed form of
/// the maximum-likelihood solution with the noise variance held.
@Suite("Collapse diagnostics")
struct CollapseTests {
    /// D = 6, N = 600 from a rank-3 model with column scales 3, 2, 1 and s2 = 0.5: eigenvalues of
    /// S near 9.5, 4.5, 1.5, 0.5, 0.5, 0.5.
    static func data() -> Dataset {
        let rng = RandomSource(seed: 606)
        var w = Matrix(rows: 6, cols: 3)
        rng.fillGaussian(&w.storage)
        let q = try! ThinSVD(w).left                                // orthonormal columns
        var loadings = Matrix(rows: 6, cols: 3)
        for i in 0..<6 { for c in 0..<3 { loadings[i, c] = [3.0, 2.0, 1.0][c] * q[i, c] } }
        let truth = LinearGaussianModel(loadings: loadings, offset: [1, -1, 0, 2, 0, 0], noiseVariance: 0.5)
        return Dataset(points: truth.sample(count: 600, using: rng), name: "collapse")
    }

    /// s2 held between λ_2 and λ_3: two latents of J = 3 stay active.
    static func heldNoise(_ data: Dataset) throws -> Double {
        let fit = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3)
        return 0.5 * (fit.eigenvalues[1] + fit.eigenvalues[2])
    }

    @Test("Activity and per-latent KL of a q by plain loops")
    func definitions() throws {
        let q = VT.randomPosteriors(.full, count: 50, latent: 3, rng: RandomSource(seed: 4))
        let c = try CollapseDiagnostics(q: q)
        for j in 0..<3 {
            let m = (0..<50).map { q.means[$0, j] }
            let mean = m.reduce(0, +) / 50
            let variance = m.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / 50
            #expect(approximatelyEqual(c.activity[j], variance, relative: VT.identityTolerance))
            let kl = (0..<50).reduce(0.0) { sum, n in
                let s = q.covariance(of: n)[j, j]
                return sum + 0.5 * (s + m[n] * m[n] - 1 - log(s))
            } / 50
            #expect(approximatelyEqual(c.klPerLatent[j], kl, relative: VT.identityTolerance))
        }
        #expect(c.activeUnits == c.activity.filter { $0 > 0.01 }.count)
    }

    @Test("mle with s2 held above λ_3: activity and KL per latent equal the closed form, 2 of 3 active")
    func maximumLikelihood() throws {
        let data = Self.data()
        let s2 = try Self.heldNoise(data)
        let fit = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3, constraints: ModelConstraints(noiseVariance: s2))
        let closed = CollapseDiagnostics.closedForm(fit)
        #expect(closed.activeUnits == 2 && closed.activity[2] == 0 && closed.klPerLatent[2] == 0)
        let fitted = try CollapseDiagnostics(q: try GaussianPosteriors.exactPosterior(of: fit.model, data: data))
        VT.expectClose(fitted.activity, closed.activity, tolerance: VT.identityTolerance, "activity")
        VT.expectClose(fitted.klPerLatent, closed.klPerLatent, tolerance: VT.identityTolerance, "KL per latent")
        #expect(fitted.activeUnits == 2 && fitted.activeDimensions == 2)
    }

    @Test("em and per-datapoint mean-field fits with s2 held: the fitted active count equals the closed form", arguments: [0.5, 1.0])
    func fittedCounts(position: Double) throws {
        let data = Self.data()
        let fitAll = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3)
        // s2 between λ_2 and λ_3 (position 0.5), or between λ_1 and λ_2 (position 1.0 of the way up from λ_3 … λ_2 → λ_1).
        let lambda = fitAll.eigenvalues
        let s2 = position < 1 ? 0.5 * (lambda[1] + lambda[2]) : 0.5 * (lambda[0] + lambda[1])
        let constraints = ModelConstraints(noiseVariance: s2)
        let closed = CollapseDiagnostics.closedForm(try LinearGaussianModel.maximumLikelihood(for: data, latent: 3, constraints: constraints))
        #expect(closed.activeUnits == (position < 1 ? 2 : 1))
        for strategy in [Strategy.em, .perDatapoint] {
            var options = FitOptions(strategy: strategy, latent: 3)
            options.constraints = constraints
            options.iterations = 20_000
            let result = try FitRunner().fit(data, options: options)
            let q = try #require(result.posteriors)
            let fitted = try CollapseDiagnostics(q: q)
            // em's exact posterior has an arbitrary rotation, so per-latent activity is not
            // identified there; the rotation-free count is. Mean field fixes the rotation (§16).
            let count = strategy == .em ? fitted.activeDimensions : fitted.activeUnits
            #expect(count == closed.activeUnits, "\(strategy): \(count) active vs closed form \(closed.activeUnits); activity \(fitted.activity)")
            if strategy == .perDatapoint {
                VT.expectClose(fitted.activity.sorted(by: >), closed.activity, tolerance: 1e-3, "mean-field activity")
            }
        }
    }
}
