/* DDIM, in two flavours (epsilon prediction):
 *
 * SDW_DDIM_DIFFUSERS: diffusers DDIMScheduler (v0.25.1) with SD 1.x settings
 *   by default: steps_offset 1, timestep_spacing "leading",
 *   set_alpha_to_one false, clip_sample false.
 *     timesteps: leading  arange(n) * (T//n), reversed, + steps_offset
 *                trailing round(arange(T, 0, -T/n)) - 1
 *                linspace round(linspace(0, T-1, n)), reversed
 *     step(t):  prev = t - T//n (for every spacing, as diffusers does)
 *               a_t = acp[t]; a_prev = acp[prev] if prev >= 0 else
 *               (set_alpha_to_one ? 1 : acp[0])
 *               x0  = (x - sqrt(1-a_t) eps) / sqrt(a_t)
 *               var = (1-a_prev)/(1-a_t) * (1 - a_t/a_prev); std = eta sqrt(var)
 *               x'  = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps + std noise
 *
 * SDW_DDIM_SEED: the seed project's DDIMScheduler (src/model.py @00f19e1,
 *   SEED.md 1.11) as it is: timesteps arange(n) * (T//n) reversed (no
 *   offset); a_prev = 1 when prev < 0; optional clamp of x0 to [-1, 1];
 *     x' = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
 *   and for eta > 0 it ADDS sigma noise without shrinking the direction term:
 *     x' += eta sqrt(max(0, (1-a_prev)/(1-a_t) (1 - a_t/a_prev))) noise
 *
 * Scalar math in double from the schedule's acp table; per-element math in
 * double with one rounding to float (see schedule.h). The variance noise
 * is supplied by the caller (so any generator, e.g. torch_rng, can feed it).
 */
#ifndef SDW_DIFFUSION_DDIM_H
#define SDW_DIFFUSION_DDIM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/diffusion/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_ddim_flavor {
  SDW_DDIM_DIFFUSERS = 0,
  SDW_DDIM_SEED,
} sdw_ddim_flavor;

typedef struct sdw_ddim_config {
  sdw_ddim_flavor flavor;
  sdw_timestep_spacing spacing; /* diffusers flavour only */
  int steps_offset;             /* diffusers flavour only (leading spacing) */
  bool set_alpha_to_one;        /* diffusers flavour only */
  bool clamp_pred_x0;           /* seed flavour only (its clamp_pred_x0) */
} sdw_ddim_config;

/* diffusers DDIMScheduler with SD 1.x's config: leading, offset 1,
 * set_alpha_to_one false. */
sdw_ddim_config sdw_ddim_config_diffusers_sd(void);
/* The seed's DDIMScheduler(clamp_pred_x0=False). */
sdw_ddim_config sdw_ddim_config_seed(void);

typedef struct sdw_ddim {
  const sdw_noise_schedule *schedule; /* borrowed; must outlive the scheduler */
  sdw_ddim_config config;
  int num_inference_steps;
  int64_t *timesteps; /* [num_inference_steps], owned, descending */
} sdw_ddim;

/* set_timesteps(steps). SDW_ERR_INVALID_ARGUMENT when steps is outside
 * [1, T] (diffusers raises for steps > T) or a timestep would fall outside
 * [0, T) (e.g. leading with an offset that pushes the first past T-1).
 * Free with sdw_ddim_free. */
sdw_status sdw_ddim_init(sdw_ddim *d, const sdw_noise_schedule *schedule,
                         const sdw_ddim_config *config, int steps);
void sdw_ddim_free(sdw_ddim *d);

/* The alphas one step from timestep t uses (prev < 0 gives the final alpha). */
void sdw_ddim_alphas(const sdw_ddim *d, int64_t t, double *alpha_t, double *alpha_prev);

/* One step from timestep t (a value from d->timesteps, or any t in [0, T)):
 * eps, x, noise, x_prev, pred_x0: [n] each (the flattened N C H W latents).
 * noise is read only when eta > 0 and may be NULL otherwise; pred_x0 may be
 * NULL. x_prev may alias x or eps. */
sdw_status sdw_ddim_step(const sdw_ddim *d, int64_t t, const float *eps, const float *x, double eta,
                         const float *noise, float *x_prev, float *pred_x0, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
