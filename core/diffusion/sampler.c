/* The sampling loop and classifier-free guidance (see sampler.h). */
#include "core/diffusion/sampler.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"ddim", "euler", "dpmpp-2m"};

bool sdw_sampler_kind_from_name(const char *name, sdw_sampler_kind *out) {
  for (int i = 0; i < 3; i++) {
    if (strcmp(name, kind_names[i]) == 0) {
      *out = (sdw_sampler_kind)i;
      return true;
    }
  }
  return false;
}

const char *sdw_sampler_kind_name(sdw_sampler_kind kind) {
  return (unsigned)kind < 3 ? kind_names[kind] : "unknown";
}

sdw_sampler_config sdw_sampler_config_make(sdw_sampler_kind kind, int steps) {
  sdw_sampler_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.steps = steps;
  c.ddim = sdw_ddim_config_diffusers_sd();
  c.eta = 0.0;
  c.euler = sdw_euler_config_default();
  c.dpmpp = sdw_dpmpp_config_default();
  return c;
}

/* The loop's state: the scheduler of the chosen kind and scratch buffers. */
typedef struct loop_state {
  sdw_ddim ddim;
  sdw_euler euler;
  sdw_dpmpp dpmpp;
  float *x_in, *eps, *pred_x0, *noise;
} loop_state;

static void loop_free(loop_state *s) {
  sdw_ddim_free(&s->ddim);
  sdw_euler_free(&s->euler);
  sdw_dpmpp_free(&s->dpmpp);
  free(s->x_in);
  free(s->eps);
  free(s->pred_x0);
  free(s->noise);
}

static sdw_status run_loop(const sdw_noise_schedule *schedule, const sdw_sampler_config *cfg,
                           const sdw_sampler_io *io, sdw_tensor *latents, loop_state *s) {
  int64_t n = sdw_tensor_numel(latents);
  float *x = latents->data;
  int steps = cfg->steps;
  switch (cfg->kind) {
  case SDW_SAMPLER_DDIM: SDW_TRY(sdw_ddim_init(&s->ddim, schedule, &cfg->ddim, steps)); break;
  case SDW_SAMPLER_EULER: SDW_TRY(sdw_euler_init(&s->euler, schedule, &cfg->euler, steps)); break;
  case SDW_SAMPLER_DPMPP_2M:
    SDW_TRY(sdw_dpmpp_init(&s->dpmpp, schedule, &cfg->dpmpp, steps, n));
    break;
  default: return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "unknown sampler %d", (int)cfg->kind);
  }
  bool want_noise = cfg->kind == SDW_SAMPLER_DDIM && cfg->eta > 0.0;
  if (want_noise && !io->noise)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "DDIM with eta %g needs a noise source", cfg->eta);
  size_t bytes = sizeof(float) * (size_t)(n > 0 ? n : 1);
  s->x_in = malloc(bytes);
  s->eps = malloc(bytes);
  s->pred_x0 = malloc(bytes);
  if (want_noise) s->noise = malloc(bytes);
  if (!s->x_in || !s->eps || !s->pred_x0 || (want_noise && !s->noise))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "sampler: out of memory for %lld latent values",
                    (long long)n);
  sdw_tensor x_in_t = *latents, eps_t = *latents, x0_t = *latents;
  x_in_t.data = s->x_in;
  eps_t.data = s->eps;
  x0_t.data = s->pred_x0;

  if (cfg->kind == SDW_SAMPLER_EULER) {
    double sigma = s->euler.init_noise_sigma;
    for (int64_t k = 0; k < n; k++)
      x[k] = (float)((double)x[k] * sigma);
  }
  for (int i = 0; i < steps; i++) {
    if (io->cancel && atomic_load(io->cancel))
      return sdw_fail(SDW_ERR_INTERRUPTED, "sampling stopped before step %d of %d", i + 1, steps);
    double t;
    switch (cfg->kind) {
    case SDW_SAMPLER_DDIM:
      t = (double)s->ddim.timesteps[i];
      memcpy(s->x_in, x, sizeof(float) * (size_t)n);
      break;
    case SDW_SAMPLER_EULER:
      t = s->euler.timesteps[i];
      sdw_euler_scale_input(&s->euler, i, x, s->x_in, n);
      break;
    default:
      t = s->dpmpp.timesteps[i];
      memcpy(s->x_in, x, sizeof(float) * (size_t)n);
      break;
    }
    sdw_status st = io->denoise(io->denoise_user, &x_in_t, t, &eps_t);
    if (st != SDW_OK) {
      sdw_error_prefix("step %d of %d (timestep %g)", i + 1, steps, t);
      return st;
    }
    switch (cfg->kind) {
    case SDW_SAMPLER_DDIM:
      if (want_noise) SDW_TRY(io->noise(io->noise_user, s->noise, n));
      SDW_TRY(sdw_ddim_step(&s->ddim, s->ddim.timesteps[i], s->eps, x, cfg->eta, s->noise, x,
                            s->pred_x0, n));
      break;
    case SDW_SAMPLER_EULER: sdw_euler_step(&s->euler, i, s->eps, x, s->pred_x0, n); break;
    default: SDW_TRY(sdw_dpmpp_step(&s->dpmpp, i, s->eps, x, s->pred_x0)); break;
    }
    if (io->progress) io->progress(io->progress_user, i + 1, steps, t, latents, &x0_t);
  }
  return SDW_OK;
}

sdw_status sdw_sample(const sdw_noise_schedule *schedule, const sdw_sampler_config *config,
                      const sdw_sampler_io *io, sdw_tensor *latents) {
  SDW_ASSERT(latents->dtype == SDW_F32 && latents->device.kind == SDW_DEVICE_CPU);
  SDW_ASSERT(io->denoise != NULL);
  loop_state s;
  memset(&s, 0, sizeof s);
  sdw_status st = run_loop(schedule, config, io, latents, &s);
  loop_free(&s);
  return st;
}

/* --- classifier-free guidance ---------------------------------------------------- */

void sdw_cfg_combine(const float *u, const float *c, double scale, float *out, int64_t n) {
  for (int64_t k = 0; k < n; k++) {
    double uu = u[k], cc = c[k];
    out[k] = (float)(uu + scale * (cc - uu));
  }
}

void sdw_cfg_denoiser_init(sdw_cfg_denoiser *c, sdw_denoise_fn model, void *model_user,
                           double scale) {
  memset(c, 0, sizeof *c);
  c->model = model;
  c->model_user = model_user;
  c->scale = scale;
}

void sdw_cfg_denoiser_free(sdw_cfg_denoiser *c) {
  if (!c) return;
  free(c->in);
  free(c->out);
  memset(c, 0, sizeof *c);
}

sdw_status sdw_cfg_denoise(void *user, const sdw_tensor *x_in, double timestep, sdw_tensor *eps) {
  sdw_cfg_denoiser *c = user;
  SDW_ASSERT(x_in->ndim >= 1 && x_in->dtype == SDW_F32 && eps->dtype == SDW_F32);
  SDW_ASSERT(sdw_tensor_same_shape(x_in, eps));
  if (c->scale == 1.0) return c->model(c->model_user, x_in, timestep, eps);
  int64_t n = sdw_tensor_numel(x_in);
  if (c->capacity < 2 * n) {
    float *in = realloc(c->in, sizeof(float) * (size_t)(2 * n));
    if (in) c->in = in;
    float *out = realloc(c->out, sizeof(float) * (size_t)(2 * n));
    if (out) c->out = out;
    if (!in || !out)
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "guidance: out of memory for a batch of %lld values",
                      (long long)(2 * n));
    c->capacity = 2 * n;
  }
  memcpy(c->in, x_in->data, sizeof(float) * (size_t)n);
  memcpy(c->in + n, x_in->data, sizeof(float) * (size_t)n);
  sdw_tensor in2 = *x_in, out2 = *x_in;
  in2.shape[0] *= 2;
  out2.shape[0] *= 2;
  in2.data = c->in;
  out2.data = c->out;
  SDW_TRY(c->model(c->model_user, &in2, timestep, &out2));
  sdw_cfg_combine(c->out, c->out + n, c->scale, eps->data, n);
  return SDW_OK;
}
