/* The CPU backend: its context (OpenMP threads and a scratch arena) and the
 * table that routes every op of kernels/ops.h to its CPU implementation. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

/* Scratch is address space reserved once; pages are committed on touch. The
 * largest user is im2col of a 3x3 conv at 64x64x640 input (~94 MB per image). */
enum { CPU_SCRATCH_RESERVE_GIB = 64 };

sdw_status sdw_cpu_ctx_create(sdw_ctx **out, int device_index) {
  (void)device_index;
  *out = NULL;
  sdw_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  ctx->ops = sdw_backend_cpu();
  ctx->num_threads = omp_get_max_threads();
  sdw_status st =
      sdw_arena_create(&ctx->scratch, "cpu scratch", (size_t)CPU_SCRATCH_RESERVE_GIB << 30);
  if (st != SDW_OK) {
    free(ctx);
    return st;
  }
  *out = ctx;
  return SDW_OK;
}

void sdw_cpu_ctx_destroy(sdw_ctx *ctx) {
  if (!ctx) return;
  sdw_arena_destroy(ctx->scratch);
  free(ctx);
}

sdw_status sdw_cpu_alloc(sdw_ctx *ctx, size_t bytes, void **out) {
  (void)ctx;
  *out = aligned_alloc(SDW_ARENA_ALIGN,
                       (bytes + SDW_ARENA_ALIGN - 1) / SDW_ARENA_ALIGN * SDW_ARENA_ALIGN);
  if (!*out && bytes)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "cannot allocate %zu MiB of host memory", bytes >> 20);
  return SDW_OK;
}

void sdw_cpu_free(sdw_ctx *ctx, void *p) {
  (void)ctx;
  free(p);
}

sdw_status sdw_cpu_upload(sdw_ctx *ctx, void *device_dst, const void *host_src, size_t bytes) {
  (void)ctx;
  if (bytes) memcpy(device_dst, host_src, bytes);
  return SDW_OK;
}

sdw_status sdw_cpu_download(sdw_ctx *ctx, void *host_dst, const void *device_src, size_t bytes) {
  (void)ctx;
  if (bytes) memcpy(host_dst, device_src, bytes);
  return SDW_OK;
}

sdw_status sdw_cpu_synchronize(sdw_ctx *ctx) {
  (void)ctx;
  return SDW_OK;
}

static const sdw_backend cpu_backend = {
    .name = "cpu",
    .device = SDW_DEVICE_CPU,
    .ctx_create = sdw_cpu_ctx_create,
    .ctx_destroy = sdw_cpu_ctx_destroy,
    .synchronize = sdw_cpu_synchronize,
    .alloc = sdw_cpu_alloc,
    .free = sdw_cpu_free,
    .upload = sdw_cpu_upload,
    .download = sdw_cpu_download,
    .copy = sdw_cpu_copy,
    .fill = sdw_cpu_fill,
    .cast = sdw_cpu_cast,
    .conv2d_forward = sdw_cpu_conv2d_forward,
    .conv2d_backward = sdw_cpu_conv2d_backward,
    .conv_transpose2d_forward = sdw_cpu_conv_transpose2d_forward,
    .conv_transpose2d_backward = sdw_cpu_conv_transpose2d_backward,
    .upsample_nearest2x_forward = sdw_cpu_upsample_nearest2x_forward,
    .upsample_nearest2x_backward = sdw_cpu_upsample_nearest2x_backward,
    .group_norm_forward = sdw_cpu_group_norm_forward,
    .group_norm_backward = sdw_cpu_group_norm_backward,
    .layer_norm_forward = sdw_cpu_layer_norm_forward,
    .layer_norm_backward = sdw_cpu_layer_norm_backward,
    .linear_forward = sdw_cpu_linear_forward,
    .linear_backward = sdw_cpu_linear_backward,
    .matmul = sdw_cpu_matmul,
    .attention_forward = sdw_cpu_attention_forward,
    .attention_backward = sdw_cpu_attention_backward,
    .softmax_forward = sdw_cpu_softmax_forward,
    .softmax_backward = sdw_cpu_softmax_backward,
    .silu_forward = sdw_cpu_silu_forward,
    .silu_backward = sdw_cpu_silu_backward,
    .gelu_forward = sdw_cpu_gelu_forward,
    .gelu_backward = sdw_cpu_gelu_backward,
    .quick_gelu_forward = sdw_cpu_quick_gelu_forward,
    .quick_gelu_backward = sdw_cpu_quick_gelu_backward,
    .geglu_forward = sdw_cpu_geglu_forward,
    .geglu_backward = sdw_cpu_geglu_backward,
    .add = sdw_cpu_add,
    .mul = sdw_cpu_mul,
    .mul_backward = sdw_cpu_mul_backward,
    .axpby = sdw_cpu_axpby,
    .add_channel_bias = sdw_cpu_add_channel_bias,
    .add_channel_bias_backward = sdw_cpu_add_channel_bias_backward,
    .concat_channels = sdw_cpu_concat_channels,
    .concat_channels_backward = sdw_cpu_concat_channels_backward,
    .nchw_to_nlc = sdw_cpu_nchw_to_nlc,
    .nlc_to_nchw = sdw_cpu_nlc_to_nchw,
    .nchw_to_nlc_backward = sdw_cpu_nchw_to_nlc_backward,
    .nlc_to_nchw_backward = sdw_cpu_nlc_to_nchw_backward,
    .timestep_embedding = sdw_cpu_timestep_embedding,
    .embedding_forward = sdw_cpu_embedding_forward,
    .embedding_backward = sdw_cpu_embedding_backward,
    .mse_loss_forward = sdw_cpu_mse_loss_forward,
    .mse_loss_backward = sdw_cpu_mse_loss_backward,
    .adamw_step = sdw_cpu_adamw_step,
    .ema_update = sdw_cpu_ema_update,
    .sum_squares = sdw_cpu_sum_squares,
};

const sdw_backend *sdw_backend_cpu(void) { return &cpu_backend; }

sdw_status sdw_ctx_create(const sdw_backend *backend, int device_index, sdw_ctx **out) {
  return backend->ctx_create(out, device_index);
}

void sdw_ctx_destroy(sdw_ctx *ctx) {
  if (ctx) ctx->ops->ctx_destroy(ctx);
}

/* CUDA builds (SDW_HAVE_CUDA) get the real table from kernels/cuda/backend.cu. */
#ifndef SDW_HAVE_CUDA
const sdw_backend *sdw_backend_cuda(void) { return NULL; }
#endif
