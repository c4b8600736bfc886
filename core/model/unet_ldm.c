/* UNet weights in LDM single files: the CompVis key mapping, naming
 * detection, configuration and loading. Contracts in core/model/unet_ldm.h.
 *
 * The CompVis names follow diffusers' convert_ldm_unet_checkpoint (v0.25.1,
 * pipelines/stable_diffusion/convert_from_ckpt.py), read in reverse: our
 * native (diffusers) name -> the LDM key. */
#include "core/model/unet_ldm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/log.h"
#include "core/base/safetensors.h"
#include "core/model/seed_checkpoint.h"

enum { LDM_KEY_MAX = 512, LDM_PATH_MAX = 4096 };

const char *sdw_unet_ldm_naming_name(sdw_unet_ldm_naming naming) {
  switch (naming) {
  case SDW_UNET_LDM_COMPVIS: return "CompVis";
  case SDW_UNET_LDM_NATIVE: return "native";
  case SDW_UNET_LDM_EMA: return "CompVis EMA";
  default: return "?";
  }
}

/* --- the CompVis names ------------------------------------------------------------ */

static bool put(char *key, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool put(char *key, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(key, cap, fmt, ap);
  va_end(ap);
  return n >= 0 && (size_t)n < cap;
}

/* diffusers ResnetBlock2D -> openaimodel ResBlock (renew_resnet_paths). */
static const char *const resnet_names[][2] = {
    {"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},
    {"time_emb_proj.", "emb_layers.1."}, {"norm2.", "out_layers.0."},
    {"conv2.", "out_layers.3."},         {"conv_shortcut.", "skip_connection."},
};

static bool put_resnet(char *key, size_t cap, const char *head, const char *tail) {
  for (size_t i = 0; i < sizeof resnet_names / sizeof resnet_names[0]; i++) {
    size_t n = strlen(resnet_names[i][0]);
    if (strncmp(tail, resnet_names[i][0], n) == 0 && tail[n])
      return put(key, cap, "%s%s%s", head, resnet_names[i][1], tail + n);
  }
  return false;
}

/* "<name>.<rest>" with a nonempty rest: the rest, else NULL. */
static const char *after(const char *s, const char *name) {
  size_t n = strlen(name);
  return strncmp(s, name, n) == 0 && s[n] ? s + n : NULL;
}

/* Matches "<a>.<i>.<b>.<j>." at s (two indices), the rest in *rest. */
static bool match2(const char *s, const char *fmt, int *i, int *j, const char **rest) {
  int n = 0;
  if (sscanf(s, fmt, i, j, &n) != 2 || n <= 0 || !s[n]) return false;
  *rest = s + n;
  return true;
}

static bool match1(const char *s, const char *fmt, int *i, const char **rest) {
  int n = 0;
  if (sscanf(s, fmt, i, &n) != 1 || n <= 0 || !s[n]) return false;
  *rest = s + n;
  return true;
}

/* input_blocks index of down level `level`, entry j (j == layers: the
 * downsampler): conv_in is 0, then every resnet (+attention) and every
 * downsampler in execution order. */
static int input_index(const sdw_unet_config *c, int level, int j) {
  int n = 1;
  for (int l = 0; l < level; l++)
    n += c->layers[l] + 1;
  return n + j;
}

/* output_blocks index of up block i (level L-1-i), resnet j. */
static int output_index(const sdw_unet_config *c, int i, int j) {
  int n = 0;
  for (int k = 0; k < i; k++)
    n += c->layers[c->levels - 1 - k] + 1;
  return n + j;
}

bool sdw_unet_ldm_key(const sdw_unet_config *c, const char *native, char *key, size_t cap) {
  if (c->topology != SDW_UNET_SD15) return false;
  const int L = c->levels;
  const char *rest;
  int i, j;
  if ((rest = after(native, "conv_in."))) return put(key, cap, "input_blocks.0.0.%s", rest);
  if ((rest = after(native, "time_embedding.linear_1.")))
    return put(key, cap, "time_embed.0.%s", rest);
  if ((rest = after(native, "time_embedding.linear_2.")))
    return put(key, cap, "time_embed.2.%s", rest);
  if ((rest = after(native, "conv_norm_out."))) return put(key, cap, "out.0.%s", rest);
  if ((rest = after(native, "conv_out."))) return put(key, cap, "out.2.%s", rest);

  char head[96];
  if (match2(native, "down_blocks.%d.resnets.%d.%n", &i, &j, &rest)) {
    if (i < 0 || i >= L || j < 0 || j >= c->layers[i]) return false;
    snprintf(head, sizeof head, "input_blocks.%d.0.", input_index(c, i, j));
    return put_resnet(key, cap, head, rest);
  }
  if (match2(native, "down_blocks.%d.attentions.%d.%n", &i, &j, &rest)) {
    if (i < 0 || i >= L || j < 0 || j >= c->layers[i] || !c->attn_down[i]) return false;
    return put(key, cap, "input_blocks.%d.1.%s", input_index(c, i, j), rest);
  }
  if (match1(native, "down_blocks.%d.downsamplers.0.conv.%n", &i, &rest)) {
    if (i < 0 || i >= L - 1) return false;
    return put(key, cap, "input_blocks.%d.0.op.%s", input_index(c, i, c->layers[i]), rest);
  }
  if (match1(native, "mid_block.resnets.%d.%n", &i, &rest)) {
    if (i < 0 || i > 1) return false;
    /* middle_block: resnet, attention, resnet */
    snprintf(head, sizeof head, "middle_block.%d.", i == 0 ? 0 : c->mid_attention ? 2 : 1);
    return put_resnet(key, cap, head, rest);
  }
  if ((rest = after(native, "mid_block.attentions.0.")))
    return c->mid_attention && put(key, cap, "middle_block.1.%s", rest);
  if (match2(native, "up_blocks.%d.resnets.%d.%n", &i, &j, &rest)) {
    if (i < 0 || i >= L || j < 0 || j > c->layers[L - 1 - i]) return false;
    snprintf(head, sizeof head, "output_blocks.%d.0.", output_index(c, i, j));
    return put_resnet(key, cap, head, rest);
  }
  if (match2(native, "up_blocks.%d.attentions.%d.%n", &i, &j, &rest)) {
    if (i < 0 || i >= L || j < 0 || j > c->layers[L - 1 - i] || !c->attn_up[L - 1 - i])
      return false;
    return put(key, cap, "output_blocks.%d.1.%s", output_index(c, i, j), rest);
  }
  if (match1(native, "up_blocks.%d.upsamplers.0.conv.%n", &i, &rest)) {
    if (i < 0 || i >= L - 1) return false;
    /* on the block's last output block, after its resnet (and attention) */
    const int l = L - 1 - i;
    return put(key, cap, "output_blocks.%d.%d.conv.%s", output_index(c, i, c->layers[l]),
               c->attn_up[l] ? 2 : 1, rest);
  }
  return false;
}

bool sdw_unet_ldm_native(const sdw_unet *m, const char *compvis, char *native, size_t cap) {
  char key[LDM_KEY_MAX];
  for (int i = 0; i < m->params.count; i++) {
    const char *name = m->params.items[i].name;
    if (sdw_unet_ldm_key(&m->cfg, name, key, sizeof key) && strcmp(key, compvis) == 0)
      return put(native, cap, "%s", name);
  }
  return false;
}

/* --- weights maps -------------------------------------------------------------------- */

static bool map_compvis(void *user, const char *native, char *key, size_t cap) {
  return sdw_unet_ldm_key(user, native, key, cap);
}

/* "diffusion_model" + the CompVis name without its dots (diffusers:
 * "model_ema." + "".join(key.split(".")[1:])). */
static bool map_ema(void *user, const char *native, char *key, size_t cap) {
  char name[LDM_KEY_MAX];
  if (!sdw_unet_ldm_key(user, native, name, sizeof name)) return false;
  size_t n = 0;
  const char *lead = "diffusion_model";
  for (const char *p = lead; *p; p++)
    if (n + 1 < cap) key[n++] = *p;
  for (const char *p = name; *p; p++)
    if (*p != '.' && n + 1 < cap) key[n++] = *p;
  if (n + 1 >= cap) return false;
  key[n] = '\0';
  return true;
}

static const char *const ldm_prefix[1] = {SDW_UNET_LDM_PREFIX};
static const char *const ema_prefix[1] = {SDW_UNET_LDM_EMA_PREFIX};

void sdw_unet_ldm_weights_map(const sdw_unet *m, sdw_unet_ldm_naming naming, sdw_weights_map *out) {
  memset(out, 0, sizeof *out);
  out->prefixes = naming == SDW_UNET_LDM_EMA ? ema_prefix : ldm_prefix;
  out->prefix_count = 1;
  if (naming == SDW_UNET_LDM_NATIVE) return;
  out->map = naming == SDW_UNET_LDM_EMA ? map_ema : map_compvis;
  out->user = (void *)&m->cfg;
  /* diffusers squeezes 1x1-conv attention weights to linears
   * (assign_to_checkpoint); proj_in/out may be either kind */
  out->squeeze_ones = true;
}

/* --- detection --------------------------------------------------------------------------- */

static bool has_prefix(const sdw_weights *w, const char *prefix) {
  size_t n = strlen(prefix);
  for (int f = 0; f < sdw_weights_file_count(w); f++) {
    const sdw_safetensors *st = sdw_weights_file(w, f);
    for (size_t i = 0; i < sdw_safetensors_count(st); i++)
      if (strncmp(sdw_safetensors_at(st, i)->name, prefix, n) == 0) return true;
  }
  return false;
}

bool sdw_unet_ldm_is_ldm(const sdw_weights *w) { return has_prefix(w, SDW_UNET_LDM_PREFIX); }

static int count_found(const sdw_unet *m, const sdw_weights *w, sdw_unet_ldm_naming naming) {
  sdw_weights_map map;
  sdw_unet_ldm_weights_map(m, naming, &map);
  char key[LDM_KEY_MAX];
  int found = 0;
  for (int i = 0; i < m->params.count; i++)
    if (sdw_weights_key(&map, map.prefixes[0], m->params.items[i].name, key, sizeof key) &&
        sdw_weights_find(w, key, NULL))
      found++;
  return found;
}

sdw_unet_ldm_naming sdw_unet_ldm_detect(const sdw_unet *m, const sdw_weights *w, bool ema,
                                        int *found) {
  if (ema) {
    if (found) *found = count_found(m, w, SDW_UNET_LDM_EMA);
    return SDW_UNET_LDM_EMA;
  }
  /* ties (nothing found): the seed's only form, else the CompVis names,
   * which then appear in the "missing" message */
  sdw_unet_ldm_naming best =
      m->cfg.topology == SDW_UNET_SEED ? SDW_UNET_LDM_NATIVE : SDW_UNET_LDM_COMPVIS;
  int best_found = count_found(m, w, best);
  sdw_unet_ldm_naming other =
      best == SDW_UNET_LDM_NATIVE ? SDW_UNET_LDM_COMPVIS : SDW_UNET_LDM_NATIVE;
  int other_found = count_found(m, w, other);
  if (other_found > best_found) best = other, best_found = other_found;
  if (found) *found = best_found;
  return best;
}

static sdw_status no_ema(const sdw_weights *w) {
  return sdw_fail(SDW_ERR_NOT_FOUND,
                  "%s: holds no EMA copy of the UNet (model_ema.diffusion_model*); its UNet "
                  "is model.diffusion_model.* (do not ask for the EMA weights)",
                  sdw_weights_name(w));
}

sdw_status sdw_unet_load_ldm(sdw_unet *m, const sdw_weights *w, bool ema) {
  int found = 0;
  sdw_unet_ldm_naming naming = sdw_unet_ldm_detect(m, w, ema, &found);
  if (ema && found == 0) return no_ema(w);
  sdw_weights_map map;
  sdw_unet_ldm_weights_map(m, naming, &map);
  return sdw_unet_load_weights(m, w, &map);
}

/* --- configuration ------------------------------------------------------------------------ */

static bool is_file(const char *path) {
  struct stat s;
  return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

/* <folder of path>/unet/config.json into buf; false when it does not fit. */
static bool sibling_config(const char *path, char *buf, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash) return put(buf, size, "unet/config.json");
  return put(buf, size, "%.*s/unet/config.json", (int)(slash - path), path);
}

/* A seed UNet written by `sdw convert --format ldm`: its own names. */
static bool seed_names(const sdw_weights *w) {
  return has_prefix(w, SDW_UNET_LDM_PREFIX "downs.") || has_prefix(w, SDW_UNET_LDM_PREFIX "t_emb.");
}

/* The seed's constructor arguments read off the UNet's tensors (heads: the
 * seed's 8; they are not in the weights). */
static sdw_status infer_seed(const sdw_weights *w, const char *path, sdw_unet_config *out) {
  const size_t plen = strlen(SDW_UNET_LDM_PREFIX);
  size_t total = 0;
  for (int f = 0; f < sdw_weights_file_count(w); f++)
    total += sdw_safetensors_count(sdw_weights_file(w, f));
  sdw_seed_shape *shapes = malloc((total ? total : 1) * sizeof *shapes);
  if (!shapes) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  int count = 0;
  for (int f = 0; f < sdw_weights_file_count(w); f++) {
    const sdw_safetensors *st = sdw_weights_file(w, f);
    for (size_t i = 0; i < sdw_safetensors_count(st); i++) {
      const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
      if (strncmp(e->name, SDW_UNET_LDM_PREFIX, plen) == 0)
        shapes[count++] = (sdw_seed_shape){e->name + plen, e->ndim, e->shape};
    }
  }
  sdw_seed_unet_args args;
  char json[2048];
  sdw_status st = sdw_seed_infer_unet_args(shapes, count, 8, path, &args);
  free(shapes);
  if (st != SDW_OK) return st;
  int n = sdw_seed_unet_args_json(&args, json, sizeof json);
  if (n < 0) return sdw_fail(SDW_ERR_INTERNAL, "%s: UNet config too long", path);
  return sdw_unet_config_parse(json, (size_t)n, path, out);
}

typedef enum config_source { FROM_JSON, FROM_SHAPES, FROM_PRESET } config_source;

static sdw_status find_config(const sdw_weights *w, const char *path, const char *config_path,
                              sdw_unet_config *out, char *source_buf, size_t source_cap,
                              config_source *from) {
  char sibling[LDM_PATH_MAX];
  if (!config_path) config_path = sdw_weights_config_path(w);
  if (!config_path && sibling_config(path, sibling, sizeof sibling) && is_file(sibling))
    config_path = sibling;
  if (config_path) {
    *from = FROM_JSON;
    if (source_buf) put(source_buf, source_cap, "%s", config_path);
    return sdw_unet_config_from_json(config_path, out);
  }
  if (seed_names(w)) {
    *from = FROM_SHAPES;
    if (source_buf) put(source_buf, source_cap, "read off the weights with the seed's 8 heads");
    return infer_seed(w, path, out);
  }
  *from = FROM_PRESET;
  if (source_buf) put(source_buf, source_cap, "the sd15 preset: Stable Diffusion 1.x's");
  return sdw_unet_preset("sd15", out);
}

sdw_status sdw_unet_ldm_config(const sdw_weights *w, const char *path, const char *config_path,
                               sdw_unet_config *out, char *source_buf, size_t source_cap) {
  config_source from;
  return find_config(w, path, config_path, out, source_buf, source_cap, &from);
}

/* --- opening -------------------------------------------------------------------------------- */

static void entry_shape(const sdw_safetensors_entry *e, char *buf, size_t size) {
  sdw_tensor t = sdw_tensor_make(NULL, SDW_F32, 0, NULL);
  if (e->ndim > SDW_MAX_DIMS) {
    snprintf(buf, size, "(%d dims)", e->ndim);
    return;
  }
  t.ndim = e->ndim;
  for (int d = 0; d < e->ndim; d++)
    t.shape[d] = e->shape[d];
  sdw_shape_str(&t, buf, size);
}

/* The shapes equal once dims of size 1 are dropped (what the load accepts
 * with squeeze_ones; for native names it insists on equality). */
static bool shape_fits(const sdw_safetensors_entry *e, const sdw_tensor *t, bool squeeze) {
  int i = 0, j = 0;
  if (!squeeze) {
    if (e->ndim != t->ndim) return false;
    for (int d = 0; d < e->ndim; d++)
      if (e->shape[d] != t->shape[d]) return false;
    return true;
  }
  for (;;) {
    while (i < e->ndim && e->shape[i] == 1)
      i++;
    while (j < t->ndim && t->shape[j] == 1)
      j++;
    if (i == e->ndim || j == t->ndim) return i == e->ndim && j == t->ndim;
    if (e->shape[i++] != t->shape[j++]) return false;
  }
}

/* The planned model's names and shapes against the file, before anything is
 * allocated (the sd15 preset is 3.4 GB of f32). */
static sdw_status precheck(const sdw_unet *plan, const sdw_weights *w, bool ema,
                           const char *source) {
  int found = 0;
  sdw_unet_ldm_naming naming = sdw_unet_ldm_detect(plan, w, ema, &found);
  if (ema && found == 0) return no_ema(w);
  sdw_weights_map map;
  sdw_unet_ldm_weights_map(plan, naming, &map);
  char key[LDM_KEY_MAX], first_missing[LDM_KEY_MAX] = "";
  int missing = 0;
  for (int i = 0; i < plan->params.count; i++) {
    const sdw_tensor *t = &plan->params.items[i].value;
    const sdw_safetensors *file = NULL;
    const sdw_safetensors_entry *e =
        sdw_weights_key(&map, map.prefixes[0], plan->params.items[i].name, key, sizeof key)
            ? sdw_weights_find(w, key, &file)
            : NULL;
    if (!e) {
      if (missing++ == 0) snprintf(first_missing, sizeof first_missing, "%s", key);
      continue;
    }
    if (!shape_fits(e, t, map.squeeze_ones)) {
      char have[96], want[96];
      entry_shape(e, have, sizeof have);
      sdw_shape_str(t, want, sizeof want);
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: tensor '%s' has shape %s, but the UNet configuration (%s) expects %s; "
                      "give the file's own configuration as unet/config.json beside it",
                      sdw_safetensors_name(file), e->name, have, source, want);
    }
  }
  /* nothing found at all is the load's "different model" message; a
   * partial match means the configuration has blocks the file lacks */
  if (missing && found > 0) {
    char more[48] = "";
    if (missing > 1) snprintf(more, sizeof more, " and %d more", missing - 1);
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: tensor '%s'%s of the %d tensors the UNet configuration (%s) needs %s "
                    "missing; the file is incomplete or holds a UNet of another configuration "
                    "(give its configuration as unet/config.json beside the file)",
                    sdw_weights_name(w), first_missing, more, plan->params.count, source,
                    missing > 1 ? "are" : "is");
  }
  return SDW_OK;
}

sdw_status sdw_unet_open_ldm(sdw_unet *m, sdw_ctx *ctx, const char *path, const char *config_path,
                             bool ema) {
  memset(m, 0, sizeof *m);
  sdw_weights *w = NULL;
  SDW_TRY(sdw_weights_open(path, "unet", &w));
  sdw_unet_config cfg;
  char source[LDM_PATH_MAX + 64] = "";
  config_source from;
  sdw_status st = find_config(w, path, config_path, &cfg, source, sizeof source, &from);
  if (st == SDW_OK) {
    sdw_unet plan;
    st = sdw_unet_plan(&plan, &cfg);
    if (st == SDW_OK) {
      st = precheck(&plan, w, ema, source);
      if (st == SDW_OK && from == FROM_SHAPES)
        SDW_WARN("%s: no unet/config.json beside it; the seed UNet's shape is %s", path, source);
      else if (st == SDW_OK)
        SDW_INFO("%s: LDM single file, %s UNet names, configuration: %s", path,
                 sdw_unet_ldm_naming_name(sdw_unet_ldm_detect(&plan, w, ema, NULL)), source);
      sdw_unet_free(&plan);
    }
  }
  if (st == SDW_OK) st = sdw_unet_create(m, ctx, &cfg);
  if (st == SDW_OK) {
    st = sdw_unet_load_ldm(m, w, ema);
    if (st != SDW_OK) sdw_unet_free(m);
  }
  sdw_weights_close(w);
  return st;
}
