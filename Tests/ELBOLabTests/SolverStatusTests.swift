import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The quasi-Newton steppers' status, and the engines and runner that keep it.
@Suite("Solver status")
struct SolverStatusTests {
    enum Kind: String, CaseIterable { case bfgs2, lbfgs }

    /// f(x) = ½ Σ aᵢ (xᵢ − cᵢ)², aᵢ = 1…5: its minimiser is c, its gradient aᵢ (xᵢ − cᵢ).
    static let curvature: [Double] = [1, 2, 3, 4, 5]
    static let centre: [Double] = [0.5, -1, 2, 0.25, -3]
    static func objective(_ x: UnsafeBufferPointer<Double>, _ g: UnsafeMutableBufferPointer<Double>) -> Double {
        var f = 0.0
        for i in 0..<x.count {
            let d = x[i] - centre[i]
            g[i] = curvature[i] * d
            f += 0.5 * curvature[i] * d * d
        }
        return f
    }

    /// ‖∇f(x)‖ from the closed form, not from the solver.
    static func gradientNorm(_ x: [Double]) -> Double {
        var sum = 0.0
        for i in 0..<x.count {
            let g = curvature[i] * (x[i] - centre[i])
            sum += g * g
        }
        return sum.squareRoot()
    }

    /// minimize, and begin/iterate, through one interface for both solvers.
    final class Solver {
        let minimize: (inout [Double], Int, Double) -> Minimization
        let begin: ([Double], Double, Int) -> Void
        let iterate: () -> SolverStatus
        let point: () -> [Double]

        init(_ kind: Kind) throws {
            switch kind {
            case .bfgs2:
                let s = try BFGSMinimizer(dimension: 5, objective: SolverStatusTests.objective)
                minimize = { s.minimize(&$0, maxIterations: $1, gradientTolerance: $2) }
                begin = { s.begin(at: $0, gradientTolerance: $1, maxIterations: $2) }
                iterate = s.iterate
                point = { s.point }
            case .lbfgs:
                let s = LBFGSMinimizer(dimension: 5, objective: SolverStatusTests.objective)
                minimize = { s.minimize(&$0, maxIterations: $1, gradientTolerance: $2) }
                begin = { s.begin(at: $0, initialStep: 0.1, gradientTolerance: $1, maxIterations: $2) }
                iterate = s.iterate
                point = { s.point }
            }
        }
    }

    @Test("a quadratic converges: the gradient test passes and the closed-form gradient agrees", arguments: Kind.allCases)
    func converges(kind: Kind) throws {
        let solver = try Solver(kind)
        var x = [Double](repeating: 0, count: 5)
        let result = solver.minimize(&x, 1000, 1e-6)
        #expect(result.status == .converged)
        #expect(result.iterations > 0 && result.iterations < 1000)
        #expect(Self.gradientNorm(x) < 1e-6, "‖∇f‖ = \(Self.gradientNorm(x))")
        // Stepping with the same test ends the same way.
        solver.begin([Double](repeating: 0, count: 5), 1e-6, .max)
        var status = SolverStatus.progressing
        for _ in 0..<1000 where status == .progressing { status = solver.iterate() }
        #expect(status == .converged)
        #expect(Self.gradientNorm(solver.point()) < 1e-6)
        // A start that passes the test already takes no iterations.
        var at = Self.centre
        #expect(solver.minimize(&at, 10, 1e-8) == Minimization(status: .converged, iterations: 0))
    }

    @Test("at its minimum (∇f = 0) the solver stalls, and stays stalled, without moving", arguments: Kind.allCases)
    func stallsAtMinimum(kind: Kind) throws {
        let solver = try Solver(kind)
        solver.begin(Self.centre, 0, .max)   // no gradient test: only a stall can end it
        #expect(solver.iterate() == .stalled)
        #expect(solver.iterate() == .stalled)
        #expect(solver.point() == Self.centre)
    }

    @Test("a cap of 1 hits the limit after one iteration", arguments: Kind.allCases)
    func iterationLimit(kind: Kind) throws {
        let solver = try Solver(kind)
        var x = [Double](repeating: 0, count: 5)
        #expect(solver.minimize(&x, 1, 1e-12) == Minimization(status: .iterationLimit, iterations: 1))
        #expect(Self.gradientNorm(x) < Self.gradientNorm([Double](repeating: 0, count: 5)))
        solver.begin([Double](repeating: 0, count: 5), 0, 2)
        #expect(solver.iterate() == .progressing)
        #expect(solver.iterate() == .iterationLimit)
    }

    @Test("per-status counts add up")
    func counts() {
        var c = SolverStatusCounts()
        for s in [SolverStatus.converged, .converged, .stalled, .iterationLimit, .progressing] { c.add(s) }
        #expect(c.converged == 2 && c.stalled == 1 && c.iterationLimit == 2 && c.total == 5)
        var d = SolverStatusCounts()
        d.add(c)
        d.add(c)
        #expect(d.total == 10 && d.converged == 4)
    }

    /// The joint strategy's quasi-Newton options with the tolerance rule off, so that only the solver stops the run.
    static func jointOptions(_ optimizer: OptimizerKind) -> FitOptions {
        var o = FitOptions(strategy: .joint, latent: 2)
        o.optimizer = optimizer
        o.tolerance = 0
        o.iterations = 20_000
        o.maxSeconds = 60
        return o
    }

    @Test("joint quasi-Newton: once the solver stalls, further steps change nothing, and the run stops there as converged",
          arguments: [OptimizerKind.lbfgs, .bfgs])
    func jointStopsOnStall(optimizer: OptimizerKind) throws {
        let data = QuasiNewtonTests.data()
        let options = Self.jointOptions(optimizer)
        let engine = try makeEngine(options, data: data)
        var t = 0, work = StepWork(dataPasses: 0, gradientEvaluations: 0)
        while t < options.iterations! && !work.finishesRun {
            work = try engine.step()
            t += 1
        }
        #expect(work.solverStatus == .stalled)
        #expect(work.finishesRun)
        let stopped = engine.model
        for _ in 0..<3 {
            let more = try engine.step()
            #expect(more.solverStatus == .stalled)
            #expect(engine.model == stopped)
        }
        let result = try FitRunner().fit(data, options: options)
        #expect(result.stopReason == .converged)
        #expect(result.solverStatus == .stalled)
        #expect(result.final?.iteration == t)
        #expect(result.summaryJSON(data: data).text().contains(SolverStatus.stalled.explanation))
    }

    @Test("amortized L-BFGS with θ held: one minimisation, stopped when it stalls")
    func heldThetaStops() throws {
        let data = QuasiNewtonTests.data()
        var options = FitOptions(strategy: .amortized, latent: 2)
        options.optimizer = .lbfgs
        options.theta = .mle
        options.tolerance = 0
        options.iterations = 20_000
        options.maxSeconds = 60
        let result = try FitRunner().fit(data, options: options)
        #expect(result.stopReason == .converged)
        #expect(result.solverStatus == .stalled)
        #expect(try #require(result.final).iteration < 20_000)
    }

    @Test("amortized BFGS2 with θ free: the solver's status is kept, but does not stop the run")
    func thetaFreeKeepsRunning() throws {
        let data = QuasiNewtonTests.data()
        var options = FitOptions(strategy: .amortized, latent: 2)
        options.optimizer = .bfgs
        options.iterations = 3
        options.tolerance = 0
        let result = try FitRunner().fit(data, options: options)
        #expect(result.stopReason == .iterations)
        #expect(result.solverStatus != nil)
        #expect(result.final?.iteration == 3)
    }

    @Test("per-point BFGS E-steps count every point's status: one iteration caps them all, many let them finish")
    func perPointCounts() throws {
        let data = QuasiNewtonTests.data()
        var options = FitOptions(strategy: .perDatapoint, latent: 2)
        options.eSolver = .bfgs
        options.eSteps = 1
        let engine = try makeEngine(options, data: data)
        let first = try #require(try engine.step().pointStatusCounts)
        // From the prior N(0, I) no point's gradient is below 1e-9 after one iteration.
        #expect(first.iterationLimit == data.count && first.total == data.count)
        options.eSteps = 500
        options.iterations = 2
        let result = try FitRunner().fit(data, options: options)
        let last = try #require(result.pointStatusCounts)
        #expect(last.total == data.count)
        #expect(last.iterationLimit == 0, "\(last)")
        #expect(result.summaryJSON(data: data).text().contains("\"point_solver_status\""))
    }
}
