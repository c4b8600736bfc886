/* What the CUDA side of this build can report without touching engine state:
 * library versions compiled in and linked, and the devices visible at run
 * time. Plain C interface; implemented in kernels/cuda/device_info.cu. */
#ifndef SDW_KERNELS_CUDA_INFO_H
#define SDW_KERNELS_CUDA_INFO_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_CUDA_MAX_DEVICES = 16 };

typedef struct sdw_cuda_device_info {
  char name[256];
  int major, minor; /* compute capability */
  size_t total_memory;
  int multiprocessors;
} sdw_cuda_device_info;

typedef struct sdw_cuda_info {
  int runtime_version;    /* cudaRuntimeGetVersion, e.g. 13000 */
  int driver_version;     /* 0 when no driver is installed */
  int cublas_version;     /* cublasGetProperty major*10000+minor*100+patch */
  size_t cudnn_version;   /* cudnnGetVersion */
  int nccl_version;       /* ncclGetVersion */
  int device_count;       /* 0 when none */
  char device_error[256]; /* why there are none ("no CUDA driver", ...), or "" */
  sdw_cuda_device_info devices[SDW_CUDA_MAX_DEVICES];
} sdw_cuda_info;

/* Fills *info; never fails (a missing driver is reported in device_error). */
void sdw_cuda_query_info(sdw_cuda_info *info);

#ifdef __cplusplus
}
#endif
#endif
