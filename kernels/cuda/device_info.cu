/* Library versions and device discovery for `sdw info`. Runs on machines
 * without a driver: every call's error is turned into a sentence. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_info.h"

extern "C" void sdw_cuda_query_info(sdw_cuda_info *info) {
  memset(info, 0, sizeof *info);
  cudaRuntimeGetVersion(&info->runtime_version);
  if (cudaDriverGetVersion(&info->driver_version) != cudaSuccess) info->driver_version = 0;
  int major = 0, minor = 0, patch = 0;
  cublasGetProperty(MAJOR_VERSION, &major);
  cublasGetProperty(MINOR_VERSION, &minor);
  cublasGetProperty(PATCH_LEVEL, &patch);
  info->cublas_version = major * 10000 + minor * 100 + patch;
  info->cudnn_version = cudnnGetVersion();
  ncclGetVersion(&info->nccl_version);

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    snprintf(info->device_error, sizeof info->device_error, "%s", cudaGetErrorString(err));
    cudaGetLastError(); /* clear the sticky error */
    return;
  }
  if (count > SDW_CUDA_MAX_DEVICES) count = SDW_CUDA_MAX_DEVICES;
  for (int i = 0; i < count; i++) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    sdw_cuda_device_info *d = &info->devices[info->device_count++];
    snprintf(d->name, sizeof d->name, "%s", prop.name);
    d->major = prop.major;
    d->minor = prop.minor;
    d->total_memory = prop.totalGlobalMem;
    d->multiprocessors = prop.multiProcessorCount;
  }
}
