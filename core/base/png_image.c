#include "core/base/png_image.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"

/* --- writing: encode to memory, then one atomic write ------------------------- */
typedef struct png_buffer {
  unsigned char *data;
  size_t size, capacity;
  int failed;
} png_buffer;

static void buffer_write(png_structp png, png_bytep data, png_size_t length) {
  png_buffer *b = png_get_io_ptr(png);
  if (b->failed) return;
  if (b->size + length > b->capacity) {
    size_t capacity = b->capacity ? b->capacity : 65536;
    while (capacity < b->size + length)
      capacity *= 2;
    unsigned char *grown = realloc(b->data, capacity);
    if (!grown) {
      b->failed = 1;
      return;
    }
    b->data = grown;
    b->capacity = capacity;
  }
  memcpy(b->data + b->size, data, length);
  b->size += length;
}

static void buffer_flush(png_structp png) { (void)png; }

static int is_ascii(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return 0;
  return 1;
}

/* libpng reports errors through longjmp; the message is kept for sdw_fail. */
typedef struct png_error_state {
  jmp_buf jump;
  char message[200];
} png_error_state;

static void on_png_error(png_structp png, png_const_charp message) {
  png_error_state *state = png_get_error_ptr(png);
  snprintf(state->message, sizeof state->message, "%s", message);
  longjmp(state->jump, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
  (void)png, (void)message; /* warnings (e.g. benign CRC notes) are not errors */
}

sdw_status sdw_png_write(const char *path, const uint8_t *pixels, int width, int height,
                         int channels, const sdw_png_text *texts, int text_count) {
  SDW_ASSERT(channels == 3 || channels == 4);
  if (width <= 0 || height <= 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: cannot write a %dx%d image", path, width,
                    height);
  png_error_state err = {.message = ""};
  png_buffer buffer = {0};
  png_text *chunks = NULL;
  png_bytep *rows = NULL;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: cannot start the PNG encoder", path);
  }
  chunks = calloc((size_t)(text_count > 0 ? text_count : 1), sizeof *chunks);
  rows = malloc((size_t)height * sizeof *rows);
  if (!chunks || !rows) {
    png_destroy_write_struct(&png, &info);
    free(chunks), free(rows);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory encoding PNG", path);
  }
  if (setjmp(err.jump)) {
    png_destroy_write_struct(&png, &info);
    free(chunks), free(rows), free(buffer.data);
    return sdw_fail(SDW_ERR_INTERNAL, "%s: PNG encoder failed: %s", path, err.message);
  }
  png_set_write_fn(png, &buffer, buffer_write, buffer_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
               channels == 4 ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (int i = 0; i < text_count; i++) {
    chunks[i].key = (png_charp)texts[i].key;
    chunks[i].text = (png_charp)texts[i].value;
    chunks[i].compression =
        is_ascii(texts[i].value) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
  }
  if (text_count > 0) png_set_text(png, info, chunks, text_count);
  for (int y = 0; y < height; y++)
    rows[y] = (png_bytep)(pixels + (size_t)y * (size_t)width * (size_t)channels);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  free(chunks), free(rows);
  if (buffer.failed) {
    free(buffer.data);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory encoding PNG", path);
  }
  sdw_status st = sdw_atomic_write(path, buffer.data, buffer.size);
  free(buffer.data);
  return st;
}

/* --- reading -------------------------------------------------------------------- */
void sdw_png_image_free(sdw_png_image *image) {
  if (!image) return;
  free(image->pixels);
  for (int i = 0; i < image->text_count; i++) {
    free((char *)image->texts[i].key);
    free((char *)image->texts[i].value);
  }
  free(image->texts);
  memset(image, 0, sizeof *image);
}

const char *sdw_png_image_text(const sdw_png_image *image, const char *key) {
  for (int i = 0; i < image->text_count; i++)
    if (strcmp(image->texts[i].key, key) == 0) return image->texts[i].value;
  return NULL;
}

static sdw_status png_read_budget(const char *path, size_t budget_arg, sdw_png_image *out);

sdw_status sdw_png_read(const char *path, size_t max_pixels, sdw_png_image *out) {
  return png_read_budget(path, max_pixels ? max_pixels : (size_t)256 << 20, out);
}

/* budget travels in a volatile local: libpng's errors longjmp back here. */
static sdw_status png_read_budget(const char *path, size_t budget_arg, sdw_png_image *out) {
  volatile size_t budget = budget_arg;
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return sdw_fail(SDW_ERR_NOT_FOUND, "%s: cannot open", path);
  png_error_state err = {.message = ""};
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: cannot start the PNG decoder", path);
  }
  if (setjmp(err.jump)) {
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    free(rows);
    sdw_png_image_free(out);
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a valid PNG (%s)", path, err.message);
  }
  png_init_io(png, f);
  png_read_info(png, info);
  png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  if ((size_t)width * height > budget) png_error(png, "image larger than the pixel budget");
  int color = png_get_color_type(png, info);
  png_set_expand(png); /* palette -> RGB, low-bit gray -> 8 bit, tRNS -> alpha */
  png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  if (channels != 3 && channels != 4) png_error(png, "unexpected channel count");
  out->width = (int)width, out->height = (int)height, out->channels = channels;
  out->pixels = malloc((size_t)width * height * (size_t)channels);
  rows = malloc((size_t)height * sizeof *rows);
  if (!out->pixels || !rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < height; y++)
    rows[y] = out->pixels + (size_t)y * width * (size_t)channels;
  png_read_image(png, rows);
  png_read_end(png, info);
  png_textp text = NULL;
  int count = png_get_text(png, info, &text, NULL);
  if (count > 0) {
    out->texts = calloc((size_t)count, sizeof *out->texts);
    if (!out->texts) png_error(png, "out of memory");
    for (int i = 0; i < count; i++) {
      out->texts[i].key = strdup(text[i].key);
      out->texts[i].value = strdup(text[i].text ? text[i].text : "");
      out->text_count++;
      if (!out->texts[i].key || !out->texts[i].value) png_error(png, "out of memory");
    }
  }
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  free(rows);
  return SDW_OK;
}
