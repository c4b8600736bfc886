#include "core/base/zip_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Entry names are cut to this many bytes in messages. */
#define ENTRY_FMT "%.200s"

enum {
  SIG_LOCAL = 0x04034b50,
  SIG_CENTRAL = 0x02014b50,
  SIG_EOCD = 0x06054b50,
  SIG_EOCD64 = 0x06064b50,
  SIG_LOCATOR64 = 0x07064b50,
  EOCD_SIZE = 22,
  LOCATOR64_SIZE = 20,
  EOCD64_SIZE = 56,
  CENTRAL_SIZE = 46,
  LOCAL_SIZE = 30,
  MAX_COMMENT = 65535,
};

struct sdw_zip {
  char *name;
  void *map; /* the mmap'd file, or NULL for open_memory */
  size_t map_size;
  const unsigned char *bytes;
  size_t size;
  sdw_zip_entry *entries;
  size_t count;
  size_t *sorted;          /* entry indices sorted by name */
  unsigned char *verified; /* per entry: CRC checked */
  void **inflated;         /* per entry: the inflated buffer (deflated entries) */
};

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* begin + len <= limit, without overflow. */
static bool fits(uint64_t begin, uint64_t len, uint64_t limit) {
  return begin <= limit && len <= limit - begin;
}

static sdw_status bad(const sdw_zip *z, const char *what) {
  return sdw_fail(SDW_ERR_FORMAT, "%s: not a valid ZIP archive: %s", z->name, what);
}

/* The end-of-central-directory record: the last signature whose comment fits
 * in the file. */
static bool find_eocd(const sdw_zip *z, size_t *at) {
  if (z->size < EOCD_SIZE) return false;
  size_t lowest = z->size - EOCD_SIZE > MAX_COMMENT ? z->size - EOCD_SIZE - MAX_COMMENT : 0;
  for (size_t p = z->size - EOCD_SIZE + 1; p-- > lowest;) {
    if (rd32(z->bytes + p) != SIG_EOCD) continue;
    if (p + EOCD_SIZE + rd16(z->bytes + p + 20) <= z->size) {
      *at = p;
      return true;
    }
  }
  return false;
}

/* Applies a ZIP64 extended-information field (id 1) from the extra block
 * [extra, extra + len): each value that is saturated in the fixed header is
 * read from it, in the order usize, csize, offset, disk. */
static sdw_status zip64_extra(const sdw_zip *z, const char *name, const unsigned char *extra,
                              size_t len, uint64_t *usize, uint64_t *csize, uint64_t *offset,
                              uint32_t *disk) {
  size_t p = 0;
  while (len - p >= 4) {
    uint16_t id = rd16(extra + p), n = rd16(extra + p + 2);
    p += 4;
    if (n > len - p)
      return sdw_fail(SDW_ERR_FORMAT, "%s: entry '" ENTRY_FMT "': extra field runs past its block",
                      z->name, name);
    if (id == 0x0001) {
      const unsigned char *f = extra + p;
      size_t left = n;
      uint64_t *wide[3] = {usize, csize, offset};
      for (int k = 0; k < 3; k++) {
        if (!wide[k] || *wide[k] != 0xFFFFFFFFu) continue;
        if (left < 8)
          return sdw_fail(SDW_ERR_FORMAT, "%s: entry '" ENTRY_FMT "': ZIP64 extra field too short",
                          z->name, name);
        *wide[k] = rd64(f);
        f += 8, left -= 8;
      }
      if (disk && *disk == 0xFFFFu && left >= 4) *disk = rd32(f);
    }
    p += n;
  }
  return SDW_OK;
}

/* Entry indices by name (qsort_r is a GNU extension; a merge sort keeps this
 * portable and O(n log n) whatever the input). */
static void sort_indices(size_t *idx, size_t *tmp, size_t n, const sdw_zip_entry *e) {
  if (n < 2) return;
  size_t h = n / 2;
  sort_indices(idx, tmp, h, e);
  sort_indices(idx + h, tmp, n - h, e);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n)
    tmp[k++] = strcmp(e[idx[j]].name, e[idx[i]].name) < 0 ? idx[j++] : idx[i++];
  while (i < h)
    tmp[k++] = idx[i++];
  while (j < n)
    tmp[k++] = idx[j++];
  memcpy(idx, tmp, n * sizeof *idx);
}

typedef struct span {
  uint64_t begin, end;
  size_t entry;
} span;

static int cmp_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static sdw_status parse(sdw_zip *z) {
  size_t eocd;
  if (!find_eocd(z, &eocd)) {
    if (z->size >= 4 && rd32(z->bytes) == SIG_LOCAL)
      return bad(z, "no end-of-central-directory record (the file is truncated)");
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a ZIP archive (no end-of-central-directory record)",
                    z->name);
  }
  const unsigned char *e = z->bytes + eocd;
  uint64_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
  uint64_t entries = rd16(e + 10), cd_size = rd32(e + 12), cd_offset = rd32(e + 16);
  uint64_t cd_limit = eocd; /* the directory ends before this */
  if (eocd >= LOCATOR64_SIZE && rd32(e - LOCATOR64_SIZE) == SIG_LOCATOR64) {
    const unsigned char *loc = e - LOCATOR64_SIZE;
    uint64_t at = rd64(loc + 8);
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
      return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported",
                      z->name);
    if (!fits(at, EOCD64_SIZE, eocd - LOCATOR64_SIZE) || rd32(z->bytes + at) != SIG_EOCD64)
      return bad(z, "the ZIP64 end-of-central-directory locator points to no ZIP64 record");
    const unsigned char *r = z->bytes + at;
    disk = rd32(r + 16), cd_disk = rd32(r + 20);
    entries = rd64(r + 32), cd_size = rd64(r + 40), cd_offset = rd64(r + 48);
    cd_limit = at;
  }
  if (disk != 0 || cd_disk != 0)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", z->name);
  if (!fits(cd_offset, cd_size, cd_limit))
    return bad(z, "the central directory lies outside the file (the file is truncated)");
  if (entries > cd_size / CENTRAL_SIZE)
    return bad(z, "the central directory is too small for its entry count");

  z->entries = calloc(entries ? entries : 1, sizeof *z->entries);
  z->sorted = calloc(entries ? entries : 1, sizeof *z->sorted);
  z->verified = calloc(entries ? entries : 1, 1);
  z->inflated = calloc(entries ? entries : 1, sizeof *z->inflated);
  span *spans = calloc(entries ? entries : 1, sizeof *spans);
  size_t *tmp = calloc(entries ? entries : 1, sizeof *tmp);
  sdw_status st = SDW_OK;
  if (!z->entries || !z->sorted || !z->verified || !z->inflated || !spans || !tmp)
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory reading the ZIP directory", z->name);

  const unsigned char *cd = z->bytes + cd_offset;
  uint64_t p = 0;
  for (uint64_t i = 0; st == SDW_OK && i < entries; i++) {
    if (cd_size - p < CENTRAL_SIZE || rd32(cd + p) != SIG_CENTRAL) {
      st = bad(z, "a central directory entry is cut short or corrupt");
      break;
    }
    const unsigned char *h = cd + p;
    uint16_t flags = rd16(h + 8), method = rd16(h + 10);
    uint32_t crc = rd32(h + 16);
    uint64_t csize = rd32(h + 20), usize = rd32(h + 24), local = rd32(h + 42);
    uint32_t start_disk = rd16(h + 34);
    size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
    if (cd_size - p - CENTRAL_SIZE < (uint64_t)nlen + xlen + clen) {
      st = bad(z, "a central directory entry runs past the directory");
      break;
    }
    char *name = malloc(nlen + 1);
    if (!name) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", z->name);
      break;
    }
    memcpy(name, h + CENTRAL_SIZE, nlen);
    name[nlen] = '\0';
    z->entries[i].name = name;
    z->count = i + 1;
    if (memchr(name, '\0', nlen)) {
      st = bad(z, "an entry name contains a NUL byte");
      break;
    }
    /* names appear in one-line messages: no control characters (no archiver
     * writes them) */
    bool control = false;
    for (size_t k = 0; k < nlen; k++)
      control = control || (unsigned char)name[k] < 0x20 || name[k] == 0x7f;
    if (control) {
      st = bad(z, "an entry name contains a control character");
      break;
    }
    st = zip64_extra(z, name, h + CENTRAL_SIZE + nlen, xlen, &usize, &csize, &local, &start_disk);
    if (st != SDW_OK) break;
    if (start_disk != 0) {
      st = sdw_fail(SDW_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", z->name);
      break;
    }
    if (flags & 1) {
      st = sdw_fail(SDW_ERR_UNSUPPORTED, "%s: entry '" ENTRY_FMT "' is encrypted", z->name, name);
      break;
    }
    if (method != 0 && method != 8) {
      st = sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: entry '" ENTRY_FMT "' uses compression method %u (only stored and "
                    "deflated entries are supported)",
                    z->name, name, method);
      break;
    }
    if (method == 0 && csize != usize) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "' is stored but its sizes differ (%llu vs %llu)",
                    z->name, name, (unsigned long long)csize, (unsigned long long)usize);
      break;
    }
    /* The local header: its own name and extra lengths place the data. */
    if (!fits(local, LOCAL_SIZE, cd_offset) || rd32(z->bytes + local) != SIG_LOCAL) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "' has no local header where the "
                    "directory says (the file is truncated or corrupt)",
                    z->name, name);
      break;
    }
    const unsigned char *lh = z->bytes + local;
    uint64_t lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
    uint64_t data = local + LOCAL_SIZE + lnlen + lxlen;
    if (lnlen != nlen || data > cd_offset || memcmp(lh + LOCAL_SIZE, name, nlen) != 0) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "': the local header does not match the directory",
                    z->name, name);
      break;
    }
    if (!fits(data, csize, cd_offset)) {
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "' (%llu bytes) runs past the end of the data (the "
                    "file is truncated)",
                    z->name, name, (unsigned long long)csize);
      break;
    }
    sdw_zip_entry *en = &z->entries[i];
    en->method = method;
    en->crc32 = crc;
    en->compressed_size = csize;
    en->size = usize;
    en->data_offset = data;
    en->data = z->bytes + data;
    spans[i] = (span){local, data + csize, i};
    z->sorted[i] = i;
    p += CENTRAL_SIZE + nlen + xlen + clen;
  }
  if (st == SDW_OK && z->count != entries) z->count = (size_t)entries;
  if (st == SDW_OK && z->count > 1) {
    /* No two entries may share bytes (overlapping entries are a ZIP-bomb
     * trick and never written by a real archiver). */
    qsort(spans, z->count, sizeof *spans, cmp_span);
    for (size_t i = 1; st == SDW_OK && i < z->count; i++)
      if (spans[i].begin < spans[i - 1].end)
        st =
            sdw_fail(SDW_ERR_FORMAT, "%s: entries '" ENTRY_FMT "' and '" ENTRY_FMT "' overlap",
                     z->name, z->entries[spans[i - 1].entry].name, z->entries[spans[i].entry].name);
  }
  if (st == SDW_OK) {
    sort_indices(z->sorted, tmp, z->count, z->entries);
    for (size_t i = 1; st == SDW_OK && i < z->count; i++)
      if (strcmp(z->entries[z->sorted[i]].name, z->entries[z->sorted[i - 1]].name) == 0)
        st = sdw_fail(SDW_ERR_FORMAT, "%s: two entries are named '" ENTRY_FMT "'", z->name,
                      z->entries[z->sorted[i]].name);
  }
  free(spans);
  free(tmp);
  return st;
}

static sdw_status reader_create(const char *name, sdw_zip **out) {
  sdw_zip *z = calloc(1, sizeof *z);
  size_t n = strlen(name) + 1;
  if (z) z->name = malloc(n);
  if (!z || !z->name) {
    free(z);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory opening %s", name);
  }
  memcpy(z->name, name, n);
  *out = z;
  return SDW_OK;
}

sdw_status sdw_zip_open_memory(const void *data, size_t size, const char *name, sdw_zip **out) {
  *out = NULL;
  sdw_zip *z = NULL;
  SDW_TRY(reader_create(name, &z));
  static const unsigned char none[1];
  z->bytes = data ? data : none;
  z->size = data ? size : 0;
  sdw_status st = parse(z);
  if (st != SDW_OK) {
    sdw_zip_close(z);
    return st;
  }
  *out = z;
  return SDW_OK;
}

sdw_status sdw_zip_open(const char *path, sdw_zip **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sdw_fail(errno == ENOENT ? SDW_ERR_NOT_FOUND : SDW_ERR_IO, "%s: cannot open: %s", path,
                    strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    int err = errno;
    bool dir = S_ISDIR(sb.st_mode);
    close(fd);
    return sdw_fail(SDW_ERR_IO, "%s: %s", path, dir ? "is a directory, not a file" : strerror(err));
  }
  sdw_zip *z = NULL;
  sdw_status st = reader_create(path, &z);
  if (st != SDW_OK) {
    close(fd);
    return st;
  }
  static const unsigned char none[1];
  z->bytes = none;
  if (sb.st_size > 0) {
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int err = errno;
      close(fd);
      sdw_zip_close(z);
      return sdw_fail(err == ENOMEM ? SDW_ERR_OUT_OF_MEMORY : SDW_ERR_IO,
                      "%s: cannot map %lld bytes: %s", path, (long long)sb.st_size, strerror(err));
    }
    z->map = map;
    z->map_size = (size_t)sb.st_size;
    z->bytes = map;
    z->size = (size_t)sb.st_size;
  }
  close(fd);
  st = parse(z);
  if (st != SDW_OK) {
    sdw_zip_close(z);
    return st;
  }
  *out = z;
  return SDW_OK;
}

void sdw_zip_close(sdw_zip *z) {
  if (!z) return;
  for (size_t i = 0; i < z->count; i++) {
    free((void *)z->entries[i].name);
    if (z->inflated) free(z->inflated[i]);
  }
  free(z->entries);
  free(z->sorted);
  free(z->verified);
  free(z->inflated);
  if (z->map) munmap(z->map, z->map_size);
  free(z->name);
  free(z);
}

const char *sdw_zip_name(const sdw_zip *z) { return z->name; }
size_t sdw_zip_count(const sdw_zip *z) { return z->count; }

const sdw_zip_entry *sdw_zip_at(const sdw_zip *z, size_t index) {
  SDW_ASSERT(index < z->count);
  return &z->entries[index];
}

const sdw_zip_entry *sdw_zip_find(const sdw_zip *z, const char *name) {
  size_t lo = 0, hi = z->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(z->entries[z->sorted[mid]].name, name);
    if (c == 0) return &z->entries[z->sorted[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static uint32_t crc_of(const unsigned char *p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n) {
    uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
    crc = crc32(crc, p, chunk);
    p += chunk, n -= chunk;
  }
  return (uint32_t)crc;
}

static sdw_status inflate_entry(const sdw_zip *z, const sdw_zip_entry *e, void **out) {
  if (e->size > SDW_ZIP_MAX_INFLATE)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "' claims %llu inflated bytes (more than the %llu "
                    "allowed)",
                    z->name, e->name, (unsigned long long)e->size,
                    (unsigned long long)SDW_ZIP_MAX_INFLATE);
  unsigned char *buf = malloc(e->size ? (size_t)e->size : 1);
  if (!buf)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory inflating '" ENTRY_FMT "'", z->name,
                    e->name);
  z_stream s;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
    free(buf);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: zlib could not start inflating", z->name);
  }
  const unsigned char *in = e->data;
  uint64_t in_left = e->compressed_size;
  s.next_out = buf;
  s.avail_out = (uInt)e->size; /* <= 1 GiB */
  int rc;
  do { /* inflate returns Z_OK only when it made progress */
    if (s.avail_in == 0 && in_left) {
      uInt chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
      s.next_in = (Bytef *)in;
      s.avail_in = chunk;
      in += chunk, in_left -= chunk;
    }
    rc = inflate(&s, Z_NO_FLUSH);
  } while (rc == Z_OK);
  uint64_t produced = s.total_out;
  inflateEnd(&s);
  if (rc != Z_STREAM_END || produced != e->size) {
    free(buf);
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: entry '" ENTRY_FMT "': corrupt deflate data (or not the %llu bytes the "
                    "directory says)",
                    z->name, e->name, (unsigned long long)e->size);
  }
  *out = buf;
  return SDW_OK;
}

sdw_status sdw_zip_read(sdw_zip *z, const sdw_zip_entry *e, const void **data, size_t *size) {
  SDW_ASSERT(e >= z->entries && e < z->entries + z->count);
  size_t i = (size_t)(e - z->entries);
  if (e->size > SIZE_MAX)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: entry '" ENTRY_FMT "' is too large", z->name,
                    e->name);
  const unsigned char *bytes = e->data;
  if (e->method == 8) {
    if (!z->inflated[i]) SDW_TRY(inflate_entry(z, e, &z->inflated[i]));
    bytes = z->inflated[i];
  }
  if (!z->verified[i]) {
    uint32_t crc = crc_of(bytes, e->size);
    if (crc != e->crc32)
      return sdw_fail(SDW_ERR_FORMAT,
                      "%s: entry '" ENTRY_FMT "' is corrupt (CRC-32 %08x, the directory says "
                      "%08x)",
                      z->name, e->name, crc, e->crc32);
    z->verified[i] = 1;
  }
  *data = bytes;
  *size = (size_t)e->size;
  return SDW_OK;
}
