/* Thrift compact protocol: see thrift_compact.h. */
#include "pipeline/thrift_compact.h"

#include <stdlib.h>
#include <string.h>

/* --- decoding ------------------------------------------------------------------ */

static void fail(sdw_thrift_reader *r, const char *what) {
  if (!r->failed) {
    r->failed = true;
    r->error = what;
  }
  r->p = r->end; /* nothing more is read after an error */
}

void sdw_thrift_reader_init(sdw_thrift_reader *r, const void *data, size_t size) {
  r->p = data;
  r->end = r->p + size;
  r->depth = 0;
  r->failed = false;
  r->error = "";
}

size_t sdw_thrift_reader_offset(const sdw_thrift_reader *r, const void *start) {
  return (size_t)(r->p - (const uint8_t *)start);
}

static uint64_t read_varint(sdw_thrift_reader *r) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->p >= r->end) {
      fail(r, "truncated");
      return 0;
    }
    uint8_t b = *r->p++;
    if (shift == 63 && (b & 0x7e)) break; /* more than 64 bits */
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  fail(r, "over-long varint");
  return 0;
}

static int64_t unzigzag(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

static uint8_t read_byte(sdw_thrift_reader *r) {
  if (r->p >= r->end) {
    fail(r, "truncated");
    return 0;
  }
  return *r->p++;
}

void sdw_thrift_struct_begin(sdw_thrift_reader *r) {
  if (++r->depth > SDW_THRIFT_MAX_DEPTH) fail(r, "nesting too deep");
}

void sdw_thrift_struct_end(sdw_thrift_reader *r) { r->depth--; }

bool sdw_thrift_field_next(sdw_thrift_reader *r, int16_t *last_id, int16_t *id, uint8_t *type) {
  if (r->failed) return false;
  uint8_t b = read_byte(r);
  if (r->failed) return false;
  uint8_t t = b & 0x0f;
  if (t == SDW_THRIFT_STOP) return false;
  if (t > SDW_THRIFT_STRUCT) {
    fail(r, "unknown field type");
    return false;
  }
  int delta = b >> 4;
  int64_t fid;
  if (delta) {
    fid = (int64_t)*last_id + delta;
  } else {
    fid = unzigzag(read_varint(r));
  }
  if (r->failed) return false;
  if (fid < INT16_MIN || fid > INT16_MAX) {
    fail(r, "field id out of range");
    return false;
  }
  *id = (int16_t)fid;
  *last_id = (int16_t)fid;
  *type = t;
  return true;
}

static int64_t read_int(sdw_thrift_reader *r, uint8_t type) {
  switch (type) {
  case SDW_THRIFT_BYTE: return (int8_t)read_byte(r);
  case SDW_THRIFT_I16:
  case SDW_THRIFT_I32:
  case SDW_THRIFT_I64: return unzigzag(read_varint(r));
  default: fail(r, "integer expected"); return 0;
  }
}

int32_t sdw_thrift_read_i32(sdw_thrift_reader *r, uint8_t type) {
  int64_t v = read_int(r, type);
  if (v < INT32_MIN || v > INT32_MAX) {
    fail(r, "i32 out of range");
    return 0;
  }
  return (int32_t)v;
}

int64_t sdw_thrift_read_i64(sdw_thrift_reader *r, uint8_t type) { return read_int(r, type); }

bool sdw_thrift_read_bool(sdw_thrift_reader *r, uint8_t type) {
  /* As a field the type carries the value; as a list element (element type
   * TRUE or FALSE, both meaning "bool") one byte follows. The caller tells
   * which by passing the field type, or SDW_THRIFT_BYTE for an element. */
  if (type == SDW_THRIFT_TRUE) return true;
  if (type == SDW_THRIFT_FALSE) return false;
  if (type == SDW_THRIFT_BYTE) {
    uint8_t b = read_byte(r);
    if (b > 2) fail(r, "bad boolean");
    return b == 1;
  }
  fail(r, "boolean expected");
  return false;
}

void sdw_thrift_read_binary(sdw_thrift_reader *r, uint8_t type, const uint8_t **data,
                            uint32_t *size) {
  *data = r->p;
  *size = 0;
  if (type != SDW_THRIFT_BINARY) {
    fail(r, "binary expected");
    return;
  }
  uint64_t n = read_varint(r);
  if (r->failed) return;
  if (n > (uint64_t)(r->end - r->p)) {
    fail(r, "truncated");
    return;
  }
  *data = r->p;
  *size = (uint32_t)n;
  r->p += n;
}

void sdw_thrift_list_begin(sdw_thrift_reader *r, uint8_t type, uint8_t *elem_type,
                           uint32_t *count) {
  *elem_type = 0;
  *count = 0;
  if (++r->depth > SDW_THRIFT_MAX_DEPTH) {
    fail(r, "nesting too deep");
    return;
  }
  if (type != SDW_THRIFT_LIST && type != SDW_THRIFT_SET) {
    fail(r, "list expected");
    return;
  }
  uint8_t b = read_byte(r);
  if (r->failed) return;
  uint64_t n = b >> 4;
  if (n == 15) n = read_varint(r);
  uint8_t et = b & 0x0f;
  if (r->failed) return;
  if (et == SDW_THRIFT_STOP || et > SDW_THRIFT_STRUCT) {
    fail(r, "unknown list element type");
    return;
  }
  if (n > (uint64_t)(r->end - r->p)) { /* every element takes at least one byte */
    fail(r, "list longer than the bytes left");
    return;
  }
  *elem_type = et;
  *count = (uint32_t)n;
}

void sdw_thrift_list_end(sdw_thrift_reader *r) { r->depth--; }

void sdw_thrift_skip(sdw_thrift_reader *r, uint8_t type) {
  if (r->failed) return;
  switch (type) {
  case SDW_THRIFT_TRUE:
  case SDW_THRIFT_FALSE: return; /* a field's value is in its type */
  case SDW_THRIFT_BYTE: (void)read_byte(r); return;
  case SDW_THRIFT_I16:
  case SDW_THRIFT_I32:
  case SDW_THRIFT_I64: (void)read_varint(r); return;
  case SDW_THRIFT_DOUBLE:
    if (r->end - r->p < 8)
      fail(r, "truncated");
    else
      r->p += 8;
    return;
  case SDW_THRIFT_BINARY: {
    const uint8_t *d;
    uint32_t n;
    sdw_thrift_read_binary(r, type, &d, &n);
    return;
  }
  case SDW_THRIFT_LIST:
  case SDW_THRIFT_SET: {
    uint8_t et;
    uint32_t n;
    sdw_thrift_list_begin(r, type, &et, &n);
    /* list booleans are one byte each, unlike boolean fields */
    uint8_t skip_type = (et == SDW_THRIFT_TRUE || et == SDW_THRIFT_FALSE) ? SDW_THRIFT_BYTE : et;
    for (uint32_t i = 0; i < n && !r->failed; i++)
      sdw_thrift_skip(r, skip_type);
    sdw_thrift_list_end(r);
    return;
  }
  case SDW_THRIFT_MAP: {
    if (++r->depth > SDW_THRIFT_MAX_DEPTH) {
      fail(r, "nesting too deep");
      return;
    }
    uint64_t n = read_varint(r);
    if (!r->failed && n > 0) {
      if (n > (uint64_t)(r->end - r->p)) {
        fail(r, "map longer than the bytes left");
      } else {
        uint8_t kv = read_byte(r);
        uint8_t kt = kv >> 4, vt = kv & 0x0f;
        if (kt == 0 || kt > SDW_THRIFT_STRUCT || vt == 0 || vt > SDW_THRIFT_STRUCT) {
          fail(r, "unknown map element type");
        } else {
          if (kt <= SDW_THRIFT_FALSE) kt = SDW_THRIFT_BYTE;
          if (vt <= SDW_THRIFT_FALSE) vt = SDW_THRIFT_BYTE;
          for (uint64_t i = 0; i < n && !r->failed; i++) {
            sdw_thrift_skip(r, kt);
            sdw_thrift_skip(r, vt);
          }
        }
      }
    }
    r->depth--;
    return;
  }
  case SDW_THRIFT_STRUCT: {
    sdw_thrift_struct_begin(r);
    int16_t last = 0, id;
    uint8_t t;
    while (sdw_thrift_field_next(r, &last, &id, &t))
      sdw_thrift_skip(r, t);
    sdw_thrift_struct_end(r);
    return;
  }
  default: fail(r, "unknown type"); return;
  }
}

/* --- encoding ------------------------------------------------------------------ */

void sdw_thrift_writer_init(sdw_thrift_writer *w) { memset(w, 0, sizeof *w); }

void sdw_thrift_writer_free(sdw_thrift_writer *w) {
  free(w->buf);
  memset(w, 0, sizeof *w);
}

void sdw_thrift_writer_reset(sdw_thrift_writer *w) {
  w->len = 0;
  w->failed = false;
  w->depth = 0;
  w->last_id[0] = 0;
}

static void put(sdw_thrift_writer *w, const void *data, size_t n) {
  if (w->failed) return;
  if (w->cap - w->len < n) {
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n)
      cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) {
      w->failed = true;
      return;
    }
    w->buf = b;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, data, n);
  w->len += n;
}

static void put_byte(sdw_thrift_writer *w, uint8_t b) { put(w, &b, 1); }

static void put_varint(sdw_thrift_writer *w, uint64_t v) {
  uint8_t b[10];
  int n = 0;
  while (v >= 0x80) {
    b[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (uint8_t)v;
  put(w, b, (size_t)n);
}

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static void field_header(sdw_thrift_writer *w, int16_t id, uint8_t type) {
  int16_t last = w->last_id[w->depth];
  if (id > last && id - last <= 15) {
    put_byte(w, (uint8_t)(((id - last) << 4) | type));
  } else {
    put_byte(w, type);
    put_varint(w, zigzag(id));
  }
  w->last_id[w->depth] = id;
}

void sdw_thrift_write_field_i32(sdw_thrift_writer *w, int16_t id, int32_t v) {
  field_header(w, id, SDW_THRIFT_I32);
  put_varint(w, zigzag(v));
}

void sdw_thrift_write_field_i64(sdw_thrift_writer *w, int16_t id, int64_t v) {
  field_header(w, id, SDW_THRIFT_I64);
  put_varint(w, zigzag(v));
}

void sdw_thrift_write_field_bool(sdw_thrift_writer *w, int16_t id, bool v) {
  field_header(w, id, v ? SDW_THRIFT_TRUE : SDW_THRIFT_FALSE);
}

void sdw_thrift_write_field_binary(sdw_thrift_writer *w, int16_t id, const void *data,
                                   size_t size) {
  field_header(w, id, SDW_THRIFT_BINARY);
  put_varint(w, size);
  put(w, data, size);
}

static void push(sdw_thrift_writer *w) {
  if (w->depth >= SDW_THRIFT_MAX_DEPTH) {
    w->failed = true;
    return;
  }
  w->last_id[++w->depth] = 0;
}

void sdw_thrift_write_field_struct_begin(sdw_thrift_writer *w, int16_t id) {
  field_header(w, id, SDW_THRIFT_STRUCT);
  push(w);
}

void sdw_thrift_write_struct_end(sdw_thrift_writer *w) {
  put_byte(w, SDW_THRIFT_STOP);
  if (w->depth > 0) w->depth--;
}

void sdw_thrift_write_field_list(sdw_thrift_writer *w, int16_t id, uint8_t elem_type,
                                 uint32_t count) {
  field_header(w, id, SDW_THRIFT_LIST);
  if (count < 15) {
    put_byte(w, (uint8_t)((count << 4) | elem_type));
  } else {
    put_byte(w, (uint8_t)(0xf0 | elem_type));
    put_varint(w, count);
  }
}

void sdw_thrift_write_elem_i32(sdw_thrift_writer *w, int32_t v) { put_varint(w, zigzag(v)); }

void sdw_thrift_write_elem_binary(sdw_thrift_writer *w, const void *data, size_t size) {
  put_varint(w, size);
  put(w, data, size);
}

void sdw_thrift_write_elem_struct_begin(sdw_thrift_writer *w) { push(w); }

void sdw_thrift_write_stop(sdw_thrift_writer *w) { put_byte(w, SDW_THRIFT_STOP); }
