/* Apache Thrift compact protocol: a bounds-checked decoder over a byte range
 * and an encoder into a growable buffer. Parquet uses it for the footer
 * (FileMetaData) and every page header.
 *
 * Wire format (thrift/doc/specs/thrift-compact-protocol.md):
 *  - integers i16/i32/i64 are zigzag varints (LEB128, at most 10 bytes);
 *  - a field header is one byte: field-id delta (1..15) in the high nibble and
 *    the type in the low nibble; delta 0 means a zigzag i16 field id follows;
 *    type 0 (STOP) ends a struct; booleans live in the field type itself
 *    (1 = true, 2 = false);
 *  - binary/string: varint length then the bytes;
 *  - list/set: one byte, size (0..14) in the high nibble and the element type
 *    in the low nibble, or 0xF_ followed by a varint size; list booleans are
 *    one byte each (1 = true);
 *  - map: varint size, then (when non-empty) one byte key type | value type;
 *  - double: 8 bytes little-endian.
 *
 * The decoder never reads outside [p, end). Errors are sticky: after the
 * first problem (truncation, an over-long varint, a value out of range, an
 * unknown type, nesting deeper than SDW_THRIFT_MAX_DEPTH, a list longer than
 * the bytes left) every call returns a zero value, r->failed is set and
 * r->error holds a short static description ("truncated", ...), so callers
 * check once at the end of a struct. A list's declared size is at most the
 * number of bytes left (every element takes at least one byte), which bounds
 * what a caller allocates from it.
 *
 * The encoder grows its buffer with realloc; an allocation failure sets
 * w->failed (checked once at the end). Neither side allocates anything the
 * caller must free except the encoder's buffer (sdw_thrift_writer_free). */
#ifndef SDW_PIPELINE_THRIFT_COMPACT_H
#define SDW_PIPELINE_THRIFT_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  SDW_THRIFT_STOP = 0,
  SDW_THRIFT_TRUE = 1, /* field type of a true boolean; also "BOOL" as a list element type */
  SDW_THRIFT_FALSE = 2,
  SDW_THRIFT_BYTE = 3,
  SDW_THRIFT_I16 = 4,
  SDW_THRIFT_I32 = 5,
  SDW_THRIFT_I64 = 6,
  SDW_THRIFT_DOUBLE = 7,
  SDW_THRIFT_BINARY = 8,
  SDW_THRIFT_LIST = 9,
  SDW_THRIFT_SET = 10,
  SDW_THRIFT_MAP = 11,
  SDW_THRIFT_STRUCT = 12,
};

/* Deeper nesting of structs/lists/maps is refused (parquet needs 5). */
#define SDW_THRIFT_MAX_DEPTH 32

/* --- decoding ------------------------------------------------------------------ */

typedef struct sdw_thrift_reader {
  const uint8_t *p, *end;
  int depth;
  bool failed;
  const char *error; /* static text, set with failed */
} sdw_thrift_reader;

void sdw_thrift_reader_init(sdw_thrift_reader *r, const void *data, size_t size);
/* Bytes consumed so far from the start given to _init. */
size_t sdw_thrift_reader_offset(const sdw_thrift_reader *r, const void *start);

/* Enters a struct (depth check); every struct read must be closed with
 * sdw_thrift_struct_end after its field loop. */
void sdw_thrift_struct_begin(sdw_thrift_reader *r);
void sdw_thrift_struct_end(sdw_thrift_reader *r);

/* Reads the next field header of the current struct. Returns false at STOP
 * or on error; otherwise *id and *type hold the field. *last_id is the
 * struct's previous field id (start it at 0). */
bool sdw_thrift_field_next(sdw_thrift_reader *r, int16_t *last_id, int16_t *id, uint8_t *type);

/* Integer values of a field (or list element) of the given wire type. Any
 * integer type is accepted (BYTE, I16, I32, I64) as long as the value fits;
 * another type is an error. */
int32_t sdw_thrift_read_i32(sdw_thrift_reader *r, uint8_t type);
int64_t sdw_thrift_read_i64(sdw_thrift_reader *r, uint8_t type);
/* A boolean field (type TRUE/FALSE carries the value) or list element
 * (type TRUE: one byte follows). */
bool sdw_thrift_read_bool(sdw_thrift_reader *r, uint8_t type);
/* A binary/string: *data points into the input (not NUL-terminated). */
void sdw_thrift_read_binary(sdw_thrift_reader *r, uint8_t type, const uint8_t **data,
                            uint32_t *size);
/* Starts a list or set: its element type and size (<= bytes left). Enters
 * one nesting level: close it with sdw_thrift_list_end after the elements. */
void sdw_thrift_list_begin(sdw_thrift_reader *r, uint8_t type, uint8_t *elem_type, uint32_t *count);
void sdw_thrift_list_end(sdw_thrift_reader *r);
/* Skips a value of the given type (structs, lists, maps recursively). */
void sdw_thrift_skip(sdw_thrift_reader *r, uint8_t type);

/* --- encoding ------------------------------------------------------------------ */

typedef struct sdw_thrift_writer {
  uint8_t *buf; /* owned; sdw_thrift_writer_free */
  size_t len, cap;
  bool failed; /* an allocation failed or the nesting was too deep */
  int depth;
  int16_t last_id[SDW_THRIFT_MAX_DEPTH + 1];
} sdw_thrift_writer;

void sdw_thrift_writer_init(sdw_thrift_writer *w);
void sdw_thrift_writer_free(sdw_thrift_writer *w);
/* Drops the contents but keeps the buffer (for the next message). */
void sdw_thrift_writer_reset(sdw_thrift_writer *w);

void sdw_thrift_write_field_i32(sdw_thrift_writer *w, int16_t id, int32_t v);
void sdw_thrift_write_field_i64(sdw_thrift_writer *w, int16_t id, int64_t v);
void sdw_thrift_write_field_bool(sdw_thrift_writer *w, int16_t id, bool v);
void sdw_thrift_write_field_binary(sdw_thrift_writer *w, int16_t id, const void *data, size_t size);
/* A struct field: begin, its fields, end (writes STOP). */
void sdw_thrift_write_field_struct_begin(sdw_thrift_writer *w, int16_t id);
void sdw_thrift_write_struct_end(sdw_thrift_writer *w);
/* A list field of count elements, then the elements with the _elem_
 * functions (struct elements: _elem_struct_begin ... _struct_end). */
void sdw_thrift_write_field_list(sdw_thrift_writer *w, int16_t id, uint8_t elem_type,
                                 uint32_t count);
void sdw_thrift_write_elem_i32(sdw_thrift_writer *w, int32_t v);
void sdw_thrift_write_elem_binary(sdw_thrift_writer *w, const void *data, size_t size);
void sdw_thrift_write_elem_struct_begin(sdw_thrift_writer *w);
/* Ends the top-level message struct (writes STOP; no begin is needed for
 * the outermost struct). */
void sdw_thrift_write_stop(sdw_thrift_writer *w);

#ifdef __cplusplus
}
#endif
#endif
