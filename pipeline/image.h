/* Images in the pipeline: decode (JPEG, PNG, WebP) with decompression-bomb
 * limits checked before any pixel is allocated, resize in img2dataset's modes,
 * encode JPEG. Pixels are 8-bit RGB, rows packed (stride = 3 * width).
 *
 * Implemented in pipeline/image_codec.c (libjpeg-turbo, libpng, libwebp) and
 * pipeline/image_resize.c. Every failure on untrusted bytes is SDW_ERR_FORMAT
 * with one sentence; never a crash. */
#ifndef SDW_PIPELINE_IMAGE_H
#define SDW_PIPELINE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_image {
  uint8_t *pixels; /* height * width * 3, owned (sdw_image_free) */
  int width, height;
} sdw_image;

typedef enum sdw_image_format {
  SDW_IMAGE_UNKNOWN = 0,
  SDW_IMAGE_JPEG,
  SDW_IMAGE_PNG,
  SDW_IMAGE_WEBP
} sdw_image_format;

typedef struct sdw_image_limits {
  int64_t max_pixels;    /* refuse larger images before decoding (default 178,956,970 = PIL's) */
  int max_side;          /* refuse a side longer than this (default 65,535) */
} sdw_image_limits;

/* Sniffs the format from the first bytes. */
sdw_image_format sdw_image_sniff(const void *data, size_t size);
const char *sdw_image_format_name(sdw_image_format format); /* "jpeg", "png", "webp" */

/* Decodes to RGB (alpha composited on white; grayscale/CMYK/16-bit/palette
 * converted). limits may be NULL for the defaults. *out owned by the caller.
 * SDW_ERR_FORMAT "not an image" / "truncated JPEG" / "image of WxH exceeds
 * the pixel limit" ... Also returns the original size and format. */
sdw_status sdw_image_decode(const void *data, size_t size, const sdw_image_limits *limits,
                            sdw_image *out, sdw_image_format *format);
void sdw_image_free(sdw_image *image);

/* img2dataset's resize modes. */
typedef enum sdw_resize_mode {
  SDW_RESIZE_NO = 0,      /* keep as is */
  SDW_RESIZE_BORDER,      /* keep ratio, fit inside size x size, pad with white */
  SDW_RESIZE_KEEP_RATIO,  /* keep ratio, smaller side = size */
  SDW_RESIZE_CENTER_CROP, /* smaller side = size, then center crop size x size */
} sdw_resize_mode;

typedef struct sdw_resize_options {
  sdw_resize_mode mode;
  int size;                 /* image_size */
  int resize_only_if_bigger; /* img2dataset's flag */
  /* Filters as img2dataset uses them through OpenCV: INTER_AREA when
   * shrinking, INTER_LANCZOS4 when enlarging (or cubic when set). */
  int upscale_cubic;
} sdw_resize_options;

/* Resizes in; out owned by the caller. */
sdw_status sdw_image_resize(const sdw_image *in, const sdw_resize_options *options,
                            sdw_image *out);
/* Area (box) and cubic/Lanczos resampling to an exact size, the primitives. */
sdw_status sdw_image_resize_area(const sdw_image *in, int width, int height, sdw_image *out);
sdw_status sdw_image_resize_cubic(const sdw_image *in, int width, int height, sdw_image *out);
sdw_status sdw_image_resize_lanczos(const sdw_image *in, int width, int height, sdw_image *out);
/* Center crop to width x height (must fit). */
sdw_status sdw_image_center_crop(const sdw_image *in, int width, int height, sdw_image *out);

/* Encodes JPEG (quality 1..100, 4:2:0 as PIL's default for q < 90... see the
 * implementation note) into a malloc'd buffer owned by the caller. */
sdw_status sdw_image_encode_jpeg(const sdw_image *image, int quality, uint8_t **data,
                                 size_t *size);

#ifdef __cplusplus
}
#endif
#endif
