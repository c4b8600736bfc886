/* tui/stage_images: a stage's sample images found from its manifest's
 * outputs — members of a WebDataset shard in archive order (non-images
 * skipped), an image folder by name, a bare image file, the DATA/<stage>
 * folder when nothing is listed — decoded to the exact pixels written
 * (PNG is lossless: compared byte for byte). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/fsutil.h"
#include "core/base/png_image.h"
#include "pipeline/tar.h"
#include "tests/test.h"
#include "tui/stage_images.h"

/* A w x h RGB image whose every pixel is (tag, x, y). */
static void make_pixels(uint8_t *p, int w, int h, int tag) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *q = p + 3 * (y * w + x);
      q[0] = (uint8_t)tag, q[1] = (uint8_t)x, q[2] = (uint8_t)y;
    }
}

static void write_png(const char *path, int tag) {
  uint8_t px[4 * 3 * 3];
  make_pixels(px, 4, 3, tag);
  CHECK_OK(sdw_png_write(path, px, 4, 3, 3, NULL, 0));
}

static bool image_is(const sdw_image *img, int tag) {
  uint8_t px[4 * 3 * 3];
  make_pixels(px, 4, 3, tag);
  return img->width == 4 && img->height == 3 && memcmp(img->pixels, px, sizeof px) == 0;
}

SDW_TEST(tui_stage_images_from_outputs) {
  char data[512], p[700], q[700];
  snprintf(data, sizeof data, "%s/tui_stage_images", sdw_test_tmpdir());
  snprintf(p, sizeof p, "%s/shards", data);
  CHECK_OK(sdw_mkdir_p(p));
  snprintf(p, sizeof p, "%s/folder/images", data);
  CHECK_OK(sdw_mkdir_p(p));
  /* A shard: key.jpg style members with a .txt between them. */
  snprintf(q, sizeof q, "%s/tag1.png", data);
  write_png(q, 1);
  void *png1 = NULL;
  size_t n1 = 0;
  CHECK_OK(sdw_read_file(q, &png1, &n1));
  snprintf(q, sizeof q, "%s/tag2.png", data);
  write_png(q, 2);
  void *png2 = NULL;
  size_t n2 = 0;
  CHECK_OK(sdw_read_file(q, &png2, &n2));
  sdw_tar_writer *w = NULL;
  snprintf(p, sizeof p, "%s/shards/00000.tar", data);
  CHECK_OK(sdw_tar_writer_open(p, &w));
  REQUIRE(w);
  CHECK_OK(sdw_tar_writer_add(w, "000000000.png", png1, n1, 0));
  CHECK_OK(sdw_tar_writer_add(w, "000000000.txt", "a caption", 9, 0));
  CHECK_OK(sdw_tar_writer_add(w, "000000001.png", png2, n2, 0));
  CHECK_OK(sdw_tar_writer_close(w));
  free(png1);
  free(png2);
  /* A folder of images (listed by name: b before c) and a bare file. */
  snprintf(p, sizeof p, "%s/folder/images/c.png", data);
  write_png(p, 4);
  snprintf(p, sizeof p, "%s/folder/images/b.png", data);
  write_png(p, 3);
  snprintf(p, sizeof p, "%s/folder/images/notes.txt", data);
  FILE *f = fopen(p, "w");
  if (f) fputs("not an image", f), fclose(f);
  snprintf(p, sizeof p, "%s/tag5.png", data);
  write_png(p, 5);
  char manifest[1024];
  snprintf(manifest, sizeof manifest,
           "{\"stage\":\"x\",\"outputs\":[\"missing.tar\",\"shards/00000.tar\",\"folder\","
           "\"%s/tag5.png\",\"notes.parquet\"]}",
           data);
  cJSON *m = cJSON_Parse(manifest);
  REQUIRE(m);
  static const int tags[5] = {1, 2, 3, 4, 5};
  static const char *const labels[5] = {"00000.tar:000000000.png", "00000.tar:000000001.png",
                                        "/folder/images/b.png", "/folder/images/c.png",
                                        "/tag5.png"};
  for (int i = 0; i < 5; i++) {
    sdw_image img = {0};
    char label[600];
    CHECK_OK(sdw_tui_stage_image(data, m, i, &img, label, sizeof label));
    CHECK_MSG(image_is(&img, tags[i]), "image %d has the wrong pixels", i);
    CHECK_MSG(strstr(label, labels[i]) != NULL, "image %d: label '%s'", i, label);
    sdw_image_free(&img);
  }
  sdw_image img = {0};
  char label[600];
  CHECK(sdw_tui_stage_image(data, m, 5, &img, label, sizeof label) == SDW_ERR_NOT_FOUND);
  CHECK(sdw_tui_stage_image(data, m, -1, &img, label, sizeof label) == SDW_ERR_NOT_FOUND);
  cJSON_Delete(m);
  /* Nothing listed: the stage's own folder DATA/<stage>. */
  m = cJSON_Parse("{\"stage\":\"folder\",\"outputs\":[]}");
  CHECK_OK(sdw_tui_stage_image(data, m, 1, &img, label, sizeof label));
  CHECK(image_is(&img, 4));
  sdw_image_free(&img);
  cJSON_Delete(m);
  m = cJSON_Parse("{\"stage\":\"none\"}");
  CHECK(sdw_tui_stage_image(data, m, 0, &img, label, sizeof label) == SDW_ERR_NOT_FOUND);
  cJSON_Delete(m);
}
