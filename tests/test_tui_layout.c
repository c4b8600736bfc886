/* tui/layout: the screen layout is a pure function of the terminal size.
 * Swept over every size from 0 x 0 to 300 x 100 (and every focus and a set
 * of enabled-panel masks): rectangles stay on the screen, never overlap,
 * the focused panel is always shown once there is a body row, and the
 * thresholds (tiled from 120 x 40) hold. Exact checks, no tolerance. */
#include <stdbool.h>

#include "tests/test.h"
#include "tui/layout.h"

static bool empty(sdw_tui_rect r) { return r.w <= 0 || r.h <= 0; }

static bool on_screen(sdw_tui_rect r, int cols, int rows) {
  return empty(r) || (r.x >= 0 && r.y >= 0 && r.x + r.w <= cols && r.y + r.h <= rows);
}

static bool overlap(sdw_tui_rect a, sdw_tui_rect b) {
  if (empty(a) || empty(b)) return false;
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/* Checks one layout; returns false after the first failure (to keep the
 * output of a broken sweep short). */
static bool check_layout(int cols, int rows, unsigned enabled, sdw_tui_panel focus) {
  sdw_tui_layout l = sdw_tui_layout_compute(cols, rows, enabled, focus);
  sdw_tui_rect all[SDW_PANEL_COUNT + 2];
  int n = 0;
  all[n++] = l.tabs;
  all[n++] = l.status;
  for (int p = 0; p < SDW_PANEL_COUNT; p++)
    all[n++] = l.panel[p];
  for (int i = 0; i < n; i++) {
    if (!on_screen(all[i], cols, rows)) {
      CHECK_MSG(false, "%dx%d en=%#x focus=%d: rect %d (%d,%d %dx%d) leaves the screen", cols, rows,
                enabled, focus, i, all[i].x, all[i].y, all[i].w, all[i].h);
      return false;
    }
    for (int k = i + 1; k < n; k++)
      if (overlap(all[i], all[k])) {
        CHECK_MSG(false, "%dx%d en=%#x focus=%d: rects %d and %d overlap", cols, rows, enabled,
                  focus, i, k);
        return false;
      }
  }
  unsigned en = enabled & 31u ? enabled & 31u : 31u;
  for (int p = 0; p < SDW_PANEL_COUNT; p++)
    if (!empty(l.panel[p]) && !(en & (1u << p))) {
      CHECK_MSG(false, "%dx%d: disabled panel %d shown", cols, rows, p);
      return false;
    }
  if (cols > 0 && rows >= 2) {
    /* The focused (or first enabled) panel is visible. */
    int want = (en & (1u << focus)) ? (int)focus : __builtin_ctz(en);
    if (empty(l.panel[want])) {
      CHECK_MSG(false, "%dx%d en=%#x: focused panel %d not shown", cols, rows, enabled, want);
      return false;
    }
  }
  if (cols > 0 && rows > 0 && (empty(l.status) || l.status.y != rows - 1 || l.status.w != cols)) {
    CHECK_MSG(false, "%dx%d: the status line is not the last row", cols, rows);
    return false;
  }
  bool wide = cols >= SDW_LAYOUT_WIDE_W && rows >= SDW_LAYOUT_WIDE_H;
  if (l.tiled != wide) {
    CHECK_MSG(false, "%dx%d: tiled=%d", cols, rows, l.tiled);
    return false;
  }
  if (wide) {
    /* Tiled: every enabled panel is shown, and the panels fill the body. */
    long area = 0;
    for (int p = 0; p < SDW_PANEL_COUNT; p++) {
      if ((en & (1u << p)) && empty(l.panel[p])) {
        CHECK_MSG(false, "%dx%d en=%#x: enabled panel %d hidden", cols, rows, enabled, p);
        return false;
      }
      if (!empty(l.panel[p])) area += (long)l.panel[p].w * l.panel[p].h;
    }
    if (area != (long)l.body.w * l.body.h) {
      CHECK_MSG(false, "%dx%d en=%#x: panels cover %ld of %ld body cells", cols, rows, enabled,
                area, (long)l.body.w * l.body.h);
      return false;
    }
  }
  return true;
}

SDW_TEST(tui_layout_sweep) {
  static const unsigned masks[] = {0, 31, 1, 2, 16, 3, 5, 10, 12, 17, 24, 30, 15};
  for (int rows = 0; rows <= 100; rows++)
    for (int cols = 0; cols <= 300; cols += (cols < 130 ? 1 : 7))
      for (size_t m = 0; m < sizeof masks / sizeof masks[0]; m++)
        for (int f = 0; f < SDW_PANEL_COUNT; f++)
          if (!check_layout(cols, rows, masks[m], (sdw_tui_panel)f)) return;
}

SDW_TEST(tui_layout_known_sizes) {
  /* 80 x 24: tab bar, one panel filling rows 1-22, status line on row 23. */
  sdw_tui_layout l = sdw_tui_layout_compute(80, 24, 0, SDW_PANEL_CURVES);
  CHECK(!l.tiled);
  CHECK(l.tabs.x == 0 && l.tabs.y == 0 && l.tabs.w == 80 && l.tabs.h == 1);
  CHECK(l.status.y == 23 && l.status.h == 1 && l.status.w == 80);
  sdw_tui_rect c = l.panel[SDW_PANEL_CURVES];
  CHECK(c.x == 0 && c.y == 1 && c.w == 80 && c.h == 22);
  CHECK(empty(l.panel[SDW_PANEL_LOG]));
  /* 20 x 5 still shows the panel (3 rows) between tabs and status. */
  l = sdw_tui_layout_compute(20, 5, 0, SDW_PANEL_LOG);
  CHECK(l.panel[SDW_PANEL_LOG].h == 3 && l.panel[SDW_PANEL_LOG].w == 20);
  /* 2 rows: no tab bar, one body row, the status line. */
  l = sdw_tui_layout_compute(30, 2, 0, SDW_PANEL_LOG);
  CHECK(empty(l.tabs) && l.panel[SDW_PANEL_LOG].h == 1 && l.status.y == 1);
  /* 200 x 60 tiled: curves top-left (60 %), preview top-right, log at the bottom. */
  l = sdw_tui_layout_compute(200, 60, 0, SDW_PANEL_PIPELINE);
  CHECK(l.tiled);
  CHECK(l.panel[SDW_PANEL_CURVES].x == 0 && l.panel[SDW_PANEL_CURVES].w == 120);
  CHECK(l.panel[SDW_PANEL_PREVIEW].x == 120 && l.panel[SDW_PANEL_PREVIEW].w == 80);
  CHECK(l.panel[SDW_PANEL_LOG].w == 200 &&
        l.panel[SDW_PANEL_LOG].y + l.panel[SDW_PANEL_LOG].h == 59);
  /* A focus that is not enabled falls back to the first enabled panel. */
  l = sdw_tui_layout_compute(80, 24, 1u << SDW_PANEL_LOG, SDW_PANEL_CURVES);
  CHECK(!empty(l.panel[SDW_PANEL_LOG]) && empty(l.panel[SDW_PANEL_CURVES]));
}
