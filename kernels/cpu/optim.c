/* CPU optimizer ops: one AdamW step, the EMA update and the sum of squares
 * for global-norm clipping (kernels/ops.h).
 *
 * AdamW reproduces torch.optim.AdamW's single-tensor path (foreach=False),
 * op by op, in float32 with its scalars formed in double as Python does:
 *   param.mul_(1 - lr*wd)
 *   exp_avg.lerp_(grad, 1 - beta1)
 *   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   step_size = lr / (1 - beta1**step); bc2_sqrt = sqrt(1 - beta2**step)
 *   denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
 *   param.addcdiv_(exp_avg, denom, value=-step_size)
 * Each tensor op rounds once per arithmetic operation of its CPU kernel:
 * addcmul is self + (value*t1)*t2, addcdiv is self + (value*t1)/t2, and lerp
 * is ATen's vectorised form, one FMA: weight < 0.5 ? fma(w, end-self, self)
 * : fma(w-1, end-self, end). The build is ISO C (-std=c11), so GCC does not
 * contract the other products and sums into FMAs. */
#include <math.h>

#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#include "kernels/cpu/cpu_ops.h"

enum {
  OPT_PARALLEL_MIN = 1 << 15,
  OPT_BLOCK = 1024,      /* AdamW works through L1-sized blocks */
  SUMSQ_CHUNK = 1 << 16, /* fixed partial-sum chunks: thread-count independent */
};

static int opt_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void opt_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

/* out[i] = sqrt(in[i]), correctly rounded. libm's sqrtf keeps its errno
 * branch under the default -fmath-errno, which stops GCC from vectorising
 * any loop that calls it, so the hot path uses the SIMD instruction (IEEE
 * square root, the same value). */
static void opt_sqrt_block(float *out, const float *in, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_sqrt_ps(_mm512_loadu_ps(in + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_sqrt_ps(_mm256_loadu_ps(in + i)));
#endif
  for (; i < n; i++)
    out[i] = sqrtf(in[i]);
}

/* ATen's lerp for a scalar weight, as a coefficient and a choice of base. */
typedef struct lerp_weight {
  float coeff; /* w, or w - 1 when |w| >= 0.5 */
  bool small;  /* |w| < 0.5: base is self, else end */
} lerp_weight;

static lerp_weight lerp_weight_make(float w) {
  bool small = fabsf(w) < 0.5f;
  return (lerp_weight){small ? w : w - 1.0f, small};
}

static inline float lerp_f32(float self, float end, float coeff, bool small) {
  return fmaf(coeff, end - self, small ? self : end);
}

sdw_status sdw_cpu_adamw_step(sdw_ctx *ctx, sdw_tensor *param, const sdw_tensor *grad,
                              sdw_tensor *m, sdw_tensor *v, const sdw_adamw_params *params) {
  opt_check_f32(param);
  opt_check_f32(grad);
  opt_check_f32(m);
  opt_check_f32(v);
  SDW_ASSERT(sdw_tensor_same_shape(param, grad) && sdw_tensor_same_shape(param, m) &&
             sdw_tensor_same_shape(param, v));
  SDW_ASSERT(params != NULL && params->step >= 1);

  /* Python's scalars (doubles), rounded to f32 where the tensor op takes them. */
  double lr = params->lr, beta1 = params->beta1, beta2 = params->beta2;
  double step = (double)params->step;
  const float decay = (float)(1.0 - lr * params->weight_decay);
  const lerp_weight w1 = lerp_weight_make((float)(1.0 - beta1));
  const float w1_coeff = w1.coeff;
  const bool w1_small = w1.small;
  const float b2 = (float)beta2, one_minus_b2 = (float)(1.0 - beta2);
  double bias_correction1 = 1.0 - pow(beta1, step);
  double bias_correction2 = 1.0 - pow(beta2, step);
  const float neg_step_size = (float)(-(lr / bias_correction1));
  const float bc2_sqrt = (float)sqrt(bias_correction2);
  const float eps = (float)params->eps, gscale = params->grad_scale;

  float *pp = param->data, *mp = m->data, *vp = v->data;
  const float *gp = grad->data;
  int64_t n = sdw_tensor_numel(param);
  int64_t blocks = (n + OPT_BLOCK - 1) / OPT_BLOCK;
#pragma omp parallel for schedule(static) num_threads(opt_threads(ctx)) if (n >= OPT_PARALLEL_MIN)
  for (int64_t blk = 0; blk < blocks; blk++) {
    int64_t i0 = blk * OPT_BLOCK, len = n - i0 < OPT_BLOCK ? n - i0 : OPT_BLOCK;
    float *p = pp + i0, *mb = mp + i0, *vb = vp + i0;
    const float *g = gp + i0;
    float root[OPT_BLOCK];
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
      float gi = g[i] * gscale;
      p[i] = p[i] * decay;
      mb[i] = lerp_f32(mb[i], gi, w1_coeff, w1_small);
      vb[i] = vb[i] * b2 + (one_minus_b2 * gi) * gi;
    }
    opt_sqrt_block(root, vb, len);
#pragma omp simd
    for (int64_t i = 0; i < len; i++) {
      float denom = root[i] / bc2_sqrt + eps;
      p[i] = p[i] + (neg_step_size * mb[i]) / denom;
    }
  }
  return SDW_OK;
}

/* ema.lerp_(param, 1 - decay), the weight formed in double and rounded to f32
 * as PyTorch does with a Python float. */
sdw_status sdw_cpu_ema_update(sdw_ctx *ctx, sdw_tensor *ema, const sdw_tensor *param,
                              double decay) {
  opt_check_f32(ema);
  opt_check_f32(param);
  SDW_ASSERT(sdw_tensor_same_shape(ema, param));
  const lerp_weight w = lerp_weight_make((float)(1.0 - decay));
  const float coeff = w.coeff;
  const bool small = w.small;
  float *ep = ema->data;
  const float *pp = param->data;
  int64_t n = sdw_tensor_numel(ema);
#pragma omp parallel for simd schedule(static)                                                     \
    num_threads(opt_threads(ctx)) if (n >= OPT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    ep[i] = lerp_f32(ep[i], pp[i], coeff, small);
  return SDW_OK;
}

/* Double partial sums over fixed chunks, added in chunk order, so the result
 * does not depend on the thread count. */
sdw_status sdw_cpu_sum_squares(sdw_ctx *ctx, const sdw_tensor *x, double *out) {
  opt_check_f32(x);
  SDW_ASSERT(out != NULL);
  const float *xp = x->data;
  int64_t n = sdw_tensor_numel(x);
  int64_t chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
  size_t mark = sdw_arena_mark(ctx->scratch);
  double *partial = sdw_arena_alloc(ctx->scratch, sizeof(double) * (size_t)(chunks ? chunks : 1));
  if (!partial) return SDW_ERR_OUT_OF_MEMORY;
#pragma omp parallel for schedule(static) num_threads(opt_threads(ctx)) if (chunks > 1)
  for (int64_t k = 0; k < chunks; k++) {
    int64_t i0 = k * SUMSQ_CHUNK, i1 = i0 + SUMSQ_CHUNK < n ? i0 + SUMSQ_CHUNK : n;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; i++)
      s += (double)xp[i] * (double)xp[i];
    partial[k] = s;
  }
  double total = 0.0;
  for (int64_t k = 0; k < chunks; k++)
    total += partial[k];
  *out = total;
  sdw_arena_reset_to(ctx->scratch, mark);
  return SDW_OK;
}
