/* Helpers shared by the scheduler tests (test_schedule, test_ddim,
 * test_euler_dpmpp, test_sampler): opening golden bundles under
 * tests/data/goldens and copying tensors out of them (copies, so alignment
 * never matters). Header-only (static inline); nothing here computes an
 * expected value. */
#ifndef SDW_TESTS_TEST_SCHED_UTIL_H
#define SDW_TESTS_TEST_SCHED_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"
#include "tests/test.h"

/* tests/data/goldens/<bundle>/io.safetensors, or NULL with a test failure. */
static inline sdw_safetensors *sg_open(const char *bundle) {
  char path[1024];
  snprintf(path, sizeof path, "%s/goldens/%s/io.safetensors", sdw_test_data_dir(), bundle);
  sdw_safetensors *st = NULL;
  if (sdw_safetensors_open(path, &st) != SDW_OK) {
    sdw_test_fail(__FILE__, __LINE__, "open %s: %s", path, sdw_last_error());
    return NULL;
  }
  return st;
}

/* A malloc'd copy of tensor `name` of the given dtype (elements in *numel),
 * or NULL with a test failure. */
static inline void *sg_load(const sdw_safetensors *st, const char *name, sdw_dtype dtype,
                            int64_t *numel) {
  const sdw_safetensors_entry *e = sdw_safetensors_find(st, name);
  if (!e) {
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s is missing", name);
    return NULL;
  }
  if (e->dtype != dtype) {
    sdw_test_fail(__FILE__, __LINE__, "golden tensor %s is %s, expected %s", name,
                  sdw_dtype_name(e->dtype), sdw_dtype_name(dtype));
    return NULL;
  }
  void *p = malloc(e->nbytes ? e->nbytes : 1);
  if (!p) return NULL;
  memcpy(p, e->data, e->nbytes);
  if (numel) *numel = e->numel;
  return p;
}

static inline float *sg_f32(const sdw_safetensors *st, const char *name, int64_t *numel) {
  return (float *)sg_load(st, name, SDW_F32, numel);
}
static inline double *sg_f64(const sdw_safetensors *st, const char *name, int64_t *numel) {
  return (double *)sg_load(st, name, SDW_F64, numel);
}
static inline int64_t *sg_i64(const sdw_safetensors *st, const char *name, int64_t *numel) {
  return (int64_t *)sg_load(st, name, SDW_I64, numel);
}

/* CHECK_REL that also prints the measured error when SDW_TEST_VERBOSE is
 * set in the environment (for reports; the check is the same). */
#define SG_CHECK_REL(err, tol, what)                                                               \
  do {                                                                                             \
    double sg_err_ = (err);                                                                        \
    if (getenv("SDW_TEST_VERBOSE"))                                                                \
      fprintf(stderr, "    %-44s %.3g (tolerance %.3g)\n", (what), sg_err_, (double)(tol));        \
    CHECK_REL(sg_err_, (tol), (what));                                                             \
  } while (0)

#endif
