import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// N observations in D dimensions, held centred, with the sufficient statistics every exact
/// quantity of the linear-Gaussian model needs.
///
/// The points are kept as `centered = Y − 1ȳᵀ` (`N × D`) plus the mean ȳ: every formula is
/// evaluated on centred data, which keeps sums of squares accurate for unstandardised values.
///
/// The `D × D` covariance S is formed only when asked for (and then kept). Products with it go
/// through ``covarianceTimes(_:)``, which uses S when D ≤ N and the data themselves otherwise,
/// so wide data (N ≪ D) never cost D² memory.
public struct Dataset: Sendable {
    /// Where the data came from (a file path or a description), for messages.
    public let name: String
    /// The centred points, `N × D`, one per row.
    public let centered: Matrix
    /// The sample mean ȳ (length D).
    public let mean: [Double]
    /// Column sums of `centered`: zero up to rounding, kept so that sums over points are exact.
    public let centeredColumnSums: [Double]
    /// The diagonal of S: (1/N) Σ_n (y_ni − ȳ_i)².
    public let columnVariances: [Double]
    /// tr S, the sum of the column variances.
    public let totalVariance: Double
    private let covarianceCache = CovarianceCache()

    /// Number of points N.
    public var count: Int { centered.rows }
    /// Dimension D.
    public var dimension: Int { centered.cols }

    /// A data set from the rows of `points` (`N × D`).
    /// - Parameters:
    ///   - points: consumed, so a caller that hands over its last reference is not copied.
    ///   - name: what messages and results call the data (a CSV's file name, say).
    public init(points: consuming Matrix, name: String = "data") {
        let n = points.rows, d = points.cols
        var mean = points.columnSums()
        let invN = n > 0 ? 1.0 / Double(n) : 0
        for j in 0..<d { mean[j] *= invN }
        var c = consume points
        c.storage.withUnsafeMutableBufferPointer { p in
            for i in 0..<n { for j in 0..<d { p[i * d + j] -= mean[j] } }
        }
        self.init(centered: c, mean: mean, name: name)
    }

    private init(centered: Matrix, mean: [Double], name: String) {
        self.name = name
        self.centered = centered
        self.mean = mean
        centeredColumnSums = centered.columnSums()
        let n = centered.rows, d = centered.cols
        var squares = [Double](repeating: 0, count: d)
        centered.storage.withUnsafeBufferPointer { p in
            for i in 0..<n { for j in 0..<d { squares[j] += p[i * d + j] * p[i * d + j] } }
        }
        let invN = n > 0 ? 1.0 / Double(n) : 0
        columnVariances = squares.map { $0 * invN }
        totalVariance = columnVariances.reduce(0, +)
    }

    /// The sample covariance S = (1/N) Σ (y_n − ȳ)(y_n − ȳ)ᵀ, `D × D`, formed on first use.
    ///
    /// For D > N this costs D² memory: products go through ``covarianceTimes(_:)`` instead.
    public var covariance: Matrix {
        covarianceCache.value {
            var s = Matrix(rows: dimension, cols: dimension)
            gemm(centered, true, centered, false, alpha: count > 0 ? 1.0 / Double(count) : 0, into: &s)
            return symmetrized(s)
        }
    }

    /// Whether products with S are cheaper through S itself (D ≤ N: O(D²J) against O(NDJ)).
    package var prefersCovariance: Bool { dimension <= count }

    /// S M for a `D × J` matrix M, as S·M when D ≤ N and as Ycᵀ(Yc M)/N otherwise.
    public func covarianceTimes(_ m: Matrix) -> Matrix {
        precondition(m.rows == dimension, "covarianceTimes: M has \(m.rows) rows, D = \(dimension)")
        if prefersCovariance { return covariance.multiplied(by: m) }
        var ycm = Matrix(rows: count, cols: m.cols)
        gemm(centered, false, m, false, into: &ycm)
        var out = Matrix(rows: dimension, cols: m.cols)
        gemm(centered, true, ycm, false, alpha: count > 0 ? 1.0 / Double(count) : 0, into: &out)
        return out
    }

    /// The second moment about `b` times M: (1/N) Σ (y_n − b)(y_n − b)ᵀ M, `D × J`.
    ///
    /// With δ = b − ȳ and c the centred column sums: S M − (c (δᵀM) + δ (cᵀM))/N + δ (δᵀM).
    public func secondMomentTimes(_ m: Matrix, about b: [Double]) -> Matrix {
        let d = dimension
        let delta = (0..<d).map { b[$0] - mean[$0] }
        if delta.allSatisfy({ $0 == 0 }) { return covarianceTimes(m) }
        let invN = 1.0 / Double(count)
        let dm = m.transposeTimes(delta), cm = m.transposeTimes(centeredColumnSums)
        var out = covarianceTimes(m)
        for i in 0..<d {
            for k in 0..<m.cols {
                out[i, k] += delta[i] * dm[k] - (centeredColumnSums[i] * dm[k] + delta[i] * cm[k]) * invN
            }
        }
        return out
    }

    /// The trace of the second moment about `b`: tr S − 2 δᵀc/N + ‖δ‖², δ = b − ȳ.
    public func secondMomentTrace(about b: [Double]) -> Double {
        let delta = (0..<dimension).map { b[$0] - mean[$0] }
        return totalVariance - 2 * dot(delta, centeredColumnSums) / Double(count) + dot(delta, delta)
    }

    /// The points themselves (`centered + 1ȳᵀ`), `N × D`.
    public var points: Matrix {
        var p = centered
        let d = dimension
        p.storage.withUnsafeMutableBufferPointer { q in
            for i in 0..<count { for j in 0..<d { q[i * d + j] += mean[j] } }
        }
        return p
    }

    /// The second moment about a point `b`: (1/N) Σ (y_n − b)(y_n − b)ᵀ, `D × D`.
    ///
    /// With δ = b − ȳ and c the centred column sums: S − (δcᵀ + cδᵀ)/N + δδᵀ.
    public func secondMoment(about b: [Double]) -> Matrix {
        let d = dimension
        let delta = (0..<d).map { b[$0] - mean[$0] }
        let invN = 1.0 / Double(count)
        var s = covariance
        for i in 0..<d {
            for j in 0..<d {
                s[i, j] += delta[i] * delta[j] - (delta[i] * centeredColumnSums[j] + centeredColumnSums[i] * delta[j]) * invN
            }
        }
        return s
    }

    /// Checks that the data can fit a model with `latent` dimensions.
    ///
    /// - Parameters:
    ///   - latent: the latent dimension J to be fitted.
    ///   - noiseFixed: with the noise variance held fixed, J = D is allowed.
    /// - Throws: ``/ELBOLabNumerics/InputError`` naming the problem: too few rows, J out of range, constant data.
    public func validate(latent: Int, noiseFixed: Bool) throws {
        let maxJ = noiseFixed ? dimension : dimension - 1
        if maxJ < 1 {
            throw InputError("\(name): \(dimension) column(s): a free noise variance needs at least 2 columns (or hold it with --noise-variance)")
        }
        if latent < 1 || latent > maxJ {
            throw InputError("\(name): --latent \(latent) is out of range: with D = \(dimension) columns it must be in 1…\(maxJ)" + (noiseFixed ? "" : " (1…\(dimension) when --noise-variance holds s2 fixed)"))
        }
        if count < latent + 2 {
            throw InputError("\(name): \(count) row(s) is too few for J = \(latent): need at least \(latent + 2)")
        }
        if columnVariances.allSatisfy({ $0 == 0 }) {
            throw InputError("\(name): every column is constant: there is nothing to model")
        }
    }
}

/// S, formed once on first use and shared by every copy of its ``Dataset``.
private final class CovarianceCache: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Matrix?

    func value(_ make: () -> Matrix) -> Matrix {
        lock.lock()
        defer { lock.unlock() }
        if let stored { return stored }
        let s = make()
        stored = s
        return s
    }
}
