/* History rings and sparklines (see sparkline.h for the level formula). */
#include "tui/sparkline.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

void sdw_ring_push(sdw_ring *r, float value) {
  r->v[r->head] = value;
  r->head = (r->head + 1) % SDW_RING_CAP;
  if (r->count < SDW_RING_CAP) r->count++;
}

float sdw_ring_get(const sdw_ring *r, int i) {
  /* the oldest value sits count slots behind head */
  int at = (r->head - r->count + i + 2 * SDW_RING_CAP) % SDW_RING_CAP;
  return r->v[at];
}

float sdw_ring_last(const sdw_ring *r) {
  if (r->count == 0) return NAN;
  return sdw_ring_get(r, r->count - 1);
}

/* U+2581..U+2588 are E2 96 81..88 in UTF-8. */
static size_t put_level(char *out, int level) {
  out[0] = (char)0xE2;
  out[1] = (char)0x96;
  out[2] = (char)(0x81 + level);
  return 3;
}

/* The level of v on lo..hi (lo < hi), or -1 for NaN. */
static int level_of(float v, double lo, double hi) {
  if (isnan(v)) return -1;
  double f = ((double)v - lo) / (hi - lo) * 8.0;
  if (!(f >= 0.0)) return 0; /* also -inf */
  if (f >= 7.0) return 7;
  return (int)floor(f);
}

/* Shared by both entry points: get(i) yields the i-th of the n values. */
typedef float (*value_at_fn)(const void *src, int i);

static float array_at(const void *src, int i) { return ((const float *)src)[i]; }
static float ring_at(const void *src, int i) { return sdw_ring_get((const sdw_ring *)src, i); }

static size_t sparkline_from(const void *src, value_at_fn at, int n, float lo, float hi, int width,
                             char *out, size_t out_cap) {
  if (out_cap == 0) return 0;
  if (width < 0) width = 0;
  if (n < 0) n = 0;
  int shown = n < width ? n : width;
  int first = n - shown;
  double dlo = lo, dhi = hi;
  if (!(dlo < dhi)) { /* auto scale over the values shown */
    dlo = INFINITY;
    dhi = -INFINITY;
    for (int i = first; i < n; i++) {
      float v = at(src, i);
      if (isnan(v)) continue;
      if (v < dlo) dlo = v;
      if (v > dhi) dhi = v;
    }
  }
  bool flat = !(dlo < dhi) || isinf(dlo) || isinf(dhi);
  size_t len = 0;
  for (int c = 0; c < width; c++) {
    int i = first + c - (width - shown); /* right-aligned: pad first */
    int level;
    if (i < first) {
      level = -1;
    } else {
      float v = at(src, i);
      level = isnan(v) ? -1 : flat ? 0 : level_of(v, dlo, dhi);
    }
    size_t need = level < 0 ? 1 : 3;
    if (len + need + 1 > out_cap) break;
    if (level < 0)
      out[len++] = ' ';
    else
      len += put_level(out + len, level);
  }
  out[len] = '\0';
  return len;
}

size_t sdw_sparkline(const float *values, int n, float lo, float hi, int width, char *out,
                     size_t out_cap) {
  return sparkline_from(values, array_at, n, lo, hi, width, out, out_cap);
}

size_t sdw_ring_sparkline(const sdw_ring *r, float lo, float hi, int width, char *out,
                          size_t out_cap) {
  return sparkline_from(r, ring_at, r->count, lo, hi, width, out, out_cap);
}
