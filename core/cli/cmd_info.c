/* `sdw info`: version, compiled-in backends, library versions, CPU features
 * and the devices found at run time. Exit 0 whether or not a GPU exists. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/cli/cli.h"
#include "kernels/ops.h"
#ifdef SDW_HAVE_CUDA
#include "kernels/cuda/cuda_info.h"
#endif
#ifndef SDW_CUDA_OFF_REASON
#define SDW_CUDA_OFF_REASON "CUDA=0"
#endif

/* OpenBLAS's own introspection (declared here: cblas.h differs by flavour). */
char *openblas_get_config(void);
char *openblas_get_corename(void);
int openblas_get_num_threads(void);

static void cpu_model(char *buf, size_t size) {
  snprintf(buf, size, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) == 0) {
      char *colon = strchr(line, ':');
      if (colon) {
        colon += 2;
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(buf, size, "%s", colon);
      }
      break;
    }
  }
  fclose(f);
}

static void print_cpu_features(void) {
  __builtin_cpu_init();
  printf("  features:   ");
  int any = 0;
#define FEATURE(name)                                                                              \
  if (__builtin_cpu_supports(name)) printf("%s%s", any++ ? " " : "", name)
  FEATURE("avx2");
  FEATURE("fma");
  FEATURE("avx512f");
  FEATURE("avx512bw");
  FEATURE("avx512vnni");
  FEATURE("avx512bf16");
#undef FEATURE
  printf("%s\n", any ? "" : "(baseline x86-64)");
}

int sdw_cmd_info(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    printf("usage: sdw info\n\nPrints the version, the compiled-in backends, the versions of the\n"
           "libraries in use and the devices found at run time.\n");
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr, "sdw: info takes no arguments ('%s' given)\n", argv[1]);
    return 2;
  }
  char model[256];
  cpu_model(model, sizeof model);
  printf("sdw %s\n", SDW_VERSION);
  printf("backends:     cpu%s\n", sdw_backend_cuda() ? " cuda" : "");
#ifdef SDW_HAVE_CUDA
  if (!sdw_backend_cuda())
    printf("              (CUDA libraries linked for device queries; the CUDA op backend is not "
           "built yet)\n");
#endif
  printf("cpu:\n");
  printf("  model:      %s\n", model);
  print_cpu_features();
  printf("  openmp:     %d threads\n", omp_get_max_threads());
  printf("  blas:       %s (core %s, %d threads)\n", openblas_get_config(), openblas_get_corename(),
         openblas_get_num_threads());
#ifdef SDW_HAVE_CUDA
  sdw_cuda_info cuda;
  sdw_cuda_query_info(&cuda);
  printf("cuda:\n");
  printf("  runtime:    %d.%d\n", cuda.runtime_version / 1000, cuda.runtime_version % 1000 / 10);
  if (cuda.driver_version)
    printf("  driver:     %d.%d\n", cuda.driver_version / 1000, cuda.driver_version % 1000 / 10);
  else
    printf("  driver:     none\n");
  printf("  cublas:     %d.%d.%d\n", cuda.cublas_version / 10000, cuda.cublas_version / 100 % 100,
         cuda.cublas_version % 100);
  printf("  cudnn:      %zu.%zu.%zu\n", cuda.cudnn_version / 10000, cuda.cudnn_version / 100 % 100,
         cuda.cudnn_version % 100);
  printf("  nccl:       %d.%d.%d\n", cuda.nccl_version / 10000, cuda.nccl_version / 100 % 100,
         cuda.nccl_version % 100);
  printf("devices:\n");
  printf("  cpu:        %s\n", model);
  if (cuda.device_count == 0 && !cuda.driver_version)
    printf("  gpu:        none found (no NVIDIA driver is installed); sdw runs on the CPU\n");
  else if (cuda.device_count == 0)
    printf("  gpu:        none found (%s); sdw runs on the CPU\n",
           cuda.device_error[0] ? cuda.device_error : "no CUDA device");
  for (int i = 0; i < cuda.device_count; i++)
    printf("  cuda:%d:     %s, sm_%d%d, %d SMs, %.1f GiB\n", i, cuda.devices[i].name,
           cuda.devices[i].major, cuda.devices[i].minor, cuda.devices[i].multiprocessors,
           cuda.devices[i].total_memory / 1073741824.0);
#else
  printf("cuda:         not compiled in (%s)\n", SDW_CUDA_OFF_REASON);
  printf("devices:\n");
  printf("  cpu:        %s\n", model);
  printf("  gpu:        none (this build has no CUDA backend); sdw runs on the CPU\n");
#endif
  return 0;
}
