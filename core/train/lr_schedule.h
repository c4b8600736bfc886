/* The learning-rate schedule of the seed's train.py (SEED.md §2.5) in its
 * closed form:
 *
 *   W = min(warmup_steps, total_steps / 10)            (integer division)
 *   k < W:  lr = base * (0.01 + 0.99 * k / W)         (LinearLR from 0.01 x)
 *   k >= W: lr = eta_min + (base - eta_min) * (1 + cos(pi * (k - W) / (total - W))) / 2
 *   eta_min = 0.01 * base                              (CosineAnnealingLR)
 *
 * where k is the number of optimizer steps already taken (PyTorch's
 * scheduler.step() count: the k-th update, 0-based, uses lr(k)). W == 0
 * gives the plain cosine over total steps, as the seed does when W < 1.
 * PyTorch's chainable recursion for these schedulers equals this form to
 * ~1e-15 up to k = total; past the end the seed's cosine rises again (the
 * recursion is periodic), which is SDW_LR_AFTER_END_PERIODIC. The default,
 * SDW_LR_AFTER_END_HOLD, stays at eta_min: the seed's behaviour there is a
 * defect (its fine-tuning phase ran with a rising LR). */
#ifndef SDW_TRAIN_LR_SCHEDULE_H
#define SDW_TRAIN_LR_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_lr_after_end {
  SDW_LR_AFTER_END_HOLD = 0, /* eta_min after total_steps (default) */
  SDW_LR_AFTER_END_PERIODIC, /* the cosine continues (the seed / PyTorch) */
} sdw_lr_after_end;

typedef struct sdw_lr_schedule {
  double base_lr;       /* the peak, --lr (seed default 1e-5) */
  int64_t total_steps;  /* optimizer steps of the whole run, >= 1 */
  int64_t warmup_steps; /* requested warmup (seed default 500); capped at total/10 */
  sdw_lr_after_end after_end;
} sdw_lr_schedule;

/* Fills *out; SDW_ERR_INVALID_ARGUMENT for base_lr <= 0 or not finite,
 * total_steps < 1 or warmup_steps < 0. */
sdw_status sdw_lr_schedule_init(sdw_lr_schedule *out, double base_lr, int64_t total_steps,
                                int64_t warmup_steps, sdw_lr_after_end after_end);

/* The effective warmup W = min(warmup_steps, total_steps / 10). */
int64_t sdw_lr_schedule_warmup(const sdw_lr_schedule *s);

/* The learning rate of the update that follows k completed steps (k >= 0). */
double sdw_lr_schedule_at(const sdw_lr_schedule *s, int64_t k);

/* "hold" / "periodic"; false when unknown. */
bool sdw_lr_after_end_from_name(const char *name, sdw_lr_after_end *out);
const char *sdw_lr_after_end_name(sdw_lr_after_end v);

#ifdef __cplusplus
}
#endif
#endif
