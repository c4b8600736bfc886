/* Full-size UNet forwards, fp32, random weights: one classifier-free
 * guidance step (batch 2 = [uncond, cond]) at a 64x64 latent (512x512
 * image) with a 77-token context.
 *
 *   unet_seed: the seed's UNetModel (780,718,404 parameters)
 *   unet_sd15: diffusers' UNet2DConditionModel with the SD 1.5 config
 *              (320/640/1280/1280, 2 layers, 8 heads, context 768)
 *
 * FLOPs are counted analytically (sdw_unet_forward_flops: 2 x multiply-adds
 * of every conv, linear and both attention products; norms, activations and
 * layout ops are not counted), so GFLOP/s compares with the sgemm ceiling.
 * Memory: the activation arena's peak (our own accounting) and the
 * process's peak RSS during the timed forwards (weights included).
 * tools/bench_unet.py runs the same forwards in PyTorch and prints ratios. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/base/arena.h"
#include "core/model/unet.h"

typedef struct unet_args {
  sdw_unet *m;
  sdw_arena *arena;
  sdw_tensor x, t, c, out;
} unet_args;

static void run_forward(void *p) {
  unet_args *a = p;
  if (sdw_unet_forward(a->m, a->arena, &a->x, &a->t, &a->c, &a->out) != SDW_OK)
    fprintf(stderr, "unet forward: %s\n", sdw_last_error());
}

/* Weights uniform in +-1/sqrt(fan) with fan ~ 1000: magnitudes of a trained
 * net (no denormals, no overflow through 30+ residual blocks). */
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

/* The kernel's peak-RSS mark (VmHWM) is reset by writing 5 to
 * /proc/self/clear_refs, so the peak of the forwards alone can be read back
 * (the weights stay resident and count; a mapped weight file does not). */
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

static void bench_unet(sdw_ctx *ctx, const char *preset) {
  sdw_unet_config cfg;
  sdw_unet m;
  /* SDW_BENCH_UNET_WEIGHTS=DIR: a bundle (config.json + weights) instead of
   * the preset with random weights (tools/bench_unet.py passes the weights
   * PyTorch runs on) */
  const char *dir = getenv("SDW_BENCH_UNET_WEIGHTS");
  sdw_status st = dir ? sdw_unet_open(&m, ctx, dir) : sdw_unet_preset(preset, &cfg);
  if (st == SDW_OK && !dir) st = sdw_unet_create(&m, ctx, &cfg);
  if (st != SDW_OK) {
    fprintf(stderr, "unet %s: %s\n", dir ? dir : preset, sdw_last_error());
    return;
  }
  cfg = m.cfg;
  if (!dir) fill_random(m.params.flat, m.params.total, 42);
  const int N = 2, H = 64, W = 64, S = 77;
  unet_args a = {.m = &m};
  if (sdw_arena_create(&a.arena, "bench unet activations", (size_t)64 << 30) != SDW_OK) {
    fprintf(stderr, "%s\n", sdw_last_error());
    sdw_unet_free(&m);
    return;
  }
  float *x = sdw_bench_random((size_t)N * 4 * H * W, 1);
  float *c = sdw_bench_random((size_t)N * S * cfg.context_dim, 2);
  float *out = sdw_bench_random((size_t)N * 4 * H * W, 3);
  float t[2] = {999.0f, 999.0f};
  a.x = sdw_tensor_4d(x, SDW_F32, N, 4, H, W);
  a.t = sdw_tensor_1d(t, SDW_F32, N);
  a.c = sdw_tensor_3d(c, SDW_F32, N, S, cfg.context_dim);
  a.out = sdw_tensor_4d(out, SDW_F32, N, 4, H, W);

  const double flops = sdw_unet_forward_flops(&m, N, H, W, S, true);
  reset_peak_rss();
  const double secs = sdw_bench_time(run_forward, &a, 2, 5.0);
  char shape[96];
  snprintf(shape, sizeof shape, "%s N%d %dx%d ctx%d (%.0fM params)", preset, N, H, W, S,
           (double)sdw_unet_param_count(&m) / 1e6);
  sdw_bench_report("unet", shape, "fwd", secs, flops, 0);
  printf("  unet %s: %.1f ms/forward, %.1f GFLOP per forward, %.2f GFLOP/s; activation arena "
         "peak %.0f MiB; weights %.0f MiB; peak RSS during the forwards %.0f MiB\n",
         preset, secs * 1e3, flops / 1e9, flops / secs / 1e9,
         (double)sdw_arena_peak(a.arena) / (1 << 20), (double)m.params.total * 4 / (1 << 20),
         peak_rss_mib());
  free(x);
  free(c);
  free(out);
  sdw_arena_destroy(a.arena);
  sdw_unet_free(&m);
}

SDW_BENCH(unet_seed) { bench_unet(ctx, "seed"); }
SDW_BENCH(unet_sd15) { bench_unet(ctx, "sd15"); }
