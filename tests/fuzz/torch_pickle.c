/* libFuzzer target for the PyTorch checkpoint reader (make fuzz): the ZIP
 * reader (core/base/zip_reader.h) and the restricted unpickler
 * (core/base/torch_pickle.h). Each input is tried three ways:
 *   1. as a bare pickle stream (sdw_pt_parse_pickle);
 *   2. as a whole checkpoint file, ZIP container included
 *      (sdw_pt_open_memory);
 *   3. as the data.pkl of a well-formed archive that also holds three
 *      storages ("0": 64 bytes, "1": 6 bytes, "2": empty), so mutations
 *      reach the tensor-building code without having to get the ZIP right.
 * Every outcome must be a status with a one-line message, or a tree whose
 * tensors can all be read inside their storages (ASan + UBSan stop any read
 * outside the input or undefined arithmetic). Seeds:
 * tests/fuzz/seeds/torch_pickle/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/base/torch_pickle.h"
#include "core/base/zip_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Visits the tree (shared values and cycles: bounded by a visit budget and
 * a depth limit), reading every tensor. */
static void walk(sdw_pt *f, const sdw_pt_value *v, int depth, int *budget) {
  if (!v) abort();
  if (depth > 64 || --*budget < 0) return;
  char buf[96];
  sdw_pt_describe(v, buf, sizeof buf);
  if (strchr(buf, '\n')) abort();
  switch (v->kind) {
  case SDW_PT_TUPLE:
  case SDW_PT_LIST:
    for (size_t i = 0; i < v->u.seq.count; i++)
      walk(f, v->u.seq.items[i], depth + 1, budget);
    break;
  case SDW_PT_DICT:
    for (size_t i = 0; i < v->u.dict.count; i++) {
      const sdw_pt_value *k = v->u.dict.keys[i];
      walk(f, k, depth + 1, budget);
      walk(f, v->u.dict.values[i], depth + 1, budget);
      /* lookups find what iteration shows (keys are unique) */
      if (k->kind == SDW_PT_STR && strlen(k->u.str.data) == k->u.str.len &&
          sdw_pt_dict_get(v, k->u.str.data) != v->u.dict.values[i])
        abort();
      if (k->kind == SDW_PT_INT && sdw_pt_dict_get_int(v, k->u.i) != v->u.dict.values[i]) abort();
    }
    break;
  case SDW_PT_TENSOR: {
    const sdw_pt_tensor *t = &v->u.tensor;
    size_t n = sdw_pt_tensor_nbytes(t);
    if (t->ndim < 0 || t->ndim > SDW_MAX_DIMS || t->numel < 0) abort();
    if (n > ((size_t)1 << 20)) break; /* huge views (zero strides) are legal */
    void *out = malloc(n ? n : 1);
    if (!out) break;
    sdw_status s = sdw_pt_tensor_read(f, t, out, n);
    if (s != SDW_OK && (s != SDW_ERR_FORMAT || !sdw_last_error()[0])) abort();
    const void *direct;
    if (s == SDW_OK && sdw_pt_tensor_data(f, t, &direct) == SDW_OK && n &&
        memcmp(direct, out, n) != 0)
      abort();
    free(out);
    break;
  }
  default: break;
  }
}

static void check_error(sdw_status s, const sdw_pt *f) {
  const char *m = sdw_last_error();
  if (s == SDW_OK || f != NULL || m[0] == '\0' || strchr(m, '\n')) abort();
  if (s != SDW_ERR_FORMAT && s != SDW_ERR_UNSUPPORTED && s != SDW_ERR_OUT_OF_MEMORY) abort();
}

static void try_open(sdw_status s, sdw_pt *f) {
  if (s != SDW_OK) {
    check_error(s, f);
    return;
  }
  int budget = 100000;
  walk(f, sdw_pt_root(f), 0, &budget);
  sdw_pt_close(f);
}

/* --- a minimal stored-ZIP writer for mode 3 ------------------------------------------ */

typedef struct out {
  uint8_t *p;
  size_t n;
} out;

static void put(out *o, const void *d, size_t n) {
  memcpy(o->p + o->n, d, n);
  o->n += n;
}
static void put16(out *o, uint32_t v) {
  uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
  put(o, b, 2);
}
static void put32(out *o, uint32_t v) {
  put16(o, v & 0xffff);
  put16(o, v >> 16);
}

static void header(out *o, uint32_t sig, const char *name, const uint8_t *d, size_t n,
                   uint32_t offset) {
  put32(o, sig);
  if (sig == 0x02014b50) put16(o, 20);
  put16(o, 20);
  put16(o, 0);
  put16(o, 0);
  put32(o, 0);
  put32(o, (uint32_t)crc32(0, d, (uInt)n));
  put32(o, (uint32_t)n);
  put32(o, (uint32_t)n);
  put16(o, (uint32_t)strlen(name));
  put16(o, 0);
  if (sig == 0x02014b50) {
    put16(o, 0);
    put16(o, 0);
    put16(o, 0);
    put32(o, 0);
    put32(o, offset);
  }
  put(o, name, strlen(name));
}

static void wrapped(const uint8_t *pkl, size_t size) {
  static const uint8_t storage[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const char *names[4] = {"archive/data.pkl", "archive/data/0", "archive/data/1", "archive/data/2"};
  const uint8_t *datas[4] = {pkl, storage, storage, storage};
  size_t sizes[4] = {size, 64, 6, 0};
  out o = {malloc(size + 1024), 0};
  if (!o.p) return;
  uint32_t offs[4];
  for (int i = 0; i < 4; i++) {
    offs[i] = (uint32_t)o.n;
    header(&o, 0x04034b50, names[i], datas[i], sizes[i], 0);
    put(&o, datas[i], sizes[i]);
  }
  uint32_t cd = (uint32_t)o.n;
  for (int i = 0; i < 4; i++)
    header(&o, 0x02014b50, names[i], datas[i], sizes[i], offs[i]);
  uint32_t cd_size = (uint32_t)o.n - cd;
  put32(&o, 0x06054b50);
  put16(&o, 0);
  put16(&o, 0);
  put16(&o, 4);
  put16(&o, 4);
  put32(&o, cd_size);
  put32(&o, cd);
  put16(&o, 0);
  sdw_pt *f = NULL;
  try_open(sdw_pt_open_memory(o.p, o.n, "wrapped.pt", &f), f);
  free(o.p);
}

/* The ZIP reader alone: every entry inside the input, every small one
 * readable or refused with a message. */
static void zip_only(const uint8_t *data, size_t size) {
  sdw_zip *z = NULL;
  sdw_status s = sdw_zip_open_memory(data, size, "fuzz.zip", &z);
  if (s != SDW_OK) {
    if (z || !sdw_last_error()[0]) abort();
    return;
  }
  for (size_t i = 0; i < sdw_zip_count(z); i++) {
    const sdw_zip_entry *e = sdw_zip_at(z, i);
    if (e->data < data || e->compressed_size > (uint64_t)(data + size - e->data)) abort();
    if (sdw_zip_find(z, e->name) != e) abort();
    if (e->size > ((uint64_t)1 << 20)) continue;
    const void *bytes;
    size_t n;
    s = sdw_zip_read(z, e, &bytes, &n);
    if (s == SDW_OK && n != e->size) abort();
    if (s != SDW_OK && !sdw_last_error()[0]) abort();
  }
  sdw_zip_close(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sdw_pt *f = NULL;
  try_open(sdw_pt_parse_pickle(data, size, "fuzz.pkl", &f), f);
  f = NULL;
  try_open(sdw_pt_open_memory(data, size, "fuzz.pt", &f), f);
  zip_only(data, size);
  if (size < ((size_t)1 << 20)) wrapped(data, size);
  return 0;
}
