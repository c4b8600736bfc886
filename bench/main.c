/* make bench: measures the OpenBLAS sgemm ceiling on this machine, then runs
 * every registered benchmark (or those whose name contains argv[1]) and
 * prints achieved GFLOP/s (or GB/s) next to that ceiling. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

char *openblas_get_config(void);

typedef struct registered_bench {
  const char *name;
  sdw_bench_fn fn;
} registered_bench;

enum { MAX_BENCHES = 256 };
static registered_bench benches[MAX_BENCHES];
static int bench_count;
static double sgemm_ceiling_gflops;

void sdw_bench_register(const char *name, sdw_bench_fn fn) {
  if (bench_count < MAX_BENCHES) benches[bench_count++] = (registered_bench){name, fn};
}

double sdw_bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double sdw_bench_time(void (*fn)(void *arg), void *arg, int min_reps, double min_seconds) {
  fn(arg); /* warm-up: page faults, caches, lazy initialisation */
  double best = 1e30, start = sdw_bench_now();
  for (int rep = 0; rep < min_reps || sdw_bench_now() - start < min_seconds; rep++) {
    double t0 = sdw_bench_now();
    fn(arg);
    double dt = sdw_bench_now() - t0;
    if (dt < best) best = dt;
  }
  return best;
}

float *sdw_bench_random(size_t n, unsigned seed) {
  float *x = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!x) {
    fprintf(stderr, "bench: out of memory\n");
    exit(1);
  }
  unsigned s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = ((s >> 9) * (1.0f / 8388608.0f) - 0.5f) * 0.2f;
  }
  return x;
}

double sdw_bench_sgemm_ceiling(void) { return sgemm_ceiling_gflops; }

void sdw_bench_report(const char *op, const char *shape, const char *direction, double seconds,
                      double flops, double bytes) {
  if (flops > 0) {
    double gflops = flops / seconds * 1e-9;
    printf("%-16s %-34s %-9s %9.3f ms %8.1f GFLOP/s %5.0f%% of sgemm\n", op, shape, direction,
           seconds * 1e3, gflops, 100.0 * gflops / sgemm_ceiling_gflops);
  } else {
    printf("%-16s %-34s %-9s %9.3f ms %8.2f GB/s\n", op, shape, direction, seconds * 1e3,
           bytes / seconds * 1e-9);
  }
  fflush(stdout);
}

typedef struct sgemm_args {
  int n;
  float *a, *b, *c;
} sgemm_args;

static void run_sgemm(void *p) {
  sgemm_args *g = p;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->n, g->n, 1.0f, g->a, g->n, g->b,
              g->n, 0.0f, g->c, g->n);
}

int main(int argc, char **argv) {
  const char *filter = argc > 1 ? argv[1] : NULL;
  sgemm_args g = {.n = 2048};
  size_t nn = (size_t)g.n * g.n;
  g.a = sdw_bench_random(nn, 1);
  g.b = sdw_bench_random(nn, 2);
  g.c = sdw_bench_random(nn, 3);
  double t = sdw_bench_time(run_sgemm, &g, 5, 1.0);
  sgemm_ceiling_gflops = 2.0 * g.n * g.n * g.n / t * 1e-9;
  free(g.a), free(g.b), free(g.c);
  printf("baseline: OpenBLAS sgemm %dx%dx%d = %.1f GFLOP/s on %d threads (%s)\n", g.n, g.n, g.n,
         sgemm_ceiling_gflops, omp_get_max_threads(), openblas_get_config());
  printf("%-16s %-34s %-9s %12s %16s %s\n", "op", "shape", "direction", "time", "rate",
         "vs ceiling");

  sdw_ctx *ctx = NULL;
  if (sdw_ctx_create(sdw_backend_cpu(), 0, &ctx) != SDW_OK) {
    fprintf(stderr, "bench: %s\n", sdw_last_error());
    return 1;
  }
  for (int i = 0; i < bench_count; i++) {
    if (filter && !strstr(benches[i].name, filter)) continue;
    benches[i].fn(ctx);
  }
  sdw_ctx_destroy(ctx);
  return 0;
}
