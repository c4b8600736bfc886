/* Private to the kernels/cuda .cu files: the ctx's CUDA state, the error-checking
 * macros that turn every CUDA / cuBLAS / cuDNN failure into an sdw_status,
 * tensor checks and launch helpers. C++ (nvcc) only. */
#ifndef SDW_KERNELS_CUDA_COMMON_H
#define SDW_KERNELS_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stdint.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/ops.h"

/* ctx->impl of a CUDA ctx. */
typedef struct sdw_cuda_impl {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  sdw_cuda_math math;
  void *workspace; /* device scratch for cuDNN / cuBLAS / reductions, grown on demand */
  size_t workspace_bytes;
  int *flag;           /* device int: set by kernels that find bad data (token ids) */
  int *host_flag;      /* pinned mirror of flag */
  double *host_sum;    /* pinned double for sum_squares */
  void *conv_cache;    /* conv.cu's algorithm cache (std::map) */
  size_t in_use, peak; /* bytes from alloc + workspace */
  int max_smem_optin;  /* cudaDevAttrMaxSharedMemoryPerBlockOptin */
  int sm_count;
  int pageable_access; /* cudaDevAttrPageableMemoryAccess */
} sdw_cuda_impl;

static inline sdw_cuda_impl *cuda_impl(const sdw_ctx *ctx) { return (sdw_cuda_impl *)ctx->impl; }
static inline cudaStream_t cuda_stream(const sdw_ctx *ctx) { return cuda_impl(ctx)->stream; }

const char *sdw_cublas_status_str(cublasStatus_t s);

/* Each evaluates expr once; on failure records "file:line: expr: reason"
 * (SDW_ERR_DEVICE) and returns it from the enclosing function. */
#define CUDA_TRY(expr)                                                                             \
  do {                                                                                             \
    cudaError_t cuda_try_err_ = (expr);                                                            \
    if (cuda_try_err_ != cudaSuccess)                                                              \
      return sdw_fail(SDW_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,                  \
                      cudaGetErrorString(cuda_try_err_));                                          \
  } while (0)
#define CUBLAS_TRY(expr)                                                                           \
  do {                                                                                             \
    cublasStatus_t cublas_try_st_ = (expr);                                                        \
    if (cublas_try_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
      return sdw_fail(SDW_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,                  \
                      sdw_cublas_status_str(cublas_try_st_));                                      \
  } while (0)
#define CUDNN_TRY(expr)                                                                            \
  do {                                                                                             \
    cudnnStatus_t cudnn_try_st_ = (expr);                                                          \
    if (cudnn_try_st_ != CUDNN_STATUS_SUCCESS)                                                     \
      return sdw_fail(SDW_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,                  \
                      cudnnGetErrorString(cudnn_try_st_));                                         \
  } while (0)
/* After a kernel launch: launch-configuration errors and errors left by
 * earlier asynchronous work. */
#define CUDA_LAUNCH_TRY() CUDA_TRY(cudaGetLastError())

/* A float tensor of this backend: f32, on a CUDA device. */
static inline void cuda_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CUDA);
}
static inline void cuda_check_dev(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CUDA);
}
static inline void cuda_check_same_f32(const sdw_tensor *a, const sdw_tensor *b) {
  cuda_check_f32(a);
  cuda_check_f32(b);
  SDW_ASSERT(sdw_tensor_same_shape(a, b));
}

enum { CUDA_THREADS = 256 };

/* Blocks for a grid-stride loop over n items. */
static inline unsigned cuda_grid(int64_t n) {
  int64_t b = (n + CUDA_THREADS - 1) / CUDA_THREADS;
  if (b < 1) b = 1;
  if (b > 65535 * 8) b = 65535 * 8;
  return (unsigned)b;
}

#define CUDA_FOR(i, n)                                                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

/* At least bytes of device workspace (valid until the next call on this ctx). */
sdw_status sdw_cuda_workspace(sdw_ctx *ctx, size_t bytes, void **out);

/* dst[c] += sum over n < N, s < S of src[(n*C + c)*S + s], summed in double
 * (a deterministic channel reduction: conv bias gradients, channel bias). */
sdw_status sdw_cuda_channel_sum(sdw_ctx *ctx, const float *src, int64_t n, int64_t c, int64_t s,
                                float *dst);
/* dst[d] += sum over rows r < M of src[r*D + d], in double, deterministic
 * (linear bias gradients, layer-norm parameter gradients use their own). */
sdw_status sdw_cuda_column_sum(sdw_ctx *ctx, const float *src, int64_t rows, int64_t cols,
                               float *dst);
/* y[n, c, s] (+)= b[c] for y[N,C,S]. */
sdw_status sdw_cuda_add_bias_nchw(sdw_ctx *ctx, float *y, const float *b, int64_t n, int64_t c,
                                  int64_t s);

/* Block-wide sum of a double (every thread gets the result); blockDim.x a
 * multiple of 32, at most 1024; shared is 32 doubles. */
__device__ inline double cuda_block_sum(double v, double *shared) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* shared may still be read by a previous call */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  double t = lane < warps ? shared[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1)
    t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}
__device__ inline float cuda_block_max(float v, float *shared) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  float t = lane < warps ? shared[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1)
    t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

/* The op entry points, one family per .cu file (kernels/ops.h has the
 * contracts). */
#define SDW_CUDA_OP(name, ...) sdw_status sdw_cuda_##name(sdw_ctx *ctx, __VA_ARGS__)
SDW_CUDA_OP(copy, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(fill, sdw_tensor *x, float value);
SDW_CUDA_OP(cast, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(conv2d_forward, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b,
            int stride, int pad, sdw_tensor *y);
SDW_CUDA_OP(conv2d_backward, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *dy,
            int stride, int pad, sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db);
SDW_CUDA_OP(conv_transpose2d_forward, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b,
            int stride, int pad, sdw_tensor *y);
SDW_CUDA_OP(conv_transpose2d_backward, const sdw_tensor *x, const sdw_tensor *w,
            const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx, sdw_tensor *dw,
            sdw_tensor *db);
SDW_CUDA_OP(upsample_nearest2x_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(upsample_nearest2x_backward, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(group_norm_forward, const sdw_tensor *x, const sdw_tensor *gamma,
            const sdw_tensor *beta, int groups, float eps, sdw_tensor *y, sdw_tensor *mean,
            sdw_tensor *rstd);
SDW_CUDA_OP(group_norm_backward, const sdw_tensor *x, const sdw_tensor *gamma,
            const sdw_tensor *mean, const sdw_tensor *rstd, const sdw_tensor *dy, int groups,
            sdw_tensor *dx, sdw_tensor *dgamma, sdw_tensor *dbeta);
SDW_CUDA_OP(layer_norm_forward, const sdw_tensor *x, const sdw_tensor *gamma,
            const sdw_tensor *beta, float eps, sdw_tensor *y, sdw_tensor *mean, sdw_tensor *rstd);
SDW_CUDA_OP(layer_norm_backward, const sdw_tensor *x, const sdw_tensor *gamma,
            const sdw_tensor *mean, const sdw_tensor *rstd, const sdw_tensor *dy, sdw_tensor *dx,
            sdw_tensor *dgamma, sdw_tensor *dbeta);
SDW_CUDA_OP(linear_forward, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b,
            sdw_tensor *y);
SDW_CUDA_OP(linear_backward, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *dy,
            sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db);
SDW_CUDA_OP(matmul, bool trans_a, bool trans_b, float alpha, const sdw_tensor *a,
            const sdw_tensor *b, float beta, sdw_tensor *c);
SDW_CUDA_OP(attention_forward, const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v,
            const sdw_tensor *key_mask, bool causal, float scale, sdw_tensor *out, sdw_tensor *lse);
SDW_CUDA_OP(attention_backward, const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v,
            const sdw_tensor *key_mask, bool causal, float scale, const sdw_tensor *out,
            const sdw_tensor *lse, const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk,
            sdw_tensor *dv);
SDW_CUDA_OP(softmax_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(softmax_backward, const sdw_tensor *y, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(silu_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(silu_backward, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(gelu_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(gelu_backward, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(quick_gelu_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(quick_gelu_backward, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(geglu_forward, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(geglu_backward, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(add, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
SDW_CUDA_OP(mul, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
SDW_CUDA_OP(mul_backward, const sdw_tensor *a, const sdw_tensor *b, const sdw_tensor *dy,
            sdw_tensor *da, sdw_tensor *db);
SDW_CUDA_OP(axpby, float alpha, const sdw_tensor *x, float beta, sdw_tensor *y);
SDW_CUDA_OP(add_channel_bias, const sdw_tensor *x, const sdw_tensor *bias, sdw_tensor *y);
SDW_CUDA_OP(add_channel_bias_backward, const sdw_tensor *dy, sdw_tensor *dbias);
SDW_CUDA_OP(concat_channels, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
SDW_CUDA_OP(concat_channels_backward, const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db);
SDW_CUDA_OP(nchw_to_nlc, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(nlc_to_nchw, const sdw_tensor *x, sdw_tensor *y);
SDW_CUDA_OP(nchw_to_nlc_backward, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(nlc_to_nchw_backward, const sdw_tensor *dy, sdw_tensor *dx);
SDW_CUDA_OP(timestep_embedding, const sdw_tensor *t, const sdw_timestep_embedding_params *params,
            sdw_tensor *y);
SDW_CUDA_OP(embedding_forward, const sdw_tensor *ids, const sdw_tensor *table, sdw_tensor *y);
SDW_CUDA_OP(embedding_backward, const sdw_tensor *ids, const sdw_tensor *dy, sdw_tensor *dtable);
SDW_CUDA_OP(mse_loss_forward, const sdw_tensor *pred, const sdw_tensor *target, sdw_tensor *loss);
SDW_CUDA_OP(mse_loss_backward, const sdw_tensor *pred, const sdw_tensor *target,
            const sdw_tensor *dloss, sdw_tensor *dpred);
SDW_CUDA_OP(adamw_step, sdw_tensor *param, const sdw_tensor *grad, sdw_tensor *m, sdw_tensor *v,
            const sdw_adamw_params *params);
SDW_CUDA_OP(ema_update, sdw_tensor *ema, const sdw_tensor *param, double decay);
SDW_CUDA_OP(sum_squares, const sdw_tensor *x, double *out);

#endif
