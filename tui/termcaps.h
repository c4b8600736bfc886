/* Terminal capabilities for the workbench's image preview: sixel support
 * (DA1), the cell size in pixels (XTWINOPS) and the colour depth (env).
 *
 * Probing writes three queries to the terminal and reads the replies:
 *
 *   CSI 16 t  ->  CSI 6 ; cell_h ; cell_w t     (cell size in pixels)
 *   CSI 14 t  ->  CSI 4 ; win_h ; win_w t       (text area in pixels)
 *   CSI c     ->  CSI ? 62 ; 4 ; 22 c          (DA1; attribute 4 = sixel)
 *
 * DA1 goes last: every VT100-compatible terminal answers it, and replies come
 * back in order, so its arrival means the terminal has said all it will (a
 * terminal that ignores XTWINOPS simply sends no `t` reply). The replies share
 * the input stream with the user's keystrokes: the parser consumes exactly
 * the reply sequences and hands every other byte back (arrow keys, typed
 * text, an unrelated escape sequence), in order, so the app can replay them
 * (ungetch) and nothing typed during the probe is lost.
 *
 * Nothing here includes curses. Probe BEFORE initscr() (or between endwin()
 * and refresh()): the probe reads the tty directly and puts it in raw mode
 * for the duration, restoring the previous termios afterwards.
 */
#ifndef SDW_TUI_TERMCAPS_H
#define SDW_TUI_TERMCAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How colour may be drawn (from the environment; see sdw_termcaps_from_env). */
typedef enum sdw_color_mode {
  SDW_COLOR_NONE = 0, /* NO_COLOR set, or TERM=dumb: no colour at all */
  SDW_COLOR_16,       /* TERM=linux / vt100 and friends: the 8/16 ANSI colours */
  SDW_COLOR_256,      /* the xterm-256 palette (TERM=*-256color, screen, tmux) */
  SDW_COLOR_TRUE      /* 24-bit SGR 38;2;r;g;b (COLORTERM=truecolor or 24bit) */
} sdw_color_mode;

typedef struct sdw_termcaps {
  bool da1_seen;      /* the terminal answered DA1 (so the probe is complete) */
  bool sixel;         /* DA1 listed attribute 4 */
  int cell_w, cell_h; /* pixels per character cell (CSI 16 t); 0 = unknown */
  int win_w, win_h;   /* text-area pixels (CSI 14 t); 0 = unknown */
  sdw_color_mode color;
} sdw_termcaps;

/* The query bytes, in the order described above (a static string). */
const char *sdw_termcaps_query(void);

/* --- the reply parser (pure: bytes in, capabilities and leftovers out) ---- */

/* Holds a partial escape sequence between calls (replies may arrive split
 * across reads). Zero-initialise or call _init. */
typedef struct sdw_termcaps_parser {
  uint8_t seq[64]; /* bytes of the escape sequence being collected */
  int len;
} sdw_termcaps_parser;

void sdw_termcaps_parser_init(sdw_termcaps_parser *p);

/* Feeds n bytes. Complete DA1 / CSI 6 t / CSI 4 t replies update caps;
 * every other byte is appended to keep (capacity keep_cap) in its original
 * order. A partial escape sequence at the end stays in the parser until more
 * bytes arrive or _flush. Returns the number of bytes appended to keep;
 * bytes beyond keep_cap are dropped (pass a keep buffer at least n + 64
 * bytes long to lose nothing). */
size_t sdw_termcaps_feed(sdw_termcaps_parser *p, sdw_termcaps *caps, const uint8_t *bytes, size_t n,
                         uint8_t *keep, size_t keep_cap);

/* Gives back a held partial sequence (e.g. a lone ESC key press when the
 * timeout expired) as user bytes. Returns the number appended to keep. */
size_t sdw_termcaps_flush(sdw_termcaps_parser *p, uint8_t *keep, size_t keep_cap);

/* --- environment ------------------------------------------------------------ */

/* The colour mode for these values of NO_COLOR, COLORTERM and TERM (any may
 * be NULL = unset). Pure; NO_COLOR wins when set to any non-empty value. */
sdw_color_mode sdw_termcaps_color_mode(const char *no_color, const char *colorterm,
                                       const char *term);
/* Clears caps and fills caps->color from getenv. */
void sdw_termcaps_from_env(sdw_termcaps *caps);

/* --- probing a real terminal --------------------------------------------- */

/* Writes sdw_termcaps_query() to out_fd and parses replies from in_fd until
 * the DA1 reply arrives or timeout_ms passes (100-300 ms is plenty locally;
 * use more over slow SSH). Fills the probe fields of caps (call
 * sdw_termcaps_from_env first for caps->color; this does not touch it).
 * Bytes that were not replies (keystrokes) go to keep (capacity keep_cap,
 * count in *kept) for the app to replay. When in_fd is not a tty, returns
 * SDW_OK at once with nothing detected. A terminal that never answers is not
 * an error: caps->da1_seen stays false and sixel off. SDW_ERR_IO only when
 * the tty cannot be read, written or its mode set. */
sdw_status sdw_termcaps_probe(int in_fd, int out_fd, int timeout_ms, sdw_termcaps *caps,
                              uint8_t *keep, size_t keep_cap, size_t *kept);

#ifdef __cplusplus
}
#endif
#endif
