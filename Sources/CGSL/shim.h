// The only place C names from GSL and OpenBLAS enter ELBOLab.
#ifndef ELBOLAB_CGSL_SHIM_H
#define ELBOLAB_CGSL_SHIM_H

#include <gsl/gsl_errno.h>
#include <gsl/gsl_math.h>
#include <gsl/gsl_rng.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_sf_log.h>
#include <gsl/gsl_sf_exp.h>
#include <gsl/gsl_sf_gamma.h>
#include <gsl/gsl_vector.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_multimin.h>

// OpenBLAS's own thread control (libopenblas); GSL knows nothing of it.
extern void openblas_set_num_threads(int num_threads);
extern int openblas_get_num_threads(void);
extern char *openblas_get_config(void);

// Swift 6 rejects GSL's mutable globals as not concurrency-safe; reach them through functions.
static inline const gsl_rng_type *elbolab_rng_mt19937(void) { return gsl_rng_mt19937; }
static inline const gsl_rng_type *elbolab_rng_ranlxd2(void) { return gsl_rng_ranlxd2; }
static inline const gsl_rng_type *elbolab_rng_taus2(void) { return gsl_rng_taus2; }
static inline const gsl_rng_type *elbolab_rng_ranlux389(void) { return gsl_rng_ranlux389; }
static inline const gsl_rng_type *elbolab_rng_gfsr4(void) { return gsl_rng_gfsr4; }

// One raw word of `r`, as gsl_rng_get returns it, without the library call.
static inline unsigned long elbolab_rng_word(const gsl_rng *r) { return r->type->get(r->state); }

static inline const gsl_multimin_fdfminimizer_type *elbolab_multimin_bfgs2(void) {
    return gsl_multimin_fdfminimizer_vector_bfgs2;
}

#if defined(__GLIBC__)
#include <malloc.h>
static inline void elbolab_keep_buffers_on_heap(void) {
    /* Per-step buffers up to 64 MiB come from the heap and are reused; larger arrays (the data
       itself) are still mmapped, so freeing them returns the memory. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
}
#else
static inline void elbolab_keep_buffers_on_heap(void) {}
#endif

#endif
