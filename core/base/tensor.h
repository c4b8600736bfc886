/* Tensors: a typed, shaped view of memory that somebody else owns.
 *
 * An sdw_tensor never owns its data: the memory comes from an arena
 * (core/base/arena.h), an mmap'd file (safetensors) or the caller. Tensors
 * are dense and row-major (the last dimension is contiguous); layouts that
 * need strides (e.g. channels_last weights in PyTorch checkpoints) are made
 * contiguous when they are loaded.
 */
#ifndef SDW_BASE_TENSOR_H
#define SDW_BASE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every dtype a safetensors file can name; the compute ops use f32 (and, on
 * GPUs, f16/bf16); the others are carried, converted or rejected clearly. */
typedef enum sdw_dtype {
  SDW_F32 = 0,
  SDW_F16,
  SDW_BF16,
  SDW_F64,
  SDW_I64,
  SDW_I32,
  SDW_I16,
  SDW_I8,
  SDW_U8,
  SDW_U16,
  SDW_U32,
  SDW_U64,
  SDW_BOOL,
  SDW_F8_E4M3,
  SDW_F8_E5M2,
  SDW_DTYPE_COUNT
} sdw_dtype;

size_t sdw_dtype_size(sdw_dtype dtype);
/* The safetensors spelling: "F32", "BF16", "I64", ... */
const char *sdw_dtype_name(sdw_dtype dtype);
/* Parses a safetensors dtype name; false when unknown. */
bool sdw_dtype_from_name(const char *name, sdw_dtype *out);

typedef enum sdw_device_kind { SDW_DEVICE_CPU = 0, SDW_DEVICE_CUDA = 1 } sdw_device_kind;

typedef struct sdw_device {
  sdw_device_kind kind;
  int index; /* CUDA ordinal; 0 for the CPU */
} sdw_device;

#define SDW_MAX_DIMS 8

typedef struct sdw_tensor {
  void *data; /* not owned */
  sdw_dtype dtype;
  sdw_device device;
  int ndim;
  int64_t shape[SDW_MAX_DIMS];
} sdw_tensor;

/* A CPU tensor over data (not copied, not owned). */
sdw_tensor sdw_tensor_make(void *data, sdw_dtype dtype, int ndim, const int64_t *shape);
/* Shorthands for the common ranks. */
sdw_tensor sdw_tensor_1d(void *data, sdw_dtype dtype, int64_t d0);
sdw_tensor sdw_tensor_2d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1);
sdw_tensor sdw_tensor_3d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1, int64_t d2);
sdw_tensor sdw_tensor_4d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                         int64_t d3);

int64_t sdw_tensor_numel(const sdw_tensor *t);
size_t sdw_tensor_nbytes(const sdw_tensor *t);
/* Product of dims [from, to). */
int64_t sdw_tensor_span(const sdw_tensor *t, int from, int to);
bool sdw_tensor_same_shape(const sdw_tensor *a, const sdw_tensor *b);
/* "[2, 320, 64, 64]" into buf; returns buf. */
const char *sdw_shape_str(const sdw_tensor *t, char *buf, size_t size);

/* Scalar conversions (round-to-nearest-even; NaN stays NaN). */
uint16_t sdw_f32_to_bf16(float x);
float sdw_bf16_to_f32(uint16_t x);
uint16_t sdw_f32_to_f16(float x);
float sdw_f16_to_f32(uint16_t x);

/* Element i of a CPU tensor of any float/int dtype as a double (tests, I/O). */
double sdw_tensor_get(const sdw_tensor *t, int64_t i);
/* Converts a whole CPU tensor into dst (same numel; dst's dtype decides). */
sdw_status sdw_tensor_convert(const sdw_tensor *src, sdw_tensor *dst);

#ifdef __cplusplus
}
#endif
#endif
