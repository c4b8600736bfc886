/* The MPI engine (not yet: see the next commit). */
#include "core/train/allreduce_impl.h"

sdw_status sdw_allreduce_mpi_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world) {
  (void)engine, (void)impl, (void)rank, (void)world;
  return sdw_fail(SDW_ERR_UNSUPPORTED, "allreduce: the mpi engine is not built yet");
}
