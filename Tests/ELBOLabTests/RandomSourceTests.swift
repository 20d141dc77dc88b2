import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

@Suite("RandomSource")
struct RandomSourceTests {
    static let streamLength = 1_000
    static let momentDraws = 1_000_000

    /// The first `count` draws of a mixed stream (Gaussian, uniform, integer), as bit patterns.
    static func stream(_ r: RandomSource, count: Int = streamLength) -> [UInt64] {
        var out: [UInt64] = []
        out.reserveCapacity(3 * count)
        for _ in 0..<count {
            out.append(r.gaussian().bitPattern)
            out.append(r.uniform().bitPattern)
            out.append(UInt64(r.index(below: 1_000)))
        }
        return out
    }

    @Test("the same seed gives a bit-identical stream", arguments: RandomSource.Generator.allCases)
    func sameSeedSameStream(generator: RandomSource.Generator) {
        let a = RandomSource(seed: 12_345, generator: generator)
        let b = RandomSource(seed: 12_345, generator: generator)
        #expect(Self.stream(a) == Self.stream(b))
        var fa = [Double](repeating: 0, count: 64), fb = fa
        a.fillGaussian(&fa)
        b.fillGaussian(&fb)
        #expect(fa.map(\.bitPattern) == fb.map(\.bitPattern))
        #expect(a.childSeed() == b.childSeed())
    }

    @Test("different seeds give different streams", arguments: RandomSource.Generator.allCases)
    func differentSeedsDiffer(generator: RandomSource.Generator) {
        let a = Self.stream(RandomSource(seed: 1, generator: generator))
        let b = Self.stream(RandomSource(seed: 2, generator: generator))
        #expect(a != b)
        // Not merely shifted by a few draws: no Gaussian draw of one appears early in the other.
        let ga = Set(stride(from: 0, to: 30, by: 3).map { a[$0] })
        let gb = Set(stride(from: 0, to: 30, by: 3).map { b[$0] })
        #expect(ga.isDisjoint(with: gb))
    }

    @Test("a million Gaussian draws have mean 0 and variance 1 within 4 standard errors")
    func gaussianMoments() {
        let n = Self.momentDraws
        let r = RandomSource(seed: 2_024)
        var xs = [Double](repeating: 0, count: n)
        r.fillGaussian(&xs)
        let mean = xs.reduce(0, +) / Double(n)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        // SE of the mean of N(0,1) draws is 1/√n; of the variance, √(2/n).
        let meanSE = 1 / Double(n).squareRoot()
        let varianceSE = (2 / Double(n)).squareRoot()
        #expect(abs(mean) <= Tolerance.monteCarloSigmas * meanSE, "mean \(mean)")
        #expect(abs(variance - 1) <= Tolerance.monteCarloSigmas * varianceSE, "variance \(variance)")
        // The fourth moment of a standard normal is 3, var(x⁴) = 96: checks the tails are Gaussian.
        let fourth = xs.reduce(0) { $0 + $1 * $1 * $1 * $1 } / Double(n)
        #expect(abs(fourth - 3) <= Tolerance.monteCarloSigmas * (96 / Double(n)).squareRoot(), "fourth moment \(fourth)")
    }

    @Test("gaussian() and fillGaussian draw the same sequence")
    func fillMatchesSingleDraws() {
        let a = RandomSource(seed: 99), b = RandomSource(seed: 99)
        var filled = [Double](repeating: 0, count: 100)
        a.fillGaussian(&filled)
        let single = (0..<100).map { _ in b.gaussian() }
        #expect(filled.map(\.bitPattern) == single.map(\.bitPattern))
    }

    @Test("uniform draws lie in [0, 1) with mean 1/2 within 4 standard errors")
    func uniformRange() {
        let n = 100_000
        let r = RandomSource(seed: 5)
        var sum = 0.0
        for _ in 0..<n {
            let u = r.uniform()
            #expect(u >= 0 && u < 1)
            sum += u
        }
        let se = (1.0 / 12 / Double(n)).squareRoot()
        #expect(abs(sum / Double(n) - 0.5) <= Tolerance.monteCarloSigmas * se)
    }

    @Test("index(below:) stays in range and reaches every value")
    func indexRange() {
        let r = RandomSource(seed: 8)
        var seen = Set<Int>()
        for _ in 0..<1_000 {
            let k = r.index(below: 7)
            #expect((0..<7).contains(k))
            seen.insert(k)
        }
        #expect(seen.count == 7)
        #expect(r.index(below: 1) == 0)
    }

    @Test("a generator is selected by name", arguments: RandomSource.Generator.allCases)
    func generatorByName(generator: RandomSource.Generator) throws {
        let named = try #require(RandomSource(seed: 31, generatorName: generator.rawValue))
        #expect(named.generator == generator)
        #expect(named.seed == 31)
        #expect(Self.stream(named) == Self.stream(RandomSource(seed: 31, generator: generator)))
    }

    @Test("different generator types give different streams for one seed")
    func generatorsDiffer() {
        let streams = RandomSource.Generator.allCases.map { Self.stream(RandomSource(seed: 31, generator: $0), count: 20) }
        #expect(Set(streams).count == streams.count)
    }

    @Test("an unknown generator name gives nil", arguments: ["", "mt", "MT19937 ", "random", "mt19937x"])
    func unknownName(name: String) {
        #expect(RandomSource(seed: 1, generatorName: name) == nil)
    }
}
