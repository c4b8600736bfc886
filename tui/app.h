/* The workbench application: the curses terminal, the main loop (poll on
 * the keyboard, the job's control socket and a timer), SIGWINCH, and the
 * actions that talk to the job or start pipeline stages. The only file of
 * sdw that includes curses. */
#ifndef SDW_TUI_APP_H
#define SDW_TUI_APP_H

#include <stdbool.h>

#include "tui/layout.h"

typedef struct sdw_tui_options {
  const char *run_dir;  /* NULL: no run (pipeline only) */
  const char *data_dir; /* NULL: from the run's config.ini */
  const char *theme;    /* NULL: default (NO_COLOR forces mono) */
  sdw_tui_panel focus;  /* the panel shown first */
  bool probe;           /* ask the terminal for sixel support and cell size */
  /* The prompt sampler: with a model, `s` runs `sdw sample --model model` as
   * a child process (its own session: it finishes even when the viewer
   * exits), writing into RUN/samples or ./samples, instead of asking the
   * run's job. NULL: `s` asks the job (the run-attached behaviour). */
  const char *model;
  int sample_w, sample_h; /* the sampler's image size; 0: sdw sample's default */
} sdw_tui_options;

/* Runs the workbench until the user detaches (0) or a fatal error (1, with
 * the message printed after the terminal is restored). Needs a terminal on
 * stdin and stdout. The terminal is restored on every exit path, including
 * signals. */
int sdw_tui_run(const sdw_tui_options *o);

#endif
