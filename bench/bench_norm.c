/* Bandwidth-bound ops at the UNet's shapes (batch 2: one CFG step): group
 * norm, layer norm, SiLU/GELU, and the optimizer over 100M parameters.
 * Rates are GB/s of tensor traffic, reads + writes, each tensor counted once
 * per call (an accumulated gradient counts as a read and a write; per-channel
 * parameters and saved statistics are negligible and left out):
 *   norm forward x + y = 8 B/elem; norm backward x + dy + dx (r/w) = 16;
 *   activation forward 8, backward 16;
 *   AdamW param, m, v (r/w) + grad = 28; EMA 12; sum of squares 4. */
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench.h"

static void bench_check(sdw_status st) {
  if (st != SDW_OK) {
    fprintf(stderr, "bench_norm: %s\n", sdw_last_error());
    exit(1);
  }
}

/* --- norms ------------------------------------------------------------------------- */

typedef struct norm_bench {
  sdw_ctx *ctx;
  int groups; /* 0: layer norm */
  sdw_tensor x, gamma, beta, y, mean, rstd, dy, dx, dgamma, dbeta;
} norm_bench;

static void norm_forward(void *arg) {
  norm_bench *b = arg;
  if (b->groups)
    bench_check(b->ctx->ops->group_norm_forward(b->ctx, &b->x, &b->gamma, &b->beta, b->groups,
                                                1e-5f, &b->y, &b->mean, &b->rstd));
  else
    bench_check(b->ctx->ops->layer_norm_forward(b->ctx, &b->x, &b->gamma, &b->beta, 1e-5f, &b->y,
                                                &b->mean, &b->rstd));
}

static void norm_backward(void *arg) {
  norm_bench *b = arg;
  if (b->groups)
    bench_check(b->ctx->ops->group_norm_backward(b->ctx, &b->x, &b->gamma, &b->mean, &b->rstd,
                                                 &b->dy, b->groups, &b->dx, &b->dgamma, &b->dbeta));
  else
    bench_check(b->ctx->ops->layer_norm_backward(b->ctx, &b->x, &b->gamma, &b->mean, &b->rstd,
                                                 &b->dy, &b->dx, &b->dgamma, &b->dbeta));
}

/* x of the given shape; channels = the normalised/affine dim size; stats = count. */
static void bench_norm_shape(sdw_ctx *ctx, const char *op, const char *shape, int ndim,
                             const int64_t *dims, int64_t channels, int64_t stats, int groups) {
  norm_bench b = {.ctx = ctx, .groups = groups};
  sdw_tensor probe = sdw_tensor_make(NULL, SDW_F32, ndim, dims);
  size_t n = (size_t)sdw_tensor_numel(&probe);
  b.x = sdw_tensor_make(sdw_bench_random(n, 1), SDW_F32, ndim, dims);
  b.y = sdw_tensor_make(sdw_bench_random(n, 2), SDW_F32, ndim, dims);
  b.dy = sdw_tensor_make(sdw_bench_random(n, 3), SDW_F32, ndim, dims);
  b.dx = sdw_tensor_make(sdw_bench_random(n, 4), SDW_F32, ndim, dims);
  b.gamma = sdw_tensor_1d(sdw_bench_random((size_t)channels, 5), SDW_F32, channels);
  b.beta = sdw_tensor_1d(sdw_bench_random((size_t)channels, 6), SDW_F32, channels);
  b.dgamma = sdw_tensor_1d(sdw_bench_random((size_t)channels, 7), SDW_F32, channels);
  b.dbeta = sdw_tensor_1d(sdw_bench_random((size_t)channels, 8), SDW_F32, channels);
  b.mean = sdw_tensor_1d(sdw_bench_random((size_t)stats, 9), SDW_F32, stats);
  b.rstd = sdw_tensor_1d(sdw_bench_random((size_t)stats, 10), SDW_F32, stats);
  double t = sdw_bench_time(norm_forward, &b, 5, 0.5);
  sdw_bench_report(op, shape, "forward", t, 0, 8.0 * n);
  t = sdw_bench_time(norm_backward, &b, 5, 0.5);
  sdw_bench_report(op, shape, "backward", t, 0, 16.0 * n);
  sdw_tensor *all[] = {&b.x,    &b.y,      &b.dy,    &b.dx,   &b.gamma,
                       &b.beta, &b.dgamma, &b.dbeta, &b.mean, &b.rstd};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    free(all[i]->data);
}

SDW_BENCH(group_norm) {
  const int64_t dims[4] = {2, 320, 64, 64};
  bench_norm_shape(ctx, "group_norm", "[2,320,64,64] G32", 4, dims, 320, 2 * 32, 32);
}

SDW_BENCH(layer_norm) {
  const int64_t dims[2] = {2 * 4096, 320};
  bench_norm_shape(ctx, "layer_norm", "[8192,320]", 2, dims, 320, 2 * 4096, 0);
}

/* --- activations -------------------------------------------------------------------- */

typedef struct act_bench {
  sdw_ctx *ctx;
  bool gelu;
  sdw_tensor x, y, dy, dx;
} act_bench;

static void act_forward(void *arg) {
  act_bench *a = arg;
  bench_check(a->gelu ? a->ctx->ops->gelu_forward(a->ctx, &a->x, &a->y)
                      : a->ctx->ops->silu_forward(a->ctx, &a->x, &a->y));
}

static void act_backward(void *arg) {
  act_bench *a = arg;
  bench_check(a->gelu ? a->ctx->ops->gelu_backward(a->ctx, &a->x, &a->dy, &a->dx)
                      : a->ctx->ops->silu_backward(a->ctx, &a->x, &a->dy, &a->dx));
}

SDW_BENCH(silu_gelu) {
  const int64_t dims[4] = {2, 320, 64, 64};
  size_t n = 2 * 320 * 64 * 64;
  act_bench a = {.ctx = ctx};
  a.x = sdw_tensor_make(sdw_bench_random(n, 11), SDW_F32, 4, dims);
  a.y = sdw_tensor_make(sdw_bench_random(n, 12), SDW_F32, 4, dims);
  a.dy = sdw_tensor_make(sdw_bench_random(n, 13), SDW_F32, 4, dims);
  a.dx = sdw_tensor_make(sdw_bench_random(n, 14), SDW_F32, 4, dims);
  /* spread x over the interesting range (the bench buffers are +-0.1) */
  float *xp = a.x.data;
  for (size_t i = 0; i < n; i++)
    xp[i] *= 60.0f;
  for (int g = 0; g < 2; g++) {
    a.gelu = g;
    const char *op = g ? "gelu" : "silu";
    double t = sdw_bench_time(act_forward, &a, 5, 0.5);
    sdw_bench_report(op, "[2,320,64,64]", "forward", t, 0, 8.0 * n);
    t = sdw_bench_time(act_backward, &a, 5, 0.5);
    sdw_bench_report(op, "[2,320,64,64]", "backward", t, 0, 16.0 * n);
  }
  free(a.x.data), free(a.y.data), free(a.dy.data), free(a.dx.data);
}

/* --- optimizer ------------------------------------------------------------------------ */

typedef struct optim_bench {
  sdw_ctx *ctx;
  sdw_adamw_params h;
  sdw_tensor p, g, m, v;
  double sum;
} optim_bench;

static void run_adamw(void *arg) {
  optim_bench *o = arg;
  bench_check(o->ctx->ops->adamw_step(o->ctx, &o->p, &o->g, &o->m, &o->v, &o->h));
  o->h.step++;
}

static void run_ema(void *arg) {
  optim_bench *o = arg;
  bench_check(o->ctx->ops->ema_update(o->ctx, &o->m, &o->p, 0.9999f));
}

static void run_sum_squares(void *arg) {
  optim_bench *o = arg;
  bench_check(o->ctx->ops->sum_squares(o->ctx, &o->g, &o->sum));
}

SDW_BENCH(adamw) {
  const int64_t n = 100 * 1000 * 1000;
  optim_bench o = {.ctx = ctx, .h = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 1.0f}};
  o.p = sdw_tensor_1d(sdw_bench_random((size_t)n, 21), SDW_F32, n);
  o.g = sdw_tensor_1d(sdw_bench_random((size_t)n, 22), SDW_F32, n);
  o.m = sdw_tensor_1d(sdw_bench_random((size_t)n, 23), SDW_F32, n);
  o.v = sdw_tensor_1d(sdw_bench_random((size_t)n, 24), SDW_F32, n);
  float *vp = o.v.data; /* second moments are non-negative */
  for (int64_t i = 0; i < n; i++)
    vp[i] *= vp[i];
  double t = sdw_bench_time(run_adamw, &o, 3, 1.0);
  sdw_bench_report("adamw", "100M params", "step", t, 0, 28.0 * n);
  t = sdw_bench_time(run_ema, &o, 3, 1.0);
  sdw_bench_report("ema_update", "100M params", "step", t, 0, 12.0 * n);
  t = sdw_bench_time(run_sum_squares, &o, 3, 1.0);
  sdw_bench_report("sum_squares", "100M params", "reduce", t, 0, 4.0 * n);
  free(o.p.data), free(o.g.data), free(o.m.data), free(o.v.data);
}
