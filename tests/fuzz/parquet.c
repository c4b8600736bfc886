/* libFuzzer target for the parquet reader (make fuzz): any bytes must be
 * refused at open with a message (SDW_ERR_FORMAT, or UNSUPPORTED for an
 * encrypted footer), or open and then give, for every column of every row
 * group, either a consistent array (length = the row group's rows,
 * offsets non-decreasing inside the data, null count = cleared validity
 * bits) or FORMAT / UNSUPPORTED / OUT_OF_MEMORY with a message. The memory
 * limit is 64 MiB so hostile counts cannot exhaust the fuzzer. Built with
 * ASan + UBSan. Seeds: tests/fuzz/seeds/parquet/ (pyarrow files of every
 * codec and page version, DELTA_* encodings, logical types; written by
 * tools/gen_parquet_fixtures.py).
 *
 * Build: the Makefile's fuzz rule, which must link pipeline/parquet_*.c and
 * pipeline/thrift_compact.c besides the sources of core/base/ (libzstd is
 * loaded with dlopen, so no -lzstd is needed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/parquet_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_array(const sdw_parquet_array *a, int64_t rows) {
  if (a->length != rows) abort();
  int64_t nulls = 0;
  for (int64_t i = 0; i < a->length; i++)
    nulls += !sdw_parquet_array_is_valid(a, i);
  if (nulls != a->null_count) abort();
  if (a->offsets) {
    if (a->offsets[0] != 0) abort();
    for (int64_t i = 0; i < a->length; i++)
      if (a->offsets[i + 1] < a->offsets[i]) abort();
    if ((size_t)a->offsets[a->length] != a->data_size) abort();
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < a->data_size; i++)
      sink ^= a->data[i];
    (void)sink;
  } else if (a->length > 0) {
    size_t vs = sdw_parquet_value_size(a->type);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < (size_t)a->length * vs; i++)
      sink ^= ((const uint8_t *)a->values)[i];
    (void)sink;
  }
}

static bool acceptable(sdw_status s) {
  return (s == SDW_ERR_FORMAT || s == SDW_ERR_UNSUPPORTED || s == SDW_ERR_OUT_OF_MEMORY) &&
         sdw_last_error()[0] != '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_parquet_read_options opts = {.max_memory = 64u << 20};
  sdw_parquet_file *f = NULL;
  sdw_status s = sdw_parquet_open_memory(data, size, "fuzz.parquet", &opts, &f);
  if (s != SDW_OK) {
    if (f != NULL || !acceptable(s) || s == SDW_ERR_OUT_OF_MEMORY) abort();
    return 0;
  }
  int64_t total = 0;
  for (int g = 0; g < sdw_parquet_num_row_groups(f); g++)
    total += sdw_parquet_row_group_num_rows(f, g);
  if (total != sdw_parquet_num_rows(f)) abort();
  for (int c = 0; c < sdw_parquet_num_columns(f); c++) {
    const sdw_parquet_column_info *ci = sdw_parquet_column(f, c);
    if (sdw_parquet_find_column(f, ci->name) < 0) abort();
    for (int g = 0; g < sdw_parquet_num_row_groups(f) && g < 8; g++) {
      sdw_parquet_array a;
      s = sdw_parquet_read_column(f, g, c, &a);
      if (s == SDW_OK) {
        if (!ci->supported) abort();
        check_array(&a, sdw_parquet_row_group_num_rows(f, g));
        sdw_parquet_array_free(&a);
      } else {
        if (!acceptable(s) || a.values || a.offsets || a.data || a.validity) abort();
      }
      sdw_parquet_chunk_desc d;
      s = sdw_parquet_describe_chunk(f, g, c, &d);
      if (s != SDW_OK && !acceptable(s)) abort();
    }
  }
  (void)sdw_parquet_metadata_get(f, "ARROW:schema");
  sdw_parquet_close(f);
  return 0;
}
