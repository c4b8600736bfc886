/* Convolutions and nearest upsampling of the CPU backend against plain
 * double-precision direct loops written here (nothing shared with
 * kernels/cpu), and every gradient against central finite differences of
 * that double reference.
 *
 * Tolerances (normwise relative error, max|got - want| / max|want|):
 *  - forward 1e-5: each output is a float dot product of K = Ci*KH*KW <= 125
 *    terms (here) plus the bias, computed by a blocked FMA GEMM. Rounding
 *    errors are ~u = 6e-8 per term and add up like a random walk:
 *    ~sqrt(K)*u*sum|terms| ~ 11*6e-8*(a few)*max|y| ~ 2e-6; 1e-5 leaves room
 *    for the worst case without hiding a wrong tap (which is O(1)).
 *  - gradients vs finite differences 1e-5: L = sum(dy .* y) is linear in each
 *    single parameter (conv is bilinear in x and w, affine in b), so the
 *    central difference has no truncation error; its rounding error is
 *    ~1e-16*sum|dy*y|/h ~ 1e-16*1e3/1e-6 = 1e-7 absolute on O(1..10)
 *    gradients. Our float gradients are dot products over Co*KH*KW (dx) or
 *    N*Ho*Wo <= 162 (dw, db) terms, again ~sqrt(n)*u relative ~ 1e-6.
 *  - accumulation: the same 1e-5 relative to max|prefill + gradient|.
 *  - large shapes (several column bands) use analytic double loops for the
 *    backward, themselves checked against finite differences on the small
 *    shapes to 1e-8 (the finite-difference rounding bound above); there the
 *    sums run over up to ~4*10^3 terms (dw: N*Ho*Wo), so float rounding is
 *    ~sqrt(4e3)*u ~ 4e-6 typically: tolerance 3e-5.
 *  - upsampling forward is a copy: exact. Its backward sums 4 floats: 1e-6. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/im2col.h"
#include "kernels/ops.h"
#include "tests/test.h"

typedef struct conv_case {
  int N, Ci, Co, H, W, KH, KW, stride, pad;
  bool bias;
} conv_case;

typedef struct conv_dims {
  int Ho, Wo;
  size_t nx, nw, nb, ny;
} conv_dims;

static conv_dims dims_of(const conv_case *c, bool transposed) {
  conv_dims d;
  if (transposed) {
    d.Ho = (c->H - 1) * c->stride - 2 * c->pad + c->KH;
    d.Wo = (c->W - 1) * c->stride - 2 * c->pad + c->KW;
  } else {
    d.Ho = (c->H + 2 * c->pad - c->KH) / c->stride + 1;
    d.Wo = (c->W + 2 * c->pad - c->KW) / c->stride + 1;
  }
  d.nx = (size_t)c->N * c->Ci * c->H * c->W;
  d.nw = (size_t)c->Co * c->Ci * c->KH * c->KW;
  d.nb = (size_t)c->Co;
  d.ny = (size_t)c->N * c->Co * d.Ho * d.Wo;
  return d;
}

/* --- double references ---------------------------------------------------- */

/* y[n,co,oh,ow] = b[co] + sum x[n,ci,oh*s-p+kh,ow*s-p+kw] * w[co,ci,kh,kw] */
static void ref_conv2d(const conv_case *c, const double *x, const double *w, const double *b,
                       double *y) {
  const conv_dims d = dims_of(c, false);
  for (int n = 0; n < c->N; n++)
    for (int co = 0; co < c->Co; co++)
      for (int oh = 0; oh < d.Ho; oh++)
        for (int ow = 0; ow < d.Wo; ow++) {
          double acc = b[co];
          for (int ci = 0; ci < c->Ci; ci++)
            for (int kh = 0; kh < c->KH; kh++)
              for (int kw = 0; kw < c->KW; kw++) {
                int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                acc += x[((size_t)(n * c->Ci + ci) * c->H + ih) * c->W + iw] *
                       w[((size_t)(co * c->Ci + ci) * c->KH + kh) * c->KW + kw];
              }
          y[((size_t)(n * c->Co + co) * d.Ho + oh) * d.Wo + ow] = acc;
        }
}

/* Analytic gradients of L = sum(dy .* conv2d(x, w, b)), accumulated. */
static void ref_conv2d_grads(const conv_case *c, const double *x, const double *w, const double *dy,
                             double *dx, double *dw, double *db) {
  const conv_dims d = dims_of(c, false);
  for (int n = 0; n < c->N; n++)
    for (int co = 0; co < c->Co; co++)
      for (int oh = 0; oh < d.Ho; oh++)
        for (int ow = 0; ow < d.Wo; ow++) {
          double g = dy[((size_t)(n * c->Co + co) * d.Ho + oh) * d.Wo + ow];
          db[co] += g;
          for (int ci = 0; ci < c->Ci; ci++)
            for (int kh = 0; kh < c->KH; kh++)
              for (int kw = 0; kw < c->KW; kw++) {
                int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                size_t xi = ((size_t)(n * c->Ci + ci) * c->H + ih) * c->W + iw;
                size_t wi = ((size_t)(co * c->Ci + ci) * c->KH + kh) * c->KW + kw;
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
        }
}

/* PyTorch ConvTranspose2d, w[Ci,Co,KH,KW]: every input pixel scatters
 * x[n,ci,ih,iw] * w[ci,co,kh,kw] to y[n,co,ih*s-p+kh,iw*s-p+kw]. */
static void ref_conv_transpose2d(const conv_case *c, const double *x, const double *w,
                                 const double *b, double *y) {
  const conv_dims d = dims_of(c, true);
  for (int n = 0; n < c->N; n++)
    for (int co = 0; co < c->Co; co++)
      for (size_t i = 0; i < (size_t)d.Ho * d.Wo; i++)
        y[(size_t)(n * c->Co + co) * d.Ho * d.Wo + i] = b[co];
  for (int n = 0; n < c->N; n++)
    for (int ci = 0; ci < c->Ci; ci++)
      for (int ih = 0; ih < c->H; ih++)
        for (int iw = 0; iw < c->W; iw++) {
          double v = x[((size_t)(n * c->Ci + ci) * c->H + ih) * c->W + iw];
          for (int co = 0; co < c->Co; co++)
            for (int kh = 0; kh < c->KH; kh++)
              for (int kw = 0; kw < c->KW; kw++) {
                int oh = ih * c->stride - c->pad + kh, ow = iw * c->stride - c->pad + kw;
                if (oh < 0 || oh >= d.Ho || ow < 0 || ow >= d.Wo) continue;
                y[((size_t)(n * c->Co + co) * d.Ho + oh) * d.Wo + ow] +=
                    v * w[((size_t)(ci * c->Co + co) * c->KH + kh) * c->KW + kw];
              }
        }
}

static void ref_conv_transpose2d_grads(const conv_case *c, const double *x, const double *w,
                                       const double *dy, double *dx, double *dw, double *db) {
  const conv_dims d = dims_of(c, true);
  for (int n = 0; n < c->N; n++)
    for (int co = 0; co < c->Co; co++)
      for (size_t i = 0; i < (size_t)d.Ho * d.Wo; i++)
        db[co] += dy[(size_t)(n * c->Co + co) * d.Ho * d.Wo + i];
  for (int n = 0; n < c->N; n++)
    for (int ci = 0; ci < c->Ci; ci++)
      for (int ih = 0; ih < c->H; ih++)
        for (int iw = 0; iw < c->W; iw++) {
          size_t xi = ((size_t)(n * c->Ci + ci) * c->H + ih) * c->W + iw;
          for (int co = 0; co < c->Co; co++)
            for (int kh = 0; kh < c->KH; kh++)
              for (int kw = 0; kw < c->KW; kw++) {
                int oh = ih * c->stride - c->pad + kh, ow = iw * c->stride - c->pad + kw;
                if (oh < 0 || oh >= d.Ho || ow < 0 || ow >= d.Wo) continue;
                double g = dy[((size_t)(n * c->Co + co) * d.Ho + oh) * d.Wo + ow];
                size_t wi = ((size_t)(ci * c->Co + co) * c->KH + kh) * c->KW + kw;
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
        }
}

typedef void (*ref_forward_fn)(const conv_case *c, const double *x, const double *w,
                               const double *b, double *y);

static double ref_loss(ref_forward_fn f, const conv_case *c, const double *x, const double *w,
                       const double *b, const double *dy, double *y, size_t ny) {
  f(c, x, w, b, y);
  double L = 0;
  for (size_t i = 0; i < ny; i++)
    L += dy[i] * y[i];
  return L;
}

/* grad[i] = dL/dparam[i] by central differences (param is x, w or b). */
static void fd_grad(ref_forward_fn f, const conv_case *c, double *x, double *w, double *b,
                    const double *dy, double *y, size_t ny, double *param, size_t np,
                    double *grad) {
  const double h = 1e-6;
  for (size_t i = 0; i < np; i++) {
    double v = param[i];
    param[i] = v + h;
    double lp = ref_loss(f, c, x, w, b, dy, y, ny);
    param[i] = v - h;
    double lm = ref_loss(f, c, x, w, b, dy, y, ny);
    param[i] = v;
    grad[i] = (lp - lm) / (2 * h);
  }
}

/* --- helpers -------------------------------------------------------------- */

static float *guarded_normal(sdw_test_rng *rng, size_t n, const char *name) {
  float *p = sdw_test_alloc_guarded(n, name);
  sdw_test_fill_normal(rng, p, n, 1.0f);
  return p;
}

static float *guarded_zero(size_t n, const char *name) {
  float *p = sdw_test_alloc_guarded(n, name);
  memset(p, 0, n * sizeof(float));
  return p;
}

static double *to_double(const float *p, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof(double));
  for (size_t i = 0; i < n; i++)
    d[i] = p[i];
  return d;
}

static double *dzeros(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static sdw_status op_forward(sdw_ctx *ctx, bool transposed, const sdw_tensor *x,
                             const sdw_tensor *w, const sdw_tensor *b, int s, int p,
                             sdw_tensor *y) {
  return transposed ? ctx->ops->conv_transpose2d_forward(ctx, x, w, b, s, p, y)
                    : ctx->ops->conv2d_forward(ctx, x, w, b, s, p, y);
}

static sdw_status op_backward(sdw_ctx *ctx, bool transposed, const sdw_tensor *x,
                              const sdw_tensor *w, const sdw_tensor *dy, int s, int p,
                              sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db) {
  return transposed ? ctx->ops->conv_transpose2d_backward(ctx, x, w, dy, s, p, dx, dw, db)
                    : ctx->ops->conv2d_backward(ctx, x, w, dy, s, p, dx, dw, db);
}

/* The tensors of one problem: inputs as float (what the op sees) and double
 * copies of the same values (what the reference sees). */
typedef struct conv_problem {
  conv_case c;
  bool transposed;
  conv_dims d;
  float *x, *w, *b, *dy;
  double *xd, *wd, *bd, *dyd; /* bd is all zero when the case has no bias */
  sdw_tensor tx, tw, tb, tdy;
} conv_problem;

static void problem_init(conv_problem *pr, const conv_case *c, bool transposed, sdw_test_rng *rng) {
  pr->c = *c;
  pr->transposed = transposed;
  pr->d = dims_of(c, transposed);
  const conv_dims *d = &pr->d;
  pr->x = guarded_normal(rng, d->nx, "x");
  pr->w = guarded_normal(rng, d->nw, "w");
  pr->b = guarded_normal(rng, d->nb, "b");
  pr->dy = guarded_normal(rng, d->ny, "dy");
  pr->xd = to_double(pr->x, d->nx);
  pr->wd = to_double(pr->w, d->nw);
  pr->bd = c->bias ? to_double(pr->b, d->nb) : dzeros(d->nb);
  pr->dyd = to_double(pr->dy, d->ny);
  pr->tx = sdw_tensor_4d(pr->x, SDW_F32, c->N, c->Ci, c->H, c->W);
  pr->tw = transposed ? sdw_tensor_4d(pr->w, SDW_F32, c->Ci, c->Co, c->KH, c->KW)
                      : sdw_tensor_4d(pr->w, SDW_F32, c->Co, c->Ci, c->KH, c->KW);
  pr->tb = sdw_tensor_1d(pr->b, SDW_F32, c->Co);
  pr->tdy = sdw_tensor_4d(pr->dy, SDW_F32, c->N, c->Co, d->Ho, d->Wo);
}

static void problem_free(conv_problem *pr) {
  CHECK_GUARD(pr->x), CHECK_GUARD(pr->w), CHECK_GUARD(pr->b), CHECK_GUARD(pr->dy);
  sdw_test_free_guarded(pr->x), sdw_test_free_guarded(pr->w);
  sdw_test_free_guarded(pr->b), sdw_test_free_guarded(pr->dy);
  free(pr->xd), free(pr->wd), free(pr->bd), free(pr->dyd);
}

static void describe(const conv_problem *pr, char *buf, size_t size) {
  const conv_case *c = &pr->c;
  snprintf(buf, size, "%s N%d Ci%d Co%d %dx%d k%dx%d s%d p%d%s",
           pr->transposed ? "conv_transpose2d" : "conv2d", c->N, c->Ci, c->Co, c->H, c->W, c->KH,
           c->KW, c->stride, c->pad, c->bias ? " bias" : "");
}

/* Forward vs the double reference. */
static void check_forward(sdw_ctx *ctx, conv_problem *pr, double tol) {
  char name[160], what[200];
  describe(pr, name, sizeof name);
  const conv_case *c = &pr->c;
  const conv_dims *d = &pr->d;
  float *y = sdw_test_alloc_guarded(d->ny, "y"); /* NaN-filled: every element must be written */
  sdw_tensor ty = sdw_tensor_4d(y, SDW_F32, c->N, c->Co, d->Ho, d->Wo);
  size_t used = sdw_arena_used(ctx->scratch);
  CHECK_OK(op_forward(ctx, pr->transposed, &pr->tx, &pr->tw, c->bias ? &pr->tb : NULL, c->stride,
                      c->pad, &ty));
  CHECK_MSG(sdw_arena_used(ctx->scratch) == used, "%s: scratch not reset", name);
  double *want = dzeros(d->ny);
  (pr->transposed ? ref_conv_transpose2d : ref_conv2d)(c, pr->xd, pr->wd, pr->bd, want);
  snprintf(what, sizeof what, "%s forward", name);
  CHECK_REL(sdw_test_rel_err_f32_f64(y, want, d->ny), tol, what);
  CHECK_GUARD(y);
  sdw_test_free_guarded(y);
  free(want);
}

/* Runs the backward into dx/dw/db (any may be NULL) pre-filled with `pre`
 * (or zeros) and checks result = pre + want. */
static void check_backward_into(sdw_ctx *ctx, conv_problem *pr, const double *gx, const double *gw,
                                const double *gb, bool with_dx, bool with_dw, bool with_db,
                                bool prefill, sdw_test_rng *rng, double tol, const char *label) {
  char name[160], what[240];
  describe(pr, name, sizeof name);
  const conv_case *c = &pr->c;
  const conv_dims *d = &pr->d;
  float *dx = with_dx ? guarded_zero(d->nx, "dx") : NULL;
  float *dw = with_dw ? guarded_zero(d->nw, "dw") : NULL;
  float *db = with_db ? guarded_zero(d->nb, "db") : NULL;
  if (prefill) {
    if (dx) sdw_test_fill_normal(rng, dx, d->nx, 1.0f);
    if (dw) sdw_test_fill_normal(rng, dw, d->nw, 1.0f);
    if (db) sdw_test_fill_normal(rng, db, d->nb, 1.0f);
  }
  double *wx = dx ? to_double(dx, d->nx) : NULL, *ww = dw ? to_double(dw, d->nw) : NULL;
  double *wb = db ? to_double(db, d->nb) : NULL;
  for (size_t i = 0; wx && i < d->nx; i++)
    wx[i] += gx[i];
  for (size_t i = 0; ww && i < d->nw; i++)
    ww[i] += gw[i];
  for (size_t i = 0; wb && i < d->nb; i++)
    wb[i] += gb[i];
  sdw_tensor tdx = sdw_tensor_4d(dx, SDW_F32, c->N, c->Ci, c->H, c->W);
  sdw_tensor tdw = pr->tw;
  tdw.data = dw;
  sdw_tensor tdb = sdw_tensor_1d(db, SDW_F32, c->Co);
  size_t used = sdw_arena_used(ctx->scratch);
  CHECK_OK(op_backward(ctx, pr->transposed, &pr->tx, &pr->tw, &pr->tdy, c->stride, c->pad,
                       dx ? &tdx : NULL, dw ? &tdw : NULL, db ? &tdb : NULL));
  CHECK_MSG(sdw_arena_used(ctx->scratch) == used, "%s: scratch not reset", name);
  if (dx) {
    snprintf(what, sizeof what, "%s dx (%s)", name, label);
    CHECK_REL(sdw_test_rel_err_f32_f64(dx, wx, d->nx), tol, what);
  }
  if (dw) {
    snprintf(what, sizeof what, "%s dw (%s)", name, label);
    CHECK_REL(sdw_test_rel_err_f32_f64(dw, ww, d->nw), tol, what);
  }
  if (db) {
    snprintf(what, sizeof what, "%s db (%s)", name, label);
    CHECK_REL(sdw_test_rel_err_f32_f64(db, wb, d->nb), tol, what);
  }
  CHECK_GUARD(dx), CHECK_GUARD(dw), CHECK_GUARD(db);
  sdw_test_free_guarded(dx), sdw_test_free_guarded(dw), sdw_test_free_guarded(db);
  free(wx), free(ww), free(wb);
}

/* Forward, then every gradient against finite differences (zero-filled and
 * pre-filled outputs, all three and one at a time). */
static void check_case_fd(sdw_ctx *ctx, const conv_case *c, bool transposed, sdw_test_rng *rng) {
  conv_problem pr;
  problem_init(&pr, c, transposed, rng);
  const conv_dims *d = &pr.d;
  check_forward(ctx, &pr, 1e-5);

  ref_forward_fn f = transposed ? ref_conv_transpose2d : ref_conv2d;
  double *y = dzeros(d->ny);
  double *gx = dzeros(d->nx), *gw = dzeros(d->nw), *gb = dzeros(d->nb);
  fd_grad(f, c, pr.xd, pr.wd, pr.bd, pr.dyd, y, d->ny, pr.xd, d->nx, gx);
  fd_grad(f, c, pr.xd, pr.wd, pr.bd, pr.dyd, y, d->ny, pr.wd, d->nw, gw);
  fd_grad(f, c, pr.xd, pr.wd, pr.bd, pr.dyd, y, d->ny, pr.bd, d->nb, gb);

  /* The analytic double loops used for the large shapes must agree with
   * finite differences here (see the tolerances at the top). */
  double *ax = dzeros(d->nx), *aw = dzeros(d->nw), *ab = dzeros(d->nb);
  (transposed ? ref_conv_transpose2d_grads : ref_conv2d_grads)(c, pr.xd, pr.wd, pr.dyd, ax, aw, ab);
  CHECK_REL(sdw_test_rel_err_f64(ax, gx, d->nx), 1e-8, "analytic reference dx vs fd");
  CHECK_REL(sdw_test_rel_err_f64(aw, gw, d->nw), 1e-8, "analytic reference dw vs fd");
  CHECK_REL(sdw_test_rel_err_f64(ab, gb, d->nb), 1e-8, "analytic reference db vs fd");

  check_backward_into(ctx, &pr, gx, gw, gb, true, true, true, false, rng, 1e-5, "all, zeroed");
  check_backward_into(ctx, &pr, gx, gw, gb, true, true, true, true, rng, 1e-5,
                      "all, accumulated onto random values");
  check_backward_into(ctx, &pr, gx, gw, gb, true, false, false, true, rng, 1e-5, "dx only");
  check_backward_into(ctx, &pr, gx, gw, gb, false, true, false, true, rng, 1e-5, "dw only");
  check_backward_into(ctx, &pr, gx, gw, gb, false, false, true, true, rng, 1e-5, "db only");
  check_backward_into(ctx, &pr, gx, gw, gb, false, false, false, false, rng, 1e-5, "none");

  free(y), free(gx), free(gw), free(gb), free(ax), free(aw), free(ab);
  problem_free(&pr);
}

/* Output-row bands the op will use for this problem (kernels/cpu/im2col.h);
 * the large-shape test asserts its shapes really span several. */
static int bands_of(const conv_problem *pr) {
  const conv_case *c = &pr->c;
  sdw_conv_geom g;
  int64_t col_rows, weight = (int64_t)c->Co * c->Ci * c->KH * c->KW;
  if (pr->transposed) {
    g = (sdw_conv_geom){.C = c->Co,
                        .H = pr->d.Ho,
                        .W = pr->d.Wo,
                        .KH = c->KH,
                        .KW = c->KW,
                        .stride = c->stride,
                        .pad = c->pad};
    col_rows = (int64_t)c->Co * c->KH * c->KW;
  } else {
    g = (sdw_conv_geom){.C = c->Ci,
                        .H = c->H,
                        .W = c->W,
                        .KH = c->KH,
                        .KW = c->KW,
                        .stride = c->stride,
                        .pad = c->pad};
    col_rows = (int64_t)c->Ci * c->KH * c->KW;
  }
  sdw_conv_geom_finish(&g);
  const int rows = sdw_conv_band_rows(&g, col_rows, weight);
  return (g.Ho + rows - 1) / rows;
}

/* Shapes big enough that the column matrix spans several bands of output
 * rows; analytic double references for the gradients. */
static void check_case_large(sdw_ctx *ctx, const conv_case *c, bool transposed, sdw_test_rng *rng) {
  conv_problem pr;
  problem_init(&pr, c, transposed, rng);
  const conv_dims *d = &pr.d;
  char name[160];
  describe(&pr, name, sizeof name);
  CHECK_MSG(bands_of(&pr) >= 2, "%s: only %d band(s); enlarge the test shape", name, bands_of(&pr));
  check_forward(ctx, &pr, 1e-5);
  double *gx = dzeros(d->nx), *gw = dzeros(d->nw), *gb = dzeros(d->nb);
  (transposed ? ref_conv_transpose2d_grads : ref_conv2d_grads)(c, pr.xd, pr.wd, pr.dyd, gx, gw, gb);
  check_backward_into(ctx, &pr, gx, gw, gb, true, true, true, true, rng, 3e-5, "accumulated");
  free(gx), free(gw), free(gb);
  problem_free(&pr);
}

static sdw_ctx *make_ctx(void) {
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  return ctx;
}

/* --- tests ---------------------------------------------------------------- */

/* N, Ci, Co, H, W, KH, KW, stride, pad, bias */
static const conv_case conv2d_cases[] = {
    {2, 3, 4, 5, 7, 3, 3, 1, 1, true},  /* the UNet's 3x3 "same" conv, odd sizes */
    {2, 5, 7, 9, 8, 3, 3, 2, 1, false}, /* downsample conv */
    {2, 5, 4, 6, 5, 1, 1, 1, 0, true},  /* 1x1 (direct GEMM path) */
    {1, 3, 7, 7, 9, 3, 3, 1, 0, true},  /* valid conv */
    {2, 4, 5, 8, 8, 3, 3, 2, 0, true},  /* stride 2 without padding */
    {2, 3, 4, 5, 6, 1, 1, 2, 0, false}, /* 1x1 stride 2 (not the direct path) */
    {1, 2, 3, 6, 7, 1, 1, 1, 1, true},  /* 1x1 with padding */
    {2, 3, 4, 7, 6, 4, 4, 2, 1, true},  /* even kernel */
    {1, 3, 4, 6, 5, 3, 2, 1, 1, true},  /* non-square kernel */
    {2, 2, 3, 5, 5, 5, 5, 1, 2, false}, /* 5x5 */
    {1, 3, 2, 3, 4, 3, 3, 3, 1, true},  /* stride 3, tiny image */
};

static const conv_case conv_transpose2d_cases[] = {
    {2, 3, 4, 5, 6, 4, 4, 2, 1, true}, /* the seed's upsampler: 4x4 s2 p1 */
    {2, 5, 3, 4, 5, 3, 3, 2, 1, false},
    {1, 3, 4, 5, 5, 3, 3, 1, 1, true},
    {2, 4, 3, 3, 4, 3, 3, 1, 0, true},
    {1, 2, 3, 4, 3, 2, 2, 2, 0, true},  /* non-overlapping taps */
    {2, 3, 2, 5, 5, 1, 1, 1, 0, true},  /* 1x1 (direct GEMM path) */
    {1, 3, 2, 4, 4, 5, 5, 3, 2, false}, /* general k, s, p */
    {1, 2, 3, 3, 5, 3, 2, 2, 1, true},  /* non-square kernel */
};

SDW_TEST(conv2d_vs_reference_and_fd) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  sdw_test_rng rng = sdw_test_rng_make(101);
  for (size_t i = 0; i < sizeof conv2d_cases / sizeof conv2d_cases[0]; i++)
    check_case_fd(ctx, &conv2d_cases[i], false, &rng);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(conv_transpose2d_vs_reference_and_fd) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  sdw_test_rng rng = sdw_test_rng_make(202);
  for (size_t i = 0; i < sizeof conv_transpose2d_cases / sizeof conv_transpose2d_cases[0]; i++)
    check_case_fd(ctx, &conv_transpose2d_cases[i], true, &rng);
  sdw_ctx_destroy(ctx);
}

SDW_TEST(conv_large_shapes_several_bands) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  sdw_test_rng rng = sdw_test_rng_make(303);
  /* column matrices of 1152 x 63*65 and 1152 x 64*64 floats (~19 MB each),
   * then 64*16 rows x 66*64 columns (~17 MB) for the 4x4 s2 p1 upsampler */
  const conv_case c1 = {1, 128, 4, 63, 65, 3, 3, 1, 1, true};
  const conv_case c2 = {1, 128, 3, 127, 127, 3, 3, 2, 1, true};
  const conv_case t1 = {1, 4, 64, 66, 64, 4, 4, 2, 1, true};
  check_case_large(ctx, &c1, false, &rng);
  check_case_large(ctx, &c2, false, &rng);
  check_case_large(ctx, &t1, true, &rng);
  sdw_ctx_destroy(ctx);
}

/* --- upsampling ------------------------------------------------------------ */

SDW_TEST(upsample_nearest2x_vs_reference_and_fd) {
  sdw_ctx *ctx = make_ctx();
  REQUIRE(ctx);
  sdw_test_rng rng = sdw_test_rng_make(404);
  const int N = 2, C = 3, H = 5, W = 7;
  const size_t nx = (size_t)N * C * H * W, ny = 4 * nx;
  float *x = guarded_normal(&rng, nx, "x"), *dy = guarded_normal(&rng, ny, "dy");
  float *y = sdw_test_alloc_guarded(ny, "y");
  sdw_tensor tx = sdw_tensor_4d(x, SDW_F32, N, C, H, W);
  sdw_tensor ty = sdw_tensor_4d(y, SDW_F32, N, C, 2 * H, 2 * W);
  sdw_tensor tdy = sdw_tensor_4d(dy, SDW_F32, N, C, 2 * H, 2 * W);
  CHECK_OK(ctx->ops->upsample_nearest2x_forward(ctx, &tx, &ty));

  /* reference: y[n,c,i,j] = x[n,c,i/2,j/2] */
  double *want = dzeros(ny);
  for (int p = 0; p < N * C; p++)
    for (int i = 0; i < 2 * H; i++)
      for (int j = 0; j < 2 * W; j++)
        want[((size_t)p * 2 * H + i) * 2 * W + j] = x[((size_t)p * H + i / 2) * W + j / 2];
  CHECK_REL(sdw_test_rel_err_f32_f64(y, want, ny), 0.0, "upsample forward (a copy: exact)");

  /* finite differences of L = sum(dy .* up(x)) */
  double *xd = to_double(x, nx), *gx = dzeros(nx);
  const double h = 1e-6;
  for (size_t k = 0; k < nx; k++) {
    double L[2];
    for (int side = 0; side < 2; side++) {
      double v = xd[k];
      xd[k] = v + (side ? -h : h);
      L[side] = 0;
      for (int p = 0; p < N * C; p++)
        for (int i = 0; i < 2 * H; i++)
          for (int j = 0; j < 2 * W; j++) {
            size_t yi = ((size_t)p * 2 * H + i) * 2 * W + j;
            L[side] += dy[yi] * xd[((size_t)p * H + i / 2) * W + j / 2];
          }
      xd[k] = v;
    }
    gx[k] = (L[0] - L[1]) / (2 * h);
  }
  float *dx = guarded_zero(nx, "dx");
  sdw_tensor tdx = sdw_tensor_4d(dx, SDW_F32, N, C, H, W);
  CHECK_OK(ctx->ops->upsample_nearest2x_backward(ctx, &tdy, &tdx));
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, gx, nx), 1e-6, "upsample dx vs fd");

  /* accumulation onto random values */
  sdw_test_fill_normal(&rng, dx, nx, 1.0f);
  double *pre = to_double(dx, nx);
  for (size_t k = 0; k < nx; k++)
    pre[k] += gx[k];
  CHECK_OK(ctx->ops->upsample_nearest2x_backward(ctx, &tdy, &tdx));
  CHECK_REL(sdw_test_rel_err_f32_f64(dx, pre, nx), 1e-6, "upsample dx accumulated");

  CHECK_GUARD(x), CHECK_GUARD(y), CHECK_GUARD(dy), CHECK_GUARD(dx);
  sdw_test_free_guarded(x), sdw_test_free_guarded(y), sdw_test_free_guarded(dy);
  sdw_test_free_guarded(dx);
  free(want), free(xd), free(gx), free(pre);
  sdw_ctx_destroy(ctx);
}
