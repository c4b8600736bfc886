/* kernels/cpu/attention.c against a plain double-precision reference written
 * here (on double copies of the float inputs), and its backward against
 * central finite differences in double of L = sum(dy .* attention(q, k, v)).
 *
 * Tolerances (normwise relative error, max|got - want| / max|want|):
 *  - forward out and lse: 1e-5. The float kernel rounds a Dh-term dot
 *    product per score (~sqrt(Dh) u), uses an exp with relative error
 *    ~1e-7, and sums <= Tk probabilities and Tk value rows in float
 *    (~sqrt(Tk) u, u = 6e-8): about 1e-6 for the shapes here, so 1e-5 keeps
 *    a 10x margin while any indexing, masking or normalisation mistake
 *    shows up as an O(1e-2..1) error.
 *  - backward (kernel vs the analytic double reference and vs finite
 *    differences): 1e-5, the same budget (the backward adds a recompute of
 *    the scores and three more float sums of <= max(Tq, Tk) terms).
 *  - the analytic double reference vs finite differences: 1e-7. Central
 *    differences with step 1e-5 have truncation error ~h^2 |f'''| ~ 1e-10
 *    and rounding ~u_double |L| / h ~ 1e-10, so 1e-7 is generous yet far
 *    below any formula mistake. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"

enum { MASK_NONE, MASK_RANDOM, MASK_EMPTY_BATCH, MASK_PREFIX };

typedef struct attn_case {
  int b, tq, tk, h, dh;
  bool causal;
  int mask;
  double scale_mul; /* scale = scale_mul / sqrt(dh) */
  bool fd;          /* also check against finite differences (small shapes only) */
} attn_case;

static size_t qidx(const attn_case *c, int b, int i, int h, int d) {
  return (((size_t)b * c->tq + i) * c->h + h) * c->dh + d;
}
static size_t kidx(const attn_case *c, int b, int j, int h, int d) {
  return (((size_t)b * c->tk + j) * c->h + h) * c->dh + d;
}

static bool allowed(const attn_case *c, const uint8_t *mask, int b, int i, int j) {
  if (c->causal && j > i) return false;
  if (mask && !mask[(size_t)b * c->tk + j]) return false;
  return true;
}

/* Probabilities p[Tk] of query (b, i, h); returns false when no key is left
 * (p all zero, *lse = -inf). */
static bool ref_probs(const attn_case *c, const double *q, const double *k, const uint8_t *mask,
                      double scale, int b, int i, int h, double *p, double *lse) {
  double m = -INFINITY;
  for (int j = 0; j < c->tk; j++) {
    p[j] = -INFINITY;
    if (!allowed(c, mask, b, i, j)) continue;
    double s = 0;
    for (int d = 0; d < c->dh; d++)
      s += q[qidx(c, b, i, h, d)] * k[kidx(c, b, j, h, d)];
    p[j] = s * scale;
    if (p[j] > m) m = p[j];
  }
  if (m == -INFINITY) {
    for (int j = 0; j < c->tk; j++)
      p[j] = 0;
    *lse = -INFINITY;
    return false;
  }
  double sum = 0;
  for (int j = 0; j < c->tk; j++) {
    p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - m);
    sum += p[j];
  }
  for (int j = 0; j < c->tk; j++)
    p[j] /= sum;
  *lse = m + log(sum);
  return true;
}

/* out[B,Tq,H,Dh], lse[B,H,Tq] (lse may be NULL). */
static void ref_forward(const attn_case *c, const double *q, const double *k, const double *v,
                        const uint8_t *mask, double scale, double *out, double *lse, double *p) {
  for (int b = 0; b < c->b; b++)
    for (int h = 0; h < c->h; h++)
      for (int i = 0; i < c->tq; i++) {
        double l;
        ref_probs(c, q, k, mask, scale, b, i, h, p, &l);
        if (lse) lse[((size_t)b * c->h + h) * c->tq + i] = l;
        for (int d = 0; d < c->dh; d++) {
          double acc = 0;
          for (int j = 0; j < c->tk; j++)
            acc += p[j] * v[kidx(c, b, j, h, d)];
          out[qidx(c, b, i, h, d)] = acc;
        }
      }
}

/* Analytic gradients (overwritten): with P the probabilities,
 * dP = dy V^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS K,
 * dk = scale dS^T Q, dv = P^T dy. */
static void ref_backward(const attn_case *c, const double *q, const double *k, const double *v,
                         const uint8_t *mask, double scale, const double *dy, double *dq,
                         double *dk, double *dv) {
  size_t nq = (size_t)c->b * c->tq * c->h * c->dh, nk = (size_t)c->b * c->tk * c->h * c->dh;
  memset(dq, 0, nq * sizeof *dq);
  memset(dk, 0, nk * sizeof *dk);
  memset(dv, 0, nk * sizeof *dv);
  double *p = malloc((size_t)c->tk * sizeof *p), *dp = malloc((size_t)c->tk * sizeof *dp);
  for (int b = 0; b < c->b; b++)
    for (int h = 0; h < c->h; h++)
      for (int i = 0; i < c->tq; i++) {
        double l;
        if (!ref_probs(c, q, k, mask, scale, b, i, h, p, &l)) continue;
        double rs = 0;
        for (int j = 0; j < c->tk; j++) {
          dp[j] = 0;
          for (int d = 0; d < c->dh; d++)
            dp[j] += dy[qidx(c, b, i, h, d)] * v[kidx(c, b, j, h, d)];
          rs += p[j] * dp[j];
        }
        for (int j = 0; j < c->tk; j++) {
          double ds = p[j] * (dp[j] - rs) * scale;
          for (int d = 0; d < c->dh; d++) {
            dq[qidx(c, b, i, h, d)] += ds * k[kidx(c, b, j, h, d)];
            dk[kidx(c, b, j, h, d)] += ds * q[qidx(c, b, i, h, d)];
            dv[kidx(c, b, j, h, d)] += p[j] * dy[qidx(c, b, i, h, d)];
          }
        }
      }
  free(p);
  free(dp);
}

static double ref_loss(const attn_case *c, const double *q, const double *k, const double *v,
                       const uint8_t *mask, double scale, const double *dy, double *out_tmp,
                       double *p) {
  ref_forward(c, q, k, v, mask, scale, out_tmp, NULL, p);
  double l = 0;
  size_t n = (size_t)c->b * c->tq * c->h * c->dh;
  for (size_t i = 0; i < n; i++)
    l += dy[i] * out_tmp[i];
  return l;
}

/* Central differences of ref_loss with respect to every element of x. */
static void fd_grad(const attn_case *c, double *q, double *k, double *v, const uint8_t *mask,
                    double scale, const double *dy, double *x, size_t n, double *grad) {
  const double step = 1e-5;
  double *tmp = malloc((size_t)c->b * c->tq * c->h * c->dh * sizeof *tmp);
  double *p = malloc((size_t)c->tk * sizeof *p);
  for (size_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + step;
    double lp = ref_loss(c, q, k, v, mask, scale, dy, tmp, p);
    x[i] = x0 - step;
    double lm = ref_loss(c, q, k, v, mask, scale, dy, tmp, p);
    x[i] = x0;
    grad[i] = (lp - lm) / (2 * step);
  }
  free(tmp);
  free(p);
}

static double *to_double(const float *x, size_t n) {
  double *y = malloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

/* got (float, pre-filled with base) minus base, against want. */
static double rel_err_accum(const float *got, const float *base, const double *want, size_t n) {
  double *w = malloc(n * sizeof *w);
  for (size_t i = 0; i < n; i++)
    w[i] = want[i] + base[i];
  double e = sdw_test_rel_err_f32_f64(got, w, n);
  free(w);
  return e;
}

static void run_case(sdw_ctx *ctx, const attn_case *c, uint64_t seed) {
  char what[160];
  snprintf(what, sizeof what, "B%d Tq%d Tk%d H%d Dh%d causal%d mask%d", c->b, c->tq, c->tk, c->h,
           c->dh, (int)c->causal, c->mask);
  sdw_test_rng rng = sdw_test_rng_make(seed);
  const size_t nq = (size_t)c->b * c->tq * c->h * c->dh, nk = (size_t)c->b * c->tk * c->h * c->dh;
  const size_t nl = (size_t)c->b * c->h * c->tq;
  const double scale = c->scale_mul / sqrt((double)c->dh);

  float *q = sdw_test_alloc_guarded(nq, "q"), *k = sdw_test_alloc_guarded(nk, "k");
  float *v = sdw_test_alloc_guarded(nk, "v"), *dy = sdw_test_alloc_guarded(nq, "dy");
  sdw_test_fill_normal(&rng, q, nq, 1.0f);
  sdw_test_fill_normal(&rng, k, nk, 1.0f);
  sdw_test_fill_normal(&rng, v, nk, 1.0f);
  sdw_test_fill_normal(&rng, dy, nq, 1.0f);
  uint8_t *mask = NULL;
  if (c->mask != MASK_NONE) {
    mask = sdw_test_alloc_guarded_bytes((size_t)c->b * c->tk, "key_mask");
    for (int b = 0; b < c->b; b++)
      for (int j = 0; j < c->tk; j++) {
        uint8_t keep = 1;
        if (c->mask == MASK_RANDOM) keep = sdw_test_rng_uniform(&rng) < 0.7;
        if (c->mask == MASK_EMPTY_BATCH) keep = b != c->b - 1 && j % 3 != 1;
        if (c->mask == MASK_PREFIX) keep = j >= 3;
        /* Any non-zero byte means "keep". */
        mask[(size_t)b * c->tk + j] = keep ? (uint8_t)(1 + sdw_test_rng_int(&rng, 0, 254)) : 0;
      }
  }
  double *qd = to_double(q, nq), *kd = to_double(k, nk), *vd = to_double(v, nk);
  double *dyd = to_double(dy, nq);

  /* Forward vs the double reference. */
  double *outd = malloc(nq * sizeof *outd), *lsed = malloc(nl * sizeof *lsed);
  double *p = malloc((size_t)c->tk * sizeof *p);
  ref_forward(c, qd, kd, vd, mask, scale, outd, lsed, p);
  float *out = sdw_test_alloc_guarded(nq, "out"), *lse = sdw_test_alloc_guarded(nl, "lse");
  sdw_tensor tq = sdw_tensor_4d(q, SDW_F32, c->b, c->tq, c->h, c->dh);
  sdw_tensor tk = sdw_tensor_4d(k, SDW_F32, c->b, c->tk, c->h, c->dh);
  sdw_tensor tv = sdw_tensor_4d(v, SDW_F32, c->b, c->tk, c->h, c->dh);
  sdw_tensor tout = sdw_tensor_4d(out, SDW_F32, c->b, c->tq, c->h, c->dh);
  sdw_tensor tlse = sdw_tensor_3d(lse, SDW_F32, c->b, c->h, c->tq);
  sdw_tensor tdy = sdw_tensor_4d(dy, SDW_F32, c->b, c->tq, c->h, c->dh);
  sdw_tensor tmask = sdw_tensor_2d(mask, SDW_U8, c->b, c->tk);
  const sdw_tensor *pm = mask ? &tmask : NULL;
  CHECK_OK(
      ctx->ops->attention_forward(ctx, &tq, &tk, &tv, pm, c->causal, (float)scale, &tout, &tlse));
  char w2[200];
  snprintf(w2, sizeof w2, "%s: out", what);
  CHECK_REL(sdw_test_rel_err_f32_f64(out, outd, nq), 1e-5, w2);
  snprintf(w2, sizeof w2, "%s: lse", what);
  CHECK_REL(sdw_test_rel_err_f32_f64(lse, lsed, nl), 1e-5, w2);
  /* Queries with no key: exactly zero output and lse = -inf. */
  for (int b = 0; b < c->b; b++)
    for (int h = 0; h < c->h; h++)
      for (int i = 0; i < c->tq; i++) {
        if (lsed[((size_t)b * c->h + h) * c->tq + i] != -INFINITY) continue;
        CHECK(lse[((size_t)b * c->h + h) * c->tq + i] == -INFINITY);
        for (int d = 0; d < c->dh; d++)
          CHECK(out[qidx(c, b, i, h, d)] == 0.0f);
      }
  CHECK_GUARD(out);
  CHECK_GUARD(lse);

  /* Backward: gradients accumulate onto pre-filled buffers. */
  double *dqd = malloc(nq * sizeof *dqd), *dkd = malloc(nk * sizeof *dkd);
  double *dvd = malloc(nk * sizeof *dvd);
  ref_backward(c, qd, kd, vd, mask, scale, dyd, dqd, dkd, dvd);
  float *dq = sdw_test_alloc_guarded(nq, "dq"), *dk = sdw_test_alloc_guarded(nk, "dk");
  float *dv = sdw_test_alloc_guarded(nk, "dv");
  float *dq0 = malloc(nq * sizeof *dq0), *dk0 = malloc(nk * sizeof *dk0);
  float *dv0 = malloc(nk * sizeof *dv0);
  sdw_test_fill_normal(&rng, dq0, nq, 0.5f);
  sdw_test_fill_normal(&rng, dk0, nk, 0.5f);
  sdw_test_fill_normal(&rng, dv0, nk, 0.5f);
  memcpy(dq, dq0, nq * sizeof *dq);
  memcpy(dk, dk0, nk * sizeof *dk);
  memcpy(dv, dv0, nk * sizeof *dv);
  sdw_tensor tdq = sdw_tensor_4d(dq, SDW_F32, c->b, c->tq, c->h, c->dh);
  sdw_tensor tdk = sdw_tensor_4d(dk, SDW_F32, c->b, c->tk, c->h, c->dh);
  sdw_tensor tdv = sdw_tensor_4d(dv, SDW_F32, c->b, c->tk, c->h, c->dh);
  CHECK_OK(ctx->ops->attention_backward(ctx, &tq, &tk, &tv, pm, c->causal, (float)scale, &tout,
                                        &tlse, &tdy, &tdq, &tdk, &tdv));
  snprintf(w2, sizeof w2, "%s: dq", what);
  CHECK_REL(rel_err_accum(dq, dq0, dqd, nq), 1e-5, w2);
  snprintf(w2, sizeof w2, "%s: dk", what);
  CHECK_REL(rel_err_accum(dk, dk0, dkd, nk), 1e-5, w2);
  snprintf(w2, sizeof w2, "%s: dv", what);
  CHECK_REL(rel_err_accum(dv, dv0, dvd, nk), 1e-5, w2);
  CHECK_GUARD(dq);
  CHECK_GUARD(dk);
  CHECK_GUARD(dv);

  if (c->fd) {
    /* The reference and the kernel against finite differences. */
    double *g = malloc((nq > nk ? nq : nk) * sizeof *g);
    struct {
      double *x, *analytic;
      const float *got, *base;
      size_t n;
      const char *name;
    } parts[3] = {
        {qd, dqd, dq, dq0, nq, "dq"}, {kd, dkd, dk, dk0, nk, "dk"}, {vd, dvd, dv, dv0, nk, "dv"}};
    for (int t = 0; t < 3; t++) {
      fd_grad(c, qd, kd, vd, mask, scale, dyd, parts[t].x, parts[t].n, g);
      snprintf(w2, sizeof w2, "%s: reference %s vs finite differences", what, parts[t].name);
      CHECK_REL(sdw_test_rel_err_f64(parts[t].analytic, g, parts[t].n), 1e-7, w2);
      snprintf(w2, sizeof w2, "%s: %s vs finite differences", what, parts[t].name);
      CHECK_REL(rel_err_accum(parts[t].got, parts[t].base, g, parts[t].n), 1e-5, w2);
    }
    free(g);
  }

  sdw_test_free_guarded(q), sdw_test_free_guarded(k), sdw_test_free_guarded(v);
  sdw_test_free_guarded(dy), sdw_test_free_guarded(mask);
  sdw_test_free_guarded(out), sdw_test_free_guarded(lse);
  sdw_test_free_guarded(dq), sdw_test_free_guarded(dk), sdw_test_free_guarded(dv);
  free(qd), free(kd), free(vd), free(dyd), free(outd), free(lsed), free(p);
  free(dqd), free(dkd), free(dvd), free(dq0), free(dk0), free(dv0);
}

static sdw_ctx *make_ctx(void) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  /* Two threads even on a one-core runner, so both backward schedules (whole
   * (batch, head) pairs per thread, or shared query blocks with dK/dV
   * partials) are exercised. */
  if (ctx) ctx->num_threads = 2;
  return ctx;
}

SDW_TEST(attention_small_shapes_vs_reference_and_finite_differences) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  static const attn_case cases[] = {
      {1, 1, 1, 1, 8, false, MASK_NONE, 1.0, true},
      {1, 1, 1, 1, 8, true, MASK_NONE, 1.0, true},
      {2, 7, 7, 2, 8, true, MASK_NONE, 1.0, true},
      {2, 7, 9, 3, 13, false, MASK_RANDOM, 1.0, true},
      {2, 5, 6, 2, 8, false, MASK_EMPTY_BATCH, 1.0, true}, /* batch 1: no keys at all */
      {1, 9, 9, 2, 8, true, MASK_PREFIX, 1.0, true},       /* queries 0..2: no keys */
      {1, 9, 5, 1, 7, true, MASK_RANDOM, 1.0, true},       /* causal with Tq > Tk */
      {1, 3, 11, 2, 5, true, MASK_NONE, 1.0, true},        /* causal with Tq < Tk */
      {1, 6, 7, 1, 40, false, MASK_NONE, 1.0, true},
      {1, 4, 5, 1, 160, false, MASK_RANDOM, 1.0, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(ctx, &cases[i], 100 + i);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(attention_larger_shapes_vs_reference) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  static const attn_case cases[] = {
      {2, 130, 77, 2, 40, false, MASK_RANDOM, 1.0, false}, /* cross-attention, 77 tokens */
      {1, 77, 77, 2, 80, true, MASK_NONE, 1.0, false},
      {1, 77, 130, 1, 160, false, MASK_NONE, 1.0, false},
      {1, 130, 77, 2, 40, false, MASK_NONE, 4.0, false}, /* peaky softmax */
      /* Several query blocks per (batch, head) (blocks have <= 256 rows):
       * one pair (dK/dV partials across threads), three pairs (partials),
       * two pairs (one per thread). */
      {1, 130, 1030, 1, 8, false, MASK_RANDOM, 1.0, false},
      {1, 600, 130, 1, 8, true, MASK_RANDOM, 1.0, false},
      {1, 530, 77, 3, 8, true, MASK_NONE, 1.0, false},
      {1, 600, 301, 2, 13, true, MASK_PREFIX, 1.0, false},
      {2, 70, 1030, 1, 8, false, MASK_EMPTY_BATCH, 1.0, false},
      /* Key sequences over 768 are split into key blocks folded in with the
       * online softmax (running max and rescaling); causal rows end inside
       * either block. */
      {1, 900, 900, 1, 8, true, MASK_RANDOM, 1.0, false},
      {1, 40, 1500, 2, 16, false, MASK_NONE, 3.0, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(ctx, &cases[i], 200 + i);
  sdw_ctx_destroy(ctx);
}

/* Optional outputs: lse may be NULL in the forward; NULL gradients are
 * skipped and the others are unaffected by what is skipped. */
SDW_TEST(attention_optional_outputs) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  const attn_case c = {2, 33, 40, 2, 16, true, MASK_RANDOM, 1.0, false};
  sdw_test_rng rng = sdw_test_rng_make(7);
  const size_t nq = (size_t)c.b * c.tq * c.h * c.dh, nk = (size_t)c.b * c.tk * c.h * c.dh;
  const double scale = 1.0 / sqrt((double)c.dh);
  float *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
  float *dy = malloc(nq * sizeof *dy);
  uint8_t *mask = malloc((size_t)c.b * c.tk);
  sdw_test_fill_normal(&rng, q, nq, 1.0f);
  sdw_test_fill_normal(&rng, k, nk, 1.0f);
  sdw_test_fill_normal(&rng, v, nk, 1.0f);
  sdw_test_fill_normal(&rng, dy, nq, 1.0f);
  for (int i = 0; i < c.b * c.tk; i++)
    mask[i] = sdw_test_rng_uniform(&rng) < 0.6;
  double *qd = to_double(q, nq), *kd = to_double(k, nk), *vd = to_double(v, nk);
  double *dyd = to_double(dy, nq);
  double *outd = malloc(nq * sizeof *outd), *p = malloc((size_t)c.tk * sizeof *p);
  double *dqd = malloc(nq * sizeof *dqd), *dkd = malloc(nk * sizeof *dkd);
  double *dvd = malloc(nk * sizeof *dvd);
  ref_forward(&c, qd, kd, vd, mask, scale, outd, NULL, p);
  ref_backward(&c, qd, kd, vd, mask, scale, dyd, dqd, dkd, dvd);

  float *out = sdw_test_alloc_guarded(nq, "out"), *lse = sdw_test_alloc_guarded(nq, "lse");
  sdw_tensor tq = sdw_tensor_4d(q, SDW_F32, c.b, c.tq, c.h, c.dh);
  sdw_tensor tk = sdw_tensor_4d(k, SDW_F32, c.b, c.tk, c.h, c.dh);
  sdw_tensor tv = sdw_tensor_4d(v, SDW_F32, c.b, c.tk, c.h, c.dh);
  sdw_tensor tout = sdw_tensor_4d(out, SDW_F32, c.b, c.tq, c.h, c.dh);
  sdw_tensor tlse = sdw_tensor_3d(lse, SDW_F32, c.b, c.h, c.tq);
  sdw_tensor tdy = sdw_tensor_4d(dy, SDW_F32, c.b, c.tq, c.h, c.dh);
  sdw_tensor tmask = sdw_tensor_2d(mask, SDW_U8, c.b, c.tk);
  CHECK_OK(
      ctx->ops->attention_forward(ctx, &tq, &tk, &tv, &tmask, true, (float)scale, &tout, NULL));
  CHECK_REL(sdw_test_rel_err_f32_f64(out, outd, nq), 1e-5, "out without lse"); /* see top */
  CHECK_OK(
      ctx->ops->attention_forward(ctx, &tq, &tk, &tv, &tmask, true, (float)scale, &tout, &tlse));
  /* Each gradient alone (others NULL), from zero. */
  const double *want[3] = {dqd, dkd, dvd};
  const size_t n[3] = {nq, nk, nk};
  for (int which = 0; which < 3; which++) {
    float *g = sdw_test_alloc_guarded(n[which], "grad");
    memset(g, 0, n[which] * sizeof *g);
    sdw_tensor tg = sdw_tensor_4d(g, SDW_F32, c.b, which == 0 ? c.tq : c.tk, c.h, c.dh);
    CHECK_OK(ctx->ops->attention_backward(ctx, &tq, &tk, &tv, &tmask, true, (float)scale, &tout,
                                          &tlse, &tdy, which == 0 ? &tg : NULL,
                                          which == 1 ? &tg : NULL, which == 2 ? &tg : NULL));
    CHECK_REL(sdw_test_rel_err_f32_f64(g, want[which], n[which]), 1e-5, "single gradient");
    CHECK_GUARD(g);
    sdw_test_free_guarded(g);
  }
  /* All NULL: a no-op that succeeds. */
  CHECK_OK(ctx->ops->attention_backward(ctx, &tq, &tk, &tv, &tmask, true, (float)scale, &tout,
                                        &tlse, &tdy, NULL, NULL, NULL));
  CHECK(sdw_arena_used(ctx->scratch) == 0);
  sdw_test_free_guarded(out), sdw_test_free_guarded(lse);
  free(q), free(k), free(v), free(dy), free(mask), free(qd), free(kd), free(vd), free(dyd);
  free(outd), free(p), free(dqd), free(dkd), free(dvd);
  sdw_ctx_destroy(ctx);
}

/* Exhausted scratch is a status, not a crash, and the arena is left as found. */
SDW_TEST(attention_scratch_exhausted_is_out_of_memory) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  sdw_arena *small = NULL, *saved = ctx->scratch;
  CHECK_OK(sdw_arena_create(&small, "tiny scratch", 4096));
  REQUIRE(small);
  ctx->scratch = small;
  enum { B = 1, T = 600, H = 1, DH = 8 };
  float *x = calloc((size_t)B * T * H * DH, sizeof *x);
  float *out = calloc((size_t)B * T * H * DH, sizeof *out), *lse = calloc(T, sizeof *lse);
  float *dx = calloc((size_t)B * T * H * DH, sizeof *dx);
  sdw_tensor t = sdw_tensor_4d(x, SDW_F32, B, T, H, DH);
  sdw_tensor tout = sdw_tensor_4d(out, SDW_F32, B, T, H, DH);
  sdw_tensor tlse = sdw_tensor_3d(lse, SDW_F32, B, H, T);
  sdw_tensor tdx = sdw_tensor_4d(dx, SDW_F32, B, T, H, DH);
  CHECK(ctx->ops->attention_forward(ctx, &t, &t, &t, NULL, false, 1.0f, &tout, &tlse) ==
        SDW_ERR_OUT_OF_MEMORY);
  CHECK(sdw_arena_used(small) == 0);
  CHECK(ctx->ops->attention_backward(ctx, &t, &t, &t, NULL, false, 1.0f, &tout, &tlse, &tout, &tdx,
                                     NULL, NULL) == SDW_ERR_OUT_OF_MEMORY);
  CHECK(sdw_arena_used(small) == 0);
  ctx->scratch = saved;
  sdw_arena_destroy(small);
  free(x), free(out), free(lse), free(dx);
  sdw_ctx_destroy(ctx);
}

/* Degenerate sizes: no keys at all (every query gets zeros and lse = -inf,
 * gradients stay as they were) and an empty batch. */
SDW_TEST(attention_empty_sizes) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  enum { TQ = 5, H = 2, DH = 8 };
  float *q = sdw_test_alloc_guarded(TQ * H * DH, "q"), *kv = sdw_test_alloc_guarded(1, "kv");
  float *out = sdw_test_alloc_guarded(TQ * H * DH, "out"),
        *lse = sdw_test_alloc_guarded(H * TQ, "lse");
  float *dq = sdw_test_alloc_guarded(TQ * H * DH, "dq");
  for (int i = 0; i < TQ * H * DH; i++)
    q[i] = (float)i, dq[i] = 1.0f;
  sdw_tensor tq = sdw_tensor_4d(q, SDW_F32, 1, TQ, H, DH);
  sdw_tensor tkv = sdw_tensor_4d(kv, SDW_F32, 1, 0, H, DH);
  sdw_tensor tout = sdw_tensor_4d(out, SDW_F32, 1, TQ, H, DH);
  sdw_tensor tlse = sdw_tensor_3d(lse, SDW_F32, 1, H, TQ);
  sdw_tensor tdq = sdw_tensor_4d(dq, SDW_F32, 1, TQ, H, DH);
  CHECK_OK(ctx->ops->attention_forward(ctx, &tq, &tkv, &tkv, NULL, false, 0.5f, &tout, &tlse));
  for (int i = 0; i < TQ * H * DH; i++)
    CHECK(out[i] == 0.0f);
  for (int i = 0; i < H * TQ; i++)
    CHECK(lse[i] == -INFINITY);
  CHECK_OK(ctx->ops->attention_backward(ctx, &tq, &tkv, &tkv, NULL, false, 0.5f, &tout, &tlse,
                                        &tout, &tdq, NULL, NULL));
  for (int i = 0; i < TQ * H * DH; i++)
    CHECK(dq[i] == 1.0f);
  sdw_tensor none = sdw_tensor_4d(q, SDW_F32, 0, TQ, H, DH);
  sdw_tensor none_lse = sdw_tensor_3d(lse, SDW_F32, 0, H, TQ);
  CHECK_OK(
      ctx->ops->attention_forward(ctx, &none, &none, &none, NULL, true, 0.5f, &none, &none_lse));
  CHECK_OK(ctx->ops->attention_backward(ctx, &none, &none, &none, NULL, true, 0.5f, &none,
                                        &none_lse, &none, &none, &none, &none));
  CHECK_GUARD(out);
  CHECK_GUARD(lse);
  CHECK_GUARD(dq);
  sdw_test_free_guarded(q), sdw_test_free_guarded(kv), sdw_test_free_guarded(out);
  sdw_test_free_guarded(lse), sdw_test_free_guarded(dq);
  sdw_ctx_destroy(ctx);
}
