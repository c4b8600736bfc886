/* CPU activations: SiLU, GELU (exact erf), QuickGELU (CLIP) and GEGLU
 * (diffusers), forward and backward (kernels/ops.h has the contracts).
 *
 * The loops call small inline float functions (exp, erf) written so that GCC
 * vectorises them: libm's expf/erff are scalar calls that block
 * vectorisation, and these ops run over whole activation maps. Both are
 * accurate to a few float ulps (tests/test_activation.c checks them against
 * libm in double over a dense sweep). The build is ISO C (-std=c11), so GCC
 * does not contract a*b+c into an FMA behind our back; fmaf is explicit. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Below this many elements the OpenMP fork costs more than it saves. */
enum { ACT_PARALLEL_MIN = 1 << 15 };

static int act_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void act_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

/* --- vectorisable float math ---------------------------------------------- */

/* e^x for x in float range. Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2,
 * then the degree-7 Taylor polynomial of e^r (truncation < 6e-9 relative) and
 * 2^n built in the exponent bits. x is clamped to [-87, 88] so 2^n stays a
 * normal number: results below e^-87 (~1.6e-38) come out as ~1.6e-38 instead
 * of a subnormal or zero, which no caller here can tell apart. NaN passes
 * through (the clamps are comparisons that are false for NaN). */
static inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  /* z = round(x / ln2) + 1.5*2^23: the integer n sits in z's low mantissa bits */
  const float shifter = 0x1.8p23f;
  float z = fmaf(x, 0x1.715476p+0f, shifter);
  float n = z - shifter;
  float r = fmaf(n, -0x1.62e430p-1f, x); /* ln2 split into hi + lo */
  r = fmaf(n, 0x1.05c610p-29f, r);
  float p = 1.0f / 5040.0f;
  p = fmaf(p, r, 1.0f / 720.0f);
  p = fmaf(p, r, 1.0f / 120.0f);
  p = fmaf(p, r, 1.0f / 24.0f);
  p = fmaf(p, r, 1.0f / 6.0f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  p = fmaf(p, r, 1.0f);
  uint32_t zb;
  memcpy(&zb, &z, sizeof zb);
  uint32_t sb = (zb - 0x4b400000u + 127u) << 23; /* 2^n, n in [-126, 127] */
  float scale;
  memcpy(&scale, &sb, sizeof scale);
  return p * scale;
}

static inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

/* erf(z)/z = (2/sqrt(pi)) sum_k (-1)^k z^(2k) / (k! (2k+1)), truncated after
 * k = 6: for |z| < 0.5 the alternating tail is below 3e-11. */
static const float ERF_TAYLOR[7] = {
    1.1283791671e+00f, -3.7612638903e-01f, 1.1283791671e-01f, -2.6866170645e-02f,
    5.2239776254e-03f, -8.5483270234e-04f, 1.2055332982e-04f,
};

/* q(s) = t erfc(t) e^(t^2) with t = 1/s, s in [0, 2] (t >= 0.5; q(0) =
 * 1/sqrt(pi)), as Chebyshev coefficients in u = s - 1. Made by Chebyshev
 * interpolation at 128 nodes of glibc's double erfc (asymptotic series
 * beyond t = 25), truncated at degree 17 and rounded to float: max relative
 * error 3.4e-8 over [0, 2]. */
static const float ERFC_CHEB[18] = {
    0.4355838f,      -0.136908129f,    0.00434903894f,   0.00772345718f,  -0.00383736868f,
    0.00109809567f,  -0.000139317694f, -6.05271089e-05f, 5.46662923e-05f, -2.48278138e-05f,
    7.46735986e-06f, -9.45319357e-07f, -5.96186226e-07f, 5.70286261e-07f, -2.94682252e-07f,
    1.07223428e-07f, -2.31940405e-08f, -3.25299987e-09f,
};

/* Standard normal CDF Phi(x) = (1 + erf(x/sqrt2)) / 2; *gauss = e^(-x^2/2)
 * (the density without its 1/sqrt(2 pi)), which the backward needs too.
 * |z| < 0.5: the Taylor series of erf (Phi in [0.24, 0.76], so the final
 * 0.5 + ... loses nothing). |z| >= 0.5: Phi from erfc(|z|) = e^(-z^2)
 * q(1/|z|) / |z|, so the lower tail keeps its relative accuracy. */
static inline float normal_cdf_f32(float x, float *gauss) {
  float z = x * 0.70710678118654752f;
  float z2 = z * z;
  float t = fabsf(z);
  /* e^(-x^2/2) from x^2 = hi + lo exactly (FMA residual), so the exponent is
   * not perturbed by the rounding of z: that would cost ~x^2 ulps in the
   * lower tail. */
  float xx = x * x, xx_lo = fmaf(x, x, -xx);
  float e = exp_f32(-0.5f * xx);
  e = fmaf(e, -0.5f * xx_lo, e);
  *gauss = e;
  float p = ERF_TAYLOR[6];
#pragma GCC unroll 8
  for (int k = 5; k >= 0; k--)
    p = fmaf(p, z2, ERF_TAYLOR[k]);
  float cdf_small = fmaf(0.5f, z * p, 0.5f);
  float s = 1.0f / (t < 0.5f ? 0.5f : t); /* NaN stays NaN */
  float u = s - 1.0f, b1 = 0.0f, b2 = 0.0f;
#pragma GCC unroll 18
  for (int k = 17; k >= 1; k--) { /* Clenshaw */
    float b = fmaf(2.0f * u, b1, ERFC_CHEB[k] - b2);
    b2 = b1;
    b1 = b;
  }
  float q = fmaf(u, b1, ERFC_CHEB[0] - b2);
  float tail = 0.5f * e * q * s; /* erfc(|z|) / 2 */
  float cdf_large = z > 0.0f ? 1.0f - tail : tail;
  return t < 0.5f ? cdf_small : cdf_large;
}

static const float INV_SQRT_2PI = 0.39894228040143268f;

static inline float gelu_f32(float x) {
  float g;
  return x * normal_cdf_f32(x, &g);
}

/* d/dx x Phi(x) = Phi(x) + x phi(x). */
static inline float gelu_grad_f32(float x) {
  float g;
  float cdf = normal_cdf_f32(x, &g);
  return fmaf(x * INV_SQRT_2PI, g, cdf);
}

/* --- elementwise drivers ---------------------------------------------------- */

static void act_check_pair(const sdw_tensor *x, const sdw_tensor *y) {
  act_check_f32(x);
  act_check_f32(y);
  SDW_ASSERT(sdw_tensor_same_shape(x, y));
}

/* y may alias x: every loop reads x[i] before writing y[i]. */
sdw_status sdw_cpu_silu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  act_check_pair(x, y);
  const float *xp = x->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    yp[i] = xp[i] * sigmoid_f32(xp[i]);
  return SDW_OK;
}

/* d/dx x s(x) = s (1 + x (1 - s)), with 1 - s = e^-x s: forming 1 - s from
 * the rounded s would lose ~x ulps where s is close to 1. */
sdw_status sdw_cpu_silu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                 sdw_tensor *dx) {
  act_check_pair(x, dy);
  if (!dx) return SDW_OK;
  act_check_pair(x, dx);
  const float *xp = x->data, *dyp = dy->data;
  float *dxp = dx->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float e = exp_f32(-xp[i]), s = 1.0f / (1.0f + e);
    dxp[i] += dyp[i] * (s * fmaf(xp[i], e * s, 1.0f));
  }
  return SDW_OK;
}

sdw_status sdw_cpu_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  act_check_pair(x, y);
  const float *xp = x->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    yp[i] = gelu_f32(xp[i]);
  return SDW_OK;
}

sdw_status sdw_cpu_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                 sdw_tensor *dx) {
  act_check_pair(x, dy);
  if (!dx) return SDW_OK;
  act_check_pair(x, dx);
  const float *xp = x->data, *dyp = dy->data;
  float *dxp = dx->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    dxp[i] += dyp[i] * gelu_grad_f32(xp[i]);
  return SDW_OK;
}

/* The constant is the float 1.702f, as CLIP's `1.702 * x` on a float tensor. */
static const float QUICK_GELU_K = 1.702f;

sdw_status sdw_cpu_quick_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  act_check_pair(x, y);
  const float *xp = x->data;
  float *yp = y->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++)
    yp[i] = xp[i] * sigmoid_f32(QUICK_GELU_K * xp[i]);
  return SDW_OK;
}

/* d/dx x s(kx) = s + k x s (1 - s), 1 - s = e^-kx s as in SiLU. */
sdw_status sdw_cpu_quick_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                       sdw_tensor *dx) {
  act_check_pair(x, dy);
  if (!dx) return SDW_OK;
  act_check_pair(x, dx);
  const float *xp = x->data, *dyp = dy->data;
  float *dxp = dx->data;
  int64_t n = sdw_tensor_numel(x);
#pragma omp parallel for simd num_threads(act_threads(ctx)) if (n >= ACT_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float kx = QUICK_GELU_K * xp[i];
    float e = exp_f32(-kx), s = 1.0f / (1.0f + e);
    dxp[i] += dyp[i] * (s * fmaf(kx, e * s, 1.0f));
  }
  return SDW_OK;
}

/* x[*,2D] and y[*,D]: same leading dims, last dim halved. Returns rows M. */
static int64_t geglu_rows(const sdw_tensor *x, const sdw_tensor *y, int64_t *d_out) {
  act_check_f32(x);
  act_check_f32(y);
  SDW_ASSERT(x->ndim >= 1 && x->ndim == y->ndim);
  for (int i = 0; i + 1 < x->ndim; i++)
    SDW_ASSERT(x->shape[i] == y->shape[i]);
  int64_t two_d = x->shape[x->ndim - 1];
  SDW_ASSERT(two_d % 2 == 0 && y->shape[y->ndim - 1] == two_d / 2);
  *d_out = two_d / 2;
  return sdw_tensor_span(x, 0, x->ndim - 1);
}

/* y = hidden * gelu(gate) with x = [hidden | gate] per row. */
sdw_status sdw_cpu_geglu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  int64_t d;
  int64_t rows = geglu_rows(x, y, &d);
  const float *xp = x->data;
  float *yp = y->data;
#pragma omp parallel for num_threads(act_threads(ctx)) if (rows * d >= ACT_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *h = xp + r * 2 * d, *g = h + d;
    float *yr = yp + r * d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++)
      yr[j] = h[j] * gelu_f32(g[j]);
  }
  return SDW_OK;
}

/* dhidden += dy * gelu(gate); dgate += dy * hidden * gelu'(gate). */
sdw_status sdw_cpu_geglu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                  sdw_tensor *dx) {
  int64_t d;
  int64_t rows = geglu_rows(x, dy, &d);
  if (!dx) return SDW_OK;
  act_check_f32(dx);
  SDW_ASSERT(sdw_tensor_same_shape(x, dx));
  const float *xp = x->data, *dyp = dy->data;
  float *dxp = dx->data;
#pragma omp parallel for num_threads(act_threads(ctx)) if (rows * d >= ACT_PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) {
    const float *h = xp + r * 2 * d, *g = h + d, *dyr = dyp + r * d;
    float *dh = dxp + r * 2 * d, *dg = dh + d;
#pragma omp simd
    for (int64_t j = 0; j < d; j++) {
      float gauss;
      float cdf = normal_cdf_f32(g[j], &gauss);
      float gelu = g[j] * cdf;
      float grad = fmaf(g[j] * INV_SQRT_2PI, gauss, cdf);
      dh[j] += dyr[j] * gelu;
      dg[j] += dyr[j] * h[j] * grad;
    }
  }
  return SDW_OK;
}
