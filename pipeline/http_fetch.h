/* Many HTTP(S) downloads at once on one thread: a libcurl multi engine for
 * the download stage (pipeline/stage_download.c).
 *
 * The caller submits URLs with an id of its own and calls sdw_http_run in a
 * loop; each call starts queued transfers (at most options.concurrency at
 * once), moves the transfers along, waits up to max_wait_ms for sockets and
 * hands every finished download to the callback, on the calling thread.
 *
 * Per transfer: http and https only (also after a redirect), at most
 * max_redirects redirects, a connect timeout and a stall timeout (no byte for
 * `timeout` seconds, which is what urllib's socket timeout does in
 * img2dataset; checked about once a second), an overall limit per attempt, a body limit (a
 * Content-Length over max_bytes ends the transfer before the body, a body without a length is cut
 * when it passes the limit), an HTTP status of 400 or more is a failure (the body is not read), and
 * img2dataset's opt-out rule on the final response's X-Robots-Tag headers
 * (sdw_http_robots_disallowed). Certificates are verified.
 *
 * Retries: a transient failure (timeout, connection refused or reset, HTTP
 * 408/429/5xx) is tried again up to options.retries more times after a
 * backoff of retry_delay, 2 * retry_delay, ... seconds (other transfers go on
 * meanwhile); a permanent one (other 4xx, too large, opted out, too many
 * redirects, a bad URL) is not. img2dataset retries every failure alike.
 *
 * Threads: an engine belongs to one thread. Implemented in
 * pipeline/http_fetch.c. */
#ifndef SDW_PIPELINE_HTTP_FETCH_H
#define SDW_PIPELINE_HTTP_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_http_options {
  int concurrency;      /* transfers at once, >= 1 */
  double timeout;       /* seconds: connect limit and longest stall (> 0) */
  double total_timeout; /* seconds for one attempt, 0: none */
  int retries;          /* further attempts after a transient failure */
  double retry_delay;   /* seconds before the first retry, doubled each time */
  int max_redirects;    /* >= 0 */
  int64_t max_bytes;    /* largest body accepted, 0: no limit */
  const char *user_agent;
  /* User-agent tokens an X-Robots-Tag directive may be scoped to, comma
   * separated, lowercase ("img2dataset,sdw"); unscoped directives always
   * apply. NULL or "": only unscoped ones. */
  const char *robots_tokens;
  /* Directives that forbid use, comma separated, lowercase
   * ("noai,noimageai,noindex,noimageindex"); NULL or "": no check. */
  const char *disallowed_directives;
} sdw_http_options;

typedef enum sdw_http_outcome {
  SDW_HTTP_OK = 0,
  SDW_HTTP_ERR_STATUS,    /* final HTTP status >= 400, or a redirect without a target */
  SDW_HTTP_ERR_TIMEOUT,   /* connect timeout, stalled beyond the timeout, or the total limit */
  SDW_HTTP_ERR_TOO_LARGE, /* Content-Length or the body over max_bytes */
  SDW_HTTP_ERR_OPTED_OUT, /* X-Robots-Tag forbids the use */
  SDW_HTTP_ERR_REDIRECTS, /* more than max_redirects */
  SDW_HTTP_ERR_CONNECT,   /* name resolution, connection refused, TLS */
  SDW_HTTP_ERR_BAD_URL,   /* malformed, or not http/https */
  SDW_HTTP_ERR_NETWORK,   /* anything else: reset, short body, empty reply */
} sdw_http_outcome;

typedef struct sdw_http_result {
  uint64_t id; /* as submitted */
  sdw_http_outcome outcome;
  long status;   /* final HTTP status, 0 when there was none */
  uint8_t *body; /* SDW_HTTP_OK only: malloc'd, owned by the callback (free()) */
  size_t size;
  int attempts;
  /* "" on success; otherwise the error as img2dataset words it where it
   * can ("HTTP Error 404: Not Found", "timed out", "Use of image disallowed
   * by X-Robots-Tag directive") and libcurl's text for the rest */
  char message[256];
} sdw_http_result;

/* Called once per submitted URL (unless the engine is destroyed first).
 * result is valid during the call only; take result->body to keep it. */
typedef void (*sdw_http_done_fn)(void *ctx, sdw_http_result *result);

typedef struct sdw_http_engine sdw_http_engine;

/* *out owned by the caller (sdw_http_engine_destroy). The option strings are
 * copied. SDW_ERR_INVALID_ARGUMENT for bad options, SDW_ERR_INTERNAL when
 * libcurl cannot start. */
sdw_status sdw_http_engine_create(const sdw_http_options *options, sdw_http_engine **out);
/* Aborts whatever is queued or running (no callbacks) and frees; NULL: no-op. */
void sdw_http_engine_destroy(sdw_http_engine *e);

/* Queues url (url_len bytes, copied; need not be NUL-terminated). */
sdw_status sdw_http_submit(sdw_http_engine *e, const char *url, size_t url_len, uint64_t id);
/* URLs submitted and not yet delivered (queued, running or waiting to retry). */
int sdw_http_pending(const sdw_http_engine *e);
/* How many more URLs the engine can start now: concurrency minus running and
 * queued transfers (waiting retries do not hold a connection). */
int sdw_http_room(const sdw_http_engine *e);

/* One turn of the loop (see above). Returns SDW_ERR_INTERNAL only when
 * libcurl itself fails; transfer failures are results. */
sdw_status sdw_http_run(sdw_http_engine *e, int max_wait_ms, sdw_http_done_fn done, void *ctx);

/* img2dataset's is_disallowed for one X-Robots-Tag value: "[token:]
 * directive, directive...". The part before the first ':' is a user-agent
 * token (compared lowercase with the tokens list); the directives are split
 * on ',', trimmed and lowercased. True when the value is unscoped or scoped
 * to one of tokens and one directive is in disallowed (both comma-separated
 * lowercase lists as in sdw_http_options). */
bool sdw_http_robots_disallowed(const char *value, size_t len, const char *tokens,
                                const char *disallowed);

#ifdef __cplusplus
}
#endif
#endif
