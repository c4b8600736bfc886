/* The VAE (core/model/vae.c, vae_weights.c, vae_tiled.c).
 *
 * Reference: tests/data/goldens/vae-tiny, diffusers v0.25.1 AutoencoderKL
 * (block_out_channels 32/64, 1 layer per block, 32 groups, random weights),
 * run by PyTorch in float64 on the same weights and inputs (the *_f64
 * tensors); see its README.txt.
 *
 * Tolerance for the golden comparisons: 1e-5 normwise relative error
 * (max|got - want| / max|want|), the bound for the VAE. The README
 * measures PyTorch's own float32 run against float64 at 7e-7 .. 1.5e-6
 * (decoded_from_mean, which goes through the encoder and the decoder, is
 * the largest): that is what float32 rounding through these ~20 layers
 * costs, and an implementation with another summation order lands at the
 * same order (measured here: mean 1.2e-6, logvar 1.1e-6, decoded 8.9e-7,
 * decoded_from_mean 2.0e-6). A real defect moves the result more: the
 * downsampler's pad on the top/left instead of the bottom/right gives 1.3,
 * and even PyTorch's default GroupNorm eps (1e-5 instead of diffusers'
 * 1e-6) gives 1.9e-5 (both tried). 1e-5 sits between: ~5x over float32
 * noise, below the smallest plausible defect.
 *
 * Other references: diffusers' parameter count of the sd-vae-ft-mse
 * architecture and its FLOPs (counted with forward hooks on every Conv2d /
 * Linear of diffusers' model plus the two attention products), real LDM key
 * names of SD 1.x checkpoints, and double-precision re-implementations of
 * diffusers' blend_v / blend_h loops for the tiling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/safetensors.h"
#include "core/model/vae.h"
#include "core/model/weights.h"
#include "kernels/ops.h"
#include "tests/test.h"

/* --- helpers ---------------------------------------------------------------- */

static void golden_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/goldens/vae-tiny%s%s", sdw_test_data_dir(), name ? "/" : "",
           name ? name : "");
}

static void tmp_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", sdw_test_tmpdir(), name);
}

static sdw_arena *test_arena(void) {
  sdw_arena *a = NULL;
  if (sdw_arena_create(&a, "vae test", (size_t)4 << 30) != SDW_OK)
    sdw_test_fail(__FILE__, __LINE__, "arena: %s", sdw_last_error());
  return a;
}

static const sdw_safetensors_entry *golden_entry(const sdw_safetensors *io, const char *name,
                                                 sdw_dtype dtype) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(io, name);
  if (!e || e->dtype != dtype) {
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s missing or of the wrong type", name);
    return NULL;
  }
  return e;
}

/* A guarded f32 copy of a golden F32 tensor as a 4-D CPU tensor. */
static sdw_tensor golden_f32(const sdw_safetensors *io, const char *name) {
  const sdw_safetensors_entry *e = golden_entry(io, name, SDW_F32);
  sdw_tensor t = {0};
  if (!e || e->ndim != 4) return t;
  float *p = sdw_test_alloc_guarded((size_t)e->numel, name);
  memcpy(p, e->data, e->nbytes);
  return sdw_tensor_4d(p, SDW_F32, e->shape[0], e->shape[1], e->shape[2], e->shape[3]);
}

static sdw_tensor guarded4(int64_t n, int64_t c, int64_t h, int64_t w, const char *name) {
  return sdw_tensor_4d(sdw_test_alloc_guarded((size_t)(n * c * h * w), name), SDW_F32, n, c, h, w);
}

static void free4(sdw_tensor *t) {
  if (t->data) sdw_test_free_guarded(t->data);
  t->data = NULL;
}

static double rel_vs_golden(const sdw_safetensors *io, const char *name, const sdw_tensor *got) {
  const sdw_safetensors_entry *e = golden_entry(io, name, SDW_F64);
  if (!e || e->numel != sdw_tensor_numel(got)) {
    sdw_test_fail(__FILE__, __LINE__, "golden %s has the wrong size", name);
    return INFINITY;
  }
  return sdw_test_rel_err_f32_f64(got->data, e->data, (size_t)e->numel);
}

/* The golden model (config + weights) on the CPU. */
static bool open_golden(sdw_vae *m, sdw_ctx *ctx) {
  char dir[512];
  golden_path(dir, sizeof dir, NULL);
  sdw_status st = sdw_vae_open(m, ctx, dir, NULL, SDW_VAE_BOTH);
  if (st != SDW_OK) sdw_test_fail(__FILE__, __LINE__, "open golden: %s", sdw_last_error());
  return st == SDW_OK;
}

/* --- architecture facts ---------------------------------------------------- */

SDW_TEST(vae_preset_matches_diffusers) {
  sdw_vae_config cfg;
  REQUIRE(sdw_vae_preset("sd-vae-ft-mse", &cfg) == SDW_OK);
  sdw_vae m;
  /* diffusers 0.25.1: sum(p.numel()) of AutoencoderKL(block_out_channels=
   * (128,256,512,512), layers_per_block=2, 4 block types each): 83,653,863;
   * encoder + quant_conv 34,163,664; decoder + post_quant_conv 49,490,199. */
  const int parts[3] = {SDW_VAE_BOTH, SDW_VAE_ENCODER, SDW_VAE_DECODER};
  const int64_t want[3] = {83653863, 34163664, 49490199};
  for (int i = 0; i < 3; i++) {
    REQUIRE(sdw_vae_plan(&m, &cfg, parts[i]) == SDW_OK);
    CHECK_MSG(sdw_vae_param_count(&m) == want[i], "parts %d: %lld parameters, want %lld", parts[i],
              (long long)sdw_vae_param_count(&m), (long long)want[i]);
    if (parts[i] == SDW_VAE_BOTH) {
      CHECK(m.params.count == 248);
      /* state_dict order */
      CHECK(strcmp(m.params.items[0].name, "encoder.conv_in.weight") == 0);
      CHECK(strcmp(m.params.items[m.params.count - 1].name, "post_quant_conv.bias") == 0);
      CHECK(sdw_params_find(&m.params, "decoder.up_blocks.3.resnets.0.conv_shortcut.weight"));
      CHECK(!sdw_params_find(&m.params, "decoder.up_blocks.3.upsamplers.0.conv.weight"));
      CHECK(sdw_params_find(&m.params, "encoder.down_blocks.2.downsamplers.0.conv.weight"));
      CHECK(!sdw_params_find(&m.params, "encoder.down_blocks.3.downsamplers.0.conv.weight"));
    }
    sdw_vae_free(&m);
  }
  /* FLOPs: 2 x multiply-adds of every Conv2d and Linear (diffusers'
   * modules, counted with forward hooks) + 4 T^2 C for the attention:
   * decode of a 64x64 latent 2,514,518,933,504; encode of 512x512
   * 1,116,658,466,816. */
  CHECK(sdw_vae_decode_flops(&cfg, 1, 64, 64) == 2514518933504.0);
  /* executed: each upsampler's 3x3 conv over the 2x input (9 taps x 4
   * output pixels per input pixel) runs as four 2x2 phase convs (16) */
  const double up3x3 =
      2.0 * 9 * (512.0 * 512 * 128 * 128 + 512.0 * 512 * 256 * 256 + 256.0 * 256 * 512 * 512);
  CHECK(sdw_vae_decode_flops_executed(&cfg, 1, 64, 64) == 2514518933504.0 - up3x3 * 5 / 9);
  CHECK(sdw_vae_encode_flops(&cfg, 1, 512, 512) == 1116658466816.0);
  CHECK(sdw_vae_downscale(&cfg) == 8);
  CHECK(sdw_vae_preset("sdxl", &cfg) == SDW_ERR_NOT_FOUND);
}

/* Real key names of SD 1.x LDM checkpoints (v1-5-pruned.safetensors,
 * vae-ft-mse-840000-ema-pruned.safetensors) for some of our parameters. */
SDW_TEST(vae_ldm_names_of_real_checkpoints) {
  sdw_vae_config cfg;
  REQUIRE(sdw_vae_preset("sd-vae-ft-mse", &cfg) == SDW_OK);
  sdw_vae m;
  REQUIRE(sdw_vae_plan(&m, &cfg, SDW_VAE_BOTH) == SDW_OK);
  static const char *const pairs[][2] = {
      {"encoder.conv_in.weight", "encoder.conv_in.weight"},
      {"encoder.down_blocks.0.resnets.1.norm2.bias", "encoder.down.0.block.1.norm2.bias"},
      {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
       "encoder.down.1.block.0.nin_shortcut.weight"},
      {"encoder.down_blocks.2.downsamplers.0.conv.weight", "encoder.down.2.downsample.conv.weight"},
      {"encoder.mid_block.resnets.0.conv1.weight", "encoder.mid.block_1.conv1.weight"},
      {"encoder.mid_block.resnets.1.conv2.bias", "encoder.mid.block_2.conv2.bias"},
      {"encoder.mid_block.attentions.0.group_norm.weight", "encoder.mid.attn_1.norm.weight"},
      {"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid.attn_1.q.weight"},
      {"encoder.mid_block.attentions.0.to_out.0.bias", "encoder.mid.attn_1.proj_out.bias"},
      {"encoder.conv_norm_out.weight", "encoder.norm_out.weight"},
      {"encoder.conv_out.bias", "encoder.conv_out.bias"},
      {"decoder.up_blocks.0.resnets.2.conv1.weight", "decoder.up.3.block.2.conv1.weight"},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight", "decoder.up.3.upsample.conv.weight"},
      {"decoder.up_blocks.2.upsamplers.0.conv.bias", "decoder.up.1.upsample.conv.bias"},
      {"decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
       "decoder.up.1.block.0.nin_shortcut.weight"},
      {"decoder.up_blocks.3.resnets.0.conv_shortcut.bias",
       "decoder.up.0.block.0.nin_shortcut.bias"},
      {"decoder.mid_block.attentions.0.to_v.bias", "decoder.mid.attn_1.v.bias"},
      {"decoder.conv_norm_out.bias", "decoder.norm_out.bias"},
      {"quant_conv.weight", "quant_conv.weight"},
      {"post_quant_conv.bias", "post_quant_conv.bias"},
  };
  const char *const prefix[1] = {"first_stage_model."};
  sdw_weights_map map;
  sdw_vae_weights_map(&m, SDW_VAE_LAYOUT_LDM, prefix, &map);
  char key[256], want[256];
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    CHECK(sdw_params_find(&m.params, pairs[i][0]) != NULL);
    snprintf(want, sizeof want, "first_stage_model.%s", pairs[i][1]);
    CHECK(sdw_weights_key(&map, prefix[0], pairs[i][0], key, sizeof key));
    CHECK_MSG(strcmp(key, want) == 0, "%s -> %s, want %s", pairs[i][0], key, want);
  }
  sdw_vae_free(&m);
}

/* --- the golden ---------------------------------------------------------------- */

SDW_TEST(vae_golden_encode_decode) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena();
  char path[512];
  golden_path(path, sizeof path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(path, &io));
  sdw_vae m;
  if (io && arena && open_golden(&m, ctx)) {
    CHECK(m.cfg.levels == 2 && m.cfg.block_out_channels[1] == 64 && m.cfg.layers_per_block == 1);
    CHECK(fabsf(m.cfg.scaling_factor - 0.18215f) == 0.0f && m.cfg.sample_size == 32);
    sdw_tensor image = golden_f32(io, "image"), latents = golden_f32(io, "latents");
    sdw_tensor mean = guarded4(1, 4, 16, 16, "mean"), logvar = guarded4(1, 4, 16, 16, "logvar");
    sdw_tensor dec = guarded4(1, 3, 32, 32, "decoded");
    const size_t mark = sdw_arena_mark(arena);
    CHECK_OK(sdw_vae_encode(&m, arena, &image, &mean, &logvar));
    CHECK(sdw_arena_mark(arena) == mark);
    CHECK(sdw_arena_peak(arena) <= sdw_vae_encode_arena_bytes(&m, 1, 32, 32));
    CHECK_REL(rel_vs_golden(io, "posterior_mean_f64", &mean), 1e-5, "posterior mean");
    CHECK_REL(rel_vs_golden(io, "posterior_logvar_f64", &logvar), 1e-5, "posterior logvar");
    CHECK_OK(sdw_vae_decode(&m, arena, &latents, &dec));
    CHECK(sdw_arena_mark(arena) == mark);
    CHECK_REL(rel_vs_golden(io, "decoded_f64", &dec), 1e-5, "decoded");
    CHECK_OK(sdw_vae_decode(&m, arena, &mean, &dec));
    CHECK_REL(rel_vs_golden(io, "decoded_from_mean_f64", &dec), 1e-5, "decoded from mean");
    /* diffusers' literal upsampler (nearest x2, 3x3 conv) as well */
    CHECK(m.upsample_phases);
    m.upsample_phases = false;
    CHECK_OK(sdw_vae_decode(&m, arena, &latents, &dec));
    CHECK_REL(rel_vs_golden(io, "decoded_f64", &dec), 1e-5, "decoded (nearest + conv)");
    m.upsample_phases = true;
    CHECK_OK(sdw_vae_decode(&m, arena, &mean, &dec));
    /* decoding the wrong latents is far off: the comparison discriminates */
    CHECK(rel_vs_golden(io, "decoded_f64", &dec) > 1e-2);
    /* arena accounting for the decode of that size */
    sdw_arena *a2 = test_arena();
    if (a2) {
      CHECK_OK(sdw_vae_decode(&m, a2, &latents, &dec));
      CHECK(sdw_arena_peak(a2) <= sdw_vae_decode_arena_bytes(&m, 1, 16, 16));
      CHECK(sdw_arena_peak(a2) + 4096 >= sdw_vae_decode_arena_bytes(&m, 1, 16, 16));
      sdw_arena_destroy(a2);
    }
    free4(&image);
    free4(&latents);
    free4(&mean);
    free4(&logvar);
    free4(&dec);
    sdw_vae_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}

/* A batch of two runs each sample as a batch of one does (nothing mixes
 * across the batch): the golden image next to a second image. */
SDW_TEST(vae_batch_of_two) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena();
  char path[512];
  golden_path(path, sizeof path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(path, &io));
  sdw_vae m;
  if (io && arena && open_golden(&m, ctx)) {
    sdw_tensor image = golden_f32(io, "image");
    sdw_tensor two = guarded4(2, 3, 32, 32, "image2");
    const size_t n = 3 * 32 * 32;
    sdw_test_rng rng = sdw_test_rng_make(5);
    sdw_test_fill_uniform(&rng, two.data, n, -1.0f, 1.0f);
    memcpy((float *)two.data + n, image.data, n * sizeof(float));
    sdw_tensor mean = guarded4(2, 4, 16, 16, "mean"), logvar = guarded4(2, 4, 16, 16, "logvar");
    sdw_tensor dec = guarded4(2, 3, 32, 32, "decoded");
    CHECK_OK(sdw_vae_encode(&m, arena, &two, &mean, &logvar));
    sdw_tensor mean1 = mean, logvar1 = logvar;
    mean1.shape[0] = logvar1.shape[0] = 1;
    mean1.data = (float *)mean.data + 4 * 16 * 16;
    logvar1.data = (float *)logvar.data + 4 * 16 * 16;
    CHECK_REL(rel_vs_golden(io, "posterior_mean_f64", &mean1), 1e-5, "batch: mean");
    CHECK_REL(rel_vs_golden(io, "posterior_logvar_f64", &logvar1), 1e-5, "batch: logvar");
    CHECK_OK(sdw_vae_decode(&m, arena, &mean, &dec));
    sdw_tensor dec1 = dec;
    dec1.shape[0] = 1;
    dec1.data = (float *)dec.data + n;
    CHECK_REL(rel_vs_golden(io, "decoded_from_mean_f64", &dec1), 1e-5, "batch: decoded");
    free4(&image);
    free4(&two);
    free4(&mean);
    free4(&logvar);
    free4(&dec);
    sdw_vae_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}

/* --- layouts --------------------------------------------------------------------- */

/* A rename applied to every golden key: returns false to drop the key. */
typedef bool (*rename_fn)(const char *in, char *out, size_t cap, int levels);

/* In place: the first occurrence of from becomes to. */
static void replace(char *s, size_t cap, const char *from, const char *to) {
  char *at = strstr(s, from);
  if (!at) return;
  char tail[256];
  snprintf(tail, sizeof tail, "%s", at + strlen(from));
  snprintf(at, cap - (size_t)(at - s), "%s%s", to, tail);
}

static bool rename_legacy(const char *in, char *out, size_t cap, int levels) {
  (void)levels;
  snprintf(out, cap, "%s", in);
  replace(out, cap, "attentions.0.to_q.", "attentions.0.query.");
  replace(out, cap, "attentions.0.to_k.", "attentions.0.key.");
  replace(out, cap, "attentions.0.to_v.", "attentions.0.value.");
  replace(out, cap, "attentions.0.to_out.0.", "attentions.0.proj_attn.");
  return true;
}

/* diffusers -> LDM, written from convert_ldm_vae_checkpoint's rules (which
 * go the other way): down_blocks.I.resnets.J <- down.I.block.J,
 * downsamplers.0 <- downsample, up_blocks.I <- up.(L-1-I), upsamplers.0 <-
 * upsample, mid_block.resnets.K <- mid.block_(K+1), mid_block.attentions.0
 * <- mid.attn_1 with group_norm/to_q/to_k/to_v/to_out.0 <- norm/q/k/v/
 * proj_out, conv_shortcut <- nin_shortcut, conv_norm_out <- norm_out. */
static bool rename_ldm(const char *in, char *out, size_t cap, int levels) {
  int i, j, n = 0;
  snprintf(out, cap, "%s", in);
  if (sscanf(in, "encoder.down_blocks.%d.resnets.%d.%n", &i, &j, &n) == 2 && n)
    snprintf(out, cap, "encoder.down.%d.block.%d.%s", i, j, in + n);
  else if (n = 0, sscanf(in, "encoder.down_blocks.%d.downsamplers.0.%n", &i, &n) == 1 && n)
    snprintf(out, cap, "encoder.down.%d.downsample.%s", i, in + n);
  else if (n = 0, sscanf(in, "decoder.up_blocks.%d.resnets.%d.%n", &i, &j, &n) == 2 && n)
    snprintf(out, cap, "decoder.up.%d.block.%d.%s", levels - 1 - i, j, in + n);
  else if (n = 0, sscanf(in, "decoder.up_blocks.%d.upsamplers.0.%n", &i, &n) == 1 && n)
    snprintf(out, cap, "decoder.up.%d.upsample.%s", levels - 1 - i, in + n);
  replace(out, cap, "mid_block.resnets.0.", "mid.block_1.");
  replace(out, cap, "mid_block.resnets.1.", "mid.block_2.");
  replace(out, cap, "mid_block.attentions.0.group_norm.", "mid.attn_1.norm.");
  replace(out, cap, "mid_block.attentions.0.to_q.", "mid.attn_1.q.");
  replace(out, cap, "mid_block.attentions.0.to_k.", "mid.attn_1.k.");
  replace(out, cap, "mid_block.attentions.0.to_v.", "mid.attn_1.v.");
  replace(out, cap, "mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out.");
  replace(out, cap, "conv_shortcut.", "nin_shortcut.");
  replace(out, cap, "conv_norm_out.", "norm_out.");
  return true;
}

typedef struct write_opts {
  rename_fn rename;
  const char *prefix;  /* prepended to every key */
  bool conv_attention; /* attention q/k/v/proj_out weights as [C, C, 1, 1] */
  sdw_dtype dtype;     /* F32, F16, BF16 */
  const char *drop;    /* a key (after renaming) to leave out */
  const char *reshape; /* a key to write with a different shape ([1, numel]) */
  const char *as_int;  /* a key to write as I64 */
  bool extras;         /* add unrelated tensors (a UNet's, a text encoder's) */
} write_opts;

/* Writes the golden weights under other names / dtypes into path. Every
 * converted buffer is kept until the write (the writer does not copy). */
static bool write_variant(const char *path, const write_opts *o) {
  char gpath[512];
  golden_path(gpath, sizeof gpath, "weights.safetensors");
  sdw_safetensors *g = NULL;
  if (sdw_safetensors_open(gpath, &g) != SDW_OK) return false;
  sdw_safetensors_writer *w = NULL;
  bool ok = sdw_safetensors_writer_create(&w) == SDW_OK;
  size_t count = sdw_safetensors_count(g);
  void **bufs = calloc(count + 2, sizeof *bufs);
  for (size_t i = 0; ok && i < count; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(g, i);
    char name[256], key[300];
    if (!o->rename(e->name, name, sizeof name, 2)) continue;
    snprintf(key, sizeof key, "%s%s", o->prefix ? o->prefix : "", name);
    if (o->drop && strcmp(key, o->drop) == 0) continue;
    int64_t shape[8];
    int ndim = e->ndim;
    for (int d = 0; d < ndim; d++)
      shape[d] = e->shape[d];
    if (o->conv_attention && ndim == 2 && strstr(key, "attn_1.")) {
      shape[2] = shape[3] = 1;
      ndim = 4;
    }
    if (o->reshape && strcmp(key, o->reshape) == 0) {
      shape[0] = 1;
      shape[1] = e->numel;
      ndim = 2;
    }
    sdw_dtype dt = o->as_int && strcmp(key, o->as_int) == 0 ? SDW_I64 : o->dtype;
    bufs[i] = malloc((size_t)e->numel * 8 + 8);
    const float *src = e->data;
    for (int64_t k = 0; k < e->numel; k++) {
      if (dt == SDW_F32)
        ((float *)bufs[i])[k] = src[k];
      else if (dt == SDW_F16)
        ((uint16_t *)bufs[i])[k] = sdw_f32_to_f16(src[k]);
      else if (dt == SDW_BF16)
        ((uint16_t *)bufs[i])[k] = sdw_f32_to_bf16(src[k]);
      else
        ((int64_t *)bufs[i])[k] = (int64_t)src[k];
    }
    ok = sdw_safetensors_writer_add(w, key, dt, ndim, shape, bufs[i]) == SDW_OK;
  }
  static const float extra[4] = {1, 2, 3, 4};
  if (ok && o->extras) {
    ok = sdw_safetensors_writer_add(w, "model.diffusion_model.conv_in.weight", SDW_F32, 1,
                                    (int64_t[]){4}, extra) == SDW_OK &&
         sdw_safetensors_writer_add(w, "cond_stage_model.transformer.text_model.x", SDW_F32, 1,
                                    (int64_t[]){4}, extra) == SDW_OK;
  }
  if (ok) ok = sdw_safetensors_writer_write(w, path) == SDW_OK;
  for (size_t i = 0; i < count; i++)
    free(bufs[i]);
  free(bufs);
  sdw_safetensors_writer_destroy(w);
  sdw_safetensors_close(g);
  if (!ok) sdw_test_fail(__FILE__, __LINE__, "writing %s: %s", path, sdw_last_error());
  return ok;
}

static bool rename_none(const char *in, char *out, size_t cap, int levels) {
  (void)levels;
  snprintf(out, cap, "%s", in);
  return true;
}

/* Opens path (with the golden's config) and checks its layout. */
static sdw_status open_variant(sdw_vae *m, sdw_ctx *ctx, const char *path) {
  char cfg[512];
  golden_path(cfg, sizeof cfg, "config.json");
  return sdw_vae_open(m, ctx, path, cfg, SDW_VAE_BOTH);
}

SDW_TEST(vae_layouts_load_identically) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_vae ref;
  REQUIRE(open_golden(&ref, ctx));
  struct {
    const char *file;
    write_opts opts;
    sdw_vae_layout layout;
    const char *prefix;
  } cases[] = {
      {"legacy.safetensors", {.rename = rename_legacy}, SDW_VAE_LAYOUT_DIFFUSERS_LEGACY, ""},
      {"ldm_full.safetensors",
       {.rename = rename_ldm,
        .prefix = "first_stage_model.",
        .conv_attention = true,
        .extras = true},
       SDW_VAE_LAYOUT_LDM,
       "first_stage_model."},
      {"ldm_vae.safetensors",
       {.rename = rename_ldm, .conv_attention = true},
       SDW_VAE_LAYOUT_LDM,
       ""},
      /* some converters keep the linear [C, C] attention weights */
      {"ldm_linear.safetensors", {.rename = rename_ldm}, SDW_VAE_LAYOUT_LDM, ""},
      {"prefixed.safetensors",
       {.rename = rename_none, .prefix = "vae."},
       SDW_VAE_LAYOUT_DIFFUSERS,
       "vae."},
  };
  char path[512];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    tmp_path(path, sizeof path, cases[i].file);
    if (!write_variant(path, &cases[i].opts)) continue;
    sdw_weights *w = NULL;
    CHECK_OK(sdw_weights_open(path, NULL, &w));
    if (w) {
      sdw_vae_layout layout;
      const char *prefix;
      int found;
      sdw_vae_detect_layout(&ref, w, &layout, &prefix, &found);
      CHECK_MSG(layout == cases[i].layout && strcmp(prefix, cases[i].prefix) == 0 &&
                    found == ref.params.count,
                "%s: detected %s under '%s' (%d of %d)", cases[i].file, sdw_vae_layout_name(layout),
                prefix, found, ref.params.count);
      sdw_weights_close(w);
    }
    sdw_vae m;
    sdw_status st = open_variant(&m, ctx, path);
    CHECK_MSG(st == SDW_OK, "%s: %s", cases[i].file, sdw_last_error());
    if (st != SDW_OK) continue;
    /* the same values in the same places: identical outputs follow */
    CHECK_MSG(m.params.total == ref.params.total &&
                  memcmp(m.params.flat, ref.params.flat, ref.params.total * sizeof(float)) == 0,
              "%s: parameters differ from the golden's", cases[i].file);
    sdw_vae_free(&m);
  }
  /* A diffusers pipeline folder: pipe/vae/{config.json,
   * diffusion_pytorch_model.safetensors}, the config found there. */
  char pipe[256], cfg_src[512], cfg_dst[512]; /* pipe + suffix must fit path */
  tmp_path(pipe, sizeof pipe, "pipe");
  mkdir(pipe, 0777);
  snprintf(path, sizeof path, "%s/vae", pipe);
  mkdir(path, 0777);
  snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", pipe);
  golden_path(cfg_src, sizeof cfg_src, "config.json");
  snprintf(cfg_dst, sizeof cfg_dst, "%s/vae/config.json", pipe);
  FILE *fi = fopen(cfg_src, "rb"), *fo = fopen(cfg_dst, "wb");
  char buf[4096];
  size_t got;
  while (fi && fo && (got = fread(buf, 1, sizeof buf, fi)) > 0)
    fwrite(buf, 1, got, fo);
  if (fi) fclose(fi);
  if (fo) fclose(fo);
  write_opts plain = {.rename = rename_none};
  if (write_variant(path, &plain)) {
    sdw_vae m;
    sdw_status st = sdw_vae_open(&m, ctx, pipe, NULL, SDW_VAE_BOTH);
    CHECK_MSG(st == SDW_OK, "pipeline folder: %s", sdw_last_error());
    if (st == SDW_OK) {
      CHECK(m.cfg.block_out_channels[1] == 64 && m.params.total == ref.params.total &&
            memcmp(m.params.flat, ref.params.flat, ref.params.total * sizeof(float)) == 0);
      sdw_vae_free(&m);
    }
  }
  /* One end to end: the LDM file decodes the golden. */
  tmp_path(path, sizeof path, "ldm_full.safetensors");
  sdw_vae m;
  sdw_arena *arena = test_arena();
  char io_path[512];
  golden_path(io_path, sizeof io_path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(io_path, &io));
  if (io && arena && open_variant(&m, ctx, path) == SDW_OK) {
    sdw_tensor latents = golden_f32(io, "latents"), dec = guarded4(1, 3, 32, 32, "decoded");
    CHECK_OK(sdw_vae_decode(&m, arena, &latents, &dec));
    CHECK_REL(rel_vs_golden(io, "decoded_f64", &dec), 1e-5, "LDM layout: decoded");
    free4(&latents);
    free4(&dec);
    sdw_vae_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_arena_destroy(arena);
  sdw_vae_free(&ref);
  sdw_ctx_destroy(ctx);
}

/* F16 / BF16 files load as their exact f32 values. */
SDW_TEST(vae_half_precision_weights) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  const sdw_dtype dts[2] = {SDW_F16, SDW_BF16};
  for (int d = 0; d < 2; d++) {
    char path[512];
    tmp_path(path, sizeof path, d ? "bf16.safetensors" : "f16.safetensors");
    write_opts o = {.rename = rename_ldm,
                    .prefix = "first_stage_model.",
                    .conv_attention = true,
                    .dtype = dts[d]};
    if (!write_variant(path, &o)) continue;
    sdw_vae m;
    if (open_variant(&m, ctx, path) != SDW_OK) {
      sdw_test_fail(__FILE__, __LINE__, "%s: %s", path, sdw_last_error());
      continue;
    }
    /* every parameter equals the golden's value rounded to the dtype */
    char gpath[512];
    golden_path(gpath, sizeof gpath, "weights.safetensors");
    sdw_safetensors *g = NULL;
    CHECK_OK(sdw_safetensors_open(gpath, &g));
    int bad = 0;
    for (int i = 0; g && i < m.params.count; i++) {
      const sdw_param *p = &m.params.items[i];
      const sdw_safetensors_entry *e = sdw_safetensors_find(g, p->name);
      if (!e || e->numel != sdw_tensor_numel(&p->value)) {
        bad++;
        continue;
      }
      const float *src = e->data, *got = p->value.data;
      for (int64_t k = 0; k < e->numel; k++) {
        float want =
            d ? sdw_bf16_to_f32(sdw_f32_to_bf16(src[k])) : sdw_f16_to_f32(sdw_f32_to_f16(src[k]));
        if (memcmp(&want, &got[k], sizeof want) != 0) bad++;
      }
    }
    CHECK_MSG(bad == 0, "%s: %d values differ", path, bad);
    sdw_safetensors_close(g);
    sdw_vae_free(&m);
  }
  sdw_ctx_destroy(ctx);
}

/* --- errors ------------------------------------------------------------------------ */

static void expect_open_error(sdw_ctx *ctx, const char *path, const char *config, sdw_status want,
                              const char *const *needles, int count) {
  sdw_vae m;
  sdw_status st = sdw_vae_open(&m, ctx, path, config, SDW_VAE_BOTH);
  const char *msg = sdw_last_error();
  CHECK_MSG(st == want, "%s: got %s (%s), want %s", path, sdw_status_name(st), msg,
            sdw_status_name(want));
  for (int i = 0; i < count; i++)
    CHECK_MSG(strstr(msg, needles[i]) != NULL, "%s: message '%s' lacks '%s'", path, msg,
              needles[i]);
  if (st == SDW_OK) sdw_vae_free(&m);
}

SDW_TEST(vae_bad_weights) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char path[512], cfg[512];
  golden_path(cfg, sizeof cfg, "config.json");

  tmp_path(path, sizeof path, "missing.safetensors");
  write_opts o = {.rename = rename_ldm,
                  .prefix = "first_stage_model.",
                  .conv_attention = true,
                  .drop = "first_stage_model.decoder.up.0.block.1.conv2.bias"};
  if (write_variant(path, &o)) {
    const char *needles[] = {"missing.safetensors",
                             "'first_stage_model.decoder.up.0.block.1.conv2.bias' is missing"};
    expect_open_error(ctx, path, cfg, SDW_ERR_NOT_FOUND, needles, 2);
  }

  tmp_path(path, sizeof path, "shape.safetensors");
  o = (write_opts){.rename = rename_none, .reshape = "decoder.conv_in.weight"};
  if (write_variant(path, &o)) {
    const char *needles[] = {
        "'decoder.conv_in.weight' has shape [1, 2304], expected [64, 4, 3, 3]"};
    expect_open_error(ctx, path, cfg, SDW_ERR_FORMAT, needles, 1);
  }

  tmp_path(path, sizeof path, "int.safetensors");
  o = (write_opts){.rename = rename_none, .as_int = "quant_conv.bias"};
  if (write_variant(path, &o)) {
    const char *needles[] = {"'quant_conv.bias' has dtype I64"};
    expect_open_error(ctx, path, cfg, SDW_ERR_UNSUPPORTED, needles, 1);
  }

  /* the tiny weights taken for the sd-vae-ft-mse preset (no config) */
  char weights[512];
  golden_path(weights, sizeof weights, "weights.safetensors");
  {
    const char *needles[] = {"weights.safetensors",
                             "has shape [32, 3, 3, 3], expected [128, 3, 3, 3]"};
    expect_open_error(ctx, weights, NULL, SDW_ERR_FORMAT, needles, 2);
  }

  /* a file of something else entirely */
  tmp_path(path, sizeof path, "other.safetensors");
  {
    sdw_safetensors_writer *w = NULL;
    static const float v[2] = {1, 2};
    CHECK_OK(sdw_safetensors_writer_create(&w));
    CHECK_OK(sdw_safetensors_writer_add(w, "text_model.final_layer_norm.weight", SDW_F32, 1,
                                        (int64_t[]){2}, v));
    CHECK_OK(sdw_safetensors_writer_write(w, path));
    sdw_safetensors_writer_destroy(w);
    const char *needles[] = {"none of the 124 tensors"};
    expect_open_error(ctx, path, cfg, SDW_ERR_NOT_FOUND, needles, 1);
  }

  /* a truncated file */
  tmp_path(path, sizeof path, "trunc.safetensors");
  {
    FILE *in = fopen(weights, "rb"), *out = fopen(path, "wb");
    char buf[4096];
    size_t left = 100000, n;
    while (in && out && left && (n = fread(buf, 1, left < sizeof buf ? left : sizeof buf, in)))
      left -= fwrite(buf, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
    const char *needles[] = {"trunc.safetensors"};
    expect_open_error(ctx, path, cfg, SDW_ERR_FORMAT, needles, 1);
  }

  /* a config that is not a VAE's */
  tmp_path(path, sizeof path, "unet.json");
  {
    FILE *f = fopen(path, "w");
    if (f) {
      fputs("{\"_class_name\": \"UNet2DConditionModel\"}", f);
      fclose(f);
    }
    const char *needles[] = {"unet.json", "not a VAE"};
    expect_open_error(ctx, weights, path, SDW_ERR_FORMAT, needles, 2);
  }
  sdw_ctx_destroy(ctx);
}

static sdw_status parse(const char *json, sdw_vae_config *c) {
  return sdw_vae_config_parse(json, strlen(json), "config.json", c);
}

SDW_TEST(vae_config_json) {
  sdw_vae_config c;
  /* AutoencoderKL's defaults: one level of 64 channels */
  CHECK_OK(parse("{}", &c));
  CHECK(c.levels == 1 && c.block_out_channels[0] == 64 && c.layers_per_block == 1 &&
        c.latent_channels == 4 && c.sample_size == 32 && c.mid_attention && c.use_quant_conv &&
        c.use_post_quant_conv && c.norm_eps == 1e-6f);
  CHECK_OK(parse("{\"block_out_channels\": [128, 256, 512, 512], \"layers_per_block\": 2, "
                 "\"sample_size\": [256, 256], \"scaling_factor\": 0.13025, \"force_upcast\": "
                 "false, \"down_block_types\": [\"DownEncoderBlock2D\", \"DownEncoderBlock2D\", "
                 "\"DownEncoderBlock2D\", \"DownEncoderBlock2D\"]}",
                 &c));
  CHECK(c.levels == 4 && c.block_out_channels[3] == 512 && c.sample_size == 256 &&
        c.scaling_factor == 0.13025f);
  CHECK(parse("{\"act_fn\": \"gelu\"}", &c) == SDW_ERR_UNSUPPORTED);
  CHECK(strstr(sdw_last_error(), "act_fn 'gelu'") != NULL);
  CHECK(parse("{\"down_block_types\": [\"AttnDownEncoderBlock2D\"]}", &c) == SDW_ERR_UNSUPPORTED);
  CHECK(parse("{\"up_block_types\": [\"UpDecoderBlock2D\", \"UpDecoderBlock2D\"]}", &c) ==
        SDW_ERR_FORMAT);
  CHECK(parse("{\"block_out_channels\": [48]}", &c) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "multiple of the 32 GroupNorm groups") != NULL);
  CHECK(parse("{\"_class_name\": \"AutoencoderTiny\"}", &c) == SDW_ERR_FORMAT);
  CHECK(parse("{\"model_type\": \"clip_text_model\", \"hidden_size\": 64}", &c) == SDW_ERR_FORMAT);
  CHECK(parse("{\"layers_per_block\": 0}", &c) == SDW_ERR_FORMAT);
  CHECK(parse("{\"block_out_channels\": [32, 32, 32, 32, 32, 32, 32, 32, 32]}", &c) ==
        SDW_ERR_FORMAT);
  /* newer diffusers switches: fewer parameters, still a consistent model */
  CHECK_OK(parse("{\"block_out_channels\": [32, 64], \"mid_block_add_attention\": false, "
                 "\"use_quant_conv\": false, \"use_post_quant_conv\": false}",
                 &c));
  sdw_vae m;
  if (sdw_vae_plan(&m, &c, SDW_VAE_BOTH) == SDW_OK) {
    /* the golden model has 658,375 values: minus 2 x (4 x 64 x 65 + 2 x 64)
     * attention, 8 x 9 quant_conv, 4 x 5 post_quant_conv */
    CHECK(sdw_vae_param_count(&m) == 658375 - 2 * (4 * 64 * 65 + 2 * 64) - 72 - 20);
    CHECK(!sdw_params_find(&m.params, "quant_conv.weight"));
    sdw_vae_free(&m);
  }
}

SDW_TEST(vae_bad_inputs) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena();
  sdw_vae m;
  if (arena && open_golden(&m, ctx)) {
    sdw_tensor odd = guarded4(1, 3, 31, 32, "odd"), four = guarded4(1, 4, 32, 32, "four");
    sdw_tensor mean = guarded4(1, 4, 16, 16, "mean"), logvar = guarded4(1, 4, 16, 16, "logvar");
    sdw_tensor img = guarded4(1, 3, 32, 32, "img"), small = guarded4(1, 3, 30, 32, "small");
    CHECK(sdw_vae_encode(&m, arena, &odd, &mean, &logvar) == SDW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(sdw_last_error(), "multiples of 2") != NULL);
    CHECK(sdw_vae_encode(&m, arena, &four, &mean, &logvar) == SDW_ERR_INVALID_ARGUMENT);
    CHECK(sdw_vae_decode(&m, arena, &mean, &small) == SDW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(sdw_last_error(), "[1, 3, 32, 32]") != NULL);
    CHECK(sdw_vae_decode(&m, arena, &img, &img) == SDW_ERR_INVALID_ARGUMENT);
    CHECK(sdw_arena_mark(arena) == 0);
    sdw_vae_tiling bad = {.tile_sample_size = 32, .overlap = 1.0};
    CHECK(sdw_vae_decode_tiled(&m, arena, &bad, &mean, &img) == SDW_ERR_INVALID_ARGUMENT);
    bad = (sdw_vae_tiling){.tile_sample_size = 31, .overlap = 0.25};
    CHECK(sdw_vae_decode_tiled(&m, arena, &bad, &mean, &img) == SDW_ERR_INVALID_ARGUMENT);
    bad = (sdw_vae_tiling){.tile_sample_size = 32, .overlap = 0.3};
    CHECK(sdw_vae_decode_tiled(&m, arena, &bad, &mean, &img) == SDW_ERR_INVALID_ARGUMENT);
    sdw_vae_free(&m);
    /* a decoder-only model cannot encode */
    char dir[512];
    golden_path(dir, sizeof dir, NULL);
    CHECK_OK(sdw_vae_open(&m, ctx, dir, NULL, SDW_VAE_DECODER));
    if (m.ctx) {
      CHECK(sdw_vae_param_count(&m) < 658375);
      CHECK(sdw_vae_encode(&m, arena, &img, &mean, &logvar) == SDW_ERR_INVALID_ARGUMENT);
      CHECK(strstr(sdw_last_error(), "without its encoder") != NULL);
      sdw_vae_free(&m);
    }
    free4(&odd);
    free4(&four);
    free4(&mean);
    free4(&logvar);
    free4(&img);
    free4(&small);
  }
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}

/* --- sampling and scaling --------------------------------------------------------- */

SDW_TEST(vae_sample_and_scaling) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  const size_t n = 2 * 4 * 8 * 8;
  sdw_test_rng rng = sdw_test_rng_make(17);
  sdw_tensor mean = guarded4(2, 4, 8, 8, "mean"), logvar = guarded4(2, 4, 8, 8, "logvar");
  sdw_tensor noise = guarded4(2, 4, 8, 8, "noise"), out = guarded4(2, 4, 8, 8, "out");
  sdw_test_fill_normal(&rng, mean.data, n, 1.0f);
  sdw_test_fill_uniform(&rng, logvar.data, n, -30.0f, 20.0f);
  sdw_test_fill_normal(&rng, noise.data, n, 1.0f);
  CHECK_OK(sdw_vae_sample(ctx, &mean, &logvar, &noise, &out));
  /* against the formula in double: f32 rounding of exp and two products */
  double *want = malloc(n * sizeof(double));
  const float *mp = mean.data, *lp = logvar.data, *np = noise.data;
  for (size_t i = 0; i < n; i++)
    want[i] = mp[i] + exp(0.5 * lp[i]) * np[i];
  /* normwise: expf and two f32 roundings, ~1e-7 of the largest value */
  CHECK(sdw_test_rel_err_f32_f64(out.data, want, n) < 1e-6);
  /* in place: out may be one of the inputs */
  CHECK_OK(sdw_vae_sample(ctx, &mean, &logvar, &noise, &mean));
  CHECK(memcmp(mean.data, out.data, n * sizeof(float)) == 0);

  sdw_vae_config cfg;
  sdw_vae m;
  REQUIRE(sdw_vae_preset("sd-vae-ft-mse", &cfg) == SDW_OK);
  cfg.levels = 1;
  cfg.block_out_channels[0] = 32;
  cfg.layers_per_block = 1;
  if (sdw_vae_create(&m, ctx, &cfg, SDW_VAE_DECODER) == SDW_OK) {
    CHECK_OK(sdw_vae_scale_latents(&m, &noise, &out));
    for (size_t i = 0; i < n; i++)
      want[i] = np[i] * 0.18215;
    CHECK(sdw_test_rel_err_f32_f64(out.data, want, n) < 2e-7);
    CHECK_OK(sdw_vae_unscale_latents(&m, &out, &mean));
    CHECK(sdw_test_rel_err_f32(mean.data, np, n) < 3e-7);
    sdw_vae_free(&m);
  }
  free(want);
  free4(&mean);
  free4(&logvar);
  free4(&noise);
  free4(&out);
  sdw_ctx_destroy(ctx);
}

/* --- tiling ------------------------------------------------------------------------ */

/* A double tile of nc planes. */
typedef struct dtile {
  double *v;
  int64_t h, w;
} dtile;

/* diffusers' blend_v / blend_h, in double. */
static void ref_blend_v(const dtile *a, dtile *b, int64_t nc, int64_t ext) {
  int64_t e = ext < a->h ? ext : a->h;
  e = e < b->h ? e : b->h;
  for (int64_t p = 0; p < nc; p++)
    for (int64_t y = 0; y < e; y++)
      for (int64_t x = 0; x < b->w; x++)
        b->v[(p * b->h + y) * b->w + x] =
            a->v[(p * a->h + a->h - e + y) * a->w + x] * (1.0 - (double)y / e) +
            b->v[(p * b->h + y) * b->w + x] * ((double)y / e);
}
static void ref_blend_h(const dtile *a, dtile *b, int64_t nc, int64_t ext) {
  int64_t e = ext < a->w ? ext : a->w;
  e = e < b->w ? e : b->w;
  for (int64_t p = 0; p < nc; p++)
    for (int64_t y = 0; y < b->h; y++)
      for (int64_t x = 0; x < e; x++)
        b->v[(p * b->h + y) * b->w + x] =
            a->v[(p * a->h + y) * a->w + a->w - e + x] * (1.0 - (double)x / e) +
            b->v[(p * b->h + y) * b->w + x] * ((double)x / e);
}

/* The reference of a tiled run: every tile through the (golden-checked)
 * untiled call, then diffusers' loops in double: all tiles first, then row
 * by row blend in place with the tile above and to the left and keep the
 * top-left keep x keep corner. run(j, y0, x0, th, tw, out) fills one tile's
 * output; nc = batch x output channels. */
typedef void (*tile_fn)(void *arg, int64_t y0, int64_t x0, int64_t th, int64_t tw, dtile *out);

static double *ref_tiled(tile_fn run, void *arg, int64_t in_h, int64_t in_w, int64_t tile,
                         int64_t stride, int64_t blend, int64_t keep, int64_t nc, int64_t out_h,
                         int64_t out_w) {
  int64_t rows = 0, cols = 0;
  for (int64_t y = 0; y < in_h; y += stride)
    rows++;
  for (int64_t x = 0; x < in_w; x += stride)
    cols++;
  dtile *t = calloc((size_t)(rows * cols), sizeof *t);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      int64_t y0 = i * stride, x0 = j * stride;
      int64_t th = in_h - y0 < tile ? in_h - y0 : tile, tw = in_w - x0 < tile ? in_w - x0 : tile;
      run(arg, y0, x0, th, tw, &t[i * cols + j]);
    }
  double *out = calloc((size_t)(nc * out_h * out_w), sizeof(double));
  int64_t oy = 0;
  for (int64_t i = 0; i < rows; i++) {
    int64_t ox = 0, rh = 0;
    for (int64_t j = 0; j < cols; j++) {
      dtile *b = &t[i * cols + j];
      if (i > 0) ref_blend_v(&t[(i - 1) * cols + j], b, nc, blend);
      if (j > 0) ref_blend_h(&t[i * cols + j - 1], b, nc, blend);
      int64_t kh = b->h < keep ? b->h : keep, kw = b->w < keep ? b->w : keep;
      for (int64_t p = 0; p < nc; p++)
        for (int64_t y = 0; y < kh; y++)
          for (int64_t x = 0; x < kw; x++)
            out[(p * out_h + oy + y) * out_w + ox + x] = b->v[(p * b->h + y) * b->w + x];
      ox += kw;
      rh = kh;
    }
    CHECK(ox == out_w);
    oy += rh;
  }
  CHECK(oy == out_h);
  for (int64_t i = 0; i < rows * cols; i++)
    free(t[i].v);
  free(t);
  return out;
}

typedef struct tile_arg {
  sdw_vae *m;
  sdw_arena *arena;
  const float *in; /* [n, c, h, w] */
  int64_t n, c, h, w;
  bool encode;
} tile_arg;

static void ref_tile(void *p, int64_t y0, int64_t x0, int64_t th, int64_t tw, dtile *out) {
  tile_arg *a = p;
  const int64_t f = sdw_vae_downscale(&a->m->cfg);
  sdw_tensor in = guarded4(a->n, a->c, th, tw, "tile in");
  for (int64_t q = 0; q < a->n * a->c; q++)
    for (int64_t y = 0; y < th; y++)
      memcpy((float *)in.data + (q * th + y) * tw, a->in + (q * a->h + y0 + y) * a->w + x0,
             (size_t)tw * sizeof(float));
  const int64_t oc = a->encode ? 2 * a->m->cfg.latent_channels : a->m->cfg.out_channels;
  out->h = a->encode ? th / f : th * f;
  out->w = a->encode ? tw / f : tw * f;
  sdw_tensor o = guarded4(a->n, oc, out->h, out->w, "tile out");
  CHECK_OK(a->encode ? sdw_vae_encode_moments(a->m, a->arena, &in, &o)
                     : sdw_vae_decode(a->m, a->arena, &in, &o));
  const int64_t n = sdw_tensor_numel(&o);
  out->v = malloc((size_t)n * sizeof(double));
  for (int64_t i = 0; i < n; i++)
    out->v[i] = ((float *)o.data)[i];
  free4(&in);
  free4(&o);
}

SDW_TEST(vae_tiled_decode) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena(), *one = test_arena();
  sdw_vae m;
  if (arena && one && open_golden(&m, ctx)) {
    /* the golden's sample_size 32 -> 16-latent tiles, stride 12, blend 8
     * pixels, keep 24: a 28 x 20 latent is 3 x 2 tiles, the last row and
     * column partial (4 and 8 latents) */
    sdw_vae_tile_plan plan;
    CHECK_OK(sdw_vae_tile_plan_decode(&m, NULL, &plan));
    CHECK(plan.tile == 16 && plan.stride == 12 && plan.blend == 8 && plan.keep == 24 &&
          plan.out_tile == 32);
    const int64_t N = 2, h = 28, w = 20;
    sdw_tensor z = guarded4(N, 4, h, w, "latents"), img = guarded4(N, 3, 2 * h, 2 * w, "image");
    sdw_test_rng rng = sdw_test_rng_make(3);
    sdw_test_fill_normal(&rng, z.data, (size_t)(N * 4 * h * w), 1.0f);
    CHECK_OK(sdw_vae_decode_tiled(&m, arena, NULL, &z, &img));
    CHECK(sdw_arena_mark(arena) == 0);
    /* memory: the tiled call's arena peak is one tile's decode plus the
     * tile's input and output, whatever the image size */
    const size_t tile_bytes = sdw_vae_decode_arena_bytes(&m, N, 16, 16) +
                              (size_t)(N * 4 * 16 * 16 + N * 3 * 32 * 32) * 4 + 256;
    CHECK_MSG(sdw_arena_peak(arena) <= tile_bytes, "tiled peak %zu > %zu", sdw_arena_peak(arena),
              tile_bytes);
    CHECK(sdw_arena_peak(arena) < sdw_vae_decode_arena_bytes(&m, N, h, w));
    tile_arg a = {&m, one, z.data, N, 4, h, w, false};
    double *want = ref_tiled(ref_tile, &a, h, w, 16, 12, 8, 24, N * 3, 2 * h, 2 * w);
    /* float blending (2 products and a sum per blended value) vs double:
     * a few ulps of values of magnitude ~max */
    CHECK_REL(sdw_test_rel_err_f32_f64(img.data, want, (size_t)(N * 3 * 4 * h * w)), 1e-6,
              "tiled decode vs tiles blended in double");
    free(want);
    /* no larger than a tile: the untiled decode, bit for bit */
    sdw_tensor z1 = guarded4(1, 4, 16, 12, "small latents");
    sdw_tensor i1 = guarded4(1, 3, 32, 24, "tiled"), i2 = guarded4(1, 3, 32, 24, "untiled");
    sdw_test_fill_normal(&rng, z1.data, 4 * 16 * 12, 1.0f);
    CHECK_OK(sdw_vae_decode_tiled(&m, arena, NULL, &z1, &i1));
    CHECK_OK(sdw_vae_decode(&m, arena, &z1, &i2));
    CHECK(memcmp(i1.data, i2.data, 3 * 32 * 24 * sizeof(float)) == 0);
    free4(&z1);
    free4(&i1);
    free4(&i2);
    free4(&z);
    free4(&img);
    sdw_vae_free(&m);
  }
  sdw_arena_destroy(arena);
  sdw_arena_destroy(one);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(vae_tiled_encode) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena(), *one = test_arena();
  sdw_vae m;
  if (arena && one && open_golden(&m, ctx)) {
    /* 32-pixel tiles, stride 24, blend 4 latents, keep 12: a 72 x 56 image
     * is 3 x 3 tiles */
    sdw_vae_tile_plan plan;
    CHECK_OK(sdw_vae_tile_plan_encode(&m, NULL, &plan));
    CHECK(plan.tile == 32 && plan.stride == 24 && plan.blend == 4 && plan.keep == 12);
    const int64_t N = 1, H = 72, W = 56, h = H / 2, w = W / 2;
    sdw_tensor x = guarded4(N, 3, H, W, "image");
    sdw_tensor mean = guarded4(N, 4, h, w, "mean"), logvar = guarded4(N, 4, h, w, "logvar");
    sdw_test_rng rng = sdw_test_rng_make(4);
    sdw_test_fill_uniform(&rng, x.data, (size_t)(N * 3 * H * W), -1.0f, 1.0f);
    CHECK_OK(sdw_vae_encode_tiled(&m, arena, NULL, &x, &mean, &logvar));
    tile_arg a = {&m, one, x.data, N, 3, H, W, true};
    double *want = ref_tiled(ref_tile, &a, H, W, 32, 24, 4, 12, N * 8, h, w);
    /* DiagonalGaussianDistribution on the blended moments */
    double *wm = malloc((size_t)(N * 4 * h * w) * sizeof(double));
    double *wl = malloc((size_t)(N * 4 * h * w) * sizeof(double));
    for (int64_t i = 0; i < 4 * h * w; i++) {
      wm[i] = want[i];
      wl[i] = fmin(fmax(want[4 * h * w + i], -30.0), 20.0);
    }
    CHECK_REL(sdw_test_rel_err_f32_f64(mean.data, wm, (size_t)(4 * h * w)), 1e-6,
              "tiled encode mean");
    CHECK_REL(sdw_test_rel_err_f32_f64(logvar.data, wl, (size_t)(4 * h * w)), 1e-6,
              "tiled encode logvar");
    free(want);
    free(wm);
    free(wl);
    free4(&x);
    free4(&mean);
    free4(&logvar);
    sdw_vae_free(&m);
  }
  sdw_arena_destroy(arena);
  sdw_arena_destroy(one);
  sdw_ctx_destroy(ctx);
}

/* diffusers' own enable_tiling() outputs (tests/data/vae/tiled.safetensors,
 * tools/gen_vae_tiled_golden.py: float64 runs of the vae-tiny model on a
 * 40 x 36 latent, a 4 x 3 tile grid, and a 72 x 56 image, 3 x 3 tiles).
 * Tolerance 1e-5 as for the untiled golden: the same float32 noise (the
 * blending adds a few roundings of values already rounded). The untiled
 * decode of the same non-square latent is checked too, and differs from
 * the tiled one by ~0.3: tiling is not a no-op. */
SDW_TEST(vae_tiled_matches_diffusers) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  sdw_arena *arena = test_arena();
  char path[512];
  snprintf(path, sizeof path, "%s/vae/tiled.safetensors", sdw_test_data_dir());
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(path, &io));
  sdw_vae m;
  if (io && arena && open_golden(&m, ctx)) {
    sdw_tensor z = golden_f32(io, "latents"), x = golden_f32(io, "image");
    sdw_tensor dec = guarded4(1, 3, 80, 72, "decoded");
    sdw_tensor mean = guarded4(1, 4, 36, 28, "mean"), logvar = guarded4(1, 4, 36, 28, "logvar");
    CHECK_OK(sdw_vae_decode_tiled(&m, arena, NULL, &z, &dec));
    CHECK_REL(rel_vs_golden(io, "decoded_f64", &dec), 1e-5, "tiled decode vs diffusers");
    CHECK(rel_vs_golden(io, "untiled_f64", &dec) > 0.1);
    CHECK_OK(sdw_vae_encode_tiled(&m, arena, NULL, &x, &mean, &logvar));
    CHECK_REL(rel_vs_golden(io, "mean_f64", &mean), 1e-5, "tiled encode mean vs diffusers");
    CHECK_REL(rel_vs_golden(io, "logvar_f64", &logvar), 1e-5, "tiled encode logvar vs diffusers");
    CHECK_OK(sdw_vae_decode(&m, arena, &z, &dec));
    CHECK_REL(rel_vs_golden(io, "untiled_f64", &dec), 1e-5, "untiled 40x36 decode");
    free4(&z);
    free4(&x);
    free4(&dec);
    free4(&mean);
    free4(&logvar);
    sdw_vae_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}
