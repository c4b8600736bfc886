#include "core/base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SDW_ERROR_CAPACITY = 1024 };
static _Thread_local char error_message[SDW_ERROR_CAPACITY];

sdw_status sdw_failv(sdw_status code, const char *fmt, va_list ap) {
  vsnprintf(error_message, sizeof error_message, fmt, ap);
  return code;
}

sdw_status sdw_fail(sdw_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sdw_failv(code, fmt, ap);
  va_end(ap);
  return code;
}

void sdw_error_prefix(const char *fmt, ...) {
  char prefix[SDW_ERROR_CAPACITY];
  char joined[SDW_ERROR_CAPACITY];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  size_t len = strlen(prefix);
  if (len > sizeof joined - 3) len = sizeof joined - 3;
  memcpy(joined, prefix, len);
  memcpy(joined + len, ": ", 2);
  size_t rest = sizeof joined - len - 3;
  size_t msg = strnlen(error_message, rest);
  memcpy(joined + len + 2, error_message, msg);
  joined[len + 2 + msg] = '\0';
  memcpy(error_message, joined, sizeof error_message);
}

const char *sdw_last_error(void) { return error_message; }

void sdw_clear_error(void) { error_message[0] = '\0'; }

const char *sdw_status_name(sdw_status code) {
  static const char *const names[SDW_STATUS_COUNT] = {
      [SDW_OK] = "ok",
      [SDW_ERR_INVALID_ARGUMENT] = "invalid argument",
      [SDW_ERR_IO] = "i/o error",
      [SDW_ERR_FORMAT] = "malformed input",
      [SDW_ERR_NOT_FOUND] = "not found",
      [SDW_ERR_OUT_OF_MEMORY] = "out of memory",
      [SDW_ERR_UNSUPPORTED] = "unsupported",
      [SDW_ERR_DEVICE] = "device error",
      [SDW_ERR_INTERRUPTED] = "interrupted",
      [SDW_ERR_INTERNAL] = "internal error",
  };
  if ((unsigned)code >= SDW_STATUS_COUNT) return "unknown status";
  return names[code];
}

void sdw_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "sdw: internal error: assertion `%s' failed at %s:%d (a bug: please report it)\n",
          expr, file, line);
  abort();
}

void sdw_assert_failf(const char *expr, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "sdw: internal error: assertion `%s' failed at %s:%d: ", expr, file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs(" (a bug: please report it)\n", stderr);
  abort();
}
