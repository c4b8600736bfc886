/* torch_rng: PyTorch's CPU generator (MT19937) and randn, bit for bit.
 * See torch_rng.h for the algorithm and where each rule comes from.
 *
 * Floating-point note: every multiply and add below is a separate statement
 * and the build is ISO C (GCC does not contract a*b+c into an FMA there;
 * clang contracts only within one expression), so each operation rounds
 * exactly once. Where torch's binary uses a fused multiply-add (GCC contracts
 * the intrinsics of avx_mathfun.h when it compiles them with -mfma), we call
 * fmaf explicitly. */
#include "core/base/torch_rng.h"

#include <math.h>
#include <string.h>

#define MT_M        397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UMASK    0x80000000u
#define MT_LMASK    0x7fffffffu

void sdw_torch_generator_seed(sdw_torch_generator *g, uint64_t seed,
                              sdw_torch_normal_kernel kernel) {
  memset(g, 0, sizeof *g);
  g->seed = seed;
  g->state[0] = (uint32_t)(seed & 0xffffffffu);
  for (uint32_t j = 1; j < SDW_MT19937_N; j++)
    g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + j;
  g->left = 1;
  g->next = 0;
  g->has_next_normal = false;
  g->kernel = kernel;
}

static uint32_t mt_twist(uint32_t u, uint32_t v) {
  uint32_t mixed = (u & MT_UMASK) | (v & MT_LMASK);
  return (mixed >> 1) ^ ((v & 1u) ? MT_MATRIX_A : 0u);
}

static void mt_next_state(sdw_torch_generator *g) {
  uint32_t *s = g->state;
  int k = 0;
  for (; k < SDW_MT19937_N - MT_M; k++)
    s[k] = s[k + MT_M] ^ mt_twist(s[k], s[k + 1]);
  for (; k < SDW_MT19937_N - 1; k++)
    s[k] = s[k + MT_M - SDW_MT19937_N] ^ mt_twist(s[k], s[k + 1]);
  s[k] = s[k + MT_M - SDW_MT19937_N] ^ mt_twist(s[k], s[0]);
  g->left = SDW_MT19937_N;
  g->next = 0;
}

uint32_t sdw_torch_random(sdw_torch_generator *g) {
  if (--g->left == 0) mt_next_state(g);
  uint32_t y = g->state[g->next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint64_t sdw_torch_random64(sdw_torch_generator *g) {
  uint32_t hi = sdw_torch_random(g);
  uint32_t lo = sdw_torch_random(g);
  return ((uint64_t)hi << 32) | lo;
}

float sdw_torch_uniform_f32(sdw_torch_generator *g) {
  uint32_t r = sdw_torch_random(g) & ((1u << 24) - 1u);
  return (float)r * (1.0f / 16777216.0f); /* exact: 24 bits times a power of two */
}

static double uniform_f64(sdw_torch_generator *g) {
  uint64_t r = sdw_torch_random64(g) & ((UINT64_C(1) << 53) - 1u);
  return (double)r * (1.0 / 9007199254740992.0);
}

/* at::normal_distribution<double>: one value, using and refilling the cache. */
static double normal_f64(sdw_torch_generator *g) {
  if (g->has_next_normal) {
    g->has_next_normal = false;
    return g->next_normal;
  }
  double u1 = uniform_f64(g);
  double u2 = uniform_f64(g);
  double r = sqrt(-2.0 * log1p(-u2));
  double two_pi_u1 = 2.0 * M_PI;
  double theta = two_pi_u1 * u1;
  g->next_normal = r * sin(theta);
  g->has_next_normal = true;
  return r * cos(theta);
}

/* --- bit helpers ------------------------------------------------------------ */

static uint32_t f2u(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static float u2f(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* --- avx_mathfun (Cephes single precision), one lane ---------------------------
 * The constants are the decimal literals of avx_mathfun.h rounded to float.
 * fmaf marks each place where GCC fuses the intrinsics' multiply and add. */

#define CEPHES_SQRTHF 0.707106781186547524f
#define LOG_P0        7.0376836292E-2f
#define LOG_P1        -1.1514610310E-1f
#define LOG_P2        1.1676998740E-1f
#define LOG_P3        -1.2420140846E-1f
#define LOG_P4        +1.4249322787E-1f
#define LOG_P5        -1.6668057665E-1f
#define LOG_P6        +2.0000714765E-1f
#define LOG_P7        -2.4999993993E-1f
#define LOG_P8        +3.3333331174E-1f
#define LOG_Q1        -2.12194440e-4f
#define LOG_Q2        0.693359375f

static float avx_logf(float x) {
  /* x <= 0 gives NaN (all bits set) like the intrinsic's invalid mask. */
  bool invalid = x <= 0.0f;
  float min_norm = u2f(0x00800000u);
  x = x > min_norm ? x : min_norm; /* _mm256_max_ps(x, min_norm) */
  uint32_t bits = f2u(x);
  int32_t ex = (int32_t)(bits >> 23);
  x = u2f((bits & ~0x7f800000u) | f2u(0.5f));
  ex -= 0x7f;
  float e = (float)ex;
  e = e + 1.0f;
  bool lt = x < CEPHES_SQRTHF;
  float tmp = lt ? x : 0.0f;
  x = x - 1.0f;
  e = e - (lt ? 1.0f : 0.0f);
  x = x + tmp;
  float z = x * x;
  float y = fmaf(LOG_P0, x, LOG_P1);
  y = fmaf(y, x, LOG_P2);
  y = fmaf(y, x, LOG_P3);
  y = fmaf(y, x, LOG_P4);
  y = fmaf(y, x, LOG_P5);
  y = fmaf(y, x, LOG_P6);
  y = fmaf(y, x, LOG_P7);
  y = fmaf(y, x, LOG_P8);
  y = y * x;
  float eq1 = e * LOG_Q1;
  y = fmaf(y, z, eq1); /* y*z + e*q1: GCC fuses the first product */
  y = fmaf(-z, 0.5f, y);
  x = x + y;
  x = fmaf(e, LOG_Q2, x);
  return invalid ? u2f(0xffffffffu) : x;
}

#define DP1         -0.78515625f
#define DP2         -2.4187564849853515625e-4f
#define DP3         -3.77489497744594108e-8f
#define SINCOF_P0   -1.9515295891E-4f
#define SINCOF_P1   8.3321608736E-3f
#define SINCOF_P2   -1.6666654611E-1f
#define COSCOF_P0   2.443315711809948E-005f
#define COSCOF_P1   -1.388731625493765E-003f
#define COSCOF_P2   4.166664568298827E-002f
#define CEPHES_FOPI 1.27323954473516f

static void avx_sincosf(float x, float *s, float *c) {
  uint32_t sign_sin = f2u(x) & 0x80000000u;
  x = u2f(f2u(x) & 0x7fffffffu);
  float y = x * CEPHES_FOPI;
  int32_t j = (int32_t)y; /* cvttps: truncation */
  j = (j + 1) & ~1;
  y = (float)j;
  uint32_t swap_sign_sin = ((uint32_t)j & 4u) << 29;
  bool poly_mask = (j & 2) == 0;
  x = fmaf(y, DP1, x);
  x = fmaf(y, DP2, x);
  x = fmaf(y, DP3, x);
  int32_t j4 = j - 2;
  uint32_t sign_cos = (~(uint32_t)j4 & 4u) << 29;
  sign_sin ^= swap_sign_sin;

  float z = x * x;
  float yc = fmaf(COSCOF_P0, z, COSCOF_P1);
  yc = fmaf(yc, z, COSCOF_P2);
  yc = yc * z;
  float half_z = z * 0.5f;
  yc = fmaf(yc, z, -half_z); /* (yc*z) - z*0.5: GCC fuses the first product */
  yc = yc + 1.0f;

  float ys = fmaf(SINCOF_P0, z, SINCOF_P1);
  ys = fmaf(ys, z, SINCOF_P2);
  ys = ys * z;
  ys = fmaf(ys, x, x);

  /* The selection of avx_mathfun, with its +0.0 arithmetic kept (it can turn
   * a -0.0 into +0.0). */
  float ysin2 = poly_mask ? ys : 0.0f;
  float ysin1 = poly_mask ? 0.0f : yc;
  ys = ys - ysin2;
  yc = yc - ysin1;
  float rs = ysin1 + ysin2;
  float rc = yc + ys;
  *s = u2f(f2u(rs) ^ sign_sin);
  *c = u2f(f2u(rc) ^ sign_cos);
}

/* normal_fill_16_AVX2 with mean 0, std 1 (torch.randn). */
static void normal16_avx2(float *d) {
  const float two_pi = (float)(2.0 * M_PI);
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j];
    float u2 = d[j + 8];
    float l = avx_logf(u1);
    float m = -2.0f * l;
    float radius = sqrtf(m);
    float theta = two_pi * u2;
    float sn, cs;
    avx_sincosf(theta, &sn, &cs);
    float n1 = radius * cs;
    float n2 = radius * sn;
    d[j] = fmaf(n1, 1.0f, 0.0f); /* _mm256_fmadd_ps(n, std, mean) */
    d[j + 8] = fmaf(n2, 1.0f, 0.0f);
  }
}

/* normal_fill_16<float> (the portable kernel) with mean 0, std 1. */
static void normal16_scalar(float *d) {
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j];
    float u2 = d[j + 8];
    float m = -2.0f * logf(u1);
    float radius = sqrtf(m);
    double two_pi = 2.0 * M_PI;
    double theta_d = two_pi * (double)u2;
    float theta = (float)theta_d;
    float a = radius * cosf(theta);
    float b = radius * sinf(theta);
    d[j] = a * 1.0f + 0.0f;
    d[j + 8] = b * 1.0f + 0.0f;
  }
}

void sdw_torch_randn(sdw_torch_generator *g, float *out, int64_t n) {
  if (n <= 0) return;
  if (n < 16) {
    for (int64_t i = 0; i < n; i++)
      out[i] = (float)normal_f64(g);
    return;
  }
  void (*block)(float *) = g->kernel == SDW_TORCH_NORMAL_SCALAR ? normal16_scalar : normal16_avx2;
  for (int64_t i = 0; i < n; i++)
    out[i] = sdw_torch_uniform_f32(g);
  for (int64_t i = 0; i + 16 <= n; i += 16)
    block(out + i);
  if (n % 16 != 0) {
    /* torch recomputes the last 16 values from 16 fresh uniforms. */
    float *tail = out + n - 16;
    for (int i = 0; i < 16; i++)
      tail[i] = sdw_torch_uniform_f32(g);
    block(tail);
  }
}
