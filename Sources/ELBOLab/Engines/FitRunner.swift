import Foundation
import Dispatch

/// One logged row of a curve (per-point nats).
public struct CurveRow: Sendable, Equatable {
    /// Iterations done (0: the starting point).
    public var iteration: Int
    /// Sweeps over the data so far, in units of N point-visits.
    public var dataPasses: Double
    /// Gradient evaluations so far.
    public var gradientEvaluations: Int
    /// Training seconds so far, scoring excluded.
    public var seconds: Double
    /// The exact ELBO, log-likelihood and gaps of the iterate.
    public var score: Score
}

/// Why a fit stopped.
public enum StopReason: String, Sendable, Codable {
    /// The exact ELBO improved by less than the tolerance over the window, or a solver over
    /// the whole objective reported that it converged or could make no further progress
    /// (``FitResult/solverStatus`` says which).
    case converged
    /// The iteration cap was reached.
    case iterations
    /// The time cap was reached.
    case time
    /// A numerical fault (the error is kept in ``FitResult/fault``).
    case fault
    /// The user interrupted the run.
    case interrupted
    /// Nothing to iterate (the closed-form MLE).
    case closedForm = "closed-form"
}

/// Everything a fit produced.
public struct FitResult: Sendable {
    /// The options the fit ran with.
    public var options: FitOptions
    /// Every logged row, in order.
    public var curve: [CurveRow]
    /// The model θ at the last logged row.
    public var model: LinearGaussianModel
    /// The closed-form MLE under the same constraints.
    public var mle: MaximumLikelihoodFit
    /// Why the fit stopped.
    public var stopReason: StopReason
    /// The fault that stopped the run, if any.
    public var fault: String?
    /// The q of the last logged row (with ``model``, what the run ends with).
    public var posteriors: GaussianPosteriors? = nil
    /// The status the quasi-Newton solver reported at the last step, nil where the strategy runs none.
    public var solverStatus: SolverStatus? = nil
    /// How many points' minimisations ended in each status in the last per-point BFGS E-step, if any.
    public var pointStatusCounts: SolverStatusCounts? = nil

    /// The last logged row.
    public var final: CurveRow? { curve.last }

    /// Training seconds until the exact ELBO first came within `epsilon` nats/point of the MLE,
    /// at logged rows; nil when it never did.
    public func secondsTo(within epsilon: Double) -> Double? {
        curve.first { mle.logLikelihood - FitRunner.tracked($0.score, options) <= epsilon }?.seconds
    }

    /// Iterations until within `epsilon` of the MLE, at logged rows.
    public func iterationsTo(within epsilon: Double) -> Int? {
        curve.first { mle.logLikelihood - FitRunner.tracked($0.score, options) <= epsilon }?.iteration
    }
}

/// Runs an engine on a schedule, scores it with the one exact scorer, and stops by the rule.
public struct FitRunner {
    /// Progress, called after every logged row.
    public var progress: (@Sendable (CurveRow) -> Void)?
    /// Checked between steps; true stops the run as interrupted.
    public var shouldStop: (@Sendable () -> Bool)?

    /// A runner that calls `progress` after each logged row and stops, as interrupted, when `shouldStop` returns true.
    public init(progress: (@Sendable (CurveRow) -> Void)? = nil, shouldStop: (@Sendable () -> Bool)? = nil) {
        self.progress = progress
        self.shouldStop = shouldStop
    }

    /// Whether iteration `t` is logged: every iteration up to 10, then about 20 a decade.
    static func isLogged(_ t: Int, every: Int?) -> Bool {
        if let every { return t % max(1, every) == 0 }
        if t <= 10 { return true }
        return Int((20 * log10(Double(t))).rounded(.down)) > Int((20 * log10(Double(t - 1))).rounded(.down))
    }

    /// Fits `data` as `options` say.
    public func fit(_ data: Dataset, options: FitOptions) throws -> FitResult {
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: options.latent, constraints: options.constraints)
        let engine = try makeEngine(options, data: data, maximumLikelihood: mle)
        var result = FitResult(options: options, curve: [], model: engine.model, mle: mle,
                               stopReason: options.strategy.offers(.iterations) ? .iterations : .closedForm, fault: nil)
        var passes = 0.0, gradients = 0, seconds = 0.0
        func record(_ t: Int) throws {
            let q = try engine.posteriors()
            let score = try Scorer.score(data: data, model: engine.model, q: q)
            guard score.elbo.isFinite && score.logLikelihood.isFinite else {
                throw NumericalFault(engine: engine.name, iteration: t, quantity: "ELBO", detail: "is \(score.elbo) (log-likelihood \(score.logLikelihood))")
            }
            let row = CurveRow(iteration: t, dataPasses: passes, gradientEvaluations: gradients, seconds: seconds, score: score)
            let best = result.curve.map { FitRunner.tracked($0.score, options) }.max()
            result.curve.append(row)
            result.model = engine.model
            result.posteriors = q
            progress?(row)
            let now = FitRunner.tracked(score, options)
            if let best, best - now > FitRunner.divergenceMargin(best) {
                throw NumericalFault(engine: engine.name, iteration: t, quantity: options.resolvedObjective == .iwae ? "log-likelihood" : "ELBO",
                                     detail: "fell from \(formatNumber(best)) to \(formatNumber(now)) nats/point: the optimiser diverged (lower the learning rate)")
            }
        }
        do {
            try record(0)
            let maxIterations = options.strategy.offers(.iterations) ? options.resolvedIterations : 0
            let tolerance = options.resolvedTolerance
            var t = 0
            while t < maxIterations {
                if shouldStop?() == true {
                    // Log where the run stands, so the curve ends at the interruption.
                    if result.curve.last?.iteration != t { try record(t) }
                    result.stopReason = .interrupted
                    break
                }
                let start = DispatchTime.now().uptimeNanoseconds
                let work = try engine.step()
                seconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
                t += 1
                passes += work.dataPasses
                gradients += work.gradientEvaluations
                if let status = work.solverStatus { result.solverStatus = status }
                if let counts = work.pointStatusCounts { result.pointStatusCounts = counts }
                // A solver over the whole objective that converged or stalled: further steps change nothing.
                let finished = work.finishesRun
                let last = t == maxIterations || seconds >= options.maxSeconds || finished
                if FitRunner.isLogged(t, every: options.logEvery) || last {
                    try record(t)
                    if converged(result.curve, window: options.resolvedWindow, tolerance: tolerance, settled: !options.isStochastic,
                                 value: { FitRunner.tracked($0.score, options) }) {
                        result.stopReason = .converged
                        break
                    }
                }
                if finished { result.stopReason = .converged; break }
                if seconds >= options.maxSeconds { result.stopReason = .time; break }
            }
        } catch let fault as NumericalFault {
            result.stopReason = .fault
            result.fault = fault.description
        }
        return result
    }

    /// The exact figure the stop rule, the divergence check and the times to tolerance follow:
    /// the ELBO, or for `--objective iwae` (whose q is not trained to maximise the ELBO, which
    /// falls while θ climbs) the log-likelihood at θ, which L_K tends to.
    static func tracked(_ score: Score, _ options: FitOptions) -> Double {
        options.resolvedObjective == .iwae ? score.logLikelihood : score.elbo
    }

    /// How far below its best the ELBO may fall before the run counts as diverged:
    /// 1 nat/point plus 1% of the best, far beyond Monte Carlo jitter or Adam's overshoot.
    static func divergenceMargin(_ best: Double) -> Double { 1 + 0.01 * abs(best) }

    /// The best ELBO of the last `window` rows beats the best before them by less than `tolerance`;
    /// with `settled` (exact objectives, where the curve is not noise), also the last `window`
    /// rows and the one before them lie within `tolerance` of each other, so that a curve that
    /// falls or swings (Adam overshooting) is not taken for a converged one.
    func converged(_ curve: [CurveRow], window: Int, tolerance: Double, settled: Bool = false,
                   value: (CurveRow) -> Double = { $0.score.elbo }) -> Bool {
        guard curve.count > window else { return false }
        let split = curve.count - window
        let before = curve[..<split].map(value).max() ?? -.infinity
        let recent = curve[split...].map(value)
        guard (recent.max() ?? -.infinity) - before < tolerance else { return false }
        guard settled else { return true }
        let span = curve[(split - 1)...].map(value)
        return (span.max() ?? 0) - (span.min() ?? 0) < tolerance
    }
}
