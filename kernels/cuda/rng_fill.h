/* Philox random fills on a CUDA device: the same streams, bit for bit, as
 * core/base/rng.h on the CPU (element i of stream (seed, subsequence) is
 * defined in core/base/philox.h). Implemented in kernels/cuda/rng_fill.cu;
 * only in builds with CUDA (SDW_HAVE_CUDA).
 *
 * device_out must be device memory for n floats; stream is a cudaStream_t
 * (NULL: the default stream). The launch is asynchronous; launch errors
 * (and errors left pending by earlier asynchronous work) come back as
 * SDW_ERR_DEVICE with cudaGetErrorString's text. */
#ifndef SDW_KERNELS_CUDA_RNG_FILL_H
#define SDW_KERNELS_CUDA_RNG_FILL_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Standard normals: device_out[k] = normal[offset + k] of (seed, subsequence), k < n. */
sdw_status sdw_cuda_fill_normal_at(float *device_out, size_t n, uint64_t seed, uint64_t subsequence,
                                   uint64_t offset, void *stream);
/* The same from offset 0. */
sdw_status sdw_cuda_fill_normal(float *device_out, size_t n, uint64_t seed, uint64_t subsequence,
                                void *stream);
/* Uniforms in [0, 1): device_out[k] = uniform[offset + k]. */
sdw_status sdw_cuda_fill_uniform_at(float *device_out, size_t n, uint64_t seed,
                                    uint64_t subsequence, uint64_t offset, void *stream);

#ifdef __cplusplus
}
#endif
#endif
