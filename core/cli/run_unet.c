/* `sdw run unet`: one UNet forward from safetensors inputs to a safetensors
 * output (the seed's UNetModel or a diffusers SD 1.x UNet2DConditionModel). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/safetensors.h"
#include "core/cli/cli.h"
#include "core/cli/run.h"
#include "core/model/unet.h"
#include "kernels/ops.h"

void sdw_run_unet_usage(FILE *out) {
  fprintf(out,
          "usage: sdw run unet --model PATH --in IN.safetensors --out OUT.safetensors\n"
          "                    [--no-context]\n"
          "\n"
          "Runs one UNet forward: the seed's UNetModel or diffusers' UNet2DConditionModel\n"
          "(SD 1.x), whichever the config.json beside the weights describes.\n"
          "IN holds sample [batch, channels, H, W] (also read as 'x'), timestep [batch],\n"
          "[1] or [] (also 't'; integer or float) and optionally context [batch, tokens,\n"
          "width] (also 'ctx' or 'encoder_hidden_states'). Float inputs may be F32, F16,\n"
          "BF16 or F64. OUT receives out [batch, channels, H, W] as F32. Without a context\n"
          "the seed's UNet skips its transformers, as the seed does; an SD 1.x UNet needs one.\n"
          "\n"
          "options:\n"
          "  --model PATH   a folder with config.json and the weights: a golden-style\n"
          "                 bundle (weights.safetensors), a diffusers unet/ folder, or a\n"
          "                 diffusers pipeline (its unet/ subfolder)\n"
          "  --in FILE      the input tensors\n"
          "  --out FILE     the output file (written atomically)\n"
          "  --no-context   ignore IN's context (the seed's unconditional path)\n"
          "  --help         print this text\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: run unet: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw run unet --help' lists the options\n");
  return 2;
}

typedef struct run_state {
  sdw_ctx *ctx;
  sdw_arena *arena;
  sdw_safetensors *in;
  sdw_unet model;
  bool model_ready;
  float *x, *t, *c, *out;
  float *x_dev, *t_dev, *c_dev, *out_dev;
} run_state;

static void run_state_free(run_state *s) {
  if (s->ctx) {
    if (s->x_dev) s->ctx->ops->free(s->ctx, s->x_dev);
    if (s->t_dev) s->ctx->ops->free(s->ctx, s->t_dev);
    if (s->c_dev) s->ctx->ops->free(s->ctx, s->c_dev);
    if (s->out_dev) s->ctx->ops->free(s->ctx, s->out_dev);
  }
  if (s->model_ready) sdw_unet_free(&s->model);
  sdw_arena_destroy(s->arena);
  sdw_safetensors_close(s->in);
  sdw_ctx_destroy(s->ctx);
  free(s->x);
  free(s->t);
  free(s->c);
  free(s->out);
}

static sdw_status run(run_state *s, const char *model, const char *in_path, const char *out_path,
                      bool no_context) {
  SDW_TRY(sdw_safetensors_open(in_path, &s->in));
  static const char *const sample_names[] = {"sample", "x"};
  static const char *const time_names[] = {"timestep", "t", "timesteps"};
  static const char *const ctx_names[] = {"context", "ctx", "encoder_hidden_states"};
  const sdw_safetensors_entry *ex = sdw_run_find_any(s->in, sample_names, 2);
  const sdw_safetensors_entry *et = sdw_run_find_any(s->in, time_names, 3);
  const sdw_safetensors_entry *ec = no_context ? NULL : sdw_run_find_any(s->in, ctx_names, 3);
  if (!ex || !et)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: the input needs 'sample' [batch, channels, H, W] and "
                    "'timestep' [batch]",
                    in_path);
  if (ex->ndim != 4)
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' must be [batch, channels, H, W]", in_path, ex->name);
  const int64_t N = ex->shape[0];
  if (!(et->ndim == 0 || (et->ndim == 1 && (et->shape[0] == N || et->shape[0] == 1))))
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' must have shape [%lld], [1] or []", in_path, et->name,
                    (long long)N);
  if (ec && ec->ndim != 3)
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' must be [batch, tokens, width]", in_path, ec->name);
  SDW_TRY(sdw_run_read_f32(s->in, ex, false, &s->x));
  float *t1 = NULL;
  SDW_TRY(sdw_run_read_f32(s->in, et, true, &t1));
  s->t = malloc((size_t)N * sizeof(float));
  if (!s->t) {
    free(t1);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  for (int64_t i = 0; i < N; i++)
    s->t[i] = et->numel == N ? t1[i] : t1[0]; /* broadcast */
  free(t1);
  if (ec) SDW_TRY(sdw_run_read_f32(s->in, ec, false, &s->c));

  SDW_TRY(sdw_ctx_create(sdw_backend_cpu(), 0, &s->ctx));
  SDW_TRY(sdw_unet_open(&s->model, s->ctx, model));
  s->model_ready = true;
  const sdw_unet_config *cfg = &s->model.cfg;
  /* activations: address space only; pages are committed as they are used */
  SDW_TRY(sdw_arena_create(&s->arena, "unet activations", (size_t)64 << 30));

  const int64_t C = ex->shape[1], H = ex->shape[2], W = ex->shape[3];
  const size_t nx = (size_t)(N * C * H * W), no = (size_t)(N * cfg->out_channels * H * W);
  sdw_ctx *ctx = s->ctx;
  const sdw_device dev = {ctx->ops->device, 0};
  SDW_TRY(sdw_run_upload_f32(ctx, s->x, nx, &s->x_dev));
  SDW_TRY(sdw_run_upload_f32(ctx, s->t, (size_t)N, &s->t_dev));
  SDW_TRY(ctx->ops->alloc(ctx, no * sizeof(float), (void **)&s->out_dev));
  sdw_tensor x = sdw_tensor_4d(s->x_dev, SDW_F32, N, C, H, W);
  sdw_tensor t = sdw_tensor_1d(s->t_dev, SDW_F32, N);
  sdw_tensor o = sdw_tensor_4d(s->out_dev, SDW_F32, N, cfg->out_channels, H, W);
  sdw_tensor c = {0};
  x.device = t.device = o.device = dev;
  if (ec) {
    SDW_TRY(sdw_run_upload_f32(ctx, s->c, (size_t)ec->numel, &s->c_dev));
    c = sdw_tensor_3d(s->c_dev, SDW_F32, ec->shape[0], ec->shape[1], ec->shape[2]);
    c.device = dev;
  }
  sdw_status st = sdw_unet_forward(&s->model, s->arena, &x, &t, ec ? &c : NULL, &o);
  if (st != SDW_OK) {
    sdw_error_prefix("%s", in_path);
    return st;
  }
  s->out = malloc(no * sizeof(float));
  if (!s->out) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the output");
  SDW_TRY(ctx->ops->download(ctx, s->out, s->out_dev, no * sizeof(float)));

  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  sdw_tensor oh = sdw_tensor_4d(s->out, SDW_F32, N, cfg->out_channels, H, W);
  st = sdw_safetensors_writer_set_metadata(w, "sdw_component", "unet");
  if (st == SDW_OK)
    st = sdw_safetensors_writer_set_metadata(
        w, "topology", cfg->topology == SDW_UNET_SEED ? "seed" : "diffusers-sd1");
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "context", ec ? "true" : "false");
  if (st == SDW_OK) st = sdw_safetensors_writer_add_tensor(w, "out", &oh);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, out_path);
  sdw_safetensors_writer_destroy(w);
  return st;
}

int sdw_run_unet(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *out = NULL;
  bool no_context = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      sdw_run_unet_usage(stdout);
      return 0;
    }
    if (strcmp(a, "--no-context") == 0) {
      no_context = true;
      continue;
    }
    static const char *const names[] = {"--model", "--in", "--out"};
    const char **slots[] = {&model, &in, &out};
    int matched = 0;
    for (int k = 0; k < 3 && !matched; k++) {
      matched = sdw_run_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return 2;
    }
    if (!matched) return usage_error("unknown argument '%s'", a);
  }
  if (!model || !in || !out) return usage_error("%s", "--model, --in and --out are required");
  run_state s;
  memset(&s, 0, sizeof s);
  sdw_status st = run(&s, model, in, out, no_context);
  if (st != SDW_OK) sdw_cli_report_error(NULL);
  run_state_free(&s);
  return st == SDW_OK ? 0 : 1;
}
