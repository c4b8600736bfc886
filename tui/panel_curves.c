/* The training-curves panel: loss (raw and EMA-smoothed, validation loss
 * as a third series), learning rate, gradient norm and images per second
 * against the step, in braille. History comes from metrics.jsonl, so a
 * viewer that attaches late sees the whole run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/curves.h"
#include "tui/theme.h"
#include "tui/view.h"

enum { LABEL_W = 9 }; /* y-axis labels: sdw_plot_format's width + 1 */

typedef struct chart {
  const char *name;
  const double *y;
  const double *smooth; /* NULL: no smoothed line */
  bool log_y;
} chart;

static double last_finite(const double *y, size_t n) {
  for (size_t i = n; i > 0; i--)
    if (isfinite(y[i - 1])) return y[i - 1];
  return NAN;
}

static void draw_chart(sdw_tui_grid *g, sdw_tui_rect r, const chart *c, const sdw_run_model *m,
                       size_t first, const sdw_tui_view *v) {
  if (r.w <= 0 || r.h <= 0) return;
  const sdw_run_series *s = &m->metrics;
  char now_s[16], sm_s[16];
  sdw_plot_format(last_finite(c->y, s->n), now_s, sizeof now_s);
  int hx = r.x;
  hx += sdw_tui_grid_text(g, r, hx, r.y, r.w, SDW_ROLE_TITLE, c->name);
  hx += sdw_tui_grid_printf(g, r, hx, r.y, r.x + r.w - hx, SDW_ROLE_CURVE_RAW, " %s", now_s);
  if (c->smooth) {
    sdw_plot_format(last_finite(c->smooth, s->n), sm_s, sizeof sm_s);
    hx += sdw_tui_grid_printf(g, r, hx, r.y, r.x + r.w - hx, SDW_ROLE_CURVE_SMOOTH,
                              "  smoothed %s (%.2f)", sm_s, sdw_tui_smoothing(v->smooth_level));
    if (m->skipped_steps > 0)
      hx += sdw_tui_grid_printf(g, r, hx, r.y, r.x + r.w - hx, SDW_ROLE_WARN, "  %lld skipped",
                                (long long)m->skipped_steps);
    if (c->smooth && m->val.n > 0)
      hx += sdw_tui_grid_printf(g, r, hx, r.y, r.x + r.w - hx, SDW_ROLE_CURVE_OTHER, "  val %.4f",
                                m->val.val_loss[m->val.n - 1]);
  }
  if (c->log_y) sdw_tui_grid_text(g, r, hx, r.y, r.x + r.w - hx, SDW_ROLE_DIM, "  log");
  if (r.h < 2) return;
  bool axis = r.h >= 4;
  int ch = r.h - 1 - (axis ? 1 : 0);
  int lw = r.w >= 30 ? LABEL_W : 0;
  int cw = r.w - lw;
  if (cw <= 0 || ch <= 0) return;
  sdw_plot_range range;
  bool have = sdw_plot_range_auto(s->step, c->y, s->n, first, c->log_y, &range);
  if (have && c->smooth) sdw_plot_range_extend(s->step, c->smooth, s->n, first, &range);
  size_t vfirst = 0;
  if (have && c->smooth && m->val.n > 0) {
    vfirst = sdw_plot_zoom_first(m->val.step, m->val.n, sdw_tui_zoom(v->zoom_level));
    sdw_plot_range_extend(m->val.step, m->val.val_loss, m->val.n, vfirst, &range);
  }
  if (!have) {
    sdw_tui_grid_text(g, r, r.x + lw, r.y + 1 + ch / 2, cw, SDW_ROLE_DIM,
                      c->log_y ? "no positive values yet" : "no values yet");
    return;
  }
  sdw_braille_canvas cv;
  if (!sdw_braille_init(&cv, cw, ch)) return;
  sdw_braille_plot(&cv, s->step, c->y, s->n, first, &range, 1);
  if (c->smooth) {
    sdw_braille_plot(&cv, s->step, c->smooth, s->n, first, &range, 2);
    if (m->val.n > 0)
      sdw_braille_plot(&cv, m->val.step, m->val.val_loss, m->val.n, vfirst, &range, 3);
  }
  static const uint8_t roles[4] = {SDW_ROLE_NORMAL, SDW_ROLE_CURVE_RAW, SDW_ROLE_CURVE_SMOOTH,
                                   SDW_ROLE_CURVE_OTHER};
  for (int yy = 0; yy < ch; yy++)
    for (int xx = 0; xx < cw; xx++) {
      uint8_t bits = cv.bits[yy * cw + xx];
      if (!bits) continue;
      uint8_t layer = cv.layer[yy * cw + xx];
      sdw_tui_grid_put(g, r.x + lw + xx, r.y + 1 + yy, sdw_braille_char(bits),
                       c->smooth ? roles[layer] : SDW_ROLE_CURVE_OTHER);
    }
  sdw_braille_free(&cv);
  if (lw) {
    char top[16], bot[16];
    sdw_plot_format(range.y1, top, sizeof top);
    sdw_plot_format(range.y0, bot, sizeof bot);
    sdw_tui_grid_printf(g, r, r.x, r.y + 1, lw - 1, SDW_ROLE_DIM, "%*s", lw - 1, top);
    if (ch > 1) sdw_tui_grid_printf(g, r, r.x, r.y + ch, lw - 1, SDW_ROLE_DIM, "%*s", lw - 1, bot);
    for (int yy = 0; yy < ch; yy++)
      sdw_tui_grid_put(g, r.x + lw - 1, r.y + 1 + yy, 0x2502, SDW_ROLE_DIM);
  }
  if (axis) {
    char a[32], b[32];
    snprintf(a, sizeof a, "step %.0f", range.x0);
    snprintf(b, sizeof b, "%.0f", range.x1);
    int y = r.y + r.h - 1;
    for (int xx = 0; xx < cw; xx++)
      sdw_tui_grid_put(g, r.x + lw + xx, y, 0x2500, SDW_ROLE_DIM);
    if (lw) sdw_tui_grid_put(g, r.x + lw - 1, y, 0x2514, SDW_ROLE_DIM);
    sdw_tui_grid_text(g, r, r.x + lw, y, cw, SDW_ROLE_DIM, a);
    int bw = (int)strlen(b);
    if (cw > (int)strlen(a) + bw + 2)
      sdw_tui_grid_text(g, r, r.x + r.w - bw, y, bw, SDW_ROLE_DIM, b);
  }
}

void sdw_panel_curves_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                           const sdw_run_model *m, bool focused) {
  char title[128];
  double zoom = sdw_tui_zoom(v->zoom_level);
  char zs[32] = "all steps";
  if (zoom > 0) snprintf(zs, sizeof zs, "last %.0f steps", zoom);
  snprintf(title, sizeof title, "2 Curves: %s%s  (l log, +/- smooth, z zoom)", zs,
           v->log_scale ? ", log" : "");
  sdw_tui_rect in = sdw_panel_frame(g, r, title, focused);
  if (in.w <= 0 || in.h <= 0) return;
  const sdw_run_series *s = &m->metrics;
  if (s->n == 0) {
    sdw_tui_grid_text(g, in, in.x + 1, in.y + in.h / 2, in.w - 2, SDW_ROLE_DIM,
                      m->run_dir[0] ? "no metrics yet (metrics.jsonl is empty)" : "no run");
    return;
  }
  double *smooth = malloc(s->n * sizeof *smooth);
  if (!smooth) return;
  sdw_ema_smooth(s->loss, s->n, sdw_tui_smoothing(v->smooth_level), smooth);
  size_t first = sdw_plot_zoom_first(s->step, s->n, zoom);
  chart charts[4] = {
      {"loss", s->loss, smooth, v->log_scale},
      {"lr", s->lr, NULL, v->log_scale},
      {"grad norm", s->grad_norm, NULL, v->log_scale},
      {"img/s", s->img_per_s, NULL, false},
  };
  if (in.w >= 100 && in.h >= 14) { /* 2 x 2 */
    int hw = in.w / 2, hh = in.h / 2;
    sdw_tui_rect cells[4] = {{in.x, in.y, hw - 1, hh - 1},
                             {in.x + hw, in.y, in.w - hw, hh - 1},
                             {in.x, in.y + hh, hw - 1, in.h - hh},
                             {in.x + hw, in.y + hh, in.w - hw, in.h - hh}};
    for (int i = 0; i < 4; i++)
      draw_chart(g, cells[i], &charts[i], m, first, v);
  } else {
    /* Stacked: the loss gets half (all of it when short), the others share
     * the rest, each at least 3 rows (else left out). */
    int others = in.h >= 12 ? 3 : in.h >= 8 ? 1 : 0;
    int loss_h = others ? in.h / 2 : in.h;
    int rest = in.h - loss_h;
    draw_chart(g, (sdw_tui_rect){in.x, in.y, in.w, loss_h}, &charts[0], m, first, v);
    int y = in.y + loss_h;
    for (int i = 1; i <= others; i++) {
      int h = rest / others + (i <= rest % others ? 1 : 0);
      draw_chart(g, (sdw_tui_rect){in.x, y, in.w, h}, &charts[i], m, first, v);
      y += h;
    }
  }
  free(smooth);
}
