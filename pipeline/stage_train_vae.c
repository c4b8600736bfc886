/* `sdw pipeline train-vae`: trains a small KL autoencoder (diffusers'
 * AutoencoderKL, core/model/vae.h) from scratch on a pixel-space store of
 * the dataset's images, and writes it as a diffusers vae folder that
 * `sdw pipeline encode --vae`, `sdw train` (vae = DIR) and the samplers
 * read. The demo's alternative to pixel space (README "The demo").
 *
 * Data: DIR/<--images>/train, a store written by `sdw pipeline encode
 * --vae pixels --store NAME` (3 channels, scaling 1, values in [-1, 1]).
 * Step k draws its --batch images uniformly with replacement from the
 * Philox u32 stream (seed, subsequence k) and its posterior noise from the
 * normal stream (seed, subsequence 2^32 + k), so the run is a function of
 * its settings and a resumed run draws what an uninterrupted one would.
 *
 * Model: block_out_channels --channels, --layers-per-block, --latent-
 * channels, --norm-groups, the mid block's attention unless
 * --no-attention; PyTorch's default initialisation (core/train/
 * unet_init.h: kaiming-uniform weights, norms at 1 / 0) from --seed.
 * Loss: core/model/vae_train.h (squared error + --kl-weight x KL).
 * Optimizer: AdamW (0.9, 0.999, eps 1e-8, no weight decay), gradient
 * norm clipped at 1, the learning rate of the trainer's schedule (linear
 * warmup over min(100, steps/10) steps from 1%, cosine to 1%).
 *
 * Output, DIR/<--out>/ (default DIR/vae): config.json (diffusers
 * AutoencoderKL; scaling_factor = 1 / std of the encoded training set's
 * posterior means, the rule latent diffusion set 0.18215 by) and
 * diffusion_pytorch_model.safetensors (diffusers names, F32), each written
 * atomically, the config last. The manifest (manifests/train-vae.json)
 * reports the loss and the reconstruction PSNR of the whole set.
 *
 * Resume: every --save-every steps and on SIGINT/SIGTERM the weights, the
 * AdamW moments and the step go to DIR/<--out>/train-state.safetensors
 * (atomically) with the settings; a rerun with the same settings continues
 * from there bit for bit, one with other settings is refused (remove the
 * folder to start over). A finished folder whose settings match is left
 * as it is. --minutes ends training early at a time budget (the result
 * then depends on the machine's speed, and says so in the manifest). */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/arena.h"
#include "core/base/fsutil.h"
#include "core/base/latent_store.h"
#include "core/base/parse.h"
#include "core/base/rng.h"
#include "core/base/safetensors.h"
#include "core/model/vae.h"
#include "core/model/vae_train.h"
#include "core/train/lr_schedule.h"
#include "core/train/optimizer.h"
#include "core/train/unet_init.h"
#include "pipeline/manifest.h"
#include "pipeline/stages.h"

typedef struct tv_options {
  const char *data, *images, *out, *channels;
  int64_t layers_per_block, latent_channels, norm_groups;
  bool no_attention;
  int64_t steps, batch, save_every, seed;
  double lr, kl_weight, minutes;
} tv_options;

static void usage(FILE *f) {
  fprintf(f, "usage: sdw pipeline train-vae --data DIR [options]\n"
             "\n"
             "Trains a small KL autoencoder (diffusers AutoencoderKL) from scratch on the\n"
             "pixel-space store DIR/IMAGES/train (`sdw pipeline encode --vae pixels --store\n"
             "IMAGES`) and writes it as a diffusers vae folder DIR/OUT (config.json +\n"
             "diffusion_pytorch_model.safetensors) for `sdw pipeline encode --vae DIR/OUT`.\n"
             "Loss: squared error + kl-weight x KL. Resumes from DIR/OUT/train-state.safetensors.\n"
             "\n"
             "  --data DIR              data directory (manifest in DIR/manifests)\n"
             "  --images NAME           the pixel store DIR/NAME/train (default pixels)\n"
             "  --out NAME              the VAE folder DIR/NAME (default vae)\n"
             "  --channels LIST         block_out_channels, comma-separated (default 32,64:\n"
             "                          two levels, the latent is half the image's side)\n"
             "  --layers-per-block N    resnets per encoder level (default 1)\n"
             "  --latent-channels N     latent channels (default 4)\n"
             "  --norm-groups N         GroupNorm groups, dividing every width (default 32)\n"
             "  --no-attention          no attention in the mid blocks\n"
             "  --steps N               optimizer steps (default 2000)\n"
             "  --minutes M             stop training after M minutes even if steps remain\n"
             "                          (default 0: no limit)\n"
             "  --batch N               images per step (default 16)\n"
             "  --lr X                  peak learning rate (default 1e-3)\n"
             "  --kl-weight X           weight of the KL term (default 1e-6, latent diffusion's)\n"
             "  --seed N                initialisation, batches and noise (default 0)\n"
             "  --save-every N          steps between resume states (default 200)\n"
             "  --help                  this text\n");
}

/* 0 run, 1 --help, 2 usage error (reported). */
static int parse_options(int argc, char **argv, tv_options *o) {
  memset(o, 0, sizeof *o);
  o->images = "pixels";
  o->out = "vae";
  o->channels = "32,64";
  o->layers_per_block = 1;
  o->latent_channels = 4;
  o->norm_groups = 32;
  o->steps = 2000;
  o->batch = 16;
  o->save_every = 200;
  o->lr = 1e-3;
  o->kl_weight = 1e-6;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--no-attention") == 0) {
      o->no_attention = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline train-vae: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--images") == 0)
      o->images = v;
    else if (strcmp(a, "--out") == 0)
      o->out = v;
    else if (strcmp(a, "--channels") == 0)
      o->channels = v;
    else if (strcmp(a, "--layers-per-block") == 0)
      ok = sdw_parse_i64(v, 1, 8, &o->layers_per_block);
    else if (strcmp(a, "--latent-channels") == 0)
      ok = sdw_parse_i64(v, 1, 64, &o->latent_channels);
    else if (strcmp(a, "--norm-groups") == 0)
      ok = sdw_parse_i64(v, 1, 1024, &o->norm_groups);
    else if (strcmp(a, "--steps") == 0)
      ok = sdw_parse_i64(v, 1, 100000000, &o->steps);
    else if (strcmp(a, "--minutes") == 0)
      ok = sdw_parse_double(v, 0, 1e6, &o->minutes);
    else if (strcmp(a, "--batch") == 0)
      ok = sdw_parse_i64(v, 1, 4096, &o->batch);
    else if (strcmp(a, "--lr") == 0)
      ok = sdw_parse_double(v, 1e-12, 10, &o->lr);
    else if (strcmp(a, "--kl-weight") == 0)
      ok = sdw_parse_double(v, 0, 1e6, &o->kl_weight);
    else if (strcmp(a, "--seed") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->seed);
    else if (strcmp(a, "--save-every") == 0)
      ok = sdw_parse_i64(v, 1, 100000000, &o->save_every);
    else {
      fprintf(stderr, "sdw: pipeline train-vae: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline train-vae: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data) {
    fprintf(stderr, "sdw: pipeline train-vae: --data is required (see --help)\n");
    return 2;
  }
  return 0;
}

/* The model's config from the options; SDW_ERR_INVALID_ARGUMENT naming the
 * problem. */
static sdw_status model_config(const tv_options *o, int side, sdw_vae_config *c) {
  memset(c, 0, sizeof *c);
  c->in_channels = c->out_channels = 3;
  c->latent_channels = (int)o->latent_channels;
  c->layers_per_block = (int)o->layers_per_block;
  c->norm_groups = (int)o->norm_groups;
  c->norm_eps = 1e-6f;
  c->mid_attention = !o->no_attention;
  c->use_quant_conv = c->use_post_quant_conv = true;
  c->scaling_factor = 1.0f;
  c->sample_size = side;
  const char *p = o->channels;
  while (*p) {
    char *end = NULL;
    const long v = strtol(p, &end, 10);
    if (end == p || v < 1 || v > 4096 || c->levels == SDW_VAE_MAX_LEVELS || (*end && *end != ','))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "--channels %s: give up to %d widths separated by commas", o->channels,
                      SDW_VAE_MAX_LEVELS);
    c->block_out_channels[c->levels++] = (int)v;
    p = *end ? end + 1 : end;
  }
  if (!c->levels) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "--channels is empty");
  SDW_TRY(sdw_vae_config_validate(c));
  if (side % sdw_vae_downscale(c))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the images are %dx%d, not a multiple of the VAE's downscale %d", side, side,
                    sdw_vae_downscale(c));
  return SDW_OK;
}

/* Everything a resumed run must share with the one that saved the state. */
static void settings_json(const tv_options *o, const sdw_vae_config *c, const char *store,
                          char *buf, size_t size) {
  cJSON *j = cJSON_CreateObject();
  cJSON *ch = cJSON_AddArrayToObject(j, "channels");
  for (int l = 0; l < c->levels; l++)
    cJSON_AddItemToArray(ch, cJSON_CreateNumber(c->block_out_channels[l]));
  cJSON_AddNumberToObject(j, "layers_per_block", c->layers_per_block);
  cJSON_AddNumberToObject(j, "latent_channels", c->latent_channels);
  cJSON_AddNumberToObject(j, "norm_groups", c->norm_groups);
  cJSON_AddBoolToObject(j, "attention", c->mid_attention);
  cJSON_AddNumberToObject(j, "steps", (double)o->steps);
  cJSON_AddNumberToObject(j, "batch", (double)o->batch);
  cJSON_AddNumberToObject(j, "lr", o->lr);
  cJSON_AddNumberToObject(j, "kl_weight", o->kl_weight);
  char seed[32]; /* a string: a double would round seeds past 2^53 */
  snprintf(seed, sizeof seed, "%lld", (long long)o->seed);
  cJSON_AddStringToObject(j, "seed", seed);
  cJSON_AddStringToObject(j, "images", store);
  char *text = cJSON_PrintUnformatted(j);
  snprintf(buf, size, "%s", text ? text : "{}");
  free(text);
  cJSON_Delete(j);
}

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct trainer {
  const tv_options *o;
  char dir[4096], state_path[4200], settings[8192];
  sdw_latent_store *store;
  int64_t count;
  int side;
  sdw_ctx *ctx;
  sdw_vae m, g;
  bool m_ok, g_ok;
  sdw_optimizer opt;
  bool opt_ok;
  sdw_arena *arena;
  float *image, *noise; /* [batch, 3, S, S], [batch, L, S/f, S/f] host (CPU backend) */
  int64_t step;
} trainer;

static void trainer_free(trainer *t) {
  if (t->opt_ok) sdw_optimizer_free(&t->opt);
  if (t->g_ok) sdw_vae_free(&t->g);
  if (t->m_ok) sdw_vae_free(&t->m);
  if (t->arena) sdw_arena_destroy(t->arena);
  if (t->ctx) sdw_ctx_destroy(t->ctx);
  sdw_latent_store_close(t->store);
  free(t->image);
  free(t->noise);
}

/* Image i of the store as floats [3, S, S]. */
static void load_image(const trainer *t, int64_t i, float *out) {
  const uint16_t *px = sdw_latent_store_latent(t->store, i);
  const size_t n = (size_t)3 * t->side * t->side;
  for (size_t k = 0; k < n; k++)
    out[k] = sdw_f16_to_f32(px[k]);
}

static sdw_status save_state(trainer *t) {
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  const int64_t n = (int64_t)t->m.params.total;
  char step[32];
  snprintf(step, sizeof step, "%lld", (long long)t->step);
  sdw_status st = sdw_safetensors_writer_add(w, "params", SDW_F32, 1, &n, t->m.params.flat);
  if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "adam_m", SDW_F32, 1, &n, t->opt.m);
  if (st == SDW_OK) st = sdw_safetensors_writer_add(w, "adam_v", SDW_F32, 1, &n, t->opt.v);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "format", "sdw-vae-train-state/1");
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "step", step);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "settings", t->settings);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, t->state_path);
  sdw_safetensors_writer_destroy(w);
  return st;
}

/* Loads a saved state when there is one; refuses one of other settings. */
static sdw_status load_state(trainer *t) {
  if (access(t->state_path, F_OK) != 0) return SDW_OK;
  sdw_safetensors *f = NULL;
  SDW_TRY(sdw_safetensors_open(t->state_path, &f));
  sdw_status st = SDW_OK;
  const char *settings = sdw_safetensors_metadata_get(f, "settings");
  const char *step = sdw_safetensors_metadata_get(f, "step");
  int64_t k = 0;
  if (!settings || !step || !sdw_parse_i64(step, 0, t->o->steps, &k))
    st = sdw_fail(SDW_ERR_FORMAT, "%s is not a train-vae state; remove it to start over",
                  t->state_path);
  else if (strcmp(settings, t->settings) != 0)
    st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                  "%s was saved with other settings (%s); rerun with those, or remove %s to "
                  "start over",
                  t->state_path, settings, t->dir);
  const char *names[3] = {"params", "adam_m", "adam_v"};
  float *dst[3] = {t->m.params.flat, t->opt.m, t->opt.v};
  for (int i = 0; i < 3 && st == SDW_OK; i++) {
    const sdw_safetensors_entry *e = sdw_safetensors_find(f, names[i]);
    if (!e || e->dtype != SDW_F32 || e->numel != (int64_t)t->m.params.total)
      st = sdw_fail(SDW_ERR_FORMAT,
                    "%s: tensor %s is missing or of the wrong size; remove it "
                    "to start over",
                    t->state_path, names[i]);
    else
      memcpy(dst[i], e->data, (size_t)e->nbytes);
  }
  if (st == SDW_OK) {
    t->step = k;
    t->opt.step = k;
  }
  sdw_safetensors_close(f);
  return st;
}

/* The batch of step k into t->image and t->noise. */
static void draw_batch(trainer *t, int64_t k) {
  const tv_options *o = t->o;
  uint32_t idx[4096];
  sdw_rng_fill_u32(idx, (size_t)o->batch, (uint64_t)o->seed, (uint64_t)k, 0);
  const size_t px = (size_t)3 * t->side * t->side;
  for (int64_t b = 0; b < o->batch; b++)
    load_image(t, (int64_t)(idx[b] % (uint64_t)t->count), t->image + (size_t)b * px);
  const int f = sdw_vae_downscale(&t->m.cfg);
  const size_t nz = (size_t)o->batch * t->m.cfg.latent_channels * (t->side / f) * (t->side / f);
  sdw_rng_fill_normal(t->noise, nz, (uint64_t)o->seed, (1ull << 32) + (uint64_t)k, 0);
}

/* After training: the posterior means of every image -> the scaling factor
 * (1 / their std) and the reconstruction PSNR of decoding them. */
static sdw_status measure(trainer *t, double *scaling, double *psnr) {
  const int f = sdw_vae_downscale(&t->m.cfg), L = t->m.cfg.latent_channels;
  const int64_t S = t->side, s = S / f, B = t->o->batch;
  const size_t px = (size_t)3 * S * S, lz = (size_t)L * s * s;
  float *mean = malloc((size_t)B * lz * sizeof(float));
  float *logvar = malloc((size_t)B * lz * sizeof(float));
  float *recon = malloc((size_t)B * px * sizeof(float));
  if (!mean || !logvar || !recon) {
    free(mean);
    free(logvar);
    free(recon);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  double sum = 0, sum2 = 0, err = 0;
  sdw_status st = SDW_OK;
  for (int64_t i = 0; i < t->count && st == SDW_OK; i += B) {
    const int64_t n = t->count - i < B ? t->count - i : B;
    for (int64_t b = 0; b < n; b++)
      load_image(t, i + b, t->image + (size_t)b * px);
    sdw_tensor img = sdw_tensor_4d(t->image, SDW_F32, n, 3, S, S);
    sdw_tensor mt = sdw_tensor_4d(mean, SDW_F32, n, L, s, s);
    sdw_tensor lt = sdw_tensor_4d(logvar, SDW_F32, n, L, s, s);
    sdw_tensor rt = sdw_tensor_4d(recon, SDW_F32, n, 3, S, S);
    st = sdw_vae_encode(&t->m, t->arena, &img, &mt, &lt);
    if (st == SDW_OK) st = sdw_vae_decode(&t->m, t->arena, &mt, &rt);
    for (size_t k = 0; st == SDW_OK && k < (size_t)n * lz; k++) {
      sum += mean[k];
      sum2 += (double)mean[k] * mean[k];
    }
    for (size_t k = 0; st == SDW_OK && k < (size_t)n * px; k++) {
      const double r = recon[k] < -1 ? -1 : recon[k] > 1 ? 1 : recon[k];
      err += (r - t->image[k]) * (r - t->image[k]);
    }
  }
  free(mean);
  free(logvar);
  free(recon);
  SDW_TRY(st);
  const double n = (double)t->count * (double)lz;
  const double var = (sum2 - sum * sum / n) / (n - 1); /* torch.std: unbiased */
  *scaling = var > 0 ? 1.0 / sqrt(var) : 1.0;
  const double mse = err / ((double)t->count * (double)px);
  *psnr = mse > 0 ? 10.0 * log10(4.0 / mse) : INFINITY; /* peak-to-peak 2 in [-1, 1] */
  return SDW_OK;
}

static sdw_status run(const tv_options *o, sdw_manifest *man, trainer *t) {
  char store_dir[4096];
  snprintf(store_dir, sizeof store_dir, "%s/%s/train", o->data, o->images);
  SDW_TRY(sdw_latent_store_open(store_dir, &t->store));
  sdw_manifest_add_input(man, store_dir, false);
  int C, H, W;
  sdw_latent_store_shape(t->store, &C, &H, &W);
  if (C != 3 || H != W || sdw_latent_store_scaling_factor(t->store) != 1.0)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s is not a pixel-space store (it holds %dx%dx%d latents); write one with "
                    "`sdw pipeline encode --vae pixels --store %s`",
                    store_dir, C, H, W, o->images);
  t->count = sdw_latent_store_count(t->store);
  t->side = H;
  if (t->count < 1) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s holds no images", store_dir);
  sdw_vae_config cfg;
  SDW_TRY(model_config(o, H, &cfg));
  snprintf(t->dir, sizeof t->dir, "%s/%s", o->data, o->out);
  snprintf(t->state_path, sizeof t->state_path, "%s/train-state.safetensors", t->dir);
  /* the store by its real path: the same data given another way is the same */
  char real[PATH_MAX];
  settings_json(o, &cfg, realpath(store_dir, real) ? real : store_dir, t->settings,
                sizeof t->settings);
  cJSON_AddItemToObject(man->extra, "settings", cJSON_Parse(t->settings));

  /* a finished folder of the same settings: nothing to do */
  char done_path[4200];
  snprintf(done_path, sizeof done_path, "%s/train-vae.json", t->dir);
  void *done = NULL;
  size_t done_size = 0;
  if (sdw_read_file(done_path, &done, &done_size) == SDW_OK) {
    cJSON *j = cJSON_ParseWithLength(done, done_size);
    free(done);
    cJSON *s = j ? cJSON_GetObjectItem(j, "settings") : NULL;
    char *text = s ? cJSON_PrintUnformatted(s) : NULL;
    cJSON *mine = cJSON_Parse(t->settings);
    char *mine_text = mine ? cJSON_PrintUnformatted(mine) : NULL;
    const bool same = text && mine_text && strcmp(text, mine_text) == 0;
    free(text);
    free(mine_text);
    cJSON_Delete(mine);
    cJSON_Delete(j);
    if (same) {
      printf("train-vae: %s is already trained with these settings\n", t->dir);
      sdw_manifest_set_message(man, "already trained: %s", t->dir);
      return SDW_OK;
    }
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s holds a VAE trained with other settings; remove it or give another --out",
                    t->dir);
  }
  sdw_clear_error();
  SDW_TRY(sdw_mkdir_p(t->dir));

  SDW_TRY(sdw_ctx_create(sdw_backend_cpu(), 0, &t->ctx));
  SDW_TRY(sdw_vae_create(&t->m, t->ctx, &cfg, SDW_VAE_BOTH));
  t->m_ok = true;
  SDW_TRY(sdw_vae_grads_create(&t->g, &t->m));
  t->g_ok = true;
  SDW_TRY(sdw_params_init_random(&t->m.params, (uint64_t)o->seed, NULL, NULL));
  sdw_optimizer_config oc = sdw_optimizer_config_seed();
  oc.weight_decay = 0;
  oc.ema = false;
  SDW_TRY(sdw_optimizer_init(&t->opt, t->ctx, &t->m.params, &oc));
  t->opt_ok = true;
  const size_t need = sdw_vae_train_arena_bytes(&t->m, o->batch, H, W);
  const size_t need_eval = sdw_vae_encode_arena_bytes(&t->m, o->batch, H, W) +
                           sdw_vae_decode_arena_bytes(&t->m, o->batch, H / sdw_vae_downscale(&cfg),
                                                      W / sdw_vae_downscale(&cfg));
  SDW_TRY(sdw_arena_create(&t->arena, "vae training",
                           (need > need_eval ? need : need_eval) + ((size_t)1 << 20)));
  const int f = sdw_vae_downscale(&cfg);
  t->image = malloc((size_t)o->batch * 3 * H * W * sizeof(float));
  t->noise = malloc((size_t)o->batch * cfg.latent_channels * (H / f) * (W / f) * sizeof(float));
  if (!t->image || !t->noise) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  SDW_TRY(load_state(t));
  if (t->step) printf("train-vae: resuming at step %lld\n", (long long)t->step);
  printf("train-vae: %lld images %dx%d, VAE %lld parameters, latents %dx%dx%d, %lld steps of "
         "%lld\n",
         (long long)t->count, H, W, (long long)sdw_vae_param_count(&t->m), cfg.latent_channels,
         H / f, W / f, (long long)o->steps, (long long)o->batch);
  fflush(stdout);

  sdw_lr_schedule sched;
  SDW_TRY(sdw_lr_schedule_init(&sched, o->lr, o->steps, 100, SDW_LR_AFTER_END_HOLD));
  sdw_manifest_set_total(man, o->steps);
  sdw_manifest_count_in(man, t->step);
  const double t0 = now_s();
  const int64_t first = t->step;
  bool cut = false;
  sdw_vae_train_loss loss = {0};
  double ema_loss = NAN;
  while (t->step < o->steps && !g_stop) {
    if (o->minutes > 0 && now_s() - t0 >= o->minutes * 60) {
      cut = true;
      break;
    }
    draw_batch(t, t->step);
    sdw_tensor img = sdw_tensor_4d(t->image, SDW_F32, o->batch, 3, H, W);
    sdw_tensor nz = sdw_tensor_4d(t->noise, SDW_F32, o->batch, cfg.latent_channels, H / f, W / f);
    SDW_TRY(sdw_vae_grads_zero(&t->g));
    SDW_TRY(sdw_vae_train_step(&t->m, &t->g, t->arena, &img, &nz, o->kl_weight, &loss, NULL));
    sdw_optimizer_report rep;
    SDW_TRY(sdw_optimizer_step(&t->opt, &t->m.params, t->g.params.flat,
                               sdw_lr_schedule_at(&sched, t->step), loss.loss, &rep));
    t->step++;
    sdw_manifest_count_in(man, 1);
    sdw_manifest_count_out(man, 1);
    const double per_pixel = loss.rec / (3.0 * H * W);
    ema_loss = isnan(ema_loss) ? per_pixel : 0.95 * ema_loss + 0.05 * per_pixel;
    if (t->step % 50 == 0 || t->step == o->steps) {
      const double el = now_s() - t0, rate = (double)(t->step - first) * o->batch / el;
      printf("train-vae: step %lld/%lld  mse %.5f  kl %.1f  lr %.2e  %.1f img/s\n",
             (long long)t->step, (long long)o->steps, ema_loss, loss.kl, rep.lr, rate);
      fflush(stdout);
      cJSON_DeleteItemFromObject(man->extra, "mse");
      cJSON_AddNumberToObject(man->extra, "mse", ema_loss);
      sdw_manifest_flush(man, false);
    }
    if (t->step % o->save_every == 0 && t->step < o->steps) SDW_TRY(save_state(t));
  }
  if (g_stop) {
    SDW_TRY(save_state(t));
    return sdw_fail(SDW_ERR_INTERRUPTED, "interrupted at step %lld; rerun to continue",
                    (long long)t->step);
  }
  double scaling = 1, psnr = 0;
  SDW_TRY(measure(t, &scaling, &psnr));
  t->m.cfg.scaling_factor = (float)scaling;
  const double seconds = now_s() - t0;
  char note[256];
  snprintf(note, sizeof note, "sdw pipeline train-vae: %lld steps of %lld", (long long)t->step,
           (long long)o->batch);
  SDW_TRY(sdw_vae_save(&t->m, t->dir, note));
  cJSON *rec = cJSON_CreateObject();
  cJSON_AddItemToObject(rec, "settings", cJSON_Parse(t->settings));
  cJSON_AddNumberToObject(rec, "steps_done", (double)t->step);
  cJSON_AddBoolToObject(rec, "cut_by_minutes", cut);
  cJSON_AddNumberToObject(rec, "scaling_factor", scaling);
  cJSON_AddNumberToObject(rec, "psnr_db", psnr);
  cJSON_AddNumberToObject(rec, "seconds", seconds);
  char *text = cJSON_Print(rec);
  sdw_status st = text ? sdw_atomic_write(done_path, text, strlen(text))
                       : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  free(text);
  cJSON_Delete(rec);
  SDW_TRY(st);
  unlink(t->state_path);
  cJSON_AddNumberToObject(man->extra, "steps_done", (double)t->step);
  cJSON_AddNumberToObject(man->extra, "scaling_factor", scaling);
  cJSON_AddNumberToObject(man->extra, "psnr_db", psnr);
  cJSON_AddBoolToObject(man->extra, "cut_by_minutes", cut);
  sdw_manifest_add_output(man, t->dir);
  printf("train-vae: %lld steps in %.0f s%s; reconstruction PSNR %.2f dB over %lld images; "
         "scaling factor %.5f; wrote %s\n",
         (long long)t->step, seconds, cut ? " (cut by --minutes)" : "", psnr, (long long)t->count,
         scaling, t->dir);
  return SDW_OK;
}

int sdw_pipeline_train_vae_main(int argc, char **argv) {
  tv_options o;
  const int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  sdw_manifest man;
  if (sdw_manifest_begin(&man, o.data, "train-vae") != SDW_OK) {
    fprintf(stderr, "sdw: pipeline train-vae: %s\n", sdw_last_error());
    return 1;
  }
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second signal ends the process at once */
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  trainer t;
  memset(&t, 0, sizeof t);
  t.o = &o;
  sdw_status st = run(&o, &man, &t);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", sdw_last_error());
  trainer_free(&t);
  if (st != SDW_OK) sdw_manifest_set_message(&man, "%s", msg);
  sdw_manifest_finish(&man, st == SDW_OK                ? "done"
                            : st == SDW_ERR_INTERRUPTED ? "interrupted"
                                                        : "failed");
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline train-vae: %s\n", msg);
    return st == SDW_ERR_INTERRUPTED ? 130 : 1;
  }
  return 0;
}
