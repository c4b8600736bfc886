/* `sdw attach [RUN]`: the workbench on a run directory (or, without RUN,
 * on the current directory: a run found there and the pipeline's data). */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cli/cli.h"
#include "tui/app.h"

static void usage(FILE *out) {
  fprintf(out, "usage: sdw attach [options] [RUN]\n"
               "       sdw --model PATH [options] [RUN]\n"
               "\n"
               "Opens the workbench (a terminal UI) on the run directory RUN: training\n"
               "curves, pipeline stages, devices, the latest sample and the log, live.\n"
               "q detaches and leaves the job running; ? lists the keys. Without RUN, the\n"
               "current directory is used: itself when it is a run, else the newest run\n"
               "in it or in its runs/ folder, and its pipeline data when it has manifests/.\n"
               "\n"
               "With --model, s opens the prompt sampler: it runs sdw sample --model PATH\n"
               "with the dialog's prompt, negative, steps, CFG, seed and EMA (no job\n"
               "needed), writes the PNG to RUN/samples (./samples without a run) and shows\n"
               "it in the preview panel.\n"
               "\n"
               "options:\n"
               "  --data DIR       the pipeline's data directory (default: from RUN/config.ini)\n"
               "  --theme NAME     default, light or mono (default: $SDW_THEME, else theme in\n"
               "                   ~/.config/sdw/tui.ini, else default; NO_COLOR forces mono)\n"
               "  --panel NAME     the panel shown first: pipeline, curves, devices, preview,\n"
               "                   log, or 1-5 (default curves; pipeline without a run)\n"
               "  --model PATH     the sampler's model (anything sdw sample --model takes)\n"
               "  --size WxH       the sampler's image size, multiples of 8 (default 512x512)\n"
               "  --no-probe       do not ask the terminal about sixel and its cell size\n"
               "  --help           this text\n"
               "\n"
               "man sdw-tui lists every key.\n");
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_run(const char *dir) {
  char p[1200];
  snprintf(p, sizeof p, "%s/job.json", dir);
  struct stat st;
  if (stat(p, &st) == 0) return true;
  snprintf(p, sizeof p, "%s/config.ini", dir);
  return stat(p, &st) == 0;
}

/* The most recently updated run directly under parent (into best). */
static void newest_run(const char *parent, char *best, size_t cap, double *best_t) {
  DIR *d = opendir(parent);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char dir[1200], job[1300];
    snprintf(dir, sizeof dir, "%s/%s", parent, e->d_name);
    snprintf(job, sizeof job, "%s/job.json", dir);
    struct stat st;
    if (stat(job, &st) != 0) continue;
    double t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    if (t > *best_t) {
      *best_t = t;
      snprintf(best, cap, "%s", dir);
    }
  }
  closedir(d);
}

static int parse_panel(const char *s) {
  static const char *const names[] = {"pipeline", "curves", "devices", "preview", "log"};
  for (int i = 0; i < 5; i++)
    if (strcmp(s, names[i]) == 0 || (s[0] == '1' + i && s[1] == 0)) return i;
  return -1;
}

int sdw_cmd_attach(int argc, char **argv) {
  const char *run = NULL, *data = NULL, *theme = NULL, *panel = NULL, *model = NULL, *size = NULL;
  bool probe = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "--no-probe") == 0) {
      probe = false;
      continue;
    }
    if (strcmp(a, "--data") == 0 || strcmp(a, "--theme") == 0 || strcmp(a, "--panel") == 0 ||
        strcmp(a, "--model") == 0 || strcmp(a, "--size") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "sdw: attach: %s needs a value (see --help)\n", a);
        return 2;
      }
      const char **slot = a[2] == 'd'   ? &data
                          : a[2] == 't' ? &theme
                          : a[2] == 'm' ? &model
                          : a[2] == 's' ? &size
                                        : &panel;
      *slot = argv[++i];
      continue;
    }
    if (a[0] == '-' && a[1]) {
      fprintf(stderr, "sdw: attach: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (run) {
      fprintf(stderr, "sdw: attach: one run directory at most (see --help)\n");
      return 2;
    }
    run = a;
  }
  int focus = panel ? parse_panel(panel) : -1;
  if (panel && focus < 0) {
    fprintf(stderr, "sdw: attach: unknown panel '%s' (pipeline, curves, devices, preview, log)\n",
            panel);
    return 2;
  }
  if (theme && strcmp(theme, "default") != 0 && strcmp(theme, "light") != 0 &&
      strcmp(theme, "mono") != 0) {
    fprintf(stderr, "sdw: attach: unknown theme '%s' (default, light, mono)\n", theme);
    return 2;
  }
  int sample_w = 0, sample_h = 0;
  if (size) {
    char tail = 0;
    if (sscanf(size, "%dx%d%c", &sample_w, &sample_h, &tail) != 2 || sample_w < 8 || sample_h < 8 ||
        sample_w % 8 || sample_h % 8 || sample_w > 8192 || sample_h > 8192) {
      fprintf(stderr, "sdw: attach: --size takes WxH, multiples of 8 (e.g. 512x512), not '%s'\n",
              size);
      return 2;
    }
  }
  if (size && !model) {
    fprintf(stderr, "sdw: attach: --size is the sampler's: give --model too\n");
    return 2;
  }
  /* The model is checked by sdw sample itself; a missing path is caught
   * here, before the terminal is taken over. */
  struct stat model_st;
  if (model && stat(model, &model_st) != 0) {
    fprintf(stderr, "sdw: attach: %s: no such model\n", model);
    return 1;
  }
  if (data && !is_dir(data)) {
    fprintf(stderr, "sdw: attach: %s is not a directory\n", data);
    return 1;
  }
  char found[1200] = "", cwd_data[8] = "";
  if (run) {
    if (!is_dir(run)) {
      fprintf(stderr, "sdw: attach: %s: no such run directory\n", run);
      return 1;
    }
    if (!is_run(run)) {
      fprintf(stderr, "sdw: attach: %s is not a run directory (no job.json or config.ini)\n", run);
      return 1;
    }
  } else {
    if (is_run(".")) {
      snprintf(found, sizeof found, ".");
    } else {
      double best = -1;
      newest_run(".", found, sizeof found, &best);
      newest_run("runs", found, sizeof found, &best);
    }
    if (found[0]) run = found;
    if (!data && is_dir("manifests")) snprintf(cwd_data, sizeof cwd_data, "."), data = cwd_data;
  }
  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    fprintf(stderr,
            "sdw: attach: the workbench needs a terminal (use sdw ctl %s status in "
            "scripts)\n",
            run ? run : "RUN");
    return 1;
  }
  /* Absolute paths: the title names them, and stages started with r get a
   * --data that does not depend on the viewer's directory. */
  char run_abs[PATH_MAX], data_abs[PATH_MAX], model_abs[PATH_MAX];
  if (run && realpath(run, run_abs)) run = run_abs;
  if (model && realpath(model, model_abs)) model = model_abs;
  if (data && realpath(data, data_abs)) data = data_abs;
  sdw_tui_options o = {
      .run_dir = run,
      .data_dir = data,
      .theme = theme,
      .focus = focus >= 0 ? (sdw_tui_panel)focus
               : run      ? SDW_PANEL_CURVES
                          : SDW_PANEL_PIPELINE,
      .probe = probe,
      .model = model,
      .sample_w = sample_w,
      .sample_h = sample_h,
  };
  return sdw_tui_run(&o);
}
