import Foundation

/// θ held fixed for a whole fit (`fit --theta FILE`, a spec's `"theta"`): only q (per-datapoint)
/// or the encoder φ (amortized) is fitted, so the gap to the MLE is the approximation and
/// amortisation gaps alone when θ is the MLE.
public enum HeldTheta: Sendable, Equatable {
    /// The closed-form MLE of the run's own data (under the run's constraints).
    case mle
    /// These parameters (read from a params.json).
    case fixed(LinearGaussianModel)

    /// The model to hold for `data`. - Throws: ``/ELBOLabNumerics/InputError`` when its shape does not fit.
    public func model(for data: Dataset, latent: Int, constraints: ModelConstraints) throws -> LinearGaussianModel {
        switch self {
        case .mle:
            return try LinearGaussianModel.maximumLikelihood(for: data, latent: latent, constraints: constraints).model
        case let .fixed(m):
            guard m.loadings.rows == data.dimension, m.loadings.cols == latent else {
                throw InputError("--theta: W is \(m.loadings.rows) × \(m.loadings.cols) but the data have D = \(data.dimension) columns and the fit has J = \(latent) (pass a params.json of this data and latent dimension)")
            }
            return m
        }
    }
}
