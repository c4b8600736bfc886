/* tui/curves: braille dots against the Unicode chart, the TensorBoard
 * smoothing against values worked out by hand, line drawing, ranges, zoom
 * and number formatting. Exact or 1e-12 (a handful of double operations). */
#include <math.h>
#include <string.h>

#include "tests/test.h"
#include "tui/curves.h"

SDW_TEST(tui_braille_dots_match_unicode) {
  /* From the Unicode braille chart: the single-dot patterns. Left column
   * dots 1,2,3,7 (top to bottom), right column 4,5,6,8. */
  struct {
    int dx, dy;
    uint32_t cp;
  } dots[8] = {{0, 0, 0x2801}, {0, 1, 0x2802}, {0, 2, 0x2804}, {0, 3, 0x2840},
               {1, 0, 0x2808}, {1, 1, 0x2810}, {1, 2, 0x2820}, {1, 3, 0x2880}};
  uint8_t all = 0;
  for (int i = 0; i < 8; i++) {
    uint8_t bit = sdw_braille_dot_bit(dots[i].dx, dots[i].dy);
    CHECK_MSG(sdw_braille_char(bit) == dots[i].cp, "dot (%d,%d): U+%04X, want U+%04X", dots[i].dx,
              dots[i].dy, sdw_braille_char(bit), dots[i].cp);
    all |= bit;
  }
  CHECK(sdw_braille_char(all) == 0x28FF); /* U+28FF: all eight dots */
  CHECK(sdw_braille_dot_bit(2, 0) == 0 && sdw_braille_dot_bit(0, 4) == 0);
  sdw_braille_canvas c;
  REQUIRE(sdw_braille_init(&c, 3, 2));
  sdw_braille_set(&c, 5, 7, 1); /* cell (2,1), right column, bottom row: dot 8 */
  sdw_braille_set(&c, 0, 0, 2);
  sdw_braille_set(&c, 6, 0, 1);  /* outside: ignored */
  sdw_braille_set(&c, -1, 0, 1); /* outside: ignored */
  CHECK(c.bits[1 * 3 + 2] == 0x80 && c.layer[1 * 3 + 2] == 1);
  CHECK(c.bits[0] == 0x01 && c.layer[0] == 2);
  int set = 0;
  for (int i = 0; i < 6; i++)
    set += c.bits[i] != 0;
  CHECK(set == 2);
  sdw_braille_free(&c);
}

SDW_TEST(tui_ema_smoothing_by_hand) {
  /* weight 0.5 on 1, 2, 3:
   *   last = 0.5,  debias 1 - 0.5   = 0.5   -> 1
   *   last = 1.25, debias 1 - 0.25  = 0.75  -> 5/3
   *   last = 2.125,debias 1 - 0.125 = 0.875 -> 17/7 */
  double y[3] = {1, 2, 3}, out[3];
  sdw_ema_smooth(y, 3, 0.5, out);
  CHECK(fabs(out[0] - 1.0) < 1e-12 && fabs(out[1] - 5.0 / 3) < 1e-12 &&
        fabs(out[2] - 17.0 / 7) < 1e-12);
  /* A NaN passes through and is left out of the average: 1, NaN, then
   * last = 0.25 + 1.5 = 1.75 over debias 0.75 -> 7/3. */
  double yn[3] = {1, NAN, 3};
  sdw_ema_smooth(yn, 3, 0.5, out);
  CHECK(fabs(out[0] - 1) < 1e-12 && isnan(out[1]) && fabs(out[2] - 7.0 / 3) < 1e-12);
  /* Weight 0 is the raw series. */
  double z[4] = {4, -1, 2.5, 8}, o[4];
  sdw_ema_smooth(z, 4, 0.0, o);
  CHECK(memcmp(z, o, sizeof z) == 0);
  /* A constant series stays constant at any weight (the debiasing). */
  double k[50], ko[50];
  for (int i = 0; i < 50; i++)
    k[i] = 0.25;
  sdw_ema_smooth(k, 50, 0.99, ko);
  for (int i = 0; i < 50; i++)
    CHECK(fabs(ko[i] - 0.25) < 1e-12);
}

SDW_TEST(tui_plot_lines) {
  /* A 10 x 2 cell canvas is 20 x 8 dots. A line from the bottom-left to the
   * top-right corner of the range sets both corner dots and exactly one dot
   * per dot column (it is wider than tall). */
  sdw_braille_canvas c;
  REQUIRE(sdw_braille_init(&c, 10, 2));
  double x[2] = {0, 100}, y[2] = {-1, 1};
  sdw_plot_range r;
  REQUIRE(sdw_plot_range_auto(x, y, 2, 0, false, &r));
  CHECK(r.x0 == 0 && r.x1 == 100 && r.y0 == -1 && r.y1 == 1);
  sdw_braille_plot(&c, x, y, 2, 0, &r, 1);
  CHECK(c.bits[1 * 10 + 0] & sdw_braille_dot_bit(0, 3)); /* dot (0, 7) */
  CHECK(c.bits[0 * 10 + 9] & sdw_braille_dot_bit(1, 0)); /* dot (19, 0) */
  for (int px = 0; px < 20; px++) {
    int count = 0;
    for (int py = 0; py < 8; py++)
      count += (c.bits[(py / 4) * 10 + px / 2] & sdw_braille_dot_bit(px % 2, py % 4)) != 0;
    CHECK_MSG(count == 1, "column %d has %d dots", px, count);
  }
  /* A flat series: padded range, all dots in one row. */
  sdw_braille_clear(&c);
  double fx[5] = {1, 2, 3, 4, 5}, fy[5] = {2, 2, 2, 2, 2};
  REQUIRE(sdw_plot_range_auto(fx, fy, 5, 0, false, &r));
  CHECK(r.y0 < 2 && r.y1 > 2);
  sdw_braille_plot(&c, fx, fy, 5, 0, &r, 1);
  int rows_used = 0;
  for (int py = 0; py < 8; py++) {
    bool any = false;
    for (int px = 0; px < 20; px++)
      any |= (c.bits[(py / 4) * 10 + px / 2] & sdw_braille_dot_bit(px % 2, py % 4)) != 0;
    rows_used += any;
  }
  CHECK(rows_used == 1);
  /* Log scale skips non-positive values; a NaN breaks the line. */
  double lx[4] = {0, 1, 2, 3}, ly[4] = {-1, 10, NAN, 1000};
  REQUIRE(sdw_plot_range_auto(lx, ly, 4, 0, true, &r));
  CHECK(r.y0 == 10 && r.y1 == 1000 && r.x0 == 1 && r.x1 == 3);
  sdw_braille_clear(&c);
  sdw_braille_plot(&c, lx, ly, 4, 0, &r, 1);
  int dots = 0;
  for (int i = 0; i < 20; i++)
    for (uint8_t b = c.bits[i]; b; b &= (uint8_t)(b - 1))
      dots++;
  CHECK(dots == 2); /* two isolated points, no segment across the NaN */
  double none[2] = {NAN, -5};
  CHECK(!sdw_plot_range_auto(lx, none, 2, 0, true, &r));
  sdw_braille_free(&c);
}

SDW_TEST(tui_plot_zoom_and_format) {
  /* zoom_first against a linear search over ascending steps with gaps. */
  sdw_test_rng rng = sdw_test_rng_make(7);
  double x[300];
  double s = 0;
  for (int i = 0; i < 300; i++)
    x[i] = s += 1 + sdw_test_rng_int(&rng, 0, 4);
  double windows[] = {0, 1, 5, 37, 100, 1e9};
  for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
    size_t want = 0;
    if (windows[w] > 0)
      while (want < 300 && !(x[want] > x[299] - windows[w]))
        want++;
    CHECK_MSG(sdw_plot_zoom_first(x, 300, windows[w]) == want, "window %g", windows[w]);
  }
  CHECK(sdw_plot_zoom_first(x, 0, 10) == 0);
  char b[32];
  sdw_plot_format(0.12345, b, sizeof b);
  CHECK(strcmp(b, "0.1235") == 0);
  sdw_plot_format(12.345, b, sizeof b);
  CHECK(strcmp(b, "12.35") == 0);
  sdw_plot_format(1234.4, b, sizeof b);
  CHECK(strcmp(b, "1234") == 0);
  sdw_plot_format(12345, b, sizeof b);
  CHECK(strcmp(b, "12.3k") == 0);
  sdw_plot_format(1e-5, b, sizeof b);
  CHECK(strcmp(b, "1.00e-05") == 0);
  sdw_plot_format(NAN, b, sizeof b);
  CHECK(strcmp(b, "nan") == 0);
  sdw_plot_format(0, b, sizeof b);
  CHECK(strcmp(b, "0") == 0);
}
