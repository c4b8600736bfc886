/* Parquet reader: memory-maps a file, parses its footer and reads columns of
 * row groups into typed arrays (pipeline/parquet_array.h).
 *
 * File layout (apache/parquet-format): "PAR1", column chunks, the footer
 * (FileMetaData, Thrift compact protocol), its 4-byte little-endian length,
 * "PAR1". Each column chunk is a sequence of pages, each a PageHeader (Thrift)
 * followed by its (possibly compressed) body.
 *
 * Supported:
 *  - schemas: flat records of required/optional primitive columns, and
 *    leaves nested in (non-repeated) groups, named by their dotted path;
 *    a repeated leaf (LIST/MAP) is listed with supported = false and reading
 *    it is SDW_ERR_UNSUPPORTED (the other columns of the file stay readable);
 *  - physical types BOOLEAN, INT32, INT64, FLOAT, DOUBLE, BYTE_ARRAY,
 *    FIXED_LEN_BYTE_ARRAY and INT96 (the last two as byte strings);
 *    logical/converted types are reported, values stay physical (an INT8
 *    column reads as INT32, a DATE as INT32 days, a TIMESTAMP as INT64);
 *  - pages: DATA_PAGE (v1), DATA_PAGE_V2, DICTIONARY_PAGE (INDEX_PAGE and
 *    unknown page types are skipped);
 *  - encodings: PLAIN, PLAIN_DICTIONARY / RLE_DICTIONARY (with a dictionary
 *    fallback to another encoding mid-chunk), RLE (booleans, and RLE/bit-
 *    packed hybrid definition levels), DELTA_BINARY_PACKED,
 *    DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY, BYTE_STREAM_SPLIT;
 *    not supported (SDW_ERR_UNSUPPORTED): the deprecated BIT_PACKED levels;
 *  - codecs: see pipeline/parquet_codec.h (UNCOMPRESSED, SNAPPY, GZIP, ZSTD,
 *    LZ4_RAW); encrypted files ("PARE") and column chunks in other files
 *    (file_path) are SDW_ERR_UNSUPPORTED.
 * pyarrow's defaults (dictionary with PLAIN fallback, RLE booleans in v2
 * pages, any codec) and parquet-mr's (PLAIN_DICTIONARY, DELTA_* in v2) are
 * therefore covered. Page CRCs and statistics are not checked.
 *
 * Safety: every offset, length and count read from the file is checked
 * before use; a malformed or hostile file gives SDW_ERR_FORMAT with one
 * sentence naming the file and the problem (and the column and row group),
 * never a read outside the file. Allocations are bounded by sizes the file
 * declares after they have been checked against the file (a page's
 * decompressed size against the codec's largest expansion of its bytes)
 * and, for what legitimately expands without bound (a run of a million
 * repeated dictionary strings in a few bytes), by the per-read memory limit
 * max_memory: a read that would need more is SDW_ERR_OUT_OF_MEMORY naming
 * the limit.
 *
 * Threads: an open file is read-only; different threads may read columns of
 * the same file concurrently (each read allocates its own scratch). Errors
 * go to the calling thread's sdw_last_error. */
#ifndef SDW_PIPELINE_PARQUET_READER_H
#define SDW_PIPELINE_PARQUET_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "pipeline/parquet_array.h"
#include "pipeline/parquet_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default per-read memory limit: roughly the bytes of arrays and scratch
 * one sdw_parquet_read_* call may allocate (arrays grow geometrically, so
 * the true peak can be up to twice the charged amount). */
#define SDW_PARQUET_DEFAULT_MAX_MEMORY ((size_t)4 << 30)

typedef struct sdw_parquet_read_options {
  size_t max_memory; /* 0: SDW_PARQUET_DEFAULT_MAX_MEMORY */
} sdw_parquet_read_options;

typedef struct sdw_parquet_file sdw_parquet_file;

/* One leaf column of the schema; owned by the file. */
typedef struct sdw_parquet_column_info {
  const char *name; /* leaf name, or dotted path when nested ("a.b") */
  sdw_parquet_type type;
  int32_t type_length; /* FIXED_LEN_BYTE_ARRAY: bytes per value; INT96: 12 */
  sdw_parquet_logical logical;
  int int_bits;                    /* LOGICAL_INT: 8/16/32/64 */
  bool int_signed;                 /* LOGICAL_INT */
  int32_t scale, precision;        /* LOGICAL_DECIMAL */
  sdw_parquet_time_unit time_unit; /* LOGICAL_TIME / TIMESTAMP */
  bool utc_adjusted;               /* LOGICAL_TIME / TIMESTAMP */
  bool nullable;                   /* a value can be null (max_def_level > 0) */
  int max_def_level, max_rep_level;
  bool supported; /* sdw_parquet_read_column can read it (not repeated) */
} sdw_parquet_column_info;

/* Opens and maps path, parses and checks the footer and schema. *out is
 * owned by the caller (sdw_parquet_close). opts may be NULL. Errors:
 * SDW_ERR_NOT_FOUND / SDW_ERR_IO (open, map), SDW_ERR_FORMAT (malformed),
 * SDW_ERR_UNSUPPORTED (encrypted footer). */
sdw_status sdw_parquet_open(const char *path, const sdw_parquet_read_options *opts,
                            sdw_parquet_file **out);
/* The same over bytes in memory, which must outlive the file handle; name
 * is used in messages (copied). */
sdw_status sdw_parquet_open_memory(const void *data, size_t size, const char *name,
                                   const sdw_parquet_read_options *opts, sdw_parquet_file **out);
void sdw_parquet_close(sdw_parquet_file *f); /* NULL is a no-op */

const char *sdw_parquet_name(const sdw_parquet_file *f);
int64_t sdw_parquet_num_rows(const sdw_parquet_file *f);
int sdw_parquet_num_columns(const sdw_parquet_file *f);
const sdw_parquet_column_info *sdw_parquet_column(const sdw_parquet_file *f, int column);
/* Index of the column with exactly this name (dotted path), or -1. */
int sdw_parquet_find_column(const sdw_parquet_file *f, const char *name);
int sdw_parquet_num_row_groups(const sdw_parquet_file *f);
int64_t sdw_parquet_row_group_num_rows(const sdw_parquet_file *f, int row_group);
/* FileMetaData.created_by ("" when absent) and key/value metadata (NULL
 * when the key is absent); owned by the file. */
const char *sdw_parquet_created_by(const sdw_parquet_file *f);
const char *sdw_parquet_metadata_get(const sdw_parquet_file *f, const char *key);

/* Reads one column of one row group into *out, which this call initialises
 * (any previous contents are not freed: pass a fresh or freed array) and
 * the caller frees with sdw_parquet_array_free. On error *out is empty. */
sdw_status sdw_parquet_read_column(const sdw_parquet_file *f, int row_group, int column,
                                   sdw_parquet_array *out);
/* The column over every row group, concatenated in file order. */
sdw_status sdw_parquet_read_column_all(const sdw_parquet_file *f, int column,
                                       sdw_parquet_array *out);
/* Selects columns by name: out[i] receives column names[i] of row group
 * row_group, or of every row group when row_group is -1. A missing name is
 * SDW_ERR_NOT_FOUND naming it. On error every out[i] is empty. */
sdw_status sdw_parquet_read_columns(const sdw_parquet_file *f, int row_group,
                                    const char *const *names, int count, sdw_parquet_array *out);

/* What a column chunk holds, from its metadata and page headers (for tests
 * and diagnostics). */
typedef struct sdw_parquet_chunk_desc {
  int codec;
  int64_t num_values;
  int data_pages_v1, data_pages_v2, dictionary_pages;
  uint32_t encodings; /* bit e set: some data page used encoding e */
} sdw_parquet_chunk_desc;
sdw_status sdw_parquet_describe_chunk(const sdw_parquet_file *f, int row_group, int column,
                                      sdw_parquet_chunk_desc *out);

/* parquet.thrift Encoding values. */
enum {
  SDW_PARQUET_ENC_PLAIN = 0,
  SDW_PARQUET_ENC_PLAIN_DICTIONARY = 2,
  SDW_PARQUET_ENC_RLE = 3,
  SDW_PARQUET_ENC_BIT_PACKED = 4,
  SDW_PARQUET_ENC_DELTA_BINARY_PACKED = 5,
  SDW_PARQUET_ENC_DELTA_LENGTH_BYTE_ARRAY = 6,
  SDW_PARQUET_ENC_DELTA_BYTE_ARRAY = 7,
  SDW_PARQUET_ENC_RLE_DICTIONARY = 8,
  SDW_PARQUET_ENC_BYTE_STREAM_SPLIT = 9,
};

#ifdef __cplusplus
}
#endif
#endif
