/* Tar shards: a writer byte-compatible with Python's tarfile (PAX format, as
 * webdataset.TarWriter uses it) and a bounds-checked reader for ustar, GNU
 * and PAX archives. See pipeline/tar.h. */
#include "pipeline/tar.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/fsutil.h"

enum { TAR_BLOCK = 512, TAR_RECORD = 10240 };

/* ustar header field offsets and lengths */
enum {
  F_NAME = 0,
  F_MODE = 100,
  F_UID = 108,
  F_GID = 116,
  F_SIZE = 124,
  F_MTIME = 136,
  F_CHKSUM = 148,
  F_TYPE = 156,
  F_LINKNAME = 157,
  F_MAGIC = 257,
  F_UNAME = 265,
  F_GNAME = 297,
  F_DEVMAJOR = 329,
  F_DEVMINOR = 337,
  F_PREFIX = 345
};

/* ================================ writing ================================ */

struct sdw_tar_writer {
  sdw_atomic_file *file;
  sdw_tar_writer_options opt;
  char uname[33], gname[33];
  uint64_t offset;
  char *pax; /* PAX record buffer */
  size_t pax_cap;
};

static const uint8_t zeros[TAR_RECORD];

/* tarfile's itn() for values that fit: digits-1 octal digits and a NUL. */
static void put_octal(uint8_t *field, int digits, uint64_t value) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%0*llo", digits - 1, (unsigned long long)value);
  memcpy(field, tmp, (size_t)digits - 1);
  field[digits - 1] = 0;
}

/* tarfile's stn(): the string's bytes (non-ASCII replaced by '?', as the
 * "ascii"/"replace" codec does per character: one '?' per UTF-8 sequence),
 * truncated to len, NUL padded. */
static void put_string(uint8_t *field, size_t len, const char *s) {
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p && o < len) {
    if (*p < 0x80) {
      field[o++] = *p++;
    } else {
      field[o++] = '?';
      p++;
      while ((*p & 0xC0) == 0x80)
        p++; /* continuation bytes of the same character */
    }
  }
}

static void finish_header(uint8_t *h) {
  memset(h + F_CHKSUM, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < TAR_BLOCK; i++)
    sum += h[i];
  char tmp[16];
  snprintf(tmp, sizeof tmp, "%06o", sum);
  memcpy(h + F_CHKSUM, tmp, 6);
  h[F_CHKSUM + 6] = 0; /* and the 8th byte stays ' ', as tarfile writes it */
}

/* Python's repr(float) for finite x: the shortest digit string that reads
 * back as x; fixed notation when the decimal exponent is in [-4, 16),
 * otherwise d.ddde+XX. */
static void python_float_repr(double x, char *out, size_t cap) {
  char buf[40];
  int prec = 1;
  for (; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
    if (strtod(buf, NULL) == x) break;
  }
  /* buf = [-]d.ddde[+-]XX */
  const char *p = buf;
  int neg = 0;
  if (*p == '-') neg = 1, p++;
  char digits[24];
  int nd = 0;
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[nd++] = *p;
  int exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  digits[nd] = 0;
  size_t o = 0;
#define PUT(c)                                                                                     \
  do {                                                                                             \
    if (o + 1 < cap) out[o++] = (c);                                                               \
  } while (0)
  if (neg) PUT('-');
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) {
      PUT('0');
      PUT('.');
      for (int i = -1; i > exp10; i--)
        PUT('0');
      for (int i = 0; i < nd; i++)
        PUT(digits[i]);
    } else {
      for (int i = 0; i <= exp10; i++)
        PUT(i < nd ? digits[i] : '0');
      PUT('.');
      if (nd > exp10 + 1)
        for (int i = exp10 + 1; i < nd; i++)
          PUT(digits[i]);
      else
        PUT('0');
    }
  } else {
    PUT(digits[0]);
    if (nd > 1) {
      PUT('.');
      for (int i = 1; i < nd; i++)
        PUT(digits[i]);
    }
    char e[16];
    snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    for (char *q = e; *q; q++)
      PUT(*q);
  }
#undef PUT
  out[o] = 0;
}

/* Appends one PAX record "<len> key=value\n", len counting itself. */
static sdw_status pax_append(sdw_tar_writer *w, size_t *used, const char *key, const char *value,
                             size_t value_len) {
  size_t l = strlen(key) + value_len + 3, n = 0, p = 0;
  char num[32];
  for (;;) { /* tarfile's fixed point: the length includes its own digits */
    n = l + (size_t)snprintf(num, sizeof num, "%zu", p);
    if (n == p) break;
    p = n;
  }
  if (*used + n > w->pax_cap) {
    size_t cap = (*used + n) * 2;
    char *b = realloc(w->pax, cap);
    if (!b) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tar: out of memory for a PAX header");
    w->pax = b, w->pax_cap = cap;
  }
  char *o = w->pax + *used;
  int k = snprintf(num, sizeof num, "%zu ", n);
  memcpy(o, num, (size_t)k), o += k;
  memcpy(o, key, strlen(key)), o += strlen(key);
  *o++ = '=';
  memcpy(o, value, value_len), o += value_len;
  *o++ = '\n';
  *used += n;
  return SDW_OK;
}

static sdw_status writer_put(sdw_tar_writer *w, const void *data, size_t size) {
  if (size == 0) return SDW_OK;
  SDW_TRY(sdw_atomic_file_write(w->file, data, size));
  w->offset += size;
  return SDW_OK;
}

sdw_status sdw_tar_writer_open(const char *path, sdw_tar_writer **out) {
  return sdw_tar_writer_open_options(path, NULL, out);
}

sdw_status sdw_tar_writer_open_options(const char *path, const sdw_tar_writer_options *options,
                                       sdw_tar_writer **out) {
  *out = NULL;
  sdw_tar_writer_options opt = {0444, "bigdata", "bigdata", 1};
  if (options) opt = *options;
  if (!opt.uname) opt.uname = "";
  if (!opt.gname) opt.gname = "";
  if (strlen(opt.uname) > 32 || strlen(opt.gname) > 32)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: tar uname/gname longer than 32 bytes", path);
  sdw_tar_writer *w = calloc(1, sizeof *w);
  if (!w) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
  w->opt = opt;
  snprintf(w->uname, sizeof w->uname, "%s", opt.uname);
  snprintf(w->gname, sizeof w->gname, "%s", opt.gname);
  w->opt.uname = w->uname, w->opt.gname = w->gname;
  sdw_status st = sdw_atomic_file_open(path, &w->file);
  if (st != SDW_OK) {
    free(w);
    return st;
  }
  *out = w;
  return SDW_OK;
}

/* A member name the reader would accept: relative, no "."/".." components,
 * no empty components except a trailing one is not allowed either. */
static int name_is_safe(const char *name) {
  if (!name[0] || name[0] == '/') return 0;
  const char *p = name;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0) return 0;
    if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return 0;
    if (!e) break;
    p = e + 1;
    if (!*p) return 0; /* trailing '/' names a directory */
  }
  return 1;
}

sdw_status sdw_tar_writer_add(sdw_tar_writer *w, const char *name, const void *data, size_t size,
                              double mtime) {
  SDW_ASSERT(w && name && (data || size == 0));
  if (!name_is_safe(name))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tar: member name \"%s\" is not a relative path without \".\"/\"..\"", name);
  if (!isfinite(mtime) || mtime < 0 || mtime >= 8589934591.5) /* 8^11 - 1/2: the ustar field */
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "tar: mtime %g out of range", mtime);

  size_t pax_used = 0;
  size_t name_len = strlen(name);
  int ascii = 1;
  for (size_t i = 0; i < name_len; i++)
    if ((unsigned char)name[i] >= 0x80) ascii = 0;
  /* tarfile's order: path (string fields), then size and mtime (numbers) */
  if (!ascii || name_len > 100) SDW_TRY(pax_append(w, &pax_used, "path", name, name_len));
  uint64_t size_field = size;
  if ((uint64_t)size >= 8589934592ull) { /* 8^11 */
    char num[32];
    snprintf(num, sizeof num, "%zu", size);
    SDW_TRY(pax_append(w, &pax_used, "size", num, strlen(num)));
    size_field = 0;
  }
  uint64_t mtime_field;
  if (w->opt.float_mtime) {
    char num[48];
    python_float_repr(mtime, num, sizeof num);
    SDW_TRY(pax_append(w, &pax_used, "mtime", num, strlen(num)));
    mtime_field = (uint64_t)nearbyint(mtime); /* Python round(): half to even */
  } else {
    mtime_field = (uint64_t)mtime;
  }

  uint8_t h[TAR_BLOCK];
  if (pax_used > 0) {
    memset(h, 0, sizeof h);
    put_string(h + F_NAME, 100, "././@PaxHeader");
    put_octal(h + F_MODE, 8, 0);
    put_octal(h + F_UID, 8, 0);
    put_octal(h + F_GID, 8, 0);
    put_octal(h + F_SIZE, 12, pax_used);
    put_octal(h + F_MTIME, 12, 0);
    h[F_TYPE] = 'x';
    memcpy(h + F_MAGIC,
           "ustar\0"
           "00",
           8);
    finish_header(h);
    SDW_TRY(writer_put(w, h, sizeof h));
    SDW_TRY(writer_put(w, w->pax, pax_used));
    size_t pad = (TAR_BLOCK - pax_used % TAR_BLOCK) % TAR_BLOCK;
    SDW_TRY(writer_put(w, zeros, pad));
  }
  memset(h, 0, sizeof h);
  put_string(h + F_NAME, 100, name);
  put_octal(h + F_MODE, 8, (uint64_t)(w->opt.mode & 07777));
  put_octal(h + F_UID, 8, 0);
  put_octal(h + F_GID, 8, 0);
  put_octal(h + F_SIZE, 12, size_field);
  put_octal(h + F_MTIME, 12, mtime_field);
  h[F_TYPE] = '0';
  memcpy(h + F_MAGIC,
         "ustar\0"
         "00",
         8);
  put_string(h + F_UNAME, 32, w->opt.uname);
  put_string(h + F_GNAME, 32, w->opt.gname);
  /* devmajor/devminor stay NUL for regular files (Python >= 3.11.4 writes
   * them only for device members) */
  finish_header(h);
  SDW_TRY(writer_put(w, h, sizeof h));
  SDW_TRY(writer_put(w, data, size));
  SDW_TRY(writer_put(w, zeros, (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK));
  return SDW_OK;
}

uint64_t sdw_tar_writer_size(const sdw_tar_writer *w) { return w->offset; }

sdw_status sdw_tar_writer_close(sdw_tar_writer *w) {
  SDW_ASSERT(w);
  sdw_status st = writer_put(w, zeros, 2 * TAR_BLOCK);
  if (st == SDW_OK) st = writer_put(w, zeros, (TAR_RECORD - w->offset % TAR_RECORD) % TAR_RECORD);
  if (st == SDW_OK) {
    st = sdw_atomic_file_commit(w->file);
  } else {
    sdw_atomic_file_abort(w->file);
  }
  free(w->pax);
  free(w);
  return st;
}

void sdw_tar_writer_abort(sdw_tar_writer *w) {
  if (!w) return;
  sdw_atomic_file_abort(w->file);
  free(w->pax);
  free(w);
}

/* ================================ reading ================================ */

struct sdw_tar_reader {
  const uint8_t *data;
  size_t size;
  size_t pos;
  void *map; /* non-NULL when mapped by sdw_tar_reader_open */
  size_t map_size;
  char *label;
  sdw_status failed; /* sticky error */
  char *name;        /* current member's name */
  size_t name_cap;
  /* global PAX ('g') defaults */
  int g_have_size, g_have_mtime;
  uint64_t g_size;
  double g_mtime;
};

static sdw_status reader_fail(sdw_tar_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static sdw_status reader_fail(sdw_tar_reader *r, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->failed = sdw_fail(SDW_ERR_FORMAT, "%s: %s (at byte %zu)", r->label, msg, r->pos);
  return r->failed;
}

static sdw_status reader_init(sdw_tar_reader *r, const void *data, size_t size, const char *name) {
  r->data = data;
  r->size = size;
  r->label = strdup(name ? name : "tar");
  if (!r->label) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tar: out of memory");
  return SDW_OK;
}

sdw_status sdw_tar_reader_open_memory(const void *data, size_t size, const char *name,
                                      sdw_tar_reader **out) {
  *out = NULL;
  SDW_ASSERT(data || size == 0);
  sdw_tar_reader *r = calloc(1, sizeof *r);
  if (!r) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tar: out of memory");
  sdw_status st = reader_init(r, data, size, name);
  if (st != SDW_OK) {
    free(r);
    return st;
  }
  *out = r;
  return SDW_OK;
}

sdw_status sdw_tar_reader_open(const char *path, sdw_tar_reader **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return sdw_fail(e == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: cannot open: %s", path,
                    strerror(e));
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: not a regular file", path);
  }
  void *map = NULL;
  size_t size = (size_t)sb.st_size;
  if (size > 0) {
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      return sdw_fail(SDW_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    }
    (void)madvise(map, size, MADV_SEQUENTIAL);
  }
  close(fd);
  sdw_tar_reader *r = calloc(1, sizeof *r);
  sdw_status st = r ? reader_init(r, map ? map : (const void *)"", size, path)
                    : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tar: out of memory");
  if (st != SDW_OK) {
    if (map) munmap(map, size);
    free(r);
    return st;
  }
  r->map = map;
  r->map_size = size;
  *out = r;
  return SDW_OK;
}

void sdw_tar_reader_close(sdw_tar_reader *r) {
  if (!r) return;
  if (r->map) munmap(r->map, r->map_size);
  free(r->label);
  free(r->name);
  free(r);
}

/* tarfile's nti(): GNU base-256 when the first byte has bit 7 set, else
 * octal digits between optional spaces, ending at a NUL or the field end.
 * Returns 0 on success. */
static int parse_number(const uint8_t *f, size_t len, uint64_t *out) {
  if (f[0] & 0x80) {
    if (f[0] != 0x80) return -1; /* negative (0xff) or reserved */
    uint64_t v = 0;
    for (size_t i = 1; i < len; i++) {
      if (v >> 56) return -1;
      v = (v << 8) | f[i];
    }
    *out = v;
    return 0;
  }
  size_t end = 0;
  while (end < len && f[end] != 0)
    end++;
  size_t i = 0;
  while (i < end && f[i] == ' ')
    i++;
  size_t j = end;
  while (j > i && f[j - 1] == ' ')
    j--;
  uint64_t v = 0;
  for (; i < j; i++) {
    if (f[i] < '0' || f[i] > '7') return -1;
    if (v >> 60) return -1;
    v = v * 8 + (uint64_t)(f[i] - '0');
  }
  *out = v;
  return 0;
}

static int checksum_ok(const uint8_t *h) {
  uint64_t stored;
  if (parse_number(h + F_CHKSUM, 8, &stored) != 0) return 0;
  /* both the unsigned and the signed sum are accepted, as tarfile does */
  unsigned usum = 0;
  int ssum = 0;
  for (int i = 0; i < TAR_BLOCK; i++) {
    uint8_t b = (i >= F_CHKSUM && i < F_CHKSUM + 8) ? ' ' : h[i];
    usum += b;
    ssum += (signed char)b;
  }
  return stored == usum || (ssum >= 0 && stored == (uint64_t)ssum);
}

static int block_is_zero(const uint8_t *h) {
  for (int i = 0; i < TAR_BLOCK; i++)
    if (h[i]) return 0;
  return 1;
}

static sdw_status set_name(sdw_tar_reader *r, const char *s, size_t len) {
  if (len + 1 > r->name_cap) {
    size_t cap = len + 1 < 256 ? 256 : len + 1;
    char *n = realloc(r->name, cap);
    if (!n) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tar: out of memory for a member name");
    r->name = n, r->name_cap = cap;
  }
  memcpy(r->name, s, len);
  r->name[len] = 0;
  return SDW_OK;
}

/* Member name checks: the hostile cases make the whole archive fail. */
static sdw_status check_name(sdw_tar_reader *r, const char *name, int is_dir) {
  if (!name[0]) return reader_fail(r, "member with an empty name");
  if (name[0] == '/') return reader_fail(r, "absolute member name \"%.200s\"", name);
  const char *p = name;
  for (;;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 2 && p[0] == '.' && p[1] == '.')
      return reader_fail(r, "member name \"%.200s\" leaves the archive (\"..\")", name);
    if (!e) break;
    p = e + 1;
  }
  (void)is_dir;
  return SDW_OK;
}

typedef struct pax_values {
  int have_path, have_size, have_mtime;
  const char *path;
  size_t path_len;
  uint64_t size;
  double mtime;
} pax_values;

/* Parses "<len> key=value\n" records of one PAX header's data. */
static sdw_status parse_pax(sdw_tar_reader *r, const uint8_t *p, size_t n, pax_values *v) {
  size_t i = 0;
  while (i < n) {
    if (p[i] == 0) break; /* tarfile stops at NUL padding */
    size_t len = 0, j = i;
    while (j < n && p[j] >= '0' && p[j] <= '9') {
      if (len > n) return reader_fail(r, "PAX record length too large");
      len = len * 10 + (size_t)(p[j] - '0');
      j++;
    }
    if (j == i || j >= n || p[j] != ' ' || len < 5 || len > n - i)
      return reader_fail(r, "malformed PAX record");
    const uint8_t *rec_end = p + i + len; /* one past the '\n' */
    if (rec_end[-1] != '\n') return reader_fail(r, "PAX record without its newline");
    const uint8_t *key = p + j + 1;
    const uint8_t *eq = memchr(key, '=', (size_t)(rec_end - 1 - key));
    if (!eq || eq == key) return reader_fail(r, "PAX record without a keyword");
    size_t klen = (size_t)(eq - key);
    const uint8_t *val = eq + 1;
    size_t vlen = (size_t)(rec_end - 1 - val);
    if (klen == 4 && !memcmp(key, "path", 4)) {
      v->have_path = 1, v->path = (const char *)val, v->path_len = vlen;
    } else if (klen == 4 && !memcmp(key, "size", 4)) {
      uint64_t s = 0;
      if (vlen == 0 || vlen > 19) return reader_fail(r, "malformed PAX size");
      for (size_t k = 0; k < vlen; k++) {
        if (val[k] < '0' || val[k] > '9') return reader_fail(r, "malformed PAX size");
        s = s * 10 + (uint64_t)(val[k] - '0');
      }
      v->have_size = 1, v->size = s;
    } else if (klen == 5 && !memcmp(key, "mtime", 5)) {
      char tmp[64];
      if (vlen == 0 || vlen >= sizeof tmp) return reader_fail(r, "malformed PAX mtime");
      memcpy(tmp, val, vlen);
      tmp[vlen] = 0;
      char *end;
      double t = strtod(tmp, &end);
      if (*end || !isfinite(t)) return reader_fail(r, "malformed PAX mtime");
      v->have_mtime = 1, v->mtime = t;
    }
    i += len;
  }
  return SDW_OK;
}

sdw_status sdw_tar_reader_next(sdw_tar_reader *r, sdw_tar_member *member, int *done) {
  *done = 0;
  if (r->failed) return sdw_fail(r->failed, "%s: the archive failed before", r->label);
  pax_values pax = {0};
  int have_longname = 0;
  size_t longname_at = 0, longname_len = 0;
  for (;;) {
    if (r->pos == r->size) {
      if (pax.have_path || pax.have_size || have_longname)
        return reader_fail(r, "archive ends after an extended header");
      *done = 1;
      return SDW_OK;
    }
    if (r->size - r->pos < TAR_BLOCK) return reader_fail(r, "truncated header block");
    const uint8_t *h = r->data + r->pos;
    if (block_is_zero(h)) {
      /* end of archive (tarfile stops at the first zero block too) */
      if (pax.have_path || pax.have_size || have_longname)
        return reader_fail(r, "archive ends after an extended header");
      *done = 1;
      return SDW_OK;
    }
    if (!checksum_ok(h)) return reader_fail(r, "bad header checksum");
    uint64_t size, mtime_field;
    if (parse_number(h + F_SIZE, 12, &size) != 0) return reader_fail(r, "malformed size field");
    if (parse_number(h + F_MTIME, 12, &mtime_field) != 0)
      return reader_fail(r, "malformed mtime field");
    char type = (char)h[F_TYPE];
    size_t data_at = r->pos + TAR_BLOCK;
    /* extended headers carry their own data; the size override applies only
     * to the member they precede */
    int is_ext = type == 'x' || type == 'g' || type == 'L' || type == 'K';
    if (!is_ext && pax.have_size)
      size = pax.size;
    else if (!is_ext && !pax.have_size && r->g_have_size)
      size = r->g_size;
    if (size > r->size - data_at)
      return reader_fail(r, "member size %llu past the end of the archive",
                         (unsigned long long)size);
    size_t padded = (size_t)size + (TAR_BLOCK - (size_t)size % TAR_BLOCK) % TAR_BLOCK;
    size_t next = data_at + padded;
    if (next > r->size) next = r->size; /* a last member without padding: tarfile accepts it */
    const uint8_t *payload = r->data + data_at;

    if (type == 'x' || type == 'g') {
      pax_values v = {0};
      SDW_TRY(parse_pax(r, payload, (size_t)size, &v));
      if (type == 'g') {
        if (v.have_size) r->g_have_size = 1, r->g_size = v.size;
        if (v.have_mtime) r->g_have_mtime = 1, r->g_mtime = v.mtime;
      } else {
        if (v.have_path) pax.have_path = 1, pax.path = v.path, pax.path_len = v.path_len;
        if (v.have_size) pax.have_size = 1, pax.size = v.size;
        if (v.have_mtime) pax.have_mtime = 1, pax.mtime = v.mtime;
      }
      r->pos = next;
      continue;
    }
    if (type == 'L') {
      have_longname = 1;
      longname_at = data_at;
      longname_len = (size_t)size;
      r->pos = next;
      continue;
    }
    if (type == 'K') { /* GNU long link name: irrelevant, links are skipped */
      r->pos = next;
      continue;
    }

    /* the member's name: PAX path > GNU long name > ustar prefix/name */
    sdw_status st;
    if (pax.have_path) {
      size_t len = strnlen(pax.path, pax.path_len);
      st = set_name(r, pax.path, len);
    } else if (have_longname) {
      const char *ln = (const char *)(r->data + longname_at);
      st = set_name(r, ln, strnlen(ln, longname_len));
    } else {
      char full[256 + 1];
      size_t nlen = strnlen((const char *)h + F_NAME, 100);
      size_t o = 0;
      int ustar = !memcmp(h + F_MAGIC, "ustar", 5);
      /* POSIX ustar (magic "ustar\0") splits long names into prefix/name;
       * the old GNU magic "ustar  " uses those bytes for other fields */
      if (ustar && h[F_MAGIC + 5] == 0) {
        size_t plen = strnlen((const char *)h + F_PREFIX, 155);
        if (plen > 0) {
          memcpy(full, h + F_PREFIX, plen);
          o = plen;
          full[o++] = '/';
        }
      }
      memcpy(full + o, h + F_NAME, nlen);
      o += nlen;
      st = set_name(r, full, o);
    }
    if (st != SDW_OK) return r->failed = st;
    /* normalise: leading "./" components and a trailing '/' (directories) */
    char *name = r->name;
    while (name[0] == '.' && name[1] == '/')
      name += 2;
    size_t nl = strlen(name);
    int is_dir = 0;
    while (nl > 0 && name[nl - 1] == '/')
      name[--nl] = 0, is_dir = 1;
    SDW_TRY(check_name(r, name, is_dir));
    r->pos = next;

    int regular = type == '0' || type == 0 || type == '7';
    if (!regular || is_dir) continue; /* links, devices, FIFOs, directories, sparse, unknown */
    member->name = name;
    member->data = payload;
    member->size = (size_t)size;
    double mt = pax.have_mtime ? pax.mtime : r->g_have_mtime ? r->g_mtime : (double)mtime_field;
    mt = floor(mt);
    member->mtime = mt < -9.2e18 ? INT64_MIN : mt > 9.2e18 ? INT64_MAX : (int64_t)mt;
    member->offset = data_at;
    member->type = '0';
    return SDW_OK;
  }
}
