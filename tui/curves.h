/* Curves drawn with Unicode braille: a canvas of w x h cells is a bitmap of
 * 2w x 4h dots (each cell one of U+2800..U+28FF). Pure data in, cells out;
 * tested headless (tests/test_tui_curves.c).
 *
 * Dot numbering follows Unicode: in a cell, the left column holds dots 1,2,3,7
 * (top to bottom) and the right column dots 4,5,6,8; dot k is bit k-1 of the
 * offset from U+2800.
 */
#ifndef SDW_TUI_CURVES_H
#define SDW_TUI_CURVES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sdw_braille_canvas {
  int w, h;       /* cells */
  uint8_t *bits;  /* [h][w] dot bits, owned */
  uint8_t *layer; /* [h][w] highest layer drawn in the cell (0: none), owned */
} sdw_braille_canvas;

bool sdw_braille_init(sdw_braille_canvas *c, int w, int h); /* false on out of memory */
void sdw_braille_free(sdw_braille_canvas *c);
void sdw_braille_clear(sdw_braille_canvas *c);
/* The bit of dot (dx, dy) in a cell, dx in {0,1}, dy in 0..3 (top first). */
uint8_t sdw_braille_dot_bit(int dx, int dy);
/* U+2800 + bits. */
uint32_t sdw_braille_char(uint8_t bits);
/* Sets dot (px, py), px in [0, 2w), py in [0, 4h) from the top; outside is
 * ignored. layer (1..255) records which series drew the cell: the highest
 * one wins the cell's colour. */
void sdw_braille_set(sdw_braille_canvas *c, int px, int py, uint8_t layer);

/* The value window of a plot. */
typedef struct sdw_plot_range {
  double x0, x1, y0, y1;
  bool log_y; /* y axis in log10 (non-positive values are not drawn) */
} sdw_plot_range;

/* Smallest range holding the finite points (positive ones under log_y) with
 * index >= first; a flat series gets +-5% (or +-1 around 0). Returns false
 * when no point qualifies. */
bool sdw_plot_range_auto(const double *x, const double *y, size_t n, size_t first, bool log_y,
                         sdw_plot_range *out);
/* Widens out to also hold y's points (same rules); false when none qualify. */
bool sdw_plot_range_extend(const double *x, const double *y, size_t n, size_t first,
                           sdw_plot_range *out);
/* Draws the series (points from index first on) as line segments between
 * consecutive drawable points; a non-finite y breaks the line. */
void sdw_braille_plot(sdw_braille_canvas *c, const double *x, const double *y, size_t n,
                      size_t first, const sdw_plot_range *r, uint8_t layer);

/* TensorBoard's smoothing: a debiased exponential moving average,
 *   last = last * weight + (1 - weight) * y_i;  out_i = last / (1 - weight^k)
 * where k counts the finite values so far; a non-finite y_i is copied
 * through and does not enter the average. weight in [0, 1). */
void sdw_ema_smooth(const double *y, size_t n, double weight, double *out);

/* Index of the first point of the last-N-steps zoom: the first i with
 * x[i] > x[n-1] - last_n (x ascending); 0 when last_n <= 0 or n == 0. */
size_t sdw_plot_zoom_first(const double *x, size_t n, double last_n);

/* A number in at most 8 columns for axis labels and readouts: "0.1234",
 * "12.35", "1234", "12.3k", "1.23e-05", "nan". */
void sdw_plot_format(double v, char *out, size_t cap);

#endif
