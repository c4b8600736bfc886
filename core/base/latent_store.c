#include "core/base/latent_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/json.h"
#include "core/base/safetensors.h"
#include "core/base/sha256.h"

#define CHUNK_FORMAT "sdw-latent-chunk/1"
#define STORE_FORMAT "sdw-latents/1"
#define MAX_CHUNKS   1000000

/* --- writing ------------------------------------------------------------------------ */

/* Concatenates n strings into *bytes with offsets[n + 1] (malloc'd). */
static sdw_status pack_strings(const char *const *s, int64_t n, char **bytes, int64_t **offsets) {
  int64_t total = 0;
  *offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
  if (!*offsets) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "latent chunk: out of memory");
  for (int64_t i = 0; i < n; i++) {
    (*offsets)[i] = total;
    total += (int64_t)strlen(s[i] ? s[i] : "");
  }
  (*offsets)[n] = total;
  *bytes = malloc((size_t)total + 1);
  if (!*bytes) {
    free(*offsets);
    *offsets = NULL;
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "latent chunk: out of memory");
  }
  for (int64_t i = 0; i < n; i++)
    if (s[i]) memcpy(*bytes + (*offsets)[i], s[i], (size_t)((*offsets)[i + 1] - (*offsets)[i]));
  return SDW_OK;
}

sdw_status sdw_latent_chunk_write(const char *path, const sdw_latent_chunk *c) {
  if (!c || c->count < 1 || c->channels < 1 || c->height < 1 || c->width < 1 || c->seq_len < 1 ||
      c->context_dim < 0 || !c->latents || !c->input_ids || !c->attention_mask || !c->keys ||
      !c->captions || (c->context_dim > 0) != (c->context != NULL))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: incomplete latent chunk description", path);
  for (int64_t i = 0; i < c->count; i++)
    if ((c->keys[i] && !sdw_utf8_valid(c->keys[i], strlen(c->keys[i]))) ||
        (c->captions[i] && !sdw_utf8_valid(c->captions[i], strlen(c->captions[i]))))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "%s: sample %" PRId64 " key or caption is not UTF-8", path, i);
  char *kb = NULL, *cb = NULL;
  int64_t *ko = NULL, *co = NULL;
  sdw_safetensors_writer *w = NULL;
  sdw_status st = pack_strings(c->keys, c->count, &kb, &ko);
  if (st == SDW_OK) st = pack_strings(c->captions, c->count, &cb, &co);
  if (st == SDW_OK) st = sdw_safetensors_writer_create(&w);
  if (st == SDW_OK) {
    int64_t lat[4] = {c->count, c->channels, c->height, c->width};
    int64_t ids[2] = {c->count, c->seq_len};
    int64_t ctx[3] = {c->count, c->seq_len, c->context_dim};
    int64_t kn[1] = {ko[c->count]}, cn[1] = {co[c->count]}, on[1] = {c->count + 1};
    if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "format", CHUNK_FORMAT);
    if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "latents", SDW_F16, 4, lat, c->latents);
    if (st == SDW_OK)
      st = sdw_safetensors_writer_add(w, "input_ids", SDW_I32, 2, ids, c->input_ids);
    if (st == SDW_OK)
      st = sdw_safetensors_writer_add(w, "attention_mask", SDW_I32, 2, ids, c->attention_mask);
    if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "keys.bytes", SDW_U8, 1, kn, kb);
    if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "keys.offsets", SDW_I64, 1, on, ko);
    if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "captions.bytes", SDW_U8, 1, cn, cb);
    if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "captions.offsets", SDW_I64, 1, on, co);
    if (st == SDW_OK && c->context)
      st = sdw_safetensors_writer_add(w, "context", SDW_F16, 3, ctx, c->context);
    if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  }
  sdw_safetensors_writer_destroy(w);
  free(kb);
  free(cb);
  free(ko);
  free(co);
  return st;
}

/* --- one chunk, validated ----------------------------------------------------------------- */

typedef struct chunk_view {
  sdw_safetensors *st;
  int64_t count, first; /* samples [first, first + count) of the store */
  int channels, height, width, seq_len, context_dim;
  const uint16_t *latents, *context;
  const int32_t *input_ids, *attention_mask;
  const char *key_bytes, *caption_bytes;
  const int64_t *key_off, *caption_off;
} chunk_view;

static sdw_status chunk_entry(const sdw_safetensors *st, const char *name, sdw_dtype dtype,
                              int ndim, const sdw_safetensors_entry **out) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  if (!e)
    return sdw_fail(SDW_ERR_FORMAT, "%s: latent chunk has no tensor '%s'", sdw_safetensors_name(st),
                    name);
  if (e->dtype != dtype || e->ndim != ndim)
    return sdw_fail(SDW_ERR_FORMAT, "%s: tensor '%s' must be %s with %d dims",
                    sdw_safetensors_name(st), name, sdw_dtype_name(dtype), ndim);
  if (e->numel > 0 && ((uintptr_t)e->data % sdw_dtype_size(dtype)) != 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: tensor '%s' is not aligned", sdw_safetensors_name(st),
                    name);
  *out = e;
  return SDW_OK;
}

/* Offsets must start at 0, never decrease and end at the byte count. */
static sdw_status check_offsets(const sdw_safetensors *st, const char *what, const int64_t *off,
                                int64_t n, int64_t nbytes) {
  if (off[0] != 0 || off[n] != nbytes)
    return sdw_fail(SDW_ERR_FORMAT, "%s: %s.offsets do not span %s.bytes", sdw_safetensors_name(st),
                    what, what);
  for (int64_t i = 0; i < n; i++)
    if (off[i + 1] < off[i])
      return sdw_fail(SDW_ERR_FORMAT, "%s: %s.offsets decrease at %" PRId64,
                      sdw_safetensors_name(st), what, i);
  return SDW_OK;
}

/* Opens and checks one chunk file (its tensors agree with each other). */
static sdw_status chunk_open(const char *path, chunk_view *v) {
  memset(v, 0, sizeof *v);
  SDW_TRY(sdw_safetensors_open(path, &v->st));
  const sdw_safetensors *st = v->st;
  const char *fmt = sdw_safetensors_metadata_get(st, "format");
  if (!fmt || strcmp(fmt, CHUNK_FORMAT) != 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a latent chunk (metadata format is not %s)", path,
                    CHUNK_FORMAT);
  const sdw_safetensors_entry *lat, *ids, *mask, *kb, *ko, *cb, *co;
  SDW_TRY(chunk_entry(st, "latents", SDW_F16, 4, &lat));
  SDW_TRY(chunk_entry(st, "input_ids", SDW_I32, 2, &ids));
  SDW_TRY(chunk_entry(st, "attention_mask", SDW_I32, 2, &mask));
  SDW_TRY(chunk_entry(st, "keys.bytes", SDW_U8, 1, &kb));
  SDW_TRY(chunk_entry(st, "keys.offsets", SDW_I64, 1, &ko));
  SDW_TRY(chunk_entry(st, "captions.bytes", SDW_U8, 1, &cb));
  SDW_TRY(chunk_entry(st, "captions.offsets", SDW_I64, 1, &co));
  int64_t n = lat->shape[0];
  if (n < 1 || lat->shape[1] < 1 || lat->shape[2] < 1 || lat->shape[3] < 1 ||
      lat->shape[1] > 65536 || lat->shape[2] > 65536 || lat->shape[3] > 65536)
    return sdw_fail(SDW_ERR_FORMAT, "%s: latents have an empty or oversized shape", path);
  if (ids->shape[0] != n || ids->shape[1] < 1 || ids->shape[1] > 65536 || mask->shape[0] != n ||
      mask->shape[1] != ids->shape[1] || ko->shape[0] != n + 1 || co->shape[0] != n + 1)
    return sdw_fail(SDW_ERR_FORMAT, "%s: tensors disagree on the sample count or sequence length",
                    path);
  v->count = n;
  v->channels = (int)lat->shape[1];
  v->height = (int)lat->shape[2];
  v->width = (int)lat->shape[3];
  v->seq_len = (int)ids->shape[1];
  v->latents = lat->data;
  v->input_ids = ids->data;
  v->attention_mask = mask->data;
  v->key_bytes = kb->data;
  v->key_off = ko->data;
  v->caption_bytes = cb->data;
  v->caption_off = co->data;
  SDW_TRY(check_offsets(st, "keys", v->key_off, n, kb->shape[0]));
  SDW_TRY(check_offsets(st, "captions", v->caption_off, n, cb->shape[0]));
  if (sdw_safetensors_find(st, "context")) {
    const sdw_safetensors_entry *ctx;
    SDW_TRY(chunk_entry(st, "context", SDW_F16, 3, &ctx));
    if (ctx->shape[0] != n || ctx->shape[1] != v->seq_len || ctx->shape[2] < 1 ||
        ctx->shape[2] > 65536)
      return sdw_fail(SDW_ERR_FORMAT, "%s: context must be [%" PRId64 ", %d, D]", path, n,
                      v->seq_len);
    v->context_dim = (int)ctx->shape[2];
    v->context = ctx->data;
  }
  return SDW_OK;
}

static sdw_status chunk_same_shape(const char *path, const chunk_view *a, const chunk_view *b) {
  if (a->channels != b->channels || a->height != b->height || a->width != b->width ||
      a->seq_len != b->seq_len || a->context_dim != b->context_dim)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: latent shape, sequence length or context width differ from the "
                    "first chunk's",
                    path);
  return SDW_OK;
}

/* --- finishing a store ------------------------------------------------------------------- */

static void join_path(char *buf, size_t cap, const char *dir, const char *name) {
  snprintf(buf, cap, "%s/%s", dir, name);
}

sdw_status sdw_latent_store_finish(const char *dir, const char *split, int num_chunks,
                                   double scaling_factor, int image_size, const char *vae) {
  if (num_chunks < 1 || num_chunks > MAX_CHUNKS)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: a store needs 1..%d chunks (got %d)", dir,
                    MAX_CHUNKS, num_chunks);
  cJSON *root = cJSON_CreateObject();
  cJSON *chunks = cJSON_CreateArray();
  if (!root || !chunks) {
    cJSON_Delete(root);
    cJSON_Delete(chunks);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
  }
  sdw_status st = SDW_OK;
  chunk_view first = {0};
  int64_t total = 0;
  for (int i = 0; i < num_chunks && st == SDW_OK; i++) {
    char name[64], path[4096];
    snprintf(name, sizeof name, "chunk-%05d.safetensors", i);
    join_path(path, sizeof path, dir, name);
    chunk_view v;
    st = chunk_open(path, &v);
    if (st == SDW_OK && i > 0) st = chunk_same_shape(path, &first, &v);
    struct stat sb;
    if (st == SDW_OK && stat(path, &sb) != 0) st = sdw_fail(SDW_ERR_IO, "%s: cannot stat", path);
    unsigned char digest[32];
    char hex[65];
    if (st == SDW_OK) st = sdw_sha256_file(path, digest);
    if (st == SDW_OK) {
      sdw_sha256_hex(digest, hex);
      cJSON *c = cJSON_CreateObject();
      cJSON_AddStringToObject(c, "file", name);
      cJSON_AddNumberToObject(c, "count", (double)v.count);
      cJSON_AddNumberToObject(c, "bytes", (double)sb.st_size);
      cJSON_AddStringToObject(c, "sha256", hex);
      cJSON_AddItemToArray(chunks, c);
      total += v.count;
    }
    if (i == 0 && st == SDW_OK)
      first = v;
    else
      sdw_safetensors_close(v.st);
  }
  if (st == SDW_OK) {
    cJSON_AddStringToObject(root, "format", STORE_FORMAT);
    cJSON_AddStringToObject(root, "split", split ? split : "");
    cJSON_AddNumberToObject(root, "count", (double)total);
    cJSON *shape = cJSON_CreateArray();
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(first.channels));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(first.height));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(first.width));
    cJSON_AddItemToObject(root, "latent_shape", shape);
    cJSON_AddStringToObject(root, "dtype", "F16");
    cJSON_AddNumberToObject(root, "scaling_factor", scaling_factor);
    cJSON_AddNumberToObject(root, "seq_len", first.seq_len);
    cJSON_AddNumberToObject(root, "context_dim", first.context_dim);
    cJSON_AddNumberToObject(root, "image_size", image_size);
    cJSON_AddStringToObject(root, "vae", vae ? vae : "");
    cJSON_AddItemToObject(root, "chunks", chunks);
    chunks = NULL;
    char *text = cJSON_Print(root);
    if (!text) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
    } else {
      char path[4096];
      join_path(path, sizeof path, dir, "index.json");
      size_t n = strlen(text);
      text[n] = '\0';
      char *withnl = malloc(n + 2);
      if (!withnl) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
      } else {
        memcpy(withnl, text, n);
        withnl[n] = '\n';
        st = sdw_atomic_write(path, withnl, n + 1);
        free(withnl);
      }
      cJSON_free(text);
    }
  }
  sdw_safetensors_close(first.st);
  cJSON_Delete(chunks);
  cJSON_Delete(root);
  return st;
}

/* --- reading ------------------------------------------------------------------------------ */

struct sdw_latent_store {
  chunk_view *chunks;
  int num_chunks;
  int64_t count;
  int channels, height, width, seq_len, context_dim;
  double scaling_factor;
};

void sdw_latent_store_close(sdw_latent_store *s) {
  if (!s) return;
  for (int i = 0; i < s->num_chunks; i++)
    sdw_safetensors_close(s->chunks[i].st);
  free(s->chunks);
  free(s);
}

/* A chunk file name from the index: a plain name inside the directory. */
static bool safe_chunk_name(const char *name) {
  return name[0] != '\0' && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

static sdw_status store_load(const char *dir, sdw_latent_store *s) {
  char path[4096];
  join_path(path, sizeof path, dir, "index.json");
  sdw_json_doc *doc = NULL;
  sdw_status st = sdw_json_load_file(path, &doc);
  if (st == SDW_ERR_NOT_FOUND)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "%s: no latent store here (index.json missing: the store does not exist or "
                    "its encoding has not finished)",
                    dir);
  if (st != SDW_OK) return st;
  sdw_json_obj root;
  const char *fmt;
  int64_t count, seq_len, context_dim, shape[3];
  size_t nshape = 0;
  st = sdw_json_root(doc, &root);
  if (st == SDW_OK) st = sdw_json_get_string(&root, "format", &fmt);
  if (st == SDW_OK && strcmp(fmt, STORE_FORMAT) != 0)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: format is '%s', expected '%s'", path, fmt, STORE_FORMAT);
  if (st == SDW_OK) st = sdw_json_get_int(&root, "count", &count);
  if (st == SDW_OK) st = sdw_json_get_int_array(&root, "latent_shape", shape, 3, &nshape);
  if (st == SDW_OK && nshape != 3)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: latent_shape must have 3 numbers", path);
  if (st == SDW_OK) st = sdw_json_get_int(&root, "seq_len", &seq_len);
  if (st == SDW_OK) st = sdw_json_get_int_or(&root, "context_dim", 0, &context_dim);
  if (st == SDW_OK) st = sdw_json_get_double(&root, "scaling_factor", &s->scaling_factor);
  const cJSON *chunks = st == SDW_OK ? sdw_json_find(&root, "chunks") : NULL;
  if (st == SDW_OK && (!cJSON_IsArray(chunks) || cJSON_GetArraySize(chunks) < 1 ||
                       cJSON_GetArraySize(chunks) > MAX_CHUNKS))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: chunks must be a non-empty array", path);
  if (st == SDW_OK) {
    s->num_chunks = 0;
    s->chunks = calloc((size_t)cJSON_GetArraySize(chunks), sizeof(chunk_view));
    if (!s->chunks) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  int64_t total = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, chunks) {
    if (st != SDW_OK) break;
    sdw_json_obj co = {.item = c, .doc = sdw_json_doc_name(doc), .path = "chunks[]"};
    const char *file;
    int64_t ccount, bytes;
    if (!cJSON_IsObject(c)) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: chunks[%d] is not an object", path, s->num_chunks);
      break;
    }
    st = sdw_json_get_string(&co, "file", &file);
    if (st == SDW_OK) st = sdw_json_get_int(&co, "count", &ccount);
    if (st == SDW_OK) st = sdw_json_get_int(&co, "bytes", &bytes);
    if (st == SDW_OK && !safe_chunk_name(file))
      st = sdw_fail(SDW_ERR_FORMAT, "%s: chunk file name '%s' is not a plain name", path, file);
    if (st != SDW_OK) break;
    char cpath[4096];
    join_path(cpath, sizeof cpath, dir, file);
    struct stat sb;
    if (stat(cpath, &sb) != 0) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: listed in %s but missing", cpath, path);
      break;
    }
    if ((int64_t)sb.st_size != bytes) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: %lld bytes, the index says %" PRId64 " (truncated or rewritten)", cpath,
                    (long long)sb.st_size, bytes);
      break;
    }
    chunk_view *v = &s->chunks[s->num_chunks];
    st = chunk_open(cpath, v);
    if (st == SDW_ERR_NOT_FOUND || st == SDW_ERR_IO)
      st = sdw_fail(SDW_ERR_FORMAT, "%s", sdw_last_error());
    if (v->st) s->num_chunks++;
    if (st != SDW_OK) break;
    if (v->count != ccount || v->channels != shape[0] || v->height != shape[1] ||
        v->width != shape[2] || v->seq_len != seq_len || v->context_dim != context_dim) {
      st = sdw_fail(SDW_ERR_FORMAT, "%s: count or shapes disagree with %s", cpath, path);
      break;
    }
    v->first = total;
    total += v->count;
  }
  if (st == SDW_OK && total != count)
    st = sdw_fail(SDW_ERR_FORMAT, "%s: count %" PRId64 " but the chunks hold %" PRId64, path, count,
                  total);
  if (st == SDW_OK) {
    s->count = count;
    s->channels = (int)shape[0];
    s->height = (int)shape[1];
    s->width = (int)shape[2];
    s->seq_len = (int)seq_len;
    s->context_dim = (int)context_dim;
  }
  sdw_json_free(doc);
  return st;
}

sdw_status sdw_latent_store_open(const char *dir, sdw_latent_store **out) {
  *out = NULL;
  sdw_latent_store *s = calloc(1, sizeof *s);
  if (!s) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
  sdw_status st = store_load(dir, s);
  if (st != SDW_OK) {
    sdw_latent_store_close(s);
    return st;
  }
  *out = s;
  return SDW_OK;
}

int64_t sdw_latent_store_count(const sdw_latent_store *s) { return s->count; }
void sdw_latent_store_shape(const sdw_latent_store *s, int *channels, int *height, int *width) {
  if (channels) *channels = s->channels;
  if (height) *height = s->height;
  if (width) *width = s->width;
}
int sdw_latent_store_seq_len(const sdw_latent_store *s) { return s->seq_len; }
int sdw_latent_store_context_dim(const sdw_latent_store *s) { return s->context_dim; }
double sdw_latent_store_scaling_factor(const sdw_latent_store *s) { return s->scaling_factor; }

/* The chunk holding sample i (binary search over the first indices); *j the
 * index within it. */
static const chunk_view *locate(const sdw_latent_store *s, int64_t i, int64_t *j) {
  SDW_ASSERT(i >= 0 && i < s->count);
  int lo = 0, hi = s->num_chunks - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (s->chunks[mid].first <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  *j = i - s->chunks[lo].first;
  return &s->chunks[lo];
}

const uint16_t *sdw_latent_store_latent(const sdw_latent_store *s, int64_t i) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  return v->latents + j * (int64_t)v->channels * v->height * v->width;
}
const int32_t *sdw_latent_store_input_ids(const sdw_latent_store *s, int64_t i) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  return v->input_ids + j * v->seq_len;
}
const int32_t *sdw_latent_store_attention_mask(const sdw_latent_store *s, int64_t i) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  return v->attention_mask + j * v->seq_len;
}
const uint16_t *sdw_latent_store_context(const sdw_latent_store *s, int64_t i) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  return v->context ? v->context + j * (int64_t)v->seq_len * v->context_dim : NULL;
}
const char *sdw_latent_store_key(const sdw_latent_store *s, int64_t i, int64_t *len) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  *len = v->key_off[j + 1] - v->key_off[j];
  return v->key_bytes + v->key_off[j];
}
const char *sdw_latent_store_caption(const sdw_latent_store *s, int64_t i, int64_t *len) {
  int64_t j;
  const chunk_view *v = locate(s, i, &j);
  *len = v->caption_off[j + 1] - v->caption_off[j];
  return v->caption_bytes + v->caption_off[j];
}
