import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The Monte Carlo estimators of §8 against the closed forms of §6–§7: means over many draws
/// within `VT.standardErrors` standard errors, per coordinate, with fixed seeds.
@Suite("Monte Carlo estimators")
struct EstimatorTests {
    /// A small problem: N = 5, D = 4, J = 2.
    static let n = 5, d = 4, j = 2

    struct Setup {
        let batch: Batch
        let model: LinearGaussianModel
        let means: Matrix
        let logVariances: Matrix
    }

    static func setup() -> Setup {
        let p = VT.problem(count: n, dimension: d, latent: j, seed: 31)
        let rng = RandomSource(seed: 301)
        var m = Matrix(rows: n, cols: j), lv = Matrix(rows: n, cols: j)
        rng.fillGaussian(&m.storage)
        for i in lv.storage.indices { lv.storage[i] = 0.5 * rng.gaussian() }
        return Setup(batch: Batch(p.data), model: p.model, means: m, logVariances: lv)
    }

    static func exact(_ s: Setup) -> [Double] {
        VT.flat(ELBOGradient.meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                       estimator: .exact, kl: .analytic, samples: 1, rng: RandomSource(seed: 0)))
    }

    /// `replications` independent calls of the estimator on one long seeded stream.
    static func draws(_ s: Setup, estimator: GradientEstimator, kl: KLEstimator, samples: Int,
                      replications: Int, seed: UInt64) -> VT.Moments {
        let rng = RandomSource(seed: seed)
        var moments = VT.Moments(dimension: d * j + d + 1 + 2 * n * j)
        for _ in 0..<replications {
            moments.add(VT.flat(ELBOGradient.meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                                       estimator: estimator, kl: kl, samples: samples, rng: rng)))
        }
        return moments
    }

    /// Names of the flat coordinates, for messages.
    static func coordinate(_ i: Int) -> String {
        let w = d * j
        if i < w { return "∂W[\(i / j),\(i % j)]" }
        if i < w + d { return "∂b[\(i - w)]" }
        if i == w + d { return "∂s2" }
        let k = i - w - d - 1
        return k < n * j ? "∂m[\(k / j),\(k % j)]" : "∂log v[\((k - n * j) / j),\((k - n * j) % j)]"
    }

    static let cases: [(GradientEstimator, KLEstimator, Int, Int)] = [
        // estimator, KL, samples per call, replications
        (.reparam, .analytic, 1, 40_000),
        (.reparam, .mc, 1, 40_000),
        // The path-derivative estimator drops a zero-mean term: still unbiased.
        (.reparam, .stl, 1, 40_000),
        // The leave-one-out baseline of the score estimator needs K ≥ 2 samples per call.
        (.score, .analytic, 4, 40_000),
        (.score, .mc, 4, 40_000),
    ]

    @Test("meanField estimators are unbiased: mean of draws = exact gradient within 4 SE, per coordinate", arguments: 0..<5)
    func unbiased(index: Int) {
        let (estimator, kl, samples, replications) = Self.cases[index]
        let s = Self.setup()
        let exact = Self.exact(s)
        let m = Self.draws(s, estimator: estimator, kl: kl, samples: samples, replications: replications, seed: 3000 + UInt64(index))
        let se = m.standardError
        for i in exact.indices {
            #expect(abs(m.mean[i] - exact[i]) <= VT.standardErrors * se[i],
                    "\(estimator)/\(kl) \(Self.coordinate(i)): mean \(m.mean[i]) vs exact \(exact[i]), SE \(se[i])")
            #expect(se[i] > 0, "\(estimator)/\(kl) \(Self.coordinate(i)): no Monte Carlo spread")
        }
        // Power: in each block (θ, m, log v) the tolerance is small against the gradients
        // themselves, so a wrong factor or a missing term — a bias of a fifth of the block's
        // typical gradient, e.g. a dropped ½ in ∂/∂log v — would be caught.
        for (block, range) in Self.blocks {
            let widest = range.map { se[$0] }.max()! * VT.standardErrors
            let typical = range.map { abs(exact[$0]) }.reduce(0, +) / Double(range.count)
            #expect(widest <= Self.power * typical,
                    "\(estimator)/\(kl) \(block): 4 SE = \(widest) is too wide against gradients of size \(typical)")
        }
    }

    /// The largest tolerance (4 SE), as a fraction of a block's mean |gradient|, that still makes
    /// the unbiasedness check informative.
    static let power = 0.2

    /// The flat coordinates of θ, of the means and of the log-variances.
    static let blocks: [(String, Range<Int>)] = {
        let t = d * j + d + 1
        return [("θ", 0..<t), ("m", t..<(t + n * j)), ("log v", (t + n * j)..<(t + 2 * n * j))]
    }()

    @Test("pointwiseReparameterized (from p_n = Wᵀ(y_n − b)) = meanField(.reparam)'s q gradient from the same draws, to rounding",
          arguments: KLEstimator.allCases, [1, 3])
    func pointwiseMatchesMeanField(kl: KLEstimator, samples: Int) {
        let s = Self.setup()
        let reference = ELBOGradient.meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                               estimator: .reparam, kl: kl, samples: samples, rng: RandomSource(seed: 17))
        let p = s.model.projections(of: VT.problem(count: Self.n, dimension: Self.d, latent: Self.j, seed: 31).data)   // the data of setup()
        let sd = s.logVariances.storage.map { exp(0.5 * $0) }
        var noise = [Double](repeating: 0, count: Self.n * Self.j)
        var gm = noise, gl = noise
        p.storage.withUnsafeBufferPointer { pp in s.means.storage.withUnsafeBufferPointer { mp in sd.withUnsafeBufferPointer { sp in
            noise.withUnsafeMutableBufferPointer { np in gm.withUnsafeMutableBufferPointer { gmp in gl.withUnsafeMutableBufferPointer { glp in
                ELBOGradient.pointwiseReparameterized(projections: pp, gram: s.model.gram, noiseVariance: s.model.noiseVariance,
                                                      means: mp, scales: sp, kl: kl, samples: samples, rng: RandomSource(seed: 17),
                                                      noise: np, gradMeans: gmp, gradLogVariances: glp)
            } } }
        } } }
        VT.expectClose(gm + gl, reference.means.storage + reference.logVariances.storage, tolerance: VT.identityTolerance,
                       "q gradient, kl \(kl), \(samples) samples")
    }

    @Test("the reparameterised estimator has lower variance than the score one on the same (θ, q)", arguments: KLEstimator.allCases)
    func reparamBeatsScore(kl: KLEstimator) {
        let s = Self.setup()
        let samples = 4, replications = 5_000
        // The same seed: both see the same ε draws (common random numbers).
        let r = Self.draws(s, estimator: .reparam, kl: kl, samples: samples, replications: replications, seed: 41)
        let f = Self.draws(s, estimator: .score, kl: kl, samples: samples, replications: replications, seed: 41)
        // q's coordinates (θ's part is the same pathwise estimator in both).
        let first = Self.d * Self.j + Self.d + 1
        let vr = r.variance, vf = f.variance
        for i in first..<vr.count {
            // The sample variances have relative SE ≈ √(2/R) ≈ 2 % (a few % with heavy tails), and the
            // ratios are ≥ 5 on this problem: a strict comparison is meaningful and stable.
            #expect(vr[i] < vf[i], "\(kl) \(Self.coordinate(i)): reparam variance \(vr[i]) ≥ score variance \(vf[i])")
        }
        let total = (first..<vr.count).reduce(0) { $0 + vr[$1] }, totalScore = (first..<vf.count).reduce(0) { $0 + vf[$1] }
        #expect(total < totalScore)
        // θ's part is the same pathwise estimator in both, on the same draws: identical.
        for i in 0..<first {
            #expect(vr[i] == vf[i] && r.mean[i] == f.mean[i], "\(kl) \(Self.coordinate(i)): θ estimates differ between the estimators")
        }
    }

    /// q_n = p(z_n | y_n) exactly, for a model whose WᵀW is diagonal (so the posterior is mean-field):
    /// m_n = Wᵀ(y_n − b)/(G_kk + s2) and v_k = s2/(G_kk + s2), from the diagonal M = G + s2 I.
    static func diagonalPosteriorSetup() -> Setup {
        let p = VT.problem(count: n, dimension: d, latent: j, seed: 33)
        // Orthogonal columns of different lengths: column k of W is (k + 1)·e_k + (k + 1)·e_{k+j}.
        var w = Matrix(rows: d, cols: j)
        for k in 0..<j { w[k, k] = Double(k + 1); w[k + j, k] = Double(k + 1) }
        let model = LinearGaussianModel(loadings: w, offset: p.data.mean.map { $0 + 0.3 }, noiseVariance: 0.7)
        var m = Matrix(rows: n, cols: j), lv = Matrix(rows: n, cols: j)
        let y = p.data.points
        for r in 0..<n {
            for k in 0..<j {
                let gkk = (0..<d).reduce(0) { $0 + w[$1, k] * w[$1, k] }
                let proj = (0..<d).reduce(0) { $0 + w[$1, k] * (y[r, $1] - model.offset[$1]) }
                m[r, k] = proj / (gkk + model.noiseVariance)
                lv[r, k] = log(model.noiseVariance / (gkk + model.noiseVariance))
            }
        }
        return Setup(batch: Batch(p.data), model: model, means: m, logVariances: lv)
    }

    @Test("the path-derivative (stl) gradient of q is zero for every draw when q is the exact posterior")
    func pathDerivativeVanishesAtThePosterior() {
        let s = Self.diagonalPosteriorSetup()
        let first = Self.d * Self.j + Self.d + 1
        // The exact gradient is zero there: q is the optimum (an independent check of the set-up).
        let exact = Self.exact(s)
        let stl = Self.draws(s, estimator: .reparam, kl: .stl, samples: 1, replications: 200, seed: 51)
        let mc = Self.draws(s, estimator: .reparam, kl: .mc, samples: 1, replications: 200, seed: 51)
        // Rounding scale: the size of the terms that cancel (g − z and ε/s, as large as the MC spread).
        let scale = (first..<exact.count).map { mc.variance[$0].squareRoot() }.max()!
        for i in first..<exact.count {
            #expect(abs(exact[i]) <= Tolerance.independentRoute * scale, "\(Self.coordinate(i)): exact gradient \(exact[i]) at the posterior")
            #expect(stl.variance[i].squareRoot() <= Tolerance.independentRoute * scale,
                    "\(Self.coordinate(i)): stl spread \(stl.variance[i].squareRoot()) at the posterior (scale \(scale))")
            #expect(abs(stl.mean[i]) <= Tolerance.independentRoute * scale, "\(Self.coordinate(i)): stl mean \(stl.mean[i])")
            // Power: the plain fully-MC estimator on the same draws is noisy there.
            #expect(mc.variance[i].squareRoot() > 0.01 * scale, "\(Self.coordinate(i)): the mc estimator has no spread to remove")
        }
        // θ's gradient is the same pathwise estimator under every KL term (and stays noisy).
        for i in 0..<first { #expect(stl.mean[i] == mc.mean[i] && stl.variance[i] > 0) }
    }

    @Test("Monte Carlo ELBO estimates (analytic KL; fully MC) match ExactELBO within 4 SE",
          arguments: GaussianPosteriors.Family.allCases)
    func monteCarloELBO(family: GaussianPosteriors.Family) {
        let count = 20, dim = 5, latent = 3
        let p = VT.problem(count: count, dimension: dim, latent: latent, seed: 32)
        let q = VT.randomPosteriors(family, count: count, latent: latent, rng: RandomSource(seed: 302))
        let exact = ExactELBO.average(data: p.data, model: p.model, q: q)
        let y = p.data.points
        let factors = (0..<count).map { VT.choleskyFactor(of: q, point: $0) }
        let kl = (0..<count).map { VT.klToPrior(mean: q.means.row($0), cholesky: factors[$0]) }
        let klAverage = kl.reduce(0, +) / Double(count)
        let halfLog2Pi = 0.5 * log(2 * Double.pi)
        let rng = RandomSource(seed: 303)
        let draws = 5_000
        var moments = VT.Moments(dimension: 3)
        var eps = [Double](repeating: 0, count: latent), z = eps
        for _ in 0..<draws {
            var analytic = 0.0, full = 0.0, plugIn = 0.0
            for n in 0..<count {
                rng.fillGaussian(&eps)
                let l = factors[n]
                for a in 0..<latent {
                    z[a] = q.means[n, a]
                    for b in 0...a { z[a] += l[a][b] * eps[b] }
                }
                let logLik = VT.logLikelihood(y: y.row(n), given: z, model: p.model)
                let logPrior = z.reduce(0) { $0 - 0.5 * $1 * $1 } - Double(latent) * halfLog2Pi
                var logQ = eps.reduce(0) { $0 - 0.5 * $1 * $1 } - Double(latent) * halfLog2Pi
                for a in 0..<latent { logQ -= log(l[a][a]) }
                analytic += logLik
                full += logLik + logPrior - logQ
                // A deliberately wrong estimator: log p(y | m) drops the tr(W S Wᵀ) term.
                plugIn += VT.logLikelihood(y: y.row(n), given: q.means.row(n), model: p.model)
            }
            moments.add([analytic / Double(count) - klAverage, full / Double(count), plugIn / Double(count) - klAverage])
        }
        let se = moments.standardError
        #expect(abs(moments.mean[0] - exact) <= VT.standardErrors * se[0],
                "\(family), analytic KL: \(moments.mean[0]) vs exact \(exact), SE \(se[0])")
        #expect(abs(moments.mean[1] - exact) <= VT.standardErrors * se[1],
                "\(family), fully MC: \(moments.mean[1]) vs exact \(exact), SE \(se[1])")
        // The analytic KL removes variance.
        #expect(se[0] < se[1])
        // Power: the comparison is sharp enough to reject the plug-in estimator that omits tr(W S Wᵀ)/(2 s2).
        #expect(abs(moments.mean[2] - exact) > VT.standardErrors * max(se[0], se[1]),
                "\(family): the test cannot tell the plug-in estimator \(moments.mean[2]) from exact \(exact)")
    }
}
