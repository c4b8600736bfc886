/* PNG writing and reading through libpng: pixels and text chunks round-trip,
 * the write is atomic, corrupt files and pixel bombs are refused clearly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "tests/test.h"

SDW_TEST(png_round_trip_with_text) {
  char path[512];
  snprintf(path, sizeof path, "%s/a.png", sdw_test_tmpdir());
  enum { W = 37, H = 21 };
  uint8_t pixels[W * H * 3];
  for (int i = 0; i < W * H * 3; i++)
    pixels[i] = (uint8_t)(i * 31 + 7);
  const char *params = "a red apple\nNegative prompt: blurry\nSteps: 30, Sampler: DDIM";
  sdw_png_text texts[] = {{"parameters", params}, {"Comment", "caf\xc3\xa9 \xe2\x9c\x93"}};
  CHECK_OK(sdw_png_write(path, pixels, W, H, 3, texts, 2));
  sdw_png_image img;
  CHECK_OK(sdw_png_read(path, 0, &img));
  CHECK(img.width == W && img.height == H && img.channels == 3);
  CHECK(img.pixels && memcmp(img.pixels, pixels, sizeof pixels) == 0);
  const char *got = sdw_png_image_text(&img, "parameters");
  CHECK(got && strcmp(got, params) == 0);
  got = sdw_png_image_text(&img, "Comment");
  CHECK(got && strcmp(got, "caf\xc3\xa9 \xe2\x9c\x93") == 0); /* UTF-8 through iTXt */
  CHECK(sdw_png_image_text(&img, "missing") == NULL);
  sdw_png_image_free(&img);
}

SDW_TEST(png_rgba_and_pixel_budget) {
  char path[512];
  snprintf(path, sizeof path, "%s/b.png", sdw_test_tmpdir());
  uint8_t rgba[4 * 4 * 4];
  for (int i = 0; i < 64; i++)
    rgba[i] = (uint8_t)(255 - i);
  CHECK_OK(sdw_png_write(path, rgba, 4, 4, 4, NULL, 0));
  sdw_png_image img;
  CHECK_OK(sdw_png_read(path, 16, &img));
  CHECK(img.channels == 4 && memcmp(img.pixels, rgba, sizeof rgba) == 0);
  sdw_png_image_free(&img);
  CHECK(sdw_png_read(path, 15, &img) == SDW_ERR_FORMAT); /* 16 px > budget of 15 */
  CHECK(strstr(sdw_last_error(), "pixel budget") != NULL);
  CHECK(img.pixels == NULL);
}

SDW_TEST(png_corrupt_and_missing_files) {
  char path[512];
  snprintf(path, sizeof path, "%s/c.png", sdw_test_tmpdir());
  uint8_t px[8 * 8 * 3] = {0};
  CHECK_OK(sdw_png_write(path, px, 8, 8, 3, NULL, 0));
  void *data;
  size_t size;
  CHECK_OK(sdw_read_file(path, &data, &size));
  sdw_png_image img;
  for (size_t cut = 0; cut < size; cut += 7) { /* every truncation is an error, not a crash */
    CHECK_OK(sdw_atomic_write(path, data, cut));
    CHECK(sdw_png_read(path, 0, &img) == SDW_ERR_FORMAT);
    CHECK(img.pixels == NULL);
  }
  free(data);
  CHECK(sdw_png_read("/nonexistent/x.png", 0, &img) == SDW_ERR_NOT_FOUND);
  char bad[512];
  snprintf(bad, sizeof bad, "%s/no-such-dir/x.png", sdw_test_tmpdir());
  CHECK(sdw_png_write(bad, px, 8, 8, 3, NULL, 0) == SDW_ERR_IO);
}
