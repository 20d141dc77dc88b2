// The AVX2 + FMA kernels. Each vector function carries `target("avx2,fma")`, so the package needs
// no unsafe flags and the rest of ELBOLab stays baseline x86-64; callers check the processor first.
//
// The arithmetic is the one of the Swift SIMD4 kernels it replaced, operation for operation:
// a fused multiply-add exactly where those used `addingProduct`, and nowhere else. C compilers
// may fuse `a * b + c` on their own, so contraction is switched off for the whole file.
#pragma STDC FP_CONTRACT OFF
#pragma clang fp contract(off)

#include "CELBOLabKernels.h"
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

#define VECTOR __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline, target("avx2,fma")))

int elbolab_kernels_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// MARK: exponential

/// 2^n for integer-valued n in −1022…1023, from its exponent bits: adding 1.5·2⁵² puts n in the
/// low bits of the sum's pattern, so no float-to-integer conversion is needed.
INLINE __m256d power_of_two(__m256d n) {
    const double shifter = 6755399441055744.0;
    __m256i bits = _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(shifter)));
    bits = _mm256_sub_epi64(bits, _mm256_set1_epi64x(0x4338000000000000LL));
    bits = _mm256_slli_epi64(_mm256_add_epi64(bits, _mm256_set1_epi64x(1023)), 52);
    return _mm256_castsi256_pd(bits);
}

/// e^r for |r| ≤ 0.35: Σ_{n ≤ 13} rⁿ/n! by Horner's rule, a fused multiply-add a step.
INLINE __m256d taylor_exponential(__m256d r) {
    static const double coefficients[] = {
        1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040,
        1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1, 1,
    };
    __m256d p = _mm256_set1_pd(1.0 / 6227020800);
    for (int i = 0; i < 13; i++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(coefficients[i]));
    return p;
}

/// e^x in four lanes (ELBOLabKernels' `exponential` documents the method). NaN stays NaN.
INLINE __m256d exponential(__m256d x) {
    const double log2e = 1.4426950408889634, ln2_high = 0.6931471803691238, ln2_low = 1.9082149292705877e-10;
    // Beyond these bounds e^x is 0 or +∞ in double; within them both halves of 2^k are normal.
    const __m256d low = _mm256_set1_pd(-746), high = _mm256_set1_pd(710);
    __m256d clamped = _mm256_blendv_pd(x, low, _mm256_cmp_pd(x, low, _CMP_LT_OQ));
    clamped = _mm256_blendv_pd(clamped, high, _mm256_cmp_pd(x, high, _CMP_GT_OQ));
    __m256d k = _mm256_round_pd(_mm256_mul_pd(clamped, _mm256_set1_pd(log2e)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // k·ln2_high is exact (its last 21 bits are zero and |k| < 2¹¹), so r needs no fused operation.
    __m256d r = _mm256_sub_pd(_mm256_sub_pd(clamped, _mm256_mul_pd(k, _mm256_set1_pd(ln2_high))),
                              _mm256_mul_pd(k, _mm256_set1_pd(ln2_low)));
    __m256d half = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5)));
    return _mm256_mul_pd(_mm256_mul_pd(taylor_exponential(r), power_of_two(half)),
                         power_of_two(_mm256_sub_pd(k, half)));
}

VECTOR void elbolab_exp4(const double *x, double *out) {
    _mm256_storeu_pd(out, exponential(_mm256_loadu_pd(x)));
}

VECTOR void elbolab_exponentials(const double *x, long count, double scale, double *out) {
    const __m256d s = _mm256_set1_pd(scale);
    long whole = count / 4 * 4, i = 0;
    for (; i < whole; i += 4) _mm256_storeu_pd(out + i, exponential(_mm256_mul_pd(_mm256_loadu_pd(x + i), s)));
    if (whole < count) {
        // The last few through a vector padded with zeros.
        double v[4] = {0, 0, 0, 0}, e[4];
        for (long c = whole; c < count; c++) v[c - whole] = x[c];
        _mm256_storeu_pd(e, exponential(_mm256_mul_pd(_mm256_loadu_pd(v), s)));
        for (long c = whole; c < count; c++) out[c] = e[c - whole];
    }
}

// MARK: Adam

VECTOR void elbolab_adam_update(double *x, const double *g, double *m, double *v, long count,
                                double beta1, double beta2, double alpha, double epsilon) {
    const __m256d b1 = _mm256_set1_pd(beta1), c1 = _mm256_set1_pd(1 - beta1);
    const __m256d b2 = _mm256_set1_pd(beta2), c2 = _mm256_set1_pd(1 - beta2);
    const __m256d a = _mm256_set1_pd(alpha), e = _mm256_set1_pd(epsilon);
    long whole = count / 4 * 4, i = 0;
    for (; i < whole; i += 4) {
        __m256d gi = _mm256_loadu_pd(g + i);
        __m256d mi = _mm256_add_pd(_mm256_mul_pd(b1, _mm256_loadu_pd(m + i)), _mm256_mul_pd(c1, gi));
        __m256d vi = _mm256_add_pd(_mm256_mul_pd(b2, _mm256_loadu_pd(v + i)), _mm256_mul_pd(_mm256_mul_pd(c2, gi), gi));
        __m256d step = _mm256_div_pd(_mm256_mul_pd(a, mi), _mm256_add_pd(_mm256_sqrt_pd(vi), e));
        _mm256_storeu_pd(m + i, mi);
        _mm256_storeu_pd(v + i, vi);
        _mm256_storeu_pd(x + i, _mm256_add_pd(_mm256_loadu_pd(x + i), step));
    }
    for (; i < count; i++) {
        m[i] = beta1 * m[i] + (1 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
        x[i] += alpha * m[i] / (__builtin_sqrt(v[i]) + epsilon);
    }
}

// MARK: the reparameterised pass

/// Tiles of four points go in blocks of up to this many, so the per-lane work runs as long loops.
enum { TILES_PER_BLOCK = 32 };

/// The operands and scratch of one pass. Scratch vectors hold one lane of a tile's four points;
/// per lane there is one vector per tile of the block, at `lane · TILES_PER_BLOCK + tile`.
typedef struct {
    long d, j, k, chunks, output_chunks;
    int path_derivative;
    const double *projection, *offsets, *precision;
    double *weighted;
    /// Per block: Pᵀy + o (4·chunks lanes), the coefficients (4·output_chunks lanes), σ, one draw
    /// and κ (J lanes each). Over all blocks: Σ ē, Σ γ, Σ ρ (J each), Σ e eᵀ (J²).
    __m256d *by_lane, *coefficients, *sigma, *draw, *kappa, *mean_sum, *gamma_sum, *rho_sum, *squares;
} Pass;

/// The 4 × 4 transpose: lane c of output r is lane r of input c.
INLINE void transpose(__m256d a, __m256d b, __m256d c, __m256d d, __m256d *out0, __m256d *out1,
                      __m256d *out2, __m256d *out3) {
    __m256d ab_low = _mm256_unpacklo_pd(a, b), ab_high = _mm256_unpackhi_pd(a, b);   // a0 b0 a2 b2 | a1 b1 a3 b3
    __m256d cd_low = _mm256_unpacklo_pd(c, d), cd_high = _mm256_unpackhi_pd(c, d);
    *out0 = _mm256_permute2f128_pd(ab_low, cd_low, 0x20);
    *out1 = _mm256_permute2f128_pd(ab_high, cd_high, 0x20);
    *out2 = _mm256_permute2f128_pd(ab_low, cd_low, 0x31);
    *out3 = _mm256_permute2f128_pd(ab_high, cd_high, 0x31);
}

/// Four points' lanes 4ch..<4ch+4 (one vector per point) turned lane-major into by_lane.
INLINE void store(const Pass *p, long ch, long tile, __m256d t0, __m256d t1, __m256d t2, __m256d t3) {
    const long b = TILES_PER_BLOCK;
    __m256d *out = p->by_lane + (4 * ch * b + tile);
    transpose(t0, t1, t2, t3, &out[0], &out[b], &out[2 * b], &out[3 * b]);
}

/// by_lane[c, tile] = (Pᵀ y_p + o)[c] for the tile's four points p. Lanes go two vectors at a
/// time, so each y value is broadcast once for eight lanes.
INLINE void project(const Pass *p, const double *y, long tile) {
    const long d = p->d, chunks = p->chunks;
    const double *y1 = y + d, *y2 = y1 + d, *y3 = y2 + d;
    long ch = 0;
    for (; ch + 1 < chunks; ch += 2) {
        __m256d t0 = _mm256_loadu_pd(p->offsets + 4 * ch), t1 = t0, t2 = t0, t3 = t0;
        __m256d u0 = _mm256_loadu_pd(p->offsets + 4 * (ch + 1)), u1 = u0, u2 = u0, u3 = u0;
        const double *q = p->projection + 4 * ch;
        for (long i = 0; i < d; i++, q += 4 * chunks) {
            __m256d a = _mm256_loadu_pd(q), b = _mm256_loadu_pd(q + 4);
            __m256d s0 = _mm256_set1_pd(y[i]), s1 = _mm256_set1_pd(y1[i]);
            __m256d s2 = _mm256_set1_pd(y2[i]), s3 = _mm256_set1_pd(y3[i]);
            t0 = _mm256_fmadd_pd(s0, a, t0); u0 = _mm256_fmadd_pd(s0, b, u0);
            t1 = _mm256_fmadd_pd(s1, a, t1); u1 = _mm256_fmadd_pd(s1, b, u1);
            t2 = _mm256_fmadd_pd(s2, a, t2); u2 = _mm256_fmadd_pd(s2, b, u2);
            t3 = _mm256_fmadd_pd(s3, a, t3); u3 = _mm256_fmadd_pd(s3, b, u3);
        }
        store(p, ch, tile, t0, t1, t2, t3);
        store(p, ch + 1, tile, u0, u1, u2, u3);
    }
    if (ch < chunks) {
        __m256d t0 = _mm256_loadu_pd(p->offsets + 4 * ch), t1 = t0, t2 = t0, t3 = t0;
        const double *q = p->projection + 4 * ch;
        for (long i = 0; i < d; i++, q += 4 * chunks) {
            __m256d a = _mm256_loadu_pd(q);
            t0 = _mm256_fmadd_pd(_mm256_set1_pd(y[i]), a, t0);
            t1 = _mm256_fmadd_pd(_mm256_set1_pd(y1[i]), a, t1);
            t2 = _mm256_fmadd_pd(_mm256_set1_pd(y2[i]), a, t2);
            t3 = _mm256_fmadd_pd(_mm256_set1_pd(y3[i]), a, t3);
        }
        store(p, ch, tile, t0, t1, t2, t3);
    }
}

/// The coefficients of lanes 4ch..<4ch+4 of one tile, turned point-major: one vector per point.
INLINE void point_major(const Pass *p, long ch, long tile, __m256d *p0, __m256d *p1, __m256d *p2, __m256d *p3) {
    const long b = TILES_PER_BLOCK;
    const __m256d *q = p->coefficients + (4 * ch * b + tile);
    transpose(q[0], q[b], q[2 * b], q[3 * b], p0, p1, p2, p3);
}

/// weighted[i] += Σ_p y_p[i] · (the coefficients of point p), for the tile's four points.
INLINE void accumulate(const Pass *p, const double *y, long tile) {
    const long d = p->d, oc = p->output_chunks;
    const double *y1 = y + d, *y2 = y1 + d, *y3 = y2 + d;
    long ch = 0;
    for (; ch + 1 < oc; ch += 2) {
        __m256d p0, p1, p2, p3, q0, q1, q2, q3;
        point_major(p, ch, tile, &p0, &p1, &p2, &p3);
        point_major(p, ch + 1, tile, &q0, &q1, &q2, &q3);
        double *w = p->weighted + 4 * ch;
        for (long i = 0; i < d; i++, w += 4 * oc) {
            __m256d a = _mm256_set1_pd(y[i]), b = _mm256_set1_pd(y1[i]);
            __m256d c = _mm256_set1_pd(y2[i]), e = _mm256_set1_pd(y3[i]);
            __m256d w0 = _mm256_loadu_pd(w), w1 = _mm256_loadu_pd(w + 4);
            w0 = _mm256_fmadd_pd(e, p3, _mm256_fmadd_pd(c, p2, _mm256_fmadd_pd(b, p1, _mm256_fmadd_pd(a, p0, w0))));
            w1 = _mm256_fmadd_pd(e, q3, _mm256_fmadd_pd(c, q2, _mm256_fmadd_pd(b, q1, _mm256_fmadd_pd(a, q0, w1))));
            _mm256_storeu_pd(w, w0);
            _mm256_storeu_pd(w + 4, w1);
        }
    }
    if (ch < oc) {
        __m256d p0, p1, p2, p3;
        point_major(p, ch, tile, &p0, &p1, &p2, &p3);
        double *w = p->weighted + 4 * ch;
        for (long i = 0; i < d; i++, w += 4 * oc) {
            __m256d w0 = _mm256_loadu_pd(w);
            w0 = _mm256_fmadd_pd(_mm256_set1_pd(y[i]), p0, w0);
            w0 = _mm256_fmadd_pd(_mm256_set1_pd(y1[i]), p1, w0);
            w0 = _mm256_fmadd_pd(_mm256_set1_pd(y2[i]), p2, w0);
            w0 = _mm256_fmadd_pd(_mm256_set1_pd(y3[i]), p3, w0);
            _mm256_storeu_pd(w, w0);
        }
    }
}

/// `tiles` tiles of four consecutive rows from `rows` (stride D); draw s of point p at
/// `noise[s · draw_stride + p · J + c]`. `live` masks the points of the last tile.
VECTOR static void run(const Pass *p, const double *rows, long tiles, const double *noise, long draw_stride,
                       __m256d live) {
    const long b = TILES_PER_BLOCK, d = p->d, j = p->j, k = p->k;
    const __m256d one = _mm256_set1_pd(1), half = _mm256_set1_pd(0.5);
    for (long t = 0; t < tiles; t++) project(p, rows + 4 * t * d, t);
    for (long c = 0; c < j; c++) {
        const __m256d *l = p->by_lane + c * b;
        __m256d *s = p->sigma + c * b, *mean = p->coefficients + c * b, *gamma = p->coefficients + (j + c) * b;
        for (long t = 0; t < tiles; t++) {
            s[t] = exponential(_mm256_mul_pd(half, l[t]));
            mean[t] = _mm256_setzero_pd();
            gamma[t] = _mm256_setzero_pd();
        }
        if (p->path_derivative) {
            __m256d *kc = p->kappa + c * b;
            for (long t = 0; t < tiles; t++) kc[t] = _mm256_sub_pd(_mm256_div_pd(one, _mm256_mul_pd(s[t], s[t])), one);
        }
    }
    for (long sample = 0; sample < k; sample++) {
        const double *eps = noise + sample * draw_stride;
        for (long c = 0; c < j; c++) {
            const __m256d *s = p->sigma + c * b;
            __m256d *e = p->draw + c * b;
            for (long t = 0; t < tiles; t++) {
                const double *z = eps + 4 * j * t;
                e[t] = _mm256_mul_pd(s[t], _mm256_setr_pd(z[c], z[j + c], z[2 * j + c], z[3 * j + c]));
            }
        }
        for (long c = 0; c < j; c++) {
            // γ += (a − Λ e) ⊙ e (path derivative: (a − Λ e + κ e) ⊙ e), ē += e, e eᵀ accumulated,
            // for lane c of every tile.
            const __m256d *e = p->draw + c * b, *a = p->by_lane + (j + c) * b, *kc = p->kappa + c * b;
            __m256d *mean = p->coefficients + c * b, *gamma = p->coefficients + (j + c) * b;
            for (long t = 0; t < tiles; t++) {
                __m256d g = a[t];
                for (long l = 0; l < j; l++)
                    g = _mm256_fmadd_pd(_mm256_set1_pd(-p->precision[c * j + l]), p->draw[l * b + t], g);
                if (p->path_derivative) g = _mm256_fmadd_pd(kc[t], e[t], g);
                gamma[t] = _mm256_fmadd_pd(g, e[t], gamma[t]);
                mean[t] = _mm256_add_pd(mean[t], e[t]);
            }
            for (long l = 0; l < j; l++) {
                const __m256d *other = p->draw + l * b;
                __m256d acc = p->squares[c * j + l];
                for (long t = 0; t < tiles; t++) acc = _mm256_fmadd_pd(e[t], other[t], acc);
                p->squares[c * j + l] = acc;
            }
        }
    }
    const double inv_k = 1 / (double)k;
    const __m256d scale_mean = _mm256_set1_pd(inv_k), scale_gamma = _mm256_set1_pd(0.5 * inv_k);
    for (long c = 0; c < j; c++) {
        const __m256d *s = p->sigma + c * b;
        __m256d *mean = p->coefficients + c * b, *gamma = p->coefficients + (j + c) * b;
        __m256d mean_total = p->mean_sum[c], gamma_total = p->gamma_sum[c];
        if (p->path_derivative) {
            // No KL term (the padding's draws are 0, so it adds nothing); ρ = κ ⊙ ē.
            const __m256d *kc = p->kappa + c * b;
            __m256d *rho = p->coefficients + (2 * j + c) * b;
            __m256d rho_total = p->rho_sum[c];
            for (long t = 0; t < tiles; t++) {
                __m256d ebar = _mm256_mul_pd(scale_mean, mean[t]), g = _mm256_mul_pd(scale_gamma, gamma[t]);
                __m256d r = _mm256_mul_pd(kc[t], ebar);
                mean[t] = ebar;
                gamma[t] = g;
                rho[t] = r;
                mean_total = _mm256_add_pd(mean_total, ebar);
                gamma_total = _mm256_add_pd(gamma_total, g);
                rho_total = _mm256_add_pd(rho_total, r);
            }
            p->rho_sum[c] = rho_total;
        } else {
            for (long t = 0; t < tiles; t++) {
                __m256d ebar = _mm256_mul_pd(scale_mean, mean[t]);
                // Only the last tile of a call can hold padding: `live` is all ones elsewhere.
                __m256d mask = t == tiles - 1 ? live : one;
                __m256d kl = _mm256_mul_pd(half, _mm256_sub_pd(_mm256_mul_pd(s[t], s[t]), one));
                __m256d g = _mm256_sub_pd(_mm256_mul_pd(scale_gamma, gamma[t]), _mm256_mul_pd(mask, kl));
                mean[t] = ebar;
                gamma[t] = g;
                mean_total = _mm256_add_pd(mean_total, ebar);
                gamma_total = _mm256_add_pd(gamma_total, g);
            }
        }
        p->mean_sum[c] = mean_total;
        p->gamma_sum[c] = gamma_total;
    }
    for (long t = 0; t < tiles; t++) accumulate(p, rows + 4 * t * d, t);
}

/// The lanes of `v` added in order, ((v₀ + v₁) + v₂) + v₃, as Swift's `SIMD4.sum()` does.
VECTOR static double lane_sum(__m256d v) {
    double x[4];
    _mm256_storeu_pd(x, v);
    return ((x[0] + x[1]) + x[2]) + x[3];
}

VECTOR void elbolab_reparameterized_pass(const double *rows, long n, long d, long j, long k,
                                         const double *projection, const double *offsets,
                                         const double *precision, const double *noise,
                                         double *weighted, double *sums, int path_derivative) {
    const long b = TILES_PER_BLOCK;
    const long chunks = (2 * j + 3) / 4, output_chunks = ((path_derivative ? 3 : 2) * j + 3) / 4;
    memset(weighted, 0, sizeof(double) * 4 * d * output_chunks);
    const long vectors = (4 * chunks + 4 * output_chunks + 3 * j) * b + 3 * j + j * j;
    __m256d *scratch = aligned_alloc(32, sizeof(__m256d) * vectors);
    if (!scratch) abort();   // a few kilobytes per latent dimension; nothing to recover
    memset(scratch, 0, sizeof(__m256d) * vectors);
    Pass p = {
        .d = d, .j = j, .k = k, .chunks = chunks, .output_chunks = output_chunks, .path_derivative = path_derivative,
        .projection = projection, .offsets = offsets, .precision = precision, .weighted = weighted,
    };
    p.by_lane = scratch;
    p.coefficients = p.by_lane + 4 * chunks * b;
    p.sigma = p.coefficients + 4 * output_chunks * b;
    p.draw = p.sigma + j * b;
    p.kappa = p.draw + j * b;
    p.mean_sum = p.kappa + j * b;
    p.gamma_sum = p.mean_sum + j;
    p.rho_sum = p.gamma_sum + j;
    p.squares = p.rho_sum + j;

    const long tiles = n / 4;
    for (long first = 0; first < tiles; first += b) {
        long count = tiles - first < b ? tiles - first : b;
        run(&p, rows + 4 * first * d, count, noise + 4 * first * j, n * j, _mm256_set1_pd(1));
    }
    if (4 * tiles < n) {
        // The last 1–3 points, padded with zero rows and zero draws; their KL part is masked.
        const long full = 4 * tiles, valid = n - full;
        double *t = calloc((size_t)(4 * d + 4 * k * j), sizeof(double));
        if (!t) abort();
        memcpy(t, rows + full * d, sizeof(double) * valid * d);
        double *draws = t + 4 * d;
        for (long s = 0; s < k; s++) memcpy(draws + s * 4 * j, noise + s * n * j + full * j, sizeof(double) * valid * j);
        double live[4] = {0, 0, 0, 0};
        for (long q = 0; q < valid; q++) live[q] = 1;
        run(&p, t, 1, draws, 4 * j, _mm256_loadu_pd(live));
        free(t);
    }
    // The sums over all blocks: Σ ē, Σ γ, (1/K) Σ e eᵀ, and Σ ρ with the path derivative.
    for (long c = 0; c < j; c++) {
        sums[c] = lane_sum(p.mean_sum[c]);
        sums[j + c] = lane_sum(p.gamma_sum[c]);
    }
    const double inv_k = 1 / (double)k;
    for (long c = 0; c < j * j; c++) sums[2 * j + c] = inv_k * lane_sum(p.squares[c]);
    if (path_derivative) for (long c = 0; c < j; c++) sums[2 * j + j * j + c] = lane_sum(p.rho_sum[c]);
    free(scratch);
}


// MARK: the importance-weighted pass

/// One tile's per-point work for the importance-weighted bound: by_lane holds ℓ (lanes 0..<J),
/// μ (J..<2J) and a (2J..<3J) of four points; `eps` points at lane 0's K·J draws (the others follow
/// at strides of K·J). Writes z̄, g_m, g_ℓ (3J coefficient lanes) and adds to the sums; lanes not in
/// `live` contribute nothing.
INLINE void iwae_tile(const Pass *p, long tile, const double *eps, __m256d live, __m256d *scratch,
                      double *bound, int dreg) {
    const long b = TILES_PER_BLOCK, j = p->j, k = p->k, stride = k * j;
    const __m256d half = _mm256_set1_pd(0.5);
    const __m256d *l = p->by_lane + tile, *mu = l + j * b, *a = l + 2 * j * b;
    __m256d *sigma = scratch, *z = sigma + j, *noise = z + k * j, *g = noise + k * j, *lw = g + k * j;
    __m256d half_log_det = _mm256_setzero_pd(), top = _mm256_set1_pd(-__builtin_inf());
    for (long c = 0; c < j; c++) {
        sigma[c] = exponential(_mm256_mul_pd(half, l[c * b]));
        half_log_det = _mm256_fmadd_pd(half, l[c * b], half_log_det);
    }
    for (long s = 0; s < k; s++) {
        const double *e0 = eps + s * j;
        __m256d *zs = z + s * j, *es = noise + s * j, *gs = g + s * j;
        for (long c = 0; c < j; c++) {
            es[c] = _mm256_setr_pd(e0[c], e0[stride + c], e0[2 * stride + c], e0[3 * stride + c]);
            zs[c] = _mm256_fmadd_pd(sigma[c], es[c], mu[c * b]);
        }
        // log w − (its part constant in z) = zᵀ(a − ½ (Λ + I) z) + ½ ‖ε‖², g = a − (Λ + I) z.
        __m256d value = _mm256_setzero_pd();
        for (long c = 0; c < j; c++) {
            __m256d u = _mm256_setzero_pd();
            for (long m = 0; m < j; m++) u = _mm256_fmadd_pd(_mm256_set1_pd(p->precision[c * j + m]), zs[m], u);
            gs[c] = _mm256_sub_pd(a[c * b], u);
            value = _mm256_fmadd_pd(zs[c], _mm256_sub_pd(a[c * b], _mm256_mul_pd(half, u)), value);
            value = _mm256_fmadd_pd(_mm256_mul_pd(half, es[c]), es[c], value);
        }
        lw[s] = value;
        top = _mm256_max_pd(top, value);
    }
    __m256d total = _mm256_setzero_pd();
    for (long s = 0; s < k; s++) {
        lw[s] = exponential(_mm256_sub_pd(lw[s], top));
        total = _mm256_add_pd(total, lw[s]);
    }
    // The bound's per-point part: log Σ_k w_k (up to the constants the caller adds) and ½ log|S|.
    double tops[4], totals[4], logdets[4], alive[4];
    _mm256_storeu_pd(tops, top);
    _mm256_storeu_pd(totals, total);
    _mm256_storeu_pd(logdets, half_log_det);
    _mm256_storeu_pd(alive, live);
    for (int q = 0; q < 4; q++) if (alive[q] != 0) *bound += tops[q] + __builtin_log(totals[q]) + logdets[q];
    // Normalised weights, zero in the padding's lanes.
    const __m256d norm = _mm256_div_pd(live, total);
    __m256d *zbar = p->coefficients + tile, *gm = zbar + j * b, *gl = gm + j * b;
    for (long c = 0; c < j; c++) {
        zbar[c * b] = _mm256_setzero_pd();
        gm[c * b] = _mm256_setzero_pd();
        gl[c * b] = dreg ? _mm256_setzero_pd() : _mm256_mul_pd(half, live);
    }
    for (long s = 0; s < k; s++) {
        const __m256d w = _mm256_mul_pd(lw[s], norm), factor = dreg ? _mm256_mul_pd(w, w) : w;
        const __m256d *zs = z + s * j, *es = noise + s * j, *gs = g + s * j;
        for (long c = 0; c < j; c++) {
            // IWAE: g; DReG: g + ε/σ (q held inside log q). ∂z/∂ℓ_c = ½ σ ε.
            __m256d path = dreg ? _mm256_add_pd(gs[c], _mm256_div_pd(es[c], sigma[c])) : gs[c];
            __m256d fp = _mm256_mul_pd(factor, path);
            gm[c * b] = _mm256_add_pd(gm[c * b], fp);
            gl[c * b] = _mm256_fmadd_pd(fp, _mm256_mul_pd(_mm256_mul_pd(half, sigma[c]), es[c]), gl[c * b]);
            __m256d wz = _mm256_mul_pd(w, zs[c]);
            zbar[c * b] = _mm256_add_pd(zbar[c * b], wz);
            for (long m = 0; m < j; m++) p->squares[c * j + m] = _mm256_fmadd_pd(wz, zs[m], p->squares[c * j + m]);
        }
    }
    for (long c = 0; c < j; c++) {
        p->mean_sum[c] = _mm256_add_pd(p->mean_sum[c], zbar[c * b]);
        p->gamma_sum[c] = _mm256_add_pd(p->gamma_sum[c], gm[c * b]);
        p->rho_sum[c] = _mm256_add_pd(p->rho_sum[c], gl[c * b]);
    }
}

/// `tiles` tiles of four consecutive rows (stride D), each point's K·J draws consecutive.
VECTOR static void run_iwae(const Pass *p, const double *rows, long tiles, const double *noise, __m256d live,
                            __m256d *scratch, double *bound, int dreg) {
    const __m256d all = _mm256_set1_pd(1);
    for (long t = 0; t < tiles; t++) project(p, rows + 4 * t * p->d, t);
    for (long t = 0; t < tiles; t++)
        iwae_tile(p, t, noise + 4 * t * p->k * p->j, t == tiles - 1 ? live : all, scratch, bound, dreg);
    for (long t = 0; t < tiles; t++) accumulate(p, rows + 4 * t * p->d, t);
}

VECTOR void elbolab_importance_weighted_pass(const double *rows, long n, long d, long j, long k,
                                             const double *projection, const double *offsets,
                                             const double *precision, const double *noise, int dreg,
                                             double *weighted, double *sums) {
    const long b = TILES_PER_BLOCK, chunks = (3 * j + 3) / 4;
    memset(weighted, 0, sizeof(double) * 4 * d * chunks);
    // Per block: projections and coefficients (4·chunks lanes each); the sums (3J + J²); one
    // tile's σ, z, ε, g (J, K·J, K·J, K·J) and log-weights (K).
    const long vectors = 8 * chunks * b + 3 * j + j * j + j + 3 * k * j + k;
    __m256d *scratch = aligned_alloc(32, sizeof(__m256d) * vectors);
    if (!scratch) abort();
    memset(scratch, 0, sizeof(__m256d) * vectors);
    Pass p = {
        .d = d, .j = j, .k = k, .chunks = chunks, .output_chunks = chunks, .path_derivative = 0,
        .projection = projection, .offsets = offsets, .precision = precision, .weighted = weighted,
    };
    p.by_lane = scratch;
    p.coefficients = p.by_lane + 4 * chunks * b;
    p.mean_sum = p.coefficients + 4 * chunks * b;
    p.gamma_sum = p.mean_sum + j;
    p.rho_sum = p.gamma_sum + j;
    p.squares = p.rho_sum + j;
    __m256d *tile_scratch = p.squares + j * j;
    double bound = 0;

    const long tiles = n / 4;
    for (long first = 0; first < tiles; first += b) {
        long count = tiles - first < b ? tiles - first : b;
        run_iwae(&p, rows + 4 * first * d, count, noise + 4 * first * k * j, _mm256_set1_pd(1), tile_scratch, &bound, dreg);
    }
    if (4 * tiles < n) {
        // The last 1–3 points, padded with zero rows and zero draws, masked out.
        const long full = 4 * tiles, valid = n - full;
        double *t = calloc((size_t)(4 * d + 4 * k * j), sizeof(double));
        if (!t) abort();
        memcpy(t, rows + full * d, sizeof(double) * valid * d);
        memcpy(t + 4 * d, noise + full * k * j, sizeof(double) * valid * k * j);
        double live[4] = {0, 0, 0, 0};
        for (long q = 0; q < valid; q++) live[q] = 1;
        run_iwae(&p, t, 1, t + 4 * d, _mm256_loadu_pd(live), tile_scratch, &bound, dreg);
        free(t);
    }
    for (long c = 0; c < j; c++) {
        sums[c] = lane_sum(p.mean_sum[c]);
        sums[j + c] = lane_sum(p.gamma_sum[c]);
        sums[2 * j + c] = lane_sum(p.rho_sum[c]);
    }
    for (long c = 0; c < j * j; c++) sums[3 * j + c] = lane_sum(p.squares[c]);
    sums[3 * j + j * j] = bound;
    free(scratch);
}

#else

// Elsewhere the kernels are not built: ELBOLab takes its portable paths, and these are never called.
int elbolab_kernels_supported(void) { return 0; }
void elbolab_exp4(const double *x, double *out) { (void)x; (void)out; abort(); }
void elbolab_exponentials(const double *x, long count, double scale, double *out) {
    (void)x; (void)count; (void)scale; (void)out; abort();
}
void elbolab_adam_update(double *x, const double *g, double *m, double *v, long count,
                         double beta1, double beta2, double alpha, double epsilon) {
    (void)x; (void)g; (void)m; (void)v; (void)count; (void)beta1; (void)beta2; (void)alpha; (void)epsilon; abort();
}
void elbolab_reparameterized_pass(const double *rows, long n, long d, long j, long k,
                                  const double *projection, const double *offsets,
                                  const double *precision, const double *noise,
                                  double *weighted, double *sums, int path_derivative) {
    (void)rows; (void)n; (void)d; (void)j; (void)k; (void)projection; (void)offsets; (void)precision;
    (void)noise; (void)weighted; (void)sums; (void)path_derivative; abort();
}

void elbolab_importance_weighted_pass(const double *rows, long n, long d, long j, long k,
                                      const double *projection, const double *offsets,
                                      const double *precision, const double *noise, int dreg,
                                      double *weighted, double *sums) {
    (void)rows; (void)n; (void)d; (void)j; (void)k; (void)projection; (void)offsets; (void)precision;
    (void)noise; (void)dreg; (void)weighted; (void)sums; abort();
}

#endif
