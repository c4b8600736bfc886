/* The TCP engine: a star around rank 0 over plain sockets, for machines
 * without MPI and for exchanging ids (NCCL's unique id) before a GPU world
 * starts.
 *
 * Rendezvous: rank 0 listens on SDW_DIST_INIT=tcp://host:port, every other
 * rank connects (retrying until rank 0 is up) and sends a hello (magic,
 * world, rank); rank 0 answers all of them once the world is complete, so
 * init returns on every rank only when all are there. SDW_DIST_TIMEOUT
 * (seconds, default 600) bounds the rendezvous; collectives wait as long as
 * it takes (rank 0 may be validating while the others wait).
 *
 * Sum: per chunk, rank 0 receives the chunk of ranks 1, 2, ..., N-1 in that
 * order and adds them to its own in that order (acc = ((x0 + x1) + x2) ...,
 * in the buffer's precision), then sends the result to every rank: the
 * order is fixed and every rank receives rank 0's bits, so results are
 * deterministic and identical everywhere. Client and server move one chunk
 * at a time in lockstep, so neither side can block the other's writes.
 *
 * All ranks run the same binary on the same architecture (the hello's magic
 * catches a byte-order mismatch).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base/parse.h"
#include "core/train/allreduce_impl.h"

enum { HELLO_MAGIC = 0x31574453 /* "SDW1" */, CHUNK_BYTES = 1 << 22 };

typedef struct tcp_state {
  int rank, world;
  int *fds;    /* rank 0: fds[r] for r in 1..world-1; others: fds[0] to rank 0 */
  char *chunk; /* rank 0: receive buffer of CHUNK_BYTES */
} tcp_state;

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits until fd is ready for events or the deadline (<0: none) passes. */
static sdw_status wait_fd(int fd, short events, double deadline, const char *what) {
  for (;;) {
    int ms = -1;
    if (deadline >= 0) {
      double left = deadline - mono_s();
      if (left <= 0)
        return sdw_fail(SDW_ERR_IO, "tcp: timed out waiting for %s (SDW_DIST_TIMEOUT)", what);
      ms = (int)(left * 1000) + 1;
    }
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, 1, ms);
    if (rc > 0) return SDW_OK;
    if (rc < 0 && errno != EINTR) return sdw_fail(SDW_ERR_IO, "tcp: poll: %s", strerror(errno));
  }
}

static sdw_status send_all(int fd, const void *buf, size_t n, int peer) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      return sdw_fail(SDW_ERR_IO, "tcp: sending to rank %d: %s (did it exit?)", peer,
                      k < 0 ? strerror(errno) : "connection closed");
    p += k;
    n -= (size_t)k;
  }
  return SDW_OK;
}

/* deadline < 0: no timeout */
static sdw_status recv_all(int fd, void *buf, size_t n, int peer, double deadline) {
  char *p = buf;
  while (n > 0) {
    if (deadline >= 0) SDW_TRY(wait_fd(fd, POLLIN, deadline, "a peer's hello"));
    ssize_t k = recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      return sdw_fail(SDW_ERR_IO, "tcp: receiving from rank %d: %s (did it exit?)", peer,
                      k < 0 ? strerror(errno) : "connection closed");
    p += k;
    n -= (size_t)k;
  }
  return SDW_OK;
}

static void tcp_destroy(void *impl) {
  tcp_state *s = impl;
  if (!s) return;
  if (s->fds)
    for (int i = 0; i < s->world; i++)
      if (s->fds[i] >= 0) close(s->fds[i]);
  free(s->fds);
  free(s->chunk);
  free(s);
}

/* Sums n elements of elem bytes in place; add(acc, x, count) adds x into acc. */
static sdw_status tcp_sum(tcp_state *s, void *buf, int64_t n, size_t elem,
                          void (*add)(void *acc, const void *x, size_t count)) {
  char *p = buf;
  const size_t per = CHUNK_BYTES / elem;
  for (int64_t i = 0; i < n; i += (int64_t)per) {
    size_t count = (size_t)(n - i) < per ? (size_t)(n - i) : per;
    char *c = p + (size_t)i * elem;
    if (s->rank == 0) {
      for (int r = 1; r < s->world; r++) {
        SDW_TRY(recv_all(s->fds[r], s->chunk, count * elem, r, -1));
        add(c, s->chunk, count);
      }
      for (int r = 1; r < s->world; r++)
        SDW_TRY(send_all(s->fds[r], c, count * elem, r));
    } else {
      SDW_TRY(send_all(s->fds[0], c, count * elem, 0));
      SDW_TRY(recv_all(s->fds[0], c, count * elem, 0, -1));
    }
  }
  return SDW_OK;
}

static void add_f32(void *acc, const void *x, size_t count) {
  float *a = acc;
  const float *b = x;
  for (size_t i = 0; i < count; i++)
    a[i] += b[i];
}

static void add_f64(void *acc, const void *x, size_t count) {
  double *a = acc;
  const double *b = x;
  for (size_t i = 0; i < count; i++)
    a[i] += b[i];
}

static sdw_status tcp_sum_f32(void *impl, float *buf, int64_t n) {
  return tcp_sum(impl, buf, n, sizeof(float), add_f32);
}

static sdw_status tcp_sum_f64(void *impl, double *buf, int64_t n) {
  return tcp_sum(impl, buf, n, sizeof(double), add_f64);
}

static sdw_status tcp_broadcast(void *impl, void *buf, size_t bytes, int root) {
  tcp_state *s = impl;
  if (s->rank == 0) {
    if (root != 0) SDW_TRY(recv_all(s->fds[root], buf, bytes, root, -1));
    for (int r = 1; r < s->world; r++)
      if (r != root) SDW_TRY(send_all(s->fds[r], buf, bytes, r));
  } else if (s->rank == root) {
    SDW_TRY(send_all(s->fds[0], buf, bytes, 0));
  } else {
    SDW_TRY(recv_all(s->fds[0], buf, bytes, 0, -1));
  }
  return SDW_OK;
}

static sdw_status tcp_barrier(void *impl) {
  tcp_state *s = impl;
  char b = 'b';
  if (s->rank == 0) {
    for (int r = 1; r < s->world; r++)
      SDW_TRY(recv_all(s->fds[r], &b, 1, r, -1));
    for (int r = 1; r < s->world; r++)
      SDW_TRY(send_all(s->fds[r], &b, 1, r));
  } else {
    SDW_TRY(send_all(s->fds[0], &b, 1, 0));
    SDW_TRY(recv_all(s->fds[0], &b, 1, 0, -1));
  }
  return SDW_OK;
}

static const sdw_allreduce_ops tcp_ops = {
    .name = "tcp",
    .sum_f32 = tcp_sum_f32,
    .sum_f64 = tcp_sum_f64,
    .broadcast = tcp_broadcast,
    .barrier = tcp_barrier,
    .destroy = tcp_destroy,
};

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* "tcp://host:port" (host may be [v6]) into host[hn] and port[pn]. */
static sdw_status parse_init(const char *init, char *host, size_t hn, char *port, size_t pn) {
  const char *p = init;
  if (strncmp(p, "tcp://", 6) != 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: SDW_DIST_INIT '%s' must look like tcp://host:port", init);
  p += 6;
  const char *colon = strrchr(p, ':');
  const char *h = p, *he = colon;
  if (*p == '[') {
    const char *close = strchr(p, ']');
    if (!close || close[1] != ':') colon = NULL;
    h = p + 1;
    he = close;
  }
  int64_t port_num = 0;
  if (!colon || he <= h || (size_t)(he - h) >= hn || !sdw_parse_i64(colon + 1, 1, 65535, &port_num))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: SDW_DIST_INIT '%s' must look like tcp://host:port (port 1-65535)", init);
  memcpy(host, h, (size_t)(he - h));
  host[he - h] = '\0';
  snprintf(port, pn, "%d", (int)port_num);
  return SDW_OK;
}

static sdw_status tcp_listen_accept(tcp_state *s, const char *host, const char *port,
                                    double deadline) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) return sdw_fail(SDW_ERR_IO, "tcp: %s:%s: %s", host, port, gai_strerror(rc));
  int lfd = -1;
  int err = 0;
  for (struct addrinfo *ai = res; ai && lfd < 0; ai = ai->ai_next) {
    lfd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (lfd < 0) continue;
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, s->world) != 0) {
      err = errno;
      close(lfd);
      lfd = -1;
    }
  }
  freeaddrinfo(res);
  if (lfd < 0)
    return sdw_fail(SDW_ERR_IO, "tcp: rank 0 cannot listen on %s:%s: %s", host, port,
                    strerror(err ? err : EADDRNOTAVAIL));

  sdw_status st = SDW_OK;
  int joined = 0;
  while (st == SDW_OK && joined < s->world - 1) {
    st = wait_fd(lfd, POLLIN, deadline, "the other ranks to connect");
    if (st != SDW_OK) break;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int32_t hello[4];
    if (recv_all(fd, hello, sizeof hello, -1, mono_s() + 10.0) != SDW_OK ||
        hello[0] != HELLO_MAGIC) {
      close(fd); /* not one of ours (a port scan, a stale client): keep waiting */
      sdw_clear_error();
      continue;
    }
    if (hello[2] != s->world) {
      close(fd);
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: rank %d says the world has %d ranks, rank 0 says %d (SDW_WORLD_SIZE)",
                    hello[3], hello[2], s->world);
    } else if (hello[3] < 1 || hello[3] >= s->world || s->fds[hello[3]] >= 0) {
      close(fd);
      st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "tcp: rank %d joined twice or is out of range",
                    hello[3]);
    } else {
      set_nodelay(fd);
      s->fds[hello[3]] = fd;
      joined++;
    }
  }
  close(lfd);
  /* all there: tell everyone */
  for (int r = 1; st == SDW_OK && r < s->world; r++) {
    int32_t ack[2] = {HELLO_MAGIC, s->world};
    st = send_all(s->fds[r], ack, sizeof ack, r);
  }
  return st;
}

/* A connect to a local port in the ephemeral range, while nobody listens
 * there, can be answered by the connecting socket itself (TCP simultaneous
 * open when the kernel picks that very port as the source): treat it as
 * "not listening yet". */
static int self_connected(int fd) {
  struct sockaddr_storage a, b;
  socklen_t la = sizeof a, lb = sizeof b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 ||
      getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
    return 0;
  if (la == lb && memcmp(&a, &b, la) == 0) {
    errno = ECONNREFUSED;
    return 1;
  }
  return 0;
}

static sdw_status tcp_connect(tcp_state *s, const char *host, const char *port, double deadline) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int fd = -1;
  int err = 0;
  while (fd < 0) {
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) return sdw_fail(SDW_ERR_IO, "tcp: %s:%s: %s", host, port, gai_strerror(rc));
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
      fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      errno = 0;
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 || self_connected(fd)) {
        err = errno ? errno : ECONNREFUSED;
        close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(res);
    if (fd >= 0) break;
    if (mono_s() > deadline)
      return sdw_fail(SDW_ERR_IO, "tcp: rank %d cannot reach rank 0 at %s:%s: %s", s->rank, host,
                      port, strerror(err));
    struct timespec nap = {0, 100 * 1000 * 1000}; /* rank 0 may not be listening yet */
    nanosleep(&nap, NULL);
  }
  set_nodelay(fd);
  s->fds[0] = fd;
  int32_t hello[4] = {HELLO_MAGIC, 1, s->world, s->rank};
  SDW_TRY(send_all(fd, hello, sizeof hello, 0));
  int32_t ack[2];
  SDW_TRY(recv_all(fd, ack, sizeof ack, 0, deadline));
  if (ack[0] != HELLO_MAGIC || ack[1] != s->world)
    return sdw_fail(SDW_ERR_FORMAT, "tcp: %s:%s is not an sdw rank 0 of this world", host, port);
  return SDW_OK;
}

sdw_status sdw_allreduce_tcp_connect(const char *init, int world, int rank, double timeout_s,
                                     const sdw_allreduce_ops **engine, void **impl) {
  if (world < 1 || rank < 0 || rank >= world)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "tcp: rank %d of a world of %d", rank, world);
  char host[256], port[16];
  SDW_TRY(parse_init(init, host, sizeof host, port, sizeof port));
  tcp_state *s = calloc(1, sizeof *s);
  if (!s) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tcp: out of host memory");
  s->rank = rank;
  s->world = world;
  s->fds = malloc((size_t)world * sizeof *s->fds);
  s->chunk = rank == 0 ? malloc(CHUNK_BYTES) : NULL;
  if (!s->fds || (rank == 0 && !s->chunk)) {
    tcp_destroy(s);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "tcp: out of host memory");
  }
  for (int i = 0; i < world; i++)
    s->fds[i] = -1;
  const double deadline = mono_s() + timeout_s;
  sdw_status st = SDW_OK;
  if (world > 1)
    st = rank == 0 ? tcp_listen_accept(s, host, port, deadline)
                   : tcp_connect(s, host, port, deadline);
  if (st != SDW_OK) {
    tcp_destroy(s);
    return st;
  }
  *engine = &tcp_ops;
  *impl = s;
  return SDW_OK;
}

sdw_status sdw_allreduce_tcp_open(const sdw_allreduce_ops **engine, void **impl, int *rank,
                                  int *world) {
  const char *init = getenv("SDW_DIST_INIT");
  const char *ws = getenv("SDW_WORLD_SIZE");
  const char *rs = getenv("SDW_RANK");
  const char *ts = getenv("SDW_DIST_TIMEOUT");
  int64_t w = 0, r = 0;
  double timeout = 600;
  if (!init || !*init)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: set SDW_DIST_INIT=tcp://host:port (rank 0 listens there), "
                    "SDW_WORLD_SIZE and SDW_RANK");
  if (!ws || !sdw_parse_i64(ws, 1, 65536, &w))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: SDW_WORLD_SIZE must be the number of processes (1-65536), not '%s'",
                    ws ? ws : "");
  if (!rs || !sdw_parse_i64(rs, 0, w - 1, &r))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: SDW_RANK must be this process's rank (0-%lld), not '%s'",
                    (long long)(w - 1), rs ? rs : "");
  if (ts && *ts && !sdw_parse_double(ts, 0.1, 1e7, &timeout))
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT,
                    "tcp: SDW_DIST_TIMEOUT must be seconds (0.1 or more), not '%s'", ts);
  SDW_TRY(sdw_allreduce_tcp_connect(init, (int)w, (int)r, timeout, engine, impl));
  *rank = (int)r;
  *world = (int)w;
  return SDW_OK;
}
