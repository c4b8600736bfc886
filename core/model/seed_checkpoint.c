#include "core/model/seed_checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/tensor.h"

struct sdw_seed_checkpoint {
  sdw_pt *pt;
  sdw_seed_info info;
  sdw_seed_state ema, model, exp_avg, exp_avg_sq;
  bool ema_done, model_done, adam_done;
  double adam_step;
};

static const char *const strip_prefixes[] = {"module.", "_orig_mod.", "_fsdp_wrapped_module."};
enum { STRIP_COUNT = sizeof strip_prefixes / sizeof strip_prefixes[0] };

static const char *strip_wrappers(const char *k) {
  for (bool again = true; again;) {
    again = false;
    for (int i = 0; i < STRIP_COUNT; i++) {
      size_t n = strlen(strip_prefixes[i]);
      if (strncmp(k, strip_prefixes[i], n) == 0) k += n, again = true;
    }
  }
  return k;
}

static void state_free(sdw_seed_state *s) {
  for (int i = 0; i < s->count; i++)
    free((void *)s->items[i].name);
  free(s->items);
  free(s->sorted);
  memset(s, 0, sizeof *s);
}

void sdw_seed_checkpoint_close(sdw_seed_checkpoint *c) {
  if (!c) return;
  state_free(&c->ema);
  state_free(&c->model);
  state_free(&c->exp_avg);
  state_free(&c->exp_avg_sq);
  sdw_pt_close(c->pt);
  free(c);
}

const char *sdw_seed_checkpoint_name(const sdw_seed_checkpoint *c) { return sdw_pt_name(c->pt); }
sdw_pt *sdw_seed_checkpoint_pt(sdw_seed_checkpoint *c) { return c->pt; }
const sdw_seed_info *sdw_seed_checkpoint_info(const sdw_seed_checkpoint *c) { return &c->info; }

/* --- state dicts ---------------------------------------------------------------- */

typedef struct named {
  const char *name;
  size_t index;
} named;

static int cmp_named(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Sorts the index and refuses two equal names. */
static sdw_status state_index(const sdw_seed_checkpoint *c, sdw_seed_state *s) {
  size_t n = (size_t)s->count;
  s->sorted = malloc((n ? n : 1) * sizeof *s->sorted);
  named *tmp = malloc((n ? n : 1) * sizeof *tmp);
  if (!s->sorted || !tmp) {
    free(tmp);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < n; i++)
    tmp[i] = (named){s->items[i].name, i};
  qsort(tmp, n, sizeof *tmp, cmp_named);
  for (size_t i = 0; i < n; i++)
    s->sorted[i] = tmp[i].index;
  free(tmp);
  for (int i = 1; i < s->count; i++) {
    const sdw_seed_tensor *a = &s->items[s->sorted[i - 1]], *b = &s->items[s->sorted[i]];
    if (strcmp(a->name, b->name) == 0)
      return sdw_fail(
          SDW_ERR_FORMAT,
          "%s: %s has both '%.200s' and '%.200s', which are the same parameter '%.200s' "
          "once wrapper prefixes are stripped",
          sdw_pt_name(c->pt), s->source, a->key, b->key, a->name);
  }
  return SDW_OK;
}

const sdw_seed_tensor *sdw_seed_state_find(const sdw_seed_state *s, const char *name) {
  size_t lo = 0, hi = (size_t)s->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int r = strcmp(s->items[s->sorted[mid]].name, name);
    if (r == 0) return &s->items[s->sorted[mid]];
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* Builds s from dict d: tensors only, wrapper prefixes stripped, and when
 * some key is "unet.*", only those, without it. */
static sdw_status state_build(const sdw_seed_checkpoint *c, const sdw_pt_value *d,
                              const char *source, sdw_seed_state *s) {
  memset(s, 0, sizeof *s);
  s->source = source;
  size_t n = d->u.dict.count;
  bool unet = false;
  for (size_t i = 0; i < n; i++) {
    const char *k = sdw_pt_as_str(d->u.dict.keys[i]);
    if (k && sdw_pt_as_tensor(d->u.dict.values[i]) && strncmp(strip_wrappers(k), "unet.", 5) == 0)
      unet = true;
  }
  s->items = calloc(n ? n : 1, sizeof *s->items);
  if (!s->items) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  int skipped = 0;
  for (size_t i = 0; i < n; i++) {
    const char *k = sdw_pt_as_str(d->u.dict.keys[i]);
    const sdw_pt_tensor *t = sdw_pt_as_tensor(d->u.dict.values[i]);
    if (!k || !t) {
      skipped++;
      continue;
    }
    bool control = false;
    for (const char *q = k; *q; q++)
      control = control || (unsigned char)*q < 0x20 || *q == 0x7f;
    if (control || strlen(k) != d->u.dict.keys[i]->u.str.len)
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: %s has a key with control characters, which no parameter name has",
                      sdw_pt_name(c->pt), source);
    const char *name = strip_wrappers(k);
    if (unet) {
      if (strncmp(name, "unet.", 5) != 0) continue;
      name = strip_wrappers(name + 5);
    }
    char *copy = strdup(name);
    if (!copy) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    s->items[s->count++] = (sdw_seed_tensor){copy, k, t};
  }
  if (skipped)
    SDW_WARN("%s: %s: %d entries are not tensors and were skipped", sdw_pt_name(c->pt), source,
             skipped);
  if (s->count == 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: %s holds no tensors", sdw_pt_name(c->pt), source);
  return state_index(c, s);
}

/* A dict whose values are all tensors (at least one). */
static bool tensor_dict(const sdw_pt_value *v) {
  if (!v || v->kind != SDW_PT_DICT || v->u.dict.count == 0) return false;
  for (size_t i = 0; i < v->u.dict.count; i++)
    if (!sdw_pt_as_tensor(v->u.dict.values[i])) return false;
  return true;
}

static void top_keys(const sdw_pt_value *root, char *buf, size_t size) {
  size_t k = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < root->u.dict.count && i < 12 && k + 1 < size; i++) {
    const char *key = sdw_pt_as_str(root->u.dict.keys[i]);
    int w = snprintf(buf + k, size - k, "%s'%.40s'", i ? ", " : "", key ? key : "?");
    if (w < 0) break;
    for (size_t q = k; q < size && buf[q]; q++) /* one-line messages */
      if ((unsigned char)buf[q] < 0x20 || buf[q] == 0x7f) buf[q] = '?';
    k += (size_t)w;
  }
  if (root->u.dict.count > 12 && k + 1 < size) snprintf(buf + k, size - k, ", ...");
}

static sdw_status find_ema(const sdw_seed_checkpoint *c, const sdw_pt_value **d,
                           const char **source) {
  const sdw_pt_value *ema = sdw_pt_dict_get(sdw_pt_root(c->pt), "ema_state_dict");
  const sdw_pt_value *shadow = sdw_pt_dict_get(ema, "shadow");
  if (shadow && shadow->kind == SDW_PT_DICT) {
    *d = shadow, *source = "ema_state_dict.shadow";
    return SDW_OK;
  }
  if (tensor_dict(ema)) { /* an EMA saved as the bare shadow dict */
    *d = ema, *source = "ema_state_dict";
    return SDW_OK;
  }
  *d = NULL;
  return SDW_ERR_NOT_FOUND;
}

static sdw_status find_model(const sdw_seed_checkpoint *c, const sdw_pt_value **d,
                             const char **source) {
  static const char *const keys[] = {"unet_state_dict", "model_state_dict", "state_dict"};
  const sdw_pt_value *root = sdw_pt_root(c->pt);
  for (int i = 0; i < 3; i++) {
    const sdw_pt_value *v = sdw_pt_dict_get(root, keys[i]);
    if (v && v->kind == SDW_PT_DICT) {
      *d = v, *source = keys[i];
      return SDW_OK;
    }
  }
  if (tensor_dict(root)) {
    *d = root, *source = "the top-level state dict";
    return SDW_OK;
  }
  *d = NULL;
  return SDW_ERR_NOT_FOUND;
}

sdw_status sdw_seed_checkpoint_weights(sdw_seed_checkpoint *c, sdw_seed_weights which,
                                       const sdw_seed_state **out) {
  *out = NULL;
  const sdw_pt_value *d = NULL;
  const char *source = NULL;
  bool ema = which == SDW_SEED_WEIGHTS_EMA ||
             (which == SDW_SEED_WEIGHTS_AUTO && find_ema(c, &d, &source) == SDW_OK);
  char keys[600];
  top_keys(sdw_pt_root(c->pt), keys, sizeof keys);
  if (ema) {
    if (!c->ema_done) {
      if (find_ema(c, &d, &source) != SDW_OK)
        return sdw_fail(SDW_ERR_NOT_FOUND,
                        "%s: no EMA weights (no ema_state_dict.shadow; the checkpoint has %s); "
                        "use the model's weights instead (--no-ema)",
                        sdw_pt_name(c->pt), keys);
      SDW_TRY(state_build(c, d, source, &c->ema));
      c->ema_done = true;
    }
    *out = &c->ema;
    return SDW_OK;
  }
  if (!c->model_done) {
    if (find_model(c, &d, &source) != SDW_OK)
      return sdw_fail(SDW_ERR_NOT_FOUND,
                      "%s: no model weights (no unet_state_dict, model_state_dict or state_dict, "
                      "and the top level is not a state dict: it has %s)",
                      sdw_pt_name(c->pt), keys);
    SDW_TRY(state_build(c, d, source, &c->model));
    c->model_done = true;
  }
  *out = &c->model;
  return SDW_OK;
}

/* --- scalars --------------------------------------------------------------------- */

static void read_info(sdw_seed_checkpoint *c) {
  sdw_seed_info *in = &c->info;
  const sdw_pt_value *root = sdw_pt_root(c->pt);
  in->has_epoch = sdw_pt_as_int(sdw_pt_dict_get(root, "epoch"), &in->epoch);
  in->has_global_step = sdw_pt_as_int(sdw_pt_dict_get(root, "global_step"), &in->global_step);
  in->has_best_loss = sdw_pt_as_double(sdw_pt_dict_get(root, "best_loss"), &in->best_loss);
  const sdw_pt_value *ema = sdw_pt_dict_get(root, "ema_state_dict");
  in->has_ema = sdw_pt_as_int(sdw_pt_dict_get(ema, "step_count"), &in->ema_step_count);
  if (!sdw_pt_as_double(sdw_pt_dict_get(ema, "decay"), &in->ema_decay)) in->ema_decay = 0;
  const sdw_pt_value *opt = sdw_pt_dict_get(root, "optimizer_state_dict");
  const sdw_pt_value *groups = sdw_pt_dict_get(opt, "param_groups");
  if (groups && groups->kind == SDW_PT_LIST && groups->u.seq.count > 0) {
    const sdw_pt_value *g = groups->u.seq.items[0];
    in->has_optimizer = sdw_pt_as_double(sdw_pt_dict_get(g, "lr"), &in->lr);
    if (!sdw_pt_as_double(sdw_pt_dict_get(g, "initial_lr"), &in->initial_lr))
      in->initial_lr = in->lr;
    sdw_pt_as_double(sdw_pt_dict_get(g, "eps"), &in->eps);
    sdw_pt_as_double(sdw_pt_dict_get(g, "weight_decay"), &in->weight_decay);
    const sdw_pt_value *betas = sdw_pt_dict_get(g, "betas");
    if (betas && (betas->kind == SDW_PT_TUPLE || betas->kind == SDW_PT_LIST) &&
        betas->u.seq.count == 2) {
      sdw_pt_as_double(betas->u.seq.items[0], &in->beta1);
      sdw_pt_as_double(betas->u.seq.items[1], &in->beta2);
    }
  }
  const sdw_pt_value *sched = sdw_pt_dict_get(root, "lr_scheduler_state_dict");
  in->has_scheduler =
      sdw_pt_as_int(sdw_pt_dict_get(sched, "last_epoch"), &in->scheduler_last_epoch);
}

sdw_status sdw_seed_checkpoint_open(const char *path, sdw_seed_checkpoint **out) {
  *out = NULL;
  sdw_seed_checkpoint *c = calloc(1, sizeof *c);
  if (!c) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory opening %s", path);
  sdw_status st = sdw_pt_open(path, &c->pt);
  if (st == SDW_OK && sdw_pt_root(c->pt)->kind != SDW_PT_DICT) {
    char what[64];
    st = sdw_fail(SDW_ERR_FORMAT, "%s: holds %s, not a checkpoint dict or a state dict", path,
                  sdw_pt_describe(sdw_pt_root(c->pt), what, sizeof what));
  }
  if (st != SDW_OK) {
    sdw_seed_checkpoint_close(c);
    return st;
  }
  read_info(c);
  *out = c;
  return SDW_OK;
}

/* --- AdamW moments ------------------------------------------------------------------ */

static bool same_shape(const sdw_pt_tensor *a, const sdw_pt_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

static sdw_status adam_build(sdw_seed_checkpoint *c) {
  const char *name = sdw_pt_name(c->pt);
  const sdw_seed_state *model;
  SDW_TRY(sdw_seed_checkpoint_weights(c, SDW_SEED_WEIGHTS_MODEL, &model));
  const sdw_pt_value *opt = sdw_pt_dict_get(sdw_pt_root(c->pt), "optimizer_state_dict");
  const sdw_pt_value *state = sdw_pt_dict_get(opt, "state");
  const sdw_pt_value *groups = sdw_pt_dict_get(opt, "param_groups");
  if (!state || state->kind != SDW_PT_DICT || !groups || groups->kind != SDW_PT_LIST)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: no optimizer state (optimizer_state_dict with state and param_groups)",
                    name);
  sdw_seed_state *m1 = &c->exp_avg, *m2 = &c->exp_avg_sq;
  m1->source = "optimizer_state_dict.state[*].exp_avg";
  m2->source = "optimizer_state_dict.state[*].exp_avg_sq";
  m1->items = calloc((size_t)model->count, sizeof *m1->items);
  m2->items = calloc((size_t)model->count, sizeof *m2->items);
  if (!m1->items || !m2->items) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  int k = 0;
  bool have_step = false;
  for (size_t g = 0; g < groups->u.seq.count; g++) {
    const sdw_pt_value *params = sdw_pt_dict_get(groups->u.seq.items[g], "params");
    if (!params || params->kind != SDW_PT_LIST)
      return sdw_fail(SDW_ERR_FORMAT, "%s: optimizer param group %zu has no params list", name, g);
    for (size_t j = 0; j < params->u.seq.count; j++, k++) {
      int64_t idx;
      if (k >= model->count || !sdw_pt_as_int(params->u.seq.items[j], &idx))
        return sdw_fail(SDW_ERR_FORMAT,
                        "%s: the optimizer has more parameters than %s's %d tensors", name,
                        model->source, model->count);
      const sdw_seed_tensor *p = &model->items[k];
      const sdw_pt_value *ps = sdw_pt_dict_get_int(state, idx);
      const sdw_pt_tensor *a = sdw_pt_as_tensor(sdw_pt_dict_get(ps, "exp_avg"));
      const sdw_pt_tensor *b = sdw_pt_as_tensor(sdw_pt_dict_get(ps, "exp_avg_sq"));
      if (!a || !b)
        return sdw_fail(SDW_ERR_NOT_FOUND,
                        "%s: optimizer state of parameter %" PRId64 " ('%.200s') has no "
                        "exp_avg/exp_avg_sq tensors",
                        name, idx, p->name);
      if (!same_shape(a, p->tensor) || !same_shape(b, p->tensor))
        return sdw_fail(SDW_ERR_FORMAT,
                        "%s: optimizer state of parameter %" PRId64 " does not have the shape of "
                        "'%.200s' (the optimizer does not belong to these weights)",
                        name, idx, p->name);
      if (!have_step) {
        const sdw_pt_value *sv = sdw_pt_dict_get(ps, "step");
        const sdw_pt_tensor *st = sdw_pt_as_tensor(sv);
        if (st && st->numel == 1) {
          sdw_seed_tensor tmp = {p->name, "step", st};
          float f;
          SDW_TRY(sdw_seed_tensor_read_f32(c, &tmp, &f, 1));
          c->adam_step = f, have_step = true;
        } else if (sdw_pt_as_double(sv, &c->adam_step)) {
          have_step = true;
        }
      }
      char *n1 = strdup(p->name), *n2 = strdup(p->name);
      if (!n1 || !n2) {
        free(n1);
        free(n2);
        return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      }
      m1->items[m1->count++] = (sdw_seed_tensor){n1, "exp_avg", a};
      m2->items[m2->count++] = (sdw_seed_tensor){n2, "exp_avg_sq", b};
    }
  }
  if (k != model->count)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: the optimizer has %d parameters, %s %d tensors (they do not belong "
                    "together)",
                    name, k, model->source, model->count);
  SDW_TRY(state_index(c, m1));
  return state_index(c, m2);
}

sdw_status sdw_seed_checkpoint_adam(sdw_seed_checkpoint *c, const sdw_seed_state **exp_avg,
                                    const sdw_seed_state **exp_avg_sq, double *step) {
  if (!c->adam_done) {
    sdw_status st = adam_build(c);
    if (st != SDW_OK) {
      state_free(&c->exp_avg);
      state_free(&c->exp_avg_sq);
      return st;
    }
    c->adam_done = true;
  }
  *exp_avg = &c->exp_avg;
  *exp_avg_sq = &c->exp_avg_sq;
  if (step) *step = c->adam_step;
  return SDW_OK;
}

/* --- reading ------------------------------------------------------------------------ */

sdw_status sdw_seed_tensor_read_f32(sdw_seed_checkpoint *c, const sdw_seed_tensor *t, float *dst,
                                    size_t numel) {
  const sdw_pt_tensor *pt = t->tensor;
  if ((size_t)pt->numel != numel)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: tensor '%s' has %" PRId64 " elements, not %zu",
                    sdw_pt_name(c->pt), t->key, pt->numel, numel);
  if (pt->dtype == SDW_F32) return sdw_pt_tensor_read(c->pt, pt, dst, numel * sizeof(float));
  if (pt->dtype != SDW_F16 && pt->dtype != SDW_BF16 && pt->dtype != SDW_F64)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64",
                    sdw_pt_name(c->pt), t->key, sdw_dtype_name(pt->dtype));
  size_t bytes = sdw_pt_tensor_nbytes(pt);
  unsigned char *tmp = malloc(bytes ? bytes : 1);
  if (!tmp) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", t->key);
  sdw_status st = sdw_pt_tensor_read(c->pt, pt, tmp, bytes);
  for (size_t i = 0; st == SDW_OK && i < numel; i++) {
    if (pt->dtype == SDW_F64) {
      double v;
      memcpy(&v, tmp + 8 * i, 8);
      dst[i] = (float)v;
    } else {
      uint16_t h;
      memcpy(&h, tmp + 2 * i, 2);
      dst[i] = pt->dtype == SDW_F16 ? sdw_f16_to_f32(h) : sdw_bf16_to_f32(h);
    }
  }
  free(tmp);
  return st;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
  size_t k = 0;
  buf[k++] = '[';
  for (int d = 0; d < ndim && k + 24 < size; d++)
    k += (size_t)snprintf(buf + k, size - k, "%s%" PRId64, d ? ", " : "", shape[d]);
  snprintf(buf + k, size - k, "]");
}

sdw_status sdw_seed_state_load(sdw_seed_checkpoint *c, const sdw_seed_state *s, sdw_params *params,
                               bool allow_extra) {
  SDW_ASSERT(params->binding && params->flat);
  const char *file = sdw_pt_name(c->pt);
  int n = params->count, missing = 0;
  const char *first_missing = NULL;
  const sdw_seed_tensor **src = calloc((size_t)(n ? n : 1), sizeof *src);
  unsigned char *used = calloc((size_t)(s->count ? s->count : 1), 1);
  if (!src || !used) {
    free(src);
    free(used);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory loading %s", file);
  }
  sdw_status st = SDW_OK;
  size_t largest = 0;
  for (int i = 0; st == SDW_OK && i < n; i++) {
    const sdw_tensor *p = &params->items[i].value;
    src[i] = sdw_seed_state_find(s, params->items[i].name);
    if (!src[i]) {
      if (missing++ == 0) first_missing = params->items[i].name;
      continue;
    }
    used[src[i] - s->items] = 1;
    const sdw_pt_tensor *t = src[i]->tensor;
    bool same = t->ndim == p->ndim;
    for (int d = 0; same && d < t->ndim; d++)
      same = t->shape[d] == p->shape[d];
    if (!same) {
      char have[128], want[128];
      shape_text(t->ndim, t->shape, have, sizeof have);
      shape_text(p->ndim, p->shape, want, sizeof want);
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: %s tensor '%.200s' has shape %s, expected %s; the checkpoint holds a "
                    "model of a different size than the configuration says",
                    file, s->source, src[i]->key, have, want);
    }
    if ((size_t)t->numel > largest) largest = (size_t)t->numel;
  }
  if (st == SDW_OK && missing)
    st = sdw_fail(SDW_ERR_NOT_FOUND,
                  "%s: %s has no tensor '%.200s'%s (%d of the %d the model needs are missing); "
                  "the checkpoint holds a different model",
                  file, s->source, first_missing, missing > 1 ? " and others" : "", missing, n);
  for (int j = 0; st == SDW_OK && !allow_extra && j < s->count; j++)
    if (!used[j])
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: %s tensor '%.200s' is not a parameter of this UNet; the checkpoint and "
                    "the configuration disagree",
                    file, s->source, s->items[j].key);
  float *stage = NULL;
  if (st == SDW_OK) {
    stage = malloc((largest ? largest : 1) * sizeof *stage);
    if (!stage) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory loading %s", file);
  }
  for (int i = 0; st == SDW_OK && i < n; i++) {
    size_t numel = (size_t)src[i]->tensor->numel;
    st = sdw_seed_tensor_read_f32(c, src[i], stage, numel);
    if (st == SDW_OK)
      st = params->ctx->ops->upload(params->ctx, params->items[i].value.data, stage,
                                    numel * sizeof(float));
    if (st == SDW_OK) params->items[i].loaded = true;
  }
  free(stage);
  free(src);
  free(used);
  return st;
}

/* --- safetensors image ---------------------------------------------------------------- */

typedef struct text {
  char *p;
  size_t n, cap;
  bool oom;
} text;

static void put(text *t, const char *s, size_t n) {
  if (t->oom) return;
  if (t->cap - t->n < n + 1) {
    size_t cap = t->cap ? t->cap : 4096;
    while (cap - t->n < n + 1)
      cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
      t->oom = true;
      return;
    }
    t->p = p, t->cap = cap;
  }
  memcpy(t->p + t->n, s, n);
  t->n += n;
  t->p[t->n] = '\0';
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

/* A JSON string (the name is copied as bytes; control characters, quotes
 * and backslashes escaped). */
static void put_json_string(text *t, const char *a, const char *b) {
  puts_(t, "\"");
  for (int part = 0; part < 2; part++) {
    for (const char *s = part ? b : a; *s; s++) {
      unsigned char ch = (unsigned char)*s;
      char esc[8];
      if (ch == '"' || ch == '\\') {
        esc[0] = '\\', esc[1] = (char)ch;
        put(t, esc, 2);
      } else if (ch < 0x20) {
        snprintf(esc, sizeof esc, "\\u%04x", ch);
        puts_(t, esc);
      } else {
        put(t, s, 1);
      }
    }
  }
  puts_(t, "\"");
}

static void convert_to(sdw_dtype dtype, const float *src, size_t n, void *dst) {
  if (dtype == SDW_F32) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  uint16_t *h = dst;
  for (size_t i = 0; i < n; i++)
    h[i] = dtype == SDW_F16 ? sdw_f32_to_f16(src[i]) : sdw_f32_to_bf16(src[i]);
}

sdw_status sdw_seed_state_image(sdw_seed_checkpoint *c, const sdw_seed_state *s, const char *prefix,
                                sdw_dtype dtype, void **image, size_t *size) {
  *image = NULL;
  *size = 0;
  SDW_ASSERT(dtype == SDW_F32 || dtype == SDW_F16 || dtype == SDW_BF16);
  const size_t es = sdw_dtype_size(dtype);
  text h = {0};
  puts_(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
  uint64_t offset = 0;
  size_t largest = 0;
  for (int i = 0; i < s->count; i++) {
    const sdw_pt_tensor *t = s->items[i].tensor;
    char num[64];
    puts_(&h, ",");
    put_json_string(&h, prefix ? prefix : "", s->items[i].name);
    snprintf(num, sizeof num, ":{\"dtype\":\"%s\",\"shape\":[", sdw_dtype_name(dtype));
    puts_(&h, num);
    for (int d = 0; d < t->ndim; d++) {
      snprintf(num, sizeof num, "%s%" PRId64, d ? "," : "", t->shape[d]);
      puts_(&h, num);
    }
    uint64_t bytes = (uint64_t)t->numel * es; /* fits: checked when the tensor was built */
    if (bytes > UINT64_MAX / 2 - offset) {
      free(h.p);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: %s is too large for a safetensors image",
                      sdw_pt_name(c->pt), s->source);
    }
    uint64_t end = offset + bytes;
    snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, end);
    puts_(&h, num);
    offset = end;
    if ((size_t)t->numel > largest) largest = (size_t)t->numel;
  }
  puts_(&h, "}");
  while (!h.oom && (8 + h.n) % 8)
    puts_(&h, " ");
  if (h.oom) {
    free(h.p);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory building a safetensors header");
  }
  if (offset > SIZE_MAX - 8 - h.n) {
    free(h.p);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: %s is too large for a safetensors image",
                    sdw_pt_name(c->pt), s->source);
  }
  size_t total = 8 + h.n + (size_t)offset;
  unsigned char *img = malloc(total);
  float *stage = dtype == SDW_F32 ? NULL : malloc((largest ? largest : 1) * sizeof(float));
  if (!img || (dtype != SDW_F32 && !stage)) {
    free(img);
    free(stage);
    free(h.p);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory: a %zu-byte safetensors image", total);
  }
  uint64_t hn = h.n;
  for (int k = 0; k < 8; k++)
    img[k] = (unsigned char)(hn >> (8 * k));
  memcpy(img + 8, h.p, h.n);
  free(h.p);
  unsigned char *data = img + 8 + hn;
  sdw_status st = SDW_OK;
  for (int i = 0; st == SDW_OK && i < s->count; i++) {
    size_t numel = (size_t)s->items[i].tensor->numel;
    float *dst = dtype == SDW_F32 ? (float *)(void *)data : stage;
    /* data is 8-aligned relative to the image start (malloc'd), and every F32
     * tensor begins at a multiple of 4 */
    st = sdw_seed_tensor_read_f32(c, &s->items[i], dst, numel);
    if (st == SDW_OK && dtype != SDW_F32) convert_to(dtype, stage, numel, data);
    data += numel * es;
  }
  free(stage);
  if (st != SDW_OK) {
    free(img);
    return st;
  }
  *image = img;
  *size = total;
  return SDW_OK;
}

/* --- the seed UNet's constructor arguments ---------------------------------------------- */

void sdw_seed_state_shapes(const sdw_seed_state *s, sdw_seed_shape *out) {
  for (int i = 0; i < s->count; i++)
    out[i] =
        (sdw_seed_shape){s->items[i].name, s->items[i].tensor->ndim, s->items[i].tensor->shape};
}

static const sdw_seed_shape *shape_find(const sdw_seed_shape *items, int count, const char *name) {
  for (int i = 0; i < count; i++)
    if (strcmp(items[i].name, name) == 0) return &items[i];
  return NULL;
}

sdw_status sdw_seed_infer_unet_args(const sdw_seed_shape *items, int count, int heads,
                                    const char *what, sdw_seed_unet_args *out) {
  memset(out, 0, sizeof *out);
  const sdw_seed_shape *cin = shape_find(items, count, "conv_in.weight");
  const sdw_seed_shape *cout = shape_find(items, count, "conv_out.weight");
  const sdw_seed_shape *temb = shape_find(items, count, "t_emb.0.weight");
  if (!cin || !cout || !temb || cin->ndim != 4 || cout->ndim != 4 || temb->ndim != 2)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: not a seed UNet (no conv_in.weight, conv_out.weight and t_emb.0.weight "
                    "of the seed's shapes)",
                    what);
  out->ch = (int)cin->shape[0];
  out->in_ch = (int)cin->shape[1];
  out->out_ch = (int)cout->shape[0];
  out->t_dim = (int)temb->shape[1];
  out->heads = heads;
  out->ctx_dim = 768; /* the default, when no block has attention */
  /* Walk downs.N: ResBlocks (conv1) fill a level, a stride-2 conv (weight)
   * closes it. */
  int level = 0, in_level = 0, res_blks = -1;
  bool attn_level = false;
  char key[96];
  for (int n = 0;; n++) {
    snprintf(key, sizeof key, "downs.%d.conv1.weight", n);
    const sdw_seed_shape *conv1 = shape_find(items, count, key);
    snprintf(key, sizeof key, "downs.%d.weight", n);
    const sdw_seed_shape *down = shape_find(items, count, key);
    if (conv1) {
      if (level >= SDW_UNET_MAX_LEVELS || conv1->ndim != 4 || out->ch <= 0 ||
          conv1->shape[0] % out->ch != 0)
        return sdw_fail(SDW_ERR_FORMAT, "%s: downs.%d is not a seed ResBlock of a known level",
                        what, n);
      int mult = (int)(conv1->shape[0] / out->ch);
      snprintf(key, sizeof key, "downs.%d.tfm.norm.weight", n);
      bool attn = shape_find(items, count, key) != NULL;
      if (in_level == 0) {
        out->ch_mults[level] = mult;
        attn_level = attn;
      } else if (mult != out->ch_mults[level] || attn != attn_level) {
        return sdw_fail(SDW_ERR_FORMAT,
                        "%s: downs.%d differs from the other ResBlocks of its level (channels or "
                        "attention)",
                        what, n);
      }
      out->attn[level] = attn;
      in_level++;
      if (attn) {
        snprintf(key, sizeof key, "downs.%d.tfm.tfm.cross_attn.to_k.weight", n);
        const sdw_seed_shape *k = shape_find(items, count, key);
        if (k && k->ndim == 2) out->ctx_dim = (int)k->shape[1];
      }
    } else if (down || in_level > 0) {
      /* the end of a level: a downsample conv, or the end of downs */
      if (in_level == 0)
        return sdw_fail(SDW_ERR_FORMAT, "%s: downs.%d downsamples an empty level", what, n);
      if (res_blks < 0) res_blks = in_level;
      if (in_level != res_blks)
        return sdw_fail(SDW_ERR_FORMAT, "%s: level %d has %d ResBlocks, level 0 has %d", what,
                        level, in_level, res_blks);
      level++;
      in_level = 0;
      if (!down) break;
    } else {
      break;
    }
  }
  if (level == 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a seed UNet (no downs.0 ResBlock)", what);
  out->levels = level;
  out->res_blks = res_blks;
  const sdw_seed_shape *k = shape_find(items, count, "mid.0.tfm.tfm.cross_attn.to_k.weight");
  if (k && k->ndim == 2) out->ctx_dim = (int)k->shape[1];
  return SDW_OK;
}

int sdw_seed_unet_args_json(const sdw_seed_unet_args *a, char *buf, size_t cap) {
  char attn[128] = "", mults[128] = "";
  size_t ka = 0, km = 0;
  for (int l = 0; l < a->levels; l++) {
    if (a->attn[l]) ka += (size_t)snprintf(attn + ka, sizeof attn - ka, "%s%d", ka ? ", " : "", l);
    km += (size_t)snprintf(mults + km, sizeof mults - km, "%s%d", l ? ", " : "", a->ch_mults[l]);
  }
  int n = snprintf(buf, cap,
                   "{\n"
                   "  \"_class_name\": \"SeedUNetModel\",\n"
                   "  \"in_ch\": %d,\n"
                   "  \"out_ch\": %d,\n"
                   "  \"ch\": %d,\n"
                   "  \"res_blks\": %d,\n"
                   "  \"attn_lvls\": [%s],\n"
                   "  \"ch_mults\": [%s],\n"
                   "  \"heads\": %d,\n"
                   "  \"t_dim\": %d,\n"
                   "  \"ctx_dim\": %d,\n"
                   "  \"grad_ckpt\": false\n"
                   "}\n",
                   a->in_ch, a->out_ch, a->ch, a->res_blks, attn, mults, a->heads, a->t_dim,
                   a->ctx_dim);
  return n >= 0 && (size_t)n < cap ? n : -1;
}

sdw_status sdw_seed_match_unet(const sdw_seed_shape *items, int count, const sdw_unet_config *cfg,
                               const char *what) {
  sdw_unet m;
  SDW_TRY(sdw_unet_plan(&m, cfg));
  sdw_status st = SDW_OK;
  const sdw_params *p = &m.params;
  unsigned char *used = calloc((size_t)(count ? count : 1), 1);
  if (!used) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; st == SDW_OK && i < p->count; i++) {
    const sdw_param *q = &p->items[i];
    const sdw_seed_shape *s = shape_find(items, count, q->name);
    if (!s) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: no tensor '%s', which the UNet configuration needs", what,
                    q->name);
      break;
    }
    used[s - items] = 1;
    bool same = s->ndim == q->value.ndim;
    for (int d = 0; same && d < s->ndim; d++)
      same = s->shape[d] == q->value.shape[d];
    if (!same) {
      char have[128], want[128];
      shape_text(s->ndim, s->shape, have, sizeof have);
      shape_text(q->value.ndim, q->value.shape, want, sizeof want);
      st = sdw_fail(SDW_ERR_FORMAT, "%s: tensor '%s' has shape %s, the configuration says %s", what,
                    s->name, have, want);
    }
  }
  for (int j = 0; st == SDW_OK && j < count; j++)
    if (!used[j])
      st = sdw_fail(SDW_ERR_FORMAT, "%s: tensor '%.200s' is not a parameter of the configured UNet",
                    what, items[j].name);
  free(used);
  sdw_unet_free(&m);
  return st;
}
