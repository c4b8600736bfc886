/* The CUDA backend: its context (device, stream, cuBLAS and cuDNN handles,
 * a growable device workspace), device memory, and the table that routes
 * every op of kernels/ops.h to its CUDA implementation (one .cu per op
 * family: elementwise, activation, norm, gemm, conv, upsample, attention,
 * softmax, embedding, loss, optim).
 *
 * Every op is queued on the ctx's stream and returns as soon as it is queued;
 * upload / download / synchronize wait. Errors of asynchronous work show up
 * at the next checked call (a launch check, a copy, synchronize). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

enum { CUDA_HOST_SCRATCH_GIB = 4 }; /* address space only; pages on touch */

const char *sdw_cublas_status_str(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "success";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "cuBLAS not initialized";
  case CUBLAS_STATUS_ALLOC_FAILED: return "cuBLAS allocation failed";
  case CUBLAS_STATUS_INVALID_VALUE: return "cuBLAS invalid value";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "cuBLAS architecture mismatch";
  case CUBLAS_STATUS_MAPPING_ERROR: return "cuBLAS mapping error";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "cuBLAS execution failed";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "cuBLAS internal error";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "cuBLAS not supported";
  case CUBLAS_STATUS_LICENSE_ERROR: return "cuBLAS license error";
  default: return "cuBLAS unknown status";
  }
}

static void impl_release(sdw_cuda_impl *im);
void sdw_cuda_conv_cache_free(void *cache);

static sdw_status impl_init(sdw_cuda_impl *im, int device) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return sdw_fail(SDW_ERR_DEVICE, "cuda backend: no usable CUDA device: %s",
                    cudaGetErrorString(e));
  }
  if (device < 0 || device >= count)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "cuda backend: device %d does not exist (%d visible)",
                    device, count);
  im->device = device;
  CUDA_TRY(cudaSetDevice(device));
  CUDA_TRY(cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
  CUBLAS_TRY(cublasCreate(&im->blas));
  CUBLAS_TRY(cublasSetStream(im->blas, im->stream));
  CUBLAS_TRY(cublasSetPointerMode(im->blas, CUBLAS_POINTER_MODE_HOST));
  CUDNN_TRY(cudnnCreate(&im->dnn));
  CUDNN_TRY(cudnnSetStream(im->dnn, im->stream));
  CUDA_TRY(cudaMalloc((void **)&im->flag, sizeof(int)));
  CUDA_TRY(cudaMallocHost((void **)&im->host_flag, sizeof(int)));
  CUDA_TRY(cudaMallocHost((void **)&im->host_sum, sizeof(double)));
  CUDA_TRY(
      cudaDeviceGetAttribute(&im->max_smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  CUDA_TRY(cudaDeviceGetAttribute(&im->sm_count, cudaDevAttrMultiProcessorCount, device));
  CUDA_TRY(cudaDeviceGetAttribute(&im->pageable_access, cudaDevAttrPageableMemoryAccess, device));
  const char *tf32 = getenv("SDW_CUDA_TF32"), *math = getenv("SDW_CUDA_MATH");
  im->math = tf32 && strcmp(tf32, "1") == 0 ? SDW_CUDA_MATH_TF32 : SDW_CUDA_MATH_FP32;
  if (math && *math) {
    if (strcmp(math, "fp32") == 0)
      im->math = SDW_CUDA_MATH_FP32;
    else if (strcmp(math, "tf32") == 0)
      im->math = SDW_CUDA_MATH_TF32;
    else if (strcmp(math, "bf16") == 0)
      im->math = SDW_CUDA_MATH_BF16;
    else
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "SDW_CUDA_MATH is '%s'; it must be fp32, tf32 or bf16", math);
  }
  return SDW_OK;
}

static void impl_release(sdw_cuda_impl *im) {
  if (im->stream) cudaStreamSynchronize(im->stream);
  sdw_cuda_conv_cache_free(im->conv_cache);
  if (im->workspace) cudaFree(im->workspace);
  if (im->flag) cudaFree(im->flag);
  if (im->host_flag) cudaFreeHost(im->host_flag);
  if (im->host_sum) cudaFreeHost(im->host_sum);
  if (im->dnn) cudnnDestroy(im->dnn);
  if (im->blas) cublasDestroy(im->blas);
  if (im->stream) cudaStreamDestroy(im->stream);
  cudaGetLastError();
}

static sdw_status cuda_ctx_create(sdw_ctx **out, int device_index) {
  *out = NULL;
  sdw_ctx *ctx = (sdw_ctx *)calloc(1, sizeof *ctx);
  sdw_cuda_impl *im = (sdw_cuda_impl *)calloc(1, sizeof *im);
  if (!ctx || !im) {
    free(ctx);
    free(im);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "cuda backend: out of host memory");
  }
  ctx->ops = sdw_backend_cuda();
  ctx->num_threads = 1;
  ctx->impl = im;
  sdw_status st = impl_init(im, device_index);
  if (st == SDW_OK)
    st = sdw_arena_create(&ctx->scratch, "cuda host scratch", (size_t)CUDA_HOST_SCRATCH_GIB << 30);
  if (st != SDW_OK) {
    impl_release(im);
    free(im);
    free(ctx);
    return st;
  }
  *out = ctx;
  return SDW_OK;
}

static void cuda_ctx_destroy(sdw_ctx *ctx) {
  if (!ctx) return;
  sdw_cuda_impl *im = cuda_impl(ctx);
  impl_release(im);
  free(im);
  sdw_arena_destroy(ctx->scratch);
  free(ctx);
}

static sdw_status cuda_synchronize(sdw_ctx *ctx) {
  CUDA_TRY(cudaStreamSynchronize(cuda_stream(ctx)));
  CUDA_TRY(cudaGetLastError());
  return SDW_OK;
}

/* Allocation size is kept in a 256-byte header so free can account for it. */
enum { ALLOC_HEADER = 256 };

static sdw_status cuda_alloc(sdw_ctx *ctx, size_t bytes, void **out) {
  *out = NULL;
  sdw_cuda_impl *im = cuda_impl(ctx);
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes + ALLOC_HEADER);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY,
                    "cannot allocate %zu MiB of GPU memory on cuda:%d (%zu MiB free of %zu): %s",
                    bytes >> 20, im->device, free_b >> 20, total_b >> 20, cudaGetErrorString(e));
  }
  size_t header = bytes;
  CUDA_TRY(cudaMemcpy(p, &header, sizeof header, cudaMemcpyHostToDevice));
  im->in_use += bytes;
  if (im->in_use > im->peak) im->peak = im->in_use;
  *out = (char *)p + ALLOC_HEADER;
  return SDW_OK;
}

static void cuda_free(sdw_ctx *ctx, void *p) {
  if (!p) return;
  sdw_cuda_impl *im = cuda_impl(ctx);
  char *base = (char *)p - ALLOC_HEADER;
  size_t bytes = 0;
  /* the free is ordered after queued work by cudaFree's implicit sync */
  if (cudaMemcpy(&bytes, base, sizeof bytes, cudaMemcpyDeviceToHost) == cudaSuccess)
    im->in_use -= bytes <= im->in_use ? bytes : im->in_use;
  cudaFree(base);
  cudaGetLastError();
}

static sdw_status cuda_upload(sdw_ctx *ctx, void *device_dst, const void *host_src, size_t bytes) {
  if (!bytes) return SDW_OK;
  cudaStream_t s = cuda_stream(ctx);
  CUDA_TRY(cudaMemcpyAsync(device_dst, host_src, bytes, cudaMemcpyHostToDevice, s));
  CUDA_TRY(cudaStreamSynchronize(s));
  return SDW_OK;
}

static sdw_status cuda_download(sdw_ctx *ctx, void *host_dst, const void *device_src,
                                size_t bytes) {
  if (!bytes) return SDW_OK;
  cudaStream_t s = cuda_stream(ctx);
  CUDA_TRY(cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost, s));
  CUDA_TRY(cudaStreamSynchronize(s));
  return SDW_OK;
}

sdw_status sdw_cuda_workspace(sdw_ctx *ctx, size_t bytes, void **out) {
  sdw_cuda_impl *im = cuda_impl(ctx);
  if (bytes > im->workspace_bytes) {
    size_t want = bytes + bytes / 4;
    if (want < ((size_t)32 << 20)) want = (size_t)32 << 20;
    if (im->workspace) {
      /* queued kernels may still read the old buffer */
      CUDA_TRY(cudaStreamSynchronize(im->stream));
      CUDA_TRY(cudaFree(im->workspace));
      im->in_use -= im->workspace_bytes;
      im->workspace = NULL;
      im->workspace_bytes = 0;
    }
    cudaError_t e = cudaMalloc(&im->workspace, want);
    if (e != cudaSuccess) {
      cudaGetLastError();
      im->workspace = NULL;
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY,
                      "cuda backend: cannot allocate %zu MiB of workspace: %s", want >> 20,
                      cudaGetErrorString(e));
    }
    im->workspace_bytes = want;
    im->in_use += want;
    if (im->in_use > im->peak) im->peak = im->in_use;
  }
  *out = im->workspace;
  return SDW_OK;
}

extern "C" void sdw_cuda_set_math(sdw_ctx *ctx, sdw_cuda_math math) {
  SDW_ASSERT(ctx && ctx->ops == sdw_backend_cuda());
  cuda_impl(ctx)->math = math;
}
extern "C" sdw_cuda_math sdw_cuda_get_math(const sdw_ctx *ctx) { return cuda_impl(ctx)->math; }
extern "C" void *sdw_cuda_stream(const sdw_ctx *ctx) { return (void *)cuda_stream(ctx); }
extern "C" int sdw_cuda_device(const sdw_ctx *ctx) { return cuda_impl(ctx)->device; }
extern "C" bool sdw_cuda_pageable_access(const sdw_ctx *ctx) {
  return cuda_impl(ctx)->pageable_access != 0;
}

extern "C" void sdw_cuda_describe(const sdw_ctx *ctx, char *buf, size_t size) {
  const sdw_cuda_impl *im = cuda_impl(ctx);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, im->device) != cudaSuccess) {
    cudaGetLastError();
    snprintf(buf, size, "cuda:%d (properties unavailable)", im->device);
    return;
  }
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  snprintf(buf, size,
           "cuda:%d %s, sm_%d%d, %d SMs, %.1f GiB, driver %d runtime %d, pageable memory access "
           "(HMM/ATS) %s, math %s",
           im->device, prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1 << 30), driver, runtime,
           im->pageable_access ? "yes" : "no",
           im->math == SDW_CUDA_MATH_TF32   ? "tf32"
           : im->math == SDW_CUDA_MATH_BF16 ? "bf16"
                                            : "fp32");
}

extern "C" void sdw_cuda_memory_stats(const sdw_ctx *ctx, size_t *in_use, size_t *peak) {
  const sdw_cuda_impl *im = cuda_impl(ctx);
  if (in_use) *in_use = im->in_use;
  if (peak) *peak = im->peak;
}

static const sdw_backend cuda_backend = {
    .name = "cuda",
    .device = SDW_DEVICE_CUDA,
    .ctx_create = cuda_ctx_create,
    .ctx_destroy = cuda_ctx_destroy,
    .synchronize = cuda_synchronize,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = sdw_cuda_copy,
    .fill = sdw_cuda_fill,
    .cast = sdw_cuda_cast,
    .conv2d_forward = sdw_cuda_conv2d_forward,
    .conv2d_backward = sdw_cuda_conv2d_backward,
    .conv_transpose2d_forward = sdw_cuda_conv_transpose2d_forward,
    .conv_transpose2d_backward = sdw_cuda_conv_transpose2d_backward,
    .upsample_nearest2x_forward = sdw_cuda_upsample_nearest2x_forward,
    .upsample_nearest2x_backward = sdw_cuda_upsample_nearest2x_backward,
    .group_norm_forward = sdw_cuda_group_norm_forward,
    .group_norm_backward = sdw_cuda_group_norm_backward,
    .layer_norm_forward = sdw_cuda_layer_norm_forward,
    .layer_norm_backward = sdw_cuda_layer_norm_backward,
    .linear_forward = sdw_cuda_linear_forward,
    .linear_backward = sdw_cuda_linear_backward,
    .matmul = sdw_cuda_matmul,
    .attention_forward = sdw_cuda_attention_forward,
    .attention_backward = sdw_cuda_attention_backward,
    .softmax_forward = sdw_cuda_softmax_forward,
    .softmax_backward = sdw_cuda_softmax_backward,
    .silu_forward = sdw_cuda_silu_forward,
    .silu_backward = sdw_cuda_silu_backward,
    .gelu_forward = sdw_cuda_gelu_forward,
    .gelu_backward = sdw_cuda_gelu_backward,
    .quick_gelu_forward = sdw_cuda_quick_gelu_forward,
    .quick_gelu_backward = sdw_cuda_quick_gelu_backward,
    .geglu_forward = sdw_cuda_geglu_forward,
    .geglu_backward = sdw_cuda_geglu_backward,
    .add = sdw_cuda_add,
    .mul = sdw_cuda_mul,
    .mul_backward = sdw_cuda_mul_backward,
    .axpby = sdw_cuda_axpby,
    .add_channel_bias = sdw_cuda_add_channel_bias,
    .add_channel_bias_backward = sdw_cuda_add_channel_bias_backward,
    .concat_channels = sdw_cuda_concat_channels,
    .concat_channels_backward = sdw_cuda_concat_channels_backward,
    .nchw_to_nlc = sdw_cuda_nchw_to_nlc,
    .nlc_to_nchw = sdw_cuda_nlc_to_nchw,
    .nchw_to_nlc_backward = sdw_cuda_nchw_to_nlc_backward,
    .nlc_to_nchw_backward = sdw_cuda_nlc_to_nchw_backward,
    .timestep_embedding = sdw_cuda_timestep_embedding,
    .embedding_forward = sdw_cuda_embedding_forward,
    .embedding_backward = sdw_cuda_embedding_backward,
    .mse_loss_forward = sdw_cuda_mse_loss_forward,
    .mse_loss_backward = sdw_cuda_mse_loss_backward,
    .adamw_step = sdw_cuda_adamw_step,
    .ema_update = sdw_cuda_ema_update,
    .sum_squares = sdw_cuda_sum_squares,
};

extern "C" const sdw_backend *sdw_backend_cuda(void) { return &cuda_backend; }
