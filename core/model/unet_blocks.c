/* UNet modules: declare (parameter views) and forward (with an optional
 * saved-activations record). Contracts in core/model/unet_blocks.h. */
#include "core/model/unet_blocks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

sdw_status sdw_unet_alloc(sdw_arena *arena, const sdw_ctx *ctx, sdw_tensor *out, int ndim,
                          const int64_t *shape) {
  SDW_TRY(sdw_arena_tensor(arena, out, SDW_F32, ndim, shape));
  out->device = (sdw_device){ctx->ops->device, 0};
  return SDW_OK;
}

sdw_tensor sdw_unet_view(const sdw_tensor *t, int ndim, const int64_t *shape) {
  sdw_tensor v = *t;
  v.ndim = ndim;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    v.shape[i] = shape[i];
    n *= shape[i];
  }
  for (int i = ndim; i < SDW_MAX_DIMS; i++)
    v.shape[i] = 0;
  SDW_ASSERT(n == sdw_tensor_numel(t));
  return v;
}

/* Shorthands over sdw_unet_alloc. */
static sdw_status alloc2(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, int64_t d0, int64_t d1) {
  return sdw_unet_alloc(a, c, t, 2, (int64_t[]){d0, d1});
}
static sdw_status alloc3(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, int64_t d0, int64_t d1,
                         int64_t d2) {
  return sdw_unet_alloc(a, c, t, 3, (int64_t[]){d0, d1, d2});
}
static sdw_status alloc4(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, int64_t d0, int64_t d1,
                         int64_t d2, int64_t d3) {
  return sdw_unet_alloc(a, c, t, 4, (int64_t[]){d0, d1, d2, d3});
}
static sdw_status alloc1(sdw_arena *a, const sdw_ctx *c, sdw_tensor *t, int64_t d0) {
  return sdw_unet_alloc(a, c, t, 1, (int64_t[]){d0});
}

/* Rows per feed-forward chunk in inference (0: about 16 MB of inner
 * activations). */
static int64_t ff_chunk_rows;

void sdw_unet_set_ff_chunk_rows(int64_t rows) { ff_chunk_rows = rows > 0 ? rows : 0; }

/* Rows [r0, r0 + n) of t seen as a [n, cols] matrix (t: [*, cols], dense). */
static sdw_tensor row_view(const sdw_tensor *t, int64_t r0, int64_t n, int64_t cols) {
  sdw_tensor v = sdw_tensor_2d((float *)t->data + r0 * cols, SDW_F32, n, cols);
  v.device = t->device;
  return v;
}

/* A zero-filled gradient accumulator shaped like t (from arena). */
static sdw_status alloc_zero_like(sdw_arena *a, sdw_ctx *c, sdw_tensor *out, const sdw_tensor *t) {
  SDW_TRY(sdw_unet_alloc(a, c, out, t->ndim, t->shape));
  return c->ops->fill(c, out, 0.0f);
}

/* &grad->field, or NULL when parameter gradients are not wanted. */
#define GRAD(g, field) ((g) ? &(g)->field : NULL)

/* Runs a backward body that allocates from arena and releases it all. */
#define WITH_MARK(arena, body)                                                                     \
  do {                                                                                             \
    const size_t with_mark_ = sdw_arena_mark(arena);                                               \
    sdw_status with_status_ = (body);                                                              \
    sdw_arena_reset_to((arena), with_mark_);                                                       \
    return with_status_;                                                                           \
  } while (0)

/* Parameter declaration shorthands. */
static sdw_tensor take1(sdw_params *p, int64_t d0, const char *prefix, const char *suffix) {
  return sdw_params_take(p, 1, (int64_t[]){d0}, "%s.%s", prefix, suffix);
}
static sdw_tensor take2(sdw_params *p, int64_t d0, int64_t d1, const char *prefix,
                        const char *suffix) {
  return sdw_params_take(p, 2, (int64_t[]){d0, d1}, "%s.%s", prefix, suffix);
}
static sdw_tensor take4(sdw_params *p, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                        const char *prefix, const char *suffix) {
  return sdw_params_take(p, 4, (int64_t[]){d0, d1, d2, d3}, "%s.%s", prefix, suffix);
}

/* "prefix.name" into buf (names are short; SDW_ASSERT on overflow). */
static const char *join(char *buf, size_t size, const char *prefix, const char *name) {
  int n = snprintf(buf, size, "%s.%s", prefix, name);
  SDW_ASSERT(n > 0 && (size_t)n < size);
  return buf;
}

/* --- attention ---------------------------------------------------------- */

void sdw_unet_attention_declare(sdw_params *p, sdw_unet_attention *m, sdw_unet_style style,
                                const char *prefix) {
  m->to_q = take2(p, m->dim, m->dim, prefix, "to_q.weight");
  m->to_k = take2(p, m->dim, m->kv_dim, prefix, "to_k.weight");
  m->to_v = take2(p, m->dim, m->kv_dim, prefix, "to_v.weight");
  const bool seed = style == SDW_UNET_STYLE_SEED;
  m->to_out_w = take2(p, m->dim, m->dim, prefix, seed ? "to_out.weight" : "to_out.0.weight");
  m->to_out_b = take1(p, m->dim, prefix, seed ? "to_out.bias" : "to_out.0.bias");
}

sdw_status sdw_unet_attention_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_attention *m,
                                      const sdw_tensor *x, const sdw_tensor *c, sdw_tensor *y,
                                      sdw_unet_attention_saved *saved) {
  const sdw_backend *ops = ctx->ops;
  const int64_t B = x->shape[0], T = x->shape[1], S = c->shape[1];
  const int64_t H = m->heads, Dh = m->dim / m->heads;
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor q, k, v, o, lse;
  SDW_TRY(alloc3(arena, ctx, &q, B, T, m->dim));
  SDW_TRY(alloc3(arena, ctx, &k, B, S, m->dim));
  SDW_TRY(alloc3(arena, ctx, &v, B, S, m->dim));
  SDW_TRY(alloc3(arena, ctx, &o, B, T, m->dim));
  if (saved) SDW_TRY(alloc3(arena, ctx, &lse, B, H, T));
  SDW_TRY(ops->linear_forward(ctx, x, &m->to_q, NULL, &q));
  SDW_TRY(ops->linear_forward(ctx, c, &m->to_k, NULL, &k));
  SDW_TRY(ops->linear_forward(ctx, c, &m->to_v, NULL, &v));
  /* Linear outputs are [B, T, H*Dh]: the heads are already interleaved as
   * the attention op wants them, so these are views, not permutes. */
  sdw_tensor q4 = sdw_unet_view(&q, 4, (int64_t[]){B, T, H, Dh});
  sdw_tensor k4 = sdw_unet_view(&k, 4, (int64_t[]){B, S, H, Dh});
  sdw_tensor v4 = sdw_unet_view(&v, 4, (int64_t[]){B, S, H, Dh});
  sdw_tensor o4 = sdw_unet_view(&o, 4, (int64_t[]){B, T, H, Dh});
  /* scale = head_dim ** -0.5, as both references compute it (in double) */
  const float scale = (float)(1.0 / sqrt((double)Dh));
  SDW_TRY(ops->attention_forward(ctx, &q4, &k4, &v4, NULL, false, scale, &o4, saved ? &lse : NULL));
  SDW_TRY(ops->linear_forward(ctx, &o, &m->to_out_w, &m->to_out_b, y));
  if (saved) {
    saved->q = q4;
    saved->k = k4;
    saved->v = v4;
    saved->o = o4;
    saved->lse = lse;
  } else {
    sdw_arena_reset_to(arena, mark);
  }
  return SDW_OK;
}

static sdw_status attention_backward_impl(sdw_ctx *ctx, sdw_arena *arena,
                                          const sdw_unet_attention *m, sdw_unet_attention *grad,
                                          const sdw_tensor *x, const sdw_tensor *c,
                                          const sdw_unet_attention_saved *sv, const sdw_tensor *dy,
                                          sdw_tensor *dx, sdw_tensor *dc) {
  const sdw_backend *ops = ctx->ops;
  const int64_t B = x->shape[0], T = x->shape[1], S = c->shape[1];
  const int64_t H = m->heads, Dh = m->dim / m->heads;
  sdw_tensor o3 = sdw_unet_view(&sv->o, 3, (int64_t[]){B, T, m->dim});
  sdw_tensor dq, dk, dv, dout;
  SDW_TRY(alloc_zero_like(arena, ctx, &dout, &o3));
  /* y = o Wout^T + b */
  SDW_TRY(ops->linear_backward(ctx, &o3, &m->to_out_w, dy, &dout, GRAD(grad, to_out_w),
                               GRAD(grad, to_out_b)));
  SDW_TRY(alloc_zero_like(arena, ctx, &dq, &sv->q));
  const bool need_kv = dc || grad;
  if (need_kv) {
    SDW_TRY(alloc_zero_like(arena, ctx, &dk, &sv->k));
    SDW_TRY(alloc_zero_like(arena, ctx, &dv, &sv->v));
  }
  sdw_tensor dout4 = sdw_unet_view(&dout, 4, (int64_t[]){B, T, H, Dh});
  const float scale = (float)(1.0 / sqrt((double)Dh)); /* as the forward */
  SDW_TRY(ops->attention_backward(ctx, &sv->q, &sv->k, &sv->v, NULL, false, scale, &sv->o, &sv->lse,
                                  &dout4, &dq, need_kv ? &dk : NULL, need_kv ? &dv : NULL));
  sdw_tensor dq3 = sdw_unet_view(&dq, 3, (int64_t[]){B, T, m->dim});
  SDW_TRY(ops->linear_backward(ctx, x, &m->to_q, &dq3, dx, GRAD(grad, to_q), NULL));
  if (need_kv) {
    sdw_tensor dk3 = sdw_unet_view(&dk, 3, (int64_t[]){B, S, m->dim});
    sdw_tensor dv3 = sdw_unet_view(&dv, 3, (int64_t[]){B, S, m->dim});
    SDW_TRY(ops->linear_backward(ctx, c, &m->to_k, &dk3, dc, GRAD(grad, to_k), NULL));
    SDW_TRY(ops->linear_backward(ctx, c, &m->to_v, &dv3, dc, GRAD(grad, to_v), NULL));
  }
  return SDW_OK;
}

sdw_status sdw_unet_attention_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_attention *m,
                                       sdw_unet_attention *grad, const sdw_tensor *x,
                                       const sdw_tensor *c, const sdw_unet_attention_saved *saved,
                                       const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dc) {
  WITH_MARK(arena, attention_backward_impl(ctx, arena, m, grad, x, c, saved, dy, dx, dc));
}

/* --- transformer block ---------------------------------------------------- */

void sdw_unet_tblock_declare(sdw_params *p, sdw_unet_tblock *m, sdw_unet_style style,
                             const char *prefix) {
  char buf[SDW_PARAM_NAME_MAX];
  const int64_t C = m->dim, F = m->ff_inner, F1 = m->geglu ? 2 * m->ff_inner : m->ff_inner;
  if (style == SDW_UNET_STYLE_SEED) {
    /* the seed's module order: ln1, ln2, ln3, self_attn, cross_attn, mlp */
    m->ln1_w = take1(p, C, prefix, "ln1.weight");
    m->ln1_b = take1(p, C, prefix, "ln1.bias");
    m->ln2_w = take1(p, C, prefix, "ln2.weight");
    m->ln2_b = take1(p, C, prefix, "ln2.bias");
    m->ln3_w = take1(p, C, prefix, "ln3.weight");
    m->ln3_b = take1(p, C, prefix, "ln3.bias");
    sdw_unet_attention_declare(p, &m->attn1, style, join(buf, sizeof buf, prefix, "self_attn"));
    sdw_unet_attention_declare(p, &m->attn2, style, join(buf, sizeof buf, prefix, "cross_attn"));
    m->ff1_w = take2(p, F1, C, prefix, "mlp.0.weight");
    m->ff1_b = take1(p, F1, prefix, "mlp.0.bias");
    m->ff2_w = take2(p, C, F, prefix, "mlp.2.weight");
    m->ff2_b = take1(p, C, prefix, "mlp.2.bias");
  } else {
    /* diffusers BasicTransformerBlock: norm1, attn1, norm2, attn2, norm3, ff */
    m->ln1_w = take1(p, C, prefix, "norm1.weight");
    m->ln1_b = take1(p, C, prefix, "norm1.bias");
    sdw_unet_attention_declare(p, &m->attn1, style, join(buf, sizeof buf, prefix, "attn1"));
    m->ln2_w = take1(p, C, prefix, "norm2.weight");
    m->ln2_b = take1(p, C, prefix, "norm2.bias");
    sdw_unet_attention_declare(p, &m->attn2, style, join(buf, sizeof buf, prefix, "attn2"));
    m->ln3_w = take1(p, C, prefix, "norm3.weight");
    m->ln3_b = take1(p, C, prefix, "norm3.bias");
    m->ff1_w = take2(p, F1, C, prefix, "ff.net.0.proj.weight");
    m->ff1_b = take1(p, F1, prefix, "ff.net.0.proj.bias");
    m->ff2_w = take2(p, C, F, prefix, "ff.net.2.weight");
    m->ff2_b = take1(p, C, prefix, "ff.net.2.bias");
  }
}

sdw_status sdw_unet_tblock_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_tblock *m,
                                   const sdw_tensor *x, const sdw_tensor *context, sdw_tensor *y,
                                   sdw_unet_tblock_saved *saved) {
  const sdw_backend *ops = ctx->ops;
  const int64_t B = x->shape[0], T = x->shape[1], C = m->dim;
  const int64_t F = m->ff_inner, F1 = m->geglu ? 2 * F : F;
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor a, s, f, g;
  SDW_TRY(alloc3(arena, ctx, &s, B, T, C));

  if (!saved) {
    /* Inference: accumulate the residual stream in y in place. */
    SDW_TRY(alloc3(arena, ctx, &a, B, T, C));
    if (y->data != x->data) SDW_TRY(ops->copy(ctx, x, y));
    SDW_TRY(ops->layer_norm_forward(ctx, y, &m->ln1_w, &m->ln1_b, m->ln_eps, &a, NULL, NULL));
    SDW_TRY(sdw_unet_attention_forward(ctx, arena, &m->attn1, &a, &a, &s, NULL));
    SDW_TRY(ops->add(ctx, y, &s, y));
    SDW_TRY(ops->layer_norm_forward(ctx, y, &m->ln2_w, &m->ln2_b, m->ln_eps, &a, NULL, NULL));
    SDW_TRY(sdw_unet_attention_forward(ctx, arena, &m->attn2, &a, context, &s, NULL));
    SDW_TRY(ops->add(ctx, y, &s, y));
    SDW_TRY(ops->layer_norm_forward(ctx, y, &m->ln3_w, &m->ln3_b, m->ln_eps, &a, NULL, NULL));
    /* The feed-forward in chunks of rows: its inner activations ([B*T, 2F]
     * with GEGLU: 168 MB for SD 1.5 at a 64x64 latent under CFG) are the
     * largest tensors of inference, and every row is independent. Chunks
     * of about 16 MB; the rows' values are the same as in one piece. */
    const int64_t rows = B * T;
    int64_t chunk = ff_chunk_rows > 0 ? ff_chunk_rows : ((int64_t)4 << 20) / F1;
    chunk = chunk < 1 ? 1 : chunk;
    chunk = chunk > rows ? rows : chunk;
    SDW_TRY(alloc3(arena, ctx, &f, 1, chunk, F1));
    if (m->geglu) SDW_TRY(alloc3(arena, ctx, &g, 1, chunk, F));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
      sdw_tensor ac = row_view(&a, r0, n, C), sc = row_view(&s, r0, n, C);
      sdw_tensor fc = row_view(&f, 0, n, F1), gc = fc;
      SDW_TRY(ops->linear_forward(ctx, &ac, &m->ff1_w, &m->ff1_b, &fc));
      if (m->geglu) {
        gc = row_view(&g, 0, n, F);
        SDW_TRY(ops->geglu_forward(ctx, &fc, &gc));
      } else {
        SDW_TRY(ops->gelu_forward(ctx, &fc, &fc));
      }
      SDW_TRY(ops->linear_forward(ctx, &gc, &m->ff2_w, &m->ff2_b, &sc));
    }
    SDW_TRY(ops->add(ctx, y, &s, y));
    sdw_arena_reset_to(arena, mark);
    return SDW_OK;
  }

  /* Training: every LN input, LN output and activation kept (s is scratch). */
  SDW_ASSERT(y->data != x->data);
  SDW_TRY(alloc3(arena, ctx, &f, B, T, F1));
  memset(saved, 0, sizeof *saved);
  saved->x0 = *x;
  SDW_TRY(alloc3(arena, ctx, &saved->a1, B, T, C));
  SDW_TRY(alloc3(arena, ctx, &saved->a2, B, T, C));
  SDW_TRY(alloc3(arena, ctx, &saved->a3, B, T, C));
  SDW_TRY(alloc3(arena, ctx, &saved->x1, B, T, C));
  SDW_TRY(alloc3(arena, ctx, &saved->x2, B, T, C));
  SDW_TRY(alloc1(arena, ctx, &saved->mean1, B * T));
  SDW_TRY(alloc1(arena, ctx, &saved->rstd1, B * T));
  SDW_TRY(alloc1(arena, ctx, &saved->mean2, B * T));
  SDW_TRY(alloc1(arena, ctx, &saved->rstd2, B * T));
  SDW_TRY(alloc1(arena, ctx, &saved->mean3, B * T));
  SDW_TRY(alloc1(arena, ctx, &saved->rstd3, B * T));
  saved->f = f;
  SDW_TRY(alloc3(arena, ctx, &saved->g, B, T, F));

  SDW_TRY(ops->layer_norm_forward(ctx, x, &m->ln1_w, &m->ln1_b, m->ln_eps, &saved->a1,
                                  &saved->mean1, &saved->rstd1));
  SDW_TRY(
      sdw_unet_attention_forward(ctx, arena, &m->attn1, &saved->a1, &saved->a1, &s, &saved->s1));
  SDW_TRY(ops->add(ctx, x, &s, &saved->x1));
  SDW_TRY(ops->layer_norm_forward(ctx, &saved->x1, &m->ln2_w, &m->ln2_b, m->ln_eps, &saved->a2,
                                  &saved->mean2, &saved->rstd2));
  SDW_TRY(sdw_unet_attention_forward(ctx, arena, &m->attn2, &saved->a2, context, &s, &saved->s2));
  SDW_TRY(ops->add(ctx, &saved->x1, &s, &saved->x2));
  SDW_TRY(ops->layer_norm_forward(ctx, &saved->x2, &m->ln3_w, &m->ln3_b, m->ln_eps, &saved->a3,
                                  &saved->mean3, &saved->rstd3));
  SDW_TRY(ops->linear_forward(ctx, &saved->a3, &m->ff1_w, &m->ff1_b, &f));
  if (m->geglu)
    SDW_TRY(ops->geglu_forward(ctx, &f, &saved->g));
  else
    SDW_TRY(ops->gelu_forward(ctx, &f, &saved->g));
  SDW_TRY(ops->linear_forward(ctx, &saved->g, &m->ff2_w, &m->ff2_b, &s));
  SDW_TRY(ops->add(ctx, &saved->x2, &s, y));
  return SDW_OK;
}

/* Reverse of the training forward: y = x2 + ff(LN3(x2)), x2 = x1 +
 * attn2(LN2(x1), ctx), x1 = x0 + attn1(LN1(x0)). d1 and d2 carry the
 * gradients of the residual sums x2 and x1. */
static sdw_status tblock_backward_impl(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_tblock *m,
                                       sdw_unet_tblock *grad, const sdw_tensor *context,
                                       const sdw_unet_tblock_saved *sv, const sdw_tensor *dy,
                                       sdw_tensor *dx, sdw_tensor *dcontext) {
  const sdw_backend *ops = ctx->ops;
  sdw_tensor dx2, da, dg, df;
  /* feed-forward */
  SDW_TRY(sdw_unet_alloc(arena, ctx, &dx2, dy->ndim, dy->shape));
  SDW_TRY(ops->copy(ctx, dy, &dx2));
  SDW_TRY(alloc_zero_like(arena, ctx, &dg, &sv->g));
  SDW_TRY(
      ops->linear_backward(ctx, &sv->g, &m->ff2_w, dy, &dg, GRAD(grad, ff2_w), GRAD(grad, ff2_b)));
  SDW_TRY(alloc_zero_like(arena, ctx, &df, &sv->f));
  if (m->geglu)
    SDW_TRY(ops->geglu_backward(ctx, &sv->f, &dg, &df));
  else
    SDW_TRY(ops->gelu_backward(ctx, &sv->f, &dg, &df));
  SDW_TRY(alloc_zero_like(arena, ctx, &da, &sv->a3));
  SDW_TRY(ops->linear_backward(ctx, &sv->a3, &m->ff1_w, &df, &da, GRAD(grad, ff1_w),
                               GRAD(grad, ff1_b)));
  SDW_TRY(ops->layer_norm_backward(ctx, &sv->x2, &m->ln3_w, &sv->mean3, &sv->rstd3, &da, &dx2,
                                   GRAD(grad, ln3_w), GRAD(grad, ln3_b)));
  /* cross-attention (da reused: zeroed again) */
  sdw_tensor dx1;
  SDW_TRY(sdw_unet_alloc(arena, ctx, &dx1, dy->ndim, dy->shape));
  SDW_TRY(ops->copy(ctx, &dx2, &dx1));
  SDW_TRY(ops->fill(ctx, &da, 0.0f));
  SDW_TRY(sdw_unet_attention_backward(ctx, arena, &m->attn2, GRAD(grad, attn2), &sv->a2, context,
                                      &sv->s2, &dx2, &da, dcontext));
  SDW_TRY(ops->layer_norm_backward(ctx, &sv->x1, &m->ln2_w, &sv->mean2, &sv->rstd2, &da, &dx1,
                                   GRAD(grad, ln2_w), GRAD(grad, ln2_b)));
  /* self-attention: q, k and v all come from a1, so all three sum into da */
  if (dx) SDW_TRY(ops->axpby(ctx, 1.0f, &dx1, 1.0f, dx));
  SDW_TRY(ops->fill(ctx, &da, 0.0f));
  SDW_TRY(sdw_unet_attention_backward(ctx, arena, &m->attn1, GRAD(grad, attn1), &sv->a1, &sv->a1,
                                      &sv->s1, &dx1, &da, &da));
  SDW_TRY(ops->layer_norm_backward(ctx, &sv->x0, &m->ln1_w, &sv->mean1, &sv->rstd1, &da, dx,
                                   GRAD(grad, ln1_w), GRAD(grad, ln1_b)));
  return SDW_OK;
}

sdw_status sdw_unet_tblock_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_tblock *m,
                                    sdw_unet_tblock *grad, const sdw_tensor *context,
                                    const sdw_unet_tblock_saved *saved, const sdw_tensor *dy,
                                    sdw_tensor *dx, sdw_tensor *dcontext) {
  WITH_MARK(arena, tblock_backward_impl(ctx, arena, m, grad, context, saved, dy, dx, dcontext));
}

/* --- transformer ---------------------------------------------------------- */

void sdw_unet_transformer_declare(sdw_params *p, sdw_unet_transformer *m, sdw_unet_style style) {
  char buf[SDW_PARAM_NAME_MAX];
  const int64_t C = m->channels;
  const char *pre = m->prefix;
  m->norm_w = take1(p, C, pre, "norm.weight");
  m->norm_b = take1(p, C, pre, "norm.bias");
  if (m->linear_projection)
    m->proj_in_w = take2(p, C, C, pre, "proj_in.weight");
  else
    m->proj_in_w = take4(p, C, C, 1, 1, pre, "proj_in.weight");
  m->proj_in_b = take1(p, C, pre, "proj_in.bias");
  if (style == SDW_UNET_STYLE_SEED) {
    /* the seed registers proj_out before its (single) TransformerBlock */
    SDW_ASSERT(m->depth == 1);
    m->proj_out_w = take4(p, C, C, 1, 1, pre, "proj_out.weight");
    m->proj_out_b = take1(p, C, pre, "proj_out.bias");
    sdw_unet_tblock_declare(p, &m->blocks[0], style, join(buf, sizeof buf, pre, "tfm"));
    return;
  }
  for (int d = 0; d < m->depth; d++) {
    char block[SDW_PARAM_NAME_MAX];
    int n = snprintf(block, sizeof block, "%s.transformer_blocks.%d", pre, d);
    SDW_ASSERT(n > 0 && (size_t)n < sizeof block);
    sdw_unet_tblock_declare(p, &m->blocks[d], style, block);
  }
  if (m->linear_projection)
    m->proj_out_w = take2(p, C, C, pre, "proj_out.weight");
  else
    m->proj_out_w = take4(p, C, C, 1, 1, pre, "proj_out.weight");
  m->proj_out_b = take1(p, C, pre, "proj_out.bias");
}

sdw_status sdw_unet_transformer_forward(sdw_ctx *ctx, sdw_arena *arena,
                                        const sdw_unet_transformer *m, const sdw_tensor *x,
                                        const sdw_tensor *context, sdw_tensor *y,
                                        sdw_unet_transformer_saved *saved) {
  const sdw_backend *ops = ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], T = H * W;
  SDW_ASSERT(C == m->channels);
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor n, nchw, tok, mean, rstd;
  SDW_TRY(alloc4(arena, ctx, &n, N, C, H, W));
  SDW_TRY(alloc4(arena, ctx, &nchw, N, C, H, W));
  SDW_TRY(alloc3(arena, ctx, &tok, N, T, C));
  if (saved) {
    memset(saved, 0, sizeof *saved);
    saved->x = *x;
    SDW_TRY(alloc2(arena, ctx, &mean, N, m->groups));
    SDW_TRY(alloc2(arena, ctx, &rstd, N, m->groups));
    saved->mean = mean;
    saved->rstd = rstd;
    saved->blocks = sdw_arena_calloc(arena, (size_t)m->depth * sizeof *saved->blocks);
    if (!saved->blocks) return SDW_ERR_OUT_OF_MEMORY;
  }
  SDW_TRY(ops->group_norm_forward(ctx, x, &m->norm_w, &m->norm_b, m->groups, m->gn_eps, &n,
                                  saved ? &mean : NULL, saved ? &rstd : NULL));
  /* tokens in: conv then NCHW -> NLC, or NCHW -> NLC then linear */
  sdw_tensor nchw_as_tok = sdw_unet_view(&nchw, 3, (int64_t[]){N, T, C});
  if (m->linear_projection) {
    SDW_TRY(ops->nchw_to_nlc(ctx, &n, &nchw_as_tok));
    SDW_TRY(ops->linear_forward(ctx, &nchw_as_tok, &m->proj_in_w, &m->proj_in_b, &tok));
    if (saved) saved->proj_in_in = nchw_as_tok;
  } else {
    SDW_TRY(ops->conv2d_forward(ctx, &n, &m->proj_in_w, &m->proj_in_b, 1, 0, &nchw));
    SDW_TRY(ops->nchw_to_nlc(ctx, &nchw, &tok));
    if (saved) saved->proj_in_in = n;
  }
  /* the blocks: in place in inference, a fresh output per block in training */
  sdw_tensor cur = tok;
  for (int d = 0; d < m->depth; d++) {
    if (saved) {
      sdw_tensor next;
      SDW_TRY(alloc3(arena, ctx, &next, N, T, C));
      SDW_TRY(sdw_unet_tblock_forward(ctx, arena, &m->blocks[d], &cur, context, &next,
                                      &saved->blocks[d]));
      cur = next;
    } else {
      SDW_TRY(sdw_unet_tblock_forward(ctx, arena, &m->blocks[d], &cur, context, &cur, NULL));
    }
  }
  /* tokens out, into o (NCHW), then the residual */
  sdw_tensor o;
  if (saved)
    SDW_TRY(alloc4(arena, ctx, &o, N, C, H, W));
  else
    o = n; /* the GroupNorm output is dead by now */
  if (m->linear_projection) {
    sdw_tensor lin;
    if (saved)
      SDW_TRY(alloc3(arena, ctx, &lin, N, T, C));
    else
      lin = nchw_as_tok;
    SDW_TRY(ops->linear_forward(ctx, &cur, &m->proj_out_w, &m->proj_out_b, &lin));
    SDW_TRY(ops->nlc_to_nchw(ctx, &lin, &o));
    if (saved) saved->proj_out_in = cur;
  } else {
    sdw_tensor u;
    if (saved)
      SDW_TRY(alloc4(arena, ctx, &u, N, C, H, W));
    else
      u = nchw;
    SDW_TRY(ops->nlc_to_nchw(ctx, &cur, &u));
    SDW_TRY(ops->conv2d_forward(ctx, &u, &m->proj_out_w, &m->proj_out_b, 1, 0, &o));
    if (saved) saved->proj_out_in = u;
  }
  SDW_TRY(ops->add(ctx, &o, x, y));
  if (!saved) sdw_arena_reset_to(arena, mark);
  return SDW_OK;
}

/* Reverse of: n = GN(x); tokens = proj_in(n); blocks; o = proj_out(tokens);
 * y = o + x. */
static sdw_status transformer_backward_impl(sdw_ctx *ctx, sdw_arena *arena,
                                            const sdw_unet_transformer *m,
                                            sdw_unet_transformer *grad, const sdw_tensor *context,
                                            const sdw_unet_transformer_saved *sv,
                                            const sdw_tensor *dy, sdw_tensor *dx,
                                            sdw_tensor *dcontext) {
  const sdw_backend *ops = ctx->ops;
  const int64_t N = sv->x.shape[0], C = sv->x.shape[1], H = sv->x.shape[2], W = sv->x.shape[3];
  const int64_t T = H * W;
  /* the residual */
  if (dx) SDW_TRY(ops->axpby(ctx, 1.0f, dy, 1.0f, dx));
  /* tokens out: dcur = d(last block output) */
  sdw_tensor dcur, tmp;
  SDW_TRY(alloc3(arena, ctx, &dcur, N, T, C));
  SDW_TRY(ops->fill(ctx, &dcur, 0.0f));
  if (m->linear_projection) {
    SDW_TRY(alloc3(arena, ctx, &tmp, N, T, C)); /* d(proj_out output tokens) */
    SDW_TRY(ops->fill(ctx, &tmp, 0.0f));
    SDW_TRY(ops->nlc_to_nchw_backward(ctx, dy, &tmp));
    SDW_TRY(ops->linear_backward(ctx, &sv->proj_out_in, &m->proj_out_w, &tmp, &dcur,
                                 GRAD(grad, proj_out_w), GRAD(grad, proj_out_b)));
  } else {
    SDW_TRY(alloc4(arena, ctx, &tmp, N, C, H, W)); /* d(proj_out input, NCHW) */
    SDW_TRY(ops->fill(ctx, &tmp, 0.0f));
    SDW_TRY(ops->conv2d_backward(ctx, &sv->proj_out_in, &m->proj_out_w, dy, 1, 0, &tmp,
                                 GRAD(grad, proj_out_w), GRAD(grad, proj_out_b)));
    SDW_TRY(ops->nlc_to_nchw_backward(ctx, &tmp, &dcur));
  }
  /* the blocks, last first; block d's input is saved->blocks[d].x0 */
  sdw_tensor dprev;
  SDW_TRY(alloc3(arena, ctx, &dprev, N, T, C));
  for (int d = m->depth - 1; d >= 0; d--) {
    SDW_TRY(ops->fill(ctx, &dprev, 0.0f));
    SDW_TRY(sdw_unet_tblock_backward(ctx, arena, &m->blocks[d], grad ? &grad->blocks[d] : NULL,
                                     context, &sv->blocks[d], &dcur, &dprev, dcontext));
    sdw_tensor t = dcur;
    dcur = dprev;
    dprev = t;
  }
  /* tokens in: dcur = d(proj_in output tokens) -> dn = d(GroupNorm output) */
  sdw_tensor dn;
  SDW_TRY(alloc4(arena, ctx, &dn, N, C, H, W));
  SDW_TRY(ops->fill(ctx, &dn, 0.0f));
  if (m->linear_projection) {
    sdw_tensor dt0 = dprev; /* free: d(proj_in input tokens) */
    SDW_TRY(ops->fill(ctx, &dt0, 0.0f));
    SDW_TRY(ops->linear_backward(ctx, &sv->proj_in_in, &m->proj_in_w, &dcur, &dt0,
                                 GRAD(grad, proj_in_w), GRAD(grad, proj_in_b)));
    SDW_TRY(ops->nchw_to_nlc_backward(ctx, &dt0, &dn));
  } else {
    SDW_TRY(ops->fill(ctx, &tmp, 0.0f)); /* d(proj_in output, NCHW) */
    SDW_TRY(ops->nchw_to_nlc_backward(ctx, &dcur, &tmp));
    SDW_TRY(ops->conv2d_backward(ctx, &sv->proj_in_in, &m->proj_in_w, &tmp, 1, 0, &dn,
                                 GRAD(grad, proj_in_w), GRAD(grad, proj_in_b)));
  }
  return ops->group_norm_backward(ctx, &sv->x, &m->norm_w, &sv->mean, &sv->rstd, &dn, m->groups, dx,
                                  GRAD(grad, norm_w), GRAD(grad, norm_b));
}

sdw_status sdw_unet_transformer_backward(sdw_ctx *ctx, sdw_arena *arena,
                                         const sdw_unet_transformer *m, sdw_unet_transformer *grad,
                                         const sdw_tensor *context,
                                         const sdw_unet_transformer_saved *saved,
                                         const sdw_tensor *dy, sdw_tensor *dx,
                                         sdw_tensor *dcontext) {
  WITH_MARK(arena,
            transformer_backward_impl(ctx, arena, m, grad, context, saved, dy, dx, dcontext));
}

/* --- ResBlock --------------------------------------------------------------- */

void sdw_unet_resblock_declare(sdw_params *p, sdw_unet_resblock *m, sdw_unet_style style) {
  const int64_t I = m->in_ch, O = m->out_ch;
  const char *pre = m->prefix;
  const bool seed = style == SDW_UNET_STYLE_SEED;
  if (seed) {
    m->temb_w = take2(p, O, m->temb_dim, pre, "time_mlp.1.weight");
    m->temb_b = take1(p, O, pre, "time_mlp.1.bias");
  }
  m->norm1_w = take1(p, I, pre, "norm1.weight");
  m->norm1_b = take1(p, I, pre, "norm1.bias");
  m->conv1_w = take4(p, O, I, 3, 3, pre, "conv1.weight");
  m->conv1_b = take1(p, O, pre, "conv1.bias");
  if (!seed) {
    m->temb_w = take2(p, O, m->temb_dim, pre, "time_emb_proj.weight");
    m->temb_b = take1(p, O, pre, "time_emb_proj.bias");
  }
  m->norm2_w = take1(p, O, pre, "norm2.weight");
  m->norm2_b = take1(p, O, pre, "norm2.bias");
  m->conv2_w = take4(p, O, O, 3, 3, pre, "conv2.weight");
  m->conv2_b = take1(p, O, pre, "conv2.bias");
  if (m->has_skip) {
    m->skip_w = take4(p, O, I, 1, 1, pre, seed ? "skip.weight" : "conv_shortcut.weight");
    m->skip_b = take1(p, O, pre, seed ? "skip.bias" : "conv_shortcut.bias");
  }
  if (m->inner) sdw_unet_transformer_declare(p, m->inner, style);
}

sdw_status sdw_unet_resblock_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                     const sdw_tensor *x, const sdw_tensor *temb_act,
                                     const sdw_tensor *context, sdw_tensor *y,
                                     sdw_unet_resblock_saved *saved) {
  const sdw_backend *ops = ctx->ops;
  const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
  const int64_t I = m->in_ch, O = m->out_ch, G = m->groups;
  SDW_ASSERT(x->shape[1] == I && y->shape[1] == O && y->data != x->data);
  const bool run_inner = m->inner && context && context->data;
  const bool full = saved && !saved->checkpointed;
  if (saved) {
    const bool checkpointed = saved->checkpointed;
    memset(saved, 0, sizeof *saved);
    saved->checkpointed = checkpointed;
    saved->x = *x;
    saved->ran_inner = run_inner;
  }
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor n1, a1, h1, tb, n2, a2, h2;
  sdw_tensor mean1 = {0}, rstd1 = {0}, mean2 = {0}, rstd2 = {0};
  SDW_TRY(alloc4(arena, ctx, &n1, N, I, H, W));
  SDW_TRY(alloc4(arena, ctx, &h1, N, O, H, W));
  SDW_TRY(alloc2(arena, ctx, &tb, N, O));
  SDW_TRY(alloc4(arena, ctx, &n2, N, O, H, W));
  if (full) {
    SDW_TRY(alloc4(arena, ctx, &a1, N, I, H, W));
    SDW_TRY(alloc4(arena, ctx, &a2, N, O, H, W));
    SDW_TRY(alloc4(arena, ctx, &h2, N, O, H, W));
    SDW_TRY(alloc2(arena, ctx, &mean1, N, G));
    SDW_TRY(alloc2(arena, ctx, &rstd1, N, G));
    SDW_TRY(alloc2(arena, ctx, &mean2, N, G));
    SDW_TRY(alloc2(arena, ctx, &rstd2, N, G));
  } else {
    /* inference: activations in place, conv2 writes over the dead h1 */
    a1 = n1;
    a2 = n2;
    h2 = h1;
  }
  SDW_TRY(ops->group_norm_forward(ctx, x, &m->norm1_w, &m->norm1_b, (int)G, m->eps, &n1,
                                  full ? &mean1 : NULL, full ? &rstd1 : NULL));
  SDW_TRY(ops->silu_forward(ctx, &n1, &a1));
  SDW_TRY(ops->conv2d_forward(ctx, &a1, &m->conv1_w, &m->conv1_b, 1, 1, &h1));
  SDW_TRY(ops->linear_forward(ctx, temb_act, &m->temb_w, &m->temb_b, &tb));
  SDW_TRY(ops->add_channel_bias(ctx, &h1, &tb, &h1));
  SDW_TRY(ops->group_norm_forward(ctx, &h1, &m->norm2_w, &m->norm2_b, (int)G, m->eps, &n2,
                                  full ? &mean2 : NULL, full ? &rstd2 : NULL));
  SDW_TRY(ops->silu_forward(ctx, &n2, &a2));
  SDW_TRY(ops->conv2d_forward(ctx, &a2, &m->conv2_w, &m->conv2_b, 1, 1, &h2));
  /* seed: the SpatialTransformer sits inside the residual branch and is
   * skipped (self-attention too) when there is no context */
  sdw_tensor h = h2;
  if (run_inner) {
    if (full) {
      SDW_TRY(alloc4(arena, ctx, &h, N, O, H, W));
      SDW_TRY(sdw_unet_transformer_forward(ctx, arena, m->inner, &h2, context, &h, &saved->inner));
    } else {
      SDW_TRY(sdw_unet_transformer_forward(ctx, arena, m->inner, &h2, context, &h2, NULL));
    }
  }
  if (m->has_skip) {
    SDW_TRY(ops->conv2d_forward(ctx, x, &m->skip_w, &m->skip_b, 1, 0, y));
    SDW_TRY(ops->add(ctx, y, &h, y));
  } else {
    SDW_TRY(ops->add(ctx, x, &h, y));
  }
  if (full) {
    saved->mean1 = mean1;
    saved->rstd1 = rstd1;
    saved->n1 = n1;
    saved->a1 = a1;
    saved->h1 = h1;
    saved->mean2 = mean2;
    saved->rstd2 = rstd2;
    saved->n2 = n2;
    saved->a2 = a2;
    saved->h2 = h2;
  } else {
    sdw_arena_reset_to(arena, mark);
  }
  return SDW_OK;
}

/* Reverse of the full record's forward (see sdw_unet_resblock_forward). */
static sdw_status resblock_backward_full(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                         sdw_unet_resblock *grad, const sdw_tensor *temb_act,
                                         const sdw_tensor *context,
                                         const sdw_unet_resblock_saved *sv, const sdw_tensor *dy,
                                         sdw_tensor *dx, sdw_tensor *dtemb_act,
                                         sdw_tensor *dcontext) {
  const sdw_backend *ops = ctx->ops;
  const int G = m->groups;
  /* y = h + skip(x) */
  if (m->has_skip) {
    SDW_TRY(ops->conv2d_backward(ctx, &sv->x, &m->skip_w, dy, 1, 0, dx, GRAD(grad, skip_w),
                                 GRAD(grad, skip_b)));
  } else if (dx) {
    SDW_TRY(ops->axpby(ctx, 1.0f, dy, 1.0f, dx));
  }
  /* h = inner(h2) or h2 */
  sdw_tensor dh2 = *dy;
  if (sv->ran_inner) {
    SDW_TRY(alloc_zero_like(arena, ctx, &dh2, &sv->h2));
    SDW_TRY(sdw_unet_transformer_backward(ctx, arena, m->inner, grad ? grad->inner : NULL, context,
                                          &sv->inner, dy, &dh2, dcontext));
  }
  /* h2 = conv2(a2), a2 = silu(n2), n2 = GN2(h1) */
  sdw_tensor dA, dB; /* two [N, out, H, W] accumulators, reused */
  SDW_TRY(alloc_zero_like(arena, ctx, &dA, &sv->a2));
  SDW_TRY(alloc_zero_like(arena, ctx, &dB, &sv->n2));
  SDW_TRY(ops->conv2d_backward(ctx, &sv->a2, &m->conv2_w, &dh2, 1, 1, &dA, GRAD(grad, conv2_w),
                               GRAD(grad, conv2_b)));
  SDW_TRY(ops->silu_backward(ctx, &sv->n2, &dA, &dB));
  SDW_TRY(ops->fill(ctx, &dA, 0.0f)); /* now d h1 */
  SDW_TRY(ops->group_norm_backward(ctx, &sv->h1, &m->norm2_w, &sv->mean2, &sv->rstd2, &dB, G, &dA,
                                   GRAD(grad, norm2_w), GRAD(grad, norm2_b)));
  /* h1 = conv1(a1) + Linear(temb_act)[:, :, None, None] */
  if (dtemb_act || grad) {
    sdw_tensor dtb;
    SDW_TRY(sdw_unet_alloc(arena, ctx, &dtb, 2, (int64_t[]){sv->h1.shape[0], m->out_ch}));
    SDW_TRY(ops->fill(ctx, &dtb, 0.0f));
    SDW_TRY(ops->add_channel_bias_backward(ctx, &dA, &dtb));
    SDW_TRY(ops->linear_backward(ctx, temb_act, &m->temb_w, &dtb, dtemb_act, GRAD(grad, temb_w),
                                 GRAD(grad, temb_b)));
  }
  /* a1 = silu(n1), n1 = GN1(x) */
  sdw_tensor dC, dD; /* [N, in, H, W] */
  SDW_TRY(alloc_zero_like(arena, ctx, &dC, &sv->a1));
  SDW_TRY(alloc_zero_like(arena, ctx, &dD, &sv->n1));
  SDW_TRY(ops->conv2d_backward(ctx, &sv->a1, &m->conv1_w, &dA, 1, 1, &dC, GRAD(grad, conv1_w),
                               GRAD(grad, conv1_b)));
  SDW_TRY(ops->silu_backward(ctx, &sv->n1, &dC, &dD));
  return ops->group_norm_backward(ctx, &sv->x, &m->norm1_w, &sv->mean1, &sv->rstd1, &dD, G, dx,
                                  GRAD(grad, norm1_w), GRAD(grad, norm1_b));
}

static sdw_status resblock_backward_impl(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                         sdw_unet_resblock *grad, const sdw_tensor *temb_act,
                                         const sdw_tensor *context,
                                         const sdw_unet_resblock_saved *sv, const sdw_tensor *dy,
                                         sdw_tensor *dx, sdw_tensor *dtemb_act,
                                         sdw_tensor *dcontext) {
  if (!sv->checkpointed)
    return resblock_backward_full(ctx, arena, m, grad, temb_act, context, sv, dy, dx, dtemb_act,
                                  dcontext);
  /* Recompute: the same forward as an uncheckpointed training run, so the
   * record holds the same values bit for bit. The context is passed only
   * when the first forward used it (ran_inner is not known for a
   * checkpointed record, but the forward decides from m->inner and the
   * context alone, as it did the first time). */
  sdw_unet_resblock_saved full;
  memset(&full, 0, sizeof full);
  sdw_tensor y;
  SDW_TRY(sdw_unet_alloc(arena, ctx, &y, dy->ndim, dy->shape));
  SDW_TRY(sdw_unet_resblock_forward(ctx, arena, m, &sv->x, temb_act, context, &y, &full));
  return resblock_backward_full(ctx, arena, m, grad, temb_act, context, &full, dy, dx, dtemb_act,
                                dcontext);
}

sdw_status sdw_unet_resblock_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_resblock *m,
                                      sdw_unet_resblock *grad, const sdw_tensor *temb_act,
                                      const sdw_tensor *context,
                                      const sdw_unet_resblock_saved *saved, const sdw_tensor *dy,
                                      sdw_tensor *dx, sdw_tensor *dtemb_act, sdw_tensor *dcontext) {
  WITH_MARK(arena, resblock_backward_impl(ctx, arena, m, grad, temb_act, context, saved, dy, dx,
                                          dtemb_act, dcontext));
}

/* --- convolutions ------------------------------------------------------------ */

void sdw_unet_conv_declare(sdw_params *p, sdw_unet_conv *m) {
  const int64_t k = m->kernel;
  if (m->kind == SDW_UNET_CONV_TRANSPOSE)
    m->w = take4(p, m->in_ch, m->out_ch, k, k, m->prefix, "weight");
  else
    m->w = take4(p, m->out_ch, m->in_ch, k, k, m->prefix, "weight");
  m->b = take1(p, m->out_ch, m->prefix, "bias");
}

int sdw_unet_conv_out_size(const sdw_unet_conv *m, int hw) {
  switch (m->kind) {
  case SDW_UNET_CONV_PLAIN: return (hw + 2 * m->pad - m->kernel) / m->stride + 1;
  case SDW_UNET_CONV_TRANSPOSE: return (hw - 1) * m->stride - 2 * m->pad + m->kernel;
  case SDW_UNET_CONV_UPSAMPLE: return 2 * hw + 2 * m->pad - m->kernel + 1;
  }
  return 0;
}

sdw_status sdw_unet_conv_forward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_conv *m,
                                 const sdw_tensor *x, sdw_tensor *y, sdw_unet_conv_saved *saved) {
  const sdw_backend *ops = ctx->ops;
  if (saved) {
    memset(saved, 0, sizeof *saved);
    saved->x = *x;
  }
  switch (m->kind) {
  case SDW_UNET_CONV_PLAIN: return ops->conv2d_forward(ctx, x, &m->w, &m->b, m->stride, m->pad, y);
  case SDW_UNET_CONV_TRANSPOSE:
    return ops->conv_transpose2d_forward(ctx, x, &m->w, &m->b, m->stride, m->pad, y);
  case SDW_UNET_CONV_UPSAMPLE: {
    const size_t mark = sdw_arena_mark(arena);
    sdw_tensor up;
    SDW_TRY(alloc4(arena, ctx, &up, x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]));
    SDW_TRY(ops->upsample_nearest2x_forward(ctx, x, &up));
    SDW_TRY(ops->conv2d_forward(ctx, &up, &m->w, &m->b, m->stride, m->pad, y));
    if (saved)
      saved->up = up;
    else
      sdw_arena_reset_to(arena, mark);
    return SDW_OK;
  }
  }
  return SDW_ERR_INTERNAL;
}

static sdw_status conv_backward_impl(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_conv *m,
                                     sdw_unet_conv *grad, const sdw_unet_conv_saved *sv,
                                     const sdw_tensor *dy, sdw_tensor *dx) {
  const sdw_backend *ops = ctx->ops;
  switch (m->kind) {
  case SDW_UNET_CONV_PLAIN:
    return ops->conv2d_backward(ctx, &sv->x, &m->w, dy, m->stride, m->pad, dx, GRAD(grad, w),
                                GRAD(grad, b));
  case SDW_UNET_CONV_TRANSPOSE:
    return ops->conv_transpose2d_backward(ctx, &sv->x, &m->w, dy, m->stride, m->pad, dx,
                                          GRAD(grad, w), GRAD(grad, b));
  case SDW_UNET_CONV_UPSAMPLE: {
    sdw_tensor dup = {0};
    if (dx) SDW_TRY(alloc_zero_like(arena, ctx, &dup, &sv->up));
    SDW_TRY(ops->conv2d_backward(ctx, &sv->up, &m->w, dy, m->stride, m->pad, dx ? &dup : NULL,
                                 GRAD(grad, w), GRAD(grad, b)));
    return dx ? ops->upsample_nearest2x_backward(ctx, &dup, dx) : SDW_OK;
  }
  }
  return SDW_ERR_INTERNAL;
}

sdw_status sdw_unet_conv_backward(sdw_ctx *ctx, sdw_arena *arena, const sdw_unet_conv *m,
                                  sdw_unet_conv *grad, const sdw_unet_conv_saved *saved,
                                  const sdw_tensor *dy, sdw_tensor *dx) {
  WITH_MARK(arena, conv_backward_impl(ctx, arena, m, grad, saved, dy, dx));
}
