// Section 2: achieved GFLOP/s of one full-batch joint step next to a dgemm roofline measured
// in the same process on the step's own product shapes; square dgemm; and dgemm through the
// link order's OpenBLAS against GSL's reference libgslcblas.
#if canImport(Glibc)
import Glibc
#endif
import CGSL
import Foundation
import ELBOLab

/// The C type of `cblas_dgemm` (GSL's `gsl_cblas.h` prototype).
typealias DgemmFunction = @convention(c) (CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, Int32, Int32, Int32, Double,
                                          UnsafePointer<Double>?, Int32, UnsafePointer<Double>?, Int32, Double,
                                          UnsafeMutablePointer<Double>?, Int32) -> Void

/// One product `C (m×n) ← α op(A) op(B) + β C` with `op(A)` m×k, row-major.
struct ProductShape {
    let name: String
    let m: Int, n: Int, k: Int
    let transA: Bool, transB: Bool
    let beta: Double
    var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
}

/// Operands for one shape, filled with a fixed pseudo-random pattern.
final class Operands {
    let shape: ProductShape
    var a: [Double], b: [Double], c: [Double]
    init(_ s: ProductShape) {
        shape = s
        a = (0..<(s.m * s.k)).map { Double(($0 &* 2_654_435_761) % 1000) / 1000 - 0.5 }
        b = (0..<(s.k * s.n)).map { Double(($0 &* 40_503) % 997) / 997 - 0.5 }
        c = [Double](repeating: 0, count: s.m * s.n)
    }

    /// One call of `f` on these operands.
    func run(_ f: DgemmFunction) {
        let s = shape
        let lda = s.transA ? s.m : s.k, ldb = s.transB ? s.k : s.n
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    f(CblasRowMajor, s.transA ? CblasTrans : CblasNoTrans, s.transB ? CblasTrans : CblasNoTrans,
                      Int32(s.m), Int32(s.n), Int32(s.k), 1, pa.baseAddress, Int32(lda), pb.baseAddress, Int32(ldb),
                      s.beta, pc.baseAddress, Int32(s.n))
                }
            }
        }
    }

    /// One call through `gsl_blas_dgemm` on matrix views (the path ELBOLab's `gemm` takes).
    func runGSL() {
        let s = shape
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableBufferPointer { pc in
                    var va = gsl_matrix_const_view_array(pa.baseAddress, s.transA ? s.k : s.m, s.transA ? s.m : s.k)
                    var vb = gsl_matrix_const_view_array(pb.baseAddress, s.transB ? s.n : s.k, s.transB ? s.k : s.n)
                    var vc = gsl_matrix_view_array(pc.baseAddress, s.m, s.n)
                    _ = gsl_blas_dgemm(s.transA ? CblasTrans : CblasNoTrans, s.transB ? CblasTrans : CblasNoTrans,
                                       1, &va.matrix, &vb.matrix, s.beta, &vc.matrix)
                }
            }
        }
    }
}

/// Where a symbol resolves: the shared object mapped at its address (from /proc/self/maps;
/// Glibc's Swift module does not expose `dladdr`).
func libraryDefining(_ symbol: UnsafeMutableRawPointer?) -> String {
    guard let symbol else { return "not found" }
    let address = UInt(bitPattern: symbol)
    guard let maps = readProcFile("/proc/self/maps") else { return "unknown" }
    for line in maps.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 6 else { continue }
        let range = fields[0].split(separator: "-")
        guard range.count == 2, let lo = UInt(range[0], radix: 16), let hi = UInt(range[1], radix: 16) else { continue }
        if address >= lo && address < hi { return fields[5...].joined(separator: " ") }
    }
    return "unknown"
}

struct ThroughputReport {
    var markdown: String
    var json: JSON
}

enum ThroughputBench {
    /// The analytic flop count of one full-batch joint step with a linear encoder and the
    /// reparameterised one-sample gradient (multiply-add = 2 flops), products only:
    ///
    /// | product | shape | flops |
    /// |---|---|---|
    /// | encoder forward   (Y − ȳ)·Kᵀ  | N×D · D×2J | 4NDJ |
    /// | θ gradient        (Y − ȳ)ᵀ·Z  | D×N · N×J  | 2NDJ |
    /// | θ gradient        ZᵀZ          | J×N · N×J  | 2NJ² |
    /// | latent gradient   (Y − ȳ)·W    | N×D · D×J  | 2NDJ |
    /// | latent gradient   Z·G          | N×J · J×J  | 2NJ² |
    /// | encoder backward  Gᵀ·(Y − ȳ)   | 2J×N · N×D | 4NDJ |
    ///
    /// Total 12NDJ + 4NJ². Element-wise work (exp, z = m + σε, the gradient assembly, column
    /// sums, Adam on the O(DJ) parameters) is about 20NJ flops plus NJ Gaussian draws and NJ
    /// exponentials: not counted (about 1.5% at D = 100, J = 10).
    static func jointStepShapes(n: Int, d: Int, j: Int) -> [ProductShape] {
        [
            ProductShape(name: "encoder forward (Y−ȳ)·Kᵀ", m: n, n: 2 * j, k: d, transA: false, transB: true, beta: 0),
            ProductShape(name: "θ gradient (Y−ȳ)ᵀ·Z", m: d, n: j, k: n, transA: true, transB: false, beta: 0),
            ProductShape(name: "θ gradient ZᵀZ", m: j, n: j, k: n, transA: true, transB: false, beta: 0),
            ProductShape(name: "latent gradient (Y−ȳ)·W", m: n, n: j, k: d, transA: false, transB: false, beta: 0),
            ProductShape(name: "latent gradient Z·G", m: n, n: j, k: j, transA: false, transB: false, beta: 1),
            ProductShape(name: "encoder backward Gᵀ·(Y−ȳ)", m: 2 * j, n: d, k: n, transA: true, transB: false, beta: 0),
        ]
    }

    static func jointStepFlops(n: Int, d: Int, j: Int) -> Double {
        let nn = Double(n), dd = Double(d), jj = Double(j)
        return 12 * nn * dd * jj + 4 * nn * jj * jj
    }

    /// Median seconds of one engine step (after warm-up steps).
    static func stepSeconds(_ data: Dataset, options: FitOptions, warmup: Int, repeats: Int) throws -> Timings {
        let engine = try makeEngine(options, data: data)
        for _ in 0..<warmup { _ = try engine.step() }
        var samples: [Double] = []
        for _ in 0..<repeats { samples.append(try elapsed { _ = try engine.step() }) }
        return Timings(samples: samples)
    }

    /// Steps per second of the full-batch joint step with one reparameterised sample on `data`,
    /// with ELBOLab's vector kernels and with the portable path (`ELBOLAB_KERNELS=portable`).
    static func stepRates(_ data: Dataset, latent j: Int, repeats: Int) throws -> (kernels: Timings, portable: Timings) {
        var options = FitOptions(strategy: .joint, latent: j)
        options.gradient = .reparam
        options.samples = 1
        // Interleaved, so that a slow spell of the machine hits both alike.
        var kernels: [Double] = [], portable: [Double] = []
        for _ in 0..<repeats {
            kernels += try stepSeconds(data, options: options, warmup: 20, repeats: 200).samples
            setenv("ELBOLAB_KERNELS", "portable", 1)
            defer { unsetenv("ELBOLAB_KERNELS") }
            portable += try stepSeconds(data, options: options, warmup: 20, repeats: 200).samples
        }
        return (Timings(samples: kernels), Timings(samples: portable))
    }

    static func run(quick: Bool, synthPath: String?) throws -> ThroughputReport {
        _ = blasConfiguration()   // ELBOLab's runtime set-up: OpenBLAS single-threaded, as in every fit
        // The step rate on the peers' synth data (N = 5000, D = 20, J = 3), where NumPyro's jit-compiled
        // step is the comparison (Benchmarks/peers.sh prints it side by side).
        let synth = try synthPath.map { try Dataset.load(csv: $0) } ?? ConvergenceBench.simulate(count: 5000, dimension: 20, latent: 3)
        note("throughput: step rate on \(synthPath == nil ? "simulated 5000×20" : "synth")")
        let rates = try stepRates(synth, latent: 3, repeats: quick ? 2 : 5)
        var rateTable = Table(["joint, reparam 1 sample, full batch", "median ms", "mean ms", "steps/s (1/mean)", "min ms", "max ms"],
                              numeric: [1, 2, 3, 4, 5])
        for (label, t) in [("vector kernels (default here)", rates.kernels), ("portable path (ELBOLAB_KERNELS=portable)", rates.portable)] {
            rateTable.add([label, fixed(t.median * 1e3, 3), fixed(t.mean * 1e3, 3), fixed(1 / t.mean, 0),
                           fixed(t.min * 1e3, 3), fixed(t.max * 1e3, 3)])
        }
        let kernelGain = rates.portable.mean / rates.kernels.mean
        let n = quick ? 20_000 : 100_000, d = 100, j = 10
        let repeats = quick ? 3 : 10
        note("throughput: simulating N=\(n), D=\(d), J=\(j)")
        let data = ConvergenceBench.simulate(count: n, dimension: d, latent: j)

        // The joint step, reparameterised with one sample (the notes' method), and with the exact gradient.
        var reparam = FitOptions(strategy: .joint, latent: j)
        reparam.gradient = .reparam
        reparam.samples = 1
        let reparamStep = try stepSeconds(data, options: reparam, warmup: 2, repeats: repeats)
        let exactStep = try stepSeconds(data, options: FitOptions(strategy: .joint, latent: j), warmup: 2, repeats: repeats)
        let flops = jointStepFlops(n: n, d: d, j: j)

        // The roofline: the same products through cblas_dgemm (resolved by the link order), same process.
        let directDgemm: DgemmFunction = cblas_dgemm
        var products = Table(["product", "shape (op(A)·op(B))", "GFLOP", "dgemm ms", "GFLOP/s"], numeric: [2, 3, 4])
        var productJSON: [JSON] = []
        var gemmSeconds = 0.0, gemmFlops = 0.0, smallSeconds = 0.0
        for s in jointStepShapes(n: n, d: d, j: j) {
            let ops = Operands(s)
            let t = measure(repeats: repeats) { ops.run(directDgemm) }
            gemmSeconds += t.median
            if s.m == j || s.k == j { smallSeconds += t.median }   // ZᵀZ and Z·G: not passes over Y
            gemmFlops += s.flops
            products.add([s.name, "\(s.m)×\(s.k) · \(s.k)×\(s.n)", fixed(s.flops / 1e9, 3), fixed(t.median * 1e3, 2),
                          fixed(s.flops / t.median / 1e9, 2)])
            productJSON.append(.object([("product", .string(s.name)), ("m", jint(s.m)), ("n", jint(s.n)), ("k", jint(s.k)),
                                        ("flops", jnum(s.flops)), ("median_seconds", jnum(t.median)),
                                        ("gflops", jnum(s.flops / t.median / 1e9))]))
        }
        products.add(["**sum: the step's products alone (roofline)**", "", fixed(gemmFlops / 1e9, 3),
                      fixed(gemmSeconds * 1e3, 2), fixed(gemmFlops / gemmSeconds / 1e9, 2)])

        // The same flops with the four passes over Y merged into two (Y·[Kᵀ W] and Yᵀ·[Z G]):
        // the skinny products are bound by reading Y, so this is the floor a fused step could reach.
        var fusedSeconds = smallSeconds
        var fusedJSON: [JSON] = []
        let fused = [
            ProductShape(name: "fused (Y−ȳ)·[Kᵀ W]", m: n, n: 3 * j, k: d, transA: false, transB: false, beta: 0),
            ProductShape(name: "fused (Y−ȳ)ᵀ·[Z G]", m: d, n: 3 * j, k: n, transA: true, transB: false, beta: 0),
        ]
        for s in fused {
            let ops = Operands(s)
            let t = measure(repeats: repeats) { ops.run(directDgemm) }
            fusedSeconds += t.median
            fusedJSON.append(.object([("product", .string(s.name)), ("m", jint(s.m)), ("n", jint(s.n)), ("k", jint(s.k)),
                                      ("flops", jnum(s.flops)), ("median_seconds", jnum(t.median))]))
            products.add([s.name, "\(s.m)×\(s.k) · \(s.k)×\(s.n)", fixed(s.flops / 1e9, 3), fixed(t.median * 1e3, 2),
                          fixed(s.flops / t.median / 1e9, 2)])
        }
        products.add(["**sum with Y read twice (fused roofline)**", "", fixed(gemmFlops / 1e9, 3),
                      fixed(fusedSeconds * 1e3, 2), fixed(gemmFlops / fusedSeconds / 1e9, 2)])

        var step = Table(["joint step, full batch, N=\(grouped(n)) D=\(d) J=\(j)", "median ms", "GFLOP/s (12NDJ+4NJ²)",
                          "of roofline", "of fused roofline"], numeric: [1, 2, 3, 4])
        let roofline = gemmFlops / gemmSeconds
        for (label, t) in [("reparam, 1 sample (the notes)", reparamStep), ("exact gradient (default)", exactStep)] {
            step.add([label, fixed(t.median * 1e3, 2), fixed(flops / t.median / 1e9, 2),
                      fixed(100 * gemmSeconds / t.median, 0) + "%", fixed(100 * fusedSeconds / t.median, 0) + "%"])
        }

        // Square dgemm, and the link order: OpenBLAS (what gsl_blas_dgemm reaches) vs GSL's reference CBLAS.
        let side = quick ? 500 : 1000
        let square = Operands(ProductShape(name: "square", m: side, n: side, k: side, transA: false, transB: false, beta: 0))
        let viaGSL = measure(repeats: quick ? 3 : 5) { square.runGSL() }
        let direct = measure(repeats: quick ? 3 : 5) { square.run(directDgemm) }
        let globalSymbol = dlsym(nil, "cblas_dgemm")
        let resolved = libraryDefining(globalSymbol)
        var reference: Timings? = nil
        var referenceStepShape: Timings? = nil
        var referencePath = "libgslcblas.so.0 not found"
        let forwardShape = jointStepShapes(n: n, d: d, j: j)[0]
        let forwardOps = Operands(forwardShape)
        let forwardOpen = measure(repeats: repeats) { forwardOps.run(directDgemm) }
        if let handle = dlopen("libgslcblas.so.0", RTLD_NOW | RTLD_LOCAL), let sym = dlsym(handle, "cblas_dgemm") {
            referencePath = libraryDefining(sym)
            let ref = unsafeBitCast(sym, to: DgemmFunction.self)
            reference = measure(repeats: 1, warmup: 0) { square.run(ref) }
            referenceStepShape = measure(repeats: 1, warmup: 0) { forwardOps.run(ref) }
        }
        let squareFlops = 2 * pow(Double(side), 3)
        var blas = Table(["dgemm", "resolved in", "\(side)² ms", "\(side)² GFLOP/s", "\(grouped(n))×\(d)·\(d)×\(2 * j) GFLOP/s"], numeric: [2, 3, 4])
        blas.add(["gsl_blas_dgemm (ELBOLab's path)", "via libgsl → " + (resolved as NSString).lastPathComponent,
                  fixed(viaGSL.median * 1e3, 1), fixed(squareFlops / viaGSL.median / 1e9, 2), "—"])
        blas.add(["cblas_dgemm (link order: gsl, openblas)", (resolved as NSString).lastPathComponent,
                  fixed(direct.median * 1e3, 1), fixed(squareFlops / direct.median / 1e9, 2),
                  fixed(forwardShape.flops / forwardOpen.median / 1e9, 2)])
        if let reference, let referenceStepShape {
            blas.add(["cblas_dgemm of libgslcblas (dlsym)", (referencePath as NSString).lastPathComponent,
                      fixed(reference.median * 1e3, 1), fixed(squareFlops / reference.median / 1e9, 2),
                      fixed(forwardShape.flops / referenceStepShape.median / 1e9, 2)])
        }
        let squareRatio = reference.map { $0.median / direct.median }
        let shapeRatio = referenceStepShape.map { $0.median / forwardOpen.median }

        var md = "### Joint step rate on \(synthPath == nil ? "simulated data shaped like synth" : "synth") (N = \(synth.count), D = \(synth.dimension), J = 3)\n\n"
        md += rateTable.markdown + "\n\n"
        md += "Single-threaded, \(quick ? 2 : 5)×200 timed steps each after 20 warm-up steps, the two paths interleaved; "
        md += "steps/s is 1/mean, what a fit gets (the median hides the occasional slow step of a shared machine). The kernels are "
        md += "**\(fixed(kernelGain, 2))×** the portable path. Kernels usable on this processor: \(Kernels.usable).\n\n"
        md += "### Joint step against the dgemm roofline\n\n" + step.markdown + "\n\n"
        md += "Flops counted analytically: 12NDJ + 4NJ² = \(fixed(flops / 1e9, 3)) GFLOP per step (products only; "
        md += "the element-wise work, about 20NJ flops plus NJ Gaussian draws and NJ exponentials, is not counted). "
        md += "The roofline is the same products timed alone through `cblas_dgemm` in this process (median of \(repeats)); "
        md += "the products are skinny (2J, J ≪ D) and bound by streaming Y, so the fused roofline times the same flops "
        md += "with the four passes over Y merged into two, (Y−ȳ)·[Kᵀ W] and (Y−ȳ)ᵀ·[Z G]:\n\n"
        md += products.markdown + "\n\n"
        md += "### dgemm: OpenBLAS through the link order vs GSL's reference CBLAS\n\n" + blas.markdown + "\n\n"
        if let squareRatio, let shapeRatio {
            md += "OpenBLAS is **\(fixed(squareRatio, 1))×** faster than `libgslcblas` on the \(side)² product and "
            md += "**\(fixed(shapeRatio, 1))×** on the step's N×D·D×2J product: the module map's link order (`gsl` then "
            md += "`openblas`) is what sends `gsl_blas_dgemm` to OpenBLAS; without `openblas` in the link, or with `libgslcblas` (libgsl's own dependency) "
            md += "ahead of it, every product would run at the reference speed.\n"
        }
        md += "OpenBLAS: `\(blasConfiguration())`, \(openblas_get_num_threads()) thread(s).\n"

        let json: JSON = .object([
            ("synth_step_rate", .object([
                ("data", .string(synthPath ?? "simulated")), ("kernels_usable", .bool(Kernels.usable)),
                ("kernels_median_seconds", jnum(rates.kernels.median)), ("kernels_mean_seconds", jnum(rates.kernels.mean)),
                ("kernels_steps_per_second", jnum(1 / rates.kernels.mean)),
                ("portable_median_seconds", jnum(rates.portable.median)), ("portable_mean_seconds", jnum(rates.portable.mean)),
                ("portable_steps_per_second", jnum(1 / rates.portable.mean)),
            ])),
            ("n", jint(n)), ("dim", jint(d)), ("latent", jint(j)),
            ("step_flops", jnum(flops)), ("flop_count", .string("12NDJ + 4NJ^2 (products only)")),
            ("joint_reparam_step_median_seconds", jnum(reparamStep.median)),
            ("joint_reparam_step_gflops", jnum(flops / reparamStep.median / 1e9)),
            ("joint_exact_step_median_seconds", jnum(exactStep.median)),
            ("joint_exact_step_gflops", jnum(flops / exactStep.median / 1e9)),
            ("roofline_seconds", jnum(gemmSeconds)), ("roofline_gflops", jnum(roofline / 1e9)),
            ("reparam_fraction_of_roofline", jnum(flops / reparamStep.median / roofline)),
            ("fused_roofline_seconds", jnum(fusedSeconds)),
            ("reparam_fraction_of_fused_roofline", jnum(fusedSeconds / reparamStep.median)),
            ("products", .array(productJSON)),
            ("fused_products", .array(fusedJSON)),
            ("square_side", jint(side)),
            ("square_gsl_blas_dgemm_gflops", jnum(squareFlops / viaGSL.median / 1e9)),
            ("square_cblas_dgemm_gflops", jnum(squareFlops / direct.median / 1e9)),
            ("cblas_dgemm_resolved_in", .string(resolved)),
            ("square_gslcblas_gflops", jnum(reference.map { squareFlops / $0.median / 1e9 })),
            ("gslcblas_path", .string(referencePath)),
            ("openblas_over_gslcblas_square", jnum(squareRatio)),
            ("openblas_over_gslcblas_step_shape", jnum(shapeRatio)),
            ("openblas_config", .string(blasConfiguration())),
            ("openblas_threads", jint(Int(openblas_get_num_threads()))),
        ])
        return ThroughputReport(markdown: md, json: json)
    }
}
