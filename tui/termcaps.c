/* Terminal capability probing and the reply parser (see termcaps.h). */
#include "tui/termcaps.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

const char *sdw_termcaps_query(void) { return "\x1b[16t\x1b[14t\x1b[c"; }

void sdw_termcaps_parser_init(sdw_termcaps_parser *p) { memset(p, 0, sizeof *p); }

static size_t keep_bytes(const uint8_t *b, size_t n, uint8_t *keep, size_t keep_cap, size_t *kept) {
  size_t room = *kept < keep_cap ? keep_cap - *kept : 0;
  size_t take = n < room ? n : room;
  if (take) memcpy(keep + *kept, b, take);
  *kept += take;
  return take;
}

/* Splits the parameter bytes seq[from, to) at ';' into up to max decimal
 * numbers; false when a parameter is not a plain number (or too large). */
static int parse_params(const uint8_t *s, int from, int to, long *v, int max) {
  int n = 0;
  long cur = 0;
  bool digits = false;
  for (int i = from; i <= to; i++) {
    if (i == to || s[i] == ';') {
      if (!digits || n == max) return -1;
      v[n++] = cur;
      cur = 0;
      digits = false;
    } else if (s[i] >= '0' && s[i] <= '9') {
      if (cur > 100000) return -1;
      cur = cur * 10 + (s[i] - '0');
      digits = true;
    } else {
      return -1;
    }
  }
  return n;
}

/* Applies a complete CSI sequence (seq[0..len), ESC '[' ... final) to caps
 * when it is one of the replies; false when it is something else. */
static bool apply_reply(const uint8_t *s, int len, sdw_termcaps *caps) {
  uint8_t final = s[len - 1];
  long v[32];
  if (final == 'c' && len >= 4 && s[2] == '?') { /* DA1: CSI ? Ps ; ... c */
    int n = parse_params(s, 3, len - 1, v, 32);
    if (n < 1) return false;
    caps->da1_seen = true;
    for (int i = 1; i < n; i++) /* the first is the terminal class (1, 6, 62-65) */
      if (v[i] == 4) caps->sixel = true;
    return true;
  }
  if (final == 't') { /* CSI 6 ; h ; w t (cell) or CSI 4 ; h ; w t (window) */
    int n = parse_params(s, 2, len - 1, v, 3);
    if (n != 3 || v[1] <= 0 || v[2] <= 0 || v[1] > 65535 || v[2] > 65535) return false;
    if (v[0] == 6) {
      caps->cell_h = (int)v[1];
      caps->cell_w = (int)v[2];
      return true;
    }
    if (v[0] == 4) {
      caps->win_h = (int)v[1];
      caps->win_w = (int)v[2];
      return true;
    }
  }
  return false;
}

size_t sdw_termcaps_feed(sdw_termcaps_parser *p, sdw_termcaps *caps, const uint8_t *bytes, size_t n,
                         uint8_t *keep, size_t keep_cap) {
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t b = bytes[i];
    if (p->len == 0) {
      if (b == 0x1b)
        p->seq[p->len++] = b;
      else
        keep_bytes(&b, 1, keep, keep_cap, &kept);
      continue;
    }
    if (p->len == 1) { /* after ESC: only CSI can be a reply */
      if (b == '[') {
        p->seq[p->len++] = b;
      } else {
        keep_bytes(p->seq, 1, keep, keep_cap, &kept);
        p->len = 0;
        i--; /* look at b again from the ground state (it may be ESC) */
      }
      continue;
    }
    if (b >= 0x20 && b <= 0x3f) { /* parameter and intermediate bytes */
      if (p->len < (int)sizeof p->seq - 1) {
        p->seq[p->len++] = b;
      } else { /* too long for a reply: it is the user's */
        keep_bytes(p->seq, (size_t)p->len, keep, keep_cap, &kept);
        p->len = 0;
        i--;
      }
      continue;
    }
    if (b >= 0x40 && b <= 0x7e) { /* final byte: a complete sequence */
      p->seq[p->len++] = b;
      if (!apply_reply(p->seq, p->len, caps))
        keep_bytes(p->seq, (size_t)p->len, keep, keep_cap, &kept);
      p->len = 0;
      continue;
    }
    /* a control byte or ESC inside the sequence: not a reply */
    keep_bytes(p->seq, (size_t)p->len, keep, keep_cap, &kept);
    p->len = 0;
    i--;
  }
  return kept;
}

size_t sdw_termcaps_flush(sdw_termcaps_parser *p, uint8_t *keep, size_t keep_cap) {
  size_t kept = 0;
  keep_bytes(p->seq, (size_t)p->len, keep, keep_cap, &kept);
  p->len = 0;
  return kept;
}

static bool starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

sdw_color_mode sdw_termcaps_color_mode(const char *no_color, const char *colorterm,
                                       const char *term) {
  /* https://no-color.org: any non-empty value */
  if (no_color && *no_color) return SDW_COLOR_NONE;
  if (!term || !*term || strcmp(term, "dumb") == 0) return SDW_COLOR_NONE;
  if (colorterm && (strcmp(colorterm, "truecolor") == 0 || strcmp(colorterm, "24bit") == 0))
    return SDW_COLOR_TRUE;
  if (strstr(term, "-direct")) return SDW_COLOR_TRUE;
  if (strstr(term, "256color")) return SDW_COLOR_256;
  /* terminfo says 8 colours for plain xterm/screen/tmux, but every emulator
   * and multiplexer in use understands the 256-colour SGR (tmux and screen
   * translate it for an outer terminal that does not) */
  static const char *const k256[] = {"xterm", "screen",  "tmux",    "rxvt", "alacritty",
                                     "kitty", "foot",    "wezterm", "st-",  "contour",
                                     "iTerm", "konsole", "gnome",   "vte"};
  for (size_t i = 0; i < sizeof k256 / sizeof k256[0]; i++)
    if (starts_with(term, k256[i])) return SDW_COLOR_256;
  return SDW_COLOR_16; /* linux console, vt100/vt220, ansi, cons25 and the unknown */
}

void sdw_termcaps_from_env(sdw_termcaps *caps) {
  memset(caps, 0, sizeof *caps);
  caps->color = sdw_termcaps_color_mode(getenv("NO_COLOR"), getenv("COLORTERM"), getenv("TERM"));
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static sdw_status write_all(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return sdw_fail(SDW_ERR_IO, "terminal: write failed: %s", strerror(errno));
    s += w;
    n -= (size_t)w;
  }
  return SDW_OK;
}

sdw_status sdw_termcaps_probe(int in_fd, int out_fd, int timeout_ms, sdw_termcaps *caps,
                              uint8_t *keep, size_t keep_cap, size_t *kept) {
  *kept = 0;
  caps->da1_seen = false;
  caps->sixel = false;
  caps->cell_w = caps->cell_h = caps->win_w = caps->win_h = 0;
  if (!isatty(in_fd) || !isatty(out_fd)) return SDW_OK;
  struct termios saved, raw;
  if (tcgetattr(in_fd, &saved) != 0)
    return sdw_fail(SDW_ERR_IO, "terminal: cannot read its mode: %s", strerror(errno));
  raw = saved;
  raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(in_fd, TCSANOW, &raw) != 0)
    return sdw_fail(SDW_ERR_IO, "terminal: cannot set raw mode: %s", strerror(errno));
  const char *q = sdw_termcaps_query();
  sdw_status st = write_all(out_fd, q, strlen(q));
  sdw_termcaps_parser parser;
  sdw_termcaps_parser_init(&parser);
  double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  while (st == SDW_OK && !caps->da1_seen) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) break;
    struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
    int pr = poll(&pfd, 1, left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) {
      st = sdw_fail(SDW_ERR_IO, "terminal: poll failed: %s", strerror(errno));
      break;
    }
    if (pr == 0) break;
    uint8_t buf[256];
    ssize_t n = read(in_fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      if (n < 0) st = sdw_fail(SDW_ERR_IO, "terminal: read failed: %s", strerror(errno));
      break;
    }
    size_t room = keep && *kept < keep_cap ? keep_cap - *kept : 0;
    *kept += sdw_termcaps_feed(&parser, caps, buf, (size_t)n, room ? keep + *kept : NULL, room);
  }
  /* a partial sequence left over (a lone ESC key) belongs to the user */
  size_t room = keep && *kept < keep_cap ? keep_cap - *kept : 0;
  *kept += sdw_termcaps_flush(&parser, room ? keep + *kept : NULL, room);
  /* TCSANOW, not TCSAFLUSH: flushing would discard what the user typed */
  if (tcsetattr(in_fd, TCSANOW, &saved) != 0 && st == SDW_OK)
    st = sdw_fail(SDW_ERR_IO, "terminal: cannot restore its mode: %s", strerror(errno));
  return st;
}
