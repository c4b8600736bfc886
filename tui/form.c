/* The sample dialog's state machine (see form.h). */
#include "tui/form.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/grid.h"
#include "tui/keys.h"

void sdw_tui_line_set(sdw_tui_line *l, const char *text) {
  snprintf(l->text, sizeof l->text, "%s", text ? text : "");
  /* A cut in the middle of a UTF-8 sequence drops the partial character. */
  size_t n = strlen(l->text);
  size_t start = n;
  while (start > 0 && ((unsigned char)l->text[start - 1] & 0xC0) == 0x80)
    start--;
  if (start > 0 && start < n) {
    unsigned char lead = (unsigned char)l->text[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (n - (start - 1) < need) l->text[start - 1] = 0;
  }
  l->cursor = strlen(l->text);
}

static size_t prev_boundary(const char *s, size_t i) {
  if (i == 0) return 0;
  i--;
  while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
    i--;
  return i;
}

static size_t next_boundary(const char *s, size_t i) {
  if (!s[i]) return i;
  i++;
  while (s[i] && ((unsigned char)s[i] & 0xC0) == 0x80)
    i++;
  return i;
}

bool sdw_tui_line_key(sdw_tui_line *l, int key) {
  size_t n = strlen(l->text);
  switch (key) {
  case SDW_KEY_LEFT: l->cursor = prev_boundary(l->text, l->cursor); return true;
  case SDW_KEY_RIGHT: l->cursor = next_boundary(l->text, l->cursor); return true;
  case SDW_KEY_HOME:
  case 1: l->cursor = 0; return true; /* ^A */
  case SDW_KEY_END:
  case 5: l->cursor = n; return true;                  /* ^E */
  case 21: l->text[0] = 0, l->cursor = 0; return true; /* ^U */
  case SDW_KEY_BACKSPACE:
  case 8:
  case 127: {
    size_t p = prev_boundary(l->text, l->cursor);
    memmove(l->text + p, l->text + l->cursor, n - l->cursor + 1);
    l->cursor = p;
    return true;
  }
  case SDW_KEY_DELETE:
  case 4: { /* ^D */
    size_t q = next_boundary(l->text, l->cursor);
    memmove(l->text + l->cursor, l->text + q, n - q + 1);
    return true;
  }
  default: break;
  }
  if (key < 0x20 || key == 0x7F || key >= 0x110000 || (key >= 0xD800 && key <= 0xDFFF))
    return false;
  char enc[5];
  int len = sdw_tui_utf8_encode((uint32_t)key, enc);
  if (n + (size_t)len >= sizeof l->text) return true; /* full: the key is eaten */
  memmove(l->text + l->cursor + len, l->text + l->cursor, n - l->cursor + 1);
  memcpy(l->text + l->cursor, enc, (size_t)len);
  l->cursor += (size_t)len;
  return true;
}

int sdw_tui_line_cursor_col(const sdw_tui_line *l) {
  char head[SDW_LINE_CAP];
  memcpy(head, l->text, l->cursor);
  head[l->cursor] = 0;
  return sdw_tui_text_width(head);
}

const char *sdw_tui_sample_field_label(sdw_sample_field field) {
  static const char *const labels[SDW_FIELD_COUNT] = {"Prompt", "Negative", "Steps",
                                                      "CFG",    "Seed",     "EMA"};
  return (unsigned)field < SDW_FIELD_COUNT ? labels[field] : "?";
}

void sdw_tui_sample_form_reset(sdw_tui_sample_form *f) {
  for (int i = 0; i < SDW_FIELD_EMA; i++)
    sdw_tui_line_set(&f->field[i], "");
  sdw_tui_line_set(&f->field[SDW_FIELD_STEPS], "20");
  sdw_tui_line_set(&f->field[SDW_FIELD_CFG], "7.5");
  f->ema = true;
  f->focus = SDW_FIELD_PROMPT;
  f->history_pos = f->history_count;
  f->draft[0] = 0;
  f->error[0] = 0;
}

void sdw_tui_sample_form_free(sdw_tui_sample_form *f) {
  for (int i = 0; i < f->history_count; i++)
    free(f->history[i]);
  f->history_count = 0;
  f->history_pos = 0;
}

static void history_walk(sdw_tui_sample_form *f, int dir) {
  int pos = f->history_pos + dir;
  if (pos < 0 || pos > f->history_count) return;
  if (f->history_pos == f->history_count)
    snprintf(f->draft, sizeof f->draft, "%s", f->field[SDW_FIELD_PROMPT].text);
  f->history_pos = pos;
  sdw_tui_line_set(&f->field[SDW_FIELD_PROMPT],
                   pos == f->history_count ? f->draft : f->history[pos]);
}

sdw_form_result sdw_tui_sample_form_key(sdw_tui_sample_form *f, int key) {
  switch (key) {
  case SDW_KEY_ESC: return SDW_FORM_CANCEL;
  case '\n':
  case '\r':
  case SDW_KEY_ENTER: return SDW_FORM_SUBMIT;
  case '\t':
  case SDW_KEY_TAB: f->focus = (f->focus + 1) % SDW_FIELD_COUNT; return SDW_FORM_CONTINUE;
  case SDW_KEY_BTAB:
    f->focus = (f->focus + SDW_FIELD_COUNT - 1) % SDW_FIELD_COUNT;
    return SDW_FORM_CONTINUE;
  case SDW_KEY_UP:
  case SDW_KEY_DOWN:
    if (f->focus == SDW_FIELD_PROMPT && f->history_count > 0) {
      history_walk(f, key == SDW_KEY_UP ? -1 : 1);
    } else {
      int d = key == SDW_KEY_UP ? SDW_FIELD_COUNT - 1 : 1;
      f->focus = (f->focus + d) % SDW_FIELD_COUNT;
    }
    return SDW_FORM_CONTINUE;
  default: break;
  }
  if (f->focus == SDW_FIELD_EMA) {
    if (key == ' ' || key == SDW_KEY_LEFT || key == SDW_KEY_RIGHT)
      f->ema = !f->ema;
    else if (key == 'y' || key == '1')
      f->ema = true;
    else if (key == 'n' || key == '0')
      f->ema = false;
    return SDW_FORM_CONTINUE;
  }
  sdw_tui_line_key(&f->field[f->focus], key);
  return SDW_FORM_CONTINUE;
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

static void history_add(sdw_tui_sample_form *f, const char *prompt) {
  if (f->history_count > 0 && strcmp(f->history[f->history_count - 1], prompt) == 0) return;
  char *copy = strdup(prompt);
  if (!copy) return;
  if (f->history_count == SDW_HISTORY_MAX) {
    free(f->history[0]);
    memmove(f->history, f->history + 1, (SDW_HISTORY_MAX - 1) * sizeof *f->history);
    f->history_count--;
  }
  f->history[f->history_count++] = copy;
  f->history_pos = f->history_count;
}

cJSON *sdw_tui_sample_form_request(sdw_tui_sample_form *f) {
  const char *prompt = f->field[SDW_FIELD_PROMPT].text;
  long steps, seed = -1;
  f->error[0] = 0;
  if (!*prompt) {
    snprintf(f->error, sizeof f->error, "type a prompt first");
    f->focus = SDW_FIELD_PROMPT;
    return NULL;
  }
  if (!parse_long(f->field[SDW_FIELD_STEPS].text, 1, 1000, &steps)) {
    snprintf(f->error, sizeof f->error, "steps must be an integer from 1 to 1000");
    f->focus = SDW_FIELD_STEPS;
    return NULL;
  }
  char *end;
  const char *cfg_text = f->field[SDW_FIELD_CFG].text;
  double cfg = strtod(cfg_text, &end);
  if (end == cfg_text || *end || !isfinite(cfg) || cfg < 0 || cfg > 50) {
    snprintf(f->error, sizeof f->error, "CFG must be a number from 0 to 50");
    f->focus = SDW_FIELD_CFG;
    return NULL;
  }
  const char *seed_text = f->field[SDW_FIELD_SEED].text;
  if (*seed_text && !parse_long(seed_text, 0, 1L << 53, &seed)) {
    snprintf(f->error, sizeof f->error, "seed must be empty (random) or a non-negative integer");
    f->focus = SDW_FIELD_SEED;
    return NULL;
  }
  cJSON *req = cJSON_CreateObject();
  if (!req) return NULL;
  cJSON_AddStringToObject(req, "cmd", "sample");
  cJSON_AddStringToObject(req, "prompt", prompt);
  if (f->field[SDW_FIELD_NEGATIVE].text[0])
    cJSON_AddStringToObject(req, "negative", f->field[SDW_FIELD_NEGATIVE].text);
  cJSON_AddNumberToObject(req, "steps", (double)steps);
  cJSON_AddNumberToObject(req, "cfg", cfg);
  if (seed >= 0) cJSON_AddNumberToObject(req, "seed", (double)seed);
  cJSON_AddBoolToObject(req, "ema", f->ema);
  history_add(f, prompt);
  return req;
}
