/* core/diffusion/sampler: the sampling loop with DDIM against diffusers'
 * DDIMScheduler loops (the `samplers` golden bundle, README there), the eta
 * noise drawn from a torch generator (core/base/torch_rng), classifier-free
 * guidance, progress reports, cancellation and error propagation.
 *
 * Tolerances: DDIM loops vs the float64 loop, 3 * k * 2^-24 after k steps
 * (x, the model input and the model output are float32 here: three roundings
 * of 6e-8 relative per step, not amplified by the fake denoiser); vs
 * diffusers' float32 loop, that plus 1e-6 (its own float32 arithmetic: up to
 * 4.2e-7 from float64 in the README table). Guidance: 2^-24 relative per
 * element (double arithmetic, one rounding) against the formula evaluated in
 * double from the same model outputs. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/torch_rng.h"
#include "core/diffusion/sampler.h"
#include "tests/test.h"
#include "tests/test_sched_util.h"

typedef struct fake_model {
  const float *c; /* [per-call numel] */
  int64_t n;
  int calls;
  double ts[64];
} fake_model;

/* The golden's fake denoiser: eps = 0.1 x_in + (0.5 + t/1000) C. */
static sdw_status fake_denoise(void *user, const sdw_tensor *x_in, double t, sdw_tensor *eps) {
  fake_model *m = user;
  const float *x = x_in->data;
  float *e = eps->data;
  double w = 0.5 + t / 1000.0;
  for (int64_t k = 0; k < m->n; k++)
    e[k] = (float)(0.1 * (double)x[k] + w * (double)m->c[k]);
  if (m->calls < 64) m->ts[m->calls] = t;
  m->calls++;
  return SDW_OK;
}

static sdw_status torch_noise(void *user, float *out, int64_t n) {
  sdw_torch_randn(user, out, n);
  return SDW_OK;
}

static void run_ddim_golden(const char *name, sdw_timestep_spacing spacing, int offset,
                            double eta) {
  sdw_safetensors *st = sg_open("samplers");
  REQUIRE(st);
  int64_t n = 0, nt = 0;
  float *x_T = sg_f32(st, "x_T", &n);
  float *c = sg_f32(st, "C", NULL);
  char key[160];
  snprintf(key, sizeof key, "%s.timesteps", name);
  int64_t *want_t = sg_i64(st, key, &nt);
  REQUIRE(x_T && c && want_t && n == 512 && nt == 10);
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_DDIM, 10);
  cfg.ddim.spacing = spacing;
  cfg.ddim.steps_offset = offset;
  cfg.eta = eta;
  fake_model m = {c, n, 0, {0}};
  sdw_torch_generator g; /* the pipeline's generator=manual_seed(1234) */
  sdw_torch_generator_seed(&g, 1234, SDW_TORCH_NORMAL_AVX2);
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = fake_denoise;
  io.denoise_user = &m;
  io.noise = torch_noise;
  io.noise_user = &g;
  float *x = sdw_test_alloc_guarded((size_t)n, "latents");
  memcpy(x, x_T, sizeof(float) * (size_t)n);
  sdw_tensor lat = sdw_tensor_4d(x, SDW_F32, 2, 4, 8, 8);
  CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
  CHECK(m.calls == 10);
  for (int i = 0; i < 10; i++)
    CHECK_MSG(m.ts[i] == (double)want_t[i], "%s: model saw t=%g at step %d, want %lld", name,
              m.ts[i], i, (long long)want_t[i]);
  const double u = 1.0 / 16777216.0;
  snprintf(key, sizeof key, "%s.final_f64", name);
  double *want64 = sg_f64(st, key, NULL);
  if (want64) SG_CHECK_REL(sdw_test_rel_err_f32_f64(x, want64, (size_t)n), 30 * u, key);
  snprintf(key, sizeof key, "%s.final", name);
  float *want32 = sg_f32(st, key, NULL);
  if (want32) SG_CHECK_REL(sdw_test_rel_err_f32(x, want32, (size_t)n), 30 * u + 1e-6, key);
  CHECK_GUARD(x);
  sdw_test_free_guarded(x);
  free(want64);
  free(want32);
  free(x_T);
  free(c);
  free(want_t);
  sdw_noise_schedule_free(&sched);
  sdw_safetensors_close(st);
}

SDW_TEST(sampler_ddim_loops_match_diffusers) {
  run_ddim_golden("ddim.leading.n10.eta0", SDW_SPACING_LEADING, 1, 0.0);
  run_ddim_golden("ddim.trailing.n10.eta0", SDW_SPACING_TRAILING, 0, 0.0);
  run_ddim_golden("ddim.linspace.n10.eta0", SDW_SPACING_LINSPACE, 0, 0.0);
}

/* eta = 1 with the variance noise of a torch generator seeded 1234, as a
 * diffusers pipeline with generator=torch.manual_seed(1234) draws it. */
SDW_TEST(sampler_ddim_eta1_with_torch_generator_noise) {
  run_ddim_golden("ddim.leading.n10.eta1", SDW_SPACING_LEADING, 1, 1.0);
}

/* The seed's DDIM through the loop: the model sees the seed's timesteps
 * (900, 800, ..., 0 for 10 steps; SEED.md 1.11) and the loop's result is the
 * seed step applied in sequence. */
SDW_TEST(sampler_seed_ddim_loop) {
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_test_rng r = sdw_test_rng_make(5);
  enum { N = 64 };
  float c[N], x[N], y[N], eps[N];
  sdw_test_fill_normal(&r, c, N, 1.0f);
  sdw_test_fill_normal(&r, x, N, 1.0f);
  memcpy(y, x, sizeof x);
  sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_DDIM, 10);
  cfg.ddim = sdw_ddim_config_seed();
  fake_model m = {c, N, 0, {0}};
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = fake_denoise;
  io.denoise_user = &m;
  sdw_tensor lat = sdw_tensor_4d(x, SDW_F32, 1, 4, 4, 4);
  CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
  sdw_ddim d;
  CHECK_OK(sdw_ddim_init(&d, &sched, &cfg.ddim, 10));
  for (int i = 0; i < 10; i++) {
    CHECK(m.ts[i] == 900.0 - 100.0 * i);
    double w = 0.5 + (900.0 - 100.0 * i) / 1000.0;
    for (int k = 0; k < N; k++)
      eps[k] = (float)(0.1 * (double)y[k] + w * (double)c[k]);
    CHECK_OK(sdw_ddim_step(&d, d.timesteps[i], eps, y, 0.0, NULL, y, NULL, N));
  }
  CHECK(memcmp(x, y, sizeof x) == 0);
  sdw_ddim_free(&d);
  sdw_noise_schedule_free(&sched);
}

/* --- guidance ----------------------------------------------------------------- */

typedef struct two_context_model {
  const float *cu, *cc; /* per-half constants [N] */
  int64_t n;            /* elements of one half */
  int calls;
  int64_t last_batch;
  bool halves_equal; /* the two halves of the input were identical */
} two_context_model;

/* eps_u = 0.1 x + C_u (first half), eps_c = 0.3 x + C_c (second half);
 * a batch of one half gets the conditional model. */
static sdw_status two_context_denoise(void *user, const sdw_tensor *x_in, double t,
                                      sdw_tensor *eps) {
  (void)t;
  two_context_model *m = user;
  const float *x = x_in->data;
  float *e = eps->data;
  m->calls++;
  m->last_batch = x_in->shape[0];
  if (sdw_tensor_numel(x_in) == 2 * m->n) {
    m->halves_equal = memcmp(x, x + m->n, sizeof(float) * (size_t)m->n) == 0;
    for (int64_t k = 0; k < m->n; k++) {
      e[k] = (float)(0.1 * x[k] + m->cu[k]);
      e[m->n + k] = (float)(0.3 * x[m->n + k] + m->cc[k]);
    }
  } else {
    for (int64_t k = 0; k < m->n; k++)
      e[k] = (float)(0.3 * x[k] + m->cc[k]);
  }
  return SDW_OK;
}

SDW_TEST(sampler_cfg_batches_uncond_then_cond) {
  enum { N = 2 * 4 * 3 * 3 };
  sdw_test_rng r = sdw_test_rng_make(11);
  float cu[N], cc[N], x[N], eps[N];
  sdw_test_fill_normal(&r, cu, N, 1.0f);
  sdw_test_fill_normal(&r, cc, N, 1.0f);
  sdw_test_fill_normal(&r, x, N, 1.0f);
  two_context_model m = {cu, cc, N, 0, 0, false};
  sdw_cfg_denoiser g;
  sdw_cfg_denoiser_init(&g, two_context_denoise, &m, 7.5);
  sdw_tensor xt = sdw_tensor_4d(x, SDW_F32, 2, 4, 3, 3);
  sdw_tensor et = sdw_tensor_4d(eps, SDW_F32, 2, 4, 3, 3);
  CHECK_OK(sdw_cfg_denoise(&g, &xt, 500.0, &et));
  CHECK(m.calls == 1 && m.last_batch == 4 && m.halves_equal);
  double want[N];
  for (int k = 0; k < N; k++) {
    double u = (float)(0.1 * x[k] + cu[k]), c = (float)(0.3 * x[k] + cc[k]);
    want[k] = u + 7.5 * (c - u);
  }
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(eps, want, N), 1.0 / 16777216.0, "guided eps");
  /* scale 1: one conditional pass over the batch as given. */
  g.scale = 1.0;
  CHECK_OK(sdw_cfg_denoise(&g, &xt, 500.0, &et));
  CHECK(m.calls == 2 && m.last_batch == 2);
  for (int k = 0; k < N; k++)
    CHECK(eps[k] == (float)(0.3 * x[k] + cc[k]));
  /* The combine helper on its own, in place. */
  float u1[3] = {1.0f, -2.0f, 0.5f}, c1[3] = {3.0f, -2.0f, 0.0f};
  sdw_cfg_combine(u1, c1, 2.0, u1, 3);
  CHECK(u1[0] == 5.0f && u1[1] == -2.0f && u1[2] == -0.5f);
  sdw_cfg_denoiser_free(&g);
}

/* A guided Euler loop: the network sees [x_in; x_in] at every step. */
SDW_TEST(sampler_guided_loop_runs_the_batched_network) {
  enum { N = 4 * 4 * 4 };
  sdw_test_rng r = sdw_test_rng_make(3);
  float cu[N], cc[N], x[N];
  sdw_test_fill_normal(&r, cu, N, 0.3f);
  sdw_test_fill_normal(&r, cc, N, 0.3f);
  sdw_test_fill_normal(&r, x, N, 1.0f);
  two_context_model m = {cu, cc, N, 0, 0, false};
  sdw_cfg_denoiser g;
  sdw_cfg_denoiser_init(&g, two_context_denoise, &m, 5.0);
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_EULER, 6);
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = sdw_cfg_denoise;
  io.denoise_user = &g;
  sdw_tensor lat = sdw_tensor_4d(x, SDW_F32, 1, 4, 4, 4);
  CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
  CHECK(m.calls == 6 && m.last_batch == 2 && m.halves_equal);
  for (int k = 0; k < N; k++)
    CHECK(isfinite(x[k]));
  sdw_cfg_denoiser_free(&g);
  sdw_noise_schedule_free(&sched);
}

/* --- progress, cancellation, errors ------------------------------------------------ */

typedef struct progress_log {
  int calls;
  int last_step, last_total;
  bool had_pred;
  atomic_int *cancel;
  int cancel_after;
} progress_log;

static void log_progress(void *user, int step, int steps, double t, const sdw_tensor *x,
                         const sdw_tensor *pred_x0) {
  (void)t;
  progress_log *p = user;
  p->calls++;
  CHECK(step == p->calls);
  p->last_step = step;
  p->last_total = steps;
  p->had_pred = x && pred_x0 && pred_x0->data && pred_x0->data != x->data;
  if (p->cancel && step == p->cancel_after) atomic_store(p->cancel, 1);
}

static sdw_status failing_denoise(void *user, const sdw_tensor *x_in, double t, sdw_tensor *eps) {
  (void)x_in;
  (void)eps;
  int *calls = user;
  if (++*calls == 2) return sdw_fail(SDW_ERR_DEVICE, "out of device memory at t=%g", t);
  return SDW_OK;
}

SDW_TEST(sampler_progress_cancel_and_errors) {
  enum { N = 16 };
  float c[N], x[N];
  for (int k = 0; k < N; k++)
    c[k] = 0.01f * (float)k;
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  for (int kind = 0; kind < 3; kind++) {
    for (int k = 0; k < N; k++)
      x[k] = 1.0f;
    sdw_sampler_config cfg = sdw_sampler_config_make((sdw_sampler_kind)kind, 8);
    fake_model m = {c, N, 0, {0}};
    atomic_int cancel = 0;
    progress_log p = {0, 0, 0, false, &cancel, 3};
    sdw_sampler_io io;
    memset(&io, 0, sizeof io);
    io.denoise = fake_denoise;
    io.denoise_user = &m;
    io.progress = log_progress;
    io.progress_user = &p;
    io.cancel = &cancel;
    sdw_tensor lat = sdw_tensor_2d(x, SDW_F32, 1, N);
    CHECK(sdw_sample(&sched, &cfg, &io, &lat) == SDW_ERR_INTERRUPTED);
    CHECK(m.calls == 3 && p.calls == 3 && p.last_total == 8 && p.had_pred);
    /* Without cancellation all 8 steps run. */
    p.cancel = NULL;
    p.calls = 0;
    cancel = 0;
    m.calls = 0;
    CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
    CHECK(m.calls == 8 && p.calls == 8 && p.last_step == 8);
  }
  /* A failing network stops the loop with its status, prefixed with the step. */
  int calls = 0;
  sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_DPMPP_2M, 5);
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = failing_denoise;
  io.denoise_user = &calls;
  sdw_tensor lat = sdw_tensor_2d(x, SDW_F32, 1, N);
  CHECK(sdw_sample(&sched, &cfg, &io, &lat) == SDW_ERR_DEVICE);
  CHECK(strstr(sdw_last_error(), "step 2 of 5") != NULL);
  CHECK(strstr(sdw_last_error(), "out of device memory") != NULL);
  /* DDIM with eta > 0 needs a noise source. */
  cfg = sdw_sampler_config_make(SDW_SAMPLER_DDIM, 5);
  cfg.eta = 0.5;
  io.denoise = fake_denoise;
  fake_model m = {c, N, 0, {0}};
  io.denoise_user = &m;
  CHECK(sdw_sample(&sched, &cfg, &io, &lat) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(m.calls == 0);
  sdw_noise_schedule_free(&sched);
}

SDW_TEST(sampler_names) {
  sdw_sampler_kind k;
  CHECK(sdw_sampler_kind_from_name("dpmpp-2m", &k) && k == SDW_SAMPLER_DPMPP_2M);
  CHECK(sdw_sampler_kind_from_name("euler", &k) && k == SDW_SAMPLER_EULER);
  CHECK(sdw_sampler_kind_from_name("ddim", &k) && k == SDW_SAMPLER_DDIM);
  CHECK(!sdw_sampler_kind_from_name("plms", &k));
  CHECK(strcmp(sdw_sampler_kind_name(SDW_SAMPLER_EULER), "euler") == 0);
}
