import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The one-pass importance-weighted gradient of a linear encoder against the reference route
/// (encoder forward → ``ImportanceWeightedGradient/meanField`` → backward) on the same draws.
@Suite("Importance-weighted one-pass kernel")
struct ImportanceWeightedOnePassTests {
    /// N = 150: 37 tiles of four in two blocks and two padded points; D = 7 with a constant column.
    /// J = 2 and 3: the 3J lanes fill 1.5 and 2.25 vectors.
    static let cases: [(particles: Int, latent: Int, estimator: ImportanceWeightedEstimator)] = [
        (1, 3, .iwae), (1, 2, .dreg), (5, 3, .iwae), (5, 3, .dreg), (10, 2, .iwae), (10, 2, .dreg), (40, 1, .dreg),
    ]

    @Test("same draws, same θ and φ gradients and bound as the reference route, to rounding", arguments: cases)
    func matchesReference(particles k: Int, latent j: Int, estimator: ImportanceWeightedEstimator) throws {
        guard let fused = LinearEncoderImportanceWeighted() else {
            // Another processor, or ELBOLAB_KERNELS=portable: the reference route is the only one.
            #expect(!Kernels.usable)
            return
        }
        let rng = RandomSource(seed: 18)
        let (data, model, encoder) = VT.linearEncoderCase(latent: j, count: 150, rng: rng)
        let minibatch = { var b = Batch(capacity: 41, dimension: 7, mean: data.mean); b.gather(from: data, rows: Array(7..<48)[...]); return b }()
        let reference = ImportanceWeightedGradient()
        for batch in [Batch(data), minibatch] {
            // Twice, so that reused buffers are exercised too.
            for round in 0..<2 {
                let seed = UInt64(60 + round)
                let fast = fused.gradient(batch: batch, model: model, encoder: encoder, particles: k, estimator: estimator,
                                          rng: RandomSource(seed: seed))
                let slow = reference.encoder(batch: batch, model: model, encoder: encoder, particles: k, estimator: estimator,
                                             rng: RandomSource(seed: seed))
                let phiScale = slow.encoder.map(abs).max()!
                #expect(zip(fast.encoder, slow.encoder).allSatisfy { abs($0 - $1) <= 1e-10 * phiScale }, "φ, B = \(batch.count)")
                #expect((fast.model.loadings - slow.model.loadings).maxAbs <= 1e-10 * slow.model.loadings.maxAbs)
                let bScale = slow.model.offset.map(abs).max()!
                #expect(zip(fast.model.offset, slow.model.offset).allSatisfy { abs($0 - $1) <= 1e-10 * bScale })
                #expect(abs(fast.model.noiseVariance - slow.model.noiseVariance) <= 1e-10 * abs(slow.model.noiseVariance))
                #expect(abs(fast.bound - slow.bound) <= 1e-10 * abs(slow.bound), "bound \(fast.bound) vs \(slow.bound)")
            }
        }
    }

    @Test("a joint IWAE fit with a linear encoder takes the one-pass route where the kernels run")
    func engineRoute() {
        let encoder = LinearEncoder(data: Dataset(points: Matrix(rows: 4, cols: 2, storage: [1, 2, 3, 4, 5, 6, 7, 9])), latent: 1)
        let route = EncoderGradient.importanceWeighted(.dreg, particles: 10, encoder: encoder)
        if case .importanceWeightedOnePass = route { #expect(Kernels.usable) } else { #expect(!Kernels.usable) }
    }
}
