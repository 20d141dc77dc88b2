import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// The joint strategy's quasi-Newton path: L-BFGS itself, the whitened encoder coordinates, the default.
@Suite("Quasi-Newton joint training")
struct QuasiNewtonTests {
    /// f(x) = ½ xᵀAx − bᵀx with A = Q diag(1…100) Qᵀ: its minimiser A⁻¹b comes from an LU solve.
    @Test("L-BFGS finds the minimiser of an ill-conditioned quadratic, lowering f every iteration")
    func quadratic() throws {
        let n = 12
        let rng = RandomSource(seed: 5)
        var q = Matrix(rows: n, cols: n)
        rng.fillGaussian(&q.storage)
        let basis = try SymmetricEigen(symmetrized(q.multiplied(by: q, transposeOther: true))).vectors
        var scaled = basis
        for i in 0..<n { for k in 0..<n { scaled[i, k] *= pow(100, Double(k) / Double(n - 1)) } }
        let a = symmetrized(scaled.multiplied(by: basis, transposeOther: true))
        let b = (0..<n).map { _ in rng.gaussian() }
        let solver = LBFGSMinimizer(dimension: n, memory: 5) { x, g in
            let ax = a.times(Array(x))
            for i in 0..<n { g[i] = ax[i] - b[i] }
            return 0.5 * dot(Array(x), ax) - dot(b, Array(x))
        }
        solver.begin(at: [Double](repeating: 0, count: n), initialStep: 0.1)
        var last = solver.value
        for _ in 0..<200 {
            guard solver.iterate() == .progressing else { break }
            #expect(solver.value <= last)
            last = solver.value
        }
        let exact = try LUFactorization(a).solve(Matrix(rows: n, cols: 1, storage: b)).storage
        let error = zip(solver.point, exact).map { abs($0 - $1) }.max()!
        #expect(error < 1e-7 * max(1, exact.map(abs).max()!), "max error \(error)")
    }

    @Test("L-BFGS reports no progress at a minimum and on a non-finite start")
    func stops() {
        let solver = LBFGSMinimizer(dimension: 2) { x, g in
            g[0] = 2 * x[0]; g[1] = 2 * x[1]
            return x[0] * x[0] + x[1] * x[1]
        }
        solver.begin(at: [0, 0], initialStep: 1)
        #expect(solver.iterate() == .stalled)
        let broken = LBFGSMinimizer(dimension: 1) { _, g in g[0] = 0; return .nan }
        broken.begin(at: [1], initialStep: 1)
        #expect(broken.iterate() == .stalled)
    }

    static func data() -> Dataset {
        let rng = RandomSource(seed: 21)
        let truth = LinearGaussianModel.random(dimension: 6, latent: 2, noiseVariance: 0.3, using: rng)
        var points = truth.sample(count: 300, using: rng)
        for n in 0..<points.rows { points[n, 4] = 2.5 }   // a constant column: no variance in that direction
        return Dataset(points: points)
    }

    @Test("whitened encoder coordinates: the map and its inverse agree, inputs become white, the gradient pulls back by the chain rule")
    func whitening() throws {
        let data = Self.data()
        let encoder = LinearEncoder(data: data, latent: 2)
        let w = try WhitenedEncoderCoordinates(data: data, encoder: encoder)
        let rng = RandomSource(seed: 3)
        let count = encoder.parameters.count
        let p = (0..<count).map { _ in rng.gaussian() }
        let back = w.parameters(w.coordinates(p))
        #expect(zip(back, p).allSatisfy { abs($0 - $1) < 1e-9 * max(1, abs($1)) })
        // The weights u_r T act on the data as A = u T diag(1/σ): A S Aᵀ = u uᵀ on the directions with variance.
        let u = (0..<count).map { _ in rng.gaussian() }
        let params = w.parameters(u)
        var a = Matrix(rows: 4, cols: 6)
        for r in 0..<4 { for i in 0..<6 { a[r, i] = params[r * 6 + i] * encoder.invScale[i] } }
        let covariance = a.multiplied(by: data.covariance).multiplied(by: a, transposeOther: true)
        // The zero-variance direction's coordinate drops out; remove it from uuᵀ through the eigenvectors.
        let eigen = try SymmetricEigen(data.covariance)
        var kept = Matrix(rows: 4, cols: 6)
        for r in 0..<4 { for j in 0..<5 { kept[r, j] = u[r * 6 + j] } }
        #expect(eigen.values[5] < 1e-12 && eigen.values[4] > 1e-3)
        let expected = kept.multiplied(by: kept, transposeOther: true)
        #expect((covariance - expected).maxAbs < 1e-9 * max(1, expected.maxAbs))
        // ⟨pullback(g), δu⟩ = ⟨g, δp⟩ with δp = parameters(u + δu) − parameters(u).
        let g = (0..<count).map { _ in rng.gaussian() }
        let du = (0..<count).map { _ in rng.gaussian() }
        let dp = zip(w.parameters(zip(u, du).map(+)), params).map(-)
        #expect(abs(dot(w.pullback(g), du) - dot(g, dp)) < 1e-9 * max(1, abs(dot(g, dp))))
    }

    @Test("joint defaults to L-BFGS on the exact full-batch objective, Adam otherwise")
    func defaults() {
        var o = FitOptions(strategy: .joint, latent: 2)
        #expect(o.resolvedOptimizer == .lbfgs)
        o.gradient = .reparam
        #expect(o.resolvedOptimizer == .adam)
        o = FitOptions(strategy: .joint, latent: 2)
        o.batch = 50
        #expect(o.resolvedOptimizer == .adam)
        #expect(FitOptions(strategy: .amortized, latent: 2).resolvedOptimizer == .adam)
        o = FitOptions(strategy: .joint, latent: 2)
        o.optimizer = .adam
        #expect(o.resolvedOptimizer == .adam)
        o = FitOptions(strategy: .joint, latent: 2)
        o.learningRate = 0.1   // a step size only Adam uses
        #expect(o.resolvedOptimizer == .adam)
    }

    @Test("joint with L-BFGS and with GSL's BFGS2 reaches the MLE within 1e-4 nats/point, ELBO ≤ log p on every row, then stops",
          arguments: [OptimizerKind.lbfgs, .bfgs])
    func reachesMLE(optimizer: OptimizerKind) throws {
        var options = FitOptions(strategy: .joint, latent: 2)
        options.optimizer = optimizer
        options.maxSeconds = 20
        let result = try FitRunner().fit(Self.data(), options: options)
        let final = try #require(result.final)
        #expect(result.stopReason == .converged)
        #expect(result.mle.logLikelihood - final.score.elbo < 1e-4, "gap \(result.mle.logLikelihood - final.score.elbo)")
        #expect(result.curve.allSatisfy { $0.score.elbo <= $0.score.logLikelihood + 1e-9 })
        if optimizer == .lbfgs {
            // At the minimum the solver stops evaluating instead of searching along a rounding-level slope.
            let passes = result.curve.map(\.dataPasses)
            #expect(passes.last! < 3 * Double(final.iteration), "\(passes.last!) passes in \(final.iteration) iterations")
        }
    }

    @Test("--optimizer lbfgs refuses Monte Carlo gradients and minibatches")
    func lbfgsNeedsExactFullBatch() {
        let data = Self.data()
        var options = FitOptions(strategy: .joint, latent: 2)
        options.optimizer = .lbfgs
        options.gradient = .reparam
        #expect(throws: InputError.self) { _ = try makeEngine(options, data: data) }
        options.gradient = nil
        options.batch = 10
        #expect(throws: InputError.self) { _ = try makeEngine(options, data: data) }
    }
}

/// The fused reparameterised joint step against the generic path it replaces.
@Suite("Fused reparameterised joint gradient")
struct FusedReparameterizedTests {
    /// N = 302 (not a multiple of the kernel's four lanes), D = 7 (one constant column);
    /// J = 2 fills one vector of lanes exactly, J = 3 and 5 leave padding.
    static let cases: [(samples: Int, latent: Int, onePass: Bool, kl: KLEstimator)] = [
        (1, 2, true, .analytic), (3, 2, true, .analytic), (1, 3, true, .analytic), (2, 5, true, .analytic),
        (1, 3, false, .analytic), (3, 2, false, .analytic), (1, 3, true, .stl), (2, 2, true, .stl), (1, 5, true, .stl),
    ]

    @Test("same draws, same estimate: encoder forward → meanField(.reparam) → backward, to rounding",
          arguments: cases)
    func matchesGenericPath(samples: Int, latent j: Int, onePass: Bool, kl: KLEstimator) throws {
        let rng = RandomSource(seed: 8)
        let (data, model, encoder) = VT.linearEncoderCase(latent: j, count: 302, rng: rng)
        // The one-pass kernel runs on the full batch only; without it (or on another processor) both take two products.
        guard let fused = LinearEncoderReparameterized(data: data, kl: kl, onePass: onePass && Kernels.usable) else {
            // The path derivative needs the kernel; without it there is nothing to compare.
            #expect(kl == .stl && !Kernels.usable)
            return
        }
        let minibatch = { var b = Batch(capacity: 40, dimension: 7, mean: data.mean); b.gather(from: data, rows: Array(7..<47)[...]); return b }()
        for batch in fused.accepts(batchSize: 40) ? [Batch(data), minibatch] : [Batch(data)] {
            // Twice, so that reused buffers are exercised too.
            for round in 0..<2 {
                let seed = UInt64(30 + round)
                let (theta, phi) = fused.gradient(batch: batch, model: model, encoder: encoder, samples: samples, rng: RandomSource(seed: seed))
                let out = encoder.forward(batch)
                let g = ELBOGradient.meanField(batch: batch, model: model, means: out.means, logVariances: out.logVariances,
                                               estimator: .reparam, kl: kl, samples: samples, rng: RandomSource(seed: seed))
                let genericPhi = encoder.backward(batch, output: out, gradMeans: g.means, gradLogVariances: g.logVariances,
                                                  scale: 1 / Double(batch.count))
                let phiScale = genericPhi.map(abs).max()!
                #expect(zip(phi, genericPhi).allSatisfy { abs($0 - $1) <= 1e-10 * phiScale }, "φ, B = \(batch.count)")
                #expect((theta.loadings - g.model.loadings).maxAbs <= 1e-10 * g.model.loadings.maxAbs)
                let bScale = g.model.offset.map(abs).max()!
                #expect(zip(theta.offset, g.model.offset).allSatisfy { abs($0 - $1) <= 1e-10 * bScale })
                #expect(abs(theta.noiseVariance - g.model.noiseVariance) <= 1e-10 * abs(g.model.noiseVariance))
            }
        }
    }
}
