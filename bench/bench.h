/* The benchmark harness: benchmarks register with SDW_BENCH and report rows
 * through sdw_bench_report; bench/main.c measures OpenBLAS sgemm's ceiling
 * first, in the same run, and prints every row as a fraction of it. */
#ifndef SDW_BENCH_BENCH_H
#define SDW_BENCH_BENCH_H

#include <stddef.h>

#include "kernels/ops.h"

typedef void (*sdw_bench_fn)(sdw_ctx *ctx);
void sdw_bench_register(const char *name, sdw_bench_fn fn);

#define SDW_BENCH(name)                                                                            \
  static void sdw_bench_##name(sdw_ctx *ctx);                                                      \
  __attribute__((constructor)) static void sdw_bench_register_##name(void) {                       \
    sdw_bench_register(#name, sdw_bench_##name);                                                   \
  }                                                                                                \
  static void sdw_bench_##name(sdw_ctx *ctx)

double sdw_bench_now(void);
/* Calls fn(arg) until min_seconds have passed (at least min_reps times, after
 * one warm-up call) and returns the best (minimum) seconds per call. */
double sdw_bench_time(void (*fn)(void *arg), void *arg, int min_reps, double min_seconds);

/* One row of the table. flops > 0 prints GFLOP/s and the ratio to the sgemm
 * ceiling; otherwise bytes > 0 prints GB/s. */
void sdw_bench_report(const char *op, const char *shape, const char *direction, double seconds,
                      double flops, double bytes);

/* The ceiling measured at start-up (GFLOP/s of a large square sgemm). */
double sdw_bench_sgemm_ceiling(void);

/* Aligned, uninitialised float buffer filled with small random values; free(). */
float *sdw_bench_random(size_t n, unsigned seed);

#endif
