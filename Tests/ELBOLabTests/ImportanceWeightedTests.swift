import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The importance-weighted bound L_K (§13) against the exact ELBO, the exact log p and the
/// closed-form χ²; every Monte Carlo comparison allows `VT.standardErrors` standard errors.
@Suite("Importance-weighted bound")
struct ImportanceWeightedBoundTests {
    static func problem() -> VT.Problem { VT.problem(count: 120, dimension: 6, latent: 2, seed: 91) }

    /// q_n = N(a_n + 0.3 L_A ζ_n, 1.3 A) for the exact posterior N(a_n, A = L_A L_Aᵀ) and fixed ζ_n ~ N(0, I):
    /// not exact, over-dispersed so that E[w^α] exists for α < 4.3 (χ² and the O(1/K²) term finite).
    static func inflatedPosterior(_ p: VT.Problem) throws -> GaussianPosteriors {
        let exact = try GaussianPosteriors.exactPosterior(of: p.model, data: p.data)
        let j = p.model.latent
        let l = exact.scales.storage
        let rng = RandomSource(seed: 17)
        var means = exact.means
        for n in 0..<means.rows {
            let zeta = (0..<j).map { _ in rng.gaussian() }
            for a in 0..<j { for b in 0...a { means[n, a] += 0.3 * l[a * j + b] * zeta[b] } }
        }
        let scale = 1.3.squareRoot()
        return GaussianPosteriors(means: means, family: .full, scales: Matrix(rows: 1, cols: j * j, storage: l.map { scale * $0 }))
    }

    /// A mean-field q that is not the best: the best (§6) with its means 0.3 sd off and its
    /// variances 1.5 times larger.
    static func offsetMeanField(_ p: VT.Problem) throws -> GaussianPosteriors {
        var q = try GaussianPosteriors.optimal(.diagonal, model: p.model, data: p.data)
        let j = p.model.latent
        for n in 0..<q.count { for c in 0..<j { q.means[n, c] += 0.3 * q.scales[0, c].squareRoot() } }
        for c in 0..<j { q.scales[0, c] *= 1.5 }
        return q
    }

    @Test("q = the exact posterior: every weight is p(y), so L_K = log p with zero variance")
    func exactPosterior() throws {
        let p = Self.problem()
        let q = try GaussianPosteriors.exactPosterior(of: p.model, data: p.data)
        let logp = try p.model.logLikelihood(of: p.data)
        for k in [1, 7] {
            let e = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: k, replicates: 4,
                                                         rng: RandomSource(seed: 5))
            #expect(approximatelyEqual(e.value, logp, relative: VT.identityTolerance), "K = \(k): \(e.value) vs log p \(logp)")
            #expect(e.standardError < VT.identityTolerance, "K = \(k): standard error \(e.standardError)")
            #expect(e.draws == p.data.count * k * 4)
        }
    }

    @Test("L_1 is the exact ELBO (§6) within its standard error, for random diagonal and full q")
    func oneParticleIsTheELBO() throws {
        let p = Self.problem()
        for family in GaussianPosteriors.Family.allCases {
            let q = VT.randomPosteriors(family, count: p.data.count, latent: p.model.latent, rng: RandomSource(seed: 8))
            let elbo = ExactELBO.average(data: p.data, model: p.model, q: q)
            let e = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: 1, replicates: 400,
                                                         rng: RandomSource(seed: 9))
            #expect(abs(e.value - elbo) <= VT.standardErrors * e.standardError,
                    "\(family): L_1 \(e.value) ± \(e.standardError) vs ELBO \(elbo)")
            // The check has power: the gap to log p is many standard errors.
            let logp = try p.model.logLikelihood(of: p.data)
            #expect(logp - elbo > 100 * e.standardError)
        }
    }

    @Test("L_K rises with K (beyond its noise) and stays below the exact log p, for a mean-field q that is not exact")
    func monotoneBelowLogLikelihood() throws {
        let p = Self.problem()
        let q = try Self.offsetMeanField(p)
        let logp = try p.model.logLikelihood(of: p.data)
        var previous: ImportanceWeightedEstimate? = nil
        for k in [1, 4, 16, 64] {
            let e = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: k, replicates: 200,
                                                         rng: RandomSource(seed: UInt64(100 + k)))
            #expect(e.value < logp + VT.standardErrors * e.standardError, "K = \(k): \(e.value) above log p \(logp)")
            if let previous {
                let se = (e.standardError * e.standardError + previous.standardError * previous.standardError).squareRoot()
                #expect(e.value - previous.value > VT.standardErrors * se,
                        "K = \(k): \(e.value) not above K = \(previous.particles): \(previous.value) (se \(se))")
            }
            previous = e
        }
    }

    @Test("The closed-form χ²(p ‖ q) of §13 against a Monte Carlo estimate from an independent route")
    func chiSquareAgainstMonteCarlo() throws {
        let p = Self.problem()
        let q = try Self.inflatedPosterior(p)
        let chi = try ImportanceWeightedBound.chiSquare(data: p.data, model: p.model, q: q)
        let direct = VT.directLogDensities(model: p.model, data: p.data)   // log p(y_n), dense D × D route
        let rng = RandomSource(seed: 33)
        let j = p.model.latent, y = p.data.points
        let l = VT.choleskyFactor(of: q, point: 0)
        let logDetS = l.indices.reduce(0.0) { $0 + 2 * log(l[$1][$1]) }
        for n in [0, 7, 42] {
            // (p(z|y)/q(z))² = (w / p(y))² with w = p(y|z) p(z) / q(z), all by plain loops.
            var moments = VT.Moments(dimension: 1)
            for _ in 0..<200_000 {
                let e = (0..<j).map { _ in rng.gaussian() }
                let z = (0..<j).map { a in q.means[n, a] + (0...a).reduce(0.0) { $0 + l[a][$1] * e[$1] } }
                let logPrior = -0.5 * Double(j) * log(2 * Double.pi) - 0.5 * z.reduce(0) { $0 + $1 * $1 }
                let logQ = -0.5 * Double(j) * log(2 * Double.pi) - 0.5 * logDetS - 0.5 * e.reduce(0) { $0 + $1 * $1 }
                let logW = VT.logLikelihood(y: y.row(n), given: z, model: p.model) + logPrior - logQ
                moments.add([exp(2 * (logW - direct[n]))])
            }
            let estimate = moments.mean[0] - 1, se = moments.standardError[0]
            #expect(abs(estimate - chi[n]) <= VT.standardErrors * se, "point \(n): χ² \(chi[n]) vs Monte Carlo \(estimate) ± \(se)")
            #expect(chi[n] > 20 * se, "point \(n): χ² \(chi[n]) is not distinguishable from 0 at this precision")
        }
        // Identities: E_q[(p/q)^0] = E_q[p/q] = 1.
        for alpha in [0.0, 1.0] {
            let m = try ImportanceWeightedBound.logWeightMoments(order: alpha, data: p.data, model: p.model, q: q)
            #expect(m.allSatisfy { abs($0) < VT.identityTolerance }, "order \(alpha): \(m.prefix(3))")
        }
        // χ² is infinite when S ⊁ A/2: a q far narrower than the posterior.
        let narrow = GaussianPosteriors(means: q.means, family: .full, scales: Matrix(rows: 1, cols: j * j, storage: q.scales.storage.map { 0.3 * $0 }))
        #expect(try ImportanceWeightedBound.chiSquare(data: p.data, model: p.model, q: narrow).allSatisfy { $0 == .infinity })
    }

    @Test("log p − L_K matches χ²/(2K) within the standard error and the O(1/K²) term, which the closed forms give")
    func gapMatchesChiSquare() throws {
        let p = Self.problem()
        let q = try Self.inflatedPosterior(p)
        let logp = try p.model.logLikelihood(of: p.data)
        let m2 = try ImportanceWeightedBound.logWeightMoments(order: 2, data: p.data, model: p.model, q: q).map(exp)
        let m3 = try ImportanceWeightedBound.logWeightMoments(order: 3, data: p.data, model: p.model, q: q).map(exp)
        for k in [10, 40] {
            let kk = Double(k)
            let predicted = try ImportanceWeightedBound.predictedGap(particles: k, data: p.data, model: p.model, q: q)
            // With normalised weights (mean 1): σ² = χ², μ₃ = E w³ − 3 E w² + 2; the next term of
            // E log w̄ is μ₃/(3K²) − 3σ⁴/(4K²).
            let second = zip(m2, m3).map { w2, w3 in
                let sigma2 = w2 - 1, mu3 = w3 - 3 * w2 + 2
                return abs(mu3 / (3 * kk * kk)) + 3 * sigma2 * sigma2 / (4 * kk * kk)
            }
            let allowance = neumaierSum(second) / Double(second.count)
            let e = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: k, replicates: 2000,
                                                         rng: RandomSource(seed: UInt64(7 + k)))
            let gap = logp - e.value
            #expect(abs(gap - predicted) <= VT.standardErrors * e.standardError + allowance,
                    "K = \(k): log p − L_K = \(gap) ± \(e.standardError), χ²/(2K) = \(predicted), O(1/K²) allowance \(allowance)")
            // The check has power: a factor-2 error (χ²/K or χ²/(4K)) would fall outside it.
            #expect(predicted > 3 * (VT.standardErrors * e.standardError + allowance))
        }
    }

    @Test("A q with a zero variance is an error, not a NaN bound")
    func degenerateQ() throws {
        let p = Self.problem()
        var q = try GaussianPosteriors.optimal(.diagonal, model: p.model, data: p.data)
        q.scales[0, 0] = 0
        #expect(throws: InputError.self) {
            try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: 3, replicates: 2, rng: RandomSource(seed: 1))
        }
    }

    @Test("Adaptive estimate: the standard error reaches the target and the draws are counted")
    func adaptiveTarget() throws {
        let p = Self.problem()
        let q = try GaussianPosteriors.optimal(.diagonal, model: p.model, data: p.data)
        let e = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: 1, targetStandardError: 1e-3,
                                                     rng: RandomSource(seed: 3))
        #expect(e.standardError <= 1e-3 && e.replicates > 16, "se \(e.standardError) after \(e.replicates) replicates")
        #expect(e.draws == e.replicates * p.data.count)
        let again = try ImportanceWeightedBound.estimate(data: p.data, model: p.model, q: q, particles: 1, targetStandardError: 1e-3,
                                                         rng: RandomSource(seed: 3))
        #expect(again == e, "same seed, same estimate")
    }
}

/// The IWAE and DReG gradient estimators (§14): against the reparameterised ELBO gradient, the
/// derivative of the estimate at fixed draws, finite differences of a high-precision L_K, and each other.
@Suite("Importance-weighted gradients")
struct ImportanceWeightedGradientTests {
    static let n = 3, d = 4, j = 2

    static func setup() -> (batch: Batch, data: Dataset, model: LinearGaussianModel, means: Matrix, logVariances: Matrix) {
        let p = VT.problem(count: n, dimension: d, latent: j, seed: 41)
        let post = try! p.model.posterior(of: p.data)
        let rng = RandomSource(seed: 411)
        var m = post.means, lv = Matrix(rows: n, cols: j)
        for i in m.storage.indices { m.storage[i] += 0.5 * rng.gaussian() }
        for i in lv.storage.indices { lv.storage[i] = log(post.covariance[i % j, i % j]) + 0.3 * rng.gaussian() }
        return (Batch(p.data), p.data, p.model, m, lv)
    }

    static func flat(_ e: ImportanceWeightedGradientEstimate, count: Int) -> [Double] {
        VT.flat(e.model) + e.means.storage.map { $0 / Double(count) } + e.logVariances.storage.map { $0 / Double(count) }
    }

    @Test("K = 1: IWAE is the reparameterised ELBO gradient with the Monte Carlo KL, on the same draws")
    func oneParticleIsReparam() {
        let s = Self.setup()
        for estimator in ImportanceWeightedEstimator.allCases {
            let iw = ImportanceWeightedGradient().meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                                            particles: 1, estimator: .iwae, rng: RandomSource(seed: 12))
            let rp = ELBOGradient.meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                            estimator: .reparam, kl: .mc, samples: 1, rng: RandomSource(seed: 12))
            VT.expectClose(VT.flat(iw.model) + iw.means.storage + iw.logVariances.storage, VT.flat(rp),
                           tolerance: VT.identityTolerance, "IWAE (\(estimator)) K = 1 vs reparam")
        }
    }

    @Test("IWAE is the derivative of the bound's estimate at fixed draws (central differences), K = 5")
    func pathwiseDerivative() {
        let s = Self.setup(), n = Self.n, d = Self.d, j = Self.j
        let k = 5
        func bound(_ x: [Double]) -> Double {
            let dj = d * j + d + 1
            let model = VT.model(Array(x[0..<dj]), like: s.model)
            let m = Matrix(rows: n, cols: j, storage: Array(x[dj..<(dj + n * j)]))
            let lv = Matrix(rows: n, cols: j, storage: Array(x[(dj + n * j)...]))
            return ImportanceWeightedGradient().meanField(batch: s.batch, model: model, means: m, logVariances: lv, particles: k,
                                                          estimator: .iwae, rng: RandomSource(seed: 77)).bound
        }
        let x = VT.flat(s.model) + s.means.storage + s.logVariances.storage
        let e = ImportanceWeightedGradient().meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                                       particles: k, estimator: .iwae, rng: RandomSource(seed: 77))
        #expect(approximatelyEqual(e.bound, bound(x), relative: VT.identityTolerance))
        VT.expectClose(Self.flat(e, count: n), VT.numericGradient(at: x, bound), tolerance: VT.fdTolerance, "IWAE vs ∂/∂(θ, m, ℓ)")
    }

    @Test("Through a linear and an MLP encoder: ∂/∂φ is the derivative of the estimate at fixed draws")
    func encoderPathwise() {
        let p = VT.problem(count: 6, dimension: 5, latent: 2, seed: 43)
        let batch = Batch(p.data)
        var linear = LinearEncoder(data: p.data, latent: 2)
        let rng = RandomSource(seed: 5)
        for i in linear.parameters.indices { linear.parameters[i] = 0.3 * rng.gaussian() }
        var mlp = MLPEncoder(data: p.data, latent: 2, hidden: 4, using: rng)
        for i in mlp.parameters.indices { mlp.parameters[i] += 0.2 * rng.gaussian() }
        for encoder in [linear as any AmortizedEncoder, mlp] {
            func bound(_ phi: [Double]) -> Double {
                var e = encoder
                e.parameters = phi
                return ImportanceWeightedGradient().encoder(batch: batch, model: p.model, encoder: e, particles: 4,
                                                            estimator: .iwae, rng: RandomSource(seed: 8)).bound
            }
            let g = ImportanceWeightedGradient().encoder(batch: batch, model: p.model, encoder: encoder, particles: 4,
                                                         estimator: .iwae, rng: RandomSource(seed: 8))
            VT.expectClose(g.encoder, VT.numericGradient(at: encoder.parameters, bound), tolerance: VT.fdTolerance,
                           "\(type(of: encoder)) ∂/∂φ")
        }
    }

    /// Means and standard errors of `repeats` estimates, flat [θ, m/B, ℓ/B].
    static func moments(_ estimator: ImportanceWeightedEstimator, particles: Int, repeats: Int, seed: UInt64) -> VT.Moments {
        let s = setup()
        let gradient = ImportanceWeightedGradient()
        let rng = RandomSource(seed: seed)
        var m = VT.Moments(dimension: d * j + d + 1 + 2 * n * j)
        for _ in 0..<repeats {
            m.add(flat(gradient.meanField(batch: s.batch, model: s.model, means: s.means, logVariances: s.logVariances,
                                          particles: particles, estimator: estimator, rng: rng), count: n))
        }
        return m
    }

    @Test("DReG and IWAE have the same mean, and both match finite differences of a high-precision L_K (K = 5)")
    func unbiased() throws {
        let s = Self.setup(), n = Self.n, d = Self.d, j = Self.j
        let k = 5
        let iwae = Self.moments(.iwae, particles: k, repeats: 40_000, seed: 1)
        let dreg = Self.moments(.dreg, particles: k, repeats: 40_000, seed: 2)
        // Finite differences of L_K estimated by ImportanceWeightedBound (its own route to the
        // weights, through the exact posterior) with common random numbers, on 8 independent seeds.
        let dj = d * j + d + 1
        func lk(_ x: [Double], seed: UInt64) -> Double {
            let model = VT.model(Array(x[0..<dj]), like: s.model)
            let q = GaussianPosteriors(means: Matrix(rows: n, cols: j, storage: Array(x[dj..<(dj + n * j)])), family: .diagonal,
                                       scales: Matrix(rows: n, cols: j, storage: x[(dj + n * j)...].map { exp($0) }))
            return try! ImportanceWeightedBound.estimate(data: s.data, model: model, q: q, particles: k, replicates: 5_000,
                                                         rng: RandomSource(seed: seed)).value
        }
        let x = VT.flat(s.model) + s.means.storage + s.logVariances.storage
        var fd = VT.Moments(dimension: x.count)
        for seed in 0..<8 { fd.add(VT.numericGradient(at: x, step: 1e-4) { lk($0, seed: UInt64(1000 + seed)) }) }
        var signal = 0
        for i in x.indices {
            let seID = (iwae.standardError[i] * iwae.standardError[i] + dreg.standardError[i] * dreg.standardError[i]).squareRoot()
            #expect(abs(iwae.mean[i] - dreg.mean[i]) <= VT.standardErrors * seID,
                    "coordinate \(i): IWAE \(iwae.mean[i]) vs DReG \(dreg.mean[i]) (se \(seID))")
            let seFD = (iwae.standardError[i] * iwae.standardError[i] + fd.standardError[i] * fd.standardError[i]).squareRoot()
            #expect(abs(iwae.mean[i] - fd.mean[i]) <= VT.standardErrors * seFD,
                    "coordinate \(i): IWAE \(iwae.mean[i]) vs finite differences \(fd.mean[i]) (se \(seFD))")
            if abs(fd.mean[i]) > 10 * seFD { signal += 1 }
        }
        #expect(signal >= x.count / 2, "only \(signal) of \(x.count) coordinates are distinguishable from 0")
    }

    @Test("SNR against K: IWAE's encoder SNR falls, the decoder's and DReG's encoder SNR rise")
    func snrSlopes() throws {
        let p = VT.problem(count: 400, dimension: 10, latent: 2, seed: 7)
        let setting = try GradientSNRStudy.setting(data: p.data, latent: 2, rng: RandomSource(seed: 2))
        var batch = Batch(capacity: 4, dimension: p.data.dimension, mean: p.data.mean)
        batch.gather(from: p.data, rows: [0, 1, 2, 3][...])
        let rows = GradientSNRStudy.run(batch: batch, model: setting.model, encoder: setting.encoder, particles: [1, 10, 100],
                                        repeats: 4000, seed: 11)
        #expect(rows.count == 12)
        let iwae = try #require(GradientSNRStudy.slope(rows, estimator: .iwae, block: "encoder"))
        let dreg = try #require(GradientSNRStudy.slope(rows, estimator: .dreg, block: "encoder"))
        let decoder = try #require(GradientSNRStudy.slope(rows, estimator: .iwae, block: "decoder"))
        #expect(iwae < -0.2 && iwae > -0.8, "IWAE encoder slope \(iwae)")
        #expect(dreg > 0.2, "DReG encoder slope \(dreg)")
        #expect(decoder > 0.3 && decoder < 0.7, "decoder slope \(decoder)")
        #expect(GradientSNRStudy.table(rows).text.hasPrefix("estimator,particles,block,snr\n"))
    }
}
