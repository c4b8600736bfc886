/* The diffusion training loss: draws, inputs, Min-SNR weights, ε-MSE
 * (loss.h). */
#include "core/train/loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_loss_config sdw_loss_config_seed(void) {
  return (sdw_loss_config){.min_snr = true,
                           .min_snr_gamma = 5.0,
                           .cfg_dropout = 0.05,
                           .noise_offset = 0.0,
                           .grad_accum = 2,
                           .prediction = SDW_PREDICT_EPSILON};
}

sdw_status sdw_loss_config_validate(const sdw_loss_config *cfg) {
  if (cfg->min_snr && !(cfg->min_snr_gamma > 0.0 && isfinite(cfg->min_snr_gamma)))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "min_snr_gamma %g must be a positive number",
                    cfg->min_snr_gamma);
  if (!(cfg->cfg_dropout >= 0.0 && cfg->cfg_dropout <= 1.0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "cfg_dropout %g must lie in [0, 1]",
                    cfg->cfg_dropout);
  if (!(cfg->noise_offset >= 0.0 && isfinite(cfg->noise_offset)))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "noise_offset %g must be a non-negative number",
                    cfg->noise_offset);
  if (cfg->grad_accum < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "grad_accum %d must be at least 1", cfg->grad_accum);
  return SDW_OK;
}

void sdw_loss_draw(sdw_rng *rng, const sdw_loss_config *cfg, int num_timesteps, int64_t n,
                   int64_t channels, int64_t per_sample, int64_t *timesteps, uint8_t *drop,
                   float *noise, float *offset) {
  SDW_ASSERT(num_timesteps >= 1 && n >= 0);
  /* timesteps: (u32 * T) >> 32, an unbiased-enough map of 32 random bits
   * onto [0, T) (bias < T / 2^32) */
  uint32_t *bits = malloc((size_t)(n ? n : 1) * sizeof *bits);
  SDW_ASSERT_MSG(bits != NULL, "out of host memory drawing timesteps");
  sdw_rng_fill_u32(bits, (size_t)n, rng->seed, rng->subsequence, rng->offset);
  rng->offset += (uint64_t)n;
  for (int64_t i = 0; i < n; i++)
    timesteps[i] = (int64_t)(((uint64_t)bits[i] * (uint64_t)num_timesteps) >> 32);
  free(bits);
  float *u = malloc((size_t)(n ? n : 1) * sizeof *u);
  SDW_ASSERT_MSG(u != NULL, "out of host memory drawing dropout");
  sdw_rng_uniform(rng, u, (size_t)n);
  for (int64_t i = 0; i < n; i++)
    drop[i] = (double)u[i] < cfg->cfg_dropout;
  free(u);
  sdw_rng_normal(rng, noise, (size_t)(n * per_sample));
  if (offset) sdw_rng_normal(rng, offset, (size_t)(n * channels));
}

sdw_status sdw_loss_prepare(const sdw_noise_schedule *s, const sdw_loss_config *cfg,
                            const float *x0, const float *noise, const float *offset,
                            const int64_t *t, int64_t n, int64_t channels, int64_t spatial,
                            float *target, float *x_t) {
  const int64_t per = channels * spatial;
  if (target != noise) memmove(target, noise, (size_t)(n * per) * sizeof *target);
  if (offset && cfg->noise_offset != 0.0) {
    const float k = (float)cfg->noise_offset;
    for (int64_t i = 0; i < n * channels; i++) {
      const float add = k * offset[i];
      float *row = target + i * spatial;
      for (int64_t j = 0; j < spatial; j++)
        row[j] += add;
    }
  }
  if (cfg->prediction == SDW_PREDICT_EPSILON)
    return sdw_noise_schedule_add_noise(s, x0, target, t, n, per, x_t);
  /* v and x0 targets need x0 and eps after x_t (which may overwrite x0) */
  float *x0_copy = malloc((size_t)(n * per) * sizeof *x0_copy);
  if (!x0_copy) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the targets");
  memcpy(x0_copy, x0, (size_t)(n * per) * sizeof *x0_copy);
  sdw_status st = sdw_noise_schedule_add_noise(s, x0_copy, target, t, n, per, x_t);
  for (int64_t b = 0; st == SDW_OK && b < n; b++) {
    const double a = s->acp[t[b]], ca = sqrt(a), cn = sqrt(1.0 - a);
    float *tb = target + b * per;
    const float *xb = x0_copy + b * per;
    for (int64_t i = 0; i < per; i++)
      tb[i] = cfg->prediction == SDW_PREDICT_V ? (float)(ca * tb[i] - cn * xb[i]) : xb[i];
  }
  free(x0_copy);
  return st;
}

int64_t sdw_loss_caption_dropout(const uint8_t *drop, int64_t n, const float *uncond, int64_t row,
                                 float *context) {
  int64_t replaced = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!drop[i]) continue;
    memcpy(context + i * row, uncond, (size_t)row * sizeof *context);
    replaced++;
  }
  return replaced;
}

double sdw_loss_min_snr_weight(const sdw_noise_schedule *s, int64_t t, double gamma) {
  double snr = 0.0;
  if (sdw_noise_schedule_snr(s, &t, 1, &snr) != SDW_OK) return 1.0;
  if (snr < 1e-6) snr = 1e-6; /* the seed's clamp(min=1e-6) */
  double w = (snr < gamma ? snr : gamma) / snr;
  return isfinite(w) ? w : 1.0;
}

double sdw_loss_min_snr_weight_for(const sdw_noise_schedule *s, sdw_prediction_type type, int64_t t,
                                   double gamma) {
  if (type == SDW_PREDICT_EPSILON) return sdw_loss_min_snr_weight(s, t, gamma);
  double snr = 0.0;
  if (sdw_noise_schedule_snr(s, &t, 1, &snr) != SDW_OK) return 1.0;
  const double m = snr < gamma ? snr : gamma;
  const double w = type == SDW_PREDICT_V ? m / (snr + 1.0) : m;
  return isfinite(w) ? w : 1.0;
}

sdw_status sdw_loss_weights(const sdw_noise_schedule *s, const sdw_loss_config *cfg,
                            const int64_t *t, int64_t n, float *w) {
  SDW_TRY(sdw_loss_config_validate(cfg));
  double scratch = 0.0;
  for (int64_t i = 0; i < n; i++) /* range-checks every timestep */
    SDW_TRY(sdw_noise_schedule_snr(s, &t[i], 1, &scratch));
  const double mean = 1.0 / ((double)n * (double)cfg->grad_accum);
  for (int64_t i = 0; i < n; i++) {
    double m = cfg->min_snr
                   ? sdw_loss_min_snr_weight_for(s, cfg->prediction, t[i], cfg->min_snr_gamma)
                   : 1.0;
    w[i] = (float)(m * mean);
  }
  return SDW_OK;
}

static sdw_status loss_eval_impl(sdw_ctx *ctx, sdw_arena *arena, const sdw_tensor *eps_pred,
                                 const sdw_tensor *target, const float *w, double *per_sample,
                                 double *loss, sdw_tensor *deps) {
  const sdw_backend *ops = ctx->ops;
  const int64_t n = eps_pred->shape[0];
  const sdw_device dev = {ops->device, 0};
  sdw_tensor mse, wt;
  SDW_TRY(sdw_arena_tensor(arena, &mse, SDW_F32, 1, (int64_t[]){n}));
  SDW_TRY(sdw_arena_tensor(arena, &wt, SDW_F32, 1, (int64_t[]){n}));
  mse.device = wt.device = dev;
  SDW_TRY(ops->mse_loss_forward(ctx, eps_pred, target, &mse));
  float *host = malloc((size_t)n * sizeof *host);
  if (!host) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the loss");
  sdw_status st = ops->download(ctx, host, mse.data, (size_t)n * sizeof *host);
  double sum = 0.0;
  for (int64_t i = 0; st == SDW_OK && i < n; i++) {
    if (per_sample) per_sample[i] = host[i];
    sum += (double)w[i] * (double)host[i];
  }
  free(host);
  SDW_TRY(st);
  *loss = sum;
  if (!deps) return SDW_OK;
  SDW_TRY(ops->upload(ctx, wt.data, w, (size_t)n * sizeof *w));
  return ops->mse_loss_backward(ctx, eps_pred, target, &wt, deps);
}

sdw_status sdw_loss_eval(sdw_ctx *ctx, sdw_arena *arena, const sdw_tensor *eps_pred,
                         const sdw_tensor *target, const float *w, double *per_sample, double *loss,
                         sdw_tensor *deps) {
  SDW_ASSERT(sdw_tensor_same_shape(eps_pred, target) && eps_pred->ndim >= 1);
  if (deps) SDW_ASSERT(sdw_tensor_same_shape(deps, eps_pred));
  const size_t mark = sdw_arena_mark(arena);
  sdw_status st = loss_eval_impl(ctx, arena, eps_pred, target, w, per_sample, loss, deps);
  sdw_arena_reset_to(arena, mark);
  return st;
}
