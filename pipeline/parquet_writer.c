/* Parquet writer: see parquet_writer.h. Field numbers are those of
 * apache/parquet-format parquet.thrift. */
#include "pipeline/parquet_writer.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "pipeline/thrift_compact.h"

#ifndef SDW_VERSION
#define SDW_VERSION "dev"
#endif

enum { ENC_PLAIN = 0, ENC_RLE = 3, PAGE_DATA = 0, REP_REQUIRED = 0, REP_OPTIONAL = 1 };

typedef struct chunk_meta {
  int64_t offset; /* first page */
  int64_t uncompressed, compressed;
  int64_t null_count;
} chunk_meta;

typedef struct group_meta {
  int64_t num_rows;
  chunk_meta *chunks;
} group_meta;

struct sdw_parquet_writer {
  char *path;
  sdw_atomic_file *file;
  sdw_parquet_writer_options opts;
  char *created_by;
  int nf;
  sdw_parquet_field *fields; /* names owned */
  sdw_parquet_array *pending;
  uint8_t *set; /* per column: set in the current row */
  int64_t pending_rows, written_rows;
  group_meta *groups;
  int ngroups, cap_groups;
  char **kv;
  int nkv;
  sdw_status error; /* sticky */
  uint8_t *body, *packed;
  size_t body_cap, packed_cap;
  sdw_thrift_writer tw;
};

sdw_parquet_writer_options sdw_parquet_writer_defaults(void) {
  sdw_parquet_writer_options o = {
      .codec = SDW_PARQUET_SNAPPY, .row_group_rows = 131072, .page_size = 1 << 20};
  return o;
}

static sdw_status wfail_oom(const sdw_parquet_writer *w) {
  return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory writing parquet", w->path);
}

sdw_status sdw_parquet_writer_open(const char *path, const sdw_parquet_field *fields,
                                   int num_fields, const sdw_parquet_writer_options *opts,
                                   sdw_parquet_writer **out) {
  *out = NULL;
  if (num_fields <= 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: a parquet file needs at least one column", path);
  sdw_parquet_writer_options o = opts ? *opts : sdw_parquet_writer_defaults();
  if (o.codec != SDW_PARQUET_SNAPPY && o.codec != SDW_PARQUET_GZIP &&
      o.codec != SDW_PARQUET_UNCOMPRESSED)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: the parquet writer cannot compress with %s",
                    path, sdw_parquet_codec_name(o.codec));
  if (o.row_group_rows <= 0) o.row_group_rows = sdw_parquet_writer_defaults().row_group_rows;
  if (o.page_size == 0) o.page_size = sdw_parquet_writer_defaults().page_size;
  for (int i = 0; i < num_fields; i++) {
    const sdw_parquet_field *fi = &fields[i];
    bool type_ok = fi->type == SDW_PARQUET_BOOLEAN || fi->type == SDW_PARQUET_INT32 ||
                   fi->type == SDW_PARQUET_INT64 || fi->type == SDW_PARQUET_FLOAT ||
                   fi->type == SDW_PARQUET_DOUBLE || fi->type == SDW_PARQUET_BYTE_ARRAY;
    bool logical_ok =
        fi->logical == SDW_PARQUET_LOGICAL_NONE ||
        (fi->type == SDW_PARQUET_BYTE_ARRAY &&
         (fi->logical == SDW_PARQUET_LOGICAL_STRING || fi->logical == SDW_PARQUET_LOGICAL_JSON));
    if (!fi->name || !type_ok || !logical_ok)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "%s: column %d: the parquet writer cannot write %s%s%s columns", path, i,
                      sdw_parquet_type_name(fi->type), logical_ok ? "" : " as ",
                      logical_ok ? "" : sdw_parquet_logical_name(fi->logical));
    for (int k = 0; k < i; k++)
      if (strcmp(fields[k].name, fi->name) == 0)
        return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: column name '%s' appears twice", path,
                        fi->name);
  }
  sdw_parquet_writer *w = calloc(1, sizeof *w);
  if (!w) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  w->opts = o;
  w->nf = num_fields;
  sdw_thrift_writer_init(&w->tw);
  w->path = strdup(path);
  w->created_by = strdup(o.created_by ? o.created_by : "sdw version " SDW_VERSION);
  w->fields = calloc((size_t)num_fields, sizeof *w->fields);
  w->pending = calloc((size_t)num_fields, sizeof *w->pending);
  w->set = calloc((size_t)num_fields, 1);
  if (!w->path || !w->created_by || !w->fields || !w->pending || !w->set) {
    sdw_parquet_writer_abort(w);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  for (int i = 0; i < num_fields; i++) {
    w->fields[i] = fields[i];
    w->fields[i].name = strdup(fields[i].name);
    sdw_parquet_array_init(&w->pending[i], fields[i].type);
    if (!w->fields[i].name) {
      sdw_parquet_writer_abort(w);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
  }
  sdw_status st = sdw_atomic_file_open(path, &w->file);
  if (st == SDW_OK) st = sdw_atomic_file_write(w->file, "PAR1", 4);
  if (st != SDW_OK) {
    sdw_parquet_writer_abort(w);
    return st;
  }
  *out = w;
  return SDW_OK;
}

static void note(sdw_parquet_writer *w, sdw_status st) {
  if (st != SDW_OK && w->error == SDW_OK) w->error = st;
}

sdw_status sdw_parquet_writer_set_metadata(sdw_parquet_writer *w, const char *key,
                                           const char *value) {
  char **kv = realloc(w->kv, (size_t)(w->nkv + 1) * 2 * sizeof *kv);
  if (!kv) return wfail_oom(w);
  w->kv = kv;
  kv[2 * w->nkv] = strdup(key);
  kv[2 * w->nkv + 1] = strdup(value);
  w->nkv++;
  if (!kv[2 * w->nkv - 2] || !kv[2 * w->nkv - 1]) {
    note(w, wfail_oom(w)); /* the footer cannot be written without it */
    return w->error;
  }
  return SDW_OK;
}

int64_t sdw_parquet_writer_num_rows(const sdw_parquet_writer *w) {
  return w->written_rows + w->pending_rows;
}

/* --- pages ---------------------------------------------------------------------------- */

static bool grow_buf(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : 4096;
  while (c < need)
    c *= 2;
  uint8_t *b = realloc(*buf, c);
  if (!b) return false;
  *buf = b;
  *cap = c;
  return true;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static size_t put_uvarint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static bool is_valid(const sdw_parquet_array *a, int64_t i) {
  return sdw_parquet_array_is_valid(a, i);
}

/* Definition levels (bit width 1) of rows [r0, r1) at p: a 4-byte length,
 * then one RLE run of 1s when every value is present, else one bit-packed
 * run (which is the validity bitmap itself). Returns the bytes written; p
 * has room for 4 + 10 + (r1 - r0) / 8 + 1 bytes. */
static size_t encode_levels(const sdw_parquet_array *a, int64_t r0, int64_t r1, bool any_null,
                            uint8_t *p) {
  uint64_t n = (uint64_t)(r1 - r0);
  size_t k = 4;
  if (!any_null) {
    k += put_uvarint(p + k, n << 1);
    p[k++] = 1;
  } else {
    uint64_t groups = (n + 7) / 8;
    k += put_uvarint(p + k, (groups << 1) | 1);
    memset(p + k, 0, groups);
    for (uint64_t i = 0; i < n; i++)
      if (is_valid(a, r0 + (int64_t)i)) p[k + i / 8] |= (uint8_t)(1u << (i % 8));
    k += groups;
  }
  put_le32(p, (uint32_t)(k - 4));
  return k;
}

/* Writes one data page v1 of rows [r0, r1) of column c. */
static sdw_status write_page(sdw_parquet_writer *w, int c, const sdw_parquet_array *a, int64_t r0,
                             int64_t r1, chunk_meta *cm) {
  const sdw_parquet_field *fd = &w->fields[c];
  const int64_t n = r1 - r0;
  int64_t nulls = 0;
  if (a->validity)
    for (int64_t i = r0; i < r1; i++)
      nulls += !is_valid(a, i);
  size_t vs = sdw_parquet_value_size(fd->type);
  size_t value_bytes;
  if (fd->type == SDW_PARQUET_BYTE_ARRAY)
    value_bytes = (size_t)(a->offsets[r1] - a->offsets[r0]) + 4 * (size_t)n;
  else if (fd->type == SDW_PARQUET_BOOLEAN)
    value_bytes = ((size_t)n + 7) / 8;
  else
    value_bytes = (size_t)n * vs;
  size_t level_max = fd->nullable ? 4 + 10 + (size_t)n / 8 + 1 : 0;
  if (!grow_buf(&w->body, &w->body_cap, level_max + value_bytes + 16)) return wfail_oom(w);
  uint8_t *p = w->body;
  size_t k = fd->nullable ? encode_levels(a, r0, r1, nulls > 0, p) : 0;

  switch (fd->type) {
  case SDW_PARQUET_BOOLEAN: {
    const uint8_t *v = a->values;
    size_t bit = 0;
    memset(p + k, 0, value_bytes);
    for (int64_t i = r0; i < r1; i++) {
      if (!is_valid(a, i)) continue;
      if (v[i]) p[k + bit / 8] |= (uint8_t)(1u << (bit % 8));
      bit++;
    }
    k += (bit + 7) / 8;
    break;
  }
  case SDW_PARQUET_BYTE_ARRAY:
    for (int64_t i = r0; i < r1; i++) {
      if (!is_valid(a, i)) continue;
      size_t len = (size_t)(a->offsets[i + 1] - a->offsets[i]);
      put_le32(p + k, (uint32_t)len);
      if (len) memcpy(p + k + 4, a->data + a->offsets[i], len);
      k += 4 + len;
    }
    break;
  default:
    if (nulls == 0) {
      memcpy(p + k, (const uint8_t *)a->values + (size_t)r0 * vs, (size_t)n * vs);
      k += (size_t)n * vs;
    } else {
      for (int64_t i = r0; i < r1; i++) {
        if (!is_valid(a, i)) continue;
        memcpy(p + k, (const uint8_t *)a->values + (size_t)i * vs, vs);
        k += vs;
      }
    }
  }
  if (k > INT32_MAX)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: column '%s': a page of %zu bytes is too large",
                    w->path, fd->name, k);

  const uint8_t *payload = w->body;
  size_t csize = k;
  if (w->opts.codec != SDW_PARQUET_UNCOMPRESSED) {
    size_t bound = sdw_parquet_compress_bound(w->opts.codec, k);
    if (!grow_buf(&w->packed, &w->packed_cap, bound)) return wfail_oom(w);
    SDW_TRY(sdw_parquet_compress(w->opts.codec, w->body, k, w->packed, bound, &csize));
    payload = w->packed;
  }

  sdw_thrift_writer *tw = &w->tw;
  sdw_thrift_writer_reset(tw);
  sdw_thrift_write_field_i32(tw, 1, PAGE_DATA);
  sdw_thrift_write_field_i32(tw, 2, (int32_t)k);
  sdw_thrift_write_field_i32(tw, 3, (int32_t)csize);
  sdw_thrift_write_field_struct_begin(tw, 5); /* DataPageHeader */
  sdw_thrift_write_field_i32(tw, 1, (int32_t)n);
  sdw_thrift_write_field_i32(tw, 2, ENC_PLAIN);
  sdw_thrift_write_field_i32(tw, 3, ENC_RLE);
  sdw_thrift_write_field_i32(tw, 4, ENC_RLE);
  sdw_thrift_write_struct_end(tw);
  sdw_thrift_write_stop(tw);
  if (tw->failed) return wfail_oom(w);
  SDW_TRY(sdw_atomic_file_write(w->file, tw->buf, tw->len));
  SDW_TRY(sdw_atomic_file_write(w->file, payload, csize));
  cm->uncompressed += (int64_t)(tw->len + k);
  cm->compressed += (int64_t)(tw->len + csize);
  cm->null_count += nulls;
  return SDW_OK;
}

static sdw_status write_chunk(sdw_parquet_writer *w, int c, const sdw_parquet_array *a,
                              int64_t rows, chunk_meta *cm) {
  const sdw_parquet_field *fd = &w->fields[c];
  SDW_ASSERT_MSG(a->type == fd->type, "column '%s' is %s, the array %s", fd->name,
                 sdw_parquet_type_name(fd->type), sdw_parquet_type_name(a->type));
  SDW_ASSERT(a->length >= rows);
  if (!fd->nullable && a->validity)
    for (int64_t i = 0; i < rows; i++)
      SDW_ASSERT_MSG(is_valid(a, i), "null in required column '%s'", fd->name);
  cm->offset = (int64_t)sdw_atomic_file_size(w->file);
  size_t vs = sdw_parquet_value_size(fd->type);
  int64_t r0 = 0;
  /* one page at least, also for an empty row group */
  do {
    int64_t r1;
    if (fd->type == SDW_PARQUET_BYTE_ARRAY) {
      size_t bytes = 0;
      r1 = r0;
      while (r1 < rows && (r1 == r0 || bytes < w->opts.page_size)) {
        bytes += 4 + (size_t)(a->offsets[r1 + 1] - a->offsets[r1]);
        r1++;
      }
    } else {
      int64_t per = (int64_t)(w->opts.page_size / (fd->type == SDW_PARQUET_BOOLEAN ? 1 : vs));
      if (fd->type == SDW_PARQUET_BOOLEAN) per *= 8;
      if (per < 1) per = 1;
      r1 = rows - r0 < per ? rows : r0 + per;
    }
    SDW_TRY(write_page(w, c, a, r0, r1, cm));
    r0 = r1;
  } while (r0 < rows);
  return SDW_OK;
}

static sdw_status write_group(sdw_parquet_writer *w, const sdw_parquet_array *cols, int64_t rows) {
  if (w->ngroups == w->cap_groups) {
    int cap = w->cap_groups ? 2 * w->cap_groups : 8;
    group_meta *g = realloc(w->groups, (size_t)cap * sizeof *g);
    if (!g) return wfail_oom(w);
    w->groups = g;
    w->cap_groups = cap;
  }
  group_meta *g = &w->groups[w->ngroups];
  g->num_rows = rows;
  g->chunks = calloc((size_t)w->nf, sizeof *g->chunks);
  if (!g->chunks) return wfail_oom(w);
  w->ngroups++;
  for (int c = 0; c < w->nf; c++)
    SDW_TRY(write_chunk(w, c, &cols[c], rows, &g->chunks[c]));
  w->written_rows += rows;
  return SDW_OK;
}

static sdw_status flush_pending(sdw_parquet_writer *w) {
  if (w->pending_rows == 0) return SDW_OK;
  sdw_status st = write_group(w, w->pending, w->pending_rows);
  w->pending_rows = 0;
  for (int c = 0; c < w->nf; c++)
    sdw_parquet_array_free(&w->pending[c]);
  return st;
}

sdw_status sdw_parquet_writer_write_arrays(sdw_parquet_writer *w, const sdw_parquet_array *columns,
                                           int64_t num_rows) {
  if (w->error != SDW_OK) return w->error;
  SDW_ASSERT(num_rows >= 0);
  sdw_status st = flush_pending(w);
  if (st == SDW_OK) st = write_group(w, columns, num_rows);
  if (st != SDW_OK) w->error = st;
  return st;
}

/* --- row API ------------------------------------------------------------------------------ */

static sdw_parquet_array *cell(sdw_parquet_writer *w, int c, sdw_parquet_type type) {
  SDW_ASSERT(c >= 0 && c < w->nf);
  SDW_ASSERT_MSG(!w->set[c], "column '%s' set twice in one row", w->fields[c].name);
  SDW_ASSERT_MSG(w->fields[c].type == type, "column '%s' is %s, not %s", w->fields[c].name,
                 sdw_parquet_type_name(w->fields[c].type), sdw_parquet_type_name(type));
  w->set[c] = 1;
  return &w->pending[c];
}

void sdw_parquet_writer_set_null(sdw_parquet_writer *w, int c) {
  SDW_ASSERT(c >= 0 && c < w->nf);
  SDW_ASSERT_MSG(w->fields[c].nullable, "null in required column '%s'", w->fields[c].name);
  note(w, sdw_parquet_array_append_null(cell(w, c, w->fields[c].type)));
}

void sdw_parquet_writer_set_bool(sdw_parquet_writer *w, int c, bool v) {
  uint8_t b = v;
  note(w, sdw_parquet_array_append_value(cell(w, c, SDW_PARQUET_BOOLEAN), &b));
}
void sdw_parquet_writer_set_i32(sdw_parquet_writer *w, int c, int32_t v) {
  note(w, sdw_parquet_array_append_value(cell(w, c, SDW_PARQUET_INT32), &v));
}
void sdw_parquet_writer_set_i64(sdw_parquet_writer *w, int c, int64_t v) {
  note(w, sdw_parquet_array_append_value(cell(w, c, SDW_PARQUET_INT64), &v));
}
void sdw_parquet_writer_set_f32(sdw_parquet_writer *w, int c, float v) {
  note(w, sdw_parquet_array_append_value(cell(w, c, SDW_PARQUET_FLOAT), &v));
}
void sdw_parquet_writer_set_f64(sdw_parquet_writer *w, int c, double v) {
  note(w, sdw_parquet_array_append_value(cell(w, c, SDW_PARQUET_DOUBLE), &v));
}
void sdw_parquet_writer_set_bytes(sdw_parquet_writer *w, int c, const void *data, size_t size) {
  note(w, sdw_parquet_array_append_bytes(cell(w, c, SDW_PARQUET_BYTE_ARRAY), data, size));
}
void sdw_parquet_writer_set_str(sdw_parquet_writer *w, int c, const char *s) {
  if (!s)
    sdw_parquet_writer_set_null(w, c);
  else
    sdw_parquet_writer_set_bytes(w, c, s, strlen(s));
}

sdw_status sdw_parquet_writer_end_row(sdw_parquet_writer *w) {
  for (int c = 0; c < w->nf; c++) {
    SDW_ASSERT_MSG(w->set[c], "column '%s' not set in row %lld", w->fields[c].name,
                   (long long)sdw_parquet_writer_num_rows(w));
    w->set[c] = 0;
  }
  if (w->error != SDW_OK) return w->error;
  w->pending_rows++;
  if (w->pending_rows >= w->opts.row_group_rows) note(w, flush_pending(w));
  return w->error;
}

/* --- footer ------------------------------------------------------------------------------- */

static void write_footer(sdw_parquet_writer *w, sdw_thrift_writer *t) {
  sdw_thrift_write_field_i32(t, 1, 1); /* version */
  sdw_thrift_write_field_list(t, 2, SDW_THRIFT_STRUCT, (uint32_t)w->nf + 1);
  sdw_thrift_write_elem_struct_begin(t); /* root */
  sdw_thrift_write_field_binary(t, 4, "schema", 6);
  sdw_thrift_write_field_i32(t, 5, w->nf);
  sdw_thrift_write_struct_end(t);
  for (int c = 0; c < w->nf; c++) {
    const sdw_parquet_field *fd = &w->fields[c];
    sdw_thrift_write_elem_struct_begin(t);
    sdw_thrift_write_field_i32(t, 1, fd->type);
    sdw_thrift_write_field_i32(t, 3, fd->nullable ? REP_OPTIONAL : REP_REQUIRED);
    sdw_thrift_write_field_binary(t, 4, fd->name, strlen(fd->name));
    if (fd->logical == SDW_PARQUET_LOGICAL_STRING || fd->logical == SDW_PARQUET_LOGICAL_JSON) {
      bool str = fd->logical == SDW_PARQUET_LOGICAL_STRING;
      sdw_thrift_write_field_i32(t, 6, str ? 0 : 19); /* ConvertedType UTF8 / JSON */
      sdw_thrift_write_field_struct_begin(t, 10);     /* LogicalType */
      sdw_thrift_write_field_struct_begin(t, str ? 1 : 12);
      sdw_thrift_write_struct_end(t);
      sdw_thrift_write_struct_end(t);
    }
    sdw_thrift_write_struct_end(t);
  }
  sdw_thrift_write_field_i64(t, 3, w->written_rows);
  sdw_thrift_write_field_list(t, 4, SDW_THRIFT_STRUCT, (uint32_t)w->ngroups);
  for (int g = 0; g < w->ngroups; g++) {
    const group_meta *gm = &w->groups[g];
    int64_t unc = 0, comp = 0;
    for (int c = 0; c < w->nf; c++) {
      unc += gm->chunks[c].uncompressed;
      comp += gm->chunks[c].compressed;
    }
    sdw_thrift_write_elem_struct_begin(t); /* RowGroup */
    sdw_thrift_write_field_list(t, 1, SDW_THRIFT_STRUCT, (uint32_t)w->nf);
    for (int c = 0; c < w->nf; c++) {
      const chunk_meta *cm = &gm->chunks[c];
      const sdw_parquet_field *fd = &w->fields[c];
      sdw_thrift_write_elem_struct_begin(t); /* ColumnChunk */
      sdw_thrift_write_field_i64(t, 2, cm->offset);
      sdw_thrift_write_field_struct_begin(t, 3); /* ColumnMetaData */
      sdw_thrift_write_field_i32(t, 1, fd->type);
      sdw_thrift_write_field_list(t, 2, SDW_THRIFT_I32, 2);
      sdw_thrift_write_elem_i32(t, ENC_PLAIN);
      sdw_thrift_write_elem_i32(t, ENC_RLE);
      sdw_thrift_write_field_list(t, 3, SDW_THRIFT_BINARY, 1);
      sdw_thrift_write_elem_binary(t, fd->name, strlen(fd->name));
      sdw_thrift_write_field_i32(t, 4, w->opts.codec);
      sdw_thrift_write_field_i64(t, 5, gm->num_rows);
      sdw_thrift_write_field_i64(t, 6, cm->uncompressed);
      sdw_thrift_write_field_i64(t, 7, cm->compressed);
      sdw_thrift_write_field_i64(t, 9, cm->offset);
      sdw_thrift_write_field_struct_begin(t, 12); /* Statistics */
      sdw_thrift_write_field_i64(t, 3, cm->null_count);
      sdw_thrift_write_struct_end(t);
      sdw_thrift_write_struct_end(t); /* ColumnMetaData */
      sdw_thrift_write_struct_end(t); /* ColumnChunk */
    }
    sdw_thrift_write_field_i64(t, 2, unc);
    sdw_thrift_write_field_i64(t, 3, gm->num_rows);
    sdw_thrift_write_field_i64(t, 5, gm->chunks[0].offset);
    sdw_thrift_write_field_i64(t, 6, comp);
    sdw_thrift_write_struct_end(t); /* RowGroup */
  }
  if (w->nkv) {
    sdw_thrift_write_field_list(t, 5, SDW_THRIFT_STRUCT, (uint32_t)w->nkv);
    for (int i = 0; i < w->nkv; i++) {
      sdw_thrift_write_elem_struct_begin(t);
      sdw_thrift_write_field_binary(t, 1, w->kv[2 * i], strlen(w->kv[2 * i]));
      sdw_thrift_write_field_binary(t, 2, w->kv[2 * i + 1], strlen(w->kv[2 * i + 1]));
      sdw_thrift_write_struct_end(t);
    }
  }
  sdw_thrift_write_field_binary(t, 6, w->created_by, strlen(w->created_by));
  sdw_thrift_write_stop(t);
}

static void writer_free(sdw_parquet_writer *w) {
  for (int c = 0; c < w->nf; c++) {
    if (w->fields) free((char *)w->fields[c].name);
    if (w->pending) sdw_parquet_array_free(&w->pending[c]);
  }
  for (int g = 0; g < w->ngroups; g++)
    free(w->groups[g].chunks);
  for (int i = 0; i < 2 * w->nkv; i++)
    free(w->kv[i]);
  free(w->kv);
  free(w->groups);
  free(w->fields);
  free(w->pending);
  free(w->set);
  free(w->body);
  free(w->packed);
  free(w->created_by);
  free(w->path);
  sdw_thrift_writer_free(&w->tw);
  free(w);
}

sdw_status sdw_parquet_writer_close(sdw_parquet_writer *w) {
  sdw_status st = w->error;
  if (st == SDW_OK) st = flush_pending(w);
  if (st == SDW_OK) {
    sdw_thrift_writer t;
    sdw_thrift_writer_init(&t);
    write_footer(w, &t);
    uint8_t tail[8];
    put_le32(tail, (uint32_t)t.len);
    memcpy(tail + 4, "PAR1", 4);
    if (t.failed || t.len > UINT32_MAX) st = wfail_oom(w);
    if (st == SDW_OK) st = sdw_atomic_file_write(w->file, t.buf, t.len);
    if (st == SDW_OK) st = sdw_atomic_file_write(w->file, tail, 8);
    sdw_thrift_writer_free(&t);
  }
  if (st == SDW_OK) {
    st = sdw_atomic_file_commit(w->file);
  } else {
    sdw_atomic_file_abort(w->file);
  }
  w->file = NULL;
  writer_free(w);
  return st;
}

void sdw_parquet_writer_abort(sdw_parquet_writer *w) {
  if (!w) return;
  sdw_atomic_file_abort(w->file);
  writer_free(w);
}
