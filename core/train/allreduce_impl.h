/* Private to core/train/allreduce*.c: the engine table behind
 * core/train/allreduce.h. Each engine sums in place (host memory) with a
 * reduction order fixed for its world size, so all ranks get the same bits. */
#ifndef SDW_TRAIN_ALLREDUCE_IMPL_H
#define SDW_TRAIN_ALLREDUCE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

typedef struct sdw_allreduce_ops {
  const char *name;
  sdw_status (*sum_f32)(void *impl, float *buf, int64_t n);  /* host buf[n] */
  sdw_status (*sum_f64)(void *impl, double *buf, int64_t n); /* host buf[n] */
  sdw_status (*broadcast)(void *impl, void *buf, size_t bytes, int root);
  sdw_status (*barrier)(void *impl);
  void (*destroy)(void *impl);
} sdw_allreduce_ops;

/* Each opener sets *engine, *impl (owned by the engine, released by
 * destroy), *rank and *world. */
sdw_status sdw_allreduce_mpi_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world);
sdw_status sdw_allreduce_tcp_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world);

/* The tcp engine with explicit parameters (sdw_allreduce_tcp_open reads
 * them from the environment): init "tcp://host:port", this rank of world,
 * timeout_s for the rendezvous. */
sdw_status sdw_allreduce_tcp_connect(const char *init, int world, int rank, double timeout_s,
                                     const sdw_allreduce_ops **engine, void **impl);

/* True when the environment says this process was started by an MPI
 * launcher (mpirun / srun). */
int sdw_allreduce_mpi_launched(void);

#endif
