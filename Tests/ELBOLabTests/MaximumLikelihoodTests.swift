import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// One way of holding parameters fixed, with data simulated from a true θ that obeys it.
struct FitCase: Sendable, CustomTestStringConvertible {
    let name: String
    let noiseFixed: Bool
    let zeroOffset: Bool
    static let dimension = 6, latent = 2, count = 500, trueNoise = 0.5

    var testDescription: String { name }

    var truth: LinearGaussianModel {
        randomModel(dimension: Self.dimension, latent: Self.latent, noiseVariance: Self.trueNoise,
                    zeroOffset: zeroOffset, seed: Seeds.model)
    }
    var data: Dataset { simulatedDataset(truth, count: Self.count) }
    var constraints: ModelConstraints {
        ModelConstraints(noiseVariance: noiseFixed ? Self.trueNoise : nil, zeroOffset: zeroOffset)
    }

    static let all = [
        FitCase(name: "free s2, free b", noiseFixed: false, zeroOffset: false),
        FitCase(name: "fixed s2, free b", noiseFixed: true, zeroOffset: false),
        FitCase(name: "free s2, b = 0", noiseFixed: false, zeroOffset: true),
        FitCase(name: "fixed s2, b = 0", noiseFixed: true, zeroOffset: true),
    ]
}

/// The free coordinates of θ under `constraints`, as (name, get, set) over a model.
private func freeCoordinates(_ model: LinearGaussianModel, _ constraints: ModelConstraints)
    -> [(name: String, scale: Double, set: (inout LinearGaussianModel, Double) -> Void, get: (LinearGaussianModel) -> Double)] {
    var out: [(String, Double, (inout LinearGaussianModel, Double) -> Void, (LinearGaussianModel) -> Double)] = []
    for i in 0..<model.dimension {
        for j in 0..<model.latent {
            out.append(("W[\(i),\(j)]", 1, { $0.loadings[i, j] = $1 }, { $0.loadings[i, j] }))
        }
    }
    if !constraints.zeroOffset {
        for i in 0..<model.dimension { out.append(("b[\(i)]", 1, { $0.offset[i] = $1 }, { $0.offset[i] })) }
    }
    if constraints.noiseVariance == nil {
        out.append(("s2", model.noiseVariance, { $0.noiseVariance = $1 }, { $0.noiseVariance }))
    }
    return out
}

/// Checks by central finite differences of the exact average log-likelihood (the direct D×D
/// route) that every free coordinate has zero derivative at `model`.
///
/// The tolerance is the finite-difference error itself: truncation, estimated from the change
/// between steps 2h and h (D(2h) − D(h) ≈ 3·(h²/6)f‴, three times D(h)'s own truncation error),
/// plus rounding, a relative error `Tolerance.rounding` in f amplified by 1/h; doubled for safety.
/// `every` checks every k-th coordinate only; `logLikelihood` replaces the direct route (wide data).
func expectStationary(_ model: LinearGaussianModel, data: Dataset, constraints: ModelConstraints, every: Int = 1,
                      logLikelihood: ((LinearGaussianModel) -> Double)? = nil,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    let points = data.points
    let f = logLikelihood ?? { directAverageLogLikelihood($0, points: points) }
    let relativeStep = 1e-4
    let f0 = f(model)
    let fError = Tolerance.rounding * max(1, abs(f0))
    for c in freeCoordinates(model, constraints).enumerated().filter({ $0.offset % every == 0 }).map(\.element) {
        let h = relativeStep * c.scale
        func derivative(_ step: Double) -> Double {
            var plus = model, minus = model
            c.set(&plus, c.get(model) + step)
            c.set(&minus, c.get(model) - step)
            return (f(plus) - f(minus)) / (2 * step)
        }
        let dh = derivative(h), d2h = derivative(2 * h)
        let tolerance = 2 * (abs(d2h - dh) + fError / h)
        #expect(abs(dh) <= tolerance, "∂ℓ/∂\(c.name) = \(dh) at the MLE (tolerance \(tolerance))", sourceLocation: sourceLocation)
    }
}

@Suite("Maximum likelihood and EM")
struct MaximumLikelihoodTests {
    @Test("the closed-form maximum equals the exact log-likelihood at the returned θ", arguments: FitCase.all)
    func closedFormValue(fit: FitCase) throws {
        let data = fit.data
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: FitCase.latent, constraints: fit.constraints)
        #expect(approximatelyEqual(mle.logLikelihood, try mle.model.logLikelihood(of: data), relative: Tolerance.rounding))
        #expect(approximatelyEqual(mle.logLikelihood, directAverageLogLikelihood(mle.model, points: data.points),
                                   relative: Tolerance.independentRoute))
        // Constraints are honoured.
        if let s2 = fit.constraints.noiseVariance { #expect(mle.model.noiseVariance == s2) }
        if fit.zeroOffset { #expect(mle.model.offset.allSatisfy { $0 == 0 }) } else { #expect(mle.model.offset == data.mean) }
        #expect(mle.activeDirections == FitCase.latent)
        #expect(mle.eigenvalues.count == FitCase.dimension)
    }

    @Test("the MLE beats the true θ and nearby θ on simulated data", arguments: FitCase.all)
    func beatsTruth(fit: FitCase) throws {
        let data = fit.data
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: FitCase.latent, constraints: fit.constraints)
        let atTruth = try fit.truth.logLikelihood(of: data)
        #expect(mle.logLikelihood >= atTruth, "MLE \(mle.logLikelihood) < truth \(atTruth)")
        // Random perturbations within the constraints never do better.
        let rng = RandomSource(seed: 91)
        for _ in 0..<20 {
            var other = mle.model
            for k in other.loadings.storage.indices { other.loadings.storage[k] += 0.05 * rng.gaussian() }
            if !fit.zeroOffset { for i in other.offset.indices { other.offset[i] += 0.05 * rng.gaussian() } }
            if !fit.noiseFixed { other.noiseVariance *= exp(0.05 * rng.gaussian()) }
            #expect(mle.logLikelihood >= (try other.logLikelihood(of: data)))
        }
    }

    @Test("finite differences of the exact log-likelihood vanish at the MLE", arguments: FitCase.all)
    func gradientVanishes(fit: FitCase) throws {
        let data = fit.data
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: FitCase.latent, constraints: fit.constraints)
        expectStationary(mle.model, data: data, constraints: fit.constraints)
    }

    @Test("a held s2 above an eigenvalue switches that direction off, and θ is still stationary")
    func collapsedDirection() throws {
        let data = FitCase.all[0].data
        let eig = try SymmetricEigen(data.covariance)
        let s2 = 0.5 * (eig.values[0] + eig.values[1])   // between λ₁ and λ₂: only one direction kept
        let constraints = ModelConstraints(noiseVariance: s2)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: FitCase.latent, constraints: constraints)
        #expect(mle.activeDirections == 1)
        #expect(mle.model.loadings.column(1).allSatisfy { $0 == 0 })
        #expect(approximatelyEqual(mle.logLikelihood, try mle.model.logLikelihood(of: data), relative: Tolerance.rounding))
        expectStationary(mle.model, data: data, constraints: constraints)
        // Keeping the second direction with any positive length is worse.
        var other = mle.model
        let u1 = eig.vectors.column(1)
        for i in 0..<data.dimension { other.loadings[i, 1] = 0.1 * u1[i] }
        #expect(mle.logLikelihood > (try other.logLikelihood(of: data)))
    }

    @Test("scalar case D = J = 1, b = 0 and s2 held: θ₁² = mean(y²) − s2")
    func scalarCase() throws {
        let s2 = 0.25, theta = 1.5
        let truth = LinearGaussianModel(loadings: Matrix([[theta]]), offset: [0], noiseVariance: s2)
        let data = simulatedDataset(truth, count: 2_000)
        let points = data.points
        let meanSquare = (0..<data.count).reduce(0) { $0 + points[$1, 0] * points[$1, 0] } / Double(data.count)
        let constraints = ModelConstraints(noiseVariance: s2, zeroOffset: true)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: 1, constraints: constraints)
        let w = mle.model.loadings[0, 0]
        #expect(approximatelyEqual(w * w, meanSquare - s2, relative: Tolerance.rounding))
        // log p(y) = −½[log 2π + log c + mean(y²)/c] with c = θ₁² + s2 = mean(y²).
        let expected = -0.5 * (log(2 * Double.pi) + log(meanSquare) + 1)
        #expect(approximatelyEqual(mle.logLikelihood, expected, relative: Tolerance.rounding))
        expectStationary(mle.model, data: data, constraints: constraints)
    }

    @Test("scalar case with mean(y²) ≤ s2: θ₁ = 0, the latent has collapsed")
    func scalarCollapsed() throws {
        let data = Dataset(points: Matrix([[0.1], [-0.2], [0.3], [0.05]]))
        let s2 = 1.0
        let meanSquare = (0.01 + 0.04 + 0.09 + 0.0025) / 4
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: 1, constraints: ModelConstraints(noiseVariance: s2, zeroOffset: true))
        #expect(mle.model.loadings[0, 0] == 0)
        #expect(mle.activeDirections == 0)
        let expected = -0.5 * (log(2 * Double.pi) + log(s2) + meanSquare / s2)
        #expect(approximatelyEqual(mle.logLikelihood, expected, relative: Tolerance.rounding))
    }

    @Test("the MLE refuses data with no noise left to estimate (rank ≤ J up to rounding)",
          arguments: [(3, 1, 3), (3, 1, 4), (5, 2, 50), (10, 3, 200)])
    func rankDeficient(shape: (Int, Int, Int)) {
        // Points y = W z + b with no noise: rank J after centring, so s2 would be 0. Rounding
        // leaves the other eigenvalues of S at about ε·λ₁, which must not pass for noise.
        let (d, j, n) = shape
        let data: Dataset
        if d == 3 && j == 1 {
            data = Dataset(points: Matrix((0..<n).map { k in [0, 1, 2].map { Double(k) * Double($0 + 1) } }), name: "line.csv")
        } else {
            var noiseless = randomModel(dimension: d, latent: j, noiseVariance: 1, seed: UInt64(d))
            noiseless.noiseVariance = 0
            data = Dataset(points: simulate(noiseless, count: n), name: "rank.csv")
        }
        let error = #expect(throws: InputError.self) { try LinearGaussianModel.maximumLikelihood(for: data, latent: j) }
        #expect(error?.message.contains("rank") == true)
    }

    @Test("exact EM never lowers the log-likelihood and reaches the MLE value", arguments: FitCase.all)
    func emConverges(fit: FitCase) throws {
        let data = fit.data
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: FitCase.latent, constraints: fit.constraints)
        var model = randomModel(dimension: FitCase.dimension, latent: FitCase.latent, noiseVariance: 2.0,
                                offsetScale: 3, zeroOffset: fit.zeroOffset, seed: Seeds.start)
        if let s2 = fit.constraints.noiseVariance { model.noiseVariance = s2 }
        var ll = try model.logLikelihood(of: data)
        // Run until well inside the tolerance, then on for a stretch where the gains are at the
        // rounding level, where "never lowers" is checked against rounding alone.
        let maxSteps = 2_000, stepsPastConvergence = 50
        var steps = 0, extra = 0
        while steps < maxSteps && extra < stepsPastConvergence {
            if mle.logLikelihood - ll <= Tolerance.emToMLE / 100 { extra += 1 }
            let next = try model.emStep(on: data, constraints: fit.constraints)
            let nextLL = try next.logLikelihood(of: data)
            #expect(nextLL >= ll - Tolerance.rounding * abs(ll), "step \(steps + 1) lowered ℓ from \(ll) to \(nextLL)")
            if let s2 = fit.constraints.noiseVariance { #expect(next.noiseVariance == s2) }
            if fit.zeroOffset { #expect(next.offset.allSatisfy { $0 == 0 }) }
            model = next
            ll = nextLL
            steps += 1
        }
        #expect(mle.logLikelihood - ll <= Tolerance.emToMLE, "after \(steps) steps EM is \(mle.logLikelihood - ll) nats/point below the MLE")
        #expect(ll <= mle.logLikelihood + Tolerance.rounding * abs(ll), "EM exceeded the closed-form maximum")
    }

    @Test("EM's M-step equals the textbook sums over points (§5)")
    func emMatchesTextbook() throws {
        let fit = FitCase.all[0]
        let data = fit.data
        let start = randomModel(dimension: FitCase.dimension, latent: FitCase.latent, noiseVariance: 1.3, seed: Seeds.start)
        let next = try start.emStep(on: data)
        // E-step under the new b = ȳ (b's own update maximises ℓ for any W, s2), then
        // W ← [Σ r_n⟨z_n⟩ᵀ][Σ⟨z_n z_nᵀ⟩]⁻¹, s2 ← (1/ND) Σ[‖r_n‖² − 2⟨z_n⟩ᵀW_newᵀr_n + tr(⟨z_n z_nᵀ⟩W_newᵀW_new)].
        var withMean = start
        withMean.offset = data.mean
        let (means, postCov) = try withMean.posterior(of: data)
        let d = FitCase.dimension, j = FitCase.latent, n = data.count
        let points = data.points
        var ryz = Nested(repeating: [Double](repeating: 0, count: j), count: d)
        var szz = Nested(repeating: [Double](repeating: 0, count: j), count: j)
        for p in 0..<n {
            let r = (0..<d).map { points[p, $0] - data.mean[$0] }
            for a in 0..<j {
                for i in 0..<d { ryz[i][a] += r[i] * means[p, a] }
                for b in 0..<j { szz[a][b] += postCov[a, b] + means[p, a] * means[p, b] }
            }
        }
        let lz = try #require(naiveCholesky(szz))
        // W = ryz · szz⁻¹: solve szz wᵢ = ryz[i] for each row (szz symmetric).
        let wExpected = ryz.map { naiveCholeskySolve(lz, $0) }
        #expect(maxRelativeDifference(nested(next.loadings), wExpected) <= Tolerance.independentRoute)
        var s2Sum = 0.0
        let wtw = naiveProduct(naiveTranspose(wExpected), wExpected)
        for p in 0..<n {
            let r = (0..<d).map { points[p, $0] - data.mean[$0] }
            let wz = (0..<d).map { i in (0..<j).reduce(0) { $0 + wExpected[i][$1] * means[p, $1] } }
            var term = zip(r, r).reduce(0) { $0 + $1.0 * $1.1 } - 2 * zip(wz, r).reduce(0) { $0 + $1.0 * $1.1 }
            for a in 0..<j { for b in 0..<j { term += (postCov[a, b] + means[p, a] * means[p, b]) * wtw[b][a] } }
            s2Sum += term
        }
        #expect(approximatelyEqual(next.noiseVariance, s2Sum / Double(n * d), relative: Tolerance.independentRoute))
        #expect(next.offset == data.mean)
    }

    @Test("parameter recovery from 20,000 points: subspace angle and s2 within 4 standard errors")
    func parameterRecovery() throws {
        let d = 10, j = 3, n = 20_000, s2 = 0.5
        let truth = randomModel(dimension: d, latent: j, noiseVariance: s2, seed: 1_234)
        let data = simulatedDataset(truth, count: n, seed: 5_678)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: j)

        // s2: the mean of D − J noise eigenvalues, SE ≈ s2 √(2 / (N (D − J))).
        let s2SE = s2 * (2 / Double(n * (d - j))).squareRoot()
        #expect(abs(mle.model.noiseVariance - s2) <= Tolerance.monteCarloSigmas * s2SE,
                "s2 = \(mle.model.noiseVariance), true \(s2), SE \(s2SE)")

        // Subspace: the component of an estimated principal direction j along a noise direction
        // has asymptotic variance λ_j s2 / (N (λ_j − s2)²) (Anderson 1963). The largest sine is
        // at most the Frobenius norm of sin Θ, whose RMS is the root of the sum of these
        // variances over the J signal and D − J noise directions.
        let lambda = try SymmetricEigen(Matrix(marginalCovariance(truth))).values
        let sumOfVariances = (0..<j).reduce(0.0) { acc, k in
            acc + Double(d - j) * lambda[k] * s2 / (Double(n) * (lambda[k] - s2) * (lambda[k] - s2))
        }
        let angleSE = sumOfVariances.squareRoot()
        let sine = try largestPrincipalAngleSine(mle.model.loadings, truth.loadings)
        #expect(sine <= Tolerance.monteCarloSigmas * angleSE, "largest principal angle sine \(sine), SE \(angleSE)")
        // And the angle helper itself can fail: a different random W is far away.
        let unrelated = randomModel(dimension: d, latent: j, noiseVariance: s2, seed: 4_321)
        #expect(try largestPrincipalAngleSine(unrelated.loadings, truth.loadings) > 10 * Tolerance.monteCarloSigmas * angleSE)
        // W Wᵀ is identifiable (W only up to rotation): compare the implied covariances.
        #expect(approximatelyEqual(try mle.model.logLikelihood(of: data), mle.logLikelihood, relative: Tolerance.rounding))
    }

    @Test("the principal-angle helper is exact on known subspaces")
    func principalAngleHelper() throws {
        // span(e1) vs span(cos φ e1 + sin φ e2): the angle is φ; a rotated basis of the same span gives 0.
        let phi = 0.3
        let a = Matrix([[1], [0], [0]]), b = Matrix([[cos(phi)], [sin(phi)], [0]])
        #expect(approximatelyEqual(try largestPrincipalAngleSine(a, b), sin(phi), relative: Tolerance.rounding))
        let plane = Matrix([[1, 0], [0, 1], [0, 0]]), rotated = Matrix([[1, 1], [1, -1], [0, 0]])
        #expect(try largestPrincipalAngleSine(plane, rotated) <= Tolerance.rounding)
    }
}
