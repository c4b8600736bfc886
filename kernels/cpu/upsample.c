/* Nearest-neighbour x2 upsampling (F.interpolate(scale_factor=2,
 * mode="nearest")): every input pixel becomes a 2x2 block; the backward sums
 * each block. Memory-bound; OpenMP over the N*C planes. */
#include "kernels/cpu/cpu_ops.h"

/* Below this many input pixels one thread does it (waking the team costs more). */
enum { UPSAMPLE_PARALLEL_MIN = 1 << 15 };

static int num_threads_of(const sdw_ctx *ctx) {
  return ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void check_pair(const sdw_tensor *small, const sdw_tensor *big) {
  SDW_ASSERT(small->dtype == SDW_F32 && big->dtype == SDW_F32);
  SDW_ASSERT(small->device.kind == SDW_DEVICE_CPU && big->device.kind == SDW_DEVICE_CPU);
  SDW_ASSERT(small->ndim == 4 && big->ndim == 4);
  SDW_ASSERT(big->shape[0] == small->shape[0] && big->shape[1] == small->shape[1]);
  SDW_ASSERT(big->shape[2] == 2 * small->shape[2] && big->shape[3] == 2 * small->shape[3]);
}

sdw_status sdw_cpu_upsample_nearest2x_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  check_pair(x, y);
  const int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
  const float *xd = x->data;
  float *yd = y->data;
#pragma omp parallel for num_threads(num_threads_of(ctx))                                          \
    schedule(static) if (planes * H * W >= UPSAMPLE_PARALLEL_MIN)
  for (int64_t p = 0; p < planes; p++) {
    const float *src = xd + p * H * W;
    float *dst = yd + p * 4 * H * W;
    for (int64_t i = 0; i < H; i++) {
      float *restrict r0 = dst + (2 * i) * (2 * W);
      float *restrict r1 = r0 + 2 * W;
      const float *restrict s = src + i * W;
      for (int64_t j = 0; j < W; j++) {
        const float v = s[j];
        r0[2 * j] = v, r0[2 * j + 1] = v;
        r1[2 * j] = v, r1[2 * j + 1] = v;
      }
    }
  }
  return SDW_OK;
}

sdw_status sdw_cpu_upsample_nearest2x_backward(sdw_ctx *ctx, const sdw_tensor *dy, sdw_tensor *dx) {
  if (!dx) return SDW_OK;
  check_pair(dx, dy);
  const int64_t planes = dx->shape[0] * dx->shape[1], H = dx->shape[2], W = dx->shape[3];
  const float *dyd = dy->data;
  float *dxd = dx->data;
#pragma omp parallel for num_threads(num_threads_of(ctx))                                          \
    schedule(static) if (planes * H * W >= UPSAMPLE_PARALLEL_MIN)
  for (int64_t p = 0; p < planes; p++) {
    const float *src = dyd + p * 4 * H * W;
    float *dst = dxd + p * H * W;
    for (int64_t i = 0; i < H; i++) {
      const float *restrict r0 = src + (2 * i) * (2 * W);
      const float *restrict r1 = r0 + 2 * W;
      float *restrict d = dst + i * W;
      for (int64_t j = 0; j < W; j++)
        d[j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
    }
  }
  return SDW_OK;
}
