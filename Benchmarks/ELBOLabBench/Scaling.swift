// Sections 3 and 4: thread scaling (ParallelSettings.threads = 1 vs 2) and peak memory.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import ELBOLab

struct SectionReport {
    var markdown: String
    var json: JSON
}

enum ThreadBench {
    /// Wall seconds of `work` with ELBOLab's block loops on `threads` threads, the CPU seconds
    /// per wall second it used (how many cores were busy), and what it returned.
    static func timed<T>(threads: Int, repeats: Int, _ work: () throws -> T) rethrows -> (Timings, T, Double) {
        let saved = ParallelSettings.threads
        ParallelSettings.threads = threads
        defer { ParallelSettings.threads = saved }
        var last: T? = nil
        let cpu0 = cpuSeconds(), wall0 = now()
        let t = try measure(repeats: repeats, warmup: 0) { last = try work() }
        let busy = (cpuSeconds() - cpu0) / (now() - wall0)
        return (t, last!, busy)
    }

    /// Cores this process actually gets: two threads spin for `seconds`; CPU seconds per wall second.
    static func availableCores(seconds: Double = 0.5) -> Double {
        let cpu0 = cpuSeconds(), wall0 = now()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            let start = now()
            var x = 0.0
            while now() - start < seconds { for i in 0..<10_000 { x += Double(i).squareRoot() } }
            if x == -1 { print(x) }
        }
        return (cpuSeconds() - cpu0) / (now() - wall0)
    }

    static func run(quick: Bool) throws -> SectionReport {
        let coresBefore = availableCores()
        var table = Table(["work", "size", "1 thread s", "2 threads s", "speed-up", "cores busy (1 / 2)", "same result"],
                          numeric: [2, 3, 4, 5])
        var rows: [JSON] = []
        func add(_ name: String, _ size: String, _ one: (Timings, some Any, Double), _ two: (Timings, some Any, Double), same: Bool) {
            table.add([name, size, fixed(one.0.median), fixed(two.0.median), fixed(one.0.median / two.0.median, 2) + "×",
                       fixed(one.2, 2) + " / " + fixed(two.2, 2), same ? "yes" : "**no**"])
            rows.append(.object([("work", .string(name)), ("size", .string(size)),
                                 ("seconds_1_thread", jnum(one.0.median)), ("seconds_2_threads", jnum(two.0.median)),
                                 ("speedup", jnum(one.0.median / two.0.median)),
                                 ("cpu_per_wall_1_thread", jnum(one.2)), ("cpu_per_wall_2_threads", jnum(two.2)),
                                 ("identical_result", .bool(same))]))
        }

        // The per-datapoint BFGS E-step (GSL BFGS2 per point, fixed blocks over the cores).
        let nb = quick ? 5_000 : 20_000, steps = 3
        note("threads: per-datapoint BFGS, N=\(nb)")
        let small = ConvergenceBench.simulate(count: nb, dimension: 20, latent: 3)
        var bfgs = FitOptions(strategy: .perDatapoint, latent: 3)
        bfgs.eSolver = .bfgs
        func bfgsRun() throws -> LinearGaussianModel {
            let engine = try makeEngine(bfgs, data: small)
            for _ in 0..<steps { _ = try engine.step() }
            return engine.model
        }
        let b1 = try timed(threads: 1, repeats: quick ? 1 : 2, bfgsRun)
        let b2 = try timed(threads: 2, repeats: quick ? 1 : 2, bfgsRun)
        add("per-datapoint BFGS, \(steps) iterations (E: ≤50 BFGS2 its/point)", "N=\(grouped(nb)) D=20 J=3", b1, b2, same: b1.1 == b2.1)

        // The exact scorer on a large problem.
        let ns = quick ? 20_000 : 100_000
        note("threads: scorer, N=\(ns) D=100 J=10")
        let big = ConvergenceBench.simulate(count: ns, dimension: 100, latent: 10)
        var jointOptions = FitOptions(strategy: .joint, latent: 10)
        jointOptions.gradient = .reparam
        let engine = try makeEngine(jointOptions, data: big)
        for _ in 0..<3 { _ = try engine.step() }
        let q = try engine.posteriors(), model = engine.model
        let s1 = try timed(threads: 1, repeats: 3) { try Scorer.score(data: big, model: model, q: q) }
        let s2 = try timed(threads: 2, repeats: 3) { try Scorer.score(data: big, model: model, q: q) }
        add("Scorer.score (exact ELBO, log-likelihood, gaps)", "N=\(grouped(ns)) D=100 J=10", s1, s2, same: s1.1 == s2.1)

        // The joint step itself: OpenBLAS single-threaded, no block loops — expected to stay at 1×.
        func jointSteps() throws -> LinearGaussianModel {
            let e = try makeEngine(jointOptions, data: big)
            for _ in 0..<5 { _ = try e.step() }
            return e.model
        }
        let j1 = try timed(threads: 1, repeats: quick ? 1 : 2, jointSteps)
        let j2 = try timed(threads: 2, repeats: quick ? 1 : 2, jointSteps)
        let coresAfter = availableCores()
        add("joint step ×5 (reparam; OpenBLAS single-threaded)", "N=\(grouped(ns)) D=100 J=10", j1, j2, same: j1.1 == j2.1)

        var md = ""
        if min(coresBefore, coresAfter) < 1.8 {
            md += "**Warning: the machine was busy** — two spinning threads got \(fixed(coresBefore, 2)) cores before these "
            md += "measurements and \(fixed(coresAfter, 2)) after; the 2-thread figures below do not show ELBOLab's scaling.\n\n"
        } else {
            md += "Two spinning threads got \(fixed(coresBefore, 2)) cores before these measurements and \(fixed(coresAfter, 2)) after.\n\n"
        }
        md += table.markdown + "\n\n"
        md += "Median wall seconds (engine creation included for the engine rows). `same result`: the models "
        md += "(or scores) from 1 and 2 threads compare equal bit for bit, as the fixed-block design promises. "
        md += "`cores busy`: CPU seconds (user + system, all threads) per wall second over the timed runs — near 2 "
        md += "when both cores worked; a 2-thread row near 1 means the loop did not run in parallel, or the machine was busy.\n"
        return SectionReport(markdown: md, json: .object([("available_cores_before", jnum(coresBefore)),
                                                          ("available_cores_after", jnum(coresAfter)),
                                                          ("rows", .array(rows))]))
    }
}

enum MemoryBench {
    /// Runs in a child process (`--memory-probe N D`) so the peak is this work's alone: the
    /// model is simulated in memory, the data set built, then a joint (reparam) fit of 2
    /// iterations with the scorer. Prints one JSON object on standard output.
    static func probe(count n: Int, dimension d: Int) throws {
        let j = 10
        var stages: [(String, JSON)] = []
        func stage(_ name: String, _ seconds: Double) {
            stages.append((name, .object([("peak_rss_bytes", jnum(peakResidentBytes())), ("hwm_bytes", jnum(highWaterResidentBytes())),
                                          ("rss_bytes", jnum(currentResidentBytes())), ("seconds", jnum(seconds))])))
        }
        stage("start", 0)
        let rng = RandomSource(seed: 1)
        let truth = LinearGaussianModel.random(dimension: d, latent: j, noiseVariance: 0.5, using: rng)
        var data: Dataset? = nil
        do {
            var y: Matrix? = nil
            let ts = elapsed { y = truth.sample(count: n, using: rng) }
            stage("simulated", ts)
            // Hand the points over (Dataset consumes them), as Dataset.load does with what it read.
            let td = elapsed {
                guard let points = y else { return }
                y = nil
                data = Dataset(points: points, name: "memory probe")
            }
            stage("dataset", td)
        }
        stage("points freed", 0)
        var options = FitOptions(strategy: .joint, latent: j)
        options.gradient = .reparam
        options.iterations = 2
        options.logEvery = 1
        var fitted: FitResult? = nil
        let tf = try elapsed { fitted = try FitRunner().fit(data!, options: options) }
        stage("fitted", tf)
        let out: JSON = .object([("n", jint(n)), ("dim", jint(d)), ("latent", jint(j)),
                                 ("data_bytes", jnum(Double(n * d * 8))),
                                 ("stop_reason", .string(fitted?.stopReason.rawValue ?? "none")),
                                 ("stages", .object(stages))])
        print(out.text())
    }

    /// Starts the probe as a child of this executable and reads what it printed.
    static func run(quick: Bool) throws -> SectionReport {
        let n = quick ? 200_000 : 1_000_000, d = 100
        note("memory: child process, N=\(n) D=\(d)")
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = ["--memory-probe", String(n), String(d)]
        let pipe = Pipe()
        process.standardOutput = pipe
        let t0 = now()
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let wall = now() - t0
        guard process.terminationStatus == 0,
              let object = try JSONSerialization.jsonObject(with: output) as? [String: Any],
              let stages = object["stages"] as? [String: [String: Any]] else {
            throw InputError("memory probe failed (exit \(process.terminationStatus)): \(String(decoding: output, as: UTF8.self))")
        }
        let dataBytes = Double(n * d * 8)
        var table = Table(["stage (N=\(grouped(n)), D=\(d), in memory)", "ru_maxrss", "VmHWM", "RSS now", "ru_maxrss / N·D·8", "stage s"],
                          numeric: [1, 2, 3, 4, 5])
        var json: [(String, JSON)] = [("n", jint(n)), ("dim", jint(d)), ("data_bytes", jnum(dataBytes)), ("wall_seconds", jnum(wall))]
        var stageJSON: [(String, JSON)] = []
        let labels = [("start", "process start"), ("simulated", "points simulated (W z + b + noise)"),
                      ("dataset", "Dataset built (centred copy, S)"), ("points freed", "raw points released"),
                      ("fitted", "joint reparam fit, 2 iterations + 3 scorings")]
        for (key, label) in labels {
            guard let s = stages[key] else { continue }
            let peak = (s["peak_rss_bytes"] as? Double) ?? .nan
            let hwm = s["hwm_bytes"] as? Double
            let rss = s["rss_bytes"] as? Double
            let sec = s["seconds"] as? Double
            table.add([label, mib(peak), hwm.map(mib) ?? "—", rss.map(mib) ?? "—", fixed(peak / dataBytes, 2) + "×", fixed(sec, 2)])
            stageJSON.append((key, .object([("peak_rss_bytes", jnum(peak)), ("hwm_bytes", jnum(hwm)), ("rss_bytes", jnum(rss)),
                                            ("seconds", jnum(sec))])))
        }
        json.append(("stages", .object(stageJSON)))
        let finalPeak = (stages["fitted"]?["peak_rss_bytes"] as? Double) ?? .nan
        json.append(("peak_rss_bytes", jnum(finalPeak)))
        json.append(("peak_over_data", jnum(finalPeak / dataBytes)))
        let md = "Data as doubles: N·D·8 = \(mib(dataBytes)); peak RSS after the fit \(mib(finalPeak)) "
            + "(**\(fixed(finalPeak / dataBytes, 2))×** the data). Measured in a child process started before the other "
            + "sections (`getrusage` ru_maxrss, which Linux carries over from the parent across exec, so its start row is "
            + "the parent's peak then; VmHWM of /proc/self/status is this program image's own peak; RSS now from "
            + "/proc/self/statm), \(fixed(wall, 1)) s in all.\n\n" + table.markdown + "\n"
        return SectionReport(markdown: md, json: .object(json))
    }
}
