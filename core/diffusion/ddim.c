/* DDIM, diffusers' and the seed's (see ddim.h). */
#include "core/diffusion/ddim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_ddim_config sdw_ddim_config_diffusers_sd(void) {
  sdw_ddim_config c;
  memset(&c, 0, sizeof c);
  c.flavor = SDW_DDIM_DIFFUSERS;
  c.spacing = SDW_SPACING_LEADING;
  c.steps_offset = 1;
  c.set_alpha_to_one = false;
  c.clamp_pred_x0 = false;
  return c;
}

sdw_ddim_config sdw_ddim_config_seed(void) {
  sdw_ddim_config c;
  memset(&c, 0, sizeof c);
  c.flavor = SDW_DDIM_SEED;
  c.spacing = SDW_SPACING_LEADING;
  c.steps_offset = 0;
  c.set_alpha_to_one = true;
  c.clamp_pred_x0 = false;
  return c;
}

sdw_status sdw_ddim_init(sdw_ddim *d, const sdw_noise_schedule *schedule,
                         const sdw_ddim_config *config, int steps) {
  memset(d, 0, sizeof *d);
  int T = schedule->num_train_timesteps;
  if (steps < 1 || steps > T)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DDIM: %d steps is outside [1, %d]", steps, T);
  d->timesteps = malloc(sizeof(int64_t) * (size_t)steps);
  if (!d->timesteps) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "DDIM: out of memory");
  d->schedule = schedule;
  d->config = *config;
  d->num_inference_steps = steps;
  sdw_timestep_spacing spacing =
      config->flavor == SDW_DDIM_SEED ? SDW_SPACING_LEADING : config->spacing;
  int offset = config->flavor == SDW_DDIM_SEED ? 0 : config->steps_offset;
  double *ts = malloc(sizeof(double) * (size_t)steps);
  if (!ts) {
    sdw_ddim_free(d);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "DDIM: out of memory");
  }
  sdw_spacing_timesteps(spacing, T, T, steps, steps, offset, true, ts);
  for (int i = 0; i < steps; i++) {
    int64_t t = (int64_t)ts[i];
    if (t < 0 || t >= T) {
      free(ts);
      sdw_ddim_free(d);
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "DDIM: timestep %lld of %d steps falls outside [0, %d) (steps_offset %d)",
                      (long long)t, steps, T, offset);
    }
    d->timesteps[i] = t;
  }
  free(ts);
  return SDW_OK;
}

void sdw_ddim_free(sdw_ddim *d) {
  if (!d) return;
  free(d->timesteps);
  memset(d, 0, sizeof *d);
}

void sdw_ddim_alphas(const sdw_ddim *d, int64_t t, double *alpha_t, double *alpha_prev) {
  const sdw_noise_schedule *s = d->schedule;
  int64_t prev = t - s->num_train_timesteps / d->num_inference_steps;
  *alpha_t = s->acp[t];
  if (prev >= 0)
    *alpha_prev = s->acp[prev];
  else if (d->config.flavor == SDW_DDIM_SEED || d->config.set_alpha_to_one)
    *alpha_prev = 1.0;
  else
    *alpha_prev = s->acp[0];
}

sdw_status sdw_ddim_step(const sdw_ddim *d, int64_t t, const float *eps, const float *x, double eta,
                         const float *noise, float *x_prev, float *pred_x0, int64_t n) {
  if (t < 0 || t >= d->schedule->num_train_timesteps)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DDIM: timestep %lld is outside [0, %d)",
                    (long long)t, d->schedule->num_train_timesteps);
  if (eta < 0.0) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DDIM: eta %g is negative", eta);
  if (eta > 0.0 && !noise)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DDIM: eta %g needs variance noise", eta);
  double a_t, a_prev;
  sdw_ddim_alphas(d, t, &a_t, &a_prev);
  double sqrt_a_t = sqrt(a_t), sqrt_b_t = sqrt(1.0 - a_t), sqrt_a_prev = sqrt(a_prev);
  double dir, sd;
  bool clamp = false;
  if (d->config.flavor == SDW_DDIM_DIFFUSERS) {
    double var = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
    sd = eta * sqrt(var);
    /* NaN for eta > 1 at some steps, as in diffusers (sqrt of a negative). */
    dir = sqrt(1.0 - a_prev - sd * sd);
  } else {
    double var = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
    sd = eta * sqrt(var > 0.0 ? var : 0.0);
    dir = sqrt(1.0 - a_prev);
    clamp = d->config.clamp_pred_x0;
  }
  bool add_noise = eta > 0.0;
  for (int64_t i = 0; i < n; i++) {
    double e = eps[i];
    double x0 = ((double)x[i] - sqrt_b_t * e) / sqrt_a_t;
    if (clamp) x0 = x0 < -1.0 ? -1.0 : (x0 > 1.0 ? 1.0 : x0);
    double v = sqrt_a_prev * x0 + dir * e;
    if (add_noise) v += sd * (double)noise[i];
    if (pred_x0) pred_x0[i] = (float)x0;
    x_prev[i] = (float)v;
  }
  return SDW_OK;
}
