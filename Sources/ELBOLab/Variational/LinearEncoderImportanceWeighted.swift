import Foundation
import ELBOLabKernels

/// The importance-weighted joint gradient (§14: IWAE or DReG for φ, pathwise for θ) of a linear
/// encoder in one pass over the rows: the same estimate as ``ImportanceWeightedGradient/encoder(batch:model:encoder:particles:estimator:rng:)``
/// (encoder forward → per-point weights → encoder backward), from the same draws in the same order.
///
/// The rows are read once per step by the vector kernel
/// (``importanceWeightedPass(rows:count:dimension:latent:particles:projection:offsets:precision:noise:doublyReparameterized:weighted:sums:)``),
/// four points at a time: per row the 3J projections [ℓ μ a] = [K_ℓ K_m W/s2]ᵀ y_n + o, then only
/// the J-dimensional work of its K draws (log-weights, log-sum-exp, normalised weights, the
/// weighted sums), then Σ y_n [z̄_n g_m,n g_ℓ,n]ᵀ. θ's gradient needs only Σ y z̄ᵀ, Σ z̄ and
/// Σ_n Σ_k w̃ z zᵀ (J × J), so no draw is stored beyond one tile. Any batch size works.
package final class LinearEncoderImportanceWeighted {
    private var noise: [Double] = []
    private var projection: [SIMD4<Double>] = [], offsets: [SIMD4<Double>] = [], weighted: [SIMD4<Double>] = []
    private var sums: [Double] = []

    /// nil where the vector kernels do not run (`ELBOLAB_KERNELS=portable` or another processor):
    /// then ``ImportanceWeightedGradient`` is the route.
    init?(vector: Bool = Kernels.usable) {
        guard vector else { return nil }
    }

    /// ∂/∂θ and ∂/∂φ of (1/B) Σ_n L_K,n and the bound's estimate at the draws, with `particles`
    /// draws a point from `rng` (B·K·J of them, point by point).
    func gradient(batch: Batch, model: LinearGaussianModel, encoder: LinearEncoder, particles: Int,
                  estimator: ImportanceWeightedEstimator,
                  rng: RandomSource) -> (model: ModelGradient, encoder: [Double], bound: Double) {
        let n = batch.count, d = encoder.dimension, j = encoder.latent, k = max(1, particles)
        let chunks = (3 * j + 3) / 4
        let params = encoder.parameters, invScale = encoder.invScale, bias = 2 * j * d
        let w = model.loadings, s2 = model.noiseVariance, inv = 1 / s2
        if projection.count != d * chunks {
            projection = [SIMD4<Double>](repeating: SIMD4(), count: d * chunks)
            weighted = projection
            offsets = [SIMD4<Double>](repeating: SIMD4(), count: chunks)
            sums = [Double](repeating: 0, count: 3 * j + j * j + 1)
        }
        // Lanes [ℓ μ a]: the encoder's weights in data units, and Wᵀ(y − b)/s2 = (Wᵀ(y − ȳ) − Wᵀ(b − ȳ))/s2.
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        let shift = w.transposeTimes(delta)
        for i in 0..<d {
            for c in 0..<j {
                projection[i * chunks + c / 4][c % 4] = params[(j + c) * d + i] * invScale[i]
                projection[i * chunks + (j + c) / 4][(j + c) % 4] = params[c * d + i] * invScale[i]
                projection[i * chunks + (2 * j + c) / 4][(2 * j + c) % 4] = w[i, c] * inv
            }
        }
        for c in 0..<j {
            offsets[c / 4][c % 4] = params[bias + j + c]
            offsets[(j + c) / 4][(j + c) % 4] = params[bias + c]
            offsets[(2 * j + c) / 4][(2 * j + c) % 4] = -shift[c] * inv
        }
        var precision = inv * model.gram
        for c in 0..<j { precision[c, c] += 1 }
        if noise.count != n * k * j { noise = [Double](repeating: 0, count: n * k * j) }
        rng.fillGaussian(&noise)
        batch.centered.storage.withUnsafeBufferPointer { rows in
            importanceWeightedPass(rows: rows.baseAddress!, count: n, dimension: d, latent: j, particles: k,
                                   projection: projection, offsets: offsets, precision: precision.storage, noise: noise,
                                   doublyReparameterized: estimator == .dreg, weighted: &weighted, sums: &sums)
        }
        var yz = Matrix(rows: d, cols: j)
        for i in 0..<d { for c in 0..<j { yz[i, c] = weighted[i * chunks + c / 4][c % 4] } }
        let zz = Matrix(rows: j, cols: j, storage: Array(sums[(3 * j)..<(3 * j + j * j)]))
        let theta = ELBOGradient.modelAndResidual(batch: batch, model: model, dataTimesLocations: yz,
                                                  locationSum: Array(sums[0..<j]), locationSquares: zz,
                                                  covarianceSum: Matrix(rows: j, cols: j)).gradient
        let scale = 1 / Double(n)
        var out = [Double](repeating: 0, count: params.count)
        for c in 0..<j {
            for i in 0..<d {
                out[c * d + i] = scale * weighted[i * chunks + (j + c) / 4][(j + c) % 4] * invScale[i]
                out[(j + c) * d + i] = scale * weighted[i * chunks + (2 * j + c) / 4][(2 * j + c) % 4] * invScale[i]
            }
            out[bias + c] = scale * sums[j + c]
            out[bias + j + c] = scale * sums[2 * j + c]
        }
        // The per-point constants: log N(y; b, s2 I)'s normaliser and −‖y − b‖²/(2 s2), summed.
        let count = Double(n)
        let residuals = batch.sumOfSquares - 2 * dot(delta, batch.columnSums) + count * dot(delta, delta)
        let logNorm = -0.5 * Double(d) * log(2 * Double.pi * s2)
        let bound = (sums[3 * j + j * j] - 0.5 * residuals * inv) / count + logNorm - log(Double(k))
        return (theta, out, bound)
    }
}
