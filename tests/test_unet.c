/* The UNet (core/model/unet.h) against golden outputs of the reference
 * implementations (tests/data/goldens/<bundle>/README.txt says how each was
 * made): the seed's own UNetModel (seed-unet-tiny: CI config; seed-unet-small:
 * the full 4-level topology at ch 32) with and without context, and
 * diffusers 0.25.1 UNet2DConditionModel (sd15-unet-tiny: SD 1.x layout).
 *
 * Tolerance: normwise relative error max|ours - f64| / max|f64| <= 1e-4
 * against the float64 run of the same reference. The goldens README
 * measures the references' own float32 runs at 0.9e-6 .. 1.7e-6 of that
 * scale; a correct float32 port sums in a different order (blocked GEMMs,
 * flash attention) and lands at the same order of error, ~1e-6. 1e-4 is the
 * issue's tolerance: it leaves 10x over the README's "10x of the
 * reference" bound for the longer accumulation chains of our kernels, yet a
 * wrong block (a missing skip, a swapped sin/cos, a wrong eps or scale)
 * moves the output by 1e-3 .. 1, far above it.
 *
 * Parameter counts: 780,718,404 (seed preset) is derived from the seed's
 * code in SEED.md §1.6, 704,836 (its CI config) is stated there; the
 * golden READMEs state 7,808,036 (seed-unet-small) and 3,277,988
 * (sd15-unet-tiny); 859,520,964 is the well-known size of the SD 1.5 UNet
 * (diffusers' UNet2DConditionModel with the v1-5 config). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "core/model/unet.h"
#include "core/model/unet_blocks.h"
#include "kernels/ops.h"
#include "tests/test.h"

static void golden_dir(char *buf, size_t size, const char *bundle) {
  snprintf(buf, size, "%s/goldens/%s", sdw_test_data_dir(), bundle);
}

/* A tensor of the bundle's io.safetensors as f32 (I64 timesteps converted)
 * or f64 (the references), malloc'd. */
static float *read_f32(const sdw_safetensors *st, const char *name, int64_t *numel) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  if (!e) return NULL;
  float *out = malloc((size_t)e->numel * sizeof *out);
  for (int64_t i = 0; i < e->numel; i++) {
    if (e->dtype == SDW_F32) {
      memcpy(&out[i], (const char *)e->data + 4 * i, 4);
    } else if (e->dtype == SDW_I64) {
      int64_t v;
      memcpy(&v, (const char *)e->data + 8 * i, 8);
      out[i] = (float)v;
    } else {
      free(out);
      return NULL;
    }
  }
  if (numel) *numel = e->numel;
  return out;
}

static double *read_f64(const sdw_safetensors *st, const char *name) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  if (!e || e->dtype != SDW_F64) return NULL;
  double *out = malloc(e->nbytes);
  memcpy(out, e->data, e->nbytes);
  return out;
}

typedef struct golden {
  sdw_ctx *ctx;
  sdw_arena *arena;
  sdw_unet m;
  sdw_safetensors *io;
  float *x, *t, *c;
  int64_t n, nx, nc;
  int64_t h, w, s;
} golden;

static bool golden_open(golden *g, const char *bundle, const char *xk, const char *tk,
                        const char *ck) {
  memset(g, 0, sizeof *g);
  char dir[512], path[600];
  golden_dir(dir, sizeof dir, bundle);
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &g->ctx));
  if (!g->ctx) return false;
  CHECK_OK(sdw_arena_create(&g->arena, "unet test activations", (size_t)4 << 30));
  sdw_status st = sdw_unet_open(&g->m, g->ctx, dir);
  CHECK_OK(st);
  if (st != SDW_OK) return false;
  snprintf(path, sizeof path, "%s/io.safetensors", dir);
  CHECK_OK(sdw_safetensors_open(path, &g->io));
  if (!g->io) return false;
  const sdw_safetensors_entry *ex = sdw_safetensors_find(g->io, xk);
  const sdw_safetensors_entry *ec = sdw_safetensors_find(g->io, ck);
  if (!ex || !ec) return false;
  g->n = ex->shape[0];
  g->h = ex->shape[2];
  g->w = ex->shape[3];
  g->s = ec->shape[1];
  g->x = read_f32(g->io, xk, &g->nx);
  g->t = read_f32(g->io, tk, NULL);
  g->c = read_f32(g->io, ck, &g->nc);
  return g->x && g->t && g->c;
}

static void golden_close(golden *g) {
  free(g->x);
  free(g->t);
  free(g->c);
  sdw_safetensors_close(g->io);
  sdw_unet_free(&g->m);
  sdw_arena_destroy(g->arena);
  sdw_ctx_destroy(g->ctx);
}

/* Runs the forward (context or not) and returns the normwise error vs the
 * f64 reference ref_key; -1 on failure. */
static double golden_check(golden *g, bool with_context, const char *ref_key, const char *what) {
  const int64_t oc = g->m.cfg.out_channels;
  const size_t no = (size_t)(g->n * oc * g->h * g->w);
  float *out = sdw_test_alloc_guarded(no, "unet out");
  sdw_tensor x = sdw_tensor_4d(g->x, SDW_F32, g->n, g->m.cfg.in_channels, g->h, g->w);
  sdw_tensor t = sdw_tensor_1d(g->t, SDW_F32, g->n);
  sdw_tensor c = sdw_tensor_3d(g->c, SDW_F32, g->n, g->s, g->m.cfg.context_dim);
  sdw_tensor o = sdw_tensor_4d(out, SDW_F32, g->n, oc, g->h, g->w);
  double err = -1.0;
  sdw_status st = sdw_unet_forward(&g->m, g->arena, &x, &t, with_context ? &c : NULL, &o);
  CHECK_OK(st);
  double *ref = read_f64(g->io, ref_key);
  CHECK(ref != NULL);
  if (st == SDW_OK && ref) {
    err = sdw_test_rel_err_f32_f64(out, ref, no);
    printf("  %s: normwise rel err vs %s = %.3g\n", what, ref_key, err);
    CHECK_REL(err, 1e-4, what);
  }
  CHECK(sdw_arena_used(g->arena) == 0); /* inference releases everything */
  free(ref);
  CHECK_GUARD(out);
  sdw_test_free_guarded(out);
  return err;
}

SDW_TEST(unet_golden_seed_tiny) {
  golden g;
  if (golden_open(&g, "seed-unet-tiny", "x", "t", "ctx")) {
    CHECK(sdw_unet_param_count(&g.m) == 704836);
    golden_check(&g, true, "eps_f64", "seed-unet-tiny eps (context)");
    golden_check(&g, false, "eps_noctx_f64", "seed-unet-tiny eps (no context)");
  } else {
    CHECK_MSG(false, "cannot open seed-unet-tiny: %s", sdw_last_error());
  }
  golden_close(&g);
}

SDW_TEST(unet_golden_seed_small) {
  golden g;
  if (golden_open(&g, "seed-unet-small", "x", "t", "ctx")) {
    CHECK(sdw_unet_param_count(&g.m) == 7808036);
    golden_check(&g, true, "eps_f64", "seed-unet-small eps (context)");
    golden_check(&g, false, "eps_noctx_f64", "seed-unet-small eps (no context)");
  } else {
    CHECK_MSG(false, "cannot open seed-unet-small: %s", sdw_last_error());
  }
  golden_close(&g);
}

SDW_TEST(unet_golden_sd15_tiny) {
  golden g;
  if (golden_open(&g, "sd15-unet-tiny", "sample", "timestep", "encoder_hidden_states")) {
    CHECK(sdw_unet_param_count(&g.m) == 3277988);
    CHECK(g.m.cfg.topology == SDW_UNET_SD15 && g.m.cfg.heads[0] == 8);
    golden_check(&g, true, "out_sample_f64", "sd15-unet-tiny out_sample");
    /* SD 1.x has no context-free path */
    sdw_tensor x = sdw_tensor_4d(g.x, SDW_F32, g.n, 4, g.h, g.w);
    sdw_tensor t = sdw_tensor_1d(g.t, SDW_F32, g.n);
    float out[2 * 4 * 16 * 16];
    sdw_tensor o = sdw_tensor_4d(out, SDW_F32, g.n, 4, g.h, g.w);
    CHECK(sdw_unet_forward(&g.m, g.arena, &x, &t, NULL, &o) == SDW_ERR_INVALID_ARGUMENT);
  } else {
    CHECK_MSG(false, "cannot open sd15-unet-tiny: %s", sdw_last_error());
  }
  golden_close(&g);
}

/* Inference runs the transformer feed-forward in chunks of rows; any chunk
 * size (here 100 rows: several chunks and a remainder, on the GEGLU of SD 1.x
 * and the GELU MLP of the seed) computes the same function. Not the same
 * bits: sgemm picks its kernels and blocking by the matrix sizes, so a row's
 * dot products may be summed in another order. Tolerance: normwise 1e-5
 * between the two (float rounding carried through the network; an indexing
 * mistake in the chunks gives O(1)), and the golden's 1e-4 against float64. */
SDW_TEST(unet_ff_chunks_compute_the_same) {
  static const char *const bundles[][4] = {
      {"sd15-unet-tiny", "sample", "timestep", "encoder_hidden_states"},
      {"seed-unet-tiny", "x", "t", "ctx"}};
  for (int b = 0; b < 2; b++) {
    golden g;
    if (!golden_open(&g, bundles[b][0], bundles[b][1], bundles[b][2], bundles[b][3])) {
      CHECK_MSG(false, "cannot open %s: %s", bundles[b][0], sdw_last_error());
      golden_close(&g);
      continue;
    }
    const int64_t oc = g.m.cfg.out_channels, no = g.n * oc * g.h * g.w;
    float *whole = malloc((size_t)no * sizeof *whole),
          *chunked = malloc((size_t)no * sizeof *chunked);
    REQUIRE(whole && chunked);
    sdw_tensor x = sdw_tensor_4d(g.x, SDW_F32, g.n, g.m.cfg.in_channels, g.h, g.w);
    sdw_tensor t = sdw_tensor_1d(g.t, SDW_F32, g.n);
    sdw_tensor c = sdw_tensor_3d(g.c, SDW_F32, g.n, g.s, g.m.cfg.context_dim);
    sdw_tensor o1 = sdw_tensor_4d(whole, SDW_F32, g.n, oc, g.h, g.w);
    sdw_tensor o2 = sdw_tensor_4d(chunked, SDW_F32, g.n, oc, g.h, g.w);
    sdw_unet_set_ff_chunk_rows(1 << 30);
    CHECK_OK(sdw_unet_forward(&g.m, g.arena, &x, &t, &c, &o1));
    sdw_unet_set_ff_chunk_rows(100);
    CHECK_OK(sdw_unet_forward(&g.m, g.arena, &x, &t, &c, &o2));
    sdw_unet_set_ff_chunk_rows(0);
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < no; i++) {
      diff += ((double)whole[i] - chunked[i]) * ((double)whole[i] - chunked[i]);
      norm += (double)whole[i] * whole[i];
    }
    const double rel = sqrt(diff / (norm > 0 ? norm : 1));
    printf("  %s: chunked vs whole feed-forward: normwise rel diff %.3g\n", bundles[b][0], rel);
    CHECK_REL(rel, 1e-5, "chunked feed-forward vs whole");
    double *ref = read_f64(g.io, b == 0 ? "out_sample_f64" : "eps_f64");
    CHECK(ref != NULL);
    if (ref) CHECK_REL(sdw_test_rel_err_f32_f64(chunked, ref, (size_t)no), 1e-4, "chunked vs f64");
    free(ref);
    free(whole);
    free(chunked);
    golden_close(&g);
  }
}

/* The training forward (full record, and per-ResBlock checkpointing) runs
 * the same ops on the same values as the inference forward, only into
 * separate buffers, so its output must be bit-identical; the record must
 * hold every node's input and output. */
SDW_TEST(unet_forward_train_matches_inference) {
  static const char *const bundles[2][4] = {
      {"seed-unet-tiny", "x", "t", "ctx"},
      {"sd15-unet-tiny", "sample", "timestep", "encoder_hidden_states"}};
  for (int b = 0; b < 2; b++) {
    golden g;
    if (!golden_open(&g, bundles[b][0], bundles[b][1], bundles[b][2], bundles[b][3])) {
      CHECK_MSG(false, "cannot open %s", bundles[b][0]);
      golden_close(&g);
      continue;
    }
    const size_t no = (size_t)(g.n * 4 * g.h * g.w);
    float *ref = malloc(no * sizeof *ref), *got = malloc(no * sizeof *got);
    sdw_tensor x = sdw_tensor_4d(g.x, SDW_F32, g.n, 4, g.h, g.w);
    sdw_tensor t = sdw_tensor_1d(g.t, SDW_F32, g.n);
    sdw_tensor c = sdw_tensor_3d(g.c, SDW_F32, g.n, g.s, g.m.cfg.context_dim);
    sdw_tensor o_ref = sdw_tensor_4d(ref, SDW_F32, g.n, 4, g.h, g.w);
    sdw_tensor o = sdw_tensor_4d(got, SDW_F32, g.n, 4, g.h, g.w);
    CHECK_OK(sdw_unet_forward(&g.m, g.arena, &x, &t, &c, &o_ref));
    /* checkpointing only changes the ResBlock records: test it on the seed
     * topology (sd15's ResBlocks are the same code) to keep the test short */
    for (int ckpt = 0; ckpt < (b == 0 ? 2 : 1); ckpt++) {
      sdw_unet_saved *sv = NULL;
      CHECK_OK(sdw_unet_forward_train(&g.m, g.arena, &x, &t, &c, &o, ckpt == 1, &sv));
      CHECK_MSG(memcmp(ref, got, no * sizeof *ref) == 0,
                "%s: training forward (checkpoint %d) "
                "differs from inference",
                bundles[b][0], ckpt);
      REQUIRE(sv != NULL);
      for (int i = 0; i < g.m.node_count; i++) {
        CHECK(sv->nodes[i].in.data && sv->nodes[i].out.data);
        if (g.m.nodes[i].kind == SDW_UNET_NODE_RES) {
          const sdw_unet_resblock_saved *r = &sv->nodes[i].u.res;
          CHECK(r->x.data == sv->nodes[i].in.data && r->checkpointed == (ckpt == 1));
          CHECK(ckpt == 1 || (r->n1.data && r->a1.data && r->h2.data && r->mean2.data));
          CHECK(ckpt == 1 || !g.m.res[g.m.nodes[i].index].inner || r->ran_inner);
        }
        if (g.m.nodes[i].kind == SDW_UNET_NODE_CAT) CHECK(sv->nodes[i].skip.data != NULL);
      }
      CHECK(sv->temb_act.data && sv->head_a.data && sv->head_rstd.data);
      sdw_arena_reset(g.arena);
    }
    free(ref);
    free(got);
    golden_close(&g);
  }
}

SDW_TEST(unet_param_counts) {
  sdw_unet_config cfg;
  int64_t n = 0;
  CHECK_OK(sdw_unet_preset("seed", &cfg));
  CHECK_OK(sdw_unet_count_params(&cfg, &n));
  printf("  seed preset: %lld parameters\n", (long long)n);
  CHECK(n == 780718404);
  CHECK_OK(sdw_unet_preset("seed-tiny", &cfg));
  CHECK_OK(sdw_unet_count_params(&cfg, &n));
  CHECK(n == 704836);
  CHECK_OK(sdw_unet_preset("sd15", &cfg));
  CHECK_OK(sdw_unet_count_params(&cfg, &n));
  printf("  sd15 preset: %lld parameters\n", (long long)n);
  CHECK(n == 859520964);
  CHECK(sdw_unet_preset("sdxl", &cfg) == SDW_ERR_NOT_FOUND);
  /* the goldens' configs through config.json */
  char dir[512], path[600];
  golden_dir(dir, sizeof dir, "seed-unet-small");
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_OK(sdw_unet_config_from_json(path, &cfg));
  CHECK_OK(sdw_unet_count_params(&cfg, &n));
  CHECK(n == 7808036);
  golden_dir(dir, sizeof dir, "sd15-unet-tiny");
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_OK(sdw_unet_config_from_json(path, &cfg));
  CHECK_OK(sdw_unet_count_params(&cfg, &n));
  CHECK(n == 3277988);
}

/* The seed's per-block parameter counts (SEED.md §1.6, derived there from
 * the seed's code) through the model's own parameter table, counting pass
 * only: catches a block with a wrong layout even where totals agree. */
SDW_TEST(unet_seed_block_counts) {
  static const struct {
    const char *prefix;
    int64_t count;
  } want[] = {{"t_emb.", 820800},         {"conv_in.", 11840},    {"downs.0.", 1947840},
              {"downs.1.", 1947840},      {"downs.2.", 921920},   {"downs.3.", 13491200},
              {"downs.4.", 15129600},     {"downs.5.", 3687040},  {"downs.6.", 51558400},
              {"downs.7.", 58112000},     {"downs.8.", 14746880}, {"downs.9.", 58112000},
              {"downs.10.", 58112000},    {"mid.0.", 58112000},   {"mid.1.", 29909760},
              {"ups.0.", 76138240},       {"ups.1.", 76138240},   {"ups.2.", 26215680},
              {"ups.3.", 76138240},       {"ups.4.", 76138240},   {"ups.5.", 26215680},
              {"ups.6.", 23734400},       {"ups.7.", 19637120},   {"ups.8.", 6554240},
              {"ups.9.", 4099840},        {"ups.10.", 3075200},   {"downs.3.tfm.", 7547520},
              {"downs.6.tfm.", 28202240}, {"norm_out.", 640},     {"conv_out.", 11524}};
  sdw_unet_config cfg;
  CHECK_OK(sdw_unet_preset("seed", &cfg));
  sdw_unet m;
  CHECK_OK(sdw_unet_plan(&m, &cfg));
  REQUIRE(m.params.count > 0 && m.params.flat == NULL);
  CHECK(strcmp(m.params.items[0].name, "t_emb.0.weight") == 0);
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    int64_t n = 0;
    const size_t len = strlen(want[k].prefix);
    for (int i = 0; i < m.params.count; i++)
      if (strncmp(m.params.items[i].name, want[k].prefix, len) == 0)
        n += sdw_tensor_numel(&m.params.items[i].value);
    CHECK_MSG(n == want[k].count, "%s*: %lld parameters, SEED.md says %lld", want[k].prefix,
              (long long)n, (long long)want[k].count);
  }
  sdw_unet_free(&m);
}

/* Writes a copy of the seed-unet-tiny bundle into the test's temporary
 * directory with one tensor dropped (drop), reshaped (reshape: written as a
 * flat vector) or an extra one added (extra). Returns the directory. */
static const char *write_broken_bundle(const char *tag, const char *drop, const char *reshape,
                                       const char *extra) {
  static char dir[600];
  char src[512], path[700];
  golden_dir(src, sizeof src, "seed-unet-tiny");
  snprintf(dir, sizeof dir, "%s/%s", sdw_test_tmpdir(), tag);
  CHECK_OK(sdw_mkdir_p(dir));
  void *cfg = NULL;
  size_t cfg_size = 0;
  snprintf(path, sizeof path, "%s/config.json", src);
  CHECK_OK(sdw_read_file(path, &cfg, &cfg_size));
  snprintf(path, sizeof path, "%s/config.json", dir);
  CHECK_OK(sdw_atomic_write(path, cfg, cfg_size));
  free(cfg);
  sdw_safetensors *st = NULL;
  snprintf(path, sizeof path, "%s/weights.safetensors", src);
  CHECK_OK(sdw_safetensors_open(path, &st));
  sdw_safetensors_writer *w = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&w));
  if (!st || !w) return dir;
  static const float zeros[8];
  for (size_t i = 0; i < sdw_safetensors_count(st); i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
    if (drop && !strcmp(e->name, drop)) continue;
    if (reshape && !strcmp(e->name, reshape)) {
      CHECK_OK(sdw_safetensors_writer_add(w, e->name, e->dtype, 1, &e->numel, e->data));
      continue;
    }
    CHECK_OK(sdw_safetensors_writer_add(w, e->name, e->dtype, e->ndim, e->shape, e->data));
  }
  if (extra) CHECK_OK(sdw_safetensors_writer_add(w, extra, SDW_F32, 1, (int64_t[]){8}, zeros));
  snprintf(path, sizeof path, "%s/weights.safetensors", dir);
  CHECK_OK(sdw_safetensors_writer_write(w, path));
  sdw_safetensors_writer_destroy(w);
  sdw_safetensors_close(st);
  return dir;
}

SDW_TEST(unet_load_errors_name_the_key) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx != NULL);
  sdw_unet m;
  const char *dir =
      write_broken_bundle("missing", "downs.2.tfm.tfm.cross_attn.to_k.weight", NULL, NULL);
  CHECK(sdw_unet_open(&m, ctx, dir) == SDW_ERR_NOT_FOUND);
  CHECK_MSG(strstr(sdw_last_error(), "downs.2.tfm.tfm.cross_attn.to_k.weight") != NULL, "%s",
            sdw_last_error());

  dir = write_broken_bundle("misshapen", NULL, "ups.0.conv1.weight", NULL);
  CHECK(sdw_unet_open(&m, ctx, dir) == SDW_ERR_FORMAT);
  CHECK_MSG(strstr(sdw_last_error(), "ups.0.conv1.weight") != NULL &&
                strstr(sdw_last_error(), "[64, 128, 3, 3]") != NULL,
            "%s", sdw_last_error());

  dir = write_broken_bundle("extra", NULL, NULL, "downs.0.tfm.norm.weight");
  CHECK(sdw_unet_open(&m, ctx, dir) == SDW_ERR_FORMAT);
  CHECK_MSG(strstr(sdw_last_error(), "downs.0.tfm.norm.weight") != NULL, "%s", sdw_last_error());

  /* no weights file at all */
  char empty[600];
  snprintf(empty, sizeof empty, "%s/empty", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(empty));
  char path[700];
  snprintf(path, sizeof path, "%s/config.json", empty);
  const char *cfg = "{\"_class_name\": \"SeedUNetModel\"}";
  CHECK_OK(sdw_atomic_write(path, cfg, strlen(cfg)));
  CHECK(sdw_unet_open(&m, ctx, empty) == SDW_ERR_NOT_FOUND);
  sdw_ctx_destroy(ctx);
}

static sdw_status parse(const char *json, sdw_unet_config *cfg) {
  return sdw_unet_config_parse(json, strlen(json), "config.json", cfg);
}

SDW_TEST(unet_config_json) {
  sdw_unet_config c;
  /* defaults = the seed's constructor defaults = the preset */
  CHECK_OK(parse("{\"_class_name\": \"SeedUNetModel\"}", &c));
  sdw_unet_config p;
  CHECK_OK(sdw_unet_preset("seed", &p));
  CHECK(memcmp(&c, &p, sizeof c) == 0);
  CHECK(c.time_in_dim == 320 && c.time_hidden_dim == 1280 && c.time_out_dim == 320);
  CHECK(c.time_embedding.freq_shift == 1.0 && !c.time_embedding.flip_sin_to_cos);
  CHECK(!c.attn_down[0] && c.attn_down[1] && c.attn_up[3] && c.channels[3] == 1280);
  /* UNetModel(**kwargs) refuses unknown keywords */
  CHECK(parse("{\"_class_name\": \"SeedUNetModel\", \"chans\": 64}", &c) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "chans") != NULL);
  CHECK(parse("{\"_class_name\": \"SeedUNetModel\", \"t_dim\": 31}", &c) == SDW_ERR_FORMAT);
  CHECK(parse("{\"_class_name\": \"SeedUNetModel\", \"ch\": 48}", &c) ==
        SDW_ERR_INVALID_ARGUMENT); /* 48 channels in 32 groups */
  CHECK(parse("{\"_class_name\": \"SeedUNetModel\", \"heads\": 7}", &c) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(parse("{\"_class_name\": \"VQModel\"}", &c) == SDW_ERR_UNSUPPORTED);

  /* diffusers: defaults are SD 1.x's apart from cross_attention_dim 1280 */
  CHECK_OK(parse("{\"_class_name\": \"UNet2DConditionModel\", \"cross_attention_dim\": 768}", &c));
  CHECK_OK(sdw_unet_preset("sd15", &p));
  CHECK(memcmp(&c, &p, sizeof c) == 0);
  CHECK(c.time_embedding.flip_sin_to_cos && c.time_embedding.freq_shift == 0.0);
  CHECK(c.attn_norm_eps == 1e-6f && c.heads[2] == 8 && !c.attn_up[3] && c.attn_up[0]);
  /* SD 2.x style: per-block heads (legacy attention_head_dim), linear proj */
  CHECK_OK(parse("{\"_class_name\": \"UNet2DConditionModel\", \"attention_head_dim\": [5, 10, 20, "
                 "20], \"use_linear_projection\": true, \"cross_attention_dim\": 1024}",
                 &c));
  CHECK(c.heads[0] == 5 && c.heads[3] == 20 && c.linear_projection && c.context_dim == 1024);
  int64_t n = 0;
  CHECK_OK(sdw_unet_count_params(&c, &n));
  /* SD 2.x UNet (stabilityai/stable-diffusion-2-1): 865,910,724 */
  CHECK(n == 865910724);
  CHECK(parse("{\"_class_name\": \"UNet2DConditionModel\", \"addition_embed_type\": \"text_time\"}",
              &c) == SDW_ERR_UNSUPPORTED);
  CHECK(strstr(sdw_last_error(), "addition_embed_type") != NULL);
  CHECK(parse("{\"_class_name\": \"UNet2DConditionModel\", \"num_attention_heads\": 8}", &c) ==
        SDW_ERR_UNSUPPORTED);
  CHECK(
      parse("{\"_class_name\": \"UNet2DConditionModel\", \"down_block_types\": "
            "[\"SimpleCrossAttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]}",
            &c) == SDW_ERR_UNSUPPORTED);
  CHECK(parse("{\"_class_name\": \"UNet2DConditionModel\", \"block_out_channels\": [32, 64]}",
              &c) == SDW_ERR_FORMAT); /* 4 default block types for 2 levels */
}

SDW_TEST(unet_forward_rejects_bad_shapes) {
  sdw_ctx *ctx = NULL;
  sdw_arena *arena = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  CHECK_OK(sdw_arena_create(&arena, "unet test", (size_t)1 << 30));
  REQUIRE(ctx && arena);
  sdw_unet_config cfg;
  CHECK_OK(sdw_unet_preset("seed-tiny", &cfg));
  sdw_unet m;
  CHECK_OK(sdw_unet_create(&m, ctx, &cfg));
  static float x[1 * 4 * 6 * 6], t[1], c[1 * 3 * 64], o[1 * 4 * 6 * 6];
  sdw_tensor xt = sdw_tensor_4d(x, SDW_F32, 1, 4, 5, 5); /* odd: not a multiple of 2 */
  sdw_tensor tt = sdw_tensor_1d(t, SDW_F32, 1);
  sdw_tensor ct = sdw_tensor_3d(c, SDW_F32, 1, 3, 64);
  sdw_tensor ot = sdw_tensor_4d(o, SDW_F32, 1, 4, 5, 5);
  CHECK(sdw_unet_forward(&m, arena, &xt, &tt, &ct, &ot) == SDW_ERR_INVALID_ARGUMENT);
  xt = sdw_tensor_4d(x, SDW_F32, 1, 4, 6, 6);
  ot = sdw_tensor_4d(o, SDW_F32, 1, 4, 6, 6);
  sdw_tensor bad_c = sdw_tensor_3d(c, SDW_F32, 1, 6, 32); /* context width 32, not 64 */
  CHECK(sdw_unet_forward(&m, arena, &xt, &tt, &bad_c, &ot) == SDW_ERR_INVALID_ARGUMENT);
  CHECK_OK(sdw_unet_forward(&m, arena, &xt, &tt, &ct, &ot)); /* zero weights: runs */
  sdw_unet_free(&m);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}
