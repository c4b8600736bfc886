#include "core/model/weights.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/json.h"

enum { WEIGHTS_PATH_MAX = 4096, WEIGHTS_KEY_MAX = 512 };

struct sdw_weights {
  char *name;
  char *config; /* NULL when none */
  int count;
  sdw_safetensors **files;
};

/* The weight files a folder may hold, in order of preference. */
static const char *const folder_names[] = {
    "model.safetensors",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "weights.safetensors",
    "model.fp16.safetensors",
    "model.safetensors.index.fp16.json",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.safetensors.index.fp16.json",
};
enum { FOLDER_NAME_COUNT = sizeof folder_names / sizeof folder_names[0] };

static bool is_dir(const char *path) {
  struct stat s;
  return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

static bool is_file(const char *path) {
  struct stat s;
  return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static sdw_status join(char *out, size_t cap, const char *dir, const char *name) {
  size_t n = strlen(dir);
  int len = snprintf(out, cap, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
  if (len < 0 || (size_t)len >= cap)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: path too long", dir);
  return SDW_OK;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static sdw_status weights_new(const char *name, sdw_weights **out) {
  sdw_weights *w = calloc(1, sizeof *w);
  if (w) w->name = dup_str(name);
  if (!w || !w->name) {
    free(w);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory opening %s", name);
  }
  *out = w;
  return SDW_OK;
}

static sdw_status weights_add(sdw_weights *w, const char *path) {
  sdw_safetensors **files = realloc(w->files, (size_t)(w->count + 1) * sizeof *files);
  if (!files) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory opening %s", path);
  w->files = files;
  SDW_TRY(sdw_safetensors_open(path, &w->files[w->count]));
  w->count++;
  return SDW_OK;
}

void sdw_weights_close(sdw_weights *w) {
  if (!w) return;
  for (int i = 0; i < w->count; i++)
    sdw_safetensors_close(w->files[i]);
  free(w->files);
  free(w->name);
  free(w->config);
  free(w);
}

sdw_status sdw_weights_open_files(const char *const *paths, int count, const char *name,
                                  sdw_weights **out) {
  *out = NULL;
  sdw_weights *w = NULL;
  SDW_TRY(weights_new(name, &w));
  for (int i = 0; i < count; i++) {
    sdw_status st = weights_add(w, paths[i]);
    if (st != SDW_OK) {
      sdw_weights_close(w);
      return st;
    }
  }
  *out = w;
  return SDW_OK;
}

/* A sharded checkpoint: {"metadata": {...}, "weight_map": {key: shard}};
 * every distinct shard (a file name in the index's folder) is mapped. */
static sdw_status open_index(sdw_weights *w, const char *index_path) {
  sdw_json_doc *doc;
  SDW_TRY(sdw_json_load_file(index_path, &doc));
  sdw_json_obj root, map;
  sdw_status st = sdw_json_root(doc, &root);
  if (st == SDW_OK) st = sdw_json_get_object(&root, "weight_map", &map);
  char dir[WEIGHTS_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", index_path);
  char *slash = strrchr(dir, '/');
  if (slash)
    slash[1] = '\0';
  else
    snprintf(dir, sizeof dir, ".");
  const cJSON *item = st == SDW_OK ? map.item->child : NULL;
  for (; st == SDW_OK && item; item = item->next) {
    const char *shard = cJSON_GetStringValue(item);
    if (!shard || !*shard || strchr(shard, '/')) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: weight_map entry '%s' must name a file in the index's folder", index_path,
                    item->string);
      break;
    }
    bool seen = false;
    for (const cJSON *prev = map.item->child; prev != item && !seen; prev = prev->next)
      seen = strcmp(cJSON_GetStringValue(prev), shard) == 0;
    if (seen) continue;
    char path[WEIGHTS_PATH_MAX];
    st = join(path, sizeof path, dir, shard);
    if (st == SDW_OK) st = weights_add(w, path);
  }
  if (st == SDW_OK && w->count == 0)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: weight_map lists no files", index_path);
  sdw_json_free(doc);
  return st;
}

static sdw_status open_path(sdw_weights *w, const char *path) {
  if (ends_with(path, ".json")) return open_index(w, path);
  return weights_add(w, path);
}

/* The first weight file name present in dir, or NULL. */
static const char *find_in_folder(const char *dir, char *path, size_t cap) {
  for (int i = 0; i < FOLDER_NAME_COUNT; i++) {
    if (join(path, cap, dir, folder_names[i]) != SDW_OK) return NULL;
    if (is_file(path)) return folder_names[i];
  }
  return NULL;
}

sdw_status sdw_weights_open(const char *path, const char *component, sdw_weights **out) {
  *out = NULL;
  struct stat s;
  if (stat(path, &s) != 0)
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: %s", path,
                    strerror(errno));
  char file[WEIGHTS_PATH_MAX], dir[WEIGHTS_PATH_MAX];
  if (S_ISDIR(s.st_mode)) {
    snprintf(dir, sizeof dir, "%s", path);
    const char *found = find_in_folder(dir, file, sizeof file);
    if (!found && component) {
      char sub[WEIGHTS_PATH_MAX];
      SDW_TRY(join(sub, sizeof sub, path, component));
      if (is_dir(sub)) {
        snprintf(dir, sizeof dir, "%s", sub);
        found = find_in_folder(dir, file, sizeof file);
      }
    }
    if (!found)
      return sdw_fail(SDW_ERR_NOT_FOUND,
                      "%s: no weights in this folder (looked for model.safetensors, "
                      "diffusion_pytorch_model.safetensors, weights.safetensors, their "
                      ".index.json and .fp16 forms%s%s%s); give the .safetensors file itself",
                      path, component ? ", here and in " : "", component ? component : "",
                      component ? "/" : "");
  } else {
    snprintf(file, sizeof file, "%s", path);
    dir[0] = '\0';
  }
  sdw_weights *w = NULL;
  SDW_TRY(weights_new(file, &w));
  sdw_status st = open_path(w, file);
  if (st == SDW_OK && dir[0]) {
    char config[WEIGHTS_PATH_MAX];
    st = join(config, sizeof config, dir, "config.json");
    if (st == SDW_OK && is_file(config)) {
      w->config = dup_str(config);
      if (!w->config) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
    }
  }
  if (st != SDW_OK) {
    sdw_weights_close(w);
    return st;
  }
  *out = w;
  return SDW_OK;
}

const char *sdw_weights_config_path(const sdw_weights *w) { return w->config; }
const char *sdw_weights_name(const sdw_weights *w) { return w->name; }
int sdw_weights_file_count(const sdw_weights *w) { return w->count; }

const sdw_safetensors *sdw_weights_file(const sdw_weights *w, int index) {
  SDW_ASSERT(index >= 0 && index < w->count);
  return w->files[index];
}

const sdw_safetensors_entry *sdw_weights_find(const sdw_weights *w, const char *key,
                                              const sdw_safetensors **file) {
  for (int i = 0; i < w->count; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_find(w->files[i], key);
    if (e) {
      if (file) *file = w->files[i];
      return e;
    }
  }
  return NULL;
}

bool sdw_weights_key(const sdw_weights_map *map, const char *prefix, const char *native, char *key,
                     size_t cap) {
  char name[WEIGHTS_KEY_MAX];
  if (map && map->map) {
    if (!map->map(map->user, native, name, sizeof name)) return false;
  } else {
    if (strlen(native) >= sizeof name) return false;
    strcpy(name, native);
    for (int i = 0; map && i < map->rewrite_count; i++) {
      const sdw_weights_rewrite *r = &map->rewrites[i];
      char *at = strstr(name, r->native);
      if (!at || !*r->native) continue;
      size_t head = (size_t)(at - name), from = strlen(r->native), to = strlen(r->file);
      size_t tail = strlen(at + from);
      if (head + to + tail >= sizeof name) return false;
      memmove(at + to, at + from, tail + 1);
      memcpy(at, r->file, to);
    }
  }
  int len = snprintf(key, cap, "%s%s", prefix ? prefix : "", name);
  return len >= 0 && (size_t)len < cap;
}

static bool param_optional(const sdw_weights_map *map, const char *native) {
  return map && map->optional && map->optional(map->user, native);
}

/* Shapes equal, or equal once dims of size 1 are dropped (when allowed). */
static bool shape_matches(const sdw_safetensors_entry *e, const sdw_tensor *t, bool squeeze) {
  if (e->ndim == t->ndim) {
    bool same = true;
    for (int d = 0; d < e->ndim; d++)
      same = same && e->shape[d] == t->shape[d];
    if (same) return true;
  }
  if (!squeeze) return false;
  int i = 0, j = 0;
  for (;;) {
    while (i < e->ndim && e->shape[i] == 1)
      i++;
    while (j < t->ndim && t->shape[j] == 1)
      j++;
    if (i == e->ndim || j == t->ndim) return i == e->ndim && j == t->ndim;
    if (e->shape[i++] != t->shape[j++]) return false;
  }
}

static void entry_shape_str(const sdw_safetensors_entry *e, char *buf, size_t size) {
  sdw_tensor t = sdw_tensor_make(NULL, SDW_F32, 0, NULL);
  if (e->ndim <= SDW_MAX_DIMS) {
    t.ndim = e->ndim;
    for (int d = 0; d < e->ndim; d++)
      t.shape[d] = e->shape[d];
    sdw_shape_str(&t, buf, size);
  } else {
    snprintf(buf, size, "(%d dims)", e->ndim);
  }
}

/* Converts n elements of a little-endian F16 / BF16 / F64 array to f32. */
static void convert_chunk(sdw_dtype dtype, const unsigned char *src, int64_t n, float *dst) {
#pragma omp parallel for schedule(static) if (n >= 65536)
  for (int64_t i = 0; i < n; i++) {
    if (dtype == SDW_F64) {
      double v;
      memcpy(&v, src + 8 * i, 8);
      dst[i] = (float)v;
    } else {
      uint16_t h;
      memcpy(&h, src + 2 * i, 2);
      dst[i] = dtype == SDW_F16 ? sdw_f16_to_f32(h) : sdw_bf16_to_f32(h);
    }
  }
}

enum { STAGE_FLOATS = 1 << 20 };

static sdw_status load_one(sdw_ctx *ctx, const sdw_safetensors_entry *e, sdw_tensor *dst,
                           float **stage) {
  if (e->dtype == SDW_F32) return ctx->ops->upload(ctx, dst->data, e->data, e->nbytes);
  if (!*stage) {
    *stage = malloc(STAGE_FLOATS * sizeof(float));
    if (!*stage) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory converting weights");
  }
  size_t esize = sdw_dtype_size(e->dtype);
  for (int64_t off = 0; off < e->numel; off += STAGE_FLOATS) {
    int64_t n = e->numel - off < STAGE_FLOATS ? e->numel - off : STAGE_FLOATS;
    convert_chunk(e->dtype, (const unsigned char *)e->data + (size_t)off * esize, n, *stage);
    SDW_TRY(ctx->ops->upload(ctx, (float *)dst->data + off, *stage, (size_t)n * sizeof(float)));
  }
  return SDW_OK;
}

static bool float_dtype(sdw_dtype d) {
  return d == SDW_F32 || d == SDW_F16 || d == SDW_BF16 || d == SDW_F64;
}

sdw_status sdw_weights_load(const sdw_weights *w, const sdw_weights_map *map, sdw_params *params,
                            sdw_weights_stats *stats) {
  SDW_ASSERT(params->binding && params->flat);
  static const char *const no_prefix[] = {""};
  const char *const *prefixes = map && map->prefix_count ? map->prefixes : no_prefix;
  int prefix_count = map && map->prefix_count ? map->prefix_count : 1;
  int n = params->count;
  char key[WEIGHTS_KEY_MAX];

  /* The prefix under which the most parameters are present. */
  int best = 0, best_found = -1;
  for (int p = 0; p < prefix_count; p++) {
    int found = 0;
    for (int i = 0; i < n; i++)
      if (sdw_weights_key(map, prefixes[p], params->items[i].name, key, sizeof key) &&
          sdw_weights_find(w, key, NULL))
        found++;
    if (found > best_found) best = p, best_found = found;
  }
  const char *prefix = prefixes[best];

  const sdw_safetensors_entry **entries = calloc((size_t)n + 1, sizeof *entries);
  const sdw_safetensors **files = calloc((size_t)n + 1, sizeof *files);
  if (!entries || !files) {
    free(entries);
    free(files);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory loading %s", w->name);
  }
  sdw_status st = SDW_OK;
  int missing = 0, required = 0;
  char first_missing[WEIGHTS_KEY_MAX] = "";
  for (int i = 0; i < n; i++) {
    const char *native = params->items[i].name;
    bool optional = param_optional(map, native);
    required += !optional;
    if (sdw_weights_key(map, prefix, native, key, sizeof key))
      entries[i] = sdw_weights_find(w, key, &files[i]);
    else
      snprintf(key, sizeof key, "%s", native);
    if (!entries[i] && !optional && missing++ == 0)
      snprintf(first_missing, sizeof first_missing, "%s", key);
  }
  /* Shapes and dtypes first (a model of another size also lacks tensors, and
   * its shapes say why), then presence; all before anything is written. */
  for (int i = 0; st == SDW_OK && i < n; i++) {
    const sdw_safetensors_entry *e = entries[i];
    if (!e) continue;
    sdw_tensor *t = &params->items[i].value;
    char want[96], have[96];
    if (!shape_matches(e, t, map && map->squeeze_ones)) {
      entry_shape_str(e, have, sizeof have);
      sdw_shape_str(t, want, sizeof want);
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: tensor '%s' has shape %s, expected %s; the file holds a model of a "
                    "different size than its configuration says",
                    sdw_safetensors_name(files[i]), e->name, have, want);
    } else if (!float_dtype(e->dtype)) {
      st = sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: tensor '%s' has dtype %s; weights must be F32, F16, BF16 or F64",
                    sdw_safetensors_name(files[i]), e->name, sdw_dtype_name(e->dtype));
    }
  }
  if (st != SDW_OK || !missing) {
    /* nothing missing, or already failed */
  } else if (best_found == 0) {
    char tried[64] = "";
    if (prefix_count > 1)
      snprintf(tried, sizeof tried, " nor under the other %d key prefixes tried", prefix_count - 1);
    st = sdw_fail(SDW_ERR_NOT_FOUND,
                  "%s: none of the %d tensors the model needs is there (no '%s'%s); the file "
                  "holds a different model or uses a layout sdw does not know",
                  w->name, required, first_missing, tried);
  } else if (missing == 1) {
    st = sdw_fail(SDW_ERR_NOT_FOUND,
                  "%s: tensor '%s' is missing (one of the %d tensors the model needs); the file "
                  "is incomplete or holds a different model",
                  w->name, first_missing, required);
  } else {
    st = sdw_fail(SDW_ERR_NOT_FOUND,
                  "%s: tensor '%s' and %d more of the %d tensors the model needs are missing; the "
                  "file is incomplete or holds a different model",
                  w->name, first_missing, missing - 1, required);
  }
  float *stage = NULL;
  sdw_weights_stats local = {0};
  snprintf(local.prefix, sizeof local.prefix, "%s", prefix);
  for (int i = 0; st == SDW_OK && i < n; i++) {
    if (!entries[i]) continue;
    st = load_one(params->ctx, entries[i], &params->items[i].value, &stage);
    if (st != SDW_OK) break;
    sdw_safetensors_release(files[i], entries[i]);
    params->items[i].loaded = true;
    local.loaded++;
    local.converted += entries[i]->dtype != SDW_F32;
    local.bytes_read += entries[i]->nbytes;
  }
  free(stage);
  free(entries);
  free(files);
  if (stats) *stats = local;
  return st;
}
