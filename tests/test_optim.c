/* AdamW, EMA and sum of squares of the CPU backend.
 *
 * References: the update formulas of torch.optim.AdamW (single-tensor path)
 * and of Tensor.lerp_ evaluated in double here, over several steps with the
 * state carried separately in f32 (op) and double (reference); plus small
 * known-answer cases whose every intermediate is exact in f32 (worked by
 * hand in the comments), so an op that evaluated a different formula
 * (eps inside the square root, no bias correction, coupled weight decay,
 * the wrong lerp end) fails exactly rather than within a tolerance.
 *
 * Tolerances (normwise relative error):
 *  - AdamW param, exp_avg, exp_avg_sq after 5 steps: 1e-6. Each f32 op
 *    rounds once (u = 6e-8) and the state carries those roundings from step
 *    to step: ~5 steps * a few u ~ 1e-6 in the worst element (measured
 *    <= 2e-7); the update itself is 2-10% of |param| here (lr 0.05 and
 *    params ~0.1-1), so a wrong update term shows up at >= 1e-3.
 *  - EMA after 5 updates: 1e-6 (each lerp rounds twice).
 *  - sum of squares: 1e-12. Double accumulation of n = 300007 positive terms
 *    in fixed chunks has relative error <= n * 1.1e-16 in the worst case and
 *    ~sqrt(n) * 1e-16 typically; a float accumulator is off by >= 1e-6. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"
#include "tests/test_ref.h"

/* One AdamW step in double, torch's formula with g = grad * grad_scale:
 *   p *= 1 - lr*wd; m = m + (1-b1)(g - m); v = b2 v + (1-b2) g^2;
 *   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). */
static void ref_adamw(double *p, const double *grad, double *m, double *v, size_t n,
                      const sdw_adamw_params *h) {
  double lr = h->lr, b1 = h->beta1, b2 = h->beta2, eps = h->eps, wd = h->weight_decay;
  double t = (double)h->step, bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
  for (size_t i = 0; i < n; i++) {
    double g = grad[i] * (double)h->grad_scale;
    p[i] *= 1.0 - lr * wd;
    m[i] = m[i] + (1.0 - b1) * (g - m[i]);
    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
    p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
  }
}

typedef struct adamw_case {
  const char *name;
  sdw_adamw_params h; /* step = the first step's number */
  size_t n;
  bool warm; /* start from non-zero moments (a resumed run) */
} adamw_case;

static void check_adamw(sdw_ctx *ctx, const adamw_case *c, sdw_test_rng *r) {
  size_t n = c->n;
  float *p = ref_normal(r, n, 0.5f, 0.0f, "param"), *grad = sdw_test_alloc_guarded(n, "grad");
  float *m = sdw_test_alloc_guarded(n, "m"), *v = sdw_test_alloc_guarded(n, "v");
  for (size_t i = 0; i < n; i++) {
    m[i] = c->warm ? (float)(0.05 * sdw_test_rng_normal(r)) : 0.0f;
    v[i] = c->warm ? (float)(0.01 * sdw_test_rng_uniform(r)) : 0.0f;
  }
  double *pd = ref_to_double(p, n), *md = ref_to_double(m, n), *vd = ref_to_double(v, n);
  sdw_tensor tp = sdw_tensor_1d(p, SDW_F32, (int64_t)n), tg = tp, tm = tp, tv = tp;
  tg.data = grad, tm.data = m, tv.data = v;
  sdw_adamw_params h = c->h;
  for (int s = 0; s < 5; s++, h.step++) {
    /* gradients spanning 1e-4..1 so eps matters for some elements */
    for (size_t i = 0; i < n; i++)
      grad[i] = (float)(sdw_test_rng_normal(r) * pow(10.0, -4.0 * sdw_test_rng_uniform(r)));
    double *gd = ref_to_double(grad, n);
    CHECK_OK(ctx->ops->adamw_step(ctx, &tp, &tg, &tm, &tv, &h));
    ref_adamw(pd, gd, md, vd, n, &h);
    free(gd);
  }
  char what[96];
  snprintf(what, sizeof what, "adamw %s param", c->name);
  CHECK_REL(sdw_test_rel_err_f32_f64(p, pd, n), 1e-6, what);
  snprintf(what, sizeof what, "adamw %s exp_avg", c->name);
  CHECK_REL(sdw_test_rel_err_f32_f64(m, md, n), 1e-6, what);
  snprintf(what, sizeof what, "adamw %s exp_avg_sq", c->name);
  CHECK_REL(sdw_test_rel_err_f32_f64(v, vd, n), 1e-6, what);
  float *bufs[] = {p, grad, m, v};
  for (size_t i = 0; i < 4; i++) {
    CHECK_GUARD(bufs[i]);
    sdw_test_free_guarded(bufs[i]);
  }
  free(pd), free(md), free(vd);
}

SDW_TEST(adamw_matches_torch_formula_in_double) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(601);
  const adamw_case cases[] = {
      /* the seed's settings (lr raised so the update is visible) */
      {"seed", {0.05f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f}, 1001, false},
      /* resumed at step 7, clipping scale, large eps, strong decay */
      {"resumed", {0.05f, 0.8f, 0.99f, 1e-3f, 0.1f, 7, 0.37f}, 70001, true},
      /* beta1 < 0.5: lerp weight >= 0.5 takes ATen's other branch */
      {"beta1 0.3", {0.02f, 0.3f, 0.9f, 1e-6f, 0.0f, 1, 2.0f}, 33, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    check_adamw(ctx, &cases[i], &r);
  sdw_ctx_destroy(ctx);
}

/* Worked by hand, every value exact in f32:
 * lr 0.375, wd 0.5, beta1 0.5, beta2 0.75, eps 2, grad_scale 0.5, step 1,
 * param 1, grad 4, m = v = 0:
 *   g = 4 * 0.5 = 2; param *= 1 - 0.375*0.5 = 0.8125 -> 0.8125
 *   m = lerp(0, 2, 0.5) = 1;  v = 0.75*0 + 0.25*2*2 = 1
 *   bias corrections 1 - 0.5 = 0.5 and 1 - 0.75 = 0.25: step size
 *   0.375/0.5 = 0.75, sqrt(0.25) = 0.5; denom = sqrt(1)/0.5 + 2 = 4
 *   param = 0.8125 - 0.75 * 1 / 4 = 0.625.
 * With beta1 0.75 instead: m = lerp(0, 2, 0.25) = 0.5, step size
 * 0.375/0.25 = 1.5, param = 0.8125 - 1.5 * 0.5 / 4 = 0.625 again.
 * (eps inside the root would give denom sqrt(4 + 2), coupled decay
 * g = 2 + 0.5*1, no bias correction step 0.375 and denom 3.) */
SDW_TEST(adamw_known_answer) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  for (int k = 0; k < 2; k++) {
    float *p = sdw_test_alloc_guarded(3, "p"), *g = sdw_test_alloc_guarded(3, "g");
    float *m = sdw_test_alloc_guarded(3, "m"), *v = sdw_test_alloc_guarded(3, "v");
    for (int i = 0; i < 3; i++)
      p[i] = 1.0f, g[i] = 4.0f, m[i] = 0.0f, v[i] = 0.0f;
    sdw_tensor tp = sdw_tensor_1d(p, SDW_F32, 3), tg = tp, tm = tp, tv = tp;
    tg.data = g, tm.data = m, tv.data = v;
    sdw_adamw_params h = {0.375f, k ? 0.75f : 0.5f, 0.75f, 2.0f, 0.5f, 1, 0.5f};
    CHECK_OK(ctx->ops->adamw_step(ctx, &tp, &tg, &tm, &tv, &h));
    for (int i = 0; i < 3; i++) {
      CHECK_MSG(p[i] == 0.625f, "param %.9g, want 0.625", p[i]);
      CHECK_MSG(m[i] == (k ? 0.5f : 1.0f), "exp_avg %.9g", m[i]);
      CHECK_MSG(v[i] == 1.0f, "exp_avg_sq %.9g, want 1", v[i]);
      CHECK(g[i] == 4.0f); /* grad is read only */
    }
    CHECK_GUARD(p), CHECK_GUARD(g), CHECK_GUARD(m), CHECK_GUARD(v);
    sdw_test_free_guarded(p), sdw_test_free_guarded(g);
    sdw_test_free_guarded(m), sdw_test_free_guarded(v);
  }
  sdw_ctx_destroy(ctx);
}

SDW_TEST(ema_update_matches_lerp) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(602);
  /* The seed's warm-up decays min(0.9999, (1+s)/(10+s)) for s = 1..4, then
   * 0.9999, and decays below 0.5 (the other lerp branch). */
  const float decays[] = {2.0f / 11, 3.0f / 12, 4.0f / 13, 5.0f / 14, 0.9999f, 0.3f};
  const size_t sizes[] = {1, 777, 50001};
  for (size_t k = 0; k < 3; k++) {
    size_t n = sizes[k];
    float *e = ref_normal(&r, n, 1.0f, 0.0f, "ema"), *p = sdw_test_alloc_guarded(n, "param");
    double *ed = ref_to_double(e, n);
    sdw_tensor te = sdw_tensor_1d(e, SDW_F32, (int64_t)n),
               tp = sdw_tensor_1d(p, SDW_F32, (int64_t)n);
    for (size_t s = 0; s < sizeof decays / sizeof *decays; s++) {
      sdw_test_fill_normal(&r, p, n, 1.0f);
      CHECK_OK(ctx->ops->ema_update(ctx, &te, &tp, decays[s]));
      for (size_t i = 0; i < n; i++)
        ed[i] = decays[s] * ed[i] + (1.0 - decays[s]) * p[i];
    }
    CHECK_REL(sdw_test_rel_err_f32_f64(e, ed, n), 1e-6, "ema_update");
    CHECK_GUARD(e), CHECK_GUARD(p);
    sdw_test_free_guarded(e), sdw_test_free_guarded(p);
    free(ed);
  }
  /* Known answers (exact in f32): ema 1, param 3.
   * decay 0.75: weight 0.25 < 0.5, 1 + 0.25*(3-1) = 1.5;
   * decay 0.25: weight 0.75, 3 - (3-1)*(1-0.75) = 2.5. */
  float e1 = 1.0f, p1 = 3.0f;
  sdw_tensor te = sdw_tensor_1d(&e1, SDW_F32, 1), tp = sdw_tensor_1d(&p1, SDW_F32, 1);
  CHECK_OK(ctx->ops->ema_update(ctx, &te, &tp, 0.75f));
  CHECK(e1 == 1.5f);
  e1 = 1.0f;
  CHECK_OK(ctx->ops->ema_update(ctx, &te, &tp, 0.25f));
  CHECK(e1 == 2.5f);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(sum_squares_double_accumulation) {
  sdw_ctx *ctx = ref_cpu_ctx();
  REQUIRE(ctx);
  sdw_test_rng r = sdw_test_rng_make(603);
  const size_t sizes[] = {1, 1000, 300007};
  for (size_t k = 0; k < 3; k++) {
    size_t n = sizes[k];
    /* a large common offset: float accumulation would lose ~1e-4 */
    float *x = ref_normal(&r, n, 0.01f, 3.0f, "x");
    sdw_tensor tx = sdw_tensor_1d(x, SDW_F32, (int64_t)n);
    double got = -1.0, want = 0.0, comp = 0.0;
    CHECK_OK(ctx->ops->sum_squares(ctx, &tx, &got));
    for (size_t i = 0; i < n; i++) { /* Kahan-compensated reference */
      double term = (double)x[i] * x[i] - comp, t = want + term;
      comp = (t - want) - term;
      want = t;
    }
    CHECK_REL(fabs(got - want) / want, 1e-12, "sum_squares");
    CHECK_GUARD(x);
    sdw_test_free_guarded(x);
  }
  /* empty tensor: 0 */
  float dummy = 1.0f;
  sdw_tensor empty = sdw_tensor_2d(&dummy, SDW_F32, 0, 4);
  double out = -1.0;
  CHECK_OK(ctx->ops->sum_squares(ctx, &empty, &out));
  CHECK(out == 0.0);
  sdw_ctx_destroy(ctx);
}
