/* `sdw pipeline build`: the token cache -> the training dataset
 * (the seed's data_pipeline/05_build_hf_dataset.py, SEED.md §3.5).
 *
 * Steps:
 *  1. Reads every DIR/tokens/NAME.parquet (the preprocess stage's files) and
 *     orders the rows stably: by shard name, then by image_key (bytewise).
 *  2. Shuffles them with a Fisher-Yates shuffle (i from n-1 down to 1, j
 *     uniform in [0, i]) driven by the Philox4x32-10 u32 stream (seed,
 *     subsequence 0) of core/base/rng.h: j takes the next two u32 as a
 *     64-bit number (first one high) and rejects values >= the largest
 *     multiple of i+1 below 2^64. This order is sdw's own and deterministic
 *     (the same on every machine and build), not pandas' df.sample order.
 *  3. The validation split is the FIRST min(--val-size, n / 10) rows (integer
 *     division) of the shuffled order, the rest is train, as in the seed.
 *  4. Writes DIR/dataset/train.parquet and DIR/dataset/val.parquet with the
 *     token cache's columns (image_key, caption, input_ids, attention_mask
 *     as 308-byte binaries of 77 little-endian int32, shard, image_offset,
 *     image_size; see pipeline/stage_preprocess.c), then
 *     DIR/dataset/dataset_config.json:
 *       {"format": "sdw-dataset/1", "mode": "standard", "train_size": N,
 *        "val_size": N, "val_size_requested": N, "seed": S,
 *        "shuffle": "philox4x32-10 fisher-yates (sdw)", "tokenizer": "hf",
 *        "image_size": 512, "columns": [...], "shard_dir": "...",
 *        "sources": [{"file": "00000.parquet", "size": B, "rows": R,
 *                     "sha256": "..."}]}
 *     The seed's "created" timestamp is left out so that a rerun writes
 *     identical bytes. Every file is written atomically, the config last.
 *
 * The stage is a pure function of the token cache and its options: a rerun
 * (after a kill or not) recomputes everything and writes the same bytes. */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/rng.h"
#include "core/base/sha256.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/stages.h"

enum { NCOL = 7 };

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

typedef struct build_options {
  const char *data;
  int64_t val_size;
  uint64_t seed;
} build_options;

static void usage(FILE *out) {
  fprintf(out, "usage: sdw pipeline build --data DIR [options]\n"
               "\n"
               "Merges the token cache DIR/tokens/*.parquet (shard, then key order), shuffles it\n"
               "with a seeded Philox stream and writes DIR/dataset/train.parquet, val.parquet\n"
               "(the first min(val-size, n/10) shuffled rows) and dataset_config.json.\n"
               "\n"
               "  --data DIR              data directory (manifest in DIR/manifests)\n"
               "  --val-size N            validation rows at most (default 1000)\n"
               "  --seed S                shuffle seed (default 42)\n"
               "  --help                  this text\n");
}

static int parse_options(int argc, char **argv, build_options *o) {
  memset(o, 0, sizeof *o);
  o->val_size = 1000;
  o->seed = 42;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline build: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    int64_t n = 0;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--val-size") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->val_size);
    else if (strcmp(a, "--seed") == 0) {
      ok = sdw_parse_i64(v, 0, INT64_MAX, &n);
      o->seed = (uint64_t)n;
    } else {
      fprintf(stderr, "sdw: pipeline build: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline build: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data) {
    fprintf(stderr, "sdw: pipeline build: --data is required (see --help)\n");
    return 2;
  }
  return 0;
}

/* --- the merged table ----------------------------------------------------------- */

typedef struct table {
  sdw_parquet_array col[NCOL];
  int64_t rows;
} table;

static void table_free(table *t) {
  for (int c = 0; c < NCOL; c++)
    sdw_parquet_array_free(&t->col[c]);
}

/* Appends the rows of one token-cache file. */
static sdw_status table_append(table *t, const char *path, int64_t *rows, char *tokenizer,
                               size_t tok_size) {
  sdw_parquet_file *f;
  SDW_TRY(sdw_parquet_open(path, NULL, &f));
  sdw_parquet_array in[NCOL];
  sdw_status st = sdw_parquet_read_columns(f, -1, k_names, NCOL, in);
  const char *tk = sdw_parquet_metadata_get(f, "sdw.tokenizer");
  if (st == SDW_OK && tk) {
    if (!tokenizer[0])
      snprintf(tokenizer, tok_size, "%s", tk);
    else if (strcmp(tokenizer, tk) != 0)
      snprintf(tokenizer, tok_size, "mixed");
  }
  *rows = sdw_parquet_num_rows(f);
  for (int c = 0; c < NCOL && st == SDW_OK; c++) {
    if (in[c].type != k_fields[c].type || in[c].length != *rows || in[c].null_count)
      st = sdw_fail(SDW_ERR_FORMAT, "%s: column %s is not the token cache's", path, k_names[c]);
  }
  for (int64_t i = 0; i < *rows && st == SDW_OK; i++) {
    for (int c = 0; c < NCOL && st == SDW_OK; c++) {
      if (k_fields[c].type == SDW_PARQUET_INT64) {
        st = sdw_parquet_array_append_value(&t->col[c], (const int64_t *)in[c].values + i);
      } else {
        size_t len;
        const uint8_t *b = sdw_parquet_array_bytes(&in[c], i, &len);
        if ((c == 2 || c == 3) && len != 4 * 77)
          st = sdw_fail(SDW_ERR_FORMAT, "%s: row %lld: %s is %zu bytes, not 308", path,
                        (long long)i, k_names[c], len);
        else
          st = sdw_parquet_array_append_bytes(&t->col[c], b, len);
      }
    }
  }
  if (st == SDW_OK) t->rows += *rows;
  for (int c = 0; c < NCOL; c++)
    sdw_parquet_array_free(&in[c]);
  sdw_parquet_close(f);
  return st;
}

static const table *g_sort_table; /* qsort has no context argument */

static int bytes_cmp(const sdw_parquet_array *a, int64_t i, int64_t j) {
  size_t la, lb;
  const uint8_t *pa = sdw_parquet_array_bytes(a, i, &la);
  const uint8_t *pb = sdw_parquet_array_bytes(a, j, &lb);
  size_t n = la < lb ? la : lb;
  int c = n ? memcmp(pa, pb, n) : 0;
  if (c) return c;
  return la < lb ? -1 : la > lb;
}

static int cmp_rows(const void *x, const void *y) {
  int64_t i = *(const int64_t *)x, j = *(const int64_t *)y;
  int c = bytes_cmp(&g_sort_table->col[4], i, j);
  if (!c) c = bytes_cmp(&g_sort_table->col[0], i, j);
  if (!c) c = i < j ? -1 : i > j;
  return c;
}

/* Pulls u32 values of one Philox stream in order. */
typedef struct u32_stream {
  sdw_rng pos;
  uint32_t buf[1024];
  size_t n, at;
} u32_stream;

static uint32_t stream_next(u32_stream *s) {
  if (s->at == s->n) {
    sdw_rng_fill_u32(s->buf, 1024, s->pos.seed, s->pos.subsequence, s->pos.offset);
    s->pos.offset += 1024;
    s->n = 1024;
    s->at = 0;
  }
  return s->buf[s->at++];
}

/* Uniform in [0, bound) without bias (bound >= 1). */
static uint64_t stream_below(u32_stream *s, uint64_t bound) {
  uint64_t limit = UINT64_MAX - (UINT64_MAX % bound + 1) % bound; /* last accepted value */
  for (;;) {
    uint64_t hi = stream_next(s), lo = stream_next(s);
    uint64_t v = hi << 32 | lo;
    if (v <= limit) return v % bound;
  }
}

static sdw_status write_split(const char *path, const table *t, const int64_t *order, int64_t from,
                              int64_t to, const char *tokenizer) {
  sdw_parquet_writer *w;
  SDW_TRY(sdw_parquet_writer_open(path, k_fields, NCOL, NULL, &w));
  sdw_status st = sdw_parquet_writer_set_metadata(w, "sdw.format", "sdw-dataset/1");
  if (st == SDW_OK) st = sdw_parquet_writer_set_metadata(w, "sdw.tokenizer", tokenizer);
  for (int64_t r = from; r < to && st == SDW_OK; r++) {
    int64_t i = order[r];
    for (int c = 0; c < NCOL; c++) {
      if (k_fields[c].type == SDW_PARQUET_INT64) {
        sdw_parquet_writer_set_i64(w, c, ((const int64_t *)t->col[c].values)[i]);
      } else {
        size_t len;
        const uint8_t *b = sdw_parquet_array_bytes(&t->col[c], i, &len);
        sdw_parquet_writer_set_bytes(w, c, b, len);
      }
    }
    st = sdw_parquet_writer_end_row(w);
  }
  if (st != SDW_OK) {
    sdw_parquet_writer_abort(w);
    return st;
  }
  return sdw_parquet_writer_close(w);
}

static sdw_status run_build(const build_options *o, sdw_manifest *m) {
  char tokens[4096], dsdir[4096], path[8192];
  snprintf(tokens, sizeof tokens, "%s/tokens", o->data);
  snprintf(dsdir, sizeof dsdir, "%s/dataset", o->data);
  char **files;
  int nf;
  sdw_status listed = sdw_list_files(tokens, ".parquet", &files, &nf);
  if (listed == SDW_ERR_NOT_FOUND) {
    char why[512];
    snprintf(why, sizeof why, "%s", sdw_last_error());
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s (run `sdw pipeline preprocess` first)", why);
  }
  SDW_TRY(listed);
  table t;
  for (int c = 0; c < NCOL; c++)
    sdw_parquet_array_init(&t.col[c], k_fields[c].type);
  t.rows = 0;
  char tokenizer[32] = "";
  int64_t *order = NULL;
  cJSON *config = cJSON_CreateObject(), *sources = cJSON_CreateArray();
  sdw_status st = sdw_mkdir_p(dsdir);
  for (int i = 0; i < nf && st == SDW_OK; i++) {
    snprintf(path, sizeof path, "%s/%s", tokens, files[i]);
    if (i < SDW_MANIFEST_MAX_INPUTS) sdw_manifest_add_input(m, path, false);
    int64_t rows = 0;
    st = table_append(&t, path, &rows, tokenizer, sizeof tokenizer);
    unsigned char dg[32];
    char hex[65];
    struct stat sb;
    if (st == SDW_OK) st = sdw_sha256_file(path, dg);
    if (st == SDW_OK && stat(path, &sb) != 0)
      st = sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    if (st == SDW_OK) {
      sdw_sha256_hex(dg, hex);
      cJSON *s = cJSON_CreateObject();
      cJSON_AddStringToObject(s, "file", files[i]);
      cJSON_AddNumberToObject(s, "size", (double)sb.st_size);
      cJSON_AddNumberToObject(s, "rows", (double)rows);
      cJSON_AddStringToObject(s, "sha256", hex);
      cJSON_AddItemToArray(sources, s);
      sdw_manifest_count_in(m, rows);
      sdw_manifest_flush(m, false);
    }
  }
  int64_t n = t.rows;
  if (st == SDW_OK && !(order = malloc((size_t)(n ? n : 1) * sizeof *order)))
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory (%lld rows)", (long long)n);
  if (st == SDW_OK) {
    for (int64_t i = 0; i < n; i++)
      order[i] = i;
    g_sort_table = &t;
    if (n) qsort(order, (size_t)n, sizeof *order, cmp_rows);
    u32_stream rs = {.pos = sdw_rng_make(o->seed, 0)};
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)stream_below(&rs, (uint64_t)i + 1);
      int64_t tmp = order[i];
      order[i] = order[j];
      order[j] = tmp;
    }
  }
  int64_t nval = o->val_size < n / 10 ? o->val_size : n / 10;
  if (!tokenizer[0]) snprintf(tokenizer, sizeof tokenizer, "unknown");
  char train_path[8192], val_path[8192];
  snprintf(train_path, sizeof train_path, "%s/train.parquet", dsdir);
  snprintf(val_path, sizeof val_path, "%s/val.parquet", dsdir);
  if (st == SDW_OK) st = write_split(train_path, &t, order, nval, n, tokenizer);
  if (st == SDW_OK) st = write_split(val_path, &t, order, 0, nval, tokenizer);
  if (st == SDW_OK) {
    cJSON_AddStringToObject(config, "format", "sdw-dataset/1");
    cJSON_AddStringToObject(config, "mode", "standard");
    cJSON_AddNumberToObject(config, "train_size", (double)(n - nval));
    cJSON_AddNumberToObject(config, "val_size", (double)nval);
    cJSON_AddNumberToObject(config, "val_size_requested", (double)o->val_size);
    cJSON_AddNumberToObject(config, "seed", (double)o->seed);
    cJSON_AddStringToObject(config, "shuffle", "philox4x32-10 fisher-yates (sdw)");
    cJSON_AddStringToObject(config, "tokenizer", tokenizer);
    cJSON_AddNumberToObject(config, "image_size", 512);
    cJSON *cols = cJSON_CreateArray();
    for (int c = 0; c < NCOL; c++)
      cJSON_AddItemToArray(cols, cJSON_CreateString(k_names[c]));
    cJSON_AddItemToObject(config, "columns", cols);
    cJSON_AddStringToObject(config, "token_layout", "input_ids/attention_mask: 77 x int32 LE");
    cJSON_AddItemToObject(config, "sources", sources);
    sources = NULL;
    char *text = cJSON_Print(config);
    if (!text)
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    else {
      size_t l = strlen(text);
      char *t2 = realloc(text, l + 2);
      if (t2) {
        text = t2;
        text[l++] = '\n';
        text[l] = 0;
      }
      snprintf(path, sizeof path, "%s/dataset_config.json", dsdir);
      st = sdw_atomic_write(path, text, l);
      free(text);
    }
    sdw_manifest_count_out(m, n);
    sdw_manifest_add_output(m, train_path);
    sdw_manifest_add_output(m, val_path);
    sdw_manifest_add_output(m, path);
    cJSON_AddNumberToObject(m->extra, "train_size", (double)(n - nval));
    cJSON_AddNumberToObject(m->extra, "val_size", (double)nval);
    cJSON_AddNumberToObject(m->extra, "seed", (double)o->seed);
  }
  cJSON_Delete(sources);
  cJSON_Delete(config);
  free(order);
  table_free(&t);
  for (int i = 0; i < nf; i++)
    free(files[i]);
  free(files);
  return st;
}

int sdw_pipeline_build_main(int argc, char **argv) {
  build_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  sdw_manifest m;
  sdw_status st = sdw_manifest_begin(&m, o.data, "build");
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline build: %s\n", sdw_last_error());
    return 1;
  }
  st = run_build(&o, &m);
  if (st != SDW_OK) sdw_manifest_set_message(&m, "%s", sdw_last_error());
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", sdw_last_error());
  sdw_manifest_finish(&m, st == SDW_OK ? "done" : "failed");
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline build: %s\n", msg);
    return 1;
  }
  return 0;
}
