/* VAE weight layouts: diffusers (current and legacy attention names) and
 * LDM (CompVis) files, their detection, loading, and sdw_vae_open.
 * Contracts in core/model/vae.h.
 *
 * The LDM names follow diffusers' convert_ldm_vae_checkpoint (v0.25.1,
 * pipelines/stable_diffusion/convert_from_ckpt.py), read in reverse: our
 * native (diffusers) name -> the LDM key. */
#include <stdio.h>
#include <string.h>

#include "core/model/vae.h"

const char *sdw_vae_layout_name(sdw_vae_layout layout) {
  switch (layout) {
  case SDW_VAE_LAYOUT_DIFFUSERS: return "diffusers";
  case SDW_VAE_LAYOUT_DIFFUSERS_LEGACY: return "diffusers (legacy attention names)";
  case SDW_VAE_LAYOUT_LDM: return "LDM";
  default: return "?";
  }
}

/* diffusers < 0.14 attention names (what _convert_deprecated_attention_
 * blocks renames); the VAE has attention only in its mid blocks. */
static const sdw_weights_rewrite legacy_rewrites[] = {
    {"mid_block.attentions.0.to_q.", "mid_block.attentions.0.query."},
    {"mid_block.attentions.0.to_k.", "mid_block.attentions.0.key."},
    {"mid_block.attentions.0.to_v.", "mid_block.attentions.0.value."},
    {"mid_block.attentions.0.to_out.0.", "mid_block.attentions.0.proj_attn."},
};

/* "<head><tail>" into key[cap] with tail's "conv_shortcut" as the LDM
 * "nin_shortcut" (renew_vae_resnet_paths). */
static bool put_resnet(char *key, size_t cap, const char *head, const char *tail) {
  const char *sc = "conv_shortcut.";
  int n = strncmp(tail, sc, strlen(sc)) == 0
              ? snprintf(key, cap, "%snin_shortcut.%s", head, tail + strlen(sc))
              : snprintf(key, cap, "%s%s", head, tail);
  return n > 0 && (size_t)n < cap;
}

/* Attention parameter names (renew_vae_attention_paths). */
static bool put_attention(char *key, size_t cap, const char *half, const char *tail) {
  static const char *const from[] = {"group_norm.", "to_q.", "to_k.", "to_v.", "to_out.0."};
  static const char *const to[] = {"norm.", "q.", "k.", "v.", "proj_out."};
  for (int i = 0; i < 5; i++) {
    size_t n = strlen(from[i]);
    if (strncmp(tail, from[i], n) == 0) {
      int len = snprintf(key, cap, "%s.mid.attn_1.%s%s", half, to[i], tail + n);
      return len > 0 && (size_t)len < cap;
    }
  }
  return false;
}

/* native (diffusers) -> LDM key. */
static bool ldm_key(void *user, const char *native, char *key, size_t cap) {
  const sdw_vae *m = user;
  const int L = m->cfg.levels;
  char head[96];
  int i = 0, j = 0, n = 0;
  const char *half = strncmp(native, "encoder.", 8) == 0   ? "encoder"
                     : strncmp(native, "decoder.", 8) == 0 ? "decoder"
                                                           : NULL;
  if (!half) return snprintf(key, cap, "%s", native) < (int)cap; /* quant_conv, post_quant_conv */
  const char *rest = native + 8;
  if (n = 0, sscanf(rest, "down_blocks.%d.resnets.%d.%n", &i, &j, &n) == 2 && n > 0) {
    snprintf(head, sizeof head, "encoder.down.%d.block.%d.", i, j);
    return put_resnet(key, cap, head, rest + n);
  }
  if (n = 0, sscanf(rest, "down_blocks.%d.downsamplers.0.conv.%n", &i, &n) == 1 && n > 0)
    return snprintf(key, cap, "encoder.down.%d.downsample.conv.%s", i, rest + n) < (int)cap;
  /* up_blocks[i] is LDM's up[L-1-i]: LDM numbers the decoder's levels from
   * the full-resolution one, diffusers in execution order */
  if (n = 0, sscanf(rest, "up_blocks.%d.resnets.%d.%n", &i, &j, &n) == 2 && n > 0) {
    snprintf(head, sizeof head, "decoder.up.%d.block.%d.", L - 1 - i, j);
    return put_resnet(key, cap, head, rest + n);
  }
  if (n = 0, sscanf(rest, "up_blocks.%d.upsamplers.0.conv.%n", &i, &n) == 1 && n > 0)
    return snprintf(key, cap, "decoder.up.%d.upsample.conv.%s", L - 1 - i, rest + n) < (int)cap;
  if (n = 0, sscanf(rest, "mid_block.resnets.%d.%n", &i, &n) == 1 && n > 0) {
    snprintf(head, sizeof head, "%s.mid.block_%d.", half, i + 1);
    return put_resnet(key, cap, head, rest + n);
  }
  if (strncmp(rest, "mid_block.attentions.0.", 23) == 0)
    return put_attention(key, cap, half, rest + 23);
  if (strncmp(rest, "conv_norm_out.", 14) == 0)
    return snprintf(key, cap, "%s.norm_out.%s", half, rest + 14) < (int)cap;
  return snprintf(key, cap, "%s", native) < (int)cap; /* conv_in, conv_out */
}

void sdw_vae_weights_map(const sdw_vae *m, sdw_vae_layout layout, const char *const *prefix,
                         sdw_weights_map *out) {
  memset(out, 0, sizeof *out);
  out->prefixes = prefix;
  out->prefix_count = 1;
  if (layout == SDW_VAE_LAYOUT_DIFFUSERS_LEGACY) {
    out->rewrites = legacy_rewrites;
    out->rewrite_count = sizeof legacy_rewrites / sizeof legacy_rewrites[0];
  } else if (layout == SDW_VAE_LAYOUT_LDM) {
    out->map = ldm_key;
    out->user = (void *)m;
    /* the attention's q/k/v/proj_out are 1x1 convs [C, C, 1, 1] there
     * (conv_attn_to_linear) */
    out->squeeze_ones = true;
  }
}

/* Where VAE tensors sit in the files users have: a diffusers vae/ file or
 * a standalone VAE (""), an SD single-file checkpoint ("first_stage_model."),
 * and files that keep a pipeline's component name ("vae."). */
static const char *const vae_prefixes[] = {"", "first_stage_model.", "vae."};
enum { PREFIX_COUNT = sizeof vae_prefixes / sizeof vae_prefixes[0] };

void sdw_vae_detect_layout(const sdw_vae *m, const sdw_weights *w, sdw_vae_layout *layout,
                           const char **prefix, int *found) {
  int best = -1;
  *layout = SDW_VAE_LAYOUT_DIFFUSERS;
  *prefix = vae_prefixes[0];
  char key[512];
  for (int l = 0; l < SDW_VAE_LAYOUT_COUNT; l++) {
    for (int p = 0; p < PREFIX_COUNT; p++) {
      sdw_weights_map map;
      sdw_vae_weights_map(m, (sdw_vae_layout)l, &vae_prefixes[p], &map);
      int count = 0;
      for (int i = 0; i < m->params.count; i++)
        if (sdw_weights_key(&map, vae_prefixes[p], m->params.items[i].name, key, sizeof key) &&
            sdw_weights_find(w, key, NULL))
          count++;
      if (count > best) {
        best = count;
        *layout = (sdw_vae_layout)l;
        *prefix = vae_prefixes[p];
      }
    }
  }
  if (found) *found = best;
}

sdw_status sdw_vae_load(sdw_vae *m, const sdw_weights *w, sdw_weights_stats *stats) {
  sdw_vae_layout layout;
  const char *prefix;
  sdw_vae_detect_layout(m, w, &layout, &prefix, NULL);
  /* prefix points into vae_prefixes, which outlives the map */
  const char *const *prefixes = vae_prefixes;
  for (int p = 0; p < PREFIX_COUNT; p++)
    if (vae_prefixes[p] == prefix) prefixes = &vae_prefixes[p];
  sdw_weights_map map;
  sdw_vae_weights_map(m, layout, prefixes, &map);
  return sdw_weights_load(w, &map, &m->params, stats);
}

sdw_status sdw_vae_open(sdw_vae *m, sdw_ctx *ctx, const char *path, const char *config_path,
                        int parts) {
  memset(m, 0, sizeof *m);
  sdw_weights *w = NULL;
  SDW_TRY(sdw_weights_open(path, "vae", &w));
  sdw_vae_config cfg;
  const char *cfg_path = config_path ? config_path : sdw_weights_config_path(w);
  sdw_status st =
      cfg_path ? sdw_vae_config_from_json(cfg_path, &cfg) : sdw_vae_preset("sd-vae-ft-mse", &cfg);
  if (st == SDW_OK) st = sdw_vae_create(m, ctx, &cfg, parts);
  if (st == SDW_OK) {
    st = sdw_vae_load(m, w, NULL);
    if (st != SDW_OK) sdw_vae_free(m);
  }
  sdw_weights_close(w);
  return st;
}
