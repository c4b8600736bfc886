/* Private to the CPU backend: one function per entry of sdw_backend
 * (kernels/ops.h documents each contract). Files: conv.c, norm.c,
 * matmul.c, attention.c, activation.c, elementwise.c, embedding.c,
 * loss.c, optim.c, backend.c. */
#ifndef SDW_KERNELS_CPU_OPS_H
#define SDW_KERNELS_CPU_OPS_H

#include "kernels/ops.h"

sdw_status sdw_cpu_ctx_create(sdw_ctx **out, int device_index);
void sdw_cpu_ctx_destroy(sdw_ctx *ctx);
sdw_status sdw_cpu_synchronize(sdw_ctx *ctx);
sdw_status sdw_cpu_alloc(sdw_ctx *ctx, size_t bytes, void **out);
void sdw_cpu_free(sdw_ctx *ctx, void *p);
sdw_status sdw_cpu_upload(sdw_ctx *ctx, void *device_dst, const void *host_src, size_t bytes);
sdw_status sdw_cpu_download(sdw_ctx *ctx, void *host_dst, const void *device_src, size_t bytes);
sdw_status sdw_cpu_copy(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_fill(sdw_ctx *ctx, sdw_tensor *x, float value);
sdw_status sdw_cpu_cast(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_conv2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                  const sdw_tensor *b, int stride, int pad, sdw_tensor *y);
sdw_status sdw_cpu_conv2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *dy, int stride, int pad, sdw_tensor *dx,
                                   sdw_tensor *dw, sdw_tensor *db);
sdw_status sdw_cpu_conv_transpose2d_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                            const sdw_tensor *b, int stride, int pad,
                                            sdw_tensor *y);
sdw_status sdw_cpu_conv_transpose2d_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                             const sdw_tensor *dy, int stride, int pad,
                                             sdw_tensor *dx, sdw_tensor *dw, sdw_tensor *db);
sdw_status sdw_cpu_upsample_nearest2x_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_upsample_nearest2x_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);
sdw_status sdw_cpu_group_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                      const sdw_tensor *beta, int groups, float eps, sdw_tensor *y,
                                      sdw_tensor *mean, sdw_tensor *rstd);
sdw_status sdw_cpu_group_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *mean, const sdw_tensor *rstd,
                                       const sdw_tensor *dy, int groups, sdw_tensor *dx,
                                       sdw_tensor *dgamma, sdw_tensor *dbeta);
sdw_status sdw_cpu_layer_norm_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                      const sdw_tensor *beta, float eps, sdw_tensor *y,
                                      sdw_tensor *mean, sdw_tensor *rstd);
sdw_status sdw_cpu_layer_norm_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *gamma,
                                       const sdw_tensor *mean, const sdw_tensor *rstd,
                                       const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dgamma,
                                       sdw_tensor *dbeta);
sdw_status sdw_cpu_linear_forward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                  const sdw_tensor *b, sdw_tensor *y);
sdw_status sdw_cpu_linear_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *w,
                                   const sdw_tensor *dy, sdw_tensor *dx, sdw_tensor *dw,
                                   sdw_tensor *db);
sdw_status sdw_cpu_matmul(sdw_ctx *ctx, bool trans_a, bool trans_b, float alpha,
                          const sdw_tensor *a, const sdw_tensor *b, float beta, sdw_tensor *c);
sdw_status sdw_cpu_attention_forward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                     const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                     float scale, sdw_tensor *out, sdw_tensor *lse);
sdw_status sdw_cpu_attention_backward(sdw_ctx *ctx, const sdw_tensor *q, const sdw_tensor *k,
                                      const sdw_tensor *v, const sdw_tensor *key_mask, bool causal,
                                      float scale, const sdw_tensor *out, const sdw_tensor *lse,
                                      const sdw_tensor *dout, sdw_tensor *dq, sdw_tensor *dk,
                                      sdw_tensor *dv);
sdw_status sdw_cpu_softmax_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_softmax_backward(sdw_ctx *ctx, const sdw_tensor *y, const sdw_tensor *dy,
                                    sdw_tensor *dx);
sdw_status sdw_cpu_silu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_silu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                 sdw_tensor *dx);
sdw_status sdw_cpu_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                 sdw_tensor *dx);
sdw_status sdw_cpu_quick_gelu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_quick_gelu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                       sdw_tensor *dx);
sdw_status sdw_cpu_geglu_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_geglu_backward(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *dy,
                                  sdw_tensor *dx);
sdw_status sdw_cpu_add(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
sdw_status sdw_cpu_mul(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b, sdw_tensor *y);
sdw_status sdw_cpu_mul_backward(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                const sdw_tensor *dy, sdw_tensor *da, sdw_tensor *db);
sdw_status sdw_cpu_axpby(sdw_ctx *ctx, float alpha, const sdw_tensor *x, float beta, sdw_tensor *y);
sdw_status sdw_cpu_add_channel_bias(sdw_ctx *ctx, const sdw_tensor *x, const sdw_tensor *bias,
                                    sdw_tensor *y);
sdw_status sdw_cpu_add_channel_bias_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dbias);
sdw_status sdw_cpu_concat_channels(sdw_ctx *ctx, const sdw_tensor *a, const sdw_tensor *b,
                                   sdw_tensor *y);
sdw_status sdw_cpu_concat_channels_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *da,
                                            sdw_tensor *db);
sdw_status sdw_cpu_nchw_to_nlc(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_nlc_to_nchw(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y);
sdw_status sdw_cpu_nchw_to_nlc_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);
sdw_status sdw_cpu_nlc_to_nchw_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx);
sdw_status sdw_cpu_timestep_embedding(sdw_ctx *ctx, const sdw_tensor *t,
                                      const sdw_timestep_embedding_params *params, sdw_tensor *y);
sdw_status sdw_cpu_embedding_forward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *table,
                                     sdw_tensor *y);
sdw_status sdw_cpu_embedding_backward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *dy,
                                      sdw_tensor *dtable);
sdw_status sdw_cpu_mse_loss_forward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                    sdw_tensor *loss);
sdw_status sdw_cpu_mse_loss_backward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                     const sdw_tensor *dloss, sdw_tensor *dpred);
sdw_status sdw_cpu_adamw_step(sdw_ctx *ctx, sdw_tensor *param, const sdw_tensor *grad,
                              sdw_tensor *m, sdw_tensor *v, const sdw_adamw_params *params);
sdw_status sdw_cpu_ema_update(sdw_ctx *ctx, sdw_tensor *ema, const sdw_tensor *param, double decay);
sdw_status sdw_cpu_sum_squares(sdw_ctx *ctx, const sdw_tensor *x, double *out);

#endif
