/* Random numbers on the CPU from the Philox4x32-10 streams of
 * core/base/philox.h (whose header comment defines element i of stream
 * (seed, subsequence) exactly; the CUDA kernels in kernels/cuda/rng_fill.cu
 * produce the same bits).
 *
 * The fill functions write elements offset .. offset+n-1 of the stream into
 * out[0..n), so filling 1000 values and filling 500 from offset 500 agree on
 * the overlap. They are parallel over OpenMP threads when the build has
 * OpenMP (the result does not depend on the number of threads).
 */
#ifndef SDW_BASE_RNG_H
#define SDW_BASE_RNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[0..n) = u32 stream elements offset .. offset+n-1. */
void sdw_rng_fill_u32(uint32_t *out, size_t n, uint64_t seed, uint64_t subsequence,
                      uint64_t offset);
/* Uniform in [0, 1): (u32 >> 8) * 2^-24. */
void sdw_rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t subsequence,
                          uint64_t offset);
/* Standard normal (Box-Muller in float, see philox.h). */
void sdw_rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t subsequence,
                         uint64_t offset);

/* A position in one stream, for code that draws in several calls. */
typedef struct sdw_rng {
  uint64_t seed;
  uint64_t subsequence;
  uint64_t offset; /* the next element */
} sdw_rng;

sdw_rng sdw_rng_make(uint64_t seed, uint64_t subsequence);
/* Fill n values from the current offset and advance it by n. */
void sdw_rng_uniform(sdw_rng *rng, float *out, size_t n);
void sdw_rng_normal(sdw_rng *rng, float *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
