/* The CLIP text encoder, with the semantics of transformers' CLIPTextModel
 * (src/transformers/models/clip/modeling_clip.py, eager attention), forward
 * only (it is frozen in Stable Diffusion):
 *
 *   x = token_embedding[ids] + position_embedding[0..T)
 *   per layer:  x += out_proj(attention(q_proj(LN1(x)), k_proj(..), v_proj(..)))
 *               x += fc2(act(fc1(LN2(x))))
 *     attention: heads of D/H, scale (D/H)^-0.5, causal mask, plus the
 *     padding mask when an attention mask is given (keys where it is 0 are
 *     removed; SD 1.x passes none, the seed project passes the tokenizer's)
 *   last_hidden_state = final_layer_norm(x)                          [B,T,D]
 *   pooler_output[b]  = last_hidden_state[b, eos position of row b]  [B,D]
 *     eos_token_id == 2 (the legacy configs of SD 1.x): argmax of the ids
 *     (the first maximum); otherwise the first position holding
 *     eos_token_id (0 when there is none), as transformers does.
 *   hidden state k (0 = the embeddings, k = after k layers) is what
 *   output_hidden_states returns; A1111's "CLIP skip N" is hidden state
 *   L+1-N with the final layer norm applied.
 *
 * Everything goes through the op table (ctx->ops), so the same code runs on
 * any backend: the weights live in one parameter set (core/model/params.h),
 * the activations in one buffer of backend memory that is reused by every
 * call (grown when a larger batch arrives). Inputs (ids, mask) are host
 * tensors; outputs are backend tensors (host memory on the CPU backend).
 */
#ifndef SDW_MODEL_CLIP_H
#define SDW_MODEL_CLIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/model/params.h"
#include "core/model/weights.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_clip_act {
  SDW_CLIP_ACT_QUICK_GELU = 0, /* x * sigmoid(1.702 x) ("quick_gelu") */
  SDW_CLIP_ACT_GELU,           /* erf GELU ("gelu") */
} sdw_clip_act;

typedef struct sdw_clip_text_config {
  int64_t vocab_size;
  int64_t hidden_size;       /* D */
  int64_t num_layers;        /* L */
  int64_t num_heads;         /* H, divides D */
  int64_t intermediate_size; /* MLP width */
  int64_t max_positions;     /* longest sequence (77) */
  sdw_clip_act act;
  float layer_norm_eps;
  int64_t eos_token_id; /* 2 selects the legacy argmax pooling rule */
} sdw_clip_text_config;

/* openai/clip-vit-large-patch14's text tower as SD 1.x uses it: 49408
 * tokens, D 768, 12 layers, 12 heads, MLP 3072, 77 positions, quick_gelu,
 * eps 1e-5, eos_token_id 2 (its legacy config). */
sdw_clip_text_config sdw_clip_text_config_vit_l14(void);

/* Reads a transformers config.json: a CLIPTextConfig, or a CLIPConfig whose
 * "text_config" (overridden by "text_config_dict" when present, as
 * transformers does) holds it. Absent keys take CLIPTextConfig's defaults.
 * SDW_ERR_FORMAT for a config that is not a CLIP text one or whose values
 * are inconsistent, SDW_ERR_UNSUPPORTED for an unknown hidden_act. */
sdw_status sdw_clip_text_config_load(const char *path, sdw_clip_text_config *out);

/* Checks sizes (positive, D divisible by H); name is used in the message. */
sdw_status sdw_clip_text_config_check(const sdw_clip_text_config *cfg, const char *name);

/* The parameters of one encoder layer (views into the model's set). */
typedef struct sdw_clip_text_layer {
  sdw_tensor ln1_w, ln1_b;           /* [D] */
  sdw_tensor q_w, q_b, k_w, k_b;     /* [D,D], [D] */
  sdw_tensor v_w, v_b, out_w, out_b; /* [D,D], [D] */
  sdw_tensor ln2_w, ln2_b;           /* [D] */
  sdw_tensor fc1_w, fc1_b;           /* [I,D], [I] */
  sdw_tensor fc2_w, fc2_b;           /* [D,I], [D] */
} sdw_clip_text_layer;

typedef struct sdw_clip_text {
  sdw_clip_text_config config;
  sdw_ctx *ctx;                  /* not owned */
  sdw_params params;             /* owns the weights; native names are transformers'
                                    without "text_model." ("encoder.layers.0.mlp.fc1.weight") */
  sdw_tensor token_embedding;    /* [V,D] */
  sdw_tensor position_embedding; /* [P,D] */
  sdw_tensor final_ln_w, final_ln_b;
  sdw_clip_text_layer *layers; /* owned, config.num_layers of them */
  void *act;                   /* owned backend memory for activations */
  size_t act_bytes;
} sdw_clip_text;

/* Declares and allocates the parameters (zeroed) on ctx's backend. cfg is
 * checked (sdw_clip_text_config_check). Free with sdw_clip_text_free. */
sdw_status sdw_clip_text_init(sdw_clip_text *m, sdw_ctx *ctx, const sdw_clip_text_config *cfg);
void sdw_clip_text_free(sdw_clip_text *m);

/* The key map of the known layouts: transformers CLIPTextModel / CLIPModel
 * and diffusers text_encoder ("text_model."), LDM single files
 * ("cond_stage_model.transformer.text_model." and the older
 * "cond_stage_model.transformer."), and a bare CLIPTextTransformer ("").
 * The position_ids buffer some files carry is not read (it is arange(P);
 * some old checkpoints hold a corrupted float copy of it). */
const sdw_weights_map *sdw_clip_text_weights_map(void);

/* Fills every parameter from w (sdw_weights_load with the map above). */
sdw_status sdw_clip_text_load(sdw_clip_text *m, const sdw_weights *w, sdw_weights_stats *stats);

/* The whole job from a path (see sdw_weights_open; component
 * "text_encoder"): the configuration comes from config_path when given,
 * else from the config.json found beside the weights, else the ViT-L/14
 * preset; then init and load. On failure m is left freed. */
sdw_status sdw_clip_text_open(sdw_clip_text *m, sdw_ctx *ctx, const char *path,
                              const char *config_path);

/* What a forward call computes; NULL outputs are skipped. */
typedef struct sdw_clip_text_outputs {
  sdw_tensor *last_hidden_state; /* backend F32 [B,T,D] */
  sdw_tensor *pooler_output;     /* backend F32 [B,D] */
  sdw_tensor *hidden;            /* backend F32 [B,T,D]: hidden state hidden_layer */
  int hidden_layer;              /* 0..L */
  bool hidden_final_norm;        /* apply final_layer_norm to it (CLIP skip) */
} sdw_clip_text_outputs;

/* Runs the encoder. input_ids: host I32 or I64 [B,T], 1 <= T <= P, every id
 * in [0,V); attention_mask: host [B,T] of any integer or bool dtype (non-zero
 * keeps the key) or NULL for the causal mask alone. Layers past what the
 * requested outputs need are not run. Bad ids or masks are
 * SDW_ERR_INVALID_ARGUMENT; output shapes that do not match are bugs
 * (SDW_ASSERT). */
sdw_status sdw_clip_text_forward(sdw_clip_text *m, const sdw_tensor *input_ids,
                                 const sdw_tensor *attention_mask,
                                 const sdw_clip_text_outputs *out);

/* A forward's inputs checked and staged on the host as the device will see
 * them (the inference forward above and the training one, clip_train.h). */
typedef struct sdw_clip_text_staging {
  int64_t B, T;
  int64_t *ids;        /* [B*T] */
  int64_t *positions;  /* [B*T]: 0..T-1 per row */
  int64_t *pool;       /* [B]: the pooled (eos) position of each row */
  unsigned char *mask; /* [B*T], 1 keeps the key; NULL without attention_mask */
  void *owned;         /* the one allocation behind the arrays */
} sdw_clip_text_staging;

/* input_ids: host I32 or I64 [B,T] with 1 <= T <= max_positions and every
 * id in the vocabulary; attention_mask: NULL or a host integer tensor of its
 * shape. SDW_ERR_INVALID_ARGUMENT names the bad shape, id or mask. Free with
 * sdw_clip_text_staging_free (also after a failure). */
sdw_status sdw_clip_text_stage_inputs(const sdw_clip_text *m, const sdw_tensor *input_ids,
                                      const sdw_tensor *attention_mask, sdw_clip_text_staging *out);
void sdw_clip_text_staging_free(sdw_clip_text_staging *s);

/* The hidden-state index of A1111's "CLIP skip" n (1 = the last layer):
 * L + 1 - n; -1 when n is outside 1..L. */
int sdw_clip_text_skip_layer(const sdw_clip_text_config *cfg, int clip_skip);

#ifdef __cplusplus
}
#endif
#endif
