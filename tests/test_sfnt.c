/* pipeline/sfnt: the colour-emoji font reader, on a font built by hand from
 * the OpenType spec (tools/gen_sfnt_fixture.py: struct.pack, no font
 * library), whose expected mappings, bitmaps and ligatures are the
 * generator's construction, not sdw's output:
 *  - cmap format 12 preferred; format 4 when the (3,10) record is disabled;
 *  - CBLC index formats 1 and 3, CBDT image formats 17, 18, 19, a glyph
 *    with an empty range (no bitmap), glyphs outside every subtable;
 *  - GSUB: a ligature behind an extension lookup (type 7 -> 4) and a plain
 *    type 4 one, applied in lookup order over the whole string;
 *  - hostile input: every truncation and every single-byte corruption of
 *    the file is either refused or answered without reading outside it
 *    (each case gets an exact-size heap copy, so ASan sees any over-read). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "pipeline/sfnt.h"
#include "tests/test.h"

static uint8_t *load_fixture(size_t *size) {
  char path[1024];
  snprintf(path, sizeof path, "%s/../fuzz/seeds/sfnt/tiny.ttf", sdw_test_data_dir());
  void *data = NULL;
  if (sdw_read_file(path, &data, size) != SDW_OK) return NULL;
  return data;
}

static void check_png(const sdw_sfnt *f, uint32_t g, const char *want) {
  const uint8_t *png = NULL;
  size_t n = 0;
  int ppem = 0;
  sdw_status st = sdw_sfnt_color_png(f, g, &png, &n, &ppem);
  if (!want) {
    CHECK_MSG(st == SDW_ERR_NOT_FOUND, "glyph %u: status %d, want not found", g, st);
    return;
  }
  CHECK_MSG(st == SDW_OK, "glyph %u: %s", g, sdw_last_error());
  CHECK(ppem == 20);
  CHECK_MSG(n == strlen(want) && png && memcmp(png, want, n) == 0, "glyph %u: wrong bytes", g);
}

SDW_TEST(sfnt_maps_draws_and_ligates_the_handmade_font) {
  size_t size = 0;
  uint8_t *data = load_fixture(&size);
  REQUIRE(data);
  sdw_sfnt *f = NULL;
  CHECK_OK(sdw_sfnt_open(data, size, &f));
  REQUIRE(f);
  CHECK(sdw_sfnt_glyph_count(f) == 8);
  CHECK(sdw_sfnt_glyph(f, 0x41) == 1);
  CHECK(sdw_sfnt_glyph(f, 0x1F34E) == 2);
  CHECK(sdw_sfnt_glyph(f, 0x200D) == 3);
  CHECK(sdw_sfnt_glyph(f, 0x1F600) == 4);
  CHECK(sdw_sfnt_glyph(f, 0x1F602) == 6);
  CHECK(sdw_sfnt_glyph(f, 0x42) == 0);
  CHECK(sdw_sfnt_glyph(f, 0x10FFFF) == 0);
  check_png(f, 1, "\x89PNG-one");     /* index 1, image 17 */
  check_png(f, 2, "\x89PNG-two-big"); /* index 1, image 18 */
  check_png(f, 4, "\x89PNG-four");    /* index 3, image 17 */
  check_png(f, 5, NULL);              /* empty range */
  check_png(f, 6, "\x89PNG-six!");
  check_png(f, 7, "\x89PNG-seven"); /* index 1, image 19 */
  check_png(f, 3, NULL);            /* in no subtable */
  check_png(f, 0, NULL);
  uint32_t a[3] = {2, 3, 2};
  int n = 3;
  CHECK_OK(sdw_sfnt_ligate(f, a, &n));
  CHECK(n == 1 && a[0] == 7); /* through the extension lookup */
  uint32_t b[4] = {1, 4, 5, 1};
  n = 4;
  CHECK_OK(sdw_sfnt_ligate(f, b, &n));
  CHECK(n == 3 && b[0] == 1 && b[1] == 6 && b[2] == 1);
  uint32_t c[2] = {2, 3}; /* a prefix of a ligature: unchanged */
  n = 2;
  CHECK_OK(sdw_sfnt_ligate(f, c, &n));
  CHECK(n == 2 && c[0] == 2 && c[1] == 3);
  sdw_sfnt_close(f);

  /* format 4: turn the (3,10) record into a Macintosh one the reader skips.
   * Tables are sorted by tag: CBDT CBLC GSUB cmap maxp, so cmap's record is
   * the fourth; its second encoding record starts at 4 + 8. */
  uint8_t *copy = malloc(size);
  REQUIRE(copy);
  memcpy(copy, data, size);
  const uint8_t *rec = copy + 12 + 16 * 3;
  CHECK(memcmp(rec, "cmap", 4) == 0);
  const size_t cmap = (size_t)rec[8] << 24 | (size_t)rec[9] << 16 | (size_t)rec[10] << 8 | rec[11];
  copy[cmap + 4 + 8 + 1] = 1; /* platform 3 -> 1 */
  CHECK_OK(sdw_sfnt_open(copy, size, &f));
  if (f) {
    CHECK(sdw_sfnt_glyph(f, 0x41) == 1);
    CHECK(sdw_sfnt_glyph(f, 0x200D) == 3);
    CHECK(sdw_sfnt_glyph(f, 0x1F34E) == 0); /* beyond the BMP */
    CHECK(sdw_sfnt_glyph(f, 0x42) == 0);
    sdw_sfnt_close(f);
  }
  free(copy);
  free(data);
}

/* Every query on a font that opened. */
static void exercise(const uint8_t *data, size_t size) {
  sdw_sfnt *f = NULL;
  sdw_status st = sdw_sfnt_open(data, size, &f);
  if (st != SDW_OK) {
    CHECK(st == SDW_ERR_FORMAT || st == SDW_ERR_UNSUPPORTED);
    CHECK(f == NULL);
    return;
  }
  static const uint32_t cps[] = {0x41, 0x1F34E, 0x200D, 0x1F600, 0x1F601, 0x1F602, 0};
  for (int i = 0; i < 7; i++)
    (void)sdw_sfnt_glyph(f, cps[i]);
  for (uint32_t g = 0; g < 70000; g += g < 16 ? 1 : 9973) {
    const uint8_t *png;
    size_t n;
    if (sdw_sfnt_color_png(f, g, &png, &n, NULL) == SDW_OK)
      CHECK(png >= data && png + n <= data + size);
  }
  uint32_t s[5] = {2, 3, 2, 4, 5};
  int n = 5;
  (void)sdw_sfnt_ligate(f, s, &n);
  CHECK(n >= 1 && n <= 5);
  sdw_sfnt_close(f);
}

SDW_TEST(sfnt_refuses_or_survives_every_truncation_and_corruption) {
  size_t size = 0;
  uint8_t *data = load_fixture(&size);
  REQUIRE(data);
  for (size_t len = 0; len < size; len++) {
    uint8_t *cut = malloc(len ? len : 1);
    REQUIRE(cut);
    memcpy(cut, data, len);
    exercise(cut, len);
    free(cut);
  }
  uint8_t *bad = malloc(size);
  REQUIRE(bad);
  for (size_t i = 0; i < size; i++)
    for (int v = 0; v < 2; v++) {
      memcpy(bad, data, size);
      bad[i] = v ? 0xFF : (uint8_t)(bad[i] ^ 0x80);
      exercise(bad, size);
    }
  free(bad);
  free(data);
}
