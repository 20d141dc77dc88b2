import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// Requests too large for the machine (issue 15): refused in one line before anything large is
// allocated, with overflow-checked sizes; an allocation the system refuses anyway is an error
// too, not a trap.

/// One refused request: non-zero exit below 128 (no signal), one stderr line with `mentions`, no file.
private func expectRefused(_ arguments: [String], environment: [String: String] = [:], setUp: (URL) throws -> Void = { _ in },
                           mentions: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
    try withTemporaryFolder { folder in
        try setUp(folder)
        let before = listing(of: folder)
        let run = try runHostile(arguments, in: folder, environment: environment)
        #expect(run.status != 0 && run.status < 128, "exit \(run.status): \(run.stderr)", sourceLocation: sourceLocation)
        #expect(run.stderrLines.count == 1, "\(run.stderr)", sourceLocation: sourceLocation)
        for m in mentions { #expect(run.stderr.contains(m), "\(run.stderr) does not mention \(m)", sourceLocation: sourceLocation) }
        #expect(listing(of: folder) == before, sourceLocation: sourceLocation)
    }
}

@Suite("Memory budget")
struct MemoryBudgetTests {
    @Test("sizes: K, M, G, T are powers of 1024; nonsense and overflow are nil")
    func sizes() {
        #expect(MemoryBudget.parseSize("500M") == 500 << 20)
        #expect(MemoryBudget.parseSize("8G") == 8 << 30)
        #expect(MemoryBudget.parseSize("2tb") == 2 << 40)
        #expect(MemoryBudget.parseSize("1500000000") == 1_500_000_000)
        for bad in ["", "abc", "0", "-5M", "1.5G", "9999999999T", "٣M"] { #expect(MemoryBudget.parseSize(bad) == nil, "\(bad)") }
    }

    @Test("estimates: overflow makes the total nil and the request refused, never wrapped")
    func overflow() throws {
        var e = MemoryEstimate()
        e.add("data", doubles: 1 << 40, 1 << 20)   // 2⁶³ bytes: one past Int.max
        #expect(e.parts[0].bytes == nil && e.total == nil)
        var f = MemoryEstimate()
        f.add("a", bytes: Int.max)
        f.add("b", bytes: 1)
        #expect(f.total == nil)
        let budget = MemoryBudget(limit: .max, source: "no limit")
        #expect(throws: InputError("r: needs more than 9.22 EB of memory (the size overflows), more than the 9.22 EB of no limit: h")) {
            try budget.check(e, request: "r", hint: "h")
        }
        let options = FitOptions(strategy: .perDatapoint, latent: 3)
        #expect(options.memoryEstimate(count: 1 << 62, dimension: 4).total == nil)
        #expect(options.memoryEstimate(count: 1000, dimension: 10).total != nil)
    }

    @Test("the fit estimate counts the data, the per-point state and the scorer", arguments: [Strategy.mle, .em, .perDatapoint, .amortized, .joint])
    func fitEstimate(_ strategy: Strategy) throws {
        let n = 10_000, d = 50, j = 4
        let e = FitOptions(strategy: strategy, latent: j).memoryEstimate(count: n, dimension: d)
        let parts = Dictionary(uniqueKeysWithValues: e.parts.map { ($0.name, $0.bytes ?? -1) })
        #expect(parts["data"] == n * d * 8)
        #expect(parts["scoring buffers"] == n * (4 * j + 8) * 8)
        #expect((parts["per-point state"] != nil) == (strategy != .mle && strategy != .em))
        #expect(try #require(e.total) >= n * d * 8 + n * j * 8)
    }

    @Test("the machine's memory is known, and --max-memory / ELBOLAB_MAX_MEMORY replace it")
    func resolved() throws {
        let machine = MemoryBudget.machine
        #expect(machine.limit > 1 << 26 && machine.limit < Int.max)
        let given = try MemoryBudget.resolved(maxMemory: "3G")
        #expect(given.limit == 3 << 30 && given.source == "--max-memory 3G")
        #expect(throws: InputError.self) { try MemoryBudget.resolved(maxMemory: "lots") }
    }

    @Test("simulate with 10¹² points: one line, no trap, no file")
    func simulateHuge() throws {
        try expectRefused(["simulate", "--dim", "20", "--latent", "3", "--count", "1000000000000", "--noise-variance", "0.5", "--output", "d.csv"],
                          mentions: ["Error: simulate --count 1000000000000 --dim 20: needs about 1.14 PB", "data 160 TB", "of physical memory", "raise --max-memory"])
        try expectRefused(["simulate", "--dim", "100000", "--latent", "3", "--count", "100000", "--noise-variance", "0.5", "--output", "d.csv"],
                          mentions: ["needs about", "data 80.0 GB"])
        try expectRefused(["simulate", "--dim", "1000", "--latent", "3", "--count", "100000000000000000", "--noise-variance", "0.5", "--output", "d.csv"],
                          mentions: ["the size overflows"])
    }

    @Test("a spec whose data.count is 10¹², and a scaling spec whose counts add up past the limit")
    func specHuge() throws {
        let big = #"{"name": "big", "data": {"dim": 20, "latent": 3, "count": 1000000000000, "noise-variance": 0.5}, "seeds": [1], "runs": [{"label": "em", "strategy": "em"}]}"#
        try expectRefused(["run", "spec.json", "--output", "out", "--no-plots"], setUp: { try writeFile(big, named: "spec.json", in: $0) },
                          mentions: ["spec.json: data N = 1000000000000, D = 20", "needs about", "of physical memory", "data.count"])
        let scaling = #"{"name": "sc", "kind": "scaling", "data": {"dim": 10, "latent": 2, "noise-variance": 0.5}, "counts": [100000, 200000], "seeds": [1, 2], "runs": [{"label": "a", "strategy": "per-datapoint"}]}"#
        try expectRefused(["run", "spec.json", "--output", "out", "--no-plots", "--max-memory", "20M"],
                          setUp: { try writeFile(scaling, named: "spec.json", in: $0) },
                          mentions: ["data N = 100000 + 200000, D = 10", "running jobs' state", "of --max-memory 20M"])
    }

    @Test("fit refuses from the line count, before reading the numbers; the environment sets the limit too")
    func fitTooLarge() throws {
        let data: (URL) throws -> Void = { try writeFile(CSV.text(of: simulate(randomModel(dimension: 8, latent: 2, noiseVariance: 0.5), count: 50_000)), named: "d.csv", in: $0) }
        let fit = ["fit", "--data", "d.csv", "--latent", "2", "--strategy", "per-datapoint", "--output", "out", "--quiet"]
        try expectRefused(fit + ["--max-memory", "40M"], setUp: data,
                          mentions: ["Error: d.csv: up to 50000 rows × 8 columns for fit --strategy per-datapoint --latent 2: needs about", "per-point state 3.20 MB", "of --max-memory 40M"])
        try expectRefused(fit, environment: ["ELBOLAB_MAX_MEMORY": "40M"], setUp: data, mentions: ["of ELBOLAB_MAX_MEMORY 40M"])
        try expectRefused(["loglik", "--data", "d.csv", "--params", "p.json", "--max-memory", "10K"], setUp: { folder in
            try data(folder)
            try writeFile(ParamsFile.json(randomModel(dimension: 8, latent: 2, noiseVariance: 0.5)).text(), named: "p.json", in: folder)
        }, mentions: ["d.csv: up to 50000 rows × 8 columns for loglik: needs about"])
    }

    @Test("an allocation the system refuses is one line too (simulated by ELBOLAB_REFUSE_ALLOCATIONS_ABOVE)")
    func allocationRefused() throws {
        let env = ["ELBOLAB_REFUSE_ALLOCATIONS_ABOVE": "100K"]
        try expectRefused(["simulate", "--dim", "10", "--latent", "2", "--count", "10000", "--noise-variance", "0.5", "--output", "d.csv"],
                          environment: env, mentions: ["simulate --count 10000 --dim 10: the system refused to allocate 800 kB"])
        try expectRefused(["fit", "--data", "d.csv", "--latent", "2", "--strategy", "em", "--output", "out"], environment: env, setUp: {
            try writeFile(CSV.text(of: simulate(randomModel(dimension: 10, latent: 2, noiseVariance: 0.5), count: 10000)), named: "d.csv", in: $0)
        }, mentions: ["d.csv: 10000 rows × 10 columns: the system refused to allocate 800 kB"])
        let spec = #"{"name": "s", "data": {"dim": 10, "latent": 2, "count": 10000, "noise-variance": 0.5}, "seeds": [1], "runs": [{"label": "em", "strategy": "em"}]}"#
        try expectRefused(["run", "spec.json", "--output", "out", "--no-plots"], environment: env, setUp: { try writeFile(spec, named: "spec.json", in: $0) },
                          mentions: ["spec.json: data N = 10000, D = 10: the system refused to allocate 800 kB"])
    }
}
