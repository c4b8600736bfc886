/* CUDA group norm and layer norm, forward and backward (kernels/ops.h).
 *
 * The arithmetic follows kernels/cpu/norm.c: two-pass moments in double,
 * y = ((x - mean) * rstd*gamma + beta) in double rounded once, the
 * backward from the saved f32 mean / rstd in double. Reductions are fixed
 * block trees and ordered partial sums: deterministic, but not the CPU's
 * summation order (agreement to ~1e-7 relative, not bits).
 *
 * Group norm forward: one block per (n, g). Backward: per-(n, c) sums of
 * dy*x and dy (one block each), per-(n, g) coefficients, then dx (+=)
 * elementwise and dgamma / dbeta (+=) per channel over the batch in order.
 * Layer norm: one block per row; dgamma / dbeta (+=) from column partials
 * over row slices, added in slice order. gamma / beta may be NULL (1 / 0). */
#include "kernels/cuda/cuda_common.h"

namespace {

__device__ inline double param_or(const float *p, int64_t i, double dflt) {
  return p ? (double)p[i] : dflt;
}

/* Mean and rstd of n contiguous floats, by the whole block (two passes). */
__device__ inline void block_moments(const float *x, int64_t n, double eps, double *red,
                                     double *mean_out, double *rstd_out) {
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += x[i];
  double mean = cuda_block_sum(s, red) / (double)n;
  double q = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    double d = (double)x[i] - mean;
    q += d * d;
  }
  q = cuda_block_sum(q, red);
  *mean_out = mean;
  *rstd_out = 1.0 / sqrt(q / (double)n + eps);
}

__global__ void gn_forward_kernel(const float *x, const float *gamma, const float *beta, float *y,
                                  float *mean, float *rstd, int64_t g, int64_t cg, int64_t s,
                                  double eps) {
  __shared__ double red[32];
  int64_t task = blockIdx.x, c0 = (task % g) * cg, per = cg * s;
  const float *xg = x + task * per;
  float *yg = y + task * per;
  double mu, rs;
  block_moments(xg, per, eps, red, &mu, &rs);
  if (threadIdx.x == 0) {
    if (mean) mean[task] = (float)mu;
    if (rstd) rstd[task] = (float)rs;
  }
  for (int64_t i = threadIdx.x; i < per; i += blockDim.x) {
    int64_t c = c0 + i / s;
    double a = rs * param_or(gamma, c, 1.0), b = param_or(beta, c, 0.0);
    yg[i] = (float)(((double)xg[i] - mu) * a + b);
  }
}

/* sums[2*(n*C + c)] = sum_s dy*x, sums[2*(n*C + c) + 1] = sum_s dy. */
__global__ void gn_channel_sums_kernel(const float *x, const float *dy, int64_t s, double *sums) {
  __shared__ double red[32];
  int64_t row = blockIdx.x;
  const float *xr = x + row * s, *dr = dy + row * s;
  double sdx = 0.0, sd = 0.0;
  for (int64_t i = threadIdx.x; i < s; i += blockDim.x) {
    sdx += (double)dr[i] * xr[i];
    sd += dr[i];
  }
  sdx = cuda_block_sum(sdx, red);
  sd = cuda_block_sum(sd, red);
  if (threadIdx.x == 0) {
    sums[2 * row] = sdx;
    sums[2 * row + 1] = sd;
  }
}

/* coef[2*task] = c2, coef[2*task + 1] = c3 per (n, g) (kernels/cpu/norm.c). */
__global__ void gn_coef_kernel(const double *sums, const float *gamma, const float *mean,
                               const float *rstd, int64_t n, int64_t c, int64_t g, int64_t cg,
                               int64_t s, double *coef) {
  CUDA_FOR(task, n * g) {
    int64_t ni = task / g, c0 = (task % g) * cg;
    double a_sum = 0.0, b_sum = 0.0;
    for (int64_t ci = 0; ci < cg; ci++) {
      const double *sm = sums + 2 * (ni * c + c0 + ci);
      double gam = param_or(gamma, c0 + ci, 1.0);
      a_sum += gam * sm[1];
      b_sum += gam * sm[0];
    }
    double mu = mean[task], rs = rstd[task], m = (double)(cg * s);
    double c2 = -rs * rs * rs * (b_sum - mu * a_sum) / m;
    double c3 = -c2 * mu - rs * a_sum / m;
    coef[2 * task] = c2;
    coef[2 * task + 1] = c3;
  }
}

__global__ void gn_dx_kernel(const float *x, const float *dy, const float *gamma, const float *rstd,
                             const double *coef, float *dx, int64_t total, int64_t c, int64_t g,
                             int64_t cg, int64_t s) {
  CUDA_FOR(i, total) {
    int64_t ch = (i / s) % c, ni = i / (s * c), task = ni * g + ch / cg;
    double k = (double)rstd[task] * param_or(gamma, ch, 1.0);
    dx[i] += (float)(k * (double)dy[i] + coef[2 * task] * (double)x[i] + coef[2 * task + 1]);
  }
}

__global__ void gn_params_kernel(const double *sums, const float *mean, const float *rstd,
                                 int64_t n, int64_t c, int64_t g, int64_t cg, float *dgamma,
                                 float *dbeta) {
  CUDA_FOR(ch, c) {
    int64_t gi = ch / cg;
    double dg = 0.0, db = 0.0;
    for (int64_t ni = 0; ni < n; ni++) {
      const double *sm = sums + 2 * (ni * c + ch);
      double mu = mean[ni * g + gi], rs = rstd[ni * g + gi];
      dg += rs * (sm[0] - mu * sm[1]);
      db += sm[1];
    }
    if (dgamma) dgamma[ch] += (float)dg;
    if (dbeta) dbeta[ch] += (float)db;
  }
}

__global__ void ln_forward_kernel(const float *x, const float *gamma, const float *beta, float *y,
                                  float *mean, float *rstd, int64_t dim, double eps) {
  __shared__ double red[32];
  int64_t r = blockIdx.x;
  const float *xr = x + r * dim;
  float *yr = y + r * dim;
  double mu, rs;
  block_moments(xr, dim, eps, red, &mu, &rs);
  if (threadIdx.x == 0) {
    if (mean) mean[r] = (float)mu;
    if (rstd) rstd[r] = (float)rs;
  }
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = (float)(((double)xr[i] - mu) * rs * param_or(gamma, i, 1.0) + param_or(beta, i, 0.0));
}

__global__ void ln_dx_kernel(const float *x, const float *gamma, const float *mean,
                             const float *rstd, const float *dy, float *dx, int64_t dim) {
  __shared__ double red[32];
  int64_t r = blockIdx.x;
  const float *xr = x + r * dim, *dr = dy + r * dim;
  double mu = mean[r], rs = rstd[r];
  double sg = 0.0, sgx = 0.0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double gi = (double)dr[i] * param_or(gamma, i, 1.0), xh = ((double)xr[i] - mu) * rs;
    sg += gi;
    sgx += gi * xh;
  }
  double mg = cuda_block_sum(sg, red) / (double)dim;
  double mgx = cuda_block_sum(sgx, red) / (double)dim;
  float *dxr = dx + r * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    double gi = (double)dr[i] * param_or(gamma, i, 1.0), xh = ((double)xr[i] - mu) * rs;
    dxr[i] += (float)(rs * (gi - mg - xh * mgx));
  }
}

/* part[p][0][d] = sum of dy*xhat, part[p][1][d] = sum of dy over row slice p. */
__global__ void ln_params_partial_kernel(const float *x, const float *mean, const float *rstd,
                                         const float *dy, int64_t rows, int64_t dim, int64_t per,
                                         double *part) {
  int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  int64_t r0 = (int64_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
  double sg = 0.0, sb = 0.0;
  for (int64_t r = r0; r < r1; r++) {
    double g = dy[r * dim + d];
    sg += g * (((double)x[r * dim + d] - (double)mean[r]) * (double)rstd[r]);
    sb += g;
  }
  part[(int64_t)blockIdx.y * 2 * dim + d] = sg;
  part[(int64_t)blockIdx.y * 2 * dim + dim + d] = sb;
}
__global__ void ln_params_finish_kernel(const double *part, int64_t parts, int64_t dim,
                                        float *dgamma, float *dbeta) {
  CUDA_FOR(d, dim) {
    double sg = 0.0, sb = 0.0;
    for (int64_t p = 0; p < parts; p++) {
      sg += part[p * 2 * dim + d];
      sb += part[p * 2 * dim + dim + d];
    }
    if (dgamma) dgamma[d] += (float)sg;
    if (dbeta) dbeta[d] += (float)sb;
  }
}

const float *param_ptr(const sdw_tensor *p, int64_t c) {
  if (!p) return NULL;
  cuda_check_f32(p);
  SDW_ASSERT(p->ndim == 1 && p->shape[0] == c);
  return (const float *)p->data;
}
void check_stats(const sdw_tensor *t, int64_t count) {
  cuda_check_f32(t);
  SDW_ASSERT(sdw_tensor_numel(t) == count);
}

struct GnDims {
  int64_t n, c, s, g, cg;
};
GnDims gn_check(const sdw_tensor *x, int groups) {
  cuda_check_f32(x);
  SDW_ASSERT(x->ndim >= 2);
  GnDims d = {x->shape[0], x->shape[1], sdw_tensor_span(x, 2, x->ndim), 0, 0};
  SDW_ASSERT(groups > 0 && d.c % groups == 0);
  d.g = groups;
  d.cg = d.c / groups;
  return d;
}

} // namespace

sdw_status sdw_cuda_group_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *beta, int groups, float eps, sdw_tensor *y,
                                       sdw_tensor *mean, sdw_tensor *rstd) {
  GnDims d = gn_check(x, groups);
  const float *gp = param_ptr(gamma, d.c), *bp = param_ptr(beta, d.c);
  cuda_check_same_f32(x, y);
  if (mean) check_stats(mean, d.n * d.g);
  if (rstd) check_stats(rstd, d.n * d.g);
  int64_t tasks = d.n * d.g;
  if (!tasks || !d.cg || !d.s) return SDW_OK;
  SDW_ASSERT(tasks <= INT32_MAX);
  gn_forward_kernel<<<(unsigned)tasks, CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, gp, bp, (float *)y->data, mean ? (float *)mean->data : NULL,
      rstd ? (float *)rstd->data : NULL, d.g, d.cg, d.s, (double)eps);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_group_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                        const sdw_tensor *mean, const sdw_tensor *rstd,
                                        const sdw_tensor *dy, int groups, sdw_tensor *dx,
                                        sdw_tensor *dgamma, sdw_tensor *dbeta) {
  GnDims d = gn_check(x, groups);
  const float *gp = param_ptr(gamma, d.c);
  SDW_ASSERT(mean && rstd);
  check_stats(mean, d.n * d.g);
  check_stats(rstd, d.n * d.g);
  cuda_check_same_f32(x, dy);
  if (dx) cuda_check_same_f32(x, dx);
  float *dgp = (float *)param_ptr(dgamma, d.c), *dbp = (float *)param_ptr(dbeta, d.c);
  if (!dx && !dgp && !dbp) return SDW_OK;
  int64_t rows = d.n * d.c;
  if (!rows || !d.s) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  void *ws = NULL;
  SDW_TRY(sdw_cuda_workspace(ctx, sizeof(double) * (size_t)(2 * rows + 2 * d.n * d.g), &ws));
  double *sums = (double *)ws, *coef = sums + 2 * rows;
  cudaStream_t st = cuda_stream(ctx);
  const float *xp = (const float *)x->data, *dyp = (const float *)dy->data;
  const float *mp = (const float *)mean->data, *rp = (const float *)rstd->data;
  gn_channel_sums_kernel<<<(unsigned)rows, CUDA_THREADS, 0, st>>>(xp, dyp, d.s, sums);
  CUDA_LAUNCH_TRY();
  if (dx) {
    gn_coef_kernel<<<cuda_grid(d.n * d.g), CUDA_THREADS, 0, st>>>(sums, gp, mp, rp, d.n, d.c, d.g,
                                                                  d.cg, d.s, coef);
    CUDA_LAUNCH_TRY();
    int64_t total = rows * d.s;
    gn_dx_kernel<<<cuda_grid(total), CUDA_THREADS, 0, st>>>(
        xp, dyp, gp, rp, coef, (float *)dx->data, total, d.c, d.g, d.cg, d.s);
    CUDA_LAUNCH_TRY();
  }
  if (dgp || dbp) {
    gn_params_kernel<<<cuda_grid(d.c), CUDA_THREADS, 0, st>>>(sums, mp, rp, d.n, d.c, d.g, d.cg,
                                                              dgp, dbp);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}

static int64_t ln_check(const sdw_tensor *x, int64_t *rows) {
  cuda_check_f32(x);
  SDW_ASSERT(x->ndim >= 1);
  *rows = sdw_tensor_span(x, 0, x->ndim - 1);
  return x->shape[x->ndim - 1];
}

sdw_status sdw_cuda_layer_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *beta, float eps, sdw_tensor *y,
                                       sdw_tensor *mean, sdw_tensor *rstd) {
  int64_t rows;
  int64_t dim = ln_check(x, &rows);
  const float *gp = param_ptr(gamma, dim), *bp = param_ptr(beta, dim);
  cuda_check_same_f32(x, y);
  if (mean) check_stats(mean, rows);
  if (rstd) check_stats(rstd, rows);
  if (!rows || !dim) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  ln_forward_kernel<<<(unsigned)rows, CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, gp, bp, (float *)y->data, mean ? (float *)mean->data : NULL,
      rstd ? (float *)rstd->data : NULL, dim, (double)eps);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_layer_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                        const sdw_tensor *mean, const sdw_tensor *rstd,
                                        const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dgamma,
                                        sdw_tensor *dbeta) {
  int64_t rows;
  int64_t dim = ln_check(x, &rows);
  const float *gp = param_ptr(gamma, dim);
  SDW_ASSERT(mean && rstd);
  check_stats(mean, rows);
  check_stats(rstd, rows);
  cuda_check_same_f32(x, dy);
  if (dx) cuda_check_same_f32(x, dx);
  float *dgp = (float *)param_ptr(dgamma, dim), *dbp = (float *)param_ptr(dbeta, dim);
  if (!dx && !dgp && !dbp) return SDW_OK;
  if (!rows || !dim) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  cudaStream_t st = cuda_stream(ctx);
  const float *xp = (const float *)x->data, *dyp = (const float *)dy->data;
  const float *mp = (const float *)mean->data, *rp = (const float *)rstd->data;
  if (dx) {
    ln_dx_kernel<<<(unsigned)rows, CUDA_THREADS, 0, st>>>(xp, gp, mp, rp, dyp, (float *)dx->data,
                                                          dim);
    CUDA_LAUNCH_TRY();
  }
  if (dgp || dbp) {
    int64_t parts = rows / 32 + 1;
    if (parts > 512) parts = 512;
    int64_t per = (rows + parts - 1) / parts;
    void *ws = NULL;
    SDW_TRY(sdw_cuda_workspace(ctx, sizeof(double) * (size_t)(2 * parts * dim), &ws));
    dim3 grid((unsigned)((dim + CUDA_THREADS - 1) / CUDA_THREADS), (unsigned)parts);
    ln_params_partial_kernel<<<grid, CUDA_THREADS, 0, st>>>(xp, mp, rp, dyp, rows, dim, per,
                                                            (double *)ws);
    CUDA_LAUNCH_TRY();
    ln_params_finish_kernel<<<cuda_grid(dim), CUDA_THREADS, 0, st>>>((const double *)ws, parts, dim,
                                                                     dgp, dbp);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}
