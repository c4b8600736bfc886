/* The files of a run directory that sdw train writes as it goes (formats in
 * sdw-formats(5)): job.json (atomically replaced), metrics.jsonl and
 * events.log (appended, flushed), the TensorBoard event file, and the
 * events mirrored to control-socket subscribers.
 *
 * One writer per run (rank 0 of the job). Not thread-safe.
 */
#ifndef SDW_TRAIN_RUN_DIR_H
#define SDW_TRAIN_RUN_DIR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "core/base/status.h"
#include "core/train/control.h"
#include "core/train/tfevents.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_run_dir {
  char path[4096];
  FILE *events;     /* events.log (append) */
  FILE *metrics;    /* metrics.jsonl (append) */
  sdw_tfevents *tb; /* NULL when it could not be opened */
  /* Subscribers' log/metric events (event borrowed; NULL: none). The job
   * queues them to the thread that owns its control socket. */
  void (*emit)(void *user, const cJSON *event);
  void *emit_user;
} sdw_run_dir;

/* Creates path, path/checkpoints, path/samples and opens the appended
 * files. Close with sdw_run_dir_close. */
sdw_status sdw_run_dir_open(sdw_run_dir *r, const char *path);
void sdw_run_dir_close(sdw_run_dir *r);

/* path/name into buf. */
void sdw_run_dir_file(const sdw_run_dir *r, const char *name, char *buf, size_t size);

/* "2026-11-25T22:30:01Z LEVEL message" to events.log (flushed) and a
 * {"event":"log",...} to subscribers. level: "INFO", "WARN", "ERROR". */
void sdw_run_dir_event(sdw_run_dir *r, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One metrics.jsonl line (obj borrowed), and a {"event":"metric",...} to
 * subscribers. Flushed when flush is true. */
void sdw_run_dir_metric(sdw_run_dir *r, const cJSON *obj, bool flush);

/* After a resume from step: drops the metrics.jsonl lines of later steps
 * (written after that checkpoint by the run that was killed), so the file
 * holds each step once. */
sdw_status sdw_run_dir_truncate_metrics(sdw_run_dir *r, int64_t step);

/* Rewrites path/job.json atomically from obj (borrowed). */
sdw_status sdw_run_dir_job(sdw_run_dir *r, const cJSON *obj);

#ifdef __cplusplus
}
#endif
#endif
