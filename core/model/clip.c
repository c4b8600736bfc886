#include "core/model/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"

sdw_clip_text_config sdw_clip_text_config_vit_l14(void) {
  return (sdw_clip_text_config){
      .vocab_size = 49408,
      .hidden_size = 768,
      .num_layers = 12,
      .num_heads = 12,
      .intermediate_size = 3072,
      .max_positions = 77,
      .act = SDW_CLIP_ACT_QUICK_GELU,
      .layer_norm_eps = 1e-5f,
      .eos_token_id = 2,
  };
}

sdw_status sdw_clip_text_config_check(const sdw_clip_text_config *c, const char *name) {
  if (c->vocab_size < 1 || c->hidden_size < 1 || c->num_layers < 1 || c->num_heads < 1 ||
      c->intermediate_size < 1 || c->max_positions < 1)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: CLIP text sizes must be positive (vocab_size %lld, hidden_size %lld, "
                    "num_hidden_layers %lld, num_attention_heads %lld, intermediate_size %lld, "
                    "max_position_embeddings %lld)",
                    name, (long long)c->vocab_size, (long long)c->hidden_size,
                    (long long)c->num_layers, (long long)c->num_heads,
                    (long long)c->intermediate_size, (long long)c->max_positions);
  if (c->hidden_size % c->num_heads != 0)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: hidden_size %lld is not divisible by num_attention_heads %lld", name,
                    (long long)c->hidden_size, (long long)c->num_heads);
  /* Bounds that keep every size product far from overflow and the layer
   * count in an int; real CLIP towers are far below them. */
  if (c->vocab_size > (1 << 24) || c->hidden_size > (1 << 16) || c->num_layers > 1024 ||
      c->intermediate_size > (1 << 18) || c->max_positions > (1 << 16))
    return sdw_fail(SDW_ERR_FORMAT, "%s: CLIP text sizes are implausibly large", name);
  if (!(c->layer_norm_eps > 0.0f) || !isfinite(c->layer_norm_eps))
    return sdw_fail(SDW_ERR_FORMAT, "%s: layer_norm_eps must be a positive number", name);
  return SDW_OK;
}

/* Config values: the first of objs[] that has key wins, else def. */
typedef struct config_src {
  sdw_json_obj objs[2];
  int count;
} config_src;

static sdw_status cfg_int(const config_src *s, const char *key, int64_t def, int64_t *out) {
  for (int i = 0; i < s->count; i++)
    if (sdw_json_has(&s->objs[i], key)) return sdw_json_get_int(&s->objs[i], key, out);
  *out = def;
  return SDW_OK;
}

static sdw_status cfg_double(const config_src *s, const char *key, double def, double *out) {
  for (int i = 0; i < s->count; i++)
    if (sdw_json_has(&s->objs[i], key)) return sdw_json_get_double(&s->objs[i], key, out);
  *out = def;
  return SDW_OK;
}

static sdw_status cfg_string(const config_src *s, const char *key, const char *def,
                             const char **out) {
  for (int i = 0; i < s->count; i++)
    if (sdw_json_has(&s->objs[i], key)) return sdw_json_get_string(&s->objs[i], key, out);
  *out = def;
  return SDW_OK;
}

static sdw_status config_read(const sdw_json_doc *doc, sdw_clip_text_config *out) {
  const char *name = sdw_json_doc_name(doc);
  sdw_json_obj root;
  SDW_TRY(sdw_json_root(doc, &root));
  const char *model_type;
  SDW_TRY(sdw_json_get_string_or(&root, "model_type", "clip_text_model", &model_type));
  config_src src = {.count = 0};
  if (strcmp(model_type, "clip") == 0 || sdw_json_has(&root, "text_config") ||
      sdw_json_has(&root, "text_config_dict")) {
    /* CLIPConfig: text_config_dict overrides text_config. */
    if (sdw_json_has(&root, "text_config_dict"))
      SDW_TRY(sdw_json_get_object(&root, "text_config_dict", &src.objs[src.count++]));
    if (sdw_json_has(&root, "text_config"))
      SDW_TRY(sdw_json_get_object(&root, "text_config", &src.objs[src.count++]));
  } else if (strcmp(model_type, "clip_text_model") != 0) {
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: model_type '%s' is not a CLIP text model (expected clip_text_model or "
                    "clip); give the text encoder's config.json",
                    name, model_type);
  } else {
    src.objs[src.count++] = root;
  }
  /* Defaults: transformers' CLIPTextConfig. */
  sdw_clip_text_config c;
  SDW_TRY(cfg_int(&src, "vocab_size", 49408, &c.vocab_size));
  SDW_TRY(cfg_int(&src, "hidden_size", 512, &c.hidden_size));
  SDW_TRY(cfg_int(&src, "num_hidden_layers", 12, &c.num_layers));
  SDW_TRY(cfg_int(&src, "num_attention_heads", 8, &c.num_heads));
  SDW_TRY(cfg_int(&src, "intermediate_size", 2048, &c.intermediate_size));
  SDW_TRY(cfg_int(&src, "max_position_embeddings", 77, &c.max_positions));
  SDW_TRY(cfg_int(&src, "eos_token_id", 49407, &c.eos_token_id));
  double eps;
  SDW_TRY(cfg_double(&src, "layer_norm_eps", 1e-5, &eps));
  c.layer_norm_eps = (float)eps;
  const char *act;
  SDW_TRY(cfg_string(&src, "hidden_act", "quick_gelu", &act));
  if (strcmp(act, "quick_gelu") == 0)
    c.act = SDW_CLIP_ACT_QUICK_GELU;
  else if (strcmp(act, "gelu") == 0)
    c.act = SDW_CLIP_ACT_GELU;
  else
    return sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: hidden_act '%s' is not supported (sdw knows quick_gelu and gelu)", name,
                    act);
  SDW_TRY(sdw_clip_text_config_check(&c, name));
  *out = c;
  return SDW_OK;
}

sdw_status sdw_clip_text_config_load(const char *path, sdw_clip_text_config *out) {
  sdw_json_doc *doc;
  SDW_TRY(sdw_json_load_file(path, &doc));
  sdw_status st = config_read(doc, out);
  sdw_json_free(doc);
  return st;
}

/* --- parameters ----------------------------------------------------------- */

/* Declares every parameter (counting pass) or binds the views (binding
 * pass), in transformers' state_dict order. */
static void clip_build(sdw_clip_text *m) {
  sdw_params *p = &m->params;
  const sdw_clip_text_config *c = &m->config;
  int64_t D = c->hidden_size, I = c->intermediate_size;
  int64_t vd[2] = {c->vocab_size, D}, pd[2] = {c->max_positions, D};
  int64_t dd[2] = {D, D}, id[2] = {I, D}, di[2] = {D, I}, d1[1] = {D}, i1[1] = {I};
  m->token_embedding = sdw_params_take(p, 2, vd, "embeddings.token_embedding.weight");
  m->position_embedding = sdw_params_take(p, 2, pd, "embeddings.position_embedding.weight");
  for (int l = 0; l < (int)c->num_layers; l++) {
    sdw_clip_text_layer *L = &m->layers[l];
    const char *f = "encoder.layers.%d.%s";
    L->q_w = sdw_params_take(p, 2, dd, f, l, "self_attn.q_proj.weight");
    L->q_b = sdw_params_take(p, 1, d1, f, l, "self_attn.q_proj.bias");
    L->k_w = sdw_params_take(p, 2, dd, f, l, "self_attn.k_proj.weight");
    L->k_b = sdw_params_take(p, 1, d1, f, l, "self_attn.k_proj.bias");
    L->v_w = sdw_params_take(p, 2, dd, f, l, "self_attn.v_proj.weight");
    L->v_b = sdw_params_take(p, 1, d1, f, l, "self_attn.v_proj.bias");
    L->out_w = sdw_params_take(p, 2, dd, f, l, "self_attn.out_proj.weight");
    L->out_b = sdw_params_take(p, 1, d1, f, l, "self_attn.out_proj.bias");
    L->ln1_w = sdw_params_take(p, 1, d1, f, l, "layer_norm1.weight");
    L->ln1_b = sdw_params_take(p, 1, d1, f, l, "layer_norm1.bias");
    L->fc1_w = sdw_params_take(p, 2, id, f, l, "mlp.fc1.weight");
    L->fc1_b = sdw_params_take(p, 1, i1, f, l, "mlp.fc1.bias");
    L->fc2_w = sdw_params_take(p, 2, di, f, l, "mlp.fc2.weight");
    L->fc2_b = sdw_params_take(p, 1, d1, f, l, "mlp.fc2.bias");
    L->ln2_w = sdw_params_take(p, 1, d1, f, l, "layer_norm2.weight");
    L->ln2_b = sdw_params_take(p, 1, d1, f, l, "layer_norm2.bias");
  }
  m->final_ln_w = sdw_params_take(p, 1, d1, "final_layer_norm.weight");
  m->final_ln_b = sdw_params_take(p, 1, d1, "final_layer_norm.bias");
}

sdw_status sdw_clip_text_init(sdw_clip_text *m, sdw_ctx *ctx, const sdw_clip_text_config *cfg) {
  memset(m, 0, sizeof *m);
  SDW_TRY(sdw_clip_text_config_check(cfg, "CLIP text config"));
  m->config = *cfg;
  m->ctx = ctx;
  m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
  if (!m->layers) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for CLIP layers");
  sdw_params_init(&m->params, ctx);
  clip_build(m);
  sdw_status st = sdw_params_allocate(&m->params);
  if (st == SDW_OK) {
    clip_build(m);
    st = sdw_params_finish(&m->params);
  }
  if (st != SDW_OK) sdw_clip_text_free(m);
  return st;
}

void sdw_clip_text_free(sdw_clip_text *m) {
  if (m->act) m->ctx->ops->free(m->ctx, m->act);
  if (m->ctx) sdw_params_free(&m->params);
  free(m->layers);
  memset(m, 0, sizeof *m);
}

static const char *const clip_prefixes[] = {
    "text_model.",                              /* transformers, diffusers text_encoder/ */
    "cond_stage_model.transformer.text_model.", /* LDM single files (transformers >= 4.?) */
    "cond_stage_model.transformer.",            /* older LDM files, without text_model. */
    "",                                         /* a bare CLIPTextTransformer state dict */
};

static const sdw_weights_map clip_map = {
    .prefixes = clip_prefixes,
    .prefix_count = sizeof clip_prefixes / sizeof clip_prefixes[0],
};

const sdw_weights_map *sdw_clip_text_weights_map(void) { return &clip_map; }

sdw_status sdw_clip_text_load(sdw_clip_text *m, const sdw_weights *w, sdw_weights_stats *stats) {
  return sdw_weights_load(w, &clip_map, &m->params, stats);
}

sdw_status sdw_clip_text_open(sdw_clip_text *m, sdw_ctx *ctx, const char *path,
                              const char *config_path) {
  memset(m, 0, sizeof *m);
  sdw_weights *w = NULL;
  SDW_TRY(sdw_weights_open(path, "text_encoder", &w));
  sdw_clip_text_config cfg = sdw_clip_text_config_vit_l14();
  const char *cfg_path = config_path ? config_path : sdw_weights_config_path(w);
  sdw_status st = cfg_path ? sdw_clip_text_config_load(cfg_path, &cfg) : SDW_OK;
  if (st == SDW_OK) st = sdw_clip_text_init(m, ctx, &cfg);
  if (st == SDW_OK) {
    st = sdw_clip_text_load(m, w, NULL);
    if (st != SDW_OK) sdw_clip_text_free(m);
  }
  sdw_weights_close(w);
  return st;
}

int sdw_clip_text_skip_layer(const sdw_clip_text_config *cfg, int clip_skip) {
  if (clip_skip < 1 || clip_skip > cfg->num_layers) return -1;
  return (int)cfg->num_layers + 1 - clip_skip;
}

/* --- forward -------------------------------------------------------------- */

/* Bump allocation inside the model's activation buffer. */
typedef struct act_alloc {
  sdw_ctx *ctx;
  unsigned char *base;
  size_t used;
} act_alloc;

static size_t act_round(size_t bytes) { return (bytes + 255) / 256 * 256; }

static sdw_tensor act_take(act_alloc *a, sdw_dtype dtype, int ndim, const int64_t *shape) {
  sdw_tensor t = sdw_tensor_make(NULL, dtype, ndim, shape);
  t.device = (sdw_device){a->ctx->ops->device, 0};
  t.data = a->base + a->used;
  a->used += act_round(sdw_tensor_nbytes(&t));
  return t;
}

/* Activation bytes for a [B,T] batch; must cover every act_take below. */
static size_t act_need(const sdw_clip_text_config *c, int64_t B, int64_t T) {
  size_t btd = act_round((size_t)(B * T * c->hidden_size) * sizeof(float));
  size_t bti = act_round((size_t)(B * T * c->intermediate_size) * sizeof(float));
  size_t ids = act_round((size_t)(B * T) * sizeof(int64_t));
  size_t mask = act_round((size_t)(B * T));
  /* x, h, q, k, v, attn, final + mlp + token ids, position ids + mask */
  return 7 * btd + bti + 2 * ids + mask;
}

static sdw_tensor view_rows(const sdw_tensor *t, int64_t row, int64_t rows, int64_t width) {
  sdw_tensor v = *t;
  v.ndim = 2;
  v.shape[0] = rows;
  v.shape[1] = width;
  v.data = (float *)t->data + row * width;
  return v;
}

static bool integer_dtype(sdw_dtype d) {
  return d == SDW_I64 || d == SDW_I32 || d == SDW_I16 || d == SDW_I8 || d == SDW_U8 ||
         d == SDW_U16 || d == SDW_U32 || d == SDW_U64 || d == SDW_BOOL;
}

/* Checks the host inputs; fills ids64[B*T], mask8[B*T] (may be NULL) and
 * pool[B] (the pooled position). */
static sdw_status check_inputs(const sdw_clip_text *m, const sdw_tensor *ids,
                               const sdw_tensor *mask, int64_t *ids64, unsigned char *mask8,
                               int64_t *pool) {
  const sdw_clip_text_config *c = &m->config;
  int64_t B = ids->shape[0], T = ids->shape[1];
  for (int64_t i = 0; i < B * T; i++) {
    double v = sdw_tensor_get(ids, i);
    if (!(v >= 0 && v < (double)c->vocab_size))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "input_ids[%lld, %lld] = %.0f is outside the vocabulary (0..%lld)",
                      (long long)(i / T), (long long)(i % T), v, (long long)c->vocab_size - 1);
    ids64[i] = (int64_t)v;
  }
  if (mask) {
    if (mask->ndim != 2 || mask->shape[0] != B || mask->shape[1] != T ||
        !integer_dtype(mask->dtype))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "attention_mask must be an integer tensor of the shape of input_ids "
                      "[%lld, %lld]",
                      (long long)B, (long long)T);
    for (int64_t i = 0; i < B * T; i++)
      mask8[i] = sdw_tensor_get(mask, i) != 0.0;
  }
  for (int64_t b = 0; b < B; b++) {
    const int64_t *row = ids64 + b * T;
    int64_t at = 0;
    if (c->eos_token_id == 2) {
      for (int64_t t = 1; t < T; t++)
        if (row[t] > row[at]) at = t;
    } else {
      for (int64_t t = 0; t < T; t++)
        if (row[t] == c->eos_token_id) {
          at = t;
          break;
        }
    }
    pool[b] = at;
  }
  return SDW_OK;
}

sdw_status sdw_clip_text_stage_inputs(const sdw_clip_text *m, const sdw_tensor *input_ids,
                                      const sdw_tensor *attention_mask,
                                      sdw_clip_text_staging *out) {
  const sdw_clip_text_config *c = &m->config;
  memset(out, 0, sizeof *out);
  if (input_ids->ndim != 2 || (input_ids->dtype != SDW_I64 && input_ids->dtype != SDW_I32) ||
      input_ids->shape[0] < 1 || input_ids->shape[1] < 1 || input_ids->shape[1] > c->max_positions)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "input_ids must be I64 or I32 of shape [batch, tokens] with 1..%lld tokens",
                    (long long)c->max_positions);
  const int64_t B = input_ids->shape[0], T = input_ids->shape[1];
  const size_t n = (size_t)(B * T);
  int64_t *host = malloc(n * 2 * sizeof(int64_t) + (size_t)B * sizeof(int64_t) + n);
  if (!host) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for CLIP inputs");
  out->B = B;
  out->T = T;
  out->owned = host;
  out->ids = host;
  out->positions = host + n;
  out->pool = host + 2 * n;
  out->mask = attention_mask ? (unsigned char *)(out->pool + B) : NULL;
  for (size_t i = 0; i < n; i++)
    out->positions[i] = (int64_t)(i % (size_t)T);
  return check_inputs(m, input_ids, attention_mask, out->ids, out->mask, out->pool);
}

void sdw_clip_text_staging_free(sdw_clip_text_staging *s) {
  free(s->owned);
  memset(s, 0, sizeof *s);
}

static sdw_status act_forward(sdw_ctx *ctx, sdw_clip_act act, sdw_tensor *x) {
  return act == SDW_CLIP_ACT_GELU ? ctx->ops->gelu_forward(ctx, x, x)
                                  : ctx->ops->quick_gelu_forward(ctx, x, x);
}

static sdw_status layer_forward(sdw_clip_text *m, const sdw_clip_text_layer *L, sdw_tensor *x,
                                sdw_tensor *h, sdw_tensor *q, sdw_tensor *k, sdw_tensor *v,
                                sdw_tensor *a, sdw_tensor *mlp, const sdw_tensor *mask) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  int64_t B = x->shape[0], T = x->shape[1], H = c->num_heads, Dh = c->hidden_size / H;
  float eps = c->layer_norm_eps;
  SDW_TRY(ops->layer_norm_forward(ctx, x, &L->ln1_w, &L->ln1_b, eps, h, NULL, NULL));
  SDW_TRY(ops->linear_forward(ctx, h, &L->q_w, &L->q_b, q));
  SDW_TRY(ops->linear_forward(ctx, h, &L->k_w, &L->k_b, k));
  SDW_TRY(ops->linear_forward(ctx, h, &L->v_w, &L->v_b, v));
  /* The linear outputs [B,T,D] are [B,T,H,Dh] with the heads interleaved. */
  int64_t hs[4] = {B, T, H, Dh};
  sdw_tensor q4 = *q, k4 = *k, v4 = *v, a4 = *a;
  sdw_tensor *views[4] = {&q4, &k4, &v4, &a4};
  for (int i = 0; i < 4; i++) {
    views[i]->ndim = 4;
    memcpy(views[i]->shape, hs, sizeof hs);
  }
  float scale = (float)(1.0 / sqrt((double)Dh));
  SDW_TRY(ops->attention_forward(ctx, &q4, &k4, &v4, mask, true, scale, &a4, NULL));
  SDW_TRY(ops->linear_forward(ctx, a, &L->out_w, &L->out_b, h));
  SDW_TRY(ops->add(ctx, x, h, x));
  SDW_TRY(ops->layer_norm_forward(ctx, x, &L->ln2_w, &L->ln2_b, eps, h, NULL, NULL));
  SDW_TRY(ops->linear_forward(ctx, h, &L->fc1_w, &L->fc1_b, mlp));
  SDW_TRY(act_forward(ctx, c->act, mlp));
  SDW_TRY(ops->linear_forward(ctx, mlp, &L->fc2_w, &L->fc2_b, h));
  SDW_TRY(ops->add(ctx, x, h, x));
  return SDW_OK;
}

static void check_output(const sdw_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2,
                         const sdw_ctx *ctx) {
  SDW_ASSERT(t->dtype == SDW_F32 && t->ndim == ndim && t->device.kind == ctx->ops->device);
  SDW_ASSERT(t->shape[0] == d0 && t->shape[1] == d1 && (ndim < 3 || t->shape[2] == d2));
}

sdw_status sdw_clip_text_forward(sdw_clip_text *m, const sdw_tensor *input_ids,
                                 const sdw_tensor *attention_mask,
                                 const sdw_clip_text_outputs *out) {
  sdw_ctx *ctx = m->ctx;
  const sdw_backend *ops = ctx->ops;
  const sdw_clip_text_config *c = &m->config;
  /* Host staging: ids, positions and mask as the device will see them. */
  sdw_clip_text_staging in;
  sdw_status st = sdw_clip_text_stage_inputs(m, input_ids, attention_mask, &in);
  if (st != SDW_OK) {
    sdw_clip_text_staging_free(&in);
    return st;
  }
  int64_t B = in.B, T = in.T, D = c->hidden_size;
  int64_t L = c->num_layers;
  if (out->last_hidden_state) check_output(out->last_hidden_state, 3, B, T, D, ctx);
  if (out->pooler_output) check_output(out->pooler_output, 2, B, D, 0, ctx);
  if (out->hidden) {
    check_output(out->hidden, 3, B, T, D, ctx);
    SDW_ASSERT(out->hidden_layer >= 0 && out->hidden_layer <= L);
  }
  bool need_final = out->last_hidden_state || out->pooler_output;
  int64_t layers = need_final ? L : out->hidden ? out->hidden_layer : 0;

  size_t n = (size_t)(B * T);
  const int64_t *ids64 = in.ids, *pos64 = in.positions, *pool = in.pool;
  const unsigned char *mask8 = in.mask;
  size_t need = act_need(c, B, T);
  if (st == SDW_OK && need > m->act_bytes) {
    if (m->act) ops->free(ctx, m->act);
    m->act = NULL;
    m->act_bytes = 0;
    st = ops->alloc(ctx, need, &m->act);
    if (st == SDW_OK) m->act_bytes = need;
  }
  act_alloc a = {ctx, m->act, 0};
  int64_t btd[3] = {B, T, D}, bti[3] = {B, T, c->intermediate_size}, bt[2] = {B, T};
  sdw_tensor x = {0}, h = {0}, q = {0}, k = {0}, v = {0}, att = {0}, fin = {0}, mlp = {0};
  sdw_tensor ids = {0}, pos = {0}, mask = {0};
  if (st == SDW_OK) {
    x = act_take(&a, SDW_F32, 3, btd);
    h = act_take(&a, SDW_F32, 3, btd);
    q = act_take(&a, SDW_F32, 3, btd);
    k = act_take(&a, SDW_F32, 3, btd);
    v = act_take(&a, SDW_F32, 3, btd);
    att = act_take(&a, SDW_F32, 3, btd);
    fin = act_take(&a, SDW_F32, 3, btd);
    mlp = act_take(&a, SDW_F32, 3, bti);
    ids = act_take(&a, SDW_I64, 2, bt);
    pos = act_take(&a, SDW_I64, 2, bt);
    mask = act_take(&a, SDW_U8, 2, bt);
    SDW_ASSERT(a.used <= m->act_bytes);
    st = ops->upload(ctx, ids.data, ids64, n * sizeof(int64_t));
  }
  if (st == SDW_OK) st = ops->upload(ctx, pos.data, pos64, n * sizeof(int64_t));
  if (st == SDW_OK && mask8) st = ops->upload(ctx, mask.data, mask8, n);
  /* x = token_embedding[ids] + position_embedding[0..T) */
  if (st == SDW_OK) st = ops->embedding_forward(ctx, &ids, &m->token_embedding, &x);
  if (st == SDW_OK) st = ops->embedding_forward(ctx, &pos, &m->position_embedding, &h);
  if (st == SDW_OK) st = ops->add(ctx, &x, &h, &x);
  for (int64_t l = 0; st == SDW_OK && l <= layers; l++) {
    if (out->hidden && out->hidden_layer == l) {
      st = out->hidden_final_norm
               ? ops->layer_norm_forward(ctx, &x, &m->final_ln_w, &m->final_ln_b, c->layer_norm_eps,
                                         out->hidden, NULL, NULL)
               : ops->copy(ctx, &x, out->hidden);
      if (st != SDW_OK) break;
    }
    if (l == layers) break;
    st = layer_forward(m, &m->layers[l], &x, &h, &q, &k, &v, &att, &mlp, mask8 ? &mask : NULL);
  }
  if (st == SDW_OK && need_final) {
    sdw_tensor *final = out->last_hidden_state ? out->last_hidden_state : &fin;
    st = ops->layer_norm_forward(ctx, &x, &m->final_ln_w, &m->final_ln_b, c->layer_norm_eps, final,
                                 NULL, NULL);
    for (int64_t b = 0; st == SDW_OK && out->pooler_output && b < B; b++) {
      sdw_tensor src = view_rows(final, b * T + pool[b], 1, D);
      sdw_tensor dst = view_rows(out->pooler_output, b, 1, D);
      st = ops->copy(ctx, &src, &dst);
    }
  }
  sdw_clip_text_staging_free(&in);
  return st;
}
