/* Parquet column arrays: see parquet_array.h. */
#include "pipeline/parquet_array.h"

#include <stdlib.h>
#include <string.h>

const char *sdw_parquet_type_name(int type) {
  switch (type) {
  case SDW_PARQUET_BOOLEAN: return "BOOLEAN";
  case SDW_PARQUET_INT32: return "INT32";
  case SDW_PARQUET_INT64: return "INT64";
  case SDW_PARQUET_INT96: return "INT96";
  case SDW_PARQUET_FLOAT: return "FLOAT";
  case SDW_PARQUET_DOUBLE: return "DOUBLE";
  case SDW_PARQUET_BYTE_ARRAY: return "BYTE_ARRAY";
  case SDW_PARQUET_FIXED_LEN_BYTE_ARRAY: return "FIXED_LEN_BYTE_ARRAY";
  default: return "unknown type";
  }
}

const char *sdw_parquet_logical_name(sdw_parquet_logical logical) {
  switch (logical) {
  case SDW_PARQUET_LOGICAL_NONE: return "none";
  case SDW_PARQUET_LOGICAL_STRING: return "STRING";
  case SDW_PARQUET_LOGICAL_ENUM: return "ENUM";
  case SDW_PARQUET_LOGICAL_JSON: return "JSON";
  case SDW_PARQUET_LOGICAL_BSON: return "BSON";
  case SDW_PARQUET_LOGICAL_UUID: return "UUID";
  case SDW_PARQUET_LOGICAL_INT: return "INTEGER";
  case SDW_PARQUET_LOGICAL_DECIMAL: return "DECIMAL";
  case SDW_PARQUET_LOGICAL_DATE: return "DATE";
  case SDW_PARQUET_LOGICAL_TIME: return "TIME";
  case SDW_PARQUET_LOGICAL_TIMESTAMP: return "TIMESTAMP";
  case SDW_PARQUET_LOGICAL_FLOAT16: return "FLOAT16";
  case SDW_PARQUET_LOGICAL_INTERVAL: return "INTERVAL";
  case SDW_PARQUET_LOGICAL_NULL: return "NULL";
  default: return "other";
  }
}

size_t sdw_parquet_value_size(sdw_parquet_type type) {
  switch (type) {
  case SDW_PARQUET_BOOLEAN: return 1;
  case SDW_PARQUET_INT32:
  case SDW_PARQUET_FLOAT: return 4;
  case SDW_PARQUET_INT64:
  case SDW_PARQUET_DOUBLE: return 8;
  default: return 0;
  }
}

static bool is_bytes(sdw_parquet_type t) { return sdw_parquet_value_size(t) == 0; }

void sdw_parquet_array_init(sdw_parquet_array *a, sdw_parquet_type type) {
  memset(a, 0, sizeof *a);
  a->type = type;
}

void sdw_parquet_array_free(sdw_parquet_array *a) {
  sdw_parquet_type type = a->type;
  free(a->validity);
  free(a->values);
  free(a->offsets);
  free(a->data);
  sdw_parquet_array_init(a, type);
}

static sdw_status oom(void) {
  return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "parquet: out of memory for a column array");
}

static size_t grow(size_t cap, size_t need) {
  size_t c = cap < 16 ? 16 : cap;
  while (c < need) {
    if (c > SIZE_MAX / 2) return need;
    c *= 2;
  }
  return c;
}

sdw_status sdw_parquet_array_reserve(sdw_parquet_array *a, size_t extra, size_t extra_data) {
  size_t len = (size_t)a->length;
  if (extra > SIZE_MAX / 16 - len || extra_data > SIZE_MAX / 2 - a->data_size) return oom();
  if (len + extra > a->cap_length || (is_bytes(a->type) && !a->offsets)) {
    size_t cap = grow(a->cap_length, len + extra);
    if (is_bytes(a->type)) {
      int64_t *o = realloc(a->offsets, (cap + 1) * sizeof *o);
      if (!o) return oom();
      if (!a->offsets) o[0] = 0;
      a->offsets = o;
    } else {
      void *v = realloc(a->values, cap * sdw_parquet_value_size(a->type));
      if (!v) return oom();
      a->values = v;
    }
    if (a->validity) {
      size_t old_bytes = (a->cap_length + 7) / 8, new_bytes = (cap + 7) / 8;
      uint8_t *b = realloc(a->validity, new_bytes);
      if (!b) return oom();
      memset(b + old_bytes, 0, new_bytes - old_bytes);
      a->validity = b;
    }
    a->cap_length = cap;
  }
  /* data is never NULL for byte types, so that empty strings can be copied
   * from and to it without null-pointer arithmetic */
  if (is_bytes(a->type) && (a->data_size + extra_data > a->cap_data || !a->data)) {
    size_t cap = grow(a->cap_data, a->data_size + extra_data);
    uint8_t *d = realloc(a->data, cap);
    if (!d) return oom();
    a->data = d;
    a->cap_data = cap;
  }
  return SDW_OK;
}

sdw_status sdw_parquet_array_make_validity(sdw_parquet_array *a) {
  if (a->validity) return SDW_OK;
  size_t bytes = (a->cap_length + 7) / 8;
  uint8_t *b = calloc(bytes ? bytes : 1, 1);
  if (!b) return oom();
  size_t n = (size_t)a->length;
  memset(b, 0xff, n / 8);
  if (n % 8) b[n / 8] = (uint8_t)((1u << (n % 8)) - 1);
  a->validity = b;
  return SDW_OK;
}

static void set_valid(sdw_parquet_array *a, size_t i) {
  if (a->validity) a->validity[i / 8] |= (uint8_t)(1u << (i % 8));
}

sdw_status sdw_parquet_array_append_null(sdw_parquet_array *a) {
  SDW_TRY(sdw_parquet_array_reserve(a, 1, 0));
  SDW_TRY(sdw_parquet_array_make_validity(a));
  size_t i = (size_t)a->length;
  a->validity[i / 8] &= (uint8_t) ~(1u << (i % 8));
  if (is_bytes(a->type)) {
    a->offsets[i + 1] = a->offsets[i];
  } else {
    size_t sz = sdw_parquet_value_size(a->type);
    memset((uint8_t *)a->values + i * sz, 0, sz);
  }
  a->length++;
  a->null_count++;
  return SDW_OK;
}

sdw_status sdw_parquet_array_append_value(sdw_parquet_array *a, const void *value) {
  SDW_ASSERT(!is_bytes(a->type));
  SDW_TRY(sdw_parquet_array_reserve(a, 1, 0));
  size_t i = (size_t)a->length, sz = sdw_parquet_value_size(a->type);
  memcpy((uint8_t *)a->values + i * sz, value, sz);
  set_valid(a, i);
  a->length++;
  return SDW_OK;
}

sdw_status sdw_parquet_array_append_bytes(sdw_parquet_array *a, const void *bytes, size_t len) {
  SDW_ASSERT(is_bytes(a->type));
  SDW_TRY(sdw_parquet_array_reserve(a, 1, len));
  size_t i = (size_t)a->length;
  if (len) memcpy(a->data + a->data_size, bytes, len);
  a->data_size += len;
  a->offsets[i + 1] = (int64_t)a->data_size;
  set_valid(a, i);
  a->length++;
  return SDW_OK;
}
