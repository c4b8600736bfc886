#include "core/train/run_dir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/fsutil.h"

void sdw_run_dir_file(const sdw_run_dir *r, const char *name, char *buf, size_t size) {
  snprintf(buf, size, "%s/%s", r->path, name);
}

sdw_status sdw_run_dir_open(sdw_run_dir *r, const char *path) {
  memset(r, 0, sizeof *r);
  if (strlen(path) >= sizeof r->path - 64)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: run directory path too long", path);
  snprintf(r->path, sizeof r->path, "%s", path);
  char buf[4200];
  SDW_TRY(sdw_mkdir_p(path));
  sdw_run_dir_file(r, "checkpoints", buf, sizeof buf);
  SDW_TRY(sdw_mkdir_p(buf));
  sdw_run_dir_file(r, "samples", buf, sizeof buf);
  SDW_TRY(sdw_mkdir_p(buf));
  sdw_run_dir_file(r, "events.log", buf, sizeof buf);
  r->events = fopen(buf, "a");
  sdw_run_dir_file(r, "metrics.jsonl", buf, sizeof buf);
  r->metrics = fopen(buf, "a");
  if (!r->events || !r->metrics) {
    sdw_status st = sdw_fail(SDW_ERR_IO, "%s: %s", buf, strerror(errno));
    sdw_run_dir_close(r);
    return st;
  }
  if (sdw_tfevents_open(path, &r->tb) != SDW_OK) r->tb = NULL;
  return SDW_OK;
}

void sdw_run_dir_close(sdw_run_dir *r) {
  if (r->events) fclose(r->events);
  if (r->metrics) fclose(r->metrics);
  sdw_tfevents_close(r->tb);
  r->events = r->metrics = NULL;
  r->tb = NULL;
}

void sdw_run_dir_event(sdw_run_dir *r, const char *level, const char *fmt, ...) {
  char msg[4096], stamp[32];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (char *p = msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' '; /* one line per event */
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (r->events) {
    fprintf(r->events, "%s %s %s\n", stamp, level, msg);
    fflush(r->events);
  }
  if (r->emit) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "log");
    cJSON_AddStringToObject(e, "level", level);
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddNumberToObject(e, "time", (double)now);
    r->emit(r->emit_user, e);
    cJSON_Delete(e);
  }
}

void sdw_run_dir_metric(sdw_run_dir *r, const cJSON *obj, bool flush) {
  char *text = cJSON_PrintUnformatted(obj);
  if (text && r->metrics) {
    fprintf(r->metrics, "%s\n", text);
    if (flush) fflush(r->metrics);
  }
  cJSON_free(text);
  if (r->emit) {
    cJSON *e = cJSON_Duplicate(obj, true);
    if (e) {
      cJSON_AddStringToObject(e, "event", "metric");
      r->emit(r->emit_user, e);
      cJSON_Delete(e);
    }
  }
}

sdw_status sdw_run_dir_job(sdw_run_dir *r, const cJSON *obj) {
  char *text = cJSON_PrintUnformatted(obj);
  if (!text) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "job.json: out of memory");
  size_t n = strlen(text);
  char *line = malloc(n + 2);
  sdw_status st;
  if (!line) {
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "job.json: out of memory");
  } else {
    memcpy(line, text, n);
    line[n] = '\n';
    char path[4200];
    sdw_run_dir_file(r, "job.json", path, sizeof path);
    st = sdw_atomic_write(path, line, n + 1);
    free(line);
  }
  cJSON_free(text);
  return st;
}

sdw_status sdw_run_dir_truncate_metrics(sdw_run_dir *r, int64_t step) {
  char path[4200];
  sdw_run_dir_file(r, "metrics.jsonl", path, sizeof path);
  if (r->metrics) fflush(r->metrics);
  void *data;
  size_t size;
  SDW_TRY(sdw_read_file(path, &data, &size));
  char *text = data, *out = malloc(size + 1);
  if (!out) {
    free(data);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "metrics.jsonl: out of memory");
  }
  size_t n = 0;
  bool dropped = false;
  for (char *line = text; line < text + size;) {
    char *end = memchr(line, '\n', (size_t)(text + size - line));
    if (!end) break; /* a torn last line (killed mid-write) is dropped */
    cJSON *o = cJSON_ParseWithLength(line, (size_t)(end - line));
    const cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "step") : NULL;
    if (!cJSON_IsNumber(s) || s->valuedouble <= (double)step) {
      memcpy(out + n, line, (size_t)(end - line) + 1);
      n += (size_t)(end - line) + 1;
    } else {
      dropped = true;
    }
    cJSON_Delete(o);
    line = end + 1;
  }
  sdw_status st = SDW_OK;
  if (dropped || n != size) {
    st = sdw_atomic_write(path, out, n);
    if (st == SDW_OK && r->metrics) {
      fclose(r->metrics);
      r->metrics = fopen(path, "a");
      if (!r->metrics) st = sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
    }
  }
  free(out);
  free(data);
  return st;
}
