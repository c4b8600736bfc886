/* The cell grid the workbench draws into (see grid.h). */
#include "tui/grid.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

bool sdw_tui_grid_resize(sdw_tui_grid *g, int w, int h) {
  if (w < 0) w = 0;
  if (h < 0) h = 0;
  sdw_tui_cell *cells = NULL;
  if (w > 0 && h > 0) {
    cells = malloc((size_t)w * (size_t)h * sizeof *cells);
    if (!cells) {
      free(g->cells);
      g->cells = NULL, g->w = 0, g->h = 0;
      return false;
    }
  }
  free(g->cells);
  g->cells = cells, g->w = cells ? w : 0, g->h = cells ? h : 0;
  for (int i = 0; i < g->w * g->h; i++)
    g->cells[i] = (sdw_tui_cell){' ', 0};
  return true;
}

void sdw_tui_grid_free(sdw_tui_grid *g) {
  free(g->cells);
  g->cells = NULL, g->w = 0, g->h = 0;
}

static bool inside(const sdw_tui_grid *g, int x, int y) {
  return x >= 0 && y >= 0 && x < g->w && y < g->h;
}

static bool in_rect(sdw_tui_rect r, int x, int y) {
  return x >= r.x && y >= r.y && x < r.x + r.w && y < r.y + r.h;
}

void sdw_tui_grid_put(sdw_tui_grid *g, int x, int y, uint32_t ch, uint8_t style) {
  if (!inside(g, x, y)) return;
  sdw_tui_cell *c = &g->cells[y * g->w + x];
  /* Overwriting half of a wide character blanks its other half, so the
   * terminal never sees a dangling tail or head. */
  if (c->ch == SDW_TUI_WIDE_TAIL && x > 0) g->cells[y * g->w + x - 1].ch = ' ';
  if (c->ch != SDW_TUI_WIDE_TAIL && x + 1 < g->w &&
      g->cells[y * g->w + x + 1].ch == SDW_TUI_WIDE_TAIL)
    g->cells[y * g->w + x + 1].ch = ' ';
  c->ch = ch, c->style = style;
}

sdw_tui_cell sdw_tui_grid_at(const sdw_tui_grid *g, int x, int y) {
  if (!inside(g, x, y)) return (sdw_tui_cell){' ', 0};
  return g->cells[y * g->w + x];
}

void sdw_tui_grid_fill(sdw_tui_grid *g, sdw_tui_rect r, uint32_t ch, uint8_t style) {
  for (int y = r.y; y < r.y + r.h; y++)
    for (int x = r.x; x < r.x + r.w; x++)
      sdw_tui_grid_put(g, x, y, ch, style);
}

/* Decodes one UTF-8 sequence; returns its length (>= 1) and sets *cp, or
 * '?' for an invalid byte (consumed alone). */
static int utf8_decode(const unsigned char *s, uint32_t *cp) {
  unsigned c = s[0];
  int n;
  uint32_t v, min;
  if (c < 0x80) return *cp = c, 1;
  if ((c & 0xE0) == 0xC0)
    n = 2, v = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0)
    n = 3, v = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0)
    n = 4, v = c & 0x07, min = 0x10000;
  else
    return *cp = '?', 1;
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return *cp = '?', 1;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return *cp = '?', 1;
  return *cp = v, n;
}

/* Column width of a code point: the C library's when the locale knows it,
 * else a small table (combining marks 0, East Asian wide and emoji 2). */
static int cp_width(uint32_t cp) {
  if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return -1;
  int w = wcwidth((wchar_t)cp);
  if (w >= 0) return w;
  if ((cp >= 0x300 && cp <= 0x36F) || (cp >= 0x200B && cp <= 0x200F) || cp == 0xFE0F) return 0;
  if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
      (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
      (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
      (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
      (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD))
    return 2;
  return 1;
}

int sdw_tui_grid_text(sdw_tui_grid *g, sdw_tui_rect clip, int x, int y, int max_cols, uint8_t style,
                      const char *utf8) {
  const unsigned char *s = (const unsigned char *)(utf8 ? utf8 : "");
  int used = 0;
  while (*s) {
    uint32_t cp;
    s += utf8_decode(s, &cp);
    int w = cp_width(cp);
    if (w < 0) cp = '?', w = 1;
    if (w == 0) continue;
    if (max_cols >= 0 && used + w > max_cols) break;
    int cx = x + used;
    if (g && in_rect(clip, cx, y) && (w == 1 || in_rect(clip, cx + 1, y))) {
      sdw_tui_grid_put(g, cx, y, cp, style);
      if (w == 2) sdw_tui_grid_put(g, cx + 1, y, SDW_TUI_WIDE_TAIL, style);
    } else if (g && w == 2 && in_rect(clip, cx, y)) {
      sdw_tui_grid_put(g, cx, y, ' ', style); /* half a wide char does not fit */
    }
    used += w;
  }
  return used;
}

int sdw_tui_grid_printf(sdw_tui_grid *g, sdw_tui_rect clip, int x, int y, int max_cols,
                        uint8_t style, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return sdw_tui_grid_text(g, clip, x, y, max_cols, style, buf);
}

int sdw_tui_text_width(const char *utf8) {
  return sdw_tui_grid_text(NULL, (sdw_tui_rect){0, 0, 0, 0}, 0, 0, -1, 0, utf8);
}

void sdw_tui_grid_box(sdw_tui_grid *g, sdw_tui_rect r, const char *title, uint8_t border_style,
                      uint8_t title_style) {
  if (r.w < 2 || r.h < 2) return;
  int x1 = r.x + r.w - 1, y1 = r.y + r.h - 1;
  for (int x = r.x + 1; x < x1; x++) {
    sdw_tui_grid_put(g, x, r.y, 0x2500, border_style);
    sdw_tui_grid_put(g, x, y1, 0x2500, border_style);
  }
  for (int y = r.y + 1; y < y1; y++) {
    sdw_tui_grid_put(g, r.x, y, 0x2502, border_style);
    sdw_tui_grid_put(g, x1, y, 0x2502, border_style);
  }
  sdw_tui_grid_put(g, r.x, r.y, 0x250C, border_style);
  sdw_tui_grid_put(g, x1, r.y, 0x2510, border_style);
  sdw_tui_grid_put(g, r.x, y1, 0x2514, border_style);
  sdw_tui_grid_put(g, x1, y1, 0x2518, border_style);
  if (title && *title && r.w > 4) {
    sdw_tui_rect clip = {r.x + 1, r.y, r.w - 2, 1};
    sdw_tui_grid_put(g, r.x + 1, r.y, ' ', border_style);
    int n = sdw_tui_grid_text(g, clip, r.x + 2, r.y, r.w - 4, title_style, title);
    sdw_tui_grid_put(g, r.x + 2 + n, r.y, ' ', border_style);
    if (r.x + 2 + n >= x1) sdw_tui_grid_put(g, x1, r.y, 0x2510, border_style);
  }
}

int sdw_tui_grid_diff(const sdw_tui_grid *prev, const sdw_tui_grid *cur, sdw_tui_emit_fn emit,
                      void *user) {
  bool all = !prev || prev->w != cur->w || prev->h != cur->h;
  int count = 0;
  for (int y = 0; y < cur->h; y++)
    for (int x = 0; x < cur->w; x++) {
      sdw_tui_cell c = cur->cells[y * cur->w + x];
      if (!all) {
        sdw_tui_cell p = prev->cells[y * cur->w + x];
        if (p.ch == c.ch && p.style == c.style) continue;
      }
      if (emit) emit(user, x, y, c);
      count++;
    }
  return count;
}

bool sdw_tui_grid_copy(sdw_tui_grid *dst, const sdw_tui_grid *src) {
  if (dst->w != src->w || dst->h != src->h)
    if (!sdw_tui_grid_resize(dst, src->w, src->h)) return false;
  if (src->w > 0 && src->h > 0)
    memcpy(dst->cells, src->cells, (size_t)src->w * (size_t)src->h * sizeof *src->cells);
  return true;
}

sdw_tui_rect sdw_tui_rect_inner(sdw_tui_rect r) {
  sdw_tui_rect in = {r.x + 1, r.y + 1, r.w - 2, r.h - 2};
  if (in.w < 0) in.w = 0;
  if (in.h < 0) in.h = 0;
  return in;
}

int sdw_tui_utf8_encode(uint32_t cp, char out[5]) {
  int n;
  if (cp < 0x80)
    out[0] = (char)cp, n = 1;
  else if (cp < 0x800)
    out[0] = (char)(0xC0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    out[0] = (char)(0xE0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
    out[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else
    out[0] = (char)(0xF0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  out[n] = 0;
  return n;
}

uint32_t sdw_tui_standin(uint32_t ch, bool braille_ok, bool ascii) {
  if (ch >= 0x2800 && ch <= 0x28FF && (!braille_ok || ascii)) return ch == 0x2800 ? ' ' : '*';
  if (!ascii || ch < 0x80) return ch;
  if (ch == 0x2500) return '-';
  if (ch == 0x2502) return '|';
  if (ch >= 0x250C && ch <= 0x253C) return '+';
  if (ch >= 0x2580 && ch <= 0x258F) return '#';
  if (ch == 0x00B7) return '.';
  if (ch == 0x2026) return '~';
  return '?';
}
