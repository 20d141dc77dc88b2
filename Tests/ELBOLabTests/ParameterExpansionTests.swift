import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Parameter expansion (`--acceleration px`, the default of em and of per-datapoint variational
/// EM): the expanded M-step fits a prior N(μ, L Lᵀ) on z, then maps back to N(0, I).
@Suite("Parameter-expanded EM")
struct ParameterExpansionTests {
    /// One step from a θ that is not a fixed point (b ≠ ȳ, random W), exact or mean-field.
    static func step(full: Bool, constraints: ModelConstraints, expanded: Bool, from model: LinearGaussianModel,
                     data: Dataset) throws -> (model: LinearGaussianModel, reduction: LatentReduction?) {
        full ? try model.emStepAndReduction(on: data, constraints: constraints, expanded: expanded)
             : try model.meanFieldEMStepAndReduction(on: data, constraints: constraints, expanded: expanded)
    }

    static let cases: [(full: Bool, zeroOffset: Bool)] = [(true, false), (true, true), (false, false), (false, true)]

    @Test("the reduced (θ, q) has the ELBO of the expanded model with prior N(μ, L Lᵀ); its W*, b*, s2 are the plain step's; the ELBO does not fall",
          arguments: cases)
    func reductionIsAChangeOfVariables(full: Bool, zeroOffset: Bool) throws {
        let p = VT.problem(count: 150, dimension: 6, latent: 3, seed: 61)
        let constraints = ModelConstraints(noiseVariance: nil, zeroOffset: zeroOffset)
        var start = p.model
        // The exact EM step takes its E-step about b = ȳ (the MLE of b for any W): start there.
        if full { start.offset = p.data.mean }
        if zeroOffset { start.offset = [Double](repeating: 0, count: 6) }
        let family: GaussianPosteriors.Family = full ? .full : .diagonal
        let q = try GaussianPosteriors.optimal(family, model: start, data: p.data)
        let (reduced, reduction) = try Self.step(full: full, constraints: constraints, expanded: true, from: start, data: p.data)
        let r = try #require(reduction)
        let plain = try Self.step(full: full, constraints: constraints, expanded: false, from: start, data: p.data).model

        // The expanded θ*: W* = W L⁻¹, b* = b − W* μ (L lower triangular, J = 3).
        let j = 3, d = 6
        let l = VT.nested(r.scale)
        var wStar = Matrix(rows: d, cols: j)
        for i in 0..<d {
            // Solve x L = w_i (row vector) by back substitution.
            for c in stride(from: j - 1, through: 0, by: -1) {
                var s = reduced.loadings[i, c]
                for k in (c + 1)..<j { s -= wStar[i, k] * l[k][c] }
                wStar[i, c] = s / l[c][c]
            }
        }
        let bStar = (0..<d).map { i in reduced.offset[i] - (0..<j).reduce(0) { $0 + wStar[i, $1] * r.shift[$1] } }
        let expandedModel = LinearGaussianModel(loadings: wStar, offset: bStar, noiseVariance: reduced.noiseVariance)
        VT.expectClose(VT.flat(expandedModel), VT.flat(plain), tolerance: VT.identityTolerance, "W*, b*, s2 against the plain step")

        // The expanded ELBO by plain loops: E_q log p(y | z; θ*) − KL(q ‖ N(μ, C)), C = L Lᵀ.
        var c = [[Double]](repeating: [Double](repeating: 0, count: j), count: j)
        for a in 0..<j { for b in 0..<j { for k in 0..<j { c[a][b] += l[a][k] * l[b][k] } } }
        let cInverse = VT.nested(try Cholesky(Matrix(rows: j, cols: j, storage: c.flatMap { $0 })).inverse)
        var total = 0.0
        for n in 0..<p.data.count {
            let m = q.means.row(n), s = VT.nested(q.covariance(of: n))
            var expected = VT.logLikelihood(y: p.data.points.row(n), given: m, model: expandedModel)
            var kl = -Double(j) + VT.logDeterminant(c) - VT.logDeterminant(s)
            for a in 0..<j {
                for b in 0..<j {
                    var g = 0.0
                    for i in 0..<d { g += wStar[i, a] * wStar[i, b] }
                    expected -= g * s[b][a] / (2 * reduced.noiseVariance)
                    let spread: Double = s[b][a] + (m[a] - r.shift[a]) * (m[b] - r.shift[b])
                    kl += cInverse[a][b] * spread
                }
            }
            total += expected - 0.5 * kl
        }
        let expandedELBO = total / Double(p.data.count)
        let reducedELBO = ExactELBO.average(data: p.data, model: reduced, q: r.apply(to: q))
        #expect(approximatelyEqual(reducedELBO, expandedELBO, relative: Tolerance.independentRoute), "\(reducedELBO) vs \(expandedELBO)")
        // The expanded M-step maximises over a family that contains the old θ with μ = 0, C = I.
        let before = ExactELBO.average(data: p.data, model: start, q: q)
        #expect(reducedELBO >= before, "ELBO fell from \(before) to \(reducedELBO)")
    }

    @Test("on columns in mixed units, px reaches the MLE within 1e-8 in 200 steps, log p / the ELBO never falling; plain steps are 1e-3 short after 2000",
          arguments: [Strategy.em, .perDatapoint])
    func fastWherePlainCrawls(strategy: Strategy) throws {
        let data = NumericalExtremesTests.mixedUnits()
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: 2).logLikelihood
        func run(_ acceleration: Acceleration, steps: Int) throws -> (gap: Double, monotone: Bool) {
            var o = FitOptions(strategy: strategy, latent: 2)
            o.acceleration = acceleration
            let engine = try makeEngine(o, data: data)
            var previous = -Double.infinity, monotone = true
            for _ in 0..<steps {
                _ = try engine.step()
                let value = ExactELBO.average(data: data, model: engine.model, q: try engine.posteriors())
                // Rounding of an average of terms of size ~|value| ≈ 30.
                if value < previous - 1e-12 * abs(value) { monotone = false }
                previous = value
            }
            return (mle - previous, monotone)
        }
        let px = try run(.px, steps: 200), plain = try run(.none, steps: 2000)
        #expect(px.monotone && px.gap <= 1e-8 && px.gap >= -Tolerance.emToMLE, "px: \(px)")
        #expect(plain.gap > 1e-3, "plain steps are within \(plain.gap): the case does not show the slow direction")
    }

    @Test("px is the default of em and of per-datapoint with closed-form steps only")
    func defaults() {
        #expect(FitOptions(strategy: .em, latent: 2).resolvedAcceleration == .px)
        var o = FitOptions(strategy: .perDatapoint, latent: 2)
        #expect(o.resolvedAcceleration == .px)
        o.eSolver = .adam
        #expect(o.resolvedAcceleration == Acceleration.none)
        o = FitOptions(strategy: .perDatapoint, latent: 2)
        o.mStep = .gradient
        #expect(o.resolvedAcceleration == Acceleration.none)
        #expect(FitOptions(strategy: .joint, latent: 2).resolvedAcceleration == Acceleration.none)
    }
}
