import CGSL
import Foundation

/// A source of uniformly distributed 32-bit words.
protocol WordSource {
    /// The next word; all 2³² values equally likely.
    mutating func next() -> UInt32
}

/// The raw words of a GSL generator whose range is exactly 0 … 2³² − 1.
struct GSLWords: WordSource {
    let rng: UnsafeMutablePointer<gsl_rng>

    /// Whether `rng`'s words cover exactly 32 bits (mt19937, ranlxd2, taus2 and gfsr4 do;
    /// ranlux389 gives only 24).
    static func fit(_ rng: UnsafePointer<gsl_rng>) -> Bool {
        gsl_rng_min(rng) == 0 && gsl_rng_max(rng) == 0xFFFF_FFFF
    }

    @inline(__always)
    mutating func next() -> UInt32 { UInt32(truncatingIfNeeded: elbolab_rng_word(rng)) }
}

/// The tables of a 128-layer ziggurat for the standard normal (Marsaglia & Tsang 2000), and
/// the sampler that reads them.
///
/// The half-normal curve f(x) = exp(−x²/2), x ≥ 0, is covered by 128 layers of equal area v:
/// layer 0 is the rectangle [0, r] × [0, f(r)] together with the tail beyond r; layer i ≥ 1 is
/// the box [0, xᵢ] × [f(xᵢ), f(xᵢ₊₁)] with x₁ = r and
///
///     xᵢ₊₁ = √(−2 log(v / xᵢ + f(xᵢ))),   x₁₂₈ = 0.
///
/// The tables are computed from this recursion when the first generator is created.
///
/// One draw takes one 32-bit word, split into disjoint fields so that the layer and the
/// position inside it are independent (the original sampler took both from the same bits):
///
///     bits 31 … 8   magnitude m (24 bits)
///     bit  7        sign
///     bits 6 … 0    layer i
///
/// The candidate is x = (m + ½) · wᵢ / 2²⁴, where wᵢ is the layer's width (xᵢ, and v / f(r)
/// for layer 0), so magnitudes have a resolution of wᵢ / 2²⁴. It is accepted at once when it
/// lies under the layer above (x < xᵢ₊₁, an integer comparison of m); otherwise layer 0 draws
/// from the tail by Marsaglia's exponential method and layer i ≥ 1 accepts x in its wedge
/// when a uniform height from a further word falls under f(x), else starts over.
final class GaussianZiggurat: @unchecked Sendable {   // immutable after init
    static let layers = 128
    /// The published constants: the base layer's right edge r and the common layer area v.
    static let publishedR = 3.442619855899
    static let publishedV = 9.91256303526217e-3

    /// The tables every `RandomSource` shares.
    static let shared = GaussianZiggurat(r: publishedR, v: publishedV)

    let r: Double
    let v: Double
    /// x₀ … x₁₂₈: x₀ = v / f(r) is layer 0's width, x₁ = r, x₁₂₈ = 0 (set, not computed).
    let boundaries: [Double]
    /// v / x₁₂₇ + f(x₁₂₇) − 1: zero when r and v close the ziggurat at the peak.
    let closureResidual: Double
    /// Per layer wᵢ / 2²⁴, f at the layer's bottom, f at its top; then r; then per layer the
    /// accept-at-once bound on m.
    private let storage: UnsafeMutableRawPointer

    /// Computes the tables for base edge `r` and layer area `v`.
    init(r: Double, v: Double) {
        self.r = r
        self.v = v
        let n = Self.layers
        var x = [Double](repeating: 0, count: n + 1)
        x[0] = v / Self.density(r)
        x[1] = r
        for i in 1..<(n - 1) { x[i + 1] = (-2 * log(v / x[i] + Self.density(x[i]))).squareRoot() }
        closureResidual = v / x[n - 1] + Self.density(x[n - 1]) - 1
        x[n] = 0
        boundaries = x

        storage = .allocate(byteCount: (3 * n + 1) * MemoryLayout<Double>.stride + n * MemoryLayout<UInt32>.stride,
                            alignment: MemoryLayout<Double>.alignment)
        let s = Sampler(storage)
        s.scale[3 * n] = r
        for i in 0..<n {
            s.scale[i] = x[i] * Self.magnitudeStep
            // m is accepted at once when (m + ½)·wᵢ/2²⁴ < xᵢ₊₁.
            let bound = (x[i + 1] / x[i] / Self.magnitudeStep - 0.5).rounded(.up)
            s.bound[i] = UInt32(max(0, bound))
            s.bottom[i] = i == 0 ? 0 : Self.density(x[i])
            s.top[i] = Self.density(x[i + 1])
        }
    }

    deinit { storage.deallocate() }

    static let magnitudeStep = 0x1p-24
    static func density(_ x: Double) -> Double { exp(-0.5 * x * x) }

    /// The tables as plain pointers, for a loop to hold in locals.
    var sampler: Sampler { Sampler(storage) }

    /// Unsafe views of the tables; valid while the `GaussianZiggurat` that made them lives.
    /// Two pointers, so a copy lives in registers.
    struct Sampler {
        let bound: UnsafeMutablePointer<UInt32>
        let scale: UnsafeMutablePointer<Double>
        var bottom: UnsafeMutablePointer<Double> { scale + GaussianZiggurat.layers }
        var top: UnsafeMutablePointer<Double> { scale + 2 * GaussianZiggurat.layers }
        var r: Double { scale[3 * GaussianZiggurat.layers] }

        init(_ p: UnsafeMutableRawPointer) {
            let n = GaussianZiggurat.layers
            scale = p.bindMemory(to: Double.self, capacity: 3 * n + 1)
            bound = (p + (3 * n + 1) * MemoryLayout<Double>.stride).bindMemory(to: UInt32.self, capacity: n)
        }

        /// One standard normal draw.
        @inline(__always)
        func draw<W: WordSource>(_ words: inout W) -> Double {
            while true {
                let u = words.next()
                let layer = Int(u & 0x7F)
                let magnitude = u >> 8
                let sign = UInt64(u & 0x80) << 56
                if magnitude < bound[layer] {
                    return Double(bitPattern: ((Double(magnitude) + 0.5) * scale[layer]).bitPattern | sign)
                }
                if let x = edge(layer: layer, magnitude: magnitude, &words) {
                    return Double(bitPattern: x.bitPattern | sign)
                }
            }
        }

        /// The rare branch (2.8% of words): the tail beyond r for layer 0, the wedge
        /// test otherwise; nil means the word is rejected.
        @inline(never)
        func edge<W: WordSource>(layer: Int, magnitude: UInt32, _ words: inout W) -> Double? {
            if layer == 0 { return tail(&words) }
            let x = (Double(magnitude) + 0.5) * scale[layer]
            let height = bottom[layer] + Self.unit(words.next()) * (top[layer] - bottom[layer])
            return height < GaussianZiggurat.density(x) ? x : nil
        }

        /// A draw from the normal tail beyond r: a = E₁/r, accepted when 2E₂ ≥ a² (Marsaglia 1964).
        func tail<W: WordSource>(_ words: inout W) -> Double {
            let r = self.r
            while true {
                let a = -log(Self.open(words.next())) / r
                let b = -log(Self.open(words.next()))
                if b + b >= a * a { return r + a }
            }
        }

        /// A word as a uniform on [0, 1).
        @inline(__always)
        static func unit(_ w: UInt32) -> Double { Double(w) * 0x1p-32 }
        /// A word as a uniform on (0, 1), safe to take the log of.
        @inline(__always)
        static func open(_ w: UInt32) -> Double { (Double(w) + 0.5) * 0x1p-32 }
    }
}
