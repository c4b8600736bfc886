/* The screen layout (see layout.h). */
#include "tui/layout.h"

const char *sdw_tui_panel_name(sdw_tui_panel p) {
  static const char *const names[SDW_PANEL_COUNT] = {"Pipeline", "Curves", "Devices", "Preview",
                                                     "Log"};
  return (unsigned)p < SDW_PANEL_COUNT ? names[p] : "?";
}

static sdw_tui_rect rect(int x, int y, int w, int h) {
  if (w <= 0 || h <= 0) return (sdw_tui_rect){x, y, 0, 0};
  return (sdw_tui_rect){x, y, w, h};
}

sdw_tui_layout sdw_tui_layout_compute(int cols, int rows, unsigned enabled, sdw_tui_panel focus) {
  sdw_tui_layout l = {0};
  const unsigned all = (1u << SDW_PANEL_COUNT) - 1;
  enabled &= all;
  if (enabled == 0) enabled = all;
  if ((unsigned)focus >= SDW_PANEL_COUNT || !(enabled & (1u << focus)))
    for (int i = 0; i < SDW_PANEL_COUNT; i++)
      if (enabled & (1u << i)) {
        focus = (sdw_tui_panel)i;
        break;
      }
  if (cols <= 0 || rows <= 0) return l;
  l.status = rect(0, rows - 1, cols, 1);
  if (rows < 3) { /* a status line, and a body when there are two rows */
    l.body = rect(0, 0, cols, rows - 1);
    l.panel[focus] = l.body;
    return l;
  }
  l.tabs = rect(0, 0, cols, 1);
  l.body = rect(0, 1, cols, rows - 2);
  int bw = l.body.w, bh = l.body.h, by = l.body.y;
  if (cols < SDW_LAYOUT_WIDE_W || rows < SDW_LAYOUT_WIDE_H) {
    l.panel[focus] = l.body;
    return l;
  }
  l.tiled = true;
  /* Rows of the tiling: top (curves, preview), middle (pipeline, devices),
   * bottom (log); a row whose panels are all disabled gives its height to
   * the others, as does a missing column partner its width. */
  bool top_l = enabled & (1u << SDW_PANEL_CURVES), top_r = enabled & (1u << SDW_PANEL_PREVIEW);
  bool mid_l = enabled & (1u << SDW_PANEL_PIPELINE), mid_r = enabled & (1u << SDW_PANEL_DEVICES);
  bool bot = enabled & (1u << SDW_PANEL_LOG);
  int weight_top = (top_l || top_r) ? 45 : 0, weight_mid = (mid_l || mid_r) ? 30 : 0,
      weight_bot = bot ? 25 : 0;
  int total = weight_top + weight_mid + weight_bot;
  int h_top = bh * weight_top / total, h_mid = bh * weight_mid / total;
  int h_bot = bh - h_top - h_mid;
  if (!bot) h_mid = bh - h_top, h_bot = 0;
  if (!bot && !(mid_l || mid_r)) h_top = bh;
  int left_w = bw * 60 / 100;
  int y = by;
  if (h_top > 0) {
    if (top_l && top_r) {
      l.panel[SDW_PANEL_CURVES] = rect(0, y, left_w, h_top);
      l.panel[SDW_PANEL_PREVIEW] = rect(left_w, y, bw - left_w, h_top);
    } else {
      l.panel[top_l ? SDW_PANEL_CURVES : SDW_PANEL_PREVIEW] = rect(0, y, bw, h_top);
    }
    y += h_top;
  }
  if (h_mid > 0) {
    if (mid_l && mid_r) {
      l.panel[SDW_PANEL_PIPELINE] = rect(0, y, left_w, h_mid);
      l.panel[SDW_PANEL_DEVICES] = rect(left_w, y, bw - left_w, h_mid);
    } else {
      l.panel[mid_l ? SDW_PANEL_PIPELINE : SDW_PANEL_DEVICES] = rect(0, y, bw, h_mid);
    }
    y += h_mid;
  }
  if (h_bot > 0) l.panel[SDW_PANEL_LOG] = rect(0, y, bw, h_bot);
  return l;
}
