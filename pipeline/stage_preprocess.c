/* `sdw pipeline preprocess`: WebDataset shards -> the token cache
 * (the seed's data_pipeline/04_preprocess_to_cache.py, SEED.md §3.4).
 *
 * Input: every regular file DIR/shards/NAME.tar (--shards; not recursive: the
 * download stage's layout), in sorted name order. Members are grouped by
 * base name (the name minus its last extension, Python's Path.stem of the
 * whole relative name). A sample needs a .jpg/.jpeg member and a caption:
 * the .txt member, else the "caption" or "TEXT" string of the .json member.
 *
 * Validation, in this order; a sample is counted under the first reason
 * that rejects it (the manifest's failure histogram):
 *   no_image         no .jpg/.jpeg member
 *   no_caption       neither .txt nor a .json with caption/TEXT
 *   caption_too_long caption over --max-caption-bytes bytes (sdw's guard
 *                    against hostile text; the seed has none; 0: no limit)
 *   empty_caption    nothing left after strip() (Python's: ASCII and Unicode
 *                    whitespace)
 *   short_caption    fewer than --min-caption (10) code points after strip()
 *   decode_error     not decodable (pipeline/image.h: JPEG/PNG/WebP sniffed
 *                    from the bytes as PIL does, bomb limits before decoding)
 *   too_small        either side of the DECODED image < --min-size (256).
 *                    The seed checks this after its 512 resize, where it can
 *                    never trigger; sdw applies it where it was meant.
 *                    --min-size 0 gives the seed's behaviour exactly.
 *   low_variance     pixel std < --min-std (5)
 *   too_dark         pixel mean < --min-mean (2)
 *   too_bright       pixel mean > --max-mean (253)
 *   tokenize_error   the tokenizer refused the caption
 * std and mean are taken as the seed does, over every channel of the image
 * resized so its shorter side is --image-size (512) and center-cropped to
 * image-size squared: INTER_AREA to shrink and cubic to enlarge here (the
 * seed uses PIL's LANCZOS/BICUBIC; the statistics agree to a fraction of a
 * level, far inside the thresholds). The seed's non-finite check cannot fail
 * on 8-bit pixels and is not repeated. The pixels are not stored.
 *
 * Tokenisation: core/model/tokenizer.h (--tokenizer hf, the seed's
 * CLIPTokenizer, or clip), 77 ids, padded and truncated, with the mask.
 *
 * Output: DIR/tokens/<shard>.parquet for <shard>.tar, one per shard, written
 * atomically; rows in bytewise base-name order; snappy; columns
 *   image_key       STRING  "<shard file name>::<base name>" (the seed's key)
 *   caption         STRING  the caption after strip()
 *   input_ids       BINARY  308 bytes: 77 int32 little-endian token ids
 *   attention_mask  BINARY  308 bytes: 77 int32 little-endian 0/1
 *   shard           STRING  the shard's file name ("00000.tar")
 *   image_offset    INT64   byte offset of the image member's data in the tar
 *   image_size      INT64   its size in bytes
 * (our parquet writer has no LIST type, so the seed's fixed_size_list<int32>
 * [77] becomes a fixed 308-byte binary; numpy.frombuffer(v, "<i4") reads it).
 * Footer metadata: sdw.tokenizer ("hf"/"clip"), sdw.format
 * ("sdw-token-cache/1"). A shard that holds no valid sample still gets a
 * file with zero rows.
 *
 * The seed instead wrote batch_NNNNNN.parquet files of 5000 rows and kept a
 * processed_shards.txt log; one file per shard makes "this shard is done"
 * the existence of its output, with nothing else to keep consistent.
 *
 * Resume: a shard whose output exists is done and skipped (its rows count as
 * "skipped"), so a killed run started again ends with every shard exactly
 * once. Temporaries a killed run left behind are removed when their process
 * is gone. A shard that is not a readable tar fails with reason "bad_shard" and
 * gets no output (a later run tries it again).
 *
 * --workers N threads take shards in turn; each shard is read, validated and
 * written by one thread, so the output does not depend on N. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/model/tokenizer.h"
#include "pipeline/image.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_reader.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/stages.h"
#include "pipeline/tar.h"

typedef struct pre_options {
  const char *data;
  const char *shards;
  const char *vocab;
  int workers;
  sdw_tokenizer_mode mode;
  int64_t min_caption, max_caption_bytes, min_size, image_size;
  double min_std, min_mean, max_mean;
} pre_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdw pipeline preprocess --data DIR [options]\n"
          "\n"
          "Reads WebDataset shards (<key>.jpg + <key>.txt / <key>.json), validates images and\n"
          "captions with the seed's rules, tokenizes the captions and writes the token cache\n"
          "DIR/tokens/<shard>.parquet, one file per shard (a shard with an output is skipped).\n"
          "\n"
          "  --data DIR              data directory (manifest in DIR/manifests)\n"
          "  --shards DIR            where the *.tar shards are (default DIR/shards)\n"
          "  --workers N             threads over shards (default 4)\n"
          "  --tokenizer hf|clip     tokenizer behaviour (default hf, the seed's)\n"
          "  --vocab PATH            BPE vocabulary (default: the copy shipped with sdw)\n"
          "  --min-caption N         drop captions shorter than N characters after strip\n"
          "                          (default 10)\n"
          "  --max-caption-bytes N   drop captions longer than N bytes (default 65536; 0: none)\n"
          "  --min-size N            drop images with a side < N pixels (default 256; 0: none)\n"
          "  --image-size N          resize/crop size for the pixel statistics (default 512)\n"
          "  --min-std X             drop images whose pixel std < X (default 5)\n"
          "  --min-mean X            drop images whose pixel mean < X (default 2)\n"
          "  --max-mean X            drop images whose pixel mean > X (default 253)\n"
          "  --help                  this text\n");
}

/* 0 run, 1 --help, 2 usage error (reported). */
static int parse_options(int argc, char **argv, pre_options *o) {
  memset(o, 0, sizeof *o);
  o->workers = 4;
  o->mode = SDW_TOKENIZER_HF;
  o->min_caption = 10;
  o->max_caption_bytes = 65536;
  o->min_size = 256;
  o->image_size = 512;
  o->min_std = 5;
  o->min_mean = 2;
  o->max_mean = 253;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline preprocess: %s needs a value (or is unknown; see --help)\n",
              a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    int64_t n = 0;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--shards") == 0)
      o->shards = v;
    else if (strcmp(a, "--vocab") == 0)
      o->vocab = v;
    else if (strcmp(a, "--workers") == 0) {
      ok = sdw_parse_i64(v, 1, 256, &n);
      o->workers = (int)n;
    } else if (strcmp(a, "--tokenizer") == 0) {
      if (strcmp(v, "hf") == 0)
        o->mode = SDW_TOKENIZER_HF;
      else if (strcmp(v, "clip") == 0)
        o->mode = SDW_TOKENIZER_CLIP;
      else
        ok = false;
    } else if (strcmp(a, "--min-caption") == 0)
      ok = sdw_parse_i64(v, 0, INT32_MAX, &o->min_caption);
    else if (strcmp(a, "--max-caption-bytes") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->max_caption_bytes);
    else if (strcmp(a, "--min-size") == 0)
      ok = sdw_parse_i64(v, 0, INT32_MAX, &o->min_size);
    else if (strcmp(a, "--image-size") == 0)
      ok = sdw_parse_i64(v, 1, 16384, &o->image_size);
    else if (strcmp(a, "--min-std") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->min_std);
    else if (strcmp(a, "--min-mean") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->min_mean);
    else if (strcmp(a, "--max-mean") == 0)
      ok = sdw_parse_double(v, -HUGE_VAL, HUGE_VAL, &o->max_mean);
    else {
      fprintf(stderr, "sdw: pipeline preprocess: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline preprocess: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data) {
    fprintf(stderr, "sdw: pipeline preprocess: --data is required (see --help)\n");
    return 2;
  }
  return 0;
}

/* --- one shard ----------------------------------------------------------------- */

typedef struct member_ref {
  char *base; /* owned */
  int kind;   /* 0 image, 1 txt, 2 json */
  size_t seq; /* position in the archive */
  const void *data;
  size_t size;
  uint64_t offset;
} member_ref;

typedef struct sample {
  const char *base;
  const member_ref *image, *txt, *json;
} sample;

static int cmp_member(const void *a, const void *b) {
  const member_ref *x = a, *y = b;
  int c = strcmp(x->base, y->base);
  if (c) return c;
  if (x->kind != y->kind) return x->kind - y->kind;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Python's str.isspace() for one code point: what str.strip() removes. */
static bool is_space_cp(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) and its code point, or
 * 0 when it is not one (such bytes are never whitespace). */
static size_t utf8_at(const unsigned char *s, size_t n, uint32_t *cp) {
  if (n == 0) return 0;
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  }
  size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
  if (!len || len > n) return 0;
  uint32_t c = s[0] & (0x7F >> len);
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = c << 6 | (s[i] & 0x3F);
  }
  *cp = c;
  return len;
}

/* strip(): removes leading and trailing whitespace of text[0..*n). */
static const char *strip_text(const char *text, size_t *n) {
  const unsigned char *s = (const unsigned char *)text;
  size_t len = *n;
  uint32_t cp;
  size_t k;
  while ((k = utf8_at(s, len, &cp)) && is_space_cp(cp))
    s += k, len -= k;
  while (len > 0) {
    size_t start = len - 1; /* back up to the start of the last sequence */
    while (start > 0 && (s[start] & 0xC0) == 0x80 && len - start < 4)
      start--;
    if (!(k = utf8_at(s + start, len - start, &cp)) || start + k != len || !is_space_cp(cp)) break;
    len = start;
  }
  *n = len;
  return (const char *)s;
}

static size_t utf8_chars(const char *s, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) c++;
  return c;
}

typedef struct pre_run {
  const pre_options *o;
  sdw_manifest *m;
  sdw_tokenizer *tok;
  char **shards; /* file names */
  int shard_count;
  char shard_dir[4096], token_dir[4096];
  _Atomic int next;
  _Atomic int shards_done, shards_failed, workers_finished;
  _Atomic int64_t rows_skipped;
  pthread_mutex_t lock; /* first error */
  sdw_status error;
  char error_msg[1024];
} pre_run;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

/* Pixel statistics of the seed's 512 center crop: *mean, *std over all
 * values (population std, numpy's default). */
static sdw_status pixel_stats(const sdw_image *img, int size, double *mean, double *std) {
  sdw_resize_options ro = {
      .mode = SDW_RESIZE_CENTER_CROP, .size = size, .resize_only_if_bigger = 0, .upscale_cubic = 1};
  sdw_image r = {0};
  SDW_TRY(sdw_image_resize(img, &ro, &r));
  size_t n = (size_t)r.width * (size_t)r.height * 3;
  uint64_t hist[256] = {0};
  for (size_t i = 0; i < n; i++)
    hist[r.pixels[i]]++;
  sdw_image_free(&r);
  double s = 0, s2 = 0;
  for (int v = 0; v < 256; v++)
    s += (double)hist[v] * v;
  double mu = n ? s / (double)n : 0;
  for (int v = 0; v < 256; v++)
    s2 += (double)hist[v] * (v - mu) * (v - mu);
  *mean = mu;
  *std = n ? sqrt(s2 / (double)n) : 0;
  return SDW_OK;
}

/* The caption of a sample into *cap (malloc'd, stripped) or the reason. */
static const char *sample_caption(const pre_options *o, const sample *s, char **cap, size_t *len) {
  const char *text = NULL;
  size_t n = 0;
  cJSON *doc = NULL;
  if (s->txt) {
    text = s->txt->data;
    n = s->txt->size;
  } else if (s->json) {
    doc = cJSON_ParseWithLength(s->json->data, s->json->size);
    const cJSON *c = doc ? cJSON_GetObjectItemCaseSensitive(doc, "caption") : NULL;
    if (!cJSON_IsString(c)) c = doc ? cJSON_GetObjectItemCaseSensitive(doc, "TEXT") : NULL;
    if (cJSON_IsString(c)) {
      text = c->valuestring;
      n = strlen(text);
    }
  }
  if (!text) {
    cJSON_Delete(doc);
    return "no_caption";
  }
  if (o->max_caption_bytes > 0 && (int64_t)n > o->max_caption_bytes) {
    cJSON_Delete(doc);
    return "caption_too_long";
  }
  text = strip_text(text, &n);
  const char *reason = NULL;
  if (n == 0)
    reason = "empty_caption";
  else if ((int64_t)utf8_chars(text, n) < o->min_caption)
    reason = "short_caption";
  else if (!(*cap = malloc(n + 1)))
    reason = "out_of_memory";
  else {
    memcpy(*cap, text, n);
    (*cap)[n] = 0;
    *len = n;
  }
  cJSON_Delete(doc);
  return reason;
}

static const char *validate_image(const pre_options *o, const member_ref *im) {
  sdw_image img = {0};
  if (sdw_image_decode(im->data, im->size, NULL, &img, NULL) != SDW_OK) return "decode_error";
  const char *reason = NULL;
  double mean = 0, std = 0;
  if (img.width < o->min_size || img.height < o->min_size)
    reason = "too_small";
  else if (pixel_stats(&img, (int)o->image_size, &mean, &std) != SDW_OK)
    reason = "decode_error";
  else if (std < o->min_std)
    reason = "low_variance";
  else if (mean < o->min_mean)
    reason = "too_dark";
  else if (mean > o->max_mean)
    reason = "too_bright";
  sdw_image_free(&img);
  return reason;
}

static void le_i32(uint8_t *dst, const int32_t *v) {
  for (int i = 0; i < SDW_CLIP_CONTEXT; i++) {
    uint32_t u = (uint32_t)v[i];
    dst[4 * i] = (uint8_t)u;
    dst[4 * i + 1] = (uint8_t)(u >> 8);
    dst[4 * i + 2] = (uint8_t)(u >> 16);
    dst[4 * i + 3] = (uint8_t)(u >> 24);
  }
}

static const sdw_parquet_field k_fields[] = {
    {"image_key", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"caption", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"input_ids", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_NONE, false},
    {"attention_mask", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_NONE, false},
    {"shard", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
    {"image_offset", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
    {"image_size", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
};

static bool member_kind(const char *name, char **base, int *kind) {
  const char *slash = strrchr(name, '/');
  const char *dot = strrchr(slash ? slash + 1 : name, '.');
  if (!dot || dot == (slash ? slash + 1 : name)) return false;
  const char *ext = dot + 1;
  if (strcasecmp(ext, "jpg") == 0 || strcasecmp(ext, "jpeg") == 0)
    *kind = 0;
  else if (strcmp(ext, "txt") == 0)
    *kind = 1;
  else if (strcmp(ext, "json") == 0)
    *kind = 2;
  else
    return false;
  size_t n = (size_t)(dot - name);
  *base = malloc(n + 1);
  if (!*base) return false;
  memcpy(*base, name, n);
  (*base)[n] = 0;
  return true;
}

/* Processes one shard; returns SDW_OK, or an error for the shard
 * (bad_shard) or the run (I/O). *fatal set for errors that stop the run. */
static sdw_status process_shard(pre_run *r, const char *shard, bool *fatal) {
  char path[8192], out[8192];
  snprintf(path, sizeof path, "%s/%s", r->shard_dir, shard);
  size_t sl = strlen(shard);
  snprintf(out, sizeof out, "%s/%.*s.parquet", r->token_dir, (int)(sl - 4), shard);
  *fatal = false;

  sdw_tar_reader *tr = NULL;
  sdw_status st = sdw_tar_reader_open(path, &tr);
  if (st != SDW_OK) return st;
  member_ref *mem = NULL;
  size_t nm = 0, cap = 0;
  for (;;) {
    sdw_tar_member tm;
    int done = 0;
    st = sdw_tar_reader_next(tr, &tm, &done);
    if (st != SDW_OK || done) break;
    char *base;
    int kind;
    if (!member_kind(tm.name, &base, &kind)) continue;
    if (nm == cap) {
      size_t nc = cap ? cap * 2 : 256;
      member_ref *p = realloc(mem, nc * sizeof *p);
      if (!p) {
        free(base);
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        *fatal = true;
        break;
      }
      mem = p;
      cap = nc;
    }
    mem[nm] = (member_ref){base, kind, nm, tm.data, tm.size, tm.offset};
    nm++;
  }
  /* Sorted by (base, kind, position): of a repeated member the last one
   * wins below, as the seed's dict keeps the last. */
  if (nm) qsort(mem, nm, sizeof *mem, cmp_member);

  sdw_parquet_writer *w = NULL;
  if (st == SDW_OK) {
    st = sdw_parquet_writer_open(out, k_fields, 7, NULL, &w);
    if (st == SDW_OK) st = sdw_parquet_writer_set_metadata(w, "sdw.format", "sdw-token-cache/1");
    if (st == SDW_OK)
      st = sdw_parquet_writer_set_metadata(w, "sdw.tokenizer", sdw_tokenizer_mode_name(r->o->mode));
    if (st != SDW_OK) *fatal = true;
  }
  char *key = NULL;
  size_t key_cap = 0;
  for (size_t i = 0; i < nm && st == SDW_OK;) {
    sample s = {.base = mem[i].base};
    size_t j = i;
    for (; j < nm && strcmp(mem[j].base, s.base) == 0; j++) {
      if (mem[j].kind == 0) s.image = &mem[j];
      if (mem[j].kind == 1) s.txt = &mem[j];
      if (mem[j].kind == 2) s.json = &mem[j];
    }
    i = j;
    sdw_manifest_count_in(r->m, 1);
    char *caption = NULL;
    size_t clen = 0;
    const char *reason = NULL;
    if (!s.image)
      reason = "no_image";
    else
      reason = sample_caption(r->o, &s, &caption, &clen);
    if (!reason) reason = validate_image(r->o, s.image);
    int32_t ids[SDW_CLIP_CONTEXT], mask[SDW_CLIP_CONTEXT];
    if (!reason && sdw_tokenizer_encode(r->tok, caption, clen, ids, mask) != SDW_OK)
      reason = "tokenize_error";
    if (reason) {
      free(caption);
      sdw_manifest_count_failed(r->m, reason);
      continue;
    }
    size_t kl = sl + 2 + strlen(s.base) + 1;
    if (kl > key_cap) {
      char *p = realloc(key, kl);
      if (!p) {
        free(caption);
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
        *fatal = true;
        break;
      }
      key = p;
      key_cap = kl;
    }
    snprintf(key, kl, "%s::%s", shard, s.base);
    uint8_t bids[4 * SDW_CLIP_CONTEXT], bmask[4 * SDW_CLIP_CONTEXT];
    le_i32(bids, ids);
    le_i32(bmask, mask);
    sdw_parquet_writer_set_str(w, 0, key);
    sdw_parquet_writer_set_bytes(w, 1, caption, clen);
    sdw_parquet_writer_set_bytes(w, 2, bids, sizeof bids);
    sdw_parquet_writer_set_bytes(w, 3, bmask, sizeof bmask);
    sdw_parquet_writer_set_str(w, 4, shard);
    sdw_parquet_writer_set_i64(w, 5, (int64_t)s.image->offset);
    sdw_parquet_writer_set_i64(w, 6, (int64_t)s.image->size);
    free(caption);
    st = sdw_parquet_writer_end_row(w);
    if (st != SDW_OK) *fatal = true;
    sdw_manifest_count_out(r->m, 1);
  }
  free(key);
  if (w) {
    if (st == SDW_OK) {
      st = sdw_parquet_writer_close(w);
      if (st != SDW_OK) *fatal = true;
    } else
      sdw_parquet_writer_abort(w);
  }
  for (size_t i = 0; i < nm; i++)
    free(mem[i].base);
  free(mem);
  sdw_tar_reader_close(tr);
  return st;
}

static void *worker(void *arg) {
  pre_run *r = arg;
  for (;;) {
    if (g_stop) break;
    pthread_mutex_lock(&r->lock);
    bool failed = r->error != SDW_OK;
    pthread_mutex_unlock(&r->lock);
    if (failed) break;
    int i = atomic_fetch_add(&r->next, 1);
    if (i >= r->shard_count) break;
    bool fatal = false;
    sdw_status st = process_shard(r, r->shards[i], &fatal);
    if (st == SDW_OK) {
      atomic_fetch_add(&r->shards_done, 1);
    } else if (!fatal) {
      /* A corrupt shard: reported, no output, the run goes on. */
      atomic_fetch_add(&r->shards_failed, 1);
      sdw_manifest_count_failed(r->m, "bad_shard");
      sdw_manifest_set_message(r->m, "%s", sdw_last_error());
      fprintf(stderr, "sdw: pipeline preprocess: %s\n", sdw_last_error());
    } else {
      pthread_mutex_lock(&r->lock);
      if (r->error == SDW_OK) {
        r->error = st;
        snprintf(r->error_msg, sizeof r->error_msg, "%s", sdw_last_error());
      }
      pthread_mutex_unlock(&r->lock);
    }
  }
  atomic_fetch_add(&r->workers_finished, 1);
  return NULL;
}

/* Removes the temporaries (".<name>.parquet.tmp.<pid>", core/base/fsutil.h)
 * that a killed run left in dir: those whose process is gone. */
static void remove_stale_temporaries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *t = strstr(e->d_name, ".parquet.tmp.");
    if (e->d_name[0] != '.' || !t) continue;
    char *end;
    long pid = strtol(t + 13, &end, 10);
    if (*end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
      char p[8192];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  }
  closedir(d);
}

static bool file_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int sdw_pipeline_preprocess_main(int argc, char **argv) {
  pre_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;

  pre_run *r = calloc(1, sizeof *r);
  if (!r) return 1;
  r->o = &o;
  pthread_mutex_init(&r->lock, NULL);
  if (o.shards)
    snprintf(r->shard_dir, sizeof r->shard_dir, "%s", o.shards);
  else
    snprintf(r->shard_dir, sizeof r->shard_dir, "%s/shards", o.data);
  snprintf(r->token_dir, sizeof r->token_dir, "%s/tokens", o.data);

  sdw_status st = sdw_list_files(r->shard_dir, ".tar", &r->shards, &r->shard_count);
  if (st == SDW_OK) st = sdw_mkdir_p(r->token_dir);
  if (st == SDW_OK) remove_stale_temporaries(r->token_dir);
  if (st == SDW_OK) st = sdw_tokenizer_load(o.vocab, o.mode, &r->tok);
  sdw_manifest m;
  if (st == SDW_OK) st = sdw_manifest_begin(&m, o.data, "preprocess");
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline preprocess: %s\n", sdw_last_error());
    for (int i = 0; i < r->shard_count; i++)
      free(r->shards[i]);
    free(r->shards);
    sdw_tokenizer_free(r->tok);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return 1;
  }
  r->m = &m;

  /* Shards with an output are done: skip them, counting their rows. */
  int todo = 0;
  int64_t skipped_rows = 0;
  int skipped_shards = 0;
  for (int i = 0; i < r->shard_count; i++) {
    char path[8192], out[8192];
    snprintf(path, sizeof path, "%s/%s", r->shard_dir, r->shards[i]);
    size_t sl = strlen(r->shards[i]);
    snprintf(out, sizeof out, "%s/%.*s.parquet", r->token_dir, (int)(sl - 4), r->shards[i]);
    if (i < SDW_MANIFEST_MAX_INPUTS) sdw_manifest_add_input(&m, path, false);
    sdw_manifest_add_output(&m, out);
    if (file_exists(out)) {
      sdw_parquet_file *f;
      if (sdw_parquet_open(out, NULL, &f) == SDW_OK) {
        skipped_rows += sdw_parquet_num_rows(f);
        sdw_parquet_close(f);
        free(r->shards[i]);
        skipped_shards++;
        continue;
      }
      /* An unreadable output (not ours: ours appear atomically) is redone. */
    }
    r->shards[todo++] = r->shards[i];
  }
  sdw_manifest_count_skipped(&m, skipped_rows);
  int all = r->shard_count;
  r->shard_count = todo;
  cJSON_AddNumberToObject(m.extra, "shards", all);
  cJSON_AddNumberToObject(m.extra, "shards_skipped", skipped_shards);
  cJSON_AddStringToObject(m.extra, "tokenizer", sdw_tokenizer_mode_name(o.mode));
  cJSON_AddStringToObject(m.extra, "shard_dir", r->shard_dir);
  cJSON_AddNumberToObject(m.extra, "shards_done", skipped_shards);
  sdw_manifest_flush(&m, true);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second signal ends the process at once */
  sigemptyset(&sa.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  int nt = o.workers < todo ? o.workers : todo;
  pthread_t th[256];
  int started = 0;
  for (int t = 0; t < nt; t++)
    if (pthread_create(&th[t], NULL, worker, r) == 0) started++;
  if (started == 0 && todo > 0) worker(r);
  /* This thread keeps the manifest current while the workers run. */
  while (atomic_load(&r->workers_finished) < started) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cJSON_ReplaceItemInObject(m.extra, "shards_done",
                              cJSON_CreateNumber(atomic_load(&r->shards_done) + skipped_shards));
    sdw_manifest_flush(&m, false);
  }
  for (int t = 0; t < started; t++)
    pthread_join(th[t], NULL);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);

  const char *state = "done";
  int rc = 0;
  if (r->error != SDW_OK) {
    sdw_manifest_set_message(&m, "%s", r->error_msg);
    fprintf(stderr, "sdw: pipeline preprocess: %s\n", r->error_msg);
    state = "failed";
    rc = 1;
  } else if (g_stop) {
    sdw_manifest_set_message(&m, "interrupted");
    state = "interrupted";
    rc = 130;
  }
  cJSON_ReplaceItemInObject(m.extra, "shards_done",
                            cJSON_CreateNumber(atomic_load(&r->shards_done) + skipped_shards));
  cJSON_AddNumberToObject(m.extra, "shards_failed", atomic_load(&r->shards_failed));
  sdw_manifest_finish(&m, state);
  for (int i = 0; i < todo; i++)
    free(r->shards[i]);
  free(r->shards);
  sdw_tokenizer_free(r->tok);
  pthread_mutex_destroy(&r->lock);
  free(r);
  return rc;
}
