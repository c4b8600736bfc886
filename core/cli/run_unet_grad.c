/* `sdw run unet-grad`: one training forward and backward of the UNet with
 * the plain MSE loss, from safetensors inputs to a safetensors file of the
 * loss and every parameter's gradient: the way checks outside the C tests
 * reach the trainer's backward (core/model/unet.h, core/train/loss.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/safetensors.h"
#include "core/cli/cli.h"
#include "core/cli/run.h"
#include "core/model/unet.h"
#include "core/train/loss.h"
#include "kernels/ops.h"

void sdw_run_unet_grad_usage(FILE *out) {
  fprintf(out,
          "usage: sdw run unet-grad --model PATH --in IN.safetensors --out OUT.safetensors\n"
          "                         [--no-context] [--checkpoint] [--backend NAME]\n"
          "\n"
          "Runs the trainer's UNet forward and backward with the plain MSE loss\n"
          "mean((out - target)^2) over every element, and writes the loss and the\n"
          "gradient of every parameter. IN holds sample [batch, channels, H, W] (the noised\n"
          "input; also read as 'x' or 'x_t'), timestep [batch], [1] or [] (also 't'),\n"
          "optionally context [batch, tokens, width] (also 'ctx' or\n"
          "'encoder_hidden_states') and target [batch, channels, H, W] (the noise; also\n"
          "'noise'). OUT receives loss [] and out [batch, channels, H, W] as F32, and\n"
          "grad.<name> for every parameter in the model's own names.\n"
          "\n"
          "options:\n"
          "  --model PATH   a folder with config.json and the weights (as for 'sdw run unet')\n"
          "  --in FILE      the input tensors\n"
          "  --out FILE     the output file (written atomically)\n"
          "  --no-context   ignore IN's context (the seed's unconditional path)\n"
          "  --checkpoint   per-ResBlock gradient checkpointing (the same gradients)\n"
          "  --backend NAME the op backend: cpu (default) or cuda (GPU 0, fp32 mode)\n"
          "  --help         print this text\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: run unet-grad: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw run unet-grad --help' lists the options\n");
  return 2;
}

typedef struct grad_state {
  sdw_ctx *ctx;
  sdw_arena *arena;
  sdw_safetensors *in;
  sdw_unet model, grads;
  bool model_ready, grads_ready;
  float *x, *t, *c, *target, *out, *grad_host;
  float *dev[5]; /* x, t, c, target, out + deps (one buffer) */
} grad_state;

static void grad_state_free(grad_state *s) {
  for (int i = 0; i < 5; i++)
    if (s->dev[i]) s->ctx->ops->free(s->ctx, s->dev[i]);
  if (s->grads_ready) sdw_unet_free(&s->grads);
  if (s->model_ready) sdw_unet_free(&s->model);
  sdw_arena_destroy(s->arena);
  sdw_safetensors_close(s->in);
  sdw_ctx_destroy(s->ctx);
  free(s->x);
  free(s->t);
  free(s->c);
  free(s->target);
  free(s->out);
  free(s->grad_host);
}

static sdw_status run(grad_state *s, const char *model, const char *in_path, const char *out_path,
                      bool no_context, bool checkpoint, const char *backend) {
  SDW_TRY(sdw_safetensors_open(in_path, &s->in));
  static const char *const sample_names[] = {"sample", "x", "x_t"};
  static const char *const time_names[] = {"timestep", "t", "timesteps"};
  static const char *const ctx_names[] = {"context", "ctx", "encoder_hidden_states"};
  static const char *const target_names[] = {"target", "noise"};
  const sdw_safetensors_entry *ex = sdw_run_find_any(s->in, sample_names, 3);
  const sdw_safetensors_entry *et = sdw_run_find_any(s->in, time_names, 3);
  const sdw_safetensors_entry *ec = no_context ? NULL : sdw_run_find_any(s->in, ctx_names, 3);
  const sdw_safetensors_entry *eg = sdw_run_find_any(s->in, target_names, 2);
  if (!ex || !et || !eg)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: the input needs 'sample' [batch, channels, H, W], 'timestep' [batch] "
                    "and 'target' [batch, channels, H, W]",
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
  SDW_TRY(sdw_run_read_f32(s->in, eg, false, &s->target));
  float *t1 = NULL;
  SDW_TRY(sdw_run_read_f32(s->in, et, true, &t1));
  s->t = malloc((size_t)(N ? N : 1) * sizeof(float));
  if (!s->t) {
    free(t1);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  for (int64_t i = 0; i < N; i++)
    s->t[i] = et->numel == N ? t1[i] : t1[0]; /* broadcast */
  free(t1);
  if (ec) SDW_TRY(sdw_run_read_f32(s->in, ec, false, &s->c));

  const sdw_backend *be = sdw_backend_cpu();
  if (strcmp(backend, "cuda") == 0) {
    be = sdw_backend_cuda();
    if (!be) return sdw_fail(SDW_ERR_UNSUPPORTED, "this build has no CUDA backend");
  }
  SDW_TRY(sdw_ctx_create(be, 0, &s->ctx));
  SDW_TRY(sdw_unet_open(&s->model, s->ctx, model));
  s->model_ready = true;
  SDW_TRY(sdw_unet_grads_create(&s->grads, &s->model));
  s->grads_ready = true;
  const sdw_unet_config *cfg = &s->model.cfg;
  const int64_t C = ex->shape[1], H = ex->shape[2], W = ex->shape[3], OC = cfg->out_channels;
  if (eg->ndim != 4 || eg->shape[0] != N || eg->shape[1] != OC || eg->shape[2] != H ||
      eg->shape[3] != W)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: '%s' must have the output's shape [%lld, %lld, %lld, %lld]", in_path,
                    eg->name, (long long)N, (long long)OC, (long long)H, (long long)W);
  SDW_TRY(sdw_arena_create(&s->arena, "unet-grad activations", (size_t)64 << 30));

  sdw_ctx *ctx = s->ctx;
  const sdw_device dev = {ctx->ops->device, 0};
  const size_t nx = (size_t)(N * C * H * W), no = (size_t)(N * OC * H * W);
  SDW_TRY(sdw_run_upload_f32(ctx, s->x, nx, &s->dev[0]));
  SDW_TRY(sdw_run_upload_f32(ctx, s->t, (size_t)N, &s->dev[1]));
  SDW_TRY(sdw_run_upload_f32(ctx, s->target, no, &s->dev[3]));
  SDW_TRY(ctx->ops->alloc(ctx, 2 * no * sizeof(float), (void **)&s->dev[4]));
  sdw_tensor x = sdw_tensor_4d(s->dev[0], SDW_F32, N, C, H, W);
  sdw_tensor t = sdw_tensor_1d(s->dev[1], SDW_F32, N);
  sdw_tensor tg = sdw_tensor_4d(s->dev[3], SDW_F32, N, OC, H, W);
  sdw_tensor o = sdw_tensor_4d(s->dev[4], SDW_F32, N, OC, H, W);
  sdw_tensor d = sdw_tensor_4d(s->dev[4] + no, SDW_F32, N, OC, H, W);
  sdw_tensor c = {0};
  x.device = t.device = tg.device = o.device = d.device = dev;
  if (ec) {
    SDW_TRY(sdw_run_upload_f32(ctx, s->c, (size_t)ec->numel, &s->dev[2]));
    c = sdw_tensor_3d(s->dev[2], SDW_F32, ec->shape[0], ec->shape[1], ec->shape[2]);
    c.device = dev;
  }
  SDW_TRY(ctx->ops->fill(ctx, &d, 0.0f));

  /* F.mse_loss's mean over all elements = sum_n mse[n] / N */
  float *w = malloc((size_t)(N ? N : 1) * sizeof *w);
  if (!w) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  for (int64_t i = 0; i < N; i++)
    w[i] = (float)(1.0 / (double)N);
  sdw_unet_saved *saved = NULL;
  double loss = 0.0;
  sdw_status st =
      sdw_unet_forward_train(&s->model, s->arena, &x, &t, ec ? &c : NULL, &o, checkpoint, &saved);
  if (st == SDW_OK) st = sdw_loss_eval(ctx, s->arena, &o, &tg, w, NULL, &loss, &d);
  if (st == SDW_OK) st = sdw_unet_backward(&s->model, &s->grads, s->arena, saved, &d, NULL, NULL);
  free(w);
  if (st != SDW_OK) {
    sdw_error_prefix("%s", in_path);
    return st;
  }

  const size_t total = s->grads.params.total;
  s->out = malloc(no * sizeof(float));
  s->grad_host = malloc((total ? total : 1) * sizeof(float));
  if (!s->out || !s->grad_host) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  SDW_TRY(ctx->ops->download(ctx, s->out, o.data, no * sizeof(float)));
  SDW_TRY(ctx->ops->download(ctx, s->grad_host, s->grads.params.flat, total * sizeof(float)));

  sdw_safetensors_writer *wr = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&wr));
  const float loss32 = (float)loss;
  st = sdw_safetensors_writer_set_metadata(wr, "sdw_component", "unet-grad");
  if (st == SDW_OK)
    st = sdw_safetensors_writer_set_metadata(
        wr, "topology", cfg->topology == SDW_UNET_SEED ? "seed" : "diffusers-sd1");
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(wr, "loss", "mse (mean)");
  if (st == SDW_OK) st = sdw_safetensors_writer_add(wr, "loss", SDW_F32, 0, NULL, &loss32);
  sdw_tensor oh = sdw_tensor_4d(s->out, SDW_F32, N, OC, H, W);
  if (st == SDW_OK) st = sdw_safetensors_writer_add_tensor(wr, "out", &oh);
  for (int i = 0; st == SDW_OK && i < s->grads.params.count; i++) {
    const sdw_param *p = &s->grads.params.items[i];
    char name[SDW_PARAM_NAME_MAX + 8];
    snprintf(name, sizeof name, "grad.%s", p->name);
    st = sdw_safetensors_writer_add(wr, name, SDW_F32, p->value.ndim, p->value.shape,
                                    s->grad_host + p->offset);
  }
  if (st == SDW_OK) st = sdw_safetensors_writer_write(wr, out_path);
  sdw_safetensors_writer_destroy(wr);
  return st;
}

int sdw_run_unet_grad(int argc, char **argv) {
  const char *model = NULL, *in = NULL, *out = NULL, *backend = "cpu";
  bool no_context = false, checkpoint = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      sdw_run_unet_grad_usage(stdout);
      return 0;
    }
    if (strcmp(a, "--no-context") == 0) {
      no_context = true;
      continue;
    }
    if (strcmp(a, "--checkpoint") == 0) {
      checkpoint = true;
      continue;
    }
    static const char *const names[] = {"--model", "--in", "--out", "--backend"};
    const char **slots[] = {&model, &in, &out, &backend};
    int matched = 0;
    for (int k = 0; k < 4 && !matched; k++) {
      matched = sdw_run_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return 2;
    }
    if (!matched) return usage_error("unknown argument '%s'", a);
  }
  if (!model || !in || !out) return usage_error("%s", "--model, --in and --out are required");
  if (strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0)
    return usage_error("--backend must be cpu or cuda, not '%s'", backend);
  grad_state s;
  memset(&s, 0, sizeof s);
  sdw_status st = run(&s, model, in, out, no_context, checkpoint, backend);
  if (st != SDW_OK) sdw_cli_report_error(NULL);
  grad_state_free(&s);
  return st == SDW_OK ? 0 : 1;
}
