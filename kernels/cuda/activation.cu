/* CUDA activations (kernels/ops.h): SiLU, GELU (erf form), quick GELU and
 * GEGLU, forward and backward. The forward may run in place (y == x); the
 * backward accumulates into dx. Phi(x) is CUDA's normcdff, accurate in the
 * lower tail (relative), like the CPU's erfc-based Phi. */
#include "kernels/cuda/cuda_common.h"

namespace {

enum Act { kSilu, kGelu, kQuickGelu };

__device__ inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

template <int A> __device__ inline float act_f(float x) {
  if (A == kSilu) return x * sigmoidf_(x);
  if (A == kGelu) return x * normcdff(x);
  return x * sigmoidf_(1.702f * x);
}
template <int A> __device__ inline float act_grad(float x) {
  if (A == kSilu) {
    float s = sigmoidf_(x);
    return s * (1.0f + x * (1.0f - s));
  }
  if (A == kGelu) return normcdff(x) + x * 0.39894228040143268f * expf(-0.5f * x * x);
  float s = sigmoidf_(1.702f * x);
  return s + 1.702f * x * s * (1.0f - s);
}

template <int A> __global__ void act_forward_kernel(const float *x, float *y, int64_t n) {
  CUDA_FOR(i, n) y[i] = act_f<A>(x[i]);
}
template <int A>
__global__ void act_backward_kernel(const float *x, const float *dy, float *dx, int64_t n) {
  CUDA_FOR(i, n) dx[i] += dy[i] * act_grad<A>(x[i]);
}

/* x[rows, 2D] = [hidden | gate] -> y[rows, D] = hidden * gelu(gate). */
__global__ void geglu_forward_kernel(const float *x, float *y, int64_t rows, int64_t d) {
  CUDA_FOR(i, rows * d) {
    int64_t r = i / d, c = i % d;
    float h = x[r * 2 * d + c], g = x[r * 2 * d + d + c];
    y[i] = h * act_f<kGelu>(g);
  }
}
__global__ void geglu_backward_kernel(const float *x, const float *dy, float *dx, int64_t rows,
                                      int64_t d) {
  CUDA_FOR(i, rows * d) {
    int64_t r = i / d, c = i % d;
    float h = x[r * 2 * d + c], g = x[r * 2 * d + d + c], gy = dy[i];
    dx[r * 2 * d + c] += gy * act_f<kGelu>(g);
    dx[r * 2 * d + d + c] += gy * h * act_grad<kGelu>(g);
  }
}

template <int A> sdw_status act_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  cuda_check_same_f32(x, y);
  int64_t n = sdw_tensor_numel(x);
  if (!n) return SDW_OK;
  act_forward_kernel<A><<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>((const float *)x->data,
                                                                             (float *)y->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

template <int A>
sdw_status act_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx) {
  cuda_check_same_f32(x, dy);
  if (!dx) return SDW_OK;
  cuda_check_same_f32(x, dx);
  int64_t n = sdw_tensor_numel(x);
  if (!n) return SDW_OK;
  act_backward_kernel<A><<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (const float *)dy->data, (float *)dx->data, n);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

/* x[*,2D] against y[*,D]; returns D and the row count. */
int64_t geglu_check(const sdw_tensor *x, const sdw_tensor *y, int64_t *rows) {
  cuda_check_f32(x);
  cuda_check_f32(y);
  SDW_ASSERT(x->ndim >= 1 && x->ndim == y->ndim);
  for (int i = 0; i + 1 < x->ndim; i++)
    SDW_ASSERT(x->shape[i] == y->shape[i]);
  int64_t two_d = x->shape[x->ndim - 1];
  SDW_ASSERT(two_d % 2 == 0 && y->shape[y->ndim - 1] == two_d / 2);
  *rows = sdw_tensor_span(x, 0, x->ndim - 1);
  return two_d / 2;
}

} // namespace

sdw_status sdw_cuda_silu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  return act_forward<kSilu>(ctx, x, y);
}
sdw_status sdw_cuda_silu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                  sdw_tensor *dx) {
  return act_backward<kSilu>(ctx, x, dy, dx);
}
sdw_status sdw_cuda_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  return act_forward<kGelu>(ctx, x, y);
}
sdw_status sdw_cuda_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                  sdw_tensor *dx) {
  return act_backward<kGelu>(ctx, x, dy, dx);
}
sdw_status sdw_cuda_quick_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  return act_forward<kQuickGelu>(ctx, x, y);
}
sdw_status sdw_cuda_quick_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                        sdw_tensor *dx) {
  return act_backward<kQuickGelu>(ctx, x, dy, dx);
}

sdw_status sdw_cuda_geglu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t rows;
  int64_t d = geglu_check(x, y, &rows);
  if (!rows || !d) return SDW_OK;
  geglu_forward_kernel<<<cuda_grid(rows * d), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (float *)y->data, rows, d);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_geglu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                   sdw_tensor *dx) {
  int64_t rows;
  int64_t d = geglu_check(x, dy, &rows);
  if (!dx) return SDW_OK;
  cuda_check_same_f32(x, dx);
  if (!rows || !d) return SDW_OK;
  geglu_backward_kernel<<<cuda_grid(rows * d), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (const float *)dy->data, (float *)dx->data, rows, d);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}
