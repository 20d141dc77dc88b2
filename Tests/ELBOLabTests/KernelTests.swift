import Foundation
import Testing
@testable import ELBOLab
import ELBOLabKernels

/// The vector kernels against libm and against ELBOLab's portable paths.
@Suite("Vector kernels")
struct KernelTests {
    /// Distance in units in the last place between two finite doubles of the same sign.
    static func ulps(_ a: Double, _ b: Double) -> UInt64 {
        let x = a.bitPattern, y = b.bitPattern
        return x > y ? x - y : y - x
    }

    @Test("exponential: within one ulp of libm's exp over its whole range; 0, +∞ and NaN at the ends")
    func exponentialMatchesLibm() {
        // A fixed grid over the range where the result is a normal double, plus random points
        // from a seeded stream; glibc's exp is within about half an ulp of the true value.
        let rng = RandomSource(seed: 5)
        var xs = stride(from: -708.0, through: 709.7, by: 0.0137).map { $0 }
        xs += (0..<100_000).map { _ in 1417.7 * rng.uniform() - 708 }
        xs += (0..<100_000).map { _ in 2 * rng.uniform() - 1 }            // near 0, where e^x ≈ 1 + x
        xs += [0, -0.0, 1e-300, -1e-300, 0.5 * log(2), -0.5 * log(2), log(Double.greatestFiniteMagnitude)]
        while xs.count % 4 != 0 { xs.append(1) }
        var worst: UInt64 = 0, off = 0
        for start in stride(from: 0, to: xs.count, by: 4) {
            let v = exponential(SIMD4(xs[start], xs[start + 1], xs[start + 2], xs[start + 3]))
            for lane in 0..<4 {
                let u = Self.ulps(v[lane], Foundation.exp(xs[start + lane]))
                worst = max(worst, u)
                if u > 0 { off += 1 }
            }
        }
        // Faithful rounding: never more than one ulp away (about one result in ten is, where the
        // true value lies near a rounding boundary). A Taylor series one term shorter fails this.
        #expect(worst <= 1, "worst \(worst) ulp; \(off) of \(xs.count) differ from libm")

        let ends = exponential(SIMD4(-746, 710, .infinity, -.infinity))
        #expect(ends == SIMD4(0, .infinity, .infinity, 0))
        #expect(exponential(SIMD4(repeating: .nan)).x.isNaN)
        // Subnormal results: the two-step scaling rounds once, so they match libm too.
        for x in stride(from: -745.0, through: -708.5, by: 0.37) {
            let v = exponential(SIMD4(repeating: x)).x, libm = Foundation.exp(x)
            #expect(Self.ulps(v, libm) <= 1, "e^\(x): \(v) vs \(libm)")
        }
    }
}
