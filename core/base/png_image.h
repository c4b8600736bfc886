/* PNG files through libpng: 8-bit RGB/RGBA images with tEXt chunks.
 *
 * Written atomically (core/base/fsutil.h). AUTOMATIC1111 and the tools that
 * follow it (ComfyUI, civitai, image viewers' "generation data") read the
 * sampler settings from a tEXt chunk with the key "parameters"; sdw writes
 * it (core/diffusion/infotext.h formats it). Reading is for tests, previews
 * and round trips: it decodes to 8-bit RGB or RGBA and refuses images larger
 * than a pixel budget before allocating anything (decompression bombs).
 */
#ifndef SDW_BASE_PNG_IMAGE_H
#define SDW_BASE_PNG_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_png_text {
  const char *key;   /* Latin-1 keyword, 1-79 bytes */
  const char *value; /* stored as iTXt (UTF-8) when it is not plain ASCII, as A1111 does */
} sdw_png_text;

/* pixels[height][width][channels] (channels 3 = RGB, 4 = RGBA), rows packed. */
sdw_status sdw_png_write(const char *path, const uint8_t *pixels, int width, int height,
                         int channels, const sdw_png_text *texts, int text_count);

/* A decoded image; pixels and texts are owned by it (sdw_png_image_free). */
typedef struct sdw_png_image {
  uint8_t *pixels; /* height * width * channels */
  int width, height, channels;
  sdw_png_text *texts; /* keys and values owned */
  int text_count;
} sdw_png_image;

/* Decodes any PNG to 8-bit RGB (channels 3) or, when it has alpha, RGBA
 * (channels 4). SDW_ERR_FORMAT for a corrupt file or one with more than
 * max_pixels pixels (0: 256 Mpx). */
sdw_status sdw_png_read(const char *path, size_t max_pixels, sdw_png_image *out);
void sdw_png_image_free(sdw_png_image *image);
/* The value of a text chunk, or NULL. */
const char *sdw_png_image_text(const sdw_png_image *image, const char *key);

#ifdef __cplusplus
}
#endif
#endif
