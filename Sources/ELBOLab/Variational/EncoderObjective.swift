import Foundation

/// How the gradient of an encoder's batch-average ELBO with respect to θ and φ is computed:
/// the fastest route the estimator, the encoder and the batch allow, chosen once.
///
/// Every route computes the same quantity (exactly, or as the same Monte Carlo estimate from the
/// same draws); they differ in cost.
package enum EncoderGradient {
    /// The exact expected gradient of a linear encoder on the full batch, from the data's second
    /// moments (``LinearEncoderMoments``): what is linear in y never touches the rows.
    case moments(LinearEncoderMoments)
    /// A linear encoder's reparameterised estimate in one pass over the rows
    /// (``LinearEncoderReparameterized``).
    case onePass(LinearEncoderReparameterized, KLEstimator, samples: Int)
    /// Any encoder and estimator: per point (``ELBOGradient/meanField(batch:model:means:logVariances:estimator:kl:samples:rng:)``),
    /// then the encoder's backward pass.
    case pointwise(GradientEstimator, KLEstimator, samples: Int)
    /// The importance-weighted bound L_K's gradient (§14) with K particles a point: IWAE or
    /// DReG for the encoder, pathwise for θ (``ImportanceWeightedGradient``).
    case importanceWeighted(ImportanceWeightedGradient, ImportanceWeightedEstimator, particles: Int)
    /// The same estimate for a linear encoder in one pass over the rows (``LinearEncoderImportanceWeighted``).
    case importanceWeightedOnePass(LinearEncoderImportanceWeighted, ImportanceWeightedEstimator, particles: Int)

    /// The fastest route for L_K's gradient with `encoder`: the one-pass kernel for a linear
    /// encoder where the vector kernels run, else per point.
    package static func importanceWeighted(_ estimator: ImportanceWeightedEstimator, particles: Int,
                                   encoder: AmortizedEncoder) -> EncoderGradient {
        if encoder is LinearEncoder, let fused = LinearEncoderImportanceWeighted() {
            return .importanceWeightedOnePass(fused, estimator, particles: particles)
        }
        return .importanceWeighted(ImportanceWeightedGradient(), estimator, particles: particles)
    }

    /// The fastest route for `estimator` with `encoder` on batches of `batchSize` of `data`.
    package static func fastest(for estimator: GradientEstimator, kl: KLEstimator, samples: Int,
                        encoder: AmortizedEncoder, data: Dataset, batchSize: Int) -> EncoderGradient {
        if let linear = encoder as? LinearEncoder {
            if estimator == .exact && batchSize == data.count { return .moments(LinearEncoderMoments(data: data, encoder: linear)) }
            if estimator == .reparam, let fused = LinearEncoderReparameterized(data: data, kl: kl), fused.accepts(batchSize: batchSize) {
                return .onePass(fused, kl, samples: samples)
            }
        }
        return .pointwise(estimator, kl, samples: samples)
    }

    /// ∂/∂θ and ∂/∂φ of the batch-average ELBO at (`model`, `encoder`). `batch` is asked for the
    /// next batch when the route reads rows (the moment route reads none).
    package func gradient(model: LinearGaussianModel, encoder: AmortizedEncoder, batch: () -> Batch,
                  rng: RandomSource) -> (model: ModelGradient, encoder: [Double]) {
        switch self {
        case let .moments(moments):
            let r = moments.evaluate(model: model, encoder: encoder.parameters)
            return (r.model, r.encoder)
        case let .onePass(fused, kl, samples):
            // Chosen for a linear encoder; any other takes the pointwise route to the same estimate.
            guard let linear = encoder as? LinearEncoder else {
                return EncoderGradient.pointwise(.reparam, kl, samples: samples).gradient(model: model, encoder: encoder, batch: batch, rng: rng)
            }
            return fused.gradient(batch: batch(), model: model, encoder: linear, samples: samples, rng: rng)
        case let .importanceWeighted(iw, estimator, particles):
            let r = iw.encoder(batch: batch(), model: model, encoder: encoder, particles: particles, estimator: estimator, rng: rng)
            return (r.model, r.encoder)
        case let .importanceWeightedOnePass(fused, estimator, particles):
            guard let linear = encoder as? LinearEncoder else {
                return EncoderGradient.importanceWeighted(ImportanceWeightedGradient(), estimator, particles: particles)
                    .gradient(model: model, encoder: encoder, batch: batch, rng: rng)
            }
            let r = fused.gradient(batch: batch(), model: model, encoder: linear, particles: particles, estimator: estimator, rng: rng)
            return (r.model, r.encoder)
        case let .pointwise(estimator, kl, samples):
            let b = batch()
            let out = encoder.forward(b)
            let g = ELBOGradient.meanField(batch: b, model: model, means: out.means, logVariances: out.logVariances,
                                           estimator: estimator, kl: kl, samples: samples, rng: rng)
            let gPhi = encoder.backward(b, output: out, gradMeans: g.means, gradLogVariances: g.logVariances, scale: 1 / Double(b.count))
            return (g.model, gPhi)
        }
    }
}

extension EncoderGradient {
    /// The exact average ELBO (1/B) Σ ELBO_n of `encoder`'s q at θ on `batch`, with its gradients
    /// with respect to θ and φ (§6, §7): what the quasi-Newton solvers minimise, for an encoder
    /// the moment route does not cover.
    package static func exactELBO(batch: Batch, model theta: LinearGaussianModel,
                          encoder: AmortizedEncoder) -> (value: Double, model: ModelGradient, encoder: [Double]) {
        let out = encoder.forward(batch)
        let n = batch.count, j = out.means.cols
        let v = out.logVariances.storage.map { exp($0) }
        var vsum = Matrix(rows: j, cols: j)
        var vTotal = 0.0, logVTotal = 0.0, meanSquares = 0.0
        for p in 0..<n {
            for k in 0..<j {
                let i = p * j + k
                vsum[k, k] += v[i]
                vTotal += v[i]
                logVTotal += out.logVariances.storage[i]
                meanSquares += out.means.storage[i] * out.means.storage[i]
            }
        }
        let (gTheta, residual) = ELBOGradient.modelAndResidual(batch: batch, model: theta, locations: out.means, covarianceSum: vsum)
        let s2 = theta.noiseVariance, gram = theta.gram
        let count = Double(n), d = Double(batch.centered.cols)
        let value = -0.5 * d * log(2 * Double.pi * s2)
            - (residual + gram.frobeniusDot(vsum)) / (2 * s2 * count)
            - 0.5 * (vTotal + meanSquares - count * Double(j) - logVTotal) / count
        var gm = ELBOGradient.latent(batch: batch, model: theta, locations: out.means)
        var gl = Matrix(rows: n, cols: j)
        for p in 0..<n {
            for k in 0..<j {
                let i = p * j + k
                gm.storage[i] -= out.means.storage[i]
                gl.storage[i] = v[i] * (-gram[k, k] / (2 * s2) - 0.5) + 0.5
            }
        }
        let gPhi = encoder.backward(batch, output: out, gradMeans: gm, gradLogVariances: gl, scale: 1 / count)
        return (value, gTheta, gPhi)
    }
}

/// An encoder fitted with θ held: L-BFGS on the negative of its exact average ELBO in φ
/// (``EncoderGradient/exactELBO(batch:model:encoder:)``), advanced by the caller through `solver`.
package final class FixedThetaEncoderFit {
    /// The encoder whose parameters the objective last set (a class: the closure writes to it).
    private final class Evaluated {
        var encoder: AmortizedEncoder
        init(_ encoder: AmortizedEncoder) { self.encoder = encoder }
    }
    private let evaluated: Evaluated
    /// The minimiser, begun at the encoder's parameters.
    package let solver: LBFGSMinimizer

    /// Begins the minimisation at `encoder`'s parameters, on `batch` at θ = `model`.
    package init(encoder: AmortizedEncoder, batch: Batch, model: LinearGaussianModel, initialStep: Double = 0.1) {
        let box = Evaluated(encoder)
        evaluated = box
        solver = LBFGSMinimizer(dimension: encoder.parameters.count) { x, grad in
            box.encoder.parameters = Array(x)
            let r = EncoderGradient.exactELBO(batch: batch, model: model, encoder: box.encoder)
            for i in 0..<grad.count { grad[i] = -r.encoder[i] }
            return -r.value
        }
        solver.begin(at: encoder.parameters, initialStep: initialStep)
    }

    /// The encoder at the solver's best point.
    package var encoder: AmortizedEncoder {
        var e = evaluated.encoder
        e.parameters = solver.point
        return e
    }
}
