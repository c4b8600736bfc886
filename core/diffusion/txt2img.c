/* Text to image: the pipeline object (see txt2img.h). Loading from model
 * files lives in txt2img_open.c. */
#include "core/diffusion/txt2img.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/rng.h"
#include "core/base/sha256.h"
#include "core/base/torch_rng.h"
#include "core/diffusion/infotext.h"

/* Activations of one UNet or VAE call come from an arena that only reserves
 * address space (pages are committed as touched): a full-size SD UNet at
 * 1024x1024 under guidance stays far below this. */
#define TXT2IMG_ARENA_BYTES ((size_t)64 << 30)

struct sdw_txt2img {
  sdw_ctx *ctx; /* borrowed */
  sdw_tokenizer *tok;
  sdw_clip_text *te;
  sdw_unet *unet;
  sdw_vae *vae;
  bool own_tok, own_te, own_unet, own_vae;
  /* low memory: released[part] says the part's weights are not loaded */
  sdw_txt2img_reload_fn reload;
  void *reload_user;
  void (*reload_user_free)(void *);
  bool released[3];
  sdw_noise_schedule schedule;
  sdw_prediction_type prediction;
  sdw_arena *arena;
  char *name;
  /* the model hash, computed by a background thread */
  char *hash_path;
  pthread_t hash_thread;
  bool hash_running;
  bool hash_ok;
  char hash[11];
};

/* --- names ---------------------------------------------------------------------------- */

static const char *const rng_names[] = {"philox", "torch-cpu"};
static const char *const flavor_names[] = {"auto", "seed", "diffusers"};

bool sdw_txt2img_rng_from_name(const char *name, sdw_txt2img_rng *out) {
  for (int i = 0; i < 2; i++)
    if (strcmp(name, rng_names[i]) == 0) {
      *out = (sdw_txt2img_rng)i;
      return true;
    }
  return false;
}

const char *sdw_txt2img_rng_name(sdw_txt2img_rng rng) {
  return (unsigned)rng < 2 ? rng_names[rng] : "unknown";
}

bool sdw_txt2img_flavor_from_name(const char *name, sdw_txt2img_flavor *out) {
  for (int i = 0; i < 3; i++)
    if (strcmp(name, flavor_names[i]) == 0) {
      *out = (sdw_txt2img_flavor)i;
      return true;
    }
  return false;
}

const char *sdw_txt2img_flavor_name(sdw_txt2img_flavor flavor) {
  return (unsigned)flavor < 3 ? flavor_names[flavor] : "unknown";
}

sdw_txt2img_settings sdw_txt2img_settings_default(void) {
  sdw_txt2img_settings s;
  memset(&s, 0, sizeof s);
  s.width = s.height = 512;
  s.steps = 30;
  s.cfg_scale = 7.5;
  s.sampler = SDW_SAMPLER_DDIM;
  s.karras = false;
  s.eta = 0.0;
  s.flavor = SDW_TXT2IMG_FLAVOR_AUTO;
  s.rng = SDW_TXT2IMG_RNG_PHILOX;
  s.text_mask = -1;
  return s;
}

/* --- building ------------------------------------------------------------------------- */

sdw_status sdw_txt2img_create(sdw_ctx *ctx, const sdw_txt2img_parts *parts, sdw_txt2img **out) {
  *out = NULL;
  SDW_ASSERT(ctx && parts && parts->tokenizer && parts->text_encoder && parts->unet);
  const sdw_unet_config *u = &parts->unet->cfg;
  const sdw_clip_text_config *t = &parts->text_encoder->config;
  if (!parts->vae) {
    /* pixel space: the UNet works on the RGB image itself */
    if (u->in_channels != 3 || u->out_channels != 3)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "a pixel-space model needs a UNet of 3 channels in and out, not %d and %d "
                      "— give the model's VAE",
                      u->in_channels, u->out_channels);
  } else if (!(parts->vae->parts & SDW_VAE_DECODER))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "the VAE was loaded without its decoder");
  if (t->hidden_size != u->context_dim)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the text encoder gives %lld-wide embeddings but the UNet's cross-attention "
                    "takes %d — use a text encoder that matches the UNet",
                    (long long)t->hidden_size, u->context_dim);
  if (parts->vae && (parts->vae->cfg.latent_channels != u->in_channels ||
                     parts->vae->cfg.latent_channels != u->out_channels))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the VAE has %d latent channels but the UNet takes %d and gives %d — use a "
                    "VAE that matches the UNet",
                    parts->vae->cfg.latent_channels, u->in_channels, u->out_channels);
  sdw_txt2img *p = calloc(1, sizeof *p);
  if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  p->ctx = ctx;
  p->tok = parts->tokenizer;
  p->te = parts->text_encoder;
  p->unet = parts->unet;
  p->vae = parts->vae;
  /* SD 1.x and the seed both train on scaled_linear 0.00085 .. 0.012 over
   * 1000 steps (SEED.md 1.10), held in float32 as torch does. */
  sdw_schedule_config sc = sdw_schedule_config_sd();
  sdw_status st = sdw_noise_schedule_init(&p->schedule, &sc);
  if (st == SDW_OK) st = sdw_arena_create(&p->arena, "txt2img activations", TXT2IMG_ARENA_BYTES);
  if (st != SDW_OK) {
    sdw_txt2img_free(p);
    return st;
  }
  *out = p;
  return SDW_OK;
}

void sdw_txt2img_own_parts(sdw_txt2img *p, bool tokenizer, bool text_encoder, bool unet, bool vae) {
  p->own_tok = tokenizer;
  p->own_te = text_encoder;
  p->own_unet = unet;
  p->own_vae = vae;
}

void sdw_txt2img_part_release(sdw_txt2img_part part, void *model) {
  switch (part) {
  case SDW_TXT2IMG_PART_TEXT_ENCODER: {
    sdw_clip_text *m = model;
    const sdw_clip_text_config cfg = m->config;
    sdw_clip_text_free(m);
    m->config = cfg;
    break;
  }
  case SDW_TXT2IMG_PART_UNET: {
    sdw_unet *m = model;
    const sdw_unet_config cfg = m->cfg;
    sdw_unet_free(m);
    m->cfg = cfg;
    break;
  }
  case SDW_TXT2IMG_PART_VAE: {
    sdw_vae *m = model;
    const sdw_vae_config cfg = m->cfg;
    const int parts = m->parts;
    sdw_vae_free(m);
    m->cfg = cfg;
    m->parts = parts;
    break;
  }
  }
}

void sdw_txt2img_set_low_memory(sdw_txt2img *p, sdw_txt2img_reload_fn reload, void *user,
                                void (*user_free)(void *)) {
  if (p->reload_user_free) p->reload_user_free(p->reload_user);
  p->reload = reload;
  p->reload_user = user;
  p->reload_user_free = user_free;
}

void sdw_txt2img_mark_released(sdw_txt2img *p, sdw_txt2img_part part) { p->released[part] = true; }

bool sdw_txt2img_low_memory(const sdw_txt2img *p) { return p->reload != NULL; }

static void **part_slot(sdw_txt2img *p, sdw_txt2img_part part, bool *owned) {
  switch (part) {
  case SDW_TXT2IMG_PART_TEXT_ENCODER: *owned = p->own_te; return (void **)&p->te;
  case SDW_TXT2IMG_PART_UNET: *owned = p->own_unet; return (void **)&p->unet;
  default: *owned = p->own_vae; return (void **)&p->vae;
  }
}

/* Low memory: the part's weights leave memory after use (owned parts only). */
static void part_done(sdw_txt2img *p, sdw_txt2img_part part) {
  bool owned;
  void **slot = part_slot(p, part, &owned);
  if (!p->reload || !owned || !*slot || p->released[part]) return;
  sdw_txt2img_part_release(part, *slot);
  p->released[part] = true;
}

/* Low memory: the part is opened again before use. */
static sdw_status part_needed(sdw_txt2img *p, sdw_txt2img_part part) {
  if (!p->released[part]) return SDW_OK;
  bool owned;
  void **slot = part_slot(p, part, &owned);
  void *fresh = NULL;
  SDW_TRY(p->reload(p->reload_user, p->ctx, part, &fresh));
  free(*slot); /* already released: only the struct is left */
  *slot = fresh;
  p->released[part] = false;
  return SDW_OK;
}

static void *hash_main(void *arg) {
  sdw_txt2img *p = arg;
  unsigned char digest[32];
  char hex[65];
  if (sdw_sha256_file(p->hash_path, digest) == SDW_OK) {
    sdw_sha256_hex(digest, hex);
    memcpy(p->hash, hex, 10);
    p->hash[10] = '\0';
    p->hash_ok = true;
  }
  return NULL;
}

static void hash_join(sdw_txt2img *p) {
  if (!p->hash_running) return;
  pthread_join(p->hash_thread, NULL);
  p->hash_running = false;
}

sdw_status sdw_txt2img_set_identity(sdw_txt2img *p, const char *name, const char *hash_path) {
  hash_join(p);
  free(p->name);
  free(p->hash_path);
  p->name = p->hash_path = NULL;
  p->hash_ok = false;
  if (name && !(p->name = strdup(name))) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  if (!hash_path) return SDW_OK;
  if (!(p->hash_path = strdup(hash_path))) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  if (pthread_create(&p->hash_thread, NULL, hash_main, p) != 0) {
    hash_main(p); /* no thread to be had: hash now */
    return SDW_OK;
  }
  p->hash_running = true;
  return SDW_OK;
}

void sdw_txt2img_free(sdw_txt2img *p) {
  if (!p) return;
  hash_join(p);
  if (p->reload_user_free) p->reload_user_free(p->reload_user);
  if (p->own_unet && p->unet) {
    sdw_unet_free(p->unet);
    free(p->unet);
  }
  if (p->own_vae && p->vae) {
    sdw_vae_free(p->vae);
    free(p->vae);
  }
  if (p->own_te && p->te) {
    sdw_clip_text_free(p->te);
    free(p->te);
  }
  if (p->own_tok) sdw_tokenizer_free(p->tok);
  sdw_noise_schedule_free(&p->schedule);
  sdw_arena_destroy(p->arena);
  free(p->name);
  free(p->hash_path);
  free(p);
}

/* --- what the model is ------------------------------------------------------------------ */

const sdw_unet *sdw_txt2img_unet(const sdw_txt2img *p) { return p->unet; }

bool sdw_txt2img_is_seed_model(const sdw_txt2img *p) {
  return p->unet->cfg.topology == SDW_UNET_SEED;
}

/* The VAE's downscale; 1 in pixel space. */
static int vae_factor(const sdw_txt2img *p) { return p->vae ? sdw_vae_downscale(&p->vae->cfg) : 1; }

int sdw_txt2img_size_multiple(const sdw_txt2img *p) {
  return vae_factor(p) << (p->unet->cfg.levels - 1);
}

bool sdw_txt2img_is_pixel_space(const sdw_txt2img *p) { return p->vae == NULL; }

void sdw_txt2img_set_prediction(sdw_txt2img *p, sdw_prediction_type type) { p->prediction = type; }

sdw_prediction_type sdw_txt2img_prediction(const sdw_txt2img *p) { return p->prediction; }

const char *sdw_txt2img_model_name(const sdw_txt2img *p) { return p->name; }

const char *sdw_txt2img_model_hash(sdw_txt2img *p) {
  hash_join(p);
  return p->hash_ok ? p->hash : NULL;
}

sdw_status sdw_txt2img_token_count(sdw_txt2img *p, const char *text, size_t *count) {
  return sdw_tokenizer_encode_raw(p->tok, text, strlen(text), NULL, 0, count);
}

/* 1234567 -> "1,234,567" */
static void group_digits(int64_t v, char *out, size_t size) {
  char raw[32];
  snprintf(raw, sizeof raw, "%lld", (long long)v);
  size_t n = strlen(raw), o = 0;
  for (size_t i = 0; i < n && o + 2 < size; i++) {
    if (i > 0 && (n - i) % 3 == 0) out[o++] = ',';
    out[o++] = raw[i];
  }
  out[o] = '\0';
}

const char *sdw_txt2img_describe(const sdw_txt2img *p, char *buf, size_t size) {
  char count[32];
  int64_t params = sdw_unet_param_count(p->unet);
  if (params == 0) /* released (low memory): count from the configuration */
    sdw_unet_count_params(&p->unet->cfg, &params);
  group_digits(params, count, sizeof count);
  char vae[32];
  if (p->vae)
    snprintf(vae, sizeof vae, "VAE f=%d", vae_factor(p));
  else
    snprintf(vae, sizeof vae, "pixel space");
  snprintf(buf, size, "%s UNet, %s parameters; CLIP text %lld wide, %lld layers; %s",
           sdw_txt2img_is_seed_model(p) ? "seed" : "SD 1.x", count,
           (long long)p->te->config.hidden_size, (long long)p->te->config.num_layers, vae);
  return buf;
}

/* --- settings --------------------------------------------------------------------------- */

sdw_txt2img_flavor sdw_txt2img_effective_flavor(const sdw_txt2img *p,
                                                const sdw_txt2img_settings *s) {
  if (s->flavor != SDW_TXT2IMG_FLAVOR_AUTO) return s->flavor;
  return sdw_txt2img_is_seed_model(p) ? SDW_TXT2IMG_FLAVOR_SEED : SDW_TXT2IMG_FLAVOR_DIFFUSERS;
}

static sdw_sampler_config sampler_config(const sdw_txt2img *p, const sdw_txt2img_settings *s) {
  sdw_sampler_config sc = sdw_sampler_config_make(s->sampler, s->steps);
  if (sdw_txt2img_effective_flavor(p, s) == SDW_TXT2IMG_FLAVOR_SEED)
    sc.ddim = sdw_ddim_config_seed();
  if (!p->vae && sc.ddim.flavor == SDW_DDIM_SEED) sc.ddim.clamp_pred_x0 = true;
  sc.eta = s->eta;
  sc.euler.karras = s->karras;
  sc.dpmpp.karras = s->karras;
  return sc;
}

/* Sets the scheduler up once, to refuse what it refuses (e.g. diffusers' DDIM
 * at 1000 steps, whose offset timestep 1000 does not exist) before any work. */
static sdw_status check_scheduler(const sdw_txt2img *p, const sdw_txt2img_settings *s) {
  const sdw_sampler_config sc = sampler_config(p, s);
  sdw_status st;
  switch (sc.kind) {
  case SDW_SAMPLER_DDIM: {
    sdw_ddim d;
    memset(&d, 0, sizeof d);
    st = sdw_ddim_init(&d, &p->schedule, &sc.ddim, sc.steps);
    sdw_ddim_free(&d);
    break;
  }
  case SDW_SAMPLER_EULER: {
    sdw_euler e;
    memset(&e, 0, sizeof e);
    st = sdw_euler_init(&e, &p->schedule, &sc.euler, sc.steps);
    sdw_euler_free(&e);
    break;
  }
  default: {
    sdw_dpmpp d;
    memset(&d, 0, sizeof d);
    st = sdw_dpmpp_init(&d, &p->schedule, &sc.dpmpp, sc.steps, 1);
    sdw_dpmpp_free(&d);
    break;
  }
  }
  if (st != SDW_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s — use fewer steps or another sampler", msg);
  }
  return SDW_OK;
}

sdw_status sdw_txt2img_check(const sdw_txt2img *p, const sdw_txt2img_settings *s) {
  const int m = sdw_txt2img_size_multiple(p);
  if (s->width < m || s->height < m || s->width % m || s->height % m || s->width > 8192 ||
      s->height > 8192)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the size %dx%d does not fit this model — width and height must be "
                    "multiples of %d (at most 8192)",
                    s->width, s->height, m);
  if (s->steps < 1 || s->steps > p->schedule.num_train_timesteps)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%d steps — give 1 to %d", s->steps,
                    p->schedule.num_train_timesteps);
  if (!isfinite(s->cfg_scale) || s->cfg_scale < 0 || s->cfg_scale > 1000)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "CFG scale %g — give a number from 0 to 1000",
                    s->cfg_scale);
  if (!isfinite(s->eta) || s->eta < 0 || s->eta > 1000)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "eta %g — give a number from 0 (deterministic) up",
                    s->eta);
  if (s->eta != 0 && s->sampler != SDW_SAMPLER_DDIM)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "eta applies to the DDIM sampler only — drop it or use DDIM");
  if (s->karras && s->sampler == SDW_SAMPLER_DDIM)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "Karras sigmas apply to euler and dpmpp-2m — drop it or pick one of those");
  if (s->karras && s->steps < 2)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "Karras sigmas need at least 2 steps");
  if ((unsigned)s->rng > SDW_TXT2IMG_RNG_TORCH_CPU || (unsigned)s->sampler > SDW_SAMPLER_DPMPP_2M ||
      (unsigned)s->flavor > SDW_TXT2IMG_FLAVOR_DIFFUSERS)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "unknown sampler, flavour or RNG");
  return check_scheduler(p, s);
}

/* --- noise -------------------------------------------------------------------------------- */

void sdw_txt2img_noise(sdw_txt2img_rng rng, uint64_t seed, float *out, int64_t numel) {
  if (rng == SDW_TXT2IMG_RNG_TORCH_CPU) {
    sdw_torch_generator g;
    sdw_torch_generator_seed(&g, seed, SDW_TORCH_NORMAL_AVX2);
    sdw_torch_randn(&g, out, numel);
  } else {
    sdw_rng_fill_normal(out, (size_t)numel, seed, 0, 0);
  }
}

/* Per-image streams of one generate call, for DDIM's variance noise. */
typedef struct noise_state {
  sdw_txt2img_rng rng;
  int count;
  int64_t per_image;
  sdw_torch_generator *torch; /* [count], after the starting noise */
  sdw_rng *philox;            /* [count], subsequence 1 */
} noise_state;

static sdw_status eta_noise(void *user, float *out, int64_t n) {
  noise_state *s = user;
  SDW_ASSERT(n == s->per_image * s->count);
  for (int i = 0; i < s->count; i++) {
    float *dst = out + (int64_t)i * s->per_image;
    if (s->rng == SDW_TXT2IMG_RNG_TORCH_CPU)
      sdw_torch_randn(&s->torch[i], dst, s->per_image);
    else
      sdw_rng_normal(&s->philox[i], dst, (size_t)s->per_image);
  }
  return SDW_OK;
}

/* --- the UNet as a denoiser ----------------------------------------------------------------- */

typedef struct unet_call {
  sdw_txt2img *p;
  int count;         /* N images */
  int64_t per_image; /* latent values per image */
  int64_t channels, h, w;
  float *context; /* backend [2N, T, D]: uncond rows first */
  int64_t tokens, width;
  float *x_dev, *t_dev, *out_dev; /* backend [2N, C, h, w], [2N], [2N, C, h, w] */
  float *t_host;                  /* [2N] */
} unet_call;

/* eps = unet(x_in, t, context): batch 2N takes the whole context (the
 * guided pass), batch N its conditional half (CFG scale 1). */
static sdw_status unet_denoise(void *user, const sdw_tensor *x_in, double timestep,
                               sdw_tensor *eps) {
  unet_call *c = user;
  sdw_ctx *ctx = c->p->ctx;
  const int64_t n = x_in->shape[0];
  SDW_ASSERT(n == c->count || n == 2 * (int64_t)c->count);
  const size_t bytes = (size_t)(n * c->per_image) * sizeof(float);
  SDW_TRY(ctx->ops->upload(ctx, c->x_dev, x_in->data, bytes));
  for (int64_t i = 0; i < n; i++)
    c->t_host[i] = (float)timestep;
  SDW_TRY(ctx->ops->upload(ctx, c->t_dev, c->t_host, (size_t)n * sizeof(float)));
  const sdw_device dev = {ctx->ops->device, 0};
  float *context = c->context;
  if (n == c->count) context += (int64_t)c->count * c->tokens * c->width; /* the cond half */
  sdw_tensor x = sdw_tensor_4d(c->x_dev, SDW_F32, n, c->channels, c->h, c->w);
  sdw_tensor t = sdw_tensor_1d(c->t_dev, SDW_F32, n);
  sdw_tensor cx = sdw_tensor_3d(context, SDW_F32, n, c->tokens, c->width);
  sdw_tensor o = sdw_tensor_4d(c->out_dev, SDW_F32, n, c->channels, c->h, c->w);
  x.device = t.device = cx.device = o.device = dev;
  SDW_TRY(sdw_unet_forward(c->p->unet, c->p->arena, &x, &t, &cx, &o));
  SDW_TRY(ctx->ops->download(ctx, eps->data, c->out_dev, bytes));
  /* v or x0 models: the same affine map for both CFG halves, so guiding the
   * converted outputs equals converting the guided output */
  if (c->p->prediction != SDW_PREDICT_EPSILON)
    sdw_prediction_to_epsilon(c->p->prediction,
                              sdw_noise_schedule_acp_at(&c->p->schedule, timestep), x_in->data,
                              eps->data, n * c->per_image, eps->data);
  return SDW_OK;
}

/* --- generate --------------------------------------------------------------------------------- */

void sdw_txt2img_to_rgb8(const float *image, int64_t height, int64_t width, uint8_t *rgb) {
  const int64_t plane = height * width;
  for (int64_t i = 0; i < plane; i++)
    for (int c = 0; c < 3; c++) {
      /* diffusers: (x / 2 + 0.5).clamp(0, 1) in float32, then numpy
       * (x * 255).round() (half to even: rintf in the default mode). */
      float v = image[c * plane + i] / 2.0f + 0.5f;
      v = !(v >= 0.0f) ? 0.0f : v > 1.0f ? 1.0f : v; /* NaN -> 0 */
      rgb[i * 3 + c] = (uint8_t)rintf(v * 255.0f);
    }
}

/* Everything one generate call allocates. */
typedef struct gen_state {
  int32_t *ids, *mask; /* host [2N, 77] */
  float *context;      /* backend [2N, 77, D] */
  float *latents;      /* host [N, C, h, w] */
  float *x_dev, *t_dev, *out_dev, *t_host;
  float *image_dev, *image_host; /* [N, 3, H, W] */
  sdw_torch_generator *torch;
  sdw_rng *philox;
  sdw_cfg_denoiser cfg;
} gen_state;

static void gen_free(sdw_ctx *ctx, gen_state *g) {
  void *dev[] = {g->context, g->x_dev, g->t_dev, g->out_dev, g->image_dev};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    if (dev[i]) ctx->ops->free(ctx, dev[i]);
  free(g->ids);
  free(g->mask);
  free(g->latents);
  free(g->t_host);
  free(g->image_host);
  free(g->torch);
  free(g->philox);
  sdw_cfg_denoiser_free(&g->cfg);
}

static sdw_status dev_alloc(sdw_ctx *ctx, size_t bytes, float **out) {
  return ctx->ops->alloc(ctx, bytes ? bytes : 4, (void **)out);
}

static bool cancelled(const sdw_txt2img_hooks *hooks) {
  return hooks && hooks->cancel && atomic_load(hooks->cancel);
}

static sdw_status encode_text(sdw_txt2img *p, const sdw_txt2img_settings *s,
                              const sdw_txt2img_job *jobs, int count, gen_state *g) {
  const int64_t rows = 2 * (int64_t)count, T = SDW_CLIP_CONTEXT, D = p->te->config.hidden_size;
  if (T > p->te->config.max_positions)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the text encoder takes %lld positions, fewer than the tokenizer's %lld",
                    (long long)p->te->config.max_positions, (long long)T);
  g->ids = malloc((size_t)(rows * T) * sizeof(int32_t));
  g->mask = malloc((size_t)(rows * T) * sizeof(int32_t));
  if (!g->ids || !g->mask) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  for (int64_t r = 0; r < rows; r++) {
    /* rows 0..N-1: the negatives (the unconditional half), N..2N-1: the prompts */
    const sdw_txt2img_job *j = &jobs[r % count];
    const char *text = r < count ? (j->negative ? j->negative : "") : j->prompt;
    SDW_TRY(sdw_tokenizer_encode(p->tok, text, strlen(text), g->ids + r * T, g->mask + r * T));
  }
  SDW_TRY(dev_alloc(p->ctx, (size_t)(rows * T * D) * sizeof(float), &g->context));
  sdw_tensor ids = sdw_tensor_2d(g->ids, SDW_I32, rows, T);
  sdw_tensor mask = sdw_tensor_2d(g->mask, SDW_I32, rows, T);
  sdw_tensor last = sdw_tensor_3d(g->context, SDW_F32, rows, T, D);
  last.device = (sdw_device){p->ctx->ops->device, 0};
  sdw_clip_text_outputs out = {.last_hidden_state = &last};
  bool use_mask = s->text_mask < 0 ? sdw_txt2img_is_seed_model(p) : s->text_mask != 0;
  return sdw_clip_text_forward(p->te, &ids, use_mask ? &mask : NULL, &out);
}

static sdw_status run_generate(sdw_txt2img *p, const sdw_txt2img_settings *s,
                               const sdw_txt2img_job *jobs, int count,
                               const sdw_txt2img_hooks *hooks, uint8_t *rgb, gen_state *g) {
  sdw_ctx *ctx = p->ctx;
  /* a copy: in low-memory mode the UNet struct is replaced when reopened */
  const sdw_unet_config ucfg = p->unet->cfg, *u = &ucfg;
  const int f = vae_factor(p);
  const int64_t N = count, C = u->in_channels, h = s->height / f, w = s->width / f;
  const int64_t per_image = C * h * w;

  /* 1. text */
  SDW_TRY(part_needed(p, SDW_TXT2IMG_PART_TEXT_ENCODER));
  SDW_TRY(encode_text(p, s, jobs, count, g));
  const int64_t text_width = p->te->config.hidden_size;
  part_done(p, SDW_TXT2IMG_PART_TEXT_ENCODER);
  SDW_TRY(part_needed(p, SDW_TXT2IMG_PART_UNET));

  /* 2. starting noise, one stream per image */
  g->latents = malloc((size_t)(N * per_image) * sizeof(float));
  if (!g->latents) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the latents");
  noise_state ns = {s->rng, count, per_image, NULL, NULL};
  const bool eta_noise_needed = s->sampler == SDW_SAMPLER_DDIM && s->eta > 0;
  if (eta_noise_needed) {
    if (s->rng == SDW_TXT2IMG_RNG_TORCH_CPU)
      ns.torch = g->torch = calloc((size_t)count, sizeof *g->torch);
    else
      ns.philox = g->philox = calloc((size_t)count, sizeof *g->philox);
    if (!g->torch && !g->philox) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  }
  for (int i = 0; i < count; i++) {
    float *dst = g->latents + i * per_image;
    if (s->rng == SDW_TXT2IMG_RNG_TORCH_CPU && eta_noise_needed) {
      /* the same generator goes on to give the variance noise */
      sdw_torch_generator_seed(&g->torch[i], jobs[i].seed, SDW_TORCH_NORMAL_AVX2);
      sdw_torch_randn(&g->torch[i], dst, per_image);
    } else {
      sdw_txt2img_noise(s->rng, jobs[i].seed, dst, per_image);
      if (eta_noise_needed) g->philox[i] = sdw_rng_make(jobs[i].seed, 1);
    }
  }

  /* 3. the sampling loop around the guided UNet */
  const int64_t rows = 2 * N;
  SDW_TRY(dev_alloc(ctx, (size_t)(rows * per_image) * sizeof(float), &g->x_dev));
  SDW_TRY(dev_alloc(ctx, (size_t)(rows * per_image) * sizeof(float), &g->out_dev));
  SDW_TRY(dev_alloc(ctx, (size_t)rows * sizeof(float), &g->t_dev));
  if (!(g->t_host = malloc((size_t)rows * sizeof(float))))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  unet_call call = {.p = p,
                    .count = count,
                    .per_image = per_image,
                    .channels = C,
                    .h = h,
                    .w = w,
                    .context = g->context,
                    .tokens = SDW_CLIP_CONTEXT,
                    .width = text_width,
                    .x_dev = g->x_dev,
                    .t_dev = g->t_dev,
                    .out_dev = g->out_dev,
                    .t_host = g->t_host};
  sdw_cfg_denoiser_init(&g->cfg, unet_denoise, &call, s->cfg_scale);
  const sdw_sampler_config sc = sampler_config(p, s);
  sdw_sampler_io io = {.denoise = sdw_cfg_denoise,
                       .denoise_user = &g->cfg,
                       .noise = eta_noise_needed ? eta_noise : NULL,
                       .noise_user = &ns,
                       .progress = hooks ? hooks->progress : NULL,
                       .progress_user = hooks ? hooks->progress_user : NULL,
                       .cancel = hooks ? hooks->cancel : NULL};
  sdw_tensor latents = sdw_tensor_4d(g->latents, SDW_F32, N, C, h, w);
  SDW_TRY(sdw_sample(&p->schedule, &sc, &io, &latents));
  if (cancelled(hooks)) return sdw_fail(SDW_ERR_INTERRUPTED, "stopped before decoding");
  part_done(p, SDW_TXT2IMG_PART_UNET);

  const int64_t H = s->height, W = s->width, image_values = 3 * H * W;
  if (!p->vae) { /* pixel space: the sample is the image (scaling factor 1) */
    for (int64_t i = 0; i < N; i++)
      sdw_txt2img_to_rgb8(g->latents + i * image_values, H, W, rgb + i * H * W * 3);
    return SDW_OK;
  }

  /* 4. decode: z / scaling_factor as a division, as diffusers and the seed do */
  const float scale = p->vae->cfg.scaling_factor;
  for (int64_t i = 0; i < N * per_image; i++)
    g->latents[i] = g->latents[i] / scale;
  SDW_TRY(ctx->ops->upload(ctx, g->x_dev, g->latents, (size_t)(N * per_image) * sizeof(float)));
  SDW_TRY(dev_alloc(ctx, (size_t)(N * image_values) * sizeof(float), &g->image_dev));
  if (!(g->image_host = malloc((size_t)(N * image_values) * sizeof(float))))
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the images");
  const sdw_device dev = {ctx->ops->device, 0};
  sdw_tensor z = sdw_tensor_4d(g->x_dev, SDW_F32, N, C, h, w);
  sdw_tensor image = sdw_tensor_4d(g->image_dev, SDW_F32, N, p->vae->cfg.out_channels, H, W);
  z.device = image.device = dev;
  if (p->vae->cfg.out_channels != 3)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "the VAE decodes %d channels; images need 3",
                    p->vae->cfg.out_channels);
  SDW_TRY(part_needed(p, SDW_TXT2IMG_PART_VAE));
  SDW_TRY(sdw_vae_decode(p->vae, p->arena, &z, &image));
  part_done(p, SDW_TXT2IMG_PART_VAE);
  SDW_TRY(ctx->ops->download(ctx, g->image_host, g->image_dev,
                             (size_t)(N * image_values) * sizeof(float)));
  for (int64_t i = 0; i < N; i++)
    sdw_txt2img_to_rgb8(g->image_host + i * image_values, H, W, rgb + i * H * W * 3);
  return SDW_OK;
}

sdw_status sdw_txt2img_generate(sdw_txt2img *p, const sdw_txt2img_settings *s,
                                const sdw_txt2img_job *jobs, int count,
                                const sdw_txt2img_hooks *hooks, uint8_t *rgb) {
  SDW_ASSERT(count >= 1 && jobs && rgb);
  for (int i = 0; i < count; i++)
    SDW_ASSERT(jobs[i].prompt != NULL);
  SDW_TRY(sdw_txt2img_check(p, s));
  if (cancelled(hooks)) return sdw_fail(SDW_ERR_INTERRUPTED, "stopped before sampling");
  gen_state g;
  memset(&g, 0, sizeof g);
  size_t mark = sdw_arena_mark(p->arena);
  sdw_status st = run_generate(p, s, jobs, count, hooks, rgb, &g);
  sdw_arena_reset_to(p->arena, mark);
  gen_free(p->ctx, &g);
  return st;
}

/* --- infotext -----------------------------------------------------------------------------------
 */

size_t sdw_txt2img_infotext(sdw_txt2img *p, const sdw_txt2img_settings *s,
                            const sdw_txt2img_job *job, char *buf, size_t size) {
  static const char *const a1111_sampler[] = {"DDIM", "Euler", "DPM++ 2M"};
  sdw_infotext info;
  memset(&info, 0, sizeof info);
  info.prompt = job->prompt;
  info.negative = job->negative;
  info.steps = s->steps;
  info.sampler = (unsigned)s->sampler < 3 ? a1111_sampler[s->sampler] : "DDIM";
  info.schedule_type = s->karras ? "Karras" : NULL;
  info.cfg_scale = s->cfg_scale;
  info.seed = job->seed;
  info.width = s->width;
  info.height = s->height;
  info.model_hash = sdw_txt2img_model_hash(p);
  info.model = p->name;
  info.eta = s->eta;
  /* A1111 calls the torch CPU generator "CPU" (torch.manual_seed(seed) then
   * torch.randn of the latent shape on the CPU: the same noise), so its
   * "send to txt2img" picks the same starting noise; philox is sdw's own. */
  info.rng = s->rng == SDW_TXT2IMG_RNG_TORCH_CPU ? "CPU" : "philox";
  info.version = "sdw " SDW_VERSION;
  return sdw_infotext_format(&info, buf, size);
}
