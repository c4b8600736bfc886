/* One optimizer step over a model's flat parameter buffer (core/model/
 * params.h), as the seed's train.py takes it (SEED.md §2.4, §2.6):
 *
 *   1. total = global L2 norm of the gradient (one sum_squares over the
 *      flat gradient buffer: padding between parameters is zero);
 *   2. a NaN/Inf loss or gradient: nothing changes, the step is reported as
 *      skipped (the caller logs it and counts consecutive skips);
 *   3. clipping as torch.nn.utils.clip_grad_norm_(max_norm): coef =
 *      max_norm / (total + 1e-6), clamped to <= 1, applied to every gradient
 *      (as AdamW's grad_scale, so the gradient buffer itself is unchanged);
 *   4. AdamW (torch.optim.AdamW semantics, ops->adamw_step) at the given
 *      learning rate, decoupled weight decay on every parameter (the seed)
 *      or, with decay_norms_and_biases off, only on parameters of rank >= 2
 *      (weights of linears and convs; norm scales and biases are rank 1);
 *   5. EMA of the parameters with d = min(ema_decay, (1 + n) / (10 + n)),
 *      n the number of EMA updates including this one.
 *
 * The optimizer owns three flat buffers shaped like the parameters' (same
 * offsets): the AdamW moments m and v and the EMA shadow. They are backend
 * memory, contiguous, so checkpoints and all-reduce see one range each.
 */
#ifndef SDW_TRAIN_OPTIMIZER_H
#define SDW_TRAIN_OPTIMIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/model/params.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_optimizer_config {
  double beta1, beta2, eps;    /* 0.9, 0.999, 1e-8 */
  double weight_decay;         /* 1e-2 */
  bool decay_norms_and_biases; /* true: decay every parameter (the seed) */
  double max_grad_norm;        /* 1.0; <= 0 turns clipping off */
  bool ema;                    /* keep an EMA shadow (the seed: yes) */
  double ema_decay;            /* 0.9999 */
} sdw_optimizer_config;

/* The seed's settings (above). */
sdw_optimizer_config sdw_optimizer_config_seed(void);

typedef struct sdw_optimizer {
  sdw_ctx *ctx;             /* not owned */
  const sdw_params *params; /* the model's (not owned) */
  sdw_optimizer_config cfg;
  float *m, *v;        /* [params->total] AdamW moments, owned backend memory */
  float *ema;          /* [params->total] EMA shadow or NULL, owned */
  bool *decay;         /* [params->count] weight decay per parameter, owned host */
  int64_t step;        /* AdamW updates taken (torch's state['step']) */
  int64_t ema_updates; /* EMA updates taken (the seed's EMA step_count) */
} sdw_optimizer;

/* Zero moments, the EMA shadow a copy of the current parameters (the seed
 * creates its EMA before the first step). SDW_ERR_INVALID_ARGUMENT for bad
 * hyper-parameters. Free with sdw_optimizer_free. */
sdw_status sdw_optimizer_init(sdw_optimizer *o, sdw_ctx *ctx, const sdw_params *params,
                              const sdw_optimizer_config *cfg);
void sdw_optimizer_free(sdw_optimizer *o);

typedef struct sdw_optimizer_report {
  double grad_norm; /* global L2 norm before clipping (NaN/Inf when skipped for it) */
  double clip_coef; /* the factor applied (1 when not clipped) */
  double lr;        /* the learning rate used */
  double ema_decay; /* the EMA decay used (0 without EMA) */
  bool skipped;     /* non-finite loss or gradient: nothing was updated */
} sdw_optimizer_report;

/* One step: params (the same set given to init; its flat buffer is
 * updated) from grads, a flat buffer with the same layout (e.g. the
 * gradient UNet's params.flat), at learning rate lr. loss is the step's
 * loss, checked for NaN/Inf with the gradient. grads is not modified. */
sdw_status sdw_optimizer_step(sdw_optimizer *o, sdw_params *params, const float *grads, double lr,
                              double loss, sdw_optimizer_report *report);

/* The global L2 norm of a flat gradient buffer of params' layout. */
sdw_status sdw_optimizer_grad_norm(sdw_ctx *ctx, const sdw_params *params, const float *grads,
                                   double *norm);

#ifdef __cplusplus
}
#endif
#endif
