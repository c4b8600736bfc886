/* The demo model's training step (pixel space, 3 x 32 x 32, batch 32,
 * 77 x 64 text context): forward with saved activations, MSE, backward,
 * clip + AdamW. What `sdw demo` trains per optimizer step, for choosing the
 * UNet size that gives a first preview within a minute and recognisable
 * samples within ten (the candidates below; assets/demo/unet.json is the
 * one chosen). SDW_BENCH_DEMO_BATCH changes the batch. FLOPs: 3x the
 * forward's analytic count, as bench_train.c counts them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/base/arena.h"
#include "core/model/unet.h"
#include "core/train/loss.h"
#include "core/train/optimizer.h"

typedef struct demo_args {
  sdw_ctx *ctx;
  sdw_unet *m, *g;
  sdw_optimizer *opt;
  sdw_arena *arena;
  sdw_tensor x, t, c, target, out, dout;
  float *w;
  int failed;
} demo_args;

static void demo_step(void *p) {
  demo_args *a = p;
  sdw_unet_saved *sv = NULL;
  double loss = 0.0;
  sdw_status st = sdw_unet_grads_zero(a->g);
  if (st == SDW_OK) st = a->ctx->ops->fill(a->ctx, &a->dout, 0.0f);
  if (st == SDW_OK)
    st = sdw_unet_forward_train(a->m, a->arena, &a->x, &a->t, &a->c, &a->out, false, &sv);
  if (st == SDW_OK)
    st = sdw_loss_eval(a->ctx, a->arena, &a->out, &a->target, a->w, NULL, &loss, &a->dout);
  if (st == SDW_OK) st = sdw_unet_backward(a->m, a->g, a->arena, sv, &a->dout, NULL, NULL);
  sdw_arena_reset(a->arena);
  sdw_optimizer_report r;
  if (st == SDW_OK)
    st = sdw_optimizer_step(a->opt, &a->m->params, a->g->params.flat, 1e-4, loss, &r);
  if (st != SDW_OK && !a->failed++) fprintf(stderr, "demo step: %s\n", sdw_last_error());
}

static void bench_one(sdw_ctx *ctx, const char *label, const char *json) {
  sdw_unet_config cfg;
  sdw_unet m, g;
  if (sdw_unet_config_parse(json, strlen(json), label, &cfg) != SDW_OK ||
      sdw_unet_create(&m, ctx, &cfg) != SDW_OK) {
    fprintf(stderr, "demo %s: %s\n", label, sdw_last_error());
    return;
  }
  for (size_t i = 0; i < m.params.total; i++)
    m.params.flat[i] = (float)((i * 2654435761u % 1000) / 1000.0 - 0.5) * 0.06f;
  const char *env = getenv("SDW_BENCH_DEMO_BATCH");
  const int N = env && *env ? atoi(env) : 32, HW = 32, S = 77;
  sdw_optimizer opt;
  sdw_optimizer_config oc = sdw_optimizer_config_seed();
  demo_args a = {.ctx = ctx, .m = &m, .g = &g, .opt = &opt};
  if (sdw_unet_grads_create(&g, &m) != SDW_OK) {
    sdw_unet_free(&m);
    return;
  }
  if (sdw_optimizer_init(&opt, ctx, &m.params, &oc) != SDW_OK ||
      sdw_arena_create(&a.arena, "bench demo", (size_t)16 << 30) != SDW_OK) {
    fprintf(stderr, "demo %s: %s\n", label, sdw_last_error());
    sdw_unet_free(&g);
    sdw_unet_free(&m);
    return;
  }
  const size_t nx = (size_t)N * 3 * HW * HW;
  float *x = sdw_bench_random(nx, 1), *tg = sdw_bench_random(nx, 4);
  float *c = sdw_bench_random((size_t)N * S * cfg.context_dim, 2);
  float *out = sdw_bench_random(nx, 3), *dout = sdw_bench_random(nx, 5);
  float *t = malloc((size_t)N * sizeof *t), *w = malloc((size_t)N * sizeof *w);
  for (int i = 0; i < N; i++) {
    t[i] = (float)(100 + 397 * i % 1000);
    w[i] = 1.0f / (float)N;
  }
  a.x = sdw_tensor_4d(x, SDW_F32, N, 3, HW, HW);
  a.t = sdw_tensor_1d(t, SDW_F32, N);
  a.c = sdw_tensor_3d(c, SDW_F32, N, S, cfg.context_dim);
  a.target = sdw_tensor_4d(tg, SDW_F32, N, 3, HW, HW);
  a.out = sdw_tensor_4d(out, SDW_F32, N, 3, HW, HW);
  a.dout = sdw_tensor_4d(dout, SDW_F32, N, 3, HW, HW);
  a.w = w;
  const double flops = 3.0 * sdw_unet_forward_flops(&m, N, HW, HW, S, true);
  const double secs = sdw_bench_time(demo_step, &a, 3, 4.0);
  char shape[160];
  snprintf(shape, sizeof shape, "demo %s N%d 3x%dx%d ctx%dx%d (%.2fM params)", label, N, HW, HW, S,
           cfg.context_dim, (double)sdw_unet_param_count(&m) / 1e6);
  sdw_bench_report("train step", shape, "fwd+bwd+adamw", secs, flops, 0);
  printf("  demo %s: %.1f ms/step = %.2f steps/s = %.0f images/s\n", label, secs * 1e3, 1 / secs,
         N / secs);
  fflush(stdout);
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

#define SEED_JSON(ch, res, attn, mults, heads)                                                     \
  "{\"_class_name\": \"SeedUNetModel\", \"in_ch\": 3, \"out_ch\": 3, \"ch\": " #ch                 \
  ", \"res_blks\": " #res ", \"attn_lvls\": " attn ", \"ch_mults\": " mults ", \"heads\": " #heads \
  ", \"t_dim\": " #ch ", \"ctx_dim\": 64}"

SDW_BENCH(demo_unet) {
  bench_one(ctx, "ch32 [1,2,2] res1 attn[1,2]", SEED_JSON(32, 1, "[1, 2]", "[1, 2, 2]", 4));
  bench_one(ctx, "ch64 [1,2,2] res1 attn[1,2]", SEED_JSON(64, 1, "[1, 2]", "[1, 2, 2]", 4));
  bench_one(ctx, "ch64 [1,2,2] res2 attn[1,2]", SEED_JSON(64, 2, "[1, 2]", "[1, 2, 2]", 4));
  bench_one(ctx, "ch32 [1,2,4] res2 attn[1,2]", SEED_JSON(32, 2, "[1, 2]", "[1, 2, 4]", 4));
}
