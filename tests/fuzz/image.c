/* libFuzzer target for the image path (make fuzz): decode any bytes as
 * JPEG/PNG/WebP under a 4-megapixel limit, then, for an image that decodes,
 * resize it as img2dataset would (center_crop and border, area down and
 * Lanczos up) and encode it as JPEG. Failures must be SDW_ERR_FORMAT with a
 * message and no image; successes must have the probed size. Built with ASan
 * + UBSan. Seeds: tests/fuzz/seeds/image/. */
#include <stdint.h>
#include <stdlib.h>

#include "pipeline/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_image_limits limits = {4 << 20, 8192};
  sdw_image img;
  sdw_image_format fmt;
  sdw_status s = sdw_image_decode(data, size, &limits, &img, &fmt);
  if (s != SDW_OK) {
    if (s != SDW_ERR_FORMAT || img.pixels != NULL || sdw_last_error()[0] == '\0') abort();
    return 0;
  }
  int w = 0, h = 0;
  sdw_image_format pf;
  if (sdw_image_probe(data, size, &pf, &w, &h) != SDW_OK || pf != fmt || w != img.width ||
      h != img.height)
    abort();
  sdw_resize_options crop = {SDW_RESIZE_CENTER_CROP, 24, 0, (int)(size & 1)};
  sdw_resize_options border = {SDW_RESIZE_BORDER, 40, 0, 0};
  sdw_image out;
  if (sdw_image_resize(&img, &crop, &out) != SDW_OK) abort();
  if (out.width != 24 || out.height != 24) abort();
  uint8_t *jpg = NULL;
  size_t n = 0;
  if (sdw_image_encode_jpeg(&out, 95, &jpg, &n) != SDW_OK || n < 100) abort();
  free(jpg);
  sdw_image_free(&out);
  if (sdw_image_resize(&img, &border, &out) != SDW_OK || out.width != 40 || out.height != 40)
    abort();
  sdw_image_free(&out);
  sdw_image_free(&img);
  return 0;
}
