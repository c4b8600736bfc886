/* CUDA elementwise and layout ops (kernels/ops.h): copy, fill, cast, add,
 * mul (+ backward), axpby, per-channel bias (+ backward), channel concat
 * (+ backward), NCHW <-> NLC (+ backward); and the deterministic channel /
 * row / column sums the other families share. Float ops are f32; copy takes
 * any dtype, cast converts between F32 / F16 / BF16 with round-to-nearest-
 * even (the CPU's sdw_f32_to_bf16 / sdw_f32_to_f16 rounding). */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void fill_kernel(float *x, int64_t n, float v) { CUDA_FOR(i, n) x[i] = v; }

template <typename From, typename To> __device__ inline To convert(From v);
template <> __device__ inline __half convert<float, __half>(float v) { return __float2half_rn(v); }
template <> __device__ inline __nv_bfloat16 convert<float, __nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ inline float convert<__half, float>(__half v) { return __half2float(v); }
template <> __device__ inline float convert<__nv_bfloat16, float>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename From> __global__ void cast_to_f32_kernel(const From *x, float *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = convert<From, float>(x[i]);
}
template <typename To> __global__ void cast_from_f32_kernel(const float *x, To *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = convert<float, To>(x[i]);
}
/* Between the two 16-bit types through f32, as the CPU does. */
__global__ void half_to_bf16_kernel(const __half *x, __nv_bfloat16 *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = __float2bfloat16_rn(__half2float(x[i]));
}
__global__ void bf16_to_half_kernel(const __nv_bfloat16 *x, __half *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = __float2half_rn(__bfloat162float(x[i]));
}

__global__ void add_kernel(const float *a, const float *b, float *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = a[i] + b[i];
}
__global__ void mul_kernel(const float *a, const float *b, float *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = a[i] * b[i];
}
__global__ void mul_backward_kernel(const float *a, const float *b, const float *dy, float *da,
                                    float *db, int64_t n) {
  CUDA_FOR(i, n) {
    float g = dy[i];
    if (da) da[i] += g * b[i];
    if (db) db[i] += g * a[i];
  }
}
/* mode 0: y = alpha x (y not read); 1: y += x; 2: y = alpha x + beta y. The
 * products are rounded separately (__fmul_rn), as the CPU's ISO C does. */
__global__ void axpby_kernel(float alpha, const float *x, float beta, float *y, int64_t n,
                             int mode) {
  CUDA_FOR(i, n) {
    if (mode == 0)
      y[i] = __fmul_rn(alpha, x[i]);
    else if (mode == 1)
      y[i] = y[i] + x[i];
    else
      y[i] = __fadd_rn(__fmul_rn(alpha, x[i]), __fmul_rn(beta, y[i]));
  }
}

/* y[r, s] = x[r, s] + bias[r] for rows r = n*C + c. */
__global__ void row_bias_kernel(const float *x, const float *bias, float *y, int64_t rows,
                                int64_t s) {
  CUDA_FOR(i, rows * s) y[i] = x[i] + bias[i / s];
}
/* y[n, c, s] += b[c]. */
__global__ void bias_nchw_kernel(float *y, const float *b, int64_t total, int64_t c, int64_t s) {
  CUDA_FOR(i, total) y[i] += b[(i / s) % c];
}

/* One block per row: dst[r] += sum_s src[r*S + s] (double). */
__global__ void row_sum_kernel(const float *src, int64_t s, float *dst) {
  __shared__ double red[32];
  const float *row = src + (int64_t)blockIdx.x * s;
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < s; i += blockDim.x)
    acc += row[i];
  acc = cuda_block_sum(acc, red);
  if (threadIdx.x == 0) dst[blockIdx.x] += (float)acc;
}
/* One block per channel c: dst[c] += sum over n, s of src[(n*C + c)*S + s]. */
__global__ void channel_sum_kernel(const float *src, int64_t n, int64_t c, int64_t s, float *dst) {
  __shared__ double red[32];
  int64_t ch = blockIdx.x;
  double acc = 0.0;
  for (int64_t b = 0; b < n; b++) {
    const float *p = src + (b * c + ch) * s;
    for (int64_t i = threadIdx.x; i < s; i += blockDim.x)
      acc += p[i];
  }
  acc = cuda_block_sum(acc, red);
  if (threadIdx.x == 0) dst[ch] += (float)acc;
}
/* Column partials: part[p*D + d] = sum of src[r*D + d] over the p-th slice
 * of rows, then a second pass adds the slices in order (deterministic). */
__global__ void column_partial_kernel(const float *src, int64_t rows, int64_t cols,
                                      int64_t rows_per_part, double *part) {
  int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= cols) return;
  int64_t r0 = (int64_t)blockIdx.y * rows_per_part;
  int64_t r1 = r0 + rows_per_part < rows ? r0 + rows_per_part : rows;
  double acc = 0.0;
  for (int64_t r = r0; r < r1; r++)
    acc += src[r * cols + d];
  part[(int64_t)blockIdx.y * cols + d] = acc;
}
__global__ void column_finish_kernel(const double *part, int64_t parts, int64_t cols, float *dst) {
  CUDA_FOR(d, cols) {
    double acc = 0.0;
    for (int64_t p = 0; p < parts; p++)
      acc += part[p * cols + d];
    dst[d] += (float)acc;
  }
}

/* y[n, c, s] from parts: c < ca from a[n, c, s], else b[n, c-ca, s]. */
__global__ void concat_kernel(const float *a, const float *b, float *y, int64_t n, int64_t ca,
                              int64_t cb, int64_t s) {
  int64_t cy = ca + cb;
  CUDA_FOR(i, n * cy * s) {
    int64_t si = i % s, c = (i / s) % cy, ni = i / (s * cy);
    y[i] = c < ca ? a[(ni * ca + c) * s + si] : b[(ni * cb + (c - ca)) * s + si];
  }
}
__global__ void split_acc_kernel(const float *dy, float *dpart, int64_t n, int64_t cy, int64_t c0,
                                 int64_t cp, int64_t s) {
  CUDA_FOR(i, n * cp * s) {
    int64_t si = i % s, c = (i / s) % cp, ni = i / (s * cp);
    dpart[i] += dy[(ni * cy + c0 + c) * s + si];
  }
}

/* x[N, C, L] -> y[N, L, C] (acc: y +=), through a 32x32 shared tile. */
template <bool kAcc>
__global__ void transpose_kernel(const float *x, float *y, int64_t rows, int64_t cols) {
  __shared__ float tile[32][33];
  const int64_t base = (int64_t)blockIdx.z * rows * cols;
  int64_t r0 = (int64_t)blockIdx.y * 32, c0 = (int64_t)blockIdx.x * 32;
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    int64_t r = r0 + k, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[k][threadIdx.x] = x[base + r * cols + c];
  }
  __syncthreads();
  for (int k = threadIdx.y; k < 32; k += blockDim.y) {
    int64_t c = c0 + k, r = r0 + threadIdx.x;
    if (r < rows && c < cols) {
      float v = tile[threadIdx.x][k];
      if (kAcc)
        y[base + c * rows + r] += v;
      else
        y[base + c * rows + r] = v;
    }
  }
}

} // namespace

sdw_status sdw_cuda_copy(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  cuda_check_dev(x);
  cuda_check_dev(y);
  SDW_ASSERT(x->dtype == y->dtype && sdw_tensor_same_shape(x, y));
  size_t bytes = sdw_tensor_nbytes(x);
  if (bytes && x->data != y->data)
    CUDA_TRY(cudaMemcpyAsync(y->data, x->data, bytes, cudaMemcpyDeviceToDevice, cuda_stream(ctx)));
  return SDW_OK;
}

sdw_status sdw_cuda_fill(sdw_ctx *ctx, sdw_tensor *x, float value) {
  cuda_check_f32(x);
  int64_t n = sdw_tensor_numel(x);
  if (!n) return SDW_OK;
  fill_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>((float *)x->data, n, value);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

static bool castable(sdw_dtype d) { return d == SDW_F32 || d == SDW_F16 || d == SDW_BF16; }

sdw_status sdw_cuda_cast(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  cuda_check_dev(x);
  cuda_check_dev(y);
  SDW_ASSERT(castable(x->dtype) && castable(y->dtype));
  int64_t n = sdw_tensor_numel(x);
  SDW_ASSERT(n == sdw_tensor_numel(y));
  if (!n) return SDW_OK;
  cudaStream_t s = cuda_stream(ctx);
  if (x->dtype == y->dtype) {
    if (x->data != y->data)
      CUDA_TRY(
          cudaMemcpyAsync(y->data, x->data, sdw_tensor_nbytes(x), cudaMemcpyDeviceToDevice, s));
    return SDW_OK;
  }
  unsigned g = cuda_grid(n);
  const void *xp = x->data;
  void *yp = y->data;
  if (x->dtype == SDW_F32 && y->dtype == SDW_F16)
    cast_from_f32_kernel<__half><<<g, CUDA_THREADS, 0, s>>>((const float *)xp, (__half *)yp, n);
  else if (x->dtype == SDW_F32 && y->dtype == SDW_BF16)
    cast_from_f32_kernel<__nv_bfloat16>
        <<<g, CUDA_THREADS, 0, s>>>((const float *)xp, (__nv_bfloat16 *)yp, n);
  else if (x->dtype == SDW_F16 && y->dtype == SDW_F32)
    cast_to_f32_kernel<__half><<<g, CUDA_THREADS, 0, s>>>((const __half *)xp, (float *)yp, n);
  else if (x->dtype == SDW_BF16 && y->dtype == SDW_F32)
    cast_to_f32_kernel<__nv_bfloat16>
        <<<g, CUDA_THREADS, 0, s>>>((const __nv_bfloat16 *)xp, (float *)yp, n);
  else if (x->dtype == SDW_F16 && y->dtype == SDW_BF16)
    half_to_bf16_kernel<<<g, CUDA_THREADS, 0, s>>>((const __half *)xp, (__nv_bfloat16 *)yp, n);
  else
    bf16_to_half_kernel<<<g, CUDA_THREADS, 0, s>>>((const __nv_bfloat16 *)xp, (__half *)yp, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

static void check_binary(const sdw_tensor *a, const sdw_tensor *b, const sdw_tensor *y) {
  cuda_check_same_f32(a, b);
  cuda_check_same_f32(a, y);
}

sdw_status sdw_cuda_add(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) {
  check_binary(a, b, y);
  int64_t n = sdw_tensor_numel(a);
  if (!n) return SDW_OK;
  add_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)a->data, (const float *)b->data, (float *)y->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_mul(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) {
  check_binary(a, b, y);
  int64_t n = sdw_tensor_numel(a);
  if (!n) return SDW_OK;
  mul_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)a->data, (const float *)b->data, (float *)y->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_mul_backward(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                 const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db) {
  check_binary(a, b, dy);
  if (da) cuda_check_same_f32(a, da);
  if (db) cuda_check_same_f32(b, db);
  int64_t n = sdw_tensor_numel(a);
  if (!n || (!da && !db)) return SDW_OK;
  mul_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)a->data, (const float *)b->data, (const float *)dy->data,
      da ? (float *)da->data : NULL, db ? (float *)db->data : NULL, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_axpby(sdw_ctx *ctx, float alpha, const sdw_tensor *x, float beta,
                          sdw_tensor *y) {
  cuda_check_same_f32(x, y);
  int64_t n = sdw_tensor_numel(x);
  if (!n) return SDW_OK;
  int mode = beta == 0.0f ? 0 : (alpha == 1.0f && beta == 1.0f) ? 1 : 2;
  axpby_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      alpha, (const float *)x->data, beta, (float *)y->data, n, mode);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

/* x[N,C,*] with bias[N,C]; returns S. */
static int64_t check_channel_bias(const sdw_tensor *x, const sdw_tensor *bias) {
  cuda_check_f32(x);
  cuda_check_f32(bias);
  SDW_ASSERT(x->ndim >= 2);
  SDW_ASSERT(bias->ndim == 2 && bias->shape[0] == x->shape[0] && bias->shape[1] == x->shape[1]);
  return sdw_tensor_span(x, 2, x->ndim);
}

sdw_status sdw_cuda_add_channel_bias(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *bias,
                                     sdw_tensor *y) {
  int64_t s = check_channel_bias(x, bias);
  cuda_check_same_f32(x, y);
  int64_t rows = x->shape[0] * x->shape[1];
  if (!rows || !s) return SDW_OK;
  row_bias_kernel<<<cuda_grid(rows * s), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (const float *)bias->data, (float *)y->data, rows, s);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_add_channel_bias_backward(sdw_ctx *ctx, const sdw_tensor *dy,
                                              sdw_tensor *dbias) {
  if (!dbias) return SDW_OK;
  int64_t s = check_channel_bias(dy, dbias);
  int64_t rows = dy->shape[0] * dy->shape[1];
  if (!rows) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  row_sum_kernel<<<(unsigned)rows, CUDA_THREADS, 0, cuda_stream(ctx)>>>((const float *)dy->data, s,
                                                                        (float *)dbias->data);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_channel_sum(sdw_ctx *ctx, const float *src, int64_t n, int64_t c, int64_t s,
                                float *dst) {
  if (!c) return SDW_OK;
  SDW_ASSERT(c <= INT32_MAX);
  channel_sum_kernel<<<(unsigned)c, CUDA_THREADS, 0, cuda_stream(ctx)>>>(src, n, c, s, dst);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_column_sum(sdw_ctx *ctx, const float *src, int64_t rows, int64_t cols,
                               float *dst) {
  if (!cols) return SDW_OK;
  int64_t parts = rows / 64 + 1;
  if (parts > 1024) parts = 1024;
  int64_t per = (rows + parts - 1) / parts;
  if (per < 1) per = 1;
  void *ws = NULL;
  SDW_TRY(sdw_cuda_workspace(ctx, sizeof(double) * (size_t)(parts * cols), &ws));
  cudaStream_t st = cuda_stream(ctx);
  dim3 grid((unsigned)((cols + CUDA_THREADS - 1) / CUDA_THREADS), (unsigned)parts);
  column_partial_kernel<<<grid, CUDA_THREADS, 0, st>>>(src, rows, cols, per, (double *)ws);
  CUDA_LAUNCH_TRY();
  column_finish_kernel<<<cuda_grid(cols), CUDA_THREADS, 0, st>>>((const double *)ws, parts, cols,
                                                                 dst);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_add_bias_nchw(sdw_ctx *ctx, float *y, const float *b, int64_t n, int64_t c,
                                  int64_t s) {
  int64_t total = n * c * s;
  if (!total) return SDW_OK;
  bias_nchw_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream(ctx)>>>(y, b, total, c, s);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

/* a[N,Ca,*], b[N,Cb,*] against y[N,Ca+Cb,*] (NULL parts skipped); returns S. */
static int64_t check_concat(const sdw_tensor *y, const sdw_tensor *a, const sdw_tensor *b) {
  cuda_check_f32(y);
  SDW_ASSERT(y->ndim >= 2);
  const sdw_tensor *parts[2] = {a, b};
  for (int p = 0; p < 2; p++) {
    if (!parts[p]) continue;
    cuda_check_f32(parts[p]);
    SDW_ASSERT(parts[p]->ndim == y->ndim && parts[p]->shape[0] == y->shape[0]);
    for (int i = 2; i < y->ndim; i++)
      SDW_ASSERT(parts[p]->shape[i] == y->shape[i]);
  }
  return sdw_tensor_span(y, 2, y->ndim);
}

sdw_status sdw_cuda_concat_channels(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                    sdw_tensor *y) {
  SDW_ASSERT(a && b);
  int64_t s = check_concat(y, a, b);
  int64_t ca = a->shape[1], cb = b->shape[1], n = y->shape[0];
  SDW_ASSERT(y->shape[1] == ca + cb);
  int64_t total = n * (ca + cb) * s;
  if (!total) return SDW_OK;
  concat_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)a->data, (const float *)b->data, (float *)y->data, n, ca, cb, s);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_concat_channels_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *da,
                                             sdw_tensor *db) {
  int64_t s = check_concat(dy, da, db);
  int64_t cy = dy->shape[1], n = dy->shape[0];
  int64_t ca = da ? da->shape[1] : cy - (db ? db->shape[1] : 0);
  int64_t cb = cy - ca;
  SDW_ASSERT(ca >= 0 && cb >= 0);
  if (db) SDW_ASSERT(db->shape[1] == cb);
  cudaStream_t st = cuda_stream(ctx);
  if (da && n * ca * s > 0) {
    split_acc_kernel<<<cuda_grid(n * ca * s), CUDA_THREADS, 0, st>>>(
        (const float *)dy->data, (float *)da->data, n, cy, 0, ca, s);
    CUDA_LAUNCH_TRY();
  }
  if (db && n * cb * s > 0) {
    split_acc_kernel<<<cuda_grid(n * cb * s), CUDA_THREADS, 0, st>>>(
        (const float *)dy->data, (float *)db->data, n, cy, ca, cb, s);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}

/* nchw[N,C,H,W] against nlc[N,H*W,C]. */
static void check_layout(const sdw_tensor *nchw, const sdw_tensor *nlc, int64_t *n, int64_t *c,
                         int64_t *l) {
  cuda_check_f32(nchw);
  cuda_check_f32(nlc);
  SDW_ASSERT(nchw->ndim == 4 && nlc->ndim == 3);
  *n = nchw->shape[0], *c = nchw->shape[1], *l = nchw->shape[2] * nchw->shape[3];
  SDW_ASSERT(nlc->shape[0] == *n && nlc->shape[1] == *l && nlc->shape[2] == *c);
}

/* x[batch, rows, cols] -> y[batch, cols, rows] (acc: +=). */
static sdw_status transpose(sdw_ctx *ctx, const float *x, float *y, int64_t batch, int64_t rows,
                            int64_t cols, bool acc) {
  if (!batch || !rows || !cols) return SDW_OK;
  SDW_ASSERT(batch <= 65535 && (rows + 31) / 32 <= 65535);
  dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((rows + 31) / 32), (unsigned)batch);
  dim3 block(32, 8);
  if (acc)
    transpose_kernel<true><<<grid, block, 0, cuda_stream(ctx)>>>(x, y, rows, cols);
  else
    transpose_kernel<false><<<grid, block, 0, cuda_stream(ctx)>>>(x, y, rows, cols);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_nchw_to_nlc(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t n, c, l;
  check_layout(x, y, &n, &c, &l);
  return transpose(ctx, (const float *)x->data, (float *)y->data, n, c, l, false);
}

sdw_status sdw_cuda_nlc_to_nchw(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t n, c, l;
  check_layout(y, x, &n, &c, &l);
  return transpose(ctx, (const float *)x->data, (float *)y->data, n, l, c, false);
}

sdw_status sdw_cuda_nchw_to_nlc_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  int64_t n, c, l;
  check_layout(dx, dy, &n, &c, &l);
  return transpose(ctx, (const float *)dy->data, (float *)dx->data, n, l, c, true);
}

sdw_status sdw_cuda_nlc_to_nchw_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  int64_t n, c, l;
  check_layout(dy, dx, &n, &c, &l);
  return transpose(ctx, (const float *)dy->data, (float *)dx->data, n, c, l, true);
}
