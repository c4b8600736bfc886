/* core/base/safetensors: the reader against files written by others (the
 * goldens, made by the bundles' generator; tests/data/safetensors/
 * interop.safetensors, made by the real Python package 0.8.0 through
 * tools/make_safetensors_interop.py), the writer through an independent JSON
 * parser (cJSON) and a byte comparison, and a list of malformed files that
 * must each be refused with SDW_ERR_FORMAT and a message.
 *
 * Acceptance decisions were cross-checked against the reference: with
 * SDW_SAFETENSORS_DUMP=<dir> the malformed/odd cases below are written there
 * (reject_*.safetensors / accept_*.safetensors / strict_*.safetensors), and
 * safetensors 0.8.0's deserialize() refuses every reject_* and accepts every
 * accept_* and strict_* (strict_* are the cases where we are deliberately
 * stricter, see core/base/safetensors.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "tests/test.h"

/* --- helpers ------------------------------------------------------------------ */

/* 8-byte little-endian N, the header, then data_len bytes i*7+1. malloc'd. */
static unsigned char *build_file(const char *header, size_t header_len, size_t data_len,
                                 size_t *size) {
  *size = 8 + header_len + data_len;
  unsigned char *b = malloc(*size ? *size : 1);
  if (!b) abort();
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
  memcpy(b + 8, header, header_len);
  for (size_t i = 0; i < data_len; i++)
    b[8 + header_len + i] = (unsigned char)(i * 7 + 1);
  return b;
}

static void dump_case(const char *kind, int index, const void *bytes, size_t size) {
  const char *dir = getenv("SDW_SAFETENSORS_DUMP");
  if (!dir || !*dir) return;
  char path[1024];
  snprintf(path, sizeof path, "%s/%s_%03d.safetensors", dir, kind, index);
  CHECK_OK(sdw_atomic_write(path, bytes, size));
}

/* The bytes must be refused with SDW_ERR_FORMAT and a message, from memory
 * (an exact-size heap copy, so ASan sees any read past the end) and from a
 * file (the mmap path). */
static void check_rejected(const void *bytes, size_t size, const char *what) {
  unsigned char *copy = malloc(size ? size : 1);
  if (!copy) abort();
  memcpy(copy, bytes, size);
  sdw_clear_error();
  sdw_safetensors *st = (sdw_safetensors *)1;
  sdw_status s = sdw_safetensors_open_memory(copy, size, "case.safetensors", &st);
  CHECK_MSG(s == SDW_ERR_FORMAT, "%s: open_memory returned %s (%s), expected malformed input", what,
            sdw_status_name(s), sdw_last_error());
  CHECK_MSG(st == NULL, "%s: *out not NULL after a failure", what);
  CHECK_MSG(sdw_last_error()[0] != '\0', "%s: no error message", what);
  CHECK_MSG(strstr(sdw_last_error(), "case.safetensors") != NULL,
            "%s: message does not name the file: %s", what, sdw_last_error());
  if (s == SDW_OK) sdw_safetensors_close(st);
  free(copy);

  char path[1024];
  snprintf(path, sizeof path, "%s/malformed.safetensors", sdw_test_tmpdir());
  CHECK_OK(sdw_atomic_write(path, bytes, size));
  st = (sdw_safetensors *)1;
  s = sdw_safetensors_open(path, &st);
  CHECK_MSG(s == SDW_ERR_FORMAT && st == NULL && strstr(sdw_last_error(), path),
            "%s: open(file) returned %s (%s)", what, sdw_status_name(s), sdw_last_error());
  if (s == SDW_OK) sdw_safetensors_close(st);
}

static sdw_safetensors *open_accepted(const void *bytes, size_t size, const char *what) {
  sdw_safetensors *st = NULL;
  sdw_status s = sdw_safetensors_open_memory(bytes, size, "ok.safetensors", &st);
  CHECK_MSG(s == SDW_OK, "%s: refused: %s", what, sdw_last_error());
  return s == SDW_OK ? st : NULL;
}

static bool shape_is(const sdw_safetensors_entry *e, int ndim, const int64_t *shape) {
  if (e->ndim != ndim) return false;
  for (int i = 0; i < ndim; i++)
    if (e->shape[i] != shape[i]) return false;
  return true;
}

static double get_f64(const void *data, int64_t i) {
  double v;
  memcpy(&v, (const char *)data + 8 * i, 8);
  return v;
}
static float get_f32(const void *data, int64_t i) {
  float v;
  memcpy(&v, (const char *)data + 4 * i, 4);
  return v;
}
static int64_t get_i64(const void *data, int64_t i) {
  int64_t v;
  memcpy(&v, (const char *)data + 8 * i, 8);
  return v;
}

/* Normwise relative error of an F32 tensor against its F64 twin. */
static double f32_vs_f64(const sdw_safetensors_entry *a, const sdw_safetensors_entry *b) {
  double max_diff = 0, max_ref = 0;
  for (int64_t i = 0; i < a->numel; i++) {
    double want = get_f64(b->data, i);
    max_diff = fmax(max_diff, fabs((double)get_f32(a->data, i) - want));
    max_ref = fmax(max_ref, fabs(want));
  }
  return max_ref > 0 ? max_diff / max_ref : max_diff;
}

typedef struct expected_tensor {
  const char *name;
  sdw_dtype dtype;
  int ndim;
  int64_t shape[4];
} expected_tensor;

/* Names, dtypes and shapes in file order, as the bundle's README.txt lists
 * them (README: "Tensor order in the file = order in README.txt"). */
static void check_listing(const sdw_safetensors *st, const expected_tensor *want, size_t n) {
  CHECK_MSG(sdw_safetensors_count(st) == n, "%zu tensors, README lists %zu",
            sdw_safetensors_count(st), n);
  for (size_t i = 0; i < n && i < sdw_safetensors_count(st); i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, i);
    CHECK_MSG(strcmp(e->name, want[i].name) == 0, "tensor %zu is '%s', README says '%s'", i,
              e->name, want[i].name);
    CHECK_MSG(e->dtype == want[i].dtype, "%s: dtype %s", e->name, sdw_dtype_name(e->dtype));
    CHECK_MSG(shape_is(e, want[i].ndim, want[i].shape), "%s: wrong shape", e->name);
    CHECK(sdw_safetensors_find(st, want[i].name) == e);
  }
}

static sdw_safetensors *open_golden(const char *bundle) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/%s/io.safetensors", sdw_test_data_dir(), bundle);
  sdw_safetensors *st = NULL;
  sdw_status s = sdw_safetensors_open(path, &st);
  if (s != SDW_OK) sdw_test_fail(__FILE__, __LINE__, "open %s: %s", path, sdw_last_error());
  return st;
}

/* --- files written by others ------------------------------------------------------ */

SDW_TEST(safetensors_golden_vae_tiny) {
  static const expected_tensor want[] = {
      {"image", SDW_F32, 4, {1, 3, 32, 32}},
      {"latents", SDW_F32, 4, {1, 4, 16, 16}},
      {"posterior_mean", SDW_F32, 4, {1, 4, 16, 16}},
      {"posterior_mean_f64", SDW_F64, 4, {1, 4, 16, 16}},
      {"posterior_logvar", SDW_F32, 4, {1, 4, 16, 16}},
      {"posterior_logvar_f64", SDW_F64, 4, {1, 4, 16, 16}},
      {"decoded", SDW_F32, 4, {1, 3, 32, 32}},
      {"decoded_f64", SDW_F64, 4, {1, 3, 32, 32}},
      {"decoded_from_mean", SDW_F32, 4, {1, 3, 32, 32}},
      {"decoded_from_mean_f64", SDW_F64, 4, {1, 3, 32, 32}},
  };
  sdw_safetensors *st = open_golden("vae-tiny");
  REQUIRE(st);
  check_listing(st, want, sizeof want / sizeof want[0]);

  /* Each F32 output against its F64 twin: README's table gives normwise
   * errors 7.1e-7 .. 1.53e-6; 3e-6 keeps margin. Reading at a wrong offset or
   * width would give errors of order 1. */
  static const char *pairs[] = {"posterior_mean", "posterior_logvar", "decoded",
                                "decoded_from_mean"};
  for (size_t i = 0; i < 4; i++) {
    char twin[64];
    snprintf(twin, sizeof twin, "%s_f64", pairs[i]);
    const sdw_safetensors_entry *a, *b;
    CHECK_OK(sdw_safetensors_get(st, pairs[i], &a));
    CHECK_OK(sdw_safetensors_get(st, twin, &b));
    if (a && b) CHECK_REL(f32_vs_f64(a, b), 3e-6, pairs[i]);
  }
  /* README: image = rand*2-1 in [-1, 1); logvar clamped to [-30, 20]. */
  const sdw_safetensors_entry *image = sdw_safetensors_find(st, "image");
  const sdw_safetensors_entry *logvar = sdw_safetensors_find(st, "posterior_logvar");
  REQUIRE(image && logvar);
  double lo = 1e9, hi = -1e9;
  for (int64_t i = 0; i < image->numel; i++) {
    lo = fmin(lo, get_f32(image->data, i));
    hi = fmax(hi, get_f32(image->data, i));
  }
  CHECK_MSG(lo >= -1 && hi < 1 && lo < -0.9 && hi > 0.9, "image range [%g, %g]", lo, hi);
  for (int64_t i = 0; i < logvar->numel; i++) {
    float v = get_f32(logvar->data, i);
    CHECK_MSG(v >= -30 && v <= 20, "logvar[%lld] = %g", (long long)i, v);
    if (!(v >= -30 && v <= 20)) break;
  }
  sdw_tensor t;
  CHECK_OK(sdw_safetensors_tensor(st, image, &t));
  CHECK(t.data == image->data && t.dtype == SDW_F32 && t.ndim == 4 && t.shape[1] == 3 &&
        sdw_tensor_numel(&t) == 3072 && sdw_tensor_nbytes(&t) == image->nbytes);
  CHECK(sdw_safetensors_metadata_count(st) == 0 || sdw_safetensors_metadata_count(st) > 0);
  sdw_safetensors_close(st);
}

SDW_TEST(safetensors_golden_clip_text_tiny) {
  static const expected_tensor want[] = {
      {"input_ids", SDW_I64, 2, {3, 77}},
      {"attention_mask", SDW_I64, 2, {3, 77}},
      {"last_hidden_state", SDW_F32, 3, {3, 77, 64}},
      {"last_hidden_state_f64", SDW_F64, 3, {3, 77, 64}},
      {"pooler_output", SDW_F32, 2, {3, 64}},
      {"pooler_output_f64", SDW_F64, 2, {3, 64}},
      {"last_hidden_state_masked", SDW_F32, 3, {3, 77, 64}},
      {"last_hidden_state_masked_f64", SDW_F64, 3, {3, 77, 64}},
      {"pooler_output_masked", SDW_F32, 2, {3, 64}},
      {"pooler_output_masked_f64", SDW_F64, 2, {3, 64}},
      {"hidden_states.0", SDW_F32, 3, {3, 77, 64}},
      {"hidden_states.1", SDW_F32, 3, {3, 77, 64}},
      {"hidden_states.2", SDW_F32, 3, {3, 77, 64}},
  };
  sdw_safetensors *st = open_golden("clip-text-tiny");
  REQUIRE(st);
  check_listing(st, want, sizeof want / sizeof want[0]);

  /* README: normwise f32-vs-f64 errors 4.3e-7 .. 5.7e-7; 1e-6 keeps margin. */
  static const char *pairs[] = {"last_hidden_state", "pooler_output", "last_hidden_state_masked",
                                "pooler_output_masked"};
  for (size_t i = 0; i < 4; i++) {
    char twin[64];
    snprintf(twin, sizeof twin, "%s_f64", pairs[i]);
    const sdw_safetensors_entry *a = sdw_safetensors_find(st, pairs[i]);
    const sdw_safetensors_entry *b = sdw_safetensors_find(st, twin);
    REQUIRE(a && b);
    CHECK_REL(f32_vs_f64(a, b), 1e-6, pairs[i]);
  }
  /* CLIP token ids: every row starts with <|startoftext|> 49406 and holds an
   * <|endoftext|> 49407; the mask is 1 up to and including the first 49407
   * and 0 after (README). */
  const sdw_safetensors_entry *ids = sdw_safetensors_find(st, "input_ids");
  const sdw_safetensors_entry *mask = sdw_safetensors_find(st, "attention_mask");
  REQUIRE(ids && mask);
  for (int row = 0; row < 3; row++) {
    CHECK(get_i64(ids->data, row * 77) == 49406);
    int first_eot = -1;
    for (int j = 0; j < 77; j++) {
      int64_t id = get_i64(ids->data, row * 77 + j);
      CHECK(id >= 0 && id < 49408);
      if (id == 49407 && first_eot < 0) first_eot = j;
    }
    CHECK_MSG(first_eot > 0, "row %d has no end-of-text token", row);
    for (int j = 0; j < 77; j++)
      CHECK(get_i64(mask->data, row * 77 + j) == (j <= first_eot ? 1 : 0));
  }
  sdw_safetensors_close(st);
}

/* Every value that tools/make_safetensors_interop.py writes. */
SDW_TEST(safetensors_interop_python) {
  char path[1024];
  snprintf(path, sizeof path, "%s/safetensors/interop.safetensors", sdw_test_data_dir());
  sdw_safetensors *st = NULL;
  CHECK_OK(sdw_safetensors_open(path, &st));
  REQUIRE(st);
  CHECK(sdw_safetensors_count(st) == 9);
  const sdw_safetensors_entry *e;

  CHECK_OK(sdw_safetensors_get(st, "weights.f32", &e));
  REQUIRE(e && e->dtype == SDW_F32 && shape_is(e, 2, (int64_t[]){2, 3}) && e->nbytes == 24);
  static const float f32[] = {0.0f, 1.0f, -2.5f, 3.25f, 1e-3f, -1e30f};
  CHECK(memcmp(e->data, f32, sizeof f32) == 0);

  CHECK_OK(sdw_safetensors_get(st, "weights.f16", &e));
  REQUIRE(e && e->dtype == SDW_F16 && shape_is(e, 1, (int64_t[]){4}));
  /* 1, -0.5, 65504 (largest f16), 2^-24 (smallest subnormal): exact in f16. */
  static const double f16[] = {1.0, -0.5, 65504.0, 5.9604644775390625e-08};
  for (int i = 0; i < 4; i++) {
    uint16_t bits;
    memcpy(&bits, (const char *)e->data + 2 * i, 2);
    CHECK_MSG(sdw_f16_to_f32(bits) == (float)f16[i], "f16[%d] = %g", i, sdw_f16_to_f32(bits));
  }

  CHECK_OK(sdw_safetensors_get(st, "weights.bf16", &e));
  REQUIRE(e && e->dtype == SDW_BF16 && shape_is(e, 2, (int64_t[]){2, 2}));
  static const float bf16[] = {1.0f, -2.0f, 0.5f, 3.140625f};
  for (int i = 0; i < 4; i++) {
    uint16_t bits;
    memcpy(&bits, (const char *)e->data + 2 * i, 2);
    CHECK_MSG(sdw_bf16_to_f32(bits) == bf16[i], "bf16[%d] = %g", i, sdw_bf16_to_f32(bits));
  }

  CHECK_OK(sdw_safetensors_get(st, "ids.i64", &e));
  REQUIRE(e && e->dtype == SDW_I64 && shape_is(e, 1, (int64_t[]){4}));
  static const int64_t i64[] = {-(INT64_C(1) << 62), -1, 0, (INT64_C(1) << 40) + 7};
  CHECK(memcmp(e->data, i64, sizeof i64) == 0);

  CHECK_OK(sdw_safetensors_get(st, "ids.i32", &e));
  REQUIRE(e && e->dtype == SDW_I32 && shape_is(e, 2, (int64_t[]){3, 1}));
  static const int32_t i32[] = {INT32_MIN, INT32_MAX, 12345};
  CHECK(memcmp(e->data, i32, sizeof i32) == 0);

  CHECK_OK(sdw_safetensors_get(st, "bytes.u8", &e));
  REQUIRE(e && e->dtype == SDW_U8 && shape_is(e, 1, (int64_t[]){5}));
  CHECK(memcmp(e->data, (const uint8_t[]){0, 1, 127, 128, 255}, 5) == 0);

  CHECK_OK(sdw_safetensors_get(st, "mask.bool", &e));
  REQUIRE(e && e->dtype == SDW_BOOL && shape_is(e, 1, (int64_t[]){3}));
  CHECK(memcmp(e->data, (const uint8_t[]){1, 0, 1}, 3) == 0);

  CHECK_OK(sdw_safetensors_get(st, "scalar.f64", &e));
  REQUIRE(e && e->dtype == SDW_F64 && e->ndim == 0 && e->numel == 1 && e->nbytes == 8);
  CHECK(get_f64(e->data, 0) == 7.5);

  CHECK_OK(sdw_safetensors_get(st, "empty.f32", &e));
  REQUIRE(e && e->dtype == SDW_F32 && shape_is(e, 2, (int64_t[]){0, 3}));
  CHECK(e->numel == 0 && e->nbytes == 0);

  CHECK(sdw_safetensors_metadata_count(st) == 3);
  const char *v = sdw_safetensors_metadata_get(st, "format");
  CHECK(v && strcmp(v, "pt") == 0);
  v = sdw_safetensors_metadata_get(st, "source");
  CHECK(v && strcmp(v, "tools/make_safetensors_interop.py") == 0);
  v = sdw_safetensors_metadata_get(st, "unicode");
  CHECK(v && strcmp(v, "caf\xc3\xa9 \xe2\x9c\x93") == 0);
  CHECK(sdw_safetensors_metadata_get(st, "absent") == NULL);

  /* The package orders tensors by alignment then name; iteration follows the
   * header as written (checked against the file's JSON by hand). */
  static const char *order[] = {"ids.i64",     "scalar.f64", "empty.f32",
                                "weights.f32", "ids.i32",    "weights.bf16",
                                "weights.f16", "bytes.u8",   "mask.bool"};
  for (size_t i = 0; i < 9 && i < sdw_safetensors_count(st); i++)
    CHECK_MSG(strcmp(sdw_safetensors_at(st, i)->name, order[i]) == 0, "tensor %zu is %s", i,
              sdw_safetensors_at(st, i)->name);
  sdw_safetensors_close(st);
}

/* --- writer ----------------------------------------------------------------------- */

SDW_TEST(safetensors_round_trip) {
  sdw_safetensors_writer *w = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&w));
  REQUIRE(w);
  /* One tensor per dtype with distinct bytes, plus the awkward ones. */
  enum { MAX = 40 };
  unsigned char *buffers[MAX] = {0};
  char names[MAX][64];
  sdw_dtype dtypes[MAX];
  int ndims[MAX];
  int64_t shapes[MAX][9];
  size_t sizes[MAX];
  int count = 0;
  for (int d = 0; d < SDW_DTYPE_COUNT; d++, count++) {
    snprintf(names[count], sizeof names[count], "layer.%d.%s", d, sdw_dtype_name((sdw_dtype)d));
    dtypes[count] = (sdw_dtype)d;
    ndims[count] = 1 + d % 3;
    for (int k = 0; k < ndims[count]; k++)
      shapes[count][k] = 2 + (d + k) % 3;
  }
  /* a 0-d scalar, an empty [0, 3], a 9-dimensional one, and odd names */
  snprintf(names[count], 64, "scalar");
  dtypes[count] = SDW_F64, ndims[count] = 0, count++;
  snprintf(names[count], 64, "empty");
  dtypes[count] = SDW_I64, ndims[count] = 2, shapes[count][0] = 0, shapes[count][1] = 3, count++;
  snprintf(names[count], 64, "rank9");
  dtypes[count] = SDW_U8, ndims[count] = 9;
  for (int k = 0; k < 9; k++)
    shapes[count][k] = 1 + (k == 4);
  count++;
  snprintf(names[count], 64, "quote\"back\\slash/\ttab\x01");
  dtypes[count] = SDW_F32, ndims[count] = 1, shapes[count][0] = 3, count++;
  snprintf(names[count], 64, "unicode.caf\xc3\xa9.\xf0\x9f\x98\x80");
  dtypes[count] = SDW_BF16, ndims[count] = 1, shapes[count][0] = 5, count++;
  snprintf(names[count], 64, "big"); /* 1 MiB: several write calls worth */
  dtypes[count] = SDW_F32, ndims[count] = 2, shapes[count][0] = 512, shapes[count][1] = 512,
  count++;
  for (int i = 0; i < count; i++) {
    int64_t numel = 1;
    for (int k = 0; k < ndims[i]; k++)
      numel *= shapes[i][k];
    sizes[i] = (size_t)numel * sdw_dtype_size(dtypes[i]);
    buffers[i] = malloc(sizes[i] ? sizes[i] : 1);
    for (size_t b = 0; b < sizes[i]; b++)
      buffers[i][b] = (unsigned char)(b * 31 + i * 17 + 5);
    CHECK_OK(sdw_safetensors_writer_add(w, names[i], dtypes[i], ndims[i], shapes[i],
                                        sizes[i] ? buffers[i] : NULL));
  }
  CHECK_OK(sdw_safetensors_writer_set_metadata(w, "format", "sdw"));
  CHECK_OK(sdw_safetensors_writer_set_metadata(w, "escaped", "a\"b\\c\nd\x02"));
  CHECK_OK(sdw_safetensors_writer_set_metadata(w, "format", "pt")); /* replaces */

  /* refusals */
  int64_t two = 2, minus = -1;
  CHECK(sdw_safetensors_writer_add(w, names[0], SDW_F32, 1, &two, buffers[0]) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_safetensors_writer_add(w, "__metadata__", SDW_F32, 1, &two, buffers[0]) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_safetensors_writer_add(w, "neg", SDW_F32, 1, &minus, buffers[0]) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_safetensors_writer_add(w, "bad\xff", SDW_F32, 1, &two, buffers[0]) ==
        SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_last_error()[0] != '\0');

  char path[1024];
  snprintf(path, sizeof path, "%s/round_trip.safetensors", sdw_test_tmpdir());
  CHECK_OK(sdw_safetensors_writer_write(w, path));

  /* The raw bytes, read independently of our reader. */
  void *file = NULL;
  size_t file_size = 0;
  CHECK_OK(sdw_read_file(path, &file, &file_size));
  REQUIRE(file && file_size >= 8);
  dump_case("accept", 100, file, file_size);
  const unsigned char *bytes = file;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | bytes[i];
  REQUIRE(n + 8 <= file_size);
  CHECK_MSG(n % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)n);
  CHECK(bytes[8] == '{' && bytes[9] == '"');
  cJSON *header = cJSON_ParseWithLength((const char *)bytes + 8, (size_t)n);
  REQUIRE(header);
  size_t total = 0;
  for (int i = 0; i < count; i++)
    total += sizes[i];
  CHECK(file_size == 8 + n + total);
  /* cJSON's view of the header: every tensor, its dtype, shape and
   * contiguous offsets in the order added; the metadata. */
  uint64_t offset = 0;
  const cJSON *item = header->child;
  CHECK(item && strcmp(item->string, "__metadata__") == 0);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(header, "__metadata__");
  CHECK(cJSON_GetArraySize(meta) == 2);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "format")), "pt") == 0);
  CHECK(strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "escaped")),
               "a\"b\\c\nd\x02") == 0);
  item = item ? item->next : NULL;
  /* The file order: element sizes 8, 4, 2, 1, each in the order added. */
  int order[MAX], placed = 0;
  for (size_t esize = 8; esize >= 1; esize /= 2)
    for (int i = 0; i < count; i++)
      if (sdw_dtype_size(dtypes[i]) == esize) order[placed++] = i;
  REQUIRE(placed == count);
  for (int pos = 0; pos < count; pos++, item = item ? item->next : NULL) {
    int i = order[pos];
    REQUIRE(item);
    CHECK_MSG(strcmp(item->string, names[i]) == 0, "header key %d is '%s'", i, item->string);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    REQUIRE(dt && sh && off);
    CHECK(strcmp(cJSON_GetStringValue(dt), sdw_dtype_name(dtypes[i])) == 0);
    CHECK(cJSON_GetArraySize(sh) == ndims[i]);
    for (int k = 0; k < ndims[i]; k++)
      CHECK(cJSON_GetArrayItem(sh, k)->valuedouble == (double)shapes[i][k]);
    CHECK(cJSON_GetArraySize(off) == 2);
    CHECK_MSG(cJSON_GetArrayItem(off, 0)->valuedouble == (double)offset &&
                  cJSON_GetArrayItem(off, 1)->valuedouble == (double)(offset + sizes[i]),
              "%s: offsets not contiguous", names[i]);
    CHECK(memcmp(bytes + 8 + n + offset, buffers[i], sizes[i]) == 0);
    CHECK_MSG(offset % sdw_dtype_size(dtypes[i]) == 0, "%s is not aligned", names[i]);
    offset += sizes[i];
  }
  CHECK(item == NULL);
  cJSON_Delete(header);
  /* The JSON ends with '}' and at most 7 spaces of padding follow. */
  size_t header_end = 8 + (size_t)n, k = header_end;
  while (k > 8 && bytes[k - 1] == ' ')
    k--;
  CHECK(bytes[k - 1] == '}' && header_end - k < 8);

  /* And our reader. */
  sdw_safetensors *st = NULL;
  CHECK_OK(sdw_safetensors_open(path, &st));
  REQUIRE(st);
  CHECK(sdw_safetensors_count(st) == (size_t)count);
  for (int pos = 0; pos < count && (size_t)pos < sdw_safetensors_count(st); pos++) {
    int i = order[pos];
    const sdw_safetensors_entry *e = sdw_safetensors_at(st, (size_t)pos);
    CHECK(strcmp(e->name, names[i]) == 0 && e->dtype == dtypes[i] &&
          shape_is(e, ndims[i], shapes[i]) && e->nbytes == sizes[i]);
    CHECK(memcmp(e->data, buffers[i], sizes[i]) == 0);
    CHECK(sdw_safetensors_find(st, names[i]) == e);
    sdw_tensor t;
    sdw_status s = sdw_safetensors_tensor(st, e, &t);
    CHECK(ndims[i] > SDW_MAX_DIMS ? s == SDW_ERR_UNSUPPORTED : s == SDW_OK);
  }
  const char *v = sdw_safetensors_metadata_get(st, "escaped");
  CHECK(v && strcmp(v, "a\"b\\c\nd\x02") == 0);
  sdw_safetensors_close(st);

  /* An empty writer still writes a header that begins with {" and reads back. */
  sdw_safetensors_writer *empty = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&empty));
  snprintf(path, sizeof path, "%s/empty.safetensors", sdw_test_tmpdir());
  CHECK_OK(sdw_safetensors_writer_write(empty, path));
  sdw_safetensors_writer_destroy(empty);
  free(file);
  CHECK_OK(sdw_read_file(path, &file, &file_size));
  REQUIRE(file && file_size >= 10);
  CHECK(memcmp((char *)file + 8, "{\"", 2) == 0 && (file_size - 8) % 8 == 0);
  CHECK_OK(sdw_safetensors_open(path, &st));
  if (st) CHECK(sdw_safetensors_count(st) == 0 && sdw_safetensors_metadata_count(st) == 0);
  sdw_safetensors_close(st);
  free(file);

  /* A failed write leaves nothing behind. */
  snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", sdw_test_tmpdir());
  CHECK(sdw_safetensors_writer_write(w, path) == SDW_ERR_IO && sdw_last_error()[0]);

  sdw_safetensors_writer_destroy(w);
  for (int i = 0; i < count; i++)
    free(buffers[i]);
}

/* --- malformed and odd files -------------------------------------------------------- */

typedef struct header_case {
  const char *header;
  size_t data_len;
  const char *why;
} header_case;

#define ENTRY_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const header_case rejected[] = {
    {"{abc}", 0, "not JSON"},
    {"[1,2]", 0, "an array, not an object"},
    {"\"str\"", 0, "a string, not an object"},
    {"{} x", 0, "garbage after the object"},
    {"{", 0, "unterminated object"},
    {"", 0, "empty header"},
    {"{\"a\":", 0, "header ends inside a member"},
    {"{" ENTRY_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     "overlapping offsets"},
    {"{" ENTRY_A ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20,
     "a gap between tensors"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "gap at the start"},
    {"{" ENTRY_A "}", 4, "offsets past the end of the file"},
    {"{" ENTRY_A "}", 12, "trailing bytes after the last tensor"},
    {"{}", 1, "trailing bytes without tensors"},
    {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype in lower case"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,0]}}",
     0, "shape product overflow [2^40, 2^40]"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
     "byte size overflow 2^62 * 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", 8, "negative dim"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,96]}}", 96, "nbytes mismatch"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\","
     "\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "duplicate tensor name"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "metadata value is a number"},
    {"{\"__metadata__\":{\"k\":null}}", 0, "metadata value is null"},
    {"{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "metadata value is an object"},
    {"{\"__metadata__\":[\"k\",\"v\"]}", 0, "metadata is an array"},
    {"{\"__metadata__\":\"text\"}", 0, "metadata is a string"},
    {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no dtype"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "no shape"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "no data_offsets"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "one offset"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, "three offsets"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "fractional dim"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8, "exponent dim"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "dim string"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape not an array"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}}", 8,
     "offset above 2^64-1"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "end before begin"},
    {"{\"a\":1}", 0, "entry is a number"},
    {"{\"a\":{\"dtype\":1,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype not a string"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     "a field twice in one entry"},
    {"{\"\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "lone surrogate escape"},
    {"{\"a\x01\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "raw control character in a string"},
    {"{\"a\\x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "invalid escape"},
    {"{\"a:{}}", 0, "unterminated string"},
    {"{" ENTRY_A ",}", 8, "trailing comma"},
    {"{" ENTRY_A " " ENTRY_A "}", 8, "missing comma"},
    {"{\"a\" {}}", 0, "missing colon"},
    {"{\"a\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "invalid UTF-8"},
    {"{\"a\xc0\x80\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "overlong UTF-8"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":tru}}", 8,
     "invalid literal in an ignored field"},
};

/* Refused here although the reference reads them (see safetensors.h). */
static const header_case stricter[] = {
    {" {}", 0, "leading whitespace before the object"},
    {"{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "U+0000 in a name"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808],\"data_offsets\":[0,0]}}", 0,
     "dimension above 2^63-1 in an empty tensor"},
    {"{\"a\":[\"F32\",[2],[0,8]]}", 8, "entry is an array (serde reads it as a struct)"},
    {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "metadata key twice"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"U8\","
     "\"shape\":[4],\"data_offsets\":[0,4]}}",
     4, "the same tensor name twice with the same offsets"},
};

SDW_TEST(safetensors_malformed_headers) {
  for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
    size_t size;
    unsigned char *b =
        build_file(rejected[i].header, strlen(rejected[i].header), rejected[i].data_len, &size);
    dump_case("reject", (int)i, b, size);
    check_rejected(b, size, rejected[i].why);
    free(b);
  }
  for (size_t i = 0; i < sizeof stricter / sizeof stricter[0]; i++) {
    size_t size;
    unsigned char *b =
        build_file(stricter[i].header, strlen(stricter[i].header), stricter[i].data_len, &size);
    dump_case("strict", (int)i, b, size);
    check_rejected(b, size, stricter[i].why);
    free(b);
  }
  /* Nesting deeper than serde_json's limit (128) inside an ignored field. */
  char deep[1024];
  int len = snprintf(deep, sizeof deep, "{\"a\":{\"x\":");
  for (int i = 0; i < 200; i++)
    deep[len++] = '[';
  for (int i = 0; i < 200; i++)
    deep[len++] = ']';
  len += snprintf(deep + len, sizeof deep - (size_t)len,
                  ",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
  size_t size;
  unsigned char *b = build_file(deep, (size_t)len, 1, &size);
  dump_case("reject", 900, b, size);
  check_rejected(b, size, "200 nested arrays");
  free(b);
  /* A message that names the tensor and the numbers (the kind users see). */
  static const char mismatch[] =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[5,5],\"data_offsets\":[0,96]}}";
  b = build_file(mismatch, strlen(mismatch), 96, &size);
  sdw_safetensors *st = NULL;
  CHECK(sdw_safetensors_open_memory(b, size, "model.safetensors", &st) == SDW_ERR_FORMAT);
  CHECK_MSG(strstr(sdw_last_error(), "model.safetensors: tensor 'a'") &&
                strstr(sdw_last_error(), "[0, 96)") && strstr(sdw_last_error(), "F32 [5, 5]") &&
                strstr(sdw_last_error(), "100 bytes"),
            "message: %s", sdw_last_error());
  free(b);
}

SDW_TEST(safetensors_malformed_lengths) {
  /* Files shorter than the 8-byte length. */
  static const unsigned char small[8] = {2, 0, 0, 0, 0, 0, 0, 0};
  for (size_t n = 0; n < 8; n++)
    check_rejected(small, n, "shorter than 8 bytes");

  /* Header length: over the 100,000,000 limit, 2^63, 2^64-1, and one byte
   * more than the file holds. */
  static const uint64_t lengths[] = {100000001u, UINT64_C(1) << 63, UINT64_MAX, 3};
  for (size_t i = 0; i < 4; i++) {
    unsigned char b[10] = {0};
    for (int k = 0; k < 8; k++)
      b[k] = (unsigned char)(lengths[i] >> (8 * k));
    b[8] = '{', b[9] = '}';
    dump_case("reject", 800 + (int)i, b, sizeof b);
    check_rejected(b, sizeof b, "header length too large");
  }
  /* Exactly 100,000,000 is allowed by the limit but must still fit the file. */
  unsigned char exact[12] = {0x00, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, '{', '}', ' ', ' '};
  check_rejected(exact, sizeof exact, "header length 1e8 past the end");

  /* Every proper prefix of a valid file is invalid: truncation anywhere in
   * the length, the header or the data. */
  char path[1024];
  snprintf(path, sizeof path, "%s/safetensors/interop.safetensors", sdw_test_data_dir());
  void *file = NULL;
  size_t file_size = 0;
  CHECK_OK(sdw_read_file(path, &file, &file_size));
  REQUIRE(file);
  sdw_safetensors *st = open_accepted(file, file_size, "interop, whole");
  sdw_safetensors_close(st);
  for (size_t cut = 0; cut < file_size; cut++) {
    unsigned char *copy = malloc(cut ? cut : 1);
    memcpy(copy, file, cut);
    sdw_safetensors *t = (sdw_safetensors *)1;
    sdw_status s = sdw_safetensors_open_memory(copy, cut, "cut.safetensors", &t);
    CHECK_MSG(s == SDW_ERR_FORMAT && t == NULL && sdw_last_error()[0],
              "truncated at %zu of %zu: %s", cut, file_size, sdw_status_name(s));
    free(copy);
    if (s != SDW_ERR_FORMAT) break;
  }
  free(file);
}

SDW_TEST(safetensors_accepts_what_the_reference_accepts) {
  size_t size;
  unsigned char *b;
  sdw_safetensors *st;
  int dumped = 0;

  /* No tensors at all. */
  b = build_file("{}", 2, 0, &size);
  dump_case("accept", dumped++, b, size);
  st = open_accepted(b, size, "{}");
  if (st) CHECK(sdw_safetensors_count(st) == 0 && sdw_safetensors_find(st, "a") == NULL);
  sdw_safetensors_close(st);
  free(b);

  /* Unknown fields (of any shape) are ignored; whitespace anywhere; metadata
   * null; entries out of offset order; empty tensors sharing an offset. */
  static const char odd[] =
      "{\n \"b\" : { \"dtype\" : \"U8\" , \"shape\" : [ 2 ] , \"data_offsets\" : [ 4 , 6 ] } ,"
      "\t\"a\":{\"extra\":{\"x\":[1,-2.5e3,{\"y\":null}],\"z\":\"\\u00e9\"},\"dtype\":\"F32\","
      "\"shape\":[1],\"data_offsets\":[0,4],\"more\":true},"
      "\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"e2\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[6,6]},"
      "\"__metadata__\":null,"
      "\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/\":{\"dtype\":\"BOOL\",\"shape\":[],"
      "\"data_offsets\":[6,7]}\r\n}   ";
  b = build_file(odd, strlen(odd), 7, &size);
  dump_case("accept", dumped++, b, size);
  st = open_accepted(b, size, "odd but valid");
  if (st) {
    CHECK(sdw_safetensors_count(st) == 5 && sdw_safetensors_metadata_count(st) == 0);
    static const char *order[] = {"b", "a", "e1", "e2", "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ /"};
    for (size_t i = 0; i < 5 && i < sdw_safetensors_count(st); i++)
      CHECK_MSG(strcmp(sdw_safetensors_at(st, i)->name, order[i]) == 0, "entry %zu is '%s'", i,
                sdw_safetensors_at(st, i)->name);
    const unsigned char *data = b + 8 + strlen(odd);
    const sdw_safetensors_entry *e = sdw_safetensors_find(st, "b");
    CHECK(e && e->data == data + 4 && e->nbytes == 2 && e->numel == 2);
    e = sdw_safetensors_find(st, "a");
    CHECK(e && e->data == data && e->nbytes == 4);
    e = sdw_safetensors_find(st, "e2");
    CHECK(e && e->numel == 0 && e->nbytes == 0 && e->ndim == 2);
    e = sdw_safetensors_find(st, order[4]);
    CHECK(e && e->dtype == SDW_BOOL && e->ndim == 0 && e->numel == 1 && e->data == data + 6);
  }
  sdw_safetensors_close(st);
  free(b);

  /* Metadata with escapes; an empty name; a misaligned F32 (header length 3
   * mod 8, which the format allows): readable, but no typed view. */
  static const char meta[] = "{\"__metadata__\":{\"k\":\"v\\n\\t\\\"\",\"\":\"\"},"
                             "\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  b = build_file(meta, strlen(meta), 4, &size);
  CHECK((8 + strlen(meta)) % 4 != 0);
  dump_case("accept", dumped++, b, size);
  st = open_accepted(b, size, "metadata escapes");
  if (st) {
    CHECK(sdw_safetensors_metadata_count(st) == 2);
    const char *v = sdw_safetensors_metadata_get(st, "k");
    CHECK(v && strcmp(v, "v\n\t\"") == 0);
    const char *key, *value;
    sdw_safetensors_metadata_at(st, 1, &key, &value);
    CHECK(strcmp(key, "") == 0 && strcmp(value, "") == 0);
    const sdw_safetensors_entry *e;
    CHECK_OK(sdw_safetensors_get(st, "", &e));
    sdw_tensor t;
    if (e) CHECK(sdw_safetensors_tensor(st, e, &t) == SDW_ERR_UNSUPPORTED);
    CHECK(sdw_safetensors_get(st, "nope", &e) == SDW_ERR_NOT_FOUND && e == NULL &&
          strstr(sdw_last_error(), "nope"));
  }
  sdw_safetensors_close(st);
  free(b);

  /* Open errors that are not format errors. */
  char path[1024];
  snprintf(path, sizeof path, "%s/does-not-exist.safetensors", sdw_test_tmpdir());
  st = (sdw_safetensors *)1;
  CHECK(sdw_safetensors_open(path, &st) == SDW_ERR_NOT_FOUND && st == NULL);
  CHECK(sdw_safetensors_open(sdw_test_tmpdir(), &st) == SDW_ERR_IO && st == NULL);
}

/* sdw_safetensors_release drops a mapped entry's pages from the resident set;
 * the entry must still read back the same bytes afterwards (the pages come
 * back from the file), and neighbours sharing a page must be untouched. */
SDW_TEST(safetensors_release_keeps_data_readable) {
  enum { A = 3 * 4096 + 17, B = 5 };
  float *a = malloc(A * sizeof *a), b[B];
  REQUIRE(a);
  for (int i = 0; i < A; i++)
    a[i] = (float)i * 0.5f;
  for (int i = 0; i < B; i++)
    b[i] = -(float)i;
  sdw_safetensors_writer *w = NULL;
  CHECK_OK(sdw_safetensors_writer_create(&w));
  const int64_t shape_a[1] = {A}, shape_b[1] = {B};
  CHECK_OK(sdw_safetensors_writer_add(w, "a", SDW_F32, 1, shape_a, a));
  CHECK_OK(sdw_safetensors_writer_add(w, "b", SDW_F32, 1, shape_b, b));
  char path[4096];
  snprintf(path, sizeof path, "%s/release.safetensors", sdw_test_tmpdir());
  CHECK_OK(sdw_safetensors_writer_write(w, path));
  sdw_safetensors_writer_destroy(w);
  sdw_safetensors *st = NULL;
  CHECK_OK(sdw_safetensors_open(path, &st));
  const sdw_safetensors_entry *ea = sdw_safetensors_find(st, "a");
  const sdw_safetensors_entry *eb = sdw_safetensors_find(st, "b");
  REQUIRE(ea && eb);
  CHECK(memcmp(ea->data, a, sizeof(float) * A) == 0);
  sdw_safetensors_release(st, ea);
  sdw_safetensors_release(st, ea); /* twice is harmless */
  CHECK(memcmp(ea->data, a, sizeof(float) * A) == 0);
  CHECK(memcmp(eb->data, b, sizeof b) == 0);
  sdw_safetensors_release(st, eb); /* smaller than a page: nothing to drop */
  CHECK(memcmp(eb->data, b, sizeof b) == 0);
  sdw_safetensors_close(st);
  free(a);
}
