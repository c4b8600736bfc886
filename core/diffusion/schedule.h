/* DDPM noise schedule: betas, alphas_cumprod, add_noise, SNR.
 *
 * The references keep the schedule in float32 tensors:
 *   betas = torch.linspace(sqrt(b0), sqrt(b1), T, dtype=float32) ** 2   (scaled_linear)
 *   betas = torch.linspace(b0, b1, T, dtype=float32)                    (linear)
 *   alphas_cumprod = torch.cumprod(1 - betas, 0)
 * (diffusers' DDPM/DDIM/Euler/DPM schedulers and the seed's DDPMScheduler /
 * DDIMScheduler alike). Both are reproduced bit for bit: torch's CPU
 * linspace (its vectorised form: 8-wide blocks from a fused start + step*i,
 * the 8-element remainder from the end) and its cumprod (a double
 * accumulator rounded to float32 at each element). A float64 version of the
 * same formulas is kept beside them.
 *
 * Every scheduler reads alphas_cumprod through `acp`, a double table that
 * holds either the float32 values (default: what diffusers and the seed
 * compute with) or the float64 ones; all other scalar math is double.
 *
 * Elementwise work is plain loops over CPU float arrays with double
 * arithmetic: latents are small (4 x H/8 x W/8 per image) next to a UNet
 * pass, so there is nothing to gain from the op layer here, and one rounding
 * per output keeps the schedulers within 1e-7 of a float64 reference.
 */
#ifndef SDW_DIFFUSION_SCHEDULE_H
#define SDW_DIFFUSION_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_beta_schedule {
  SDW_BETA_SCALED_LINEAR = 0, /* linspace(sqrt(b0), sqrt(b1))^2: SD 1.x and the seed */
  SDW_BETA_LINEAR,            /* linspace(b0, b1) */
} sdw_beta_schedule;

typedef enum sdw_schedule_precision {
  SDW_SCHEDULE_F32 = 0, /* alphas_cumprod as the references hold it (default) */
  SDW_SCHEDULE_F64,     /* the float64 version */
} sdw_schedule_precision;

typedef struct sdw_schedule_config {
  int num_train_timesteps; /* 1000 */
  sdw_beta_schedule beta_schedule;
  double beta_start; /* 0.00085 */
  double beta_end;   /* 0.012 */
  sdw_schedule_precision precision;
} sdw_schedule_config;

/* SD 1.x / seed defaults: 1000 steps, scaled_linear 0.00085 .. 0.012, f32. */
sdw_schedule_config sdw_schedule_config_sd(void);

/* Tables are owned by the schedule (sdw_noise_schedule_free). */
typedef struct sdw_noise_schedule {
  int num_train_timesteps;    /* T */
  sdw_schedule_config config; /* as given */
  float *betas;               /* [T] float32, torch's values */
  float *alphas_cumprod;      /* [T] float32, torch's values */
  double *betas_f64;          /* [T] */
  double *alphas_cumprod_f64; /* [T] */
  const double *acp;          /* [T] the table schedulers use (see precision) */
  double *acp_f32_as_f64;     /* [T] backing store of acp for SDW_SCHEDULE_F32 */
} sdw_noise_schedule;

/* SDW_ERR_INVALID_ARGUMENT for T < 2 or > 100000, a beta outside (0, 1) or
 * beta_end < beta_start; SDW_ERR_OUT_OF_MEMORY. */
sdw_status sdw_noise_schedule_init(sdw_noise_schedule *s, const sdw_schedule_config *config);
void sdw_noise_schedule_free(sdw_noise_schedule *s);

/* out[b, i] = sqrt(acp[t[b]]) * x0[b, i] + sqrt(1 - acp[t[b]]) * noise[b, i]
 * for b < batch, i < per_sample (x0, noise, out: [batch, per_sample]; out may
 * alias x0 or noise). diffusers DDPMScheduler.add_noise and the seed's
 * DDPMScheduler.add_noise. A timestep outside [0, T) is SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_noise_schedule_add_noise(const sdw_noise_schedule *s, const float *x0,
                                        const float *noise, const int64_t *t, int64_t batch,
                                        int64_t per_sample, float *out);

/* The seed's get_snr: acp[t] / max(1 - acp[t], 1e-6), for out[n]. */
sdw_status sdw_noise_schedule_snr(const sdw_noise_schedule *s, const int64_t *t, int64_t n,
                                  double *out);

/* What the network predicts (diffusers' prediction_type). The samplers work
 * on epsilon; sdw_prediction_to_epsilon converts the other two. */
typedef enum sdw_prediction_type {
  SDW_PREDICT_EPSILON = 0, /* the noise (the seed, SD 1.x) */
  SDW_PREDICT_V,           /* v = sqrt(acp) eps - sqrt(1 - acp) x0 (Salimans & Ho 2022) */
  SDW_PREDICT_SAMPLE,      /* x0 itself */
} sdw_prediction_type;

/* Parses "epsilon" / "v_prediction" / "sample" (diffusers' names); false
 * when unknown. */
bool sdw_prediction_type_from_name(const char *name, sdw_prediction_type *out);
const char *sdw_prediction_type_name(sdw_prediction_type type);

/* acp at a timestep that may be fractional (the Euler and DPM-Solver
 * samplers call the network between grid points): acp[t] at an integer t,
 * else 1 / (1 + sigma^2) with sigma interpolated linearly between the two
 * neighbouring grid points, as diffusers' set_timesteps does (np.interp).
 * t is clamped to [0, T-1]. */
double sdw_noise_schedule_acp_at(const sdw_noise_schedule *s, double t);

/* out[i] = the epsilon that the prediction pred[i] of the given type means
 * for the noisy sample x_t[i] at acp (n values; out may alias pred):
 *   v:      eps = sqrt(acp) v + sqrt(1 - acp) x_t
 *   sample: eps = (x_t - sqrt(acp) x0) / sqrt(1 - acp)
 *   epsilon: a copy. */
void sdw_prediction_to_epsilon(sdw_prediction_type type, double acp, const float *x_t,
                               const float *pred, int64_t n, float *out);

/* Timestep spacings of the diffusers schedulers (Table 2 of arXiv:2305.08891). */
typedef enum sdw_timestep_spacing {
  SDW_SPACING_LEADING = 0, /* arange(n) * (T // n), reversed, + steps_offset */
  SDW_SPACING_TRAILING,    /* round(arange(T, 0, -T/n)) - 1 */
  SDW_SPACING_LINSPACE,    /* round(linspace(0, T-1, n)), reversed */
} sdw_timestep_spacing;

/* Parses "leading" / "trailing" / "linspace"; false when unknown. */
bool sdw_timestep_spacing_from_name(const char *name, sdw_timestep_spacing *out);
const char *sdw_timestep_spacing_name(sdw_timestep_spacing spacing);

/* numpy's round(): half to even. */
double sdw_round_half_even(double x);

/* Element i of np.arange(start, stop, step) for float arguments, as numpy
 * (1.24) fills it: start, start + step, then start + i * delta with
 * delta = (start + step) - start. */
double sdw_np_arange_at(double start, double step, int64_t i);
/* Element i of np.linspace(start, stop, num) (endpoint included, float64):
 * start + i * ((stop - start) / (num - 1)), the last exactly stop. */
double sdw_np_linspace_at(double start, double stop, int64_t num, int64_t i);

/* The first n timesteps (descending) of a diffusers spacing over `points`
 * grid points (n for DDIM and Euler; n + 1 for DPM-Solver, which drops the
 * last), with diffusers' rounding:
 *   leading:  (points-1-i) * (span // points) + steps_offset
 *   trailing: round(np.arange(span, 0, -T/n)[i]) - 1
 *   linspace: np.linspace(0, span - 1, points)[points-1-i], rounded when
 *             round_linspace (DDIM, DPM) and left fractional otherwise (Euler)
 * span is T except for DPM-Solver's lambda clipping (not supported: span = T).
 * (diffusers 0.25.1's trailing arange has n+1 elements for some n, e.g. 61 of
 * 1000, the extra one becoming timestep -1; we keep the first n.) */
void sdw_spacing_timesteps(sdw_timestep_spacing spacing, int span, int T, int n, int points,
                           int steps_offset, bool round_linspace, double *out);

/* --- sigma space (Euler, DPM-Solver) -------------------------------------- */

/* out[T] = sqrt((1 - acp_t) / acp_t): with the float32 schedule each
 * operation rounded to float32 as diffusers' torch expression does, with the
 * float64 one in double. */
void sdw_noise_schedule_sigmas(const sdw_noise_schedule *s, double *out);
/* out[T] = np.log(sigmas): float32 logf of the float32 sigmas with the float32
 * schedule (numpy takes the log of a float32 array in float32), log otherwise. */
void sdw_noise_schedule_log_sigmas(const sdw_noise_schedule *s, const double *sigmas, double *out);

/* np.interp(x, arange(len), fp) in double. */
double sdw_np_interp_unit(double x, const double *fp, int len);

/* Karras et al. (2022) sigmas as diffusers' _convert_to_karras computes them:
 * (max^(1/7) + ramp (min^(1/7) - max^(1/7)))^7, ramp = np.linspace(0, 1, n). */
void sdw_karras_sigmas(double sigma_min, double sigma_max, int n, double *out);

/* diffusers' _sigma_to_t: the fractional timestep whose log sigma
 * interpolates linearly to log(sigma) in log_sigmas[T] (ascending). */
double sdw_sigma_to_t(double sigma, const double *log_sigmas, int T);

#ifdef __cplusplus
}
#endif
#endif
