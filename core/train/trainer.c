/* The training engine (trainer.h): one optimizer step at a time. */
#include "core/train/trainer.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/arena.h"
#include "core/base/json.h"
#include "core/base/latent_store.h"
#include "core/base/rng.h"
#include "core/diffusion/schedule.h"
#include "core/diffusion/txt2img.h"
#include "core/model/clip.h"
#include "core/model/tokenizer.h"
#include "core/model/unet.h"
#include "core/model/vae.h"
#include "core/train/data_loader.h"
#include "core/train/loss.h"
#include "core/train/lr_schedule.h"
#include "core/train/optimizer.h"
#include "core/train/unet_init.h"

#define NOISE_SUBSEQUENCE 0x6e6f697365ull /* "noise" */
#define VAL_SUBSEQUENCE   0x76616cull     /* "val" */

struct sdw_trainer {
  const sdw_train_config *cfg;
  sdw_trainer_log_fn log;
  void *log_user;
  sdw_allreduce *ar;
  bool own_ar;
  int rank, world;
  sdw_ctx *ctx;
  sdw_arena *arena;
  /* data */
  sdw_latent_store *train, *val;
  sdw_data_loader loader;
  int C, H, W, L, D;
  /* text */
  sdw_clip_text *clip; /* NULL: stored contexts */
  bool clip_mask;      /* pass the attention mask to CLIP (seed topology) */
  float *uncond;       /* [L, D] empty-prompt embedding (NULL without CLIP) */
  /* model */
  sdw_unet unet, grads;
  sdw_unet *ema_unet; /* lazily, for validation and samples */
  char *unet_json;
  sdw_noise_schedule sched;
  sdw_loss_config loss_cfg;
  sdw_optimizer opt;
  sdw_lr_schedule lr;
  /* state */
  int64_t step, epoch, position, steps_per_epoch, total_steps, stop_at, nonfinite_run;
  sdw_rng rng;
  double last_lr;
  /* host batch buffers */
  int64_t B;
  float *x0, *noise, *offset, *target, *x_t, *tsf, *context, *w, *eps, *deps;
  int64_t *ts, *idx;
  uint8_t *drop;
  int32_t *ids, *mask;
  /* sampling (lazily) */
  sdw_tokenizer *tok;
  sdw_vae *vae;
};

static void tlog(sdw_trainer *t, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tlog(sdw_trainer *t, int level, const char *fmt, ...) {
  if (!t->log) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  t->log(t->log_user, level, buf);
}

/* The config's prediction type (validated by sdw_train_config_validate). */
static sdw_prediction_type prediction_type(const sdw_train_config *cfg) {
  sdw_prediction_type pt = SDW_PREDICT_EPSILON;
  sdw_prediction_type_from_name(cfg->prediction_type, &pt);
  return pt;
}

static void *xcalloc(size_t n, size_t size, sdw_status *st) {
  void *p = calloc(n ? n : 1, size);
  if (!p && *st == SDW_OK) *st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
  return p;
}

/* The CLIP context of ids/mask [n, L] into out[n, L, D] (host). */
static sdw_status encode_text(sdw_trainer *t, const int32_t *ids, const int32_t *mask, int64_t n,
                              float *out) {
  sdw_tensor it = sdw_tensor_2d((void *)ids, SDW_I32, n, t->L);
  sdw_tensor mt = sdw_tensor_2d((void *)mask, SDW_I32, n, t->L);
  sdw_tensor o = sdw_tensor_3d(out, SDW_F32, n, t->L, t->D);
  sdw_clip_text_outputs outs = {.last_hidden_state = &o};
  return sdw_clip_text_forward(t->clip, &it, t->clip_mask ? &mt : NULL, &outs);
}

static sdw_status open_text(sdw_trainer *t) {
  const sdw_train_config *c = t->cfg;
  t->clip_mask = t->unet.cfg.topology == SDW_UNET_SEED;
  if (strcmp(c->text_encoder, "none") == 0) {
    if (sdw_latent_store_context_dim(t->train) == 0)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "text_encoder = none but %s holds no precomputed contexts: give a CLIP "
                      "text encoder folder",
                      c->train_data);
    if (c->cfg_dropout > 0)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "cfg_dropout %g needs the empty-prompt embedding: give text_encoder (a "
                      "CLIP folder) or set cfg_dropout = 0",
                      c->cfg_dropout);
    t->D = sdw_latent_store_context_dim(t->train);
  } else {
    t->clip = calloc(1, sizeof *t->clip);
    if (!t->clip) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    sdw_status st = sdw_clip_text_open(t->clip, t->ctx, c->text_encoder, NULL);
    if (st != SDW_OK) {
      free(t->clip);
      t->clip = NULL;
      sdw_error_prefix("text_encoder");
      return st;
    }
    t->D = (int)t->clip->config.hidden_size;
  }
  if (t->D != t->unet.cfg.context_dim)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the text context is %d wide but the UNet's context_dim is %d", t->D,
                    t->unet.cfg.context_dim);
  if (t->clip) {
    /* the empty prompt: SOT, EOT, EOT padding; mask on SOT and EOT (the seed's
     * tokenizer("", padding="max_length")) */
    int32_t *ids = calloc((size_t)t->L, 4), *mask = calloc((size_t)t->L, 4);
    t->uncond = malloc((size_t)t->L * t->D * sizeof(float));
    if (!ids || !mask || !t->uncond) {
      free(ids);
      free(mask);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    }
    for (int i = 0; i < t->L; i++)
      ids[i] = i == 0 ? SDW_CLIP_SOT : SDW_CLIP_EOT;
    mask[0] = 1;
    if (t->L > 1) mask[1] = 1;
    sdw_status st = encode_text(t, ids, mask, 1, t->uncond);
    free(ids);
    free(mask);
    SDW_TRY(st);
  }
  return SDW_OK;
}

sdw_status sdw_trainer_store_origin(const char *dir, char *vae, size_t size, int *height,
                                    int *width) {
  vae[0] = '\0';
  *height = *width = 0;
  char path[SDW_TRAIN_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/index.json", dir);
  sdw_json_doc *doc = NULL;
  SDW_TRY(sdw_json_load_file(path, &doc));
  sdw_json_obj root;
  const char *v = "";
  int64_t shape[3] = {0};
  size_t n = 0;
  sdw_status st = sdw_json_root(doc, &root);
  if (st == SDW_OK) st = sdw_json_get_string_or(&root, "vae", "", &v);
  if (st == SDW_OK) st = sdw_json_get_int_array(&root, "latent_shape", shape, 3, &n);
  if (st == SDW_OK &&
      (n != 3 || shape[1] < 1 || shape[2] < 1 || shape[1] > 1 << 20 || shape[2] > 1 << 20))
    st = sdw_fail(SDW_ERR_FORMAT, "%s: latent_shape must be [C, H, W]", path);
  if (st == SDW_OK) {
    snprintf(vae, size, "%s", v);
    *height = (int)shape[1];
    *width = (int)shape[2];
  }
  sdw_json_free(doc);
  return st;
}

/* vae = pixels needs a pixel-space store and a VAE path a latent one: one
 * trained on the other's data would learn the wrong thing silently. */
static sdw_status check_store_origin(const sdw_train_config *cfg) {
  if (!cfg->vae[0]) return SDW_OK; /* no images: either store will do */
  char origin[SDW_TRAIN_PATH_MAX];
  int h, w;
  SDW_TRY(sdw_trainer_store_origin(cfg->train_data, origin, sizeof origin, &h, &w));
  const bool store_pixels = strcmp(origin, "pixels") == 0;
  if (sdw_train_config_pixels(cfg) && !store_pixels)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "vae = pixels but train_data %s holds VAE latents (its index.json says vae "
                    "\"%s\"): set vae to that VAE, or encode the data with --vae pixels",
                    cfg->train_data, origin);
  if (!sdw_train_config_pixels(cfg) && store_pixels)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "vae = %s but train_data %s holds pixels (its index.json says vae "
                    "\"pixels\"): set vae = pixels",
                    cfg->vae, cfg->train_data);
  return SDW_OK;
}

sdw_status sdw_trainer_create(const sdw_train_config *cfg, sdw_allreduce *ar,
                              sdw_trainer_log_fn log, void *log_user, sdw_trainer **out) {
  *out = NULL;
  SDW_TRY(sdw_train_config_validate(cfg));
  sdw_trainer *t = calloc(1, sizeof *t);
  if (!t) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
  t->cfg = cfg;
  t->log = log;
  t->log_user = log_user;
  sdw_status st = SDW_OK;
  if (cfg->threads > 0) {
    omp_set_num_threads(cfg->threads);
    openblas_set_num_threads(cfg->threads);
  }
  if (ar) {
    t->ar = ar;
  } else {
    st = sdw_allreduce_init(cfg->allreduce, &t->ar);
    t->own_ar = true;
  }
  if (st == SDW_OK) {
    t->rank = sdw_allreduce_rank(t->ar);
    t->world = sdw_allreduce_world(t->ar);
    st = sdw_ctx_create(sdw_backend_cpu(), 0, &t->ctx);
  }
  if (st == SDW_OK)
    st = sdw_arena_create(&t->arena, "training activations", (size_t)cfg->arena_gb << 30);
  /* data */
  if (st == SDW_OK) {
    st = sdw_latent_store_open(cfg->train_data, &t->train);
    if (st != SDW_OK) sdw_error_prefix("train_data");
  }
  if (st == SDW_OK) st = check_store_origin(cfg);
  if (st == SDW_OK && cfg->val_data[0]) {
    st = sdw_latent_store_open(cfg->val_data, &t->val);
    if (st != SDW_OK) sdw_error_prefix("val_data");
  }
  if (st == SDW_OK) {
    sdw_latent_store_shape(t->train, &t->C, &t->H, &t->W);
    t->L = sdw_latent_store_seq_len(t->train);
    st = sdw_data_loader_init(&t->loader, t->train, cfg->seed, t->rank, t->world, cfg->batch_size);
  }
  if (t->val && st == SDW_OK) {
    int c, h, w;
    sdw_latent_store_shape(t->val, &c, &h, &w);
    if (c != t->C || h != t->H || w != t->W || sdw_latent_store_seq_len(t->val) != t->L ||
        sdw_latent_store_count(t->val) < cfg->batch_size ||
        sdw_latent_store_context_dim(t->val) != sdw_latent_store_context_dim(t->train))
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "val_data: its shapes differ from train_data's or it holds fewer than "
                    "batch_size samples");
  }
  /* model */
  sdw_unet_config ucfg;
  if (st == SDW_OK) st = sdw_train_config_unet(cfg, &ucfg, &t->unet_json);
  if (st == SDW_OK && (ucfg.in_channels != t->C || ucfg.out_channels != t->C))
    st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "the UNet takes %d channels but the latents have %d",
                  ucfg.in_channels, t->C);
  if (st == SDW_OK && ((t->H % (1 << (ucfg.levels - 1))) || (t->W % (1 << (ucfg.levels - 1)))))
    st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                  "latents of %dx%d do not divide by 2^%d (the UNet's levels)", t->H, t->W,
                  ucfg.levels - 1);
  if (st == SDW_OK) st = sdw_unet_create(&t->unet, t->ctx, &ucfg);
  if (st == SDW_OK) {
    if (cfg->init[0]) {
      st = sdw_unet_load(&t->unet, cfg->init);
      if (st != SDW_OK) sdw_error_prefix("init");
    } else {
      sdw_zero_init zi = SDW_ZERO_INIT_SEED;
      sdw_zero_init_from_name(cfg->unet_zero_init, &zi);
      st = sdw_unet_init_random_with(&t->unet, cfg->seed, zi);
    }
  }
  if (st == SDW_OK) st = sdw_unet_grads_create(&t->grads, &t->unet);
  if (st == SDW_OK) st = open_text(t);
  if (st == SDW_OK) {
    sdw_schedule_config sc = sdw_schedule_config_sd();
    st = sdw_noise_schedule_init(&t->sched, &sc);
  }
  if (st == SDW_OK) {
    t->loss_cfg = (sdw_loss_config){.min_snr = cfg->min_snr,
                                    .min_snr_gamma = cfg->min_snr_gamma,
                                    .cfg_dropout = cfg->cfg_dropout,
                                    .noise_offset = cfg->noise_offset,
                                    .prediction = prediction_type(cfg),
                                    .grad_accum = cfg->grad_accum};
    st = sdw_loss_config_validate(&t->loss_cfg);
  }
  if (st == SDW_OK) {
    sdw_optimizer_config oc = {.beta1 = cfg->beta1,
                               .beta2 = cfg->beta2,
                               .eps = cfg->adam_eps,
                               .weight_decay = cfg->weight_decay,
                               .decay_norms_and_biases = cfg->decay_norms_and_biases,
                               .max_grad_norm = cfg->max_grad_norm,
                               .ema = cfg->ema,
                               .ema_decay = cfg->ema_decay};
    st = sdw_optimizer_init(&t->opt, t->ctx, &t->unet.params, &oc);
  }
  if (st == SDW_OK) {
    t->steps_per_epoch = sdw_data_loader_batches(&t->loader) / cfg->grad_accum;
    if (t->steps_per_epoch < 1)
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "an epoch has %lld micro-batches per rank, fewer than grad_accum %d",
                    (long long)sdw_data_loader_batches(&t->loader), cfg->grad_accum);
  }
  if (st == SDW_OK) {
    t->total_steps = t->steps_per_epoch * cfg->epochs;
    t->stop_at =
        cfg->max_steps > 0 && cfg->max_steps < t->total_steps ? cfg->max_steps : t->total_steps;
    sdw_lr_after_end ae = SDW_LR_AFTER_END_HOLD;
    sdw_lr_after_end_from_name(cfg->lr_after_end, &ae);
    st = sdw_lr_schedule_init(&t->lr, cfg->lr, t->total_steps, cfg->warmup, ae);
  }
  if (st == SDW_OK) {
    t->rng = sdw_rng_make(cfg->seed, NOISE_SUBSEQUENCE);
    const int64_t B = cfg->batch_size, per = (int64_t)t->C * t->H * t->W;
    t->B = B;
    t->x0 = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->noise = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->target = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->x_t = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->eps = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->deps = xcalloc((size_t)(B * per), sizeof(float), &st);
    t->offset = xcalloc((size_t)(B * t->C), sizeof(float), &st);
    t->tsf = xcalloc((size_t)B, sizeof(float), &st);
    t->w = xcalloc((size_t)B, sizeof(float), &st);
    t->ts = xcalloc((size_t)B, sizeof(int64_t), &st);
    t->idx = xcalloc((size_t)B, sizeof(int64_t), &st);
    t->drop = xcalloc((size_t)B, 1, &st);
    t->ids = xcalloc((size_t)(B * t->L), sizeof(int32_t), &st);
    t->mask = xcalloc((size_t)(B * t->L), sizeof(int32_t), &st);
    t->context = xcalloc((size_t)(B * t->L * t->D), sizeof(float), &st);
  }
  if (st != SDW_OK) {
    sdw_trainer_free(t);
    return st;
  }
  int64_t np = sdw_unet_param_count(&t->unet);
  tlog(t, 0,
       "model: %s UNet, %lld parameters; data: %lld samples of %dx%dx%d, %lld steps per epoch "
       "(batch %d x accum %d x %d ranks), %lld steps in all",
       ucfg.topology == SDW_UNET_SEED ? "seed" : "SD 1.x", (long long)np,
       (long long)sdw_latent_store_count(t->train), t->C, t->H, t->W, (long long)t->steps_per_epoch,
       cfg->batch_size, cfg->grad_accum, t->world, (long long)t->stop_at);
  *out = t;
  return SDW_OK;
}

static void free_unet_ptr(sdw_unet *u) {
  if (!u) return;
  sdw_unet_free(u);
  free(u);
}

void sdw_trainer_free(sdw_trainer *t) {
  if (!t) return;
  free(t->x0);
  free(t->noise);
  free(t->target);
  free(t->x_t);
  free(t->eps);
  free(t->deps);
  free(t->offset);
  free(t->tsf);
  free(t->w);
  free(t->ts);
  free(t->idx);
  free(t->drop);
  free(t->ids);
  free(t->mask);
  free(t->context);
  free(t->uncond);
  if (t->opt.ctx) sdw_optimizer_free(&t->opt);
  sdw_noise_schedule_free(&t->sched);
  free_unet_ptr(t->ema_unet);
  sdw_unet_free(&t->grads);
  sdw_unet_free(&t->unet);
  if (t->clip) {
    sdw_clip_text_free(t->clip);
    free(t->clip);
  }
  if (t->vae) {
    sdw_vae_free(t->vae);
    free(t->vae);
  }
  sdw_tokenizer_free(t->tok);
  free(t->unet_json);
  sdw_data_loader_free(&t->loader);
  sdw_latent_store_close(t->val);
  sdw_latent_store_close(t->train);
  sdw_arena_destroy(t->arena);
  if (t->ctx) sdw_ctx_destroy(t->ctx);
  if (t->own_ar) sdw_allreduce_free(t->ar);
  free(t);
}

/* Contexts for the batch in t->ids / t->mask or from the store. */
static sdw_status batch_context(sdw_trainer *t, const sdw_latent_store *store) {
  if (t->clip) return encode_text(t, t->ids, t->mask, t->B, t->context);
  sdw_data_loader_gather(store, t->idx, t->B, t->x0, NULL, NULL, t->context);
  return SDW_OK;
}

/* Forward (+ loss, + backward when train) of the batch in t->x_t against
 * t->target with weights t->w, context t->context. */
static sdw_status run_batch(sdw_trainer *t, sdw_unet *m, bool train, double *loss) {
  const int64_t B = t->B;
  sdw_tensor x = sdw_tensor_4d(t->x_t, SDW_F32, B, t->C, t->H, t->W);
  sdw_tensor ts = sdw_tensor_1d(t->tsf, SDW_F32, B);
  sdw_tensor cx = sdw_tensor_3d(t->context, SDW_F32, B, t->L, t->D);
  sdw_tensor o = sdw_tensor_4d(t->eps, SDW_F32, B, t->C, t->H, t->W);
  sdw_tensor tg = sdw_tensor_4d(t->target, SDW_F32, B, t->C, t->H, t->W);
  sdw_tensor d = sdw_tensor_4d(t->deps, SDW_F32, B, t->C, t->H, t->W);
  const size_t mark = sdw_arena_mark(t->arena);
  sdw_status st;
  if (train) {
    sdw_unet_saved *sv = NULL;
    memset(t->deps, 0, (size_t)(B * t->C * t->H * t->W) * sizeof(float));
    st = sdw_unet_forward_train(m, t->arena, &x, &ts, &cx, &o, t->cfg->grad_ckpt, &sv);
    if (st == SDW_OK) st = sdw_loss_eval(t->ctx, t->arena, &o, &tg, t->w, NULL, loss, &d);
    if (st == SDW_OK) st = sdw_unet_backward(m, &t->grads, t->arena, sv, &d, NULL, NULL);
  } else {
    st = sdw_unet_forward(m, t->arena, &x, &ts, &cx, &o);
    if (st == SDW_OK) st = sdw_loss_eval(t->ctx, t->arena, &o, &tg, t->w, NULL, loss, NULL);
  }
  sdw_arena_reset_to(t->arena, mark);
  return st;
}

/* Draws and inputs of one micro-batch (indices in t->idx) from rng. With
 * global, the draws are those of the whole global micro-batch (world x B
 * samples, the same stream on every rank) and this rank keeps its slice, so
 * W ranks with batch B draw what one rank with batch W*B draws. */
static sdw_status prepare_batch(sdw_trainer *t, const sdw_latent_store *store, sdw_rng *rng,
                                const sdw_loss_config *lc, bool global) {
  const int64_t B = t->B, per = (int64_t)t->C * t->H * t->W;
  sdw_data_loader_gather(store, t->idx, B, t->x0, t->clip ? t->ids : NULL, t->clip ? t->mask : NULL,
                         NULL);
  SDW_TRY(batch_context(t, store));
  const bool off = lc->noise_offset > 0;
  const int W = global ? t->world : 1, r = global ? t->rank : 0;
  if (W == 1) {
    sdw_loss_draw(rng, lc, t->sched.num_train_timesteps, B, t->C, per, t->ts, t->drop, t->noise,
                  off ? t->offset : NULL);
  } else {
    const int64_t G = B * W;
    int64_t *gts = malloc((size_t)G * sizeof *gts);
    uint8_t *gdrop = malloc((size_t)G);
    float *gnoise = malloc((size_t)(G * per) * sizeof(float));
    float *goff = off ? malloc((size_t)(G * t->C) * sizeof(float)) : NULL;
    if (!gts || !gdrop || !gnoise || (off && !goff)) {
      free(gts);
      free(gdrop);
      free(gnoise);
      free(goff);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    }
    sdw_loss_draw(rng, lc, t->sched.num_train_timesteps, G, t->C, per, gts, gdrop, gnoise, goff);
    memcpy(t->ts, gts + r * B, (size_t)B * sizeof *gts);
    memcpy(t->drop, gdrop + r * B, (size_t)B);
    memcpy(t->noise, gnoise + r * B * per, (size_t)(B * per) * sizeof(float));
    if (off) memcpy(t->offset, goff + r * B * t->C, (size_t)(B * t->C) * sizeof(float));
    free(gts);
    free(gdrop);
    free(gnoise);
    free(goff);
  }
  SDW_TRY(sdw_loss_prepare(&t->sched, lc, t->x0, t->noise, off ? t->offset : NULL, t->ts, B, t->C,
                           (int64_t)t->H * t->W, t->target, t->x_t));
  if (t->uncond) sdw_loss_caption_dropout(t->drop, B, t->uncond, (int64_t)t->L * t->D, t->context);
  for (int64_t i = 0; i < B; i++)
    t->tsf[i] = (float)t->ts[i];
  return sdw_loss_weights(&t->sched, lc, t->ts, B, t->w);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

sdw_status sdw_trainer_step(sdw_trainer *t, sdw_trainer_report *r) {
  if (sdw_trainer_done(t))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "the run has reached its last step");
  const double t0 = now_s();
  memset(r, 0, sizeof *r);
  SDW_TRY(sdw_unet_grads_zero(&t->grads));
  double loss = 0;
  for (int k = 0; k < t->cfg->grad_accum; k++) {
    const int64_t b = t->position * t->cfg->grad_accum + k;
    sdw_data_loader_indices(&t->loader, t->epoch, b, t->idx);
    SDW_TRY(prepare_batch(t, t->train, &t->rng, &t->loss_cfg, true));
    double l = 0;
    SDW_TRY(run_batch(t, &t->unet, true, &l));
    loss += l;
  }
  if (t->world > 1) {
    SDW_TRY(sdw_allreduce_mean_f32(t->ar, t->ctx, t->grads.params.flat,
                                   (int64_t)t->grads.params.total));
    SDW_TRY(sdw_allreduce_sum_f64(t->ar, &loss, 1));
    loss /= t->world;
  }
  const double lr = sdw_lr_schedule_at(&t->lr, t->step);
  sdw_optimizer_report rep;
  SDW_TRY(sdw_optimizer_step(&t->opt, &t->unet.params, t->grads.params.flat, lr, loss, &rep));
  t->last_lr = lr;
  t->nonfinite_run = rep.skipped ? t->nonfinite_run + 1 : 0;
  t->step++;
  t->position++;
  r->epoch_end = t->position == t->steps_per_epoch;
  if (r->epoch_end) {
    t->position = 0;
    t->epoch++;
  }
  const double dt = now_s() - t0;
  r->step = t->step;
  r->epoch = t->epoch;
  r->position = t->position;
  r->loss = loss;
  r->lr = lr;
  r->grad_norm = rep.grad_norm;
  r->skipped = rep.skipped;
  r->nonfinite_run = t->nonfinite_run;
  r->step_ms = dt * 1e3;
  r->img_per_s = dt > 0 ? (double)sdw_trainer_step_samples(t) / dt : 0;
  return SDW_OK;
}

sdw_status sdw_trainer_sync_flag(sdw_trainer *t, int *flag) {
  if (t->world == 1) return SDW_OK;
  return sdw_allreduce_broadcast(t->ar, flag, sizeof *flag, 0);
}

bool sdw_trainer_done(const sdw_trainer *t) { return t->step >= t->stop_at; }
int64_t sdw_trainer_global_step(const sdw_trainer *t) { return t->step; }
int64_t sdw_trainer_epoch(const sdw_trainer *t) { return t->epoch; }
int64_t sdw_trainer_total_steps(const sdw_trainer *t) { return t->stop_at; }
int64_t sdw_trainer_steps_per_epoch(const sdw_trainer *t) { return t->steps_per_epoch; }
int64_t sdw_trainer_nonfinite_run(const sdw_trainer *t) { return t->nonfinite_run; }
int sdw_trainer_rank(const sdw_trainer *t) { return t->rank; }
int sdw_trainer_world(const sdw_trainer *t) { return t->world; }
int64_t sdw_trainer_step_samples(const sdw_trainer *t) {
  return (int64_t)t->cfg->batch_size * t->cfg->grad_accum * t->world;
}
const sdw_params *sdw_trainer_params(const sdw_trainer *t) { return &t->unet.params; }
const char *sdw_trainer_unet_json(const sdw_trainer *t) { return t->unet_json; }

void sdw_trainer_buffers(const sdw_trainer *t, sdw_checkpoint_buffers *b) {
  b->model = t->unet.params.flat;
  b->ema = t->opt.ema;
  b->adam_m = t->opt.m;
  b->adam_v = t->opt.v;
}

sdw_status sdw_trainer_save(sdw_trainer *t, const char *path) {
  sdw_checkpoint_buffers b;
  sdw_trainer_buffers(t, &b);
  sdw_checkpoint_state s = {.step = t->step,
                            .epoch = t->epoch,
                            .position = t->position,
                            .optimizer_step = t->opt.step,
                            .ema_updates = t->opt.ema_updates,
                            .rng_seed = t->rng.seed,
                            .rng_offset = t->rng.offset,
                            .nonfinite_run = t->nonfinite_run,
                            .lr = t->last_lr,
                            .total_steps = t->total_steps,
                            .world_size = t->world};
  char *text = sdw_train_config_format(t->cfg);
  sdw_status st = sdw_checkpoint_write(path, &t->unet.params, &b, &s, text, t->unet_json);
  free(text);
  return st;
}

sdw_status sdw_trainer_restore(sdw_trainer *t, const sdw_safetensors *ck,
                               const sdw_checkpoint_state *s) {
  if (s->world_size != t->world)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s was written by %d ranks, this run has %d: the data order would differ",
                    sdw_safetensors_name(ck), s->world_size, t->world);
  if (s->position >= t->steps_per_epoch || s->position < 0 || s->epoch < 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "%s: position %lld is beyond this configuration's %lld steps per epoch "
                    "(batch_size or grad_accum changed?)",
                    sdw_safetensors_name(ck), (long long)s->position,
                    (long long)t->steps_per_epoch);
  sdw_checkpoint_buffers b;
  sdw_trainer_buffers(t, &b);
  if (!sdw_safetensors_metadata_get(ck, "sha256.ema")) b.ema = NULL;
  SDW_TRY(sdw_checkpoint_read(ck, &t->unet.params, &b));
  if (t->opt.ema && !b.ema) /* an EMA starts from the weights, as a new one does */
    memcpy(t->opt.ema, t->unet.params.flat, t->unet.params.total * sizeof(float));
  t->step = s->step;
  t->epoch = s->epoch;
  t->position = s->position;
  t->opt.step = s->optimizer_step;
  t->opt.ema_updates = s->ema_updates;
  t->rng.offset = s->rng_offset;
  t->nonfinite_run = s->nonfinite_run;
  t->last_lr = s->lr;
  return SDW_OK;
}

/* The UNet with the EMA weights (or the raw ones). */
static sdw_status eval_unet(sdw_trainer *t, bool ema, sdw_unet **out) {
  if (!ema || !t->opt.ema) {
    *out = &t->unet;
    return SDW_OK;
  }
  if (!t->ema_unet) {
    t->ema_unet = calloc(1, sizeof *t->ema_unet);
    if (!t->ema_unet) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    sdw_status st = sdw_unet_create(t->ema_unet, t->ctx, &t->unet.cfg);
    if (st != SDW_OK) {
      free(t->ema_unet);
      t->ema_unet = NULL;
      return st;
    }
  }
  memcpy(t->ema_unet->params.flat, t->opt.ema, t->unet.params.total * sizeof(float));
  *out = t->ema_unet;
  return SDW_OK;
}

sdw_status sdw_trainer_val_loss(sdw_trainer *t, double *loss) {
  if (!t->val) return sdw_fail(SDW_ERR_NOT_FOUND, "no val_data configured");
  sdw_unet *m;
  SDW_TRY(eval_unet(t, true, &m));
  /* fixed draws: plain loss weights per batch mean, no caption dropout */
  sdw_loss_config lc = t->loss_cfg;
  lc.cfg_dropout = 0;
  lc.grad_accum = 1;
  sdw_rng rng = sdw_rng_make(t->cfg->val_seed, VAL_SUBSEQUENCE);
  int64_t batches = sdw_latent_store_count(t->val) / t->B;
  if (batches == 0) /* do_validation skips NOT_FOUND: no loss rather than 0/0 */
    return sdw_fail(SDW_ERR_NOT_FOUND, "val_data holds fewer samples (%lld) than one batch (%lld)",
                    (long long)sdw_latent_store_count(t->val), (long long)t->B);
  if (t->cfg->val_batches > 0 && t->cfg->val_batches < batches) batches = t->cfg->val_batches;
  double sum = 0;
  for (int64_t b = 0; b < batches; b++) {
    for (int64_t i = 0; i < t->B; i++)
      t->idx[i] = b * t->B + i;
    SDW_TRY(prepare_batch(t, t->val, &rng, &lc, false));
    double l = 0;
    SDW_TRY(run_batch(t, m, false, &l));
    sum += l;
  }
  *loss = sum / (double)batches;
  return SDW_OK;
}

sdw_status sdw_trainer_sample(sdw_trainer *t, const char *const *prompts,
                              const char *const *negatives, const uint64_t *seeds, int count,
                              int steps, double cfg_scale, bool ema, const atomic_int *cancel,
                              uint8_t **rgb, int *width, int *height, char **infotext) {
  *rgb = NULL;
  if (!t->clip || !t->cfg->vae[0])
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "samples need a text encoder and a VAE: set text_encoder and vae (a VAE, or "
                    "pixels for a pixel-space model) in the config");
  const bool pixels = sdw_train_config_pixels(t->cfg);
  if (!t->tok)
    SDW_TRY(sdw_tokenizer_load(t->cfg->vocab[0] ? t->cfg->vocab : NULL, SDW_TOKENIZER_HF, &t->tok));
  if (!pixels && !t->vae) {
    t->vae = calloc(1, sizeof *t->vae);
    if (!t->vae) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "trainer: out of memory");
    sdw_status st = sdw_vae_open(t->vae, t->ctx, t->cfg->vae, NULL, SDW_VAE_DECODER);
    if (st != SDW_OK) {
      free(t->vae);
      t->vae = NULL;
      sdw_error_prefix("vae");
      return st;
    }
  }
  sdw_unet *m;
  SDW_TRY(eval_unet(t, ema, &m));
  /* pixel space: no VAE, txt2img maps the final x0 to RGB8 itself */
  sdw_txt2img_parts parts = {
      .tokenizer = t->tok, .text_encoder = t->clip, .unet = m, .vae = pixels ? NULL : t->vae};
  sdw_txt2img *p = NULL;
  SDW_TRY(sdw_txt2img_create(t->ctx, &parts, &p));
  sdw_txt2img_set_prediction(p, prediction_type(t->cfg));
  sdw_txt2img_set_identity(p, ema ? "sdw-train-ema" : "sdw-train", NULL);
  sdw_txt2img_settings s = sdw_txt2img_settings_default();
  const int f = pixels ? 1 : sdw_vae_downscale(&t->vae->cfg);
  s.width = t->W * f;
  s.height = t->H * f;
  s.steps = steps;
  s.cfg_scale = cfg_scale;
  sdw_txt2img_job *jobs = calloc((size_t)count, sizeof *jobs);
  uint8_t *out = malloc((size_t)count * s.width * s.height * 3);
  sdw_status st = jobs && out ? SDW_OK : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  for (int i = 0; i < count && st == SDW_OK; i++)
    jobs[i] = (sdw_txt2img_job){prompts[i], negatives ? negatives[i] : "", seeds[i]};
  if (st == SDW_OK) st = sdw_txt2img_check(p, &s);
  sdw_txt2img_hooks hooks = {.cancel = cancel};
  if (st == SDW_OK) st = sdw_txt2img_generate(p, &s, jobs, count, &hooks, out);
  for (int i = 0; i < count && st == SDW_OK && infotext; i++) {
    size_t n = sdw_txt2img_infotext(p, &s, &jobs[i], NULL, 0);
    infotext[i] = malloc(n + 1);
    if (infotext[i]) sdw_txt2img_infotext(p, &s, &jobs[i], infotext[i], n + 1);
  }
  sdw_txt2img_free(p);
  free(jobs);
  if (st != SDW_OK) {
    free(out);
    return st;
  }
  *rgb = out;
  *width = s.width;
  *height = s.height;
  return SDW_OK;
}
