/* Philox normal / uniform fills: one thread per block of 4 stream elements
 * (grid-stride), the math from core/base/philox.h so the bits match the CPU. */
#include <cuda_runtime.h>

#include "core/base/philox.h"
#include "core/base/status.h"
#include "kernels/cuda/rng_fill.h"

namespace {

enum { kThreads = 256, kMaxGrid = 65536 };

template <bool kNormal>
__global__ void rng_fill_kernel(float *out, uint64_t n, uint64_t seed, uint64_t subsequence,
                                uint64_t offset, uint64_t first_block, uint64_t blocks) {
  uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
  for (uint64_t t = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; t < blocks; t += stride) {
    uint64_t block = first_block + t;
    float v[4];
    if (kNormal)
      sdw_philox_normal4(seed, subsequence, block, v);
    else
      sdw_philox_uniform4(seed, subsequence, block, v);
#pragma unroll
    for (int lane = 0; lane < 4; lane++) {
      uint64_t index = block * 4 + (uint64_t)lane;
      if (index >= offset && index - offset < n) out[index - offset] = v[lane];
    }
  }
}

template <bool kNormal>
sdw_status rng_fill(const char *what, float *out, size_t n, uint64_t seed, uint64_t subsequence,
                    uint64_t offset, void *stream) {
  if (n == 0) return SDW_OK;
  if (offset > UINT64_MAX - (n - 1))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: offset %llu + %zu overflows", what,
                    (unsigned long long)offset, n);
  uint64_t first = offset / 4, last = (offset + (n - 1)) / 4;
  uint64_t blocks = last - first + 1;
  uint64_t grid = (blocks + kThreads - 1) / kThreads;
  if (grid > kMaxGrid) grid = kMaxGrid;
  rng_fill_kernel<kNormal><<<(unsigned)grid, kThreads, 0, (cudaStream_t)stream>>>(
      out, (uint64_t)n, seed, subsequence, offset, first, blocks);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return sdw_fail(SDW_ERR_DEVICE, "%s of %zu values failed to launch: %s", what, n,
                    cudaGetErrorString(err));
  return SDW_OK;
}

} // namespace

extern "C" sdw_status sdw_cuda_fill_normal_at(float *device_out, size_t n, uint64_t seed,
                                              uint64_t subsequence, uint64_t offset, void *stream) {
  return rng_fill<true>("cuda normal fill", device_out, n, seed, subsequence, offset, stream);
}

extern "C" sdw_status sdw_cuda_fill_normal(float *device_out, size_t n, uint64_t seed,
                                           uint64_t subsequence, void *stream) {
  return rng_fill<true>("cuda normal fill", device_out, n, seed, subsequence, 0, stream);
}

extern "C" sdw_status sdw_cuda_fill_uniform_at(float *device_out, size_t n, uint64_t seed,
                                               uint64_t subsequence, uint64_t offset,
                                               void *stream) {
  return rng_fill<false>("cuda uniform fill", device_out, n, seed, subsequence, offset, stream);
}
