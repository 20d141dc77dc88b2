import Foundation

/// Polyak–Ruppert averaging of an engine's iterates: it steps the engine it wraps and reports
/// the weighted average of θ = (W, b, s2) and of every q_n = N(m_n, diag(exp ℓ_n)) over the
/// iterates so far, which is what the scorer then scores. Averaging damps the jitter that
/// Monte Carlo gradients leave in the iterates without shrinking the steps themselves.
///
/// The weights grow like t^η (polynomial-decay averaging, Shamir & Zhang 2013):
/// `x̄_t = x̄_{t−1} + (η + 1)/(t + η) · (x_t − x̄_{t−1})`. η = 0 is the plain average of all
/// iterates; a larger η forgets the early transient sooner (the average lags the iterate by
/// about t/(η + 2) steps). For the linear encoder, m_n and ℓ_n are affine in φ, so averaging
/// them is averaging φ.
final class AveragedEngine: InferenceEngine {
    let inner: InferenceEngine
    let power: Double
    private var count = 0
    private var averageModel: LinearGaussianModel
    private var averageMeans = Matrix(rows: 0, cols: 0)
    private var averageLogVariances = Matrix(rows: 0, cols: 0)

    init(_ inner: InferenceEngine, power: Double) {
        precondition(power >= 0)
        self.inner = inner
        self.power = power
        averageModel = inner.model
    }

    var name: String { inner.name }

    var model: LinearGaussianModel { count == 0 ? inner.model : averageModel }

    func posteriors() throws -> GaussianPosteriors {
        if count == 0 { return try inner.posteriors() }
        return GaussianPosteriors(means: averageMeans, family: .diagonal,
                                  scales: Matrix(rows: averageMeans.rows, cols: averageMeans.cols,
                                                 storage: averageLogVariances.storage.map { exp($0) }))
    }

    func step() throws -> StepWork {
        var work = try inner.step()
        // The average still moves after the iterate stops: the solver's status cannot end the run.
        work.solverCoversObjective = false
        let q = try inner.posteriors()
        precondition(q.family == .diagonal, "makeEngine admits a diagonal q only")
        count += 1
        let theta = inner.model
        if count == 1 {
            averageModel = theta
            averageMeans = q.means
            averageLogVariances = Matrix(rows: q.means.rows, cols: q.means.cols)
        }
        let w = (power + 1) / (Double(count) + power)   // 1 at the first step
        Self.blend(&averageModel.loadings.storage, theta.loadings.storage, weight: w)
        Self.blend(&averageModel.offset, theta.offset, weight: w)
        averageModel.noiseVariance += w * (theta.noiseVariance - averageModel.noiseVariance)
        Self.blend(&averageMeans.storage, q.means.storage, weight: w)
        // ℓ_n; a shared q (one variance row for every point) is spread over the rows.
        let j = q.means.cols, shared = q.isShared
        averageLogVariances.storage.withUnsafeMutableBufferPointer { a in
            q.scales.storage.withUnsafeBufferPointer { s in
                for i in a.indices { a[i] += w * (log(s[shared ? i % j : i]) - a[i]) }
            }
        }
        return work
    }

    /// `average += w (x − average)`.
    private static func blend(_ average: inout [Double], _ x: [Double], weight w: Double) {
        for i in average.indices { average[i] += w * (x[i] - average[i]) }
    }
}
