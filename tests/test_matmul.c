/* kernels/cpu/matmul.c (linear forward/backward, batched matmul) against
 * plain double-precision references written here, on double copies of the
 * float inputs; the linear backward also against central finite
 * differences in double of L = sum(dy .* linear(x, w, b)).
 *
 * Tolerance: normwise relative error (max|got - want| / max|want|) 1e-5
 * everywhere. A float sgemm rounds K-term dot products: statistically
 * ~sqrt(K) u |x||w| with u = 6e-8, i.e. ~1e-6 relative to the largest
 * output for K <= 200 here, and the bias column sums of dy over M <= 300
 * rows are accumulated in double. 1e-5 leaves a 10x margin while a wrong
 * index, transpose, missing bias or overwritten accumulator is an O(1)
 * error. The finite differences of a function linear in each argument are
 * exact up to double rounding (~1e-13 relative with step 1e-3). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "tests/test.h"

static double *to_double(const float *x, size_t n) {
  double *y = malloc(n * sizeof *y);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i];
  return y;
}

static sdw_ctx *make_ctx(void) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  return ctx;
}

/* y[M,N] = x[M,K] w[N,K]^T + b[N] (b may be NULL). */
static void ref_linear(int m, int k, int n, const double *x, const double *w, const double *b,
                       double *y) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double acc = b ? b[j] : 0;
      for (int t = 0; t < k; t++)
        acc += x[(size_t)i * k + t] * w[(size_t)j * k + t];
      y[(size_t)i * n + j] = acc;
    }
}

static double ref_linear_loss(int m, int k, int n, const double *x, const double *w,
                              const double *b, const double *dy, double *tmp) {
  ref_linear(m, k, n, x, w, b, tmp);
  double l = 0;
  for (size_t i = 0; i < (size_t)m * n; i++)
    l += dy[i] * tmp[i];
  return l;
}

/* got (float, pre-filled with base) against base + want. */
static double rel_err_accum(const float *got, const float *base, const double *want, size_t n) {
  double *w = malloc(n * sizeof *w);
  for (size_t i = 0; i < n; i++)
    w[i] = want[i] + base[i];
  double e = sdw_test_rel_err_f32_f64(got, w, n);
  free(w);
  return e;
}

typedef struct linear_case {
  int lead[3], nlead; /* leading dims of x and y (flattened to M) */
  int k, n;
  bool bias;
  bool fd; /* finite differences (small shapes) or the analytic reference */
} linear_case;

static void run_linear_case(sdw_ctx *ctx, const linear_case *c, uint64_t seed) {
  char what[128];
  int m = 1;
  for (int i = 0; i < c->nlead; i++)
    m *= c->lead[i];
  snprintf(what, sizeof what, "linear M%d K%d N%d bias%d", m, c->k, c->n, (int)c->bias);
  const size_t nx = (size_t)m * c->k, nw = (size_t)c->n * c->k, ny = (size_t)m * c->n;
  sdw_test_rng rng = sdw_test_rng_make(seed);
  float *x = malloc((nx + 1) * sizeof *x), *w = malloc((nw + 1) * sizeof *w);
  float *b = malloc(((size_t)c->n + 1) * sizeof *b), *dy = malloc((ny + 1) * sizeof *dy);
  sdw_test_fill_normal(&rng, x, nx, 1.0f);
  sdw_test_fill_normal(&rng, w, nw, 1.0f);
  sdw_test_fill_normal(&rng, b, (size_t)c->n, 1.0f);
  sdw_test_fill_normal(&rng, dy, ny, 1.0f);
  double *xd = to_double(x, nx), *wd = to_double(w, nw), *bd = to_double(b, (size_t)c->n);
  double *dyd = to_double(dy, ny), *yd = malloc((ny + 1) * sizeof *yd);
  ref_linear(m, c->k, c->n, xd, wd, c->bias ? bd : NULL, yd);

  int64_t xs[4], ys[4];
  for (int i = 0; i < c->nlead; i++)
    xs[i] = ys[i] = c->lead[i];
  xs[c->nlead] = c->k;
  ys[c->nlead] = c->n;
  float *y = sdw_test_alloc_guarded(ny, "y");
  sdw_tensor tx = sdw_tensor_make(x, SDW_F32, c->nlead + 1, xs);
  sdw_tensor ty = sdw_tensor_make(y, SDW_F32, c->nlead + 1, ys);
  sdw_tensor tdy = sdw_tensor_make(dy, SDW_F32, c->nlead + 1, ys);
  sdw_tensor tw = sdw_tensor_2d(w, SDW_F32, c->n, c->k);
  sdw_tensor tb = sdw_tensor_1d(b, SDW_F32, c->n);
  CHECK_OK(ctx->ops->linear_forward(ctx, &tx, &tw, c->bias ? &tb : NULL, &ty));
  char w2[160];
  snprintf(w2, sizeof w2, "%s: y", what);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, yd, ny), 1e-5, w2);
  CHECK_GUARD(y);

  /* Wanted gradients: finite differences or dx = dy w, dw = dy^T x, db = sum dy. */
  double *gx = calloc(nx + 1, sizeof *gx), *gw = calloc(nw + 1, sizeof *gw);
  double *gb = calloc((size_t)c->n + 1, sizeof *gb);
  if (c->fd) {
    const double step = 1e-3;
    struct {
      double *v, *g;
      size_t n;
    } parts[3] = {{xd, gx, nx}, {wd, gw, nw}, {bd, gb, (size_t)c->n}};
    for (int t = 0; t < 3; t++)
      for (size_t i = 0; i < parts[t].n; i++) {
        double v0 = parts[t].v[i];
        parts[t].v[i] = v0 + step;
        double lp = ref_linear_loss(m, c->k, c->n, xd, wd, bd, dyd, yd);
        parts[t].v[i] = v0 - step;
        double lm = ref_linear_loss(m, c->k, c->n, xd, wd, bd, dyd, yd);
        parts[t].v[i] = v0;
        parts[t].g[i] = (lp - lm) / (2 * step);
      }
  } else {
    for (int i = 0; i < m; i++)
      for (int j = 0; j < c->n; j++) {
        double g = dyd[(size_t)i * c->n + j];
        gb[j] += g;
        for (int t = 0; t < c->k; t++) {
          gx[(size_t)i * c->k + t] += g * wd[(size_t)j * c->k + t];
          gw[(size_t)j * c->k + t] += g * xd[(size_t)i * c->k + t];
        }
      }
  }
  /* Accumulation onto pre-filled gradients. */
  float *dx = sdw_test_alloc_guarded(nx, "dx"), *dw = sdw_test_alloc_guarded(nw, "dw");
  float *db = sdw_test_alloc_guarded((size_t)c->n, "db");
  float *dx0 = malloc((nx + 1) * sizeof *dx0), *dw0 = malloc((nw + 1) * sizeof *dw0);
  float *db0 = malloc(((size_t)c->n + 1) * sizeof *db0);
  sdw_test_fill_normal(&rng, dx0, nx, 1.0f);
  sdw_test_fill_normal(&rng, dw0, nw, 1.0f);
  sdw_test_fill_normal(&rng, db0, (size_t)c->n, 1.0f);
  memcpy(dx, dx0, nx * sizeof *dx);
  memcpy(dw, dw0, nw * sizeof *dw);
  memcpy(db, db0, (size_t)c->n * sizeof *db);
  sdw_tensor tdx = sdw_tensor_make(dx, SDW_F32, c->nlead + 1, xs);
  sdw_tensor tdw = sdw_tensor_2d(dw, SDW_F32, c->n, c->k);
  sdw_tensor tdb = sdw_tensor_1d(db, SDW_F32, c->n);
  CHECK_OK(ctx->ops->linear_backward(ctx, &tx, &tw, &tdy, &tdx, &tdw, &tdb));
  snprintf(w2, sizeof w2, "%s: dx", what);
  CHECK_REL(rel_err_accum(dx, dx0, gx, nx), 1e-5, w2);
  snprintf(w2, sizeof w2, "%s: dw", what);
  CHECK_REL(rel_err_accum(dw, dw0, gw, nw), 1e-5, w2);
  snprintf(w2, sizeof w2, "%s: db", what);
  CHECK_REL(rel_err_accum(db, db0, gb, (size_t)c->n), 1e-5, w2);
  /* NULL gradients are skipped: only dw changes here. */
  memcpy(dw, dw0, nw * sizeof *dw);
  memcpy(dx, dx0, nx * sizeof *dx);
  CHECK_OK(ctx->ops->linear_backward(ctx, &tx, &tw, &tdy, NULL, &tdw, NULL));
  CHECK(memcmp(dx, dx0, nx * sizeof *dx) == 0);
  snprintf(w2, sizeof w2, "%s: dw alone", what);
  CHECK_REL(rel_err_accum(dw, dw0, gw, nw), 1e-5, w2);
  CHECK_GUARD(dx);
  CHECK_GUARD(dw);
  CHECK_GUARD(db);

  sdw_test_free_guarded(y), sdw_test_free_guarded(dx), sdw_test_free_guarded(dw);
  sdw_test_free_guarded(db);
  free(x), free(w), free(b), free(dy), free(xd), free(wd), free(bd), free(dyd), free(yd);
  free(gx), free(gw), free(gb), free(dx0), free(dw0), free(db0);
}

SDW_TEST(linear_forward_backward_vs_reference_and_finite_differences) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  static const linear_case cases[] = {
      {{1}, 1, 1, 1, true, true},        {{6}, 1, 13, 7, true, true},
      {{2, 3}, 2, 5, 9, false, true},    {{2, 1, 3}, 3, 8, 4, true, true},
      {{2, 77}, 2, 40, 24, true, false}, /* a text context through to_k */
      {{37}, 1, 64, 33, false, false},   {{300}, 1, 130, 70, true, false},
      {{5}, 1, 200, 3, true, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_linear_case(ctx, &cases[i], 10 + i);
  sdw_ctx_destroy(ctx);
}

/* c[Bt,M,N] = alpha op(a) op(b) + beta c, in double. */
static void ref_matmul(int bt, int m, int n, int k, bool ta, bool tb, double alpha, const double *a,
                       const double *b, double beta, double *c) {
  for (int p = 0; p < bt; p++)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        double acc = 0;
        for (int t = 0; t < k; t++) {
          double av = ta ? a[((size_t)p * k + t) * m + i] : a[((size_t)p * m + i) * k + t];
          double bv = tb ? b[((size_t)p * n + j) * k + t] : b[((size_t)p * k + t) * n + j];
          acc += av * bv;
        }
        double *cv = &c[((size_t)p * m + i) * n + j];
        *cv = alpha * acc + (beta != 0 ? beta * *cv : 0);
      }
}

typedef struct matmul_case {
  int lead[2], nlead; /* batch dims (0 of them: rank 2) */
  int m, n, k;
  float alpha, beta;
} matmul_case;

static void run_matmul_case(sdw_ctx *ctx, const matmul_case *c, bool ta, bool tb, uint64_t seed) {
  int bt = 1;
  for (int i = 0; i < c->nlead; i++)
    bt *= c->lead[i];
  char what[160];
  snprintf(what, sizeof what, "matmul Bt%d M%d N%d K%d ta%d tb%d alpha%g beta%g", bt, c->m, c->n,
           c->k, (int)ta, (int)tb, (double)c->alpha, (double)c->beta);
  const size_t na = (size_t)bt * c->m * c->k, nb = (size_t)bt * c->k * c->n;
  const size_t nc = (size_t)bt * c->m * c->n;
  sdw_test_rng rng = sdw_test_rng_make(seed);
  float *a = malloc((na + 1) * sizeof *a), *b = malloc((nb + 1) * sizeof *b);
  sdw_test_fill_normal(&rng, a, na, 1.0f);
  sdw_test_fill_normal(&rng, b, nb, 1.0f);
  float *cm = sdw_test_alloc_guarded(nc, "c"); /* NaN-filled: beta 0 must not read it */
  double *cd = calloc(nc + 1, sizeof *cd);
  if (c->beta != 0) {
    sdw_test_fill_normal(&rng, cm, nc, 1.0f);
    for (size_t i = 0; i < nc; i++)
      cd[i] = cm[i];
  }
  double *ad = to_double(a, na), *bd = to_double(b, nb);
  ref_matmul(bt, c->m, c->n, c->k, ta, tb, c->alpha, ad, bd, c->beta, cd);
  int64_t as[4], bs[4], cs[4];
  for (int i = 0; i < c->nlead; i++)
    as[i] = bs[i] = cs[i] = c->lead[i];
  const int r = c->nlead;
  as[r] = ta ? c->k : c->m, as[r + 1] = ta ? c->m : c->k;
  bs[r] = tb ? c->n : c->k, bs[r + 1] = tb ? c->k : c->n;
  cs[r] = c->m, cs[r + 1] = c->n;
  sdw_tensor tam = sdw_tensor_make(a, SDW_F32, r + 2, as);
  sdw_tensor tbm = sdw_tensor_make(b, SDW_F32, r + 2, bs);
  sdw_tensor tcm = sdw_tensor_make(cm, SDW_F32, r + 2, cs);
  CHECK_OK(ctx->ops->matmul(ctx, ta, tb, c->alpha, &tam, &tbm, c->beta, &tcm));
  CHECK_REL(sdw_test_rel_err_f32_f64(cm, cd, nc), 1e-5, what);
  CHECK_GUARD(cm);
  sdw_test_free_guarded(cm);
  free(a), free(b), free(cd), free(ad), free(bd);
}

SDW_TEST(matmul_batched_transposes_alpha_beta_vs_reference) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  static const matmul_case cases[] = {
      {{0}, 0, 1, 1, 1, 1.0f, 0.0f},
      {{0}, 0, 7, 13, 5, 1.0f, 0.0f},      /* rank 2: a batch of one */
      {{3}, 1, 9, 4, 17, 0.5f, 0.0f},      /* few: OpenBLAS threads each */
      {{2, 5}, 2, 6, 11, 8, 1.0f, 1.0f},   /* many: one per thread; accumulate */
      {{16}, 1, 33, 20, 40, -2.0f, 0.25f}, /* alpha and beta both */
      {{2}, 1, 130, 77, 40, 0.125f, 0.0f}, /* attention-like scores */
      {{0}, 0, 64, 70, 129, 1.0f, -1.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int t = 0; t < 4; t++)
      run_matmul_case(ctx, &cases[i], t & 1, t & 2, 30 + 4 * i + t);
  sdw_ctx_destroy(ctx);
}

/* K = 0: the product is empty, so c = beta c (and beta 0 clears c). */
SDW_TEST(matmul_empty_inner_dimension) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  float a[1], b[1];
  float *c = sdw_test_alloc_guarded(6, "c");
  for (int i = 0; i < 6; i++)
    c[i] = (float)(i + 1);
  sdw_tensor ta = sdw_tensor_2d(a, SDW_F32, 2, 0), tb = sdw_tensor_2d(b, SDW_F32, 0, 3);
  sdw_tensor tc = sdw_tensor_2d(c, SDW_F32, 2, 3);
  CHECK_OK(ctx->ops->matmul(ctx, false, false, 1.0f, &ta, &tb, 2.0f, &tc));
  for (int i = 0; i < 6; i++)
    CHECK(c[i] == 2.0f * (float)(i + 1));
  CHECK_OK(ctx->ops->matmul(ctx, false, false, 1.0f, &ta, &tb, 0.0f, &tc));
  for (int i = 0; i < 6; i++)
    CHECK(c[i] == 0.0f);
  CHECK_GUARD(c);
  sdw_test_free_guarded(c);
  sdw_ctx_destroy(ctx);
}

/* The documented matmul backward recipe, dA += dC B^T and dB += A^T dC (two
 * more matmuls with beta = 1), against finite differences of
 * L = sum(dC .* (A B)) in double. */
SDW_TEST(matmul_backward_recipe_vs_finite_differences) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  enum { BT = 2, M = 5, N = 4, K = 7 };
  sdw_test_rng rng = sdw_test_rng_make(99);
  float a[BT * M * K], b[BT * K * N], dc[BT * M * N];
  sdw_test_fill_normal(&rng, a, BT * M * K, 1.0f);
  sdw_test_fill_normal(&rng, b, BT * K * N, 1.0f);
  sdw_test_fill_normal(&rng, dc, BT * M * N, 1.0f);
  float *da = sdw_test_alloc_guarded(BT * M * K, "da"),
        *db = sdw_test_alloc_guarded(BT * K * N, "db");
  float da0[BT * M * K], db0[BT * K * N];
  sdw_test_fill_normal(&rng, da0, BT * M * K, 1.0f);
  sdw_test_fill_normal(&rng, db0, BT * K * N, 1.0f);
  memcpy(da, da0, sizeof da0);
  memcpy(db, db0, sizeof db0);
  sdw_tensor ta = sdw_tensor_3d(a, SDW_F32, BT, M, K), tb = sdw_tensor_3d(b, SDW_F32, BT, K, N);
  sdw_tensor tdc = sdw_tensor_3d(dc, SDW_F32, BT, M, N);
  sdw_tensor tda = sdw_tensor_3d(da, SDW_F32, BT, M, K), tdb = sdw_tensor_3d(db, SDW_F32, BT, K, N);
  CHECK_OK(ctx->ops->matmul(ctx, false, true, 1.0f, &tdc, &tb, 1.0f, &tda));
  CHECK_OK(ctx->ops->matmul(ctx, true, false, 1.0f, &ta, &tdc, 1.0f, &tdb));

  double ad[BT * M * K], bd[BT * K * N], cd[BT * M * N], dcd[BT * M * N];
  double ga[BT * M * K], gb[BT * K * N];
  for (int i = 0; i < BT * M * K; i++)
    ad[i] = a[i];
  for (int i = 0; i < BT * K * N; i++)
    bd[i] = b[i];
  for (int i = 0; i < BT * M * N; i++)
    dcd[i] = dc[i];
  const double step = 1e-3;
  for (int which = 0; which < 2; which++) {
    double *x = which ? bd : ad, *g = which ? gb : ga;
    int n = which ? BT * K * N : BT * M * K;
    for (int i = 0; i < n; i++) {
      double x0 = x[i], l[2];
      for (int s = 0; s < 2; s++) {
        x[i] = x0 + (s ? -step : step);
        ref_matmul(BT, M, N, K, false, false, 1.0, ad, bd, 0.0, cd);
        l[s] = 0;
        for (int j = 0; j < BT * M * N; j++)
          l[s] += dcd[j] * cd[j];
      }
      x[i] = x0;
      g[i] = (l[0] - l[1]) / (2 * step);
    }
  }
  CHECK_REL(rel_err_accum(da, da0, ga, BT * M * K), 1e-5, "dA");
  CHECK_REL(rel_err_accum(db, db0, gb, BT * K * N), 1e-5, "dB");
  CHECK_GUARD(da);
  CHECK_GUARD(db);
  sdw_test_free_guarded(da), sdw_test_free_guarded(db);
  sdw_ctx_destroy(ctx);
}
