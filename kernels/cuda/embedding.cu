/* CUDA embeddings (kernels/ops.h): the sinusoidal timestep embedding
 * (evaluated in double and rounded once, as the CPU does) and token
 * embedding lookup / scatter-add. Ids are checked on the device; an id out
 * of range sets a flag that is read back (one stream sync) and becomes
 * SDW_ERR_INVALID_ARGUMENT. The backward gives each thread one column and
 * walks the tokens in order, so repeated ids sum in token order, race-free
 * and deterministic (the CPU's order), without atomics. */
#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void timestep_kernel(const float *t, float *y, int64_t n, int64_t dim, int64_t half,
                                double log_period, double denom, int64_t sin_off, int64_t cos_off) {
  CUDA_FOR(k, n * half) {
    int64_t r = k / half, i = k % half;
    double arg = (double)t[r] * exp(-log_period * (double)i / denom);
    y[r * dim + sin_off + i] = (float)sin(arg);
    y[r * dim + cos_off + i] = (float)cos(arg);
  }
}
__global__ void zero_last_col_kernel(float *y, int64_t n, int64_t dim) {
  CUDA_FOR(r, n) y[r * dim + dim - 1] = 0.0f;
}

__device__ inline int64_t id_at(const void *ids, bool i64, int64_t i) {
  return i64 ? ((const int64_t *)ids)[i] : (int64_t)((const int32_t *)ids)[i];
}

__global__ void ids_check_kernel(const void *ids, bool i64, int64_t count, int64_t vocab,
                                 int *flag) {
  CUDA_FOR(i, count) {
    int64_t id = id_at(ids, i64, i);
    if (id < 0 || id >= vocab) *flag = 1;
  }
}
__global__ void gather_kernel(const void *ids, bool i64, const float *table, float *y,
                              int64_t count, int64_t dim) {
  CUDA_FOR(k, count * dim) {
    int64_t i = k / dim, j = k % dim;
    y[k] = table[id_at(ids, i64, i) * dim + j];
  }
}
__global__ void scatter_add_kernel(const void *ids, bool i64, const float *dy, float *dtable,
                                   int64_t count, int64_t dim) {
  CUDA_FOR(j, dim) {
    for (int64_t i = 0; i < count; i++)
      dtable[id_at(ids, i64, i) * dim + j] += dy[i * dim + j];
  }
}

/* ids[*] against rows[*, D] and table[V, D]; returns the id count. */
int64_t lookup_check(const sdw_tensor *ids, const sdw_tensor *rows, const sdw_tensor *table) {
  cuda_check_dev(ids);
  SDW_ASSERT(ids->dtype == SDW_I32 || ids->dtype == SDW_I64);
  cuda_check_f32(rows);
  cuda_check_f32(table);
  SDW_ASSERT(table->ndim == 2);
  SDW_ASSERT(rows->ndim == ids->ndim + 1 && rows->shape[rows->ndim - 1] == table->shape[1]);
  for (int i = 0; i < ids->ndim; i++)
    SDW_ASSERT(rows->shape[i] == ids->shape[i]);
  return sdw_tensor_numel(ids);
}

sdw_status ids_check(sdw_ctx *ctx, const sdw_tensor *ids, int64_t count, int64_t vocab) {
  if (!count) return SDW_OK;
  sdw_cuda_impl *im = cuda_impl(ctx);
  CUDA_TRY(cudaMemsetAsync(im->flag, 0, sizeof(int), im->stream));
  ids_check_kernel<<<cuda_grid(count), CUDA_THREADS, 0, im->stream>>>(
      ids->data, ids->dtype == SDW_I64, count, vocab, im->flag);
  CUDA_LAUNCH_TRY();
  CUDA_TRY(
      cudaMemcpyAsync(im->host_flag, im->flag, sizeof(int), cudaMemcpyDeviceToHost, im->stream));
  CUDA_TRY(cudaStreamSynchronize(im->stream));
  if (*im->host_flag)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "a token id is outside the vocabulary [0, %lld)",
                    (long long)vocab);
  return SDW_OK;
}

} // namespace

sdw_status sdw_cuda_timestep_embedding(sdw_ctx *ctx, const sdw_tensor *t,
                                       const sdw_timestep_embedding_params *params, sdw_tensor *y) {
  cuda_check_f32(t);
  cuda_check_f32(y);
  SDW_ASSERT(params != NULL);
  SDW_ASSERT(t->ndim == 1 && y->ndim == 2 && y->shape[0] == t->shape[0]);
  int64_t n = y->shape[0], dim = y->shape[1], half = dim / 2;
  double denom = (double)half - params->freq_shift;
  SDW_ASSERT(half == 0 || denom > 0.0);
  SDW_ASSERT(params->max_period > 0.0);
  int64_t sin_off = params->flip_sin_to_cos ? half : 0, cos_off = half - sin_off;
  cudaStream_t s = cuda_stream(ctx);
  if (n * half > 0) {
    timestep_kernel<<<cuda_grid(n * half), CUDA_THREADS, 0, s>>>(
        (const float *)t->data, (float *)y->data, n, dim, half, log(params->max_period), denom,
        sin_off, cos_off);
    CUDA_LAUNCH_TRY();
  }
  if (dim % 2 && n > 0) {
    zero_last_col_kernel<<<cuda_grid(n), CUDA_THREADS, 0, s>>>((float *)y->data, n, dim);
    CUDA_LAUNCH_TRY();
  }
  return SDW_OK;
}

sdw_status sdw_cuda_embedding_forward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *table,
                                      sdw_tensor *y) {
  int64_t count = lookup_check(ids, y, table);
  int64_t vocab = table->shape[0], dim = table->shape[1];
  SDW_TRY(ids_check(ctx, ids, count, vocab));
  if (count * dim == 0) return SDW_OK;
  gather_kernel<<<cuda_grid(count * dim), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      ids->data, ids->dtype == SDW_I64, (const float *)table->data, (float *)y->data, count, dim);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_embedding_backward(sdw_ctx *ctx, const sdw_tensor *ids, const sdw_tensor *dy,
                                       sdw_tensor *dtable) {
  if (!dtable) return SDW_OK;
  int64_t count = lookup_check(ids, dy, dtable);
  int64_t vocab = dtable->shape[0], dim = dtable->shape[1];
  SDW_TRY(ids_check(ctx, ids, count, vocab));
  if (count * dim == 0) return SDW_OK;
  scatter_add_kernel<<<cuda_grid(dim), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      ids->data, ids->dtype == SDW_I64, (const float *)dy->data, (float *)dtable->data, count, dim);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}
