import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics
import ELBOLabKernels

/// The vector kernels against libm and against ELBOLab's portable paths; skipped, with a
/// message, on a processor without AVX2 and FMA (where ELBOLab runs the portable paths only).
@Suite("Vector kernels", .enabled(if: kernelsSupported, "this processor lacks AVX2 or FMA: the vector kernels are not run here"))
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

    @Test("exponentials over an array: lane for lane the vector exponential of scale·x, the tail (7 = 4 + 3) included")
    func exponentialsOverArrays() {
        let rng = RandomSource(seed: 6)
        let xs = (0..<7).map { _ in 40 * rng.uniform() - 20 }
        var out = [Double](repeating: .nan, count: 7)
        xs.withUnsafeBufferPointer { x in out.withUnsafeMutableBufferPointer { exponentials(of: x, scaledBy: 0.5, into: $0) } }
        let head = exponential(SIMD4(xs[0], xs[1], xs[2], xs[3]) * 0.5), tail = exponential(SIMD4(xs[4], xs[5], xs[6], 0) * 0.5)
        #expect(out == [head[0], head[1], head[2], head[3], tail[0], tail[1], tail[2]])
        #expect(zip(out, xs).allSatisfy { Self.ulps($0, Foundation.exp(0.5 * $1)) <= 1 })
    }

    @Test("adamUpdate: bit for bit the scalar Adam loop, over a length that leaves a tail", arguments: [1, 4, 11])
    func adamMatchesScalar(count: Int) {
        let rng = RandomSource(seed: 7)
        var x = (0..<count).map { _ in rng.gaussian() }, m = x.map { 0.1 * $0 }, v = x.map { $0 * $0 }
        let g = (0..<count).map { _ in rng.gaussian() }
        var xs = x, ms = m, vs = v
        for i in 0..<count {
            ms[i] = 0.9 * ms[i] + (1 - 0.9) * g[i]
            vs[i] = 0.999 * vs[i] + (1 - 0.999) * g[i] * g[i]
            xs[i] += 0.05 * ms[i] / (vs[i].squareRoot() + 1e-8)
        }
        x.withUnsafeMutableBufferPointer { xp in m.withUnsafeMutableBufferPointer { mp in v.withUnsafeMutableBufferPointer { vp in
            g.withUnsafeBufferPointer { gp in
                adamUpdate(parameters: xp, gradient: gp, firstMoment: mp, secondMoment: vp, beta1: 0.9, beta2: 0.999, stepSize: 0.05, epsilon: 1e-8)
            }
        } } }
        #expect(x.map(\.bitPattern) == xs.map(\.bitPattern))
        #expect(m.map(\.bitPattern) == ms.map(\.bitPattern))
        #expect(v.map(\.bitPattern) == vs.map(\.bitPattern))
    }

    @Test("Adam: the vector step and the portable step agree bit for bit over many steps")
    func adamPathsAgree() {
        let rng = RandomSource(seed: 9)
        var x = (0..<13).map { _ in rng.gaussian() }, y = x
        var vector = Adam(count: 13, learningRate: 0.01, schedule: .decay(halfLife: 10, power: 0.5)), portable = vector
        vector.vector = true
        portable.vector = false
        for _ in 0..<50 {
            let g = (0..<13).map { _ in rng.gaussian() }
            vector.step(&x, gradient: g)
            portable.step(&y, gradient: g)
        }
        #expect(x.map(\.bitPattern) == y.map(\.bitPattern))
    }

    @Test("Kernels.exponentials: the vector and the libm path within one ulp of each other")
    func exponentialPathsAgree() {
        let rng = RandomSource(seed: 10)
        let xs = (0..<1001).map { _ in 60 * rng.uniform() - 30 }
        var vector = [Double](repeating: .nan, count: xs.count), portable = vector
        xs.withUnsafeBufferPointer { x in
            vector.withUnsafeMutableBufferPointer { Kernels.exponentials(of: x, scaledBy: 0.5, into: $0, vector: true) }
            portable.withUnsafeMutableBufferPointer { Kernels.exponentials(of: x, scaledBy: 0.5, into: $0, vector: false) }
        }
        #expect(zip(vector, portable).allSatisfy { Self.ulps($0, $1) <= 1 })
    }
}

/// ELBOLab's portable paths, which run on every processor (and with `ELBOLAB_KERNELS=portable`).
@Suite("Portable kernel paths")
struct PortableKernelTests {
    @Test("Adam's portable step: bit for bit the scalar formula, with bias correction", arguments: [1, 4, 11])
    func portableAdamMatchesFormula(count: Int) {
        let rng = RandomSource(seed: 11)
        var x = (0..<count).map { _ in rng.gaussian() }
        var adam = Adam(count: count, learningRate: 0.05)
        adam.vector = false
        var xs = x, m = [Double](repeating: 0, count: count), v = m
        for t in 1...3 {
            let g = (0..<count).map { _ in rng.gaussian() }
            adam.step(&x, gradient: g)
            let c1 = 1 - pow(0.9, Double(t)), c2 = 1 - pow(0.999, Double(t))
            let alpha = 0.05 * c2.squareRoot() / c1, eps = 1e-8 * c2.squareRoot()
            for i in 0..<count {
                m[i] = 0.9 * m[i] + (1 - 0.9) * g[i]
                v[i] = 0.999 * v[i] + (1 - 0.999) * g[i] * g[i]
                xs[i] += alpha * m[i] / (v[i].squareRoot() + eps)
            }
        }
        #expect(x.map(\.bitPattern) == xs.map(\.bitPattern))
    }

    @Test("Kernels.exponentials' portable path is libm's exp of scale·x")
    func portableExponentials() {
        let xs = [-800.0, -3, 0, 0.25, 2, 800, .nan]
        var out = [Double](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { x in out.withUnsafeMutableBufferPointer { Kernels.exponentials(of: x, scaledBy: 2, into: $0, vector: false) } }
        #expect(zip(out, xs).allSatisfy { $0.bitPattern == Foundation.exp(2 * $1).bitPattern })
    }
}
