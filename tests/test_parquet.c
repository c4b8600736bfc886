/* pipeline/parquet_*: the reader against files written by PyPI pyarrow
 * (tests/data/parquet, made by tools/gen_parquet_fixtures.py: every codec x
 * dictionary on/off x data page v1/v2 x nullable/required, plus dictionary
 * fallback, DELTA_* / BYTE_STREAM_SPLIT, LZ4_RAW, logical types, nested
 * struct leaves, a LIST column, all-null and empty tables, page checksums,
 * page index and bloom filters), compared EXACTLY (floats bit for bit, bytes
 * byte for byte) with the values pyarrow itself reads back (expected.json);
 * the writer through a round trip of known data (and through pyarrow in
 * tests/cli/parquet_interop.sh, for which `parquet_writer_interop` writes
 * files into $SDW_PARQUET_OUT); snappy/LZ4/Thrift against hand-made streams
 * from their format descriptions; and malformed files (crafted pages,
 * footers, truncations, byte mutations) that must give SDW_ERR_FORMAT with
 * a message (or UNSUPPORTED / OUT_OF_MEMORY where that is the honest
 * answer), never a crash (run under ASan/UBSan too).
 *
 * No tolerances: every comparison here is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "pipeline/parquet_codec.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/thrift_compact.h"
#include "tests/test.h"

/* --- helpers ---------------------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Compares column values with the JSON list of expected physical values
 * (see the generator) for rows [0, n) of want starting at want_offset. */
static bool values_equal(const sdw_parquet_array *a, const cJSON *want, int64_t want_offset,
                         int64_t n, const char *what) {
  if (a->length != n) {
    CHECK_MSG(false, "%s: %lld values, want %lld", what, (long long)a->length, (long long)n);
    return false;
  }
  int64_t nulls = 0;
  for (int64_t i = 0; i < n; i++) {
    const cJSON *w = cJSON_GetArrayItem(want, (int)(want_offset + i));
    if (!w) {
      CHECK_MSG(false, "%s: expected.json has too few values", what);
      return false;
    }
    bool valid = sdw_parquet_array_is_valid(a, i);
    if (cJSON_IsNull(w)) {
      nulls++;
      if (valid) {
        CHECK_MSG(false, "%s: row %lld should be null", what, (long long)i);
        return false;
      }
      /* a null slot holds zeros */
      if (!a->offsets) {
        size_t vs = sdw_parquet_value_size(a->type);
        for (size_t b = 0; b < vs; b++)
          if (((const uint8_t *)a->values)[(size_t)i * vs + b]) {
            CHECK_MSG(false, "%s: null row %lld is not zeroed", what, (long long)i);
            return false;
          }
      } else if (a->offsets[i + 1] != a->offsets[i]) {
        CHECK_MSG(false, "%s: null row %lld has bytes", what, (long long)i);
        return false;
      }
      continue;
    }
    if (!valid) {
      CHECK_MSG(false, "%s: row %lld is null, want a value", what, (long long)i);
      return false;
    }
    bool ok = true;
    switch (a->type) {
    case SDW_PARQUET_BOOLEAN:
      ok = cJSON_IsBool(w) && ((const uint8_t *)a->values)[i] == (cJSON_IsTrue(w) ? 1 : 0);
      break;
    case SDW_PARQUET_INT32:
      ok = cJSON_IsString(w) && ((const int32_t *)a->values)[i] == strtoll(w->valuestring, 0, 10);
      break;
    case SDW_PARQUET_INT64:
      ok = cJSON_IsString(w) && ((const int64_t *)a->values)[i] == strtoll(w->valuestring, 0, 10);
      break;
    case SDW_PARQUET_FLOAT: {
      uint32_t bits;
      memcpy(&bits, (const float *)a->values + i, 4);
      ok = cJSON_IsString(w) && bits == (uint32_t)strtoul(w->valuestring, 0, 16);
      break;
    }
    case SDW_PARQUET_DOUBLE: {
      uint64_t bits;
      memcpy(&bits, (const double *)a->values + i, 8);
      ok = cJSON_IsString(w) && bits == strtoull(w->valuestring, 0, 16);
      break;
    }
    default: {
      size_t len;
      const uint8_t *p = sdw_parquet_array_bytes(a, i, &len);
      const char *h = cJSON_IsString(w) ? w->valuestring : "";
      ok = cJSON_IsString(w) && strlen(h) == 2 * len;
      for (size_t b = 0; ok && b < len; b++)
        ok = hexval(h[2 * b]) * 16 + hexval(h[2 * b + 1]) == p[b];
    }
    }
    if (!ok) {
      char *s = cJSON_PrintUnformatted(w);
      CHECK_MSG(false, "%s: row %lld differs from pyarrow's %s", what, (long long)i, s);
      free(s);
      return false;
    }
  }
  if (a->null_count != nulls || (nulls == 0) != (a->validity == NULL)) {
    CHECK_MSG(false, "%s: null_count %lld (validity %s), want %lld", what, (long long)a->null_count,
              a->validity ? "set" : "NULL", (long long)nulls);
    return false;
  }
  return true;
}

/* Offsets non-decreasing and inside data; length as declared. */
static bool array_consistent(const sdw_parquet_array *a, int64_t rows) {
  if (a->length != rows) return false;
  if (a->offsets) {
    if (a->offsets[0] != 0) return false;
    for (int64_t i = 0; i < a->length; i++)
      if (a->offsets[i + 1] < a->offsets[i]) return false;
    if ((size_t)a->offsets[a->length] != a->data_size) return false;
  }
  int64_t nulls = 0;
  for (int64_t i = 0; i < a->length; i++)
    nulls += !sdw_parquet_array_is_valid(a, i);
  return nulls == a->null_count;
}

static bool has_string(const cJSON *list, const char *s) {
  const cJSON *e;
  cJSON_ArrayForEach(e, list) if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return true;
  return false;
}

static const char *encoding_name(int e) {
  static const char *names[] = {
      "PLAIN",          "GROUP_VAR_INT",       "PLAIN_DICTIONARY",        "RLE",
      "BIT_PACKED",     "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
      "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  return e >= 0 && e < 10 ? names[e] : "?";
}

static cJSON *load_expected(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/parquet/expected.json", sdw_test_data_dir());
  void *text;
  size_t size;
  if (sdw_read_file(path, &text, &size) != SDW_OK) return NULL;
  cJSON *j = cJSON_Parse(text);
  free(text);
  return j;
}

/* --- the fixtures ------------------------------------------------------------------- */

static void check_fixture(const cJSON *tables, const cJSON *fe) {
  const char *file = cJSON_GetObjectItem(fe, "file")->valuestring;
  const cJSON *table = cJSON_GetObjectItem(tables, cJSON_GetObjectItem(fe, "table")->valuestring);
  REQUIRE(table);
  char path[512];
  snprintf(path, sizeof path, "%s/parquet/%s", sdw_test_data_dir(), file);
  sdw_parquet_file *f = NULL;
  CHECK_OK(sdw_parquet_open(path, NULL, &f));
  if (!f) return;
  CHECK_MSG(sdw_parquet_num_rows(f) == cJSON_GetObjectItem(table, "num_rows")->valueint,
            "%s: %lld rows", file, (long long)sdw_parquet_num_rows(f));
  const cJSON *rgs = cJSON_GetObjectItem(fe, "row_groups");
  CHECK_MSG(sdw_parquet_num_row_groups(f) == cJSON_GetArraySize(rgs), "%s: %d row groups", file,
            sdw_parquet_num_row_groups(f));
  for (int g = 0; g < sdw_parquet_num_row_groups(f) && g < cJSON_GetArraySize(rgs); g++)
    CHECK_MSG(sdw_parquet_row_group_num_rows(f, g) == cJSON_GetArrayItem(rgs, g)->valueint,
              "%s: row group %d size", file, g);
  CHECK(strncmp(sdw_parquet_created_by(f), "parquet-cpp-arrow", 17) == 0);
  CHECK(sdw_parquet_metadata_get(f, "ARROW:schema") != NULL);
  CHECK(sdw_parquet_metadata_get(f, "no such key") == NULL);

  const cJSON *cols = cJSON_GetObjectItem(table, "columns");
  CHECK_MSG(sdw_parquet_num_columns(f) == cJSON_GetArraySize(cols), "%s: %d columns", file,
            sdw_parquet_num_columns(f));
  const char *codec = cJSON_GetStringValue(cJSON_GetObjectItem(fe, "codec"));
  const cJSON *page_version = cJSON_GetObjectItem(fe, "page_version");
  const cJSON *encs = cJSON_GetObjectItem(fe, "encodings");
  bool multi_page = cJSON_IsTrue(cJSON_GetObjectItem(fe, "multi_page"));
  bool dictionary = cJSON_IsTrue(cJSON_GetObjectItem(fe, "dictionary"));
  for (int c = 0; c < sdw_parquet_num_columns(f) && c < cJSON_GetArraySize(cols); c++) {
    const cJSON *want = cJSON_GetArrayItem(cols, c);
    const sdw_parquet_column_info *ci = sdw_parquet_column(f, c);
    char what[600];
    snprintf(what, sizeof what, "%s: column %s", file, ci->name);
    CHECK_MSG(strcmp(ci->name, cJSON_GetObjectItem(want, "name")->valuestring) == 0, "%s: name",
              what);
    CHECK_MSG(strcmp(sdw_parquet_type_name(ci->type),
                     cJSON_GetObjectItem(want, "physical")->valuestring) == 0,
              "%s: type %s", what, sdw_parquet_type_name(ci->type));
    CHECK_MSG(strcmp(sdw_parquet_logical_name(ci->logical),
                     cJSON_GetObjectItem(want, "logical")->valuestring) == 0,
              "%s: logical %s, want %s", what, sdw_parquet_logical_name(ci->logical),
              cJSON_GetObjectItem(want, "logical")->valuestring);
    CHECK_MSG(ci->nullable == cJSON_IsTrue(cJSON_GetObjectItem(want, "nullable")), "%s: nullable",
              what);
    CHECK(ci->max_def_level == cJSON_GetObjectItem(want, "max_def")->valueint);
    CHECK(ci->max_rep_level == cJSON_GetObjectItem(want, "max_rep")->valueint);
    if (ci->type == SDW_PARQUET_FIXED_LEN_BYTE_ARRAY)
      CHECK(ci->type_length == cJSON_GetObjectItem(want, "type_length")->valueint);
    CHECK(sdw_parquet_find_column(f, ci->name) == c);

    sdw_parquet_array a;
    if (ci->max_rep_level > 0) { /* LIST: listed, not readable */
      CHECK(!ci->supported);
      CHECK(sdw_parquet_read_column_all(f, c, &a) == SDW_ERR_UNSUPPORTED);
      CHECK(a.length == 0 && a.values == NULL && a.offsets == NULL);
      continue;
    }
    CHECK(ci->supported);
    const cJSON *values = cJSON_GetObjectItem(want, "values");
    sdw_status st = sdw_parquet_read_column_all(f, c, &a);
    CHECK_MSG(st == SDW_OK, "%s: %s", what, sdw_last_error());
    if (st != SDW_OK) continue;
    values_equal(&a, values, 0, cJSON_GetArraySize(values), what);
    sdw_parquet_array_free(&a);
    /* the same, one row group at a time */
    int64_t off = 0;
    for (int g = 0; g < sdw_parquet_num_row_groups(f); g++) {
      int64_t n = sdw_parquet_row_group_num_rows(f, g);
      CHECK_OK(sdw_parquet_read_column(f, g, c, &a));
      char w2[700];
      snprintf(w2, sizeof w2, "%s row group %d", what, g);
      values_equal(&a, values, off, n, w2);
      sdw_parquet_array_free(&a);
      off += n;
    }

    if (sdw_parquet_num_rows(f) == 0) continue;
    /* page structure against the footer's description (row group 0) */
    sdw_parquet_chunk_desc d;
    CHECK_OK(sdw_parquet_describe_chunk(f, 0, c, &d));
    if (codec) CHECK_MSG(strcmp(sdw_parquet_codec_name(d.codec), codec) == 0, "%s: codec", what);
    const cJSON *col_encs = cJSON_GetObjectItem(encs, ci->name);
    for (int e = 0; e < 32; e++)
      if (d.encodings & (1u << e))
        CHECK_MSG(has_string(col_encs, encoding_name(e)), "%s: page encoding %s not in footer",
                  what, encoding_name(e));
    bool dict_in_footer = has_string(col_encs, "RLE_DICTIONARY");
    CHECK_MSG(d.dictionary_pages == (dict_in_footer ? 1 : 0), "%s: %d dictionary pages", what,
              d.dictionary_pages);
    if (cJSON_IsString(page_version)) {
      bool v2 = strcmp(page_version->valuestring, "2.0") == 0;
      CHECK_MSG(v2 ? (d.data_pages_v1 == 0 && d.data_pages_v2 > 0)
                   : (d.data_pages_v2 == 0 && d.data_pages_v1 > 0),
                "%s: %d v1 and %d v2 pages", what, d.data_pages_v1, d.data_pages_v2);
    }
    bool big = strcmp(ci->name, "URL") == 0 || strcmp(ci->name, "TEXT") == 0;
    if (multi_page && big && !dictionary)
      CHECK_MSG(d.data_pages_v1 + d.data_pages_v2 >= 2, "%s: only %d pages", what,
                d.data_pages_v1 + d.data_pages_v2);
    if (dictionary && strcmp(ci->name, "b") != 0) CHECK_MSG(dict_in_footer, "%s: no dict", what);
    if (cJSON_IsTrue(cJSON_GetObjectItem(fe, "fallback")) && strcmp(ci->name, "URL") == 0)
      CHECK_MSG((d.encodings & (1u << SDW_PARQUET_ENC_RLE_DICTIONARY)) &&
                    (d.encodings & (1u << SDW_PARQUET_ENC_PLAIN)),
                "%s: no fallback from dictionary to PLAIN", what);
  }
  sdw_parquet_close(f);
}

SDW_TEST(parquet_pyarrow_fixtures) {
  cJSON *j = load_expected();
  REQUIRE(j);
  const cJSON *tables = cJSON_GetObjectItem(j, "tables");
  const cJSON *files = cJSON_GetObjectItem(j, "files");
  REQUIRE(tables && files);
  /* 32 matrix files + extras; the matrix must be complete */
  CHECK(cJSON_GetArraySize(files) >= 40);
  int matrix = 0;
  const cJSON *fe;
  cJSON_ArrayForEach(fe, files) {
    if (cJSON_GetObjectItem(fe, "codec_arg")) matrix++;
    check_fixture(tables, fe);
  }
  CHECK(matrix == 32);
  cJSON_Delete(j);
}

/* Column info beyond the names: logical parameters of the logical table. */
SDW_TEST(parquet_logical_types) {
  char path[512];
  snprintf(path, sizeof path, "%s/parquet/logical_plain.parquet", sdw_test_data_dir());
  sdw_parquet_file *f = NULL;
  CHECK_OK(sdw_parquet_open(path, NULL, &f));
  REQUIRE(f);
  const sdw_parquet_column_info *c;
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "i8"));
  CHECK(c->type == SDW_PARQUET_INT32 && c->logical == SDW_PARQUET_LOGICAL_INT && c->int_bits == 8 &&
        c->int_signed);
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "u32"));
  CHECK(c->logical == SDW_PARQUET_LOGICAL_INT && c->int_bits == 32 && !c->int_signed);
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "ts_ms"));
  CHECK(c->type == SDW_PARQUET_INT64 && c->logical == SDW_PARQUET_LOGICAL_TIMESTAMP &&
        c->time_unit == SDW_PARQUET_MILLIS && !c->utc_adjusted);
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "ts_us_utc"));
  CHECK(c->time_unit == SDW_PARQUET_MICROS && c->utc_adjusted);
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "dec"));
  CHECK(c->type == SDW_PARQUET_FIXED_LEN_BYTE_ARRAY && c->logical == SDW_PARQUET_LOGICAL_DECIMAL &&
        c->scale == 2 && c->precision == 10);
  c = sdw_parquet_column(f, sdw_parquet_find_column(f, "s.b"));
  CHECK(c->max_def_level == 2 && c->logical == SDW_PARQUET_LOGICAL_STRING);
  CHECK(sdw_parquet_find_column(f, "s") == -1);
  /* select by name, all row groups */
  const char *names[] = {"after_list", "date", "s.a"};
  sdw_parquet_array arr[3];
  CHECK_OK(sdw_parquet_read_columns(f, -1, names, 3, arr));
  CHECK(arr[0].length == 50 && arr[1].length == 50 && arr[2].type == SDW_PARQUET_INT32);
  for (int i = 0; i < 3; i++)
    sdw_parquet_array_free(&arr[i]);
  const char *missing[] = {"date", "nope"};
  CHECK(sdw_parquet_read_columns(f, 0, missing, 2, arr) == SDW_ERR_NOT_FOUND);
  CHECK(strstr(sdw_last_error(), "nope") != NULL);
  CHECK(arr[0].values == NULL && arr[1].values == NULL);
  sdw_parquet_close(f);
}

/* --- snappy, LZ4, Thrift ---------------------------------------------------------------- */

SDW_TEST(parquet_snappy_streams) {
  /* from format_description.txt: literal "abcd", then a 1-byte-offset copy
   * of 8 bytes at offset 4 (overlapping) */
  const uint8_t s1[] = {12, 3 << 2, 'a', 'b', 'c', 'd', 1 | (4 << 2), 4};
  uint8_t out[64];
  CHECK(sdw_snappy_decompress(s1, sizeof s1, out, 12) && memcmp(out, "abcdabcdabcd", 12) == 0);
  /* run-length via offset 1, and a 2-byte-offset copy */
  const uint8_t s2[] = {10, 0, 'z', 1 | (5 << 2), 1};
  CHECK(sdw_snappy_decompress(s2, sizeof s2, out, 10) && memcmp(out, "zzzzzzzzzz", 10) == 0);
  const uint8_t s3[] = {8, 3 << 2, 'w', 'x', 'y', 'z', 2 | (3 << 2), 4, 0};
  CHECK(sdw_snappy_decompress(s3, sizeof s3, out, 8) && memcmp(out, "wxyzwxyz", 8) == 0);
  /* a literal with a 1-byte length (61 bytes) */
  uint8_t s4[3 + 61] = {61, 60 << 2, 60};
  for (int i = 0; i < 61; i++)
    s4[3 + i] = (uint8_t)i;
  CHECK(sdw_snappy_decompress(s4, sizeof s4, out, 61) && memcmp(out, s4 + 3, 61) == 0);
  const uint8_t empty[] = {0};
  CHECK(sdw_snappy_decompress(empty, 1, out, 0));
  /* malformed */
  const uint8_t bad_off0[] = {8, 0, 'a', 1 | (3 << 2), 0};
  const uint8_t bad_far[] = {8, 0, 'a', 1 | (3 << 2), 2};
  const uint8_t bad_lit[] = {12, 11 << 2, 'a', 'b'};
  const uint8_t bad_long[] = {4, 3 << 2, 'a', 'b', 'c', 'd', 1, 1};
  const uint8_t bad_short[] = {6, 3 << 2, 'a', 'b', 'c', 'd'};
  const uint8_t bad_varint[] = {0x80, 0x80};
  const uint8_t bad_copy4[] = {8, 0, 'a', 3 | (6 << 2), 1, 0, 0};
  CHECK(!sdw_snappy_decompress(bad_off0, sizeof bad_off0, out, 8));
  CHECK(!sdw_snappy_decompress(bad_far, sizeof bad_far, out, 8));
  CHECK(!sdw_snappy_decompress(bad_lit, sizeof bad_lit, out, 12));
  CHECK(!sdw_snappy_decompress(bad_long, sizeof bad_long, out, 4));
  CHECK(!sdw_snappy_decompress(bad_short, sizeof bad_short, out, 6));
  CHECK(!sdw_snappy_decompress(bad_varint, sizeof bad_varint, out, 0));
  CHECK(!sdw_snappy_decompress(bad_copy4, sizeof bad_copy4, out, 8));
  CHECK(!sdw_snappy_decompress(s1, sizeof s1, out, 11)); /* declared length differs */

  /* our compressor's output decodes back, over sizes around the 64 KiB blocks */
  sdw_test_rng rng = sdw_test_rng_make(7);
  const size_t sizes[] = {0, 1, 4, 15, 16, 17, 100, 4096, 65535, 65536, 65537, 200003};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    for (int kind = 0; kind < 3; kind++) {
      size_t n = sizes[k];
      uint8_t *src = malloc(n + 1), *c = malloc(sdw_snappy_max_compressed_length(n));
      uint8_t *back = malloc(n + 1);
      for (size_t i = 0; i < n; i++) {
        uint64_t r = sdw_test_rng_u64(&rng);
        src[i] = kind == 0   ? (uint8_t)r                                 /* random */
                 : kind == 1 ? (uint8_t)("https://example.com/"[i % 20])  /* repetitive */
                             : (uint8_t)((r % 8 == 0) ? r >> 8 : i / 50); /* runs with noise */
      }
      size_t cn = sdw_snappy_compress(src, n, c);
      CHECK(cn <= sdw_snappy_max_compressed_length(n));
      CHECK_MSG(sdw_snappy_decompress(c, cn, back, n) && (n == 0 || memcmp(src, back, n) == 0),
                "snappy round trip of %zu bytes (kind %d)", n, kind);
      if (kind == 1 && n >= 4096) CHECK(cn < n / 4);
      /* any truncation of a valid stream fails */
      if (n > 0 && n <= 4096)
        for (size_t cut = 0; cut < cn; cut++)
          CHECK(!sdw_snappy_decompress(c, cut, back, n));
      free(src);
      free(c);
      free(back);
    }
  }
  /* garbage never reads or writes out of bounds (ASan) */
  for (int t = 0; t < 3000; t++) {
    size_t n = (size_t)sdw_test_rng_int(&rng, 0, 64), ulen = (size_t)sdw_test_rng_int(&rng, 0, 300);
    uint8_t *g = malloc(n ? n : 1), *o = malloc(ulen ? ulen : 1);
    for (size_t i = 0; i < n; i++)
      g[i] = (uint8_t)sdw_test_rng_u64(&rng);
    if (n) g[0] = (uint8_t)ulen < 128 ? (uint8_t)ulen : g[0];
    (void)sdw_snappy_decompress(g, n, o, ulen);
    (void)sdw_lz4_block_decompress(g, n, o, ulen);
    free(g);
    free(o);
  }
}

SDW_TEST(parquet_lz4_blocks) {
  /* token 0x44: 4 literals, match of 4+4 at offset 4; then 1 final literal */
  const uint8_t b1[] = {0x44, 'a', 'b', 'c', 'd', 4, 0, 0x10, 'x'};
  uint8_t out[32];
  CHECK(sdw_lz4_block_decompress(b1, sizeof b1, out, 13) && memcmp(out, "abcdabcdabcdx", 13) == 0);
  /* extended literal length: 15 + 3 = 18 literals */
  uint8_t b2[2 + 18] = {0xf0, 3};
  for (int i = 0; i < 18; i++)
    b2[2 + i] = (uint8_t)('A' + i);
  CHECK(sdw_lz4_block_decompress(b2, sizeof b2, out, 18) && memcmp(out, b2 + 2, 18) == 0);
  const uint8_t off0[] = {0x14, 'a', 0, 0, 0x10, 'x'};
  const uint8_t far[] = {0x14, 'a', 2, 0, 0x10, 'x'};
  CHECK(!sdw_lz4_block_decompress(off0, sizeof off0, out, 10));
  CHECK(!sdw_lz4_block_decompress(far, sizeof far, out, 10));
  CHECK(!sdw_lz4_block_decompress(b1, sizeof b1, out, 12)); /* output too small */
  CHECK(!sdw_lz4_block_decompress(b1, sizeof b1, out, 14)); /* too large */
  CHECK(!sdw_lz4_block_decompress(b1, 5, out, 13));
}

SDW_TEST(parquet_thrift_compact) {
  /* hand-made per thrift-compact-protocol.md: field 1 i32 -1 (delta 1, type
   * 5, zigzag 1), field 20 binary "hi" (long form: type 8, zigzag 40),
   * field 21 bool true (delta 1, type 1), field 22 list<i32> of 16 elements
   * (0xF5 then varint 16), stop */
  uint8_t msg[64] = {0x15, 0x01, 0x08, 40, 2, 'h', 'i', 0x11, 0x19, 0xf5, 16};
  size_t n = 11;
  for (int i = 0; i < 16; i++)
    msg[n++] = (uint8_t)(2 * i); /* zigzag of i */
  msg[n++] = 0;
  sdw_thrift_reader r;
  sdw_thrift_reader_init(&r, msg, n);
  sdw_thrift_struct_begin(&r);
  int16_t last = 0, id;
  uint8_t t;
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && id == 1 && t == SDW_THRIFT_I32);
  CHECK(sdw_thrift_read_i32(&r, t) == -1);
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && id == 20 && t == SDW_THRIFT_BINARY);
  const uint8_t *s;
  uint32_t sn;
  sdw_thrift_read_binary(&r, t, &s, &sn);
  CHECK(sn == 2 && memcmp(s, "hi", 2) == 0);
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && id == 21 && sdw_thrift_read_bool(&r, t));
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && id == 22);
  uint8_t et;
  uint32_t cnt;
  sdw_thrift_list_begin(&r, t, &et, &cnt);
  CHECK(et == SDW_THRIFT_I32 && cnt == 16);
  for (uint32_t i = 0; i < cnt; i++)
    CHECK(sdw_thrift_read_i32(&r, et) == (int32_t)i);
  sdw_thrift_list_end(&r);
  CHECK(!sdw_thrift_field_next(&r, &last, &id, &t) && !r.failed && r.p == r.end);
  sdw_thrift_struct_end(&r);

  /* the encoder writes the same bytes */
  sdw_thrift_writer w;
  sdw_thrift_writer_init(&w);
  sdw_thrift_write_field_i32(&w, 1, -1);
  sdw_thrift_write_field_binary(&w, 20, "hi", 2);
  sdw_thrift_write_field_bool(&w, 21, true);
  sdw_thrift_write_field_list(&w, 22, SDW_THRIFT_I32, 16);
  for (int i = 0; i < 16; i++)
    sdw_thrift_write_elem_i32(&w, i);
  sdw_thrift_write_stop(&w);
  CHECK(!w.failed && w.len == n && memcmp(w.buf, msg, n) == 0);

  /* i64 extremes, a nested struct skipped with a map, set and double inside */
  sdw_thrift_writer_reset(&w);
  sdw_thrift_write_field_i64(&w, 3, INT64_MIN);
  sdw_thrift_write_field_i64(&w, 4, INT64_MAX);
  sdw_thrift_write_stop(&w);
  sdw_thrift_reader_init(&r, w.buf, w.len);
  last = 0;
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && sdw_thrift_read_i64(&r, t) == INT64_MIN);
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t) && sdw_thrift_read_i64(&r, t) == INT64_MAX);
  const uint8_t good_nested[] = {0x1c, 0x1b, 1, 0x58, 2,    2,    'k',  'v',  0x17, 0,    0,
                                 0,    0,    0, 0,    0xf0, 0x3f, 0x1a, 0x11, 1,    0x00, 0x00};
  sdw_thrift_reader_init(&r, good_nested, sizeof good_nested);
  sdw_thrift_skip(&r, SDW_THRIFT_STRUCT);
  CHECK_MSG(!r.failed && r.p == r.end, "skip: %s", r.error);

  /* malformed: over-long varint, truncation, deep nesting, list longer than the input */
  const uint8_t longv[] = {0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  sdw_thrift_reader_init(&r, longv, sizeof longv);
  last = 0;
  CHECK(sdw_thrift_field_next(&r, &last, &id, &t));
  (void)sdw_thrift_read_i64(&r, t);
  CHECK(r.failed);
  sdw_thrift_reader_init(&r, msg, 4);
  sdw_thrift_skip(&r, SDW_THRIFT_STRUCT);
  CHECK(r.failed);
  uint8_t deep[100];
  memset(deep, 0x1c, sizeof deep);
  sdw_thrift_reader_init(&r, deep, sizeof deep);
  sdw_thrift_skip(&r, SDW_THRIFT_STRUCT);
  CHECK(r.failed && strstr(r.error, "deep"));
  const uint8_t biglist[] = {0x19, 0xf5, 0xff, 0x01, 1, 2};
  sdw_thrift_reader_init(&r, biglist, sizeof biglist);
  sdw_thrift_skip(&r, SDW_THRIFT_STRUCT);
  CHECK(r.failed);
  sdw_thrift_writer_free(&w);
}

/* --- the writer ------------------------------------------------------------------------- */

/* The interop data, also computed by tests/cli/parquet_interop.sh in
 * Python: row i of each column. */
enum { W_ID, W_I32, W_F32, W_F64, W_FLAG, W_URL, W_TEXT, W_BIN, W_NCOLS };
static const sdw_parquet_field wfields[W_NCOLS] = {
    {"id", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
    {"i32", SDW_PARQUET_INT32, SDW_PARQUET_LOGICAL_NONE, true},
    {"f32", SDW_PARQUET_FLOAT, SDW_PARQUET_LOGICAL_NONE, false},
    {"f64", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, true},
    {"flag", SDW_PARQUET_BOOLEAN, SDW_PARQUET_LOGICAL_NONE, true},
    {"URL", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"TEXT", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, true},
    {"bin", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_NONE, true},
};

static bool w_null(int c, int64_t i) {
  switch (c) {
  case W_I32: return i % 7 == 3;
  case W_F64: return i % 5 == 0;
  case W_FLAG: return i % 11 == 0;
  case W_TEXT: return i % 13 == 4;
  case W_BIN: return i % 17 == 16 || (i >= 600 && i < 700); /* a long run of nulls */
  default: return false;
  }
}
static int32_t w_i32(int64_t i) { return (int32_t)(uint32_t)((uint64_t)i * 2654435761u); }
static float w_f32(int64_t i) { return (float)i * 0.5f - 100.0f; }
static double w_f64(int64_t i) {
  return i == 1 ? -0.0 : i == 2 ? INFINITY : i == 3 ? -INFINITY : (double)i / 8.0 - 3.25;
}
static bool w_flag(int64_t i) { return i % 3 == 0; }
static size_t w_str(int c, int64_t i, char *buf) {
  if (c == W_URL) return (size_t)sprintf(buf, "https://example.com/img/%lld.jpg", (long long)i);
  if (c == W_TEXT) {
    if (i % 10 == 0) return 0;
    size_t n = 0;
    for (int k = 0; k <= i % 4; k++)
      n += (size_t)sprintf(buf + n,
                           "caption %lld \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 ",
                           (long long)i);
    return n;
  }
  size_t n = (size_t)(i % 6);
  for (size_t j = 0; j < n; j++)
    buf[j] = (char)((uint64_t)i * j & 0xff);
  return n;
}

static void put_row(sdw_parquet_writer *w, int64_t i) {
  char buf[512];
  for (int c = 0; c < W_NCOLS; c++) {
    if (w_null(c, i)) {
      sdw_parquet_writer_set_null(w, c);
      continue;
    }
    switch (c) {
    case W_ID: sdw_parquet_writer_set_i64(w, c, i); break;
    case W_I32: sdw_parquet_writer_set_i32(w, c, w_i32(i)); break;
    case W_F32: sdw_parquet_writer_set_f32(w, c, w_f32(i)); break;
    case W_F64: sdw_parquet_writer_set_f64(w, c, w_f64(i)); break;
    case W_FLAG: sdw_parquet_writer_set_bool(w, c, w_flag(i)); break;
    default: sdw_parquet_writer_set_bytes(w, c, buf, w_str(c, i, buf)); break;
    }
  }
}

/* Reads path back with our reader and checks rows [0, n) against the
 * formulas. */
static void check_written(const char *path, int64_t n, int64_t want_groups) {
  sdw_parquet_file *f = NULL;
  CHECK_OK(sdw_parquet_open(path, NULL, &f));
  if (!f) return;
  CHECK(sdw_parquet_num_rows(f) == n);
  if (want_groups >= 0)
    CHECK_MSG(sdw_parquet_num_row_groups(f) == want_groups, "%s: %d row groups", path,
              sdw_parquet_num_row_groups(f));
  REQUIRE(sdw_parquet_num_columns(f) == W_NCOLS);
  for (int c = 0; c < W_NCOLS; c++) {
    const sdw_parquet_column_info *ci = sdw_parquet_column(f, c);
    CHECK(strcmp(ci->name, wfields[c].name) == 0 && ci->type == wfields[c].type &&
          ci->nullable == wfields[c].nullable && ci->logical == wfields[c].logical);
    sdw_parquet_array a;
    CHECK_OK(sdw_parquet_read_column_all(f, c, &a));
    REQUIRE(a.length == n);
    char buf[512];
    for (int64_t i = 0; i < n; i++) {
      bool ok;
      if (w_null(c, i)) {
        ok = !sdw_parquet_array_is_valid(&a, i);
      } else {
        ok = sdw_parquet_array_is_valid(&a, i);
        switch (c) {
        case W_ID: ok = ok && ((int64_t *)a.values)[i] == i; break;
        case W_I32: ok = ok && ((int32_t *)a.values)[i] == w_i32(i); break;
        case W_F32: ok = ok && ((float *)a.values)[i] == w_f32(i); break;
        case W_F64: ok = ok && memcmp((double *)a.values + i, &(double){w_f64(i)}, 8) == 0; break;
        case W_FLAG: ok = ok && ((uint8_t *)a.values)[i] == w_flag(i); break;
        default: {
          size_t len, wl = w_str(c, i, buf);
          const uint8_t *p = sdw_parquet_array_bytes(&a, i, &len);
          ok = ok && len == wl && memcmp(p, buf, len) == 0;
        }
        }
      }
      if (!ok) {
        CHECK_MSG(false, "%s: column %s row %lld differs", path, ci->name, (long long)i);
        break;
      }
    }
    sdw_parquet_array_free(&a);
  }
  sdw_parquet_close(f);
}

/* Writes the interop files into dir; returns false on failure. */
static void write_interop_files(const char *dir) {
  char path[1024];
  const struct {
    const char *name;
    int codec;
    int64_t rows, group_rows;
    size_t page;
  } cases[] = {
      {"interop_snappy.parquet", SDW_PARQUET_SNAPPY, 1000, 400, 0},
      {"interop_none.parquet", SDW_PARQUET_UNCOMPRESSED, 1000, 1000, 0},
      {"interop_gzip.parquet", SDW_PARQUET_GZIP, 1000, 300, 0},
      {"interop_pages.parquet", SDW_PARQUET_SNAPPY, 1000, 700, 200},
      {"interop_empty.parquet", SDW_PARQUET_SNAPPY, 0, 100, 0},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    snprintf(path, sizeof path, "%s/%s", dir, cases[k].name);
    sdw_parquet_writer_options o = sdw_parquet_writer_defaults();
    o.codec = cases[k].codec;
    o.row_group_rows = cases[k].group_rows;
    if (cases[k].page) o.page_size = cases[k].page;
    sdw_parquet_writer *w = NULL;
    CHECK_OK(sdw_parquet_writer_open(path, wfields, W_NCOLS, &o, &w));
    if (!w) return;
    CHECK_OK(sdw_parquet_writer_set_metadata(w, "sdw.test", "interop"));
    for (int64_t i = 0; i < cases[k].rows; i++) {
      put_row(w, i);
      CHECK_OK(sdw_parquet_writer_end_row(w));
    }
    CHECK(sdw_parquet_writer_num_rows(w) == cases[k].rows);
    CHECK_OK(sdw_parquet_writer_close(w));
    int64_t groups = (cases[k].rows + cases[k].group_rows - 1) / cases[k].group_rows;
    check_written(path, cases[k].rows, groups);
  }

  /* the array API: one row group from arrays (with a validity bitmap that
   * has no nulls in a nullable column), then buffered rows, then arrays */
  snprintf(path, sizeof path, "%s/interop_arrays.parquet", dir);
  sdw_parquet_writer *w = NULL;
  CHECK_OK(sdw_parquet_writer_open(path, wfields, W_NCOLS, NULL, &w));
  if (!w) return;
  for (int part = 0; part < 3; part++) {
    int64_t lo = part == 0   ? 0
                 : part == 1 ? 300
                             : 450,
            hi = part == 0   ? 300
                 : part == 1 ? 450
                             : 1000;
    if (part == 1) {
      for (int64_t i = lo; i < hi; i++) {
        put_row(w, i);
        CHECK_OK(sdw_parquet_writer_end_row(w));
      }
      continue;
    }
    sdw_parquet_array cols[W_NCOLS];
    char buf[512];
    for (int c = 0; c < W_NCOLS; c++) {
      sdw_parquet_array_init(&cols[c], wfields[c].type);
      for (int64_t i = lo; i < hi; i++) {
        if (w_null(c, i)) {
          CHECK_OK(sdw_parquet_array_append_null(&cols[c]));
          continue;
        }
        int64_t v64 = i;
        int32_t v32 = w_i32(i);
        float vf = w_f32(i);
        double vd = w_f64(i);
        uint8_t vb = w_flag(i);
        switch (c) {
        case W_ID: CHECK_OK(sdw_parquet_array_append_value(&cols[c], &v64)); break;
        case W_I32: CHECK_OK(sdw_parquet_array_append_value(&cols[c], &v32)); break;
        case W_F32: CHECK_OK(sdw_parquet_array_append_value(&cols[c], &vf)); break;
        case W_F64: CHECK_OK(sdw_parquet_array_append_value(&cols[c], &vd)); break;
        case W_FLAG: CHECK_OK(sdw_parquet_array_append_value(&cols[c], &vb)); break;
        default: CHECK_OK(sdw_parquet_array_append_bytes(&cols[c], buf, w_str(c, i, buf)));
        }
      }
    }
    CHECK_OK(sdw_parquet_array_make_validity(&cols[W_URL])); /* all present */
    CHECK_OK(sdw_parquet_writer_write_arrays(w, cols, hi - lo));
    for (int c = 0; c < W_NCOLS; c++)
      sdw_parquet_array_free(&cols[c]);
  }
  CHECK_OK(sdw_parquet_writer_close(w));
  check_written(path, 1000, 3);
}

SDW_TEST(parquet_writer_roundtrip) { write_interop_files(sdw_test_tmpdir()); }

/* For tests/cli/parquet_interop.sh: writes the files where pyarrow checks
 * them (a no-op without $SDW_PARQUET_OUT). */
SDW_TEST(parquet_writer_interop) {
  const char *dir = getenv("SDW_PARQUET_OUT");
  if (!dir || !*dir) return;
  write_interop_files(dir);
}

SDW_TEST(parquet_writer_atomic) {
  char path[1024];
  snprintf(path, sizeof path, "%s/atomic.parquet", sdw_test_tmpdir());
  CHECK_OK(sdw_atomic_write(path, "old", 3));
  sdw_parquet_writer *w = NULL;
  CHECK_OK(sdw_parquet_writer_open(path, wfields, W_NCOLS, NULL, &w));
  REQUIRE(w);
  for (int64_t i = 0; i < 10; i++) {
    put_row(w, i);
    CHECK_OK(sdw_parquet_writer_end_row(w));
  }
  sdw_parquet_writer_abort(w); /* the old file stays */
  void *data;
  size_t size;
  CHECK_OK(sdw_read_file(path, &data, &size));
  CHECK(size == 3 && memcmp(data, "old", 3) == 0);
  free(data);
  /* refusals */
  sdw_parquet_field dup[2] = {wfields[0], wfields[0]};
  CHECK(sdw_parquet_writer_open(path, dup, 2, NULL, &w) == SDW_ERR_INVALID_ARGUMENT && !w);
  sdw_parquet_field bad = {"x", SDW_PARQUET_INT96, SDW_PARQUET_LOGICAL_NONE, false};
  CHECK(sdw_parquet_writer_open(path, &bad, 1, NULL, &w) == SDW_ERR_INVALID_ARGUMENT);
  sdw_parquet_writer_options o = sdw_parquet_writer_defaults();
  o.codec = SDW_PARQUET_ZSTD;
  CHECK(sdw_parquet_writer_open(path, wfields, 1, &o, &w) == SDW_ERR_INVALID_ARGUMENT);
}

/* --- malformed files ---------------------------------------------------------------------- */

enum { PT_DATA = 0, PT_DICT = 2, PT_V2 = 3 };

typedef struct craft_page {
  int type;
  int32_t num_values;
  int encoding, def_enc;
  int32_t num_nulls, def_len; /* v2 */
  const void *body;
  size_t body_len;
  int64_t usize, csize; /* -1: body_len */
} craft_page;

typedef struct craft {
  int type; /* physical */
  bool nullable;
  int codec;
  int64_t rows, chunk_values; /* chunk_values -1: rows */
  int64_t chunk_len_delta, data_offset_delta;
  int64_t file_rows_delta;
} craft;

/* "PAR1", the pages of one column "x", a footer describing them. */
static uint8_t *craft_file(const craft *cf, const craft_page *pages, int npages, size_t *size) {
  sdw_thrift_writer t;
  sdw_thrift_writer_init(&t);
  uint8_t magic[4] = {'P', 'A', 'R', '1'};
  size_t cap = 4096, len = 4;
  uint8_t *file = malloc(cap);
  memcpy(file, magic, 4);
  for (int i = 0; i < npages; i++) {
    const craft_page *p = &pages[i];
    sdw_thrift_writer_reset(&t);
    sdw_thrift_write_field_i32(&t, 1, p->type);
    sdw_thrift_write_field_i32(&t, 2, (int32_t)(p->usize >= 0 ? p->usize : (int64_t)p->body_len));
    sdw_thrift_write_field_i32(&t, 3, (int32_t)(p->csize >= 0 ? p->csize : (int64_t)p->body_len));
    if (p->type == PT_DATA) {
      sdw_thrift_write_field_struct_begin(&t, 5);
      sdw_thrift_write_field_i32(&t, 1, p->num_values);
      sdw_thrift_write_field_i32(&t, 2, p->encoding);
      sdw_thrift_write_field_i32(&t, 3, p->def_enc);
      sdw_thrift_write_field_i32(&t, 4, 3);
      sdw_thrift_write_struct_end(&t);
    } else if (p->type == PT_DICT) {
      sdw_thrift_write_field_struct_begin(&t, 7);
      sdw_thrift_write_field_i32(&t, 1, p->num_values);
      sdw_thrift_write_field_i32(&t, 2, p->encoding);
      sdw_thrift_write_struct_end(&t);
    } else {
      sdw_thrift_write_field_struct_begin(&t, 8);
      sdw_thrift_write_field_i32(&t, 1, p->num_values);
      sdw_thrift_write_field_i32(&t, 2, p->num_nulls);
      sdw_thrift_write_field_i32(&t, 3, p->num_values);
      sdw_thrift_write_field_i32(&t, 4, p->encoding);
      sdw_thrift_write_field_i32(&t, 5, p->def_len);
      sdw_thrift_write_field_i32(&t, 6, 0);
      sdw_thrift_write_struct_end(&t);
    }
    sdw_thrift_write_stop(&t);
    while (len + t.len + p->body_len + 64 > cap)
      file = realloc(file, cap *= 2);
    memcpy(file + len, t.buf, t.len);
    len += t.len;
    if (p->body_len) memcpy(file + len, p->body, p->body_len);
    len += p->body_len;
  }
  int64_t chunk_len = (int64_t)len - 4 + cf->chunk_len_delta;
  sdw_thrift_writer_reset(&t);
  sdw_thrift_write_field_i32(&t, 1, 1);
  sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_STRUCT, 2);
  sdw_thrift_write_elem_struct_begin(&t);
  sdw_thrift_write_field_binary(&t, 4, "schema", 6);
  sdw_thrift_write_field_i32(&t, 5, 1);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_elem_struct_begin(&t);
  sdw_thrift_write_field_i32(&t, 1, cf->type);
  sdw_thrift_write_field_i32(&t, 3, cf->nullable ? 1 : 0);
  sdw_thrift_write_field_binary(&t, 4, "x", 1);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_field_i64(&t, 3, cf->rows + cf->file_rows_delta);
  sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 1);
  sdw_thrift_write_elem_struct_begin(&t);
  sdw_thrift_write_field_list(&t, 1, SDW_THRIFT_STRUCT, 1);
  sdw_thrift_write_elem_struct_begin(&t);
  sdw_thrift_write_field_i64(&t, 2, 4);
  sdw_thrift_write_field_struct_begin(&t, 3);
  sdw_thrift_write_field_i32(&t, 1, cf->type);
  sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_I32, 1);
  sdw_thrift_write_elem_i32(&t, 0);
  sdw_thrift_write_field_list(&t, 3, SDW_THRIFT_BINARY, 1);
  sdw_thrift_write_elem_binary(&t, "x", 1);
  sdw_thrift_write_field_i32(&t, 4, cf->codec);
  sdw_thrift_write_field_i64(&t, 5, cf->chunk_values >= 0 ? cf->chunk_values : cf->rows);
  sdw_thrift_write_field_i64(&t, 6, chunk_len);
  sdw_thrift_write_field_i64(&t, 7, chunk_len);
  sdw_thrift_write_field_i64(&t, 9, 4 + cf->data_offset_delta);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_field_i64(&t, 2, chunk_len);
  sdw_thrift_write_field_i64(&t, 3, cf->rows);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_stop(&t);
  while (len + t.len + 8 > cap)
    file = realloc(file, cap *= 2);
  memcpy(file + len, t.buf, t.len);
  len += t.len;
  uint32_t fl = (uint32_t)t.len;
  for (int i = 0; i < 4; i++)
    file[len + (size_t)i] = (uint8_t)(fl >> (8 * i));
  memcpy(file + len + 4, magic, 4);
  len += 8;
  sdw_thrift_writer_free(&t);
  *size = len;
  return file;
}

/* Opens bytes (an exact-size heap copy, so ASan sees any over-read) and
 * reads every column; returns the first non-OK status (checking that it
 * comes with a message naming the file) or SDW_OK. */
static sdw_status try_read(const uint8_t *bytes, size_t size, size_t max_memory) {
  uint8_t *copy = malloc(size ? size : 1);
  memcpy(copy, bytes, size);
  sdw_parquet_read_options o = {.max_memory = max_memory};
  sdw_parquet_file *f = NULL;
  sdw_clear_error();
  sdw_status st = sdw_parquet_open_memory(copy, size, "case.parquet", &o, &f);
  if (st == SDW_OK) {
    for (int c = 0; c < sdw_parquet_num_columns(f) && st == SDW_OK; c++) {
      if (!sdw_parquet_column(f, c)->supported) continue;
      sdw_parquet_array a;
      st = sdw_parquet_read_column_all(f, c, &a);
      if (st == SDW_OK) {
        CHECK(array_consistent(&a, sdw_parquet_num_rows(f)));
        sdw_parquet_array_free(&a);
      } else {
        CHECK(a.values == NULL && a.offsets == NULL && a.data == NULL && a.validity == NULL);
      }
      if (st == SDW_OK && sdw_parquet_num_row_groups(f) > 0) {
        sdw_parquet_chunk_desc d;
        sdw_status ds = sdw_parquet_describe_chunk(f, 0, c, &d);
        CHECK(ds == SDW_OK || ds == SDW_ERR_FORMAT || ds == SDW_ERR_UNSUPPORTED);
        sdw_clear_error();
      }
    }
    sdw_parquet_close(f);
  } else {
    CHECK(f == NULL);
  }
  if (st != SDW_OK)
    CHECK_MSG(strstr(sdw_last_error(), "case.parquet") != NULL, "message without the file: %s",
              sdw_last_error());
  free(copy);
  return st;
}

static void expect_fail(const craft *cf, const craft_page *pages, int npages, sdw_status want,
                        const char *needle, const char *what) {
  size_t size;
  uint8_t *file = craft_file(cf, pages, npages, &size);
  sdw_status st = try_read(file, size, 1 << 26);
  CHECK_MSG(st == want, "%s: got %s (%s), want %s", what, sdw_status_name(st), sdw_last_error(),
            sdw_status_name(want));
  if (needle && st == want)
    CHECK_MSG(strstr(sdw_last_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what,
              sdw_last_error(), needle);
  free(file);
}

SDW_TEST(parquet_malformed_pages) {
  const int32_t three[3] = {7, -8, 9};
  craft cf = {.type = SDW_PARQUET_INT32, .rows = 3, .chunk_values = -1};
  craft_page plain = {.type = PT_DATA,
                      .num_values = 3,
                      .encoding = 0,
                      .def_enc = 3,
                      .body = three,
                      .body_len = 12,
                      .usize = -1,
                      .csize = -1};
  /* the baseline reads (the crafting is right) */
  {
    size_t size;
    uint8_t *file = craft_file(&cf, &plain, 1, &size);
    sdw_parquet_file *f = NULL;
    CHECK_OK(sdw_parquet_open_memory(file, size, "case.parquet", NULL, &f));
    if (f) {
      sdw_parquet_array a;
      CHECK_OK(sdw_parquet_read_column(f, 0, 0, &a));
      CHECK(a.length == 3 && memcmp(a.values, three, 12) == 0);
      sdw_parquet_array_free(&a);
      sdw_parquet_close(f);
    }
    free(file);
  }
  /* PLAIN values truncated */
  craft_page p = plain;
  p.body_len = 10;
  expect_fail(&cf, &p, 1, SDW_ERR_FORMAT, "too few", "short PLAIN page");
  /* compressed page size past the chunk */
  p = plain;
  p.csize = 1000;
  expect_fail(&cf, &p, 1, SDW_ERR_FORMAT, "past the end of the column chunk", "page past chunk");
  /* chunk longer than the file, chunk offset outside the file */
  craft c2 = cf;
  c2.chunk_len_delta = 100000;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "outside the file", "chunk past file");
  c2 = cf;
  c2.data_offset_delta = -4;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "outside the file", "chunk at 0");
  /* the chunk ends before all rows */
  c2 = cf;
  c2.rows = 5;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "ends after 3 of 5", "missing rows");
  /* a page with more values than rows */
  c2 = cf;
  c2.rows = 2;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "declares 3 values", "page too long");
  /* chunk value count differs from the rows, footer rows differ from the groups */
  c2 = cf;
  c2.chunk_values = 4;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "holds 4 values", "chunk count");
  c2 = cf;
  c2.file_rows_delta = 1;
  expect_fail(&c2, &plain, 1, SDW_ERR_FORMAT, "row groups hold", "file rows");
  /* unknown and unsupported encodings */
  p = plain;
  p.encoding = 42;
  expect_fail(&cf, &p, 1, SDW_ERR_FORMAT, "unknown value encoding", "encoding 42");
  p.encoding = 4;
  expect_fail(&cf, &p, 1, SDW_ERR_UNSUPPORTED, "not supported", "BIT_PACKED values");

  /* dictionary index out of range: dictionary of 2, index 3 */
  craft_page dict = {.type = PT_DICT,
                     .num_values = 2,
                     .encoding = 0,
                     .body = three,
                     .body_len = 8,
                     .usize = -1,
                     .csize = -1};
  const uint8_t idx_bad[] = {2, 3 << 1, 3}; /* bit width 2, RLE run of 3 x index 3 */
  craft_page dpage = {.type = PT_DATA,
                      .num_values = 3,
                      .encoding = 8,
                      .def_enc = 3,
                      .body = idx_bad,
                      .body_len = 3,
                      .usize = -1,
                      .csize = -1};
  craft_page pages[3] = {dict, dpage};
  expect_fail(&cf, pages, 2, SDW_ERR_FORMAT, "out of range", "dictionary index");
  const uint8_t idx_ok[] = {1, 3 << 1, 1};
  pages[1].body = idx_ok;
  {
    size_t size;
    uint8_t *file = craft_file(&cf, pages, 2, &size);
    CHECK(try_read(file, size, 1 << 26) == SDW_OK);
    free(file);
  }
  expect_fail(&cf, &pages[1], 1, SDW_ERR_FORMAT, "without a dictionary", "no dictionary");
  const uint8_t idx_bw[] = {33, 2, 0};
  pages[1].body = idx_bw;
  expect_fail(&cf, pages, 2, SDW_ERR_FORMAT, "bit width 33", "index bit width");
  const uint8_t idx_short[] = {1, 2 << 1, 0}; /* 2 indices for 3 values */
  pages[1].body = idx_short;
  expect_fail(&cf, pages, 2, SDW_ERR_FORMAT, "end early", "short indices");
  const uint8_t idx_packed[] = {8, (1 << 1) | 1, 0, 1}; /* a group of 8 bytes, 2 there */
  pages[1].body = idx_packed;
  pages[1].body_len = sizeof idx_packed;
  expect_fail(&cf, pages, 2, SDW_ERR_FORMAT, "end early", "bit-packed run past the page");
  pages[1].body_len = 3;
  const uint8_t idx_one[] = {1, 1 << 1, 1}, idx_two[] = {1, 2 << 1, 0};
  craft_page four[4] = {dict, dpage, dict, dpage};
  four[1].num_values = 1, four[1].body = idx_one;
  four[3].num_values = 2, four[3].body = idx_two;
  expect_fail(&cf, four, 4, SDW_ERR_FORMAT, "follows data pages", "dictionary after data");
  pages[1] = dict;
  pages[2] = dpage;
  pages[2].body = idx_ok;
  expect_fail(&cf, pages, 3, SDW_ERR_FORMAT, "two dictionary pages", "two dictionaries");

  /* definition levels: bad RLE value, too few levels, length past the page */
  craft cn = {.type = SDW_PARQUET_INT32, .nullable = true, .rows = 3, .chunk_values = -1};
  uint8_t lv[32] = {2, 0, 0, 0, 3 << 1, 2}; /* length 2: RLE run of 3 x level 2 (> max 1) */
  memcpy(lv + 6, three, 12);
  craft_page lp = {.type = PT_DATA,
                   .num_values = 3,
                   .encoding = 0,
                   .def_enc = 3,
                   .body = lv,
                   .body_len = 18,
                   .usize = -1,
                   .csize = -1};
  expect_fail(&cn, &lp, 1, SDW_ERR_FORMAT, "definition levels", "level value 2");
  lv[4] = 1 << 1, lv[5] = 1; /* a run of 1 for 3 values */
  expect_fail(&cn, &lp, 1, SDW_ERR_FORMAT, "end early", "short levels");
  lv[0] = 200;
  expect_fail(&cn, &lp, 1, SDW_ERR_FORMAT, "past the end of the page", "levels length");
  lv[0] = 2, lv[4] = 3 << 1, lv[5] = 1;
  {
    size_t size;
    uint8_t *file = craft_file(&cn, &lp, 1, &size);
    CHECK(try_read(file, size, 1 << 26) == SDW_OK);
    free(file);
  }
  lp.def_enc = 4;
  expect_fail(&cn, &lp, 1, SDW_ERR_UNSUPPORTED, "BIT_PACKED", "BIT_PACKED levels");
  /* v2: levels longer than the page */
  craft_page v2 = {.type = PT_V2,
                   .num_values = 3,
                   .encoding = 0,
                   .def_len = 40,
                   .body = lv,
                   .body_len = 18,
                   .usize = -1,
                   .csize = -1};
  expect_fail(&cn, &v2, 1, SDW_ERR_FORMAT, "levels larger than the page", "v2 levels");

  /* snappy: offset before the start, literal past the input, wrong size,
   * and an absurd declared size (refused before allocating) */
  craft cs = cf;
  cs.codec = SDW_PARQUET_SNAPPY;
  const uint8_t sn_far[] = {12, 1 | (7 << 2), 5};
  craft_page sp = {.type = PT_DATA,
                   .num_values = 3,
                   .encoding = 0,
                   .def_enc = 3,
                   .body = sn_far,
                   .body_len = 3,
                   .usize = 12,
                   .csize = -1};
  expect_fail(&cs, &sp, 1, SDW_ERR_FORMAT, "SNAPPY", "snappy offset");
  const uint8_t sn_lit[] = {12, 11 << 2, 1, 2, 3};
  sp.body = sn_lit, sp.body_len = 5;
  expect_fail(&cs, &sp, 1, SDW_ERR_FORMAT, "SNAPPY", "snappy literal");
  uint8_t sn_ok[14] = {12, 11 << 2};
  memcpy(sn_ok + 2, three, 12);
  sp.body = sn_ok, sp.body_len = 14;
  {
    size_t size;
    uint8_t *file = craft_file(&cs, &sp, 1, &size);
    CHECK(try_read(file, size, 1 << 26) == SDW_OK);
    free(file);
  }
  sp.usize = 16;
  expect_fail(&cs, &sp, 1, SDW_ERR_FORMAT, "SNAPPY", "snappy size");
  sp.usize = 0x7fffffff;
  expect_fail(&cs, &sp, 1, SDW_ERR_FORMAT, "more than", "snappy huge size");
  /* gzip and zstd garbage; LZO unsupported; unknown codec */
  const uint8_t junk[] = {0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  craft cz = cf;
  craft_page zp = {.type = PT_DATA,
                   .num_values = 3,
                   .encoding = 0,
                   .def_enc = 3,
                   .body = junk,
                   .body_len = sizeof junk,
                   .usize = 12,
                   .csize = -1};
  cz.codec = SDW_PARQUET_GZIP;
  expect_fail(&cz, &zp, 1, SDW_ERR_FORMAT, "GZIP", "gzip junk");
  cz.codec = SDW_PARQUET_ZSTD;
  expect_fail(&cz, &zp, 1, SDW_ERR_FORMAT, "ZSTD", "zstd junk");
  cz.codec = SDW_PARQUET_LZ4_RAW;
  expect_fail(&cz, &zp, 1, SDW_ERR_FORMAT, "LZ4_RAW", "lz4 junk");
  cz.codec = SDW_PARQUET_LZO;
  expect_fail(&cz, &zp, 1, SDW_ERR_UNSUPPORTED, "LZO", "lzo");
  cz.codec = 99;
  expect_fail(&cz, &zp, 1, SDW_ERR_FORMAT, "unknown compression codec", "codec 99");
  /* uncompressed page whose sizes disagree */
  p = plain;
  p.usize = 13;
  expect_fail(&cf, &p, 1, SDW_ERR_FORMAT, "declares", "uncompressed size");

  /* strings: a length past the page */
  craft cb = {.type = SDW_PARQUET_BYTE_ARRAY, .rows = 1, .chunk_values = -1};
  const uint8_t str_bad[] = {100, 0, 0, 0, 'a', 'b', 'c'};
  craft_page bp = {.type = PT_DATA,
                   .num_values = 1,
                   .encoding = 0,
                   .def_enc = 3,
                   .body = str_bad,
                   .body_len = 7,
                   .usize = -1,
                   .csize = -1};
  expect_fail(&cb, &bp, 1, SDW_ERR_FORMAT, "past the end of its page", "string length");
  /* three strings declared, two there that fill the page: the copy of the
   * first two must stay inside what was reserved (found by the fuzzer) */
  uint8_t two[28] = {10, 0, 0, 0, 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
                     10, 0, 0, 0, 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b'};
  craft c3 = cb;
  c3.rows = 3;
  craft_page tp = {.type = PT_DATA,
                   .num_values = 3,
                   .encoding = 0,
                   .def_enc = 3,
                   .body = two,
                   .body_len = sizeof two,
                   .usize = -1,
                   .csize = -1};
  expect_fail(&c3, &tp, 1, SDW_ERR_FORMAT, "truncated", "strings missing at the end");
  /* DELTA_BINARY_PACKED: bad block size, wrong count */
  const uint8_t dbp_bad[] = {0, 4, 3, 0};
  craft_page dp = {.type = PT_DATA,
                   .num_values = 3,
                   .encoding = 5,
                   .def_enc = 3,
                   .body = dbp_bad,
                   .body_len = 4,
                   .usize = -1,
                   .csize = -1};
  expect_fail(&cf, &dp, 1, SDW_ERR_FORMAT, "block size", "delta block");
  const uint8_t dbp_count[] = {0x80, 0x01, 4, 5, 0};
  dp.body = dbp_count, dp.body_len = 5;
  expect_fail(&cf, &dp, 1, SDW_ERR_FORMAT, "holds 5 values", "delta count");
  /* a repeated dictionary string that expands past the memory limit: an
   * honest OUT_OF_MEMORY naming the limit, not a giant allocation */
  craft cbig = {.type = SDW_PARQUET_BYTE_ARRAY, .rows = 1 << 20, .chunk_values = -1};
  uint8_t bigdict[4 + 4096] = {0, 16, 0, 0};            /* one 4096-byte string */
  const uint8_t run[] = {1, 0x80, 0x80, 0x80, 0x01, 0}; /* RLE run of 2^20 x index 0, bw 1 */
  craft_page bpages[2] = {{.type = PT_DICT,
                           .num_values = 1,
                           .body = bigdict,
                           .body_len = sizeof bigdict,
                           .usize = -1,
                           .csize = -1},
                          {.type = PT_DATA,
                           .num_values = 1 << 20,
                           .encoding = 8,
                           .def_enc = 3,
                           .body = run,
                           .body_len = sizeof run,
                           .usize = -1,
                           .csize = -1}};
  expect_fail(&cbig, bpages, 2, SDW_ERR_OUT_OF_MEMORY, "memory limit", "expansion");
}

/* A footer made of the given FileMetaData bytes after a 4-byte body. */
static void expect_footer_fail(const sdw_thrift_writer *t, sdw_status want, const char *needle,
                               const char *what) {
  size_t size = 4 + t->len + 8;
  uint8_t *file = malloc(size);
  memcpy(file, "PAR1", 4);
  memcpy(file + 4, t->buf, t->len);
  for (int i = 0; i < 4; i++)
    file[4 + t->len + (size_t)i] = (uint8_t)(t->len >> (8 * i));
  memcpy(file + size - 4, "PAR1", 4);
  sdw_status st = try_read(file, size, 1 << 26);
  CHECK_MSG(st == want, "%s: got %s (%s)", what, sdw_status_name(st), sdw_last_error());
  if (needle && st == want)
    CHECK_MSG(strstr(sdw_last_error(), needle), "%s: '%s' lacks '%s'", what, sdw_last_error(),
              needle);
  free(file);
}

static void schema_elem(sdw_thrift_writer *t, const char *name, int type, int children, int rep) {
  sdw_thrift_write_elem_struct_begin(t);
  if (type >= 0) sdw_thrift_write_field_i32(t, 1, type);
  if (rep >= 0) sdw_thrift_write_field_i32(t, 3, rep);
  sdw_thrift_write_field_binary(t, 4, name, strlen(name));
  if (children >= 0) sdw_thrift_write_field_i32(t, 5, children);
  sdw_thrift_write_struct_end(t);
}

SDW_TEST(parquet_malformed_footers) {
  sdw_thrift_writer t;
  sdw_thrift_writer_init(&t);
  /* no schema */
  sdw_thrift_write_field_i32(&t, 1, 1);
  sdw_thrift_write_field_i64(&t, 3, 0);
  sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 0);
  sdw_thrift_write_stop(&t);
  expect_footer_fail(&t, SDW_ERR_FORMAT, "lacks its schema", "no schema");
  /* the root declares more children than there are */
  sdw_thrift_writer_reset(&t);
  sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_STRUCT, 2);
  schema_elem(&t, "schema", -1, 5, -1);
  schema_elem(&t, "x", 1, -1, 0);
  sdw_thrift_write_field_i64(&t, 3, 0);
  sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 0);
  sdw_thrift_write_stop(&t);
  expect_footer_fail(&t, SDW_ERR_FORMAT, "children", "root children");
  /* groups nested 100 deep */
  sdw_thrift_writer_reset(&t);
  sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_STRUCT, 102);
  schema_elem(&t, "schema", -1, 1, -1);
  for (int i = 0; i < 100; i++)
    schema_elem(&t, "g", -1, 1, 1);
  schema_elem(&t, "x", 1, -1, 1);
  sdw_thrift_write_field_i64(&t, 3, 0);
  sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 0);
  sdw_thrift_write_stop(&t);
  expect_footer_fail(&t, SDW_ERR_FORMAT, "nested more than", "deep schema");
  /* an element with neither type nor children; a bad type; a bad repetition */
  for (int k = 0; k < 3; k++) {
    sdw_thrift_writer_reset(&t);
    sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_STRUCT, 2);
    schema_elem(&t, "schema", -1, 1, -1);
    schema_elem(&t, "x", k == 0 ? -1 : k == 1 ? 9 : 1, -1, k == 2 ? 7 : 0);
    sdw_thrift_write_field_i64(&t, 3, 0);
    sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 0);
    sdw_thrift_write_stop(&t);
    expect_footer_fail(&t, SDW_ERR_FORMAT,
                       k == 0   ? "neither"
                       : k == 1 ? "physical type"
                                : "repetition",
                       "schema element");
  }
  /* a row group with the wrong number of chunks */
  sdw_thrift_writer_reset(&t);
  sdw_thrift_write_field_list(&t, 2, SDW_THRIFT_STRUCT, 2);
  schema_elem(&t, "schema", -1, 1, -1);
  schema_elem(&t, "x", 1, -1, 0);
  sdw_thrift_write_field_i64(&t, 3, 0);
  sdw_thrift_write_field_list(&t, 4, SDW_THRIFT_STRUCT, 1);
  sdw_thrift_write_elem_struct_begin(&t);
  sdw_thrift_write_field_list(&t, 1, SDW_THRIFT_STRUCT, 0);
  sdw_thrift_write_field_i64(&t, 3, 0);
  sdw_thrift_write_struct_end(&t);
  sdw_thrift_write_stop(&t);
  expect_footer_fail(&t, SDW_ERR_FORMAT, "0 column chunks", "chunk count");
  /* a list longer than the footer, garbage, deep thrift nesting, no stop */
  const uint8_t biglist[] = {0x29, 0xfc, 0xff, 0xff, 0xff, 0x07, 0};
  const uint8_t garbage[] = {0xff, 0xfe, 0x13, 0x37};
  uint8_t deep[200];
  memset(deep, 0x1c, sizeof deep);
  const uint8_t nostop[] = {0x15, 0x02};
  const struct {
    const uint8_t *b;
    size_t n;
  } raw[] = {{biglist, sizeof biglist},
             {garbage, sizeof garbage},
             {deep, sizeof deep},
             {nostop, sizeof nostop}};
  for (size_t k = 0; k < sizeof raw / sizeof *raw; k++) {
    sdw_thrift_writer fake = {.buf = (uint8_t *)raw[k].b, .len = raw[k].n};
    expect_footer_fail(&fake, SDW_ERR_FORMAT, "corrupt", "raw footer");
  }
  sdw_thrift_writer_free(&t);

  /* magic and footer length */
  uint8_t small[16] = {'P', 'A', 'R', '1', 0, 0, 0, 0, 4, 0, 0, 0, 'P', 'A', 'R', '1'};
  CHECK(try_read(small, 16, 1 << 20) == SDW_ERR_FORMAT);
  small[8] = 200; /* footer length past the file */
  CHECK(try_read(small, 16, 1 << 20) == SDW_ERR_FORMAT &&
        strstr(sdw_last_error(), "footer of 200"));
  small[0] = 'X';
  CHECK(try_read(small, 16, 1 << 20) == SDW_ERR_FORMAT && strstr(sdw_last_error(), "magic"));
  memcpy(small + 12, "PARE", 4);
  CHECK(try_read(small, 16, 1 << 20) == SDW_ERR_UNSUPPORTED);
  CHECK(try_read(small, 11, 1 << 20) == SDW_ERR_FORMAT && strstr(sdw_last_error(), "too short"));
  CHECK(try_read(small, 0, 1 << 20) == SDW_ERR_FORMAT);
  sdw_parquet_file *f = NULL;
  CHECK(sdw_parquet_open("/nonexistent/x.parquet", NULL, &f) == SDW_ERR_NOT_FOUND && !f);
}

static uint8_t *read_fixture(const char *name, size_t *size) {
  char path[512];
  snprintf(path, sizeof path, "%s/parquet/%s", sdw_test_data_dir(), name);
  void *data = NULL;
  if (sdw_read_file(path, &data, size) != SDW_OK) return NULL;
  return data;
}

/* Truncations, chopped data regions and byte mutations of real files: the
 * result is either a consistent read or an error with a message, never a
 * crash or an out-of-bounds access (ASan/UBSan builds). */
SDW_TEST(parquet_truncations_and_mutations) {
  const char *names[] = {"laion_snappy_dict_v1_nullable.parquet",
                         "laion_none_plain_v2_nullable.parquet", "delta_zstd_v2_nullable.parquet",
                         "logical_dict.parquet"};
  for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
    size_t size;
    uint8_t *orig = read_fixture(names[k], &size);
    REQUIRE(orig);
    CHECK(try_read(orig, size, 1 << 26) == SDW_OK);
    /* prefixes of up to 400 lengths */
    size_t step = size / 400 + 1;
    for (size_t n = 0; n < size; n += step)
      CHECK_MSG(try_read(orig, n, 1 << 26) == SDW_ERR_FORMAT, "%s cut at %zu", names[k], n);
    /* data region cut short, footer kept: offsets now point past the end or
     * into the footer */
    uint32_t flen = (uint32_t)orig[size - 8] | (uint32_t)orig[size - 7] << 8 |
                    (uint32_t)orig[size - 6] << 16 | (uint32_t)orig[size - 5] << 24;
    size_t tail = flen + 8;
    uint8_t *cut = malloc(size);
    for (size_t keep = 4; keep + tail < size; keep += (size - tail) / 40 + 1) {
      memcpy(cut, orig, keep);
      memcpy(cut + keep, orig + size - tail, tail);
      sdw_status st = try_read(cut, keep + tail, 1 << 26);
      CHECK_MSG(st == SDW_ERR_FORMAT, "%s: data cut to %zu: %s", names[k], keep,
                sdw_status_name(st));
    }
    free(cut);
    /* byte mutations everywhere */
    uint8_t *mut = malloc(size);
    const uint8_t xors[] = {0xff, 0x01, 0x80};
    size_t mstep = size / 250 + 1;
    for (size_t pos = 0; pos < size; pos += mstep) {
      for (size_t x = 0; x < sizeof xors; x++) {
        memcpy(mut, orig, size);
        mut[pos] ^= xors[x];
        sdw_status st = try_read(mut, size, 1 << 26);
        CHECK_MSG(st == SDW_OK || st == SDW_ERR_FORMAT || st == SDW_ERR_UNSUPPORTED ||
                      st == SDW_ERR_OUT_OF_MEMORY,
                  "%s: byte %zu ^ %02x: %s", names[k], pos, xors[x], sdw_status_name(st));
      }
    }
    free(mut);
    free(orig);
  }
}
