/* The workbench preview: fitting, area resampling against a supersampled
 * double reference, the xterm palettes against their published formulas by
 * brute force, half-block cells and their ANSI bytes parsed back, and the
 * sixel path decoded back with libsixel's own decoder. */
#include <sixel/sixel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/png_image.h"
#include "tests/test.h"
#include "tui/preview.h"

/* --- fit ---------------------------------------------------------------------- */

SDW_TEST(tui_preview_fit) {
  int w, h;
  sdw_preview_fit(512, 512, 80, 40, &w, &h);
  CHECK(w == 40 && h == 40);
  sdw_preview_fit(1024, 512, 100, 100, &w, &h);
  CHECK(w == 100 && h == 50);
  sdw_preview_fit(3, 1000, 50, 50, &w, &h); /* very tall: at least one column */
  CHECK(w == 1 && h == 50);
  sdw_preview_fit(64, 64, 640, 480, &w, &h); /* small images grow */
  CHECK(w == 480 && h == 480);
  /* property sweep: inside the box, touching it on one side, and the other
   * side the nearest integer to the exact aspect (|error| <= 0.5 pixel) */
  sdw_test_rng rng = sdw_test_rng_make(7);
  for (int t = 0; t < 2000; t++) {
    int sw = sdw_test_rng_int(&rng, 1, 4000), sh = sdw_test_rng_int(&rng, 1, 4000);
    int bw = sdw_test_rng_int(&rng, 1, 3000), bh = sdw_test_rng_int(&rng, 1, 3000);
    sdw_preview_fit(sw, sh, bw, bh, &w, &h);
    bool inside = w >= 1 && h >= 1 && w <= bw && h <= bh;
    double exact_h = (double)w * sh / sw, exact_w = (double)h * sw / sh;
    bool width_bound = w == bw && (fabs(h - exact_h) <= 0.5 + 1e-9 || (h == 1 && exact_h < 1));
    bool height_bound = h == bh && (fabs(w - exact_w) <= 0.5 + 1e-9 || (w == 1 && exact_w < 1));
    if (!inside || !(width_bound || height_bound)) {
      CHECK_MSG(false, "fit %dx%d into %dx%d gave %dx%d", sw, sh, bw, bh, w, h);
      break;
    }
  }
}

/* --- resampling ------------------------------------------------------------------ */

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

/* The exact area average by brute force: both images on a common grid of
 * lcm(sw, dw) x lcm(sh, dh) sub-pixels, each output pixel the plain mean of
 * its sub-pixels, in double. Alpha premultiplied (composited onto black). */
static double reference_scale(const uint8_t *src, int sw, int sh, int ch, int dw, int dh, int x,
                              int y, int k) {
  int lx = sw / gcd(sw, dw) * dw, ly = sh / gcd(sh, dh) * dh;
  int fx = lx / dw, fy = ly / dh;
  double sum = 0;
  for (int v = y * fy; v < (y + 1) * fy; v++) {
    for (int u = x * fx; u < (x + 1) * fx; u++) {
      const uint8_t *p = src + ((size_t)(v / (ly / sh)) * sw + (size_t)(u / (lx / sw))) * ch;
      double c = ch == 1 ? p[0] : p[k];
      if (ch == 4) c *= p[3] / 255.0;
      sum += c;
    }
  }
  return sum / ((double)fx * fy);
}

SDW_TEST(tui_preview_scale_matches_supersampled_reference) {
  sdw_test_rng rng = sdw_test_rng_make(11);
  const int chans[3] = {1, 3, 4};
  for (int t = 0; t < 60; t++) {
    int ch = chans[t % 3];
    int sw = sdw_test_rng_int(&rng, 1, 13), sh = sdw_test_rng_int(&rng, 1, 13);
    int dw = sdw_test_rng_int(&rng, 1, 11), dh = sdw_test_rng_int(&rng, 1, 11);
    uint8_t *src = malloc((size_t)sw * sh * ch);
    uint8_t *dst = sdw_test_alloc_guarded_bytes((size_t)dw * dh * 3, "dst");
    REQUIRE(src && dst);
    for (int i = 0; i < sw * sh * ch; i++)
      src[i] = (uint8_t)sdw_test_rng_int(&rng, 0, 255);
    sdw_preview_scale(src, sw, sh, ch, dst, dw, dh);
    /* got is the exact mean rounded to nearest: within 0.5 of it (plus 1e-6
     * for the double rounding of the weighted sums, ~1e-13 here) */
    double worst = 0;
    for (int y = 0; y < dh; y++)
      for (int x = 0; x < dw; x++)
        for (int k = 0; k < 3; k++) {
          double want = reference_scale(src, sw, sh, ch, dw, dh, x, y, k);
          double e = fabs(dst[((size_t)y * dw + x) * 3 + k] - want);
          if (e > worst) worst = e;
        }
    CHECK_MSG(worst <= 0.5 + 1e-6, "%dx%dx%d -> %dx%d: error %.3f levels", sw, sh, ch, dw, dh,
              worst);
    CHECK_GUARD(dst);
    sdw_test_free_guarded(dst);
    free(src);
  }
}

SDW_TEST(tui_preview_scale_identity_and_integer_factor) {
  enum { W = 6, H = 4 };
  uint8_t src[W * H * 3], dst[W * H * 3];
  for (int i = 0; i < W * H * 3; i++)
    src[i] = (uint8_t)(i * 41 + 3);
  sdw_preview_scale(src, W, H, 3, dst, W, H);
  CHECK(memcmp(src, dst, sizeof src) == 0);
  /* 2x2 blocks of one colour halve to exactly that colour */
  uint8_t big[8 * 6 * 3], small[4 * 3 * 3];
  for (int y = 0; y < 6; y++)
    for (int x = 0; x < 8; x++)
      for (int k = 0; k < 3; k++)
        big[(y * 8 + x) * 3 + k] = (uint8_t)((y / 2) * 80 + (x / 2) * 20 + k);
  sdw_preview_scale(big, 8, 6, 3, small, 4, 3);
  bool same = true;
  for (int y = 0; y < 3; y++)
    for (int x = 0; x < 4; x++)
      for (int k = 0; k < 3; k++)
        same &= small[(y * 4 + x) * 3 + k] == y * 80 + x * 20 + k;
  CHECK(same);
}

/* --- palettes ----------------------------------------------------------------- */

/* xterm's 256colres.pl: cube level i is 0 for i = 0, else 55 + 40 i; grey
 * k (232 + k) is 8 + 10 k. */
static void formula_rgb(int index, int *rgb) {
  if (index >= 232) {
    rgb[0] = rgb[1] = rgb[2] = 8 + 10 * (index - 232);
    return;
  }
  int i = index - 16, l[3] = {i / 36, (i / 6) % 6, i % 6};
  for (int c = 0; c < 3; c++)
    rgb[c] = l[c] ? 55 + 40 * l[c] : 0;
}

static int d2(const int *a, int r, int g, int b) {
  return (a[0] - r) * (a[0] - r) + (a[1] - g) * (a[1] - g) + (a[2] - b) * (a[2] - b);
}

SDW_TEST(tui_preview_xterm256_is_nearest) {
  bool table_ok = true;
  for (int i = 16; i < 256; i++) {
    int want[3];
    uint8_t got[3];
    formula_rgb(i, want);
    sdw_preview_xterm256_rgb(i, got);
    table_ok &= got[0] == want[0] && got[1] == want[1] && got[2] == want[2];
  }
  CHECK(table_ok);
  /* every colour on a 5-step grid plus random ones: the chosen index is
   * among 16-255 and no index of the formula is strictly nearer (ties may
   * go either way) */
  sdw_test_rng rng = sdw_test_rng_make(3);
  int bad = 0;
  for (int t = 0; t < 52 * 52 * 52 + 20000 && bad < 5; t++) {
    int r, g, b;
    if (t < 52 * 52 * 52) {
      r = (t / 2704) * 5, g = (t / 52 % 52) * 5, b = (t % 52) * 5;
    } else {
      r = sdw_test_rng_int(&rng, 0, 255), g = sdw_test_rng_int(&rng, 0, 255);
      b = sdw_test_rng_int(&rng, 0, 255);
    }
    int idx = sdw_preview_xterm256((uint8_t)r, (uint8_t)g, (uint8_t)b);
    int best = 1 << 30;
    for (int i = 16; i < 256; i++) {
      int c[3];
      formula_rgb(i, c);
      int d = d2(c, r, g, b);
      if (d < best) best = d;
    }
    int c[3];
    formula_rgb(idx < 16 ? 16 : idx, c);
    if (idx < 16 || d2(c, r, g, b) != best) {
      bad++;
      CHECK_MSG(false, "(%d,%d,%d) -> %d at distance^2 %d, best %d", r, g, b, idx, d2(c, r, g, b),
                best);
    }
  }
}

SDW_TEST(tui_preview_xterm16_is_nearest) {
  /* xterm's default colours (XTerm-col.ad) */
  static const int k16[16][3] = {{0, 0, 0},       {205, 0, 0},   {0, 205, 0},   {205, 205, 0},
                                 {0, 0, 238},     {205, 0, 205}, {0, 205, 205}, {229, 229, 229},
                                 {127, 127, 127}, {255, 0, 0},   {0, 255, 0},   {255, 255, 0},
                                 {92, 92, 255},   {255, 0, 255}, {0, 255, 255}, {255, 255, 255}};
  for (int i = 0; i < 16; i++) {
    uint8_t got[3];
    sdw_preview_xterm256_rgb(i, got);
    CHECK(got[0] == k16[i][0] && got[1] == k16[i][1] && got[2] == k16[i][2]);
  }
  sdw_test_rng rng = sdw_test_rng_make(5);
  for (int t = 0; t < 20000; t++) {
    int r = sdw_test_rng_int(&rng, 0, 255), g = sdw_test_rng_int(&rng, 0, 255),
        b = sdw_test_rng_int(&rng, 0, 255);
    int idx = sdw_preview_xterm16((uint8_t)r, (uint8_t)g, (uint8_t)b);
    int best = 1 << 30;
    for (int i = 0; i < 16; i++)
      if (d2(k16[i], r, g, b) < best) best = d2(k16[i], r, g, b);
    if (idx > 15 || d2(k16[idx], r, g, b) != best) {
      CHECK_MSG(false, "(%d,%d,%d) -> %d", r, g, b, idx);
      break;
    }
  }
}

/* --- half blocks ---------------------------------------------------------------- */

SDW_TEST(tui_preview_blocks_cells) {
  enum { W = 5, H = 7 }; /* odd height: the last row has no lower half */
  uint8_t rgb[W * H * 3];
  sdw_test_rng rng = sdw_test_rng_make(9);
  for (int i = 0; i < W * H * 3; i++)
    rgb[i] = (uint8_t)sdw_test_rng_int(&rng, 0, 255);
  sdw_preview_cell cells[W * 4];
  sdw_preview_blocks(rgb, W, H, SDW_PREVIEW_BLOCKS_256, cells);
  bool ok = true;
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < W; x++) {
      const sdw_preview_cell *c = &cells[y * W + x];
      const uint8_t *top = rgb + ((2 * y) * W + x) * 3;
      ok &= memcmp(c->top, top, 3) == 0 &&
            c->top_index == sdw_preview_xterm256(top[0], top[1], top[2]);
      if (y < 3) {
        const uint8_t *bot = rgb + ((2 * y + 1) * W + x) * 3;
        ok &= c->has_bottom && memcmp(c->bottom, bot, 3) == 0 &&
              c->bottom_index == sdw_preview_xterm256(bot[0], bot[1], bot[2]);
      } else {
        ok &= !c->has_bottom;
      }
    }
  CHECK(ok);
}

/* What a terminal would show: a tiny ANSI interpreter for the subset the
 * preview emits (DECSC/DECRC, CUP, SGR 0/38/48/30-37/40-47/90-97/100-107/49,
 * U+2580). Colours are stored as 0x1RRGGBB (truecolor), 0x2000000 | index,
 * or 0 for the default. */
typedef struct screen {
  int w, h;
  uint32_t *fg, *bg; /* [h][w], 0xffffffff where nothing was drawn */
  int draws_outside;
  bool saved, restored, reset;
} screen;

static uint32_t sgr_index(int i) { return 0x2000000u | (uint32_t)i; }

static bool interpret(screen *s, const char *bytes, size_t n) {
  int row = 0, col = 0;
  uint32_t fg = 0, bg = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)bytes[i];
    if (c == 0x1b && i + 1 < n && (bytes[i + 1] == '7' || bytes[i + 1] == '8')) {
      if (bytes[i + 1] == '7')
        s->saved = true;
      else
        s->restored = true;
      i += 2;
    } else if (c == 0x1b && i + 1 < n && bytes[i + 1] == '[') {
      int p[8] = {0}, np = 0;
      size_t j = i + 2;
      for (; j < n && ((bytes[j] >= '0' && bytes[j] <= '9') || bytes[j] == ';'); j++) {
        if (bytes[j] == ';') {
          if (np < 7) np++;
        } else {
          p[np] = p[np] * 10 + (bytes[j] - '0');
        }
      }
      np++;
      if (j >= n) return false;
      if (bytes[j] == 'H') {
        row = p[0] - 1;
        col = p[1] - 1;
      } else if (bytes[j] == 'm') {
        for (int k = 0; k < np; k++) {
          if (p[k] == 0 && np == 1)
            s->reset = true, fg = bg = 0;
          else if ((p[k] == 38 || p[k] == 48) && p[k + 1] == 2 && k + 4 < np + 0 + 1) {
            uint32_t v = 0x1000000u | (uint32_t)p[k + 2] << 16 | (uint32_t)p[k + 3] << 8 |
                         (uint32_t)p[k + 4];
            if (p[k] == 38)
              fg = v;
            else
              bg = v;
            k += 4;
          } else if ((p[k] == 38 || p[k] == 48) && p[k + 1] == 5) {
            if (p[k] == 38)
              fg = sgr_index(p[k + 2]);
            else
              bg = sgr_index(p[k + 2]);
            k += 2;
          } else if (p[k] >= 30 && p[k] <= 37)
            fg = sgr_index(p[k] - 30);
          else if (p[k] >= 90 && p[k] <= 97)
            fg = sgr_index(p[k] - 90 + 8);
          else if (p[k] >= 40 && p[k] <= 47)
            bg = sgr_index(p[k] - 40);
          else if (p[k] >= 100 && p[k] <= 107)
            bg = sgr_index(p[k] - 100 + 8);
          else if (p[k] == 49)
            bg = 0;
          else
            return false;
        }
      } else {
        return false;
      }
      i = j + 1;
    } else if (c == 0xe2 && i + 2 < n && (unsigned char)bytes[i + 1] == 0x96 &&
               (unsigned char)bytes[i + 2] == 0x80) {
      if (row >= 0 && row < s->h && col >= 0 && col < s->w) {
        s->fg[row * s->w + col] = fg;
        s->bg[row * s->w + col] = bg;
      } else {
        s->draws_outside++;
      }
      col++;
      i += 3;
    } else {
      return false; /* anything else would be garbage on screen */
    }
  }
  return true;
}

static screen *screen_new(int w, int h) {
  screen *s = calloc(1, sizeof *s);
  s->w = w, s->h = h;
  s->fg = malloc(sizeof(uint32_t) * w * h);
  s->bg = malloc(sizeof(uint32_t) * w * h);
  memset(s->fg, 0xff, sizeof(uint32_t) * w * h);
  memset(s->bg, 0xff, sizeof(uint32_t) * w * h);
  return s;
}

static void screen_free(screen *s) {
  free(s->fg);
  free(s->bg);
  free(s);
}

static uint32_t want_color(sdw_preview_mode mode, const uint8_t *p) {
  if (mode == SDW_PREVIEW_BLOCKS_TRUE)
    return 0x1000000u | (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
  if (mode == SDW_PREVIEW_BLOCKS_256) return sgr_index(sdw_preview_xterm256(p[0], p[1], p[2]));
  return sgr_index(sdw_preview_xterm16(p[0], p[1], p[2]));
}

SDW_TEST(tui_preview_blocks_emit_parsed_back) {
  /* an image that already fits: 12 x 9 half-block pixels in 12 x 5 cells of
   * 10 x 20 pixels (a half block is square), so the render is the image
   * itself and every cell must show its two pixels exactly (truecolor) or
   * their nearest palette entries (256 / 16) */
  enum { W = 12, H = 9 };
  uint8_t rgb[W * H * 3];
  sdw_test_rng rng = sdw_test_rng_make(21);
  for (int i = 0; i < W * H * 3; i++)
    rgb[i] = (uint8_t)sdw_test_rng_int(&rng, 0, 255);
  const sdw_preview_mode modes[3] = {SDW_PREVIEW_BLOCKS_TRUE, SDW_PREVIEW_BLOCKS_256,
                                     SDW_PREVIEW_BLOCKS_16};
  for (int m = 0; m < 3; m++) {
    sdw_preview pv;
    sdw_preview_init(&pv);
    CHECK_OK(sdw_preview_set_pixels(&pv, rgb, W, H, 3));
    CHECK_OK(sdw_preview_render(&pv, modes[m], 12, 5, 10, 20));
    CHECK(pv.img_w == W && pv.img_h == H && pv.used_cols == 12 && pv.used_rows == 5);
    char *bytes;
    size_t n;
    CHECK_OK(sdw_preview_emit(&pv, 3, 7, &bytes, &n));
    screen *s = screen_new(40, 12);
    CHECK_MSG(interpret(s, bytes, n), "mode %d: unexpected bytes", m);
    CHECK(s->saved && s->restored && s->reset && s->draws_outside == 0);
    CHECK(n >= 2 && memcmp(bytes + n - 2,
                           "\x1b"
                           "8",
                           2) == 0);
    bool ok = true;
    for (int y = 0; y < s->h; y++)
      for (int x = 0; x < s->w; x++) {
        int cx = x - 7, cy = y - 3;
        bool in = cx >= 0 && cx < 12 && cy >= 0 && cy < 5;
        uint32_t fg = s->fg[y * s->w + x], bg = s->bg[y * s->w + x];
        if (!in) {
          ok &= fg == 0xffffffffu; /* nothing drawn outside the rectangle */
          continue;
        }
        ok &= fg == want_color(modes[m], rgb + ((2 * cy) * W + cx) * 3);
        ok &= 2 * cy + 1 < H ? bg == want_color(modes[m], rgb + ((2 * cy + 1) * W + cx) * 3)
                             : bg == 0; /* default background under the last row */
      }
    CHECK_MSG(ok, "mode %s: screen differs from the image", sdw_preview_mode_name(modes[m]));
    screen_free(s);
    free(bytes);
    sdw_preview_free(&pv);
  }
}

SDW_TEST(tui_preview_blocks_fit_keeps_aspect) {
  /* a 200 x 100 image in 40 x 30 cells of 8 x 16: screen box 320 x 480,
   * fit 320 x 160, i.e. 40 cells wide and 160 / 8 = 20 half blocks tall */
  uint8_t *img = calloc(200 * 100, 3);
  REQUIRE(img);
  sdw_preview pv;
  sdw_preview_init(&pv);
  CHECK_OK(sdw_preview_set_pixels(&pv, img, 200, 100, 3));
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_BLOCKS_TRUE, 40, 30, 8, 16));
  CHECK(pv.img_w == 40 && pv.img_h == 20 && pv.used_rows == 10);
  /* unknown cell size: 10 x 20 assumed, a half block square */
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_BLOCKS_256, 40, 30, 0, 0));
  CHECK(pv.img_w == 40 && pv.img_h == 20);
  sdw_preview_free(&pv);
  free(img);
}

/* --- sixel -------------------------------------------------------------------- */

/* Decodes sixel bytes with libsixel into rgb[h][w][3] (malloc'd). */
static uint8_t *sixel_to_rgb(const char *bytes, size_t n, int *w, int *h) {
  sixel_allocator_t *alloc = NULL;
  if (SIXEL_FAILED(sixel_allocator_new(&alloc, malloc, calloc, realloc, free))) return NULL;
  unsigned char *pixels = NULL, *palette = NULL;
  int ncolors = 0;
  /* libsixel's decoder may scribble on its input: give it a copy */
  unsigned char *copy = malloc(n + 1);
  memcpy(copy, bytes, n + 1);
  SIXELSTATUS s = sixel_decode_raw(copy, (int)n, &pixels, w, h, &palette, &ncolors, alloc);
  free(copy);
  uint8_t *rgb = NULL;
  if (SIXEL_SUCCEEDED(s)) {
    rgb = malloc((size_t)*w * *h * 3);
    for (int i = 0; i < *w * *h; i++)
      memcpy(rgb + 3 * i, palette + 3 * pixels[i], 3);
  }
  sixel_allocator_free(alloc, pixels);
  sixel_allocator_free(alloc, palette);
  sixel_allocator_unref(alloc);
  return rgb;
}

/* The largest |a - b| over n bytes. */
static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n) {
  int worst = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    if (d > worst) worst = d;
  }
  return worst;
}

SDW_TEST(tui_preview_sixel_round_trip_exact_palette) {
  /* 200 distinct colours with every channel a multiple of 51: sixel
   * palettes are in percent and 51 = 20%, so these survive exactly;
   * <= 256 colours means no quantisation: the decode must be identical */
  enum { W = 37, H = 29 };
  uint8_t rgb[W * H * 3];
  sdw_test_rng rng = sdw_test_rng_make(1);
  for (int i = 0; i < W * H; i++) {
    int c = sdw_test_rng_int(&rng, 0, 199); /* 200 of the 216 colours 6x6x6 */
    rgb[3 * i] = (uint8_t)(51 * (c / 36)), rgb[3 * i + 1] = (uint8_t)(51 * (c / 6 % 6));
    rgb[3 * i + 2] = (uint8_t)(51 * (c % 6));
  }
  char *bytes;
  size_t n;
  CHECK_OK(sdw_preview_sixel_encode(rgb, W, H, 256, &bytes, &n));
  REQUIRE(bytes != NULL);
  CHECK(n > 4 && memcmp(bytes, "\x1bP", 2) == 0 && memcmp(bytes + n - 2, "\x1b\\", 2) == 0);
  CHECK(strlen(bytes) == n);
  int w = 0, h = 0;
  uint8_t *back = sixel_to_rgb(bytes, n, &w, &h);
  REQUIRE(back != NULL);
  CHECK(w == W && h == H);
  CHECK_MSG(memcmp(back, rgb, sizeof rgb) == 0, "max error %d",
            max_abs_diff(back, rgb, sizeof rgb));
  free(back);
  free(bytes);
  /* one colour only (libsixel needs two palette entries) */
  uint8_t flat[4 * 7 * 3];
  for (int i = 0; i < 4 * 7; i++)
    flat[3 * i] = 102, flat[3 * i + 1] = 204, flat[3 * i + 2] = 0;
  CHECK_OK(sdw_preview_sixel_encode(flat, 4, 7, 256, &bytes, &n));
  back = sixel_to_rgb(bytes, n, &w, &h);
  REQUIRE(back != NULL);
  CHECK(w == 4 && h == 7 && memcmp(back, flat, sizeof flat) == 0);
  free(back);
  free(bytes);
}

SDW_TEST(tui_preview_sixel_round_trip_arbitrary_colours) {
  /* 256 arbitrary colours: still no quantisation, but sixel stores each
   * channel as a whole percent p = round(100 v / 255) and a decoder returns
   * round(255 p / 100), which is within 1.275 + 0.5 of v, so within 1 for
   * an integer v: tolerance 1 level */
  enum { W = 50, H = 40 };
  uint8_t pal[256 * 3], rgb[W * H * 3];
  sdw_test_rng rng = sdw_test_rng_make(2);
  for (int i = 0; i < 256 * 3; i++)
    pal[i] = (uint8_t)sdw_test_rng_int(&rng, 0, 255);
  for (int i = 0; i < W * H; i++)
    memcpy(rgb + 3 * i, pal + 3 * (i % 256), 3);
  char *bytes;
  size_t n;
  CHECK_OK(sdw_preview_sixel_encode(rgb, W, H, 256, &bytes, &n));
  int w = 0, h = 0;
  uint8_t *back = sixel_to_rgb(bytes, n, &w, &h);
  REQUIRE(back != NULL);
  CHECK(w == W && h == H);
  int err = max_abs_diff(back, rgb, sizeof rgb);
  CHECK_MSG(err <= 1, "max error %d levels", err);
  free(back);
  free(bytes);
}

SDW_TEST(tui_preview_sixel_many_colours_quantised) {
  /* a smooth 64 x 64 red/green ramp has 4096 colours: median cut to 256
   * boxes. Bound: 256 boxes over the 252 x 252 (R, G) square are about 16
   * levels on a side, so a box's mean is within ~8 of its colours plus 1
   * for the percent palette; allow max 16 (uneven boxes) and mean 6
   * (libsixel 1.10.3 measured: max 13, mean 3.1). */
  enum { W = 64, H = 64 };
  uint8_t *rgb = malloc(W * H * 3);
  REQUIRE(rgb);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *p = rgb + (y * W + x) * 3;
      p[0] = (uint8_t)(x * 4), p[1] = (uint8_t)(y * 4), p[2] = 128;
    }
  char *bytes;
  size_t n;
  CHECK_OK(sdw_preview_sixel_encode(rgb, W, H, 256, &bytes, &n));
  int w = 0, h = 0;
  uint8_t *back = sixel_to_rgb(bytes, n, &w, &h);
  REQUIRE(back != NULL);
  CHECK(w == W && h == H);
  double sum = 0;
  for (int i = 0; i < W * H * 3; i++)
    sum += abs((int)back[i] - (int)rgb[i]);
  int worst = max_abs_diff(back, rgb, W * H * 3);
  CHECK_MSG(worst <= 16 && sum / (W * H * 3) <= 6.0, "max %d, mean %.2f levels", worst,
            sum / (W * H * 3));
  free(back);
  free(bytes);
  /* bad arguments */
  CHECK(sdw_preview_sixel_encode(rgb, 0, 5, 256, &bytes, &n) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_preview_sixel_encode(rgb, 5, 5, 300, &bytes, &n) == SDW_ERR_INVALID_ARGUMENT);
  free(rgb);
}

SDW_TEST(tui_preview_png_to_sixel_on_screen) {
  /* The whole path as the app runs it: PNG file -> load -> fit into 4 x 2
   * cells of 8 x 12 pixels (a 32 x 24 box, whole sixel bands) -> sixel ->
   * emitted bytes. The 64 x 48 source is made of 2 x 2 blocks of
   * 20%-step colours, so the halved image has the same <= 256 colours and
   * the decode must equal it exactly. */
  char path[512];
  snprintf(path, sizeof path, "%s/grid.png", sdw_test_tmpdir());
  enum { SW = 64, SH = 48, DW = 32, DH = 24 };
  uint8_t *src = malloc(SW * SH * 3), want[DW * DH * 3];
  REQUIRE(src);
  sdw_test_rng rng = sdw_test_rng_make(4);
  for (int y = 0; y < DH; y++)
    for (int x = 0; x < DW; x++) {
      int c = sdw_test_rng_int(&rng, 0, 215);
      uint8_t col[3] = {(uint8_t)(51 * (c / 36)), (uint8_t)(51 * (c / 6 % 6)),
                        (uint8_t)(51 * (c % 6))};
      memcpy(want + (y * DW + x) * 3, col, 3);
      for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++)
          memcpy(src + ((2 * y + dy) * SW + 2 * x + dx) * 3, col, 3);
    }
  CHECK_OK(sdw_png_write(path, src, SW, SH, 3, NULL, 0));
  sdw_preview pv;
  sdw_preview_init(&pv);
  CHECK_OK(sdw_preview_load_png(&pv, path));
  CHECK(pv.width == SW && pv.height == SH);
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 4, 2, 8, 12));
  CHECK(pv.img_w == DW && pv.img_h == DH && pv.used_cols == 4 && pv.used_rows == 2);
  char *bytes;
  size_t n;
  CHECK_OK(sdw_preview_emit(&pv, 5, 10, &bytes, &n));
  /* DECSC, CUP to row 6 column 11 (1-based), the image, DECRC */
  const char *head = "\x1b"
                     "7\x1b[6;11H";
  REQUIRE(n > strlen(head) + 2 && memcmp(bytes, head, strlen(head)) == 0);
  CHECK(memcmp(bytes + n - 2,
               "\x1b"
               "8",
               2) == 0);
  int w = 0, h = 0;
  uint8_t *back = sixel_to_rgb(bytes + strlen(head), n - strlen(head) - 2, &w, &h);
  REQUIRE(back != NULL);
  CHECK(w == DW && h == DH);
  if (w == DW && h == DH)
    CHECK_MSG(memcmp(back, want, sizeof want) == 0, "max error %d",
              max_abs_diff(back, want, sizeof want));
  free(back);
  free(bytes);
  /* a box that is not whole bands: 3 rows of 10 px = 30 -> fits in 30 (5 bands);
   * 2 rows of 11 px = 22 -> 18 (3 bands): the image never leaves the box */
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 40, 2, 8, 11));
  CHECK(pv.img_h == 18 && pv.img_w == 24 && pv.used_rows == 2);
  sdw_preview_free(&pv);
  free(src);
}

SDW_TEST(tui_preview_render_cache_text_and_errors) {
  sdw_preview pv;
  sdw_preview_init(&pv);
  CHECK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 10, 10, 8, 16) == SDW_ERR_INVALID_ARGUMENT);
  char *bytes;
  size_t n;
  CHECK_OK(sdw_preview_emit(&pv, 0, 0, &bytes, &n)); /* nothing rendered: empty */
  CHECK(n == 0 && bytes && bytes[0] == '\0');
  free(bytes);
  uint8_t grey[6 * 4];
  for (int i = 0; i < 24; i++)
    grey[i] = (uint8_t)(i * 10);
  CHECK_OK(sdw_preview_set_pixels(&pv, grey, 6, 4, 1));
  CHECK(pv.rgb[3 * 5] == 50 && pv.rgb[3 * 5 + 1] == 50 && pv.rgb[3 * 5 + 2] == 50);
  CHECK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 0, 10, 8, 16) == SDW_ERR_INVALID_ARGUMENT);
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 10, 10, 8, 16));
  const char *first = pv.sixel;
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_SIXEL, 10, 10, 8, 16)); /* cached */
  CHECK(pv.sixel == first);
  CHECK_OK(sdw_preview_render(&pv, SDW_PREVIEW_TEXT, 10, 10, 8, 16));
  CHECK(pv.rendered && pv.sixel == NULL && pv.cells == NULL);
  CHECK_OK(sdw_preview_emit(&pv, 0, 0, &bytes, &n));
  CHECK(n == 0);
  free(bytes);
  CHECK(sdw_preview_set_pixels(&pv, grey, 6, 4, 2) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(pv.rgb != NULL && pv.width == 6); /* the old image stays */
  CHECK(sdw_preview_load_png(&pv, "/nonexistent/x.png") != SDW_OK);
  CHECK(pv.rgb != NULL && pv.width == 6);
  sdw_preview_free(&pv);
  CHECK(pv.rgb == NULL && pv.width == 0);
}

SDW_TEST(tui_preview_rgba_composited_on_black) {
  uint8_t rgba[2 * 4] = {200, 100, 50, 255, 200, 100, 50, 51};
  sdw_preview pv;
  sdw_preview_init(&pv);
  CHECK_OK(sdw_preview_set_pixels(&pv, rgba, 2, 1, 4));
  /* opaque unchanged; alpha 51 = 20%: 40, 20, 10 */
  CHECK(pv.rgb[0] == 200 && pv.rgb[1] == 100 && pv.rgb[2] == 50);
  CHECK(pv.rgb[3] == 40 && pv.rgb[4] == 20 && pv.rgb[5] == 10);
  sdw_preview_free(&pv);
}

SDW_TEST(tui_preview_choose_mode) {
  sdw_termcaps caps = {0};
  caps.color = SDW_COLOR_256;
  CHECK(sdw_preview_choose(&caps) == SDW_PREVIEW_BLOCKS_256);
  caps.sixel = true;
  CHECK(sdw_preview_choose(&caps) == SDW_PREVIEW_SIXEL);
  caps.color = SDW_COLOR_NONE; /* NO_COLOR wins over sixel */
  CHECK(sdw_preview_choose(&caps) == SDW_PREVIEW_TEXT);
  caps.sixel = false;
  caps.color = SDW_COLOR_TRUE;
  CHECK(sdw_preview_choose(&caps) == SDW_PREVIEW_BLOCKS_TRUE);
  caps.color = SDW_COLOR_16;
  CHECK(sdw_preview_choose(&caps) == SDW_PREVIEW_BLOCKS_16);
  CHECK(strcmp(sdw_preview_mode_name(SDW_PREVIEW_SIXEL), "sixel") == 0);
}
