/* Benchmarks of attention (the UNet's self-attention levels and its
 * cross-attention to 77 text tokens), linear layers and softmax.
 *
 * FLOP counts: attention forward 4 B H Tq Tk Dh (two products); backward
 * 10 B H Tq Tk Dh: the four gradient products plus the recomputed scores
 * (the "bwd" rows say so); causal rows count the full square all the same.
 * linear forward 2 M N K, backward 4 M N K (dx and dw). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

typedef struct attn_args {
  sdw_ctx *ctx;
  sdw_tensor q, k, v, out, lse, dout, dq, dk, dv;
  float scale;
} attn_args;

static void run_attn_fwd(void *p) {
  attn_args *a = p;
  sdw_status st = a->ctx->ops->attention_forward(a->ctx, &a->q, &a->k, &a->v, NULL, false, a->scale,
                                                 &a->out, &a->lse);
  if (st != SDW_OK) fprintf(stderr, "attention_forward: %s\n", sdw_last_error());
}

static void run_attn_bwd(void *p) {
  attn_args *a = p;
  sdw_status st =
      a->ctx->ops->attention_backward(a->ctx, &a->q, &a->k, &a->v, NULL, false, a->scale, &a->out,
                                      &a->lse, &a->dout, &a->dq, &a->dk, &a->dv);
  if (st != SDW_OK) fprintf(stderr, "attention_backward: %s\n", sdw_last_error());
}

static void bench_attention_shape(sdw_ctx *ctx, int b, int tq, int tk, int h, int dh) {
  const size_t nq = (size_t)b * tq * h * dh, nk = (size_t)b * tk * h * dh;
  attn_args a = {.ctx = ctx, .scale = 1.0f / sqrtf((float)dh)};
  a.q = sdw_tensor_4d(sdw_bench_random(nq, 1), SDW_F32, b, tq, h, dh);
  a.k = sdw_tensor_4d(sdw_bench_random(nk, 2), SDW_F32, b, tk, h, dh);
  a.v = sdw_tensor_4d(sdw_bench_random(nk, 3), SDW_F32, b, tk, h, dh);
  a.out = sdw_tensor_4d(sdw_bench_random(nq, 4), SDW_F32, b, tq, h, dh);
  a.lse = sdw_tensor_3d(sdw_bench_random((size_t)b * h * tq, 5), SDW_F32, b, h, tq);
  a.dout = sdw_tensor_4d(sdw_bench_random(nq, 6), SDW_F32, b, tq, h, dh);
  a.dq = sdw_tensor_4d(sdw_bench_random(nq, 7), SDW_F32, b, tq, h, dh);
  a.dk = sdw_tensor_4d(sdw_bench_random(nk, 8), SDW_F32, b, tk, h, dh);
  a.dv = sdw_tensor_4d(sdw_bench_random(nk, 9), SDW_F32, b, tk, h, dh);
  char shape[64];
  snprintf(shape, sizeof shape, "B%d H%d Tq%d Tk%d Dh%d", b, h, tq, tk, dh);
  const double base = (double)b * h * tq * tk * dh;
  double t = sdw_bench_time(run_attn_fwd, &a, 3, 1.0);
  sdw_bench_report("attention", shape, "fwd", t, 4 * base, 0);
  t = sdw_bench_time(run_attn_bwd, &a, 3, 1.0);
  sdw_bench_report("attention", shape, "bwd(10)", t, 10 * base, 0);
  free(a.q.data), free(a.k.data), free(a.v.data), free(a.out.data), free(a.lse.data);
  free(a.dout.data), free(a.dq.data), free(a.dk.data), free(a.dv.data);
}

/* UNet self-attention at the 32x32 latent (T 1024) and 64x64 (T 4096)
 * levels, with the head dims of the three channel widths (320/640/1280
 * over 8 heads); then cross-attention to the 77 CLIP tokens. */
SDW_BENCH(attention_t1024) {
  for (int dh = 40; dh <= 160; dh *= 2)
    bench_attention_shape(ctx, 2, 1024, 1024, 8, dh);
}

SDW_BENCH(attention_t4096) {
  for (int dh = 40; dh <= 160; dh *= 2)
    bench_attention_shape(ctx, 2, 4096, 4096, 8, dh);
}

SDW_BENCH(attention_cross) { bench_attention_shape(ctx, 2, 4096, 77, 8, 40); }

typedef struct linear_args {
  sdw_ctx *ctx;
  sdw_tensor x, w, b, y, dx, dw, db;
} linear_args;

static void run_linear_fwd(void *p) {
  linear_args *a = p;
  a->ctx->ops->linear_forward(a->ctx, &a->x, &a->w, &a->b, &a->y);
}

static void run_linear_bwd(void *p) {
  linear_args *a = p;
  a->ctx->ops->linear_backward(a->ctx, &a->x, &a->w, &a->y, &a->dx, &a->dw, &a->db);
}

static void bench_linear_shape(sdw_ctx *ctx, int m, int k, int n) {
  linear_args a = {.ctx = ctx};
  a.x = sdw_tensor_2d(sdw_bench_random((size_t)m * k, 1), SDW_F32, m, k);
  a.w = sdw_tensor_2d(sdw_bench_random((size_t)n * k, 2), SDW_F32, n, k);
  a.b = sdw_tensor_1d(sdw_bench_random((size_t)n, 3), SDW_F32, n);
  a.y = sdw_tensor_2d(sdw_bench_random((size_t)m * n, 4), SDW_F32, m, n);
  a.dx = sdw_tensor_2d(sdw_bench_random((size_t)m * k, 5), SDW_F32, m, k);
  a.dw = sdw_tensor_2d(sdw_bench_random((size_t)n * k, 6), SDW_F32, n, k);
  a.db = sdw_tensor_1d(sdw_bench_random((size_t)n, 7), SDW_F32, n);
  char shape[64];
  snprintf(shape, sizeof shape, "M%d K%d N%d", m, k, n);
  const double mnk = (double)m * n * k;
  double t = sdw_bench_time(run_linear_fwd, &a, 3, 0.5);
  sdw_bench_report("linear", shape, "fwd", t, 2 * mnk, 0);
  t = sdw_bench_time(run_linear_bwd, &a, 3, 0.5);
  sdw_bench_report("linear", shape, "bwd", t, 4 * mnk, 0);
  free(a.x.data), free(a.w.data), free(a.b.data), free(a.y.data);
  free(a.dx.data), free(a.dw.data), free(a.db.data);
}

SDW_BENCH(linear) {
  bench_linear_shape(ctx, 2 * 4096, 320, 320);  /* to_q/k/v/out at the 64x64 level */
  bench_linear_shape(ctx, 2 * 1024, 640, 2560); /* GEGLU projection at the 32x32 level */
  bench_linear_shape(ctx, 2 * 77, 768, 320);    /* to_k/to_v of the text context */
}

typedef struct softmax_args {
  sdw_ctx *ctx;
  sdw_tensor x, y, dx;
} softmax_args;

static void run_softmax_fwd(void *p) {
  softmax_args *a = p;
  a->ctx->ops->softmax_forward(a->ctx, &a->x, &a->y);
}

static void run_softmax_bwd(void *p) {
  softmax_args *a = p;
  a->ctx->ops->softmax_backward(a->ctx, &a->y, &a->x, &a->dx);
}

SDW_BENCH(softmax) {
  const int rows = 8 * 1024, n = 1024;
  softmax_args a = {.ctx = ctx};
  a.x = sdw_tensor_2d(sdw_bench_random((size_t)rows * n, 1), SDW_F32, rows, n);
  a.y = sdw_tensor_2d(sdw_bench_random((size_t)rows * n, 2), SDW_F32, rows, n);
  a.dx = sdw_tensor_2d(sdw_bench_random((size_t)rows * n, 3), SDW_F32, rows, n);
  const double bytes = 4.0 * rows * n;
  double t = sdw_bench_time(run_softmax_fwd, &a, 3, 0.5);
  sdw_bench_report("softmax", "R8192 N1024", "fwd", t, 0, 2 * bytes);
  t = sdw_bench_time(run_softmax_bwd, &a, 3, 0.5);
  sdw_bench_report("softmax", "R8192 N1024", "bwd", t, 0, 4 * bytes);
  free(a.x.data), free(a.y.data), free(a.dx.data);
}
