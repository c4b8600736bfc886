/* Parquet types and the in-memory column array shared by the reader
 * (pipeline/parquet_reader.h, which fills arrays) and the writer
 * (pipeline/parquet_writer.h, which writes them).
 *
 * An array holds `length` values of one physical type:
 *  - BOOLEAN: values is uint8_t[length], 0 or 1;
 *  - INT32 / INT64 / FLOAT / DOUBLE: values is int32_t/int64_t/float/double
 *    [length], little-endian host values (x86 and ARM: no conversion);
 *  - BYTE_ARRAY (strings and binary), FIXED_LEN_BYTE_ARRAY and INT96:
 *    value i is the bytes data[offsets[i] .. offsets[i+1]) (offsets has
 *    length + 1 entries, offsets[0] = 0, non-decreasing); values is NULL.
 *    Strings are not NUL-terminated and may contain any byte.
 * validity is a bitmap of ceil(length / 8) bytes, bit i (LSB first within a
 * byte) set when value i is present; NULL means every value is present
 * (null_count == 0). A null slot holds 0 (or zero bytes) in values/offsets.
 *
 * Every pointer is owned by the array and released by
 * sdw_parquet_array_free; the cap_* fields belong to the builder functions
 * below (the reader and writer use them; callers may too, to assemble an
 * array for the writer). */
#ifndef SDW_PIPELINE_PARQUET_ARRAY_H
#define SDW_PIPELINE_PARQUET_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* parquet.thrift Type (physical types). */
typedef enum sdw_parquet_type {
  SDW_PARQUET_BOOLEAN = 0,
  SDW_PARQUET_INT32 = 1,
  SDW_PARQUET_INT64 = 2,
  SDW_PARQUET_INT96 = 3,
  SDW_PARQUET_FLOAT = 4,
  SDW_PARQUET_DOUBLE = 5,
  SDW_PARQUET_BYTE_ARRAY = 6,
  SDW_PARQUET_FIXED_LEN_BYTE_ARRAY = 7,
} sdw_parquet_type;

/* The logical meaning of a column (parquet's LogicalType, or its older
 * ConvertedType when only that is present), simplified. */
typedef enum sdw_parquet_logical {
  SDW_PARQUET_LOGICAL_NONE = 0,
  SDW_PARQUET_LOGICAL_STRING,    /* UTF-8 BYTE_ARRAY */
  SDW_PARQUET_LOGICAL_ENUM,      /* BYTE_ARRAY */
  SDW_PARQUET_LOGICAL_JSON,      /* BYTE_ARRAY */
  SDW_PARQUET_LOGICAL_BSON,      /* BYTE_ARRAY */
  SDW_PARQUET_LOGICAL_UUID,      /* FIXED_LEN_BYTE_ARRAY(16) */
  SDW_PARQUET_LOGICAL_INT,       /* int_bits (8/16/32/64) and int_signed */
  SDW_PARQUET_LOGICAL_DECIMAL,   /* scale, precision */
  SDW_PARQUET_LOGICAL_DATE,      /* INT32 days since 1970-01-01 */
  SDW_PARQUET_LOGICAL_TIME,      /* time_unit */
  SDW_PARQUET_LOGICAL_TIMESTAMP, /* time_unit, utc_adjusted */
  SDW_PARQUET_LOGICAL_FLOAT16,   /* FIXED_LEN_BYTE_ARRAY(2) */
  SDW_PARQUET_LOGICAL_INTERVAL,
  SDW_PARQUET_LOGICAL_NULL, /* every value is null */
  SDW_PARQUET_LOGICAL_OTHER,
} sdw_parquet_logical;

typedef enum sdw_parquet_time_unit {
  SDW_PARQUET_MILLIS = 0,
  SDW_PARQUET_MICROS,
  SDW_PARQUET_NANOS,
} sdw_parquet_time_unit;

/* "BOOLEAN", "INT32", ... (static strings). */
const char *sdw_parquet_type_name(int type);
const char *sdw_parquet_logical_name(sdw_parquet_logical logical);
/* Bytes per value in `values` for BOOLEAN/INT32/INT64/FLOAT/DOUBLE, 0 for
 * the byte-array types. */
size_t sdw_parquet_value_size(sdw_parquet_type type);

typedef struct sdw_parquet_array {
  sdw_parquet_type type;
  int64_t length;
  int64_t null_count;
  uint8_t *validity; /* NULL = all present */
  void *values;      /* fixed-width types */
  int64_t *offsets;  /* byte-array types: length + 1 entries */
  uint8_t *data;     /* byte-array types: data_size bytes */
  size_t data_size;
  size_t cap_length; /* capacity of values/offsets/validity in values */
  size_t cap_data;   /* capacity of data in bytes */
} sdw_parquet_array;

/* An empty array of the given type (no allocation). */
void sdw_parquet_array_init(sdw_parquet_array *a, sdw_parquet_type type);
/* Frees everything and leaves an empty array of the same type. */
void sdw_parquet_array_free(sdw_parquet_array *a);

static inline bool sdw_parquet_array_is_valid(const sdw_parquet_array *a, int64_t i) {
  return !a->validity || ((a->validity[i >> 3] >> (i & 7)) & 1);
}
/* Value i of a byte-array type: its bytes and length. */
static inline const uint8_t *sdw_parquet_array_bytes(const sdw_parquet_array *a, int64_t i,
                                                     size_t *len) {
  *len = (size_t)(a->offsets[i + 1] - a->offsets[i]);
  return a->data + a->offsets[i];
}

/* --- building ------------------------------------------------------------------ */
/* These grow the array geometrically; SDW_ERR_OUT_OF_MEMORY when malloc
 * fails (the array stays valid). */

/* Room for `extra` more values and `extra_data` more bytes of data. */
sdw_status sdw_parquet_array_reserve(sdw_parquet_array *a, size_t extra, size_t extra_data);
sdw_status sdw_parquet_array_append_null(sdw_parquet_array *a);
/* value points to one value of the array's fixed-width type. */
sdw_status sdw_parquet_array_append_value(sdw_parquet_array *a, const void *value);
sdw_status sdw_parquet_array_append_bytes(sdw_parquet_array *a, const void *bytes, size_t len);
/* Materialises the validity bitmap (all present so far) so that nulls can
 * be recorded; a no-op when it exists. */
sdw_status sdw_parquet_array_make_validity(sdw_parquet_array *a);

#ifdef __cplusplus
}
#endif
#endif
