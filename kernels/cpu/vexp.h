/* Private to the CPU backend: the row kernels that softmax and attention
 * share, built on a fast vectorised exp.
 *
 * exp(x) = 2^n * p(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite, two
 * constants), p a degree-6 polynomial with p(0) = 1 fitted for minimal
 * relative error on |r| <= ln2/2 (1e-9 in exact arithmetic): about 1e-7
 * relative error over the whole range once float rounding is counted,
 * checked against libm's exp in double by tests/test_softmax.c. Results
 * below FLT_MIN (x < -87.33) are flushed to zero (no denormals), exp(-inf)
 * = 0, NaN stays NaN, and large x saturate near FLT_MAX instead of inf.
 *
 * With AVX-512F the kernels use intrinsics (16 lanes, scalef for 2^n); other
 * builds get plain C loops that the compiler may vectorise. Every function
 * here is static inline: no state, no allocation. */
#ifndef SDW_KERNELS_CPU_VEXP_H
#define SDW_KERNELS_CPU_VEXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define SDW_VEXP_LOG2E  1.44269504088896341f
#define SDW_VEXP_LN2_HI 0.693359375f
#define SDW_VEXP_LN2_LO -2.12194440e-4f
#define SDW_VEXP_X_MAX  88.7228317f
#define SDW_VEXP_X_MIN  -87.3365448f /* ln(FLT_MIN) */
#define SDW_VEXP_C1     1.000000000e+00f
#define SDW_VEXP_C2     4.999999404e-01f
#define SDW_VEXP_C3     1.666643173e-01f
#define SDW_VEXP_C4     4.166800156e-02f
#define SDW_VEXP_C5     8.374155499e-03f
#define SDW_VEXP_C6     1.384365372e-03f

/* Scalar exp with the same polynomial (tails of vector loops, fallbacks). */
static inline float sdw_vexp_scalar(float x) {
  if (x != x) return x;
  if (x < SDW_VEXP_X_MIN) return 0.0f;
  if (x > SDW_VEXP_X_MAX) x = SDW_VEXP_X_MAX;
  float n = nearbyintf(x * SDW_VEXP_LOG2E);
  float r = fmaf(-n, SDW_VEXP_LN2_HI, x);
  r = fmaf(-n, SDW_VEXP_LN2_LO, r);
  float p = SDW_VEXP_C6;
  p = fmaf(p, r, SDW_VEXP_C5);
  p = fmaf(p, r, SDW_VEXP_C4);
  p = fmaf(p, r, SDW_VEXP_C3);
  p = fmaf(p, r, SDW_VEXP_C2);
  p = fmaf(p, r, SDW_VEXP_C1);
  p = fmaf(p, r, 1.0f);
  /* n is in [-126, 128]; 2^128 is split as 2 * 2^127 to stay representable. */
  int ni = (int)n;
  float twice = 1.0f;
  if (ni > 127) {
    ni = 127;
    twice = 2.0f;
  }
  uint32_t bits = (uint32_t)(ni + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale * twice;
}

#if defined(__AVX512F__)
static inline __m512 sdw_vexp_avx512(__m512 x) {
  /* min takes its second operand when one is NaN: NaN propagates. -inf and
   * underflow give NaN or garbage in between, but are masked to 0 below. */
  __m512 xc = _mm512_min_ps(_mm512_set1_ps(SDW_VEXP_X_MAX), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(SDW_VEXP_LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SDW_VEXP_LN2_HI), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(SDW_VEXP_LN2_LO), r);
  __m512 p = _mm512_set1_ps(SDW_VEXP_C6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SDW_VEXP_C5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SDW_VEXP_C4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SDW_VEXP_C3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SDW_VEXP_C2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(SDW_VEXP_C1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  /* Keep lanes with x >= ln(FLT_MIN) or NaN (unordered compares true). */
  __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(SDW_VEXP_X_MIN), _CMP_NLT_UQ);
  return _mm512_maskz_scalef_ps(keep, p, n);
}

static inline __mmask16 sdw_vexp_tail_mask(int64_t remaining) {
  return remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1u);
}
#endif

/* max over x[0..n) (-INFINITY when n == 0). */
static inline float sdw_vexp_row_max(const float *x, int64_t n) {
#if defined(__AVX512F__)
  __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
    m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
  }
  for (; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    m0 = _mm512_mask_max_ps(m0, k, m0, _mm512_maskz_loadu_ps(k, x + j));
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
#else
  float m = -INFINITY;
  for (int64_t j = 0; j < n; j++)
    m = x[j] > m ? x[j] : m;
  return m;
#endif
}

/* y[j] = exp(x[j] - shift) for j < n; returns the sum of the y[j] (float
 * lanes, summed pairwise at the end). y may equal x. */
static inline float sdw_vexp_row_exp_sum(const float *x, float shift, float *y, int64_t n) {
#if defined(__AVX512F__)
  __m512 s = _mm512_set1_ps(shift);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m512 e0 = sdw_vexp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + j), s));
    __m512 e1 = sdw_vexp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), s));
    _mm512_storeu_ps(y + j, e0);
    _mm512_storeu_ps(y + j + 16, e1);
    a0 = _mm512_add_ps(a0, e0);
    a1 = _mm512_add_ps(a1, e1);
  }
  for (; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    __m512 e = sdw_vexp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), s));
    e = _mm512_maskz_mov_ps(k, e);
    _mm512_mask_storeu_ps(y + j, k, e);
    a0 = _mm512_add_ps(a0, e);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
#else
  float sum = 0.0f;
  for (int64_t j = 0; j < n; j++) {
    y[j] = sdw_vexp_scalar(x[j] - shift);
    sum += y[j];
  }
  return sum;
#endif
}

/* y[j] = exp(x[j] + bias[j] - shift) (bias is 0 or -inf: a key mask). */
static inline float sdw_vexp_row_exp_sum_bias(const float *x, const float *bias, float shift,
                                              float *y, int64_t n) {
#if defined(__AVX512F__)
  __m512 s = _mm512_set1_ps(shift);
  __m512 a0 = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, bias + j));
    __m512 e = _mm512_maskz_mov_ps(k, sdw_vexp_avx512(_mm512_sub_ps(v, s)));
    _mm512_mask_storeu_ps(y + j, k, e);
    a0 = _mm512_add_ps(a0, e);
  }
  return _mm512_reduce_add_ps(a0);
#else
  float sum = 0.0f;
  for (int64_t j = 0; j < n; j++) {
    y[j] = sdw_vexp_scalar(x[j] + bias[j] - shift);
    sum += y[j];
  }
  return sum;
#endif
}

/* max over x[j] + bias[j]. */
static inline float sdw_vexp_row_max_bias(const float *x, const float *bias, int64_t n) {
#if defined(__AVX512F__)
  __m512 m0 = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, bias + j));
    m0 = _mm512_mask_max_ps(m0, k, m0, v);
  }
  return _mm512_reduce_max_ps(m0);
#else
  float m = -INFINITY;
  for (int64_t j = 0; j < n; j++) {
    float v = x[j] + bias[j];
    m = v > m ? v : m;
  }
  return m;
#endif
}

/* x[j] *= a for j < n. */
static inline void sdw_vexp_row_scale(float *x, float a, int64_t n) {
#if defined(__AVX512F__)
  __m512 va = _mm512_set1_ps(a);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), va));
  }
#else
  for (int64_t j = 0; j < n; j++)
    x[j] *= a;
#endif
}

/* sum over a[j] * b[j] (float lanes). */
static inline float sdw_vexp_row_dot(const float *a, const float *b, int64_t n) {
#if defined(__AVX512F__)
  __m512 s0 = _mm512_setzero_ps(), s1 = s0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
  }
  for (; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + j), _mm512_maskz_loadu_ps(k, b + j), s0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
  float s = 0.0f;
  for (int64_t j = 0; j < n; j++)
    s += a[j] * b[j];
  return s;
#endif
}

/* d[j] = p[j] * (d[j] - c) * a: the softmax backward through the
 * probabilities p, with d the incoming gradient of p. */
static inline void sdw_vexp_row_softmax_grad(const float *p, float *d, float c, float a,
                                             int64_t n) {
#if defined(__AVX512F__)
  __m512 vc = _mm512_set1_ps(c), va = _mm512_set1_ps(a);
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = sdw_vexp_tail_mask(n - j);
    __m512 t = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, d + j), vc);
    t = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), t), va);
    _mm512_mask_storeu_ps(d + j, k, t);
  }
#else
  for (int64_t j = 0; j < n; j++)
    d[j] = p[j] * (d[j] - c) * a;
#endif
}

#endif
