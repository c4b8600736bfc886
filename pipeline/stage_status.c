/* `sdw pipeline status DIR`: reads every manifest in DIR/manifests and
 * prints one row per stage, then the failure reasons of each. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/manifest.h"
#include "pipeline/stages.h"

static double json_number(const cJSON *obj, const char *key, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *json_string(const cJSON *obj, const char *key, const char *def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : def;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Stage names in pipeline order first, then any others alphabetically. */
static int stage_rank(const char *name) {
  static const char *const order[] = {"metadata", "filter",        "download",       "preprocess",
                                      "build",    "encode-pixels", "train-vae",      "encode",
                                      "emoji",    "diffusiondb",   "filter-captions"};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    if (strcmp(order[i], name) == 0) return (int)i;
  return 100;
}

static int compare_stages(const void *a, const void *b) {
  const char *x = *(char *const *)a, *y = *(char *const *)b;
  int rx = stage_rank(x), ry = stage_rank(y);
  return rx != ry ? rx - ry : compare_names(a, b);
}

int sdw_pipeline_status_main(int argc, char **argv) {
  if (argc != 2 || strcmp(argv[1], "--help") == 0) {
    FILE *out = argc == 2 ? stdout : stderr;
    fprintf(out, "usage: sdw pipeline status DIR\n\nPrints each stage's state, progress, counts, "
                 "throughput and failure reasons,\nread from DIR/manifests/<stage>.json.\n");
    return argc == 2 ? 0 : 2;
  }
  const char *dir = argv[1];
  char mdir[1024];
  snprintf(mdir, sizeof mdir, "%s/manifests", dir);
  DIR *d = opendir(mdir);
  if (!d) {
    fprintf(stderr, "sdw: %s: no pipeline manifests here (run a stage with --data %s first)\n", dir,
            dir);
    return 1;
  }
  char *names[256];
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) && count < 256) {
    size_t len = strlen(e->d_name);
    if (len > 5 && e->d_name[0] != '.' && strcmp(e->d_name + len - 5, ".json") == 0) {
      names[count] = strndup(e->d_name, len - 5);
      if (names[count]) count++;
    }
  }
  closedir(d);
  qsort(names, (size_t)count, sizeof *names, compare_stages);
  printf("%-16s %-12s %10s %10s %10s %9s %10s\n", "stage", "state", "in", "out", "failed", "done",
         "items/s");
  for (int i = 0; i < count; i++) {
    cJSON *doc = NULL;
    if (sdw_manifest_read(dir, names[i], &doc) != SDW_OK) {
      printf("%-16s %-12s (%s)\n", names[i], "unreadable", sdw_last_error());
      continue;
    }
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(doc, "counts");
    double in = json_number(counts, "in", 0), total = json_number(doc, "total", -1);
    char progress[16] = "-";
    if (total > 0) snprintf(progress, sizeof progress, "%.1f%%", 100.0 * in / total);
    printf("%-16s %-12s %10.0f %10.0f %10.0f %9s %10.1f\n", names[i],
           json_string(doc, "state", "?"), in, json_number(counts, "out", 0),
           json_number(counts, "failed", 0), progress, json_number(doc, "throughput", 0));
    const cJSON *failures = cJSON_GetObjectItemCaseSensitive(doc, "failures"), *f;
    cJSON_ArrayForEach(f, failures) {
      if (cJSON_IsNumber(f)) printf("%16s   %-28s %10.0f\n", "", f->string, f->valuedouble);
    }
    const char *message = json_string(doc, "message", "");
    if (message[0]) printf("%16s   %s\n", "", message);
    cJSON_Delete(doc);
  }
  for (int i = 0; i < count; i++)
    free(names[i]);
  return 0;
}
