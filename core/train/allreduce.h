/* Data parallel collectives: the trainer averages gradients across ranks
 * through this interface and never sees which engine moves the bytes.
 *
 * Engines:
 *  - "single": one process, world 1; every collective is a no-op (mean over
 *    one rank is the buffer itself).
 *  - "mpi":    MPI loaded at run time (dlopen of libmpi.so.40, OpenMPI 4.x;
 *    sdw needs no MPI headers to build and runs on machines without MPI).
 *    Launch with `mpirun -np N sdw ...`.
 *  - "tcp":    plain sockets, rank 0 reduces (env SDW_DIST_INIT=tcp://host:port,
 *    SDW_WORLD_SIZE, SDW_RANK) when built in; see allreduce.c.
 *  - "nccl":   (CUDA builds) buffers of a CUDA ctx are averaged by NCCL on the
 *    ctx's stream (sum, then * 1/world); the NCCL id is exchanged, and the
 *    host collectives run, through "mpi" when launched by mpirun/srun, else
 *    "tcp". The communicator is made at the first CUDA mean (collective).
 *  - "auto":   the engine named by env SDW_DIST when set; else "mpi" when
 *    launched by mpirun/srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK
 *    set), "tcp" when SDW_DIST_INIT is set, else "single".
 *
 * Determinism: every rank ends every collective with bit-identical buffers
 * (the reduction order is fixed for a given world size: MPI_Allreduce of
 * OpenMPI's tuned/basic components reduces in an order that depends only on
 * the world size and the message size, the same on every rank; the tcp
 * engine sums in rank order 0, 1, ..., N-1 on rank 0 and broadcasts).
 *
 * Ranks must issue the same collectives in the same order (MPI semantics).
 * An sdw_allreduce is used by one thread at a time.
 */
#ifndef SDW_TRAIN_ALLREDUCE_H
#define SDW_TRAIN_ALLREDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_allreduce sdw_allreduce;

/* engine "auto", "single", "mpi", "tcp" or "nccl" (NULL = "auto"). *out is owned by
 * the caller (sdw_allreduce_free). SDW_ERR_UNSUPPORTED when the engine's
 * library is missing (names it and the fix), SDW_ERR_INVALID_ARGUMENT for an
 * unknown engine name or inconsistent environment. MPI is initialised once
 * per process (MPI cannot be re-initialised after MPI_Finalize, which runs
 * at process exit). */
sdw_status sdw_allreduce_init(const char *engine, sdw_allreduce **out);
void sdw_allreduce_free(sdw_allreduce *a);
/* The tcp engine without the environment: rank 0 of world listens on init
 * ("tcp://host:port"), the others connect; returns when all ranks are
 * there or after timeout_s seconds (SDW_ERR_IO). For tests, and for
 * exchanging ids (NCCL) before a GPU world exists. */
sdw_status sdw_allreduce_init_tcp(const char *init, int world, int rank, double timeout_s,
                                  sdw_allreduce **out);

/* "single", "mpi", "tcp", "nccl". */
const char *sdw_allreduce_engine(const sdw_allreduce *a);
int sdw_allreduce_rank(const sdw_allreduce *a);  /* 0 .. world-1 */
int sdw_allreduce_world(const sdw_allreduce *a); /* >= 1 */

/* buf[n] in backend memory of ctx: every rank ends with the mean over ranks
 * (sum then * 1/world, the same bits on every rank). Non-CPU backends are
 * staged through host memory. */
sdw_status sdw_allreduce_mean_f32(sdw_allreduce *a, sdw_ctx *ctx, float *buf, int64_t n);
/* buf[n] host doubles: sum over ranks in place (losses, counts, non-finite
 * flags). */
sdw_status sdw_allreduce_sum_f64(sdw_allreduce *a, double *buf, int64_t n);
/* buf[bytes] host memory: every rank ends with root's bytes. */
sdw_status sdw_allreduce_broadcast(sdw_allreduce *a, void *buf, size_t bytes, int root);
sdw_status sdw_allreduce_barrier(sdw_allreduce *a);

#ifdef __cplusplus
}
#endif
#endif
