import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// `em --acceleration squarem`: SQUAREM-accelerated EM reaches the closed-form MLE where plain EM crawls, and
/// its log-likelihood never falls.
@Suite("SQUAREM-accelerated EM")
struct SquaremTests {
    /// Wide data (N = 20, D = 200, J = 3): plain EM's rate is ≈ 1 − 2 s2/λ_J, here thousands of
    /// iterations per e-fold of the error.
    static let data: Dataset = {
        let rng = RandomSource(seed: 41)
        let model = LinearGaussianModel.random(dimension: 200, latent: 3, noiseVariance: 0.5, using: rng)
        return Dataset(points: model.sample(count: 20, using: rng), name: "wide")
    }()

    static func engine(squarem: Bool) throws -> InferenceEngine {
        var o = FitOptions(strategy: .em, latent: 3)
        o.seed = 3
        o.acceleration = squarem ? .squarem : Acceleration.none
        return try makeEngine(o, data: data)
    }

    @Test("reaches the MLE within 1e-8 nats/point where plain EM with five times the EM steps is not within 1e-6; log p never falls")
    func reachesTheMLE() throws {
        let mle = try LinearGaussianModel.maximumLikelihood(for: Self.data, latent: 3).logLikelihood
        let fast = try Self.engine(squarem: true), plain = try Self.engine(squarem: false)
        var previous = -Double.infinity
        for _ in 0..<200 {
            _ = try fast.step()
            let ll = try fast.model.logLikelihood(of: Self.data)
            // Rounding of a per-point average of terms of size ~|log p| ≈ 300.
            #expect(ll >= previous - 1e-12 * abs(ll), "log-likelihood fell from \(previous) to \(ll)")
            previous = ll
        }
        for _ in 0..<1000 { _ = try plain.step() }   // 5 EM steps' worth per SQUAREM cycle
        let plainGap = mle - (try plain.model.logLikelihood(of: Self.data))
        #expect(mle - previous <= 1e-8, "SQUAREM ends \(mle - previous) below the MLE")
        #expect(plainGap > 1e-6, "plain EM is already within \(plainGap): the case does not show acceleration")
    }

    @Test("is refused for strategies other than em; px outside em and per-datapoint variational EM")
    func refusedElsewhere() {
        var o = FitOptions(strategy: .joint, latent: 3)
        o.acceleration = .squarem
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: Self.data) }
        o = FitOptions(strategy: .perDatapoint, latent: 3)
        o.acceleration = .squarem
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: Self.data) }
        o.acceleration = .px
        o.eSolver = .bfgs
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: Self.data) }
        o = FitOptions(strategy: .amortized, latent: 3)
        o.acceleration = .px
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: Self.data) }
        o.acceleration = Acceleration.none   // acceleration does not apply to amortized at all
        #expect(throws: InputError.self) { _ = try makeEngine(o, data: Self.data) }
        o.acceleration = nil
        #expect(throws: Never.self) { _ = try makeEngine(o, data: Self.data) }
    }
}
