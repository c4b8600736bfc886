/* The preview object: image, fit, resampling, render cache and terminal
 * bytes (see preview.h; sixel and half blocks live in preview_sixel.c and
 * preview_blocks.c). */
#include "tui/preview.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/png_image.h"

enum { DEFAULT_CELL_W = 10, DEFAULT_CELL_H = 20 };

sdw_preview_mode sdw_preview_choose(const sdw_termcaps *caps) {
  if (caps->color == SDW_COLOR_NONE) return SDW_PREVIEW_TEXT; /* NO_COLOR means no image either */
  if (caps->sixel) return SDW_PREVIEW_SIXEL;
  switch (caps->color) {
  case SDW_COLOR_TRUE: return SDW_PREVIEW_BLOCKS_TRUE;
  case SDW_COLOR_256: return SDW_PREVIEW_BLOCKS_256;
  case SDW_COLOR_16: return SDW_PREVIEW_BLOCKS_16;
  default: return SDW_PREVIEW_TEXT;
  }
}

const char *sdw_preview_mode_name(sdw_preview_mode mode) {
  switch (mode) {
  case SDW_PREVIEW_SIXEL: return "sixel";
  case SDW_PREVIEW_BLOCKS_TRUE: return "truecolor blocks";
  case SDW_PREVIEW_BLOCKS_256: return "256-colour blocks";
  case SDW_PREVIEW_BLOCKS_16: return "16-colour blocks";
  default: return "text";
  }
}

void sdw_preview_init(sdw_preview *p) { memset(p, 0, sizeof *p); }

static void drop_render(sdw_preview *p) {
  free(p->sixel);
  free(p->cells);
  p->sixel = NULL;
  p->sixel_len = 0;
  p->cells = NULL;
  p->rendered = false;
  p->img_w = p->img_h = p->used_cols = p->used_rows = 0;
}

void sdw_preview_free(sdw_preview *p) {
  drop_render(p);
  free(p->rgb);
  sdw_preview_init(p);
}

sdw_status sdw_preview_set_pixels(sdw_preview *p, const uint8_t *pixels, int width, int height,
                                  int channels) {
  if (width < 1 || height < 1 || (channels != 1 && channels != 3 && channels != 4))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "preview: bad image %dx%d with %d channels", width,
                    height, channels);
  size_t npix = (size_t)width * (size_t)height;
  uint8_t *rgb = malloc(npix * 3);
  if (!rgb)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "preview: out of memory for %dx%d", width, height);
  /* same-size resampling is the identity and does the channel conversion */
  sdw_preview_scale(pixels, width, height, channels, rgb, width, height);
  drop_render(p);
  free(p->rgb);
  p->rgb = rgb;
  p->width = width;
  p->height = height;
  return SDW_OK;
}

sdw_status sdw_preview_load_png(sdw_preview *p, const char *path) {
  sdw_png_image img;
  SDW_TRY(sdw_png_read(path, (size_t)64 << 20, &img));
  sdw_status st = sdw_preview_set_pixels(p, img.pixels, img.width, img.height, img.channels);
  sdw_png_image_free(&img);
  if (st != SDW_OK) sdw_error_prefix("%s", path);
  return st;
}

void sdw_preview_fit(int src_w, int src_h, int box_w, int box_h, int *w, int *h) {
  if (src_w < 1) src_w = 1;
  if (src_h < 1) src_h = 1;
  if (box_w < 1) box_w = 1;
  if (box_h < 1) box_h = 1;
  /* full width first; if that is too tall, full height (rounded to nearest) */
  int64_t fw = box_w, fh = ((int64_t)box_w * src_h * 2 + src_w) / (2 * (int64_t)src_w);
  if (fh > box_h) {
    fh = box_h;
    fw = ((int64_t)box_h * src_w * 2 + src_h) / (2 * (int64_t)src_h);
    if (fw > box_w) fw = box_w;
  }
  *w = fw < 1 ? 1 : (int)fw;
  *h = fh < 1 ? 1 : (int)fh;
}

/* The RGB of source pixel i, alpha composited onto black, as doubles. */
static void source_rgb(const uint8_t *src, size_t i, int channels, double *c) {
  const uint8_t *s = src + i * (size_t)channels;
  if (channels == 1) {
    c[0] = c[1] = c[2] = s[0];
  } else if (channels == 3) {
    c[0] = s[0], c[1] = s[1], c[2] = s[2];
  } else {
    double a = s[3] / 255.0;
    c[0] = s[0] * a, c[1] = s[1] * a, c[2] = s[2] * a;
  }
}

void sdw_preview_scale(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst, int dw,
                       int dh) {
  /* In units of 1/(dw) source pixels horizontally, source pixel i spans
   * [i*dw, (i+1)*dw) and output x spans [x*sw, (x+1)*sw): integer overlaps,
   * each output's weights sum to sw (and likewise vertically). */
  double norm = 1.0 / ((double)sw * (double)sh);
  for (int y = 0; y < dh; y++) {
    int64_t y0 = (int64_t)y * sh, y1 = y0 + sh;
    int j0 = (int)(y0 / dh), j1 = (int)((y1 + dh - 1) / dh);
    for (int x = 0; x < dw; x++) {
      int64_t x0 = (int64_t)x * sw, x1 = x0 + sw;
      int i0 = (int)(x0 / dw), i1 = (int)((x1 + dw - 1) / dw);
      double acc[3] = {0, 0, 0};
      for (int j = j0; j < j1 && j < sh; j++) {
        int64_t a = (int64_t)j * dh > y0 ? (int64_t)j * dh : y0;
        int64_t b = (int64_t)(j + 1) * dh < y1 ? (int64_t)(j + 1) * dh : y1;
        double wy = (double)(b - a);
        for (int i = i0; i < i1 && i < sw; i++) {
          int64_t c0 = (int64_t)i * dw > x0 ? (int64_t)i * dw : x0;
          int64_t c1 = (int64_t)(i + 1) * dw < x1 ? (int64_t)(i + 1) * dw : x1;
          double wgt = wy * (double)(c1 - c0);
          double c[3];
          source_rgb(src, (size_t)j * sw + i, channels, c);
          acc[0] += wgt * c[0];
          acc[1] += wgt * c[1];
          acc[2] += wgt * c[2];
        }
      }
      uint8_t *d = dst + ((size_t)y * dw + x) * 3;
      for (int k = 0; k < 3; k++) {
        double v = acc[k] * norm + 0.5;
        d[k] = v >= 255.0 ? 255 : v <= 0.0 ? 0 : (uint8_t)v;
      }
    }
  }
}

sdw_status sdw_preview_render(sdw_preview *p, sdw_preview_mode mode, int cols, int rows, int cell_w,
                              int cell_h) {
  if (!p->rgb) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "preview: no image loaded");
  if (cols < 1 || rows < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "preview: no room (%d x %d cells)", cols, rows);
  if (cell_w <= 0 || cell_h <= 0) {
    cell_w = DEFAULT_CELL_W;
    cell_h = DEFAULT_CELL_H;
  }
  if (p->rendered && p->mode == mode && p->cols == cols && p->rows == rows && p->cell_w == cell_w &&
      p->cell_h == cell_h)
    return SDW_OK;
  drop_render(p);
  p->mode = mode;
  p->cols = cols;
  p->rows = rows;
  p->cell_w = cell_w;
  p->cell_h = cell_h;
  if (mode == SDW_PREVIEW_TEXT) {
    p->rendered = true;
    return SDW_OK;
  }
  int box_w = cols * cell_w, box_h = rows * cell_h;
  int w, h;
  if (mode == SDW_PREVIEW_SIXEL) {
    /* sixel bands are 6 pixels: a box of whole bands keeps the last band
     * (which terminals may paint in full) inside the rectangle */
    if (box_h >= 6) box_h -= box_h % 6;
    sdw_preview_fit(p->width, p->height, box_w, box_h, &w, &h);
  } else {
    /* fit in screen pixels, then count half-cells: a half block is
     * cell_w x cell_h/2 pixels on screen */
    int fw, fh;
    sdw_preview_fit(p->width, p->height, box_w, box_h, &fw, &fh);
    w = (int)(((int64_t)fw * 2 + cell_w) / (2 * (int64_t)cell_w));
    h = (int)(((int64_t)fh * 4 + cell_h) / (2 * (int64_t)cell_h));
    if (w < 1) w = 1;
    if (w > cols) w = cols;
    if (h < 1) h = 1;
    if (h > 2 * rows) h = 2 * rows;
  }
  uint8_t *scaled = malloc((size_t)w * h * 3);
  if (!scaled) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "preview: out of memory for %dx%d", w, h);
  sdw_preview_scale(p->rgb, p->width, p->height, 3, scaled, w, h);
  sdw_status st = SDW_OK;
  if (mode == SDW_PREVIEW_SIXEL) {
    st = sdw_preview_sixel_encode(scaled, w, h, 256, &p->sixel, &p->sixel_len);
    p->used_cols = (w + cell_w - 1) / cell_w;
    p->used_rows = (h + cell_h - 1) / cell_h;
  } else {
    int crow = (h + 1) / 2;
    p->cells = malloc(sizeof *p->cells * (size_t)w * crow);
    if (!p->cells) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "preview: out of memory for %dx%d cells", w, crow);
    } else {
      sdw_preview_blocks(scaled, w, h, mode, p->cells);
      p->used_cols = w;
      p->used_rows = crow;
    }
  }
  free(scaled);
  if (st != SDW_OK) {
    drop_render(p);
    return st;
  }
  p->img_w = w;
  p->img_h = h;
  p->rendered = true;
  return SDW_OK;
}

/* --- terminal bytes --------------------------------------------------------- */

typedef struct str_buf {
  char *data;
  size_t len, cap;
  bool failed;
} str_buf;

static void sb_reserve(str_buf *b, size_t more) {
  if (b->failed || b->len + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (b->len + more + 1 > cap)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) {
    b->failed = true;
    return;
  }
  b->data = d;
  b->cap = cap;
}

static void sb_put(str_buf *b, const char *s, size_t n) {
  sb_reserve(b, n);
  if (b->failed) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void sb_printf(str_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(str_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* SGR for one colour; bg selects the background. A colour is identified by
 * a 32-bit key (RGB or index) so repeated colours are not re-sent. */
static void sgr_color(str_buf *b, sdw_preview_mode mode, bool bg, const uint8_t *rgb,
                      uint8_t index) {
  if (mode == SDW_PREVIEW_BLOCKS_TRUE)
    sb_printf(b, "\x1b[%d;2;%u;%u;%um", bg ? 48 : 38, rgb[0], rgb[1], rgb[2]);
  else if (mode == SDW_PREVIEW_BLOCKS_256)
    sb_printf(b, "\x1b[%d;5;%um", bg ? 48 : 38, index);
  else if (index < 8)
    sb_printf(b, "\x1b[%dm", (bg ? 40 : 30) + index);
  else
    sb_printf(b, "\x1b[%dm", (bg ? 100 : 90) + index - 8);
}

static uint32_t color_key(sdw_preview_mode mode, const uint8_t *rgb, uint8_t index) {
  if (mode == SDW_PREVIEW_BLOCKS_TRUE)
    return (uint32_t)rgb[0] << 16 | (uint32_t)rgb[1] << 8 | rgb[2];
  return index;
}

sdw_status sdw_preview_emit(const sdw_preview *p, int row, int col, char **out, size_t *out_len) {
  str_buf b = {0};
  sb_put(&b, "", 0);
  if (p->rendered && p->mode != SDW_PREVIEW_TEXT) {
    sb_put(&b,
           "\x1b"
           "7",
           2); /* DECSC */
    if (p->mode == SDW_PREVIEW_SIXEL) {
      sb_printf(&b, "\x1b[%d;%dH", row + 1, col + 1);
      sb_put(&b, p->sixel, p->sixel_len);
    } else {
      for (int y = 0; y < p->used_rows; y++) {
        sb_printf(&b, "\x1b[%d;%dH", row + y + 1, col + 1);
        /* 0xffffffff never matches a key: the first cell of a row sets both */
        uint32_t fg = 0xffffffffu, bgk = 0xffffffffu;
        for (int x = 0; x < p->used_cols; x++) {
          const sdw_preview_cell *c = &p->cells[(size_t)y * p->used_cols + x];
          uint32_t k = color_key(p->mode, c->top, c->top_index);
          if (k != fg) sgr_color(&b, p->mode, false, c->top, c->top_index);
          fg = k;
          uint32_t kb =
              c->has_bottom ? color_key(p->mode, c->bottom, c->bottom_index) : 0xfffffffeu;
          if (kb != bgk) {
            if (c->has_bottom)
              sgr_color(&b, p->mode, true, c->bottom, c->bottom_index);
            else
              sb_put(&b, "\x1b[49m", 5); /* the default background */
          }
          bgk = kb;
          sb_put(&b, "\xe2\x96\x80", 3); /* U+2580 UPPER HALF BLOCK */
        }
      }
      sb_put(&b, "\x1b[0m", 4);
    }
    sb_put(&b,
           "\x1b"
           "8",
           2); /* DECRC */
  }
  if (b.failed) {
    free(b.data);
    *out = NULL;
    *out_len = 0;
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "preview: out of memory for the terminal bytes");
  }
  *out = b.data;
  *out_len = b.len;
  return SDW_OK;
}
