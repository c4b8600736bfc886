/* UNet modules: ResBlock, transformer (SpatialTransformer / diffusers
 * Transformer2DModel) with its blocks and attention, the conv samplers, and
 * the node program of the whole UNet (core/model/unet.h).
 *
 * Each module is a struct of parameter views (into the model's flat buffer)
 * plus its shapes, a declare function (the two-pass parameter build of
 * core/model/params.h, in the reference's state_dict order) and a forward.
 *
 * Forward and saved activations. Every forward takes an optional record:
 *  - NULL (inference): temporaries are taken from the arena and released
 *    (arena reset to the mark it had on entry) before the function returns;
 *    only the output survives, which the caller allocated.
 *  - non-NULL (training): nothing is released; the record receives views of
 *    exactly the tensors the module's backward needs (listed with each
 *    record below), all living in the arena until the caller resets it.
 * Backward. Next to each forward, sdw_unet_X_backward(ctx, arena, m, grad,
 * <inputs the record does not hold>, saved, dy, dx, ...) differentiates the
 * forward that filled `saved`: every gradient output is ACCUMULATED (+=),
 * like the ops, and a NULL one is not computed. Parameter gradients go to
 * `grad`, the same module struct bound to a gradient flat buffer (the module
 * declared again into a second sdw_params: core/model/unet.h makes a second
 * sdw_unet for that), so they land at the parameters' own offsets; grad NULL
 * skips them. Temporaries come from arena and are released (arena back at
 * its entry mark) before returning. Nothing here writes the record, so a
 * backward may be repeated.
 *
 * All computation goes through ctx->ops; tensors are allocated with
 * sdw_unet_alloc so they carry ctx's device.
 */
#ifndef SDW_MODEL_UNET_BLOCKS_H
#define SDW_MODEL_UNET_BLOCKS_H

#include <stdbool.h>

#include "core/base/arena.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/model/params.h"
#include "core/model/unet.h"
#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Naming and ordering of parameters. */
typedef enum sdw_unet_style {
  SDW_UNET_STYLE_SEED = 0,
  SDW_UNET_STYLE_DIFFUSERS = 1
} sdw_unet_style;

enum { SDW_UNET_PREFIX_MAX = 96 };

/* A tensor of the given shape from arena, on ctx's device (uninitialised). */
sdw_status sdw_unet_alloc(sdw_arena *arena, const sdw_ctx *ctx, sdw_tensor *out, int ndim,
                          const int64_t *shape);
/* A view of t's data with another shape of the same numel. */
sdw_tensor sdw_unet_view(const sdw_tensor *t, int ndim, const int64_t *shape);

/* --- attention ---------------------------------------------------------- */

/* Multi-head attention without masks: q = x Wq, k = c Wk, v = c Wv (no
 * biases), softmax(q k^T / sqrt(dh)) v, then to_out (with bias). Seed names
 * to_q/to_k/to_v/to_out.{weight,bias}; diffusers to_out.0.{weight,bias}. */
typedef struct sdw_unet_attention {
  int dim;    /* query width = inner width = output width */
  int kv_dim; /* width of the key/value input (dim for self-attention) */
  int heads;
  sdw_tensor to_q;     /* [dim, dim] */
  sdw_tensor to_k;     /* [dim, kv_dim] */
  sdw_tensor to_v;     /* [dim, kv_dim] */
  sdw_tensor to_out_w; /* [dim, dim] */
  sdw_tensor to_out_b; /* [dim] */
} sdw_unet_attention;

/* Saved for the backward (the inputs x and c are kept by the caller's
 * record): q, k, v (attention_backward and, with x / c, the projections'
 * weight gradients), o (attention output: to_out's input and
 * attention_backward's `out`), lse. */
typedef struct sdw_unet_attention_saved {
  sdw_tensor q;   /* [B, T, H, Dh] */
  sdw_tensor k;   /* [B, S, H, Dh] */
  sdw_tensor v;   /* [B, S, H, Dh] */
  sdw_tensor o;   /* [B, T, H, Dh] */
  sdw_tensor lse; /* [B, H, T] */
} sdw_unet_attention_saved;

void sdw_unet_attention_declare(sdw_params *p, sdw_unet_attention *m, sdw_unet_style style,
                                const char *prefix);
/* x[B,T,dim], c[B,S,kv_dim] (c == x for self-attention) -> y[B,T,dim]. */
sdw_status sdw_unet_attention_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_attention *m,
                                      const sdw_tensor *x, const sdw_tensor *c, sdw_tensor *y,
                                      sdw_unet_attention_saved *saved);
/* Given dy[B,T,dim] and the forward's inputs x and c (the same tensor for
 * self-attention): dx[B,T,dim] += ..., dc[B,S,kv_dim] += ... (dc may be dx
 * for self-attention: both sums land in it). */
sdw_status sdw_unet_attention_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_attention *m,
                                       sdw_unet_attention *grad, const sdw_tensor *x,
                                       const sdw_tensor *c, const sdw_unet_attention_saved *saved,
                                       const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dc);

/* --- transformer block ---------------------------------------------------- */

/* Pre-LN block: x += attn1(LN1(x)); x += attn2(LN2(x), context);
 * x += FF(LN3(x)). FF: seed Linear(C,4C) -> GELU(erf) -> Linear(4C,C);
 * diffusers GEGLU: Linear(C,8C) -> [h|g] -> h*gelu(g) -> Linear(4C,C).
 * Seed names ln1..3, self_attn, cross_attn, mlp.0, mlp.2; diffusers norm1..3,
 * attn1, attn2, ff.net.0.proj, ff.net.2. */
struct sdw_unet_tblock {
  int dim;
  int ff_inner; /* 4*dim */
  bool geglu;
  float ln_eps;
  sdw_tensor ln1_w, ln1_b, ln2_w, ln2_b, ln3_w, ln3_b; /* [dim] each */
  sdw_unet_attention attn1;                            /* self */
  sdw_unet_attention attn2;                            /* cross (kv_dim = context width) */
  sdw_tensor ff1_w; /* [ff_inner, dim], GEGLU [2*ff_inner, dim] */
  sdw_tensor ff1_b; /* [ff_inner] or [2*ff_inner] */
  sdw_tensor ff2_w; /* [dim, ff_inner] */
  sdw_tensor ff2_b; /* [dim] */
};

/* Saved: x0, x1, x2 (LN inputs: the block input and the two residual sums;
 * the block output x3 is the next module's input), a1..a3 (LN outputs:
 * attn1's q/k/v input, attn2's query input, ff1's input), mean/rstd of the
 * three LNs, both attentions' records, f (ff1 output = GELU/GEGLU input),
 * g (activation output = ff2 input). The context is kept by the model. */
typedef struct sdw_unet_tblock_saved {
  sdw_tensor x0, x1, x2;                               /* [B, T, C] */
  sdw_tensor a1, a2, a3;                               /* [B, T, C] */
  sdw_tensor mean1, rstd1, mean2, rstd2, mean3, rstd3; /* [B*T] */
  sdw_unet_attention_saved s1, s2;
  sdw_tensor f; /* [B, T, ff_inner] (GEGLU: 2*ff_inner) */
  sdw_tensor g; /* [B, T, ff_inner] */
} sdw_unet_tblock_saved;

void sdw_unet_tblock_declare(sdw_params *p, sdw_unet_tblock *m, sdw_unet_style style,
                             const char *prefix);
/* x[B,T,C], context[B,S,ctx] -> y[B,T,C]. Inference: y may alias x. */
/* Inference runs a transformer block's feed-forward in chunks of rows
 * (default: about 16 MB of inner activations per chunk). Tests set a small
 * count to exercise the chunking; 0 restores the default. Process-wide. */
void sdw_unet_set_ff_chunk_rows(int64_t rows);

sdw_status sdw_unet_tblock_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_tblock *m,
                                   const sdw_tensor *x, const sdw_tensor *context, sdw_tensor *y,
                                   sdw_unet_tblock_saved *saved);
/* Given dy[B,T,C]: dx[B,T,C] += ..., dcontext[B,S,ctx] += ... (NULL: not
 * needed; the context is data for a UNet whose text encoder is frozen). */
sdw_status sdw_unet_tblock_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_tblock *m,
                                    sdw_unet_tblock *grad, const sdw_tensor *context,
                                    const sdw_unet_tblock_saved *saved, const sdw_tensor *dy,
                                    sdw_tensor *dx, sdw_tensor *dcontext);

/* --- transformer ---------------------------------------------------------- */

/* GroupNorm -> proj_in -> tokens -> depth blocks -> proj_out -> + input.
 * proj_in/out are 1x1 convs on NCHW (then NCHW<->NLC), or with
 * linear_projection Linear layers on the tokens. Seed names (one block):
 * norm, proj_in, proj_out, tfm.<block>; diffusers: norm, proj_in,
 * transformer_blocks.D.<block>, proj_out. */
struct sdw_unet_transformer {
  char prefix[SDW_UNET_PREFIX_MAX];
  int channels, groups, heads, context_dim, depth;
  float gn_eps;
  bool linear_projection;
  sdw_tensor norm_w, norm_b;         /* [C] */
  sdw_tensor proj_in_w, proj_in_b;   /* [C, C, 1, 1] or [C, C]; [C] */
  sdw_tensor proj_out_w, proj_out_b; /* the same */
  int first_block;                   /* index into the model's tblocks */
  sdw_unet_tblock *blocks;           /* [depth], the model's (not owned) */
};

/* Saved: x (input: GroupNorm input and the residual), mean/rstd,
 * proj_in_in (proj_in's input: the GroupNorm output, NCHW for the conv,
 * tokens for the linear), the blocks' records (blocks[0].x0 is the token
 * sequence entering block 0), proj_out_in (proj_out's input: NCHW for the
 * conv, the last block's output tokens for the linear). */
typedef struct sdw_unet_transformer_saved {
  sdw_tensor x;                  /* [N, C, H, W] */
  sdw_tensor mean, rstd;         /* [N, G] */
  sdw_tensor proj_in_in;         /* [N, C, H, W] or [N, HW, C] */
  sdw_unet_tblock_saved *blocks; /* [depth], arena */
  sdw_tensor proj_out_in;        /* [N, C, H, W] or [N, HW, C] */
} sdw_unet_transformer_saved;

void sdw_unet_transformer_declare(sdw_params *p, sdw_unet_transformer *m, sdw_unet_style style);
/* x[N,C,H,W], context[N,S,ctx] -> y[N,C,H,W]. Inference: y may alias x. */
sdw_status sdw_unet_transformer_forward(sdw_ctx *ctx, sdw_arena *arena,
                                        const sdw_unet_transformer *m, const sdw_tensor *x,
                                        const sdw_tensor *context, sdw_tensor *y,
                                        sdw_unet_transformer_saved *saved);
/* Given dy[N,C,H,W]: dx[N,C,H,W] += ..., dcontext += ... (or NULL). grad's
 * blocks are its own (grad->blocks, bound like m's). */
sdw_status sdw_unet_transformer_backward(sdw_ctx *ctx, sdw_arena *arena,
                                         const sdw_unet_transformer *m, sdw_unet_transformer *grad,
                                         const sdw_tensor *context,
                                         const sdw_unet_transformer_saved *saved,
                                         const sdw_tensor *dy, sdw_tensor *dx,
                                         sdw_tensor *dcontext);

/* --- ResBlock --------------------------------------------------------------- */

/* h = conv1(SiLU(GN1(x))) + Linear(temb_act)[:, :, None, None]
 * h = conv2(SiLU(GN2(h)))
 * seed: if inner and context: h = inner(h, context)
 * y = h + (skip ? conv1x1(x) : x)
 * temb_act = SiLU(time embedding), computed once per forward by the model.
 * Seed names time_mlp.1, norm1, conv1, norm2, conv2, skip, [tfm];
 * diffusers norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut. */
struct sdw_unet_resblock {
  char prefix[SDW_UNET_PREFIX_MAX];
  int in_ch, out_ch, groups, temb_dim;
  float eps;
  bool has_skip;
  sdw_tensor norm1_w, norm1_b; /* [in] */
  sdw_tensor conv1_w, conv1_b; /* [out, in, 3, 3], [out] */
  sdw_tensor temb_w, temb_b;   /* [out, temb_dim], [out] */
  sdw_tensor norm2_w, norm2_b; /* [out] */
  sdw_tensor conv2_w, conv2_b; /* [out, out, 3, 3], [out] */
  sdw_tensor skip_w, skip_b;   /* [out, in, 1, 1], [out] when has_skip */
  int inner_index;             /* seed: index of the inner transformer; -1 none */
  sdw_unet_transformer *inner; /* the model's (not owned) */
};

/* Saved (full record): x (GN1 input, skip input), mean1/rstd1, n1 (GN1
 * output = SiLU input), a1 (SiLU output = conv1 input), h1 (conv1 + time
 * bias = GN2 input), mean2/rstd2, n2, a2 (conv2 input), h2 (conv2 output =
 * the inner transformer's input), inner (its record, when it ran). The time
 * projection's input (temb_act) is kept by the model; add_channel_bias's
 * backward needs no values.
 * Checkpointed record: only x (and checkpointed = true); the backward
 * re-runs the forward with a full record, then differentiates it. */
typedef struct sdw_unet_resblock_saved {
  bool checkpointed;
  bool ran_inner;
  sdw_tensor x;            /* [N, in, H, W] */
  sdw_tensor mean1, rstd1; /* [N, G] */
  sdw_tensor n1, a1;       /* [N, in, H, W] */
  sdw_tensor h1;           /* [N, out, H, W] */
  sdw_tensor mean2, rstd2; /* [N, G] */
  sdw_tensor n2, a2, h2;   /* [N, out, H, W] */
  sdw_unet_transformer_saved inner;
} sdw_unet_resblock_saved;

void sdw_unet_resblock_declare(sdw_params *p, sdw_unet_resblock *m, sdw_unet_style style);
/* x[N,in,H,W], temb_act[N,temb_dim], context[N,S,ctx] or NULL ->
 * y[N,out,H,W] (y must not alias x). saved->checkpointed selects the
 * checkpointed record (set it before the call). */
sdw_status sdw_unet_resblock_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                     const sdw_tensor *x, const sdw_tensor *temb_act,
                                     const sdw_tensor *context, sdw_tensor *y,
                                     sdw_unet_resblock_saved *saved);
/* Given dy[N,out,H,W]: dx[N,in,H,W] += ..., dtemb_act[N,temb_dim] += ...,
 * dcontext += ... (each may be NULL). temb_act and context are the
 * forward's. A checkpointed record is first completed: the forward runs
 * again from saved->x into a full record in arena (the same ops on the same
 * values, so the gradients are bit-identical to an uncheckpointed run),
 * which is released on return. */
sdw_status sdw_unet_resblock_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                      sdw_unet_resblock *grad, const sdw_tensor *temb_act,
                                      const sdw_tensor *context,
                                      const sdw_unet_resblock_saved *saved, const sdw_tensor *dy,
                                      sdw_tensor *dx, sdw_tensor *dtemb_act, sdw_tensor *dcontext);

/* --- convolutions: conv_in, down and up samplers ------------------------------- */

typedef enum sdw_unet_conv_kind {
  SDW_UNET_CONV_PLAIN = 0,     /* Conv2d(k, stride, pad): conv_in, stride-2 down */
  SDW_UNET_CONV_TRANSPOSE = 1, /* ConvTranspose2d(4, 2, 1): seed up */
  SDW_UNET_CONV_UPSAMPLE = 2   /* nearest x2 then Conv2d(3, 1, 1): diffusers up */
} sdw_unet_conv_kind;

struct sdw_unet_conv {
  char prefix[SDW_UNET_PREFIX_MAX]; /* e.g. "downs.2", "down_blocks.0.downsamplers.0.conv" */
  sdw_unet_conv_kind kind;
  int in_ch, out_ch, kernel, stride, pad;
  sdw_tensor w; /* [out, in, k, k]; transpose: [in, out, k, k] */
  sdw_tensor b; /* [out] */
};

/* Saved: x (the input, the conv's input for plain/transpose) and, for
 * upsample, up (the nearest x2 output = the conv's input). */
typedef struct sdw_unet_conv_saved {
  sdw_tensor x;
  sdw_tensor up;
} sdw_unet_conv_saved;

void sdw_unet_conv_declare(sdw_params *p, sdw_unet_conv *m);
/* Output spatial size of the module for an input of size hw. */
int sdw_unet_conv_out_size(const sdw_unet_conv *m, int hw);
sdw_status sdw_unet_conv_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_conv *m,
                                 const sdw_tensor *x, sdw_tensor *y, sdw_unet_conv_saved *saved);
/* Given dy (the output's shape): dx (the input's shape) += ... */
sdw_status sdw_unet_conv_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_conv *m,
                                  sdw_unet_conv *grad, const sdw_unet_conv_saved *saved,
                                  const sdw_tensor *dy, sdw_tensor *dx);

/* --- the program --------------------------------------------------------------- */

typedef enum sdw_unet_node_kind {
  SDW_UNET_NODE_CONV = 0, /* h = conv(h) */
  SDW_UNET_NODE_RES,      /* h = resblock(h, temb, context) */
  SDW_UNET_NODE_TFM,      /* h = transformer(h, context) (sd15) */
  SDW_UNET_NODE_PUSH,     /* push h on the skip stack (no copy) */
  SDW_UNET_NODE_CAT       /* h = cat([h, pop()], channels) */
} sdw_unet_node_kind;

struct sdw_unet_node {
  sdw_unet_node_kind kind;
  int index; /* into the model's res / tfm / convs arrays */
  int group; /* declaration group (sd15: down i, up L+i, mid 2L) */
};

/* Per node: in / out (views; in is the previous node's out; for PUSH
 * in == out; for CAT in is h and skip the popped tensor) and the module's
 * record. Backward: walk the nodes in reverse; CAT splits dout into dh and
 * dskip (pushed on a gradient stack), PUSH pops its dskip and adds it to
 * the running dh. */
typedef struct sdw_unet_node_saved {
  sdw_tensor in, out, skip;
  union {
    sdw_unet_resblock_saved res;
    sdw_unet_transformer_saved tfm;
    sdw_unet_conv_saved conv;
  } u;
} sdw_unet_node_saved;

/* The whole forward's record (sdw_unet_forward_train). */
struct sdw_unet_saved {
  bool checkpoint;
  sdw_tensor x;                    /* [N, in, H, W] the input (conv_in's input) */
  sdw_tensor context;              /* [N, S, ctx] or data NULL */
  sdw_tensor t_sin;                /* [N, time_in] sinusoid = time linear 1 input */
  sdw_tensor t_h;                  /* [N, time_hidden] linear 1 output = SiLU input */
  sdw_tensor t_ha;                 /* [N, time_hidden] SiLU output = linear 2 input */
  sdw_tensor temb;                 /* [N, time_out] linear 2 output = SiLU input */
  sdw_tensor temb_act;             /* [N, time_out] SiLU(temb): every ResBlock's time input */
  sdw_tensor pooled;               /* [N, 1, ctx] the context's token mean (context_pool) */
  sdw_tensor pool_ones;            /* [N, 1, S] all 1/S: pooled = pool_ones @ context */
  sdw_unet_node_saved *nodes;      /* [node_count] */
  sdw_tensor head_in;              /* [N, C0, H, W] last node output = norm_out input */
  sdw_tensor head_mean, head_rstd; /* [N, G] */
  sdw_tensor head_n;               /* norm_out output = SiLU input */
  sdw_tensor head_a;               /* SiLU output = conv_out input */
};

/* Planning (core/model/unet.c, unet_sd15.c): append modules and nodes. */
int sdw_unet_add_node(sdw_unet *m, sdw_unet_node_kind kind, int index, int group);
int sdw_unet_add_res(sdw_unet *m, const char *prefix, int in_ch, int out_ch);
int sdw_unet_add_tfm(sdw_unet *m, const char *prefix, int channels, int heads, int depth);
int sdw_unet_add_conv(sdw_unet *m, const char *prefix, sdw_unet_conv_kind kind, int in_ch,
                      int out_ch, int kernel, int stride, int pad);
/* Topology-specific planning and declaration. */
sdw_status sdw_unet_plan_seed(sdw_unet *m);
void sdw_unet_declare_seed(sdw_unet *m, sdw_params *p);
sdw_status sdw_unet_plan_sd15(sdw_unet *m);
void sdw_unet_declare_sd15(sdw_unet *m, sdw_params *p);

#ifdef __cplusplus
}
#endif
#endif
