/* pipeline/image_resize: against OpenCV itself and img2dataset's own Resizer
 * (tests/data/resize, written by tools/gen_resize_fixtures.py with
 * opencv-python-headless 4.14 / img2dataset 1.47: cv2.resize INTER_AREA /
 * INTER_CUBIC / INTER_LANCZOS4 and Resizer in every mode, PNG so the pixels
 * are exact), plus properties that need no reference: sizes and crop
 * offsets, constant images staying constant, a 2x box average by hand.
 *
 * Tolerance. INTER_AREA shrinking and INTER_LANCZOS4 (img2dataset's two
 * filters) must match exactly: we reproduce OpenCV's arithmetic and measured
 * 0 differing samples. INTER_CUBIC and INTER_AREA enlarging: max |ours -
 * OpenCV| <= 1 per 8-bit sample and at most 10% of samples differing.
 * OpenCV's default (optimised) path computes those two in vectorised
 * variants that round differently from its own plain C code (with
 * cv2.setUseOptimized(False) our cubic output differs in 4 of 223,353
 * samples, by 1); we follow the plain C arithmetic. A wrong filter, phase,
 * rounding rule or crop offset gives differences of many levels in many
 * samples. SDW_TEST_VERBOSE=1 prints the counts per case and per op. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "pipeline/image.h"
#include "tests/test.h"

static int load_png(const char *file, sdw_image *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/resize/%s", sdw_test_data_dir(), file);
  sdw_png_image png;
  if (sdw_png_read(path, 0, &png) != SDW_OK) {
    CHECK_MSG(0, "%s: %s", path, sdw_last_error());
    return 0;
  }
  if (png.channels != 3) {
    CHECK_MSG(0, "%s: %d channels", path, png.channels);
    sdw_png_image_free(&png);
    return 0;
  }
  out->pixels = png.pixels; /* malloc'd: sdw_image_free frees it */
  out->width = png.width;
  out->height = png.height;
  png.pixels = NULL;
  sdw_png_image_free(&png);
  return 1;
}

static sdw_resize_mode mode_of(const char *s) {
  if (!strcmp(s, "border")) return SDW_RESIZE_BORDER;
  if (!strcmp(s, "keep_ratio")) return SDW_RESIZE_KEEP_RATIO;
  if (!strcmp(s, "center_crop")) return SDW_RESIZE_CENTER_CROP;
  if (!strcmp(s, "keep_ratio_largest")) return SDW_RESIZE_KEEP_RATIO_LARGEST;
  return SDW_RESIZE_NO;
}

SDW_TEST(image_resize_matches_opencv_and_img2dataset) {
  char path[512];
  snprintf(path, sizeof path, "%s/resize/cases.json", sdw_test_data_dir());
  void *text = NULL;
  size_t size = 0;
  CHECK_OK(sdw_read_file(path, &text, &size));
  REQUIRE(text);
  cJSON *root = cJSON_ParseWithLength(text, size);
  free(text);
  REQUIRE(root);
  const cJSON *cases = cJSON_GetObjectItem(root, "cases");
  REQUIRE(cases && cJSON_GetArraySize(cases) >= 40);
  int verbose = getenv("SDW_TEST_VERBOSE") != NULL;
  /* per op: worst difference and differing samples over all its cases */
  const char *ops[] = {"area", "cubic", "lanczos", "resizer"};
  int worst[4] = {0}, ncases[4] = {0};
  long ndiff[4] = {0}, nsamples[4] = {0};
  for (const cJSON *c = cases->child; c; c = c->next) {
    const char *op = cJSON_GetObjectItem(c, "op")->valuestring;
    const char *in_name = cJSON_GetObjectItem(c, "input")->valuestring;
    const char *want_name = cJSON_GetObjectItem(c, "expected")->valuestring;
    int w = (int)cJSON_GetObjectItem(c, "width")->valuedouble;
    int h = (int)cJSON_GetObjectItem(c, "height")->valuedouble;
    sdw_image in = {0}, want = {0}, got = {0};
    if (!load_png(in_name, &in) || !load_png(want_name, &want)) {
      sdw_image_free(&in);
      sdw_image_free(&want);
      continue;
    }
    int opi = 0;
    while (opi < 3 && strcmp(ops[opi], op))
      opi++;
    sdw_status st;
    char what[160];
    if (!strcmp(op, "resizer")) {
      sdw_resize_options o = {0};
      o.mode = mode_of(cJSON_GetObjectItem(c, "mode")->valuestring);
      o.size = (int)cJSON_GetObjectItem(c, "size")->valuedouble;
      o.resize_only_if_bigger = cJSON_IsTrue(cJSON_GetObjectItem(c, "only_if_bigger"));
      o.upscale_cubic = !strcmp(cJSON_GetObjectItem(c, "upscale")->valuestring, "cubic");
      st = sdw_image_resize(&in, &o, &got);
      snprintf(what, sizeof what, "%s: Resizer %s size %d%s %s", in_name,
               cJSON_GetObjectItem(c, "mode")->valuestring, o.size,
               o.resize_only_if_bigger ? " only_if_bigger" : "", o.upscale_cubic ? "cubic" : "");
    } else {
      st = !strcmp(op, "area")    ? sdw_image_resize_area(&in, w, h, &got)
           : !strcmp(op, "cubic") ? sdw_image_resize_cubic(&in, w, h, &got)
                                  : sdw_image_resize_lanczos(&in, w, h, &got);
      snprintf(what, sizeof what, "%s: %s to %dx%d", in_name, op, w, h);
    }
    CHECK_MSG(st == SDW_OK, "%s: %s", what, sdw_last_error());
    if (st == SDW_OK) {
      CHECK_MSG(got.width == want.width && got.height == want.height && got.width == w &&
                    got.height == h,
                "%s: got %dx%d, want %dx%d", what, got.width, got.height, want.width, want.height);
      if (got.width == want.width && got.height == want.height) {
        size_t n = (size_t)got.width * got.height * 3;
        int maxd = 0;
        long nd = 0;
        for (size_t i = 0; i < n; i++) {
          int d = abs((int)got.pixels[i] - (int)want.pixels[i]);
          if (d > maxd) maxd = d;
          nd += d != 0;
        }
        int exact = !strcmp(op, "lanczos") ||
                    (!strcmp(op, "area") && w <= in.width && h <= in.height) ||
                    (!strcmp(op, "resizer") &&
                     strcmp(cJSON_GetObjectItem(c, "upscale")->valuestring, "cubic"));
        if (exact)
          CHECK_MSG(nd == 0, "%s: %ld of %zu samples differ from OpenCV (max %d)", what, nd, n,
                    maxd);
        CHECK_MSG(maxd <= 1, "%s: max difference %d from OpenCV (%ld of %zu samples differ)", what,
                  maxd, nd, n);
        CHECK_MSG(nd * 10 <= (long)n, "%s: %ld of %zu samples differ", what, nd, n);
        if (maxd > worst[opi]) worst[opi] = maxd;
        ndiff[opi] += nd;
        nsamples[opi] += (long)n;
        ncases[opi]++;
        if (verbose) printf("  %-60s max %d, %ld/%zu differ\n", what, maxd, nd, n);
      }
    }
    sdw_image_free(&in);
    sdw_image_free(&want);
    sdw_image_free(&got);
  }
  if (verbose)
    for (int i = 0; i < 4; i++)
      printf("  %-8s %2d cases: max difference %d, %ld of %ld samples differ\n", ops[i], ncases[i],
             worst[i], ndiff[i], nsamples[i]);
  cJSON_Delete(root);
}

/* Properties that hold for any correct implementation, with hand-made
 * references: a 2x2 box average with OpenCV's round-half-up, a constant image
 * staying constant under every filter (coefficients sum to 2048), crop
 * offsets, and img2dataset's size arithmetic (Python round, half to even). */
SDW_TEST(image_resize_properties) {
  sdw_image in = {0}, out = {0};
  CHECK_OK(sdw_image_alloc(6, 4, &in));
  REQUIRE(in.pixels);
  for (int i = 0; i < 6 * 4 * 3; i++)
    in.pixels[i] = (uint8_t)(i * 37 % 256);
  CHECK_OK(sdw_image_resize_area(&in, 3, 2, &out));
  REQUIRE(out.pixels);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 3; x++)
      for (int c = 0; c < 3; c++) {
        int s = 0;
        for (int dy = 0; dy < 2; dy++)
          for (int dx = 0; dx < 2; dx++)
            s += in.pixels[((2 * y + dy) * 6 + 2 * x + dx) * 3 + c];
        CHECK(out.pixels[(y * 3 + x) * 3 + c] == (s + 2) / 4);
      }
  sdw_image_free(&out);

  /* constant images */
  memset(in.pixels, 173, 6 * 4 * 3);
  sdw_status (*fns[3])(const sdw_image *, int, int, sdw_image *) = {
      sdw_image_resize_area, sdw_image_resize_cubic, sdw_image_resize_lanczos};
  int sizes[][2] = {{13, 9}, {5, 3}, {1, 1}, {6, 11}, {31, 2}};
  for (int f = 0; f < 3; f++)
    for (int s = 0; s < 5; s++) {
      CHECK_OK(fns[f](&in, sizes[s][0], sizes[s][1], &out));
      int bad = 0;
      for (int i = 0; out.pixels && i < sizes[s][0] * sizes[s][1] * 3; i++)
        bad += out.pixels[i] != 173;
      CHECK_MSG(bad == 0, "filter %d to %dx%d: %d samples changed", f, sizes[s][0], sizes[s][1],
                bad);
      sdw_image_free(&out);
    }
  sdw_image_free(&in);

  /* img2dataset's arithmetic: 1025x769 center_crop 512 -> scale 512/769 ->
   * width round(682.4...) = 682; 3x5 keep_ratio 2 -> 2x3.333 -> 2x3;
   * 5x2 keep_ratio 5 (x2.5: 12.5 -> 12, half to even) */
  struct {
    int w, h, mode, size, only, want_w, want_h;
  } t[] = {
      {1025, 769, SDW_RESIZE_CENTER_CROP, 512, 1, 512, 512},
      {1025, 769, SDW_RESIZE_KEEP_RATIO, 512, 1, 682, 512},
      {3, 5, SDW_RESIZE_KEEP_RATIO, 2, 0, 2, 3},
      {5, 2, SDW_RESIZE_KEEP_RATIO, 5, 0, 12, 5}, /* 2.5 * 5 = 12.5 -> 12 */
      {5, 2, SDW_RESIZE_KEEP_RATIO, 5, 1, 5, 2},  /* not bigger: untouched */
      {7, 3, SDW_RESIZE_BORDER, 10, 0, 10, 10},
      {7, 3, SDW_RESIZE_BORDER, 5, 0, 5, 5},
      {7, 3, SDW_RESIZE_KEEP_RATIO_LARGEST, 5, 0, 5, 2}, /* 3 * 5/7 = 2.14 */
      {1, 400, SDW_RESIZE_BORDER, 8, 1, 8, 8},           /* width max(1, 0.02) = 1 */
      {9, 9, SDW_RESIZE_NO, 4, 0, 9, 9},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    CHECK_OK(sdw_image_alloc(t[i].w, t[i].h, &in));
    REQUIRE(in.pixels);
    memset(in.pixels, 0, (size_t)t[i].w * t[i].h * 3);
    sdw_resize_options o = {(sdw_resize_mode)t[i].mode, t[i].size, t[i].only, 0};
    CHECK_OK(sdw_image_resize(&in, &o, &out));
    CHECK_MSG(out.width == t[i].want_w && out.height == t[i].want_h,
              "case %zu: %dx%d mode %d size %d -> %dx%d, want %dx%d", i, t[i].w, t[i].h, t[i].mode,
              t[i].size, out.width, out.height, t[i].want_w, t[i].want_h);
    if (t[i].mode == SDW_RESIZE_BORDER && out.pixels) /* corners are padding: white */
      CHECK(out.pixels[0] == 255 || t[i].w >= t[i].h);
    sdw_image_free(&out);
    sdw_image_free(&in);
  }

  /* center crop offsets: (in - out) / 2 rounded down */
  CHECK_OK(sdw_image_alloc(5, 4, &in));
  REQUIRE(in.pixels);
  for (int i = 0; i < 5 * 4 * 3; i++)
    in.pixels[i] = (uint8_t)i;
  CHECK_OK(sdw_image_center_crop(&in, 2, 1, &out));
  CHECK(out.pixels && out.pixels[0] == (uint8_t)((1 * 5 + 1) * 3)); /* x0 = 1, y0 = 1 */
  sdw_image_free(&out);
  CHECK(sdw_image_center_crop(&in, 6, 1, &out) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_image_resize_area(&in, 0, 3, &out) == SDW_ERR_INVALID_ARGUMENT);
  sdw_resize_options bad = {SDW_RESIZE_CENTER_CROP, 0, 0, 0};
  CHECK(sdw_image_resize(&in, &bad, &out) == SDW_ERR_INVALID_ARGUMENT);
  sdw_image_free(&in);
}
