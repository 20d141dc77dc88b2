import CGSL

/// A seeded stream of random numbers over one `gsl_rng`.
///
/// Every random draw in ELBOLab comes from a `RandomSource`: the same generator type and seed
/// give bit-identical streams. A source is owned by one run and never shared between threads.
public final class RandomSource {
    /// The generator types that can be chosen by name.
    public enum Generator: String, CaseIterable, Sendable {
        case mt19937, ranlxd2, taus2, ranlux389, gfsr4

        var type: UnsafePointer<gsl_rng_type> {
            switch self {
            case .mt19937: return elbolab_rng_mt19937()
            case .ranlxd2: return elbolab_rng_ranlxd2()
            case .taus2: return elbolab_rng_taus2()
            case .ranlux389: return elbolab_rng_ranlux389()
            case .gfsr4: return elbolab_rng_gfsr4()
            }
        }
    }

    private let rng: UnsafeMutablePointer<gsl_rng>
    /// ELBOLab's ziggurat when the generator gives full 32-bit words, else nil (GSL's ziggurat).
    /// Plain pointers into the shared tables, which live as long as the process: no reference
    /// count traffic per draw.
    private let ziggurat: GaussianZiggurat.Sampler?
    /// The seed this stream started from.
    public let seed: UInt64
    /// The generator type.
    public let generator: Generator

    /// Creates a generator of type `generator` seeded with `seed`.
    public init(seed: UInt64, generator: Generator = .mt19937) {
        GSLRuntime.ensure()
        guard let r = gsl_rng_alloc(generator.type) else {
            // Allocation of a few kilobytes failing means the process is out of memory.
            preconditionFailure("gsl_rng_alloc failed: out of memory")
        }
        rng = r
        self.seed = seed
        self.generator = generator
        gsl_rng_set(rng, UInt(truncatingIfNeeded: seed))
        ziggurat = GSLWords.fit(r) ? GaussianZiggurat.shared.sampler : nil
    }

    /// Creates a generator from a generator name such as `"mt19937"`; nil for an unknown name.
    public convenience init?(seed: UInt64, generatorName: String) {
        guard let g = Generator(rawValue: generatorName) else { return nil }
        self.init(seed: seed, generator: g)
    }

    deinit { gsl_rng_free(rng) }

    /// A standard normal draw.
    ///
    /// Generators with 32-bit words (mt19937, ranlxd2, taus2, gfsr4) go through ELBOLab's own
    /// 128-layer ziggurat (`GaussianZiggurat`: one raw word per candidate, layer, sign and
    /// magnitude from disjoint bits, magnitudes resolved to wᵢ / 2²⁴ ≤ 2.2e-7, about 1.04 words
    /// per draw). ranlux389, with 24-bit words, uses `gsl_ran_gaussian_ziggurat` instead.
    @inline(__always)
    public func gaussian() -> Double {
        guard let ziggurat else { return gsl_ran_gaussian_ziggurat(rng, 1.0) }
        var words = GSLWords(rng: rng)
        return ziggurat.draw(&words)
    }

    /// A uniform draw on [0, 1).
    @inline(__always)
    public func uniform() -> Double { gsl_rng_uniform(rng) }

    /// A uniform integer in 0..<n (n ≥ 1).
    public func index(below n: Int) -> Int {
        precondition(n >= 1)
        return Int(gsl_rng_uniform_int(rng, UInt(n)))
    }

    /// Fills `buffer` with standard normal draws: the same sequence as repeated ``gaussian()``.
    public func fillGaussian(_ buffer: UnsafeMutableBufferPointer<Double>) {
        guard let out = buffer.baseAddress else { return }
        guard let ziggurat else {
            for i in 0..<buffer.count { out[i] = gsl_ran_gaussian_ziggurat(rng, 1.0) }
            return
        }
        // Tables and generator in locals: no property reloads or bounds checks per draw.
        var words = GSLWords(rng: rng)
        for i in 0..<buffer.count { out[i] = ziggurat.draw(&words) }
    }

    /// Fills `array` with standard normal draws.
    public func fillGaussian(_ array: inout [Double]) {
        array.withUnsafeMutableBufferPointer { fillGaussian($0) }
    }

    /// A seed for a child stream, drawn from this one: children of one parent are reproducible.
    public func childSeed() -> UInt64 {
        UInt64(gsl_rng_get(rng)) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(gsl_rng_get(rng))
    }
}
