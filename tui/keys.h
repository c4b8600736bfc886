/* Keys of the workbench: terminal key codes (translated by the app from
 * curses into SDW_KEY_*) to actions. Pure; the table is also what `?` and
 * sdw-tui(1) show. */
#ifndef SDW_TUI_KEYS_H
#define SDW_TUI_KEYS_H

/* Key codes: Unicode code points for characters, these above 0x110000 for
 * the rest. */
enum {
  SDW_KEY_UP = 0x110000,
  SDW_KEY_DOWN,
  SDW_KEY_LEFT,
  SDW_KEY_RIGHT,
  SDW_KEY_PGUP,
  SDW_KEY_PGDN,
  SDW_KEY_HOME,
  SDW_KEY_END,
  SDW_KEY_BACKSPACE,
  SDW_KEY_DELETE,
  SDW_KEY_ENTER,
  SDW_KEY_TAB,
  SDW_KEY_BTAB, /* shift-Tab */
  SDW_KEY_ESC,
  SDW_KEY_RESIZE,
  SDW_KEY_MOUSE,
  SDW_KEY_F1,
};

typedef enum sdw_tui_action {
  SDW_ACT_NONE = 0,
  SDW_ACT_PAUSE_TOGGLE,
  SDW_ACT_CHECKPOINT,
  SDW_ACT_SAMPLE,
  SDW_ACT_NEXT_PANEL,
  SDW_ACT_PREV_PANEL,
  SDW_ACT_PANEL_1, /* .. SDW_ACT_PANEL_1 + 4 */
  SDW_ACT_PANEL_2,
  SDW_ACT_PANEL_3,
  SDW_ACT_PANEL_4,
  SDW_ACT_PANEL_5,
  SDW_ACT_UP,
  SDW_ACT_DOWN,
  SDW_ACT_LEFT,
  SDW_ACT_RIGHT,
  SDW_ACT_PGUP,
  SDW_ACT_PGDN,
  SDW_ACT_HOME,
  SDW_ACT_END,
  SDW_ACT_SELECT, /* Enter: a stage's report */
  SDW_ACT_RUN_STAGE,
  SDW_ACT_LOG_SCALE,
  SDW_ACT_SMOOTH_MORE,
  SDW_ACT_SMOOTH_LESS,
  SDW_ACT_ZOOM,
  SDW_ACT_HELP,
  SDW_ACT_DETACH,
  SDW_ACT_STOP,
  SDW_ACT_REDRAW,
  SDW_ACT_RESIZE,
  SDW_ACT_BACK, /* Esc: close a report or overlay */
} sdw_tui_action;

/* The action of key in the main view (no dialog open). */
sdw_tui_action sdw_tui_key_action(int key);

/* The key table for help: rows of {keys, what they do}, NULL-terminated. */
typedef struct sdw_tui_key_help {
  const char *keys;
  const char *what;
} sdw_tui_key_help;
extern const sdw_tui_key_help sdw_tui_key_table[];

#endif
