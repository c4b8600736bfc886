/* TensorBoard event file writer (see tfevents.h for the record format). */
#include "core/train/tfevents.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sdw_tfevents {
  FILE *file;
  char *path;
};

/* Table-driven CRC-32C (reflected 0x82F63B78); built once, on first use.
 * The table is constant after construction, so concurrent first calls only
 * write identical values. */
static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
  crc_ready = 1;
}

uint32_t sdw_crc32c(uint32_t crc, const void *data, size_t n) {
  if (!crc_ready) crc_init();
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < n; i++)
    crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t sdw_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

/* ---- protobuf encoding into a bounded buffer ------------------------------ */

typedef struct pb {
  unsigned char *p;
  size_t n, cap;
} pb;

static void pb_byte(pb *b, unsigned char c) {
  if (b->n < b->cap) b->p[b->n] = c;
  b->n++; /* counts past cap so the caller can detect overflow */
}
static void pb_varint(pb *b, uint64_t v) {
  while (v >= 0x80) {
    pb_byte(b, (unsigned char)(v | 0x80));
    v >>= 7;
  }
  pb_byte(b, (unsigned char)v);
}
static void pb_bytes(pb *b, const void *data, size_t n) {
  for (size_t i = 0; i < n; i++)
    pb_byte(b, ((const unsigned char *)data)[i]);
}
static void pb_le(pb *b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    pb_byte(b, (unsigned char)(v >> (8 * i)));
}
static void pb_double(pb *b, int field, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  pb_varint(b, (uint64_t)field << 3 | 1);
  pb_le(b, u, 8);
}
static void pb_float(pb *b, int field, float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  pb_varint(b, (uint64_t)field << 3 | 5);
  pb_le(b, u, 4);
}
static void pb_string(pb *b, int field, const void *s, size_t n) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, n);
  pb_bytes(b, s, n);
}

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80)
    v >>= 7, n++;
  return n;
}

static sdw_status write_record(sdw_tfevents *w, const unsigned char *data, size_t n) {
  unsigned char head[12];
  uint64_t len = n;
  for (int i = 0; i < 8; i++)
    head[i] = (unsigned char)(len >> (8 * i));
  uint32_t hc = sdw_crc32c_mask(sdw_crc32c(0, head, 8));
  for (int i = 0; i < 4; i++)
    head[8 + i] = (unsigned char)(hc >> (8 * i));
  uint32_t dc = sdw_crc32c_mask(sdw_crc32c(0, data, n));
  unsigned char tail[4];
  for (int i = 0; i < 4; i++)
    tail[i] = (unsigned char)(dc >> (8 * i));
  if (fwrite(head, 1, 12, w->file) != 12 || fwrite(data, 1, n, w->file) != n ||
      fwrite(tail, 1, 4, w->file) != 4)
    return sdw_fail(SDW_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
  return SDW_OK;
}

sdw_status sdw_tfevents_open(const char *dir, sdw_tfevents **out) {
  *out = NULL;
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "localhost");
  host[sizeof host - 1] = 0;
  size_t cap = strlen(dir) + strlen(host) + 96;
  sdw_tfevents *w = calloc(1, sizeof *w);
  char *path = malloc(cap);
  if (!w || !path) {
    free(w), free(path);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tfevents: out of memory");
  }
  snprintf(path, cap, "%s/events.out.tfevents.%lld.%s.%ld.0", dir, (long long)time(NULL), host,
           (long)getpid());
  /* "x": never append to another writer's file of the same second and pid. */
  w->file = fopen(path, "wbx");
  w->path = path;
  if (!w->file) {
    sdw_status st = sdw_fail(SDW_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    free(path), free(w);
    return st;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned char buf[64];
  pb b = {buf, 0, sizeof buf};
  pb_double(&b, 1, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  pb_string(&b, 3, "brain.Event:2", 13);
  sdw_status st = write_record(w, buf, b.n);
  if (st == SDW_OK) st = sdw_tfevents_flush(w);
  if (st != SDW_OK) {
    sdw_tfevents_close(w);
    return st;
  }
  *out = w;
  return SDW_OK;
}

sdw_status sdw_tfevents_scalar(sdw_tfevents *w, const char *tag, int64_t step, double wall_time,
                               float value) {
  size_t tl = strlen(tag);
  /* Value{tag, simple_value} inside Summary{value} inside Event{summary}. */
  size_t value_len = 1 + varint_size(tl) + tl + 5;
  size_t summary_len = 1 + varint_size(value_len) + value_len;
  size_t cap = 9 + 1 + 10 + 1 + varint_size(summary_len) + summary_len;
  unsigned char small[256];
  unsigned char *buf = cap <= sizeof small ? small : malloc(cap);
  if (!buf) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tfevents: out of memory");
  pb b = {buf, 0, cap};
  pb_double(&b, 1, wall_time);
  pb_varint(&b, 2 << 3 | 0);
  pb_varint(&b, (uint64_t)step); /* int64: negative steps as 10-byte two's complement */
  pb_varint(&b, 5 << 3 | 2);
  pb_varint(&b, summary_len);
  pb_varint(&b, 1 << 3 | 2);
  pb_varint(&b, value_len);
  pb_string(&b, 1, tag, tl);
  pb_float(&b, 2, value);
  SDW_ASSERT(b.n <= cap);
  sdw_status st = write_record(w, buf, b.n);
  if (buf != small) free(buf);
  return st;
}

sdw_status sdw_tfevents_flush(sdw_tfevents *w) {
  if (fflush(w->file) != 0)
    return sdw_fail(SDW_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
  return SDW_OK;
}

void sdw_tfevents_close(sdw_tfevents *w) {
  if (!w) return;
  if (w->file) fclose(w->file);
  free(w->path);
  free(w);
}

const char *sdw_tfevents_path(const sdw_tfevents *w) { return w->path; }
