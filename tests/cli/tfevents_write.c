/* Writes TensorBoard scalars with sdw's writer for tests/cli/tfevents_read.sh
 * (built by that script; not part of the test binary). Prints each scalar
 * it wrote as "tag step value" with value as %.9g (a float round-trips). */
#include <stdio.h>
#include <stdlib.h>

#include "core/base/status.h"
#include "core/train/tfevents.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tfevents_write DIR\n");
    return 2;
  }
  sdw_tfevents *w = NULL;
  if (sdw_tfevents_open(argv[1], &w) != SDW_OK) {
    fprintf(stderr, "tfevents_write: %s\n", sdw_last_error());
    return 1;
  }
  static const char *const tags[] = {"train/loss", "train/lr", "train/grad_norm", "train/img_per_s",
                                     "val/val_loss"};
  float v = 0.731f;
  for (int64_t step = 1; step <= 40; step++) {
    for (int t = 0; t < 5; t++) {
      if (t == 4 && step % 10 != 0) continue; /* validation every 10 steps */
      float value = t == 1 ? 1e-5f * (float)step : v * (float)(t + 1) - (t == 2 ? 3.0f : 0.0f);
      if (sdw_tfevents_scalar(w, tags[t], step, 1764110000.0 + (double)step, value) != SDW_OK) {
        fprintf(stderr, "tfevents_write: %s\n", sdw_last_error());
        return 1;
      }
      printf("%s %lld %.9g\n", tags[t], (long long)step, (double)value);
    }
    v *= 0.97f;
    if (step % 8 == 0) sdw_tfevents_flush(w);
  }
  /* a step beyond 32 bits */
  int64_t big = (int64_t)1 << 40;
  if (sdw_tfevents_scalar(w, "train/loss", big, 1764120000.0, 0.125f) != SDW_OK) return 1;
  printf("train/loss %lld %.9g\n", (long long)big, 0.125);
  sdw_tfevents_close(w);
  return 0;
}
