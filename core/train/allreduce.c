/* The allreduce front: engine selection, the "single" engine, the mean
 * (sum then * 1/world) and the staging of non-CPU buffers through host
 * memory. The engines live in allreduce_mpi.c and allreduce_tcp.c. */
#include "core/train/allreduce.h"

#include <stdlib.h>
#include <string.h>

#include "core/train/allreduce_impl.h"
#ifdef SDW_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/nccl_engine.h"
#endif

struct sdw_allreduce {
  const sdw_allreduce_ops *engine; /* NULL: single */
  void *impl;
  int rank;
  int world;
  float *stage; /* host staging for non-CPU backends (malloc'd, grows) */
  size_t stage_cap;
  bool nccl;       /* engine "nccl": CUDA buffers go through NCCL, the rest through engine */
  void *nccl_comm; /* sdw_nccl, made at the first CUDA mean (collective) */
};

static int env_set(const char *name) {
  const char *v = getenv(name);
  return v && *v;
}

int sdw_allreduce_mpi_launched(void) {
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMI_SIZE") || env_set("PMIX_RANK");
}

sdw_status sdw_allreduce_init(const char *engine, sdw_allreduce **out) {
  *out = NULL;
  if (!engine || !*engine) engine = "auto";
  /* the environment's choice refines "auto" (man sdw(1), ENVIRONMENT) */
  if (strcmp(engine, "auto") == 0 && env_set("SDW_DIST")) engine = getenv("SDW_DIST");
  if (strcmp(engine, "auto") == 0) {
    if (sdw_allreduce_mpi_launched())
      engine = "mpi";
    else if (env_set("SDW_DIST_INIT"))
      engine = "tcp";
    else
      engine = "single";
  }
  sdw_allreduce *a = calloc(1, sizeof *a);
  if (!a) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "allreduce: out of host memory");
  a->rank = 0;
  a->world = 1;
  sdw_status st = SDW_OK;
  if (strcmp(engine, "single") == 0) {
    /* nothing to open */
  } else if (strcmp(engine, "mpi") == 0) {
    st = sdw_allreduce_mpi_open(&a->engine, &a->impl, &a->rank, &a->world);
  } else if (strcmp(engine, "tcp") == 0) {
    st = sdw_allreduce_tcp_open(&a->engine, &a->impl, &a->rank, &a->world);
  } else if (strcmp(engine, "nccl") == 0) {
#ifdef SDW_HAVE_CUDA
    /* the host engine exchanges NCCL's id and carries the host collectives */
    a->nccl = true;
    if (sdw_allreduce_mpi_launched())
      st = sdw_allreduce_mpi_open(&a->engine, &a->impl, &a->rank, &a->world);
    else
      st = sdw_allreduce_tcp_open(&a->engine, &a->impl, &a->rank, &a->world);
#else
    st = sdw_fail(SDW_ERR_UNSUPPORTED, "allreduce: engine 'nccl' needs a build with CUDA");
#endif
  } else {
    st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                  "allreduce: unknown engine '%s' (auto, single, mpi, tcp or nccl)", engine);
  }
  if (st != SDW_OK) {
    free(a);
    return st;
  }
  *out = a;
  return SDW_OK;
}

sdw_status sdw_allreduce_init_tcp(const char *init, int world, int rank, double timeout_s,
                                  sdw_allreduce **out) {
  *out = NULL;
  sdw_allreduce *a = calloc(1, sizeof *a);
  if (!a) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "allreduce: out of host memory");
  sdw_status st = sdw_allreduce_tcp_connect(init, world, rank, timeout_s, &a->engine, &a->impl);
  if (st != SDW_OK) {
    free(a);
    return st;
  }
  a->rank = rank;
  a->world = world;
  *out = a;
  return SDW_OK;
}

void sdw_allreduce_free(sdw_allreduce *a) {
  if (!a) return;
#ifdef SDW_HAVE_CUDA
  sdw_nccl_destroy(a->nccl_comm);
#endif
  if (a->engine) a->engine->destroy(a->impl);
  free(a->stage);
  free(a);
}

const char *sdw_allreduce_engine(const sdw_allreduce *a) {
  if (a->nccl) return "nccl";
  return a->engine ? a->engine->name : "single";
}

#ifdef SDW_HAVE_CUDA
static sdw_status nccl_bcast(void *user, void *buf, size_t bytes, int root) {
  sdw_allreduce *a = user;
  return a->engine->broadcast(a->impl, buf, bytes, root);
}
#endif
int sdw_allreduce_rank(const sdw_allreduce *a) { return a->rank; }
int sdw_allreduce_world(const sdw_allreduce *a) { return a->world; }

static void scale_f32(float *buf, int64_t n, float s) {
  for (int64_t i = 0; i < n; i++)
    buf[i] *= s;
}

sdw_status sdw_allreduce_mean_f32(sdw_allreduce *a, sdw_ctx *ctx, float *buf, int64_t n) {
  SDW_ASSERT(a && n >= 0 && (buf || n == 0));
  if (a->world == 1 || n == 0) return SDW_OK; /* the mean over one rank is the buffer */
  /* one rounding of 1/world, the same on every rank (exact for powers of 2) */
  const float inv = (float)(1.0 / (double)a->world);
  if (!ctx || ctx->ops->device == SDW_DEVICE_CPU) {
    SDW_TRY(a->engine->sum_f32(a->impl, buf, n));
    scale_f32(buf, n, inv);
    return SDW_OK;
  }
#ifdef SDW_HAVE_CUDA
  if (a->nccl && ctx->ops == sdw_backend_cuda()) {
    if (!a->nccl_comm)
      SDW_TRY(sdw_nccl_create(a->rank, a->world, sdw_cuda_device(ctx), nccl_bcast, a,
                              (sdw_nccl **)&a->nccl_comm));
    return sdw_nccl_allreduce_scaled_f32(a->nccl_comm, buf, n, inv, sdw_cuda_stream(ctx));
  }
#endif
  const size_t bytes = (size_t)n * sizeof(float);
  if (a->stage_cap < (size_t)n) {
    float *p = realloc(a->stage, bytes);
    if (!p)
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "allreduce: no host memory to stage %lld floats",
                      (long long)n);
    a->stage = p;
    a->stage_cap = (size_t)n;
  }
  SDW_TRY(ctx->ops->download(ctx, a->stage, buf, bytes));
  SDW_TRY(a->engine->sum_f32(a->impl, a->stage, n));
  scale_f32(a->stage, n, inv);
  return ctx->ops->upload(ctx, buf, a->stage, bytes);
}

sdw_status sdw_allreduce_sum_f64(sdw_allreduce *a, double *buf, int64_t n) {
  SDW_ASSERT(a && n >= 0 && (buf || n == 0));
  if (a->world == 1 || n == 0) return SDW_OK;
  return a->engine->sum_f64(a->impl, buf, n);
}

sdw_status sdw_allreduce_broadcast(sdw_allreduce *a, void *buf, size_t bytes, int root) {
  SDW_ASSERT(a && (buf || bytes == 0));
  SDW_ASSERT_MSG(root >= 0 && root < a->world, "broadcast root %d of world %d", root, a->world);
  if (a->world == 1 || bytes == 0) return SDW_OK;
  return a->engine->broadcast(a->impl, buf, bytes, root);
}

sdw_status sdw_allreduce_barrier(sdw_allreduce *a) {
  SDW_ASSERT(a);
  if (a->world == 1) return SDW_OK;
  return a->engine->barrier(a->impl);
}
