/* The devices panel: per GPU utilisation, memory, temperature, power and
 * clocks (NVML, see devices.h), the host's CPU load and RAM, the job's RSS;
 * plain numbers and sparklines of the recent history. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tui/theme.h"
#include "tui/view.h"

void sdw_tui_devices_init(sdw_tui_devices *d, const char *nvml_library) {
  memset(d, 0, sizeof *d);
  if (sdw_gpus_open(nvml_library, &d->gpus) != SDW_OK) d->gpus = NULL;
  d->ngpu = d->gpus ? sdw_gpus_count(d->gpus) : 0;
  if (d->ngpu > SDW_TUI_MAX_GPUS) d->ngpu = SDW_TUI_MAX_GPUS;
}

void sdw_tui_devices_free(sdw_tui_devices *d) {
  sdw_gpus_close(d->gpus);
  d->gpus = NULL;
  d->ngpu = 0;
}

void sdw_tui_devices_sample(sdw_tui_devices *d, long job_pid) {
  for (int i = 0; i < d->ngpu; i++) {
    if (sdw_gpus_query(d->gpus, i, &d->gpu[i]) != SDW_OK) d->gpu[i].valid = 0;
    sdw_gpu_info *g = &d->gpu[i];
    sdw_ring_push(&d->gpu_util[i], g->valid & SDW_GPU_HAS_UTIL ? (float)g->util_gpu : NAN);
    sdw_ring_push(&d->gpu_mem[i], g->valid & SDW_GPU_HAS_MEMORY && g->mem_total
                                      ? (float)(100.0 * (double)g->mem_used / (double)g->mem_total)
                                      : NAN);
  }
  d->host_ok = sdw_host_sample_read(&d->sampler, &d->host) == SDW_OK;
  if (!d->host_ok) {
    snprintf(d->host_error, sizeof d->host_error, "%s", sdw_last_error());
  } else {
    sdw_ring_push(&d->cpu, d->host.cpu_load >= 0 ? (float)(100 * d->host.cpu_load) : NAN);
    const sdw_meminfo *m = &d->host.mem;
    sdw_ring_push(&d->ram,
                  m->total ? (float)(100.0 * (double)(m->total - m->available) / (double)m->total)
                           : NAN);
  }
  d->job_pid = job_pid;
  d->job_rss = 0;
  if (job_pid > 0 && sdw_host_process_rss((pid_t)job_pid, &d->job_rss) != SDW_OK) d->job_rss = 0;
}

static double gib(uint64_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

/* "label  value  sparkline" where the sparkline takes what is left. */
static void spark_row(sdw_tui_grid *g, sdw_tui_rect in, int y, const char *label, const char *value,
                      const sdw_ring *ring, uint8_t role) {
  int x = in.x + 1;
  sdw_tui_grid_printf(g, in, x, y, 10, SDW_ROLE_DIM, "%-10s", label);
  x += 10;
  int vw = sdw_tui_grid_printf(g, in, x, y, in.x + in.w - x, role, "%s", value);
  x += vw + 1;
  int sw = in.x + in.w - 1 - x;
  if (sw >= 4 && ring) {
    if (sw > 120) sw = 120;
    char spark[3 * 120 + 1];
    sdw_ring_sparkline(ring, 0, 100, sw, spark, sizeof spark);
    sdw_tui_grid_text(g, in, x, y, sw, SDW_ROLE_CURVE_OTHER, spark);
  }
}

void sdw_panel_devices_draw(sdw_tui_grid *g, sdw_tui_rect r, const sdw_tui_view *v,
                            const sdw_run_model *m, bool focused) {
  (void)m;
  sdw_tui_rect in = sdw_panel_frame(g, r, "3 Devices", focused);
  if (in.w <= 0 || in.h <= 0) return;
  const sdw_tui_devices *d = v->devices;
  if (!d) {
    sdw_tui_grid_text(g, in, in.x + 1, in.y, in.w - 2, SDW_ROLE_DIM, "not sampled yet");
    return;
  }
  /* Rows are built top to bottom and scrolled by devices_scroll. */
  int row = -v->devices_scroll;
  char value[160];
#define ROW_Y   (in.y + row)
#define VISIBLE (row >= 0 && row < in.h)
  if (d->ngpu == 0) {
    if (VISIBLE)
      sdw_tui_grid_printf(g, in, in.x + 1, ROW_Y, in.w - 2, SDW_ROLE_DIM, "GPU: %s",
                          d->gpus ? sdw_gpus_reason(d->gpus) : "NVML not loaded");
    row++;
  }
  for (int i = 0; i < d->ngpu; i++) {
    const sdw_gpu_info *gi = &d->gpu[i];
    if (VISIBLE) {
      int n = snprintf(value, sizeof value, "GPU %d %s", gi->index, gi->name);
      if (gi->valid & SDW_GPU_HAS_TEMP)
        n += snprintf(value + n, sizeof value - (size_t)n, "  %d C", gi->temp_c);
      if (gi->valid & SDW_GPU_HAS_POWER)
        n += snprintf(value + n, sizeof value - (size_t)n, "  %.0f W", gi->power_w);
      if (gi->valid & SDW_GPU_HAS_POWER_LIMIT)
        n += snprintf(value + n, sizeof value - (size_t)n, " / %.0f W", gi->power_limit_w);
      if (gi->valid & SDW_GPU_HAS_CLOCKS)
        snprintf(value + n, sizeof value - (size_t)n, "  %u/%u MHz", gi->clock_sm_mhz,
                 gi->clock_mem_mhz);
      sdw_tui_grid_text(g, in, in.x + 1, ROW_Y, in.w - 2, SDW_ROLE_TITLE, value);
    }
    row++;
    if (VISIBLE) {
      if (gi->valid & SDW_GPU_HAS_UTIL)
        snprintf(value, sizeof value, "%3u%%", gi->util_gpu);
      else
        snprintf(value, sizeof value, "  - ");
      spark_row(g, in, ROW_Y, " util", value, &d->gpu_util[i], SDW_ROLE_NORMAL);
    }
    row++;
    if (VISIBLE) {
      if (gi->valid & SDW_GPU_HAS_MEMORY)
        snprintf(value, sizeof value, "%.1f/%.1f GiB", gib(gi->mem_used), gib(gi->mem_total));
      else
        snprintf(value, sizeof value, "-");
      spark_row(g, in, ROW_Y, " memory", value, &d->gpu_mem[i], SDW_ROLE_NORMAL);
    }
    row++;
  }
  if (!d->host_ok) {
    if (VISIBLE)
      sdw_tui_grid_printf(g, in, in.x + 1, ROW_Y, in.w - 2, SDW_ROLE_WARN, "host: %s",
                          d->host_error[0] ? d->host_error : "not sampled yet");
    return;
  }
  if (VISIBLE) {
    if (d->host.cpu_load >= 0)
      snprintf(value, sizeof value, "%3.0f%% of %d", 100 * d->host.cpu_load, d->host.ncpus);
    else
      snprintf(value, sizeof value, "  - of %d", d->host.ncpus);
    spark_row(g, in, ROW_Y, "CPU", value, &d->cpu, SDW_ROLE_NORMAL);
  }
  row++;
  const sdw_meminfo *mi = &d->host.mem;
  if (VISIBLE) {
    snprintf(value, sizeof value, "%.1f/%.1f GiB", gib(mi->total - mi->available), gib(mi->total));
    spark_row(g, in, ROW_Y, "RAM", value, &d->ram, SDW_ROLE_NORMAL);
  }
  row++;
  if (d->job_pid > 0) {
    if (VISIBLE) {
      if (d->job_rss)
        snprintf(value, sizeof value, "pid %ld  RSS %.2f GiB", d->job_pid, gib(d->job_rss));
      else
        snprintf(value, sizeof value, "pid %ld  (not on this host or gone)", d->job_pid);
      spark_row(g, in, ROW_Y, "job", value, NULL, SDW_ROLE_NORMAL);
    }
    row++;
  }
  /* Per-CPU loads, several to a row, when there is room. */
  if (d->host.ncpus > 1 && row >= 0 && row < in.h) {
    int x = in.x + 1;
    for (int c = 0; c < d->host.ncpus; c++) {
      char cell[24];
      double l = d->host.cpu_loads[c];
      int n = l >= 0 ? snprintf(cell, sizeof cell, "cpu%d %3.0f%% ", c, 100 * l)
                     : snprintf(cell, sizeof cell, "cpu%d   - ", c);
      if (x + n > in.x + in.w - 1) {
        row++, x = in.x + 1;
        if (!VISIBLE) break;
      }
      sdw_tui_grid_text(g, in, x, ROW_Y, n, SDW_ROLE_DIM, cell);
      x += n;
    }
  }
#undef ROW_Y
#undef VISIBLE
}
