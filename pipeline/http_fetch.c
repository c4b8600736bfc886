/* libcurl multi engine: see pipeline/http_fetch.h. */
#include "pipeline/http_fetch.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct transfer transfer;
struct transfer {
  sdw_http_engine *engine;
  CURL *easy;
  char *url;
  uint64_t id;
  int attempts;
  double due; /* waiting to retry: monotonic time to start again */
  transfer *next;
  transfer *run_prev, *run_next; /* the running list */
  /* the response being received */
  uint8_t *body;
  size_t size, cap;
  long status;        /* from the last status line */
  char reason[64];    /* its reason phrase */
  bool robots_denied; /* an X-Robots-Tag of the last response forbids use */
  bool too_large;     /* our body limit cut the transfer */
  bool opted_out;     /* the robots check cut the transfer */
  bool body_started;
  bool stalled;         /* no byte for `timeout` seconds */
  double last_activity; /* monotonic time of the last byte received */
};

struct sdw_http_engine {
  sdw_http_options o;
  char *user_agent, *robots_tokens, *disallowed;
  CURLM *multi;
  transfer *queue_head, *queue_tail; /* submitted, not started */
  transfer *waiting;                 /* failed, waiting for their retry (unordered) */
  transfer *idle;                    /* finished transfers kept for their easy handle */
  transfer *running_list;            /* attached to the multi handle */
  int queued, running, waiting_count;
};

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code = CURLE_OK;
static void curl_init(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* --- the opt-out rule ------------------------------------------------------------ */

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* Is [s, s+n) (already lowercase) one of the comma-separated words of list? */
static bool in_list(const char *list, const char *s, size_t n) {
  if (!list) return false;
  const char *p = list;
  while (*p) {
    const char *q = strchr(p, ',');
    size_t len = q ? (size_t)(q - p) : strlen(p);
    if (len == n && memcmp(p, s, n) == 0) return true;
    if (!q) break;
    p = q + 1;
  }
  return false;
}

bool sdw_http_robots_disallowed(const char *value, size_t len, const char *tokens,
                                const char *disallowed) {
  if (!disallowed || !disallowed[0]) return false;
  char buf[1024];
  /* a longer value is checked on its first kilobyte (the directives that
   * matter are short words near the start) */
  if (len >= sizeof buf) len = sizeof buf - 1;
  for (size_t i = 0; i < len; i++)
    buf[i] = (char)tolower((unsigned char)value[i]);
  buf[len] = 0;
  const char *colon = memchr(buf, ':', len);
  const char *directives = buf;
  if (colon) {
    /* img2dataset compares the token lowercased but not trimmed */
    if (!in_list(tokens, buf, (size_t)(colon - buf))) return false;
    directives = colon + 1;
  }
  const char *p = directives;
  for (;;) {
    const char *q = strchr(p, ',');
    const char *end = q ? q : buf + len;
    const char *a = p, *b = end;
    while (a < b && is_space(*a))
      a++;
    while (b > a && is_space(b[-1]))
      b--;
    if (in_list(disallowed, a, (size_t)(b - a))) return true;
    if (!q) break;
    p = q + 1;
  }
  return false;
}

/* --- callbacks --------------------------------------------------------------------- */

static size_t on_header(char *data, size_t size, size_t nitems, void *user) {
  transfer *t = user;
  size_t n = size * nitems;
  t->last_activity = mono_now();
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    /* a new response (a redirect or 100-continue before it): its headers only count */
    t->robots_denied = false;
    t->status = 0;
    t->reason[0] = 0;
    const char *p = memchr(data, ' ', n);
    if (p) {
      const char *end = data + n;
      p++;
      long code = 0;
      while (p < end && *p >= '0' && *p <= '9')
        code = code * 10 + (*p++ - '0');
      t->status = code;
      while (p < end && *p == ' ')
        p++;
      const char *r = p;
      while (p < end && *p != '\r' && *p != '\n')
        p++;
      size_t rl = (size_t)(p - r);
      if (rl >= sizeof t->reason) rl = sizeof t->reason - 1;
      memcpy(t->reason, r, rl);
      t->reason[rl] = 0;
    }
    return n;
  }
  static const char name[] = "x-robots-tag:";
  const size_t nl = sizeof name - 1;
  if (n > nl && strncasecmp(data, name, nl) == 0) {
    const char *v = data + nl, *end = data + n;
    while (v < end && is_space(*v))
      v++;
    while (end > v && is_space(end[-1]))
      end--;
    if (sdw_http_robots_disallowed(v, (size_t)(end - v), t->engine->robots_tokens,
                                   t->engine->disallowed))
      t->robots_denied = true;
  }
  return n;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user) {
  transfer *t = user;
  size_t n = size * nmemb;
  t->last_activity = mono_now();
  const int64_t max = t->engine->o.max_bytes;
  if (!t->body_started) {
    t->body_started = true;
    if (t->robots_denied) {
      t->opted_out = true;
      return 0; /* ends the transfer: nothing of an opted-out image is kept */
    }
    /* a stated length (up to the limit, at most 64 MiB): one buffer of that
     * size instead of a growing one copied at each doubling */
    curl_off_t len = -1;
    if (curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len) == CURLE_OK &&
        len > (curl_off_t)t->cap && len <= ((curl_off_t)64 << 20) && (max <= 0 || len <= max)) {
      uint8_t *p = realloc(t->body, (size_t)len);
      if (p) {
        t->body = p;
        t->cap = (size_t)len;
      }
    }
  }
  if (max > 0 && (int64_t)(t->size + n) > max) {
    t->too_large = true;
    return 0;
  }
  if (t->size + n > t->cap) {
    size_t cap = t->cap ? t->cap : 65536;
    while (cap < t->size + n)
      cap *= 2;
    if (max > 0 && cap > (size_t)max) cap = (size_t)max;
    uint8_t *p = realloc(t->body, cap);
    if (!p) return 0; /* reported as a network error */
    t->body = p;
    t->cap = cap;
  }
  memcpy(t->body + t->size, data, n);
  t->size += n;
  return n;
}

/* The stall timeout as urllib's socket timeout has it: no byte for
 * `timeout` seconds. (libcurl's low-speed limit averages over a window of
 * several seconds, so a response that stops after a fast start would only
 * end seconds later.) libcurl calls this at least about once a second. */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  transfer *t = user;
  if (mono_now() - t->last_activity > t->engine->o.timeout) {
    t->stalled = true;
    return 1;
  }
  return 0;
}

/* --- engine ------------------------------------------------------------------------ */

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

sdw_status sdw_http_engine_create(const sdw_http_options *options, sdw_http_engine **out) {
  *out = NULL;
  const sdw_http_options *o = options;
  if (o->concurrency < 1 || !(o->timeout > 0) || o->retries < 0 || o->max_redirects < 0 ||
      o->max_bytes < 0 || o->total_timeout < 0 || o->retry_delay < 0)
    return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "http: bad options (concurrency %d, timeout %g)",
                    o->concurrency, o->timeout);
  pthread_once(&curl_once, curl_init);
  if (curl_init_code != CURLE_OK)
    return sdw_fail(SDW_ERR_INTERNAL, "libcurl did not start: %s",
                    curl_easy_strerror(curl_init_code));
  sdw_http_engine *e = calloc(1, sizeof *e);
  if (!e) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  e->o = *o;
  e->user_agent = dup_or_empty(o->user_agent);
  e->robots_tokens = dup_or_empty(o->robots_tokens);
  e->disallowed = dup_or_empty(o->disallowed_directives);
  e->multi = curl_multi_init();
  if (!e->user_agent || !e->robots_tokens || !e->disallowed || !e->multi) {
    sdw_http_engine_destroy(e);
    return sdw_fail(SDW_ERR_INTERNAL, "libcurl: cannot create a multi handle");
  }
  /* connections are reused between transfers to the same host */
  curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)(o->concurrency + 8));
  *out = e;
  return SDW_OK;
}

static void transfer_free(transfer *t) {
  if (!t) return;
  if (t->easy) curl_easy_cleanup(t->easy);
  free(t->url);
  free(t->body);
  free(t);
}

static void free_list(transfer *t) {
  while (t) {
    transfer *n = t->next;
    transfer_free(t);
    t = n;
  }
}

void sdw_http_engine_destroy(sdw_http_engine *e) {
  if (!e) return;
  if (e->multi) {
    while (e->running_list) {
      transfer *t = e->running_list;
      e->running_list = t->run_next;
      curl_multi_remove_handle(e->multi, t->easy);
      transfer_free(t);
    }
    curl_multi_cleanup(e->multi);
  }
  free_list(e->queue_head);
  free_list(e->waiting);
  free_list(e->idle);
  free(e->user_agent);
  free(e->robots_tokens);
  free(e->disallowed);
  free(e);
}

sdw_status sdw_http_submit(sdw_http_engine *e, const char *url, size_t url_len, uint64_t id) {
  transfer *t = e->idle;
  if (t) {
    e->idle = t->next;
  } else {
    t = calloc(1, sizeof *t);
    if (!t) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  t->url = strndup(url, url_len);
  if (!t->url) {
    transfer_free(t);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  }
  t->engine = e;
  t->id = id;
  t->attempts = 0;
  t->next = NULL;
  if (e->queue_tail)
    e->queue_tail->next = t;
  else
    e->queue_head = t;
  e->queue_tail = t;
  e->queued++;
  return SDW_OK;
}

int sdw_http_pending(const sdw_http_engine *e) { return e->queued + e->running + e->waiting_count; }

int sdw_http_room(const sdw_http_engine *e) {
  int room = e->o.concurrency - e->running - e->queued;
  return room > 0 ? room : 0;
}

/* Starts one attempt of t. false when libcurl refused (t is then finished
 * with an error by the caller). */
static bool transfer_start(sdw_http_engine *e, transfer *t) {
  if (!t->easy) {
    t->easy = curl_easy_init();
    if (!t->easy) return false;
  }
  CURL *c = t->easy;
  t->attempts++;
  t->size = 0;
  t->status = 0;
  t->reason[0] = 0;
  t->robots_denied = t->too_large = t->opted_out = t->body_started = t->stalled = false;
  t->last_activity = mono_now();
  const sdw_http_options *o = &e->o;
  curl_easy_setopt(c, CURLOPT_URL, t->url);
  curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)t);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)o->max_redirects);
  curl_easy_setopt(c, CURLOPT_USERAGENT, e->user_agent);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(o->timeout * 1000.0 + 0.5));
  /* a stall: no byte for `timeout` seconds (on_progress) */
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, t);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(o->total_timeout * 1000.0 + 0.5));
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
  if (curl_multi_add_handle(e->multi, c) != CURLM_OK) return false;
  t->run_prev = NULL;
  t->run_next = e->running_list;
  if (e->running_list) e->running_list->run_prev = t;
  e->running_list = t;
  e->running++;
  return true;
}

static bool transient(const sdw_http_result *r) {
  switch (r->outcome) {
  case SDW_HTTP_ERR_TIMEOUT:
  case SDW_HTTP_ERR_NETWORK: return true;
  case SDW_HTTP_ERR_CONNECT: return true;
  case SDW_HTTP_ERR_STATUS: return r->status == 408 || r->status == 429 || r->status >= 500;
  default: return false;
  }
}

/* Classifies a finished attempt. */
static void classify(transfer *t, CURLcode code, sdw_http_result *r) {
  memset(r, 0, sizeof *r);
  r->id = t->id;
  r->attempts = t->attempts;
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  r->status = status;
  /* libcurl's generic text (its error buffer names ports and timings, which
   * would make every message, and status_dict, different) */
  const char *text = curl_easy_strerror(code);
  if (t->opted_out || (code == CURLE_OK && t->robots_denied)) {
    r->outcome = SDW_HTTP_ERR_OPTED_OUT;
    snprintf(r->message, sizeof r->message, "Use of image disallowed by X-Robots-Tag directive");
    return;
  }
  if (t->stalled) {
    r->outcome = SDW_HTTP_ERR_TIMEOUT;
    snprintf(r->message, sizeof r->message, "timed out");
    return;
  }
  if (t->too_large || code == CURLE_FILESIZE_EXCEEDED) {
    r->outcome = SDW_HTTP_ERR_TOO_LARGE;
    snprintf(r->message, sizeof r->message, "response larger than %lld bytes",
             (long long)t->engine->o.max_bytes);
    return;
  }
  switch (code) {
  case CURLE_OK:
    if (status >= 300 && status < 400) {
      /* a redirect libcurl did not follow: no Location */
      r->outcome = SDW_HTTP_ERR_STATUS;
      snprintf(r->message, sizeof r->message, "HTTP Error %ld: %s", status, t->reason);
      return;
    }
    r->outcome = SDW_HTTP_OK;
    return;
  case CURLE_HTTP_RETURNED_ERROR:
    r->outcome = SDW_HTTP_ERR_STATUS;
    /* urllib's HTTPError text */
    snprintf(r->message, sizeof r->message, "HTTP Error %ld: %s", status, t->reason);
    return;
  case CURLE_OPERATION_TIMEDOUT:
    r->outcome = SDW_HTTP_ERR_TIMEOUT;
    snprintf(r->message, sizeof r->message, "timed out");
    return;
  case CURLE_TOO_MANY_REDIRECTS:
    r->outcome = SDW_HTTP_ERR_REDIRECTS;
    snprintf(r->message, sizeof r->message, "too many redirects (more than %d)",
             t->engine->o.max_redirects);
    return;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT: r->outcome = SDW_HTTP_ERR_BAD_URL; break;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM: r->outcome = SDW_HTTP_ERR_CONNECT; break;
  default: r->outcome = SDW_HTTP_ERR_NETWORK; break;
  }
  snprintf(r->message, sizeof r->message, "%s", text);
}

static void retire(sdw_http_engine *e, transfer *t) {
  /* keep the handle (and its DNS/TLS session caches) for the next URL */
  free(t->url);
  t->url = NULL;
  if (t->cap > (1u << 20)) { /* do not keep a huge body buffer around */
    free(t->body);
    t->body = NULL;
    t->cap = 0;
  }
  t->size = 0;
  t->next = e->idle;
  e->idle = t;
}

static void deliver_failure_now(sdw_http_engine *e, transfer *t, const char *why,
                                sdw_http_done_fn done, void *ctx) {
  sdw_http_result r;
  memset(&r, 0, sizeof r);
  r.id = t->id;
  r.attempts = t->attempts;
  r.outcome = SDW_HTTP_ERR_NETWORK;
  snprintf(r.message, sizeof r.message, "%s", why);
  retire(e, t);
  done(ctx, &r);
}

static void start_queued(sdw_http_engine *e, sdw_http_done_fn done, void *ctx) {
  const double now = mono_now();
  /* due retries go first */
  for (transfer **pp = &e->waiting; *pp;) {
    transfer *t = *pp;
    if (t->due <= now && e->running < e->o.concurrency) {
      *pp = t->next;
      e->waiting_count--;
      if (!transfer_start(e, t))
        deliver_failure_now(e, t, "libcurl refused the transfer", done, ctx);
    } else {
      pp = &t->next;
    }
  }
  while (e->queue_head && e->running < e->o.concurrency) {
    transfer *t = e->queue_head;
    e->queue_head = t->next;
    if (!e->queue_head) e->queue_tail = NULL;
    e->queued--;
    t->next = NULL;
    if (!transfer_start(e, t)) deliver_failure_now(e, t, "libcurl refused the transfer", done, ctx);
  }
}

sdw_status sdw_http_run(sdw_http_engine *e, int max_wait_ms, sdw_http_done_fn done, void *ctx) {
  start_queued(e, done, ctx);
  int still = 0;
  CURLMcode mc = curl_multi_perform(e->multi, &still);
  if (mc != CURLM_OK) return sdw_fail(SDW_ERR_INTERNAL, "libcurl: %s", curl_multi_strerror(mc));
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(e->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    transfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    curl_multi_remove_handle(e->multi, easy);
    if (t->run_prev)
      t->run_prev->run_next = t->run_next;
    else
      e->running_list = t->run_next;
    if (t->run_next) t->run_next->run_prev = t->run_prev;
    e->running--;
    sdw_http_result r;
    classify(t, code, &r);
    if (r.outcome != SDW_HTTP_OK && transient(&r) && t->attempts <= e->o.retries) {
      double delay = e->o.retry_delay;
      for (int i = 1; i < t->attempts; i++)
        delay *= 2;
      t->due = mono_now() + delay;
      t->next = e->waiting;
      e->waiting = t;
      e->waiting_count++;
      continue;
    }
    if (r.outcome == SDW_HTTP_OK) {
      /* hand the body over; shrink a generously grown buffer */
      r.body = t->body;
      r.size = t->size;
      if (r.body && t->cap > t->size + 4096) {
        uint8_t *p = realloc(r.body, t->size ? t->size : 1);
        if (p) r.body = p;
      }
      t->body = NULL;
      t->cap = 0;
    }
    retire(e, t);
    done(ctx, &r);
  }
  start_queued(e, done, ctx);
  /* wait for socket activity, curl's own timers or the next due retry */
  int wait = max_wait_ms;
  if (e->waiting) {
    double next = 1e300, now = mono_now();
    for (transfer *t = e->waiting; t; t = t->next)
      if (t->due < next) next = t->due;
    int ms = next <= now ? 0 : (int)((next - now) * 1000.0) + 1;
    if (ms < wait) wait = ms;
  }
  if (wait > 0 && e->running > 0) {
    mc = curl_multi_poll(e->multi, NULL, 0, wait, NULL);
    if (mc != CURLM_OK) return sdw_fail(SDW_ERR_INTERNAL, "libcurl: %s", curl_multi_strerror(mc));
  } else if (wait > 0 && e->waiting && !e->queue_head) {
    struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return SDW_OK;
}
