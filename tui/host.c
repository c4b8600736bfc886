/* Host CPU load, memory and process RSS from /proc (see host.h). */
#include "tui/host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/fsutil.h"

/* Reads up to 8 unsigned decimal fields after the label; missing ones are 0.
 * Returns the count read. */
static int parse_fields(const char *p, uint64_t *f, int max) {
  int n = 0;
  for (; n < max; n++) {
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p < '0' || *p > '9') break;
    char *end;
    f[n] = strtoull(p, &end, 10);
    p = end;
  }
  for (int i = n; i < max; i++)
    f[i] = 0;
  return n;
}

static sdw_cpu_times times_from(const uint64_t *f) {
  sdw_cpu_times t = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]};
  return t;
}

sdw_status sdw_host_parse_stat(const char *text, sdw_cpu_times *total, sdw_cpu_times *per_cpu,
                               int max_cpus, int *ncpus) {
  bool have_total = false;
  int count = 0;
  memset(total, 0, sizeof *total);
  for (int i = 0; i < max_cpus; i++)
    memset(&per_cpu[i], 0, sizeof per_cpu[i]);
  for (const char *line = text; line && *line;) {
    const char *next = strchr(line, '\n');
    if (strncmp(line, "cpu", 3) == 0) {
      uint64_t f[8];
      const char *p = line + 3;
      if (*p == ' ' || *p == '\t') {
        if (parse_fields(p, f, 8) >= 4) {
          *total = times_from(f);
          have_total = true;
        }
      } else if (*p >= '0' && *p <= '9') {
        char *end;
        unsigned long id = strtoul(p, &end, 10);
        if ((*end == ' ' || *end == '\t') && parse_fields(end, f, 8) >= 4 &&
            id < (unsigned long)max_cpus) {
          per_cpu[id] = times_from(f);
          if ((int)id + 1 > count) count = (int)id + 1;
        }
      }
    }
    line = next ? next + 1 : NULL;
  }
  if (ncpus) *ncpus = count;
  if (!have_total) return sdw_fail(SDW_ERR_FORMAT, "/proc/stat: no aggregate \"cpu\" line");
  return SDW_OK;
}

static uint64_t all_of(const sdw_cpu_times *t) {
  return t->user + t->nice + t->system + t->idle + t->iowait + t->irq + t->softirq + t->steal;
}

double sdw_cpu_load(const sdw_cpu_times *prev, const sdw_cpu_times *cur) {
  uint64_t a0 = all_of(prev), a1 = all_of(cur);
  uint64_t i0 = prev->idle + prev->iowait, i1 = cur->idle + cur->iowait;
  if (a1 <= a0 || i1 < i0) return -1.0;
  double busy = 1.0 - (double)(i1 - i0) / (double)(a1 - a0);
  if (busy < 0.0) busy = 0.0; /* idle grew faster than the total: a counter glitch */
  return busy;
}

/* The value of "Key:   123 kB" lines; false when key is absent. */
static bool kb_field(const char *text, const char *key, uint64_t *bytes) {
  size_t klen = strlen(key);
  for (const char *line = text; line && *line;) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      char *end;
      const char *p = line + klen + 1;
      while (*p == ' ' || *p == '\t')
        p++;
      if (*p < '0' || *p > '9') return false;
      uint64_t v = strtoull(p, &end, 10);
      while (*end == ' ' || *end == '\t')
        end++;
      /* the kernel writes kB (KiB); a unitless value is a count, kept as is */
      *bytes = strncmp(end, "kB", 2) == 0 ? v * 1024 : v;
      return true;
    }
    const char *next = strchr(line, '\n');
    line = next ? next + 1 : NULL;
  }
  return false;
}

sdw_status sdw_host_parse_meminfo(const char *text, sdw_meminfo *out) {
  memset(out, 0, sizeof *out);
  if (!kb_field(text, "MemTotal", &out->total))
    return sdw_fail(SDW_ERR_FORMAT, "/proc/meminfo: no MemTotal line");
  kb_field(text, "MemFree", &out->free);
  kb_field(text, "Buffers", &out->buffers);
  kb_field(text, "Cached", &out->cached);
  kb_field(text, "SwapTotal", &out->swap_total);
  kb_field(text, "SwapFree", &out->swap_free);
  if (!kb_field(text, "MemAvailable", &out->available)) /* before Linux 3.14 */
    out->available = out->free + out->buffers + out->cached;
  return SDW_OK;
}

sdw_status sdw_host_parse_rss(const char *text, uint64_t *rss_bytes) {
  if (!kb_field(text, "VmRSS", rss_bytes))
    return sdw_fail(SDW_ERR_NOT_FOUND, "no VmRSS line (a kernel thread or a zombie)");
  return SDW_OK;
}

sdw_status sdw_host_process_rss(pid_t pid, uint64_t *rss_bytes) {
  char path[64];
  if (pid <= 0)
    snprintf(path, sizeof path, "/proc/self/status");
  else
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
  void *text;
  size_t size;
  sdw_status st = sdw_read_file(path, &text, &size);
  if (st == SDW_ERR_NOT_FOUND) return sdw_fail(st, "process %ld is gone", (long)pid);
  if (st != SDW_OK) return st;
  st = sdw_host_parse_rss(text, rss_bytes);
  if (st != SDW_OK) sdw_error_prefix("%s", path);
  free(text);
  return st;
}

sdw_status sdw_host_sample_read(sdw_host_sampler *s, sdw_host_sample *out) {
  void *text;
  size_t size;
  out->cpu_load = -1.0;
  out->ncpus = 0;
  for (int i = 0; i < SDW_HOST_MAX_CPUS; i++)
    out->cpu_loads[i] = -1.0;
  SDW_TRY(sdw_read_file("/proc/stat", &text, &size));
  sdw_cpu_times total, per[SDW_HOST_MAX_CPUS]; /* ~16 KiB on the stack */
  int ncpus = 0;
  sdw_status st = sdw_host_parse_stat(text, &total, per, SDW_HOST_MAX_CPUS, &ncpus);
  free(text);
  if (st != SDW_OK) return st;
  out->ncpus = ncpus;
  if (s->primed) {
    out->cpu_load = sdw_cpu_load(&s->prev_total, &total);
    for (int i = 0; i < ncpus && i < s->ncpus; i++)
      out->cpu_loads[i] = sdw_cpu_load(&s->prev[i], &per[i]);
  }
  s->prev_total = total;
  memcpy(s->prev, per, sizeof(per[0]) * (size_t)ncpus);
  s->ncpus = ncpus;
  s->primed = true;

  SDW_TRY(sdw_read_file("/proc/meminfo", &text, &size));
  st = sdw_host_parse_meminfo(text, &out->mem);
  free(text);
  return st;
}
