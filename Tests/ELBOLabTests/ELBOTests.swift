import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The exact ELBO (§6), the gap decomposition (§10), the closed-form optima of q (§6) and of
/// θ given q (variational M-step), each against a route that does not share their code.
@Suite("Exact ELBO, scorer and closed-form optima")
struct ELBOTests {
    static let n = 12, d = 5, j = 3

    @Test("log p(y_n) − ELBO_n = KL(q_n ‖ p(z_n | y_n)) ≥ 0 for random q", arguments: GaussianPosteriors.Family.allCases)
    func jensenGapIsPosteriorKL(family: GaussianPosteriors.Family) throws {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 11)
        let q = VT.randomPosteriors(family, count: Self.n, latent: Self.j, rng: RandomSource(seed: 101))
        let elbo = ExactELBO.pointValues(data: p.data, model: p.model, q: q)
        // log p(y_n) from the dense D × D Gaussian density, not through the model's Woodbury path.
        let logp = VT.directLogDensities(model: p.model, data: p.data)
        let post = try p.model.posterior(of: p.data)
        for n in 0..<Self.n {
            let kl = try ExactELBO.gaussianKL(mean: q.means.row(n), covariance: q.covariance(of: n),
                                              toMean: post.means.row(n), covariance: post.covariance)
            #expect(kl > 0, "KL of a random q to the posterior must be positive, got \(kl) at point \(n)")
            #expect(abs((logp[n] - elbo[n]) - kl) <= VT.identityTolerance * (1 + abs(logp[n])),
                    "point \(n): log p − ELBO = \(logp[n] - elbo[n]), KL = \(kl)")
        }
        // The model's own log-likelihood agrees with the dense route too.
        let ll = try p.model.pointLogLikelihoods(of: p.data)
        VT.expectClose(ll, logp, tolerance: VT.identityTolerance, "log p(y_n): model vs dense density")
    }

    @Test("the full-family closed-form optimum closes the gap: ELBO_n = log p(y_n)")
    func fullOptimumIsExact() throws {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 12)
        let q = try GaussianPosteriors.optimal(.full, model: p.model, data: p.data)
        let elbo = ExactELBO.pointValues(data: p.data, model: p.model, q: q)
        let logp = VT.directLogDensities(model: p.model, data: p.data)
        VT.expectClose(elbo, logp, tolerance: VT.identityTolerance, "ELBO_n at the exact posterior vs log p(y_n)")
        let score = try Scorer.score(data: p.data, model: p.model, q: q)
        #expect(abs(score.approximationGap) <= VT.identityTolerance)
        #expect(abs(score.amortizationGap) <= VT.identityTolerance)
        // And any other full-covariance q is strictly worse.
        let other = VT.randomPosteriors(.full, count: Self.n, latent: Self.j, rng: RandomSource(seed: 5))
        let worse = ExactELBO.pointValues(data: p.data, model: p.model, q: other)
        for n in 0..<Self.n { #expect(worse[n] < logp[n]) }
    }

    /// The mean-field q of point n with means and log-variances as flat vectors.
    private func diagonalQ(means: Matrix, logVariances: Matrix) -> GaussianPosteriors {
        GaussianPosteriors(means: means, family: .diagonal,
                           scales: Matrix(rows: means.rows, cols: means.cols, storage: logVariances.storage.map { exp($0) }))
    }

    @Test("the closed-form mean-field optimum has zero exact gradient and beats perturbations of it")
    func meanFieldOptimumIsStationary() throws {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 13)
        let best = try GaussianPosteriors.optimal(.diagonal, model: p.model, data: p.data)
        #expect(best.isShared)
        let m = best.means
        var lv = Matrix(rows: Self.n, cols: Self.j)
        for r in 0..<Self.n { for k in 0..<Self.j { lv[r, k] = log(best.scales[0, k]) } }
        // The library's exact gradient (checked against differences in GradientTests) …
        let g = ELBOGradient.meanField(batch: Batch(p.data), model: p.model, means: m, logVariances: lv,
                                       estimator: .exact, kl: .analytic, samples: 1, rng: RandomSource(seed: 0))
        // … compared with its size at a random q, so "zero" is relative to the problem.
        let random = VT.randomPosteriors(.diagonal, count: Self.n, latent: Self.j, rng: RandomSource(seed: 6))
        let gRandom = ELBOGradient.meanField(batch: Batch(p.data), model: p.model, means: random.means,
                                             logVariances: Matrix(rows: Self.n, cols: Self.j, storage: random.scales.storage.map { log($0) }),
                                             estimator: .exact, kl: .analytic, samples: 1, rng: RandomSource(seed: 0))
        let scale = (gRandom.means.storage + gRandom.logVariances.storage).map(abs).max()!
        #expect(scale > 0.1)
        let worst = (g.means.storage + g.logVariances.storage).map(abs).max()!
        #expect(worst <= VT.stationaryTolerance * scale, "gradient at the optimum: \(worst) (scale \(scale))")
        // Independent route: central differences of the exact ELBO of each point at the optimum.
        for n in 0..<Self.n {
            let x0 = m.row(n) + lv.row(n)
            let one = VT.subset(p.data, rows: [n])
            let fd = VT.numericGradient(at: x0) { x in
                let q = diagonalQ(means: Matrix(rows: 1, cols: Self.j, storage: Array(x[0..<Self.j])),
                                  logVariances: Matrix(rows: 1, cols: Self.j, storage: Array(x[Self.j...])))
                return ExactELBO.average(data: one, model: p.model, q: q)
            }
            #expect(fd.map(abs).max()! <= 1e-7, "point \(n): finite-difference gradient at the optimum \(fd)")
        }
        // Random perturbations (of every point's means and log-variances) lower every ELBO_n.
        let optimum = ExactELBO.pointValues(data: p.data, model: p.model, q: diagonalQ(means: m, logVariances: lv))
        let rng = RandomSource(seed: 77)
        for trial in 0..<50 {
            let size = 1e-3 * pow(10, Double(trial % 4))    // 1e-3 … 1
            var pm = m, pl = lv
            for i in pm.storage.indices { pm.storage[i] += size * rng.gaussian(); pl.storage[i] += size * rng.gaussian() }
            let values = ExactELBO.pointValues(data: p.data, model: p.model, q: diagonalQ(means: pm, logVariances: pl))
            for n in 0..<Self.n {
                #expect(values[n] < optimum[n], "trial \(trial), point \(n): perturbed \(values[n]) ≥ optimum \(optimum[n])")
            }
        }
    }

    @Test("Scorer: gaps sum to log p − ELBO; each part matches its own route", arguments: GaussianPosteriors.Family.allCases)
    func scorerDecomposition(family: GaussianPosteriors.Family) throws {
        let p = VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 14)
        let q = VT.randomPosteriors(family, count: Self.n, latent: Self.j, rng: RandomSource(seed: 102))
        let s = try Scorer.score(data: p.data, model: p.model, q: q)
        let logp = VT.directLogDensities(model: p.model, data: p.data)
        let meanLogp = logp.reduce(0, +) / Double(Self.n)
        #expect(abs(s.logLikelihood - meanLogp) <= VT.identityTolerance * (1 + abs(meanLogp)))
        #expect(abs(s.elbo - ExactELBO.average(data: p.data, model: p.model, q: q)) <= VT.identityTolerance * (1 + abs(s.elbo)))
        #expect(abs(s.approximationGap + s.amortizationGap - (s.logLikelihood - s.elbo)) <= VT.identityTolerance * (1 + abs(s.elbo)))
        #expect(s.amortizationGap > 0, "a random q is worse than the best of its family")
        #expect(s.approximationGap >= -VT.identityTolerance)
        // The approximation gap in closed form: 0 for the full family; for the diagonal family
        // KL(N(μ, diag(s2/M_jj)) ‖ N(μ, s2 M⁻¹)) = ½ (Σ_j log M_jj − log|M|), the same for every point.
        let mm = VT.nested(p.model.innerMatrix)
        let expected = family == .full ? 0 : 0.5 * ((0..<Self.j).reduce(0) { $0 + log(mm[$1][$1]) } - VT.logDeterminant(mm))
        #expect(family == .full || expected > 1e-3, "the test model must have a non-trivial mean-field gap")
        #expect(abs(s.approximationGap - expected) <= VT.identityTolerance, "approximation gap \(s.approximationGap) vs \(expected)")
        // The amortisation gap is ELBO(q*) − ELBO(q) with q* the best of the family.
        let best = try GaussianPosteriors.optimal(family, model: p.model, data: p.data)
        let amort = ExactELBO.average(data: p.data, model: p.model, q: best) - ExactELBO.average(data: p.data, model: p.model, q: q)
        #expect(abs(s.amortizationGap - amort) <= VT.identityTolerance * (1 + abs(amort)))
    }

    /// θ given q: the average exact ELBO as a function of the flat θ = [W, b, s2].
    private func elbo(_ x: [Double], like m: LinearGaussianModel, data: Dataset, q: GaussianPosteriors) -> Double {
        ExactELBO.average(data: data, model: VT.model(x, like: m), q: q)
    }

    static let constraintCases: [(String, ModelConstraints)] = [
        ("free", .free), ("zero offset", ModelConstraints(zeroOffset: true)),
        ("fixed s2", ModelConstraints(noiseVariance: 0.8)),
    ]

    @Test("maximizingELBO: zero θ-gradient given q, and beats perturbations",
          arguments: GaussianPosteriors.Family.allCases, [0, 1, 2])
    func mStepIsTheMaximiser(family: GaussianPosteriors.Family, constraintIndex: Int) throws {
        let (label, constraints) = Self.constraintCases[constraintIndex]
        let p = VT.problem(count: 40, dimension: Self.d, latent: Self.j, seed: 15)
        let q = VT.randomPosteriors(family, count: 40, latent: Self.j, rng: RandomSource(seed: 103))
        let theta = try LinearGaussianModel.maximizingELBO(data: p.data, q: q, constraints: constraints)
        if constraints.zeroOffset { #expect(theta.offset.allSatisfy { $0 == 0 }, "\(label): b must stay 0") }
        if let s2 = constraints.noiseVariance { #expect(theta.noiseVariance == s2, "\(label): s2 must stay \(s2)") }
        // Which flat coordinates are free: W always, b unless held at 0, s2 unless fixed.
        let dj = Self.d * Self.j
        var free = Array(0..<dj)
        if !constraints.zeroOffset { free += dj..<(dj + Self.d) }
        if constraints.noiseVariance == nil { free.append(dj + Self.d) }
        let x0 = VT.flat(theta)
        // Central differences of the exact ELBO (an independent route) vanish on the free coordinates …
        let fd = VT.numericGradient(at: x0) { elbo($0, like: theta, data: p.data, q: q) }
        // … relative to their size at the model the data were not fitted with.
        let fdRandom = VT.numericGradient(at: VT.flat(p.model)) { elbo($0, like: p.model, data: p.data, q: q) }
        let scale = free.map { abs(fdRandom[$0]) }.max()!
        #expect(scale > 0.1)
        let worstFD = free.map { abs(fd[$0]) }.max()!
        #expect(worstFD <= 1e-7 * scale, "\(label): finite-difference θ-gradient at the M-step \(worstFD) (scale \(scale))")
        // … and so does the library's analytic gradient.
        let g = VT.flat(ELBOGradient.model(batch: Batch(p.data), model: theta, locations: q.means, covarianceSum: q.covarianceSum()))
        let worst = free.map { abs(g[$0]) }.max()!
        #expect(worst <= VT.stationaryTolerance * scale, "\(label): analytic θ-gradient at the M-step \(worst)")
        // Perturbing the free coordinates, at every scale, lowers the ELBO.
        let best = elbo(x0, like: theta, data: p.data, q: q)
        let rng = RandomSource(seed: 88)
        for trial in 0..<40 {
            let size = 1e-3 * pow(10, Double(trial % 4))
            var x = x0
            for i in free { x[i] += size * rng.gaussian() * (i == dj + Self.d ? x0[i] : 1) }
            if x[dj + Self.d] <= 0 { continue }
            let value = elbo(x, like: theta, data: p.data, q: q)
            #expect(value < best, "\(label), trial \(trial): perturbed \(value) ≥ M-step \(best)")
        }
    }
}
