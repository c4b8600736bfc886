/* `sdw run vae-encode` and `sdw run vae-decode`: the VAE (core/model/vae.h)
 * from safetensors tensors to safetensors tensors. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/safetensors.h"
#include "core/cli/cli.h"
#include "core/cli/run.h"
#include "core/model/vae.h"
#include "core/model/weights.h"
#include "kernels/ops.h"

static void usage(FILE *out, bool encode) {
  const char *name = encode ? "vae-encode" : "vae-decode";
  fprintf(out,
          "usage: sdw run %s --model PATH --in IN.safetensors --out OUT.safetensors\n"
          "                          [--config CONFIG.json] [--tile PIXELS] [--tile-overlap F]\n"
          "\n",
          name);
  if (encode)
    fprintf(out, "Encodes images with a VAE (diffusers' AutoencoderKL). IN holds image\n"
                 "[batch, 3, height, width] with values in [-1, 1], height and width multiples\n"
                 "of 8; OUT receives the posterior's mean and logvar [batch, 4, height/8,\n"
                 "width/8] as F32, unscaled (Stable Diffusion feeds its UNet mean x 0.18215).\n");
  else
    fprintf(out, "Decodes latents with a VAE (diffusers' AutoencoderKL). IN holds latents\n"
                 "[batch, 4, height, width], unscaled (divide a UNet's latents by 0.18215\n"
                 "first); OUT receives image [batch, 3, 8 x height, 8 x width] as F32, values\n"
                 "about [-1, 1].\n");
  fprintf(out,
          "\n"
          "options:\n"
          "  --model PATH      the weights: a .safetensors file (a diffusers VAE, a standalone\n"
          "                    LDM VAE, or a Stable Diffusion single-file checkpoint; F32, F16\n"
          "                    or BF16), a diffusers pipeline or its vae folder, or a folder\n"
          "                    of config.json + weights.safetensors\n"
          "  --config FILE     the diffusers config.json to use (default: the one beside the\n"
          "                    weights, else the SD 1.x VAE, sd-vae-ft-mse)\n"
          "  --in FILE         the input tensors\n"
          "  --out FILE        the output file (written atomically)\n"
          "  --tile PIXELS     %s in overlapping tiles of PIXELS x PIXELS image pixels\n"
          "                    blended as diffusers' enable_tiling() does (bounded memory for\n"
          "                    large images; each tile has its own normalisation statistics,\n"
          "                    so the result differs slightly from an untiled run); 0, the\n"
          "                    default, runs whole\n"
          "  --tile-overlap F  the tiles' overlap factor (default 0.25)\n"
          "  --help            print this text\n",
          encode ? "encode" : "decode");
}

void sdw_run_vae_encode_usage(FILE *out) { usage(out, true); }
void sdw_run_vae_decode_usage(FILE *out) { usage(out, false); }

static int usage_error(bool encode, const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: run %s: ", encode ? "vae-encode" : "vae-decode");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw run %s --help' lists the options\n",
          encode ? "vae-encode" : "vae-decode");
  return 2;
}

typedef struct run_state {
  sdw_ctx *ctx;
  sdw_safetensors *in;
  sdw_weights *weights;
  sdw_vae model;
  bool model_ready;
  sdw_arena *arena;
  float *input, *out_host[2];
  void *dev[3]; /* backend copies of the input and the outputs (untiled runs) */
} run_state;

static void run_state_free(run_state *s) {
  for (int i = 0; i < 3; i++)
    if (s->dev[i] && s->ctx) s->ctx->ops->free(s->ctx, s->dev[i]);
  if (s->model_ready) sdw_vae_free(&s->model);
  sdw_arena_destroy(s->arena);
  sdw_weights_close(s->weights);
  sdw_safetensors_close(s->in);
  sdw_ctx_destroy(s->ctx);
  free(s->input);
  free(s->out_host[0]);
  free(s->out_host[1]);
}

/* The input tensor as F32 [N, C, H, W] in host memory (converted from F64,
 * F16 or BF16). */
static sdw_status read_input(run_state *s, const char *name, int64_t channels, const char *what,
                             sdw_tensor *out) {
  const char *file = sdw_safetensors_name(s->in);
  const sdw_safetensors_entry *e = sdw_safetensors_find(s->in, name);
  if (!e)
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no tensor named '%s'; the input must hold %s", file,
                    name, what);
  bool fl =
      e->dtype == SDW_F32 || e->dtype == SDW_F64 || e->dtype == SDW_F16 || e->dtype == SDW_BF16;
  if (!fl || e->ndim != 4 || e->shape[0] < 1 || e->shape[1] != channels || e->shape[2] < 1 ||
      e->shape[3] < 1)
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' must be %s (it is %s with %d dims)", file, name, what,
                    sdw_dtype_name(e->dtype), e->ndim);
  s->input = malloc((size_t)e->numel * sizeof(float));
  if (!s->input) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of host memory", file);
  /* a copy: the mapping may be unaligned */
  void *raw = malloc(e->nbytes ? e->nbytes : 1);
  if (!raw) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of host memory", file);
  memcpy(raw, e->data, e->nbytes);
  sdw_tensor src = sdw_tensor_4d(raw, e->dtype, e->shape[0], e->shape[1], e->shape[2], e->shape[3]);
  *out = sdw_tensor_4d(s->input, SDW_F32, e->shape[0], e->shape[1], e->shape[2], e->shape[3]);
  sdw_status st = sdw_tensor_convert(&src, out);
  free(raw);
  return st;
}

static sdw_status write_outputs(const char *path, bool encode, const sdw_tensor *a,
                                const sdw_tensor *b, int tile) {
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  char t[32];
  snprintf(t, sizeof t, "%d", tile);
  sdw_status st =
      sdw_safetensors_writer_set_metadata(w, "sdw_component", encode ? "vae-encode" : "vae-decode");
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "tile", t);
  if (st == SDW_OK) st = sdw_safetensors_writer_add_tensor(w, encode ? "mean" : "image", a);
  if (st == SDW_OK && encode) st = sdw_safetensors_writer_add_tensor(w, "logvar", b);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  sdw_safetensors_writer_destroy(w);
  return st;
}

typedef struct run_args {
  bool encode;
  const char *model, *config, *in, *out;
  int tile;
  double overlap;
} run_args;

static sdw_status run(run_state *s, const run_args *a, int *exit_code) {
  SDW_TRY(sdw_safetensors_open(a->in, &s->in));
  SDW_TRY(sdw_weights_open(a->model, "vae", &s->weights));
  sdw_vae_config cfg;
  const char *cfg_path = a->config ? a->config : sdw_weights_config_path(s->weights);
  SDW_TRY(cfg_path ? sdw_vae_config_from_json(cfg_path, &cfg)
                   : sdw_vae_preset("sd-vae-ft-mse", &cfg));
  const int64_t f = sdw_vae_downscale(&cfg);
  sdw_tensor x;
  char what[160];
  if (a->encode)
    snprintf(what, sizeof what,
             "image, a float tensor [batch, %d, height, width] with height and width multiples "
             "of %lld",
             cfg.in_channels, (long long)f);
  else
    snprintf(what, sizeof what, "latents, a float tensor [batch, %d, height, width]",
             cfg.latent_channels);
  SDW_TRY(read_input(s, a->encode ? "image" : "latents",
                     a->encode ? cfg.in_channels : cfg.latent_channels, what, &x));
  const int64_t N = x.shape[0], H = x.shape[2], W = x.shape[3];
  if (a->encode && (H % f || W % f))
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: image is %lldx%lld; height and width must be multiples of %lld", a->in,
                    (long long)H, (long long)W, (long long)f);

  SDW_TRY(sdw_ctx_create(sdw_backend_cpu(), 0, &s->ctx));
  SDW_TRY(sdw_vae_create(&s->model, s->ctx, &cfg, a->encode ? SDW_VAE_ENCODER : SDW_VAE_DECODER));
  s->model_ready = true;
  sdw_status st = sdw_vae_load(&s->model, s->weights, NULL);
  if (st == SDW_ERR_FORMAT && !cfg_path) {
    /* The preset was assumed: say so, since that is the likely cause. */
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    return sdw_fail(st,
                    "%s (no config.json was found beside the weights, so they were taken for "
                    "the SD 1.x VAE; give --config)",
                    msg);
  }
  SDW_TRY(st);

  sdw_vae_tiling tiling = {.tile_sample_size = a->tile, .overlap = a->overlap};
  sdw_vae_tile_plan plan = {0};
  if (a->tile) {
    st = a->encode ? sdw_vae_tile_plan_encode(&s->model, &tiling, &plan)
                   : sdw_vae_tile_plan_decode(&s->model, &tiling, &plan);
    if (st != SDW_OK) {
      *exit_code = 2;
      return st;
    }
  }
  /* Output shapes and the arena: what one run (or one tile) needs. */
  const int64_t oc = a->encode ? cfg.latent_channels : cfg.out_channels;
  const int64_t oh = a->encode ? H / f : H * f, ow = a->encode ? W / f : W * f;
  int64_t rh = H, rw = W; /* the largest input one forward sees */
  if (a->tile) {
    rh = H < plan.tile ? H : plan.tile;
    rw = W < plan.tile ? W : plan.tile;
  }
  size_t need = a->encode ? sdw_vae_encode_arena_bytes(&s->model, N, rh, rw)
                          : sdw_vae_decode_arena_bytes(&s->model, N, rh, rw);
  need += (size_t)(N * (x.shape[1] * rh * rw +
                        2 * oc * (a->encode ? rh / f * rw / f : rh * f * rw * f))) *
              sizeof(float) +
          (1 << 20);
  SDW_TRY(sdw_arena_create(&s->arena, "vae activations", need));
  const size_t out_n = (size_t)(N * oc * oh * ow);
  const sdw_backend *ops = s->ctx->ops;
  for (int i = 0; i < (a->encode ? 2 : 1); i++) {
    s->out_host[i] = malloc(out_n * sizeof(float));
    if (!s->out_host[i]) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for outputs");
  }
  sdw_tensor o0 = sdw_tensor_4d(s->out_host[0], SDW_F32, N, oc, oh, ow);
  sdw_tensor o1 = sdw_tensor_4d(s->out_host[1], SDW_F32, N, oc, oh, ow);
  if (a->tile) {
    st = a->encode ? sdw_vae_encode_tiled(&s->model, s->arena, &tiling, &x, &o0, &o1)
                   : sdw_vae_decode_tiled(&s->model, s->arena, &tiling, &x, &o0);
  } else {
    /* backend copies of the input and outputs (host memory on the CPU) */
    sdw_device dev = {ops->device, 0};
    SDW_TRY(ops->alloc(s->ctx, sdw_tensor_nbytes(&x), &s->dev[0]));
    SDW_TRY(ops->upload(s->ctx, s->dev[0], x.data, sdw_tensor_nbytes(&x)));
    for (int i = 0; i < (a->encode ? 2 : 1); i++)
      SDW_TRY(ops->alloc(s->ctx, out_n * sizeof(float), &s->dev[1 + i]));
    sdw_tensor xd = x, d0 = o0, d1 = o1;
    xd.data = s->dev[0];
    d0.data = s->dev[1];
    d1.data = s->dev[2];
    xd.device = d0.device = d1.device = dev;
    st = a->encode ? sdw_vae_encode(&s->model, s->arena, &xd, &d0, &d1)
                   : sdw_vae_decode(&s->model, s->arena, &xd, &d0);
    if (st == SDW_OK) st = ops->download(s->ctx, o0.data, d0.data, out_n * sizeof(float));
    if (st == SDW_OK && a->encode)
      st = ops->download(s->ctx, o1.data, d1.data, out_n * sizeof(float));
  }
  if (st != SDW_OK) {
    sdw_error_prefix("%s", a->in);
    return st;
  }
  return write_outputs(a->out, a->encode, &o0, &o1, a->tile);
}

static int run_vae(int argc, char **argv, bool encode) {
  run_args a = {.encode = encode, .overlap = 0.25};
  const char *tile = NULL, *overlap = NULL;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      usage(stdout, encode);
      return 0;
    }
    static const char *const names[] = {"--model", "--config",       "--in",
                                        "--out",   "--tile-overlap", "--tile"};
    const char **slots[] = {&a.model, &a.config, &a.in, &a.out, &overlap, &tile};
    int matched = 0;
    for (int k = 0; k < 6 && !matched; k++) {
      matched = sdw_run_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return 2;
    }
    if (!matched) return usage_error(encode, "unknown argument '%s'", arg);
  }
  if (!a.model || !a.in || !a.out)
    return usage_error(encode, "%s", "--model, --in and --out are required");
  if (tile) {
    char *end;
    errno = 0;
    long v = strtol(tile, &end, 10);
    if (errno || end == tile || *end || v < 0 || v > (1 << 20))
      return usage_error(encode, "--tile takes a tile size in pixels (0: no tiling), not '%s'",
                         tile);
    a.tile = (int)v;
  }
  if (overlap) {
    char *end;
    errno = 0;
    double v = strtod(overlap, &end);
    if (errno || end == overlap || *end || !(v >= 0.0 && v < 1.0))
      return usage_error(encode, "--tile-overlap takes a factor in [0, 1), not '%s'", overlap);
    a.overlap = v;
  }
  run_state s;
  memset(&s, 0, sizeof s);
  int code = 1;
  sdw_status st = run(&s, &a, &code);
  if (st != SDW_OK) sdw_cli_report_error(NULL);
  run_state_free(&s);
  return st == SDW_OK ? 0 : code;
}

int sdw_run_vae_encode(int argc, char **argv) { return run_vae(argc, argv, true); }
int sdw_run_vae_decode(int argc, char **argv) { return run_vae(argc, argv, false); }
