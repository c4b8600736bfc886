/* `sdw pipeline metadata`: the seed's 01_download_metadata.py
 * (huggingface_hub.snapshot_download of laion/laion2B-en-aesthetic,
 * allow_patterns "*.parquet") with libcurl, plus plain URLs and local folders.
 *
 * Hub mode (no --url/--local): GET {endpoint}/api/datasets/{repo}/tree/main
 * ?recursive=1 lists the repo (a JSON array of {"type": "file"|"directory",
 * "path", "size", "oid", "lfs": {"oid": sha256, "size"}}; further pages via
 * the Link: <...>; rel="next" header), files whose path matches --include
 * (fnmatch, '*' also matches '/', as Python's fnmatch) are fetched from
 * {endpoint}/datasets/{repo}/resolve/main/{path}, with
 * "Authorization: Bearer TOKEN" when a token is given.
 *
 * Each file goes to DIR/metadata/<path> through <path>.part: a partial .part
 * is resumed with a Range request (a 200 answer restarts it), a transient
 * failure (connection error, cut transfer, HTTP 408/429/5xx, a checksum
 * mismatch) is retried up to --retries times after 0.5, 1, 2, ... seconds
 * (SDW_METADATA_BACKOFF scales the first delay), the SHA-256 is checked when
 * the listing gives one (lfs.oid), and the file is renamed into place. A file
 * already there with the listed size is skipped. HTTP 401/403 stops the stage
 * with one line naming the token. Manifest: one item per file, bytes done /
 * total in extra. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dirent.h>

#include "core/base/fsutil.h"
#include "core/base/sha256.h"
#include "pipeline/manifest.h"
#include "pipeline/stages.h"

#ifndef SDW_VERSION
#define SDW_VERSION "dev"
#endif

enum { MAX_URLS = 256 };

/* Set by SIGINT/SIGTERM: transfers abort (their .part files stay for a
 * resume) and the stage ends "interrupted" with exit status 130. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

typedef struct md_options {
  const char *data, *repo, *endpoint, *token, *local, *include;
  const char *urls[MAX_URLS];
  int url_count;
  int retries;
} md_options;

typedef struct md_file {
  char *url;    /* NULL for a local file */
  char *source; /* local path */
  char *name;   /* relative destination under DIR/metadata */
  int64_t size; /* -1: unknown */
  char sha256[65];
} md_file;

typedef struct md_list {
  md_file *f;
  int n, cap;
} md_list;

static void usage(FILE *out) {
  fprintf(out, "usage: sdw pipeline metadata --data DIR [options]\n"
               "\n"
               "Downloads the parquet files of a Hugging Face dataset repo (the seed's LAION\n"
               "metadata) into DIR/metadata, resuming partial files, retrying, checking SHA-256.\n"
               "\n"
               "  --data DIR          data directory (files in DIR/metadata, manifest in\n"
               "                      DIR/manifests)\n"
               "  --repo REPO         dataset repo (default laion/laion2B-en-aesthetic)\n"
               "  --endpoint URL      Hub endpoint (default https://huggingface.co)\n"
               "  --token TOKEN       access token (default $HF_TOKEN)\n"
               "  --url URL           download this URL instead of listing the repo (repeatable)\n"
               "  --local DIR         link the matching files of a local folder instead\n"
               "  --include GLOB      files to take (default *.parquet)\n"
               "  --retries N         further attempts after a transient failure (default 5)\n"
               "  --help              this text\n");
}

static int parse_options(int argc, char **argv, md_options *o) {
  memset(o, 0, sizeof *o);
  o->repo = "laion/laion2B-en-aesthetic";
  o->endpoint = "https://huggingface.co";
  o->include = "*.parquet";
  o->retries = 5;
  o->token = getenv("HF_TOKEN");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline metadata: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--repo") == 0)
      o->repo = v;
    else if (strcmp(a, "--endpoint") == 0)
      o->endpoint = v;
    else if (strcmp(a, "--token") == 0)
      o->token = v;
    else if (strcmp(a, "--local") == 0)
      o->local = v;
    else if (strcmp(a, "--include") == 0)
      o->include = v;
    else if (strcmp(a, "--url") == 0) {
      if (o->url_count == MAX_URLS) {
        fprintf(stderr, "sdw: pipeline metadata: at most %d --url\n", MAX_URLS);
        return 2;
      }
      o->urls[o->url_count++] = v;
    } else if (strcmp(a, "--retries") == 0) {
      char *end;
      long r = strtol(v, &end, 10);
      if (end == v || *end || r < 0 || r > 100) {
        fprintf(stderr, "sdw: pipeline metadata: bad value for --retries: %s\n", v);
        return 2;
      }
      o->retries = (int)r;
    } else {
      fprintf(stderr, "sdw: pipeline metadata: unknown option %s (see --help)\n", a);
      return 2;
    }
  }
  if (!o->data) {
    fprintf(stderr, "sdw: pipeline metadata: --data is required (see --help)\n");
    return 2;
  }
  if (o->token && !*o->token) o->token = NULL;
  return 0;
}

/* --- the file list ------------------------------------------------------------------------ */

static sdw_status list_add(md_list *l, const char *url, const char *source, const char *name,
                           int64_t size, const char *sha) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    md_file *f = realloc(l->f, (size_t)cap * sizeof *f);
    if (!f) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline metadata: out of memory");
    l->f = f;
    l->cap = cap;
  }
  md_file *f = &l->f[l->n];
  memset(f, 0, sizeof *f);
  f->url = url ? strdup(url) : NULL;
  f->source = source ? strdup(source) : NULL;
  f->name = strdup(name);
  f->size = size;
  if (sha) snprintf(f->sha256, sizeof f->sha256, "%s", sha);
  if ((url && !f->url) || (source && !f->source) || !f->name)
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline metadata: out of memory");
  l->n++;
  return SDW_OK;
}

static void list_free(md_list *l) {
  for (int i = 0; i < l->n; i++)
    free(l->f[i].url), free(l->f[i].source), free(l->f[i].name);
  free(l->f);
}

/* A relative path with no empty, "." or ".." component (never outside DIR/metadata). */
static bool safe_name(const char *p) {
  if (!*p || *p == '/' || strlen(p) > 900) return false;
  const char *s = p;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return false;
    s += n;
    if (*s == '/')
      s++;
    else
      break;
  }
  return p[strlen(p) - 1] != '/';
}

/* --- HTTP ------------------------------------------------------------------------------------ */

typedef struct membuf {
  char *p;
  size_t n, cap;
  char next[2048]; /* Link rel="next" target */
} membuf;

static size_t mem_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  membuf *b = ud;
  size_t n = size * nmemb;
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    if (cap > ((size_t)256 << 20)) return 0; /* a listing beyond 256 MiB: refuse */
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, ptr, n);
  b->n += n;
  b->p[b->n] = 0;
  return n;
}

static size_t link_header(char *buf, size_t size, size_t nitems, void *ud) {
  membuf *b = ud;
  size_t n = size * nitems;
  if (n > 5 && strncasecmp(buf, "link:", 5) == 0) {
    char line[4096];
    size_t m = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, buf, m);
    line[m] = 0;
    /* <url>; rel="next"[, <url>; rel="..."] */
    char *s = line + 5;
    while ((s = strchr(s, '<'))) {
      char *e = strchr(s, '>');
      if (!e) break;
      char *rel = strstr(e, "rel=");
      char *comma = strchr(e, ',');
      if (rel && (!comma || rel < comma) && strncmp(rel + 4, "\"next\"", 6) == 0) {
        size_t len = (size_t)(e - s - 1);
        if (len < sizeof b->next) {
          memcpy(b->next, s + 1, len);
          b->next[len] = 0;
        }
      }
      s = e;
    }
  }
  return n;
}

static struct curl_slist *auth_headers(const md_options *o) {
  if (!o->token) return NULL;
  char h[1024];
  snprintf(h, sizeof h, "Authorization: Bearer %s", o->token);
  return curl_slist_append(NULL, h);
}

static void common_setup(CURL *c, const md_options *o, struct curl_slist *hdrs) {
  curl_easy_setopt(c, CURLOPT_USERAGENT, "sdw/" SDW_VERSION " (pipeline metadata)");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  /* the Hub redirects LFS files to a CDN: keep the token on the Hub only */
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  /* a stall of 60 s at under 1 byte/s ends the attempt */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  (void)o;
}

static bool transient_http(long code) { return code == 408 || code == 429 || code >= 500; }

static void backoff(int attempt) {
  double base = 0.5;
  const char *e = getenv("SDW_METADATA_BACKOFF");
  if (e && *e) base = atof(e);
  double s = base * (double)(1u << (attempt < 10 ? attempt : 10));
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static sdw_status auth_error(const md_options *o, const char *url, long code) {
  return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "HTTP %ld from %s: %s", code, url,
                  o->token ? "the token (--token or HF_TOKEN) was refused"
                           : "the server wants a token (--token or HF_TOKEN)");
}

/* GET url into b, with retries. */
static sdw_status http_get(const md_options *o, const char *url, membuf *b) {
  struct curl_slist *hdrs = auth_headers(o);
  CURL *c = curl_easy_init();
  if (!c) {
    curl_slist_free_all(hdrs);
    return sdw_fail(SDW_ERR_INTERNAL, "curl_easy_init failed");
  }
  sdw_status st = SDW_OK;
  for (int attempt = 0;; attempt++) {
    b->n = 0;
    b->next[0] = 0;
    curl_easy_reset(c);
    common_setup(c, o, hdrs);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, link_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, b);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && code >= 200 && code < 300) break;
    if (g_stop) {
      st = sdw_fail(SDW_ERR_INTERRUPTED, "%s: interrupted", url);
      break;
    }
    if (rc == CURLE_OK && (code == 401 || code == 403)) {
      st = auth_error(o, url, code);
      break;
    }
    bool transient = rc != CURLE_OK ? rc != CURLE_UNSUPPORTED_PROTOCOL && rc != CURLE_URL_MALFORMAT
                                    : transient_http(code);
    if (!transient || attempt >= o->retries) {
      st = rc != CURLE_OK ? sdw_fail(SDW_ERR_IO, "%s: %s", url, curl_easy_strerror(rc))
                          : sdw_fail(SDW_ERR_IO, "HTTP %ld from %s", code, url);
      break;
    }
    backoff(attempt);
  }
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  return st;
}

static char *url_escape_path(const char *p) {
  /* percent-encode everything but unreserved characters and '/' */
  size_t n = strlen(p);
  char *out = malloc(3 * n + 1);
  if (!out) return NULL;
  char *q = out;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)p[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        strchr("-._~/", ch))
      *q++ = (char)ch;
    else
      q += sprintf(q, "%%%02X", ch);
  }
  *q = 0;
  return out;
}

static sdw_status list_hub(const md_options *o, md_list *l) {
  char url[4096];
  char *repo = url_escape_path(o->repo);
  if (!repo) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline metadata: out of memory");
  size_t el = strlen(o->endpoint);
  while (el > 0 && o->endpoint[el - 1] == '/')
    el--;
  snprintf(url, sizeof url, "%.*s/api/datasets/%s/tree/main?recursive=1", (int)el, o->endpoint,
           repo);
  membuf b = {0};
  sdw_status st = SDW_OK;
  for (int page = 0; page < 100000 && st == SDW_OK; page++) {
    if ((st = http_get(o, url, &b)) != SDW_OK) break;
    cJSON *doc = cJSON_ParseWithLength(b.p ? b.p : "", b.n);
    if (!cJSON_IsArray(doc)) {
      cJSON_Delete(doc);
      st = sdw_fail(SDW_ERR_FORMAT, "%s: not a JSON array of files", url);
      break;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, doc) {
      const cJSON *type = cJSON_GetObjectItem(e, "type");
      const cJSON *path = cJSON_GetObjectItem(e, "path");
      const cJSON *size = cJSON_GetObjectItem(e, "size");
      const cJSON *lfs = cJSON_GetObjectItem(e, "lfs");
      if (!cJSON_IsString(path) || (cJSON_IsString(type) && strcmp(type->valuestring, "file")))
        continue;
      if (fnmatch(o->include, path->valuestring, 0) != 0) continue;
      if (!safe_name(path->valuestring)) {
        st = sdw_fail(SDW_ERR_FORMAT, "%s: refusing the file path \"%s\"", url, path->valuestring);
        break;
      }
      const char *sha = NULL;
      const cJSON *oid = lfs ? cJSON_GetObjectItem(lfs, "oid") : NULL;
      if (cJSON_IsString(oid) && strlen(oid->valuestring) == 64) sha = oid->valuestring;
      const cJSON *lsize = lfs ? cJSON_GetObjectItem(lfs, "size") : NULL;
      if (cJSON_IsNumber(lsize)) size = lsize;
      char *ep = url_escape_path(path->valuestring);
      char furl[4096];
      if (ep)
        snprintf(furl, sizeof furl, "%.*s/datasets/%s/resolve/main/%s", (int)el, o->endpoint, repo,
                 ep);
      free(ep);
      if (!ep) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline metadata: out of memory");
        break;
      }
      st = list_add(l, furl, NULL, path->valuestring,
                    cJSON_IsNumber(size) ? (int64_t)size->valuedouble : -1, sha);
      if (st != SDW_OK) break;
    }
    cJSON_Delete(doc);
    if (st != SDW_OK || !b.next[0]) break;
    snprintf(url, sizeof url, "%s", b.next);
  }
  free(b.p);
  free(repo);
  return st;
}

static sdw_status list_local(const md_options *o, const char *dir, const char *rel, md_list *l,
                             int depth) {
  if (depth > 32) return sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: nested too deep", dir);
  DIR *d = opendir(dir);
  if (!d) return sdw_fail(SDW_ERR_IO, "%s: %s", dir, strerror(errno));
  sdw_status st = SDW_OK;
  struct dirent *e;
  while (st == SDW_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4096], r[2048];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    struct stat sb;
    if (stat(path, &sb) != 0) continue;
    if (S_ISDIR(sb.st_mode))
      st = list_local(o, path, r, l, depth + 1);
    else if (S_ISREG(sb.st_mode) && fnmatch(o->include, r, 0) == 0) {
      char *abs = realpath(path, NULL);
      if (!abs)
        st = sdw_fail(SDW_ERR_IO, "%s: %s", path, strerror(errno));
      else
        st = list_add(l, NULL, abs, r, (int64_t)sb.st_size, NULL);
      free(abs);
    }
  }
  closedir(d);
  return st;
}

static int cmp_file(const void *a, const void *b) {
  return strcmp(((const md_file *)a)->name, ((const md_file *)b)->name);
}

/* --- downloading one file ----------------------------------------------------------------------
 */

typedef struct dl_ctx {
  FILE *fp;
  sdw_manifest *m;
  int64_t base_done; /* bytes of earlier files */
  int64_t have;      /* bytes of this file on disk */
  long status;       /* the response's status, from the header callback */
  bool restart;      /* a 200 answered a Range request: truncate first */
  bool ranged;
} dl_ctx;

static size_t file_header(char *buf, size_t size, size_t nitems, void *ud) {
  dl_ctx *d = ud;
  size_t n = size * nitems;
  if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
    const char *sp = memchr(buf, ' ', n);
    d->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    d->restart = d->ranged && d->status == 200;
  }
  return n;
}

static size_t file_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  dl_ctx *d = ud;
  size_t n = size * nmemb;
  if (d->status < 200 || d->status >= 300) return n; /* an error body: ignore */
  if (d->restart) {
    if (ftruncate(fileno(d->fp), 0) != 0 || fseek(d->fp, 0, SEEK_SET) != 0) return 0;
    d->have = 0;
    d->restart = false;
  }
  if (fwrite(ptr, 1, n, d->fp) != n) return 0;
  d->have += (int64_t)n;
  return n;
}

static int file_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                         curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  dl_ctx *d = ud;
  cJSON_ReplaceItemInObject(d->m->extra, "bytes_done",
                            cJSON_CreateNumber((double)(d->base_done + d->have)));
  sdw_manifest_flush(d->m, false);
  return g_stop ? 1 : 0;
}

static sdw_status sha_check(const char *part, const md_file *f, bool *ok) {
  *ok = true;
  if (!f->sha256[0]) return SDW_OK;
  unsigned char dg[32];
  char hex[65];
  SDW_TRY(sdw_sha256_file(part, dg));
  sdw_sha256_hex(dg, hex);
  *ok = strcasecmp(hex, f->sha256) == 0;
  return SDW_OK;
}

static sdw_status mkdirs_for(const char *path) {
  char *dup = strdup(path);
  if (!dup) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "pipeline metadata: out of memory");
  sdw_status st = sdw_mkdir_p(dirname(dup));
  free(dup);
  return st;
}

static sdw_status finish_part(const char *part, const char *dest) {
  int fd = open(part, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  if (rename(part, dest) != 0) return sdw_fail(SDW_ERR_IO, "%s: rename: %s", dest, strerror(errno));
  return SDW_OK;
}

/* Downloads f to dest; *reason receives a failure reason for the manifest. */
static sdw_status download_file(const md_options *o, sdw_manifest *m, const md_file *f,
                                const char *dest, int64_t base_done, const char **reason) {
  char part[4200];
  snprintf(part, sizeof part, "%s.part", dest);
  struct curl_slist *hdrs = auth_headers(o);
  CURL *c = curl_easy_init();
  if (!c) {
    curl_slist_free_all(hdrs);
    return sdw_fail(SDW_ERR_INTERNAL, "curl_easy_init failed");
  }
  sdw_status st = SDW_OK;
  *reason = NULL;
  for (int attempt = 0;; attempt++) {
    FILE *fp = fopen(part, "ab");
    if (!fp) {
      st = sdw_fail(SDW_ERR_IO, "%s: %s", part, strerror(errno));
      *reason = "io";
      break;
    }
    struct stat sb;
    int64_t have = fstat(fileno(fp), &sb) == 0 ? (int64_t)sb.st_size : 0;
    bool complete = f->size >= 0 && have == f->size;
    long code = 0;
    CURLcode rc = CURLE_OK;
    if (!complete) {
      if (f->size >= 0 && have > f->size) { /* longer than listed: start over */
        if (ftruncate(fileno(fp), 0) != 0)
          have = -1;
        else
          have = 0;
      }
      dl_ctx d = {.fp = fp, .m = m, .base_done = base_done, .have = have, .ranged = have > 0};
      char range[64];
      curl_easy_reset(c);
      common_setup(c, o, hdrs);
      curl_easy_setopt(c, CURLOPT_URL, f->url);
      if (have > 0) {
        snprintf(range, sizeof range, "%lld-", (long long)have);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
      }
      curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, file_header);
      curl_easy_setopt(c, CURLOPT_HEADERDATA, &d);
      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, file_write);
      curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
      curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, file_progress);
      curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
      curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
      rc = curl_easy_perform(c);
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
      have = d.have;
    }
    if (fclose(fp) != 0 && rc == CURLE_OK) rc = CURLE_WRITE_ERROR;
    if (g_stop) {
      st = sdw_fail(SDW_ERR_INTERRUPTED, "%s: interrupted", f->url);
      *reason = "interrupted";
      break;
    }
    if (!complete && rc == CURLE_OK && code == 416 && f->size < 0) {
      /* nothing past what we have: the part is the whole file */
      complete = true;
    }
    if (complete || (rc == CURLE_OK && code >= 200 && code < 300)) {
      if (f->size >= 0 && have != f->size) {
        st = sdw_fail(SDW_ERR_IO, "%s: %lld bytes, the listing says %lld", f->url, (long long)have,
                      (long long)f->size);
        *reason = "size_mismatch";
      } else {
        bool ok;
        st = sha_check(part, f, &ok);
        if (st == SDW_OK && !ok) {
          st = sdw_fail(SDW_ERR_FORMAT, "%s: SHA-256 differs from the listing's %s", f->url,
                        f->sha256);
          *reason = "sha256_mismatch";
        }
        if (st == SDW_OK) {
          st = finish_part(part, dest);
          break;
        }
      }
      unlink(part); /* wrong bytes: never resume from them */
      if (attempt >= o->retries) break;
      st = SDW_OK;
      backoff(attempt);
      continue;
    }
    if (rc == CURLE_OK && (code == 401 || code == 403)) {
      st = auth_error(o, f->url, code);
      *reason = "http_auth";
      break;
    }
    if (rc == CURLE_OK && code == 416) unlink(part); /* a bad range: start over */
    bool transient = rc != CURLE_OK ? rc != CURLE_UNSUPPORTED_PROTOCOL &&
                                          rc != CURLE_URL_MALFORMAT && rc != CURLE_WRITE_ERROR
                                    : transient_http(code) || code == 416;
    if (!transient || attempt >= o->retries) {
      if (rc != CURLE_OK) {
        st = sdw_fail(SDW_ERR_IO, "%s: %s", f->url, curl_easy_strerror(rc));
        *reason = rc == CURLE_WRITE_ERROR ? "io" : "network";
      } else {
        st = sdw_fail(SDW_ERR_IO, "HTTP %ld from %s", code, f->url);
        *reason = code >= 500 ? "http_5xx" : "http_4xx";
      }
      break;
    }
    backoff(attempt);
  }
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  return st;
}

static sdw_status link_local(const md_file *f, const char *dest) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.part", dest);
  unlink(tmp);
  if (symlink(f->source, tmp) != 0)
    return sdw_fail(SDW_ERR_IO, "%s: symlink: %s", tmp, strerror(errno));
  if (rename(tmp, dest) != 0) return sdw_fail(SDW_ERR_IO, "%s: rename: %s", dest, strerror(errno));
  return SDW_OK;
}

/* --- main
 * ----------------------------------------------------------------------------------------- */

static sdw_status run_metadata(const md_options *o, int *failed) {
  md_list l = {0};
  sdw_manifest m;
  sdw_status st = sdw_manifest_begin(&m, o->data, "metadata");
  if (st != SDW_OK) return st;
  char outdir[2048];
  snprintf(outdir, sizeof outdir, "%s/metadata", o->data);
  if (o->url_count || o->local) {
    for (int i = 0; i < o->url_count && st == SDW_OK; i++) {
      const char *u = o->urls[i];
      size_t n = strcspn(u, "?#");
      const char *s = u + n;
      while (s > u && s[-1] != '/')
        s--;
      char name[1024];
      snprintf(name, sizeof name, "%.*s", (int)(u + n - s), s);
      if (!safe_name(name))
        st = sdw_fail(SDW_ERR_INVALID_ARGUMENT, "%s: no file name in the URL", u);
      else
        st = list_add(&l, u, NULL, name, -1, NULL);
    }
    if (st == SDW_OK && o->local) st = list_local(o, o->local, "", &l, 0);
  } else {
    st = list_hub(o, &l);
  }
  if (st == SDW_OK) qsort(l.f, (size_t)l.n, sizeof *l.f, cmp_file);
  for (int i = 1; i < l.n && st == SDW_OK; i++)
    if (strcmp(l.f[i].name, l.f[i - 1].name) == 0)
      st =
          sdw_fail(SDW_ERR_INVALID_ARGUMENT, "two inputs would both be %s/%s", outdir, l.f[i].name);
  if (st == SDW_OK && l.n == 0) st = sdw_fail(SDW_ERR_NOT_FOUND, "no file matches %s", o->include);
  if (st == SDW_OK) st = sdw_mkdir_p(outdir);
  if (st != SDW_OK) {
    list_free(&l);
    sdw_manifest_set_message(&m, "%s", sdw_last_error());
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    sdw_manifest_finish(&m, g_stop ? "interrupted" : "failed");
    sdw_fail(st, "%s", msg); /* the manifest's own errors must not hide this one */
    return st;
  }
  int64_t bytes_total = 0;
  bool known = true;
  for (int i = 0; i < l.n; i++) {
    if (l.f[i].size < 0)
      known = false;
    else
      bytes_total += l.f[i].size;
  }
  sdw_manifest_set_total(&m, l.n);
  cJSON_AddNumberToObject(m.extra, "bytes_done", 0);
  if (known)
    cJSON_AddNumberToObject(m.extra, "bytes_total", (double)bytes_total);
  else
    cJSON_AddNullToObject(m.extra, "bytes_total");
  cJSON_AddStringToObject(m.extra, "source", o->url_count ? "url" : o->local ? "local" : o->repo);
  int64_t done = 0;
  sdw_status fatal = SDW_OK;
  for (int i = 0; i < l.n; i++) {
    if (g_stop) {
      fatal = SDW_ERR_INTERRUPTED;
      break;
    }
    const md_file *f = &l.f[i];
    char dest[4096];
    snprintf(dest, sizeof dest, "%s/%s", outdir, f->name);
    sdw_manifest_count_in(&m, 1);
    struct stat sb;
    bool present = lstat(dest, &sb) == 0 && (f->size < 0 || (int64_t)sb.st_size == f->size ||
                                             (S_ISLNK(sb.st_mode) && !f->url));
    sdw_status fs = mkdirs_for(dest);
    const char *reason = "io";
    if (fs == SDW_OK && present) {
      sdw_manifest_count_skipped(&m, 1);
    } else if (fs == SDW_OK) {
      fs = f->url ? download_file(o, &m, f, dest, done, &reason) : link_local(f, dest);
    }
    if (fs == SDW_OK) {
      if (!present) sdw_manifest_count_out(&m, 1);
      sdw_manifest_add_output(&m, dest);
      done += f->size >= 0 ? f->size : (stat(dest, &sb) == 0 ? (int64_t)sb.st_size : 0);
    } else if (fs == SDW_ERR_INTERRUPTED || g_stop) {
      sdw_manifest_set_message(&m, "interrupted");
      fatal = SDW_ERR_INTERRUPTED;
      break;
    } else {
      sdw_manifest_count_failed(&m, reason ? reason : "io");
      sdw_manifest_set_message(&m, "%s", sdw_last_error());
      fprintf(stderr, "sdw: pipeline metadata: %s\n", sdw_last_error());
      (*failed)++;
      if (reason && strcmp(reason, "http_auth") == 0) {
        fatal = fs;
        break;
      }
    }
    cJSON_ReplaceItemInObject(m.extra, "bytes_done", cJSON_CreateNumber((double)done));
    sdw_manifest_flush(&m, false);
  }
  list_free(&l);
  sdw_status fs = sdw_manifest_finish(&m, fatal == SDW_ERR_INTERRUPTED ? "interrupted"
                                          : fatal != SDW_OK || *failed ? "failed"
                                                                       : "done");
  if (fatal != SDW_OK) return fatal;
  return fs;
}

int sdw_pipeline_metadata_main(int argc, char **argv) {
  md_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  int failed = 0;
  sdw_status st = run_metadata(&o, &failed);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  curl_global_cleanup();
  if (st == SDW_ERR_INTERRUPTED) {
    fprintf(stderr, "sdw: pipeline metadata: interrupted; run it again to resume\n");
    return 130;
  }
  if (st != SDW_OK) {
    if (!failed) fprintf(stderr, "sdw: pipeline metadata: %s\n", sdw_last_error());
    return 1;
  }
  return failed ? 1 : 0;
}
