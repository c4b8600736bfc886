/* The workbench's screen: what the user has chosen to look at (focus,
 * scroll positions, curve options, open dialogs) and the functions that draw
 * a whole frame of it from a run model into a cell grid. Pure: no terminal,
 * no I/O; the app (app.c) copies the grid to curses. Tested headless by
 * rendering frames at many sizes (tests/test_tui_view.c).
 */
#ifndef SDW_TUI_VIEW_H
#define SDW_TUI_VIEW_H

#include <stdbool.h>

#include "tui/devices.h"
#include "tui/form.h"
#include "tui/grid.h"
#include "tui/keys.h"
#include "tui/layout.h"
#include "tui/preview.h"
#include "tui/run_model.h"

enum { SDW_SMOOTH_LEVELS = 8, SDW_ZOOM_LEVELS = 4 };

typedef enum sdw_tui_overlay {
  SDW_OVERLAY_NONE = 0,
  SDW_OVERLAY_HELP,
  SDW_OVERLAY_SAMPLE,
  SDW_OVERLAY_CONFIRM_STOP,
} sdw_tui_overlay;

enum { SDW_TUI_MAX_GPUS = 16 };

/* What the devices panel shows; sampled by the app about once a second
 * (sdw_tui_devices_sample), drawn from here. */
typedef struct sdw_tui_devices {
  sdw_gpus *gpus; /* owned (sdw_tui_devices_free) */
  int ngpu;
  sdw_gpu_info gpu[SDW_TUI_MAX_GPUS];
  sdw_ring gpu_util[SDW_TUI_MAX_GPUS], gpu_mem[SDW_TUI_MAX_GPUS];
  sdw_host_sampler sampler;
  sdw_host_sample host;
  bool host_ok;
  char host_error[160];
  sdw_ring cpu, ram;
  long job_pid;
  uint64_t job_rss; /* bytes; 0 unknown */
} sdw_tui_devices;

/* Opens NVML (library NULL: the default; never fails for want of a GPU). */
void sdw_tui_devices_init(sdw_tui_devices *d, const char *nvml_library);
void sdw_tui_devices_free(sdw_tui_devices *d);
/* One sample of GPUs, host CPU/RAM and the job's RSS (job_pid > 0). */
void sdw_tui_devices_sample(sdw_tui_devices *d, long job_pid);

typedef struct sdw_tui_view {
  sdw_tui_panel focus;
  unsigned enabled; /* panel bits (0: all) */
  /* curves */
  bool log_scale;
  int smooth_level; /* index into sdw_tui_smoothing() */
  int zoom_level;   /* index into sdw_tui_zoom() */
  /* pipeline */
  int stage_sel;
  bool stage_report; /* Enter: the selected stage's report instead of the table */
  int report_scroll;
  /* log: lines scrolled up from the end (0 = follow) */
  int log_scroll;
  /* devices: rows scrolled */
  int devices_scroll;
  sdw_tui_overlay overlay;
  sdw_tui_sample_form form;
  char message[256]; /* the last action's outcome, shown in the status line */
  bool message_error;
  double message_time;
  const char *title;              /* e.g. the run directory (borrowed) */
  const sdw_tui_devices *devices; /* borrowed; NULL: the panel says "not sampled" */
  const sdw_preview *preview;     /* borrowed; the loaded image or NULL */
  sdw_preview_mode preview_mode;
  char preview_path[1024];          /* the file the preview shows ("" none) */
  char preview_prompt[512];         /* its prompt (the infotext's first line), "" none */
  int stage_image;                  /* which sample image in a stage's report (Left/Right) */
  const sdw_preview *stage_preview; /* borrowed: that image decoded, or NULL */
  char stage_image_label[512];      /* its name, or why there is none */
} sdw_tui_view;

/* The smoothing weights (0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99) and the
 * zoom windows in steps (0 = all, 10000, 1000, 100). */
double sdw_tui_smoothing(int level);
double sdw_tui_zoom(int level);

void sdw_tui_view_init(sdw_tui_view *v);
void sdw_tui_view_free(sdw_tui_view *v);

/* Applies a main-view action that only changes what is shown (focus,
 * scrolling, curve options, overlays). Actions that talk to the job or
 * start a process (pause, checkpoint, sample, stop, run stage) are the
 * app's; this returns false for them. */
bool sdw_tui_view_apply(sdw_tui_view *v, sdw_tui_action a, const sdw_run_model *m);
/* Sets the status-line message (printf-style). */
void sdw_tui_view_message(sdw_tui_view *v, bool error, double now, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Draws the whole frame into g (already sized to the terminal). now is unix
 * time, for ages and ETAs. */
void sdw_tui_view_draw(sdw_tui_grid *g, const sdw_tui_view *v, const sdw_run_model *m, double now);

/* The panels, each inside its rectangle (borders included). */
void sdw_panel_pipeline_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                             const sdw_run_model *m, double now, bool focused);
void sdw_panel_curves_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                           const sdw_run_model *m, bool focused);
void sdw_panel_devices_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                            const sdw_run_model *m, bool focused);
void sdw_panel_preview_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                            const sdw_run_model *m, bool focused);
void sdw_panel_log_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                        const sdw_run_model *m, bool focused);
/* Draws r's border and title (focused: highlighted) and returns the inside;
 * a rectangle too small for a border gets the title on its first row, or
 * nothing. */
sdw_tui_rect sdw_panel_frame(sdw_tui_grid *g, sdw_tui_rect r, const char *title, bool focused);
/* The pipeline rows: the six main stages and emoji (whether or not they have run)
 * then any other stage with a manifest, in pipeline order. names[i] is the
 * stage, stages[i] its manifest entry in m or NULL. Returns the count. */
int sdw_tui_pipeline_rows(const sdw_run_model *m, const char **names, const sdw_run_stage **stages,
                          int max);
/* The selected stage's name (NULL when there is none). */
const char *sdw_tui_pipeline_selected(const sdw_tui_view *v, const sdw_run_model *m);
/* Where a stage's sample image goes in the pipeline panel's report (the
 * right part of the panel below a caption line); w = h = 0 when the report
 * is not open or the panel is too small. */
sdw_tui_rect sdw_panel_pipeline_image_rect(sdw_tui_rect panel, const sdw_tui_view *v);
/* Where the preview image goes (inside the preview panel's border, below its
 * caption line); w = h = 0 when the panel is not shown. */
sdw_tui_rect sdw_panel_preview_image_rect(sdw_tui_rect panel);

/* "1h02m", "3m05s", "42s", "-" for non-finite or negative. */
void sdw_tui_format_duration(double seconds, char *out, size_t cap);

#endif
