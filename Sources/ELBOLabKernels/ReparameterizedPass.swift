/// Whether these kernels were compiled for AVX2 with FMA (x86-64 builds are), so that callers must
/// check the processor before using them.
public let kernelsRequireAVX2: Bool = {
    #if ELBOLAB_AVX2
    return true
    #else
    return false
    #endif
}()

/// The per-point part of a linear encoder's reparameterised joint gradient, in one pass over the rows.
///
/// Each point n (a centred data row y_n, D values) gets 2J projections t_n = Pᵀ y_n + o: the
/// encoder's log-variances ℓ_n (lanes 0..<J) and the part of ∂/∂z log p(y_n|z) that is linear in
/// y_n, a_n (lanes J..<2J). With σ_n = exp(ℓ_n / 2), the draws e_nk = σ_n ⊙ ε_nk and
/// g_nk = a_n − Λ e_nk (Λ = WᵀW / s2), the pass accumulates
///
/// ```
/// weighted[:, 0..<J]  = Σ_n y_n ē_nᵀ          ē_n = (1/K) Σ_k e_nk
/// weighted[:, J..<2J] = Σ_n y_n γ_nᵀ          γ_n = (1/K) Σ_k ½ g_nk ⊙ e_nk − ½ (σ_n² − 1)
/// sums = [Σ_n ē_n, Σ_n γ_n, (1/K) Σ_nk e_nk e_nkᵀ]
/// ```
/// which is everything in the gradient that is not linear in y_n (the caller adds the linear rest
/// from the data's scatter matrix).
///
/// With `pathDerivative` (the "sticking the landing" estimator, `--kl stl`) the caller passes
/// a_n = the linear part of ∇_z[log p(y_n, z) − log q(z)], the path gradient at draw k is
/// g_nk + κ_n ⊙ e_nk with κ_n = 1/σ_n² − 1, γ_n = (1/K) Σ_k ½ (g_nk + κ_n ⊙ e_nk) ⊙ e_nk (no KL
/// term), and `weighted` gets a third part Σ_n y_n ρ_nᵀ with ρ_n = κ_n ⊙ ē_n, `sums` a last Σ_n ρ_n. Points go four at a time, one per vector lane, so the
/// exponentials and the J × J work are vector operations; the rows are read once. Tiles of four
/// go in blocks of up to 32, so that the per-lane work runs as long loops over the block.
///
/// - Parameters:
///   - rows: N × D, row-major.
///   - projection: P, D × L with L = 2J rounded up to a multiple of 4, as D·L/4 vectors (row i
///     holds lanes 0..<L); lanes 2J..<L are zero.
///   - offsets: o, L/4 vectors.
///   - precision: Λ, J × J row-major.
///   - noise: ε, K × N × J standard normal draws (draw-major, then point, then latent).
///   - weighted: D rows of ⌈2J/4⌉ vectors (⌈3J/4⌉ with `pathDerivative`; lanes ē, γ, ρ in
///     turn), overwritten.
///   - sums: 2J + J² values (+ J with `pathDerivative`), overwritten.
public func reparameterizedPass(
    rows: UnsafePointer<Double>, count n: Int, dimension d: Int, latent j: Int, samples k: Int,
    projection: UnsafePointer<SIMD4<Double>>, offsets: UnsafePointer<SIMD4<Double>>,
    precision: UnsafePointer<Double>, noise: UnsafePointer<Double>,
    weighted: UnsafeMutablePointer<SIMD4<Double>>, sums: UnsafeMutablePointer<Double>, pathDerivative: Bool = false
) {
    precondition(n >= 1 && d >= 1 && j >= 1 && k >= 1)
    let chunks = (2 * j + 3) / 4, outputChunks = ((pathDerivative ? 3 : 2) * j + 3) / 4
    weighted.update(repeating: SIMD4(), count: d * outputChunks)
    let block = Pass.tilesPerBlock
    let vectors = (4 * chunks + 4 * outputChunks + 3 * j) * block + 3 * j + j * j
    withUnsafeTemporaryAllocation(of: SIMD4<Double>.self, capacity: vectors) { buffer in
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 4 * d + 4 * k * j) { tail in
        buffer.initialize(repeating: SIMD4())
        let pass = Pass(dimension: d, latent: j, samples: k, chunks: chunks, outputChunks: outputChunks,
                        pathDerivative: pathDerivative, projection: projection, offsets: offsets,
                        precision: precision, weighted: weighted, scratch: buffer.baseAddress!)
        let tiles = n / 4
        for first in stride(from: 0, to: tiles, by: block) {
            let count = min(block, tiles - first)
            pass.run(rows: rows + 4 * first * d, tiles: count, noise: noise + 4 * first * j, drawStride: n * j,
                     live: SIMD4(repeating: 1))
        }
        if 4 * tiles < n {
            // The last 1–3 points, padded with zero rows and zero draws; their KL part is masked.
            let full = 4 * tiles, valid = n - full, t = tail.baseAddress!
            tail.initialize(repeating: 0)
            t.update(from: rows + full * d, count: valid * d)
            let draws = t + 4 * d
            for s in 0..<k { (draws + s * 4 * j).update(from: noise + s * n * j + full * j, count: valid * j) }
            var live = SIMD4<Double>()
            for p in 0..<valid { live[p] = 1 }
            pass.run(rows: t, tiles: 1, noise: draws, drawStride: 4 * j, live: live)
        }
        pass.finish(into: sums)
    }}
}

/// The operands and scratch of ``reparameterizedPass(rows:count:dimension:latent:samples:projection:offsets:precision:noise:weighted:sums:pathDerivative:)``.
///
/// Scratch vectors hold one lane of a tile's four points; per lane there is one vector per tile
/// of the block, at `lane · tilesPerBlock + tile`.
private struct Pass {
    static let tilesPerBlock = 32
    let d: Int, j: Int, k: Int, chunks: Int, outputChunks: Int, pathDerivative: Bool
    let projection: UnsafePointer<SIMD4<Double>>, offsets: UnsafePointer<SIMD4<Double>>
    let precision: UnsafePointer<Double>, weighted: UnsafeMutablePointer<SIMD4<Double>>
    /// Per block: Pᵀy + o (4·chunks lanes), the coefficients (4·outputChunks lanes), σ, one draw
    /// and κ (J lanes each). Over all blocks: Σ ē, Σ γ, Σ ρ (J each), Σ e eᵀ (J²).
    let byLane, coefficients, sigma, draw, kappa, meanSum, gammaSum, rhoSum, squares: UnsafeMutablePointer<SIMD4<Double>>

    init(dimension: Int, latent: Int, samples: Int, chunks: Int, outputChunks: Int, pathDerivative: Bool,
         projection: UnsafePointer<SIMD4<Double>>, offsets: UnsafePointer<SIMD4<Double>>, precision: UnsafePointer<Double>,
         weighted: UnsafeMutablePointer<SIMD4<Double>>, scratch: UnsafeMutablePointer<SIMD4<Double>>) {
        (d, j, k, self.chunks, self.outputChunks, self.pathDerivative) = (dimension, latent, samples, chunks, outputChunks, pathDerivative)
        (self.projection, self.offsets, self.precision, self.weighted) = (projection, offsets, precision, weighted)
        let block = Self.tilesPerBlock
        byLane = scratch
        coefficients = byLane + 4 * chunks * block
        sigma = coefficients + 4 * outputChunks * block
        draw = sigma + j * block
        kappa = draw + j * block
        meanSum = kappa + j * block
        gammaSum = meanSum + j
        rhoSum = gammaSum + j
        squares = rhoSum + j
    }

    /// `tiles` tiles of four consecutive rows from `rows` (stride D); draw s of point p at
    /// `noise[s · drawStride + p · J + c]`. `live` masks the points of the last tile.
    func run(rows: UnsafePointer<Double>, tiles: Int, noise: UnsafePointer<Double>, drawStride: Int, live: SIMD4<Double>) {
        let b = Self.tilesPerBlock
        for t in 0..<tiles { project(rows + 4 &* t &* d, tile: t) }
        for c in 0..<j {
            let l = byLane + c &* b, s = sigma + c &* b
            let mean = coefficients + c &* b, gamma = coefficients + (j &+ c) &* b
            for t in 0..<tiles {
                s[t] = exponential(0.5 * l[t])
                mean[t] = SIMD4()
                gamma[t] = SIMD4()
            }
            if pathDerivative {
                let kc = kappa + c &* b
                for t in 0..<tiles { kc[t] = 1 / (s[t] * s[t]) - 1 }
            }
        }
        for sample in 0..<k {
            let eps = noise + sample &* drawStride
            for c in 0..<j {
                let s = sigma + c &* b, e = draw + c &* b
                for t in 0..<tiles {
                    let z = eps + 4 &* j &* t
                    e[t] = s[t] * SIMD4(z[c], z[j &+ c], z[2 &* j &+ c], z[3 &* j &+ c])
                }
            }
            for c in 0..<j {
                // γ += (a − Λ e) ⊙ e (path derivative: (a − Λ e + κ e) ⊙ e), ē += e, e eᵀ accumulated,
                // for lane c of every tile.
                let e = draw + c &* b, a = byLane + (j &+ c) &* b, kc = kappa + c &* b
                let mean = coefficients + c &* b, gamma = coefficients + (j &+ c) &* b
                for t in 0..<tiles {
                    var g = a[t]
                    for l in 0..<j { g = g.addingProduct(-precision[c &* j &+ l], draw[l &* b &+ t]) }
                    if pathDerivative { g = g.addingProduct(kc[t], e[t]) }
                    gamma[t] = gamma[t].addingProduct(g, e[t])
                    mean[t] += e[t]
                }
                for l in 0..<j {
                    let other = draw + l &* b
                    var acc = squares[c &* j &+ l]
                    for t in 0..<tiles { acc = acc.addingProduct(e[t], other[t]) }
                    squares[c &* j &+ l] = acc
                }
            }
        }
        let invK = 1 / Double(k)
        for c in 0..<j {
            let s = sigma + c &* b, mean = coefficients + c &* b, gamma = coefficients + (j &+ c) &* b
            var meanTotal = meanSum[c], gammaTotal = gammaSum[c]
            if pathDerivative {
                // No KL term (the padding's draws are 0, so it adds nothing); ρ = κ ⊙ ē.
                let kc = kappa + c &* b, rho = coefficients + (2 &* j &+ c) &* b
                var rhoTotal = rhoSum[c]
                for t in 0..<tiles {
                    let ebar = invK * mean[t], g = (0.5 * invK) * gamma[t], r = kc[t] * ebar
                    mean[t] = ebar
                    gamma[t] = g
                    rho[t] = r
                    meanTotal += ebar
                    gammaTotal += g
                    rhoTotal += r
                }
                rhoSum[c] = rhoTotal
            } else {
                for t in 0..<tiles {
                    let ebar = invK * mean[t]
                    // Only the last tile of a call can hold padding: `live` is all ones elsewhere.
                    let mask = t == tiles &- 1 ? live : SIMD4(repeating: 1)
                    let g = (0.5 * invK) * gamma[t] - mask * (0.5 * (s[t] * s[t] - 1))
                    mean[t] = ebar
                    gamma[t] = g
                    meanTotal += ebar
                    gammaTotal += g
                }
            }
            meanSum[c] = meanTotal
            gammaSum[c] = gammaTotal
        }
        for t in 0..<tiles { accumulate(rows + 4 &* t &* d, tile: t) }
    }

    /// byLane[c, tile] = (Pᵀ y_p + o)[c] for the tile's four points p. Lanes go two vectors at a
    /// time, so each y value is broadcast once for eight lanes.
    @inline(__always)
    func project(_ y: UnsafePointer<Double>, tile: Int) {
        let y1 = y + d, y2 = y1 + d, y3 = y2 + d
        var ch = 0
        while ch &+ 1 < chunks {
            var t0 = offsets[ch], t1 = t0, t2 = t0, t3 = t0
            var u0 = offsets[ch &+ 1], u1 = u0, u2 = u0, u3 = u0
            var p = projection + ch
            for i in 0..<d {
                let a = p[0], b = p[1]
                t0 = t0.addingProduct(y[i], a); u0 = u0.addingProduct(y[i], b)
                t1 = t1.addingProduct(y1[i], a); u1 = u1.addingProduct(y1[i], b)
                t2 = t2.addingProduct(y2[i], a); u2 = u2.addingProduct(y2[i], b)
                t3 = t3.addingProduct(y3[i], a); u3 = u3.addingProduct(y3[i], b)
                p += chunks
            }
            store(ch, tile, t0, t1, t2, t3)
            store(ch &+ 1, tile, u0, u1, u2, u3)
            ch &+= 2
        }
        if ch < chunks {
            var t0 = offsets[ch], t1 = t0, t2 = t0, t3 = t0
            var p = projection + ch
            for i in 0..<d {
                let a = p[0]
                t0 = t0.addingProduct(y[i], a)
                t1 = t1.addingProduct(y1[i], a)
                t2 = t2.addingProduct(y2[i], a)
                t3 = t3.addingProduct(y3[i], a)
                p += chunks
            }
            store(ch, tile, t0, t1, t2, t3)
        }
    }

    /// Four points' lanes 4ch..<4ch+4 (one vector per point) turned lane-major into byLane.
    @inline(__always)
    func store(_ ch: Int, _ tile: Int, _ t0: SIMD4<Double>, _ t1: SIMD4<Double>, _ t2: SIMD4<Double>, _ t3: SIMD4<Double>) {
        let b = Self.tilesPerBlock, out = byLane + (4 &* ch &* b &+ tile)
        (out[0], out[b], out[2 &* b], out[3 &* b]) = transposed(t0, t1, t2, t3)
    }

    /// weighted[i] += Σ_p y_p[i] · (the coefficients of point p), for the tile's four points.
    @inline(__always)
    func accumulate(_ y: UnsafePointer<Double>, tile: Int) {
        let y1 = y + d, y2 = y1 + d, y3 = y2 + d
        var ch = 0
        while ch &+ 1 < outputChunks {
            let (p0, p1, p2, p3) = pointMajor(ch, tile)
            let (q0, q1, q2, q3) = pointMajor(ch &+ 1, tile)
            var w = weighted + ch
            for i in 0..<d {
                let a = y[i], b = y1[i], c = y2[i], e = y3[i]
                w[0] = w[0].addingProduct(a, p0).addingProduct(b, p1).addingProduct(c, p2).addingProduct(e, p3)
                w[1] = w[1].addingProduct(a, q0).addingProduct(b, q1).addingProduct(c, q2).addingProduct(e, q3)
                w += outputChunks
            }
            ch &+= 2
        }
        if ch < outputChunks {
            let (p0, p1, p2, p3) = pointMajor(ch, tile)
            var w = weighted + ch
            for i in 0..<d {
                w[0] = w[0].addingProduct(y[i], p0).addingProduct(y1[i], p1).addingProduct(y2[i], p2).addingProduct(y3[i], p3)
                w += outputChunks
            }
        }
    }

    /// The coefficients of lanes 4ch..<4ch+4 of one tile, turned point-major: one vector per point.
    @inline(__always)
    func pointMajor(_ ch: Int, _ tile: Int) -> (SIMD4<Double>, SIMD4<Double>, SIMD4<Double>, SIMD4<Double>) {
        let b = Self.tilesPerBlock, q = coefficients + (4 &* ch &* b &+ tile)
        return transposed(q[0], q[b], q[2 &* b], q[3 &* b])
    }

    /// The 4 × 4 transpose: lane c of result r is lane r of argument c.
    @inline(__always)
    func transposed(_ a: SIMD4<Double>, _ b: SIMD4<Double>, _ c: SIMD4<Double>, _ d: SIMD4<Double>)
        -> (SIMD4<Double>, SIMD4<Double>, SIMD4<Double>, SIMD4<Double>) {
        (SIMD4(a[0], b[0], c[0], d[0]), SIMD4(a[1], b[1], c[1], d[1]),
         SIMD4(a[2], b[2], c[2], d[2]), SIMD4(a[3], b[3], c[3], d[3]))
    }

    /// The sums over all blocks: Σ ē, Σ γ, (1/K) Σ e eᵀ, and Σ ρ with the path derivative.
    func finish(into sums: UnsafeMutablePointer<Double>) {
        for c in 0..<j {
            sums[c] = meanSum[c].sum()
            sums[j + c] = gammaSum[c].sum()
        }
        let invK = 1 / Double(k)
        for c in 0..<(j * j) { sums[2 * j + c] = invK * squares[c].sum() }
        if pathDerivative { for c in 0..<j { sums[2 * j + j * j + c] = rhoSum[c].sum() } }
    }
}
