/* Workbench themes (see theme.h). */
#include "tui/theme.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BLACK = 0, RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN, WHITE, DEF = -1 };

static void set(sdw_tui_theme *t, sdw_tui_role r, short fg, short bg, unsigned attrs) {
  t->role[r] = (sdw_tui_style){fg, bg, attrs};
}

bool sdw_tui_no_color_env(void) {
  const char *v = getenv("NO_COLOR");
  return v && *v;
}

bool sdw_tui_theme_load(const char *name, bool no_color, sdw_tui_theme *out) {
  memset(out, 0, sizeof *out);
  bool known = !name || !*name || strcmp(name, "default") == 0 || strcmp(name, "light") == 0 ||
               strcmp(name, "mono") == 0;
  const char *n = known && name && *name ? name : "default";
  if (no_color) n = "mono";
  snprintf(out->name, sizeof out->name, "%s", n);
  for (int r = 0; r < SDW_ROLE_COUNT; r++)
    out->role[r] = (sdw_tui_style){DEF, DEF, 0};
  if (strcmp(n, "mono") == 0) {
    out->color = false;
    set(out, SDW_ROLE_DIM, DEF, DEF, SDW_ATTR_DIM);
    set(out, SDW_ROLE_TITLE, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_BORDER_FOCUS, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_WARN, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_ERROR, DEF, DEF, SDW_ATTR_BOLD | SDW_ATTR_UNDERLINE);
    set(out, SDW_ROLE_ACCENT, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_SELECTED, DEF, DEF, SDW_ATTR_REVERSE);
    set(out, SDW_ROLE_BAR_DONE, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_BAR_TODO, DEF, DEF, SDW_ATTR_DIM);
    set(out, SDW_ROLE_CURVE_RAW, DEF, DEF, SDW_ATTR_DIM);
    set(out, SDW_ROLE_CURVE_SMOOTH, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_STATUS, DEF, DEF, SDW_ATTR_REVERSE);
    set(out, SDW_ROLE_KEY, DEF, DEF, SDW_ATTR_BOLD);
    set(out, SDW_ROLE_TAB_ACTIVE, DEF, DEF, SDW_ATTR_REVERSE | SDW_ATTR_BOLD);
    return known;
  }
  out->color = true;
  bool light = strcmp(n, "light") == 0;
  short fg_text = light ? BLACK : DEF, accent = light ? BLUE : CYAN;
  set(out, SDW_ROLE_NORMAL, fg_text, DEF, 0);
  set(out, SDW_ROLE_DIM, light ? BLACK : WHITE, DEF, SDW_ATTR_DIM);
  set(out, SDW_ROLE_TITLE, accent, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_BORDER, light ? BLACK : BLUE, DEF, light ? SDW_ATTR_DIM : 0);
  set(out, SDW_ROLE_BORDER_FOCUS, accent, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_OK, GREEN, DEF, 0);
  set(out, SDW_ROLE_WARN, light ? MAGENTA : YELLOW, DEF, 0);
  set(out, SDW_ROLE_ERROR, RED, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_ACCENT, accent, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_SELECTED, light ? WHITE : BLACK, accent, 0);
  set(out, SDW_ROLE_BAR_DONE, GREEN, DEF, 0);
  set(out, SDW_ROLE_BAR_TODO, light ? BLACK : WHITE, DEF, SDW_ATTR_DIM);
  set(out, SDW_ROLE_CURVE_RAW, light ? BLUE : BLUE, DEF, light ? 0 : SDW_ATTR_BOLD);
  set(out, SDW_ROLE_CURVE_SMOOTH, light ? RED : YELLOW, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_CURVE_OTHER, light ? MAGENTA : GREEN, DEF, 0);
  set(out, SDW_ROLE_STATUS, light ? WHITE : BLACK, light ? BLUE : CYAN, 0);
  set(out, SDW_ROLE_KEY, light ? MAGENTA : YELLOW, DEF, SDW_ATTR_BOLD);
  set(out, SDW_ROLE_TAB_ACTIVE, light ? WHITE : BLACK, accent, SDW_ATTR_BOLD);
  return known;
}

void sdw_tui_theme_from_file(const char *path, char *out, size_t cap) {
  out[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    char key[64], value[64];
    if (sscanf(line, " %63[a-z_] = %63s", key, value) == 2 && strcmp(key, "theme") == 0)
      snprintf(out, cap, "%s", value);
  }
  fclose(f);
}

void sdw_tui_theme_from_config(char *out, size_t cap) {
  char path[1024];
  const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
  out[0] = 0;
  if (xdg && *xdg)
    snprintf(path, sizeof path, "%.900s/sdw/tui.ini", xdg);
  else if (home && *home)
    snprintf(path, sizeof path, "%.900s/.config/sdw/tui.ini", home);
  else
    return;
  sdw_tui_theme_from_file(path, out, cap);
}
