/* tui/grid: text placement and clipping, double-width characters, boxes,
 * and the diff that decides which cells reach the terminal (only changed
 * ones: the slow-link requirement). Exact checks. */
#include <string.h>

#include "tests/test.h"
#include "tui/grid.h"

static void row_text(const sdw_tui_grid *g, int y, char *out, size_t cap) {
  size_t n = 0;
  for (int x = 0; x < g->w && n + 5 < cap; x++) {
    sdw_tui_cell c = sdw_tui_grid_at(g, x, y);
    if (c.ch == SDW_TUI_WIDE_TAIL) continue;
    char enc[5];
    int k = sdw_tui_utf8_encode(c.ch, enc);
    memcpy(out + n, enc, (size_t)k);
    n += (size_t)k;
  }
  out[n] = 0;
}

SDW_TEST(tui_grid_text_and_clip) {
  sdw_tui_grid g = {0};
  REQUIRE(sdw_tui_grid_resize(&g, 10, 3));
  sdw_tui_rect all = {0, 0, 10, 3};
  CHECK(sdw_tui_grid_text(&g, all, 2, 1, -1, 3, "hello") == 5);
  char row[64];
  row_text(&g, 1, row, sizeof row);
  CHECK(strcmp(row, "  hello   ") == 0);
  CHECK(sdw_tui_grid_at(&g, 2, 1).style == 3 && sdw_tui_grid_at(&g, 1, 1).style == 0);
  /* max_cols cuts; the clip rectangle cuts without changing the count. */
  CHECK(sdw_tui_grid_text(&g, all, 0, 0, 3, 0, "abcdef") == 3);
  row_text(&g, 0, row, sizeof row);
  CHECK(strcmp(row, "abc       ") == 0);
  sdw_tui_rect clip = {0, 2, 4, 1};
  CHECK(sdw_tui_grid_text(&g, clip, 1, 2, -1, 0, "wxyz!") == 5);
  row_text(&g, 2, row, sizeof row);
  CHECK(strcmp(row, " wxy      ") == 0);
  /* Outside the grid: nothing written, no crash. */
  sdw_tui_grid_text(&g, (sdw_tui_rect){-5, -5, 100, 100}, -3, -1, -1, 0, "zzz");
  sdw_tui_grid_text(&g, (sdw_tui_rect){-5, -5, 100, 100}, 8, 2, -1, 0, "zzzz");
  row_text(&g, 2, row, sizeof row);
  CHECK(strcmp(row, " wxy    zz") == 0);
  /* Control characters and invalid UTF-8 become '?'. */
  sdw_tui_grid_fill(&g, all, ' ', 0);
  sdw_tui_grid_text(&g, all, 0, 0, -1, 0,
                    "a\tb\xff"
                    "c");
  row_text(&g, 0, row, sizeof row);
  CHECK_MSG(strcmp(row, "a?b?c     ") == 0, "row '%s'", row);
  sdw_tui_grid_free(&g);
}

SDW_TEST(tui_grid_wide_characters) {
  sdw_tui_grid g = {0};
  REQUIRE(sdw_tui_grid_resize(&g, 6, 1));
  sdw_tui_rect all = {0, 0, 6, 1};
  /* U+4E2D (CJK) is two columns wide; U+0301 (combining acute) zero. */
  CHECK(sdw_tui_text_width("\xe4\xb8\xad") == 2);
  CHECK(sdw_tui_text_width("e\xcc\x81") == 1);
  CHECK(sdw_tui_grid_text(&g, all, 1, 0, -1, 0,
                          "\xe4\xb8\xad"
                          "x") == 3);
  CHECK(sdw_tui_grid_at(&g, 1, 0).ch == 0x4E2D &&
        sdw_tui_grid_at(&g, 2, 0).ch == SDW_TUI_WIDE_TAIL);
  CHECK(sdw_tui_grid_at(&g, 3, 0).ch == 'x');
  /* Overwriting the tail blanks the head (and the reverse). */
  sdw_tui_grid_put(&g, 2, 0, 'y', 0);
  CHECK(sdw_tui_grid_at(&g, 1, 0).ch == ' ' && sdw_tui_grid_at(&g, 2, 0).ch == 'y');
  sdw_tui_grid_text(&g, all, 1, 0, -1, 0, "\xe4\xb8\xad");
  sdw_tui_grid_put(&g, 1, 0, 'z', 0);
  CHECK(sdw_tui_grid_at(&g, 2, 0).ch == ' ');
  /* A wide character that does not fit at the clip edge is not split. */
  sdw_tui_grid_fill(&g, all, '.', 0);
  CHECK(sdw_tui_grid_text(&g, (sdw_tui_rect){0, 0, 3, 1}, 2, 0, -1, 0, "\xe4\xb8\xad") == 2);
  CHECK(sdw_tui_grid_at(&g, 2, 0).ch == ' ' && sdw_tui_grid_at(&g, 3, 0).ch == '.');
  /* max_cols stops before a wide character that would cross it. */
  CHECK(sdw_tui_grid_text(&g, all, 0, 0, 3, 0, "a\xe4\xb8\xad\xe4\xb8\xad") == 3);
  sdw_tui_grid_free(&g);
}

SDW_TEST(tui_grid_box) {
  sdw_tui_grid g = {0};
  REQUIRE(sdw_tui_grid_resize(&g, 12, 4));
  sdw_tui_grid_box(&g, (sdw_tui_rect){1, 0, 10, 4}, "Log", 1, 2);
  CHECK(sdw_tui_grid_at(&g, 1, 0).ch == 0x250C && sdw_tui_grid_at(&g, 10, 0).ch == 0x2510);
  CHECK(sdw_tui_grid_at(&g, 1, 3).ch == 0x2514 && sdw_tui_grid_at(&g, 10, 3).ch == 0x2518);
  CHECK(sdw_tui_grid_at(&g, 1, 1).ch == 0x2502 && sdw_tui_grid_at(&g, 10, 2).ch == 0x2502);
  CHECK(sdw_tui_grid_at(&g, 3, 0).ch == 'L' && sdw_tui_grid_at(&g, 3, 0).style == 2);
  CHECK(sdw_tui_grid_at(&g, 0, 0).ch == ' ' && sdw_tui_grid_at(&g, 11, 0).ch == ' ');
  sdw_tui_rect in = sdw_tui_rect_inner((sdw_tui_rect){1, 0, 10, 4});
  CHECK(in.x == 2 && in.y == 1 && in.w == 8 && in.h == 2);
  /* A title longer than the box stays inside it. */
  sdw_tui_grid_box(&g, (sdw_tui_rect){0, 0, 6, 3}, "a very long title", 1, 2);
  CHECK(sdw_tui_grid_at(&g, 5, 0).ch == 0x2510);
  sdw_tui_grid_free(&g);
}

typedef struct emitted {
  int count;
  int x[16], y[16];
} emitted;

static void record(void *user, int x, int y, sdw_tui_cell c) {
  (void)c;
  emitted *e = user;
  if (e->count < 16) e->x[e->count] = x, e->y[e->count] = y;
  e->count++;
}

SDW_TEST(tui_grid_diff_only_changed_cells) {
  sdw_tui_grid a = {0}, b = {0};
  REQUIRE(sdw_tui_grid_resize(&a, 40, 10));
  sdw_tui_grid_text(&a, (sdw_tui_rect){0, 0, 40, 10}, 0, 0, -1, 0, "step 100 loss 0.5");
  REQUIRE(sdw_tui_grid_copy(&b, &a));
  emitted e = {0};
  CHECK(sdw_tui_grid_diff(&a, &b, record, &e) == 0 && e.count == 0);
  /* "100" -> "101": one cell; a style change alone also counts. */
  sdw_tui_grid_put(&b, 7, 0, '1', 0);
  sdw_tui_grid_put(&b, 0, 5, ' ', 4);
  CHECK(sdw_tui_grid_diff(&a, &b, record, &e) == 2);
  CHECK(e.x[0] == 7 && e.y[0] == 0 && e.x[1] == 0 && e.y[1] == 5);
  /* Another size: everything is sent. */
  sdw_tui_grid c = {0};
  REQUIRE(sdw_tui_grid_resize(&c, 41, 10));
  CHECK(sdw_tui_grid_diff(&a, &c, NULL, NULL) == 410);
  CHECK(sdw_tui_grid_diff(NULL, &a, NULL, NULL) == 400);
  sdw_tui_grid_free(&a);
  sdw_tui_grid_free(&b);
  sdw_tui_grid_free(&c);
}

SDW_TEST(tui_utf8_encode) {
  char b[5];
  CHECK(sdw_tui_utf8_encode('A', b) == 1 && strcmp(b, "A") == 0);
  CHECK(sdw_tui_utf8_encode(0xE9, b) == 2 && strcmp(b, "\xc3\xa9") == 0);
  CHECK(sdw_tui_utf8_encode(0x28FF, b) == 3 && strcmp(b, "\xe2\xa3\xbf") == 0);
  CHECK(sdw_tui_utf8_encode(0x1F600, b) == 4 && strcmp(b, "\xf0\x9f\x98\x80") == 0);
}

SDW_TEST(tui_standin_for_poor_terminals) {
  /* UTF-8 with braille: everything as is. */
  CHECK(sdw_tui_standin(0x28FF, true, false) == 0x28FF &&
        sdw_tui_standin(0x2500, true, false) == 0x2500);
  /* The Linux console (UTF-8, no braille glyphs): braille only. */
  CHECK(sdw_tui_standin(0x2801, false, false) == '*' &&
        sdw_tui_standin(0x2800, false, false) == ' ');
  CHECK(sdw_tui_standin(0x250C, false, false) == 0x250C);
  /* No UTF-8: ASCII for all of it. */
  CHECK(sdw_tui_standin(0x2500, true, true) == '-' && sdw_tui_standin(0x2502, true, true) == '|');
  CHECK(sdw_tui_standin(0x250C, true, true) == '+' && sdw_tui_standin(0x2518, true, true) == '+');
  CHECK(sdw_tui_standin(0x2588, true, true) == '#' && sdw_tui_standin(0x258F, true, true) == '#');
  CHECK(sdw_tui_standin(0x00B7, true, true) == '.' && sdw_tui_standin(0x4E2D, true, true) == '?');
  CHECK(sdw_tui_standin('a', false, true) == 'a');
}
