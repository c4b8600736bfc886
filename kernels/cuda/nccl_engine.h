/* NCCL for the data-parallel engine (core/train/allreduce.c, engine "nccl"):
 * one communicator per process over the ranks of a world that already has a
 * host-side engine (mpi or tcp) to exchange the NCCL unique id. Plain C
 * interface; only in builds with CUDA (SDW_HAVE_CUDA). Implemented in
 * kernels/cuda/nccl_engine.cu. */
#ifndef SDW_KERNELS_CUDA_NCCL_ENGINE_H
#define SDW_KERNELS_CUDA_NCCL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_nccl sdw_nccl;

/* Broadcast of bytes from root over the host engine (collective). */
typedef sdw_status (*sdw_nccl_broadcast_fn)(void *user, void *buf, size_t bytes, int root);

/* Rank 0 makes the unique id, bcast hands it to every rank, then
 * ncclCommInitRank on CUDA device `device`. Collective: every rank calls it
 * at the same point. *out is owned by the caller (sdw_nccl_destroy). */
sdw_status sdw_nccl_create(int rank, int world, int device, sdw_nccl_broadcast_fn bcast, void *user,
                           sdw_nccl **out);
void sdw_nccl_destroy(sdw_nccl *comm);

/* buf[n] in device memory: sum over ranks (ncclAllReduce, ncclSum) then
 * buf *= scale (one f32 multiply), both queued on stream (a cudaStream_t);
 * every rank ends with the same bits. Asynchronous: errors of the queued
 * work surface at the next synchronize. */
sdw_status sdw_nccl_allreduce_scaled_f32(sdw_nccl *comm, float *buf, int64_t n, float scale,
                                         void *stream);

#ifdef __cplusplus
}
#endif
#endif
