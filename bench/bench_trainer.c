/* The training engine around the UNet step (core/train/trainer.h): one
 * sdw_trainer_step (latent gather, frozen CLIP, loss draws, forward,
 * backward, AdamW + EMA) of the tiny seed UNet with the tiny CLIP on a
 * synthetic store, next to the bare UNet step of bench_train.c, and the
 * checkpoint write (weights + EMA + moments, hashed, atomic).
 *
 * Environment: SDW_BENCH_TRAINER_BATCH (8), SDW_BENCH_TRAINER_HW (16),
 * SDW_TEST_DATA (tests/data: the tiny CLIP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/tensor.h"
#include "core/train/trainer.h"

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && atoi(v) > 0 ? atoi(v) : def;
}

/* n samples of 4 x hw x hw, one chunk, token ids of 3 tokens. */
static int write_store(const char *dir, int n, int hw) {
  const int L = 77, per = 4 * hw * hw;
  uint16_t *lat = malloc((size_t)n * per * 2);
  int32_t *ids = malloc((size_t)n * L * 4), *mask = calloc((size_t)n * L, 4);
  const char **keys = malloc((size_t)n * sizeof *keys);
  if (!lat || !ids || !mask || !keys) return -1;
  float *r = sdw_bench_random((size_t)n * per, 3);
  for (int i = 0; i < n * per; i++)
    lat[i] = sdw_f32_to_f16(r[i]);
  for (int i = 0; i < n * L; i++)
    ids[i] = 49407;
  for (int i = 0; i < n; i++) {
    ids[i * L] = 49406;
    ids[i * L + 1] = 320 + i % 4;
    mask[i * L] = mask[i * L + 1] = mask[i * L + 2] = 1;
    keys[i] = "bench";
  }
  sdw_latent_chunk c = {.count = n,
                        .channels = 4,
                        .height = hw,
                        .width = hw,
                        .seq_len = L,
                        .latents = lat,
                        .input_ids = ids,
                        .attention_mask = mask,
                        .keys = keys,
                        .captions = keys};
  char path[1024];
  snprintf(path, sizeof path, "%s/chunk-00000.safetensors", dir);
  int rc = sdw_latent_chunk_write(path, &c) == SDW_OK &&
                   sdw_latent_store_finish(dir, "train", 1, 0.18215, hw * 8, "bench") == SDW_OK
               ? 0
               : -1;
  free(r);
  free(lat);
  free(ids);
  free(mask);
  free(keys);
  return rc;
}

static void step_once(void *arg) {
  sdw_trainer *t = arg;
  sdw_trainer_report r;
  if (sdw_trainer_done(t) || sdw_trainer_step(t, &r) != SDW_OK) abort();
}

typedef struct save_arg {
  sdw_trainer *t;
  const char *path;
} save_arg;

static void save_once(void *arg) {
  save_arg *a = arg;
  if (sdw_trainer_save(a->t, a->path) != SDW_OK) abort();
}

SDW_BENCH(trainer_step_tiny) {
  (void)ctx;
  const int B = env_int("SDW_BENCH_TRAINER_BATCH", 8), HW = env_int("SDW_BENCH_TRAINER_HW", 16);
  char dir[] = "/tmp/sdw-bench-trainer-XXXXXX", store[256], te[1024], path[512];
  if (!mkdtemp(dir)) return;
  snprintf(store, sizeof store, "%s/store", dir);
  const char *data = getenv("SDW_TEST_DATA") ? getenv("SDW_TEST_DATA") : "tests/data";
  snprintf(te, sizeof te, "%s/goldens/clip-text-tiny", data);
  if (sdw_mkdir_p(store) != SDW_OK || write_store(store, 64 * B, HW) != 0) {
    fprintf(stderr, "trainer bench: %s\n", sdw_last_error());
    return;
  }
  sdw_train_config c;
  sdw_train_config_defaults(&c);
  char bs[16];
  snprintf(bs, sizeof bs, "%d", B);
  const char *sets[][2] = {{"model", "seed-tiny"}, {"train_data", store}, {"text_encoder", te},
                           {"batch_size", bs},     {"grad_accum", "1"},   {"allreduce", "single"},
                           {"arena_gb", "8"}};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    if (sdw_train_config_set(&c, sets[i][0], sets[i][1], "bench") != SDW_OK) return;
  sdw_trainer *t = NULL;
  if (sdw_trainer_create(&c, NULL, NULL, NULL, &t) != SDW_OK) {
    fprintf(stderr, "trainer bench: %s\n", sdw_last_error());
    return;
  }
  char shape[64];
  snprintf(shape, sizeof shape, "seed-tiny B%d %dx%d", B, HW, HW);
  step_once(t); /* warm-up */
  double s = sdw_bench_time(step_once, t, 3, 2.0);
  sdw_bench_report("trainer_step", shape, "fwd+bwd+adamw", s, 0, 0);
  printf("  %.1f img/s\n", B / s);
  snprintf(path, sizeof path, "%s/ck.safetensors", dir);
  save_arg a = {t, path};
  s = sdw_bench_time(save_once, &a, 3, 1.0);
  const double bytes = 4.0 * 4.0 * (double)sdw_trainer_params(t)->total;
  sdw_bench_report("checkpoint_write", "seed-tiny", "save", s, 0, bytes);
  sdw_trainer_free(t);
  unlink(path);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "trainer bench: could not remove %s\n", dir);
}
