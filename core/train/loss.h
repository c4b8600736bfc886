/* The diffusion training loss (ε-prediction), as the seed's train.py
 * computes it (SEED.md §2.3), in pieces the trainer and the goldens can
 * drive separately:
 *
 *   draws:   t ~ U{0..T-1}, noise ~ N(0, 1), a caption-dropout coin per
 *            sample (p = cfg_dropout), and with a noise offset one more
 *            N(0, 1) value per (sample, channel);
 *   inputs:  target = noise + noise_offset * offset[n, c] (broadcast over
 *            H, W; the usual "noise offset" trick, off by default as in the
 *            seed), x_t = sqrt(acp[t]) x0 + sqrt(1 - acp[t]) target, and
 *            the context of a dropped sample replaced by the empty-prompt
 *            embedding;
 *   weights: w[n] = m(t[n]) / (N * grad_accum), where m = min(snr, γ)/snr
 *            (for ε; see sdw_loss_min_snr_weight_for for v and x0) with Min-SNR on (snr = max(acp /
 * max(1 - acp, 1e-6), 1e-6); a NaN or Inf weight becomes 1, as nan_to_num) and 1 off; loss: mse[n]
 * = mean over (C, H, W) of (eps_pred - target)^2, L = sum_n w[n] mse[n], and dL/d eps_pred
 * accumulated for the backward.
 *
 * So L is the seed's `(l * w).mean() / grad_accum`, and summing L over the
 * grad_accum micro-batches of a step gives the step's loss. Noise, timesteps
 * and coins are parameters everywhere (not drawn inside), so a golden can
 * inject PyTorch's.
 */
#ifndef SDW_TRAIN_LOSS_H
#define SDW_TRAIN_LOSS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/rng.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/diffusion/schedule.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_loss_config {
  bool min_snr;                   /* Min-SNR weighting (seed: on) */
  double min_snr_gamma;           /* γ (seed: 5) */
  double cfg_dropout;             /* probability of the empty prompt per sample (seed: 0.05) */
  double noise_offset;            /* strength of the per-channel offset noise (0: off, the seed) */
  int grad_accum;                 /* micro-batches per optimizer step (seed: 2) */
  sdw_prediction_type prediction; /* what the network predicts (seed: epsilon) */
} sdw_loss_config;

/* The seed's defaults: Min-SNR on with γ 5, dropout 0.05, no noise offset,
 * grad_accum 2. */
sdw_loss_config sdw_loss_config_seed(void);
/* SDW_ERR_INVALID_ARGUMENT naming the field: γ <= 0, p outside [0, 1],
 * a negative or non-finite offset, grad_accum < 1. */
sdw_status sdw_loss_config_validate(const sdw_loss_config *cfg);

/* One micro-batch of draws from rng (advanced), in this order: n timesteps
 * (uniform integers in [0, num_timesteps) from 32-bit draws), n dropout
 * coins (uniform < cfg_dropout), n*per_sample noise values, and when
 * offset is not NULL n*channels offset values. Host arrays, caller's. */
void sdw_loss_draw(sdw_rng *rng, const sdw_loss_config *cfg, int num_timesteps, int64_t n,
                   int64_t channels, int64_t per_sample, int64_t *timesteps, uint8_t *drop,
                   float *noise, float *offset);

/* eps[n, c, s] = noise + noise_offset * offset[n, c] (offset NULL or
 * noise_offset 0: a copy of noise), x_t from x0, t and eps, and the target
 * of the prediction type: eps itself, v = sqrt(acp) eps - sqrt(1 - acp) x0,
 * or x0 (host arrays [n, channels, spatial]; x_t may alias x0, target may
 * alias noise). A timestep outside the schedule is SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_loss_prepare(const sdw_noise_schedule *s, const sdw_loss_config *cfg,
                            const float *x0, const float *noise, const float *offset,
                            const int64_t *t, int64_t n, int64_t channels, int64_t spatial,
                            float *target, float *x_t);

/* context[n] = uncond for every n with drop[n] != 0 (host, in place;
 * context [n, row], uncond [row]). Returns how many were replaced. */
int64_t sdw_loss_caption_dropout(const uint8_t *drop, int64_t n, const float *uncond, int64_t row,
                                 float *context);

/* min(snr, γ) / snr of the seed's get_snr at t (1 where that is not finite). */
double sdw_loss_min_snr_weight(const sdw_noise_schedule *s, int64_t t, double gamma);
/* The Min-SNR weight for a prediction type (Hang et al. 2023, as diffusers'
 * train_text_to_image computes it): min(snr, γ) / snr for epsilon,
 * min(snr, γ) / (snr + 1) for v, min(snr, γ) for sample. */
double sdw_loss_min_snr_weight_for(const sdw_noise_schedule *s, sdw_prediction_type type, int64_t t,
                                   double gamma);

/* w[n] = dL/d mse[n] as described above (host [n]). */
sdw_status sdw_loss_weights(const sdw_noise_schedule *s, const sdw_loss_config *cfg,
                            const int64_t *t, int64_t n, float *w);

/* The loss of eps_pred[N, ...] against target[N, ...] (backend tensors) with
 * host weights w[N]: *loss = sum_n w[n] mse[n] (double); mse[n] is written
 * to per_sample (host [N], may be NULL); deps (shaped like eps_pred, may be
 * NULL) += dL/d eps_pred = w[n] * 2 (eps_pred - target) / (elements per
 * sample). Temporaries from arena, released. */
sdw_status sdw_loss_eval(sdw_ctx *ctx, sdw_arena *arena, const sdw_tensor *eps_pred,
                         const sdw_tensor *target, const float *w, double *per_sample, double *loss,
                         sdw_tensor *deps);

#ifdef __cplusplus
}
#endif
#endif
