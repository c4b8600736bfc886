/* kernels/cpu/softmax.c and the fast exp it shares with attention
 * (kernels/cpu/vexp.h) against double-precision references written here:
 * libm's exp in double, a plain softmax in double, and central finite
 * differences in double of L = sum(dy .* softmax(x)) for the backward.
 *
 * Tolerances:
 *  - the vectorised exp: relative error <= 2.5e-7 pointwise over [-87, 88].
 *    The degree-6 polynomial with a two-constant ln 2 reduction is good to
 *    ~1-2 ulp (6e-8 each; measured 8.3e-8); 2.5e-7 bounds that, and a wrong
 *    coefficient or reduction shows up at >= 1e-5.
 *  - softmax forward and backward: normwise relative error 1e-5. Per row
 *    the float kernel rounds x - max (exact for the largest terms), the exp
 *    (~1e-7), a float sum of N terms (~sqrt(N) u, u = 6e-8) and one
 *    multiply: ~1e-6 for N <= 1030; the backward adds a float dot product
 *    of N terms. 1e-5 leaves a 10x margin over that.
 *  - the analytic double backward vs finite differences (step 1e-5):
 *    truncation h^2 |f'''| ~ 1e-10, rounding ~1e-11; checked at 1e-7. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/vexp.h"
#include "kernels/ops.h"
#include "tests/test.h"

SDW_TEST(softmax_fast_exp_accuracy) {
  double worst = 0, worst_x = 0;
  enum { N = 200000 };
  float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
  for (int i = 0; i < N; i++)
    x[i] = (float)(-87.0 + 175.0 * i / (N - 1));
  /* The row kernel with shift 0 computes exp(x) elementwise. */
  sdw_vexp_row_exp_sum(x, 0.0f, y, N);
  for (int i = 0; i < N; i++) {
    double want = exp((double)x[i]);
    double e = fabs(y[i] - want) / want;
    double es = fabs(sdw_vexp_scalar(x[i]) - want) / want;
    if (es > e) e = es;
    if (e > worst) worst = e, worst_x = x[i];
  }
  CHECK_MSG(worst <= 2.5e-7, "fast exp: relative error %.3g at x = %.9g", worst, worst_x);
  /* Edges: exp(0) = 1 exactly, underflow flushes to zero, -inf gives 0,
   * NaN stays NaN, and large arguments stay finite. */
  float edge[8] = {0.0f, -87.5f, -1000.0f, -INFINITY, NAN, 88.0f, -87.0f, 1e-8f};
  float out[8];
  sdw_vexp_row_exp_sum(edge, 0.0f, out, 8);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == 0.0f && out[2] == 0.0f && out[3] == 0.0f);
  CHECK(isnan(out[4]));
  CHECK(isfinite(out[5]) && fabs(out[5] / exp(88.0) - 1) < 5e-7);
  CHECK(out[6] > 0 && fabs(out[6] / exp(-87.0) - 1) < 5e-7);
  CHECK(fabs(out[7] - 1.0) < 1e-7);
  CHECK(sdw_vexp_scalar(-INFINITY) == 0.0f && isnan(sdw_vexp_scalar(NAN)));
  free(x);
  free(y);
}

/* y = softmax(x) over rows of n, in double. */
static void ref_softmax(size_t rows, size_t n, const double *x, double *y) {
  for (size_t r = 0; r < rows; r++) {
    double m = -INFINITY, s = 0;
    for (size_t j = 0; j < n; j++)
      m = fmax(m, x[r * n + j]);
    for (size_t j = 0; j < n; j++)
      s += y[r * n + j] = exp(x[r * n + j] - m);
    for (size_t j = 0; j < n; j++)
      y[r * n + j] /= s;
  }
}

typedef struct softmax_case {
  int lead[2], nlead;
  int n;
  float scale; /* of the normal inputs: large = peaky rows */
  bool masked; /* some -inf entries (never a whole row) */
  bool fd;
} softmax_case;

static void run_softmax_case(sdw_ctx *ctx, const softmax_case *c, uint64_t seed) {
  size_t rows = 1;
  for (int i = 0; i < c->nlead; i++)
    rows *= (size_t)c->lead[i];
  const size_t n = (size_t)c->n, total = rows * n;
  char what[128];
  snprintf(what, sizeof what, "softmax rows%zu N%zu scale%g masked%d", rows, n, (double)c->scale,
           (int)c->masked);
  sdw_test_rng rng = sdw_test_rng_make(seed);
  float *x = malloc(total * sizeof *x), *dy = malloc(total * sizeof *dy);
  sdw_test_fill_normal(&rng, x, total, c->scale);
  sdw_test_fill_normal(&rng, dy, total, 1.0f);
  if (c->masked)
    for (size_t i = 0; i < total; i++)
      if (i % n != 0 && sdw_test_rng_uniform(&rng) < 0.3) x[i] = -INFINITY;
  double *xd = malloc(total * sizeof *xd), *yd = malloc(total * sizeof *yd);
  double *dyd = malloc(total * sizeof *dyd), *g = malloc(total * sizeof *g);
  for (size_t i = 0; i < total; i++)
    xd[i] = x[i], dyd[i] = dy[i];
  ref_softmax(rows, n, xd, yd);

  int64_t shape[3];
  for (int i = 0; i < c->nlead; i++)
    shape[i] = c->lead[i];
  shape[c->nlead] = c->n;
  float *y = sdw_test_alloc_guarded(total, "y");
  sdw_tensor tx = sdw_tensor_make(x, SDW_F32, c->nlead + 1, shape);
  sdw_tensor ty = sdw_tensor_make(y, SDW_F32, c->nlead + 1, shape);
  sdw_tensor tdy = sdw_tensor_make(dy, SDW_F32, c->nlead + 1, shape);
  CHECK_OK(ctx->ops->softmax_forward(ctx, &tx, &ty));
  char w2[180];
  snprintf(w2, sizeof w2, "%s: y", what);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, total), 1e-5, w2);
  CHECK_GUARD(y);

  /* Analytic gradient in double: dx = y (dy - sum(y dy)). */
  for (size_t r = 0; r < rows; r++) {
    double s = 0;
    for (size_t j = 0; j < n; j++)
      s += yd[r * n + j] * dyd[r * n + j];
    for (size_t j = 0; j < n; j++)
      g[r * n + j] = yd[r * n + j] * (dyd[r * n + j] - s);
  }
  if (c->fd) {
    /* Finite differences of L over the finite inputs (masked ones have zero
     * gradient: their probability is identically zero). */
    const double step = 1e-5;
    double *fd = malloc(total * sizeof *fd), *tmp = malloc(total * sizeof *tmp);
    for (size_t i = 0; i < total; i++) {
      fd[i] = 0;
      if (isinf(xd[i])) continue;
      double x0 = xd[i], l[2];
      for (int s = 0; s < 2; s++) {
        xd[i] = x0 + (s ? -step : step);
        ref_softmax(rows, n, xd, tmp);
        l[s] = 0;
        for (size_t j = 0; j < total; j++)
          l[s] += dyd[j] * tmp[j];
      }
      xd[i] = x0;
      fd[i] = (l[0] - l[1]) / (2 * step);
    }
    snprintf(w2, sizeof w2, "%s: reference dx vs finite differences", what);
    CHECK_REL(sdw_test_rel_err_f64(g, fd, total), 1e-7, w2);
    memcpy(g, fd, total * sizeof *g); /* the kernel is checked against fd */
    free(fd);
    free(tmp);
  }
  /* Accumulates onto a pre-filled dx. */
  float *dx = sdw_test_alloc_guarded(total, "dx");
  float *dx0 = malloc(total * sizeof *dx0);
  sdw_test_fill_normal(&rng, dx0, total, 0.1f);
  memcpy(dx, dx0, total * sizeof *dx);
  double *want = malloc(total * sizeof *want);
  for (size_t i = 0; i < total; i++)
    want[i] = g[i] + dx0[i];
  sdw_tensor tdx = sdw_tensor_make(dx, SDW_F32, c->nlead + 1, shape);
  /* The backward reads the kernel's own y (as training would). */
  CHECK_OK(ctx->ops->softmax_backward(ctx, &ty, &tdy, &tdx));
  snprintf(w2, sizeof w2, "%s: dx", what);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, want, total), 1e-5, w2);
  CHECK_GUARD(dx);
  sdw_test_free_guarded(y), sdw_test_free_guarded(dx);
  free(x), free(dy), free(xd), free(yd), free(dyd), free(g), free(dx0), free(want);
}

SDW_TEST(softmax_forward_backward_vs_reference_and_finite_differences) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  static const softmax_case cases[] = {
      {{1}, 1, 1, 1.0f, false, true},
      {{3}, 1, 7, 1.0f, false, true},
      {{2, 3}, 2, 17, 3.0f, true, true},
      {{4}, 1, 33, 1.0f, false, true},
      {{2, 3}, 2, 77, 1.0f, true, false},
      {{5}, 1, 130, 10.0f, false, false},  /* peaky: relies on the max shift */
      {{40}, 1, 1030, 1.0f, false, false}, /* enough for the threaded path */
      {{3}, 1, 1030, 1.0f, true, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_softmax_case(ctx, &cases[i], 50 + i);
  sdw_ctx_destroy(ctx);
}
