/* Helpers shared by the CPU op tests (test_norm, test_activation,
 * test_elementwise, test_embedding, test_loss, test_optim): a CPU context,
 * guarded random buffers, double copies and central finite differences.
 * Header-only (static inline); nothing here computes an expected value. */
#ifndef SDW_TESTS_TEST_REF_H
#define SDW_TESTS_TEST_REF_H

#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"

/* A CPU backend context (NULL, with a test failure, when creation fails). */
static inline sdw_ctx *ref_cpu_ctx(void) {
  sdw_ctx *ctx = NULL;
  sdw_status st = sdw_ctx_create(sdw_backend_cpu(), 0, &ctx);
  if (st != SDW_OK) sdw_test_fail(__FILE__, __LINE__, "cpu ctx: %s", sdw_last_error());
  return ctx;
}

/* Guarded buffer of n floats, N(offset, scale^2). */
static inline float *ref_normal(sdw_test_rng *r, size_t n, float scale, float offset,
                                const char *name) {
  float *x = sdw_test_alloc_guarded(n, name);
  sdw_test_fill_normal(r, x, n, scale);
  for (size_t i = 0; i < n; i++)
    x[i] += offset;
  return x;
}

/* Guarded buffer of n floats, uniform in [lo, hi). */
static inline float *ref_uniform(sdw_test_rng *r, size_t n, float lo, float hi, const char *name) {
  float *x = sdw_test_alloc_guarded(n, name);
  sdw_test_fill_uniform(r, x, n, lo, hi);
  return x;
}

/* Guarded copy of n floats. */
static inline float *ref_clone(const float *x, size_t n, const char *name) {
  float *y = sdw_test_alloc_guarded(n, name);
  memcpy(y, x, n * sizeof(float));
  return y;
}

/* Exact double copy of n floats (malloc'd; free()). */
static inline double *ref_to_double(const float *x, size_t n) {
  double *y = malloc((n ? n : 1) * sizeof(double));
  if (!y) abort();
  for (size_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

static inline double *ref_zeros(size_t n) {
  double *y = calloc(n ? n : 1, sizeof(double));
  if (!y) abort();
  return y;
}

static inline double ref_dot(const double *a, const double *b, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

/* Scalar loss of the current contents of the arrays loss() closes over. */
typedef double (*ref_loss_fn)(void *arg);

/* grad[i] += (loss(p + h e_i) - loss(p - h e_i)) / 2h for each of n
 * parameters p (perturbed in place and restored exactly). */
static inline void ref_fd_grad(ref_loss_fn loss, void *arg, double *p, size_t n, double h,
                               double *grad) {
  for (size_t i = 0; i < n; i++) {
    double save = p[i];
    p[i] = save + h;
    double lp = loss(arg);
    p[i] = save - h;
    double lm = loss(arg);
    p[i] = save;
    grad[i] += (lp - lm) / (2.0 * h);
  }
}

/* want[i] = prefill[i] + delta[i]: the expected contents of an accumulated
 * (+=) gradient buffer that held prefill before the call (malloc'd). */
static inline double *ref_accumulated(const float *prefill, const double *delta, size_t n) {
  double *w = ref_to_double(prefill, n);
  for (size_t i = 0; i < n; i++)
    w[i] += delta[i];
  return w;
}

#endif
