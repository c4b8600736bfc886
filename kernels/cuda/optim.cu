/* CUDA optimizer ops (kernels/ops.h): AdamW, EMA and the sum of squares.
 *
 * AdamW and EMA reproduce kernels/cpu/optim.c bit for bit: the scalars are
 * formed on the host with the CPU's code (double, rounded to f32 once) and
 * every f32 operation of the CPU loop is one explicitly rounded intrinsic
 * here (__fmul_rn / __fadd_rn / __fdiv_rn / __fsqrt_rn / __fmaf_rn), so nvcc
 * cannot contract products and sums into FMAs the CPU does not have. The
 * lerp is ATen's one-FMA form (weight < 0.5: fma(w, end-self, self), else
 * fma(w-1, end-self, end)). sum_squares accumulates in double: per-block
 * partials over fixed chunks, then the partials in order (deterministic). */
#include <math.h>

#include "kernels/cuda/cuda_common.h"

namespace {

struct Lerp {
  float coeff;
  bool small;
};
Lerp lerp_make(float w) {
  bool small = fabsf(w) < 0.5f;
  return Lerp{small ? w : w - 1.0f, small};
}
__device__ inline float lerp_f32(float self, float end, float coeff, bool small) {
  return __fmaf_rn(coeff, __fsub_rn(end, self), small ? self : end);
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, int64_t n, float decay,
                             float w1, bool w1_small, float b2, float one_minus_b2,
                             float neg_step_size, float bc2_sqrt, float eps, float gscale) {
  CUDA_FOR(i, n) {
    float gi = __fmul_rn(g[i], gscale);
    float pi = __fmul_rn(p[i], decay);
    float mi = lerp_f32(m[i], gi, w1, w1_small);
    float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(one_minus_b2, gi), gi));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    p[i] = __fadd_rn(pi, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void ema_kernel(float *e, const float *p, int64_t n, float coeff, bool small) {
  CUDA_FOR(i, n) e[i] = lerp_f32(e[i], p[i], coeff, small);
}

enum { kSumBlocks = 1024 };

__global__ void sumsq_partial_kernel(const float *x, int64_t n, double *part) {
  __shared__ double red[32];
  double s = 0.0;
  CUDA_FOR(i, n) {
    double d = x[i];
    s += d * d;
  }
  s = cuda_block_sum(s, red);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void sumsq_finish_kernel(const double *part, int parts, double *out) {
  __shared__ double red[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x)
    s += part[i];
  s = cuda_block_sum(s, red);
  if (threadIdx.x == 0) *out = s;
}

} // namespace

sdw_status sdw_cuda_adamw_step(sdw_ctx *ctx, sdw_tensor *param, const sdw_tensor *grad,
                               sdw_tensor *m, sdw_tensor *v, const sdw_adamw_params *params) {
  cuda_check_same_f32(param, grad);
  cuda_check_same_f32(param, m);
  cuda_check_same_f32(param, v);
  SDW_ASSERT(params != NULL && params->step >= 1);
  double lr = params->lr, beta1 = params->beta1, beta2 = params->beta2;
  double step = (double)params->step;
  const float decay = (float)(1.0 - lr * params->weight_decay);
  const Lerp w1 = lerp_make((float)(1.0 - beta1));
  const float b2 = (float)beta2, one_minus_b2 = (float)(1.0 - beta2);
  double bias_correction1 = 1.0 - pow(beta1, step);
  double bias_correction2 = 1.0 - pow(beta2, step);
  const float neg_step_size = (float)(-(lr / bias_correction1));
  const float bc2_sqrt = (float)sqrt(bias_correction2);
  int64_t n = sdw_tensor_numel(param);
  if (!n) return SDW_OK;
  adamw_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (float *)param->data, (const float *)grad->data, (float *)m->data, (float *)v->data, n, decay,
      w1.coeff, w1.small, b2, one_minus_b2, neg_step_size, bc2_sqrt, (float)params->eps,
      params->grad_scale);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_ema_update(sdw_ctx *ctx, sdw_tensor *ema, const sdw_tensor *param,
                               double decay) {
  cuda_check_same_f32(ema, param);
  const Lerp w = lerp_make((float)(1.0 - decay));
  int64_t n = sdw_tensor_numel(ema);
  if (!n) return SDW_OK;
  ema_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (float *)ema->data, (const float *)param->data, n, w.coeff, w.small);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_sum_squares(sdw_ctx *ctx, const sdw_tensor *x, double *out) {
  cuda_check_f32(x);
  SDW_ASSERT(out != NULL);
  int64_t n = sdw_tensor_numel(x);
  sdw_cuda_impl *im = cuda_impl(ctx);
  void *ws = NULL;
  SDW_TRY(sdw_cuda_workspace(ctx, sizeof(double) * (kSumBlocks + 1), &ws));
  double *part = (double *)ws;
  int blocks = (int)cuda_grid(n);
  if (blocks > kSumBlocks) blocks = kSumBlocks;
  sumsq_partial_kernel<<<blocks, CUDA_THREADS, 0, im->stream>>>((const float *)x->data, n, part);
  CUDA_LAUNCH_TRY();
  sumsq_finish_kernel<<<1, CUDA_THREADS, 0, im->stream>>>(part, blocks, part + kSumBlocks);
  CUDA_LAUNCH_TRY();
  CUDA_TRY(cudaMemcpyAsync(im->host_sum, part + kSumBlocks, sizeof(double), cudaMemcpyDeviceToHost,
                           im->stream));
  CUDA_TRY(cudaStreamSynchronize(im->stream));
  *out = *im->host_sum;
  return SDW_OK;
}
