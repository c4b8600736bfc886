/* Colours of the workbench: every cell has a role (what it shows); the theme
 * maps roles to colours and attributes. The app turns a theme into curses
 * colour pairs; nothing here touches the terminal.
 *
 * Themes: "default" (dark background), "light", "mono" (attributes only).
 * NO_COLOR set and non-empty (https://no-color.org) forces "mono"; so does a
 * terminal without colours (the app asks curses).
 */
#ifndef SDW_TUI_THEME_H
#define SDW_TUI_THEME_H

#include <stdbool.h>
#include <stddef.h>

typedef enum sdw_tui_role {
  SDW_ROLE_NORMAL = 0,
  SDW_ROLE_DIM,
  SDW_ROLE_TITLE,
  SDW_ROLE_BORDER,
  SDW_ROLE_BORDER_FOCUS,
  SDW_ROLE_OK,
  SDW_ROLE_WARN,
  SDW_ROLE_ERROR,
  SDW_ROLE_ACCENT,
  SDW_ROLE_SELECTED,
  SDW_ROLE_BAR_DONE,
  SDW_ROLE_BAR_TODO,
  SDW_ROLE_CURVE_RAW,
  SDW_ROLE_CURVE_SMOOTH,
  SDW_ROLE_CURVE_OTHER,
  SDW_ROLE_STATUS,
  SDW_ROLE_KEY,
  SDW_ROLE_TAB_ACTIVE,
  SDW_ROLE_COUNT
} sdw_tui_role;

/* Colour numbers follow the 8 ANSI colours (0 black .. 7 white); -1 is the
 * terminal's default. Attribute bits: */
enum { SDW_ATTR_BOLD = 1, SDW_ATTR_DIM = 2, SDW_ATTR_REVERSE = 4, SDW_ATTR_UNDERLINE = 8 };

typedef struct sdw_tui_style {
  short fg, bg;
  unsigned attrs;
} sdw_tui_style;

typedef struct sdw_tui_theme {
  char name[16];
  bool color; /* false: ignore fg/bg, attributes only */
  sdw_tui_style role[SDW_ROLE_COUNT];
} sdw_tui_theme;

/* The named theme (NULL or unknown: "default"); no_color forces "mono".
 * Returns false for an unknown name (the default theme is still set). */
bool sdw_tui_theme_load(const char *name, bool no_color, sdw_tui_theme *out);
/* The value of "theme = NAME" in the workbench's settings file path (an INI
 * file; sections and other keys are ignored, the last theme line wins) into
 * out; "" when the file or the key is absent. */
void sdw_tui_theme_from_file(const char *path, char *out, size_t cap);
/* The same for ${XDG_CONFIG_HOME:-$HOME/.config}/sdw/tui.ini. */
void sdw_tui_theme_from_config(char *out, size_t cap);
/* True when the NO_COLOR environment variable is set to a non-empty value. */
bool sdw_tui_no_color_env(void);

#endif
