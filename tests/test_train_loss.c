/* The diffusion loss pieces (core/train/loss.h) against plain double
 * references and the seed's documented facts (SEED.md §2.3); the golden
 * end-to-end check (PyTorch's Min-SNR loss and gradients) is in
 * tests/test_train_step.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/diffusion/schedule.h"
#include "core/train/loss.h"
#include "kernels/ops.h"
#include "tests/test.h"

static bool open_sched(sdw_noise_schedule *s) {
  sdw_schedule_config c = sdw_schedule_config_sd();
  sdw_status st = sdw_noise_schedule_init(s, &c);
  CHECK_OK(st);
  return st == SDW_OK;
}

/* SEED.md §2.3 [derived]: the Min-SNR weight is below 1 exactly for
 * t < 147 with γ 5, t < 226 with 2.5, t < 255 with 2, t < 203 with 3. */
SDW_TEST(train_loss_min_snr_threshold_matches_seed) {
  sdw_noise_schedule s;
  REQUIRE(open_sched(&s));
  static const struct {
    double gamma;
    int first_full;
  } cases[] = {{5.0, 147}, {2.5, 226}, {2.0, 255}, {3.0, 203}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    for (int t = 0; t < 1000; t++) {
      double w = sdw_loss_min_snr_weight(&s, t, cases[c].gamma);
      CHECK_MSG((w < 1.0) == (t < cases[c].first_full), "gamma %g, t %d: weight %.9g",
                cases[c].gamma, t, w);
      CHECK(w > 0.0 && w <= 1.0);
    }
  }
  /* the weight itself, from the float32 alphas_cumprod in double */
  const double a = s.alphas_cumprod[10], snr = a / (1.0 - a);
  CHECK(fabs(sdw_loss_min_snr_weight(&s, 10, 5.0) - 5.0 / snr) <= 1e-15 * (5.0 / snr));
  sdw_noise_schedule_free(&s);
}

SDW_TEST(train_loss_weights) {
  sdw_noise_schedule s;
  REQUIRE(open_sched(&s));
  const int64_t t[4] = {0, 100, 146, 999};
  float w[4];
  sdw_loss_config c = sdw_loss_config_seed();
  CHECK(c.min_snr && c.min_snr_gamma == 5.0 && c.cfg_dropout == 0.05 && c.noise_offset == 0.0 &&
        c.grad_accum == 2);
  /* off: 1 / (N * accum) */
  c.min_snr = false;
  c.grad_accum = 2;
  CHECK_OK(sdw_loss_weights(&s, &c, t, 4, w));
  for (int i = 0; i < 4; i++)
    CHECK(w[i] == 0.125f);
  /* on: Min-SNR weight / (N * accum) */
  c.min_snr = true;
  c.grad_accum = 3;
  CHECK_OK(sdw_loss_weights(&s, &c, t, 4, w));
  for (int i = 0; i < 4; i++) {
    const double want = sdw_loss_min_snr_weight(&s, t[i], 5.0) / 12.0;
    CHECK(fabs(w[i] - want) <= 1e-7 * want);
  }
  CHECK(w[3] == (float)(1.0 / 12.0) && w[0] < w[1] && w[1] < w[2]);
  /* a timestep outside the schedule, a bad config */
  const int64_t bad[1] = {1000};
  CHECK(sdw_loss_weights(&s, &c, bad, 1, w) == SDW_ERR_INVALID_ARGUMENT);
  c.grad_accum = 0;
  CHECK(sdw_loss_weights(&s, &c, t, 4, w) == SDW_ERR_INVALID_ARGUMENT);
  c = sdw_loss_config_seed();
  c.min_snr_gamma = -1.0;
  CHECK(sdw_loss_config_validate(&c) == SDW_ERR_INVALID_ARGUMENT);
  c = sdw_loss_config_seed();
  c.cfg_dropout = 1.5;
  CHECK(sdw_loss_config_validate(&c) == SDW_ERR_INVALID_ARGUMENT);
  c = sdw_loss_config_seed();
  c.noise_offset = NAN;
  CHECK(sdw_loss_config_validate(&c) == SDW_ERR_INVALID_ARGUMENT);
  sdw_noise_schedule_free(&s);
}

/* loss and its gradient against a double reference; the gradient
 * accumulates into what deps held. Tolerance: 1e-6 (one float32 rounding of
 * each factor: mse[n] is rounded to float32 by the op, w[n] is float32). */
SDW_TEST(train_loss_eval_matches_double) {
  enum { N = 3, P = 4 * 5 * 6 };
  sdw_ctx *ctx = NULL;
  sdw_arena *arena = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  CHECK_OK(sdw_arena_create(&arena, "loss test", 1 << 20));
  REQUIRE(ctx && arena);
  sdw_test_rng rng = sdw_test_rng_make(5);
  float *pred = sdw_test_alloc_guarded(N * P, "pred"), *tgt = sdw_test_alloc_guarded(N * P, "tgt");
  float *deps = sdw_test_alloc_guarded(N * P, "deps");
  sdw_test_fill_normal(&rng, pred, N * P, 1.0f);
  sdw_test_fill_normal(&rng, tgt, N * P, 1.0f);
  sdw_test_fill_normal(&rng, deps, N * P, 0.01f);
  double *deps0 = malloc(N * P * sizeof *deps0);
  for (int i = 0; i < N * P; i++)
    deps0[i] = deps[i];
  const float w[N] = {0.1f, 0.25f, 0.03f};
  sdw_tensor tp = sdw_tensor_4d(pred, SDW_F32, N, 4, 5, 6);
  sdw_tensor tt = sdw_tensor_4d(tgt, SDW_F32, N, 4, 5, 6);
  sdw_tensor td = sdw_tensor_4d(deps, SDW_F32, N, 4, 5, 6);
  double loss = 0.0, per[N];
  CHECK_OK(sdw_loss_eval(ctx, arena, &tp, &tt, w, per, &loss, &td));
  CHECK(sdw_arena_used(arena) == 0);
  double want = 0.0;
  double *dwant = malloc(N * P * sizeof *dwant);
  for (int n = 0; n < N; n++) {
    double sum = 0.0;
    for (int i = 0; i < P; i++) {
      double d = (double)pred[n * P + i] - tgt[n * P + i];
      sum += d * d;
      dwant[n * P + i] = deps0[n * P + i] + (double)w[n] * 2.0 * d / P;
    }
    CHECK(fabs(per[n] - sum / P) <= 1e-6 * (sum / P));
    want += (double)w[n] * (sum / P);
  }
  CHECK(fabs(loss - want) <= 1e-6 * want);
  CHECK_REL(sdw_test_rel_err_f32_f64(deps, dwant, N * P), 1e-6, "dL/d eps_pred");
  /* forward only */
  double loss2 = 0.0;
  CHECK_OK(sdw_loss_eval(ctx, arena, &tp, &tt, w, NULL, &loss2, NULL));
  CHECK(loss2 == loss);
  CHECK_GUARD(pred);
  CHECK_GUARD(deps);
  sdw_test_free_guarded(pred);
  sdw_test_free_guarded(tgt);
  sdw_test_free_guarded(deps);
  free(deps0);
  free(dwant);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}

/* target = noise + k offset[n, c] over H, W; x_t = sqrt(acp) x0 +
 * sqrt(1 - acp) target (double reference from the same acp table; 1e-6:
 * float32 outputs of double arithmetic). */
SDW_TEST(train_loss_prepare_noise_offset) {
  enum { N = 2, C = 3, S = 10 };
  sdw_noise_schedule s;
  REQUIRE(open_sched(&s));
  sdw_test_rng rng = sdw_test_rng_make(8);
  float x0[N * C * S], noise[N * C * S], off[N * C], target[N * C * S], xt[N * C * S];
  sdw_test_fill_normal(&rng, x0, N * C * S, 1.0f);
  sdw_test_fill_normal(&rng, noise, N * C * S, 1.0f);
  sdw_test_fill_normal(&rng, off, N * C, 1.0f);
  const int64_t t[N] = {3, 700};
  sdw_loss_config c = sdw_loss_config_seed();
  c.noise_offset = 0.1;
  CHECK_OK(sdw_loss_prepare(&s, &c, x0, noise, off, t, N, C, S, target, xt));
  for (int n = 0; n < N; n++)
    for (int ch = 0; ch < C; ch++)
      for (int j = 0; j < S; j++) {
        const int i = (n * C + ch) * S + j;
        const double tg = (double)noise[i] + 0.1 * off[n * C + ch];
        const double a = s.acp[t[n]];
        const double x = sqrt(a) * x0[i] + sqrt(1.0 - a) * tg;
        CHECK(fabs(target[i] - tg) <= 1e-6 * fabs(tg) + 1e-7);
        CHECK(fabs(xt[i] - x) <= 1e-6 * fabs(x) + 1e-7);
      }
  /* no offset (the seed): the target is the noise itself */
  c.noise_offset = 0.0;
  CHECK_OK(sdw_loss_prepare(&s, &c, x0, noise, off, t, N, C, S, target, xt));
  CHECK(memcmp(target, noise, sizeof noise) == 0);
  CHECK_OK(sdw_loss_prepare(&s, &c, x0, noise, NULL, t, N, C, S, target, xt));
  CHECK(memcmp(target, noise, sizeof noise) == 0);
  const int64_t bad[N] = {3, -1};
  CHECK(sdw_loss_prepare(&s, &c, x0, noise, NULL, bad, N, C, S, target, xt) ==
        SDW_ERR_INVALID_ARGUMENT);
  sdw_noise_schedule_free(&s);
}

SDW_TEST(train_loss_caption_dropout) {
  float ctx[4 * 6], uncond[6];
  for (int i = 0; i < 24; i++)
    ctx[i] = (float)i;
  for (int i = 0; i < 6; i++)
    uncond[i] = -1.0f - (float)i;
  const uint8_t drop[4] = {0, 1, 0, 1};
  CHECK(sdw_loss_caption_dropout(drop, 4, uncond, 6, ctx) == 2);
  for (int n = 0; n < 4; n++)
    for (int i = 0; i < 6; i++)
      CHECK(ctx[n * 6 + i] == (drop[n] ? uncond[i] : (float)(n * 6 + i)));
}

/* Draws: deterministic per stream position, timesteps uniform over [0, T),
 * dropout at rate p, standard normal noise; the stream advances by exactly
 * what was drawn. The statistical bounds are ~5 standard deviations for
 * the sample sizes used (and the seed is fixed, so they cannot flake). */
SDW_TEST(train_loss_draws) {
  enum { N = 20000, C = 4, P = 16 };
  int64_t *t = malloc(N * sizeof *t);
  uint8_t *drop = malloc(N);
  float *noise = malloc((size_t)N * P * sizeof *noise), *off = malloc(N * C * sizeof *off);
  REQUIRE(t && drop && noise && off);
  sdw_loss_config c = sdw_loss_config_seed();
  sdw_rng rng = sdw_rng_make(1234, 0);
  sdw_loss_draw(&rng, &c, 1000, N, C, P, t, drop, noise, off);
  CHECK(rng.offset == (uint64_t)(N + N + N * P + N * C));
  int bins[10] = {0}, dropped = 0;
  for (int i = 0; i < N; i++) {
    CHECK(t[i] >= 0 && t[i] < 1000);
    if (t[i] >= 0 && t[i] < 1000) bins[t[i] / 100]++;
    dropped += drop[i];
  }
  for (int b = 0; b < 10; b++) /* 2000 expected, sd ~42 */
    CHECK_MSG(abs(bins[b] - 2000) < 220, "timestep bin %d: %d", b, bins[b]);
  CHECK_MSG(abs(dropped - 1000) < 160, "dropped %d of 20000 at p 0.05", dropped); /* sd ~31 */
  double m = 0.0, v = 0.0;
  for (int i = 0; i < N * P; i++) {
    m += noise[i];
    v += (double)noise[i] * noise[i];
  }
  m /= N * P;
  v = v / (N * P) - m * m;
  CHECK(fabs(m) < 0.01 && fabs(v - 1.0) < 0.02);
  /* the same stream position gives the same draws; no offset draws no more */
  sdw_rng again = sdw_rng_make(1234, 0);
  int64_t t2[8];
  uint8_t d2[8];
  float n2[8 * P];
  sdw_loss_draw(&again, &c, 1000, 8, C, P, t2, d2, n2, NULL);
  CHECK(again.offset == (uint64_t)(8 + 8 + 8 * P));
  CHECK(memcmp(t2, t, sizeof t2) == 0);
  /* p = 0 never drops, p = 1 always */
  c.cfg_dropout = 0.0;
  sdw_loss_draw(&again, &c, 1000, 8, C, P, t2, d2, n2, NULL);
  for (int i = 0; i < 8; i++)
    CHECK(d2[i] == 0);
  c.cfg_dropout = 1.0;
  sdw_loss_draw(&again, &c, 1000, 8, C, P, t2, d2, n2, NULL);
  for (int i = 0; i < 8; i++)
    CHECK(d2[i] == 1);
  free(t);
  free(drop);
  free(noise);
  free(off);
}
