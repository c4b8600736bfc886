/* The CUDA op backend's extras beyond kernels/ops.h, for C callers (the
 * parity harness, the trainer's precision switch, the NCCL engine). Plain C
 * interface; only in builds with CUDA (SDW_HAVE_CUDA). The backend table
 * itself is sdw_backend_cuda() in kernels/ops.h. */
#ifndef SDW_KERNELS_CUDA_BACKEND_H
#define SDW_KERNELS_CUDA_BACKEND_H

#include <stddef.h>

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GEMM / convolution arithmetic of a CUDA ctx (tensors stay f32):
 *  FP32 (the default): IEEE fp32 products (cuBLAS CUBLAS_COMPUTE_32F, cuDNN
 *    CUDNN_FMA_MATH); the parity tests run in this mode.
 *  TF32: cuBLAS and cuDNN may use TF32 tensor cores (~1e-3 relative).
 *  BF16: cuBLAS converts GEMM operands to bf16 on the fly
 *    (CUBLAS_COMPUTE_32F_FAST_16BF, fp32 accumulate); convolutions as TF32.
 * The environment variable SDW_CUDA_MATH=fp32|tf32|bf16 (or SDW_CUDA_TF32=1)
 * picks the mode at ctx creation. */
typedef enum sdw_cuda_math {
  SDW_CUDA_MATH_FP32 = 0,
  SDW_CUDA_MATH_TF32 = 1,
  SDW_CUDA_MATH_BF16 = 2
} sdw_cuda_math;

/* ctx must come from sdw_backend_cuda(). */
void sdw_cuda_set_math(sdw_ctx *ctx, sdw_cuda_math math);
sdw_cuda_math sdw_cuda_get_math(const sdw_ctx *ctx);
/* The ctx's cudaStream_t (every op of the ctx is queued on it). */
void *sdw_cuda_stream(const sdw_ctx *ctx);
/* The ctx's CUDA device ordinal. */
int sdw_cuda_device(const sdw_ctx *ctx);
/* One line about the ctx's device into buf: ordinal, name, compute
 * capability, memory, and whether kernels can read pageable host memory
 * (cudaDevAttrPageableMemoryAccess, HMM/ATS): the models' activation arenas
 * are host mmap memory today, so running a model on this backend needs it
 * until arenas can be device memory (kernels/cuda/NOTES.md). */
void sdw_cuda_describe(const sdw_ctx *ctx, char *buf, size_t size);
/* cudaDevAttrPageableMemoryAccess of the ctx's device. */
bool sdw_cuda_pageable_access(const sdw_ctx *ctx);
/* Bytes of device memory this ctx has allocated now and at its peak
 * (alloc/free and the op workspace). */
void sdw_cuda_memory_stats(const sdw_ctx *ctx, size_t *in_use, size_t *peak);

#ifdef __cplusplus
}
#endif
#endif
