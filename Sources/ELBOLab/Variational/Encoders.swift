import Foundation

/// The encoder's output for a batch: q_n = N(m_n, diag(exp(ℓ_n))).
public struct EncoderOutput {
    /// m_n, `B × J`.
    public var means: Matrix
    /// ℓ_n = log v_n, `B × J`.
    public var logVariances: Matrix
    /// The hidden activations (MLP only), kept for the backward pass.
    var hidden: Matrix?
}

/// An amortised inference network g_φ(y) → (m, log v) for a mean-field q (the notes' part B).
///
/// Inputs are standardised inside the encoder, `x = (y − ȳ)/σ` column by column: a fixed
/// invertible affine map, so the family of encoders (and every ELBO) is unchanged, while one
/// step size suits unstandardised data.
public protocol AmortizedEncoder: Sendable {
    /// φ as one flat vector.
    var parameters: [Double] { get set }
    /// Latent dimension J.
    var latent: Int { get }
    /// (m, log v) for every row of the batch.
    func forward(_ batch: Batch) -> EncoderOutput
    /// ∂/∂φ of Σ_n F_n given ∂F_n/∂m_n and ∂F_n/∂ℓ_n (`B × J` each), scaled by `scale`.
    func backward(_ batch: Batch, output: EncoderOutput, gradMeans: Matrix, gradLogVariances: Matrix, scale: Double) -> [Double]
}

/// The encoder families, by name.
public enum EncoderKind: String, Sendable, CaseIterable, Codable {
    /// `m = A x + c`, `log v = E x + f`: can represent the exact optimum of this model.
    case linear
    /// One hidden tanh layer, then linear heads for m and log v.
    case mlp
    /// An MLP with a linear path from the input to the heads as well: contains the linear encoder.
    case residual
    /// `m = U Vᵀ x + c` with U `J × r`: a linear map of rank at most r (``LowRankEncoder``).
    case lowRank = "low-rank"

    /// A fresh encoder of this family for `data`: an MLP of `hidden` units, or a low-rank encoder
    /// of rank `rank`, draws its first-layer weights from `rng`.
    package func make(data: Dataset, latent: Int, hidden: Int, rank: Int = 1, using rng: RandomSource) -> AmortizedEncoder {
        switch self {
        case .linear: return LinearEncoder(data: data, latent: latent)
        case .mlp: return MLPEncoder(data: data, latent: latent, hidden: hidden, using: rng)
        case .residual: return MLPEncoder(data: data, latent: latent, hidden: hidden, linearPath: true, using: rng)
        case .lowRank: return LowRankEncoder(data: data, latent: latent, rank: rank, using: rng)
        }
    }
}

/// Standardising scales σ_i (a constant column gets 1).
func inputScales(_ data: Dataset) -> [Double] {
    data.columnVariances.map { $0 > 0 ? 1 / $0.squareRoot() : 1 }
}

/// `m = A x + c`, `log v = E x + f` on standardised inputs x. Parameters: the `2J × D` matrix
/// [A; E] row-major, then [c; f].
public struct LinearEncoder: AmortizedEncoder {
    /// φ: [A; E] row-major (`2J × D`), then [c; f].
    public var parameters: [Double]
    /// Latent dimension J.
    public let latent: Int
    let dimension: Int
    let invScale: [Double]

    /// The encoder that outputs the prior N(0, I) for every input.
    public init(data: Dataset, latent: Int) {
        self.latent = latent
        dimension = data.dimension
        // Standardised inputs, divided by √D as well: an Adam step of ±α in each of D weights
        // then moves an output by about α whatever D is (without the factor, by about α·√D).
        let fanIn = 1 / Double(max(1, data.dimension)).squareRoot()
        invScale = inputScales(data).map { $0 * fanIn }
        parameters = [Double](repeating: 0, count: 2 * latent * (data.dimension + 1))
    }

    /// Sets the encoder to `m = A (y − ȳ) + c`, `log v = f` (E = 0) in data units.
    public mutating func set(meanWeights a: Matrix, meanBias c: [Double], logVariance f: [Double]) {
        let j = latent, d = dimension
        for k in 0..<j { for i in 0..<d { parameters[k * d + i] = a[k, i] / invScale[i]; parameters[(j + k) * d + i] = 0 } }
        for k in 0..<j { parameters[2 * j * d + k] = c[k]; parameters[2 * j * d + j + k] = f[k] }
    }

    /// The weights in data units, `2J × D`.
    var effectiveWeights: Matrix {
        let j2 = 2 * latent, d = dimension
        var k = Matrix(rows: j2, cols: d)
        for r in 0..<j2 { for i in 0..<d { k[r, i] = parameters[r * d + i] * invScale[i] } }
        return k
    }

    /// Means and log-variances for every row of `batch`.
    public func forward(_ batch: Batch) -> EncoderOutput {
        let j = latent, j2 = 2 * latent, d = dimension, b = batch.count
        var out = Matrix(rows: b, cols: j2)
        gemm(batch.centered, false, effectiveWeights, true, into: &out)
        var m = Matrix(rows: b, cols: j), l = Matrix(rows: b, cols: j)
        let bias = j2 * d
        for n in 0..<b {
            for k in 0..<j {
                m.storage[n * j + k] = out.storage[n * j2 + k] + parameters[bias + k]
                l.storage[n * j + k] = out.storage[n * j2 + j + k] + parameters[bias + j + k]
            }
        }
        return EncoderOutput(means: m, logVariances: l, hidden: nil)
    }

    /// The gradient in φ, times `scale`, from the gradients in the outputs of ``forward(_:)``.
    public func backward(_ batch: Batch, output: EncoderOutput, gradMeans: Matrix, gradLogVariances: Matrix, scale: Double) -> [Double] {
        let j = latent, j2 = 2 * latent, d = dimension, b = batch.count
        var g = Matrix(rows: b, cols: j2)
        for n in 0..<b {
            for k in 0..<j {
                g.storage[n * j2 + k] = gradMeans.storage[n * j + k]
                g.storage[n * j2 + j + k] = gradLogVariances.storage[n * j + k]
            }
        }
        var gk = Matrix(rows: j2, cols: d)
        gemm(g, true, batch.centered, false, alpha: scale, into: &gk)
        var out = [Double](repeating: 0, count: parameters.count)
        for r in 0..<j2 { for i in 0..<d { out[r * d + i] = gk[r, i] * invScale[i] } }
        let sums = g.columnSums()
        for r in 0..<j2 { out[j2 * d + r] = scale * sums[r] }
        return out
    }
}

/// `h = tanh(U x + u)`, `m = A h + c`, `log v = E h + f` on standardised inputs x; with a
/// linear path, `[m; log v]` gains `L x` as well.
/// Parameters: U (`H × D`), u (H), [A; E] (`2J × H`), [c; f], then L (`2J × D`) with the path.
///
/// Without the linear path the family holds the optimal (linear) encoder of this model only in
/// the limit of vanishing input and growing output weights, so its best ELBO is a supremum that
/// training approaches without end; with it, the optimum is attained (at A = E = 0).
public struct MLPEncoder: AmortizedEncoder {
    /// φ: U, u, [A; E], [c; f] (and L) in turn.
    public var parameters: [Double]
    /// Latent dimension J.
    public let latent: Int
    /// Hidden width H.
    public let hidden: Int
    /// Whether the heads also see the input directly (`L x`).
    public let linearPath: Bool
    let dimension: Int
    let invScale: [Double]

    /// Hidden weights drawn N(0, 1/D) from `rng`, output weights (and L) zero: the encoder starts at the prior.
    public init(data: Dataset, latent: Int, hidden: Int, linearPath: Bool = false, using rng: RandomSource) {
        self.latent = latent
        self.hidden = hidden
        self.linearPath = linearPath
        dimension = data.dimension
        invScale = inputScales(data)
        let d = data.dimension
        let path = linearPath ? 2 * latent * d : 0
        parameters = [Double](repeating: 0, count: hidden * d + hidden + 2 * latent * hidden + 2 * latent + path)
        let s = 1 / Double(d).squareRoot()
        for i in 0..<(hidden * d) { parameters[i] = s * rng.gaussian() }
    }

    /// L in data units (`2J × D`), scaled like ``LinearEncoder``'s weights.
    private var pathWeights: Matrix {
        let j2 = 2 * latent, d = dimension, start = offsets.path
        let fanIn = 1 / Double(max(1, d)).squareRoot()
        var l = Matrix(rows: j2, cols: d)
        for r in 0..<j2 { for i in 0..<d { l[r, i] = parameters[start + r * d + i] * invScale[i] * fanIn } }
        return l
    }

    private var offsets: (u: Int, k: Int, bias: Int, path: Int) {
        let h = hidden, d = dimension
        return (h * d, h * d + h, h * d + h + 2 * latent * h, h * d + h + 2 * latent * h + 2 * latent)
    }

    /// Means and log-variances for every row of `batch`.
    public func forward(_ batch: Batch) -> EncoderOutput {
        let h = hidden, d = dimension, j = latent, j2 = 2 * latent, b = batch.count
        let o = offsets
        var u = Matrix(rows: h, cols: d)
        for r in 0..<h { for i in 0..<d { u[r, i] = parameters[r * d + i] * invScale[i] } }
        var act = Matrix(rows: b, cols: h)
        gemm(batch.centered, false, u, true, into: &act)
        for n in 0..<b { for r in 0..<h { act.storage[n * h + r] = tanh(act.storage[n * h + r] + parameters[o.u + r]) } }
        let k = Matrix(rows: j2, cols: h, storage: Array(parameters[o.k..<o.bias]))
        var out = Matrix(rows: b, cols: j2)
        gemm(act, false, k, true, into: &out)
        if linearPath { gemm(batch.centered, false, pathWeights, true, beta: 1, into: &out) }
        var m = Matrix(rows: b, cols: j), l = Matrix(rows: b, cols: j)
        for n in 0..<b {
            for c in 0..<j {
                m.storage[n * j + c] = out.storage[n * j2 + c] + parameters[o.bias + c]
                l.storage[n * j + c] = out.storage[n * j2 + j + c] + parameters[o.bias + j + c]
            }
        }
        return EncoderOutput(means: m, logVariances: l, hidden: act)
    }

    /// The gradient in φ, times `scale`, from the gradients in the outputs of ``forward(_:)`` (back through tanh).
    public func backward(_ batch: Batch, output: EncoderOutput, gradMeans: Matrix, gradLogVariances: Matrix, scale: Double) -> [Double] {
        let h = hidden, d = dimension, j = latent, j2 = 2 * latent, b = batch.count
        let o = offsets
        guard let act = output.hidden else { preconditionFailure("MLP backward needs the forward pass's activations") }
        var g = Matrix(rows: b, cols: j2)
        for n in 0..<b {
            for c in 0..<j {
                g.storage[n * j2 + c] = gradMeans.storage[n * j + c]
                g.storage[n * j2 + j + c] = gradLogVariances.storage[n * j + c]
            }
        }
        var out = [Double](repeating: 0, count: parameters.count)
        var gk = Matrix(rows: j2, cols: h)
        gemm(g, true, act, false, alpha: scale, into: &gk)
        for i in 0..<(j2 * h) { out[o.k + i] = gk.storage[i] }
        let sums = g.columnSums()
        for r in 0..<j2 { out[o.bias + r] = scale * sums[r] }
        if linearPath {
            var gl = Matrix(rows: j2, cols: d)
            gemm(g, true, batch.centered, false, alpha: scale, into: &gl)
            let fanIn = 1 / Double(max(1, d)).squareRoot()
            for r in 0..<j2 { for i in 0..<d { out[o.path + r * d + i] = gl[r, i] * invScale[i] * fanIn } }
        }
        let k = Matrix(rows: j2, cols: h, storage: Array(parameters[o.k..<o.bias]))
        var ga = Matrix(rows: b, cols: h)
        gemm(g, false, k, false, into: &ga)
        for i in ga.storage.indices { let a = act.storage[i]; ga.storage[i] *= (1 - a * a) }
        var gu = Matrix(rows: h, cols: d)
        gemm(ga, true, batch.centered, false, alpha: scale, into: &gu)
        for r in 0..<h { for i in 0..<d { out[r * d + i] = gu[r, i] * invScale[i] } }
        let hs = ga.columnSums()
        for r in 0..<h { out[o.u + r] = scale * hs[r] }
        return out
    }
}

/// `m = U (V x) + c`, `log v = E x + f` on standardised inputs x, with V `r × D` and U `J × r`:
/// the linear encoder whose mean map has rank at most r (r = 0: a constant mean, blind to y).
/// Parameters: V, U, E (`J × D`), [c; f].
///
/// Its best ELBO is attained, and at fixed θ the amortisation gap it leaves is known in closed
/// form (``LowRankEncoder/amortizationGap(model:data:rank:)``): the family for which the
/// amortisation gap of an encoder too small for the posterior can be checked exactly.
public struct LowRankEncoder: AmortizedEncoder {
    /// φ: V (`r × D`), U (`J × r`), E (`J × D`), then [c; f].
    public var parameters: [Double]
    /// Latent dimension J.
    public let latent: Int
    /// The rank bound r of the mean map.
    public let rank: Int
    let dimension: Int
    let invScale: [Double]

    /// V drawn N(0, 1/D) from `rng` (U = 0 would otherwise be a saddle), U, E and the biases zero:
    /// the encoder starts at the prior.
    public init(data: Dataset, latent: Int, rank: Int, using rng: RandomSource) {
        self.latent = latent
        self.rank = rank
        dimension = data.dimension
        invScale = inputScales(data)
        let d = data.dimension
        parameters = [Double](repeating: 0, count: rank * d + latent * rank + latent * d + 2 * latent)
        let s = 1 / Double(d).squareRoot()
        for i in 0..<(rank * d) { parameters[i] = s * rng.gaussian() }
    }

    private var offsets: (u: Int, e: Int, bias: Int) {
        let r = rank, d = dimension, j = latent
        return (r * d, r * d + j * r, r * d + j * r + j * d)
    }

    /// V and E in data units (E also divided by √D, as ``LinearEncoder``'s weights are).
    private var inputWeights: (v: Matrix, e: Matrix) {
        let r = rank, d = dimension, j = latent, o = offsets
        let fanIn = 1 / Double(max(1, d)).squareRoot()
        var v = Matrix(rows: r, cols: d), e = Matrix(rows: j, cols: d)
        for k in 0..<r { for i in 0..<d { v[k, i] = parameters[k * d + i] * invScale[i] } }
        for k in 0..<j { for i in 0..<d { e[k, i] = parameters[o.e + k * d + i] * invScale[i] * fanIn } }
        return (v, e)
    }

    /// Means and log-variances for every row of `batch`; `hidden` keeps V x for the backward pass.
    public func forward(_ batch: Batch) -> EncoderOutput {
        let r = rank, j = latent, b = batch.count, o = offsets
        let w = inputWeights
        var m = Matrix(rows: b, cols: j), l = Matrix(rows: b, cols: j)
        var t = Matrix(rows: b, cols: r)
        if r > 0 {
            gemm(batch.centered, false, w.v, true, into: &t)
            let u = Matrix(rows: j, cols: r, storage: Array(parameters[o.u..<o.e]))
            gemm(t, false, u, true, into: &m)
        }
        gemm(batch.centered, false, w.e, true, into: &l)
        for n in 0..<b {
            for k in 0..<j {
                m.storage[n * j + k] += parameters[o.bias + k]
                l.storage[n * j + k] += parameters[o.bias + j + k]
            }
        }
        return EncoderOutput(means: m, logVariances: l, hidden: t)
    }

    /// The gradient in φ, times `scale`, from the gradients in the outputs of ``forward(_:)``.
    public func backward(_ batch: Batch, output: EncoderOutput, gradMeans: Matrix, gradLogVariances: Matrix, scale: Double) -> [Double] {
        let r = rank, d = dimension, j = latent, o = offsets
        let fanIn = 1 / Double(max(1, d)).squareRoot()
        var out = [Double](repeating: 0, count: parameters.count)
        if r > 0 {
            guard let t = output.hidden else { preconditionFailure("low-rank backward needs the forward pass's V x") }
            let u = Matrix(rows: j, cols: r, storage: Array(parameters[o.u..<o.e]))
            var gu = Matrix(rows: j, cols: r)
            gemm(gradMeans, true, t, false, alpha: scale, into: &gu)
            for i in 0..<(j * r) { out[o.u + i] = gu.storage[i] }
            var gt = Matrix(rows: batch.count, cols: r)
            gemm(gradMeans, false, u, false, into: &gt)
            var gv = Matrix(rows: r, cols: d)
            gemm(gt, true, batch.centered, false, alpha: scale, into: &gv)
            for k in 0..<r { for i in 0..<d { out[k * d + i] = gv[k, i] * invScale[i] } }
        }
        var ge = Matrix(rows: j, cols: d)
        gemm(gradLogVariances, true, batch.centered, false, alpha: scale, into: &ge)
        for k in 0..<j { for i in 0..<d { out[o.e + k * d + i] = ge[k, i] * invScale[i] * fanIn } }
        let means = gradMeans.columnSums(), logs = gradLogVariances.columnSums()
        for k in 0..<j { out[o.bias + k] = scale * means[k]; out[o.bias + j + k] = scale * logs[k] }
        return out
    }
}

extension LowRankEncoder {
    /// The amortisation gap, in nats per point, of the best encoder of rank `rank` at θ = `model`:
    /// how far its average ELBO falls short of the best per-point mean-field q's.
    ///
    /// The mean-field optimum for each point has the exact posterior mean μ_n = M⁻¹Wᵀ(y_n − b) and
    /// a variance that does not depend on y, which the variance head matches exactly; what an
    /// encoder gives up is ½ (m_n − μ_n)ᵀ P (m_n − μ_n) per point, P = M/s2. Minimising its sum over
    /// means `m_n = A(y_n − ȳ) + c` with rank A ≤ r is a reduced-rank regression; by Eckart–Young
    /// the least value is
    ///
    ///     gap_r = 1/(2 s2) · Σ_{i > r} λ_i(M^{-1/2} WᵀSW M^{-1/2}),
    ///
    /// λ in decreasing order and S the sample covariance of `data` (for N > D or a singular S
    /// alike, since the fitted map only acts on the span of the data).
    public static func amortizationGap(model: LinearGaussianModel, data: Dataset, rank: Int) throws -> Double {
        let w = model.loadings
        let cross = symmetrized(w.multiplied(by: data.covarianceTimes(w), transposeSelf: true))
        let root = try SymmetricEigen(model.innerMatrix).inverseSquareRoot   // M^{-1/2}
        let whitened = symmetrized(root.multiplied(by: cross).multiplied(by: root))
        let lambdas = try SymmetricEigen(whitened).values
        return lambdas.dropFirst(max(0, rank)).reduce(0) { $0 + max(0, $1) } / (2 * model.noiseVariance)
    }
}
