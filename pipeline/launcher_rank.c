/* The launcher's rank and size (see launcher_rank.h). */
#include "pipeline/launcher_rank.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/base/parse.h"

static bool env_int(const char *name, int64_t *out) {
  const char *v = getenv(name);
  return v && *v && sdw_parse_i64(v, 0, INT_MAX, out);
}

bool sdw_launcher_rank(int *rank, int *size) {
  static const char *const pairs[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                         {"PMI_RANK", "PMI_SIZE"},
                                         {"SLURM_PROCID", "SLURM_NTASKS"}};
  for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
    int64_t r, s;
    if (env_int(pairs[k][0], &r) && env_int(pairs[k][1], &s) && s >= 1 && r < s) {
      *rank = (int)r;
      *size = (int)s;
      return true;
    }
  }
  return false;
}
