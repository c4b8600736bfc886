/* Text to image: the whole Stable Diffusion sampling pipeline as one object,
 * shared by `sdw sample`, the trainer's validation grids and the workbench.
 *
 * It holds the tokenizer, the CLIP text encoder, the UNet and the VAE (either
 * opened from model files, and then owned, or borrowed from a caller that
 * already has them, e.g. the trainer's EMA UNet; a pixel-space model has no
 * VAE) and turns a batch of
 * (prompt, negative prompt, seed) jobs plus settings into RGB8 images:
 *
 *   ids      = tokenize([negative_0..negative_{N-1}, prompt_0..prompt_{N-1}])
 *   context  = text_encoder(ids [, attention mask])          [2N, 77, D]
 *   x        = noise(seed_i) per image                       [N, C, H/f, W/f]
 *   x        = sampler loop (sampler.h) over the guided denoiser
 *              eps = eps_u + cfg (eps_c - eps_u), one UNet call on [x; x]
 *   image    = vae.decode(x / scaling_factor)                [N, 3, H, W]
 *   rgb      = round(clamp(image / 2 + 0.5, 0, 1) * 255)     (diffusers'
 *              numpy_to_pil, float32 then round half to even)
 *
 * Model conventions follow the UNet's topology:
 *   seed UNets (the seed project, SEED.md 1.9-1.12): the tokenizer's
 *     attention mask is passed to CLIP (as the seed does everywhere), DDIM is
 *     the seed's own (no steps offset, final alpha 1);
 *   SD 1.x UNets: CLIP with the causal mask alone, diffusers' DDIM with SD
 *     1.x's scheduler config (leading spacing, steps_offset 1).
 * The scheduler flavour can be overridden (settings.flavor); Euler and
 * DPM++ 2M are diffusers' in both.
 *
 * Noise (settings.rng). Every image has its own seed (the CLI gives image i
 * of a run seed + i, as the seed's inference.py and AUTOMATIC1111 do), and
 * its noise depends on that seed alone, never on the batch it is in:
 *   SDW_TXT2IMG_RNG_PHILOX: Philox4x32-10 stream (seed, subsequence 0) of
 *     core/base/rng.h from element 0, the same on CPU and GPU;
 *   SDW_TXT2IMG_RNG_TORCH_CPU: torch.Generator("cpu").manual_seed(seed) then
 *     torch.randn([1, C, H/f, W/f]) bit for bit (core/base/torch_rng.h,
 *     torch's AVX2 kernel, what x86-64 machines run): the noise of the seed's
 *     inference.py with its default batch size 1.
 * DDIM's variance noise (eta > 0) continues each image's stream: philox
 * subsequence 1 from element 0 on, torch-cpu the same generator after the
 * starting noise, one randn of the image's latent size per step.
 *
 * Not thread-safe: one generate call at a time per object, on ctx's thread.
 */
#ifndef SDW_DIFFUSION_TXT2IMG_H
#define SDW_DIFFUSION_TXT2IMG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/diffusion/sampler.h"
#include "core/model/clip.h"
#include "core/model/tokenizer.h"
#include "core/model/unet.h"
#include "core/model/vae.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_txt2img_rng {
  SDW_TXT2IMG_RNG_PHILOX = 0, /* "philox" (default) */
  SDW_TXT2IMG_RNG_TORCH_CPU,  /* "torch-cpu" */
} sdw_txt2img_rng;

/* Which DDIM: AUTO picks the seed's for seed UNets, diffusers' otherwise. */
typedef enum sdw_txt2img_flavor {
  SDW_TXT2IMG_FLAVOR_AUTO = 0,
  SDW_TXT2IMG_FLAVOR_SEED,      /* "seed" */
  SDW_TXT2IMG_FLAVOR_DIFFUSERS, /* "diffusers" */
} sdw_txt2img_flavor;

/* Names as the CLI spells them; false / "unknown" otherwise. */
bool sdw_txt2img_rng_from_name(const char *name, sdw_txt2img_rng *out);
const char *sdw_txt2img_rng_name(sdw_txt2img_rng rng);
bool sdw_txt2img_flavor_from_name(const char *name, sdw_txt2img_flavor *out);
const char *sdw_txt2img_flavor_name(sdw_txt2img_flavor flavor);

typedef struct sdw_txt2img_settings {
  int width, height;        /* pixels (512); multiples of sdw_txt2img_size_multiple */
  int steps;                /* 30 */
  double cfg_scale;         /* 7.5; exactly 1 skips the unconditional pass */
  sdw_sampler_kind sampler; /* DDIM */
  bool karras;              /* Karras sigmas (Euler, DPM++ 2M only) */
  double eta;               /* DDIM only; 0 = deterministic */
  sdw_txt2img_flavor flavor;
  sdw_txt2img_rng rng;
  int text_mask; /* pass the tokenizer's attention mask to CLIP: -1 auto
                    (seed UNets yes, SD 1.x no), 0 no, 1 yes */
} sdw_txt2img_settings;

/* 512x512, 30 steps, CFG 7.5, DDIM, eta 0, no Karras, flavour auto, philox,
 * text mask auto. */
sdw_txt2img_settings sdw_txt2img_settings_default(void);

/* One image to make. */
typedef struct sdw_txt2img_job {
  const char *prompt;   /* UTF-8 */
  const char *negative; /* UTF-8; NULL or "" = the empty prompt */
  uint64_t seed;
} sdw_txt2img_job;

/* Optional hooks of a generate call. */
typedef struct sdw_txt2img_hooks {
  sdw_progress_fn progress; /* after every sampler step (sampler.h) */
  void *progress_user;
  /* read before every step and before decoding: nonzero stops the call
   * with SDW_ERR_INTERRUPTED (a signal handler may set it) */
  const atomic_int *cancel;
} sdw_txt2img_hooks;

typedef struct sdw_txt2img sdw_txt2img;

/* --- building ------------------------------------------------------------------------- */

/* Components a caller already has; all borrowed (they must outlive the
 * object) and all required. */
typedef struct sdw_txt2img_parts {
  sdw_tokenizer *tokenizer;
  sdw_clip_text *text_encoder;
  sdw_unet *unet;
  sdw_vae *vae; /* needs its decoder; NULL: pixel space (the UNet denoises the
                  RGB image in [-1, 1] itself, 3 channels, scaling factor 1) */
} sdw_txt2img_parts;

/* A pipeline over borrowed parts on ctx (borrowed). Checks that they fit
 * together (text width = UNet context width, VAE latent channels = UNet
 * channels): SDW_ERR_INVALID_ARGUMENT naming both. *out: sdw_txt2img_free. */
sdw_status sdw_txt2img_create(sdw_ctx *ctx, const sdw_txt2img_parts *parts, sdw_txt2img **out);

/* For loaders (sdw_txt2img_open, later the trainer): from now on the object
 * frees these parts in sdw_txt2img_free (each a malloc'd struct holding a
 * created model / a loaded tokenizer). */
void sdw_txt2img_own_parts(sdw_txt2img *p, bool tokenizer, bool text_encoder, bool unet, bool vae);
/* Names the model for infotexts (copied; NULL: none) and, when hash_path is
 * given, starts hashing that file in a background thread (the model hash). */
sdw_status sdw_txt2img_set_identity(sdw_txt2img *p, const char *name, const char *hash_path);

/* The model layouts sdw_txt2img_open understands. */
typedef enum sdw_txt2img_layout {
  SDW_TXT2IMG_LAYOUT_BUNDLE = 0, /* folder: config.json + weights (golden bundle,
                                    diffusers unet/ folder) */
  SDW_TXT2IMG_LAYOUT_UNET_FILE,  /* .safetensors of native UNet weights, config.json beside */
  SDW_TXT2IMG_LAYOUT_DIFFUSERS,  /* pipeline folder: model_index.json or a unet/ subfolder */
  SDW_TXT2IMG_LAYOUT_LDM,        /* single file: model.diffusion_model.*, first_stage_model.*,
                                    cond_stage_model.* */
  SDW_TXT2IMG_LAYOUT_TORCH,      /* a PyTorch checkpoint (.pt, .pth, .ckpt): the seed's */
} sdw_txt2img_layout;

const char *sdw_txt2img_layout_name(sdw_txt2img_layout layout);

/* What path is (reads directory entries and a safetensors header only).
 * SDW_ERR_NOT_FOUND when it does not exist or a folder holds no model. */
sdw_status sdw_txt2img_detect_layout(const char *path, sdw_txt2img_layout *out);

/* Where the parts come from. */
typedef struct sdw_txt2img_source {
  const char *model;        /* required: any layout above */
  const char *vae;          /* overrides the model's VAE (NULL: the model's own) */
  const char *text_encoder; /* overrides the model's text encoder (NULL: the model's own) */
  const char *vocab;        /* the BPE vocabulary; NULL: the copy shipped with sdw */
  sdw_tokenizer_mode tokenizer;
  int ema;         /* checkpoints holding both: -1 EMA when present, 1 EMA, 0 raw */
  bool model_hash; /* compute the model hash (in a background thread) */
  bool low_memory; /* one part in memory at a time (see "low memory" above) */
} sdw_txt2img_source;

/* Opens every part (owned by the object). A seed UNet bundle, a lone
 * safetensors file or a diffusers unet/ folder carries no text encoder or
 * VAE: they are taken from the model folder's text_encoder/ and vae/
 * subfolders, or from the sibling folders when the UNet folder sits in a
 * diffusers pipeline, or from src->text_encoder / src->vae; otherwise
 * SDW_ERR_NOT_FOUND says which option to give. *out: sdw_txt2img_free. */
sdw_status sdw_txt2img_open(sdw_ctx *ctx, const sdw_txt2img_source *src, sdw_txt2img **out);

/* Frees the object and every part it owns; NULL is a no-op. */
void sdw_txt2img_free(sdw_txt2img *p);

/* --- low memory ----------------------------------------------------------------------- */

/* A pipeline that owns its parts can keep only the part it is using in
 * memory: the text encoder while prompts are encoded, the UNet while it
 * denoises, the VAE while it decodes; the others are released (weights
 * freed, configuration kept) and opened again from their files when needed.
 * Full SD 1.5 then samples 512x512 in about the UNet's own 3.4 GB instead of
 * 4.3 GB of weights, at the cost of re-reading each part (from the page
 * cache: about a second for the UNet) once per generate call. */
typedef enum sdw_txt2img_part {
  SDW_TXT2IMG_PART_TEXT_ENCODER = 0, /* sdw_clip_text */
  SDW_TXT2IMG_PART_UNET,             /* sdw_unet */
  SDW_TXT2IMG_PART_VAE,              /* sdw_vae */
} sdw_txt2img_part;

/* Opens a part again: *out = a malloc'd, created and loaded model struct of
 * the part's type, owned by the caller. */
typedef sdw_status (*sdw_txt2img_reload_fn)(void *user, sdw_ctx *ctx, sdw_txt2img_part part,
                                            void **out);

/* Frees a part's weights and buffers but keeps its configuration (the
 * struct stays valid for describing, not for computing). */
void sdw_txt2img_part_release(sdw_txt2img_part part, void *model);

/* Turns low-memory mode on: parts owned by p are released after use and
 * reopened through reload(user, ...) before use. user_free(user) runs in
 * sdw_txt2img_free (may be NULL). Parts already released by the opener are
 * marked with sdw_txt2img_mark_released. */
void sdw_txt2img_set_low_memory(sdw_txt2img *p, sdw_txt2img_reload_fn reload, void *user,
                                void (*user_free)(void *));
void sdw_txt2img_mark_released(sdw_txt2img *p, sdw_txt2img_part part);
bool sdw_txt2img_low_memory(const sdw_txt2img *p);

/* --- what the model is ----------------------------------------------------------------- */

const sdw_unet *sdw_txt2img_unet(const sdw_txt2img *p);
bool sdw_txt2img_is_seed_model(const sdw_txt2img *p);
/* True for a pixel-space model (no VAE: the samples are the images). */
bool sdw_txt2img_is_pixel_space(const sdw_txt2img *p);
/* What the UNet predicts (default epsilon; a run trained with
 * prediction_type v_prediction or sample says so). The samplers get epsilon:
 * the UNet's output is converted (sdw_prediction_to_epsilon) at the
 * timestep it was called with. */
void sdw_txt2img_set_prediction(sdw_txt2img *p, sdw_prediction_type type);
sdw_prediction_type sdw_txt2img_prediction(const sdw_txt2img *p);
/* Image sides must be multiples of this: VAE downscale x 2^(UNet levels-1)
 * (SD 1.x: 64 - a diffusers UNet pads odd sizes, ours does not). */
int sdw_txt2img_size_multiple(const sdw_txt2img *p);
/* The model's name (file or folder name without extension) or NULL. */
const char *sdw_txt2img_model_name(const sdw_txt2img *p);
/* AUTOMATIC1111's "Model hash": the first 10 hex digits of the SHA-256 of
 * the UNet's weights file (the whole checkpoint for a single file). Waits
 * for the background hash; NULL when not requested or it failed. */
const char *sdw_txt2img_model_hash(sdw_txt2img *p);
/* One line for logs ("seed UNet, 704,836 parameters; CLIP text 64 wide, 2
 * layers; VAE f=2"), into buf; returns buf. */
const char *sdw_txt2img_describe(const sdw_txt2img *p, char *buf, size_t size);

/* The number of CLIP tokens text has before truncation (what is beyond 75 is
 * cut: sdw_tokenizer_encode_raw). */
sdw_status sdw_txt2img_token_count(sdw_txt2img *p, const char *text, size_t *count);

/* --- generating ------------------------------------------------------------------------ */

/* SDW_ERR_INVALID_ARGUMENT with a message naming the setting for settings
 * this model cannot honour: sizes (positive, multiples of the size
 * multiple, at most 8192), steps outside [1, 1000], a non-finite or negative
 * CFG, eta with another sampler than DDIM or outside [0, 1000], Karras with
 * DDIM or with 1 step. */
sdw_status sdw_txt2img_check(const sdw_txt2img *p, const sdw_txt2img_settings *s);

/* The seed's DDIM flavour question answered: the flavour that applies. */
sdw_txt2img_flavor sdw_txt2img_effective_flavor(const sdw_txt2img *p,
                                                const sdw_txt2img_settings *s);

/* Makes count images (one batch: the UNet sees 2 x count samples per step
 * under guidance) into rgb[count][height][width][3]. On error or
 * interruption nothing useful is in rgb. */
sdw_status sdw_txt2img_generate(sdw_txt2img *p, const sdw_txt2img_settings *s,
                                const sdw_txt2img_job *jobs, int count,
                                const sdw_txt2img_hooks *hooks, uint8_t *rgb);

/* The starting noise of one image: out[numel] for the latent of numel
 * values (C x H/f x W/f), seeded by seed, as described at the top. */
void sdw_txt2img_noise(sdw_txt2img_rng rng, uint64_t seed, float *out, int64_t numel);

/* The AUTOMATIC1111 infotext of one image made with these settings
 * (core/diffusion/infotext.h): prompt, negative, steps, sampler (+ Karras),
 * CFG, seed, size, model hash and name, eta, RNG ("philox", or "CPU" for
 * torch-cpu: A1111's name for the same generator) and sdw's version.
 * snprintf-like: returns the full length. */
size_t sdw_txt2img_infotext(sdw_txt2img *p, const sdw_txt2img_settings *s,
                            const sdw_txt2img_job *job, char *buf, size_t size);

/* float image [3][height][width] (values nominally in [-1, 1]) -> rgb
 * [height][width][3] as described at the top. */
void sdw_txt2img_to_rgb8(const float *image, int64_t height, int64_t width, uint8_t *rgb);

#ifdef __cplusplus
}
#endif
#endif
