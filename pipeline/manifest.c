#include "pipeline/manifest.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/sha256.h"

double sdw_manifest_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void manifest_lock(sdw_manifest *m) { pthread_mutex_lock(m->lock); }
static void manifest_unlock(sdw_manifest *m) { pthread_mutex_unlock(m->lock); }

void sdw_manifest_release(sdw_manifest *m) {
  if (m->lock) {
    pthread_mutex_destroy(m->lock);
    free(m->lock);
  }
  cJSON_Delete(m->outputs);
  cJSON_Delete(m->extra);
  m->lock = NULL;
  m->outputs = m->extra = NULL;
}

sdw_status sdw_manifest_begin(sdw_manifest *m, const char *data_dir, const char *stage) {
  memset(m, 0, sizeof *m);
  char dir[1024];
  if ((size_t)snprintf(dir, sizeof dir, "%s/manifests", data_dir) >= sizeof dir ||
      (size_t)snprintf(m->path, sizeof m->path, "%s/%s.json", dir, stage) >= sizeof m->path)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: data directory path is too long", data_dir);
  SDW_TRY(sdw_mkdir_p(dir));
  snprintf(m->stage, sizeof m->stage, "%s", stage);
  snprintf(m->state, sizeof m->state, "running");
  m->started_at = m->updated_at = sdw_manifest_now();
  m->flush_interval = 0.5;
  m->total = -1;
  m->lock = malloc(sizeof(pthread_mutex_t));
  m->outputs = cJSON_CreateArray();
  m->extra = cJSON_CreateObject();
  if (!m->lock || !m->outputs || !m->extra) {
    free(m->lock);
    m->lock = NULL;
    sdw_manifest_release(m);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", m->path);
  }
  pthread_mutex_init(m->lock, NULL);
  sdw_status st = sdw_manifest_flush(m, true);
  if (st != SDW_OK) sdw_manifest_release(m);
  return st;
}

sdw_status sdw_manifest_add_input(sdw_manifest *m, const char *path, bool hash) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: %s", path,
                    strerror(errno));
  if (m->input_count == SDW_MANIFEST_MAX_INPUTS) return SDW_OK; /* fingerprints are a summary */
  sdw_manifest_input *in = &m->inputs[m->input_count];
  snprintf(in->path, sizeof in->path, "%s", path);
  in->size = (int64_t)sb.st_size;
  in->mtime = (int64_t)sb.st_mtime;
  in->sha256[0] = '\0';
  if (hash && S_ISREG(sb.st_mode)) {
    unsigned char digest[32];
    SDW_TRY(sdw_sha256_file(path, digest));
    sdw_sha256_hex(digest, in->sha256);
  }
  manifest_lock(m);
  m->input_count++;
  manifest_unlock(m);
  return SDW_OK;
}

void sdw_manifest_set_total(sdw_manifest *m, int64_t total) { m->total = total; }

void sdw_manifest_add_output(sdw_manifest *m, const char *path) {
  manifest_lock(m);
  cJSON_AddItemToArray(m->outputs, cJSON_CreateString(path));
  manifest_unlock(m);
}

void sdw_manifest_count_in(sdw_manifest *m, int64_t n) { atomic_fetch_add(&m->in, n); }
void sdw_manifest_count_out(sdw_manifest *m, int64_t n) { atomic_fetch_add(&m->out, n); }
void sdw_manifest_count_skipped(sdw_manifest *m, int64_t n) { atomic_fetch_add(&m->skipped, n); }

void sdw_manifest_count_failed(sdw_manifest *m, const char *reason) {
  atomic_fetch_add(&m->failed, 1);
  manifest_lock(m);
  int i;
  for (i = 0; i < m->reason_count; i++)
    if (strcmp(m->reasons[i].name, reason) == 0) break;
  if (i == m->reason_count) {
    if (m->reason_count < SDW_MANIFEST_MAX_REASONS - 1) {
      snprintf(m->reasons[i].name, sizeof m->reasons[i].name, "%s", reason);
      m->reasons[i].count = 0;
      m->reason_count++;
    } else { /* the last slot is "other" */
      i = SDW_MANIFEST_MAX_REASONS - 1;
      if (m->reason_count == SDW_MANIFEST_MAX_REASONS - 1) {
        snprintf(m->reasons[i].name, sizeof m->reasons[i].name, "other");
        m->reasons[i].count = 0;
        m->reason_count++;
      }
    }
  }
  m->reasons[i].count++;
  manifest_unlock(m);
}

void sdw_manifest_set_message(sdw_manifest *m, const char *fmt, ...) {
  va_list ap;
  manifest_lock(m);
  va_start(ap, fmt);
  vsnprintf(m->message, sizeof m->message, fmt, ap);
  va_end(ap);
  manifest_unlock(m);
}

static cJSON *manifest_to_json(sdw_manifest *m) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "format", "sdw-stage-manifest/1");
  cJSON_AddStringToObject(root, "stage", m->stage);
  cJSON_AddStringToObject(root, "state", m->state);
  cJSON_AddNumberToObject(root, "pid", (double)getpid());
  cJSON_AddNumberToObject(root, "started_at", m->started_at);
  cJSON_AddNumberToObject(root, "updated_at", m->updated_at);
  if (m->finished_at > 0)
    cJSON_AddNumberToObject(root, "finished_at", m->finished_at);
  else
    cJSON_AddNullToObject(root, "finished_at");
  if (m->total >= 0)
    cJSON_AddNumberToObject(root, "total", (double)m->total);
  else
    cJSON_AddNullToObject(root, "total");
  int64_t in = atomic_load(&m->in);
  cJSON *counts = cJSON_AddObjectToObject(root, "counts");
  cJSON_AddNumberToObject(counts, "in", (double)in);
  cJSON_AddNumberToObject(counts, "out", (double)atomic_load(&m->out));
  cJSON_AddNumberToObject(counts, "failed", (double)atomic_load(&m->failed));
  cJSON_AddNumberToObject(counts, "skipped", (double)atomic_load(&m->skipped));
  cJSON *failures = cJSON_AddObjectToObject(root, "failures");
  for (int i = 0; i < m->reason_count; i++)
    cJSON_AddNumberToObject(failures, m->reasons[i].name, (double)m->reasons[i].count);
  double end = m->finished_at > 0 ? m->finished_at : m->updated_at;
  double elapsed = end - m->started_at;
  cJSON_AddNumberToObject(root, "throughput", elapsed > 0 ? (double)in / elapsed : 0.0);
  cJSON *inputs = cJSON_AddArrayToObject(root, "inputs");
  for (int i = 0; i < m->input_count; i++) {
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "path", m->inputs[i].path);
    cJSON_AddNumberToObject(item, "size", (double)m->inputs[i].size);
    cJSON_AddNumberToObject(item, "mtime", (double)m->inputs[i].mtime);
    if (m->inputs[i].sha256[0]) cJSON_AddStringToObject(item, "sha256", m->inputs[i].sha256);
    cJSON_AddItemToArray(inputs, item);
  }
  cJSON_AddItemToObject(root, "outputs", cJSON_Duplicate(m->outputs, 1));
  cJSON_AddStringToObject(root, "message", m->message);
  cJSON_AddItemToObject(root, "extra", cJSON_Duplicate(m->extra, 1));
  return root;
}

sdw_status sdw_manifest_flush(sdw_manifest *m, bool force) {
  double now = sdw_manifest_now();
  if (!force && now - m->last_flush < m->flush_interval) return SDW_OK;
  manifest_lock(m);
  m->updated_at = now;
  cJSON *root = manifest_to_json(m);
  manifest_unlock(m);
  char *text = root ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", m->path);
  size_t len = strlen(text);
  text[len] = '\n'; /* replace the NUL: the file ends with a newline */
  sdw_status st = sdw_atomic_write(m->path, text, len + 1);
  free(text);
  m->last_flush = now;
  return st;
}

sdw_status sdw_manifest_finish(sdw_manifest *m, const char *state) {
  snprintf(m->state, sizeof m->state, "%s", state);
  m->finished_at = sdw_manifest_now();
  sdw_status st = sdw_manifest_flush(m, true);
  sdw_manifest_release(m);
  return st;
}

sdw_status sdw_manifest_read(const char *data_dir, const char *stage, cJSON **out) {
  *out = NULL;
  char path[1024];
  snprintf(path, sizeof path, "%s/manifests/%s.json", data_dir, stage);
  void *data;
  size_t size;
  SDW_TRY(sdw_read_file(path, &data, &size));
  cJSON *root = cJSON_ParseWithLength(data, size);
  free(data);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a stage manifest (invalid JSON)", path);
  }
  *out = root;
  return SDW_OK;
}
