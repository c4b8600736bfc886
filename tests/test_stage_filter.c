/* `sdw pipeline filter` (pipeline/stage_filter.c) on the committed fixtures
 * tests/data/filter (made by tools/gen_filter_fixtures.py with pyarrow: four
 * files in the seed's column namings, values on both sides of every
 * threshold, repeated URLs, a file without an aesthetic column). The
 * expected counts and kept URLs in expected.json were computed by the
 * generator with pandas, an implementation of the seed's rules independent
 * of ours. Everything is exact (row counts, strings): no tolerance. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/stages.h"
#include "tests/test.h"

static cJSON *load_expected(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/filter/expected.json", sdw_test_data_dir());
  void *text;
  size_t size;
  if (sdw_read_file(path, &text, &size) != SDW_OK) return NULL;
  cJSON *j = cJSON_ParseWithLength(text, size);
  free(text);
  return j;
}

/* Runs the stage with the fixtures' input directory and extra args. */
static int run_filter(const char *data, const char *output, const char *const *extra, int n_extra) {
  char in[512];
  snprintf(in, sizeof in, "%s/filter/in", sdw_test_data_dir());
  const char *argv[32] = {"filter", "--data", data, "--input", in, "--output", output};
  int argc = 7;
  for (int i = 0; i < n_extra && argc < 32; i++)
    argv[argc++] = extra[i];
  return sdw_pipeline_filter_main(argc, (char **)argv);
}

static int64_t num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(o, k);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* The manifest and the output of a run against expected.json[name]. */
static void check_case(const cJSON *all, const char *name, const char *data, const char *output) {
  const cJSON *exp = cJSON_GetObjectItem(all, name);
  REQUIRE(exp);
  cJSON *m = NULL;
  CHECK_OK(sdw_manifest_read(data, "filter", &m));
  REQUIRE(m);
  CHECK(strcmp(cJSON_GetObjectItem(m, "state")->valuestring, "done") == 0);
  CHECK(num(m, "total") == num(all, "total"));
  const cJSON *counts = cJSON_GetObjectItem(m, "counts");
  const cJSON *kept = cJSON_GetObjectItem(exp, "kept");
  const cJSON *text = cJSON_GetObjectItem(exp, "text");
  const cJSON *reasons = cJSON_GetObjectItem(exp, "reasons");
  int64_t failed = 0;
  const cJSON *r;
  cJSON_ArrayForEach(r, reasons) failed += (int64_t)r->valuedouble;
  CHECK_MSG(num(counts, "in") == num(exp, "in"), "%s: in", name);
  CHECK_MSG(num(counts, "out") == cJSON_GetArraySize(kept), "%s: out %lld vs %d", name,
            (long long)num(counts, "out"), cJSON_GetArraySize(kept));
  CHECK_MSG(num(counts, "skipped") == num(exp, "skipped"), "%s: skipped", name);
  CHECK_MSG(num(counts, "failed") == failed, "%s: failed", name);
  const cJSON *hist = cJSON_GetObjectItem(m, "failures");
  CHECK_MSG(cJSON_GetArraySize(hist) == cJSON_GetArraySize(reasons), "%s: reasons", name);
  cJSON_ArrayForEach(r, reasons) {
    CHECK_MSG(num(hist, r->string) == (int64_t)r->valuedouble, "%s: %s = %lld, want %lld", name,
              r->string, (long long)num(hist, r->string), (long long)r->valuedouble);
  }
  /* the file order (--max-samples shuffles it as numpy does) */
  const cJSON *inputs = cJSON_GetObjectItem(m, "inputs");
  const cJSON *files = cJSON_GetObjectItem(exp, "files");
  CHECK(cJSON_GetArraySize(inputs) == cJSON_GetArraySize(files));
  for (int i = 0; i < cJSON_GetArraySize(files) && i < cJSON_GetArraySize(inputs); i++) {
    const char *p = cJSON_GetObjectItem(cJSON_GetArrayItem(inputs, i), "path")->valuestring;
    const char *want = cJSON_GetArrayItem(files, i)->valuestring;
    const char *tail = strstr(p, "/in/");
    CHECK_MSG(tail && strcmp(tail + 4, want) == 0, "%s: input %d is %s, want %s", name, i, p, want);
  }
  cJSON_Delete(m);

  /* the output through our reader: URLs and captions in order, scores kept */
  sdw_parquet_file *f = NULL;
  CHECK_OK(sdw_parquet_open(output, NULL, &f));
  REQUIRE(f);
  REQUIRE(sdw_parquet_num_columns(f) == 4);
  const char *names[4] = {"URL", "TEXT", "aesthetic_score", "similarity"};
  sdw_parquet_array a[4];
  CHECK_OK(sdw_parquet_read_columns(f, -1, names, 4, a));
  REQUIRE(a[0].length == cJSON_GetArraySize(kept));
  for (int64_t i = 0; i < a[0].length; i++) {
    size_t ul, tl;
    const uint8_t *u = sdw_parquet_array_bytes(&a[0], i, &ul);
    const uint8_t *t = sdw_parquet_array_bytes(&a[1], i, &tl);
    const char *wu = cJSON_GetArrayItem(kept, (int)i)->valuestring;
    const char *wt = cJSON_GetArrayItem(text, (int)i)->valuestring;
    CHECK_MSG(ul == strlen(wu) && memcmp(u, wu, ul) == 0, "%s: URL %lld", name, (long long)i);
    CHECK_MSG(tl == strlen(wt) && memcmp(t, wt, tl) == 0, "%s: TEXT %lld", name, (long long)i);
  }
  for (int c = 0; c < 4; c++)
    sdw_parquet_array_free(&a[c]);
  sdw_parquet_close(f);
}

static void path_in(char *buf, size_t size, const char *leaf) {
  snprintf(buf, size, "%s/%s", sdw_test_tmpdir(), leaf);
}

SDW_TEST(stage_filter_defaults_and_flags) {
  cJSON *all = load_expected();
  REQUIRE(all);
  char data[512], out[512];
  path_in(data, sizeof data, "d");
  path_in(out, sizeof out, "default.parquet");
  CHECK(run_filter(data, out, NULL, 0) == 0);
  check_case(all, "default", data, out);

  static const char *const loose[] = {"--min-aesthetic", "6.2", "--min-similarity", "0.26",
                                      "--min-width",     "500", "--min-height",     "600",
                                      "--min-aspect",    "0.8", "--max-aspect",     "1.5",
                                      "--min-caption",   "10",  "--max-caption",    "200",
                                      "--max-watermark", "0.6", "--max-punsafe",    "0.3"};
  path_in(data, sizeof data, "loose");
  path_in(out, sizeof out, "loose.parquet");
  CHECK(run_filter(data, out, loose, 20) == 0);
  check_case(all, "loose", data, out);

  static const char *const free_args[] = {"--allow-nsfw", "--no-dedup"};
  path_in(data, sizeof data, "free");
  path_in(out, sizeof out, "free.parquet");
  CHECK(run_filter(data, out, free_args, 2) == 0);
  check_case(all, "free", data, out);
  cJSON_Delete(all);
}

SDW_TEST(stage_filter_max_samples_seeded) {
  cJSON *all = load_expected();
  REQUIRE(all);
  char data[512], out[512];
  static const char *const m42[] = {"--max-samples", "37"};
  path_in(data, sizeof data, "m42");
  path_in(out, sizeof out, "m42.parquet");
  CHECK(run_filter(data, out, m42, 2) == 0);
  check_case(all, "max37", data, out);
  static const char *const m7[] = {"--max-samples", "37", "--seed", "7"};
  path_in(data, sizeof data, "m7");
  path_in(out, sizeof out, "m7.parquet");
  CHECK(run_filter(data, out, m7, 4) == 0);
  check_case(all, "max37seed7", data, out);
  cJSON_Delete(all);
}

SDW_TEST(stage_filter_resume) {
  char data[512], out[512];
  path_in(data, sizeof data, "r");
  path_in(out, sizeof out, "r.parquet");
  CHECK(run_filter(data, out, NULL, 0) == 0);
  struct stat a, b;
  REQUIRE(stat(out, &a) == 0);
  cJSON *m1 = NULL, *m2 = NULL;
  CHECK_OK(sdw_manifest_read(data, "filter", &m1));
  /* unchanged inputs and options: nothing is redone (same inode, same manifest) */
  CHECK(run_filter(data, out, NULL, 0) == 0);
  REQUIRE(stat(out, &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK_OK(sdw_manifest_read(data, "filter", &m2));
  CHECK(num(m1, "started_at") == num(m2, "started_at") &&
        cJSON_GetObjectItem(m1, "started_at")->valuedouble ==
            cJSON_GetObjectItem(m2, "started_at")->valuedouble);
  cJSON_Delete(m2);
  /* another option: recomputed (a new file replaces the old atomically) */
  static const char *const other[] = {"--min-aesthetic", "6"};
  CHECK(run_filter(data, out, other, 2) == 0);
  REQUIRE(stat(out, &b) == 0);
  CHECK(a.st_ino != b.st_ino);
  /* the output removed: recomputed */
  CHECK(remove(out) == 0);
  CHECK(run_filter(data, out, other, 2) == 0);
  CHECK(stat(out, &b) == 0);
  cJSON_Delete(m1);
}

SDW_TEST(stage_filter_usage) {
  char data[512], out[512];
  path_in(data, sizeof data, "u");
  path_in(out, sizeof out, "u.parquet");
  static const char *const bad1[] = {"--min-width", "x"};
  static const char *const bad2[] = {"--bogus", "1"};
  static const char *const bad3[] = {"--seed", "-1"};
  CHECK(run_filter(data, out, bad1, 2) == 2);
  CHECK(run_filter(data, out, bad2, 2) == 2);
  CHECK(run_filter(data, out, bad3, 2) == 2);
  const char *argv[] = {"filter", "--data", data, "--input", "/nonexistent/x.parquet"};
  CHECK(sdw_pipeline_filter_main(5, (char **)argv) == 1);
  struct stat sb;
  CHECK(stat(out, &sb) != 0);
}
