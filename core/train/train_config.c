#include "core/train/train_config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/diffusion/schedule.h"
#include "core/train/lr_schedule.h"
#include "core/train/unet_init.h"

typedef enum key_type { K_INT, K_I64, K_U64, K_DBL, K_BOOL, K_STR } key_type;

typedef struct key_def {
  const char *name;
  key_type type;
  size_t offset, size; /* size: K_STR capacity */
  double lo, hi;       /* numeric range */
  const char *def;     /* default as text */
  const char *help;
} key_def;

#define OFF(f) offsetof(sdw_train_config, f)
#define SZ(f)  sizeof(((sdw_train_config *)0)->f)
#define I(f, lo, hi, d, h)                                                                         \
  { #f, K_INT, OFF(f), 0, lo, hi, d, h }
#define L(f, lo, hi, d, h)                                                                         \
  { #f, K_I64, OFF(f), 0, lo, hi, d, h }
#define U(f, d, h)                                                                                 \
  { #f, K_U64, OFF(f), 0, 0, 0, d, h }
#define D(f, lo, hi, d, h)                                                                         \
  { #f, K_DBL, OFF(f), 0, lo, hi, d, h }
#define B(f, d, h)                                                                                 \
  { #f, K_BOOL, OFF(f), 0, 0, 0, d, h }
#define S(f, d, h)                                                                                 \
  { #f, K_STR, OFF(f), SZ(f), 0, 0, d, h }

static const key_def keys[] = {
    S(model, "seed", "UNet: a preset (seed, seed-tiny), custom (unet_* keys) or a config.json"),
    I(unet_ch, 1, 4096, "320", "model = custom: base channels (also the time width t_dim)"),
    S(unet_ch_mults, "1,2,4,4", "model = custom: channel multipliers per level"),
    S(unet_attn_lvls, "1,2,3", "model = custom: levels with attention"),
    I(unet_res_blks, 1, 16, "2", "model = custom: ResBlocks per level"),
    I(unet_heads, 1, 256, "8", "model = custom: attention heads"),
    I(unet_t_dim, 0, 8192, "0", "model = custom: time embedding width (0: unet_ch)"),
    I(unet_ctx_dim, 1, 8192, "768", "model = custom: context width (the text encoder's)"),
    S(init, "", "UNet weights to start from (empty: random init as the seed's)"),
    S(unet_zero_init, "seed", "random init's zero modules: seed (its list) or ldm (CompVis LDM's)"),
    S(train_data, "", "latent store of the training split (required)"),
    S(val_data, "", "latent store for the validation loss (empty: none)"),
    S(text_encoder, "", "CLIP text encoder folder, or none to use the store's contexts"),
    S(vae, "",
      "VAE for validation grids and samples, or pixels for a pixel-space model (empty: no "
      "images)"),
    S(vocab, "", "BPE vocabulary for samples (empty: the one shipped with sdw)"),
    I(batch_size, 1, 65536, "24", "samples per micro-batch per rank"),
    I(grad_accum, 1, 65536, "2", "micro-batches per optimizer step"),
    I(epochs, 1, 1000000, "10", "epochs"),
    L(max_steps, 0, 1e15, "0", "stop after this many optimizer steps (0: the epochs decide)"),
    D(lr, 0, 1e3, "1e-05", "peak learning rate"),
    D(weight_decay, 0, 1e3, "0.01", "AdamW decoupled weight decay"),
    L(warmup, 0, 1e15, "500", "warmup steps (capped at a tenth of the run)"),
    B(min_snr, "true", "Min-SNR loss weighting"),
    D(min_snr_gamma, 1e-9, 1e9, "5", "Min-SNR gamma"),
    D(cfg_dropout, 0, 1, "0.05", "probability of the empty prompt per sample"),
    D(noise_offset, 0, 1e3, "0", "per-channel offset noise strength"),
    S(prediction_type, "epsilon",
      "what the UNet predicts: epsilon (the seed), v_prediction or sample"),
    B(grad_ckpt, "true", "gradient checkpointing per ResBlock"),
    I(save_every, 0, 1000000, "1", "epochs between epoch checkpoints (0: only the last)"),
    L(save_steps, 0, 1e15, "0", "optimizer steps between step checkpoints (0: off)"),
    I(val_every, 0, 1000000, "1", "epochs between validations (0: off)"),
    D(beta1, 0, 0.999999, "0.9", "AdamW beta1"),
    D(beta2, 0, 0.999999999, "0.999", "AdamW beta2"),
    D(adam_eps, 1e-30, 1, "1e-08", "AdamW epsilon"),
    D(max_grad_norm, 0, 1e9, "1", "global gradient L2 clip (0: off)"),
    B(decay_norms_and_biases, "true", "weight decay also on norms and biases (the seed)"),
    B(ema, "true", "keep an EMA of the weights"),
    D(ema_decay, 0, 1, "0.9999", "EMA decay cap"),
    S(lr_after_end, "hold", "LR past the end of the cosine: hold or periodic (the seed)"),
    U(seed, "42", "seed of initialisation, data order and noise"),
    I(keep_last, 1, 1000000, "3", "newest checkpoints kept"),
    L(keep_every, 0, 1e15, "0", "also keep checkpoints at multiples of this step (0: off)"),
    I(log_every, 1, 1000000, "10", "optimizer steps between metrics lines"),
    I(max_nonfinite, 1, 1000000, "5", "non-finite steps in a row that stop the run"),
    I(val_steps, 1, 1000, "25", "DDIM steps of validation grids"),
    S(val_prompts, "", "validation grid prompts separated by | (empty: the seed's four)"),
    D(val_cfg, 0, 1000, "7.5", "CFG scale of validation grids"),
    U(val_seed, "42", "seed of validation grids"),
    I(sample_steps, 1, 1000, "25", "default DDIM steps of requested samples"),
    D(sample_cfg, 0, 1000, "7.5", "default CFG scale of requested samples"),
    I(threads, 0, 4096, "0", "CPU threads (0: OMP_NUM_THREADS or all cores)"),
    S(allreduce, "auto", "data-parallel engine: auto, single, mpi or tcp"),
    I(local_ranks, 1, 1024, "1",
      "processes on this machine training data-parallel over TCP on loopback"),
    I(arena_gb, 1, 1 << 20, "64", "activation arena reservation in GiB (address space)"),
    L(val_batches, 0, 1e15, "0", "micro-batches of the validation loss (0: all)"),
};

enum { KEY_COUNT = (int)(sizeof keys / sizeof keys[0]) };

bool sdw_train_config_key(int i, const char **name, const char **help, const char **def) {
  if (i < 0 || i >= KEY_COUNT) return false;
  *name = keys[i].name;
  *help = keys[i].help;
  *def = keys[i].def;
  return true;
}

static const key_def *find_key(const char *name) {
  for (int i = 0; i < KEY_COUNT; i++)
    if (strcmp(keys[i].name, name) == 0) return &keys[i];
  return NULL;
}

static bool parse_bool(const char *v, bool *out) {
  static const char *const yes[] = {"true", "on", "yes", "1"}, *const no[] = {"false", "off", "no",
                                                                              "0"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = true, true;
    if (strcasecmp(v, no[i]) == 0) return *out = false, true;
  }
  return false;
}

sdw_status sdw_train_config_set(sdw_train_config *c, const char *key, const char *value,
                                const char *where) {
  const key_def *k = find_key(key);
  if (!k)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: unknown key '%s' (see sdw.conf(5))", where, key);
  char *p = (char *)c + k->offset;
  int64_t i;
  double d;
  switch (k->type) {
  case K_INT:
    if (!sdw_parse_i64(value, (int64_t)k->lo, (int64_t)k->hi, &i))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes an integer in [%.0f, %.0f], not '%s'",
                      where, key, k->lo, k->hi, value);
    *(int *)p = (int)i;
    return SDW_OK;
  case K_I64:
    if (!sdw_parse_i64(value, (int64_t)k->lo, (int64_t)k->hi, &i))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes an integer >= %.0f, not '%s'", where,
                      key, k->lo, value);
    *(int64_t *)p = i;
    return SDW_OK;
  case K_U64: {
    char *end = NULL;
    if (!value[0] || value[0] == '-' || !isdigit((unsigned char)value[0]))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes a non-negative integer, not '%s'",
                      where, key, value);
    unsigned long long u = strtoull(value, &end, 10);
    if (*end)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes a non-negative integer, not '%s'",
                      where, key, value);
    *(uint64_t *)p = u;
    return SDW_OK;
  }
  case K_DBL:
    if (!sdw_parse_double(value, k->lo, k->hi, &d))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes a number in [%g, %g], not '%s'",
                      where, key, k->lo, k->hi, value);
    *(double *)p = d;
    return SDW_OK;
  case K_BOOL:
    if (!parse_bool(value, (bool *)p))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s takes true or false, not '%s'", where, key,
                      value);
    return SDW_OK;
  case K_STR:
    if (strlen(value) >= k->size)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: %s is longer than %zu bytes", where, key,
                      k->size - 1);
    memcpy(p, value, strlen(value) + 1);
    return SDW_OK;
  }
  return SDW_ERR_INTERNAL;
}

void sdw_train_config_defaults(sdw_train_config *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < KEY_COUNT; i++) {
    sdw_status st = sdw_train_config_set(c, keys[i].name, keys[i].def, "default");
    SDW_ASSERT(st == SDW_OK);
  }
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

sdw_status sdw_train_config_parse(sdw_train_config *c, const char *text, size_t size,
                                  const char *name) {
  char *copy = malloc(size + 1);
  if (!copy) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  memcpy(copy, text, size);
  copy[size] = '\0';
  bool seen[KEY_COUNT] = {0};
  sdw_status st = SDW_OK;
  int line = 0;
  for (char *s = copy, *next; s && st == SDW_OK; s = next) {
    line++;
    next = strchr(s, '\n');
    if (next) *next++ = '\0';
    char where[SDW_TRAIN_PATH_MAX + 32];
    snprintf(where, sizeof where, "%s:%d", name, line);
    char *t = trim(s);
    if (!*t || *t == '#' || *t == ';') continue;
    if (*t == '[') {
      if (t[strlen(t) - 1] != ']')
        st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: a section header must end with ']'", where);
      continue;
    }
    char *eq = strchr(t, '=');
    if (!eq) {
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: expected 'key = value', found '%s'", where, t);
      break;
    }
    *eq = '\0';
    char *key = trim(t), *value = trim(eq + 1);
    /* an inline comment after whitespace */
    for (char *h = value; *h; h++)
      if ((*h == '#' || *h == ';') && h > value && (h[-1] == ' ' || h[-1] == '\t')) {
        *h = '\0';
        value = trim(value);
        break;
      }
    const key_def *k = find_key(key);
    if (k && seen[k - keys]) {
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: key '%s' given twice", where, key);
      break;
    }
    st = sdw_train_config_set(c, key, value, where);
    if (k) seen[k - keys] = true;
  }
  free(copy);
  return st;
}

sdw_status sdw_train_config_load(sdw_train_config *c, const char *path) {
  void *data;
  size_t size;
  sdw_status st = sdw_read_file(path, &data, &size);
  if (st != SDW_OK) return st;
  st = sdw_train_config_parse(c, data, size, path);
  free(data);
  return st;
}

/* The seed's validation prompts (SEED.md 2.7). */
static const char *const seed_val_prompts[4] = {
    "epic mountain landscape at golden hour, photorealistic, detailed, 8k",
    "portrait of a young woman, soft lighting, detailed face, photorealistic",
    "cyberpunk city street at night, neon lights, rain reflections, cinematic",
    "beautiful flower meadow, sunlight, sharp focus, nature photography"};

bool sdw_train_config_pixels(const sdw_train_config *c) { return strcmp(c->vae, "pixels") == 0; }

sdw_status sdw_train_config_val_prompts(const sdw_train_config *c, char *buf, size_t size,
                                        const char **prompts, int *count) {
  *count = 0;
  if (!c->val_prompts[0]) {
    for (int i = 0; i < 4; i++)
      prompts[i] = seed_val_prompts[i];
    *count = 4;
    return SDW_OK;
  }
  const size_t n = strlen(c->val_prompts);
  if (n + 1 > size)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "val_prompts: longer than %zu bytes", size - 1);
  memcpy(buf, c->val_prompts, n + 1);
  for (char *s = buf, *next; s; s = next) {
    next = strchr(s, '|');
    if (next) *next++ = '\0';
    char *p = trim(s);
    if (!*p)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "val_prompts: prompt %d is empty (prompts are separated by '|')", *count + 1);
    if (*count == SDW_TRAIN_VAL_PROMPTS_MAX)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "val_prompts: more than %d prompts",
                      SDW_TRAIN_VAL_PROMPTS_MAX);
    prompts[(*count)++] = p;
  }
  return SDW_OK;
}

sdw_status sdw_train_config_validate(const sdw_train_config *c) {
  if (!c->train_data[0])
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "train_data is required: the latent store written by `sdw pipeline encode`");
  sdw_zero_init zi;
  if (!sdw_zero_init_from_name(c->unet_zero_init, &zi))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "unet_zero_init must be seed or ldm, not '%s'",
                    c->unet_zero_init);
  sdw_prediction_type pt;
  if (!sdw_prediction_type_from_name(c->prediction_type, &pt))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "prediction_type must be epsilon, v_prediction or sample, not '%s'",
                    c->prediction_type);
  sdw_lr_after_end ae;
  if (!sdw_lr_after_end_from_name(c->lr_after_end, &ae))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "lr_after_end must be hold or periodic, not '%s'",
                    c->lr_after_end);
  if (strcmp(c->allreduce, "auto") && strcmp(c->allreduce, "single") &&
      strcmp(c->allreduce, "mpi") && strcmp(c->allreduce, "tcp"))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "allreduce must be auto, single, mpi or tcp, not '%s'", c->allreduce);
  if (c->local_ranks > 1 && strcmp(c->allreduce, "auto") && strcmp(c->allreduce, "tcp"))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "local_ranks = %d trains over the TCP engine: allreduce must be auto or tcp, "
                    "not '%s'",
                    c->local_ranks, c->allreduce);
  if (!(c->lr > 0)) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "lr must be positive");
  if (!c->text_encoder[0])
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "text_encoder is required: a CLIP text encoder folder, or none to train on "
                    "the contexts stored in the latent store");
  char buf[SDW_TRAIN_VAL_PROMPTS_BYTES];
  const char *prompts[SDW_TRAIN_VAL_PROMPTS_MAX];
  int count;
  SDW_TRY(sdw_train_config_val_prompts(c, buf, sizeof buf, prompts, &count));
  return SDW_OK;
}

char *sdw_train_config_format(const sdw_train_config *c) {
  size_t cap = 16384, len = 0;
  char *out = malloc(cap);
  if (!out) return NULL;
  len += (size_t)snprintf(out, cap, "# sdw train: the configuration as resolved\n");
  for (int i = 0; i < KEY_COUNT; i++) {
    const key_def *k = &keys[i];
    const char *p = (const char *)c + k->offset;
    char val[SDW_TRAIN_PATH_MAX + 64];
    switch (k->type) {
    case K_INT: snprintf(val, sizeof val, "%d", *(const int *)p); break;
    case K_I64: snprintf(val, sizeof val, "%lld", (long long)*(const int64_t *)p); break;
    case K_U64: snprintf(val, sizeof val, "%llu", (unsigned long long)*(const uint64_t *)p); break;
    case K_DBL: /* the shortest text that reads back to the same double */
      for (int prec = 1; prec <= 17; prec++) {
        snprintf(val, sizeof val, "%.*g", prec, *(const double *)p);
        if (strtod(val, NULL) == *(const double *)p) break;
      }
      break;
    case K_BOOL: snprintf(val, sizeof val, "%s", *(const bool *)p ? "true" : "false"); break;
    case K_STR: snprintf(val, sizeof val, "%s", p); break;
    }
    size_t need = strlen(k->name) + strlen(val) + 8;
    if (len + need >= cap) {
      cap = 2 * cap + need;
      char *n = realloc(out, cap);
      if (!n) {
        free(out);
        return NULL;
      }
      out = n;
    }
    len += (size_t)snprintf(out + len, cap - len, "%s = %s\n", k->name, val);
  }
  return out;
}

/* "1,2,4" -> ints; false when malformed. */
static bool parse_list(const char *s, int *out, int cap, int *n, int lo, int hi) {
  *n = 0;
  if (!*s) return true;
  const char *p = s;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < lo || v > hi || *n >= cap) return false;
    out[(*n)++] = (int)v;
    p = end;
    while (*p == ' ')
      p++;
    if (*p == ',')
      p++;
    else if (*p)
      return false;
    while (*p == ' ')
      p++;
  }
  return true;
}

sdw_status sdw_train_config_unet(const sdw_train_config *c, sdw_unet_config *out, char **json) {
  *json = NULL;
  size_t n = strlen(c->model);
  const bool is_json = n > 5 && strcmp(c->model + n - 5, ".json") == 0;
  if (is_json) {
    SDW_TRY(sdw_unet_config_from_json(c->model, out));
    void *text;
    size_t size;
    SDW_TRY(sdw_read_file(c->model, &text, &size));
    *json = text;
    return SDW_OK;
  }
  int ch, res, heads, tdim, ctx, mults[SDW_UNET_MAX_LEVELS], lv[SDW_UNET_MAX_LEVELS], nm, nl;
  if (strcmp(c->model, "custom") == 0) {
    if (!parse_list(c->unet_ch_mults, mults, SDW_UNET_MAX_LEVELS, &nm, 1, 64) || nm < 1)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "unet_ch_mults must be a comma list of 1..%d multipliers, not '%s'",
                      SDW_UNET_MAX_LEVELS, c->unet_ch_mults);
    if (!parse_list(c->unet_attn_lvls, lv, SDW_UNET_MAX_LEVELS, &nl, 0, nm - 1))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "unet_attn_lvls must be a comma list of levels below %d, not '%s'", nm,
                      c->unet_attn_lvls);
    ch = c->unet_ch;
    res = c->unet_res_blks;
    heads = c->unet_heads;
    tdim = c->unet_t_dim ? c->unet_t_dim : c->unet_ch;
    ctx = c->unet_ctx_dim;
  } else {
    sdw_unet_config p;
    if (sdw_unet_preset(c->model, &p) != SDW_OK)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "model: '%s' is not a preset (seed, seed-tiny), custom or a config.json",
                      c->model);
    if (p.topology != SDW_UNET_SEED) {
      *out = p;
      char buf[128];
      snprintf(buf, sizeof buf, "{\"_sdw_preset\": \"%s\"}\n", c->model);
      *json = strdup(buf);
      return SDW_OK;
    }
    ch = p.seed_ch;
    res = p.layers[0];
    heads = p.heads[0];
    tdim = p.time_in_dim;
    ctx = p.context_dim;
    nm = p.levels;
    nl = 0;
    for (int l = 0; l < p.levels; l++) {
      mults[l] = p.seed_ch_mults[l];
      if (p.attn_down[l]) lv[nl++] = l;
    }
  }
  /* the seed's UNetModel kwargs, parsed back by the one config reader */
  char text[1024], ml[128] = "", al[128] = "";
  for (int i = 0; i < nm; i++)
    snprintf(ml + strlen(ml), sizeof ml - strlen(ml), "%s%d", i ? ", " : "", mults[i]);
  for (int i = 0; i < nl; i++)
    snprintf(al + strlen(al), sizeof al - strlen(al), "%s%d", i ? ", " : "", lv[i]);
  snprintf(text, sizeof text,
           "{\n  \"_class_name\": \"SeedUNetModel\",\n  \"in_ch\": 4,\n  \"out_ch\": 4,\n"
           "  \"ch\": %d,\n  \"res_blks\": %d,\n  \"attn_lvls\": [%s],\n  \"ch_mults\": [%s],\n"
           "  \"heads\": %d,\n  \"t_dim\": %d,\n  \"ctx_dim\": %d,\n  \"grad_ckpt\": %s\n}\n",
           ch, res, al, ml, heads, tdim, ctx, c->grad_ckpt ? "true" : "false");
  sdw_status st = sdw_unet_config_parse(text, strlen(text), "model", out);
  if (st == SDW_OK) st = sdw_unet_config_validate(out);
  if (st != SDW_OK) return st;
  *json = strdup(text);
  if (!*json) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  return SDW_OK;
}
