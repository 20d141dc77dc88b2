import Foundation

/// The exact ELBO of a linear encoder's q and its gradients from the data's second moments.
///
/// With `m_n = A x_n + c` affine in the data, every sum over points that involves the means
/// reduces to S = (1/N) Σ (y_n − ȳ)(y_n − ȳ)ᵀ and the centred column sums s:
/// ```
/// Σ ‖r_n − W m_n‖² = N tr S − 2N tr(W A S) + N tr(WᵀW A S Aᵀ) − 2uᵀ(s − W A s) + N‖u‖²,  u = b − ȳ + W c
/// Σ ‖m_n‖²         = N tr(A S Aᵀ) + 2cᵀA s + N‖c‖²
/// ```
/// Only the variances `v_n = exp(E x_n + f)` need the points: one `N × D × J` product forward
/// and one back. The generic path (encoder forward, ``ELBOGradient/meanField(batch:model:means:logVariances:estimator:kl:samples:rng:)``,
/// backward) reads the data five times; this reads it twice.
package struct LinearEncoderMoments {
    let data: Dataset
    let latent: Int
    let invScale: [Double]

    init(data: Dataset, encoder: LinearEncoder) {
        self.data = data
        latent = encoder.latent
        invScale = encoder.invScale
    }

    package struct Evaluation {
        /// (1/N) Σ ELBO_n.
        package var value: Double
        /// ∂/∂θ of the average.
        package var model: ModelGradient
        /// ∂/∂φ of the average, in the encoder's raw parameters.
        package var encoder: [Double]
    }

    /// What q alone determines: the encoder's weights, the variances and the moments of the means.
    struct QStatistics {
        var a: Matrix, e: Matrix, c: [Double], f: [Double]
        /// v_n = exp(E(y_n − ȳ) + f), `N × J`.
        var v: Matrix
        /// Σ_n v_n and Σ_n log v_n (summed over k too for the latter).
        var vsum: [Double], logVSum: Double
        /// A S (`J × D`), A S Aᵀ, A s.
        var aS: Matrix, q: Matrix, aSum: [Double]
    }

    func statistics(_ parameters: [Double]) -> QStatistics {
        let d = data.dimension, j = latent, count = data.count
        let n = Double(count)
        let s = data.centeredColumnSums
        var a = Matrix(rows: j, cols: d), e = Matrix(rows: j, cols: d)
        for k in 0..<j {
            for i in 0..<d {
                a[k, i] = parameters[k * d + i] * invScale[i]
                e[k, i] = parameters[(j + k) * d + i] * invScale[i]
            }
        }
        let c = (0..<j).map { parameters[2 * j * d + $0] }
        let f = (0..<j).map { parameters[2 * j * d + j + $0] }

        // The variances: ℓ_n = E (y_n − ȳ) + f, v_n = exp(ℓ_n).
        var v = Matrix(rows: count, cols: j)
        gemm(data.centered, false, e, true, into: &v)
        var vsum = [Double](repeating: 0, count: j)
        v.storage.withUnsafeMutableBufferPointer { p in
            for row in 0..<count {
                for k in 0..<j {
                    let x = exp(p[row * j + k] + f[k])
                    p[row * j + k] = x
                    vsum[k] += x
                }
            }
        }
        let es = e.times(s)
        var logVSum = 0.0
        for k in 0..<j { logVSum += n * f[k] + es[k] }
        let aS = data.covarianceTimes(a.transposed).transposed
        let q = symmetrized(aS.multiplied(by: a, transposeOther: true))
        return QStatistics(a: a, e: e, c: c, f: f, v: v, vsum: vsum, logVSum: logVSum, aS: aS, q: q, aSum: a.times(s))
    }

    /// Σ ‖y_n − W m_n − b‖² from the moments, and u = b − ȳ + W c, s − W A s.
    func residual(_ model: LinearGaussianModel, _ st: QStatistics) -> (value: Double, u: [Double], rest: [Double]) {
        let d = data.dimension, j = latent, n = Double(data.count), s = data.centeredColumnSums
        let w = model.loadings
        var u = [Double](repeating: 0, count: d)
        for i in 0..<d {
            var x = model.offset[i] - data.mean[i]
            for k in 0..<j { x += w[i, k] * st.c[k] }
            u[i] = x
        }
        let wAs = w.times(st.aSum)
        let rest = (0..<d).map { s[$0] - wAs[$0] }
        var trWAS = 0.0
        for i in 0..<d { for k in 0..<j { trWAS += w[i, k] * st.aS[k, i] } }
        let value = n * data.totalVariance - 2 * n * trWAS + n * model.gram.frobeniusDot(st.q)
            - 2 * dot(u, rest) + n * dot(u, u)
        return (value, u, rest)
    }

    /// The θ that maximises the ELBO given this encoder's q: ``LinearGaussianModel/maximizingELBO(data:q:constraints:)``
    /// with its sums taken from the moments.
    package func maximizingModel(encoder parameters: [Double], constraints: ModelConstraints) throws -> LinearGaussianModel {
        let d = data.dimension, j = latent, n = Double(data.count), s = data.centeredColumnSums
        let st = statistics(parameters)
        let msum = (0..<j).map { st.aSum[$0] + n * st.c[$0] }
        var second = n * st.q                                         // Σ m mᵀ + Σ S_n
        for k in 0..<j {
            for l in 0..<j { second[k, l] += st.aSum[k] * st.c[l] + st.c[k] * st.aSum[l] + n * st.c[k] * st.c[l] }
            second[k, k] += st.vsum[k]
        }
        var ym = Matrix(rows: d, cols: j)                             // Σ (y_n − ȳ) m_nᵀ = N S Aᵀ + s cᵀ
        for i in 0..<d { for k in 0..<j { ym[i, k] = n * st.aS[k, i] + s[i] * st.c[k] } }
        let (w, b) = try LinearGaussianModel.regressOnMeans(data: data, dataTimesMeans: ym, second: second,
                                                            meanSum: msum, constraints: constraints)
        var model = LinearGaussianModel(loadings: w, offset: b, noiseVariance: constraints.noiseVariance ?? 1)
        if constraints.noiseVariance == nil {
            var trGV = 0.0
            let g = model.gram
            for k in 0..<j { trGV += g[k, k] * st.vsum[k] }
            model.noiseVariance = (residual(model, st).value + trGV) / (n * Double(d))
        }
        return model
    }

    package func evaluate(model: LinearGaussianModel, encoder parameters: [Double]) -> Evaluation {
        let d = data.dimension, j = latent, count = data.count
        let n = Double(count), s2 = model.noiseVariance
        let s = data.centeredColumnSums
        let st = statistics(parameters)
        let (c, v, vsum, logVSum, aS, q, aSum) = (st.c, st.v, st.vsum, st.logVSum, st.aS, st.q, st.aSum)
        let w = model.loadings, g = model.gram
        let (residual, u, rest) = self.residual(model, st)
        let meanSquares = n * q.trace + 2 * dot(c, aSum) + n * dot(c, c)
        var trGV = 0.0, vTotal = 0.0
        for k in 0..<j { trGV += g[k, k] * vsum[k]; vTotal += vsum[k] }
        let total = -0.5 * n * Double(d) * log(2 * Double.pi * s2) - (residual + trGV) / (2 * s2)
            - 0.5 * (vTotal + meanSquares - n * Double(j) - logVSum)

        // θ: ∂R/∂W = −2N S Aᵀ + 2N W Q − 2(s − WAs)cᵀ + 2u(As)ᵀ + 2N u cᵀ,  ∂R/∂b = −2(s − WAs) + 2N u.
        let wq = w.multiplied(by: q)
        var gw = Matrix(rows: d, cols: j)
        var gb = [Double](repeating: 0, count: d)
        for i in 0..<d {
            gb[i] = -(-2 * rest[i] + 2 * n * u[i]) / (2 * s2) / n
            for k in 0..<j {
                let dR = -2 * n * aS[k, i] + 2 * n * wq[i, k] - 2 * rest[i] * c[k] + 2 * u[i] * aSum[k] + 2 * n * u[i] * c[k]
                gw[i, k] = -(dR + 2 * w[i, k] * vsum[k]) / (2 * s2) / n
            }
        }
        let gs2 = (-n * Double(d) / (2 * s2) + (residual + trGV) / (2 * s2 * s2)) / n

        // φ: ∂R/∂A = −2N WᵀS + 2N G A S + 2Wᵀu sᵀ;  ∂Σ‖m‖²/∂A = 2N A S + 2c sᵀ.
        let sw = data.covarianceTimes(w)              // S W, D × J
        let gas = g.multiplied(by: aS)                              // G A S, J × D
        let wu = w.transposeTimes(u)                                // Wᵀu
        var out = [Double](repeating: 0, count: parameters.count)
        for k in 0..<j {
            for i in 0..<d {
                let dR = -2 * n * sw[i, k] + 2 * n * gas[k, i] + 2 * wu[k] * s[i]
                let ga = -dR / (2 * s2) - (n * aS[k, i] + c[k] * s[i])
                out[k * d + i] = ga * invScale[i] / n
            }
        }
        // c: ∂R/∂c = Wᵀ ∂R/∂u.
        let dRdu = (0..<d).map { -2 * rest[$0] + 2 * n * u[$0] }
        let wdRdu = w.transposeTimes(dRdu)
        for k in 0..<j { out[2 * j * d + k] = (-wdRdu[k] / (2 * s2) - (aSum[k] + n * c[k])) / n }
        // E, f: ∂T/∂ℓ_nk = −(G_kk/(2 s2) + ½) v_nk + ½, then back through ℓ_n = E(y_n − ȳ) + f.
        var gl = v
        var gf = [Double](repeating: 0, count: j)
        gl.storage.withUnsafeMutableBufferPointer { p in
            for row in 0..<count {
                for k in 0..<j {
                    let x = -(g[k, k] / (2 * s2) + 0.5) * p[row * j + k] + 0.5
                    p[row * j + k] = x
                    gf[k] += x
                }
            }
        }
        var ge = Matrix(rows: j, cols: d)
        gemm(gl, true, data.centered, false, alpha: 1 / n, into: &ge)
        for k in 0..<j {
            for i in 0..<d { out[(j + k) * d + i] = ge[k, i] * invScale[i] }
            out[2 * j * d + j + k] = gf[k] / n
        }
        return Evaluation(value: total / n, model: ModelGradient(loadings: gw, offset: gb, noiseVariance: gs2), encoder: out)
    }
}
