/* `sdw pipeline download`: img2dataset's job in C. Reads URL lists (parquet,
 * txt, csv, tsv, jsonl), downloads with many transfers in flight on one
 * network thread (pipeline/http_fetch.h), decodes / resizes / re-encodes on
 * worker threads (pipeline/image.h: JPEG rows go straight into the resize,
 * and only the region a center crop keeps is decoded and resized, with the
 * same pixels as a full decode and resize) and writes WebDataset shards
 * exactly in img2dataset's layout:
 *
 *   OUT/00000.tar          <key>.jpg, <key>.json, <key>.txt per success, in key order
 *   OUT/00000.parquet      one row per URL: [caption,] url, key, status, error_message,
 *                          width, height, original_width, original_height, exif, sha256
 *   OUT/00000_stats.json   count, successes, failed_to_download, failed_to_resize,
 *                          duration, start_time, end_time, status_dict
 *
 * Keys are img2dataset's compute_key: shard_id * 10^ceil(log10(per_shard)) +
 * index, zero-padded to that many digits plus 5. Shards are numbered over
 * the input files in order (a file's last shard may be short), so every
 * machine computes the same plan from the same inputs: shard s is done by
 * node s % num_nodes.
 *
 * Resumability: a shard's files appear atomically and _stats.json is written
 * last, so a shard with its _stats.json is done (img2dataset's incremental
 * mode) and any other shard is redone from scratch. The encoded images of a
 * shard in progress wait in an unlinked spool file, so that the tar can be
 * written in key order (the same bytes on every run, with
 * SOURCE_DATE_EPOCH) and a killed run leaves nothing behind.
 *
 * Threads: the main thread runs the network loop and the manifest; workers
 * decode/resize/encode and finish shards (tar, parquet, stats). A shard's
 * slots are written by exactly one thread each (the network thread for a
 * failed download, a worker otherwise) and read by the worker that finishes
 * the shard after the last slot was counted down (the atomic count orders
 * them). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/sha256.h"
#include "pipeline/http_fetch.h"
#include "pipeline/image.h"
#include "pipeline/launcher_rank.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/pyjson.h"
#include "pipeline/stages.h"
#include "pipeline/tar.h"

#ifndef SDW_VERSION
#define SDW_VERSION "dev"
#endif

#define OOM_SHARD_COUNT 5 /* img2dataset's oom_shard_count: digits of a shard name */

/* --- options ------------------------------------------------------------------------ */

typedef struct dl_options {
  const char *data;
  const char *output;
  const char *inputs[64];
  int input_count;
  const char *input_format; /* auto, parquet, txt, csv, tsv, jsonl */
  const char *url_col, *caption_col;
  int concurrency, workers;
  double timeout;
  int retries, max_redirects;
  int64_t max_bytes, max_pixels;
  int image_size;
  sdw_resize_mode resize_mode;
  int only_if_bigger;
  int quality;
  int64_t per_shard;
  const char *ua_token;
  const char *disallowed;
  int node_rank, num_nodes;
  bool incremental;
} dl_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline download --data DIR --input PATH [--input PATH ...] [options]\n"
          "\n"
          "Downloads the images of URL lists into WebDataset shards in img2dataset's layout\n"
          "(NNNNN.tar with <key>.jpg/.json/.txt, NNNNN.parquet, NNNNN_stats.json). Defaults\n"
          "are the seed's img2dataset call. A shard with its _stats.json is done and skipped;\n"
          "others are redone. Ctrl-C abandons the shards in progress (exit 130).\n"
          "\n"
          "  --data DIR                      data directory (manifest in DIR/manifests)\n"
          "  --input PATH                    URL list: a file or a directory of them\n"
          "                                  (repeatable; files in the order given, a\n"
          "                                  directory's files sorted by name)\n"
          "  --input-format F                auto (from the extension; a directory: parquet),\n"
          "                                  parquet, txt, csv, tsv or jsonl\n"
          "  --output DIR                    shard directory (default DIR/shards)\n"
          "  --url-col NAME                  URL column (default URL)\n"
          "  --caption-col NAME              caption column (default TEXT; \"\" for none)\n"
          "  --concurrency N, --processes N  transfers at once (default 64)\n"
          "  --workers N                     decode/resize threads (default: online CPUs)\n"
          "  --timeout S                     connect and stall timeout in seconds (default 10)\n"
          "  --retries N                     retries of transient failures (default 2)\n"
          "  --max-redirects N               (default 5)\n"
          "  --max-bytes N                   largest response body (default 20000000)\n"
          "  --max-pixels N                  largest image, refused before decoding\n"
          "                                  (default 178956970)\n"
          "  --image-size N                  (default 512)\n"
          "  --resize-mode M                 center_crop (default), keep_ratio,\n"
          "                                  keep_ratio_largest, border or no\n"
          "  --resize-only-if-bigger         leave smaller images as they are (default)\n"
          "  --no-resize-only-if-bigger      resize every image\n"
          "  --jpeg-quality Q, --encode-quality Q   JPEG quality (default 95)\n"
          "  --number-sample-per-shard N     (default 1000)\n"
          "  --user-agent-token T            user-agent token for X-Robots-Tag opt-outs\n"
          "                                  (default img2dataset; sdw is always one)\n"
          "  --disallowed-header-directives L   comma-separated X-Robots-Tag directives\n"
          "                                  that opt out (default\n"
          "                                  noai,noimageai,noindex,noimageindex; \"\": none)\n"
          "  --node-rank R, --num-nodes N    do shards s with s %% N == R (default from\n"
          "                                  OMPI_COMM_WORLD_*, PMI_* or SLURM_* when set,\n"
          "                                  else 0 and 1)\n"
          "  --incremental                   skip shards with a _stats.json (default)\n"
          "  --no-incremental                redo every shard of this node\n"
          "  --help                          this text\n");
}

/* Returns 0 to run, 1 for --help, 2 for a usage error (reported). */
static int parse_options(int argc, char **argv, dl_options *o) {
  memset(o, 0, sizeof *o);
  o->input_format = "auto";
  o->url_col = "URL";
  o->caption_col = "TEXT";
  o->concurrency = 64;
  o->workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (o->workers < 1) o->workers = 1;
  o->timeout = 10;
  o->retries = 2;
  o->max_redirects = 5;
  o->max_bytes = 20000000;
  o->max_pixels = 178956970;
  o->image_size = 512;
  o->resize_mode = SDW_RESIZE_CENTER_CROP;
  o->only_if_bigger = 1;
  o->quality = 95;
  o->per_shard = 1000;
  o->ua_token = "img2dataset";
  o->disallowed = "noai,noimageai,noindex,noimageindex";
  o->node_rank = -1;
  o->num_nodes = -1;
  o->incremental = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    /* flags without a value */
    if (strcmp(a, "--resize-only-if-bigger") == 0) {
      o->only_if_bigger = 1;
      continue;
    }
    if (strcmp(a, "--no-resize-only-if-bigger") == 0) {
      o->only_if_bigger = 0;
      continue;
    }
    if (strcmp(a, "--incremental") == 0) {
      o->incremental = true;
      continue;
    }
    if (strcmp(a, "--no-incremental") == 0) {
      o->incremental = false;
      continue;
    }
    /* --name VALUE or --name=VALUE */
    char name[64];
    const char *val = NULL;
    const char *eq = strchr(a, '=');
    if (strncmp(a, "--", 2) == 0 && eq && (size_t)(eq - a) < sizeof name) {
      memcpy(name, a, (size_t)(eq - a));
      name[eq - a] = 0;
      val = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a);
      if (strncmp(a, "--", 2) != 0) {
        fprintf(stderr, "sdw: pipeline download: unexpected argument '%s'\n", a);
        return 2;
      }
      if (i + 1 >= argc) {
        fprintf(stderr, "sdw: pipeline download: %s needs a value\n", a);
        return 2;
      }
      val = argv[++i];
    }
    int64_t n = 0;
    double d = 0;
    bool ok = true;
    if (strcmp(name, "--data") == 0) {
      o->data = val;
    } else if (strcmp(name, "--output") == 0) {
      o->output = val;
    } else if (strcmp(name, "--input") == 0) {
      if (o->input_count == (int)(sizeof o->inputs / sizeof o->inputs[0])) {
        fprintf(stderr, "sdw: pipeline download: too many --input (pass a directory)\n");
        return 2;
      }
      o->inputs[o->input_count++] = val;
    } else if (strcmp(name, "--input-format") == 0) {
      ok = !strcmp(val, "auto") || !strcmp(val, "parquet") || !strcmp(val, "txt") ||
           !strcmp(val, "csv") || !strcmp(val, "tsv") || !strcmp(val, "jsonl");
      o->input_format = val;
    } else if (strcmp(name, "--url-col") == 0) {
      ok = val[0] != 0;
      o->url_col = val;
    } else if (strcmp(name, "--caption-col") == 0) {
      o->caption_col = val;
    } else if (strcmp(name, "--concurrency") == 0 || strcmp(name, "--processes") == 0) {
      ok = sdw_parse_i64(val, 1, 100000, &n);
      o->concurrency = (int)n;
    } else if (strcmp(name, "--workers") == 0) {
      ok = sdw_parse_i64(val, 1, 1024, &n);
      o->workers = (int)n;
    } else if (strcmp(name, "--timeout") == 0) {
      ok = sdw_parse_double(val, 0.001, 86400, &d);
      o->timeout = d;
    } else if (strcmp(name, "--retries") == 0) {
      ok = sdw_parse_i64(val, 0, 100, &n);
      o->retries = (int)n;
    } else if (strcmp(name, "--max-redirects") == 0) {
      ok = sdw_parse_i64(val, 0, 1000, &n);
      o->max_redirects = (int)n;
    } else if (strcmp(name, "--max-bytes") == 0) {
      ok = sdw_parse_i64(val, 1, INT64_MAX / 2, &n);
      o->max_bytes = n;
    } else if (strcmp(name, "--max-pixels") == 0) {
      ok = sdw_parse_i64(val, 1, INT64_MAX / 2, &n);
      o->max_pixels = n;
    } else if (strcmp(name, "--image-size") == 0) {
      ok = sdw_parse_i64(val, 1, 65535, &n);
      o->image_size = (int)n;
    } else if (strcmp(name, "--resize-mode") == 0) {
      if (!strcmp(val, "center_crop"))
        o->resize_mode = SDW_RESIZE_CENTER_CROP;
      else if (!strcmp(val, "keep_ratio"))
        o->resize_mode = SDW_RESIZE_KEEP_RATIO;
      else if (!strcmp(val, "keep_ratio_largest"))
        o->resize_mode = SDW_RESIZE_KEEP_RATIO_LARGEST;
      else if (!strcmp(val, "border"))
        o->resize_mode = SDW_RESIZE_BORDER;
      else if (!strcmp(val, "no"))
        o->resize_mode = SDW_RESIZE_NO;
      else
        ok = false;
    } else if (strcmp(name, "--jpeg-quality") == 0 || strcmp(name, "--encode-quality") == 0) {
      ok = sdw_parse_i64(val, 1, 100, &n);
      o->quality = (int)n;
    } else if (strcmp(name, "--number-sample-per-shard") == 0) {
      ok = sdw_parse_i64(val, 1, 100000000, &n);
      o->per_shard = n;
    } else if (strcmp(name, "--user-agent-token") == 0) {
      o->ua_token = val;
      for (const char *p = val; *p && ok; p++)
        ok = *p > ' ' && *p < 0x7F && *p != ',' && *p != ':' && *p != '(' && *p != ')';
    } else if (strcmp(name, "--disallowed-header-directives") == 0) {
      o->disallowed = val;
    } else if (strcmp(name, "--node-rank") == 0) {
      ok = sdw_parse_i64(val, 0, INT_MAX, &n);
      o->node_rank = (int)n;
    } else if (strcmp(name, "--num-nodes") == 0) {
      ok = sdw_parse_i64(val, 1, INT_MAX, &n);
      o->num_nodes = (int)n;
    } else {
      fprintf(stderr, "sdw: pipeline download: unknown option '%s' (see --help)\n", name);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline download: bad value '%s' for %s\n", val, name);
      return 2;
    }
  }
  if (!o->data || o->input_count == 0) {
    fprintf(stderr, "sdw: pipeline download: --data and --input are required (see --help)\n");
    return 2;
  }
  /* the rank: flags, else the launcher's environment */
  if (o->node_rank < 0 || o->num_nodes < 0) {
    int r, n;
    if (sdw_launcher_rank(&r, &n)) {
      if (o->node_rank < 0) o->node_rank = r;
      if (o->num_nodes < 0) o->num_nodes = n;
    }
  }
  if (o->node_rank < 0) o->node_rank = 0;
  if (o->num_nodes < 0) o->num_nodes = 1;
  if (o->node_rank >= o->num_nodes) {
    fprintf(stderr, "sdw: pipeline download: --node-rank %d is not below --num-nodes %d\n",
            o->node_rank, o->num_nodes);
    return 2;
  }
  return 0;
}

/* --- inputs ----------------------------------------------------------------------------- */

typedef struct input_file {
  char *path;
  char format[8];
  int64_t rows;
  bool loaded;
  bool has_caption;
  sdw_parquet_array url, caption; /* BYTE_ARRAY columns once loaded */
  int64_t last_plan;              /* index of its last shard in the plan, -1: none */
  int64_t open_shards;            /* its shards opened and not yet written */
} input_file;

static const char *format_of(const char *path, const char *forced) {
  if (strcmp(forced, "auto") != 0) return forced;
  const char *dot = strrchr(path, '.');
  if (!dot) return NULL;
  if (!strcmp(dot, ".parquet")) return "parquet";
  if (!strcmp(dot, ".txt")) return "txt";
  if (!strcmp(dot, ".csv")) return "csv";
  if (!strcmp(dot, ".tsv")) return "tsv";
  if (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json")) return "jsonl";
  return NULL;
}

static int compare_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Expands the --input paths into the list of files. */
static sdw_status list_inputs(const dl_options *o, input_file **out, int *count) {
  input_file *files = NULL;
  int n = 0, cap = 0;
  sdw_status st = SDW_OK;
  for (int i = 0; i < o->input_count && st == SDW_OK; i++) {
    const char *path = o->inputs[i];
    struct stat sb;
    if (stat(path, &sb) != 0) {
      st = sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: %s", path,
                    strerror(errno));
      break;
    }
    char **names = NULL;
    int nn = 0;
    const char *want = strcmp(o->input_format, "auto") ? o->input_format : "parquet";
    if (S_ISDIR(sb.st_mode)) {
      DIR *d = opendir(path);
      if (!d) {
        st = sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
        break;
      }
      struct dirent *e;
      char ext[16];
      snprintf(ext, sizeof ext, ".%s", want);
      while ((e = readdir(d))) {
        size_t len = strlen(e->d_name), el = strlen(ext);
        if (e->d_name[0] == '.' || len <= el || strcmp(e->d_name + len - el, ext) != 0) continue;
        char **p = realloc(names, sizeof *names * (size_t)(nn + 1));
        size_t full = strlen(path) + len + 2;
        char *s = malloc(full);
        if (!p || !s) {
          free(s);
          if (p) names = p;
          st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
          break;
        }
        names = p;
        snprintf(s, full, "%s/%s", path, e->d_name);
        names[nn++] = s;
      }
      closedir(d);
      if (st == SDW_OK && nn == 0)
        st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: no *.%s file in this directory", path, want);
      if (nn > 1) qsort(names, (size_t)nn, sizeof *names, compare_str);
    } else {
      names = malloc(sizeof *names);
      if (names) names[0] = strdup(path);
      if (!names || !names[0]) {
        free(names);
        names = NULL;
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      } else {
        nn = 1;
      }
    }
    for (int k = 0; k < nn; k++) {
      if (st != SDW_OK) {
        free(names[k]);
        continue;
      }
      const char *fmt = S_ISDIR(sb.st_mode) ? want : format_of(names[k], o->input_format);
      if (!fmt) {
        st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "%s: cannot tell the format from the name; pass --input-format", names[k]);
        free(names[k]);
        continue;
      }
      if (n == cap) {
        cap = cap ? 2 * cap : 8;
        input_file *p = realloc(files, sizeof *files * (size_t)cap);
        if (!p) {
          st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
          free(names[k]);
          continue;
        }
        files = p;
      }
      memset(&files[n], 0, sizeof files[n]);
      files[n].path = names[k];
      snprintf(files[n].format, sizeof files[n].format, "%s", fmt);
      sdw_parquet_array_init(&files[n].url, SDW_PARQUET_BYTE_ARRAY);
      sdw_parquet_array_init(&files[n].caption, SDW_PARQUET_BYTE_ARRAY);
      n++;
    }
    free(names);
  }
  *out = files;
  *count = n;
  return st;
}

static void input_unload(input_file *f) {
  sdw_parquet_array_free(&f->url);
  sdw_parquet_array_free(&f->caption);
  f->loaded = false;
}

static sdw_status append_cell(sdw_parquet_array *a, const char *s, size_t n, bool null) {
  return null ? sdw_parquet_array_append_null(a) : sdw_parquet_array_append_bytes(a, s, n);
}

/* One CSV/TSV record from [p, end): fields into cells (pointers into a
 * scratch buffer that the record's unquoted text is copied to). */
typedef struct csv_cell {
  size_t off, len;
} csv_cell;

static const char *csv_record(const char *p, const char *end, char sep, char **scratch,
                              size_t *scratch_cap, csv_cell **cells, int *ncells, int *cells_cap) {
  size_t used = 0;
  *ncells = 0;
  for (;;) {
    if (*ncells == *cells_cap) {
      int nc = *cells_cap ? 2 * *cells_cap : 16;
      csv_cell *c = realloc(*cells, sizeof *c * (size_t)nc);
      if (!c) return NULL;
      *cells = c;
      *cells_cap = nc;
    }
    csv_cell *cell = &(*cells)[(*ncells)++];
    cell->off = used;
    bool quoted = sep == ',' && p < end && *p == '"';
    if (quoted) p++;
    for (;;) {
      if (p >= end) break;
      char c = *p;
      if (quoted) {
        if (c == '"') {
          if (p + 1 < end && p[1] == '"') {
            p += 2;
          } else {
            p++;
            quoted = false;
            continue;
          }
          c = '"';
        } else {
          p++;
        }
      } else {
        if (c == sep || c == '\n' || c == '\r') break;
        p++;
      }
      if (used + 1 >= *scratch_cap) {
        size_t nc = *scratch_cap ? 2 * *scratch_cap : 1024;
        char *s = realloc(*scratch, nc);
        if (!s) return NULL;
        *scratch = s;
        *scratch_cap = nc;
      }
      (*scratch)[used++] = c;
    }
    cell->len = used - cell->off;
    if (p < end && *p == sep) {
      p++;
      continue;
    }
    if (p < end && *p == '\r') p++;
    if (p < end && *p == '\n') p++;
    return p;
  }
}

static int find_cell(const char *scratch, const csv_cell *cells, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (cells[i].len == strlen(name) && memcmp(scratch + cells[i].off, name, cells[i].len) == 0)
      return i;
  return -1;
}

static sdw_status load_text(input_file *f, const dl_options *o) {
  void *data;
  size_t size;
  SDW_TRY(sdw_read_file(f->path, &data, &size));
  const char *p = data, *end = (const char *)data + size;
  sdw_status st = SDW_OK;
  const bool want_caption = o->caption_col[0] != 0;
  if (!strcmp(f->format, "txt")) {
    /* one URL a line; empty lines are skipped as pyarrow's CSV reader does */
    while (p < end && st == SDW_OK) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      const char *le = nl ? nl : end;
      const char *e = le;
      if (e > p && e[-1] == '\r') e--;
      if (e > p) st = sdw_parquet_array_append_bytes(&f->url, p, (size_t)(e - p));
      p = nl ? nl + 1 : end;
    }
  } else if (!strcmp(f->format, "csv") || !strcmp(f->format, "tsv")) {
    const char sep = f->format[0] == 'c' ? ',' : '\t';
    char *scratch = NULL;
    size_t scap = 0;
    csv_cell *cells = NULL;
    int nc = 0, ccap = 0, url_i = -1, cap_i = -1;
    bool header = true;
    while (p < end && st == SDW_OK) {
      if (*p == '\n' || *p == '\r') { /* empty line */
        p++;
        continue;
      }
      const char *q = csv_record(p, end, sep, &scratch, &scap, &cells, &nc, &ccap);
      if (!q) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory reading %s", f->path);
        break;
      }
      p = q;
      if (header) {
        header = false;
        url_i = find_cell(scratch, cells, nc, o->url_col);
        if (url_i < 0) st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: no column %s", f->path, o->url_col);
        if (want_caption) {
          cap_i = find_cell(scratch, cells, nc, o->caption_col);
          if (cap_i < 0)
            st = sdw_fail(SDW_ERR_NOT_FOUND,
                          "%s: no caption column %s (--caption-col \"\" for none)", f->path,
                          o->caption_col);
        }
        continue;
      }
      bool has_url = url_i < nc, has_cap = cap_i >= 0 && cap_i < nc;
      /* an empty CSV field is null for pyarrow's string columns */
      st = append_cell(&f->url, has_url ? scratch + cells[url_i].off : "",
                       has_url ? cells[url_i].len : 0, !has_url || cells[url_i].len == 0);
      if (st == SDW_OK && cap_i >= 0)
        st = append_cell(&f->caption, has_cap ? scratch + cells[cap_i].off : "",
                         has_cap ? cells[cap_i].len : 0, !has_cap);
    }
    free(scratch);
    free(cells);
    f->has_caption = cap_i >= 0;
  } else { /* jsonl */
    int line = 0;
    while (p < end && st == SDW_OK) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      const char *le = nl ? nl : end;
      line++;
      const char *a = p;
      p = nl ? nl + 1 : end;
      while (a < le && (*a == ' ' || *a == '\t' || *a == '\r'))
        a++;
      if (a == le) continue;
      cJSON *obj = cJSON_ParseWithLength(a, (size_t)(le - a));
      if (!cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        st = sdw_fail(SDW_ERR_FORMAT, "%s: line %d is not a JSON object", f->path, line);
        break;
      }
      const cJSON *u = cJSON_GetObjectItemCaseSensitive(obj, o->url_col);
      st = append_cell(&f->url, cJSON_IsString(u) ? u->valuestring : "",
                       cJSON_IsString(u) ? strlen(u->valuestring) : 0, !cJSON_IsString(u));
      if (st == SDW_OK && want_caption) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj, o->caption_col);
        st = append_cell(&f->caption, cJSON_IsString(c) ? c->valuestring : "",
                         cJSON_IsString(c) ? strlen(c->valuestring) : 0, !cJSON_IsString(c));
      }
      cJSON_Delete(obj);
    }
    f->has_caption = want_caption;
  }
  free(data);
  if (st != SDW_OK) return st;
  f->rows = f->url.length;
  return SDW_OK;
}

static sdw_status load_parquet(input_file *f, const dl_options *o, bool columns) {
  sdw_parquet_file *pf;
  SDW_TRY(sdw_parquet_open(f->path, NULL, &pf));
  sdw_status st = SDW_OK;
  f->rows = sdw_parquet_num_rows(pf);
  const int ui = sdw_parquet_find_column(pf, o->url_col);
  const int ci = o->caption_col[0] ? sdw_parquet_find_column(pf, o->caption_col) : -1;
  if (ui < 0)
    st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: no column %s (--url-col)", f->path, o->url_col);
  else if (o->caption_col[0] && ci < 0)
    st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: no caption column %s (--caption-col \"\" for none)",
                  f->path, o->caption_col);
  else if (sdw_parquet_column(pf, ui)->type != SDW_PARQUET_BYTE_ARRAY ||
           (ci >= 0 && sdw_parquet_column(pf, ci)->type != SDW_PARQUET_BYTE_ARRAY))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: the URL and caption columns must be strings", f->path);
  if (st == SDW_OK && columns) {
    st = sdw_parquet_read_column_all(pf, ui, &f->url);
    if (st == SDW_OK && ci >= 0) st = sdw_parquet_read_column_all(pf, ci, &f->caption);
    f->has_caption = ci >= 0;
  }
  sdw_parquet_close(pf);
  return st;
}

/* Counts rows (parquet: from the footer) or loads everything (text). */
static sdw_status input_count(input_file *f, const dl_options *o) {
  if (!strcmp(f->format, "parquet")) return load_parquet(f, o, false);
  SDW_TRY(load_text(f, o));
  f->loaded = true;
  return SDW_OK;
}

static sdw_status input_load(input_file *f, const dl_options *o) {
  if (f->loaded) return SDW_OK;
  if (!strcmp(f->format, "parquet")) {
    int64_t rows = f->rows;
    SDW_TRY(load_parquet(f, o, true));
    if (f->rows != rows || f->url.length != rows)
      return sdw_fail(SDW_ERR_IO, "%s changed while being read", f->path);
  } else {
    SDW_TRY(load_text(f, o));
  }
  f->loaded = true;
  return SDW_OK;
}

/* --- shards ------------------------------------------------------------------------------ */

enum { SLOT_PENDING = 0, SLOT_OK, SLOT_FAILED_DOWNLOAD, SLOT_FAILED_RESIZE };

typedef struct slot {
  uint8_t status;
  bool exif_unknown; /* the image has EXIF data that is not reproduced: exif is null */
  int32_t width, height, original_width, original_height;
  uint32_t len;
  uint64_t off; /* the JPEG in the spool */
  char *error;  /* malloc'd, NULL on success */
  char sha256[65];
} slot;

typedef struct shard {
  int64_t id;
  input_file *in;
  int64_t row0, count;
  slot *slots;
  int spool_fd;
  _Atomic uint64_t spool_end;
  _Atomic int64_t remaining;
  int64_t next; /* next index to submit (network thread) */
  double start_time, end_time;
  int64_t successes;
} shard;

typedef struct task task;
struct task {
  shard *sh;
  int64_t index; /* -1: finish the shard */
  uint8_t *body;
  size_t size;
  task *next;
};

typedef struct dl_state {
  const dl_options *o;
  char out_dir[1024];
  sdw_manifest *m;
  sdw_image_limits limits;
  sdw_resize_options resize;
  double mtime; /* tar member mtime; < 0: the time of writing */
  int oom_sample;
  input_file *files;
  int file_count;
  shard *plan; /* this node's shards still to do, in id order */
  int64_t plan_count;
  int64_t plan_next;  /* next shard to open */
  int64_t open_count; /* opened and not finished */
  int64_t finished;   /* shards written (main thread's count of the finished list) */
  /* work queue */
  pthread_mutex_t mu;
  pthread_cond_t work_cv, main_cv;
  task *head, *tail;
  int queued;
  size_t queued_bytes;
  bool stop;
  shard **done_list; /* finished shards not yet seen by the main thread */
  int64_t done_count, done_cap;
  _Atomic int fatal;
  char fatal_msg[1300];
  int lock_fd; /* flock'd while the stage runs */
} dl_state;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void shard_name(int64_t id, char *out, size_t n) {
  snprintf(out, n, "%0*lld", OOM_SHARD_COUNT, (long long)id);
}

static void make_key(const dl_state *d, int64_t shard_id, int64_t index, char *out, size_t n) {
  int64_t scale = 1;
  for (int i = 0; i < d->oom_sample; i++)
    scale *= 10;
  snprintf(out, n, "%0*lld", d->oom_sample + OOM_SHARD_COUNT,
           (long long)(scale * shard_id + index));
}

static void set_fatal(dl_state *d, const char *msg) {
  int expected = 0;
  if (atomic_compare_exchange_strong(&d->fatal, &expected, 1))
    snprintf(d->fatal_msg, sizeof d->fatal_msg, "%s", msg);
  pthread_mutex_lock(&d->mu);
  pthread_cond_broadcast(&d->main_cv);
  pthread_mutex_unlock(&d->mu);
}

static void push_task(dl_state *d, task *t, bool front) {
  pthread_mutex_lock(&d->mu);
  if (front) {
    t->next = d->head;
    d->head = t;
    if (!d->tail) d->tail = t;
  } else {
    t->next = NULL;
    if (d->tail)
      d->tail->next = t;
    else
      d->head = t;
    d->tail = t;
  }
  d->queued++;
  d->queued_bytes += t->size;
  pthread_cond_signal(&d->work_cv);
  pthread_mutex_unlock(&d->mu);
}

/* One slot is settled; the last one hands the shard to a worker to write. */
static void sample_done(dl_state *d, shard *sh) {
  if (atomic_fetch_sub(&sh->remaining, 1) == 1) {
    task *t = calloc(1, sizeof *t);
    if (!t) {
      set_fatal(d, "out of memory");
      return;
    }
    t->sh = sh;
    t->index = -1;
    push_task(d, t, true);
  }
}

static void fail_slot(dl_state *d, shard *sh, int64_t i, int status, const char *message,
                      const char *reason) {
  slot *s = &sh->slots[i];
  s->status = (uint8_t)status;
  s->error = strdup(message && message[0] ? message : "unknown error");
  sdw_manifest_count_in(d->m, 1);
  sdw_manifest_count_failed(d->m, reason);
  sample_done(d, sh);
}

/* --- worker: one image ------------------------------------------------------------------- */

/* Does the original carry EXIF data (which img2dataset would report through
 * exifread)? JPEG: an APP1 "Exif" segment before the scan; WebP: an EXIF
 * chunk. exifread reads nothing from PNG. */
static bool has_exif(const uint8_t *p, size_t n) {
  if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8) {
    size_t i = 2;
    while (i + 4 <= n && p[i] == 0xFF) {
      unsigned marker = p[i + 1];
      if (marker == 0xDA || marker == 0xD9) break;
      size_t len = ((size_t)p[i + 2] << 8) | p[i + 3];
      if (marker == 0xE1 && len >= 8 && i + 10 <= n && memcmp(p + i + 4, "Exif\0\0", 6) == 0)
        return true;
      i += 2 + len;
    }
    return false;
  }
  if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) {
    size_t i = 12;
    while (i + 8 <= n) {
      size_t len = (size_t)p[i + 4] | ((size_t)p[i + 5] << 8) | ((size_t)p[i + 6] << 16) |
                   ((size_t)p[i + 7] << 24);
      if (!memcmp(p + i, "EXIF", 4)) return true;
      if (len > n - i - 8) break;
      i += 8 + len + (len & 1);
    }
  }
  return false;
}

static const char *decode_reason(sdw_image_format fmt, const char *msg) {
  if (fmt == SDW_IMAGE_UNKNOWN) return "not_an_image";
  if (strstr(msg, "limit")) return "image_too_large";
  if (strstr(msg, "truncated")) return "truncated_image";
  return "decode_error";
}

static void process_image(dl_state *d, shard *sh, int64_t i, const uint8_t *body, size_t size) {
  slot *s = &sh->slots[i];
  sdw_image out = {0};
  sdw_image_format fmt = SDW_IMAGE_UNKNOWN;
  uint8_t *jpg = NULL;
  size_t jpg_size = 0;
  int orig_w = 0, orig_h = 0;
  /* decoded rows go straight into the resize (no full-size image for JPEG) */
  sdw_status st =
      sdw_image_decode_resize(body, size, &d->limits, &d->resize, &out, &fmt, &orig_w, &orig_h);
  if (st == SDW_ERR_FORMAT || (st != SDW_OK && fmt == SDW_IMAGE_UNKNOWN)) {
    fail_slot(d, sh, i, SLOT_FAILED_RESIZE, sdw_last_error(), decode_reason(fmt, sdw_last_error()));
    return;
  }
  if (st == SDW_OK) st = sdw_image_encode_jpeg(&out, d->o->quality, &jpg, &jpg_size);
  if (st != SDW_OK) {
    sdw_image_free(&out);
    fail_slot(d, sh, i, SLOT_FAILED_RESIZE, sdw_last_error(), "resize_error");
    return;
  }
  /* the encoded image waits in the shard's spool until the shard is written */
  uint64_t off = atomic_fetch_add(&sh->spool_end, (uint64_t)jpg_size);
  size_t done = 0;
  while (done < jpg_size) {
    ssize_t w = pwrite(sh->spool_fd, jpg + done, jpg_size - done, (off_t)(off + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      char msg[1200];
      snprintf(msg, sizeof msg, "%s: cannot write the spool of a shard: %s", d->out_dir,
               w < 0 ? strerror(errno) : "no space");
      set_fatal(d, msg);
      break;
    }
    done += (size_t)w;
  }
  unsigned char digest[32];
  sdw_sha256 h;
  sdw_sha256_init(&h);
  sdw_sha256_update(&h, body, size);
  sdw_sha256_final(&h, digest);
  sdw_sha256_hex(digest, s->sha256);
  s->exif_unknown = has_exif(body, size);
  s->original_width = orig_w;
  s->original_height = orig_h;
  s->width = out.width;
  s->height = out.height;
  s->off = off;
  s->len = (uint32_t)jpg_size;
  s->status = SLOT_OK;
  sdw_image_free(&out);
  free(jpg);
  sdw_manifest_count_in(d->m, 1);
  sdw_manifest_count_out(d->m, 1);
  sample_done(d, sh);
}

/* --- worker: writing a shard ------------------------------------------------------------- */

/* status_dict: messages counted in first-seen order (key order). */
typedef struct counter {
  const char **names;
  int64_t *counts;
  int n, cap;
  int *table; /* open addressing over names, -1 empty */
  int table_size;
} counter;

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static bool counter_add(counter *c, const char *name) {
  if (2 * (c->n + 1) > c->table_size) {
    int size = c->table_size ? 2 * c->table_size : 64;
    int *t = malloc(sizeof *t * (size_t)size);
    if (!t) return false;
    for (int i = 0; i < size; i++)
      t[i] = -1;
    for (int k = 0; k < c->n; k++) {
      size_t h = (size_t)(hash_str(c->names[k]) & (uint64_t)(size - 1));
      while (t[h] >= 0)
        h = (h + 1) & (size_t)(size - 1);
      t[h] = k;
    }
    free(c->table);
    c->table = t;
    c->table_size = size;
  }
  size_t h = (size_t)(hash_str(name) & (uint64_t)(c->table_size - 1));
  while (c->table[h] >= 0) {
    if (strcmp(c->names[c->table[h]], name) == 0) {
      c->counts[c->table[h]]++;
      return true;
    }
    h = (h + 1) & (size_t)(c->table_size - 1);
  }
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 16;
    const char **nn = realloc(c->names, sizeof *nn * (size_t)cap);
    if (nn) c->names = nn;
    int64_t *nc = realloc(c->counts, sizeof *nc * (size_t)cap);
    if (nc) c->counts = nc;
    if (!nn || !nc) return false;
    c->cap = cap;
  }
  c->names[c->n] = name;
  c->counts[c->n] = 1;
  c->table[h] = c->n++;
  return true;
}

static void counter_free(counter *c) {
  free(c->names);
  free(c->counts);
  free(c->table);
}

static bool cell(const sdw_parquet_array *a, int64_t row, const char **s, size_t *n) {
  if (!sdw_parquet_array_is_valid(a, row)) return false;
  *s = (const char *)sdw_parquet_array_bytes(a, row, n);
  return true;
}

static void parquet_set_str_or_null(sdw_parquet_writer *w, int col, const char *s, size_t n,
                                    bool valid) {
  if (valid)
    sdw_parquet_writer_set_bytes(w, col, s, n);
  else
    sdw_parquet_writer_set_null(w, col);
}

static void parquet_set_i32_or_null(sdw_parquet_writer *w, int col, int32_t v, bool valid) {
  if (valid)
    sdw_parquet_writer_set_i32(w, col, v);
  else
    sdw_parquet_writer_set_null(w, col);
}

static const char *status_name(int status) {
  switch (status) {
  case SLOT_OK: return "success";
  case SLOT_FAILED_DOWNLOAD: return "failed_to_download";
  default: return "failed_to_resize";
  }
}

static sdw_status write_stats(dl_state *d, shard *sh, const char *path, int64_t successes,
                              int64_t failed_download, int64_t failed_resize,
                              const counter *status_dict) {
  sdw_pyjson j;
  sdw_pyjson_init(&j);
  sdw_pyjson_begin_object(&j);
  sdw_pyjson_key(&j, "count");
  sdw_pyjson_int(&j, sh->count);
  sdw_pyjson_key(&j, "successes");
  sdw_pyjson_int(&j, successes);
  sdw_pyjson_key(&j, "failed_to_download");
  sdw_pyjson_int(&j, failed_download);
  sdw_pyjson_key(&j, "failed_to_resize");
  sdw_pyjson_int(&j, failed_resize);
  sdw_pyjson_key(&j, "duration");
  sdw_pyjson_float(&j, sh->end_time - sh->start_time);
  sdw_pyjson_key(&j, "start_time");
  sdw_pyjson_float(&j, sh->start_time);
  sdw_pyjson_key(&j, "end_time");
  sdw_pyjson_float(&j, sh->end_time);
  sdw_pyjson_key(&j, "status_dict");
  sdw_pyjson_begin_object(&j);
  for (int k = 0; k < status_dict->n; k++) {
    sdw_pyjson_key(&j, status_dict->names[k]);
    sdw_pyjson_int(&j, status_dict->counts[k]);
  }
  sdw_pyjson_end_object(&j);
  sdw_pyjson_end_object(&j);
  sdw_status st = j.failed ? sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory")
                           : sdw_atomic_write(path, j.data, j.size);
  (void)d;
  sdw_pyjson_free(&j);
  return st;
}

static sdw_status write_shard(dl_state *d, shard *sh) {
  char name[32], tar_path[1200], pq_path[1200], stats_path[1200];
  shard_name(sh->id, name, sizeof name);
  snprintf(tar_path, sizeof tar_path, "%s/%s.tar", d->out_dir, name);
  snprintf(pq_path, sizeof pq_path, "%s/%s.parquet", d->out_dir, name);
  snprintf(stats_path, sizeof stats_path, "%s/%s_stats.json", d->out_dir, name);
  const bool cap = sh->in->has_caption;
  /* img2dataset's schema: the input columns it keeps ([caption,] url), then its own */
  sdw_parquet_field fields[11];
  int nf = 0;
  const sdw_parquet_type STR = SDW_PARQUET_BYTE_ARRAY, I32 = SDW_PARQUET_INT32;
  const sdw_parquet_logical UTF8 = SDW_PARQUET_LOGICAL_STRING, NONE = SDW_PARQUET_LOGICAL_NONE;
  if (cap) fields[nf++] = (sdw_parquet_field){"caption", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"url", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"key", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"status", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"error_message", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"width", I32, NONE, true};
  fields[nf++] = (sdw_parquet_field){"height", I32, NONE, true};
  fields[nf++] = (sdw_parquet_field){"original_width", I32, NONE, true};
  fields[nf++] = (sdw_parquet_field){"original_height", I32, NONE, true};
  fields[nf++] = (sdw_parquet_field){"exif", STR, UTF8, true};
  fields[nf++] = (sdw_parquet_field){"sha256", STR, UTF8, true};

  sdw_tar_writer *tw = NULL;
  sdw_parquet_writer *pw = NULL;
  sdw_status st = sdw_tar_writer_open(tar_path, &tw);
  if (st == SDW_OK) st = sdw_parquet_writer_open(pq_path, fields, nf, NULL, &pw);
  uint32_t max_len = 0;
  for (int64_t i = 0; i < sh->count; i++)
    if (sh->slots[i].status == SLOT_OK && sh->slots[i].len > max_len) max_len = sh->slots[i].len;
  uint8_t *buf = malloc(max_len ? max_len : 1);
  if (st == SDW_OK && !buf) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  counter status_dict = {0};
  int64_t successes = 0, failed_download = 0, failed_resize = 0;
  const double mtime = d->mtime >= 0 ? d->mtime : sdw_manifest_now();
  sdw_pyjson j;
  sdw_pyjson_init(&j);
  for (int64_t i = 0; i < sh->count && st == SDW_OK; i++) {
    const slot *s = &sh->slots[i];
    const int64_t row = sh->row0 + i;
    char key[40], member[64];
    make_key(d, sh->id, i, key, sizeof key);
    const char *url = NULL, *caption = NULL;
    size_t url_n = 0, caption_n = 0;
    const bool url_ok = cell(&sh->in->url, row, &url, &url_n);
    const bool caption_ok = cap && cell(&sh->in->caption, row, &caption, &caption_n);
    const bool ok = s->status == SLOT_OK;
    if (ok)
      successes++;
    else if (s->status == SLOT_FAILED_DOWNLOAD)
      failed_download++;
    else
      failed_resize++;
    if (!counter_add(&status_dict, ok ? "success" : s->error)) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      break;
    }
    const char *exif = ok ? (s->exif_unknown ? NULL : "{}") : NULL;
    if (ok) {
      size_t got = 0;
      while (got < s->len) {
        ssize_t r = pread(sh->spool_fd, buf + got, s->len - got, (off_t)(s->off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
      }
      if (got != s->len) {
        st = sdw_fail(SDW_ERR_IO, "%s: cannot read back the spool of shard %s", d->out_dir, name);
        break;
      }
      /* the meta as img2dataset's json.dumps(meta, indent=4) */
      j.size = 0;
      sdw_pyjson_begin_object(&j);
      if (cap) {
        sdw_pyjson_key(&j, "caption");
        if (caption_ok)
          sdw_pyjson_string(&j, caption, caption_n);
        else
          sdw_pyjson_null(&j);
      }
      sdw_pyjson_key(&j, "url");
      sdw_pyjson_string(&j, url, url_n);
      sdw_pyjson_key(&j, "key");
      sdw_pyjson_cstring(&j, key);
      sdw_pyjson_key(&j, "status");
      sdw_pyjson_cstring(&j, "success");
      sdw_pyjson_key(&j, "error_message");
      sdw_pyjson_null(&j);
      sdw_pyjson_key(&j, "width");
      sdw_pyjson_int(&j, s->width);
      sdw_pyjson_key(&j, "height");
      sdw_pyjson_int(&j, s->height);
      sdw_pyjson_key(&j, "original_width");
      sdw_pyjson_int(&j, s->original_width);
      sdw_pyjson_key(&j, "original_height");
      sdw_pyjson_int(&j, s->original_height);
      sdw_pyjson_key(&j, "exif");
      sdw_pyjson_cstring(&j, exif);
      sdw_pyjson_key(&j, "sha256");
      sdw_pyjson_cstring(&j, s->sha256);
      sdw_pyjson_end_object(&j);
      if (j.failed) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
        break;
      }
      /* webdataset's TarWriter writes a sample's members sorted: jpg, json, txt */
      snprintf(member, sizeof member, "%s.jpg", key);
      st = sdw_tar_writer_add(tw, member, buf, s->len, mtime);
      snprintf(member, sizeof member, "%s.json", key);
      if (st == SDW_OK) st = sdw_tar_writer_add(tw, member, j.data, j.size, mtime);
      snprintf(member, sizeof member, "%s.txt", key);
      if (st == SDW_OK && cap)
        st = sdw_tar_writer_add(tw, member, caption_ok ? caption : "", caption_ok ? caption_n : 0,
                                mtime);
      if (st != SDW_OK) break;
    }
    int c = 0;
    if (cap) parquet_set_str_or_null(pw, c++, caption, caption_n, caption_ok);
    parquet_set_str_or_null(pw, c++, url, url_n, url_ok);
    sdw_parquet_writer_set_str(pw, c++, key);
    sdw_parquet_writer_set_str(pw, c++, status_name(s->status));
    sdw_parquet_writer_set_str(pw, c++, ok ? NULL : s->error);
    parquet_set_i32_or_null(pw, c++, s->width, ok);
    parquet_set_i32_or_null(pw, c++, s->height, ok);
    parquet_set_i32_or_null(pw, c++, s->original_width, ok);
    parquet_set_i32_or_null(pw, c++, s->original_height, ok);
    sdw_parquet_writer_set_str(pw, c++, exif);
    sdw_parquet_writer_set_str(pw, c++, ok ? s->sha256 : NULL);
    st = sdw_parquet_writer_end_row(pw);
  }
  sdw_pyjson_free(&j);
  free(buf);
  sh->successes = successes;
  /* tar, then parquet, then the stats that mark the shard done */
  if (st == SDW_OK) {
    st = sdw_tar_writer_close(tw);
    tw = NULL;
  }
  if (st == SDW_OK) {
    st = sdw_parquet_writer_close(pw);
    pw = NULL;
  }
  sh->end_time = sdw_manifest_now();
  if (st == SDW_OK)
    st = write_stats(d, sh, stats_path, successes, failed_download, failed_resize, &status_dict);
  sdw_tar_writer_abort(tw);
  sdw_parquet_writer_abort(pw);
  counter_free(&status_dict);
  return st;
}

static void shard_release(shard *sh) {
  if (sh->slots) {
    for (int64_t i = 0; i < sh->count; i++)
      free(sh->slots[i].error);
    free(sh->slots);
    sh->slots = NULL;
  }
  if (sh->spool_fd >= 0) close(sh->spool_fd);
  sh->spool_fd = -1;
}

static void *worker_main(void *arg) {
  dl_state *d = arg;
  for (;;) {
    pthread_mutex_lock(&d->mu);
    while (!d->head && !d->stop)
      pthread_cond_wait(&d->work_cv, &d->mu);
    if (d->stop) {
      pthread_mutex_unlock(&d->mu);
      return NULL;
    }
    task *t = d->head;
    d->head = t->next;
    if (!d->head) d->tail = NULL;
    d->queued--;
    d->queued_bytes -= t->size;
    pthread_cond_signal(&d->main_cv); /* room for more downloads */
    pthread_mutex_unlock(&d->mu);
    if (t->index >= 0) {
      process_image(d, t->sh, t->index, t->body, t->size);
      free(t->body);
    } else {
      shard *sh = t->sh;
      if (write_shard(d, sh) != SDW_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", sdw_last_error());
        set_fatal(d, msg);
      }
      shard_release(sh);
      pthread_mutex_lock(&d->mu);
      if (d->done_count == d->done_cap) {
        int64_t cap = d->done_cap ? 2 * d->done_cap : 64;
        shard **p = realloc(d->done_list, sizeof *p * (size_t)cap);
        if (p) {
          d->done_list = p;
          d->done_cap = cap;
        }
      }
      if (d->done_count < d->done_cap) d->done_list[d->done_count++] = sh;
      pthread_cond_signal(&d->main_cv);
      pthread_mutex_unlock(&d->mu);
    }
    free(t);
  }
}

/* --- the network loop --------------------------------------------------------------------- */

static const char *http_reason(const sdw_http_result *r) {
  switch (r->outcome) {
  case SDW_HTTP_ERR_STATUS:
    if (r->status == 404) return "http_404";
    if (r->status == 403) return "http_403";
    if (r->status == 410) return "http_410";
    if (r->status == 429) return "http_429";
    if (r->status >= 500) return "http_5xx";
    if (r->status >= 400) return "http_4xx";
    return "http_3xx";
  case SDW_HTTP_ERR_TIMEOUT: return "timeout";
  case SDW_HTTP_ERR_TOO_LARGE: return "too_large";
  case SDW_HTTP_ERR_OPTED_OUT: return "opted_out";
  case SDW_HTTP_ERR_REDIRECTS: return "redirect_limit";
  case SDW_HTTP_ERR_CONNECT: return "connect_error";
  case SDW_HTTP_ERR_BAD_URL: return "bad_url";
  default: return "network_error";
  }
}

static void on_download(void *ctx, sdw_http_result *r) {
  dl_state *d = ctx;
  shard *sh = &d->plan[r->id >> 32];
  const int64_t i = (int64_t)(r->id & 0xFFFFFFFFu);
  if (r->outcome != SDW_HTTP_OK) {
    fail_slot(d, sh, i, SLOT_FAILED_DOWNLOAD, r->message, http_reason(r));
    return;
  }
  task *t = calloc(1, sizeof *t);
  if (!t) {
    free(r->body);
    set_fatal(d, "out of memory");
    return;
  }
  t->sh = sh;
  t->index = i;
  t->body = r->body;
  t->size = r->size;
  r->body = NULL;
  push_task(d, t, false);
}

/* Opens the next shard of the plan: its slots, spool and input columns. */
static sdw_status open_shard(dl_state *d, shard *sh) {
  SDW_TRY(input_load(sh->in, d->o));
  sh->slots = calloc((size_t)sh->count, sizeof *sh->slots);
  if (!sh->slots) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  /* an unlinked file in the output directory: nothing is left if we die */
  sh->spool_fd = open(d->out_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (sh->spool_fd < 0) {
    char tmpl[1100];
    snprintf(tmpl, sizeof tmpl, "%s/.spool.XXXXXX", d->out_dir);
    sh->spool_fd = mkostemp(tmpl, O_CLOEXEC);
    if (sh->spool_fd >= 0) unlink(tmpl);
  }
  if (sh->spool_fd < 0)
    return sdw_fail(SDW_ERR_IO, "%s: cannot create a spool file: %s", d->out_dir, strerror(errno));
  atomic_store(&sh->spool_end, 0);
  atomic_store(&sh->remaining, sh->count);
  sh->next = 0;
  sh->start_time = sdw_manifest_now();
  return SDW_OK;
}

/* Frees the columns of input files that no shard still needs. */
static void release_inputs(dl_state *d) {
  for (int k = 0; k < d->file_count; k++) {
    input_file *f = &d->files[k];
    if (f->loaded && f->last_plan < d->plan_next && f->open_shards == 0) input_unload(f);
  }
}

static bool too_busy(dl_state *d) {
  /* like img2dataset's semaphore: at most ~2 x concurrency bodies wait for a
   * worker, and at most 512 MiB of them */
  pthread_mutex_lock(&d->mu);
  bool busy = d->queued >= 2 * d->o->concurrency + 2 * d->o->workers ||
              d->queued_bytes >= ((size_t)512 << 20);
  pthread_mutex_unlock(&d->mu);
  return busy;
}

static sdw_status submit_more(dl_state *d, sdw_http_engine *e) {
  /* shards open at once: enough to keep transfers going past a slow URL */
  const int64_t max_open = 16;
  while (sdw_http_room(e) > 0 && !too_busy(d)) {
    /* URLs go out in order, so only the shard opened last can have some left */
    shard *sh = NULL;
    if (d->plan_next > 0 && d->plan[d->plan_next - 1].next < d->plan[d->plan_next - 1].count)
      sh = &d->plan[d->plan_next - 1];
    if (!sh) {
      if (d->open_count >= max_open || d->plan_next >= d->plan_count) break;
      shard *next = &d->plan[d->plan_next];
      SDW_TRY(open_shard(d, next));
      d->plan_next++;
      d->open_count++;
      next->in->open_shards++;
      continue;
    }
    const int64_t i = sh->next++;
    const char *url;
    size_t n;
    if (!cell(&sh->in->url, sh->row0 + i, &url, &n) || n == 0) {
      fail_slot(d, sh, i, SLOT_FAILED_DOWNLOAD, "no URL", "bad_url");
      continue;
    }
    SDW_TRY(sdw_http_submit(e, url, n, ((uint64_t)(sh - d->plan) << 32) | (uint64_t)i));
  }
  return SDW_OK;
}

/* Shards written by workers since the last call: manifest outputs, a line
 * on stderr, and the open count. */
static void collect_finished(dl_state *d) {
  shard *list[256];
  int n;
  do {
    pthread_mutex_lock(&d->mu);
    n = 0;
    while (d->done_count > 0 && n < 256)
      list[n++] = d->done_list[--d->done_count];
    pthread_mutex_unlock(&d->mu);
    for (int k = 0; k < n; k++) {
      shard *sh = list[k];
      char name[32], rel[64];
      shard_name(sh->id, name, sizeof name);
      snprintf(rel, sizeof rel, "%s.tar", name);
      sdw_manifest_add_output(d->m, rel);
      d->open_count--;
      sh->in->open_shards--;
      d->finished++;
      fprintf(stderr, "sdw: download: shard %s: %lld of %lld images (%.1f s); %lld/%lld shards\n",
              name, (long long)sh->successes, (long long)sh->count, sh->end_time - sh->start_time,
              (long long)d->finished, (long long)d->plan_count);
    }
  } while (n == 256);
}

/* Removes temporaries a killed run left for this node's shards (writers name
 * them ".<file>.tmp.<pid>"), when that process is gone. */
static void remove_stale_temporaries(dl_state *d) {
  DIR *dir = opendir(d->out_dir);
  if (!dir) return;
  struct dirent *e;
  while ((e = readdir(dir))) {
    const char *nm = e->d_name;
    const char *tmp = strstr(nm, ".tmp.");
    if (nm[0] != '.' || !tmp) continue;
    int64_t pid;
    if (!sdw_parse_i64(tmp + 5, 1, INT_MAX, &pid)) continue;
    /* the shard id is the leading digits of the file name */
    int64_t id = 0;
    const char *p = nm + 1;
    int digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 18) {
      id = id * 10 + (*p++ - '0');
      digits++;
    }
    if (digits == 0 || id % d->o->num_nodes != d->o->node_rank) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", d->out_dir, nm);
    unlink(path);
  }
  closedir(dir);
}

static bool file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* One process per node and output directory (a second one would write the
 * same shards): an flock held while the stage runs, taken before the
 * manifest is touched. */
static sdw_status lock_output(dl_state *d) {
  char lock_path[1200];
  snprintf(lock_path, sizeof lock_path, "%s/.sdw-download.lock.%d", d->out_dir, d->o->node_rank);
  d->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (d->lock_fd < 0) return sdw_fail(SDW_ERR_IO, "%s: %s", lock_path, strerror(errno));
  if (flock(d->lock_fd, LOCK_EX | LOCK_NB) != 0)
    return sdw_fail(SDW_ERR_IO, "%s: another sdw pipeline download of node %d is writing here",
                    d->out_dir, d->o->node_rank);
  return SDW_OK;
}

static int run(dl_state *d) {
  const dl_options *o = d->o;
  sdw_manifest *m = d->m;
  /* the plan: every input's shards in order, this node's that are not done */
  int64_t next_id = 0, node_urls = 0, skipped_shards = 0, skipped_urls = 0, todo_urls = 0;
  int64_t total_shards = 0;
  for (int k = 0; k < d->file_count; k++) {
    input_file *f = &d->files[k];
    if (input_count(f, o) != SDW_OK) return -1;
    total_shards += (f->rows + o->per_shard - 1) / o->per_shard;
  }
  d->plan = calloc((size_t)(total_shards ? total_shards : 1), sizeof *d->plan);
  if (!d->plan) {
    sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    return -1;
  }
  for (int k = 0; k < d->file_count; k++) {
    input_file *f = &d->files[k];
    f->last_plan = -1;
    for (int64_t row0 = 0; row0 < f->rows; row0 += o->per_shard, next_id++) {
      const int64_t count = f->rows - row0 < o->per_shard ? f->rows - row0 : o->per_shard;
      if (next_id % o->num_nodes != o->node_rank) continue;
      node_urls += count;
      char name[32], stats[1200];
      shard_name(next_id, name, sizeof name);
      snprintf(stats, sizeof stats, "%s/%s_stats.json", d->out_dir, name);
      if (o->incremental && file_exists(stats)) {
        skipped_shards++;
        skipped_urls += count;
        continue;
      }
      shard *sh = &d->plan[d->plan_count++];
      sh->id = next_id;
      sh->in = f;
      sh->row0 = row0;
      sh->count = count;
      sh->spool_fd = -1;
      todo_urls += count;
      f->last_plan = d->plan_count - 1;
    }
    /* text inputs were read whole to count them; keep only what has work */
    if (f->last_plan < 0) input_unload(f);
  }
  sdw_manifest_set_total(m, todo_urls);
  sdw_manifest_count_skipped(m, skipped_urls);
  cJSON_AddNumberToObject(m->extra, "node_rank", o->node_rank);
  cJSON_AddNumberToObject(m->extra, "num_nodes", o->num_nodes);
  cJSON_AddNumberToObject(m->extra, "node_urls", (double)node_urls);
  cJSON_AddNumberToObject(m->extra, "shards_total", (double)total_shards);
  cJSON_AddNumberToObject(m->extra, "shards_to_do", (double)d->plan_count);
  cJSON_AddNumberToObject(m->extra, "shards_skipped", (double)skipped_shards);
  cJSON_AddStringToObject(m->extra, "output", d->out_dir);
  fprintf(stderr,
          "sdw: download: %lld URLs in %lld shards for node %d of %d; %lld shards done "
          "already, %lld to do\n",
          (long long)node_urls, (long long)(d->plan_count + skipped_shards), o->node_rank,
          o->num_nodes, (long long)skipped_shards, (long long)d->plan_count);
  remove_stale_temporaries(d);
  if (d->plan_count == 0) return 0;

  char ua[256];
  snprintf(ua, sizeof ua,
           "Mozilla/5.0 (X11; Linux x86_64) sdw/%s (compatible; %s; "
           "+https://github.com/rom1504/img2dataset)",
           SDW_VERSION, o->ua_token[0] ? o->ua_token : "sdw");
  char tokens[160];
  snprintf(tokens, sizeof tokens, "sdw%s%s", o->ua_token[0] ? "," : "", o->ua_token);
  for (char *p = tokens; *p; p++)
    *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
  char *disallowed = strdup(o->disallowed);
  if (!disallowed) return -1;
  /* the list as img2dataset keeps it: trimmed, lowercase */
  {
    char *w = disallowed;
    for (const char *p = o->disallowed; *p;) {
      while (*p == ' ' || *p == '\t')
        p++;
      const char *q = p;
      while (*q && *q != ',')
        q++;
      const char *b = q;
      while (b > p && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
      if (b > p) {
        if (w != disallowed) *w++ = ',';
        for (const char *c = p; c < b; c++)
          *w++ = (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c);
      }
      p = *q ? q + 1 : q;
    }
    *w = 0;
  }
  sdw_http_options ho = {
      .concurrency = o->concurrency,
      .timeout = o->timeout,
      .total_timeout = o->timeout * 10 > 60 ? o->timeout * 10 : 60,
      .retries = o->retries,
      .retry_delay = 0.5,
      .max_redirects = o->max_redirects,
      .max_bytes = o->max_bytes,
      .user_agent = ua,
      .robots_tokens = tokens,
      .disallowed_directives = disallowed,
  };
  sdw_http_engine *e = NULL;
  sdw_status st = sdw_http_engine_create(&ho, &e);
  free(disallowed);
  if (st != SDW_OK) return -1;

  pthread_t *threads = calloc((size_t)o->workers, sizeof *threads);
  int started = 0;
  if (!threads) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; st == SDW_OK && i < o->workers; i++) {
    if (pthread_create(&threads[i], NULL, worker_main, d) != 0)
      st = sdw_fail(SDW_ERR_INTERNAL, "cannot start a worker thread");
    else
      started++;
  }
  while (st == SDW_OK && !g_stop && !atomic_load(&d->fatal)) {
    collect_finished(d);
    release_inputs(d);
    if (d->finished == d->plan_count) break;
    st = submit_more(d, e);
    if (st != SDW_OK) break;
    if (sdw_http_pending(e) > 0) {
      st = sdw_http_run(e, 50, on_download, d);
    } else {
      /* nothing on the network: wait for the workers */
      pthread_mutex_lock(&d->mu);
      if (d->done_count == 0 && !atomic_load(&d->fatal)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&d->main_cv, &d->mu, &ts);
      }
      pthread_mutex_unlock(&d->mu);
    }
    sdw_manifest_flush(m, false);
  }
  sdw_http_engine_destroy(e);
  /* stop the workers: what they are doing completes, the queue is dropped */
  pthread_mutex_lock(&d->mu);
  d->stop = true;
  pthread_cond_broadcast(&d->work_cv);
  pthread_mutex_unlock(&d->mu);
  for (int i = 0; i < started; i++)
    pthread_join(threads[i], NULL);
  free(threads);
  for (task *t = d->head; t;) {
    task *n = t->next;
    free(t->body);
    free(t);
    t = n;
  }
  d->head = d->tail = NULL;
  collect_finished(d);
  for (int64_t s = 0; s < d->plan_count; s++)
    shard_release(&d->plan[s]);
  if (st != SDW_OK) return -1;
  if (atomic_load(&d->fatal)) {
    sdw_fail(SDW_ERR_IO, "%s", d->fatal_msg);
    return -1;
  }
  if (g_stop && d->finished < d->plan_count) return 130;
  return 0;
}

int sdw_pipeline_download_main(int argc, char **argv) {
  dl_options o;
  int rc = parse_options(argc, argv, &o);
  if (rc == 1) {
    usage(stdout);
    return 0;
  }
  if (rc == 2) return 2;
  dl_state d;
  memset(&d, 0, sizeof d);
  d.o = &o;
  if (o.output)
    snprintf(d.out_dir, sizeof d.out_dir, "%s", o.output);
  else
    snprintf(d.out_dir, sizeof d.out_dir, "%s/shards", o.data);
  d.limits.max_pixels = o.max_pixels;
  d.resize.mode = o.resize_mode;
  d.resize.size = o.image_size;
  d.resize.resize_only_if_bigger = o.only_if_bigger;
  d.mtime = -1;
  d.lock_fd = -1;
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  int64_t epoch;
  if (sde && sdw_parse_i64(sde, 0, 8589934591LL, &epoch)) d.mtime = (double)epoch;
  /* img2dataset's oom_sample_per_shard = ceil(log10(number_sample_per_shard)) */
  for (int64_t p = 1; p < o.per_shard; p *= 10)
    d.oom_sample++;
  pthread_mutex_init(&d.mu, NULL);
  pthread_cond_init(&d.work_cv, NULL);
  pthread_cond_init(&d.main_cv, NULL);

  char stage[32];
  if (o.num_nodes > 1)
    snprintf(stage, sizeof stage, "download.%d", o.node_rank);
  else
    snprintf(stage, sizeof stage, "download");
  sdw_manifest m;
  if (sdw_mkdir_p(d.out_dir) != SDW_OK || lock_output(&d) != SDW_OK ||
      sdw_manifest_begin(&m, o.data, stage) != SDW_OK) {
    if (d.lock_fd >= 0) close(d.lock_fd);
    fprintf(stderr, "sdw: pipeline download: %s\n", sdw_last_error());
    return 1;
  }
  d.m = &m;
  sdw_status st = list_inputs(&o, &d.files, &d.file_count);
  for (int k = 0; st == SDW_OK && k < d.file_count; k++)
    st = sdw_manifest_add_input(&m, d.files[k].path, false);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second signal ends the process at once */
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  rc = st == SDW_OK ? run(&d) : -1;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);

  if (rc == -1) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    sdw_manifest_set_message(&m, "%s", msg);
    sdw_manifest_finish(&m, "failed");
    fprintf(stderr, "sdw: pipeline download: %s\n", msg);
    rc = 1;
  } else if (rc == 130) {
    sdw_manifest_set_message(&m,
                             "interrupted; %lld of %lld shards written, the rest are redone "
                             "next time",
                             (long long)d.finished, (long long)d.plan_count);
    sdw_manifest_finish(&m, "interrupted");
    fprintf(stderr, "sdw: download: interrupted; %lld of %lld shards written\n",
            (long long)d.finished, (long long)d.plan_count);
  } else {
    const int64_t in = atomic_load(&m.in), out = atomic_load(&m.out);
    sdw_manifest_finish(&m, "done");
    fprintf(stderr, "sdw: download: done: %lld of %lld images downloaded into %s\n", (long long)out,
            (long long)in, d.out_dir);
  }
  for (int k = 0; k < d.file_count; k++) {
    input_unload(&d.files[k]);
    free(d.files[k].path);
  }
  free(d.files);
  free(d.plan);
  if (d.lock_fd >= 0) close(d.lock_fd);
  free(d.done_list);
  pthread_mutex_destroy(&d.mu);
  pthread_cond_destroy(&d.work_cv);
  pthread_cond_destroy(&d.main_cv);
  return rc;
}
