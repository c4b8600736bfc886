/* The diffusers UNet2DConditionModel topology (SD 1.x configs), as diffusers
 * v0.25.1 builds it:
 *
 *   conv_in                                   -> skip
 *   down_blocks.i: resnets.j (+ attentions.j) -> skip each
 *                  downsamplers.0 (not last)  -> skip
 *   mid_block: resnets.0, attentions.0, resnets.1
 *   up_blocks.i (level L-1-i): layers+1 x [cat(h, pop), resnets.j
 *                  (+ attentions.j)], upsamplers.0 (not last)
 *   conv_norm_out -> SiLU -> conv_out
 *
 * Up block i, resnet j takes prev_output_channel (j = 0) or out_channels,
 * plus a skip of out_channels, except the last resnet whose skip has the
 * next level's width; the skip stack produces exactly these widths, which
 * finish_plan (unet.c) checks against diffusers' formula computed here. */
#include <stdio.h>

#include "core/model/unet_blocks.h"

#define PREFIX(buf, ...)                                                                           \
  do {                                                                                             \
    int n_ = snprintf((buf), sizeof(buf), __VA_ARGS__);                                            \
    SDW_ASSERT(n_ > 0 && (size_t)n_ < sizeof(buf));                                                \
  } while (0)

sdw_status sdw_unet_plan_sd15(sdw_unet *m) {
  const sdw_unet_config *c = &m->cfg;
  const int L = c->levels;
  char name[SDW_UNET_PREFIX_MAX];
  const int down_group = 0, up_group = L, mid_group = 2 * L;

  int cur = c->channels[0];
  sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                    sdw_unet_add_conv(m, "conv_in", SDW_UNET_CONV_PLAIN, c->in_channels, cur,
                                      c->conv_in_kernel, 1, (c->conv_in_kernel - 1) / 2),
                    -1);
  sdw_unet_add_node(m, SDW_UNET_NODE_PUSH, -1, -1);

  for (int i = 0; i < L; i++) {
    const int out = c->channels[i];
    for (int j = 0; j < c->layers[i]; j++) {
      PREFIX(name, "down_blocks.%d.resnets.%d", i, j);
      sdw_unet_add_node(m, SDW_UNET_NODE_RES, sdw_unet_add_res(m, name, cur, out), down_group + i);
      if (c->attn_down[i]) {
        PREFIX(name, "down_blocks.%d.attentions.%d", i, j);
        sdw_unet_add_node(m, SDW_UNET_NODE_TFM,
                          sdw_unet_add_tfm(m, name, out, c->heads[i], c->depth_down[i]),
                          down_group + i);
      }
      sdw_unet_add_node(m, SDW_UNET_NODE_PUSH, -1, down_group + i);
      cur = out;
    }
    if (i < L - 1) {
      PREFIX(name, "down_blocks.%d.downsamplers.0.conv", i);
      sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                        sdw_unet_add_conv(m, name, SDW_UNET_CONV_PLAIN, out, out, 3, 2, 1),
                        down_group + i);
      sdw_unet_add_node(m, SDW_UNET_NODE_PUSH, -1, down_group + i);
    }
  }

  sdw_unet_add_node(m, SDW_UNET_NODE_RES, sdw_unet_add_res(m, "mid_block.resnets.0", cur, cur),
                    mid_group);
  if (c->mid_attention)
    sdw_unet_add_node(
        m, SDW_UNET_NODE_TFM,
        sdw_unet_add_tfm(m, "mid_block.attentions.0", cur, c->heads[L - 1], c->depth_mid),
        mid_group);
  sdw_unet_add_node(m, SDW_UNET_NODE_RES, sdw_unet_add_res(m, "mid_block.resnets.1", cur, cur),
                    mid_group);

  int prev_out = c->channels[L - 1];
  for (int i = 0; i < L; i++) {
    const int l = L - 1 - i;
    const int out = c->channels[l];
    const int in = c->channels[l > 0 ? l - 1 : 0]; /* reversed[min(i+1, L-1)] */
    const int n = c->layers[l] + 1;
    for (int j = 0; j < n; j++) {
      const int skip = j == n - 1 ? in : out;
      const int res_in = j == 0 ? prev_out : out;
      sdw_unet_add_node(m, SDW_UNET_NODE_CAT, -1, up_group + i);
      PREFIX(name, "up_blocks.%d.resnets.%d", i, j);
      sdw_unet_add_node(m, SDW_UNET_NODE_RES, sdw_unet_add_res(m, name, res_in + skip, out),
                        up_group + i);
      if (c->attn_up[l]) {
        PREFIX(name, "up_blocks.%d.attentions.%d", i, j);
        sdw_unet_add_node(m, SDW_UNET_NODE_TFM,
                          sdw_unet_add_tfm(m, name, out, c->heads[l], c->depth_up[l]),
                          up_group + i);
      }
    }
    if (i < L - 1) {
      PREFIX(name, "up_blocks.%d.upsamplers.0.conv", i);
      sdw_unet_add_node(m, SDW_UNET_NODE_CONV,
                        sdw_unet_add_conv(m, name, SDW_UNET_CONV_UPSAMPLE, out, out, 3, 1, 1),
                        up_group + i);
    }
    prev_out = out;
  }
  return SDW_OK;
}

/* state_dict order: conv_in, time_embedding, down_blocks (each: attentions,
 * resnets, downsamplers), up_blocks (attentions, resnets, upsamplers),
 * mid_block (attentions, resnets), conv_norm_out, conv_out. */
void sdw_unet_declare_sd15(sdw_unet *m, sdw_params *p) {
  const sdw_unet_config *c = &m->cfg;
  const int L = c->levels;
  sdw_unet_conv_declare(p, &m->convs[m->nodes[0].index]); /* conv_in */
  m->time_w1 = sdw_params_take(p, 2, (int64_t[]){c->time_hidden_dim, c->time_in_dim},
                               "time_embedding.linear_1.weight");
  m->time_b1 =
      sdw_params_take(p, 1, (int64_t[]){c->time_hidden_dim}, "time_embedding.linear_1.bias");
  m->time_w2 = sdw_params_take(p, 2, (int64_t[]){c->time_out_dim, c->time_hidden_dim},
                               "time_embedding.linear_2.weight");
  m->time_b2 = sdw_params_take(p, 1, (int64_t[]){c->time_out_dim}, "time_embedding.linear_2.bias");
  for (int g = 0; g <= 2 * L; g++) {
    static const sdw_unet_node_kind order[3] = {SDW_UNET_NODE_TFM, SDW_UNET_NODE_RES,
                                                SDW_UNET_NODE_CONV};
    for (int k = 0; k < 3; k++)
      for (int i = 0; i < m->node_count; i++) {
        const sdw_unet_node *n = &m->nodes[i];
        if (n->group != g || n->kind != order[k]) continue;
        if (n->kind == SDW_UNET_NODE_TFM)
          sdw_unet_transformer_declare(p, &m->tfm[n->index], SDW_UNET_STYLE_DIFFUSERS);
        else if (n->kind == SDW_UNET_NODE_RES)
          sdw_unet_resblock_declare(p, &m->res[n->index], SDW_UNET_STYLE_DIFFUSERS);
        else
          sdw_unet_conv_declare(p, &m->convs[n->index]);
      }
  }
  const int64_t C0 = c->channels[0], k = c->conv_out_kernel;
  m->norm_out_w = sdw_params_take(p, 1, (int64_t[]){C0}, "conv_norm_out.weight");
  m->norm_out_b = sdw_params_take(p, 1, (int64_t[]){C0}, "conv_norm_out.bias");
  m->conv_out_w = sdw_params_take(p, 4, (int64_t[]){c->out_channels, C0, k, k}, "conv_out.weight");
  m->conv_out_b = sdw_params_take(p, 1, (int64_t[]){c->out_channels}, "conv_out.bias");
}
