/* Key bindings (see keys.h). */
#include "tui/keys.h"

const sdw_tui_key_help sdw_tui_key_table[] = {
    {"p", "pause / resume the run"},
    {"c", "write a checkpoint now"},
    {"s", "sample: prompt, negative, steps, CFG, seed, EMA"},
    {"Tab 1-5", "switch panel (Pipeline Curves Devices Preview Log)"},
    {"arrows PgUp/PgDn", "scroll / select"},
    {"Enter", "pipeline: the selected stage's report"},
    {"Left Right", "pipeline report: previous / next sample image"},
    {"r", "pipeline: run the selected stage"},
    {"l", "curves: log scale on / off"},
    {"+ -", "curves: more / less smoothing"},
    {"z", "curves: zoom to the last N steps"},
    {"^L", "redraw the screen"},
    {"q", "detach (the run goes on)"},
    {"Q", "stop the run (asks first)"},
    {"?", "this help"},
    {0, 0},
};

sdw_tui_action sdw_tui_key_action(int key) {
  switch (key) {
  case 'p':
  case ' ': return SDW_ACT_PAUSE_TOGGLE;
  case 'c': return SDW_ACT_CHECKPOINT;
  case 's': return SDW_ACT_SAMPLE;
  case '\t':
  case SDW_KEY_TAB: return SDW_ACT_NEXT_PANEL;
  case SDW_KEY_BTAB: return SDW_ACT_PREV_PANEL;
  case '1': return SDW_ACT_PANEL_1;
  case '2': return SDW_ACT_PANEL_2;
  case '3': return SDW_ACT_PANEL_3;
  case '4': return SDW_ACT_PANEL_4;
  case '5': return SDW_ACT_PANEL_5;
  case SDW_KEY_UP:
  case 'k': return SDW_ACT_UP;
  case SDW_KEY_DOWN:
  case 'j': return SDW_ACT_DOWN;
  case SDW_KEY_LEFT: return SDW_ACT_LEFT;
  case SDW_KEY_RIGHT: return SDW_ACT_RIGHT;
  case SDW_KEY_PGUP: return SDW_ACT_PGUP;
  case SDW_KEY_PGDN: return SDW_ACT_PGDN;
  case SDW_KEY_HOME:
  case 'g': return SDW_ACT_HOME;
  case SDW_KEY_END:
  case 'G': return SDW_ACT_END;
  case '\n':
  case '\r':
  case SDW_KEY_ENTER: return SDW_ACT_SELECT;
  case 'r': return SDW_ACT_RUN_STAGE;
  case 'l': return SDW_ACT_LOG_SCALE;
  case '+':
  case '=': return SDW_ACT_SMOOTH_MORE;
  case '-':
  case '_': return SDW_ACT_SMOOTH_LESS;
  case 'z': return SDW_ACT_ZOOM;
  case '?':
  case 'h':
  case SDW_KEY_F1: return SDW_ACT_HELP;
  case 'q': return SDW_ACT_DETACH;
  case 'Q': return SDW_ACT_STOP;
  case 12: return SDW_ACT_REDRAW; /* ^L */
  case SDW_KEY_RESIZE: return SDW_ACT_RESIZE;
  case SDW_KEY_ESC: return SDW_ACT_BACK;
  default: return SDW_ACT_NONE;
  }
}
