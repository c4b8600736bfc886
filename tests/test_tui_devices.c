/* The Devices panel's data: NVML loaded at run time (absent on this machine:
 * a clear reason, no crash), /proc parsing on fixture text with hand-computed
 * expectations, the live /proc readers, and the sparkline renderer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/test.h"
#include "tui/devices.h"

/* --- NVML --------------------------------------------------------------------- */

SDW_TEST(tui_devices_missing_nvml_library) {
  sdw_gpus *g = NULL;
  CHECK_OK(sdw_gpus_open("libsdw-no-such-nvml.so.1", &g));
  REQUIRE(g != NULL);
  CHECK(sdw_gpus_count(g) == 0);
  const char *why = sdw_gpus_reason(g);
  CHECK_MSG(strncmp(why, "no NVIDIA driver (", 18) == 0, "reason: %s", why);
  CHECK_MSG(strstr(why, "libsdw-no-such-nvml.so.1") != NULL, "reason names the library: %s", why);
  sdw_gpus_close(g);
  sdw_gpus_close(NULL); /* a no-op */
}

SDW_TEST(tui_devices_library_without_nvml_symbols) {
  /* a real shared library that is not NVML: loads, but has no nvmlInit_v2 */
  sdw_gpus *g = NULL;
  CHECK_OK(sdw_gpus_open("libz.so.1", &g));
  REQUIRE(g != NULL);
  CHECK(sdw_gpus_count(g) == 0);
  CHECK_MSG(strstr(sdw_gpus_reason(g), "no usable NVIDIA driver") != NULL, "reason: %s",
            sdw_gpus_reason(g));
  sdw_gpus_close(g);
}

SDW_TEST(tui_devices_default_library) {
  /* This machine has no driver: zero GPUs and a reason. On a GPU machine the
   * same test queries every GPU and checks the values are plausible. */
  sdw_gpus *g = NULL;
  CHECK_OK(sdw_gpus_open(NULL, &g));
  REQUIRE(g != NULL);
  int n = sdw_gpus_count(g);
  if (n == 0) {
    CHECK(sdw_gpus_reason(g)[0] != '\0');
  } else {
    CHECK(sdw_gpus_reason(g)[0] == '\0');
    for (int i = 0; i < n; i++) {
      sdw_gpu_info info;
      CHECK_OK(sdw_gpus_query(g, i, &info));
      CHECK(info.index == i && info.name[0] != '\0');
      if (info.valid & SDW_GPU_HAS_MEMORY)
        CHECK(info.mem_total > 0 && info.mem_used <= info.mem_total);
      if (info.valid & SDW_GPU_HAS_UTIL) CHECK(info.util_gpu <= 100 && info.util_mem <= 100);
      if (info.valid & SDW_GPU_HAS_TEMP) CHECK(info.temp_c > 0 && info.temp_c < 130);
      if (info.valid & SDW_GPU_HAS_POWER) CHECK(info.power_w >= 0 && info.power_w < 2000);
    }
  }
  sdw_gpus_close(g);
}

/* Builds tests/data/tui/fake_nvml.c into a shared library in the test's
 * temporary directory; false (test skipped, said so) without a C compiler. */
static bool build_fake_nvml(char *lib, size_t cap) {
  snprintf(lib, cap, "%s/libfake-nvml.so", sdw_test_tmpdir());
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O0 -o '%s' '%s/tui/fake_nvml.c' 2>&1", lib,
           sdw_test_data_dir());
  if (system(cmd) != 0) {
    printf("  (no C compiler: the fake NVML library was not built, test skipped)\n");
    return false;
  }
  return true;
}

SDW_TEST(tui_devices_fake_nvml_values) {
  char lib[1024];
  if (!build_fake_nvml(lib, sizeof lib)) return;
  unsetenv("FAKE_NVML_INIT_FAIL");
  sdw_gpus *g = NULL;
  CHECK_OK(sdw_gpus_open(lib, &g));
  REQUIRE(g != NULL);
  /* three listed, the third cannot be opened: two usable, no reason */
  CHECK_MSG(sdw_gpus_count(g) == 2, "count %d (%s)", sdw_gpus_count(g), sdw_gpus_reason(g));
  CHECK(sdw_gpus_reason(g)[0] == '\0');
  if (sdw_gpus_count(g) == 2) {
    sdw_gpu_info a, b;
    CHECK_OK(sdw_gpus_query(g, 0, &a));
    CHECK(strcmp(a.name, "Fake H100 80GB HBM3") == 0 && a.index == 0);
    CHECK(a.valid == (SDW_GPU_HAS_UTIL | SDW_GPU_HAS_MEMORY | SDW_GPU_HAS_TEMP | SDW_GPU_HAS_POWER |
                      SDW_GPU_HAS_POWER_LIMIT | SDW_GPU_HAS_CLOCKS));
    CHECK(a.util_gpu == 37 && a.util_mem == 12);
    CHECK(a.mem_total == 85520809984ull && a.mem_used == 10737418240ull);
    CHECK(a.temp_c == 55);
    /* milliwatts to watts: 123456 mW = 123.456 W (exact to 1e-9) */
    CHECK(fabs(a.power_w - 123.456) < 1e-9 && fabs(a.power_limit_w - 700.0) < 1e-9);
    CHECK(a.clock_graphics_mhz == 1980 && a.clock_sm_mhz == 1755 && a.clock_mem_mhz == 2619);
    /* GPU 1: power unsupported and utilisation "lost": only those fields go */
    CHECK_OK(sdw_gpus_query(g, 1, &b));
    CHECK(strcmp(b.name, "Fake L4") == 0);
    CHECK(b.valid == (SDW_GPU_HAS_MEMORY | SDW_GPU_HAS_TEMP | SDW_GPU_HAS_CLOCKS));
    CHECK(b.temp_c == 41 && b.mem_used == 1048576ull);
  }
  sdw_gpus_close(g);

  /* the kernel module not loaded: nvmlInit_v2 fails, zero GPUs, NVML's words */
  setenv("FAKE_NVML_INIT_FAIL", "1", 1);
  CHECK_OK(sdw_gpus_open(lib, &g));
  REQUIRE(g != NULL);
  CHECK(sdw_gpus_count(g) == 0);
  CHECK_MSG(strcmp(sdw_gpus_reason(g), "no NVIDIA driver (NVML: Driver Not Loaded)") == 0,
            "reason: %s", sdw_gpus_reason(g));
  sdw_gpus_close(g);
  unsetenv("FAKE_NVML_INIT_FAIL");
}

/* --- /proc parsing -------------------------------------------------------------- */

/* A /proc/stat of a 2-CPU machine (Linux 6.1 layout: 10 fields per cpu line). */
static const char k_stat_a[] = "cpu  1000 20 300 5000 100 10 5 0 0 0\n"
                               "cpu0 500 10 150 2500 50 5 3 0 0 0\n"
                               "cpu1 500 10 150 2500 50 5 2 0 0 0\n"
                               "intr 123456 0 9 0 0\n"
                               "ctxt 987654\n"
                               "btime 1700000000\n"
                               "processes 4242\n"
                               "procs_running 2\n";
/* 100 jiffies later on each CPU: cpu0 fully busy (user), cpu1 idle but
 * for 10 jiffies of system time and 20 of iowait. */
static const char k_stat_b[] = "cpu  1100 20 310 5070 120 10 5 0 0 0\n"
                               "cpu0 600 10 150 2500 50 5 3 0 0 0\n"
                               "cpu1 500 10 160 2570 70 5 2 0 0 0\n"
                               "intr 123999 0 9 0 0\n";

SDW_TEST(tui_host_parse_stat_fixture) {
  sdw_cpu_times total, per[4];
  int n = -1;
  CHECK_OK(sdw_host_parse_stat(k_stat_a, &total, per, 4, &n));
  CHECK(n == 2);
  CHECK(total.user == 1000 && total.nice == 20 && total.system == 300 && total.idle == 5000);
  CHECK(total.iowait == 100 && total.irq == 10 && total.softirq == 5 && total.steal == 0);
  CHECK(per[1].user == 500 && per[1].softirq == 2);
  sdw_cpu_times total_b, per_b[4];
  CHECK_OK(sdw_host_parse_stat(k_stat_b, &total_b, per_b, 4, &n));
  /* by hand: cpu0 delta all = 100, idle+iowait delta = 0 -> load 1.0;
   * cpu1 delta all = 10 + 70 + 20 = 100, idle+iowait delta = 90 -> 0.1;
   * total delta all = 100 + 10 + 70 + 20 = 200, idle+iowait = 90 -> 0.55.
   * Exact in binary up to one division: tolerance 1e-12. */
  CHECK(fabs(sdw_cpu_load(&per[0], &per_b[0]) - 1.0) < 1e-12);
  CHECK(fabs(sdw_cpu_load(&per[1], &per_b[1]) - 0.1) < 1e-12);
  CHECK(fabs(sdw_cpu_load(&total, &total_b) - 0.55) < 1e-12);
  /* no time passed, or counters going backwards: -1, not a bogus load */
  CHECK(sdw_cpu_load(&total, &total) == -1.0);
  CHECK(sdw_cpu_load(&total_b, &total) == -1.0);
}

SDW_TEST(tui_host_parse_stat_old_kernel_and_errors) {
  /* Linux 2.4: four fields only; the rest read as 0. CPUs beyond max are skipped. */
  sdw_cpu_times total, per[1];
  int n = -1;
  CHECK_OK(sdw_host_parse_stat("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpu1 9 9 9 9\n", &total, per, 1, &n));
  CHECK(total.user == 1 && total.idle == 4 && total.iowait == 0 && total.steal == 0);
  CHECK(n == 1 && per[0].system == 3);
  CHECK_OK(sdw_host_parse_stat("cpu 1 2 3 4\n", &total, NULL, 0, &n));
  CHECK(n == 0);
  CHECK(sdw_host_parse_stat("intr 1 2 3\ncpu0 1 2 3 4\n", &total, per, 1, &n) == SDW_ERR_FORMAT);
  CHECK(sdw_host_parse_stat("", &total, per, 1, &n) == SDW_ERR_FORMAT);
  CHECK(sdw_host_parse_stat("cpu x y\n", &total, per, 1, &n) == SDW_ERR_FORMAT);
}

SDW_TEST(tui_host_parse_meminfo_fixture) {
  static const char text[] = "MemTotal:       24576000 kB\n"
                             "MemFree:         1000000 kB\n"
                             "MemAvailable:   20000000 kB\n"
                             "Buffers:          200000 kB\n"
                             "SwapCached:            7 kB\n"
                             "Cached:          3000000 kB\n"
                             "SwapTotal:       2097148 kB\n"
                             "SwapFree:        2097000 kB\n"
                             "HugePages_Total:       0\n";
  sdw_meminfo m;
  CHECK_OK(sdw_host_parse_meminfo(text, &m));
  CHECK(m.total == 24576000ull * 1024);
  CHECK(m.free == 1000000ull * 1024);
  CHECK(m.available == 20000000ull * 1024);
  CHECK(m.buffers == 200000ull * 1024 && m.cached == 3000000ull * 1024);
  CHECK(m.swap_total == 2097148ull * 1024 && m.swap_free == 2097000ull * 1024);
  /* (SwapCached comes first: it must not be read as Cached) */
  /* before Linux 3.14: no MemAvailable -> free + buffers + cached */
  CHECK_OK(sdw_host_parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\n"
                                  "Cached: 300 kB\n",
                                  &m));
  CHECK(m.available == (100 + 20 + 300) * 1024ull);
  CHECK(sdw_host_parse_meminfo("MemFree: 100 kB\n", &m) == SDW_ERR_FORMAT);
}

SDW_TEST(tui_host_parse_rss_fixture) {
  uint64_t rss = 0;
  CHECK_OK(sdw_host_parse_rss("Name:\tsdw\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\n"
                              "RssAnon:\t  100000 kB\n",
                              &rss));
  CHECK(rss == 123456ull * 1024);
  /* a kernel thread has no VmRSS line */
  CHECK(sdw_host_parse_rss("Name:\tkthreadd\nState:\tS (sleeping)\n", &rss) == SDW_ERR_NOT_FOUND);
}

SDW_TEST(tui_host_live_proc) {
  uint64_t rss = 0;
  CHECK_OK(sdw_host_process_rss(0, &rss));
  CHECK(rss > 1024 * 1024); /* this test binary maps more than 1 MiB */
  uint64_t rss_pid = 0;
  CHECK_OK(sdw_host_process_rss(getpid(), &rss_pid));
  CHECK(rss_pid > 0);
  /* pid_max is at most 2^22 on Linux: this pid cannot exist */
  CHECK(sdw_host_process_rss(99999999, &rss) == SDW_ERR_NOT_FOUND);

  sdw_host_sampler *s = calloc(1, sizeof *s);
  sdw_host_sample *a = malloc(sizeof *a);
  REQUIRE(s && a);
  CHECK_OK(sdw_host_sample_read(s, a));
  CHECK(a->cpu_load == -1.0); /* the first call only primes */
  CHECK(a->ncpus >= 1);
  CHECK(a->mem.total > 0 && a->mem.available <= a->mem.total);
  /* burn some CPU so that jiffies pass (10 ms each at HZ=100) */
  volatile double x = 0;
  for (int i = 0; i < 30000000; i++)
    x += i * 1e-9;
  CHECK_OK(sdw_host_sample_read(s, a));
  CHECK_MSG(a->cpu_load == -1.0 || (a->cpu_load >= 0.0 && a->cpu_load <= 1.0), "load %g",
            a->cpu_load);
  for (int i = 0; i < a->ncpus; i++)
    CHECK(a->cpu_loads[i] == -1.0 || (a->cpu_loads[i] >= 0.0 && a->cpu_loads[i] <= 1.0));
  free(s);
  free(a);
}

/* --- ring and sparkline ------------------------------------------------------- */

SDW_TEST(tui_sparkline_levels) {
  char out[128];
  /* v = lo + k * (hi - lo) / 8 + a bit: floor(8 * frac) = k exactly */
  float v[8];
  for (int k = 0; k < 8; k++)
    v[k] = (float)k + 0.5f;
  size_t n = sdw_sparkline(v, 8, 0.0f, 8.0f, 8, out, sizeof out);
  CHECK(n == 24);
  CHECK_MSG(strcmp(out, "▁▂▃▄▅▆▇█") == 0, "got %s", out);
  /* clamping: below lo -> lowest, above hi and hi itself -> highest */
  float w[4] = {-5.0f, 0.0f, 100.0f, 8.0f};
  sdw_sparkline(w, 4, 0.0f, 8.0f, 4, out, sizeof out);
  CHECK_MSG(strcmp(out, "▁▁██") == 0, "got %s", out);
  /* utilisation on 0..100 */
  float u[5] = {0.0f, 12.5f, 50.0f, 87.5f, 100.0f};
  sdw_sparkline(u, 5, 0.0f, 100.0f, 5, out, sizeof out);
  CHECK_MSG(strcmp(out, "▁▂▅██") == 0, "got %s", out);
}

SDW_TEST(tui_sparkline_width_nan_and_auto_scale) {
  char out[128];
  float v[3] = {1.0f, NAN, 3.0f};
  /* wider than the data: right-aligned, padded with spaces; NaN is a space */
  size_t n = sdw_sparkline(v, 3, 0.0f, 4.0f, 5, out, sizeof out);
  CHECK_MSG(strcmp(out, "  ▃ ▇") == 0, "got '%s'", out);
  CHECK(n == strlen(out));
  /* narrower: the newest values */
  sdw_sparkline(v, 3, 0.0f, 4.0f, 1, out, sizeof out);
  CHECK_MSG(strcmp(out, "▇") == 0, "got '%s'", out);
  /* auto scale (lo >= hi): min..max of the values shown */
  float a[3] = {10.0f, 20.0f, 30.0f};
  sdw_sparkline(a, 3, 0.0f, 0.0f, 3, out, sizeof out);
  CHECK_MSG(strcmp(out, "▁▅█") == 0, "got '%s'", out); /* 20: floor(0.5 * 8) = 4 -> ▅ */
  float flat[3] = {7.0f, 7.0f, 7.0f};
  sdw_sparkline(flat, 3, 0.0f, 0.0f, 3, out, sizeof out);
  CHECK_MSG(strcmp(out, "▁▁▁") == 0, "got '%s'", out);
  /* empty data, zero width */
  CHECK(sdw_sparkline(NULL, 0, 0.0f, 1.0f, 2, out, sizeof out) == 2 && strcmp(out, "  ") == 0);
  CHECK(sdw_sparkline(a, 3, 0.0f, 1.0f, 0, out, sizeof out) == 0 && out[0] == '\0');
  /* a short buffer gets whole characters only */
  char small[8];
  n = sdw_sparkline(a, 3, 0.0f, 40.0f, 3, small, sizeof small);
  CHECK(n == 6 && strlen(small) == 6);
}

SDW_TEST(tui_ring_wraps_in_order) {
  sdw_ring *r = calloc(1, sizeof *r);
  REQUIRE(r);
  CHECK(isnan(sdw_ring_last(r)));
  for (int i = 0; i < SDW_RING_CAP + 37; i++)
    sdw_ring_push(r, (float)i);
  CHECK(r->count == SDW_RING_CAP);
  CHECK(sdw_ring_get(r, 0) == 37.0f); /* the oldest kept */
  CHECK(sdw_ring_get(r, SDW_RING_CAP - 1) == (float)(SDW_RING_CAP + 36));
  CHECK(sdw_ring_last(r) == (float)(SDW_RING_CAP + 36));
  bool ordered = true;
  for (int i = 1; i < r->count; i++)
    ordered &= sdw_ring_get(r, i) == sdw_ring_get(r, i - 1) + 1;
  CHECK(ordered);
  /* the ring's sparkline equals the array's over the same newest values */
  float tail[10];
  for (int i = 0; i < 10; i++)
    tail[i] = sdw_ring_get(r, r->count - 10 + i);
  char a[64], b[64];
  sdw_ring_sparkline(r, 0.0f, 0.0f, 10, a, sizeof a);
  sdw_sparkline(tail, 10, 0.0f, 0.0f, 10, b, sizeof b);
  CHECK_MSG(strcmp(a, b) == 0, "%s vs %s", a, b);
  free(r);
}
