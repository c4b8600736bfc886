/* Images in the pipeline: decode (JPEG, PNG, WebP) with decompression-bomb
 * limits checked before any pixel is allocated, resize in img2dataset's modes,
 * encode JPEG. Pixels are 8-bit RGB, rows packed (stride = 3 * width).
 *
 * Reference behaviour is img2dataset 1.47's Resizer: cv2.imdecode with
 * IMREAD_UNCHANGED (no EXIF rotation), alpha matted on white, albumentations'
 * SmallestMaxSize / LongestMaxSize / CenterCrop / PadIfNeeded around
 * cv2.resize (INTER_AREA to shrink, INTER_LANCZOS4 to enlarge), then
 * cv2.imencode(".jpg", quality). tests/test_image_resize.c compares against
 * outputs of that very code (tools/gen_resize_fixtures.py).
 *
 * Implemented in pipeline/image_codec.c (libjpeg-turbo, libpng, libwebp) and
 * pipeline/image_resize.c. Every failure on untrusted bytes is SDW_ERR_FORMAT
 * with one sentence; never a crash. All functions are thread-safe. */
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
  int64_t max_pixels; /* refuse larger images before decoding (0: 178,956,970 = PIL's) */
  int max_side;       /* refuse a side longer than this (0: 65,535) */
} sdw_image_limits;

/* Sniffs the format from the first bytes (SDW_IMAGE_UNKNOWN for anything
 * else, GIF/BMP/TIFF included). */
sdw_image_format sdw_image_sniff(const void *data, size_t size);
const char *sdw_image_format_name(sdw_image_format format); /* "jpeg", "png", "webp", "unknown" */

/* Decodes to RGB. limits may be NULL for the defaults. *out owned by the
 * caller; format (may be NULL) receives the sniffed format even on failure.
 *  - JPEG: libjpeg-turbo with its defaults (islow IDCT, fancy upsampling),
 *    as OpenCV decodes; grayscale replicated to RGB; CMYK/YCCK converted with
 *    OpenCV's formula (Adobe inverted CMYK). A JPEG whose data ends early is
 *    refused ("truncated JPEG"), unlike OpenCV which returns the gray-filled
 *    rest. More than 1000 progressive scans are refused (a CPU bomb).
 *  - PNG: palette, gray, gray+alpha, 16-bit (scaled to 8 bits with rounding;
 *    OpenCV would saturate 16-bit values), tRNS; gAMA/iCCP ignored as OpenCV
 *    does; interlaced; APNG gives the default image.
 *  - WebP: lossy/lossless, with or without alpha; animated files are refused.
 *  Alpha is matted on white exactly as img2dataset does:
 *  rint(a/255*c + 255 - a) in double.
 * EXIF orientation is not applied (IMREAD_UNCHANGED ignores it).
 * SDW_ERR_FORMAT "not an image" / "truncated JPEG" / "image of WxH exceeds
 * the pixel limit" ...; SDW_ERR_OUT_OF_MEMORY when allocation fails. */
sdw_status sdw_image_decode(const void *data, size_t size, const sdw_image_limits *limits,
                            sdw_image *out, sdw_image_format *format);
/* Reads only the header: format and size, with no pixel decoding. */
sdw_status sdw_image_probe(const void *data, size_t size, sdw_image_format *format, int *width,
                           int *height);
/* Allocates width x height (uninitialised). SDW_ERR_OUT_OF_MEMORY. */
sdw_status sdw_image_alloc(int width, int height, sdw_image *out);
void sdw_image_free(sdw_image *image); /* frees pixels; NULL pixels is fine */

/* img2dataset's resize modes. */
typedef enum sdw_resize_mode {
  SDW_RESIZE_NO = 0,             /* keep as is */
  SDW_RESIZE_BORDER,             /* keep ratio, longer side = size, pad to size x size with white */
  SDW_RESIZE_KEEP_RATIO,         /* keep ratio, smaller side = size */
  SDW_RESIZE_CENTER_CROP,        /* smaller side = size, then center crop size x size */
  SDW_RESIZE_KEEP_RATIO_LARGEST, /* keep ratio, longer side = size */
} sdw_resize_mode;

typedef struct sdw_resize_options {
  sdw_resize_mode mode;
  int size;                  /* image_size */
  int resize_only_if_bigger; /* img2dataset's flag: leave smaller images untouched */
  /* INTER_AREA when shrinking, INTER_LANCZOS4 when enlarging (img2dataset's
   * defaults), or INTER_CUBIC when this is set. */
  int upscale_cubic;
} sdw_resize_options;

/* Resizes in as img2dataset's Resizer does: the scaled side is
 * max(1, round(side * size / min_or_max_side)) with Python's round (half to
 * even); the crop offset is (side - size) / 2 rounded down; border padding
 * puts (size - side) / 2 rounded down before. "Shrinking" is judged on the
 * smaller side (keep_ratio, center_crop) or the larger (border,
 * keep_ratio_largest). With resize_only_if_bigger and nothing to shrink, or
 * with SDW_RESIZE_NO, out is a copy of in. out owned by the caller.
 * SDW_ERR_INVALID_ARGUMENT for size < 1. */
sdw_status sdw_image_resize(const sdw_image *in, const sdw_resize_options *options, sdw_image *out);
/* The primitives, to an exact size, as cv2.resize with 8-bit images does
 * (fixed point with 11-bit coefficients for cubic/Lanczos4/linear, float
 * area weights): INTER_AREA, INTER_CUBIC (a = -0.75), INTER_LANCZOS4. Sample
 * positions are pixel centres: src = (dst + 0.5) * in/out - 0.5; borders
 * replicate. Area enlarging is OpenCV's bilinear variant of INTER_AREA. */
sdw_status sdw_image_resize_area(const sdw_image *in, int width, int height, sdw_image *out);
sdw_status sdw_image_resize_cubic(const sdw_image *in, int width, int height, sdw_image *out);
sdw_status sdw_image_resize_lanczos(const sdw_image *in, int width, int height, sdw_image *out);
/* Center crop to width x height (must fit: SDW_ERR_INVALID_ARGUMENT), offsets
 * (in - out) / 2 rounded down as albumentations' CenterCrop. */
sdw_status sdw_image_center_crop(const sdw_image *in, int width, int height, sdw_image *out);

/* Resizing rows as a decoder produces them, so that the full-size image is
 * never stored when the resize can consume it row by row (area shrinking by
 * a fractional factor: only the rows and columns the output needs are
 * computed) and is decoded straight into its final place otherwise. The
 * result is exactly sdw_image_resize's on the same pixels.
 *   sdw_image_resizer_new(w, h, options, &r);
 *   for y in 0..h-1: decode row y (w * 3 bytes) into sdw_image_resizer_row(r, y),
 *                    then sdw_image_resizer_commit(r, y);
 *   sdw_image_resizer_finish(r, &out);   (frees r)
 * Rows must come in order, each exactly once, except that only the region
 * sdw_image_resizer_region gives is read: rows outside it may be left out
 * and columns outside it left unwritten. The pointers of up to
 * SDW_IMAGE_RESIZER_BATCH consecutive rows may be taken before they are
 * committed (a decoder may fill several rows per call); a row's pointer is
 * valid until its commit. sdw_image_resizer_free abandons a resize (NULL is
 * fine).
 * new: SDW_ERR_INVALID_ARGUMENT (empty image, size < 1), OUT_OF_MEMORY. */
enum { SDW_IMAGE_RESIZER_BATCH = 16 };
typedef struct sdw_image_resizer sdw_image_resizer;
sdw_status sdw_image_resizer_new(int width, int height, const sdw_resize_options *options,
                                 sdw_image_resizer **out);
uint8_t *sdw_image_resizer_row(sdw_image_resizer *r, int y);
void sdw_image_resizer_commit(sdw_image_resizer *r, int y);
/* The source pixels the result depends on: columns [x0, x1), rows [y0, y1)
 * (the whole image unless the resize is streamed and cropped). */
void sdw_image_resizer_region(const sdw_image_resizer *r, int *x0, int *x1, int *y0, int *y1);
sdw_status sdw_image_resizer_finish(sdw_image_resizer *r, sdw_image *out);
void sdw_image_resizer_free(sdw_image_resizer *r);

/* sdw_image_decode then sdw_image_resize in one pass (JPEG rows go through
 * an sdw_image_resizer; PNG and WebP are decoded whole first): the same
 * output, errors and limits. orig_width / orig_height (may be NULL) receive
 * the decoded size; format as sdw_image_decode's. */
sdw_status sdw_image_decode_resize(const void *data, size_t size, const sdw_image_limits *limits,
                                   const sdw_resize_options *options, sdw_image *out,
                                   sdw_image_format *format, int *orig_width, int *orig_height);

/* Encodes baseline JPEG as cv2.imencode(".jpg", img, [IMWRITE_JPEG_QUALITY,
 * q]) does: libjpeg's standard tables scaled by quality (1..100), 4:2:0
 * chroma subsampling, no Huffman optimisation, not progressive, islow DCT,
 * a JFIF header. *data malloc'd, owned by the caller (free()). */
sdw_status sdw_image_encode_jpeg(const sdw_image *image, int quality, uint8_t **data, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
