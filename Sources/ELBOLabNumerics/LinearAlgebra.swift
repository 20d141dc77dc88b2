import CGSL

/// Runs `body` on a GSL matrix that holds a copy of `m` (GSL's routines work in place).
private func withGSLCopy<R>(of m: Matrix, _ body: (UnsafeMutablePointer<gsl_matrix>) throws -> R) rethrows -> R {
    var copy = m.storage
    return try copy.withUnsafeMutableBufferPointer { p in
        var view = gsl_matrix_view_array(p.baseAddress, m.rows, m.cols)
        return try body(&view.matrix)
    }
}

/// The Cholesky factorisation `A = L Lᵀ` of a symmetric positive-definite matrix.
public struct Cholesky: Sendable {
    /// The lower-triangular factor L (upper triangle zero).
    public let lower: Matrix

    /// Factorises `a` with `gsl_linalg_cholesky_decomp1`.
    /// - Throws: ``GSLError`` when `a` is not positive definite.
    public init(_ a: Matrix) throws {
        precondition(a.rows == a.cols, "Cholesky needs a square matrix")
        GSLRuntime.ensure()
        let n = a.rows
        var s = a.storage
        let status = s.withUnsafeMutableBufferPointer { p -> Int32 in
            if n == 0 { return Int32(GSL_SUCCESS) }
            var view = gsl_matrix_view_array(p.baseAddress, n, n)
            return gsl_linalg_cholesky_decomp1(&view.matrix)
        }
        try gslCheck(status, "Cholesky factorisation of a \(n)×\(n) matrix (not positive definite)")
        for i in 0..<n { for j in (i + 1)..<max(n, i + 1) { s[i * n + j] = 0 } }
        lower = Matrix(rows: n, cols: n, storage: s)
    }

    /// log |A| = 2 Σ log L_ii.
    public var logDeterminant: Double {
        var s = 0.0
        for i in 0..<lower.rows { s += log(lower[i, i]) }
        return 2 * s
    }

    /// Solves `A X = B` for X (B is `n × k`).
    public func solve(_ b: Matrix) -> Matrix {
        let n = lower.rows
        precondition(b.rows == n)
        var x = b
        let k = b.cols
        // Forward: L Y = B.
        for c in 0..<k {
            for i in 0..<n {
                var s = x[i, c]
                for j in 0..<i { s -= lower[i, j] * x[j, c] }
                x[i, c] = s / lower[i, i]
            }
            // Backward: Lᵀ X = Y.
            for i in stride(from: n - 1, through: 0, by: -1) {
                var s = x[i, c]
                for j in (i + 1)..<max(n, i + 1) { s -= lower[j, i] * x[j, c] }
                x[i, c] = s / lower[i, i]
            }
        }
        return x
    }

    /// Solves `A x = b` for a vector.
    public func solve(_ b: [Double]) -> [Double] {
        solve(Matrix(rows: b.count, cols: 1, storage: b)).storage
    }

    /// A⁻¹.
    public var inverse: Matrix { solve(Matrix.identity(lower.rows)) }
}

/// The eigen-decomposition of a symmetric matrix, eigenvalues in decreasing order.
public struct SymmetricEigen: Sendable {
    /// Eigenvalues λ₁ ≥ λ₂ ≥ … ≥ λ_n.
    public let values: [Double]
    /// Eigenvectors as the columns of an `n × n` matrix, column i belonging to `values[i]`.
    public let vectors: Matrix

    /// Decomposes the symmetric matrix `a` with `gsl_eigen_symmv`.
    public init(_ a: Matrix) throws {
        precondition(a.rows == a.cols, "eigen-decomposition needs a square matrix")
        GSLRuntime.ensure()
        let n = a.rows
        if n == 0 {
            values = []
            vectors = Matrix(rows: 0, cols: 0)
            return
        }
        guard let eval = gsl_vector_alloc(n), let evec = gsl_matrix_alloc(n, n),
              let work = gsl_eigen_symmv_alloc(n) else {
            throw GSLError(status: Int32(GSL_ENOMEM), context: "eigen-decomposition of a \(n)×\(n) matrix")
        }
        defer { gsl_vector_free(eval); gsl_matrix_free(evec); gsl_eigen_symmv_free(work) }
        let status = withGSLCopy(of: a) { gsl_eigen_symmv($0, eval, evec, work) }
        try gslCheck(status, "eigen-decomposition of a \(n)×\(n) matrix")
        try gslCheck(gsl_eigen_symmv_sort(eval, evec, GSL_EIGEN_SORT_VAL_DESC), "sorting eigenvalues")
        var v = [Double](repeating: 0, count: n)
        var e = Matrix(rows: n, cols: n)
        for i in 0..<n {
            v[i] = gsl_vector_get(eval, i)
            for j in 0..<n { e[i, j] = gsl_matrix_get(evec, i, j) }
        }
        values = v
        vectors = e
    }
}

extension SymmetricEigen {
    /// A^{-1/2} = V Λ^{-1/2} Vᵀ of the decomposed matrix, which must be positive definite.
    public var inverseSquareRoot: Matrix {
        let n = values.count
        var root = Matrix(rows: n, cols: n)
        for k in 0..<n {
            let s = 1 / values[k].squareRoot()
            for p in 0..<n { for q in 0..<n { root[p, q] += vectors[p, k] * s * vectors[q, k] } }
        }
        return root
    }
}

/// The thin singular value decomposition `A = U Σ Vᵀ` of an `m × n` matrix with m ≥ n.
public struct ThinSVD: Sendable {
    /// Singular values σ₁ ≥ σ₂ ≥ … ≥ σ_n ≥ 0.
    public let values: [Double]
    /// U, `m × n`, orthonormal columns, column i belonging to `values[i]`.
    public let left: Matrix
    /// V, `n × n`, orthogonal.
    public let right: Matrix

    /// Decomposes `a` with `gsl_linalg_SV_decomp` (Golub–Reinsch): O(mn²), no `m × m` matrix.
    public init(_ a: Matrix) throws {
        let m = a.rows, n = a.cols
        precondition(m >= n, "the thin SVD needs at least as many rows as columns")
        GSLRuntime.ensure()
        if n == 0 {
            values = []
            left = Matrix(rows: m, cols: 0)
            right = Matrix(rows: 0, cols: 0)
            return
        }
        guard let v = gsl_matrix_alloc(n, n), let sigma = gsl_vector_alloc(n), let work = gsl_vector_alloc(n) else {
            throw GSLError(status: Int32(GSL_ENOMEM), context: "SVD of a \(m)×\(n) matrix")
        }
        defer { gsl_matrix_free(v); gsl_vector_free(sigma); gsl_vector_free(work) }
        var u = a.storage   // GSL overwrites A with U
        let status = u.withUnsafeMutableBufferPointer { p -> Int32 in
            var view = gsl_matrix_view_array(p.baseAddress, m, n)
            return gsl_linalg_SV_decomp(&view.matrix, v, sigma, work)
        }
        try gslCheck(status, "SVD of a \(m)×\(n) matrix")
        values = (0..<n).map { gsl_vector_get(sigma, $0) }
        left = Matrix(rows: m, cols: n, storage: u)
        var r = Matrix(rows: n, cols: n)
        for i in 0..<n { for j in 0..<n { r[i, j] = gsl_matrix_get(v, i, j) } }
        right = r
    }
}

/// The symmetric part `(A + Aᵀ)/2`, to remove rounding asymmetry before a factorisation.
public func symmetrized(_ a: Matrix) -> Matrix {
    precondition(a.rows == a.cols)
    var s = a
    for i in 0..<a.rows { for j in 0..<i { let v = 0.5 * (a[i, j] + a[j, i]); s[i, j] = v; s[j, i] = v } }
    return s
}

/// The LU factorisation with partial pivoting of a square matrix (`gsl_linalg_LU_decomp`).
public struct LUFactorization {
    private var lu: [Double]
    private var permutation: [Int]
    private var signum: Int32
    /// Size n.
    public let size: Int

    /// Factorises `a`. - Throws: ``GSLError`` when `a` is singular.
    public init(_ a: Matrix) throws {
        precondition(a.rows == a.cols)
        GSLRuntime.ensure()
        size = a.rows
        lu = a.storage
        permutation = Array(0..<size)
        signum = 1
        guard size > 0 else { return }
        guard let perm = gsl_permutation_alloc(size) else {
            throw GSLError(status: Int32(GSL_ENOMEM), context: "LU factorisation")
        }
        defer { gsl_permutation_free(perm) }
        let n = size
        var sg: Int32 = 0
        let status = lu.withUnsafeMutableBufferPointer { p -> Int32 in
            var view = gsl_matrix_view_array(p.baseAddress, n, n)
            return gsl_linalg_LU_decomp(&view.matrix, perm, &sg)
        }
        try gslCheck(status, "LU factorisation of a \(n)×\(n) matrix")
        for i in 0..<n {
            if lu[i * n + i] == 0 { throw GSLError(status: Int32(GSL_ESING), context: "LU factorisation of a singular \(n)×\(n) matrix") }
            permutation[i] = gsl_permutation_get(perm, i)
        }
        signum = sg
    }

    /// Solves `A X = B` (B is `n × k`).
    public func solve(_ b: Matrix) -> Matrix {
        let n = size
        precondition(b.rows == n)
        var x = Matrix(rows: n, cols: b.cols)
        for c in 0..<b.cols {
            var y = (0..<n).map { b[permutation[$0], c] }
            for i in 0..<n { for k in 0..<i { y[i] -= lu[i * n + k] * y[k] } }
            for i in stride(from: n - 1, through: 0, by: -1) {
                for k in (i + 1)..<max(n, i + 1) { y[i] -= lu[i * n + k] * y[k] }
                y[i] /= lu[i * n + i]
            }
            for i in 0..<n { x[i, c] = y[i] }
        }
        return x
    }
}
