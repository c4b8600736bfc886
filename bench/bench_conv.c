/* Convolution benchmarks at the UNet's hot shapes (batch 2: one CFG step).
 * flops: forward 2*N*Co*Ho*Wo*Ci*KH*KW (the GEMM work); backward counts the
 * dX and dW GEMMs, 2x forward (the bias gradient is not counted). For
 * ConvTranspose2d the GEMM work is 2*N*Ci*H*W*Co*KH*KW over its input x
 * (each input pixel meets every tap once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

typedef struct conv_bench {
  sdw_ctx *ctx;
  bool transposed;
  int stride, pad;
  sdw_tensor x, w, b, y, dy, dx, dw, db;
} conv_bench;

static void run_forward(void *arg) {
  conv_bench *c = arg;
  sdw_status st = c->transposed ? c->ctx->ops->conv_transpose2d_forward(c->ctx, &c->x, &c->w, &c->b,
                                                                        c->stride, c->pad, &c->y)
                                : c->ctx->ops->conv2d_forward(c->ctx, &c->x, &c->w, &c->b,
                                                              c->stride, c->pad, &c->y);
  if (st != SDW_OK) {
    fprintf(stderr, "bench_conv: %s\n", sdw_last_error());
    exit(1);
  }
}

static void run_backward(void *arg) {
  conv_bench *c = arg;
  sdw_status st = c->transposed
                      ? c->ctx->ops->conv_transpose2d_backward(
                            c->ctx, &c->x, &c->w, &c->dy, c->stride, c->pad, &c->dx, &c->dw, &c->db)
                      : c->ctx->ops->conv2d_backward(c->ctx, &c->x, &c->w, &c->dy, c->stride,
                                                     c->pad, &c->dx, &c->dw, &c->db);
  if (st != SDW_OK) {
    fprintf(stderr, "bench_conv: %s\n", sdw_last_error());
    exit(1);
  }
}

static sdw_tensor random_4d(int64_t a, int64_t b, int64_t c, int64_t d, unsigned seed) {
  return sdw_tensor_4d(sdw_bench_random((size_t)(a * b * c * d), seed), SDW_F32, a, b, c, d);
}

/* One shape: x[N,Ci,H,W], a KxK kernel; forward and backward rows. */
static void bench_shape(sdw_ctx *ctx, const char *op, bool transposed, int N, int Ci, int Co, int H,
                        int W, int K, int stride, int pad) {
  conv_bench c = {.ctx = ctx, .transposed = transposed, .stride = stride, .pad = pad};
  int Ho, Wo;
  if (transposed) {
    Ho = (H - 1) * stride - 2 * pad + K;
    Wo = (W - 1) * stride - 2 * pad + K;
  } else {
    Ho = (H + 2 * pad - K) / stride + 1;
    Wo = (W + 2 * pad - K) / stride + 1;
  }
  c.x = random_4d(N, Ci, H, W, 1);
  c.w = transposed ? random_4d(Ci, Co, K, K, 2) : random_4d(Co, Ci, K, K, 2);
  c.b = sdw_tensor_1d(sdw_bench_random((size_t)Co, 3), SDW_F32, Co);
  c.y = random_4d(N, Co, Ho, Wo, 4);
  c.dy = random_4d(N, Co, Ho, Wo, 5);
  c.dx = random_4d(N, Ci, H, W, 6);
  c.dw = transposed ? random_4d(Ci, Co, K, K, 7) : random_4d(Co, Ci, K, K, 7);
  c.db = sdw_tensor_1d(sdw_bench_random((size_t)Co, 8), SDW_F32, Co);

  const double flops =
      transposed ? 2.0 * N * Ci * H * W * Co * K * K : 2.0 * N * Co * Ho * Wo * Ci * K * K;
  char shape[96];
  snprintf(shape, sizeof shape, "[%d,%d,%d,%d]->[%d,%d,%d,%d] k%d s%d", N, Ci, H, W, N, Co, Ho, Wo,
           K, stride);
  double t = sdw_bench_time(run_forward, &c, 3, 0.5);
  sdw_bench_report(op, shape, "forward", t, flops, 0);
  t = sdw_bench_time(run_backward, &c, 3, 0.5);
  sdw_bench_report(op, shape, "backward", t, 2 * flops, 0);

  sdw_tensor *all[] = {&c.x, &c.w, &c.b, &c.y, &c.dy, &c.dx, &c.dw, &c.db};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    free(all[i]->data);
}

SDW_BENCH(conv2d_3x3) {
  bench_shape(ctx, "conv2d", false, 2, 320, 320, 64, 64, 3, 1, 1);
  bench_shape(ctx, "conv2d", false, 2, 640, 640, 32, 32, 3, 1, 1);
  bench_shape(ctx, "conv2d", false, 2, 1280, 1280, 16, 16, 3, 1, 1);
}

SDW_BENCH(conv2d_3x3_stride2) { bench_shape(ctx, "conv2d", false, 2, 320, 320, 64, 64, 3, 2, 1); }

SDW_BENCH(conv_transpose2d_4x4) {
  bench_shape(ctx, "conv_transpose2d", true, 2, 1280, 1280, 16, 16, 4, 2, 1);
  bench_shape(ctx, "conv_transpose2d", true, 2, 640, 640, 32, 32, 4, 2, 1);
}
