/* CUDA softmax over the last dim (kernels/ops.h): one block per row, the max
 * in f32 and the sums in double; backward dx += y * (dy - sum(y * dy)). */
#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void softmax_forward_kernel(const float *x, float *y, int64_t n) {
  __shared__ double dred[32];
  __shared__ float fred[32];
  const float *xr = x + (int64_t)blockIdx.x * n;
  float *yr = y + (int64_t)blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    m = fmaxf(m, xr[i]);
  m = cuda_block_max(m, fred);
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += expf(xr[i] - m);
  s = cuda_block_sum(s, dred);
  float inv = (float)(1.0 / s);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = expf(xr[i] - m) * inv;
}

__global__ void softmax_backward_kernel(const float *y, const float *dy, float *dx, int64_t n) {
  __shared__ double dred[32];
  int64_t off = (int64_t)blockIdx.x * n;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += (double)y[off + i] * dy[off + i];
  float dot = (float)cuda_block_sum(s, dred);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    dx[off + i] += y[off + i] * (dy[off + i] - dot);
}

} // namespace

sdw_status sdw_cuda_softmax_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  cuda_check_same_f32(x, y);
  SDW_ASSERT(x->ndim >= 1);
  int64_t n = x->shape[x->ndim - 1], rows = sdw_tensor_span(x, 0, x->ndim - 1);
  if (!rows || !n) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  softmax_forward_kernel<<<(unsigned)rows, CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (float *)y->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_softmax_backward(sdw_ctx *ctx, const sdw_tensor *y, const sdw_tensor *dy,
                                     sdw_tensor *dx) {
  cuda_check_same_f32(y, dy);
  if (!dx) return SDW_OK;
  cuda_check_same_f32(y, dx);
  SDW_ASSERT(y->ndim >= 1);
  int64_t n = y->shape[y->ndim - 1], rows = sdw_tensor_span(y, 0, y->ndim - 1);
  if (!rows || !n) return SDW_OK;
  SDW_ASSERT(rows <= INT32_MAX);
  softmax_backward_kernel<<<(unsigned)rows, CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)y->data, (const float *)dy->data, (float *)dx->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}
