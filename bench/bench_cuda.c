/* Benchmarks of the CUDA backend at Stable Diffusion shapes (512x512 images,
 * 64x64 latents, batch 8): GEMM, 3x3 conv, attention, group norm, AdamW, in
 * fp32 (TF32 off, the parity mode) and, for GEMM and conv, TF32 and BF16
 * (kernels/cuda/cuda_backend.h: bf16 GEMM operands, convs as TF32). Every row
 * times the op plus a stream synchronize (best of the repetitions). Without
 * a CUDA backend or device it prints one "skipped" line. The GFLOP/s ratio
 * column compares with the CPU sgemm ceiling of bench/main.c; read the
 * absolute GFLOP/s against the card's peak instead (H100 SXM: fp32 67
 * TFLOP/s, TF32 495 dense).
 *
 * FLOP counts as bench_attention.c / bench_conv.c: linear fwd 2MNK, bwd 4MNK;
 * conv fwd 2 N Co Ho Wo Ci KH KW, bwd twice that; attention fwd 4 B H Tq Tk
 * Dh, bwd 10 B H Tq Tk Dh. Group norm and AdamW report bytes moved. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#ifdef SDW_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

typedef struct cuda_bench {
  sdw_ctx *ctx;
  void *bufs[12];
  int nbufs;
  bool failed;
} cuda_bench;

/* A device tensor of random values (the buffer is kept in b->bufs). */
static sdw_tensor dev_tensor(cuda_bench *b, int ndim, const int64_t *shape, unsigned seed) {
  sdw_tensor t = sdw_tensor_make(NULL, SDW_F32, ndim, shape);
  t.device = (sdw_device){SDW_DEVICE_CUDA, 0};
  size_t n = (size_t)sdw_tensor_numel(&t);
  float *host = sdw_bench_random(n, seed);
  void *dev = NULL;
  if (!host || b->ctx->ops->alloc(b->ctx, n * sizeof(float), &dev) != SDW_OK ||
      b->ctx->ops->upload(b->ctx, dev, host, n * sizeof(float)) != SDW_OK) {
    fprintf(stderr, "cuda bench: %s\n", sdw_last_error());
    b->failed = true;
  }
  free(host);
  if (dev && b->nbufs < 12) b->bufs[b->nbufs++] = dev;
  t.data = dev;
  return t;
}

static void free_all(cuda_bench *b) {
  for (int i = 0; i < b->nbufs; i++)
    b->ctx->ops->free(b->ctx, b->bufs[i]);
  b->nbufs = 0;
}

typedef struct op_call {
  sdw_ctx *ctx;
  int kind;
  sdw_tensor t[10];
  int stride, pad, groups;
  sdw_adamw_params adamw;
} op_call;

enum { K_LIN_F, K_LIN_B, K_CONV_F, K_CONV_B, K_ATT_F, K_ATT_B, K_GN_F, K_GN_B, K_ADAMW };

static void run_op(void *p) {
  op_call *c = p;
  const sdw_backend *o = c->ctx->ops;
  sdw_tensor *t = c->t;
  sdw_status st = SDW_OK;
  switch (c->kind) {
  case K_LIN_F: st = o->linear_forward(c->ctx, &t[0], &t[1], &t[2], &t[3]); break;
  case K_LIN_B: st = o->linear_backward(c->ctx, &t[0], &t[1], &t[3], &t[4], &t[5], &t[6]); break;
  case K_CONV_F:
    st = o->conv2d_forward(c->ctx, &t[0], &t[1], &t[2], c->stride, c->pad, &t[3]);
    break;
  case K_CONV_B:
    st = o->conv2d_backward(c->ctx, &t[0], &t[1], &t[3], c->stride, c->pad, &t[4], &t[5], &t[6]);
    break;
  case K_ATT_F:
    st = o->attention_forward(c->ctx, &t[0], &t[1], &t[2], NULL, false,
                              1.0f / sqrtf((float)t[0].shape[3]), &t[3], &t[4]);
    break;
  case K_ATT_B:
    st = o->attention_backward(c->ctx, &t[0], &t[1], &t[2], NULL, false,
                               1.0f / sqrtf((float)t[0].shape[3]), &t[3], &t[4], &t[5], &t[6],
                               &t[7], &t[8]);
    break;
  case K_GN_F:
    st = o->group_norm_forward(c->ctx, &t[0], &t[1], &t[2], c->groups, 1e-5f, &t[3], &t[4], &t[5]);
    break;
  case K_GN_B:
    st = o->group_norm_backward(c->ctx, &t[0], &t[1], &t[4], &t[5], &t[6], c->groups, &t[7], &t[8],
                                &t[9]);
    break;
  default: st = o->adamw_step(c->ctx, &t[0], &t[1], &t[2], &t[3], &c->adamw); break;
  }
  if (st == SDW_OK) st = o->synchronize(c->ctx);
  if (st != SDW_OK) fprintf(stderr, "cuda bench: %s\n", sdw_last_error());
}

static void bench_linear(cuda_bench *b, int64_t m, int64_t k, int64_t n, const char *math) {
  op_call c = {.ctx = b->ctx};
  c.t[0] = dev_tensor(b, 2, (int64_t[]){m, k}, 1);
  c.t[1] = dev_tensor(b, 2, (int64_t[]){n, k}, 2);
  c.t[2] = dev_tensor(b, 1, (int64_t[]){n}, 3);
  c.t[3] = dev_tensor(b, 2, (int64_t[]){m, n}, 4);
  c.t[4] = dev_tensor(b, 2, (int64_t[]){m, k}, 5);
  c.t[5] = dev_tensor(b, 2, (int64_t[]){n, k}, 6);
  c.t[6] = dev_tensor(b, 1, (int64_t[]){n}, 7);
  char shape[96], dir[32];
  snprintf(shape, sizeof shape, "%lldx%lld @ %lldx%lld^T", (long long)m, (long long)k, (long long)n,
           (long long)k);
  if (!b->failed) {
    c.kind = K_LIN_F;
    snprintf(dir, sizeof dir, "fwd %s", math);
    sdw_bench_report("cuda linear", shape, dir, sdw_bench_time(run_op, &c, 3, 0.5), 2.0 * m * n * k,
                     0);
    c.kind = K_LIN_B;
    snprintf(dir, sizeof dir, "bwd %s", math);
    sdw_bench_report("cuda linear", shape, dir, sdw_bench_time(run_op, &c, 3, 0.5), 4.0 * m * n * k,
                     0);
  }
  free_all(b);
}

static void bench_conv(cuda_bench *b, int64_t n, int64_t ci, int64_t hw, int64_t co,
                       const char *math) {
  op_call c = {.ctx = b->ctx, .stride = 1, .pad = 1};
  c.t[0] = dev_tensor(b, 4, (int64_t[]){n, ci, hw, hw}, 1);
  c.t[1] = dev_tensor(b, 4, (int64_t[]){co, ci, 3, 3}, 2);
  c.t[2] = dev_tensor(b, 1, (int64_t[]){co}, 3);
  c.t[3] = dev_tensor(b, 4, (int64_t[]){n, co, hw, hw}, 4);
  c.t[4] = dev_tensor(b, 4, (int64_t[]){n, ci, hw, hw}, 5);
  c.t[5] = dev_tensor(b, 4, (int64_t[]){co, ci, 3, 3}, 6);
  c.t[6] = dev_tensor(b, 1, (int64_t[]){co}, 7);
  char shape[96], dir[32];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld 3x3 ->%lld", (long long)n, (long long)ci,
           (long long)hw, (long long)hw, (long long)co);
  const double flops = 2.0 * n * co * hw * hw * ci * 9;
  if (!b->failed) {
    c.kind = K_CONV_F;
    snprintf(dir, sizeof dir, "fwd %s", math);
    sdw_bench_report("cuda conv2d", shape, dir, sdw_bench_time(run_op, &c, 3, 0.5), flops, 0);
    c.kind = K_CONV_B;
    snprintf(dir, sizeof dir, "bwd %s", math);
    sdw_bench_report("cuda conv2d", shape, dir, sdw_bench_time(run_op, &c, 3, 0.5), 2 * flops, 0);
  }
  free_all(b);
}

static void bench_attention(cuda_bench *b, int64_t bt, int64_t tq, int64_t tk, int64_t h,
                            int64_t dh) {
  op_call c = {.ctx = b->ctx};
  const int64_t qs[4] = {bt, tq, h, dh}, ks[4] = {bt, tk, h, dh};
  c.t[0] = dev_tensor(b, 4, qs, 1);
  c.t[1] = dev_tensor(b, 4, ks, 2);
  c.t[2] = dev_tensor(b, 4, ks, 3);
  c.t[3] = dev_tensor(b, 4, qs, 4);
  c.t[4] = dev_tensor(b, 3, (int64_t[]){bt, h, tq}, 5);
  c.t[5] = dev_tensor(b, 4, qs, 6);
  c.t[6] = dev_tensor(b, 4, qs, 7);
  c.t[7] = dev_tensor(b, 4, ks, 8);
  c.t[8] = dev_tensor(b, 4, ks, 9);
  char shape[96];
  snprintf(shape, sizeof shape, "B%lld H%lld Tq%lld Tk%lld Dh%lld", (long long)bt, (long long)h,
           (long long)tq, (long long)tk, (long long)dh);
  const double base = (double)bt * h * tq * tk * dh;
  if (!b->failed) {
    c.kind = K_ATT_F;
    run_op(&c); /* a real lse for the backward */
    sdw_bench_report("cuda attention", shape, "fwd", sdw_bench_time(run_op, &c, 2, 0.5), 4 * base,
                     0);
    c.kind = K_ATT_B;
    sdw_bench_report("cuda attention", shape, "bwd(10)", sdw_bench_time(run_op, &c, 2, 0.5),
                     10 * base, 0);
  }
  free_all(b);
}

static void bench_group_norm(cuda_bench *b, int64_t n, int64_t ch, int64_t hw) {
  op_call c = {.ctx = b->ctx, .groups = 32};
  const int64_t xs[4] = {n, ch, hw, hw}, cs[1] = {ch}, ss[1] = {n * 32};
  c.t[0] = dev_tensor(b, 4, xs, 1);
  c.t[1] = dev_tensor(b, 1, cs, 2);
  c.t[2] = dev_tensor(b, 1, cs, 3);
  c.t[3] = dev_tensor(b, 4, xs, 4);
  c.t[4] = dev_tensor(b, 1, ss, 5);
  c.t[5] = dev_tensor(b, 1, ss, 6);
  c.t[6] = dev_tensor(b, 4, xs, 7);
  c.t[7] = dev_tensor(b, 4, xs, 8);
  c.t[8] = dev_tensor(b, 1, cs, 9);
  c.t[9] = dev_tensor(b, 1, cs, 10);
  char shape[96];
  snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld g32", (long long)n, (long long)ch,
           (long long)hw, (long long)hw);
  const double bytes = 4.0 * n * ch * hw * hw;
  if (!b->failed) {
    c.kind = K_GN_F;
    sdw_bench_report("cuda group_norm", shape, "fwd", sdw_bench_time(run_op, &c, 3, 0.5), 0,
                     2 * bytes);
    c.kind = K_GN_B;
    sdw_bench_report("cuda group_norm", shape, "bwd", sdw_bench_time(run_op, &c, 3, 0.5), 0,
                     4 * bytes);
  }
  free_all(b);
}

static void bench_adamw(cuda_bench *b, int64_t n) {
  op_call c = {.ctx = b->ctx, .kind = K_ADAMW};
  c.adamw = (sdw_adamw_params){1e-4, 0.9, 0.999, 1e-8, 1e-2, 10, 1.0f};
  for (int i = 0; i < 4; i++)
    c.t[i] = dev_tensor(b, 1, (int64_t[]){n}, (unsigned)(i + 1));
  char shape[64];
  snprintf(shape, sizeof shape, "n=%lld", (long long)n);
  if (!b->failed)
    sdw_bench_report("cuda adamw", shape, "step", sdw_bench_time(run_op, &c, 3, 0.5), 0,
                     7.0 * 4 * n);
  free_all(b);
}

SDW_BENCH(cuda_ops) {
  (void)ctx;
  const sdw_backend *be = sdw_backend_cuda();
  if (!be) {
    printf("cuda_ops: skipped (this build has no CUDA backend)\n");
    return;
  }
  cuda_bench b = {0};
  if (sdw_ctx_create(be, 0, &b.ctx) != SDW_OK) {
    printf("cuda_ops: skipped (%s)\n", sdw_last_error());
    return;
  }
#ifdef SDW_HAVE_CUDA
  char desc[512];
  sdw_cuda_describe(b.ctx, desc, sizeof desc);
  printf("cuda_ops: %s\n", desc);
  const int maths = 3;
#else
  const int maths = 1; /* unreachable without CUDA: sdw_backend_cuda() is NULL */
#endif
  for (int tf32 = 0; tf32 < maths; tf32++) /* 0 fp32, 1 tf32, 2 bf16 */ {
#ifdef SDW_HAVE_CUDA
    static const sdw_cuda_math modes[3] = {SDW_CUDA_MATH_FP32, SDW_CUDA_MATH_TF32,
                                           SDW_CUDA_MATH_BF16};
    sdw_cuda_set_math(b.ctx, modes[tf32]);
#endif
    const char *math = tf32 == 2 ? "bf16" : tf32 ? "tf32" : "fp32";
    bench_linear(&b, 8 * 4096, 320, 1280, math);
    bench_linear(&b, 8 * 1024, 640, 5120, math);
    bench_conv(&b, 8, 320, 64, 320, math);
    bench_conv(&b, 8, 1280, 8, 1280, math);
  }
#ifdef SDW_HAVE_CUDA
  sdw_cuda_set_math(b.ctx, SDW_CUDA_MATH_FP32);
#endif
  bench_attention(&b, 8, 4096, 4096, 8, 40);
  bench_attention(&b, 8, 4096, 77, 8, 40);
  bench_attention(&b, 8, 1024, 1024, 8, 80);
  bench_group_norm(&b, 8, 320, 64);
  bench_adamw(&b, (int64_t)1 << 26);
  sdw_ctx_destroy(b.ctx);
}
