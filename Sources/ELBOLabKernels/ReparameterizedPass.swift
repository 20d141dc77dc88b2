import CELBOLabKernels

/// Whether this processor runs the kernels: on x86-64 they are compiled (function by function,
/// in the C module `CELBOLabKernels`) for AVX2 with FMA, so the processor must have both;
/// elsewhere they are not built. No kernel here may be called when this is false.
public let kernelsSupported: Bool = elbolab_kernels_supported() != 0

/// The per-point part of a linear encoder's reparameterised joint gradient, in one pass over the rows.
///
/// Each point n (a centred data row y_n, D values) gets 2J projections t_n = Pᵀ y_n + o: the
/// encoder's log-variances ℓ_n (lanes 0..<J) and the part of ∂/∂z log p(y_n|z) that is linear in
/// y_n, a_n (lanes J..<2J). With σ_n = exp(ℓ_n / 2), the draws e_nk = σ_n ⊙ ε_nk and
/// g_nk = a_n − Λ e_nk (Λ = WᵀW / s2), the pass accumulates
///
/// ```
/// weighted[:, 0..<J]  = Σ_n y_n ē_nᵀ          ē_n = (1/K) Σ_k e_nk
/// weighted[:, J..<2J] = Σ_n y_n γ_nᵀ          γ_n = (1/K) Σ_k ½ g_nk ⊙ e_nk − ½ (σ_n² − 1)
/// sums = [Σ_n ē_n, Σ_n γ_n, (1/K) Σ_nk e_nk e_nkᵀ]
/// ```
/// which is everything in the gradient that is not linear in y_n (the caller adds the linear rest
/// from the data's scatter matrix).
///
/// With `pathDerivative` (the "sticking the landing" estimator, `--kl stl`) the caller passes
/// a_n = the linear part of ∇_z[log p(y_n, z) − log q(z)], the path gradient at draw k is
/// g_nk + κ_n ⊙ e_nk with κ_n = 1/σ_n² − 1, γ_n = (1/K) Σ_k ½ (g_nk + κ_n ⊙ e_nk) ⊙ e_nk (no KL
/// term), and `weighted` gets a third part Σ_n y_n ρ_nᵀ with ρ_n = κ_n ⊙ ē_n, `sums` a last Σ_n ρ_n. Points go four at a time, one per vector lane, so the
/// exponentials and the J × J work are vector operations; the rows are read once. Tiles of four
/// go in blocks of up to 32, so that the per-lane work runs as long loops over the block.
///
/// - Parameters:
///   - rows: N × D, row-major.
///   - projection: P, D × L with L = 2J rounded up to a multiple of 4, as D·L/4 vectors (row i
///     holds lanes 0..<L); lanes 2J..<L are zero.
///   - offsets: o, L/4 vectors.
///   - precision: Λ, J × J row-major.
///   - noise: ε, K × N × J standard normal draws (draw-major, then point, then latent).
///   - weighted: D rows of ⌈2J/4⌉ vectors (⌈3J/4⌉ with `pathDerivative`; lanes ē, γ, ρ in
///     turn), overwritten.
///   - sums: 2J + J² values (+ J with `pathDerivative`), overwritten.
public func reparameterizedPass(
    rows: UnsafePointer<Double>, count n: Int, dimension d: Int, latent j: Int, samples k: Int,
    projection: UnsafePointer<SIMD4<Double>>, offsets: UnsafePointer<SIMD4<Double>>,
    precision: UnsafePointer<Double>, noise: UnsafePointer<Double>,
    weighted: UnsafeMutablePointer<SIMD4<Double>>, sums: UnsafeMutablePointer<Double>, pathDerivative: Bool = false
) {
    precondition(n >= 1 && d >= 1 && j >= 1 && k >= 1)
    precondition(kernelsSupported, "the vector kernels need AVX2 with FMA")
    // SIMD4<Double> is four contiguous doubles; the C kernel reads and writes them as such.
    UnsafeRawPointer(projection).withMemoryRebound(to: Double.self, capacity: 4 * d * ((2 * j + 3) / 4)) { p in
    UnsafeRawPointer(offsets).withMemoryRebound(to: Double.self, capacity: 4 * ((2 * j + 3) / 4)) { o in
    UnsafeMutableRawPointer(weighted).withMemoryRebound(to: Double.self, capacity: 4 * d * (((pathDerivative ? 3 : 2) * j + 3) / 4)) { w in
        elbolab_reparameterized_pass(rows, n, d, j, k, p, o, precision, noise, w, sums, pathDerivative ? 1 : 0)
    }}}
}

/// The per-point part of a linear encoder's importance-weighted joint gradient (IWAE or DReG,
/// math.md §14) with K draws a point, in one pass over the rows.
///
/// Each point gets 3J projections t_n = Pᵀ y_n + o: ℓ_n (lanes 0..<J), μ_n (J..<2J) and
/// a_n = Wᵀ(y_n − b)/s2 (2J..<3J). With σ_n = exp(ℓ_n / 2), z_nk = μ_n + σ_n ⊙ ε_nk,
/// g_nk = a_n − Λ z_nk (`precision` Λ = WᵀW/s2 + I, so g is ∇_z log p(y_n, z)) and
/// log w_nk = c_n + z_nkᵀ(a_n − ½ Λ z_nk) + ½ ‖ε_nk‖² (c_n constant in k), the normalised weights
/// w̃_nk give, per point,
///
/// ```
/// z̄_n = Σ_k w̃_nk z_nk
/// IWAE: g_m = Σ_k w̃ g_k,                   g_ℓ = Σ_k w̃ g_k ⊙ ½σε_k + ½
/// DReG: g_m = Σ_k w̃² (g_k + ε_k/σ),        g_ℓ = Σ_k w̃² (g_k + ε_k/σ) ⊙ ½σε_k
/// ```
/// and the pass accumulates `weighted` = Σ_n y_n [z̄_n g_m,n g_ℓ,n]ᵀ (D rows of ⌈3J/4⌉ vectors),
/// `sums` = [Σ z̄_n, Σ g_m,n, Σ g_ℓ,n, Σ_n Σ_k w̃ z zᵀ (J², row-major),
/// Σ_n (max_k log ŵ_nk + log Σ_k e^{log ŵ_nk − max} + ½ Σ ℓ_n)] with log ŵ = log w − c_n + ½Σℓ_n.
/// Points go four at a time, one per vector lane; per point only the J-dimensional work is done,
/// from scratch allocated once per call.
///
/// - Parameters:
///   - noise: ε, N × K × J standard normal draws (point-major, then draw, then latent).
public func importanceWeightedPass(
    rows: UnsafePointer<Double>, count n: Int, dimension d: Int, latent j: Int, particles k: Int,
    projection: UnsafePointer<SIMD4<Double>>, offsets: UnsafePointer<SIMD4<Double>>,
    precision: UnsafePointer<Double>, noise: UnsafePointer<Double>, doublyReparameterized: Bool,
    weighted: UnsafeMutablePointer<SIMD4<Double>>, sums: UnsafeMutablePointer<Double>
) {
    precondition(n >= 1 && d >= 1 && j >= 1 && k >= 1)
    precondition(kernelsSupported, "the vector kernels need AVX2 with FMA")
    let chunks = (3 * j + 3) / 4
    UnsafeRawPointer(projection).withMemoryRebound(to: Double.self, capacity: 4 * d * chunks) { p in
    UnsafeRawPointer(offsets).withMemoryRebound(to: Double.self, capacity: 4 * chunks) { o in
    UnsafeMutableRawPointer(weighted).withMemoryRebound(to: Double.self, capacity: 4 * d * chunks) { w in
        elbolab_importance_weighted_pass(rows, n, d, j, k, p, o, precision, noise, doublyReparameterized ? 1 : 0, w, sums)
    }}}
}
