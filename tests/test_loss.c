/* Per-sample MSE of the CPU backend against a double reference written here;
 * the backward against central finite differences of
 * L = sum_n dloss[n] * loss[n](pred) in double.
 *
 * Tolerances (normwise relative error):
 *  - forward 1e-7: the op forms the differences and the sum in double and
 *    rounds each loss once, so it is within 2^-24 = 6e-8 of the reference;
 *    a float accumulation over 16384 elements or the wrong divisor (batch
 *    mean, sum) fails.
 *  - backward 5e-7: L is quadratic in pred, so the central difference
 *    (h = 1e-3) has no truncation error (rounding ~1e-12 here); the op
 *    rounds the coefficient 2 dloss / count, pred - target, their product
 *    and the +=: <= 4u = 2.4e-7 relative to max|prefill + gradient|. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

static void ref_mse(const double *p, const double *t, size_t n, size_t count, double *loss) {
  for (size_t s = 0; s < n; s++) {
    double acc = 0.0;
    for (size_t i = 0; i < count; i++) {
      double d = p[s * count + i] - t[s * count + i];
      acc += d * d;
    }
    loss[s] = acc / (double)count;
  }
}

typedef struct mse_arg {
  size_t n, count;
  double *pred;
  const double *target, *dloss;
  double *loss;
} mse_arg;

static double mse_weighted(void *p) {
  mse_arg *a = p;
  ref_mse(a->pred, a->target, a->n, a->count, a->loss);
  return ref_dot(a->dloss, a->loss, a->n);
}

static void check_mse(sdw_ctx *ctx, const int64_t *shape, int ndim, sdw_test_rng *r) {
  sdw_tensor probe = sdw_tensor_make(NULL, SDW_F32, ndim, shape);
  size_t total = (size_t)sdw_tensor_numel(&probe), n = (size_t)shape[0], count = total / n;
  char what[64];
  snprintf(what, sizeof what, "mse_loss_forward %zux%zu", n, count);
  float *pred = ref_normal(r, total, 1.0f, 0.2f, "pred"),
        *target = ref_normal(r, total, 1.0f, 0.0f, "target");
  float *loss = sdw_test_alloc_guarded(n, "loss"), *dloss = ref_normal(r, n, 1.0f, 0.0f, "dloss");
  float *dpred = ref_normal(r, total, 0.5f / (float)count, 0.0f, "dpred");
  float *dpred0 = ref_clone(dpred, total, "dpred0");
  sdw_tensor tp = sdw_tensor_make(pred, SDW_F32, ndim, shape), tt = tp, tdp = tp;
  tt.data = target, tdp.data = dpred;
  sdw_tensor tl = sdw_tensor_1d(loss, SDW_F32, (int64_t)n),
             tdl = sdw_tensor_1d(dloss, SDW_F32, (int64_t)n);
  CHECK_OK(ctx->ops->mse_loss_forward(ctx, &tp, &tt, &tl));
  double *pd = ref_to_double(pred, total), *td = ref_to_double(target, total);
  double *dld = ref_to_double(dloss, n), *want = ref_zeros(n);
  ref_mse(pd, td, n, count, want);
  CHECK_REL(sdw_test_rel_err_f32_f64(loss, want, n), 1e-7, what);

  CHECK_OK(ctx->ops->mse_loss_backward(ctx, &tp, &tt, &tdl, &tdp));
  double *g = ref_zeros(total);
  if (total <= 4096) {
    double *scratch = ref_zeros(n);
    mse_arg arg = {n, count, pd, td, dld, scratch};
    ref_fd_grad(mse_weighted, &arg, pd, total, 1e-3, g);
    free(scratch);
  } else { /* large case: the analytic gradient in double */
    for (size_t i = 0; i < total; i++)
      g[i] = dld[i / count] * 2.0 * (pd[i] - td[i]) / (double)count;
  }
  double *wp = ref_accumulated(dpred0, g, total);
  CHECK_REL(sdw_test_rel_err_f32_f64(dpred, wp, total), 5e-7, "mse_loss_backward");
  CHECK_OK(ctx->ops->mse_loss_backward(ctx, &tp, &tt, &tdl, NULL));
  float *bufs[] = {pred, target, loss, dloss, dpred, dpred0};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(pd), free(td), free(dld), free(want), free(g), free(wp);
}

SDW_TEST(mse_loss_matches_double_reference_and_finite_differences) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(501);
  const int64_t s1[] = {5}, s2[] = {3, 1}, s3[] = {2, 4, 3, 5}, s4[] = {4, 3, 7, 9};
  check_mse(ctx, s1, 1, &r);
  check_mse(ctx, s2, 2, &r);
  check_mse(ctx, s3, 4, &r);
  check_mse(ctx, s4, 4, &r);
  const int64_t big[] = {2, 4, 64, 64}; /* latent-sized: 16384 per sample, threaded */
  check_mse(ctx, big, 4, &r);
  const int64_t one[] = {1, 4, 96, 96}; /* one sample, 36864 elements: threaded backward */
  check_mse(ctx, one, 4, &r);
  sdw_ctx_destroy(ctx);
}
