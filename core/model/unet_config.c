/* UNet configurations: presets, config.json (the seed's SeedUNetModel
 * kwargs or a diffusers UNet2DConditionModel config) and validation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"
#include "core/base/json.h"
#include "core/base/log.h"
#include "core/model/unet.h"

/* The seed's UNetModel(in_ch, out_ch, ch, res_blks, attn_lvls, ch_mults,
 * heads, t_dim, ctx_dim) mapped onto the common fields (SEED.md §1.1-1.5). */
static void seed_config(sdw_unet_config *c, int in_ch, int out_ch, int ch, const int *mults,
                        int levels, int res_blks, const bool *attn, int heads, int t_dim,
                        int ctx_dim) {
  memset(c, 0, sizeof *c);
  c->topology = SDW_UNET_SEED;
  c->in_channels = in_ch;
  c->out_channels = out_ch;
  c->levels = levels;
  c->seed_ch = ch;
  for (int l = 0; l < levels; l++) {
    c->seed_ch_mults[l] = mults[l];
    c->channels[l] = ch * mults[l];
    c->layers[l] = res_blks;
    c->attn_down[l] = c->attn_up[l] = attn[l];
    c->heads[l] = heads;
    c->depth_down[l] = c->depth_up[l] = 1;
  }
  c->depth_mid = 1;
  c->mid_attention = true; /* mid.0 always has its transformer */
  /* sinusoid(t_dim) -> Linear(t_dim, 4 t_dim) -> SiLU -> Linear(4 t_dim, t_dim) */
  c->time_in_dim = t_dim;
  c->time_hidden_dim = 4 * t_dim;
  c->time_out_dim = t_dim;
  c->time_embedding = (sdw_timestep_embedding_params){10000.0, 1.0, false};
  c->context_dim = ctx_dim;
  c->norm_groups = 32;
  c->norm_eps = 1e-5f;
  c->attn_norm_eps = 1e-5f;
  c->layer_norm_eps = 1e-5f;
  c->linear_projection = false;
  c->conv_in_kernel = c->conv_out_kernel = 3;
}

/* diffusers' SD 1.x defaults for the fields that have no per-block form. */
static void sd15_defaults(sdw_unet_config *c) {
  memset(c, 0, sizeof *c);
  c->topology = SDW_UNET_SD15;
  c->in_channels = c->out_channels = 4;
  c->levels = 4;
  const int boc[4] = {320, 640, 1280, 1280};
  for (int l = 0; l < 4; l++) {
    c->channels[l] = boc[l];
    c->layers[l] = 2;
    c->attn_down[l] = l < 3; /* CrossAttnDownBlock2D x3, DownBlock2D */
    c->attn_up[l] = l < 3;   /* UpBlock2D (level 3), CrossAttnUpBlock2D x3 */
    c->heads[l] = 8;
    c->depth_down[l] = c->depth_up[l] = 1;
  }
  c->depth_mid = 1;
  c->mid_attention = true;
  c->time_in_dim = 320;
  c->time_hidden_dim = c->time_out_dim = 1280;
  c->time_embedding = (sdw_timestep_embedding_params){10000.0, 0.0, true};
  c->context_dim = 768;
  c->norm_groups = 32;
  c->norm_eps = 1e-5f;
  c->attn_norm_eps = 1e-6f; /* Transformer2DModel's GroupNorm */
  c->layer_norm_eps = 1e-5f;
  c->conv_in_kernel = c->conv_out_kernel = 3;
}

sdw_status sdw_unet_preset(const char *name, sdw_unet_config *out) {
  if (strcmp(name, "seed") == 0) {
    const int mults[4] = {1, 2, 4, 4};
    const bool attn[4] = {false, true, true, true};
    seed_config(out, 4, 4, 320, mults, 4, 2, attn, 8, 320, 768);
    return SDW_OK;
  }
  if (strcmp(name, "seed-tiny") == 0) {
    const int mults[2] = {1, 2};
    const bool attn[2] = {false, true};
    seed_config(out, 4, 4, 32, mults, 2, 1, attn, 2, 32, 64);
    return SDW_OK;
  }
  if (strcmp(name, "sd15") == 0) {
    sd15_defaults(out);
    return SDW_OK;
  }
  return sdw_fail(SDW_ERR_NOT_FOUND, "no UNet preset named '%s' (seed, seed-tiny, sd15)", name);
}

sdw_status sdw_unet_config_validate(const sdw_unet_config *c) {
  if (c->levels < 1 || c->levels > SDW_UNET_MAX_LEVELS)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: %d levels (1..%d supported)", c->levels,
                    SDW_UNET_MAX_LEVELS);
  if (c->in_channels < 1 || c->out_channels < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: in/out channels must be positive");
  if (c->norm_groups < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: norm groups must be positive");
  for (int l = 0; l < c->levels; l++) {
    if (c->channels[l] < 1 || c->channels[l] % c->norm_groups != 0)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "UNet config: level %d has %d channels, not a positive multiple of the "
                      "%d GroupNorm groups",
                      l, c->channels[l], c->norm_groups);
    /* generous sanity bounds: a config.json is input, not code */
    if (c->channels[l] > 65536)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "UNet config: level %d has %d channels (at most "
                      "65536)",
                      l, c->channels[l]);
    if (c->layers[l] < 1 || c->layers[l] > 16)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: level %d has %d ResBlocks (1..16)", l,
                      c->layers[l]);
    if (c->depth_down[l] > 64 || c->depth_up[l] > 64)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: level %d transformer depth > 64", l);
    const bool attn = c->attn_down[l] || c->attn_up[l] || (l == c->levels - 1 && c->mid_attention);
    if (attn && (c->heads[l] < 1 || c->channels[l] % c->heads[l] != 0))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "UNet config: level %d has %d channels, not divisible into %d heads", l,
                      c->channels[l], c->heads[l]);
    if ((c->attn_down[l] && c->depth_down[l] < 1) || (c->attn_up[l] && c->depth_up[l] < 1))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: level %d transformer depth < 1", l);
    if (c->topology == SDW_UNET_SEED && (c->depth_down[l] != 1 || c->depth_up[l] != 1))
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: the seed topology has depth-1 "
                                                "transformers");
  }
  if (c->mid_attention && (c->depth_mid < 1 || c->depth_mid > 64))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: mid transformer depth must be 1..64");
  if (c->time_in_dim < 2 || c->time_hidden_dim < 1 || c->time_out_dim < 1 ||
      c->time_in_dim > 65536 || c->time_hidden_dim > 65536 || c->time_out_dim > 65536 ||
      c->context_dim > 65536 || c->in_channels > 65536 || c->out_channels > 65536)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: widths out of range (time "
                                              "embedding 2..65536, channels at most 65536)");
  const double half = (double)(c->time_in_dim / 2);
  if (!(half - c->time_embedding.freq_shift > 0.0))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "UNet config: time embedding width %d is too small for frequency shift %g",
                    c->time_in_dim, c->time_embedding.freq_shift);
  if (c->context_dim < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: context width must be positive");
  if (c->conv_in_kernel < 1 || c->conv_in_kernel % 2 == 0 || c->conv_out_kernel < 1 ||
      c->conv_out_kernel % 2 == 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: conv_in/conv_out kernels must be odd");
  if (!(c->norm_eps > 0.0f) || !(c->attn_norm_eps > 0.0f) || !(c->layer_norm_eps > 0.0f))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "UNet config: norm eps must be positive");
  return SDW_OK;
}

/* --- config.json ------------------------------------------------------------ */

static sdw_status get_int32(const sdw_json_obj *o, const char *key, int def, int *out) {
  int64_t v = 0;
  SDW_TRY(sdw_json_get_int_or(o, key, def, &v));
  if (v < 0 || v > (1 << 24))
    return sdw_fail(SDW_ERR_FORMAT, "%s: key %s = %lld is out of range", o->doc, key, (long long)v);
  *out = (int)v;
  return SDW_OK;
}

/* An int array key (default when absent) into out[cap]. */
static sdw_status get_ints(const sdw_json_obj *o, const char *key, const int *def, int ndef,
                           int *out, int cap, int *count) {
  if (!sdw_json_has(o, key)) {
    for (int i = 0; i < ndef; i++)
      out[i] = def[i];
    *count = ndef;
    return SDW_OK;
  }
  int64_t v[SDW_UNET_MAX_LEVELS];
  size_t n = 0;
  if (sdw_json_get_int_array(o, key, v, (size_t)cap, &n) != SDW_OK)
    return sdw_fail(SDW_ERR_FORMAT, "%s: key %s must be a list of at most %d integers", o->doc, key,
                    cap);
  for (size_t i = 0; i < n; i++) {
    if (v[i] < -(1 << 24) || v[i] > (1 << 24))
      return sdw_fail(SDW_ERR_FORMAT, "%s: key %s has an out-of-range entry", o->doc, key);
    out[i] = (int)v[i];
  }
  *count = (int)n;
  return SDW_OK;
}

/* A key that is an int (broadcast to n entries) or a list of n ints. */
static sdw_status get_int_or_list(const sdw_json_obj *o, const char *key, int def, int n,
                                  int *out) {
  const cJSON *item = sdw_json_find(o, key);
  if (item && cJSON_IsArray(item)) {
    int count = 0;
    SDW_TRY(get_ints(o, key, NULL, 0, out, SDW_UNET_MAX_LEVELS, &count));
    if (count != n)
      return sdw_fail(SDW_ERR_FORMAT, "%s: key %s has %d entries, one per block (%d) expected",
                      o->doc, key, count, n);
  } else {
    int v = 0;
    SDW_TRY(get_int32(o, key, def, &v));
    for (int i = 0; i < n; i++)
      out[i] = v;
  }
  for (int i = 0; i < n; i++)
    if (out[i] < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: key %s must be positive", o->doc, key);
  return SDW_OK;
}

static sdw_status unsupported(const sdw_json_obj *o, const char *key, const char *what) {
  return sdw_fail(SDW_ERR_UNSUPPORTED,
                  "%s: %s = %s is not supported (sdw runs SD 1.x UNet2DConditionModel configs)",
                  o->doc, key, what);
}

/* The key must be absent or null. */
static sdw_status require_null(const sdw_json_obj *o, const char *key) {
  if (sdw_json_has(o, key)) return unsupported(o, key, "a non-null value");
  return SDW_OK;
}
static sdw_status require_string(const sdw_json_obj *o, const char *key, const char *want) {
  const char *v = want;
  SDW_TRY(sdw_json_get_string_or(o, key, want, &v));
  if (strcmp(v, want) != 0) return unsupported(o, key, v);
  return SDW_OK;
}
static sdw_status require_bool(const sdw_json_obj *o, const char *key, bool want) {
  bool v = want;
  SDW_TRY(sdw_json_get_bool_or(o, key, want, &v));
  if (v != want) return unsupported(o, key, v ? "true" : "false");
  return SDW_OK;
}
static sdw_status require_number(const sdw_json_obj *o, const char *key, double want) {
  double v = want;
  SDW_TRY(sdw_json_get_double_or(o, key, want, &v));
  if (v != want) {
    char buf[32];
    snprintf(buf, sizeof buf, "%g", v);
    return unsupported(o, key, buf);
  }
  return SDW_OK;
}

static sdw_status parse_seed(const sdw_json_obj *o, sdw_unet_config *out) {
  static const char *const known[] = {"_class_name", "in_ch",     "out_ch",    "ch",
                                      "res_blks",    "attn_lvls", "ch_mults",  "heads",
                                      "t_dim",       "ctx_dim",   "grad_ckpt", "ctx_pool"};
  /* UNetModel(**kwargs) raises on an unknown keyword: so do we */
  for (const cJSON *it = o->item->child; it; it = it->next) {
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
      ok |= !strcmp(it->string, known[i]);
    if (!ok)
      return sdw_fail(SDW_ERR_FORMAT, "%s: unknown SeedUNetModel argument '%s'", o->doc,
                      it->string);
  }
  int in_ch = 0, out_ch = 0, ch = 0, res_blks = 0, heads = 0, t_dim = 0, ctx_dim = 0, nm = 0,
      na = 0;
  int mults[SDW_UNET_MAX_LEVELS], attn_lvls[SDW_UNET_MAX_LEVELS];
  SDW_TRY(get_int32(o, "in_ch", 4, &in_ch));
  SDW_TRY(get_int32(o, "out_ch", 4, &out_ch));
  SDW_TRY(get_int32(o, "ch", 320, &ch));
  SDW_TRY(get_int32(o, "res_blks", 2, &res_blks));
  SDW_TRY(get_int32(o, "heads", 8, &heads));
  SDW_TRY(get_int32(o, "t_dim", 320, &t_dim));
  SDW_TRY(get_int32(o, "ctx_dim", 768, &ctx_dim));
  SDW_TRY(get_ints(o, "ch_mults", (const int[]){1, 2, 4, 4}, 4, mults, SDW_UNET_MAX_LEVELS, &nm));
  SDW_TRY(get_ints(o, "attn_lvls", (const int[]){1, 2, 3}, 3, attn_lvls, SDW_UNET_MAX_LEVELS, &na));
  bool grad_ckpt = false;
  SDW_TRY(sdw_json_get_bool_or(o, "grad_ckpt", false, &grad_ckpt));
  if (nm < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: ch_mults must have at least one entry", o->doc);
  for (int l = 0; l < nm; l++)
    if (mults[l] < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: ch_mults must be positive", o->doc);
  bool attn[SDW_UNET_MAX_LEVELS] = {false};
  for (int i = 0; i < na; i++) {
    /* the seed tests `level in attn_lvls`: an entry that is no level matches nothing */
    if (attn_lvls[i] >= 0 && attn_lvls[i] < nm)
      attn[attn_lvls[i]] = true;
    else
      SDW_WARN("%s: attn_lvls entry %d is not a level (0..%d); it has no effect", o->doc,
               attn_lvls[i], nm - 1);
  }
  /* half = t_dim // 2 sinusoid pairs with divisor half - 1: the seed's
   * Linear(t_dim, .) only accepts an even t_dim >= 4 */
  if (t_dim < 4 || t_dim % 2)
    return sdw_fail(SDW_ERR_FORMAT, "%s: t_dim must be even and at least 4 (got %d)", o->doc,
                    t_dim);
  seed_config(out, in_ch, out_ch, ch, mults, nm, res_blks, attn, heads, t_dim, ctx_dim);
  out->grad_checkpoint = grad_ckpt;
  SDW_TRY(sdw_json_get_bool_or(o, "ctx_pool", false, &out->context_pool));
  return SDW_OK;
}

static sdw_status parse_sd15(const sdw_json_obj *o, sdw_unet_config *out) {
  sd15_defaults(out);
  sdw_unet_config *c = out;
  /* features outside SD 1.x */
  static const char *const must_be_null[] = {
      "addition_embed_type",  "addition_time_embed_dim",
      "class_embed_type",     "num_class_embeds",
      "encoder_hid_dim",      "encoder_hid_dim_type",
      "time_cond_proj_dim",   "time_embedding_act_fn",
      "timestep_post_act",    "projection_class_embeddings_input_dim",
      "cross_attention_norm", "mid_block_only_cross_attention",
  };
  for (size_t i = 0; i < sizeof must_be_null / sizeof must_be_null[0]; i++)
    SDW_TRY(require_null(o, must_be_null[i]));
  /* diffusers 0.25 refuses num_attention_heads (its issue #2011) */
  SDW_TRY(require_null(o, "num_attention_heads"));
  SDW_TRY(require_string(o, "act_fn", "silu"));
  SDW_TRY(require_string(o, "mid_block_type", "UNetMidBlock2DCrossAttn"));
  SDW_TRY(require_string(o, "resnet_time_scale_shift", "default"));
  SDW_TRY(require_string(o, "time_embedding_type", "positional"));
  SDW_TRY(require_string(o, "attention_type", "default"));
  SDW_TRY(require_bool(o, "center_input_sample", false));
  SDW_TRY(require_bool(o, "dual_cross_attention", false));
  SDW_TRY(require_bool(o, "resnet_skip_time_act", false));
  SDW_TRY(require_bool(o, "class_embeddings_concat", false));
  SDW_TRY(require_number(o, "resnet_out_scale_factor", 1.0));
  SDW_TRY(require_number(o, "mid_block_scale_factor", 1.0));
  SDW_TRY(require_number(o, "downsample_padding", 1.0));
  if (sdw_json_has(o, "only_cross_attention")) {
    const cJSON *it = sdw_json_find(o, "only_cross_attention");
    if (!cJSON_IsFalse(it)) return unsupported(o, "only_cross_attention", "true / a list");
  }
  /* upcast_attention only changes the softmax precision of half-precision
   * runs (a no-op in f32); dropout only matters in training. Both accepted. */

  SDW_TRY(get_int32(o, "in_channels", 4, &c->in_channels));
  SDW_TRY(get_int32(o, "out_channels", 4, &c->out_channels));
  int L = 0;
  SDW_TRY(get_ints(o, "block_out_channels", (const int[]){320, 640, 1280, 1280}, 4, c->channels,
                   SDW_UNET_MAX_LEVELS, &L));
  if (L < 1) return sdw_fail(SDW_ERR_FORMAT, "%s: block_out_channels is empty", o->doc);
  c->levels = L;

  const char *down[SDW_UNET_MAX_LEVELS], *up[SDW_UNET_MAX_LEVELS];
  size_t nd = 0, nu = 0;
  if (sdw_json_has(o, "down_block_types")) {
    SDW_TRY(sdw_json_get_string_array(o, "down_block_types", down, SDW_UNET_MAX_LEVELS, &nd));
  } else {
    for (int i = 0; i < 4; i++)
      down[i] = i < 3 ? "CrossAttnDownBlock2D" : "DownBlock2D";
    nd = 4;
  }
  if (sdw_json_has(o, "up_block_types")) {
    SDW_TRY(sdw_json_get_string_array(o, "up_block_types", up, SDW_UNET_MAX_LEVELS, &nu));
  } else {
    for (int i = 0; i < 4; i++)
      up[i] = i == 0 ? "UpBlock2D" : "CrossAttnUpBlock2D";
    nu = 4;
  }
  if ((int)nd != L || (int)nu != L)
    return sdw_fail(SDW_ERR_FORMAT, "%s: %zu down and %zu up block types for %d block_out_channels",
                    o->doc, nd, nu, L);
  for (int i = 0; i < L; i++) {
    if (!strcmp(down[i], "CrossAttnDownBlock2D"))
      c->attn_down[i] = true;
    else if (!strcmp(down[i], "DownBlock2D"))
      c->attn_down[i] = false;
    else
      return unsupported(o, "down_block_types entry", down[i]);
    /* up block i works at level L-1-i */
    if (!strcmp(up[i], "CrossAttnUpBlock2D"))
      c->attn_up[L - 1 - i] = true;
    else if (!strcmp(up[i], "UpBlock2D"))
      c->attn_up[L - 1 - i] = false;
    else
      return unsupported(o, "up_block_types entry", up[i]);
  }

  SDW_TRY(get_int_or_list(o, "layers_per_block", 2, L, c->layers));
  /* attention_head_dim has its legacy meaning: diffusers 0.25 sets
   * num_attention_heads = num_attention_heads or attention_head_dim, and every
   * Transformer2DModel gets that many heads of channels/heads each. */
  SDW_TRY(get_int_or_list(o, "attention_head_dim", 8, L, c->heads));
  const cJSON *tl = sdw_json_find(o, "transformer_layers_per_block");
  if (tl && cJSON_IsArray(tl) && cJSON_GetArraySize(tl) > 0 &&
      cJSON_IsArray(cJSON_GetArrayItem(tl, 0)))
    return unsupported(o, "transformer_layers_per_block", "a list of lists");
  SDW_TRY(get_int_or_list(o, "transformer_layers_per_block", 1, L, c->depth_down));
  c->depth_mid = c->depth_down[L - 1];
  /* up block i uses reverse_transformer_layers_per_block[i] when given, else
   * the reversed down list, i.e. depth_down[L-1-i] = the same level's */
  const cJSON *rtl = sdw_json_find(o, "reverse_transformer_layers_per_block");
  if (rtl && !cJSON_IsNull(rtl)) {
    if (!cJSON_IsArray(rtl) ||
        (cJSON_GetArraySize(rtl) > 0 && cJSON_IsArray(cJSON_GetArrayItem(rtl, 0))))
      return unsupported(o, "reverse_transformer_layers_per_block", "a list of lists");
    int rev[SDW_UNET_MAX_LEVELS];
    SDW_TRY(get_int_or_list(o, "reverse_transformer_layers_per_block", 1, L, rev));
    for (int i = 0; i < L; i++)
      c->depth_up[L - 1 - i] = rev[i];
  } else {
    for (int l = 0; l < L; l++)
      c->depth_up[l] = c->depth_down[l];
  }

  const cJSON *cad = sdw_json_find(o, "cross_attention_dim");
  if (cad && cJSON_IsArray(cad)) return unsupported(o, "cross_attention_dim", "a list");
  SDW_TRY(get_int32(o, "cross_attention_dim", 1280, &c->context_dim));
  if (sdw_json_find(o, "norm_num_groups") && cJSON_IsNull(sdw_json_find(o, "norm_num_groups")))
    return unsupported(o, "norm_num_groups", "null");
  SDW_TRY(get_int32(o, "norm_num_groups", 32, &c->norm_groups));
  double eps = 1e-5, shift = 0.0;
  SDW_TRY(sdw_json_get_double_or(o, "norm_eps", 1e-5, &eps));
  c->norm_eps = (float)eps;
  SDW_TRY(sdw_json_get_bool_or(o, "flip_sin_to_cos", true, &c->time_embedding.flip_sin_to_cos));
  SDW_TRY(sdw_json_get_double_or(o, "freq_shift", 0.0, &shift));
  c->time_embedding.freq_shift = shift;
  c->time_embedding.max_period = 10000.0;
  SDW_TRY(sdw_json_get_bool_or(o, "use_linear_projection", false, &c->linear_projection));
  SDW_TRY(get_int32(o, "conv_in_kernel", 3, &c->conv_in_kernel));
  SDW_TRY(get_int32(o, "conv_out_kernel", 3, &c->conv_out_kernel));
  /* Timesteps(block_out_channels[0]) -> TimestepEmbedding(., time_embed_dim) */
  c->time_in_dim = c->channels[0];
  int ted = 0;
  SDW_TRY(get_int32(o, "time_embedding_dim", 4 * c->channels[0], &ted));
  c->time_hidden_dim = c->time_out_dim = ted;
  return SDW_OK;
}

sdw_status sdw_unet_config_parse(const char *text, size_t size, const char *name,
                                 sdw_unet_config *out) {
  sdw_json_doc *doc;
  SDW_TRY(sdw_json_parse(text, size, name, &doc));
  sdw_json_obj root;
  sdw_status st = sdw_json_root(doc, &root);
  const char *cls = NULL;
  if (st == SDW_OK) st = sdw_json_get_string(&root, "_class_name", &cls);
  if (st == SDW_OK) {
    if (!strcmp(cls, "SeedUNetModel"))
      st = parse_seed(&root, out);
    else if (!strcmp(cls, "UNet2DConditionModel"))
      st = parse_sd15(&root, out);
    else
      st = sdw_fail(SDW_ERR_UNSUPPORTED,
                    "%s: _class_name '%s' is not a UNet sdw knows (SeedUNetModel, "
                    "UNet2DConditionModel)",
                    name, cls);
  }
  sdw_json_free(doc);
  if (st == SDW_OK) {
    st = sdw_unet_config_validate(out);
    if (st != SDW_OK) sdw_error_prefix("%s", name);
  }
  return st;
}

sdw_status sdw_unet_config_from_json(const char *path, sdw_unet_config *out) {
  void *text;
  size_t size;
  SDW_TRY(sdw_read_file(path, &text, &size));
  const char *slash = strrchr(path, '/');
  sdw_status st = sdw_unet_config_parse(text, size, slash ? slash + 1 : path, out);
  free(text);
  return st;
}
