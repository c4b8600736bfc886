/* core/diffusion/txt2img: the text-to-image pipeline.
 *
 *  - torch-cpu starting noise equals torch.randn([1, 4, 64, 64]) from
 *    torch.Generator("cpu").manual_seed(s) bit for bit for s = 0, 42, 2^32-1
 *    (tests/data/goldens/torch_rng, values from real torch): the noise of the
 *    seed's inference.py at 512x512;
 *  - whole runs on the tiny golden parts equal diffusers' StableDiffusionPipeline
 *    (tests/data/goldens/txt2img-tiny, tools/gen_txt2img_golden.py) with two
 *    images in one batch (each image depends on its own seed alone);
 *  - the conversion to 8-bit RGB and the settings checks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"
#include "core/diffusion/txt2img.h"
#include "kernels/ops.h"
#include "tests/test.h"

static sdw_safetensors *open_golden(const char *bundle) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/%s/io.safetensors", sdw_test_data_dir(), bundle);
  sdw_safetensors *st = NULL;
  if (sdw_safetensors_open(path, &st) != SDW_OK)
    sdw_test_fail(__FILE__, __LINE__, "open %s: %s", path, sdw_last_error());
  return st;
}

SDW_TEST(txt2img_torch_cpu_noise_is_torch_randn) {
  sdw_safetensors *st = open_golden("torch_rng");
  REQUIRE(st);
  static const uint64_t seeds[] = {0, 42, 4294967295u};
  const int64_t n = 4 * 64 * 64;
  float *got = malloc((size_t)n * sizeof(float));
  REQUIRE(got);
  for (int i = 0; i < 3; i++) {
    char name[64];
    snprintf(name, sizeof name, "randn.avx2.s%llu.1x4x64x64", (unsigned long long)seeds[i]);
    const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
    CHECK_MSG(e && e->numel == n && e->dtype == SDW_F32, "golden %s", name);
    if (!e || e->numel != n) continue;
    sdw_txt2img_noise(SDW_TXT2IMG_RNG_TORCH_CPU, seeds[i], got, n);
    /* exact: the point is torch's bits, any tolerance would hide a wrong rounding */
    CHECK_MSG(memcmp(got, e->data, (size_t)n * sizeof(float)) == 0, "seed %llu differs",
              (unsigned long long)seeds[i]);
  }
  /* philox: a pure function of the seed, and another stream than torch's */
  float *again = malloc((size_t)n * sizeof(float));
  REQUIRE(again);
  sdw_txt2img_noise(SDW_TXT2IMG_RNG_PHILOX, 42, got, n);
  sdw_txt2img_noise(SDW_TXT2IMG_RNG_PHILOX, 42, again, n);
  CHECK(memcmp(got, again, (size_t)n * sizeof(float)) == 0);
  sdw_txt2img_noise(SDW_TXT2IMG_RNG_TORCH_CPU, 42, again, n);
  CHECK(memcmp(got, again, (size_t)n * sizeof(float)) != 0);
  free(again);
  free(got);
  sdw_safetensors_close(st);
}

SDW_TEST(txt2img_rgb8_as_diffusers) {
  /* diffusers: round((x / 2 + 0.5).clamp(0, 1) * 255) in float32, half to
   * even: x = 0 -> 127.5 -> 128 (the even neighbour); -0.5 -> 63.75 -> 64;
   * 0.5 -> 191.25 -> 191; out-of-range values and NaN clamp. */
  const float plane[] = {0.0f, -1.0f, 1.0f, -3.0f, 2.5f, NAN, -0.5f, 0.5f};
  const uint8_t want[] = {128, 0, 255, 0, 255, 0, 64, 191};
  enum { N = 8 };
  float image[3 * N];
  for (int c = 0; c < 3; c++)
    memcpy(image + c * N, plane, sizeof plane);
  uint8_t rgb[3 * N];
  sdw_txt2img_to_rgb8(image, 1, N, rgb);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < 3; c++)
      CHECK_MSG(rgb[i * 3 + c] == want[i], "pixel %d channel %d: %d, want %d", i, c, rgb[i * 3 + c],
                want[i]);
}

/* The tiny SD 1.x parts: sd15-unet-tiny, clip-text-tiny, vae-tiny. */
static sdw_txt2img *open_tiny(sdw_ctx *ctx) {
  char unet[1024], te[1024], vae[1024];
  snprintf(unet, sizeof unet, "%s/goldens/sd15-unet-tiny", sdw_test_data_dir());
  snprintf(te, sizeof te, "%s/goldens/clip-text-tiny", sdw_test_data_dir());
  snprintf(vae, sizeof vae, "%s/goldens/vae-tiny", sdw_test_data_dir());
  sdw_txt2img_source src = {.model = unet,
                            .text_encoder = te,
                            .vae = vae,
                            .tokenizer = SDW_TOKENIZER_CLIP,
                            .ema = -1,
                            .model_hash = false};
  sdw_txt2img *p = NULL;
  CHECK_OK(sdw_txt2img_open(ctx, &src, &p));
  return p;
}

/* sdw's 8-bit pixels against the golden's float64 pipeline output x in
 * [0, 1]: |rgb - 255 x| <= 0.51. A pixel must round as the float64 run does
 * unless it lies within 0.01 levels of a rounding boundary; diffusers' own
 * float32 run stays within 0.0015 levels of its float64 run on these cases
 * (the bundle's README), and sdw's float32 error is of the same kind. */
static void check_image(const sdw_safetensors *st, const char *name, const uint8_t *rgb,
                        int64_t values) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  CHECK_MSG(e && e->dtype == SDW_F64 && e->numel == values, "golden %s", name);
  if (!e || e->numel != values) return;
  double worst = 0;
  for (int64_t i = 0; i < values; i++) {
    double x;
    memcpy(&x, (const char *)e->data + 8 * i, 8);
    double d = fabs(rgb[i] - 255.0 * x);
    if (d > worst) worst = d;
  }
  CHECK_MSG(worst <= 0.51, "%s: max |sdw - 255 x_f64| = %.4f levels", name, worst);
}

SDW_TEST(txt2img_matches_diffusers_pipeline) {
  sdw_safetensors *st = open_golden("txt2img-tiny");
  REQUIRE(st);
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_txt2img *p = open_tiny(ctx);
  REQUIRE(p);
  CHECK(!sdw_txt2img_is_seed_model(p));
  CHECK(sdw_txt2img_size_multiple(p) == 16); /* VAE f=2 x 2^(4 UNet levels - 1) */

  /* cases ddim_s42 and ddim_s43 (DDIM with diffusers' SD 1.x config, 4 steps,
   * CFG 7.5, 64x64, no negative) in one batch of two: each image must come out
   * as when made alone (tests/cli/sample.sh covers the other cases) */
  sdw_txt2img_settings s = sdw_txt2img_settings_default();
  s.width = s.height = 64;
  s.steps = 4;
  s.rng = SDW_TXT2IMG_RNG_TORCH_CPU;
  const char *fox = "a red fox in the snow, photograph";
  sdw_txt2img_job jobs[2] = {{fox, "", 42}, {fox, NULL, 43}};
  uint8_t *rgb = malloc(2 * 64 * 64 * 3);
  REQUIRE(rgb);
  CHECK_OK(sdw_txt2img_generate(p, &s, jobs, 2, NULL, rgb));
  check_image(st, "ddim_s42.image_f64", rgb, 64 * 64 * 3);
  check_image(st, "ddim_s43.image_f64", rgb + 64 * 64 * 3, 64 * 64 * 3);

  free(rgb);
  sdw_txt2img_free(p);
  sdw_ctx_destroy(ctx);
  sdw_safetensors_close(st);
}

SDW_TEST(txt2img_check_refuses_what_the_model_cannot_do) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_txt2img *p = open_tiny(ctx);
  REQUIRE(p);
  sdw_txt2img_settings s = sdw_txt2img_settings_default();
  CHECK_OK(sdw_txt2img_check(p, &s));
  s.width = 72; /* a multiple of 8 but not of 16 */
  CHECK(sdw_txt2img_check(p, &s) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "multiples of 16") != NULL);
  s = sdw_txt2img_settings_default();
  s.karras = true; /* with DDIM */
  CHECK(sdw_txt2img_check(p, &s) == SDW_ERR_INVALID_ARGUMENT);
  s = sdw_txt2img_settings_default();
  s.sampler = SDW_SAMPLER_EULER;
  s.eta = 0.5;
  CHECK(sdw_txt2img_check(p, &s) == SDW_ERR_INVALID_ARGUMENT);
  s = sdw_txt2img_settings_default();
  s.steps = 1000; /* diffusers' DDIM with steps_offset 1 would need timestep 1000 */
  CHECK(sdw_txt2img_check(p, &s) == SDW_ERR_INVALID_ARGUMENT);
  s.flavor = SDW_TXT2IMG_FLAVOR_SEED; /* the seed's DDIM has no offset */
  CHECK_OK(sdw_txt2img_check(p, &s));
  /* a cancelled call stops before any work */
  atomic_int cancel = 1;
  sdw_txt2img_hooks hooks = {.cancel = &cancel};
  s = sdw_txt2img_settings_default();
  s.width = s.height = 16;
  sdw_txt2img_job job = {"x", NULL, 1};
  uint8_t rgb[16 * 16 * 3];
  CHECK(sdw_txt2img_generate(p, &s, &job, 1, &hooks, rgb) == SDW_ERR_INTERRUPTED);
  sdw_txt2img_free(p);
  sdw_ctx_destroy(ctx);
}
