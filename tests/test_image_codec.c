/* pipeline/image_codec: decoding against what img2dataset itself gets from
 * the same bytes (tests/data/image, written by tools/gen_image_fixtures.py:
 * cv2.imdecode IMREAD_UNCHANGED + img2dataset's alpha matting, from
 * opencv-python-headless 4.14), JPEG encoding against cv2.imencode's bytes,
 * and refusals (truncated, corrupt, bombs, animated, other formats).
 *
 * Tolerances: decoded pixels must be identical. Both sides run libjpeg-turbo
 * with its default islow IDCT and fancy upsampling, libpng and libwebp,
 * whose outputs are specified bit for bit, and the matting formula is the
 * same float64 arithmetic. The only documented departure, 16-bit PNG, has
 * its own reference: round(v / 257). Encoded JPEG bytes must be identical to
 * OpenCV's too (same libjpeg defaults and quality scaling); the pixel check
 * after a round trip is there to make a failure readable. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "pipeline/image.h"
#include "tests/test.h"

static int read_data(const char *file, void **data, size_t *size) {
  char path[512];
  snprintf(path, sizeof path, "%s/image/%s", sdw_test_data_dir(), file);
  if (sdw_read_file(path, data, size) != SDW_OK) {
    CHECK_MSG(0, "%s: %s", path, sdw_last_error());
    return 0;
  }
  return 1;
}

static int load_rgb_png(const char *file, sdw_image *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/image/%s", sdw_test_data_dir(), file);
  sdw_png_image png;
  if (sdw_png_read(path, 0, &png) != SDW_OK || png.channels != 3) {
    CHECK_MSG(0, "%s: %s", path, sdw_last_error());
    return 0;
  }
  out->pixels = png.pixels;
  out->width = png.width;
  out->height = png.height;
  png.pixels = NULL;
  sdw_png_image_free(&png);
  return 1;
}

static cJSON *load_cases(void) {
  void *text = NULL;
  size_t size = 0;
  if (!read_data("cases.json", &text, &size)) return NULL;
  cJSON *j = cJSON_ParseWithLength(text, size);
  free(text);
  return j;
}

SDW_TEST(image_decode_matches_img2dataset) {
  cJSON *root = load_cases();
  REQUIRE(root);
  int n = 0, refused = 0;
  for (const cJSON *c = cJSON_GetObjectItem(root, "decode")->child; c; c = c->next, n++) {
    const char *file = cJSON_GetObjectItem(c, "file")->valuestring;
    void *data = NULL;
    size_t size = 0;
    if (!read_data(file, &data, &size)) continue;
    sdw_image got = {0};
    sdw_image_format fmt;
    sdw_status st = sdw_image_decode(data, size, NULL, &got, &fmt);
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "error"))) {
      CHECK_MSG(st == SDW_ERR_FORMAT && got.pixels == NULL && sdw_last_error()[0],
                "%s (%s): want a format error, got %s", file,
                cJSON_GetObjectItem(c, "note")->valuestring, sdw_status_name(st));
      refused++;
    } else {
      sdw_image want = {0};
      CHECK_MSG(st == SDW_OK, "%s: %s", file, sdw_last_error());
      if (st == SDW_OK && load_rgb_png(cJSON_GetObjectItem(c, "expected")->valuestring, &want)) {
        CHECK_MSG(got.width == want.width && got.height == want.height, "%s: %dx%d vs %dx%d", file,
                  got.width, got.height, want.width, want.height);
        if (got.width == want.width && got.height == want.height) {
          size_t ns = (size_t)got.width * got.height * 3, nd = 0;
          int maxd = 0;
          for (size_t i = 0; i < ns; i++) {
            int d = abs(got.pixels[i] - want.pixels[i]);
            nd += d != 0;
            if (d > maxd) maxd = d;
          }
          CHECK_MSG(nd == 0, "%s (%s): %zu of %zu samples differ, max %d", file,
                    cJSON_GetObjectItem(c, "note")->valuestring, nd, ns, maxd);
        }
        int pw = 0, ph = 0;
        sdw_image_format pf;
        CHECK_OK(sdw_image_probe(data, size, &pf, &pw, &ph));
        CHECK(pf == fmt && pw == want.width && ph == want.height);
      }
      sdw_image_free(&want);
    }
    sdw_image_free(&got);
    free(data);
  }
  CHECK(n >= 30 && refused >= 9);
  cJSON_Delete(root);
}

SDW_TEST(image_encode_jpeg_matches_opencv) {
  cJSON *root = load_cases();
  REQUIRE(root);
  for (const cJSON *c = cJSON_GetObjectItem(root, "encode")->child; c; c = c->next) {
    sdw_image in = {0}, back = {0}, want_px = {0};
    void *want = NULL;
    size_t nwant = 0;
    int q = (int)cJSON_GetObjectItem(c, "quality")->valuedouble;
    const char *exp = cJSON_GetObjectItem(c, "expected")->valuestring;
    if (!load_rgb_png(cJSON_GetObjectItem(c, "input")->valuestring, &in) ||
        !read_data(exp, &want, &nwant)) {
      sdw_image_free(&in);
      continue;
    }
    uint8_t *got = NULL;
    size_t ngot = 0;
    CHECK_OK(sdw_image_encode_jpeg(&in, q, &got, &ngot));
    CHECK_MSG(ngot == nwant && got && memcmp(got, want, ngot) == 0,
              "%s: %zu bytes vs OpenCV's %zu, contents %s", exp, ngot, nwant,
              got && ngot == nwant ? "differ" : "-");
    /* readable failure: the pixels decoded from both */
    if (got && sdw_image_decode(got, ngot, NULL, &back, NULL) == SDW_OK &&
        sdw_image_decode(want, nwant, NULL, &want_px, NULL) == SDW_OK) {
      size_t nd = 0;
      for (size_t i = 0; i < (size_t)back.width * back.height * 3; i++)
        nd += back.pixels[i] != want_px.pixels[i];
      CHECK_MSG(nd == 0, "%s: %zu decoded samples differ from OpenCV's encoding", exp, nd);
    }
    free(got);
    free(want);
    sdw_image_free(&in);
    sdw_image_free(&back);
    sdw_image_free(&want_px);
  }
  cJSON_Delete(root);
}

SDW_TEST(image_decode_limits_and_garbage) {
  void *data = NULL;
  size_t size = 0;
  REQUIRE(read_data("rgb420.jpg", &data, &size));
  sdw_image img = {0};
  /* limits: 61x43 = 2623 pixels */
  sdw_image_limits lim = {2622, 0};
  CHECK(sdw_image_decode(data, size, &lim, &img, NULL) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "pixel limit") != NULL);
  lim.max_pixels = 2623;
  CHECK_OK(sdw_image_decode(data, size, &lim, &img, NULL));
  sdw_image_free(&img);
  sdw_image_limits side = {0, 60};
  CHECK(sdw_image_decode(data, size, &side, &img, NULL) == SDW_ERR_FORMAT);
  /* every prefix of a JPEG is refused or decoded, never a crash; the
   * truncated ones are refused */
  for (size_t cut = 0; cut < size; cut += 97) {
    sdw_status st = sdw_image_decode(data, cut, NULL, &img, NULL);
    CHECK_MSG(st == SDW_ERR_FORMAT, "JPEG cut at %zu of %zu: %s", cut, size, sdw_status_name(st));
    sdw_image_free(&img);
  }
  free(data);
  sdw_image_format f;
  CHECK(sdw_image_decode("GIF89a", 6, NULL, &img, &f) == SDW_ERR_FORMAT && f == SDW_IMAGE_UNKNOWN);
  CHECK(sdw_image_decode(NULL, 0, NULL, &img, &f) == SDW_ERR_FORMAT);
  CHECK(sdw_image_sniff("\x89PNG\r\n\x1a\n", 8) == SDW_IMAGE_PNG);
  CHECK(sdw_image_sniff("RIFF\0\0\0\0WEBP", 12) == SDW_IMAGE_WEBP);
  CHECK(!strcmp(sdw_image_format_name(SDW_IMAGE_JPEG), "jpeg"));
  /* encode argument checks */
  uint8_t *out = NULL;
  size_t n = 0;
  CHECK_OK(sdw_image_alloc(8, 8, &img));
  memset(img.pixels, 9, 8 * 8 * 3);
  CHECK(sdw_image_encode_jpeg(&img, 0, &out, &n) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_image_encode_jpeg(&img, 101, &out, &n) == SDW_ERR_INVALID_ARGUMENT);
  sdw_image_free(&img);
}
