/* Python json.dumps(indent=4) text: see pipeline/pyjson.h. */
#include "pipeline/pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sdw_pyjson_init(sdw_pyjson *j) { memset(j, 0, sizeof *j); }

void sdw_pyjson_free(sdw_pyjson *j) {
  free(j->data);
  memset(j, 0, sizeof *j);
}

static void put(sdw_pyjson *j, const char *s, size_t n) {
  if (j->failed) return;
  if (j->size + n + 1 > j->cap) {
    size_t cap = j->cap ? j->cap : 256;
    while (cap < j->size + n + 1)
      cap *= 2;
    char *p = realloc(j->data, cap);
    if (!p) {
      j->failed = true;
      return;
    }
    j->data = p;
    j->cap = cap;
  }
  memcpy(j->data + j->size, s, n);
  j->size += n;
  j->data[j->size] = 0;
}

static void puts_(sdw_pyjson *j, const char *s) { put(j, s, strlen(s)); }

static void indent(sdw_pyjson *j, int depth) {
  static const char spaces[] = "                                ";
  for (int i = 0; i < depth; i++)
    put(j, spaces, 4);
}

void sdw_pyjson_begin_object(sdw_pyjson *j) {
  put(j, "{", 1);
  if (j->depth < SDW_PYJSON_MAX_DEPTH) j->items[j->depth] = 0;
  j->depth++;
}

void sdw_pyjson_end_object(sdw_pyjson *j) {
  j->depth--;
  const int d = j->depth;
  if (d < SDW_PYJSON_MAX_DEPTH && j->items[d] > 0) {
    put(j, "\n", 1);
    indent(j, d);
  }
  put(j, "}", 1);
}

void sdw_pyjson_key(sdw_pyjson *j, const char *key) {
  const int d = j->depth - 1;
  if (d >= 0 && d < SDW_PYJSON_MAX_DEPTH) {
    put(j, j->items[d] ? ",\n" : "\n", j->items[d] ? 2 : 1);
    j->items[d]++;
  }
  indent(j, j->depth);
  sdw_pyjson_cstring(j, key);
  put(j, ": ", 2);
}

/* Decodes one UTF-8 sequence at s (n bytes left); *cp gets the code point
 * (U+FFFD for an invalid or overlong sequence, which consumes one byte). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  if (len > n) {
    *cp = 0xFFFD;
    return 1;
  }
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
    *cp = 0xFFFD;
    return 1;
  }
  *cp = v;
  return len;
}

void sdw_pyjson_string(sdw_pyjson *j, const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  put(j, "\"", 1);
  size_t i = 0;
  while (i < len) {
    /* copy a run of plain printable ASCII at once */
    size_t k = i;
    while (k < len && s[k] >= 0x20 && s[k] < 0x7F && s[k] != '"' && s[k] != '\\')
      k++;
    if (k > i) {
      put(j, str + i, k - i);
      i = k;
      continue;
    }
    uint32_t cp;
    i += utf8_next(s + i, len - i, &cp);
    char buf[16];
    switch (cp) {
    case '"': puts_(j, "\\\""); continue;
    case '\\': puts_(j, "\\\\"); continue;
    case '\n': puts_(j, "\\n"); continue;
    case '\r': puts_(j, "\\r"); continue;
    case '\t': puts_(j, "\\t"); continue;
    case '\b': puts_(j, "\\b"); continue;
    case '\f': puts_(j, "\\f"); continue;
    default: break;
    }
    if (cp >= 0x10000) {
      uint32_t v = cp - 0x10000;
      snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
    } else {
      snprintf(buf, sizeof buf, "\\u%04x", cp);
    }
    puts_(j, buf);
  }
  put(j, "\"", 1);
}

void sdw_pyjson_cstring(sdw_pyjson *j, const char *s) {
  if (!s)
    sdw_pyjson_null(j);
  else
    sdw_pyjson_string(j, s, strlen(s));
}

void sdw_pyjson_null(sdw_pyjson *j) { put(j, "null", 4); }

void sdw_pyjson_int(sdw_pyjson *j, int64_t v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%lld", (long long)v);
  puts_(j, buf);
}

void sdw_py_float_repr(double v, char *out) {
  if (isnan(v)) {
    strcpy(out, "NaN");
    return;
  }
  if (isinf(v)) {
    strcpy(out, v > 0 ? "Infinity" : "-Infinity");
    return;
  }
  if (v == 0) {
    strcpy(out, signbit(v) ? "-0.0" : "0.0");
    return;
  }
  /* the shortest %.Ne that reads back exactly */
  char e[40];
  int prec;
  for (prec = 0; prec < 17; prec++) {
    snprintf(e, sizeof e, "%.*e", prec, v);
    if (strtod(e, NULL) == v) break;
  }
  /* e is "-d.ddde+XX": split into sign, digits and exponent */
  const char *p = e;
  bool neg = false;
  if (*p == '-') {
    neg = true;
    p++;
  }
  char digits[24];
  int nd = 0;
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[nd++] = *p;
  digits[nd] = 0;
  int exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    digits[--nd] = 0;
  char *o = out;
  if (neg) *o++ = '-';
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) {
      *o++ = '0';
      *o++ = '.';
      for (int i = 0; i < -exp10 - 1; i++)
        *o++ = '0';
      memcpy(o, digits, (size_t)nd);
      o += nd;
    } else {
      for (int i = 0; i <= exp10; i++)
        *o++ = i < nd ? digits[i] : '0';
      *o++ = '.';
      if (nd > exp10 + 1) {
        memcpy(o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
        o += nd - exp10 - 1;
      } else {
        *o++ = '0';
      }
    }
    *o = 0;
  } else {
    *o++ = digits[0];
    if (nd > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)(nd - 1));
      o += nd - 1;
    }
    sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
  }
}

void sdw_pyjson_float(sdw_pyjson *j, double v) {
  char buf[40];
  sdw_py_float_repr(v, buf);
  puts_(j, buf);
}
