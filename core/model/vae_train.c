/* VAE training step: forward with a tape, loss, backward (vae_train.h).
 *
 * The forward is a chain of nodes (conv, GroupNorm+SiLU, resnet, attention,
 * downsampler, upsampler) in the order vae.c runs them; each node keeps the
 * tensors its backward needs in the arena. The backward walks the chain in
 * reverse with one running gradient. Parameter gradients land in the
 * gradient set at the parameter's own offset (grad_of), so no module
 * structure has to be walked twice.
 *
 * A dry run (no arena, no ops) of the same forward counts the tape's bytes
 * for sdw_vae_train_arena_bytes. */
#include "core/model/vae_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/safetensors.h"
#include "core/model/unet_blocks.h"

typedef enum node_kind {
  NODE_CONV = 0,  /* y = conv(x) */
  NODE_NORM_SILU, /* y = SiLU(GroupNorm(x)) */
  NODE_RES,       /* ResnetBlock2D */
  NODE_ATTN,      /* the mid block's attention */
  NODE_DOWN,      /* Downsample2D: pad right/bottom, conv stride 2 */
  NODE_UP         /* Upsample2D: nearest x2, conv */
} node_kind;

typedef struct node {
  node_kind kind;
  sdw_tensor x; /* the node's input */
  /* CONV / DOWN / UP: the conv's weights; NORM_SILU: gamma, beta */
  const sdw_tensor *w, *b;
  int stride, pad;
  const sdw_vae_resnet *res;
  const sdw_vae_attention *attn;
  /* saved tensors, by kind:
   *  CONV:      -
   *  NORM_SILU: mean, rstd [N, G]; n (GroupNorm output = SiLU input)
   *  RES:       mean, rstd, n, a (SiLU output = conv1 input), h (conv1
   *             output), mean2, rstd2, n2, a2 (conv2 input)
   *  ATTN:      mean, rstd, n (GroupNorm output, NCHW), tok (its tokens
   *             [N, T, C]), q, k, v, o [N, T, 1, C], lse [N, 1, T]
   *  DOWN:      padded (the conv's input [N, C, H+1, W+1])
   *  UP:        up (the conv's input [N, C, 2H, 2W]) */
  sdw_tensor mean, rstd, n, a, h, mean2, rstd2, n2, a2;
  sdw_tensor tok, q, k, v, o, lse;
  sdw_tensor padded, up;
} node;

typedef struct tape {
  sdw_ctx *ctx;
  sdw_arena *arena; /* NULL: dry run */
  size_t dry_bytes; /* dry run: bytes the tape would take */
  int64_t largest;  /* dry run: elements of the largest activation */
  node *nodes;
  int count, capacity;
  int groups;
  float eps;
} tape;

#define OP(t, call)                                                                                \
  do {                                                                                             \
    if ((t)->arena) SDW_TRY(call);                                                                 \
  } while (0)

static sdw_tensor view(const sdw_tensor *t, int ndim, const int64_t *shape) {
  return sdw_unet_view(t, ndim, shape);
}

/* A tensor of the given shape over the front of t's data. */
static sdw_tensor front(const sdw_tensor *t, int ndim, const int64_t *shape) {
  sdw_tensor v = sdw_tensor_make(t->data, SDW_F32, ndim, shape);
  v.device = t->device;
  SDW_ASSERT(sdw_tensor_numel(&v) <= sdw_tensor_numel(t));
  return v;
}

/* A tape tensor (uninitialised); in a dry run only counted. */
static sdw_status talloc(tape *t, sdw_tensor *out, int ndim, const int64_t *shape) {
  *out = sdw_tensor_make(NULL, SDW_F32, ndim, shape);
  const int64_t n = sdw_tensor_numel(out);
  out->device = (sdw_device){t->ctx->ops->device, 0};
  if (!t->arena) {
    t->dry_bytes +=
        ((size_t)n * sizeof(float) + SDW_ARENA_ALIGN - 1) & ~(size_t)(SDW_ARENA_ALIGN - 1);
    if (n > t->largest) t->largest = n;
    return SDW_OK;
  }
  out->data = sdw_arena_alloc(t->arena, (size_t)n * sizeof(float));
  return out->data ? SDW_OK : SDW_ERR_OUT_OF_MEMORY;
}

static sdw_status talloc4(tape *t, sdw_tensor *out, int64_t n, int64_t c, int64_t h, int64_t w) {
  return talloc(t, out, 4, (int64_t[]){n, c, h, w});
}

static sdw_status push(tape *t, node_kind kind, const sdw_tensor *x, node **out) {
  if (t->count == t->capacity) {
    int cap = t->capacity ? 2 * t->capacity : 64;
    node *grown = realloc(t->nodes, (size_t)cap * sizeof *grown);
    if (!grown) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the VAE tape");
    t->nodes = grown;
    t->capacity = cap;
  }
  node *nd = &t->nodes[t->count++];
  memset(nd, 0, sizeof *nd);
  nd->kind = kind;
  nd->x = *x;
  *out = nd;
  return SDW_OK;
}

/* --- forward ---------------------------------------------------------------- */

static sdw_status conv_fwd(tape *t, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b,
                           int stride, int pad, sdw_tensor *y) {
  node *nd = NULL;
  SDW_TRY(push(t, NODE_CONV, x, &nd));
  nd->w = w;
  nd->b = b;
  nd->stride = stride;
  nd->pad = pad;
  const int64_t k = w->shape[2];
  const int64_t ho = (x->shape[2] + 2 * pad - k) / stride + 1;
  const int64_t wo = (x->shape[3] + 2 * pad - k) / stride + 1;
  SDW_TRY(talloc4(t, y, x->shape[0], w->shape[0], ho, wo));
  OP(t, t->ctx->ops->conv2d_forward(t->ctx, x, w, b, stride, pad, y));
  return SDW_OK;
}

/* n = GroupNorm(x) with saved statistics, a = SiLU(n). */
static sdw_status norm_silu(tape *t, const sdw_tensor *x, const sdw_tensor *gamma,
                            const sdw_tensor *beta, sdw_tensor *mean, sdw_tensor *rstd,
                            sdw_tensor *n, sdw_tensor *a) {
  const int64_t N = x->shape[0];
  SDW_TRY(talloc(t, mean, 2, (int64_t[]){N, t->groups}));
  SDW_TRY(talloc(t, rstd, 2, (int64_t[]){N, t->groups}));
  SDW_TRY(talloc(t, n, x->ndim, x->shape));
  SDW_TRY(talloc(t, a, x->ndim, x->shape));
  OP(t, t->ctx->ops->group_norm_forward(t->ctx, x, gamma, beta, t->groups, t->eps, n, mean, rstd));
  OP(t, t->ctx->ops->silu_forward(t->ctx, n, a));
  return SDW_OK;
}

static sdw_status norm_silu_fwd(tape *t, const sdw_tensor *x, const sdw_tensor *gamma,
                                const sdw_tensor *beta, sdw_tensor *y) {
  node *nd = NULL;
  SDW_TRY(push(t, NODE_NORM_SILU, x, &nd));
  nd->w = gamma;
  nd->b = beta;
  return norm_silu(t, x, gamma, beta, &nd->mean, &nd->rstd, &nd->n, y);
}

static sdw_status res_fwd(tape *t, const sdw_vae_resnet *m, const sdw_tensor *x, sdw_tensor *y) {
  const sdw_backend *ops = t->ctx->ops;
  const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
  node *nd = NULL;
  SDW_TRY(push(t, NODE_RES, x, &nd));
  nd->res = m;
  SDW_TRY(norm_silu(t, x, &m->norm1_w, &m->norm1_b, &nd->mean, &nd->rstd, &nd->n, &nd->a));
  SDW_TRY(talloc4(t, &nd->h, N, m->out_ch, H, W));
  OP(t, ops->conv2d_forward(t->ctx, &nd->a, &m->conv1_w, &m->conv1_b, 1, 1, &nd->h));
  SDW_TRY(norm_silu(t, &nd->h, &m->norm2_w, &m->norm2_b, &nd->mean2, &nd->rstd2, &nd->n2, &nd->a2));
  SDW_TRY(talloc4(t, y, N, m->out_ch, H, W));
  OP(t, ops->conv2d_forward(t->ctx, &nd->a2, &m->conv2_w, &m->conv2_b, 1, 1, y));
  if (m->has_shortcut) {
    /* the shortcut's output only feeds the sum: arena scratch above the tape */
    const size_t mark = t->arena ? sdw_arena_mark(t->arena) : 0;
    sdw_tensor s;
    SDW_TRY(talloc4(t, &s, N, m->out_ch, H, W));
    OP(t, ops->conv2d_forward(t->ctx, x, &m->shortcut_w, &m->shortcut_b, 1, 0, &s));
    OP(t, ops->add(t->ctx, y, &s, y));
    if (t->arena) sdw_arena_reset_to(t->arena, mark);
  } else {
    OP(t, ops->add(t->ctx, y, x, y));
  }
  return SDW_OK;
}

static sdw_status attn_fwd(tape *t, const sdw_vae_attention *m, const sdw_tensor *x,
                           sdw_tensor *y) {
  const sdw_backend *ops = t->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], T = H * W;
  node *nd = NULL;
  SDW_TRY(push(t, NODE_ATTN, x, &nd));
  nd->attn = m;
  SDW_TRY(talloc(t, &nd->mean, 2, (int64_t[]){N, t->groups}));
  SDW_TRY(talloc(t, &nd->rstd, 2, (int64_t[]){N, t->groups}));
  SDW_TRY(talloc4(t, &nd->n, N, C, H, W));
  OP(t, ops->group_norm_forward(t->ctx, x, &m->norm_w, &m->norm_b, t->groups, t->eps, &nd->n,
                                &nd->mean, &nd->rstd));
  const int64_t ntc[3] = {N, T, C}, heads[4] = {N, T, 1, C};
  SDW_TRY(talloc(t, &nd->tok, 3, ntc));
  OP(t, ops->nchw_to_nlc(t->ctx, &nd->n, &nd->tok));
  SDW_TRY(talloc(t, &nd->q, 4, heads));
  SDW_TRY(talloc(t, &nd->k, 4, heads));
  SDW_TRY(talloc(t, &nd->v, 4, heads));
  sdw_tensor q3 = view(&nd->q, 3, ntc), k3 = view(&nd->k, 3, ntc), v3 = view(&nd->v, 3, ntc);
  OP(t, ops->linear_forward(t->ctx, &nd->tok, &m->q_w, &m->q_b, &q3));
  OP(t, ops->linear_forward(t->ctx, &nd->tok, &m->k_w, &m->k_b, &k3));
  OP(t, ops->linear_forward(t->ctx, &nd->tok, &m->v_w, &m->v_b, &v3));
  SDW_TRY(talloc(t, &nd->o, 4, heads));
  SDW_TRY(talloc(t, &nd->lse, 3, (int64_t[]){N, 1, T}));
  const float scale = (float)(1.0 / sqrt((double)C));
  OP(t,
     ops->attention_forward(t->ctx, &nd->q, &nd->k, &nd->v, NULL, false, scale, &nd->o, &nd->lse));
  sdw_tensor out_tok;
  SDW_TRY(talloc(t, &out_tok, 3, ntc));
  sdw_tensor o3 = view(&nd->o, 3, ntc);
  OP(t, ops->linear_forward(t->ctx, &o3, &m->out_w, &m->out_b, &out_tok));
  SDW_TRY(talloc4(t, y, N, C, H, W));
  OP(t, ops->nlc_to_nchw(t->ctx, &out_tok, y));
  OP(t, ops->add(t->ctx, y, x, y));
  return SDW_OK;
}

/* F.pad(x, (0, 1, 0, 1)) as two concats with zeros (vae.c's way: ops.h has
 * no pad op), then conv3x3 stride 2. */
static sdw_status down_fwd(tape *t, const sdw_vae_level *lv, const sdw_tensor *x, sdw_tensor *y) {
  const sdw_backend *ops = t->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  node *nd = NULL;
  SDW_TRY(push(t, NODE_DOWN, x, &nd));
  nd->w = &lv->sampler_w;
  nd->b = &lv->sampler_b;
  SDW_TRY(talloc4(t, &nd->padded, N, C, H + 1, W + 1));
  const size_t mark = t->arena ? sdw_arena_mark(t->arena) : 0; /* the pad's temporaries */
  sdw_tensor zeros, padw;
  SDW_TRY(talloc(t, &zeros, 1, (int64_t[]){N * C * (H > W + 1 ? H : W + 1)}));
  OP(t, ops->fill(t->ctx, &zeros, 0.0f));
  SDW_TRY(talloc(t, &padw, 2, (int64_t[]){N * C * H, W + 1}));
  sdw_tensor xr = view(x, 2, (int64_t[]){N * C * H, W});
  sdw_tensor z1 = front(&zeros, 2, (int64_t[]){N * C * H, 1});
  OP(t, ops->concat_channels(t->ctx, &xr, &z1, &padw));
  sdw_tensor pw3 = view(&padw, 3, (int64_t[]){N * C, H, W + 1});
  sdw_tensor z2 = front(&zeros, 3, (int64_t[]){N * C, 1, W + 1});
  sdw_tensor pad3 = view(&nd->padded, 3, (int64_t[]){N * C, H + 1, W + 1});
  OP(t, ops->concat_channels(t->ctx, &pw3, &z2, &pad3));
  if (t->arena) sdw_arena_reset_to(t->arena, mark);
  SDW_TRY(talloc4(t, y, N, lv->sampler_w.shape[0], H / 2, W / 2));
  OP(t, ops->conv2d_forward(t->ctx, &nd->padded, nd->w, nd->b, 2, 0, y));
  return SDW_OK;
}

static sdw_status up_fwd(tape *t, const sdw_vae_level *lv, const sdw_tensor *x, sdw_tensor *y) {
  const sdw_backend *ops = t->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  node *nd = NULL;
  SDW_TRY(push(t, NODE_UP, x, &nd));
  nd->w = &lv->sampler_w;
  nd->b = &lv->sampler_b;
  SDW_TRY(talloc4(t, &nd->up, N, C, 2 * H, 2 * W));
  OP(t, ops->upsample_nearest2x_forward(t->ctx, x, &nd->up));
  SDW_TRY(talloc4(t, y, N, lv->sampler_w.shape[0], 2 * H, 2 * W));
  OP(t, ops->conv2d_forward(t->ctx, &nd->up, nd->w, nd->b, 1, 1, y));
  return SDW_OK;
}

static sdw_status mid_fwd(tape *t, const sdw_vae_config *c, const sdw_vae_coder *coder,
                          sdw_tensor *h) {
  sdw_tensor y;
  SDW_TRY(res_fwd(t, &coder->mid_resnets[0], h, &y));
  *h = y;
  if (c->mid_attention) {
    SDW_TRY(attn_fwd(t, &coder->mid_attention, h, &y));
    *h = y;
  }
  SDW_TRY(res_fwd(t, &coder->mid_resnets[1], h, &y));
  *h = y;
  return SDW_OK;
}

/* image -> moments [N, 2L, H/f, W/f] (unclamped), a tape tensor. */
static sdw_status encoder_fwd(tape *t, const sdw_vae *m, const sdw_tensor *image,
                              sdw_tensor *moments) {
  const sdw_vae_config *c = &m->cfg;
  const sdw_vae_coder *e = &m->encoder;
  sdw_tensor h, y;
  SDW_TRY(conv_fwd(t, image, &e->conv_in_w, &e->conv_in_b, 1, 1, &h));
  for (int l = 0; l < c->levels; l++) {
    const sdw_vae_level *lv = &e->levels[l];
    for (int j = 0; j < lv->resnet_count; j++) {
      SDW_TRY(res_fwd(t, &lv->resnets[j], &h, &y));
      h = y;
    }
    if (lv->has_sampler) {
      SDW_TRY(down_fwd(t, lv, &h, &y));
      h = y;
    }
  }
  SDW_TRY(mid_fwd(t, c, e, &h));
  SDW_TRY(norm_silu_fwd(t, &h, &e->norm_out_w, &e->norm_out_b, &y));
  h = y;
  if (!c->use_quant_conv) return conv_fwd(t, &h, &e->conv_out_w, &e->conv_out_b, 1, 1, moments);
  SDW_TRY(conv_fwd(t, &h, &e->conv_out_w, &e->conv_out_b, 1, 1, &y));
  return conv_fwd(t, &y, &m->quant_w, &m->quant_b, 1, 0, moments);
}

/* z [N, L, h, w] -> recon [N, out, h*f, w*f], a tape tensor. */
static sdw_status decoder_fwd(tape *t, const sdw_vae *m, const sdw_tensor *z, sdw_tensor *recon) {
  const sdw_vae_config *c = &m->cfg;
  const sdw_vae_coder *d = &m->decoder;
  sdw_tensor h = *z, y;
  if (c->use_post_quant_conv) {
    SDW_TRY(conv_fwd(t, z, &m->post_quant_w, &m->post_quant_b, 1, 0, &y));
    h = y;
  }
  SDW_TRY(conv_fwd(t, &h, &d->conv_in_w, &d->conv_in_b, 1, 1, &y));
  h = y;
  SDW_TRY(mid_fwd(t, c, d, &h));
  for (int l = 0; l < c->levels; l++) {
    const sdw_vae_level *lv = &d->levels[l];
    for (int j = 0; j < lv->resnet_count; j++) {
      SDW_TRY(res_fwd(t, &lv->resnets[j], &h, &y));
      h = y;
    }
    if (lv->has_sampler) {
      SDW_TRY(up_fwd(t, lv, &h, &y));
      h = y;
    }
  }
  SDW_TRY(norm_silu_fwd(t, &h, &d->norm_out_w, &d->norm_out_b, &y));
  return conv_fwd(t, &y, &d->conv_out_w, &d->conv_out_b, 1, 1, recon);
}

/* --- backward --------------------------------------------------------------- */

typedef struct grad_ctx {
  sdw_ctx *ctx;
  sdw_arena *arena;
  const sdw_vae *m;
  sdw_vae *g;
  int groups;
} grad_ctx;

/* The gradient of parameter p: the same offset in the gradient set. */
static sdw_tensor grad_of(const grad_ctx *gc, const sdw_tensor *p) {
  sdw_tensor v = *p;
  v.data = gc->g->params.flat + ((const float *)p->data - gc->m->params.flat);
  return v;
}

/* A zeroed arena tensor shaped like `like`. */
static sdw_status zeros_like(const grad_ctx *gc, const sdw_tensor *like, sdw_tensor *out) {
  SDW_TRY(sdw_unet_alloc(gc->arena, gc->ctx, out, like->ndim, like->shape));
  return gc->ctx->ops->fill(gc->ctx, out, 0.0f);
}

static sdw_status conv_bwd(const grad_ctx *gc, const sdw_tensor *x, const sdw_tensor *w,
                           const sdw_tensor *b, int stride, int pad, const sdw_tensor *dy,
                           sdw_tensor *dx) {
  sdw_tensor dw = grad_of(gc, w), db = grad_of(gc, b);
  return gc->ctx->ops->conv2d_backward(gc->ctx, x, w, dy, stride, pad, dx, &dw, &db);
}

/* dx += d/dx of a = SiLU(GroupNorm(x)), given da. */
static sdw_status norm_silu_bwd(const grad_ctx *gc, const sdw_tensor *x, const sdw_tensor *gamma,
                                const sdw_tensor *beta, const sdw_tensor *mean,
                                const sdw_tensor *rstd, const sdw_tensor *n, const sdw_tensor *da,
                                sdw_tensor *dx) {
  const size_t mark = sdw_arena_mark(gc->arena);
  sdw_tensor dn, dgamma = grad_of(gc, gamma), dbeta = grad_of(gc, beta);
  SDW_TRY(zeros_like(gc, n, &dn));
  SDW_TRY(gc->ctx->ops->silu_backward(gc->ctx, n, da, &dn));
  SDW_TRY(gc->ctx->ops->group_norm_backward(gc->ctx, x, gamma, mean, rstd, &dn, gc->groups, dx,
                                            &dgamma, &dbeta));
  sdw_arena_reset_to(gc->arena, mark);
  return SDW_OK;
}

static sdw_status res_bwd(const grad_ctx *gc, const node *nd, const sdw_tensor *dy,
                          sdw_tensor *dx) {
  const sdw_vae_resnet *m = nd->res;
  const size_t mark = sdw_arena_mark(gc->arena);
  if (m->has_shortcut)
    SDW_TRY(conv_bwd(gc, &nd->x, &m->shortcut_w, &m->shortcut_b, 1, 0, dy, dx));
  else
    SDW_TRY(gc->ctx->ops->axpby(gc->ctx, 1.0f, dy, 1.0f, dx));
  sdw_tensor da2, dh, da;
  SDW_TRY(zeros_like(gc, &nd->a2, &da2));
  SDW_TRY(conv_bwd(gc, &nd->a2, &m->conv2_w, &m->conv2_b, 1, 1, dy, &da2));
  SDW_TRY(zeros_like(gc, &nd->h, &dh));
  SDW_TRY(norm_silu_bwd(gc, &nd->h, &m->norm2_w, &m->norm2_b, &nd->mean2, &nd->rstd2, &nd->n2, &da2,
                        &dh));
  SDW_TRY(zeros_like(gc, &nd->a, &da));
  SDW_TRY(conv_bwd(gc, &nd->a, &m->conv1_w, &m->conv1_b, 1, 1, &dh, &da));
  SDW_TRY(
      norm_silu_bwd(gc, &nd->x, &m->norm1_w, &m->norm1_b, &nd->mean, &nd->rstd, &nd->n, &da, dx));
  sdw_arena_reset_to(gc->arena, mark);
  return SDW_OK;
}

static sdw_status attn_bwd(const grad_ctx *gc, const node *nd, const sdw_tensor *dy,
                           sdw_tensor *dx) {
  const sdw_backend *ops = gc->ctx->ops;
  const sdw_vae_attention *m = nd->attn;
  const int64_t C = nd->x.shape[1];
  const int64_t ntc[3] = {nd->tok.shape[0], nd->tok.shape[1], C};
  const size_t mark = sdw_arena_mark(gc->arena);
  SDW_TRY(ops->axpby(gc->ctx, 1.0f, dy, 1.0f, dx)); /* the residual */
  sdw_tensor dout_tok, do4, dq, dk, dv, dtok, dn;
  SDW_TRY(zeros_like(gc, &nd->tok, &dout_tok));
  SDW_TRY(ops->nlc_to_nchw_backward(gc->ctx, dy, &dout_tok));
  SDW_TRY(zeros_like(gc, &nd->o, &do4));
  sdw_tensor o3 = view(&nd->o, 3, ntc), do3 = view(&do4, 3, ntc);
  sdw_tensor dow = grad_of(gc, &m->out_w), dob = grad_of(gc, &m->out_b);
  SDW_TRY(ops->linear_backward(gc->ctx, &o3, &m->out_w, &dout_tok, &do3, &dow, &dob));
  SDW_TRY(zeros_like(gc, &nd->q, &dq));
  SDW_TRY(zeros_like(gc, &nd->k, &dk));
  SDW_TRY(zeros_like(gc, &nd->v, &dv));
  const float scale = (float)(1.0 / sqrt((double)C));
  SDW_TRY(ops->attention_backward(gc->ctx, &nd->q, &nd->k, &nd->v, NULL, false, scale, &nd->o,
                                  &nd->lse, &do4, &dq, &dk, &dv));
  SDW_TRY(zeros_like(gc, &nd->tok, &dtok));
  const sdw_tensor *ws[3] = {&m->q_w, &m->k_w, &m->v_w}, *bs[3] = {&m->q_b, &m->k_b, &m->v_b};
  const sdw_tensor *ds[3] = {&dq, &dk, &dv};
  for (int i = 0; i < 3; i++) {
    sdw_tensor d3 = view(ds[i], 3, ntc), dw = grad_of(gc, ws[i]), db = grad_of(gc, bs[i]);
    SDW_TRY(ops->linear_backward(gc->ctx, &nd->tok, ws[i], &d3, &dtok, &dw, &db));
  }
  SDW_TRY(zeros_like(gc, &nd->n, &dn));
  SDW_TRY(ops->nchw_to_nlc_backward(gc->ctx, &dtok, &dn));
  sdw_tensor dgamma = grad_of(gc, &m->norm_w), dbeta = grad_of(gc, &m->norm_b);
  SDW_TRY(ops->group_norm_backward(gc->ctx, &nd->x, &m->norm_w, &nd->mean, &nd->rstd, &dn,
                                   gc->groups, dx, &dgamma, &dbeta));
  sdw_arena_reset_to(gc->arena, mark);
  return SDW_OK;
}

static sdw_status down_bwd(const grad_ctx *gc, const node *nd, const sdw_tensor *dy,
                           sdw_tensor *dx) {
  const sdw_backend *ops = gc->ctx->ops;
  const int64_t N = nd->x.shape[0], C = nd->x.shape[1], H = nd->x.shape[2], W = nd->x.shape[3];
  const size_t mark = sdw_arena_mark(gc->arena);
  sdw_tensor dpad, dpadw;
  SDW_TRY(zeros_like(gc, &nd->padded, &dpad));
  SDW_TRY(conv_bwd(gc, &nd->padded, nd->w, nd->b, 2, 0, dy, &dpad));
  /* undo the bottom row, then the right column (the zeros get nothing) */
  SDW_TRY(sdw_unet_alloc(gc->arena, gc->ctx, &dpadw, 3, (int64_t[]){N * C, H, W + 1}));
  SDW_TRY(ops->fill(gc->ctx, &dpadw, 0.0f));
  sdw_tensor dpad3 = view(&dpad, 3, (int64_t[]){N * C, H + 1, W + 1});
  SDW_TRY(ops->concat_channels_backward(gc->ctx, &dpad3, &dpadw, NULL));
  sdw_tensor dpadw2 = view(&dpadw, 2, (int64_t[]){N * C * H, W + 1});
  sdw_tensor dxr = view(dx, 2, (int64_t[]){N * C * H, W});
  SDW_TRY(ops->concat_channels_backward(gc->ctx, &dpadw2, &dxr, NULL));
  sdw_arena_reset_to(gc->arena, mark);
  return SDW_OK;
}

static sdw_status up_bwd(const grad_ctx *gc, const node *nd, const sdw_tensor *dy, sdw_tensor *dx) {
  const size_t mark = sdw_arena_mark(gc->arena);
  sdw_tensor dup;
  SDW_TRY(zeros_like(gc, &nd->up, &dup));
  SDW_TRY(conv_bwd(gc, &nd->up, nd->w, nd->b, 1, 1, dy, &dup));
  SDW_TRY(gc->ctx->ops->upsample_nearest2x_backward(gc->ctx, &dup, dx));
  sdw_arena_reset_to(gc->arena, mark);
  return SDW_OK;
}

/* Walks nodes [from, to) in reverse: dy is the gradient at node to-1's
 * output; *dx receives the gradient at node from's input, a view of one of
 * the two slots (each of slot_elems floats, allocated by the caller) that
 * the running gradient alternates between, so the arena does not grow
 * with depth. dy must not lie in the slot the first node writes (slot 0).
 * need_dx false: the input's gradient is not needed (the image's); *dx is
 * then undefined when the first node is a convolution. */
static sdw_status chain_bwd(const grad_ctx *gc, const tape *t, int from, int to,
                            const sdw_tensor *dy, float *const slots[2], bool need_dx,
                            sdw_tensor *dx) {
  sdw_tensor dcur = *dy;
  int next = 0;
  for (int i = to - 1; i >= from; i--) {
    const node *nd = &t->nodes[i];
    sdw_tensor din = view(&nd->x, nd->x.ndim, nd->x.shape);
    din.data = slots[next];
    SDW_TRY(gc->ctx->ops->fill(gc->ctx, &din, 0.0f));
    switch (nd->kind) {
    case NODE_CONV:
      /* the image's gradient is not wanted: skip the first conv's dx */
      SDW_TRY(conv_bwd(gc, &nd->x, nd->w, nd->b, nd->stride, nd->pad, &dcur,
                       i == from && !need_dx ? NULL : &din));
      break;
    case NODE_NORM_SILU:
      SDW_TRY(norm_silu_bwd(gc, &nd->x, nd->w, nd->b, &nd->mean, &nd->rstd, &nd->n, &dcur, &din));
      break;
    case NODE_RES: SDW_TRY(res_bwd(gc, nd, &dcur, &din)); break;
    case NODE_ATTN: SDW_TRY(attn_bwd(gc, nd, &dcur, &din)); break;
    case NODE_DOWN: SDW_TRY(down_bwd(gc, nd, &dcur, &din)); break;
    case NODE_UP: SDW_TRY(up_bwd(gc, nd, &dcur, &din)); break;
    }
    dcur = din;
    next ^= 1;
  }
  *dx = dcur;
  return SDW_OK;
}

/* --- the posterior (host) ---------------------------------------------------- */

enum { LOGVAR_MIN = -30, LOGVAR_MAX = 20 };

/* moments [N, 2L, h, w] (host) and noise -> z (host), the KL sum. */
static double posterior_forward(const float *moments, const float *noise, int64_t n, int64_t lat,
                                int64_t hw, float *z) {
  double kl = 0;
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < lat * hw; i++) {
      const float mean = moments[(b * 2 * lat) * hw + i];
      float logvar = moments[(b * 2 * lat + lat) * hw + i];
      logvar = logvar < LOGVAR_MIN ? LOGVAR_MIN : logvar > LOGVAR_MAX ? LOGVAR_MAX : logvar;
      const float std = expf(0.5f * logvar), var = expf(logvar);
      z[b * lat * hw + i] = mean + std * noise[b * lat * hw + i];
      kl += 0.5 * ((double)mean * mean + var - 1.0 - logvar);
    }
  return kl;
}

/* dmoments (host, overwritten) from dz and the KL term's weight kw (its
 * factor in the loss, kl_weight / N). torch's clamp passes the gradient
 * where min <= logvar <= max. */
static void posterior_backward(const float *moments, const float *noise, const float *dz, int64_t n,
                               int64_t lat, int64_t hw, double kw, float *dmoments) {
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < lat * hw; i++) {
      const int64_t im = (b * 2 * lat) * hw + i, il = (b * 2 * lat + lat) * hw + i;
      const int64_t iz = b * lat * hw + i;
      const float mean = moments[im], raw = moments[il];
      const bool inside = raw >= LOGVAR_MIN && raw <= LOGVAR_MAX;
      const float logvar = raw < LOGVAR_MIN ? LOGVAR_MIN : raw > LOGVAR_MAX ? LOGVAR_MAX : raw;
      const double std = exp(0.5 * logvar), var = exp((double)logvar);
      dmoments[im] = (float)(dz[iz] + kw * mean);
      const double dlogvar = dz[iz] * noise[iz] * 0.5 * std + kw * 0.5 * (var - 1.0);
      dmoments[il] = inside ? (float)dlogvar : 0.0f;
    }
}

/* --- the step ------------------------------------------------------------------ */

sdw_status sdw_vae_grads_create(sdw_vae *grads, const sdw_vae *m) {
  if (m->parts != SDW_VAE_BOTH)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "training a VAE needs its encoder and decoder");
  return sdw_vae_create(grads, m->ctx, &m->cfg, SDW_VAE_BOTH);
}

sdw_status sdw_vae_grads_zero(sdw_vae *grads) {
  sdw_tensor all =
      sdw_tensor_make(grads->params.flat, SDW_F32, 1, (int64_t[]){(int64_t)grads->params.total});
  all.device = (sdw_device){grads->ctx->ops->device, 0};
  return grads->ctx->ops->fill(grads->ctx, &all, 0.0f);
}

static sdw_status check_inputs(const sdw_vae *m, const sdw_tensor *image, const sdw_tensor *noise) {
  const sdw_vae_config *c = &m->cfg;
  const int f = sdw_vae_downscale(c);
  if (m->parts != SDW_VAE_BOTH)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "training a VAE needs its encoder and decoder");
  if (image->ndim != 4 || image->dtype != SDW_F32 || image->shape[1] != c->in_channels ||
      image->shape[2] % f || image->shape[3] % f || image->shape[2] <= 0 || image->shape[3] <= 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE training: the image must be F32 [N, %d, H, W] with H, W multiples of %d",
                    c->in_channels, f);
  if (c->in_channels != c->out_channels)
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "VAE training: the reconstruction loss needs as many output channels as input");
  if (noise->ndim != 4 || noise->dtype != SDW_F32 || noise->shape[0] != image->shape[0] ||
      noise->shape[1] != c->latent_channels || noise->shape[2] != image->shape[2] / f ||
      noise->shape[3] != image->shape[3] / f)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE training: the noise must be F32 [N, %d, H/%d, W/%d]", c->latent_channels,
                    f, f);
  return SDW_OK;
}

static void tape_init(tape *t, const sdw_vae *m, sdw_arena *arena) {
  memset(t, 0, sizeof *t);
  t->ctx = m->ctx;
  t->arena = arena;
  t->groups = m->cfg.norm_groups;
  t->eps = m->cfg.norm_eps;
}

static int64_t largest_input(const tape *t) {
  int64_t big = 0;
  for (int i = 0; i < t->count; i++) {
    const int64_t n = sdw_tensor_numel(&t->nodes[i].x);
    if (n > big) big = n;
  }
  return big;
}

size_t sdw_vae_train_arena_bytes(const sdw_vae *m, int64_t n, int64_t height, int64_t width) {
  const int f = sdw_vae_downscale(&m->cfg);
  const int64_t lat = m->cfg.latent_channels;
  tape t;
  tape_init(&t, m, NULL);
  sdw_tensor image =
      sdw_tensor_make(NULL, SDW_F32, 4, (int64_t[]){n, m->cfg.in_channels, height, width});
  sdw_tensor z = sdw_tensor_make(NULL, SDW_F32, 4, (int64_t[]){n, lat, height / f, width / f});
  sdw_tensor moments, recon;
  sdw_status st = encoder_fwd(&t, m, &image, &moments);
  if (st == SDW_OK) st = decoder_fwd(&t, m, &z, &recon);
  SDW_ASSERT(st == SDW_OK);
  const int64_t big = largest_input(&t) > t.largest ? largest_input(&t) : t.largest;
  free(t.nodes);
  /* the tape, z, two gradient slots, and a node's backward temporaries
   * (a resnet's: three activations of its width) with the loss vectors */
  return t.dry_bytes + (size_t)(n * lat * (height / f) * (width / f)) * 2 * sizeof(float) +
         (size_t)big * 6 * sizeof(float) + 64 * SDW_ARENA_ALIGN + (size_t)n * 64;
}

sdw_status sdw_vae_train_step(sdw_vae *m, sdw_vae *grads, sdw_arena *arena, const sdw_tensor *image,
                              const sdw_tensor *noise, double kl_weight, sdw_vae_train_loss *loss,
                              sdw_tensor *recon) {
  SDW_TRY(check_inputs(m, image, noise));
  if (!(kl_weight >= 0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE training: kl_weight must be >= 0");
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const int64_t N = image->shape[0], lat = m->cfg.latent_channels;
  const int64_t hw = noise->shape[2] * noise->shape[3];
  const size_t mark = sdw_arena_mark(arena);
  tape t;
  tape_init(&t, m, arena);
  float *host = malloc((size_t)(N * lat * hw) * 6 * sizeof(float) + (size_t)N * sizeof(float));
  sdw_status st = host ? SDW_OK : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  float *h_moments = host, *h_noise = host + N * lat * hw * 2, *h_z = h_noise + N * lat * hw;
  float *h_dm = h_z + N * lat * hw; /* [N, 2L, hw]: dz first, then dmoments */
  sdw_tensor moments, z, out;
  int first = 0;
#define STEP(call)                                                                                 \
  do {                                                                                             \
    if (st == SDW_OK) st = (call);                                                                 \
  } while (0)
  /* encoder, posterior, decoder */
  STEP(encoder_fwd(&t, m, image, &moments));
  STEP(ops->download(ctx, h_moments, moments.data, (size_t)(N * 2 * lat * hw) * sizeof(float)));
  STEP(ops->download(ctx, h_noise, noise->data, (size_t)(N * lat * hw) * sizeof(float)));
  double kl_sum = 0;
  if (st == SDW_OK) kl_sum = posterior_forward(h_moments, h_noise, N, lat, hw, h_z);
  STEP(talloc(&t, &z, 4, noise->shape));
  STEP(ops->upload(ctx, z.data, h_z, (size_t)(N * lat * hw) * sizeof(float)));
  first = t.count;
  STEP(decoder_fwd(&t, m, &z, &out));
  /* the loss: ops' per-image mean squared error, times the pixels per image */
  sdw_tensor per_image, dloss;
  STEP(sdw_unet_alloc(arena, ctx, &per_image, 1, (int64_t[]){N}));
  STEP(ops->mse_loss_forward(ctx, &out, image, &per_image));
  const double pixels = (double)sdw_tensor_numel(image) / (double)N;
  double rec = 0;
  if (st == SDW_OK) {
    float *l = h_dm; /* scratch */
    st = ops->download(ctx, l, per_image.data, (size_t)N * sizeof(float));
    for (int64_t b = 0; st == SDW_OK && b < N; b++)
      rec += (double)l[b] * pixels / (double)N;
  }
  if (st == SDW_OK && recon) st = ops->copy(ctx, &out, recon);
  /* backward: the gradient slots lie above the tape */
  float *slots[2] = {NULL, NULL};
  const int64_t big =
      largest_input(&t) > sdw_tensor_numel(&out) ? largest_input(&t) : sdw_tensor_numel(&out);
  for (int i = 0; i < 2 && st == SDW_OK; i++) {
    slots[i] = sdw_arena_alloc(arena, (size_t)big * sizeof(float));
    if (!slots[i]) st = SDW_ERR_OUT_OF_MEMORY;
  }
  grad_ctx gc = {ctx, arena, m, grads, m->cfg.norm_groups};
  sdw_tensor drecon = out, dz, dmoments, dimage;
  drecon.data = slots[1];
  STEP(ops->fill(ctx, &drecon, 0.0f));
  STEP(sdw_unet_alloc(arena, ctx, &dloss, 1, (int64_t[]){N}));
  STEP(ops->fill(ctx, &dloss, (float)(pixels / (double)N)));
  STEP(ops->mse_loss_backward(ctx, &out, image, &dloss, &drecon));
  STEP(chain_bwd(&gc, &t, first, t.count, &drecon, slots, true, &dz));
  STEP(ops->download(ctx, h_dm, dz.data, (size_t)(N * lat * hw) * sizeof(float)));
  if (st == SDW_OK) {
    /* dz is in host scratch at h_dm's front; posterior_backward writes the
     * whole [N, 2L, hw] there, so move dz to h_z (z is no longer needed) */
    memcpy(h_z, h_dm, (size_t)(N * lat * hw) * sizeof(float));
    posterior_backward(h_moments, h_noise, h_z, N, lat, hw, kl_weight / (double)N, h_dm);
  }
  /* dmoments in slot 1: the walk writes slot 0 first */
  dmoments = moments;
  dmoments.data = slots[1];
  STEP(ops->upload(ctx, dmoments.data, h_dm, (size_t)(N * 2 * lat * hw) * sizeof(float)));
  STEP(chain_bwd(&gc, &t, 0, first, &dmoments, slots, false, &dimage));
#undef STEP
  if (st == SDW_OK && loss) {
    loss->rec = rec;
    loss->kl = kl_sum / (double)N;
    loss->loss = rec + kl_weight * loss->kl;
  }
  free(host);
  free(t.nodes);
  sdw_arena_reset_to(arena, mark);
  return st;
}

/* --- saving ------------------------------------------------------------------- */

static char *config_json(const sdw_vae_config *c) {
  cJSON *j = cJSON_CreateObject();
  cJSON *ch = cJSON_CreateArray(), *down = cJSON_CreateArray(), *up = cJSON_CreateArray();
  for (int l = 0; l < c->levels; l++) {
    cJSON_AddItemToArray(ch, cJSON_CreateNumber(c->block_out_channels[l]));
    cJSON_AddItemToArray(down, cJSON_CreateString("DownEncoderBlock2D"));
    cJSON_AddItemToArray(up, cJSON_CreateString("UpDecoderBlock2D"));
  }
  cJSON_AddStringToObject(j, "_class_name", "AutoencoderKL");
  cJSON_AddStringToObject(j, "_diffusers_version", "0.25.1");
  cJSON_AddStringToObject(j, "act_fn", "silu");
  cJSON_AddItemToObject(j, "block_out_channels", ch);
  cJSON_AddItemToObject(j, "down_block_types", down);
  cJSON_AddItemToObject(j, "up_block_types", up);
  cJSON_AddNumberToObject(j, "in_channels", c->in_channels);
  cJSON_AddNumberToObject(j, "out_channels", c->out_channels);
  cJSON_AddNumberToObject(j, "latent_channels", c->latent_channels);
  cJSON_AddNumberToObject(j, "layers_per_block", c->layers_per_block);
  cJSON_AddNumberToObject(j, "norm_num_groups", c->norm_groups);
  cJSON_AddNumberToObject(j, "sample_size", c->sample_size);
  cJSON_AddNumberToObject(j, "scaling_factor", c->scaling_factor);
  cJSON_AddBoolToObject(j, "mid_block_add_attention", c->mid_attention);
  cJSON_AddBoolToObject(j, "use_quant_conv", c->use_quant_conv);
  cJSON_AddBoolToObject(j, "use_post_quant_conv", c->use_post_quant_conv);
  cJSON_AddBoolToObject(j, "force_upcast", true);
  char *text = cJSON_Print(j);
  cJSON_Delete(j);
  return text;
}

sdw_status sdw_vae_save(const sdw_vae *m, const char *dir, const char *note) {
  char path[4200];
  sdw_safetensors_writer *w = NULL;
  SDW_TRY(sdw_safetensors_writer_create(&w));
  sdw_status st = SDW_OK;
  for (int i = 0; i < m->params.count && st == SDW_OK; i++)
    st = sdw_safetensors_writer_add_tensor(w, m->params.items[i].name, &m->params.items[i].value);
  if (st == SDW_OK) st = sdw_safetensors_writer_set_metadata(w, "format", "pt");
  if (st == SDW_OK && note) st = sdw_safetensors_writer_set_metadata(w, "note", note);
  snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
  if (st == SDW_OK) st = sdw_safetensors_writer_write(w, path);
  sdw_safetensors_writer_destroy(w);
  SDW_TRY(st);
  char *text = config_json(&m->cfg);
  if (!text) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  snprintf(path, sizeof path, "%s/config.json", dir);
  st = sdw_atomic_write(path, text, strlen(text));
  free(text);
  return st;
}
