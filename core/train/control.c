/* The control protocol: line handling, the server (the job's side) and the
 * client (sdw ctl, the workbench). See control.h. */
#include "core/train/control.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/json.h"

/* ---- small helpers ----------------------------------------------------------- */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (deadline < 0: forever -> -1). */
static int ms_left(int64_t deadline) {
  if (deadline < 0) return -1;
  int64_t left = deadline - now_ms();
  if (left < 0) return 0;
  return left > 1000000 ? 1000000 : (int)left;
}

/* A growable byte buffer. */
typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static int buf_append(buf *b, const void *data, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
  b->p[b->n] = 0;
  return 0;
}

static void buf_consume(buf *b, size_t n) {
  if (n == 0) return;
  memmove(b->p, b->p + n, b->n - n);
  b->n -= n;
  if (b->p) b->p[b->n] = 0;
}

static void buf_free(buf *b) {
  free(b->p);
  b->p = NULL, b->n = b->cap = 0;
}

static int set_nonblocking(int fd, int on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -1;
  return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* ---- replies and request validation ----------------------------------------- */

cJSON *sdw_control_reply_ok(void) {
  cJSON *r = cJSON_CreateObject();
  if (r) cJSON_AddBoolToObject(r, "ok", 1);
  return r;
}

cJSON *sdw_control_reply_error(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *r = cJSON_CreateObject();
  if (!r) return NULL;
  cJSON_AddBoolToObject(r, "ok", 0);
  cJSON_AddStringToObject(r, "error", msg);
  return r;
}

static const char *const known_cmds[] = {"status",     "subscribe", "pause", "resume",
                                         "checkpoint", "sample",    "stop"};

static int is_integer(const cJSON *v, double lo, double hi) {
  return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
         v->valuedouble >= lo && v->valuedouble <= hi;
}

/* The arguments of "sample": types and ranges, so the handler can trust them.
 * NULL when fine, else an error reply. */
static cJSON *check_sample(const cJSON *req) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "prompt");
  if (!cJSON_IsString(v)) return sdw_control_reply_error("sample needs a \"prompt\" string");
  v = cJSON_GetObjectItemCaseSensitive(req, "negative");
  if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
    return sdw_control_reply_error("\"negative\" must be a string");
  v = cJSON_GetObjectItemCaseSensitive(req, "steps");
  if (v && !cJSON_IsNull(v) && !is_integer(v, 1, 1000))
    return sdw_control_reply_error("\"steps\" must be an integer from 1 to 1000");
  v = cJSON_GetObjectItemCaseSensitive(req, "cfg");
  if (v && !cJSON_IsNull(v) &&
      !(cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
        v->valuedouble <= 100))
    return sdw_control_reply_error("\"cfg\" must be a number from 0 to 100");
  v = cJSON_GetObjectItemCaseSensitive(req, "seed");
  if (v && !cJSON_IsNull(v) && !is_integer(v, 0, 9007199254740992.0))
    return sdw_control_reply_error("\"seed\" must be an integer from 0 to 2^53");
  v = cJSON_GetObjectItemCaseSensitive(req, "ema");
  if (v && !cJSON_IsNull(v) && !cJSON_IsBool(v))
    return sdw_control_reply_error("\"ema\" must be true or false");
  return NULL;
}

/* Prints reply as one line {"id":..,"ok":bool,...}: "id" copied from id
 * (null when absent) and first, "ok" a bool ("ok" absent counts as true; a
 * non-bool, or false without an "error" string, becomes an internal error). */
static char *finish_reply(cJSON *reply, const cJSON *id) {
  if (!cJSON_IsObject(reply)) {
    cJSON_Delete(reply);
    reply = sdw_control_reply_error("internal");
    if (!reply) return NULL;
  }
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
  int okv = ok ? cJSON_IsTrue(ok) : 1;
  cJSON *out = cJSON_CreateObject();
  cJSON *idc = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
  if (!out || !idc || !cJSON_AddItemToObject(out, "id", idc) ||
      !cJSON_AddBoolToObject(out, "ok", okv)) {
    if (out && !cJSON_GetObjectItemCaseSensitive(out, "id")) cJSON_Delete(idc);
    cJSON_Delete(out);
    cJSON_Delete(reply);
    return NULL;
  }
  while (reply->child) {
    cJSON *item = cJSON_DetachItemViaPointer(reply, reply->child);
    if (strcmp(item->string, "id") == 0 || strcmp(item->string, "ok") == 0) {
      cJSON_Delete(item);
      continue;
    }
    cJSON_AddItemToObject(out, item->string, item); /* key copied; item's own freed with it */
  }
  cJSON_Delete(reply);
  if (!okv && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(out, "error"))) {
    cJSON_DeleteItemFromObjectCaseSensitive(out, "error");
    cJSON_AddStringToObject(out, "error", "internal");
  }
  char *text = cJSON_PrintUnformatted(out);
  cJSON_Delete(out);
  return text;
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when some object in v (at any depth) has a key twice. cJSON keeps both
 * and its lookups answer the first, so {"cmd":"status","cmd":"stop"} would
 * be read one way here and another way by a different parser: refused. The
 * keys are sorted (not compared pairwise) so a 64 KiB line of keys stays
 * cheap. -1 on out of memory. */
static int has_duplicate_keys(const cJSON *v) {
  if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) return 0;
  size_t n = 0;
  for (const cJSON *c = v->child; c; c = c->next)
    n++;
  if (cJSON_IsObject(v) && n > 1) {
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) return -1;
    size_t k = 0;
    for (const cJSON *c = v->child; c; c = c->next)
      keys[k++] = c->string ? c->string : "";
    qsort(keys, n, sizeof *keys, cmp_keys);
    int dup = 0;
    for (size_t i = 1; i < n && !dup; i++)
      dup = strcmp(keys[i - 1], keys[i]) == 0;
    free(keys);
    if (dup) return 1;
  }
  for (const cJSON *c = v->child; c; c = c->next) {
    int r = has_duplicate_keys(c);
    if (r) return r;
  }
  return 0;
}

char *sdw_control_handle_line(const char *line, size_t n, sdw_control_handler handler, void *user,
                              int *subscribe) {
  *subscribe = 0;
  if (n > 0 && line[n - 1] == '\r') n--;
  if (memchr(line, 0, n) || !sdw_utf8_valid(line, n))
    return finish_reply(sdw_control_reply_error("the request is not UTF-8 text"), NULL);
  const char *end = NULL;
  cJSON *req = cJSON_ParseWithLengthOpts(line, n, &end, 0);
  if (req && end) /* only whitespace may follow the value */
    for (const char *p = end; p < line + n; p++)
      if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
        cJSON_Delete(req);
        req = NULL;
        break;
      }
  if (!req) return finish_reply(sdw_control_reply_error("malformed JSON"), NULL);
  if (!cJSON_IsObject(req)) {
    cJSON_Delete(req);
    return finish_reply(sdw_control_reply_error("a request is a JSON object"), NULL);
  }
  int dup = has_duplicate_keys(req);
  if (dup) {
    cJSON_Delete(req);
    return dup < 0 ? NULL
                   : finish_reply(sdw_control_reply_error("the request has a duplicate key"), NULL);
  }
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
  if (id && !cJSON_IsNumber(id) && !cJSON_IsString(id)) id = NULL;
  const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(req, "cmd");
  cJSON *reply = NULL;
  if (!cJSON_IsString(cmd)) {
    reply = sdw_control_reply_error("the request has no \"cmd\" string");
  } else {
    int known = 0;
    for (size_t i = 0; i < sizeof known_cmds / sizeof known_cmds[0]; i++)
      if (strcmp(cmd->valuestring, known_cmds[i]) == 0) known = 1;
    if (!known)
      reply = sdw_control_reply_error("unknown command '%.40s'; the commands are status, "
                                      "subscribe, pause, resume, checkpoint, sample, stop",
                                      cmd->valuestring);
    else if (strcmp(cmd->valuestring, "subscribe") == 0) {
      *subscribe = 1;
      reply = sdw_control_reply_ok();
    } else if (strcmp(cmd->valuestring, "sample") == 0 && (reply = check_sample(req)) != NULL) {
      /* refused by check_sample */
    } else {
      reply = handler ? handler(user, cmd->valuestring, req)
                      : sdw_control_reply_error("this job takes no commands");
    }
  }
  char *text = finish_reply(reply, id);
  cJSON_Delete(req);
  return text;
}

/* ---- socket addresses of any length ------------------------------------------ */

sdw_status sdw_control_socket_path(const char *run_dir, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s/control.sock", run_dir);
  if (n < 0 || (size_t)n >= cap)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: run directory path too long", run_dir);
  return SDW_OK;
}

static int fill_addr(struct sockaddr_un *a, const char *path) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sun_path) return -1;
  strcpy(a->sun_path, path);
  return 0;
}

/* bind (is_bind) or connect fd to path. Paths that do not fit sun_path go
 * through the directory: /proc/self/fd/N/<name> with N an O_PATH descriptor
 * of the directory, or, when even that is too long (a long file name), a
 * forked child that chdirs into the directory and binds/connects the shared
 * socket by its bare name. Returns 0 or -1 with errno set. */
static int addr_op(int fd, const char *path, int is_bind) {
  struct sockaddr_un a;
  if (fill_addr(&a, path) == 0)
    return is_bind ? bind(fd, (struct sockaddr *)&a, sizeof a)
                   : connect(fd, (struct sockaddr *)&a, sizeof a);
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  size_t dlen = slash ? (size_t)(slash - path) : 0;
  char *dir = malloc(dlen + 2);
  if (!dir) return errno = ENOMEM, -1;
  if (!slash)
    strcpy(dir, ".");
  else if (dlen == 0)
    strcpy(dir, "/");
  else
    memcpy(dir, path, dlen), dir[dlen] = 0;
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (dfd < 0) return -1;
  char proc[sizeof a.sun_path + 64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", dfd, name);
  int rc, err;
  if (fill_addr(&a, proc) == 0 && access("/proc/self/fd", F_OK) == 0) {
    rc = is_bind ? bind(fd, (struct sockaddr *)&a, sizeof a)
                 : connect(fd, (struct sockaddr *)&a, sizeof a);
    err = errno;
  } else if (fill_addr(&a, name) != 0) {
    rc = -1, err = ENAMETOOLONG;
  } else {
    /* The child shares the socket (same open file description), so its bind
     * or connect is the parent's. Only async-signal-safe calls in the child. */
    pid_t pid = fork();
    if (pid < 0) {
      rc = -1, err = errno;
    } else if (pid == 0) {
      if (fchdir(dfd) != 0) _exit(255);
      int r = is_bind ? bind(fd, (struct sockaddr *)&a, sizeof a)
                      : connect(fd, (struct sockaddr *)&a, sizeof a);
      _exit(r == 0 ? 0 : (errno & 0xff) ? errno & 0xff : 254);
    } else {
      int ws = 0;
      while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
      }
      int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 255;
      rc = code == 0 ? 0 : -1;
      err = code == 0 ? 0 : code == 255 || code == 254 ? EIO : code;
    }
  }
  close(dfd);
  errno = err;
  return rc;
}

/* A blocking connect attempt: 0 connected (fd returned in *out), else errno. */
static int try_connect(const char *path, int *out) {
  *out = -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  if (addr_op(fd, path, 0) != 0) {
    int e = errno;
    close(fd);
    return e;
  }
  *out = fd;
  return 0;
}

/* ---- server ---------------------------------------------------------------- */

typedef struct client {
  uint64_t serial; /* names the client in a deferred reply (never reused) */
  int fd;
  int subscribed;
  int dead; /* to be closed at the end of this poll */
  buf in, out;
  size_t scanned; /* leading bytes of in known to hold no '\n' (1-byte writes stay linear) */
} client;

struct sdw_control_server {
  int fd;
  char *path;
  dev_t dev;
  ino_t ino;
  uid_t uid; /* the peer uid accepted */
  client *clients[SDW_CONTROL_MAX_CLIENTS];
  int nclients;
  uint64_t next_serial;
  client *current;  /* the client whose request the handler is answering */
  int deferred_now; /* the handler deferred that request */
};

struct sdw_control_deferred {
  uint64_t serial;
  cJSON *id; /* the request's "id" (NULL: none) */
};

static void client_flush(client *c) {
  while (c->out.n > 0 && !c->dead) {
    ssize_t w = send(c->fd, c->out.p, c->out.n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      buf_consume(&c->out, (size_t)w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      c->dead = 1;
    }
  }
}

/* Queues one line (text + '\n'); a client that cannot keep up is dropped. */
static void client_queue(client *c, const char *text, size_t n) {
  if (c->dead) return;
  if (c->out.n + n + 1 > SDW_CONTROL_MAX_PENDING || buf_append(&c->out, text, n) != 0 ||
      buf_append(&c->out, "\n", 1) != 0) {
    c->dead = 1;
    return;
  }
  client_flush(c);
}

static void client_free(client *c) {
  if (c->fd >= 0) close(c->fd);
  buf_free(&c->in);
  buf_free(&c->out);
  free(c);
}

/* Handles the complete lines in c->in. */
static void client_lines(sdw_control_server *s, client *c, sdw_control_handler handler,
                         void *user) {
  size_t start = 0, from = c->scanned;
  while (!c->dead) {
    char *nl = memchr(c->in.p + start + from, '\n', c->in.n - start - from);
    size_t len = nl ? (size_t)(nl - (c->in.p + start)) : c->in.n - start;
    if (len > SDW_CONTROL_MAX_LINE) {
      /* Say why, then close: the rest of the stream cannot be framed. */
      char *r = finish_reply(
          sdw_control_reply_error("request line longer than %d bytes", SDW_CONTROL_MAX_LINE), NULL);
      if (r) client_queue(c, r, strlen(r));
      free(r);
      c->dead = 1;
      break;
    }
    if (!nl) {
      c->scanned = len; /* no '\n' there: the next search starts after it */
      break;
    }
    from = 0;
    int subscribe = 0;
    s->current = c;
    s->deferred_now = 0;
    char *r = sdw_control_handle_line(c->in.p + start, len, handler, user, &subscribe);
    s->current = NULL;
    if (subscribe) c->subscribed = 1;
    if (s->deferred_now) {
      /* answered later by sdw_control_server_reply */
    } else if (r) {
      client_queue(c, r, strlen(r));
    } else {
      c->dead = 1;
    }
    s->deferred_now = 0;
    free(r);
    start += len + 1;
  }
  if (!c->dead) buf_consume(&c->in, start);
}

/* Reads what is there (at most ~1 MiB per poll, so one client cannot starve
 * the job) and handles the complete lines. */
static void client_read(sdw_control_server *s, client *c, sdw_control_handler handler, void *user) {
  char chunk[65536];
  for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
    ssize_t r = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (r > 0) {
      if (buf_append(&c->in, chunk, (size_t)r) != 0) {
        c->dead = 1;
        break;
      }
      client_lines(s, c, handler, user);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      c->dead = 1; /* end of stream or error */
    }
  }
}

static void reap_clients(sdw_control_server *s) {
  int k = 0;
  for (int i = 0; i < s->nclients; i++) {
    if (s->clients[i]->dead)
      client_free(s->clients[i]);
    else
      s->clients[k++] = s->clients[i];
  }
  s->nclients = k;
}

sdw_status sdw_control_server_open(const char *socket_path, sdw_control_server **out) {
  *out = NULL;
  struct stat st;
  if (lstat(socket_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return sdw_fail(SDW_ERR_IO, "%s exists and is not a socket; remove it", socket_path);
    int fd;
    int e = try_connect(socket_path, &fd);
    if (e == 0) {
      close(fd);
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                      "another job owns %s (its control socket answers); stop it first",
                      socket_path);
    }
    if (e != ECONNREFUSED && e != ENOENT)
      return sdw_fail(SDW_ERR_IO, "%s: cannot check the old socket: %s", socket_path, strerror(e));
    /* Stale: left by a job that died. */
    if (unlink(socket_path) != 0 && errno != ENOENT)
      return sdw_fail(SDW_ERR_IO, "%s: cannot remove the stale socket: %s", socket_path,
                      strerror(errno));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return sdw_fail(SDW_ERR_IO, "socket: %s", strerror(errno));
  /* umask makes the file 0600 from its creation (chmod after bind would leave
   * a window); the peer uid check covers us anyway. */
  mode_t old = umask(0177);
  int rc = addr_op(fd, socket_path, 1);
  int err = errno;
  umask(old);
  if (rc != 0) {
    close(fd);
    if (err == EADDRINUSE)
      return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "another job owns %s (it was just created)",
                      socket_path);
    return sdw_fail(SDW_ERR_IO, "%s: cannot bind: %s", socket_path, strerror(err));
  }
  if (chmod(socket_path, 0600) != 0 || lstat(socket_path, &st) != 0 ||
      listen(fd, SDW_CONTROL_MAX_CLIENTS) != 0) {
    err = errno;
    close(fd);
    unlink(socket_path);
    return sdw_fail(SDW_ERR_IO, "%s: %s", socket_path, strerror(err));
  }
  sdw_control_server *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(socket_path))) {
    free(s);
    close(fd);
    unlink(socket_path);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control server: out of memory");
  }
  s->fd = fd;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->uid = geteuid();
  *out = s;
  return SDW_OK;
}

void sdw_control_server_close(sdw_control_server *s) {
  if (!s) return;
  for (int i = 0; i < s->nclients; i++)
    client_free(s->clients[i]);
  close(s->fd);
  /* Remove the file only if it is still ours (not a newer job's). */
  struct stat st;
  if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino) unlink(s->path);
  free(s->path);
  free(s);
}

void sdw_control_server_set_peer_uid(sdw_control_server *s, unsigned uid) { s->uid = uid; }

static void accept_clients(sdw_control_server *s) {
  for (;;) {
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or EMFILE and the like: try again next poll */
    }
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != s->uid ||
        s->nclients >= SDW_CONTROL_MAX_CLIENTS) {
      close(fd);
      continue;
    }
    client *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->serial = ++s->next_serial;
    s->clients[s->nclients++] = c;
  }
}

sdw_status sdw_control_server_poll(sdw_control_server *s, int timeout_ms,
                                   sdw_control_handler handler, void *user) {
  reap_clients(s); /* those a broadcast dropped */
  struct pollfd pfd[SDW_CONTROL_MAX_CLIENTS + 1];
  pfd[0].fd = s->fd;
  pfd[0].events = POLLIN;
  pfd[0].revents = 0;
  int n = s->nclients;
  for (int i = 0; i < n; i++) {
    pfd[i + 1].fd = s->clients[i]->fd;
    pfd[i + 1].events = (short)(POLLIN | (s->clients[i]->out.n ? POLLOUT : 0));
    pfd[i + 1].revents = 0;
  }
  int rc = poll(pfd, (nfds_t)n + 1, timeout_ms);
  if (rc < 0) {
    if (errno == EINTR) return SDW_OK;
    return sdw_fail(SDW_ERR_IO, "%s: poll: %s", s->path, strerror(errno));
  }
  if (rc == 0) return SDW_OK;
  for (int i = 0; i < n; i++) {
    client *c = s->clients[i];
    short ev = pfd[i + 1].revents;
    if (ev & POLLOUT) client_flush(c);
    if (ev & (POLLIN | POLLHUP | POLLERR)) client_read(s, c, handler, user);
    if (ev & (POLLERR | POLLNVAL)) c->dead = 1;
  }
  if (pfd[0].revents & (POLLERR | POLLNVAL))
    return sdw_fail(SDW_ERR_IO, "%s: the listening socket failed", s->path);
  if (pfd[0].revents & POLLIN) accept_clients(s);
  reap_clients(s);
  return SDW_OK;
}

void sdw_control_server_broadcast(sdw_control_server *s, const cJSON *event) {
  char *text = NULL;
  for (int i = 0; i < s->nclients; i++) {
    client *c = s->clients[i];
    if (!c->subscribed || c->dead) continue;
    if (!text && !(text = cJSON_PrintUnformatted(event))) return;
    client_queue(c, text, strlen(text));
  }
  free(text);
  /* Dropped clients are closed by the next poll: broadcast may be called by
   * a handler while poll walks the client list. */
}

sdw_control_deferred *sdw_control_server_defer(sdw_control_server *s, const cJSON *request) {
  if (!s || !s->current) return NULL;
  sdw_control_deferred *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(request, "id");
  if (id && (cJSON_IsNumber(id) || cJSON_IsString(id)) && !(d->id = cJSON_Duplicate(id, 1))) {
    free(d);
    return NULL;
  }
  d->serial = s->current->serial;
  s->deferred_now = 1;
  return d;
}

void sdw_control_server_reply(sdw_control_server *s, sdw_control_deferred *d, cJSON *body) {
  if (!d) {
    cJSON_Delete(body);
    return;
  }
  client *c = NULL;
  for (int i = 0; s && i < s->nclients; i++)
    if (s->clients[i]->serial == d->serial && !s->clients[i]->dead) c = s->clients[i];
  if (c) {
    char *r = finish_reply(body, d->id);
    if (r)
      client_queue(c, r, strlen(r));
    else
      c->dead = 1;
    free(r);
  } else {
    cJSON_Delete(body); /* the client went away meanwhile */
  }
  cJSON_Delete(d->id);
  free(d);
}

int sdw_control_server_fd(const sdw_control_server *s) { return s->fd; }
int sdw_control_server_clients(const sdw_control_server *s) {
  int k = 0;
  for (int i = 0; i < s->nclients; i++)
    k += !s->clients[i]->dead;
  return k;
}
int sdw_control_server_subscribers(const sdw_control_server *s) {
  int k = 0;
  for (int i = 0; i < s->nclients; i++)
    k += s->clients[i]->subscribed && !s->clients[i]->dead;
  return k;
}

/* ---- client -------------------------------------------------------------------- */

enum { CLIENT_MAX_LINE = 16 << 20 }; /* replies are ours; generous but bounded */

struct sdw_control_client {
  int fd;
  int64_t next_id;
  int eof;
  buf in;
  cJSON **events;
  size_t nevents, cap_events;
};

sdw_status sdw_control_connect(const char *socket_path, sdw_control_client **out) {
  *out = NULL;
  int fd;
  int e = try_connect(socket_path, &fd);
  if (e == ENOENT)
    return sdw_fail(SDW_ERR_NOT_FOUND, "%s: no control socket (no job is running there)",
                    socket_path);
  if (e == ECONNREFUSED)
    return sdw_fail(SDW_ERR_IO, "%s: nobody answers (the job is not running)", socket_path);
  if (e != 0) return sdw_fail(SDW_ERR_IO, "%s: cannot connect: %s", socket_path, strerror(e));
  set_nonblocking(fd, 1);
  sdw_control_client *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control client: out of memory");
  }
  c->fd = fd;
  c->next_id = 1;
  *out = c;
  return SDW_OK;
}

void sdw_control_client_close(sdw_control_client *c) {
  if (!c) return;
  close(c->fd);
  buf_free(&c->in);
  for (size_t i = 0; i < c->nevents; i++)
    cJSON_Delete(c->events[i]);
  free(c->events);
  free(c);
}

int sdw_control_client_fd(const sdw_control_client *c) { return c->fd; }

static sdw_status queue_event(sdw_control_client *c, cJSON *ev) {
  if (c->nevents == c->cap_events) {
    size_t cap = c->cap_events ? c->cap_events * 2 : 16;
    cJSON **p = realloc(c->events, cap * sizeof *p);
    if (!p) {
      cJSON_Delete(ev);
      return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control client: out of memory");
    }
    c->events = p, c->cap_events = cap;
  }
  c->events[c->nevents++] = ev;
  return SDW_OK;
}

/* Next complete line as parsed JSON (*msg NULL on timeout). */
static sdw_status read_message(sdw_control_client *c, int64_t deadline, cJSON **msg) {
  *msg = NULL;
  for (;;) {
    char *nl = c->in.n ? memchr(c->in.p, '\n', c->in.n) : NULL;
    if (nl) {
      size_t len = (size_t)(nl - c->in.p);
      cJSON *m = cJSON_ParseWithLength(c->in.p, len);
      buf_consume(&c->in, len + 1);
      if (!cJSON_IsObject(m)) {
        cJSON_Delete(m);
        return sdw_fail(SDW_ERR_FORMAT, "the job sent a line that is not a JSON object");
      }
      *msg = m;
      return SDW_OK;
    }
    if (c->in.n > CLIENT_MAX_LINE)
      return sdw_fail(SDW_ERR_FORMAT, "the job sent a line longer than %d bytes", CLIENT_MAX_LINE);
    if (c->eof) return sdw_fail(SDW_ERR_IO, "the job closed the connection");
    struct pollfd p = {c->fd, POLLIN, 0};
    int rc = poll(&p, 1, ms_left(deadline));
    if (rc < 0 && errno == EINTR) return sdw_fail(SDW_ERR_INTERRUPTED, "interrupted");
    if (rc < 0) return sdw_fail(SDW_ERR_IO, "poll: %s", strerror(errno));
    if (rc == 0) return SDW_OK;
    char chunk[65536];
    ssize_t r = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (r > 0) {
      if (buf_append(&c->in, chunk, (size_t)r) != 0)
        return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control client: out of memory");
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      c->eof = 1;
    }
  }
}

sdw_status sdw_control_call(sdw_control_client *c, const cJSON *request, int timeout_ms,
                            cJSON **reply) {
  *reply = NULL;
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  cJSON *req = cJSON_Duplicate(request, 1);
  if (!req) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control client: out of memory");
  int64_t id = c->next_id++;
  cJSON_DeleteItemFromObjectCaseSensitive(req, "id");
  cJSON_AddNumberToObject(req, "id", (double)id);
  char *text = cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (!text) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "control client: out of memory");
  size_t n = strlen(text);
  text[n] = '\n'; /* replaces the NUL; length tracked in n + 1 */
  size_t off = 0;
  sdw_status st = SDW_OK;
  while (off < n + 1) {
    ssize_t w = send(c->fd, text + off, n + 1 - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct pollfd p = {c->fd, POLLOUT, 0};
      int rc = poll(&p, 1, ms_left(deadline));
      if (rc == 0) {
        st = sdw_fail(SDW_ERR_IO, "the job did not take the request within %d ms", timeout_ms);
        break;
      }
      continue;
    }
    st = sdw_fail(SDW_ERR_IO, "the job went away (%s)", strerror(errno));
    break;
  }
  free(text);
  SDW_TRY(st);
  for (;;) {
    cJSON *m;
    SDW_TRY(read_message(c, deadline, &m));
    if (!m) return sdw_fail(SDW_ERR_IO, "the job did not answer within %d ms", timeout_ms);
    if (cJSON_GetObjectItemCaseSensitive(m, "event")) {
      SDW_TRY(queue_event(c, m));
      continue;
    }
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(m, "id");
    if (cJSON_IsNumber(rid) && rid->valuedouble == (double)id) {
      *reply = m;
      return SDW_OK;
    }
    cJSON_Delete(m); /* a late reply to an earlier call that timed out */
  }
}

sdw_status sdw_control_next_event(sdw_control_client *c, int timeout_ms, cJSON **event) {
  *event = NULL;
  if (c->nevents) {
    *event = c->events[0];
    memmove(c->events, c->events + 1, (c->nevents - 1) * sizeof *c->events);
    c->nevents--;
    return SDW_OK;
  }
  int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  for (;;) {
    cJSON *m;
    SDW_TRY(read_message(c, deadline, &m));
    if (!m) return SDW_OK;
    if (cJSON_GetObjectItemCaseSensitive(m, "event")) {
      *event = m;
      return SDW_OK;
    }
    cJSON_Delete(m); /* replies nobody waits for */
  }
}
