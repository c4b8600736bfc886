/* The CLIP text encoder at full size: openai/clip-vit-large-patch14's text
 * tower (D 768, 12 layers, 12 heads, MLP 3072, 77 tokens) with random
 * weights, batch 1 and 2 prompts; the whole forward (last_hidden_state and
 * pooler_output) per call. tools/bench_clip.py runs this and transformers'
 * CLIPTextModel in the same run and prints the ratio.
 *
 * FLOP count per prompt: 12 layers x 2 T (4 D^2 + 2 D I) for the linear
 * layers plus 4 T^2 D for attention (the causal half counted in full), T 77:
 * 13.3 GFLOP.
 *
 * Memory lines: the parameter set (one flat f32 buffer), the activation
 * buffer of the largest batch, and the process's resident set (VmRSS now,
 * VmHWM peak, which also covers benchmarks that ran before this one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/model/clip.h"

typedef struct clip_args {
  sdw_clip_text *m;
  sdw_tensor ids, last, pool;
} clip_args;

static void run_clip(void *p) {
  clip_args *a = p;
  sdw_clip_text_outputs out = {.last_hidden_state = &a->last, .pooler_output = &a->pool};
  if (sdw_clip_text_forward(a->m, &a->ids, NULL, &out) != SDW_OK)
    fprintf(stderr, "clip forward: %s\n", sdw_last_error());
}

/* kB value of a /proc/self/status line ("VmRSS:", "VmHWM:"). */
static long proc_status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, n) == 0) kb = strtol(line + n, NULL, 10);
  fclose(f);
  return kb;
}

SDW_BENCH(clip_text_vit_l14) {
  sdw_clip_text_config cfg = sdw_clip_text_config_vit_l14();
  long rss0 = proc_status_kb("VmRSS:");
  sdw_clip_text m;
  if (sdw_clip_text_init(&m, ctx, &cfg) != SDW_OK) {
    fprintf(stderr, "clip init: %s\n", sdw_last_error());
    return;
  }
  /* Random weights of the scale of the real ones (LN weights near 1),
   * written in place: a temporary copy would double the peak memory. */
  unsigned s = 11;
  for (int i = 0; i < m.params.count; i++) {
    sdw_param *p = &m.params.items[i];
    float *dst = (float *)p->value.data;
    int64_t n = sdw_tensor_numel(&p->value);
    bool ln_weight = strstr(p->name, "norm") && strstr(p->name, ".weight");
    for (int64_t j = 0; j < n; j++) {
      s = s * 1664525u + 1013904223u;
      float r = ((s >> 9) * (1.0f / 8388608.0f) - 0.5f) * 0.2f;
      dst[j] = ln_weight ? 1.0f + r : r;
    }
  }
  const int64_t T = 77, D = cfg.hidden_size, I = cfg.intermediate_size;
  const double flops_per_prompt =
      (double)cfg.num_layers * (2.0 * T * (4.0 * D * D + 2.0 * D * I) + 4.0 * T * T * D);
  static const int batches[2] = {1, 2};
  for (int bi = 0; bi < 2; bi++) {
    int B = batches[bi];
    int64_t *ids = malloc(sizeof(int64_t) * B * T);
    for (int64_t i = 0; i < B * T; i++)
      ids[i] = i % T == 0 ? 49406 : (i * 7919) % 49406;
    for (int b = 0; b < B; b++)
      ids[b * T + 20 + b] = 49407;
    clip_args a = {.m = &m};
    a.ids = sdw_tensor_2d(ids, SDW_I64, B, T);
    a.last = sdw_tensor_3d(sdw_bench_random((size_t)(B * T * D), 3), SDW_F32, B, T, D);
    a.pool = sdw_tensor_2d(sdw_bench_random((size_t)(B * D), 4), SDW_F32, B, D);
    double t = sdw_bench_time(run_clip, &a, 3, 2.0);
    char shape[64];
    snprintf(shape, sizeof shape, "ViT-L/14 text, %d x 77 tokens", B);
    sdw_bench_report("clip_text", shape, "fwd", t, flops_per_prompt * B, 0);
    printf("clip_text        batch %d: %.2f ms per prompt\n", B, t * 1e3 / B);
    free(ids);
    free(a.last.data);
    free(a.pool.data);
  }
  printf("clip_text        memory: parameters %.1f MiB, activations %.1f MiB (batch 2), "
         "RSS %.1f MiB (%.1f MiB before the model), peak RSS %.1f MiB\n",
         m.params.total * 4.0 / 1048576.0, m.act_bytes / 1048576.0,
         proc_status_kb("VmRSS:") / 1024.0, rss0 / 1024.0, proc_status_kb("VmHWM:") / 1024.0);
  fflush(stdout);
  sdw_clip_text_free(&m);
}
