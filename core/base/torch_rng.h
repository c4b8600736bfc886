/* torch_rng: PyTorch's CPU random stream, reproduced bit for bit.
 *
 *   g = torch.Generator("cpu").manual_seed(seed)      sdw_torch_generator_seed(&g, seed, kernel)
 *   x = torch.randn(shape, generator=g)  (float32)    sdw_torch_randn(&g, x, numel)
 *
 * so that noise drawn by the seed project's inference.py (a fresh generator
 * seeded with seed + batch index, then one randn of [B,4,H/8,W/8]) can be
 * reproduced exactly. Successive randn calls on one generator advance it as
 * torch does (including the cached second Box-Muller value of the scalar path).
 *
 * What torch does (ATen: core/MT19937RNGEngine.h, CPUGeneratorImpl.cpp,
 * core/DistributionsHelper.h, core/TransformationHelper.h,
 * native/cpu/DistributionTemplates.h; the same in 1.13 and 2.x):
 *  - engine: MT19937 seeded with the low 32 bits of the seed (init_genrand);
 *    manual_seed also drops the cached normal values.
 *  - float uniform in [0,1): (random32 & (2^24-1)) * 2^-24.
 *  - randn of a contiguous float32 tensor with numel >= 16 ("normal_fill"):
 *    first one uniform per element, in order; then blocks of 16:
 *    u1 = 1 - d[j], u2 = d[j+8] (j < 8), r = sqrt(-2 log u1),
 *    th = 2 pi u2, d[j] = r cos th, d[j+8] = r sin th; when numel % 16 != 0
 *    the last 16 elements are drawn again (16 fresh uniforms) and
 *    transformed as one more block.
 *    Two builds of that transform exist, chosen by torch's CPU dispatch:
 *      SDW_TORCH_NORMAL_AVX2: x86-64 CPUs with AVX2+FMA (the AVX512
 *        dispatch falls back to it: normal_stub is registered with
 *        REGISTER_NO_AVX512_DISPATCH). Float32 math with avx_mathfun's
 *        Cephes polynomials (log256_ps, sincos256_ps), with the FMA
 *        contractions GCC makes when it compiles them; this is what PyTorch
 *        computes on practically every x86 machine.
 *      SDW_TORCH_NORMAL_SCALAR: torch's DEFAULT capability (x86 without
 *        AVX2, ATEN_CPU_CAPABILITY=default, non-x86 builds): float logf,
 *        cosf, sinf, sqrtf from the C library, theta rounded from double.
 *        Bit-exact only where our libm is the one torch calls (glibc here).
 *  - numel < 16 (or any non-float32 request): one
 *    at::normal_distribution<double> per element: two double uniforms
 *    ((random64 & (2^53-1)) * 2^-53, random64 = hi32 << 32 | lo32 of two
 *    draws) u1, u2; r = sqrt(-2 log1p(-u2)); th = 2 pi u1; returns r cos th
 *    and caches r sin th for the next element (of this or a later call);
 *    each value is rounded to float32.
 *
 * A generator is a plain value (copy it to fork the stream); not thread-safe.
 */
#ifndef SDW_BASE_TORCH_RNG_H
#define SDW_BASE_TORCH_RNG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_torch_normal_kernel {
  SDW_TORCH_NORMAL_AVX2 = 0, /* torch on x86-64 with AVX2 (the default) */
  SDW_TORCH_NORMAL_SCALAR,   /* torch's portable kernel (libm logf/cosf/sinf) */
} sdw_torch_normal_kernel;

#define SDW_MT19937_N 624

typedef struct sdw_torch_generator {
  uint32_t state[SDW_MT19937_N];
  int left;      /* draws left before the next twist (torch's left_) */
  uint32_t next; /* index of the next state word */
  uint64_t seed; /* the seed as given (torch's initial_seed()) */
  bool has_next_normal;
  double next_normal; /* cached second Box-Muller value of the double path */
  sdw_torch_normal_kernel kernel;
} sdw_torch_generator;

/* torch.Generator("cpu").manual_seed(seed); kernel picks the normal_fill
 * build to reproduce (see above). */
void sdw_torch_generator_seed(sdw_torch_generator *g, uint64_t seed,
                              sdw_torch_normal_kernel kernel);

/* The engine's next 32 bits (CPUGeneratorImpl::random) and 64 bits
 * (random64: first draw in the high half). */
uint32_t sdw_torch_random(sdw_torch_generator *g);
uint64_t sdw_torch_random64(sdw_torch_generator *g);

/* torch.rand(n, dtype=float32) element: [0,1) with 24 random bits. */
float sdw_torch_uniform_f32(sdw_torch_generator *g);

/* out[n] = torch.randn(shape, generator=g) for any shape of numel n
 * (contiguous float32). n may be 0. */
void sdw_torch_randn(sdw_torch_generator *g, float *out, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
