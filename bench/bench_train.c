/* One training step of the seed's UNet, fp32: forward with the saved
 * activations, plain MSE against a noise target, backward, then the
 * optimizer (global-norm clip 1.0 and AdamW, lr 1e-5, weight decay 1e-2;
 * no EMA, so that the step is what a PyTorch `opt.step()` loop does).
 *
 *   train_seed_small: the seed-unet-small golden's model and size (ch 32,
 *                     4 levels, 7.8M parameters), batch 2, 16x16 latent,
 *                     77 x 64 context
 *   train_seed_full:  the seed's full-width UNetModel (780,718,404
 *                     parameters), batch 1, 32x32 latent, 77 x 768 context
 *
 * Each runs without and with per-ResBlock gradient checkpointing (the
 * seed's default). FLOPs: 3x the analytic forward count (the backward's
 * two products per forward one; checkpointing's recomputation is not
 * counted), so GFLOP/s compares with the sgemm ceiling. Memory: the
 * activation arena's peak and the process's peak RSS during the timed
 * steps (weights, gradients and both AdamW moments included).
 *
 * Environment: SDW_BENCH_TRAIN_WEIGHTS=DIR runs on a bundle (config.json +
 * weights.safetensors) instead of random weights, SDW_BENCH_TRAIN_BATCH and
 * SDW_BENCH_TRAIN_HW change the batch and latent size, SDW_BENCH_TRAIN_CKPT
 * = 0 / 1 runs one mode only; tools/bench_train.py runs the same step in
 * PyTorch on the same weights and prints the ratios. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/base/arena.h"
#include "core/model/unet.h"
#include "core/train/loss.h"
#include "core/train/optimizer.h"

typedef struct train_args {
  sdw_ctx *ctx;
  sdw_unet *m, *g;
  sdw_optimizer *opt;
  sdw_arena *arena;
  sdw_tensor x, t, c, target, out, dout;
  float *w;
  bool checkpoint;
  double t_fwd, t_bwd, t_opt; /* phases of the last step */
  int failed;
} train_args;

static void train_step(void *p) {
  train_args *a = p;
  sdw_unet_saved *sv = NULL;
  double loss = 0.0;
  const double t0 = sdw_bench_now();
  sdw_status st = sdw_unet_grads_zero(a->g);
  if (st == SDW_OK) st = a->ctx->ops->fill(a->ctx, &a->dout, 0.0f);
  if (st == SDW_OK)
    st = sdw_unet_forward_train(a->m, a->arena, &a->x, &a->t, &a->c, &a->out, a->checkpoint, &sv);
  if (st == SDW_OK)
    st = sdw_loss_eval(a->ctx, a->arena, &a->out, &a->target, a->w, NULL, &loss, &a->dout);
  const double t1 = sdw_bench_now();
  if (st == SDW_OK) st = sdw_unet_backward(a->m, a->g, a->arena, sv, &a->dout, NULL, NULL);
  const double t2 = sdw_bench_now();
  sdw_arena_reset(a->arena);
  sdw_optimizer_report r;
  if (st == SDW_OK)
    st = sdw_optimizer_step(a->opt, &a->m->params, a->g->params.flat, 1e-5, loss, &r);
  const double t3 = sdw_bench_now();
  if (st != SDW_OK && !a->failed++) fprintf(stderr, "train step: %s\n", sdw_last_error());
  a->t_fwd = t1 - t0;
  a->t_bwd = t2 - t1;
  a->t_opt = t3 - t2;
}

/* Weights uniform in +-0.03 (the magnitudes of tools/bench_unet.py's). */
static void fill_random(float *p, size_t n, uint64_t seed) {
#pragma omp parallel for schedule(static)
  for (size_t blk = 0; blk < (n + 65535) / 65536; blk++) {
    uint64_t s = seed ^ (blk * 0x9E3779B97F4A7C15ull);
    const size_t end = (blk + 1) * 65536 < n ? (blk + 1) * 65536 : n;
    for (size_t i = blk * 65536; i < end; i++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      p[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.06f;
    }
  }
}

/* VmHWM is reset by writing 5 to /proc/self/clear_refs (see bench_unet.c). */
static void reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
}

static double peak_rss_mib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = -1;
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0) kib = atof(line + 6);
  if (f) fclose(f);
  return kib / 1024;
}

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

static void bench_train(sdw_ctx *ctx, const char *label, const sdw_unet_config *preset, int N,
                        int HW, int S) {
  sdw_unet m, g;
  const char *dir = getenv("SDW_BENCH_TRAIN_WEIGHTS");
  sdw_status st = dir ? sdw_unet_open(&m, ctx, dir) : sdw_unet_create(&m, ctx, preset);
  if (st != SDW_OK) {
    fprintf(stderr, "train %s: %s\n", label, sdw_last_error());
    return;
  }
  if (!dir) fill_random(m.params.flat, m.params.total, 42);
  N = env_int("SDW_BENCH_TRAIN_BATCH", N);
  HW = env_int("SDW_BENCH_TRAIN_HW", HW);
  const sdw_unet_config *cfg = &m.cfg;
  sdw_optimizer opt;
  sdw_optimizer_config oc = sdw_optimizer_config_seed();
  oc.ema = false;
  train_args a = {.ctx = ctx, .m = &m, .g = &g, .opt = &opt};
  if (sdw_unet_grads_create(&g, &m) != SDW_OK) {
    fprintf(stderr, "train %s: %s\n", label, sdw_last_error());
    sdw_unet_free(&m);
    return;
  }
  if (sdw_optimizer_init(&opt, ctx, &m.params, &oc) != SDW_OK ||
      sdw_arena_create(&a.arena, "bench train activations", (size_t)64 << 30) != SDW_OK) {
    fprintf(stderr, "train %s: %s\n", label, sdw_last_error());
    sdw_unet_free(&g);
    sdw_unet_free(&m);
    return;
  }
  const size_t nx = (size_t)N * 4 * HW * HW;
  float *x = sdw_bench_random(nx, 1), *tg = sdw_bench_random(nx, 4);
  float *c = sdw_bench_random((size_t)N * S * cfg->context_dim, 2);
  float *out = sdw_bench_random(nx, 3), *dout = sdw_bench_random(nx, 5);
  float *t = malloc((size_t)N * sizeof *t), *w = malloc((size_t)N * sizeof *w);
  for (int i = 0; i < N; i++) {
    t[i] = (float)(100 + 397 * i % 1000);
    w[i] = 1.0f / (float)N;
  }
  a.x = sdw_tensor_4d(x, SDW_F32, N, 4, HW, HW);
  a.t = sdw_tensor_1d(t, SDW_F32, N);
  a.c = sdw_tensor_3d(c, SDW_F32, N, S, cfg->context_dim);
  a.target = sdw_tensor_4d(tg, SDW_F32, N, 4, HW, HW);
  a.out = sdw_tensor_4d(out, SDW_F32, N, 4, HW, HW);
  a.dout = sdw_tensor_4d(dout, SDW_F32, N, 4, HW, HW);
  a.w = w;

  const double flops = 3.0 * sdw_unet_forward_flops(&m, N, HW, HW, S, true);
  const int only = env_int("SDW_BENCH_TRAIN_CKPT", -1);
  for (int ck = 0; ck < 2; ck++) {
    if (only >= 0 && only != ck) continue;
    a.checkpoint = ck == 1;
    a.failed = 0;
    reset_peak_rss();
    const double secs = sdw_bench_time(train_step, &a, 2, 5.0);
    char shape[128];
    snprintf(shape, sizeof shape, "%s N%d %dx%d ctx%d%s (%.1fM params)", label, N, HW, HW, S,
             ck ? " ckpt" : "", (double)sdw_unet_param_count(&m) / 1e6);
    sdw_bench_report("train step", shape, "fwd+bwd+adamw", secs, flops, 0);
    printf("  train %s%s: %.1f ms/step (last step: forward+loss %.1f, backward %.1f, clip+AdamW "
           "%.1f ms), %.1f GFLOP per step, %.2f GFLOP/s; activation arena peak %.0f MiB; "
           "weights %.0f MiB; peak RSS during the steps %.0f MiB\n",
           label, ck ? " ckpt" : "", secs * 1e3, a.t_fwd * 1e3, a.t_bwd * 1e3, a.t_opt * 1e3,
           flops / 1e9, flops / secs / 1e9, (double)sdw_arena_peak(a.arena) / (1 << 20),
           (double)m.params.total * 4 / (1 << 20), peak_rss_mib());
    fflush(stdout);
    sdw_arena_destroy(a.arena); /* a fresh arena: its peak is per mode */
    if (sdw_arena_create(&a.arena, "bench train activations", (size_t)64 << 30) != SDW_OK) break;
  }
  free(x);
  free(tg);
  free(c);
  free(out);
  free(dout);
  free(t);
  free(w);
  sdw_arena_destroy(a.arena);
  sdw_optimizer_free(&opt);
  sdw_unet_free(&g);
  sdw_unet_free(&m);
}

SDW_BENCH(train_seed_small) {
  /* the seed-unet-small golden's UNetModel(ch=32, res_blks=2, attn_lvls=(1,2,3),
   * ch_mults=(1,2,4,4), heads=8, t_dim=32, ctx_dim=64) */
  static const char json[] =
      "{\"_class_name\": \"SeedUNetModel\", \"in_ch\": 4, \"out_ch\": 4, \"ch\": 32,"
      " \"res_blks\": 2, \"attn_lvls\": [1, 2, 3], \"ch_mults\": [1, 2, 4, 4], \"heads\": 8,"
      " \"t_dim\": 32, \"ctx_dim\": 64}";
  sdw_unet_config cfg;
  if (sdw_unet_config_parse(json, strlen(json), "seed-unet-small", &cfg) != SDW_OK) {
    fprintf(stderr, "%s\n", sdw_last_error());
    return;
  }
  bench_train(ctx, "seed_small", &cfg, 2, 16, 77);
}

SDW_BENCH(train_seed_full) {
  sdw_unet_config cfg;
  if (sdw_unet_preset("seed", &cfg) != SDW_OK) {
    fprintf(stderr, "%s\n", sdw_last_error());
    return;
  }
  bench_train(ctx, "seed", &cfg, 1, 32, 77);
}
