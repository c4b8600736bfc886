/* GPUs through NVML loaded with dlopen at run time (see devices.h).
 *
 * The NVML types are declared here from the public ABI (nvml.h): status is
 * an int (0 = success), a device is an opaque pointer, and the structs below
 * match nvmlUtilization_t and nvmlMemory_t. No NVML header is needed to
 * build, as in nvtop. */
#include "tui/devices.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvml_return;
typedef void *nvml_device;
typedef struct nvml_utilization {
  unsigned int gpu, memory;
} nvml_utilization;
typedef struct nvml_memory {
  unsigned long long total, free, used;
} nvml_memory;

enum {
  NVML_SUCCESS = 0,
  NVML_ERROR_GPU_IS_LOST = 15,
  NVML_TEMPERATURE_GPU = 0,
  NVML_CLOCK_GRAPHICS = 0,
  NVML_CLOCK_SM = 1,
  NVML_CLOCK_MEM = 2,
  SDW_MAX_GPUS = 64
};

typedef struct nvml_api {
  nvml_return (*init)(void);
  nvml_return (*shutdown)(void);
  const char *(*error_string)(nvml_return);
  nvml_return (*count)(unsigned int *);
  nvml_return (*handle)(unsigned int, nvml_device *);
  nvml_return (*name)(nvml_device, char *, unsigned int);
  nvml_return (*utilization)(nvml_device, nvml_utilization *);
  nvml_return (*memory)(nvml_device, nvml_memory *);
  nvml_return (*temperature)(nvml_device, int, unsigned int *);
  nvml_return (*power)(nvml_device, unsigned int *);
  nvml_return (*power_limit)(nvml_device, unsigned int *);
  nvml_return (*clock)(nvml_device, int, unsigned int *);
} nvml_api;

struct sdw_gpus {
  void *lib; /* dlopen handle, NULL without NVML */
  bool initialised;
  nvml_api api;
  int count;
  nvml_device dev[SDW_MAX_GPUS];
  char names[SDW_MAX_GPUS][96];
  char reason[512];
};

static const char *nvml_error(const sdw_gpus *g, nvml_return r) {
  static _Thread_local char buf[32];
  if (g->api.error_string) {
    const char *s = g->api.error_string(r);
    if (s) return s;
  }
  snprintf(buf, sizeof buf, "error %d", r);
  return buf;
}

/* dlsym into a function pointer without the object/function pointer cast
 * that ISO C leaves undefined (POSIX guarantees the representation). */
static bool load_symbol(void *lib, const char *name, void *fn_ptr_slot) {
  void *sym = dlsym(lib, name);
  if (!sym) return false;
  memcpy(fn_ptr_slot, &sym, sizeof sym);
  return true;
}

sdw_status sdw_gpus_open(const char *library, sdw_gpus **out) {
  *out = NULL;
  sdw_gpus *g = calloc(1, sizeof *g);
  if (!g) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the GPU list");
  *out = g;
  const char *soname = library ? library : "libnvidia-ml.so.1";
  g->lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!g->lib) {
    const char *why = dlerror();
    snprintf(g->reason, sizeof g->reason, "no NVIDIA driver (%s)", why ? why : soname);
    return SDW_OK;
  }
  nvml_api *a = &g->api;
  /* the _v2 entry points exist since driver 325; nvtop uses the same */
  bool ok = load_symbol(g->lib, "nvmlInit_v2", &a->init) &&
            load_symbol(g->lib, "nvmlShutdown", &a->shutdown) &&
            load_symbol(g->lib, "nvmlDeviceGetCount_v2", &a->count) &&
            load_symbol(g->lib, "nvmlDeviceGetHandleByIndex_v2", &a->handle);
  load_symbol(g->lib, "nvmlErrorString", &a->error_string);
  load_symbol(g->lib, "nvmlDeviceGetName", &a->name);
  load_symbol(g->lib, "nvmlDeviceGetUtilizationRates", &a->utilization);
  load_symbol(g->lib, "nvmlDeviceGetMemoryInfo", &a->memory);
  load_symbol(g->lib, "nvmlDeviceGetTemperature", &a->temperature);
  load_symbol(g->lib, "nvmlDeviceGetPowerUsage", &a->power);
  load_symbol(g->lib, "nvmlDeviceGetEnforcedPowerLimit", &a->power_limit);
  load_symbol(g->lib, "nvmlDeviceGetClockInfo", &a->clock);
  if (!ok) {
    snprintf(g->reason, sizeof g->reason,
             "no usable NVIDIA driver (%s lacks nvmlInit_v2 / nvmlDeviceGetCount_v2; driver too "
             "old)",
             soname);
    return SDW_OK;
  }
  nvml_return r = a->init();
  if (r != NVML_SUCCESS) {
    snprintf(g->reason, sizeof g->reason, "no NVIDIA driver (NVML: %s)", nvml_error(g, r));
    return SDW_OK;
  }
  g->initialised = true;
  unsigned int n = 0;
  r = a->count(&n);
  if (r != NVML_SUCCESS) {
    snprintf(g->reason, sizeof g->reason, "NVML cannot count GPUs: %s", nvml_error(g, r));
    return SDW_OK;
  }
  for (unsigned int i = 0; i < n && g->count < SDW_MAX_GPUS; i++) {
    nvml_device d = NULL;
    /* a GPU we may not open (cgroup, MIG permissions) is left out, not fatal */
    if (a->handle(i, &d) != NVML_SUCCESS) continue;
    g->dev[g->count] = d;
    char *name = g->names[g->count];
    if (!a->name || a->name(d, name, sizeof g->names[0]) != NVML_SUCCESS)
      snprintf(name, sizeof g->names[0], "GPU %u", i);
    name[sizeof g->names[0] - 1] = '\0';
    g->count++;
  }
  if (g->count == 0)
    snprintf(g->reason, sizeof g->reason,
             n ? "NVML lists %u GPUs but none can be opened" : "no GPUs found", n);
  return SDW_OK;
}

int sdw_gpus_count(const sdw_gpus *g) { return g ? g->count : 0; }

const char *sdw_gpus_reason(const sdw_gpus *g) { return g ? g->reason : "no GPU list"; }

sdw_status sdw_gpus_query(sdw_gpus *g, int index, sdw_gpu_info *out) {
  SDW_ASSERT(g && index >= 0 && index < g->count);
  memset(out, 0, sizeof *out);
  out->index = index;
  snprintf(out->name, sizeof out->name, "%s", g->names[index]);
  nvml_device d = g->dev[index];
  const nvml_api *a = &g->api;
  bool lost = false; /* some query said the GPU is gone */
  nvml_return r;
  /* each query on its own: one that is unsupported leaves only its field */
  nvml_utilization u;
  if (a->utilization) {
    if ((r = a->utilization(d, &u)) == NVML_SUCCESS) {
      out->util_gpu = u.gpu;
      out->util_mem = u.memory;
      out->valid |= SDW_GPU_HAS_UTIL;
    }
    lost |= r == NVML_ERROR_GPU_IS_LOST;
  }
  nvml_memory m;
  if (a->memory) {
    if ((r = a->memory(d, &m)) == NVML_SUCCESS) {
      out->mem_used = m.used;
      out->mem_total = m.total;
      out->valid |= SDW_GPU_HAS_MEMORY;
    }
    lost |= r == NVML_ERROR_GPU_IS_LOST;
  }
  unsigned int v;
  if (a->temperature && a->temperature(d, NVML_TEMPERATURE_GPU, &v) == NVML_SUCCESS) {
    out->temp_c = (int)v;
    out->valid |= SDW_GPU_HAS_TEMP;
  }
  if (a->power && a->power(d, &v) == NVML_SUCCESS) { /* milliwatts */
    out->power_w = v / 1000.0;
    out->valid |= SDW_GPU_HAS_POWER;
  }
  if (a->power_limit && a->power_limit(d, &v) == NVML_SUCCESS) {
    out->power_limit_w = v / 1000.0;
    out->valid |= SDW_GPU_HAS_POWER_LIMIT;
  }
  unsigned int gr, sm, mem;
  if (a->clock && a->clock(d, NVML_CLOCK_GRAPHICS, &gr) == NVML_SUCCESS &&
      a->clock(d, NVML_CLOCK_SM, &sm) == NVML_SUCCESS &&
      a->clock(d, NVML_CLOCK_MEM, &mem) == NVML_SUCCESS) {
    out->clock_graphics_mhz = gr;
    out->clock_sm_mhz = sm;
    out->clock_mem_mhz = mem;
    out->valid |= SDW_GPU_HAS_CLOCKS;
  }
  if (lost && out->valid == 0)
    return sdw_fail(SDW_ERR_DEVICE, "GPU %d (%s) has fallen off the bus (NVML: %s)", index,
                    out->name, nvml_error(g, NVML_ERROR_GPU_IS_LOST));
  return SDW_OK;
}

void sdw_gpus_close(sdw_gpus *g) {
  if (!g) return;
  if (g->initialised && g->api.shutdown) g->api.shutdown();
  if (g->lib) dlclose(g->lib);
  free(g);
}
