/* Sixel encoding through libsixel (see preview.h). */
#include <sixel/sixel.h>
#include <stdlib.h>
#include <string.h>

#include "tui/preview.h"

typedef struct byte_buf {
  char *data;
  size_t len, cap;
  bool failed;
} byte_buf;

/* libsixel's write callback: appends to the buffer. */
static int buf_write(char *data, int size, void *priv) {
  byte_buf *b = priv;
  if (b->failed || size <= 0) return 0;
  if (b->len + (size_t)size + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (b->len + (size_t)size + 1 > cap)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      b->failed = true;
      return 0;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, (size_t)size);
  b->len += (size_t)size;
  b->data[b->len] = '\0';
  return size;
}

/* Collects the distinct colours of rgb into pal (up to max entries);
 * returns their count, or max + 1 when there are more. An open-addressing
 * hash over 24-bit keys keeps this linear. */
static int distinct_colors(const uint8_t *rgb, size_t npix, int max, uint8_t *pal) {
  enum { SLOTS = 1024 }; /* > 2 * 256, a power of two */
  uint32_t keys[SLOTS];
  memset(keys, 0xff, sizeof keys); /* 0xffffffff: empty (never a 24-bit key) */
  int n = 0;
  for (size_t i = 0; i < npix; i++) {
    uint32_t k = (uint32_t)rgb[3 * i] << 16 | (uint32_t)rgb[3 * i + 1] << 8 | rgb[3 * i + 2];
    uint32_t h = (k * 2654435761u) >> 22; /* top 10 bits */
    while (keys[h] != 0xffffffffu && keys[h] != k)
      h = (h + 1) & (SLOTS - 1);
    if (keys[h] == k) continue;
    if (n == max) return max + 1;
    keys[h] = k;
    memcpy(pal + 3 * n, rgb + 3 * i, 3);
    n++;
  }
  return n;
}

static sdw_status sixel_error(SIXELSTATUS s, const char *what) {
  return sdw_fail(SDW_ERR_INTERNAL, "libsixel: %s failed (status 0x%x)", what, (unsigned)s);
}

sdw_status sdw_preview_sixel_encode(const uint8_t *rgb, int w, int h, int max_colors, char **out,
                                    size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (w < 1 || h < 1 || max_colors < 2 || max_colors > 256)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "sixel: bad image %dx%d or colour count %d", w, h,
                    max_colors);
  /* libsixel takes non-const pixels (it does not write them when the
   * palette is given or when no dithering is asked for, but a copy keeps
   * the caller's buffer safe from any version that does) */
  size_t npix = (size_t)w * (size_t)h;
  uint8_t *pixels = malloc(npix * 3);
  if (!pixels) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "sixel: out of memory for %dx%d", w, h);
  memcpy(pixels, rgb, npix * 3);

  uint8_t pal[256 * 3];
  int ncolors = distinct_colors(pixels, npix, max_colors, pal);
  bool exact = ncolors <= max_colors;
  if (exact && ncolors < 2) { /* a one-colour image: libsixel wants two entries */
    memcpy(pal + 3, pal, 3);
    ncolors = 2;
  }

  sdw_status st = SDW_OK;
  sixel_dither_t *dither = NULL;
  sixel_output_t *output = NULL;
  byte_buf buf = {0};
  SIXELSTATUS s = sixel_dither_new(&dither, exact ? ncolors : max_colors, NULL);
  if (SIXEL_FAILED(s)) {
    st = sixel_error(s, "sixel_dither_new");
    goto done;
  }
  if (exact) {
    /* the image's own colours: every pixel maps to its colour exactly */
    sixel_dither_set_palette(dither, pal);
  } else {
    s = sixel_dither_initialize(dither, pixels, w, h, SIXEL_PIXELFORMAT_RGB888, SIXEL_LARGE_NORM,
                                SIXEL_REP_AVERAGE_PIXELS, SIXEL_QUALITY_HIGH);
    if (SIXEL_FAILED(s)) {
      st = sixel_error(s, "sixel_dither_initialize");
      goto done;
    }
  }
  sixel_dither_set_pixelformat(dither, SIXEL_PIXELFORMAT_RGB888);
  /* no error diffusion: its noise would change every frame and break the
   * exact round trip of images with few colours */
  sixel_dither_set_diffusion_type(dither, SIXEL_DIFFUSE_NONE);
  s = sixel_output_new(&output, buf_write, &buf, NULL);
  if (SIXEL_FAILED(s)) {
    st = sixel_error(s, "sixel_output_new");
    goto done;
  }
  sixel_output_set_8bit_availability(output, 0); /* 7-bit ESC P / ESC \ (UTF-8 safe) */
  s = sixel_encode(pixels, w, h, 3, dither, output);
  if (SIXEL_FAILED(s)) {
    st = sixel_error(s, "sixel_encode");
    goto done;
  }
  if (buf.failed) {
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "sixel: out of memory for the encoded image");
    goto done;
  }
  *out = buf.data;
  *out_len = buf.len;
  buf.data = NULL;
done:
  if (output) sixel_output_unref(output);
  if (dither) sixel_dither_unref(dither);
  free(buf.data);
  free(pixels);
  return st;
}
