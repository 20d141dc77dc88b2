import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Shapes (D, J) the exact formulas are checked on, the scalar case D = J = 1 included.
private let shapes: [(Int, Int)] = [(1, 1), (2, 1), (3, 3), (5, 2), (10, 3), (12, 1)]

/// A model of shape (D, J) with s2 drawn in [0.2, 2.2], and data around it that are *not* drawn
/// from it (extra spread and a shifted mean), so the check is not confined to typical points.
private func modelAndData(_ d: Int, _ j: Int, count: Int = 50, offsetScale: Double = 1) -> (LinearGaussianModel, Dataset) {
    let s2 = 0.2 + 2 * RandomSource(seed: UInt64(100 * d + j)).uniform()
    let model = randomModel(dimension: d, latent: j, noiseVariance: s2, offsetScale: offsetScale, seed: UInt64(d * 31 + j))
    var spread = model
    spread.noiseVariance = 3 * s2
    spread.offset = model.offset.map { $0 + 0.5 }
    return (model, Dataset(points: simulate(spread, count: count, seed: UInt64(d + 7 * j)), name: "shape \(d)x\(j)"))
}

@Suite("LinearGaussianModel")
struct LinearGaussianModelTests {
    @Test("Woodbury point log-likelihoods equal the direct D×D Cholesky computation", arguments: shapes)
    func woodburyMatchesDirect(shape: (Int, Int)) throws {
        let (d, j) = shape
        let (model, data) = modelAndData(d, j)
        let woodbury = try model.pointLogLikelihoods(of: data)
        let direct = directLogLikelihoods(model, points: data.points)
        #expect(woodbury.count == data.count)
        for n in 0..<data.count {
            #expect(approximatelyEqual(woodbury[n], direct[n], relative: Tolerance.independentRoute),
                    "point \(n): Woodbury \(woodbury[n]) vs direct \(direct[n])")
        }
        let average = try model.logLikelihood(of: data)
        #expect(approximatelyEqual(average, directAverageLogLikelihood(model, points: data.points), relative: Tolerance.independentRoute))
    }

    @Test("Woodbury log-likelihood stays exact on unstandardised data (offset ≈ 1e3)", arguments: [(4, 2), (1, 1)])
    func woodburyLargeOffset(shape: (Int, Int)) throws {
        let (model, data) = modelAndData(shape.0, shape.1, offsetScale: 1_000)
        let woodbury = try model.pointLogLikelihoods(of: data)
        let direct = directLogLikelihoods(model, points: data.points)
        for n in 0..<data.count {
            #expect(approximatelyEqual(woodbury[n], direct[n], relative: Tolerance.independentRoute))
        }
    }

    @Test("log|C| by Woodbury equals the log-determinant of the D×D covariance", arguments: shapes)
    func logDeterminant(shape: (Int, Int)) throws {
        let (model, _) = modelAndData(shape.0, shape.1)
        let l = try #require(naiveCholesky(marginalCovariance(model)))
        #expect(approximatelyEqual(try model.logDeterminantCovariance(), naiveLogDeterminant(l), relative: Tolerance.independentRoute))
    }

    @Test("the posterior equals Gaussian conditioning on the joint covariance of (z, y)", arguments: shapes)
    func posteriorByConditioning(shape: (Int, Int)) throws {
        let (d, j) = shape
        let (model, data) = modelAndData(d, j, count: 20)
        let (means, covariance) = try model.posterior(of: data)
        #expect(means.rows == data.count && means.cols == j)
        #expect(covariance.rows == j && covariance.cols == j)
        // Joint: cov(z) = I, cov(z, y) = Wᵀ, cov(y) = C. Conditioning:
        // E[z | y] = Wᵀ C⁻¹ (y − b),  cov[z | y] = I − Wᵀ C⁻¹ W.
        let l = try #require(naiveCholesky(marginalCovariance(model)))
        let w = nested(model.loadings)
        let cInvW = naiveTranspose((0..<j).map { k in naiveCholeskySolve(l, w.map { $0[k] }) })   // D × J
        var expectedCov = naiveProduct(naiveTranspose(w), cInvW)
        for a in 0..<j { for b in 0..<j { expectedCov[a][b] = (a == b ? 1 : 0) - expectedCov[a][b] } }
        #expect(maxRelativeDifference(nested(covariance), expectedCov) <= Tolerance.independentRoute)
        let points = data.points
        for n in 0..<data.count {
            let r = (0..<d).map { points[n, $0] - model.offset[$0] }
            let x = naiveCholeskySolve(l, r)
            let expectedMean = (0..<j).map { k in (0..<d).reduce(0) { $0 + w[$1][k] * x[$1] } }
            #expect(maxRelativeDifference([means.row(n)], [expectedMean]) <= Tolerance.independentRoute, "point \(n)")
        }
    }

    @Test("projections are Wᵀ(y_n − b) and residual norms are ‖y_n − W m_n − b‖², across blocks")
    func projectionsAndResiduals() throws {
        // 2,500 points span three 1,024-point blocks of the residual loop.
        let (model, data) = modelAndData(4, 2, count: 2_500)
        let points = data.points
        let p = model.projections(of: data)
        let m = randomMatrix(rows: data.count, cols: 2, seed: 61)
        let res = model.residualSquaredNorms(of: data, means: m)
        for n in 0..<data.count {
            let r = (0..<4).map { points[n, $0] - model.offset[$0] }
            let expectedP = (0..<2).map { k in (0..<4).reduce(0) { $0 + model.loadings[$1, k] * r[$1] } }
            #expect(maxRelativeDifference([p.row(n)], [expectedP]) <= Tolerance.independentRoute)
            var sq = 0.0
            for i in 0..<4 {
                let e = r[i] - (0..<2).reduce(0) { $0 + model.loadings[i, $1] * m[n, $1] }
                sq += e * e
            }
            #expect(approximatelyEqual(res[n], sq, relative: Tolerance.independentRoute))
        }
    }

    @Test("sample(count:) draws from N(b, W Wᵀ + s2 I): mean and covariance within 4 standard errors")
    func sampleMoments() {
        let n = 20_000
        let model = randomModel(dimension: 3, latent: 2, noiseVariance: 0.5, seed: 71)
        let y = model.sample(count: n, using: RandomSource(seed: 72))
        let c = marginalCovariance(model)
        let data = Dataset(points: y)
        for i in 0..<3 {
            // SE of a sample mean is √(C_ii/N).
            let se = (c[i][i] / Double(n)).squareRoot()
            #expect(abs(data.mean[i] - model.offset[i]) <= Tolerance.monteCarloSigmas * se, "mean \(i)")
            for k in 0..<3 {
                // For Gaussian data, var(Ŝ_ik) ≈ (C_ii C_kk + C_ik²)/N.
                let seCov = ((c[i][i] * c[k][k] + c[i][k] * c[i][k]) / Double(n)).squareRoot()
                #expect(abs(data.covariance[i, k] - c[i][k]) <= Tolerance.monteCarloSigmas * seCov, "covariance (\(i), \(k))")
            }
        }
    }

    @Test("sample(count:) is reproducible from the seed")
    func sampleReproducible() {
        let model = randomModel(dimension: 4, latent: 2, noiseVariance: 1)
        #expect(model.sample(count: 10, using: RandomSource(seed: 3)) == model.sample(count: 10, using: RandomSource(seed: 3)))
        #expect(model.sample(count: 10, using: RandomSource(seed: 3)) != model.sample(count: 10, using: RandomSource(seed: 4)))
    }

    @Test("invalid parameters are refused, not turned into NaN")
    func invalidParameters() {
        let data = Dataset(points: Matrix([[1, 2], [3, 5], [0, 1]]))
        var model = randomModel(dimension: 2, latent: 1, noiseVariance: 1)
        model.noiseVariance = 0
        #expect(throws: InputError.self) { try model.logLikelihood(of: data) }
        model.noiseVariance = -1
        #expect(throws: InputError.self) { try model.posterior(of: data) }
        model.noiseVariance = 1
        model.loadings[0, 0] = .nan
        #expect(throws: InputError.self) { try model.logLikelihood(of: data) }
    }

    @Test("random(dimension:…) and initial(for:…) honour their shapes and constraints")
    func constructors() {
        let m = LinearGaussianModel.random(dimension: 5, latent: 2, noiseVariance: 0.3, zeroOffset: true, using: RandomSource(seed: 1))
        #expect(m.dimension == 5 && m.latent == 2 && m.noiseVariance == 0.3 && m.offset == [0, 0, 0, 0, 0])
        let data = Dataset(points: Matrix([[1, 2, 3], [2, 2, 5], [0, 1, 1], [4, 0, 2]]))
        let free = LinearGaussianModel.initial(for: data, latent: 1, constraints: .free, using: RandomSource(seed: 2))
        #expect(free.offset == data.mean)
        #expect(approximatelyEqual(free.noiseVariance, data.covariance.trace / 3, relative: Tolerance.rounding))
        let held = LinearGaussianModel.initial(for: data, latent: 1, constraints: ModelConstraints(noiseVariance: 0.7, zeroOffset: true),
                                               using: RandomSource(seed: 2))
        #expect(held.noiseVariance == 0.7 && held.offset == [0, 0, 0])
        #expect(held.loadings == free.loadings)
    }

    @Test("neumaierSum keeps what plain summation loses")
    func compensatedSum() {
        #expect(neumaierSum([1e16, 1, -1e16]) == 1)
        #expect(neumaierSum([]) == 0)
        #expect(neumaierSum(Array(repeating: 0.1, count: 10)) == 1)
    }
}

/// An `rows × cols` matrix of N(0, 1) entries.
private func randomMatrix(rows: Int, cols: Int, seed: UInt64) -> Matrix {
    let r = RandomSource(seed: seed)
    var m = Matrix(rows: rows, cols: cols)
    r.fillGaussian(&m.storage)
    return m
}
