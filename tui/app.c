/* The workbench's main loop over curses (see app.h). */
#include "tui/app.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/png_image.h"
#include "core/train/control.h"
#include "tui/stage_images.h"
#include "tui/termcaps.h"
#include "tui/theme.h"
#include "tui/view.h"

/* --- terminal restore on every exit path --------------------------------------------- */

static volatile sig_atomic_t curses_active;
static volatile sig_atomic_t quit_signal;

static void restore_terminal(void) {
  if (curses_active) {
    curses_active = 0;
    endwin();
  }
}

static void on_quit_signal(int sig) { quit_signal = sig; }

static void on_crash_signal(int sig) {
  /* endwin is not async-signal-safe, but the process is dying anyway and a
   * terminal left in raw mode on the alternate screen is worse. */
  restore_terminal();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void install_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_quit_signal; /* no SA_RESTART: poll() returns EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL); /* the SSH connection is gone: only the viewer ends */
  sa.sa_handler = on_crash_signal;
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGFPE, &sa, NULL);
  sigaction(SIGABRT, &sa, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* --- background requests to the job -------------------------------------------------------- */

/* The job acts on pause, resume, checkpoint and stop (and answers them) at
 * the end of its current training step, which can take minutes on a CPU (a
 * checkpoint longer still): every request runs on its own thread with its
 * own connection, and the main loop picks up the outcome. */
typedef struct request_slot {
  pthread_mutex_t lock;
  char done[8][300]; /* outcome messages waiting for the main loop */
  bool error[8];
  int count;
  int in_flight;
} request_slot;

static request_slot requests = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct request_job {
  char socket_path[1200];
  cJSON *request;
  int timeout_ms;
  char what[32];
} request_job;

static void post_outcome(bool error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void post_outcome(bool error, const char *fmt, ...) {
  pthread_mutex_lock(&requests.lock);
  if (requests.count < 8) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(requests.done[requests.count], sizeof requests.done[0], fmt, ap);
    va_end(ap);
    requests.error[requests.count++] = error;
  }
  pthread_mutex_unlock(&requests.lock);
}

static void *request_thread(void *arg) {
  request_job *job = arg;
  sdw_control_client *c = NULL;
  cJSON *reply = NULL;
  if (sdw_control_connect(job->socket_path, &c) != SDW_OK) {
    post_outcome(true, "%s: job not reachable (%s)", job->what, sdw_last_error());
  } else if (sdw_control_call(c, job->request, job->timeout_ms, &reply) != SDW_OK) {
    post_outcome(true, "%s: %s", job->what, sdw_last_error());
  } else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
    post_outcome(true, "%s refused: %s", job->what, cJSON_IsString(e) ? e->valuestring : "?");
  } else {
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(reply, "path");
    if (cJSON_IsString(path))
      post_outcome(false, "%s: %s", job->what, path->valuestring);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "queued")))
      post_outcome(false, "%s queued", job->what);
    else
      post_outcome(false, "%s: ok", job->what);
  }
  cJSON_Delete(reply);
  sdw_control_client_close(c);
  cJSON_Delete(job->request);
  free(job);
  pthread_mutex_lock(&requests.lock);
  requests.in_flight--;
  pthread_mutex_unlock(&requests.lock);
  return NULL;
}

static bool send_request(const char *socket_path, cJSON *request, int timeout_ms,
                         const char *what) {
  request_job *job = calloc(1, sizeof *job);
  if (!job) {
    cJSON_Delete(request);
    return false;
  }
  snprintf(job->socket_path, sizeof job->socket_path, "%s", socket_path);
  job->request = request;
  job->timeout_ms = timeout_ms;
  snprintf(job->what, sizeof job->what, "%s", what);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  pthread_mutex_lock(&requests.lock);
  requests.in_flight++;
  pthread_mutex_unlock(&requests.lock);
  int rc = pthread_create(&t, &attr, request_thread, job);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    pthread_mutex_lock(&requests.lock);
    requests.in_flight--;
    pthread_mutex_unlock(&requests.lock);
    cJSON_Delete(request);
    free(job);
    return false;
  }
  return true;
}

static cJSON *simple_request(const char *cmd) {
  cJSON *r = cJSON_CreateObject();
  if (r) cJSON_AddStringToObject(r, "cmd", cmd);
  return r;
}

/* --- the event subscription (connected in the background) ----------------------------------- */

typedef struct subscriber {
  pthread_mutex_t lock;
  char socket_path[1200];
  bool running;              /* a connector thread exists */
  sdw_control_client *ready; /* handed to the main loop */
  char error[256];
} subscriber;

static subscriber sub = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *subscribe_thread(void *arg) {
  (void)arg;
  sdw_control_client *c = NULL;
  cJSON *reply = NULL;
  cJSON *req = simple_request("subscribe");
  bool ok = req && sdw_control_connect(sub.socket_path, &c) == SDW_OK &&
            sdw_control_call(c, req, 60000, &reply) == SDW_OK &&
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"));
  cJSON_Delete(req);
  cJSON_Delete(reply);
  pthread_mutex_lock(&sub.lock);
  if (ok) {
    sub.ready = c;
    sub.error[0] = 0;
  } else {
    snprintf(sub.error, sizeof sub.error, "%s", sdw_last_error());
    sdw_control_client_close(c);
  }
  sub.running = false;
  pthread_mutex_unlock(&sub.lock);
  return NULL;
}

static void subscribe_start(void) {
  pthread_mutex_lock(&sub.lock);
  bool start = !sub.running && !sub.ready;
  if (start) sub.running = true;
  pthread_mutex_unlock(&sub.lock);
  if (!start) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  if (pthread_create(&t, &attr, subscribe_thread, NULL) != 0) {
    pthread_mutex_lock(&sub.lock);
    sub.running = false;
    pthread_mutex_unlock(&sub.lock);
  }
  pthread_attr_destroy(&attr);
}

static sdw_control_client *subscribe_take(void) {
  pthread_mutex_lock(&sub.lock);
  sdw_control_client *c = sub.ready;
  sub.ready = NULL;
  pthread_mutex_unlock(&sub.lock);
  return c;
}

/* --- pipeline stages as their own processes ------------------------------------------------- */

static pid_t run_stage(const char *stage, const char *data_dir, char *err, size_t cap) {
  char logs[1100], log_path[1200];
  snprintf(logs, sizeof logs, "%s/logs", data_dir);
  if (mkdir(logs, 0755) != 0 && errno != EEXIST) {
    snprintf(err, cap, "%.200s: %s", logs, strerror(errno));
    return -1;
  }
  snprintf(log_path, sizeof log_path, "%s/%s.log", logs, stage);
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, cap, "%.200s: %s", log_path, strerror(errno));
    return -1;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) {
    /* Its own session: the stage outlives the viewer and its terminal. */
    setsid();
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    char *argv[] = {"sdw", "pipeline", (char *)stage, "--data", (char *)data_dir, NULL};
    /* The running binary itself, even when build/sdw was replaced since. */
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  close(fd);
  if (devnull >= 0) close(devnull);
  if (pid < 0) snprintf(err, cap, "fork: %s", strerror(errno));
  return pid;
}

/* --- curses output -------------------------------------------------------------------------- */

typedef struct app {
  sdw_tui_theme theme;
  bool colors;
  bool ascii;      /* no UTF-8 (or the Linux console's font): ASCII stand-ins */
  bool braille_ok; /* the terminal's font is expected to have braille */
  attr_t attrs[SDW_ROLE_COUNT];
  short pairs[SDW_ROLE_COUNT];
  /* Images drawn outside curses: 0 the preview panel's, 1 a stage's sample
   * in the pipeline report. Where each is now (w = 0: nowhere), and whether
   * curses wrote over it (or it changed) since it was last drawn. */
  sdw_tui_rect image_rect[2];
  bool image_damaged[2];
} app;

static attr_t to_curses_attrs(unsigned a) {
  attr_t r = A_NORMAL;
  if (a & SDW_ATTR_BOLD) r |= A_BOLD;
  if (a & SDW_ATTR_DIM) r |= A_DIM;
  if (a & SDW_ATTR_REVERSE) r |= A_REVERSE;
  if (a & SDW_ATTR_UNDERLINE) r |= A_UNDERLINE;
  return r;
}

static void setup_colors(app *a) {
  a->colors = a->theme.color && has_colors();
  if (a->colors) {
    start_color();
    use_default_colors();
  }
  for (int r = 0; r < SDW_ROLE_COUNT; r++) {
    sdw_tui_style s = a->theme.role[r];
    a->attrs[r] = to_curses_attrs(s.attrs);
    a->pairs[r] = 0;
    if (a->colors && (s.fg >= 0 || s.bg >= 0) && r + 1 < COLOR_PAIRS) {
      init_pair((short)(r + 1), s.fg, s.bg);
      a->pairs[r] = (short)(r + 1);
    }
  }
}

static void emit_cell(void *user, int x, int y, sdw_tui_cell c) {
  app *a = user;
  for (int i = 0; i < 2; i++) {
    sdw_tui_rect r = a->image_rect[i];
    if (x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h) a->image_damaged[i] = true;
  }
  if (c.ch == SDW_TUI_WIDE_TAIL) return; /* written with its head */
  uint8_t role = c.style < SDW_ROLE_COUNT ? c.style : 0;
  wchar_t wc[2] = {(wchar_t)sdw_tui_standin(c.ch, a->braille_ok, a->ascii), 0};
  cchar_t cc;
  setcchar(&cc, wc, a->attrs[role], a->pairs[role], NULL);
  mvadd_wch(y, x, &cc);
}

static int translate_key(int rc, wint_t wch) {
  if (rc == KEY_CODE_YES) {
    switch (wch) {
    case KEY_UP: return SDW_KEY_UP;
    case KEY_DOWN: return SDW_KEY_DOWN;
    case KEY_LEFT: return SDW_KEY_LEFT;
    case KEY_RIGHT: return SDW_KEY_RIGHT;
    case KEY_PPAGE: return SDW_KEY_PGUP;
    case KEY_NPAGE: return SDW_KEY_PGDN;
    case KEY_HOME: return SDW_KEY_HOME;
    case KEY_END: return SDW_KEY_END;
    case KEY_BACKSPACE: return SDW_KEY_BACKSPACE;
    case KEY_DC: return SDW_KEY_DELETE;
    case KEY_ENTER: return SDW_KEY_ENTER;
    case KEY_BTAB: return SDW_KEY_BTAB;
    case KEY_RESIZE: return SDW_KEY_RESIZE;
    case KEY_F(1): return SDW_KEY_F1;
    default: return -1;
    }
  }
  if (wch == 27) return SDW_KEY_ESC;
  if (wch == '\t') return SDW_KEY_TAB;
  if (wch == '\r' || wch == '\n') return SDW_KEY_ENTER;
  if (wch == 127 || wch == 8) return SDW_KEY_BACKSPACE;
  return (int)wch;
}

/* --- the main loop ------------------------------------------------------------------------------
 */

typedef struct state {
  sdw_tui_options opt;
  sdw_run_model model;
  sdw_tui_view view;
  sdw_tui_devices devices;
  sdw_preview preview;
  sdw_preview stage_pv; /* a stage's sample image (pipeline report) */
  char stage_key[160];  /* what stage_pv shows: stage/index/manifest time */
  sdw_termcaps caps;
  sdw_tui_grid cur, prev;
  app out;
  char socket_path[1200];
  sdw_control_client *client;
  double next_connect, last_poll, last_devices;
  char loaded_image[1024];
  double loaded_mtime;
  bool running;
  char exit_note[512];
  pid_t stage_pids[16];
  char stage_names[16][32];
  int nstage_pids;
  bool awaiting_sample; /* this viewer asked for a sample: show it when it comes */
  /* The prompt sampler (opt.model): one `sdw sample` child at a time. */
  pid_t sampler_pid;      /* 0: none running */
  char sampler_log[1200]; /* DIR/sample.log: its stdout and stderr, appended */
  long sampler_log_start; /* the log's size when it started: its lines follow */
  double sampler_started, sampler_note_time;
} state;

static void note(state *s, bool error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(state *s, bool error, const char *fmt, ...) {
  char buf[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  sdw_tui_view_message(&s->view, error, now_s(), "%s", buf);
  char line[400];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
  snprintf(line, sizeof line, "%s %s [viewer] %s", stamp, error ? "WARN" : "INFO", buf);
  sdw_run_model_log(&s->model, error ? SDW_LOGK_WARN : SDW_LOGK_INFO, line);
}

static bool job_reachable(state *s, const char *what) {
  if (!s->model.run_dir[0]) {
    note(s, true, "%s: no run attached", what);
    return false;
  }
  if (sdw_run_job_active_state(s->model.job.state) && s->model.job_alive) return true;
  note(s, true, "%s: %s", what,
       s->model.status_note[0] ? s->model.status_note : "the job is not running");
  return false;
}

/* --- the prompt sampler: `sdw sample` as a child process ------------------------------------- */

static void show_png(state *s, const char *img);

/* Where the sampler writes: RUN/samples with a run, else ./samples (made
 * here). Absolute, so the log panel's path means something anywhere. */
static bool sampler_dir(state *s, char *dir, size_t cap) {
  char cwd[1024];
  if (s->model.run_dir[0])
    snprintf(dir, cap, "%s/samples", s->model.run_dir);
  else if (getcwd(cwd, sizeof cwd))
    snprintf(dir, cap, "%s/samples", cwd);
  else
    snprintf(dir, cap, "samples");
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    note(s, true, "sample: %.200s: %s", dir, strerror(errno));
    return false;
  }
  return true;
}

/* Starts `sdw sample` with the dialog's request (the fields, validated by
 * the form). Its own session (setsid): a viewer that exits, or a Ctrl-C at
 * the viewer's terminal, does not kill it half-way; it finishes and writes
 * its PNG. stdout and stderr go to DIR/sample.log (appended). */
static void sampler_start(state *s, const cJSON *req) {
  char dir[1100];
  if (!sampler_dir(s, dir, sizeof dir)) return;
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(req, "prompt");
  const cJSON *neg = cJSON_GetObjectItemCaseSensitive(req, "negative");
  const cJSON *steps = cJSON_GetObjectItemCaseSensitive(req, "steps");
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(req, "cfg");
  const cJSON *seed = cJSON_GetObjectItemCaseSensitive(req, "seed");
  bool ema = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(req, "ema"));
  if (!cJSON_IsString(prompt) || !cJSON_IsNumber(steps) || !cJSON_IsNumber(cfg)) return;
  char steps_s[32], cfg_s[32], seed_s[32], w_s[16], h_s[16], out[1200];
  snprintf(steps_s, sizeof steps_s, "%d", (int)steps->valuedouble);
  snprintf(cfg_s, sizeof cfg_s, "%.9g", cfg->valuedouble);
  /* An empty seed field: a random seed (sdw sample's -1), written into the
   * PNG's infotext. */
  snprintf(seed_s, sizeof seed_s, "%.0f", cJSON_IsNumber(seed) ? seed->valuedouble : -1.0);
  snprintf(w_s, sizeof w_s, "%d", s->opt.sample_w);
  snprintf(h_s, sizeof h_s, "%d", s->opt.sample_h);
  snprintf(out, sizeof out, "%s/", dir); /* a folder: NNNN_<prompt>.png */
  char *argv[24];
  int n = 0;
  argv[n++] = "sdw";
  argv[n++] = "sample";
  argv[n++] = "--model";
  argv[n++] = (char *)s->opt.model;
  argv[n++] = "--prompt";
  argv[n++] = prompt->valuestring;
  if (cJSON_IsString(neg) && neg->valuestring[0]) {
    argv[n++] = "--negative";
    argv[n++] = neg->valuestring;
  }
  argv[n++] = "--steps";
  argv[n++] = steps_s;
  argv[n++] = "--cfg";
  argv[n++] = cfg_s;
  argv[n++] = "--seed";
  argv[n++] = seed_s;
  if (!ema) argv[n++] = "--no-ema";
  if (s->opt.sample_w > 0) {
    argv[n++] = "-W";
    argv[n++] = w_s;
    argv[n++] = "-H";
    argv[n++] = h_s;
  }
  argv[n++] = "--out";
  argv[n++] = out;
  argv[n] = NULL;

  snprintf(s->sampler_log, sizeof s->sampler_log, "%s/sample.log", dir);
  int fd = open(s->sampler_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    note(s, true, "sample: %.200s: %s", s->sampler_log, strerror(errno));
    return;
  }
  struct stat st;
  s->sampler_log_start = fstat(fd, &st) == 0 ? (long)st.st_size : 0;
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    if (devnull >= 0) dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execv("/proc/self/exe", argv); /* the running binary, as for pipeline stages */
    _exit(127);
  }
  close(fd);
  if (devnull >= 0) close(devnull);
  if (pid < 0) {
    note(s, true, "sample: fork: %s", strerror(errno));
    return;
  }
  s->sampler_pid = pid;
  s->sampler_started = now_s();
  note(s, false, "sampling: \"%.160s\" (sdw sample, pid %d, log %.200s)", prompt->valuestring,
       (int)pid, s->sampler_log);
  s->sampler_note_time = s->view.message_time;
}

/* The lines the child wrote to the log since it started (malloc'd, NUL-
 * terminated; NULL when unreadable). */
static char *sampler_output(const state *s) {
  FILE *f = fopen(s->sampler_log, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, s->sampler_log_start, SEEK_SET) == 0) {
    size_t cap = 1 << 16, len = 0;
    buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len, f)) > 0) {
      len += k;
      if (len == cap) {
        /* a long log: keep its end, where the outcome is */
        memmove(buf, buf + cap / 2, cap / 2);
        len = cap / 2;
      }
    }
    if (buf) buf[len] = 0;
  }
  fclose(f);
  return buf;
}

/* The status line says "sampling…" while the child runs (unless another
 * message came in the last 3 s); its exit shows the PNG or the error. */
static void sampler_poll(state *s) {
  if (s->sampler_pid <= 0) return;
  int status;
  pid_t r = waitpid(s->sampler_pid, &status, WNOHANG);
  double t = now_s();
  if (r == 0) {
    if (s->view.message_time == s->sampler_note_time || t - s->view.message_time > 3) {
      sdw_tui_view_message(&s->view, false, t, "sampling\u2026 %.0fs", t - s->sampler_started);
      s->sampler_note_time = s->view.message_time;
    }
    return;
  }
  s->sampler_pid = 0;
  if (r < 0) return;
  char *text = sampler_output(s);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  /* sdw sample prints each file it wrote on stdout, its progress and errors
   * ("sdw: ...") on stderr: the first .png line is the image, the last
   * line the error. */
  char png[1200] = "", last[300] = "";
  for (char *line = text; line && *line;) {
    char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    if (len > 0) snprintf(last, sizeof last, "%.*s", (int)(len < 299 ? len : 299), line);
    if (!png[0] && len > 4 && len < sizeof png && memcmp(line + len - 4, ".png", 4) == 0 &&
        strncmp(line, "sdw:", 4) != 0)
      snprintf(png, sizeof png, "%.*s", (int)len, line);
    line = end ? end + 1 : line + len;
  }
  free(text);
  if (ok && png[0]) {
    note(s, false, "sample ready: %s", png);
    show_png(s, png);
    s->view.focus = SDW_PANEL_PREVIEW;
  } else if (ok) {
    note(s, true, "sample: sdw sample wrote no image (see %s)", s->sampler_log);
  } else {
    note(s, true, "sample failed (%s %d): %s", WIFEXITED(status) ? "status" : "signal",
         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), last[0] ? last : "no output");
  }
}

static void do_action(state *s, sdw_tui_action act) {
  switch (act) {
  case SDW_ACT_PAUSE_TOGGLE: {
    if (!job_reachable(s, "pause")) return;
    bool paused = strcmp(s->model.job.state, "paused") == 0;
    const char *cmd = paused ? "resume" : "pause";
    /* answered when the job's current step ends: minutes for a big model */
    if (send_request(s->socket_path, simple_request(cmd), 3600 * 1000, cmd))
      note(s, false, "%s requested", cmd);
    return;
  }
  case SDW_ACT_CHECKPOINT:
    if (!job_reachable(s, "checkpoint")) return;
    /* The reply comes after the file is written: minutes for a big model. */
    if (send_request(s->socket_path, simple_request("checkpoint"), 3600 * 1000, "checkpoint"))
      note(s, false, "checkpoint requested");
    return;
  case SDW_ACT_SAMPLE:
    if (s->opt.model) {
      /* The model's own sampler: no job needed. */
      if (s->sampler_pid > 0) {
        note(s, true, "sample: one is running already (pid %d)", (int)s->sampler_pid);
        return;
      }
    } else if (!job_reachable(s, "sample")) {
      return;
    }
    sdw_tui_sample_form_reset(&s->view.form);
    s->view.overlay = SDW_OVERLAY_SAMPLE;
    return;
  case SDW_ACT_STOP:
    if (!job_reachable(s, "stop")) return;
    s->view.overlay = SDW_OVERLAY_CONFIRM_STOP;
    return;
  case SDW_ACT_RUN_STAGE: {
    const char *stage = sdw_tui_pipeline_selected(&s->view, &s->model);
    if (!stage) return;
    if (!s->model.data_dir[0]) {
      note(s, true, "run %s: no data directory (sdw attach --data DIR)", stage);
      return;
    }
    for (int i = 0; i < s->model.stage_count; i++)
      if (strcmp(s->model.stages[i].name, stage) == 0 &&
          strcmp(s->model.stages[i].state, "running") == 0) {
        note(s, true, "%s is already running (pid %ld)", stage, s->model.stages[i].pid);
        return;
      }
    char err[300];
    pid_t pid = run_stage(stage, s->model.data_dir, err, sizeof err);
    if (pid < 0) {
      note(s, true, "run %s: %s", stage, err);
      return;
    }
    if (s->nstage_pids < 16) {
      s->stage_pids[s->nstage_pids] = pid;
      snprintf(s->stage_names[s->nstage_pids++], 32, "%s", stage);
    }
    note(s, false, "started sdw pipeline %s --data %s (pid %d, log %s/logs/%s.log)", stage,
         s->model.data_dir, (int)pid, s->model.data_dir, stage);
    s->model.last_manifest_scan = 0;
    return;
  }
  case SDW_ACT_DETACH: s->running = false; return;
  case SDW_ACT_REDRAW:
    clearok(curscr, TRUE);
    s->out.image_damaged[0] = s->out.image_damaged[1] = true;
    return;
  case SDW_ACT_RESIZE: return; /* the frame is redrawn at the new size anyway */
  default: sdw_tui_view_apply(&s->view, act, &s->model); return;
  }
}

static void handle_key(state *s, int key) {
  sdw_tui_view *v = &s->view;
  if (key == SDW_KEY_RESIZE) return;
  switch (v->overlay) {
  case SDW_OVERLAY_HELP: v->overlay = SDW_OVERLAY_NONE; return;
  case SDW_OVERLAY_CONFIRM_STOP:
    v->overlay = SDW_OVERLAY_NONE;
    if (key == 'y' || key == 'Y') {
      if (send_request(s->socket_path, simple_request("stop"), 3600 * 1000, "stop"))
        note(s, false, "stop requested");
    } else {
      note(s, false, "stop cancelled");
    }
    return;
  case SDW_OVERLAY_SAMPLE: {
    sdw_form_result r = sdw_tui_sample_form_key(&v->form, key);
    if (r == SDW_FORM_CANCEL) {
      v->overlay = SDW_OVERLAY_NONE;
    } else if (r == SDW_FORM_SUBMIT) {
      cJSON *req = sdw_tui_sample_form_request(&v->form);
      if (req && s->opt.model) {
        v->overlay = SDW_OVERLAY_NONE;
        sampler_start(s, req);
        cJSON_Delete(req);
      } else if (req) {
        v->overlay = SDW_OVERLAY_NONE;
        if (send_request(s->socket_path, req, 60000, "sample")) {
          note(s, false, "sample requested: %.200s", v->form.field[SDW_FIELD_PROMPT].text);
          s->awaiting_sample = true;
        }
      }
    }
    return;
  }
  default: break;
  }
  do_action(s, sdw_tui_key_action(key));
}

static void handle_event(state *s, const cJSON *ev) {
  sdw_run_model_apply_event(&s->model, ev);
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(ev, "event");
  const cJSON *path = cJSON_GetObjectItemCaseSensitive(ev, "path");
  if (!cJSON_IsString(e)) return;
  if (strcmp(e->valuestring, "sample") == 0 && cJSON_IsString(path)) {
    note(s, false, "sample ready: %s", path->valuestring);
    /* The sample this viewer asked for: show it. */
    if (s->awaiting_sample) s->view.focus = SDW_PANEL_PREVIEW;
    s->awaiting_sample = false;
  } else if (strcmp(e->valuestring, "checkpoint") == 0 && cJSON_IsString(path))
    sdw_tui_view_message(&s->view, false, now_s(), "checkpoint written: %s", path->valuestring);
  else if (strcmp(e->valuestring, "state") == 0)
    s->last_poll = 0; /* reread job.json now */
}

static void refresh_preview(state *s) {
  const char *img = s->model.latest_image;
  if (!img[0]) return;
  if (strcmp(img, s->loaded_image) == 0 && s->model.latest_image_mtime == s->loaded_mtime) return;
  snprintf(s->loaded_image, sizeof s->loaded_image, "%s", img);
  s->loaded_mtime = s->model.latest_image_mtime;
  show_png(s, img);
}

/* Loads img into the preview panel, with its prompt. */
static void show_png(state *s, const char *img) {
  if (sdw_preview_load_png(&s->preview, img) == SDW_OK) {
    snprintf(s->view.preview_path, sizeof s->view.preview_path, "%s", img);
    s->view.preview = &s->preview;
    /* The prompt from the AUTOMATIC1111 infotext ("parameters": the prompt,
     * then "Negative prompt: ..." and "Steps: ..." lines). */
    s->view.preview_prompt[0] = 0;
    sdw_png_image info = {0};
    if (sdw_png_read(img, 0, &info) == SDW_OK) {
      const char *p = sdw_png_image_text(&info, "parameters");
      if (p) {
        size_t n = strcspn(p, "\n");
        if (n >= sizeof s->view.preview_prompt) n = sizeof s->view.preview_prompt - 1;
        memcpy(s->view.preview_prompt, p, n);
        s->view.preview_prompt[n] = 0;
      }
      sdw_png_image_free(&info);
    }
    s->out.image_damaged[0] = s->out.image_damaged[1] = true;
  }
  /* A PNG still being written fails to decode: tried again when it changes. */
}

static void emit_image(const sdw_preview *pv, sdw_preview_mode mode, sdw_tui_rect r,
                       const sdw_termcaps *caps) {
  sdw_preview *p = (sdw_preview *)pv; /* render caches into the preview */
  if (sdw_preview_render(p, mode, r.w, r.h, caps->cell_w, caps->cell_h) != SDW_OK) return;
  char *bytes = NULL;
  size_t n = 0;
  if (sdw_preview_emit(p, r.y, r.x, &bytes, &n) == SDW_OK) {
    size_t off = 0;
    while (off < n) {
      ssize_t k = write(STDOUT_FILENO, bytes + off, n - off);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) break;
      off += (size_t)k;
    }
  }
  free(bytes);
}

/* The selected stage's sample image for the report, decoded when the stage,
 * the index or its manifest changed. */
static void refresh_stage_image(state *s) {
  sdw_tui_view *v = &s->view;
  if (!v->stage_report || v->focus != SDW_PANEL_PIPELINE) return;
  const char *name = sdw_tui_pipeline_selected(v, &s->model);
  const sdw_run_stage *st = NULL;
  for (int i = 0; name && i < s->model.stage_count; i++)
    if (strcmp(s->model.stages[i].name, name) == 0) st = &s->model.stages[i];
  char key[sizeof s->stage_key];
  snprintf(key, sizeof key, "%.64s/%d/%.6f/%.6f", name ? name : "", v->stage_image,
           st ? st->updated_at : 0.0, st ? st->finished_at : 0.0);
  if (strcmp(key, s->stage_key) == 0) return;
  snprintf(s->stage_key, sizeof s->stage_key, "%s", key);
  v->stage_preview = NULL;
  s->out.image_damaged[1] = true;
  if (!st || !st->manifest) {
    snprintf(v->stage_image_label, sizeof v->stage_image_label, "no images: %s has not run",
             name ? name : "the stage");
    return;
  }
  sdw_image img = {0};
  char label[512];
  if (sdw_tui_stage_image(s->model.data_dir, st->manifest, v->stage_image, &img, label,
                          sizeof label) != SDW_OK) {
    snprintf(v->stage_image_label, sizeof v->stage_image_label, "%s", sdw_last_error());
    if (v->stage_image > 0) {
      /* Past the last image: stay on the last one. */
      v->stage_image--;
      s->stage_key[0] = 0;
      refresh_stage_image(s);
    }
    return;
  }
  if (sdw_preview_set_pixels(&s->stage_pv, img.pixels, img.width, img.height, 3) == SDW_OK) {
    v->stage_preview = &s->stage_pv;
    const char *base = strrchr(label, '/');
    snprintf(v->stage_image_label, sizeof v->stage_image_label, "%.400s %dx%d",
             base ? base + 1 : label, img.width, img.height);
  }
  sdw_image_free(&img);
}

static void draw_frame(state *s) {
  int w = COLS, h = LINES;
  if (s->cur.w != w || s->cur.h != h) sdw_tui_grid_resize(&s->cur, w, h);
  refresh_stage_image(s);
  sdw_tui_view_draw(&s->cur, &s->view, &s->model, now_s());
  /* Where the images go this frame (none under an overlay or in text mode). */
  sdw_tui_layout l = sdw_tui_layout_compute(w, h, s->view.enabled, s->view.focus);
  sdw_tui_rect img[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
  const sdw_preview *pv[2] = {s->view.preview, s->view.stage_preview};
  bool images_on = s->view.preview_mode != SDW_PREVIEW_TEXT && s->view.overlay == SDW_OVERLAY_NONE;
  if (images_on && pv[0]) img[0] = sdw_panel_preview_image_rect(l.panel[SDW_PANEL_PREVIEW]);
  if (images_on && pv[1])
    img[1] = sdw_panel_pipeline_image_rect(l.panel[SDW_PANEL_PIPELINE], &s->view);
  for (int i = 0; i < 2; i++) {
    sdw_tui_rect old = s->out.image_rect[i];
    bool moved = old.x != img[i].x || old.y != img[i].y || old.w != img[i].w || old.h != img[i].h;
    if (moved && old.w > 0 && old.h > 0 && old.y < h) {
      /* The terminal still shows the old image there; curses does not know. */
      wredrawln(stdscr, old.y, old.y + old.h <= h ? old.h : h - old.y);
    }
    s->out.image_rect[i] = img[i];
    if (moved) s->out.image_damaged[i] = true;
  }
  sdw_tui_grid_diff(&s->prev, &s->cur, emit_cell, &s->out);
  sdw_tui_grid_copy(&s->prev, &s->cur);
  wnoutrefresh(stdscr);
  doupdate();
  for (int i = 0; i < 2; i++) {
    if (img[i].w > 0 && img[i].h > 0 && s->out.image_damaged[i])
      emit_image(pv[i], s->view.preview_mode, img[i], &s->caps);
    s->out.image_damaged[i] = false;
  }
}

static void poll_model(state *s, double t) {
  sdw_run_model_poll(&s->model, t);
  s->last_poll = t;
  refresh_preview(s);
}

static void reap_children(state *s) {
  for (int i = 0; i < s->nstage_pids; i++) {
    int status;
    pid_t r = waitpid(s->stage_pids[i], &status, WNOHANG);
    if (r != s->stage_pids[i]) continue;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok)
      note(s, false, "pipeline %s finished", s->stage_names[i]);
    else
      note(s, true, "pipeline %s exited with status %d (see %s/logs/%s.log)", s->stage_names[i],
           WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), s->model.data_dir,
           s->stage_names[i]);
    s->stage_pids[i] = s->stage_pids[--s->nstage_pids];
    memcpy(s->stage_names[i], s->stage_names[s->nstage_pids], 32);
    i--;
    s->model.last_manifest_scan = 0;
  }
}

static void collect_outcomes(state *s) {
  pthread_mutex_lock(&requests.lock);
  int n = requests.count;
  char msgs[8][300];
  bool err[8];
  memcpy(msgs, requests.done, sizeof msgs);
  memcpy(err, requests.error, sizeof err);
  requests.count = 0;
  pthread_mutex_unlock(&requests.lock);
  for (int i = 0; i < n; i++)
    note(s, err[i], "%s", msgs[i]);
  if (n) s->last_poll = 0;
}

static void socket_events(state *s, double t) {
  if (!s->model.run_dir[0]) return;
  if (!s->client) {
    s->client = subscribe_take();
    s->model.connected = s->client != NULL;
    if (!s->client && t >= s->next_connect && sdw_run_job_active_state(s->model.job.state)) {
      subscribe_start();
      s->next_connect = t + 2.0;
    }
  }
  if (!s->client) return;
  for (int i = 0; i < 1000; i++) {
    cJSON *ev = NULL;
    if (sdw_control_next_event(s->client, 0, &ev) != SDW_OK) {
      /* The job went away: keep the last state, say so, try again later. */
      sdw_control_client_close(s->client);
      s->client = NULL;
      s->model.connected = false;
      s->next_connect = t + 2.0;
      s->last_poll = 0;
      break;
    }
    if (!ev) break;
    handle_event(s, ev);
    cJSON_Delete(ev);
  }
}

static void load_theme(state *s) {
  const char *name = s->opt.theme;
  char from_config[64];
  if (!name || !*name) name = getenv("SDW_THEME");
  if (!name || !*name) {
    sdw_tui_theme_from_config(from_config, sizeof from_config);
    name = from_config;
  }
  bool no_color = sdw_tui_no_color_env() || s->caps.color == SDW_COLOR_NONE;
  if (!sdw_tui_theme_load(name, no_color, &s->out.theme))
    snprintf(s->exit_note, sizeof s->exit_note, "unknown theme '%s': using the default", name);
}

int sdw_tui_run(const sdw_tui_options *o) {
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    fprintf(stderr, "sdw: the workbench needs a terminal on stdin and stdout\n");
    return 1;
  }
  setlocale(LC_ALL, "");
  state *s = calloc(1, sizeof *s);
  if (!s) {
    fprintf(stderr, "sdw: out of memory\n");
    return 1;
  }
  s->opt = *o;
  sdw_run_model_init(&s->model, o->run_dir, o->data_dir);
  if (!s->model.run_dir[0] && !getcwd(s->model.runs_root, sizeof s->model.runs_root))
    s->model.runs_root[0] = 0;
  if (s->model.run_dir[0] &&
      sdw_control_socket_path(s->model.run_dir, s->socket_path, sizeof s->socket_path) != SDW_OK)
    s->socket_path[0] = 0;
  snprintf(sub.socket_path, sizeof sub.socket_path, "%s", s->socket_path);
  sdw_tui_view_init(&s->view);
  s->view.focus = o->focus;
  s->view.title = s->model.run_dir[0]    ? s->model.run_dir
                  : s->model.data_dir[0] ? s->model.data_dir
                  : o->model             ? o->model /* the sampler's, when nothing else */
                                         : s->model.data_dir;
  sdw_tui_devices_init(&s->devices, NULL);
  s->view.devices = &s->devices;
  sdw_preview_init(&s->preview);
  sdw_preview_init(&s->stage_pv);

  sdw_termcaps_from_env(&s->caps);
  uint8_t typed[256];
  size_t ntyped = 0;
  if (o->probe && s->caps.color != SDW_COLOR_NONE)
    sdw_termcaps_probe(STDIN_FILENO, STDOUT_FILENO, 300, &s->caps, typed, sizeof typed, &ntyped);
  s->view.preview_mode = sdw_preview_choose(&s->caps);
  load_theme(s);
  const char *term = getenv("TERM");
  const char *ctype = setlocale(LC_CTYPE, NULL);
  bool utf8 = ctype && (strstr(ctype, "UTF-8") || strstr(ctype, "utf8") || strstr(ctype, "UTF8"));
  s->out.ascii = !utf8;
  /* Half blocks are UTF-8 too; sixel is plain 7-bit and stays. */
  if (!utf8 && s->view.preview_mode != SDW_PREVIEW_SIXEL) s->view.preview_mode = SDW_PREVIEW_TEXT;
  /* The Linux console's fonts have box drawing but no braille. */
  s->out.braille_ok = !(term && strncmp(term, "linux", 5) == 0);

  install_signals();
  atexit(restore_terminal);
  /* newterm, not initscr: an unknown or unusable TERM is an error message
   * here rather than curses exiting the process. */
  SCREEN *screen = newterm(NULL, stdout, stdin);
  if (!screen || tigetstr("cup") == NULL || tigetstr("cup") == (char *)-1) {
    if (screen) {
      endwin();
      delscreen(screen);
    }
    fprintf(stderr,
            "sdw: the workbench cannot drive this terminal (TERM=%s): it needs cursor "
            "addressing; try TERM=xterm-256color\n",
            term ? term : "");
    return 1;
  }
  set_term(screen);
  curses_active = 1;
  cbreak();
  noecho();
  nonl();
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  set_escdelay(25);
  curs_set(0);
  setup_colors(&s->out);
  /* Keys typed while the terminal was probed, given back in order. */
  for (size_t i = ntyped; i > 0; i--)
    ungetch(typed[i - 1]);

  s->running = true;
  double t = now_s();
  poll_model(s, t);
  sdw_tui_devices_sample(&s->devices, s->model.job.pid);
  s->last_devices = t;
  while (s->running && !quit_signal) {
    t = now_s();
    socket_events(s, t);
    collect_outcomes(s);
    reap_children(s);
    sampler_poll(s);
    if (t - s->last_poll >= 0.5) poll_model(s, t);
    if (t - s->last_devices >= 1.0) {
      sdw_tui_devices_sample(&s->devices, s->model.job_alive ? s->model.job.pid : 0);
      s->last_devices = t;
    }
    draw_frame(s);
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {-1, POLLIN, 0}};
    if (s->client) fds[1].fd = sdw_control_client_fd(s->client);
    int rc = poll(fds, 2, 250);
    if (rc > 0 && (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) && !(fds[0].revents & POLLIN))
      break; /* the terminal is gone */
    wint_t wch;
    int r;
    int keys = 0;
    while (keys < 256 && (r = get_wch(&wch)) != ERR) {
      int key = translate_key(r, wch);
      keys++;
      if (key == SDW_KEY_RESIZE) {
        clearok(curscr, TRUE);
        s->out.image_damaged[0] = s->out.image_damaged[1] = true;
      }
      if (key >= 0) handle_key(s, key);
      if (!s->running) break;
    }
  }
  restore_terminal();
  if (quit_signal == SIGHUP || quit_signal == SIGTERM) {
    /* nothing to print: there may be no terminal */
  } else if (s->model.run_dir[0]) {
    printf("sdw: detached from %s", s->model.run_dir);
    if (sdw_run_job_active_state(s->model.job.state) && s->model.job_alive)
      printf(" (the job goes on; sdw attach %s comes back)", s->model.run_dir);
    printf("\n");
  }
  if (s->sampler_pid > 0 && quit_signal != SIGHUP)
    fprintf(stderr, "sdw: the sample goes on (pid %d; its log: %s)\n", (int)s->sampler_pid,
            s->sampler_log);
  if (s->exit_note[0]) fprintf(stderr, "sdw: %s\n", s->exit_note);
  sdw_control_client_close(s->client);
  sdw_preview_free(&s->preview);
  sdw_preview_free(&s->stage_pv);
  sdw_tui_devices_free(&s->devices);
  sdw_tui_view_free(&s->view);
  sdw_run_model_free(&s->model);
  sdw_tui_grid_free(&s->cur);
  sdw_tui_grid_free(&s->prev);
  free(s);
  /* A signal that ended the viewer shows in the status, as the shell's
   * convention has it (SIGINT 130, SIGTERM 143, SIGHUP 129). */
  return quit_signal ? 128 + quit_signal : 0;
}
