/* History rings and sparklines for the workbench's Devices panel (GPU
 * utilisation, memory, power; host CPU and RAM): pure functions, no curses.
 *
 * A sparkline maps each value to one of the eight Unicode blocks
 * U+2581..U+2588 "▁▂▃▄▅▆▇█" (3 UTF-8 bytes each) on a lo..hi scale:
 *   level = clamp(floor((v - lo) / (hi - lo) * 8), 0, 7)
 * so lo shows as "▁" (a flat line stays visible) and hi as "█". A NaN value
 * (a missing sample) is a space. With lo >= hi the scale is the min..max of
 * the values shown (all "▁" when they are all equal).
 */
#ifndef SDW_TUI_SPARKLINE_H
#define SDW_TUI_SPARKLINE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A fixed-size history: the newest SDW_RING_CAP values. Zero-initialise. */
#define SDW_RING_CAP 512
typedef struct sdw_ring {
  float v[SDW_RING_CAP];
  int head;  /* index of the next write */
  int count; /* values held, <= SDW_RING_CAP */
} sdw_ring;

void sdw_ring_push(sdw_ring *r, float value);
/* The i-th held value, 0 = oldest, count-1 = newest (i must be in range). */
float sdw_ring_get(const sdw_ring *r, int i);
/* The newest value, NaN when empty. */
float sdw_ring_last(const sdw_ring *r);

/* Writes a sparkline of values[n] (oldest first), `width` characters wide,
 * into out (UTF-8, NUL-terminated): the newest min(n, width) values, right-
 * aligned, left-padded with spaces when n < width. Needs out_cap >=
 * 3 * width + 1 (else it writes as many whole characters as fit). Returns
 * the bytes written, without the NUL. */
size_t sdw_sparkline(const float *values, int n, float lo, float hi, int width, char *out,
                     size_t out_cap);
/* The same for the newest values of a ring. */
size_t sdw_ring_sparkline(const sdw_ring *r, float lo, float hi, int width, char *out,
                          size_t out_cap);

#ifdef __cplusplus
}
#endif
#endif
