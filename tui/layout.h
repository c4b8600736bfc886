/* The workbench's screen layout: a pure function of the terminal size, the
 * enabled panels and the focused one. Tested headless over a sweep of sizes
 * (tests/test_tui_layout.c): rectangles never overlap and never leave the
 * screen, whatever the size (0 x 0 included).
 *
 * Rows: 0 is the tab bar, the last is the status line, the body in between.
 * Small terminals (under 120 x 40) show the focused panel alone in the body;
 * larger ones show every enabled panel at once (curves | preview on top,
 * pipeline | devices in the middle, the log at the bottom), the focused one
 * with a highlighted border.
 */
#ifndef SDW_TUI_LAYOUT_H
#define SDW_TUI_LAYOUT_H

#include <stdbool.h>

#include "tui/grid.h"

typedef enum sdw_tui_panel {
  SDW_PANEL_PIPELINE = 0,
  SDW_PANEL_CURVES,
  SDW_PANEL_DEVICES,
  SDW_PANEL_PREVIEW,
  SDW_PANEL_LOG,
  SDW_PANEL_COUNT
} sdw_tui_panel;

/* Short names for the tab bar ("Pipeline", "Curves", ...). */
const char *sdw_tui_panel_name(sdw_tui_panel p);

enum { SDW_LAYOUT_WIDE_W = 120, SDW_LAYOUT_WIDE_H = 40 };

typedef struct sdw_tui_layout {
  sdw_tui_rect tabs;                   /* row 0 (empty below 3 rows) */
  sdw_tui_rect status;                 /* last row (empty when rows == 0) */
  sdw_tui_rect body;                   /* between them */
  sdw_tui_rect panel[SDW_PANEL_COUNT]; /* w = h = 0: not shown */
  bool tiled;                          /* several panels at once */
} sdw_tui_layout;

/* enabled: bit i set = panel i may be shown (0 means all). focus: the panel
 * that is shown in single-panel mode; when it is not enabled the first
 * enabled one is used. */
sdw_tui_layout sdw_tui_layout_compute(int cols, int rows, unsigned enabled, sdw_tui_panel focus);

#endif
