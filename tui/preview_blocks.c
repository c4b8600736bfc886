/* Half-block cells and the xterm palettes (see preview.h). */
#include <string.h>

#include "tui/preview.h"

/* xterm's default 16 colours (XTerm-col.ad / charproc.c defaults). */
static const uint8_t k_xterm16[16][3] = {
    {0x00, 0x00, 0x00}, {0xcd, 0x00, 0x00}, {0x00, 0xcd, 0x00}, {0xcd, 0xcd, 0x00},
    {0x00, 0x00, 0xee}, {0xcd, 0x00, 0xcd}, {0x00, 0xcd, 0xcd}, {0xe5, 0xe5, 0xe5},
    {0x7f, 0x7f, 0x7f}, {0xff, 0x00, 0x00}, {0x00, 0xff, 0x00}, {0xff, 0xff, 0x00},
    {0x5c, 0x5c, 0xff}, {0xff, 0x00, 0xff}, {0x00, 0xff, 0xff}, {0xff, 0xff, 0xff}};

static const uint8_t k_cube[6] = {0, 95, 135, 175, 215, 255};

void sdw_preview_xterm256_rgb(int index, uint8_t rgb[3]) {
  if (index < 16) {
    memcpy(rgb, k_xterm16[index < 0 ? 0 : index], 3);
  } else if (index < 232) {
    int i = index - 16;
    rgb[0] = k_cube[i / 36];
    rgb[1] = k_cube[(i / 6) % 6];
    rgb[2] = k_cube[i % 6];
  } else {
    int v = 8 + 10 * ((index > 255 ? 255 : index) - 232);
    rgb[0] = rgb[1] = rgb[2] = (uint8_t)v;
  }
}

static int dist2(int r, int g, int b, const uint8_t *c) {
  int dr = r - c[0], dg = g - c[1], db = b - c[2];
  return dr * dr + dg * dg + db * db;
}

/* The cube level nearest to v (levels are not evenly spaced: 0, 95, 135...). */
static int cube_level(int v) {
  if (v < 48) return 0;  /* midpoint of 0 and 95 is 47.5 */
  if (v < 115) return 1; /* 95..135 -> 115 */
  return (v - 35) / 40;  /* 115..154 -> 2, 155..194 -> 3, 195..234 -> 4, 235.. -> 5 */
}

uint8_t sdw_preview_xterm256(uint8_t r, uint8_t g, uint8_t b) {
  /* per-channel nearest is the nearest cube colour: the squared distance is
   * a sum of independent per-channel terms */
  int lr = cube_level(r), lg = cube_level(g), lb = cube_level(b);
  uint8_t cube[3] = {k_cube[lr], k_cube[lg], k_cube[lb]};
  int best = 16 + 36 * lr + 6 * lg + lb;
  int bestd = dist2(r, g, b, cube);
  /* the grey ramp: the grey nearest to (r, g, b) is nearest to their mean */
  int mean = (r + g + b + 1) / 3;
  int gi = (mean - 8 + 5) / 10;
  if (gi < 0) gi = 0;
  if (gi > 23) gi = 23;
  for (int k = gi - 1; k <= gi + 1; k++) { /* the rounded mean may be one step off */
    if (k < 0 || k > 23) continue;
    uint8_t grey[3] = {(uint8_t)(8 + 10 * k), (uint8_t)(8 + 10 * k), (uint8_t)(8 + 10 * k)};
    int d = dist2(r, g, b, grey);
    if (d < bestd) {
      bestd = d;
      best = 232 + k;
    }
  }
  return (uint8_t)best;
}

uint8_t sdw_preview_xterm16(uint8_t r, uint8_t g, uint8_t b) {
  int best = 0, bestd = dist2(r, g, b, k_xterm16[0]);
  for (int i = 1; i < 16; i++) {
    int d = dist2(r, g, b, k_xterm16[i]);
    if (d < bestd) {
      bestd = d;
      best = i;
    }
  }
  return (uint8_t)best;
}

static uint8_t index_for(sdw_preview_mode mode, const uint8_t *c) {
  if (mode == SDW_PREVIEW_BLOCKS_256) return sdw_preview_xterm256(c[0], c[1], c[2]);
  if (mode == SDW_PREVIEW_BLOCKS_16) return sdw_preview_xterm16(c[0], c[1], c[2]);
  return 0;
}

void sdw_preview_blocks(const uint8_t *rgb, int w, int h, sdw_preview_mode mode,
                        sdw_preview_cell *cells) {
  int rows = (h + 1) / 2;
  for (int y = 0; y < rows; y++) {
    for (int x = 0; x < w; x++) {
      sdw_preview_cell *c = &cells[(size_t)y * w + x];
      const uint8_t *top = rgb + ((size_t)(2 * y) * w + x) * 3;
      memcpy(c->top, top, 3);
      c->top_index = index_for(mode, top);
      c->has_bottom = 2 * y + 1 < h;
      if (c->has_bottom) {
        const uint8_t *bot = rgb + ((size_t)(2 * y + 1) * w + x) * 3;
        memcpy(c->bottom, bot, 3);
        c->bottom_index = index_for(mode, bot);
      } else {
        memset(c->bottom, 0, 3);
        c->bottom_index = 0;
      }
    }
  }
}
