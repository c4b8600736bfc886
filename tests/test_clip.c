/* The CLIP text encoder (core/model/clip.c) and the weight loader
 * (core/model/weights.c).
 *
 * Reference: tests/data/goldens/clip-text-tiny, transformers' CLIPTextModel
 * (D 64, 2 layers, 4 heads, MLP 128, quick_gelu, random weights), run by
 * PyTorch in float64 on the same weights and ids (the *_f64 tensors). See
 * its README.txt.
 *
 * Tolerance for the golden comparisons: 1e-5 normwise relative error
 * (max|got - want| / max|want|). The README measures PyTorch's own float32
 * run against the float64 one at 5.7e-7 (last_hidden_state) and 4.3e-7
 * (pooler_output): that is what float32 rounding through two layers costs.
 * An implementation that differs in operation order lands at the same
 * order (measured: 4.3e-7 / 4.8e-7 unmasked / masked last_hidden_state,
 * 4.2e-7 pooler_output). A real defect moves the result far more: the
 * wrong eos row gives ~1, and even a 0.1% error in the attention scale
 * gives 8e-4 (tried). 1e-5 leaves ~20x headroom over float32 noise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/safetensors.h"
#include "core/model/clip.h"
#include "core/model/weights.h"
#include "kernels/ops.h"
#include "tests/test.h"

enum { GB = 3, GT = 77, GD = 64 };

static void golden_dir(char *buf, size_t size) {
  snprintf(buf, size, "%s/goldens/clip-text-tiny", sdw_test_data_dir());
}

static void golden_file(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/goldens/clip-text-tiny/%s", sdw_test_data_dir(), name);
}

/* A fresh subfolder of the run's temporary folder. */
static void tmp_sub(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", sdw_test_tmpdir(), name);
  mkdir(buf, 0777);
}

/* A golden tensor as a view into the mapped file (dtype checked). */
static const void *golden_data(const sdw_safetensors *io, const char *name, sdw_dtype dtype,
                               int64_t numel) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(io, name);
  if (!e || e->dtype != dtype || e->numel != numel) {
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s missing or of the wrong type", name);
    return NULL;
  }
  return e->data;
}

static sdw_tensor golden_tensor(const sdw_safetensors *io, const char *name) {
  sdw_tensor t = {0};
  const sdw_safetensors_entry *e = sdw_safetensors_find(io, name);
  if (!e || sdw_safetensors_tensor(io, e, &t) != SDW_OK)
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s unreadable", name);
  return t;
}

typedef struct run_out {
  float *last; /* [B,T,D] */
  float *pool; /* [B,D] */
} run_out;

static void run_out_alloc(run_out *o) {
  o->last = sdw_test_alloc_guarded((size_t)GB * GT * GD, "last_hidden_state");
  o->pool = sdw_test_alloc_guarded((size_t)GB * GD, "pooler_output");
}

static void run_out_free(run_out *o) {
  sdw_test_free_guarded(o->last);
  sdw_test_free_guarded(o->pool);
}

static sdw_status run_model(sdw_clip_text *m, const sdw_tensor *ids, const sdw_tensor *mask,
                            run_out *o) {
  sdw_tensor last = sdw_tensor_3d(o->last, SDW_F32, GB, GT, GD);
  sdw_tensor pool = sdw_tensor_2d(o->pool, SDW_F32, GB, GD);
  sdw_clip_text_outputs out = {.last_hidden_state = &last, .pooler_output = &pool};
  return sdw_clip_text_forward(m, ids, mask, &out);
}

SDW_TEST(clip_golden_masked_and_unmasked) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[512], path[512];
  golden_dir(dir, sizeof dir);
  golden_file(path, sizeof path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(path, &io));
  sdw_clip_text m;
  CHECK_OK(sdw_clip_text_open(&m, ctx, dir, NULL));
  if (io && m.ctx) {
    CHECK(m.config.hidden_size == GD && m.config.num_layers == 2 && m.config.num_heads == 4);
    CHECK(m.config.eos_token_id == 49407 && m.config.act == SDW_CLIP_ACT_QUICK_GELU);
    sdw_tensor ids = golden_tensor(io, "input_ids");
    sdw_tensor mask = golden_tensor(io, "attention_mask");
    run_out o;
    run_out_alloc(&o);
    for (int masked = 0; masked < 2; masked++) {
      CHECK_OK(run_model(&m, &ids, masked ? &mask : NULL, &o));
      const double *want_last =
          golden_data(io, masked ? "last_hidden_state_masked_f64" : "last_hidden_state_f64",
                      SDW_F64, GB * GT * GD);
      const double *want_pool = golden_data(
          io, masked ? "pooler_output_masked_f64" : "pooler_output_f64", SDW_F64, GB * GD);
      if (!want_last || !want_pool) break;
      CHECK_REL(sdw_test_rel_err_f32_f64(o.last, want_last, (size_t)GB * GT * GD), 1e-5,
                masked ? "last_hidden_state (masked)" : "last_hidden_state");
      CHECK_REL(sdw_test_rel_err_f32_f64(o.pool, want_pool, (size_t)GB * GD), 1e-5,
                masked ? "pooler_output (masked)" : "pooler_output");
    }
    /* The mask matters: the masked and unmasked references differ at the
     * padding positions, so running the wrong variant must fail. */
    CHECK_OK(run_model(&m, &ids, NULL, &o));
    const double *masked_ref =
        golden_data(io, "last_hidden_state_masked_f64", SDW_F64, GB * GT * GD);
    if (masked_ref)
      CHECK(sdw_test_rel_err_f32_f64(o.last, masked_ref, (size_t)GB * GT * GD) > 1e-3);
    CHECK_GUARD(o.last);
    CHECK_GUARD(o.pool);
    run_out_free(&o);
    sdw_clip_text_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_ctx_destroy(ctx);
}

/* Hidden states (output_hidden_states) and CLIP skip. The golden has these
 * only in float32 (PyTorch's own float32 run), which is itself within ~6e-7
 * of float64, so the same 1e-5 holds. CLIP skip 2 = final_layer_norm of
 * hidden state 1: its reference is that layer norm computed here in double
 * from the golden hidden_states.1 and the golden final LN weights. */
SDW_TEST(clip_hidden_states_and_clip_skip) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[512], path[512];
  golden_dir(dir, sizeof dir);
  golden_file(path, sizeof path, "io.safetensors");
  sdw_safetensors *io = NULL, *wf = NULL;
  CHECK_OK(sdw_safetensors_open(path, &io));
  golden_file(path, sizeof path, "weights.safetensors");
  CHECK_OK(sdw_safetensors_open(path, &wf));
  sdw_clip_text m;
  CHECK_OK(sdw_clip_text_open(&m, ctx, dir, NULL));
  if (io && wf && m.ctx) {
    size_t n = (size_t)GB * GT * GD;
    sdw_tensor ids = golden_tensor(io, "input_ids");
    float *got = sdw_test_alloc_guarded(n, "hidden");
    sdw_tensor hidden = sdw_tensor_3d(got, SDW_F32, GB, GT, GD);
    for (int layer = 0; layer <= 2; layer++) {
      char name[32];
      snprintf(name, sizeof name, "hidden_states.%d", layer);
      const float *want = golden_data(io, name, SDW_F32, (int64_t)n);
      /* Only the hidden state is asked for: layers past it are skipped. */
      sdw_clip_text_outputs out = {.hidden = &hidden, .hidden_layer = layer};
      CHECK_OK(sdw_clip_text_forward(&m, &ids, NULL, &out));
      if (want) CHECK_REL(sdw_test_rel_err_f32(got, want, n), 1e-5, name);
    }
    CHECK(sdw_clip_text_skip_layer(&m.config, 1) == 2);
    CHECK(sdw_clip_text_skip_layer(&m.config, 2) == 1);
    CHECK(sdw_clip_text_skip_layer(&m.config, 3) == -1);
    CHECK(sdw_clip_text_skip_layer(&m.config, 0) == -1);
    sdw_clip_text_outputs skip = {.hidden = &hidden, .hidden_layer = 1, .hidden_final_norm = true};
    CHECK_OK(sdw_clip_text_forward(&m, &ids, NULL, &skip));
    const float *h1 = golden_data(io, "hidden_states.1", SDW_F32, (int64_t)n);
    const float *g = golden_data(wf, "text_model.final_layer_norm.weight", SDW_F32, GD);
    const float *b = golden_data(wf, "text_model.final_layer_norm.bias", SDW_F32, GD);
    if (h1 && g && b) {
      double *ref = malloc(n * sizeof *ref);
      for (size_t r = 0; r < n / GD; r++) {
        const float *x = h1 + r * GD;
        double mean = 0, var = 0;
        for (int i = 0; i < GD; i++)
          mean += x[i];
        mean /= GD;
        for (int i = 0; i < GD; i++)
          var += (x[i] - mean) * (x[i] - mean);
        var /= GD;
        for (int i = 0; i < GD; i++)
          ref[r * GD + i] = (x[i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
      }
      CHECK_REL(sdw_test_rel_err_f32_f64(got, ref, n), 1e-5, "clip skip 2");
      free(ref);
    }
    /* Skip 1 with the final norm is last_hidden_state itself. */
    skip.hidden_layer = 2;
    CHECK_OK(sdw_clip_text_forward(&m, &ids, NULL, &skip));
    const double *last = golden_data(io, "last_hidden_state_f64", SDW_F64, (int64_t)n);
    if (last) CHECK_REL(sdw_test_rel_err_f32_f64(got, last, n), 1e-5, "clip skip 1");
    CHECK_GUARD(got);
    sdw_test_free_guarded(got);
    sdw_clip_text_free(&m);
  }
  sdw_safetensors_close(io);
  sdw_safetensors_close(wf);
  sdw_ctx_destroy(ctx);
}

/* The pooling rule: with eos_token_id 2 (legacy) the row at argmax(ids),
 * otherwise the first position holding eos_token_id (0 when absent). The
 * rows are checked against the model's own last_hidden_state, which is
 * correct by the golden test above: this test is about which row. */
SDW_TEST(clip_pooler_eos_rules) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[512];
  golden_dir(dir, sizeof dir);
  sdw_clip_text m;
  CHECK_OK(sdw_clip_text_open(&m, ctx, dir, NULL));
  if (m.ctx) {
    /* Row 0: no 49407, max id 40000 at t=3. Row 1: 49407 at t=2 and t=5,
     * with 500 at t=4 (argmax = the first maximum = 2 as well). */
    int32_t ids[GB * GT] = {0};
    ids[3] = 40000;
    ids[5] = 7;
    ids[GT + 2] = 49407;
    ids[GT + 4] = 500;
    ids[GT + 5] = 49407;
    ids[2 * GT + 76] = 49407;
    sdw_tensor tid = sdw_tensor_2d(ids, SDW_I32, GB, GT);
    run_out o;
    run_out_alloc(&o);
    const int64_t want_new[GB] = {0, 2, 76}, want_legacy[GB] = {3, 2, 76};
    for (int legacy = 0; legacy < 2; legacy++) {
      m.config.eos_token_id = legacy ? 2 : 49407;
      CHECK_OK(run_model(&m, &tid, NULL, &o));
      for (int b = 0; b < GB; b++) {
        int64_t t = legacy ? want_legacy[b] : want_new[b];
        CHECK_MSG(memcmp(o.pool + b * GD, o.last + (b * GT + t) * GD, GD * sizeof(float)) == 0,
                  "%s rule: row %d is not pooled from position %lld", legacy ? "legacy" : "eos", b,
                  (long long)t);
      }
    }
    run_out_free(&o);
    /* A shorter sequence runs too (positions 0..T-1). */
    float *short_out = sdw_test_alloc_guarded(1 * 5 * GD, "short");
    sdw_tensor sid = sdw_tensor_2d(ids, SDW_I32, 1, 5);
    sdw_tensor sl = sdw_tensor_3d(short_out, SDW_F32, 1, 5, GD);
    sdw_clip_text_outputs so = {.last_hidden_state = &sl};
    CHECK_OK(sdw_clip_text_forward(&m, &sid, NULL, &so));
    /* Causality: the first 5 positions of the full run match. */
    run_out_alloc(&o);
    CHECK_OK(run_model(&m, &tid, NULL, &o));
    CHECK(sdw_test_rel_err_f32(short_out, o.last, 5 * GD) < 1e-6);
    sdw_test_free_guarded(short_out);
    run_out_free(&o);
    /* Bad input: an id outside the vocabulary, a mask of the wrong shape. */
    ids[7] = 49408;
    float *tmp = sdw_test_alloc_guarded((size_t)GB * GT * GD, "tmp");
    sdw_tensor last = sdw_tensor_3d(tmp, SDW_F32, GB, GT, GD);
    sdw_clip_text_outputs lo = {.last_hidden_state = &last};
    CHECK(sdw_clip_text_forward(&m, &tid, NULL, &lo) == SDW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(sdw_last_error(), "input_ids[0, 7] = 49408") != NULL);
    ids[7] = 0;
    sdw_tensor badmask = sdw_tensor_2d(ids, SDW_I32, GB, 5);
    CHECK(sdw_clip_text_forward(&m, &tid, &badmask, &lo) == SDW_ERR_INVALID_ARGUMENT);
    sdw_tensor fids = sdw_tensor_2d(tmp, SDW_F32, GB, GT);
    CHECK(sdw_clip_text_forward(&m, &fids, NULL, &lo) == SDW_ERR_INVALID_ARGUMENT);
    sdw_test_free_guarded(tmp);
    sdw_clip_text_free(&m);
  }
  sdw_ctx_destroy(ctx);
}

/* --- weight layouts ---------------------------------------------------------- */

typedef enum { AS_F32, AS_F16, AS_BF16, AS_ROUND_F16, AS_ROUND_BF16 } conv_kind;

/* Writes the golden weights (keys 'text_model.X') as prefix + X into path,
 * converted as asked (AS_ROUND_*: F32 holding the 16-bit-rounded values);
 * extra: additional unrelated tensors (vision tower, UNet) that must be
 * ignored. skip / reshape: a key to leave out / to write as [64, 32]. */
typedef struct layout_opts {
  const char *prefix;
  conv_kind conv;
  bool extra;
  const char *skip;
  const char *misshape;
  int shard; /* 0: all; 1 / 2: only the first / second half of the tensors */
} layout_opts;

static void write_layout(const char *path, const layout_opts *o) {
  char src[512];
  golden_file(src, sizeof src, "weights.safetensors");
  sdw_safetensors *st = NULL;
  if (sdw_safetensors_open(src, &st) != SDW_OK) {
    sdw_test_fail(__FILE__, __LINE__, "cannot open %s", src);
    return;
  }
  sdw_safetensors_writer *w = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&w));
  size_t count = sdw_safetensors_count(st);
  void **bufs = calloc(count, sizeof *bufs);
  static const float extra_data[12] = {1, 2, 3};
  if (o->extra) {
    int64_t shape[2] = {3, 4};
    CHECK_OK(sdw_safetensors_writer_add(w, "vision_model.embeddings.class_embedding", SDW_F32, 2,
                                        shape, extra_data));
    CHECK_OK(sdw_safetensors_writer_add(w, "model.diffusion_model.out.2.bias", SDW_F32, 2, shape,
                                        extra_data));
    CHECK_OK(sdw_safetensors_writer_add(w, "text_model.embeddings.position_ids", SDW_F32, 2, shape,
                                        extra_data));
  }
  for (size_t i = 0; i < count; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
    if (o->shard && (int)(i * 2 / count) != o->shard - 1) continue;
    const char *base = strncmp(e->name, "text_model.", 11) == 0 ? e->name + 11 : e->name;
    if (o->skip && strcmp(base, o->skip) == 0) continue;
    char name[256];
    snprintf(name, sizeof name, "%s%s", o->prefix, base);
    int64_t shape[SDW_MAX_DIMS];
    int ndim = e->ndim;
    memcpy(shape, e->shape, (size_t)ndim * sizeof *shape);
    const float *x = e->data;
    int64_t n = e->numel;
    if (o->misshape && strcmp(base, o->misshape) == 0) {
      shape[1] /= 2;
      n /= 2;
    }
    sdw_dtype dt = o->conv == AS_F16 ? SDW_F16 : o->conv == AS_BF16 ? SDW_BF16 : SDW_F32;
    if (o->conv == AS_F32) {
      CHECK_OK(sdw_safetensors_writer_add(w, name, dt, ndim, shape, x));
      continue;
    }
    bufs[i] = malloc((size_t)n * 4);
    uint16_t *h = bufs[i];
    float *f = bufs[i];
    for (int64_t j = 0; j < n; j++) {
      switch (o->conv) {
      case AS_F16: h[j] = sdw_f32_to_f16(x[j]); break;
      case AS_BF16: h[j] = sdw_f32_to_bf16(x[j]); break;
      case AS_ROUND_F16: f[j] = sdw_f16_to_f32(sdw_f32_to_f16(x[j])); break;
      case AS_ROUND_BF16: f[j] = sdw_bf16_to_f32(sdw_f32_to_bf16(x[j])); break;
      case AS_F32: break;
      }
    }
    CHECK_OK(sdw_safetensors_writer_add(w, name, dt, ndim, shape, bufs[i]));
  }
  CHECK_OK(sdw_safetensors_writer_write(w, path));
  sdw_safetensors_writer_destroy(w);
  for (size_t i = 0; i < count; i++)
    free(bufs[i]);
  free(bufs);
  sdw_safetensors_close(st);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  CHECK(in && out);
  if (in && out) {
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
      CHECK(fwrite(buf, 1, k, out) == k);
  }
  if (in) fclose(in);
  if (out) fclose(out);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* Loads path (+ config) and runs the golden ids unmasked into o. */
static sdw_status load_and_run(sdw_ctx *ctx, const char *path, const char *config,
                               const sdw_tensor *ids, run_out *o, sdw_weights_stats *stats) {
  sdw_clip_text m;
  sdw_weights *w = NULL;
  sdw_clip_text_config cfg = sdw_clip_text_config_vit_l14();
  sdw_status st = sdw_weights_open(path, "text_encoder", &w);
  const char *cp = config ? config : st == SDW_OK ? sdw_weights_config_path(w) : NULL;
  if (st == SDW_OK && cp) st = sdw_clip_text_config_load(cp, &cfg);
  if (st == SDW_OK) st = sdw_clip_text_init(&m, ctx, &cfg);
  if (st == SDW_OK) {
    st = sdw_clip_text_load(&m, w, stats);
    if (st == SDW_OK) st = run_model(&m, ids, NULL, o);
    sdw_clip_text_free(&m);
  }
  sdw_weights_close(w);
  return st;
}

static bool same_output(const run_out *a, const run_out *b) {
  return memcmp(a->last, b->last, (size_t)GB * GT * GD * sizeof(float)) == 0 &&
         memcmp(a->pool, b->pool, (size_t)GB * GD * sizeof(float)) == 0;
}

/* Every real layout loads and gives bit-identical outputs to the golden
 * bundle: the same f32 values reach the same code. */
SDW_TEST(clip_weight_layouts_f32) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char dir[512], config[512], io_path[512], d[512], p[600];
  golden_dir(dir, sizeof dir);
  golden_file(config, sizeof config, "config.json");
  golden_file(io_path, sizeof io_path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(io_path, &io));
  REQUIRE(io != NULL);
  sdw_tensor ids = golden_tensor(io, "input_ids");
  run_out ref, o;
  run_out_alloc(&ref);
  run_out_alloc(&o);
  CHECK_OK(load_and_run(ctx, dir, NULL, &ids, &ref, NULL));

  /* transformers CLIPModel folder: model.safetensors with a vision tower and
   * the position_ids buffer, config.json beside it. */
  tmp_sub(d, sizeof d, "hf");
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model.", .extra = true});
  snprintf(p, sizeof p, "%s/config.json", d);
  copy_file(config, p);
  sdw_weights_stats stats;
  CHECK_OK(load_and_run(ctx, d, NULL, &ids, &o, &stats));
  CHECK(same_output(&ref, &o));
  CHECK(strcmp(stats.prefix, "text_model.") == 0 && stats.loaded == 36 && stats.converted == 0);

  /* Sharded: model.safetensors.index.json + two shards. */
  tmp_sub(d, sizeof d, "sharded");
  snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model.", .shard = 1});
  snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model.", .shard = 2});
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
  write_text(p, "{\"metadata\": {\"total_size\": 12936448}, \"weight_map\": {"
                "\"text_model.embeddings.token_embedding.weight\": "
                "\"model-00001-of-00002.safetensors\", "
                "\"text_model.final_layer_norm.bias\": \"model-00002-of-00002.safetensors\", "
                "\"text_model.final_layer_norm.weight\": \"model-00002-of-00002.safetensors\"}}");
  snprintf(p, sizeof p, "%s/config.json", d);
  copy_file(config, p);
  sdw_weights *w = NULL;
  CHECK_OK(sdw_weights_open(d, NULL, &w));
  if (w) CHECK(sdw_weights_file_count(w) == 2);
  sdw_weights_close(w);
  CHECK_OK(load_and_run(ctx, d, NULL, &ids, &o, NULL));
  CHECK(same_output(&ref, &o));

  /* diffusers pipeline: model_index.json, text_encoder/{model.safetensors,
   * config.json}; both the pipeline and the component folder work. */
  tmp_sub(d, sizeof d, "pipe");
  snprintf(p, sizeof p, "%s/model_index.json", d);
  write_text(p, "{\"_class_name\": \"StableDiffusionPipeline\"}");
  tmp_sub(d, sizeof d, "pipe/text_encoder");
  snprintf(p, sizeof p, "%s/model.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model."});
  snprintf(p, sizeof p, "%s/config.json", d);
  copy_file(config, p);
  tmp_sub(d, sizeof d, "pipe");
  CHECK_OK(load_and_run(ctx, d, NULL, &ids, &o, NULL));
  CHECK(same_output(&ref, &o));
  tmp_sub(d, sizeof d, "pipe/text_encoder");
  CHECK_OK(load_and_run(ctx, d, NULL, &ids, &o, NULL));
  CHECK(same_output(&ref, &o));

  /* LDM single files, new and old key layouts (with a UNet key to ignore);
   * a lone file has no config, so it is given. */
  tmp_sub(d, sizeof d, "ldm");
  static const char *const ldm[2] = {"cond_stage_model.transformer.text_model.",
                                     "cond_stage_model.transformer."};
  for (int i = 0; i < 2; i++) {
    snprintf(p, sizeof p, "%s/ldm%d.safetensors", d, i);
    write_layout(p, &(layout_opts){.prefix = ldm[i], .extra = true});
    CHECK_OK(load_and_run(ctx, p, config, &ids, &o, &stats));
    CHECK(same_output(&ref, &o));
    CHECK(strcmp(stats.prefix, ldm[i]) == 0);
  }
  /* Without a config, a lone file is taken as ViT-L/14: the tiny file then
   * fails on the first shape, naming it. */
  {
    sdw_status st_ = load_and_run(ctx, p, NULL, &ids, &o, NULL);
    CHECK_MSG(st_ == SDW_ERR_FORMAT, "got %d: %s", st_, sdw_last_error());
  }
  CHECK(strstr(sdw_last_error(),
               "tensor 'cond_stage_model.transformer.embeddings.token_embedding.weight' has "
               "shape [49408, 64], expected [49408, 768]") != NULL);

  run_out_free(&ref);
  run_out_free(&o);
  sdw_safetensors_close(io);
  sdw_ctx_destroy(ctx);
}

/* fp16 and bf16 files: converting on load must be exact, so a 16-bit file
 * gives bit-identical outputs to an f32 file holding the same rounded
 * values. Against the float64 golden (full-precision weights) the rounding
 * of the weights themselves shows: unit roundoff 2^-11 = 4.9e-4 (f16) and
 * 2^-8 = 3.9e-3 (bf16) per weight, which this network turns into a measured
 * 1.0e-3 / 6.3e-4 (f16: last_hidden_state / pooler_output) and
 * 6.7e-3 / 6.2e-3 (bf16). The bounds 4e-3 and 3e-2 leave ~4x headroom and
 * still catch a wrong conversion (a swapped f16/bf16 decode is O(1)). */
SDW_TEST(clip_weight_layouts_f16_bf16) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char config[512], io_path[512], d[512], p[600];
  golden_file(config, sizeof config, "config.json");
  golden_file(io_path, sizeof io_path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(io_path, &io));
  REQUIRE(io != NULL);
  sdw_tensor ids = golden_tensor(io, "input_ids");
  const double *want_last =
      golden_data(io, "last_hidden_state_f64", SDW_F64, (int64_t)GB * GT * GD);
  const double *want_pool = golden_data(io, "pooler_output_f64", SDW_F64, (int64_t)GB * GD);
  run_out half, rounded;
  run_out_alloc(&half);
  run_out_alloc(&rounded);
  tmp_sub(d, sizeof d, "half");
  const struct {
    conv_kind half, round;
    const char *prefix;
    double tol;
    const char *what;
  } cases[2] = {{AS_F16, AS_ROUND_F16, "text_model.", 4e-3, "f16"},
                {AS_BF16, AS_ROUND_BF16, "cond_stage_model.transformer.text_model.", 3e-2, "bf16"}};
  for (int i = 0; i < 2; i++) {
    sdw_weights_stats stats;
    snprintf(p, sizeof p, "%s/%s.safetensors", d, cases[i].what);
    write_layout(p, &(layout_opts){.prefix = cases[i].prefix, .conv = cases[i].half});
    CHECK_OK(load_and_run(ctx, p, config, &ids, &half, &stats));
    CHECK(stats.converted == 36);
    snprintf(p, sizeof p, "%s/%s_rounded.safetensors", d, cases[i].what);
    write_layout(p, &(layout_opts){.prefix = cases[i].prefix, .conv = cases[i].round});
    CHECK_OK(load_and_run(ctx, p, config, &ids, &rounded, &stats));
    CHECK(stats.converted == 0);
    CHECK_MSG(same_output(&half, &rounded), "%s file differs from its rounded f32 copy",
              cases[i].what);
    if (want_last && want_pool) {
      double el = sdw_test_rel_err_f32_f64(half.last, want_last, (size_t)GB * GT * GD);
      double ep = sdw_test_rel_err_f32_f64(half.pool, want_pool, (size_t)GB * GD);
      CHECK_REL(el, cases[i].tol, cases[i].what);
      CHECK_REL(ep, cases[i].tol, cases[i].what);
      /* ...and the rounding is really there (the file is not f32). */
      CHECK(el > 1e-5);
    }
  }
  run_out_free(&half);
  run_out_free(&rounded);
  sdw_safetensors_close(io);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(clip_weight_errors) {
  sdw_ctx *ctx = NULL;
  REQUIRE(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) == SDW_OK);
  char config[512], io_path[512], d[512], p[600];
  golden_file(config, sizeof config, "config.json");
  golden_file(io_path, sizeof io_path, "io.safetensors");
  sdw_safetensors *io = NULL;
  CHECK_OK(sdw_safetensors_open(io_path, &io));
  REQUIRE(io != NULL);
  sdw_tensor ids = golden_tensor(io, "input_ids");
  run_out o;
  run_out_alloc(&o);
  tmp_sub(d, sizeof d, "errors");

  /* One tensor missing: NOT_FOUND naming the full key. */
  snprintf(p, sizeof p, "%s/missing.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model.", .skip = "encoder.layers.1.mlp.fc2.bias"});
  CHECK(load_and_run(ctx, p, config, &ids, &o, NULL) == SDW_ERR_NOT_FOUND);
  CHECK_MSG(strstr(sdw_last_error(),
                   "missing.safetensors: tensor "
                   "'text_model.encoder.layers.1.mlp.fc2.bias' is missing") != NULL,
            "message: %s", sdw_last_error());

  /* A misshapen tensor: FORMAT naming the key, the shape and the expected. */
  snprintf(p, sizeof p, "%s/misshapen.safetensors", d);
  write_layout(p, &(layout_opts){.prefix = "text_model.",
                                 .misshape = "encoder.layers.0.self_attn.q_proj.weight"});
  CHECK(load_and_run(ctx, p, config, &ids, &o, NULL) == SDW_ERR_FORMAT);
  CHECK_MSG(strstr(sdw_last_error(),
                   "misshapen.safetensors: tensor 'text_model.encoder.layers.0.self_attn.q_proj."
                   "weight' has shape [64, 32], expected [64, 64]") != NULL,
            "message: %s", sdw_last_error());

  /* A file of something else entirely. */
  CHECK(load_and_run(ctx, io_path, config, &ids, &o, NULL) == SDW_ERR_NOT_FOUND);
  CHECK_MSG(strstr(sdw_last_error(), "none of the 36 tensors the model needs is there") != NULL,
            "message: %s", sdw_last_error());

  /* A tensor of an integer dtype. */
  {
    sdw_weights *w = NULL;
    snprintf(p, sizeof p, "%s/int.safetensors", d);
    sdw_safetensors_writer *wr = NULL;
    CHECK_OK(sdw_safetensors_writer_create(&wr));
    static const int32_t four[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    CHECK_OK(sdw_safetensors_writer_add(wr, "a", SDW_I32, 1, shape, four));
    CHECK_OK(sdw_safetensors_writer_write(wr, p));
    sdw_safetensors_writer_destroy(wr);
    CHECK_OK(sdw_weights_open(p, NULL, &w));
    sdw_params params;
    sdw_params_init(&params, ctx);
    sdw_params_take(&params, 1, shape, "a");
    CHECK_OK(sdw_params_allocate(&params));
    sdw_params_take(&params, 1, shape, "a");
    CHECK_OK(sdw_params_finish(&params));
    if (w) CHECK(sdw_weights_load(w, NULL, &params, NULL) == SDW_ERR_UNSUPPORTED);
    CHECK(strstr(sdw_last_error(), "tensor 'a' has dtype I32") != NULL);
    sdw_params_free(&params);
    sdw_weights_close(w);
  }

  /* Paths: nothing there, a folder without weights, a truncated file. */
  sdw_weights *w = NULL;
  snprintf(p, sizeof p, "%s/nope", d);
  CHECK(sdw_weights_open(p, "text_encoder", &w) == SDW_ERR_NOT_FOUND && !w);
  tmp_sub(p, sizeof p, "errors/empty");
  CHECK(sdw_weights_open(p, "text_encoder", &w) == SDW_ERR_NOT_FOUND && !w);
  CHECK(strstr(sdw_last_error(), "no weights in this folder") != NULL);
  snprintf(p, sizeof p, "%s/truncated.safetensors", d);
  {
    char src[512];
    golden_file(src, sizeof src, "weights.safetensors");
    FILE *in = fopen(src, "rb"), *out = fopen(p, "wb");
    char buf[65536];
    size_t k = in ? fread(buf, 1, sizeof buf, in) : 0;
    if (out) fwrite(buf, 1, k, out);
    if (in) fclose(in);
    if (out) fclose(out);
  }
  CHECK(sdw_weights_open(p, NULL, &w) == SDW_ERR_FORMAT && !w);

  /* Configs: a vision config, an unknown activation. */
  snprintf(p, sizeof p, "%s/vision.json", d);
  write_text(p, "{\"model_type\": \"clip_vision_model\", \"hidden_size\": 64}");
  sdw_clip_text_config cfg;
  CHECK(sdw_clip_text_config_load(p, &cfg) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "vision.json: model_type 'clip_vision_model'") != NULL);
  snprintf(p, sizeof p, "%s/act.json", d);
  write_text(p, "{\"hidden_act\": \"relu\"}");
  CHECK(sdw_clip_text_config_load(p, &cfg) == SDW_ERR_UNSUPPORTED);
  snprintf(p, sizeof p, "%s/heads.json", d);
  write_text(p, "{\"hidden_size\": 64, \"num_attention_heads\": 5}");
  CHECK(sdw_clip_text_config_load(p, &cfg) == SDW_ERR_FORMAT);

  run_out_free(&o);
  sdw_safetensors_close(io);
  sdw_ctx_destroy(ctx);
}

/* Configs: a CLIPModel config with text_config (and text_config_dict
 * overriding it, as transformers does), and CLIPTextConfig's defaults. */
SDW_TEST(clip_config_parsing) {
  char d[512], p[600];
  tmp_sub(d, sizeof d, "configs");
  snprintf(p, sizeof p, "%s/clip.json", d);
  write_text(p, "{\"model_type\": \"clip\", \"text_config\": {\"hidden_size\": 768, "
                "\"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"intermediate_size\": "
                "3072, \"eos_token_id\": 2, \"hidden_act\": \"gelu\"}, \"text_config_dict\": "
                "{\"num_hidden_layers\": 11}, \"vision_config\": {\"hidden_size\": 1024}}");
  sdw_clip_text_config c;
  CHECK_OK(sdw_clip_text_config_load(p, &c));
  CHECK(c.hidden_size == 768 && c.num_layers == 11 && c.num_heads == 12);
  CHECK(c.intermediate_size == 3072 && c.eos_token_id == 2 && c.act == SDW_CLIP_ACT_GELU);
  CHECK(c.vocab_size == 49408 && c.max_positions == 77 && c.layer_norm_eps == 1e-5f);
  snprintf(p, sizeof p, "%s/empty.json", d);
  write_text(p, "{}");
  CHECK_OK(sdw_clip_text_config_load(p, &c));
  CHECK(c.hidden_size == 512 && c.num_layers == 12 && c.num_heads == 8);
  CHECK(c.intermediate_size == 2048 && c.eos_token_id == 49407);
  CHECK(c.act == SDW_CLIP_ACT_QUICK_GELU);
  sdw_clip_text_config l = sdw_clip_text_config_vit_l14();
  CHECK(l.hidden_size == 768 && l.num_layers == 12 && l.num_heads == 12 && l.eos_token_id == 2);
  CHECK_OK(sdw_clip_text_config_check(&l, "preset"));
}
