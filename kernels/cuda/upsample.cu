/* CUDA nearest-neighbour x2 upsampling (kernels/ops.h): x[N,C,H,W] ->
 * y[N,C,2H,2W]; the backward sums each 2x2 block of dy into dx (+=). */
#include "kernels/cuda/cuda_common.h"

namespace {

__global__ void up2_forward_kernel(const float *x, float *y, int64_t planes, int64_t h, int64_t w) {
  int64_t w2 = 2 * w, h2 = 2 * h;
  CUDA_FOR(i, planes * h2 * w2) {
    int64_t xo = i % w2, yo = (i / w2) % h2, p = i / (w2 * h2);
    y[i] = x[(p * h + yo / 2) * w + xo / 2];
  }
}
__global__ void up2_backward_kernel(const float *dy, float *dx, int64_t planes, int64_t h,
                                    int64_t w) {
  int64_t w2 = 2 * w;
  CUDA_FOR(i, planes * h * w) {
    int64_t xi = i % w, yi = (i / w) % h, p = i / (w * h);
    const float *r0 = dy + (p * 2 * h + 2 * yi) * w2 + 2 * xi, *r1 = r0 + w2;
    dx[i] += (r0[0] + r0[1]) + (r1[0] + r1[1]);
  }
}

void up2_check(const sdw_tensor *small, const sdw_tensor *big) {
  cuda_check_f32(small);
  cuda_check_f32(big);
  SDW_ASSERT(small->ndim == 4 && big->ndim == 4);
  SDW_ASSERT(big->shape[0] == small->shape[0] && big->shape[1] == small->shape[1]);
  SDW_ASSERT(big->shape[2] == 2 * small->shape[2] && big->shape[3] == 2 * small->shape[3]);
}

} // namespace

sdw_status sdw_cuda_upsample_nearest2x_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  up2_check(x, y);
  int64_t planes = x->shape[0] * x->shape[1], h = x->shape[2], w = x->shape[3];
  if (planes * h * w == 0) return SDW_OK;
  up2_forward_kernel<<<cuda_grid(planes * h * w * 4), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)x->data, (float *)y->data, planes, h, w);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}

sdw_status sdw_cuda_upsample_nearest2x_backward(sdw_ctx *ctx, const sdw_tensor *dy,
                                                sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  up2_check(dx, dy);
  int64_t planes = dx->shape[0] * dx->shape[1], h = dx->shape[2], w = dx->shape[3];
  if (planes * h * w == 0) return SDW_OK;
  up2_backward_kernel<<<cuda_grid(planes * h * w), CUDA_THREADS, 0, cuda_stream(ctx)>>>(
      (const float *)dy->data, (float *)dx->data, planes, h, w);
  CUDA_LAUNCH_TRY();
  return SDW_OK;
}
