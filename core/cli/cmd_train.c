/* `sdw train`: runs a training job in a run directory (core/train/trainer.h),
 * in the foreground or detached, and exports trained weights.
 *
 *   sdw train --config FILE --run RUN [--set KEY=VALUE]... [--detach|--no-tui] [--quiet]
 *   sdw train --run RUN                  (continue RUN with RUN/config.ini)
 *
 * At a terminal (stdin and stdout both ttys) without --detach or --no-tui,
 * the job is started detached and the workbench (tui/app.h) opens on it;
 * q leaves the job running. Anything else runs the job in the foreground.
 *   sdw train --print-config [--config FILE] [--set KEY=VALUE]...
 *   sdw train --export-ema RUN|CHECKPOINT OUT     (and --export: raw weights)
 *
 * Exit status: 0 finished (or stopped through the control socket), 1 failed,
 * 2 usage, 130 / 143 after SIGINT / SIGTERM (a checkpoint is written first). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "core/cli/cli.h"
#include "core/cli/demo_model.h"
#include "core/cli/local_ranks.h"
#include "core/model/unet.h"
#include "core/train/checkpoint.h"
#include "core/train/control.h"
#include "core/train/train_config.h"
#include "core/train/trainer.h"
#include "tui/app.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };

static void print_help(FILE *out) {
  fprintf(out, "usage: sdw train --config FILE --run RUN [--set KEY=VALUE]... [--detach|--no-tui]\n"
               "                 [--quiet]\n"
               "       sdw train --run RUN [--set KEY=VALUE]...   (continue with RUN/config.ini)\n"
               "       sdw train --print-config [--config FILE] [--set KEY=VALUE]...\n"
               "       sdw train --export-ema RUN|CHECKPOINT OUT\n"
               "       sdw train --export RUN|CHECKPOINT OUT\n"
               "\n"
               "Trains the UNet on a latent store (sdw pipeline encode) as the seed's train.py\n"
               "does, in the run directory RUN: config.ini, job.json, metrics.jsonl, events.log,\n"
               "TensorBoard events, checkpoints/ and samples/ (see sdw-formats(5)). A run resumes\n"
               "from its newest complete checkpoint by itself, exactly where it stopped. While it\n"
               "runs, sdw ctl RUN status|pause|resume|checkpoint|sample|stop drives it.\n"
               "\n"
               "options:\n"
               "  --config FILE       the configuration (INI key = value; every key and its\n"
               "                      default in sdw.conf(5))\n"
               "  --run RUN           the run directory (created when missing)\n"
               "  --set KEY=VALUE     override one configuration key (repeatable)\n"
               "  --detach            run in the background, immune to hangups, output in\n"
               "                      RUN/train.log; prints the run directory and the pid\n"
               "  --no-tui            at a terminal, run in the foreground with progress lines\n"
               "                      instead of starting the job detached and opening the\n"
               "                      workbench on it (sdw attach; q leaves the job running);\n"
               "                      without a terminal that is what happens anyway\n"
               "  --quiet             no progress lines (events.log still has everything)\n"
               "  --print-config      print the resolved configuration and exit\n"
               "  --export-ema SRC OUT  write the EMA weights of SRC (a run directory: its latest\n"
               "                      checkpoint, or a checkpoint file) as a UNet folder OUT\n"
               "                      (config.json + weights.safetensors) for sdw sample\n"
               "  --export SRC OUT    the same with the raw (non-EMA) weights\n"
               "  --help              this text\n"
               "\n"
               "Exit status: 0 finished (or stopped by sdw ctl stop), 1 failed, 2 usage error,\n"
               "130 / 143 after SIGINT / SIGTERM (a checkpoint is written first).\n");
}

static int usage(const char *fmt, const char *arg) {
  fprintf(stderr, "sdw: train: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "; 'sdw train --help' shows the usage\n");
  return EXIT_USAGE;
}

static atomic_int g_interrupt;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig) {
  g_signal = sig;
  atomic_store(&g_interrupt, 1);
  signal(sig, SIG_DFL); /* a second one ends the process at once */
}

/* --- export ----------------------------------------------------------------------- */

static int do_export(const char *src, const char *out, bool ema) {
  char path[4300];
  struct stat sb;
  if (stat(src, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    /* a run directory: its latest checkpoint */
    char latest[4200];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", src);
    void *data;
    size_t size;
    if (sdw_read_file(latest, &data, &size) != SDW_OK) {
      fprintf(stderr, "sdw: train: %s has no checkpoints/latest: not a run with a checkpoint\n",
              src);
      return EXIT_FAILED;
    }
    char *t = data;
    t[strcspn(t, "\r\n")] = '\0';
    snprintf(path, sizeof path, "%s/checkpoints/%s", src, t);
    free(data);
  } else {
    snprintf(path, sizeof path, "%s", src);
  }
  sdw_safetensors *ck = NULL;
  if (sdw_safetensors_open(path, &ck) != SDW_OK) {
    sdw_cli_report_error("train: export");
    return EXIT_FAILED;
  }
  const char *fmt = sdw_safetensors_metadata_get(ck, "format");
  const char *ucfg = sdw_safetensors_metadata_get(ck, "unet_config");
  int rc = EXIT_FAILED;
  sdw_unet_config cfg;
  sdw_unet m = {0};
  sdw_ctx *ctx = NULL;
  sdw_safetensors_writer *w = NULL;
  if (!fmt || strcmp(fmt, SDW_CHECKPOINT_FORMAT) != 0 || !ucfg) {
    fprintf(stderr, "sdw: train: %s is not an sdw training checkpoint\n", path);
    goto done;
  }
  if (sdw_unet_config_parse(ucfg, strlen(ucfg), "unet_config", &cfg) != SDW_OK ||
      sdw_unet_plan(&m, &cfg) != SDW_OK) {
    sdw_cli_report_error("train: export");
    goto done;
  }
  const char *set = ema ? "ema" : "model";
  char key[SDW_PARAM_NAME_MAX + 16];
  if (ema && !sdw_safetensors_metadata_get(ck, "sha256.ema")) {
    fprintf(stderr, "sdw: train: %s holds no EMA (the run has ema = false): use --export\n", path);
    goto done;
  }
  if (sdw_safetensors_writer_create(&w) != SDW_OK) goto fail;
  for (int i = 0; i < m.params.count; i++) {
    snprintf(key, sizeof key, "%s.%s", set, m.params.items[i].name);
    const sdw_safetensors_entry *e = NULL;
    if (sdw_safetensors_get(ck, key, &e) != SDW_OK) goto fail;
    if (sdw_safetensors_writer_add(w, m.params.items[i].name, e->dtype, e->ndim, e->shape,
                                   e->data) != SDW_OK)
      goto fail;
  }
  if (sdw_safetensors_writer_set_metadata(w, "format", "pt") != SDW_OK) goto fail;
  if (sdw_mkdir_p(out) != SDW_OK) goto fail;
  char op[4300];
  snprintf(op, sizeof op, "%s/config.json", out);
  if (sdw_atomic_write(op, ucfg, strlen(ucfg)) != SDW_OK) goto fail;
  snprintf(op, sizeof op, "%s/weights.safetensors", out);
  if (sdw_safetensors_writer_write(w, op) != SDW_OK) goto fail;
  fprintf(stderr, "sdw: train: %s weights of %s (step %s) -> %s\n", ema ? "EMA" : "raw", path,
          sdw_safetensors_metadata_get(ck, "step"), out);
  rc = 0;
  /* the UNet folder carries no scheduler: say when the run's objective is
   * not the epsilon every reader of a bare UNet assumes */
  const char *run_cfg = sdw_safetensors_metadata_get(ck, "config");
  char kind[32] = "";
  if (run_cfg) sdw_run_config_value(run_cfg, "prediction_type", kind, sizeof kind);
  if (kind[0] && strcmp(kind, "epsilon") != 0)
    fprintf(stderr,
            "sdw: train: warning: the run was trained with prediction_type = %s; %s holds no "
            "scheduler, so sample from the run or the checkpoint (sdw sample --model %s), which "
            "knows it\n",
            kind, out, src);
  goto done;
fail:
  sdw_cli_report_error("train: export");
done:
  sdw_safetensors_writer_destroy(w);
  sdw_unet_free(&m);
  if (ctx) sdw_ctx_destroy(ctx);
  sdw_safetensors_close(ck);
  return rc;
}

/* --- detaching ---------------------------------------------------------------------- */

/* Double fork: the caller's process prints "RUN PID" (when announce) and
 * exits 0 (returns 1 in the parent, 0 in the detached grandchild, -1 on
 * failure); *job_pid receives the grandchild's pid in the parent. */
static int detach(const char *run, bool announce, int *job_pid) {
  char log[4300];
  snprintf(log, sizeof log, "%s/train.log", run);
  if (sdw_mkdir_p(run) != SDW_OK) {
    sdw_cli_report_error("train: --run");
    return -1;
  }
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "sdw: train: %s: %s\n", log, strerror(errno));
    return -1;
  }
  int pfd[2];
  if (pipe(pfd) != 0) {
    close(fd);
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    close(pfd[1]);
    close(fd);
    int gc = 0;
    ssize_t n = read(pfd[0], &gc, sizeof gc);
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    if (n != (ssize_t)sizeof gc) {
      fprintf(stderr, "sdw: train: the detached job did not start\n");
      return -1;
    }
    if (announce) {
      printf("%s %d\n", run, gc);
      fflush(stdout);
    }
    *job_pid = gc;
    return 1;
  }
  /* child: a new session, then the grandchild that runs the job */
  close(pfd[0]);
  setsid();
  signal(SIGHUP, SIG_IGN);
  pid_t p2 = fork();
  if (p2 != 0) _exit(p2 < 0 ? 1 : 0);
  int me = (int)getpid();
  if (write(pfd[1], &me, sizeof me) != (ssize_t)sizeof me) _exit(1);
  close(pfd[1]);
  int nul = open("/dev/null", O_RDONLY);
  if (nul >= 0) {
    dup2(nul, STDIN_FILENO);
    close(nul);
  }
  dup2(fd, STDOUT_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
  return 0;
}

/* The workbench on the job just started detached (pid job_pid): waits up to
 * 5 s for its job.json (the viewer copes without one, but would first say
 * "no job.json yet"), then runs until q. The job goes on. */
static int open_workbench(const char *run, int job_pid) {
  char job[4300];
  snprintf(job, sizeof job, "%s/job.json", run);
  for (int i = 0; i < 50 && access(job, F_OK) != 0 && kill(job_pid, 0) == 0; i++)
    usleep(100 * 1000);
  char run_abs[PATH_MAX];
  sdw_tui_options o = {
      .run_dir = realpath(run, run_abs) ? run_abs : run,
      .focus = SDW_PANEL_CURVES,
      .probe = true,
  };
  int rc = sdw_tui_run(&o);
  if (kill(job_pid, 0) == 0)
    fprintf(stderr, "sdw: train: the job goes on in %s (pid %d): sdw attach %s, sdw ctl %s stop\n",
            run, job_pid, run, run);
  return rc;
}

/* --- the command ---------------------------------------------------------------------- */

int sdw_cmd_train(int argc, char **argv) {
  const char *config = NULL, *run = NULL, *export_src = NULL, *export_out = NULL;
  bool detach_flag = false, quiet = false, print_config = false, export_ema = false;
  bool no_tui = false;
  const char *sets[256];
  int nsets = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_help(stdout);
      return 0;
    } else if (strcmp(a, "--detach") == 0) {
      detach_flag = true;
    } else if (strcmp(a, "--no-tui") == 0) {
      no_tui = true;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else if (strcmp(a, "--print-config") == 0) {
      print_config = true;
    } else if (strcmp(a, "--config") == 0 || strcmp(a, "--run") == 0 || strcmp(a, "--set") == 0) {
      if (i + 1 >= argc) return usage("%s needs a value", a);
      const char *v = argv[++i];
      if (strcmp(a, "--config") == 0)
        config = v;
      else if (strcmp(a, "--run") == 0)
        run = v;
      else if (nsets == 256)
        return usage("too many %s options", a);
      else
        sets[nsets++] = v;
    } else if (strcmp(a, "--export-ema") == 0 || strcmp(a, "--export") == 0) {
      if (i + 2 >= argc) return usage("%s needs a source and an output folder", a);
      export_ema = strcmp(a, "--export-ema") == 0;
      export_src = argv[++i];
      export_out = argv[++i];
    } else {
      return usage("unknown option '%s'", a);
    }
  }
  if (export_src) return do_export(export_src, export_out, export_ema);

  sdw_train_config cfg;
  sdw_train_config_defaults(&cfg);
  char resolved_from[4300] = "";
  if (!config && run && !print_config) {
    snprintf(resolved_from, sizeof resolved_from, "%s/config.ini", run);
    struct stat sb;
    if (stat(resolved_from, &sb) != 0)
      return usage("give --config FILE (%s has no config.ini to continue from)", run);
    config = resolved_from;
  }
  if (config && sdw_train_config_load(&cfg, config) != SDW_OK) {
    sdw_cli_report_error("train: --config");
    return EXIT_USAGE;
  }
  for (int i = 0; i < nsets; i++) {
    char key[128];
    const char *eq = strchr(sets[i], '=');
    if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof key)
      return usage("--set takes KEY=VALUE, not '%s'", sets[i]);
    snprintf(key, sizeof key, "%.*s", (int)(eq - sets[i]), sets[i]);
    char *k = key;
    while (*k == ' ')
      k++;
    for (char *e = k + strlen(k); e > k && e[-1] == ' ';)
      *--e = '\0';
    const char *v = eq + 1;
    while (*v == ' ')
      v++;
    if (sdw_train_config_set(&cfg, k, v, "--set") != SDW_OK) {
      sdw_cli_report_error("train");
      return EXIT_USAGE;
    }
  }
  char *text = sdw_train_config_format(&cfg);
  if (!text) {
    fprintf(stderr, "sdw: train: out of memory\n");
    return EXIT_FAILED;
  }
  if (print_config) {
    fputs(text, stdout);
    free(text);
    return 0;
  }
  if (!run) {
    free(text);
    return usage("%s", "--run RUN is required (the run directory)");
  }
  if (sdw_train_config_validate(&cfg) != SDW_OK) {
    free(text);
    sdw_cli_report_error("train");
    return EXIT_USAGE;
  }
  /* a live job in RUN: refuse before touching anything (a rank that
   * local_ranks started belongs to that job) */
  char sock[4300];
  sdw_control_client *cl = NULL;
  if (!sdw_local_ranks_is_child() && sdw_control_socket_path(run, sock, sizeof sock) == SDW_OK &&
      sdw_control_connect(sock, &cl) == SDW_OK) {
    sdw_control_client_close(cl);
    free(text);
    fprintf(stderr, "sdw: train: another job owns %s (sdw ctl %s status)\n", run, run);
    return EXIT_FAILED;
  }
  /* At a terminal: the job detached, the workbench in this process. */
  const bool tui = !detach_flag && !no_tui && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  if (detach_flag || tui) {
    int job_pid = 0;
    int d = detach(run, !tui, &job_pid);
    if (d < 0) {
      free(text);
      return EXIT_FAILED;
    }
    if (d > 0) {
      free(text);
      return tui ? open_workbench(run, job_pid) : 0;
    }
    detach_flag = true; /* the detached job */
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  if (detach_flag) signal(SIGHUP, SIG_IGN);
  /* local_ranks > 1: this process becomes rank 0 and starts the other
   * ranks with the same options, in the foreground and quiet */
  sdw_local_ranks ranks;
  {
    char **child = calloc((size_t)nsets * 2 + 10, sizeof *child);
    sdw_status ls = child ? SDW_OK : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
    if (child) {
      int n = 0;
      child[n++] = "sdw";
      child[n++] = "train";
      child[n++] = "--config";
      child[n++] = (char *)config;
      child[n++] = "--run";
      child[n++] = (char *)run;
      for (int i = 0; i < nsets; i++) {
        child[n++] = "--set";
        child[n++] = (char *)sets[i];
      }
      child[n++] = "--no-tui";
      child[n++] = "--quiet";
      ls = sdw_local_ranks_start(cfg.local_ranks, cfg.threads, child, &ranks);
      free(child);
    }
    if (ls != SDW_OK) {
      free(text);
      sdw_cli_report_error("train");
      return EXIT_FAILED;
    }
    if (ranks.count > 1) cfg.threads = ranks.threads;
  }
  sdw_trainer_run_options opt = {.config_text = text, .quiet = quiet, .interrupt = &g_interrupt};
  sdw_status st = sdw_trainer_run(&cfg, run, &opt);
  free(text);
  /* the other ranks end with rank 0's last step (or its stop); after a
   * failure they may wait on a collective that never comes */
  sdw_local_ranks_finish(&ranks, st == SDW_OK || st == SDW_ERR_INTERRUPTED ? 60 : 0);
  if (st == SDW_OK) return 0;
  if (st == SDW_ERR_INTERRUPTED) {
    /* rank 0 says where it stopped; another rank's last checkpoint is not
     * the run's (rank 0 alone writes them) */
    if (!sdw_local_ranks_is_child()) fprintf(stderr, "sdw: train: %s\n", sdw_last_error());
    if (g_signal == SIGINT) return 130;
    if (g_signal == SIGTERM) return 143;
    return 0; /* stopped through the control socket */
  }
  sdw_cli_report_error("train");
  return EXIT_FAILED;
}
