/* Test helpers for PyTorch checkpoints: a pickle assembler (the opcodes
 * torch.save writes, protocol 2, as Python's pickle module emits them; see
 * pickletools for the byte layouts) and a ZIP writer (stored or deflated
 * entries, optional ZIP64 records), so tests can build hostile and
 * corner-case checkpoints byte by byte. Independent of the reader: it
 * follows APPNOTE.TXT and pickle.py, not core/base. */
#ifndef SDW_TESTS_TEST_PT_UTIL_H
#define SDW_TESTS_TEST_PT_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PT_UNUSED __attribute__((unused))

/* --- pickle assembler --------------------------------------------------------------- */

typedef struct pk {
  unsigned char *b;
  size_t n, cap;
} pk;

PT_UNUSED static void pk_bytes(pk *p, const void *data, size_t n) {
  if (p->cap - p->n < n) {
    size_t cap = p->cap ? p->cap : 1024;
    while (cap - p->n < n)
      cap *= 2;
    p->b = realloc(p->b, cap);
    p->cap = cap;
  }
  memcpy(p->b + p->n, data, n);
  p->n += n;
}
PT_UNUSED static void pk_op(pk *p, unsigned char op) { pk_bytes(p, &op, 1); }
PT_UNUSED static void pk_u32(pk *p, uint32_t v) {
  unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                        (unsigned char)(v >> 24)};
  pk_bytes(p, b, 4);
}
PT_UNUSED static void pk_proto(pk *p) {
  pk_op(p, 0x80);
  pk_op(p, 2);
}
/* BINUNICODE */
PT_UNUSED static void pk_str(pk *p, const char *s) {
  pk_op(p, 'X');
  pk_u32(p, (uint32_t)strlen(s));
  pk_bytes(p, s, strlen(s));
}
/* BININT (signed 32-bit) */
PT_UNUSED static void pk_int(pk *p, int32_t v) {
  pk_op(p, 'J');
  pk_u32(p, (uint32_t)v);
}
/* LONG1 with the minimal two's complement bytes, as pickle.encode_long. */
PT_UNUSED static void pk_long(pk *p, int64_t v) {
  unsigned char b[8];
  int n = 8;
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)v >> (8 * i));
  while (n > 1 &&
         ((b[n - 1] == 0 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xff && (b[n - 2] & 0x80))))
    n--;
  if (v == 0) n = 0;
  pk_op(p, 0x8a);
  pk_op(p, (unsigned char)n);
  pk_bytes(p, b, (size_t)n);
}
/* BINFLOAT: big-endian IEEE double */
PT_UNUSED static void pk_float(pk *p, double v) {
  uint64_t bits;
  memcpy(&bits, &v, 8);
  pk_op(p, 'G');
  for (int i = 7; i >= 0; i--)
    pk_op(p, (unsigned char)(bits >> (8 * i)));
}
/* GLOBAL "module\nname\n" */
PT_UNUSED static void pk_global(pk *p, const char *module, const char *name) {
  pk_op(p, 'c');
  pk_bytes(p, module, strlen(module));
  pk_op(p, '\n');
  pk_bytes(p, name, strlen(name));
  pk_op(p, '\n');
}
/* _rebuild_tensor_v2(storage(key, type, numel), offset, size, stride, False,
 * OrderedDict()) exactly as torch.save lays it out. */
PT_UNUSED static void pk_tensor(pk *p, const char *storage_type, const char *key, int64_t numel,
                                int64_t offset, int nd, const int64_t *size,
                                const int64_t *stride) {
  pk_global(p, "torch._utils", "_rebuild_tensor_v2");
  pk_op(p, '(');
  pk_op(p, '(');
  pk_str(p, "storage");
  pk_global(p, "torch", storage_type);
  pk_str(p, key);
  pk_str(p, "cpu");
  pk_long(p, numel);
  pk_op(p, 't');
  pk_op(p, 'Q'); /* BINPERSID */
  pk_long(p, offset);
  pk_op(p, '(');
  for (int d = 0; d < nd; d++)
    pk_long(p, size[d]);
  pk_op(p, 't');
  pk_op(p, '(');
  for (int d = 0; d < nd; d++)
    pk_long(p, stride[d]);
  pk_op(p, 't');
  pk_op(p, 0x89); /* NEWFALSE */
  pk_global(p, "collections", "OrderedDict");
  pk_op(p, ')');
  pk_op(p, 'R');
  pk_op(p, 't');
  pk_op(p, 'R');
}

/* --- ZIP writer ---------------------------------------------------------------------- */

typedef struct zentry {
  const char *name;
  const void *data;
  size_t size;
  bool deflate;
} zentry;

typedef struct zbuf {
  unsigned char *b;
  size_t n, cap;
} zbuf;

PT_UNUSED static void zb_put(zbuf *z, const void *d, size_t n) {
  pk tmp = {z->b, z->n, z->cap};
  pk_bytes(&tmp, d, n);
  z->b = tmp.b, z->n = tmp.n, z->cap = tmp.cap;
}
PT_UNUSED static void zb_u16(zbuf *z, uint32_t v) {
  unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
  zb_put(z, b, 2);
}
PT_UNUSED static void zb_u32(zbuf *z, uint32_t v) {
  zb_u16(z, v & 0xffff);
  zb_u16(z, v >> 16);
}
PT_UNUSED static void zb_u64(zbuf *z, uint64_t v) {
  zb_u32(z, (uint32_t)v);
  zb_u32(z, (uint32_t)(v >> 32));
}

/* Raw deflate (no zlib header), as ZIP method 8 stores it; malloc'd. */
PT_UNUSED static unsigned char *z_deflate(const void *data, size_t n, size_t *out_n) {
  z_stream s;
  memset(&s, 0, sizeof s);
  deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  size_t cap = deflateBound(&s, (uLong)n) + 16;
  unsigned char *out = malloc(cap);
  s.next_in = (Bytef *)(uintptr_t)data;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  deflate(&s, Z_FINISH);
  *out_n = s.total_out;
  deflateEnd(&s);
  return out;
}

/* A ZIP archive of the entries (malloc'd, *size bytes). With zip64, every
 * size and offset field is saturated and carried in ZIP64 extra fields, and
 * the ZIP64 end records are written: what a > 4 GiB checkpoint looks like. */
PT_UNUSED static unsigned char *zip_build(const zentry *e, int count, bool zip64, size_t *size) {
  zbuf z = {0};
  uint64_t *offs = calloc((size_t)count, sizeof *offs);
  size_t *csizes = calloc((size_t)count, sizeof *csizes);
  unsigned char **cdata = calloc((size_t)count, sizeof *cdata);
  for (int i = 0; i < count; i++) {
    const unsigned char *d = e[i].data;
    size_t cn = e[i].size;
    if (e[i].deflate) {
      cdata[i] = z_deflate(e[i].data, e[i].size, &cn);
      d = cdata[i];
    }
    csizes[i] = cn;
    offs[i] = z.n;
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)e[i].data, (uInt)e[i].size);
    zb_u32(&z, 0x04034b50);
    zb_u16(&z, zip64 ? 45 : 20);
    zb_u16(&z, 0);
    zb_u16(&z, e[i].deflate ? 8 : 0);
    zb_u16(&z, 0);
    zb_u16(&z, 0);
    zb_u32(&z, crc);
    zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cn);
    zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)e[i].size);
    zb_u16(&z, (uint32_t)strlen(e[i].name));
    zb_u16(&z, zip64 ? 20 : 0);
    zb_put(&z, e[i].name, strlen(e[i].name));
    if (zip64) {
      zb_u16(&z, 1);
      zb_u16(&z, 16);
      zb_u64(&z, e[i].size);
      zb_u64(&z, cn);
    }
    zb_put(&z, d, cn);
  }
  uint64_t cd = z.n;
  for (int i = 0; i < count; i++) {
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)e[i].data, (uInt)e[i].size);
    zb_u32(&z, 0x02014b50);
    zb_u16(&z, zip64 ? 45 : 20);
    zb_u16(&z, zip64 ? 45 : 20);
    zb_u16(&z, 0);
    zb_u16(&z, e[i].deflate ? 8 : 0);
    zb_u16(&z, 0);
    zb_u16(&z, 0);
    zb_u32(&z, crc);
    zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)csizes[i]);
    zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)e[i].size);
    zb_u16(&z, (uint32_t)strlen(e[i].name));
    zb_u16(&z, zip64 ? 28 : 0);
    zb_u16(&z, 0);
    zb_u16(&z, 0);
    zb_u16(&z, 0);
    zb_u32(&z, 0);
    zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)offs[i]);
    zb_put(&z, e[i].name, strlen(e[i].name));
    if (zip64) {
      zb_u16(&z, 1);
      zb_u16(&z, 24);
      zb_u64(&z, e[i].size);
      zb_u64(&z, csizes[i]);
      zb_u64(&z, offs[i]);
    }
  }
  uint64_t cd_size = z.n - cd;
  if (zip64) {
    uint64_t rec = z.n;
    zb_u32(&z, 0x06064b50);
    zb_u64(&z, 44);
    zb_u16(&z, 45);
    zb_u16(&z, 45);
    zb_u32(&z, 0);
    zb_u32(&z, 0);
    zb_u64(&z, (uint64_t)count);
    zb_u64(&z, (uint64_t)count);
    zb_u64(&z, cd_size);
    zb_u64(&z, cd);
    zb_u32(&z, 0x07064b50);
    zb_u32(&z, 0);
    zb_u64(&z, rec);
    zb_u32(&z, 1);
  }
  zb_u32(&z, 0x06054b50);
  zb_u16(&z, 0);
  zb_u16(&z, 0);
  zb_u16(&z, zip64 ? 0xFFFF : (uint32_t)count);
  zb_u16(&z, zip64 ? 0xFFFF : (uint32_t)count);
  zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
  zb_u32(&z, zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
  zb_u16(&z, 0);
  for (int i = 0; i < count; i++)
    free(cdata[i]);
  free(cdata);
  free(offs);
  free(csizes);
  *size = z.n;
  return z.b;
}

#endif
