/* The VAE's training step (core/model/vae_train.c).
 *
 * Reference: diffusers' AutoencoderKL autograd in float64 on the vae-tiny
 * golden model (tests/data/goldens/vae-tiny/grads.safetensors,
 * tools/gen_vae_backward_golden.py): the loss of vae_train.h on two images
 * with fixed posterior noise and kl_weight 0.25 (large, so the KL term's
 * gradients weigh in the check), checked by the generator against
 * diffusers' own encode().latent_dist.sample() / kl() / decode() route.
 *
 * Error of a gradient: max|got - want| / max(max|want|, S), S = 1e-3 x the
 * largest golden gradient element. PyTorch's own float32 backward lands at
 * 4.4e-5 against float64 (the golden's f32_rel); the tolerance 5e-4 leaves
 * 10x headroom. A defect lands far above it: a dropped residual, a
 * transposed pad or a missing KL term is O(1) on some tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/safetensors.h"
#include "core/model/vae.h"
#include "core/model/vae_train.h"
#include "kernels/ops.h"
#include "tests/test.h"

static const double grad_tolerance = 5e-4;

/* Every gradient of g against the golden times factor; the worst error. */
static double check_grads(const sdw_vae *g, const sdw_safetensors *gold, double factor) {
  char key[SDW_PARAM_NAME_MAX + 16];
  double top = 0;
  for (int i = 0; i < g->params.count; i++) {
    snprintf(key, sizeof key, "grad.%s", g->params.items[i].name);
    const sdw_safetensors_entry *e = sdw_safetensors_find(gold, key);
    if (e && e->dtype == SDW_F64) top = fmax(top, sdw_test_max_abs_f64(e->data, e->numel));
  }
  const double scale = 1e-3 * top * factor;
  double worst = 0;
  int checked = 0;
  for (int i = 0; i < g->params.count; i++) {
    const sdw_param *p = &g->params.items[i];
    const int64_t n = sdw_tensor_numel(&p->value);
    snprintf(key, sizeof key, "grad.%s", p->name);
    const sdw_safetensors_entry *e = sdw_test_golden_tensor(gold, key, SDW_F64, n);
    if (!e) continue;
    const double *want = e->data;
    const float *got = p->value.data;
    double d = 0;
    for (int64_t u = 0; u < n; u++)
      d = fmax(d, fabs((double)got[u] - want[u] * factor));
    const double err = d / fmax(sdw_test_max_abs_f64(want, n) * factor, scale);
    worst = fmax(worst, err);
    CHECK_REL(err, grad_tolerance, p->name);
    checked++;
  }
  CHECK(checked == g->params.count && checked == 124);
  printf("    vae backward x%.0f: %d gradients, worst error %.3g (tolerance %g)\n", factor, checked,
         worst, grad_tolerance);
  return worst;
}

static double golden_scalar(const sdw_safetensors *gold, const char *name) {
  const sdw_safetensors_entry *e = sdw_test_golden_tensor(gold, name, SDW_F64, 1);
  return e ? *(const double *)e->data : NAN;
}

static sdw_tensor golden4(const sdw_safetensors *gold, const char *name) {
  const sdw_safetensors_entry *e = sdw_test_golden_tensor(gold, name, SDW_F32, -1);
  if (!e || e->ndim != 4) return (sdw_tensor){0};
  return sdw_tensor_4d((void *)e->data, SDW_F32, e->shape[0], e->shape[1], e->shape[2],
                       e->shape[3]);
}

SDW_TEST(vae_train_step_matches_diffusers_autograd) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/goldens/vae-tiny", sdw_test_data_dir());
  snprintf(path, sizeof path, "%s/grads.safetensors", dir);
  sdw_safetensors *gold = NULL;
  REQUIRE(sdw_safetensors_open(path, &gold) == SDW_OK);
  sdw_vae m, g;
  REQUIRE(sdw_vae_open(&m, ctx, dir, NULL, SDW_VAE_BOTH) == SDW_OK);
  REQUIRE(sdw_vae_grads_create(&g, &m) == SDW_OK);
  sdw_tensor image = golden4(gold, "image"), noise = golden4(gold, "noise");
  REQUIRE(image.data && noise.data);
  const double kl_weight = golden_scalar(gold, "kl_weight");
  const int64_t N = image.shape[0], H = image.shape[2], W = image.shape[3];
  /* an arena of exactly the advertised size must do */
  const size_t bytes = sdw_vae_train_arena_bytes(&m, N, H, W);
  sdw_arena *arena = NULL;
  REQUIRE(sdw_arena_create(&arena, "vae train test", bytes) == SDW_OK);
  float *recon_buf = sdw_test_alloc_guarded((size_t)(N * 3 * H * W), "recon");
  sdw_tensor recon = sdw_tensor_4d(recon_buf, SDW_F32, N, 3, H, W);

  CHECK_OK(sdw_vae_grads_zero(&g));
  sdw_vae_train_loss loss;
  CHECK_OK(sdw_vae_train_step(&m, &g, arena, &image, &noise, kl_weight, &loss, &recon));
  CHECK(sdw_arena_used(arena) == 0);
  printf("    loss %.6f rec %.6f kl %.6f (golden %.6f %.6f %.6f); arena peak %zu of %zu\n",
         loss.loss, loss.rec, loss.kl, golden_scalar(gold, "loss"), golden_scalar(gold, "rec"),
         golden_scalar(gold, "kl"), sdw_arena_peak(arena), bytes);
  /* float32 sums over 6144 squared errors: 1e-5 relative */
  CHECK_REL(fabs(loss.loss - golden_scalar(gold, "loss")) / golden_scalar(gold, "loss"), 1e-5,
            "loss");
  CHECK_REL(fabs(loss.rec - golden_scalar(gold, "rec")) / golden_scalar(gold, "rec"), 1e-5, "rec");
  CHECK_REL(fabs(loss.kl - golden_scalar(gold, "kl")) / golden_scalar(gold, "kl"), 1e-5, "kl");
  const sdw_safetensors_entry *rf =
      sdw_test_golden_tensor(gold, "recon_f64", SDW_F64, N * 3 * H * W);
  if (rf) {
    double d = 0, top = 0;
    for (int64_t i = 0; i < rf->numel; i++) {
      d = fmax(d, fabs(recon_buf[i] - ((const double *)rf->data)[i]));
      top = fmax(top, fabs(((const double *)rf->data)[i]));
    }
    CHECK_REL(d / top, 1e-5, "reconstruction");
  }
  check_grads(&g, gold, 1.0);
  /* gradients accumulate (kernels/ops.h): a second step doubles them */
  CHECK_OK(sdw_vae_train_step(&m, &g, arena, &image, &noise, kl_weight, NULL, NULL));
  check_grads(&g, gold, 2.0);

  /* bad shapes are errors, not crashes */
  sdw_tensor bad = sdw_tensor_4d(noise.data, SDW_F32, N, 4, H / 4, W);
  CHECK(sdw_vae_train_step(&m, &g, arena, &image, &bad, kl_weight, NULL, NULL) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_vae_train_step(&m, &g, arena, &image, &noise, -1.0, NULL, NULL) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK_GUARD(recon_buf);
  sdw_test_free_guarded(recon_buf);
  sdw_arena_destroy(arena);
  sdw_vae_free(&g);
  sdw_vae_free(&m);
  sdw_safetensors_close(gold);
  sdw_ctx_destroy(ctx);
}
