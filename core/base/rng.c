#include "core/base/rng.h"

#include "core/base/philox.h"
#include "core/base/status.h"

typedef enum rng_kind { RNG_U32, RNG_UNIFORM, RNG_NORMAL } rng_kind;

/* Blocks of 4 are computed whole; lanes outside [offset, offset + n) of the
 * first and last block are dropped. Every block is independent, so the loop
 * parallelises without changing a bit. */
static void rng_fill(void *out, size_t n, uint64_t seed, uint64_t subsequence, uint64_t offset,
                     rng_kind kind) {
  if (n == 0) return;
  SDW_ASSERT_MSG(offset <= UINT64_MAX - (n - 1), "rng offset %llu + %zu overflows",
                 (unsigned long long)offset, n);
  uint64_t first = offset / 4, last = (offset + (n - 1)) / 4;
  long long count = (long long)(last - first + 1);
  uint32_t *out_u32 = out;
  float *out_f32 = out;
#pragma omp parallel for schedule(static) if (count > 16384)
  for (long long t = 0; t < count; t++) {
    uint64_t block = first + (uint64_t)t;
    uint32_t x[4] = {0, 0, 0, 0};
    float f[4] = {0, 0, 0, 0};
    if (kind == RNG_NORMAL) {
      sdw_philox_normal4(seed, subsequence, block, f);
    } else {
      sdw_philox_block(seed, subsequence, block, x);
      if (kind == RNG_UNIFORM)
        for (int lane = 0; lane < 4; lane++)
          f[lane] = sdw_philox_uniform(x[lane]);
    }
    for (int lane = 0; lane < 4; lane++) {
      uint64_t index = block * 4 + (uint64_t)lane;
      if (index < offset || index - offset >= n) continue;
      if (kind == RNG_U32)
        out_u32[index - offset] = x[lane];
      else
        out_f32[index - offset] = f[lane];
    }
  }
}

void sdw_rng_fill_u32(uint32_t *out, size_t n, uint64_t seed, uint64_t subsequence,
                      uint64_t offset) {
  rng_fill(out, n, seed, subsequence, offset, RNG_U32);
}

void sdw_rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t subsequence,
                          uint64_t offset) {
  rng_fill(out, n, seed, subsequence, offset, RNG_UNIFORM);
}

void sdw_rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t subsequence,
                         uint64_t offset) {
  rng_fill(out, n, seed, subsequence, offset, RNG_NORMAL);
}

sdw_rng sdw_rng_make(uint64_t seed, uint64_t subsequence) {
  sdw_rng rng = {seed, subsequence, 0};
  return rng;
}

void sdw_rng_uniform(sdw_rng *rng, float *out, size_t n) {
  sdw_rng_fill_uniform(out, n, rng->seed, rng->subsequence, rng->offset);
  rng->offset += n;
}

void sdw_rng_normal(sdw_rng *rng, float *out, size_t n) {
  sdw_rng_fill_normal(out, n, rng->seed, rng->subsequence, rng->offset);
  rng->offset += n;
}
