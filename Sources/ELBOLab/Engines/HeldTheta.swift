import Foundation

/// θ held fixed for a whole fit (`fit --theta FILE`, a spec's `"theta"`): only q (per-datapoint)
/// or the encoder φ (amortized) is fitted, so the gap to the MLE is the approximation and
/// amortisation gaps alone when θ is the MLE.
public enum HeldTheta: Sendable, Equatable, Codable {
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

    // Codable: "mle", or {"W": …, "b": …, "noise_variance": …} as in params.json.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self), s == "mle" { self = .mle; return }
        let p = try c.decode(Parameters.self)
        self = .fixed(LinearGaussianModel(loadings: Matrix(p.W), offset: p.b, noiseVariance: p.noise_variance))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .mle: try c.encode("mle")
        case let .fixed(m): try c.encode(Parameters(W: m.loadings.nestedRows, b: m.offset, noise_variance: m.noiseVariance))
        }
    }

    private struct Parameters: Codable {
        var W: [[Double]]
        var b: [Double]
        var noise_variance: Double
    }
}
