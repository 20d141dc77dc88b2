import CELBOLabKernels

/// e^x in four lanes, within about one unit in the last place.
///
/// x = k ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two parts, so r carries ~2⁻⁶⁰ absolute error),
/// e^r by its Taylor series to r¹³ (truncation below 10⁻¹⁷ relative), then the product with 2^k,
/// applied in two halves so that subnormal results and overflow to +∞ need no special case.
/// NaN stays NaN. Every step is an AVX2 instruction. Requires ``kernelsSupported``.
public func exponential(_ x: SIMD4<Double>) -> SIMD4<Double> {
    precondition(kernelsSupported, "the vector kernels need AVX2 with FMA")
    var input = x, out = SIMD4<Double>()
    withUnsafePointer(to: &input) { xp in
        withUnsafeMutablePointer(to: &out) { op in
            xp.withMemoryRebound(to: Double.self, capacity: 4) { x in
                op.withMemoryRebound(to: Double.self, capacity: 4) { elbolab_exp4(x, $0) }
            }
        }
    }
    return out
}

/// `out[i] = exp(scale · x[i])` for every i, four at a time with ``exponential(_:)`` (the
/// product scale · x[i] rounded first); the last few through a vector padded with zeros.
/// Requires ``kernelsSupported``.
public func exponentials(of x: UnsafeBufferPointer<Double>, scaledBy scale: Double, into out: UnsafeMutableBufferPointer<Double>) {
    precondition(out.count >= x.count)
    precondition(kernelsSupported, "the vector kernels need AVX2 with FMA")
    guard let source = x.baseAddress, let target = out.baseAddress else { return }
    elbolab_exponentials(source, x.count, scale, target)
}

/// One Adam ascent step over whole arrays, four entries at a time:
/// ```
/// m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   x ← x + α m / (√v + ε)
/// ```
/// The same operations in the same order as the scalar loop (no fused multiply-adds), so the
/// result is bit for bit the scalar one; square root and division are correctly rounded in
/// both. The scalar loop is bound by one division and one square root per entry.
/// Requires ``kernelsSupported``.
public func adamUpdate(parameters x: UnsafeMutableBufferPointer<Double>, gradient g: UnsafeBufferPointer<Double>,
                       firstMoment m: UnsafeMutableBufferPointer<Double>, secondMoment v: UnsafeMutableBufferPointer<Double>,
                       beta1: Double, beta2: Double, stepSize alpha: Double, epsilon: Double) {
    let count = x.count
    precondition(g.count == count && m.count == count && v.count == count)
    precondition(kernelsSupported, "the vector kernels need AVX2 with FMA")
    guard let xp = x.baseAddress, let gp = g.baseAddress, let mp = m.baseAddress, let vp = v.baseAddress else { return }
    elbolab_adam_update(xp, gp, mp, vp, count, beta1, beta2, alpha, epsilon)
}
