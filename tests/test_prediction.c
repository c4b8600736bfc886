/* v-prediction and x0-prediction ("sample") against diffusers (the
 * `prediction` golden bundle, tools/gen_prediction_goldens.py):
 *   - the training target: sdw_loss_prepare with prediction v gives
 *     DDPMScheduler.get_velocity and the same x_t as add_noise;
 *   - sampling: the samplers run on epsilon; a v or x0 model's output
 *     converted by sdw_prediction_to_epsilon at the timestep it was called
 *     with (fractional for Euler's linspace spacing) must give the final
 *     latents of diffusers' DDIM / Euler / DPM++ loops run with that
 *     prediction_type.
 * Plus the Min-SNR weights of each type against the formula of diffusers'
 * train_text_to_image.py, and the name table.
 *
 * Tolerances: the target is one float32 rounding of a double expression
 * against torch's float32 expression (two roundings): 4 * 2^-24 relative
 * (normwise). The loops: 10 steps whose model input, output and state are
 * float32 on both sides with different operation order; measured 0.6 to
 * 2.6e-7 normwise, tolerance 2e-6 (the conversion adds a rounding per
 * element per step, and x0 models divide by sqrt(1 - acp), which reaches
 * 1/0.03 near t = 0, so an order of magnitude of room). Reading the output
 * as epsilon instead moves the final latents by O(1). */
#include <math.h>
#include <string.h>

#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "core/train/loss.h"
#include "tests/test.h"
#include "tests/test_sched_util.h"

typedef struct pred_model {
  const float *c;
  int64_t n;
  sdw_prediction_type type;
  const sdw_noise_schedule *sched;
  int calls;
  double ts[16];
} pred_model;

/* The golden's fake model (out = 0.1 x_in + (0.5 + t/1000) C) read as a v or
 * x0 prediction, handed to the sampler as epsilon. */
static sdw_status pred_denoise(void *user, const sdw_tensor *x_in, double t, sdw_tensor *eps) {
  pred_model *m = user;
  const float *x = x_in->data;
  float *e = eps->data;
  const double w = 0.5 + t / 1000.0;
  for (int64_t k = 0; k < m->n; k++)
    e[k] = (float)(0.1 * (double)x[k] + w * (double)m->c[k]);
  sdw_prediction_to_epsilon(m->type, sdw_noise_schedule_acp_at(m->sched, t), x, e, m->n, e);
  if (m->calls < 16) m->ts[m->calls] = t;
  m->calls++;
  return SDW_OK;
}

static void run_loop(sdw_prediction_type type, const char *pred, const char *name,
                     sdw_sampler_kind kind, sdw_timestep_spacing spacing, int offset) {
  sdw_safetensors *st = sg_open("prediction");
  REQUIRE(st);
  int64_t n = 0, nt = 0;
  float *x_T = sg_f32(st, "x_T", &n);
  float *c = sg_f32(st, "C", NULL);
  char key[160];
  snprintf(key, sizeof key, "%s.%s.timesteps", pred, name);
  double *want_t = sg_f64(st, key, &nt);
  snprintf(key, sizeof key, "%s.%s.final", pred, name);
  float *want = sg_f32(st, key, NULL);
  REQUIRE(x_T && c && want_t && want && n == 384 && nt == 10);
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_sampler_config cfg = sdw_sampler_config_make(kind, 10);
  cfg.ddim.spacing = cfg.euler.spacing = cfg.dpmpp.spacing = spacing;
  cfg.ddim.steps_offset = cfg.euler.steps_offset = cfg.dpmpp.steps_offset = offset;
  pred_model m = {c, n, type, &sched, 0, {0}};
  sdw_sampler_io io;
  memset(&io, 0, sizeof io);
  io.denoise = pred_denoise;
  io.denoise_user = &m;
  float *x = sdw_test_alloc_guarded((size_t)n, "latents");
  memcpy(x, x_T, sizeof(float) * (size_t)n);
  sdw_tensor lat = sdw_tensor_4d(x, SDW_F32, 2, 3, 8, 8);
  CHECK_OK(sdw_sample(&sched, &cfg, &io, &lat));
  CHECK(m.calls == 10);
  for (int i = 0; i < 10 && i < m.calls; i++)
    CHECK_MSG(fabs(m.ts[i] - want_t[i]) < 1e-9, "%s %s: model saw t=%g at step %d, want %g", pred,
              name, m.ts[i], i, want_t[i]);
  snprintf(key, sizeof key, "%s.%s.final", pred, name);
  SG_CHECK_REL(sdw_test_rel_err_f32(x, want, (size_t)n), 2e-6, key);
  CHECK_GUARD(x);
  sdw_test_free_guarded(x);
  free(x_T);
  free(c);
  free(want_t);
  free(want);
  sdw_noise_schedule_free(&sched);
  sdw_safetensors_close(st);
}

SDW_TEST(prediction_v_and_x0_sampling_loops_match_diffusers) {
  const struct {
    sdw_prediction_type type;
    const char *name;
  } preds[] = {{SDW_PREDICT_V, "v_prediction"}, {SDW_PREDICT_SAMPLE, "sample"}};
  for (int i = 0; i < 2; i++) {
    run_loop(preds[i].type, preds[i].name, "ddim.leading.n10", SDW_SAMPLER_DDIM,
             SDW_SPACING_LEADING, 1);
    run_loop(preds[i].type, preds[i].name, "euler.linspace.n10", SDW_SAMPLER_EULER,
             SDW_SPACING_LINSPACE, 0);
    run_loop(preds[i].type, preds[i].name, "dpmpp.linspace.n10", SDW_SAMPLER_DPMPP_2M,
             SDW_SPACING_LINSPACE, 0);
  }
}

SDW_TEST(prediction_v_target_is_diffusers_velocity) {
  sdw_safetensors *st = sg_open("prediction");
  REQUIRE(st);
  int64_t n = 0;
  float *x0 = sg_f32(st, "x0", &n);
  float *noise = sg_f32(st, "noise", NULL);
  int64_t *t = sg_i64(st, "t", NULL);
  float *velocity = sg_f32(st, "velocity", NULL);
  float *noisy = sg_f32(st, "noisy", NULL);
  REQUIRE(x0 && noise && t && velocity && noisy && n == 384);
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  sdw_loss_config lc = sdw_loss_config_seed();
  lc.prediction = SDW_PREDICT_V;
  float target[384], x_t[384];
  memcpy(x_t, x0, sizeof x_t); /* x_t aliases x0, as the trainer calls it */
  CHECK_OK(sdw_loss_prepare(&sched, &lc, x_t, noise, NULL, t, 2, 3, 64, target, x_t));
  const double u = 1.0 / 16777216.0;
  SG_CHECK_REL(sdw_test_rel_err_f32(target, velocity, 384), 4 * u, "v target");
  SG_CHECK_REL(sdw_test_rel_err_f32(x_t, noisy, 384), 4 * u, "x_t with a v target");
  /* x0 models: the target is x0 itself, bit for bit */
  lc.prediction = SDW_PREDICT_SAMPLE;
  memcpy(x_t, x0, sizeof x_t);
  CHECK_OK(sdw_loss_prepare(&sched, &lc, x_t, noise, NULL, t, 2, 3, 64, target, x_t));
  CHECK(memcmp(target, x0, sizeof target) == 0);
  /* and converting the v target back gives the noise */
  float back[192];
  sdw_prediction_to_epsilon(SDW_PREDICT_V, sched.acp[t[1]], noisy + 192, velocity + 192, 192, back);
  SG_CHECK_REL(sdw_test_rel_err_f32(back, noise + 192, 192), 1e-6, "v -> epsilon");
  free(x0);
  free(noise);
  free(t);
  free(velocity);
  free(noisy);
  sdw_noise_schedule_free(&sched);
  sdw_safetensors_close(st);
}

SDW_TEST(prediction_min_snr_weights_per_type) {
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  const int64_t ts[] = {0, 100, 500, 999};
  for (int i = 0; i < 4; i++) {
    /* diffusers train_text_to_image.py: min(snr, gamma), / snr for epsilon,
     * / (snr + 1) for v; snr = acp / (1 - acp) */
    const double a = sched.acp[ts[i]], snr = a / (1.0 - a), m = snr < 5.0 ? snr : 5.0;
    /* 1e-12 relative: double arithmetic on both sides, a few roundings
     * (the seed's clamp of 1 - acp at 1e-6 never binds on this schedule) */
    const double we = sdw_loss_min_snr_weight_for(&sched, SDW_PREDICT_EPSILON, ts[i], 5.0);
    const double wv = sdw_loss_min_snr_weight_for(&sched, SDW_PREDICT_V, ts[i], 5.0);
    const double wx = sdw_loss_min_snr_weight_for(&sched, SDW_PREDICT_SAMPLE, ts[i], 5.0);
    CHECK_MSG(fabs(we - m / snr) <= 1e-12 * (m / snr), "epsilon weight at t=%lld: %g vs %g",
              (long long)ts[i], we, m / snr);
    CHECK_MSG(fabs(wv - m / (snr + 1.0)) <= 1e-12 * (m / (snr + 1.0)), "v weight at t=%lld",
              (long long)ts[i]);
    CHECK_MSG(fabs(wx - m) <= 1e-12 * m, "x0 weight at t=%lld", (long long)ts[i]);
  }
  sdw_noise_schedule_free(&sched);
}

SDW_TEST(prediction_type_names) {
  sdw_prediction_type p;
  CHECK(sdw_prediction_type_from_name("epsilon", &p) && p == SDW_PREDICT_EPSILON);
  CHECK(sdw_prediction_type_from_name("v_prediction", &p) && p == SDW_PREDICT_V);
  CHECK(sdw_prediction_type_from_name("sample", &p) && p == SDW_PREDICT_SAMPLE);
  CHECK(!sdw_prediction_type_from_name("v", &p) && !sdw_prediction_type_from_name("", &p));
  CHECK(strcmp(sdw_prediction_type_name(SDW_PREDICT_V), "v_prediction") == 0);
  /* acp at integer timesteps is the table's; between them it lies between */
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule sched;
  CHECK_OK(sdw_noise_schedule_init(&sched, &scfg));
  CHECK(sdw_noise_schedule_acp_at(&sched, 517.0) == sched.acp[517]);
  const double mid = sdw_noise_schedule_acp_at(&sched, 517.5);
  CHECK(mid < sched.acp[517] && mid > sched.acp[518]);
  CHECK(sdw_noise_schedule_acp_at(&sched, -3.0) == sched.acp[0]);
  CHECK(sdw_noise_schedule_acp_at(&sched, 5000.0) == sched.acp[999]);
  sdw_noise_schedule_free(&sched);
}
