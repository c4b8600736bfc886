/* Terminal capability probing: the reply parser on byte streams (replies
 * split anywhere, mixed with keystrokes that must come back unchanged and in
 * order), the colour-mode table, and a real probe over a pseudo-terminal
 * where this test plays the terminal. */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "tests/test.h"
#include "tui/termcaps.h"

/* Feeds s in chunks of `chunk` bytes (0: all at once), then flushes; the
 * kept bytes go to keep (NUL-terminated). */
static size_t feed_chunked(sdw_termcaps *caps, const char *s, size_t chunk, char *keep,
                           size_t cap) {
  sdw_termcaps_parser p;
  sdw_termcaps_parser_init(&p);
  size_t n = strlen(s), kept = 0;
  if (chunk == 0) chunk = n ? n : 1;
  for (size_t at = 0; at < n; at += chunk) {
    size_t len = n - at < chunk ? n - at : chunk;
    kept += sdw_termcaps_feed(&p, caps, (const uint8_t *)s + at, len, (uint8_t *)keep + kept,
                              cap - 1 - kept);
  }
  kept += sdw_termcaps_flush(&p, (uint8_t *)keep + kept, cap - 1 - kept);
  keep[kept] = '\0';
  return kept;
}

SDW_TEST(tui_termcaps_query_bytes) {
  /* XTWINOPS 16 and 14 first, DA1 last (its reply marks the end) */
  CHECK(strcmp(sdw_termcaps_query(), "\x1b[16t\x1b[14t\x1b[c") == 0);
}

SDW_TEST(tui_termcaps_replies_any_split) {
  /* xterm -ti vt340 answers like this (cell 10x20, 80x24 window) */
  const char *replies = "\x1b[6;20;10t\x1b[4;480;800t\x1b[?63;1;2;4;6;9;15;22c";
  for (size_t chunk = 0; chunk <= strlen(replies); chunk++) {
    sdw_termcaps caps = {0};
    char keep[64];
    size_t kept = feed_chunked(&caps, replies, chunk, keep, sizeof keep);
    CHECK_MSG(kept == 0, "chunk %zu kept %zu bytes", chunk, kept);
    CHECK(caps.da1_seen && caps.sixel);
    CHECK(caps.cell_w == 10 && caps.cell_h == 20);
    CHECK(caps.win_w == 800 && caps.win_h == 480);
  }
}

SDW_TEST(tui_termcaps_keystrokes_pass_through_in_order) {
  /* typed text, an arrow key (CSI A), F1 (SS3 P), Alt-x (ESC x), a key
   * with modifiers (CSI 1;5C) and a reply we did not ask for (CSI 8;24;80t)
   * interleaved with the three replies */
  const char *stream = "ab\x1b[A"
                       "\x1b[6;16;8t"
                       "q\x1bOP"
                       "\x1b[4;384;640t"
                       "\x1bx\x1b[1;5C"
                       "\x1b[8;24;80t"
                       "\x1b[?62;22c"
                       "z";
  const char *want = "ab\x1b[Aq\x1bOP\x1bx\x1b[1;5C\x1b[8;24;80tz";
  for (size_t chunk = 0; chunk <= 7; chunk++) {
    sdw_termcaps caps = {0};
    char keep[128];
    feed_chunked(&caps, stream, chunk, keep, sizeof keep);
    CHECK_MSG(strcmp(keep, want) == 0, "chunk %zu: kept bytes differ", chunk);
    CHECK(caps.da1_seen && !caps.sixel); /* 62;22: no attribute 4 */
    CHECK(caps.cell_w == 8 && caps.cell_h == 16 && caps.win_w == 640 && caps.win_h == 384);
  }
}

SDW_TEST(tui_termcaps_partial_escape_and_odd_replies) {
  sdw_termcaps caps = {0};
  char keep[64];
  /* a lone ESC key press at the end is held, then given back by flush */
  CHECK(feed_chunked(&caps, "x\x1b", 0, keep, sizeof keep) == 2 && strcmp(keep, "x\x1b") == 0);
  /* ESC ESC [ ...: the first ESC is a key, the rest a reply */
  memset(&caps, 0, sizeof caps);
  feed_chunked(&caps, "\x1b\x1b[?1;2c", 0, keep, sizeof keep);
  CHECK(strcmp(keep, "\x1b") == 0 && caps.da1_seen && !caps.sixel);
  /* the class parameter is not an attribute: "?4c" is not sixel */
  memset(&caps, 0, sizeof caps);
  feed_chunked(&caps, "\x1b[?4c", 0, keep, sizeof keep);
  CHECK(caps.da1_seen && !caps.sixel);
  /* a truncated reply (connection dropped mid-way) comes back as bytes */
  memset(&caps, 0, sizeof caps);
  feed_chunked(&caps, "\x1b[6;20", 0, keep, sizeof keep);
  CHECK(strcmp(keep, "\x1b[6;20") == 0 && caps.cell_h == 0);
  /* zero or absurd sizes, two parameters, non-numbers: not replies */
  memset(&caps, 0, sizeof caps);
  feed_chunked(&caps, "\x1b[6;0;10t\x1b[6;20t\x1b[6;a;b t\x1b[4;99999999;1t", 0, keep, sizeof keep);
  CHECK(caps.cell_w == 0 && caps.cell_h == 0 && caps.win_h == 0);
  CHECK(strlen(keep) == strlen("\x1b[6;0;10t\x1b[6;20t\x1b[6;a;b t\x1b[4;99999999;1t"));
  /* a control byte inside a sequence ends it: both come back */
  memset(&caps, 0, sizeof caps);
  feed_chunked(&caps, "\x1b[6\r", 0, keep, sizeof keep);
  CHECK(strcmp(keep, "\x1b[6\r") == 0);
  /* an overlong sequence is the user's too (and never overflows the parser) */
  char longseq[200] = "\x1b[";
  memset(longseq + 2, '1', 150);
  longseq[152] = 'c';
  longseq[153] = '\0';
  memset(&caps, 0, sizeof caps);
  char keep2[256];
  CHECK(feed_chunked(&caps, longseq, 0, keep2, sizeof keep2) == 153);
  CHECK(strcmp(keep2, longseq) == 0 && !caps.da1_seen);
}

SDW_TEST(tui_termcaps_keep_capacity) {
  /* more user bytes than room: the excess is dropped, never written past */
  sdw_termcaps_parser p;
  sdw_termcaps_parser_init(&p);
  sdw_termcaps caps = {0};
  uint8_t *keep = sdw_test_alloc_guarded_bytes(4, "keep");
  CHECK(sdw_termcaps_feed(&p, &caps, (const uint8_t *)"abcdefgh", 8, keep, 4) == 4);
  CHECK(memcmp(keep, "abcd", 4) == 0);
  sdw_test_free_guarded(keep);
}

SDW_TEST(tui_termcaps_color_mode_table) {
  CHECK(sdw_termcaps_color_mode("1", "truecolor", "xterm-256color") == SDW_COLOR_NONE);
  CHECK(sdw_termcaps_color_mode("", "truecolor", "xterm-256color") == SDW_COLOR_TRUE);
  CHECK(sdw_termcaps_color_mode(NULL, "24bit", "tmux-256color") == SDW_COLOR_TRUE);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "xterm-direct") == SDW_COLOR_TRUE);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "tmux-256color") == SDW_COLOR_256);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "screen") == SDW_COLOR_256);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "xterm") == SDW_COLOR_256);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "linux") == SDW_COLOR_16);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "vt100") == SDW_COLOR_16);
  CHECK(sdw_termcaps_color_mode(NULL, NULL, "dumb") == SDW_COLOR_NONE);
  CHECK(sdw_termcaps_color_mode(NULL, "truecolor", NULL) == SDW_COLOR_NONE);
}

SDW_TEST(tui_termcaps_probe_not_a_tty) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  sdw_termcaps caps;
  sdw_termcaps_from_env(&caps);
  size_t kept = 99;
  uint8_t keep[8];
  CHECK_OK(sdw_termcaps_probe(fds[0], fds[1], 50, &caps, keep, sizeof keep, &kept));
  CHECK(kept == 0 && !caps.da1_seen && !caps.sixel && caps.cell_w == 0);
  /* nothing was written to a non-terminal */
  struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
  CHECK(poll(&pfd, 1, 0) == 0);
  close(fds[0]);
  close(fds[1]);
}

/* Opens a pseudo-terminal pair: *master is the "terminal" side. */
static bool open_pty(int *master, int *slave) {
  *master = posix_openpt(O_RDWR | O_NOCTTY);
  if (*master < 0) return false;
  if (grantpt(*master) != 0 || unlockpt(*master) != 0) return false;
  const char *name = ptsname(*master);
  if (!name) return false;
  *slave = open(name, O_RDWR | O_NOCTTY);
  return *slave >= 0;
}

SDW_TEST(tui_termcaps_probe_over_pty) {
  int master, slave;
  if (!open_pty(&master, &slave)) {
    printf("  (no pseudo-terminals here: probe over pty not run)\n");
    return;
  }
  /* the "terminal" has already answered, with a keystroke before the replies */
  struct termios t;
  REQUIRE(tcgetattr(slave, &t) == 0);
  cfmakeraw(&t);
  REQUIRE(tcsetattr(slave, TCSANOW, &t) == 0);
  const char *answer = "k\x1b[6;18;9t\x1b[?62;4c";
  REQUIRE(write(master, answer, strlen(answer)) == (ssize_t)strlen(answer));
  sdw_termcaps caps = {0};
  uint8_t keep[64];
  size_t kept = 0;
  CHECK_OK(sdw_termcaps_probe(slave, slave, 2000, &caps, keep, sizeof keep, &kept));
  CHECK(caps.da1_seen && caps.sixel && caps.cell_w == 9 && caps.cell_h == 18);
  CHECK(caps.win_w == 0); /* no CSI 4 t reply came */
  CHECK(kept == 1 && keep[0] == 'k');
  /* the queries reached the terminal */
  char got[64] = {0};
  size_t have = 0;
  const char *q = sdw_termcaps_query();
  while (have < strlen(q)) {
    struct pollfd pfd = {.fd = master, .events = POLLIN};
    if (poll(&pfd, 1, 1000) <= 0) break;
    ssize_t n = read(master, got + have, sizeof got - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
  }
  CHECK_MSG(have == strlen(q) && memcmp(got, q, have) == 0, "terminal saw %zu bytes", have);
  /* the probe restored the mode it found (raw here) */
  struct termios after;
  REQUIRE(tcgetattr(slave, &after) == 0);
  CHECK(after.c_lflag == t.c_lflag && after.c_cc[VMIN] == t.c_cc[VMIN]);
  close(slave);
  close(master);
}

SDW_TEST(tui_termcaps_probe_silent_terminal_times_out) {
  int master, slave;
  if (!open_pty(&master, &slave)) return;
  struct termios t;
  REQUIRE(tcgetattr(slave, &t) == 0);
  cfmakeraw(&t);
  REQUIRE(tcsetattr(slave, TCSANOW, &t) == 0);
  sdw_termcaps caps = {0};
  uint8_t keep[8];
  size_t kept = 9;
  CHECK_OK(sdw_termcaps_probe(slave, slave, 100, &caps, keep, sizeof keep, &kept));
  CHECK(!caps.da1_seen && !caps.sixel && kept == 0);
  close(slave);
  close(master);
}
