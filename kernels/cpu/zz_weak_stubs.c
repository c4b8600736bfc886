/* TEMPORARY during parallel development: weak stand-ins, removed when every op exists. */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "kernels/cpu/cpu_ops.h"
#include <stdlib.h>
#include <stdio.h>
__attribute__((weak)) sdw_status sdw_cpu_copy(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op copy missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_fill(sdw_ctx *ctx, sdw_tensor *x, float value) { (void)ctx; fprintf(stderr, "op fill missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_cast(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op cast missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_conv2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b, int stride, int pad, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op conv2d_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_conv2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db) { (void)ctx; fprintf(stderr, "op conv2d_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_conv_transpose2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b, int stride, int pad, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op conv_transpose2d_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_conv_transpose2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db) { (void)ctx; fprintf(stderr, "op conv_transpose2d_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_upsample_nearest2x_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op upsample_nearest2x_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_upsample_nearest2x_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op upsample_nearest2x_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_group_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma, const sdw_tensor *beta, int groups, float eps, sdw_tensor *y, sdw_tensor *mean, sdw_tensor *rstd) { (void)ctx; fprintf(stderr, "op group_norm_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_group_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma, const sdw_tensor *mean, const sdw_tensor *rstd, const sdw_tensor *dy, int groups, sdw_tensor *dx, sdw_tensor *dgamma, sdw_tensor *dbeta) { (void)ctx; fprintf(stderr, "op group_norm_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_layer_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma, const sdw_tensor *beta, float eps, sdw_tensor *y, sdw_tensor *mean, sdw_tensor *rstd) { (void)ctx; fprintf(stderr, "op layer_norm_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_layer_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma, const sdw_tensor *mean, const sdw_tensor *rstd, const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dgamma, sdw_tensor *dbeta) { (void)ctx; fprintf(stderr, "op layer_norm_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_linear_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *b, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op linear_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_linear_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w, const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db) { (void)ctx; fprintf(stderr, "op linear_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_matmul(sdw_ctx *ctx, bool trans_a, bool trans_b, float alpha, const sdw_tensor *a, const sdw_tensor *b, float beta, sdw_tensor *c) { (void)ctx; fprintf(stderr, "op matmul missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_attention_forward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v, const sdw_tensor *key_mask, bool causal, float scale, sdw_tensor *out, sdw_tensor *lse) { (void)ctx; fprintf(stderr, "op attention_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_attention_backward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k, const sdw_tensor *v, const sdw_tensor *key_mask, bool causal, float scale, const sdw_tensor *out, const sdw_tensor *lse, const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk, sdw_tensor *dv) { (void)ctx; fprintf(stderr, "op attention_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_softmax_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op softmax_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_softmax_backward(sdw_ctx *ctx, const sdw_tensor *y, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op softmax_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_silu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op silu_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_silu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op silu_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op gelu_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op gelu_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_quick_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op quick_gelu_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_quick_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op quick_gelu_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_geglu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op geglu_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_geglu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op geglu_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_add(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op add missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_mul(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op mul missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_mul_backward(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db) { (void)ctx; fprintf(stderr, "op mul_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_axpby(sdw_ctx *ctx, float alpha, const sdw_tensor *x, float beta, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op axpby missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_add_channel_bias(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *bias, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op add_channel_bias missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_add_channel_bias_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dbias) { (void)ctx; fprintf(stderr, "op add_channel_bias_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_concat_channels(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op concat_channels missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_concat_channels_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db) { (void)ctx; fprintf(stderr, "op concat_channels_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_nchw_to_nlc(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op nchw_to_nlc missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_nlc_to_nchw(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op nlc_to_nchw missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_nchw_to_nlc_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op nchw_to_nlc_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_nlc_to_nchw_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) { (void)ctx; fprintf(stderr, "op nlc_to_nchw_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_timestep_embedding(sdw_ctx *ctx, const sdw_tensor *t, const sdw_timestep_embedding_params *params, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op timestep_embedding missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_embedding_forward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *table, sdw_tensor *y) { (void)ctx; fprintf(stderr, "op embedding_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_embedding_backward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *dy, sdw_tensor *dtable) { (void)ctx; fprintf(stderr, "op embedding_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_mse_loss_forward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target, sdw_tensor *loss) { (void)ctx; fprintf(stderr, "op mse_loss_forward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_mse_loss_backward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target, const sdw_tensor *dloss, sdw_tensor *dpred) { (void)ctx; fprintf(stderr, "op mse_loss_backward missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_adamw_step(sdw_ctx *ctx, sdw_tensor *param, const sdw_tensor *grad, sdw_tensor *m, sdw_tensor *v, const sdw_adamw_params *params) { (void)ctx; fprintf(stderr, "op adamw_step missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_ema_update(sdw_ctx *ctx, sdw_tensor *ema, const sdw_tensor *param, double decay) { (void)ctx; fprintf(stderr, "op ema_update missing\n"); abort(); }
__attribute__((weak)) sdw_status sdw_cpu_sum_squares(sdw_ctx *ctx, const sdw_tensor *x, double *out) { (void)ctx; fprintf(stderr, "op sum_squares missing\n"); abort(); }
