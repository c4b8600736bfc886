/* Status codes and error messages.
 *
 * Errors in the environment (missing file, corrupt input, out of memory, no
 * device) travel up as an sdw_status; the human sentence that explains them
 * (naming the file and the fix) is recorded thread-locally by sdw_fail() and
 * read back with sdw_last_error(). Bugs are not statuses: they hit
 * SDW_ASSERT, which is always on. Nothing in core/ or kernels/ exits.
 */
#ifndef SDW_BASE_STATUS_H
#define SDW_BASE_STATUS_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_status {
  SDW_OK = 0,
  SDW_ERR_INVALID_ARGUMENT, /* a request that cannot be honoured (flag, size, id out of range) */
  SDW_ERR_IO,               /* the file system said no (open, read, write, fsync, rename) */
  SDW_ERR_FORMAT,           /* bytes that do not follow their format (corrupt or hostile file) */
  SDW_ERR_NOT_FOUND,        /* a named file, tensor or key is absent */
  SDW_ERR_OUT_OF_MEMORY,    /* host or device allocation failed, or an arena is full */
  SDW_ERR_UNSUPPORTED,      /* valid input that this build cannot handle (dtype, layout, device) */
  SDW_ERR_DEVICE,           /* CUDA / driver / library error */
  SDW_ERR_INTERRUPTED,      /* stopped by a signal or a stop request */
  SDW_ERR_INTERNAL,         /* an inconsistency detected at run time that is not the user's fault */
  SDW_STATUS_COUNT
} sdw_status;

/* Records "message" (printf-style) as this thread's last error and returns
 * code, so callers write `return sdw_fail(SDW_ERR_IO, "%s: %s", path, ...)`.
 * The message is one sentence without a trailing newline. */
sdw_status sdw_fail(sdw_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
sdw_status sdw_failv(sdw_status code, const char *fmt, va_list ap);

/* Prefixes the current message with "prefix: " (adds context on the way up). */
void sdw_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* This thread's last message; "" when none. Valid until the next sdw_fail. */
const char *sdw_last_error(void);
void sdw_clear_error(void);

/* "ok", "invalid argument", "i/o error", ... */
const char *sdw_status_name(sdw_status code);

/* Propagate a non-OK status. */
#define SDW_TRY(expr)                                                                              \
  do {                                                                                             \
    sdw_status sdw_try_status_ = (expr);                                                           \
    if (sdw_try_status_ != SDW_OK) return sdw_try_status_;                                         \
  } while (0)

/* Always-on assertion for programming errors (never for bad input). */
#define SDW_ASSERT(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) sdw_assert_fail(#cond, __FILE__, __LINE__);                                       \
  } while (0)
#define SDW_ASSERT_MSG(cond, ...)                                                                  \
  do {                                                                                             \
    if (!(cond)) sdw_assert_failf(#cond, __FILE__, __LINE__, __VA_ARGS__);                         \
  } while (0)

#ifdef __cplusplus
#define SDW_NORETURN [[noreturn]]
#else
#define SDW_NORETURN _Noreturn
#endif
SDW_NORETURN void sdw_assert_fail(const char *expr, const char *file, int line);
SDW_NORETURN void sdw_assert_failf(const char *expr, const char *file, int line, const char *fmt,
                                   ...) __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
