/* Stage manifests: what every pipeline stage reports about itself.
 *
 * A stage keeps <data_dir>/manifests/<stage>.json up to date while it runs
 * (rewritten atomically, at most every flush_interval seconds, and at the
 * end). The workbench's pipeline panel and `sdw pipeline status DIR` read
 * these files; nothing else couples a viewer to a running stage. Format
 * (documented in sdw-formats(5)):
 *
 *   {"format": "sdw-stage-manifest/1", "stage": "download",
 *    "state": "running" | "done" | "failed" | "interrupted",
 *    "pid": 1234, "started_at": 1764000000.5, "updated_at": ..., "finished_at": ... | null,
 *    "total": 10000 | null,          items the stage expects to handle (for progress/ETA)
 *    "counts": {"in": 5000, "out": 4800, "failed": 200, "skipped": 0},
 *    "failures": {"http_404": 120, "decode_error": 80},   per-reason histogram
 *    "throughput": 123.4,            items in per second since start
 *    "inputs": [{"path": "...", "size": 123, "mtime": 1764000000, "sha256": "..."}],
 *    "outputs": ["shards/00000.tar", ...],
 *    "message": "",                  the last error or a note
 *    "extra": {...}}                 stage-specific fields
 *
 * Threading: one manifest object per stage process; the counting functions
 * are safe to call from several threads (atomic counters, a lock for the
 * failure histogram); flush is called by one thread.
 */
#ifndef SDW_PIPELINE_MANIFEST_H
#define SDW_PIPELINE_MANIFEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_MANIFEST_MAX_REASONS = 64, SDW_MANIFEST_MAX_INPUTS = 256 };

typedef struct sdw_manifest_reason {
  char name[48];
  int64_t count;
} sdw_manifest_reason;

typedef struct sdw_manifest_input {
  char path[512];
  int64_t size;
  int64_t mtime;
  char sha256[65]; /* "" when not hashed */
} sdw_manifest_input;

typedef struct sdw_manifest {
  char path[1024]; /* the manifest file */
  char stage[32];
  char state[16];
  double started_at, updated_at, finished_at, last_flush;
  double flush_interval; /* seconds; default 0.5 */
  int64_t total;         /* -1 when unknown */
  _Atomic int64_t in, out, failed, skipped;
  sdw_manifest_reason reasons[SDW_MANIFEST_MAX_REASONS];
  int reason_count;
  sdw_manifest_input inputs[SDW_MANIFEST_MAX_INPUTS];
  int input_count;
  cJSON *outputs; /* array of strings (owned) */
  cJSON *extra;   /* object (owned); stages add their own fields */
  char message[512];
  void *lock; /* pthread mutex (owned) */
} sdw_manifest;

/* Starts a manifest for stage in data_dir (creates data_dir/manifests/),
 * state "running", and writes it. The object is owned by the caller:
 * sdw_manifest_finish or sdw_manifest_release frees what it holds. */
sdw_status sdw_manifest_begin(sdw_manifest *m, const char *data_dir, const char *stage);
/* Records an input's fingerprint (size, mtime; SHA-256 when hash is true). */
sdw_status sdw_manifest_add_input(sdw_manifest *m, const char *path, bool hash);
void sdw_manifest_set_total(sdw_manifest *m, int64_t total);
void sdw_manifest_add_output(sdw_manifest *m, const char *path);
/* Counters (thread-safe). */
void sdw_manifest_count_in(sdw_manifest *m, int64_t n);
void sdw_manifest_count_out(sdw_manifest *m, int64_t n);
void sdw_manifest_count_skipped(sdw_manifest *m, int64_t n);
/* One failed item with its reason (thread-safe); reasons beyond the table
 * size are counted under "other". */
void sdw_manifest_count_failed(sdw_manifest *m, const char *reason);
void sdw_manifest_set_message(sdw_manifest *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Rewrites the file when flush_interval has passed (force: always). */
sdw_status sdw_manifest_flush(sdw_manifest *m, bool force);
/* Final state ("done", "failed", "interrupted"), a last write, and frees. */
sdw_status sdw_manifest_finish(sdw_manifest *m, const char *state);
/* Frees without writing (after a failed begin). */
void sdw_manifest_release(sdw_manifest *m);

/* Reads data_dir/manifests/<stage>.json; *out owned by the caller (cJSON_Delete).
 * SDW_ERR_NOT_FOUND when the stage has not run. */
sdw_status sdw_manifest_read(const char *data_dir, const char *stage, cJSON **out);

/* Unix time in seconds with sub-second precision. */
double sdw_manifest_now(void);

#ifdef __cplusplus
}
#endif
#endif
