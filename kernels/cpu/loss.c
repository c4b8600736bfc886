/* CPU per-sample mean squared error, forward and backward (kernels/ops.h). */
#include "kernels/cpu/cpu_ops.h"

static int loss_threads(const sdw_ctx *ctx) {
  return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1;
}

static void loss_check_f32(const sdw_tensor *t) {
  SDW_ASSERT(t != NULL);
  SDW_ASSERT(t->dtype == SDW_F32);
  SDW_ASSERT(t->device.kind == SDW_DEVICE_CPU);
}

/* pred[N,*] and target[N,*] (same shape) against a per-sample vector[N];
 * returns the number of elements per sample. */
static int64_t loss_check(const sdw_tensor *pred, const sdw_tensor *target,
                          const sdw_tensor *per_sample) {
  loss_check_f32(pred);
  loss_check_f32(target);
  loss_check_f32(per_sample);
  SDW_ASSERT(pred->ndim >= 1 && sdw_tensor_same_shape(pred, target));
  SDW_ASSERT(per_sample->ndim == 1 && per_sample->shape[0] == pred->shape[0]);
  return sdw_tensor_span(pred, 1, pred->ndim);
}

/* loss[n] = mean over the sample of (pred - target)^2, differences and sum in
 * double, rounded once. */
sdw_status sdw_cpu_mse_loss_forward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                    sdw_tensor *loss) {
  int64_t count = loss_check(pred, target, loss);
  int64_t n = pred->shape[0];
  const float *pp = pred->data, *tp = target->data;
  float *lp = loss->data;
#pragma omp parallel for schedule(static) num_threads(loss_threads(ctx)) if (n * count >= 1 << 15)
  for (int64_t s = 0; s < n; s++) {
    const float *ps = pp + s * count, *ts = tp + s * count;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < count; i++) {
      double d = (double)ps[i] - (double)ts[i];
      sum += d * d;
    }
    lp[s] = count ? (float)(sum / (double)count) : 0.0f;
  }
  return SDW_OK;
}

/* dpred += dloss[n] * 2 (pred - target) / count, the coefficient
 * 2 dloss[n] / count formed in double and rounded once. */
sdw_status sdw_cpu_mse_loss_backward(sdw_ctx *ctx, const sdw_tensor *pred, const sdw_tensor *target,
                                     const sdw_tensor *dloss, sdw_tensor *dpred) {
  int64_t count = loss_check(pred, target, dloss);
  if (!dpred) return SDW_OK;
  loss_check_f32(dpred);
  SDW_ASSERT(sdw_tensor_same_shape(pred, dpred));
  int64_t n = pred->shape[0];
  const float *pp = pred->data, *tp = target->data, *dl = dloss->data;
  float *dp = dpred->data;
  int nt = loss_threads(ctx);
  for (int64_t s = 0; s < n; s++) {
    float k = (float)(2.0 * (double)dl[s] / (double)count);
    const float *ps = pp + s * count, *ts = tp + s * count;
    float *ds = dp + s * count;
#pragma omp parallel for simd schedule(static) num_threads(nt) if (count >= 1 << 15)
    for (int64_t i = 0; i < count; i++)
      ds[i] += k * (ps[i] - ts[i]);
  }
  return SDW_OK;
}
