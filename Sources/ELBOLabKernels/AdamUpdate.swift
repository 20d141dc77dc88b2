/// One Adam ascent step over whole arrays, four entries at a time:
/// ```
/// m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   x ← x + α m / (√v + ε)
/// ```
/// The same operations in the same order as the scalar loop (no fused multiply-adds), so the
/// result is bit for bit the scalar one; square root and division are correctly rounded in
/// both. The scalar loop is bound by one division and one square root per entry.
public func adamUpdate(parameters x: UnsafeMutableBufferPointer<Double>, gradient g: UnsafeBufferPointer<Double>,
                       firstMoment m: UnsafeMutableBufferPointer<Double>, secondMoment v: UnsafeMutableBufferPointer<Double>,
                       beta1: Double, beta2: Double, stepSize alpha: Double, epsilon: Double) {
    let count = x.count
    precondition(g.count == count && m.count == count && v.count == count)
    guard let xp = x.baseAddress, let gp = g.baseAddress, let mp = m.baseAddress, let vp = v.baseAddress else { return }
    let b1 = SIMD4<Double>(repeating: beta1), c1 = SIMD4<Double>(repeating: 1 - beta1)
    let b2 = SIMD4<Double>(repeating: beta2), c2 = SIMD4<Double>(repeating: 1 - beta2)
    let a = SIMD4<Double>(repeating: alpha), e = SIMD4<Double>(repeating: epsilon)
    let whole = count / 4 * 4
    var i = 0
    while i < whole {
        let gi = SIMD4(gp[i], gp[i + 1], gp[i + 2], gp[i + 3])
        let mi = b1 * SIMD4(mp[i], mp[i + 1], mp[i + 2], mp[i + 3]) + c1 * gi
        let vi = b2 * SIMD4(vp[i], vp[i + 1], vp[i + 2], vp[i + 3]) + c2 * gi * gi
        let xi = SIMD4(xp[i], xp[i + 1], xp[i + 2], xp[i + 3]) + a * mi / (vi.squareRoot() + e)
        for k in 0..<4 { mp[i + k] = mi[k]; vp[i + k] = vi[k]; xp[i + k] = xi[k] }
        i += 4
    }
    while i < count {
        mp[i] = beta1 * mp[i] + (1 - beta1) * gp[i]
        vp[i] = beta2 * vp[i] + (1 - beta2) * gp[i] * gp[i]
        xp[i] += alpha * mp[i] / (vp[i].squareRoot() + epsilon)
        i += 1
    }
}
