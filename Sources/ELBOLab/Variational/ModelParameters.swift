import Foundation

/// θ = (W, b, s2) as one flat, unconstrained vector for optimisers, in the units of the data:
/// ```
/// W_ij = σ_i W̃_ij,   b_i = ȳ_i + σ_i b̃_i,   s2 = σ̄² exp(ρ)
/// ```
/// with σ̄² the mean column variance and σ_i set by ``Units``. A reparameterisation, not a
/// change of model. Held parts (a fixed s2, b = 0) are left out of the vector.
public struct ModelParameterization: Sendable {
    /// How the rows of W and b are scaled.
    public enum Units: Sendable {
        /// σ_i = column i's standard deviation: an Adam step, which moves every coordinate by
        /// about α, then moves W_ij by α σ_i, a step that fits unstandardised data.
        case standard
        /// σ_i = σ̄ for every column: for the quasi-Newton solvers. The noise is isotropic, so the
        /// ELBO's curvature in W is the same for every row; per-column scales would multiply the
        /// condition number by the spread of the column variances (~10⁷ on the wine data).
        case common
    }

    /// Dimension D of the observations.
    public let dimension: Int
    /// Latent dimension J.
    public let latent: Int
    /// What is held fixed (not a parameter).
    public let constraints: ModelConstraints
    let columnScale: [Double]
    let mean: [Double]
    let noiseScale: Double

    /// The coordinates for `data` at latent dimension `latent`, scaled per `units`.
    public init(data: Dataset, latent: Int, constraints: ModelConstraints, units: Units = .standard) {
        dimension = data.dimension
        self.latent = latent
        self.constraints = constraints
        let variances = data.columnVariances
        let average = max(variances.reduce(0, +) / Double(variances.count), .leastNormalMagnitude)
        // A constant column gets the average scale, so it can still move.
        switch units {
        case .standard: columnScale = variances.map { $0 > 0 ? $0.squareRoot() : average.squareRoot() }
        case .common: columnScale = [Double](repeating: average.squareRoot(), count: variances.count)
        }
        mean = data.mean
        noiseScale = average
    }

    /// Length of the flat vector.
    public var count: Int {
        dimension * latent + (constraints.zeroOffset ? 0 : dimension) + (constraints.noiseVariance == nil ? 1 : 0)
    }

    /// The flat vector of `model`.
    public func pack(_ model: LinearGaussianModel) -> [Double] {
        var x = [Double]()
        x.reserveCapacity(count)
        for i in 0..<dimension { for k in 0..<latent { x.append(model.loadings[i, k] / columnScale[i]) } }
        if !constraints.zeroOffset { for i in 0..<dimension { x.append((model.offset[i] - mean[i]) / columnScale[i]) } }
        if constraints.noiseVariance == nil { x.append(log(model.noiseVariance / noiseScale)) }
        return x
    }

    /// The model of the flat vector `x`.
    public func unpack(_ x: [Double]) -> LinearGaussianModel {
        var w = Matrix(rows: dimension, cols: latent)
        var p = 0
        for i in 0..<dimension { for k in 0..<latent { w[i, k] = columnScale[i] * x[p]; p += 1 } }
        var b = [Double](repeating: 0, count: dimension)
        if !constraints.zeroOffset { for i in 0..<dimension { b[i] = mean[i] + columnScale[i] * x[p]; p += 1 } }
        let s2 = constraints.noiseVariance ?? noiseScale * exp(x[p])
        return LinearGaussianModel(loadings: w, offset: b, noiseVariance: s2)
    }

    /// The gradient in the flat coordinates, by the chain rule, from a gradient in θ at `model`.
    public func pullback(_ g: ModelGradient, at model: LinearGaussianModel) -> [Double] {
        var x = [Double]()
        x.reserveCapacity(count)
        for i in 0..<dimension { for k in 0..<latent { x.append(g.loadings[i, k] * columnScale[i]) } }
        if !constraints.zeroOffset { for i in 0..<dimension { x.append(g.offset[i] * columnScale[i]) } }
        if constraints.noiseVariance == nil { x.append(g.noiseVariance * model.noiseVariance) }
        return x
    }
}
