import CGSL

/// The reparameterised joint gradient (§8, analytic KL) of a linear encoder in two passes over
/// the batch: the same estimate as encoder forward → ``ELBOGradient/meanField(batch:model:means:logVariances:estimator:kl:samples:rng:)``
/// → encoder backward, with the same draws in the same order, but with the four products that
/// read Y fused into two and the buffers kept between steps.
///
/// ```
/// P = (Y − ȳ) · [Kᵀ  W]          B × 3J: the encoder's outputs and the data part of ∂/∂z log p(y|z)
/// Q = (Y − ȳ)ᵀ · [z̄  g_m  g_ℓ]   D × 3J: Σ (y_n − ȳ) z_nᵀ for θ and the encoder's weight gradient
/// ```
/// with z̄_n the average of a point's K draws (θ's gradient is linear in Σ (y − ȳ) zᵀ and Σ z;
/// only Σ z zᵀ needs each draw, and it is J × J).
final class LinearEncoderReparameterized {
    private var p = Matrix(rows: 0, cols: 0), r = Matrix(rows: 0, cols: 0), q = Matrix(rows: 0, cols: 0)
    private var eps: [Double] = [], sd: [Double] = []
    private var weights = Matrix(rows: 0, cols: 0)

    /// ∂/∂θ and ∂/∂φ of (1/B) Σ_n ELBO_n, estimated with `samples` draws per point from `rng`.
    func gradient(batch: Batch, model: LinearGaussianModel, encoder: LinearEncoder, samples: Int,
                  rng: RandomSource) -> (model: ModelGradient, encoder: [Double]) {
        let b = batch.count, d = encoder.dimension, j = encoder.latent, j2 = 2 * j, j3 = 3 * j
        let k = max(1, samples)
        if p.rows != b || p.cols != j3 {
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
