/* `sdw run cuda-parity [SUBSTRING]`: every op of kernels/ops.h, forward and
 * backward, on the CPU backend (the reference) and the CUDA backend (the
 * device under test) with the same random inputs, several shapes each (odd
 * sizes included). One line per case: PASS/FAIL, the normwise relative error
 * max|dut - ref| / max|ref| of each output (the goldens' metric), and the
 * time of one call on each backend (a second call, after the compared one,
 * so cuDNN's algorithm choice and module loading are not timed).
 *
 * Tolerances (issue 8, fp32 mode, TF32 off):
 *   1e-5  elementwise, layout, norms, softmax, activations, losses,
 *         embeddings: the same f32 formulas, only summation orders (and
 *         libm vs CUDA math within a few ulps) differ.
 *   1e-4  GEMM, convolution, attention: long dot products summed in a
 *         different order (cuBLAS/cuDNN tiles, online softmax), ~sqrt(K) ulps.
 *   1e-6  AdamW and EMA: the CUDA kernels replay the CPU's rounding op by op,
 *         so they should be bit-identical (the line also says whether they are).
 *   0     casts (round-to-nearest-even both sides) and copies.
 * Every buffer on both sides is followed by a 256-byte sentinel, checked
 * after every case; gradient outputs start from random values so the
 * accumulation (+=) is checked, not just the product.
 *
 * SDW_PARITY_SELF=1 runs the CPU backend against itself (a check of this
 * harness on machines without a GPU). Exit status: 0 all passed (or SKIP:
 * no CUDA backend or device), 1 a case failed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cli/run.h"
#include "kernels/ops.h"
#ifdef SDW_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

enum { GUARD = 256, MAX_T = 16 };

typedef enum init_kind { INIT_RAND, INIT_POS, INIT_ZERO, INIT_DATA } init_kind;

/* One tensor held twice: on the reference backend and on the backend under
 * test, with the same bytes. */
typedef struct ptensor {
  sdw_tensor ref, dut;
  size_t bytes;
} ptensor;

typedef struct parity {
  sdw_ctx *ref, *dut;
  char **filters; /* case-name substrings (any matches); none: every case */
  int nfilters;
  uint64_t rng;
  int cases, failures;
  ptensor t[MAX_T];
  int nt;
  bool broken; /* a setup step failed: the case fails */
} parity;

/* The op under test on one side: t[i] is that side's tensor i (NULL when the
 * case passes none), side 0 = reference, 1 = under test. */
typedef sdw_status (*op_fn)(sdw_ctx *ctx, sdw_tensor **t, void *arg, int side);

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(parity *p) {
  uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static float rng_uniform(parity *p) { return (float)((rng_next(p) >> 40) * 0x1.0p-24); }

static unsigned char guard_byte(size_t i) { return (unsigned char)(0xA5 ^ (i * 29)); }

/* Adds tensor i (returned) with the given contents on both sides. */
static int pt_new(parity *p, sdw_dtype dtype, int ndim, const int64_t *shape, init_kind init,
                  const void *data) {
  SDW_ASSERT(p->nt < MAX_T);
  int idx = p->nt++;
  ptensor *t = &p->t[idx];
  memset(t, 0, sizeof *t);
  t->ref = sdw_tensor_make(NULL, dtype, ndim, shape);
  t->bytes = sdw_tensor_nbytes(&t->ref);
  unsigned char *host = malloc(t->bytes + GUARD);
  if (!host) {
    p->broken = true;
    return idx;
  }
  size_t n = (size_t)sdw_tensor_numel(&t->ref);
  if (init == INIT_DATA)
    memcpy(host, data, t->bytes);
  else if (init == INIT_ZERO)
    memset(host, 0, t->bytes);
  else {
    SDW_ASSERT(dtype == SDW_F32);
    float *f = (float *)host;
    for (size_t i = 0; i < n; i++)
      f[i] = init == INIT_POS ? 0.1f + rng_uniform(p) : 2.0f * rng_uniform(p) - 1.0f;
  }
  for (size_t i = 0; i < GUARD; i++)
    host[t->bytes + i] = guard_byte(i);
  t->ref.data = host;
  t->dut = t->ref;
  t->dut.device = (sdw_device){p->dut->ops->device, 0};
  void *dev = NULL;
  if (p->dut->ops->alloc(p->dut, t->bytes + GUARD, &dev) != SDW_OK ||
      p->dut->ops->upload(p->dut, dev, host, t->bytes + GUARD) != SDW_OK) {
    fprintf(stderr, "sdw: cuda-parity: %s\n", sdw_last_error());
    if (dev) p->dut->ops->free(p->dut, dev);
    p->broken = true;
    t->dut.data = NULL;
    return idx;
  }
  t->dut.data = dev;
  return idx;
}

static int pt_f32(parity *p, int ndim, const int64_t *shape, init_kind init) {
  return pt_new(p, SDW_F32, ndim, shape, init, NULL);
}

static void pt_free_all(parity *p) {
  for (int i = 0; i < p->nt; i++) {
    free(p->t[i].ref.data);
    if (p->t[i].dut.data) p->dut->ops->free(p->dut, p->t[i].dut.data);
  }
  p->nt = 0;
  p->broken = false;
}

/* False (and a message) when either side's sentinel after tensor i changed. */
static bool pt_guards_ok(parity *p, int i, const char *name) {
  ptensor *t = &p->t[i];
  unsigned char got[GUARD];
  bool ok = true;
  const unsigned char *h = (const unsigned char *)t->ref.data + t->bytes;
  for (size_t k = 0; k < GUARD; k++)
    if (h[k] != guard_byte(k)) ok = false;
  if (!ok) printf("      %s: reference wrote past tensor %d\n", name, i);
  if (t->dut.data &&
      p->dut->ops->download(p->dut, got, (const char *)t->dut.data + t->bytes, GUARD) == SDW_OK) {
    for (size_t k = 0; k < GUARD; k++)
      if (got[k] != guard_byte(k)) {
        printf("      %s: backend under test wrote past tensor %d\n", name, i);
        return false;
      }
  }
  return ok;
}

/* Normwise relative error of tensor i (dut vs ref) as doubles; equal
 * infinities count as equal, NaN anywhere is an infinite error. *bits_equal
 * says whether every byte matches. */
static double pt_rel_err(parity *p, int i, bool *bits_equal) {
  ptensor *t = &p->t[i];
  *bits_equal = false;
  unsigned char *got = malloc(t->bytes ? t->bytes : 1);
  if (!got) return INFINITY;
  if (p->dut->ops->download(p->dut, got, t->dut.data, t->bytes) != SDW_OK) {
    printf("      download failed: %s\n", sdw_last_error());
    free(got);
    return INFINITY;
  }
  *bits_equal = memcmp(got, t->ref.data, t->bytes) == 0;
  sdw_tensor g = t->ref;
  g.data = got;
  int64_t n = sdw_tensor_numel(&t->ref);
  double max_diff = 0.0, max_ref = 0.0;
  for (int64_t k = 0; k < n; k++) {
    double a = sdw_tensor_get(&g, k), b = sdw_tensor_get(&t->ref, k);
    if (isnan(a) || isnan(b)) {
      max_diff = INFINITY;
      continue;
    }
    if (isinf(a) || isinf(b)) {
      if (a != b) max_diff = INFINITY;
      continue;
    }
    double d = fabs(a - b);
    if (d > max_diff) max_diff = d;
    if (fabs(b) > max_ref) max_ref = fabs(b);
  }
  free(got);
  return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

static bool want_case(const parity *p, const char *name) {
  if (p->nfilters == 0) return true;
  for (int i = 0; i < p->nfilters; i++)
    if (strstr(name, p->filters[i])) return true;
  return false;
}

static sdw_status run_side(parity *p, op_fn fn, void *arg, int side, double *seconds) {
  sdw_ctx *ctx = side ? p->dut : p->ref;
  sdw_tensor *ts[MAX_T];
  for (int i = 0; i < p->nt; i++)
    ts[i] = side ? &p->t[i].dut : &p->t[i].ref;
  for (int i = p->nt; i < MAX_T; i++)
    ts[i] = NULL;
  double t0 = now_s();
  sdw_status st = fn(ctx, ts, arg, side);
  if (st == SDW_OK) st = ctx->ops->synchronize(ctx);
  *seconds = now_s() - t0;
  return st;
}

/* Runs fn on both sides, compares outputs outs[0..nouts) within tol, checks
 * every sentinel, times a second call, prints the line. expect: the status
 * both sides must return (SDW_OK, or an error for bad-data cases). */
static void check_case(parity *p, const char *name, op_fn fn, void *arg, const int *outs, int nouts,
                       double tol, sdw_status expect) {
  if (!want_case(p, name)) {
    pt_free_all(p);
    return;
  }
  p->cases++;
  bool ok = !p->broken;
  double worst = 0.0, t_ref = 0.0, t_dut = 0.0;
  bool all_bits = true;
  char detail[512] = "";
  if (ok) {
    sdw_status s_ref = run_side(p, fn, arg, 0, &t_ref);
    sdw_status s_dut = run_side(p, fn, arg, 1, &t_dut);
    if (s_ref != expect || s_dut != expect) {
      ok = false;
      snprintf(detail, sizeof detail, "status cpu=%s under-test=%s, want %s (%s)",
               sdw_status_name(s_ref), sdw_status_name(s_dut), sdw_status_name(expect),
               sdw_last_error());
    }
    if (ok && expect == SDW_OK) {
      size_t len = 0;
      for (int k = 0; k < nouts; k++) {
        bool bits;
        double e = pt_rel_err(p, outs[k], &bits);
        all_bits = all_bits && bits;
        if (!(e <= tol)) ok = false;
        if (!(e <= worst)) worst = e;
        if (len < sizeof detail - 32)
          len += (size_t)snprintf(detail + len, sizeof detail - len, "%s%.1e", k ? " " : "", e);
      }
    }
    for (int i = 0; i < p->nt; i++)
      if (!pt_guards_ok(p, i, name)) ok = false;
    if (ok && expect == SDW_OK) { /* timing: a second call on each side */
      (void)run_side(p, fn, arg, 0, &t_ref);
      (void)run_side(p, fn, arg, 1, &t_dut);
    }
  } else {
    snprintf(detail, sizeof detail, "setup failed");
  }
  if (!ok) p->failures++;
  printf("%s  %-52s rel %-9.2e tol %.0e  cpu %9.3f ms  %s %9.3f ms%s  [%s]\n", ok ? "PASS" : "FAIL",
         name, worst, tol, t_ref * 1e3, p->dut->ops->name, t_dut * 1e3,
         all_bits && expect == SDW_OK && nouts ? "  bit-identical" : "", detail);
  fflush(stdout);
  pt_free_all(p);
}

/* --- op adapters ------------------------------------------------------------------ */

typedef struct conv_arg {
  int stride, pad;
  bool bias, dx, dw, db;
} conv_arg;

/* t: x w b y | x w dy dx dw db */
static sdw_status op_conv_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  conv_arg *ca = a;
  return c->ops->conv2d_forward(c, t[0], t[1], ca->bias ? t[2] : NULL, ca->stride, ca->pad, t[3]);
}
static sdw_status op_conv_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  conv_arg *ca = a;
  return c->ops->conv2d_backward(c, t[0], t[1], t[2], ca->stride, ca->pad, ca->dx ? t[3] : NULL,
                                 ca->dw ? t[4] : NULL, ca->db ? t[5] : NULL);
}
static sdw_status op_convt_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  conv_arg *ca = a;
  return c->ops->conv_transpose2d_forward(c, t[0], t[1], ca->bias ? t[2] : NULL, ca->stride,
                                          ca->pad, t[3]);
}
static sdw_status op_convt_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  conv_arg *ca = a;
  return c->ops->conv_transpose2d_backward(c, t[0], t[1], t[2], ca->stride, ca->pad,
                                           ca->dx ? t[3] : NULL, ca->dw ? t[4] : NULL,
                                           ca->db ? t[5] : NULL);
}

static void case_conv(parity *p, bool transpose, int64_t n, int64_t ci, int64_t h, int64_t w,
                      int64_t co, int64_t k, int stride, int pad) {
  int64_t ho, wo;
  if (transpose) {
    ho = (h - 1) * stride - 2 * pad + k;
    wo = (w - 1) * stride - 2 * pad + k;
  } else {
    ho = (h + 2 * pad - k) / stride + 1;
    wo = (w + 2 * pad - k) / stride + 1;
  }
  int64_t xs[4] = {n, ci, h, w}, ys[4] = {n, co, ho, wo};
  int64_t ws[4] = {transpose ? ci : co, transpose ? co : ci, k, k}, bs[1] = {co};
  char name[160];
  const char *op = transpose ? "conv_transpose2d" : "conv2d";
  conv_arg fa = {stride, pad, true, true, true, true};
  snprintf(name, sizeof name, "%s_forward x[%lld,%lld,%lld,%lld] %lldx%lld ->%lld s%d p%d", op,
           (long long)n, (long long)ci, (long long)h, (long long)w, (long long)k, (long long)k,
           (long long)co, stride, pad);
  pt_f32(p, 4, xs, INIT_RAND);
  pt_f32(p, 4, ws, INIT_RAND);
  pt_f32(p, 1, bs, INIT_RAND);
  int y = pt_f32(p, 4, ys, INIT_RAND);
  check_case(p, name, transpose ? op_convt_fwd : op_conv_fwd, &fa, &y, 1, 1e-4, SDW_OK);

  snprintf(name, sizeof name, "%s_backward x[%lld,%lld,%lld,%lld] %lldx%lld ->%lld s%d p%d", op,
           (long long)n, (long long)ci, (long long)h, (long long)w, (long long)k, (long long)k,
           (long long)co, stride, pad);
  pt_f32(p, 4, xs, INIT_RAND);
  pt_f32(p, 4, ws, INIT_RAND);
  pt_f32(p, 4, ys, INIT_RAND);
  int outs[3];
  outs[0] = pt_f32(p, 4, xs, INIT_RAND);
  outs[1] = pt_f32(p, 4, ws, INIT_RAND);
  outs[2] = pt_f32(p, 1, bs, INIT_RAND);
  check_case(p, name, transpose ? op_convt_bwd : op_conv_bwd, &fa, outs, 3, 1e-4, SDW_OK);
}

/* Backward with some gradients NULL (skipped): the others must not change. */
static void case_conv_partial(parity *p, bool transpose, bool dx, bool dw, bool db) {
  const int64_t n = 2, ci = 3, h = 9, w = 8, co = 4, k = 3;
  int stride = transpose ? 2 : 1, pad = 1;
  int64_t ho = transpose ? (h - 1) * stride - 2 * pad + k : (h + 2 * pad - k) / stride + 1;
  int64_t wo = transpose ? (w - 1) * stride - 2 * pad + k : (w + 2 * pad - k) / stride + 1;
  int64_t xs[4] = {n, ci, h, w}, ys[4] = {n, co, ho, wo};
  int64_t ws[4] = {transpose ? ci : co, transpose ? co : ci, k, k}, bs[1] = {co};
  conv_arg a = {stride, pad, true, dx, dw, db};
  char name[128];
  snprintf(name, sizeof name, "%s_backward only%s%s%s", transpose ? "conv_transpose2d" : "conv2d",
           dx ? " dx" : "", dw ? " dw" : "", db ? " db" : "");
  pt_f32(p, 4, xs, INIT_RAND);
  pt_f32(p, 4, ws, INIT_RAND);
  pt_f32(p, 4, ys, INIT_RAND);
  int outs[3], no = 0;
  int ix = pt_f32(p, 4, xs, INIT_RAND), iw = pt_f32(p, 4, ws, INIT_RAND);
  int ib = pt_f32(p, 1, bs, INIT_RAND);
  if (dx) outs[no++] = ix;
  if (dw) outs[no++] = iw;
  if (db) outs[no++] = ib;
  check_case(p, name, transpose ? op_convt_bwd : op_conv_bwd, &a, outs, no, 1e-4, SDW_OK);
}

static sdw_status op_up_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->upsample_nearest2x_forward(c, t[0], t[1]);
}
static sdw_status op_up_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->upsample_nearest2x_backward(c, t[0], t[1]);
}

static void case_upsample(parity *p, int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t s[4] = {n, c, h, w}, b[4] = {n, c, 2 * h, 2 * w};
  char name[128];
  snprintf(name, sizeof name, "upsample_nearest2x_forward [%lld,%lld,%lld,%lld]", (long long)n,
           (long long)c, (long long)h, (long long)w);
  pt_f32(p, 4, s, INIT_RAND);
  int y = pt_f32(p, 4, b, INIT_RAND);
  check_case(p, name, op_up_fwd, NULL, &y, 1, 1e-5, SDW_OK);
  snprintf(name, sizeof name, "upsample_nearest2x_backward [%lld,%lld,%lld,%lld]", (long long)n,
           (long long)c, (long long)h, (long long)w);
  pt_f32(p, 4, b, INIT_RAND);
  int dx = pt_f32(p, 4, s, INIT_RAND);
  check_case(p, name, op_up_bwd, NULL, &dx, 1, 1e-5, SDW_OK);
}

typedef struct norm_arg {
  int groups;
  float eps;
  bool affine;
} norm_arg;

/* fwd t: x gamma beta y mean rstd; bwd t: x gamma mean rstd dy dx dgamma dbeta */
static sdw_status op_gn_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  norm_arg *na = a;
  return c->ops->group_norm_forward(c, t[0], na->affine ? t[1] : NULL, na->affine ? t[2] : NULL,
                                    na->groups, na->eps, t[3], t[4], t[5]);
}
static sdw_status op_gn_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  norm_arg *na = a;
  return c->ops->group_norm_backward(c, t[0], na->affine ? t[1] : NULL, t[2], t[3], t[4],
                                     na->groups, t[5], na->affine ? t[6] : NULL,
                                     na->affine ? t[7] : NULL);
}
static sdw_status op_ln_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  norm_arg *na = a;
  return c->ops->layer_norm_forward(c, t[0], na->affine ? t[1] : NULL, na->affine ? t[2] : NULL,
                                    na->eps, t[3], t[4], t[5]);
}
static sdw_status op_ln_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  norm_arg *na = a;
  return c->ops->layer_norm_backward(c, t[0], na->affine ? t[1] : NULL, t[2], t[3], t[4], t[5],
                                     na->affine ? t[6] : NULL, na->affine ? t[7] : NULL);
}

/* Statistics for the backward come from the reference forward (the CPU),
 * uploaded to both sides, so the backward is compared on equal inputs. */
static void norm_stats(parity *p, bool group, const sdw_tensor *x, const sdw_tensor *gamma,
                       const sdw_tensor *beta, norm_arg *na, int mean_i, int rstd_i) {
  sdw_tensor y = *x;
  size_t bytes = sdw_tensor_nbytes(x);
  y.data = malloc(bytes);
  if (!y.data) {
    p->broken = true;
    return;
  }
  sdw_tensor *m = &p->t[mean_i].ref, *r = &p->t[rstd_i].ref;
  sdw_status st =
      group ? p->ref->ops->group_norm_forward(p->ref, x, gamma, beta, na->groups, na->eps, &y, m, r)
            : p->ref->ops->layer_norm_forward(p->ref, x, gamma, beta, na->eps, &y, m, r);
  free(y.data);
  if (st != SDW_OK) {
    p->broken = true;
    return;
  }
  int idx[2] = {mean_i, rstd_i};
  for (int k = 0; k < 2; k++)
    if (p->dut->ops->upload(p->dut, p->t[idx[k]].dut.data, p->t[idx[k]].ref.data,
                            p->t[idx[k]].bytes) != SDW_OK)
      p->broken = true;
}

static void case_norm(parity *p, bool group, int ndim, const int64_t *shape, int groups,
                      bool affine) {
  norm_arg na = {groups, group ? 1e-6f : 1e-5f, affine};
  int64_t c = group ? shape[1] : shape[ndim - 1];
  int64_t stats = group ? shape[0] * groups : 1;
  if (!group)
    for (int i = 0; i + 1 < ndim; i++)
      stats *= shape[i];
  int64_t cs[1] = {c}, ss[1] = {stats};
  char dims[96], name[160];
  int len = 0;
  for (int i = 0; i < ndim; i++)
    len += snprintf(dims + len, sizeof dims - (size_t)len, "%s%lld", i ? "," : "[",
                    (long long)shape[i]);
  snprintf(dims + len, sizeof dims - (size_t)len, "]");
  const char *op = group ? "group_norm" : "layer_norm";
  char gs[16] = "";
  if (group) snprintf(gs, sizeof gs, " g%d", groups);
  snprintf(name, sizeof name, "%s_forward %s%s%s", op, dims, gs, affine ? "" : " no-affine");
  pt_f32(p, ndim, shape, INIT_RAND);
  pt_f32(p, 1, cs, INIT_RAND);
  pt_f32(p, 1, cs, INIT_RAND);
  int outs[3];
  outs[0] = pt_f32(p, ndim, shape, INIT_RAND);
  outs[1] = pt_f32(p, 1, ss, INIT_RAND);
  outs[2] = pt_f32(p, 1, ss, INIT_RAND);
  check_case(p, name, group ? op_gn_fwd : op_ln_fwd, &na, outs, 3, 1e-5, SDW_OK);

  snprintf(name, sizeof name, "%s_backward %s%s%s", op, dims, gs, affine ? "" : " no-affine");
  int x = pt_f32(p, ndim, shape, INIT_RAND);
  int gamma = pt_f32(p, 1, cs, INIT_RAND);
  int mean = pt_f32(p, 1, ss, INIT_ZERO);
  int rstd = pt_f32(p, 1, ss, INIT_ZERO);
  /* beta for the stats pass only: the same random values on the reference side suffice */
  norm_stats(p, group, &p->t[x].ref, affine ? &p->t[gamma].ref : NULL, NULL, &na, mean, rstd);
  pt_f32(p, ndim, shape, INIT_RAND); /* dy */
  outs[0] = pt_f32(p, ndim, shape, INIT_RAND);
  outs[1] = pt_f32(p, 1, cs, INIT_RAND);
  outs[2] = pt_f32(p, 1, cs, INIT_RAND);
  check_case(p, name, group ? op_gn_bwd : op_ln_bwd, &na, outs, affine ? 3 : 1, 1e-5, SDW_OK);
}

typedef struct lin_arg {
  bool bias;
  bool trans_a, trans_b;
  float alpha, beta;
} lin_arg;

/* fwd t: x w b y; bwd t: x w dy dx dw db; matmul t: a b c */
static sdw_status op_lin_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  lin_arg *la = a;
  return c->ops->linear_forward(c, t[0], t[1], la->bias ? t[2] : NULL, t[3]);
}
static sdw_status op_lin_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  lin_arg *la = a;
  return c->ops->linear_backward(c, t[0], t[1], t[2], t[3], t[4], la->bias ? t[5] : NULL);
}
static sdw_status op_matmul(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  lin_arg *la = a;
  return c->ops->matmul(c, la->trans_a, la->trans_b, la->alpha, t[0], t[1], la->beta, t[2]);
}

static void case_linear(parity *p, int64_t b, int64_t m, int64_t k, int64_t n, bool bias) {
  lin_arg la = {bias, false, false, 1, 0};
  int64_t xs[3] = {b, m, k}, ws[2] = {n, k}, bs[1] = {n}, ys[3] = {b, m, n};
  char name[128];
  snprintf(name, sizeof name, "linear_forward [%lld,%lld,%lld] x [%lld,%lld]%s", (long long)b,
           (long long)m, (long long)k, (long long)n, (long long)k, bias ? " +b" : "");
  pt_f32(p, 3, xs, INIT_RAND);
  pt_f32(p, 2, ws, INIT_RAND);
  pt_f32(p, 1, bs, INIT_RAND);
  int y = pt_f32(p, 3, ys, INIT_RAND);
  check_case(p, name, op_lin_fwd, &la, &y, 1, 1e-4, SDW_OK);
  snprintf(name, sizeof name, "linear_backward [%lld,%lld,%lld] x [%lld,%lld]%s", (long long)b,
           (long long)m, (long long)k, (long long)n, (long long)k, bias ? " +db" : "");
  pt_f32(p, 3, xs, INIT_RAND);
  pt_f32(p, 2, ws, INIT_RAND);
  pt_f32(p, 3, ys, INIT_RAND);
  int outs[3];
  outs[0] = pt_f32(p, 3, xs, INIT_RAND);
  outs[1] = pt_f32(p, 2, ws, INIT_RAND);
  outs[2] = pt_f32(p, 1, bs, INIT_RAND);
  check_case(p, name, op_lin_bwd, &la, outs, bias ? 3 : 2, 1e-4, SDW_OK);
}

static void case_matmul(parity *p, int64_t bt, int64_t m, int64_t k, int64_t n, bool ta, bool tb,
                        float alpha, float beta) {
  lin_arg la = {false, ta, tb, alpha, beta};
  int64_t as[3] = {bt, ta ? k : m, ta ? m : k}, bs[3] = {bt, tb ? n : k, tb ? k : n};
  int64_t cs[3] = {bt, m, n};
  char name[128];
  snprintf(name, sizeof name, "matmul [%lld] %lldx%lldx%lld%s%s a%g b%g", (long long)bt,
           (long long)m, (long long)k, (long long)n, ta ? " Ta" : "", tb ? " Tb" : "",
           (double)alpha, (double)beta);
  pt_f32(p, 3, as, INIT_RAND);
  pt_f32(p, 3, bs, INIT_RAND);
  int c = pt_f32(p, 3, cs, INIT_RAND);
  check_case(p, name, op_matmul, &la, &c, 1, 1e-4, SDW_OK);
}

typedef struct attn_arg {
  bool mask, causal, dq, dk, dv;
  float scale;
} attn_arg;

/* fwd t: q k v mask out lse; bwd t: q k v mask out lse dout dq dk dv */
static sdw_status op_attn_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  attn_arg *aa = a;
  return c->ops->attention_forward(c, t[0], t[1], t[2], aa->mask ? t[3] : NULL, aa->causal,
                                   aa->scale, t[4], t[5]);
}
static sdw_status op_attn_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  attn_arg *aa = a;
  return c->ops->attention_backward(c, t[0], t[1], t[2], aa->mask ? t[3] : NULL, aa->causal,
                                    aa->scale, t[4], t[5], t[6], aa->dq ? t[7] : NULL,
                                    aa->dk ? t[8] : NULL, aa->dv ? t[9] : NULL);
}

/* mask: batch 0 keeps every key but the last, the last batch removes every
 * key (fully masked rows: zero output, lse = -inf, zero gradients), the rest
 * keep a random ~70%. */
static void case_attention_grads(parity *p, int64_t b, int64_t tq, int64_t tk, int64_t h,
                                 int64_t dh, bool mask, bool causal, bool dq, bool dk, bool dv) {
  attn_arg aa = {mask, causal, dq, dk, dv, (float)(1.0 / sqrt((double)dh))};
  int64_t qs[4] = {b, tq, h, dh}, ks[4] = {b, tk, h, dh}, ms[2] = {b, tk}, ls[3] = {b, h, tq};
  unsigned char *m = malloc((size_t)(b * tk));
  if (!m) return;
  for (int64_t bi = 0; bi < b; bi++)
    for (int64_t j = 0; j < tk; j++)
      m[bi * tk + j] = bi == 0 ? j != tk - 1 : bi == b - 1 ? 0 : rng_uniform(p) < 0.7f;
  char name[160];
  const char *only = dq && dk && dv ? "" : dq ? " only dq" : dk && dv ? " only dk dv" : " only dv";
  snprintf(name, sizeof name, "attention_forward B%lld Tq%lld Tk%lld H%lld Dh%lld%s%s%s",
           (long long)b, (long long)tq, (long long)tk, (long long)h, (long long)dh,
           mask ? " mask" : "", causal ? " causal" : "", only);
  int q = pt_f32(p, 4, qs, INIT_RAND);
  int k = pt_f32(p, 4, ks, INIT_RAND);
  int v = pt_f32(p, 4, ks, INIT_RAND);
  int mk = pt_new(p, SDW_U8, 2, ms, INIT_DATA, m);
  int outs[3];
  outs[0] = pt_f32(p, 4, qs, INIT_RAND);
  outs[1] = pt_f32(p, 3, ls, INIT_RAND);
  check_case(p, name, op_attn_fwd, &aa, outs, 2, 1e-4, SDW_OK);

  snprintf(name, sizeof name, "attention_backward B%lld Tq%lld Tk%lld H%lld Dh%lld%s%s%s",
           (long long)b, (long long)tq, (long long)tk, (long long)h, (long long)dh,
           mask ? " mask" : "", causal ? " causal" : "", only);
  q = pt_f32(p, 4, qs, INIT_RAND);
  k = pt_f32(p, 4, ks, INIT_RAND);
  v = pt_f32(p, 4, ks, INIT_RAND);
  mk = pt_new(p, SDW_U8, 2, ms, INIT_DATA, m);
  int out = pt_f32(p, 4, qs, INIT_ZERO);
  int lse = pt_f32(p, 3, ls, INIT_ZERO);
  (void)mk;
  /* out and lse from the reference forward, uploaded to both sides */
  if (!p->broken) {
    sdw_status st = p->ref->ops->attention_forward(p->ref, &p->t[q].ref, &p->t[k].ref, &p->t[v].ref,
                                                   mask ? &p->t[3].ref : NULL, causal, aa.scale,
                                                   &p->t[out].ref, &p->t[lse].ref);
    if (st != SDW_OK ||
        p->dut->ops->upload(p->dut, p->t[out].dut.data, p->t[out].ref.data, p->t[out].bytes) !=
            SDW_OK ||
        p->dut->ops->upload(p->dut, p->t[lse].dut.data, p->t[lse].ref.data, p->t[lse].bytes) !=
            SDW_OK)
      p->broken = true;
  }
  pt_f32(p, 4, qs, INIT_RAND); /* dout */
  int gq = pt_f32(p, 4, qs, INIT_RAND), gk = pt_f32(p, 4, ks, INIT_RAND);
  int gv = pt_f32(p, 4, ks, INIT_RAND), no = 0;
  if (dq) outs[no++] = gq;
  if (dk) outs[no++] = gk;
  if (dv) outs[no++] = gv;
  check_case(p, name, op_attn_bwd, &aa, outs, no, 1e-4, SDW_OK);
  free(m);
}

static void case_attention(parity *p, int64_t b, int64_t tq, int64_t tk, int64_t h, int64_t dh,
                           bool mask, bool causal) {
  case_attention_grads(p, b, tq, tk, h, dh, mask, causal, true, true, true);
}

/* softmax fwd t: x y; bwd t: y dy dx */
static sdw_status op_softmax_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->softmax_forward(c, t[0], t[1]);
}
static sdw_status op_softmax_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->softmax_backward(c, t[0], t[1], t[2]);
}

static void case_softmax(parity *p, int64_t rows, int64_t n) {
  int64_t s[2] = {rows, n};
  char name[128];
  snprintf(name, sizeof name, "softmax_forward [%lld,%lld]", (long long)rows, (long long)n);
  pt_f32(p, 2, s, INIT_RAND);
  int y = pt_f32(p, 2, s, INIT_RAND);
  check_case(p, name, op_softmax_fwd, NULL, &y, 1, 1e-5, SDW_OK);
  snprintf(name, sizeof name, "softmax_backward [%lld,%lld]", (long long)rows, (long long)n);
  pt_f32(p, 2, s, INIT_POS);
  pt_f32(p, 2, s, INIT_RAND);
  int dx = pt_f32(p, 2, s, INIT_RAND);
  check_case(p, name, op_softmax_bwd, NULL, &dx, 1, 1e-5, SDW_OK);
}

/* activations: fwd t: x y; bwd t: x dy dx. arg: which (0 silu, 1 gelu, 2 quick, 3 geglu) */
static sdw_status op_act_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  switch (*(int *)a) {
  case 0: return c->ops->silu_forward(c, t[0], t[1]);
  case 1: return c->ops->gelu_forward(c, t[0], t[1]);
  case 2: return c->ops->quick_gelu_forward(c, t[0], t[1]);
  default: return c->ops->geglu_forward(c, t[0], t[1]);
  }
}
static sdw_status op_act_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  switch (*(int *)a) {
  case 0: return c->ops->silu_backward(c, t[0], t[1], t[2]);
  case 1: return c->ops->gelu_backward(c, t[0], t[1], t[2]);
  case 2: return c->ops->quick_gelu_backward(c, t[0], t[1], t[2]);
  default: return c->ops->geglu_backward(c, t[0], t[1], t[2]);
  }
}

/* Inputs spread over [-6, 6] (both tails of the activations). */
static void widen(parity *p, int i) {
  float *f = p->t[i].ref.data;
  int64_t n = sdw_tensor_numel(&p->t[i].ref);
  for (int64_t k = 0; k < n; k++)
    f[k] *= 6.0f;
  if (p->dut->ops->upload(p->dut, p->t[i].dut.data, f, p->t[i].bytes) != SDW_OK) p->broken = true;
}

static void case_activation(parity *p, int which, int64_t rows, int64_t cols) {
  static const char *names[4] = {"silu", "gelu", "quick_gelu", "geglu"};
  int64_t xs[2] = {rows, which == 3 ? 2 * cols : cols}, ys[2] = {rows, cols};
  char name[128];
  snprintf(name, sizeof name, "%s_forward [%lld,%lld]", names[which], (long long)xs[0],
           (long long)xs[1]);
  int x = pt_f32(p, 2, xs, INIT_RAND);
  widen(p, x);
  int y = pt_f32(p, 2, ys, INIT_RAND);
  check_case(p, name, op_act_fwd, &which, &y, 1, 1e-5, SDW_OK);
  snprintf(name, sizeof name, "%s_backward [%lld,%lld]", names[which], (long long)xs[0],
           (long long)xs[1]);
  x = pt_f32(p, 2, xs, INIT_RAND);
  widen(p, x);
  pt_f32(p, 2, ys, INIT_RAND);
  int dx = pt_f32(p, 2, xs, INIT_RAND);
  check_case(p, name, op_act_bwd, &which, &dx, 1, 1e-5, SDW_OK);
}

/* elementwise: arg selects the op; t as listed per op */
typedef struct ew_arg {
  int op;
  float alpha, beta, value;
} ew_arg;
enum {
  EW_ADD,        /* a b y */
  EW_MUL,        /* a b y */
  EW_MUL_BWD,    /* a b dy da db */
  EW_AXPBY,      /* x y */
  EW_CBIAS,      /* x bias y */
  EW_CBIAS_BWD,  /* dy dbias */
  EW_CONCAT,     /* a b y */
  EW_CONCAT_BWD, /* dy da db */
  EW_TO_NLC,     /* x[N,C,H,W] y[N,HW,C] */
  EW_TO_NCHW,    /* x[N,HW,C] y[N,C,H,W] */
  EW_TO_NLC_BWD, /* dy[N,HW,C] dx[N,C,H,W] */
  EW_TO_NCHW_BWD,
  EW_COPY, /* x y */
  EW_FILL, /* x */
  EW_CAST, /* x y */
};
static sdw_status op_ew(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  ew_arg *e = a;
  const sdw_backend *o = c->ops;
  switch (e->op) {
  case EW_ADD: return o->add(c, t[0], t[1], t[2]);
  case EW_MUL: return o->mul(c, t[0], t[1], t[2]);
  case EW_MUL_BWD: return o->mul_backward(c, t[0], t[1], t[2], t[3], t[4]);
  case EW_AXPBY: return o->axpby(c, e->alpha, t[0], e->beta, t[1]);
  case EW_CBIAS: return o->add_channel_bias(c, t[0], t[1], t[2]);
  case EW_CBIAS_BWD: return o->add_channel_bias_backward(c, t[0], t[1]);
  case EW_CONCAT: return o->concat_channels(c, t[0], t[1], t[2]);
  case EW_CONCAT_BWD: return o->concat_channels_backward(c, t[0], t[1], t[2]);
  case EW_TO_NLC: return o->nchw_to_nlc(c, t[0], t[1]);
  case EW_TO_NCHW: return o->nlc_to_nchw(c, t[0], t[1]);
  case EW_TO_NLC_BWD: return o->nchw_to_nlc_backward(c, t[0], t[1]);
  case EW_TO_NCHW_BWD: return o->nlc_to_nchw_backward(c, t[0], t[1]);
  case EW_COPY: return o->copy(c, t[0], t[1]);
  case EW_FILL: return o->fill(c, t[0], e->value);
  default: return o->cast(c, t[0], t[1]);
  }
}

static void case_elementwise(parity *p, int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t s4[4] = {n, c, h, w}, flat[1] = {n * c * h * w}, nc[2] = {n, c};
  int64_t nlc[3] = {n, h * w, c}, cb4[4] = {n, c + 3, h, w}, c3[4] = {n, 3, h, w};
  char dims[64], name[128];
  snprintf(dims, sizeof dims, "[%lld,%lld,%lld,%lld]", (long long)n, (long long)c, (long long)h,
           (long long)w);
  ew_arg e = {0, 1, 1, 0};
  int o[2];
#define EW_CASE(label, nouts, tol)                                                                 \
  do {                                                                                             \
    snprintf(name, sizeof name, "%s %s", label, dims);                                             \
    check_case(p, name, op_ew, &e, o, nouts, tol, SDW_OK);                                         \
  } while (0)
  e.op = EW_ADD;
  pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("add", 1, 1e-5);
  e.op = EW_MUL;
  pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("mul", 1, 1e-5);
  e.op = EW_MUL_BWD;
  pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 4, s4, INIT_RAND);
  o[0] = pt_f32(p, 4, s4, INIT_RAND), o[1] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("mul_backward", 2, 1e-5);
  const float ab[3][2] = {{0.5f, 0.0f}, {1.0f, 1.0f}, {-0.75f, 1.25f}};
  for (int k = 0; k < 3; k++) {
    e.op = EW_AXPBY, e.alpha = ab[k][0], e.beta = ab[k][1];
    pt_f32(p, 1, flat, INIT_RAND), o[0] = pt_f32(p, 1, flat, INIT_RAND);
    char label[64];
    snprintf(label, sizeof label, "axpby a%g b%g", (double)e.alpha, (double)e.beta);
    EW_CASE(label, 1, 1e-5);
  }
  e.op = EW_CBIAS;
  pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 2, nc, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("add_channel_bias", 1, 1e-5);
  e.op = EW_CBIAS_BWD;
  pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 2, nc, INIT_RAND);
  EW_CASE("add_channel_bias_backward", 1, 1e-5);
  e.op = EW_CONCAT;
  pt_f32(p, 4, s4, INIT_RAND), pt_f32(p, 4, c3, INIT_RAND), o[0] = pt_f32(p, 4, cb4, INIT_RAND);
  EW_CASE("concat_channels", 1, 1e-5);
  e.op = EW_CONCAT_BWD;
  pt_f32(p, 4, cb4, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  o[1] = pt_f32(p, 4, c3, INIT_RAND);
  EW_CASE("concat_channels_backward", 2, 1e-5);
  e.op = EW_TO_NLC;
  pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 3, nlc, INIT_RAND);
  EW_CASE("nchw_to_nlc", 1, 1e-5);
  e.op = EW_TO_NCHW;
  pt_f32(p, 3, nlc, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("nlc_to_nchw", 1, 1e-5);
  e.op = EW_TO_NLC_BWD;
  pt_f32(p, 3, nlc, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("nchw_to_nlc_backward", 1, 1e-5);
  e.op = EW_TO_NCHW_BWD;
  pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 3, nlc, INIT_RAND);
  EW_CASE("nlc_to_nchw_backward", 1, 1e-5);
  e.op = EW_COPY;
  pt_f32(p, 4, s4, INIT_RAND), o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("copy", 1, 0.0);
  e.op = EW_FILL, e.value = -2.5f;
  o[0] = pt_f32(p, 4, s4, INIT_RAND);
  EW_CASE("fill", 1, 0.0);
  /* casts: f32 -> bf16 / f16 exactly (round to nearest even), and back */
  static const sdw_dtype chain[][2] = {{SDW_F32, SDW_BF16}, {SDW_F32, SDW_F16},
                                       {SDW_BF16, SDW_F32}, {SDW_F16, SDW_F32},
                                       {SDW_F16, SDW_BF16}, {SDW_BF16, SDW_F16}};
  for (int k = 0; k < 6; k++) {
    e.op = EW_CAST;
    size_t count = (size_t)flat[0];
    /* random f32 values (with 8 of them at rounding ties) converted on the
     * host for 16-bit sources */
    float *f = malloc(count * sizeof(float));
    uint16_t *hbuf = malloc(count * sizeof(uint16_t));
    if (!f || !hbuf) {
      free(f), free(hbuf);
      return;
    }
    for (size_t i = 0; i < count; i++)
      f[i] = (2.0f * rng_uniform(p) - 1.0f) * 100.0f;
    for (size_t i = 0; i < count && i < 8; i++) {
      uint32_t bits = 0x3f808000u + (uint32_t)i * 0x10000u; /* bf16 ties */
      memcpy(&f[i], &bits, sizeof bits);
    }
    const void *src = f;
    if (chain[k][0] != SDW_F32) {
      for (size_t i = 0; i < count; i++)
        hbuf[i] = chain[k][0] == SDW_BF16 ? sdw_f32_to_bf16(f[i]) : sdw_f32_to_f16(f[i]);
      src = hbuf;
    }
    pt_new(p, chain[k][0], 1, flat, INIT_DATA, src);
    o[0] = pt_new(p, chain[k][1], 1, flat, INIT_ZERO, NULL);
    char label[64];
    snprintf(label, sizeof label, "cast %s->%s", sdw_dtype_name(chain[k][0]),
             sdw_dtype_name(chain[k][1]));
    EW_CASE(label, 1, 0.0);
    free(f);
    free(hbuf);
  }
#undef EW_CASE
}

/* embeddings: timestep t y; lookup ids table y; backward ids dy dtable */
static sdw_status op_timestep(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  return c->ops->timestep_embedding(c, t[0], a, t[1]);
}
static sdw_status op_emb_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->embedding_forward(c, t[0], t[1], t[2]);
}
static sdw_status op_emb_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->embedding_backward(c, t[0], t[1], t[2]);
}

static void case_embeddings(parity *p) {
  static const float ts[6] = {0.0f, 1.0f, 17.5f, 500.0f, 999.0f, 981.0f};
  const sdw_timestep_embedding_params params[2] = {{10000.0, 1.0, false}, {10000.0, 0.0, true}};
  const int64_t dims[2] = {320, 321};
  char name[128];
  for (int k = 0; k < 2; k++) {
    int64_t tn[1] = {6}, ys[2] = {6, dims[k]};
    pt_new(p, SDW_F32, 1, tn, INIT_DATA, ts);
    int y = pt_f32(p, 2, ys, INIT_RAND);
    snprintf(name, sizeof name, "timestep_embedding dim %lld shift %g%s", (long long)dims[k],
             params[k].freq_shift, params[k].flip_sin_to_cos ? " flip" : "");
    check_case(p, name, op_timestep, (void *)&params[k], &y, 1, 1e-5, SDW_OK);
  }
  enum { V = 100, D = 77 * 10 + 3, COUNT = 2 * 77 };
  int64_t ids_shape[2] = {2, 77}, tab[2] = {V, D}, ys[3] = {2, 77, D};
  int32_t ids32[COUNT];
  int64_t ids64[COUNT];
  for (int i = 0; i < COUNT; i++)
    ids32[i] = (int32_t)(i % 7 == 0 ? 3 : (int)(rng_next(p) % V)), ids64[i] = ids32[i];
  for (int w = 0; w < 2; w++) {
    const char *dt = w ? "I64" : "I32";
    snprintf(name, sizeof name, "embedding_forward ids %s [2,77] table [%d,%d]", dt, V, D);
    pt_new(p, w ? SDW_I64 : SDW_I32, 2, ids_shape, INIT_DATA, w ? (void *)ids64 : (void *)ids32);
    pt_f32(p, 2, tab, INIT_RAND);
    int y = pt_f32(p, 3, ys, INIT_RAND);
    check_case(p, name, op_emb_fwd, NULL, &y, 1, 1e-5, SDW_OK);
    snprintf(name, sizeof name, "embedding_backward ids %s [2,77] (repeats)", dt);
    pt_new(p, w ? SDW_I64 : SDW_I32, 2, ids_shape, INIT_DATA, w ? (void *)ids64 : (void *)ids32);
    pt_f32(p, 3, ys, INIT_RAND);
    y = pt_f32(p, 2, tab, INIT_RAND);
    check_case(p, name, op_emb_bwd, NULL, &y, 1, 1e-5, SDW_OK);
  }
  /* an id out of range is bad data on both backends */
  int32_t bad[COUNT];
  memcpy(bad, ids32, sizeof bad);
  bad[100] = V;
  pt_new(p, SDW_I32, 2, ids_shape, INIT_DATA, bad);
  pt_f32(p, 2, tab, INIT_RAND);
  pt_f32(p, 3, ys, INIT_RAND);
  check_case(p, "embedding_forward id out of range -> invalid argument", op_emb_fwd, NULL, NULL, 0,
             0.0, SDW_ERR_INVALID_ARGUMENT);
}

/* loss fwd t: pred target loss; bwd t: pred target dloss dpred */
static sdw_status op_mse_fwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->mse_loss_forward(c, t[0], t[1], t[2]);
}
static sdw_status op_mse_bwd(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)a, (void)side;
  return c->ops->mse_loss_backward(c, t[0], t[1], t[2], t[3]);
}

static void case_mse(parity *p, int64_t n, int64_t c, int64_t h, int64_t w) {
  int64_t s[4] = {n, c, h, w}, ns[1] = {n};
  char name[128];
  snprintf(name, sizeof name, "mse_loss_forward [%lld,%lld,%lld,%lld]", (long long)n, (long long)c,
           (long long)h, (long long)w);
  pt_f32(p, 4, s, INIT_RAND), pt_f32(p, 4, s, INIT_RAND);
  int l = pt_f32(p, 1, ns, INIT_RAND);
  check_case(p, name, op_mse_fwd, NULL, &l, 1, 1e-5, SDW_OK);
  snprintf(name, sizeof name, "mse_loss_backward [%lld,%lld,%lld,%lld]", (long long)n, (long long)c,
           (long long)h, (long long)w);
  pt_f32(p, 4, s, INIT_RAND), pt_f32(p, 4, s, INIT_RAND), pt_f32(p, 1, ns, INIT_POS);
  int d = pt_f32(p, 4, s, INIT_RAND);
  check_case(p, name, op_mse_bwd, NULL, &d, 1, 1e-5, SDW_OK);
}

/* optim: adamw t: param grad m v; ema t: ema param; sum_squares t: x */
typedef struct opt_arg {
  sdw_adamw_params adamw;
  double decay;
  double sums[2];
} opt_arg;
static sdw_status op_adamw(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  return c->ops->adamw_step(c, t[0], t[1], t[2], t[3], &((opt_arg *)a)->adamw);
}
static sdw_status op_ema(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  (void)side;
  return c->ops->ema_update(c, t[0], t[1], ((opt_arg *)a)->decay);
}
static sdw_status op_sumsq(sdw_ctx *c, sdw_tensor **t, void *a, int side) {
  return c->ops->sum_squares(c, t[0], &((opt_arg *)a)->sums[side]);
}

static void case_optim(parity *p, int64_t n) {
  int64_t s[1] = {n};
  char name[128];
  for (int step = 1; step <= 3; step += 2) {
    opt_arg oa = {{1e-4, 0.9, 0.999, 1e-8, 1e-2, step, 0.5f}, 0, {0, 0}};
    snprintf(name, sizeof name, "adamw_step n=%lld step %d", (long long)n, step);
    int o[3];
    o[0] = pt_f32(p, 1, s, INIT_RAND);
    pt_f32(p, 1, s, INIT_RAND);
    o[1] = pt_f32(p, 1, s, INIT_RAND);
    o[2] = pt_f32(p, 1, s, INIT_POS);
    check_case(p, name, op_adamw, &oa, o, 3, 1e-6, SDW_OK);
  }
  const double decays[2] = {0.9999, 0.3};
  for (int k = 0; k < 2; k++) {
    opt_arg oa = {{0}, decays[k], {0, 0}};
    snprintf(name, sizeof name, "ema_update n=%lld decay %g", (long long)n, decays[k]);
    int e = pt_f32(p, 1, s, INIT_RAND);
    pt_f32(p, 1, s, INIT_RAND);
    check_case(p, name, op_ema, &oa, &e, 1, 1e-6, SDW_OK);
  }
  /* sum_squares returns a host double: compared here, not by check_case */
  opt_arg oa = {{0}, 0, {0, 0}};
  snprintf(name, sizeof name, "sum_squares n=%lld", (long long)n);
  if (want_case(p, name)) {
    pt_f32(p, 1, s, INIT_RAND);
    double t0 = 0, t1 = 0;
    sdw_status a = p->broken ? SDW_ERR_INTERNAL : run_side(p, op_sumsq, &oa, 0, &t0);
    sdw_status b = p->broken ? SDW_ERR_INTERNAL : run_side(p, op_sumsq, &oa, 1, &t1);
    /* double accumulation on both sides: only the order differs */
    double rel = fabs(oa.sums[1] - oa.sums[0]) / (oa.sums[0] > 0 ? oa.sums[0] : 1.0);
    bool ok = a == SDW_OK && b == SDW_OK && rel <= 1e-12 && pt_guards_ok(p, 0, name);
    p->cases++;
    if (!ok) p->failures++;
    printf("%s  %-52s rel %-9.2e tol 1e-12  cpu %9.3f ms  %s %9.3f ms  [%.17g vs %.17g]\n",
           ok ? "PASS" : "FAIL", name, rel, t0 * 1e3, p->dut->ops->name, t1 * 1e3, oa.sums[0],
           oa.sums[1]);
    pt_free_all(p);
  }
}

/* --- driver ----------------------------------------------------------------------- */

static void run_all(parity *p) {
  case_elementwise(p, 2, 5, 7, 9);
  case_elementwise(p, 2, 320, 32, 32);
  for (int which = 0; which < 4; which++) {
    case_activation(p, which, 3, 1001);
    case_activation(p, which, 1024, which == 3 ? 1280 : 1280 * 4);
  }
  case_upsample(p, 2, 3, 5, 7);
  case_upsample(p, 2, 320, 32, 32);
  const int64_t gn1[4] = {2, 32, 9, 7}, gn2[4] = {2, 320, 32, 32}, gn3[3] = {3, 64, 100};
  case_norm(p, true, 4, gn1, 8, true);
  case_norm(p, true, 4, gn1, 32, false);
  case_norm(p, true, 3, gn3, 32, true);
  case_norm(p, true, 4, gn2, 32, true);
  const int64_t ln1[3] = {3, 5, 40}, ln2[3] = {2, 77, 768}, ln3[3] = {2, 1024, 320};
  case_norm(p, false, 3, ln1, 0, true);
  case_norm(p, false, 3, ln1, 0, false);
  case_norm(p, false, 3, ln2, 0, true);
  case_norm(p, false, 3, ln3, 0, true);
  case_linear(p, 1, 37, 70, 33, true);
  case_linear(p, 3, 5, 1, 7, false);
  case_linear(p, 2, 77, 768, 3072, true);
  case_linear(p, 2, 1024, 320, 1280, true);
  case_matmul(p, 1, 13, 17, 19, false, false, 1.0f, 0.0f);
  case_matmul(p, 3, 13, 17, 19, true, false, 0.5f, 1.0f);
  case_matmul(p, 3, 13, 17, 19, false, true, 1.0f, 0.7f);
  case_matmul(p, 2, 33, 65, 31, true, true, -1.0f, 1.0f);
  case_matmul(p, 16, 256, 64, 256, false, true, 0.125f, 0.0f);
  case_conv(p, false, 2, 3, 17, 17, 5, 3, 1, 1);
  case_conv(p, false, 2, 4, 16, 15, 8, 3, 2, 1);
  case_conv(p, false, 1, 8, 9, 9, 4, 1, 1, 0);
  case_conv(p, false, 1, 4, 11, 11, 6, 3, 1, 0);
  case_conv(p, false, 2, 320, 32, 32, 320, 3, 1, 1);
  case_conv(p, false, 1, 128, 64, 64, 128, 3, 1, 1);
  case_conv(p, true, 2, 4, 7, 7, 3, 4, 2, 1);
  case_conv(p, true, 1, 8, 8, 8, 8, 3, 1, 1);
  case_conv(p, true, 2, 64, 16, 16, 32, 4, 2, 1);
  case_conv_partial(p, false, true, false, false);
  case_conv_partial(p, false, false, true, true);
  case_conv_partial(p, true, true, false, false);
  case_conv_partial(p, true, false, true, true);
  case_softmax(p, 5, 77);
  case_softmax(p, 33, 1000);
  case_softmax(p, 1024, 4096);
  case_attention(p, 2, 37, 53, 3, 40, true, false);
  case_attention(p, 3, 33, 33, 2, 64, true, true);
  case_attention(p, 1, 33, 33, 2, 64, false, true);
  case_attention(p, 2, 130, 77, 2, 160, true, false);
  case_attention(p, 1, 64, 64, 1, 512, false, false);
  case_attention(p, 2, 100, 100, 3, 80, false, false);
  case_attention(p, 2, 1024, 77, 8, 40, true, false);
  case_attention(p, 1, 4096, 4096, 2, 64, false, false);
  case_attention_grads(p, 2, 21, 19, 2, 40, true, true, true, false, false);
  case_attention_grads(p, 2, 21, 19, 2, 40, true, false, false, true, true);
  case_attention_grads(p, 2, 21, 19, 2, 40, false, false, false, false, true);
  case_embeddings(p);
  case_mse(p, 3, 4, 5, 7);
  case_mse(p, 8, 4, 64, 64);
  case_optim(p, 1001);
  case_optim(p, (1 << 20) + 5);
}

void sdw_run_cuda_parity_usage(FILE *out) {
  fprintf(out, "usage: sdw run cuda-parity [SUBSTRING...]\n"
               "  Every op forward and backward on the CPU and the CUDA backend with the same\n"
               "  random inputs; one PASS/FAIL line per case (the cases whose name contains\n"
               "  one of the SUBSTRINGs). SKIP and exit 0 without a CUDA backend or device;\n"
               "  exit 1 on a failure. Environment: SDW_PARITY_SELF=1 checks the CPU against\n"
               "  itself.\n");
}

int sdw_run_cuda_parity(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    sdw_run_cuda_parity_usage(stdout);
    return 0;
  }
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '-') {
      fprintf(stderr, "sdw: run cuda-parity: unknown option '%s'\n", argv[i]);
      sdw_run_cuda_parity_usage(stderr);
      return 2;
    }
  parity p;
  memset(&p, 0, sizeof p);
  p.filters = argv + 1;
  p.nfilters = argc - 1;
  p.rng = 20260101;
  const char *self = getenv("SDW_PARITY_SELF");
  const sdw_backend *dut = self && strcmp(self, "1") == 0 ? sdw_backend_cpu() : sdw_backend_cuda();
  if (!dut) {
    printf("SKIP: this build has no CUDA backend\n");
    return 0;
  }
  if (sdw_ctx_create(sdw_backend_cpu(), 0, &p.ref) != SDW_OK) {
    fprintf(stderr, "sdw: cuda-parity: %s\n", sdw_last_error());
    return 1;
  }
  sdw_status st = sdw_ctx_create(dut, 0, &p.dut);
  if (st != SDW_OK) {
    printf("SKIP: no CUDA device (%s)\n", sdw_last_error());
    sdw_ctx_destroy(p.ref);
    return 0;
  }
#ifdef SDW_HAVE_CUDA
  if (dut == sdw_backend_cuda()) {
    char desc[512];
    sdw_cuda_describe(p.dut, desc, sizeof desc);
    printf("device: %s\n", desc);
  }
#endif
  double t0 = now_s();
  run_all(&p);
  printf("%d cases, %d failed (%.1f s)\n", p.cases, p.failures, now_s() - t0);
  sdw_ctx_destroy(p.dut);
  sdw_ctx_destroy(p.ref);
  return p.failures ? 1 : 0;
}
