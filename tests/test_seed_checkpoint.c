/* Seed .pt checkpoints (core/model/seed_checkpoint.h).
 *
 * Reference: tests/data/goldens/seed-checkpoint-tiny (README.txt): the
 * seed's save_checkpoint() dict written by torch.save after 3 AdamW steps,
 * checkpoint.safetensors with the same tensors made contiguous by PyTorch
 * ('unet_state_dict.<p>', 'ema.shadow.<p>', 'optimizer.exp_avg.<p>',
 * 'optimizer.exp_avg_sq.<p>'), checkpoint.json with the scalars. Weights are
 * compared BIT FOR BIT (memcmp; reading is a copy), scalars exactly (they
 * are the same binary64 / int values PyTorch pickled and json printed with
 * repr, which round-trips).
 *
 * The done-when: the seed UNet (core/model/unet.h) run on the
 * weights taken from the .pt gives bit-for-bit the output of the same UNet
 * loaded from checkpoint.safetensors (same code, same inputs: any
 * difference is a weight that was read wrongly, e.g. a channels_last conv).
 *
 * Prefix handling (module., _orig_mod., _fsdp_wrapped_module., unet.) and
 * the legacy layouts are checked on checkpoints built byte by byte with
 * tests/test_pt_util.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/fsutil.h"
#include "core/base/json.h"
#include "core/base/safetensors.h"
#include "core/model/seed_checkpoint.h"
#include "core/model/unet.h"
#include "core/model/weights.h"
#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_pt_util.h"

static void data_path(char *buf, size_t size, const char *bundle, const char *file) {
  snprintf(buf, size, "%s/goldens/%s/%s", sdw_test_data_dir(), bundle, file);
}

static bool message_has(const char *needle) { return strstr(sdw_last_error(), needle) != NULL; }

/* Every tensor of s equals golden tensor prefix + name bit for bit. */
static void compare_with_golden(sdw_seed_checkpoint *c, const sdw_seed_state *s,
                                const sdw_safetensors *st, const char *prefix) {
  for (int i = 0; i < s->count; i++) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, s->items[i].name);
    const sdw_safetensors_entry *e = sdw_safetensors_find(st, key);
    if (!e) {
      CHECK_MSG(false, "golden has no '%s'", key);
      continue;
    }
    CHECK_MSG(e->dtype == SDW_F32 && (size_t)s->items[i].tensor->numel == (size_t)e->numel,
              "'%s': dtype or size", key);
    float *buf = malloc(e->nbytes ? e->nbytes : 4);
    CHECK_OK(sdw_seed_tensor_read_f32(c, &s->items[i], buf, (size_t)e->numel));
    CHECK_MSG(memcmp(buf, e->data, e->nbytes) == 0, "'%s' differs from the golden", key);
    free(buf);
  }
}

SDW_TEST(seed_checkpoint_golden) {
  char pt[512], sf[512], js[512];
  data_path(pt, sizeof pt, "seed-checkpoint-tiny", "checkpoint.pt");
  data_path(sf, sizeof sf, "seed-checkpoint-tiny", "checkpoint.safetensors");
  data_path(js, sizeof js, "seed-checkpoint-tiny", "checkpoint.json");
  sdw_seed_checkpoint *c = NULL;
  sdw_safetensors *st = NULL;
  sdw_json_doc *doc = NULL;
  CHECK_OK(sdw_seed_checkpoint_open(pt, &c));
  CHECK_OK(sdw_safetensors_open(sf, &st));
  CHECK_OK(sdw_json_load_file(js, &doc));
  if (!c || !st || !doc) goto done;
  sdw_json_obj root, sched, group;
  CHECK_OK(sdw_json_root(doc, &root));

  /* scalars */
  const sdw_seed_info *in = sdw_seed_checkpoint_info(c);
  int64_t i64 = 0;
  double f64 = 0, betas[2] = {0, 0};
  size_t nb = 0;
  CHECK(in->has_epoch && in->has_global_step && in->has_best_loss && in->has_ema &&
        in->has_optimizer && in->has_scheduler);
  CHECK(sdw_json_get_int(&root, "epoch", &i64) == SDW_OK && in->epoch == i64);
  CHECK(sdw_json_get_int(&root, "global_step", &i64) == SDW_OK && in->global_step == i64);
  CHECK(sdw_json_get_double(&root, "best_loss", &f64) == SDW_OK && in->best_loss == f64);
  CHECK(sdw_json_get_int(&root, "ema_step_count", &i64) == SDW_OK && in->ema_step_count == i64);
  CHECK(sdw_json_get_double(&root, "ema_decay", &f64) == SDW_OK && in->ema_decay == f64);
  CHECK_OK(sdw_json_get_object(&root, "lr_scheduler_state_dict", &sched));
  CHECK(sdw_json_get_int(&sched, "last_epoch", &i64) == SDW_OK && in->scheduler_last_epoch == i64);
  const cJSON *groups = sdw_json_find(&root, "optimizer_param_groups");
  REQUIRE(groups && cJSON_IsArray(groups));
  group = root;
  group.item = cJSON_GetArrayItem(groups, 0);
  CHECK(sdw_json_get_double(&group, "lr", &f64) == SDW_OK && in->lr == f64);
  CHECK(sdw_json_get_double(&group, "initial_lr", &f64) == SDW_OK && in->initial_lr == f64);
  CHECK(sdw_json_get_double(&group, "eps", &f64) == SDW_OK && in->eps == f64);
  CHECK(sdw_json_get_double(&group, "weight_decay", &f64) == SDW_OK && in->weight_decay == f64);
  CHECK_OK(sdw_json_get_double_array(&group, "betas", betas, 2, &nb));
  CHECK(nb == 2 && in->beta1 == betas[0] && in->beta2 == betas[1]);

  /* weights: EMA (the default) and the model's, in the file's order */
  const char *order[200];
  size_t np = 0;
  CHECK_OK(sdw_json_get_string_array(&root, "param_order", order, 200, &np));
  const sdw_seed_state *ema = NULL, *model = NULL, *autow = NULL;
  CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_EMA, &ema));
  CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_MODEL, &model));
  CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &autow));
  REQUIRE(ema && model && autow == ema && np == 158);
  CHECK(strcmp(ema->source, "ema_state_dict.shadow") == 0);
  CHECK(strcmp(model->source, "unet_state_dict") == 0);
  REQUIRE(ema->count == 158 && model->count == 158);
  for (int i = 0; i < 158; i++)
    CHECK(strcmp(model->items[i].name, order[i]) == 0 && strcmp(ema->items[i].name, order[i]) == 0);
  compare_with_golden(c, ema, st, "ema.shadow.");
  compare_with_golden(c, model, st, "unet_state_dict.");
  CHECK(sdw_seed_state_find(ema, "conv_in.weight") == &ema->items[4]);
  CHECK(sdw_seed_state_find(ema, "conv_in") == NULL);

  /* AdamW moments, by parameter index -> model name */
  const sdw_seed_state *m1 = NULL, *m2 = NULL;
  double step = 0;
  CHECK_OK(sdw_seed_checkpoint_adam(c, &m1, &m2, &step));
  REQUIRE(m1 && m2 && m1->count == 158 && m2->count == 158);
  compare_with_golden(c, m1, st, "optimizer.exp_avg.");
  compare_with_golden(c, m2, st, "optimizer.exp_avg_sq.");
  sdw_json_obj steps;
  CHECK_OK(sdw_json_get_object(&root, "optimizer_state_step", &steps));
  CHECK(sdw_json_get_double(&steps, "0", &f64) == SDW_OK && step == f64 && step == 3.0);
done:
  sdw_json_free(doc);
  sdw_safetensors_close(st);
  sdw_seed_checkpoint_close(c);
}

SDW_TEST(seed_checkpoint_image) {
  char pt[512], sf[512];
  data_path(pt, sizeof pt, "seed-checkpoint-tiny", "checkpoint.pt");
  data_path(sf, sizeof sf, "seed-checkpoint-tiny", "checkpoint.safetensors");
  sdw_seed_checkpoint *c = NULL;
  sdw_safetensors *gold = NULL;
  CHECK_OK(sdw_seed_checkpoint_open(pt, &c));
  CHECK_OK(sdw_safetensors_open(sf, &gold));
  const sdw_seed_state *ema = NULL;
  if (c) CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_EMA, &ema));
  if (!ema || !gold) goto done;
  static const sdw_dtype types[3] = {SDW_F32, SDW_F16, SDW_BF16};
  for (int k = 0; k < 3; k++) {
    void *image = NULL;
    size_t size = 0;
    CHECK_OK(sdw_seed_state_image(c, ema, k == 0 ? "" : "model.diffusion_model.", types[k], &image,
                                  &size));
    sdw_safetensors *st = NULL;
    /* the reference-validated reader accepts it */
    if (image) CHECK_OK(sdw_safetensors_open_memory(image, size, "image", &st));
    if (!st) {
      free(image);
      continue;
    }
    CHECK((int)sdw_safetensors_count(st) == ema->count);
    CHECK(sdw_safetensors_metadata_get(st, "format") &&
          strcmp(sdw_safetensors_metadata_get(st, "format"), "pt") == 0);
    for (int i = 0; i < ema->count; i++) {
      const sdw_safetensors_entry *e = sdw_safetensors_at(st, (size_t)i);
      char want[256], gk[256];
      snprintf(want, sizeof want, "%s%s", k == 0 ? "" : "model.diffusion_model.",
               ema->items[i].name);
      snprintf(gk, sizeof gk, "ema.shadow.%s", ema->items[i].name);
      const sdw_safetensors_entry *g = sdw_safetensors_find(gold, gk);
      REQUIRE(g);
      CHECK(strcmp(e->name, want) == 0 && e->dtype == types[k] && e->numel == g->numel);
      bool same = e->ndim == g->ndim;
      for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == g->shape[d];
      CHECK_MSG(same, "'%s': shape", want);
      if (k == 0) {
        CHECK_MSG(memcmp(e->data, g->data, g->nbytes) == 0, "'%s' differs", want);
        continue;
      }
      /* F16 / BF16: the golden value rounded to nearest even by the tested
       * converters of core/base/tensor.h */
      int bad = 0;
      for (int64_t j = 0; j < e->numel; j++) {
        float v;
        uint16_t h;
        memcpy(&v, (const char *)g->data + 4 * j, 4);
        memcpy(&h, (const char *)e->data + 2 * j, 2);
        bad += h != (types[k] == SDW_F16 ? sdw_f32_to_f16(v) : sdw_f32_to_bf16(v));
      }
      CHECK_MSG(bad == 0, "'%s': %d values differ", want, bad);
    }
    sdw_safetensors_close(st);
    free(image);
  }
done:
  sdw_safetensors_close(gold);
  sdw_seed_checkpoint_close(c);
}

/* The seed UNet with weights from the .pt vs from checkpoint.safetensors:
 * the same outputs bit for bit, with and without context. Inputs: the
 * seed-unet-tiny bundle's x, t, ctx (same configuration, README). */
SDW_TEST(seed_checkpoint_unet_bit_exact) {
  char pt[512], sf[512], cfg_path[512], io_path[512], small_cfg[512];
  data_path(pt, sizeof pt, "seed-checkpoint-tiny", "checkpoint.pt");
  data_path(sf, sizeof sf, "seed-checkpoint-tiny", "checkpoint.safetensors");
  data_path(cfg_path, sizeof cfg_path, "seed-checkpoint-tiny", "config.json");
  data_path(io_path, sizeof io_path, "seed-unet-tiny", "io.safetensors");
  data_path(small_cfg, sizeof small_cfg, "seed-unet-small", "config.json");
  sdw_ctx *ctx = NULL;
  sdw_arena *arena = NULL;
  sdw_seed_checkpoint *c = NULL;
  sdw_weights *w = NULL;
  sdw_safetensors *io = NULL;
  sdw_unet a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  sdw_unet_config cfg;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  CHECK_OK(sdw_arena_create(&arena, "seed checkpoint test", (size_t)1 << 30));
  CHECK_OK(sdw_seed_checkpoint_open(pt, &c));
  CHECK_OK(sdw_weights_open(sf, NULL, &w));
  CHECK_OK(sdw_safetensors_open(io_path, &io));
  CHECK_OK(sdw_unet_config_from_json(cfg_path, &cfg));
  if (!ctx || !arena || !c || !w || !io) goto done;
  const sdw_seed_state *ema = NULL;
  CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &ema));
  REQUIRE(ema);

  /* constructor arguments read off the weights = config.json (heads are not
   * in the weights: 2 given), and the text we write parses back to them */
  sdw_seed_shape shapes[200];
  REQUIRE(ema->count <= 200);
  sdw_seed_state_shapes(ema, shapes);
  sdw_seed_unet_args args;
  CHECK_OK(sdw_seed_infer_unet_args(shapes, ema->count, 2, "ckpt", &args));
  CHECK(args.in_ch == 4 && args.out_ch == 4 && args.ch == 32 && args.res_blks == 1 &&
        args.levels == 2 && args.ch_mults[0] == 1 && args.ch_mults[1] == 2 && !args.attn[0] &&
        args.attn[1] && args.heads == 2 && args.t_dim == 32 && args.ctx_dim == 64);
  char text[1024];
  int len = sdw_seed_unet_args_json(&args, text, sizeof text);
  REQUIRE(len > 0);
  sdw_unet_config parsed;
  CHECK_OK(sdw_unet_config_parse(text, (size_t)len, "inferred", &parsed));
  CHECK(memcmp(&parsed, &cfg, sizeof cfg) == 0);
  CHECK_OK(sdw_seed_match_unet(shapes, ema->count, &cfg, "ckpt"));
  sdw_unet_config other;
  CHECK_OK(sdw_unet_config_from_json(small_cfg, &other));
  CHECK(sdw_seed_match_unet(shapes, ema->count, &other, "ckpt") == SDW_ERR_FORMAT);
  CHECK(sdw_seed_infer_unet_args(shapes, 3, 8, "ckpt", &args) == SDW_ERR_FORMAT);

  CHECK_OK(sdw_unet_create(&a, ctx, &cfg));
  CHECK_OK(sdw_unet_create(&b, ctx, &cfg));
  CHECK_OK(sdw_seed_state_load(c, ema, &a.params, false));
  static const char *const prefixes[1] = {"ema.shadow."};
  sdw_weights_map map = {.prefixes = prefixes, .prefix_count = 1};
  CHECK_OK(sdw_unet_load_weights(&b, w, &map));
  for (int i = 0; i < a.params.count; i++)
    CHECK(a.params.items[i].loaded);
  /* the flat buffers already agree bit for bit */
  CHECK(a.params.total == b.params.total &&
        memcmp(a.params.flat, b.params.flat, a.params.total * sizeof(float)) == 0);

  const sdw_safetensors_entry *ex = sdw_safetensors_find(io, "x");
  const sdw_safetensors_entry *et = sdw_safetensors_find(io, "t");
  const sdw_safetensors_entry *ec = sdw_safetensors_find(io, "ctx");
  REQUIRE(ex && et && ec && et->dtype == SDW_I64);
  int64_t n = ex->shape[0], h = ex->shape[2], wd = ex->shape[3], s = ec->shape[1];
  float *x = malloc(ex->nbytes), *cx = malloc(ec->nbytes), tv[8];
  memcpy(x, ex->data, ex->nbytes);
  memcpy(cx, ec->data, ec->nbytes);
  for (int64_t i = 0; i < n && i < 8; i++) {
    int64_t ti;
    memcpy(&ti, (const char *)et->data + 8 * i, 8);
    tv[i] = (float)ti;
  }
  size_t no = (size_t)(n * 4 * h * wd);
  float *oa = malloc(no * sizeof *oa), *ob = malloc(no * sizeof *ob);
  sdw_tensor tx = sdw_tensor_4d(x, SDW_F32, n, 4, h, wd);
  sdw_tensor tt = sdw_tensor_1d(tv, SDW_F32, n);
  sdw_tensor tc = sdw_tensor_3d(cx, SDW_F32, n, s, 64);
  sdw_tensor toa = sdw_tensor_4d(oa, SDW_F32, n, 4, h, wd);
  sdw_tensor tob = sdw_tensor_4d(ob, SDW_F32, n, 4, h, wd);
  for (int with_ctx = 0; with_ctx < 2; with_ctx++) {
    memset(oa, 0, no * sizeof *oa);
    memset(ob, 0xff, no * sizeof *ob);
    CHECK_OK(sdw_unet_forward(&a, arena, &tx, &tt, with_ctx ? &tc : NULL, &toa));
    CHECK_OK(sdw_unet_forward(&b, arena, &tx, &tt, with_ctx ? &tc : NULL, &tob));
    CHECK_MSG(memcmp(oa, ob, no * sizeof *oa) == 0,
              "UNet output (%s context) from the .pt differs from the safetensors copy's",
              with_ctx ? "with" : "without");
  }
  free(x);
  free(cx);
  free(oa);
  free(ob);

  /* a configuration the checkpoint does not hold: refused before writing */
  sdw_unet small;
  CHECK_OK(sdw_unet_create(&small, ctx, &other));
  sdw_status st = sdw_seed_state_load(c, ema, &small.params, false);
  CHECK(st == SDW_ERR_FORMAT || st == SDW_ERR_NOT_FOUND);
  CHECK(message_has("checkpoint.pt") && message_has("ema_state_dict.shadow"));
  sdw_unet_free(&small);
done:
  sdw_unet_free(&a);
  sdw_unet_free(&b);
  sdw_safetensors_close(io);
  sdw_weights_close(w);
  sdw_seed_checkpoint_close(c);
  sdw_arena_destroy(arena);
  sdw_ctx_destroy(ctx);
}

/* --- hand-built checkpoints ---------------------------------------------------------- */

/* A one-element float tensor on storage key (each its own storage). */
static void scalar_tensor(pk *p, const char *key) {
  pk_tensor(p, "FloatStorage", key, 1, 0, 1, (int64_t[]){1}, (int64_t[]){1});
}

/* Writes a checkpoint whose pickle is p and which has storages "0".."n-1"
 * holding 1.0, 2.0, ...; returns its path (static buffer). */
static const char *write_ckpt(const pk *p, int n, const char *name) {
  static char path[600];
  snprintf(path, sizeof path, "%s/%s", sdw_test_tmpdir(), name);
  zentry e[16];
  char names[16][32];
  float vals[16];
  e[0] = (zentry){"ckpt/data.pkl", p->b, p->n, false};
  for (int i = 0; i < n && i < 14; i++) {
    vals[i] = (float)(i + 1);
    snprintf(names[i], sizeof names[i], "ckpt/data/%d", i);
    e[i + 1] = (zentry){names[i], &vals[i], 4, false};
  }
  size_t zn;
  unsigned char *zip = zip_build(e, n + 1, false, &zn);
  CHECK_OK(sdw_atomic_write(path, zip, zn));
  free(zip);
  return path;
}

static void check_names(const sdw_seed_state *s, const char *const *want, int count) {
  CHECK_MSG(s && s->count == count, "%d tensors, want %d", s ? s->count : -1, count);
  for (int i = 0; s && i < count && i < s->count; i++)
    CHECK_MSG(strcmp(s->items[i].name, want[i]) == 0, "name %d: '%s', want '%s'", i,
              s->items[i].name, want[i]);
}

SDW_TEST(seed_checkpoint_prefixes_and_layouts) {
  sdw_seed_checkpoint *c = NULL;
  const sdw_seed_state *s = NULL;
  /* DDP + torch.compile names in the model dict; old EMA keys
   * "unet._orig_mod.*" */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_str(&p, "unet_state_dict");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "module._orig_mod.a.weight");
    scalar_tensor(&p, "0");
    pk_str(&p, "module.b");
    scalar_tensor(&p, "1");
    pk_str(&p, "_fsdp_wrapped_module.c");
    scalar_tensor(&p, "2");
    pk_op(&p, 'u');
    pk_op(&p, 's');
    pk_str(&p, "ema_state_dict");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "shadow");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "unet._orig_mod.a.weight");
    scalar_tensor(&p, "3");
    pk_str(&p, "unet.b");
    scalar_tensor(&p, "4");
    pk_str(&p, "unet.module.c");
    scalar_tensor(&p, "5");
    pk_op(&p, 'u');
    pk_str(&p, "step_count");
    pk_int(&p, 7);
    pk_str(&p, "decay");
    pk_float(&p, 0.5);
    pk_op(&p, 'u');
    pk_op(&p, 's');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 6, "wrapped.pt"), &c));
    free(p.b);
    static const char *const want[3] = {"a.weight", "b", "c"};
    if (c) {
      CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_MODEL, &s));
      check_names(s, want, 3);
      CHECK(s && strcmp(s->items[0].key, "module._orig_mod.a.weight") == 0);
      CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &s));
      check_names(s, want, 3);
      float v = 0;
      if (s) CHECK_OK(sdw_seed_tensor_read_f32(c, &s->items[1], &v, 1));
      CHECK(v == 5.0f); /* storage 4 holds 5.0: the EMA's, not the model's */
      const sdw_seed_info *in = sdw_seed_checkpoint_info(c);
      CHECK(in->has_ema && in->ema_step_count == 7 && in->ema_decay == 0.5);
      CHECK(!in->has_epoch && !in->has_optimizer);
      const sdw_seed_state *m1, *m2;
      CHECK(sdw_seed_checkpoint_adam(c, &m1, &m2, NULL) == SDW_ERR_NOT_FOUND);
    }
    sdw_seed_checkpoint_close(c);
    c = NULL;
  }
  /* legacy whole-model dict: only the unet.* part, no EMA */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_str(&p, "model_state_dict");
    pk_global(&p, "collections", "OrderedDict");
    pk_op(&p, ')');
    pk_op(&p, 'R');
    pk_op(&p, '(');
    pk_str(&p, "vae.x");
    scalar_tensor(&p, "0");
    pk_str(&p, "module.unet.a");
    scalar_tensor(&p, "1");
    pk_str(&p, "text_encoder.y");
    scalar_tensor(&p, "2");
    pk_str(&p, "unet.b");
    scalar_tensor(&p, "3");
    pk_op(&p, 'u');
    /* OrderedDict state (a state_dict's _metadata) through BUILD */
    pk_op(&p, '}');
    pk_str(&p, "_metadata");
    pk_op(&p, '}');
    pk_op(&p, 's');
    pk_op(&p, 'b');
    pk_op(&p, 's');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 4, "legacy.pt"), &c));
    free(p.b);
    static const char *const want[2] = {"a", "b"};
    if (c) {
      CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &s));
      check_names(s, want, 2);
      CHECK(s && strcmp(s->source, "model_state_dict") == 0);
      CHECK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_EMA, &s) == SDW_ERR_NOT_FOUND);
      CHECK(message_has("no EMA weights") && message_has("'model_state_dict'") &&
            message_has("--no-ema"));
    }
    sdw_seed_checkpoint_close(c);
    c = NULL;
  }
  /* a bare state dict at the top */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "_fsdp_wrapped_module.a");
    scalar_tensor(&p, "0");
    pk_str(&p, "b");
    scalar_tensor(&p, "1");
    pk_op(&p, 'u');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 2, "bare.pt"), &c));
    free(p.b);
    static const char *const want[2] = {"a", "b"};
    if (c) {
      CHECK_OK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &s));
      check_names(s, want, 2);
    }
    sdw_seed_checkpoint_close(c);
    c = NULL;
  }
  /* two keys that are the same parameter */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_str(&p, "state_dict");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "module.a");
    scalar_tensor(&p, "0");
    pk_str(&p, "a");
    scalar_tensor(&p, "1");
    pk_op(&p, 'u');
    pk_op(&p, 's');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 2, "twice.pt"), &c));
    free(p.b);
    if (c) {
      CHECK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &s) == SDW_ERR_FORMAT);
      CHECK(message_has("'module.a' and 'a'"));
    }
    sdw_seed_checkpoint_close(c);
    c = NULL;
  }
  /* no weights at all; not a dict; a forbidden global */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_str(&p, "epoch");
    pk_int(&p, 3);
    pk_op(&p, 's');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 0, "empty.pt"), &c));
    free(p.b);
    if (c) {
      CHECK(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_AUTO, &s) == SDW_ERR_NOT_FOUND);
      CHECK(message_has("no model weights") && message_has("'epoch'"));
      CHECK(sdw_seed_checkpoint_info(c)->has_epoch && sdw_seed_checkpoint_info(c)->epoch == 3);
    }
    sdw_seed_checkpoint_close(c);
    c = NULL;
    pk q = {0};
    pk_proto(&q);
    pk_op(&q, ']');
    pk_op(&q, '.');
    CHECK(sdw_seed_checkpoint_open(write_ckpt(&q, 0, "list.pt"), &c) == SDW_ERR_FORMAT);
    CHECK(message_has("a list of 0, not a checkpoint dict"));
    free(q.b);
    pk r = {0};
    pk_proto(&r);
    pk_global(&r, "posix", "system");
    pk_str(&r, "true");
    pk_op(&r, 0x85);
    pk_op(&r, 'R');
    pk_op(&r, '.');
    const char *path = write_ckpt(&r, 0, "evil.pt");
    CHECK(sdw_seed_checkpoint_open(path, &c) == SDW_ERR_FORMAT && c == NULL);
    CHECK(message_has("refuses to load: the pickle asks for 'posix.system'"));
    free(r.b);
  }
  /* optimizer state that does not belong to the weights */
  {
    pk p = {0};
    pk_proto(&p);
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "unet_state_dict");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "a");
    scalar_tensor(&p, "0");
    pk_str(&p, "b");
    scalar_tensor(&p, "1");
    pk_op(&p, 'u');
    pk_str(&p, "optimizer_state_dict");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "state");
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_int(&p, 0);
    pk_op(&p, '}');
    pk_op(&p, '(');
    pk_str(&p, "exp_avg");
    scalar_tensor(&p, "2");
    pk_str(&p, "exp_avg_sq");
    scalar_tensor(&p, "3");
    pk_str(&p, "step");
    pk_float(&p, 4.0);
    pk_op(&p, 'u');
    pk_op(&p, 'u');
    pk_str(&p, "param_groups");
    pk_op(&p, ']');
    pk_op(&p, '}');
    pk_str(&p, "params");
    pk_op(&p, ']');
    pk_int(&p, 0);
    pk_op(&p, 'a');
    pk_op(&p, 's');
    pk_op(&p, 'a');
    pk_op(&p, 'u');
    pk_op(&p, 'u');
    pk_op(&p, '.');
    CHECK_OK(sdw_seed_checkpoint_open(write_ckpt(&p, 4, "adam.pt"), &c));
    free(p.b);
    if (c) {
      const sdw_seed_state *m1, *m2;
      CHECK(sdw_seed_checkpoint_adam(c, &m1, &m2, NULL) == SDW_ERR_FORMAT);
      CHECK(message_has("the optimizer has 1 parameters, unet_state_dict 2 tensors"));
    }
    sdw_seed_checkpoint_close(c);
  }
}
