#include "core/base/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[SDW_DTYPE_COUNT] = {
    [SDW_F32] = {"F32", 4},   [SDW_F16] = {"F16", 2},         [SDW_BF16] = {"BF16", 2},
    [SDW_F64] = {"F64", 8},   [SDW_I64] = {"I64", 8},         [SDW_I32] = {"I32", 4},
    [SDW_I16] = {"I16", 2},   [SDW_I8] = {"I8", 1},           [SDW_U8] = {"U8", 1},
    [SDW_U16] = {"U16", 2},   [SDW_U32] = {"U32", 4},         [SDW_U64] = {"U64", 8},
    [SDW_BOOL] = {"BOOL", 1}, [SDW_F8_E4M3] = {"F8_E4M3", 1}, [SDW_F8_E5M2] = {"F8_E5M2", 1},
};

size_t sdw_dtype_size(sdw_dtype dtype) {
  SDW_ASSERT((unsigned)dtype < SDW_DTYPE_COUNT);
  return dtype_info[dtype].size;
}

const char *sdw_dtype_name(sdw_dtype dtype) {
  if ((unsigned)dtype >= SDW_DTYPE_COUNT) return "?";
  return dtype_info[dtype].name;
}

bool sdw_dtype_from_name(const char *name, sdw_dtype *out) {
  for (int i = 0; i < SDW_DTYPE_COUNT; i++) {
    if (strcmp(name, dtype_info[i].name) == 0) {
      *out = (sdw_dtype)i;
      return true;
    }
  }
  return false;
}

sdw_tensor sdw_tensor_make(void *data, sdw_dtype dtype, int ndim, const int64_t *shape) {
  SDW_ASSERT(ndim >= 0 && ndim <= SDW_MAX_DIMS);
  sdw_tensor t = {.data = data, .dtype = dtype, .device = {SDW_DEVICE_CPU, 0}, .ndim = ndim};
  for (int i = 0; i < ndim; i++)
    t.shape[i] = shape[i];
  return t;
}

sdw_tensor sdw_tensor_1d(void *data, sdw_dtype dtype, int64_t d0) {
  return sdw_tensor_make(data, dtype, 1, (int64_t[]){d0});
}
sdw_tensor sdw_tensor_2d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1) {
  return sdw_tensor_make(data, dtype, 2, (int64_t[]){d0, d1});
}
sdw_tensor sdw_tensor_3d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1, int64_t d2) {
  return sdw_tensor_make(data, dtype, 3, (int64_t[]){d0, d1, d2});
}
sdw_tensor sdw_tensor_4d(void *data, sdw_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                         int64_t d3) {
  return sdw_tensor_make(data, dtype, 4, (int64_t[]){d0, d1, d2, d3});
}

int64_t sdw_tensor_span(const sdw_tensor *t, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++)
    n *= t->shape[i];
  return n;
}

int64_t sdw_tensor_numel(const sdw_tensor *t) { return sdw_tensor_span(t, 0, t->ndim); }

size_t sdw_tensor_nbytes(const sdw_tensor *t) {
  return (size_t)sdw_tensor_numel(t) * sdw_dtype_size(t->dtype);
}

bool sdw_tensor_same_shape(const sdw_tensor *a, const sdw_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

const char *sdw_shape_str(const sdw_tensor *t, char *buf, size_t size) {
  size_t used = 0;
  used += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->ndim && used < size; i++)
    used +=
        (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

/* --- 16-bit floats ------------------------------------------------------------ */
static uint32_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
static float bits_float(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

uint16_t sdw_f32_to_bf16(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float sdw_bf16_to_f32(uint16_t x) { return bits_float((uint32_t)x << 16); }

uint16_t sdw_f32_to_f16(float x) {
  uint32_t u = float_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
  if (abs < 0x38800000u) {                                   /* subnormal or zero in f16 */
    /* value = abs_f * 2^24 in units of the smallest subnormal, rounded to even */
    float f = bits_float(abs) * 16777216.0f;
    float r = nearbyintf(f); /* default rounding mode: to nearest even */
    return (uint16_t)(sign | (uint32_t)r);
  }
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 127 + 15;
  uint32_t h = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

float sdw_f16_to_f32(uint16_t x) {
  uint32_t sign = (uint32_t)(x & 0x8000u) << 16;
  uint32_t exp = (x >> 10) & 0x1fu;
  uint32_t mant = x & 0x3ffu;
  if (exp == 0) {
    float f = (float)mant * 5.9604644775390625e-8f; /* 2^-24 */
    return sign ? -f : f;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

double sdw_tensor_get(const sdw_tensor *t, int64_t i) {
  const void *p = t->data;
  switch (t->dtype) {
  case SDW_F32: return ((const float *)p)[i];
  case SDW_F64: return ((const double *)p)[i];
  case SDW_F16: return sdw_f16_to_f32(((const uint16_t *)p)[i]);
  case SDW_BF16: return sdw_bf16_to_f32(((const uint16_t *)p)[i]);
  case SDW_I64: return (double)((const int64_t *)p)[i];
  case SDW_I32: return ((const int32_t *)p)[i];
  case SDW_I16: return ((const int16_t *)p)[i];
  case SDW_I8: return ((const int8_t *)p)[i];
  case SDW_U8:
  case SDW_BOOL: return ((const uint8_t *)p)[i];
  case SDW_U16: return ((const uint16_t *)p)[i];
  case SDW_U32: return ((const uint32_t *)p)[i];
  case SDW_U64: return (double)((const uint64_t *)p)[i];
  default: return NAN;
  }
}

static void tensor_set(sdw_tensor *t, int64_t i, double v) {
  void *p = t->data;
  switch (t->dtype) {
  case SDW_F32: ((float *)p)[i] = (float)v; break;
  case SDW_F64: ((double *)p)[i] = v; break;
  case SDW_F16: ((uint16_t *)p)[i] = sdw_f32_to_f16((float)v); break;
  case SDW_BF16: ((uint16_t *)p)[i] = sdw_f32_to_bf16((float)v); break;
  case SDW_I64: ((int64_t *)p)[i] = (int64_t)v; break;
  case SDW_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case SDW_I16: ((int16_t *)p)[i] = (int16_t)v; break;
  case SDW_I8: ((int8_t *)p)[i] = (int8_t)v; break;
  case SDW_U8:
  case SDW_BOOL: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case SDW_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
  case SDW_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
  case SDW_U64: ((uint64_t *)p)[i] = (uint64_t)v; break;
  default: SDW_ASSERT(!"unsupported dtype");
  }
}

static bool dtype_convertible(sdw_dtype d) { return d != SDW_F8_E4M3 && d != SDW_F8_E5M2; }

sdw_status sdw_tensor_convert(const sdw_tensor *src, sdw_tensor *dst) {
  int64_t n = sdw_tensor_numel(src);
  SDW_ASSERT(n == sdw_tensor_numel(dst));
  if (!dtype_convertible(src->dtype) || !dtype_convertible(dst->dtype))
    return sdw_fail(SDW_ERR_UNSUPPORTED, "conversion from %s to %s is not supported",
                    sdw_dtype_name(src->dtype), sdw_dtype_name(dst->dtype));
  if (src->dtype == dst->dtype) {
    if (src->data != dst->data) memmove(dst->data, src->data, sdw_tensor_nbytes(src));
    return SDW_OK;
  }
  /* Integers of 64 bits lose nothing through double up to 2^53, which covers
   * every id, mask and timestep sdw handles. */
  for (int64_t i = 0; i < n; i++)
    tensor_set(dst, i, sdw_tensor_get(src, i));
  return SDW_OK;
}
