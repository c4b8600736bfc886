/* SiLU, GELU (erf), QuickGELU and GEGLU of the CPU backend against plain
 * double references written here (libm exp and erfc in double), and every
 * backward against central finite differences of L = sum(dy .* f(x))
 * through those references.
 *
 * Tolerances (normwise relative error max|got - want| / max|want|):
 *  - forward 1e-5 (the brief's bound): the kernels use their own vectorised
 *    float exp (degree-7 Taylor after Cody-Waite reduction, ~1-2 ulp) and
 *    erf (Taylor series below |z| = 0.5, Chebyshev fit of erfc above, 3.4e-8
 *    relative), so each output is within a few ulps of the double value
 *    (measured <= 1.2e-7). sigmoid(x) instead of sigmoid(1.702x) is O(1) off.
 *  - the dense sweep over [-20, 20] bounds every element separately:
 *    |got - want| <= (4 + 2 cond) 2^-24 |want| + 1e-30 for the forward,
 *    cond = |x f'(x) / f(x)| (the kernels round a scaled argument, kx or
 *    x/sqrt2, once: that perturbation is amplified by cond in the tails);
 *    and 4e-7 max|f'| for the derivative (its terms cancel near gelu's
 *    minimum; measured <= 2.2e-7). The tanh approximation of GELU (~1e-4
 *    absolute error) fails this by orders of magnitude; the textbook
 *    derivative s (1 + x (1 - s)), with 1 - s formed from a rounded s,
 *    already exceeds it near x = 5.6 (error ~x ulps).
 *  - backward vs finite differences 1e-5: dx = dy*f'(x) is a product of
 *    floats with f' accurate to a few ulps (measured <= 1.8e-7). Central
 *    differences with h = 1e-5: truncation h^2 |f'''|/6 ~ 1e-11, rounding
 *    ~1e-16 sum|dy f| / h ~ 1e-8 for these sizes.
 *  - accumulation: dx is pre-filled with N(0, 0.25) values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

/* --- double references ------------------------------------------------------ */

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
/* 0.5 x (1 + erf(x/sqrt2)), written with erfc so the lower tail keeps its
 * digits in double too. */
static double ref_gelu(double x) { return 0.5 * x * erfc(-x / sqrt(2.0)); }
static double ref_quick_gelu(double x) { return x / (1.0 + exp(-1.702 * x)); }

/* Analytic derivatives, for the dense sweep only (the finite differences
 * below check the backward independently of these). */
static double ref_silu_grad(double x) {
  double s = 1.0 / (1.0 + exp(-x));
  return s * (1.0 + x * (1.0 - s));
}
static double ref_gelu_grad(double x) {
  return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}
static double ref_quick_gelu_grad(double x) {
  double s = 1.0 / (1.0 + exp(-1.702 * x));
  return s + 1.702 * x * s * (1.0 - s);
}

typedef sdw_status (*act_forward_fn)(sdw_ctx *, const sdw_tensor *, sdw_tensor *);
typedef sdw_status (*act_backward_fn)(sdw_ctx *, const sdw_tensor *, const sdw_tensor *,
                                      sdw_tensor *);

typedef struct act_op {
  const char *name;
  double (*f)(double);
  double (*df)(double);
  act_forward_fn (*forward)(const sdw_backend *);
  act_backward_fn (*backward)(const sdw_backend *);
} act_op;

static act_forward_fn silu_fwd(const sdw_backend *b) { return b->silu_forward; }
static act_backward_fn silu_bwd(const sdw_backend *b) { return b->silu_backward; }
static act_forward_fn gelu_fwd(const sdw_backend *b) { return b->gelu_forward; }
static act_backward_fn gelu_bwd(const sdw_backend *b) { return b->gelu_backward; }
static act_forward_fn qgelu_fwd(const sdw_backend *b) { return b->quick_gelu_forward; }
static act_backward_fn qgelu_bwd(const sdw_backend *b) { return b->quick_gelu_backward; }

static const act_op ACT_OPS[] = {
    {"silu", ref_silu, ref_silu_grad, silu_fwd, silu_bwd},
    {"gelu", ref_gelu, ref_gelu_grad, gelu_fwd, gelu_bwd},
    {"quick_gelu", ref_quick_gelu, ref_quick_gelu_grad, qgelu_fwd, qgelu_bwd},
};

typedef struct act_loss_arg {
  double (*f)(double);
  const double *dy;
  size_t n;
  double *x;
} act_loss_arg;

static double act_loss(void *p) {
  act_loss_arg *a = p;
  double s = 0.0;
  for (size_t i = 0; i < a->n; i++)
    s += a->dy[i] * a->f(a->x[i]);
  return s;
}

/* One elementwise op on a random shape: forward (also in place), backward
 * vs finite differences with accumulation, NULL dx skipped. */
static void check_act(sdw_ctx *ctx, const act_op *op, const int64_t *shape, int ndim,
                      sdw_test_rng *r) {
  sdw_tensor probe = sdw_tensor_make(NULL, SDW_F32, ndim, shape);
  size_t n = (size_t)sdw_tensor_numel(&probe);
  char what[96];
  snprintf(what, sizeof what, "%s forward n=%zu", op->name, n);
  float *x = ref_normal(r, n, 3.0f, 0.0f, "x"), *y = sdw_test_alloc_guarded(n, "y");
  float *dy = ref_normal(r, n, 1.0f, 0.0f, "dy"), *dx = ref_normal(r, n, 0.5f, 0.0f, "dx");
  float *dx0 = ref_clone(dx, n, "dx0"), *xin = ref_clone(x, n, "x in place");
  sdw_tensor tx = sdw_tensor_make(x, SDW_F32, ndim, shape), ty = tx, tdy = tx, tdx = tx;
  ty.data = y, tdy.data = dy, tdx.data = dx;
  CHECK_OK(op->forward(ctx->ops)(ctx, &tx, &ty));
  double *xd = ref_to_double(x, n), *dyd = ref_to_double(dy, n), *yd = ref_zeros(n);
  for (size_t i = 0; i < n; i++)
    yd[i] = op->f(xd[i]);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, n), 1e-5, what);

  /* y aliasing x gives the same values */
  sdw_tensor tin = tx;
  tin.data = xin;
  CHECK_OK(op->forward(ctx->ops)(ctx, &tin, &tin));
  CHECK(memcmp(xin, y, n * sizeof(float)) == 0);

  CHECK_OK(op->backward(ctx->ops)(ctx, &tx, &tdy, &tdx));
  double *g = ref_zeros(n);
  act_loss_arg arg = {op->f, dyd, n, xd};
  ref_fd_grad(act_loss, &arg, xd, n, 1e-5, g);
  double *want = ref_accumulated(dx0, g, n);
  snprintf(what, sizeof what, "%s backward n=%zu", op->name, n);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, want, n), 1e-5, what);
  CHECK_OK(op->backward(ctx->ops)(ctx, &tx, &tdy, NULL));

  float *bufs[] = {x, y, dy, dx, dx0, xin};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(xd), free(dyd), free(yd), free(g), free(want);
}

SDW_TEST(activations_match_double_reference_and_finite_differences) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(201);
  for (size_t k = 0; k < sizeof ACT_OPS / sizeof *ACT_OPS; k++) {
    const int64_t s1[] = {1}, s2[] = {3, 7, 11}, s3[] = {2, 5, 3, 9};
    check_act(ctx, &ACT_OPS[k], s1, 1, &r);
    check_act(ctx, &ACT_OPS[k], s2, 3, &r);
    check_act(ctx, &ACT_OPS[k], s3, 4, &r);
    int64_t rs[2] = {sdw_test_rng_int(&r, 1, 17), sdw_test_rng_int(&r, 1, 37)};
    check_act(ctx, &ACT_OPS[k], rs, 2, &r);
  }
  sdw_ctx_destroy(ctx);
}

/* Every float in a dense sweep of [-20, 20] (plus the multi-threaded path):
 * elementwise bounds on f and f' against libm in double. */
SDW_TEST(activations_dense_sweep_elementwise) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  enum { N = 200001 };
  float *x = sdw_test_alloc_guarded(N, "x"), *y = sdw_test_alloc_guarded(N, "y");
  float *ones = sdw_test_alloc_guarded(N, "dy"), *dx = sdw_test_alloc_guarded(N, "dx");
  for (int i = 0; i < N; i++)
    x[i] = (float)(-20.0 + 40.0 * i / (N - 1)), ones[i] = 1.0f;
  sdw_tensor tx = sdw_tensor_1d(x, SDW_F32, N), ty = sdw_tensor_1d(y, SDW_F32, N);
  sdw_tensor tdy = sdw_tensor_1d(ones, SDW_F32, N), tdx = sdw_tensor_1d(dx, SDW_F32, N);
  for (size_t k = 0; k < sizeof ACT_OPS / sizeof *ACT_OPS; k++) {
    const act_op *op = &ACT_OPS[k];
    memset(dx, 0, N * sizeof(float));
    CHECK_OK(op->forward(ctx->ops)(ctx, &tx, &ty));
    CHECK_OK(op->backward(ctx->ops)(ctx, &tx, &tdy, &tdx));
    double max_df = 0.0;
    for (int i = 0; i < N; i++)
      max_df = fmax(max_df, fabs(op->df(x[i])));
    int bad_f = 0, bad_df = 0;
    for (int i = 0; i < N; i++) {
      double f = op->f(x[i]), df = op->df(x[i]);
      /* a few ulps, plus the condition number |x f'/f| times the rounding
       * of the kernel's scaled argument (kx, x/sqrt2) */
      double cond = f != 0.0 ? fabs(x[i] * df / f) : 0.0;
      if (!(fabs(y[i] - f) <= (4.0 + 2.0 * cond) * 0x1p-24 * fabs(f) + 1e-30)) {
        if (bad_f++ < 3) CHECK_MSG(0, "%s(%.9g) = %.9g, want %.9g", op->name, x[i], y[i], f);
      }
      if (!(fabs(dx[i] - df) <= 4e-7 * max_df)) {
        if (bad_df++ < 3) CHECK_MSG(0, "%s'(%.9g) = %.9g, want %.9g", op->name, x[i], dx[i], df);
      }
    }
  }
  /* NaN propagates */
  float nan_in[3] = {NAN, 1.0f, -1.0f}, out[3];
  sdw_tensor tn = sdw_tensor_1d(nan_in, SDW_F32, 3), to = sdw_tensor_1d(out, SDW_F32, 3);
  for (size_t k = 0; k < sizeof ACT_OPS / sizeof *ACT_OPS; k++) {
    CHECK_OK(ACT_OPS[k].forward(ctx->ops)(ctx, &tn, &to));
    CHECK_MSG(isnan(out[0]) && !isnan(out[1]), "%s: NaN in, NaN out", ACT_OPS[k].name);
  }
  float *bufs[] = {x, y, ones, dx};
  for (size_t i = 0; i < 4; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  sdw_ctx_destroy(ctx);
}

/* --- GEGLU: x[*, 2D] = [hidden | gate] -> hidden * gelu(gate) ------------------- */

typedef struct geglu_arg {
  size_t rows, d;
  const double *dy;
  double *x;
} geglu_arg;

static void ref_geglu(size_t rows, size_t d, const double *x, double *y) {
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < d; j++)
      y[r * d + j] = x[r * 2 * d + j] * ref_gelu(x[r * 2 * d + d + j]);
}

static double geglu_loss(void *p) {
  geglu_arg *a = p;
  double s = 0.0;
  for (size_t r = 0; r < a->rows; r++)
    for (size_t j = 0; j < a->d; j++)
      s += a->dy[r * a->d + j] * a->x[r * 2 * a->d + j] * ref_gelu(a->x[r * 2 * a->d + a->d + j]);
  return s;
}

static void check_geglu(sdw_ctx *ctx, int b, int t, int d, sdw_test_rng *r) {
  size_t rows = (size_t)b * t, nx = rows * 2 * d, ny = rows * d;
  char what[96];
  snprintf(what, sizeof what, "geglu [%d,%d,2x%d]", b, t, d);
  float *x = ref_normal(r, nx, 2.0f, 0.0f, "x"), *y = sdw_test_alloc_guarded(ny, "y");
  float *dy = ref_normal(r, ny, 1.0f, 0.0f, "dy"), *dx = ref_normal(r, nx, 0.5f, 0.0f, "dx");
  float *dx0 = ref_clone(dx, nx, "dx0");
  sdw_tensor tx = sdw_tensor_3d(x, SDW_F32, b, t, 2 * d), ty = sdw_tensor_3d(y, SDW_F32, b, t, d);
  sdw_tensor tdy = sdw_tensor_3d(dy, SDW_F32, b, t, d),
             tdx = sdw_tensor_3d(dx, SDW_F32, b, t, 2 * d);
  CHECK_OK(ctx->ops->geglu_forward(ctx, &tx, &ty));
  double *xd = ref_to_double(x, nx), *dyd = ref_to_double(dy, ny), *yd = ref_zeros(ny);
  ref_geglu(rows, (size_t)d, xd, yd);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, ny), 1e-5, what);
  CHECK_OK(ctx->ops->geglu_backward(ctx, &tx, &tdy, &tdx));
  double *g = ref_zeros(nx);
  geglu_arg arg = {rows, (size_t)d, dyd, xd};
  ref_fd_grad(geglu_loss, &arg, xd, nx, 1e-5, g);
  double *want = ref_accumulated(dx0, g, nx);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, want, nx), 1e-5, "geglu backward");
  CHECK_OK(ctx->ops->geglu_backward(ctx, &tx, &tdy, NULL));
  float *bufs[] = {x, y, dy, dx, dx0};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(xd), free(dyd), free(yd), free(g), free(want);
}

SDW_TEST(geglu_matches_double_reference_and_finite_differences) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(202);
  check_geglu(ctx, 1, 1, 1, &r);
  check_geglu(ctx, 2, 3, 7, &r);
  check_geglu(ctx, 1, 5, 16, &r);
  check_geglu(ctx, sdw_test_rng_int(&r, 1, 3), sdw_test_rng_int(&r, 1, 6),
              sdw_test_rng_int(&r, 1, 25), &r);
  /* a forward large enough for the threaded path */
  int b = 2, t = 77, d = 320;
  size_t nx = (size_t)b * t * 2 * d, ny = (size_t)b * t * d;
  float *x = ref_normal(&r, nx, 2.0f, 0.0f, "x"), *y = sdw_test_alloc_guarded(ny, "y");
  sdw_tensor tx = sdw_tensor_3d(x, SDW_F32, b, t, 2 * d), ty = sdw_tensor_3d(y, SDW_F32, b, t, d);
  CHECK_OK(ctx->ops->geglu_forward(ctx, &tx, &ty));
  double *xd = ref_to_double(x, nx), *yd = ref_zeros(ny);
  ref_geglu((size_t)b * t, (size_t)d, xd, yd);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, ny), 1e-5, "geglu [2,77,2x320]");
  CHECK_GUARD(x), CHECK_GUARD(y);
  sdw_test_free_guarded(x), sdw_test_free_guarded(y);
  free(xd), free(yd);
  sdw_ctx_destroy(ctx);
}
