/* diffusers DPMSolverMultistepScheduler, DPM++ 2M (see dpmpp.h). */
#include "core/diffusion/dpmpp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_dpmpp_config sdw_dpmpp_config_default(void) {
  sdw_dpmpp_config c;
  memset(&c, 0, sizeof c);
  c.spacing = SDW_SPACING_LINSPACE;
  c.steps_offset = 0;
  c.karras = false;
  c.lower_order_final = true;
  return c;
}

sdw_status sdw_dpmpp_init(sdw_dpmpp *d, const sdw_noise_schedule *schedule,
                          const sdw_dpmpp_config *config, int steps, int64_t numel) {
  memset(d, 0, sizeof *d);
  int T = schedule->num_train_timesteps;
  if (steps < 1 || steps > T || (config->karras && steps < 2))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DPM++ 2M: %d steps is outside [%d, %d]", steps,
                    config->karras ? 2 : 1, T);
  if (numel < 0) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DPM++ 2M: negative size");
  d->config = *config;
  d->num_inference_steps = steps;
  d->numel = numel;
  d->timesteps = malloc(sizeof(double) * (size_t)steps);
  d->sigmas = malloc(sizeof(double) * (size_t)(steps + 1));
  d->prev_x0 = malloc(sizeof(double) * (size_t)(numel > 0 ? numel : 1));
  double *table = malloc(sizeof(double) * (size_t)T);
  double *log_table = malloc(sizeof(double) * (size_t)T);
  if (!d->timesteps || !d->sigmas || !d->prev_x0 || !table || !log_table) {
    free(table);
    free(log_table);
    sdw_dpmpp_free(d);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "DPM++ 2M: out of memory");
  }
  sdw_noise_schedule_sigmas(schedule, table);
  sdw_spacing_timesteps(config->spacing, T, T, steps, steps + 1, config->steps_offset, true,
                        d->timesteps);
  sdw_status st = SDW_OK;
  for (int i = 0; i < steps; i++)
    if (!(d->timesteps[i] >= 0.0 && d->timesteps[i] <= T - 1))
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "DPM++ 2M: timestep %g of %d steps is outside [0, %d] (steps_offset %d)",
                    d->timesteps[i], steps, T - 1, config->steps_offset);
  if (st == SDW_OK) {
    if (config->karras) {
      sdw_noise_schedule_log_sigmas(schedule, table, log_table);
      sdw_karras_sigmas(table[0], table[T - 1], steps, d->sigmas);
      for (int i = 0; i < steps; i++)
        d->timesteps[i] = sdw_round_half_even(sdw_sigma_to_t(d->sigmas[i], log_table, T));
      d->sigmas[steps] = d->sigmas[steps - 1];
    } else {
      for (int i = 0; i < steps; i++)
        d->sigmas[i] = sdw_np_interp_unit(d->timesteps[i], table, T);
      d->sigmas[steps] = table[0];
    }
    for (int i = 0; i <= steps; i++)
      d->sigmas[i] = (double)(float)d->sigmas[i];
  }
  free(table);
  free(log_table);
  if (st != SDW_OK) sdw_dpmpp_free(d);
  return st;
}

void sdw_dpmpp_free(sdw_dpmpp *d) {
  if (!d) return;
  free(d->timesteps);
  free(d->sigmas);
  free(d->prev_x0);
  memset(d, 0, sizeof *d);
}

/* alpha, sig and lambda of a sigma (diffusers' _sigma_to_alpha_sigma_t). */
static void sigma_terms(double sigma, double *alpha, double *sig, double *lambda) {
  *alpha = 1.0 / sqrt(sigma * sigma + 1.0);
  *sig = sigma * *alpha;
  *lambda = log(*alpha) - log(*sig);
}

sdw_status sdw_dpmpp_step(sdw_dpmpp *d, int i, const float *eps, float *x, float *pred_x0) {
  int n = d->num_inference_steps;
  if (i != d->next_step || i >= n)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "DPM++ 2M: step %d called, but the next step is %d of %d", i, d->next_step, n);
  double alpha_s0, sig_s0, lambda_s0, alpha_t, sig_t, lambda_t;
  sigma_terms(d->sigmas[i], &alpha_s0, &sig_s0, &lambda_s0);
  sigma_terms(d->sigmas[i + 1], &alpha_t, &sig_t, &lambda_t);
  double h = lambda_t - lambda_s0;
  bool lower_order_final = i == n - 1 && d->config.lower_order_final && n < 15;
  bool first_order = d->lower_order_nums < 1 || lower_order_final;
  double c_x = sig_t / sig_s0;
  double c_m = alpha_t * (exp(-h) - 1.0);
  double c_d1 = 0.0;
  if (!first_order) {
    double alpha_s1, sig_s1, lambda_s1;
    sigma_terms(d->sigmas[i - 1], &alpha_s1, &sig_s1, &lambda_s1);
    double h0 = lambda_s0 - lambda_s1;
    double r0 = h0 / h;
    c_d1 = 1.0 / r0; /* D1 = (m0 - m1) / r0 */
  }
  for (int64_t k = 0; k < d->numel; k++) {
    double xs = x[k];
    double m0 = (xs - sig_s0 * (double)eps[k]) / alpha_s0;
    double v;
    if (first_order) {
      v = c_x * xs - c_m * m0;
    } else {
      double d1 = c_d1 * (m0 - d->prev_x0[k]);
      v = c_x * xs - c_m * m0 - 0.5 * c_m * d1;
    }
    d->prev_x0[k] = m0;
    if (pred_x0) pred_x0[k] = (float)m0;
    x[k] = (float)v;
  }
  if (d->lower_order_nums < 2) d->lower_order_nums++;
  d->next_step = i + 1;
  return SDW_OK;
}
