/* The training job (sdw_trainer_run in trainer.h): the engine inside a run
 * directory, with the control socket, checkpoints, validation and samples.
 * Rank 0 owns every file and the socket; other ranks only step, and learn
 * about a stop through a broadcast before every step.
 *
 * Threads on rank 0: the main thread trains; a control thread owns the
 * control socket (the only thread that touches the server), so requests are
 * answered while a step runs (a full-size CPU step takes minutes): status
 * from the last snapshot (job_lock), sample queued at once (ctl_lock);
 * pause, resume, checkpoint and stop are queued to the main thread, which
 * acts on them at its next step boundary and hands the reply back (deferred
 * replies, control.h). Events (state, log, metric, checkpoint, sample) and
 * those replies go through one FIFO that the control thread sends, in
 * order, at most CTL_POLL_MS after they were made. A heartbeat thread
 * keeps job.json fresh during long steps. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "core/train/checkpoint.h"
#include "core/train/control.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"

#ifndef SDW_VERSION
#define SDW_VERSION "unknown"
#endif

enum { MAX_QUEUE = 16, MAX_CMDS = 32, CTL_POLL_MS = 20 };

enum { CMD_PAUSE, CMD_RESUME, CMD_CHECKPOINT, CMD_STOP };

/* A command for the main thread and its pending reply. */
typedef struct ctl_cmd {
  int kind;
  sdw_control_deferred *reply;
} ctl_cmd;

/* What the control thread sends: an event to subscribers (reply NULL) or
 * the deferred reply body of a command. */
typedef struct out_item {
  cJSON *body;
  sdw_control_deferred *reply;
  struct out_item *next;
} out_item;

typedef struct sample_req {
  char *prompt, *negative;
  int steps;
  double cfg;
  uint64_t seed;
  bool ema;
} sample_req;

typedef struct job {
  const sdw_train_config *cfg;
  const sdw_trainer_run_options *opt;
  sdw_run_dir dir;
  bool rank0, dir_open;
  sdw_control_server *srv;
  sdw_trainer *t;
  const char *state;
  char host[256];
  char last_ckpt[128];
  char error[1024];
  double loss, lr, grad_norm, img_per_s, step_s_avg;
  double last_job_write;
  /* heartbeat: a thread rewrites job.json (the last snapshot with a fresh
   * "updated") when a long step keeps the loop from doing it for 5 s */
  pthread_mutex_t job_lock;
  pthread_cond_t job_cond;
  pthread_t heartbeat;
  bool heartbeat_on, heartbeat_quit;
  cJSON *snapshot; /* under job_lock: the status a "status" request gets */
  bool paused, stop_req;
  bool no_echo; /* events.log only (the caller prints the final error) */
  int64_t last_saved_step;
  int step_delay_ms; /* SDW_TRAIN_STEP_DELAY_MS: a slow step, for tests */
  /* the control thread and what it shares with the main thread (ctl_lock) */
  pthread_mutex_t ctl_lock;
  pthread_cond_t ctl_cond; /* a command or a sample arrived */
  pthread_t ctl_thread;
  bool ctl_on, ctl_quit;
  ctl_cmd cmds[MAX_CMDS];
  int ncmds;
  out_item *out_head, *out_tail;
  sample_req queue[MAX_QUEUE];
  int nqueue;
} job;

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mem_mb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_maxrss / 1024.0;
}

static void add_num(cJSON *o, const char *k, double v) {
  if (isfinite(v))
    cJSON_AddNumberToObject(o, k, v);
  else
    cJSON_AddNullToObject(o, k);
}

static cJSON *job_status(const job *j) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "format", "sdw-job/1");
  cJSON_AddNumberToObject(o, "pid", (double)getpid());
  cJSON_AddStringToObject(o, "host", j->host);
  cJSON_AddStringToObject(o, "state", j->state);
  const sdw_trainer *t = j->t;
  const int64_t step = t ? sdw_trainer_global_step(t) : 0,
                total = t ? sdw_trainer_total_steps(t) : 0;
  cJSON_AddNumberToObject(o, "step", (double)step);
  cJSON_AddNumberToObject(o, "epoch", t ? (double)sdw_trainer_epoch(t) : 0);
  cJSON_AddNumberToObject(o, "total_steps", (double)total);
  add_num(o, "loss", j->loss);
  add_num(o, "lr", j->lr);
  add_num(o, "grad_norm", j->grad_norm);
  add_num(o, "img_per_s", j->img_per_s);
  add_num(o, "eta_s", j->step_s_avg > 0 ? (double)(total - step) * j->step_s_avg : NAN);
  add_num(o, "mem_mb", mem_mb());
  cJSON_AddStringToObject(o, "last_checkpoint", j->last_ckpt);
  cJSON_AddStringToObject(o, "error", j->error);
  cJSON_AddStringToObject(o, "sdw_version", SDW_VERSION);
  cJSON_AddNumberToObject(o, "updated", (double)time(NULL));
  return o;
}

/* The snapshot "status" answers, without writing job.json. */
static void update_snapshot(job *j) {
  if (!j->rank0 || !j->dir_open) return;
  cJSON *o = job_status(j);
  pthread_mutex_lock(&j->job_lock);
  cJSON_Delete(j->snapshot);
  j->snapshot = o;
  pthread_mutex_unlock(&j->job_lock);
}

static void write_job(job *j) {
  if (!j->rank0 || !j->dir_open) return;
  cJSON *o = job_status(j);
  pthread_mutex_lock(&j->job_lock);
  if (sdw_run_dir_job(&j->dir, o) != SDW_OK)
    fprintf(stderr, "sdw: train: cannot write job.json: %s\n", sdw_last_error());
  cJSON_Delete(j->snapshot);
  j->snapshot = o;
  j->last_job_write = wall_now();
  pthread_mutex_unlock(&j->job_lock);
}

/* Seconds since job.json was last written. */
static double job_age(job *j) {
  pthread_mutex_lock(&j->job_lock);
  const double age = wall_now() - j->last_job_write;
  pthread_mutex_unlock(&j->job_lock);
  return age;
}

static void *heartbeat_main(void *arg) {
  job *j = arg;
  pthread_mutex_lock(&j->job_lock);
  while (!j->heartbeat_quit) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&j->job_cond, &j->job_lock, &ts);
    if (j->heartbeat_quit || !j->snapshot || wall_now() - j->last_job_write < 5) continue;
    cJSON *u = cJSON_GetObjectItemCaseSensitive(j->snapshot, "updated");
    if (u) cJSON_SetNumberValue(u, (double)time(NULL));
    sdw_run_dir_job(&j->dir, j->snapshot);
    j->last_job_write = wall_now();
  }
  pthread_mutex_unlock(&j->job_lock);
  return NULL;
}

/* --- the control thread's FIFO ------------------------------------------------------ */

/* Queues body (owned) for the control thread: an event to subscribers
 * (reply NULL) or the reply to a deferred command. Without a control
 * thread (before it starts, after it ended) the caller owns the server and
 * it is sent at once. */
static void out_push(job *j, cJSON *body, sdw_control_deferred *reply) {
  pthread_mutex_lock(&j->ctl_lock);
  if (j->ctl_on) {
    out_item *it = calloc(1, sizeof *it);
    if (it) {
      it->body = body;
      it->reply = reply;
      if (j->out_tail)
        j->out_tail->next = it;
      else
        j->out_head = it;
      j->out_tail = it;
    } else {
      /* out of memory: dropped (a NULL server frees the ticket and body;
       * the server itself belongs to the control thread) */
      sdw_control_server_reply(NULL, reply, body);
    }
    pthread_mutex_unlock(&j->ctl_lock);
    return;
  }
  pthread_mutex_unlock(&j->ctl_lock);
  if (reply) {
    sdw_control_server_reply(j->srv, reply, body);
  } else {
    if (j->srv && body) sdw_control_server_broadcast(j->srv, body);
    cJSON_Delete(body);
  }
}

static void emit_event(void *user, const cJSON *event) {
  job *j = user;
  if (!j->srv) return;
  cJSON *e = cJSON_Duplicate(event, true);
  if (e) out_push(j, e, NULL);
}

/* Control thread: sends what the FIFO holds, in order. */
static void out_drain(job *j) {
  pthread_mutex_lock(&j->ctl_lock);
  out_item *it = j->out_head;
  j->out_head = j->out_tail = NULL;
  pthread_mutex_unlock(&j->ctl_lock);
  while (it) {
    out_item *next = it->next;
    if (it->reply) {
      sdw_control_server_reply(j->srv, it->reply, it->body);
    } else {
      sdw_control_server_broadcast(j->srv, it->body);
      cJSON_Delete(it->body);
    }
    free(it);
    it = next;
  }
}

static void set_state(job *j, const char *state) {
  if (j->state && strcmp(j->state, state) == 0) return;
  j->state = state;
  write_job(j);
  if (j->srv) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "state");
    cJSON_AddStringToObject(e, "state", state);
    cJSON_AddNumberToObject(e, "step", j->t ? (double)sdw_trainer_global_step(j->t) : 0);
    out_push(j, e, NULL);
  }
}

static void job_log(job *j, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_log(job *j, const char *level, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!j->rank0) return;
  if (j->dir_open) sdw_run_dir_event(&j->dir, level, "%s", msg);
  if (!j->no_echo && (!j->opt->quiet || strcmp(level, "INFO") != 0))
    fprintf(stderr, "sdw: train: %s\n", msg);
}

static void trainer_log(void *user, int level, const char *message) {
  job_log(user, level >= 2 ? "ERROR" : level == 1 ? "WARN" : "INFO", "%s", message);
}

static void warn_cb(void *user, const char *message) { job_log(user, "WARN", "%s", message); }

/* --- checkpoints, validation, samples ------------------------------------------ */

static sdw_status do_checkpoint(job *j) {
  const int64_t step = sdw_trainer_global_step(j->t);
  if (!j->rank0 || step == j->last_saved_step) return SDW_OK;
  const char *prev = j->state;
  set_state(j, "checkpointing");
  char dir[4200], path[4300];
  sdw_run_dir_file(&j->dir, "checkpoints", dir, sizeof dir);
  sdw_checkpoint_path(dir, step, path, sizeof path);
  const double t0 = wall_now();
  sdw_status st = sdw_trainer_save(j->t, path);
  const char *name = strrchr(path, '/') + 1;
  if (st == SDW_OK) st = sdw_checkpoint_set_latest(dir, name);
  if (st == SDW_OK) {
    sdw_checkpoint_prune(dir, j->cfg->keep_last, j->cfg->keep_every);
    snprintf(j->last_ckpt, sizeof j->last_ckpt, "checkpoints/%s", name);
    j->last_saved_step = step;
    job_log(j, "INFO", "checkpoint %s (%.2f s)", j->last_ckpt, wall_now() - t0);
    if (j->srv) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "event", "checkpoint");
      cJSON_AddStringToObject(e, "path", j->last_ckpt);
      cJSON_AddNumberToObject(e, "step", (double)step);
      out_push(j, e, NULL);
    }
  } else {
    job_log(j, "ERROR", "checkpoint at step %lld failed: %s", (long long)step, sdw_last_error());
  }
  set_state(j, prev);
  return st;
}

static sdw_status write_png(const char *path, const uint8_t *rgb, int w, int h, const char *info) {
  const sdw_png_text texts[] = {{"parameters", info ? info : ""}, {"Software", "sdw " SDW_VERSION}};
  return sdw_png_write(path, rgb, w, h, 3, texts, 2);
}

/* The seed's validation: the val_prompts (the seed's 4 by default), seeds
 * val_seed + i, a 1 x n grid with torchvision's 2-pixel padding. */
static void do_validation(job *j) {
  if (!j->rank0) return;
  const int64_t step = sdw_trainer_global_step(j->t);
  const char *prev = j->state;
  double vl;
  sdw_status st = sdw_trainer_val_loss(j->t, &vl);
  if (st == SDW_OK) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "step", (double)step);
    cJSON_AddNumberToObject(m, "epoch", (double)sdw_trainer_epoch(j->t));
    add_num(m, "val_loss", vl);
    cJSON_AddNumberToObject(m, "time", wall_now());
    sdw_run_dir_metric(&j->dir, m, true);
    cJSON_Delete(m);
    if (j->dir.tb) {
      sdw_tfevents_scalar(j->dir.tb, "train/val_loss", step, wall_now(), (float)vl);
      sdw_tfevents_flush(j->dir.tb);
    }
    job_log(j, "INFO", "validation loss %.6f at step %lld", vl, (long long)step);
  } else if (st != SDW_ERR_NOT_FOUND) {
    job_log(j, "WARN", "validation loss failed: %s", sdw_last_error());
  }
  if (!j->cfg->vae[0] || strcmp(j->cfg->text_encoder, "none") == 0) return;
  char buf[SDW_TRAIN_VAL_PROMPTS_BYTES];
  const char *prompts[SDW_TRAIN_VAL_PROMPTS_MAX];
  int n = 0;
  if (sdw_train_config_val_prompts(j->cfg, buf, sizeof buf, prompts, &n) != SDW_OK) {
    job_log(j, "WARN", "validation grid skipped: %s", sdw_last_error()); /* validated at start */
    return;
  }
  set_state(j, "sampling");
  uint64_t seeds[SDW_TRAIN_VAL_PROMPTS_MAX];
  for (int i = 0; i < n; i++)
    seeds[i] = j->cfg->val_seed + (uint64_t)i;
  uint8_t *rgb = NULL;
  int w = 0, h = 0;
  char *info[SDW_TRAIN_VAL_PROMPTS_MAX] = {0};
  st = sdw_trainer_sample(j->t, prompts, NULL, seeds, n, j->cfg->val_steps, j->cfg->val_cfg, true,
                          j->opt->interrupt, &rgb, &w, &h, info);
  if (st == SDW_OK) {
    const int pad = 2, gw = n * w + (n + 1) * pad, gh = h + 2 * pad;
    uint8_t *grid = calloc((size_t)gw * gh * 3, 1);
    if (grid) {
      for (int i = 0; i < n; i++)
        for (int y = 0; y < h; y++)
          memcpy(grid + ((size_t)(y + pad) * gw + pad + i * (w + pad)) * 3,
                 rgb + ((size_t)i * h * w + (size_t)y * w) * 3, (size_t)w * 3);
      char path[4300], rel[128];
      snprintf(rel, sizeof rel, "samples/val-step-%08lld.png", (long long)step);
      sdw_run_dir_file(&j->dir, rel, path, sizeof path);
      st = write_png(path, grid, gw, gh, info[0]);
      if (st == SDW_OK) job_log(j, "INFO", "validation grid %s", rel);
      free(grid);
    } else {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the grid");
    }
  }
  if (st != SDW_OK) job_log(j, "WARN", "validation grid failed: %s", sdw_last_error());
  for (int i = 0; i < n; i++)
    free(info[i]);
  free(rgb);
  set_state(j, prev);
}

/* Takes the oldest queued sample request into *q (false: none). */
static bool pop_sample(job *j, sample_req *q) {
  pthread_mutex_lock(&j->ctl_lock);
  const bool any = j->nqueue > 0;
  if (any) {
    *q = j->queue[0];
    memmove(j->queue, j->queue + 1, (size_t)(--j->nqueue) * sizeof *q);
  }
  pthread_mutex_unlock(&j->ctl_lock);
  return any;
}

static void run_samples(job *j) {
  const char *prev = j->state;
  sample_req q;
  while (pop_sample(j, &q)) {
    set_state(j, "sampling");
    const int64_t step = sdw_trainer_global_step(j->t);
    const char *prompts[1] = {q.prompt}, *negs[1] = {q.negative ? q.negative : ""};
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    char *info[1] = {NULL}, rel[160], path[4300];
    snprintf(rel, sizeof rel, "samples/sample-step-%08lld-%llu.png", (long long)step,
             (unsigned long long)q.seed);
    sdw_status st = sdw_trainer_sample(j->t, prompts, negs, &q.seed, 1, q.steps, q.cfg, q.ema,
                                       j->opt->interrupt, &rgb, &w, &h, info);
    if (st == SDW_OK) {
      sdw_run_dir_file(&j->dir, rel, path, sizeof path);
      st = write_png(path, rgb, w, h, info[0]);
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "sample");
    cJSON_AddStringToObject(e, "prompt", q.prompt);
    cJSON_AddNumberToObject(e, "seed", (double)q.seed);
    cJSON_AddNumberToObject(e, "step", (double)step);
    if (st == SDW_OK) {
      cJSON_AddStringToObject(e, "path", rel);
      job_log(j, "INFO", "sample %s", rel);
    } else {
      cJSON_AddStringToObject(e, "error", sdw_last_error());
      job_log(j, "WARN", "sample failed: %s", sdw_last_error());
    }
    if (j->srv)
      out_push(j, e, NULL);
    else
      cJSON_Delete(e);
    free(info[0]);
    free(rgb);
    free(q.prompt);
    free(q.negative);
  }
  set_state(j, prev);
}

/* --- the control handler (on the control thread) ----------------------------------- */

static cJSON *handle(void *user, const char *cmd, const cJSON *req) {
  job *j = user;
  if (strcmp(cmd, "status") == 0) {
    pthread_mutex_lock(&j->job_lock);
    cJSON *st = j->snapshot ? cJSON_Duplicate(j->snapshot, true) : NULL;
    pthread_mutex_unlock(&j->job_lock);
    if (!st) return sdw_control_reply_error("the job has no status yet");
    cJSON *r = sdw_control_reply_ok();
    cJSON_AddItemToObject(r, "status", st);
    return r;
  }
  const int kind = strcmp(cmd, "pause") == 0        ? CMD_PAUSE
                   : strcmp(cmd, "resume") == 0     ? CMD_RESUME
                   : strcmp(cmd, "checkpoint") == 0 ? CMD_CHECKPOINT
                   : strcmp(cmd, "stop") == 0       ? CMD_STOP
                                                    : -1;
  if (kind >= 0) {
    /* acted on by the main thread at its next step boundary; it replies */
    pthread_mutex_lock(&j->ctl_lock);
    cJSON *r = NULL;
    if (j->ncmds == MAX_CMDS) {
      r = sdw_control_reply_error("too many commands waiting for the job's next step");
    } else {
      sdw_control_deferred *d = sdw_control_server_defer(j->srv, req);
      if (!d) {
        r = sdw_control_reply_error("out of memory");
      } else {
        j->cmds[j->ncmds++] = (ctl_cmd){.kind = kind, .reply = d};
        pthread_cond_signal(&j->ctl_cond);
      }
    }
    pthread_mutex_unlock(&j->ctl_lock);
    return r;
  }
  if (strcmp(cmd, "sample") == 0) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(req, "negative");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(req, "steps");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(req, "cfg");
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(req, "seed");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(req, "ema");
    if (!cJSON_IsString(p)) return sdw_control_reply_error("sample needs a \"prompt\" string");
    if (n && !cJSON_IsNull(n) && !cJSON_IsString(n))
      return sdw_control_reply_error("\"negative\" must be a string");
    if (s && (!cJSON_IsNumber(s) || s->valuedouble < 1 || s->valuedouble > 1000 ||
              s->valuedouble != floor(s->valuedouble)))
      return sdw_control_reply_error("\"steps\" must be an integer in 1..1000");
    if (c && (!cJSON_IsNumber(c) || !(c->valuedouble >= 0 && c->valuedouble <= 1000)))
      return sdw_control_reply_error("\"cfg\" must be a number in 0..1000");
    if (sd && (!cJSON_IsNumber(sd) || sd->valuedouble < 0 || sd->valuedouble > 9007199254740992.0 ||
               sd->valuedouble != floor(sd->valuedouble)))
      return sdw_control_reply_error("\"seed\" must be a non-negative integer");
    if (e && !cJSON_IsBool(e)) return sdw_control_reply_error("\"ema\" must be true or false");
    if (!j->cfg->vae[0] || strcmp(j->cfg->text_encoder, "none") == 0)
      return sdw_control_reply_error(
          "this run cannot sample: its config has no vae (a VAE, or pixels) or no text encoder");
    sample_req q = {
        .prompt = strdup(p->valuestring),
        .negative = cJSON_IsString(n) ? strdup(n->valuestring) : NULL,
        .steps = s ? (int)s->valuedouble : j->cfg->sample_steps,
        .cfg = c ? c->valuedouble : j->cfg->sample_cfg,
        .seed = sd ? (uint64_t)sd->valuedouble : j->cfg->val_seed,
        .ema = e ? cJSON_IsTrue(e) : true,
    };
    if (!q.prompt) {
      free(q.negative);
      return sdw_control_reply_error("out of memory");
    }
    /* queued at once: "queued" is the whole reply; the image comes as an event */
    pthread_mutex_lock(&j->ctl_lock);
    const bool full = j->nqueue == MAX_QUEUE;
    if (!full) {
      j->queue[j->nqueue++] = q;
      pthread_cond_signal(&j->ctl_cond);
    }
    pthread_mutex_unlock(&j->ctl_lock);
    if (full) {
      free(q.prompt);
      free(q.negative);
      return sdw_control_reply_error("the sample queue is full");
    }
    cJSON *r = sdw_control_reply_ok();
    cJSON_AddBoolToObject(r, "queued", true);
    return r;
  }
  return sdw_control_reply_error("unknown command '%s'", cmd);
}

static void *ctl_main(void *arg) {
  job *j = arg;
  for (;;) {
    pthread_mutex_lock(&j->ctl_lock);
    const bool quit = j->ctl_quit;
    pthread_mutex_unlock(&j->ctl_lock);
    /* the FIFO is sent after every poll, so CTL_POLL_MS bounds an event's delay */
    if (sdw_control_server_poll(j->srv, quit ? 0 : CTL_POLL_MS, handle, j) != SDW_OK)
      usleep(CTL_POLL_MS * 1000); /* the listening socket failed: keep sending events */
    out_drain(j);
    if (quit) break;
  }
  return NULL;
}

static void ctl_start(job *j) {
  if (!j->srv) return;
  pthread_mutex_lock(&j->ctl_lock);
  j->ctl_on = pthread_create(&j->ctl_thread, NULL, ctl_main, j) == 0;
  pthread_mutex_unlock(&j->ctl_lock);
  if (!j->ctl_on) job_log(j, "WARN", "no control thread: the control socket is not served");
}

/* Ends the control thread after it sent everything queued; the caller owns
 * the server again. Commands still waiting are refused. */
static void ctl_stop(job *j) {
  pthread_mutex_lock(&j->ctl_lock);
  const bool on = j->ctl_on;
  j->ctl_quit = true;
  pthread_mutex_unlock(&j->ctl_lock);
  if (on) pthread_join(j->ctl_thread, NULL);
  pthread_mutex_lock(&j->ctl_lock);
  j->ctl_on = false;
  pthread_mutex_unlock(&j->ctl_lock);
  out_drain(j);
  for (int i = 0; i < j->ncmds; i++)
    sdw_control_server_reply(j->srv, j->cmds[i].reply,
                             sdw_control_reply_error("the job ended before acting on it"));
  j->ncmds = 0;
}

/* --- commands, on the main thread at step boundaries ---------------------------------- */

static bool pop_cmd(job *j, ctl_cmd *c) {
  pthread_mutex_lock(&j->ctl_lock);
  const bool any = j->ncmds > 0;
  if (any) {
    *c = j->cmds[0];
    memmove(j->cmds, j->cmds + 1, (size_t)(--j->ncmds) * sizeof *c);
  }
  pthread_mutex_unlock(&j->ctl_lock);
  return any;
}

static void run_commands(job *j) {
  ctl_cmd c;
  while (pop_cmd(j, &c)) {
    cJSON *r = NULL;
    switch (c.kind) {
    case CMD_PAUSE:
      if (!j->paused)
        job_log(j, "INFO", "paused at step %lld", (long long)sdw_trainer_global_step(j->t));
      j->paused = true;
      set_state(j, "paused");
      r = sdw_control_reply_ok();
      break;
    case CMD_RESUME:
      if (j->paused) job_log(j, "INFO", "resumed");
      j->paused = false;
      set_state(j, "running");
      r = sdw_control_reply_ok();
      break;
    case CMD_CHECKPOINT:
      /* between steps: the file is written before the reply */
      if (sdw_trainer_global_step(j->t) != j->last_saved_step && do_checkpoint(j) != SDW_OK) {
        r = sdw_control_reply_error("checkpoint failed: %s", sdw_last_error());
      } else {
        r = sdw_control_reply_ok();
        cJSON_AddStringToObject(r, "path", j->last_ckpt);
      }
      break;
    default: /* CMD_STOP */
      j->stop_req = true;
      job_log(j, "INFO", "stop requested: checkpoint, then exit");
      r = sdw_control_reply_ok();
      break;
    }
    out_push(j, r, c.reply);
  }
}

static bool samples_waiting(job *j) {
  pthread_mutex_lock(&j->ctl_lock);
  const bool any = j->nqueue > 0;
  pthread_mutex_unlock(&j->ctl_lock);
  return any;
}

/* While paused: waits up to ms for a command or a sample request. */
static void wait_control(job *j, int ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_nsec += (long)ms * 1000000L;
  ts.tv_sec += ts.tv_nsec / 1000000000L;
  ts.tv_nsec %= 1000000000L;
  pthread_mutex_lock(&j->ctl_lock);
  if (j->ncmds == 0 && j->nqueue == 0) pthread_cond_timedwait(&j->ctl_cond, &j->ctl_lock, &ts);
  pthread_mutex_unlock(&j->ctl_lock);
}

static bool interrupted(const job *j) {
  return j->opt->interrupt && atomic_load(j->opt->interrupt);
}

/* --- the loop ------------------------------------------------------------------------ */

static void log_metric(job *j, const sdw_trainer_report *r, bool flush) {
  cJSON *m = cJSON_CreateObject();
  cJSON_AddNumberToObject(m, "step", (double)r->step);
  cJSON_AddNumberToObject(m, "epoch", (double)r->epoch);
  add_num(m, "loss", r->loss);
  add_num(m, "lr", r->lr);
  add_num(m, "grad_norm", r->grad_norm);
  add_num(m, "img_per_s", r->img_per_s);
  add_num(m, "step_ms", r->step_ms);
  add_num(m, "mem_mb", mem_mb());
  cJSON_AddNumberToObject(m, "time", wall_now());
  sdw_run_dir_metric(&j->dir, m, flush);
  cJSON_Delete(m);
  if (j->dir.tb) {
    const double now = wall_now();
    sdw_tfevents_scalar(j->dir.tb, "train/loss", r->step, now, (float)r->loss);
    sdw_tfevents_scalar(j->dir.tb, "train/lr", r->step, now, (float)r->lr);
    sdw_tfevents_scalar(j->dir.tb, "train/grad_norm", r->step, now, (float)r->grad_norm);
    sdw_tfevents_scalar(j->dir.tb, "train/img_per_s", r->step, now, (float)r->img_per_s);
    sdw_tfevents_scalar(j->dir.tb, "train/step_ms", r->step, now, (float)r->step_ms);
    sdw_tfevents_scalar(j->dir.tb, "train/mem_mb", r->step, now, (float)mem_mb());
    if (flush) sdw_tfevents_flush(j->dir.tb);
  }
}

static sdw_status loop(job *j) {
  const sdw_train_config *c = j->cfg;
  while (!sdw_trainer_done(j->t)) {
    int stop = 0;
    if (j->rank0) {
      run_commands(j);
      while (j->paused && !j->stop_req && !interrupted(j)) {
        if (samples_waiting(j)) run_samples(j);
        wait_control(j, 200);
        run_commands(j);
        if (job_age(j) >= 5) write_job(j);
      }
      if (samples_waiting(j)) run_samples(j);
      stop = j->stop_req || interrupted(j);
    }
    if (sdw_trainer_world(j->t) > 1) {
      /* every rank learns rank 0's decision before the collective step */
      sdw_trainer_sync_flag(j->t, &stop);
    }
    if (stop) {
      set_state(j, "stopping");
      SDW_TRY(do_checkpoint(j));
      set_state(j, "stopped");
      job_log(j, "INFO", "stopped at step %lld", (long long)sdw_trainer_global_step(j->t));
      return sdw_fail(SDW_ERR_INTERRUPTED, "stopped at step %lld (checkpoint %s)",
                      (long long)sdw_trainer_global_step(j->t), j->last_ckpt);
    }
    if (j->step_delay_ms > 0) usleep((useconds_t)j->step_delay_ms * 1000);
    sdw_trainer_report r;
    SDW_TRY(sdw_trainer_step(j->t, &r));
    const double ss = r.step_ms / 1e3;
    j->step_s_avg = j->step_s_avg > 0 ? 0.9 * j->step_s_avg + 0.1 * ss : ss;
    if (!r.skipped) {
      j->loss = r.loss;
      j->grad_norm = r.grad_norm;
    }
    j->lr = r.lr;
    j->img_per_s = r.img_per_s;
    if (j->rank0) {
      if (r.skipped) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddNumberToObject(m, "step", (double)r.step);
        cJSON_AddBoolToObject(m, "skipped", true);
        cJSON_AddStringToObject(m, "reason",
                                isfinite(r.loss) ? "non-finite gradient" : "non-finite loss");
        cJSON_AddNumberToObject(m, "time", wall_now());
        sdw_run_dir_metric(&j->dir, m, true);
        cJSON_Delete(m);
        job_log(j, "WARN", "step %lld skipped: non-finite %s (%lld in a row, limit %d)",
                (long long)r.step, isfinite(r.loss) ? "gradient" : "loss",
                (long long)r.nonfinite_run, c->max_nonfinite);
      } else if (r.step % c->log_every == 0 || r.step == 1 || sdw_trainer_done(j->t)) {
        log_metric(j, &r, true);
        if (!j->opt->quiet)
          fprintf(stderr, "sdw: train: step %lld/%lld epoch %lld loss %.5f lr %.3g %.1f img/s\n",
                  (long long)r.step, (long long)sdw_trainer_total_steps(j->t), (long long)r.epoch,
                  r.loss, r.lr, r.img_per_s);
      }
    }
    if (r.nonfinite_run >= c->max_nonfinite) {
      snprintf(j->error, sizeof j->error,
               "%lld non-finite steps in a row: stopped; the last good checkpoint is %s",
               (long long)r.nonfinite_run, j->last_ckpt[0] ? j->last_ckpt : "(none)");
      j->no_echo = true; /* the caller prints it */
      job_log(j, "ERROR", "%s", j->error);
      set_state(j, "failed");
      return sdw_fail(SDW_ERR_INTERNAL, "%s", j->error);
    }
    const bool last = sdw_trainer_done(j->t);
    bool saved = false;
    if (c->save_steps > 0 && r.step % c->save_steps == 0) {
      SDW_TRY(do_checkpoint(j));
      saved = true;
    }
    if (r.epoch_end) {
      if ((c->save_every > 0 && r.epoch % c->save_every == 0) || last) {
        if (!saved) SDW_TRY(do_checkpoint(j));
        saved = true;
      }
      if ((c->val_every > 0 && r.epoch % c->val_every == 0) || last) do_validation(j);
    }
    if (j->rank0) {
      if (job_age(j) >= 1)
        write_job(j);
      else
        update_snapshot(j); /* status answers the step just taken */
    }
  }
  SDW_TRY(do_checkpoint(j));
  return SDW_OK;
}

sdw_status sdw_trainer_run(const sdw_train_config *cfg, const char *run_dir,
                           const sdw_trainer_run_options *opt) {
  job *j = calloc(1, sizeof *j);
  if (!j) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  j->cfg = cfg;
  j->opt = opt;
  pthread_mutex_init(&j->job_lock, NULL);
  pthread_cond_init(&j->job_cond, NULL);
  pthread_mutex_init(&j->ctl_lock, NULL);
  pthread_cond_init(&j->ctl_cond, NULL);
  /* Testing knob: every step takes this much longer (the control thread
   * must answer during it; tests/cli/ctl_slow_step.sh). */
  const char *delay = getenv("SDW_TRAIN_STEP_DELAY_MS");
  if (delay) j->step_delay_ms = atoi(delay);
  j->state = "starting";
  j->last_saved_step = -1;
  j->loss = j->lr = j->grad_norm = j->img_per_s = NAN;
  gethostname(j->host, sizeof j->host - 1);
  sdw_allreduce *ar = NULL;
  sdw_status st = sdw_allreduce_init(cfg->allreduce, &ar);
  if (st != SDW_OK) {
    free(j);
    return st;
  }
  j->rank0 = sdw_allreduce_rank(ar) == 0;
  if (j->rank0) {
    st = sdw_mkdir_p(run_dir);
    char sock[4200];
    if (st == SDW_OK) st = sdw_control_socket_path(run_dir, sock, sizeof sock);
    /* the socket first: a live job owning RUN refuses before any file changes */
    if (st == SDW_OK) st = sdw_control_server_open(sock, &j->srv);
    if (st == SDW_OK) st = sdw_run_dir_open(&j->dir, run_dir);
    if (st == SDW_OK) {
      j->dir_open = true;
      j->dir.emit = emit_event;
      j->dir.emit_user = j;
      char path[4300];
      sdw_run_dir_file(&j->dir, "config.ini", path, sizeof path);
      char *text = opt->config_text ? NULL : sdw_train_config_format(cfg);
      const char *t = opt->config_text ? opt->config_text : text;
      st = t ? sdw_atomic_write(path, t, strlen(t)) : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "oom");
      free(text);
    }
    if (st == SDW_OK) {
      write_job(j);
      ctl_start(j); /* status is answered from here on, also while the model loads */
      job_log(j, "INFO", "job %d on %s starting in %s", (int)getpid(), j->host, run_dir);
    }
  }
  if (st == SDW_OK) st = sdw_trainer_create(cfg, ar, trainer_log, j, &j->t);
  if (st == SDW_OK) {
    /* auto-resume from the newest complete checkpoint (every rank reads it) */
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    sdw_checkpoint_state s;
    sdw_safetensors *ck = NULL;
    sdw_status rs = sdw_checkpoint_find_resume(dir, sdw_trainer_params(j->t), path, sizeof path, &s,
                                               &ck, j->rank0 ? warn_cb : NULL, j);
    if (rs == SDW_OK) {
      st = sdw_trainer_restore(j->t, ck, &s);
      sdw_safetensors_close(ck);
      if (st == SDW_OK) {
        j->last_saved_step = s.step;
        snprintf(j->last_ckpt, sizeof j->last_ckpt, "checkpoints/%s", strrchr(path, '/') + 1);
        j->lr = s.lr;
        if (j->rank0 && sdw_run_dir_truncate_metrics(&j->dir, s.step) != SDW_OK)
          job_log(j, "WARN", "metrics.jsonl: %s", sdw_last_error());
        job_log(j, "INFO", "resumed from %s: step %lld, epoch %lld, position %lld", j->last_ckpt,
                (long long)s.step, (long long)s.epoch, (long long)s.position);
      }
    } else {
      job_log(j, "INFO", "no checkpoint in %s: a fresh run", dir);
    }
  }
  if (st == SDW_OK && j->rank0 && j->dir_open)
    j->heartbeat_on = pthread_create(&j->heartbeat, NULL, heartbeat_main, j) == 0;
  if (st == SDW_OK) {
    set_state(j, "running");
    st = loop(j);
    if (st == SDW_OK) {
      set_state(j, "finished");
      job_log(j, "INFO", "finished at step %lld", (long long)sdw_trainer_global_step(j->t));
    }
  }
  if (st != SDW_OK && st != SDW_ERR_INTERRUPTED && strcmp(j->state, "failed") != 0) {
    snprintf(j->error, sizeof j->error, "%s", sdw_last_error());
    j->no_echo = true;
    job_log(j, "ERROR", "%s", j->error);
    set_state(j, "failed");
  }
  if (j->heartbeat_on) {
    pthread_mutex_lock(&j->job_lock);
    j->heartbeat_quit = true;
    pthread_cond_signal(&j->job_cond);
    pthread_mutex_unlock(&j->job_lock);
    pthread_join(j->heartbeat, NULL);
  }
  /* keep the error text for the caller across the cleanup */
  char err[1024];
  snprintf(err, sizeof err, "%s", sdw_last_error());
  ctl_stop(j);
  for (int i = 0; i < j->nqueue; i++) {
    free(j->queue[i].prompt);
    free(j->queue[i].negative);
  }
  sdw_trainer_free(j->t);
  sdw_allreduce_free(ar);
  sdw_control_server_close(j->srv);
  if (j->dir_open) sdw_run_dir_close(&j->dir);
  cJSON_Delete(j->snapshot);
  pthread_mutex_destroy(&j->job_lock);
  pthread_cond_destroy(&j->job_cond);
  pthread_mutex_destroy(&j->ctl_lock);
  pthread_cond_destroy(&j->ctl_cond);
  free(j);
  if (st != SDW_OK) sdw_fail(st, "%s", err);
  return st;
}
