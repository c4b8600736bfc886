/* UNet weights from LDM single files (core/model/unet_ldm.h).
 *
 * The LDM files are made here from the golden bundles: every key of
 * sd15-unet-tiny (diffusers names, tests/data/goldens/sd15-unet-tiny) is
 * renamed into the CompVis layout with the table below, written by hand
 * from diffusers' convert_ldm_unet_checkpoint (v0.25.1) for that
 * configuration (4 levels, 2 layers, attention at down levels 0-2 and up
 * blocks 1-3) - the structure of SD 1.5 itself, so the same table is also
 * checked against the sd15 preset's 686 parameters. It is not derived from
 * the code under test.
 *
 * Exactness: the same f32 values reach the same parameters, so the loaded
 * parameter buffers and the forward outputs must equal the diffusers-layout
 * load bit for bit (memcmp). Against the golden's float64 output the
 * tolerance is test_unet.c's: normwise relative error <= 1e-4 (the
 * reference's own float32 run is at 0.9e-6; a wrong block moves it by
 * 1e-3 .. 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "core/model/unet.h"
#include "core/model/unet_ldm.h"
#include "kernels/ops.h"
#include "tests/test.h"

/* --- the independent table ------------------------------------------------------------ */

/* diffusers block prefix -> CompVis block prefix; resnet: the names inside
 * are renamed too (renew_resnet_paths). */
static const struct {
  const char *from, *to;
  bool resnet;
} ldm_table[] = {
    {"time_embedding.linear_1.", "time_embed.0.", false},
    {"time_embedding.linear_2.", "time_embed.2.", false},
    {"conv_in.", "input_blocks.0.0.", false},
    {"down_blocks.0.resnets.0.", "input_blocks.1.0.", true},
    {"down_blocks.0.attentions.0.", "input_blocks.1.1.", false},
    {"down_blocks.0.resnets.1.", "input_blocks.2.0.", true},
    {"down_blocks.0.attentions.1.", "input_blocks.2.1.", false},
    {"down_blocks.0.downsamplers.0.conv.", "input_blocks.3.0.op.", false},
    {"down_blocks.1.resnets.0.", "input_blocks.4.0.", true},
    {"down_blocks.1.attentions.0.", "input_blocks.4.1.", false},
    {"down_blocks.1.resnets.1.", "input_blocks.5.0.", true},
    {"down_blocks.1.attentions.1.", "input_blocks.5.1.", false},
    {"down_blocks.1.downsamplers.0.conv.", "input_blocks.6.0.op.", false},
    {"down_blocks.2.resnets.0.", "input_blocks.7.0.", true},
    {"down_blocks.2.attentions.0.", "input_blocks.7.1.", false},
    {"down_blocks.2.resnets.1.", "input_blocks.8.0.", true},
    {"down_blocks.2.attentions.1.", "input_blocks.8.1.", false},
    {"down_blocks.2.downsamplers.0.conv.", "input_blocks.9.0.op.", false},
    {"down_blocks.3.resnets.0.", "input_blocks.10.0.", true},
    {"down_blocks.3.resnets.1.", "input_blocks.11.0.", true},
    {"mid_block.resnets.0.", "middle_block.0.", true},
    {"mid_block.attentions.0.", "middle_block.1.", false},
    {"mid_block.resnets.1.", "middle_block.2.", true},
    /* up block 0 (level 3): no attention, so its upsampler is index 1 */
    {"up_blocks.0.resnets.0.", "output_blocks.0.0.", true},
    {"up_blocks.0.resnets.1.", "output_blocks.1.0.", true},
    {"up_blocks.0.resnets.2.", "output_blocks.2.0.", true},
    {"up_blocks.0.upsamplers.0.conv.", "output_blocks.2.1.conv.", false},
    {"up_blocks.1.resnets.0.", "output_blocks.3.0.", true},
    {"up_blocks.1.attentions.0.", "output_blocks.3.1.", false},
    {"up_blocks.1.resnets.1.", "output_blocks.4.0.", true},
    {"up_blocks.1.attentions.1.", "output_blocks.4.1.", false},
    {"up_blocks.1.resnets.2.", "output_blocks.5.0.", true},
    {"up_blocks.1.attentions.2.", "output_blocks.5.1.", false},
    {"up_blocks.1.upsamplers.0.conv.", "output_blocks.5.2.conv.", false},
    {"up_blocks.2.resnets.0.", "output_blocks.6.0.", true},
    {"up_blocks.2.attentions.0.", "output_blocks.6.1.", false},
    {"up_blocks.2.resnets.1.", "output_blocks.7.0.", true},
    {"up_blocks.2.attentions.1.", "output_blocks.7.1.", false},
    {"up_blocks.2.resnets.2.", "output_blocks.8.0.", true},
    {"up_blocks.2.attentions.2.", "output_blocks.8.1.", false},
    {"up_blocks.2.upsamplers.0.conv.", "output_blocks.8.2.conv.", false},
    {"up_blocks.3.resnets.0.", "output_blocks.9.0.", true},
    {"up_blocks.3.attentions.0.", "output_blocks.9.1.", false},
    {"up_blocks.3.resnets.1.", "output_blocks.10.0.", true},
    {"up_blocks.3.attentions.1.", "output_blocks.10.1.", false},
    {"up_blocks.3.resnets.2.", "output_blocks.11.0.", true},
    {"up_blocks.3.attentions.2.", "output_blocks.11.1.", false},
    {"conv_norm_out.", "out.0.", false},
    {"conv_out.", "out.2.", false},
};
enum { TABLE_SIZE = sizeof ldm_table / sizeof ldm_table[0] };

static const char *const resnet_renames[][2] = {
    {"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},
    {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
    {"conv2.", "out_layers.3."},         {"conv_shortcut.", "skip_connection."},
};

/* The CompVis name (no prefix) of a diffusers name; counts table use. */
static bool rename_compvis(const char *in, char *out, size_t cap, int *used) {
  for (int t = 0; t < TABLE_SIZE; t++) {
    size_t n = strlen(ldm_table[t].from);
    if (strncmp(in, ldm_table[t].from, n) != 0) continue;
    const char *rest = in + n;
    if (used) used[t]++;
    if (!ldm_table[t].resnet) return snprintf(out, cap, "%s%s", ldm_table[t].to, rest) < (int)cap;
    for (size_t r = 0; r < sizeof resnet_renames / sizeof resnet_renames[0]; r++) {
      size_t m = strlen(resnet_renames[r][0]);
      if (strncmp(rest, resnet_renames[r][0], m) == 0)
        return snprintf(out, cap, "%s%s%s", ldm_table[t].to, resnet_renames[r][1], rest + m) <
               (int)cap;
    }
    return false;
  }
  return false;
}

/* --- files ------------------------------------------------------------------------------ */

static void golden_path(char *buf, size_t size, const char *bundle, const char *file) {
  snprintf(buf, size, "%s/goldens/%s/%s", sdw_test_data_dir(), bundle, file);
}

static void tmp_path(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/unet_ldm/%s", sdw_test_tmpdir(), name);
}

typedef enum naming { NAMES_COMPVIS, NAMES_NATIVE, NAMES_EMA } naming;

typedef struct write_opts {
  const char *bundle; /* UNet golden: sd15-unet-tiny or seed-unet-tiny */
  naming names;
  const char *skip; /* a file key left out */
  bool extras;      /* VAE, text encoder and schedule tensors beside the UNet */
  bool linear_proj; /* proj_in/proj_out as [C, C] (1x1 convs in the golden) */
  bool also_plain;  /* with NAMES_EMA: model.diffusion_model.* too, values + 1 */
  int *used;        /* table use counts (NAMES_COMPVIS) */
} write_opts;

/* Adds every tensor of a golden weights file under prefix (extras). */
static bool add_all(sdw_safetensors_writer *w, const sdw_safetensors *st, const char *prefix) {
  char key[512];
  for (size_t i = 0; i < sdw_safetensors_count(st); i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
    snprintf(key, sizeof key, "%s%s", prefix, e->name);
    if (sdw_safetensors_writer_add(w, key, e->dtype, e->ndim, e->shape, e->data) != SDW_OK)
      return false;
  }
  return true;
}

static void ema_key(const char *compvis, char *out, size_t cap) {
  size_t n = (size_t)snprintf(out, cap, "model_ema.diffusion_model");
  for (const char *p = compvis; *p && n + 1 < cap; p++)
    if (*p != '.') out[n++] = *p;
  out[n] = '\0';
}

static bool write_ldm(const char *path, const write_opts *o) {
  char src[512];
  golden_path(src, sizeof src, o->bundle, "weights.safetensors");
  sdw_safetensors *g = NULL, *vae = NULL, *te = NULL;
  sdw_safetensors_writer *w = NULL;
  bool ok = sdw_safetensors_open(src, &g) == SDW_OK && sdw_safetensors_writer_create(&w) == SDW_OK;
  size_t count = g ? sdw_safetensors_count(g) : 0;
  float **plus = calloc(count + 1, sizeof *plus);
  char name[512], key[600];
  for (size_t i = 0; ok && i < count; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(g, i);
    int64_t shape[8];
    int ndim = e->ndim;
    memcpy(shape, e->shape, (size_t)ndim * sizeof *shape);
    if (o->linear_proj && (strstr(e->name, "proj_in.weight") || strstr(e->name, "proj_out.weight")))
      ndim = 2; /* [C, C, 1, 1] -> [C, C] */
    if (o->names == NAMES_NATIVE) {
      snprintf(name, sizeof name, "%s", e->name);
    } else if (!rename_compvis(e->name, name, sizeof name, o->used)) {
      sdw_test_fail(__FILE__, __LINE__, "the test's table has no entry for '%s'", e->name);
      ok = false;
      break;
    }
    if (o->names == NAMES_EMA) {
      ema_key(name, key, sizeof key);
      ok = sdw_safetensors_writer_add(w, key, e->dtype, ndim, shape, e->data) == SDW_OK;
      if (!ok || !o->also_plain) continue;
      plus[i] = malloc((size_t)e->numel * sizeof(float));
      for (int64_t k = 0; k < e->numel; k++)
        plus[i][k] = ((const float *)e->data)[k] + 1.0f;
    }
    snprintf(key, sizeof key, "model.diffusion_model.%s", name);
    if (o->skip && strcmp(key, o->skip) == 0) continue;
    ok = sdw_safetensors_writer_add(w, key, e->dtype, ndim, shape,
                                    plus[i] ? (const void *)plus[i] : e->data) == SDW_OK;
  }
  /* what else an SD 1.x checkpoint holds: the VAE, the text encoder (here
   * the tiny golden ones), schedule buffers and EMA bookkeeping */
  static const float alphas[4] = {0.99f, 0.98f, 0.97f, 0.96f};
  static const float decay = 0.9999f;
  static const int64_t updates = 1234;
  if (ok && o->extras) {
    golden_path(src, sizeof src, "vae-tiny", "weights.safetensors");
    ok = sdw_safetensors_open(src, &vae) == SDW_OK && add_all(w, vae, "first_stage_model.");
    golden_path(src, sizeof src, "clip-text-tiny", "weights.safetensors");
    ok = ok && sdw_safetensors_open(src, &te) == SDW_OK &&
         add_all(w, te, "cond_stage_model.transformer.");
    ok = ok &&
         sdw_safetensors_writer_add(w, "alphas_cumprod", SDW_F32, 1, (int64_t[]){4}, alphas) ==
             SDW_OK &&
         sdw_safetensors_writer_add(w, "model_ema.decay", SDW_F32, 0, NULL, &decay) == SDW_OK &&
         sdw_safetensors_writer_add(w, "model_ema.num_updates", SDW_I64, 0, NULL, &updates) ==
             SDW_OK;
  }
  if (ok) ok = sdw_safetensors_writer_write(w, path) == SDW_OK;
  for (size_t i = 0; i < count; i++)
    free(plus[i]);
  free(plus);
  sdw_safetensors_writer_destroy(w);
  sdw_safetensors_close(g);
  sdw_safetensors_close(vae);
  sdw_safetensors_close(te);
  if (!ok) sdw_test_fail(__FILE__, __LINE__, "writing %s: %s", path, sdw_last_error());
  return ok;
}

static bool copy_file(const char *from, const char *to) {
  void *data = NULL;
  size_t size = 0;
  bool ok =
      sdw_read_file(from, &data, &size) == SDW_OK && sdw_atomic_write(to, data, size) == SDW_OK;
  free(data);
  return ok;
}

/* --- running ---------------------------------------------------------------------------- */

typedef struct fixture {
  sdw_ctx *ctx;
  sdw_arena *arena;
  sdw_unet ref; /* the golden bundle, native layout */
  sdw_safetensors *io;
  const char *bundle;
} fixture;

static bool fixture_open(fixture *f, const char *bundle) {
  memset(f, 0, sizeof *f);
  f->bundle = bundle;
  char dir[512], path[600];
  snprintf(dir, sizeof dir, "%s/goldens/%s", sdw_test_data_dir(), bundle);
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &f->ctx));
  if (!f->ctx) return false;
  CHECK_OK(sdw_arena_create(&f->arena, "unet_ldm test", (size_t)1 << 30));
  if (!f->arena) return false;
  sdw_status st = sdw_unet_open(&f->ref, f->ctx, dir);
  CHECK_OK(st);
  if (st != SDW_OK) return false;
  snprintf(path, sizeof path, "%s/io.safetensors", dir);
  CHECK_OK(sdw_safetensors_open(path, &f->io));
  tmp_path(path, sizeof path, "");
  CHECK_OK(sdw_mkdir_p(path));
  return f->io != NULL;
}

static void fixture_close(fixture *f) {
  sdw_safetensors_close(f->io);
  sdw_unet_free(&f->ref);
  sdw_arena_destroy(f->arena);
  sdw_ctx_destroy(f->ctx);
}

static float *entry_f32(const sdw_safetensors_entry *e) {
  float *out = malloc((size_t)e->numel * sizeof *out);
  for (int64_t i = 0; i < e->numel; i++) {
    if (e->dtype == SDW_I64) {
      int64_t v;
      memcpy(&v, (const char *)e->data + 8 * i, 8);
      out[i] = (float)v;
    } else {
      memcpy(&out[i], (const char *)e->data + 4 * i, 4);
    }
  }
  return out;
}

/* The golden's forward on m: out[n * 4 * h * w] (malloc'd) or NULL. sd15:
 * sample/timestep/encoder_hidden_states; seed: x/t/ctx. */
static float *forward(fixture *f, sdw_unet *m, size_t *numel) {
  const bool seed = m->cfg.topology == SDW_UNET_SEED;
  const sdw_safetensors_entry *ex = sdw_safetensors_find(f->io, seed ? "x" : "sample");
  const sdw_safetensors_entry *et = sdw_safetensors_find(f->io, seed ? "t" : "timestep");
  const sdw_safetensors_entry *ec =
      sdw_safetensors_find(f->io, seed ? "ctx" : "encoder_hidden_states");
  if (!ex || !et || !ec) return NULL;
  const int64_t n = ex->shape[0], h = ex->shape[2], w = ex->shape[3], s = ec->shape[1];
  float *x = entry_f32(ex), *t = entry_f32(et), *c = entry_f32(ec);
  *numel = (size_t)(n * m->cfg.out_channels * h * w);
  float *out = malloc(*numel * sizeof *out);
  sdw_tensor tx = sdw_tensor_4d(x, SDW_F32, n, m->cfg.in_channels, h, w);
  sdw_tensor tt = sdw_tensor_1d(t, SDW_F32, n);
  sdw_tensor tc = sdw_tensor_3d(c, SDW_F32, n, s, m->cfg.context_dim);
  sdw_tensor to = sdw_tensor_4d(out, SDW_F32, n, m->cfg.out_channels, h, w);
  sdw_status st = sdw_unet_forward(m, f->arena, &tx, &tt, &tc, &to);
  CHECK_OK(st);
  free(x);
  free(t);
  free(c);
  if (st != SDW_OK) {
    free(out);
    return NULL;
  }
  return out;
}

static bool same_params(const sdw_unet *a, const sdw_unet *b) {
  return a->params.total == b->params.total &&
         memcmp(a->params.flat, b->params.flat, a->params.total * sizeof(float)) == 0;
}

/* m's output equals the reference's bit for bit, and is within 1e-4 of the
 * golden's float64 output (sd15 only; see the top). */
static void check_output(fixture *f, sdw_unet *m, const char *what) {
  size_t n_ref = 0, n_got = 0;
  float *ref = forward(f, &f->ref, &n_ref), *got = forward(f, m, &n_got);
  CHECK(ref && got && n_ref == n_got);
  if (ref && got && n_ref == n_got) {
    CHECK_MSG(memcmp(ref, got, n_ref * sizeof *ref) == 0,
              "%s: output differs from the diffusers-layout load", what);
    const sdw_safetensors_entry *e = sdw_safetensors_find(f->io, "out_sample_f64");
    if (m->cfg.topology == SDW_UNET_SD15 && e && (size_t)e->numel == n_got) {
      double err = sdw_test_rel_err_f32_f64(got, e->data, n_got);
      printf("  %s: normwise rel err vs out_sample_f64 = %.3g\n", what, err);
      CHECK_REL(err, 1e-4, what);
    }
  }
  free(ref);
  free(got);
}

/* --- tests -------------------------------------------------------------------------------- */

SDW_TEST(unet_ldm_compvis_single_file) {
  fixture f;
  if (!fixture_open(&f, "sd15-unet-tiny")) {
    fixture_close(&f);
    REQUIRE(false);
  }
  char path[600], cfg[512];
  golden_path(cfg, sizeof cfg, "sd15-unet-tiny", "config.json");
  int used[TABLE_SIZE] = {0};
  tmp_path(path, sizeof path, "sd15-tiny-ldm.safetensors");
  write_opts o = {.bundle = "sd15-unet-tiny", .names = NAMES_COMPVIS, .extras = true, .used = used};
  if (write_ldm(path, &o)) {
    /* every table row names real tensors (no dead or mistyped rows) */
    for (int t = 0; t < TABLE_SIZE; t++)
      CHECK_MSG(used[t] > 0, "table row %s matches no tensor", ldm_table[t].from);

    /* the mapping agrees with the table, both ways */
    char key[512], mine[512], back[512];
    for (int i = 0; i < f.ref.params.count; i++) {
      const char *native = f.ref.params.items[i].name;
      CHECK(rename_compvis(native, key, sizeof key, NULL));
      bool mapped = sdw_unet_ldm_key(&f.ref.cfg, native, mine, sizeof mine);
      CHECK_MSG(mapped && strcmp(key, mine) == 0, "%s: CompVis '%s', mapping gives '%s'", native,
                key, mapped ? mine : "(none)");
      CHECK(sdw_unet_ldm_native(&f.ref, key, back, sizeof back) && strcmp(back, native) == 0);
    }
    CHECK(!sdw_unet_ldm_native(&f.ref, "output_blocks.2.2.conv.weight", back, sizeof back));

    sdw_weights *w = NULL;
    CHECK_OK(sdw_weights_open(path, NULL, &w));
    if (w) {
      CHECK(sdw_unet_ldm_is_ldm(w));
      int found = 0;
      CHECK(sdw_unet_ldm_detect(&f.ref, w, false, &found) == SDW_UNET_LDM_COMPVIS);
      CHECK(found == f.ref.params.count);
      sdw_unet_ldm_detect(&f.ref, w, true, &found);
      CHECK(found == 0); /* model_ema.decay etc. are no EMA weights */
      sdw_weights_close(w);
    }

    sdw_unet m;
    sdw_status st = sdw_unet_open_ldm(&m, f.ctx, path, cfg, false);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(memcmp(&m.cfg, &f.ref.cfg, sizeof m.cfg) == 0);
      CHECK(same_params(&m, &f.ref));
      check_output(&f, &m, "CompVis LDM file");
      sdw_unet_free(&m);
    }
  }

  /* 1x1-conv projections stored as linears (as SD 2.x files have them):
   * the same values, squeezed */
  tmp_path(path, sizeof path, "sd15-tiny-ldm-linear.safetensors");
  o = (write_opts){.bundle = "sd15-unet-tiny", .names = NAMES_COMPVIS, .linear_proj = true};
  if (write_ldm(path, &o)) {
    sdw_unet m;
    sdw_status st = sdw_unet_open_ldm(&m, f.ctx, path, cfg, false);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(same_params(&m, &f.ref));
      sdw_unet_free(&m);
    }
  }
  fixture_close(&f);
}

/* The sd15 preset (SD 1.5 itself): the same table gives every one of its
 * 686 CompVis names (as in v1-5-pruned-emaonly.safetensors), all distinct. */
SDW_TEST(unet_ldm_sd15_preset_names) {
  sdw_unet_config cfg;
  CHECK_OK(sdw_unet_preset("sd15", &cfg));
  sdw_unet plan;
  REQUIRE(sdw_unet_plan(&plan, &cfg) == SDW_OK);
  CHECK(plan.params.count == 686);
  char **keys = calloc((size_t)plan.params.count, sizeof *keys);
  for (int i = 0; i < plan.params.count; i++) {
    char want[512], got[512];
    const char *native = plan.params.items[i].name;
    CHECK(rename_compvis(native, want, sizeof want, NULL));
    CHECK_MSG(sdw_unet_ldm_key(&cfg, native, got, sizeof got) && strcmp(want, got) == 0,
              "%s -> '%s', want '%s'", native, got, want);
    keys[i] = strdup(got);
    for (int j = 0; j < i; j++)
      CHECK_MSG(strcmp(keys[i], keys[j]) != 0, "'%s' twice", keys[i]);
  }
  /* spot checks of well-known SD 1.5 keys */
  static const char *const known[] = {
      "input_blocks.3.0.op.weight",
      "input_blocks.4.0.skip_connection.weight",
      "input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight",
      "middle_block.1.proj_in.weight",
      "middle_block.2.emb_layers.1.bias",
      "output_blocks.2.1.conv.weight",
      "output_blocks.5.2.conv.bias",
      "output_blocks.8.2.conv.weight",
      "output_blocks.11.1.transformer_blocks.0.ff.net.0.proj.weight",
      "out.2.weight",
      "time_embed.2.bias",
  };
  for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
    char native[512];
    CHECK_MSG(sdw_unet_ldm_native(&plan, known[k], native, sizeof native), "no %s", known[k]);
  }
  /* names that are not parameters of this configuration */
  char key[512];
  CHECK(!sdw_unet_ldm_key(&cfg, "down_blocks.3.attentions.0.norm.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "down_blocks.3.downsamplers.0.conv.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "up_blocks.3.upsamplers.0.conv.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "up_blocks.0.attentions.0.norm.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "up_blocks.1.resnets.3.norm1.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "down_blocks.0.resnets.0.frobnicate.weight", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "conv_in.", key, sizeof key));
  CHECK(!sdw_unet_ldm_key(&cfg, "conv_in.weight", key, 8)); /* does not fit */
  sdw_unet_config seed;
  CHECK_OK(sdw_unet_preset("seed-tiny", &seed));
  CHECK(!sdw_unet_ldm_key(&seed, "conv_in.weight", key, sizeof key)); /* no CompVis form */
  for (int i = 0; i < plan.params.count; i++)
    free(keys[i]);
  free(keys);
  sdw_unet_free(&plan);
}

/* A missing tensor is named by its LDM key, whichever way the file is
 * loaded. */
SDW_TEST(unet_ldm_missing_key_names_it) {
  fixture f;
  if (!fixture_open(&f, "sd15-unet-tiny")) {
    fixture_close(&f);
    REQUIRE(false);
  }
  char path[600], cfg[512];
  golden_path(cfg, sizeof cfg, "sd15-unet-tiny", "config.json");
  tmp_path(path, sizeof path, "sd15-tiny-missing.safetensors");
  const char *gone = "model.diffusion_model.output_blocks.5.2.conv.weight";
  write_opts o = {.bundle = "sd15-unet-tiny", .names = NAMES_COMPVIS, .skip = gone, .extras = true};
  if (write_ldm(path, &o)) {
    sdw_unet m;
    CHECK(sdw_unet_open_ldm(&m, f.ctx, path, cfg, false) == SDW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sdw_last_error(), gone) != NULL, "message: %s", sdw_last_error());
    /* through the loader of an existing model (sdw_unet_load dispatches) */
    sdw_unet_config c = f.ref.cfg;
    REQUIRE(sdw_unet_create(&m, f.ctx, &c) == SDW_OK);
    CHECK(sdw_unet_load(&m, path) == SDW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sdw_last_error(), gone) != NULL, "message: %s", sdw_last_error());
    sdw_unet_free(&m);
  }
  fixture_close(&f);
}

/* Without a config, the sd15 preset applies; the tiny file does not fit it,
 * and that is found from the shapes before 3.4 GB are allocated. With
 * unet/config.json beside the file, that is used (also by sdw_unet_open,
 * which recognises LDM files). */
SDW_TEST(unet_ldm_config_lookup) {
  fixture f;
  if (!fixture_open(&f, "sd15-unet-tiny")) {
    fixture_close(&f);
    REQUIRE(false);
  }
  char dir[600], path[700], cfg[512], sub[700];
  tmp_path(dir, sizeof dir, "repo");
  snprintf(sub, sizeof sub, "%s/unet", dir);
  CHECK_OK(sdw_mkdir_p(sub));
  snprintf(path, sizeof path, "%s/v1-tiny.safetensors", dir);
  write_opts o = {.bundle = "sd15-unet-tiny", .names = NAMES_COMPVIS, .extras = true};
  if (write_ldm(path, &o)) {
    sdw_unet m;
    CHECK(sdw_unet_open_ldm(&m, f.ctx, path, NULL, false) == SDW_ERR_FORMAT);
    CHECK_MSG(strstr(sdw_last_error(), "sd15 preset") &&
                  strstr(sdw_last_error(), "unet/config.json") &&
                  strstr(sdw_last_error(), "input_blocks.0.0.weight"),
              "message: %s", sdw_last_error());

    golden_path(cfg, sizeof cfg, "sd15-unet-tiny", "config.json");
    snprintf(sub, sizeof sub, "%s/unet/config.json", dir);
    REQUIRE(copy_file(cfg, sub));
    sdw_status st = sdw_unet_open(&m, f.ctx, path);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(memcmp(&m.cfg, &f.ref.cfg, sizeof m.cfg) == 0);
      CHECK(same_params(&m, &f.ref));
      sdw_unet_free(&m);
    }
    /* a model created by the caller loads it too */
    REQUIRE(sdw_unet_create(&m, f.ctx, &f.ref.cfg) == SDW_OK);
    CHECK_OK(sdw_unet_load(&m, path));
    CHECK(same_params(&m, &f.ref));
    sdw_unet_free(&m);
  }
  fixture_close(&f);
}

/* "model.diffusion_model." + native names (sdw convert --format ldm) and
 * the EMA copy of a full training checkpoint. */
SDW_TEST(unet_ldm_native_and_ema) {
  fixture f;
  if (!fixture_open(&f, "sd15-unet-tiny")) {
    fixture_close(&f);
    REQUIRE(false);
  }
  char path[600], cfg[512];
  golden_path(cfg, sizeof cfg, "sd15-unet-tiny", "config.json");
  tmp_path(path, sizeof path, "sd15-tiny-native.safetensors");
  write_opts o = {.bundle = "sd15-unet-tiny", .names = NAMES_NATIVE, .extras = true};
  sdw_unet m;
  if (write_ldm(path, &o)) {
    sdw_status st = sdw_unet_open_ldm(&m, f.ctx, path, cfg, false);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(same_params(&m, &f.ref));
      sdw_unet_free(&m);
    }
    CHECK(sdw_unet_open_ldm(&m, f.ctx, path, cfg, true) == SDW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sdw_last_error(), "no EMA copy"), "message: %s", sdw_last_error());
  }

  /* EMA weights = the golden's, model.diffusion_model.* = golden + 1 */
  tmp_path(path, sizeof path, "sd15-tiny-ema.safetensors");
  o = (write_opts){.bundle = "sd15-unet-tiny", .names = NAMES_EMA, .also_plain = true};
  if (write_ldm(path, &o)) {
    sdw_status st = sdw_unet_open_ldm(&m, f.ctx, path, cfg, true);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(same_params(&m, &f.ref));
      check_output(&f, &m, "EMA copy");
      sdw_unet_free(&m);
    }
    st = sdw_unet_open_ldm(&m, f.ctx, path, cfg, false);
    CHECK_OK(st);
    if (st == SDW_OK) {
      /* per parameter: the flat buffer may pad between them */
      bool plus_one = m.params.count == f.ref.params.count;
      for (int i = 0; plus_one && i < m.params.count; i++) {
        const float *a = m.params.items[i].value.data, *b = f.ref.params.items[i].value.data;
        for (int64_t k = 0; plus_one && k < sdw_tensor_numel(&m.params.items[i].value); k++)
          plus_one = a[k] == b[k] + 1.0f;
      }
      CHECK_MSG(plus_one, "the non-EMA load did not take model.diffusion_model.*");
      sdw_unet_free(&m);
    }
  }
  fixture_close(&f);
}

/* A seed UNet exported as sdw convert --format ldm writes it: loads with
 * its config.json bit for bit; without one its shape is read off the
 * weights (heads: the seed's 8, so only heads differ from the golden's 2). */
SDW_TEST(unet_ldm_seed_export) {
  fixture f;
  if (!fixture_open(&f, "seed-unet-tiny")) {
    fixture_close(&f);
    REQUIRE(false);
  }
  char dir[600], path[700], cfg[512], sub[700];
  golden_path(cfg, sizeof cfg, "seed-unet-tiny", "config.json");
  tmp_path(dir, sizeof dir, "seed");
  snprintf(sub, sizeof sub, "%s/unet", dir);
  CHECK_OK(sdw_mkdir_p(sub));
  snprintf(path, sizeof path, "%s/seed-ldm.safetensors", dir);
  write_opts o = {.bundle = "seed-unet-tiny", .names = NAMES_NATIVE};
  sdw_unet m;
  if (write_ldm(path, &o)) {
    sdw_status st = sdw_unet_open_ldm(&m, f.ctx, path, NULL, false);
    CHECK_OK(st);
    if (st == SDW_OK) {
      sdw_unet_config want = f.ref.cfg;
      for (int l = 0; l < want.levels; l++)
        want.heads[l] = 8;
      CHECK(memcmp(&m.cfg, &want, sizeof want) == 0);
      CHECK(same_params(&m, &f.ref));
      sdw_unet_free(&m);
    }
    snprintf(sub, sizeof sub, "%s/unet/config.json", dir);
    REQUIRE(copy_file(cfg, sub));
    st = sdw_unet_open(&m, f.ctx, path);
    CHECK_OK(st);
    if (st == SDW_OK) {
      CHECK(memcmp(&m.cfg, &f.ref.cfg, sizeof m.cfg) == 0);
      CHECK(same_params(&m, &f.ref));
      check_output(&f, &m, "seed LDM export");
      sdw_unet_free(&m);
    }
  }
  fixture_close(&f);
}
