/* The sampling loop, network-agnostic, and classifier-free guidance.
 *
 * The loop sees the network only as a denoise callback,
 *     eps[N,C,H,W] = denoise(user, x_in[N,C,H,W], timestep)
 * and runs DDIM (diffusers' or the seed's), Euler or DPM++ 2M over a latent
 * batch the way diffusers' StableDiffusionPipeline does:
 *     x = noise * init_noise_sigma
 *     for each step i: eps = denoise(scale_model_input(x, t_i), t_i)
 *                      x = step(eps, t_i, x)
 * Latents and callback tensors are CPU float32 (a GPU network uploads x_in
 * and downloads eps itself: 4 x H/8 x W/8 floats per image, nothing next to a
 * UNet pass); the scheduler math is plain loops in double (schedule.h).
 *
 * Classifier-free guidance as the seed (SEED.md 1.12) and diffusers do it is
 * a denoiser wrapped around the network: one batched call on [x; x] whose
 * first half goes with the unconditional context (the empty prompt or the
 * negative prompt) and second half with the prompts, then
 *     eps = eps_u + scale (eps_c - eps_u).
 */
#ifndef SDW_DIFFUSION_SAMPLER_H
#define SDW_DIFFUSION_SAMPLER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/diffusion/ddim.h"
#include "core/diffusion/dpmpp.h"
#include "core/diffusion/euler.h"
#include "core/diffusion/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

/* eps[N,C,H,W] (F32, CPU, written) from x_in[N,C,H,W] (F32, CPU) at
 * `timestep` (an integer for DDIM and DPM++, possibly fractional for Euler).
 * A non-OK status stops the loop and is returned by sdw_sample. */
typedef sdw_status (*sdw_denoise_fn)(void *user, const sdw_tensor *x_in, double timestep,
                                     sdw_tensor *eps);

/* out[n] = standard normal noise (DDIM's variance noise when eta > 0), e.g.
 * sdw_torch_randn to reproduce a torch generator. */
typedef sdw_status (*sdw_noise_fn)(void *user, float *out, int64_t n);

/* After step `step` (1-based) of `steps`, which used `timestep`: x is the
 * current sample, pred_x0 the step's prediction of the clean sample (for
 * previews). Both [N,C,H,W], valid during the call only. */
typedef void (*sdw_progress_fn)(void *user, int step, int steps, double timestep,
                                const sdw_tensor *x, const sdw_tensor *pred_x0);

typedef enum sdw_sampler_kind {
  SDW_SAMPLER_DDIM = 0,
  SDW_SAMPLER_EULER,
  SDW_SAMPLER_DPMPP_2M,
} sdw_sampler_kind;

/* "ddim", "euler", "dpmpp-2m"; false when unknown. */
bool sdw_sampler_kind_from_name(const char *name, sdw_sampler_kind *out);
const char *sdw_sampler_kind_name(sdw_sampler_kind kind);

typedef struct sdw_sampler_config {
  sdw_sampler_kind kind;
  int steps;
  sdw_ddim_config ddim; /* DDIM: flavour (diffusers' or the seed's) and options */
  double eta;           /* DDIM: 0 deterministic; > 0 needs a noise callback */
  sdw_euler_config euler;
  sdw_dpmpp_config dpmpp;
} sdw_sampler_config;

/* kind with `steps` steps, eta 0, diffusers' SD 1.x DDIM settings, Euler
 * and DPM++ defaults (linspace, no Karras). Seed models want
 * cfg.ddim = sdw_ddim_config_seed(). */
sdw_sampler_config sdw_sampler_config_make(sdw_sampler_kind kind, int steps);

typedef struct sdw_sampler_io {
  sdw_denoise_fn denoise; /* required */
  void *denoise_user;
  sdw_noise_fn noise; /* required when DDIM eta > 0 */
  void *noise_user;
  sdw_progress_fn progress; /* optional */
  void *progress_user;
  /* optional: when it reads nonzero before a step, sampling stops with
   * SDW_ERR_INTERRUPTED (latents then hold the last completed step). A
   * signal handler may set it. */
  const atomic_int *cancel;
} sdw_sampler_io;

/* Runs the whole loop in place on latents (CPU F32 [N,C,H,W]): in, unit
 * variance starting noise; out, the sample (what the VAE decodes after
 * dividing by its scaling factor). */
sdw_status sdw_sample(const sdw_noise_schedule *schedule, const sdw_sampler_config *config,
                      const sdw_sampler_io *io, sdw_tensor *latents);

/* --- classifier-free guidance ------------------------------------------------ */

/* out[n] = u[n] + scale (c[n] - u[n]) (double arithmetic, one rounding);
 * out may alias u or c. */
void sdw_cfg_combine(const float *u, const float *c, double scale, float *out, int64_t n);

/* A denoiser that applies guidance around a network callback. */
typedef struct sdw_cfg_denoiser {
  sdw_denoise_fn
      model; /* called on batch 2N = [x; x] (uncond first), or on x (N) when scale == 1 */
  void *model_user;
  double scale;     /* 7.5 in the seed and SD; exactly 1 skips the unconditional half */
  float *in;        /* scratch [2N,C,H,W], owned */
  float *out;       /* scratch [2N,C,H,W], owned */
  int64_t capacity; /* floats in each scratch buffer */
} sdw_cfg_denoiser;

/* Fill *c; scratch grows on first use. Free with sdw_cfg_denoiser_free. */
void sdw_cfg_denoiser_init(sdw_cfg_denoiser *c, sdw_denoise_fn model, void *model_user,
                           double scale);
void sdw_cfg_denoiser_free(sdw_cfg_denoiser *c);

/* The sdw_denoise_fn of a guided denoiser (user = the sdw_cfg_denoiser). */
sdw_status sdw_cfg_denoise(void *user, const sdw_tensor *x_in, double timestep, sdw_tensor *eps);

#ifdef __cplusplus
}
#endif
#endif
