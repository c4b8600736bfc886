/* The SD 1.x VAE (sd-vae-ft-mse architecture) at full size, fp32, random
 * weights:
 *
 *   vae_decode_512          decode of a 64x64 latent (a 512x512 image), batch 1:
 *                           the decoder-only model (what a sampler loads)
 *   vae_encode_512          encode of a 512x512 image, batch 1
 *   vae_decode_1024_tiled   decode of a 128x128 latent (1024x1024) with
 *                           diffusers' tiling (512-pixel tiles, overlap 0.25:
 *                           3 x 3 tiles), for its memory: the activation
 *                           arena stays that of one 512x512 tile
 *
 * FLOPs: 2 x multiply-adds of every conv, linear and both attention
 * products (norms, activations and layout ops not counted), in two
 * counts: diffusers' (sdw_vae_decode_flops; equal to a count with forward
 * hooks on diffusers' modules), the work of the model as written, which
 * gives the "effective" GFLOP/s comparable with diffusers'; and what sdw
 * executes (sdw_vae_decode_flops_executed: the upsamplers run as 2x2 phase
 * convolutions, 4/9 of their multiply-adds), which the table row uses so
 * that its ratio to the sgemm ceiling is the hardware efficiency.
 * Memory: the activation arena's peak (our accounting), the weights, and
 * the process's peak RSS during the calls (VmHWM after resetting it).
 * tools/bench_vae.py runs vae_decode_512 and diffusers'
 * AutoencoderKL.decode on the same shape and prints the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/base/arena.h"
#include "core/model/vae.h"

typedef struct vae_args {
  sdw_vae *m;
  sdw_arena *arena;
  sdw_tensor in, out, out2;
  bool encode, tiled;
} vae_args;

static void run_vae(void *p) {
  vae_args *a = p;
  sdw_vae_tiling tiling = {.tile_sample_size = 512, .overlap = 0.25};
  sdw_status st = a->tiled    ? sdw_vae_decode_tiled(a->m, a->arena, &tiling, &a->in, &a->out)
                  : a->encode ? sdw_vae_encode(a->m, a->arena, &a->in, &a->out, &a->out2)
                              : sdw_vae_decode(a->m, a->arena, &a->in, &a->out);
  if (st != SDW_OK) fprintf(stderr, "vae: %s\n", sdw_last_error());
}

/* Uniform in +-0.03 (fan-in ~1000 magnitudes), GroupNorm weights near 1. */
static void fill_random(sdw_vae *m, uint64_t seed) {
  for (int i = 0; i < m->params.count; i++) {
    sdw_param *p = &m->params.items[i];
    float *d = p->value.data;
    const int64_t n = sdw_tensor_numel(&p->value);
    const bool norm_w = strstr(p->name, "norm") && strstr(p->name, ".weight");
    uint64_t s = seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull);
    for (int64_t j = 0; j < n; j++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      const float r = ((float)(s >> 40) / 16777216.0f - 0.5f) * 0.06f;
      d[j] = norm_w ? 1.0f + r : r;
    }
  }
}

static void reset_peak_rss(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (f) {
    fputs("5", f);
    fclose(f);
  }
}

static double status_mib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  double kib = -1;
  size_t n = strlen(key);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) kib = atof(line + n);
  if (f) fclose(f);
  return kib / 1024;
}

static void bench_vae(sdw_ctx *ctx, bool encode, bool tiled) {
  sdw_vae_config cfg;
  sdw_vae m;
  const double rss0 = status_mib("VmRSS:");
  if (sdw_vae_preset("sd-vae-ft-mse", &cfg) != SDW_OK ||
      sdw_vae_create(&m, ctx, &cfg, encode ? SDW_VAE_ENCODER : SDW_VAE_DECODER) != SDW_OK) {
    fprintf(stderr, "vae: %s\n", sdw_last_error());
    return;
  }
  fill_random(&m, 42);
  const int64_t lat = tiled ? 128 : 64, img = lat * 8;
  vae_args a = {.m = &m, .encode = encode, .tiled = tiled};
  if (sdw_arena_create(&a.arena, "bench vae activations", (size_t)64 << 30) != SDW_OK) {
    fprintf(stderr, "%s\n", sdw_last_error());
    sdw_vae_free(&m);
    return;
  }
  float *in = sdw_bench_random((size_t)(encode ? 3 * img * img : 4 * lat * lat), 1);
  float *out = sdw_bench_random((size_t)(encode ? 4 * lat * lat : 3 * img * img), 2);
  float *out2 = sdw_bench_random((size_t)(4 * lat * lat), 3);
  a.in = encode ? sdw_tensor_4d(in, SDW_F32, 1, 3, img, img)
                : sdw_tensor_4d(in, SDW_F32, 1, 4, lat, lat);
  a.out = encode ? sdw_tensor_4d(out, SDW_F32, 1, 4, lat, lat)
                 : sdw_tensor_4d(out, SDW_F32, 1, 3, img, img);
  a.out2 = sdw_tensor_4d(out2, SDW_F32, 1, 4, lat, lat);
  double flops =
      encode ? sdw_vae_encode_flops(&cfg, 1, img, img) : sdw_vae_decode_flops(&cfg, 1, lat, lat);
  double exec = encode ? flops : sdw_vae_decode_flops_executed(&cfg, 1, lat, lat);
  if (tiled) {
    /* 3 x 3 tiles at latent origins 0, 48, 96: sides 64, 64, 32 */
    flops = 4 * sdw_vae_decode_flops(&cfg, 1, 64, 64) + 4 * sdw_vae_decode_flops(&cfg, 1, 64, 32) +
            sdw_vae_decode_flops(&cfg, 1, 32, 32);
    exec = 4 * sdw_vae_decode_flops_executed(&cfg, 1, 64, 64) +
           4 * sdw_vae_decode_flops_executed(&cfg, 1, 64, 32) +
           sdw_vae_decode_flops_executed(&cfg, 1, 32, 32);
  }
  reset_peak_rss();
  /* the tiled run is for its memory and is long (9 tile decodes): one call,
   * its first tile serving as the warm-up of the others */
  double secs;
  if (tiled) {
    secs = sdw_bench_now();
    run_vae(&a);
    secs = sdw_bench_now() - secs;
  } else {
    secs = sdw_bench_time(run_vae, &a, 1, 5.0);
  }
  char shape[96];
  snprintf(shape, sizeof shape, "sd-vae-ft-mse %s %lldx%lld%s", encode ? "image" : "latent",
           (long long)(encode ? img : lat), (long long)(encode ? img : lat),
           tiled ? " tiled 512" : "");
  sdw_bench_report(encode ? "vae_encode" : "vae_decode", shape, "fwd", secs, exec, 0);
  printf("  vae_%s %lldx%lld%s: %.1f ms, %.1f GFLOP (diffusers' count; %.1f executed), %.2f "
         "effective GFLOP/s (%.2f executed); activation arena peak %.0f MiB; weights %.0f MiB; "
         "RSS before the model %.0f MiB, peak RSS %.0f MiB\n",
         encode ? "encode" : "decode", (long long)img, (long long)img, tiled ? " tiled" : "",
         secs * 1e3, flops / 1e9, exec / 1e9, flops / secs / 1e9, exec / secs / 1e9,
         (double)sdw_arena_peak(a.arena) / (1 << 20), (double)m.params.total * 4 / (1 << 20), rss0,
         status_mib("VmHWM:"));
  if (tiled)
    printf("  (an untiled %lldx%lld decode would need an arena of %.0f MiB)\n", (long long)img,
           (long long)img, (double)sdw_vae_decode_arena_bytes(&m, 1, lat, lat) / (1 << 20));
  fflush(stdout);
  free(in);
  free(out);
  free(out2);
  sdw_arena_destroy(a.arena);
  sdw_vae_free(&m);
}

SDW_BENCH(vae_decode_512) { bench_vae(ctx, false, false); }
SDW_BENCH(vae_encode_512) { bench_vae(ctx, true, false); }
SDW_BENCH(vae_decode_1024_tiled) { bench_vae(ctx, false, true); }
