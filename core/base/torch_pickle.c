#include "core/base/torch_pickle.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/zip_reader.h"

/* --- allowed globals ----------------------------------------------------------- */

enum {
  G_ORDERED_DICT = 1,
  G_REBUILD_TENSOR_V2,
  G_REBUILD_PARAMETER,
  G_REBUILD_PARAMETER_STATE,
  G_STORAGE = 100, /* + sdw_dtype */
};

typedef struct allowed_global {
  const char *module, *name;
  int id;
} allowed_global;

static const allowed_global allowed[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_STATE},
    {"torch", "FloatStorage", G_STORAGE + SDW_F32},
    {"torch", "HalfStorage", G_STORAGE + SDW_F16},
    {"torch", "BFloat16Storage", G_STORAGE + SDW_BF16},
    {"torch", "DoubleStorage", G_STORAGE + SDW_F64},
    {"torch", "LongStorage", G_STORAGE + SDW_I64},
    {"torch", "IntStorage", G_STORAGE + SDW_I32},
    {"torch", "ShortStorage", G_STORAGE + SDW_I16},
    {"torch", "CharStorage", G_STORAGE + SDW_I8},
    {"torch", "ByteStorage", G_STORAGE + SDW_U8},
    {"torch", "BoolStorage", G_STORAGE + SDW_BOOL},
};
enum { ALLOWED_COUNT = sizeof allowed / sizeof allowed[0] };

/* --- handle -------------------------------------------------------------------------- */

struct sdw_pt_storage {
  char *key;
  const sdw_zip_entry *entry;
  sdw_dtype dtype;
  int64_t numel;
};

struct sdw_pt {
  char *name;
  sdw_zip *zip;          /* NULL for a bare pickle */
  char *prefix;          /* "<archive>/" */
  sdw_pt_value **values; /* every value, for freeing */
  size_t value_count, value_cap;
  size_t item_count;           /* container items in all */
  sdw_pt_storage **storage_of; /* per zip entry, NULL until used */
  const sdw_pt_value *root;
};

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void value_free(sdw_pt_value *v) {
  switch (v->kind) {
  case SDW_PT_STR:
  case SDW_PT_BYTES: free((void *)v->u.str.data); break;
  case SDW_PT_TUPLE:
  case SDW_PT_LIST: free(v->u.seq.items); break;
  case SDW_PT_DICT:
    free(v->u.dict.keys);
    free(v->u.dict.values);
    free(v->u.dict.index);
    break;
  default: break;
  }
  free(v);
}

void sdw_pt_close(sdw_pt *f) {
  if (!f) return;
  for (size_t i = 0; i < f->value_count; i++)
    value_free(f->values[i]);
  free(f->values);
  if (f->storage_of) {
    for (size_t i = 0; i < sdw_zip_count(f->zip); i++) {
      if (f->storage_of[i]) free(f->storage_of[i]->key);
      free(f->storage_of[i]);
    }
    free(f->storage_of);
  }
  sdw_zip_close(f->zip);
  free(f->prefix);
  free(f->name);
  free(f);
}

const char *sdw_pt_name(const sdw_pt *f) { return f->name; }
const sdw_pt_value *sdw_pt_root(const sdw_pt *f) { return f->root; }

const char *sdw_pt_kind_name(sdw_pt_kind kind) {
  static const char *const names[SDW_PT_KIND_COUNT] = {"None", "bool",   "int",     "float",
                                                       "str",  "bytes",  "tuple",   "list",
                                                       "dict", "tensor", "storage", "global"};
  return (unsigned)kind < SDW_PT_KIND_COUNT ? names[kind] : "?";
}

/* --- dict keys: Python equality and hashing for the key types allowed ------------- */

static bool key_kind_ok(const sdw_pt_value *k) {
  return k->kind == SDW_PT_STR || k->kind == SDW_PT_BYTES || k->kind == SDW_PT_INT ||
         k->kind == SDW_PT_BOOL || k->kind == SDW_PT_NONE || k->kind == SDW_PT_FLOAT;
}

/* An int-valued key (int, bool, or a float holding an integer) as int64. */
static bool key_int(const sdw_pt_value *k, int64_t *out) {
  if (k->kind == SDW_PT_INT) return *out = k->u.i, true;
  if (k->kind == SDW_PT_BOOL) return *out = k->u.b, true;
  if (k->kind == SDW_PT_FLOAT && k->u.f >= -9.2e18 && k->u.f <= 9.2e18 &&
      k->u.f == (double)(int64_t)k->u.f)
    return *out = (int64_t)k->u.f, true;
  return false;
}

static bool key_equal(const sdw_pt_value *a, const sdw_pt_value *b) {
  if (a->kind == SDW_PT_STR || a->kind == SDW_PT_BYTES)
    return b->kind == a->kind && a->u.str.len == b->u.str.len &&
           memcmp(a->u.str.data, b->u.str.data, a->u.str.len) == 0;
  if (a->kind == SDW_PT_NONE) return b->kind == SDW_PT_NONE;
  int64_t x = 0, y = 0;
  bool ia = key_int(a, &x), ib = key_int(b, &y);
  if (ia || ib) return ia && ib && x == y;
  /* two non-integral floats (NaN != NaN, as in Python) */
  return a->kind == SDW_PT_FLOAT && b->kind == SDW_PT_FLOAT && a->u.f == b->u.f;
}

static uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

static uint64_t key_hash(const sdw_pt_value *k) {
  if (k->kind == SDW_PT_STR || k->kind == SDW_PT_BYTES) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)k->kind;
    for (size_t i = 0; i < k->u.str.len; i++)
      h = (h ^ (unsigned char)k->u.str.data[i]) * 1099511628211ull;
    return h;
  }
  int64_t x;
  if (key_int(k, &x)) return mix64((uint64_t)x);
  if (k->kind == SDW_PT_FLOAT) {
    uint64_t bits;
    double f = k->u.f;
    memcpy(&bits, &f, 8);
    return mix64(bits);
  }
  return 0x9e3779b97f4a7c15ull; /* None */
}

/* Index of key in d, or SIZE_MAX. */
static size_t dict_find(const sdw_pt_value *d, const sdw_pt_value *key) {
  if (d->u.dict.index) {
    size_t mask = d->u.dict.index_cap - 1;
    for (size_t s = (size_t)key_hash(key) & mask; d->u.dict.index[s]; s = (s + 1) & mask)
      if (key_equal(d->u.dict.keys[d->u.dict.index[s] - 1], key)) return d->u.dict.index[s] - 1;
    return SIZE_MAX;
  }
  for (size_t i = 0; i < d->u.dict.count; i++)
    if (key_equal(d->u.dict.keys[i], key)) return i;
  return SIZE_MAX;
}

static void index_put(sdw_pt_value *d, size_t i) {
  size_t mask = d->u.dict.index_cap - 1;
  size_t s = (size_t)key_hash(d->u.dict.keys[i]) & mask;
  while (d->u.dict.index[s])
    s = (s + 1) & mask;
  d->u.dict.index[s] = i + 1;
}

/* --- the unpickler ----------------------------------------------------------------- */

typedef struct machine {
  sdw_pt *f;
  const unsigned char *p; /* the pickle */
  size_t n, pos, op_pos;
  sdw_pt_value **stack;
  size_t depth, stack_cap;
  size_t *marks;
  size_t mark_count, mark_cap;
  sdw_pt_value **memo;
  size_t memo_cap, memo_used;
} machine;

static sdw_status fail_at(const machine *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static sdw_status fail_at(const machine *m, const char *fmt, ...) {
  char what[320];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return sdw_fail(SDW_ERR_FORMAT, "%s: data.pkl byte %zu: %s", m->f->name, m->op_pos, what);
}

static sdw_status oom(const machine *m) {
  return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory unpickling", m->f->name);
}

static sdw_status new_value(machine *m, sdw_pt_kind kind, sdw_pt_value **out) {
  sdw_pt *f = m->f;
  if (f->value_count >= SDW_PT_MAX_VALUES)
    return fail_at(m, "more than %zu values (a hostile or unsupported pickle)",
                   (size_t)SDW_PT_MAX_VALUES);
  if (f->value_count == f->value_cap) {
    size_t cap = f->value_cap ? f->value_cap * 2 : 256;
    sdw_pt_value **v = realloc(f->values, cap * sizeof *v);
    if (!v) return oom(m);
    f->values = v, f->value_cap = cap;
  }
  sdw_pt_value *v = calloc(1, sizeof *v);
  if (!v) return oom(m);
  v->kind = kind;
  f->values[f->value_count++] = v;
  *out = v;
  return SDW_OK;
}

static sdw_status count_items(machine *m, size_t n) {
  if (n > SDW_PT_MAX_ITEMS - m->f->item_count)
    return fail_at(m, "more than %zu container items (a hostile or unsupported pickle)",
                   (size_t)SDW_PT_MAX_ITEMS);
  m->f->item_count += n;
  return SDW_OK;
}

static sdw_status push(machine *m, sdw_pt_value *v) {
  if (m->depth == m->stack_cap) {
    size_t cap = m->stack_cap ? m->stack_cap * 2 : 64;
    sdw_pt_value **s = realloc(m->stack, cap * sizeof *s);
    if (!s) return oom(m);
    m->stack = s, m->stack_cap = cap;
  }
  m->stack[m->depth++] = v;
  return SDW_OK;
}

/* The number of stack entries above the innermost mark (the whole stack when
 * there is no mark). */
static size_t above_mark(const machine *m) {
  return m->mark_count ? m->depth - m->marks[m->mark_count - 1] : m->depth;
}

static sdw_status pop(machine *m, sdw_pt_value **out) {
  if (above_mark(m) == 0) return fail_at(m, "stack underflow (a corrupt pickle)");
  *out = m->stack[--m->depth];
  return SDW_OK;
}

static sdw_status top(machine *m, sdw_pt_value **out) {
  if (above_mark(m) == 0) return fail_at(m, "stack underflow (a corrupt pickle)");
  *out = m->stack[m->depth - 1];
  return SDW_OK;
}

/* Pops the innermost mark; *begin receives the stack index it recorded. */
static sdw_status pop_mark(machine *m, size_t *begin) {
  if (!m->mark_count) return fail_at(m, "no MARK to close (a corrupt pickle)");
  *begin = m->marks[--m->mark_count];
  return SDW_OK;
}

static sdw_status need(const machine *m, size_t k) {
  if (m->n - m->pos < k) return fail_at(m, "the pickle ends inside an opcode (it is truncated)");
  return SDW_OK;
}

static uint64_t le(const unsigned char *p, int k) {
  uint64_t v = 0;
  for (int i = k - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

static sdw_status seq_reserve(machine *m, sdw_pt_value *s, size_t extra) {
  SDW_TRY(count_items(m, extra));
  if (s->u.seq.cap - s->u.seq.count >= extra) return SDW_OK;
  size_t cap = s->u.seq.cap ? s->u.seq.cap : 4;
  while (cap - s->u.seq.count < extra)
    cap *= 2;
  sdw_pt_value **items = realloc(s->u.seq.items, cap * sizeof *items);
  if (!items) return oom(m);
  s->u.seq.items = items, s->u.seq.cap = cap;
  return SDW_OK;
}

static sdw_status dict_set(machine *m, sdw_pt_value *d, sdw_pt_value *key, sdw_pt_value *val) {
  if (!key_kind_ok(key))
    return fail_at(m,
                   "a dict key is a %s (only str, bytes, int, float, bool and None keys are "
                   "supported)",
                   sdw_pt_kind_name(key->kind));
  size_t at = dict_find(d, key);
  if (at != SIZE_MAX) {
    d->u.dict.values[at] = val;
    return SDW_OK;
  }
  SDW_TRY(count_items(m, 1));
  if (d->u.dict.count == d->u.dict.cap) {
    size_t cap = d->u.dict.cap ? d->u.dict.cap * 2 : 8;
    sdw_pt_value **k = realloc(d->u.dict.keys, cap * sizeof *k);
    if (!k) return oom(m);
    d->u.dict.keys = k;
    sdw_pt_value **v = realloc(d->u.dict.values, cap * sizeof *v);
    if (!v) return oom(m);
    d->u.dict.values = v;
    d->u.dict.cap = cap;
  }
  size_t i = d->u.dict.count++;
  d->u.dict.keys[i] = key;
  d->u.dict.values[i] = val;
  /* A hash index once the dict is no longer tiny (linear probing, load <= 1/2),
   * so hostile dicts with millions of keys stay linear-time. */
  if (d->u.dict.count > 8 && d->u.dict.count * 2 > d->u.dict.index_cap) {
    size_t cap = d->u.dict.index_cap ? d->u.dict.index_cap * 2 : 32;
    while (cap < d->u.dict.count * 2)
      cap *= 2;
    size_t *index = calloc(cap, sizeof *index);
    if (!index) return oom(m);
    free(d->u.dict.index);
    d->u.dict.index = index, d->u.dict.index_cap = cap;
    for (size_t k = 0; k < d->u.dict.count; k++)
      index_put(d, k);
  } else if (d->u.dict.index) {
    index_put(d, i);
  }
  return SDW_OK;
}

static sdw_status memo_put(machine *m, uint64_t idx) {
  if (idx >= SDW_PT_MAX_MEMO)
    return fail_at(m, "memo index %" PRIu64 " is beyond the supported %zu", idx,
                   (size_t)SDW_PT_MAX_MEMO);
  sdw_pt_value *v = NULL;
  SDW_TRY(top(m, &v));
  if (idx >= m->memo_cap) {
    size_t cap = m->memo_cap ? m->memo_cap : 256;
    while (cap <= idx)
      cap *= 2;
    sdw_pt_value **memo = realloc(m->memo, cap * sizeof *memo);
    if (!memo) return oom(m);
    memset(memo + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *memo);
    m->memo = memo, m->memo_cap = cap;
  }
  if (!m->memo[idx]) m->memo_used++;
  m->memo[idx] = v;
  return SDW_OK;
}

static sdw_status memo_get(machine *m, uint64_t idx) {
  if (idx >= m->memo_cap || !m->memo[idx])
    return fail_at(m, "memo entry %" PRIu64 " was never stored (a corrupt pickle)", idx);
  return push(m, m->memo[idx]);
}

/* "module.name" made printable for a one-line message. */
static void global_text(const char *module, size_t ml, const char *name, size_t nl, char *buf,
                        size_t size) {
  size_t k = 0;
  for (int part = 0; part < 2; part++) {
    const char *s = part ? name : module;
    size_t n = part ? nl : ml;
    if (n > 100) n = 100;
    if (part && k + 1 < size) buf[k++] = '.';
    for (size_t i = 0; i < n && k + 1 < size; i++)
      buf[k++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
  }
  buf[k] = '\0';
}

static sdw_status resolve_global(machine *m, const char *module, size_t ml, const char *name,
                                 size_t nl) {
  for (int i = 0; i < ALLOWED_COUNT; i++) {
    if (strlen(allowed[i].module) == ml && memcmp(allowed[i].module, module, ml) == 0 &&
        strlen(allowed[i].name) == nl && memcmp(allowed[i].name, name, nl) == 0) {
      sdw_pt_value *v = NULL;
      SDW_TRY(new_value(m, SDW_PT_GLOBAL, &v));
      v->u.global = allowed[i].id;
      return push(m, v);
    }
  }
  char text[240];
  global_text(module, ml, name, nl, text, sizeof text);
  return sdw_fail(SDW_ERR_FORMAT,
                  "%s: refuses to load: the pickle asks for '%s' (only tensors, dicts, lists, "
                  "numbers and strings are allowed)",
                  m->f->name, text);
}

static sdw_status new_str(machine *m, sdw_pt_kind kind, uint64_t len) {
  if (len > m->n - m->pos) return fail_at(m, "a string runs past the end of the pickle");
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, kind, &v));
  char *s = dup_n((const char *)m->p + m->pos, (size_t)len);
  if (!s) return oom(m);
  v->u.str.data = s;
  v->u.str.len = (size_t)len;
  m->pos += (size_t)len;
  return push(m, v);
}

static sdw_status new_int(machine *m, int64_t x) {
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, SDW_PT_INT, &v));
  v->u.i = x;
  return push(m, v);
}

/* Pops the items above the innermost mark into a new tuple or list. */
static sdw_status from_mark(machine *m, sdw_pt_kind kind) {
  size_t begin = 0;
  SDW_TRY(pop_mark(m, &begin));
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, kind, &v));
  size_t n = m->depth - begin;
  SDW_TRY(seq_reserve(m, v, n));
  if (n) memcpy(v->u.seq.items, m->stack + begin, n * sizeof *v->u.seq.items);
  v->u.seq.count = n;
  m->depth = begin;
  return push(m, v);
}

static sdw_status small_tuple(machine *m, size_t n) {
  if (above_mark(m) < n) return fail_at(m, "stack underflow (a corrupt pickle)");
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, SDW_PT_TUPLE, &v));
  SDW_TRY(seq_reserve(m, v, n));
  if (n) memcpy(v->u.seq.items, m->stack + m->depth - n, n * sizeof *v->u.seq.items);
  v->u.seq.count = n;
  m->depth -= n;
  return push(m, v);
}

/* ('storage', <storage type>, key, location, numel) -> the storage. */
static sdw_status persistent_load(machine *m, const sdw_pt_value *pid) {
  sdw_pt *f = m->f;
  if (!f->zip) return fail_at(m, "a persistent id (tensor storage) outside a checkpoint archive");
  if (pid->kind != SDW_PT_TUPLE || pid->u.seq.count != 5)
    return fail_at(m, "a persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  sdw_pt_value *const *it = pid->u.seq.items;
  const char *tag = sdw_pt_as_str(it[0]), *key = sdw_pt_as_str(it[2]);
  int64_t numel;
  if (!tag || strcmp(tag, "storage") != 0 || it[1]->kind != SDW_PT_GLOBAL ||
      it[1]->u.global < G_STORAGE || !key || it[3]->kind != SDW_PT_STR ||
      !sdw_pt_as_int(it[4], &numel) || numel < 0)
    return fail_at(m, "a persistent id is not ('storage', <torch storage type>, key, location, "
                      "numel)");
  sdw_dtype dtype = (sdw_dtype)(it[1]->u.global - G_STORAGE);
  char entry_name[512];
  int len = snprintf(entry_name, sizeof entry_name, "%sdata/%s", f->prefix, key);
  bool control = false;
  for (const char *k = key; *k; k++)
    control = control || (unsigned char)*k < 0x20 || *k == 0x7f;
  if (len < 0 || (size_t)len >= sizeof entry_name || strlen(key) != it[2]->u.str.len || control)
    return fail_at(m, "a storage key is not a valid entry name (too long, or control "
                      "characters)");
  const sdw_zip_entry *e = sdw_zip_find(f->zip, entry_name);
  if (!e)
    return fail_at(m, "storage '%.100s' is missing from the archive (%.200s)", key, entry_name);
  size_t idx = (size_t)(e - sdw_zip_at(f->zip, 0));
  sdw_pt_storage *s = f->storage_of[idx];
  if (s) {
    if (s->dtype != dtype || s->numel != numel)
      return fail_at(m, "storage '%.100s' is used as two different types or sizes", key);
  } else {
    uint64_t esize = sdw_dtype_size(dtype);
    if ((uint64_t)numel > UINT64_MAX / esize || (uint64_t)numel * esize != e->size)
      return fail_at(m,
                     "storage '%.100s' should hold %" PRId64 " %s elements but its entry has "
                     "%" PRIu64 " bytes",
                     key, numel, sdw_dtype_name(dtype), e->size);
    s = calloc(1, sizeof *s);
    if (!s) return oom(m);
    s->key = dup_n(key, strlen(key));
    if (!s->key) {
      free(s);
      return oom(m);
    }
    s->entry = e;
    s->dtype = dtype;
    s->numel = numel;
    f->storage_of[idx] = s;
  }
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, SDW_PT_STORAGE, &v));
  v->u.storage = s;
  return push(m, v);
}

static bool int_tuple(const sdw_pt_value *v, int64_t *out, int cap, int *n) {
  if (v->kind != SDW_PT_TUPLE && v->kind != SDW_PT_LIST) return false;
  if (v->u.seq.count > (size_t)cap) return false;
  for (size_t i = 0; i < v->u.seq.count; i++) {
    if (v->u.seq.items[i]->kind != SDW_PT_INT) return false;
    out[i] = v->u.seq.items[i]->u.i;
  }
  *n = (int)v->u.seq.count;
  return true;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): every addressed element must lie inside the
 * storage. */
static sdw_status rebuild_tensor(machine *m, const sdw_pt_value *args) {
  if (args->kind != SDW_PT_TUPLE || args->u.seq.count < 6 || args->u.seq.count > 7)
    return fail_at(m, "_rebuild_tensor_v2 takes 6 or 7 arguments");
  sdw_pt_value *const *a = args->u.seq.items;
  if (a[0]->kind != SDW_PT_STORAGE)
    return fail_at(m, "_rebuild_tensor_v2: the first argument is a %s, not a storage",
                   sdw_pt_kind_name(a[0]->kind));
  const sdw_pt_storage *s = a[0]->u.storage;
  sdw_pt_tensor t;
  memset(&t, 0, sizeof t);
  t.storage = a[0]->u.storage;
  t.dtype = s->dtype;
  int nd_size = 0, nd_stride = 0;
  if (!sdw_pt_as_int(a[1], &t.offset) || t.offset < 0)
    return fail_at(m, "tensor on storage '%.100s': bad storage offset", s->key);
  if (!int_tuple(a[2], t.shape, SDW_MAX_DIMS, &nd_size) ||
      !int_tuple(a[3], t.stride, SDW_MAX_DIMS, &nd_stride) || nd_size != nd_stride)
    return fail_at(m,
                   "tensor on storage '%.100s': size and stride must be tuples of the same "
                   "length, at most %d ints",
                   s->key, SDW_MAX_DIMS);
  if (a[4]->kind != SDW_PT_BOOL)
    return fail_at(m, "tensor on storage '%.100s': requires_grad is not a bool", s->key);
  t.requires_grad = a[4]->u.b;
  t.ndim = nd_size;
  uint64_t numel = 1, last = (uint64_t)t.offset;
  bool overflow = false;
  for (int d = 0; d < t.ndim; d++) {
    if (t.shape[d] < 0 || t.stride[d] < 0)
      return fail_at(m, "tensor on storage '%.100s': negative size or stride", s->key);
    overflow |= __builtin_mul_overflow(numel, (uint64_t)t.shape[d], &numel);
  }
  uint64_t esize = sdw_dtype_size(s->dtype);
  uint64_t bytes;
  overflow |= __builtin_mul_overflow(numel, esize, &bytes);
  if (overflow || numel > INT64_MAX || bytes > SIZE_MAX)
    return fail_at(m, "tensor on storage '%.100s': its size overflows", s->key);
  t.numel = (int64_t)numel;
  if (numel > 0) {
    for (int d = 0; d < t.ndim; d++) {
      uint64_t span;
      if (__builtin_mul_overflow((uint64_t)(t.shape[d] - 1), (uint64_t)t.stride[d], &span) ||
          __builtin_add_overflow(last, span, &last))
        return fail_at(m, "tensor on storage '%.100s': its strides overflow", s->key);
    }
    if (last >= (uint64_t)s->numel)
      return fail_at(m,
                     "tensor on storage '%.100s' reaches element %" PRIu64
                     " of a storage of %" PRId64 " (its size, stride or offset is out of bounds)",
                     s->key, last, s->numel);
  } else if ((uint64_t)t.offset > (uint64_t)s->numel) {
    return fail_at(m, "tensor on storage '%.100s': offset beyond the storage", s->key);
  }
  sdw_pt_value *v = NULL;
  SDW_TRY(new_value(m, SDW_PT_TENSOR, &v));
  v->u.tensor = t;
  return push(m, v);
}

static sdw_status reduce(machine *m) {
  sdw_pt_value *args = NULL, *fn = NULL;
  SDW_TRY(pop(m, &args));
  SDW_TRY(pop(m, &fn));
  if (fn->kind != SDW_PT_GLOBAL)
    return fail_at(m, "REDUCE on a %s (only allowed globals can be called)",
                   sdw_pt_kind_name(fn->kind));
  if (args->kind != SDW_PT_TUPLE) return fail_at(m, "REDUCE arguments are not a tuple");
  switch (fn->u.global) {
  case G_ORDERED_DICT: {
    if (args->u.seq.count != 0)
      return fail_at(m, "OrderedDict is only supported with no arguments (as pickle writes it)");
    sdw_pt_value *d = NULL;
    SDW_TRY(new_value(m, SDW_PT_DICT, &d));
    return push(m, d);
  }
  case G_REBUILD_TENSOR_V2: return rebuild_tensor(m, args);
  case G_REBUILD_PARAMETER:
  case G_REBUILD_PARAMETER_STATE: {
    size_t want = fn->u.global == G_REBUILD_PARAMETER ? 3 : 4;
    if (args->u.seq.count != want || args->u.seq.items[0]->kind != SDW_PT_TENSOR ||
        args->u.seq.items[1]->kind != SDW_PT_BOOL)
      return fail_at(m, "_rebuild_parameter takes (tensor, requires_grad, hooks%s)",
                     want == 4 ? ", state" : "");
    return push(m, args->u.seq.items[0]);
  }
  default: return fail_at(m, "a torch storage type cannot be called");
  }
}

static sdw_status run(machine *m) {
  for (;;) {
    m->op_pos = m->pos;
    if (m->pos >= m->n) return fail_at(m, "the pickle ends without STOP (it is truncated)");
    unsigned char op = m->p[m->pos++];
    sdw_pt_value *v = NULL, *w = NULL, *x = NULL;
    size_t begin = 0;
    switch (op) {
    case 0x80: /* PROTO */
      SDW_TRY(need(m, 1));
      if (m->p[m->pos] > 5) return fail_at(m, "pickle protocol %u is not supported", m->p[m->pos]);
      m->pos++;
      break;
    case 0x95: /* FRAME: frames are transparent */
      SDW_TRY(need(m, 8));
      m->pos += 8;
      break;
    case '.': /* STOP */
      SDW_TRY(pop(m, &v));
      m->f->root = v;
      return SDW_OK;
    case '(': /* MARK */
      if (m->mark_count >= SDW_PT_MAX_MARKS)
        return fail_at(m, "more than %zu nested MARKs", (size_t)SDW_PT_MAX_MARKS);
      if (m->mark_count == m->mark_cap) {
        size_t cap = m->mark_cap ? m->mark_cap * 2 : 32;
        size_t *marks = realloc(m->marks, cap * sizeof *marks);
        if (!marks) return oom(m);
        m->marks = marks, m->mark_cap = cap;
      }
      m->marks[m->mark_count++] = m->depth;
      break;
    case '0': /* POP: the top item, or the mark when nothing is above it */
      if (above_mark(m) == 0 && m->mark_count)
        m->mark_count--;
      else
        SDW_TRY(pop(m, &v));
      break;
    case '1': /* POP_MARK */
      SDW_TRY(pop_mark(m, &begin));
      m->depth = begin;
      break;
    case '2': /* DUP */
      SDW_TRY(top(m, &v));
      SDW_TRY(push(m, v));
      break;
    case 'N':
      SDW_TRY(new_value(m, SDW_PT_NONE, &v));
      SDW_TRY(push(m, v));
      break;
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
      SDW_TRY(new_value(m, SDW_PT_BOOL, &v));
      v->u.b = op == 0x88;
      SDW_TRY(push(m, v));
      break;
    case 'J':
      SDW_TRY(need(m, 4));
      SDW_TRY(new_int(m, (int32_t)le(m->p + m->pos, 4)));
      m->pos += 4;
      break;
    case 'K':
      SDW_TRY(need(m, 1));
      SDW_TRY(new_int(m, m->p[m->pos]));
      m->pos += 1;
      break;
    case 'M':
      SDW_TRY(need(m, 2));
      SDW_TRY(new_int(m, (int64_t)le(m->p + m->pos, 2)));
      m->pos += 2;
      break;
    case 0x8a: /* LONG1 */
    case 0x8b: /* LONG4 */ {
      int lenbytes = op == 0x8a ? 1 : 4;
      SDW_TRY(need(m, (size_t)lenbytes));
      uint64_t k = le(m->p + m->pos, lenbytes);
      m->pos += (size_t)lenbytes;
      if (op == 0x8b && (k & 0x80000000u)) return fail_at(m, "LONG4 with a negative length");
      if (k > 8) return fail_at(m, "an integer wider than 64 bits");
      SDW_TRY(need(m, (size_t)k));
      uint64_t u = le(m->p + m->pos, (int)k);
      if (k > 0 && k < 8 && (m->p[m->pos + k - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * k);
      m->pos += (size_t)k;
      SDW_TRY(new_int(m, (int64_t)u));
      break;
    }
    case 'G': { /* BINFLOAT: big-endian double */
      SDW_TRY(need(m, 8));
      uint64_t bits = 0;
      for (int i = 0; i < 8; i++)
        bits = bits << 8 | m->p[m->pos + (size_t)i];
      m->pos += 8;
      SDW_TRY(new_value(m, SDW_PT_FLOAT, &v));
      memcpy(&v->u.f, &bits, 8);
      SDW_TRY(push(m, v));
      break;
    }
    case 'X': /* BINUNICODE */
      SDW_TRY(need(m, 4));
      m->pos += 4;
      SDW_TRY(new_str(m, SDW_PT_STR, le(m->p + m->pos - 4, 4)));
      break;
    case 0x8c: /* SHORT_BINUNICODE */
      SDW_TRY(need(m, 1));
      m->pos += 1;
      SDW_TRY(new_str(m, SDW_PT_STR, m->p[m->pos - 1]));
      break;
    case 0x8d: /* BINUNICODE8 */
      SDW_TRY(need(m, 8));
      m->pos += 8;
      SDW_TRY(new_str(m, SDW_PT_STR, le(m->p + m->pos - 8, 8)));
      break;
    case 'T': /* BINSTRING (signed length) */
      SDW_TRY(need(m, 4));
      if (m->p[m->pos + 3] & 0x80) return fail_at(m, "BINSTRING with a negative length");
      m->pos += 4;
      SDW_TRY(new_str(m, SDW_PT_STR, le(m->p + m->pos - 4, 4)));
      break;
    case 'U': /* SHORT_BINSTRING */
      SDW_TRY(need(m, 1));
      m->pos += 1;
      SDW_TRY(new_str(m, SDW_PT_STR, m->p[m->pos - 1]));
      break;
    case 'B': /* BINBYTES */
      SDW_TRY(need(m, 4));
      m->pos += 4;
      SDW_TRY(new_str(m, SDW_PT_BYTES, le(m->p + m->pos - 4, 4)));
      break;
    case 'C': /* SHORT_BINBYTES */
      SDW_TRY(need(m, 1));
      m->pos += 1;
      SDW_TRY(new_str(m, SDW_PT_BYTES, m->p[m->pos - 1]));
      break;
    case 0x8e: /* BINBYTES8 */
      SDW_TRY(need(m, 8));
      m->pos += 8;
      SDW_TRY(new_str(m, SDW_PT_BYTES, le(m->p + m->pos - 8, 8)));
      break;
    case ')': SDW_TRY(small_tuple(m, 0)); break;
    case 0x85: SDW_TRY(small_tuple(m, 1)); break;
    case 0x86: SDW_TRY(small_tuple(m, 2)); break;
    case 0x87: SDW_TRY(small_tuple(m, 3)); break;
    case 't': SDW_TRY(from_mark(m, SDW_PT_TUPLE)); break;
    case 'l': SDW_TRY(from_mark(m, SDW_PT_LIST)); break;
    case ']':
      SDW_TRY(new_value(m, SDW_PT_LIST, &v));
      SDW_TRY(push(m, v));
      break;
    case '}':
      SDW_TRY(new_value(m, SDW_PT_DICT, &v));
      SDW_TRY(push(m, v));
      break;
    case 'd': /* DICT */
    case 'u': /* SETITEMS */ {
      SDW_TRY(pop_mark(m, &begin));
      size_t n = m->depth - begin;
      if (n % 2) return fail_at(m, "an odd number of items for a dict");
      if (op == 'd') {
        SDW_TRY(new_value(m, SDW_PT_DICT, &v));
      } else {
        if (begin == 0 || (m->mark_count && m->marks[m->mark_count - 1] >= begin))
          return fail_at(m, "SETITEMS with no dict below its MARK");
        v = m->stack[begin - 1];
        if (v->kind != SDW_PT_DICT)
          return fail_at(m, "SETITEMS on a %s", sdw_pt_kind_name(v->kind));
      }
      for (size_t i = begin; i < m->depth; i += 2)
        SDW_TRY(dict_set(m, v, m->stack[i], m->stack[i + 1]));
      m->depth = begin;
      if (op == 'd') SDW_TRY(push(m, v));
      break;
    }
    case 's': /* SETITEM */
      SDW_TRY(pop(m, &x));
      SDW_TRY(pop(m, &w));
      SDW_TRY(top(m, &v));
      if (v->kind != SDW_PT_DICT) return fail_at(m, "SETITEM on a %s", sdw_pt_kind_name(v->kind));
      SDW_TRY(dict_set(m, v, w, x));
      break;
    case 'a': /* APPEND */
      SDW_TRY(pop(m, &w));
      SDW_TRY(top(m, &v));
      if (v->kind != SDW_PT_LIST) return fail_at(m, "APPEND on a %s", sdw_pt_kind_name(v->kind));
      SDW_TRY(seq_reserve(m, v, 1));
      v->u.seq.items[v->u.seq.count++] = w;
      break;
    case 'e': { /* APPENDS */
      SDW_TRY(pop_mark(m, &begin));
      if (begin == 0 || (m->mark_count && m->marks[m->mark_count - 1] >= begin))
        return fail_at(m, "APPENDS with no list below its MARK");
      v = m->stack[begin - 1];
      if (v->kind != SDW_PT_LIST) return fail_at(m, "APPENDS on a %s", sdw_pt_kind_name(v->kind));
      size_t n = m->depth - begin;
      SDW_TRY(seq_reserve(m, v, n));
      if (n) memcpy(v->u.seq.items + v->u.seq.count, m->stack + begin, n * sizeof(*m->stack));
      v->u.seq.count += n;
      m->depth = begin;
      break;
    }
    case 'q':
      SDW_TRY(need(m, 1));
      SDW_TRY(memo_put(m, m->p[m->pos]));
      m->pos += 1;
      break;
    case 'r':
      SDW_TRY(need(m, 4));
      SDW_TRY(memo_put(m, le(m->p + m->pos, 4)));
      m->pos += 4;
      break;
    case 0x94: SDW_TRY(memo_put(m, m->memo_used)); break; /* MEMOIZE: index len(memo) */
    case 'h':
      SDW_TRY(need(m, 1));
      SDW_TRY(memo_get(m, m->p[m->pos]));
      m->pos += 1;
      break;
    case 'j':
      SDW_TRY(need(m, 4));
      SDW_TRY(memo_get(m, le(m->p + m->pos, 4)));
      m->pos += 4;
      break;
    case 'c': { /* GLOBAL "module\nname\n" */
      const char *s = (const char *)m->p + m->pos;
      size_t left = m->n - m->pos;
      const char *nl1 = memchr(s, '\n', left);
      const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', left - (size_t)(nl1 + 1 - s)) : NULL;
      if (!nl2) return fail_at(m, "GLOBAL runs past the end of the pickle");
      m->pos += (size_t)(nl2 + 1 - s);
      SDW_TRY(resolve_global(m, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1)));
      break;
    }
    case 0x93: /* STACK_GLOBAL */
      SDW_TRY(pop(m, &w));
      SDW_TRY(pop(m, &v));
      if (v->kind != SDW_PT_STR || w->kind != SDW_PT_STR)
        return fail_at(m, "STACK_GLOBAL needs two strings");
      SDW_TRY(resolve_global(m, v->u.str.data, v->u.str.len, w->u.str.data, w->u.str.len));
      break;
    case 'R': SDW_TRY(reduce(m)); break;
    case 'b': /* BUILD: only the attribute state of an OrderedDict (a state_dict's _metadata) */
      SDW_TRY(pop(m, &w));
      SDW_TRY(top(m, &v));
      if (v->kind != SDW_PT_DICT)
        return fail_at(m, "BUILD on a %s (object state is not supported)",
                       sdw_pt_kind_name(v->kind));
      break;
    case 'Q': /* BINPERSID */
      SDW_TRY(pop(m, &v));
      SDW_TRY(persistent_load(m, v));
      break;
    default:
      if (op >= 0x20 && op < 0x7f)
        return fail_at(m, "unsupported pickle opcode '%c' (0x%02x)", op, op);
      return fail_at(m, "unsupported pickle opcode 0x%02x", op);
    }
  }
}

static sdw_status handle_create(const char *name, sdw_pt **out) {
  sdw_pt *f = calloc(1, sizeof *f);
  if (f) f->name = dup_n(name, strlen(name));
  if (!f || !f->name) {
    free(f);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory opening %s", name);
  }
  *out = f;
  return SDW_OK;
}

static sdw_status unpickle(sdw_pt *f, const void *data, size_t size) {
  if (size > SDW_PT_MAX_PICKLE)
    return sdw_fail(SDW_ERR_FORMAT, "%s: data.pkl has %zu bytes (more than the %zu supported)",
                    f->name, size, (size_t)SDW_PT_MAX_PICKLE);
  machine m;
  memset(&m, 0, sizeof m);
  m.f = f;
  m.p = data;
  m.n = size;
  sdw_status st = run(&m);
  free(m.stack);
  free(m.marks);
  free(m.memo);
  return st;
}

sdw_status sdw_pt_parse_pickle(const void *data, size_t size, const char *name, sdw_pt **out) {
  *out = NULL;
  sdw_pt *f = NULL;
  SDW_TRY(handle_create(name, &f));
  static const unsigned char none[1];
  sdw_status st = unpickle(f, data ? data : none, data ? size : 0);
  if (st != SDW_OK) {
    sdw_pt_close(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

/* The zip is open in f->zip: find the archive folder, check the byte order,
 * unpickle data.pkl. */
static sdw_status open_archive(sdw_pt *f) {
  sdw_zip *z = f->zip;
  if (sdw_zip_count(z) == 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: an empty ZIP archive, not a PyTorch checkpoint", f->name);
  const char *first = sdw_zip_at(z, 0)->name;
  const char *slash = strchr(first, '/');
  if (!slash)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: not a PyTorch checkpoint (its first entry '%.200s' is not in a folder)",
                    f->name, first);
  f->prefix = dup_n(first, (size_t)(slash - first) + 1);
  f->storage_of = calloc(sdw_zip_count(z), sizeof *f->storage_of);
  if (!f->prefix || !f->storage_of)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory opening %s", f->name);
  char name[512];
  snprintf(name, sizeof name, "%.400sbyteorder", f->prefix);
  const sdw_zip_entry *e = sdw_zip_find(z, name);
  if (e) {
    const void *bytes;
    size_t n;
    SDW_TRY(sdw_zip_read(z, e, &bytes, &n));
    if (n == 3 && memcmp(bytes, "big", 3) == 0)
      return sdw_fail(SDW_ERR_UNSUPPORTED,
                      "%s: a big-endian checkpoint; load and re-save it on a little-endian "
                      "machine",
                      f->name);
    if (n != 6 || memcmp(bytes, "little", 6) != 0)
      return sdw_fail(SDW_ERR_FORMAT, "%s: %s says neither 'little' nor 'big'", f->name, name);
  }
  snprintf(name, sizeof name, "%.400sdata.pkl", f->prefix);
  e = sdw_zip_find(z, name);
  if (!e)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: a ZIP archive without %s, not a PyTorch checkpoint (a TorchScript or "
                    "other archive?)",
                    f->name, name);
  const void *pkl;
  size_t n;
  SDW_TRY(sdw_zip_read(z, e, &pkl, &n));
  return unpickle(f, pkl, n);
}

/* A clearer message than "not a ZIP" for the formats people actually have. */
static sdw_status explain_not_zip(const char *name, const unsigned char *p, size_t n) {
  if (n >= 2 && p[0] == 0x80 && p[1] <= 5)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: a legacy PyTorch checkpoint (torch.save before PyTorch 1.6, or with "
                    "_use_new_zipfile_serialization=False); re-save it with a newer PyTorch",
                    name);
  if (n >= 262 && memcmp(p + 257, "ustar", 5) == 0)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: a tar-format PyTorch checkpoint (PyTorch 0.x); re-save it with a newer "
                    "PyTorch",
                    name);
  return SDW_OK;
}

sdw_status sdw_pt_open_memory(const void *data, size_t size, const char *name, sdw_pt **out) {
  *out = NULL;
  sdw_pt *f = NULL;
  SDW_TRY(handle_create(name, &f));
  sdw_status st = sdw_zip_open_memory(data, size, name, &f->zip);
  if (st == SDW_ERR_FORMAT && data) {
    sdw_status why = explain_not_zip(name, data, size);
    if (why != SDW_OK) st = why;
  }
  if (st == SDW_OK) st = open_archive(f);
  if (st != SDW_OK) {
    sdw_pt_close(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

sdw_status sdw_pt_open(const char *path, sdw_pt **out) {
  *out = NULL;
  sdw_pt *f = NULL;
  SDW_TRY(handle_create(path, &f));
  sdw_status st = sdw_zip_open(path, &f->zip);
  if (st == SDW_ERR_FORMAT) {
    FILE *fp = fopen(path, "rb");
    unsigned char head[300];
    size_t n = fp ? fread(head, 1, sizeof head, fp) : 0;
    if (fp) fclose(fp);
    sdw_status why = explain_not_zip(path, head, n);
    if (why != SDW_OK) st = why;
  }
  if (st == SDW_OK) st = open_archive(f);
  if (st != SDW_OK) {
    sdw_pt_close(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

/* --- walking ------------------------------------------------------------------------- */

const sdw_pt_value *sdw_pt_dict_get(const sdw_pt_value *d, const char *key) {
  if (!d || d->kind != SDW_PT_DICT) return NULL;
  sdw_pt_value k;
  memset(&k, 0, sizeof k);
  k.kind = SDW_PT_STR;
  k.u.str.data = key;
  k.u.str.len = strlen(key);
  size_t at = dict_find(d, &k);
  return at == SIZE_MAX ? NULL : d->u.dict.values[at];
}

const sdw_pt_value *sdw_pt_dict_get_int(const sdw_pt_value *d, int64_t key) {
  if (!d || d->kind != SDW_PT_DICT) return NULL;
  sdw_pt_value k;
  memset(&k, 0, sizeof k);
  k.kind = SDW_PT_INT;
  k.u.i = key;
  size_t at = dict_find(d, &k);
  return at == SIZE_MAX ? NULL : d->u.dict.values[at];
}

bool sdw_pt_as_int(const sdw_pt_value *v, int64_t *out) {
  if (!v) return false;
  if (v->kind == SDW_PT_INT) return *out = v->u.i, true;
  if (v->kind == SDW_PT_BOOL) return *out = v->u.b, true;
  return false;
}

bool sdw_pt_as_double(const sdw_pt_value *v, double *out) {
  int64_t i;
  if (v && v->kind == SDW_PT_FLOAT) return *out = v->u.f, true;
  if (sdw_pt_as_int(v, &i)) return *out = (double)i, true;
  return false;
}

const char *sdw_pt_as_str(const sdw_pt_value *v) {
  return v && v->kind == SDW_PT_STR ? v->u.str.data : NULL;
}

const sdw_pt_tensor *sdw_pt_as_tensor(const sdw_pt_value *v) {
  return v && v->kind == SDW_PT_TENSOR ? &v->u.tensor : NULL;
}

size_t sdw_pt_tensor_nbytes(const sdw_pt_tensor *t) {
  return (size_t)t->numel * sdw_dtype_size(t->dtype);
}

bool sdw_pt_tensor_is_contiguous(const sdw_pt_tensor *t) {
  if (t->numel == 0) return true;
  int64_t want = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != want) return false;
    want *= t->shape[d];
  }
  return true;
}

const char *sdw_pt_tensor_key(const sdw_pt_tensor *t) { return t->storage->key; }

static sdw_status storage_bytes(sdw_pt *f, const sdw_pt_storage *s, const unsigned char **out) {
  const void *data;
  size_t n;
  SDW_TRY(sdw_zip_read(f->zip, s->entry, &data, &n));
  SDW_ASSERT(n == (size_t)s->numel * sdw_dtype_size(s->dtype)); /* checked at open */
  *out = data;
  return SDW_OK;
}

sdw_status sdw_pt_tensor_data(sdw_pt *f, const sdw_pt_tensor *t, const void **data) {
  if (!sdw_pt_tensor_is_contiguous(t))
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: tensor on storage '%s' is not contiguous", f->name,
                    t->storage->key);
  const unsigned char *bytes;
  SDW_TRY(storage_bytes(f, t->storage, &bytes));
  *data = bytes + (size_t)t->offset * sdw_dtype_size(t->dtype);
  return SDW_OK;
}

/* Copies n elements of size es from src with element stride s into dst. */
static void gather_row(unsigned char *dst, const unsigned char *src, int64_t n, int64_t s,
                       size_t es) {
  size_t step = (size_t)s * es;
  switch (es) {
  case 4:
    for (int64_t i = 0; i < n; i++, dst += 4, src += step)
      memcpy(dst, src, 4);
    break;
  case 2:
    for (int64_t i = 0; i < n; i++, dst += 2, src += step)
      memcpy(dst, src, 2);
    break;
  case 8:
    for (int64_t i = 0; i < n; i++, dst += 8, src += step)
      memcpy(dst, src, 8);
    break;
  default:
    for (int64_t i = 0; i < n; i++, dst += es, src += step)
      memcpy(dst, src, es);
    break;
  }
}

sdw_status sdw_pt_tensor_read(sdw_pt *f, const sdw_pt_tensor *t, void *dst, size_t dst_size) {
  size_t nbytes = sdw_pt_tensor_nbytes(t);
  if (dst_size != nbytes)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s: tensor on storage '%s' has %zu bytes, the buffer %zu", f->name,
                    t->storage->key, nbytes, dst_size);
  if (nbytes == 0) return SDW_OK;
  const unsigned char *bytes;
  SDW_TRY(storage_bytes(f, t->storage, &bytes));
  size_t es = sdw_dtype_size(t->dtype);
  const unsigned char *base = bytes + (size_t)t->offset * es;
  if (sdw_pt_tensor_is_contiguous(t)) {
    memcpy(dst, base, nbytes);
    return SDW_OK;
  }
  /* Odometer over the outer dims, one strided row of the last dim at a time
   * (bounds were proven when the tensor was built). */
  int nd = t->ndim;
  int64_t row = t->shape[nd - 1], rs = t->stride[nd - 1];
  int64_t idx[SDW_MAX_DIMS] = {0};
  unsigned char *out = dst;
  for (int64_t done = 0; done < t->numel; done += row) {
    size_t off = 0;
    for (int d = 0; d < nd - 1; d++)
      off += (size_t)idx[d] * (size_t)t->stride[d];
    gather_row(out, base + off * es, row, rs, es);
    out += (size_t)row * es;
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  return SDW_OK;
}

const char *sdw_pt_describe(const sdw_pt_value *v, char *buf, size_t size) {
  if (!v) {
    snprintf(buf, size, "nothing");
    return buf;
  }
  switch (v->kind) {
  case SDW_PT_TUPLE:
  case SDW_PT_LIST:
    snprintf(buf, size, "a %s of %zu", sdw_pt_kind_name(v->kind), v->u.seq.count);
    break;
  case SDW_PT_DICT: snprintf(buf, size, "a dict of %zu", v->u.dict.count); break;
  case SDW_PT_TENSOR: {
    const sdw_pt_tensor *t = &v->u.tensor;
    int k = snprintf(buf, size, "a %s tensor [", sdw_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim && k > 0 && (size_t)k < size; d++)
      k += snprintf(buf + k, size - (size_t)k, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (k > 0 && (size_t)k < size) snprintf(buf + k, size - (size_t)k, "]");
    break;
  }
  case SDW_PT_INT: snprintf(buf, size, "an int (%" PRId64 ")", v->u.i); break;
  case SDW_PT_NONE: snprintf(buf, size, "None"); break;
  default: snprintf(buf, size, "a %s", sdw_pt_kind_name(v->kind)); break;
  }
  return buf;
}
