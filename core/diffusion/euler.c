/* diffusers EulerDiscreteScheduler (see euler.h). */
#include "core/diffusion/euler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_euler_config sdw_euler_config_default(void) {
  sdw_euler_config c;
  memset(&c, 0, sizeof c);
  c.spacing = SDW_SPACING_LINSPACE;
  c.steps_offset = 0;
  c.karras = false;
  return c;
}

sdw_status sdw_euler_init(sdw_euler *e, const sdw_noise_schedule *schedule,
                          const sdw_euler_config *config, int steps) {
  memset(e, 0, sizeof *e);
  int T = schedule->num_train_timesteps;
  if (steps < 1 || steps > T || (config->karras && steps < 2))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "Euler: %d steps is outside [%d, %d]", steps,
                    config->karras ? 2 : 1, T);
  e->config = *config;
  e->num_inference_steps = steps;
  e->timesteps = malloc(sizeof(double) * (size_t)steps);
  e->sigmas = malloc(sizeof(double) * (size_t)(steps + 1));
  double *table = malloc(sizeof(double) * (size_t)T);
  double *log_table = malloc(sizeof(double) * (size_t)T);
  if (!e->timesteps || !e->sigmas || !table || !log_table) {
    free(table);
    free(log_table);
    sdw_euler_free(e);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "Euler: out of memory");
  }
  sdw_noise_schedule_sigmas(schedule, table);
  sdw_spacing_timesteps(config->spacing, T, T, steps, steps, config->steps_offset, false,
                        e->timesteps);
  sdw_status st = SDW_OK;
  for (int i = 0; i < steps; i++) {
    /* Euler keeps its timesteps as float32. */
    e->timesteps[i] = (double)(float)e->timesteps[i];
    if (!(e->timesteps[i] >= 0.0 && e->timesteps[i] <= T - 1))
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "Euler: timestep %g of %d steps is outside [0, %d] (steps_offset %d)",
                    e->timesteps[i], steps, T - 1, config->steps_offset);
  }
  if (st == SDW_OK) {
    for (int i = 0; i < steps; i++)
      e->sigmas[i] = sdw_np_interp_unit(e->timesteps[i], table, T);
    if (config->karras) {
      sdw_noise_schedule_log_sigmas(schedule, table, log_table);
      double smin = e->sigmas[steps - 1], smax = e->sigmas[0];
      sdw_karras_sigmas(smin, smax, steps, e->sigmas);
      for (int i = 0; i < steps; i++)
        e->timesteps[i] = (double)(float)sdw_sigma_to_t(e->sigmas[i], log_table, T);
    }
    for (int i = 0; i < steps; i++)
      e->sigmas[i] = (double)(float)e->sigmas[i];
    e->sigmas[steps] = 0.0;
    double smax = 0.0;
    for (int i = 0; i <= steps; i++)
      smax = e->sigmas[i] > smax ? e->sigmas[i] : smax;
    e->init_noise_sigma = config->spacing == SDW_SPACING_LEADING ? sqrt(smax * smax + 1.0) : smax;
  }
  free(table);
  free(log_table);
  if (st != SDW_OK) sdw_euler_free(e);
  return st;
}

void sdw_euler_free(sdw_euler *e) {
  if (!e) return;
  free(e->timesteps);
  free(e->sigmas);
  memset(e, 0, sizeof *e);
}

void sdw_euler_scale_input(const sdw_euler *e, int i, const float *x, float *x_in, int64_t n) {
  double s = e->sigmas[i];
  double d = sqrt(s * s + 1.0);
  for (int64_t k = 0; k < n; k++)
    x_in[k] = (float)((double)x[k] / d);
}

void sdw_euler_step(const sdw_euler *e, int i, const float *eps, float *x, float *pred_x0,
                    int64_t n) {
  double sigma = e->sigmas[i];
  double dt = e->sigmas[i + 1] - sigma;
  for (int64_t k = 0; k < n; k++) {
    double xs = x[k];
    double x0 = xs - sigma * (double)eps[k];
    double derivative = (xs - x0) / sigma;
    if (pred_x0) pred_x0[k] = (float)x0;
    x[k] = (float)(xs + derivative * dt);
  }
}
