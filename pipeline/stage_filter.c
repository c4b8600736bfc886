/* `sdw pipeline filter`: the seed's metadata filter
 * (data_pipeline/02_filter_metadata.py, SEED.md §3.2) over LAION parquet
 * files, written as one parquet file.
 *
 * Column names are normalised case-insensitively, first alias wins:
 *   URL: url;  TEXT: text, caption;  WIDTH: width;  HEIGHT: height;
 *   similarity: similarity, clip_sim;  aesthetic: aesthetic_score, aesthetic;
 *   watermark: pwatermark, watermark, watermark_score;
 *   NSFW: nsfw, punsafe, is_nsfw.
 * URL, TEXT, aesthetic and similarity are required (a file without one is
 * skipped with a message, as the seed's KeyError skips it); a filter whose
 * column is absent is not applied.
 *
 * Filters, in the seed's order; a row is counted under the first one that
 * rejects it (the manifest's failure reason is the filter's name):
 *   null        URL or TEXT null
 *   aesthetic   aesthetic >= --min-aesthetic (null fails: NaN compares false)
 *   similarity  similarity >= --min-similarity
 *   size        WIDTH >= --min-width and HEIGHT >= --min-height
 *   aspect      --min-aspect <= WIDTH/HEIGHT <= --max-aspect
 *   caption     --min-caption <= characters (code points) of TEXT <= --max-caption
 *   watermark   watermark < --max-watermark (strict)
 *   nsfw        a string column keeps "UNLIKELY"/"unlikely" only, a numeric
 *               (or boolean) one keeps values < --max-punsafe (0.2); --allow-nsfw: off
 *   duplicate   a URL already kept (from any input: one hash set over all)
 * Comparisons against a FLOAT column are done in float, as numpy compares a
 * float32 column with a Python float (NEP 50); others in double.
 *
 * --max-samples N: the seed's seeded sampling — the input file order is
 * shuffled with numpy's legacy RandomState(seed).shuffle (MT19937, Fisher-
 * Yates from the end with masked rejection), files are filtered in that
 * order and the kept rows are cut at N (later rows are counted "skipped").
 * Without it files are processed in sorted path order.
 *
 * Output: URL, TEXT (strings), aesthetic_score, similarity (doubles), snappy,
 * written atomically. Resume: when the manifest says "done" for the same
 * output, inputs (path, size, mtime) and options, and the output exists,
 * nothing is done; otherwise everything is recomputed (the stage is fast). */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/stages.h"

enum { MAX_INPUT_ARGS = 64 };

/* Set by SIGINT/SIGTERM: the output is abandoned (nothing appears), the
 * manifest says "interrupted" and the exit status is 130. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

typedef struct filter_options {
  const char *data;
  const char *inputs[MAX_INPUT_ARGS];
  int input_count;
  const char *output;
  double min_aesthetic, min_similarity, min_aspect, max_aspect, max_watermark, max_punsafe;
  int64_t min_width, min_height, min_caption, max_caption;
  bool allow_nsfw, dedup;
  int64_t max_samples; /* -1: none */
  uint32_t seed;
} filter_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline filter --data DIR --input PATH [--input PATH ...] [options]\n"
          "\n"
          "Filters LAION metadata parquet files with the seed's rules, in its order, into one\n"
          "parquet file with URL, TEXT, aesthetic_score and similarity (snappy).\n"
          "\n"
          "  --data DIR              data directory (manifest in DIR/manifests)\n"
          "  --input PATH            a parquet file or a directory searched recursively for\n"
          "                          *.parquet (repeatable)\n"
          "  --output FILE           (default DIR/filtered/filtered.parquet)\n"
          "  --min-aesthetic X       keep aesthetic >= X (default 6.5)\n"
          "  --min-similarity X      keep similarity >= X (default 0.28)\n"
          "  --min-width N           keep WIDTH >= N (default 512)\n"
          "  --min-height N          keep HEIGHT >= N (default 512)\n"
          "  --min-aspect X          keep WIDTH/HEIGHT >= X (default 0.5)\n"
          "  --max-aspect X          keep WIDTH/HEIGHT <= X (default 2.0)\n"
          "  --min-caption N         keep captions of >= N characters (default 20)\n"
          "  --max-caption N         keep captions of <= N characters (default 300)\n"
          "  --max-watermark X       keep pwatermark < X (default 0.5)\n"
          "  --max-punsafe X         keep a numeric NSFW column < X (default 0.2)\n"
          "  --allow-nsfw            no NSFW filter\n"
          "  --no-dedup              keep duplicate URLs\n"
          "  --max-samples N         keep at most N rows; files are taken in a seeded\n"
          "                          shuffled order (default: all, sorted order)\n"
          "  --seed S                shuffle seed (default 42)\n"
          "  --help                  this text\n");
}

/* Returns 0 to run, 1 for --help, 2 for a usage error (reported). */
static int parse_options(int argc, char **argv, filter_options *o) {
  memset(o, 0, sizeof *o);
  o->min_aesthetic = 6.5;
  o->min_similarity = 0.28;
  o->min_width = o->min_height = 512;
  o->min_aspect = 0.5;
  o->max_aspect = 2.0;
  o->min_caption = 20;
  o->max_caption = 300;
  o->max_watermark = 0.5;
  o->max_punsafe = 0.2;
  o->dedup = true;
  o->max_samples = -1;
  o->seed = 42;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--allow-nsfw") == 0) {
      o->allow_nsfw = true;
      continue;
    }
    if (strcmp(a, "--no-dedup") == 0) {
      o->dedup = false;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline filter: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    int64_t n = 0;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--output") == 0)
      o->output = v;
    else if (strcmp(a, "--input") == 0) {
      if (o->input_count == MAX_INPUT_ARGS) {
        fprintf(stderr, "sdw: pipeline filter: at most %d --input\n", MAX_INPUT_ARGS);
        return 2;
      }
      o->inputs[o->input_count++] = v;
    } else if (strcmp(a, "--min-aesthetic") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->min_aesthetic);
    else if (strcmp(a, "--min-similarity") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->min_similarity);
    else if (strcmp(a, "--min-aspect") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->min_aspect);
    else if (strcmp(a, "--max-aspect") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->max_aspect);
    else if (strcmp(a, "--max-watermark") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->max_watermark);
    else if (strcmp(a, "--max-punsafe") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->max_punsafe);
    else if (strcmp(a, "--min-width") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->min_width);
    else if (strcmp(a, "--min-height") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->min_height);
    else if (strcmp(a, "--min-caption") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->min_caption);
    else if (strcmp(a, "--max-caption") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->max_caption);
    else if (strcmp(a, "--max-samples") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->max_samples);
    else if (strcmp(a, "--seed") == 0) {
      ok = sdw_parse_i64(v, 0, UINT32_MAX, &n);
      o->seed = (uint32_t)n;
    } else {
      fprintf(stderr, "sdw: pipeline filter: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline filter: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data || o->input_count == 0) {
    fprintf(stderr, "sdw: pipeline filter: --data and --input are required (see --help)\n");
    return 2;
  }
  return 0;
}

/* --- numpy's legacy MT19937 shuffle ------------------------------------------------------ */

typedef struct mt19937 {
  uint32_t s[624];
  int i;
} mt19937;

static void mt_seed(mt19937 *m, uint32_t seed) {
  m->s[0] = seed;
  for (int i = 1; i < 624; i++)
    m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + (uint32_t)i;
  m->i = 624;
}

static uint32_t mt_next(mt19937 *m) {
  if (m->i >= 624) {
    for (int k = 0; k < 624; k++) {
      uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % 624] & 0x7fffffffu);
      m->s[k] = m->s[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    m->i = 0;
  }
  uint32_t y = m->s[m->i++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* numpy's random_interval(max) for max < 2^32: masked rejection sampling. */
static uint32_t mt_interval(mt19937 *m, uint32_t max) {
  if (max == 0) return 0;
  uint32_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  uint32_t v;
  while ((v = (mt_next(m) & mask)) > max) {
  }
  return v;
}

static void shuffle_paths(char **p, int n, uint32_t seed) {
  mt19937 m;
  mt_seed(&m, seed);
  for (int i = n - 1; i >= 1; i--) {
    uint32_t j = mt_interval(&m, (uint32_t)i);
    char *t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* --- inputs -------------------------------------------------------------------------------- */

typedef struct path_list {
  char **p;
  int n, cap;
} path_list;

static sdw_status list_add(path_list *l, const char *path) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **p = realloc(l->p, (size_t)cap * sizeof *p);
    if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline filter: out of memory");
    l->p = p;
    l->cap = cap;
  }
  if (!(l->p[l->n] = strdup(path)))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline filter: out of memory");
  l->n++;
  return SDW_OK;
}

static void list_free(path_list *l) {
  for (int i = 0; i < l->n; i++)
    free(l->p[i]);
  free(l->p);
  memset(l, 0, sizeof *l);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static sdw_status scan_dir(const char *dir, path_list *l, int depth) {
  if (depth > 32) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: directories nested too deep", dir);
  DIR *d = opendir(dir);
  if (!d) return sdw_fail(SDW_ERR_IO, "%s: %s", dir, strerror(errno));
  sdw_status st = SDW_OK;
  struct dirent *e;
  char path[4096];
  while (st == SDW_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* also skips our .tmp files */
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (stat(path, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode))
      st = scan_dir(path, l, depth + 1);
    else if (S_ISREG(sb.st_mode) && ends_with(e->d_name, ".parquet"))
      st = list_add(l, path);
  }
  closedir(d);
  return st;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --- the URL set ---------------------------------------------------------------------------- */

typedef struct url_set {
  uint64_t *hash; /* 0: empty slot */
  char **key;
  size_t *len;
  size_t cap, count;
} url_set;

static uint64_t fnv1a(const uint8_t *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211ull;
  return h ? h : 1;
}

static sdw_status set_grow(url_set *s) {
  size_t cap = s->cap ? 2 * s->cap : 1024;
  uint64_t *h = calloc(cap, sizeof *h);
  char **k = calloc(cap, sizeof *k);
  size_t *n = calloc(cap, sizeof *n);
  if (!h || !k || !n) {
    free(h), free(k), free(n);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline filter: out of memory (URL set)");
  }
  for (size_t i = 0; i < s->cap; i++) {
    if (!s->hash[i]) continue;
    size_t j = s->hash[i] & (cap - 1);
    while (h[j])
      j = (j + 1) & (cap - 1);
    h[j] = s->hash[i], k[j] = s->key[i], n[j] = s->len[i];
  }
  free(s->hash), free(s->key), free(s->len);
  s->hash = h, s->key = k, s->len = n, s->cap = cap;
  return SDW_OK;
}

/* Inserts the URL; *added is false when it was there already. */
static sdw_status set_insert(url_set *s, const uint8_t *u, size_t n, bool *added) {
  if (2 * (s->count + 1) > s->cap) SDW_TRY(set_grow(s));
  uint64_t h = fnv1a(u, n);
  size_t j = h & (s->cap - 1);
  while (s->hash[j]) {
    if (s->hash[j] == h && s->len[j] == n && memcmp(s->key[j], u, n) == 0) {
      *added = false;
      return SDW_OK;
    }
    j = (j + 1) & (s->cap - 1);
  }
  char *k = malloc(n ? n : 1);
  if (!k) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline filter: out of memory (URL set)");
  if (n) memcpy(k, u, n);
  s->hash[j] = h, s->key[j] = k, s->len[j] = n;
  s->count++;
  *added = true;
  return SDW_OK;
}

static void set_free(url_set *s) {
  for (size_t i = 0; i < s->cap; i++)
    if (s->hash[i]) free(s->key[i]);
  free(s->hash), free(s->key), free(s->len);
  memset(s, 0, sizeof *s);
}

/* --- columns -------------------------------------------------------------------------------- */

enum { C_URL, C_TEXT, C_WIDTH, C_HEIGHT, C_SIM, C_AES, C_WM, C_NSFW, C_COUNT };

static const char *const k_aliases[C_COUNT][4] = {
    [C_URL] = {"url"},
    [C_TEXT] = {"text", "caption"},
    [C_WIDTH] = {"width"},
    [C_HEIGHT] = {"height"},
    [C_SIM] = {"similarity", "clip_sim"},
    [C_AES] = {"aesthetic_score", "aesthetic"},
    [C_WM] = {"pwatermark", "watermark", "watermark_score"},
    [C_NSFW] = {"nsfw", "punsafe", "is_nsfw"},
};
static const char *const k_canonical[C_COUNT] = {
    "URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "aesthetic_score", "pwatermark", "NSFW"};

static int find_column(const sdw_parquet_file *f, int c) {
  for (int a = 0; a < 4 && k_aliases[c][a]; a++)
    for (int i = 0; i < sdw_parquet_num_columns(f); i++)
      if (strcasecmp(sdw_parquet_column(f, i)->name, k_aliases[c][a]) == 0) return i;
  return -1;
}

static bool is_numeric(sdw_parquet_type t) {
  return t == SDW_PARQUET_BOOLEAN || t == SDW_PARQUET_INT32 || t == SDW_PARQUET_INT64 ||
         t == SDW_PARQUET_FLOAT || t == SDW_PARQUET_DOUBLE;
}

/* Value i as a double; NaN when null. */
static double num_at(const sdw_parquet_array *a, int64_t i) {
  if (!sdw_parquet_array_is_valid(a, i)) return NAN;
  switch (a->type) {
  case SDW_PARQUET_BOOLEAN: return ((const uint8_t *)a->values)[i];
  case SDW_PARQUET_INT32: return ((const int32_t *)a->values)[i];
  case SDW_PARQUET_INT64: return (double)((const int64_t *)a->values)[i];
  case SDW_PARQUET_FLOAT: return ((const float *)a->values)[i];
  case SDW_PARQUET_DOUBLE: return ((const double *)a->values)[i];
  default: return NAN;
  }
}

/* v >= t, in float for a FLOAT column (numpy's float32 vs Python float). */
static bool ge(const sdw_parquet_array *a, double v, double t) {
  return a->type == SDW_PARQUET_FLOAT ? (float)v >= (float)t : v >= t;
}
static bool lt(const sdw_parquet_array *a, double v, double t) {
  return a->type == SDW_PARQUET_FLOAT ? (float)v < (float)t : v < t;
}

static int64_t utf8_chars(const uint8_t *s, size_t n) {
  int64_t c = 0;
  for (size_t i = 0; i < n; i++)
    c += (s[i] & 0xc0) != 0x80;
  return c;
}

typedef struct filter_run {
  const filter_options *o;
  sdw_manifest *m;
  sdw_parquet_writer *w;
  url_set urls;
  int64_t kept;
} filter_run;

static bool bytes_eq(const uint8_t *s, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* Filters one file into the writer. Returns SDW_OK also for a skipped file. */
static sdw_status filter_file(filter_run *r, const char *path) {
  const filter_options *o = r->o;
  sdw_parquet_file *f = NULL;
  SDW_TRY(sdw_parquet_open(path, NULL, &f));
  int col[C_COUNT];
  for (int c = 0; c < C_COUNT; c++)
    col[c] = find_column(f, c);
  int64_t rows = sdw_parquet_num_rows(f);
  static const int required[] = {C_URL, C_TEXT, C_AES, C_SIM};
  for (size_t k = 0; k < sizeof required / sizeof *required; k++) {
    if (col[required[k]] < 0) {
      sdw_manifest_set_message(r->m, "%s: no %s column: file skipped", path,
                               k_canonical[required[k]]);
      fprintf(stderr, "sdw: pipeline filter: %s: no %s column: file skipped\n", path,
              k_canonical[required[k]]);
      sdw_manifest_count_in(r->m, rows);
      for (int64_t i = 0; i < rows; i++)
        sdw_manifest_count_failed(r->m, "missing_column");
      sdw_parquet_close(f);
      return SDW_OK;
    }
  }
  sdw_parquet_array a[C_COUNT];
  sdw_status st = SDW_OK;
  for (int c = 0; c < C_COUNT; c++)
    sdw_parquet_array_init(&a[c], SDW_PARQUET_DOUBLE);
  for (int c = 0; c < C_COUNT && st == SDW_OK; c++)
    if (col[c] >= 0) st = sdw_parquet_read_column_all(f, col[c], &a[c]);
  if (st == SDW_OK) {
    for (int c = 0; c < C_COUNT; c++) {
      if (col[c] < 0) continue;
      bool str = c == C_URL || c == C_TEXT;
      bool ok =
          str ? a[c].type == SDW_PARQUET_BYTE_ARRAY
              : (is_numeric(a[c].type) || (c == C_NSFW && a[c].type == SDW_PARQUET_BYTE_ARRAY));
      if (!ok) {
        st = sdw_fail(SDW_ERR_FORMAT, "%s: column %s has type %s, not %s", path,
                      sdw_parquet_column(f, col[c])->name, sdw_parquet_type_name(a[c].type),
                      str ? "a string" : "a number");
        break;
      }
    }
  }
  int64_t i = 0;
  for (; st == SDW_OK && i < rows; i++) {
    if (o->max_samples >= 0 && r->kept >= o->max_samples) break;
    if ((i & 4095) == 0 && g_stop) {
      st = sdw_fail(SDW_ERR_INTERRUPTED, "interrupted");
      break;
    }
    sdw_manifest_count_in(r->m, 1);
    const char *reason = NULL;
    size_t ul = 0, tl = 0;
    const uint8_t *u = NULL, *t = NULL;
    if (!sdw_parquet_array_is_valid(&a[C_URL], i) || !sdw_parquet_array_is_valid(&a[C_TEXT], i))
      reason = "null";
    else {
      u = sdw_parquet_array_bytes(&a[C_URL], i, &ul);
      t = sdw_parquet_array_bytes(&a[C_TEXT], i, &tl);
    }
    double aes = num_at(&a[C_AES], i), sim = num_at(&a[C_SIM], i);
    if (!reason && !ge(&a[C_AES], aes, o->min_aesthetic)) reason = "aesthetic";
    if (!reason && !ge(&a[C_SIM], sim, o->min_similarity)) reason = "similarity";
    if (!reason && (col[C_WIDTH] >= 0 || col[C_HEIGHT] >= 0)) {
      bool ok = true;
      if (col[C_WIDTH] >= 0)
        ok = ok && ge(&a[C_WIDTH], num_at(&a[C_WIDTH], i), (double)o->min_width);
      if (col[C_HEIGHT] >= 0)
        ok = ok && ge(&a[C_HEIGHT], num_at(&a[C_HEIGHT], i), (double)o->min_height);
      if (!ok) reason = "size";
    }
    if (!reason && col[C_WIDTH] >= 0 && col[C_HEIGHT] >= 0) {
      double asp = num_at(&a[C_WIDTH], i) / num_at(&a[C_HEIGHT], i);
      if (!(asp >= o->min_aspect && asp <= o->max_aspect)) reason = "aspect";
    }
    if (!reason) {
      int64_t nc = utf8_chars(t, tl);
      if (!(nc >= o->min_caption && nc <= o->max_caption)) reason = "caption";
    }
    if (!reason && col[C_WM] >= 0 && !lt(&a[C_WM], num_at(&a[C_WM], i), o->max_watermark))
      reason = "watermark";
    if (!reason && col[C_NSFW] >= 0 && !o->allow_nsfw) {
      if (a[C_NSFW].type == SDW_PARQUET_BYTE_ARRAY) {
        size_t nl = 0;
        const uint8_t *ns = NULL;
        if (sdw_parquet_array_is_valid(&a[C_NSFW], i))
          ns = sdw_parquet_array_bytes(&a[C_NSFW], i, &nl);
        if (!ns || !(bytes_eq(ns, nl, "UNLIKELY") || bytes_eq(ns, nl, "unlikely"))) reason = "nsfw";
      } else if (!lt(&a[C_NSFW], num_at(&a[C_NSFW], i), o->max_punsafe)) {
        reason = "nsfw";
      }
    }
    if (!reason && o->dedup) {
      bool added;
      st = set_insert(&r->urls, u, ul, &added);
      if (st != SDW_OK) break;
      if (!added) reason = "duplicate";
    }
    if (reason) {
      sdw_manifest_count_failed(r->m, reason);
      continue;
    }
    sdw_parquet_writer_set_bytes(r->w, 0, u, ul);
    sdw_parquet_writer_set_bytes(r->w, 1, t, tl);
    sdw_parquet_writer_set_f64(r->w, 2, aes);
    sdw_parquet_writer_set_f64(r->w, 3, sim);
    st = sdw_parquet_writer_end_row(r->w);
    r->kept++;
    sdw_manifest_count_out(r->m, 1);
  }
  if (st == SDW_OK && i < rows) { /* cut by --max-samples */
    sdw_manifest_count_in(r->m, rows - i);
    sdw_manifest_count_skipped(r->m, rows - i);
  }
  for (int c = 0; c < C_COUNT; c++)
    sdw_parquet_array_free(&a[c]);
  sdw_parquet_close(f);
  if (st == SDW_OK) sdw_manifest_flush(r->m, false);
  return st;
}

/* --- resume ----------------------------------------------------------------------------------- */

static void options_string(const filter_options *o, char *buf, size_t size) {
  snprintf(buf, size,
           "aes=%.17g sim=%.17g w=%lld h=%lld asp=%.17g..%.17g cap=%lld..%lld wm=%.17g "
           "punsafe=%.17g nsfw=%d dedup=%d max=%lld seed=%u",
           o->min_aesthetic, o->min_similarity, (long long)o->min_width, (long long)o->min_height,
           o->min_aspect, o->max_aspect, (long long)o->min_caption, (long long)o->max_caption,
           o->max_watermark, o->max_punsafe, o->allow_nsfw, o->dedup, (long long)o->max_samples,
           o->seed);
}

static bool up_to_date(const filter_options *o, const path_list *files, const char *output,
                       const char *opts) {
  struct stat sb;
  if (stat(output, &sb) != 0) return false;
  cJSON *doc = NULL;
  if (sdw_manifest_read(o->data, "filter", &doc) != SDW_OK) return false;
  bool ok = false;
  const cJSON *state = cJSON_GetObjectItem(doc, "state");
  const cJSON *inputs = cJSON_GetObjectItem(doc, "inputs");
  const cJSON *outputs = cJSON_GetObjectItem(doc, "outputs");
  const cJSON *extra = cJSON_GetObjectItem(doc, "extra");
  const cJSON *eo = extra ? cJSON_GetObjectItem(extra, "options") : NULL;
  const cJSON *out0 = outputs ? cJSON_GetArrayItem(outputs, 0) : NULL;
  if (!cJSON_IsString(state) || strcmp(state->valuestring, "done") != 0) goto done;
  if (!cJSON_IsString(eo) || strcmp(eo->valuestring, opts) != 0) goto done;
  if (!cJSON_IsString(out0) || strcmp(out0->valuestring, output) != 0) goto done;
  if (!cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) != files->n) goto done;
  for (int i = 0; i < files->n; i++) {
    const cJSON *in = cJSON_GetArrayItem(inputs, i);
    const cJSON *p = cJSON_GetObjectItem(in, "path");
    const cJSON *sz = cJSON_GetObjectItem(in, "size");
    const cJSON *mt = cJSON_GetObjectItem(in, "mtime");
    struct stat fs;
    if (!cJSON_IsString(p) || strcmp(p->valuestring, files->p[i]) != 0) goto done;
    if (stat(files->p[i], &fs) != 0 || !cJSON_IsNumber(sz) || !cJSON_IsNumber(mt)) goto done;
    if ((int64_t)sz->valuedouble != (int64_t)fs.st_size ||
        (int64_t)mt->valuedouble != (int64_t)fs.st_mtime)
      goto done;
  }
  ok = true;
done:
  cJSON_Delete(doc);
  return ok;
}

/* --- main ---------------------------------------------------------------------------------------
 */

static sdw_status run_filter(const filter_options *o, int *skipped) {
  path_list files = {0};
  sdw_status st = SDW_OK;
  for (int i = 0; i < o->input_count && st == SDW_OK; i++) {
    struct stat sb;
    if (stat(o->inputs[i], &sb) != 0) {
      st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: %s", o->inputs[i], strerror(errno));
      break;
    }
    if (S_ISDIR(sb.st_mode)) {
      path_list d = {0};
      st = scan_dir(o->inputs[i], &d, 0);
      if (st == SDW_OK) qsort(d.p, (size_t)d.n, sizeof *d.p, cmp_str);
      for (int k = 0; k < d.n && st == SDW_OK; k++)
        st = list_add(&files, d.p[k]);
      list_free(&d);
    } else {
      st = list_add(&files, o->inputs[i]);
    }
  }
  if (st == SDW_OK && files.n == 0)
    st = sdw_fail(SDW_ERR_NOT_FOUND, "pipeline filter: no parquet file in the inputs");
  if (st == SDW_OK && files.n > SDW_MANIFEST_MAX_INPUTS)
    st = sdw_fail(SDW_ERR_UNSUPPORTED, "pipeline filter: %d input files (at most %d)", files.n,
                  SDW_MANIFEST_MAX_INPUTS);
  if (st != SDW_OK) {
    list_free(&files);
    return st;
  }
  if (o->max_samples >= 0) shuffle_paths(files.p, files.n, o->seed);

  char output[4096], opts[512];
  if (o->output)
    snprintf(output, sizeof output, "%s", o->output);
  else {
    snprintf(output, sizeof output, "%s/filtered", o->data);
    st = sdw_mkdir_p(output);
    snprintf(output, sizeof output, "%s/filtered/filtered.parquet", o->data);
  }
  options_string(o, opts, sizeof opts);
  if (st == SDW_OK && up_to_date(o, &files, output, opts)) {
    *skipped = 1;
    list_free(&files);
    return SDW_OK;
  }

  sdw_manifest m;
  if (st == SDW_OK) st = sdw_manifest_begin(&m, o->data, "filter");
  if (st != SDW_OK) {
    list_free(&files);
    return st;
  }
  filter_run r = {.o = o, .m = &m};
  int64_t total = 0;
  for (int i = 0; i < files.n && st == SDW_OK; i++) {
    st = sdw_manifest_add_input(&m, files.p[i], false);
    sdw_parquet_file *f;
    if (st == SDW_OK && (st = sdw_parquet_open(files.p[i], NULL, &f)) == SDW_OK) {
      total += sdw_parquet_num_rows(f);
      sdw_parquet_close(f);
    }
  }
  sdw_manifest_set_total(&m, total);
  cJSON_AddStringToObject(m.extra, "options", opts);
  sdw_manifest_add_output(&m, output);
  static const sdw_parquet_field fields[] = {
      {"URL", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"TEXT", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"aesthetic_score", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
      {"similarity", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
  };
  if (st == SDW_OK) st = sdw_parquet_writer_open(output, fields, 4, NULL, &r.w);
  for (int i = 0; i < files.n && st == SDW_OK; i++)
    st = filter_file(&r, files.p[i]);
  if (r.w) {
    if (st == SDW_OK)
      st = sdw_parquet_writer_close(r.w);
    else
      sdw_parquet_writer_abort(r.w);
  }
  set_free(&r.urls);
  list_free(&files);
  if (st != SDW_OK) sdw_manifest_set_message(&m, "%s", sdw_last_error());
  sdw_status fs = sdw_manifest_finish(&m, st == SDW_OK                ? "done"
                                          : st == SDW_ERR_INTERRUPTED ? "interrupted"
                                                                      : "failed");
  return st != SDW_OK ? st : fs;
}

int sdw_pipeline_filter_main(int argc, char **argv) {
  filter_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  int skipped = 0;
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sdw_status st = run_filter(&o, &skipped);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (st == SDW_ERR_INTERRUPTED) {
    fprintf(stderr, "sdw: pipeline filter: interrupted; nothing written\n");
    return 130;
  }
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline filter: %s\n", sdw_last_error());
    return 1;
  }
  if (skipped) fprintf(stderr, "sdw: pipeline filter: output is up to date\n");
  return 0;
}
