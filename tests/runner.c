/* Runs every registered test (or those whose name contains argv[1]) and
 * prints "N passed, N failed". Exit status 1 when any failed. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/base/safetensors.h"
#include "tests/test.h"

typedef struct registered_test {
  const char *name;
  const char *file;
  sdw_test_fn fn;
} registered_test;

enum { MAX_TESTS = 4096 };
static registered_test tests[MAX_TESTS];
static int test_count;
static int current_failures;
static const char *current_name;
static char tmpdir_path[256];

void sdw_test_register(const char *name, const char *file, sdw_test_fn fn) {
  if (test_count == MAX_TESTS) {
    fprintf(stderr, "too many tests\n");
    abort();
  }
  tests[test_count++] = (registered_test){name, file, fn};
}

void sdw_test_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  current_failures++;
  if (current_failures > 20) return; /* enough to diagnose */
  fprintf(stderr, "  %s:%d: [%s] ", file, line, current_name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

bool sdw_test_failed(void) { return current_failures > 0; }

const char *sdw_test_data_dir(void) {
  const char *env = getenv("SDW_TEST_DATA");
  return env && *env ? env : "tests/data";
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

const char *sdw_test_tmpdir(void) {
  if (!tmpdir_path[0]) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s/sdw-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir_path)) {
      fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
      abort();
    }
  }
  return tmpdir_path;
}

/* --- rng: splitmix64 -------------------------------------------------------- */
sdw_test_rng sdw_test_rng_make(uint64_t seed) {
  return (sdw_test_rng){seed * 0x9E3779B97F4A7C15ull + 1};
}
uint64_t sdw_test_rng_u64(sdw_test_rng *r) {
  uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double sdw_test_rng_uniform(sdw_test_rng *r) { return (sdw_test_rng_u64(r) >> 11) * 0x1.0p-53; }
double sdw_test_rng_normal(sdw_test_rng *r) {
  double u1 = sdw_test_rng_uniform(r), u2 = sdw_test_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
int sdw_test_rng_int(sdw_test_rng *r, int lo, int hi) {
  return lo + (int)(sdw_test_rng_u64(r) % (uint64_t)(hi - lo + 1));
}
void sdw_test_fill_uniform(sdw_test_rng *r, float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(lo + (hi - lo) * sdw_test_rng_uniform(r));
}
void sdw_test_fill_normal(sdw_test_rng *r, float *x, size_t n, float scale) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(scale * sdw_test_rng_normal(r));
}

/* --- guarded buffers: [header 64 B][payload][sentinel 256 B] ------------------ */
enum { GUARD_HEADER = 64, GUARD_TAIL = 256 };
static const unsigned char GUARD_BYTE = 0xA5;
typedef struct guard_header {
  size_t bytes;
  const char *name;
  uint64_t magic;
} guard_header;
static const uint64_t GUARD_MAGIC = 0x5344574755415244ull;

void *sdw_test_alloc_guarded_bytes(size_t bytes, const char *name) {
  unsigned char *base = aligned_alloc(64, (GUARD_HEADER + bytes + GUARD_TAIL + 63) / 64 * 64);
  if (!base) abort();
  guard_header *h = (guard_header *)base;
  h->bytes = bytes;
  h->name = name;
  h->magic = GUARD_MAGIC;
  memset(base + GUARD_HEADER, 0xFF, bytes); /* NaN pattern for floats */
  memset(base + GUARD_HEADER + bytes, GUARD_BYTE, GUARD_TAIL);
  return base + GUARD_HEADER;
}

float *sdw_test_alloc_guarded(size_t n, const char *name) {
  return sdw_test_alloc_guarded_bytes(n * sizeof(float), name);
}

void sdw_test_check_guard(const void *p, const char *file, int line) {
  if (!p) return;
  const unsigned char *payload = p;
  const guard_header *h = (const guard_header *)(payload - GUARD_HEADER);
  if (h->magic != GUARD_MAGIC) {
    sdw_test_fail(file, line, "buffer header corrupted (write before the start?)");
    return;
  }
  for (size_t i = 0; i < GUARD_TAIL; i++) {
    if (payload[h->bytes + i] != GUARD_BYTE) {
      sdw_test_fail(file, line, "out-of-bounds write %zu bytes past the end of %s", i,
                    h->name ? h->name : "buffer");
      return;
    }
  }
}

void sdw_test_free_guarded(void *p) {
  if (!p) return;
  sdw_test_check_guard(p, "(free)", 0);
  free((unsigned char *)p - GUARD_HEADER);
}

/* --- metrics ------------------------------------------------------------------ */
#define REL_ERR_BODY(get_got, get_want)                                                            \
  double max_diff = 0, max_ref = 0;                                                                \
  for (size_t i = 0; i < n; i++) {                                                                 \
    double g = (get_got), w = (get_want);                                                          \
    double d = fabs(g - w);                                                                        \
    if (isnan(g) != isnan(w) || isinf(g) != isinf(w)) return INFINITY;                             \
    if (isnan(d)) continue; /* both NaN or both the same infinity */                               \
    if (d > max_diff) max_diff = d;                                                                \
    if (fabs(w) > max_ref) max_ref = fabs(w);                                                      \
  }                                                                                                \
  return max_ref > 0 ? max_diff / max_ref : max_diff;

double sdw_test_rel_err_f32_f64(const float *got, const double *want, size_t n) {
  REL_ERR_BODY((double)got[i], want[i])
}
double sdw_test_rel_err_f64(const double *got, const double *want, size_t n) {
  REL_ERR_BODY(got[i], want[i])
}
double sdw_test_rel_err_f32(const float *got, const float *want, size_t n) {
  REL_ERR_BODY((double)got[i], (double)want[i])
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  int passed = 0, failed = 0;
  for (int i = 0; i < test_count; i++) {
    if (filter && !strstr(tests[i].name, filter)) continue;
    current_name = tests[i].name;
    current_failures = 0;
    double t0 = now_seconds();
    tests[i].fn();
    double dt = now_seconds() - t0;
    if (current_failures) {
      failed++;
      printf("FAIL %s (%s, %.2fs)\n", tests[i].name, tests[i].file, dt);
    } else {
      passed++;
      printf("ok   %s (%.2fs)\n", tests[i].name, dt);
    }
    fflush(stdout);
  }
  if (tmpdir_path[0]) nftw(tmpdir_path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

double sdw_test_max_abs_f64(const double *a, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    m = fmax(m, fabs(a[i]));
  return m;
}

const struct sdw_safetensors_entry *sdw_test_golden_tensor(const struct sdw_safetensors *f,
                                                           const char *name, int dtype,
                                                           int64_t numel) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(f, name);
  if (!e || (int)e->dtype != dtype || (numel >= 0 && e->numel != numel)) {
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s missing or of the wrong type", name);
    return NULL;
  }
  return e;
}
