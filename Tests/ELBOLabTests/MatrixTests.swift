import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// A matrix of N(0, 1) entries.
private func randomMatrix(_ rows: Int, _ cols: Int, seed: UInt64) -> Matrix {
    let r = RandomSource(seed: seed)
    var m = Matrix(rows: rows, cols: cols)
    for i in 0..<rows { for j in 0..<cols { m[i, j] = r.gaussian() } }
    return m
}

/// A random symmetric positive-definite matrix B Bᵀ + n I.
private func randomSPD(_ n: Int, seed: UInt64) -> Matrix {
    let b = nested(randomMatrix(n, n, seed: seed))
    var a = naiveProduct(b, naiveTranspose(b))
    for i in 0..<n { a[i][i] += Double(n) }
    return Matrix(a)
}

/// The largest entry of |A|·|B|, the scale that bounds the summation error of A·B.
private func absoluteProductScale(_ a: Nested, _ b: Nested) -> Double {
    let pa = a.map { $0.map(abs) }, pb = b.map { $0.map(abs) }
    return naiveProduct(pa, pb).flatMap { $0 }.max() ?? 0
}

@Suite("Matrix")
struct MatrixTests {
    @Test("construction, indexing, rows, columns, transpose, trace, sums")
    func basics() {
        let m = Matrix([[1, 2, 3], [4, 5, 6]])
        #expect(m.rows == 2 && m.cols == 3)
        #expect(m[1, 2] == 6)
        #expect(m.storage == [1, 2, 3, 4, 5, 6])
        #expect(m.row(1) == [4, 5, 6])
        #expect(m.column(2) == [3, 6])
        #expect(m.transposed == Matrix([[1, 4], [2, 5], [3, 6]]))
        #expect(m.nestedRows == [[1, 2, 3], [4, 5, 6]])
        #expect(m.columnSums() == [5, 7, 9])
        #expect(m.frobeniusDot(m) == 91)
        #expect(m.maxAbs == 6)
        #expect(Matrix.identity(3, scale: 2).trace == 6)
        #expect(Matrix.diagonal([1, -2]).diagonalEntries == [1, -2])
        #expect(Matrix.diagonal([1, -2]) == Matrix([[1, 0], [0, -2]]))
        #expect(m + m == 2 * m)
        #expect((m - m).maxAbs == 0)
        #expect(m.times([1, 0, -1]) == [-2, -2])
        #expect(m.transposeTimes([1, 1]) == [5, 7, 9])
        #expect(!Matrix([[1, .nan]]).isFinite)
        #expect(Matrix([[1, 2]]).isFinite)
        #expect(symmetrized(Matrix([[1, 2], [4, 3]])) == Matrix([[1, 3], [3, 3]]))
    }

    @Test("gemm matches a naive triple loop for every transpose combination",
          arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmTransposes(transposes: (Bool, Bool)) {
        let (ta, tb) = transposes
        let m = 5, k = 7, n = 3
        let a = randomMatrix(ta ? k : m, ta ? m : k, seed: 11)
        let b = randomMatrix(tb ? n : k, tb ? k : n, seed: 12)
        let c0 = randomMatrix(m, n, seed: 13)
        let opA = ta ? naiveTranspose(nested(a)) : nested(a)
        let opB = tb ? naiveTranspose(nested(b)) : nested(b)
        let alpha = 0.75, beta = -1.5
        let ab = naiveProduct(opA, opB)
        let expected = (0..<m).map { i in (0..<n).map { j in alpha * ab[i][j] + beta * c0[i, j] } }
        var c = c0
        gemm(a, ta, b, tb, alpha: alpha, beta: beta, into: &c)
        // The summation error of each entry is bounded by k·ε·(|α| Σ|a||b| + |β||c|).
        let scale = abs(alpha) * absoluteProductScale(opA, opB) + abs(beta) * c0.maxAbs
        var diff = 0.0
        for i in 0..<m { for j in 0..<n { diff = max(diff, abs(c[i, j] - expected[i][j])) } }
        #expect(diff <= Tolerance.product(terms: k) * scale, "gemm(ta: \(ta), tb: \(tb)) off by \(diff)")
        // multiplied(by:) is gemm with α = 1, β = 0.
        let product = a.multiplied(by: b, transposeSelf: ta, transposeOther: tb)
        #expect(product.rows == m && product.cols == n)
        #expect(maxRelativeDifference(nested(product), ab) <= Tolerance.product(terms: k) * absoluteProductScale(opA, opB))
    }

    @Test("gemm with an empty inner dimension scales C by β")
    func gemmEmptyInner() {
        let a = Matrix(rows: 2, cols: 0), b = Matrix(rows: 0, cols: 3)
        var c = Matrix(rows: 2, cols: 3, repeating: 2)
        gemm(a, false, b, false, alpha: 1, beta: 0.5, into: &c)
        #expect(c == Matrix(rows: 2, cols: 3, repeating: 1))
        #expect(a * b == Matrix(rows: 2, cols: 3))
    }

    @Test("Cholesky of a known 2×2 matrix: factor, solve, inverse, log-determinant")
    func choleskyKnown2() throws {
        // A = [[4, 2], [2, 3]] = L Lᵀ with L = [[2, 0], [1, √2]]; |A| = 8; A⁻¹ = [[3, −2], [−2, 4]]/8.
        let chol = try Cholesky(Matrix([[4, 2], [2, 3]]))
        let expectedL: Nested = [[2, 0], [1, 2.0.squareRoot()]]
        #expect(maxRelativeDifference(nested(chol.lower), expectedL) <= Tolerance.rounding)
        #expect(approximatelyEqual(chol.logDeterminant, log(8), relative: Tolerance.rounding))
        #expect(maxRelativeDifference(nested(chol.inverse), [[0.375, -0.25], [-0.25, 0.5]]) <= Tolerance.rounding)
        let x = chol.solve([2, 1])   // A⁻¹ [2, 1] = [0.5, 0]
        #expect(abs(x[0] - 0.5) <= Tolerance.rounding && abs(x[1]) <= Tolerance.rounding)
    }

    @Test("Cholesky of a known 3×3 matrix built from an integer factor")
    func choleskyKnown3() throws {
        // L = [[2,0,0],[1,3,0],[−1,2,1]]: A = L Lᵀ = [[4,2,−2],[2,10,5],[−2,5,6]], |A| = 36.
        let l: Nested = [[2, 0, 0], [1, 3, 0], [-1, 2, 1]]
        let a = Matrix([[4, 2, -2], [2, 10, 5], [-2, 5, 6]])
        let chol = try Cholesky(a)
        #expect(maxRelativeDifference(nested(chol.lower), l) <= Tolerance.rounding)
        #expect(approximatelyEqual(chol.logDeterminant, log(36), relative: Tolerance.rounding))
        // A X = B with X known: B = A X.
        let xKnown: Nested = [[1, -2], [0, 3], [2, 0.5]]
        let b = Matrix(naiveProduct(nested(a), xKnown))
        #expect(maxRelativeDifference(nested(chol.solve(b)), xKnown) <= Tolerance.rounding)
        let inv = nested(chol.inverse)
        #expect(maxRelativeDifference(naiveProduct(nested(a), inv), naiveIdentity(3)) <= Tolerance.rounding)
    }

    @Test("Cholesky of a random SPD matrix agrees with the naive factorisation")
    func choleskyRandom() throws {
        let n = 8
        let a = randomSPD(n, seed: 21)
        let chol = try Cholesky(a)
        let naive = try #require(naiveCholesky(nested(a)))
        #expect(maxRelativeDifference(nested(chol.lower), naive) <= Tolerance.independentRoute)
        #expect(approximatelyEqual(chol.logDeterminant, naiveLogDeterminant(naive), relative: Tolerance.independentRoute))
        #expect(maxRelativeDifference(naiveProduct(nested(a), nested(chol.inverse)), naiveIdentity(n)) <= Tolerance.independentRoute)
    }

    @Test("Cholesky rejects a matrix that is not positive definite")
    func choleskyRejects() {
        #expect(throws: GSLError.self) { try Cholesky(Matrix([[1, 2], [2, 1]])) }
        #expect(throws: GSLError.self) { try Cholesky(Matrix([[0, 0], [0, 1]])) }
    }

    @Test("SymmetricEigen of a known matrix")
    func eigenKnown() throws {
        // [[2, 1], [1, 2]] has eigenvalues 3 (vector (1,1)/√2) and 1 (vector (1,−1)/√2).
        let e = try SymmetricEigen(Matrix([[2, 1], [1, 2]]))
        #expect(abs(e.values[0] - 3) <= Tolerance.rounding && abs(e.values[1] - 1) <= Tolerance.rounding)
        let v0 = e.vectors.column(0)
        #expect(abs(abs(v0[0]) - 0.5.squareRoot()) <= Tolerance.rounding)
        #expect(abs(v0[0] - v0[1]) <= Tolerance.rounding)
        let d = try SymmetricEigen(Matrix.diagonal([1, 5, -2, 3]))
        #expect(d.values == [5, 3, 1, -2])
    }

    @Test("SymmetricEigen.inverseSquareRoot R of a positive definite A is symmetric with R A R = I", arguments: [1, 3, 7])
    func inverseSquareRoot(n: Int) throws {
        let r = nested(randomMatrix(n, n, seed: UInt64(50 + n)))
        var a = naiveProduct(r, naiveTranspose(r))   // R Rᵀ + I: positive definite
        for i in 0..<n { a[i][i] += 1 }
        let root = nested(try SymmetricEigen(Matrix(a)).inverseSquareRoot)
        #expect(maxRelativeDifference(root, naiveTranspose(root)) <= Tolerance.independentRoute)
        #expect(maxRelativeDifference(naiveProduct(naiveProduct(root, a), root), naiveIdentity(n)) <= Tolerance.independentRoute)
    }

    @Test("SymmetricEigen reconstructs A = U Λ Uᵀ with orthonormal U and descending eigenvalues",
          arguments: [1, 2, 6, 10])
    func eigenReconstructs(n: Int) throws {
        let r = nested(randomMatrix(n, n, seed: UInt64(30 + n)))
        let a = (0..<n).map { i in (0..<n).map { j in r[i][j] + r[j][i] } }   // symmetric, indefinite
        let e = try SymmetricEigen(Matrix(a))
        #expect(e.values.count == n && e.vectors.rows == n && e.vectors.cols == n)
        for i in 1..<max(n, 1) { #expect(e.values[i - 1] >= e.values[i]) }
        let u = nested(e.vectors)
        let uLambda = u.map { row in row.enumerated().map { $0.element * e.values[$0.offset] } }
        let rebuilt = naiveProduct(uLambda, naiveTranspose(u))
        #expect(maxRelativeDifference(rebuilt, a) <= Tolerance.independentRoute)
        #expect(maxRelativeDifference(naiveProduct(naiveTranspose(u), u), naiveIdentity(n)) <= Tolerance.independentRoute)
        // The trace is the sum of the eigenvalues.
        let trace = (0..<n).reduce(0) { $0 + a[$1][$1] }
        #expect(approximatelyEqual(e.values.reduce(0, +), trace, relative: Tolerance.independentRoute))
    }

    @Test("LUFactorization solves A X = B for a non-symmetric matrix")
    func luSolves() throws {
        let n = 6
        let a = randomMatrix(n, n, seed: 41)
        let xKnown = nested(randomMatrix(n, 2, seed: 42))
        let b = Matrix(naiveProduct(nested(a), xKnown))
        let x = try LUFactorization(a).solve(b)
        #expect(maxRelativeDifference(nested(x), xKnown) <= Tolerance.independentRoute)
    }

    @Test("LUFactorization pivots on a zero leading entry")
    func luPivots() throws {
        // [[0, 1], [2, 0]] x = [3, 4] → x = [2, 3].
        let x = try LUFactorization(Matrix([[0, 1], [2, 0]])).solve(Matrix([[3], [4]]))
        #expect(x == Matrix([[2], [3]]))
    }

    @Test("LUFactorization rejects a singular matrix")
    func luSingular() {
        #expect(throws: GSLError.self) { try LUFactorization(Matrix([[1, 2], [2, 4]])) }
    }

    @Test("solveRight computes B A⁻¹")
    func solveRightWorks() throws {
        let a = randomMatrix(4, 4, seed: 51)
        let xKnown = nested(randomMatrix(3, 4, seed: 52))
        let b = Matrix(naiveProduct(xKnown, nested(a)))
        #expect(maxRelativeDifference(nested(try solveRight(b, a)), xKnown) <= Tolerance.independentRoute)
    }
}
