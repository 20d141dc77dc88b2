import ELBOLabKernels
import Foundation

/// The reparameterised joint gradient (§8: analytic KL; on the full batch also the path derivative)
/// of a linear encoder: the same estimate as
/// encoder forward → ``ELBOGradient/meanField(batch:model:means:logVariances:estimator:kl:samples:rng:)``
/// → encoder backward, with the same draws in the same order, computed in fewer passes over the batch.
///
/// On the full batch (D ≤ N, a processor that runs the kernels) everything linear in y_n comes
/// from the data's scatter matrix Σ (y_n − ȳ)(y_n − ȳ)ᵀ, and one pass over the rows
/// (``reparameterizedPass(rows:count:dimension:latent:samples:projection:offsets:precision:noise:weighted:sums:)``)
/// does the rest: 4J·D multiply-adds a point instead of 12J·D. Otherwise two products read Y:
///
/// ```
/// P = (Y − ȳ) · [Kᵀ  W]          B × 3J: the encoder's outputs and the data part of ∂/∂z log p(y|z)
/// Q = (Y − ȳ)ᵀ · [z̄  g_m  g_ℓ]   D × 3J: Σ (y_n − ȳ) z_nᵀ for θ and the encoder's weight gradient
/// ```
/// with z̄_n the average of a point's K draws (θ's gradient is linear in Σ (y − ȳ) zᵀ and Σ z;
/// only Σ z zᵀ needs each draw, and it is J × J).
package final class LinearEncoderReparameterized {
    private var p = Matrix(rows: 0, cols: 0), r = Matrix(rows: 0, cols: 0), q = Matrix(rows: 0, cols: 0)
    private var eps: [Double] = [], sd: [Double] = []
    private var weights = Matrix(rows: 0, cols: 0)
    /// Σ (y_n − ȳ)(y_n − ȳ)ᵀ over all N rows when the one-pass kernel is used, else nil.
    private let scatter: Matrix?
    private let rowCount: Int
    /// The path-derivative estimator (`--kl stl`) instead of the analytic KL.
    private let pathDerivative: Bool
    private var projection: [SIMD4<Double>] = [], offsets: [SIMD4<Double>] = [], weighted: [SIMD4<Double>] = []

    /// Prepares the gradient for `data` with the KL term `kl`; `onePass: false` keeps the
    /// two-product path everywhere. nil when no path here computes that estimate: `.stl` needs
    /// the one-pass kernel (full batch only), `.mc` has none.
    init?(data: Dataset, kl: KLEstimator = .analytic, onePass: Bool = Kernels.usable) {
        let kernel = onePass && data.prefersCovariance
        guard kl == .analytic || (kl == .stl && kernel) else { return nil }
        rowCount = data.count
        pathDerivative = kl == .stl
        scatter = kernel ? Double(data.count) * data.covariance : nil
    }

    /// Whether ``gradient(batch:model:encoder:samples:rng:)`` takes batches of `size` rows
    /// (the path derivative is computed on the full batch only).
    func accepts(batchSize size: Int) -> Bool { !pathDerivative || size == rowCount }

    /// ∂/∂θ and ∂/∂φ of (1/B) Σ_n ELBO_n, estimated with `samples` draws per point from `rng`.
    func gradient(batch: Batch, model: LinearGaussianModel, encoder: LinearEncoder, samples: Int,
                  rng: RandomSource) -> (model: ModelGradient, encoder: [Double]) {
        precondition(accepts(batchSize: batch.count), "the path-derivative gradient runs on the full batch")
        if let scatter, batch.count == rowCount {
            return onePass(batch: batch, scatter: scatter, model: model, encoder: encoder, samples: max(1, samples), rng: rng)
        }
        return twoProducts(batch: batch, model: model, encoder: encoder, samples: samples, rng: rng)
    }

    /// The full-batch gradient from the scatter matrix and one pass of the kernel.
    ///
    /// With μ_n = K_mᵀ y_n + c_m (y_n centred), the gradient of log p(y_n|z) at z = μ_n + e is
    /// a_n + g₀ − Λ e with a_n = Mᵀ y_n, M = (W − K_m G)/s2, g₀ = −(Wᵀ(b − ȳ) + G c_m)/s2 and
    /// Λ = G/s2; the kernel returns the sums that involve the draws e, the rest is algebra on D × J.
    /// The path derivative adds ∇_z[−log p(z) + log q(z)] = −μ − e + e/σ²: its part linear in y
    /// (−μ) goes into the kernel's a, the rest is the kernel's κ e.
    private func onePass(batch: Batch, scatter: Matrix, model: LinearGaussianModel, encoder: LinearEncoder,
                         samples k: Int, rng: RandomSource) -> (model: ModelGradient, encoder: [Double]) {
        let n = batch.count, d = encoder.dimension, j = encoder.latent, chunks = (2 * j + 3) / 4
        let outputChunks = ((pathDerivative ? 3 : 2) * j + 3) / 4
        let params = encoder.parameters, invScale = encoder.invScale, bias = 2 * j * d
        let w = model.loadings, gram = model.gram, inv = 1 / model.noiseVariance
        var km = Matrix(rows: d, cols: j)
        for i in 0..<d { for c in 0..<j { km[i, c] = params[c * d + i] * invScale[i] } }
        let cm = Array(params[bias..<(bias + j)])
        let m = inv * (w - km.multiplied(by: gram))
        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        let shift = w.transposeTimes(delta), gcm = gram.times(cm)
        let g0 = (0..<j).map { -(shift[$0] + gcm[$0]) * inv }
        let mk = m - km, gc = (0..<j).map { g0[$0] - cm[$0] }
        let linear = pathDerivative ? mk : m, linearOffset = pathDerivative ? gc : g0

        if projection.count != d * chunks || weighted.count != d * outputChunks {
            projection = [SIMD4<Double>](repeating: SIMD4(), count: d * chunks)
            weighted = [SIMD4<Double>](repeating: SIMD4(), count: d * outputChunks)
            offsets = [SIMD4<Double>](repeating: SIMD4(), count: chunks)
        }
        for i in 0..<d {
            for c in 0..<j {
                projection[i * chunks + c / 4][c % 4] = params[(j + c) * d + i] * invScale[i]
                projection[i * chunks + (j + c) / 4][(j + c) % 4] = linear[i, c]
            }
        }
        for c in 0..<j {
            offsets[c / 4][c % 4] = params[bias + j + c]
            offsets[(j + c) / 4][(j + c) % 4] = linearOffset[c]
        }
        let lambda = inv * gram
        if eps.count != k * n * j { eps = [Double](repeating: 0, count: k * n * j) }
        rng.fillGaussian(&eps)
        var sums = [Double](repeating: 0, count: (pathDerivative ? 3 : 2) * j + j * j)
        batch.centered.storage.withUnsafeBufferPointer { rows in
            reparameterizedPass(rows: rows.baseAddress!, count: n, dimension: d, latent: j, samples: k,
                                projection: projection, offsets: offsets, precision: lambda.storage, noise: eps,
                                weighted: &weighted, sums: &sums, pathDerivative: pathDerivative)
        }
        // Σ y ēᵀ, Σ y γᵀ, and Σ y ρᵀ for the path derivative (zero otherwise).
        var drawn = Matrix(rows: d, cols: j), gammaWeighted = Matrix(rows: d, cols: j), rhoWeighted = Matrix(rows: d, cols: j)
        for i in 0..<d {
            for c in 0..<j {
                drawn[i, c] = weighted[i * outputChunks + c / 4][c % 4]
                gammaWeighted[i, c] = weighted[i * outputChunks + (j + c) / 4][(j + c) % 4]
                if pathDerivative { rhoWeighted[i, c] = weighted[i * outputChunks + (2 * j + c) / 4][(2 * j + c) % 4] }
            }
        }
        let rhoSum = pathDerivative ? Array(sums[(2 * j + j * j)...]) : [Double](repeating: 0, count: j)
        let drawnSum = Array(sums[0..<j]), gammaSum = Array(sums[j..<(2 * j)])
        let drawnSquares = Matrix(rows: j, cols: j, storage: Array(sums[(2 * j)..<(2 * j + j * j)]))

        // θ: Σ y z̄ᵀ, Σ z̄ and Σ (1/K) Σ_k z zᵀ with z = μ + e.
        let ySum = batch.columnSums, count = Double(n)
        let kmTySum = km.transposeTimes(ySum)
        let scatterKm = scatter.multiplied(by: km)
        let yz = scatterKm + outer(ySum, cm) + drawn
        let zSum = (0..<j).map { kmTySum[$0] + count * cm[$0] + drawnSum[$0] }
        let muDrawn = km.multiplied(by: drawn, transposeSelf: true) + outer(cm, drawnSum)   // Σ μ ēᵀ
        let zz = km.multiplied(by: scatterKm, transposeSelf: true) + outer(kmTySum, cm) + outer(cm, kmTySum)
            + count * outer(cm, cm) + muDrawn + muDrawn.transposed + drawnSquares
        let theta = ELBOGradient.modelAndResidual(batch: batch, model: model, dataTimesLocations: yz,
                                                  locationSum: zSum, locationSquares: zz,
                                                  covarianceSum: Matrix(rows: j, cols: j)).gradient

        // φ: g_m = a + g₀ − Λ ē − μ (the analytic KL's −m; the path derivative's −μ, plus its ρ = κ ē),
        // and γ from the kernel.
        let lambdaDrawnSum = lambda.times(drawnSum)
        let yGm = scatter.multiplied(by: mk) + outer(ySum, gc) - drawn.multiplied(by: lambda) + rhoWeighted
        let mkTySum = mk.transposeTimes(ySum)
        let scale = 1 / count
        var out = [Double](repeating: 0, count: params.count)
        for c in 0..<j {
            for i in 0..<d {
                out[c * d + i] = scale * yGm[i, c] * invScale[i]
                out[(j + c) * d + i] = scale * gammaWeighted[i, c] * invScale[i]
            }
            out[bias + c] = scale * (mkTySum[c] + count * gc[c] - lambdaDrawnSum[c] + rhoSum[c])
            out[bias + j + c] = scale * gammaSum[c]
        }
        return (theta, out)
    }

    /// The two-product path: any batch.
    private func twoProducts(batch: Batch, model: LinearGaussianModel, encoder: LinearEncoder, samples: Int,
                             rng: RandomSource) -> (model: ModelGradient, encoder: [Double]) {
        let b = batch.count, d = encoder.dimension, j = encoder.latent, j2 = 2 * j, j3 = 3 * j
        let k = max(1, samples)
        if p.rows != b || p.cols != j3 || eps.count != b * j {
            p = Matrix(rows: b, cols: j3)
            r = Matrix(rows: b, cols: j3)
            eps = [Double](repeating: 0, count: b * j)
            sd = eps
        }
        if weights.rows != d || weights.cols != j3 { weights = Matrix(rows: d, cols: j3); q = Matrix(rows: d, cols: j3) }
        // [Kᵀ W], D × 3J, with K in data units.
        let invScale = encoder.invScale, params = encoder.parameters, w = model.loadings
        for i in 0..<d {
            for c in 0..<j2 { weights[i, c] = params[c * d + i] * invScale[i] }
            for c in 0..<j { weights[i, j2 + c] = w[i, c] }
        }
        gemm(batch.centered, false, weights, false, into: &p)

        let delta = (0..<d).map { model.offset[$0] - batch.mean[$0] }
        let shift = w.transposeTimes(delta)                         // Wᵀ(b − ȳ)
        let gram = model.gram.storage, inv = 1 / model.noiseVariance, bias = j2 * d
        let invK = 1 / Double(k)
        // Small per-step scratch: z at one point, Σ z zᵀ / K, the column sums of [z̄ g_m g_ℓ], the biases.
        var small = [Double](repeating: 0, count: j + j * j + j3 + j2)
        for c in 0..<j2 { small[j + j * j + j3 + c] = params[bias + c] }
        for draw in 0..<k {
            rng.fillGaussian(&eps)
            let first = draw == 0, last = draw == k - 1
            p.storage.withUnsafeBufferPointer { pp in
            r.storage.withUnsafeMutableBufferPointer { rr in
            sd.withUnsafeMutableBufferPointer { s in
            eps.withUnsafeBufferPointer { e in
            small.withUnsafeMutableBufferPointer { sc in
            gram.withUnsafeBufferPointer { gr in
            shift.withUnsafeBufferPointer { sh in
                let z = sc.baseAddress!, zz = z + j, sums = zz + j * j, mu = sums + j3
                for n in 0..<b {
                    let row = n * j3, at = n * j
                    if first { for c in 0..<j { s[at + c] = exp(0.5 * (pp[row + j + c] + mu[j + c])) } }
                    for c in 0..<j { z[c] = pp[row + c] + mu[c] + s[at + c] * e[at + c] }
                    for c in 0..<j {
                        // g = Wᵀ(r − W z)/s2 at the draw: ((Y − ȳ)W − Wᵀ(b − ȳ) − G z)/s2.
                        var g = pp[row + j2 + c] - sh[c]
                        for l in 0..<j { g -= gr[c * j + l] * z[l] }
                        g *= inv
                        let zc = z[c] * invK, sdc = s[at + c]
                        var mean = zc, gm = g, gl = g * 0.5 * sdc * e[at + c]
                        if !first { mean += rr[row + c]; gm += rr[row + j + c]; gl += rr[row + j2 + c] }
                        if last {
                            // The average over draws, and the analytic KL's gradients −m and −½(v − 1).
                            gm = gm * invK - (pp[row + c] + mu[c])
                            gl = gl * invK - 0.5 * (sdc * sdc - 1)
                            sums[c] += mean; sums[j + c] += gm; sums[j2 + c] += gl
                        }
                        rr[row + c] = mean; rr[row + j + c] = gm; rr[row + j2 + c] = gl
                        for l in 0..<j { zz[c * j + l] += zc * z[l] }
                    }
                }
            }}}}}}}
        }
        gemm(batch.centered, true, r, false, into: &q)
        let zz = Matrix(rows: j, cols: j, storage: Array(small[j..<(j + j * j)]))
        let sums = Array(small[(j + j * j)..<(j + j * j + j3)])

        var yz = Matrix(rows: d, cols: j)
        for i in 0..<d { for c in 0..<j { yz[i, c] = q[i, c] } }
        let theta = ELBOGradient.modelAndResidual(batch: batch, model: model, dataTimesLocations: yz,
                                                  locationSum: Array(sums[0..<j]), locationSquares: zz,
                                                  covarianceSum: Matrix(rows: j, cols: j)).gradient
        let scale = 1 / Double(b)
        var out = [Double](repeating: 0, count: params.count)
        for c in 0..<j2 {
            for i in 0..<d { out[c * d + i] = scale * q[i, j + c] * invScale[i] }
            out[bias + c] = scale * sums[j + c]
        }
        return (theta, out)
    }
}

/// x yᵀ.
private func outer(_ x: [Double], _ y: [Double]) -> Matrix {
    var m = Matrix(rows: x.count, cols: y.count)
    for a in x.indices { for b in y.indices { m[a, b] = x[a] * y[b] } }
    return m
}
