/* The workbench's model of a run and its data (see run_model.h). */
#include "tui/run_model.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- tail -f ---------------------------------------------------------------- */

void sdw_tail_init(sdw_tail *t, const char *path) {
  memset(t, 0, sizeof *t);
  snprintf(t->path, sizeof t->path, "%s", path);
}

void sdw_tail_free(sdw_tail *t) {
  free(t->partial);
  t->partial = NULL, t->partial_len = 0;
}

int sdw_tail_poll(sdw_tail *t, sdw_tail_line_fn fn, void *user) {
  int fd = open(t->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return 0;
  }
  /* A replaced or truncated file is read again from its start. */
  if (st.st_ino != t->inode || st.st_size < t->offset + (off_t)t->partial_len) {
    t->inode = st.st_ino, t->offset = 0, t->partial_len = 0;
  }
  off_t pos = t->offset + (off_t)t->partial_len;
  if (st.st_size <= pos) {
    close(fd);
    return 0;
  }
  size_t want = (size_t)(st.st_size - pos);
  if (want > (64u << 20)) want = 64u << 20; /* the rest on the next poll */
  char *buf = realloc(t->partial, t->partial_len + want + 1);
  if (!buf) {
    close(fd);
    return 0;
  }
  t->partial = buf;
  ssize_t got = pread(fd, buf + t->partial_len, want, pos);
  close(fd);
  if (got <= 0) return 0;
  size_t len = t->partial_len + (size_t)got;
  int lines = 0;
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    if (buf[i] != '\n') continue;
    buf[i] = 0;
    size_t n = i - start;
    if (n > 0 && buf[start + n - 1] == '\r') buf[start + --n] = 0;
    if (fn) fn(user, buf + start, n);
    lines++;
    start = i + 1;
  }
  t->offset += (off_t)start;
  memmove(buf, buf + start, len - start);
  t->partial_len = len - start;
  return lines;
}

/* --- small JSON readers ------------------------------------------------------------ */

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int64_t inum(const cJSON *o, const char *key, int64_t def) {
  double v = num(o, key);
  return isfinite(v) ? (int64_t)v : def;
}

static void str(const cJSON *o, const char *key, char *out, size_t cap) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  snprintf(out, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static char *read_text(const char *path, size_t max) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(max + 1);
  size_t n = buf ? fread(buf, 1, max, f) : 0;
  fclose(f);
  if (buf) buf[n] = 0;
  return buf;
}

/* --- job.json ---------------------------------------------------------------------- */

bool sdw_run_job_parse(const char *text, sdw_run_job *job) {
  cJSON *o = cJSON_Parse(text);
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    return false;
  }
  sdw_run_job j = {.present = true};
  str(o, "state", j.state, sizeof j.state);
  j.pid = (long)inum(o, "pid", 0);
  str(o, "host", j.host, sizeof j.host);
  j.step = inum(o, "step", 0);
  j.epoch = inum(o, "epoch", 0);
  j.total_steps = inum(o, "total_steps", 0);
  j.loss = num(o, "loss");
  j.lr = num(o, "lr");
  j.img_per_s = num(o, "img_per_s");
  j.eta_s = num(o, "eta_s");
  j.updated = num(o, "updated");
  str(o, "last_checkpoint", j.last_checkpoint, sizeof j.last_checkpoint);
  str(o, "error", j.error, sizeof j.error);
  cJSON_Delete(o);
  *job = j;
  return true;
}

bool sdw_run_job_active_state(const char *state) {
  static const char *const active[] = {"starting",      "running",  "paused",  "sampling",
                                       "checkpointing", "stopping", "loading", "validating"};
  for (size_t i = 0; i < sizeof active / sizeof active[0]; i++)
    if (strcmp(state, active[i]) == 0) return true;
  return false;
}

/* --- metrics ----------------------------------------------------------------------- */

static bool grow(double **a, size_t cap) {
  double *p = realloc(*a, cap * sizeof **a);
  if (!p) return false;
  *a = p;
  return true;
}

static bool series_push(sdw_run_series *s, const cJSON *o) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    double **cols[] = {&s->step,      &s->epoch,   &s->loss,   &s->lr,  &s->grad_norm,
                       &s->img_per_s, &s->step_ms, &s->mem_mb, &s->time};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
      if (!grow(cols[i], cap)) return false;
    s->cap = cap;
  }
  size_t i = s->n++;
  s->step[i] = num(o, "step");
  s->epoch[i] = num(o, "epoch");
  s->loss[i] = num(o, "loss");
  s->lr[i] = num(o, "lr");
  s->grad_norm[i] = num(o, "grad_norm");
  s->img_per_s[i] = num(o, "img_per_s");
  s->step_ms[i] = num(o, "step_ms");
  s->mem_mb[i] = num(o, "mem_mb");
  s->time[i] = num(o, "time");
  return true;
}

static void val_push(sdw_run_val *v, double step, double loss) {
  if (v->n > 0 && !(step > v->step[v->n - 1])) return;
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    if (!grow(&v->step, cap) || !grow(&v->val_loss, cap)) return;
    v->cap = cap;
  }
  v->step[v->n] = step, v->val_loss[v->n] = loss, v->n++;
}

static void metric_object(sdw_run_model *m, const cJSON *o) {
  double step = num(o, "step");
  if (!isfinite(step)) return;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "skipped"))) {
    m->skipped_steps++;
    return;
  }
  double val = num(o, "val_loss");
  if (isfinite(val) || cJSON_GetObjectItemCaseSensitive(o, "val_loss")) {
    val_push(&m->val, step, val);
    return;
  }
  if (m->metrics.n > 0 && !(step > m->metrics.step[m->metrics.n - 1])) return;
  series_push(&m->metrics, o);
}

void sdw_run_model_metric_line(sdw_run_model *m, const char *line, size_t len) {
  cJSON *o = cJSON_ParseWithLength(line, len);
  if (cJSON_IsObject(o)) metric_object(m, o);
  cJSON_Delete(o);
}

static void metric_line_cb(void *user, const char *line, size_t len) {
  sdw_run_model_metric_line(user, line, len);
}

/* --- log --------------------------------------------------------------------------- */

void sdw_run_model_log(sdw_run_model *m, sdw_log_kind kind, const char *text) {
  char *copy = strdup(text ? text : "");
  if (!copy) return;
  size_t slot;
  if (m->log_count == SDW_RUN_LOG_MAX) {
    slot = m->log_start;
    free(m->log[slot].text);
    m->log_start = (m->log_start + 1) % SDW_RUN_LOG_MAX;
  } else {
    slot = (m->log_start + m->log_count++) % SDW_RUN_LOG_MAX;
  }
  m->log[slot].text = copy, m->log[slot].kind = kind;
  m->log_total++;
}

const sdw_run_log_line *sdw_run_model_log_at(const sdw_run_model *m, size_t i) {
  if (i >= m->log_count) return NULL;
  return &m->log[(m->log_start + i) % SDW_RUN_LOG_MAX];
}

static sdw_log_kind kind_of(const char *line) {
  /* "2026-11-25T22:30:01Z LEVEL message": the second word. */
  const char *sp = strchr(line, ' ');
  const char *w = sp ? sp + 1 : line;
  if (strncmp(w, "ERROR", 5) == 0 || strncmp(w, "FATAL", 5) == 0) return SDW_LOGK_ERROR;
  if (strncmp(w, "WARN", 4) == 0) return SDW_LOGK_WARN;
  return SDW_LOGK_INFO;
}

static void event_line_cb(void *user, const char *line, size_t len) {
  (void)len;
  sdw_run_model_log(user, kind_of(line), line);
}

/* --- events from the socket ---------------------------------------------------------- */

void sdw_run_model_apply_event(sdw_run_model *m, const cJSON *ev) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "event");
  if (!cJSON_IsString(e)) return;
  const char *kind = e->valuestring;
  if (strcmp(kind, "metric") == 0) {
    metric_object(m, ev);
    double step = num(ev, "step");
    if (isfinite(step) && step >= (double)m->job.step) m->job.step = (int64_t)step;
    double loss = num(ev, "loss");
    if (isfinite(loss)) m->job.loss = loss;
    double ips = num(ev, "img_per_s");
    if (isfinite(ips)) m->job.img_per_s = ips;
  } else if (strcmp(kind, "state") == 0) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(ev, "state");
    if (cJSON_IsString(s)) snprintf(m->job.state, sizeof m->job.state, "%s", s->valuestring);
  } else if (strcmp(kind, "checkpoint") == 0) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "path");
    if (cJSON_IsString(p))
      snprintf(m->job.last_checkpoint, sizeof m->job.last_checkpoint, "%s", p->valuestring);
  } else if (strcmp(kind, "sample") == 0) {
    m->last_samples_scan = 0; /* rescan samples/ at the next poll */
  }
  /* "log" events are not added: events.log has the same lines, and following
   * the file also gives a late viewer the whole history. */
}

/* --- manifests ------------------------------------------------------------------------ */

int sdw_run_stage_rank(const char *name) {
  /* encode-pixels and train-vae: the VAE of sdw demo --space vae, before
   * the encode that uses it */
  static const char *const order[] = {"emoji",         "diffusiondb",     "metadata",   "filter",
                                      "download",      "filter-captions", "preprocess", "build",
                                      "encode-pixels", "train-vae",       "encode"};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    if (strcmp(order[i], name) == 0) return (int)i;
  return 100;
}

static int compare_stage(const void *a, const void *b) {
  const sdw_run_stage *x = a, *y = b;
  int rx = sdw_run_stage_rank(x->name), ry = sdw_run_stage_rank(y->name);
  return rx != ry ? rx - ry : strcmp(x->name, y->name);
}

static bool pid_alive(long pid) {
  if (pid <= 0) return false;
  return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

static void scan_manifests(sdw_run_model *m) {
  for (int i = 0; i < m->stage_count; i++)
    cJSON_Delete(m->stages[i].manifest);
  m->stage_count = 0;
  if (!m->data_dir[0]) return;
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/manifests", m->data_dir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && m->stage_count < SDW_RUN_STAGES_MAX) {
    size_t n = strlen(e->d_name);
    if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0 || e->d_name[0] == '.') continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    char *text = read_text(path, 4u << 20);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cJSON_IsObject(o)) {
      cJSON_Delete(o);
      continue;
    }
    sdw_run_stage *s = &m->stages[m->stage_count++];
    memset(s, 0, sizeof *s);
    str(o, "stage", s->name, sizeof s->name);
    if (!s->name[0]) snprintf(s->name, sizeof s->name, "%.*s", (int)(n - 5), e->d_name);
    str(o, "state", s->state, sizeof s->state);
    s->pid = (long)inum(o, "pid", 0);
    s->started_at = num(o, "started_at");
    s->updated_at = num(o, "updated_at");
    s->finished_at = num(o, "finished_at");
    s->total = inum(o, "total", -1);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "counts");
    s->in = inum(c, "in", 0), s->out = inum(c, "out", 0);
    s->failed = inum(c, "failed", 0), s->skipped = inum(c, "skipped", 0);
    s->throughput = num(o, "throughput");
    str(o, "message", s->message, sizeof s->message);
    if (strcmp(s->state, "running") == 0 && !pid_alive(s->pid))
      snprintf(s->state, sizeof s->state, "dead");
    s->manifest = o;
  }
  closedir(d);
  qsort(m->stages, (size_t)m->stage_count, sizeof m->stages[0], compare_stage);
}

static void scan_runs_in(const char *parent, sdw_run_entry *out, int max, int *n) {
  DIR *d = opendir(parent);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && *n < max) {
    if (e->d_name[0] == '.') continue;
    char dir[1024], path[1100];
    if (snprintf(dir, sizeof dir, "%s/%s", parent, e->d_name) >= (int)sizeof dir) continue;
    snprintf(path, sizeof path, "%s/job.json", dir);
    char *text = read_text(path, 1u << 20);
    sdw_run_job j;
    bool ok = text && sdw_run_job_parse(text, &j);
    free(text);
    if (!ok) continue;
    sdw_run_entry *r = &out[(*n)++];
    memcpy(r->dir, dir, sizeof r->dir);
    r->job = j;
    r->alive = sdw_run_job_active_state(j.state) && pid_alive(j.pid);
  }
  closedir(d);
}

static int compare_runs(const void *a, const void *b) {
  const sdw_run_entry *x = a, *y = b;
  double tx = isfinite(x->job.updated) ? x->job.updated : 0;
  double ty = isfinite(y->job.updated) ? y->job.updated : 0;
  if (tx != ty) return tx > ty ? -1 : 1;
  return strcmp(x->dir, y->dir);
}

int sdw_run_model_scan_runs(const char *root, sdw_run_entry *out, int max) {
  int n = 0;
  if (!root || !root[0]) return 0;
  scan_runs_in(root, out, max, &n);
  char runs[1100];
  snprintf(runs, sizeof runs, "%s/runs", root);
  scan_runs_in(runs, out, max, &n);
  qsort(out, (size_t)n, sizeof *out, compare_runs);
  return n;
}

static void scan_samples(sdw_run_model *m) {
  char dir[1100];
  snprintf(dir, sizeof dir, "%s/samples", m->run_dir);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  double best = -1;
  char best_name[256] = "";
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 5 || strcmp(e->d_name + n - 4, ".png") != 0 || e->d_name[0] == '.') continue;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    double t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    if (t > best || (t == best && strcmp(e->d_name, best_name) > 0)) {
      best = t;
      snprintf(best_name, sizeof best_name, "%s", e->d_name);
    }
  }
  closedir(d);
  if (best_name[0]) {
    if (snprintf(m->latest_image, sizeof m->latest_image, "%s/%s", dir, best_name) >=
        (int)sizeof m->latest_image)
      m->latest_image[0] = 0;
    m->latest_image_mtime = best;
  }
}

/* --- config.ini: where the data lives --------------------------------------------------- */

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = 0;
  if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) s[n - 1] = 0, s++;
  return s;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Resolves value against the run's parent, then the current directory;
 * walks up from a file or a subdirectory (a latent store inside DATA) to the
 * first directory holding manifests/. */
static bool resolve_data(const char *run_dir, const char *value, char *out, size_t cap,
                         bool need_manifests) {
  char cand[2][1400];
  int nc = 0;
  if (value[0] == '/') {
    snprintf(cand[nc++], sizeof cand[0], "%s", value);
  } else {
    char parent[1100];
    snprintf(parent, sizeof parent, "%s", run_dir);
    char *slash = strrchr(parent, '/');
    if (slash)
      *slash = 0;
    else
      snprintf(parent, sizeof parent, ".");
    snprintf(cand[nc++], sizeof cand[0], "%s/%s", parent, value);
    snprintf(cand[nc++], sizeof cand[0], "%s", value);
  }
  for (int i = 0; i < nc; i++) {
    char p[1400];
    memcpy(p, cand[i], sizeof p);
    for (int up = 0; up < 4 && p[0]; up++) {
      char mdir[1500];
      snprintf(mdir, sizeof mdir, "%s/manifests", p);
      if (is_dir(mdir) || (!need_manifests && up == 0 && is_dir(p))) {
        snprintf(out, cap, "%s", p);
        return true;
      }
      char *slash = strrchr(p, '/');
      if (!slash || slash == p) break;
      *slash = 0;
    }
  }
  return false;
}

void sdw_run_model_guess_data(const char *run_dir, char *out, size_t cap) {
  static const char *const keys[] = {"data",         "data_dir", "latents",
                                     "latent_store", "dataset",  "train_data"};
  out[0] = 0;
  if (!run_dir || !run_dir[0]) return;
  char path[1100];
  snprintf(path, sizeof path, "%s/config.ini", run_dir);
  char *text = read_text(path, 1u << 20);
  if (!text) return;
  for (int pass = 0; pass < 2 && !out[0]; pass++)
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && !out[0]; k++) {
      char *save = NULL, *copy = strdup(text);
      if (!copy) break;
      for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        char *key = trim(line), *value = trim(eq + 1);
        /* Without manifests anywhere, only an explicit data key names the
         * data directory (a latent store alone is not one). */
        bool explicit_key = k < 2;
        if (strcmp(key, keys[k]) == 0 && *value && (pass == 0 || explicit_key) &&
            resolve_data(run_dir, value, out, cap, pass == 0))
          break;
      }
      free(copy);
    }
  free(text);
}

/* --- the model ------------------------------------------------------------------------------ */

void sdw_run_model_init(sdw_run_model *m, const char *run_dir, const char *data_dir) {
  memset(m, 0, sizeof *m);
  snprintf(m->run_dir, sizeof m->run_dir, "%s", run_dir ? run_dir : "");
  if (data_dir && *data_dir)
    snprintf(m->data_dir, sizeof m->data_dir, "%s", data_dir);
  else
    sdw_run_model_guess_data(m->run_dir, m->data_dir, sizeof m->data_dir);
  if (m->run_dir[0]) {
    /* The runs list looks next to the run: its parent folder. */
    snprintf(m->runs_root, sizeof m->runs_root, "%s", m->run_dir);
    char *slash = strrchr(m->runs_root, '/');
    if (slash && slash != m->runs_root)
      *slash = 0;
    else
      snprintf(m->runs_root, sizeof m->runs_root, ".");
  }
  char path[1100];
  snprintf(path, sizeof path, "%s/metrics.jsonl", m->run_dir);
  sdw_tail_init(&m->metrics_tail, path);
  snprintf(path, sizeof path, "%s/events.log", m->run_dir);
  sdw_tail_init(&m->events_tail, path);
  if (gethostname(m->hostname, sizeof m->hostname - 1) != 0) m->hostname[0] = 0;
  m->job.loss = m->job.lr = m->job.img_per_s = m->job.eta_s = m->job.updated = NAN;
}

void sdw_run_model_free(sdw_run_model *m) {
  sdw_run_series *s = &m->metrics;
  double *cols[] = {s->step,      s->epoch,   s->loss,   s->lr,  s->grad_norm,
                    s->img_per_s, s->step_ms, s->mem_mb, s->time};
  for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
    free(cols[i]);
  free(m->val.step);
  free(m->val.val_loss);
  for (size_t i = 0; i < m->log_count; i++)
    free(m->log[(m->log_start + i) % SDW_RUN_LOG_MAX].text);
  for (int i = 0; i < m->stage_count; i++)
    cJSON_Delete(m->stages[i].manifest);
  sdw_tail_free(&m->metrics_tail);
  sdw_tail_free(&m->events_tail);
  memset(m, 0, sizeof *m);
}

static void update_note(sdw_run_model *m) {
  m->status_note[0] = 0;
  if (!m->run_dir[0]) return;
  if (!m->job.present) {
    snprintf(m->status_note, sizeof m->status_note, "no job.json in %.200s yet", m->run_dir);
    return;
  }
  bool same_host = !m->job.host[0] || strcmp(m->job.host, m->hostname) == 0;
  bool active = sdw_run_job_active_state(m->job.state);
  m->job_alive = active && (same_host ? pid_alive(m->job.pid) : m->connected);
  if (active && !m->job_alive) {
    char when[32] = "never";
    if (isfinite(m->job.updated)) {
      time_t t = (time_t)m->job.updated;
      time_t today = time(NULL);
      struct tm tm, now_tm;
      localtime_r(&t, &tm);
      localtime_r(&today, &now_tm);
      /* The time alone on the same day (short enough for 80 columns). */
      bool same_day = tm.tm_year == now_tm.tm_year && tm.tm_yday == now_tm.tm_yday;
      strftime(when, sizeof when, same_day ? "%H:%M:%S" : "%Y-%m-%d %H:%M", &tm);
    }
    snprintf(m->status_note, sizeof m->status_note, "job not running (last seen %s)", when);
  } else if (!active && m->job.state[0]) {
    snprintf(m->status_note, sizeof m->status_note, "job %s%s%.200s", m->job.state,
             m->job.error[0] ? ": " : "", m->job.error);
  }
}

void sdw_run_model_poll(sdw_run_model *m, double now) {
  if (m->run_dir[0]) {
    char path[1100];
    snprintf(path, sizeof path, "%s/job.json", m->run_dir);
    char *text = read_text(path, 1u << 20);
    sdw_run_job j;
    if (text && sdw_run_job_parse(text, &j)) {
      /* A metric event may be ahead of the file (written every few s). */
      if (j.step < m->job.step && strcmp(j.state, m->job.state) == 0) {
        j.step = m->job.step;
        if (isfinite(m->job.loss)) j.loss = m->job.loss;
      }
      m->job = j;
    }
    free(text);
    sdw_tail_poll(&m->metrics_tail, metric_line_cb, m);
    sdw_tail_poll(&m->events_tail, event_line_cb, m);
    if (now - m->last_samples_scan >= 1.0) {
      scan_samples(m);
      m->last_samples_scan = now;
    }
  }
  if (now - m->last_manifest_scan >= 1.0) {
    scan_manifests(m);
    m->last_manifest_scan = now;
  }
  if (now - m->last_runs_scan >= 2.0) {
    m->run_count = sdw_run_model_scan_runs(m->runs_root, m->runs, SDW_RUNS_MAX);
    m->last_runs_scan = now;
  }
  update_note(m);
}
