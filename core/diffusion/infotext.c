#include "core/diffusion/infotext.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct text_sink {
  char *buf;
  size_t size, length;
} text_sink;

static void sink_printf(text_sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sink_printf(text_sink *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = s->length < s->size ? s->size - s->length : 0;
  int n = vsnprintf(room ? s->buf + s->length : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0) s->length += (size_t)n;
}

static void sink_char(text_sink *s, char c) {
  if (s->length + 1 < s->size) {
    s->buf[s->length] = c;
    s->buf[s->length + 1] = '\0';
  }
  s->length++;
}

static bool needs_quotes(const char *v) { return strpbrk(v, ",:\n") != NULL; }

/* json.dumps(v) with ensure_ascii=False semantics for the characters that
 * matter: quotes, backslashes and control characters are escaped. */
static void sink_quoted(text_sink *s, const char *v) {
  sink_char(s, '"');
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    switch (*p) {
    case '"': sink_printf(s, "\\\""); break;
    case '\\': sink_printf(s, "\\\\"); break;
    case '\n': sink_printf(s, "\\n"); break;
    case '\r': sink_printf(s, "\\r"); break;
    case '\t': sink_printf(s, "\\t"); break;
    default:
      if (*p < 0x20)
        sink_printf(s, "\\u%04x", *p);
      else
        sink_char(s, (char)*p);
    }
  }
  sink_char(s, '"');
}

static void sink_param(text_sink *s, bool *first, const char *key, const char *value) {
  sink_printf(s, "%s%s: ", *first ? "" : ", ", key);
  *first = false;
  if (needs_quotes(value))
    sink_quoted(s, value);
  else
    sink_printf(s, "%s", value);
}

/* Shortest decimal that reads back as the same double, like Python's repr
 * for the values that occur here (7.5, 7, 0.0). */
static void format_number(double v, char *out, size_t size) {
  if (v == (double)(long long)v && v > -1e15 && v < 1e15) {
    snprintf(out, size, "%lld", (long long)v);
    return;
  }
  for (int digits = 1; digits <= 17; digits++) {
    snprintf(out, size, "%.*g", digits, v);
    double back;
    if (sscanf(out, "%lf", &back) == 1 && back == v) return;
  }
}

size_t sdw_infotext_format(const sdw_infotext *info, char *buf, size_t size) {
  text_sink s = {buf, size, 0};
  if (size) buf[0] = '\0';
  sink_printf(&s, "%s", info->prompt ? info->prompt : "");
  if (info->negative && info->negative[0]) sink_printf(&s, "\nNegative prompt: %s", info->negative);
  sink_char(&s, '\n');
  bool first = true;
  char value[64];
  snprintf(value, sizeof value, "%d", info->steps);
  sink_param(&s, &first, "Steps", value);
  sink_param(&s, &first, "Sampler", info->sampler ? info->sampler : "DDIM");
  if (info->schedule_type) sink_param(&s, &first, "Schedule type", info->schedule_type);
  format_number(info->cfg_scale, value, sizeof value);
  sink_param(&s, &first, "CFG scale", value);
  snprintf(value, sizeof value, "%llu", (unsigned long long)info->seed);
  sink_param(&s, &first, "Seed", value);
  snprintf(value, sizeof value, "%dx%d", info->width, info->height);
  sink_param(&s, &first, "Size", value);
  if (info->model_hash) sink_param(&s, &first, "Model hash", info->model_hash);
  if (info->model) sink_param(&s, &first, "Model", info->model);
  if (info->eta != 0 && info->sampler && strcmp(info->sampler, "DDIM") == 0) {
    format_number(info->eta, value, sizeof value);
    sink_param(&s, &first, "Eta DDIM", value);
  }
  if (info->rng) sink_param(&s, &first, "RNG", info->rng);
  if (info->version) sink_param(&s, &first, "Version", info->version);
  return s.length;
}
