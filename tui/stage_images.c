/* A pipeline stage's sample images (see stage_images.h). */
#include "tui/stage_images.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/base/fsutil.h"
#include "pipeline/tar.h"

enum { MAX_OUTPUTS = 64, MAX_SCANNED = 1000, MAX_DIR_NAMES = 4096 };

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static bool image_name(const char *s) {
  return has_suffix(s, ".jpg") || has_suffix(s, ".jpeg") || has_suffix(s, ".png") ||
         has_suffix(s, ".webp");
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static sdw_status decode_file(const char *path, sdw_image *out) {
  void *data = NULL;
  size_t size = 0;
  SDW_TRY(sdw_read_file(path, &data, &size));
  sdw_status st = sdw_image_decode(data, size, NULL, out, NULL);
  free(data);
  return st;
}

/* The images of a folder (or of its images/ subfolder), sorted by name.
 * *seen counts images passed over; returns SDW_OK with *found when the
 * wanted one was decoded. */
static sdw_status from_dir(const char *dir, int index, int *seen, bool *found, sdw_image *out,
                           char *label, size_t cap) {
  char sub[1200];
  snprintf(sub, sizeof sub, "%s/images", dir);
  struct stat st;
  const char *d_path = stat(sub, &st) == 0 && S_ISDIR(st.st_mode) ? sub : dir;
  DIR *d = opendir(d_path);
  if (!d) return SDW_OK;
  char **names = NULL;
  int n = 0, cap_names = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < MAX_DIR_NAMES) {
    if (e->d_name[0] == '.' || !image_name(e->d_name)) continue;
    if (n == cap_names) {
      int c = cap_names ? cap_names * 2 : 64;
      char **p = realloc(names, (size_t)c * sizeof *names);
      if (!p) break;
      names = p, cap_names = c;
    }
    if (!(names[n] = strdup(e->d_name))) break;
    n++;
  }
  closedir(d);
  if (n > 0) qsort(names, (size_t)n, sizeof *names, compare_names);
  sdw_status status = SDW_OK;
  if (index - *seen < n) {
    char path[1600];
    snprintf(path, sizeof path, "%s/%s", d_path, names[index - *seen]);
    status = decode_file(path, out);
    if (status == SDW_OK) {
      *found = true;
      snprintf(label, cap, "%s", path);
    }
  }
  *seen += n;
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return status;
}

static sdw_status from_tar(const char *path, int index, int *seen, bool *found, sdw_image *out,
                           char *label, size_t cap) {
  sdw_tar_reader *r = NULL;
  if (sdw_tar_reader_open(path, &r) != SDW_OK) return SDW_OK; /* being written, or gone */
  sdw_status status = SDW_OK;
  for (;;) {
    sdw_tar_member m;
    int done = 0;
    if (sdw_tar_reader_next(r, &m, &done) != SDW_OK || done || *seen > MAX_SCANNED) break;
    if (!image_name(m.name)) continue;
    if (*seen == index) {
      status = sdw_image_decode(m.data, m.size, NULL, out, NULL);
      if (status == SDW_OK) {
        *found = true;
        const char *base = strrchr(path, '/');
        snprintf(label, cap, "%s:%s", base ? base + 1 : path, m.name);
      }
      (*seen)++;
      break;
    }
    (*seen)++;
  }
  sdw_tar_reader_close(r);
  return status;
}

sdw_status sdw_tui_stage_image(const char *data_dir, const cJSON *manifest, int index,
                               sdw_image *out, char *label, size_t label_cap) {
  const cJSON *outputs = cJSON_GetObjectItemCaseSensitive(manifest, "outputs");
  int seen = 0, looked = 0;
  bool found = false;
  label[0] = 0;
  if (index < 0) return sdw_fail(SDW_ERR_NOT_FOUND, "no image %d", index);
  for (const cJSON *o = cJSON_IsArray(outputs) ? outputs->child : NULL;
       o && !found && looked < MAX_OUTPUTS && seen <= MAX_SCANNED; o = o->next, looked++) {
    if (!cJSON_IsString(o)) continue;
    char path[1200];
    if (o->valuestring[0] == '/')
      snprintf(path, sizeof path, "%s", o->valuestring);
    else
      snprintf(path, sizeof path, "%s/%s", data_dir, o->valuestring);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    sdw_status s;
    if (S_ISDIR(st.st_mode)) {
      s = from_dir(path, index, &seen, &found, out, label, label_cap);
    } else if (has_suffix(path, ".tar")) {
      s = from_tar(path, index, &seen, &found, out, label, label_cap);
    } else if (image_name(path)) {
      s = SDW_OK;
      if (seen == index && (s = decode_file(path, out)) == SDW_OK) {
        found = true;
        snprintf(label, label_cap, "%s", path);
      }
      seen++;
    } else {
      /* A file next to an images/ folder (emoji's metadata.parquet). */
      char dir[1200];
      snprintf(dir, sizeof dir, "%s", path);
      char *slash = strrchr(dir, '/');
      if (!slash) continue;
      *slash = 0;
      char images[1300];
      snprintf(images, sizeof images, "%s/images", dir);
      if (stat(images, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      s = from_dir(dir, index, &seen, &found, out, label, label_cap);
    }
    if (s != SDW_OK) return s;
  }
  /* Nothing listed (a stage stopped before it wrote its outputs): the
   * stage's own folder DATA/<stage>, where emoji and others write. */
  const cJSON *stage = cJSON_GetObjectItemCaseSensitive(manifest, "stage");
  if (!found && seen == 0 && cJSON_IsString(stage) && !strchr(stage->valuestring, '/')) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/%s", data_dir, stage->valuestring);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
      SDW_TRY(from_dir(dir, index, &seen, &found, out, label, label_cap));
  }
  if (!found) return sdw_fail(SDW_ERR_NOT_FOUND, "the stage has %d image(s)", seen);
  return SDW_OK;
}
