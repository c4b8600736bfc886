/* DDPM noise schedule (see schedule.h). */
#include "core/diffusion/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_schedule_config sdw_schedule_config_sd(void) {
  sdw_schedule_config c;
  c.num_train_timesteps = 1000;
  c.beta_schedule = SDW_BETA_SCALED_LINEAR;
  c.beta_start = 0.00085;
  c.beta_end = 0.012;
  c.precision = SDW_SCHEDULE_F32;
  return c;
}

/* torch.linspace(start, end, steps, dtype=float32) on the CPU as torch's
 * AVX2 kernel computes it (linspace_kernel with cpu_serial_kernel_vec):
 *   step = (end - start) / (steps - 1)                          (float)
 *   blocks of 8 while 16 elements remain in the vectorised part:
 *     base = idx < steps/2 ? start + step*idx : end - step*(steps-idx-1)
 *     out[idx + k] = base + k*step                 (Vectorized::arange)
 *   the remaining elements one by one with the same two-sided formula.
 * In torch's binary the base and the scalar formula are fused multiply-adds
 * (GCC contracts them; torch is built in GNU C++ mode) while base + k*step
 * is a separate product and sum. Matched bit for bit against torch 1.13 for
 * the SD schedule, the linear one and 777 steps (test_schedule). */
static void torch_linspace_f32(float start, float end, int steps, float *out) {
  if (steps == 1) {
    out[0] = start;
    return;
  }
  float step = (end - start) / (float)(steps - 1);
  int half = steps / 2;
  int nvec = steps / 16 * 16;
  for (int idx = 0; idx < nvec; idx += 8) {
    float base =
        idx < half ? fmaf(step, (float)idx, start) : fmaf(-step, (float)(steps - idx - 1), end);
    for (int k = 0; k < 8; k++) {
      float ks = (float)k * step; /* a separate product: not contracted */
      out[idx + k] = base + ks;
    }
  }
  for (int idx = nvec; idx < steps; idx++)
    out[idx] =
        idx < half ? fmaf(step, (float)idx, start) : fmaf(-step, (float)(steps - idx - 1), end);
}

static void linspace_f64(double start, double end, int steps, double *out) {
  /* torch.linspace(float64): the same two-sided formula in double; the
   * float64 tables only need to be accurate, not a particular rounding. */
  double step = steps > 1 ? (end - start) / (steps - 1) : 0.0;
  int half = steps / 2;
  for (int i = 0; i < steps; i++)
    out[i] = i < half ? start + step * i : end - step * (steps - i - 1);
}

sdw_status sdw_noise_schedule_init(sdw_noise_schedule *s, const sdw_schedule_config *config) {
  memset(s, 0, sizeof *s);
  int T = config->num_train_timesteps;
  if (T < 2 || T > 100000)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "num_train_timesteps %d is outside [2, 100000]", T);
  if (!(config->beta_start > 0.0 && config->beta_end < 1.0 &&
        config->beta_start <= config->beta_end))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "betas %g .. %g must satisfy 0 < beta_start <= beta_end < 1",
                    config->beta_start, config->beta_end);
  if (config->beta_schedule != SDW_BETA_SCALED_LINEAR && config->beta_schedule != SDW_BETA_LINEAR)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "unknown beta schedule %d",
                    (int)config->beta_schedule);
  s->num_train_timesteps = T;
  s->config = *config;
  s->betas = malloc(sizeof(float) * (size_t)T);
  s->alphas_cumprod = malloc(sizeof(float) * (size_t)T);
  s->betas_f64 = malloc(sizeof(double) * (size_t)T);
  s->alphas_cumprod_f64 = malloc(sizeof(double) * (size_t)T);
  s->acp_f32_as_f64 = malloc(sizeof(double) * (size_t)T);
  if (!s->betas || !s->alphas_cumprod || !s->betas_f64 || !s->alphas_cumprod_f64 ||
      !s->acp_f32_as_f64) {
    sdw_noise_schedule_free(s);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "noise schedule: out of memory");
  }
  if (config->beta_schedule == SDW_BETA_SCALED_LINEAR) {
    /* Python computes beta_start**0.5 in double; torch rounds it to float. */
    torch_linspace_f32((float)sqrt(config->beta_start), (float)sqrt(config->beta_end), T, s->betas);
    for (int i = 0; i < T; i++)
      s->betas[i] = s->betas[i] * s->betas[i];
    linspace_f64(sqrt(config->beta_start), sqrt(config->beta_end), T, s->betas_f64);
    for (int i = 0; i < T; i++)
      s->betas_f64[i] = s->betas_f64[i] * s->betas_f64[i];
  } else {
    torch_linspace_f32((float)config->beta_start, (float)config->beta_end, T, s->betas);
    linspace_f64(config->beta_start, config->beta_end, T, s->betas_f64);
  }
  /* torch.cumprod on the CPU accumulates float in double (acc_type). */
  double acc = 1.0, acc64 = 1.0;
  for (int i = 0; i < T; i++) {
    float alpha = 1.0f - s->betas[i];
    acc *= (double)alpha;
    s->alphas_cumprod[i] = (float)acc;
    s->acp_f32_as_f64[i] = (double)s->alphas_cumprod[i];
    acc64 *= 1.0 - s->betas_f64[i];
    s->alphas_cumprod_f64[i] = acc64;
  }
  s->acp = config->precision == SDW_SCHEDULE_F64 ? s->alphas_cumprod_f64 : s->acp_f32_as_f64;
  return SDW_OK;
}

void sdw_noise_schedule_free(sdw_noise_schedule *s) {
  if (!s) return;
  free(s->betas);
  free(s->alphas_cumprod);
  free(s->betas_f64);
  free(s->alphas_cumprod_f64);
  free(s->acp_f32_as_f64);
  memset(s, 0, sizeof *s);
}

static sdw_status check_timestep(const sdw_noise_schedule *s, int64_t t) {
  if (t < 0 || t >= s->num_train_timesteps)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "timestep %lld is outside [0, %d)", (long long)t,
                    s->num_train_timesteps);
  return SDW_OK;
}

sdw_status sdw_noise_schedule_add_noise(const sdw_noise_schedule *s, const float *x0,
                                        const float *noise, const int64_t *t, int64_t batch,
                                        int64_t per_sample, float *out) {
  for (int64_t b = 0; b < batch; b++)
    SDW_TRY(check_timestep(s, t[b]));
  for (int64_t b = 0; b < batch; b++) {
    double a = s->acp[t[b]];
    double ca = sqrt(a), cn = sqrt(1.0 - a);
    const float *xb = x0 + b * per_sample, *nb = noise + b * per_sample;
    float *ob = out + b * per_sample;
    for (int64_t i = 0; i < per_sample; i++)
      ob[i] = (float)(ca * xb[i] + cn * nb[i]);
  }
  return SDW_OK;
}

sdw_status sdw_noise_schedule_snr(const sdw_noise_schedule *s, const int64_t *t, int64_t n,
                                  double *out) {
  for (int64_t i = 0; i < n; i++)
    SDW_TRY(check_timestep(s, t[i]));
  for (int64_t i = 0; i < n; i++) {
    double a = s->acp[t[i]];
    double d = 1.0 - a;
    out[i] = a / (d > 1e-6 ? d : 1e-6);
  }
  return SDW_OK;
}

bool sdw_timestep_spacing_from_name(const char *name, sdw_timestep_spacing *out) {
  static const char *names[] = {"leading", "trailing", "linspace"};
  for (int i = 0; i < 3; i++) {
    if (strcmp(name, names[i]) == 0) {
      *out = (sdw_timestep_spacing)i;
      return true;
    }
  }
  return false;
}

const char *sdw_timestep_spacing_name(sdw_timestep_spacing spacing) {
  switch (spacing) {
  case SDW_SPACING_LEADING: return "leading";
  case SDW_SPACING_TRAILING: return "trailing";
  case SDW_SPACING_LINSPACE: return "linspace";
  }
  return "unknown";
}

double sdw_round_half_even(double x) { return nearbyint(x); /* default mode: to nearest even */ }

double sdw_np_arange_at(double start, double step, int64_t i) {
  if (i == 0) return start;
  double second = start + step;
  if (i == 1) return second;
  double delta = second - start;
  return start + (double)i * delta;
}

double sdw_np_linspace_at(double start, double stop, int64_t num, int64_t i) {
  if (num <= 1) return start;
  if (i == num - 1) return stop;
  double step = (stop - start) / (double)(num - 1);
  return (double)i * step + start;
}

void sdw_spacing_timesteps(sdw_timestep_spacing spacing, int span, int T, int n, int points,
                           int steps_offset, bool round_linspace, double *out) {
  for (int i = 0; i < n; i++) {
    switch (spacing) {
    case SDW_SPACING_LEADING:
      out[i] = (double)(points - 1 - i) * (double)(span / points) + steps_offset;
      break;
    case SDW_SPACING_TRAILING:
      out[i] = sdw_round_half_even(sdw_np_arange_at(span, -((double)T / n), i)) - 1.0;
      break;
    case SDW_SPACING_LINSPACE: {
      double v = sdw_np_linspace_at(0.0, span - 1, points, points - 1 - i);
      out[i] = round_linspace ? sdw_round_half_even(v) : v;
      break;
    }
    }
  }
}

void sdw_noise_schedule_sigmas(const sdw_noise_schedule *s, double *out) {
  int T = s->num_train_timesteps;
  for (int i = 0; i < T; i++) {
    if (s->config.precision == SDW_SCHEDULE_F64) {
      double a = s->alphas_cumprod_f64[i];
      out[i] = sqrt((1.0 - a) / a);
    } else {
      float a = s->alphas_cumprod[i];
      float num = 1.0f - a;
      float q = num / a;
      out[i] = (double)sqrtf(q);
    }
  }
}

void sdw_noise_schedule_log_sigmas(const sdw_noise_schedule *s, const double *sigmas, double *out) {
  int T = s->num_train_timesteps;
  for (int i = 0; i < T; i++)
    out[i] =
        s->config.precision == SDW_SCHEDULE_F64 ? log(sigmas[i]) : (double)logf((float)sigmas[i]);
}

double sdw_np_interp_unit(double x, const double *fp, int len) {
  if (!(x >= 0.0)) return fp[0]; /* left of the grid (and NaN, never given) */
  if (x >= (double)(len - 1)) return fp[len - 1];
  int j = (int)x; /* the grid point at or below x */
  if ((double)j == x) return fp[j];
  double slope = (fp[j + 1] - fp[j]) / 1.0;
  return slope * (x - (double)j) + fp[j];
}

void sdw_karras_sigmas(double sigma_min, double sigma_max, int n, double *out) {
  const double rho = 7.0;
  double min_inv_rho = pow(sigma_min, 1.0 / rho);
  double max_inv_rho = pow(sigma_max, 1.0 / rho);
  for (int i = 0; i < n; i++) {
    double ramp = sdw_np_linspace_at(0.0, 1.0, n, i);
    double d = min_inv_rho - max_inv_rho;
    double v = max_inv_rho + ramp * d;
    out[i] = pow(v, rho);
  }
}

double sdw_sigma_to_t(double sigma, const double *log_sigmas, int T) {
  double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
  /* low_idx: the last index whose log sigma is <= log_sigma (0 when none),
   * at most T - 2 (np.cumsum(dists >= 0).argmax().clip(max=T-2)). */
  int low = 0;
  for (int j = 0; j < T; j++)
    if (log_sigma - log_sigmas[j] >= 0.0) low = j;
  if (low > T - 2) low = T - 2;
  double lo = log_sigmas[low], hi = log_sigmas[low + 1];
  double w = (lo - log_sigma) / (lo - hi);
  w = w < 0.0 ? 0.0 : (w > 1.0 ? 1.0 : w);
  return (1.0 - w) * low + w * (low + 1);
}

bool sdw_prediction_type_from_name(const char *name, sdw_prediction_type *out) {
  static const char *const names[] = {"epsilon", "v_prediction", "sample"};
  for (int i = 0; i < 3; i++)
    if (strcmp(name, names[i]) == 0) {
      *out = (sdw_prediction_type)i;
      return true;
    }
  return false;
}

const char *sdw_prediction_type_name(sdw_prediction_type type) {
  switch (type) {
  case SDW_PREDICT_V: return "v_prediction";
  case SDW_PREDICT_SAMPLE: return "sample";
  default: return "epsilon";
  }
}

double sdw_noise_schedule_acp_at(const sdw_noise_schedule *s, double t) {
  const int T = s->num_train_timesteps;
  if (!(t > 0.0)) t = 0.0; /* NaN too */
  if (t > T - 1) t = T - 1;
  const int lo = (int)floor(t);
  if ((double)lo == t) return s->acp[lo];
  const double a0 = s->acp[lo], a1 = s->acp[lo + 1], f = t - lo;
  const double s0 = sqrt((1.0 - a0) / a0), s1 = sqrt((1.0 - a1) / a1);
  const double sigma = s0 + f * (s1 - s0);
  return 1.0 / (1.0 + sigma * sigma);
}

void sdw_prediction_to_epsilon(sdw_prediction_type type, double acp, const float *x_t,
                               const float *pred, int64_t n, float *out) {
  const double ca = sqrt(acp), cn = sqrt(1.0 - acp);
  switch (type) {
  case SDW_PREDICT_V:
    for (int64_t i = 0; i < n; i++)
      out[i] = (float)(ca * pred[i] + cn * x_t[i]);
    break;
  case SDW_PREDICT_SAMPLE: {
    /* at acp = 1 (no noise) any epsilon is consistent: call it 0 */
    const double inv = cn > 0.0 ? 1.0 / cn : 0.0;
    for (int64_t i = 0; i < n; i++)
      out[i] = (float)((x_t[i] - ca * pred[i]) * inv);
    break;
  }
  default:
    if (out != pred) memmove(out, pred, (size_t)n * sizeof *out);
  }
}
