/* A stand-in for libnvidia-ml.so.1 with known answers, for
 * tests/test_tui_devices.c (compiled there with `cc -shared` at run time).
 * Signatures follow nvml.h: status int (0 success, 3 not supported,
 * 9 driver not loaded, 15 GPU is lost), devices are opaque pointers.
 *
 * Three GPUs are listed; the third cannot be opened. GPU 0 answers
 * everything; GPU 1 does not support power readings and reports itself
 * lost for utilisation. FAKE_NVML_INIT_FAIL=1 makes nvmlInit_v2 fail as
 * it does when the kernel module is not loaded. */
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned int gpu, memory;
} util_t;
typedef struct {
  unsigned long long total, free, used;
} mem_t;

static int devs[3];

int nvmlInit_v2(void) {
  const char *f = getenv("FAKE_NVML_INIT_FAIL");
  return f && *f == '1' ? 9 : 0;
}
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) {
  return r == 9 ? "Driver Not Loaded" : r == 3 ? "Not Supported" : r == 15 ? "GPU is lost" : "?";
}
int nvmlDeviceGetCount_v2(unsigned int *n) {
  *n = 3;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **d) {
  if (i >= 2) return 4; /* NVML_ERROR_NO_PERMISSION */
  *d = &devs[i];
  return 0;
}
static int which(void *d) { return (int)((int *)d - devs); }
int nvmlDeviceGetName(void *d, char *name, unsigned int len) {
  strncpy(name, which(d) == 0 ? "Fake H100 80GB HBM3" : "Fake L4", len);
  return 0;
}
int nvmlDeviceGetUtilizationRates(void *d, util_t *u) {
  if (which(d) == 1) return 15;
  u->gpu = 37;
  u->memory = 12;
  return 0;
}
int nvmlDeviceGetMemoryInfo(void *d, mem_t *m) {
  m->total = which(d) == 0 ? 85520809984ull : 24152899584ull;
  m->used = which(d) == 0 ? 10737418240ull : 1048576ull;
  m->free = m->total - m->used;
  return 0;
}
int nvmlDeviceGetTemperature(void *d, int sensor, unsigned int *t) {
  if (sensor != 0) return 2; /* invalid argument */
  *t = which(d) == 0 ? 55 : 41;
  return 0;
}
int nvmlDeviceGetPowerUsage(void *d, unsigned int *mw) {
  if (which(d) == 1) return 3;
  *mw = 123456;
  return 0;
}
int nvmlDeviceGetEnforcedPowerLimit(void *d, unsigned int *mw) {
  if (which(d) == 1) return 3;
  *mw = 700000;
  return 0;
}
int nvmlDeviceGetClockInfo(void *d, int type, unsigned int *mhz) {
  (void)d;
  static const unsigned int clocks[3] = {1980, 1755, 2619}; /* graphics, SM, memory */
  if (type < 0 || type > 2) return 2;
  *mhz = clocks[type];
  return 0;
}
