/* `sdw pipeline diffusiondb`: DiffusionDB part zips -> WebDataset shards in
 * img2dataset's layout, plus a metadata parquet (the seed's
 * data_pipeline/01b_download_diffusiondb.py, SEED.md §3.9, without the
 * download: the zips come from `sdw pipeline metadata` or any mirror).
 *
 * Input: part-NNNNNN.zip files (--input, repeatable: a file, or a directory
 * whose *.zip files are taken in name order). Each holds images (PNG, WebP
 * or JPEG) and part-NNNNNN.json mapping an image's file name to its
 * generation record {"p": prompt, "se": seed, "c": cfg scale, "st": steps,
 * "sa": sampler}.
 *
 * Output, for each zip named P.zip, in OUT (--output, default DIR/shards):
 *   P.tar           per image, in file-name order: <stem>.jpg (the image
 *                   resized so its shorter side is --image-size, center-
 *                   cropped to a square, JPEG quality --jpeg-quality; as the
 *                   seed's LANCZOS + crop + q95, with INTER_AREA when
 *                   shrinking and Lanczos-4 when enlarging, img2dataset's
 *                   kernels), <stem>.json (img2dataset's per-sample fields
 *                   plus seed, cfg, steps, sampler), <stem>.txt (the prompt)
 *   P.parquet       one row per image: key, caption, url, status,
 *                   error_message, width, height, original_width,
 *                   original_height, seed, cfg, steps, sampler
 *   P_stats.json    img2dataset's shard statistics, written LAST
 * and DIR/metadata/diffusiondb.parquet once every zip is done, the kept
 * rows of all shards in input order with image_key ("P.tar::<stem>", the
 * key preprocess gives them), URL ("diffusiondb://P/<file name>"), TEXT,
 * source ("diffusiondb"), seed, cfg, steps, sampler, width, height (of the
 * original), like the filter stage's output. `sdw pipeline preprocess` and
 * `build` then run on the shards as on downloaded ones.
 *
 * An image without a prompt in the JSON (reason no_prompt) or that does not
 * decode (decode_error) is left out and counted. Tar member times are
 * SOURCE_DATE_EPOCH when set, else the zip's modification time, so the
 * same zip gives the same shard bytes.
 *
 * Resume: a zip whose P_stats.json exists is done and skipped; the others
 * are redone (their files appear atomically), so a run killed at any moment
 * and started again ends with every image exactly once. SIGINT/SIGTERM stop
 * after the zip in progress is abandoned: exit 130. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/zip_reader.h"
#include "pipeline/image.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/pyjson.h"
#include "pipeline/stages.h"
#include "pipeline/tar.h"

enum { MAX_INPUTS = 256, SHARD_COLS = 13, META_COLS = 10 };

typedef struct ddb_options {
  const char *data, *output;
  const char *inputs[MAX_INPUTS];
  int input_count;
  int64_t image_size, quality;
} ddb_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline diffusiondb --data DIR --input PATH [--input PATH ...] [options]\n"
          "\n"
          "Turns DiffusionDB part zips (images + part-NNNNNN.json prompts) into WebDataset\n"
          "shards in img2dataset's layout (P.tar with <stem>.jpg/.json/.txt, P.parquet,\n"
          "P_stats.json), the images center-cropped to --image-size and JPEG-encoded, and\n"
          "writes DIR/metadata/diffusiondb.parquet. A zip whose _stats.json exists is skipped.\n"
          "\n"
          "  --data DIR              data directory (manifest in DIR/manifests)\n"
          "  --input PATH            a part zip, or a directory of them (repeatable)\n"
          "  --output DIR            shard directory (default DIR/shards)\n"
          "  --image-size N          (default 512)\n"
          "  --jpeg-quality Q        (default 95)\n"
          "  --help                  this text\n");
}

static int parse_options(int argc, char **argv, ddb_options *o) {
  memset(o, 0, sizeof *o);
  o->image_size = 512;
  o->quality = 95;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline diffusiondb: %s needs a value (or is unknown; see --help)\n",
              a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--output") == 0)
      o->output = v;
    else if (strcmp(a, "--input") == 0) {
      ok = o->input_count < MAX_INPUTS;
      if (ok) o->inputs[o->input_count++] = v;
    } else if (strcmp(a, "--image-size") == 0)
      ok = sdw_parse_i64(v, 1, 16384, &o->image_size);
    else if (strcmp(a, "--jpeg-quality") == 0)
      ok = sdw_parse_i64(v, 1, 100, &o->quality);
    else {
      fprintf(stderr, "sdw: pipeline diffusiondb: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline diffusiondb: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data || o->input_count == 0) {
    fprintf(stderr, "sdw: pipeline diffusiondb: --data and --input are required (see --help)\n");
    return 2;
  }
  return 0;
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static const sdw_parquet_field k_shard_fields[SHARD_COLS] = {
    {"key", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"caption", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
    {"url", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"status", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"error_message", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
    {"width", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"height", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"original_width", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"original_height", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"seed", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
    {"cfg", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, true},
    {"steps", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
    {"sampler", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
};

static const sdw_parquet_field k_meta_fields[META_COLS] = {
    {"image_key", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"URL", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"TEXT", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"source", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"seed", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
    {"cfg", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, true},
    {"steps", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, true},
    {"sampler", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
    {"width", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"height", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
};

/* One image of a zip. */
typedef struct item {
  const char *name; /* the zip entry's name (owned by the zip) */
  char stem[256];
  const void *data;
  size_t size;
  const cJSON *rec; /* its record in the part JSON, or NULL */
  const char *reason;
  char error[256];
  uint8_t *jpeg; /* malloc'd */
  size_t jpeg_size;
  int width, height, orig_w, orig_h;
} item;

static bool image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && dot != name && !strchr(name, '/') &&
         (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".webp") == 0 ||
          strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

static int cmp_items(const void *a, const void *b) {
  return strcmp(((const item *)a)->name, ((const item *)b)->name);
}

static void process_item(const ddb_options *o, item *it) {
  const cJSON *p = it->rec ? cJSON_GetObjectItemCaseSensitive(it->rec, "p") : NULL;
  if (!cJSON_IsString(p)) {
    it->reason = "no_prompt";
    snprintf(it->error, sizeof it->error, "no prompt in the part's JSON");
    return;
  }
  sdw_image img = {0}, r = {0};
  if (sdw_image_decode(it->data, it->size, NULL, &img, NULL) != SDW_OK) {
    it->reason = "decode_error";
    snprintf(it->error, sizeof it->error, "%s", sdw_last_error());
    return;
  }
  it->orig_w = img.width;
  it->orig_h = img.height;
  sdw_resize_options ro = {.mode = SDW_RESIZE_CENTER_CROP,
                           .size = (int)o->image_size,
                           .resize_only_if_bigger = 0,
                           .upscale_cubic = 0};
  sdw_status st = sdw_image_resize(&img, &ro, &r);
  sdw_image_free(&img);
  if (st == SDW_OK) st = sdw_image_encode_jpeg(&r, (int)o->quality, &it->jpeg, &it->jpeg_size);
  it->width = r.width;
  it->height = r.height;
  sdw_image_free(&r);
  if (st != SDW_OK) {
    it->reason = "resize_error";
    snprintf(it->error, sizeof it->error, "%s", sdw_last_error());
  }
}

static bool rec_i64(const cJSON *rec, const char *k, int64_t *v) {
  const cJSON *x = rec ? cJSON_GetObjectItemCaseSensitive(rec, k) : NULL;
  if (!cJSON_IsNumber(x)) return false;
  *v = (int64_t)x->valuedouble;
  return true;
}

static bool rec_f64(const cJSON *rec, const char *k, double *v) {
  const cJSON *x = rec ? cJSON_GetObjectItemCaseSensitive(rec, k) : NULL;
  if (!cJSON_IsNumber(x)) return false;
  *v = x->valuedouble;
  return true;
}

static const char *rec_str(const cJSON *rec, const char *k) {
  const cJSON *x = rec ? cJSON_GetObjectItemCaseSensitive(rec, k) : NULL;
  return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Converts one zip (P.zip) into P.tar, P.parquet, P_stats.json. */
static sdw_status convert_zip(const ddb_options *o, sdw_manifest *m, const char *zip_path,
                              const char *out_dir, const char *part, double mtime) {
  sdw_zip *z;
  SDW_TRY(sdw_zip_open(zip_path, &z));
  const double t0 = sdw_manifest_now();
  char json_name[600];
  snprintf(json_name, sizeof json_name, "%s.json", part);
  const sdw_zip_entry *je = sdw_zip_find(z, json_name);
  if (!je) {
    /* any single .json entry will do (mirrors rename the zips) */
    for (size_t i = 0; i < sdw_zip_count(z) && !je; i++) {
      const char *n = sdw_zip_at(z, i)->name;
      size_t l = strlen(n);
      if (l > 5 && strcmp(n + l - 5, ".json") == 0 && !strchr(n, '/')) je = sdw_zip_at(z, i);
    }
  }
  if (!je) {
    sdw_zip_close(z);
    return sdw_fail(SDW_ERR_FORMAT, "%s: no %s with the prompts", zip_path, json_name);
  }
  const void *jd;
  size_t jn;
  sdw_status st = sdw_zip_read(z, je, &jd, &jn);
  cJSON *prompts = st == SDW_OK ? cJSON_ParseWithLength(jd, jn) : NULL;
  if (st == SDW_OK && !cJSON_IsObject(prompts))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: %s is not a JSON object", zip_path, je->name);
  size_t n = 0, cap = sdw_zip_count(z);
  item *items = calloc(cap ? cap : 1, sizeof *items);
  if (st == SDW_OK && !items) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  /* the reader is not thread-safe: read every entry first */
  for (size_t i = 0; i < cap && st == SDW_OK; i++) {
    const sdw_zip_entry *e = sdw_zip_at(z, i);
    if (!image_name(e->name)) continue;
    item *it = &items[n];
    it->name = e->name;
    const char *dot = strrchr(e->name, '.');
    snprintf(it->stem, sizeof it->stem, "%.*s", (int)(dot - e->name), e->name);
    if (sdw_zip_read(z, e, &it->data, &it->size) != SDW_OK) {
      it->reason = "bad_entry";
      snprintf(it->error, sizeof it->error, "%s", sdw_last_error());
    }
    it->rec = cJSON_GetObjectItemCaseSensitive(prompts, e->name);
    n++;
  }
  if (st == SDW_OK && n) qsort(items, n, sizeof *items, cmp_items);
  if (st == SDW_OK) {
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < n; i++)
      if (!items[i].reason) process_item(o, &items[i]);
  }
  char tar_path[8192], pq_path[8192], stats_path[8192];
  snprintf(tar_path, sizeof tar_path, "%s/%s.tar", out_dir, part);
  snprintf(pq_path, sizeof pq_path, "%s/%s.parquet", out_dir, part);
  snprintf(stats_path, sizeof stats_path, "%s/%s_stats.json", out_dir, part);
  sdw_tar_writer *tw = NULL;
  sdw_parquet_writer *pw = NULL;
  if (st == SDW_OK) st = sdw_tar_writer_open(tar_path, &tw);
  if (st == SDW_OK) st = sdw_parquet_writer_open(pq_path, k_shard_fields, SHARD_COLS, NULL, &pw);
  int64_t ok_count = 0, failed = 0;
  sdw_pyjson j;
  sdw_pyjson_init(&j);
  for (size_t i = 0; i < n && st == SDW_OK; i++) {
    item *it = &items[i];
    const char *prompt = rec_str(it->rec, "p"), *sampler = rec_str(it->rec, "sa");
    int64_t seed = 0, steps = 0;
    double cfg = 0;
    bool has_seed = rec_i64(it->rec, "se", &seed), has_steps = rec_i64(it->rec, "st", &steps);
    bool has_cfg = rec_f64(it->rec, "c", &cfg);
    char url[1024];
    snprintf(url, sizeof url, "diffusiondb://%s/%s", part, it->name);
    sdw_manifest_count_in(m, 1);
    const bool ok = it->reason == NULL;
    if (ok) {
      j.size = 0;
      sdw_pyjson_begin_object(&j);
      sdw_pyjson_key(&j, "caption");
      sdw_pyjson_cstring(&j, prompt);
      sdw_pyjson_key(&j, "url");
      sdw_pyjson_cstring(&j, url);
      sdw_pyjson_key(&j, "key");
      sdw_pyjson_cstring(&j, it->stem);
      sdw_pyjson_key(&j, "status");
      sdw_pyjson_cstring(&j, "success");
      sdw_pyjson_key(&j, "error_message");
      sdw_pyjson_null(&j);
      sdw_pyjson_key(&j, "width");
      sdw_pyjson_int(&j, it->width);
      sdw_pyjson_key(&j, "height");
      sdw_pyjson_int(&j, it->height);
      sdw_pyjson_key(&j, "original_width");
      sdw_pyjson_int(&j, it->orig_w);
      sdw_pyjson_key(&j, "original_height");
      sdw_pyjson_int(&j, it->orig_h);
      sdw_pyjson_key(&j, "seed");
      if (has_seed)
        sdw_pyjson_int(&j, seed);
      else
        sdw_pyjson_null(&j);
      sdw_pyjson_key(&j, "cfg");
      if (has_cfg)
        sdw_pyjson_float(&j, cfg);
      else
        sdw_pyjson_null(&j);
      sdw_pyjson_key(&j, "steps");
      if (has_steps)
        sdw_pyjson_int(&j, steps);
      else
        sdw_pyjson_null(&j);
      sdw_pyjson_key(&j, "sampler");
      sdw_pyjson_cstring(&j, sampler);
      sdw_pyjson_end_object(&j);
      if (j.failed) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
        break;
      }
      char member[300];
      snprintf(member, sizeof member, "%s.jpg", it->stem);
      st = sdw_tar_writer_add(tw, member, it->jpeg, it->jpeg_size, mtime);
      snprintf(member, sizeof member, "%s.json", it->stem);
      if (st == SDW_OK) st = sdw_tar_writer_add(tw, member, j.data, j.size, mtime);
      snprintf(member, sizeof member, "%s.txt", it->stem);
      if (st == SDW_OK) st = sdw_tar_writer_add(tw, member, prompt, strlen(prompt), mtime);
      if (st != SDW_OK) break;
      ok_count++;
      sdw_manifest_count_out(m, 1);
    } else {
      failed++;
      sdw_manifest_count_failed(m, it->reason);
    }
    sdw_parquet_writer_set_str(pw, 0, it->stem);
    if (prompt)
      sdw_parquet_writer_set_str(pw, 1, prompt);
    else
      sdw_parquet_writer_set_null(pw, 1);
    sdw_parquet_writer_set_str(pw, 2, url);
    sdw_parquet_writer_set_str(pw, 3, ok ? "success" : "failed_to_resize");
    if (ok)
      sdw_parquet_writer_set_null(pw, 4);
    else
      sdw_parquet_writer_set_str(pw, 4, it->error);
    for (int c = 5; c <= 8; c++) {
      int v[4] = {it->width, it->height, it->orig_w, it->orig_h};
      if (ok)
        sdw_parquet_writer_set_i32(pw, c, v[c - 5]);
      else
        sdw_parquet_writer_set_null(pw, c);
    }
    if (has_seed)
      sdw_parquet_writer_set_i64(pw, 9, seed);
    else
      sdw_parquet_writer_set_null(pw, 9);
    if (has_cfg)
      sdw_parquet_writer_set_f64(pw, 10, cfg);
    else
      sdw_parquet_writer_set_null(pw, 10);
    if (has_steps)
      sdw_parquet_writer_set_i64(pw, 11, steps);
    else
      sdw_parquet_writer_set_null(pw, 11);
    if (sampler)
      sdw_parquet_writer_set_str(pw, 12, sampler);
    else
      sdw_parquet_writer_set_null(pw, 12);
    st = sdw_parquet_writer_end_row(pw);
  }
  free(j.data);
  if (st == SDW_OK && g_stop) st = SDW_ERR_IO; /* abandon: reported as interrupted */
  if (st == SDW_OK) {
    st = sdw_tar_writer_close(tw);
    tw = NULL;
  }
  if (st == SDW_OK) {
    st = sdw_parquet_writer_close(pw);
    pw = NULL;
  }
  if (st == SDW_OK) {
    /* img2dataset's stats, last: the shard's "done" mark */
    const double t1 = sdw_manifest_now();
    sdw_pyjson_init(&j);
    sdw_pyjson_begin_object(&j);
    sdw_pyjson_key(&j, "count");
    sdw_pyjson_int(&j, (int64_t)n);
    sdw_pyjson_key(&j, "successes");
    sdw_pyjson_int(&j, ok_count);
    sdw_pyjson_key(&j, "failed_to_download");
    sdw_pyjson_int(&j, 0);
    sdw_pyjson_key(&j, "failed_to_resize");
    sdw_pyjson_int(&j, failed);
    sdw_pyjson_key(&j, "duration");
    sdw_pyjson_float(&j, t1 - t0);
    sdw_pyjson_key(&j, "start_time");
    sdw_pyjson_float(&j, t0);
    sdw_pyjson_key(&j, "end_time");
    sdw_pyjson_float(&j, t1);
    sdw_pyjson_key(&j, "status_dict");
    sdw_pyjson_begin_object(&j);
    if (ok_count) {
      sdw_pyjson_key(&j, "success");
      sdw_pyjson_int(&j, ok_count);
    }
    if (failed) {
      sdw_pyjson_key(&j, "failed");
      sdw_pyjson_int(&j, failed);
    }
    sdw_pyjson_end_object(&j);
    sdw_pyjson_end_object(&j);
    st = j.failed ? sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory")
                  : sdw_atomic_write(stats_path, j.data, j.size);
    free(j.data);
  }
  sdw_tar_writer_abort(tw);
  if (pw) sdw_parquet_writer_abort(pw);
  for (size_t i = 0; i < n; i++)
    free(items[i].jpeg);
  free(items);
  cJSON_Delete(prompts);
  sdw_zip_close(z);
  return st;
}

/* DIR/metadata/diffusiondb.parquet from the shards' parquet files. */
static sdw_status write_metadata(const char *data, const char *out_dir, char **parts, int np) {
  char dir[4096], path[8192];
  snprintf(dir, sizeof dir, "%.4000s/metadata", data);
  SDW_TRY(sdw_mkdir_p(dir));
  snprintf(path, sizeof path, "%s/diffusiondb.parquet", dir);
  sdw_parquet_writer *w;
  SDW_TRY(sdw_parquet_writer_open(path, k_meta_fields, META_COLS, NULL, &w));
  static const char *const cols[] = {
      "key", "caption", "url",     "status",         "seed",
      "cfg", "steps",   "sampler", "original_width", "original_height"};
  sdw_status st = SDW_OK;
  for (int p = 0; p < np && st == SDW_OK; p++) {
    char pq[8192];
    snprintf(pq, sizeof pq, "%s/%s.parquet", out_dir, parts[p]);
    sdw_parquet_file *f;
    st = sdw_parquet_open(pq, NULL, &f);
    if (st != SDW_OK) break;
    sdw_parquet_array a[10];
    st = sdw_parquet_read_columns(f, -1, cols, 10, a);
    const int64_t rows = sdw_parquet_num_rows(f);
    sdw_parquet_close(f);
    for (int64_t i = 0; i < rows && st == SDW_OK; i++) {
      size_t l;
      const uint8_t *status = sdw_parquet_array_bytes(&a[3], i, &l);
      if (l != 7 || memcmp(status, "success", 7) != 0) continue;
      const uint8_t *key = sdw_parquet_array_bytes(&a[0], i, &l);
      char ik[1024];
      snprintf(ik, sizeof ik, "%s.tar::%.*s", parts[p], (int)l, (const char *)key);
      sdw_parquet_writer_set_str(w, 0, ik);
      const uint8_t *b = sdw_parquet_array_bytes(&a[2], i, &l);
      sdw_parquet_writer_set_bytes(w, 1, b, l);
      b = sdw_parquet_array_bytes(&a[1], i, &l);
      sdw_parquet_writer_set_bytes(w, 2, b, l);
      sdw_parquet_writer_set_str(w, 3, "diffusiondb");
      for (int c = 4; c < 8; c++) {
        const sdw_parquet_array *x = &a[c];
        if (!sdw_parquet_array_is_valid(x, i))
          sdw_parquet_writer_set_null(w, c);
        else if (x->type == SDW_PARQUET_INT64)
          sdw_parquet_writer_set_i64(w, c, ((const int64_t *)x->values)[i]);
        else if (x->type == SDW_PARQUET_DOUBLE)
          sdw_parquet_writer_set_f64(w, c, ((const double *)x->values)[i]);
        else {
          b = sdw_parquet_array_bytes(x, i, &l);
          sdw_parquet_writer_set_bytes(w, c, b, l);
        }
      }
      for (int c = 8; c < 10; c++)
        sdw_parquet_writer_set_i32(w, c, ((const int32_t *)a[c].values)[i]);
      st = sdw_parquet_writer_end_row(w);
    }
    for (int c = 0; c < 10; c++)
      sdw_parquet_array_free(&a[c]);
  }
  if (st != SDW_OK) {
    sdw_parquet_writer_abort(w);
    return st;
  }
  return sdw_parquet_writer_close(w);
}

static bool file_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int sdw_pipeline_diffusiondb_main(int argc, char **argv) {
  ddb_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  char out_dir[4096];
  if (o.output)
    snprintf(out_dir, sizeof out_dir, "%s", o.output);
  else
    snprintf(out_dir, sizeof out_dir, "%.4000s/shards", o.data);

  /* the zips, in order */
  char **zips = NULL;
  int nz = 0, capz = 0;
  sdw_status st = SDW_OK;
  for (int i = 0; i < o.input_count && st == SDW_OK; i++) {
    struct stat sb;
    if (stat(o.inputs[i], &sb) != 0) {
      st = sdw_fail(SDW_ERR_NOT_FOUND, "%s: %s", o.inputs[i], strerror(errno));
      break;
    }
    char **names = NULL;
    int count = 0;
    bool dir = S_ISDIR(sb.st_mode);
    if (dir) {
      st = sdw_list_files(o.inputs[i], ".zip", &names, &count);
      if (st != SDW_OK) break;
    }
    for (int k = 0; k < (dir ? count : 1) && st == SDW_OK; k++) {
      if (nz == capz) {
        capz = capz ? 2 * capz : 16;
        char **z2 = realloc(zips, (size_t)capz * sizeof *z2);
        if (!z2) {
          st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
          break;
        }
        zips = z2;
      }
      char path[8192];
      snprintf(path, sizeof path, "%s%s%s", o.inputs[i], dir ? "/" : "", dir ? names[k] : "");
      if (!(zips[nz] = strdup(path))) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
      nz++;
    }
    if (dir) sdw_list_files_free(names, count);
  }
  /* part names: the zip's file name without .zip */
  char **parts = calloc((size_t)(nz ? nz : 1), sizeof *parts);
  if (st == SDW_OK && !parts) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < nz && st == SDW_OK; i++) {
    const char *b = strrchr(zips[i], '/');
    b = b ? b + 1 : zips[i];
    size_t l = strlen(b);
    if (l > 4 && strcasecmp(b + l - 4, ".zip") == 0) l -= 4;
    parts[i] = strndup(b, l);
    for (int k = 0; k < i && st == SDW_OK; k++)
      if (parts[k] && parts[i] && strcmp(parts[k], parts[i]) == 0)
        st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s and %s would both become %s.tar", zips[k],
                      zips[i], parts[i]);
  }
  sdw_manifest m;
  bool begun = false;
  if (st == SDW_OK) st = sdw_mkdir_p(out_dir);
  if (st == SDW_OK) {
    st = sdw_manifest_begin(&m, o.data, "diffusiondb");
    begun = st == SDW_OK;
  }
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline diffusiondb: %s\n", sdw_last_error());
    for (int i = 0; i < nz; i++) {
      free(zips[i]);
      if (parts) free(parts[i]);
    }
    free(zips);
    free(parts);
    if (begun) sdw_manifest_release(&m);
    return 1;
  }
  cJSON_AddNumberToObject(m.extra, "zips", nz);
  cJSON_AddNumberToObject(m.extra, "zips_done", 0);
  sdw_manifest_flush(&m, true);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  double epoch_mtime = -1;
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  int64_t e;
  if (sde && sdw_parse_i64(sde, 0, 8589934591LL, &e)) epoch_mtime = (double)e;
  int done = 0;
  for (int i = 0; i < nz && st == SDW_OK && !g_stop; i++) {
    char stats[8192];
    snprintf(stats, sizeof stats, "%s/%s_stats.json", out_dir, parts[i]);
    if (i < SDW_MANIFEST_MAX_INPUTS) sdw_manifest_add_input(&m, zips[i], false);
    if (!file_exists(stats)) {
      struct stat sb;
      double mt = epoch_mtime >= 0          ? epoch_mtime
                  : stat(zips[i], &sb) == 0 ? (double)sb.st_mtime
                                            : 0;
      st = convert_zip(&o, &m, zips[i], out_dir, parts[i], mt);
      if (st != SDW_OK && g_stop) break;
    } else {
      sdw_manifest_count_skipped(&m, 1);
    }
    if (st == SDW_OK) {
      done++;
      char tar[8192];
      snprintf(tar, sizeof tar, "%s/%s.tar", out_dir, parts[i]);
      sdw_manifest_add_output(&m, tar);
      cJSON_ReplaceItemInObject(m.extra, "zips_done", cJSON_CreateNumber(done));
      sdw_manifest_flush(&m, false);
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  const bool interrupted = g_stop != 0;
  if (st == SDW_OK && !interrupted) st = write_metadata(o.data, out_dir, parts, nz);
  int rc = 0;
  const char *state = "done";
  if (interrupted) {
    sdw_manifest_set_message(&m, "interrupted");
    state = "interrupted";
    rc = 130;
  } else if (st != SDW_OK) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    sdw_manifest_set_message(&m, "%s", msg);
    fprintf(stderr, "sdw: pipeline diffusiondb: %s\n", msg);
    state = "failed";
    rc = 1;
  }
  sdw_manifest_finish(&m, state);
  for (int i = 0; i < nz; i++) {
    free(zips[i]);
    free(parts[i]);
  }
  free(zips);
  free(parts);
  return rc;
}
