/* The workbench's image preview: a PNG (validation grid, sampled image)
 * fitted into a rectangle of character cells and turned into bytes or cells
 * the terminal can show. No curses in here.
 *
 * Modes (sdw_preview_choose picks one from sdw_termcaps):
 *   SIXEL        libsixel, up to 256 colours, no dithering, at pixel resolution
 *                (cell size from XTWINOPS; 10x20 assumed when unknown);
 *   BLOCKS_TRUE  Unicode upper half blocks U+2580 "▀": foreground = upper
 *                pixel, background = lower pixel, 24-bit SGR;
 *   BLOCKS_256   the same with the nearest xterm-256 colour (cube 16-231 and
 *                grey ramp 232-255; the 16 system colours are themeable, so
 *                they are never chosen);
 *   BLOCKS_16    the same with the nearest of xterm's 16 default colours
 *                (TERM=linux and friends);
 *   TEXT         no colour (NO_COLOR, TERM=dumb): no image at all, the app
 *                prints a line such as "grid.png 512x512".
 *
 * Use from the ncurses app:
 *
 *   sdw_preview pv; sdw_preview_init(&pv);
 *   sdw_preview_load_png(&pv, path);                       // when the file changes
 *   sdw_preview_render(&pv, mode, cols, rows, cw, ch);     // cached: cheap when unchanged
 *   ... draw the panel, leave pv.used_rows x pv.used_cols cells blank ...
 *   doupdate();
 *   sdw_preview_emit(&pv, top, left, &bytes, &n);          // write(1, bytes, n); free(bytes)
 *
 * The emitted bytes save the cursor (DECSC), move to the cell, draw, reset
 * SGR and restore the cursor (DECRC), so ncurses' idea of the screen stays
 * right. Emit again whenever ncurses repainted those cells (clear(),
 * resize, a panel switch): curses does not know the image is there, so it
 * only overwrites it when it writes to those cells itself. The rectangle
 * must not touch the screen's last row: a sixel image ending there scrolls
 * the terminal. Alternatively for BLOCKS_* the app can draw pv.cells with
 * its own colour pairs instead of calling _emit.
 */
#ifndef SDW_TUI_PREVIEW_H
#define SDW_TUI_PREVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "tui/termcaps.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_preview_mode {
  SDW_PREVIEW_TEXT = 0,
  SDW_PREVIEW_BLOCKS_16,
  SDW_PREVIEW_BLOCKS_256,
  SDW_PREVIEW_BLOCKS_TRUE,
  SDW_PREVIEW_SIXEL
} sdw_preview_mode;

/* SIXEL when the terminal said so, else blocks by caps->color. */
sdw_preview_mode sdw_preview_choose(const sdw_termcaps *caps);
/* "sixel", "truecolor blocks", "256-colour blocks", "16-colour blocks", "text". */
const char *sdw_preview_mode_name(sdw_preview_mode mode);

/* One character cell of a BLOCKS_* render (glyph "▀"). */
typedef struct sdw_preview_cell {
  uint8_t top[3], bottom[3];       /* RGB of the upper / lower half */
  uint8_t top_index, bottom_index; /* nearest xterm-256 index (BLOCKS_256) or 0-15 (BLOCKS_16) */
  uint8_t has_bottom;              /* 0 on the last row of an odd-height image: lower half
                                      in the terminal's default background */
} sdw_preview_cell;

typedef struct sdw_preview {
  /* the source image, RGB (alpha composited onto black); owned */
  uint8_t *rgb; /* [height][width][3] */
  int width, height;

  /* the last render; valid when rendered is true */
  bool rendered;
  sdw_preview_mode mode;
  int cols, rows, cell_w, cell_h; /* the request it answers (the cache key) */
  int img_w, img_h;               /* scaled image: pixels (SIXEL) or half-block pixels */
  int used_cols, used_rows;       /* cells the image covers, from the box's top-left corner */
  char *sixel;                    /* SIXEL: DCS ... ST, sixel_len bytes; owned */
  size_t sixel_len;
  sdw_preview_cell *cells; /* BLOCKS_*: [used_rows][used_cols]; owned */
} sdw_preview;

void sdw_preview_init(sdw_preview *p);
/* Frees everything; p is then as after _init. */
void sdw_preview_free(sdw_preview *p);

/* Replaces the image (decoded with core/base/png_image.h, at most 64 Mpx)
 * and drops the render. On error p keeps its previous image. */
sdw_status sdw_preview_load_png(sdw_preview *p, const char *path);
/* The same from memory: pixels[height][width][channels], channels 1 (grey),
 * 3 (RGB) or 4 (RGBA, composited onto black); copied. */
sdw_status sdw_preview_set_pixels(sdw_preview *p, const uint8_t *pixels, int width, int height,
                                  int channels);

/* Fits the image into cols x rows cells of cell_w x cell_h pixels (<= 0:
 * 10 x 20) keeping its aspect ratio, and renders it in mode. Does nothing
 * when the last render had the same arguments. SDW_ERR_INVALID_ARGUMENT
 * without an image or with cols/rows < 1. */
sdw_status sdw_preview_render(sdw_preview *p, sdw_preview_mode mode, int cols, int rows, int cell_w,
                              int cell_h);

/* The bytes that draw the last render with its top-left cell at screen
 * position (row, col), 0-based: DECSC, cursor move, image, SGR 0, DECRC.
 * *out is malloc'd (caller frees), *out_len bytes, NUL-terminated. TEXT mode
 * or no render: an empty string. */
sdw_status sdw_preview_emit(const sdw_preview *p, int row, int col, char **out, size_t *out_len);

/* --- the pure pieces (tested one by one) ------------------------------------- */

/* The largest w x h with w <= box_w, h <= box_h and w/h as close as
 * possible to src_w/src_h (each at least 1). */
void sdw_preview_fit(int src_w, int src_h, int box_w, int box_h, int *w, int *h);

/* Resamples src[sh][sw][channels] (1, 3 or 4; alpha composited onto black)
 * to dst[dh][dw][3] with an exact area-coverage box filter (each output
 * pixel is the coverage-weighted mean of the source pixels under it: a true
 * average when shrinking, pixel replication with blended seams when
 * growing), rounded to nearest. */
void sdw_preview_scale(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst, int dw,
                       int dh);

/* Encodes rgb[h][w][3] as one sixel image (DCS P q ... ST, 7-bit) with at
 * most max_colors (2-256) palette entries and no dithering: an image with
 * <= max_colors distinct colours gets exactly those colours (up to sixel's
 * 1% palette precision, i.e. within 1 of 255); others are median-cut by
 * libsixel. *out is malloc'd (caller frees), *out_len bytes, NUL-terminated. */
sdw_status sdw_preview_sixel_encode(const uint8_t *rgb, int w, int h, int max_colors, char **out,
                                    size_t *out_len);

/* Half-block cells for rgb[h][w][3]: ceil(h/2) rows of w cells
 * (cells[(y/2)*w + x]); indices for mode (BLOCKS_16 / BLOCKS_256; 0 for
 * BLOCKS_TRUE). cells must hold w * ((h+1)/2) entries. */
void sdw_preview_blocks(const uint8_t *rgb, int w, int h, sdw_preview_mode mode,
                        sdw_preview_cell *cells);

/* The nearest xterm-256 colour in the cube (16-231: levels 0,95,135,175,215,
 * 255) or grey ramp (232-255: 8 + 10 i), by squared RGB distance. */
uint8_t sdw_preview_xterm256(uint8_t r, uint8_t g, uint8_t b);
/* The RGB of xterm-256 index i (16-255 by the formula; 0-15 xterm's defaults). */
void sdw_preview_xterm256_rgb(int index, uint8_t rgb[3]);
/* The nearest of xterm's 16 default colours (0-15). */
uint8_t sdw_preview_xterm16(uint8_t r, uint8_t g, uint8_t b);

#ifdef __cplusplus
}
#endif
#endif
