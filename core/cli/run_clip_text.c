/* `sdw run clip-text`: the CLIP text encoder from safetensors ids to
 * safetensors embeddings. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"
#include "core/cli/cli.h"
#include "core/cli/run.h"
#include "core/model/clip.h"
#include "core/model/weights.h"
#include "kernels/ops.h"

void sdw_run_clip_text_usage(FILE *out) {
  fprintf(out,
          "usage: sdw run clip-text --model PATH --in IN.safetensors --out OUT.safetensors\n"
          "                         [--config CONFIG.json] [--attention-mask] [--clip-skip N]\n"
          "\n"
          "Encodes token ids with a CLIP text encoder (transformers' CLIPTextModel).\n"
          "IN holds input_ids (I64 or I32 [batch, tokens], at most 77 tokens) and, with\n"
          "--attention-mask, attention_mask of the same shape. OUT receives\n"
          "last_hidden_state [batch, tokens, width] and pooler_output [batch, width] as F32.\n"
          "\n"
          "options:\n"
          "  --model PATH      the weights: a .safetensors file (transformers, or an LDM\n"
          "                    single-file checkpoint; F32, F16 or BF16), a transformers\n"
          "                    model folder (also sharded), a diffusers pipeline or its\n"
          "                    text_encoder folder, or a folder of config.json +\n"
          "                    weights.safetensors\n"
          "  --config FILE     the transformers config.json to use (default: the one\n"
          "                    beside the weights, else the CLIP ViT-L/14 of SD 1.x)\n"
          "  --in FILE         the input tensors\n"
          "  --out FILE        the output file (written atomically)\n"
          "  --attention-mask  also mask the padding keys with IN's attention_mask (what\n"
          "                    the seed project does; SD 1.x uses the causal mask alone)\n"
          "  --clip-skip N     take last_hidden_state from the N-th layer from the end,\n"
          "                    final layer norm applied (A1111 numbering: 1, the default,\n"
          "                    is the last layer); pooler_output is unchanged\n"
          "  --help            print this text\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: run clip-text: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw run clip-text --help' lists the options\n");
  return 2;
}

/* A copy of an input tensor (the mapping may be unaligned); NULL + message
 * when absent or not an integer [B,T] tensor of the wanted shape. */
static sdw_status read_ints(const sdw_safetensors *st, const char *name, bool ids_only,
                            const int64_t *want_shape, sdw_tensor *out, void **buf) {
  const char *file = sdw_safetensors_name(st);
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  if (!e)
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no tensor named '%s'; the input must hold %s", file,
                    name,
                    ids_only ? "input_ids, I64 or I32 [batch, tokens]"
                             : "attention_mask of input_ids' shape for --attention-mask");
  bool int_ok = e->dtype == SDW_I64 || e->dtype == SDW_I32;
  if (!ids_only)
    int_ok = int_ok || e->dtype == SDW_I16 || e->dtype == SDW_I8 || e->dtype == SDW_U8 ||
             e->dtype == SDW_BOOL;
  if (!int_ok || e->ndim != 2 || e->shape[0] < 1 || e->shape[1] < 1 ||
      (want_shape && (e->shape[0] != want_shape[0] || e->shape[1] != want_shape[1])))
    return sdw_fail(SDW_ERR_FORMAT, "%s: '%s' must be %s [batch, tokens]%s (it is %s with %d dims)",
                    file, name, ids_only ? "I64 or I32" : "an integer tensor",
                    want_shape ? " like input_ids" : "", sdw_dtype_name(e->dtype), e->ndim);
  *buf = malloc(e->nbytes ? e->nbytes : 1);
  if (!*buf) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of host memory", file);
  memcpy(*buf, e->data, e->nbytes);
  *out = sdw_tensor_2d(*buf, e->dtype, e->shape[0], e->shape[1]);
  return SDW_OK;
}

typedef struct run_state {
  sdw_ctx *ctx;
  sdw_safetensors *in;
  sdw_weights *weights;
  sdw_clip_text model;
  bool model_ready;
  void *ids_buf, *mask_buf;
  float *last_dev, *pool_dev, *last_host, *pool_host;
} run_state;

static void run_state_free(run_state *s) {
  if (s->ctx) {
    if (s->last_dev) s->ctx->ops->free(s->ctx, s->last_dev);
    if (s->pool_dev) s->ctx->ops->free(s->ctx, s->pool_dev);
  }
  if (s->model_ready) sdw_clip_text_free(&s->model);
  sdw_weights_close(s->weights);
  sdw_safetensors_close(s->in);
  sdw_ctx_destroy(s->ctx);
  free(s->ids_buf);
  free(s->mask_buf);
  free(s->last_host);
  free(s->pool_host);
}

static sdw_status write_outputs(const char *path, const sdw_tensor *last, const sdw_tensor *pool,
                                bool masked, int clip_skip) {
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  char skip[16];
  snprintf(skip, sizeof skip, "%d", clip_skip);
  sdw_status st = sdw_safetensors_writer_set_metadata(w, "sdw_component", "clip-text");
  if (st == SDW_OK)
    st = sdw_safetensors_writer_set_metadata(w, "attention_mask", masked ? "true" : "false");
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "clip_skip", skip);
  if (st == SDW_OK) st = sdw_safetensors_writer_add_tensor(w, "last_hidden_state", last);
  if (st == SDW_OK) st = sdw_safetensors_writer_add_tensor(w, "pooler_output", pool);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  sdw_safetensors_writer_destroy(w);
  return st;
}

static sdw_status run(run_state *s, const char *model, const char *config, const char *in_path,
                      const char *out_path, bool masked, int clip_skip, int *exit_code) {
  sdw_tensor ids, mask;
  SDW_TRY(sdw_safetensors_open(in_path, &s->in));
  SDW_TRY(read_ints(s->in, "input_ids", true, NULL, &ids, &s->ids_buf));
  if (masked) SDW_TRY(read_ints(s->in, "attention_mask", false, ids.shape, &mask, &s->mask_buf));

  SDW_TRY(sdw_weights_open(model, "text_encoder", &s->weights));
  sdw_clip_text_config cfg = sdw_clip_text_config_vit_l14();
  const char *cfg_path = config ? config : sdw_weights_config_path(s->weights);
  if (cfg_path) SDW_TRY(sdw_clip_text_config_load(cfg_path, &cfg));
  if (clip_skip > cfg.num_layers) {
    *exit_code = 2;
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "run clip-text: --clip-skip %d is more than the model's %lld layers", clip_skip,
                    (long long)cfg.num_layers);
  }
  SDW_TRY(sdw_ctx_create(sdw_backend_cpu(), 0, &s->ctx));
  SDW_TRY(sdw_clip_text_init(&s->model, s->ctx, &cfg));
  s->model_ready = true;
  sdw_status st = sdw_clip_text_load(&s->model, s->weights, NULL);
  if (st == SDW_ERR_FORMAT && !cfg_path) {
    /* The preset was assumed: say so, since that is the likely cause. */
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    return sdw_fail(st,
                    "%s (no config.json was found beside the weights, so they were taken "
                    "for CLIP ViT-L/14; give --config)",
                    msg);
  }
  SDW_TRY(st);

  int64_t B = ids.shape[0], T = ids.shape[1], D = cfg.hidden_size;
  size_t nlast = (size_t)(B * T * D), npool = (size_t)(B * D);
  const sdw_backend *ops = s->ctx->ops;
  SDW_TRY(ops->alloc(s->ctx, nlast * sizeof(float), (void **)&s->last_dev));
  SDW_TRY(ops->alloc(s->ctx, npool * sizeof(float), (void **)&s->pool_dev));
  sdw_device dev = {ops->device, 0};
  sdw_tensor last = sdw_tensor_3d(s->last_dev, SDW_F32, B, T, D);
  sdw_tensor pool = sdw_tensor_2d(s->pool_dev, SDW_F32, B, D);
  last.device = pool.device = dev;
  sdw_clip_text_outputs out = {.pooler_output = &pool};
  if (clip_skip > 1) {
    out.hidden = &last;
    out.hidden_layer = sdw_clip_text_skip_layer(&cfg, clip_skip);
    out.hidden_final_norm = true;
  } else {
    out.last_hidden_state = &last;
  }
  st = sdw_clip_text_forward(&s->model, &ids, masked ? &mask : NULL, &out);
  if (st != SDW_OK) {
    sdw_error_prefix("%s", in_path);
    return st;
  }
  s->last_host = malloc(nlast * sizeof(float));
  s->pool_host = malloc(npool * sizeof(float));
  if (!s->last_host || !s->pool_host)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the outputs");
  SDW_TRY(ops->download(s->ctx, s->last_host, s->last_dev, nlast * sizeof(float)));
  SDW_TRY(ops->download(s->ctx, s->pool_host, s->pool_dev, npool * sizeof(float)));
  sdw_tensor last_h = sdw_tensor_3d(s->last_host, SDW_F32, B, T, D);
  sdw_tensor pool_h = sdw_tensor_2d(s->pool_host, SDW_F32, B, D);
  return write_outputs(out_path, &last_h, &pool_h, masked, clip_skip);
}

int sdw_run_clip_text(int argc, char **argv) {
  const char *model = NULL, *config = NULL, *in = NULL, *out = NULL, *skip = NULL;
  bool masked = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      sdw_run_clip_text_usage(stdout);
      return 0;
    }
    if (strcmp(a, "--attention-mask") == 0) {
      masked = true;
      continue;
    }
    static const char *const names[] = {"--model", "--config", "--in", "--out", "--clip-skip"};
    const char **slots[] = {&model, &config, &in, &out, &skip};
    int matched = 0;
    for (int k = 0; k < 5 && !matched; k++) {
      matched = sdw_run_option(argc, argv, &i, names[k], slots[k]);
      if (matched < 0) return 2;
    }
    if (!matched) return usage_error("unknown argument '%s'", a);
  }
  if (!model || !in || !out) return usage_error("%s", "--model, --in and --out are required");
  int clip_skip = 1;
  if (skip) {
    char *end;
    errno = 0;
    long v = strtol(skip, &end, 10);
    if (errno || end == skip || *end || v < 1 || v > 1000)
      return usage_error("--clip-skip takes a layer count of 1 or more, not '%s'", skip);
    clip_skip = (int)v;
  }
  run_state s;
  memset(&s, 0, sizeof s);
  int code = 1;
  sdw_status st = run(&s, model, config, in, out, masked, clip_skip, &code);
  if (st != SDW_OK) sdw_cli_report_error(NULL);
  run_state_free(&s);
  return st == SDW_OK ? 0 : code;
}
