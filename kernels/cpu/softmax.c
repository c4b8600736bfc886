/* Softmax over the last dimension (CPU): rows in parallel, each row a max
 * pass, an exp-and-sum pass (kernels/cpu/vexp.h) and a scaling pass. */
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/vexp.h"

/* Rows below this many elements in all are not worth waking the threads. */
enum { SOFTMAX_PARALLEL_MIN = 1 << 15 };

static void softmax_dims(const sdw_tensor *x, int64_t *rows, int64_t *n) {
  SDW_ASSERT(x->ndim >= 1);
  *n = x->shape[x->ndim - 1];
  *rows = *n > 0 ? sdw_tensor_numel(x) / *n : 0;
}

/* x[*,N] -> y[*,N] */
sdw_status sdw_cpu_softmax_forward(sdw_ctx *ctx, const sdw_tensor *x, sdw_tensor *y) {
  SDW_ASSERT(x->dtype == SDW_F32 && y->dtype == SDW_F32);
  SDW_ASSERT(sdw_tensor_same_shape(x, y));
  int64_t rows, n;
  softmax_dims(x, &rows, &n);
  const float *xd = x->data;
  float *yd = y->data;
  int nt = rows * n >= SOFTMAX_PARALLEL_MIN ? ctx->num_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = xd + r * n;
    float *yr = yd + r * n;
    float m = sdw_vexp_row_max(xr, n);
    float sum = sdw_vexp_row_exp_sum(xr, m, yr, n);
    sdw_vexp_row_scale(yr, 1.0f / sum, n);
  }
  return SDW_OK;
}

/* y[*,N], dy[*,N] -> dx[*,N] += y * (dy - sum(dy * y)) */
sdw_status sdw_cpu_softmax_backward(sdw_ctx *ctx, const sdw_tensor *y, const sdw_tensor *dy,
                                    sdw_tensor *dx) {
  SDW_ASSERT(y->dtype == SDW_F32 && dy->dtype == SDW_F32);
  SDW_ASSERT(sdw_tensor_same_shape(y, dy));
  if (!dx) return SDW_OK;
  SDW_ASSERT(dx->dtype == SDW_F32 && sdw_tensor_same_shape(y, dx));
  int64_t rows, n;
  softmax_dims(y, &rows, &n);
  const float *yd = y->data, *dyd = dy->data;
  float *dxd = dx->data;
  int nt = rows * n >= SOFTMAX_PARALLEL_MIN ? ctx->num_threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < rows; r++) {
    const float *yr = yd + r * n, *dyr = dyd + r * n;
    float *dxr = dxd + r * n;
    float c = sdw_vexp_row_dot(yr, dyr, n);
    for (int64_t j = 0; j < n; j++)
      dxr[j] += yr[j] * (dyr[j] - c);
  }
  return SDW_OK;
}
