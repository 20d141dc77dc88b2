// Section 5: the cost of one standard normal draw — ELBOLab's ziggurat (RandomSource) against
// GSL's gsl_ran_gaussian_ziggurat and the raw generator word it is built on, same process.
import CGSL
import Foundation
import ELBOLab

enum NormalsBench {
    /// Draws per timed block: one joint VAE step's worth (N = 5000, J = 3).
    static let block = 15_000

    struct Row {
        let generator: RandomSource.Generator
        let route: String
        let nanoseconds: Double
    }

    /// Median ns per draw of `fill`, which writes `block` values into the buffer per call.
    static func nsPerDraw(blocks: Int, repeats: Int, _ fill: (UnsafeMutablePointer<Double>) -> Void) -> Double {
        var buffer = [Double](repeating: 0, count: block)
        let t = buffer.withUnsafeMutableBufferPointer { b in
            measure(repeats: repeats) { for _ in 0..<blocks { fill(b.baseAddress!) } }
        }
        precondition(buffer.contains { $0 != 0 })   // the work was done and kept
        return t.median / Double(blocks * block) * 1e9
    }

    static func run(quick: Bool) -> SectionReport {
        let blocks = quick ? 200 : 1_000, repeats = quick ? 5 : 9
        var rows: [Row] = []
        for generator in [RandomSource.Generator.mt19937, .taus2] {
            note("normals: \(generator.rawValue)")
            let source = RandomSource(seed: 1, generator: generator)
            let rng = gsl_rng_alloc(generator == .mt19937 ? elbolab_rng_mt19937() : elbolab_rng_taus2())!
            defer { gsl_rng_free(rng) }
            gsl_rng_set(rng, 1)
            let n = block
            func add(_ route: String, _ fill: (UnsafeMutablePointer<Double>) -> Void) {
                rows.append(Row(generator: generator, route: route, nanoseconds: nsPerDraw(blocks: blocks, repeats: repeats, fill)))
            }
            add("gsl_rng_get (one raw word)") { p in for i in 0..<n { p[i] = Double(gsl_rng_get(rng)) } }
            add("gsl_ran_gaussian_ziggurat") { p in for i in 0..<n { p[i] = gsl_ran_gaussian_ziggurat(rng, 1) } }
            add("RandomSource.gaussian()") { p in for i in 0..<n { p[i] = source.gaussian() } }
            add("RandomSource.fillGaussian") { p in source.fillGaussian(UnsafeMutableBufferPointer(start: p, count: n)) }
        }

        var table = Table(["generator", "route", "ns/draw", "vs gsl_ran_gaussian_ziggurat"], numeric: [2, 3])
        var json: [JSON] = []
        for r in rows {
            let gsl = rows.first { $0.generator == r.generator && $0.route == "gsl_ran_gaussian_ziggurat" }!.nanoseconds
            table.add([r.generator.rawValue, r.route, fixed(r.nanoseconds, 2), fixed(gsl / r.nanoseconds, 2) + "×"])
            json.append(.object([("generator", .string(r.generator.rawValue)), ("route", .string(r.route)),
                                 ("ns_per_draw", jnum(r.nanoseconds)), ("speedup_over_gsl_ziggurat", jnum(gsl / r.nanoseconds))]))
        }
        var md = table.markdown + "\n\n"
        md += "Median of \(repeats) runs of \(grouped(blocks)) blocks of \(grouped(block)) draws (one joint VAE step at "
        md += "N = 5000, J = 3) into one buffer. `gsl_rng_get` is the floor: ELBOLab's ziggurat takes about 1.04 words per "
        md += "draw (one per candidate; a further one for the 2.8% of candidates in a wedge or the tail).\n"
        return SectionReport(markdown: md, json: .array(json))
    }
}
