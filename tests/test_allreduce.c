/* core/train/allreduce: the "single" engine, engine selection, and the tcp
 * engine with one thread per rank in this process. The MPI engine is
 * checked under mpirun by tests/cli/allreduce_mpi.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* --- tcp engine, one thread per rank --------------------------------------- */

/* A port nobody listens on right now (bind to 0, read it back, close). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* rank r's value at i: reproducible from any thread */
static float rank_value(int r, int64_t i) {
  sdw_test_rng g = sdw_test_rng_make((uint64_t)(r * 1000003 + i) * 2654435761u + 17);
  return (float)(sdw_test_rng_normal(&g) * ((i % 7) + 1));
}

enum { TCP_WORLD = 3 };
/* more than one 4 MiB chunk of the engine, and not a multiple of it */
#define TCP_N ((int64_t)(1 << 20) + 4099)

typedef struct rank_job {
  char init[64];
  int rank, world;
  float *buf;     /* TCP_N: the mean */
  double sums[3]; /* f64 sum */
  char bcast[2][32];
  sdw_status st;
  char err[256];
} rank_job;

static void *rank_main(void *arg) {
  rank_job *j = arg;
  sdw_allreduce *a = NULL;
  sdw_ctx *ctx = NULL;
  j->st = sdw_allreduce_init_tcp(j->init, j->world, j->rank, 30.0, &a);
  if (j->st == SDW_OK) j->st = sdw_ctx_create(sdw_backend_cpu(), 0, &ctx);
  for (int64_t i = 0; i < TCP_N; i++)
    j->buf[i] = rank_value(j->rank, i);
  if (j->st == SDW_OK) j->st = sdw_allreduce_mean_f32(a, ctx, j->buf, TCP_N);
  j->sums[0] = j->rank, j->sums[1] = 0.5, j->sums[2] = -1e15 * (j->rank + 1);
  if (j->st == SDW_OK) j->st = sdw_allreduce_sum_f64(a, j->sums, 3);
  for (int root = 1; root <= 2; root++) {
    snprintf(j->bcast[root - 1], sizeof j->bcast[0], "from rank %d", j->rank);
    if (j->st == SDW_OK) j->st = sdw_allreduce_broadcast(a, j->bcast[root - 1], 32, root);
  }
  if (j->st == SDW_OK) j->st = sdw_allreduce_barrier(a);
  if (j->st != SDW_OK) snprintf(j->err, sizeof j->err, "%s", sdw_last_error());
  sdw_ctx_destroy(ctx);
  sdw_allreduce_free(a);
  return NULL;
}

/* Three ranks over 127.0.0.1. The engine documents its order: rank 0 adds
 * ranks 1, 2 to its own in that order, in f32, then the front scales by
 * (float)(1/3). The test recomputes exactly that order here and requires
 * the same bits on every rank (tolerance 0: the order is the contract that
 * makes ranks agree). As an independent check the result is also compared
 * with the double-precision mean: 2 f32 roundings of the sum (each <= 2^-24
 * of sum|x|) plus the rounding of 1/3 and of the product (2^-24 |mean|
 * each), x1.001 for second-order terms. Integer-valued doubles sum
 * exactly; broadcasts from ranks 1 and 2 deliver the root's bytes. */
SDW_TEST(allreduce_tcp_three_ranks) {
  int port = free_port();
  REQUIRE(port > 0);
  rank_job jobs[TCP_WORLD];
  pthread_t th[TCP_WORLD];
  memset(jobs, 0, sizeof jobs);
  for (int r = 0; r < TCP_WORLD; r++) {
    snprintf(jobs[r].init, sizeof jobs[r].init, "tcp://127.0.0.1:%d", port);
    jobs[r].rank = r;
    jobs[r].world = TCP_WORLD;
    jobs[r].buf = sdw_test_alloc_guarded((size_t)TCP_N, "mean");
  }
  for (int r = TCP_WORLD - 1; r >= 0; r--) /* rank 0 last: the others retry */
    REQUIRE(pthread_create(&th[r], NULL, rank_main, &jobs[r]) == 0);
  for (int r = 0; r < TCP_WORLD; r++)
    pthread_join(th[r], NULL);
  for (int r = 0; r < TCP_WORLD; r++)
    CHECK_MSG(jobs[r].st == SDW_OK, "rank %d: %s", r, jobs[r].err);

  const float inv = (float)(1.0 / 3.0);
  int64_t order_mismatch = 0, bound_fail = 0, rank_diff = 0;
  for (int64_t i = 0; i < TCP_N; i++) {
    float x0 = rank_value(0, i), x1 = rank_value(1, i), x2 = rank_value(2, i);
    float ordered = ((x0 + x1) + x2) * inv;
    double ref = ((double)x0 + x1 + x2) / 3.0;
    double abs_sum = fabs((double)x0) + fabs((double)x1) + fabs((double)x2);
    double bound = (2 * abs_sum / 3 + 2 * fabs(ref)) * 0x1.0p-24 * 1.001;
    if (memcmp(&jobs[0].buf[i], &ordered, sizeof ordered) != 0) order_mismatch++;
    if (!(fabs((double)jobs[0].buf[i] - ref) <= bound)) bound_fail++;
    for (int r = 1; r < TCP_WORLD; r++)
      if (memcmp(&jobs[r].buf[i], &jobs[0].buf[i], sizeof(float)) != 0) rank_diff++;
  }
  CHECK_MSG(order_mismatch == 0, "%lld elements differ from ((x0+x1)+x2)*(1/3)",
            (long long)order_mismatch);
  CHECK_MSG(bound_fail == 0, "%lld elements outside the rounding bound", (long long)bound_fail);
  CHECK_MSG(rank_diff == 0, "%lld elements differ between ranks", (long long)rank_diff);
  for (int r = 0; r < TCP_WORLD; r++) {
    CHECK(jobs[r].sums[0] == 3.0 && jobs[r].sums[1] == 1.5 && jobs[r].sums[2] == -6e15);
    CHECK(strcmp(jobs[r].bcast[0], "from rank 1") == 0);
    CHECK(strcmp(jobs[r].bcast[1], "from rank 2") == 0);
    sdw_test_free_guarded(jobs[r].buf);
  }
}

typedef struct join_job {
  char init[64];
  int world, rank;
  double timeout;
  sdw_status st;
} join_job;

static void *join_main(void *arg) {
  join_job *j = arg;
  sdw_allreduce *a = NULL;
  j->st = sdw_allreduce_init_tcp(j->init, j->world, j->rank, j->timeout, &a);
  sdw_allreduce_free(a);
  return NULL;
}

/* Rendezvous failures are statuses, never hangs: nobody listening (timeout
 * after 0.3 s), ranks that disagree on the world size (rank 0 refuses,
 * the other sees the connection close), bad SDW_DIST_INIT strings and a
 * missing environment. */
SDW_TEST(allreduce_tcp_rendezvous_errors) {
  int port = free_port();
  REQUIRE(port > 0);
  char init[64];
  snprintf(init, sizeof init, "tcp://127.0.0.1:%d", port);
  sdw_allreduce *a = NULL;
  CHECK(sdw_allreduce_init_tcp(init, 2, 1, 0.3, &a) == SDW_ERR_IO);
  CHECK(a == NULL);

  join_job j[2] = {{.world = 2, .rank = 0, .timeout = 10}, {.world = 3, .rank = 1, .timeout = 10}};
  pthread_t th[2];
  for (int r = 0; r < 2; r++) {
    snprintf(j[r].init, sizeof j[r].init, "%s", init);
    REQUIRE(pthread_create(&th[r], NULL, join_main, &j[r]) == 0);
  }
  for (int r = 0; r < 2; r++)
    pthread_join(th[r], NULL);
  CHECK(j[0].st == SDW_ERR_INVALID_ARGUMENT);
  CHECK(j[1].st == SDW_ERR_IO);

  static const char *const bad[] = {"http://h:1", "tcp://h",       "tcp://:80",
                                    "tcp://h:0",  "tcp://h:70000", "tcp://[::1:5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    a = NULL;
    CHECK_MSG(sdw_allreduce_init_tcp(bad[i], 2, 1, 0.1, &a) == SDW_ERR_INVALID_ARGUMENT, "%s",
              bad[i]);
    CHECK(a == NULL);
  }
  CHECK(sdw_allreduce_init_tcp(init, 2, 2, 0.1, &a) == SDW_ERR_INVALID_ARGUMENT);

  /* a world of one needs no network */
  a = NULL;
  CHECK_OK(sdw_allreduce_init_tcp("tcp://127.0.0.1:1", 1, 0, 0.1, &a));
  CHECK(a && sdw_allreduce_world(a) == 1 && strcmp(sdw_allreduce_engine(a), "tcp") == 0);
  sdw_allreduce_free(a);

  const char *saved = getenv("SDW_DIST_INIT");
  char *copy = saved ? strdup(saved) : NULL;
  unsetenv("SDW_DIST_INIT");
  a = NULL;
  CHECK(sdw_allreduce_init("tcp", &a) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "SDW_DIST_INIT") != NULL);
  if (copy) setenv("SDW_DIST_INIT", copy, 1);
  free(copy);
}
