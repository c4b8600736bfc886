/* The TCP engine (not yet). */
#include "core/train/allreduce_impl.h"

sdw_status sdw_allreduce_tcp_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world) {
  (void)engine, (void)impl, (void)rank, (void)world;
  return sdw_fail(SDW_ERR_UNSUPPORTED, "allreduce: the tcp engine is not built yet");
}
