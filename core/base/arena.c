#include "core/base/arena.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct sdw_arena {
  char name[48];
  unsigned char *base;
  size_t capacity;
  size_t used;
  size_t peak;
};

sdw_status sdw_arena_create(sdw_arena **out, const char *name, size_t capacity) {
  *out = NULL;
  sdw_arena *a = calloc(1, sizeof *a);
  if (!a) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "arena %s: out of host memory", name);
  snprintf(a->name, sizeof a->name, "%s", name);
  capacity = (capacity + 4095) & ~(size_t)4095;
  if (capacity == 0) capacity = 4096;
  /* Reserve address space only; pages are committed on first touch. */
  void *p = mmap(NULL, capacity, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    free(a);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "arena %s: cannot reserve %zu MiB of address space (%s)",
                    name, capacity >> 20, strerror(errno));
  }
  a->base = p;
  a->capacity = capacity;
  *out = a;
  return SDW_OK;
}

void sdw_arena_destroy(sdw_arena *a) {
  if (!a) return;
  munmap(a->base, a->capacity);
  free(a);
}

void *sdw_arena_alloc(sdw_arena *a, size_t bytes) {
  size_t start = (a->used + SDW_ARENA_ALIGN - 1) & ~(size_t)(SDW_ARENA_ALIGN - 1);
  if (start > a->capacity || bytes > a->capacity - start) {
    sdw_fail(SDW_ERR_OUT_OF_MEMORY,
             "arena %s is full: %zu MiB used of %zu MiB, %zu MiB more requested", a->name,
             a->used >> 20, a->capacity >> 20, (bytes + (1 << 20) - 1) >> 20);
    return NULL;
  }
  a->used = start + bytes;
  if (a->used > a->peak) a->peak = a->used;
  return a->base + start;
}

void *sdw_arena_calloc(sdw_arena *a, size_t bytes) {
  void *p = sdw_arena_alloc(a, bytes);
  if (p) memset(p, 0, bytes);
  return p;
}

sdw_status sdw_arena_tensor(sdw_arena *a, sdw_tensor *out, sdw_dtype dtype, int ndim,
                            const int64_t *shape) {
  *out = sdw_tensor_make(NULL, dtype, ndim, shape);
  size_t bytes = sdw_tensor_nbytes(out);
  out->data = sdw_arena_alloc(a, bytes);
  return out->data ? SDW_OK : SDW_ERR_OUT_OF_MEMORY;
}

size_t sdw_arena_mark(const sdw_arena *a) { return a->used; }

void sdw_arena_reset_to(sdw_arena *a, size_t mark) {
  SDW_ASSERT(mark <= a->used);
  a->used = mark;
}

void sdw_arena_reset(sdw_arena *a) { a->used = 0; }
size_t sdw_arena_used(const sdw_arena *a) { return a->used; }
size_t sdw_arena_peak(const sdw_arena *a) { return a->peak; }
size_t sdw_arena_capacity(const sdw_arena *a) { return a->capacity; }
