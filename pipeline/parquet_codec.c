/* Parquet page codecs: see parquet_codec.h. */
#include "pipeline/parquet_codec.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

const char *sdw_parquet_codec_name(int codec) {
  switch (codec) {
  case SDW_PARQUET_UNCOMPRESSED: return "UNCOMPRESSED";
  case SDW_PARQUET_SNAPPY: return "SNAPPY";
  case SDW_PARQUET_GZIP: return "GZIP";
  case SDW_PARQUET_LZO: return "LZO";
  case SDW_PARQUET_BROTLI: return "BROTLI";
  case SDW_PARQUET_LZ4_HADOOP: return "LZ4";
  case SDW_PARQUET_ZSTD: return "ZSTD";
  case SDW_PARQUET_LZ4_RAW: return "LZ4_RAW";
  default: return "unknown codec";
  }
}

static size_t mul_add_sat(size_t n, size_t k, size_t add) {
  if (n > (SIZE_MAX - add) / k) return SIZE_MAX;
  return n * k + add;
}

size_t sdw_parquet_codec_max_expansion(int codec, size_t n) {
  switch (codec) {
  case SDW_PARQUET_UNCOMPRESSED: return n;
  /* Snappy's densest element is a 3-byte copy of 64 bytes. */
  case SDW_PARQUET_SNAPPY: return mul_add_sat(n, 22, 0);
  /* Deflate's maximum ratio is 1032:1 (258-byte matches in ~2 bits). */
  case SDW_PARQUET_GZIP: return mul_add_sat(n, 1032, 1024);
  /* LZ4: every 255 of a length costs one byte. */
  case SDW_PARQUET_LZ4_RAW: return mul_add_sat(n, 256, 64);
  default: return SIZE_MAX;
  }
}

/* --- snappy --------------------------------------------------------------------- */

static inline uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static inline uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

bool sdw_snappy_uncompressed_length(const uint8_t *src, size_t n, size_t *length) {
  uint64_t v = 0;
  for (size_t i = 0; i < 5 && i < n; i++) {
    v |= (uint64_t)(src[i] & 0x7f) << (7 * i);
    if (!(src[i] & 0x80)) {
      if (v > UINT32_MAX) return false;
      *length = (size_t)v;
      return true;
    }
  }
  return false;
}

static size_t varint_len(const uint8_t *src, size_t n) {
  for (size_t i = 0; i < 5 && i < n; i++)
    if (!(src[i] & 0x80)) return i + 1;
  return 0;
}

static inline void copy64(uint8_t *dst, const uint8_t *src) {
  uint64_t v; /* load, then store: defined also when the ranges overlap */
  memcpy(&v, src, 8);
  memcpy(dst, &v, 8);
}

static inline void copy128(uint8_t *dst, const uint8_t *src) {
  uint8_t v[16];
  memcpy(v, src, 16);
  memcpy(dst, v, 16);
}

bool sdw_snappy_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size) {
  size_t ulen;
  if (!sdw_snappy_uncompressed_length(src, n, &ulen) || ulen != dst_size) return false;
  const uint8_t *ip = src + varint_len(src, n), *iend = src + n;
  uint8_t *op = dst, *oend = dst + dst_size;
  while (ip < iend) {
    const uint8_t tag = *ip++;
    size_t len, off;
    if ((tag & 3) == 0) { /* literal */
      len = (size_t)(tag >> 2) + 1;
      if (len <= 16 && iend - ip >= 16 && oend - op >= 16) {
        copy128(op, ip); /* over-copy; the tail is overwritten later */
        ip += len;
        op += len;
        continue;
      }
      if (len > 60) {
        size_t nb = len - 60;
        if ((size_t)(iend - ip) < nb) return false;
        len = 0;
        for (size_t i = 0; i < nb; i++)
          len |= (size_t)ip[i] << (8 * i);
        ip += nb;
        len += 1;
      }
      if (len > (size_t)(iend - ip) || len > (size_t)(oend - op)) return false;
      memcpy(op, ip, len);
      ip += len;
      op += len;
      continue;
    }
    if ((tag & 3) == 1) {
      if (ip >= iend) return false;
      len = ((tag >> 2) & 7) + 4;
      off = ((size_t)(tag >> 5) << 8) | *ip++;
    } else if ((tag & 3) == 2) {
      if (iend - ip < 2) return false;
      len = (size_t)(tag >> 2) + 1;
      off = (size_t)ip[0] | (size_t)ip[1] << 8;
      ip += 2;
    } else {
      if (iend - ip < 4) return false;
      len = (size_t)(tag >> 2) + 1;
      off = load32(ip);
      ip += 4;
    }
    /* off - 1 >= produced also catches off == 0 */
    if (off - 1 >= (size_t)(op - dst) || len > (size_t)(oend - op)) return false;
    const uint8_t *from = op - off;
    if ((size_t)(oend - op) >= len + 16) {
      /* Fast paths that may write up to 16 bytes past op + len (inside
       * dst, overwritten later). */
      if (off >= 16) {
        copy128(op, from);
        for (size_t i = 16; i < len; i += 16)
          copy128(op + i, from + i);
      } else {
        /* Widen a short pattern until it is 8 bytes behind, then 8-byte
         * steps (as the reference's IncrementalCopy). */
        uint8_t *o = op;
        const uint8_t *s = from;
        ptrdiff_t left = (ptrdiff_t)len;
        while (o - s < 8) {
          copy64(o, s);
          left -= o - s;
          o += o - s;
        }
        while (left > 0) {
          copy64(o, s);
          s += 8;
          o += 8;
          left -= 8;
        }
      }
    } else {
      for (size_t i = 0; i < len; i++)
        op[i] = from[i];
    }
    op += len;
  }
  return op == oend;
}

size_t sdw_snappy_max_compressed_length(size_t n) { return 32 + n + n / 6; }

static uint8_t *emit_literal(uint8_t *op, const uint8_t *lit, size_t len) {
  size_t n = len - 1;
  if (n < 60) {
    *op++ = (uint8_t)(n << 2);
  } else {
    int nb = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
    *op++ = (uint8_t)((59 + nb) << 2);
    for (int i = 0; i < nb; i++)
      *op++ = (uint8_t)(n >> (8 * i));
  }
  memcpy(op, lit, len);
  return op + len;
}

static uint8_t *emit_copy_upto64(uint8_t *op, size_t off, size_t len) {
  if (len < 12 && off < 2048) {
    *op++ = (uint8_t)(1 | ((len - 4) << 2) | ((off >> 8) << 5));
    *op++ = (uint8_t)off;
  } else {
    *op++ = (uint8_t)(2 | ((len - 1) << 2));
    *op++ = (uint8_t)off;
    *op++ = (uint8_t)(off >> 8);
  }
  return op;
}

static uint8_t *emit_copy(uint8_t *op, size_t off, size_t len) {
  while (len >= 68) {
    op = emit_copy_upto64(op, off, 64);
    len -= 64;
  }
  if (len > 64) {
    op = emit_copy_upto64(op, off, 60);
    len -= 60;
  }
  return emit_copy_upto64(op, off, len);
}

enum { SNAPPY_BLOCK = 1 << 16, SNAPPY_HASH_BITS = 14, SNAPPY_MARGIN = 15 };

static inline uint32_t snappy_hash(uint32_t v) {
  return (v * 0x1e35a7bdu) >> (32 - SNAPPY_HASH_BITS);
}

/* Greedy matcher over independent 64 KiB blocks (offsets fit in 2 bytes),
 * like the reference: a 4-byte hash table of positions, skipping faster
 * through data that does not match. */
size_t sdw_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst) {
  uint8_t *op = dst;
  size_t v = n;
  while (v >= 0x80) {
    *op++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *op++ = (uint8_t)v;
  uint16_t table[1 << SNAPPY_HASH_BITS];
  for (size_t b = 0; b < n; b += SNAPPY_BLOCK) {
    size_t blen = n - b < SNAPPY_BLOCK ? n - b : SNAPPY_BLOCK;
    const uint8_t *base = src + b, *bend = base + blen, *anchor = base;
    if (blen >= SNAPPY_MARGIN) {
      memset(table, 0, sizeof table);
      const uint8_t *ip = base + 1, *limit = bend - SNAPPY_MARGIN;
      uint32_t skip = 32;
      while (ip < limit) {
        uint32_t cur = load32(ip);
        uint32_t h = snappy_hash(cur);
        const uint8_t *cand = base + table[h];
        table[h] = (uint16_t)(ip - base);
        if (cand >= ip || load32(cand) != cur) {
          ip += skip++ >> 5;
          continue;
        }
        skip = 32;
        if (ip > anchor) op = emit_literal(op, anchor, (size_t)(ip - anchor));
        size_t m = 4;
        while (ip + m + 8 <= bend) {
          uint64_t x = load64(ip + m) ^ load64(cand + m);
          if (x) {
            m += (size_t)__builtin_ctzll(x) >> 3;
            goto matched;
          }
          m += 8;
        }
        while (ip + m < bend && ip[m] == cand[m])
          m++;
      matched:
        op = emit_copy(op, (size_t)(ip - cand), m);
        ip += m;
        anchor = ip;
        if (ip < limit) table[snappy_hash(load32(ip - 1))] = (uint16_t)(ip - 1 - base);
      }
    }
    if (bend > anchor) op = emit_literal(op, anchor, (size_t)(bend - anchor));
  }
  return (size_t)(op - dst);
}

/* --- LZ4 block ------------------------------------------------------------------- */

bool sdw_lz4_block_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size) {
  uint8_t no_output; /* NULL + 0 and memcpy(NULL, ..., 0) are undefined in C */
  if (!dst) {
    if (dst_size) return false;
    dst = &no_output;
  }
  if (n == 0) return dst_size == 0;
  const uint8_t *ip = src, *iend = src + n;
  uint8_t *op = dst, *oend = dst + dst_size;
  for (;;) {
    if (ip >= iend) return false;
    uint8_t token = *ip++;
    size_t lit = token >> 4;
    if (lit == 15) {
      uint8_t b;
      do {
        if (ip >= iend) return false;
        b = *ip++;
        lit += b;
      } while (b == 255);
    }
    if (lit > (size_t)(iend - ip) || lit > (size_t)(oend - op)) return false;
    memcpy(op, ip, lit);
    ip += lit;
    op += lit;
    if (ip == iend) break; /* the last sequence has literals only */
    if (iend - ip < 2) return false;
    size_t off = (size_t)ip[0] | (size_t)ip[1] << 8;
    ip += 2;
    size_t len = token & 15;
    if (len == 15) {
      uint8_t b;
      do {
        if (ip >= iend) return false;
        b = *ip++;
        len += b;
      } while (b == 255);
    }
    len += 4;
    if (off == 0 || off > (size_t)(op - dst) || len > (size_t)(oend - op)) return false;
    const uint8_t *from = op - off;
    for (size_t i = 0; i < len; i++)
      op[i] = from[i];
    op += len;
  }
  return op == oend;
}

/* --- zlib ------------------------------------------------------------------------ */

static sdw_status gzip_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size,
                                  const char *what) {
  z_stream s;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, 15 + 32) != Z_OK) /* 32: gzip or zlib header */
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: cannot start zlib", what);
  const uint8_t *ip = src;
  size_t in_left = n;
  uint8_t *op = dst;
  size_t out_left = dst_size;
  int rc = Z_OK;
  /* avail_in/avail_out are 32-bit: feed in slices. */
  while (rc == Z_OK) {
    uInt in_chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
    uInt out_chunk = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
    s.next_in = (Bytef *)ip;
    s.avail_in = in_chunk;
    s.next_out = op;
    s.avail_out = out_chunk;
    rc = inflate(&s, Z_NO_FLUSH);
    size_t used_in = in_chunk - s.avail_in, used_out = out_chunk - s.avail_out;
    ip += used_in;
    in_left -= used_in;
    op += used_out;
    out_left -= used_out;
    if (rc == Z_BUF_ERROR && used_in == 0 && used_out == 0) break; /* no progress possible */
    if (rc == Z_BUF_ERROR) rc = Z_OK;
  }
  inflateEnd(&s);
  if (rc != Z_STREAM_END)
    return sdw_fail(SDW_ERR_FORMAT, "%s: GZIP data is corrupt or truncated (%s)", what,
                    s.msg ? s.msg : "stream did not end");
  if (out_left != 0)
    return sdw_fail(SDW_ERR_FORMAT, "%s: GZIP data decompresses to %zu bytes, %zu declared", what,
                    dst_size - out_left, dst_size);
  return SDW_OK;
}

static sdw_status gzip_compress(const uint8_t *src, size_t n, uint8_t *dst, size_t cap,
                                size_t *out_size) {
  z_stream s;
  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "gzip: cannot start zlib");
  if (n > UINT32_MAX / 2 || cap > UINT32_MAX) {
    deflateEnd(&s);
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "gzip: page of %zu bytes is too large", n);
  }
  s.next_in = (Bytef *)src;
  s.avail_in = (uInt)n;
  s.next_out = dst;
  s.avail_out = (uInt)cap;
  int rc = deflate(&s, Z_FINISH);
  *out_size = cap - s.avail_out;
  deflateEnd(&s);
  if (rc != Z_STREAM_END) return sdw_fail(SDW_ERR_INTERNAL, "gzip: compression did not finish");
  return SDW_OK;
}

/* --- zstd (dlopen) ------------------------------------------------------------------ */

typedef size_t (*zstd_decompress_fn)(void *, size_t, const void *, size_t);
typedef unsigned (*zstd_is_error_fn)(size_t);
typedef const char *(*zstd_error_name_fn)(size_t);

static struct {
  zstd_decompress_fn decompress;
  zstd_is_error_fn is_error;
  zstd_error_name_fn error_name;
} zstd;
static pthread_once_t zstd_once = PTHREAD_ONCE_INIT;

static void zstd_load(void) {
  void *h = dlopen("libzstd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  zstd_decompress_fn d = (zstd_decompress_fn)dlsym(h, "ZSTD_decompress");
  zstd_is_error_fn e = (zstd_is_error_fn)dlsym(h, "ZSTD_isError");
  zstd_error_name_fn en = (zstd_error_name_fn)dlsym(h, "ZSTD_getErrorName");
  if (!d || !e || !en) return; /* the handle stays open: harmless */
  zstd.decompress = d;
  zstd.is_error = e;
  zstd.error_name = en;
}

static sdw_status zstd_decompress(const uint8_t *src, size_t n, uint8_t *dst, size_t dst_size,
                                  const char *what) {
  pthread_once(&zstd_once, zstd_load);
  if (!zstd.decompress)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: ZSTD pages need libzstd.so.1 (Debian package libzstd1), which could "
                    "not be loaded",
                    what);
  /* ZSTD_decompress decodes every frame in src; it fails when dst is too
   * small and reports the size when it is larger. */
  size_t got = zstd.decompress(dst, dst_size, src, n);
  if (zstd.is_error(got))
    return sdw_fail(SDW_ERR_FORMAT, "%s: ZSTD data is corrupt (%s)", what, zstd.error_name(got));
  if (got != dst_size)
    return sdw_fail(SDW_ERR_FORMAT, "%s: ZSTD data decompresses to %zu bytes, %zu declared", what,
                    got, dst_size);
  return SDW_OK;
}

/* --- dispatch ----------------------------------------------------------------------- */

sdw_status sdw_parquet_decompress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                                  size_t dst_size, const char *what) {
  switch (codec) {
  case SDW_PARQUET_UNCOMPRESSED:
    if (n != dst_size)
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: uncompressed page of %zu bytes declares %zu bytes uncompressed", what, n,
                      dst_size);
    if (n) memcpy(dst, src, n);
    return SDW_OK;
  case SDW_PARQUET_SNAPPY:
    if (!sdw_snappy_decompress(src, n, dst, dst_size))
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: SNAPPY data is corrupt or does not decompress to the declared %zu "
                      "bytes",
                      what, dst_size);
    return SDW_OK;
  case SDW_PARQUET_GZIP: return gzip_decompress(src, n, dst, dst_size, what);
  case SDW_PARQUET_ZSTD: return zstd_decompress(src, n, dst, dst_size, what);
  case SDW_PARQUET_LZ4_RAW:
    if (!sdw_lz4_block_decompress(src, n, dst, dst_size))
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: LZ4_RAW data is corrupt or does not decompress to the declared %zu "
                      "bytes",
                      what, dst_size);
    return SDW_OK;
  case SDW_PARQUET_LZO:
  case SDW_PARQUET_BROTLI:
  case SDW_PARQUET_LZ4_HADOOP:
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: the %s codec is not supported", what,
                    sdw_parquet_codec_name(codec));
  default: return sdw_fail(SDW_ERR_FORMAT, "%s: unknown compression codec %d", what, codec);
  }
}

size_t sdw_parquet_compress_bound(int codec, size_t n) {
  switch (codec) {
  case SDW_PARQUET_SNAPPY: return sdw_snappy_max_compressed_length(n);
  case SDW_PARQUET_GZIP: return (size_t)compressBound((uLong)n) + 32; /* + gzip header */
  default: return n;
  }
}

sdw_status sdw_parquet_compress(int codec, const uint8_t *src, size_t n, uint8_t *dst,
                                size_t dst_cap, size_t *out_size) {
  switch (codec) {
  case SDW_PARQUET_UNCOMPRESSED:
    SDW_ASSERT(dst_cap >= n);
    if (n) memcpy(dst, src, n);
    *out_size = n;
    return SDW_OK;
  case SDW_PARQUET_SNAPPY:
    SDW_ASSERT(dst_cap >= sdw_snappy_max_compressed_length(n));
    *out_size = sdw_snappy_compress(src, n, dst);
    return SDW_OK;
  case SDW_PARQUET_GZIP: return gzip_compress(src, n, dst, dst_cap, out_size);
  default:
    return sdw_fail(SDW_ERR_UNSUPPORTED, "parquet writer: the %s codec is not supported",
                    sdw_parquet_codec_name(codec));
  }
}
