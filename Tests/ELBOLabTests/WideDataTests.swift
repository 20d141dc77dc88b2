import Foundation
import Testing
@testable import ELBOLab
@testable import ELBOLabModel
@testable import ELBOLabVariational
@testable import ELBOLabEngines
@testable import ELBOLabExperiments
@testable import ELBOLabNumerics

/// Wide data (N < D, as in gene expression): the routes that never form a `D × D` matrix
/// against the ones that do, or against direct sums.
@Suite("Wide data")
struct WideDataTests {
    static func data(dimension: Int, count: Int, latent: Int = 3, seed: UInt64 = 31) -> Dataset {
        simulatedDataset(randomModel(dimension: dimension, latent: latent, noiseVariance: 0.5, seed: seed), count: count)
    }

    @Test("the thin SVD rebuilds A = U Σ Vᵀ with orthonormal U and V and decreasing σ")
    func thinSVD() throws {
        let rng = RandomSource(seed: 5)
        var a = Matrix(rows: 9, cols: 4)
        rng.fillGaussian(&a.storage)
        let svd = try ThinSVD(a)
        let us = (0..<9).map { i in (0..<4).map { k in svd.left[i, k] * svd.values[k] } }
        #expect(maxRelativeDifference(naiveProduct(us, naiveTranspose(nested(svd.right))), nested(a)) <= Tolerance.rounding)
        let identity = nested(.identity(4))
        #expect(maxRelativeDifference(naiveProduct(naiveTranspose(nested(svd.left)), nested(svd.left)), identity) <= Tolerance.rounding)
        #expect(maxRelativeDifference(naiveProduct(naiveTranspose(nested(svd.right)), nested(svd.right)), identity) <= Tolerance.rounding)
        #expect(zip(svd.values, svd.values.dropFirst()).allSatisfy { $0 >= $1 } && svd.values[3] > 0)
    }

    @Test("S M, the second moment about b times M, its trace and the column variances equal direct sums",
          arguments: [(5, 40), (40, 12)])
    func covarianceTimes(shape: (Int, Int)) {
        let (d, n) = shape
        let y = simulate(randomModel(dimension: d, latent: 2, noiseVariance: 0.4, offsetScale: 20), count: n)
        let data = Dataset(points: y)
        #expect(data.prefersCovariance == (d <= n), "both routes of covarianceTimes are covered")
        let rng = RandomSource(seed: 8)
        var m = Matrix(rows: d, cols: 3)
        rng.fillGaussian(&m.storage)
        let mean = (0..<d).map { i in (0..<n).reduce(0) { $0 + y[$1, i] } / Double(n) }
        let about = (0..<d).map { 0.1 * Double($0) }
        func moment(_ b: [Double]) -> Nested {
            (0..<d).map { i in (0..<d).map { k in (0..<n).reduce(0) { $0 + (y[$1, i] - b[i]) * (y[$1, k] - b[k]) } / Double(n) } }
        }
        let s = moment(mean), sb = moment(about)
        #expect(maxRelativeDifference(nested(data.covarianceTimes(m)), naiveProduct(s, nested(m))) <= Tolerance.rounding)
        #expect(maxRelativeDifference(nested(data.secondMomentTimes(m, about: about)), naiveProduct(sb, nested(m))) <= Tolerance.rounding)
        #expect(approximatelyEqual(data.secondMomentTrace(about: about), (0..<d).reduce(0) { $0 + sb[$1][$1] }, relative: Tolerance.rounding))
        #expect(maxRelativeDifference([data.columnVariances], [(0..<d).map { s[$0][$0] }]) <= Tolerance.rounding)
        #expect(approximatelyEqual(data.totalVariance, (0..<d).reduce(0) { $0 + s[$1][$1] }, relative: Tolerance.rounding))
    }

    @Test("the MLE through the thin SVD of the data equals the D × D eigen route (N = 30 < D = 60)",
          arguments: [ModelConstraints.free, ModelConstraints(noiseVariance: 0.5), ModelConstraints(zeroOffset: true)])
    func mleRoutesAgree(constraints: ModelConstraints) throws {
        let data = Self.data(dimension: 60, count: 30)
        #expect(!data.prefersCovariance)
        let thin = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3, constraints: constraints, throughCovariance: false)
        let full = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3, constraints: constraints, throughCovariance: true)
        #expect(maxRelativeDifference(nested(thin.model.loadings), nested(full.model.loadings)) <= Tolerance.independentRoute)
        #expect(approximatelyEqual(thin.model.noiseVariance, full.model.noiseVariance, relative: Tolerance.independentRoute))
        #expect(thin.model.offset == full.model.offset)
        #expect(approximatelyEqual(thin.logLikelihood, full.logLikelihood, relative: Tolerance.independentRoute))
        #expect(maxRelativeDifference([thin.eigenvalues], [full.eigenvalues]) <= Tolerance.independentRoute)
        #expect(thin.activeDirections == full.activeDirections)
        // The D − N eigenvalues beyond the data's rank are exactly zero on the thin route.
        #expect(thin.eigenvalues[30...].allSatisfy { $0 == 0 })
    }

    @Test("wide data (20 × 5000): the closed-form MLE value is the log-likelihood at θ, which is stationary and beats its neighbours")
    func wideMLE() throws {
        let data = Self.data(dimension: 5_000, count: 20)
        let mle = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3)
        func logLikelihood(_ model: LinearGaussianModel) -> Double { (try? model.logLikelihood(of: data)) ?? -.infinity }
        #expect(approximatelyEqual(mle.logLikelihood, logLikelihood(mle.model), relative: Tolerance.rounding))
        #expect(mle.activeDirections == 3 && mle.eigenvalues.count == 5_000)
        // 11 of the 20,001 coordinates: W entries, b entries and s2 (the last).
        expectStationary(mle.model, data: data, constraints: .free, every: 2_000, logLikelihood: logLikelihood)
        let rng = RandomSource(seed: 12)
        for _ in 0..<5 {
            var other = mle.model
            for k in other.loadings.storage.indices { other.loadings.storage[k] += 0.01 * rng.gaussian() }
            other.noiseVariance *= exp(0.05 * rng.gaussian())
            #expect(mle.logLikelihood > logLikelihood(other))
        }
    }

    @Test("elbolab simulate → fit on 20 × 2000: mle reaches the library's MLE, em climbs towards it")
    func commandLine() throws {
        try withTemporaryFolder { folder in
            let sim = try elbolab(["simulate", "--dim", "2000", "--latent", "3", "--count", "20", "--noise-variance", "0.5",
                                   "--seed", "4", "--output", "wide.csv"], in: folder)
            try #require(sim.status == 0, "simulate failed: \(sim.stderr)")
            let data = try Dataset.load(csv: folder.appendingPathComponent("wide.csv").path)
            let library = try LinearGaussianModel.maximumLikelihood(for: data, latent: 3)
            // EM converges slowly on wide data (thousands of steps): a few hundred show it climbing.
            for (strategy, cap) in [("mle", []), ("em", ["--iterations", "300"])] {
                let fit = try elbolab(["fit", "--data", "wide.csv", "--latent", "3", "--strategy", strategy] + cap
                                      + ["--output", strategy, "--quiet"], in: folder)
                try #require(fit.status == 0, "fit --strategy \(strategy) failed: \(fit.stderr)")
                let summary = try jsonObject(at: folder.appendingPathComponent("\(strategy)/summary.json"))
                #expect(approximatelyEqual(try number(summary["mle_loglik"]), library.logLikelihood, relative: Tolerance.cliAgreement))
                let ll = try elbolab(["loglik", "--data", "wide.csv", "--params", "\(strategy)/params.json"], in: folder)
                try #require(ll.status == 0, "loglik failed: \(ll.stderr)")
                let printed = try #require(Double(ll.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
                #expect(approximatelyEqual(printed, try number(summary["loglik"]), relative: Tolerance.cliAgreement))
                if strategy == "mle" {
                    #expect(approximatelyEqual(printed, library.logLikelihood, relative: Tolerance.cliAgreement))
                } else {
                    let curve = try String(contentsOf: folder.appendingPathComponent("em/curve.csv"), encoding: .utf8)
                    let firstRow = curve.split(separator: "\n")[1].split(separator: ",")
                    let start = try #require(Double(firstRow[5]), "curve.csv row 0: \(firstRow)")   // the loglik column
                    #expect(printed <= library.logLikelihood * (1 - Tolerance.rounding), "em above the MLE: \(printed)")
                    #expect(printed > start, "em did not climb: \(printed) from \(start)")
                }
            }
        }
    }
}
