/* Logging: leveled, to stderr (and optionally a file), one line per call. */
#ifndef SDW_BASE_LOG_H
#define SDW_BASE_LOG_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sdw_log_level {
  SDW_LOG_DEBUG = 0,
  SDW_LOG_INFO,
  SDW_LOG_WARN,
  SDW_LOG_ERROR,
  SDW_LOG_QUIET
} sdw_log_level;

void sdw_log_set_level(sdw_log_level level);
sdw_log_level sdw_log_get_level(void);
/* Also append every line to file (not owned; NULL stops). */
void sdw_log_set_file(FILE *file);
void sdw_log(sdw_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SDW_DEBUG(...) sdw_log(SDW_LOG_DEBUG, __VA_ARGS__)
#define SDW_INFO(...)  sdw_log(SDW_LOG_INFO, __VA_ARGS__)
#define SDW_WARN(...)  sdw_log(SDW_LOG_WARN, __VA_ARGS__)
#define SDW_ERROR(...) sdw_log(SDW_LOG_ERROR, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
