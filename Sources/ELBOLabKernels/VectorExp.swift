/// e^x in four lanes, within about one unit in the last place.
///
/// x = k ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two parts, so r carries ~2⁻⁶⁰ absolute error),
/// e^r by its Taylor series to r¹³ (truncation below 10⁻¹⁷ relative), then the product with 2^k,
/// applied in two halves so that subnormal results and overflow to +∞ need no special case.
/// NaN stays NaN. Every step is a vector instruction (AVX2 in the x86-64 build).
@inline(__always)
public func exponential(_ x: SIMD4<Double>) -> SIMD4<Double> {
    let log2e = 1.4426950408889634, ln2High = 0.6931471803691238, ln2Low = 1.9082149292705877e-10
    // Beyond these bounds e^x is 0 or +∞ in double; within them both halves of 2^k are normal.
    var clamped = x
    clamped.replace(with: -746, where: x .< -746)
    clamped.replace(with: 710, where: x .> 710)
    let k = (clamped * log2e).rounded(.toNearestOrEven)
    // k·ln2High is exact (its last 21 bits are zero and |k| < 2¹¹), so r needs no fused operation.
    let r = (clamped - k * ln2High) - k * ln2Low
    let half = (k * 0.5).rounded(.down)
    // A NaN x stays NaN through every step (NaN times the garbage power of two is NaN).
    return taylorExponential(r) * powerOfTwo(half) * powerOfTwo(k - half)
}

/// e^r for |r| ≤ 0.35: Σ_{n ≤ 13} rⁿ/n! by Horner's rule, a fused multiply-add a step.
@inline(__always)
func taylorExponential(_ r: SIMD4<Double>) -> SIMD4<Double> {
    var p = SIMD4<Double>(repeating: 1 / 6_227_020_800)
    p = SIMD4(repeating: 1 / 479_001_600).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 39_916_800).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 3_628_800).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 362_880).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 40_320).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 5_040).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 720).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 120).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 24).addingProduct(p, r)
    p = SIMD4(repeating: 1 / 6).addingProduct(p, r)
    p = SIMD4(repeating: 0.5).addingProduct(p, r)
    p = SIMD4(repeating: 1).addingProduct(p, r)
    return SIMD4(repeating: 1).addingProduct(p, r)
}

/// 2^n for integer-valued n in −1022…1023, from its exponent bits. Adding 1.5·2⁵² puts n in the
/// low bits of the sum's pattern, so no float-to-integer conversion is needed.
@inline(__always)
func powerOfTwo(_ n: SIMD4<Double>) -> SIMD4<Double> {
    let shifter = 6_755_399_441_055_744.0
    let bits = unsafeBitCast(n + shifter, to: SIMD4<UInt64>.self) &- shifter.bitPattern
    return unsafeBitCast((bits &+ 1023) &<< 52, to: SIMD4<Double>.self)
}

/// `out[i] = exp(scale · x[i])` for every i, four at a time; the last few through a padded vector.
public func exponentials(of x: UnsafeBufferPointer<Double>, scaledBy scale: Double, into out: UnsafeMutableBufferPointer<Double>) {
    precondition(out.count >= x.count)
    guard let source = x.baseAddress, let target = out.baseAddress else { return }
    let whole = x.count / 4 * 4
    var i = 0
    while i < whole {
        let v = SIMD4(source[i], source[i + 1], source[i + 2], source[i + 3])
        let e = exponential(v * scale)
        target[i] = e[0]; target[i + 1] = e[1]; target[i + 2] = e[2]; target[i + 3] = e[3]
        i += 4
    }
    if whole < x.count {
        var v = SIMD4<Double>(repeating: 0)
        for k in whole..<x.count { v[k - whole] = source[k] }
        let e = exponential(v * scale)
        for k in whole..<x.count { target[k] = e[k - whole] }
    }
}
