/* libFuzzer target for the control server's line handling (make fuzz): any
 * bytes a client sends, in any chunking, must give exactly one reply line per
 * complete request line, each a JSON object with a boolean "ok" (and an
 * "error" string when false), until an oversized line, after which the
 * client is marked dead; nothing may crash or leak (ASan + UBSan).
 *
 * The first input byte picks the chunk size the bytes arrive in and whether
 * a long run of spaces comes first; the rest is the stream. The server code is compiled into this
 * file (the fuzz build links core/base only) and driven through its static client functions over a
 * socketpair, the same path a socket client takes after accept. */
#include "core/train/control.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A handler exercising the reply paths: normal objects, an empty object
 * (server adds "ok"), NULL (internal error) and a non-object. */
static cJSON *fuzz_handler(void *user, const char *cmd, const cJSON *req) {
  (void)user, (void)req;
  if (strcmp(cmd, "status") == 0) {
    cJSON *r = sdw_control_reply_ok();
    cJSON_AddObjectToObject(r, "status");
    return r;
  }
  if (strcmp(cmd, "pause") == 0) return cJSON_CreateObject();
  if (strcmp(cmd, "resume") == 0) return NULL;
  if (strcmp(cmd, "stop") == 0) return cJSON_CreateString("not an object");
  return sdw_control_reply_error("refused %s", cmd);
}

/* Reads every complete line available on fd and checks it; returns the count. */
static size_t drain(int fd, buf *acc) {
  char tmp[65536];
  ssize_t r;
  while ((r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT)) > 0)
    if (buf_append(acc, tmp, (size_t)r) != 0) abort();
  size_t lines = 0;
  char *nl;
  while (acc->n && (nl = memchr(acc->p, '\n', acc->n)) != NULL) {
    size_t len = (size_t)(nl - acc->p);
    cJSON *m = cJSON_ParseWithLength(acc->p, len);
    if (!cJSON_IsObject(m)) abort();
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(m, "ok");
    if (!cJSON_IsBool(ok)) abort();
    if (cJSON_IsFalse(ok) && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "error"))) abort();
    if (!cJSON_GetObjectItemCaseSensitive(m, "id")) abort();
    cJSON_Delete(m);
    buf_consume(acc, len + 1);
    lines++;
  }
  return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = (size_t)(data[0] >> 1) * 611 + 1;
  /* Odd first byte: the stream starts with 65520 spaces (valid leading
   * whitespace of the first line), so lines at the 65536-byte limit are
   * reachable from short inputs. */
  uint8_t *owned = NULL;
  if (data[0] & 1) {
    enum { PAD = SDW_CONTROL_MAX_LINE - 16 };
    owned = malloc(PAD + size - 1);
    memset(owned, ' ', PAD);
    memcpy(owned + PAD, data + 1, size - 1);
    data = owned, size = PAD + size - 1;
  } else {
    data++, size--;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 0;
  client *c = calloc(1, sizeof *c);
  c->fd = sv[0];
  /* the server only as the handler's context (the fuzz handler never defers) */
  sdw_control_server *srv = calloc(1, sizeof *srv);
  buf acc = {0};
  size_t replies = 0;
  size_t iter = 0;
  for (size_t off = 0; off < size && !c->dead; off += chunk, iter++) {
    size_t n = size - off < chunk ? size - off : chunk;
    if (buf_append(&c->in, data + off, n) != 0) abort();
    client_lines(srv, c, fuzz_handler, NULL);
    if (iter % 64 == 63) replies += drain(sv[1], &acc); /* the socket holds 64 replies */
  }
  client_flush(c);
  replies += drain(sv[1], &acc);

  /* Expected: one reply per '\n'-terminated line before the first oversized
   * one, plus one for the oversized line itself. */
  size_t expect = 0, start = 0;
  int oversized = 0;
  for (size_t i = 0; i <= size; i++) {
    if (i - start > SDW_CONTROL_MAX_LINE) {
      oversized = 1;
      expect++;
      break;
    }
    if (i < size && data[i] == '\n') expect++, start = i + 1;
  }
  if (!c->dead && replies != expect) abort();
  if (c->dead && !oversized && replies > expect) abort();
  if (oversized && !c->dead) abort();
  buf_free(&acc);
  close(sv[1]);
  client_free(c);
  free(srv);
  free(owned);
  return 0;
}
