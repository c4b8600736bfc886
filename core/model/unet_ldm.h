/* UNet weights in LDM single files (the original CompVis / AUTOMATIC1111
 * checkpoint layout: one .safetensors holding the UNet under
 * "model.diffusion_model.", the VAE under "first_stage_model." and the text
 * encoder under "cond_stage_model.").
 *
 * Three namings of the UNet are understood:
 *
 *  - SDW_UNET_LDM_COMPVIS: the original names of an SD 1.x UNet (openaimodel
 *    UNetModel), "model.diffusion_model." + e.g.
 *      time_embed.{0,2}                      time_embedding.linear_{1,2}
 *      input_blocks.0.0                      conv_in
 *      input_blocks.N.0.{in_layers.{0,2},    down_blocks.i.resnets.j.{norm1, conv1,
 *        emb_layers.1, out_layers.{0,3},       time_emb_proj, norm2, conv2,
 *        skip_connection}                      conv_shortcut}
 *      input_blocks.N.1.<transformer>        down_blocks.i.attentions.j.<same>
 *      input_blocks.N.0.op                   down_blocks.i.downsamplers.0.conv
 *      middle_block.{0,1,2}                  mid_block.{resnets.0, attentions.0, resnets.1}
 *      output_blocks.N.0 / .1                up_blocks.i.resnets.j / .attentions.j
 *      output_blocks.N.{1|2}.conv            up_blocks.i.upsamplers.0.conv (index 2
 *                                              when the block has attention)
 *      out.{0,2}                             conv_norm_out, conv_out
 *    with N counting every resnet (+ attention) and every downsampler in
 *    execution order: input_blocks 1 + sum over earlier levels of (layers +
 *    1) + j, the downsampler after the level's resnets; output_blocks the
 *    up blocks' layers + 1 resnets in order, the upsampler on the last one.
 *    This is exactly the mapping of diffusers' convert_ldm_unet_checkpoint
 *    (v0.25.1, pipelines/stable_diffusion/convert_from_ckpt.py), read in
 *    reverse; transformer-internal names (norm, proj_in, transformer_blocks.
 *    K.attn1.to_q, ..., proj_out) are the same in both layouts. Weights of
 *    1x1-conv form are accepted where a linear is expected and vice versa
 *    (proj_in/proj_out of either kind; diffusers squeezes them the same way).
 *  - SDW_UNET_LDM_NATIVE: "model.diffusion_model." + the model's native names
 *    (what `sdw convert --format ldm` writes: the seed's downs.N..., or
 *    diffusers' names for an SD 1.x UNet). Seed UNets exist only in this form.
 *  - SDW_UNET_LDM_EMA: the EMA copy of a full (non-pruned) CompVis training
 *    checkpoint: "model_ema." + "diffusion_model" + the CompVis name with its
 *    dots removed ("model_ema.diffusion_modelinput_blocks00weight"), as
 *    diffusers' extract_ema reads it. Only on request: like diffusers (its
 *    extract_ema defaults to false) and AUTOMATIC1111, the UNet is otherwise
 *    model.diffusion_model.*, also in files that hold both.
 *
 * Configuration: an LDM file carries none. sdw_unet_open_ldm takes a
 * config.json given to it, else the diffusers-style unet/config.json in the
 * file's folder (a Hugging Face model repository holds the single file next
 * to its diffusers folders), else: for a seed UNet (native seed names) the
 * constructor arguments read off the tensors' shapes with the seed's 8 heads
 * (a warning says so), for anything else Stable Diffusion 1.x's UNet (the
 * "sd15" preset: 320/640/1280/1280, 2 layers, 8 heads, context 768). The
 * configuration is checked against the tensors' shapes before the model is
 * allocated, so a wrong one fails fast and says where the configuration came
 * from.
 */
#ifndef SDW_MODEL_UNET_LDM_H
#define SDW_MODEL_UNET_LDM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/status.h"
#include "core/model/unet.h"
#include "core/model/weights.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where an LDM file keeps its UNet, and its EMA copy. */
#define SDW_UNET_LDM_PREFIX     "model.diffusion_model."
#define SDW_UNET_LDM_EMA_PREFIX "model_ema."

typedef enum sdw_unet_ldm_naming {
  SDW_UNET_LDM_COMPVIS = 0,
  SDW_UNET_LDM_NATIVE,
  SDW_UNET_LDM_EMA,
  SDW_UNET_LDM_NAMING_COUNT
} sdw_unet_ldm_naming;

/* "CompVis", "native", "CompVis EMA"; "?" otherwise. */
const char *sdw_unet_ldm_naming_name(sdw_unet_ldm_naming naming);

/* The CompVis name (without "model.diffusion_model.") of the SD 1.x
 * (SDW_UNET_SD15) parameter native under cfg, into key[cap]. False when
 * native is not a parameter name of that configuration, the topology is
 * the seed's (it has no CompVis form) or key does not fit. */
bool sdw_unet_ldm_key(const sdw_unet_config *cfg, const char *native, char *key, size_t cap);

/* The inverse: the native name of m's parameter whose CompVis name is
 * compvis (without the prefix), into native[cap]. m needs its parameter
 * names only (sdw_unet_plan suffices). False when no parameter has it. */
bool sdw_unet_ldm_native(const sdw_unet *m, const char *compvis, char *native, size_t cap);

/* A weights map (core/model/weights.h) from m's native names to the keys of
 * the given naming, prefix included. The map borrows m's configuration:
 * valid while m is. */
void sdw_unet_ldm_weights_map(const sdw_unet *m, sdw_unet_ldm_naming naming, sdw_weights_map *out);

/* True when any file of w holds a tensor named "model.diffusion_model.*". */
bool sdw_unet_ldm_is_ldm(const sdw_weights *w);

/* The naming under which most of m's parameters are in w (only
 * SDW_UNET_LDM_EMA when ema, never it otherwise); *found (may be NULL)
 * receives that count. Needs m's parameter names only. */
sdw_unet_ldm_naming sdw_unet_ldm_detect(const sdw_unet *m, const sdw_weights *w, bool ema,
                                        int *found);

/* Loads every parameter of m (created: sdw_unet_create) from the LDM file(s)
 * w in the detected naming; the file's other tensors (VAE, text encoder,
 * schedule buffers, the other of EMA / non-EMA) are ignored. Errors as
 * sdw_weights_load's, naming the file's key (a missing
 * "model.diffusion_model.output_blocks.5.2.conv.weight"); with ema and no
 * EMA copy in the file, SDW_ERR_NOT_FOUND saying so. */
sdw_status sdw_unet_load_ldm(sdw_unet *m, const sdw_weights *w, bool ema);

/* The configuration of the UNet in the LDM file(s) w, opened from path:
 * config_path when given, else the config.json beside the weights (path
 * was a folder), else <folder of path>/unet/config.json, else read off a
 * seed UNet's tensors or the sd15 preset (see the top). Where it came from
 * (the config.json's path, or words for messages) is written into
 * source_buf[source_cap] when source_buf is not NULL. */
sdw_status sdw_unet_ldm_config(const sdw_weights *w, const char *path, const char *config_path,
                               sdw_unet_config *out, char *source_buf, size_t source_cap);

/* Configuration (sdw_unet_ldm_config) + weights (sdw_unet_load_ldm) of an
 * LDM single file at path; config_path: NULL or a config.json that
 * overrides the lookup. The configuration is checked against the tensors'
 * shapes before the model is created (SDW_ERR_FORMAT / SDW_ERR_NOT_FOUND
 * naming the file's key and where the configuration came from). Logs the
 * naming and the configuration's origin (a warning when read off a seed
 * UNet's shapes). The model borrows ctx; free with sdw_unet_free. On error
 * *m is left freed.
 *
 * core/model/unet.c routes LDM files here: sdw_unet_open on such a file
 * calls this (ema false), sdw_unet_load / sdw_unet_load_weights without a
 * map call sdw_unet_load_ldm. */
sdw_status sdw_unet_open_ldm(sdw_unet *m, sdw_ctx *ctx, const char *path, const char *config_path,
                             bool ema);

#ifdef __cplusplus
}
#endif
#endif
