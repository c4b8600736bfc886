/* What the workbench knows about a run and its data: read from the run
 * directory's files (job.json, metrics.jsonl and events.log followed like
 * `tail -f`, samples/), the pipeline manifests DATA/manifests/STAGE.json, and the
 * events the job pushes over its control socket. No curses here; tested
 * headless (tests/test_tui_run_model.c).
 *
 * Reading never writes: nothing a viewer does can corrupt a run. Files being
 * rewritten or appended while read are fine: job.json is replaced
 * atomically by the trainer, and a metrics or log line without its final
 * '\n' is kept until the rest arrives.
 */
#ifndef SDW_TUI_RUN_MODEL_H
#define SDW_TUI_RUN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

enum { SDW_RUN_LOG_MAX = 4000, SDW_RUN_STAGES_MAX = 32 };

typedef struct sdw_run_job {
  bool present; /* job.json was read at least once */
  char state[24];
  long pid;
  char host[128];
  int64_t step, epoch, total_steps;
  double loss, lr, img_per_s, eta_s, updated;
  char last_checkpoint[512];
  char error[512];
} sdw_run_job;

/* The metric history, one entry per logged step (steps ascending; a line
 * whose step is not above the last is ignored, so the socket's metric
 * events and the file's lines can both feed it). Missing values are NaN. */
typedef struct sdw_run_series {
  size_t n, cap;
  double *step, *epoch, *loss, *lr, *grad_norm, *img_per_s, *step_ms, *mem_mb, *time;
} sdw_run_series;

typedef struct sdw_run_val {
  size_t n, cap;
  double *step, *val_loss;
} sdw_run_val;

typedef enum sdw_log_kind { SDW_LOGK_INFO = 0, SDW_LOGK_WARN, SDW_LOGK_ERROR } sdw_log_kind;

typedef struct sdw_run_log_line {
  char *text; /* owned */
  sdw_log_kind kind;
} sdw_run_log_line;

/* A tail -f reader of one append-only text file. */
typedef struct sdw_tail {
  char path[1024];
  off_t offset;  /* bytes consumed (complete lines) */
  ino_t inode;   /* a new file (rotated, recreated) restarts from 0 */
  char *partial; /* an incomplete last line, owned */
  size_t partial_len;
} sdw_tail;

typedef struct sdw_run_stage {
  char name[32];
  char state[16]; /* running, done, failed, interrupted, or "dead" (running but its pid is gone) */
  long pid;
  double started_at, updated_at, finished_at;
  int64_t total, in, out, failed, skipped;
  double throughput;
  char message[256];
  cJSON *manifest; /* the whole manifest (owned), for the report view */
} sdw_run_stage;

enum { SDW_RUNS_MAX = 32 };

/* One run directory found next to the one being viewed (the runs list). */
typedef struct sdw_run_entry {
  char dir[1024];
  sdw_run_job job;
  bool alive; /* an active state and its process exists */
} sdw_run_entry;

typedef struct sdw_run_model {
  char run_dir[1024];  /* "" when there is no run (pipeline only) */
  char data_dir[1024]; /* "" when unknown */
  sdw_run_job job;
  sdw_run_series metrics;
  sdw_run_val val;
  int64_t skipped_steps;
  sdw_run_log_line log[SDW_RUN_LOG_MAX]; /* ring */
  size_t log_start, log_count;
  uint64_t log_total; /* lines ever added (the log panel follows the end) */
  sdw_run_stage stages[SDW_RUN_STAGES_MAX];
  int stage_count;
  char latest_image[1024]; /* newest PNG under samples/ ("" none) */
  double latest_image_mtime;
  bool job_alive;        /* the job's process exists (same host) */
  bool connected;        /* the app's socket connection is up (set by the app) */
  char status_note[256]; /* e.g. "job not running (last seen 22:31:05)" */
  double last_manifest_scan, last_job_read, last_samples_scan, last_runs_scan;
  char runs_root[1024]; /* where the runs list looks ("" none) */
  sdw_run_entry runs[SDW_RUNS_MAX];
  int run_count;
  sdw_tail metrics_tail, events_tail;
  char hostname[128];
} sdw_run_model;

/* run_dir may be NULL (pipeline only), data_dir NULL (taken from the run's
 * config.ini when it names one, see sdw_run_model_guess_data). The model is
 * owned by the caller (sdw_run_model_free). */
void sdw_run_model_init(sdw_run_model *m, const char *run_dir, const char *data_dir);
void sdw_run_model_free(sdw_run_model *m);
/* Reads what changed since the last call; now is unix time (seconds).
 * Manifests and samples/ are rescanned at most every second. */
void sdw_run_model_poll(sdw_run_model *m, double now);
/* Applies one event from the control socket (borrowed). */
void sdw_run_model_apply_event(sdw_run_model *m, const cJSON *event);
/* Adds one line to the log ring (copied). */
void sdw_run_model_log(sdw_run_model *m, sdw_log_kind kind, const char *text);
/* The i-th of the log lines kept (0 = oldest kept). */
const sdw_run_log_line *sdw_run_model_log_at(const sdw_run_model *m, size_t i);
/* The run directories (holding job.json) directly in root and in root/runs,
 * newest update first, at most max. Returns the count. */
int sdw_run_model_scan_runs(const char *root, sdw_run_entry *out, int max);
/* Parses one metrics.jsonl line into the history (ignored when malformed). */
void sdw_run_model_metric_line(sdw_run_model *m, const char *line, size_t len);
/* A stage's place in pipeline order (side stages such as emoji before the
 * main ones they feed; unknown stages last). */
int sdw_run_stage_rank(const char *name);
/* Parses a job.json text into job (false when malformed). */
bool sdw_run_job_parse(const char *text, sdw_run_job *job);
/* True when the job's state says it should have a live process. */
bool sdw_run_job_active_state(const char *state);

/* The data directory of a run: the config.ini value of the first of these
 * keys that names a directory holding manifests/ (or, failing that, an
 * existing directory): data, data_dir, latents, latent_store, dataset; a
 * relative value is taken relative to the run's parent and then the
 * current directory. out = "" when none. */
void sdw_run_model_guess_data(const char *run_dir, char *out, size_t cap);

/* Reads the complete new lines of a followed file and calls fn for each
 * (without the '\n'). Returns the number of lines. */
typedef void (*sdw_tail_line_fn)(void *user, const char *line, size_t len);
void sdw_tail_init(sdw_tail *t, const char *path);
void sdw_tail_free(sdw_tail *t);
int sdw_tail_poll(sdw_tail *t, sdw_tail_line_fn fn, void *user);

#endif
