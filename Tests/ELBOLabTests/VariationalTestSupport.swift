import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Helpers for the variational and engine tests (ELBOTests, GradientTests, EstimatorTests,
/// EncoderTests, EngineTests). Everything lives in the `VT` namespace so that nothing clashes
/// with the foundation tests' `TestSupport.swift`.
///
/// The reference routes here are deliberately written without the library's numerics: dense
/// `D × D` Gaussian densities through a hand-written Cholesky factorisation, per-point loops for
/// log p(y | z), central finite differences.
enum VT {
    // MARK: Named tolerances

    /// Central-difference step, relative to the coordinate: h = fdStep · max(1, |x|).
    ///
    /// Truncation error is h²|f'''|/6 ≈ 2e-11 |f'''|, rounding error ε|f|/h ≈ 2e-11 |f| for the
    /// O(1–100) objectives used here, so differences agree with exact gradients to ~1e-8.
    static let fdStep = 1e-5
    /// Analytic gradient vs central differences, relative to 1 + |g| per coordinate: two orders of
    /// magnitude above the finite-difference error, many orders below any wrong or missing term
    /// (which are O(1) on these problems).
    static let fdTolerance = 1e-6
    /// Exact identities between closed forms on O(1–100) quantities in double precision.
    static let identityTolerance = 1e-10
    /// Monte Carlo comparisons: this many standard errors.
    static let standardErrors = 4.0
    /// A "zero" gradient at a closed-form optimum, relative to the gradient scale at a random
    /// point (the closed forms are exact; only rounding in J × J solves remains).
    static let stationaryTolerance = 1e-8

    // MARK: Problems

    /// A data set and a (different) model to evaluate things at.
    struct Problem {
        let data: Dataset
        let model: LinearGaussianModel
        /// The model the data were simulated from.
        let truth: LinearGaussianModel
    }

    /// Simulated data, unstandardised (column i scaled by 1 + i/2 and shifted by 2i) so that the
    /// centring and standardising code paths are exercised, and a random evaluation model that
    /// is not the generating one (so gradients are far from zero).
    static func problem(count n: Int, dimension d: Int, latent j: Int, seed: UInt64,
                        noise: Double = 0.5) -> Problem {
        let rng = RandomSource(seed: seed)
        let truth = LinearGaussianModel.random(dimension: d, latent: j, noiseVariance: noise, using: rng)
        var y = truth.sample(count: n, using: rng)
        for r in 0..<n { for i in 0..<d { y[r, i] = (1 + 0.5 * Double(i)) * y[r, i] + 2 * Double(i) } }
        let data = Dataset(points: y, name: "vt-sim")
        var w = Matrix(rows: d, cols: j)
        rng.fillGaussian(&w.storage)
        var b = data.mean
        for i in 0..<d { b[i] += 0.5 * rng.gaussian() }
        let model = LinearGaussianModel(loadings: w, offset: b, noiseVariance: 0.6 + 0.4 * rng.uniform())
        return Problem(data: data, model: model, truth: truth)
    }

    /// The engines' data: D = 8, J = 2, N = 1000 from a random model with s2 = 0.5.
    static func engineData(count n: Int = 1000, seed: UInt64 = 2024) -> Dataset {
        let rng = RandomSource(seed: seed)
        let truth = LinearGaussianModel.random(dimension: 8, latent: 2, noiseVariance: 0.5, using: rng)
        return Dataset(points: truth.sample(count: n, using: rng), name: "vt-engine")
    }

    /// A random q: means N(0, 1); diagonal variances exp(0.5 N(0, 1)); full Cholesky factors
    /// with diagonal exp(0.3 N(0, 1)) and off-diagonal 0.4 N(0, 1). One covariance per point.
    static func randomPosteriors(_ family: GaussianPosteriors.Family, count n: Int, latent j: Int,
                                 rng: RandomSource) -> GaussianPosteriors {
        var m = Matrix(rows: n, cols: j)
        rng.fillGaussian(&m.storage)
        switch family {
        case .diagonal:
            var v = Matrix(rows: n, cols: j)
            for i in v.storage.indices { v.storage[i] = exp(0.5 * rng.gaussian()) }
            return GaussianPosteriors(means: m, family: .diagonal, scales: v)
        case .full:
            var l = Matrix(rows: n, cols: j * j)
            for r in 0..<n {
                for a in 0..<j {
                    for b in 0...a { l[r, a * j + b] = a == b ? exp(0.3 * rng.gaussian()) : 0.4 * rng.gaussian() }
                }
            }
            return GaussianPosteriors(means: m, family: .full, scales: l)
        }
    }

    /// The data set of the given rows of `data` (its own mean).
    static func subset(_ data: Dataset, rows: [Int]) -> Dataset {
        let p = data.points
        return Dataset(points: Matrix(rows.map { p.row($0) }), name: "subset")
    }

    // MARK: Flat views

    /// [W row-major, b, s2].
    static func flat(_ g: ModelGradient) -> [Double] { g.loadings.storage + g.offset + [g.noiseVariance] }
    static func flat(_ m: LinearGaussianModel) -> [Double] { m.loadings.storage + m.offset + [m.noiseVariance] }
    /// The inverse of ``flat(_:)-(LinearGaussianModel)`` for a model shaped like `like`.
    static func model(_ x: [Double], like m: LinearGaussianModel) -> LinearGaussianModel {
        let dj = m.dimension * m.latent, d = m.dimension
        return LinearGaussianModel(loadings: Matrix(rows: m.dimension, cols: m.latent, storage: Array(x[0..<dj])),
                                   offset: Array(x[dj..<(dj + d)]), noiseVariance: x[dj + d])
    }

    // MARK: Finite differences and comparisons

    /// Central differences of `f` at `x`, step fdStep · max(1, |x_i|) (the step actually taken,
    /// (x + h) − (x − h), is used in the quotient).
    static func numericGradient(at x: [Double], step: Double = fdStep, _ f: ([Double]) -> Double) -> [Double] {
        var g = [Double](repeating: 0, count: x.count)
        var xp = x
        for i in x.indices {
            let h = step * max(1, abs(x[i]))
            xp[i] = x[i] + h
            let up = xp[i], fp = f(xp)
            xp[i] = x[i] - h
            let down = xp[i], fm = f(xp)
            xp[i] = x[i]
            g[i] = (fp - fm) / (up - down)
        }
        return g
    }

    /// Expects |actual_i − expected_i| ≤ tolerance · (1 + |expected_i|) for every i, and (with
    /// `nonTrivial`) that `expected` is not all near zero, so that a zero `actual` cannot pass.
    static func expectClose(_ actual: [Double], _ expected: [Double], tolerance: Double, _ what: String,
                            nonTrivial: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(actual.count == expected.count, "\(what): \(actual.count) vs \(expected.count) coordinates",
                sourceLocation: sourceLocation)
        guard actual.count == expected.count else { return }
        var worst = 0.0, at = 0
        for i in actual.indices {
            let e = abs(actual[i] - expected[i]) / (1 + abs(expected[i]))
            if !(e <= worst) { worst = e; at = i }   // NaN counts as worst
        }
        #expect(worst <= tolerance,
                "\(what): worst relative error \(worst) at coordinate \(at): \(actual[at]) vs \(expected[at])",
                sourceLocation: sourceLocation)
        if nonTrivial {
            let scale = expected.reduce(0) { max($0, abs($1)) }
            #expect(scale > 1e-2, "\(what): the reference is trivially small (max |·| = \(scale))",
                    sourceLocation: sourceLocation)
        }
    }

    // MARK: Independent dense reference

    /// Lower Cholesky factor of a symmetric positive-definite matrix, by the textbook loop.
    static func cholesky(_ a: [[Double]]) -> [[Double]] {
        let n = a.count
        var l = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n {
            for j in 0...i {
                var s = a[i][j]
                for k in 0..<j { s -= l[i][k] * l[j][k] }
                if i == j {
                    precondition(s > 0, "not positive definite")
                    l[i][i] = s.squareRoot()
                } else {
                    l[i][j] = s / l[j][j]
                }
            }
        }
        return l
    }

    /// log|A| for symmetric positive-definite A, through ``cholesky(_:)``.
    static func logDeterminant(_ a: [[Double]]) -> Double {
        let l = cholesky(a)
        return 2 * (0..<a.count).reduce(0) { $0 + log(l[$1][$1]) }
    }

    static func nested(_ m: Matrix) -> [[Double]] { (0..<m.rows).map { m.row($0) } }

    /// log N(y; b, W Wᵀ + s2 I) for every row of the data, with the dense D × D covariance
    /// (no Woodbury identity, no posterior): an independent route to log p(y_n).
    static func directLogDensities(model: LinearGaussianModel, data: Dataset) -> [Double] {
        let d = model.dimension, j = model.latent
        let w = model.loadings
        var c = [[Double]](repeating: [Double](repeating: 0, count: d), count: d)
        for a in 0..<d {
            for b in 0..<d {
                var s = a == b ? model.noiseVariance : 0
                for k in 0..<j { s += w[a, k] * w[b, k] }
                c[a][b] = s
            }
        }
        let l = cholesky(c)
        let logDet = 2 * (0..<d).reduce(0) { $0 + log(l[$1][$1]) }
        let y = data.points
        return (0..<data.count).map { n in
            // Solve L u = y − b; the quadratic form is ‖u‖².
            var u = [Double](repeating: 0, count: d)
            for a in 0..<d {
                var s = y[n, a] - model.offset[a]
                for k in 0..<a { s -= l[a][k] * u[k] }
                u[a] = s / l[a][a]
            }
            let quad = u.reduce(0) { $0 + $1 * $1 }
            return -0.5 * (Double(d) * log(2 * Double.pi) + logDet + quad)
        }
    }

    /// log p(y | z) = −(D/2) log(2π s2) − ‖y − W z − b‖²/(2 s2), by a plain loop.
    static func logLikelihood(y: [Double], given z: [Double], model: LinearGaussianModel) -> Double {
        let d = model.dimension, j = model.latent
        var r = 0.0
        for i in 0..<d {
            var e = y[i] - model.offset[i]
            for k in 0..<j { e -= model.loadings[i, k] * z[k] }
            r += e * e
        }
        return -0.5 * Double(d) * log(2 * Double.pi * model.noiseVariance) - r / (2 * model.noiseVariance)
    }

    /// KL(N(m, L Lᵀ) ‖ N(0, I)) = ½ [‖L‖²_F + mᵀm − J − 2 Σ log L_kk], by a plain loop.
    static func klToPrior(mean m: [Double], cholesky l: [[Double]]) -> Double {
        let j = m.count
        var s = -Double(j)
        for a in 0..<j {
            s += m[a] * m[a] - 2 * log(l[a][a])
            for b in 0..<j { s += l[a][b] * l[a][b] }
        }
        return 0.5 * s
    }

    /// The lower Cholesky factor of q_n's covariance (diagonal: √v on the diagonal), nested.
    static func choleskyFactor(of q: GaussianPosteriors, point n: Int) -> [[Double]] {
        let j = q.latent, row = q.scales.rows == 1 ? 0 : n
        var l = [[Double]](repeating: [Double](repeating: 0, count: j), count: j)
        for a in 0..<j {
            switch q.family {
            case .diagonal: l[a][a] = q.scales[row, a].squareRoot()
            case .full: for b in 0...a { l[a][b] = q.scales[row, a * j + b] }
            }
        }
        return l
    }

    // MARK: Monte Carlo summaries

    /// Per-coordinate running mean and variance (Welford), for draws of a vector estimator.
    struct Moments {
        private(set) var count = 0
        private(set) var mean: [Double]
        private var m2: [Double]

        init(dimension: Int) {
            mean = [Double](repeating: 0, count: dimension)
            m2 = [Double](repeating: 0, count: dimension)
        }

        mutating func add(_ x: [Double]) {
            precondition(x.count == mean.count)
            count += 1
            for i in x.indices {
                let delta = x[i] - mean[i]
                mean[i] += delta / Double(count)
                m2[i] += delta * (x[i] - mean[i])
            }
        }

        /// Sample variances (divisor count − 1).
        var variance: [Double] { m2.map { $0 / Double(max(count - 1, 1)) } }
        /// Standard errors of the means.
        var standardError: [Double] { variance.map { ($0 / Double(count)).squareRoot() } }
    }

    /// A flat vector of one mean-field estimate: [∂θ (W, b, s2), ∂m, ∂log v].
    static func flat(_ e: MeanFieldGradientEstimate) -> [Double] {
        flat(e.model) + e.means.storage + e.logVariances.storage
    }

    /// The one-pass kernels' test case: 7 columns (column 4 constant at 2.5, so its input scale
    /// is the constant-column 1), `count` points from a random θ, then another random θ with an
    /// offset and a linear encoder with weights N(0, 0.09), all drawn from `rng` in that order.
    static func linearEncoderCase(latent j: Int, count: Int, rng: RandomSource)
        -> (data: Dataset, model: LinearGaussianModel, encoder: LinearEncoder) {
        let truth = LinearGaussianModel.random(dimension: 7, latent: j, noiseVariance: 0.3, using: rng)
        var points = truth.sample(count: count, using: rng)
        for n in 0..<points.rows { points[n, 4] = 2.5 }
        let data = Dataset(points: points)
        var model = LinearGaussianModel.random(dimension: 7, latent: j, noiseVariance: 0.5, using: rng)
        model.offset = (0..<7).map { _ in rng.gaussian() }
        var encoder = LinearEncoder(data: data, latent: j)
        for i in encoder.parameters.indices { encoder.parameters[i] = 0.3 * rng.gaussian() }
        return (data, model, encoder)
    }
}
