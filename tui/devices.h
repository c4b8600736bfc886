/* GPUs for the Devices panel, through NVML loaded at run time.
 *
 * Like nvtop, the binary never links libnvidia-ml: sdw_gpus_open dlopen()s
 * "libnvidia-ml.so.1" and looks up nvmlInit_v2, nvmlDeviceGetCount_v2,
 * nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetName, ...GetUtilizationRates,
 * ...GetMemoryInfo, ...GetTemperature, ...GetPowerUsage,
 * ...GetEnforcedPowerLimit, ...GetClockInfo and nvmlShutdown. A machine
 * without the library or the driver (this one) gets a handle with zero GPUs
 * and a reason such as "no NVIDIA driver (libnvidia-ml.so.1: cannot open
 * shared object file)": never a crash, never an error status. A query that
 * a GPU does not support (power on some boards) leaves its field marked
 * invalid rather than failing the others.
 *
 * Host CPU/RAM: tui/host.h; histories and sparklines: tui/sparkline.h (both
 * included here, so the panel needs only this header). No curses.
 */
#ifndef SDW_TUI_DEVICES_H
#define SDW_TUI_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "tui/host.h"
#include "tui/sparkline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which fields of sdw_gpu_info hold a value (bit set) this sample. */
enum {
  SDW_GPU_HAS_UTIL = 1u << 0,
  SDW_GPU_HAS_MEMORY = 1u << 1,
  SDW_GPU_HAS_TEMP = 1u << 2,
  SDW_GPU_HAS_POWER = 1u << 3,
  SDW_GPU_HAS_POWER_LIMIT = 1u << 4,
  SDW_GPU_HAS_CLOCKS = 1u << 5
};

typedef struct sdw_gpu_info {
  int index;
  char name[96];
  unsigned valid;                /* SDW_GPU_HAS_* */
  unsigned util_gpu, util_mem;   /* percent of the last sample period */
  uint64_t mem_used, mem_total;  /* bytes */
  int temp_c;                    /* GPU core, degrees Celsius */
  double power_w, power_limit_w; /* watts */
  unsigned clock_graphics_mhz, clock_sm_mhz, clock_mem_mhz;
} sdw_gpu_info;

typedef struct sdw_gpus sdw_gpus; /* opaque: the library handle and device handles */

/* Opens NVML from library (NULL: "libnvidia-ml.so.1"; tests pass a name
 * that does not exist). Always succeeds unless out of memory: check
 * sdw_gpus_count and sdw_gpus_reason. *out is owned by the caller
 * (sdw_gpus_close). */
sdw_status sdw_gpus_open(const char *library, sdw_gpus **out);
/* The GPUs found (0 without NVML or driver). */
int sdw_gpus_count(const sdw_gpus *g);
/* Why there are no GPUs ("no NVIDIA driver (...)", "NVML: ... ", "no GPUs
 * found"), or "" when there are some. Valid until _close. */
const char *sdw_gpus_reason(const sdw_gpus *g);
/* Samples GPU index (0 <= index < count): fills what NVML answers, marks
 * the rest invalid. SDW_ERR_DEVICE only when the device handle itself is
 * lost (GPU fallen off the bus); the message says so. */
sdw_status sdw_gpus_query(sdw_gpus *g, int index, sdw_gpu_info *out);
/* nvmlShutdown and dlclose; NULL is a no-op. */
void sdw_gpus_close(sdw_gpus *g);

#ifdef __cplusplus
}
#endif
#endif
