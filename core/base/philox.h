/* Philox4x32-10: the counter-based random number generator of Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), as in Random123,
 * cuRAND (curand_Philox4x32_10) and PyTorch's CUDA generator.
 *
 * Header-only, `static inline`, usable from C and from CUDA device code
 * (SDW_HOST_DEVICE), so the CPU and the GPU produce the same bits.
 *
 * Streams. Value i (i = 0, 1, 2, ...) of the stream (seed, subsequence) is a
 * pure function of (seed, subsequence, i):
 *
 *   key     = { (u32)seed, (u32)(seed >> 32) }
 *   block   = i / 4                                    (u64)
 *   counter = { (u32)block, (u32)(block >> 32), (u32)subsequence, (u32)(subsequence >> 32) }
 *   x[0..3] = sdw_philox4x32_10(counter, key)
 *
 *   u32[i]     = x[i % 4]
 *     (the same numbers as cuRAND's curand() after
 *      curand_init(seed, subsequence, 0, &curandStatePhilox4_32_10_t))
 *   uniform[i] = sdw_philox_uniform(x[i % 4])                   in [0, 1)
 *   normal[i]  = with p = (i % 4) / 2 and (z0, z1) = sdw_philox_box_muller(x[2p], x[2p+1]):
 *                z0 when i is even, z1 when i is odd
 *
 * so a kernel computes element i from (seed, subsequence, i) alone, in any
 * order and with any number of threads, and a stream can be resumed at any
 * offset. Different subsequences (2^64 of them, each 2^66 values long) are
 * independent streams: use them for independent purposes (one per image of a
 * batch, one per sampling step...).
 *
 * Float conversions:
 *   sdw_philox_uniform(x)     = (x >> 8) * 2^-24, in [0, 1): 2^24 equally spaced values, exact.
 *   sdw_philox_uniform_pos(x) = fma(float(x), 2^-32, 2^-33), in (0, 1] (cuRAND's curand_uniform
 *                               formula); never 0, so its log is finite.
 *   Box-Muller (float): u1 = uniform_pos(a), angle = 2*pi*uniform(b);
 *                       r = sqrt(-2 ln u1); z0 = r cos(angle), z1 = r sin(angle).
 *   |z| <= sqrt(2 * 33 * ln 2) = 6.77 (the smallest u1 is 2^-33).
 *
 * Bit-identical on CPU and GPU: ln, sin and cos are computed here with fixed
 * polynomials written with explicit fused multiply-adds, and every other
 * operation is a single correctly rounded IEEE operation (on the device the
 * _rn intrinsics, which the compiler may not contract or approximate), so no
 * libm or fast-math difference can enter. Accuracy: ln within ~2 ulp, sin and
 * cos within ~2 ulp of the true values on the reduced range.
 */
#ifndef SDW_BASE_PHILOX_H
#define SDW_BASE_PHILOX_H

#include <stdint.h>
#ifndef __CUDACC__
#include <math.h>
#include <string.h>
#endif

#ifdef __CUDACC__
#define SDW_HOST_DEVICE __host__ __device__
#else
#define SDW_HOST_DEVICE
#endif

#define SDW_PHILOX_M0 0xD2511F53u /* round multipliers */
#define SDW_PHILOX_M1 0xCD9E8D57u
#define SDW_PHILOX_W0 0x9E3779B9u /* key schedule (Weyl) increments */
#define SDW_PHILOX_W1 0xBB67AE85u

/* --- exactly rounded float operations, identical on host and device ------------ */
#if defined(__CUDA_ARCH__)
#define SDW_PHILOX_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define SDW_PHILOX_MUL(a, b)    __fmul_rn((a), (b))
#define SDW_PHILOX_ADD(a, b)    __fadd_rn((a), (b))
#define SDW_PHILOX_DIV(a, b)    __fdiv_rn((a), (b))
#define SDW_PHILOX_SQRT(a)      __fsqrt_rn(a)
#define SDW_PHILOX_U2F(x)       __uint2float_rn(x)
#define SDW_PHILOX_I2F(x)       __int2float_rn(x)
#else
/* No expression below multiplies and then adds outside fmaf, so C's
 * floating-point contraction has nothing to fuse on the host either. */
#define SDW_PHILOX_FMA(a, b, c) fmaf((a), (b), (c))
#define SDW_PHILOX_MUL(a, b)    ((a) * (b))
#define SDW_PHILOX_ADD(a, b)    ((a) + (b))
#define SDW_PHILOX_DIV(a, b)    ((a) / (b))
#define SDW_PHILOX_SQRT(a)      sqrtf(a)
#define SDW_PHILOX_U2F(x)       ((float)(x))
#define SDW_PHILOX_I2F(x)       ((float)(x))
#endif

static inline SDW_HOST_DEVICE uint32_t sdw_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
#ifdef __CUDA_ARCH__
  *hi = __umulhi(a, b);
  return a * b;
#else
  uint64_t product = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(product >> 32);
  return (uint32_t)product;
#endif
}

/* Philox4x32 with 10 rounds: out = f(counter, key). */
static inline SDW_HOST_DEVICE void sdw_philox4x32_10(const uint32_t counter[4],
                                                     const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = counter[0], c1 = counter[1], c2 = counter[2], c3 = counter[3];
  uint32_t k0 = key[0], k1 = key[1];
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += SDW_PHILOX_W0;
      k1 += SDW_PHILOX_W1;
    }
    uint32_t hi0, hi1;
    uint32_t lo0 = sdw_philox_mulhilo(SDW_PHILOX_M0, c0, &hi0);
    uint32_t lo1 = sdw_philox_mulhilo(SDW_PHILOX_M1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/* The four u32 of block `block` (= element index / 4) of stream (seed, subsequence). */
static inline SDW_HOST_DEVICE void sdw_philox_block(uint64_t seed, uint64_t subsequence,
                                                    uint64_t block, uint32_t out[4]) {
  uint32_t counter[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)subsequence,
                         (uint32_t)(subsequence >> 32)};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  sdw_philox4x32_10(counter, key, out);
}

/* [0, 1): (x >> 8) * 2^-24. */
static inline SDW_HOST_DEVICE float sdw_philox_uniform(uint32_t x) {
  return SDW_PHILOX_MUL(SDW_PHILOX_U2F(x >> 8), 0x1p-24f);
}

/* (0, 1]: float(x) * 2^-32 + 2^-33, one rounding. */
static inline SDW_HOST_DEVICE float sdw_philox_uniform_pos(uint32_t x) {
  return SDW_PHILOX_FMA(SDW_PHILOX_U2F(x), 0x1p-32f, 0x1p-33f);
}

static inline SDW_HOST_DEVICE uint32_t sdw_philox_float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

static inline SDW_HOST_DEVICE float sdw_philox_bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/* ln(u) for a positive normal float u (here: u in [2^-33, 1]).
 * u = m * 2^e with m in [sqrt(1/2), sqrt(2)); ln(m) = 2 atanh(s), s = (m-1)/(m+1),
 * by its series to s^13 (|s| <= 0.172: truncation < 1e-12); e*ln2 in two parts
 * (fdlibm's split: ln2_hi has 16 bits, so e*ln2_hi is exact). */
static inline SDW_HOST_DEVICE float sdw_philox_log(float u) {
  uint32_t bits = sdw_philox_float_bits(u);
  int e = (int)(bits >> 23) - 127;
  uint32_t mbits = (bits & 0x007FFFFFu) | 0x3F800000u; /* m in [1, 2) */
  if (mbits > 0x3FB504F3u) {                           /* m > sqrt(2): use m/2, e+1 */
    mbits -= 0x00800000u;
    e += 1;
  }
  float f = SDW_PHILOX_ADD(sdw_philox_bits_float(mbits), -1.0f); /* exact */
  float s = SDW_PHILOX_DIV(f, SDW_PHILOX_ADD(f, 2.0f));
  float z = SDW_PHILOX_MUL(s, s);
  float p = 0x1.3b13b2p-4f;                 /* 1/13 */
  p = SDW_PHILOX_FMA(p, z, 0x1.745d18p-4f); /* 1/11 */
  p = SDW_PHILOX_FMA(p, z, 0x1.c71c72p-4f); /* 1/9 */
  p = SDW_PHILOX_FMA(p, z, 0x1.24924ap-3f); /* 1/7 */
  p = SDW_PHILOX_FMA(p, z, 0x1.99999ap-3f); /* 1/5 */
  p = SDW_PHILOX_FMA(p, z, 0x1.555556p-2f); /* 1/3 */
  float r = SDW_PHILOX_MUL(z, p);
  float t = SDW_PHILOX_MUL(s, 2.0f);     /* exact */
  float log_m = SDW_PHILOX_FMA(t, r, t); /* 2s (1 + z/3 + z^2/5 + ...) */
  float ef = SDW_PHILOX_I2F(e);
  float lo = SDW_PHILOX_FMA(ef, 0x1.2fefa2p-17f, log_m); /* e * ln2_lo + ln(m) */
  return SDW_PHILOX_FMA(ef, 0x1.62e300p-1f, lo);         /* + e * ln2_hi */
}

/* sin and cos of 2*pi*k/2^24 for k in [0, 2^24) (k = x >> 8 of a u32).
 * Reduction is exact in integers: k = n*2^22 + j with n = round(k / 2^22) and
 * |j| <= 2^21, so the angle is (pi/2)(n + f) with f = j/2^22 in [-1/2, 1/2];
 * sin(pi f/2) and cos(pi f/2) by their Taylor series to degree 11 / 12
 * (truncation < 1e-10), then the quadrant n picks signs and order. */
static inline SDW_HOST_DEVICE void sdw_philox_sincos_turns(uint32_t k, float *sin_out,
                                                           float *cos_out) {
  uint32_t n = (k + (1u << 21)) >> 22; /* 0..4 */
  int32_t j = (int32_t)k - (int32_t)(n << 22);
  float f = SDW_PHILOX_MUL(SDW_PHILOX_I2F(j), 0x1p-22f); /* exact */
  float g = SDW_PHILOX_MUL(f, f);
  float sp = -0x1.e30750p-19f;                 /* -(pi/2)^11 / 11! */
  sp = SDW_PHILOX_FMA(sp, g, 0x1.507834p-13f); /* (pi/2)^9 / 9! */
  sp = SDW_PHILOX_FMA(sp, g, -0x1.32d2ccp-8f); /* -(pi/2)^7 / 7! */
  sp = SDW_PHILOX_FMA(sp, g, 0x1.466bc6p-4f);  /* (pi/2)^5 / 5! */
  sp = SDW_PHILOX_FMA(sp, g, -0x1.4abbcep-1f); /* -(pi/2)^3 / 3! */
  sp = SDW_PHILOX_FMA(sp, g, 0x1.921fb6p+0f);  /* pi/2 */
  float s = SDW_PHILOX_MUL(sp, f);
  float cp = 0x1.f9d38ap-22f;                   /* (pi/2)^12 / 12! */
  cp = SDW_PHILOX_FMA(cp, g, -0x1.a6d1f2p-16f); /* -(pi/2)^10 / 10! */
  cp = SDW_PHILOX_FMA(cp, g, 0x1.e1f506p-11f);  /* (pi/2)^8 / 8! */
  cp = SDW_PHILOX_FMA(cp, g, -0x1.55d3c8p-6f);  /* -(pi/2)^6 / 6! */
  cp = SDW_PHILOX_FMA(cp, g, 0x1.03c1f0p-2f);   /* (pi/2)^4 / 4! */
  cp = SDW_PHILOX_FMA(cp, g, -0x1.3bd3ccp+0f);  /* -(pi/2)^2 / 2! */
  float c = SDW_PHILOX_FMA(cp, g, 1.0f);
  switch (n & 3u) {
  case 0: *sin_out = s, *cos_out = c; break;
  case 1: *sin_out = c, *cos_out = -s; break;
  case 2: *sin_out = -s, *cos_out = -c; break;
  default: *sin_out = -c, *cos_out = s; break;
  }
}

/* Two standard normals from two u32 (see the header comment). */
static inline SDW_HOST_DEVICE void sdw_philox_box_muller(uint32_t a, uint32_t b, float *z0,
                                                         float *z1) {
  float u1 = sdw_philox_uniform_pos(a);
  float r = SDW_PHILOX_SQRT(SDW_PHILOX_MUL(sdw_philox_log(u1), -2.0f));
  float s, c;
  sdw_philox_sincos_turns(b >> 8, &s, &c);
  *z0 = SDW_PHILOX_MUL(r, c);
  *z1 = SDW_PHILOX_MUL(r, s);
}

/* Normals 4*block .. 4*block+3 of stream (seed, subsequence). */
static inline SDW_HOST_DEVICE void sdw_philox_normal4(uint64_t seed, uint64_t subsequence,
                                                      uint64_t block, float out[4]) {
  uint32_t x[4];
  sdw_philox_block(seed, subsequence, block, x);
  sdw_philox_box_muller(x[0], x[1], &out[0], &out[1]);
  sdw_philox_box_muller(x[2], x[3], &out[2], &out[3]);
}

/* Uniforms in [0, 1), 4*block .. 4*block+3. */
static inline SDW_HOST_DEVICE void sdw_philox_uniform4(uint64_t seed, uint64_t subsequence,
                                                       uint64_t block, float out[4]) {
  uint32_t x[4];
  sdw_philox_block(seed, subsequence, block, x);
  for (int lane = 0; lane < 4; lane++)
    out[lane] = sdw_philox_uniform(x[lane]);
}

#endif
