#include "core/base/parse.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

bool sdw_parse_i64(const char *text, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool sdw_parse_double(const char *text, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !isfinite(v) || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}
