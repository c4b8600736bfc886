// The emulated CUDA backend: the op table of kernels/cuda/backend.cu over
// the emulated kernels (tools/cuda_emu/run.sh transforms kernels/cuda/*.cu),
// host memory standing in for device memory; cuBLAS and cuDNN are the
// reference loops of emu_libs.h.
#include <cstdio>
#include <cstdlib>

#include "emu.h"
extern "C" {
#include "core/cli/run.h"
}

static sdw_status emu_ctx_create(sdw_ctx **out, int);
void sdw_cuda_conv_cache_free(void *cache);
static void emu_ctx_destroy(sdw_ctx *ctx) {
  sdw_cuda_conv_cache_free(cuda_impl(ctx)->conv_cache);
  delete cuda_impl(ctx);
  sdw_arena_destroy(ctx->scratch);
  free(ctx);
}
static sdw_status emu_sync(sdw_ctx *) { return SDW_OK; }
static sdw_status emu_alloc(sdw_ctx *, size_t bytes, void **out) {
  *out = aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *out ? SDW_OK : SDW_ERR_OUT_OF_MEMORY;
}
static void emu_free(sdw_ctx *, void *p) { free(p); }
static sdw_status emu_copy_bytes(sdw_ctx *, void *d, const void *s, size_t n) {
  memcpy(d, s, n);
  return SDW_OK;
}

static sdw_backend make_table() {
  sdw_backend b{};
  b.name = "cuda-emu";
  b.device = SDW_DEVICE_CUDA;
  b.ctx_create = emu_ctx_create;
  b.ctx_destroy = emu_ctx_destroy;
  b.synchronize = emu_sync;
  b.alloc = emu_alloc;
  b.free = emu_free;
  b.upload = emu_copy_bytes;
  b.download = emu_copy_bytes;
  b.copy = sdw_cuda_copy;
  b.fill = sdw_cuda_fill;
  b.cast = sdw_cuda_cast;
  b.conv2d_forward = sdw_cuda_conv2d_forward;
  b.conv2d_backward = sdw_cuda_conv2d_backward;
  b.conv_transpose2d_forward = sdw_cuda_conv_transpose2d_forward;
  b.conv_transpose2d_backward = sdw_cuda_conv_transpose2d_backward;
  b.linear_forward = sdw_cuda_linear_forward;
  b.linear_backward = sdw_cuda_linear_backward;
  b.matmul = sdw_cuda_matmul;
  b.upsample_nearest2x_forward = sdw_cuda_upsample_nearest2x_forward;
  b.upsample_nearest2x_backward = sdw_cuda_upsample_nearest2x_backward;
  b.group_norm_forward = sdw_cuda_group_norm_forward;
  b.group_norm_backward = sdw_cuda_group_norm_backward;
  b.layer_norm_forward = sdw_cuda_layer_norm_forward;
  b.layer_norm_backward = sdw_cuda_layer_norm_backward;
  b.attention_forward = sdw_cuda_attention_forward;
  b.attention_backward = sdw_cuda_attention_backward;
  b.softmax_forward = sdw_cuda_softmax_forward;
  b.softmax_backward = sdw_cuda_softmax_backward;
  b.silu_forward = sdw_cuda_silu_forward;
  b.silu_backward = sdw_cuda_silu_backward;
  b.gelu_forward = sdw_cuda_gelu_forward;
  b.gelu_backward = sdw_cuda_gelu_backward;
  b.quick_gelu_forward = sdw_cuda_quick_gelu_forward;
  b.quick_gelu_backward = sdw_cuda_quick_gelu_backward;
  b.geglu_forward = sdw_cuda_geglu_forward;
  b.geglu_backward = sdw_cuda_geglu_backward;
  b.add = sdw_cuda_add;
  b.mul = sdw_cuda_mul;
  b.mul_backward = sdw_cuda_mul_backward;
  b.axpby = sdw_cuda_axpby;
  b.add_channel_bias = sdw_cuda_add_channel_bias;
  b.add_channel_bias_backward = sdw_cuda_add_channel_bias_backward;
  b.concat_channels = sdw_cuda_concat_channels;
  b.concat_channels_backward = sdw_cuda_concat_channels_backward;
  b.nchw_to_nlc = sdw_cuda_nchw_to_nlc;
  b.nlc_to_nchw = sdw_cuda_nlc_to_nchw;
  b.nchw_to_nlc_backward = sdw_cuda_nchw_to_nlc_backward;
  b.nlc_to_nchw_backward = sdw_cuda_nlc_to_nchw_backward;
  b.timestep_embedding = sdw_cuda_timestep_embedding;
  b.embedding_forward = sdw_cuda_embedding_forward;
  b.embedding_backward = sdw_cuda_embedding_backward;
  b.mse_loss_forward = sdw_cuda_mse_loss_forward;
  b.mse_loss_backward = sdw_cuda_mse_loss_backward;
  b.adamw_step = sdw_cuda_adamw_step;
  b.ema_update = sdw_cuda_ema_update;
  b.sum_squares = sdw_cuda_sum_squares;
  return b;
}
static const sdw_backend emu_table = make_table();

static sdw_status emu_ctx_create(sdw_ctx **out, int) {
  sdw_ctx *ctx = (sdw_ctx *)calloc(1, sizeof *ctx);
  ctx->ops = &emu_table;
  ctx->num_threads = 1;
  ctx->impl = new sdw_cuda_impl();
  SDW_TRY(sdw_arena_create(&ctx->scratch, "emu scratch", (size_t)1 << 30));
  *out = ctx;
  return SDW_OK;
}

extern "C" const sdw_backend *sdw_backend_cuda(void) { return &emu_table; }
extern "C" void sdw_cuda_describe(const sdw_ctx *, char *buf, size_t size) {
  snprintf(buf, size, "host emulation of the CUDA kernels (tools/cuda_emu)");
}

int main(int argc, char **argv) { return sdw_run_cuda_parity(argc, argv); }
