#include "core/train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/sha256.h"
#include "core/model/unet.h"

#ifndef SDW_VERSION
#define SDW_VERSION "unknown"
#endif

static const char *const set_names[4] = {"model", "ema", "adam_m", "adam_v"};

static float *set_ptr(const sdw_checkpoint_buffers *b, int k) {
  switch (k) {
  case 0: return b->model;
  case 1: return b->ema;
  case 2: return b->adam_m;
  default: return b->adam_v;
  }
}

static void set_hash(const sdw_params *p, const float *buf, char hex[65]) {
  sdw_sha256 h;
  unsigned char d[32];
  sdw_sha256_init(&h);
  for (int i = 0; i < p->count; i++)
    sdw_sha256_update(&h, buf + p->items[i].offset,
                      (size_t)sdw_tensor_numel(&p->items[i].value) * sizeof(float));
  sdw_sha256_final(&h, d);
  sdw_sha256_hex(d, hex);
}

void sdw_checkpoint_path(const char *dir, int64_t step, char *buf, size_t size) {
  snprintf(buf, size, "%s/step-%08" PRId64 ".safetensors", dir, step);
}

sdw_status sdw_checkpoint_write(const char *path, const sdw_params *params,
                                const sdw_checkpoint_buffers *b, const sdw_checkpoint_state *s,
                                const char *config, const char *unet_config) {
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  sdw_status st = SDW_OK;
  char name[SDW_PARAM_NAME_MAX + 16], val[128];
  for (int k = 0; k < 4 && st == SDW_OK; k++) {
    const float *buf = set_ptr(b, k);
    if (!buf) continue;
    for (int i = 0; i < params->count && st == SDW_OK; i++) {
      const sdw_param *it = &params->items[i];
      snprintf(name, sizeof name, "%s.%s", set_names[k], it->name);
      st = sdw_safetensors_writer_add(w, name, SDW_F32, it->value.ndim, it->value.shape,
                                      buf + it->offset);
    }
    if (st == SDW_OK) {
      char hex[65], key[32];
      set_hash(params, buf, hex);
      snprintf(key, sizeof key, "sha256.%s", set_names[k]);
      st = sdw_safetensors_writer_set_metadata(w, key, hex);
    }
  }
#define META_I(key, v)                                                                             \
  do {                                                                                             \
    snprintf(val, sizeof val, "%" PRId64, (int64_t)(v));                                           \
    if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, key, val);                       \
  } while (0)
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "format", SDW_CHECKPOINT_FORMAT);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "sdw_version", SDW_VERSION);
  META_I("step", s->step);
  META_I("epoch", s->epoch);
  META_I("position", s->position);
  META_I("optimizer_step", s->optimizer_step);
  META_I("ema_updates", s->ema_updates);
  META_I("nonfinite_run", s->nonfinite_run);
  META_I("total_steps", s->total_steps);
  META_I("world_size", s->world_size);
  META_I("time", time(NULL));
  snprintf(val, sizeof val, "%" PRIu64, s->rng_seed);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "rng_seed", val);
  snprintf(val, sizeof val, "%" PRIu64, s->rng_offset);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "rng_offset", val);
  snprintf(val, sizeof val, "%.17g", s->lr);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "lr", val);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "config", config ? config : "");
  if (st == SDW_OK)
    st = sdw_safetensors_writer_set_metadata(w, "unet_config", unet_config ? unet_config : "");
#undef META_I
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  sdw_safetensors_writer_destroy(w);
  return st;
}

static sdw_status meta_i64(const sdw_safetensors *st, const char *key, int64_t *out) {
  const char *v = sdw_safetensors_metadata_get(st, key);
  if (!v || !sdw_parse_i64(v, INT64_MIN, INT64_MAX, out))
    return sdw_fail(SDW_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing or not an integer",
                    sdw_safetensors_name(st), key);
  return SDW_OK;
}

static sdw_status meta_u64(const sdw_safetensors *st, const char *key, uint64_t *out) {
  const char *v = sdw_safetensors_metadata_get(st, key);
  char *end = NULL;
  if (!v || !*v || *v == '-') goto bad;
  errno = 0;
  *out = strtoull(v, &end, 10);
  if (*end || errno) goto bad;
  return SDW_OK;
bad:
  return sdw_fail(SDW_ERR_FORMAT, "%s: checkpoint metadata '%s' is missing or not an integer",
                  sdw_safetensors_name(st), key);
}

/* The entry of set k for parameter it, checked; NULL when absent. */
static sdw_status find_entry(const sdw_safetensors *ck, int k, const sdw_param *it,
                             const sdw_safetensors_entry **out) {
  char name[SDW_PARAM_NAME_MAX + 16];
  snprintf(name, sizeof name, "%s.%s", set_names[k], it->name);
  const sdw_safetensors_entry *e = sdw_safetensors_find(ck, name);
  *out = e;
  if (!e) return SDW_OK;
  bool same = e->dtype == SDW_F32 && e->ndim == it->value.ndim;
  for (int d = 0; same && d < e->ndim; d++)
    same = e->shape[d] == it->value.shape[d];
  if (!same)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: tensor '%s' is not F32 of the model's shape (another model's checkpoint?)",
                    sdw_safetensors_name(ck), name);
  return SDW_OK;
}

sdw_status sdw_checkpoint_open(const char *path, const sdw_params *params, sdw_checkpoint_state *s,
                               sdw_safetensors **out) {
  *out = NULL;
  sdw_safetensors *ck = NULL;
  SDW_TRY(sdw_safetensors_open(path, &ck));
  sdw_status st = SDW_OK;
  const char *fmt = sdw_safetensors_metadata_get(ck, "format");
  if (!fmt || strcmp(fmt, SDW_CHECKPOINT_FORMAT) != 0)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: not an sdw training checkpoint (format is not %s)", path,
                  SDW_CHECKPOINT_FORMAT);
  int64_t world = 1;
  memset(s, 0, sizeof *s);
  if (st == SDW_OK) st = meta_i64(ck, "step", &s->step);
  if (st == SDW_OK) st = meta_i64(ck, "epoch", &s->epoch);
  if (st == SDW_OK) st = meta_i64(ck, "position", &s->position);
  if (st == SDW_OK) st = meta_i64(ck, "optimizer_step", &s->optimizer_step);
  if (st == SDW_OK) st = meta_i64(ck, "ema_updates", &s->ema_updates);
  if (st == SDW_OK) st = meta_i64(ck, "nonfinite_run", &s->nonfinite_run);
  if (st == SDW_OK) st = meta_i64(ck, "total_steps", &s->total_steps);
  if (st == SDW_OK) st = meta_i64(ck, "world_size", &world);
  if (st == SDW_OK) st = meta_u64(ck, "rng_seed", &s->rng_seed);
  if (st == SDW_OK) st = meta_u64(ck, "rng_offset", &s->rng_offset);
  if (st == SDW_OK) {
    const char *lr = sdw_safetensors_metadata_get(ck, "lr");
    if (!lr || !sdw_parse_double(lr, 0, 1e30, &s->lr))
      st = sdw_fail(SDW_ERR_FORMAT, "%s: checkpoint metadata 'lr' is missing or invalid", path);
  }
  s->world_size = (int)world;
  /* every set: all tensors present with the model's shapes, hashes match */
  for (int k = 0; k < 4 && st == SDW_OK; k++) {
    char key[32];
    snprintf(key, sizeof key, "sha256.%s", set_names[k]);
    const char *want = sdw_safetensors_metadata_get(ck, key);
    if (!want && k == 1) continue; /* no EMA kept */
    if (!want) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: checkpoint has no %s", path, key);
      break;
    }
    sdw_sha256 h;
    unsigned char d[32];
    char hex[65];
    sdw_sha256_init(&h);
    for (int i = 0; i < params->count && st == SDW_OK; i++) {
      const sdw_safetensors_entry *e;
      st = find_entry(ck, k, &params->items[i], &e);
      if (st == SDW_OK && !e)
        st = sdw_fail(SDW_ERR_FORMAT, "%s: no tensor '%s.%s' (another model's checkpoint?)", path,
                      set_names[k], params->items[i].name);
      if (st == SDW_OK) sdw_sha256_update(&h, e->data, e->nbytes);
    }
    if (st != SDW_OK) break;
    sdw_sha256_final(&h, d);
    sdw_sha256_hex(d, hex);
    if (strcmp(hex, want) != 0)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: the %s tensors do not match their SHA-256 (damaged file)",
                    path, set_names[k]);
  }
  if (st == SDW_OK && (size_t)((sdw_safetensors_metadata_get(ck, "sha256.ema") ? 4 : 3) *
                               params->count) != sdw_safetensors_count(ck))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: holds tensors the model does not have", path);
  if (st != SDW_OK) {
    sdw_safetensors_close(ck);
    return st;
  }
  *out = ck;
  return SDW_OK;
}

sdw_status sdw_checkpoint_read(const sdw_safetensors *ck, const sdw_params *params,
                               const sdw_checkpoint_buffers *b) {
  for (int k = 0; k < 4; k++) {
    float *buf = set_ptr(b, k);
    if (!buf) continue;
    for (int i = 0; i < params->count; i++) {
      const sdw_safetensors_entry *e;
      SDW_TRY(find_entry(ck, k, &params->items[i], &e));
      if (!e)
        return sdw_fail(SDW_ERR_FORMAT, "%s: no tensor '%s.%s'", sdw_safetensors_name(ck),
                        set_names[k], params->items[i].name);
      memcpy(buf + params->items[i].offset, e->data, e->nbytes);
    }
  }
  return SDW_OK;
}

sdw_status sdw_checkpoint_set_latest(const char *dir, const char *file_name) {
  char path[4096], text[512];
  snprintf(path, sizeof path, "%s/latest", dir);
  int n = snprintf(text, sizeof text, "%s\n", file_name);
  return sdw_atomic_write(path, text, (size_t)n);
}

static bool is_step_name(const char *n) {
  return strncmp(n, "step-", 5) == 0 && strlen(n) == 5 + 8 + 12 &&
         strcmp(n + 13, ".safetensors") == 0;
}

sdw_status sdw_checkpoint_list(const char *dir, char ***names, int *count) {
  char **all = NULL;
  int n = 0;
  sdw_status st = sdw_list_files(dir, ".safetensors", &all, &n);
  if (st != SDW_OK) {
    *names = NULL;
    *count = 0;
    return st;
  }
  char **keep = malloc((size_t)(n ? n : 1) * sizeof *keep);
  if (!keep) {
    sdw_list_files_free(all, n);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
  }
  int k = 0;
  for (int i = n - 1; i >= 0; i--) { /* newest (largest step) first */
    if (is_step_name(all[i]))
      keep[k++] = all[i];
    else
      free(all[i]);
  }
  free(all);
  *names = keep;
  *count = k;
  return SDW_OK;
}

/* The name in dir/latest ("" when absent or unreadable). */
static void read_latest(const char *dir, char *name, size_t size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/latest", dir);
  void *data;
  size_t n;
  name[0] = '\0';
  if (sdw_read_file(path, &data, &n) != SDW_OK) return;
  char *t = data;
  t[strcspn(t, "\r\n")] = '\0';
  if (is_step_name(t)) snprintf(name, size, "%s", t);
  free(data);
}

sdw_status sdw_checkpoint_find_resume(const char *dir, const sdw_params *params, char *path,
                                      size_t size, sdw_checkpoint_state *state,
                                      sdw_safetensors **out, sdw_checkpoint_warn_fn warn,
                                      void *user) {
  *out = NULL;
  char latest[64], msg[4600];
  read_latest(dir, latest, sizeof latest);
  char **names = NULL;
  int count = 0;
  if (sdw_checkpoint_list(dir, &names, &count) != SDW_OK) count = 0;
  sdw_status st = SDW_ERR_NOT_FOUND;
  /* "latest" first, then the others newest first */
  for (int pass = 0; pass < 2 && st != SDW_OK; pass++)
    for (int i = 0; i < (pass ? count : 1) && st != SDW_OK; i++) {
      const char *n = pass ? names[i] : latest;
      if (!n[0] || (pass && strcmp(n, latest) == 0)) continue;
      snprintf(path, size, "%s/%s", dir, n);
      st = sdw_checkpoint_open(path, params, state, out);
      if (st != SDW_OK && warn) {
        snprintf(msg, sizeof msg, "checkpoint %s is not usable (%s); trying an older one", n,
                 sdw_last_error());
        warn(user, msg);
      }
    }
  sdw_list_files_free(names, count);
  if (st != SDW_OK) {
    path[0] = '\0';
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no usable checkpoint", dir);
  }
  return SDW_OK;
}

sdw_status sdw_checkpoint_prune(const char *dir, int keep_last, int64_t keep_every) {
  char latest[64], path[4096];
  read_latest(dir, latest, sizeof latest);
  char **names = NULL;
  int count = 0;
  SDW_TRY(sdw_checkpoint_list(dir, &names, &count));
  for (int i = keep_last; i < count; i++) {
    int64_t step = 0;
    char digits[9];
    memcpy(digits, names[i] + 5, 8);
    digits[8] = '\0';
    sdw_parse_i64(digits, 0, INT64_MAX, &step);
    if (strcmp(names[i], latest) == 0) continue;
    if (keep_every > 0 && step % keep_every == 0) continue;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  sdw_list_files_free(names, count);
  /* temporaries of writers that were killed: ".NAME.tmp.PID" with PID gone */
  DIR *d = opendir(dir);
  if (!d) return SDW_OK;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *t = strstr(e->d_name, ".tmp.");
    if (e->d_name[0] != '.' || !t) continue;
    int64_t pid;
    if (!sdw_parse_i64(t + 5, 1, INT32_MAX, &pid)) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  return SDW_OK;
}

sdw_status sdw_checkpoint_resolve(const char *path, char *buf, size_t size) {
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    char dir[4096], name[64];
    snprintf(dir, sizeof dir, "%s/checkpoints", path);
    read_latest(dir, name, sizeof name);
    if (!name[0])
      return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no checkpoints/latest (not a run with a checkpoint)",
                      path);
    snprintf(buf, size, "%s/%s", dir, name);
    return SDW_OK;
  }
  snprintf(buf, size, "%s", path);
  return SDW_OK;
}

bool sdw_checkpoint_is(const char *path) {
  sdw_safetensors *st = NULL;
  if (sdw_safetensors_open(path, &st) != SDW_OK) {
    sdw_clear_error();
    return false;
  }
  const char *f = sdw_safetensors_metadata_get(st, "format");
  const bool is = f && strcmp(f, SDW_CHECKPOINT_FORMAT) == 0;
  sdw_safetensors_close(st);
  return is;
}

sdw_status sdw_checkpoint_load_unet(struct sdw_unet *m, sdw_ctx *ctx, const char *path, int ema,
                                    bool *used_ema) {
  char file[4200];
  SDW_TRY(sdw_checkpoint_resolve(path, file, sizeof file));
  sdw_safetensors *ck = NULL;
  SDW_TRY(sdw_safetensors_open(file, &ck));
  const char *fmt = sdw_safetensors_metadata_get(ck, "format");
  const char *ucfg = sdw_safetensors_metadata_get(ck, "unet_config");
  const bool has_ema = sdw_safetensors_metadata_get(ck, "sha256.ema") != NULL;
  sdw_status st = SDW_OK;
  if (!fmt || strcmp(fmt, SDW_CHECKPOINT_FORMAT) != 0 || !ucfg)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: not an sdw training checkpoint", file);
  else if (ema == 1 && !has_ema)
    st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: holds no EMA weights (the run kept none)", file);
  const int k = (ema == 1 || (ema < 0 && has_ema)) ? 1 : 0;
  sdw_unet_config cfg;
  if (st == SDW_OK) st = sdw_unet_config_parse(ucfg, strlen(ucfg), "unet_config", &cfg);
  if (st == SDW_OK) st = sdw_unet_create(m, ctx, &cfg);
  const bool created = st == SDW_OK;
  for (int i = 0; st == SDW_OK && i < m->params.count; i++) {
    const sdw_safetensors_entry *e;
    st = find_entry(ck, k, &m->params.items[i], &e);
    if (st == SDW_OK && !e)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: no tensor '%s.%s'", file, set_names[k],
                    m->params.items[i].name);
    if (st == SDW_OK)
      st = ctx->ops->upload(ctx, m->params.flat + m->params.items[i].offset, e->data, e->nbytes);
    if (st == SDW_OK) m->params.items[i].loaded = true;
  }
  if (st != SDW_OK && created) sdw_unet_free(m);
  if (st == SDW_OK && used_ema) *used_ema = k == 1;
  sdw_safetensors_close(ck);
  return st;
}
