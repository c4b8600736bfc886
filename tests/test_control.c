/* The control protocol: a real server and clients over UNIX sockets in one
 * process (the server polled by a thread or inline), plus raw sockets that
 * misbehave. Every check is exact (JSON fields, states, counts): there is no
 * numerical tolerance in this file. Waits are bounded polls (a few seconds
 * at most) so a regression fails instead of hanging. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/status.h"
#include "core/train/control.h"
#include "tests/test.h"

/* ---- a small job: the handler and a server thread ------------------------ */

typedef struct job {
  sdw_control_server *server;
  int step;
  int paused;
  int handled; /* requests the handler saw */
  char last_prompt[64];
  atomic_int stop;
} job;

static cJSON *job_handler(void *user, const char *cmd, const cJSON *req) {
  job *j = user;
  j->handled++;
  if (strcmp(cmd, "status") == 0) {
    cJSON *r = sdw_control_reply_ok();
    cJSON *st = cJSON_AddObjectToObject(r, "status");
    cJSON_AddStringToObject(st, "state", j->paused ? "paused" : "running");
    cJSON_AddNumberToObject(st, "step", j->step);
    return r;
  }
  if (strcmp(cmd, "pause") == 0 || strcmp(cmd, "resume") == 0) {
    j->paused = strcmp(cmd, "pause") == 0;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event", "state");
    cJSON_AddStringToObject(ev, "state", j->paused ? "paused" : "running");
    sdw_control_server_broadcast(j->server, ev); /* from inside the handler */
    cJSON_Delete(ev);
    return cJSON_CreateObject(); /* the server adds "ok":true */
  }
  if (strcmp(cmd, "checkpoint") == 0) {
    cJSON *r = sdw_control_reply_ok();
    cJSON_AddStringToObject(r, "path", "checkpoints/step-00000007.safetensors");
    return r;
  }
  if (strcmp(cmd, "sample") == 0) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    snprintf(j->last_prompt, sizeof j->last_prompt, "%s", p->valuestring);
    cJSON *r = sdw_control_reply_ok();
    cJSON_AddBoolToObject(r, "queued", 1);
    return r;
  }
  if (strcmp(cmd, "stop") == 0) return NULL; /* -> {"ok":false,"error":"internal"} */
  return sdw_control_reply_error("unexpected");
}

static void *job_thread(void *arg) {
  job *j = arg;
  while (!atomic_load(&j->stop))
    sdw_control_server_poll(j->server, 10, job_handler, j);
  return NULL;
}

static void sock_path(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", sdw_test_tmpdir(), name);
}

/* ---- raw sockets ---------------------------------------------------------------- */

/* path must fit sun_path (the short-path tests only). */
static void fill_addr(struct sockaddr_un *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  size_t n = strlen(path);
  SDW_ASSERT(n < sizeof a->sun_path);
  memcpy(a->sun_path, path, n);
}

static int raw_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  fill_addr(&a, path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void raw_send(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    p += w, n -= (size_t)w;
  }
}

/* One line (without '\n') into out, polling the server inline when s is not
 * NULL. Returns the length, -1 on EOF/error, -2 on timeout (~3 s). */
static int raw_line(int fd, char *out, size_t cap, sdw_control_server *s, job *j) {
  size_t n = 0;
  for (int tries = 0; tries < 300;) {
    if (s) sdw_control_server_poll(s, 0, job_handler, j);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10) == 0) {
      tries++;
      continue;
    }
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    if (r <= 0) return -1;
    if (c == '\n') {
      out[n] = 0;
      return (int)n;
    }
    if (n + 1 < cap) out[n++] = c;
  }
  return -2;
}

/* True when the peer closed fd within ~3 s (server polled inline). */
static bool raw_closed(int fd, sdw_control_server *s, job *j) {
  char line[4096];
  for (;;) {
    int r = raw_line(fd, line, sizeof line, s, j);
    if (r == -1) return true;
    if (r == -2) return false;
  }
}

static cJSON *call(sdw_control_client *c, const char *json) {
  cJSON *req = cJSON_Parse(json), *reply = NULL;
  sdw_status st = sdw_control_call(c, req, 3000, &reply);
  cJSON_Delete(req);
  CHECK_MSG(st == SDW_OK, "call %s: %s", json, sdw_last_error());
  return reply;
}

static bool reply_ok(const cJSON *r) { return cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")); }
static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* ---- tests ---------------------------------------------------------------------------- */

SDW_TEST(control_requests_and_replies) {
  char path[512];
  sock_path(path, sizeof path, "req.sock");
  job j = {.step = 7};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  struct stat st;
  CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, job_thread, &j) == 0);

  sdw_control_client *c = NULL;
  CHECK_OK(sdw_control_connect(path, &c));
  REQUIRE(c != NULL);
  cJSON *r = call(c, "{\"cmd\":\"status\"}");
  CHECK(reply_ok(r));
  CHECK(cJSON_IsNumber(cJSON_GetObjectItem(r, "id")));
  const cJSON *s = cJSON_GetObjectItem(r, "status");
  CHECK(strcmp(str(s, "state"), "running") == 0);
  CHECK(cJSON_GetObjectItem(s, "step") && cJSON_GetObjectItem(s, "step")->valueint == 7);
  cJSON_Delete(r);

  r = call(c, "{\"cmd\":\"pause\"}");
  CHECK(reply_ok(r)); /* the handler returned {} and the server added ok */
  cJSON_Delete(r);
  r = call(c, "{\"cmd\":\"status\"}");
  CHECK(strcmp(str(cJSON_GetObjectItem(r, "status"), "state"), "paused") == 0);
  cJSON_Delete(r);
  r = call(c, "{\"cmd\":\"checkpoint\"}");
  CHECK(reply_ok(r) && strcmp(str(r, "path"), "checkpoints/step-00000007.safetensors") == 0);
  cJSON_Delete(r);
  r = call(c, "{\"cmd\":\"stop\"}"); /* handler returned NULL */
  CHECK(!reply_ok(r) && strcmp(str(r, "error"), "internal") == 0);
  cJSON_Delete(r);

  /* sample: arguments checked before the handler */
  int before = j.handled;
  const char *bad[] = {"{\"cmd\":\"sample\"}",
                       "{\"cmd\":\"sample\",\"prompt\":3}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"steps\":0}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"steps\":2.5}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"cfg\":-1}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"seed\":-3}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"ema\":1}",
                       "{\"cmd\":\"sample\",\"prompt\":\"a\",\"negative\":[]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r = call(c, bad[i]);
    CHECK_MSG(!reply_ok(r) && str(r, "error")[0], "%s was accepted", bad[i]);
    cJSON_Delete(r);
  }
  r = call(c, "{\"cmd\":\"sample\",\"prompt\":\"a red circle\",\"negative\":\"blur\","
              "\"steps\":25,\"cfg\":7.5,\"seed\":42,\"ema\":true}");
  CHECK(reply_ok(r) && cJSON_IsTrue(cJSON_GetObjectItem(r, "queued")));
  cJSON_Delete(r);
  atomic_store(&j.stop, 1);
  pthread_join(th, NULL);
  CHECK(j.handled == before + 1); /* only the valid sample reached the handler */
  CHECK(strcmp(j.last_prompt, "a red circle") == 0);

  sdw_control_server_close(j.server);
  CHECK(access(path, F_OK) != 0); /* close unlinks the socket */
  /* The job went away: the client's next call reports it. */
  cJSON *req = cJSON_Parse("{\"cmd\":\"status\"}");
  r = NULL;
  CHECK(sdw_control_call(c, req, 3000, &r) == SDW_ERR_IO && r == NULL);
  cJSON_Delete(req);
  sdw_control_client_close(c);
}

SDW_TEST(control_events_only_to_subscribers) {
  char path[512];
  sock_path(path, sizeof path, "ev.sock");
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, job_thread, &j) == 0);
  sdw_control_client *a = NULL, *b = NULL;
  CHECK_OK(sdw_control_connect(path, &a));
  CHECK_OK(sdw_control_connect(path, &b));
  REQUIRE(a && b);
  cJSON *r = call(a, "{\"cmd\":\"subscribe\"}");
  CHECK(reply_ok(r));
  cJSON_Delete(r);
  r = call(b, "{\"cmd\":\"pause\"}"); /* b is not subscribed; the handler broadcasts */
  CHECK(reply_ok(r));
  cJSON_Delete(r);
  cJSON *ev = NULL;
  CHECK_OK(sdw_control_next_event(a, 3000, &ev));
  CHECK(ev && strcmp(str(ev, "event"), "state") == 0 && strcmp(str(ev, "state"), "paused") == 0);
  cJSON_Delete(ev);
  ev = NULL;
  CHECK_OK(sdw_control_next_event(b, 200, &ev));
  CHECK(ev == NULL); /* timed out: nothing for b */
  cJSON_Delete(ev);
  /* An event that arrives while a waits for a reply is queued, not lost. */
  r = call(a, "{\"cmd\":\"resume\"}");
  CHECK(reply_ok(r));
  cJSON_Delete(r);
  ev = NULL;
  CHECK_OK(sdw_control_next_event(a, 3000, &ev));
  CHECK(ev && strcmp(str(ev, "state"), "running") == 0);
  cJSON_Delete(ev);
  atomic_store(&j.stop, 1);
  pthread_join(th, NULL);
  CHECK(sdw_control_server_subscribers(j.server) == 1);
  sdw_control_server_close(j.server);
  ev = NULL;
  CHECK(sdw_control_next_event(a, 3000, &ev) == SDW_ERR_IO && ev == NULL);
  sdw_control_client_close(a);
  sdw_control_client_close(b);
}

SDW_TEST(control_malformed_requests_keep_the_connection) {
  char path[512];
  sock_path(path, sizeof path, "bad.sock");
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  int fd = raw_connect(path);
  REQUIRE(fd >= 0);
  static const char *const bad[] = {
      "{bad json",
      "[1,2]",
      "{\"id\":5}",
      "{\"id\":5,\"cmd\":7}",
      "{\"id\":5,\"cmd\":\"explode\"}",
      "{\"cmd\":\"status\"} trailing",
      "\xff\xfe{}",
      "",
  };
  char line[4096];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    raw_send(fd, bad[i], strlen(bad[i]));
    raw_send(fd, "\n", 1);
    int n = raw_line(fd, line, sizeof line, j.server, &j);
    REQUIRE(n > 0);
    cJSON *r = cJSON_Parse(line);
    CHECK_MSG(r && !reply_ok(r) && str(r, "error")[0], "'%s' -> %s", bad[i], line);
    if (i == 2 || i == 3 || i == 4) /* the id is echoed when the request had one */
      CHECK(cJSON_GetObjectItem(r, "id") && cJSON_GetObjectItem(r, "id")->valueint == 5);
    if (i == 4) CHECK(strstr(str(r, "error"), "unknown command 'explode'") != NULL);
    cJSON_Delete(r);
  }
  CHECK(j.handled == 0);
  /* still connected: a good request works, with a string id and CRLF */
  raw_send(fd, "{\"id\":\"x\",\"cmd\":\"status\"}\r\n", 27);
  REQUIRE(raw_line(fd, line, sizeof line, j.server, &j) > 0);
  cJSON *r = cJSON_Parse(line);
  CHECK(reply_ok(r) && strcmp(str(r, "id"), "x") == 0);
  cJSON_Delete(r);
  /* two requests in one write, then one split over two writes */
  raw_send(fd, "{\"id\":1,\"cmd\":\"status\"}\n{\"id\":2,\"cmd\":\"status\"}\n{\"id\":3,", 56);
  for (int k = 1; k <= 2; k++) {
    REQUIRE(raw_line(fd, line, sizeof line, j.server, &j) > 0);
    r = cJSON_Parse(line);
    CHECK(reply_ok(r) && cJSON_GetObjectItem(r, "id")->valueint == k);
    cJSON_Delete(r);
  }
  raw_send(fd, "\"cmd\":\"status\"}\n", 16);
  REQUIRE(raw_line(fd, line, sizeof line, j.server, &j) > 0);
  r = cJSON_Parse(line);
  CHECK(reply_ok(r) && cJSON_GetObjectItem(r, "id")->valueint == 3);
  cJSON_Delete(r);
  CHECK(j.handled == 4);
  close(fd);
  sdw_control_server_close(j.server);
}

SDW_TEST(control_oversized_line_closes_only_that_client) {
  char path[512];
  sock_path(path, sizeof path, "big.sock");
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  int good = raw_connect(path), big = raw_connect(path);
  REQUIRE(good >= 0 && big >= 0);
  size_t n = SDW_CONTROL_MAX_LINE + 100;
  char *blob = malloc(n);
  memset(blob, 'a', n);
  memcpy(blob, "{\"cmd\":\"status\",\"pad\":\"", 23);
  raw_send(big, blob, n); /* no newline at all */
  free(blob);
  char line[4096];
  int len = raw_line(big, line, sizeof line, j.server, &j);
  REQUIRE(len > 0);
  cJSON *r = cJSON_Parse(line);
  CHECK(r && !reply_ok(r) && strstr(str(r, "error"), "longer than") != NULL);
  cJSON_Delete(r);
  CHECK(raw_closed(big, j.server, &j));
  close(big);
  /* A line of exactly the limit is fine (and reaches the handler). */
  blob = malloc(SDW_CONTROL_MAX_LINE + 1);
  memset(blob, ' ', SDW_CONTROL_MAX_LINE);
  memcpy(blob, "{\"cmd\":\"status\",\"id\":9}", 23);
  blob[SDW_CONTROL_MAX_LINE] = '\n';
  raw_send(good, blob, SDW_CONTROL_MAX_LINE + 1);
  free(blob);
  REQUIRE(raw_line(good, line, sizeof line, j.server, &j) > 0);
  r = cJSON_Parse(line);
  CHECK(reply_ok(r) && cJSON_GetObjectItem(r, "id")->valueint == 9);
  cJSON_Delete(r);
  CHECK(sdw_control_server_clients(j.server) == 1);
  close(good);
  sdw_control_server_close(j.server);
}

SDW_TEST(control_client_that_never_reads_is_dropped) {
  char path[512];
  sock_path(path, sizeof path, "slow.sock");
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  int slow = raw_connect(path), other = raw_connect(path);
  REQUIRE(slow >= 0 && other >= 0);
  raw_send(slow, "{\"cmd\":\"subscribe\"}\n", 20);
  raw_send(other, "{\"cmd\":\"subscribe\"}\n", 20);
  char line[4096];
  REQUIRE(raw_line(slow, line, sizeof line, j.server, &j) > 0);
  REQUIRE(raw_line(other, line, sizeof line, j.server, &j) > 0);
  CHECK(sdw_control_server_subscribers(j.server) == 2);
  /* 200 events of ~32 KB (6.4 MB) exceed the pending limit (4 MiB) plus any
   * kernel buffer; "other" drains as they come, "slow" never reads. Every
   * broadcast returns at once (nonblocking sends), else this test hangs. */
  char *pad = malloc(32768);
  memset(pad, 'x', 32767);
  pad[32767] = 0;
  cJSON *ev = cJSON_CreateObject();
  cJSON_AddStringToObject(ev, "event", "log");
  cJSON_AddStringToObject(ev, "message", pad);
  free(pad);
  char *drain = malloc(1 << 20);
  for (int i = 0; i < 200; i++) {
    sdw_control_server_broadcast(j.server, ev);
    ssize_t r;
    while ((r = recv(other, drain, 1 << 20, MSG_DONTWAIT)) > 0) {
    }
    sdw_control_server_poll(j.server, 0, job_handler, &j);
  }
  cJSON_Delete(ev);
  free(drain);
  sdw_control_server_poll(j.server, 0, job_handler, &j);
  CHECK(sdw_control_server_subscribers(j.server) == 1);
  CHECK(sdw_control_server_clients(j.server) == 1);
  /* The reader is still served. */
  raw_send(other, "{\"id\":4,\"cmd\":\"status\"}\n", 24);
  bool got = false;
  for (int k = 0; k < 400 && !got; k++) { /* skip the log events still queued */
    if (raw_line(other, line, sizeof line, j.server, &j) < 0) break;
    cJSON *r = cJSON_Parse(line);
    got = r && cJSON_GetObjectItem(r, "id") && cJSON_GetObjectItem(r, "id")->valueint == 4;
    cJSON_Delete(r);
  }
  CHECK(got);
  close(slow);
  close(other);
  sdw_control_server_close(j.server);
}

SDW_TEST(control_peer_uid_is_checked) {
  char path[512];
  sock_path(path, sizeof path, "uid.sock");
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  /* Accept only another uid: our own connection is then a stranger's. */
  sdw_control_server_set_peer_uid(j.server, (unsigned)geteuid() + 1);
  int fd = raw_connect(path);
  REQUIRE(fd >= 0);
  raw_send(fd, "{\"cmd\":\"status\"}\n", 17);
  CHECK(raw_closed(fd, j.server, &j));
  close(fd);
  CHECK(j.handled == 0);
  sdw_control_server_set_peer_uid(j.server, (unsigned)geteuid());
  if (geteuid() == 0) {
    /* As root, a real other user: a child drops to uid 65534 and connects
     * (root may connect regardless of the 0600 mode; the uid check is what
     * refuses it). The child exits 0 when the server closed it unanswered. */
    pid_t pid = fork();
    if (pid == 0) {
      if (setresuid(65534, 65534, 65534) != 0) _exit(2);
      int cfd = raw_connect(path);
      if (cfd < 0) _exit(0); /* refused outright is fine too */
      raw_send(cfd, "{\"cmd\":\"status\"}\n", 17);
      char c;
      struct pollfd p = {cfd, POLLIN, 0};
      if (poll(&p, 1, 3000) != 1) _exit(3);
      _exit(recv(cfd, &c, 1, 0) == 0 ? 0 : 4);
    }
    REQUIRE(pid > 0);
    int ws = 0;
    for (int k = 0; k < 400; k++) {
      sdw_control_server_poll(j.server, 10, job_handler, &j);
      if (waitpid(pid, &ws, WNOHANG) == pid) break;
    }
    CHECK_MSG(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child status %d", ws);
    CHECK(j.handled == 0);
  }
  /* Our own uid again: served. */
  fd = raw_connect(path);
  raw_send(fd, "{\"cmd\":\"status\"}\n", 17);
  char line[4096];
  CHECK(raw_line(fd, line, sizeof line, j.server, &j) > 0);
  CHECK(j.handled == 1);
  close(fd);
  sdw_control_server_close(j.server);
}

SDW_TEST(control_stale_socket_replaced_live_refused) {
  char path[512];
  sock_path(path, sizeof path, "stale.sock");
  /* A socket file nobody listens on (a job killed with -9 leaves this). */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  fill_addr(&a, path);
  REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  close(fd);
  sdw_control_client *c = NULL;
  CHECK(sdw_control_connect(path, &c) == SDW_ERR_IO && c == NULL); /* nobody answers */
  sdw_control_server *s = NULL, *s2 = NULL;
  CHECK_OK(sdw_control_server_open(path, &s));
  REQUIRE(s != NULL);
  /* Live: a second job on the same run is refused and the first is intact. */
  CHECK(sdw_control_server_open(path, &s2) == SDW_ERR_INVALID_ARGUMENT && s2 == NULL);
  CHECK(strstr(sdw_last_error(), "another job owns") != NULL);
  job j = {.server = s};
  int cfd = raw_connect(path);
  REQUIRE(cfd >= 0);
  raw_send(cfd, "{\"cmd\":\"status\"}\n", 17);
  char line[4096];
  CHECK(raw_line(cfd, line, sizeof line, s, &j) > 0);
  close(cfd);
  sdw_control_server_close(s);
  CHECK(access(path, F_OK) != 0);
  /* No socket at all: not found; a regular file in the way: refused. */
  CHECK(sdw_control_connect(path, &c) == SDW_ERR_NOT_FOUND);
  FILE *f = fopen(path, "w");
  REQUIRE(f != NULL);
  fclose(f);
  CHECK(sdw_control_server_open(path, &s) == SDW_ERR_IO && s == NULL);
  CHECK(access(path, F_OK) == 0); /* not deleted */
}

/* A socket in a directory whose path is longer than sun_path (108). */
static void long_path_roundtrip(const char *path) {
  job j = {0};
  CHECK_OK(sdw_control_server_open(path, &j.server));
  REQUIRE(j.server != NULL);
  struct stat st;
  CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
  pthread_t th;
  REQUIRE(pthread_create(&th, NULL, job_thread, &j) == 0);
  sdw_control_client *c = NULL;
  CHECK_OK(sdw_control_connect(path, &c));
  if (c) {
    cJSON *r = call(c, "{\"cmd\":\"status\"}");
    CHECK(reply_ok(r));
    cJSON_Delete(r);
  }
  /* and the live-socket refusal works through the long path too */
  sdw_control_server *s2 = NULL;
  CHECK(sdw_control_server_open(path, &s2) == SDW_ERR_INVALID_ARGUMENT);
  atomic_store(&j.stop, 1);
  pthread_join(th, NULL);
  sdw_control_client_close(c);
  sdw_control_server_close(j.server);
  CHECK(access(path, F_OK) != 0);
}

SDW_TEST(control_long_socket_paths) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", sdw_test_tmpdir());
  for (int k = 0; k < 3; k++) {
    size_t l = strlen(dir);
    snprintf(dir + l, sizeof dir - l, "/%s", "a-rather-long-run-directory-name-0123456789");
    REQUIRE(mkdir(dir, 0700) == 0);
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/control.sock", dir);
  REQUIRE(strlen(path) > sizeof(((struct sockaddr_un *)0)->sun_path));
  long_path_roundtrip(path); /* through /proc/self/fd/N/control.sock */
  /* A file name too long even for /proc/self/fd/N/: the forked-chdir path. */
  char name[101];
  memset(name, 'n', 100);
  name[100] = 0;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  long_path_roundtrip(path);
}

/* Replies a handler might get wrong. */
static cJSON *odd_handler(void *user, const char *cmd, const cJSON *req) {
  (void)user, (void)req;
  if (strcmp(cmd, "pause") == 0) return cJSON_Parse("{\"ok\":\"yes\",\"id\":99,\"x\":1}");
  if (strcmp(cmd, "resume") == 0) return cJSON_Parse("{\"ok\":false}");
  if (strcmp(cmd, "stop") == 0) return cJSON_Parse("[1]");
  return cJSON_Parse("{\"status\":{\"step\":2},\"id\":\"spoofed\"}");
}

SDW_TEST(control_reply_normalized) {
  int sub;
  /* the request's id wins over one in the body; ok added; id first */
  char *r = sdw_control_handle_line("{\"id\":1,\"cmd\":\"status\"}", 23, odd_handler, NULL, &sub);
  CHECK_MSG(r && strcmp(r, "{\"id\":1,\"ok\":true,\"status\":{\"step\":2}}") == 0, "%s", r);
  free(r);
  r = sdw_control_handle_line("{\"id\":2,\"cmd\":\"pause\"}", 22, odd_handler, NULL, &sub);
  CHECK_MSG(r && strcmp(r, "{\"id\":2,\"ok\":false,\"x\":1,\"error\":\"internal\"}") == 0, "%s", r);
  free(r);
  r = sdw_control_handle_line("{\"id\":3,\"cmd\":\"resume\"}", 23, odd_handler, NULL, &sub);
  CHECK_MSG(r && strcmp(r, "{\"id\":3,\"ok\":false,\"error\":\"internal\"}") == 0, "%s", r);
  free(r);
  r = sdw_control_handle_line("{\"id\":4,\"cmd\":\"stop\"}", 21, odd_handler, NULL, &sub);
  CHECK_MSG(r && strcmp(r, "{\"id\":4,\"ok\":false,\"error\":\"internal\"}") == 0, "%s", r);
  free(r);
}

SDW_TEST(control_handle_line_subscribe_flag) {
  int sub = -1;
  char *r = sdw_control_handle_line("{\"id\":3,\"cmd\":\"subscribe\"}", 26, NULL, NULL, &sub);
  CHECK(sub == 1 && r && strcmp(r, "{\"id\":3,\"ok\":true}") == 0);
  free(r);
  r = sdw_control_handle_line("{\"id\":3,\"cmd\":\"status\"}", 23, NULL, NULL, &sub);
  CHECK(sub == 0 && r && strstr(r, "\"ok\":false") != NULL); /* no handler */
  free(r);
  /* NUL inside the line */
  r = sdw_control_handle_line("{\"cmd\":\"status\"}\0", 17, job_handler, NULL, &sub);
  CHECK(r && strstr(r, "\"ok\":false") != NULL);
  free(r);
}

SDW_TEST(control_call_times_out_on_a_silent_job) {
  char path[512];
  sock_path(path, sizeof path, "silent.sock");
  sdw_control_server *s = NULL;
  CHECK_OK(sdw_control_server_open(path, &s));
  REQUIRE(s != NULL);
  /* Nobody polls the server: the kernel accepts the connection into the
   * backlog, but no reply ever comes. */
  sdw_control_client *c = NULL;
  CHECK_OK(sdw_control_connect(path, &c));
  REQUIRE(c != NULL);
  cJSON *req = cJSON_Parse("{\"cmd\":\"status\"}"), *r = NULL;
  CHECK(sdw_control_call(c, req, 100, &r) == SDW_ERR_IO && r == NULL);
  CHECK(strstr(sdw_last_error(), "did not answer") != NULL);
  /* The late reply to the timed-out call is skipped by the next call. */
  job j = {0};
  for (int k = 0; k < 5; k++)
    sdw_control_server_poll(s, 10, job_handler, &j);
  CHECK(j.handled == 1);
  pthread_t th;
  j.server = s;
  REQUIRE(pthread_create(&th, NULL, job_thread, &j) == 0);
  r = NULL;
  CHECK_OK(sdw_control_call(c, req, 3000, &r));
  const cJSON *id = cJSON_GetObjectItem(r, "id");
  CHECK(reply_ok(r) && id && id->valueint == 2); /* the second call's reply */
  cJSON_Delete(r);
  atomic_store(&j.stop, 1);
  pthread_join(th, NULL);
  cJSON_Delete(req);
  sdw_control_client_close(c);
  sdw_control_server_close(s);
}

/* ---- duplicate keys ------------------------------------------------------------------- */

static int dup_calls;
static cJSON *count_handler(void *user, const char *cmd, const cJSON *req) {
  (void)user, (void)req;
  dup_calls++;
  cJSON *r = sdw_control_reply_ok();
  cJSON_AddStringToObject(r, "cmd", cmd);
  return r;
}

SDW_TEST(control_duplicate_keys_refused) {
  /* cJSON keeps both members and its lookups take the first: without the
   * check, {"cmd":"status","cmd":"stop"} was answered as status (another
   * parser would read stop). Refused at any depth, before the handler. */
  static const char *const dup[] = {
      "{\"cmd\":\"status\",\"cmd\":\"stop\"}",
      "{\"id\":1,\"id\":2,\"cmd\":\"status\"}",
      "{\"cmd\":\"sample\",\"prompt\":\"a\",\"prompt\":\"b\"}",
      "{\"cmd\":\"status\",\"x\":{\"k\":1,\"k\":2}}",
      "{\"cmd\":\"status\",\"x\":[{\"a\":1},{\"b\":1,\"c\":2,\"b\":3}]}",
      "{\"cmd\":\"status\",\"\":1,\"\":2}",
  };
  int sub;
  dup_calls = 0;
  for (size_t i = 0; i < sizeof dup / sizeof dup[0]; i++) {
    char *r = sdw_control_handle_line(dup[i], strlen(dup[i]), count_handler, NULL, &sub);
    REQUIRE(r != NULL);
    CHECK_MSG(
        strcmp(r, "{\"id\":null,\"ok\":false,\"error\":\"the request has a duplicate key\"}") == 0,
        "%s -> %s", dup[i], r);
    free(r);
  }
  CHECK(dup_calls == 0);
  /* Not duplicates: the same key in different objects, keys that differ in
   * case only or by a prefix. */
  static const char *const fine[] = {
      "{\"cmd\":\"status\",\"x\":{\"cmd\":1},\"y\":{\"cmd\":2}}",
      "{\"cmd\":\"status\",\"CMD\":\"stop\",\"Cmd\":\"stop\"}",
      "{\"cmd\":\"status\",\"cm\":1,\"cmdx\":2,\"x\":[{\"a\":1},{\"a\":1}]}",
  };
  for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
    char *r = sdw_control_handle_line(fine[i], strlen(fine[i]), count_handler, NULL, &sub);
    CHECK_MSG(r && strcmp(r, "{\"id\":null,\"ok\":true,\"cmd\":\"status\"}") == 0, "%s -> %s",
              fine[i], r);
    free(r);
  }
  CHECK(dup_calls == 3);
  /* Many keys (a whole line of them) stay quick: sorted, not pairwise. */
  size_t cap = 70000, n = 0;
  char *big = malloc(cap);
  REQUIRE(big != NULL);
  n += (size_t)snprintf(big + n, cap - n, "{\"cmd\":\"status\"");
  for (int k = 0; k < 6000; k++)
    n += (size_t)snprintf(big + n, cap - n, ",\"k%d\":0", k);
  n += (size_t)snprintf(big + n, cap - n, ",\"k17\":1}");
  char *r = sdw_control_handle_line(big, n, count_handler, NULL, &sub);
  CHECK_MSG(r && strstr(r, "duplicate key") != NULL, "%.200s", r);
  free(r);
  free(big);
}

/* ---- deferred replies ----------------------------------------------------------------- */

typedef struct defer_job {
  sdw_control_server *server;
  sdw_control_deferred *pending[4];
  int npending;
} defer_job;

/* pause is deferred (as the trainer does until its step ends); status at once. */
static cJSON *defer_handler(void *user, const char *cmd, const cJSON *req) {
  defer_job *d = user;
  if (strcmp(cmd, "pause") == 0 && d->npending < 4) {
    sdw_control_deferred *t = sdw_control_server_defer(d->server, req);
    if (t) {
      d->pending[d->npending++] = t;
      return NULL;
    }
  }
  cJSON *r = sdw_control_reply_ok();
  cJSON_AddStringToObject(r, "cmd", cmd);
  return r;
}

/* One line from fd, polling the server inline; -2 after ~1 s of nothing. */
static int defer_line(int fd, char *out, size_t cap, defer_job *d) {
  size_t n = 0;
  for (int tries = 0; tries < 100;) {
    sdw_control_server_poll(d->server, 0, defer_handler, d);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10) == 0) {
      tries++;
      continue;
    }
    char c;
    if (recv(fd, &c, 1, 0) <= 0) return -1;
    if (c == '\n') {
      out[n] = 0;
      return (int)n;
    }
    if (n + 1 < cap) out[n++] = c;
  }
  return -2;
}

SDW_TEST(control_deferred_replies) {
  char path[512];
  sock_path(path, sizeof path, "defer.sock");
  defer_job d = {0};
  CHECK_OK(sdw_control_server_open(path, &d.server));
  REQUIRE(d.server != NULL);
  /* outside a handler there is nothing to defer */
  CHECK(sdw_control_server_defer(d.server, NULL) == NULL);
  int a = raw_connect(path), b = raw_connect(path);
  REQUIRE(a >= 0 && b >= 0);
  char line[4096];
  /* a: pause (deferred) then status on the same connection: status first */
  const char *two = "{\"id\":1,\"cmd\":\"pause\"}\n{\"id\":2,\"cmd\":\"status\"}\n";
  raw_send(a, two, strlen(two));
  REQUIRE(defer_line(a, line, sizeof line, &d) > 0);
  CHECK_MSG(strcmp(line, "{\"id\":2,\"ok\":true,\"cmd\":\"status\"}") == 0, "%s", line);
  CHECK(d.npending == 1);
  /* nothing more for a while the pause is pending; b is served meanwhile */
  const char *st = "{\"id\":\"b\",\"cmd\":\"status\"}\n";
  raw_send(b, st, strlen(st));
  REQUIRE(defer_line(b, line, sizeof line, &d) > 0);
  CHECK_MSG(strcmp(line, "{\"id\":\"b\",\"ok\":true,\"cmd\":\"status\"}") == 0, "%s", line);
  struct pollfd p = {a, POLLIN, 0};
  CHECK(poll(&p, 1, 50) == 0);
  /* the reply, with the request's id, once the job has acted */
  cJSON *body = sdw_control_reply_ok();
  cJSON_AddStringToObject(body, "state", "paused");
  sdw_control_server_reply(d.server, d.pending[0], body);
  REQUIRE(defer_line(a, line, sizeof line, &d) > 0);
  CHECK_MSG(strcmp(line, "{\"id\":1,\"ok\":true,\"state\":\"paused\"}") == 0, "%s", line);
  /* an error body and a NULL body */
  const char *p2 = "{\"id\":3,\"cmd\":\"pause\"}\n{\"id\":4,\"cmd\":\"pause\"}\n";
  raw_send(a, p2, strlen(p2));
  for (int k = 0; k < 50 && d.npending < 3; k++)
    sdw_control_server_poll(d.server, 10, defer_handler, &d);
  REQUIRE(d.npending == 3);
  sdw_control_server_reply(d.server, d.pending[1], sdw_control_reply_error("no: %d", 7));
  sdw_control_server_reply(d.server, d.pending[2], NULL);
  REQUIRE(defer_line(a, line, sizeof line, &d) > 0);
  CHECK_MSG(strcmp(line, "{\"id\":3,\"ok\":false,\"error\":\"no: 7\"}") == 0, "%s", line);
  REQUIRE(defer_line(a, line, sizeof line, &d) > 0);
  CHECK_MSG(strcmp(line, "{\"id\":4,\"ok\":false,\"error\":\"internal\"}") == 0, "%s", line);
  /* b defers, then goes away: the late reply is dropped (no crash, no leak,
   * and not sent to anyone else) */
  const char *p3 = "{\"id\":5,\"cmd\":\"pause\"}\n";
  raw_send(b, p3, strlen(p3));
  for (int k = 0; k < 50 && d.npending < 4; k++)
    sdw_control_server_poll(d.server, 10, defer_handler, &d);
  REQUIRE(d.npending == 4);
  close(b);
  for (int k = 0; k < 50 && sdw_control_server_clients(d.server) > 1; k++)
    sdw_control_server_poll(d.server, 10, defer_handler, &d);
  CHECK(sdw_control_server_clients(d.server) == 1);
  sdw_control_server_reply(d.server, d.pending[3], sdw_control_reply_ok());
  CHECK(defer_line(a, line, sizeof line, &d) == -2);
  close(a);
  sdw_control_server_close(d.server);
}
