/* A terminal-sized grid of cells that the workbench's panels draw into.
 *
 * Everything the workbench shows is first drawn into a grid (pure memory, no
 * terminal), then the app copies only the cells that differ from the previous
 * frame to the terminal (sdw_tui_grid_diff). That keeps the panels testable
 * headless and the output on a slow link small: a frame where one number
 * changed sends a handful of cells.
 *
 * A cell holds one Unicode code point and a style (a theme role, see
 * theme.h). A double-width character occupies its cell and the next one,
 * whose code point is SDW_TUI_WIDE_TAIL. Drawing outside the grid or a clip
 * rectangle is silently cut off.
 */
#ifndef SDW_TUI_GRID_H
#define SDW_TUI_GRID_H

#include <stdbool.h>
#include <stdint.h>

enum { SDW_TUI_WIDE_TAIL = 0xFFFFFFFFu };

typedef struct sdw_tui_cell {
  uint32_t ch;   /* Unicode code point; ' ' when empty */
  uint8_t style; /* sdw_tui_role */
} sdw_tui_cell;

typedef struct sdw_tui_rect {
  int x, y, w, h; /* w or h <= 0: empty */
} sdw_tui_rect;

typedef struct sdw_tui_grid {
  int w, h;
  sdw_tui_cell *cells; /* [h][w], owned */
} sdw_tui_grid;

/* (Re)allocates to w x h and fills with blanks of style 0. Returns false on
 * out of memory (the grid is then 0 x 0). */
bool sdw_tui_grid_resize(sdw_tui_grid *g, int w, int h);
void sdw_tui_grid_free(sdw_tui_grid *g);
void sdw_tui_grid_fill(sdw_tui_grid *g, sdw_tui_rect r, uint32_t ch, uint8_t style);
void sdw_tui_grid_put(sdw_tui_grid *g, int x, int y, uint32_t ch, uint8_t style);
sdw_tui_cell sdw_tui_grid_at(const sdw_tui_grid *g, int x, int y);

/* Writes UTF-8 text at (x, y), clipped to clip (and to the grid), at most
 * max_cols columns (< 0: no limit). Control characters and invalid bytes
 * become '?'; zero-width characters are skipped. Returns the columns used. */
int sdw_tui_grid_text(sdw_tui_grid *g, sdw_tui_rect clip, int x, int y, int max_cols, uint8_t style,
                      const char *utf8);
/* printf into the grid (truncated at 1024 bytes). */
int sdw_tui_grid_printf(sdw_tui_grid *g, sdw_tui_rect clip, int x, int y, int max_cols,
                        uint8_t style, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* A single-line box around r with title (may be NULL) in its top border. */
void sdw_tui_grid_box(sdw_tui_grid *g, sdw_tui_rect r, const char *title, uint8_t border_style,
                      uint8_t title_style);

/* Columns that utf8 takes (same rules as sdw_tui_grid_text). */
int sdw_tui_text_width(const char *utf8);

/* Calls emit for every cell of cur that differs from prev (all cells when
 * prev has another size), row by row, left to right. Returns the count. */
typedef void (*sdw_tui_emit_fn)(void *user, int x, int y, sdw_tui_cell cell);
int sdw_tui_grid_diff(const sdw_tui_grid *prev, const sdw_tui_grid *cur, sdw_tui_emit_fn emit,
                      void *user);
/* prev := cur (same size after the call). Returns false on out of memory. */
bool sdw_tui_grid_copy(sdw_tui_grid *dst, const sdw_tui_grid *src);

/* The rectangle inside a box (one cell smaller on every side). */
sdw_tui_rect sdw_tui_rect_inner(sdw_tui_rect r);
/* What to send for cp on a terminal that lacks it: braille becomes '*'
 * (blank pattern ' ') when the font has no braille (braille_ok false, the
 * Linux console) or without UTF-8 (ascii); without UTF-8 also box drawing
 * becomes - | +, blocks #, the middle dot '.', the ellipsis '~' and anything
 * else outside ASCII '?'. Otherwise cp itself. */
uint32_t sdw_tui_standin(uint32_t cp, bool braille_ok, bool ascii);
/* Encodes cp as UTF-8 into out[5] (NUL-terminated); returns the byte count. */
int sdw_tui_utf8_encode(uint32_t cp, char out[5]);

#endif
