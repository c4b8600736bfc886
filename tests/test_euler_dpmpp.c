/* core/diffusion/euler and dpmpp, run through the sampling loop
 * (core/diffusion/sampler), against the `samplers` golden bundle: diffusers
 * v0.25.1 EulerDiscreteScheduler and DPMSolverMultistepScheduler (DPM++ 2M)
 * full loops with a fixed fake denoiser, made by
 * tools/gen_scheduler_goldens.py (tests/data/goldens/samplers/README.txt).
 *
 * Checks and tolerances:
 *  - timesteps: exact (integers, and Euler's float32 linspace values), except
 *    Euler-Karras's fractional timesteps (log-sigma interpolation): within
 *    2e-4 absolute: numpy takes float32 and float64 logs with its own SIMD
 *    routines, which may differ from the C library's in the last bit, and
 *    |dt/dlog sigma| is up to ~100 timesteps per unit near t = 0, so 1 ulp of
 *    a float32 log (6e-8 relative of |log sigma| <= 3.5) moves t by ~2e-5.
 *  - sigmas: exact float32 equality (same float32 table, same double
 *    interpolation / Karras formula with the C library's pow, same final
 *    rounding).
 *  - the sample after steps 1 and 2 and at the end vs the float64 loop (same
 *    float32 schedule, float64 arithmetic): 3 * k * 2^-24 after k steps. We
 *    keep x, the model input and the model output in float32, three
 *    roundings of 6e-8 relative per step; the fake denoiser (eps = 0.1 x_in +
 *    w C) does not amplify them, so they add up at most linearly.
 *  - the end sample vs diffusers' own float32 loop: that bound plus 1e-6 for
 *    the reference's float32 arithmetic (its float32-vs-float64 difference is
 *    at most 6.3e-7 in the README table). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/diffusion/sampler.h"
#include "tests/test.h"
#include "tests/test_sched_util.h"

typedef struct fake_model {
  const float *c; /* [n] */
  int64_t n;
  int calls;
  double last_t;
} fake_model;

/* The golden's fake denoiser: eps = 0.1 x_in + (0.5 + t/1000) C. */
static sdw_status fake_denoise(void *user, const sdw_tensor *x_in, double t, sdw_tensor *eps) {
  fake_model *m = user;
  const float *x = x_in->data;
  float *e = eps->data;
  double w = 0.5 + t / 1000.0;
  for (int64_t k = 0; k < m->n; k++)
    e[k] = (float)(0.1 * (double)x[k] + w * (double)m->c[k]);
  m->calls++;
  m->last_t = t;
  return SDW_OK;
}

typedef struct capture {
  float *after1, *after2;
  int64_t n;
  double *ts;
} capture;

static void capture_progress(void *user, int step, int steps, double t, const sdw_tensor *x,
                             const sdw_tensor *pred_x0) {
  (void)steps;
  (void)pred_x0;
  capture *c = user;
  if (step == 1) memcpy(c->after1, x->data, sizeof(float) * (size_t)c->n);
  if (step == 2) memcpy(c->after2, x->data, sizeof(float) * (size_t)c->n);
  c->ts[step - 1] = t;
}

static void check_vs(const sdw_safetensors *st, const char *name, const char *suffix,
                     const float *got, int64_t n, double tol) {
  char key[160];
  snprintf(key, sizeof key, "%s.%s", name, suffix);
  double *want = sg_f64(st, key, NULL);
  if (!want) return;
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(got, want, (size_t)n), tol, key);
  free(want);
}

/* Runs golden config `name` (its scheduler config given) and compares. */
static void run_config(const sdw_safetensors *st, const char *name, sdw_sampler_config cfg) {
  int64_t n = 0;
  float *x_T = sg_f32(st, "x_T", &n);
  float *c = sg_f32(st, "C", NULL);
  REQUIRE(x_T && c && n == 512);
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  int steps = cfg.steps;

  /* Timesteps and sigmas of the scheduler itself. */
  const double *ts = NULL, *sigmas = NULL;
  sdw_euler eu;
  sdw_dpmpp dp;
  memset(&eu, 0, sizeof eu);
  memset(&dp, 0, sizeof dp);
  bool karras = false;
  char key[160];
  if (cfg.kind == SDW_SAMPLER_EULER) {
    CHECK_OK(sdw_euler_init(&eu, &sched, &cfg.euler, steps));
    ts = eu.timesteps;
    sigmas = eu.sigmas;
    karras = cfg.euler.karras;
    snprintf(key, sizeof key, "%s.timesteps", name);
    float *want_t = sg_f32(st, key, NULL);
    for (int i = 0; want_t && ts && i < steps; i++) {
      if (karras)
        CHECK_MSG(fabs(ts[i] - want_t[i]) <= 2e-4, "%s t[%d] %.9g want %.9g", name, i, ts[i],
                  (double)want_t[i]);
      else
        CHECK_MSG(ts[i] == (double)want_t[i], "%s t[%d] %.9g want %.9g", name, i, ts[i],
                  (double)want_t[i]);
    }
    free(want_t);
  } else {
    CHECK_OK(sdw_dpmpp_init(&dp, &sched, &cfg.dpmpp, steps, n));
    ts = dp.timesteps;
    sigmas = dp.sigmas;
    karras = cfg.dpmpp.karras;
    snprintf(key, sizeof key, "%s.timesteps", name);
    int64_t *want_t = sg_i64(st, key, NULL);
    for (int i = 0; want_t && ts && i < steps; i++)
      CHECK_MSG(ts[i] == (double)want_t[i], "%s t[%d] %g want %lld", name, i, ts[i],
                (long long)want_t[i]);
    free(want_t);
  }
  snprintf(key, sizeof key, "%s.sigmas", name);
  int64_t ns = 0;
  float *want_s = sg_f32(st, key, &ns);
  CHECK(ns == steps + 1);
  for (int i = 0; want_s && sigmas && i <= steps && i < ns; i++) {
    float got = (float)sigmas[i];
    CHECK_MSG(got == want_s[i], "%s sigma[%d] %.9g want %.9g", name, i, (double)got,
              (double)want_s[i]);
  }
  free(want_s);

  /* The loop. */
  float *x = sdw_test_alloc_guarded((size_t)n, "latents");
  memcpy(x, x_T, sizeof(float) * (size_t)n);
  capture cap = {sdw_test_alloc_guarded((size_t)n, "after1"),
                 sdw_test_alloc_guarded((size_t)n, "after2"), n,
                 calloc((size_t)steps, sizeof(double))};
  fake_model m = {c, n, 0, 0};
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = fake_denoise;
  io.denoise_user = &m;
  io.progress = capture_progress;
  io.progress_user = &cap;
  sdw_tensor lat = sdw_tensor_4d(x, SDW_F32, 2, 4, 8, 8);
  CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
  CHECK(m.calls == steps);
  for (int i = 0; ts && i < steps; i++)
    CHECK(cap.ts[i] == ts[i]);
  const double u = 1.0 / 16777216.0; /* 2^-24 */
  check_vs(st, name, "step1_f64", cap.after1, n, 3 * 1 * u);
  check_vs(st, name, "step2_f64", cap.after2, n, 3 * 2 * u);
  check_vs(st, name, "final_f64", x, n, 3 * steps * u);
  snprintf(key, sizeof key, "%s.final", name);
  float *want32 = sg_f32(st, key, NULL);
  if (want32) SG_CHECK_REL(sdw_test_rel_err_f32(x, want32, (size_t)n), 3 * steps * u + 1e-6, key);
  free(want32);
  CHECK_GUARD(x);
  sdw_test_free_guarded(x);
  sdw_test_free_guarded(cap.after1);
  sdw_test_free_guarded(cap.after2);
  free(cap.ts);
  sdw_euler_free(&eu);
  sdw_dpmpp_free(&dp);
  sdw_noise_schedule_free(&sched);
  free(x_T);
  free(c);
}

typedef struct golden_case {
  const char *tag;
  sdw_timestep_spacing spacing;
  bool karras;
  int steps;
  int offset;
} golden_case;

static const golden_case cases[] = {
    {"linspace", SDW_SPACING_LINSPACE, false, 10, 0},
    {"linspace", SDW_SPACING_LINSPACE, false, 25, 0},
    {"karras", SDW_SPACING_LINSPACE, true, 10, 0},
    {"karras", SDW_SPACING_LINSPACE, true, 25, 0},
    {"leading", SDW_SPACING_LEADING, false, 10, 1},
    {"trailing", SDW_SPACING_TRAILING, false, 10, 0},
};

SDW_TEST(euler_matches_diffusers_loops) {
  sdw_safetensors *st = sg_open("samplers");
  REQUIRE(st);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_EULER, cases[i].steps);
    cfg.euler.spacing = cases[i].spacing;
    cfg.euler.karras = cases[i].karras;
    cfg.euler.steps_offset = cases[i].offset;
    char name[64];
    snprintf(name, sizeof name, "euler.%s.n%d", cases[i].tag, cases[i].steps);
    run_config(st, name, cfg);
  }
  sdw_safetensors_close(st);
}

SDW_TEST(dpmpp_2m_matches_diffusers_loops) {
  sdw_safetensors *st = sg_open("samplers");
  REQUIRE(st);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sdw_sampler_config cfg = sdw_sampler_config_make(SDW_SAMPLER_DPMPP_2M, cases[i].steps);
    cfg.dpmpp.spacing = cases[i].spacing;
    cfg.dpmpp.karras = cases[i].karras;
    cfg.dpmpp.steps_offset = cases[i].offset;
    char name[64];
    snprintf(name, sizeof name, "dpmpp.%s.n%d", cases[i].tag, cases[i].steps);
    run_config(st, name, cfg);
  }
  sdw_safetensors_close(st);
}

/* DPM++ keeps its previous prediction, so steps must come in order. */
SDW_TEST(dpmpp_2m_refuses_out_of_order_steps) {
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_dpmpp_config c = sdw_dpmpp_config_default();
  sdw_dpmpp d;
  CHECK_OK(sdw_dpmpp_init(&d, &sched, &c, 5, 1));
  float x = 0.5f, e = 0.1f;
  CHECK(sdw_dpmpp_step(&d, 1, &e, &x, NULL) == SDW_ERR_INVALID_ARGUMENT);
  CHECK_OK(sdw_dpmpp_step(&d, 0, &e, &x, NULL));
  CHECK(sdw_dpmpp_step(&d, 0, &e, &x, NULL) == SDW_ERR_INVALID_ARGUMENT);
  sdw_dpmpp_free(&d);
  c.karras = true;
  CHECK(sdw_dpmpp_init(&d, &sched, &c, 1, 1) == SDW_ERR_INVALID_ARGUMENT);
  sdw_euler e2;
  sdw_euler_config ec = sdw_euler_config_default();
  CHECK(sdw_euler_init(&e2, &sched, &ec, 0) == SDW_ERR_INVALID_ARGUMENT);
  ec.spacing = SDW_SPACING_LEADING;
  ec.steps_offset = 5;
  CHECK(sdw_euler_init(&e2, &sched, &ec, 1000) == SDW_ERR_INVALID_ARGUMENT);
  sdw_noise_schedule_free(&sched);
}
