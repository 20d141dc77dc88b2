// Section 5: the cost of one standard normal draw — ELBOLab's ziggurat (RandomSource) against
// GSL's gsl_ran_gaussian_ziggurat and the raw generator word it is built on, same process.
import CGSL
import Foundation
import ELBOLab

enum NormalsBench {
    /// Draws per block: one joint VAE step's worth (N = 5000, J = 3).
    static let block = 15_000

    /// One way of filling a block with `block` values.
    struct Route {
        let name: String
        let fill: (UnsafeMutablePointer<Double>) -> Void
    }

    /// The routes for one generator type, each on its own generator seeded alike.
    static func routes(_ generator: RandomSource.Generator, rng: UnsafeMutablePointer<gsl_rng>) -> [Route] {
        let source = RandomSource(seed: 1, generator: generator)
        let n = block
        return [
            Route(name: "gsl_rng_get (one raw word)") { p in for i in 0..<n { p[i] = Double(gsl_rng_get(rng)) } },
            Route(name: "gsl_ran_gaussian_ziggurat") { p in for i in 0..<n { p[i] = gsl_ran_gaussian_ziggurat(rng, 1) } },
            Route(name: "RandomSource.gaussian()") { p in for i in 0..<n { p[i] = source.gaussian() } },
            Route(name: "RandomSource.fillGaussian") { p in source.fillGaussian(UnsafeMutableBufferPointer(start: p, count: n)) },
        ]
    }

    static func run(quick: Bool) -> SectionReport {
        let blocks = quick ? 100 : 500, repeats = quick ? 11 : 31
        var table = Table(["generator", "route", "ns/draw (median)", "ns/draw (min)", "GSL ziggurat / route (median)"],
                          numeric: [2, 3, 4])
        var json: [JSON] = []
        var buffer = [Double](repeating: 0, count: block)
        for generator in [RandomSource.Generator.mt19937, .taus2] {
            note("normals: \(generator.rawValue)")
            let rng = gsl_rng_alloc(generator == .mt19937 ? elbolab_rng_mt19937() : elbolab_rng_taus2())!
            defer { gsl_rng_free(rng) }
            gsl_rng_set(rng, 1)
            let routes = routes(generator, rng: rng)
            // Routes take turns within each repeat, so load from other processes falls on all alike.
            var samples = [[Double]](repeating: [], count: routes.count)
            buffer.withUnsafeMutableBufferPointer { b in
                for route in routes { route.fill(b.baseAddress!) }   // warm-up
                for _ in 0..<repeats {
                    for (k, route) in routes.enumerated() {
                        samples[k].append(elapsed { for _ in 0..<blocks { route.fill(b.baseAddress!) } } / Double(blocks * block) * 1e9)
                    }
                }
            }
            let timings = samples.map { Timings(samples: $0) }
            let gsl = timings[1].median
            for (route, t) in zip(routes, timings) {
                table.add([generator.rawValue, route.name, fixed(t.median, 2), fixed(t.min, 2), fixed(gsl / t.median, 2) + "×"])
                json.append(.object([("generator", .string(generator.rawValue)), ("route", .string(route.name)),
                                     ("ns_per_draw_median", jnum(t.median)), ("ns_per_draw_min", jnum(t.min)),
                                     ("gsl_ziggurat_over_route", jnum(gsl / t.median))]))
            }
        }
        precondition(buffer.contains { $0 != 0 })   // the work was done and kept
        var md = table.markdown + "\n\n"
        md += "\(repeats) rounds; in each, every route fills \(grouped(blocks)) blocks of \(grouped(block)) draws (one joint "
        md += "VAE step at N = 5000, J = 3) in turn. `gsl_rng_get` is the floor: ELBOLab's ziggurat takes about 1.04 words "
        md += "per draw (one per candidate; a further one for the 2.8% of candidates in a wedge or the tail). "
        md += "`RandomSource.gaussian()` is called across the module boundary here, as any caller outside ELBOLab would.\n"
        return SectionReport(markdown: md, json: .array(json))
    }
}
