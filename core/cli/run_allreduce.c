/* `sdw run allreduce-check`: exercises the data-parallel engine under a real
 * launcher (`mpirun -np N sdw run allreduce-check --engine mpi`): every rank
 * fills buffers it can also compute for every other rank (seeded by rank),
 * runs the collectives, and checks
 *  - the f32 mean against a double-precision reference: the engine adds
 *    world f32 values (world-1 roundings, each <= 2^-24 of the running
 *    |partial sum| <= sum_r |x_r|) then scales by one rounded 1/world (one
 *    more rounding of the result, plus the error of 1/world itself);
 *    bound per element: (world-1) * 2^-24 * sum_r|x_r| / world
 *    + 2 * 2^-24 * |mean|. For world 2 that is exact up to the final
 *    rounding of the sum, so the bound reduces to a single rounding.
 *  - the f64 sum of integer-valued doubles: exact (small integers).
 *  - broadcast from the last rank: its bytes everywhere.
 *  - bit identity across ranks: rank 0's mean buffer is broadcast and every
 *    rank compares it with its own (memcmp).
 * Prints one line per rank and exits 1 when a check fails. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/parse.h"
#include "core/cli/run.h"
#include "core/train/allreduce.h"
#ifdef SDW_HAVE_CUDA
#include "kernels/cuda/cuda_info.h"
#endif

void sdw_run_allreduce_check_usage(FILE *out) {
  fprintf(out, "usage: sdw run allreduce-check [--engine auto|single|mpi|tcp|nccl] [--n COUNT]\n"
               "                                [--repeat K]\n"
               "  Runs the data-parallel collectives on every rank of the world (start it with\n"
               "  mpirun, or with SDW_DIST_INIT/SDW_WORLD_SIZE/SDW_RANK for tcp) and checks\n"
               "  the results against a double-precision reference and across ranks.\n"
               "  --engine NAME  the allreduce engine (default auto; nccl averages GPU\n"
               "                 buffers: device = rank modulo the GPUs visible)\n"
               "  --n COUNT      floats per rank (default 100003)\n"
               "  --repeat K     timed repetitions of the mean (default 3)\n"
               "  --fail-rank R  rank R exits with status 1 before the collectives (to check\n"
               "                 that a failing rank ends the job instead of hanging it)\n");
}

/* splitmix64: the value rank r puts at index i, reproducible on any rank */
static float check_value(int rank, int64_t i) {
  uint64_t z = (uint64_t)rank * 0x9E3779B97F4A7C15ull + (uint64_t)i * 0xBF58476D1CE4E5B9ull + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  /* uniform in [-4, 4) with a spread of magnitudes (x 2^-e, e in 0..7) */
  double u = (double)(z >> 11) * 0x1.0p-53 * 8.0 - 4.0;
  return (float)ldexp(u, -(int)(z & 7));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_run(sdw_allreduce *a, sdw_ctx *ctx, int64_t n, int repeat) {
  const int rank = sdw_allreduce_rank(a), world = sdw_allreduce_world(a);
  int bad = 0;
  float *dev = NULL, *buf = NULL, *root = NULL;
  const size_t bytes = (size_t)n * sizeof(float);
  SDW_TRY(ctx->ops->alloc(ctx, bytes, (void **)&dev));
  /* buf: the host view of dev (staged through upload/download on a GPU) */
  buf = ctx->ops->device == SDW_DEVICE_CPU ? dev : malloc(bytes);
  root = malloc(bytes);
  if (!root || !buf) {
    free(root);
    if (buf != dev) free(buf);
    ctx->ops->free(ctx, dev);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "allreduce-check: out of host memory");
  }

  /* mean of f32 */
  for (int64_t i = 0; i < n; i++)
    buf[i] = check_value(rank, i);
  sdw_status st = ctx->ops->upload(ctx, dev, buf, bytes);
  if (st == SDW_OK) st = sdw_allreduce_mean_f32(a, ctx, dev, n);
  if (st == SDW_OK) st = ctx->ops->download(ctx, buf, dev, bytes);
  double max_err = 0.0;
  int64_t worst = -1;
  for (int64_t i = 0; st == SDW_OK && i < n; i++) {
    double sum = 0.0, abs_sum = 0.0;
    for (int r = 0; r < world; r++) {
      double v = check_value(r, i);
      sum += v;
      abs_sum += fabs(v);
    }
    double ref = sum / world;
    /* x1.001: room for the second-order terms of the bound */
    double bound = ((world - 1) * abs_sum / world + 2 * fabs(ref)) * 0x1.0p-24 * 1.001;
    double err = fabs((double)buf[i] - ref);
    if (!(err <= bound)) {
      if (bad++ < 5)
        fprintf(stderr,
                "allreduce-check: rank %d: mean[%lld] = %.9g, reference %.9g (bound %.3g)\n", rank,
                (long long)i, buf[i], ref, bound);
    }
    if (err > max_err) max_err = err, worst = i;
  }

  /* the same bits on every rank: rank 0's result, compared everywhere */
  if (st == SDW_OK) {
    memcpy(root, buf, (size_t)n * sizeof(float));
    st = sdw_allreduce_broadcast(a, root, (size_t)n * sizeof(float), 0);
  }
  int identical = st == SDW_OK && memcmp(root, buf, (size_t)n * sizeof(float)) == 0;
  if (st == SDW_OK && !identical) {
    bad++;
    fprintf(stderr, "allreduce-check: rank %d: the mean differs from rank 0's bits\n", rank);
  }

  /* sum of f64: integers, exact */
  double d[3] = {(double)rank, 1.0, (double)(rank + 1) * 1e6};
  if (st == SDW_OK) st = sdw_allreduce_sum_f64(a, d, 3);
  const double wsum = (double)world * (world - 1) / 2;
  if (st == SDW_OK && (d[0] != wsum || d[1] != world || d[2] != (wsum + world) * 1e6)) {
    bad++;
    fprintf(stderr, "allreduce-check: rank %d: f64 sum %g %g %g, expected %g %g %g\n", rank, d[0],
            d[1], d[2], wsum, (double)world, (wsum + world) * 1e6);
  }

  /* broadcast from the last rank */
  char msg[64], want[64];
  snprintf(want, sizeof want, "bytes of rank %d", world - 1);
  snprintf(msg, sizeof msg, "bytes of rank %d", rank);
  if (st == SDW_OK) st = sdw_allreduce_broadcast(a, msg, sizeof msg, world - 1);
  if (st == SDW_OK && strcmp(msg, want) != 0) {
    bad++;
    fprintf(stderr, "allreduce-check: rank %d: broadcast gave '%s'\n", rank, msg);
  }

  /* timing (values drift; only the time matters here) */
  double best = INFINITY;
  for (int k = 0; st == SDW_OK && k < repeat; k++) {
    if (st == SDW_OK) st = sdw_allreduce_barrier(a);
    double t0 = now_s();
    if (st == SDW_OK) st = sdw_allreduce_mean_f32(a, ctx, dev, n);
    if (st == SDW_OK) st = ctx->ops->synchronize(ctx);
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  if (st == SDW_OK) st = sdw_allreduce_barrier(a);

  if (st == SDW_OK)
    printf("allreduce-check: engine %s rank %d world %d n %lld max_err %.3g (at %lld) identical %s "
           "mean_ms %.3f %s\n",
           sdw_allreduce_engine(a), rank, world, (long long)n, max_err, (long long)worst,
           identical ? "yes" : "no", repeat > 0 ? best * 1e3 : 0.0, bad ? "FAIL" : "ok");
  fflush(stdout);
  free(root);
  if (buf != dev) free(buf);
  ctx->ops->free(ctx, dev);
  if (st != SDW_OK) return st;
  return bad ? sdw_fail(SDW_ERR_INTERNAL, "allreduce-check: %d check(s) failed on rank %d", bad,
                        rank)
             : SDW_OK;
}

int sdw_run_allreduce_check(int argc, char **argv) {
  const char *engine = "auto";
  int64_t n = 100003;
  int64_t repeat = 3;
  int64_t fail_rank = -1;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    if ((m = sdw_run_option(argc, argv, &i, "--engine", &v)) != 0) {
      if (m < 0) return 2;
      engine = v;
    } else if ((m = sdw_run_option(argc, argv, &i, "--n", &v)) != 0) {
      if (m < 0) return 2;
      if (!sdw_parse_i64(v, 1, INT64_C(1) << 34, &n)) {
        fprintf(stderr, "sdw: run allreduce-check: --n wants a count from 1, not '%s'\n", v);
        return 2;
      }
    } else if ((m = sdw_run_option(argc, argv, &i, "--repeat", &v)) != 0) {
      if (m < 0) return 2;
      if (!sdw_parse_i64(v, 0, 1000000, &repeat)) {
        fprintf(stderr, "sdw: run allreduce-check: --repeat wants a count from 0, not '%s'\n", v);
        return 2;
      }
    } else if ((m = sdw_run_option(argc, argv, &i, "--fail-rank", &v)) != 0) {
      if (m < 0) return 2;
      if (!sdw_parse_i64(v, 0, 1 << 20, &fail_rank)) {
        fprintf(stderr, "sdw: run allreduce-check: --fail-rank wants a rank, not '%s'\n", v);
        return 2;
      }
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sdw_run_allreduce_check_usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "sdw: run allreduce-check: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  sdw_allreduce *a = NULL;
  sdw_status st = sdw_allreduce_init(engine, &a);
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: run allreduce-check: %s\n", sdw_last_error());
    return 1;
  }
  if (sdw_allreduce_rank(a) == fail_rank) {
    fprintf(stderr, "sdw: run allreduce-check: rank %lld fails on request\n", (long long)fail_rank);
    sdw_allreduce_free(a);
    return 1;
  }
  sdw_ctx *ctx = NULL;
#ifdef SDW_HAVE_CUDA
  if (strcmp(sdw_allreduce_engine(a), "nccl") == 0) {
    /* GPU buffers; ranks share the visible GPUs round robin */
    sdw_cuda_info info;
    sdw_cuda_query_info(&info);
    if (!sdw_backend_cuda() || info.device_count < 1) {
      fprintf(stderr, "sdw: run allreduce-check: engine nccl needs a GPU (%s)\n",
              info.device_error[0] ? info.device_error : "none visible");
      sdw_allreduce_free(a);
      return 1;
    }
    st = sdw_ctx_create(sdw_backend_cuda(), sdw_allreduce_rank(a) % info.device_count, &ctx);
  } else
#endif
  {
    st = sdw_ctx_create(sdw_backend_cpu(), 0, &ctx);
  }
  if (st == SDW_OK) st = check_run(a, ctx, n, (int)repeat);
  if (st != SDW_OK) fprintf(stderr, "sdw: run allreduce-check: %s\n", sdw_last_error());
  sdw_ctx_destroy(ctx);
  sdw_allreduce_free(a);
  return st == SDW_OK ? 0 : 1;
}
