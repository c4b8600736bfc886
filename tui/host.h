/* Host CPU load, memory and per-process RSS from /proc, for the Devices
 * panel. The parsers are pure functions over the files' text (tested on
 * fixtures); the readers open the real files. Linux only; no curses.
 */
#ifndef SDW_TUI_HOST_H
#define SDW_TUI_HOST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SDW_HOST_MAX_CPUS 256

/* Cumulative jiffies of one "cpu" line of /proc/stat. */
typedef struct sdw_cpu_times {
  uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
} sdw_cpu_times;

/* Parses /proc/stat: the aggregate "cpu" line into *total and the "cpuN"
 * lines into per_cpu[N] (N < max_cpus; *ncpus = highest N + 1 seen, capped
 * at max_cpus). per_cpu may be NULL with max_cpus 0. Missing trailing
 * fields (old kernels) read as 0. SDW_ERR_FORMAT without a "cpu" line. */
sdw_status sdw_host_parse_stat(const char *text, sdw_cpu_times *total, sdw_cpu_times *per_cpu,
                               int max_cpus, int *ncpus);

/* The busy fraction [0, 1] between two snapshots: 1 - (d idle + d iowait) /
 * d all (guest time is already inside user/nice). -1 when no time passed
 * or the counters went backwards (a CPU taken offline and back). */
double sdw_cpu_load(const sdw_cpu_times *prev, const sdw_cpu_times *cur);

/* /proc/meminfo, in bytes. available falls back to free + buffers + cached
 * on kernels without MemAvailable. */
typedef struct sdw_meminfo {
  uint64_t total, available, free, buffers, cached, swap_total, swap_free;
} sdw_meminfo;
/* SDW_ERR_FORMAT without a MemTotal line. */
sdw_status sdw_host_parse_meminfo(const char *text, sdw_meminfo *out);

/* VmRSS of a /proc/PID/status text, in bytes. SDW_ERR_NOT_FOUND without a
 * VmRSS line (a kernel thread or a zombie). */
sdw_status sdw_host_parse_rss(const char *text, uint64_t *rss_bytes);

/* --- the readers ---------------------------------------------------------- */

/* Reads /proc/PID/status (pid <= 0: this process). SDW_ERR_NOT_FOUND when
 * the process is gone. */
sdw_status sdw_host_process_rss(pid_t pid, uint64_t *rss_bytes);

/* One host sample: call _sample periodically (every 0.5-2 s) on the same
 * sampler; loads are over the interval since the previous call (-1 on the
 * first call, which only primes the sampler). Zero-initialise the sampler. */
typedef struct sdw_host_sampler {
  bool primed;
  int ncpus;
  sdw_cpu_times prev_total;
  sdw_cpu_times prev[SDW_HOST_MAX_CPUS];
} sdw_host_sampler;

typedef struct sdw_host_sample {
  double cpu_load;                     /* all CPUs, [0,1] or -1 */
  int ncpus;                           /* CPUs seen in /proc/stat */
  double cpu_loads[SDW_HOST_MAX_CPUS]; /* per CPU, [0,1] or -1 */
  sdw_meminfo mem;
} sdw_host_sample;

/* Reads /proc/stat and /proc/meminfo. SDW_ERR_IO / SDW_ERR_FORMAT when /proc
 * is missing or odd (the panel then says so). */
sdw_status sdw_host_sample_read(sdw_host_sampler *s, sdw_host_sample *out);

#ifdef __cplusplus
}
#endif
#endif
