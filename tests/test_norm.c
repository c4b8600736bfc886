/* Group norm and layer norm of the CPU backend against plain double
 * references written here, and every gradient against central finite
 * differences of L = sum(dy .* y) through that double reference.
 *
 * Tolerances (normwise relative error max|got - want| / max|want|):
 *  - forward 1e-5 (the brief's bound): the op accumulates its statistics in
 *    double and rounds y once, so y is within ~1 ulp of the reference
 *    (measured <= 6e-8); the saved f32 mean and rstd are single roundings of
 *    the double values (1e-6, measured <= 5e-8). A one-pass float variance
 *    on the offset SD-shaped case, a biased/unbiased mix-up or a wrong group
 *    split all give >= 1e-4.
 *  - gradients vs finite differences 1e-5: the backward reads the f32 mean
 *    and rstd (relative rounding 6e-8) and evaluates dx in double, so dx is
 *    within a few ulps of rstd*|dy| (measured <= 2e-7). The central
 *    difference with h = 1e-5 on the double reference has truncation
 *    ~h^2*|d3L| ~ 1e-9 and rounding ~1e-16*sum|dy*y|/h ~ 1e-9 (the analytic
 *    double backward agrees with it to <= 1e-9, checked at 1e-8).
 *  - accumulation: gradient buffers are pre-filled with N(0, 0.25) values of
 *    the gradients' size, so "=" instead of "+=" is an O(1) error.
 *  - the 1x320x64x64 group norm (40960 elements per group, +3 offset) and a
 *    1024x77 layer norm (multi-threaded dgamma/dbeta) use the analytic
 *    double backward, with the same 1e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

/* --- group norm reference ------------------------------------------------------ */

typedef struct gn_case {
  int n, c, h, w, g;
  double eps;
} gn_case;

static size_t gn_numel(const gn_case *k) { return (size_t)k->n * k->c * k->h * k->w; }

/* y = (x - mean) / sqrt(var + eps) * gamma + beta per (n, group); mean and
 * rstd [n*g] optional. */
static void ref_group_norm(const gn_case *k, const double *x, const double *gamma,
                           const double *beta, double *y, double *mean, double *rstd) {
  size_t s = (size_t)k->h * k->w, cg = (size_t)(k->c / k->g), m = cg * s;
  for (int n = 0; n < k->n; n++)
    for (int g = 0; g < k->g; g++) {
      size_t base = ((size_t)n * k->c + (size_t)g * cg) * s;
      double mu = 0, var = 0;
      for (size_t i = 0; i < m; i++)
        mu += x[base + i];
      mu /= (double)m;
      for (size_t i = 0; i < m; i++)
        var += (x[base + i] - mu) * (x[base + i] - mu);
      var /= (double)m;
      double rs = 1.0 / sqrt(var + k->eps);
      if (mean) mean[n * k->g + g] = mu;
      if (rstd) rstd[n * k->g + g] = rs;
      for (size_t i = 0; i < m; i++) {
        size_t c = (size_t)g * cg + i / s;
        y[base + i] = (x[base + i] - mu) * rs * gamma[c] + beta[c];
      }
    }
}

/* Analytic double gradients of L = sum(dy .* y), accumulated into dx, dgamma,
 * dbeta: dx = rstd (dxh - mean(dxh) - xhat mean(dxh xhat)), dxh = dy gamma. */
static void ref_group_norm_backward(const gn_case *k, const double *x, const double *gamma,
                                    const double *dy, double *dx, double *dgamma, double *dbeta) {
  size_t s = (size_t)k->h * k->w, cg = (size_t)(k->c / k->g), m = cg * s;
  for (int n = 0; n < k->n; n++)
    for (int g = 0; g < k->g; g++) {
      size_t base = ((size_t)n * k->c + (size_t)g * cg) * s;
      double mu = 0, var = 0;
      for (size_t i = 0; i < m; i++)
        mu += x[base + i];
      mu /= (double)m;
      for (size_t i = 0; i < m; i++)
        var += (x[base + i] - mu) * (x[base + i] - mu);
      var /= (double)m;
      double rs = 1.0 / sqrt(var + k->eps), a = 0, b = 0;
      for (size_t i = 0; i < m; i++) {
        size_t c = (size_t)g * cg + i / s;
        double xh = (x[base + i] - mu) * rs, dxh = dy[base + i] * gamma[c];
        a += dxh;
        b += dxh * xh;
        dgamma[c] += dy[base + i] * xh;
        dbeta[c] += dy[base + i];
      }
      for (size_t i = 0; i < m; i++) {
        size_t c = (size_t)g * cg + i / s;
        double xh = (x[base + i] - mu) * rs, dxh = dy[base + i] * gamma[c];
        dx[base + i] += rs * (dxh - a / (double)m - xh * b / (double)m);
      }
    }
}

typedef struct gn_loss_arg {
  const gn_case *k;
  double *x, *gamma, *beta, *dy, *y;
} gn_loss_arg;

static double gn_loss(void *p) {
  gn_loss_arg *a = p;
  ref_group_norm(a->k, a->x, a->gamma, a->beta, a->y, NULL, NULL);
  return ref_dot(a->dy, a->y, gn_numel(a->k));
}

/* Forward, saved statistics, and (when fd) every gradient against finite
 * differences, else against the analytic double backward. */
static void check_group_norm(sdw_ctx *ctx, const gn_case *k, sdw_test_rng *r, float offset,
                             bool fd) {
  size_t nx = gn_numel(k), nc = (size_t)k->c, ns = (size_t)k->n * k->g;
  char what[160];
  snprintf(what, sizeof what, "group_norm N%d C%d %dx%d G%d", k->n, k->c, k->h, k->w, k->g);
  float *x = ref_normal(r, nx, 1.3f, offset, "x");
  float *gamma = ref_uniform(r, nc, -1.5f, 1.5f, "gamma");
  float *beta = ref_normal(r, nc, 0.5f, 0.0f, "beta");
  float *dy = ref_normal(r, nx, 1.0f, 0.0f, "dy");
  float *y = sdw_test_alloc_guarded(nx, "y");
  float *mean = sdw_test_alloc_guarded(ns, "mean");
  float *rstd = sdw_test_alloc_guarded(ns, "rstd");
  int64_t xs[4] = {k->n, k->c, k->h, k->w};
  sdw_tensor tx = sdw_tensor_make(x, SDW_F32, 4, xs), ty = sdw_tensor_make(y, SDW_F32, 4, xs);
  sdw_tensor tdy = sdw_tensor_make(dy, SDW_F32, 4, xs);
  sdw_tensor tg = sdw_tensor_1d(gamma, SDW_F32, k->c), tb = sdw_tensor_1d(beta, SDW_F32, k->c);
  sdw_tensor tm = sdw_tensor_2d(mean, SDW_F32, k->n, k->g);
  sdw_tensor tr = sdw_tensor_2d(rstd, SDW_F32, k->n, k->g);
  CHECK_OK(ctx->ops->group_norm_forward(ctx, &tx, &tg, &tb, k->g, (float)k->eps, &ty, &tm, &tr));

  double *xd = ref_to_double(x, nx), *gd = ref_to_double(gamma, nc);
  double *bd = ref_to_double(beta, nc), *dyd = ref_to_double(dy, nx);
  double *yd = ref_zeros(nx), *md = ref_zeros(ns), *rd = ref_zeros(ns);
  /* the op takes eps as a float: the reference uses the same value */
  gn_case kf = *k;
  kf.eps = (float)k->eps;
  ref_group_norm(&kf, xd, gd, bd, yd, md, rd);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, nx), 1e-5, what);
  CHECK_REL(sdw_test_rel_err_f32_f64(mean, md, ns), 1e-6, "group_norm saved mean");
  CHECK_REL(sdw_test_rel_err_f32_f64(rstd, rd, ns), 1e-6, "group_norm saved rstd");

  /* backward into pre-filled buffers: checks += */
  float *dx = ref_normal(r, nx, 0.5f, 0.0f, "dx");
  float *dg = ref_normal(r, nc, 0.5f, 0.0f, "dgamma");
  float *db = ref_normal(r, nc, 0.5f, 0.0f, "dbeta");
  float *dx0 = ref_clone(dx, nx, "dx0"), *dg0 = ref_clone(dg, nc, "dg0");
  float *db0 = ref_clone(db, nc, "db0");
  sdw_tensor tdx = sdw_tensor_make(dx, SDW_F32, 4, xs);
  sdw_tensor tdg = sdw_tensor_1d(dg, SDW_F32, k->c), tdb = sdw_tensor_1d(db, SDW_F32, k->c);
  CHECK_OK(ctx->ops->group_norm_backward(ctx, &tx, &tg, &tm, &tr, &tdy, k->g, &tdx, &tdg, &tdb));

  double *gx = ref_zeros(nx), *gg = ref_zeros(nc), *gb = ref_zeros(nc);
  if (fd) {
    gn_loss_arg arg = {&kf, xd, gd, bd, dyd, yd};
    ref_fd_grad(gn_loss, &arg, xd, nx, 1e-5, gx);
    ref_fd_grad(gn_loss, &arg, gd, nc, 1e-5, gg);
    ref_fd_grad(gn_loss, &arg, bd, nc, 1e-5, gb);
    /* the analytic reference (used alone on the big case) agrees with them */
    double *ax = ref_zeros(nx), *ag = ref_zeros(nc), *ab = ref_zeros(nc);
    ref_group_norm_backward(&kf, xd, gd, dyd, ax, ag, ab);
    CHECK_REL(sdw_test_rel_err_f64(ax, gx, nx), 1e-8, "analytic group norm dx vs fd");
    CHECK_REL(sdw_test_rel_err_f64(ag, gg, nc), 1e-8, "analytic group norm dgamma vs fd");
    CHECK_REL(sdw_test_rel_err_f64(ab, gb, nc), 1e-8, "analytic group norm dbeta vs fd");
    free(ax), free(ag), free(ab);
  } else {
    ref_group_norm_backward(&kf, xd, gd, dyd, gx, gg, gb);
  }
  double *wx = ref_accumulated(dx0, gx, nx), *wg = ref_accumulated(dg0, gg, nc);
  double *wb = ref_accumulated(db0, gb, nc);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, wx, nx), 1e-5, "group_norm dx");
  CHECK_REL(sdw_test_rel_err_f32_f64(dg, wg, nc), 1e-5, "group_norm dgamma");
  CHECK_REL(sdw_test_rel_err_f32_f64(db, wb, nc), 1e-5, "group_norm dbeta");

  /* NULL outputs are skipped; the others still accumulate */
  memcpy(dg, dg0, nc * sizeof(float));
  CHECK_OK(ctx->ops->group_norm_backward(ctx, &tx, &tg, &tm, &tr, &tdy, k->g, NULL, &tdg, NULL));
  CHECK_REL(sdw_test_rel_err_f32_f64(dg, wg, nc), 1e-5, "group_norm dgamma alone");

  float *bufs[] = {x, gamma, beta, dy, y, mean, rstd, dx, dg, db, dx0, dg0, db0};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(xd), free(gd), free(bd), free(dyd), free(yd), free(md), free(rd);
  free(gx), free(gg), free(gb), free(wx), free(wg), free(wb);
}

SDW_TEST(group_norm_matches_double_reference_and_finite_differences) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(101);
  const gn_case fixed[] = {
      {2, 6, 3, 5, 3, 1e-5},  /* 2 channels per group, odd spatial */
      {1, 5, 7, 1, 5, 1e-5},  /* G = C */
      {3, 4, 3, 3, 1, 1e-5},  /* G = 1 */
      {2, 12, 1, 1, 4, 1e-6}, /* 1x1 spatial: groups of 3 */
      {1, 15, 2, 3, 5, 1e-5}, /* C not a power of two */
  };
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    check_group_norm(ctx, &fixed[i], &r, 0.5f, true);
  for (int t = 0; t < 4; t++) { /* random shapes, random divisor of C */
    gn_case k = {sdw_test_rng_int(&r, 1, 3),
                 sdw_test_rng_int(&r, 1, 12),
                 sdw_test_rng_int(&r, 1, 6),
                 sdw_test_rng_int(&r, 1, 6),
                 1,
                 1e-5};
    int divisors[12], nd = 0;
    for (int d = 1; d <= k.c; d++)
      if (k.c % d == 0) divisors[nd++] = d;
    k.g = divisors[sdw_test_rng_int(&r, 0, nd - 1)];
    check_group_norm(ctx, &k, &r, -0.7f, true);
  }
  sdw_ctx_destroy(ctx);
}

/* The SD shape (one image): 40960 elements per group with a +3 offset, where
 * a one-pass float variance would lose ~3 digits. */
SDW_TEST(group_norm_sd_shape_with_offset) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(102);
  const gn_case k = {1, 320, 64, 64, 32, 1e-5};
  check_group_norm(ctx, &k, &r, 3.0f, false);
  sdw_ctx_destroy(ctx);
}

/* NULL gamma/beta mean gamma = 1, beta = 0; NULL mean/rstd are not written. */
SDW_TEST(group_norm_without_affine_or_saved_stats) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(103);
  const gn_case k = {2, 6, 4, 3, 2, 1e-5};
  size_t nx = gn_numel(&k);
  float *x = ref_normal(&r, nx, 2.0f, 1.0f, "x");
  float *y = sdw_test_alloc_guarded(nx, "y");
  sdw_tensor tx = sdw_tensor_4d(x, SDW_F32, 2, 6, 4, 3), ty = sdw_tensor_4d(y, SDW_F32, 2, 6, 4, 3);
  CHECK_OK(ctx->ops->group_norm_forward(ctx, &tx, NULL, NULL, k.g, 1e-5f, &ty, NULL, NULL));
  double *xd = ref_to_double(x, nx), *yd = ref_zeros(nx);
  double ones[6] = {1, 1, 1, 1, 1, 1}, zeros[6] = {0};
  gn_case kf = k;
  kf.eps = 1e-5f;
  ref_group_norm(&kf, xd, ones, zeros, yd, NULL, NULL);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, nx), 1e-5, "group_norm without affine");
  CHECK_GUARD(y);
  sdw_test_free_guarded(x), sdw_test_free_guarded(y);
  free(xd), free(yd);
  sdw_ctx_destroy(ctx);
}

/* --- layer norm ----------------------------------------------------------------- */

typedef struct ln_case {
  int rows, dim;
  double eps;
} ln_case;

static void ref_layer_norm(const ln_case *k, const double *x, const double *gamma,
                           const double *beta, double *y, double *mean, double *rstd) {
  for (int r = 0; r < k->rows; r++) {
    const double *xr = x + (size_t)r * k->dim;
    double mu = 0, var = 0;
    for (int i = 0; i < k->dim; i++)
      mu += xr[i];
    mu /= k->dim;
    for (int i = 0; i < k->dim; i++)
      var += (xr[i] - mu) * (xr[i] - mu);
    var /= k->dim;
    double rs = 1.0 / sqrt(var + k->eps);
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
    for (int i = 0; i < k->dim; i++)
      y[(size_t)r * k->dim + i] = (xr[i] - mu) * rs * gamma[i] + beta[i];
  }
}

/* Analytic double gradients of L = sum(dy .* y), accumulated. */
static void ref_layer_norm_backward(const ln_case *k, const double *x, const double *gamma,
                                    const double *dy, double *dx, double *dgamma, double *dbeta) {
  for (int r = 0; r < k->rows; r++) {
    const double *xr = x + (size_t)r * k->dim, *dyr = dy + (size_t)r * k->dim;
    double mu = 0, var = 0, a = 0, b = 0;
    for (int i = 0; i < k->dim; i++)
      mu += xr[i];
    mu /= k->dim;
    for (int i = 0; i < k->dim; i++)
      var += (xr[i] - mu) * (xr[i] - mu);
    var /= k->dim;
    double rs = 1.0 / sqrt(var + k->eps);
    for (int i = 0; i < k->dim; i++) {
      double xh = (xr[i] - mu) * rs;
      a += dyr[i] * gamma[i];
      b += dyr[i] * gamma[i] * xh;
      dgamma[i] += dyr[i] * xh;
      dbeta[i] += dyr[i];
    }
    for (int i = 0; i < k->dim; i++) {
      double xh = (xr[i] - mu) * rs;
      dx[(size_t)r * k->dim + i] += rs * (dyr[i] * gamma[i] - a / k->dim - xh * b / k->dim);
    }
  }
}

typedef struct ln_loss_arg {
  const ln_case *k;
  double *x, *gamma, *beta, *dy, *y;
} ln_loss_arg;

static double ln_loss(void *p) {
  ln_loss_arg *a = p;
  ref_layer_norm(a->k, a->x, a->gamma, a->beta, a->y, NULL, NULL);
  return ref_dot(a->dy, a->y, (size_t)a->k->rows * a->k->dim);
}

/* x is [b, rows/b, dim] (3-D) when b > 1 to exercise leading-dim flattening.
 * Gradients against finite differences when fd, else against the analytic
 * double backward (itself checked against finite differences here). */
static void check_layer_norm(sdw_ctx *ctx, const ln_case *k, int b, sdw_test_rng *r, bool fd) {
  size_t nx = (size_t)k->rows * k->dim, nd = (size_t)k->dim, nr = (size_t)k->rows;
  char what[96];
  snprintf(what, sizeof what, "layer_norm %dx%d", k->rows, k->dim);
  float *x = ref_normal(r, nx, 0.8f, 0.3f, "x");
  float *gamma = ref_uniform(r, nd, -1.5f, 1.5f, "gamma");
  float *beta = ref_normal(r, nd, 0.5f, 0.0f, "beta");
  float *dy = ref_normal(r, nx, 1.0f, 0.0f, "dy");
  float *y = sdw_test_alloc_guarded(nx, "y");
  float *mean = sdw_test_alloc_guarded(nr, "mean"), *rstd = sdw_test_alloc_guarded(nr, "rstd");
  sdw_tensor tx = b > 1 ? sdw_tensor_3d(x, SDW_F32, b, k->rows / b, k->dim)
                        : sdw_tensor_2d(x, SDW_F32, k->rows, k->dim);
  sdw_tensor ty = tx, tdy = tx;
  ty.data = y;
  tdy.data = dy;
  sdw_tensor tg = sdw_tensor_1d(gamma, SDW_F32, k->dim), tb = sdw_tensor_1d(beta, SDW_F32, k->dim);
  sdw_tensor tm = sdw_tensor_1d(mean, SDW_F32, k->rows), tr = sdw_tensor_1d(rstd, SDW_F32, k->rows);
  CHECK_OK(ctx->ops->layer_norm_forward(ctx, &tx, &tg, &tb, (float)k->eps, &ty, &tm, &tr));
  ln_case kf = *k;
  kf.eps = (float)k->eps;
  double *xd = ref_to_double(x, nx), *gd = ref_to_double(gamma, nd), *bd = ref_to_double(beta, nd);
  double *dyd = ref_to_double(dy, nx), *yd = ref_zeros(nx), *md = ref_zeros(nr);
  double *rd = ref_zeros(nr);
  ref_layer_norm(&kf, xd, gd, bd, yd, md, rd);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, nx), 1e-5, what);
  CHECK_REL(sdw_test_rel_err_f32_f64(mean, md, nr), 1e-6, "layer_norm saved mean");
  CHECK_REL(sdw_test_rel_err_f32_f64(rstd, rd, nr), 1e-6, "layer_norm saved rstd");

  float *dx = ref_normal(r, nx, 0.5f, 0.0f, "dx"), *dg = ref_normal(r, nd, 0.5f, 0.0f, "dgamma");
  float *db = ref_normal(r, nd, 0.5f, 0.0f, "dbeta");
  float *dx0 = ref_clone(dx, nx, "dx0"), *dg0 = ref_clone(dg, nd, "dg0");
  float *db0 = ref_clone(db, nd, "db0");
  sdw_tensor tdx = tx;
  tdx.data = dx;
  sdw_tensor tdg = sdw_tensor_1d(dg, SDW_F32, k->dim), tdb = sdw_tensor_1d(db, SDW_F32, k->dim);
  CHECK_OK(ctx->ops->layer_norm_backward(ctx, &tx, &tg, &tm, &tr, &tdy, &tdx, &tdg, &tdb));
  double *gx = ref_zeros(nx), *gg = ref_zeros(nd), *gb = ref_zeros(nd);
  if (fd) {
    ln_loss_arg arg = {&kf, xd, gd, bd, dyd, yd};
    ref_fd_grad(ln_loss, &arg, xd, nx, 1e-5, gx);
    ref_fd_grad(ln_loss, &arg, gd, nd, 1e-5, gg);
    ref_fd_grad(ln_loss, &arg, bd, nd, 1e-5, gb);
    double *ax = ref_zeros(nx), *ag = ref_zeros(nd), *ab = ref_zeros(nd);
    ref_layer_norm_backward(&kf, xd, gd, dyd, ax, ag, ab);
    CHECK_REL(sdw_test_rel_err_f64(ax, gx, nx), 1e-8, "analytic layer norm dx vs fd");
    CHECK_REL(sdw_test_rel_err_f64(ag, gg, nd), 1e-8, "analytic layer norm dgamma vs fd");
    CHECK_REL(sdw_test_rel_err_f64(ab, gb, nd), 1e-8, "analytic layer norm dbeta vs fd");
    free(ax), free(ag), free(ab);
  } else {
    ref_layer_norm_backward(&kf, xd, gd, dyd, gx, gg, gb);
  }
  double *wx = ref_accumulated(dx0, gx, nx), *wg = ref_accumulated(dg0, gg, nd);
  double *wb = ref_accumulated(db0, gb, nd);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, wx, nx), 1e-5, "layer_norm dx");
  CHECK_REL(sdw_test_rel_err_f32_f64(dg, wg, nd), 1e-5, "layer_norm dgamma");
  CHECK_REL(sdw_test_rel_err_f32_f64(db, wb, nd), 1e-5, "layer_norm dbeta");

  /* dx alone (parameter gradients skipped) */
  memcpy(dx, dx0, nx * sizeof(float));
  CHECK_OK(ctx->ops->layer_norm_backward(ctx, &tx, &tg, &tm, &tr, &tdy, &tdx, NULL, NULL));
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, wx, nx), 1e-5, "layer_norm dx alone");

  float *bufs[] = {x, gamma, beta, dy, y, mean, rstd, dx, dg, db, dx0, dg0, db0};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(xd), free(gd), free(bd), free(dyd), free(yd), free(md), free(rd);
  free(gx), free(gg), free(gb), free(wx), free(wg), free(wb);
}

SDW_TEST(layer_norm_matches_double_reference_and_finite_differences) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(104);
  const ln_case fixed[] = {{6, 7, 1e-5}, {5, 33, 1e-5}, {4, 1, 1e-5}, {3, 64, 1e-6}};
  const int batch[] = {2, 1, 1, 3};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
    check_layer_norm(ctx, &fixed[i], batch[i], &r, true);
  for (int t = 0; t < 3; t++) {
    ln_case k = {sdw_test_rng_int(&r, 1, 9), sdw_test_rng_int(&r, 2, 41), 1e-5};
    check_layer_norm(ctx, &k, 1, &r, true);
  }
  /* enough rows for the multi-threaded path (per-thread dgamma/dbeta) */
  ln_case big = {1024, 77, 1e-5};
  check_layer_norm(ctx, &big, 4, &r, false);
  sdw_ctx_destroy(ctx);
}

/* NULL gamma/beta mean gamma = 1, beta = 0. */
SDW_TEST(layer_norm_without_affine) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(105);
  const ln_case k = {3, 9, 1e-5};
  float *x = ref_normal(&r, 27, 1.0f, 2.0f, "x"), *y = sdw_test_alloc_guarded(27, "y");
  sdw_tensor tx = sdw_tensor_2d(x, SDW_F32, 3, 9), ty = sdw_tensor_2d(y, SDW_F32, 3, 9);
  CHECK_OK(ctx->ops->layer_norm_forward(ctx, &tx, NULL, NULL, 1e-5f, &ty, NULL, NULL));
  double ones[9], zeros[9] = {0};
  for (int i = 0; i < 9; i++)
    ones[i] = 1;
  double *xd = ref_to_double(x, 27), *yd = ref_zeros(27);
  ln_case kf = k;
  kf.eps = 1e-5f;
  ref_layer_norm(&kf, xd, ones, zeros, yd, NULL, NULL);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, 27), 1e-5, "layer_norm without affine");
  CHECK_GUARD(y);
  sdw_test_free_guarded(x), sdw_test_free_guarded(y);
  free(xd), free(yd);
  sdw_ctx_destroy(ctx);
}
