/* `sdw pipeline filter-captions`: keep the samples whose captions pass word
 * rules, in a new data directory with the dataset AND the latents of the
 * kept samples (the seed's data_pipeline/06_filter_dataset.py, SEED.md §3.9).
 *
 * Input: DIR/dataset/{train,val}.parquet (pipeline/stage_build.c) and, when
 * it exists, the latent store DIR/latents/{train,val}/ (stage_encode.c).
 * Output in OUT (--out): OUT/dataset/{train,val}.parquet with the kept rows
 * in their order and the same columns, OUT/dataset/dataset_config.json (the
 * source's, with the new sizes and a "filter" object), and OUT/latents/
 * {train,val}/ holding the kept samples' latents, tokens, keys and captions
 * in the same order, in chunks of --chunk-size, index.json last.
 *
 * Rules on the caption, lowercased (ASCII) and stripped; a sample is dropped
 * under the first that rejects it (the manifest's reasons):
 *   too_short      fewer than --min-chars code points
 *   too_few_words  fewer than --min-words whitespace-separated words
 *   excluded       contains an --exclude term
 *   no_keyword     --keywords given and none of them occurs
 *   no_latent      a store exists but has no latent under the sample's key
 *                  (encode --skip-bad left it out): dropped from both
 * A term matches as whole words, case-insensitively for ASCII letters (other
 * letters must match exactly, unlike Python's str.lower()): its bytes occur with no
 * word character (ASCII letter, digit, '_', or any non-ASCII byte) right
 * before or after, as Python's re.search(r"\b" + re.escape(term) + r"\b")
 * does; a term may hold several words ("stephen colbert").
 * --seed-rules sets the seed's keep(): --min-chars 12, --min-words 3 and its
 * ten NSFW terms excluded (nude, naked, nsfw, explicit, xxx, erotic, porn,
 * topless, lingerie, underwear). Its sixteen celebrity names are not all on
 * record (SEED.md names "stephen colbert" and "messi"): pass the list with
 * --exclude.
 *
 * Linking the latents: each kept row's latent is looked up BY ITS KEY in the
 * source store and copied (a chunk mixes samples, so a file link cannot
 * express a subset). The seed's step hard-linked every latent file whose
 * f.stem was in the set of image_keys; but its latent files are named
 * key_to_filename(image_key) ("00000.tar::000000123" is stored as
 * "00000.tar__000000123.npy", SEED.md §3.6), so no stem ever equals a key
 * and its filtered latent directory stayed empty.
 *
 * The stage is a pure function of its inputs and options: every file is
 * written atomically, index.json last, and a rerun (after a kill or not)
 * writes the same bytes. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/parse.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/stages.h"

enum { NCOL = 7, MAX_TERMS = 4096 };

static const char *const k_names[NCOL] = {
    "image_key", "caption", "input_ids", "attention_mask", "shard", "image_offset", "image_size"};

static const sdw_parquet_field k_fields[NCOL] = {
    {"image_key", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"caption", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"input_ids", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_NONE, false},
    {"attention_mask", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_NONE, false},
    {"shard", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"image_offset", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
    {"image_size", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
};

static const char *const k_seed_nsfw[] = {"nude",   "naked", "nsfw",    "explicit", "xxx",
                                          "erotic", "porn",  "topless", "lingerie", "underwear"};

typedef struct terms {
  char *items[MAX_TERMS]; /* lowercased, owned */
  int count;
} terms;

typedef struct fc_options {
  const char *data, *out;
  terms keywords, exclude;
  int64_t min_chars, min_words, chunk_size;
  bool seed_rules;
} fc_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline filter-captions --data DIR --out OUT [rules]\n"
          "\n"
          "Keeps the samples of DIR/dataset/{train,val}.parquet whose captions pass the rules\n"
          "and writes them to OUT/dataset/, with their latents (looked up by key in\n"
          "DIR/latents/, when it exists) in the new store OUT/latents/. Terms match whole\n"
          "words, case-insensitively.\n"
          "\n"
          "  --data DIR              the source data directory\n"
          "  --out OUT               the new data directory (manifest in OUT/manifests)\n"
          "  --keywords LIST         keep only captions with one of these comma-separated\n"
          "                          terms (repeatable)\n"
          "  --exclude LIST          drop captions with one of these terms (repeatable)\n"
          "  --min-chars N           drop captions shorter than N characters (default 0)\n"
          "  --min-words N           drop captions of fewer than N words (default 0)\n"
          "  --seed-rules            the seed's 06_filter_dataset rules: --min-chars 12,\n"
          "                          --min-words 3, its ten NSFW terms excluded\n"
          "  --chunk-size N          samples per latent chunk (default 256)\n"
          "  --help                  this text\n");
}

static void terms_free(terms *t) {
  for (int i = 0; i < t->count; i++)
    free(t->items[i]);
  t->count = 0;
}

/* Adds the comma-separated terms of list, trimmed and lowercased. */
static bool terms_add(terms *t, const char *list) {
  const char *p = list;
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    const char *s = p;
    while (n && (*s == ' ' || *s == '\t'))
      s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
      n--;
    if (n) {
      if (t->count == MAX_TERMS) return false;
      char *c = malloc(n + 1);
      if (!c) return false;
      for (size_t i = 0; i < n; i++)
        c[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
      c[n] = 0;
      t->items[t->count++] = c;
    }
    p = e ? e + 1 : p + strlen(p);
  }
  return true;
}

/* 0 run, 1 --help, 2 usage error (reported). */
static int parse_options(int argc, char **argv, fc_options *o) {
  o->chunk_size = 256;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--seed-rules") == 0) {
      o->seed_rules = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr,
              "sdw: pipeline filter-captions: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--out") == 0)
      o->out = v;
    else if (strcmp(a, "--keywords") == 0)
      ok = terms_add(&o->keywords, v);
    else if (strcmp(a, "--exclude") == 0)
      ok = terms_add(&o->exclude, v);
    else if (strcmp(a, "--min-chars") == 0)
      ok = sdw_parse_i64(v, 0, INT32_MAX, &o->min_chars);
    else if (strcmp(a, "--min-words") == 0)
      ok = sdw_parse_i64(v, 0, INT32_MAX, &o->min_words);
    else if (strcmp(a, "--chunk-size") == 0)
      ok = sdw_parse_i64(v, 1, 1 << 20, &o->chunk_size);
    else {
      fprintf(stderr, "sdw: pipeline filter-captions: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline filter-captions: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data || !o->out) {
    fprintf(stderr, "sdw: pipeline filter-captions: --data and --out are required (see --help)\n");
    return 2;
  }
  if (o->seed_rules) {
    if (o->min_chars < 12) o->min_chars = 12;
    if (o->min_words < 3) o->min_words = 3;
    for (size_t k = 0; k < sizeof k_seed_nsfw / sizeof k_seed_nsfw[0]; k++)
      if (!terms_add(&o->exclude, k_seed_nsfw[k])) return 2;
  }
  if (!o->seed_rules && o->keywords.count == 0 && o->exclude.count == 0 && o->min_chars == 0 &&
      o->min_words == 0) {
    fprintf(stderr, "sdw: pipeline filter-captions: no rule given (--keywords, --exclude, "
                    "--min-chars, --min-words or --seed-rules)\n");
    return 2;
  }
  char a[4096], b[4096];
  if (realpath(o->data, a) && realpath(o->out, b) && strcmp(a, b) == 0) {
    fprintf(stderr, "sdw: pipeline filter-captions: --out must be another directory than --data\n");
    return 2;
  }
  return 0;
}

/* --- matching ------------------------------------------------------------------------ */

static bool is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c >= 0x80;
}

static bool is_space(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13); }

/* Does term (lowercased) occur in text (lowercased, n bytes) as whole words? */
static bool has_term(const char *text, size_t n, const char *term) {
  size_t m = strlen(term);
  if (m == 0 || m > n) return false;
  for (size_t i = 0; i + m <= n; i++) {
    if (text[i] != term[0] || memcmp(text + i, term, m) != 0) continue;
    bool left = i == 0 || !is_word_byte((unsigned char)text[i - 1]) ||
                !is_word_byte((unsigned char)term[0]);
    bool right = i + m == n || !is_word_byte((unsigned char)text[i + m]) ||
                 !is_word_byte((unsigned char)term[m - 1]);
    if (left && right) return true;
  }
  return false;
}

/* NULL when the caption is kept, else the reason. buf: scratch of n bytes. */
static const char *judge(const fc_options *o, const uint8_t *cap, size_t n, char *buf) {
  size_t s = 0, e = n;
  while (s < e && is_space(cap[s]))
    s++;
  while (e > s && is_space(cap[e - 1]))
    e--;
  size_t len = e - s;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = cap[s + i];
    buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  int64_t chars = 0, words = 0;
  bool in_word = false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)buf[i];
    if ((c & 0xC0) != 0x80) chars++;
    if (is_space(c))
      in_word = false;
    else if (!in_word) {
      in_word = true;
      words++;
    }
  }
  if (chars < o->min_chars) return "too_short";
  if (words < o->min_words) return "too_few_words";
  for (int t = 0; t < o->exclude.count; t++)
    if (has_term(buf, len, o->exclude.items[t])) return "excluded";
  if (o->keywords.count) {
    for (int t = 0; t < o->keywords.count; t++)
      if (has_term(buf, len, o->keywords.items[t])) return NULL;
    return "no_keyword";
  }
  return NULL;
}

/* --- the source store's keys -------------------------------------------------------- */

typedef struct key_index {
  int64_t *slots; /* sample index + 1, 0 empty */
  size_t cap;
  const sdw_latent_store *store;
} key_index;

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
  return h;
}

static sdw_status key_index_build(key_index *ki, const sdw_latent_store *s) {
  int64_t n = sdw_latent_store_count(s);
  ki->store = s;
  ki->cap = 16;
  while (ki->cap < (size_t)n * 2)
    ki->cap *= 2;
  ki->slots = calloc(ki->cap, sizeof *ki->slots);
  if (!ki->slots)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for %lld keys", (long long)n);
  for (int64_t i = 0; i < n; i++) {
    int64_t len;
    const char *k = sdw_latent_store_key(s, i, &len);
    size_t h = (size_t)hash_bytes(k, (size_t)len) & (ki->cap - 1);
    while (ki->slots[h])
      h = (h + 1) & (ki->cap - 1);
    ki->slots[h] = i + 1;
  }
  return SDW_OK;
}

/* Index of the first sample with this key, or -1. */
static int64_t key_index_find(const key_index *ki, const uint8_t *key, size_t n) {
  size_t h = (size_t)hash_bytes((const char *)key, n) & (ki->cap - 1);
  int64_t best = -1;
  while (ki->slots[h]) {
    int64_t i = ki->slots[h] - 1, len;
    const char *k = sdw_latent_store_key(ki->store, i, &len);
    if ((size_t)len == n && memcmp(k, key, n) == 0 && (best < 0 || i < best)) best = i;
    h = (h + 1) & (ki->cap - 1);
  }
  return best;
}

/* --- one split ------------------------------------------------------------------------ */

static char *dup_bytes(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s) {
    if (n) memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

/* Writes OUT/latents/<split>/chunk-<c> from the kept samples [from, to). */
static sdw_status write_chunk(const sdw_latent_store *s, const int64_t *idx, int64_t from,
                              int64_t to, const char *path) {
  int C, H, W;
  sdw_latent_store_shape(s, &C, &H, &W);
  const int L = sdw_latent_store_seq_len(s), D = sdw_latent_store_context_dim(s);
  const int64_t n = to - from;
  const size_t per = (size_t)C * H * W;
  uint16_t *lat = malloc((size_t)n * per * 2);
  uint16_t *ctx = D ? malloc((size_t)n * L * D * 2) : NULL;
  int32_t *ids = malloc((size_t)n * L * 4), *mask = malloc((size_t)n * L * 4);
  char **keys = calloc((size_t)n, sizeof *keys), **caps = calloc((size_t)n, sizeof *caps);
  sdw_status st = SDW_OK;
  if (!lat || (D && !ctx) || !ids || !mask || !keys || !caps)
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int64_t j = 0; j < n && st == SDW_OK; j++) {
    const int64_t i = idx[from + j];
    memcpy(lat + (size_t)j * per, sdw_latent_store_latent(s, i), per * 2);
    memcpy(ids + (size_t)j * L, sdw_latent_store_input_ids(s, i), (size_t)L * 4);
    memcpy(mask + (size_t)j * L, sdw_latent_store_attention_mask(s, i), (size_t)L * 4);
    if (D) memcpy(ctx + (size_t)j * L * D, sdw_latent_store_context(s, i), (size_t)L * D * 2);
    int64_t kl, cl;
    const char *k = sdw_latent_store_key(s, i, &kl);
    const char *c = sdw_latent_store_caption(s, i, &cl);
    keys[j] = dup_bytes(k, (size_t)kl);
    caps[j] = dup_bytes(c, (size_t)cl);
    if (!keys[j] || !caps[j]) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (st == SDW_OK) {
    sdw_latent_chunk ch = {.count = n,
                           .channels = C,
                           .height = H,
                           .width = W,
                           .seq_len = L,
                           .context_dim = D,
                           .latents = lat,
                           .input_ids = ids,
                           .attention_mask = mask,
                           .context = ctx,
                           .keys = (const char *const *)keys,
                           .captions = (const char *const *)caps};
    st = sdw_latent_chunk_write(path, &ch);
  }
  for (int64_t j = 0; keys && caps && j < n; j++) {
    free(keys[j]);
    free(caps[j]);
  }
  free(keys);
  free(caps);
  free(lat);
  free(ctx);
  free(ids);
  free(mask);
  return st;
}

/* The source index.json's image_size and vae (for the new index). */
static void store_meta(const char *dir, int *image_size, char *vae, size_t vae_cap) {
  char p[8192];
  snprintf(p, sizeof p, "%.4000s/index.json", dir);
  void *text = NULL;
  size_t n = 0;
  *image_size = 0;
  snprintf(vae, vae_cap, "unknown");
  if (sdw_read_file(p, &text, &n) != SDW_OK) return;
  cJSON *j = cJSON_ParseWithLength(text, n);
  const cJSON *is = cJSON_GetObjectItemCaseSensitive(j, "image_size");
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vae");
  if (cJSON_IsNumber(is)) *image_size = (int)is->valuedouble;
  if (cJSON_IsString(v)) snprintf(vae, vae_cap, "%s", v->valuestring);
  cJSON_Delete(j);
  free(text);
}

static sdw_status run_split(const fc_options *o, sdw_manifest *m, const char *split, cJSON *report,
                            int64_t *kept_out, char *tokenizer, size_t tok_cap) {
  char in_path[8192], out_path[8192], sdir[4096], odir[4096], idx_path[8192];
  snprintf(in_path, sizeof in_path, "%s/dataset/%s.parquet", o->data, split);
  snprintf(out_path, sizeof out_path, "%s/dataset/%s.parquet", o->out, split);
  snprintf(sdir, sizeof sdir, "%.3000s/latents/%s", o->data, split);
  snprintf(odir, sizeof odir, "%.3000s/latents/%s", o->out, split);
  snprintf(idx_path, sizeof idx_path, "%s/index.json", sdir);
  *kept_out = 0;
  sdw_parquet_file *f;
  sdw_status st = sdw_parquet_open(in_path, NULL, &f);
  if (st == SDW_ERR_NOT_FOUND) {
    char why[1024];
    snprintf(why, sizeof why, "%s", sdw_last_error());
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s (run `sdw pipeline build` first)", why);
  }
  SDW_TRY(st);
  sdw_manifest_add_input(m, in_path, true);
  const char *tk = sdw_parquet_metadata_get(f, "sdw.tokenizer");
  snprintf(tokenizer, tok_cap, "%s", tk ? tk : "unknown");
  sdw_parquet_array col[NCOL];
  st = sdw_parquet_read_columns(f, -1, k_names, NCOL, col);
  const int64_t rows = sdw_parquet_num_rows(f);
  sdw_parquet_close(f);
  for (int c = 0; c < NCOL && st == SDW_OK; c++)
    if (col[c].type != k_fields[c].type || col[c].length != rows || col[c].null_count)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: column %s is not the dataset's", in_path, k_names[c]);
  if (st != SDW_OK) {
    for (int c = 0; c < NCOL; c++)
      sdw_parquet_array_free(&col[c]);
    return st;
  }

  /* the source store, when there is one */
  sdw_latent_store *store = NULL;
  key_index ki = {0};
  struct stat sb;
  if (stat(idx_path, &sb) == 0) {
    st = sdw_latent_store_open(sdir, &store);
    if (st == SDW_OK) st = key_index_build(&ki, store);
    if (st == SDW_OK) sdw_manifest_add_input(m, idx_path, true);
  }
  int64_t *kept = malloc((size_t)(rows ? rows : 1) * sizeof *kept);
  int64_t *lat_idx = malloc((size_t)(rows ? rows : 1) * sizeof *lat_idx);
  size_t maxcap = 1;
  for (int64_t i = 0; i < rows; i++) {
    size_t n = (size_t)(col[1].offsets[i + 1] - col[1].offsets[i]);
    if (n > maxcap) maxcap = n;
  }
  char *buf = malloc(maxcap);
  if (st == SDW_OK && (!kept || !lat_idx || !buf))
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  int64_t nk = 0;
  for (int64_t i = 0; i < rows && st == SDW_OK; i++) {
    sdw_manifest_count_in(m, 1);
    size_t n;
    const uint8_t *cap = sdw_parquet_array_bytes(&col[1], i, &n);
    const char *reason = judge(o, cap, n, buf);
    int64_t li = -1;
    if (!reason && store) {
      size_t kn;
      const uint8_t *key = sdw_parquet_array_bytes(&col[0], i, &kn);
      li = key_index_find(&ki, key, kn);
      if (li < 0) reason = "no_latent";
    }
    if (reason) {
      sdw_manifest_count_failed(m, reason);
      continue;
    }
    kept[nk] = i;
    lat_idx[nk] = li;
    nk++;
    sdw_manifest_count_out(m, 1);
  }
  free(buf);

  /* the dataset */
  if (st == SDW_OK) {
    char dsdir[8192];
    snprintf(dsdir, sizeof dsdir, "%s/dataset", o->out);
    st = sdw_mkdir_p(dsdir);
  }
  if (st == SDW_OK) {
    sdw_parquet_writer *w;
    st = sdw_parquet_writer_open(out_path, k_fields, NCOL, NULL, &w);
    if (st == SDW_OK) st = sdw_parquet_writer_set_metadata(w, "sdw.format", "sdw-dataset/1");
    if (st == SDW_OK) st = sdw_parquet_writer_set_metadata(w, "sdw.tokenizer", tokenizer);
    for (int64_t r = 0; r < nk && st == SDW_OK; r++) {
      for (int c = 0; c < NCOL; c++) {
        if (k_fields[c].type == SDW_PARQUET_INT64) {
          sdw_parquet_writer_set_i64(w, c, ((const int64_t *)col[c].values)[kept[r]]);
        } else {
          size_t len;
          const uint8_t *b = sdw_parquet_array_bytes(&col[c], kept[r], &len);
          sdw_parquet_writer_set_bytes(w, c, b, len);
        }
      }
      st = sdw_parquet_writer_end_row(w);
    }
    if (st == SDW_OK)
      st = sdw_parquet_writer_close(w);
    else
      sdw_parquet_writer_abort(w);
    if (st == SDW_OK) sdw_manifest_add_output(m, out_path);
  }

  /* the latents */
  cJSON *rep = cJSON_CreateObject();
  cJSON_AddItemToObject(report, split, rep);
  cJSON_AddNumberToObject(rep, "rows", (double)rows);
  cJSON_AddNumberToObject(rep, "kept", (double)nk);
  cJSON_AddBoolToObject(rep, "latents", store != NULL);
  if (st == SDW_OK && store && nk == 0) {
    /* nothing kept: no store (an earlier run's must not stay listed) */
    char oidx[8192];
    snprintf(oidx, sizeof oidx, "%s/index.json", odir);
    unlink(oidx);
  }
  if (st == SDW_OK && store && nk > 0) {
    char oidx[8192];
    snprintf(oidx, sizeof oidx, "%s/index.json", odir);
    st = sdw_mkdir_p(odir);
    if (st == SDW_OK) unlink(oidx); /* the store is about to change */
    const int64_t nc = (nk + o->chunk_size - 1) / o->chunk_size;
    for (int64_t c = 0; c < nc && st == SDW_OK; c++) {
      char cp[8192];
      snprintf(cp, sizeof cp, "%s/chunk-%05lld.safetensors", odir, (long long)c);
      int64_t to = (c + 1) * o->chunk_size < nk ? (c + 1) * o->chunk_size : nk;
      st = write_chunk(store, lat_idx, c * o->chunk_size, to, cp);
      sdw_manifest_flush(m, false);
    }
    /* chunks of an earlier, larger result would be listed by nobody: remove */
    for (int64_t c = nc; st == SDW_OK; c++) {
      char cp[8192];
      snprintf(cp, sizeof cp, "%s/chunk-%05lld.safetensors", odir, (long long)c);
      if (unlink(cp) != 0) break;
    }
    int image_size;
    char vae[2048];
    store_meta(sdir, &image_size, vae, sizeof vae);
    if (st == SDW_OK)
      st = sdw_latent_store_finish(odir, split, (int)nc, sdw_latent_store_scaling_factor(store),
                                   image_size, vae);
    if (st == SDW_OK) sdw_manifest_add_output(m, oidx);
  }
  free(ki.slots);
  sdw_latent_store_close(store);
  free(kept);
  free(lat_idx);
  for (int c = 0; c < NCOL; c++)
    sdw_parquet_array_free(&col[c]);
  *kept_out = nk;
  return st;
}

static cJSON *terms_json(const terms *t) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < t->count; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(t->items[i]));
  return a;
}

/* OUT/dataset/dataset_config.json: the source's, with new sizes and the filter. */
static sdw_status write_config(const fc_options *o, int64_t train, int64_t val) {
  char p[8192];
  snprintf(p, sizeof p, "%s/dataset/dataset_config.json", o->data);
  void *text = NULL;
  size_t n = 0;
  cJSON *cfg = NULL;
  if (sdw_read_file(p, &text, &n) == SDW_OK) cfg = cJSON_ParseWithLength(text, n);
  free(text);
  if (!cJSON_IsObject(cfg)) {
    cJSON_Delete(cfg);
    cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "format", "sdw-dataset/1");
  }
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "train_size");
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "val_size");
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "filter");
  cJSON_AddNumberToObject(cfg, "train_size", (double)train);
  cJSON_AddNumberToObject(cfg, "val_size", (double)val);
  cJSON *flt = cJSON_CreateObject();
  cJSON_AddStringToObject(flt, "stage", "filter-captions");
  cJSON_AddStringToObject(flt, "source", o->data);
  cJSON_AddItemToObject(flt, "keywords", terms_json(&o->keywords));
  cJSON_AddItemToObject(flt, "exclude", terms_json(&o->exclude));
  cJSON_AddNumberToObject(flt, "min_chars", (double)o->min_chars);
  cJSON_AddNumberToObject(flt, "min_words", (double)o->min_words);
  cJSON_AddItemToObject(cfg, "filter", flt);
  char *out = cJSON_Print(cfg);
  cJSON_Delete(cfg);
  if (!out) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  size_t l = strlen(out);
  char *o2 = realloc(out, l + 2);
  if (o2) {
    out = o2;
    out[l++] = '\n';
    out[l] = 0;
  }
  snprintf(p, sizeof p, "%s/dataset/dataset_config.json", o->out);
  sdw_status st = sdw_atomic_write(p, out, l);
  free(out);
  return st;
}

int sdw_pipeline_filter_captions_main(int argc, char **argv) {
  fc_options *o = calloc(1, sizeof *o);
  if (!o) return 1;
  int p = parse_options(argc, argv, o);
  if (p) {
    if (p == 1) usage(stdout);
    terms_free(&o->keywords);
    terms_free(&o->exclude);
    free(o);
    return p == 1 ? 0 : 2;
  }
  sdw_manifest m;
  sdw_status st = sdw_mkdir_p(o->out);
  if (st == SDW_OK) st = sdw_manifest_begin(&m, o->out, "filter-captions");
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline filter-captions: %s\n", sdw_last_error());
    terms_free(&o->keywords);
    terms_free(&o->exclude);
    free(o);
    return 1;
  }
  cJSON *report = cJSON_CreateObject();
  cJSON_AddItemToObject(m.extra, "splits", report);
  int64_t train = 0, val = 0;
  char tokenizer[64];
  st = run_split(o, &m, "train", report, &train, tokenizer, sizeof tokenizer);
  if (st == SDW_OK) st = run_split(o, &m, "val", report, &val, tokenizer, sizeof tokenizer);
  if (st == SDW_OK) st = write_config(o, train, val);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", sdw_last_error());
  if (st != SDW_OK) sdw_manifest_set_message(&m, "%s", msg);
  sdw_manifest_finish(&m, st == SDW_OK ? "done" : "failed");
  terms_free(&o->keywords);
  terms_free(&o->exclude);
  free(o);
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline filter-captions: %s\n", msg);
    return 1;
  }
  return 0;
}
