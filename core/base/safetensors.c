#include "core/base/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"
#include "core/base/json.h"

/* serde_json's recursion limit; the header's own nesting uses 3 levels. */
enum { MAX_JSON_DEPTH = 128 };
/* Names are cut to this many bytes in messages. */
#define NAME_FMT "%.200s"

/* --- name hash table (open addressing, slots hold index + 1) ----------------- */

typedef struct name_table {
  size_t *slots;
  size_t cap; /* a power of two */
} name_table;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Slot of name (empty slot when absent). names[i] is the name of index i. */
static size_t table_slot(const name_table *t, const char *const *names, const char *name) {
  size_t mask = t->cap - 1;
  size_t i = (size_t)hash_name(name) & mask;
  while (t->slots[i] && strcmp(names[t->slots[i] - 1], name) != 0)
    i = (i + 1) & mask;
  return i;
}

/* Builds a table over count names; false when out of memory. *dup receives
 * the index of the first repeated name, or SIZE_MAX. */
static bool table_build(name_table *t, const char *const *names, size_t count, size_t *dup) {
  size_t cap = 8;
  while (cap < count * 2)
    cap *= 2;
  t->slots = calloc(cap, sizeof *t->slots);
  t->cap = cap;
  *dup = SIZE_MAX;
  if (!t->slots) return false;
  for (size_t k = 0; k < count; k++) {
    size_t i = table_slot(t, names, names[k]);
    if (t->slots[i]) {
      *dup = k;
      return true;
    }
    t->slots[i] = k + 1;
  }
  return true;
}

/* --- reader state ------------------------------------------------------------ */

struct sdw_safetensors {
  char *name;
  void *map; /* the mmap'd file, or NULL for open_memory */
  size_t map_size;
  sdw_safetensors_entry *entries;
  const char **names; /* entries[i].name, for the table */
  uint64_t *ends;     /* while parsing: data_offsets[1] of each entry */
  size_t count, cap;
  name_table table;
  char **meta_keys, **meta_values;
  size_t meta_count, meta_cap;
};

typedef struct parser {
  const unsigned char *s; /* the header */
  size_t n, pos;
  const char *file;
  sdw_safetensors *st;
  sdw_status status; /* why parsing stopped */
  /* the entry being parsed */
  uint64_t *dims;
  size_t ndims, dims_cap;
} parser;

static bool fail_format(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail_format(parser *p, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->status = sdw_fail(SDW_ERR_FORMAT, "%s: %s", p->file, msg);
  return false;
}

static bool fail_syntax(parser *p, const char *what) {
  if (p->pos >= p->n)
    return fail_format(p, "header is not valid JSON: %s, but the header ends (it has %zu bytes)",
                       what, p->n);
  return fail_format(p, "header is not valid JSON: %s at byte %zu of the header", what, p->pos);
}

static bool fail_oom(parser *p) {
  p->status = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory reading the header", p->file);
  return false;
}

static void skip_ws(parser *p) {
  while (p->pos < p->n) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static bool peek_is(parser *p, unsigned char c) { return p->pos < p->n && p->s[p->pos] == c; }

static bool expect(parser *p, unsigned char c, const char *what) {
  if (!peek_is(p, c)) return fail_syntax(p, what);
  p->pos++;
  return true;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static bool read_hex4(parser *p, size_t at, unsigned *out) {
  if (p->n - at < 4) return false;
  unsigned v = 0;
  for (size_t k = 0; k < 4; k++) {
    int h = hex_value(p->s[at + k]);
    if (h < 0) return false;
    v = v * 16 + (unsigned)h;
  }
  *out = v;
  return true;
}

/* A JSON string at pos. With out, it is decoded into a malloc'd copy (a
 * decoded string is never longer than its source) and U+0000 is refused;
 * without, it is only validated. The header is already known to be UTF-8. */
static bool parse_string(parser *p, char **out) {
  if (!expect(p, '"', "expected a string")) return false;
  size_t start = p->pos, i = start;
  while (i < p->n && p->s[i] != '"') {
    if (p->s[i] == '\\')
      i += 2;
    else if (p->s[i] < 0x20) {
      p->pos = i;
      return fail_syntax(p, "control character inside a string");
    } else
      i++;
  }
  if (i >= p->n) {
    p->pos = p->n;
    return fail_syntax(p, "unterminated string");
  }
  size_t end = i; /* the closing quote */
  char *buf = NULL;
  size_t len = 0;
  if (out) {
    buf = malloc(end - start + 1);
    if (!buf) return fail_oom(p);
  }
  for (i = start; i < end;) {
    unsigned char c = p->s[i];
    if (c != '\\') {
      if (buf) buf[len++] = (char)c;
      i++;
      continue;
    }
    unsigned char e = p->s[i + 1];
    unsigned cp;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char decoded[] = "\"\\/\b\f\n\r\t";
      if (buf) buf[len++] = decoded[simple - "\"\\/bfnrt"];
      i += 2;
      continue;
    }
    p->pos = i;
    if (e != 'u') {
      free(buf);
      return fail_syntax(p, "invalid escape in a string");
    }
    if (!read_hex4(p, i + 2, &cp) || i + 6 > end) {
      free(buf);
      return fail_syntax(p, "invalid \\u escape in a string");
    }
    i += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      free(buf);
      return fail_syntax(p, "lone UTF-16 surrogate in a \\u escape");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      unsigned lo;
      if (i + 6 > end || p->s[i] != '\\' || p->s[i + 1] != 'u' || !read_hex4(p, i + 2, &lo) ||
          lo < 0xDC00 || lo > 0xDFFF) {
        free(buf);
        return fail_syntax(p, "lone UTF-16 surrogate in a \\u escape");
      }
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      i += 6;
    }
    if (cp == 0 && buf) {
      free(buf);
      return fail_format(p,
                         "a name or metadata string contains U+0000 (byte %zu of the header), "
                         "which is not supported",
                         p->pos);
    }
    if (!buf) continue;
    if (cp < 0x80) {
      buf[len++] = (char)cp;
    } else if (cp < 0x800) {
      buf[len++] = (char)(0xC0 | (cp >> 6));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      buf[len++] = (char)(0xE0 | (cp >> 12));
      buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    } else {
      buf[len++] = (char)(0xF0 | (cp >> 18));
      buf[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
      buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
      buf[len++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  if (buf) {
    buf[len] = '\0';
    *out = buf;
  }
  p->pos = end + 1;
  return true;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Any JSON number (validated, value ignored). */
static bool skip_number(parser *p) {
  if (peek_is(p, '-')) p->pos++;
  if (peek_is(p, '0')) {
    p->pos++;
  } else if (p->pos < p->n && is_digit(p->s[p->pos])) {
    while (p->pos < p->n && is_digit(p->s[p->pos]))
      p->pos++;
  } else {
    return fail_syntax(p, "invalid number");
  }
  if (peek_is(p, '.')) {
    p->pos++;
    if (!(p->pos < p->n && is_digit(p->s[p->pos]))) return fail_syntax(p, "invalid number");
    while (p->pos < p->n && is_digit(p->s[p->pos]))
      p->pos++;
  }
  if (peek_is(p, 'e') || peek_is(p, 'E')) {
    p->pos++;
    if (peek_is(p, '+') || peek_is(p, '-')) p->pos++;
    if (!(p->pos < p->n && is_digit(p->s[p->pos]))) return fail_syntax(p, "invalid number");
    while (p->pos < p->n && is_digit(p->s[p->pos]))
      p->pos++;
  }
  return true;
}

static bool skip_literal(parser *p, const char *word) {
  size_t len = strlen(word);
  if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0)
    return fail_syntax(p, "invalid value");
  p->pos += len;
  return true;
}

/* Any JSON value at pos (after whitespace), validated and skipped. */
static bool skip_value(parser *p, int depth) {
  if (depth > MAX_JSON_DEPTH) return fail_syntax(p, "values nested too deeply");
  if (p->pos >= p->n) return fail_syntax(p, "expected a value");
  unsigned char c = p->s[p->pos];
  if (c == '"') return parse_string(p, NULL);
  if (c == 't') return skip_literal(p, "true");
  if (c == 'f') return skip_literal(p, "false");
  if (c == 'n') return skip_literal(p, "null");
  if (c == '-' || is_digit(c)) return skip_number(p);
  if (c != '{' && c != '[') return fail_syntax(p, "expected a value");
  bool object = c == '{';
  p->pos++;
  skip_ws(p);
  if (peek_is(p, object ? '}' : ']')) {
    p->pos++;
    return true;
  }
  for (;;) {
    if (object) {
      if (!parse_string(p, NULL)) return false;
      skip_ws(p);
      if (!expect(p, ':', "expected ':'")) return false;
      skip_ws(p);
    }
    if (!skip_value(p, depth + 1)) return false;
    skip_ws(p);
    if (peek_is(p, ',')) {
      p->pos++;
      skip_ws(p);
      continue;
    }
    return expect(p, object ? '}' : ']', object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

/* A non-negative integer that fits in u64 (serde's usize on 64-bit hosts). */
static bool parse_u64(parser *p, const char *name, const char *field, uint64_t *out) {
  if (p->pos >= p->n) return fail_syntax(p, "expected a number");
  unsigned char c = p->s[p->pos];
  if (c == '-')
    return fail_format(p, "tensor '" NAME_FMT "': %s must hold non-negative integers", name, field);
  if (!is_digit(c))
    return fail_format(p, "tensor '" NAME_FMT "': %s must hold integers (byte %zu of the header)",
                       name, field, p->pos);
  if (c == '0' && p->pos + 1 < p->n && is_digit(p->s[p->pos + 1]))
    return fail_syntax(p, "number with a leading zero");
  uint64_t v = 0;
  while (p->pos < p->n && is_digit(p->s[p->pos])) {
    unsigned d = (unsigned)(p->s[p->pos] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return fail_format(p, "tensor '" NAME_FMT "': %s holds a number larger than 2^64-1", name,
                         field);
    v = v * 10 + d;
    p->pos++;
  }
  if (peek_is(p, '.') || peek_is(p, 'e') || peek_is(p, 'E'))
    return fail_format(p, "tensor '" NAME_FMT "': %s must hold integers, not fractions", name,
                       field);
  *out = v;
  return true;
}

/* [u64, ...] into p->dims / p->ndims. */
static bool parse_u64_array(parser *p, const char *name, const char *field) {
  p->ndims = 0;
  if (!peek_is(p, '['))
    return fail_format(p, "tensor '" NAME_FMT "': %s must be an array of integers", name, field);
  p->pos++;
  skip_ws(p);
  if (peek_is(p, ']')) {
    p->pos++;
    return true;
  }
  for (;;) {
    if (p->ndims == p->dims_cap) {
      size_t cap = p->dims_cap ? p->dims_cap * 2 : 8;
      uint64_t *dims = realloc(p->dims, cap * sizeof *dims);
      if (!dims) return fail_oom(p);
      p->dims = dims;
      p->dims_cap = cap;
    }
    if (!parse_u64(p, name, field, &p->dims[p->ndims])) return false;
    p->ndims++;
    skip_ws(p);
    if (peek_is(p, ',')) {
      p->pos++;
      skip_ws(p);
      continue;
    }
    return expect(p, ']', "expected ',' or ']'");
  }
}

/* "[2, 3]" for messages; long shapes end in ", ...]". */
static void format_shape(const int64_t *dims, int n, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  int i = 0;
  /* one dim takes at most 22 bytes, so used stays below size */
  for (; i < n && used + 32 < size; i++)
    used += (size_t)snprintf(buf + used, size - used, i ? ", %" PRId64 : "%" PRId64, dims[i]);
  if (i < n) used += (size_t)snprintf(buf + used, size - used, ", ...");
  if (used < size) snprintf(buf + used, size - used, "]");
}

/* Parses one {"dtype", "shape", "data_offsets"} object for tensor name (which
 * the entry takes over) and appends it. */
static bool parse_entry(parser *p, char *name) {
  sdw_safetensors *st = p->st;
  if (st->count == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 16;
    sdw_safetensors_entry *entries = realloc(st->entries, cap * sizeof *entries);
    if (entries) st->entries = entries;
    uint64_t *ends = entries ? realloc(st->ends, cap * sizeof *ends) : NULL;
    if (ends) st->ends = ends;
    if (!entries || !ends) {
      free(name);
      return fail_oom(p);
    }
    st->cap = cap;
  }
  sdw_safetensors_entry *e = &st->entries[st->count];
  memset(e, 0, sizeof *e);
  st->ends[st->count] = 0;
  st->count++;
  e->name = name; /* owned by the reader from here on */

  if (!peek_is(p, '{'))
    return fail_format(p,
                       "tensor '" NAME_FMT "' must be an object with dtype, shape and "
                       "data_offsets (byte %zu of the header)",
                       name, p->pos);
  p->pos++;
  skip_ws(p);
  bool have_dtype = false, have_shape = false, have_offsets = false;
  uint64_t begin = 0, end = 0;
  if (peek_is(p, '}')) {
    p->pos++;
  } else {
    for (;;) {
      char *key;
      if (!parse_string(p, &key)) return false;
      skip_ws(p);
      if (!expect(p, ':', "expected ':'")) {
        free(key);
        return false;
      }
      skip_ws(p);
      bool ok = true;
      bool *seen = strcmp(key, "dtype") == 0          ? &have_dtype
                   : strcmp(key, "shape") == 0        ? &have_shape
                   : strcmp(key, "data_offsets") == 0 ? &have_offsets
                                                      : NULL;
      if (seen && *seen) {
        ok = fail_format(p, "tensor '" NAME_FMT "' has the field %s twice", name, key);
      } else if (seen == &have_dtype) {
        char *dtype;
        if (!peek_is(p, '"')) {
          ok = fail_format(p, "tensor '" NAME_FMT "': dtype must be a string", name);
        } else if ((ok = parse_string(p, &dtype))) {
          if (!sdw_dtype_from_name(dtype, &e->dtype))
            ok = fail_format(p, "tensor '" NAME_FMT "' has unknown dtype \"%.40s\"", name, dtype);
          free(dtype);
        }
      } else if (seen == &have_shape) {
        if ((ok = parse_u64_array(p, name, "shape"))) {
          int64_t *shape = NULL;
          for (size_t i = 0; i < p->ndims && ok; i++)
            if (p->dims[i] > (uint64_t)INT64_MAX)
              ok = fail_format(p, "tensor '" NAME_FMT "': dimension %" PRIu64 " exceeds 2^63-1",
                               name, p->dims[i]);
          if (ok && p->ndims > (size_t)INT32_MAX)
            ok = fail_format(p, "tensor '" NAME_FMT "' has too many dimensions", name);
          if (ok && p->ndims > 0) {
            shape = malloc(p->ndims * sizeof *shape);
            if (!shape) ok = fail_oom(p);
            for (size_t i = 0; ok && i < p->ndims; i++)
              shape[i] = (int64_t)p->dims[i];
          }
          if (ok) {
            e->shape = shape;
            e->ndim = (int)p->ndims;
          }
        }
      } else if (seen == &have_offsets) {
        if ((ok = parse_u64_array(p, name, "data_offsets")) && p->ndims != 2)
          ok = fail_format(p,
                           "tensor '" NAME_FMT "': data_offsets must be [begin, end], found %zu "
                           "numbers",
                           name, p->ndims);
        if (ok) {
          begin = p->dims[0];
          end = p->dims[1];
        }
      } else {
        ok = skip_value(p, 3); /* unknown fields are ignored, as serde does */
      }
      if (seen && ok) *seen = true;
      free(key);
      if (!ok) return false;
      skip_ws(p);
      if (peek_is(p, ',')) {
        p->pos++;
        skip_ws(p);
        continue;
      }
      if (!expect(p, '}', "expected ',' or '}'")) return false;
      break;
    }
  }
  const char *lacks = !have_dtype     ? "dtype"
                      : !have_shape   ? "shape"
                      : !have_offsets ? "data_offsets"
                                      : NULL;
  if (lacks) return fail_format(p, "tensor '" NAME_FMT "' has no %s", name, lacks);
  e->offset = begin;
  st->ends[st->count - 1] = end;
  return true;
}

static bool parse_metadata(parser *p) {
  sdw_safetensors *st = p->st;
  if (peek_is(p, 'n')) return skip_literal(p, "null"); /* Option::None */
  if (!peek_is(p, '{'))
    return fail_format(p, "__metadata__ must be an object of strings (byte %zu of the header)",
                       p->pos);
  p->pos++;
  skip_ws(p);
  if (peek_is(p, '}')) {
    p->pos++;
    return true;
  }
  for (;;) {
    char *key, *value;
    if (!parse_string(p, &key)) return false;
    skip_ws(p);
    if (!expect(p, ':', "expected ':'")) {
      free(key);
      return false;
    }
    skip_ws(p);
    if (!peek_is(p, '"')) {
      fail_format(p, "__metadata__ value of key '" NAME_FMT "' must be a string", key);
      free(key);
      return false;
    }
    if (!parse_string(p, &value)) {
      free(key);
      return false;
    }
    if (st->meta_count == st->meta_cap) {
      size_t cap = st->meta_cap ? st->meta_cap * 2 : 8;
      char **keys = realloc(st->meta_keys, cap * sizeof *keys);
      if (keys) st->meta_keys = keys;
      char **values = keys ? realloc(st->meta_values, cap * sizeof *values) : NULL;
      if (values) st->meta_values = values;
      if (!keys || !values) {
        free(key);
        free(value);
        return fail_oom(p);
      }
      st->meta_cap = cap;
    }
    st->meta_keys[st->meta_count] = key;
    st->meta_values[st->meta_count] = value;
    st->meta_count++;
    skip_ws(p);
    if (peek_is(p, ',')) {
      p->pos++;
      skip_ws(p);
      continue;
    }
    return expect(p, '}', "expected ',' or '}'");
  }
}

static bool parse_header(parser *p) {
  if (p->n == 0 || p->s[0] != '{')
    return fail_format(p, "the header must begin with '{' (a JSON object), found %s",
                       p->n == 0 ? "an empty header" : "another byte");
  p->pos = 1;
  skip_ws(p);
  bool have_metadata = false;
  if (peek_is(p, '}')) {
    p->pos++;
  } else {
    for (;;) {
      char *key;
      if (!peek_is(p, '"')) return fail_syntax(p, "expected a string key");
      if (!parse_string(p, &key)) return false;
      skip_ws(p);
      if (!expect(p, ':', "expected ':'")) {
        free(key);
        return false;
      }
      skip_ws(p);
      if (strcmp(key, "__metadata__") == 0) {
        free(key);
        if (have_metadata) return fail_format(p, "__metadata__ appears twice in the header");
        have_metadata = true;
        if (!parse_metadata(p)) return false;
      } else if (!parse_entry(p, key)) {
        return false;
      }
      skip_ws(p);
      if (peek_is(p, ',')) {
        p->pos++;
        skip_ws(p);
        continue;
      }
      if (!expect(p, '}', "expected ',' or '}'")) return false;
      break;
    }
  }
  skip_ws(p);
  if (p->pos != p->n)
    return fail_format(p,
                       "the header has characters after its JSON object (byte %zu of %zu); "
                       "only space padding may follow it",
                       p->pos, p->n);
  return true;
}

/* --- validation ---------------------------------------------------------------- */

typedef struct span {
  uint64_t begin, end;
  size_t index;
} span;

static int compare_spans(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Offsets, sizes and names; on success every entry's data/nbytes is final. */
static sdw_status validate(sdw_safetensors *st, const unsigned char *data, uint64_t data_len) {
  const char *file = st->name;
  size_t n = st->count;
  span *spans = n ? malloc(n * sizeof *spans) : NULL;
  if (n && !spans) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
  for (size_t i = 0; i < n; i++)
    spans[i] = (span){st->entries[i].offset, st->ends[i], i};
  /* The reference sorts by (begin, end) and walks the result. */
  if (n) qsort(spans, n, sizeof *spans, compare_spans);

  sdw_status status = SDW_OK;
  uint64_t expected = 0;
  for (size_t k = 0; k < n && status == SDW_OK; k++) {
    sdw_safetensors_entry *e = &st->entries[spans[k].index];
    uint64_t begin = spans[k].begin, end = spans[k].end;
    if (end < begin) {
      status = sdw_fail(SDW_ERR_FORMAT,
                        "%s: tensor '" NAME_FMT "' has data_offsets [%" PRIu64 ", %" PRIu64
                        ") whose end comes before its begin",
                        file, e->name, begin, end);
      break;
    }
    if (begin != expected) {
      status = sdw_fail(
          SDW_ERR_FORMAT,
          "%s: tensor '" NAME_FMT "' has data_offsets [%" PRIu64 ", %" PRIu64 ") but %s %" PRIu64
          " (%s); tensors must tile the data section in order without gaps or overlaps",
          file, e->name, begin, end,
          k == 0 ? "the data section starts at" : "the previous tensor ends at", expected,
          begin > expected ? "a gap" : "an overlap");
      break;
    }
    expected = end;
    uint64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < e->ndim; d++) {
      uint64_t dim = (uint64_t)e->shape[d];
      if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
      numel *= dim;
    }
    uint64_t size = sdw_dtype_size(e->dtype);
    if (!overflow && numel > UINT64_MAX / size) overflow = true;
    char shape[160];
    format_shape(e->shape, e->ndim, shape, sizeof shape);
    if (overflow) {
      status = sdw_fail(SDW_ERR_FORMAT,
                        "%s: tensor '" NAME_FMT "' has shape %s whose size overflows 64 bits", file,
                        e->name, shape);
      break;
    }
    uint64_t nbytes = numel * size;
    if (nbytes != end - begin) {
      status =
          sdw_fail(SDW_ERR_FORMAT,
                   "%s: tensor '" NAME_FMT "' has data_offsets [%" PRIu64 ", %" PRIu64 ") (%" PRIu64
                   " bytes) but %s %s needs %" PRIu64 " bytes",
                   file, e->name, begin, end, end - begin, sdw_dtype_name(e->dtype), shape, nbytes);
      break;
    }
    /* numel <= nbytes <= end <= data_len: fits int64 and size_t */
    e->numel = (int64_t)numel;
    e->nbytes = (size_t)nbytes;
  }
  if (status == SDW_OK && expected != data_len) {
    status = sdw_fail(SDW_ERR_FORMAT,
                      "%s: the tensors cover %" PRIu64 " bytes of data but the file has %" PRIu64
                      " bytes after the header (%s)",
                      file, expected, data_len,
                      expected < data_len ? "trailing bytes" : "the file is truncated");
  }
  free(spans);
  if (status != SDW_OK) return status;

  /* Names: a lookup table that also finds repeats. */
  st->names = n ? malloc(n * sizeof *st->names) : NULL;
  if (n && !st->names) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
  for (size_t i = 0; i < n; i++)
    st->names[i] = st->entries[i].name;
  size_t dup;
  if (!table_build(&st->table, st->names, n, &dup))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
  if (dup != SIZE_MAX)
    return sdw_fail(SDW_ERR_FORMAT, "%s: tensor name '" NAME_FMT "' appears twice in the header",
                    file, st->names[dup]);
  if (st->meta_count > 1) {
    char **keys = malloc(st->meta_count * sizeof *keys);
    if (!keys) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
    memcpy(keys, st->meta_keys, st->meta_count * sizeof *keys);
    qsort(keys, st->meta_count, sizeof *keys, compare_strings);
    for (size_t i = 1; i < st->meta_count; i++) {
      if (strcmp(keys[i - 1], keys[i]) == 0) {
        status = sdw_fail(SDW_ERR_FORMAT, "%s: __metadata__ key '" NAME_FMT "' appears twice", file,
                          keys[i]);
        break;
      }
    }
    free(keys);
    if (status != SDW_OK) return status;
  }
  for (size_t i = 0; i < n; i++) {
    sdw_safetensors_entry *e = &st->entries[i];
    e->data = data + e->offset;
  }
  return SDW_OK;
}

/* --- open / close ---------------------------------------------------------------- */

static sdw_status parse_bytes(sdw_safetensors *st, const unsigned char *bytes, size_t size) {
  const char *file = st->name;
  if (size < 8)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: file too small (%zu bytes): a safetensors file starts with an 8-byte "
                    "header length",
                    file, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | bytes[i];
  if (n > SDW_SAFETENSORS_MAX_HEADER)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: header length %" PRIu64 " exceeds the limit of %u bytes (not a "
                    "safetensors file, or a corrupt one)",
                    file, n, SDW_SAFETENSORS_MAX_HEADER);
  if (n > size - 8)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes): "
                    "truncated or not a safetensors file",
                    file, n, size);
  const unsigned char *header = bytes + 8;
  if (!sdw_utf8_valid(header, (size_t)n))
    return sdw_fail(SDW_ERR_FORMAT, "%s: the header is not valid UTF-8", file);
  parser p = {.s = header, .n = (size_t)n, .file = file, .st = st};
  bool ok = parse_header(&p);
  free(p.dims);
  if (!ok) return p.status;
  return validate(st, header + n, (uint64_t)(size - 8 - n));
}

static sdw_status reader_create(const char *name, sdw_safetensors **out) {
  sdw_safetensors *st = calloc(1, sizeof *st);
  if (st) st->name = strdup(name);
  if (!st || !st->name) {
    free(st);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  }
  *out = st;
  return SDW_OK;
}

sdw_status sdw_safetensors_open_memory(const void *data, size_t size, const char *name,
                                       sdw_safetensors **out) {
  *out = NULL;
  sdw_safetensors *st = NULL;
  SDW_TRY(reader_create(name, &st));
  sdw_status status = parse_bytes(st, data, size);
  if (status != SDW_OK) {
    sdw_safetensors_close(st);
    return status;
  }
  *out = st;
  return SDW_OK;
}

sdw_status sdw_safetensors_open(const char *path, sdw_safetensors **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: cannot open: %s", path,
                    strerror(errno));
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
  sdw_safetensors *st = NULL;
  sdw_status status = reader_create(path, &st);
  if (status != SDW_OK) {
    close(fd);
    return status;
  }
  size_t size = (size_t)sb.st_size;
  if (size >= 8) {
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      close(fd);
      sdw_safetensors_close(st);
      return sdw_fail(err == ENOMEM ? SDW_ERR_OUT_OF_MEMORY : SDW_ERR_IO,
                      "%s: cannot map %zu bytes: %s", path, size, strerror(err));
    }
    st->map = map;
    st->map_size = size;
  }
  close(fd);
  static const unsigned char none[1];
  status = parse_bytes(st, st->map ? st->map : none, size);
  if (status != SDW_OK) {
    sdw_safetensors_close(st);
    return status;
  }
  *out = st;
  return SDW_OK;
}

void sdw_safetensors_close(sdw_safetensors *st) {
  if (!st) return;
  for (size_t i = 0; i < st->count; i++) {
    free((void *)st->entries[i].name);
    free((void *)st->entries[i].shape);
  }
  free(st->entries);
  free(st->names);
  free(st->ends);
  free(st->table.slots);
  for (size_t i = 0; i < st->meta_count; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->meta_keys);
  free(st->meta_values);
  if (st->map) munmap(st->map, st->map_size);
  free(st->name);
  free(st);
}

void sdw_safetensors_release(const sdw_safetensors *st, const sdw_safetensors_entry *entry) {
  if (!st || !st->map || !entry || !entry->nbytes) return;
  /* Only whole pages inside the entry: a neighbour that shares a page may
   * still be in use. MADV_DONTNEED on a private read-only file mapping
   * drops our page references; the data stays in the file. */
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t begin = ((uintptr_t)entry->data + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)entry->data + entry->nbytes) & ~(page - 1);
  if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}

/* --- queries ------------------------------------------------------------------------ */

const char *sdw_safetensors_name(const sdw_safetensors *st) { return st->name; }

size_t sdw_safetensors_count(const sdw_safetensors *st) { return st->count; }

const sdw_safetensors_entry *sdw_safetensors_at(const sdw_safetensors *st, size_t index) {
  SDW_ASSERT(index < st->count);
  return &st->entries[index];
}

const sdw_safetensors_entry *sdw_safetensors_find(const sdw_safetensors *st, const char *name) {
  if (st->count == 0) return NULL;
  size_t i = table_slot(&st->table, st->names, name);
  return st->table.slots[i] ? &st->entries[st->table.slots[i] - 1] : NULL;
}

sdw_status sdw_safetensors_get(const sdw_safetensors *st, const char *name,
                               const sdw_safetensors_entry **out) {
  *out = sdw_safetensors_find(st, name);
  if (!*out)
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no tensor named '" NAME_FMT "'", st->name, name);
  return SDW_OK;
}

sdw_status sdw_safetensors_tensor(const sdw_safetensors *st, const sdw_safetensors_entry *e,
                                  sdw_tensor *out) {
  if (e->ndim > SDW_MAX_DIMS)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: tensor '" NAME_FMT "' has %d dimensions, at most %d "
                    "are supported",
                    st->name, e->name, e->ndim, SDW_MAX_DIMS);
  if ((uintptr_t)e->data % sdw_dtype_size(e->dtype) != 0)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: tensor '" NAME_FMT "' (%s) is not aligned to its element size in the "
                    "file (its writer did not pad the header); copy its bytes instead",
                    st->name, e->name, sdw_dtype_name(e->dtype));
  *out = sdw_tensor_make((void *)e->data, e->dtype, e->ndim, e->shape);
  return SDW_OK;
}

size_t sdw_safetensors_metadata_count(const sdw_safetensors *st) { return st->meta_count; }

void sdw_safetensors_metadata_at(const sdw_safetensors *st, size_t index, const char **key,
                                 const char **value) {
  SDW_ASSERT(index < st->meta_count);
  *key = st->meta_keys[index];
  *value = st->meta_values[index];
}

const char *sdw_safetensors_metadata_get(const sdw_safetensors *st, const char *key) {
  for (size_t i = 0; i < st->meta_count; i++)
    if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
  return NULL;
}

/* --- writer ------------------------------------------------------------------------ */

typedef struct writer_entry {
  char *name;
  sdw_dtype dtype;
  int ndim;
  int64_t *shape;
  const void *data; /* not owned */
  uint64_t nbytes;
} writer_entry;

struct sdw_safetensors_writer {
  writer_entry *entries;
  const char **names; /* entries[i].name, for the table */
  size_t count, cap;
  name_table table;
  char **meta_keys, **meta_values;
  size_t meta_count, meta_cap;
};

sdw_status sdw_safetensors_writer_create(sdw_safetensors_writer **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
  return SDW_OK;
}

void sdw_safetensors_writer_destroy(sdw_safetensors_writer *w) {
  if (!w) return;
  for (size_t i = 0; i < w->count; i++) {
    free(w->entries[i].name);
    free(w->entries[i].shape);
  }
  free(w->entries);
  free(w->names);
  free(w->table.slots);
  for (size_t i = 0; i < w->meta_count; i++) {
    free(w->meta_keys[i]);
    free(w->meta_values[i]);
  }
  free(w->meta_keys);
  free(w->meta_values);
  free(w);
}

/* Inserts names[index] into the table, growing it to stay at most half full. */
static bool writer_table_insert(sdw_safetensors_writer *w, size_t index) {
  if ((index + 1) * 2 > w->table.cap) {
    name_table grown;
    size_t dup;
    if (!table_build(&grown, w->names, index + 1, &dup)) {
      free(grown.slots);
      return false;
    }
    free(w->table.slots);
    w->table = grown;
    return true;
  }
  w->table.slots[table_slot(&w->table, w->names, w->names[index])] = index + 1;
  return true;
}

sdw_status sdw_safetensors_writer_add(sdw_safetensors_writer *w, const char *name, sdw_dtype dtype,
                                      int ndim, const int64_t *shape, const void *data) {
  SDW_ASSERT((unsigned)dtype < SDW_DTYPE_COUNT && ndim >= 0 && (ndim == 0 || shape));
  if (strcmp(name, "__metadata__") == 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  if (!sdw_utf8_valid(name, strlen(name)))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: tensor name '" NAME_FMT "' is not valid UTF-8", name);
  if (w->count && w->table.slots[table_slot(&w->table, w->names, name)])
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: tensor '" NAME_FMT "' was already added", name);
  uint64_t numel = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "safetensors writer: tensor '" NAME_FMT "' has a negative dimension %" PRId64,
                      name, shape[d]);
    uint64_t dim = (uint64_t)shape[d];
    if (dim != 0 && numel > UINT64_MAX / dim) overflow = true;
    numel *= dim;
  }
  uint64_t size = sdw_dtype_size(dtype);
  if (overflow || numel > (uint64_t)SIZE_MAX / size)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: tensor '" NAME_FMT "' is too large to address", name);
  uint64_t nbytes = numel * size;
  SDW_ASSERT_MSG(nbytes == 0 || data, "tensor '%s' has %" PRIu64 " bytes but no data", name,
                 nbytes);

  if (w->count == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    writer_entry *entries = realloc(w->entries, cap * sizeof *entries);
    if (entries) w->entries = entries;
    const char **names = entries ? realloc(w->names, cap * sizeof *names) : NULL;
    if (names) w->names = names;
    if (!entries || !names)
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
    w->cap = cap;
  }
  writer_entry e = {
      .name = strdup(name), .dtype = dtype, .ndim = ndim, .data = data, .nbytes = nbytes};
  if (ndim > 0) e.shape = malloc((size_t)ndim * sizeof *e.shape);
  if (!e.name || (ndim > 0 && !e.shape)) {
    free(e.name);
    free(e.shape);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
  }
  if (ndim > 0) memcpy(e.shape, shape, (size_t)ndim * sizeof *e.shape);
  w->entries[w->count] = e;
  w->names[w->count] = e.name;
  if (!writer_table_insert(w, w->count)) {
    free(e.name);
    free(e.shape);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
  }
  w->count++;
  return SDW_OK;
}

sdw_status sdw_safetensors_writer_add_tensor(sdw_safetensors_writer *w, const char *name,
                                             const sdw_tensor *t) {
  if (t->device.kind != SDW_DEVICE_CPU)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: tensor '" NAME_FMT "' is not in CPU memory", name);
  return sdw_safetensors_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data);
}

sdw_status sdw_safetensors_writer_set_metadata(sdw_safetensors_writer *w, const char *key,
                                               const char *value) {
  if (!sdw_utf8_valid(key, strlen(key)) || !sdw_utf8_valid(value, strlen(value)))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "safetensors writer: metadata '" NAME_FMT "' is not valid UTF-8", key);
  char *v = strdup(value);
  if (!v) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
  for (size_t i = 0; i < w->meta_count; i++) {
    if (strcmp(w->meta_keys[i], key) == 0) {
      free(w->meta_values[i]);
      w->meta_values[i] = v;
      return SDW_OK;
    }
  }
  char *k = strdup(key);
  if (!k || w->meta_count == w->meta_cap) {
    size_t cap = w->meta_cap ? w->meta_cap * 2 : 8;
    char **keys = k ? realloc(w->meta_keys, cap * sizeof *keys) : NULL;
    if (keys) w->meta_keys = keys;
    char **values = keys ? realloc(w->meta_values, cap * sizeof *values) : NULL;
    if (values) w->meta_values = values;
    if (!values) {
      free(k);
      free(v);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory");
    }
    w->meta_cap = cap;
  }
  w->meta_keys[w->meta_count] = k;
  w->meta_values[w->meta_count] = v;
  w->meta_count++;
  return SDW_OK;
}

/* A growing byte buffer for the header. */
typedef struct strbuf {
  char *s;
  size_t len, cap;
  bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap)
      cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) {
      b->oom = true;
      return;
    }
    b->s = ns;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* s as a JSON string: '"' and '\\' escaped, control characters as \u00XX;
 * UTF-8 passes through (already validated). */
static void sb_json_string(strbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  const char *run = s;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    sb_put(b, run, (size_t)(s - run));
    char esc[8];
    if (c == '"' || c == '\\')
      snprintf(esc, sizeof esc, "\\%c", c);
    else
      snprintf(esc, sizeof esc, "\\u%04x", c);
    sb_puts(b, esc);
    run = s + 1;
  }
  sb_put(b, run, (size_t)(s - run));
  sb_put(b, "\"", 1);
}

static void sb_u64(strbuf *b, uint64_t v) {
  char num[24];
  snprintf(num, sizeof num, "%" PRIu64, v);
  sb_puts(b, num);
}

sdw_status sdw_safetensors_writer_write(const sdw_safetensors_writer *w, const char *path) {
  strbuf b = {0};
  sb_puts(&b, "{");
  /* An empty file still gets an (empty) __metadata__ so that the header
   * begins with {" like every other. */
  if (w->meta_count > 0 || w->count == 0) {
    sb_puts(&b, "\"__metadata__\":{");
    for (size_t i = 0; i < w->meta_count; i++) {
      if (i) sb_puts(&b, ",");
      sb_json_string(&b, w->meta_keys[i]);
      sb_puts(&b, ":");
      sb_json_string(&b, w->meta_values[i]);
    }
    sb_puts(&b, "}");
  }
  /* Alignment order: element sizes 8, 4, 2, 1, each in the order added. */
  size_t *order = malloc((w->count ? w->count : 1) * sizeof *order);
  if (!order) {
    free(b.s);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
  }
  size_t placed = 0;
  for (size_t esize = 8; esize >= 1; esize /= 2)
    for (size_t i = 0; i < w->count; i++)
      if (sdw_dtype_size(w->entries[i].dtype) == esize) order[placed++] = i;
  SDW_ASSERT(placed == w->count);
  uint64_t offset = 0;
  for (size_t k = 0; k < w->count; k++) {
    const writer_entry *e = &w->entries[order[k]];
    if (k || w->meta_count > 0) sb_puts(&b, ",");
    sb_json_string(&b, e->name);
    sb_puts(&b, ":{\"dtype\":\"");
    sb_puts(&b, sdw_dtype_name(e->dtype));
    sb_puts(&b, "\",\"shape\":[");
    for (int d = 0; d < e->ndim; d++) {
      if (d) sb_puts(&b, ",");
      sb_u64(&b, (uint64_t)e->shape[d]);
    }
    sb_puts(&b, "],\"data_offsets\":[");
    sb_u64(&b, offset);
    sb_puts(&b, ",");
    if (e->nbytes > UINT64_MAX - offset) {
      free(b.s);
      free(order);
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: the tensors' total size overflows", path);
    }
    offset += e->nbytes;
    sb_u64(&b, offset);
    sb_puts(&b, "]}");
  }
  sb_puts(&b, "}");
  /* Pad so the data section starts 8-byte aligned (8 + N is a multiple of 8). */
  while (!b.oom && b.len % 8 != 0)
    sb_puts(&b, " ");
  if (b.oom) {
    free(b.s);
    free(order);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory building the header", path);
  }
  if (b.len > SDW_SAFETENSORS_MAX_HEADER) {
    size_t len = b.len;
    free(b.s);
    free(order);
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s: the header would be %zu bytes, over the format's limit of %u", path, len,
                    SDW_SAFETENSORS_MAX_HEADER);
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)b.len >> (8 * i));

  sdw_atomic_file *f;
  sdw_status st = sdw_atomic_file_open(path, &f);
  if (st == SDW_OK) st = sdw_atomic_file_write(f, len8, sizeof len8);
  if (st == SDW_OK) st = sdw_atomic_file_write(f, b.s, b.len);
  free(b.s);
  for (size_t k = 0; k < w->count && st == SDW_OK; k++)
    st = sdw_atomic_file_write(f, w->entries[order[k]].data, (size_t)w->entries[order[k]].nbytes);
  free(order);
  if (f == NULL) return st;
  if (st != SDW_OK) {
    sdw_atomic_file_abort(f);
    return st;
  }
  return sdw_atomic_file_commit(f);
}
