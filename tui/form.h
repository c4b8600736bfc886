/* The sample dialog (`s`): a one-line editor per field and the key handling
 * between fields. Pure state; the app draws it (panel_overlay.c) and sends
 * the request it builds. Tested headless (tests/test_tui_form.c).
 *
 * Keys: characters edit the field; Left/Right/Home/End move, Backspace/Delete
 * erase, ^U clears the field; Tab/Down go to the next field, shift-Tab/Up
 * to the previous one, except in the prompt field where Up/Down walk the
 * prompt history; Space on the EMA field toggles it; Enter sends; Esc
 * cancels.
 */
#ifndef SDW_TUI_FORM_H
#define SDW_TUI_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

enum { SDW_LINE_CAP = 1024, SDW_HISTORY_MAX = 64 };

typedef struct sdw_tui_line {
  char text[SDW_LINE_CAP]; /* UTF-8, NUL-terminated */
  size_t cursor;           /* byte offset, on a character boundary */
} sdw_tui_line;

void sdw_tui_line_set(sdw_tui_line *l, const char *text); /* cursor at the end */
/* Applies one key (SDW_KEY_* or a code point); returns true when it was an
 * editing key (consumed). */
bool sdw_tui_line_key(sdw_tui_line *l, int key);
/* Columns before the cursor (for placing it). */
int sdw_tui_line_cursor_col(const sdw_tui_line *l);

typedef enum sdw_sample_field {
  SDW_FIELD_PROMPT = 0,
  SDW_FIELD_NEGATIVE,
  SDW_FIELD_STEPS,
  SDW_FIELD_CFG,
  SDW_FIELD_SEED,
  SDW_FIELD_EMA,
  SDW_FIELD_COUNT
} sdw_sample_field;

typedef struct sdw_tui_sample_form {
  sdw_tui_line field[SDW_FIELD_EMA]; /* the text fields */
  bool ema;
  int focus;                      /* sdw_sample_field */
  char *history[SDW_HISTORY_MAX]; /* oldest first, owned */
  int history_count;
  int history_pos;          /* == history_count: the line being typed */
  char draft[SDW_LINE_CAP]; /* the typed line while walking the history */
  char error[128];          /* why the last Enter was refused */
} sdw_tui_sample_form;

typedef enum sdw_form_result {
  SDW_FORM_CONTINUE = 0,
  SDW_FORM_SUBMIT,
  SDW_FORM_CANCEL
} sdw_form_result;

/* Defaults: steps 20, CFG 7.5, seed empty (random), EMA on. Keeps history. */
void sdw_tui_sample_form_reset(sdw_tui_sample_form *f);
void sdw_tui_sample_form_free(sdw_tui_sample_form *f); /* the history */
sdw_form_result sdw_tui_sample_form_key(sdw_tui_sample_form *f, int key);
/* The "sample" request for the control socket ({"cmd":"sample","prompt":..}),
 * owned by the caller; NULL with f->error set when a field is invalid (an
 * empty prompt, steps outside 1..1000, CFG not a number in 0..50, a seed
 * that is not a non-negative integer). On success the prompt joins the
 * history. */
cJSON *sdw_tui_sample_form_request(sdw_tui_sample_form *f);
const char *sdw_tui_sample_field_label(sdw_sample_field field);

#endif
