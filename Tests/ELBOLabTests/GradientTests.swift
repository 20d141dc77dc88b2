import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Every analytic gradient of §7 against central finite differences of the exact ELBO (§6).
@Suite("Analytic gradients vs finite differences")
struct GradientTests {
    static let n = 9, d = 5, j = 3

    @Test("ELBOGradient.model (∂W, ∂b, ∂s2) with locations = means, V = Σ S_n", arguments: GaussianPosteriors.Family.allCases)
    func modelGradient(family: GaussianPosteriors.Family) {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 21)
        let q = VT.randomPosteriors(family, count: Self.n, latent: Self.j, rng: RandomSource(seed: 201))
        let g = ELBOGradient.model(batch: Batch(p.data), model: p.model, locations: q.means, covarianceSum: q.covarianceSum())
        let fd = VT.numericGradient(at: VT.flat(p.model)) {
            ExactELBO.average(data: p.data, model: VT.model($0, like: p.model), q: q)
        }
        VT.expectClose(VT.flat(g), fd, tolerance: VT.fdTolerance, "∂ELBO/∂θ, \(family)")
    }

    @Test("ELBOGradient.model with a shared covariance (the exact posterior, one row of scales)")
    func modelGradientSharedCovariance() throws {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 22)
        // The posterior of another model: shared full covariance, not the optimum for p.model.
        let q = try GaussianPosteriors.exactPosterior(of: p.truth, data: p.data)
        #expect(q.isShared)
        let g = ELBOGradient.model(batch: Batch(p.data), model: p.model, locations: q.means, covarianceSum: q.covarianceSum())
        let fd = VT.numericGradient(at: VT.flat(p.model)) {
            ExactELBO.average(data: p.data, model: VT.model($0, like: p.model), q: q)
        }
        VT.expectClose(VT.flat(g), fd, tolerance: VT.fdTolerance, "∂ELBO/∂θ, shared covariance")
    }

    @Test("ELBOGradient.model on a gathered minibatch equals the gradient of that subset's average ELBO")
    func modelGradientOnMinibatch() {
        let p = VT.problem(count: 20, dimension: Self.d, latent: Self.j, seed: 23)
        let rows = [17, 3, 8, 11, 0, 5]
        let q = VT.randomPosteriors(.full, count: rows.count, latent: Self.j, rng: RandomSource(seed: 202))
        var batch = Batch(capacity: rows.count, dimension: Self.d, mean: p.data.mean)
        batch.gather(from: p.data, rows: rows[...])
        let g = ELBOGradient.model(batch: batch, model: p.model, locations: q.means, covarianceSum: q.covarianceSum())
        // The subset as its own data set: a different centring, the same ELBO.
        let sub = VT.subset(p.data, rows: rows)
        let fd = VT.numericGradient(at: VT.flat(p.model)) {
            ExactELBO.average(data: sub, model: VT.model($0, like: p.model), q: q)
        }
        VT.expectClose(VT.flat(g), fd, tolerance: VT.fdTolerance, "∂ELBO/∂θ on a minibatch")
    }

    @Test("ELBOGradient.latent is ∂ log p(y_n | z)/∂z at z_n")
    func latentGradient() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 24)
        var z = Matrix(rows: Self.n, cols: Self.j)
        RandomSource(seed: 203).fillGaussian(&z.storage)
        let g = ELBOGradient.latent(batch: Batch(p.data), model: p.model, locations: z)
        let y = p.data.points
        for n in 0..<Self.n {
            let fd = VT.numericGradient(at: z.row(n)) { VT.logLikelihood(y: y.row(n), given: $0, model: p.model) }
            VT.expectClose(g.row(n), fd, tolerance: VT.fdTolerance, "∂ log p(y|z)/∂z, point \(n)")
        }
    }

    @Test("ELBOGradient.meanField(.exact): ∂/∂m_n and ∂/∂log v_n per point, and ∂/∂θ")
    func exactMeanFieldGradient() {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 25)
        let rng = RandomSource(seed: 204)
        var m = Matrix(rows: Self.n, cols: Self.j), lv = Matrix(rows: Self.n, cols: Self.j)
        rng.fillGaussian(&m.storage)
        for i in lv.storage.indices { lv.storage[i] = 0.5 * rng.gaussian() }
        for kl in KLEstimator.allCases {   // the exact estimator ignores the KL choice
            let g = ELBOGradient.meanField(batch: Batch(p.data), model: p.model, means: m, logVariances: lv,
                                           estimator: .exact, kl: kl, samples: 1, rng: RandomSource(seed: 0))
            // Per point: d ELBO_n / d(m_n, log v_n), on the one-point data set.
            for n in 0..<Self.n {
                let one = VT.subset(p.data, rows: [n])
                let fd = VT.numericGradient(at: m.row(n) + lv.row(n)) { x in
                    let q = GaussianPosteriors(means: Matrix(rows: 1, cols: Self.j, storage: Array(x[0..<Self.j])), family: .diagonal,
                                               scales: Matrix(rows: 1, cols: Self.j, storage: x[Self.j...].map { exp($0) }))
                    return ExactELBO.average(data: one, model: p.model, q: q)
                }
                VT.expectClose(g.means.row(n) + g.logVariances.row(n), fd, tolerance: VT.fdTolerance,
                               "∂ELBO_n/∂(m_n, log v_n), point \(n), kl \(kl)")
            }
            let q = GaussianPosteriors(means: m, family: .diagonal,
                                       scales: Matrix(rows: Self.n, cols: Self.j, storage: lv.storage.map { exp($0) }))
            let fdTheta = VT.numericGradient(at: VT.flat(p.model)) {
                ExactELBO.average(data: p.data, model: VT.model($0, like: p.model), q: q)
            }
            VT.expectClose(VT.flat(g.model), fdTheta, tolerance: VT.fdTolerance, "∂ELBO/∂θ from meanField(.exact)")
        }
    }

    /// One point's exact ELBO for the PointProblem coordinates x (diagonal: [m, log v]; full:
    /// [m, lower triangle of L row by row, log on the diagonal]), through GaussianPosteriors.
    private func pointELBO(_ x: [Double], full: Bool, data one: Dataset, model: LinearGaussianModel) -> Double {
        let j = model.latent
        let m = Matrix(rows: 1, cols: j, storage: Array(x[0..<j]))
        if !full {
            return ExactELBO.average(data: one, model: model, q: GaussianPosteriors(
                means: m, family: .diagonal, scales: Matrix(rows: 1, cols: j, storage: x[j...].map { exp($0) })))
        }
        var l = Matrix(rows: 1, cols: j * j)
        var k = j
        for a in 0..<j { for b in 0...a { l[0, a * j + b] = a == b ? exp(x[k]) : x[k]; k += 1 } }
        return ExactELBO.average(data: one, model: model, q: GaussianPosteriors(means: m, family: .full, scales: l))
    }

    @Test("PointProblem.evaluate: gradient vs differences of its value; value differences = −ELBO differences",
          arguments: [false, true])
    func pointProblem(full: Bool) {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 26)
        let dim = full ? Self.j + Self.j * (Self.j + 1) / 2 : 2 * Self.j
        let problem = PointProblem(latent: Self.j, full: full, gram: p.model.gram, noiseVariance: p.model.noiseVariance)
        let proj = p.model.projections(of: p.data)
        func value(_ x: [Double]) -> Double {
            var grad = [Double](repeating: 0, count: dim)
            return x.withUnsafeBufferPointer { xp in grad.withUnsafeMutableBufferPointer { problem.evaluate(xp, $0) } }
        }
        let rng = RandomSource(seed: 205)
        for n in 0..<Self.n {
            for c in 0..<Self.j { problem.projection[c] = proj[n, c] }
            let one = VT.subset(p.data, rows: [n])
            let x0 = (0..<dim).map { _ in 0.7 * rng.gaussian() }
            var grad = [Double](repeating: 0, count: dim)
            _ = x0.withUnsafeBufferPointer { xp in grad.withUnsafeMutableBufferPointer { problem.evaluate(xp, $0) } }
            VT.expectClose(grad, VT.numericGradient(at: x0, value), tolerance: VT.fdTolerance,
                           "PointProblem gradient, full \(full), point \(n)")
            // The objective is −ELBO_n up to a constant: differences agree.
            for _ in 0..<5 {
                let x1 = (0..<dim).map { _ in 0.7 * rng.gaussian() }
                let dValue = value(x1) - value(x0)
                let dELBO = pointELBO(x1, full: full, data: one, model: p.model) - pointELBO(x0, full: full, data: one, model: p.model)
                #expect(abs(dValue + dELBO) <= VT.identityTolerance * (1 + abs(dELBO)),
                        "full \(full), point \(n): Δvalue \(dValue) vs −ΔELBO \(-dELBO)")
                #expect(abs(dELBO) > 1e-3, "the two points must differ in ELBO for the check to mean anything")
            }
        }
    }

    @Test("PointProblem encode/decode round-trips a q", arguments: GaussianPosteriors.Family.allCases)
    func pointProblemRoundTrip(family: GaussianPosteriors.Family) {
        let q = VT.randomPosteriors(family, count: 4, latent: Self.j, rng: RandomSource(seed: 206))
        let full = family == .full
        let dim = full ? Self.j + Self.j * (Self.j + 1) / 2 : 2 * Self.j
        let problem = PointProblem(latent: Self.j, full: full, gram: Matrix.identity(Self.j), noiseVariance: 1)
        var means = Matrix(rows: 4, cols: Self.j), scales = Matrix(rows: 4, cols: q.scales.cols)
        var x = [Double](repeating: 0, count: dim)
        for n in 0..<4 {
            problem.encode(mean: q.means, scales: q.scales, row: n, point: n, into: &x)
            problem.decode(x, means: &means, scales: &scales, row: n)
        }
        VT.expectClose(means.storage, q.means.storage, tolerance: VT.identityTolerance, "decoded means")
        VT.expectClose(scales.storage, q.scales.storage, tolerance: VT.identityTolerance, "decoded scales")
    }

    static let constraintCases: [ModelConstraints] = [
        .free, ModelConstraints(zeroOffset: true), ModelConstraints(noiseVariance: 0.8),
        ModelConstraints(noiseVariance: 0.8, zeroOffset: true),
    ]

    @Test("ModelParameterization: pullback vs differences through unpack; pack ∘ unpack = id",
          arguments: 0..<4, [ModelParameterization.Units.standard, .common])
    func parameterizationPullback(index: Int, units: ModelParameterization.Units) {
        let constraints = Self.constraintCases[index]
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 27)
        let q = VT.randomPosteriors(.full, count: Self.n, latent: Self.j, rng: RandomSource(seed: 207))
        let param = ModelParameterization(data: p.data, latent: Self.j, constraints: constraints, units: units)
        var model = p.model
        if constraints.zeroOffset { model.offset = [Double](repeating: 0, count: Self.d) }
        if let s2 = constraints.noiseVariance { model.noiseVariance = s2 }
        let x0 = param.pack(model)
        #expect(x0.count == param.count)
        VT.expectClose(VT.flat(param.unpack(x0)), VT.flat(model), tolerance: VT.identityTolerance, "unpack(pack(θ))")
        let g = param.pullback(ELBOGradient.model(batch: Batch(p.data), model: model, locations: q.means,
                                                  covarianceSum: q.covarianceSum()), at: model)
        let fd = VT.numericGradient(at: x0) { ExactELBO.average(data: p.data, model: param.unpack($0), q: q) }
        VT.expectClose(g, fd, tolerance: VT.fdTolerance, "pullback, constraints \(constraints)")
    }
}
