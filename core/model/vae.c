/* The VAE (diffusers AutoencoderKL): configuration, parameters and the
 * untiled forward. Contracts in core/model/vae.h; weight layouts in
 * vae_weights.c, tiling in vae_tiled.c.
 *
 * Activation memory. A forward keeps the current activation in one of
 * three "slots", each as large as the largest activation of the call, and
 * every block writes its temporaries and its output into the other two:
 *   resnet      x:s -> GN a, SiLU a, conv1 b, GN a, SiLU a, conv2 b,
 *               (shortcut a), add -> b
 *   attention   x:s -> GN a, tokens b, q/k/v (arena), attention a,
 *               to_out b, back to NCHW a, add -> a
 *   downsample  x:s -> pad right a, pad bottom b, conv stride 2 -> a
 *   upsample    x:s -> nearest x2 a, conv -> b
 * so the peak is three activations of the largest level (plus the small
 * attention tensors) instead of everything the call produces. The same code
 * runs "dry" (no op is called) to size the slots and to count FLOPs, so the
 * plan cannot drift from what is executed. */
#include "core/model/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"

/* --- configuration -------------------------------------------------------- */

sdw_status sdw_vae_preset(const char *name, sdw_vae_config *out) {
  if (strcmp(name, "sd-vae-ft-mse") != 0 && strcmp(name, "sd15") != 0)
    return sdw_fail(SDW_ERR_NOT_FOUND, "no VAE preset named '%s' (sd-vae-ft-mse)", name);
  memset(out, 0, sizeof *out);
  out->in_channels = 3;
  out->out_channels = 3;
  out->latent_channels = 4;
  out->levels = 4;
  const int ch[4] = {128, 256, 512, 512};
  memcpy(out->block_out_channels, ch, sizeof ch);
  out->layers_per_block = 2;
  out->norm_groups = 32;
  out->norm_eps = 1e-6f;
  out->mid_attention = true;
  out->use_quant_conv = true;
  out->use_post_quant_conv = true;
  out->scaling_factor = 0.18215f;
  out->sample_size = 512;
  return SDW_OK;
}

int sdw_vae_downscale(const sdw_vae_config *cfg) { return 1 << (cfg->levels - 1); }

sdw_status sdw_vae_config_validate(const sdw_vae_config *c) {
  if (c->levels < 1 || c->levels > SDW_VAE_MAX_LEVELS)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: %d levels (1..%d supported)", c->levels,
                    SDW_VAE_MAX_LEVELS);
  if (c->in_channels < 1 || c->out_channels < 1 || c->latent_channels < 1 ||
      c->in_channels > 4096 || c->out_channels > 4096 || c->latent_channels > 4096)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE config: in_channels %d, out_channels %d and latent_channels %d must be "
                    "in 1..4096",
                    c->in_channels, c->out_channels, c->latent_channels);
  if (c->layers_per_block < 1 || c->layers_per_block > 64)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: layers_per_block %d (1..64 supported)",
                    c->layers_per_block);
  if (c->norm_groups < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: norm_num_groups must be positive");
  for (int l = 0; l < c->levels; l++)
    if (c->block_out_channels[l] < 1 || c->block_out_channels[l] > 65536 ||
        c->block_out_channels[l] % c->norm_groups != 0)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "VAE config: block_out_channels[%d] = %d is not a positive multiple of the "
                      "%d GroupNorm groups",
                      l, c->block_out_channels[l], c->norm_groups);
  if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: norm eps must be positive");
  if (!(c->scaling_factor > 0.0f) || !isfinite(c->scaling_factor))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: scaling_factor must be positive");
  if (c->sample_size < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE config: sample_size must be positive");
  return SDW_OK;
}

/* A string array whose every element must equal want (the block types). */
static sdw_status check_block_types(const sdw_json_obj *root, const char *key, const char *want,
                                    int levels) {
  if (!sdw_json_has(root, key)) return SDW_OK;
  const char *types[SDW_VAE_MAX_LEVELS + 1];
  size_t n = 0;
  sdw_status st = sdw_json_get_string_array(root, key, types, SDW_VAE_MAX_LEVELS + 1, &n);
  if (st != SDW_OK) return st;
  if ((int)n != levels)
    return sdw_fail(SDW_ERR_FORMAT, "%s: %s has %zu entries but block_out_channels has %d",
                    root->doc, key, n, levels);
  for (size_t i = 0; i < n; i++)
    if (strcmp(types[i], want) != 0)
      return sdw_fail(SDW_ERR_UNSUPPORTED,
                      "%s: %s[%zu] is '%s'; sdw's AutoencoderKL supports %s only", root->doc, key,
                      i, types[i], want);
  return SDW_OK;
}

static sdw_status config_read(const sdw_json_doc *doc, sdw_vae_config *out) {
  const char *name = sdw_json_doc_name(doc);
  sdw_json_obj root;
  SDW_TRY(sdw_json_root(doc, &root));
  const char *cls;
  SDW_TRY(sdw_json_get_string_or(&root, "_class_name", "AutoencoderKL", &cls));
  /* a transformers config (CLIP, ...) names its model_type instead */
  const char *model_type = NULL;
  if (!sdw_json_has(&root, "_class_name") && sdw_json_has(&root, "model_type"))
    SDW_TRY(sdw_json_get_string(&root, "model_type", &model_type));
  if (model_type)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: model_type '%s' is not a VAE (expected a diffusers AutoencoderKL "
                    "config); give the VAE's config.json",
                    name, model_type);
  if (strcmp(cls, "AutoencoderKL") != 0)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: _class_name '%s' is not a VAE (expected AutoencoderKL); give the VAE's "
                    "config.json",
                    name, cls);
  /* Defaults: AutoencoderKL.__init__ (diffusers v0.25.1). */
  sdw_vae_config c;
  memset(&c, 0, sizeof c);
  int64_t v;
  SDW_TRY(sdw_json_get_int_or(&root, "in_channels", 3, &v));
  c.in_channels = v > 0 && v < 1000000 ? (int)v : -1;
  SDW_TRY(sdw_json_get_int_or(&root, "out_channels", 3, &v));
  c.out_channels = v > 0 && v < 1000000 ? (int)v : -1;
  SDW_TRY(sdw_json_get_int_or(&root, "latent_channels", 4, &v));
  c.latent_channels = v > 0 && v < 1000000 ? (int)v : -1;
  SDW_TRY(sdw_json_get_int_or(&root, "layers_per_block", 1, &v));
  c.layers_per_block = v > 0 && v < 1000000 ? (int)v : -1;
  SDW_TRY(sdw_json_get_int_or(&root, "norm_num_groups", 32, &v));
  c.norm_groups = v > 0 && v < 1000000 ? (int)v : -1;
  if (sdw_json_has(&root, "block_out_channels")) {
    int64_t ch[SDW_VAE_MAX_LEVELS];
    size_t n = 0;
    sdw_status st = sdw_json_get_int_array(&root, "block_out_channels", ch, SDW_VAE_MAX_LEVELS, &n);
    if (st != SDW_OK) return st;
    if (n < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: block_out_channels is empty", name);
    c.levels = (int)n;
    for (size_t i = 0; i < n; i++)
      c.block_out_channels[i] = ch[i] > 0 && ch[i] < 1000000 ? (int)ch[i] : -1;
  } else {
    c.levels = 1;
    c.block_out_channels[0] = 64;
  }
  SDW_TRY(check_block_types(&root, "down_block_types", "DownEncoderBlock2D", c.levels));
  SDW_TRY(check_block_types(&root, "up_block_types", "UpDecoderBlock2D", c.levels));
  const char *act;
  SDW_TRY(sdw_json_get_string_or(&root, "act_fn", "silu", &act));
  if (strcmp(act, "silu") != 0 && strcmp(act, "swish") != 0)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "%s: act_fn '%s' is not supported (sdw knows silu)", name,
                    act);
  /* sample_size may be an int or a [h, w] list (diffusers takes the first). */
  const cJSON *ss = sdw_json_find(&root, "sample_size");
  if (ss && cJSON_IsArray(ss)) {
    const cJSON *first = cJSON_GetArrayItem(ss, 0);
    if (!first || !cJSON_IsNumber(first) || first->valuedouble != floor(first->valuedouble))
      return sdw_fail(SDW_ERR_FORMAT, "%s: sample_size must be an integer or a list of them", name);
    c.sample_size =
        first->valuedouble > 0 && first->valuedouble < 1e6 ? (int)first->valuedouble : -1;
  } else {
    SDW_TRY(sdw_json_get_int_or(&root, "sample_size", 32, &v));
    c.sample_size = v > 0 && v < 1000000 ? (int)v : -1;
  }
  double sf;
  SDW_TRY(sdw_json_get_double_or(&root, "scaling_factor", 0.18215, &sf));
  c.scaling_factor = (float)sf;
  SDW_TRY(sdw_json_get_bool_or(&root, "mid_block_add_attention", true, &c.mid_attention));
  SDW_TRY(sdw_json_get_bool_or(&root, "use_quant_conv", true, &c.use_quant_conv));
  SDW_TRY(sdw_json_get_bool_or(&root, "use_post_quant_conv", true, &c.use_post_quant_conv));
  c.norm_eps = 1e-6f;
  sdw_status st = sdw_vae_config_validate(&c);
  if (st != SDW_OK) {
    sdw_error_prefix("%s", name);
    return SDW_ERR_FORMAT;
  }
  *out = c;
  return SDW_OK;
}

sdw_status sdw_vae_config_parse(const char *text, size_t size, const char *name,
                                sdw_vae_config *out) {
  sdw_json_doc *doc;
  SDW_TRY(sdw_json_parse(text, size, name, &doc));
  sdw_status st = config_read(doc, out);
  sdw_json_free(doc);
  return st;
}

sdw_status sdw_vae_config_from_json(const char *path, sdw_vae_config *out) {
  sdw_json_doc *doc;
  SDW_TRY(sdw_json_load_file(path, &doc));
  sdw_status st = config_read(doc, out);
  sdw_json_free(doc);
  return st;
}

/* --- parameters ----------------------------------------------------------- */

static sdw_tensor take1(sdw_params *p, int64_t d0, const char *prefix, const char *suffix) {
  return sdw_params_take(p, 1, (int64_t[]){d0}, "%s%s", prefix, suffix);
}
static sdw_tensor take2(sdw_params *p, int64_t d0, int64_t d1, const char *prefix,
                        const char *suffix) {
  return sdw_params_take(p, 2, (int64_t[]){d0, d1}, "%s%s", prefix, suffix);
}
static sdw_tensor take4(sdw_params *p, int64_t d0, int64_t d1, int64_t k, const char *prefix,
                        const char *suffix) {
  return sdw_params_take(p, 4, (int64_t[]){d0, d1, k, k}, "%s%s", prefix, suffix);
}

/* prefix ends with '.': "encoder.down_blocks.0.resnets.1." */
static void declare_resnet(sdw_params *p, sdw_vae_resnet *r, int in, int out, const char *prefix) {
  r->in_ch = in;
  r->out_ch = out;
  r->has_shortcut = in != out;
  r->norm1_w = take1(p, in, prefix, "norm1.weight");
  r->norm1_b = take1(p, in, prefix, "norm1.bias");
  r->conv1_w = take4(p, out, in, 3, prefix, "conv1.weight");
  r->conv1_b = take1(p, out, prefix, "conv1.bias");
  r->norm2_w = take1(p, out, prefix, "norm2.weight");
  r->norm2_b = take1(p, out, prefix, "norm2.bias");
  r->conv2_w = take4(p, out, out, 3, prefix, "conv2.weight");
  r->conv2_b = take1(p, out, prefix, "conv2.bias");
  if (r->has_shortcut) {
    r->shortcut_w = take4(p, out, in, 1, prefix, "conv_shortcut.weight");
    r->shortcut_b = take1(p, out, prefix, "conv_shortcut.bias");
  }
}

static void declare_attention(sdw_params *p, sdw_vae_attention *a, int ch, const char *prefix) {
  a->channels = ch;
  a->norm_w = take1(p, ch, prefix, "group_norm.weight");
  a->norm_b = take1(p, ch, prefix, "group_norm.bias");
  a->q_w = take2(p, ch, ch, prefix, "to_q.weight");
  a->q_b = take1(p, ch, prefix, "to_q.bias");
  a->k_w = take2(p, ch, ch, prefix, "to_k.weight");
  a->k_b = take1(p, ch, prefix, "to_k.bias");
  a->v_w = take2(p, ch, ch, prefix, "to_v.weight");
  a->v_b = take1(p, ch, prefix, "to_v.bias");
  a->out_w = take2(p, ch, ch, prefix, "to_out.0.weight");
  a->out_b = take1(p, ch, prefix, "to_out.0.bias");
}

/* The mid block in state_dict order: attentions.0 before resnets.0/1. */
static void declare_mid(sdw_params *p, sdw_vae_coder *c, int ch, bool attention, const char *half) {
  char prefix[SDW_PARAM_NAME_MAX];
  if (attention) {
    snprintf(prefix, sizeof prefix, "%s.mid_block.attentions.0.", half);
    declare_attention(p, &c->mid_attention, ch, prefix);
  }
  for (int r = 0; r < 2; r++) {
    snprintf(prefix, sizeof prefix, "%s.mid_block.resnets.%d.", half, r);
    declare_resnet(p, &c->mid_resnets[r], ch, ch, prefix);
  }
}

/* Both passes of the two-pass build, in diffusers' state_dict order:
 * encoder, decoder, quant_conv, post_quant_conv. */
static void vae_build(sdw_vae *m) {
  sdw_params *p = &m->params;
  const sdw_vae_config *c = &m->cfg;
  const int L = c->levels, lat = c->latent_channels;
  const int *ch = c->block_out_channels;
  char prefix[SDW_PARAM_NAME_MAX];
  sdw_vae_resnet *next = m->resnets;
  if (m->parts & SDW_VAE_ENCODER) {
    sdw_vae_coder *e = &m->encoder;
    e->conv_in_w = take4(p, ch[0], c->in_channels, 3, "encoder.", "conv_in.weight");
    e->conv_in_b = take1(p, ch[0], "encoder.", "conv_in.bias");
    for (int l = 0; l < L; l++) {
      sdw_vae_level *lv = &e->levels[l];
      lv->resnets = next;
      lv->resnet_count = c->layers_per_block;
      next += lv->resnet_count;
      for (int r = 0; r < lv->resnet_count; r++) {
        snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d.resnets.%d.", l, r);
        declare_resnet(p, &lv->resnets[r],
                       r > 0   ? ch[l]
                       : l > 0 ? ch[l - 1]
                               : ch[0],
                       ch[l], prefix);
      }
      lv->has_sampler = l < L - 1;
      if (lv->has_sampler) {
        snprintf(prefix, sizeof prefix, "encoder.down_blocks.%d.downsamplers.0.", l);
        lv->sampler_w = take4(p, ch[l], ch[l], 3, prefix, "conv.weight");
        lv->sampler_b = take1(p, ch[l], prefix, "conv.bias");
      }
    }
    e->mid_resnets = next;
    next += 2;
    declare_mid(p, e, ch[L - 1], c->mid_attention, "encoder");
    e->norm_out_w = take1(p, ch[L - 1], "encoder.", "conv_norm_out.weight");
    e->norm_out_b = take1(p, ch[L - 1], "encoder.", "conv_norm_out.bias");
    e->conv_out_w = take4(p, 2 * lat, ch[L - 1], 3, "encoder.", "conv_out.weight");
    e->conv_out_b = take1(p, 2 * lat, "encoder.", "conv_out.bias");
  }
  if (m->parts & SDW_VAE_DECODER) {
    sdw_vae_coder *d = &m->decoder;
    d->conv_in_w = take4(p, ch[L - 1], lat, 3, "decoder.", "conv_in.weight");
    d->conv_in_b = take1(p, ch[L - 1], "decoder.", "conv_in.bias");
    for (int l = 0; l < L; l++) {
      /* up_blocks[l] works at reversed channel count ch[L-1-l] */
      const int out = ch[L - 1 - l], prev = l > 0 ? ch[L - l] : ch[L - 1];
      sdw_vae_level *lv = &d->levels[l];
      lv->resnets = next;
      lv->resnet_count = c->layers_per_block + 1;
      next += lv->resnet_count;
      for (int r = 0; r < lv->resnet_count; r++) {
        snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d.resnets.%d.", l, r);
        declare_resnet(p, &lv->resnets[r], r > 0 ? out : prev, out, prefix);
      }
      lv->has_sampler = l < L - 1;
      if (lv->has_sampler) {
        snprintf(prefix, sizeof prefix, "decoder.up_blocks.%d.upsamplers.0.", l);
        lv->sampler_w = take4(p, out, out, 3, prefix, "conv.weight");
        lv->sampler_b = take1(p, out, prefix, "conv.bias");
      }
    }
    d->mid_resnets = next;
    next += 2;
    declare_mid(p, d, ch[L - 1], c->mid_attention, "decoder");
    d->norm_out_w = take1(p, ch[0], "decoder.", "conv_norm_out.weight");
    d->norm_out_b = take1(p, ch[0], "decoder.", "conv_norm_out.bias");
    d->conv_out_w = take4(p, c->out_channels, ch[0], 3, "decoder.", "conv_out.weight");
    d->conv_out_b = take1(p, c->out_channels, "decoder.", "conv_out.bias");
  }
  if ((m->parts & SDW_VAE_ENCODER) && c->use_quant_conv) {
    m->quant_w = take4(p, 2 * lat, 2 * lat, 1, "", "quant_conv.weight");
    m->quant_b = take1(p, 2 * lat, "", "quant_conv.bias");
  }
  if ((m->parts & SDW_VAE_DECODER) && c->use_post_quant_conv) {
    m->post_quant_w = take4(p, lat, lat, 1, "", "post_quant_conv.weight");
    m->post_quant_b = take1(p, lat, "", "post_quant_conv.bias");
  }
  SDW_ASSERT(next - m->resnets <= m->resnet_count);
}

/* Validates, allocates the resnet table and runs the counting pass. */
static sdw_status vae_setup(sdw_vae *m, sdw_ctx *ctx, const sdw_vae_config *cfg, int parts) {
  memset(m, 0, sizeof *m);
  SDW_TRY(sdw_vae_config_validate(cfg));
  if (parts < SDW_VAE_ENCODER || parts > SDW_VAE_BOTH)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE: parts must name the encoder, decoder or both");
  m->cfg = *cfg;
  m->ctx = ctx;
  m->parts = parts;
  m->upsample_phases = true;
  m->resnet_count = cfg->levels * (2 * cfg->layers_per_block + 1) + 4;
  m->resnets = calloc((size_t)m->resnet_count, sizeof *m->resnets);
  if (!m->resnets) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the VAE");
  sdw_params_init(&m->params, ctx);
  vae_build(m);
  return SDW_OK;
}

/* The counting pass needs a context only for its device kind. */
static sdw_ctx plan_ctx;

sdw_status sdw_vae_plan(sdw_vae *m, const sdw_vae_config *cfg, int parts) {
  plan_ctx.ops = sdw_backend_cpu();
  sdw_status st = vae_setup(m, &plan_ctx, cfg, parts);
  if (st != SDW_OK) sdw_vae_free(m);
  return st;
}

sdw_status sdw_vae_create(sdw_vae *m, sdw_ctx *ctx, const sdw_vae_config *cfg, int parts) {
  sdw_status st = vae_setup(m, ctx, cfg, parts);
  if (st == SDW_OK) st = sdw_params_allocate(&m->params);
  if (st == SDW_OK) {
    vae_build(m);
    st = sdw_params_finish(&m->params);
  }
  if (st != SDW_OK) sdw_vae_free(m);
  return st;
}

void sdw_vae_free(sdw_vae *m) {
  if (m->ctx) sdw_params_free(&m->params);
  free(m->resnets);
  memset(m, 0, sizeof *m);
}

int64_t sdw_vae_param_count(const sdw_vae *m) {
  int64_t n = 0;
  for (int i = 0; i < m->params.count; i++)
    n += sdw_tensor_numel(&m->params.items[i].value);
  return n;
}

/* --- the forward machinery ------------------------------------------------ */

enum { SLOTS = 3 };

/* One forward call: the three activation slots and the arena, or a dry run
 * that only measures (slot size, extra arena bytes, FLOPs). */
typedef struct vae_run {
  sdw_ctx *ctx;
  sdw_arena *arena;
  bool dry;
  int64_t slot_elems[SLOTS]; /* capacity of each slot (real run) / largest use (dry) */
  float *slot[SLOTS];        /* backend memory (NULL in a dry run) */
  size_t extra_used;         /* dry: arena bytes above the slots, now */
  size_t extra_peak;         /* dry: and at most */
  double flops;              /* diffusers' count (dry and real) */
  double flops_executed;     /* what runs here (phase upsampling does less) */
} vae_run;

static size_t round_align(size_t bytes) {
  return (bytes + SDW_ARENA_ALIGN - 1) / SDW_ARENA_ALIGN * SDW_ARENA_ALIGN;
}

static sdw_tensor make_view(const vae_run *r, void *data, int ndim, const int64_t *shape) {
  sdw_tensor t = sdw_tensor_make(data, SDW_F32, ndim, shape);
  t.device = (sdw_device){r->ctx->ops->device, 0};
  return t;
}

/* A view of slot i with the given shape. */
static sdw_tensor slot_view(vae_run *r, int i, int ndim, const int64_t *shape) {
  sdw_tensor t = make_view(r, r->slot[i], ndim, shape);
  int64_t n = sdw_tensor_numel(&t);
  if (r->dry) {
    if (n > r->slot_elems[i]) r->slot_elems[i] = n;
  } else {
    SDW_ASSERT_MSG(n <= r->slot_elems[i], "VAE slot plan too small (%lld > %lld)", (long long)n,
                   (long long)r->slot_elems[i]);
  }
  return t;
}

/* A view of slot i at an element offset. */
static sdw_tensor slot_view_at(vae_run *r, int i, int64_t offset, int ndim, const int64_t *shape) {
  sdw_tensor t = make_view(r, r->slot[i] ? r->slot[i] + offset : NULL, ndim, shape);
  int64_t n = offset + sdw_tensor_numel(&t);
  if (r->dry) {
    if (n > r->slot_elems[i]) r->slot_elems[i] = n;
  } else {
    SDW_ASSERT_MSG(n <= r->slot_elems[i], "VAE slot plan too small (%lld > %lld)", (long long)n,
                   (long long)r->slot_elems[i]);
  }
  return t;
}

static sdw_tensor slot4(vae_run *r, int i, int64_t n, int64_t c, int64_t h, int64_t w) {
  return slot_view(r, i, 4, (int64_t[]){n, c, h, w});
}

/* Another shape over the same data. */
static sdw_tensor reshape(const sdw_tensor *t, int ndim, const int64_t *shape) {
  sdw_tensor v = sdw_tensor_make(t->data, t->dtype, ndim, shape);
  v.device = t->device;
  SDW_ASSERT(sdw_tensor_numel(&v) == sdw_tensor_numel(t));
  return v;
}

/* Arena tensors above the slots (mark / reset around their use). */
static size_t run_mark(const vae_run *r) {
  return r->dry ? r->extra_used : sdw_arena_mark(r->arena);
}
static void run_reset(vae_run *r, size_t mark) {
  if (r->dry)
    r->extra_used = mark;
  else
    sdw_arena_reset_to(r->arena, mark);
}
static sdw_status run_alloc(vae_run *r, sdw_tensor *out, int ndim, const int64_t *shape) {
  *out = make_view(r, NULL, ndim, shape);
  size_t bytes = sdw_tensor_nbytes(out);
  if (r->dry) {
    r->extra_used = round_align(r->extra_used) + bytes;
    if (r->extra_used > r->extra_peak) r->extra_peak = r->extra_used;
    return SDW_OK;
  }
  out->data = sdw_arena_alloc(r->arena, bytes);
  return out->data ? SDW_OK : SDW_ERR_OUT_OF_MEMORY;
}

/* Runs an op unless dry. */
#define RUN(r, call)                                                                               \
  do {                                                                                             \
    if (!(r)->dry) SDW_TRY(call);                                                                  \
  } while (0)

/* A convolution; counts its FLOPs as executed (and, unless reference is
 * false, in diffusers' count too). */
static sdw_status run_conv_counted(vae_run *r, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *b, int stride, int pad, sdw_tensor *y,
                                   bool reference) {
  const double f = 2.0 * (double)sdw_tensor_numel(y) * (double)sdw_tensor_span(w, 1, 4);
  r->flops_executed += f;
  if (reference) r->flops += f;
  RUN(r, r->ctx->ops->conv2d_forward(r->ctx, x, w, b, stride, pad, y));
  return SDW_OK;
}

static sdw_status run_conv(vae_run *r, const sdw_tensor *x, const sdw_tensor *w,
                           const sdw_tensor *b, int stride, int pad, sdw_tensor *y) {
  return run_conv_counted(r, x, w, b, stride, pad, y, true);
}

static sdw_status run_linear(vae_run *r, const sdw_tensor *x, const sdw_tensor *w,
                             const sdw_tensor *b, sdw_tensor *y) {
  r->flops += 2.0 * (double)sdw_tensor_numel(y) * (double)w->shape[1];
  r->flops_executed += 2.0 * (double)sdw_tensor_numel(y) * (double)w->shape[1];
  RUN(r, r->ctx->ops->linear_forward(r->ctx, x, w, b, y));
  return SDW_OK;
}

/* y = SiLU(GroupNorm(x)); y may not alias x. */
static sdw_status run_norm_silu(vae_run *r, const sdw_tensor *x, const sdw_tensor *gamma,
                                const sdw_tensor *beta, sdw_tensor *y, int groups, float eps) {
  const sdw_backend *ops = r->ctx->ops;
  RUN(r, ops->group_norm_forward(r->ctx, x, gamma, beta, groups, eps, y, NULL, NULL));
  RUN(r, ops->silu_forward(r->ctx, y, y));
  return SDW_OK;
}

/* The two slots other than s (s = -1: an external tensor; then 0 and 1). */
static void others(int s, int *a, int *b) {
  int k = 0, o[2] = {0, 1};
  for (int i = 0; i < SLOTS && k < 2; i++)
    if (i != s) o[k++] = i;
  *a = o[0];
  *b = o[1];
}

/* x (in slot s, or external when s < 0) -> the returned slot. */
static sdw_status resnet_forward(vae_run *r, const sdw_vae_config *c, const sdw_vae_resnet *m,
                                 const sdw_tensor *x, int s, int *out_slot) {
  const sdw_backend *ops = r->ctx->ops;
  const int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
  SDW_ASSERT(x->shape[1] == m->in_ch);
  int a, b;
  others(s, &a, &b);
  sdw_tensor ta = slot4(r, a, N, m->in_ch, H, W);
  sdw_tensor tb = slot4(r, b, N, m->out_ch, H, W);
  SDW_TRY(run_norm_silu(r, x, &m->norm1_w, &m->norm1_b, &ta, c->norm_groups, c->norm_eps));
  SDW_TRY(run_conv(r, &ta, &m->conv1_w, &m->conv1_b, 1, 1, &tb));
  ta = slot4(r, a, N, m->out_ch, H, W);
  SDW_TRY(run_norm_silu(r, &tb, &m->norm2_w, &m->norm2_b, &ta, c->norm_groups, c->norm_eps));
  SDW_TRY(run_conv(r, &ta, &m->conv2_w, &m->conv2_b, 1, 1, &tb));
  if (m->has_shortcut) {
    SDW_TRY(run_conv(r, x, &m->shortcut_w, &m->shortcut_b, 1, 0, &ta));
    RUN(r, ops->add(r->ctx, &ta, &tb, &tb));
  } else {
    RUN(r, ops->add(r->ctx, x, &tb, &tb));
  }
  *out_slot = b;
  return SDW_OK;
}

/* diffusers' Attention over the H*W positions, one head of width C,
 * residual added; x in slot s -> the returned slot. */
static sdw_status attention_forward(vae_run *r, const sdw_vae_config *c, const sdw_vae_attention *m,
                                    const sdw_tensor *x, int s, int *out_slot) {
  const sdw_backend *ops = r->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], T = H * W;
  int a, b;
  others(s, &a, &b);
  sdw_tensor ta = slot4(r, a, N, C, H, W);
  RUN(r, ops->group_norm_forward(r->ctx, x, &m->norm_w, &m->norm_b, c->norm_groups, c->norm_eps,
                                 &ta, NULL, NULL));
  sdw_tensor tokens = slot_view(r, b, 3, (int64_t[]){N, T, C});
  RUN(r, ops->nchw_to_nlc(r->ctx, &ta, &tokens));
  const size_t mark = run_mark(r);
  const int64_t ntc[3] = {N, T, C};
  sdw_tensor q, k, v;
  SDW_TRY(run_alloc(r, &q, 3, ntc));
  SDW_TRY(run_alloc(r, &k, 3, ntc));
  SDW_TRY(run_alloc(r, &v, 3, ntc));
  SDW_TRY(run_linear(r, &tokens, &m->q_w, &m->q_b, &q));
  SDW_TRY(run_linear(r, &tokens, &m->k_w, &m->k_b, &k));
  SDW_TRY(run_linear(r, &tokens, &m->v_w, &m->v_b, &v));
  const int64_t heads[4] = {N, T, 1, C};
  sdw_tensor q4 = reshape(&q, 4, heads), k4 = reshape(&k, 4, heads), v4 = reshape(&v, 4, heads);
  sdw_tensor o4 = slot_view(r, a, 4, heads);
  const float scale = (float)(1.0 / sqrt((double)C));
  r->flops += 4.0 * (double)N * (double)T * (double)T * (double)C;
  r->flops_executed += 4.0 * (double)N * (double)T * (double)T * (double)C;
  RUN(r, ops->attention_forward(r->ctx, &q4, &k4, &v4, NULL, false, scale, &o4, NULL));
  sdw_tensor o3 = reshape(&o4, 3, ntc);
  SDW_TRY(run_linear(r, &o3, &m->out_w, &m->out_b, &tokens));
  run_reset(r, mark);
  ta = slot4(r, a, N, C, H, W);
  RUN(r, ops->nlc_to_nchw(r->ctx, &tokens, &ta));
  RUN(r, ops->add(r->ctx, &ta, x, &ta));
  *out_slot = a;
  return SDW_OK;
}

/* Downsample2D with padding 0: F.pad(x, (0, 1, 0, 1)) then conv3x3 stride 2.
 * The pad is two channel concats with zeros over views of x: [N*C*H, W] +
 * [N*C*H, 1] adds the right column, [N*C, H, W+1] + [N*C, 1, W+1] the
 * bottom row (ops.h has no pad op; these keep it on the backend). */
static sdw_status downsample_forward(vae_run *r, const sdw_vae_level *lv, const sdw_tensor *x,
                                     int s, int *out_slot) {
  const sdw_backend *ops = r->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int a, b;
  others(s, &a, &b);
  const size_t mark = run_mark(r);
  const int64_t zn = N * C * (H > W + 1 ? H : W + 1);
  sdw_tensor zeros;
  SDW_TRY(run_alloc(r, &zeros, 1, (int64_t[]){zn}));
  RUN(r, ops->fill(r->ctx, &zeros, 0.0f));
  sdw_tensor xr = reshape(x, 2, (int64_t[]){N * C * H, W});
  sdw_tensor z1 = make_view(r, zeros.data, 2, (int64_t[]){N * C * H, 1});
  sdw_tensor padw = slot_view(r, a, 2, (int64_t[]){N * C * H, W + 1});
  RUN(r, ops->concat_channels(r->ctx, &xr, &z1, &padw));
  sdw_tensor pw3 = reshape(&padw, 3, (int64_t[]){N * C, H, W + 1});
  sdw_tensor z2 = make_view(r, zeros.data, 3, (int64_t[]){N * C, 1, W + 1});
  sdw_tensor pad = slot_view(r, b, 3, (int64_t[]){N * C, H + 1, W + 1});
  RUN(r, ops->concat_channels(r->ctx, &pw3, &z2, &pad));
  sdw_tensor pad4 = reshape(&pad, 4, (int64_t[]){N, C, H + 1, W + 1});
  sdw_tensor y = slot4(r, a, N, C, H / 2, W / 2);
  SDW_TRY(run_conv(r, &pad4, &lv->sampler_w, &lv->sampler_b, 2, 0, &y));
  run_reset(r, mark);
  *out_slot = a;
  return SDW_OK;
}

/* Upsample2D: nearest x2 then conv3x3. */
static sdw_status upsample_forward(vae_run *r, const sdw_vae_level *lv, const sdw_tensor *x, int s,
                                   int *out_slot) {
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int a, b;
  others(s, &a, &b);
  sdw_tensor up = slot4(r, a, N, C, 2 * H, 2 * W);
  RUN(r, r->ctx->ops->upsample_nearest2x_forward(r->ctx, x, &up));
  sdw_tensor y = slot4(r, b, N, C, 2 * H, 2 * W);
  SDW_TRY(run_conv(r, &up, &lv->sampler_w, &lv->sampler_b, 1, 1, &y));
  *out_slot = b;
  return SDW_OK;
}

/* The four 2x2 kernels of an upsampler's 3x3 kernel w[Co, Ci, 3, 3], for
 * output phase (py, px) of y[2i+py, 2j+px] = conv3x3(nearest2x(x)):
 * along each axis, phase 0 reads source rows (i-1, i) with taps (w0,
 * w1+w2) and phase 1 reads (i, i+1) with taps (w0+w1, w2), because of the
 * 3x3 window over the duplicated rows 2i-1..2i+1 (resp. 2i..2i+2) two see
 * the same source row. out[4, Co, Ci, 2, 2] in phase order 2*py+px. */
static void phase_kernels(const float *w, int64_t co_ci, float *out) {
  /* taps[phase][t] = which 3x3 rows (bit mask) sum into tap t */
  static const int taps[2][2] = {{1, 6}, {3, 4}};
  for (int py = 0; py < 2; py++)
    for (int px = 0; px < 2; px++) {
      float *o = out + (size_t)(2 * py + px) * (size_t)co_ci * 4;
      for (int64_t k = 0; k < co_ci; k++)
        for (int t = 0; t < 2; t++)
          for (int u = 0; u < 2; u++) {
            float acc = 0.0f;
            for (int a = 0; a < 3; a++)
              for (int b = 0; b < 3; b++)
                if ((taps[py][t] >> a & 1) && (taps[px][u] >> b & 1)) acc += w[k * 9 + a * 3 + b];
            o[k * 4 + t * 2 + u] = acc;
          }
    }
}

/* The phase kernels of one upsampler into an arena tensor [4*Co, Ci, 2, 2],
 * derived on the host from the current weights on every call (so they can
 * never go stale; at most 16 MiB, nothing next to a decode). */
static sdw_status prepare_phase_kernels(vae_run *r, const sdw_vae_level *lv, sdw_tensor *out) {
  const sdw_backend *ops = r->ctx->ops;
  const int64_t co = lv->sampler_w.shape[0], ci = lv->sampler_w.shape[1];
  SDW_TRY(run_alloc(r, out, 4, (int64_t[]){4 * co, ci, 2, 2}));
  if (r->dry) return SDW_OK;
  float *host = malloc((size_t)(co * ci) * (9 + 16) * sizeof(float));
  if (!host) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory for the upsamplers");
  float *w = host, *k = host + co * ci * 9;
  sdw_status st = ops->download(r->ctx, w, lv->sampler_w.data, (size_t)(co * ci * 9) * 4);
  if (st == SDW_OK) {
    phase_kernels(w, co * ci, k);
    st = ops->upload(r->ctx, out->data, k, (size_t)(co * ci * 16) * 4);
  }
  free(host);
  return st;
}

/* Upsample2D by phases: for each output phase (py, px), x padded by one
 * zero row on top (py = 0) or bottom (py = 1) and one zero column left
 * (px = 0) or right (px = 1), then the phase's 2x2 kernel with no padding,
 * into P[py][px][N, Co, H, W]; then the phases are interleaved: a [2, L]
 * -> [L, 2] transpose joins the two px phases column by column, a channel
 * concat of [rows, 1, 2W] views joins the two py phases row by row. x in
 * slot s -> the returned slot. Pads and interleaves use only concat and the
 * NCHW<->NLC transposes of the op table. */
static sdw_status upsample_phases_forward(vae_run *r, const sdw_vae_level *lv, const sdw_tensor *x,
                                          int s, int *out_slot) {
  const sdw_backend *ops = r->ctx->ops;
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  const int64_t Co = lv->sampler_w.shape[0], L = N * Co * H * W;
  int a, b;
  others(s, &a, &b);
  const size_t mark = run_mark(r);
  sdw_tensor kernels;
  SDW_TRY(prepare_phase_kernels(r, lv, &kernels));
  const int64_t zn = N * C * (H > W + 1 ? H : W + 1);
  sdw_tensor zeros;
  SDW_TRY(run_alloc(r, &zeros, 1, (int64_t[]){zn}));
  RUN(r, ops->fill(r->ctx, &zeros, 0.0f));
  sdw_tensor xr = reshape(x, 2, (int64_t[]){N * C * H, W});
  sdw_tensor z1 = make_view(r, zeros.data, 2, (int64_t[]){N * C * H, 1});
  sdw_tensor z2 = make_view(r, zeros.data, 3, (int64_t[]){N * C, 1, W + 1});
  const int64_t padw_elems = N * C * H * (W + 1);
  for (int px = 0; px < 2; px++) {
    sdw_tensor xw = slot_view_at(r, b, 0, 2, (int64_t[]){N * C * H, W + 1});
    RUN(r, px == 0 ? ops->concat_channels(r->ctx, &z1, &xr, &xw)
                   : ops->concat_channels(r->ctx, &xr, &z1, &xw));
    sdw_tensor xw3 = reshape(&xw, 3, (int64_t[]){N * C, H, W + 1});
    for (int py = 0; py < 2; py++) {
      sdw_tensor xp = slot_view_at(r, b, padw_elems, 3, (int64_t[]){N * C, H + 1, W + 1});
      RUN(r, py == 0 ? ops->concat_channels(r->ctx, &z2, &xw3, &xp)
                     : ops->concat_channels(r->ctx, &xw3, &z2, &xp));
      sdw_tensor xp4 = reshape(&xp, 4, (int64_t[]){N, C, H + 1, W + 1});
      const int p = 2 * py + px;
      sdw_tensor k = make_view(r, kernels.data ? (float *)kernels.data + p * Co * C * 4 : NULL, 4,
                               (int64_t[]){Co, C, 2, 2});
      sdw_tensor y = slot_view_at(r, a, p * L, 4, (int64_t[]){N, Co, H, W});
      SDW_TRY(run_conv_counted(r, &xp4, &k, &lv->sampler_b, 1, 0, &y, false));
    }
  }
  run_reset(r, mark);
  /* diffusers' count: the 3x3 convolution over the upsampled input */
  r->flops += 2.0 * (double)(4 * L) * (double)(C * 9);
  for (int py = 0; py < 2; py++) {
    sdw_tensor pair = slot_view_at(r, a, 2 * py * L, 4, (int64_t[]){1, 2, L, 1});
    sdw_tensor t = slot_view_at(r, b, py * 2 * L, 3, (int64_t[]){1, L, 2});
    RUN(r, ops->nchw_to_nlc(r->ctx, &pair, &t));
  }
  sdw_tensor t0 = slot_view_at(r, b, 0, 3, (int64_t[]){N * Co * H, 1, 2 * W});
  sdw_tensor t1 = slot_view_at(r, b, 2 * L, 3, (int64_t[]){N * Co * H, 1, 2 * W});
  sdw_tensor y = slot_view_at(r, a, 0, 3, (int64_t[]){N * Co * H, 2, 2 * W});
  RUN(r, ops->concat_channels(r->ctx, &t0, &t1, &y));
  *out_slot = a;
  return SDW_OK;
}

/* The activation in slot s with the given shape. */
static sdw_tensor current(vae_run *r, int s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return slot4(r, s, n, c, h, w);
}

/* mid block: resnet, attention, resnet; x in slot *s, updated. */
static sdw_status mid_forward(vae_run *r, const sdw_vae_config *c, const sdw_vae_coder *m,
                              int64_t N, int64_t C, int64_t H, int64_t W, int *s) {
  sdw_tensor x = current(r, *s, N, C, H, W);
  SDW_TRY(resnet_forward(r, c, &m->mid_resnets[0], &x, *s, s));
  if (c->mid_attention) {
    x = current(r, *s, N, C, H, W);
    SDW_TRY(attention_forward(r, c, &m->mid_attention, &x, *s, s));
  }
  x = current(r, *s, N, C, H, W);
  return resnet_forward(r, c, &m->mid_resnets[1], &x, *s, s);
}

/* image[N,Cin,H,W] -> moments[N,2L,H/f,W/f] (unclamped). */
static sdw_status encoder_run(vae_run *r, const sdw_vae *m, const sdw_tensor *image,
                              sdw_tensor *moments) {
  const sdw_vae_config *c = &m->cfg;
  const sdw_vae_coder *e = &m->encoder;
  const int *ch = c->block_out_channels;
  const int64_t N = image->shape[0];
  int64_t H = image->shape[2], W = image->shape[3];
  int s = 0;
  sdw_tensor x = current(r, s, N, ch[0], H, W);
  SDW_TRY(run_conv(r, image, &e->conv_in_w, &e->conv_in_b, 1, 1, &x));
  int64_t C = ch[0];
  for (int l = 0; l < c->levels; l++) {
    const sdw_vae_level *lv = &e->levels[l];
    for (int j = 0; j < lv->resnet_count; j++) {
      x = current(r, s, N, C, H, W);
      SDW_TRY(resnet_forward(r, c, &lv->resnets[j], &x, s, &s));
      C = lv->resnets[j].out_ch;
    }
    if (lv->has_sampler) {
      x = current(r, s, N, C, H, W);
      SDW_TRY(downsample_forward(r, lv, &x, s, &s));
      H /= 2;
      W /= 2;
    }
  }
  SDW_TRY(mid_forward(r, c, e, N, C, H, W, &s));
  x = current(r, s, N, C, H, W);
  int a, b;
  others(s, &a, &b);
  sdw_tensor t = slot4(r, a, N, C, H, W);
  SDW_TRY(run_norm_silu(r, &x, &e->norm_out_w, &e->norm_out_b, &t, c->norm_groups, c->norm_eps));
  const int64_t M = 2 * (int64_t)c->latent_channels;
  if (!c->use_quant_conv) return run_conv(r, &t, &e->conv_out_w, &e->conv_out_b, 1, 1, moments);
  sdw_tensor h = slot4(r, b, N, M, H, W);
  SDW_TRY(run_conv(r, &t, &e->conv_out_w, &e->conv_out_b, 1, 1, &h));
  return run_conv(r, &h, &m->quant_w, &m->quant_b, 1, 0, moments);
}

/* latents[N,L,h,w] -> image[N,Cout,h*f,w*f]. */
static sdw_status decoder_run(vae_run *r, const sdw_vae *m, const sdw_tensor *latents,
                              sdw_tensor *image) {
  const sdw_vae_config *c = &m->cfg;
  const sdw_vae_coder *d = &m->decoder;
  const int *ch = c->block_out_channels;
  const int L = c->levels;
  const int64_t N = latents->shape[0];
  int64_t H = latents->shape[2], W = latents->shape[3];
  sdw_tensor z = *latents;
  int s = -1;
  if (c->use_post_quant_conv) {
    s = 0;
    z = current(r, s, N, c->latent_channels, H, W);
    SDW_TRY(run_conv(r, latents, &m->post_quant_w, &m->post_quant_b, 1, 0, &z));
  }
  int a, b;
  others(s, &a, &b);
  int64_t C = ch[L - 1];
  sdw_tensor x = current(r, a, N, C, H, W);
  SDW_TRY(run_conv(r, &z, &d->conv_in_w, &d->conv_in_b, 1, 1, &x));
  s = a;
  SDW_TRY(mid_forward(r, c, d, N, C, H, W, &s));
  for (int l = 0; l < L; l++) {
    const sdw_vae_level *lv = &d->levels[l];
    for (int j = 0; j < lv->resnet_count; j++) {
      x = current(r, s, N, C, H, W);
      SDW_TRY(resnet_forward(r, c, &lv->resnets[j], &x, s, &s));
      C = lv->resnets[j].out_ch;
    }
    if (lv->has_sampler) {
      x = current(r, s, N, C, H, W);
      if (m->upsample_phases)
        SDW_TRY(upsample_phases_forward(r, lv, &x, s, &s));
      else
        SDW_TRY(upsample_forward(r, lv, &x, s, &s));
      H *= 2;
      W *= 2;
    }
  }
  x = current(r, s, N, C, H, W);
  others(s, &a, &b);
  sdw_tensor t = slot4(r, a, N, C, H, W);
  SDW_TRY(run_norm_silu(r, &x, &d->norm_out_w, &d->norm_out_b, &t, c->norm_groups, c->norm_eps));
  return run_conv(r, &t, &d->conv_out_w, &d->conv_out_b, 1, 1, image);
}

typedef sdw_status (*run_fn)(vae_run *r, const sdw_vae *m, const sdw_tensor *in, sdw_tensor *out);

/* A dry run of fn on shapes alone: fills slot_elems, extra_peak, flops. */
static void dry_run(const sdw_vae *m, run_fn fn, const int64_t *in_shape, const int64_t *out_shape,
                    vae_run *r) {
  memset(r, 0, sizeof *r);
  r->ctx = m->ctx;
  r->dry = true;
  sdw_tensor in = make_view(r, NULL, 4, in_shape);
  sdw_tensor out = make_view(r, NULL, 4, out_shape);
  sdw_status st = fn(r, m, &in, &out);
  SDW_ASSERT(st == SDW_OK);
}

static size_t run_arena_bytes(const vae_run *r) {
  size_t bytes = r->extra_peak + 4 * SDW_ARENA_ALIGN;
  for (int i = 0; i < SLOTS; i++)
    bytes += round_align((size_t)r->slot_elems[i] * sizeof(float));
  return bytes;
}

/* Plans with a dry run, then runs fn with slots from arena; the arena is
 * back at its entry mark afterwards. */
static sdw_status run_planned(sdw_vae *m, sdw_arena *arena, run_fn fn, const sdw_tensor *in,
                              sdw_tensor *out) {
  vae_run r;
  dry_run(m, fn, in->shape, out->shape, &r);
  int64_t elems[SLOTS];
  memcpy(elems, r.slot_elems, sizeof elems);
  memset(&r, 0, sizeof r);
  r.ctx = m->ctx;
  r.arena = arena;
  memcpy(r.slot_elems, elems, sizeof elems);
  const size_t mark = sdw_arena_mark(arena);
  sdw_status st = SDW_OK;
  for (int i = 0; i < SLOTS && st == SDW_OK; i++) {
    r.slot[i] = sdw_arena_alloc(arena, (size_t)(elems[i] ? elems[i] : 1) * sizeof(float));
    if (!r.slot[i]) st = SDW_ERR_OUT_OF_MEMORY;
  }
  if (st == SDW_OK) st = fn(&r, m, in, out);
  sdw_arena_reset_to(arena, mark);
  return st;
}

/* --- public forward ------------------------------------------------------- */

static bool is_4d_f32(const sdw_tensor *t, const sdw_ctx *ctx) {
  return t && t->dtype == SDW_F32 && t->ndim == 4 && t->device.kind == ctx->ops->device;
}

static sdw_status check_shape(const sdw_tensor *t, const sdw_ctx *ctx, const char *what, int64_t n,
                              int64_t c, int64_t h, int64_t w) {
  char have[96];
  if (!is_4d_f32(t, ctx) || t->shape[0] != n || t->shape[1] != c || t->shape[2] != h ||
      t->shape[3] != w)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE: %s must be an F32 backend tensor [%lld, %lld, %lld, %lld] (it is %s "
                    "%s)",
                    what, (long long)n, (long long)c, (long long)h, (long long)w,
                    t ? sdw_dtype_name(t->dtype) : "NULL",
                    t ? sdw_shape_str(t, have, sizeof have) : "");
  return SDW_OK;
}

/* Checks an input [N, C, H, W] whose H and W must be positive multiples of
 * mult. */
static sdw_status check_input(const sdw_tensor *t, const sdw_ctx *ctx, const char *what, int64_t c,
                              int64_t mult) {
  char have[96];
  if (!is_4d_f32(t, ctx) || t->shape[0] < 1 || t->shape[1] != c || t->shape[2] < 1 ||
      t->shape[3] < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE: %s must be an F32 backend tensor [batch, %lld, height, width] (it is %s "
                    "%s)",
                    what, (long long)c, t ? sdw_dtype_name(t->dtype) : "NULL",
                    t ? sdw_shape_str(t, have, sizeof have) : "");
  if (t->shape[2] % mult != 0 || t->shape[3] % mult != 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "VAE: %s is %lldx%lld; height and width must be multiples of %lld", what,
                    (long long)t->shape[2], (long long)t->shape[3], (long long)mult);
  if (t->shape[2] > (1 << 20) || t->shape[3] > (1 << 20) || t->shape[0] > (1 << 20))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE: %s is implausibly large", what);
  return SDW_OK;
}

static sdw_status need_part(const sdw_vae *m, int part) {
  if (m->parts & part) return SDW_OK;
  return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "VAE: this model was created without its %s",
                  part == SDW_VAE_ENCODER ? "encoder" : "decoder");
}

/* Copies the moments' two halves out (concat_channels_backward accumulates,
 * so the outputs are zeroed first) and clamps logvar. */
static sdw_status split_moments(sdw_ctx *ctx, const sdw_tensor *moments, sdw_tensor *mean,
                                sdw_tensor *logvar) {
  const sdw_backend *ops = ctx->ops;
  SDW_TRY(ops->fill(ctx, mean, 0.0f));
  SDW_TRY(ops->fill(ctx, logvar, 0.0f));
  SDW_TRY(ops->concat_channels_backward(ctx, moments, mean, logvar));
  /* torch.clamp(logvar, -30, 20) on the host (ops.h has no clamp; the
   * tensor is small); NaN stays NaN as in torch. */
  size_t n = (size_t)sdw_tensor_numel(logvar);
  float *h = malloc(n * sizeof(float));
  if (!h) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory clamping logvar");
  sdw_status st = ops->download(ctx, h, logvar->data, n * sizeof(float));
  for (size_t i = 0; st == SDW_OK && i < n; i++)
    h[i] = h[i] < -30.0f ? -30.0f : h[i] > 20.0f ? 20.0f : h[i];
  if (st == SDW_OK) st = ops->upload(ctx, logvar->data, h, n * sizeof(float));
  free(h);
  return st;
}

sdw_status sdw_vae_encode_moments(sdw_vae *m, sdw_arena *arena, const sdw_tensor *image,
                                  sdw_tensor *moments) {
  const sdw_vae_config *c = &m->cfg;
  const int64_t f = sdw_vae_downscale(c);
  SDW_TRY(need_part(m, SDW_VAE_ENCODER));
  SDW_TRY(check_input(image, m->ctx, "image", c->in_channels, f));
  const int64_t N = image->shape[0], h = image->shape[2] / f, w = image->shape[3] / f;
  SDW_TRY(check_shape(moments, m->ctx, "moments", N, 2 * (int64_t)c->latent_channels, h, w));
  return run_planned(m, arena, encoder_run, image, moments);
}

sdw_status sdw_vae_encode(sdw_vae *m, sdw_arena *arena, const sdw_tensor *image, sdw_tensor *mean,
                          sdw_tensor *logvar) {
  const sdw_vae_config *c = &m->cfg;
  const int64_t f = sdw_vae_downscale(c);
  SDW_TRY(need_part(m, SDW_VAE_ENCODER));
  SDW_TRY(check_input(image, m->ctx, "image", c->in_channels, f));
  const int64_t N = image->shape[0], h = image->shape[2] / f, w = image->shape[3] / f;
  SDW_TRY(check_shape(mean, m->ctx, "mean", N, c->latent_channels, h, w));
  SDW_TRY(check_shape(logvar, m->ctx, "logvar", N, c->latent_channels, h, w));
  const size_t mark = sdw_arena_mark(arena);
  sdw_tensor moments;
  sdw_status st =
      sdw_arena_tensor(arena, &moments, SDW_F32, 4, (int64_t[]){N, 2 * c->latent_channels, h, w});
  moments.device = image->device;
  if (st == SDW_OK) st = run_planned(m, arena, encoder_run, image, &moments);
  if (st == SDW_OK) st = split_moments(m->ctx, &moments, mean, logvar);
  sdw_arena_reset_to(arena, mark);
  return st;
}

sdw_status sdw_vae_decode(sdw_vae *m, sdw_arena *arena, const sdw_tensor *latents,
                          sdw_tensor *image) {
  const sdw_vae_config *c = &m->cfg;
  const int64_t f = sdw_vae_downscale(c);
  SDW_TRY(need_part(m, SDW_VAE_DECODER));
  SDW_TRY(check_input(latents, m->ctx, "latents", c->latent_channels, 1));
  const int64_t N = latents->shape[0], H = latents->shape[2] * f, W = latents->shape[3] * f;
  SDW_TRY(check_shape(image, m->ctx, "image", N, c->out_channels, H, W));
  return run_planned(m, arena, decoder_run, latents, image);
}

size_t sdw_vae_encode_arena_bytes(const sdw_vae *m, int64_t n, int64_t height, int64_t width) {
  const int64_t f = sdw_vae_downscale(&m->cfg), lat2 = 2 * (int64_t)m->cfg.latent_channels;
  vae_run r;
  dry_run(m, encoder_run, (int64_t[]){n, m->cfg.in_channels, height, width},
          (int64_t[]){n, lat2, height / f, width / f}, &r);
  return run_arena_bytes(&r) + round_align((size_t)(n * lat2 * (height / f) * (width / f)) * 4);
}

size_t sdw_vae_decode_arena_bytes(const sdw_vae *m, int64_t n, int64_t latent_h, int64_t latent_w) {
  const int64_t f = sdw_vae_downscale(&m->cfg);
  vae_run r;
  dry_run(m, decoder_run, (int64_t[]){n, m->cfg.latent_channels, latent_h, latent_w},
          (int64_t[]){n, m->cfg.out_channels, latent_h * f, latent_w * f}, &r);
  return run_arena_bytes(&r);
}

/* FLOPs by a dry run of a model planned from cfg (no weights needed). */
static double flops_of(const sdw_vae_config *cfg, bool encode, int64_t n, int64_t h, int64_t w,
                       bool executed) {
  sdw_vae m;
  if (sdw_vae_plan(&m, cfg, encode ? SDW_VAE_ENCODER : SDW_VAE_DECODER) != SDW_OK) return 0.0;
  const int64_t f = sdw_vae_downscale(cfg), lat = cfg->latent_channels;
  vae_run r;
  if (encode)
    dry_run(&m, encoder_run, (int64_t[]){n, cfg->in_channels, h, w},
            (int64_t[]){n, 2 * lat, h / f, w / f}, &r);
  else
    dry_run(&m, decoder_run, (int64_t[]){n, lat, h, w},
            (int64_t[]){n, cfg->out_channels, h * f, w * f}, &r);
  sdw_vae_free(&m);
  return executed ? r.flops_executed : r.flops;
}

double sdw_vae_encode_flops(const sdw_vae_config *cfg, int64_t n, int64_t height, int64_t width) {
  return flops_of(cfg, true, n, height, width, false);
}

double sdw_vae_decode_flops(const sdw_vae_config *cfg, int64_t n, int64_t latent_h,
                            int64_t latent_w) {
  return flops_of(cfg, false, n, latent_h, latent_w, false);
}

double sdw_vae_decode_flops_executed(const sdw_vae_config *cfg, int64_t n, int64_t latent_h,
                                     int64_t latent_w) {
  return flops_of(cfg, false, n, latent_h, latent_w, true);
}

/* --- sampling and scaling ------------------------------------------------- */

sdw_status sdw_vae_sample(sdw_ctx *ctx, const sdw_tensor *mean, const sdw_tensor *logvar,
                          const sdw_tensor *noise, sdw_tensor *out) {
  SDW_ASSERT(mean->dtype == SDW_F32 && logvar->dtype == SDW_F32 && noise->dtype == SDW_F32 &&
             out->dtype == SDW_F32);
  SDW_ASSERT(sdw_tensor_same_shape(mean, logvar) && sdw_tensor_same_shape(mean, noise) &&
             sdw_tensor_same_shape(mean, out));
  /* ops.h has no exp: the small latent tensors are computed on the host. */
  const size_t n = (size_t)sdw_tensor_numel(mean), bytes = n * sizeof(float);
  float *h = malloc(3 * bytes + 1);
  if (!h) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of host memory sampling latents");
  float *hm = h, *hl = h + n, *hn = h + 2 * n;
  sdw_status st = ctx->ops->download(ctx, hm, mean->data, bytes);
  if (st == SDW_OK) st = ctx->ops->download(ctx, hl, logvar->data, bytes);
  if (st == SDW_OK) st = ctx->ops->download(ctx, hn, noise->data, bytes);
  for (size_t i = 0; st == SDW_OK && i < n; i++) {
    /* torch: std = exp(0.5 * logvar); mean + std * sample, each op rounded
     * to f32 (C11 mode does not contract into an FMA) */
    const float std = expf(0.5f * hl[i]);
    const float t = std * hn[i];
    hm[i] = hm[i] + t;
  }
  if (st == SDW_OK) st = ctx->ops->upload(ctx, out->data, hm, bytes);
  free(h);
  return st;
}

sdw_status sdw_vae_scale_latents(const sdw_vae *m, const sdw_tensor *x, sdw_tensor *y) {
  return m->ctx->ops->axpby(m->ctx, m->cfg.scaling_factor, x, 0.0f, y);
}

sdw_status sdw_vae_unscale_latents(const sdw_vae *m, const sdw_tensor *x, sdw_tensor *y) {
  return m->ctx->ops->axpby(m->ctx, (float)(1.0 / (double)m->cfg.scaling_factor), x, 0.0f, y);
}

/* The open helper lives in vae_weights.c (it needs the layouts). */
