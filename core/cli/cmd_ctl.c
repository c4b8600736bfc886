/* `sdw ctl`: drives a running job through its control socket.
 *
 *   sdw ctl [--json] [--timeout MS] RUN status|pause|resume|checkpoint|stop|events
 *   sdw ctl RUN sample PROMPT [--negative TEXT] [--steps N] [--cfg X] [--seed N]
 *                             [--ema|--no-ema] [--wait]
 *
 * Exit status: 0 done, 1 the job refused or failed the request, 2 usage, 3
 * no job is running in RUN. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/cli/cli.h"
#include "core/train/control.h"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_NO_JOB = 3 };

static void print_help(FILE *out) {
  fprintf(out, "usage: sdw ctl [--json] [--timeout MS] RUN COMMAND\n"
               "\n"
               "Talks to the job running in the run directory RUN (sdw train) through its\n"
               "control socket RUN/control.sock. RUN may also name the socket itself.\n"
               "\n"
               "commands:\n"
               "  status              the job's state, step, loss, learning rate, speed, ETA\n"
               "  pause               stop taking steps (the job stays in memory)\n"
               "  resume              continue after pause\n"
               "  checkpoint          write a checkpoint now; prints its path once written\n"
               "  sample PROMPT       queue a sample image with the current weights; options:\n"
               "    --negative TEXT   negative prompt\n"
               "    --steps N         sampler steps (1-1000; the job's default otherwise)\n"
               "    --cfg X           classifier-free guidance scale (0-100)\n"
               "    --seed N          noise seed (0-2^53)\n"
               "    --ema, --no-ema   sample with the EMA weights or the raw ones\n"
               "    --wait            wait until the image is written and print its path\n"
               "  stop                checkpoint, then end the job\n"
               "  events              follow the job's events (metrics, log lines, state\n"
               "                      changes, checkpoints, samples) until Ctrl-C or the\n"
               "                      job ends\n"
               "\n"
               "options:\n"
               "  --json              print the job's replies and events as raw JSON lines\n"
               "  --timeout MS        how long to wait for a reply (default 10000; pause,\n"
               "                      resume, checkpoint, stop and sample --wait wait as long\n"
               "                      as it takes: the job acts on them between steps)\n"
               "  --help              this text\n"
               "\n"
               "Exit status: 0 done, 1 the job refused or failed the request, 2 usage error,\n"
               "3 no job is running in RUN. The protocol is in man sdw-ctl.\n");
}

static int usage(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: ctl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw ctl --help' shows the usage\n");
  return EXIT_USAGE;
}

/* ---- printing ------------------------------------------------------------------ */

static double num(const cJSON *o, const char *k, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}
static const char *text(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void format_duration(double s, char *out, size_t cap) {
  if (!(s >= 0)) {
    snprintf(out, cap, "-");
    return;
  }
  long t = (long)(s + 0.5);
  if (t < 60)
    snprintf(out, cap, "%lds", t);
  else if (t < 3600)
    snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
  else if (t < 86400)
    snprintf(out, cap, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else
    snprintf(out, cap, "%ldd%02ldh", t / 86400, (t / 3600) % 24);
}

static void print_json(const cJSON *v) {
  char *s = cJSON_PrintUnformatted(v);
  if (s) printf("%s\n", s);
  free(s);
  fflush(stdout);
}

static void print_status(const cJSON *st) {
  const char *state = text(st, "state");
  printf("state    %s\n", state ? state : "?");
  double step = num(st, "step", -1), total = num(st, "total_steps", -1);
  if (step >= 0) {
    if (total > 0)
      printf("step     %.0f / %.0f (%.1f%%)\n", step, total, 100.0 * step / total);
    else
      printf("step     %.0f\n", step);
  }
  if (num(st, "epoch", -1) >= 0) printf("epoch    %.0f\n", num(st, "epoch", 0));
  const cJSON *loss = cJSON_GetObjectItemCaseSensitive(st, "loss");
  if (cJSON_IsNumber(loss)) printf("loss     %.6g\n", loss->valuedouble);
  const cJSON *lr = cJSON_GetObjectItemCaseSensitive(st, "lr");
  if (cJSON_IsNumber(lr)) printf("lr       %.3e\n", lr->valuedouble);
  const cJSON *gn = cJSON_GetObjectItemCaseSensitive(st, "grad_norm");
  if (cJSON_IsNumber(gn)) printf("gradnorm %.4g\n", gn->valuedouble);
  const cJSON *ips = cJSON_GetObjectItemCaseSensitive(st, "img_per_s");
  if (cJSON_IsNumber(ips)) printf("speed    %.3g img/s\n", ips->valuedouble);
  const cJSON *eta = cJSON_GetObjectItemCaseSensitive(st, "eta_s");
  if (cJSON_IsNumber(eta)) {
    char d[32];
    format_duration(eta->valuedouble, d, sizeof d);
    printf("eta      %s\n", d);
  }
  const cJSON *mem = cJSON_GetObjectItemCaseSensitive(st, "mem_mb");
  if (cJSON_IsNumber(mem)) printf("memory   %.0f MiB\n", mem->valuedouble);
  const char *ck = text(st, "last_checkpoint");
  if (ck && *ck) printf("checkpt  %s\n", ck);
  const char *err = text(st, "error");
  if (err && *err) printf("error    %s\n", err);
  fflush(stdout);
}

/* One human line per event. */
static void print_event(const cJSON *ev) {
  const char *kind = text(ev, "event");
  if (!kind) kind = "?";
  if (strcmp(kind, "metric") == 0) {
    const cJSON *vl = cJSON_GetObjectItemCaseSensitive(ev, "val_loss");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "skipped"))) {
      const char *why = text(ev, "reason");
      printf("step %.0f skipped: %s\n", num(ev, "step", 0), why ? why : "non-finite");
    } else if (cJSON_IsNumber(vl)) {
      printf("step %.0f epoch %.0f val_loss %.6g\n", num(ev, "step", 0), num(ev, "epoch", 0),
             vl->valuedouble);
    } else {
      printf("step %.0f epoch %.0f loss %.6g lr %.3e grad_norm %.4g %.3g img/s %.0f ms\n",
             num(ev, "step", 0), num(ev, "epoch", 0), num(ev, "loss", 0), num(ev, "lr", 0),
             num(ev, "grad_norm", 0), num(ev, "img_per_s", 0), num(ev, "step_ms", 0));
    }
  } else if (strcmp(kind, "log") == 0) {
    const char *lvl = text(ev, "level"), *msg = text(ev, "message");
    printf("%s %s\n", lvl ? lvl : "INFO", msg ? msg : "");
  } else if (strcmp(kind, "state") == 0) {
    const char *s = text(ev, "state");
    printf("state %s\n", s ? s : "?");
  } else if (strcmp(kind, "checkpoint") == 0 || strcmp(kind, "sample") == 0) {
    const char *p = text(ev, "path");
    printf("%s %s\n", kind, p ? p : "");
  } else {
    print_json(ev);
    return;
  }
  fflush(stdout);
}

/* ---- the run directory -------------------------------------------------------------- */

/* RUN is a directory (its control.sock) or the socket itself. */
static int socket_of(const char *run, char *out, size_t cap) {
  struct stat st;
  if (stat(run, &st) == 0 && S_ISSOCK(st.st_mode)) {
    if (strlen(run) >= cap) return -1;
    strcpy(out, run);
    return 0;
  }
  return sdw_control_socket_path(run, out, cap) == SDW_OK ? 0 : -1;
}

/* Why nobody answers, from RUN/job.json when there is one. */
static void explain_no_job(const char *run) {
  char path[4096];
  snprintf(path, sizeof path, "%s/job.json", run);
  void *data = NULL;
  size_t size = 0;
  struct stat st;
  if (stat(run, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "sdw: ctl: %s is not a run directory\n", run);
    return;
  }
  if (sdw_read_file(path, &data, &size) != SDW_OK) {
    fprintf(stderr, "sdw: ctl: no job is running in %s (no job.json: not a run directory?)\n", run);
    return;
  }
  cJSON *job = cJSON_ParseWithLength(data, size);
  free(data);
  const char *state = text(job, "state");
  fprintf(stderr, "sdw: ctl: no job is running in %s (job.json: state %s, pid %.0f)\n", run,
          state ? state : "unknown", num(job, "pid", 0));
  cJSON_Delete(job);
}

/* ---- the command ----------------------------------------------------------------------- */

typedef struct ctl_opts {
  bool json, wait;
  int timeout_ms; /* -2: the command's default */
  const char *run, *cmd, *prompt, *negative;
  int64_t steps, seed;
  double cfg;
  bool have_steps, have_seed, have_cfg;
  int ema; /* -1 unset */
} ctl_opts;

static int parse_args(int argc, char **argv, ctl_opts *o) {
  const char *pos[3] = {0};
  int npos = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--json") == 0) {
      o->json = true;
    } else if (strcmp(a, "--wait") == 0) {
      o->wait = true;
    } else if (strcmp(a, "--ema") == 0) {
      o->ema = 1;
    } else if (strcmp(a, "--no-ema") == 0) {
      o->ema = 0;
    } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--negative") == 0 ||
               strcmp(a, "--steps") == 0 || strcmp(a, "--cfg") == 0 || strcmp(a, "--seed") == 0) {
      if (!val) return usage("%s needs a value", a);
      i++;
      int64_t v;
      if (strcmp(a, "--timeout") == 0) {
        if (!sdw_parse_i64(val, 0, 86400000, &v))
          return usage("--timeout takes milliseconds from 0 to 86400000, not '%s'", val);
        o->timeout_ms = (int)v;
      } else if (strcmp(a, "--negative") == 0) {
        o->negative = val;
      } else if (strcmp(a, "--steps") == 0) {
        if (!sdw_parse_i64(val, 1, 1000, &o->steps))
          return usage("--steps takes an integer from 1 to 1000, not '%s'", val);
        o->have_steps = true;
      } else if (strcmp(a, "--seed") == 0) {
        if (!sdw_parse_i64(val, 0, (int64_t)1 << 53, &o->seed))
          return usage("--seed takes an integer from 0 to 2^53, not '%s'", val);
        o->have_seed = true;
      } else {
        if (!sdw_parse_double(val, 0, 100, &o->cfg))
          return usage("--cfg takes a number from 0 to 100, not '%s'", val);
        o->have_cfg = true;
      }
    } else if (a[0] == '-' && a[1] == '-' && a[2] != 0) {
      return usage("unknown option '%s'", a);
    } else {
      if (npos == 3) return usage("unexpected argument '%s'", a);
      pos[npos++] = a;
    }
  }
  if (npos < 2) return usage("%s", npos == 0 ? "missing RUN and COMMAND" : "missing COMMAND");
  o->run = pos[0];
  o->cmd = pos[1];
  static const char *const cmds[] = {"status", "pause", "resume", "checkpoint",
                                     "sample", "stop",  "events"};
  bool known = false;
  for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++)
    known |= strcmp(o->cmd, cmds[k]) == 0;
  if (!known) return usage("unknown command '%s'", o->cmd);
  bool sample = strcmp(o->cmd, "sample") == 0;
  if (sample) {
    if (npos < 3) return usage("%s", "sample needs a PROMPT");
    o->prompt = pos[2];
  } else if (npos > 2) {
    return usage("unexpected argument '%s'", pos[2]);
  }
  if (!sample &&
      (o->negative || o->have_steps || o->have_cfg || o->have_seed || o->ema >= 0 || o->wait))
    return usage("'%s' takes no sample options", o->cmd);
  return 0;
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

/* Follows events until Ctrl-C or the job ends. stop_on_sample: return after
 * the first "sample" event (sample --wait). */
static int follow(sdw_control_client *c, const ctl_opts *o, bool stop_on_sample) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: poll returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  while (!interrupted) {
    cJSON *ev = NULL;
    sdw_status st = sdw_control_next_event(c, 1000, &ev);
    if (st == SDW_ERR_INTERRUPTED) break;
    if (st != SDW_OK) {
      if (stop_on_sample) {
        fprintf(stderr, "sdw: ctl: the job ended before the sample was written\n");
        return EXIT_REFUSED;
      }
      if (!o->json) printf("the job ended\n");
      return 0;
    }
    if (!ev) continue;
    const char *kind = text(ev, "event");
    const char *evp = text(ev, "prompt");
    /* Another client's sample names another prompt: not ours. */
    bool done = stop_on_sample && kind && strcmp(kind, "sample") == 0 &&
                (!evp || strcmp(evp, o->prompt) == 0);
    if (done) {
      const char *p = text(ev, "path"), *err = text(ev, "error");
      if (o->json)
        print_json(ev);
      else if (p && !err)
        printf("%s\n", p);
      fflush(stdout);
      int r = 0;
      if (err || !p) {
        fprintf(stderr, "sdw: ctl: sample: %s\n", err ? err : "the job wrote no image");
        r = EXIT_REFUSED;
      }
      cJSON_Delete(ev);
      return r;
    }
    if (!stop_on_sample) {
      if (o->json)
        print_json(ev);
      else
        print_event(ev);
    }
    cJSON_Delete(ev);
  }
  return 130; /* Ctrl-C */
}

int sdw_cmd_ctl(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      print_help(stdout);
      return 0;
    }
  ctl_opts o = {.timeout_ms = -2, .ema = -1};
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc;

  char sock[4096];
  if (socket_of(o.run, sock, sizeof sock) != 0) {
    fprintf(stderr, "sdw: ctl: %s: path too long\n", o.run);
    return EXIT_USAGE;
  }
  sdw_control_client *c = NULL;
  sdw_status st = sdw_control_connect(sock, &c);
  if (st == SDW_ERR_NOT_FOUND || st == SDW_ERR_IO) {
    explain_no_job(o.run);
    return EXIT_NO_JOB;
  }
  if (st != SDW_OK) {
    sdw_cli_report_error("ctl");
    return EXIT_REFUSED;
  }
  bool events = strcmp(o.cmd, "events") == 0;
  bool sample = strcmp(o.cmd, "sample") == 0;
  /* The job answers status and sample at once (from its control thread);
   * pause, resume, checkpoint and stop when its current step has ended,
   * which on a CPU can take minutes: those wait as long as it takes. */
  bool slow = strcmp(o.cmd, "checkpoint") == 0 || strcmp(o.cmd, "stop") == 0 ||
              strcmp(o.cmd, "pause") == 0 || strcmp(o.cmd, "resume") == 0;
  int timeout = o.timeout_ms != -2 ? o.timeout_ms : slow ? -1 : 10000;

  cJSON *req = cJSON_CreateObject();
  cJSON *reply = NULL;
  if (events || (sample && o.wait)) {
    /* Subscribe first, so the sample event cannot slip past. */
    cJSON_AddStringToObject(req, "cmd", "subscribe");
    st = sdw_control_call(c, req, timeout, &reply);
    if (st == SDW_OK && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
      const char *e = text(reply, "error");
      fprintf(stderr, "sdw: ctl: subscribe: %s\n", e ? e : "refused");
      rc = EXIT_REFUSED;
    }
    cJSON_Delete(reply);
    reply = NULL;
    cJSON_Delete(req);
    req = cJSON_CreateObject();
    if (st != SDW_OK) goto transport_error;
    if (rc) goto done;
    if (events) {
      rc = follow(c, &o, false);
      goto done;
    }
  }
  cJSON_AddStringToObject(req, "cmd", o.cmd);
  if (sample) {
    cJSON_AddStringToObject(req, "prompt", o.prompt);
    if (o.negative) cJSON_AddStringToObject(req, "negative", o.negative);
    if (o.have_steps) cJSON_AddNumberToObject(req, "steps", (double)o.steps);
    if (o.have_cfg) cJSON_AddNumberToObject(req, "cfg", o.cfg);
    if (o.have_seed) cJSON_AddNumberToObject(req, "seed", (double)o.seed);
    if (o.ema >= 0) cJSON_AddBoolToObject(req, "ema", o.ema);
  }
  st = sdw_control_call(c, req, timeout, &reply);
  if (st != SDW_OK) goto transport_error;
  if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
    if (o.json) print_json(reply);
    const char *e = text(reply, "error");
    fprintf(stderr, "sdw: ctl: %s: %s\n", o.cmd, e ? e : "refused");
    rc = EXIT_REFUSED;
    goto done;
  }
  if (o.json && !(sample && o.wait)) {
    print_json(reply);
  } else if (strcmp(o.cmd, "status") == 0) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(reply, "status");
    print_status(cJSON_IsObject(s) ? s : reply);
  } else if (strcmp(o.cmd, "checkpoint") == 0) {
    const char *p = text(reply, "path");
    printf("%s\n", p ? p : "checkpoint written");
  } else if (sample && !o.wait) {
    printf("queued\n");
  } else if (!sample) {
    printf("%s\n", strcmp(o.cmd, "pause") == 0    ? "paused"
                   : strcmp(o.cmd, "resume") == 0 ? "resumed"
                                                  : "stopping");
  }
  if (sample && o.wait) rc = follow(c, &o, true);
  goto done;

transport_error:
  if (st == SDW_ERR_IO && strstr(sdw_last_error(), "did not") == NULL) {
    fprintf(stderr, "sdw: ctl: %s: the job went away (%s)\n", o.cmd, sdw_last_error());
    rc = EXIT_NO_JOB;
  } else {
    fprintf(stderr, "sdw: ctl: %s: %s\n", o.cmd, sdw_last_error());
    rc = EXIT_REFUSED;
  }
done:
  fflush(stdout);
  cJSON_Delete(req);
  cJSON_Delete(reply);
  sdw_control_client_close(c);
  return rc;
}
