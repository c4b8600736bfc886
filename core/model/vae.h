/* The VAE: diffusers' AutoencoderKL (src/diffusers/models/autoencoders/
 * autoencoder_kl.py and vae.py, v0.25.1), the sd-vae-ft-mse architecture of
 * Stable Diffusion 1.x, forward only (it is frozen):
 *
 *   encode:  conv_in -> down levels (layers_per_block ResnetBlock2D each,
 *            then, except on the last level, Downsample2D: zero pad of one
 *            row at the bottom and one column at the right, 3x3 conv stride
 *            2 pad 0) -> mid (resnet, attention, resnet) -> GroupNorm ->
 *            SiLU -> conv_out (2 x latent channels) -> quant_conv (1x1)
 *            -> moments = [mean | logvar], logvar clamped to [-30, 20]
 *            (DiagonalGaussianDistribution)
 *   decode:  post_quant_conv (1x1) -> conv_in -> mid -> up levels in
 *            reverse (layers_per_block + 1 resnets each, then, except on
 *            the last, Upsample2D: nearest x2 + 3x3 conv) -> GroupNorm ->
 *            SiLU -> conv_out
 *   ResnetBlock2D: GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, plus the
 *            input (through a 1x1 conv_shortcut when the channels change)
 *   attention: GroupNorm -> tokens -> to_q/to_k/to_v (one head of width C,
 *            scale C^-1/2) -> softmax -> to_out.0 -> + input
 *   Every GroupNorm: norm_num_groups groups, eps 1e-6.
 *
 * The latent scaling (x 0.18215 after encoding, / 0.18215 before decoding)
 * is not part of the model, as in diffusers: sdw_vae_scale_latents /
 * sdw_vae_unscale_latents do it.
 *
 * Parameters live in one sdw_params flat buffer (core/model/params.h), under
 * diffusers' names ("decoder.up_blocks.0.resnets.0.conv1.weight",
 * "encoder.mid_block.attentions.0.to_q.weight"), declared in diffusers'
 * state_dict order. Activations come from an arena the caller passes in;
 * every call returns it to the mark it had on entry. All computation runs
 * through ctx->ops, so another backend runs it unchanged; the few host-side
 * steps (the logvar clamp, sampling, and tile blending) move their small
 * tensors through ctx->ops->download / upload.
 */
#ifndef SDW_MODEL_VAE_H
#define SDW_MODEL_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/model/params.h"
#include "core/model/weights.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_VAE_MAX_LEVELS = 8 };

typedef struct sdw_vae_config {
  int in_channels;     /* image channels (3) */
  int out_channels;    /* decoded image channels (3) */
  int latent_channels; /* 4 */
  int levels;          /* len(block_out_channels); the image is 2^(levels-1) x the latent */
  int block_out_channels[SDW_VAE_MAX_LEVELS];
  int layers_per_block; /* encoder resnets per level; the decoder has one more */
  int norm_groups;      /* norm_num_groups */
  float norm_eps;       /* 1e-6 everywhere in diffusers' VAE */
  bool mid_attention;   /* mid_block_add_attention (newer diffusers; default true) */
  bool use_quant_conv, use_post_quant_conv; /* newer diffusers; default true */
  float scaling_factor;                     /* 0.18215 for SD 1.x */
  int sample_size;                          /* pixels; diffusers' default tile size */
} sdw_vae_config;

/* "sd-vae-ft-mse" (also "sd15"): the SD 1.x VAE, block_out_channels
 * 128/256/512/512, 2 layers per block, 32 groups, 4 latent channels,
 * scaling 0.18215, sample_size 512 (SD 1.x's vae/config.json; it only sets
 * the default tile): 83,653,863 parameters. SDW_ERR_NOT_FOUND otherwise. */
sdw_status sdw_vae_preset(const char *name, sdw_vae_config *out);

/* Reads a diffusers AutoencoderKL config.json. Absent keys take
 * AutoencoderKL's defaults; force_upcast is ignored (sdw computes in f32).
 * SDW_ERR_FORMAT for a config of another class or inconsistent values,
 * SDW_ERR_UNSUPPORTED for block types other than DownEncoderBlock2D /
 * UpDecoderBlock2D or an act_fn other than silu. */
sdw_status sdw_vae_config_from_json(const char *path, sdw_vae_config *out);
/* The same from text in memory; name is used in messages. */
sdw_status sdw_vae_config_parse(const char *text, size_t size, const char *name,
                                sdw_vae_config *out);
/* Sizes positive and in range, channels divisible by the groups.
 * SDW_ERR_INVALID_ARGUMENT naming the problem. */
sdw_status sdw_vae_config_validate(const sdw_vae_config *cfg);

/* Image pixels per latent pixel: 2^(levels-1) (8 for SD). */
int sdw_vae_downscale(const sdw_vae_config *cfg);

/* Which halves a model holds (a sampler needs only the decoder). */
typedef enum sdw_vae_parts {
  SDW_VAE_ENCODER = 1, /* encoder + quant_conv */
  SDW_VAE_DECODER = 2, /* post_quant_conv + decoder */
  SDW_VAE_BOTH = 3,
} sdw_vae_parts;

/* Parameter views of the modules (into the model's flat buffer). */
typedef struct sdw_vae_resnet {
  int in_ch, out_ch;
  bool has_shortcut;                 /* in_ch != out_ch */
  sdw_tensor norm1_w, norm1_b;       /* [in] */
  sdw_tensor conv1_w, conv1_b;       /* [out, in, 3, 3], [out] */
  sdw_tensor norm2_w, norm2_b;       /* [out] */
  sdw_tensor conv2_w, conv2_b;       /* [out, out, 3, 3], [out] */
  sdw_tensor shortcut_w, shortcut_b; /* [out, in, 1, 1], [out] */
} sdw_vae_resnet;

typedef struct sdw_vae_attention {
  int channels;
  sdw_tensor norm_w, norm_b; /* [C] */
  sdw_tensor q_w, q_b;       /* [C, C], [C] */
  sdw_tensor k_w, k_b;
  sdw_tensor v_w, v_b;
  sdw_tensor out_w, out_b;
} sdw_vae_attention;

/* One resolution level: its resnets and the resampler after them. */
typedef struct sdw_vae_level {
  sdw_vae_resnet *resnets; /* into the model's array */
  int resnet_count;
  bool has_sampler;                /* encoder: Downsample2D; decoder: Upsample2D */
  sdw_tensor sampler_w, sampler_b; /* [C, C, 3, 3], [C] */
} sdw_vae_level;

/* The encoder or the decoder. Decoder levels are in diffusers' up_blocks
 * order (levels[0] is the smallest resolution). */
typedef struct sdw_vae_coder {
  sdw_tensor conv_in_w, conv_in_b;
  sdw_vae_level levels[SDW_VAE_MAX_LEVELS];
  sdw_vae_resnet *mid_resnets; /* two, into the model's array */
  sdw_vae_attention mid_attention;
  sdw_tensor norm_out_w, norm_out_b;
  sdw_tensor conv_out_w, conv_out_b;
} sdw_vae_coder;

typedef struct sdw_vae {
  sdw_vae_config cfg;
  sdw_ctx *ctx;      /* not owned */
  int parts;         /* sdw_vae_parts */
  sdw_params params; /* owned: every weight in one flat buffer */
  sdw_vae_coder encoder, decoder;
  sdw_tensor quant_w, quant_b;           /* [2L, 2L, 1, 1], [2L] */
  sdw_tensor post_quant_w, post_quant_b; /* [L, L, 1, 1], [L] */
  sdw_vae_resnet *resnets;               /* owned storage of every resnet */
  int resnet_count;
  /* Upsample2D as four 2x2 convolutions on the low-resolution input, one
   * per output phase, instead of a 3x3 convolution on the nearest-x2
   * upsampled input: the same function (each 2x2 kernel sums the 3x3 taps
   * that see the same source pixel) with 4/9 of the multiply-adds. true
   * after create; false runs diffusers' literal nearest + conv. */
  bool upsample_phases;
} sdw_vae;

/* Counting pass only: m->params lists every parameter's name and shape
 * (views with data NULL, no buffer), for inspection and layouts. cfg is
 * validated. Free with sdw_vae_free. */
sdw_status sdw_vae_plan(sdw_vae *m, const sdw_vae_config *cfg, int parts);
/* Builds the model on ctx's backend with zeroed parameters. The model
 * borrows ctx; free with sdw_vae_free. */
sdw_status sdw_vae_create(sdw_vae *m, sdw_ctx *ctx, const sdw_vae_config *cfg, int parts);
void sdw_vae_free(sdw_vae *m);

/* Number of parameter values (sum of numel, no padding). */
int64_t sdw_vae_param_count(const sdw_vae *m);

/* --- weights -------------------------------------------------------------- */

/* The layouts of VAE weights in the wild:
 *  - DIFFUSERS: diffusers' own names (vae/diffusion_pytorch_model.safetensors,
 *    diffusers >= 0.14), attention to_q/to_k/to_v/to_out.0;
 *  - DIFFUSERS_LEGACY: older diffusers files, attention query/key/value/
 *    proj_attn (as diffusers' _convert_deprecated_attention_blocks reads);
 *  - LDM: CompVis / Stability checkpoints (a whole SD single file under
 *    "first_stage_model.", or a standalone VAE without prefix):
 *    encoder.down.N.block.M, .downsample.conv, mid.block_1/attn_1/block_2,
 *    norm_out, nin_shortcut, decoder.up.N numbered from the full-resolution
 *    level (the reverse of up_blocks), attention norm/q/k/v/proj_out as 1x1
 *    convs [C, C, 1, 1] (diffusers' convert_ldm_vae_checkpoint rules). */
typedef enum sdw_vae_layout {
  SDW_VAE_LAYOUT_DIFFUSERS = 0,
  SDW_VAE_LAYOUT_DIFFUSERS_LEGACY,
  SDW_VAE_LAYOUT_LDM,
  SDW_VAE_LAYOUT_COUNT
} sdw_vae_layout;

const char *sdw_vae_layout_name(sdw_vae_layout layout);

/* The key map of one layout under one key prefix ("", "first_stage_model.",
 * "vae."); the map refers to m (its level count) and to prefix, which must
 * outlive it. */
void sdw_vae_weights_map(const sdw_vae *m, sdw_vae_layout layout, const char *const *prefix,
                         sdw_weights_map *out);

/* The layout and prefix under which most of m's parameters are in w (ties:
 * diffusers first, then the order of the prefixes above). *found receives
 * how many were found (may be NULL). *prefix points to a static string. */
void sdw_vae_detect_layout(const sdw_vae *m, const sdw_weights *w, sdw_vae_layout *layout,
                           const char **prefix, int *found);

/* Fills every parameter of m from w in the layout detected above. Errors
 * name the file and the key (missing: SDW_ERR_NOT_FOUND; wrong shape, with
 * the expected one: SDW_ERR_FORMAT; a non-float dtype: SDW_ERR_UNSUPPORTED).
 * F32, F16, BF16 and F64 are read. stats may be NULL. */
sdw_status sdw_vae_load(sdw_vae *m, const sdw_weights *w, sdw_weights_stats *stats);

/* The whole job from a path (see sdw_weights_open; component "vae"): the
 * configuration from config_path when given, else the config.json beside
 * the weights, else the sd-vae-ft-mse preset; then create and load. On
 * failure m is left freed. */
sdw_status sdw_vae_open(sdw_vae *m, sdw_ctx *ctx, const char *path, const char *config_path,
                        int parts);

/* --- forward -------------------------------------------------------------- */

/* image[N, in_channels, H, W] (values in [-1, 1]; H and W multiples of
 * sdw_vae_downscale) -> mean, logvar [N, latent_channels, H/f, W/f]
 * (caller's backend tensors, overwritten; logvar clamped to [-30, 20]).
 * Needs the encoder. Bad shapes are SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_vae_encode(sdw_vae *m, sdw_arena *arena, const sdw_tensor *image, sdw_tensor *mean,
                          sdw_tensor *logvar);

/* The same up to the posterior's parameters: moments[N, 2 x
 * latent_channels, H/f, W/f] = [mean | logvar] as quant_conv produces them
 * (logvar NOT clamped). */
sdw_status sdw_vae_encode_moments(sdw_vae *m, sdw_arena *arena, const sdw_tensor *image,
                                  sdw_tensor *moments);

/* latents[N, latent_channels, h, w] (unscaled) -> image[N, out_channels,
 * h*f, w*f] (caller's backend tensor, overwritten). Needs the decoder. */
sdw_status sdw_vae_decode(sdw_vae *m, sdw_arena *arena, const sdw_tensor *latents,
                          sdw_tensor *image);

/* out = mean + exp(0.5 * logvar) * noise (DiagonalGaussianDistribution.
 * sample with the noise given), all the same shape, backend tensors; out
 * may alias any input. f32 arithmetic in torch's order. */
sdw_status sdw_vae_sample(sdw_ctx *ctx, const sdw_tensor *mean, const sdw_tensor *logvar,
                          const sdw_tensor *noise, sdw_tensor *out);

/* y = x * scaling_factor (what the UNet sees) and y = x * (1/scaling_factor)
 * (what the decoder takes; within 1 ulp of diffusers' division), through
 * ops->axpby; same shapes, backend tensors, y distinct from x (axpby does
 * not promise aliasing). */
sdw_status sdw_vae_scale_latents(const sdw_vae *m, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_vae_unscale_latents(const sdw_vae *m, const sdw_tensor *x, sdw_tensor *y);

/* Arena bytes one encode / decode of that input size takes (what the arena
 * must hold above its mark; op scratch is ctx->scratch's). */
size_t sdw_vae_encode_arena_bytes(const sdw_vae *m, int64_t n, int64_t height, int64_t width);
size_t sdw_vae_decode_arena_bytes(const sdw_vae *m, int64_t n, int64_t latent_h, int64_t latent_w);

/* Multiply-adds x 2 of the convolutions, linears and attention products of
 * one encode (image size) / decode (latent size), as diffusers computes them
 * (nearest x2 then a 3x3 convolution in every upsampler). */
double sdw_vae_encode_flops(const sdw_vae_config *cfg, int64_t n, int64_t height, int64_t width);
double sdw_vae_decode_flops(const sdw_vae_config *cfg, int64_t n, int64_t latent_h,
                            int64_t latent_w);
/* What sdw's decode executes with upsample_phases (fewer, see above). */
double sdw_vae_decode_flops_executed(const sdw_vae_config *cfg, int64_t n, int64_t latent_h,
                                     int64_t latent_w);

/* --- tiling --------------------------------------------------------------- */

/* diffusers' enable_tiling(): inputs larger than a tile are cut into
 * overlapping tiles, each run on its own (so activation memory is that of
 * one tile whatever the image size), and blended linearly over the overlap
 * (blend_v / blend_h, then each tile cropped to the stride), exactly as
 * AutoencoderKL.tiled_encode / tiled_decode do; inputs no larger than a
 * tile are run whole, as diffusers does. The result differs from the
 * untiled one (every tile has its own GroupNorm statistics): that is the
 * price diffusers pays too. */
typedef struct sdw_vae_tiling {
  int tile_sample_size; /* tile side in pixels; 0: the config's sample_size */
  double overlap;       /* tile_overlap_factor; diffusers 0.25; in [0, 1) */
} sdw_vae_tiling;

/* Derived sizes (diffusers' formulas, in pixels or latent pixels). */
typedef struct sdw_vae_tile_plan {
  int64_t tile;     /* tile side in the input's space */
  int64_t stride;   /* overlap_size: tile origins are multiples of it */
  int64_t blend;    /* blend_extent in the output's space */
  int64_t keep;     /* row_limit: output rows/cols kept from each tile */
  int64_t out_tile; /* the tile side in the output's space */
} sdw_vae_tile_plan;

/* SDW_ERR_INVALID_ARGUMENT when the tiling cannot work (tile not a positive
 * multiple of the downscale, overlap outside [0, 1), a zero stride). */
sdw_status sdw_vae_tile_plan_encode(const sdw_vae *m, const sdw_vae_tiling *t,
                                    sdw_vae_tile_plan *out);
sdw_status sdw_vae_tile_plan_decode(const sdw_vae *m, const sdw_vae_tiling *t,
                                    sdw_vae_tile_plan *out);

/* Tiled versions of encode and decode. Inputs and outputs are HOST tensors
 * (the image is assembled and blended in host memory; each tile travels to
 * the backend and back through ctx->ops->upload / download); shapes as for
 * the untiled calls. tiling NULL: diffusers' defaults. */
sdw_status sdw_vae_encode_tiled(sdw_vae *m, sdw_arena *arena, const sdw_vae_tiling *tiling,
                                const sdw_tensor *image, sdw_tensor *mean, sdw_tensor *logvar);
sdw_status sdw_vae_decode_tiled(sdw_vae *m, sdw_arena *arena, const sdw_vae_tiling *tiling,
                                const sdw_tensor *latents, sdw_tensor *image);

#ifdef __cplusplus
}
#endif
#endif
