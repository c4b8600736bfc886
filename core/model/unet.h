/* The UNet: one code base, two topologies.
 *
 *  - SDW_UNET_SEED: the seed project's UNetModel (../shared/SEED.md §1):
 *    320-wide time MLP, per-block SiLU -> Linear time bias after conv1,
 *    the SpatialTransformer INSIDE the ResBlock residual (skipped entirely
 *    when there is no context), GELU MLP, skips only after ResBlocks,
 *    stride-2 conv down, ConvTranspose2d(4,2,1) up; state-dict names
 *    t_emb.N, conv_in, downs.N, mid.N, ups.N, norm_out, conv_out.
 *  - SDW_UNET_SD15: diffusers UNet2DConditionModel for SD 1.x configs
 *    (CrossAttnDownBlock2D / DownBlock2D / UNetMidBlock2DCrossAttn /
 *    UpBlock2D / CrossAttnUpBlock2D, GEGLU, 1x1-conv or linear proj_in/out,
 *    nearest x2 + conv up, skips from conv_in, every resnet(+attention) and
 *    every downsampler); diffusers' key names.
 *
 * Both compile, at creation, into the same flat program of nodes (conv,
 * ResBlock, transformer, push-skip, concat-skip) that the forward walks in
 * order; the backward (issue 5) walks it in reverse. Every module is a small
 * struct of parameter views with a forward that, given a saved-activations
 * record, keeps what its backward needs (core/model/unet_blocks.h).
 *
 * Parameters live in one sdw_params flat buffer (core/model/params.h),
 * declared in the reference's state_dict order. For the backward, a second
 * sdw_unet created from the same config is the gradient set: the same
 * module tree and offsets, its (zeroed) flat buffer the gradient vector. Activations come from an
 * arena the caller passes in. Everything runs through ctx->ops, so a GPU
 * backend runs it unchanged.
 */
#ifndef SDW_MODEL_UNET_H
#define SDW_MODEL_UNET_H

#include <stdbool.h>
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

typedef enum sdw_unet_topology { SDW_UNET_SEED = 0, SDW_UNET_SD15 = 1 } sdw_unet_topology;

enum { SDW_UNET_MAX_LEVELS = 8 };

/* Everything that shapes a UNet. Per-level arrays are indexed by resolution
 * level l = 0 (full size) .. levels-1 (smallest), on the way down and up. */
typedef struct sdw_unet_config {
  sdw_unet_topology topology;
  int in_channels, out_channels;
  int levels;
  int channels[SDW_UNET_MAX_LEVELS]; /* seed: ch * ch_mults[l]; sd15: block_out_channels[l] */
  /* ResBlocks per level on the way down; up: seed the same, sd15 one more. */
  int layers[SDW_UNET_MAX_LEVELS];
  bool attn_down[SDW_UNET_MAX_LEVELS]; /* seed: l in attn_lvls; sd15: CrossAttnDownBlock2D */
  bool attn_up[SDW_UNET_MAX_LEVELS];   /* seed: l in attn_lvls; sd15: CrossAttnUpBlock2D */
  int heads[SDW_UNET_MAX_LEVELS];      /* attention heads (head dim = channels / heads) */
  int depth_down[SDW_UNET_MAX_LEVELS]; /* transformer blocks per transformer (seed: 1) */
  int depth_up[SDW_UNET_MAX_LEVELS];
  int depth_mid;
  bool mid_attention; /* the mid block's transformer (both topologies: true) */
  /* Time embedding: sinusoid(time_in_dim) -> Linear(time_in_dim, time_hidden_dim)
   * -> SiLU -> Linear(time_hidden_dim, time_out_dim); each ResBlock adds
   * Linear(SiLU(.)) as a per-channel bias after conv1. */
  int time_in_dim, time_hidden_dim, time_out_dim;
  sdw_timestep_embedding_params time_embedding;
  int context_dim;
  int norm_groups;        /* ResBlock, transformer and output GroupNorms */
  float norm_eps;         /* ResBlock and output GroupNorms */
  float attn_norm_eps;    /* the transformer's GroupNorm (seed 1e-5, diffusers 1e-6) */
  float layer_norm_eps;   /* transformer LayerNorms */
  bool linear_projection; /* proj_in / proj_out as Linear instead of 1x1 conv */
  int conv_in_kernel, conv_out_kernel;
  /* seed constructor values (SDW_UNET_SEED only; channels[] derives from them) */
  int seed_ch;
  int seed_ch_mults[SDW_UNET_MAX_LEVELS];
  bool grad_checkpoint; /* seed's grad_ckpt: the trainer's default for checkpointing */
  /* seed "ctx_pool" (an sdw addition, off in the seed): the context's mean
   * over its tokens through Linear(context_dim, time_out_dim) (zero-initialised)
   * is added to the time embedding before its SiLU, so the prompt also
   * reaches every ResBlock as a per-channel bias, as a class embedding does
   * (diffusers' class_embed_type "projection"). Without a context it adds
   * nothing. */
  bool context_pool;
} sdw_unet_config;

/* Built-in configurations: "seed" (the seed's default UNetModel,
 * 780,718,404 parameters), "seed-tiny" (its CI config, 704,836), "sd15"
 * (Stable Diffusion 1.x, 859,520,964). SDW_ERR_NOT_FOUND for another name. */
sdw_status sdw_unet_preset(const char *name, sdw_unet_config *out);

/* Reads a config.json: {"_class_name": "SeedUNetModel", <UNetModel
 * constructor kwargs>} or a diffusers UNet2DConditionModel config (SD 1.x
 * features only; anything else is SDW_ERR_UNSUPPORTED naming the key). */
sdw_status sdw_unet_config_from_json(const char *path, sdw_unet_config *out);
/* The same from text already in memory; name is used in messages. */
sdw_status sdw_unet_config_parse(const char *text, size_t size, const char *name,
                                 sdw_unet_config *out);

/* Checks a configuration for consistency (channel counts divisible by the
 * groups and heads, levels in range, ...). SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_unet_config_validate(const sdw_unet_config *cfg);

/* Total number of parameter values of the configuration (counting pass
 * only: nothing is allocated). */
sdw_status sdw_unet_count_params(const sdw_unet_config *cfg, int64_t *out);

/* Modules and the node program (defined in core/model/unet_blocks.h). */
typedef struct sdw_unet_resblock sdw_unet_resblock;
typedef struct sdw_unet_transformer sdw_unet_transformer;
typedef struct sdw_unet_tblock sdw_unet_tblock;
typedef struct sdw_unet_conv sdw_unet_conv;
typedef struct sdw_unet_node sdw_unet_node;
typedef struct sdw_unet_saved sdw_unet_saved;

typedef struct sdw_unet {
  sdw_unet_config cfg;
  sdw_ctx *ctx;      /* not owned */
  sdw_params params; /* owned: every weight, one flat buffer */
  /* time embedding */
  sdw_tensor time_w1, time_b1, time_w2, time_b2;
  sdw_tensor ctx_pool_w, ctx_pool_b; /* [time_out, context_dim], [time_out] (context_pool) */
  /* output head: GroupNorm -> SiLU -> conv */
  sdw_tensor norm_out_w, norm_out_b, conv_out_w, conv_out_b;
  /* modules (owned arrays) and the program over them */
  sdw_unet_node *nodes;
  int node_count;
  sdw_unet_resblock *res;
  int res_count;
  sdw_unet_transformer *tfm;
  int tfm_count;
  sdw_unet_tblock *tblocks;
  int tblock_count;
  sdw_unet_conv *convs;
  int conv_count;
  int max_skips; /* deepest skip stack */
} sdw_unet;

/* Plans the program and runs only the counting pass: m->params lists every
 * parameter's name and shape (views with data NULL, no buffer). For
 * inspection (layouts, converters, counts); free with sdw_unet_free. */
sdw_status sdw_unet_plan(sdw_unet *m, const sdw_unet_config *cfg);

/* Builds the model on ctx's backend: plans the program, declares every
 * parameter (zero-initialised). The model borrows ctx; free with
 * sdw_unet_free. */
sdw_status sdw_unet_create(sdw_unet *m, sdw_ctx *ctx, const sdw_unet_config *cfg);
void sdw_unet_free(sdw_unet *m);

/* Number of parameter values (sum of numel, no padding). */
int64_t sdw_unet_param_count(const sdw_unet *m);

/* Loads every parameter from weights in the model's native names (the
 * seed's state_dict names, or diffusers' for sd15): a .safetensors file, a
 * golden-style bundle folder (weights.safetensors), a diffusers unet/
 * folder or a diffusers pipeline (its unet/ subfolder), through
 * core/model/weights.h (F32/F16/BF16/F64 converted to f32). Every tensor
 * must be present with the right shape (SDW_ERR_NOT_FOUND / SDW_ERR_FORMAT
 * naming the file and the key) and the file may hold nothing else
 * (SDW_ERR_FORMAT naming the extra key: config and weights disagree). */
sdw_status sdw_unet_load(sdw_unet *m, const char *path);

/* The hook for other layouts: loads from open weights through a key map
 * (an LDM single file: prefix "model.diffusion_model." and a callback for
 * diffusers -> LDM names; see sdw_weights_map). With map NULL the native
 * check above applies (no extra tensors); with a map, other tensors in the
 * file (VAE, text encoder) are ignored. */
sdw_status sdw_unet_load_weights(sdw_unet *m, const sdw_weights *w, const sdw_weights_map *map);

/* Config + weights in one go: path is a folder with config.json and the
 * weights (a golden bundle, a diffusers unet/ folder, or a diffusers
 * pipeline whose unet/ subfolder has them). The model borrows ctx. */
sdw_status sdw_unet_open(sdw_unet *m, sdw_ctx *ctx, const char *path);

/* Inference forward:
 *   x[N, in_channels, H, W] (H, W multiples of 2^(levels-1)),
 *   timesteps[N] (F32; integer-valued in practice),
 *   context[N, S, context_dim] or NULL (seed: transformers skipped; sd15:
 *   required) -> out[N, out_channels, H, W] (caller memory, overwritten).
 * Temporaries come from arena and are released before returning (arena is
 * back at its entry mark). Bad shapes are SDW_ERR_INVALID_ARGUMENT. */
sdw_status sdw_unet_forward(sdw_unet *m, sdw_arena *arena, const sdw_tensor *x,
                            const sdw_tensor *timesteps, const sdw_tensor *context,
                            sdw_tensor *out);

/* Training forward: the same computation, and *saved receives every
 * activation the backward needs, allocated from arena (which the caller
 * resets after the backward). With checkpoint, each ResBlock keeps only its
 * input and output (its backward recomputes the inside: issue 5's
 * per-ResBlock gradient checkpointing). */
sdw_status sdw_unet_forward_train(sdw_unet *m, sdw_arena *arena, const sdw_tensor *x,
                                  const sdw_tensor *timesteps, const sdw_tensor *context,
                                  sdw_tensor *out, bool checkpoint, sdw_unet_saved **saved);

/* The gradient set of m: a second UNet of the same configuration on the
 * same backend (the same module tree, parameter names, offsets and flat
 * size), zero-filled; its params.flat is the gradient vector that the
 * optimizer, clipping and all-reduce walk as one range. Free with
 * sdw_unet_free. */
sdw_status sdw_unet_grads_create(sdw_unet *grads, const sdw_unet *m);
/* grads->params.flat[:] = 0 (the start of a fresh accumulation). */
sdw_status sdw_unet_grads_zero(sdw_unet *grads);

/* Backward of the training forward that filled saved (same m, same arena,
 * not reset in between): given dout[N, out_channels, H, W] = dL/d(out),
 * ACCUMULATES dL/d(parameter) into grads (sdw_unet_grads_create), and
 * dx[N, in_channels, H, W] += dL/dx, dcontext[N, S, context_dim] +=
 * dL/dcontext when those are not NULL. Checkpointed ResBlocks recompute
 * their insides (bit-identical gradients). Temporaries come from arena and
 * are released before returning (the record stays valid: a second backward
 * of the same record adds the same gradients again). */
sdw_status sdw_unet_backward(sdw_unet *m, sdw_unet *grads, sdw_arena *arena,
                             const sdw_unet_saved *saved, const sdw_tensor *dout, sdw_tensor *dx,
                             sdw_tensor *dcontext);

/* Analytic multiply-add count x2 (FLOPs) of one forward at batch n, latent
 * h x w and context length s (convolutions, linears, attention matmuls). */
double sdw_unet_forward_flops(const sdw_unet *m, int n, int h, int w, int s, bool with_context);

#ifdef __cplusplus
}
#endif
#endif
