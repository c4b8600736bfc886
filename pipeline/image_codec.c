/* Image decoding (libjpeg-turbo, libpng, libwebp) and JPEG encoding with the
 * behaviour of OpenCV's imdecode(IMREAD_UNCHANGED) / imencode as img2dataset
 * uses them. See pipeline/image.h. */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "pipeline/image.h"

enum { MAX_PROGRESSIVE_SCANS = 1000 };

sdw_image_format sdw_image_sniff(const void *data, size_t size) {
  const uint8_t *p = data;
  if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return SDW_IMAGE_JPEG;
  if (size >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return SDW_IMAGE_PNG;
  if (size >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return SDW_IMAGE_WEBP;
  return SDW_IMAGE_UNKNOWN;
}

const char *sdw_image_format_name(sdw_image_format format) {
  switch (format) {
  case SDW_IMAGE_JPEG: return "jpeg";
  case SDW_IMAGE_PNG: return "png";
  case SDW_IMAGE_WEBP: return "webp";
  default: return "unknown";
  }
}

static sdw_status check_limits(const sdw_image_limits *limits, const char *fmt, int64_t w,
                               int64_t h) {
  int64_t max_pixels = limits && limits->max_pixels > 0 ? limits->max_pixels : 178956970;
  int64_t max_side = limits && limits->max_side > 0 ? limits->max_side : 65535;
  if (w < 1 || h < 1)
    return sdw_fail(SDW_ERR_FORMAT, "%s image of %lldx%lld is empty", fmt, (long long)w,
                    (long long)h);
  if (w > max_side || h > max_side)
    return sdw_fail(SDW_ERR_FORMAT, "%s image of %lldx%lld exceeds the side limit %lld", fmt,
                    (long long)w, (long long)h, (long long)max_side);
  if (w * h > max_pixels)
    return sdw_fail(SDW_ERR_FORMAT, "%s image of %lldx%lld exceeds the pixel limit %lld", fmt,
                    (long long)w, (long long)h, (long long)max_pixels);
  return SDW_OK;
}

/* img2dataset's matting: alpha / 255 * img + 255 - alpha in float64, then
 * np.rint (ties to even), clipped. */
static inline uint8_t matte(uint8_t c, uint8_t a) {
  double v = (double)a / 255.0 * (double)c + 255.0 - (double)a;
  v = nearbyint(v);
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void matte_row(const uint8_t *rgba, uint8_t *rgb, int width) {
  for (int x = 0; x < width; x++, rgba += 4, rgb += 3) {
    uint8_t a = rgba[3];
    if (a == 255) {
      rgb[0] = rgba[0], rgb[1] = rgba[1], rgb[2] = rgba[2];
    } else {
      rgb[0] = matte(rgba[0], a), rgb[1] = matte(rgba[1], a), rgb[2] = matte(rgba[2], a);
    }
  }
}

/* ================================ JPEG ================================ */

typedef struct jpeg_err {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
  int eof_warning; /* data ended before the image did */
  int reading_done;
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_err *e = (jpeg_err *)cinfo->err;
  e->pub.format_message(cinfo, e->msg);
  longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
  jpeg_err *e = (jpeg_err *)cinfo->err;
  /* warnings (level -1) are ignored as OpenCV ignores them, except the end
   * of data before the last scanline: a truncated file */
  if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF && !e->reading_done) e->eof_warning = 1;
}

static void jpeg_on_progress(j_common_ptr cinfo) {
  if (cinfo->is_decompressor &&
      ((j_decompress_ptr)cinfo)->input_scan_number > MAX_PROGRESSIVE_SCANS) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_PROGRESSIVE_SCANS);
    longjmp(e->jump, 1);
  }
}

typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  jpeg_err err;
  struct jpeg_progress_mgr progress;
  uint8_t *row; /* gray/CMYK scanline */
  sdw_image_resizer *rs;
} jpeg_job;

/* OpenCV's icvCvt_CMYK2BGR_8u_C4C3R: Adobe (inverted) CMYK as libjpeg
 * returns it. */
static void cmyk_row(const uint8_t *cmyk, uint8_t *rgb, int width) {
  for (int x = 0; x < width; x++, cmyk += 4, rgb += 3) {
    int c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];
    rgb[0] = (uint8_t)(k - ((255 - c) * k >> 8));
    rgb[1] = (uint8_t)(k - ((255 - m) * k >> 8));
    rgb[2] = (uint8_t)(k - ((255 - y) * k >> 8));
  }
}

/* Decodes rows straight into a resizer (options NULL: no resize, the rows
 * land in the output image itself). */
static sdw_status jpeg_decode(const void *data, size_t size, const sdw_image_limits *limits,
                              const sdw_resize_options *options, sdw_image *out, int *orig_w,
                              int *orig_h) {
  static const sdw_resize_options no_resize = {SDW_RESIZE_NO, 0, 0, 0};
  jpeg_job *job = calloc(1, sizeof *job);
  if (!job) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a JPEG");
  sdw_status st = SDW_OK;
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  job->err.pub.emit_message = jpeg_on_message;
  if (setjmp(job->err.jump)) {
    st = sdw_fail(SDW_ERR_FORMAT, "corrupt JPEG: %s", job->err.msg);
    goto done;
  }
  jpeg_create_decompress(&job->cinfo);
  job->progress.progress_monitor = jpeg_on_progress;
  job->cinfo.progress = &job->progress;
  jpeg_mem_src(&job->cinfo, data, (unsigned long)size);
  jpeg_read_header(&job->cinfo, TRUE);
  st = check_limits(limits, "JPEG", job->cinfo.image_width, job->cinfo.image_height);
  if (st != SDW_OK) goto done;
  J_COLOR_SPACE cs = job->cinfo.jpeg_color_space;
  if (cs == JCS_CMYK || cs == JCS_YCCK)
    job->cinfo.out_color_space = JCS_CMYK;
  else if (job->cinfo.num_components == 1)
    job->cinfo.out_color_space = JCS_GRAYSCALE;
  else
    job->cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&job->cinfo);
  int w = (int)job->cinfo.output_width, h = (int)job->cinfo.output_height;
  int comps = job->cinfo.output_components;
  if (orig_w) *orig_w = w;
  if (orig_h) *orig_h = h;
  st = sdw_image_resizer_new(w, h, options ? options : &no_resize, &job->rs);
  if (st != SDW_OK) goto done;
  if (comps != 3) {
    job->row = malloc((size_t)w * (size_t)comps);
    if (!job->row) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a %dx%d JPEG", w, h);
      goto done;
    }
  }
  /* Only what the resize reads is decoded (RGB): libjpeg-turbo's
   * jpeg_crop_scanline and jpeg_skip_scanlines leave the IDCT, upsampling
   * and color conversion of the rest out (its entropy data is still read, so
   * a truncated file is still refused). Fancy upsampling makes the two
   * pixels at a crop edge differ from a full decode, so the decoded region
   * has a margin of JPEG_MARGIN pixels around the needed one: the needed
   * pixels are then exactly those of a full decode (checked on the test
   * images and 200 benchmark photos, 4:2:0 / 4:2:2 / 4:4:4 / progressive). */
  enum { JPEG_MARGIN = 8 };
  int col0 = 0, y_end = h;
  if (comps == 3) {
    int rx0, rx1, ry0, ry1;
    sdw_image_resizer_region(job->rs, &rx0, &rx1, &ry0, &ry1);
    int cx0 = rx0 > JPEG_MARGIN ? rx0 - JPEG_MARGIN : 0;
    int cx1 = rx1 + JPEG_MARGIN < w ? rx1 + JPEG_MARGIN : w;
    if (cx0 > 0 || cx1 < w) {
      JDIMENSION xo = (JDIMENSION)cx0, cw = (JDIMENSION)(cx1 - cx0);
      jpeg_crop_scanline(&job->cinfo, &xo, &cw); /* widens to iMCU boundaries */
      col0 = (int)xo;
    }
    if (ry0 > JPEG_MARGIN) jpeg_skip_scanlines(&job->cinfo, (JDIMENSION)(ry0 - JPEG_MARGIN));
    if (ry1 + JPEG_MARGIN < h) y_end = ry1 + JPEG_MARGIN;
  }
  /* RGB: a batch of rows per call straight into the resizer's rows (decode
   * and resize then alternate on data that stays in cache) */
  while ((int)job->cinfo.output_scanline < y_end) {
    int y = (int)job->cinfo.output_scanline;
    JSAMPROW rows[SDW_IMAGE_RESIZER_BATCH];
    int n = comps == 3 ? SDW_IMAGE_RESIZER_BATCH : 1;
    if (n > y_end - y) n = y_end - y;
    for (int k = 0; k < n; k++)
      rows[k] = comps == 3 ? sdw_image_resizer_row(job->rs, y + k) + (size_t)col0 * 3 : job->row;
    int got = 0;
    while (got < n) {
      JDIMENSION r = jpeg_read_scanlines(&job->cinfo, rows + got, (JDIMENSION)(n - got));
      if (r == 0) break;
      got += (int)r;
    }
    if (got == 0) break;
    for (int k = 0; k < got; k++) {
      if (comps != 3) {
        uint8_t *dst = sdw_image_resizer_row(job->rs, y + k);
        if (comps == 1) {
          for (int x = 0; x < w; x++)
            dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = job->row[x];
        } else {
          cmyk_row(job->row, dst, w);
        }
      }
      sdw_image_resizer_commit(job->rs, y + k);
    }
    if (got < n) break;
  }
  /* The rest is not needed but must be read: a truncated file is refused.
   * Skipping to the very end would not read it (libjpeg-turbo then marks
   * the data as consumed), so all but the last row are skipped (their
   * entropy data decoded) and the last row is decoded, into a row the
   * resizer ignores. */
  if ((int)job->cinfo.output_scanline == y_end && y_end < h) {
    if (h - y_end > 1) jpeg_skip_scanlines(&job->cinfo, (JDIMENSION)(h - y_end - 1));
    JSAMPROW last = sdw_image_resizer_row(job->rs, h - 1) + (size_t)col0 * 3;
    jpeg_read_scanlines(&job->cinfo, &last, 1);
  }
  job->err.reading_done = job->cinfo.output_scanline == job->cinfo.output_height;
  if (job->err.eof_warning || !job->err.reading_done) {
    st = sdw_fail(SDW_ERR_FORMAT, "truncated JPEG (%dx%d, data ends early)", w, h);
    goto done;
  }
  jpeg_finish_decompress(&job->cinfo);
  st = sdw_image_resizer_finish(job->rs, out);
  job->rs = NULL;
done:
  jpeg_destroy_decompress(&job->cinfo);
  free(job->row);
  sdw_image_resizer_free(job->rs);
  free(job);
  return st;
}

/* ================================ PNG ================================ */

typedef struct png_job {
  const uint8_t *data;
  size_t size, pos;
  jmp_buf jump;
  char msg[160];
  png_structp png;
  png_infop info;
  uint8_t *rgba;       /* RGBA rows when the image has alpha */
  png_bytep *row_ptrs; /* interlaced images */
  sdw_image img;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
  png_job *job = png_get_error_ptr(png);
  snprintf(job->msg, sizeof job->msg, "%s", msg);
  longjmp(job->jump, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_on_read(png_structp png, png_bytep out, size_t n) {
  png_job *job = png_get_io_ptr(png);
  if (n > job->size - job->pos) png_error(png, "truncated PNG (data ends early)");
  memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

static sdw_status png_decode(const void *data, size_t size, const sdw_image_limits *limits,
                             sdw_image *out) {
  png_job *job = calloc(1, sizeof *job);
  if (!job) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a PNG");
  job->data = data;
  job->size = size;
  sdw_status st = SDW_OK;
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
  if (job->png) job->info = png_create_info_struct(job->png);
  if (!job->png || !job->info) {
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a PNG");
    goto done;
  }
  if (setjmp(job->jump)) {
    st = sdw_fail(SDW_ERR_FORMAT, "corrupt PNG: %s", job->msg);
    goto done;
  }
  png_set_read_fn(job->png, job, png_on_read);
  /* ancillary chunks (iCCP, zTXt...) may not expand beyond 16 MB */
  png_set_chunk_malloc_max(job->png, 16u << 20);
  png_read_info(job->png, job->info);
  png_uint_32 w32, h32;
  int depth, color, interlace;
  png_get_IHDR(job->png, job->info, &w32, &h32, &depth, &color, &interlace, NULL, NULL);
  st = check_limits(limits, "PNG", w32, h32);
  if (st != SDW_OK) goto done;
  int w = (int)w32, h = (int)h32;
  png_set_expand(job->png); /* palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha */
  png_set_scale_16(job->png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
    png_set_gray_to_rgb(job->png);
  int passes = png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  int channels = png_get_channels(job->png, job->info);
  if (channels != 3 && channels != 4) png_error(job->png, "unexpected channel count");
  st = sdw_image_alloc(w, h, &job->img);
  if (st != SDW_OK) goto done;
  size_t rgba_rows = passes > 1 ? (size_t)h : 1;
  if (channels == 4) {
    job->rgba = malloc((size_t)w * 4 * rgba_rows);
    if (!job->rgba) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a %dx%d PNG", w, h);
      goto done;
    }
  }
  if (passes > 1) {
    job->row_ptrs = malloc(sizeof(png_bytep) * (size_t)h);
    if (!job->row_ptrs) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a %dx%d PNG", w, h);
      goto done;
    }
    for (int y = 0; y < h; y++)
      job->row_ptrs[y] =
          channels == 4 ? job->rgba + (size_t)y * w * 4 : job->img.pixels + (size_t)y * w * 3;
    png_read_image(job->png, job->row_ptrs);
    if (channels == 4)
      for (int y = 0; y < h; y++)
        matte_row(job->rgba + (size_t)y * w * 4, job->img.pixels + (size_t)y * w * 3, w);
  } else {
    for (int y = 0; y < h; y++) {
      uint8_t *dst = job->img.pixels + (size_t)y * w * 3;
      png_read_row(job->png, channels == 4 ? job->rgba : dst, NULL);
      if (channels == 4) matte_row(job->rgba, dst, w);
    }
  }
  *out = job->img;
  job->img.pixels = NULL;
done:
  if (job->png) png_destroy_read_struct(&job->png, job->info ? &job->info : NULL, NULL);
  free(job->rgba);
  free(job->row_ptrs);
  sdw_image_free(&job->img);
  free(job);
  return st;
}

/* ================================ WebP ================================ */

static sdw_status webp_decode(const void *data, size_t size, const sdw_image_limits *limits,
                              sdw_image *out) {
  WebPBitstreamFeatures f;
  VP8StatusCode vs = WebPGetFeatures(data, size, &f);
  if (vs != VP8_STATUS_OK) return sdw_fail(SDW_ERR_FORMAT, "corrupt WebP (status %d)", (int)vs);
  if (f.has_animation) return sdw_fail(SDW_ERR_FORMAT, "animated WebP is not supported");
  SDW_TRY(check_limits(limits, "WebP", f.width, f.height));
  int w = f.width, h = f.height;
  SDW_TRY(sdw_image_alloc(w, h, out));
  if (!f.has_alpha) {
    if (!WebPDecodeRGBInto(data, size, out->pixels, (size_t)w * h * 3, w * 3)) {
      sdw_image_free(out);
      return sdw_fail(SDW_ERR_FORMAT, "corrupt or truncated WebP (%dx%d)", w, h);
    }
    return SDW_OK;
  }
  uint8_t *rgba = malloc((size_t)w * h * 4);
  if (!rgba) {
    sdw_image_free(out);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory decoding a %dx%d WebP", w, h);
  }
  if (!WebPDecodeRGBAInto(data, size, rgba, (size_t)w * h * 4, w * 4)) {
    free(rgba);
    sdw_image_free(out);
    return sdw_fail(SDW_ERR_FORMAT, "corrupt or truncated WebP (%dx%d)", w, h);
  }
  for (int y = 0; y < h; y++)
    matte_row(rgba + (size_t)y * w * 4, out->pixels + (size_t)y * w * 3, w);
  free(rgba);
  return SDW_OK;
}

/* ================================ API ================================ */

sdw_status sdw_image_decode(const void *data, size_t size, const sdw_image_limits *limits,
                            sdw_image *out, sdw_image_format *format) {
  out->pixels = NULL;
  out->width = out->height = 0;
  sdw_image_format f = data ? sdw_image_sniff(data, size) : SDW_IMAGE_UNKNOWN;
  if (format) *format = f;
  switch (f) {
  case SDW_IMAGE_JPEG: return jpeg_decode(data, size, limits, NULL, out, NULL, NULL);
  case SDW_IMAGE_PNG: return png_decode(data, size, limits, out);
  case SDW_IMAGE_WEBP: return webp_decode(data, size, limits, out);
  default: return sdw_fail(SDW_ERR_FORMAT, "not an image (neither JPEG, PNG nor WebP)");
  }
}

sdw_status sdw_image_decode_resize(const void *data, size_t size, const sdw_image_limits *limits,
                                   const sdw_resize_options *options, sdw_image *out,
                                   sdw_image_format *format, int *orig_width, int *orig_height) {
  out->pixels = NULL;
  out->width = out->height = 0;
  if (orig_width) *orig_width = 0;
  if (orig_height) *orig_height = 0;
  sdw_image_format f = data ? sdw_image_sniff(data, size) : SDW_IMAGE_UNKNOWN;
  if (format) *format = f;
  if (f == SDW_IMAGE_JPEG)
    return jpeg_decode(data, size, limits, options, out, orig_width, orig_height);
  sdw_image img;
  SDW_TRY(sdw_image_decode(data, size, limits, &img, NULL));
  if (orig_width) *orig_width = img.width;
  if (orig_height) *orig_height = img.height;
  sdw_status st = sdw_image_resize(&img, options, out);
  sdw_image_free(&img);
  return st;
}

static sdw_status jpeg_probe(const void *data, size_t size, int *w, int *h) {
  jpeg_job *job = calloc(1, sizeof *job);
  if (!job) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory probing a JPEG");
  sdw_status st = SDW_OK;
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  job->err.pub.emit_message = jpeg_on_message;
  if (setjmp(job->err.jump)) {
    st = sdw_fail(SDW_ERR_FORMAT, "corrupt JPEG: %s", job->err.msg);
  } else {
    jpeg_create_decompress(&job->cinfo);
    jpeg_mem_src(&job->cinfo, data, (unsigned long)size);
    jpeg_read_header(&job->cinfo, TRUE);
    *w = (int)job->cinfo.image_width;
    *h = (int)job->cinfo.image_height;
  }
  jpeg_destroy_decompress(&job->cinfo);
  free(job);
  return st;
}

sdw_status sdw_image_probe(const void *data, size_t size, sdw_image_format *format, int *width,
                           int *height) {
  *width = *height = 0;
  sdw_image_format f = data ? sdw_image_sniff(data, size) : SDW_IMAGE_UNKNOWN;
  if (format) *format = f;
  const uint8_t *p = data;
  switch (f) {
  case SDW_IMAGE_JPEG: return jpeg_probe(data, size, width, height);
  case SDW_IMAGE_PNG: {
    /* the IHDR chunk must come first */
    if (size < 24 || memcmp(p + 12, "IHDR", 4))
      return sdw_fail(SDW_ERR_FORMAT, "corrupt PNG: no IHDR chunk");
    uint32_t w = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
    uint32_t h = (uint32_t)p[20] << 24 | (uint32_t)p[21] << 16 | (uint32_t)p[22] << 8 | p[23];
    if (w == 0 || h == 0 || w > 0x7fffffffu || h > 0x7fffffffu)
      return sdw_fail(SDW_ERR_FORMAT, "corrupt PNG: IHDR size %ux%u", w, h);
    *width = (int)w, *height = (int)h;
    return SDW_OK;
  }
  case SDW_IMAGE_WEBP: {
    WebPBitstreamFeatures wf;
    if (WebPGetFeatures(data, size, &wf) != VP8_STATUS_OK)
      return sdw_fail(SDW_ERR_FORMAT, "corrupt WebP header");
    *width = wf.width, *height = wf.height;
    return SDW_OK;
  }
  default: return sdw_fail(SDW_ERR_FORMAT, "not an image (neither JPEG, PNG nor WebP)");
  }
}

/* ============================== JPEG encode ============================== */

typedef struct jpeg_enc_job {
  struct jpeg_compress_struct cinfo;
  jpeg_err err;
  unsigned char *buf;
  unsigned long size;
} jpeg_enc_job;

sdw_status sdw_image_encode_jpeg(const sdw_image *image, int quality, uint8_t **data,
                                 size_t *size) {
  *data = NULL;
  *size = 0;
  if (!image || !image->pixels || image->width < 1 || image->height < 1 || image->width > 65500 ||
      image->height > 65500)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "JPEG encode: bad image (%dx%d)",
                    image ? image->width : 0, image ? image->height : 0);
  if (quality < 1 || quality > 100)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "JPEG quality %d not in 1..100", quality);
  jpeg_enc_job *job = calloc(1, sizeof *job);
  if (!job) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory encoding a JPEG");
  sdw_status st = SDW_OK;
  job->cinfo.err = jpeg_std_error(&job->err.pub);
  job->err.pub.error_exit = jpeg_on_error;
  if (setjmp(job->err.jump)) {
    st = sdw_fail(SDW_ERR_INTERNAL, "JPEG encode failed: %s", job->err.msg);
    goto done;
  }
  jpeg_create_compress(&job->cinfo);
  jpeg_mem_dest(&job->cinfo, &job->buf, &job->size);
  job->cinfo.image_width = (JDIMENSION)image->width;
  job->cinfo.image_height = (JDIMENSION)image->height;
  job->cinfo.input_components = 3;
  job->cinfo.in_color_space = JCS_RGB;
  /* as OpenCV's JpegEncoder with only IMWRITE_JPEG_QUALITY: the defaults
   * (4:2:0, islow DCT, JFIF, Huffman tables of the standard) + quality */
  jpeg_set_defaults(&job->cinfo);
  jpeg_set_quality(&job->cinfo, quality, TRUE);
  jpeg_start_compress(&job->cinfo, TRUE);
  while (job->cinfo.next_scanline < job->cinfo.image_height) {
    /* a row group (16 rows for 4:2:0) per call */
    JSAMPROW rows[16];
    JDIMENSION y = job->cinfo.next_scanline, n = job->cinfo.image_height - y;
    if (n > 16) n = 16;
    for (JDIMENSION k = 0; k < n; k++)
      rows[k] = image->pixels + (size_t)(y + k) * image->width * 3;
    jpeg_write_scanlines(&job->cinfo, rows, n);
  }
  jpeg_finish_compress(&job->cinfo);
  *data = job->buf;
  *size = job->size;
  job->buf = NULL;
done:
  jpeg_destroy_compress(&job->cinfo);
  free(job->buf);
  free(job);
  return st;
}
