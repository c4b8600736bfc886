/* Loopback static-file server (see http_serve.h). */
#include "pipeline/http_serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

struct sdw_http_server {
  int fd;
  char root[PATH_MAX];
  pthread_t thread;
  atomic_int stop;
  atomic_long requests;
};

static void send_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}

static void send_status(int fd, int code, const char *text) {
  char buf[256];
  int n = snprintf(buf, sizeof buf,
                   "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", code, text);
  send_all(fd, buf, (size_t)n);
}

static const char *content_type(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot) return "application/octet-stream";
  if (strcmp(dot, ".png") == 0) return "image/png";
  if (strcmp(dot, ".jpg") == 0 || strcmp(dot, ".jpeg") == 0) return "image/jpeg";
  if (strcmp(dot, ".parquet") == 0) return "application/vnd.apache.parquet";
  return "application/octet-stream";
}

/* Reads the request head (up to the blank line) with a deadline. */
static bool read_head(int fd, char *buf, size_t size) {
  size_t n = 0;
  while (n + 1 < size) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return false;
    ssize_t k = recv(fd, buf + n, size - 1 - n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    n += (size_t)k;
    buf[n] = '\0';
    if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) return true;
  }
  return false;
}

static void answer(sdw_http_server *s, int fd) {
  char head[8192], method[16], target[4096];
  if (!read_head(fd, head, sizeof head) ||
      sscanf(head, "%15s %4095s HTTP/1.%*c", method, target) != 2) {
    send_status(fd, 400, "Bad Request");
    return;
  }
  const bool is_head = strcmp(method, "HEAD") == 0;
  if (!is_head && strcmp(method, "GET") != 0) {
    send_status(fd, 405, "Method Not Allowed");
    return;
  }
  char *q = strpbrk(target, "?#");
  if (q) *q = '\0';
  if (target[0] != '/' || strstr(target, "/.") || strchr(target, '%')) {
    send_status(fd, 404, "Not Found");
    return;
  }
  char path[PATH_MAX + 4096], real[PATH_MAX];
  snprintf(path, sizeof path, "%s%s", s->root, target);
  const size_t rl = strlen(s->root);
  struct stat sb;
  if (!realpath(path, real) || strncmp(real, s->root, rl) != 0 || real[rl] != '/' ||
      stat(real, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    send_status(fd, 404, "Not Found");
    return;
  }
  int file = open(real, O_RDONLY | O_CLOEXEC);
  if (file < 0) {
    send_status(fd, 404, "Not Found");
    return;
  }
  char hdr[512];
  int n = snprintf(hdr, sizeof hdr,
                   "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %lld\r\n"
                   "Connection: close\r\n\r\n",
                   content_type(real), (long long)sb.st_size);
  send_all(fd, hdr, (size_t)n);
  char buf[65536];
  ssize_t k;
  while (!is_head && (k = read(file, buf, sizeof buf)) > 0)
    send_all(fd, buf, (size_t)k);
  close(file);
  atomic_fetch_add(&s->requests, 1);
}

static void *serve_main(void *arg) {
  sdw_http_server *s = arg;
  while (!atomic_load(&s->stop)) {
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0) continue;
    answer(s, c);
    shutdown(c, SHUT_WR);
    close(c);
  }
  return NULL;
}

sdw_status sdw_http_server_start(const char *root, int port, sdw_http_server **out, int *port_out) {
  *out = NULL;
  sdw_http_server *s = calloc(1, sizeof *s);
  if (!s) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  if (!realpath(root, s->root)) {
    free(s);
    return sdw_fail(SDW_ERR_NOT_FOUND, "cannot serve %s: %s", root, strerror(errno));
  }
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 128) != 0 ||
      getsockname(s->fd, (struct sockaddr *)&a, &len) != 0) {
    sdw_status st =
        sdw_fail(SDW_ERR_IO, "cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
    if (s->fd >= 0) close(s->fd);
    free(s);
    return st;
  }
  if (pthread_create(&s->thread, NULL, serve_main, s) != 0) {
    close(s->fd);
    free(s);
    return sdw_fail(SDW_ERR_INTERNAL, "cannot start the HTTP server thread");
  }
  *port_out = ntohs(a.sin_port);
  *out = s;
  return SDW_OK;
}

long sdw_http_server_requests(const sdw_http_server *s) { return atomic_load(&s->requests); }

void sdw_http_server_stop(sdw_http_server *s) {
  if (!s) return;
  atomic_store(&s->stop, 1);
  pthread_join(s->thread, NULL);
  close(s->fd);
  free(s);
}
