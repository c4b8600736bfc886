/* core/diffusion/schedule: DDPM betas, alphas_cumprod, add_noise, SNR and
 * the timestep-spacing helpers, against the `schedulers` golden bundle
 * (diffusers v0.25.1 DDPMScheduler and the seed's DDPMScheduler, torch
 * 1.13 CPU; tests/data/goldens/schedulers/README.txt).
 *
 * Tolerances (normwise relative error, the README's metric):
 *  - float32 tables: bit equality with torch's values. We reproduce torch's
 *    linspace and cumprod operation for operation, so any difference is a bug.
 *  - float64 tables vs the float64 goldens: 1e-14. Same formulas in double;
 *    only the order of a few roundings can differ (a few ulp of 1e-16).
 *  - outputs computed from the float32 schedule vs the float64 goldens: 1e-6.
 *    The float32 alphas_cumprod drift from the float64 ones by up to
 *    4.7e-7 (README table); everything after is double with one float
 *    rounding (6e-8).
 *  - outputs computed from the float64 schedule vs the float64 goldens:
 *    1e-7: exact formulas in double, one rounding to float32 per element
 *    (2^-24 = 6e-8 relative).
 *  - outputs vs the float32 goldens: 1e-6 (the reference rounds its own
 *    float32 products and sums, a few 6e-8 each). */
#include <math.h>
#include <string.h>

#include "core/diffusion/schedule.h"
#include "tests/test.h"
#include "tests/test_sched_util.h"

SDW_TEST(schedule_float32_tables_equal_torch_bits) {
  sdw_safetensors *st = sg_open("schedulers");
  REQUIRE(st);
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
  int64_t n = 0;
  float *betas = sg_f32(st, "ddpm.betas", &n);
  float *acp = sg_f32(st, "ddpm.alphas_cumprod", NULL);
  float *seed_acp = sg_f32(st, "seed_ddpm.alphas_cumprod", NULL);
  REQUIRE(betas && acp && seed_acp && n == 1000 && s.num_train_timesteps == 1000);
  int bad_b = 0, bad_a = 0, bad_s = 0;
  for (int i = 0; i < 1000; i++) {
    bad_b += memcmp(&betas[i], &s.betas[i], 4) != 0;
    bad_a += memcmp(&acp[i], &s.alphas_cumprod[i], 4) != 0;
    bad_s += memcmp(&seed_acp[i], &s.alphas_cumprod[i], 4) != 0;
  }
  CHECK_MSG(bad_b == 0, "%d betas differ from torch's", bad_b);
  CHECK_MSG(bad_a == 0, "%d alphas_cumprod differ from torch's", bad_a);
  CHECK_MSG(bad_s == 0, "%d alphas_cumprod differ from the seed's", bad_s);
  /* SEED.md 1.10: acp_0 = 0.99915, acp_999 ~ 0.004660. */
  CHECK(fabs(s.alphas_cumprod[0] - 0.99915) < 1e-6);
  CHECK(fabs(s.alphas_cumprod[999] - 0.004660) < 1e-5);
  free(betas);
  free(acp);
  free(seed_acp);
  sdw_noise_schedule_free(&s);
  sdw_safetensors_close(st);
}

SDW_TEST(schedule_float64_tables_match_float64_goldens) {
  sdw_safetensors *st = sg_open("schedulers");
  REQUIRE(st);
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  cfg.precision = SDW_SCHEDULE_F64;
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
  double *b64 = sg_f64(st, "ddpm.betas_f64", NULL);
  double *a64 = sg_f64(st, "ddpm.alphas_cumprod_f64", NULL);
  REQUIRE(b64 && a64);
  SG_CHECK_REL(sdw_test_rel_err_f64(s.betas_f64, b64, 1000), 1e-14, "betas_f64");
  SG_CHECK_REL(sdw_test_rel_err_f64(s.alphas_cumprod_f64, a64, 1000), 1e-14, "alphas_cumprod_f64");
  CHECK(s.acp == s.alphas_cumprod_f64);
  /* The float32 table against float64 (README: 4.655e-07). */
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(s.alphas_cumprod, a64, 1000), 1e-6, "alphas_cumprod f32");
  free(b64);
  free(a64);
  sdw_noise_schedule_free(&s);
  sdw_safetensors_close(st);
}

static void check_add_noise(sdw_schedule_precision precision, double tol_f64) {
  sdw_safetensors *st = sg_open("schedulers");
  REQUIRE(st);
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  cfg.precision = precision;
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
  int64_t n = 0, nt = 0;
  float *x0 = sg_f32(st, "x0", &n);
  float *noise = sg_f32(st, "noise", NULL);
  int64_t *t = sg_i64(st, "t_add", &nt);
  float *want32 = sg_f32(st, "ddpm.add_noise", NULL);
  double *want64 = sg_f64(st, "ddpm.add_noise_f64", NULL);
  float *seed32 = sg_f32(st, "seed_ddpm.add_noise", NULL);
  float *snr32 = sg_f32(st, "seed_ddpm.snr", NULL);
  REQUIRE(x0 && noise && t && want32 && want64 && seed32 && snr32 && nt == 2 && n == 2048);
  float *out = sdw_test_alloc_guarded((size_t)n, "add_noise out");
  CHECK_OK(sdw_noise_schedule_add_noise(&s, x0, noise, t, nt, n / nt, out));
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(out, want64, (size_t)n), tol_f64, "add_noise vs f64");
  SG_CHECK_REL(sdw_test_rel_err_f32(out, want32, (size_t)n), 1e-6, "add_noise vs diffusers f32");
  SG_CHECK_REL(sdw_test_rel_err_f32(out, seed32, (size_t)n), 1e-6, "add_noise vs seed f32");
  /* In place over x0 gives the same. */
  CHECK_OK(sdw_noise_schedule_add_noise(&s, x0, noise, t, nt, n / nt, x0));
  CHECK(memcmp(x0, out, sizeof(float) * (size_t)n) == 0);
  double snr[2];
  CHECK_OK(sdw_noise_schedule_snr(&s, t, 2, snr));
  if (precision == SDW_SCHEDULE_F32) {
    /* The seed's float32 get_snr from the same float32 table. */
    double want_snr[2] = {snr32[0], snr32[1]};
    SG_CHECK_REL(sdw_test_rel_err_f64(snr, want_snr, 2), 1e-6, "seed get_snr");
  } else {
    /* There is no float64 SNR golden: the seed's formula applied to the
     * float64 golden table (SNR amplifies the table's float32 drift, so the
     * float32 golden is no reference for this one). */
    double *a64 = sg_f64(st, "ddpm.alphas_cumprod_f64", NULL);
    REQUIRE(a64);
    double want_snr[2];
    for (int i = 0; i < 2; i++)
      want_snr[i] = a64[t[i]] / fmax(1.0 - a64[t[i]], 1e-6);
    SG_CHECK_REL(sdw_test_rel_err_f64(snr, want_snr, 2), 1e-13, "get_snr f64");
    free(a64);
  }
  CHECK_GUARD(out);
  sdw_test_free_guarded(out);
  free(x0);
  free(noise);
  free(t);
  free(want32);
  free(want64);
  free(seed32);
  free(snr32);
  sdw_noise_schedule_free(&s);
  sdw_safetensors_close(st);
}

SDW_TEST(schedule_add_noise_and_snr_float32_schedule) { check_add_noise(SDW_SCHEDULE_F32, 1e-6); }
SDW_TEST(schedule_add_noise_and_snr_float64_schedule) { check_add_noise(SDW_SCHEDULE_F64, 1e-7); }

/* SNR's clamp: at t = 0 1 - acp = 8.5e-4 is above 1e-6, so the clamp only
 * shows with a schedule whose first beta is tiny. */
SDW_TEST(schedule_snr_clamps_the_denominator) {
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  cfg.beta_schedule = SDW_BETA_LINEAR;
  cfg.beta_start = 1e-8;
  cfg.beta_end = 0.02;
  cfg.precision = SDW_SCHEDULE_F64;
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
  int64_t t0 = 0;
  double snr = 0;
  CHECK_OK(sdw_noise_schedule_snr(&s, &t0, 1, &snr));
  CHECK(fabs(snr - s.alphas_cumprod_f64[0] / 1e-6) <= 1e-9 * snr);
  int64_t bad = 1000;
  CHECK(sdw_noise_schedule_snr(&s, &bad, 1, &snr) == SDW_ERR_INVALID_ARGUMENT);
  sdw_noise_schedule_free(&s);
}

/* The linear schedule: betas = linspace(b0, b1, T). Reference: the
 * definition evaluated in double; the float32 table must be within one
 * float rounding of it (torch's linspace rounds each element once or twice:
 * 2.5e-7 relative), the float64 one within 1e-15. */
SDW_TEST(schedule_linear_betas_follow_linspace) {
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  cfg.beta_schedule = SDW_BETA_LINEAR;
  cfg.beta_start = 0.0001;
  cfg.beta_end = 0.02;
  cfg.num_train_timesteps = 1000;
  sdw_noise_schedule s;
  CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
  double ref[1000], acp = 1.0, ref_acp[1000];
  for (int i = 0; i < 1000; i++) {
    ref[i] = 0.0001 + (0.02 - 0.0001) * i / 999.0;
    acp *= 1.0 - ref[i];
    ref_acp[i] = acp;
  }
  SG_CHECK_REL(sdw_test_rel_err_f32_f64(s.betas, ref, 1000), 2.5e-7, "linear betas f32");
  SG_CHECK_REL(sdw_test_rel_err_f64(s.betas_f64, ref, 1000), 1e-15, "linear betas f64");
  SG_CHECK_REL(sdw_test_rel_err_f64(s.alphas_cumprod_f64, ref_acp, 1000), 1e-14, "linear acp f64");
  sdw_noise_schedule_free(&s);
}

/* Other schedules against diffusers' DDPMScheduler (the `samplers` bundle):
 * the linear schedule and the SD schedule over 777 steps (777 % 16 = 9
 * elements in torch linspace's scalar remainder). Bit equality, as above. */
SDW_TEST(schedule_other_schedules_equal_torch_bits) {
  sdw_safetensors *st = sg_open("samplers");
  REQUIRE(st);
  const char *tags[] = {"linear", "scaled_linear.T777"};
  for (int k = 0; k < 2; k++) {
    sdw_schedule_config cfg = sdw_schedule_config_sd();
    if (k == 0) {
      cfg.beta_schedule = SDW_BETA_LINEAR;
      cfg.beta_start = 0.0001;
      cfg.beta_end = 0.02;
    } else {
      cfg.num_train_timesteps = 777;
    }
    sdw_noise_schedule s;
    CHECK_OK(sdw_noise_schedule_init(&s, &cfg));
    char key[96];
    int64_t n = 0;
    snprintf(key, sizeof key, "schedule.%s.betas", tags[k]);
    float *b = sg_f32(st, key, &n);
    snprintf(key, sizeof key, "schedule.%s.alphas_cumprod", tags[k]);
    float *a = sg_f32(st, key, NULL);
    REQUIRE(b && a && n == s.num_train_timesteps);
    int bad_b = 0, bad_a = 0;
    for (int64_t i = 0; i < n; i++) {
      bad_b += memcmp(&b[i], &s.betas[i], 4) != 0;
      bad_a += memcmp(&a[i], &s.alphas_cumprod[i], 4) != 0;
    }
    CHECK_MSG(bad_b == 0 && bad_a == 0, "%s: %d betas and %d alphas_cumprod differ from torch's",
              tags[k], bad_b, bad_a);
    free(b);
    free(a);
    sdw_noise_schedule_free(&s);
  }
  sdw_safetensors_close(st);
}

SDW_TEST(schedule_rejects_bad_configs) {
  sdw_noise_schedule s;
  sdw_schedule_config cfg = sdw_schedule_config_sd();
  cfg.num_train_timesteps = 1;
  CHECK(sdw_noise_schedule_init(&s, &cfg) == SDW_ERR_INVALID_ARGUMENT);
  cfg = sdw_schedule_config_sd();
  cfg.beta_end = 1.5;
  CHECK(sdw_noise_schedule_init(&s, &cfg) == SDW_ERR_INVALID_ARGUMENT);
  cfg = sdw_schedule_config_sd();
  cfg.beta_start = 0.1;
  cfg.beta_end = 0.01;
  CHECK(sdw_noise_schedule_init(&s, &cfg) == SDW_ERR_INVALID_ARGUMENT);
  sdw_noise_schedule_free(&s); /* safe on a zeroed schedule */
}

/* numpy facts the spacings rely on (values worked out by hand from numpy's
 * definitions): round half to even; np.arange(1000, 0, -1000/61) has 62
 * elements, the fill formula start + i*((start+step)-start). */
SDW_TEST(schedule_numpy_helpers) {
  CHECK(sdw_round_half_even(2.5) == 2.0 && sdw_round_half_even(3.5) == 4.0);
  CHECK(sdw_round_half_even(-0.5) == 0.0 && sdw_round_half_even(0.4999) == 0.0);
  CHECK(sdw_np_linspace_at(0, 999, 10, 9) == 999.0);
  CHECK(sdw_np_linspace_at(0, 999, 10, 1) == 111.0);
  CHECK(sdw_np_linspace_at(0, 999, 1, 0) == 0.0);
  double step = -1000.0 / 7.0;
  double delta = (1000.0 + step) - 1000.0;
  CHECK(sdw_np_arange_at(1000, step, 0) == 1000.0);
  CHECK(sdw_np_arange_at(1000, step, 1) == 1000.0 + step);
  CHECK(sdw_np_arange_at(1000, step, 5) == 1000.0 + 5.0 * delta);
  sdw_timestep_spacing sp;
  CHECK(sdw_timestep_spacing_from_name("trailing", &sp) && sp == SDW_SPACING_TRAILING);
  CHECK(!sdw_timestep_spacing_from_name("karras", &sp));
  CHECK(strcmp(sdw_timestep_spacing_name(SDW_SPACING_LINSPACE), "linspace") == 0);
}
