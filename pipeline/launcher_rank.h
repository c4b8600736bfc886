/* The rank and world size a parallel launcher gives this process, for stages
 * that split their work across processes without talking to each other
 * (download, encode). */
#ifndef SDW_PIPELINE_LAUNCHER_RANK_H
#define SDW_PIPELINE_LAUNCHER_RANK_H

#include <stdbool.h>

/* From mpirun (OMPI_COMM_WORLD_RANK/SIZE), a PMI launcher (PMI_RANK/SIZE)
 * or srun (SLURM_PROCID/NTASKS), the first pair that is complete and
 * consistent (0 <= rank < size); false when no launcher says. */
bool sdw_launcher_rank(int *rank, int *size);

#endif
