/* The seed's warmup + cosine learning rate in closed form (lr_schedule.h). */
#include "core/train/lr_schedule.h"

#include <math.h>
#include <string.h>

sdw_status sdw_lr_schedule_init(sdw_lr_schedule *out, double base_lr, int64_t total_steps,
                                int64_t warmup_steps, sdw_lr_after_end after_end) {
  if (!(base_lr > 0.0) || !isfinite(base_lr))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "learning rate %g must be a positive number",
                    base_lr);
  if (total_steps < 1)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "a schedule needs at least one step (got %lld)",
                    (long long)total_steps);
  if (warmup_steps < 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "warmup steps %lld must not be negative",
                    (long long)warmup_steps);
  out->base_lr = base_lr;
  out->total_steps = total_steps;
  out->warmup_steps = warmup_steps;
  out->after_end = after_end;
  return SDW_OK;
}

int64_t sdw_lr_schedule_warmup(const sdw_lr_schedule *s) {
  int64_t cap = s->total_steps / 10;
  return s->warmup_steps < cap ? s->warmup_steps : cap;
}

double sdw_lr_schedule_at(const sdw_lr_schedule *s, int64_t k) {
  const double base = s->base_lr;
  /* lr * 1e-2 as the seed writes it (args.lr * 1e-2), not lr / 100 */
  const double eta_min = base * 1e-2;
  const int64_t W = sdw_lr_schedule_warmup(s);
  if (k < 0) k = 0;
  if (k < W) return base * (0.01 + 0.99 * (double)k / (double)W);
  const int64_t span = s->total_steps - W > 1 ? s->total_steps - W : 1;
  if (k - W >= span && s->after_end == SDW_LR_AFTER_END_HOLD) return eta_min;
  const double pi = 3.14159265358979323846;
  return eta_min + (base - eta_min) * (1.0 + cos(pi * (double)(k - W) / (double)span)) / 2.0;
}

bool sdw_lr_after_end_from_name(const char *name, sdw_lr_after_end *out) {
  if (strcmp(name, "hold") == 0) {
    *out = SDW_LR_AFTER_END_HOLD;
    return true;
  }
  if (strcmp(name, "periodic") == 0) {
    *out = SDW_LR_AFTER_END_PERIODIC;
    return true;
  }
  return false;
}

const char *sdw_lr_after_end_name(sdw_lr_after_end v) {
  return v == SDW_LR_AFTER_END_PERIODIC ? "periodic" : "hold";
}
