/* DPM++ 2M: diffusers DPMSolverMultistepScheduler (v0.25.1) with
 * algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint",
 * lower_order_final true, epsilon prediction, no thresholding, no lambda
 * clipping (A1111's "DPM++ 2M", and "DPM++ 2M Karras" with Karras sigmas).
 *
 *   sigma(t)  = sqrt((1 - acp_t) / acp_t) on the training grid (float32)
 *   timesteps = the spacing over n + 1 points, first n kept, rounded to
 *               integers (see schedule.h)
 *   sigmas[i] = np.interp(timesteps[i], arange(T), sigma), sigmas[n] = sigma(0);
 *               with Karras: n Karras sigmas between sigma(0) and sigma(T-1),
 *               timesteps[i] = round(_sigma_to_t(sigmas[i])), sigmas[n] = sigmas[n-1];
 *               stored as float32 values like the reference.
 *   alpha(s) = 1/sqrt(s^2+1), sig(s) = s alpha(s), lambda = log alpha - log sig
 *   step i: m0 = (x - sig_i eps) / alpha_i           (the data prediction)
 *     first order (i == 0, or the last step when n < 15):
 *       x' = sig_{i+1}/sig_i x - alpha_{i+1} (e^-h - 1) m0
 *     second order: r0 = (lambda_i - lambda_{i-1}) / h, D1 = (m0 - m1) / r0,
 *       x' = sig_{i+1}/sig_i x - alpha_{i+1} (e^-h - 1) (m0 + D1 / 2)
 *     with h = lambda_{i+1} - lambda_i and m1 the previous step's m0.
 * Starting noise is not scaled (init_noise_sigma 1); the model input is x.
 * Scalar math in double (the reference does it in float32 tensors), per-element
 * math in double with one rounding to float per output.
 */
#ifndef SDW_DIFFUSION_DPMPP_H
#define SDW_DIFFUSION_DPMPP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/diffusion/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_dpmpp_config {
  sdw_timestep_spacing spacing; /* diffusers' default: linspace */
  int steps_offset;             /* leading only */
  bool karras;                  /* use_karras_sigmas */
  bool lower_order_final;       /* first order on the last step when n < 15 (default true) */
} sdw_dpmpp_config;

sdw_dpmpp_config sdw_dpmpp_config_default(void);

typedef struct sdw_dpmpp {
  sdw_dpmpp_config config;
  int num_inference_steps;
  double *timesteps; /* [n] integers, owned */
  double *sigmas;    /* [n + 1] float32 values, owned */
  double *prev_x0;   /* [numel] the previous step's data prediction, owned */
  int64_t numel;     /* latent elements per step */
  int lower_order_nums;
  int next_step; /* the step index the next sdw_dpmpp_step call must be */
} sdw_dpmpp;

/* set_timesteps(steps) for latents of numel elements. SDW_ERR_INVALID_ARGUMENT
 * for steps outside [1, T] (Karras needs at least 2) or a timestep outside
 * [0, T). */
sdw_status sdw_dpmpp_init(sdw_dpmpp *d, const sdw_noise_schedule *schedule,
                          const sdw_dpmpp_config *config, int steps, int64_t numel);
void sdw_dpmpp_free(sdw_dpmpp *d);

/* Step i in place on x[numel] from eps[numel]; steps must come in order
 * 0, 1, ..., n-1 (the solver keeps the previous prediction): another i is
 * SDW_ERR_INVALID_ARGUMENT. pred_x0[numel] may be NULL. */
sdw_status sdw_dpmpp_step(sdw_dpmpp *d, int i, const float *eps, float *x, float *pred_x0);

#ifdef __cplusplus
}
#endif
#endif
