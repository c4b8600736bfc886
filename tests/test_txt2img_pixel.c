/* core/diffusion/txt2img in pixel space (no VAE: the demo's models).
 *
 * A seed-topology UNet whose weights are all zero predicts eps = 0 exactly
 * (conv_out's weight and bias are zero). The seed's DDIM with 2 steps visits
 * t = 500 then t = 0: x0 = x / sqrt(acp[500]), then x' = sqrt(acp[0]) x0,
 * then x0 = x' / sqrt(acp[0]) and (prev < 0) a_prev = 1, so the sample is
 * noise / sqrt(acp[500]). In pixel space that sample IS the image: the test
 * computes acp in double from the scaled-linear schedule's definition
 * (betas = linspace(sqrt(0.00085), sqrt(0.012), 1000)^2) and the expected
 * 8-bit pixels from the starting noise, independently of the sampler code.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/txt2img.h"
#include "kernels/ops.h"
#include "tests/test.h"

typedef struct pixel_parts {
  sdw_tokenizer *tok;
  sdw_clip_text te;
  sdw_unet unet;
  bool te_ok, unet_ok;
} pixel_parts;

static bool parts_make(sdw_ctx *ctx, pixel_parts *pp, int channels) {
  memset(pp, 0, sizeof *pp);
  char vocab[4096];
  CHECK_OK(sdw_tokenizer_default_vocab(vocab, sizeof vocab));
  CHECK_OK(sdw_tokenizer_load(vocab, SDW_TOKENIZER_CLIP, &pp->tok));
  if (!pp->tok) return false;
  sdw_clip_text_config tc = sdw_clip_text_config_vit_l14();
  tc.hidden_size = 64;
  tc.num_layers = 1;
  tc.num_heads = 2;
  tc.intermediate_size = 64;
  CHECK_OK(sdw_clip_text_init(&pp->te, ctx, &tc));
  pp->te_ok = true;
  sdw_unet_config uc;
  CHECK_OK(sdw_unet_preset("seed-tiny", &uc));
  uc.in_channels = uc.out_channels = channels;
  uc.context_dim = 64;
  CHECK_OK(sdw_unet_create(&pp->unet, ctx, &uc));
  pp->unet_ok = true;
  return true;
}

static void parts_free(pixel_parts *pp) {
  if (pp->unet_ok) sdw_unet_free(&pp->unet);
  if (pp->te_ok) sdw_clip_text_free(&pp->te);
  if (pp->tok) sdw_tokenizer_free(pp->tok);
}

SDW_TEST(txt2img_pixel_space_sample_is_the_image) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  pixel_parts pp;
  REQUIRE(parts_make(ctx, &pp, 3));
  sdw_txt2img_parts parts = {pp.tok, &pp.te, &pp.unet, NULL};
  sdw_txt2img *p = NULL;
  CHECK_OK(sdw_txt2img_create(ctx, &parts, &p));
  REQUIRE(p);
  CHECK(sdw_txt2img_is_pixel_space(p));
  CHECK(sdw_txt2img_size_multiple(p) == 2); /* f = 1 x 2^(2 levels - 1) */

  enum { S = 16 };
  sdw_txt2img_settings s = sdw_txt2img_settings_default();
  s.width = s.height = S;
  s.steps = 2;
  s.flavor = SDW_TXT2IMG_FLAVOR_SEED;
  sdw_txt2img_job job = {"red apple", NULL, 7};
  uint8_t rgb[S * S * 3];
  CHECK_OK(sdw_txt2img_generate(p, &s, &job, 1, NULL, rgb));

  double acp = 1.0, lo = sqrt(0.00085), hi = sqrt(0.012);
  for (int t = 0; t <= 500; t++) {
    double b = lo + (hi - lo) * t / 999.0;
    acp *= 1.0 - b * b;
  }
  float noise[3 * S * S];
  sdw_txt2img_noise(SDW_TXT2IMG_RNG_PHILOX, 7, noise, 3 * S * S);
  /* |rgb - 255 v| <= 0.51 levels: float32 sampling arithmetic moves v by
   * ~1e-6, far below the 0.01-level margin beyond the rounding's 0.5 */
  double worst = 0;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < S * S; i++) {
      double v = noise[c * S * S + i] / sqrt(acp) / 2 + 0.5;
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      double d = fabs(rgb[i * 3 + c] - 255 * v);
      if (d > worst) worst = d;
    }
  CHECK_MSG(worst <= 0.51, "max |rgb - 255 v| = %.4f levels", worst);
  char buf[256];
  CHECK(strstr(sdw_txt2img_describe(p, buf, sizeof buf), "pixel space") != NULL);
  sdw_txt2img_free(p);
  parts_free(&pp);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(txt2img_pixel_space_needs_an_rgb_unet) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  pixel_parts pp;
  REQUIRE(parts_make(ctx, &pp, 4));
  sdw_txt2img_parts parts = {pp.tok, &pp.te, &pp.unet, NULL};
  sdw_txt2img *p = NULL;
  CHECK(sdw_txt2img_create(ctx, &parts, &p) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(p == NULL);
  CHECK(strstr(sdw_last_error(), "3 channels") != NULL);
  parts_free(&pp);
  sdw_ctx_destroy(ctx);
}
