#include "core/base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <time.h>

static sdw_log_level log_level = SDW_LOG_INFO;
static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void sdw_log_set_level(sdw_log_level level) { log_level = level; }
sdw_log_level sdw_log_get_level(void) { return log_level; }
void sdw_log_set_file(FILE *file) { log_file = file; }

void sdw_log(sdw_log_level level, const char *fmt, ...) {
  static const char *const tags[] = {"debug", "info", "warning", "error"};
  if (level < log_level || level >= SDW_LOG_QUIET) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&log_lock);
  if (level >= SDW_LOG_WARN)
    fprintf(stderr, "sdw: %s: %s\n", tags[level], line);
  else
    fprintf(stderr, "sdw: %s\n", line);
  if (log_file) {
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(log_file, "%s %s %s\n", stamp, tags[level], line);
    fflush(log_file);
  }
  pthread_mutex_unlock(&log_lock);
}
