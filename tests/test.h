/* The test harness: tests register themselves with SDW_TEST and run from
 * tests/runner.c, which prints one line per test and the closing line
 * "N passed, N failed" that CI reads.
 *
 * Helpers here: checks that record a failure and keep going, a seeded test
 * RNG, guarded allocations (sentinel bytes after a buffer catch out-of-bounds
 * writes), and the error metrics used against double-precision references. */
#ifndef SDW_TESTS_TEST_H
#define SDW_TESTS_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef void (*sdw_test_fn)(void);
void sdw_test_register(const char *name, const char *file, sdw_test_fn fn);

#define SDW_TEST(name)                                                                             \
  static void sdw_test_##name(void);                                                               \
  __attribute__((constructor)) static void sdw_test_register_##name(void) {                        \
    sdw_test_register(#name, __FILE__, sdw_test_##name);                                           \
  }                                                                                                \
  static void sdw_test_##name(void)

/* Records a failure of the current test (printf-style detail). */
void sdw_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool sdw_test_failed(void);
/* Directory holding committed test data (tests/data), from $SDW_TEST_DATA or
 * relative to the working directory. */
const char *sdw_test_data_dir(void);
/* A fresh temporary directory for this test (removed after the run). */
const char *sdw_test_tmpdir(void);

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) sdw_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                            \
  } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
  do {                                                                                             \
    if (!(cond)) sdw_test_fail(__FILE__, __LINE__, __VA_ARGS__);                                   \
  } while (0)
/* A call returning sdw_status that must succeed. */
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    sdw_status check_status_ = (expr);                                                             \
    if (check_status_ != SDW_OK)                                                                   \
      sdw_test_fail(__FILE__, __LINE__, "%s returned %s: %s", #expr,                               \
                    sdw_status_name(check_status_), sdw_last_error());                             \
  } while (0)
/* Stop the current test when it has failed (e.g. before using a NULL). */
#define REQUIRE(cond)                                                                              \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      sdw_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                                     \
      return;                                                                                      \
    }                                                                                              \
  } while (0)

/* --- deterministic test randomness ------------------------------------------ */
typedef struct sdw_test_rng {
  uint64_t state;
} sdw_test_rng;
sdw_test_rng sdw_test_rng_make(uint64_t seed);
uint64_t sdw_test_rng_u64(sdw_test_rng *r);
double sdw_test_rng_uniform(sdw_test_rng *r);          /* [0,1) */
double sdw_test_rng_normal(sdw_test_rng *r);           /* N(0,1) */
int sdw_test_rng_int(sdw_test_rng *r, int lo, int hi); /* [lo,hi] */
void sdw_test_fill_uniform(sdw_test_rng *r, float *x, size_t n, float lo, float hi);
void sdw_test_fill_normal(sdw_test_rng *r, float *x, size_t n, float scale);

/* --- guarded buffers ---------------------------------------------------------- */
/* n floats, 64-byte aligned, followed by a sentinel region; filled with a
 * NaN pattern so reads of unwritten outputs show up. Free with
 * sdw_test_free_guarded, which checks the sentinel (a test failure names
 * the buffer when it was overwritten). */
float *sdw_test_alloc_guarded(size_t n, const char *name);
void *sdw_test_alloc_guarded_bytes(size_t bytes, const char *name);
void sdw_test_check_guard(const void *p, const char *file, int line);
void sdw_test_free_guarded(void *p);
#define CHECK_GUARD(p) sdw_test_check_guard((p), __FILE__, __LINE__)

/* --- error metrics ---------------------------------------------------------------- */
/* Normwise relative error: max|got - want| / max|want| (the metric of the
 * goldens README); falls back to the absolute error when want is all zero. */
double sdw_test_rel_err_f32_f64(const float *got, const double *want, size_t n);
double sdw_test_rel_err_f64(const double *got, const double *want, size_t n);
double sdw_test_rel_err_f32(const float *got, const float *want, size_t n);
/* max |a[i]| (0 for n = 0). */
double sdw_test_max_abs_f64(const double *a, int64_t n);

/* --- goldens -------------------------------------------------------------------- */
/* The golden tensor `name` of f when it has that dtype and numel (numel < 0:
 * any); otherwise a test failure naming it, and NULL. */
struct sdw_safetensors;
struct sdw_safetensors_entry;
const struct sdw_safetensors_entry *
sdw_test_golden_tensor(const struct sdw_safetensors *f, const char *name, int dtype, int64_t numel);

/* Checks a normwise relative error against tol, naming what was compared. */
#define CHECK_REL(err, tol, what)                                                                  \
  do {                                                                                             \
    double check_err_ = (err);                                                                     \
    if (!(check_err_ <= (tol)))                                                                    \
      sdw_test_fail(__FILE__, __LINE__, "%s: relative error %.3g > %.3g", (what), check_err_,      \
                    (double)(tol));                                                                \
  } while (0)

#endif
