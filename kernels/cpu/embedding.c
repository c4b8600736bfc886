/* CPU embeddings: the sinusoidal timestep embedding and the token-id lookup
 * table (forward and its scatter-add backward). Contracts in kernels/ops.h. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

static int emb_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void emb_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

/* y[n, i] = sin(t[n] freq[i]), y[n, half + i] = cos(t[n] freq[i]) (swapped when
 * flip_sin_to_cos), freq[i] = exp(-ln(max_period) i / (half - freq_shift)).
 * Evaluated in double and rounded once (PyTorch evaluates it in f32, rounding
 * the frequency and the angle first, which near t = 1000 moves the phase by
 * up to ~1e-4 rad). An odd dim leaves a trailing zero column. */
sdw_status sdw_cpu_timestep_embedding(sdw_ctx *ctx, const sdw_tensor *t,
                                      const sdw_timestep_embedding_params *params, sdw_tensor *y) {
  emb_check_f32(t);
  emb_check_f32(y);
  SDW_ASSERT(params != NULL);
  SDW_ASSERT(t->ndim == 1 && y->ndim == 2 && y->shape[0] == t->shape[0]);
  int64_t n = y->shape[0], dim = y->shape[1], half = dim / 2;
  double denom = (double)half - params->freq_shift;
  SDW_ASSERT(half == 0 || denom > 0.0);
  SDW_ASSERT(params->max_period > 0.0);
  const float *tp = t->data;
  float *yp = y->data;
  double log_period = log(params->max_period);
  int64_t sin_off = params->flip_sin_to_cos ? half : 0, cos_off = half - sin_off;
#pragma omp parallel for schedule(static) num_threads(emb_threads(ctx)) if (n * half >= 4096)
  for (int64_t r = 0; r < n; r++) {
    float *yr = yp + r * dim;
    double tv = tp[r];
    for (int64_t i = 0; i < half; i++) {
      double arg = tv * exp(-log_period * (double)i / denom);
      yr[sin_off + i] = (float)sin(arg);
      yr[cos_off + i] = (float)cos(arg);
    }
    if (dim % 2) yr[dim - 1] = 0.0f;
  }
  return SDW_OK;
}

/* ids: I32 or I64, any shape; element i as a 64-bit integer. */
static int64_t emb_id(const sdw_tensor *ids, int64_t i) {
  return ids->dtype == SDW_I32 ? ((const int32_t *)ids->data)[i] : ((const int64_t *)ids->data)[i];
}

/* Checks ids against rows[*,D] (the output of the lookup or dy of its
 * backward) and table[V,D]; returns the number of ids. */
static int64_t emb_check_lookup(const sdw_tensor *ids, const sdw_tensor *rows,
                                const sdw_tensor *table) {
  SDW_ASSERT(ids != NULL);
  SDW_ASSERT(ids->device.kind == SDW_DEVICE_CPU);
  SDW_ASSERT(ids->dtype == SDW_I32 || ids->dtype == SDW_I64);
  emb_check_f32(rows);
  emb_check_f32(table);
  SDW_ASSERT(table->ndim == 2);
  SDW_ASSERT(rows->ndim == ids->ndim + 1 && rows->shape[rows->ndim - 1] == table->shape[1]);
  for (int i = 0; i < ids->ndim; i++)
    SDW_ASSERT(rows->shape[i] == ids->shape[i]);
  return sdw_tensor_numel(ids);
}

/* Every id must lie in [0, vocab): bad data, reported before anything is
 * written. */
static sdw_status emb_check_ids(const sdw_tensor *ids, int64_t count, int64_t vocab) {
  for (int64_t i = 0; i < count; i++) {
    int64_t id = emb_id(ids, i);
    if (id < 0 || id >= vocab)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "token id %lld is outside the vocabulary [0, %lld)",
                      (long long)id, (long long)vocab);
  }
  return SDW_OK;
}

sdw_status sdw_cpu_embedding_forward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *table,
                                     sdw_tensor *y) {
  int64_t count = emb_check_lookup(ids, y, table);
  int64_t vocab = table->shape[0], dim = table->shape[1];
  SDW_TRY(emb_check_ids(ids, count, vocab));
  const float *tab = table->data;
  float *yp = y->data;
#pragma omp parallel for schedule(static) num_threads(emb_threads(ctx)) if (count * dim >= 1 << 15)
  for (int64_t i = 0; i < count; i++)
    memcpy(yp + i * dim, tab + emb_id(ids, i) * dim, sizeof(float) * (size_t)dim);
  return SDW_OK;
}

/* Scatter-add. Repeated ids make rows collide, so threads split the columns
 * instead of the ids: each thread owns a slice of D for every token, which is
 * race-free and sums repeated ids in token order. */
sdw_status sdw_cpu_embedding_backward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *dy,
                                      sdw_tensor *dtable) {
  if (!dtable) return SDW_OK;
  int64_t count = emb_check_lookup(ids, dy, dtable);
  int64_t vocab = dtable->shape[0], dim = dtable->shape[1];
  SDW_TRY(emb_check_ids(ids, count, vocab));
  const float *dyp = dy->data;
  float *dt = dtable->data;
  int nt = emb_threads(ctx);
  if (count * dim < 1 << 15) nt = 1;
  /* column slices rounded to 16 floats (one cache line) */
  int64_t slice = ((dim + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int part = 0; part < nt; part++) {
    int64_t j0 = part * slice, j1 = j0 + slice < dim ? j0 + slice : dim;
    for (int64_t i = 0; i < count; i++) {
      float *dst = dt + emb_id(ids, i) * dim;
      const float *src = dyp + i * dim;
#pragma omp simd
      for (int64_t j = j0; j < j1; j++)
        dst[j] += src[j];
    }
  }
  return SDW_OK;
}
