// Host emulation of the CUDA features the sdw kernels use (tools/cuda_emu/run.sh):
// one std::thread per CUDA thread, blocks one after another, __syncthreads
// = a block barrier, warp shuffles through a per-warp exchange and barrier,
// __shared__ = static (one block at a time), device memory = host memory.
// It checks the kernels' indexing, tiling, masking and reduction logic on a
// machine without a GPU; not CUDA's memory model, limits or libraries.
#pragma once
#include "kernels/cuda/cuda_backend.h"
#include "kernels/ops.h"
#include "tools/cuda_emu/emu_libs.h"
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0, cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
inline const char *cudaGetErrorString(int) { return "emu"; }
inline int cudaGetLastError() { return 0; }
template <typename K> int cudaFuncSetAttribute(K, int, int) { return 0; }
#define __global__
#define __device__
#define __shared__ static
inline float *emu_smem;
inline std::barrier<> *emu_block_bar;
inline std::vector<std::barrier<> *> emu_warp_bar;
inline std::vector<double> emu_xchg; // [warp*32 + lane]
inline void __syncthreads() { emu_block_bar->arrive_and_wait(); }
template <typename T> T emu_shfl(T v, int src_lane) {
  int w = threadIdx.x >> 5, l = threadIdx.x & 31;
  emu_xchg[w * 32 + l] = (double)v;
  emu_warp_bar[w]->arrive_and_wait();
  T r = (T)emu_xchg[w * 32 + (src_lane & 31)];
  emu_warp_bar[w]->arrive_and_wait();
  return r;
}
template <typename T> T __shfl_sync(unsigned, T v, int src) { return emu_shfl(v, src); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int m) {
  return emu_shfl(v, (int)(threadIdx.x & 31) ^ m);
}
inline void emu_launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
  gridDim = grid;
  blockDim = block;
  std::vector<float> dyn(smem / 4 + 1);
  emu_smem = dyn.data();
  int nt = block.x * block.y * block.z, warps = (nt + 31) / 32;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        std::barrier<> bb(nt);
        emu_block_bar = &bb;
        std::vector<std::barrier<> *> wb;
        for (int w = 0; w < warps; w++)
          wb.push_back(new std::barrier<>(std::min(32, nt - 32 * w)));
        emu_warp_bar = wb;
        emu_xchg.assign(warps * 32, 0.0);
        std::vector<std::thread> ts;
        for (int t = 0; t < nt; t++)
          ts.emplace_back([&, t] {
            blockIdx = dim3(bx, by, bz);
            threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            body();
            // exited threads leave the block barrier
            emu_block_bar->arrive_and_drop();
          });
        for (auto &th : ts)
          th.join();
        for (auto *p : wb)
          delete p;
      }
}
typedef struct sdw_cuda_impl {
  /* shared memory per block: SDW_EMU_SMEM=101376 mimics sm_86/89/120 (attention tiles of 16) */
  int max_smem_optin = getenv("SDW_EMU_SMEM") ? atoi(getenv("SDW_EMU_SMEM")) : 232448;
  std::vector<char> ws;
  int flag_storage = 0, host_flag_storage = 0;
  int *flag = &flag_storage, *host_flag = &host_flag_storage;
  double host_sum_storage = 0, *host_sum = &host_sum_storage;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cudnnHandle_t dnn = nullptr;
  void *conv_cache = nullptr;
  sdw_cuda_math math = SDW_CUDA_MATH_FP32;
} sdw_cuda_impl;
enum { cudaMemcpyDeviceToDevice = 3, cudaMemcpyDeviceToHost = 2, cudaMemcpyHostToDevice = 1 };
inline int cudaMemcpyAsync(void *d, const void *s, size_t n, int, cudaStream_t) {
  memmove(d, s, n);
  return 0;
}
inline int cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) {
  memset(d, v, n);
  return 0;
}
inline int cudaStreamSynchronize(cudaStream_t) { return 0; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float normcdff(float x) { return (float)(0.5 * erfc(-(double)x / sqrt(2.0))); }
struct __half {
  uint16_t x;
};
struct __nv_bfloat16 {
  uint16_t x;
};
inline __half __float2half_rn(float f) { return __half{sdw_f32_to_f16(f)}; }
inline float __half2float(__half h) { return sdw_f16_to_f32(h.x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{sdw_f32_to_bf16(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return sdw_bf16_to_f32(h.x); }
static inline sdw_cuda_impl *cuda_impl(const sdw_ctx *ctx) { return (sdw_cuda_impl *)ctx->impl; }
static inline cudaStream_t cuda_stream(const sdw_ctx *) { return nullptr; }
#define CUDA_TRY(expr)                                                                             \
  do {                                                                                             \
    (void)(expr);                                                                                  \
  } while (0)
#define CUDA_LAUNCH_TRY()                                                                          \
  do {                                                                                             \
  } while (0)
static inline void cuda_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t && t->dtype == SDW_F32 && t->device.kind == SDW_DEVICE_CUDA);
}
static inline void cuda_check_dev(const sdw_tensor *t) {
  SDW_ASSERT(t && t->device.kind == SDW_DEVICE_CUDA);
}
static inline void cuda_check_same_f32(const sdw_tensor *a, const sdw_tensor *b) {
  cuda_check_f32(a);
  cuda_check_f32(b);
  SDW_ASSERT(sdw_tensor_same_shape(a, b));
}
enum { CUDA_THREADS = 256 };
/* grid-stride kernels only: few blocks keep the thread count down */
static inline unsigned cuda_grid(int64_t n) {
  int64_t b = (n + 255) / 256;
  return b < 1 ? 1 : b > 2 ? 2 : (unsigned)b;
}
#define CUDA_FOR(i, n)                                                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)
static inline sdw_status sdw_cuda_workspace(sdw_ctx *ctx, size_t bytes, void **out) {
  auto &ws = cuda_impl(ctx)->ws;
  if (ws.size() < bytes) ws.resize(bytes);
  *out = ws.data();
  return SDW_OK;
}
static inline double cuda_block_sum(double v, double *shared) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  int warps = (blockDim.x + 31) >> 5;
  double t = lane < warps ? shared[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1)
    t += __shfl_xor_sync(0xffffffffu, t, o);
  return t;
}
static inline float cuda_block_max(float v, float *shared) {
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
