import Foundation

/// One point's negative ELBO as a function of x = [m, log v] (diagonal) or
/// x = [m, lower triangle of L with log L_kk on the diagonal] (full), given p = Wᵀ(y − b):
/// ```
/// −ELBO + const = (−2mᵀp + mᵀGm + tr(LᵀGL)) / (2 s2) + ½ (‖L‖² + mᵀm − 2 Σ log L_kk)
/// ```
package final class PointProblem: @unchecked Sendable {
    let j: Int
    let full: Bool
    let gram: [Double]
    let s2: Double
    package var projection: [Double]
    private var l: [Double]
    private var gl: [Double]

    package init(latent: Int, full: Bool, gram: Matrix, noiseVariance: Double) {
        j = latent
        self.full = full
        self.gram = gram.storage
        s2 = noiseVariance
        projection = [Double](repeating: 0, count: latent)
        l = [Double](repeating: 0, count: latent * latent)
        gl = [Double](repeating: 0, count: latent * latent)
    }

    package func encode(mean: Matrix, scales: Matrix, row: Int, point: Int, into x: inout [Double]) {
        for c in 0..<j { x[c] = mean[point, c] }
        if !full {
            for c in 0..<j { x[j + c] = log(scales[row, c]) }
        } else {
            var p = j
            for a in 0..<j { for b in 0...a { let v = scales[row, a * j + b]; x[p] = a == b ? log(abs(v)) : v; p += 1 } }
        }
    }

    package func decode(_ x: [Double], means: inout Matrix, scales: inout Matrix, row: Int) {
        for c in 0..<j { means[row, c] = x[c] }
        if !full {
            for c in 0..<j { scales[row, c] = exp(x[j + c]) }
        } else {
            var p = j
            for a in 0..<j { for b in 0...a { scales[row, a * j + b] = a == b ? exp(x[p]) : x[p]; p += 1 } }
        }
    }

    package func evaluate(_ x: UnsafeBufferPointer<Double>, _ grad: UnsafeMutableBufferPointer<Double>) -> Double {
        var f = 0.0
        // Mean part: (−2mᵀp + mᵀGm)/(2 s2) + ½ mᵀm.
        for a in 0..<j {
            var gm = 0.0
            for b in 0..<j { gm += gram[a * j + b] * x[b] }
            f += (-2 * x[a] * projection[a] + x[a] * gm) / (2 * s2) + 0.5 * x[a] * x[a]
            grad[a] = (gm - projection[a]) / s2 + x[a]
        }
        if !full {
            for c in 0..<j {
                let v = exp(x[j + c])
                f += gram[c * j + c] * v / (2 * s2) + 0.5 * (v - x[j + c])
                grad[j + c] = v * gram[c * j + c] / (2 * s2) + 0.5 * v - 0.5
            }
            return f
        }
        var p = j
        for a in 0..<j { for b in 0..<j { l[a * j + b] = 0 } }
        for a in 0..<j { for b in 0...a { l[a * j + b] = a == b ? exp(x[p]) : x[p]; p += 1 } }
        // tr(LᵀGL)/(2 s2) + ½‖L‖² − Σ log L_kk;  ∂/∂L = G L / s2 + L − diag(1/L_kk).
        for a in 0..<j {
            for b in 0..<j {
                var gl_ab = 0.0
                for c in 0..<j { gl_ab += gram[a * j + c] * l[c * j + b] }
                gl[a * j + b] = gl_ab
                f += l[a * j + b] * gl_ab / (2 * s2) + 0.5 * l[a * j + b] * l[a * j + b]
            }
            f -= x[j + a * (a + 1) / 2 + a]
        }
        p = j
        for a in 0..<j {
            for b in 0...a {
                var d = gl[a * j + b] / s2 + l[a * j + b]
                if a == b { d = d * l[a * j + a] - 1 }   // chain rule through L_kk = exp(x)
                grad[p] = d
                p += 1
            }
        }
        return f
    }
}
