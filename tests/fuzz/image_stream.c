/* libFuzzer target for what the download stage runs on untrusted bytes:
 * sdw_image_decode_resize (JPEG rows streamed into the resize, only the
 * region a center crop keeps decoded: jpeg_crop_scanline /
 * jpeg_skip_scanlines) against the plain path, sdw_image_decode then
 * sdw_image_resize. Both must agree exactly: the same status, the same
 * original size and the same pixels; failures are SDW_ERR_FORMAT with a
 * message and no image. The crop size and mode come from the input's length,
 * so crops of every proportion are tried. Built with ASan + UBSan (make
 * fuzz). Seeds: tests/fuzz/seeds/image_stream/ (the image target's). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_image_limits limits = {4 << 20, 8192};
  sdw_resize_options o = {size & 4 ? SDW_RESIZE_KEEP_RATIO : SDW_RESIZE_CENTER_CROP,
                          8 + (int)(size % 57), (int)(size & 1), (int)(size & 2)};
  sdw_image img, want, got;
  sdw_image_format f1, f2;
  sdw_status s1 = sdw_image_decode(data, size, &limits, &img, &f1);
  int w = 0, h = 0;
  sdw_status s2 = sdw_image_decode_resize(data, size, &limits, &o, &got, &f2, &w, &h);
  if (f1 != f2) abort();
  if (s1 != SDW_OK) {
    /* the plain decode's refusal is the streamed one's too */
    if (s1 != SDW_ERR_FORMAT || img.pixels != NULL || s2 != SDW_ERR_FORMAT || got.pixels != NULL ||
        sdw_last_error()[0] == '\0')
      abort();
    return 0;
  }
  if (s2 != SDW_OK || w != img.width || h != img.height) abort();
  if (sdw_image_resize(&img, &o, &want) != SDW_OK) abort();
  if (want.width != got.width || want.height != got.height ||
      memcmp(want.pixels, got.pixels, (size_t)want.width * want.height * 3) != 0)
    abort();
  sdw_image_free(&img);
  sdw_image_free(&want);
  sdw_image_free(&got);
  return 0;
}
