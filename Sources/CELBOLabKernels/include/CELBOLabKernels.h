// ELBOLab's vector kernels, in C so that only these functions are compiled for AVX2 with FMA
// (function attributes, no package-wide flags); callers check `elbolab_kernels_supported()` first.
// The Swift module ELBOLabKernels wraps them; its doc comments give the formulas.
#ifndef ELBOLAB_KERNELS_H
#define ELBOLAB_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when the processor runs the kernels (x86-64 with AVX2 and FMA), else 0; then none may be called.
int elbolab_kernels_supported(void);

/// out[i] = e^{x[i]} for four lanes, within about one ulp.
void elbolab_exp4(const double *x, double *out);

/// out[i] = e^{scale · x[i]} for i < count.
void elbolab_exponentials(const double *x, long count, double scale, double *out);

/// One Adam ascent step over `count` entries; bit for bit the scalar loop.
void elbolab_adam_update(double *x, const double *g, double *m, double *v, long count,
                         double beta1, double beta2, double alpha, double epsilon);

/// The per-point part of a linear encoder's reparameterised joint gradient
/// (`reparameterizedPass` in ELBOLabKernels). `projection`, `offsets` and `weighted` hold groups
/// of four lanes (D·L, L and D·L′ doubles).
void elbolab_reparameterized_pass(const double *rows, long n, long d, long j, long k,
                                  const double *projection, const double *offsets,
                                  const double *precision, const double *noise,
                                  double *weighted, double *sums, int path_derivative);

/// The per-point part of a linear encoder's importance-weighted (IWAE or DReG) joint gradient
/// (`importanceWeightedPass` in ELBOLabKernels). `projection` and `weighted` hold D groups of
/// ⌈3J/4⌉ four-lane vectors; `sums` gets 3J + J² + 1 values.
void elbolab_importance_weighted_pass(const double *rows, long n, long d, long j, long k,
                                      const double *projection, const double *offsets,
                                      const double *precision, const double *noise, int dreg,
                                      double *weighted, double *sums);

#ifdef __cplusplus
}
#endif

#endif
