/* Stage manifests: written atomically, counts from several threads, failure
 * histogram with an "other" overflow, read back as JSON. */
#include <stdio.h>
#include <string.h>

#include "pipeline/manifest.h"
#include "tests/test.h"

static double number_at(const cJSON *obj, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

SDW_TEST(manifest_lifecycle_and_counts) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/data", sdw_test_tmpdir());
  sdw_manifest m;
  CHECK_OK(sdw_manifest_begin(&m, dir, "download"));
  cJSON *doc = NULL;
  CHECK_OK(sdw_manifest_read(dir, "download", &doc));
  REQUIRE(doc != NULL);
  CHECK(strcmp(cJSON_GetObjectItem(doc, "state")->valuestring, "running") == 0);
  cJSON_Delete(doc);

  sdw_manifest_set_total(&m, 4000);
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < 4000; i++) {
    sdw_manifest_count_in(&m, 1);
    if (i % 10 == 0)
      sdw_manifest_count_failed(&m, i % 20 == 0 ? "http_404" : "decode_error");
    else
      sdw_manifest_count_out(&m, 1);
  }
  for (int r = 0; r < 100; r++) { /* more reasons than the table holds */
    char reason[32];
    snprintf(reason, sizeof reason, "r%d", r);
    sdw_manifest_count_failed(&m, reason);
  }
  sdw_manifest_add_output(&m, "shards/00000.tar");
  sdw_manifest_set_message(&m, "%d shards", 1);
  CHECK_OK(sdw_manifest_finish(&m, "done"));

  CHECK_OK(sdw_manifest_read(dir, "download", &doc));
  REQUIRE(doc != NULL);
  const cJSON *counts = cJSON_GetObjectItem(doc, "counts");
  CHECK(number_at(counts, "in") == 4000);
  CHECK(number_at(counts, "out") == 3600);
  CHECK(number_at(counts, "failed") == 500);
  const cJSON *failures = cJSON_GetObjectItem(doc, "failures");
  CHECK(number_at(failures, "http_404") == 200);
  CHECK(number_at(failures, "decode_error") == 200);
  CHECK(cJSON_GetArraySize(failures) == SDW_MANIFEST_MAX_REASONS);
  double histogram_total = 0;
  const cJSON *f;
  cJSON_ArrayForEach(f, failures) histogram_total += f->valuedouble;
  CHECK(histogram_total == 500); /* nothing lost to the overflow */
  CHECK(number_at(doc, "total") == 4000);
  CHECK(strcmp(cJSON_GetObjectItem(doc, "state")->valuestring, "done") == 0);
  CHECK(cJSON_IsNumber(cJSON_GetObjectItem(doc, "finished_at")));
  CHECK(strcmp(cJSON_GetObjectItem(doc, "message")->valuestring, "1 shards") == 0);
  cJSON_Delete(doc);
  CHECK(sdw_manifest_read(dir, "encode", &doc) == SDW_ERR_NOT_FOUND);
}
