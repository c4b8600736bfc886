/* AdamW with global-norm clipping and EMA over flat buffers (optimizer.h). */
#include "core/train/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

sdw_optimizer_config sdw_optimizer_config_seed(void) {
  return (sdw_optimizer_config){.beta1 = 0.9,
                                .beta2 = 0.999,
                                .eps = 1e-8,
                                .weight_decay = 1e-2,
                                .decay_norms_and_biases = true,
                                .max_grad_norm = 1.0,
                                .ema = true,
                                .ema_decay = 0.9999};
}

static sdw_tensor flat_view(const sdw_ctx *ctx, const float *p, size_t n) {
  sdw_tensor t = sdw_tensor_1d((void *)p, SDW_F32, (int64_t)n);
  t.device = (sdw_device){ctx->ops->device, 0};
  return t;
}

static sdw_status check_config(const sdw_optimizer_config *c) {
  if (!(c->beta1 >= 0.0 && c->beta1 < 1.0) || !(c->beta2 >= 0.0 && c->beta2 < 1.0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "AdamW betas (%g, %g) must lie in [0, 1)", c->beta1,
                    c->beta2);
  if (!(c->eps > 0.0) || !(c->weight_decay >= 0.0) || !isfinite(c->weight_decay))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "AdamW eps %g must be positive and weight decay %g non-negative", c->eps,
                    c->weight_decay);
  if (c->ema && !(c->ema_decay >= 0.0 && c->ema_decay <= 1.0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "EMA decay %g must lie in [0, 1]", c->ema_decay);
  return SDW_OK;
}

void sdw_optimizer_free(sdw_optimizer *o) {
  if (!o) return;
  if (o->ctx) {
    if (o->m) o->ctx->ops->free(o->ctx, o->m);
    if (o->v) o->ctx->ops->free(o->ctx, o->v);
    if (o->ema) o->ctx->ops->free(o->ctx, o->ema);
  }
  free(o->decay);
  memset(o, 0, sizeof *o);
}

sdw_status sdw_optimizer_init(sdw_optimizer *o, sdw_ctx *ctx, const sdw_params *params,
                              const sdw_optimizer_config *cfg) {
  memset(o, 0, sizeof *o);
  SDW_TRY(check_config(cfg));
  SDW_ASSERT(params->flat != NULL);
  o->ctx = ctx;
  o->params = params;
  o->cfg = *cfg;
  const size_t n = params->total ? params->total : 1, bytes = n * sizeof(float);
  const sdw_backend *ops = ctx->ops;
  sdw_status st = SDW_OK;
  o->decay = malloc((size_t)(params->count ? params->count : 1) * sizeof *o->decay);
  if (!o->decay) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the optimizer");
  for (int i = 0; st == SDW_OK && i < params->count; i++)
    o->decay[i] = cfg->decay_norms_and_biases || params->items[i].value.ndim >= 2;
  if (st == SDW_OK) st = ops->alloc(ctx, bytes, (void **)&o->m);
  if (st == SDW_OK) st = ops->alloc(ctx, bytes, (void **)&o->v);
  if (st == SDW_OK && cfg->ema) st = ops->alloc(ctx, bytes, (void **)&o->ema);
  if (st == SDW_OK) {
    sdw_tensor m = flat_view(ctx, o->m, n), v = flat_view(ctx, o->v, n);
    st = ops->fill(ctx, &m, 0.0f);
    if (st == SDW_OK) st = ops->fill(ctx, &v, 0.0f);
  }
  if (st == SDW_OK && o->ema) {
    sdw_tensor p = flat_view(ctx, params->flat, n), e = flat_view(ctx, o->ema, n);
    st = ops->copy(ctx, &p, &e);
  }
  if (st != SDW_OK) sdw_optimizer_free(o);
  return st;
}

sdw_status sdw_optimizer_grad_norm(sdw_ctx *ctx, const sdw_params *params, const float *grads,
                                   double *norm) {
  sdw_tensor g = flat_view(ctx, grads, params->total ? params->total : 1);
  double ss = 0.0;
  SDW_TRY(ctx->ops->sum_squares(ctx, &g, &ss));
  *norm = sqrt(ss);
  return SDW_OK;
}

sdw_status sdw_optimizer_step(sdw_optimizer *o, sdw_params *params, const float *grads, double lr,
                              double loss, sdw_optimizer_report *report) {
  SDW_ASSERT(params == o->params && params->flat != NULL);
  sdw_ctx *ctx = o->ctx;
  const sdw_backend *ops = ctx->ops;
  sdw_optimizer_report r = {0};
  r.lr = lr;
  SDW_TRY(sdw_optimizer_grad_norm(ctx, params, grads, &r.grad_norm));
  /* a NaN anywhere makes the sum of squares NaN, an Inf makes it Inf */
  if (!isfinite(loss) || !isfinite(r.grad_norm)) {
    r.skipped = true;
    r.clip_coef = 1.0;
    if (report) *report = r;
    return SDW_OK;
  }
  if (!(lr >= 0.0) || !isfinite(lr))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "learning rate %g is not a usable number", lr);
  /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 */
  r.clip_coef = 1.0;
  if (o->cfg.max_grad_norm > 0.0) {
    double coef = o->cfg.max_grad_norm / (r.grad_norm + 1e-6);
    if (coef < 1.0) r.clip_coef = coef;
  }
  o->step++;
  sdw_adamw_params ap = {.lr = lr,
                         .beta1 = o->cfg.beta1,
                         .beta2 = o->cfg.beta2,
                         .eps = o->cfg.eps,
                         .weight_decay = o->cfg.weight_decay,
                         .step = o->step,
                         .grad_scale = (float)r.clip_coef};
  /* Runs of consecutive parameters with the same decay setting are one
   * range of the flat buffers (padding between them is zero in every
   * buffer and stays zero under AdamW). */
  for (int i = 0; i < params->count;) {
    int j = i + 1;
    while (j < params->count && o->decay[j] == o->decay[i])
      j++;
    const size_t begin = params->items[i].offset;
    const size_t end = j < params->count ? params->items[j].offset : params->total;
    sdw_adamw_params run = ap;
    if (!o->decay[i]) run.weight_decay = 0.0;
    sdw_tensor p = flat_view(ctx, params->flat + begin, end - begin);
    sdw_tensor g = flat_view(ctx, grads + begin, end - begin);
    sdw_tensor m = flat_view(ctx, o->m + begin, end - begin);
    sdw_tensor v = flat_view(ctx, o->v + begin, end - begin);
    SDW_TRY(ops->adamw_step(ctx, &p, &g, &m, &v, &run));
    i = j;
  }
  if (o->ema) {
    o->ema_updates++;
    const double n = (double)o->ema_updates;
    double d = (1.0 + n) / (10.0 + n);
    if (d > o->cfg.ema_decay) d = o->cfg.ema_decay;
    r.ema_decay = d;
    sdw_tensor e = flat_view(ctx, o->ema, params->total),
               p = flat_view(ctx, params->flat, params->total);
    if (params->total) SDW_TRY(ops->ema_update(ctx, &e, &p, d));
  }
  if (report) *report = r;
  return SDW_OK;
}
