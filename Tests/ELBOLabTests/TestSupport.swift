import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

// Shared helpers for the foundation tests: named tolerances, seeded generators of models and
// data, plain-loop linear algebra on nested arrays (a route independent of Matrix/BLAS/GSL),
// subspace angles and temporary folders.

/// Tolerances, each with the reason for its size. No test uses a bare number instead.
enum Tolerance {
    /// Double-precision unit roundoff.
    static let epsilon = Double.ulpOfOne
    /// Two evaluations of the same formula that differ only in the order of floating-point
    /// operations: a few thousand ulps, relative.
    static let rounding = 1e-12
    /// Two algebraically equal routes with different conditioning (Woodbury J×J vs the direct
    /// D×D Cholesky, joint-covariance conditioning vs the posterior formula): rounding amplified
    /// by cond(C), which the test models keep below about 1e3, relative.
    static let independentRoute = 1e-10
    /// Products of small matrices (k ≤ 10 terms of size ≤ 10) against a naive triple loop: the
    /// summation-order error is at most k·ε·Σ|a||b|, so this is relative to Σ|a||b|.
    static func product(terms k: Int) -> Double { 4 * Double(max(k, 1)) * epsilon }
    /// How many Monte Carlo standard errors a statistical check allows: a correct
    /// implementation fails a 4-SE two-sided Gaussian check with probability 6e-5, and
    /// each such test runs on a fixed seed, so it either passes or fails deterministically.
    static let monteCarloSigmas = 4.0
    /// EM run to convergence must reach the closed-form MLE value within this (nats/point).
    static let emToMLE = 1e-6
    /// The CLI's printed log-likelihood against the numbers in summary.json (relative).
    static let cliAgreement = 1e-10
}

/// |a − b| ≤ tol · max(1, |a|, |b|).
func approximatelyEqual(_ a: Double, _ b: Double, relative tol: Double) -> Bool {
    abs(a - b) <= tol * max(1, abs(a), abs(b))
}

/// The largest relative discrepancy of two equally-shaped matrices, relative to max(1, max|entry|).
func maxRelativeDifference(_ a: [[Double]], _ b: [[Double]]) -> Double {
    precondition(a.count == b.count)
    var scale = 1.0, diff = 0.0
    for (ra, rb) in zip(a, b) {
        precondition(ra.count == rb.count)
        for (x, y) in zip(ra, rb) { scale = max(scale, abs(x), abs(y)); diff = max(diff, abs(x - y)) }
    }
    return diff / scale
}

// MARK: - Seeded models and data

enum Seeds {
    static let model: UInt64 = 20_240_501
    static let data: UInt64 = 777
    static let start: UInt64 = 4_242
}

/// A model with W entries N(0, 1), b entries N(0, offsetScale²) and the given s2.
func randomModel(dimension d: Int, latent j: Int, noiseVariance s2: Double, offsetScale: Double = 1,
                 zeroOffset: Bool = false, seed: UInt64 = Seeds.model) -> LinearGaussianModel {
    let rng = RandomSource(seed: seed)
    var w = Matrix(rows: d, cols: j)
    for i in 0..<d { for k in 0..<j { w[i, k] = rng.gaussian() } }
    let b = (0..<d).map { _ in zeroOffset ? 0 : offsetScale * rng.gaussian() }
    return LinearGaussianModel(loadings: w, offset: b, noiseVariance: s2)
}

/// Draws N points from `model` by plain loops (z ~ N(0,I), y = W z + b + √s2 ε), `N × D`:
/// independent of ``LinearGaussianModel/sample(count:using:)``.
func simulate(_ model: LinearGaussianModel, count n: Int, seed: UInt64 = Seeds.data) -> Matrix {
    let rng = RandomSource(seed: seed)
    let d = model.dimension, j = model.latent
    let sd = model.noiseVariance.squareRoot()
    var y = Matrix(rows: n, cols: d)
    var z = [Double](repeating: 0, count: j)
    for row in 0..<n {
        for k in 0..<j { z[k] = rng.gaussian() }
        for i in 0..<d {
            var s = model.offset[i]
            for k in 0..<j { s += model.loadings[i, k] * z[k] }
            y[row, i] = s + sd * rng.gaussian()
        }
    }
    return y
}

/// A simulated data set.
func simulatedDataset(_ model: LinearGaussianModel, count n: Int, seed: UInt64 = Seeds.data) -> Dataset {
    Dataset(points: simulate(model, count: n, seed: seed), name: "simulated")
}

// MARK: - Naive linear algebra on nested arrays (the independent route)

typealias Nested = [[Double]]

func nested(_ m: Matrix) -> Nested { (0..<m.rows).map { i in (0..<m.cols).map { m[i, $0] } } }

func naiveTranspose(_ a: Nested) -> Nested {
    guard let c = a.first?.count else { return [] }
    return (0..<c).map { j in a.map { $0[j] } }
}

/// A·B by the textbook triple loop.
func naiveProduct(_ a: Nested, _ b: Nested, inner k: Int? = nil) -> Nested {
    let kk = k ?? (a.first?.count ?? 0)
    let n = b.first?.count ?? 0
    return a.map { row in
        (0..<n).map { j in
            var s = 0.0
            for l in 0..<kk { s += row[l] * b[l][j] }
            return s
        }
    }
}

func naiveIdentity(_ n: Int) -> Nested { (0..<n).map { i in (0..<n).map { $0 == i ? 1 : 0 } } }

/// The Cholesky factor L (lower) of a symmetric positive-definite A, by the textbook loop;
/// nil when A is not positive definite.
func naiveCholesky(_ a: Nested) -> Nested? {
    let n = a.count
    var l = Nested(repeating: [Double](repeating: 0, count: n), count: n)
    for i in 0..<n {
        for j in 0...i {
            var s = a[i][j]
            for k in 0..<j { s -= l[i][k] * l[j][k] }
            if i == j {
                guard s > 0 else { return nil }
                l[i][i] = s.squareRoot()
            } else {
                l[i][j] = s / l[j][j]
            }
        }
    }
    return l
}

/// Solves (L Lᵀ) x = b by forward and back substitution.
func naiveCholeskySolve(_ l: Nested, _ b: [Double]) -> [Double] {
    let n = l.count
    var y = b
    for i in 0..<n {
        for k in 0..<i { y[i] -= l[i][k] * y[k] }
        y[i] /= l[i][i]
    }
    for i in stride(from: n - 1, through: 0, by: -1) {
        for k in (i + 1)..<max(n, i + 1) { y[i] -= l[k][i] * y[k] }
        y[i] /= l[i][i]
    }
    return y
}

/// log|L Lᵀ| = 2 Σ log L_ii.
func naiveLogDeterminant(_ l: Nested) -> Double { 2 * (0..<l.count).reduce(0) { $0 + log(l[$1][$1]) } }

/// C = W Wᵀ + s2 I, the marginal covariance, by plain loops.
func marginalCovariance(_ model: LinearGaussianModel) -> Nested {
    let w = nested(model.loadings)
    var c = naiveProduct(w, naiveTranspose(w))
    for i in 0..<model.dimension { c[i][i] += model.noiseVariance }
    return c
}

/// log N(y; b, C) for each row of `points`, by the direct D×D route: Cholesky of C.
func directLogLikelihoods(_ model: LinearGaussianModel, points: Matrix) -> [Double] {
    let d = model.dimension
    let c = marginalCovariance(model)
    guard let l = naiveCholesky(c) else { preconditionFailure("C must be positive definite") }
    let logDet = naiveLogDeterminant(l)
    return (0..<points.rows).map { n in
        let r = (0..<d).map { points[n, $0] - model.offset[$0] }
        let x = naiveCholeskySolve(l, r)
        var quad = 0.0
        for i in 0..<d { quad += r[i] * x[i] }
        return -0.5 * (Double(d) * log(2 * Double.pi) + logDet + quad)
    }
}

/// The average direct log-likelihood, by compensated summation.
func directAverageLogLikelihood(_ model: LinearGaussianModel, points: Matrix) -> Double {
    var sum = 0.0, c = 0.0
    for v in directLogLikelihoods(model, points: points) {
        let t = sum + v
        c += abs(sum) >= abs(v) ? (sum - t) + v : (v - t) + sum
        sum = t
    }
    return (sum + c) / Double(points.rows)
}

// MARK: - Subspaces

/// An orthonormal basis of the column span of `a` (`D × J`, full column rank), by modified
/// Gram–Schmidt with one re-orthogonalisation pass.
func orthonormalBasis(_ a: Matrix) -> Nested {
    var cols = (0..<a.cols).map { a.column($0) }
    for j in 0..<cols.count {
        for _ in 0..<2 {
            for k in 0..<j {
                let p = zip(cols[j], cols[k]).reduce(0) { $0 + $1.0 * $1.1 }
                for i in cols[j].indices { cols[j][i] -= p * cols[k][i] }
            }
        }
        let norm = cols[j].reduce(0) { $0 + $1 * $1 }.squareRoot()
        precondition(norm > 0, "columns must be linearly independent")
        for i in cols[j].indices { cols[j][i] /= norm }
    }
    return naiveTranspose(cols)   // D × J
}

/// The sine of the largest principal angle between span(a) and span(b) (both `D × J`):
/// the largest singular value of (I − Q_a Q_aᵀ) Q_b, which stays accurate for small angles.
func largestPrincipalAngleSine(_ a: Matrix, _ b: Matrix) throws -> Double {
    let qa = orthonormalBasis(a), qb = orthonormalBasis(b)
    let proj = naiveProduct(qa, naiveProduct(naiveTranspose(qa), qb))   // Q_a Q_aᵀ Q_b
    var p = qb
    for i in p.indices { for j in p[i].indices { p[i][j] -= proj[i][j] } }
    let ptp = naiveProduct(naiveTranspose(p), p)
    let eig = try SymmetricEigen(Matrix(ptp))
    return max(eig.values.first ?? 0, 0).squareRoot()
}

// MARK: - Files

/// Runs `body` with a fresh empty folder that is removed afterwards.
func withTemporaryFolder<T>(_ body: (URL) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("elbolab-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url)
}

/// Writes raw bytes to `name` inside `folder` and returns the path.
@discardableResult
func writeFile(_ bytes: [UInt8], named name: String, in folder: URL) throws -> String {
    let url = folder.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url.path
}

/// Writes UTF-8 text to `name` inside `folder` and returns the path.
@discardableResult
func writeFile(_ text: String, named name: String, in folder: URL) throws -> String {
    try writeFile(Array(text.utf8), named: name, in: folder)
}

/// Every path below `folder` (hidden ones included), relative, sorted.
func listing(of folder: URL) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: folder.path) else { return [] }
    return e.compactMap { $0 as? String }.sorted()
}
