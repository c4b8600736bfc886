/* libFuzzer target for the colour-emoji font reader (make fuzz): any bytes
 * must be refused with a message or answered with bitmaps that lie inside
 * the input; ligation never grows the string. Built with ASan + UBSan, so
 * any read outside the input stops the run. Seeds: tests/fuzz/seeds/sfnt/
 * (tools/gen_sfnt_fixture.py). The reader is compiled in here: the fuzz
 * build's library list (Makefile FUZZ_LIB_SRCS) holds core/base only. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/sfnt.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_sfnt *f = NULL;
  sdw_status st = sdw_sfnt_open(data, size, &f);
  if (st != SDW_OK) {
    if (f || sdw_last_error()[0] == '\0') abort();
    return 0;
  }
  volatile uint32_t sink = 0;
  static const uint32_t cps[] = {0x41, 0x263A, 0x1F34E, 0x200D, 0x1F600, 0x1F602, 0xFE0F};
  for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++)
    sink += sdw_sfnt_glyph(f, cps[i]);
  for (uint32_t g = 0; g < 64; g++) {
    const uint8_t *png;
    size_t n;
    if (sdw_sfnt_color_png(f, g, &png, &n, NULL) == SDW_OK) {
      if (png < data || n > size || png + n > data + size) abort();
      if (n) sink += png[n - 1];
    }
  }
  uint32_t s[6] = {2, 3, 2, 4, 5, 1};
  int n = 6;
  (void)sdw_sfnt_ligate(f, s, &n);
  if (n < 1 || n > 6) abort();
  sdw_sfnt_close(f);
  (void)sink;
  return 0;
}
