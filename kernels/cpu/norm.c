/* CPU group norm and layer norm, forward and backward (kernels/ops.h has the
 * contracts).
 *
 * Statistics are two-pass (mean, then the mean of squared deviations) with
 * double accumulators, so a 64x64x320 group norm (40960 elements per group)
 * or an input with a large common offset loses nothing to cancellation. The
 * normalisation itself, y = (x - mean) * rstd * gamma + beta, is evaluated
 * per element in double from the double mean and rounded once. mean and
 * rstd are saved as f32 (the backward reads them back). gamma and beta may be
 * NULL (a norm without affine parameters: gamma = 1, beta = 0). */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/cpu_ops.h"

static int norm_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void norm_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

/* An optional per-channel parameter (gamma, beta, dgamma, dbeta): [C]. */
static const float *norm_param(const sdw_tensor *p, int64_t c) {
  if (!p) return NULL;
  norm_check_f32(p);
  SDW_ASSERT(p->ndim == 1 && p->shape[0] == c);
  return p->data;
}

/* Saved statistics: f32 with count elements (mean[N,G] / rstd[N,G] for group
 * norm, [M] for layer norm; only the element count is checked, so callers may
 * keep them flat). */
static void norm_check_stats(const sdw_tensor *t, int64_t count) {
  norm_check_f32(t);
  SDW_ASSERT(sdw_tensor_numel(t) == count);
}

/* Two-pass mean and 1/sqrt(biased variance + eps) of n contiguous floats. */
static void norm_moments(const float *x, int64_t n, double eps, double *mean_out,
                         double *rstd_out) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; i++)
    sum += x[i];
  double mean = sum / (double)n;
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < n; i++) {
    double d = (double)x[i] - mean;
    sq += d * d;
  }
  *mean_out = mean;
  *rstd_out = 1.0 / sqrt(sq / (double)n + eps);
}

/* --- group norm ----------------------------------------------------------------- */

typedef struct gn_dims {
  int64_t n, c, s, g, cg; /* batch, channels, spatial, groups, channels per group */
} gn_dims;

static gn_dims gn_check(const sdw_tensor *x, int groups) {
  norm_check_f32(x);
  SDW_ASSERT(x->ndim >= 2);
  gn_dims d = {.n = x->shape[0], .c = x->shape[1], .s = sdw_tensor_span(x, 2, x->ndim)};
  SDW_ASSERT(groups > 0 && d.c % groups == 0);
  d.g = groups;
  d.cg = d.c / groups;
  return d;
}

sdw_status sdw_cpu_group_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                      const sdw_tensor *beta, int groups, float eps, sdw_tensor *y,
                                      sdw_tensor *mean, sdw_tensor *rstd) {
  gn_dims d = gn_check(x, groups);
  const float *gp = norm_param(gamma, d.c), *bp = norm_param(beta, d.c);
  norm_check_f32(y);
  SDW_ASSERT(sdw_tensor_same_shape(x, y));
  if (mean) norm_check_stats(mean, d.n * d.g);
  if (rstd) norm_check_stats(rstd, d.n * d.g);
  float *meanp = mean ? mean->data : NULL, *rstdp = rstd ? rstd->data : NULL;
  const float *xp = x->data;
  float *yp = y->data;
  int64_t tasks = d.n * d.g, per_group = d.cg * d.s;
#pragma omp parallel for schedule(static) num_threads(norm_threads(ctx)) if (tasks > 1)
  for (int64_t task = 0; task < tasks; task++) {
    int64_t g = task % d.g, c0 = g * d.cg;
    const float *xg = xp + task * per_group;
    float *yg = yp + task * per_group;
    double mu, rs;
    norm_moments(xg, per_group, eps, &mu, &rs);
    if (meanp) meanp[task] = (float)mu;
    if (rstdp) rstdp[task] = (float)rs;
    for (int64_t ci = 0; ci < d.cg; ci++) {
      double a = rs * (gp ? gp[c0 + ci] : 1.0), b = bp ? bp[c0 + ci] : 0.0;
      const float *xc = xg + ci * d.s;
      float *yc = yg + ci * d.s;
#pragma omp simd
      for (int64_t i = 0; i < d.s; i++)
        yc[i] = (float)(((double)xc[i] - mu) * a + b);
    }
  }
  return SDW_OK;
}

/* With xhat = (x - mean) rstd over a group of M = Cg*S elements and
 * A = sum dy*gamma, B = sum dy*gamma*x (per group):
 *   dx = rstd (gamma dy - A/M - xhat (sum dy gamma xhat)/M)
 *      = rstd gamma dy + c2 x + c3,
 *   c2 = -rstd^3 (B - mean A)/M,  c3 = -c2 mean - rstd A/M;
 *   dgamma[c] = sum_n rstd (sum_s dy x - mean sum_s dy), dbeta[c] = sum_n sum_s dy.
 * One task per (n, g) computes its channels' sums (kept in scratch for the
 * dgamma/dbeta reduction) and then its dx while the group is still in cache. */
sdw_status sdw_cpu_group_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *mean, const sdw_tensor *rstd,
                                       const sdw_tensor *dy, int groups, sdw_tensor *dx,
                                       sdw_tensor *dgamma, sdw_tensor *dbeta) {
  gn_dims d = gn_check(x, groups);
  const float *gp = norm_param(gamma, d.c);
  SDW_ASSERT(mean && rstd);
  norm_check_stats(mean, d.n * d.g);
  norm_check_stats(rstd, d.n * d.g);
  norm_check_f32(dy);
  SDW_ASSERT(sdw_tensor_same_shape(x, dy));
  if (dx) {
    norm_check_f32(dx);
    SDW_ASSERT(sdw_tensor_same_shape(x, dx));
  }
  float *dgp = (float *)norm_param(dgamma, d.c), *dbp = (float *)norm_param(dbeta, d.c);
  if (!dx && !dgp && !dbp) return SDW_OK;

  size_t mark = sdw_arena_mark(ctx->scratch);
  /* sums[2*(n*C + c)] = sum_s dy*x, sums[2*(n*C + c) + 1] = sum_s dy */
  double *sums = sdw_arena_alloc(ctx->scratch, sizeof(double) * 2 * (size_t)(d.n * d.c));
  if (!sums) return SDW_ERR_OUT_OF_MEMORY;
  const float *xp = x->data, *dyp = dy->data, *meanp = mean->data, *rstdp = rstd->data;
  float *dxp = dx ? dx->data : NULL;
  int64_t tasks = d.n * d.g, per_group = d.cg * d.s;
#pragma omp parallel for schedule(static) num_threads(norm_threads(ctx)) if (tasks > 1)
  for (int64_t task = 0; task < tasks; task++) {
    int64_t n = task / d.g, g = task % d.g, c0 = g * d.cg;
    const float *xg = xp + task * per_group, *dyg = dyp + task * per_group;
    double a_sum = 0.0, b_sum = 0.0;
    for (int64_t ci = 0; ci < d.cg; ci++) {
      const float *xc = xg + ci * d.s, *dyc = dyg + ci * d.s;
      double sdx = 0.0, sd = 0.0;
#pragma omp simd reduction(+ : sdx, sd)
      for (int64_t i = 0; i < d.s; i++) {
        sdx += (double)dyc[i] * xc[i];
        sd += dyc[i];
      }
      double *out = sums + 2 * (n * d.c + c0 + ci);
      out[0] = sdx;
      out[1] = sd;
      double gam = gp ? gp[c0 + ci] : 1.0;
      a_sum += gam * sd;
      b_sum += gam * sdx;
    }
    if (!dxp) continue;
    double mu = meanp[task], rs = rstdp[task], m = (double)per_group;
    double c2 = -rs * rs * rs * (b_sum - mu * a_sum) / m;
    double c3 = -c2 * mu - rs * a_sum / m;
    float *dxg = dxp + task * per_group;
    for (int64_t ci = 0; ci < d.cg; ci++) {
      double k = rs * (gp ? gp[c0 + ci] : 1.0);
      const float *xc = xg + ci * d.s, *dyc = dyg + ci * d.s;
      float *dxc = dxg + ci * d.s;
#pragma omp simd
      for (int64_t i = 0; i < d.s; i++)
        dxc[i] += (float)(k * (double)dyc[i] + c2 * (double)xc[i] + c3);
    }
  }
  /* Parameter gradients: a reduction over the batch, in a fixed order. */
  for (int64_t c = 0; c < d.c && (dgp || dbp); c++) {
    int64_t g = c / d.cg;
    double dg = 0.0, db = 0.0;
    for (int64_t n = 0; n < d.n; n++) {
      const double *s = sums + 2 * (n * d.c + c);
      double mu = meanp[n * d.g + g], rs = rstdp[n * d.g + g];
      dg += rs * (s[0] - mu * s[1]);
      db += s[1];
    }
    if (dgp) dgp[c] += (float)dg;
    if (dbp) dbp[c] += (float)db;
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}

/* --- layer norm ----------------------------------------------------------------- */

/* gamma = 1 and beta = 0 (2*dim floats from scratch) for a norm without
 * affine parameters; NULL when scratch is exhausted. */
static const float *ln_unit_params(sdw_arena *scratch, int64_t dim) {
  float *unit = sdw_arena_alloc(scratch, sizeof(float) * 2 * (size_t)dim);
  if (!unit) return NULL;
  for (int64_t i = 0; i < dim; i++)
    unit[i] = 1.0f, unit[dim + i] = 0.0f;
  return unit;
}

/* x[*,D]: returns D, *rows = M. */
static int64_t ln_check(const sdw_tensor *x, int64_t *rows) {
  norm_check_f32(x);
  SDW_ASSERT(x->ndim >= 1);
  int64_t dim = x->shape[x->ndim - 1];
  *rows = sdw_tensor_span(x, 0, x->ndim - 1);
  return dim;
}

sdw_status sdw_cpu_layer_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                      const sdw_tensor *beta, float eps, sdw_tensor *y,
                                      sdw_tensor *mean, sdw_tensor *rstd) {
  int64_t rows;
  int64_t dim = ln_check(x, &rows);
  const float *gp = norm_param(gamma, dim), *bp = norm_param(beta, dim);
  norm_check_f32(y);
  SDW_ASSERT(sdw_tensor_same_shape(x, y));
  if (mean) norm_check_stats(mean, rows);
  if (rstd) norm_check_stats(rstd, rows);
  float *meanp = mean ? mean->data : NULL, *rstdp = rstd ? rstd->data : NULL;
  const float *xp = x->data;
  float *yp = y->data;
  size_t mark = sdw_arena_mark(ctx->scratch);
  if (!gp || !bp) {
    const float *unit = ln_unit_params(ctx->scratch, dim);
    if (!unit) return SDW_ERR_OUT_OF_MEMORY;
    if (!gp) gp = unit;
    if (!bp) bp = unit + dim;
  }
#pragma omp parallel for schedule(static) num_threads(norm_threads(ctx)) if (rows * dim >= 8192)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = xp + r * dim;
    float *yr = yp + r * dim;
    double mu, rs;
    norm_moments(xr, dim, eps, &mu, &rs);
    if (meanp) meanp[r] = (float)mu;
    if (rstdp) rstdp[r] = (float)rs;
#pragma omp simd
    for (int64_t i = 0; i < dim; i++)
      yr[i] = (float)(((double)xr[i] - mu) * rs * (double)gp[i] + (double)bp[i]);
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}

/* Per row, with xhat = (x - mean) rstd, g = dy gamma:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat));
 * dgamma += sum over rows of dy xhat, dbeta += sum of dy, accumulated per
 * thread in double and added in thread order. */
sdw_status sdw_cpu_layer_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *mean, const sdw_tensor *rstd,
                                       const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dgamma,
                                       sdw_tensor *dbeta) {
  int64_t rows;
  int64_t dim = ln_check(x, &rows);
  const float *gp = norm_param(gamma, dim);
  SDW_ASSERT(mean && rstd);
  norm_check_stats(mean, rows);
  norm_check_stats(rstd, rows);
  norm_check_f32(dy);
  SDW_ASSERT(sdw_tensor_same_shape(x, dy));
  if (dx) {
    norm_check_f32(dx);
    SDW_ASSERT(sdw_tensor_same_shape(x, dx));
  }
  float *dgp = (float *)norm_param(dgamma, dim), *dbp = (float *)norm_param(dbeta, dim);
  if (!dx && !dgp && !dbp) return SDW_OK;

  int nt = norm_threads(ctx);
  if (rows * dim < 8192) nt = 1;
  size_t mark = sdw_arena_mark(ctx->scratch);
  /* per thread: dgamma[dim], dbeta[dim], xhat[dim] (all double) */
  double *acc = sdw_arena_calloc(ctx->scratch, sizeof(double) * 3 * (size_t)dim * (size_t)nt);
  if (!acc) return SDW_ERR_OUT_OF_MEMORY;
  if (!gp) {
    gp = ln_unit_params(ctx->scratch, dim);
    if (!gp) {
      sdw_arena_reset_to(ctx->scratch, mark);
      return SDW_ERR_OUT_OF_MEMORY;
    }
  }
  const float *xp = x->data, *dyp = dy->data, *meanp = mean->data, *rstdp = rstd->data;
  float *dxp = dx ? dx->data : NULL;
  bool want_params = dgp || dbp;
#pragma omp parallel num_threads(nt)
  {
    int tid = omp_get_thread_num();
    double *acc_g = acc + (size_t)tid * 3 * dim, *acc_b = acc_g + dim, *xhat = acc_b + dim;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = xp + r * dim, *dyr = dyp + r * dim;
      double mu = meanp[r], rs = rstdp[r];
      double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < dim; i++) {
        double xh = ((double)xr[i] - mu) * rs;
        double g = (double)dyr[i] * gp[i];
        xhat[i] = xh;
        a += g;
        b += g * xh;
      }
      if (want_params) {
#pragma omp simd
        for (int64_t i = 0; i < dim; i++) {
          acc_g[i] += (double)dyr[i] * xhat[i];
          acc_b[i] += dyr[i];
        }
      }
      if (dxp) {
        float *dxr = dxp + r * dim;
        a /= (double)dim;
        b /= (double)dim;
#pragma omp simd
        for (int64_t i = 0; i < dim; i++) {
          double g = (double)dyr[i] * gp[i];
          dxr[i] += (float)(rs * (g - a - xhat[i] * b));
        }
      }
    }
  }
  for (int t = 1; t < nt && want_params; t++) {
    const double *acc_g = acc + (size_t)t * 3 * dim, *acc_b = acc_g + dim;
    for (int64_t i = 0; i < dim; i++) {
      acc[i] += acc_g[i];
      acc[dim + i] += acc_b[i];
    }
  }
  for (int64_t i = 0; i < dim && want_params; i++) {
    if (dgp) dgp[i] += (float)acc[i];
    if (dbp) dbp[i] += (float)acc[dim + i];
  }
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}
