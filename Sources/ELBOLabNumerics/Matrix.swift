import CGSL

/// A dense real matrix in contiguous row-major storage.
///
/// Shapes are written `rows × cols`; a data set of N points in D dimensions is an `N × D`
/// matrix, one point per row. Products go to BLAS (`gsl_blas_dgemm`, resolved to OpenBLAS)
/// on whole matrices, never loops over points.
public struct Matrix: Equatable, Sendable {
    /// Number of rows.
    public private(set) var rows: Int
    /// Number of columns.
    public private(set) var cols: Int
    /// Row-major entries: element (i, j) is `storage[i * cols + j]`.
    public var storage: [Double]

    /// A `rows × cols` matrix filled with `value`.
    public init(rows: Int, cols: Int, repeating value: Double = 0) {
        precondition(rows >= 0 && cols >= 0, "matrix shape must be non-negative")
        self.rows = rows
        self.cols = cols
        storage = [Double](repeating: value, count: rows * cols)
    }

    /// A `rows × cols` matrix over row-major `storage`.
    public init(rows: Int, cols: Int, storage: [Double]) {
        precondition(storage.count == rows * cols, "storage has \(storage.count) entries, shape needs \(rows * cols)")
        self.rows = rows
        self.cols = cols
        self.storage = storage
    }

    /// A matrix from nested rows (all of one length).
    public init(_ nested: [[Double]]) {
        let c = nested.first?.count ?? 0
        precondition(nested.allSatisfy { $0.count == c }, "ragged rows")
        self.init(rows: nested.count, cols: c, storage: nested.flatMap { $0 })
    }

    /// The `n × n` identity scaled by `scale`.
    public static func identity(_ n: Int, scale: Double = 1) -> Matrix {
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m.storage[i * n + i] = scale }
        return m
    }

    /// A diagonal matrix with `diagonal` on its diagonal.
    public static func diagonal(_ diagonal: [Double]) -> Matrix {
        let n = diagonal.count
        var m = Matrix(rows: n, cols: n)
        for i in 0..<n { m.storage[i * n + i] = diagonal[i] }
        return m
    }

    /// The entry in row i, column j (row-major storage).
    @inline(__always)
    @inlinable public subscript(i: Int, j: Int) -> Double {
        get { storage[i * cols + j] }
        set { storage[i * cols + j] = newValue }
    }

    /// Row `i` as an array.
    @inlinable public func row(_ i: Int) -> [Double] { Array(storage[(i * cols)..<((i + 1) * cols)]) }

    /// Column `j` as an array.
    public func column(_ j: Int) -> [Double] { (0..<rows).map { storage[$0 * cols + j] } }

    /// Rows as nested arrays (for JSON).
    public var nestedRows: [[Double]] { (0..<rows).map(row) }

    /// The transpose.
    public var transposed: Matrix {
        var t = Matrix(rows: cols, cols: rows)
        for i in 0..<rows { for j in 0..<cols { t.storage[j * rows + i] = storage[i * cols + j] } }
        return t
    }

    /// Sum of the diagonal (square matrices).
    public var trace: Double {
        precondition(rows == cols)
        var s = 0.0
        for i in 0..<rows { s += storage[i * cols + i] }
        return s
    }

    /// The diagonal.
    public var diagonalEntries: [Double] { (0..<min(rows, cols)).map { storage[$0 * cols + $0] } }

    /// Whether every entry is finite.
    public var isFinite: Bool { storage.allSatisfy { $0.isFinite } }

    /// Column sums (length `cols`).
    public func columnSums() -> [Double] {
        var s = [Double](repeating: 0, count: cols)
        storage.withUnsafeBufferPointer { a in
            for i in 0..<rows { for j in 0..<cols { s[j] += a[i * cols + j] } }
        }
        return s
    }

    /// Σ_ij A_ij B_ij, the Frobenius inner product.
    public func frobeniusDot(_ other: Matrix) -> Double {
        precondition(rows == other.rows && cols == other.cols)
        return dot(storage, other.storage)
    }

    /// Largest absolute entry.
    public var maxAbs: Double { storage.reduce(0) { max($0, abs($1)) } }

    /// The entrywise sum; the shapes must match.
    public static func + (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        return Matrix(rows: a.rows, cols: a.cols, storage: zip(a.storage, b.storage).map(+))
    }

    /// The entrywise difference; the shapes must match.
    public static func - (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols)
        return Matrix(rows: a.rows, cols: a.cols, storage: zip(a.storage, b.storage).map(-))
    }

    /// Every entry of `a` times `s`.
    public static func * (s: Double, a: Matrix) -> Matrix {
        Matrix(rows: a.rows, cols: a.cols, storage: a.storage.map { s * $0 })
    }

    /// The matrix product `self · other`.
    public static func * (a: Matrix, b: Matrix) -> Matrix { a.multiplied(by: b) }

    /// `op(self) · op(other)`, with `op` the transpose where asked.
    public func multiplied(by other: Matrix, transposeSelf: Bool = false, transposeOther: Bool = false) -> Matrix {
        let m = transposeSelf ? cols : rows
        let n = transposeOther ? other.rows : other.cols
        var c = Matrix(rows: m, cols: n)
        gemm(self, transposeSelf, other, transposeOther, into: &c)
        return c
    }

    /// `self · x` for a vector `x`.
    public func times(_ x: [Double]) -> [Double] {
        precondition(x.count == cols)
        var y = [Double](repeating: 0, count: rows)
        for i in 0..<rows {
            var s = 0.0
            for j in 0..<cols { s += storage[i * cols + j] * x[j] }
            y[i] = s
        }
        return y
    }

    /// `selfᵀ · x` for a vector `x`.
    public func transposeTimes(_ x: [Double]) -> [Double] {
        precondition(x.count == rows)
        var y = [Double](repeating: 0, count: cols)
        for i in 0..<rows { for j in 0..<cols { y[j] += storage[i * cols + j] * x[i] } }
        return y
    }
}

/// `c ← α · op(a) · op(b) + β · c` with `gsl_blas_dgemm` on views of the row-major storage.
///
/// - Parameters:
///   - a: left factor.
///   - ta: use the transpose of `a`.
///   - b: right factor.
///   - tb: use the transpose of `b`.
///   - alpha: the product's factor α.
///   - beta: the factor β of `c`'s old value (0: overwritten).
///   - c: the result, of shape `rows(op(a)) × cols(op(b))`.
public func gemm(_ a: Matrix, _ ta: Bool, _ b: Matrix, _ tb: Bool, alpha: Double = 1, beta: Double = 0, into c: inout Matrix) {
    let m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols
    let kb = tb ? b.cols : b.rows, n = tb ? b.rows : b.cols
    precondition(k == kb && c.rows == m && c.cols == n, "gemm shapes: op(A) \(m)×\(k), op(B) \(kb)×\(n), C \(c.rows)×\(c.cols)")
    a.storage.withUnsafeBufferPointer { pa in
        b.storage.withUnsafeBufferPointer { pb in
            c.storage.withUnsafeMutableBufferPointer { pc in
                gemmRaw(pa.baseAddress, a.rows, a.cols, ta, pb.baseAddress, b.rows, b.cols, tb,
                        pc.baseAddress, m, n, alpha: alpha, beta: beta)
            }
        }
    }
}

/// `c ← α · op(a) · op(b) + β · c` on raw row-major buffers, through `gsl_blas_dgemm`.
///
/// GSL views reject zero dimensions, so empty products are handled here.
@inline(__always)
public func gemmRaw(_ a: UnsafePointer<Double>?, _ ar: Int, _ ac: Int, _ ta: Bool,
             _ b: UnsafePointer<Double>?, _ br: Int, _ bc: Int, _ tb: Bool,
             _ c: UnsafeMutablePointer<Double>?, _ m: Int, _ n: Int,
             alpha: Double, beta: Double) {
    GSLRuntime.ensure()
    if m == 0 || n == 0 { return }
    guard let c else { return }
    let k = ta ? ar : ac
    if k == 0 || ar == 0 || ac == 0 || br == 0 || bc == 0 {
        for i in 0..<(m * n) { c[i] = beta == 0 ? 0 : beta * c[i] }
        return
    }
    var va = gsl_matrix_const_view_array(a, ar, ac)
    var vb = gsl_matrix_const_view_array(b, br, bc)
    var vc = gsl_matrix_view_array(c, m, n)
    let status = gsl_blas_dgemm(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                                alpha, &va.matrix, &vb.matrix, beta, &vc.matrix)
    // Shapes were checked by the caller; GSL can only disagree on a programming error.
    precondition(status == Int32(GSL_SUCCESS), "gsl_blas_dgemm: \(String(cString: gsl_strerror(status)))")
}

/// Σ_i x_i y_i.
@inline(__always)
public func dot(_ x: [Double], _ y: [Double]) -> Double {
    precondition(x.count == y.count)
    var s = 0.0
    x.withUnsafeBufferPointer { px in
        y.withUnsafeBufferPointer { py in
            for i in 0..<px.count { s += px[i] * py[i] }
        }
    }
    return s
}
