/* The control protocol: a running job (sdw train) listens on RUN/control.sock
 * and answers JSON lines; sdw ctl, sdw attach and sdw demo are its clients.
 *
 * Wire format (man sdw-ctl, PROTOCOL): one JSON object per line ('\n'),
 * each line at most SDW_CONTROL_MAX_LINE bytes, UTF-8.
 *   request  {"id":N,"cmd":"status"|"subscribe"|"pause"|"resume"|"checkpoint"|"sample"|"stop",...}
 *   reply    {"id":N,"ok":true,...} or {"id":N,"ok":false,"error":"one sentence"}
 *   event    {"event":"metric"|"log"|"state"|"checkpoint"|"sample",...} (subscribers only)
 * Malformed JSON, a non-object, an object with a duplicate key (at any
 * depth), a missing or unknown "cmd" get an error reply
 * from the server itself (the handler never sees them); an oversized line
 * closes that client's connection. Nothing a client sends affects the job
 * beyond the handler's answer to a well-formed request.
 *
 * Security: the socket file is mode 0600 and every accepted connection's
 * peer uid (SO_PEERCRED) must equal the server's euid, else it is closed.
 *
 * Paths longer than sun_path (108 bytes) work: the directory is opened
 * (O_PATH) and the socket is bound/connected as /proc/self/fd/N/<name>; if
 * that is still too long, through a short-lived chdir in a forked child.
 *
 * Threads: a server or a client is used by one thread at a time. The server
 * never blocks on a client: writes are nonblocking, and a client whose
 * unsent output exceeds SDW_CONTROL_MAX_PENDING bytes is dropped.
 */
#ifndef SDW_TRAIN_CONTROL_H
#define SDW_TRAIN_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
  SDW_CONTROL_MAX_LINE = 65536,      /* bytes per line, '\n' excluded */
  SDW_CONTROL_MAX_PENDING = 4 << 20, /* unsent bytes per client before it is dropped */
  SDW_CONTROL_MAX_CLIENTS = 64       /* further connections are closed at once */
};

/* ---- server (the job) ---------------------------------------------------- */

typedef struct sdw_control_server sdw_control_server;

/* Binds socket_path (may exceed sun_path), mode 0600, nonblocking. A stale
 * socket file (nobody accepts on it) is replaced; a live one (connect
 * succeeds) is SDW_ERR_INVALID_ARGUMENT "another job owns RUN". *out is
 * owned by the caller: sdw_control_server_close. */
sdw_status sdw_control_server_open(const char *socket_path, sdw_control_server **out);
/* Closes every client and unlinks the socket file. NULL is a no-op. */
void sdw_control_server_close(sdw_control_server *s);

/* Answers one well-formed request. cmd is request's "cmd" string (one of the
 * known commands); request is the whole object (borrowed). Returns the reply
 * body, e.g. {"ok":true,"status":{...}}; ownership passes to the server,
 * which puts "id" first (the request's, null when it had none) and makes "ok" a
 * bool: absent counts as true; a non-bool "ok", or false without an "error"
 * string, becomes "error":"internal". NULL becomes
 * {"ok":false,"error":"internal"}. "subscribe" is answered by the server
 * itself (the handler is not called for it), and the arguments of "sample"
 * are checked before the handler sees them: "prompt" a string, "negative" a
 * string, "steps" an integer in [1, 1000], "cfg" a number in [0, 100],
 * "seed" an integer in [0, 2^53], "ema" a bool (all but prompt optional;
 * null counts as absent). */
typedef cJSON *(*sdw_control_handler)(void *user, const char *cmd, const cJSON *request);

/* Accepts, reads, dispatches complete lines to handler, writes replies,
 * drops misbehaving clients; waits at most timeout_ms (0: no wait, <0:
 * forever) for activity, then handles everything that is ready. Returns
 * SDW_OK also when clients were dropped; an error only when the listening
 * socket itself fails. */
sdw_status sdw_control_server_poll(sdw_control_server *s, int timeout_ms,
                                   sdw_control_handler handler, void *user);
/* Queues event (borrowed) to every subscriber; a client that cannot take it
 * (pending output over the limit) is dropped. Never blocks. May be called
 * from inside a handler. */
void sdw_control_server_broadcast(sdw_control_server *s, const cJSON *event);

/* Deferred replies: a handler that cannot answer yet (a job acting at its
 * next step boundary) calls sdw_control_server_defer(s, request) and
 * returns NULL; nothing is sent then. The returned ticket (owned by the
 * caller; NULL on out of memory or outside a handler of s, and then the
 * handler must answer at once) is later passed to sdw_control_server_reply,
 * which sends {"id":<the request's>, ...body} as finish_reply does for a
 * handler's reply (body owned by the server; NULL: "internal"), or drops it
 * when that client has gone, and frees the ticket (s NULL: only frees the
 * ticket and body; d NULL: only frees body). Both on the thread that polls
 * s. A client may receive replies out of request order: it matches
 * them by "id". */
typedef struct sdw_control_deferred sdw_control_deferred;
sdw_control_deferred *sdw_control_server_defer(sdw_control_server *s, const cJSON *request);
void sdw_control_server_reply(sdw_control_server *s, sdw_control_deferred *d, cJSON *body);

/* The listening descriptor (for a caller's own poll()), and the number of
 * connected clients / subscribers (tests, status). */
int sdw_control_server_fd(const sdw_control_server *s);
int sdw_control_server_clients(const sdw_control_server *s);
int sdw_control_server_subscribers(const sdw_control_server *s);
/* The peer uid accepted (default: the server's euid). For tests and for a
 * job that deliberately serves another user. */
void sdw_control_server_set_peer_uid(sdw_control_server *s, unsigned uid);

/* Reply helpers for handlers: {"ok":true} and {"ok":false,"error":msg}
 * (printf-style). Owned by the caller (usually returned to the server). */
cJSON *sdw_control_reply_ok(void);
cJSON *sdw_control_reply_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The server's line handling without sockets (the fuzzer and tests use it):
 * parses line[0..n) (no '\n'), validates it and calls handler, and returns
 * the complete reply line (with "id", without '\n') as malloc'd text owned
 * by the caller (free()). *subscribe is set to 1 when the line was a valid
 * "subscribe" request. Never returns NULL except on out of memory. */
char *sdw_control_handle_line(const char *line, size_t n, sdw_control_handler handler, void *user,
                              int *subscribe);

/* "RUN/control.sock" into out[cap]; SDW_ERR_INVALID_ARGUMENT if too long. */
sdw_status sdw_control_socket_path(const char *run_dir, char *out, size_t cap);

/* ---- client (sdw ctl, the workbench) --------------------------------------- */

typedef struct sdw_control_client sdw_control_client;

/* Connects to socket_path (may exceed sun_path). SDW_ERR_NOT_FOUND when no
 * socket file exists, SDW_ERR_IO when nobody listens (a dead job). *out is
 * owned by the caller: sdw_control_client_close. */
sdw_status sdw_control_connect(const char *socket_path, sdw_control_client **out);
void sdw_control_client_close(sdw_control_client *c); /* NULL is a no-op */

/* Sends request (borrowed; a copy with a fresh "id" is sent) and waits up to
 * timeout_ms (<0: forever) for the reply with that id; events arriving
 * meanwhile are queued for sdw_control_next_event. *reply (owned by the
 * caller, cJSON_Delete) is the whole reply object, "ok" false included:
 * the status is about transport only. SDW_ERR_IO when the job went away or
 * the timeout passed (message says which), SDW_ERR_FORMAT when it sent
 * something that is not a JSON object. */
sdw_status sdw_control_call(sdw_control_client *c, const cJSON *request, int timeout_ms,
                            cJSON **reply);
/* Next queued or incoming event (owned by the caller), *event = NULL on
 * timeout; SDW_ERR_IO when the job went away. Several events may arrive in
 * one read: after sdw_control_client_fd polls readable, call this with
 * timeout 0 until *event is NULL. */
sdw_status sdw_control_next_event(sdw_control_client *c, int timeout_ms, cJSON **event);
int sdw_control_client_fd(const sdw_control_client *c);

#ifdef __cplusplus
}
#endif
#endif
