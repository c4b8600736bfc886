/* Memory movement, elementwise arithmetic and layout ops of the CPU backend
 * against plain double references written here; every backward against
 * central finite differences of L = sum(dy .* f(inputs)) in double.
 *
 * Tolerances (normwise relative error max|got - want| / max|want|):
 *  - copy, fill, concat, the NCHW <-> NLC transposes: exact (bitwise).
 *  - add, mul, axpby, bias add: one or two float roundings of the exact
 *    value, <= 2u = 1.2e-7 relative to the largest element: 2e-7 (the
 *    brief's 1e-5 would also pass an op that lost ~7 bits).
 *  - casts: bitwise against a reference that rounds in double (value /
 *    quantum, nearbyint = round-half-even, times quantum) and encodes with
 *    its own bit-level code; NaN stays NaN, +-inf and signed zeros kept.
 *  - backward vs finite differences: every op here is linear in the
 *    perturbed input (mul is bilinear), so the central difference has no
 *    truncation error; with h = 1e-3 its rounding is ~1e-16 sum|dy f|/h
 *    ~1e-10. The op's gradient rounds dy*b (mul) and the += once each, so
 *    <= 2u relative to max|prefill + gradient|: 2e-7; sums over space
 *    (bias backward, <= 45 terms here, accumulated in double) also 2e-7.
 *  - accumulation: gradient buffers are pre-filled with N(0, 0.25) values. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

static void free_all(float **bufs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
}

/* --- copy / fill --------------------------------------------------------------- */

SDW_TEST(copy_and_fill_are_exact) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(301);
  /* f32, with a size that spans several parallel memcpy chunks */
  size_t n = (1u << 19) + 77;
  float *x = ref_normal(&r, n, 1.0f, 0.0f, "x"), *y = sdw_test_alloc_guarded(n, "y");
  sdw_tensor tx = sdw_tensor_2d(x, SDW_F32, 1, (int64_t)n), ty = tx;
  ty.data = y;
  CHECK_OK(ctx->ops->copy(ctx, &tx, &ty));
  CHECK(memcmp(x, y, n * sizeof(float)) == 0);
  CHECK_OK(ctx->ops->fill(ctx, &ty, -2.5f));
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    bad += y[i] != -2.5f;
  CHECK(bad == 0);
  /* any dtype: 16-bit and 64-bit payloads */
  uint16_t *h = sdw_test_alloc_guarded_bytes(2 * 333, "h"),
           *h2 = sdw_test_alloc_guarded_bytes(2 * 333, "h2");
  for (int i = 0; i < 333; i++)
    h[i] = (uint16_t)sdw_test_rng_u64(&r);
  sdw_tensor th = sdw_tensor_3d(h, SDW_F16, 3, 111, 1), th2 = th;
  th2.data = h2;
  CHECK_OK(ctx->ops->copy(ctx, &th, &th2));
  CHECK(memcmp(h, h2, 2 * 333) == 0);
  int64_t *q = sdw_test_alloc_guarded_bytes(8 * 5, "q"),
          *q2 = sdw_test_alloc_guarded_bytes(8 * 5, "q2");
  for (int i = 0; i < 5; i++)
    q[i] = (int64_t)sdw_test_rng_u64(&r);
  sdw_tensor tq = sdw_tensor_1d(q, SDW_I64, 5), tq2 = sdw_tensor_1d(q2, SDW_I64, 5);
  CHECK_OK(ctx->ops->copy(ctx, &tq, &tq2));
  CHECK(memcmp(q, q2, 40) == 0);
  void *bufs[] = {x, y, h, h2, q, q2};
  for (size_t i = 0; i < 6; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  sdw_ctx_destroy(ctx);
}

/* --- casts ------------------------------------------------------------------------ */

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Value of an f16 / bf16 bit pattern, decoded here from the formats'
 * definitions (NaN for NaN patterns). */
static double ref_f16_value(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return s ? -v : v;
}
static double ref_bf16_value(uint16_t b) { return bits_f32((uint32_t)b << 16); }

/* Round-half-even of a finite double v to a binary format with p-bit
 * significands, minimum normal exponent emin and largest finite value max:
 * the result as a double (+-inf on overflow). */
static double ref_round(double v, int p, int emin, double max) {
  if (v == 0.0 || isnan(v) || isinf(v)) return v;
  int e;
  frexp(fabs(v), &e); /* |v| in [2^(e-1), 2^e) */
  int exp = e - 1 < emin ? emin : e - 1;
  double quantum = ldexp(1.0, exp - (p - 1));
  double r = nearbyint(v / quantum) * quantum; /* default rounding: half to even */
  /* overflow: beyond max + half a quantum of the top binade, or a tie there */
  double top_quantum = ldexp(1.0, (int)log2(max) - (p - 1));
  if (fabs(v) >= max + top_quantum / 2) return copysign(INFINITY, v);
  return r == 0.0 ? copysign(0.0, v) : r;
}

/* got (16-bit pattern decoded by value_of) equals want (NaN-aware, signed zero). */
static bool same_value(double got, double want) {
  if (isnan(want)) return isnan(got);
  return got == want && signbit(got) == signbit(want);
}

static void check_cast_from_f32(sdw_ctx *ctx, const float *src, size_t n, sdw_dtype to,
                                const char *what) {
  uint16_t *out = sdw_test_alloc_guarded_bytes(2 * n, "cast out");
  sdw_tensor ts = sdw_tensor_1d((void *)src, SDW_F32, (int64_t)n);
  sdw_tensor td = sdw_tensor_1d(out, to, (int64_t)n);
  CHECK_OK(ctx->ops->cast(ctx, &ts, &td));
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    double v = src[i], got, want;
    if (to == SDW_F16) {
      got = ref_f16_value(out[i]);
      want = isnan(v) ? NAN : ref_round(v, 11, -14, 65504.0);
    } else {
      got = ref_bf16_value(out[i]);
      want = isnan(v) ? NAN : ref_round(v, 8, -126, ldexp(255.0, 120));
    }
    if (!same_value(got, want) && bad++ < 5)
      CHECK_MSG(0, "%s: %a (0x%08x) -> 0x%04x = %a, want %a", what, v, f32_bits(src[i]), out[i],
                got, want);
  }
  CHECK_GUARD(out);
  sdw_test_free_guarded(out);
}

SDW_TEST(cast_f32_to_16bit_rounds_to_nearest_even) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  /* Hand-picked f32 bit patterns; the comment says what each probes. */
  static const uint32_t special[] = {
      0x3f808000, /* bf16 tie between 0x3f80 (even) and 0x3f81 -> 0x3f80 */
      0x3f818000, /* bf16 tie between 0x3f81 and 0x3f82 (even) -> 0x3f82 */
      0x3f808001, /* just above a bf16 tie -> up */
      0x3f807fff, /* just below a bf16 tie -> down */
      0x3f801000, /* f16 tie: 1 + 2^-11 between 1 and 1 + 2^-10 -> 1 */
      0x3f803000, /* f16 tie: 1 + 3*2^-11 -> 1 + 2^-9 (even) */
      0x477fe000, /* 65504 = f16 max, exact */
      0x477ff000, /* 65520: f16 tie between max and 2^16 -> inf */
      0x477fefff, /* just below 65520 -> 65504 */
      0x7f7fffff, /* FLT_MAX: bf16 rounds up to inf */
      0x7f7f0000, /* bf16 max, exact */
      0x33800000, /* 2^-24: smallest f16 subnormal */
      0x33000000, /* 2^-25: f16 tie between 0 and 2^-24 -> +0 */
      0x33400000, /* 1.5*2^-25 -> 2^-24 */
      0x33c00000, /* 1.5*2^-24: f16 tie between 1 and 2 subnormal quanta -> 2 */
      0x387fc000, /* f16 subnormal 1023*2^-24 */
      0x38800000, /* 2^-14: smallest f16 normal */
      0x00000001, /* smallest f32 subnormal: bf16 -> +0 (below half a quantum) */
      0x00008000, /* f32 subnormal, bf16 tie -> +0 (even) */
      0x00018000, /* f32 subnormal, bf16 tie -> 0x0002 (even) */
      0x00010000, /* exact bf16 subnormal */
      0x807fffff, /* largest negative f32 subnormal: bf16 rounds to -2^-126 */
      0x80000000, /* -0 stays -0 */
      0x00000000, 0x7f800000, 0xff800000, /* +0, +inf, -inf */
      0x7fc00000, 0xffc00001,             /* quiet NaNs */
      0x7f800001, 0x7f80ffff, 0xff800001, /* signalling NaNs: must not become inf */
      0x3dcccccd, 0xc0490fdb, 0x4b000001, /* 0.1, -pi, 2^23 + 1 */
  };
  enum { NS = sizeof special / sizeof *special };
  float sv[NS];
  for (int i = 0; i < NS; i++)
    sv[i] = bits_f32(special[i]);
  check_cast_from_f32(ctx, sv, NS, SDW_BF16, "f32->bf16 special");
  check_cast_from_f32(ctx, sv, NS, SDW_F16, "f32->f16 special");
  /* A few outcomes spelled out as bit patterns (worked by hand above). */
  uint16_t o[4];
  float in[4] = {bits_f32(0x3f808000), bits_f32(0x3f818000), bits_f32(0x7f7fffff),
                 bits_f32(0x7f800001)};
  sdw_tensor ti = sdw_tensor_1d(in, SDW_F32, 4), to = sdw_tensor_1d(o, SDW_BF16, 4);
  CHECK_OK(ctx->ops->cast(ctx, &ti, &to));
  CHECK(o[0] == 0x3f80 && o[1] == 0x3f82 && o[2] == 0x7f80);
  CHECK((o[3] & 0x7f80) == 0x7f80 && (o[3] & 0x007f) != 0); /* a NaN */
  float in16[3] = {bits_f32(0x3f803000), bits_f32(0x477ff000), bits_f32(0x33c00000)};
  ti = sdw_tensor_1d(in16, SDW_F32, 3), to = sdw_tensor_1d(o, SDW_F16, 3);
  CHECK_OK(ctx->ops->cast(ctx, &ti, &to));
  CHECK(o[0] == 0x3c02 && o[1] == 0x7c00 && o[2] == 0x0002);

  /* Random bit patterns over the whole f32 range, then random values near
   * 1 (dense ties), in a tensor large enough for the threaded path. */
  enum { NR = 1 << 16 };
  float *rv = sdw_test_alloc_guarded(NR, "random f32");
  sdw_test_rng r = sdw_test_rng_make(302);
  for (int i = 0; i < NR / 2; i++)
    rv[i] = bits_f32((uint32_t)sdw_test_rng_u64(&r));
  for (int i = NR / 2; i < NR; i++) /* 1 + k*2^-16 hits bf16 and f16 ties often */
    rv[i] = (float)(sdw_test_rng_int(&r, -3, 3) + sdw_test_rng_int(&r, 0, 1 << 16) * 0x1p-16);
  check_cast_from_f32(ctx, rv, NR, SDW_BF16, "f32->bf16 random");
  check_cast_from_f32(ctx, rv, NR, SDW_F16, "f32->f16 random");
  CHECK_GUARD(rv);
  sdw_test_free_guarded(rv);
  sdw_ctx_destroy(ctx);
}

/* Every 16-bit pattern: widening is exact; 16 <-> 16 rounds once. */
SDW_TEST(cast_16bit_patterns_widen_exactly_and_convert_between) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  enum { N = 1 << 16 };
  uint16_t *p = sdw_test_alloc_guarded_bytes(2 * N, "patterns");
  uint16_t *o16 = sdw_test_alloc_guarded_bytes(2 * N, "out16");
  float *f = sdw_test_alloc_guarded(N, "out f32");
  for (int i = 0; i < N; i++)
    p[i] = (uint16_t)i;
  for (int k = 0; k < 2; k++) {
    sdw_dtype from = k ? SDW_BF16 : SDW_F16, other = k ? SDW_F16 : SDW_BF16;
    sdw_tensor tp = sdw_tensor_1d(p, from, N), tf = sdw_tensor_1d(f, SDW_F32, N);
    sdw_tensor to = sdw_tensor_1d(o16, other, N);
    CHECK_OK(ctx->ops->cast(ctx, &tp, &tf));
    CHECK_OK(ctx->ops->cast(ctx, &tp, &to));
    int bad = 0;
    for (int i = 0; i < N; i++) {
      double v = k ? ref_bf16_value(p[i]) : ref_f16_value(p[i]);
      if (!same_value(f[i], v) && bad++ < 5)
        CHECK_MSG(0, "%s 0x%04x -> f32 %a, want %a", k ? "bf16" : "f16", i, f[i], v);
      double want = isnan(v) ? NAN
                    : k      ? ref_round(v, 11, -14, 65504.0)
                             : ref_round(v, 8, -126, ldexp(255.0, 120));
      double got = k ? ref_f16_value(o16[i]) : ref_bf16_value(o16[i]);
      if (!same_value(got, want) && bad++ < 5)
        CHECK_MSG(0, "%s 0x%04x -> %a, want %a", k ? "bf16->f16" : "f16->bf16", i, got, want);
    }
  }
  CHECK_GUARD(p), CHECK_GUARD(o16), CHECK_GUARD(f);
  sdw_test_free_guarded(p), sdw_test_free_guarded(o16), sdw_test_free_guarded(f);
  sdw_ctx_destroy(ctx);
}

/* --- add, mul, mul_backward, axpby ------------------------------------------------ */

typedef struct mul_arg {
  size_t n;
  double *a, *b;
  const double *dy;
} mul_arg;

static double mul_loss(void *p) {
  mul_arg *m = p;
  double s = 0.0;
  for (size_t i = 0; i < m->n; i++)
    s += m->dy[i] * m->a[i] * m->b[i];
  return s;
}

SDW_TEST(add_mul_axpby_match_double_reference) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(303);
  const int64_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {2, 13, 1}, {64, 33, 17}};
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    sdw_tensor probe = sdw_tensor_make(NULL, SDW_F32, 3, shapes[s]);
    size_t n = (size_t)sdw_tensor_numel(&probe);
    float *a = ref_normal(&r, n, 2.0f, 0.0f, "a"), *b = ref_normal(&r, n, 2.0f, 0.0f, "b");
    float *y = sdw_test_alloc_guarded(n, "y"), *a2 = ref_clone(a, n, "a in place");
    float *dy = ref_normal(&r, n, 1.0f, 0.0f, "dy");
    float *da = ref_normal(&r, n, 0.5f, 0.0f, "da"), *db = ref_normal(&r, n, 0.5f, 0.0f, "db");
    float *da0 = ref_clone(da, n, "da0"), *db0 = ref_clone(db, n, "db0");
    sdw_tensor ta = sdw_tensor_make(a, SDW_F32, 3, shapes[s]), tb = ta, ty = ta, ta2 = ta;
    sdw_tensor tdy = ta, tda = ta, tdb = ta;
    tb.data = b, ty.data = y, ta2.data = a2, tdy.data = dy, tda.data = da, tdb.data = db;
    double *ad = ref_to_double(a, n), *bd = ref_to_double(b, n), *dyd = ref_to_double(dy, n);
    double *want = ref_zeros(n);

    CHECK_OK(ctx->ops->add(ctx, &ta, &tb, &ty));
    for (size_t i = 0; i < n; i++)
      want[i] = ad[i] + bd[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(y, want, n), 2e-7, "add");
    CHECK_OK(ctx->ops->add(ctx, &ta2, &tb, &ta2)); /* y aliases a */
    CHECK(memcmp(a2, y, n * sizeof(float)) == 0);

    CHECK_OK(ctx->ops->mul(ctx, &ta, &tb, &ty));
    for (size_t i = 0; i < n; i++)
      want[i] = ad[i] * bd[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(y, want, n), 2e-7, "mul");
    memcpy(a2, b, n * sizeof(float));
    CHECK_OK(ctx->ops->mul(ctx, &ta, &ta2, &ta2)); /* y aliases b */
    CHECK(memcmp(a2, y, n * sizeof(float)) == 0);

    CHECK_OK(ctx->ops->mul_backward(ctx, &ta, &tb, &tdy, &tda, &tdb));
    if (n <= 4096) { /* finite differences are O(n^2) */
      double *ga = ref_zeros(n), *gb = ref_zeros(n);
      mul_arg arg = {n, ad, bd, dyd};
      ref_fd_grad(mul_loss, &arg, ad, n, 1e-3, ga);
      ref_fd_grad(mul_loss, &arg, bd, n, 1e-3, gb);
      double *wa = ref_accumulated(da0, ga, n), *wb = ref_accumulated(db0, gb, n);
      CHECK_REL(sdw_test_rel_err_f32_f64(da, wa, n), 2e-7, "mul_backward da");
      CHECK_REL(sdw_test_rel_err_f32_f64(db, wb, n), 2e-7, "mul_backward db");
      free(ga), free(gb), free(wa), free(wb);
    }
    memcpy(db, db0, n * sizeof(float));
    CHECK_OK(ctx->ops->mul_backward(ctx, &ta, &tb, &tdy, NULL, &tdb)); /* da skipped */
    for (size_t i = 0; i < n; i++)
      want[i] = (double)db0[i] + dyd[i] * ad[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(db, want, n), 2e-7, "mul_backward db alone");

    /* axpby: beta = 0 overwrites garbage (the NaN fill of a fresh guarded buffer) */
    float *g = sdw_test_alloc_guarded(n, "axpby y");
    sdw_tensor tg = ta;
    tg.data = g;
    CHECK_OK(ctx->ops->axpby(ctx, -1.5f, &ta, 0.0f, &tg));
    for (size_t i = 0; i < n; i++)
      want[i] = -1.5 * ad[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(g, want, n), 2e-7, "axpby beta=0");
    CHECK_OK(ctx->ops->axpby(ctx, 1.0f, &tb, 1.0f, &tg)); /* y += x */
    for (size_t i = 0; i < n; i++)
      want[i] = (double)(float)(-1.5 * ad[i]) + bd[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(g, want, n), 2e-7, "axpby 1,1");
    float *g0 = ref_clone(g, n, "axpby y0");
    CHECK_OK(ctx->ops->axpby(ctx, 0.25f, &ta, -3.0f, &tg));
    for (size_t i = 0; i < n; i++)
      want[i] = 0.25 * ad[i] - 3.0 * g0[i];
    CHECK_REL(sdw_test_rel_err_f32_f64(g, want, n), 2e-7, "axpby general");

    float *bufs[] = {a, b, y, a2, dy, da, db, da0, db0, g, g0};
    free_all(bufs, sizeof bufs / sizeof *bufs);
    free(ad), free(bd), free(dyd), free(want);
  }
  sdw_ctx_destroy(ctx);
}

/* --- per-channel bias -------------------------------------------------------------- */

typedef struct bias_arg {
  size_t rows, s;
  const double *x, *dy;
  double *bias;
} bias_arg;

static double bias_loss(void *p) {
  bias_arg *a = p;
  double l = 0.0;
  for (size_t r = 0; r < a->rows; r++)
    for (size_t i = 0; i < a->s; i++)
      l += a->dy[r * a->s + i] * (a->x[r * a->s + i] + a->bias[r]);
  return l;
}

SDW_TEST(add_channel_bias_and_backward) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(304);
  const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 5, 3, 7}, {3, 4, 9, 5}, {2, 320, 16, 16}};
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    const int64_t *sh = shapes[k];
    size_t rows = (size_t)(sh[0] * sh[1]), s = (size_t)(sh[2] * sh[3]), n = rows * s;
    float *x = ref_normal(&r, n, 1.0f, 0.0f, "x"), *bias = ref_normal(&r, rows, 1.0f, 0.0f, "bias");
    float *y = sdw_test_alloc_guarded(n, "y"), *x2 = ref_clone(x, n, "x in place");
    float *dy = ref_normal(&r, n, 1.0f, 0.0f, "dy"), *db = ref_normal(&r, rows, 0.5f, 0.0f, "db");
    float *db0 = ref_clone(db, rows, "db0");
    sdw_tensor tx = sdw_tensor_make(x, SDW_F32, 4, sh), ty = tx, tx2 = tx, tdy = tx;
    ty.data = y, tx2.data = x2, tdy.data = dy;
    sdw_tensor tb = sdw_tensor_2d(bias, SDW_F32, sh[0], sh[1]), tdb = tb;
    tdb.data = db;
    CHECK_OK(ctx->ops->add_channel_bias(ctx, &tx, &tb, &ty));
    double *want = ref_zeros(n);
    for (size_t i = 0; i < n; i++)
      want[i] = (double)x[i] + bias[i / s];
    CHECK_REL(sdw_test_rel_err_f32_f64(y, want, n), 2e-7, "add_channel_bias");
    CHECK_OK(ctx->ops->add_channel_bias(ctx, &tx2, &tb, &tx2));
    CHECK(memcmp(x2, y, n * sizeof(float)) == 0);
    CHECK_OK(ctx->ops->add_channel_bias_backward(ctx, &tdy, &tdb));
    double *xd = ref_to_double(x, n), *dyd = ref_to_double(dy, n), *bd = ref_to_double(bias, rows);
    double *g = ref_zeros(rows);
    if (n <= 4096) {
      bias_arg arg = {rows, s, xd, dyd, bd};
      ref_fd_grad(bias_loss, &arg, bd, rows, 1e-3, g);
    } else { /* big shape (threaded): the sum itself */
      for (size_t i = 0; i < n; i++)
        g[i / s] += dyd[i];
    }
    double *wb = ref_accumulated(db0, g, rows);
    CHECK_REL(sdw_test_rel_err_f32_f64(db, wb, rows), 2e-7, "add_channel_bias_backward");
    CHECK_OK(ctx->ops->add_channel_bias_backward(ctx, &tdy, NULL));
    float *bufs[] = {x, bias, y, x2, dy, db, db0};
    free_all(bufs, sizeof bufs / sizeof *bufs);
    free(want), free(xd), free(dyd), free(bd), free(g), free(wb);
  }
  sdw_ctx_destroy(ctx);
}

/* --- concat and the layout transposes ----------------------------------------------- */

/* L = sum dy .* layout(x) for a permutation layout: map[i] = the index of y
 * that x[i] lands in. */
typedef struct perm_arg {
  size_t n;
  const size_t *map;
  const double *dy;
  double *x;
} perm_arg;

static double perm_loss(void *p) {
  perm_arg *a = p;
  double l = 0.0;
  for (size_t i = 0; i < a->n; i++)
    l += a->dy[a->map[i]] * a->x[i];
  return l;
}

/* Gradient of a permutation: forward bitwise via map, backward vs finite
 * differences (when small) or the gathered dy, accumulated. */
static void check_perm_backward(const float *dx, const float *dx0, const float *dy, size_t ndy,
                                const size_t *map, size_t n, const char *what) {
  double *g = ref_zeros(n), *dyd = ref_to_double(dy, ndy);
  if (n <= 4096) {
    double *x = ref_zeros(n);
    perm_arg arg = {n, map, dyd, x};
    ref_fd_grad(perm_loss, &arg, x, n, 1e-3, g);
    free(x);
  } else {
    for (size_t i = 0; i < n; i++)
      g[i] = dyd[map[i]];
  }
  double *w = ref_accumulated(dx0, g, n);
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, w, n), 2e-7, what);
  free(g), free(dyd), free(w);
}

SDW_TEST(concat_channels_and_backward) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(305);
  const int cases[][5] = {{1, 1, 1, 1, 1}, {2, 3, 5, 2, 7}, {3, 7, 2, 4, 3}, {2, 64, 96, 16, 16}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    int n = cases[k][0], ca = cases[k][1], cb = cases[k][2], h = cases[k][3], w = cases[k][4];
    size_t s = (size_t)h * w, na = (size_t)n * ca * s, nb = (size_t)n * cb * s, ny = na + nb;
    float *a = ref_normal(&r, na, 1.0f, 0.0f, "a"), *b = ref_normal(&r, nb, 1.0f, 0.0f, "b");
    float *y = sdw_test_alloc_guarded(ny, "y"), *dy = ref_normal(&r, ny, 1.0f, 0.0f, "dy");
    float *da = ref_normal(&r, na, 0.5f, 0.0f, "da"), *db = ref_normal(&r, nb, 0.5f, 0.0f, "db");
    float *da0 = ref_clone(da, na, "da0"), *db0 = ref_clone(db, nb, "db0");
    sdw_tensor ta = sdw_tensor_4d(a, SDW_F32, n, ca, h, w),
               tb = sdw_tensor_4d(b, SDW_F32, n, cb, h, w);
    sdw_tensor ty = sdw_tensor_4d(y, SDW_F32, n, ca + cb, h, w), tdy = ty;
    tdy.data = dy;
    sdw_tensor tda = ta, tdb = tb;
    tda.data = da, tdb.data = db;
    CHECK_OK(ctx->ops->concat_channels(ctx, &ta, &tb, &ty));
    size_t *ma = malloc(na * sizeof *ma), *mb = malloc(nb * sizeof *mb);
    for (size_t i = 0; i < na; i++)
      ma[i] = (i / (ca * s) * (ca + cb)) * s + i % (ca * s);
    for (size_t i = 0; i < nb; i++)
      mb[i] = (i / (cb * s) * (ca + cb) + ca) * s + i % (cb * s);
    int bad = 0;
    for (size_t i = 0; i < na; i++)
      bad += y[ma[i]] != a[i];
    for (size_t i = 0; i < nb; i++)
      bad += y[mb[i]] != b[i];
    CHECK_MSG(bad == 0, "concat_channels: %d misplaced elements", bad);
    CHECK_OK(ctx->ops->concat_channels_backward(ctx, &tdy, &tda, &tdb));
    check_perm_backward(da, da0, dy, ny, ma, na, "concat backward da");
    check_perm_backward(db, db0, dy, ny, mb, nb, "concat backward db");
    /* one side only */
    memcpy(db, db0, nb * sizeof(float));
    CHECK_OK(ctx->ops->concat_channels_backward(ctx, &tdy, NULL, &tdb));
    check_perm_backward(db, db0, dy, ny, mb, nb, "concat backward db alone");
    memcpy(da, da0, na * sizeof(float));
    CHECK_OK(ctx->ops->concat_channels_backward(ctx, &tdy, &tda, NULL));
    check_perm_backward(da, da0, dy, ny, ma, na, "concat backward da alone");
    float *bufs[] = {a, b, y, dy, da, db, da0, db0};
    free_all(bufs, sizeof bufs / sizeof *bufs);
    free(ma), free(mb);
  }
  sdw_ctx_destroy(ctx);
}

SDW_TEST(nchw_nlc_transposes_and_backward) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(306);
  /* sizes around and across the 32-wide tiles, plus one SD-like shape */
  const int cases[][4] = {
      {1, 1, 1, 1}, {2, 3, 5, 7}, {1, 37, 5, 9}, {2, 70, 8, 8}, {2, 320, 32, 32}};
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    int n = cases[k][0], c = cases[k][1], h = cases[k][2], w = cases[k][3];
    size_t l = (size_t)h * w, total = (size_t)n * c * l;
    float *x = ref_normal(&r, total, 1.0f, 0.0f, "x"), *y = sdw_test_alloc_guarded(total, "y");
    float *back = sdw_test_alloc_guarded(total, "back");
    float *dy = ref_normal(&r, total, 1.0f, 0.0f, "dy"),
          *dx = ref_normal(&r, total, 0.5f, 0.0f, "dx");
    float *dx0 = ref_clone(dx, total, "dx0");
    /* map[i] for x[n,c,p] -> y[n,p,c] */
    size_t *map = malloc(total * sizeof *map), *inv = malloc(total * sizeof *inv);
    for (size_t i = 0; i < total; i++) {
      size_t nn = i / (c * l), cc = i / l % c, p = i % l;
      map[i] = (nn * l + p) * c + cc;
      inv[map[i]] = i;
    }
    sdw_tensor tx = sdw_tensor_4d(x, SDW_F32, n, c, h, w), ty = sdw_tensor_3d(y, SDW_F32, n, l, c);
    sdw_tensor tback = sdw_tensor_4d(back, SDW_F32, n, c, h, w);
    CHECK_OK(ctx->ops->nchw_to_nlc(ctx, &tx, &ty));
    int bad = 0;
    for (size_t i = 0; i < total; i++)
      bad += y[map[i]] != x[i];
    CHECK_MSG(bad == 0, "nchw_to_nlc [%d,%d,%d,%d]: %d misplaced", n, c, h, w, bad);
    CHECK_OK(ctx->ops->nlc_to_nchw(ctx, &ty, &tback));
    CHECK(memcmp(back, x, total * sizeof(float)) == 0);
    /* nchw_to_nlc backward: dy[N,L,C] -> dx[N,C,H,W] += */
    sdw_tensor tdy = sdw_tensor_3d(dy, SDW_F32, n, l, c),
               tdx = sdw_tensor_4d(dx, SDW_F32, n, c, h, w);
    CHECK_OK(ctx->ops->nchw_to_nlc_backward(ctx, &tdy, &tdx));
    check_perm_backward(dx, dx0, dy, total, map, total, "nchw_to_nlc backward");
    /* nlc_to_nchw backward: dy[N,C,H,W] -> dx[N,L,C] += ; x[N,L,C] element j
     * lands in y[N,C,H,W] at inv[j] */
    memcpy(dx, dx0, total * sizeof(float));
    sdw_tensor tdy4 = sdw_tensor_4d(dy, SDW_F32, n, c, h, w),
               tdx3 = sdw_tensor_3d(dx, SDW_F32, n, l, c);
    CHECK_OK(ctx->ops->nlc_to_nchw_backward(ctx, &tdy4, &tdx3));
    check_perm_backward(dx, dx0, dy, total, inv, total, "nlc_to_nchw backward");
    float *bufs[] = {x, y, back, dy, dx, dx0};
    free_all(bufs, sizeof bufs / sizeof *bufs);
    free(map), free(inv);
  }
  sdw_ctx_destroy(ctx);
}
