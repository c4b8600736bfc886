/* Data-parallel training on one machine without a launcher (what torchrun
 * --nproc_per_node does for PyTorch): with local_ranks = N > 1, `sdw train`
 * becomes rank 0 of N and starts ranks 1..N-1 as child processes of the
 * same binary with the same options, all joined by the TCP engine
 * (core/train/allreduce_tcp.c) on a free loopback port.
 *
 * Why: on a small CPU model the per-operation threading of one process costs
 * more than it gains (the demo's 16x16 step of 32 images on two cores:
 * 2 threads 0.27 s, 1 thread 0.23 s), while two single-threaded ranks of 16
 * each take 0.13 s for the same global batch and the same loss
 * (bench/bench_local_ranks.sh).
 *
 * Each rank gets threads (the config key) or, when that is 0, the
 * OpenMP thread count divided by N (at least 1). The children die with
 * rank 0 (PR_SET_PDEATHSIG), take their stop from rank 0's broadcast, and
 * leave every file to rank 0. */
#ifndef SDW_CLI_LOCAL_RANKS_H
#define SDW_CLI_LOCAL_RANKS_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/base/status.h"

enum { SDW_LOCAL_RANKS_MAX = 1024 };

typedef struct sdw_local_ranks {
  int count;                       /* ranks in all, this one included */
  int threads;                     /* threads of each rank */
  pid_t pids[SDW_LOCAL_RANKS_MAX]; /* pids[r] of rank r >= 1 */
} sdw_local_ranks;

/* True in a process that a launch started as rank 1..N-1 (its SDW_RANK is
 * set and not 0): such a process never owns the run directory. */
bool sdw_local_ranks_is_child(void);

/* Starts ranks 1..count-1 running child_argv (NULL-terminated; argv[0] is
 * replaced by this binary) and sets this process's environment to be rank
 * 0. threads: the config's threads (0: OpenMP's count / count). Nothing is
 * started when count <= 1 or in a child (sdw_local_ranks_is_child). */
sdw_status sdw_local_ranks_start(int count, int threads, char *const *child_argv,
                                 sdw_local_ranks *out);

/* After rank 0's training returned: waits up to grace_s for the children to
 * exit (they end with rank 0's last step), then kills the rest. */
void sdw_local_ranks_finish(sdw_local_ranks *lr, double grace_s);

#endif
