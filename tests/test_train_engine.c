/* The training engine (core/train/trainer.h) and its pieces: config files,
 * the data order, checkpoints, exact resume, non-finite steps.
 *
 * Everything here is compared EXACTLY (bytes): resume must reproduce the
 * same bits (the requirement), the data order is integer
 * arithmetic, and a skipped step must leave every buffer untouched. The
 * tiny seed UNet on 4x8x8 latents keeps each step ~10 ms. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/model/unet.h"
#include "core/train/checkpoint.h"
#include "core/train/data_loader.h"
#include "core/train/train_config.h"
#include "core/train/trainer.h"
#include "tests/test.h"
#include "tests/train_fixture.h"

static const char *fixture_store(void) {
  static char dir[512];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "%s/train-store", sdw_test_tmpdir());
    train_fixture_store(dir, 16, 8);
  }
  return dir;
}

SDW_TEST(train_config_file) {
  sdw_train_config c, d;
  sdw_train_config_defaults(&c);
  /* the seed's defaults */
  CHECK(c.batch_size == 24 && c.grad_accum == 2 && c.lr == 1e-5 && c.weight_decay == 1e-2);
  CHECK(c.warmup == 500 && c.min_snr && c.min_snr_gamma == 5 && c.cfg_dropout == 0.05);
  CHECK(c.grad_ckpt && c.save_every == 1 && c.save_steps == 0 && c.val_every == 1);
  CHECK(c.epochs == 10 && c.ema_decay == 0.9999 && c.max_grad_norm == 1 && c.seed == 42);
  CHECK(strcmp(c.lr_after_end, "hold") == 0 && c.decay_norms_and_biases);
  CHECK(c.keep_last == 3 && c.log_every == 10 && c.max_nonfinite == 5 && c.noise_offset == 0);

  const char *text = "# a comment\n[data]\ntrain_data = /x/y  # inline\n\n[optim]\n"
                     "lr = 2e-4\nmin_snr = off\nbatch_size=3\n; another\n";
  CHECK_OK(sdw_train_config_parse(&c, text, strlen(text), "a.ini"));
  CHECK(strcmp(c.train_data, "/x/y") == 0 && c.lr == 2e-4 && !c.min_snr && c.batch_size == 3);

  /* errors name file:line */
  const char *bad = "lr = 1\nbogus = 3\n";
  CHECK(sdw_train_config_parse(&c, bad, strlen(bad), "b.ini") == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "b.ini:2") && strstr(sdw_last_error(), "bogus"));
  const char *dup = "lr = 1\nlr = 2\n";
  CHECK(sdw_train_config_parse(&c, dup, strlen(dup), "c.ini") == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "c.ini:2"));
  const char *range = "batch_size = 0\n";
  CHECK(sdw_train_config_parse(&c, range, strlen(range), "d.ini") == SDW_ERR_INVALID_ARGUMENT);
  const char *noeq = "just words\n";
  CHECK(sdw_train_config_parse(&c, noeq, strlen(noeq), "e.ini") == SDW_ERR_INVALID_ARGUMENT);
  CHECK(sdw_train_config_set(&c, "min_snr", "maybe", "--set") == SDW_ERR_INVALID_ARGUMENT);

  /* the resolved text parses back to the same values */
  char *fmt = sdw_train_config_format(&c);
  REQUIRE(fmt);
  sdw_train_config_defaults(&d);
  CHECK_OK(sdw_train_config_parse(&d, fmt, strlen(fmt), "resolved"));
  char *fmt2 = sdw_train_config_format(&d);
  CHECK(fmt2 && strcmp(fmt, fmt2) == 0);
  free(fmt);
  free(fmt2);

  /* custom UNet keys give the seed-tiny UNet's config */
  sdw_unet_config u, p;
  char *json = NULL;
  CHECK_OK(sdw_train_config_set(&c, "model", "custom", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_ch", "32", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_ch_mults", "1,2", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_attn_lvls", "1", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_res_blks", "1", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_heads", "2", "t"));
  CHECK_OK(sdw_train_config_set(&c, "unet_ctx_dim", "64", "t"));
  CHECK_OK(sdw_train_config_unet(&c, &u, &json));
  free(json);
  CHECK_OK(sdw_unet_preset("seed-tiny", &p));
  int64_t nu = 0, np = 0;
  CHECK_OK(sdw_unet_count_params(&u, &nu));
  CHECK_OK(sdw_unet_count_params(&p, &np));
  CHECK(nu == 704836 && np == 704836); /* SEED.md 1.6 */
}

SDW_TEST(train_data_order) {
  enum { N = 37 };
  int64_t p0[N], p0b[N], p1[N];
  sdw_data_loader_permutation(42, 0, N, p0);
  sdw_data_loader_permutation(42, 0, N, p0b);
  sdw_data_loader_permutation(42, 1, N, p1);
  CHECK(memcmp(p0, p0b, sizeof p0) == 0);
  CHECK(memcmp(p0, p1, sizeof p0) != 0);
  int seen[N] = {0};
  for (int i = 0; i < N; i++)
    if (p0[i] >= 0 && p0[i] < N) seen[p0[i]]++;
  for (int i = 0; i < N; i++)
    CHECK(seen[i] == 1);

  /* two ranks: global micro-batch k is perm[k*2*3, (k+1)*2*3), rank r takes
   * its r-th 3 (so 2 ranks x 3 see what 1 rank x 6 sees) */
  sdw_latent_store *s = NULL;
  CHECK_OK(sdw_latent_store_open(fixture_store(), &s));
  REQUIRE(s);
  sdw_data_loader a, b, one;
  CHECK_OK(sdw_data_loader_init(&a, s, 5, 0, 2, 3));
  CHECK_OK(sdw_data_loader_init(&b, s, 5, 1, 2, 3));
  CHECK_OK(sdw_data_loader_init(&one, s, 5, 0, 1, 6));
  CHECK(sdw_data_loader_batches(&a) == 2); /* 16 samples, global batches of 6 */
  CHECK(sdw_data_loader_batches(&one) == 2);
  int64_t perm[16], ia[3], ib[3], i1[6];
  sdw_data_loader_permutation(5, 3, 16, perm);
  for (int k = 0; k < 2; k++) {
    sdw_data_loader_indices(&a, 3, k, ia);
    sdw_data_loader_indices(&b, 3, k, ib);
    sdw_data_loader_indices(&one, 3, k, i1);
    for (int i = 0; i < 3; i++) {
      CHECK(ia[i] == perm[k * 6 + i] && ia[i] == i1[i]);
      CHECK(ib[i] == perm[k * 6 + 3 + i] && ib[i] == i1[3 + i]);
    }
  }
  sdw_data_loader c;
  CHECK(sdw_data_loader_init(&c, s, 5, 0, 4, 5) == SDW_ERR_INVALID_ARGUMENT);
  sdw_data_loader_free(&a);
  sdw_data_loader_free(&b);
  sdw_data_loader_free(&one);
  sdw_latent_store_close(s);
}

static bool same_state(const sdw_trainer *x, const sdw_trainer *y) {
  sdw_checkpoint_buffers a, b;
  sdw_trainer_buffers(x, &a);
  sdw_trainer_buffers(y, &b);
  const size_t n = sdw_trainer_params(x)->total * sizeof(float);
  bool ok = memcmp(a.model, b.model, n) == 0;
  CHECK_MSG(ok, "weights differ");
  CHECK_MSG(memcmp(a.ema, b.ema, n) == 0, "EMA differs");
  CHECK_MSG(memcmp(a.adam_m, b.adam_m, n) == 0, "AdamW m differs");
  CHECK_MSG(memcmp(a.adam_v, b.adam_v, n) == 0, "AdamW v differs");
  return ok;
}

/* N steps straight == N/2, checkpoint, a fresh trainer resuming, N/2 more:
 * bit for bit (weights, EMA, moments). N = 6 with 4 steps per epoch: the
 * checkpoint is mid-epoch and the resumed half crosses an epoch. */
SDW_TEST(train_resume_bit_identical) {
  sdw_train_config c;
  train_fixture_config(&c, fixture_store());
  sdw_trainer *a = NULL, *b = NULL;
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &a));
  REQUIRE(a);
  CHECK(sdw_trainer_steps_per_epoch(a) == 4);
  sdw_trainer_report r;
  double loss_a[6];
  for (int i = 0; i < 6; i++) {
    CHECK_OK(sdw_trainer_step(a, &r));
    loss_a[i] = r.loss;
    CHECK(!r.skipped && r.loss > 0 && r.grad_norm > 0);
  }
  CHECK(sdw_trainer_epoch(a) == 1);

  char path[1024];
  snprintf(path, sizeof path, "%s/resume-ck", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(path));
  snprintf(path, sizeof path, "%s/resume-ck/step-00000003.safetensors", sdw_test_tmpdir());
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &b));
  REQUIRE(b);
  for (int i = 0; i < 3; i++) {
    CHECK_OK(sdw_trainer_step(b, &r));
    CHECK(r.loss == loss_a[i]);
  }
  CHECK_OK(sdw_trainer_save(b, path));
  sdw_trainer_free(b);

  b = NULL;
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &b));
  REQUIRE(b);
  sdw_checkpoint_state s;
  sdw_safetensors *ck = NULL;
  CHECK_OK(sdw_checkpoint_open(path, sdw_trainer_params(b), &s, &ck));
  REQUIRE(ck);
  CHECK(s.step == 3 && s.epoch == 0 && s.position == 3);
  CHECK_OK(sdw_trainer_restore(b, ck, &s));
  sdw_safetensors_close(ck);
  for (int i = 3; i < 6; i++) {
    CHECK_OK(sdw_trainer_step(b, &r));
    CHECK_MSG(r.loss == loss_a[i], "step %d loss %.17g vs %.17g", i + 1, r.loss, loss_a[i]);
  }
  same_state(a, b);
  sdw_trainer_free(a);
  sdw_trainer_free(b);
  train_fixture_restore_threads();
}

/* A damaged newest checkpoint is refused (hash) and the previous one used. */
SDW_TEST(train_checkpoint_fallback) {
  sdw_train_config c;
  train_fixture_config(&c, fixture_store());
  sdw_trainer *t = NULL;
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &t));
  REQUIRE(t);
  char dir[512], p1[1024], p2[1024];
  snprintf(dir, sizeof dir, "%s/fallback-ck", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(dir));
  sdw_trainer_report r;
  CHECK_OK(sdw_trainer_step(t, &r));
  sdw_checkpoint_path(dir, 1, p1, sizeof p1);
  CHECK_OK(sdw_trainer_save(t, p1));
  CHECK_OK(sdw_trainer_step(t, &r));
  sdw_checkpoint_path(dir, 2, p2, sizeof p2);
  CHECK_OK(sdw_trainer_save(t, p2));
  CHECK_OK(sdw_checkpoint_set_latest(dir, "step-00000002.safetensors"));

  char found[1024];
  sdw_checkpoint_state s;
  sdw_safetensors *ck = NULL;
  CHECK_OK(sdw_checkpoint_find_resume(dir, sdw_trainer_params(t), found, sizeof found, &s, &ck,
                                      NULL, NULL));
  CHECK(s.step == 2 && strcmp(found, p2) == 0);
  sdw_safetensors_close(ck);

  /* flip one byte of the last tensor's data: same size, valid header */
  void *data;
  size_t size;
  CHECK_OK(sdw_read_file(p2, &data, &size));
  ((unsigned char *)data)[size - 3] ^= 0x40;
  CHECK_OK(sdw_atomic_write(p2, data, size));
  free(data);
  CHECK(sdw_checkpoint_open(p2, sdw_trainer_params(t), &s, &ck) == SDW_ERR_FORMAT);
  CHECK(strstr(sdw_last_error(), "SHA-256") != NULL);
  CHECK_OK(sdw_checkpoint_find_resume(dir, sdw_trainer_params(t), found, sizeof found, &s, &ck,
                                      NULL, NULL));
  CHECK(s.step == 1 && strcmp(found, p1) == 0);
  sdw_safetensors_close(ck);

  /* truncated: refused too; with both bad there is nothing to resume */
  CHECK_OK(sdw_read_file(p1, &data, &size));
  CHECK_OK(sdw_atomic_write(p1, data, size / 2));
  free(data);
  CHECK(sdw_checkpoint_find_resume(dir, sdw_trainer_params(t), found, sizeof found, &s, &ck, NULL,
                                   NULL) == SDW_ERR_NOT_FOUND);

  /* pruning keeps the newest keep_last and multiples of keep_every */
  for (int k = 3; k <= 8; k++) {
    CHECK_OK(sdw_trainer_step(t, &r));
    sdw_checkpoint_path(dir, k, p1, sizeof p1);
    CHECK_OK(sdw_trainer_save(t, p1));
  }
  CHECK_OK(sdw_checkpoint_set_latest(dir, "step-00000008.safetensors"));
  CHECK_OK(sdw_checkpoint_prune(dir, 2, 4));
  char **names = NULL;
  int count = 0;
  CHECK_OK(sdw_checkpoint_list(dir, &names, &count));
  CHECK(count == 3);
  if (count == 3) {
    CHECK(strcmp(names[0], "step-00000008.safetensors") == 0);
    CHECK(strcmp(names[1], "step-00000007.safetensors") == 0);
    CHECK(strcmp(names[2], "step-00000004.safetensors") == 0);
  }
  sdw_list_files_free(names, count);
  sdw_trainer_free(t);
  train_fixture_restore_threads();
}

/* NaN latents: every step is skipped and nothing changes. */
SDW_TEST(train_nonfinite_skips) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/nan-store", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(dir));
  enum { n = 8, L = 77, per = 4 * 8 * 8 };
  uint16_t *lat = calloc(n * per, 2);
  int32_t ids[n * L], mask[n * L];
  const char *keys[n], *caps[n];
  for (int i = 0; i < n * per; i++)
    lat[i] = 0x7e00; /* f16 NaN */
  for (int i = 0; i < n * L; i++)
    ids[i] = 49407, mask[i] = 1;
  for (int i = 0; i < n; i++)
    keys[i] = caps[i] = "x";
  sdw_latent_chunk ch = {.count = n,
                         .channels = 4,
                         .height = 8,
                         .width = 8,
                         .seq_len = L,
                         .latents = lat,
                         .input_ids = ids,
                         .attention_mask = mask,
                         .keys = keys,
                         .captions = caps};
  char path[1024];
  snprintf(path, sizeof path, "%s/chunk-00000.safetensors", dir);
  CHECK_OK(sdw_latent_chunk_write(path, &ch));
  CHECK_OK(sdw_latent_store_finish(dir, "train", 1, 0.18215, 16, "nan"));
  free(lat);

  sdw_train_config c;
  train_fixture_config(&c, dir);
  sdw_trainer *t = NULL;
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &t));
  REQUIRE(t);
  sdw_checkpoint_buffers b;
  sdw_trainer_buffers(t, &b);
  const size_t bytes = sdw_trainer_params(t)->total * sizeof(float);
  float *w0 = malloc(bytes);
  memcpy(w0, b.model, bytes);
  sdw_trainer_report r;
  for (int i = 1; i <= 2; i++) {
    CHECK_OK(sdw_trainer_step(t, &r));
    CHECK(r.skipped && r.nonfinite_run == i);
  }
  CHECK(memcmp(w0, b.model, bytes) == 0);
  free(w0);
  sdw_trainer_free(t);
  train_fixture_restore_threads();
}

/* A checkpoint opens as a UNet (for samplers): EMA or raw weights, exactly. */
SDW_TEST(train_checkpoint_load_unet) {
  sdw_train_config c;
  train_fixture_config(&c, fixture_store());
  sdw_trainer *t = NULL;
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &t));
  REQUIRE(t);
  sdw_trainer_report r;
  for (int i = 0; i < 2; i++)
    CHECK_OK(sdw_trainer_step(t, &r));
  char dir[512], path[1024];
  snprintf(dir, sizeof dir, "%s/load-unet", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(dir));
  sdw_checkpoint_path(dir, 2, path, sizeof path);
  CHECK_OK(sdw_trainer_save(t, path));
  CHECK(sdw_checkpoint_is(path));
  CHECK(!sdw_checkpoint_is(dir));
  sdw_ctx *ctx = NULL;
  CHECK_OK(sdw_ctx_create(sdw_backend_cpu(), 0, &ctx));
  REQUIRE(ctx);
  sdw_checkpoint_buffers b;
  sdw_trainer_buffers(t, &b);
  const size_t n = sdw_trainer_params(t)->total * sizeof(float);
  for (int ema = 0; ema <= 1; ema++) {
    sdw_unet m;
    bool used = !ema;
    CHECK_OK(sdw_checkpoint_load_unet(&m, ctx, path, ema, &used));
    CHECK(used == (ema == 1));
    CHECK(m.params.total * sizeof(float) == n);
    CHECK(memcmp(m.params.flat, ema ? b.ema : b.model, n) == 0);
    sdw_unet_free(&m);
  }
  /* EMA and raw weights differ after 2 steps (d = 2/11, 3/12) */
  CHECK(memcmp(b.ema, b.model, n) != 0);
  sdw_ctx_destroy(ctx);
  sdw_trainer_free(t);
  train_fixture_restore_threads();
}

/* text_encoder = none: the contexts stored in the latent store feed the UNet
 * (as f32 of their f16 values); caption dropout then needs the encoder. */
SDW_TEST(train_stored_context) {
  char dir[512], path[1024];
  snprintf(dir, sizeof dir, "%s/ctx-store", sdw_test_tmpdir());
  CHECK_OK(sdw_mkdir_p(dir));
  enum { n = 8, L = 77, D = 64, per = 4 * 8 * 8 };
  uint16_t *lat = calloc(n * per, 2), *ctx = calloc(n * L * D, 2);
  int32_t *ids = calloc(n * L, 4), *mask = calloc(n * L, 4);
  REQUIRE(lat && ctx && ids && mask);
  const char *keys[n], *caps[n];
  sdw_test_rng rng = sdw_test_rng_make(3);
  for (int i = 0; i < n * per; i++)
    lat[i] = sdw_f32_to_f16((float)sdw_test_rng_normal(&rng));
  for (int i = 0; i < n * L * D; i++)
    ctx[i] = sdw_f32_to_f16((float)sdw_test_rng_normal(&rng));
  for (int i = 0; i < n; i++)
    keys[i] = caps[i] = "x";
  sdw_latent_chunk ch = {.count = n,
                         .channels = 4,
                         .height = 8,
                         .width = 8,
                         .seq_len = L,
                         .context_dim = D,
                         .latents = lat,
                         .input_ids = ids,
                         .attention_mask = mask,
                         .context = ctx,
                         .keys = keys,
                         .captions = caps};
  snprintf(path, sizeof path, "%s/chunk-00000.safetensors", dir);
  CHECK_OK(sdw_latent_chunk_write(path, &ch));
  CHECK_OK(sdw_latent_store_finish(dir, "train", 1, 0.18215, 16, "ctx"));
  free(lat);
  free(ctx);
  free(ids);
  free(mask);

  sdw_train_config c;
  train_fixture_config(&c, dir);
  CHECK_OK(sdw_train_config_set(&c, "text_encoder", "none", "t"));
  sdw_trainer *t = NULL;
  /* cfg_dropout 0.25 (the fixture's) needs the empty-prompt embedding */
  CHECK(sdw_trainer_create(&c, NULL, NULL, NULL, &t) == SDW_ERR_INVALID_ARGUMENT);
  CHECK(strstr(sdw_last_error(), "cfg_dropout") != NULL);
  CHECK_OK(sdw_train_config_set(&c, "cfg_dropout", "0", "t"));
  CHECK_OK(sdw_trainer_create(&c, NULL, NULL, NULL, &t));
  REQUIRE(t);
  sdw_trainer_report r;
  for (int i = 0; i < 2; i++) {
    CHECK_OK(sdw_trainer_step(t, &r));
    CHECK(!r.skipped && r.loss > 0.5 && r.loss < 2); /* ~1: the zero-init UNet predicts 0 */
  }
  sdw_trainer_free(t);
  /* the tiny CLIP store has no contexts: none is refused */
  train_fixture_config(&c, fixture_store());
  CHECK_OK(sdw_train_config_set(&c, "text_encoder", "none", "t"));
  CHECK_OK(sdw_train_config_set(&c, "cfg_dropout", "0", "t"));
  CHECK(sdw_trainer_create(&c, NULL, NULL, NULL, &t) == SDW_ERR_INVALID_ARGUMENT);
  train_fixture_restore_threads();
}
