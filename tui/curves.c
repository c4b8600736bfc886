/* Braille curves (see curves.h). */
#include "tui/curves.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sdw_braille_init(sdw_braille_canvas *c, int w, int h) {
  memset(c, 0, sizeof *c);
  if (w <= 0 || h <= 0) return true;
  c->bits = calloc((size_t)w * (size_t)h, 1);
  c->layer = calloc((size_t)w * (size_t)h, 1);
  if (!c->bits || !c->layer) {
    sdw_braille_free(c);
    return false;
  }
  c->w = w, c->h = h;
  return true;
}

void sdw_braille_free(sdw_braille_canvas *c) {
  free(c->bits);
  free(c->layer);
  memset(c, 0, sizeof *c);
}

void sdw_braille_clear(sdw_braille_canvas *c) {
  if (c->w > 0 && c->h > 0) {
    memset(c->bits, 0, (size_t)c->w * (size_t)c->h);
    memset(c->layer, 0, (size_t)c->w * (size_t)c->h);
  }
}

uint8_t sdw_braille_dot_bit(int dx, int dy) {
  /* Dots 1,2,3 and 4,5,6 are the top three rows; 7 and 8 the bottom row
   * (added later to the 6-dot pattern, hence the odd bit order). */
  static const uint8_t left[4] = {0x01, 0x02, 0x04, 0x40};
  static const uint8_t right[4] = {0x08, 0x10, 0x20, 0x80};
  if (dy < 0 || dy > 3 || dx < 0 || dx > 1) return 0;
  return dx ? right[dy] : left[dy];
}

uint32_t sdw_braille_char(uint8_t bits) { return 0x2800u + bits; }

void sdw_braille_set(sdw_braille_canvas *c, int px, int py, uint8_t layer) {
  if (px < 0 || py < 0 || px >= 2 * c->w || py >= 4 * c->h) return;
  size_t i = (size_t)(py / 4) * (size_t)c->w + (size_t)(px / 2);
  c->bits[i] |= sdw_braille_dot_bit(px % 2, py % 4);
  if (layer > c->layer[i]) c->layer[i] = layer;
}

static bool drawable(double y, bool log_y) { return isfinite(y) && (!log_y || y > 0); }

static void widen(sdw_plot_range *r) {
  if (r->x1 <= r->x0) r->x0 -= 0.5, r->x1 += 0.5;
  if (r->y1 <= r->y0) {
    if (r->log_y) {
      r->y0 *= 0.9, r->y1 *= 1.1;
    } else {
      double pad = r->y0 == 0 ? 1.0 : fabs(r->y0) * 0.05;
      r->y0 -= pad, r->y1 += pad;
    }
  }
}

static bool scan(const double *x, const double *y, size_t n, size_t first, sdw_plot_range *r,
                 bool have) {
  for (size_t i = first; i < n; i++) {
    if (!drawable(y[i], r->log_y) || !isfinite(x[i])) continue;
    if (!have) {
      r->x0 = r->x1 = x[i], r->y0 = r->y1 = y[i];
      have = true;
      continue;
    }
    if (x[i] < r->x0) r->x0 = x[i];
    if (x[i] > r->x1) r->x1 = x[i];
    if (y[i] < r->y0) r->y0 = y[i];
    if (y[i] > r->y1) r->y1 = y[i];
  }
  return have;
}

bool sdw_plot_range_auto(const double *x, const double *y, size_t n, size_t first, bool log_y,
                         sdw_plot_range *out) {
  sdw_plot_range r = {0, 0, 0, 0, log_y};
  if (!scan(x, y, n, first, &r, false)) return false;
  widen(&r);
  *out = r;
  return true;
}

bool sdw_plot_range_extend(const double *x, const double *y, size_t n, size_t first,
                           sdw_plot_range *out) {
  sdw_plot_range r = *out;
  if (!scan(x, y, n, first, &r, true)) return false;
  widen(&r);
  *out = r;
  return true;
}

/* Value -> dot coordinate (px from the left, py from the top). */
static void to_dots(const sdw_braille_canvas *c, const sdw_plot_range *r, double x, double y,
                    double *px, double *py) {
  int W = 2 * c->w, H = 4 * c->h;
  double fx = (x - r->x0) / (r->x1 - r->x0);
  double fy;
  if (r->log_y)
    fy = (log10(y) - log10(r->y0)) / (log10(r->y1) - log10(r->y0));
  else
    fy = (y - r->y0) / (r->y1 - r->y0);
  *px = fx * (W - 1);
  *py = (1.0 - fy) * (H - 1);
}

static void line(sdw_braille_canvas *c, double ax, double ay, double bx, double by, uint8_t layer) {
  /* DDA over the longer axis: one dot per step, rounded to the nearest. */
  double dx = bx - ax, dy = by - ay;
  double len = fabs(dx) > fabs(dy) ? fabs(dx) : fabs(dy);
  int steps = (int)ceil(len);
  if (steps > 100000) steps = 100000; /* far outside the canvas: clipped anyway */
  for (int s = 0; s <= steps; s++) {
    double t = steps ? (double)s / steps : 0.0;
    sdw_braille_set(c, (int)lround(ax + t * dx), (int)lround(ay + t * dy), layer);
  }
}

void sdw_braille_plot(sdw_braille_canvas *c, const double *x, const double *y, size_t n,
                      size_t first, const sdw_plot_range *r, uint8_t layer) {
  if (c->w <= 0 || c->h <= 0) return;
  bool have_prev = false;
  double ppx = 0, ppy = 0;
  for (size_t i = first; i < n; i++) {
    if (!drawable(y[i], r->log_y) || !isfinite(x[i]) || x[i] < r->x0 || x[i] > r->x1) {
      have_prev = false;
      continue;
    }
    double px, py;
    to_dots(c, r, x[i], y[i], &px, &py);
    if (have_prev)
      line(c, ppx, ppy, px, py, layer);
    else
      sdw_braille_set(c, (int)lround(px), (int)lround(py), layer);
    ppx = px, ppy = py, have_prev = true;
  }
}

void sdw_ema_smooth(const double *y, size_t n, double weight, double *out) {
  double last = 0;
  double debias_pow = 1; /* weight^k */
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(y[i])) {
      out[i] = y[i];
      continue;
    }
    last = last * weight + (1 - weight) * y[i];
    debias_pow *= weight;
    out[i] = weight == 0 ? y[i] : last / (1 - debias_pow);
  }
}

size_t sdw_plot_zoom_first(const double *x, size_t n, double last_n) {
  if (n == 0 || !(last_n > 0)) return 0;
  double cut = x[n - 1] - last_n;
  /* Binary search for the first x > cut (x ascending). */
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (x[mid] > cut)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

void sdw_plot_format(double v, char *out, size_t cap) {
  double a = fabs(v);
  if (isnan(v))
    snprintf(out, cap, "nan");
  else if (isinf(v))
    snprintf(out, cap, v > 0 ? "inf" : "-inf");
  else if (a == 0)
    snprintf(out, cap, "0");
  else if (a < 1e-3)
    snprintf(out, cap, "%.2e", v);
  else if (a < 10)
    snprintf(out, cap, "%.4f", v);
  else if (a < 1000)
    snprintf(out, cap, "%.2f", v);
  else if (a < 10000)
    snprintf(out, cap, "%.0f", v);
  else if (a < 1e6)
    snprintf(out, cap, "%.1fk", v / 1e3);
  else if (a < 1e9)
    snprintf(out, cap, "%.1fM", v / 1e6);
  else
    snprintf(out, cap, "%.2e", v);
}
