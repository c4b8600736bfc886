/* NCCL communicator for the "nccl" allreduce engine (nccl_engine.h). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/nccl_engine.h"

#define NCCL_TRY(expr)                                                                             \
  do {                                                                                             \
    ncclResult_t nccl_try_r_ = (expr);                                                             \
    if (nccl_try_r_ != ncclSuccess)                                                                \
      return sdw_fail(SDW_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,                  \
                      ncclGetErrorString(nccl_try_r_));                                            \
  } while (0)

struct sdw_nccl {
  ncclComm_t comm;
  int device;
};

namespace {

__global__ void scale_kernel(float *buf, int64_t n, float s) { CUDA_FOR(i, n) buf[i] = buf[i] * s; }

} // namespace

extern "C" sdw_status sdw_nccl_create(int rank, int world, int device, sdw_nccl_broadcast_fn bcast,
                                      void *user, sdw_nccl **out) {
  *out = NULL;
  SDW_ASSERT(bcast && world >= 1 && rank >= 0 && rank < world);
  ncclUniqueId id;
  if (rank == 0) NCCL_TRY(ncclGetUniqueId(&id));
  SDW_TRY(bcast(user, &id, sizeof id, 0));
  CUDA_TRY(cudaSetDevice(device));
  sdw_nccl *c = (sdw_nccl *)calloc(1, sizeof *c);
  if (!c) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "nccl: out of host memory");
  c->device = device;
  ncclResult_t r = ncclCommInitRank(&c->comm, world, id, rank);
  if (r != ncclSuccess) {
    free(c);
    return sdw_fail(SDW_ERR_DEVICE, "nccl: ncclCommInitRank (rank %d of %d, cuda:%d): %s%s%s", rank,
                    world, device, ncclGetErrorString(r), ncclGetLastError(NULL) ? ": " : "",
                    ncclGetLastError(NULL) ? ncclGetLastError(NULL) : "");
  }
  *out = c;
  return SDW_OK;
}

extern "C" void sdw_nccl_destroy(sdw_nccl *c) {
  if (!c) return;
  ncclCommDestroy(c->comm);
  free(c);
}

extern "C" sdw_status sdw_nccl_allreduce_scaled_f32(sdw_nccl *c, float *buf, int64_t n, float scale,
                                                    void *stream) {
  SDW_ASSERT(c && n >= 0);
  if (!n) return SDW_OK;
  cudaStream_t s = (cudaStream_t)stream;
  NCCL_TRY(ncclAllReduce(buf, buf, (size_t)n, ncclFloat32, ncclSum, c->comm, s));
  if (scale != 1.0f) {
    scale_kernel<<<cuda_grid(n), CUDA_THREADS, 0, s>>>(buf, n, scale);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}
