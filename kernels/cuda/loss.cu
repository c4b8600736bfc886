/* CUDA per-sample mean squared error (kernels/ops.h): one block per sample,
 * differences and sum in double, rounded once (the CPU's arithmetic, summed
 * in a different order); backward dpred += (2 dloss[n] / count) (pred -
 * target), the coefficient formed in double and rounded once. */
#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void mse_forward_kernel(const float *pred, const float *target, float *loss,
                                   int64_t count) {
  __shared__ double red[32];
  int64_t off = (int64_t)blockIdx.x * count;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    double d = (double)pred[off + i] - (double)target[off + i];
    s += d * d;
  }
  s = cuda_block_sum(s, red);
  if (threadIdx.x == 0) loss[blockIdx.x] = count ? (float)(s / (double)count) : 0.0f;
}

__global__ void mse_backward_kernel(const float *pred, const float *target, const float *dloss,
                                    float *dpred, int64_t n, int64_t count) {
  CUDA_FOR(i, n * count) {
    int64_t s = i / count;
    float k = (float)(2.0 * (double)dloss[s] / (double)count);
    dpred[i] += k * (pred[i] - target[i]);
  }
}

int64_t mse_check(const sdw_tensor *pred, const sdw_tensor *target, const sdw_tensor *per_sample) {
  cuda_check_same_f32(pred, target);
  cuda_check_f32(per_sample);
  SDW_ASSERT(pred->ndim >= 1);
  SDW_ASSERT(per_sample->ndim == 1 && per_sample->shape[0] == pred->shape[0]);
  return sdw_tensor_span(pred, 1, pred->ndim);
}

} // namespace

sdw_status sdw_cuda_mse_loss_forward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                     sdw_tensor *loss) {
  int64_t count = mse_check(pred, target, loss);
  int64_t n = pred->shape[0];
  if (!n) return SDW_OK;
  SDW_ASSERT(n <= INT32_MAX);
  mse_forward_kernel<<<(unsigned)n, CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)pred->data, (const float *)target->data, (float *)loss->data, count);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_mse_loss_backward(sdw_ctx *ctx, const sdw_tensor *pred,
                                      const sdw_tensor *target, const sdw_tensor *dloss,
                                      sdw_tensor *dpred) {
  int64_t count = mse_check(pred, target, dloss);
  if (!dpred) return SDW_OK;
  cuda_check_same_f32(pred, dpred);
  int64_t n = pred->shape[0];
  if (n * count == 0) return SDW_OK;
  mse_backward_kernel<<<cuda_grid(n * count), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)pred->data, (const float *)target->data, (const float *)dloss->data,
      (float *)dpred->data, n, count);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}
