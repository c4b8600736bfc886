/* The log panel: the run's events.log (and the workbench's own notes),
 * newest at the bottom, scrollable; warnings and errors highlighted. */
#include <stdio.h>

#include "tui/theme.h"
#include "tui/view.h"

void sdw_panel_log_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                        const sdw_run_model *m, bool focused) {
  char title[96];
  size_t n = m->log_count;
  size_t scroll = (size_t)(v->log_scroll < 0 ? 0 : v->log_scroll);
  if (scroll > n) scroll = n;
  if (scroll)
    snprintf(title, sizeof title, "5 Log: %zu lines up (End: follow)", scroll);
  else
    snprintf(title, sizeof title, "5 Log");
  sdw_tui_rect in = sdw_panel_frame(g, r, title, focused);
  if (in.w <= 0 || in.h <= 0) return;
  if (n == 0) {
    sdw_tui_grid_text(g, in, in.x + 1, in.y, in.w - 2, SDW_ROLE_DIM, "no events yet");
    return;
  }
  size_t end = n - scroll; /* one past the last line shown */
  size_t rows = (size_t)in.h;
  size_t first = end > rows ? end - rows : 0;
  for (size_t i = first; i < end; i++) {
    const sdw_run_log_line *l = sdw_run_model_log_at(m, i);
    uint8_t role = l->kind == SDW_LOGK_ERROR  ? SDW_ROLE_ERROR
                   : l->kind == SDW_LOGK_WARN ? SDW_ROLE_WARN
                                              : SDW_ROLE_NORMAL;
    sdw_tui_grid_text(g, in, in.x + 1, in.y + (int)(i - first), in.w - 1, role, l->text);
  }
}
