/* Strict number parsing for command-line options and environment values:
 * the whole string must be the number (no trailing text, no empty string,
 * no overflow), within [lo, hi]. */
#ifndef SDW_BASE_PARSE_H
#define SDW_BASE_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Decimal integer in [lo, hi]; *out untouched on failure. */
bool sdw_parse_i64(const char *text, int64_t lo, int64_t hi, int64_t *out);
/* Finite floating-point number in [lo, hi]; *out untouched on failure. */
bool sdw_parse_double(const char *text, double lo, double hi, double *out);

#ifdef __cplusplus
}
#endif
#endif
