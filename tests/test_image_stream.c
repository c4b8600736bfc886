/* pipeline/image_resize's row-streaming resizer and the windowed INTER_AREA
 * shrink, and sdw_image_decode_resize (what the download stage runs).
 *
 * References, none of them our own output:
 *  - OpenCV / img2dataset themselves: every Resizer case of
 *    tests/data/resize (tools/gen_resize_fixtures.py, opencv-python-headless
 *    4.14 / img2dataset 1.47), fed row by row through sdw_image_resizer
 *    (taking batches of rows as a decoder does). Tolerance as in
 *    tests/test_image_resize.c: identical samples, except the cubic upscale
 *    (max 1 level, <= 10% of samples: OpenCV's SIMD cubic rounds
 *    differently from its plain C code, which we follow).
 *  - A plain scalar transcription of OpenCV's resizeArea_ (its
 *    computeResizeAreaTab and ResizeArea_Invoker: float weights, per output
 *    pixel sums in table order, vertical sums, cvRound) on random images at
 *    factors 1.0x to 5x with odd sizes, so that every tap count and the
 *    vector loops' tails are exercised, full and center-cropped. Tolerance:
 *    0 differing samples, because the optimised code must do the same float
 *    operations in the same order; a wrong weight, tap, window offset or
 *    order moves values by one level or more somewhere.
 *  - The JPEG fixtures of tests/data/image as OpenCV decodes them: decoding
 *    with the resize must give exactly those pixels resized (sizes, crops
 *    and, with SDW_RESIZE_NO, the pixels themselves), and refusals
 *    (truncated, over the limits, not an image) stay refusals.
 *  - Larger JPEGs, where a center crop makes the decoder skip rows
 *    (portrait) or columns (landscape, jpeg_crop_scanline): identical to the
 *    full decode (checked against OpenCV by tests/test_image_codec.c) then
 *    the resize (checked above). Tolerance 0: the needed pixels must be
 *    exactly a full decode's; a missing margin shows at the crop edges. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "pipeline/image.h"
#include "tests/test.h"

static int load_png(const char *dir, const char *file, sdw_image *out) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s/%s", sdw_test_data_dir(), dir, file);
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

/* Pushes in's rows through a resizer, SDW_IMAGE_RESIZER_BATCH (or fewer)
 * rows taken before they are committed. */
static sdw_status resize_by_rows(const sdw_image *in, const sdw_resize_options *o, int batch,
                                 sdw_image *out) {
  sdw_image_resizer *r;
  SDW_TRY(sdw_image_resizer_new(in->width, in->height, o, &r));
  size_t stride = (size_t)in->width * 3;
  for (int y = 0; y < in->height; y += batch) {
    int n = in->height - y < batch ? in->height - y : batch;
    uint8_t *rows[SDW_IMAGE_RESIZER_BATCH];
    for (int k = 0; k < n; k++)
      rows[k] = sdw_image_resizer_row(r, y + k);
    for (int k = 0; k < n; k++)
      memcpy(rows[k], in->pixels + (size_t)(y + k) * stride, stride);
    for (int k = 0; k < n; k++)
      sdw_image_resizer_commit(r, y + k);
  }
  return sdw_image_resizer_finish(r, out);
}

static void compare(const sdw_image *got, const sdw_image *want, int exact, const char *what) {
  CHECK_MSG(got->width == want->width && got->height == want->height, "%s: got %dx%d, want %dx%d",
            what, got->width, got->height, want->width, want->height);
  if (got->width != want->width || got->height != want->height) return;
  size_t n = (size_t)got->width * got->height * 3;
  int maxd = 0;
  long nd = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)got->pixels[i] - (int)want->pixels[i]);
    if (d > maxd) maxd = d;
    nd += d != 0;
  }
  if (exact) CHECK_MSG(nd == 0, "%s: %ld of %zu samples differ (max %d)", what, nd, n, maxd);
  CHECK_MSG(maxd <= 1, "%s: max difference %d (%ld of %zu samples differ)", what, maxd, nd, n);
  CHECK_MSG(nd * 10 <= (long)n, "%s: %ld of %zu samples differ", what, nd, n);
}

static sdw_resize_mode mode_of(const char *s) {
  if (!strcmp(s, "border")) return SDW_RESIZE_BORDER;
  if (!strcmp(s, "keep_ratio")) return SDW_RESIZE_KEEP_RATIO;
  if (!strcmp(s, "center_crop")) return SDW_RESIZE_CENTER_CROP;
  if (!strcmp(s, "keep_ratio_largest")) return SDW_RESIZE_KEEP_RATIO_LARGEST;
  return SDW_RESIZE_NO;
}

SDW_TEST(image_resizer_rows_match_img2dataset) {
  char path[512];
  snprintf(path, sizeof path, "%s/resize/cases.json", sdw_test_data_dir());
  void *text = NULL;
  size_t size = 0;
  CHECK_OK(sdw_read_file(path, &text, &size));
  REQUIRE(text);
  cJSON *root = cJSON_ParseWithLength(text, size);
  free(text);
  REQUIRE(root);
  int ncases = 0;
  for (const cJSON *c = cJSON_GetObjectItem(root, "cases")->child; c; c = c->next) {
    if (strcmp(cJSON_GetObjectItem(c, "op")->valuestring, "resizer")) continue;
    sdw_image in = {0}, want = {0}, got = {0};
    const char *in_name = cJSON_GetObjectItem(c, "input")->valuestring;
    if (!load_png("resize", in_name, &in) ||
        !load_png("resize", cJSON_GetObjectItem(c, "expected")->valuestring, &want)) {
      sdw_image_free(&in);
      continue;
    }
    sdw_resize_options o = {0};
    o.mode = mode_of(cJSON_GetObjectItem(c, "mode")->valuestring);
    o.size = (int)cJSON_GetObjectItem(c, "size")->valuedouble;
    o.resize_only_if_bigger = cJSON_IsTrue(cJSON_GetObjectItem(c, "only_if_bigger"));
    o.upscale_cubic = !strcmp(cJSON_GetObjectItem(c, "upscale")->valuestring, "cubic");
    for (int batch = 1; batch <= SDW_IMAGE_RESIZER_BATCH; batch += SDW_IMAGE_RESIZER_BATCH - 1) {
      char what[200];
      snprintf(what, sizeof what, "%s: rows of %d, %s size %d%s%s", in_name, batch,
               cJSON_GetObjectItem(c, "mode")->valuestring, o.size,
               o.resize_only_if_bigger ? " only_if_bigger" : "", o.upscale_cubic ? " cubic" : "");
      sdw_status st = resize_by_rows(&in, &o, batch, &got);
      CHECK_MSG(st == SDW_OK, "%s: %s", what, sdw_last_error());
      if (st == SDW_OK) compare(&got, &want, !o.upscale_cubic, what);
      sdw_image_free(&got);
    }
    ncases++;
    sdw_image_free(&in);
    sdw_image_free(&want);
  }
  CHECK(ncases >= 20);
  cJSON_Delete(root);
}

/* ---- OpenCV's resizeArea_ for 8-bit images, as plainly as it is written ---- */

typedef struct ref_tab {
  int di, si;
  float alpha;
} ref_tab;

static int ref_area_tab(int ssize, int dsize, double scale, ref_tab *tab) {
  int k = 0;
  for (int dx = 0; dx < dsize; dx++) {
    double fsx1 = dx * scale, fsx2 = fsx1 + scale;
    double cellWidth = fmin(scale, ssize - fsx1);
    int sx1 = (int)ceil(fsx1), sx2 = (int)floor(fsx2);
    sx2 = sx2 < ssize - 1 ? sx2 : ssize - 1;
    sx1 = sx1 < sx2 ? sx1 : sx2;
    if (sx1 - fsx1 > 1e-3) tab[k++] = (ref_tab){dx, sx1 - 1, (float)((sx1 - fsx1) / cellWidth)};
    for (int sx = sx1; sx < sx2; sx++)
      tab[k++] = (ref_tab){dx, sx, (float)(1.0 / cellWidth)};
    if (fsx2 - sx2 > 1e-3)
      tab[k++] = (ref_tab){dx, sx2, (float)(fmin(fmin(fsx2 - sx2, 1.), cellWidth) / cellWidth)};
  }
  return k;
}

static void ref_resize_area(const sdw_image *in, int dw, int dh, sdw_image *out) {
  int sw = in->width, sh = in->height, n = dw * 3;
  ref_tab *xtab = malloc(sizeof(ref_tab) * (2 * (size_t)sw + 2));
  ref_tab *ytab = malloc(sizeof(ref_tab) * (2 * (size_t)sh + 2));
  float *buf = malloc(sizeof(float) * (size_t)n), *sum = calloc((size_t)n, sizeof(float));
  int nx = ref_area_tab(sw, dw, (double)sw / dw, xtab);
  int ny = ref_area_tab(sh, dh, (double)sh / dh, ytab);
  int prev_dy = ytab[0].di;
  for (int j = 0; j < ny; j++) {
    int dy = ytab[j].di, sy = ytab[j].si;
    float beta = ytab[j].alpha;
    const uint8_t *S = in->pixels + (size_t)sy * sw * 3;
    for (int x = 0; x < n; x++)
      buf[x] = 0;
    for (int k = 0; k < nx; k++)
      for (int c = 0; c < 3; c++)
        buf[xtab[k].di * 3 + c] = buf[xtab[k].di * 3 + c] + S[xtab[k].si * 3 + c] * xtab[k].alpha;
    if (dy != prev_dy) {
      for (int x = 0; x < n; x++) {
        long v = lrintf(sum[x]);
        out->pixels[(size_t)prev_dy * n + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        sum[x] = beta * buf[x];
      }
      prev_dy = dy;
    } else {
      for (int x = 0; x < n; x++)
        sum[x] = sum[x] + beta * buf[x];
    }
  }
  for (int x = 0; x < n; x++) {
    long v = lrintf(sum[x]);
    out->pixels[(size_t)prev_dy * n + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  free(xtab);
  free(ytab);
  free(buf);
  free(sum);
}

SDW_TEST(image_area_shrink_matches_opencv_algorithm) {
  sdw_test_rng rng = sdw_test_rng_make(20261125);
  for (int t = 0; t < 24; t++) {
    int sw = sdw_test_rng_int(&rng, 9, 260), sh = sdw_test_rng_int(&rng, 9, 200);
    /* factors from just above 1 to 5 on each axis */
    double f = 1.0 + (t % 6 == 0 ? 0.01 : 4.0 * sdw_test_rng_uniform(&rng));
    int dw = (int)(sw / f), dh = (int)(sh / (f * (0.8 + 0.4 * sdw_test_rng_uniform(&rng))));
    dw = dw < 1 ? 1 : dw >= sw ? sw - 1 : dw;
    dh = dh < 1 ? 1 : dh >= sh ? sh - 1 : dh;
    sdw_image in = {0}, want = {0}, got = {0}, crop = {0};
    CHECK_OK(sdw_image_alloc(sw, sh, &in));
    CHECK_OK(sdw_image_alloc(dw, dh, &want));
    REQUIRE(in.pixels && want.pixels);
    /* smooth gradients plus noise: every level, ties near .5 included */
    for (int y = 0; y < sh; y++)
      for (int x = 0; x < sw; x++)
        for (int c = 0; c < 3; c++) {
          int v = (x * (3 + c) + y * 5) % 256 + (int)(sdw_test_rng_u64(&rng) % 32) - 16;
          in.pixels[((size_t)y * sw + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    ref_resize_area(&in, dw, dh, &want);
    char what[120];
    snprintf(what, sizeof what, "area %dx%d -> %dx%d", sw, sh, dw, dh);
    CHECK_OK(sdw_image_resize_area(&in, dw, dh, &got));
    if (got.pixels) compare(&got, &want, 1, what);
    sdw_image_free(&got);

    /* through sdw_image_resize's modes: keep_ratio (full) and center_crop
     * (the window only) against crops of the full reference */
    int size = dw < dh ? dw : dh;
    int ref = sw < sh ? sw : sh;
    int nw = (int)nearbyint(sw * ((double)size / ref)),
        nh = (int)nearbyint(sh * ((double)size / ref));
    if (size >= 1 && size < ref && nw >= 1 && nh >= 1) {
      sdw_image full = {0};
      CHECK_OK(sdw_image_alloc(nw, nh, &full));
      REQUIRE(full.pixels);
      ref_resize_area(&in, nw, nh, &full);
      sdw_resize_options o = {SDW_RESIZE_KEEP_RATIO, size, 1, 0};
      snprintf(what, sizeof what, "keep_ratio %d of %dx%d", size, sw, sh);
      CHECK_OK(resize_by_rows(&in, &o, SDW_IMAGE_RESIZER_BATCH, &got));
      if (got.pixels) compare(&got, &full, 1, what);
      sdw_image_free(&got);
      if (nw >= size && nh >= size) {
        o.mode = SDW_RESIZE_CENTER_CROP;
        CHECK_OK(sdw_image_center_crop(&full, size, size, &crop));
        snprintf(what, sizeof what, "center_crop %d of %dx%d", size, sw, sh);
        CHECK_OK(sdw_image_resize(&in, &o, &got));
        if (got.pixels && crop.pixels) compare(&got, &crop, 1, what);
        sdw_image_free(&got);
        CHECK_OK(resize_by_rows(&in, &o, 3, &got));
        if (got.pixels && crop.pixels) compare(&got, &crop, 1, what);
        sdw_image_free(&got);
        sdw_image_free(&crop);
      }
      sdw_image_free(&full);
    }
    sdw_image_free(&in);
    sdw_image_free(&want);
  }
}

SDW_TEST(image_decode_resize_jpeg) {
  /* (file, expected decode by OpenCV) from tests/data/image: 61x43 each */
  const char *files[][2] = {{"rgb420.jpg", "rgb420_jpg.expected.png"},
                            {"rgb444.jpg", "rgb444_jpg.expected.png"},
                            {"progressive.jpg", "progressive_jpg.expected.png"},
                            {"gray.jpg", "gray_jpg.expected.png"},
                            {"cmyk.jpg", "cmyk_jpg.expected.png"},
                            {"rgb.png", "rgb_png.expected.png"}};
  sdw_resize_options modes[] = {{SDW_RESIZE_NO, 0, 0, 0},
                                {SDW_RESIZE_CENTER_CROP, 24, 1, 0},
                                {SDW_RESIZE_KEEP_RATIO, 30, 1, 0},
                                {SDW_RESIZE_BORDER, 40, 0, 0},
                                {SDW_RESIZE_CENTER_CROP, 100, 0, 0},
                                {SDW_RESIZE_CENTER_CROP, 100, 1, 0}};
  for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
    char path[512];
    snprintf(path, sizeof path, "%s/image/%s", sdw_test_data_dir(), files[f][0]);
    void *data = NULL;
    size_t size = 0;
    CHECK_OK(sdw_read_file(path, &data, &size));
    sdw_image decoded = {0};
    if (!data || !load_png("image", files[f][1], &decoded)) {
      free(data);
      continue;
    }
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
      sdw_image want = {0}, got = {0};
      CHECK_OK(sdw_image_resize(&decoded, &modes[m], &want));
      int ow = 0, oh = 0;
      sdw_image_format fmt = SDW_IMAGE_UNKNOWN;
      CHECK_OK(sdw_image_decode_resize(data, size, NULL, &modes[m], &got, &fmt, &ow, &oh));
      char what[160];
      snprintf(what, sizeof what, "%s mode %d size %d", files[f][0], (int)modes[m].mode,
               modes[m].size);
      CHECK_MSG(ow == decoded.width && oh == decoded.height, "%s: original %dx%d", what, ow, oh);
      CHECK(fmt == (strstr(files[f][0], ".png") ? SDW_IMAGE_PNG : SDW_IMAGE_JPEG));
      if (got.pixels && want.pixels) compare(&got, &want, 1, what);
      sdw_image_free(&want);
      sdw_image_free(&got);
    }
    sdw_image_free(&decoded);
    free(data);
  }

  /* refusals are the decoder's, with or without a resize */
  sdw_resize_options o = {SDW_RESIZE_CENTER_CROP, 24, 1, 0};
  const char *bad[] = {"truncated.jpg", "corrupt.jpg", "not_an_image.gif"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/image/%s", sdw_test_data_dir(), bad[i]);
    void *data = NULL;
    size_t size = 0;
    CHECK_OK(sdw_read_file(path, &data, &size));
    sdw_image got = {(uint8_t *)1, 1, 1};
    CHECK_MSG(sdw_image_decode_resize(data, size, NULL, &o, &got, NULL, NULL, NULL) ==
                  SDW_ERR_FORMAT,
              "%s accepted", bad[i]);
    CHECK(got.pixels == NULL);
    free(data);
  }
  /* the pixel limit is checked before anything is decoded: 61x43 = 2623 */
  char path[512];
  snprintf(path, sizeof path, "%s/image/rgb420.jpg", sdw_test_data_dir());
  void *data = NULL;
  size_t size = 0;
  CHECK_OK(sdw_read_file(path, &data, &size));
  sdw_image_limits lim = {2622, 0};
  sdw_image got = {0};
  CHECK(sdw_image_decode_resize(data, size, &lim, &o, &got, NULL, NULL, NULL) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "limit") != NULL);
  free(data);
}

SDW_TEST(image_decode_resize_skips_rows_and_columns) {
  /* (width, height, mode, size): landscape and portrait center crops that
   * leave columns / rows out, a keep_ratio that needs everything, odd sizes */
  struct {
    int w, h;
    sdw_resize_mode mode;
    int size;
  } cases[] = {{403, 170, SDW_RESIZE_CENTER_CROP, 64},  {150, 411, SDW_RESIZE_CENTER_CROP, 61},
               {517, 260, SDW_RESIZE_CENTER_CROP, 200}, {230, 229, SDW_RESIZE_CENTER_CROP, 100},
               {403, 170, SDW_RESIZE_KEEP_RATIO, 64},   {150, 411, SDW_RESIZE_CENTER_CROP, 149}};
  sdw_test_rng rng = sdw_test_rng_make(7);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int w = cases[i].w, h = cases[i].h;
    sdw_image src = {0}, full = {0}, want = {0}, got = {0};
    CHECK_OK(sdw_image_alloc(w, h, &src));
    REQUIRE(src.pixels);
    /* edges and noise in every channel: chroma differs from pixel to pixel */
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++) {
          int v = ((x / 7 + y / 5 + c) % 3) * 90 + (int)(sdw_test_rng_u64(&rng) % 40);
          src.pixels[((size_t)y * w + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
        }
    uint8_t *jpg = NULL;
    size_t njpg = 0;
    CHECK_OK(sdw_image_encode_jpeg(&src, 90, &jpg, &njpg));
    sdw_resize_options o = {cases[i].mode, cases[i].size, 1, 0};
    CHECK_OK(sdw_image_decode(jpg, njpg, NULL, &full, NULL));
    CHECK_OK(sdw_image_resize(&full, &o, &want));
    int ow = 0, oh = 0;
    CHECK_OK(sdw_image_decode_resize(jpg, njpg, NULL, &o, &got, NULL, &ow, &oh));
    CHECK(ow == w && oh == h);
    char what[120];
    snprintf(what, sizeof what, "%dx%d JPEG, mode %d size %d", w, h, (int)o.mode, o.size);
    if (got.pixels && want.pixels) compare(&got, &want, 1, what);
    /* truncated in its second half: still refused (the skipped rows' data is read) */
    sdw_image bad = {0};
    CHECK_MSG(sdw_image_decode_resize(jpg, njpg * 3 / 4, NULL, &o, &bad, NULL, NULL, NULL) ==
                  SDW_ERR_FORMAT,
              "%s: truncated file accepted", what);
    CHECK(bad.pixels == NULL);
    free(jpg);
    sdw_image_free(&src);
    sdw_image_free(&full);
    sdw_image_free(&want);
    sdw_image_free(&got);
  }
}
