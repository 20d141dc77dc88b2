// elbolab-bench: ELBOLab's performance report (`make bench`).
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ELBOLab

let usage = """
usage: elbolab-bench [--output DIR] [--quick] [--synth CSV] [--sections LIST]

Benchmarks ELBOLab and writes DIR/bench.json and DIR/bench.md (the Markdown report is also
printed on standard output; progress goes to standard error).

  --output DIR      where bench.json and bench.md go (default results/bench; created if missing)
  --quick           a short run (smaller sizes, 1-2 s caps; about 40 s)
  --synth CSV       the peers' synth data (default ../shared/peers/data/synth_d20_j3_n5000.csv,
                    skipped when missing)
  --sections LIST   comma-separated subset of: convergence,throughput,threads,memory,normals,iwae
                    (default all)
  -h, --help        this text

Sections:
  convergence  time and iterations to 0.1/0.01/0.001 nats/point below the MLE, steps/s and
               the final gap, for em, per-datapoint, amortized, joint with default settings and
               with the notes' Monte Carlo method, on the synth file and simulated N = 10^3…10^6
               (D = 20, J = 3), each fit capped in training seconds
  throughput   steps/s of the full-batch joint reparam step on synth (vector kernels vs portable);
               GFLOP/s of one full-batch joint step (N = 10^5, D = 100, J = 10) against a dgemm
               roofline on the step's own product shapes; square dgemm; OpenBLAS vs libgslcblas
  threads      ParallelSettings.threads = 1 vs 2: per-datapoint BFGS E-step, the scorer, the joint step
  memory       peak RSS of a child process that simulates N = 10^6, D = 100 and fits it
  normals      ns per standard normal draw: RandomSource against gsl_ran_gaussian_ziggurat and
               gsl_rng_get, mt19937 and taus2
  iwae         steps/s of the joint IWAE step on synth at K = 1, 10, 100 (one-pass kernel vs the
               reference route), and seconds to 0.01/0.001 nats/point at K = 10, reparam and dreg,
               over several seeds

Example:
  elbolab-bench --quick --output /tmp/bench
"""

struct Arguments {
    var output = "results/bench"
    var quick = false
    var synth: String? = "../shared/peers/data/synth_d20_j3_n5000.csv"
    var sections: Set<String> = ["convergence", "throughput", "threads", "memory", "normals", "iwae"]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(("elbolab-bench: " + message + "\n").data(using: .utf8)!)
    exit(2)
}

func parseArguments() -> Arguments {
    var args = Arguments()
    var it = CommandLine.arguments.dropFirst().makeIterator()
    let known: Set<String> = ["convergence", "throughput", "threads", "memory", "normals", "iwae"]
    while let a = it.next() {
        switch a {
        case "-h", "--help":
            print(usage)
            exit(0)
        case "--quick": args.quick = true
        case "--output":
            guard let v = it.next() else { fail("--output needs a folder") }
            args.output = v
        case "--synth":
            guard let v = it.next() else { fail("--synth needs a CSV path") }
            args.synth = v
        case "--sections":
            guard let v = it.next() else { fail("--sections needs a list") }
            let s = Set(v.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
            if let bad = s.subtracting(known).first { fail("unknown section '\(bad)' (known: \(known.sorted().joined(separator: ", ")))") }
            args.sections = s
        case "--memory-probe":
            guard let n = it.next().flatMap(Int.init), let d = it.next().flatMap(Int.init) else { fail("--memory-probe N D") }
            do { try MemoryBench.probe(count: n, dimension: d) } catch { fail("\(error)") }
            exit(0)
        default:
            fail("unknown argument '\(a)'\n\n" + usage)
        }
    }
    return args
}

func machineDescription() -> String {
    let cpu = readProcFile("/proc/cpuinfo")?
        .split(separator: "\n").first { $0.hasPrefix("model name") }
        .flatMap { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } } ?? "unknown CPU"
    return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores"
}

let arguments = parseArguments()
let benchStart = now()
var markdown: [String] = []
var json: [(String, JSON)] = []

do {
    try AtomicFile.makeFolder(arguments.output)
} catch { fail("\(error)") }

let started = ISO8601DateFormatter().string(from: Date())
let header = """
# ELBOLab benchmarks

\(arguments.quick ? "Quick run" : "Full run"), \(started), \(machineDescription()); OpenBLAS `\(blasConfiguration())`;
ELBOLab block loops on \(ParallelSettings.threads) threads unless a row says otherwise; load average at start \(loadAverage())
(every figure is wall time on a shared machine: other work running meanwhile slows it).
"""
print(header + "\n")
markdown.append(header)

@MainActor func emit(_ title: String, _ body: String) {
    let text = "## " + title + "\n\n" + body
    print(text)
    fflush(nil)
    markdown.append(text)
}

do {
    // The memory probe runs first, in a child, while this process is still small (see MemoryBench).
    let memory = arguments.sections.contains("memory") ? try MemoryBench.run(quick: arguments.quick) : nil
    if arguments.sections.contains("convergence") {
        var synth: String? = nil
        if let path = arguments.synth {
            if FileManager.default.fileExists(atPath: path) { synth = path } else { note("convergence: \(path) not found; synth skipped") }
        }
        let t0 = now()
        let cases = try ConvergenceBench.cases(quick: arguments.quick, synthPath: synth)
        var rows: [ConvergenceRow] = []
        for c in cases {
            for m in Method.all {
                note("convergence: \(c.label) N=\(c.data.count) \(m.strategy.rawValue) (\(m.kind))")
                rows.append(ConvergenceBench.run(c, method: m))
            }
        }
        var body = ConvergenceBench.table(rows).markdown + "\n\n"
        body += "`default`: FitOptions(strategy:latent:) as is. `notes`: joint and amortized with gradient reparam, 1 sample "
        body += "(analytic KL); per-datapoint with the Adam E-step. s→ε and iters→ε: training seconds (scoring excluded) and "
        body += "iterations until the exact ELBO is first within ε nats/point of the closed-form MLE log-likelihood, read at "
        body += "the runner's logged rows (every iteration to 10, then about 20 a decade, so up to ~12% late). "
        body += "steps/s = iterations / training seconds. Caps per fit: "
        body += cases.map { "\($0.label == "synth" ? "synth" : sizeLabel($0.data.count)) \(formatNumber($0.maxSeconds)) s" + ($0.iterations.map { " / \($0) its" } ?? "") }.joined(separator: ", ")
        body += "; `stop` says which ended the run. Simulated data: W, b ~ N(0, 1), s2 = 0.5, seed 1, D = 20, J = 3. "
        body += "Section wall time \(fixed(now() - t0, 1)) s.\n"
        emit("1. Time to tolerance and steps per second", body)
        json.append(("convergence", ConvergenceBench.json(rows)))
    }
    if arguments.sections.contains("throughput") {
        let t0 = now()
        let synth = arguments.synth.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        let r = try ThroughputBench.run(quick: arguments.quick, synthPath: synth)
        emit("2. Throughput: GFLOP/s and the BLAS behind it", r.markdown + "Section wall time \(fixed(now() - t0, 1)) s.\n")
        json.append(("throughput", r.json))
    }
    if arguments.sections.contains("threads") {
        let t0 = now()
        let r = try ThreadBench.run(quick: arguments.quick)
        emit("3. Thread scaling (ParallelSettings.threads 1 vs 2)", r.markdown + "Section wall time \(fixed(now() - t0, 1)) s.\n")
        json.append(("threads", r.json))
    }
    if let r = memory {
        emit("4. Peak memory", r.markdown)
        json.append(("memory", r.json))
    }
    if arguments.sections.contains("normals") {
        let t0 = now()
        let r = NormalsBench.run(quick: arguments.quick)
        emit("5. Standard normal draws", r.markdown + "Section wall time \(fixed(now() - t0, 1)) s.\n")
        json.append(("normals", r.json))
    }
    if arguments.sections.contains("iwae") {
        let t0 = now()
        let synth = arguments.synth.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        let r = try ImportanceWeightedBench.run(quick: arguments.quick, synthPath: synth)
        emit("6. The importance-weighted bound: IWAE step rate and time to tolerance", r.markdown + "Section wall time \(fixed(now() - t0, 1)) s.\n")
        json.append(("iwae", r.json))
    }
} catch {
    fail("\(error)")
}

let total = now() - benchStart
let footer = "Total bench wall time: \(fixed(total, 1)) s; load average at the end \(loadAverage())."
print(footer)
markdown.append(footer + "\n")
let document: JSON = .object([
    ("started", .string(started)), ("quick", .bool(arguments.quick)), ("machine", .string(machineDescription())),
    ("openblas", .string(blasConfiguration())), ("threads", jint(ParallelSettings.threads)),
    ("total_seconds", jnum(total)), ("load_average_end", .string(loadAverage())),
] + json)
do {
    try AtomicFile.write(markdown.joined(separator: "\n"), to: arguments.output + "/bench.md")
    try AtomicFile.write(document.text() + "\n", to: arguments.output + "/bench.json")
    note("wrote \(arguments.output)/bench.md and bench.json")
} catch { fail("\(error)") }
