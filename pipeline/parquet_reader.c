/* Parquet reader: see parquet_reader.h. Field numbers below are those of
 * apache/parquet-format src/main/thrift/parquet.thrift. */
#include "pipeline/parquet_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/thrift_compact.h"

/* parquet.thrift PageType and FieldRepetitionType. */
enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { REP_REQUIRED = 0, REP_OPTIONAL = 1, REP_REPEATED = 2 };

enum { MAX_SCHEMA_DEPTH = 64 };

typedef struct pq_chunk {
  int32_t type;
  int32_t codec;
  int64_t num_values;
  int64_t total_compressed_size, total_uncompressed_size;
  int64_t data_page_offset;
  int64_t dictionary_page_offset; /* <= 0: none */
  bool has_meta;
  bool external; /* ColumnChunk.file_path is set */
} pq_chunk;

typedef struct pq_row_group {
  int64_t num_rows;
  int num_chunks;
  pq_chunk *chunks;
} pq_row_group;

struct sdw_parquet_file {
  char *name;
  const uint8_t *data;
  size_t size;
  void *map;
  size_t max_memory;
  int64_t num_rows;
  int num_columns;
  sdw_parquet_column_info *columns;
  int num_row_groups;
  pq_row_group *row_groups;
  char *created_by;
  int num_kv;
  char **kv; /* key, value, key, value, ... (value NULL when absent) */
};

static sdw_status file_fail(const char *file, sdw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sdw_status file_fail(const char *file, sdw_status code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return sdw_fail(code, "%s: %s", file, msg);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static char *dup_bytes(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* --- footer ------------------------------------------------------------------------ */

typedef struct schema_el {
  bool has_type, has_children, has_converted, has_name;
  int32_t type, type_length, repetition, num_children, converted, scale, precision;
  const uint8_t *name;
  uint32_t name_len;
  int logical_id; /* LogicalType union member, 0 = none */
  int lt_bits;
  bool lt_signed, lt_utc;
  int lt_unit;
  int32_t lt_scale, lt_precision;
} schema_el;

#define FIELDS_BEGIN(r)                                                                            \
  sdw_thrift_struct_begin(r);                                                                      \
  int16_t last_id_ = 0, id;                                                                        \
  uint8_t t;                                                                                       \
  while (sdw_thrift_field_next(r, &last_id_, &id, &t))
#define FIELDS_END(r) sdw_thrift_struct_end(r)

static int parse_time_unit(sdw_thrift_reader *r) {
  int unit = SDW_PARQUET_MILLIS;
  FIELDS_BEGIN(r) {
    if (id >= 1 && id <= 3) unit = id - 1;
    sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
  return unit;
}

static void parse_decimal(sdw_thrift_reader *r, schema_el *e) {
  FIELDS_BEGIN(r) {
    if (id == 1)
      e->lt_scale = sdw_thrift_read_i32(r, t);
    else if (id == 2)
      e->lt_precision = sdw_thrift_read_i32(r, t);
    else
      sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
}

static void parse_time(sdw_thrift_reader *r, schema_el *e) {
  FIELDS_BEGIN(r) {
    if (id == 1)
      e->lt_utc = sdw_thrift_read_bool(r, t);
    else if (id == 2 && t == SDW_THRIFT_STRUCT)
      e->lt_unit = parse_time_unit(r);
    else
      sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
}

static void parse_int_type(sdw_thrift_reader *r, schema_el *e) {
  FIELDS_BEGIN(r) {
    if (id == 1)
      e->lt_bits = sdw_thrift_read_i32(r, t);
    else if (id == 2)
      e->lt_signed = sdw_thrift_read_bool(r, t);
    else
      sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
}

static void parse_logical(sdw_thrift_reader *r, schema_el *e) {
  FIELDS_BEGIN(r) {
    if (t != SDW_THRIFT_STRUCT) {
      sdw_thrift_skip(r, t);
      continue;
    }
    e->logical_id = id;
    if (id == 5)
      parse_decimal(r, e);
    else if (id == 7 || id == 8)
      parse_time(r, e);
    else if (id == 10)
      parse_int_type(r, e);
    else
      sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
}

static void parse_schema_el(sdw_thrift_reader *r, schema_el *e) {
  memset(e, 0, sizeof *e);
  e->repetition = REP_REQUIRED;
  FIELDS_BEGIN(r) {
    switch (id) {
    case 1:
      e->type = sdw_thrift_read_i32(r, t);
      e->has_type = true;
      break;
    case 2: e->type_length = sdw_thrift_read_i32(r, t); break;
    case 3: e->repetition = sdw_thrift_read_i32(r, t); break;
    case 4:
      sdw_thrift_read_binary(r, t, &e->name, &e->name_len);
      e->has_name = true;
      break;
    case 5:
      e->num_children = sdw_thrift_read_i32(r, t);
      e->has_children = true;
      break;
    case 6:
      e->converted = sdw_thrift_read_i32(r, t);
      e->has_converted = true;
      break;
    case 7: e->scale = sdw_thrift_read_i32(r, t); break;
    case 8: e->precision = sdw_thrift_read_i32(r, t); break;
    case 10:
      if (t == SDW_THRIFT_STRUCT)
        parse_logical(r, e);
      else
        sdw_thrift_skip(r, t);
      break;
    default: sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

static void parse_column_meta(sdw_thrift_reader *r, pq_chunk *c) {
  c->has_meta = true;
  FIELDS_BEGIN(r) {
    switch (id) {
    case 1: c->type = sdw_thrift_read_i32(r, t); break;
    case 4: c->codec = sdw_thrift_read_i32(r, t); break;
    case 5: c->num_values = sdw_thrift_read_i64(r, t); break;
    case 6: c->total_uncompressed_size = sdw_thrift_read_i64(r, t); break;
    case 7: c->total_compressed_size = sdw_thrift_read_i64(r, t); break;
    case 9: c->data_page_offset = sdw_thrift_read_i64(r, t); break;
    case 11: c->dictionary_page_offset = sdw_thrift_read_i64(r, t); break;
    default: sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

static void parse_column_chunk(sdw_thrift_reader *r, pq_chunk *c) {
  memset(c, 0, sizeof *c);
  FIELDS_BEGIN(r) {
    if (id == 1 && t == SDW_THRIFT_BINARY) {
      c->external = true;
      sdw_thrift_skip(r, t);
    } else if (id == 3 && t == SDW_THRIFT_STRUCT) {
      parse_column_meta(r, c);
    } else {
      sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

/* Parses a RowGroup; allocation failures set *oom. */
static void parse_row_group(sdw_thrift_reader *r, pq_row_group *g, bool *oom) {
  memset(g, 0, sizeof *g);
  g->num_rows = -1;
  FIELDS_BEGIN(r) {
    if (id == 1 && !g->chunks) {
      uint8_t et;
      uint32_t n;
      sdw_thrift_list_begin(r, t, &et, &n);
      if (!r->failed && n > 0) {
        if (et != SDW_THRIFT_STRUCT) {
          r->failed = true;
          r->error = "row group columns are not structs";
        } else if (!(g->chunks = calloc(n, sizeof *g->chunks))) {
          *oom = true;
          r->failed = true;
          r->error = "out of memory";
        } else {
          g->num_chunks = (int)n;
          for (uint32_t i = 0; i < n && !r->failed; i++)
            parse_column_chunk(r, &g->chunks[i]);
        }
      }
      sdw_thrift_list_end(r);
    } else if (id == 3) {
      g->num_rows = sdw_thrift_read_i64(r, t);
    } else {
      sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

static void parse_key_value(sdw_thrift_reader *r, const uint8_t **k, uint32_t *kn, bool *hk,
                            const uint8_t **v, uint32_t *vn, bool *hv) {
  FIELDS_BEGIN(r) {
    if (id == 1 && !*hk) {
      sdw_thrift_read_binary(r, t, k, kn);
      *hk = true;
    } else if (id == 2 && !*hv) {
      sdw_thrift_read_binary(r, t, v, vn);
      *hv = true;
    } else {
      sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

static void file_free_meta(sdw_parquet_file *f) {
  for (int i = 0; i < f->num_columns; i++)
    free((char *)f->columns[i].name);
  free(f->columns);
  for (int i = 0; i < f->num_row_groups; i++)
    free(f->row_groups[i].chunks);
  free(f->row_groups);
  for (int i = 0; i < 2 * f->num_kv; i++)
    free(f->kv[i]);
  free(f->kv);
  free(f->created_by);
}

/* --- schema tree ------------------------------------------------------------------- */

typedef struct schema_walk {
  const schema_el *els;
  int n, next;
  sdw_parquet_file *f;
  char *path;
  size_t path_len, path_cap;
} schema_walk;

static void leaf_logical(const schema_el *e, sdw_parquet_column_info *c) {
  c->logical = SDW_PARQUET_LOGICAL_NONE;
  if (e->logical_id) {
    switch (e->logical_id) {
    case 1: c->logical = SDW_PARQUET_LOGICAL_STRING; break;
    case 4: c->logical = SDW_PARQUET_LOGICAL_ENUM; break;
    case 5:
      c->logical = SDW_PARQUET_LOGICAL_DECIMAL;
      c->scale = e->lt_scale;
      c->precision = e->lt_precision;
      break;
    case 6: c->logical = SDW_PARQUET_LOGICAL_DATE; break;
    case 7:
    case 8:
      c->logical = e->logical_id == 7 ? SDW_PARQUET_LOGICAL_TIME : SDW_PARQUET_LOGICAL_TIMESTAMP;
      c->time_unit = (sdw_parquet_time_unit)e->lt_unit;
      c->utc_adjusted = e->lt_utc;
      break;
    case 10:
      c->logical = SDW_PARQUET_LOGICAL_INT;
      c->int_bits = e->lt_bits;
      c->int_signed = e->lt_signed;
      break;
    case 11: c->logical = SDW_PARQUET_LOGICAL_NULL; break;
    case 12: c->logical = SDW_PARQUET_LOGICAL_JSON; break;
    case 13: c->logical = SDW_PARQUET_LOGICAL_BSON; break;
    case 14: c->logical = SDW_PARQUET_LOGICAL_UUID; break;
    case 15: c->logical = SDW_PARQUET_LOGICAL_FLOAT16; break;
    default: c->logical = SDW_PARQUET_LOGICAL_OTHER; break;
    }
    return;
  }
  if (!e->has_converted) return;
  int ct = e->converted;
  switch (ct) {
  case 0: c->logical = SDW_PARQUET_LOGICAL_STRING; break;
  case 4: c->logical = SDW_PARQUET_LOGICAL_ENUM; break;
  case 5:
    c->logical = SDW_PARQUET_LOGICAL_DECIMAL;
    c->scale = e->scale;
    c->precision = e->precision;
    break;
  case 6: c->logical = SDW_PARQUET_LOGICAL_DATE; break;
  case 7:
  case 8:
  case 9:
  case 10:
    c->logical = ct <= 8 ? SDW_PARQUET_LOGICAL_TIME : SDW_PARQUET_LOGICAL_TIMESTAMP;
    c->time_unit = (ct == 7 || ct == 9) ? SDW_PARQUET_MILLIS : SDW_PARQUET_MICROS;
    c->utc_adjusted = true;
    break;
  case 11:
  case 12:
  case 13:
  case 14:
  case 15:
  case 16:
  case 17:
  case 18:
    c->logical = SDW_PARQUET_LOGICAL_INT;
    c->int_bits = 8 << ((ct - 11) % 4);
    c->int_signed = ct >= 15;
    break;
  case 19: c->logical = SDW_PARQUET_LOGICAL_JSON; break;
  case 20: c->logical = SDW_PARQUET_LOGICAL_BSON; break;
  case 21: c->logical = SDW_PARQUET_LOGICAL_INTERVAL; break;
  default: c->logical = SDW_PARQUET_LOGICAL_OTHER; break;
  }
}

static sdw_status walk_child(schema_walk *w, int depth, int def, int rep) {
  sdw_parquet_file *f = w->f;
  if (depth > MAX_SCHEMA_DEPTH)
    return file_fail(f->name, SDW_ERR_FORMAT, "the schema is nested more than %d levels deep",
                     MAX_SCHEMA_DEPTH);
  if (w->next >= w->n)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "the schema declares more children than it has elements");
  const schema_el *e = &w->els[w->next++];
  if (e->repetition < REP_REQUIRED || e->repetition > REP_REPEATED)
    return file_fail(f->name, SDW_ERR_FORMAT, "schema element %d has repetition type %d",
                     w->next - 1, (int)e->repetition);
  if (e->repetition != REP_REQUIRED) def++;
  if (e->repetition == REP_REPEATED) rep++;
  size_t saved = w->path_len;
  size_t need = w->path_len + 1 + e->name_len + 1;
  if (need > w->path_cap) {
    size_t cap = need * 2;
    char *p = realloc(w->path, cap);
    if (!p) return file_fail(f->name, SDW_ERR_OUT_OF_MEMORY, "out of memory reading the schema");
    w->path = p;
    w->path_cap = cap;
  }
  if (w->path_len) w->path[w->path_len++] = '.';
  if (e->name_len) memcpy(w->path + w->path_len, e->name, e->name_len);
  w->path_len += e->name_len;
  w->path[w->path_len] = '\0';

  bool leaf = e->has_type && (!e->has_children || e->num_children == 0);
  if (!leaf) {
    if (!e->has_children)
      return file_fail(f->name, SDW_ERR_FORMAT,
                       "schema element '%s' has neither a type nor children", w->path);
    if (e->num_children < 0 || e->num_children > w->n - w->next)
      return file_fail(f->name, SDW_ERR_FORMAT,
                       "schema element '%s' declares %d children, more than the schema has",
                       w->path, (int)e->num_children);
    for (int i = 0; i < e->num_children; i++)
      SDW_TRY(walk_child(w, depth + 1, def, rep));
  } else {
    if (e->type < SDW_PARQUET_BOOLEAN || e->type > SDW_PARQUET_FIXED_LEN_BYTE_ARRAY)
      return file_fail(f->name, SDW_ERR_FORMAT, "column '%s' has unknown physical type %d", w->path,
                       (int)e->type);
    sdw_parquet_column_info *c = &f->columns[f->num_columns];
    memset(c, 0, sizeof *c);
    c->name = dup_bytes((const uint8_t *)w->path, w->path_len);
    if (!c->name)
      return file_fail(f->name, SDW_ERR_OUT_OF_MEMORY, "out of memory reading the schema");
    f->num_columns++;
    c->type = (sdw_parquet_type)e->type;
    c->type_length = e->type == SDW_PARQUET_INT96 ? 12 : e->type_length;
    if (c->type == SDW_PARQUET_FIXED_LEN_BYTE_ARRAY && c->type_length <= 0)
      return file_fail(f->name, SDW_ERR_FORMAT,
                       "FIXED_LEN_BYTE_ARRAY column '%s' has type_length %d", w->path,
                       (int)c->type_length);
    leaf_logical(e, c);
    c->max_def_level = def;
    c->max_rep_level = rep;
    c->nullable = def > 0;
    c->supported = rep == 0;
  }
  w->path_len = saved;
  return SDW_OK;
}

static sdw_status build_schema(sdw_parquet_file *f, const schema_el *els, int n) {
  if (n < 1) return file_fail(f->name, SDW_ERR_FORMAT, "the schema is empty");
  const schema_el *root = &els[0];
  int children = root->has_children ? root->num_children : 0;
  if (children < 0 || children > n - 1)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "the schema root declares %d children but the schema has %d elements",
                     children, n);
  f->columns = calloc((size_t)n, sizeof *f->columns);
  if (!f->columns)
    return file_fail(f->name, SDW_ERR_OUT_OF_MEMORY, "out of memory reading the schema");
  schema_walk w = {.els = els, .n = n, .next = 1, .f = f};
  sdw_status st = SDW_OK;
  for (int i = 0; i < children && st == SDW_OK; i++)
    st = walk_child(&w, 1, 0, 0);
  free(w.path);
  if (st == SDW_OK && w.next != n)
    st = file_fail(f->name, SDW_ERR_FORMAT, "the schema has %d elements but its tree uses %d", n,
                   w.next);
  return st;
}

static sdw_status parse_footer(sdw_parquet_file *f) {
  const uint8_t *d = f->data;
  size_t size = f->size;
  if (size < 12)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "is %zu bytes long, too short for a parquet file (magic, footer, magic)",
                     size);
  if (memcmp(d + size - 4, "PARE", 4) == 0)
    return file_fail(f->name, SDW_ERR_UNSUPPORTED,
                     "has an encrypted footer (PARE), which is not supported");
  if (memcmp(d, "PAR1", 4) != 0 || memcmp(d + size - 4, "PAR1", 4) != 0)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "is not a parquet file (no PAR1 magic at its start and end)");
  uint32_t flen = le32(d + size - 8);
  if (flen > size - 12)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "declares a footer of %u bytes but the file has only %zu bytes before it",
                     flen, size - 12);
  const uint8_t *footer = d + size - 8 - flen;
  sdw_thrift_reader r;
  sdw_thrift_reader_init(&r, footer, flen);

  schema_el *els = NULL;
  int nels = 0;
  bool have_schema = false, have_rows = false, have_groups = false, oom = false;
  int64_t file_rows = 0;
  sdw_status st = SDW_OK;

  FIELDS_BEGIN(&r) {
    if (id == 2 && !have_schema) {
      uint8_t et;
      uint32_t n;
      sdw_thrift_list_begin(&r, t, &et, &n);
      have_schema = true;
      if (!r.failed && n > 0) {
        if (et != SDW_THRIFT_STRUCT) {
          r.failed = true;
          r.error = "schema elements are not structs";
        } else if (!(els = calloc(n, sizeof *els))) {
          oom = true;
          r.failed = true;
        } else {
          nels = (int)n;
          for (uint32_t i = 0; i < n && !r.failed; i++)
            parse_schema_el(&r, &els[i]);
        }
      }
      sdw_thrift_list_end(&r);
    } else if (id == 3) {
      file_rows = sdw_thrift_read_i64(&r, t);
      have_rows = true;
    } else if (id == 4 && !have_groups) {
      uint8_t et;
      uint32_t n;
      sdw_thrift_list_begin(&r, t, &et, &n);
      have_groups = true;
      if (!r.failed && n > 0) {
        if (et != SDW_THRIFT_STRUCT) {
          r.failed = true;
          r.error = "row groups are not structs";
        } else if (n > INT32_MAX || !(f->row_groups = calloc(n, sizeof *f->row_groups))) {
          oom = true;
          r.failed = true;
        } else {
          for (uint32_t i = 0; i < n && !r.failed; i++) {
            parse_row_group(&r, &f->row_groups[i], &oom);
            f->num_row_groups = (int)i + 1;
          }
        }
      }
      sdw_thrift_list_end(&r);
    } else if (id == 5 && !f->kv) {
      uint8_t et;
      uint32_t n;
      sdw_thrift_list_begin(&r, t, &et, &n);
      if (!r.failed && n > 0) {
        if (et != SDW_THRIFT_STRUCT) {
          r.failed = true;
          r.error = "key/value metadata entries are not structs";
        } else if (!(f->kv = calloc((size_t)n * 2, sizeof *f->kv))) {
          oom = true;
          r.failed = true;
        } else {
          for (uint32_t i = 0; i < n && !r.failed; i++) {
            const uint8_t *k = NULL, *v = NULL;
            uint32_t kn = 0, vn = 0;
            bool hk = false, hv = false;
            parse_key_value(&r, &k, &kn, &hk, &v, &vn, &hv);
            if (r.failed) break;
            f->kv[2 * i] = dup_bytes(hk ? k : (const uint8_t *)"", kn);
            f->kv[2 * i + 1] = hv ? dup_bytes(v, vn) : NULL;
            f->num_kv = (int)i + 1;
            if (!f->kv[2 * i] || (hv && !f->kv[2 * i + 1])) {
              oom = true;
              r.failed = true;
            }
          }
        }
      }
      sdw_thrift_list_end(&r);
    } else if (id == 6 && !f->created_by) {
      const uint8_t *s;
      uint32_t n;
      sdw_thrift_read_binary(&r, t, &s, &n);
      if (!r.failed && !(f->created_by = dup_bytes(s, n))) {
        oom = true;
        r.failed = true;
      }
    } else {
      sdw_thrift_skip(&r, t);
    }
  }
  FIELDS_END(&r);

  if (oom) {
    st = file_fail(f->name, SDW_ERR_OUT_OF_MEMORY, "out of memory reading the footer");
  } else if (r.failed) {
    st = file_fail(f->name, SDW_ERR_FORMAT, "the footer (FileMetaData) is corrupt: %s", r.error);
  } else if (!have_schema || !have_rows || !have_groups) {
    st = file_fail(f->name, SDW_ERR_FORMAT, "the footer lacks its %s",
                   !have_schema ? "schema"
                   : !have_rows ? "row count"
                                : "row group list");
  } else {
    st = build_schema(f, els, nels);
  }
  free(els);
  if (st != SDW_OK) return st;

  if (!f->created_by && !(f->created_by = dup_bytes((const uint8_t *)"", 0)))
    return file_fail(f->name, SDW_ERR_OUT_OF_MEMORY, "out of memory");
  int64_t total = 0;
  for (int g = 0; g < f->num_row_groups; g++) {
    const pq_row_group *rg = &f->row_groups[g];
    if (rg->num_rows < 0)
      return file_fail(f->name, SDW_ERR_FORMAT, "row group %d has no valid row count", g);
    if (rg->num_chunks != f->num_columns)
      return file_fail(f->name, SDW_ERR_FORMAT,
                       "row group %d has %d column chunks but the schema has %d columns", g,
                       rg->num_chunks, f->num_columns);
    if (rg->num_rows > INT64_MAX - total)
      return file_fail(f->name, SDW_ERR_FORMAT, "the row counts overflow");
    total += rg->num_rows;
  }
  if (file_rows != total)
    return file_fail(f->name, SDW_ERR_FORMAT,
                     "the footer declares %lld rows but its row groups hold %lld",
                     (long long)file_rows, (long long)total);
  f->num_rows = total;
  return SDW_OK;
}

/* --- open / close / metadata ---------------------------------------------------------- */

static sdw_status open_common(sdw_parquet_file *f, const sdw_parquet_read_options *opts,
                              sdw_parquet_file **out) {
  f->max_memory = opts && opts->max_memory ? opts->max_memory : SDW_PARQUET_DEFAULT_MAX_MEMORY;
  sdw_status st = parse_footer(f);
  if (st != SDW_OK) {
    sdw_parquet_close(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

sdw_status sdw_parquet_open_memory(const void *data, size_t size, const char *name,
                                   const sdw_parquet_read_options *opts, sdw_parquet_file **out) {
  *out = NULL;
  sdw_parquet_file *f = calloc(1, sizeof *f);
  if (!f || !(f->name = strdup(name ? name : "parquet"))) {
    free(f);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", name ? name : "parquet");
  }
  f->data = data;
  f->size = size;
  return open_common(f, opts, out);
}

sdw_status sdw_parquet_open(const char *path, const sdw_parquet_read_options *opts,
                            sdw_parquet_file **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return sdw_fail(err == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: cannot open: %s", path,
                    strerror(err));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int err = errno;
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  void *map = NULL;
  if (size > 0) {
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      close(fd);
      return sdw_fail(err == ENOMEM ? SDW_ERR_OUT_OF_MEMORY : SDW_ERR_IO, "%s: cannot map: %s",
                      path, strerror(err));
    }
  }
  close(fd);
  sdw_parquet_file *f = calloc(1, sizeof *f);
  if (!f || !(f->name = strdup(path))) {
    free(f);
    if (map) munmap(map, size);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  }
  f->map = map;
  f->data = map ? map : (const uint8_t *)"";
  f->size = size;
  return open_common(f, opts, out);
}

void sdw_parquet_close(sdw_parquet_file *f) {
  if (!f) return;
  file_free_meta(f);
  if (f->map) munmap(f->map, f->size);
  free(f->name);
  free(f);
}

const char *sdw_parquet_name(const sdw_parquet_file *f) { return f->name; }
int64_t sdw_parquet_num_rows(const sdw_parquet_file *f) { return f->num_rows; }
int sdw_parquet_num_columns(const sdw_parquet_file *f) { return f->num_columns; }
int sdw_parquet_num_row_groups(const sdw_parquet_file *f) { return f->num_row_groups; }
const char *sdw_parquet_created_by(const sdw_parquet_file *f) { return f->created_by; }

const sdw_parquet_column_info *sdw_parquet_column(const sdw_parquet_file *f, int column) {
  SDW_ASSERT(column >= 0 && column < f->num_columns);
  return &f->columns[column];
}

int64_t sdw_parquet_row_group_num_rows(const sdw_parquet_file *f, int row_group) {
  SDW_ASSERT(row_group >= 0 && row_group < f->num_row_groups);
  return f->row_groups[row_group].num_rows;
}

int sdw_parquet_find_column(const sdw_parquet_file *f, const char *name) {
  for (int i = 0; i < f->num_columns; i++)
    if (strcmp(f->columns[i].name, name) == 0) return i;
  return -1;
}

const char *sdw_parquet_metadata_get(const sdw_parquet_file *f, const char *key) {
  for (int i = 0; i < f->num_kv; i++)
    if (strcmp(f->kv[2 * i], key) == 0) return f->kv[2 * i + 1];
  return NULL;
}

/* --- reading a column chunk ------------------------------------------------------------ */

typedef struct chunk_ctx {
  const sdw_parquet_file *f;
  const sdw_parquet_column_info *col;
  const pq_chunk *ch;
  int rg, ci;
  size_t budget; /* bytes this read may still allocate */
  bool has_dict;
  sdw_parquet_array dict;
  uint8_t *page_buf;
  size_t page_cap;
  uint32_t *u32; /* levels, dictionary indices */
  size_t u32_cap;
  uint64_t *u64; /* DELTA_* values */
  size_t u64_cap;
  uint8_t *prev; /* DELTA_BYTE_ARRAY: the previous page's last value */
  size_t prev_len, prev_cap;
} chunk_ctx;

static sdw_status chunk_fail(const chunk_ctx *c, sdw_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sdw_status chunk_fail(const chunk_ctx *c, sdw_status code, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return sdw_fail(code, "%s: column '%s', row group %d: %s", c->f->name, c->col->name, c->rg, msg);
}

#define CORRUPT(...) chunk_fail(c, SDW_ERR_FORMAT, __VA_ARGS__)

static sdw_status charge(chunk_ctx *c, uint64_t bytes) {
  if (bytes > c->budget)
    return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY,
                      "reading it needs more than the reader's memory limit of %zu bytes "
                      "(sdw_parquet_read_options.max_memory)",
                      c->f->max_memory);
  c->budget -= (size_t)bytes;
  return SDW_OK;
}

static sdw_status scratch_u32(chunk_ctx *c, size_t n) {
  if (n <= c->u32_cap) return SDW_OK;
  SDW_TRY(charge(c, (n - c->u32_cap) * sizeof(uint32_t)));
  uint32_t *p = realloc(c->u32, n * sizeof *p);
  if (!p) return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
  c->u32 = p;
  c->u32_cap = n;
  return SDW_OK;
}

static sdw_status scratch_u64(chunk_ctx *c, size_t n) {
  if (n <= c->u64_cap) return SDW_OK;
  SDW_TRY(charge(c, (n - c->u64_cap) * sizeof(uint64_t)));
  uint64_t *p = realloc(c->u64, n * sizeof *p);
  if (!p) return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
  c->u64 = p;
  c->u64_cap = n;
  return SDW_OK;
}

/* Room for extra more bytes of string data in a. */
static sdw_status reserve_data(chunk_ctx *c, sdw_parquet_array *a, size_t extra) {
  if (a->data_size + extra <= a->cap_data) return SDW_OK;
  SDW_TRY(charge(c, extra));
  if (sdw_parquet_array_reserve(a, 0, extra) != SDW_OK)
    return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
  return SDW_OK;
}

/* Room for n more rows in a. Charged when the array has to grow. */
static sdw_status reserve_values(chunk_ctx *c, sdw_parquet_array *a, int64_t n) {
  if ((uint64_t)a->length + (uint64_t)n <= a->cap_length) return SDW_OK;
  size_t vs = sdw_parquet_value_size(c->col->type);
  if ((uint64_t)n > SIZE_MAX / 32) return charge(c, UINT64_MAX);
  SDW_TRY(charge(c, (uint64_t)n * (vs ? vs : 8) + (uint64_t)n / 8 + 8));
  if (sdw_parquet_array_reserve(a, (size_t)n, 0) != SDW_OK)
    return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory for %lld rows", (long long)n);
  return SDW_OK;
}

/* -- RLE / bit-packed hybrid (definition levels, dictionary indices, booleans) -- */

typedef struct rle_dec {
  const uint8_t *p, *end;
  int bw;
  uint32_t mask;
  uint64_t left; /* values left in the current run */
  bool packed;
  uint32_t value;             /* RLE run value */
  const uint8_t *bp, *bp_end; /* bit-packed run bytes */
  uint64_t bit;               /* next bit in the bit-packed run */
  bool bad;                   /* malformed (as opposed to merely ended) */
} rle_dec;

static void rle_init(rle_dec *d, const uint8_t *p, const uint8_t *end, int bw) {
  memset(d, 0, sizeof *d);
  d->p = p;
  d->end = end;
  d->bw = bw;
  d->mask = bw >= 32 ? 0xffffffffu : (1u << bw) - 1;
}

static bool rle_next_run(rle_dec *d) {
  while (d->p < d->end) {
    uint64_t h = 0;
    int i = 0;
    for (;; i++) {
      if (i == 5 || d->p >= d->end) {
        d->bad = true;
        return false;
      }
      uint8_t b = *d->p++;
      h |= (uint64_t)(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) break;
    }
    if (h > UINT32_MAX) {
      d->bad = true;
      return false;
    }
    if (h & 1) {
      uint64_t groups = h >> 1, bytes = groups * (uint64_t)d->bw;
      uint64_t avail = (uint64_t)(d->end - d->p);
      uint64_t count = groups * 8;
      if (bytes > avail) { /* a final run may stop short of its last group */
        bytes = avail;
        count = avail * 8 / (uint64_t)d->bw;
      }
      d->packed = true;
      d->bp = d->p;
      d->bp_end = d->p + bytes;
      d->bit = 0;
      d->p += bytes;
      d->left = count;
    } else {
      int nb = (d->bw + 7) / 8;
      if (d->end - d->p < nb) {
        d->bad = true;
        return false;
      }
      uint32_t v = 0;
      for (int k = 0; k < nb; k++)
        v |= (uint32_t)d->p[k] << (8 * k);
      d->p += nb;
      if (v > d->mask) {
        d->bad = true;
        return false;
      }
      d->packed = false;
      d->value = v;
      d->left = h >> 1;
    }
    if (d->left) return true;
  }
  return false;
}

/* Decodes up to n values; returns how many (fewer when the data ends). */
static int64_t rle_get(rle_dec *d, uint32_t *out, int64_t n) {
  int64_t got = 0;
  while (got < n) {
    if (!d->left && !rle_next_run(d)) break;
    uint64_t k = d->left < (uint64_t)(n - got) ? d->left : (uint64_t)(n - got);
    if (d->packed) {
      const int bw = d->bw;
      const uint32_t mask = d->mask;
      uint64_t bit = d->bit;
      for (uint64_t j = 0; j < k; j++, bit += (uint64_t)bw) {
        const uint8_t *q = d->bp + (bit >> 3);
        uint64_t w = 0;
        if (d->bp_end - q >= 8)
          memcpy(&w, q, 8);
        else
          memcpy(&w, q, (size_t)(d->bp_end - q));
        out[got + (int64_t)j] = (uint32_t)(w >> (bit & 7)) & mask;
      }
      d->bit = bit;
    } else {
      uint32_t v = d->value;
      for (uint64_t j = 0; j < k; j++)
        out[got + (int64_t)j] = v;
    }
    d->left -= k;
    got += (int64_t)k;
  }
  return got;
}

/* -- DELTA_BINARY_PACKED --------------------------------------------------------- */

static bool read_uvarint(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
  const uint8_t *p = *pp;
  uint64_t x = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) return false;
    uint8_t b = *p++;
    if (shift == 63 && (b & 0x7e)) return false;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *pp = p;
      *v = x;
      return true;
    }
  }
  return false;
}

static uint64_t bits_at(const uint8_t *p, uint64_t bit, int w) {
  if (w == 0) return 0;
  const uint8_t *q = p + (bit >> 3);
  unsigned sh = (unsigned)(bit & 7), nb = (sh + (unsigned)w + 7) / 8;
  uint8_t tmp[16] = {0};
  memcpy(tmp, q, nb);
  uint64_t lo;
  memcpy(&lo, tmp, 8);
  uint64_t v = lo >> sh;
  if (sh && nb > 8) v |= (uint64_t)tmp[8] << (64 - sh);
  return w == 64 ? v : v & ((UINT64_C(1) << w) - 1);
}

/* Decodes exactly n values (the header's total must be n) into out and sets
 * *next past the encoded data. max_bits: 32 for INT32 and lengths, else 64. */
static sdw_status dbp_decode(chunk_ctx *c, const uint8_t *p, const uint8_t *end, uint64_t *out,
                             int64_t n, int max_bits, const uint8_t **next) {
  uint64_t block, minis, total, zz;
  if (!read_uvarint(&p, end, &block) || !read_uvarint(&p, end, &minis) ||
      !read_uvarint(&p, end, &total) || !read_uvarint(&p, end, &zz))
    return CORRUPT("a DELTA_BINARY_PACKED header is truncated");
  if (block == 0 || block % 128 || minis == 0 || block % minis || (block / minis) % 32 ||
      block > (1u << 24))
    return CORRUPT("a DELTA_BINARY_PACKED header has block size %llu with %llu miniblocks",
                   (unsigned long long)block, (unsigned long long)minis);
  if (total != (uint64_t)n)
    return CORRUPT("a DELTA_BINARY_PACKED run holds %llu values where %lld are expected",
                   (unsigned long long)total, (long long)n);
  uint64_t per_mini = block / minis;
  int64_t got = 0;
  uint64_t last = (zz >> 1) ^ (~(zz & 1) + 1);
  if (n > 0) out[got++] = last;
  while (got < n) {
    uint64_t mzz;
    if (!read_uvarint(&p, end, &mzz)) return CORRUPT("a DELTA_BINARY_PACKED block is truncated");
    uint64_t min_delta = (mzz >> 1) ^ (~(mzz & 1) + 1);
    if ((uint64_t)(end - p) < minis) return CORRUPT("a DELTA_BINARY_PACKED block is truncated");
    const uint8_t *widths = p;
    p += minis;
    for (uint64_t m = 0; m < minis && got < n; m++) {
      int w = widths[m];
      if (w > max_bits) return CORRUPT("a DELTA_BINARY_PACKED miniblock has bit width %d", w);
      uint64_t bytes = per_mini * (uint64_t)w / 8;
      if ((uint64_t)(end - p) < bytes)
        return CORRUPT("a DELTA_BINARY_PACKED miniblock is truncated");
      for (uint64_t j = 0; j < per_mini && got < n; j++) {
        last += min_delta + bits_at(p, j * (uint64_t)w, w);
        out[got++] = last;
      }
      p += bytes;
    }
  }
  *next = p;
  return SDW_OK;
}

/* -- values --------------------------------------------------------------------- */

static bool is_bytes_type(sdw_parquet_type t) { return sdw_parquet_value_size(t) == 0; }

static size_t fixed_width(const sdw_parquet_column_info *col) {
  return col->type == SDW_PARQUET_BYTE_ARRAY ? 0 : (size_t)col->type_length;
}

/* Decodes n present values of encoding enc from [p, end) and stores them
 * densely at index `at` of a (values[at..], or offsets[at+1..] and data);
 * a has room for them (data is reserved here). */
static sdw_status decode_values(chunk_ctx *c, int enc, const uint8_t *p, const uint8_t *end,
                                int64_t n, sdw_parquet_array *a, int64_t at) {
  if (n == 0) return SDW_OK;
  const sdw_parquet_type type = c->col->type;
  const size_t avail = (size_t)(end - p);
  const size_t vs = sdw_parquet_value_size(type);
  const uint64_t un = (uint64_t)n;

  switch (enc) {
  case SDW_PARQUET_ENC_PLAIN:
    if (type == SDW_PARQUET_BOOLEAN) {
      if ((un + 7) / 8 > avail) return CORRUPT("a PLAIN boolean page is truncated");
      uint8_t *v = (uint8_t *)a->values + at;
      for (int64_t i = 0; i < n; i++)
        v[i] = (p[i >> 3] >> (i & 7)) & 1;
      return SDW_OK;
    }
    if (!is_bytes_type(type)) {
      if (un > avail / vs)
        return CORRUPT("a PLAIN page holds %zu bytes, too few for %lld %s values", avail,
                       (long long)n, sdw_parquet_type_name(type));
      memcpy((uint8_t *)a->values + (size_t)at * vs, p, (size_t)n * vs);
      return SDW_OK;
    }
    if (type == SDW_PARQUET_BYTE_ARRAY) {
      if (un > avail / 4)
        return CORRUPT("a PLAIN page holds %zu bytes, too few for %lld strings", avail,
                       (long long)n);
      /* Not avail - 4n: strings are copied before a later one can turn out
       * to be missing, and the first k take up to avail - 4k bytes. */
      SDW_TRY(reserve_data(c, a, avail));
      const uint8_t *q = p;
      uint8_t *data = a->data;
      size_t ds = a->data_size, cap = a->cap_data;
      int64_t *off = a->offsets + at + 1;
      for (int64_t i = 0; i < n; i++) {
        if (end - q < 4) return CORRUPT("a PLAIN string page is truncated");
        uint32_t len = le32(q);
        q += 4;
        if (len > (size_t)(end - q))
          return CORRUPT("a PLAIN string of %u bytes runs past the end of its page", len);
        if (len <= 32 && end - q >= 32 && cap - ds >= 32) {
          /* short strings: fixed 32-byte copies (the slack is overwritten
           * by the next string); cheaper than a memcpy call each */
          uint8_t tmp[32];
          memcpy(tmp, q, 32);
          memcpy(data + ds, tmp, 32);
        } else {
          memcpy(data + ds, q, len);
        }
        q += len;
        ds += len;
        off[i] = (int64_t)ds;
      }
      a->data_size = ds;
      return SDW_OK;
    } else {
      size_t w = fixed_width(c->col);
      if (un > avail / w)
        return CORRUPT("a PLAIN page holds %zu bytes, too few for %lld values of %zu bytes", avail,
                       (long long)n, w);
      SDW_TRY(reserve_data(c, a, (size_t)n * w));
      memcpy(a->data + a->data_size, p, (size_t)n * w);
      for (int64_t i = 0; i < n; i++)
        a->offsets[at + 1 + i] = (int64_t)(a->data_size + (size_t)(i + 1) * w);
      a->data_size += (size_t)n * w;
      return SDW_OK;
    }

  case SDW_PARQUET_ENC_PLAIN_DICTIONARY:
  case SDW_PARQUET_ENC_RLE_DICTIONARY: {
    if (!c->has_dict) return CORRUPT("a dictionary-encoded page comes without a dictionary page");
    if (avail < 1) return CORRUPT("a dictionary-encoded page is empty");
    int bw = p[0];
    if (bw > 32) return CORRUPT("dictionary indices have bit width %d", bw);
    SDW_TRY(scratch_u32(c, (size_t)n));
    rle_dec d;
    rle_init(&d, p + 1, end, bw);
    if (rle_get(&d, c->u32, n) != n || d.bad)
      return CORRUPT("the dictionary indices are corrupt or end early");
    const uint32_t *idx = c->u32;
    const uint64_t dn = (uint64_t)c->dict.length;
    if (!is_bytes_type(type)) {
      uint8_t *dst = (uint8_t *)a->values + (size_t)at * vs;
      const uint8_t *src = c->dict.values;
      for (int64_t i = 0; i < n; i++) {
        if (idx[i] >= dn)
          return CORRUPT("dictionary index %u is out of range (dictionary of %llu)", idx[i],
                         (unsigned long long)dn);
      }
      if (vs == 8) {
        for (int64_t i = 0; i < n; i++)
          memcpy(dst + 8 * i, src + 8 * (size_t)idx[i], 8);
      } else if (vs == 4) {
        for (int64_t i = 0; i < n; i++)
          memcpy(dst + 4 * i, src + 4 * (size_t)idx[i], 4);
      } else {
        for (int64_t i = 0; i < n; i++)
          dst[i] = src[idx[i]];
      }
      return SDW_OK;
    }
    const int64_t *doff = c->dict.offsets;
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
      if (idx[i] >= dn)
        return CORRUPT("dictionary index %u is out of range (dictionary of %llu)", idx[i],
                       (unsigned long long)dn);
      total += (uint64_t)(doff[idx[i] + 1] - doff[idx[i]]);
    }
    if (total > SIZE_MAX / 2) return charge(c, UINT64_MAX);
    SDW_TRY(reserve_data(c, a, (size_t)total));
    uint8_t *data = a->data;
    size_t ds = a->data_size;
    int64_t *off = a->offsets + at + 1;
    for (int64_t i = 0; i < n; i++) {
      size_t len = (size_t)(doff[idx[i] + 1] - doff[idx[i]]);
      memcpy(data + ds, c->dict.data + doff[idx[i]], len);
      ds += len;
      off[i] = (int64_t)ds;
    }
    a->data_size = ds;
    return SDW_OK;
  }

  case SDW_PARQUET_ENC_RLE: {
    if (type != SDW_PARQUET_BOOLEAN)
      return chunk_fail(c, SDW_ERR_UNSUPPORTED, "RLE encoding of %s values is not supported",
                        sdw_parquet_type_name(type));
    if (avail < 4) return CORRUPT("an RLE boolean page is truncated");
    uint32_t len = le32(p);
    if (len > avail - 4) return CORRUPT("an RLE boolean run length runs past its page");
    SDW_TRY(scratch_u32(c, (size_t)n));
    rle_dec d;
    rle_init(&d, p + 4, p + 4 + len, 1);
    if (rle_get(&d, c->u32, n) != n || d.bad)
      return CORRUPT("the RLE booleans are corrupt or end early");
    uint8_t *v = (uint8_t *)a->values + at;
    for (int64_t i = 0; i < n; i++)
      v[i] = (uint8_t)c->u32[i];
    return SDW_OK;
  }

  case SDW_PARQUET_ENC_DELTA_BINARY_PACKED: {
    if (type != SDW_PARQUET_INT32 && type != SDW_PARQUET_INT64)
      return CORRUPT("DELTA_BINARY_PACKED encoding of %s values", sdw_parquet_type_name(type));
    SDW_TRY(scratch_u64(c, (size_t)n));
    const uint8_t *next;
    SDW_TRY(dbp_decode(c, p, end, c->u64, n, type == SDW_PARQUET_INT32 ? 32 : 64, &next));
    if (type == SDW_PARQUET_INT32) {
      int32_t *v = (int32_t *)a->values + at;
      for (int64_t i = 0; i < n; i++)
        v[i] = (int32_t)(uint32_t)c->u64[i];
    } else {
      memcpy((int64_t *)a->values + at, c->u64, (size_t)n * 8);
    }
    return SDW_OK;
  }

  case SDW_PARQUET_ENC_DELTA_LENGTH_BYTE_ARRAY: {
    if (type != SDW_PARQUET_BYTE_ARRAY)
      return CORRUPT("DELTA_LENGTH_BYTE_ARRAY encoding of %s values", sdw_parquet_type_name(type));
    SDW_TRY(scratch_u64(c, (size_t)n));
    const uint8_t *q;
    SDW_TRY(dbp_decode(c, p, end, c->u64, n, 32, &q));
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
      if (c->u64[i] > INT32_MAX) return CORRUPT("a string has negative length");
      total += c->u64[i];
    }
    if (total > (uint64_t)(end - q)) return CORRUPT("the strings run past the end of the page");
    SDW_TRY(reserve_data(c, a, (size_t)total));
    memcpy(a->data + a->data_size, q, (size_t)total);
    size_t ds = a->data_size;
    for (int64_t i = 0; i < n; i++) {
      ds += c->u64[i];
      a->offsets[at + 1 + i] = (int64_t)ds;
    }
    a->data_size = ds;
    return SDW_OK;
  }

  case SDW_PARQUET_ENC_DELTA_BYTE_ARRAY: {
    if (type != SDW_PARQUET_BYTE_ARRAY && type != SDW_PARQUET_FIXED_LEN_BYTE_ARRAY)
      return CORRUPT("DELTA_BYTE_ARRAY encoding of %s values", sdw_parquet_type_name(type));
    SDW_TRY(scratch_u64(c, 2 * (size_t)n));
    uint64_t *pre = c->u64, *suf = c->u64 + n;
    const uint8_t *q, *s;
    SDW_TRY(dbp_decode(c, p, end, pre, n, 32, &q));
    SDW_TRY(dbp_decode(c, q, end, suf, n, 32, &s));
    uint64_t suf_total = 0, total = 0, prev = c->prev_len;
    for (int64_t i = 0; i < n; i++) {
      if (pre[i] > prev || suf[i] > INT32_MAX)
        return CORRUPT("a DELTA_BYTE_ARRAY prefix is longer than the previous value");
      prev = pre[i] + suf[i];
      suf_total += suf[i];
      total += prev;
      if (total > SIZE_MAX / 4) return charge(c, UINT64_MAX);
    }
    if (suf_total > (uint64_t)(end - s)) return CORRUPT("the suffixes run past the page");
    if (type == SDW_PARQUET_FIXED_LEN_BYTE_ARRAY)
      for (int64_t i = 0; i < n; i++)
        if (pre[i] + suf[i] != (uint64_t)c->col->type_length)
          return CORRUPT("a DELTA_BYTE_ARRAY value has the wrong length");
    SDW_TRY(reserve_data(c, a, (size_t)total));
    size_t ds = a->data_size;
    const uint8_t *prev_p = c->prev;
    for (int64_t i = 0; i < n; i++) {
      uint8_t *dst = a->data + ds;
      if (pre[i]) memcpy(dst, prev_p, (size_t)pre[i]);
      if (suf[i]) memcpy(dst + pre[i], s, (size_t)suf[i]);
      s += suf[i];
      ds += (size_t)(pre[i] + suf[i]);
      a->offsets[at + 1 + i] = (int64_t)ds;
      prev_p = dst;
    }
    a->data_size = ds;
    /* Keep the last value: parquet-mr continues prefixes across pages. */
    size_t last_len = (size_t)(pre[n - 1] + suf[n - 1]);
    if (last_len > c->prev_cap) {
      SDW_TRY(charge(c, last_len));
      uint8_t *np = realloc(c->prev, last_len);
      if (!np) return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
      c->prev = np;
      c->prev_cap = last_len;
    }
    if (last_len) memcpy(c->prev, a->data + ds - last_len, last_len);
    c->prev_len = last_len;
    return SDW_OK;
  }

  case SDW_PARQUET_ENC_BYTE_STREAM_SPLIT: {
    size_t k = is_bytes_type(type) ? fixed_width(c->col) : vs;
    if (type == SDW_PARQUET_BOOLEAN || type == SDW_PARQUET_BYTE_ARRAY || type == SDW_PARQUET_INT96)
      return CORRUPT("BYTE_STREAM_SPLIT encoding of %s values", sdw_parquet_type_name(type));
    if (un > avail / k) return CORRUPT("a BYTE_STREAM_SPLIT page is truncated");
    uint8_t *dst;
    if (is_bytes_type(type)) {
      SDW_TRY(reserve_data(c, a, (size_t)n * k));
      dst = a->data + a->data_size;
      for (int64_t i = 0; i < n; i++)
        a->offsets[at + 1 + i] = (int64_t)(a->data_size + (size_t)(i + 1) * k);
      a->data_size += (size_t)n * k;
    } else {
      dst = (uint8_t *)a->values + (size_t)at * vs;
    }
    for (size_t b = 0; b < k; b++) {
      const uint8_t *src = p + b * (size_t)n;
      for (int64_t i = 0; i < n; i++)
        dst[(size_t)i * k + b] = src[i];
    }
    return SDW_OK;
  }

  case 1:
  case SDW_PARQUET_ENC_BIT_PACKED:
    return chunk_fail(c, SDW_ERR_UNSUPPORTED, "value encoding %d is not supported", enc);
  default: return CORRUPT("unknown value encoding %d", enc);
  }
}

/* -- pages ------------------------------------------------------------------------- */

typedef struct page_header {
  int32_t type, usize, csize;
  bool has_v1, has_v2, has_dict;
  int32_t num_values, encoding, def_enc;         /* v1 / dictionary */
  int32_t num_nulls, num_rows, def_len, rep_len; /* v2 */
  bool is_compressed;
} page_header;

static void parse_v1_header(sdw_thrift_reader *r, page_header *h, bool dict) {
  FIELDS_BEGIN(r) {
    if (id == 1)
      h->num_values = sdw_thrift_read_i32(r, t);
    else if (id == 2)
      h->encoding = sdw_thrift_read_i32(r, t);
    else if (id == 3 && !dict)
      h->def_enc = sdw_thrift_read_i32(r, t);
    else
      sdw_thrift_skip(r, t);
  }
  FIELDS_END(r);
}

static void parse_v2_header(sdw_thrift_reader *r, page_header *h) {
  FIELDS_BEGIN(r) {
    switch (id) {
    case 1: h->num_values = sdw_thrift_read_i32(r, t); break;
    case 2: h->num_nulls = sdw_thrift_read_i32(r, t); break;
    case 3: h->num_rows = sdw_thrift_read_i32(r, t); break;
    case 4: h->encoding = sdw_thrift_read_i32(r, t); break;
    case 5: h->def_len = sdw_thrift_read_i32(r, t); break;
    case 6: h->rep_len = sdw_thrift_read_i32(r, t); break;
    case 7: h->is_compressed = sdw_thrift_read_bool(r, t); break;
    default: sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

static void parse_page_header(sdw_thrift_reader *r, page_header *h, unsigned *seen) {
  memset(h, 0, sizeof *h);
  h->is_compressed = true;
  *seen = 0;
  FIELDS_BEGIN(r) {
    if (id >= 1 && id <= 3) *seen |= 1u << id;
    switch (id) {
    case 1: h->type = sdw_thrift_read_i32(r, t); break;
    case 2: h->usize = sdw_thrift_read_i32(r, t); break;
    case 3: h->csize = sdw_thrift_read_i32(r, t); break;
    case 5:
    case 7:
    case 8:
      if (t != SDW_THRIFT_STRUCT) {
        sdw_thrift_skip(r, t);
      } else if (id == 8) {
        h->has_v2 = true;
        parse_v2_header(r, h);
      } else {
        if (id == 5)
          h->has_v1 = true;
        else
          h->has_dict = true;
        parse_v1_header(r, h, id == 7);
      }
      break;
    default: sdw_thrift_skip(r, t);
    }
  }
  FIELDS_END(r);
}

/* The byte range of a column chunk, checked against the file. */
static sdw_status chunk_range(chunk_ctx *c, const uint8_t **begin, const uint8_t **end) {
  const pq_chunk *ch = c->ch;
  if (!c->col->supported)
    return chunk_fail(c, SDW_ERR_UNSUPPORTED,
                      "repeated (LIST/MAP) columns are not supported by this reader");
  if (ch->external)
    return chunk_fail(c, SDW_ERR_UNSUPPORTED, "the column chunk is stored in another file");
  if (!ch->has_meta) return CORRUPT("the column chunk has no metadata");
  if (ch->type != (int32_t)c->col->type)
    return CORRUPT("the chunk's type %d differs from the schema's %s", (int)ch->type,
                   sdw_parquet_type_name(c->col->type));
  int64_t start = ch->data_page_offset;
  if (ch->dictionary_page_offset > 0 && ch->dictionary_page_offset < start)
    start = ch->dictionary_page_offset;
  int64_t len = ch->total_compressed_size;
  int64_t size = (int64_t)c->f->size;
  if (start < 4 || len < 0 || start > size || len > size - start)
    return CORRUPT("the column chunk (offset %lld, %lld bytes) lies outside the file of %lld "
                   "bytes",
                   (long long)start, (long long)len, (long long)size);
  *begin = c->f->data + start;
  *end = *begin + len;
  return SDW_OK;
}

/* Reads the next page header at *p; on success *p points at the body, which
 * has h->csize bytes inside the chunk. */
static sdw_status next_page(chunk_ctx *c, const uint8_t **p, const uint8_t *end, page_header *h) {
  sdw_thrift_reader r;
  sdw_thrift_reader_init(&r, *p, (size_t)(end - *p));
  unsigned seen;
  parse_page_header(&r, h, &seen);
  if (r.failed) return CORRUPT("a page header is corrupt: %s", r.error);
  if ((seen & 0xe) != 0xe) return CORRUPT("a page header lacks its type or sizes");
  if (h->csize < 0 || h->usize < 0) return CORRUPT("a page header declares a negative size");
  *p = r.p;
  if ((size_t)h->csize > (size_t)(end - *p))
    return CORRUPT("a page of %d bytes runs past the end of the column chunk", (int)h->csize);
  return SDW_OK;
}

/* Decompresses n bytes at src into the page buffer (usize bytes); for
 * uncompressed data returns src itself. */
static sdw_status page_bytes(chunk_ctx *c, bool compressed, const uint8_t *src, size_t n,
                             size_t usize, const uint8_t **out) {
  int codec = compressed ? c->ch->codec : SDW_PARQUET_UNCOMPRESSED;
  if (codec == SDW_PARQUET_UNCOMPRESSED) {
    if (n != usize) return CORRUPT("an uncompressed page has %zu bytes but declares %zu", n, usize);
    *out = src;
    return SDW_OK;
  }
  if (usize > sdw_parquet_codec_max_expansion(codec, n))
    return CORRUPT("a page declares %zu bytes uncompressed, more than %zu bytes of %s can hold",
                   usize, n, sdw_parquet_codec_name(codec));
  if (usize > c->page_cap) {
    SDW_TRY(charge(c, usize - c->page_cap));
    uint8_t *b = realloc(c->page_buf, usize ? usize : 1);
    if (!b) return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory for a page");
    c->page_buf = b;
    c->page_cap = usize;
  }
  char what[512];
  snprintf(what, sizeof what, "%s: column '%s', row group %d", c->f->name, c->col->name, c->rg);
  SDW_TRY(sdw_parquet_decompress(codec, src, n, c->page_buf, usize, what));
  *out = c->page_buf;
  return SDW_OK;
}

static sdw_status read_dictionary(chunk_ctx *c, const page_header *h, const uint8_t *body) {
  if (c->has_dict) return CORRUPT("the column chunk has two dictionary pages");
  if (!h->has_dict) return CORRUPT("a dictionary page lacks its header");
  if (h->num_values < 0) return CORRUPT("a dictionary page declares a negative size");
  if (h->encoding != SDW_PARQUET_ENC_PLAIN && h->encoding != SDW_PARQUET_ENC_PLAIN_DICTIONARY)
    return CORRUPT("a dictionary page has encoding %d (PLAIN expected)", (int)h->encoding);
  const uint8_t *d;
  SDW_TRY(page_bytes(c, true, body, (size_t)h->csize, (size_t)h->usize, &d));
  size_t n = (size_t)h->num_values, vs = sdw_parquet_value_size(c->col->type);
  /* PLAIN: at least one bit (booleans) or byte per value. */
  if (n / 8 > (size_t)h->usize) return CORRUPT("a dictionary page is too short for its values");
  SDW_TRY(charge(c, n * (vs ? vs : 8) + 8));
  sdw_parquet_array_init(&c->dict, c->col->type);
  if (sdw_parquet_array_reserve(&c->dict, n, 0) != SDW_OK)
    return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory for the dictionary");
  const uint8_t *dend = d ? d + h->usize : d; /* an empty page may have no buffer */
  SDW_TRY(decode_values(c, SDW_PARQUET_ENC_PLAIN, d, dend, (int64_t)n, &c->dict, 0));
  c->dict.length = (int64_t)n;
  c->has_dict = true;
  return SDW_OK;
}

/* Sets (value 1) or clears bits [start, start + n). */
static void fill_bits(uint8_t *bits, int64_t start, int64_t n, int value) {
  int64_t i = start, e = start + n;
  for (; i < e && (i & 7); i++)
    bits[i >> 3] =
        value ? bits[i >> 3] | (uint8_t)(1u << (i & 7)) : bits[i >> 3] & (uint8_t) ~(1u << (i & 7));
  if (e - i >= 8) {
    memset(bits + (i >> 3), value ? 0xff : 0, (size_t)((e - i) >> 3));
    i += (e - i) & ~(int64_t)7;
  }
  for (; i < e; i++)
    bits[i >> 3] =
        value ? bits[i >> 3] | (uint8_t)(1u << (i & 7)) : bits[i >> 3] & (uint8_t) ~(1u << (i & 7));
}

static void set_bits(uint8_t *bits, int64_t start, int64_t n) { fill_bits(bits, start, n, 1); }

/* Definition levels of a column whose maximum is 1 (a flat optional
 * column), decoded straight into a's validity bits at [at, at + nv); the
 * bitmap is created at the first null. Sets *present. */
static sdw_status levels_to_validity(chunk_ctx *c, sdw_parquet_array *a, const uint8_t *p,
                                     const uint8_t *end, int64_t at, int64_t nv, int64_t *present) {
  rle_dec d;
  rle_init(&d, p, end, 1);
  int64_t pos = 0, count = 0;
  while (pos < nv) {
    if (!d.left && !rle_next_run(&d))
      return CORRUPT("the definition levels are corrupt or end early");
    int64_t k = d.left < (uint64_t)(nv - pos) ? (int64_t)d.left : nv - pos;
    if (!d.packed) {
      if (d.value) {
        if (a->validity) set_bits(a->validity, at + pos, k);
        count += k;
      } else {
        if (!a->validity) {
          if (sdw_parquet_array_make_validity(a) != SDW_OK)
            return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
          set_bits(a->validity, at, pos); /* this page's values so far */
        }
        fill_bits(a->validity, at + pos, k, 0);
      }
    } else {
      for (int64_t j = 0; j < k; j++) {
        uint64_t bit = d.bit + (uint64_t)j;
        int v = (d.bp[bit >> 3] >> (bit & 7)) & 1;
        int64_t i = at + pos + j;
        if (v) {
          count++;
          if (a->validity) a->validity[i >> 3] |= (uint8_t)(1u << (i & 7));
        } else {
          if (!a->validity) {
            if (sdw_parquet_array_make_validity(a) != SDW_OK)
              return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
            set_bits(a->validity, at, pos + j);
          }
          a->validity[i >> 3] &= (uint8_t) ~(1u << (i & 7));
        }
      }
      d.bit += (uint64_t)k;
    }
    d.left -= (uint64_t)k;
    pos += k;
  }
  *present = count;
  return SDW_OK;
}

/* Moves n dense values of vs bytes at v[0..present) to the present slots
 * of v[0..n) (validity bits from bit `at`), zeroing the null slots. */
#define SPREAD(T)                                                                                  \
  do {                                                                                             \
    T *x = (T *)v;                                                                                 \
    for (int64_t i = n - 1; i >= 0; i--) {                                                         \
      int64_t b = at + i;                                                                          \
      if ((valid[b >> 3] >> (b & 7)) & 1)                                                          \
        x[i] = x[--k];                                                                             \
      else                                                                                         \
        x[i] = 0;                                                                                  \
    }                                                                                              \
  } while (0)

static void spread_values(uint8_t *v, size_t vs, const uint8_t *valid, int64_t at, int64_t n,
                          int64_t present) {
  int64_t k = present;
  if (vs == 8)
    SPREAD(uint64_t);
  else if (vs == 4)
    SPREAD(uint32_t);
  else
    SPREAD(uint8_t);
}

static int bit_width(int v) {
  int w = 0;
  while (v >> w)
    w++;
  return w;
}

/* One data page (v1 or v2) of nv values appended to a. */
static sdw_status read_data_page(chunk_ctx *c, const page_header *h, const uint8_t *body,
                                 sdw_parquet_array *a, int64_t rows_left) {
  const sdw_parquet_column_info *col = c->col;
  const bool v2 = h->type == PAGE_DATA_V2;
  if (v2 ? !h->has_v2 : !h->has_v1) return CORRUPT("a data page lacks its header");
  int64_t nv = h->num_values;
  if (nv < 0 || nv > rows_left)
    return CORRUPT("a data page declares %lld values with %lld rows left", (long long)nv,
                   (long long)rows_left);
  const uint8_t *levels = NULL, *levels_end = NULL, *values, *values_end;
  if (!v2) {
    const uint8_t *d;
    SDW_TRY(page_bytes(c, true, body, (size_t)h->csize, (size_t)h->usize, &d));
    const uint8_t *q = d, *qend = d + h->usize;
    if (col->max_def_level > 0) {
      if (h->def_enc == SDW_PARQUET_ENC_BIT_PACKED)
        return chunk_fail(c, SDW_ERR_UNSUPPORTED,
                          "BIT_PACKED definition levels (deprecated) are not supported");
      if (h->def_enc != SDW_PARQUET_ENC_RLE)
        return CORRUPT("definition levels have encoding %d", (int)h->def_enc);
      if (qend - q < 4) return CORRUPT("a data page is too short for its definition levels");
      uint32_t len = le32(q);
      if (len > (size_t)(qend - q - 4))
        return CORRUPT("definition levels of %u bytes run past the end of the page", len);
      levels = q + 4;
      levels_end = levels + len;
      q = levels_end;
    }
    values = q;
    values_end = qend;
  } else {
    if (h->def_len < 0 || h->rep_len < 0 || h->def_len > h->csize - h->rep_len ||
        h->def_len > h->usize - h->rep_len)
      return CORRUPT("a v2 data page declares levels larger than the page");
    if (h->rep_len != 0) return CORRUPT("a v2 data page of a flat column has repetition levels");
    levels = body + h->rep_len;
    levels_end = levels + h->def_len;
    size_t clen = (size_t)(h->csize - h->rep_len - h->def_len);
    size_t ulen = (size_t)(h->usize - h->rep_len - h->def_len);
    SDW_TRY(page_bytes(c, h->is_compressed, levels_end, clen, ulen, &values));
    values_end = values + ulen;
    if (col->max_def_level == 0) levels = NULL;
  }

  SDW_TRY(reserve_values(c, a, nv));
  const int64_t at = a->length;
  int64_t present = nv;
  if (col->max_def_level == 1 && nv > 0) {
    SDW_TRY(levels_to_validity(c, a, levels, levels_end, at, nv, &present));
  } else if (col->max_def_level > 0 && nv > 0) {
    SDW_TRY(scratch_u32(c, (size_t)nv));
    rle_dec d;
    rle_init(&d, levels, levels_end, bit_width(col->max_def_level));
    if (rle_get(&d, c->u32, nv) != nv || d.bad)
      return CORRUPT("the definition levels are corrupt or end early");
    const uint32_t maxd = (uint32_t)col->max_def_level;
    present = 0;
    for (int64_t i = 0; i < nv; i++) {
      if (c->u32[i] > maxd) return CORRUPT("a definition level exceeds the column's maximum");
      present += c->u32[i] == maxd;
    }
    if (present < nv && !a->validity && sdw_parquet_array_make_validity(a) != SDW_OK)
      return chunk_fail(c, SDW_ERR_OUT_OF_MEMORY, "out of memory");
    if (a->validity) {
      if (present == nv) {
        set_bits(a->validity, at, nv);
      } else {
        for (int64_t i = 0; i < nv; i++) {
          int64_t k = at + i;
          if (c->u32[i] == maxd)
            a->validity[k >> 3] |= (uint8_t)(1u << (k & 7));
          else
            a->validity[k >> 3] &= (uint8_t) ~(1u << (k & 7));
        }
      }
    }
  } else if (a->validity && nv > 0) {
    set_bits(a->validity, at, nv);
  }

  int enc = h->encoding;
  SDW_TRY(decode_values(c, enc, values, values_end, present, a, at));

  if (present < nv) { /* spread the dense values over the present slots */
    int64_t k = present;
    if (is_bytes_type(col->type)) {
      int64_t *off = a->offsets + at;
      for (int64_t i = nv - 1; i >= 0; i--) {
        off[i + 1] = off[k]; /* a null ends where the previous value ended */
        if (sdw_parquet_array_is_valid(a, at + i)) k--;
      }
    } else {
      size_t vs = sdw_parquet_value_size(col->type);
      spread_values((uint8_t *)a->values + (size_t)at * vs, vs, a->validity, at, nv, present);
    }
  }
  a->length += nv;
  a->null_count += nv - present;
  return SDW_OK;
}

static void chunk_ctx_free(chunk_ctx *c) {
  sdw_parquet_array_free(&c->dict);
  free(c->page_buf);
  free(c->u32);
  free(c->u64);
  free(c->prev);
}

/* Appends row group rg of column ci to a. */
static sdw_status read_chunk(const sdw_parquet_file *f, int rg, int ci, sdw_parquet_array *a,
                             size_t *budget) {
  chunk_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  chunk_ctx *c = &ctx;
  c->f = f;
  c->col = &f->columns[ci];
  c->ch = &f->row_groups[rg].chunks[ci];
  c->rg = rg;
  c->ci = ci;
  c->budget = *budget;
  sdw_parquet_array_init(&c->dict, c->col->type);
  const int64_t rows = f->row_groups[rg].num_rows;
  const uint8_t *p = NULL, *end = NULL;
  sdw_status st;
  if (rows == 0 && c->col->supported) {
    /* nothing to read (pyarrow leaves data_page_offset 0 in empty groups) */
    st = SDW_OK;
  } else {
    st = chunk_range(c, &p, &end);
  }
  if (st == SDW_OK && c->ch->num_values != rows)
    st = CORRUPT("the column chunk holds %lld values but the row group has %lld rows",
                 (long long)c->ch->num_values, (long long)rows);
  /* Reserve every row at once when the chunk's size makes the count
   * plausible (the common case, no regrowth); otherwise grow page by page
   * so that a footer lying about its rows cannot make us allocate. */
  if (st == SDW_OK && rows > 0) {
    size_t vs = sdw_parquet_value_size(c->col->type);
    uint64_t plausible = (uint64_t)(end - p) * 64 + 65536;
    if ((uint64_t)rows <= plausible / (vs ? vs : 8)) st = reserve_values(c, a, rows);
    /* string bytes: at least the chunk's uncompressed size when plain */
    int64_t unc = c->ch->total_uncompressed_size;
    if (st == SDW_OK && c->col->type == SDW_PARQUET_BYTE_ARRAY && unc > 0 &&
        (uint64_t)unc <= plausible && (uint64_t)unc < c->budget / 2)
      st = reserve_data(c, a, (size_t)unc);
  }
  int64_t done = 0;
  while (st == SDW_OK && done < rows) {
    if (p >= end) {
      st = CORRUPT("the column chunk ends after %lld of %lld values", (long long)done,
                   (long long)rows);
      break;
    }
    page_header h;
    st = next_page(c, &p, end, &h);
    if (st != SDW_OK) break;
    const uint8_t *body = p;
    p += h.csize;
    if (h.type == PAGE_DICTIONARY) {
      if (done > 0)
        st = CORRUPT("a dictionary page follows data pages");
      else
        st = read_dictionary(c, &h, body);
    } else if (h.type == PAGE_DATA || h.type == PAGE_DATA_V2) {
      int64_t before = a->length;
      st = read_data_page(c, &h, body, a, rows - done);
      done += a->length - before;
    } /* INDEX_PAGE and unknown page types are skipped */
  }
  *budget = c->budget;
  chunk_ctx_free(c);
  return st;
}

sdw_status sdw_parquet_read_column(const sdw_parquet_file *f, int row_group, int column,
                                   sdw_parquet_array *out) {
  SDW_ASSERT(row_group >= 0 && row_group < f->num_row_groups);
  SDW_ASSERT(column >= 0 && column < f->num_columns);
  const sdw_parquet_column_info *col = &f->columns[column];
  sdw_parquet_array_init(out, col->type);
  size_t budget = f->max_memory;
  sdw_status st = read_chunk(f, row_group, column, out, &budget);
  if (st != SDW_OK) sdw_parquet_array_free(out);
  return st;
}

sdw_status sdw_parquet_read_column_all(const sdw_parquet_file *f, int column,
                                       sdw_parquet_array *out) {
  SDW_ASSERT(column >= 0 && column < f->num_columns);
  const sdw_parquet_column_info *col = &f->columns[column];
  sdw_parquet_array_init(out, col->type);
  size_t budget = f->max_memory;
  sdw_status st = SDW_OK;
  for (int g = 0; g < f->num_row_groups && st == SDW_OK; g++)
    st = read_chunk(f, g, column, out, &budget);
  if (st != SDW_OK) sdw_parquet_array_free(out);
  return st;
}

sdw_status sdw_parquet_read_columns(const sdw_parquet_file *f, int row_group,
                                    const char *const *names, int count, sdw_parquet_array *out) {
  SDW_ASSERT(row_group >= -1 && row_group < f->num_row_groups);
  for (int i = 0; i < count; i++)
    sdw_parquet_array_init(&out[i], SDW_PARQUET_BYTE_ARRAY);
  for (int i = 0; i < count; i++) {
    int ci = sdw_parquet_find_column(f, names[i]);
    sdw_status st = ci < 0
                        ? sdw_fail(SDW_ERR_NOT_FOUND, "%s: no column named '%s'", f->name, names[i])
                    : row_group < 0 ? sdw_parquet_read_column_all(f, ci, &out[i])
                                    : sdw_parquet_read_column(f, row_group, ci, &out[i]);
    if (st != SDW_OK) {
      for (int k = 0; k < i; k++)
        sdw_parquet_array_free(&out[k]);
      return st;
    }
  }
  return SDW_OK;
}

sdw_status sdw_parquet_describe_chunk(const sdw_parquet_file *f, int row_group, int column,
                                      sdw_parquet_chunk_desc *out) {
  SDW_ASSERT(row_group >= 0 && row_group < f->num_row_groups);
  SDW_ASSERT(column >= 0 && column < f->num_columns);
  memset(out, 0, sizeof *out);
  chunk_ctx ctx;
  memset(&ctx, 0, sizeof ctx);
  chunk_ctx *c = &ctx;
  c->f = f;
  c->col = &f->columns[column];
  c->ch = &f->row_groups[row_group].chunks[column];
  c->rg = row_group;
  const uint8_t *p, *end;
  SDW_TRY(chunk_range(c, &p, &end));
  out->codec = c->ch->codec;
  out->num_values = c->ch->num_values;
  int64_t values = 0;
  while (p < end && values < c->ch->num_values) {
    page_header h;
    SDW_TRY(next_page(c, &p, end, &h));
    p += h.csize;
    if (h.type == PAGE_DICTIONARY) out->dictionary_pages++;
    if (h.type == PAGE_DATA || h.type == PAGE_DATA_V2) {
      if (h.type == PAGE_DATA)
        out->data_pages_v1++;
      else
        out->data_pages_v2++;
      if (h.encoding >= 0 && h.encoding < 32) out->encodings |= 1u << h.encoding;
      values += h.num_values;
    }
  }
  return SDW_OK;
}
