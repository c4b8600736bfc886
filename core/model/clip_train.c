/* The CLIP text encoder's training forward and backward (see clip_train.h). */
#include "core/model/clip_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/unet_blocks.h" /* sdw_unet_alloc, sdw_unet_view */

/* What one layer's backward needs. */
typedef struct tape_layer {
  sdw_tensor x_in;             /* [B,T,D] the residual stream entering the layer */
  sdw_tensor h1, mean1, rstd1; /* LN1(x_in) [B,T,D]; [B*T] */
  sdw_tensor q, k, v, a, lse;  /* [B,T,H,Dh] each; attention log-sum-exp [B,H,T] */
  sdw_tensor x_mid;            /* [B,T,D] x_in + out_proj(a) */
  sdw_tensor h2, mean2, rstd2; /* LN2(x_mid) */
  sdw_tensor f_pre, f_act;     /* fc1(h2) and act(fc1(h2)) [B,T,I] */
} tape_layer;

struct sdw_clip_text_tape {
  int64_t B, T;
  sdw_tensor ids, pos, mask; /* backend I64 [B,T] ×2, U8 [B,T] */
  bool has_mask;
  tape_layer *layers;               /* config.num_layers */
  sdw_tensor x_final, meanf, rstdf; /* the final layer norm's input and statistics */
};

static sdw_status alloc_n(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, int ndim, int64_t d0,
                          int64_t d1, int64_t d2, int64_t d3) {
  const int64_t shape[4] = {d0, d1, d2, d3};
  return sdw_unet_alloc(a, c, t, ndim, shape);
}

static sdw_status alloc_zero_like(sdw_arena *a, sdw_ctx *c, sdw_tensor *out, const sdw_tensor *t) {
  SDW_TRY(sdw_unet_alloc(a, c, out, t->ndim, t->shape));
  return c->ops->fill(c, out, 0.0f);
}

/* A tensor of another dtype from arena on ctx's device. */
static sdw_status alloc_typed(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, sdw_dtype dtype,
                              int64_t d0, int64_t d1) {
  const int64_t shape[2] = {d0, d1};
  SDW_TRY(sdw_arena_tensor(a, t, dtype, 2, shape));
  t->device = (sdw_device){c->ops->device, 0};
  return SDW_OK;
}

static sdw_status act_forward(sdw_ctx *ctx, sdw_clip_act act, const sdw_tensor *x, sdw_tensor *y) {
  return act == SDW_CLIP_ACT_GELU ? ctx->ops->gelu_forward(ctx, x, y)
                                  : ctx->ops->quick_gelu_forward(ctx, x, y);
}

static sdw_status act_backward(sdw_ctx *ctx, sdw_clip_act act, const sdw_tensor *x,
                               const sdw_tensor *dy, sdw_tensor *dx) {
  return act == SDW_CLIP_ACT_GELU ? ctx->ops->gelu_backward(ctx, x, dy, dx)
                                  : ctx->ops->quick_gelu_backward(ctx, x, dy, dx);
}

/* x_in [B,T,D] -> x_out [B,T,D], keeping the layer's activations in tl. */
static sdw_status layer_forward_train(sdw_clip_text *m, sdw_arena *arena,
                                      const sdw_clip_text_layer *L, const sdw_tensor *x_in,
                                      const sdw_tensor *mask, tape_layer *tl, sdw_tensor *x_out) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  const int64_t B = x_in->shape[0], T = x_in->shape[1], D = c->hidden_size;
  const int64_t H = c->num_heads, Dh = D / H, I = c->intermediate_size;
  const float eps = c->layer_norm_eps;
  tl->x_in = *x_in;
  sdw_tensor q3, k3, v3, a3, tmp;
  SDW_TRY(alloc_n(arena, ctx, &tl->h1, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->mean1, 1, B * T, 0, 0, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->rstd1, 1, B * T, 0, 0, 0));
  SDW_TRY(alloc_n(arena, ctx, &q3, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &k3, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &v3, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &a3, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->lse, 3, B, H, T, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->x_mid, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->h2, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->mean2, 1, B * T, 0, 0, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->rstd2, 1, B * T, 0, 0, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->f_pre, 3, B, T, I, 0));
  SDW_TRY(alloc_n(arena, ctx, &tl->f_act, 3, B, T, I, 0));
  SDW_TRY(alloc_n(arena, ctx, &tmp, 3, B, T, D, 0));

  SDW_TRY(ops->layer_norm_forward(ctx, x_in, &L->ln1_w, &L->ln1_b, eps, &tl->h1, &tl->mean1,
                                  &tl->rstd1));
  SDW_TRY(ops->linear_forward(ctx, &tl->h1, &L->q_w, &L->q_b, &q3));
  SDW_TRY(ops->linear_forward(ctx, &tl->h1, &L->k_w, &L->k_b, &k3));
  SDW_TRY(ops->linear_forward(ctx, &tl->h1, &L->v_w, &L->v_b, &v3));
  /* the linear outputs [B,T,D] are [B,T,H,Dh] with the heads interleaved */
  const int64_t hs[4] = {B, T, H, Dh};
  tl->q = sdw_unet_view(&q3, 4, hs);
  tl->k = sdw_unet_view(&k3, 4, hs);
  tl->v = sdw_unet_view(&v3, 4, hs);
  tl->a = sdw_unet_view(&a3, 4, hs);
  const float scale = (float)(1.0 / sqrt((double)Dh)); /* as clip.c */
  SDW_TRY(ops->attention_forward(ctx, &tl->q, &tl->k, &tl->v, mask, true, scale, &tl->a, &tl->lse));
  SDW_TRY(ops->linear_forward(ctx, &a3, &L->out_w, &L->out_b, &tmp));
  SDW_TRY(ops->add(ctx, x_in, &tmp, &tl->x_mid));
  SDW_TRY(ops->layer_norm_forward(ctx, &tl->x_mid, &L->ln2_w, &L->ln2_b, eps, &tl->h2, &tl->mean2,
                                  &tl->rstd2));
  SDW_TRY(ops->linear_forward(ctx, &tl->h2, &L->fc1_w, &L->fc1_b, &tl->f_pre));
  SDW_TRY(act_forward(ctx, c->act, &tl->f_pre, &tl->f_act));
  SDW_TRY(ops->linear_forward(ctx, &tl->f_act, &L->fc2_w, &L->fc2_b, &tmp));
  return ops->add(ctx, &tl->x_mid, &tmp, x_out);
}

sdw_status sdw_clip_text_forward_train(sdw_clip_text *m, sdw_arena *arena,
                                       const sdw_tensor *input_ids,
                                       const sdw_tensor *attention_mask, sdw_tensor *last_hidden,
                                       sdw_clip_text_tape **tape) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  *tape = NULL;
  sdw_clip_text_staging in;
  sdw_status st = sdw_clip_text_stage_inputs(m, input_ids, attention_mask, &in);
  const int64_t B = in.B, T = in.T, D = c->hidden_size;
  const size_t n = (size_t)(B * T);
  SDW_ASSERT(st != SDW_OK || (last_hidden->dtype == SDW_F32 && last_hidden->ndim == 3 &&
                              last_hidden->shape[0] == B && last_hidden->shape[1] == T &&
                              last_hidden->shape[2] == D));
  sdw_clip_text_tape *tp = st == SDW_OK ? sdw_arena_calloc(arena, sizeof *tp) : NULL;
  if (st == SDW_OK && tp)
    tp->layers = sdw_arena_calloc(arena, (size_t)c->num_layers * sizeof *tp->layers);
  if (st == SDW_OK && (!tp || !tp->layers))
    st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "CLIP training tape: arena exhausted");
  if (st == SDW_OK) {
    tp->B = B;
    tp->T = T;
    tp->has_mask = in.mask != NULL;
    st = alloc_typed(arena, ctx, &tp->ids, SDW_I64, B, T);
  }
  if (st == SDW_OK) st = alloc_typed(arena, ctx, &tp->pos, SDW_I64, B, T);
  if (st == SDW_OK) st = alloc_typed(arena, ctx, &tp->mask, SDW_U8, B, T);
  if (st == SDW_OK) st = ops->upload(ctx, tp->ids.data, in.ids, n * sizeof(int64_t));
  if (st == SDW_OK) st = ops->upload(ctx, tp->pos.data, in.positions, n * sizeof(int64_t));
  if (st == SDW_OK && in.mask) st = ops->upload(ctx, tp->mask.data, in.mask, n);
  sdw_clip_text_staging_free(&in);
  SDW_TRY(st);

  /* x = token_embedding[ids] + position_embedding[0..T) */
  sdw_tensor x, pe;
  SDW_TRY(alloc_n(arena, ctx, &x, 3, B, T, D, 0));
  SDW_TRY(alloc_n(arena, ctx, &pe, 3, B, T, D, 0));
  SDW_TRY(ops->embedding_forward(ctx, &tp->ids, &m->token_embedding, &x));
  SDW_TRY(ops->embedding_forward(ctx, &tp->pos, &m->position_embedding, &pe));
  SDW_TRY(ops->add(ctx, &x, &pe, &x));
  for (int64_t l = 0; l < c->num_layers; l++) {
    sdw_tensor next;
    SDW_TRY(alloc_n(arena, ctx, &next, 3, B, T, D, 0));
    SDW_TRY(layer_forward_train(m, arena, &m->layers[l], &x, tp->has_mask ? &tp->mask : NULL,
                                &tp->layers[l], &next));
    x = next;
  }
  tp->x_final = x;
  SDW_TRY(alloc_n(arena, ctx, &tp->meanf, 1, B * T, 0, 0, 0));
  SDW_TRY(alloc_n(arena, ctx, &tp->rstdf, 1, B * T, 0, 0, 0));
  SDW_TRY(ops->layer_norm_forward(ctx, &x, &m->final_ln_w, &m->final_ln_b, c->layer_norm_eps,
                                  last_hidden, &tp->meanf, &tp->rstdf));
  *tape = tp;
  return SDW_OK;
}

/* dx holds dLoss/dx_out on entry and dLoss/dx_in on return. */
static sdw_status layer_backward(sdw_clip_text *m, sdw_arena *arena, const sdw_clip_text_layer *L,
                                 sdw_clip_text_layer *G, const tape_layer *tl,
                                 const sdw_tensor *mask, sdw_tensor *dx) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  const int64_t B = tl->x_in.shape[0], T = tl->x_in.shape[1], D = c->hidden_size;
  const int64_t Dh = D / c->num_heads;
  sdw_tensor dfa, dfp, dh, da, dq, dk, dv;
  /* x_out = x_mid + fc2(act(fc1(LN2(x_mid)))): dx is already d x_mid's
   * residual share; the MLP branch adds to it */
  SDW_TRY(alloc_zero_like(arena, ctx, &dfa, &tl->f_act));
  SDW_TRY(alloc_zero_like(arena, ctx, &dfp, &tl->f_pre));
  SDW_TRY(alloc_zero_like(arena, ctx, &dh, &tl->h2));
  SDW_TRY(ops->linear_backward(ctx, &tl->f_act, &L->fc2_w, dx, &dfa, &G->fc2_w, &G->fc2_b));
  SDW_TRY(act_backward(ctx, c->act, &tl->f_pre, &dfa, &dfp));
  SDW_TRY(ops->linear_backward(ctx, &tl->h2, &L->fc1_w, &dfp, &dh, &G->fc1_w, &G->fc1_b));
  SDW_TRY(ops->layer_norm_backward(ctx, &tl->x_mid, &L->ln2_w, &tl->mean2, &tl->rstd2, &dh, dx,
                                   &G->ln2_w, &G->ln2_b));
  /* x_mid = x_in + out_proj(attention(q, k, v of LN1(x_in))) */
  const int64_t btd[3] = {B, T, D};
  const sdw_tensor a3 = sdw_unet_view(&tl->a, 3, btd);
  SDW_TRY(alloc_zero_like(arena, ctx, &da, &a3));
  SDW_TRY(ops->linear_backward(ctx, &a3, &L->out_w, dx, &da, &G->out_w, &G->out_b));
  SDW_TRY(alloc_zero_like(arena, ctx, &dq, &tl->q));
  SDW_TRY(alloc_zero_like(arena, ctx, &dk, &tl->k));
  SDW_TRY(alloc_zero_like(arena, ctx, &dv, &tl->v));
  const sdw_tensor da4 = sdw_unet_view(&da, 4, tl->a.shape);
  const float scale = (float)(1.0 / sqrt((double)Dh)); /* as the forward */
  SDW_TRY(ops->attention_backward(ctx, &tl->q, &tl->k, &tl->v, mask, true, scale, &tl->a, &tl->lse,
                                  &da4, &dq, &dk, &dv));
  const sdw_tensor dq3 = sdw_unet_view(&dq, 3, btd), dk3 = sdw_unet_view(&dk, 3, btd),
                   dv3 = sdw_unet_view(&dv, 3, btd);
  SDW_TRY(ops->fill(ctx, &dh, 0.0f));
  SDW_TRY(ops->linear_backward(ctx, &tl->h1, &L->q_w, &dq3, &dh, &G->q_w, &G->q_b));
  SDW_TRY(ops->linear_backward(ctx, &tl->h1, &L->k_w, &dk3, &dh, &G->k_w, &G->k_b));
  SDW_TRY(ops->linear_backward(ctx, &tl->h1, &L->v_w, &dv3, &dh, &G->v_w, &G->v_b));
  return ops->layer_norm_backward(ctx, &tl->x_in, &L->ln1_w, &tl->mean1, &tl->rstd1, &dh, dx,
                                  &G->ln1_w, &G->ln1_b);
}

sdw_status sdw_clip_text_backward(sdw_clip_text *m, sdw_clip_text *grads, sdw_arena *arena,
                                  const sdw_clip_text_tape *tape, const sdw_tensor *d_last_hidden) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  SDW_ASSERT(grads->config.num_layers == c->num_layers &&
             grads->config.hidden_size == c->hidden_size);
  SDW_ASSERT(d_last_hidden->ndim == 3 && d_last_hidden->shape[0] == tape->B &&
             d_last_hidden->shape[1] == tape->T && d_last_hidden->shape[2] == c->hidden_size);
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor dx;
  sdw_status st = alloc_zero_like(arena, ctx, &dx, &tape->x_final);
  if (st == SDW_OK)
    st = ops->layer_norm_backward(ctx, &tape->x_final, &m->final_ln_w, &tape->meanf, &tape->rstdf,
                                  d_last_hidden, &dx, &grads->final_ln_w, &grads->final_ln_b);
  for (int64_t l = c->num_layers - 1; st == SDW_OK && l >= 0; l--) {
    const size_t layer_mark = sdw_arena_mark(arena);
    st = layer_backward(m, arena, &m->layers[l], &grads->layers[l], &tape->layers[l],
                        tape->has_mask ? &tape->mask : NULL, &dx);
    sdw_arena_reset_to(arena, layer_mark);
  }
  /* x = token_embedding[ids] + position_embedding[positions] */
  if (st == SDW_OK) st = ops->embedding_backward(ctx, &tape->ids, &dx, &grads->token_embedding);
  if (st == SDW_OK) st = ops->embedding_backward(ctx, &tape->pos, &dx, &grads->position_embedding);
  sdw_arena_reset_to(arena, mark);
  return st;
}
