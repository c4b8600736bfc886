/* CPU memory movement, elementwise arithmetic and layout ops: copy, fill,
 * cast, add, mul (+backward), axpby, per-channel bias (+backward), channel
 * concat (+backward) and the NCHW <-> NLC transposes (+backward). Contracts
 * in kernels/ops.h. Everything is f32 except copy (any dtype) and cast
 * (F32 / F16 / BF16). */
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
enum { EW_PARALLEL_MIN = 1 << 15 };

static int ew_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void ew_check_cpu(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

static void ew_check_f32(const sdw_tensor *t) {
  ew_check_cpu(t);
  SDW_ASSERT(t->dtype == SDW_F32);
}

static void ew_check_same_f32(const sdw_tensor *a, const sdw_tensor *b) {
  ew_check_f32(a);
  ew_check_f32(b);
  SDW_ASSERT(sdw_tensor_same_shape(a, b));
}

/* --- memory movement -------------------------------------------------------------- */

/* Bytes per parallel memcpy chunk. */
enum { COPY_CHUNK = 1 << 20 };

static void ew_memcpy_parallel(void *dst, const void *src, size_t bytes, int threads) {
  size_t chunks = (bytes + COPY_CHUNK - 1) / COPY_CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads) if (chunks > 1)
  for (size_t k = 0; k < chunks; k++) {
    size_t off = k * COPY_CHUNK, len = bytes - off < COPY_CHUNK ? bytes - off : COPY_CHUNK;
    memcpy((char *)dst + off, (const char *)src + off, len);
  }
}

sdw_status sdw_cpu_copy(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  ew_check_cpu(x);
  ew_check_cpu(y);
  SDW_ASSERT(x->dtype == y->dtype && sdw_tensor_same_shape(x, y));
  if (x->data != y->data)
    ew_memcpy_parallel(y->data, x->data, sdw_tensor_nbytes(x), ew_threads(ctx));
  return SDW_OK;
}

sdw_status sdw_cpu_fill(sdw_ctx *ctx, sdw_tensor *x, float value) {
  ew_check_f32(x);
  float *p = x->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(ew_threads(ctx)) if (n >= EW_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    p[i] = value;
  return SDW_OK;
}

static bool ew_castable(sdw_dtype d) { return d == SDW_F32 || d == SDW_F16 || d == SDW_BF16; }

/* Round-to-nearest-even through core/base/tensor.h's scalar converters; a
 * 16-bit to 16-bit cast goes through f32, which is exact for both inputs, so
 * it rounds once. */
sdw_status sdw_cpu_cast(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  ew_check_cpu(x);
  ew_check_cpu(y);
  SDW_ASSERT(ew_castable(x->dtype) && ew_castable(y->dtype));
  int64_t n = sdw_tensor_numel(x);
  SDW_ASSERT(n == sdw_tensor_numel(y));
  int nt = ew_threads(ctx);
  if (x->dtype == y->dtype) {
    if (x->data != y->data) ew_memcpy_parallel(y->data, x->data, sdw_tensor_nbytes(x), nt);
    return SDW_OK;
  }
  sdw_dtype from = x->dtype, to = y->dtype;
  const void *src = x->data;
  void *dst = y->data;
#pragma omp parallel for schedule(static) num_threads(nt) if (n >= EW_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float v;
    switch (from) {
    case SDW_F16: v = sdw_f16_to_f32(((const uint16_t *)src)[i]); break;
    case SDW_BF16: v = sdw_bf16_to_f32(((const uint16_t *)src)[i]); break;
    default: v = ((const float *)src)[i]; break;
    }
    switch (to) {
    case SDW_F16: ((uint16_t *)dst)[i] = sdw_f32_to_f16(v); break;
    case SDW_BF16: ((uint16_t *)dst)[i] = sdw_f32_to_bf16(v); break;
    default: ((float *)dst)[i] = v; break;
    }
  }
  return SDW_OK;
}

/* --- elementwise arithmetic ---------------------------------------------------- */

/* y may alias a or b: each element is read before it is written. */
sdw_status sdw_cpu_add(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) {
  ew_check_same_f32(a, b);
  ew_check_same_f32(a, y);
  const float *ap = a->data, *bp = b->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(a);
#pragma omp parallel for simd num_threads(ew_threads(ctx)) if (n >= EW_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    yp[i] = ap[i] + bp[i];
  return SDW_OK;
}

sdw_status sdw_cpu_mul(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) {
  ew_check_same_f32(a, b);
  ew_check_same_f32(a, y);
  const float *ap = a->data, *bp = b->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(a);
#pragma omp parallel for simd num_threads(ew_threads(ctx)) if (n >= EW_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    yp[i] = ap[i] * bp[i];
  return SDW_OK;
}

sdw_status sdw_cpu_mul_backward(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db) {
  ew_check_same_f32(a, b);
  ew_check_same_f32(a, dy);
  if (da) ew_check_same_f32(a, da);
  if (db) ew_check_same_f32(a, db);
  const float *ap = a->data, *bp = b->data, *dyp = dy->data;
  int64_t n = sdw_tensor_numel(a);
  int nt = ew_threads(ctx);
  if (da) {
    float *dap = da->data;
#pragma omp parallel for simd num_threads(nt) if (n >= EW_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
      dap[i] += dyp[i] * bp[i];
  }
  if (db) {
    float *dbp = db->data;
#pragma omp parallel for simd num_threads(nt) if (n >= EW_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
      dbp[i] += dyp[i] * ap[i];
  }
  return SDW_OK;
}

/* beta == 0 never reads y (it may hold garbage, NaN included). */
sdw_status sdw_cpu_axpby(sdw_ctx *ctx, float alpha, const sdw_tensor *x, float beta,
                         sdw_tensor *y) {
  ew_check_same_f32(x, y);
  const float *xp = x->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(x);
  int nt = ew_threads(ctx);
  if (beta == 0.0f) {
#pragma omp parallel for simd num_threads(nt) if (n >= EW_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
      yp[i] = alpha * xp[i];
  } else if (alpha == 1.0f && beta == 1.0f) {
#pragma omp parallel for simd num_threads(nt) if (n >= EW_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
      yp[i] += xp[i];
  } else {
#pragma omp parallel for simd num_threads(nt) if (n >= EW_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
      yp[i] = alpha * xp[i] + beta * yp[i];
  }
  return SDW_OK;
}

/* --- per-channel bias ----------------------------------------------------------- */

/* x[N,C,*] with bias[N,C]; returns the spatial size S. */
static int64_t ew_check_channel_bias(const sdw_tensor *x, const sdw_tensor *bias) {
  ew_check_f32(x);
  ew_check_f32(bias);
  SDW_ASSERT(x->ndim >= 2);
  SDW_ASSERT(bias->ndim == 2 && bias->shape[0] == x->shape[0] && bias->shape[1] == x->shape[1]);
  return sdw_tensor_span(x, 2, x->ndim);
}

sdw_status sdw_cpu_add_channel_bias(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *bias,
                                    sdw_tensor *y) {
  int64_t s = ew_check_channel_bias(x, bias);
  ew_check_same_f32(x, y);
  const float *xp = x->data, *bp = bias->data;
  float *yp = y->data;
  int64_t rows = x->shape[0] * x->shape[1];
#pragma omp parallel for schedule(static)                                                          \
    num_threads(ew_threads(ctx)) if (rows * s >= EW_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    float b = bp[r];
    const float *xr = xp + r * s;
    float *yr = yp + r * s;
#pragma omp simd
    for (int64_t i = 0; i < s; i++)
      yr[i] = xr[i] + b;
  }
  return SDW_OK;
}

/* dbias[n,c] += sum over space, accumulated in double. */
sdw_status sdw_cpu_add_channel_bias_backward(sdw_ctx *ctx, const sdw_tensor *dy,
                                             sdw_tensor *dbias) {
  if (!dbias) return SDW_OK;
  int64_t s = ew_check_channel_bias(dy, dbias);
  const float *dyp = dy->data;
  float *dbp = dbias->data;
  int64_t rows = dy->shape[0] * dy->shape[1];
#pragma omp parallel for schedule(static)                                                          \
    num_threads(ew_threads(ctx)) if (rows * s >= EW_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *dyr = dyp + r * s;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < s; i++)
      sum += dyr[i];
    dbp[r] += (float)sum;
  }
  return SDW_OK;
}

/* --- channel concat ----------------------------------------------------------- */

/* a[N,Ca,*], b[N,Cb,*], y[N,Ca+Cb,*] (same N and trailing dims); returns S. */
static int64_t ew_check_concat(const sdw_tensor *a, const sdw_tensor *b, const sdw_tensor *y) {
  ew_check_f32(y);
  SDW_ASSERT(y->ndim >= 2);
  int64_t s = sdw_tensor_span(y, 2, y->ndim);
  const sdw_tensor *parts[2] = {a, b};
  for (int p = 0; p < 2; p++) {
    if (!parts[p]) continue;
    ew_check_f32(parts[p]);
    SDW_ASSERT(parts[p]->ndim == y->ndim && parts[p]->shape[0] == y->shape[0]);
    for (int i = 2; i < y->ndim; i++)
      SDW_ASSERT(parts[p]->shape[i] == y->shape[i]);
  }
  return s;
}

sdw_status sdw_cpu_concat_channels(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                   sdw_tensor *y) {
  SDW_ASSERT(a && b);
  int64_t s = ew_check_concat(a, b, y);
  int64_t ca = a->shape[1], cb = b->shape[1], cy = ca + cb;
  SDW_ASSERT(y->shape[1] == cy);
  const float *ap = a->data, *bp = b->data;
  float *yp = y->data;
  int64_t rows = y->shape[0] * cy;
#pragma omp parallel for schedule(static)                                                          \
    num_threads(ew_threads(ctx)) if (rows * s >= EW_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t n = r / cy, c = r % cy;
    const float *src = c < ca ? ap + (n * ca + c) * s : bp + (n * cb + c - ca) * s;
    memcpy(yp + r * s, src, sizeof(float) * (size_t)s);
  }
  return SDW_OK;
}

/* da += dy[:, :Ca], db += dy[:, Ca:]; either may be NULL. The split point
 * is da's channel count (dy's minus db's when da is NULL). */
sdw_status sdw_cpu_concat_channels_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *da,
                                            sdw_tensor *db) {
  int64_t s = ew_check_concat(da, db, dy);
  if (!da && !db) return SDW_OK;
  int64_t cy = dy->shape[1];
  int64_t ca = da ? da->shape[1] : cy - db->shape[1];
  int64_t cb = cy - ca;
  SDW_ASSERT(ca >= 0 && cb >= 0);
  if (db) SDW_ASSERT(db->shape[1] == cb);
  const float *dyp = dy->data;
  float *dap = da ? da->data : NULL, *dbp = db ? db->data : NULL;
  int64_t rows = dy->shape[0] * cy;
#pragma omp parallel for schedule(static)                                                          \
    num_threads(ew_threads(ctx)) if (rows * s >= EW_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t n = r / cy, c = r % cy;
    float *dst =
        c < ca ? (dap ? dap + (n * ca + c) * s : NULL) : (dbp ? dbp + (n * cb + c - ca) * s : NULL);
    if (!dst) continue;
    const float *src = dyp + r * s;
#pragma omp simd
    for (int64_t i = 0; i < s; i++)
      dst[i] += src[i];
  }
  return SDW_OK;
}

/* --- NCHW <-> NLC --------------------------------------------------------------- */

/* Square tiles: a 32x32 float tile of source and destination (8 KB together)
 * stays in L1, so neither side is walked with a cache-hostile stride. */
enum { TILE = 32 };

/* For each of batch matrices src[rows, cols]: dst[cols, rows] = (or +=) its
 * transpose. */
static void ew_transpose(const float *src, float *dst, int64_t batch, int64_t rows, int64_t cols,
                         bool accumulate, int threads) {
  int64_t tr = (rows + TILE - 1) / TILE, tc = (cols + TILE - 1) / TILE;
  int64_t tiles = batch * tr * tc;
  int64_t plane = rows * cols;
#pragma omp parallel for schedule(static) num_threads(threads) if (batch * plane >= EW_PARALLEL_MIN)
  for (int64_t t = 0; t < tiles; t++) {
    int64_t b = t / (tr * tc), rem = t % (tr * tc);
    int64_t r0 = rem / tc * TILE, c0 = rem % tc * TILE;
    int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows, c1 = c0 + TILE < cols ? c0 + TILE : cols;
    const float *s = src + b * plane;
    float *d = dst + b * plane;
    for (int64_t c = c0; c < c1; c++) {
      float *dc = d + c * rows;
      if (accumulate) {
        for (int64_t r = r0; r < r1; r++)
          dc[r] += s[r * cols + c];
      } else {
        for (int64_t r = r0; r < r1; r++)
          dc[r] = s[r * cols + c];
      }
    }
  }
}

/* nchw[N,C,H,W] against nlc[N,H*W,C]; returns (N, C, L) through the pointers. */
static void ew_check_layout(const sdw_tensor *nchw, const sdw_tensor *nlc, int64_t *n, int64_t *c,
                            int64_t *l) {
  ew_check_f32(nchw);
  ew_check_f32(nlc);
  SDW_ASSERT(nchw->ndim == 4 && nlc->ndim == 3);
  *n = nchw->shape[0];
  *c = nchw->shape[1];
  *l = nchw->shape[2] * nchw->shape[3];
  SDW_ASSERT(nlc->shape[0] == *n && nlc->shape[1] == *l && nlc->shape[2] == *c);
}

sdw_status sdw_cpu_nchw_to_nlc(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t n, c, l;
  ew_check_layout(x, y, &n, &c, &l);
  ew_transpose(x->data, y->data, n, c, l, false, ew_threads(ctx));
  return SDW_OK;
}

sdw_status sdw_cpu_nlc_to_nchw(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t n, c, l;
  ew_check_layout(y, x, &n, &c, &l);
  ew_transpose(x->data, y->data, n, l, c, false, ew_threads(ctx));
  return SDW_OK;
}

/* dy[N,HW,C] -> dx[N,C,H,W] += transpose. */
sdw_status sdw_cpu_nchw_to_nlc_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  int64_t n, c, l;
  ew_check_layout(dx, dy, &n, &c, &l);
  ew_transpose(dy->data, dx->data, n, l, c, true, ew_threads(ctx));
  return SDW_OK;
}

/* dy[N,C,H,W] -> dx[N,HW,C] += transpose. */
sdw_status sdw_cpu_nlc_to_nchw_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  int64_t n, c, l;
  ew_check_layout(dy, dx, &n, &c, &l);
  ew_transpose(dy->data, dx->data, n, c, l, true, ew_threads(ctx));
  return SDW_OK;
}
