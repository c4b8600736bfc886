/* The op seam: every computation the models and the trainer need, declared
 * once. A backend (CPU in kernels/cpu, CUDA in kernels/cuda) is a const table
 * of function pointers; models are written once against the table and never
 * look inside a backend.
 *
 * Conventions (all ops):
 *  - Shapes are in the comments: images and latents are N C H W, sequences
 *    are B T D (attention heads interleaved as B T H Dh, which is what a
 *    linear layer produces, so no permute is needed).
 *  - Tensors are dense row-major views (core/base/tensor.h). The CPU backend
 *    computes in f32; every tensor argument of a float role must be SDW_F32
 *    there. Integer roles (token ids, masks) say their dtype.
 *  - Forward outputs are overwritten. Gradient outputs (every argument named
 *    d*) are ACCUMULATED into (+=), llm.c style, so branches that share an
 *    input sum naturally and gradient accumulation needs no copies; callers
 *    zero them when they start a fresh gradient. A NULL gradient output means
 *    "not needed" and is skipped.
 *  - Outputs never alias inputs unless the op says so.
 *  - Shape or dtype mismatches are programming errors: SDW_ASSERT. Bad data
 *    (a token id out of range) and environment failures (scratch exhausted,
 *    a device error) return a status with a message (core/base/status.h).
 *  - Saved statistics (norm means, attention log-sum-exp) are optional
 *    outputs of the forward and required inputs of the backward.
 */
#ifndef SDW_KERNELS_OPS_H
#define SDW_KERNELS_OPS_H

#include <stdbool.h>

#include "core/base/arena.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_backend sdw_backend;

/* Execution context of one backend instance. Owned by whoever created it
 * (sdw_ctx_create / sdw_ctx_destroy). Not thread-safe: one ctx per thread. */
typedef struct sdw_ctx {
  const sdw_backend *ops;
  sdw_arena *scratch; /* reset to its mark after every op */
  int num_threads;    /* CPU: OpenMP threads used by ops */
  void *impl;         /* backend-private (CUDA stream, handles, algorithm caches) */
} sdw_ctx;

/* Parameters of the sinusoidal timestep embedding, which covers both
 * formulas in use:
 *   freq[i] = exp(-ln(max_period) * i / (half - freq_shift)), i < half = dim/2
 *   emb     = [sin(t*freq), cos(t*freq)]  (or [cos, sin] when flip_sin_to_cos)
 * The seed UNet: max_period 10000, freq_shift 1, flip false.
 * diffusers SD 1.x: max_period 10000, freq_shift 0, flip true.
 * An odd dim gets a trailing zero column (as diffusers does). */
typedef struct sdw_timestep_embedding_params {
  double max_period;
  double freq_shift;
  bool flip_sin_to_cos;
} sdw_timestep_embedding_params;

/* Hyper-parameters of one AdamW step with PyTorch's semantics
 * (torch.optim.AdamW, decoupled weight decay, bias correction):
 *   p *= 1 - lr*weight_decay
 *   m  = beta1*m + (1-beta1)*g;  v = beta2*v + (1-beta2)*g^2
 *   p -= (lr / (1-beta1^step)) * m / (sqrt(v) / sqrt(1-beta2^step) + eps)
 * where g = grad * grad_scale (grad_scale carries clipping / averaging). */
typedef struct sdw_adamw_params {
  /* Doubles, as PyTorch holds them (Python floats): the bias corrections
   * 1 - beta^step and 1 - lr*wd are formed in double and rounded once. */
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
  int64_t step; /* 1 for the first update */
  float grad_scale;
} sdw_adamw_params;

struct sdw_backend {
  const char *name; /* "cpu", "cuda" */
  sdw_device_kind device;

  /* --- context ---------------------------------------------------------- */
  sdw_status (*ctx_create)(sdw_ctx **out, int device_index);
  void (*ctx_destroy)(sdw_ctx *ctx);
  /* Waits for all queued work (no-op on the CPU). */
  sdw_status (*synchronize)(sdw_ctx *ctx);

  /* --- device memory --------------------------------------------------- */
  /* bytes of backend memory, 64-byte aligned (256 on GPUs), uninitialised;
   * owned by the caller, released with free. */
  sdw_status (*alloc)(sdw_ctx *ctx, size_t bytes, void **out);
  void (*free)(sdw_ctx *ctx, void *p);
  /* Blocking copies between host memory and backend memory. */
  sdw_status (*upload)(sdw_ctx *ctx, void *device_dst, const void *host_src, size_t bytes);
  sdw_status (*download)(sdw_ctx *ctx, void *host_dst, const void *device_src, size_t bytes);

  /* --- memory movement ------------------------------------------------- */
  /* y = x (same shape and dtype). */
  sdw_status (*copy)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  /* x[:] = value (f32). */
  sdw_status (*fill)(sdw_ctx *ctx, sdw_tensor *x, float value);
  /* y = x converted between F32 / F16 / BF16 (same numel). */
  sdw_status (*cast)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);

  /* --- convolutions ----------------------------------------------------- */
  /* x[N,Ci,H,W] * w[Co,Ci,KH,KW] + b[Co] -> y[N,Co,Ho,Wo],
   * Ho = (H + 2*pad - KH)/stride + 1 (same for W). b may be NULL. */
  sdw_status (*conv2d_forward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                               const sdw_tensor *b, int stride, int pad, sdw_tensor *y);
  /* Given dy[N,Co,Ho,Wo]: dx[N,Ci,H,W] += ..., dw[Co,Ci,KH,KW] += ..., db[Co] += ... */
  sdw_status (*conv2d_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx,
                                sdw_tensor *dw, sdw_tensor *db);
  /* PyTorch ConvTranspose2d: x[N,Ci,H,W], w[Ci,Co,KH,KW], b[Co] -> y[N,Co,Ho,Wo],
   * Ho = (H-1)*stride - 2*pad + KH. */
  sdw_status (*conv_transpose2d_forward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                         const sdw_tensor *b, int stride, int pad, sdw_tensor *y);
  sdw_status (*conv_transpose2d_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                          const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx,
                                          sdw_tensor *dw, sdw_tensor *db);
  /* Nearest-neighbour x2: x[N,C,H,W] -> y[N,C,2H,2W]; backward sums each 2x2 block. */
  sdw_status (*upsample_nearest2x_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*upsample_nearest2x_backward)(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);

  /* --- normalisation ---------------------------------------------------- */
  /* x[N,C,*] (any trailing dims, flattened to S) grouped into G groups of C/G
   * channels: y = (x - mean) * rstd * gamma[C] + beta[C];
   * mean[N,G], rstd[N,G] saved for the backward (may be NULL in inference).
   * Biased variance, as PyTorch. */
  sdw_status (*group_norm_forward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                   const sdw_tensor *beta, int groups, float eps, sdw_tensor *y,
                                   sdw_tensor *mean, sdw_tensor *rstd);
  sdw_status (*group_norm_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                    const sdw_tensor *mean, const sdw_tensor *rstd,
                                    const sdw_tensor *dy, int groups, sdw_tensor *dx,
                                    sdw_tensor *dgamma, sdw_tensor *dbeta);
  /* x[*,D] (leading dims flattened to M): y = (x-mean)*rstd*gamma[D] + beta[D];
   * mean[M], rstd[M] saved (may be NULL in inference). */
  sdw_status (*layer_norm_forward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                   const sdw_tensor *beta, float eps, sdw_tensor *y,
                                   sdw_tensor *mean, sdw_tensor *rstd);
  sdw_status (*layer_norm_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                    const sdw_tensor *mean, const sdw_tensor *rstd,
                                    const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dgamma,
                                    sdw_tensor *dbeta);

  /* --- matrix products -------------------------------------------------- */
  /* x[*,K] (leading dims flattened to M), w[N,K] (PyTorch Linear layout),
   * b[N] or NULL -> y[*,N]. */
  sdw_status (*linear_forward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                               const sdw_tensor *b, sdw_tensor *y);
  sdw_status (*linear_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dw,
                                sdw_tensor *db);
  /* Batched GEMM: c[Bt,M,N] = alpha * op(a) @ op(b) + beta * c, with
   * a[Bt,M,K] (or [Bt,K,M] when trans_a), b[Bt,K,N] (or [Bt,N,K] when trans_b).
   * Rank-2 operands are a batch of one; a, b and c must have the same batch
   * count (no broadcasting). The backward of a matmul is two more
   * matmuls (dA = dC @ B^T, dB = A^T @ dC with beta = 1), so there is no
   * separate backward entry. */
  sdw_status (*matmul)(sdw_ctx *ctx, bool trans_a, bool trans_b, float alpha, const sdw_tensor *a,
                       const sdw_tensor *b, float beta, sdw_tensor *c);

  /* --- attention -------------------------------------------------------- */
  /* Multi-head scaled-dot-product attention, heads interleaved:
   * q[B,Tq,H,Dh], k[B,Tk,H,Dh], v[B,Tk,H,Dh] -> out[B,Tq,H,Dh],
   * out = softmax(q k^T * scale + mask) v per (batch, head), where the mask
   * removes key j for query i when key_mask[b,j] == 0 (key_mask: U8 [B,Tk],
   * or NULL) or, if causal, when j > i. A query with every key removed gets
   * a zero output and lse = -inf (its gradients are zero). lse[B,H,Tq] (log-sum-exp of the scaled,
   * masked logits) is saved for the backward (may be NULL in inference). */
  sdw_status (*attention_forward)(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                  const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                  float scale, sdw_tensor *out, sdw_tensor *lse);
  sdw_status (*attention_backward)(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                   const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                   float scale, const sdw_tensor *out, const sdw_tensor *lse,
                                   const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk,
                                   sdw_tensor *dv);
  /* Softmax over the last dim: x[*,N] -> y[*,N]; backward from y and dy. */
  sdw_status (*softmax_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*softmax_backward)(sdw_ctx *ctx, const sdw_tensor *y, const sdw_tensor *dy,
                                 sdw_tensor *dx);

  /* --- activations (any shape; y may alias x in the forward) ------------- */
  sdw_status (*silu_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*silu_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                              sdw_tensor *dx);
  /* GELU with erf (PyTorch nn.GELU() default, not the tanh approximation). */
  sdw_status (*gelu_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*gelu_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                              sdw_tensor *dx);
  /* quick_gelu(x) = x * sigmoid(1.702 x) (CLIP). */
  sdw_status (*quick_gelu_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*quick_gelu_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                    sdw_tensor *dx);
  /* diffusers GEGLU after its projection: x[*,2D] = [hidden | gate] ->
   * y[*,D] = hidden * gelu(gate). */
  sdw_status (*geglu_forward)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  sdw_status (*geglu_backward)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                               sdw_tensor *dx);

  /* --- elementwise and layout ------------------------------------------ */
  /* y = a + b (same shapes; y may alias a or b). */
  sdw_status (*add)(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
  /* y = a * b (same shapes; y may alias a or b). */
  sdw_status (*mul)(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
  /* da += dy * b, db += dy * a. */
  sdw_status (*mul_backward)(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                             const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db);
  /* y = alpha * x + beta * y (same shapes; with beta 0 y is only written, so
   * it may hold garbage; this is also "dx += dy" with alpha = beta = 1). */
  sdw_status (*axpby)(sdw_ctx *ctx, float alpha, const sdw_tensor *x, float beta, sdw_tensor *y);
  /* Per-(sample, channel) bias broadcast over space:
   * x[N,C,*] + bias[N,C] -> y[N,C,*] (y may alias x). */
  sdw_status (*add_channel_bias)(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *bias,
                                 sdw_tensor *y);
  /* dbias[N,C] += sum over space of dy[N,C,*]. */
  sdw_status (*add_channel_bias_backward)(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dbias);
  /* Channel concat: a[N,Ca,*], b[N,Cb,*] -> y[N,Ca+Cb,*] (a first). */
  sdw_status (*concat_channels)(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                sdw_tensor *y);
  /* Its backward, a split: da += dy[:, :Ca], db += dy[:, Ca:]. */
  sdw_status (*concat_channels_backward)(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *da,
                                         sdw_tensor *db);
  /* x[N,C,H,W] -> y[N,H*W,C] (the SpatialTransformer's view+transpose). */
  sdw_status (*nchw_to_nlc)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  /* x[N,H*W,C] -> y[N,C,H,W]; y's shape gives H and W. */
  sdw_status (*nlc_to_nchw)(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
  /* Backward of each: dx += transposed dy. */
  sdw_status (*nchw_to_nlc_backward)(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);
  sdw_status (*nlc_to_nchw_backward)(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);

  /* --- embeddings ------------------------------------------------------- */
  /* t[N] (F32 timesteps) -> y[N,dim]; no backward (timesteps are data). */
  sdw_status (*timestep_embedding)(sdw_ctx *ctx, const sdw_tensor *t,
                                   const sdw_timestep_embedding_params *params, sdw_tensor *y);
  /* ids[*] (I32 or I64) rows of table[V,D] -> y[*,D]; an id outside [0,V)
   * is SDW_ERR_INVALID_ARGUMENT. */
  sdw_status (*embedding_forward)(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *table,
                                  sdw_tensor *y);
  /* dtable[ids[i]] += dy[i] (scatter-add; repeated ids sum). */
  sdw_status (*embedding_backward)(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *dy,
                                   sdw_tensor *dtable);

  /* --- loss ------------------------------------------------------------- */
  /* Per-sample mean squared error: pred[N,*], target[N,*] -> loss[N]
   * (mean over the non-batch elements, accumulated in double on the CPU). */
  sdw_status (*mse_loss_forward)(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                 sdw_tensor *loss);
  /* dpred += dloss[n] * 2 (pred - target) / (elements per sample);
   * dloss[N] is dL/dloss (weights such as Min-SNR / batch mean go there). */
  sdw_status (*mse_loss_backward)(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                  const sdw_tensor *dloss, sdw_tensor *dpred);

  /* --- optimizer -------------------------------------------------------- */
  /* One AdamW update of param[n] from grad[n] with moments m[n], v[n]. */
  sdw_status (*adamw_step)(sdw_ctx *ctx, sdw_tensor *param, const sdw_tensor *grad, sdw_tensor *m,
                           sdw_tensor *v, const sdw_adamw_params *params);
  /* ema = lerp(ema, param, 1 - decay), i.e. decay*ema + (1-decay)*param, with
   * PyTorch's lerp rounding (Tensor.lerp_ as the seed's EMA uses it). */
  sdw_status (*ema_update)(sdw_ctx *ctx, sdw_tensor *ema, const sdw_tensor *param, double decay);
  /* *out = sum of x^2 over all elements (double accumulation on the CPU);
   * the global L2 norm is sqrt of the sum over all gradient tensors. */
  sdw_status (*sum_squares)(sdw_ctx *ctx, const sdw_tensor *x, double *out);
};

/* The CPU backend (always built). */
const sdw_backend *sdw_backend_cpu(void);
/* The CUDA backend, or NULL when this build has none. */
const sdw_backend *sdw_backend_cuda(void);

/* Convenience: ctx->ops->ctx_create / ctx_destroy. */
sdw_status sdw_ctx_create(const sdw_backend *backend, int device_index, sdw_ctx **out);
void sdw_ctx_destroy(sdw_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
