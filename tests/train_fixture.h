/* Test fixture for the trainer tests: a tiny synthetic latent store and a
 * config of the tiny seed UNet (tests/data/goldens/seed-unet-tiny's shape)
 * with the tiny CLIP (clip-text-tiny, 64 wide). Header-only (static). */
#ifndef SDW_TESTS_TRAIN_FIXTURE_H
#define SDW_TESTS_TRAIN_FIXTURE_H

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/tensor.h"
#include "core/model/tokenizer.h"
#include "core/train/train_config.h"
#include "tests/test.h"

/* n samples of 4 x hw x hw latents in chunks of 16: sample i belongs to
 * class k = i % 4, whose latent is a fixed smooth pattern per class (plus a
 * little per-sample noise) and whose caption token is 320 + k, so a model
 * can learn the classes. */
static inline void train_fixture_store(const char *dir, int n, int hw) {
  CHECK_OK(sdw_mkdir_p(dir));
  const int L = 77, per = 4 * hw * hw;
  sdw_test_rng rng = sdw_test_rng_make(7);
  int chunks = 0;
  for (int start = 0; start < n; start += 16, chunks++) {
    const int m = n - start < 16 ? n - start : 16;
    uint16_t *lat = calloc((size_t)(m * per), 2);
    int32_t *ids = calloc((size_t)(m * L), 4), *mask = calloc((size_t)(m * L), 4);
    char keys[16][32], caps[16][32];
    const char *kp[16], *cp[16];
    for (int j = 0; j < m; j++) {
      const int i = start + j, k = i % 4;
      for (int c = 0; c < 4; c++)
        for (int y = 0; y < hw; y++)
          for (int x = 0; x < hw; x++) {
            double v = 0.8 * sin(0.7 * (k + 1) * x + 0.5 * c) * cos(0.4 * (k + 1) * y - c) +
                       0.05 * sdw_test_rng_normal(&rng);
            lat[j * per + (c * hw + y) * hw + x] = sdw_f32_to_f16((float)v);
          }
      for (int t = 0; t < L; t++)
        ids[j * L + t] = SDW_CLIP_EOT;
      ids[j * L] = SDW_CLIP_SOT;
      ids[j * L + 1] = 320 + k;
      mask[j * L] = mask[j * L + 1] = mask[j * L + 2] = 1;
      snprintf(keys[j], sizeof keys[j], "s::%d", i);
      snprintf(caps[j], sizeof caps[j], "class %d", k);
      kp[j] = keys[j];
      cp[j] = caps[j];
    }
    sdw_latent_chunk ch = {.count = m,
                           .channels = 4,
                           .height = hw,
                           .width = hw,
                           .seq_len = L,
                           .latents = lat,
                           .input_ids = ids,
                           .attention_mask = mask,
                           .keys = kp,
                           .captions = cp};
    char path[1024];
    snprintf(path, sizeof path, "%s/chunk-%05d.safetensors", dir, chunks);
    CHECK_OK(sdw_latent_chunk_write(path, &ch));
    free(lat);
    free(ids);
    free(mask);
  }
  CHECK_OK(sdw_latent_store_finish(dir, "train", chunks, 0.18215, hw * 2, "synthetic"));
}

/* The trainer applies `threads` to the whole process; tests put the
 * runner's count back when they are done (train_fixture_restore_threads). */
static int train_fixture_saved_threads;

__attribute__((constructor)) static void train_fixture_record_threads(void) {
  train_fixture_saved_threads = omp_get_max_threads(); /* before any test ran */
}

static inline void train_fixture_restore_threads(void) {
  if (train_fixture_saved_threads > 0) {
    omp_set_num_threads(train_fixture_saved_threads);
    openblas_set_num_threads(train_fixture_saved_threads);
  }
}

/* The tiny config over store dir. */
static inline void train_fixture_config(sdw_train_config *c, const char *store) {
  char te[1024];
  snprintf(te, sizeof te, "%s/goldens/clip-text-tiny", sdw_test_data_dir());
  sdw_train_config_defaults(c);
  CHECK_OK(sdw_train_config_set(c, "model", "seed-tiny", "test"));
  CHECK_OK(sdw_train_config_set(c, "train_data", store, "test"));
  CHECK_OK(sdw_train_config_set(c, "text_encoder", te, "test"));
  CHECK_OK(sdw_train_config_set(c, "batch_size", "2", "test"));
  CHECK_OK(sdw_train_config_set(c, "grad_accum", "2", "test"));
  CHECK_OK(sdw_train_config_set(c, "lr", "1e-3", "test"));
  CHECK_OK(sdw_train_config_set(c, "warmup", "2", "test"));
  CHECK_OK(sdw_train_config_set(c, "cfg_dropout", "0.25", "test"));
  CHECK_OK(sdw_train_config_set(c, "arena_gb", "4", "test"));
  CHECK_OK(sdw_train_config_set(c, "allreduce", "single", "test"));
  /* one thread: the tiny model gains nothing from more, and OpenMP's
   * waiting makes a busy machine much slower (results do not depend on it) */
  CHECK_OK(sdw_train_config_set(c, "threads", "1", "test"));
}

#endif
