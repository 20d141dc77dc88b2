import CGSL
import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Words from a script, for driving the sampler through a chosen branch.
struct ScriptedWords: WordSource {
    var words: [UInt32]
    var used = 0
    mutating func next() -> UInt32 {
        defer { used += 1 }
        return words[used]
    }
}

/// Words from a separately allocated GSL generator through the public `gsl_rng_get`.
final class LibraryWords: WordSource {
    let rng: UnsafeMutablePointer<gsl_rng>
    init(seed: UInt64, type: UnsafePointer<gsl_rng_type>) {
        rng = gsl_rng_alloc(type)!
        gsl_rng_set(rng, UInt(truncatingIfNeeded: seed))
    }
    deinit { gsl_rng_free(rng) }
    func next() -> UInt32 { UInt32(gsl_rng_get(rng)) }
}

@Suite("Gaussian ziggurat")
struct GaussianSamplerTests {
    static let zig = GaussianZiggurat.shared
    static let f = GaussianZiggurat.density
    /// ∫ₐ^∞ exp(−x²/2) dx.
    static func upperArea(_ a: Double) -> Double { (2 * Double.pi).squareRoot() * gsl_cdf_ugaussian_Q(a) }

    /// The closure residual v / x₁₂₇ + f(x₁₂₇) − 1 allowed: it changes the top layer's area by
    /// x₁₂₇·δ, a relative error of about 27δ in 1/128 of the draws; at δ = 1e-9 that bias
    /// (2e-10 of the probability) is invisible below about 10¹⁹ draws. The published
    /// constants leave δ ≈ −4.4e-11.
    static let closureTolerance = 1e-9

    @Test("the recursion from the published r and v closes at the peak: x₁₂₈ ≈ 0")
    func closesAtThePeak() {
        let z = Self.zig
        #expect(abs(z.closureResidual) <= Self.closureTolerance, "residual \(z.closureResidual)")
        // The recursion's own x₁₂₈ = √(−2 log(1 + δ)) ≈ √(2|δ|) ≤ 4.5e-5 (it is 9e-6).
        #expect(z.boundaries.count == 129 && z.boundaries[128] == 0 && z.boundaries[1] == GaussianZiggurat.publishedR)
        // The check has power: a layer area off by one part in a million does not close.
        let perturbed = GaussianZiggurat(r: GaussianZiggurat.publishedR, v: GaussianZiggurat.publishedV * (1 + 1e-6))
        #expect(abs(perturbed.closureResidual) > 100 * Self.closureTolerance)
    }

    @Test("every layer, as the sampler's tables store it, has area v")
    func layerAreas() {
        let z = Self.zig, s = z.sampler, v = GaussianZiggurat.publishedV, r = GaussianZiggurat.publishedR
        // Layer 0: the rectangle [0, r] × [0, f(r)] plus the tail, the tail by GSL's normal CDF;
        // both constants are published to 13–15 digits, so rounding is the only error left.
        #expect(approximatelyEqual(r * Self.f(r) + Self.upperArea(r), v, relative: Tolerance.rounding))
        #expect(approximatelyEqual(s.scale[0] / GaussianZiggurat.magnitudeStep * s.top[0], v, relative: Tolerance.rounding))
        #expect(s.top[0] == Self.f(r))
        for i in 1..<128 {
            let width = s.scale[i] / GaussianZiggurat.magnitudeStep
            let area = width * (s.top[i] - s.bottom[i])
            // f(xᵢ₊₁) − f(xᵢ) loses up to a factor f/(v/xᵢ) ≤ 30 of its digits to cancellation;
            // the top layer is off by x₁₂₇·δ from the closure residual.
            let tol = i == 127 ? 30 * Self.closureTolerance : Tolerance.rounding
            #expect(approximatelyEqual(area, v, relative: tol), "layer \(i): area \(area)")
            #expect(s.bottom[i] == Self.f(z.boundaries[i]) && s.top[i] == Self.f(z.boundaries[i + 1]))
        }
    }

    @Test("the layers cover the curve and their rectangles lie under it; together they tile the half-normal")
    func layersTileTheCurve() {
        let z = Self.zig, x = z.boundaries, v = GaussianZiggurat.publishedV, r = GaussianZiggurat.publishedR
        var underCurve = r * Self.f(r) + Self.upperArea(r)   // layer 0 is exactly the curve's
        for i in 1..<128 {
            let low = Self.f(x[i]), high = Self.f(x[i + 1])
            let rectangle = x[i + 1] * (high - low)
            // The curve's part of the wedge [xᵢ₊₁, xᵢ] × [f(xᵢ), f(xᵢ₊₁)], by the normal CDF.
            let wedge = Self.upperArea(x[i + 1]) - Self.upperArea(x[i]) - low * (x[i] - x[i + 1])
            #expect(x[i + 1] < x[i])
            #expect(wedge > 0 && rectangle + wedge < v, "layer \(i)")
            underCurve += rectangle + wedge
        }
        // The sum telescopes to the half-normal's area when the heights reach f(0) = 1.
        #expect(approximatelyEqual(underCurve, (Double.pi / 2).squareRoot(), relative: Tolerance.independentRoute))
    }

    @Test("one word splits into layer (bits 0–6), sign (bit 7) and magnitude (bits 8–31)")
    func bitLayout() {
        let z = Self.zig, s = z.sampler
        for layer in 0..<128 {
            let width = layer == 0 ? GaussianZiggurat.publishedV / Self.f(GaussianZiggurat.publishedR) : z.boundaries[layer]
            for magnitude in [0, s.bound[layer] / 3, s.bound[layer] &- 1] where magnitude < s.bound[layer] {
                for negative in [false, true] {
                    var words = ScriptedWords(words: [magnitude << 8 | (negative ? 0x80 : 0) | UInt32(layer)])
                    let x = s.draw(&words)
                    let expected = (Double(magnitude) + 0.5) * width / 0x1p24
                    #expect(words.used == 1)
                    #expect(approximatelyEqual(x, negative ? -expected : expected, relative: Tolerance.rounding),
                            "layer \(layer) m \(magnitude): \(x)")
                }
            }
            // The bound is the first magnitude whose candidate lies beyond the layer above.
            let next = z.boundaries[layer + 1], m = s.bound[layer]
            #expect((Double(m) + 0.5) * width / 0x1p24 >= next && (m == 0 || (Double(m) - 0.5) * width / 0x1p24 < next))
        }
    }

    @Test("wedge: a low extra height accepts the candidate, a high one rejects it and takes a new word")
    func wedgeBranch() {
        let s = Self.zig.sampler, layer: UInt32 = 100, top: UInt32 = 0xFFFF_FF00
        var accept = ScriptedWords(words: [top | layer, 0])
        let x = s.draw(&accept)
        #expect(accept.used == 2 && x > Self.zig.boundaries[101] && x < Self.zig.boundaries[100])
        // Rejected, then a word of layer 5 with magnitude 0 is accepted at once.
        var reject = ScriptedWords(words: [top | layer, 0xFFFF_FFFF, 5])
        let y = s.draw(&reject)
        #expect(reject.used == 3 && y == 0.5 * s.scale[5])
    }

    @Test("tail: layer 0 beyond r returns r + E₁/r once 2E₂ ≥ (E₁/r)²")
    func tailBranch() {
        let s = Self.zig.sampler, r = GaussianZiggurat.publishedR
        // A negative word in layer 0 past the bound; then (u₁, u₂) near (0, 1) gives a ≈ 6.5 and
        // E₂ ≈ 0: rejected; (½, ½) gives a = log 2 / r, accepted.
        let half: UInt32 = 0x7FFF_FFFF
        var words = ScriptedWords(words: [0xFFFF_FF80, 0, 0xFFFF_FFFF, half, half])
        let x = s.draw(&words)
        let a = -log((Double(half) + 0.5) * 0x1p-32) / r
        #expect(words.used == 5)
        #expect(approximatelyEqual(x, -(r + a), relative: Tolerance.rounding), "\(x)")
    }

    @Test("tail draws follow the normal tail beyond r (Kolmogorov–Smirnov, α = 0.001)")
    func tailDistribution() {
        let s = Self.zig.sampler, r = GaussianZiggurat.publishedR, n = 200_000
        let words = LibraryWords(seed: 41, type: elbolab_rng_mt19937())
        var source = words
        var xs = (0..<n).map { _ in s.tail(&source) }
        xs.sort()
        let d = Self.ksDistance(sorted: xs, cdf: Self.tailCDF)
        #expect(xs[0] >= r)
        // The asymptotic Kolmogorov quantile at 1 − α = 0.999 is 1.949.
        #expect(Double(n).squareRoot() * d < 1.95, "√n·D = \(Double(n).squareRoot() * d)")
    }

    /// The normal CDF conditional on x ≥ r: 1 − Q(x) / Q(r).
    static func tailCDF(_ x: Double) -> Double {
        1 - gsl_cdf_ugaussian_Q(x) / gsl_cdf_ugaussian_Q(GaussianZiggurat.publishedR)
    }

    static let statisticalDraws = 1 << 21

    @Test("2²¹ draws pass Kolmogorov–Smirnov against Φ (α = 0.001)", arguments: RandomSource.Generator.allCases)
    func kolmogorovSmirnov(generator: RandomSource.Generator) {
        let n = Self.statisticalDraws
        var xs = [Double](repeating: 0, count: n)
        RandomSource(seed: 2_026, generator: generator).fillGaussian(&xs)
        xs.sort()
        let d = Self.ksDistance(sorted: xs, cdf: gsl_cdf_ugaussian_P)
        #expect(Double(n).squareRoot() * d < 1.95, "√n·D = \(Double(n).squareRoot() * d)")
    }

    @Test("the tail and every wedge's x-range, per sign, are hit at the normal's rate; stream tail draws are shaped right", arguments: RandomSource.Generator.allCases)
    func regionFrequencies(generator: RandomSource.Generator) {
        let n = Self.statisticalDraws, x = Self.zig.boundaries
        // Region k (k = 1 … 127) is [xₖ₊₁, xₖ); region 0 is the tail [r, ∞). Per sign: 256 regions.
        var counts = [Int](repeating: 0, count: 256)
        var buffer = [Double](repeating: 0, count: 4_096)
        let rng = RandomSource(seed: 7_919, generator: generator)
        var tail: [Double] = []
        for _ in 0..<(n / buffer.count) {
            rng.fillGaussian(&buffer)
            for value in buffer {
                let a = abs(value)
                // Boundaries decrease: binary search for the region holding a.
                var lo = 0, hi = 128   // x[lo] > a ≥ x[hi] holds with x[0] := ∞
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2
                    if a >= x[mid] { hi = mid } else { lo = mid }
                }
                if lo == 0 { tail.append(a) }
                counts[lo + (value < 0 ? 128 : 0)] += 1
            }
        }
        // Each count is binomial(n, p); 4.5 standard errors two-sided fails a correct sampler with
        // probability 7e-6 per region, under 2e-3 over all 257 checks.
        let sigmas = 4.5
        func check(_ count: Int, _ p: Double, _ what: String) {
            let se = (Double(n) * p * (1 - p)).squareRoot()
            #expect(abs(Double(count) - Double(n) * p) <= sigmas * se, "\(what): \(count) vs \(Double(n) * p)")
        }
        let tailP = 2 * gsl_cdf_ugaussian_Q(x[1])
        check(tail.count, tailP, "|x| > r")
        // The tail's shape too, from the stream (about 1,200 draws; same α = 0.001 quantile).
        tail.sort()
        let d = Self.ksDistance(sorted: tail, cdf: Self.tailCDF)
        #expect(Double(tail.count).squareRoot() * d < 1.95, "tail √n·D = \(Double(tail.count).squareRoot() * d)")
        for k in 0..<128 {
            let p = k == 0 ? gsl_cdf_ugaussian_Q(x[1]) : gsl_cdf_ugaussian_Q(x[k + 1]) - gsl_cdf_ugaussian_Q(x[k])
            check(counts[k], p, "region \(k), x > 0")
            check(counts[k + 128], p, "region \(k), x < 0")
        }
    }

    @Test("moments of 2²¹ draws: mean 0, variance 1, fourth moment 3 within 4 standard errors",
          arguments: [RandomSource.Generator.taus2, .gfsr4, .ranlux389])
    func moments(generator: RandomSource.Generator) {
        let n = Self.statisticalDraws
        var xs = [Double](repeating: 0, count: n)
        RandomSource(seed: 404, generator: generator).fillGaussian(&xs)
        var m1 = 0.0, m2 = 0.0, m4 = 0.0
        for x in xs { m1 += x; m2 += x * x; m4 += x * x * x * x }
        m1 /= Double(n); m2 /= Double(n); m4 /= Double(n)
        // Var(x) = 1, Var(x²) = 2, Var(x⁴) = E x⁸ − 9 = 96 for a standard normal.
        let k = Tolerance.monteCarloSigmas, rn = Double(n).squareRoot()
        #expect(abs(m1) <= k / rn, "mean \(m1)")
        #expect(abs(m2 - 1) <= k * 2.0.squareRoot() / rn, "second moment \(m2)")
        #expect(abs(m4 - 3) <= k * 96.0.squareRoot() / rn, "fourth moment \(m4)")
    }

    @Test("32-bit generators draw ELBOLab's ziggurat from the generator's own words; ranlux389 keeps GSL's",
          arguments: RandomSource.Generator.allCases)
    func streamRoute(generator: RandomSource.Generator) {
        let seed: UInt64 = 1_234, count = 5_000
        let source = RandomSource(seed: seed, generator: generator)
        let ours = (0..<count).map { _ in source.gaussian().bitPattern }
        let library = LibraryWords(seed: seed, type: generator.type)
        let expected: [UInt64]
        if generator == .ranlux389 {
            expected = (0..<count).map { _ in gsl_ran_gaussian_ziggurat(library.rng, 1).bitPattern }
        } else {
            var words = library
            let s = Self.zig.sampler
            expected = (0..<count).map { _ in s.draw(&words).bitPattern }
            let reference = LibraryWords(seed: seed, type: generator.type)
            let gsl = (0..<count).map { _ in gsl_ran_gaussian_ziggurat(reference.rng, 1).bitPattern }
            #expect(ours != gsl)
        }
        #expect(ours == expected)
    }

    /// sup |F̂ₙ − F| over the sorted sample.
    static func ksDistance(sorted xs: [Double], cdf: (Double) -> Double) -> Double {
        let n = Double(xs.count)
        var d = 0.0
        for (i, x) in xs.enumerated() {
            let p = cdf(x)
            d = max(d, Double(i + 1) / n - p, p - Double(i) / n)
        }
        return d
    }
}
