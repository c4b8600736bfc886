/* Euler: diffusers EulerDiscreteScheduler (v0.25.1), epsilon prediction,
 * linear interpolation, discrete timesteps, no churn (s_churn 0: the
 * deterministic sampler of A1111's "Euler").
 *
 *   sigma(t)  = sqrt((1 - acp_t) / acp_t) on the training grid (float32)
 *   timesteps = the spacing's values (linspace: fractional, as float32;
 *               leading / trailing: integers; see schedule.h)
 *   sigmas[i] = np.interp(timesteps[i], arange(T), sigma), sigmas[n] = 0;
 *               with Karras: n Karras sigmas between the first and last of
 *               those, timesteps[i] = _sigma_to_t(sigmas[i]) (fractional);
 *               stored as float32 values like the reference.
 *   init_noise_sigma = max sigma (linspace, trailing) or sqrt(max^2 + 1)
 *   model input at step i: x / sqrt(sigmas[i]^2 + 1)
 *   step i: x0 = x - sigmas[i] eps; x' = x + (x - x0)/sigmas[i] (sigmas[i+1] - sigmas[i])
 * Scalar and per-element math in double, one rounding to float per output.
 */
#ifndef SDW_DIFFUSION_EULER_H
#define SDW_DIFFUSION_EULER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/diffusion/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_euler_config {
  sdw_timestep_spacing spacing; /* diffusers' default: linspace */
  int steps_offset;             /* leading only; SD 1.x configs say 1 */
  bool karras;                  /* use_karras_sigmas */
} sdw_euler_config;

/* linspace, offset 0, no Karras (diffusers' defaults, which SD 1.x's
 * scheduler config leaves alone except steps_offset). */
sdw_euler_config sdw_euler_config_default(void);

typedef struct sdw_euler {
  sdw_euler_config config;
  int num_inference_steps;
  double *timesteps;       /* [n] the model's timestep at each step (float32 values), owned */
  double *sigmas;          /* [n + 1] float32 values, sigmas[n] = 0, owned */
  double init_noise_sigma; /* what unit-variance starting noise is scaled by */
} sdw_euler;

/* set_timesteps(steps); SDW_ERR_INVALID_ARGUMENT for steps outside [1, T]
 * (Karras needs at least 2) or a timestep outside [0, T-1]. */
sdw_status sdw_euler_init(sdw_euler *e, const sdw_noise_schedule *schedule,
                          const sdw_euler_config *config, int steps);
void sdw_euler_free(sdw_euler *e);

/* x_in[n] = x[n] / sqrt(sigmas[i]^2 + 1) (scale_model_input); may alias. */
void sdw_euler_scale_input(const sdw_euler *e, int i, const float *x, float *x_in, int64_t n);

/* Step i (0 <= i < num_inference_steps) in place on x[n] from eps[n];
 * pred_x0[n] (may be NULL) receives x - sigmas[i] eps. */
void sdw_euler_step(const sdw_euler *e, int i, const float *eps, float *x, float *pred_x0,
                    int64_t n);

#ifdef __cplusplus
}
#endif
#endif
