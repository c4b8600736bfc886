/* core/train/allreduce: the "single" engine and engine selection. The
 * multi-rank engines are checked by tests/cli/allreduce_mpi.sh (mpirun) and
 * the in-process tcp test below (when that engine is built). */
#include <stdlib.h>
#include <string.h>

#include "core/train/allreduce.h"
#include "tests/test.h"

/* A world of one: the mean over ranks is the buffer itself, bit for bit
 * (no tolerance: nothing may touch the values, not even *1.0f rounding of
 * a NaN payload), sums and broadcasts leave the data as it is. */
SDW_TEST(allreduce_single_identity) {
  sdw_allreduce *a = NULL;
  CHECK_OK(sdw_allreduce_init("single", &a));
  REQUIRE(a);
  CHECK(sdw_allreduce_rank(a) == 0);
  CHECK(sdw_allreduce_world(a) == 1);
  CHECK(strcmp(sdw_allreduce_engine(a), "single") == 0);

  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  enum { N = 1000 };
  float *buf = sdw_test_alloc_guarded(N, "buf");
  float ref[N];
  sdw_test_rng r = sdw_test_rng_make(5);
  sdw_test_fill_normal(&r, buf, N, 3.0f);
  buf[7] = NAN;
  buf[8] = -0.0f;
  memcpy(ref, buf, sizeof ref);
  CHECK_OK(sdw_allreduce_mean_f32(a, ctx, buf, N));
  CHECK(memcmp(ref, buf, sizeof ref) == 0);
  CHECK_OK(sdw_allreduce_mean_f32(a, ctx, buf, 0));

  double d[3] = {1.5, -2.0, 1e300};
  CHECK_OK(sdw_allreduce_sum_f64(a, d, 3));
  CHECK(d[0] == 1.5 && d[1] == -2.0 && d[2] == 1e300);

  char msg[16] = "rank zero bytes";
  CHECK_OK(sdw_allreduce_broadcast(a, msg, sizeof msg, 0));
  CHECK(strcmp(msg, "rank zero bytes") == 0);
  CHECK_OK(sdw_allreduce_barrier(a));

  sdw_test_free_guarded(buf);
  sdw_ctx_destroy(ctx);
  sdw_allreduce_free(a);
  sdw_allreduce_free(NULL);
}

/* "auto" outside any launcher is the single engine; SDW_DIST refines
 * "auto" (and wins over a launcher's variables) but not an explicit name;
 * an unknown name is an invalid argument with a message naming it. */
SDW_TEST(allreduce_engine_selection) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SDW_DIST",
                                     "SDW_DIST_INIT"};
  enum { NVARS = sizeof vars / sizeof vars[0] };
  char *saved[NVARS];
  for (int i = 0; i < NVARS; i++) {
    const char *v = getenv(vars[i]);
    saved[i] = v ? strdup(v) : NULL;
    unsetenv(vars[i]);
  }
  sdw_allreduce *a = NULL;
  CHECK_OK(sdw_allreduce_init("auto", &a));
  CHECK(a && strcmp(sdw_allreduce_engine(a), "single") == 0 && sdw_allreduce_world(a) == 1);
  sdw_allreduce_free(a);
  a = NULL;
  CHECK_OK(sdw_allreduce_init(NULL, &a));
  CHECK(a && sdw_allreduce_world(a) == 1);
  sdw_allreduce_free(a);

  /* a launcher's variable with SDW_DIST=single: single, MPI never loaded */
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  setenv("SDW_DIST", "single", 1);
  a = NULL;
  CHECK_OK(sdw_allreduce_init("auto", &a));
  CHECK(a && strcmp(sdw_allreduce_engine(a), "single") == 0);
  sdw_allreduce_free(a);
  unsetenv("OMPI_COMM_WORLD_SIZE");

  setenv("SDW_DIST", "gloo", 1);
  a = NULL;
  CHECK(sdw_allreduce_init(NULL, &a) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(a == NULL);
  CHECK(strstr(sdw_last_error(), "gloo") != NULL);
  a = NULL;
  CHECK_OK(sdw_allreduce_init("single", &a)); /* an explicit engine ignores SDW_DIST */
  sdw_allreduce_free(a);
  unsetenv("SDW_DIST");

  a = NULL;
  CHECK(sdw_allreduce_init("nccl-maybe", &a) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(a == NULL);
  CHECK(strstr(sdw_last_error(), "nccl-maybe") != NULL);

  for (int i = 0; i < NVARS; i++) {
    if (saved[i]) setenv(vars[i], saved[i], 1);
    free(saved[i]);
  }
}
