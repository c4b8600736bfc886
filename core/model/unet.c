/* The UNet: program building (the seed topology here, sd15 in
 * unet_sd15.c), parameter creation, native-name loading, and the forward
 * that walks the program. */
#include "core/model/unet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/safetensors.h"
#include "core/model/unet_blocks.h"
#include "core/model/unet_ldm.h"
#include "core/model/weights.h"

/* --- planning ------------------------------------------------------------ */

/* Grows *arr (element size sz) to hold one more; returns the new index. */
static int grow(void **arr, int *count, size_t sz) {
  void *p = realloc(*arr, (size_t)(*count + 1) * sz);
  SDW_ASSERT_MSG(p != NULL, "out of memory planning the UNet");
  *arr = p;
  memset((char *)p + (size_t)*count * sz, 0, sz);
  return (*count)++;
}

static void set_prefix(char *dst, const char *prefix) {
  size_t n = strlen(prefix);
  SDW_ASSERT_MSG(n < SDW_UNET_PREFIX_MAX, "module name too long: %s", prefix);
  memcpy(dst, prefix, n + 1);
}

int sdw_unet_add_node(sdw_unet *m, sdw_unet_node_kind kind, int index, int group) {
  int i = grow((void **)&m->nodes, &m->node_count, sizeof *m->nodes);
  m->nodes[i] = (sdw_unet_node){kind, index, group};
  return i;
}

int sdw_unet_add_res(sdw_unet *m, const char *prefix, int in_ch, int out_ch) {
  int i = grow((void **)&m->res, &m->res_count, sizeof *m->res);
  sdw_unet_resblock *r = &m->res[i];
  set_prefix(r->prefix, prefix);
  r->in_ch = in_ch;
  r->out_ch = out_ch;
  r->groups = m->cfg.norm_groups;
  r->eps = m->cfg.norm_eps;
  r->temb_dim = m->cfg.time_out_dim;
  r->has_skip = in_ch != out_ch;
  r->inner_index = -1;
  return i;
}

int sdw_unet_add_tfm(sdw_unet *m, const char *prefix, int channels, int heads, int depth) {
  int i = grow((void **)&m->tfm, &m->tfm_count, sizeof *m->tfm);
  sdw_unet_transformer *t = &m->tfm[i];
  set_prefix(t->prefix, prefix);
  t->channels = channels;
  t->groups = m->cfg.norm_groups;
  t->heads = heads;
  t->context_dim = m->cfg.context_dim;
  t->depth = depth;
  t->gn_eps = m->cfg.attn_norm_eps;
  t->linear_projection = m->cfg.linear_projection;
  t->first_block = m->tblock_count;
  for (int d = 0; d < depth; d++) {
    int b = grow((void **)&m->tblocks, &m->tblock_count, sizeof *m->tblocks);
    sdw_unet_tblock *k = &m->tblocks[b];
    k->dim = channels;
    k->ff_inner = 4 * channels;
    k->geglu = m->cfg.topology == SDW_UNET_SD15; /* seed: GELU MLP */
    k->ln_eps = m->cfg.layer_norm_eps;
    k->attn1 = (sdw_unet_attention){.dim = channels, .kv_dim = channels, .heads = heads};
    k->attn2 = (sdw_unet_attention){.dim = channels, .kv_dim = m->cfg.context_dim, .heads = heads};
  }
  return i;
}

int sdw_unet_add_conv(sdw_unet *m, const char *prefix, sdw_unet_conv_kind kind, int in_ch,
                      int out_ch, int kernel, int stride, int pad) {
  int i = grow((void **)&m->convs, &m->conv_count, sizeof *m->convs);
  sdw_unet_conv *c = &m->convs[i];
  set_prefix(c->prefix, prefix);
  c->kind = kind;
  c->in_ch = in_ch;
  c->out_ch = out_ch;
  c->kernel = kernel;
  c->stride = stride;
  c->pad = pad;
  return i;
}

/* printf into a prefix buffer */
#define PREFIX(buf, ...)                                                                           \
  do {                                                                                             \
    int n_ = snprintf((buf), sizeof(buf), __VA_ARGS__);                                            \
    SDW_ASSERT(n_ > 0 && (size_t)n_ < sizeof(buf));                                                \
  } while (0)

/* The seed's UNetModel (SEED.md §1.5): ModuleLists downs / mid / ups with
 * the stride-2 convs and ConvTranspose2d's numbered among the ResBlocks. */
sdw_status sdw_unet_plan_seed(sdw_unet *m) {
  const sdw_unet_config *c = &m->cfg;
  const int L = c->levels;
  char name[SDW_UNET_PREFIX_MAX];
  int cur = c->channels[0];
  sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                    sdw_unet_add_conv(m, "conv_in", SDW_UNET_CONV_PLAIN, c->in_channels, cur,
                                      c->conv_in_kernel, 1, (c->conv_in_kernel - 1) / 2),
                    0);
  int idx = 0;
  for (int l = 0; l < L; l++) {
    for (int b = 0; b < c->layers[l]; b++, idx++) {
      PREFIX(name, "downs.%d", idx);
      int r = sdw_unet_add_res(m, name, cur, c->channels[l]);
      if (c->attn_down[l]) {
        PREFIX(name, "downs.%d.tfm", idx);
        m->res[r].inner_index = sdw_unet_add_tfm(m, name, c->channels[l], c->heads[l], 1);
      }
      sdw_unet_add_node(m, SDW_UNET_NODE_RES, r, 0);
      sdw_unet_add_node(m, SDW_UNET_NODE_PUSH, -1, 0); /* skips only after ResBlocks */
      cur = c->channels[l];
    }
    if (l < L - 1) {
      PREFIX(name, "downs.%d", idx++);
      sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                        sdw_unet_add_conv(m, name, SDW_UNET_CONV_PLAIN, cur, cur, 3, 2, 1), 0);
    }
  }
  int r = sdw_unet_add_res(m, "mid.0", cur, cur);
  if (c->mid_attention)
    m->res[r].inner_index = sdw_unet_add_tfm(m, "mid.0.tfm", cur, c->heads[L - 1], 1);
  sdw_unet_add_node(m, SDW_UNET_NODE_RES, r, 0);
  sdw_unet_add_node(m, SDW_UNET_NODE_RES, sdw_unet_add_res(m, "mid.1", cur, cur), 0);
  idx = 0;
  for (int l = L - 1; l >= 0; l--) {
    for (int b = 0; b < c->layers[l]; b++, idx++) {
      sdw_unet_add_node(m, SDW_UNET_NODE_CAT, -1, 0);
      /* the input channels (cur + popped skip) are filled in by finish_plan */
      PREFIX(name, "ups.%d", idx);
      r = sdw_unet_add_res(m, name, -1, c->channels[l]);
      if (c->attn_up[l]) {
        PREFIX(name, "ups.%d.tfm", idx);
        m->res[r].inner_index = sdw_unet_add_tfm(m, name, c->channels[l], c->heads[l], 1);
      }
      sdw_unet_add_node(m, SDW_UNET_NODE_RES, r, 0);
      cur = c->channels[l];
    }
    if (l > 0) {
      PREFIX(name, "ups.%d", idx++);
      sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                        sdw_unet_add_conv(m, name, SDW_UNET_CONV_TRANSPOSE, cur, cur, 4, 2, 1), 0);
    }
  }
  return SDW_OK;
}

/* Walks the program with channel counts: fills ResBlock inputs after a
 * concat (in_ch == -1), checks every module's input width and the skip
 * stack, and records its depth. */
static sdw_status finish_plan(sdw_unet *m) {
  int stack[256], sp = 0, maxsp = 0;
  int cur = m->cfg.in_channels;
  for (int i = 0; i < m->node_count; i++) {
    const sdw_unet_node *n = &m->nodes[i];
    switch (n->kind) {
    case SDW_UNET_NODE_CONV: {
      sdw_unet_conv *c = &m->convs[n->index];
      if (c->in_ch != cur)
        return sdw_fail(SDW_ERR_INTERNAL, "UNet plan: %s expects %d channels, gets %d", c->prefix,
                        c->in_ch, cur);
      cur = c->out_ch;
      break;
    }
    case SDW_UNET_NODE_RES: {
      sdw_unet_resblock *r = &m->res[n->index];
      if (r->in_ch == -1) {
        r->in_ch = cur;
        r->has_skip = r->in_ch != r->out_ch;
      }
      if (r->in_ch != cur)
        return sdw_fail(SDW_ERR_UNSUPPORTED,
                        "UNet plan: %s expects %d input channels but the skip connections give "
                        "%d (inconsistent layers_per_block?)",
                        r->prefix, r->in_ch, cur);
      cur = r->out_ch;
      break;
    }
    case SDW_UNET_NODE_TFM:
      if (m->tfm[n->index].channels != cur)
        return sdw_fail(SDW_ERR_INTERNAL, "UNet plan: %s channel mismatch",
                        m->tfm[n->index].prefix);
      break;
    case SDW_UNET_NODE_PUSH:
      if (sp == (int)(sizeof stack / sizeof stack[0]))
        return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: more than %d skip connections", sp);
      stack[sp++] = cur;
      if (sp > maxsp) maxsp = sp;
      break;
    case SDW_UNET_NODE_CAT:
      if (sp == 0) return sdw_fail(SDW_ERR_INTERNAL, "UNet plan: skip stack underflow");
      cur += stack[--sp];
      break;
    }
  }
  if (sp != 0) return sdw_fail(SDW_ERR_INTERNAL, "UNet plan: %d skips left unused", sp);
  if (cur != m->cfg.channels[0])
    return sdw_fail(SDW_ERR_INTERNAL, "UNet plan: ends with %d channels", cur);
  m->max_skips = maxsp;
  /* GroupNorm widths (a ResBlock's norm1 sees the concatenated input) */
  for (int i = 0; i < m->res_count; i++) {
    const sdw_unet_resblock *r = &m->res[i];
    if (r->in_ch % r->groups || r->out_ch % r->groups)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "UNet config: %s has %d -> %d channels, not divisible into %d groups",
                      r->prefix, r->in_ch, r->out_ch, r->groups);
  }
  /* bind the module cross-references now that the arrays are final */
  for (int i = 0; i < m->res_count; i++)
    m->res[i].inner = m->res[i].inner_index >= 0 ? &m->tfm[m->res[i].inner_index] : NULL;
  for (int i = 0; i < m->tfm_count; i++)
    m->tfm[i].blocks = &m->tblocks[m->tfm[i].first_block];
  return SDW_OK;
}

void sdw_unet_declare_seed(sdw_unet *m, sdw_params *p) {
  const sdw_unet_config *c = &m->cfg;
  /* state_dict order: t_emb, conv_in, downs, mid, ups, norm_out, conv_out */
  m->time_w1 =
      sdw_params_take(p, 2, (int64_t[]){c->time_hidden_dim, c->time_in_dim}, "t_emb.0.weight");
  m->time_b1 = sdw_params_take(p, 1, (int64_t[]){c->time_hidden_dim}, "t_emb.0.bias");
  m->time_w2 =
      sdw_params_take(p, 2, (int64_t[]){c->time_out_dim, c->time_hidden_dim}, "t_emb.2.weight");
  m->time_b2 = sdw_params_take(p, 1, (int64_t[]){c->time_out_dim}, "t_emb.2.bias");
  if (c->context_pool) {
    m->ctx_pool_w =
        sdw_params_take(p, 2, (int64_t[]){c->time_out_dim, c->context_dim}, "ctx_pool.weight");
    m->ctx_pool_b = sdw_params_take(p, 1, (int64_t[]){c->time_out_dim}, "ctx_pool.bias");
  }
  for (int i = 0; i < m->node_count; i++) {
    const sdw_unet_node *n = &m->nodes[i];
    if (n->kind == SDW_UNET_NODE_CONV) sdw_unet_conv_declare(p, &m->convs[n->index]);
    if (n->kind == SDW_UNET_NODE_RES)
      sdw_unet_resblock_declare(p, &m->res[n->index], SDW_UNET_STYLE_SEED);
  }
  const int64_t C0 = c->channels[0], k = c->conv_out_kernel;
  m->norm_out_w = sdw_params_take(p, 1, (int64_t[]){C0}, "norm_out.weight");
  m->norm_out_b = sdw_params_take(p, 1, (int64_t[]){C0}, "norm_out.bias");
  m->conv_out_w = sdw_params_take(p, 4, (int64_t[]){c->out_channels, C0, k, k}, "conv_out.weight");
  m->conv_out_b = sdw_params_take(p, 1, (int64_t[]){c->out_channels}, "conv_out.bias");
}

static void declare(sdw_unet *m, sdw_params *p) {
  if (m->cfg.topology == SDW_UNET_SEED)
    sdw_unet_declare_seed(m, p);
  else
    sdw_unet_declare_sd15(m, p);
}

/* --- creation ------------------------------------------------------------------ */

static void free_plan(sdw_unet *m) {
  free(m->nodes);
  free(m->res);
  free(m->tfm);
  free(m->tblocks);
  free(m->convs);
  m->nodes = NULL;
  m->res = NULL;
  m->tfm = NULL;
  m->tblocks = NULL;
  m->convs = NULL;
  m->node_count = m->res_count = m->tfm_count = m->tblock_count = m->conv_count = 0;
}

/* Plans the program and runs the counting pass (m->params counted). */
static sdw_status plan_and_count(sdw_unet *m, sdw_ctx *ctx, const sdw_unet_config *cfg) {
  memset(m, 0, sizeof *m);
  SDW_TRY(sdw_unet_config_validate(cfg));
  m->cfg = *cfg;
  m->ctx = ctx;
  sdw_status st = cfg->topology == SDW_UNET_SEED ? sdw_unet_plan_seed(m) : sdw_unet_plan_sd15(m);
  if (st == SDW_OK) st = finish_plan(m);
  if (st != SDW_OK) {
    free_plan(m);
    return st;
  }
  sdw_params_init(&m->params, ctx);
  declare(m, &m->params);
  return SDW_OK;
}

sdw_status sdw_unet_create(sdw_unet *m, sdw_ctx *ctx, const sdw_unet_config *cfg) {
  SDW_TRY(plan_and_count(m, ctx, cfg));
  sdw_status st = sdw_params_allocate(&m->params);
  if (st == SDW_OK) {
    declare(m, &m->params);
    st = sdw_params_finish(&m->params);
  }
  if (st != SDW_OK) sdw_unet_free(m);
  return st;
}

void sdw_unet_free(sdw_unet *m) {
  if (!m) return;
  sdw_params_free(&m->params);
  free_plan(m);
  memset(m, 0, sizeof *m);
}

static int64_t params_numel(const sdw_params *p) {
  int64_t n = 0;
  for (int i = 0; i < p->count; i++)
    n += sdw_tensor_numel(&p->items[i].value);
  return n;
}

int64_t sdw_unet_param_count(const sdw_unet *m) { return params_numel(&m->params); }

/* The counting pass needs a backend only for the views' device field. */
static sdw_ctx counting_ctx;

sdw_status sdw_unet_plan(sdw_unet *m, const sdw_unet_config *cfg) {
  counting_ctx.ops = sdw_backend_cpu();
  return plan_and_count(m, &counting_ctx, cfg);
}

sdw_status sdw_unet_count_params(const sdw_unet_config *cfg, int64_t *out) {
  sdw_unet m;
  SDW_TRY(sdw_unet_plan(&m, cfg));
  *out = params_numel(&m.params);
  sdw_unet_free(&m);
  return SDW_OK;
}

/* --- loading ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Native-layout files hold exactly the model: a tensor no parameter claims
 * means the config and the weights disagree (e.g. attention at a level the
 * config lacks), which would otherwise load "successfully" and compute
 * something else. */
static sdw_status check_no_extra(const sdw_unet *m, const sdw_weights *w) {
  const sdw_params *p = &m->params;
  const char **names = malloc(((size_t)p->count + 1) * sizeof *names);
  if (!names) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory");
  for (int i = 0; i < p->count; i++)
    names[i] = p->items[i].name;
  qsort(names, (size_t)p->count, sizeof *names, cmp_str);
  sdw_status st = SDW_OK;
  for (int f = 0; st == SDW_OK && f < sdw_weights_file_count(w); f++) {
    const sdw_safetensors *file = sdw_weights_file(w, f);
    for (size_t i = 0; i < sdw_safetensors_count(file); i++) {
      const char *key = sdw_safetensors_at(file, i)->name;
      if (!bsearch(&key, names, (size_t)p->count, sizeof *names, cmp_str)) {
        st = sdw_fail(SDW_ERR_FORMAT,
                      "%s: tensor '%s' is not a parameter of this UNet; the weights and the "
                      "config.json describe different models",
                      sdw_safetensors_name(file), key);
        break;
      }
    }
  }
  free(names);
  return st;
}

sdw_status sdw_unet_load_weights(sdw_unet *m, const sdw_weights *w, const sdw_weights_map *map) {
  /* an LDM single file: its UNet's names (core/model/unet_ldm.h) */
  if (!map && sdw_unet_ldm_is_ldm(w)) return sdw_unet_load_ldm(m, w, false);
  SDW_TRY(sdw_weights_load(w, map, &m->params, NULL));
  if (!map) SDW_TRY(check_no_extra(m, w));
  return SDW_OK;
}

sdw_status sdw_unet_load(sdw_unet *m, const char *path) {
  sdw_weights *w;
  SDW_TRY(sdw_weights_open(path, "unet", &w));
  sdw_status st = sdw_unet_load_weights(m, w, NULL);
  sdw_weights_close(w);
  return st;
}

sdw_status sdw_unet_open(sdw_unet *m, sdw_ctx *ctx, const char *path) {
  sdw_weights *w;
  SDW_TRY(sdw_weights_open(path, "unet", &w));
  if (sdw_unet_ldm_is_ldm(w)) {
    sdw_weights_close(w);
    return sdw_unet_open_ldm(m, ctx, path, NULL, false);
  }
  sdw_unet_config cfg;
  const char *config = sdw_weights_config_path(w);
  sdw_status st = config ? sdw_unet_config_from_json(config, &cfg)
                         : sdw_fail(SDW_ERR_NOT_FOUND,
                                    "%s: no config.json beside the weights; a UNet needs its "
                                    "configuration (give a folder with config.json)",
                                    path);
  if (st == SDW_OK) st = sdw_unet_create(m, ctx, &cfg);
  if (st == SDW_OK) {
    st = sdw_unet_load_weights(m, w, NULL);
    if (st != SDW_OK) sdw_unet_free(m);
  }
  sdw_weights_close(w);
  return st;
}

/* --- forward ---------------------------------------------------------------------- */

static sdw_status check_inputs(const sdw_unet *m, const sdw_tensor *x, const sdw_tensor *t,
                               const sdw_tensor *context, const sdw_tensor *out) {
  const sdw_unet_config *c = &m->cfg;
  char a[96], b[96];
  if (x->dtype != SDW_F32 || x->ndim != 4 || x->shape[1] != c->in_channels || x->shape[0] < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet input %s must be F32 [N, %d, H, W]",
                    sdw_shape_str(x, a, sizeof a), c->in_channels);
  const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
  const int64_t f = (int64_t)1 << (c->levels - 1);
  if (H < f || W < f || H % f || W % f)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "UNet input is %lldx%lld; height and width must be multiples of %lld",
                    (long long)H, (long long)W, (long long)f);
  if (t->dtype != SDW_F32 || t->ndim != 1 || t->shape[0] != N)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet timesteps %s must be F32 [%lld]",
                    sdw_shape_str(t, a, sizeof a), (long long)N);
  if (context && context->data) {
    if (context->dtype != SDW_F32 || context->ndim != 3 || context->shape[0] != N ||
        context->shape[2] != c->context_dim || context->shape[1] < 1)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet context %s must be F32 [%lld, S, %d]",
                      sdw_shape_str(context, a, sizeof a), (long long)N, c->context_dim);
  } else if (c->topology == SDW_UNET_SD15) {
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "the SD 1.x UNet needs a context (encoder hidden states)");
  }
  if (out->dtype != SDW_F32 || out->ndim != 4 || out->shape[0] != N ||
      out->shape[1] != c->out_channels || out->shape[2] != H || out->shape[3] != W)
    return sdw_fail(
        SDW_ERR_INVALID_ARGUMENT, "UNet output %s must be F32 %s", sdw_shape_str(out, a, sizeof a),
        sdw_shape_str(&(sdw_tensor){.ndim = 4, .shape = {N, c->out_channels, H, W}}, b, sizeof b));
  return SDW_OK;
}

static sdw_status alloc_nchw(sdw_arena *arena, const sdw_ctx *ctx, sdw_tensor *t, int64_t n,
                             int64_t c, int64_t h, int64_t w) {
  return sdw_unet_alloc(arena, ctx, t, 4, (int64_t[]){n, c, h, w});
}

static sdw_status forward_impl(sdw_unet *m, sdw_arena *arena, const sdw_tensor *x,
                               const sdw_tensor *timesteps, const sdw_tensor *context,
                               sdw_tensor *out, sdw_unet_saved *sv) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_unet_config *c = &m->cfg;
  const int64_t N = x->shape[0];
  const sdw_tensor *cond = context && context->data ? context : NULL;

  /* time embedding: sinusoid -> Linear -> SiLU -> Linear, then SiLU once
   * for every block's projection */
  sdw_tensor t_sin, t_h, t_ha, temb, temb_act;
  SDW_TRY(sdw_unet_alloc(arena, ctx, &t_sin, 2, (int64_t[]){N, c->time_in_dim}));
  SDW_TRY(sdw_unet_alloc(arena, ctx, &t_h, 2, (int64_t[]){N, c->time_hidden_dim}));
  SDW_TRY(sdw_unet_alloc(arena, ctx, &temb, 2, (int64_t[]){N, c->time_out_dim}));
  if (sv) {
    SDW_TRY(sdw_unet_alloc(arena, ctx, &t_ha, 2, (int64_t[]){N, c->time_hidden_dim}));
    SDW_TRY(sdw_unet_alloc(arena, ctx, &temb_act, 2, (int64_t[]){N, c->time_out_dim}));
  } else {
    t_ha = t_h;
    temb_act = temb;
  }
  SDW_TRY(ops->timestep_embedding(ctx, timesteps, &c->time_embedding, &t_sin));
  SDW_TRY(ops->linear_forward(ctx, &t_sin, &m->time_w1, &m->time_b1, &t_h));
  SDW_TRY(ops->silu_forward(ctx, &t_h, &t_ha));
  SDW_TRY(ops->linear_forward(ctx, &t_ha, &m->time_w2, &m->time_b2, &temb));
  sdw_tensor pooled = {0}, pool_ones = {0};
  if (c->context_pool && cond) {
    /* temb += ctx_pool(mean over the tokens of the context) */
    const int64_t S = cond->shape[1], D = cond->shape[2];
    SDW_TRY(sdw_unet_alloc(arena, ctx, &pool_ones, 3, (int64_t[]){N, 1, S}));
    SDW_TRY(sdw_unet_alloc(arena, ctx, &pooled, 3, (int64_t[]){N, 1, D}));
    SDW_TRY(ops->fill(ctx, &pool_ones, (float)(1.0 / (double)S)));
    SDW_TRY(ops->matmul(ctx, false, false, 1.0f, &pool_ones, cond, 0.0f, &pooled));
    sdw_tensor pooled2 = sdw_unet_view(&pooled, 2, (int64_t[]){N, D}), add;
    SDW_TRY(sdw_unet_alloc(arena, ctx, &add, 2, (int64_t[]){N, c->time_out_dim}));
    SDW_TRY(ops->linear_forward(ctx, &pooled2, &m->ctx_pool_w, &m->ctx_pool_b, &add));
    SDW_TRY(ops->add(ctx, &temb, &add, &temb));
  }
  SDW_TRY(ops->silu_forward(ctx, &temb, &temb_act));
  if (sv) {
    sv->x = *x;
    if (cond) sv->context = *cond;
    sv->t_sin = t_sin;
    sv->t_h = t_h;
    sv->t_ha = t_ha;
    sv->temb = temb;
    sv->temb_act = temb_act;
    sv->pooled = pooled;
    sv->pool_ones = pool_ones;
  }

  /* the program; node outputs stay in the arena until the end (skips
   * reference them), module temporaries are released inside */
  sdw_tensor *stack = sdw_arena_alloc(arena, (size_t)(m->max_skips + 1) * sizeof *stack);
  if (!stack) return SDW_ERR_OUT_OF_MEMORY;
  int sp = 0;
  sdw_tensor h = *x;
  bool h_pushed = false; /* h is on the skip stack: never modify it in place */
  for (int i = 0; i < m->node_count; i++) {
    const sdw_unet_node *n = &m->nodes[i];
    sdw_unet_node_saved *ns = sv ? &sv->nodes[i] : NULL;
    const int64_t H = h.shape[2], W = h.shape[3];
    sdw_tensor y;
    switch (n->kind) {
    case SDW_UNET_NODE_CONV: {
      const sdw_unet_conv *cv = &m->convs[n->index];
      SDW_TRY(alloc_nchw(arena, ctx, &y, N, cv->out_ch, sdw_unet_conv_out_size(cv, (int)H),
                         sdw_unet_conv_out_size(cv, (int)W)));
      SDW_TRY(sdw_unet_conv_forward(ctx, arena, cv, &h, &y, ns ? &ns->u.conv : NULL));
      break;
    }
    case SDW_UNET_NODE_RES: {
      const sdw_unet_resblock *r = &m->res[n->index];
      SDW_TRY(alloc_nchw(arena, ctx, &y, N, r->out_ch, H, W));
      if (ns) ns->u.res.checkpointed = sv->checkpoint;
      SDW_TRY(sdw_unet_resblock_forward(ctx, arena, r, &h, &temb_act, cond, &y,
                                        ns ? &ns->u.res : NULL));
      break;
    }
    case SDW_UNET_NODE_TFM: {
      const sdw_unet_transformer *t = &m->tfm[n->index];
      if (ns || h_pushed) {
        SDW_TRY(alloc_nchw(arena, ctx, &y, N, t->channels, H, W));
      } else {
        y = h; /* inference: in place over a ResBlock output nobody else holds */
      }
      SDW_TRY(sdw_unet_transformer_forward(ctx, arena, t, &h, cond, &y, ns ? &ns->u.tfm : NULL));
      break;
    }
    case SDW_UNET_NODE_PUSH:
      SDW_ASSERT(sp < m->max_skips);
      stack[sp++] = h;
      y = h;
      break;
    case SDW_UNET_NODE_CAT: {
      SDW_ASSERT(sp > 0);
      const sdw_tensor *s = &stack[--sp];
      SDW_TRY(alloc_nchw(arena, ctx, &y, N, h.shape[1] + s->shape[1], H, W));
      SDW_TRY(ops->concat_channels(ctx, &h, s, &y));
      if (ns) ns->skip = *s;
      break;
    }
    }
    if (ns) {
      ns->in = h;
      ns->out = y;
    }
    h_pushed = n->kind == SDW_UNET_NODE_PUSH;
    h = y;
  }
  SDW_ASSERT(sp == 0);

  /* output head: GroupNorm -> SiLU -> conv_out */
  const int64_t C0 = h.shape[1], H = h.shape[2], W = h.shape[3], G = c->norm_groups;
  sdw_tensor hn, ha, mean = {0}, rstd = {0};
  SDW_TRY(alloc_nchw(arena, ctx, &hn, N, C0, H, W));
  if (sv) {
    SDW_TRY(alloc_nchw(arena, ctx, &ha, N, C0, H, W));
    SDW_TRY(sdw_unet_alloc(arena, ctx, &mean, 2, (int64_t[]){N, G}));
    SDW_TRY(sdw_unet_alloc(arena, ctx, &rstd, 2, (int64_t[]){N, G}));
  } else {
    ha = hn;
  }
  SDW_TRY(ops->group_norm_forward(ctx, &h, &m->norm_out_w, &m->norm_out_b, (int)G, c->norm_eps, &hn,
                                  sv ? &mean : NULL, sv ? &rstd : NULL));
  SDW_TRY(ops->silu_forward(ctx, &hn, &ha));
  SDW_TRY(ops->conv2d_forward(ctx, &ha, &m->conv_out_w, &m->conv_out_b, 1,
                              (c->conv_out_kernel - 1) / 2, out));
  if (sv) {
    sv->head_in = h;
    sv->head_mean = mean;
    sv->head_rstd = rstd;
    sv->head_n = hn;
    sv->head_a = ha;
  }
  return SDW_OK;
}

sdw_status sdw_unet_forward(sdw_unet *m, sdw_arena *arena, const sdw_tensor *x,
                            const sdw_tensor *timesteps, const sdw_tensor *context,
                            sdw_tensor *out) {
  SDW_TRY(check_inputs(m, x, timesteps, context, out));
  const size_t mark = sdw_arena_mark(arena);
  sdw_status st = forward_impl(m, arena, x, timesteps, context, out, NULL);
  sdw_arena_reset_to(arena, mark);
  return st;
}

sdw_status sdw_unet_forward_train(sdw_unet *m, sdw_arena *arena, const sdw_tensor *x,
                                  const sdw_tensor *timesteps, const sdw_tensor *context,
                                  sdw_tensor *out, bool checkpoint, sdw_unet_saved **saved) {
  SDW_TRY(check_inputs(m, x, timesteps, context, out));
  sdw_unet_saved *sv = sdw_arena_calloc(arena, sizeof *sv);
  if (!sv) return SDW_ERR_OUT_OF_MEMORY;
  sv->nodes = sdw_arena_calloc(arena, (size_t)m->node_count * sizeof *sv->nodes);
  if (!sv->nodes) return SDW_ERR_OUT_OF_MEMORY;
  sv->checkpoint = checkpoint;
  SDW_TRY(forward_impl(m, arena, x, timesteps, context, out, sv));
  *saved = sv;
  return SDW_OK;
}

/* --- backward --------------------------------------------------------------------------- */

sdw_status sdw_unet_grads_create(sdw_unet *grads, const sdw_unet *m) {
  return sdw_unet_create(grads, m->ctx, &m->cfg);
}

sdw_status sdw_unet_grads_zero(sdw_unet *grads) {
  sdw_ctx *ctx = grads->ctx;
  sdw_tensor all = sdw_tensor_1d(grads->params.flat, SDW_F32, (int64_t)grads->params.total);
  all.device = (sdw_device){ctx->ops->device, 0};
  return ctx->ops->fill(ctx, &all, 0.0f);
}

static sdw_status alloc_zero_like(sdw_arena *arena, sdw_ctx *ctx, sdw_tensor *out,
                                  const sdw_tensor *t) {
  SDW_TRY(sdw_unet_alloc(arena, ctx, out, t->ndim, t->shape));
  return ctx->ops->fill(ctx, out, 0.0f);
}

/* The first numel(like) elements of buf, shaped like `like`. */
static sdw_tensor front_view(const sdw_tensor *buf, const sdw_tensor *like) {
  SDW_ASSERT(sdw_tensor_numel(like) <= sdw_tensor_numel(buf));
  sdw_tensor v = *like;
  v.data = buf->data;
  v.dtype = buf->dtype;
  v.device = buf->device;
  return v;
}

/* Walks the program in reverse. dh is the gradient of the current node's
 * output; CAT splits it and pushes the skip's share on a gradient stack,
 * PUSH pops that share back into dh (the skip and the main path were the
 * same tensor). A node's input gradient is a zeroed view of one of two
 * ping-pong buffers (the other holds dh; the ops accumulate), so the chain
 * costs two of the largest node tensors whatever the depth; only the skip
 * gradients, alive from their CAT to their PUSH, are allocated one by one. */
static sdw_status backward_impl(sdw_unet *m, sdw_unet *g, sdw_arena *arena,
                                const sdw_unet_saved *sv, const sdw_tensor *dout, sdw_tensor *dx,
                                sdw_tensor *dcontext) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_unet_config *c = &m->cfg;
  const sdw_tensor *cond = sv->context.data ? &sv->context : NULL;
  if (!cond) dcontext = NULL;

  int64_t biggest = sdw_tensor_numel(&sv->head_in);
  for (int i = 1; i < m->node_count; i++)
    if (sdw_tensor_numel(&sv->nodes[i].in) > biggest) biggest = sdw_tensor_numel(&sv->nodes[i].in);
  sdw_tensor buf[2];
  SDW_TRY(sdw_unet_alloc(arena, ctx, &buf[0], 1, (int64_t[]){biggest}));
  SDW_TRY(sdw_unet_alloc(arena, ctx, &buf[1], 1, (int64_t[]){biggest}));
  int cur = 0; /* buf[cur] holds dh */

  /* output head: conv_out(silu(GN(h))) */
  sdw_tensor da, dn, dh;
  const size_t head_mark = sdw_arena_mark(arena);
  SDW_TRY(alloc_zero_like(arena, ctx, &da, &sv->head_a));
  SDW_TRY(ops->conv2d_backward(ctx, &sv->head_a, &m->conv_out_w, dout, 1,
                               (c->conv_out_kernel - 1) / 2, &da, &g->conv_out_w, &g->conv_out_b));
  SDW_TRY(alloc_zero_like(arena, ctx, &dn, &sv->head_n));
  SDW_TRY(ops->silu_backward(ctx, &sv->head_n, &da, &dn));
  dh = front_view(&buf[cur], &sv->head_in);
  SDW_TRY(ops->fill(ctx, &dh, 0.0f));
  SDW_TRY(ops->group_norm_backward(ctx, &sv->head_in, &m->norm_out_w, &sv->head_mean,
                                   &sv->head_rstd, &dn, c->norm_groups, &dh, &g->norm_out_w,
                                   &g->norm_out_b));
  sdw_arena_reset_to(arena, head_mark);

  /* every ResBlock's time projection sums into dtemb_act */
  sdw_tensor dtemb_act;
  SDW_TRY(alloc_zero_like(arena, ctx, &dtemb_act, &sv->temb_act));
  sdw_tensor *stack = sdw_arena_alloc(arena, (size_t)(m->max_skips + 1) * sizeof *stack);
  if (!stack) return SDW_ERR_OUT_OF_MEMORY;
  int sp = 0;
  for (int i = m->node_count - 1; i >= 0; i--) {
    const sdw_unet_node *n = &m->nodes[i];
    const sdw_unet_node_saved *ns = &sv->nodes[i];
    if (n->kind == SDW_UNET_NODE_PUSH) {
      /* in == out: the main path's gradient plus the skip's */
      SDW_ASSERT(sp > 0 && i > 0);
      SDW_TRY(ops->axpby(ctx, 1.0f, &stack[--sp], 1.0f, &dh));
      continue;
    }
    /* the first node's input is the UNet input: its gradient is the caller's dx */
    sdw_tensor din = {0}, *dinp = dx;
    if (i > 0) {
      din = front_view(&buf[1 - cur], &ns->in);
      SDW_TRY(ops->fill(ctx, &din, 0.0f));
      dinp = &din;
    }
    switch (n->kind) {
    case SDW_UNET_NODE_CONV:
      SDW_TRY(sdw_unet_conv_backward(ctx, arena, &m->convs[n->index], &g->convs[n->index],
                                     &ns->u.conv, &dh, dinp));
      break;
    case SDW_UNET_NODE_RES:
      SDW_TRY(sdw_unet_resblock_backward(ctx, arena, &m->res[n->index], &g->res[n->index],
                                         &sv->temb_act, cond, &ns->u.res, &dh, dinp, &dtemb_act,
                                         dcontext));
      break;
    case SDW_UNET_NODE_TFM:
      SDW_TRY(sdw_unet_transformer_backward(ctx, arena, &m->tfm[n->index], &g->tfm[n->index], cond,
                                            &ns->u.tfm, &dh, dinp, dcontext));
      break;
    case SDW_UNET_NODE_CAT:
      SDW_ASSERT(sp < m->max_skips && i > 0);
      SDW_TRY(alloc_zero_like(arena, ctx, &stack[sp], &ns->skip));
      SDW_TRY(ops->concat_channels_backward(ctx, &dh, &din, &stack[sp]));
      sp++;
      break;
    case SDW_UNET_NODE_PUSH: break;
    }
    dh = din;
    cur = 1 - cur;
  }
  SDW_ASSERT(sp == 0);

  /* time embedding: temb_act = silu(temb), temb = W2 silu(W1 sin + b1) + b2 */
  sdw_tensor dtemb, dt_ha, dt_h;
  SDW_TRY(alloc_zero_like(arena, ctx, &dtemb, &sv->temb));
  SDW_TRY(ops->silu_backward(ctx, &sv->temb, &dtemb_act, &dtemb));
  if (c->context_pool && sv->pooled.data) {
    /* temb += W pooled + b, pooled = pool_ones @ context */
    const int64_t N = sv->pooled.shape[0], D = sv->pooled.shape[2];
    sdw_tensor pooled2 = sdw_unet_view(&sv->pooled, 2, (int64_t[]){N, D}), dpooled, dpooled2;
    if (dcontext) {
      SDW_TRY(alloc_zero_like(arena, ctx, &dpooled, &sv->pooled));
      dpooled2 = sdw_unet_view(&dpooled, 2, (int64_t[]){N, D});
    }
    SDW_TRY(ops->linear_backward(ctx, &pooled2, &m->ctx_pool_w, &dtemb, dcontext ? &dpooled2 : NULL,
                                 &g->ctx_pool_w, &g->ctx_pool_b));
    if (dcontext)
      SDW_TRY(ops->matmul(ctx, true, false, 1.0f, &sv->pool_ones, &dpooled, 1.0f, dcontext));
  }
  SDW_TRY(alloc_zero_like(arena, ctx, &dt_ha, &sv->t_ha));
  SDW_TRY(
      ops->linear_backward(ctx, &sv->t_ha, &m->time_w2, &dtemb, &dt_ha, &g->time_w2, &g->time_b2));
  SDW_TRY(alloc_zero_like(arena, ctx, &dt_h, &sv->t_h));
  SDW_TRY(ops->silu_backward(ctx, &sv->t_h, &dt_ha, &dt_h));
  return ops->linear_backward(ctx, &sv->t_sin, &m->time_w1, &dt_h, NULL, &g->time_w1, &g->time_b1);
}

sdw_status sdw_unet_backward(sdw_unet *m, sdw_unet *grads, sdw_arena *arena,
                             const sdw_unet_saved *saved, const sdw_tensor *dout, sdw_tensor *dx,
                             sdw_tensor *dcontext) {
  SDW_ASSERT(grads && grads->params.total == m->params.total &&
             grads->node_count == m->node_count && grads->res_count == m->res_count);
  const sdw_tensor *out_like = &saved->head_a;
  char a[96];
  if (dout->dtype != SDW_F32 || dout->ndim != 4 || dout->shape[0] != out_like->shape[0] ||
      dout->shape[1] != m->cfg.out_channels || dout->shape[2] != out_like->shape[2] ||
      dout->shape[3] != out_like->shape[3])
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet output gradient %s does not match the output",
                    sdw_shape_str(dout, a, sizeof a));
  if (dx) SDW_ASSERT(sdw_tensor_same_shape(dx, &saved->x));
  if (dcontext && saved->context.data) SDW_ASSERT(sdw_tensor_same_shape(dcontext, &saved->context));
  const size_t mark = sdw_arena_mark(arena);
  sdw_status st = backward_impl(m, grads, arena, saved, dout, dx, dcontext);
  sdw_arena_reset_to(arena, mark);
  return st;
}

/* --- FLOPs ---------------------------------------------------------------------------- */

static double conv_flops(int64_t n, int64_t ci, int64_t co, int64_t k, int64_t ho, int64_t wo) {
  return 2.0 * (double)n * (double)co * (double)(ho * wo) * (double)(ci * k * k);
}
static double linear_flops(int64_t m, int64_t k, int64_t n) {
  return 2.0 * (double)m * (double)k * (double)n;
}

static double transformer_flops(const sdw_unet_transformer *t, int64_t n, int64_t hw, int64_t s) {
  const int64_t C = t->channels, M = n * hw;
  double f = 2.0 * linear_flops(M, C, C); /* proj_in, proj_out (1x1 conv = linear) */
  for (int d = 0; d < t->depth; d++) {
    const sdw_unet_tblock *b = &t->blocks[d];
    const int64_t F1 = b->geglu ? 2 * b->ff_inner : b->ff_inner;
    f += 4.0 * linear_flops(M, C, C);                           /* attn1 q k v out */
    f += 4.0 * (double)n * (double)hw * (double)hw * (double)C; /* attn1 QK^T, PV */
    f += 2.0 * linear_flops(M, C, C) + 2.0 * linear_flops(n * s, t->context_dim, C); /* attn2 */
    f += 4.0 * (double)n * (double)hw * (double)s * (double)C;     /* attn2 QK^T, PV */
    f += linear_flops(M, C, F1) + linear_flops(M, b->ff_inner, C); /* feed-forward */
  }
  return f;
}

double sdw_unet_forward_flops(const sdw_unet *m, int n, int h, int w, int s, bool with_context) {
  const sdw_unet_config *c = &m->cfg;
  double f = linear_flops(n, c->time_in_dim, c->time_hidden_dim) +
             linear_flops(n, c->time_hidden_dim, c->time_out_dim);
  int64_t ch = c->in_channels, H = h, W = w;
  int stack[256], sp = 0; /* finish_plan bounds the depth */
  const bool cond = with_context || c->topology == SDW_UNET_SD15;
  for (int i = 0; i < m->node_count; i++) {
    const sdw_unet_node *nd = &m->nodes[i];
    switch (nd->kind) {
    case SDW_UNET_NODE_CONV: {
      const sdw_unet_conv *cv = &m->convs[nd->index];
      const int64_t ho = sdw_unet_conv_out_size(cv, (int)H),
                    wo = sdw_unet_conv_out_size(cv, (int)W);
      /* ConvTranspose2d does the same multiply-adds as the conv it is the adjoint of */
      f += cv->kind == SDW_UNET_CONV_TRANSPOSE
               ? conv_flops(n, cv->out_ch, cv->in_ch, cv->kernel, H, W)
               : conv_flops(n, cv->in_ch, cv->out_ch, cv->kernel, ho, wo);
      ch = cv->out_ch;
      H = ho;
      W = wo;
      break;
    }
    case SDW_UNET_NODE_RES: {
      const sdw_unet_resblock *r = &m->res[nd->index];
      f += conv_flops(n, r->in_ch, r->out_ch, 3, H, W) +
           conv_flops(n, r->out_ch, r->out_ch, 3, H, W);
      f += linear_flops(n, r->temb_dim, r->out_ch);
      if (r->has_skip) f += conv_flops(n, r->in_ch, r->out_ch, 1, H, W);
      if (r->inner && cond) f += transformer_flops(r->inner, n, H * W, s);
      ch = r->out_ch;
      break;
    }
    case SDW_UNET_NODE_TFM: f += transformer_flops(&m->tfm[nd->index], n, H * W, s); break;
    case SDW_UNET_NODE_PUSH: stack[sp++] = (int)ch; break;
    case SDW_UNET_NODE_CAT: ch += stack[--sp]; break;
    }
  }
  f += conv_flops(n, ch, c->out_channels, c->conv_out_kernel, H, W);
  return f;
}
