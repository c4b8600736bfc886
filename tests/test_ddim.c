/* core/diffusion/ddim: diffusers' DDIMScheduler (SD 1.x settings) and the
 * seed's DDIMScheduler against the `schedulers` golden bundle: every
 * timestep list, every recorded step() call (first, middle and last index
 * for n = 1, 10, 25, 30, 50, 100), eta 0 and 1 (diffusers) / 0 and 0.5 (the
 * seed), the alphas each call used (schedulers.json).
 *
 * Tolerances (normwise relative error):
 *  - timesteps and the alphas a step reads: exact (integers; float32 table
 *    values the reference printed as doubles).
 *  - step outputs vs the float64 goldens, float32 schedule: 1e-6 (the
 *    README's float32-vs-float64 table shows up to 5.4e-7, which is the
 *    float32 alphas_cumprod drift; our arithmetic after it is double).
 *  - step outputs vs the float64 goldens, float64 schedule: 1e-7 (exact
 *    formulas in double, one rounding to float32 per element: 6e-8).
 *  - pred_x0 (float32 golden only): 1e-6 (the reference's own float32
 *    roundings, a few 6e-8 each). */
#include <math.h>
#include <string.h>

#include "core/diffusion/ddim.h"
#include "tests/test.h"
#include "tests/test_sched_util.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

/* schedulers.json parsed with cJSON (caller frees with cJSON_Delete). */
static cJSON *open_json(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/schedulers/schedulers.json", sdw_test_data_dir());
  FILE *f = fopen(path, "rb");
  if (!f) {
    sdw_test_fail(__FILE__, __LINE__, "cannot open %s", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)size + 1);
  cJSON *root = NULL;
  if (text && fread(text, 1, (size_t)size, f) == (size_t)size) {
    text[size] = '\0';
    root = cJSON_Parse(text);
  }
  free(text);
  fclose(f);
  if (!root) sdw_test_fail(__FILE__, __LINE__, "cannot parse %s", path);
  return root;
}

typedef struct ddim_inputs {
  float *x_t, *eps, *eta_noise;
  int64_t n;
} ddim_inputs;

static bool load_inputs(const sdw_safetensors *st, ddim_inputs *in) {
  in->x_t = sg_f32(st, "x_t", &in->n);
  in->eps = sg_f32(st, "eps", NULL);
  in->eta_noise = sg_f32(st, "eta_noise", NULL);
  return in->x_t && in->eps && in->eta_noise && in->n == 2048;
}

static void free_inputs(ddim_inputs *in) {
  free(in->x_t);
  free(in->eps);
  free(in->eta_noise);
}

/* Compares out[n] with the float64 golden `name`_f64. */
static void check_f64(const sdw_safetensors *st, const char *name, const float *out, int64_t n,
                      double tol) {
  char key[160];
  snprintf(key, sizeof key, "%s_f64", name);
  double *want = sg_f64(st, key, NULL);
  if (!want) return;
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(out, want, (size_t)n), tol, key);
  free(want);
}

static void check_f32(const sdw_safetensors *st, const char *name, const float *out, int64_t n,
                      double tol) {
  float *want = sg_f32(st, name, NULL);
  if (!want) return;
  SG_CHECK_REL(sdw_test_rel_err_f32(out, want, (size_t)n), tol, name);
  free(want);
}

/* Runs every step record of json section `section` ("ddim" or "seed_ddim"). */
static void check_flavor(const char *section, const sdw_ddim_config *dcfg, double eta_hi,
                         const char *eta_hi_tag) {
  sdw_safetensors *st = sg_open("schedulers");
  cJSON *root = open_json();
  REQUIRE(st && root);
  ddim_inputs in = {0};
  REQUIRE(load_inputs(st, &in));
  const cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, section);
  const cJSON *steps = cJSON_GetObjectItemCaseSensitive(sec, "steps");
  const cJSON *tsl = cJSON_GetObjectItemCaseSensitive(sec, "timesteps");
  REQUIRE(cJSON_IsArray(steps) && cJSON_IsObject(tsl));
  float *out = sdw_test_alloc_guarded((size_t)in.n, "x_prev");
  float *x0 = sdw_test_alloc_guarded((size_t)in.n, "pred_x0");
  int records = 0;
  for (int prec = 0; prec < 2; prec++) {
    sdw_schedule_config scfg = sdw_schedule_config_sd();
    scfg.precision = prec == 0 ? SDW_SCHEDULE_F32 : SDW_SCHEDULE_F64;
    double tol = prec == 0 ? 1e-6 : 1e-7;
    sdw_noise_schedule s;
    CHECK_OK(sdw_noise_schedule_init(&s, &scfg));
    /* Every timestep list (json and the I64 tensors). */
    const cJSON *item;
    cJSON_ArrayForEach(item, tsl) {
      int n = atoi(item->string);
      sdw_ddim d;
      CHECK_OK(sdw_ddim_init(&d, &s, dcfg, n));
      CHECK(cJSON_GetArraySize(item) == n);
      for (int i = 0; i < n && i < cJSON_GetArraySize(item); i++) {
        int64_t want = (int64_t)cJSON_GetArrayItem(item, i)->valuedouble;
        CHECK_MSG(d.timesteps[i] == want, "%s n=%d timestep %d: %lld, want %lld", section, n, i,
                  (long long)d.timesteps[i], (long long)want);
      }
      char key[64];
      snprintf(key, sizeof key, "%s.n%d.timesteps", section, n);
      int64_t cnt = 0;
      int64_t *ts = sg_i64(st, key, &cnt);
      CHECK(ts && cnt == n && memcmp(ts, d.timesteps, sizeof(int64_t) * (size_t)n) == 0);
      free(ts);
      sdw_ddim_free(&d);
    }
    cJSON_ArrayForEach(item, steps) {
      int n = cJSON_GetObjectItemCaseSensitive(item, "n")->valueint;
      int index = cJSON_GetObjectItemCaseSensitive(item, "index")->valueint;
      int64_t t = (int64_t)cJSON_GetObjectItemCaseSensitive(item, "timestep")->valuedouble;
      double want_at = cJSON_GetObjectItemCaseSensitive(item, "alpha_prod_t")->valuedouble;
      double want_ap = cJSON_GetObjectItemCaseSensitive(item, "alpha_prod_t_prev")->valuedouble;
      sdw_ddim d;
      CHECK_OK(sdw_ddim_init(&d, &s, dcfg, n));
      CHECK(d.timesteps[index] == t);
      if (prec == 0) {
        double at, ap;
        sdw_ddim_alphas(&d, t, &at, &ap);
        CHECK_MSG(at == want_at && ap == want_ap,
                  "%s n=%d t=%lld: alphas %.17g %.17g, want %.17g %.17g", section, n, (long long)t,
                  at, ap, want_at, want_ap);
      }
      char name[128];
      snprintf(name, sizeof name, "%s.n%d.i%d.prev_eta0", section, n, index);
      CHECK_OK(sdw_ddim_step(&d, t, in.eps, in.x_t, 0.0, NULL, out, x0, in.n));
      check_f64(st, name, out, in.n, tol);
      check_f32(st, name, out, in.n, 1e-6);
      if (dcfg->flavor == SDW_DDIM_DIFFUSERS) {
        snprintf(name, sizeof name, "%s.n%d.i%d.pred_x0", section, n, index);
        check_f32(st, name, x0, in.n, 1e-6);
      }
      snprintf(name, sizeof name, "%s.n%d.i%d.prev_%s", section, n, index, eta_hi_tag);
      CHECK_OK(sdw_ddim_step(&d, t, in.eps, in.x_t, eta_hi, in.eta_noise, out, NULL, in.n));
      check_f64(st, name, out, in.n, tol);
      check_f32(st, name, out, in.n, 1e-6);
      sdw_ddim_free(&d);
      records++;
    }
    sdw_noise_schedule_free(&s);
  }
  CHECK(records == 2 * 16); /* 6 step counts: n=1 has one record, the others three */
  CHECK_GUARD(out);
  CHECK_GUARD(x0);
  sdw_test_free_guarded(out);
  sdw_test_free_guarded(x0);
  free_inputs(&in);
  cJSON_Delete(root);
  sdw_safetensors_close(st);
}

SDW_TEST(ddim_diffusers_sd_settings_match_goldens) {
  sdw_ddim_config c = sdw_ddim_config_diffusers_sd();
  check_flavor("ddim", &c, 1.0, "eta1");
}

SDW_TEST(ddim_seed_matches_goldens) {
  sdw_ddim_config c = sdw_ddim_config_seed();
  check_flavor("seed_ddim", &c, 0.5, "eta0p5");
}

/* The seed's eta formula differs from DDIM's: the direction term keeps
 * sqrt(1 - a_prev) and sigma*noise is added on top. With noise = 0 the
 * seed's eta step therefore equals its eta = 0 step, while diffusers'
 * shrinks the direction. Reference: the formulas of SEED.md 1.11 and
 * diffusers' step() evaluated here in double for one element. */
SDW_TEST(ddim_seed_eta_adds_noise_without_shrinking_direction) {
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &scfg));
  sdw_ddim_config cs = sdw_ddim_config_seed(), cd = sdw_ddim_config_diffusers_sd();
  sdw_ddim ds, dd;
  CHECK_OK(sdw_ddim_init(&ds, &s, &cs, 10));
  CHECK_OK(sdw_ddim_init(&dd, &s, &cd, 10));
  float x = 0.75f, e = -0.5f, z = 0.0f, o1, o2;
  CHECK_OK(sdw_ddim_step(&ds, 500, &e, &x, 0.0, NULL, &o1, NULL, 1));
  CHECK_OK(sdw_ddim_step(&ds, 500, &e, &x, 0.8, &z, &o2, NULL, 1));
  CHECK(o1 == o2);
  /* diffusers (timestep 501 -> 401): the direction shrinks to
   * sqrt(1 - a_prev - eta^2 var). */
  CHECK_OK(sdw_ddim_step(&dd, 501, &e, &x, 0.8, &z, &o2, NULL, 1));
  double at = s.acp[501], ap = s.acp[401];
  double x0 = (0.75 - sqrt(1 - at) * -0.5) / sqrt(at);
  double var = (1 - ap) / (1 - at) * (1 - at / ap);
  double want = sqrt(ap) * x0 + sqrt(1 - ap - 0.64 * var) * -0.5;
  CHECK(fabs(o2 - want) <= 1e-6 * fabs(want));
  /* clamp_pred_x0 clamps the predicted x0 to [-1, 1]. */
  cs.clamp_pred_x0 = true;
  sdw_ddim dc;
  CHECK_OK(sdw_ddim_init(&dc, &s, &cs, 10));
  float big = 10.0f, px0;
  CHECK_OK(sdw_ddim_step(&dc, 900, &e, &big, 0.0, NULL, &o1, &px0, 1));
  CHECK(px0 == 1.0f);
  CHECK(fabsf(o1 - (float)(sqrt(s.acp[800]) * 1.0 + sqrt(1 - s.acp[800]) * -0.5)) <= 1e-6f);
  sdw_ddim_free(&dc);
  sdw_ddim_free(&ds);
  sdw_ddim_free(&dd);
  sdw_noise_schedule_free(&s);
}

SDW_TEST(ddim_rejects_bad_requests) {
  sdw_schedule_config scfg = sdw_schedule_config_sd();
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &scfg));
  sdw_ddim_config c = sdw_ddim_config_diffusers_sd();
  sdw_ddim d;
  CHECK(sdw_ddim_init(&d, &s, &c, 0) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_ddim_init(&d, &s, &c, 1001) == SDW_ERR_INVALID_ARGUMENT);
  /* leading with n = 1000 and offset 1 would ask for timestep 1000. */
  CHECK(sdw_ddim_init(&d, &s, &c, 1000) == SDW_ERR_INVALID_ARGUMENT);
  CHECK_OK(sdw_ddim_init(&d, &s, &c, 10));
  float x = 0, e = 0, o;
  CHECK(sdw_ddim_step(&d, 901, &e, &x, 1.0, NULL, &o, NULL, 1) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_ddim_step(&d, 1000, &e, &x, 0.0, NULL, &o, NULL, 1) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_ddim_step(&d, 901, &e, &x, -1.0, NULL, &o, NULL, 1) == SDW_ERR_INVALID_ARGUMENT);
  sdw_ddim_free(&d);
  sdw_noise_schedule_free(&s);
}
