/* Parquet writer for the pipeline's outputs (filtered metadata, the shard
 * parquet files of img2dataset's layout).
 *
 * What it writes: a flat schema of BOOLEAN, INT32, INT64, FLOAT, DOUBLE and
 * BYTE_ARRAY columns (BYTE_ARRAY optionally annotated STRING or JSON), each
 * required or optional; PLAIN values, RLE/bit-packed definition levels for
 * optional columns, data pages v1 of about options.page_size bytes, one or
 * more row groups, SNAPPY (default), GZIP or no compression; per-chunk
 * statistics with the null count (no min/max). Files are read by pyarrow
 * (tests/cli/parquet_interop.sh) and by pipeline/parquet_reader.h.
 *
 * The file appears atomically (core/base/fsutil.h): nothing is visible at
 * path until sdw_parquet_writer_close succeeds, and an aborted or failed
 * writer leaves any previous file untouched.
 *
 * Two ways to supply rows, which may be mixed:
 *  - whole row groups of column arrays (sdw_parquet_writer_write_arrays);
 *  - row by row: one sdw_parquet_writer_set_* per column, then
 *    sdw_parquet_writer_end_row; rows are buffered and written as a row group
 *    every options.row_group_rows rows (and at close).
 * Misuse (a type that does not match the column, a null in a required
 * column, a column set twice or not at all in a row, an index out of
 * range) is a programming error (SDW_ASSERT). A writer is used by one thread
 * at a time. */
#ifndef SDW_PIPELINE_PARQUET_WRITER_H
#define SDW_PIPELINE_PARQUET_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "pipeline/parquet_array.h"
#include "pipeline/parquet_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_parquet_field {
  const char *name;            /* copied */
  sdw_parquet_type type;       /* BOOLEAN, INT32, INT64, FLOAT, DOUBLE or BYTE_ARRAY */
  sdw_parquet_logical logical; /* NONE, or STRING / JSON for BYTE_ARRAY */
  bool nullable;
} sdw_parquet_field;

typedef struct sdw_parquet_writer_options {
  int codec;              /* SDW_PARQUET_SNAPPY, SDW_PARQUET_GZIP or SDW_PARQUET_UNCOMPRESSED */
  int64_t row_group_rows; /* rows per row group of the row-by-row API */
  size_t page_size;       /* target uncompressed bytes of values per data page */
  const char *created_by; /* FileMetaData.created_by; NULL: "sdw version X" */
} sdw_parquet_writer_options;

/* SNAPPY, 131072 rows per row group, 1 MiB pages. */
sdw_parquet_writer_options sdw_parquet_writer_defaults(void);

typedef struct sdw_parquet_writer sdw_parquet_writer;

/* Starts a file at path (written atomically). opts NULL: the defaults.
 * *out is owned by the caller until _close or _abort. Errors: SDW_ERR_IO
 * (the temporary file), SDW_ERR_INVALID_ARGUMENT (no fields, an unsupported
 * type, a duplicate name). */
sdw_status sdw_parquet_writer_open(const char *path, const sdw_parquet_field *fields,
                                   int num_fields, const sdw_parquet_writer_options *opts,
                                   sdw_parquet_writer **out);

/* Adds a key/value pair to the footer's metadata (both copied). */
sdw_status sdw_parquet_writer_set_metadata(sdw_parquet_writer *w, const char *key,
                                           const char *value);

/* Writes one row group of num_rows rows: columns[i] (type of field i, at
 * least num_rows values; a validity bitmap only for nullable fields, or
 * with no null) for each field. Buffered rows of the row API go first. */
sdw_status sdw_parquet_writer_write_arrays(sdw_parquet_writer *w, const sdw_parquet_array *columns,
                                           int64_t num_rows);

/* The row API. */
void sdw_parquet_writer_set_null(sdw_parquet_writer *w, int column);
void sdw_parquet_writer_set_bool(sdw_parquet_writer *w, int column, bool v);
void sdw_parquet_writer_set_i32(sdw_parquet_writer *w, int column, int32_t v);
void sdw_parquet_writer_set_i64(sdw_parquet_writer *w, int column, int64_t v);
void sdw_parquet_writer_set_f32(sdw_parquet_writer *w, int column, float v);
void sdw_parquet_writer_set_f64(sdw_parquet_writer *w, int column, double v);
void sdw_parquet_writer_set_bytes(sdw_parquet_writer *w, int column, const void *data, size_t size);
/* A NUL-terminated string (NULL sets null). */
void sdw_parquet_writer_set_str(sdw_parquet_writer *w, int column, const char *s);
/* Completes the row (every column must have been set once). */
sdw_status sdw_parquet_writer_end_row(sdw_parquet_writer *w);

/* Rows written so far (including buffered ones). */
int64_t sdw_parquet_writer_num_rows(const sdw_parquet_writer *w);

/* Writes the buffered rows and the footer, then renames the file into
 * place; frees w whatever happens. An error from an earlier call is
 * returned here too (and nothing is written). */
sdw_status sdw_parquet_writer_close(sdw_parquet_writer *w);
/* Discards everything (the target is untouched); frees w. NULL: no-op. */
void sdw_parquet_writer_abort(sdw_parquet_writer *w);

#ifdef __cplusplus
}
#endif
#endif
