/* `sdw tokenize`: prompts -> the 77 CLIP token ids the text encoder reads.
 *
 *   sdw tokenize "a prompt" ["another" ...]   one line of 77 ids per prompt
 *   sdw tokenize --jsonl < prompts.jsonl        one JSON string per input line
 *
 * --jsonl reads in batches and tokenizes each batch on OMP_NUM_THREADS threads;
 * output order is input order. A line that is not one JSON string stops the
 * run: the lines before it are printed, then one error line naming it, and
 * the exit status is 1. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli/cli.h"
#include "core/model/tokenizer.h"

static void print_help(FILE *out) {
  fprintf(out, "usage: sdw tokenize [--tokenizer hf|clip] [--vocab PATH] [--mask] PROMPT...\n"
               "       sdw tokenize [--tokenizer hf|clip] [--vocab PATH] [--mask] --jsonl < FILE\n"
               "\n"
               "Turns prompts into the 77 token ids that the CLIP ViT-L/14 text encoder of\n"
               "Stable Diffusion 1.x reads: 49406 (<|startoftext|>), the prompt's byte-level\n"
               "BPE tokens (at most 75; longer prompts are cut), 49407 (<|endoftext|>), then\n"
               "49407 as padding up to 77.\n"
               "\n"
               "Output: one line per prompt, 77 decimal ids separated by single spaces.\n"
               "With --mask each line continues with a TAB and the 77 attention-mask values\n"
               "(0 or 1, separated by single spaces): 1 for <|startoftext|>, the tokens kept\n"
               "and the closing <|endoftext|>, 0 for the padding.\n"
               "\n"
               "options:\n"
               "  --jsonl             read standard input: each line is one JSON string\n"
               "                      (\"a \\\"quoted\\\" prompt\\n\", \\uXXXX escapes, surrogate\n"
               "                      pairs); prints one output line per input line. A line\n"
               "                      that is not a JSON string is an error naming the line.\n"
               "  --mask              also print the attention mask (see above)\n"
               "  --tokenizer hf|clip which reference to follow (default hf):\n"
               "                      hf    Hugging Face's CLIPTokenizer (the Python one), as\n"
               "                            the seed and SD 1.x training use it: ftfy.fix_text,\n"
               "                            whitespace collapse, lower-case; HTML entities that\n"
               "                            ftfy leaves alone stay as typed\n"
               "                      clip  openai/CLIP's simple_tokenizer.py: the same plus\n"
               "                            html.unescape twice (\"&amp\" -> \"&\")\n"
               "  --vocab PATH        the BPE vocabulary bpe_simple_vocab_16e6.txt.gz (default:\n"
               "                      the copy shipped with sdw; SDW_ASSETS overrides where\n"
               "                      that is looked for)\n"
               "  --help              this text\n"
               "\n"
               "Exit status: 0 on success, 1 for a bad --jsonl line or an unreadable\n"
               "vocabulary, 2 for a usage error.\n");
}

/* --- output ------------------------------------------------------------------------------ */
enum { LINE_MAX_BYTES = SDW_CLIP_CONTEXT * 6 + 1 + SDW_CLIP_CONTEXT * 2 + 1 };

/* " <decimal id>" for every id, 8 bytes per entry (first byte: length). */
static char id_text[SDW_CLIP_VOCAB_SIZE][8];

static void id_text_init(void) {
  for (int id = 0; id < SDW_CLIP_VOCAB_SIZE; id++) {
    char tmp[8];
    int n = snprintf(tmp, sizeof tmp, " %d", id);
    id_text[id][0] = (char)n;
    memcpy(id_text[id] + 1, tmp, (size_t)n);
  }
}

/* Formats one output line into p (room for LINE_MAX_BYTES); returns its length. */
static size_t format_line(char *p, const int32_t *ids, const int32_t *mask) {
  char *q = p;
  for (int k = 0; k < SDW_CLIP_CONTEXT; k++) {
    const char *t = id_text[ids[k]];
    memcpy(q, t + 1, 6);
    q += t[0];
  }
  memmove(p, p + 1, (size_t)(q - p - 1)); /* drop the leading space */
  q--;
  if (mask) {
    *q++ = '\t';
    for (int k = 0; k < SDW_CLIP_CONTEXT; k++) {
      q[0] = mask[k] ? '1' : '0';
      q[1] = ' ';
      q += 2;
    }
    q--;
  }
  *q++ = '\n';
  return (size_t)(q - p);
}

typedef struct out_buf {
  char *p;
  size_t n, cap;
} out_buf;

static void out_flush(out_buf *o) {
  if (o->n) fwrite(o->p, 1, o->n, stdout);
  o->n = 0;
}

static void out_line(out_buf *o, const int32_t *ids, const int32_t *mask) {
  if (o->cap - o->n < LINE_MAX_BYTES + 8) out_flush(o);
  o->n += format_line(o->p + o->n, ids, mask);
}

/* --- JSON string lines ------------------------------------------------------------------- */
static int hex4(const char *s, const char *end, uint32_t *v) {
  if (end - s < 4) return -1;
  uint32_t x = 0;
  for (int k = 0; k < 4; k++) {
    char c = s[k];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (d < 0) return -1;
    x = x * 16 + (uint32_t)d;
  }
  *v = x;
  return 0;
}

static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Decodes one line holding a JSON string (Python json.loads semantics: the
 * escapes of RFC 8259, surrogate pairs combined, a lone surrogate kept as
 * such) into code points at out (room for len entries). Returns the count,
 * or -1 with *why set. */
static long json_line(const char *s, size_t len, uint32_t *out, const char **why) {
  const char *p = s, *end = s + len;
  while (p < end && json_ws(*p))
    p++;
  if (p == end) {
    *why = "empty line";
    return -1;
  }
  if (*p != '"') {
    *why = "not a JSON string (it must start with '\"')";
    return -1;
  }
  p++;
  long n = 0;
  for (;;) {
    if (p >= end) {
      *why = "unterminated string";
      return -1;
    }
    uint8_t c = (uint8_t)*p;
    if (c == '"') {
      p++;
      break;
    }
    if (c < 0x20) {
      *why = "control character inside the string (escape it)";
      return -1;
    }
    if (c == '\\') {
      if (end - p < 2) {
        *why = "unterminated escape";
        return -1;
      }
      char e = p[1];
      p += 2;
      uint32_t v;
      switch (e) {
      case '"': v = '"'; break;
      case '\\': v = '\\'; break;
      case '/': v = '/'; break;
      case 'b': v = '\b'; break;
      case 'f': v = '\f'; break;
      case 'n': v = '\n'; break;
      case 'r': v = '\r'; break;
      case 't': v = '\t'; break;
      case 'u':
        if (hex4(p, end, &v)) {
          *why = "bad \\u escape";
          return -1;
        }
        p += 4;
        if (v >= 0xD800 && v <= 0xDBFF && end - p >= 2 && p[0] == '\\' && p[1] == 'u') {
          uint32_t lo;
          if (hex4(p + 2, end, &lo)) {
            *why = "bad \\u escape";
            return -1;
          }
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
        }
        break;
      default: *why = "invalid escape"; return -1;
      }
      out[n++] = v;
      continue;
    }
    if (c < 0x80) {
      out[n++] = c;
      p++;
      continue;
    }
    /* raw UTF-8 */
    int need;
    uint32_t v;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      v = c & 0x0F;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      v = c & 0x07;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      *why = "invalid UTF-8";
      return -1;
    }
    if (end - p <= need) {
      *why = "invalid UTF-8";
      return -1;
    }
    for (int k = 1; k <= need; k++) {
      uint8_t x = (uint8_t)p[k];
      if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) {
        *why = "invalid UTF-8";
        return -1;
      }
      v = (v << 6) | (x & 0x3F);
    }
    out[n++] = v;
    p += need + 1;
  }
  while (p < end && json_ws(*p))
    p++;
  if (p != end) {
    *why = "extra data after the string";
    return -1;
  }
  return n;
}

/* --- --jsonl ---------------------------------------------------------------------------- */
enum { BATCH_LINES = 4096 };

typedef struct batch {
  const char *start[BATCH_LINES]; /* line text (without the '\n') */
  size_t len[BATCH_LINES];
  const char *why[BATCH_LINES]; /* set when the line is not a JSON string */
  uint32_t *cps;                /* decoded lines: line i at cps_off[i] (<= byte offset) */
  size_t cps_off[BATCH_LINES], cps_cap;
  char *text; /* formatted output, LINE_MAX_BYTES per line */
  size_t text_len[BATCH_LINES];
} batch;

/* Decodes, tokenizes and formats lines [0, count) of a batch. Worker
 * threads (plain pthreads that block, not OpenMP: the serial reading and
 * writing between batches would leave OpenMP threads spinning) take chunks
 * of lines from a shared counter; the calling thread works too. */
typedef struct batch_job {
  sdw_tokenizer *tok;
  batch *b;
  int count;
  bool want_mask;
  atomic_int next;
} batch_job;

typedef struct batch_worker {
  batch_job *job;
  sdw_status st;
  char err[512];
} batch_worker;

static void *batch_worker_main(void *arg) {
  batch_worker *w = arg;
  batch_job *j = w->job;
  batch *b = j->b;
  enum { CHUNK = 32 };
  for (;;) {
    int i0 = atomic_fetch_add(&j->next, CHUNK);
    if (i0 >= j->count) break;
    int i1 = i0 + CHUNK < j->count ? i0 + CHUNK : j->count;
    for (int i = i0; i < i1; i++) {
      uint32_t *cps = b->cps + b->cps_off[i];
      long n = json_line(b->start[i], b->len[i], cps, &b->why[i]);
      if (n < 0) continue;
      b->why[i] = NULL;
      int32_t ids[SDW_CLIP_CONTEXT], mask[SDW_CLIP_CONTEXT];
      sdw_status st = sdw_tokenizer_encode_cps(j->tok, cps, (size_t)n, ids, mask);
      if (st) {
        if (!w->st) {
          w->st = st;
          snprintf(w->err, sizeof w->err, "%s", sdw_last_error());
        }
        b->why[i] = "could not be tokenized";
        continue;
      }
      b->text_len[i] =
          format_line(b->text + (size_t)i * LINE_MAX_BYTES, ids, j->want_mask ? mask : NULL);
    }
  }
  return NULL;
}

enum { MAX_WORKERS = 64 };

static sdw_status batch_run(sdw_tokenizer *tok, batch *b, int count, bool want_mask, int threads) {
  batch_job job = {tok, b, count, want_mask, 0};
  batch_worker w[MAX_WORKERS];
  pthread_t th[MAX_WORKERS];
  int started = 0;
  for (int k = 0; k < threads; k++)
    w[k] = (batch_worker){&job, SDW_OK, ""};
  /* No more threads than chunks of work. */
  int useful = (count + 255) / 256;
  for (int k = 1; k < threads && k < useful; k++) {
    if (pthread_create(&th[k], NULL, batch_worker_main, &w[k]) != 0) break;
    started = k;
  }
  batch_worker_main(&w[0]);
  for (int k = 1; k <= started; k++)
    pthread_join(th[k], NULL);
  for (int k = 0; k <= started; k++)
    if (w[k].st) {
      fprintf(stderr, "sdw: tokenize: %s\n", w[k].err);
      return w[k].st;
    }
  return SDW_OK;
}

static int run_jsonl(sdw_tokenizer *tok, bool want_mask) {
  int threads = omp_get_max_threads(); /* OMP_NUM_THREADS, else the cores */
  if (threads < 1) threads = 1;
  if (threads > MAX_WORKERS) threads = MAX_WORKERS;
  batch *b = calloc(1, sizeof *b);
  size_t in_cap = 1 << 20, in_n = 0;
  char *in = malloc(in_cap);
  if (b) b->text = malloc((size_t)BATCH_LINES * LINE_MAX_BYTES);
  if (!b || !b->text || !in) {
    fprintf(stderr, "sdw: tokenize: out of memory\n");
    if (b) free(b->text);
    free(b);
    free(in);
    return 1;
  }
  int rc = 0;
  size_t line_no = 0;
  bool eof = false;
  while (!rc) {
    /* Fill the input buffer; lines end at '\n' (the last one may lack it). */
    while (!eof && in_n < in_cap) {
      size_t r = fread(in + in_n, 1, in_cap - in_n, stdin);
      in_n += r;
      if (r == 0) eof = true;
    }
    size_t pos = 0;
    int count = 0;
    while (count < BATCH_LINES && pos < in_n) {
      char *nl = memchr(in + pos, '\n', in_n - pos);
      if (!nl && !eof) break; /* incomplete line: read more first */
      size_t len = nl ? (size_t)(nl - (in + pos)) : in_n - pos;
      b->start[count] = in + pos;
      b->len[count] = len;
      b->cps_off[count] = pos; /* a line decodes to at most one code point per byte */
      count++;
      pos += len + (nl ? 1 : 0);
    }
    if (pos > b->cps_cap) {
      uint32_t *np = realloc(b->cps, pos * sizeof *np);
      if (!np) {
        fprintf(stderr, "sdw: tokenize: out of memory\n");
        rc = 1;
        break;
      }
      b->cps = np;
      b->cps_cap = pos;
    }
    if (count > 0 && batch_run(tok, b, count, want_mask, threads)) {
      rc = 1;
      break;
    }
    for (int i = 0; i < count; i++) {
      line_no++;
      if (b->why[i]) {
        fflush(stdout);
        fprintf(stderr,
                "sdw: tokenize: standard input line %zu: %s; each line must be one JSON "
                "string\n",
                line_no, b->why[i]);
        rc = 1;
        break;
      }
      fwrite_unlocked(b->text + (size_t)i * LINE_MAX_BYTES, 1, b->text_len[i], stdout);
    }
    if (rc) break;
    memmove(in, in + pos, in_n - pos);
    in_n -= pos;
    if (eof && in_n == 0) break;
    if (count == 0 && in_n == in_cap) { /* one line longer than the buffer */
      char *np = realloc(in, in_cap * 2);
      if (!np) {
        fprintf(stderr, "sdw: tokenize: out of memory for a %zu-byte line\n", in_n);
        rc = 1;
        break;
      }
      in = np;
      in_cap *= 2;
    }
  }
  free(in);
  free(b->cps);
  free(b->text);
  free(b);
  return rc;
}

int sdw_cmd_tokenize(int argc, char **argv) {
  bool jsonl = false, want_mask = false;
  const char *vocab = NULL;
  sdw_tokenizer_mode mode = SDW_TOKENIZER_HF;
  /* Options may come anywhere; after "--" every argument is a prompt. */
  char **prompts = calloc((size_t)argc + 1, sizeof *prompts);
  int n_prompts = 0;
  if (!prompts) {
    fprintf(stderr, "sdw: tokenize: out of memory\n");
    return 1;
  }
  bool only_prompts = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool is_option = !only_prompts && ((a[0] == '-' && a[1] == '-') || strcmp(a, "-h") == 0);
    if (!is_option) {
      prompts[n_prompts++] = argv[i];
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_prompts = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_help(stdout);
      free(prompts);
      return 0;
    } else if (strcmp(a, "--jsonl") == 0) {
      jsonl = true;
    } else if (strcmp(a, "--mask") == 0) {
      want_mask = true;
    } else if (strcmp(a, "--tokenizer") == 0 || strcmp(a, "--vocab") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "sdw: tokenize: %s needs a value; 'sdw tokenize --help' lists them\n", a);
        free(prompts);
        return 2;
      }
      const char *v = argv[++i];
      if (a[2] == 'v') {
        vocab = v;
      } else if (strcmp(v, "hf") == 0) {
        mode = SDW_TOKENIZER_HF;
      } else if (strcmp(v, "clip") == 0) {
        mode = SDW_TOKENIZER_CLIP;
      } else {
        fprintf(stderr, "sdw: tokenize: --tokenizer is 'hf' or 'clip', not '%s'\n", v);
        free(prompts);
        return 2;
      }
    } else {
      fprintf(stderr, "sdw: tokenize: unknown option '%s'; 'sdw tokenize --help' lists them\n", a);
      free(prompts);
      return 2;
    }
  }
  if (jsonl && n_prompts > 0) {
    fprintf(stderr, "sdw: tokenize: --jsonl reads standard input; give no prompt arguments\n");
    free(prompts);
    return 2;
  }
  if (!jsonl && n_prompts == 0) {
    fprintf(stderr, "sdw: tokenize: no prompt; give one or more, or --jsonl to read standard "
                    "input\n");
    free(prompts);
    return 2;
  }
  sdw_tokenizer *tok = NULL;
  if (sdw_tokenizer_load(vocab, mode, &tok)) {
    sdw_cli_report_error("tokenize");
    free(prompts);
    return 1;
  }
  id_text_init();
  static char stdout_buf[1 << 20];
  setvbuf(stdout, stdout_buf, _IOFBF, sizeof stdout_buf);
  int rc = 0;
  if (jsonl) {
    rc = run_jsonl(tok, want_mask);
  } else {
    out_buf o = {malloc(1 << 16), 0, 1 << 16};
    if (!o.p) {
      fprintf(stderr, "sdw: tokenize: out of memory\n");
      rc = 1;
    }
    for (int i = 0; i < n_prompts && !rc; i++) {
      int32_t ids[SDW_CLIP_CONTEXT], mask[SDW_CLIP_CONTEXT];
      if (sdw_tokenizer_encode(tok, prompts[i], strlen(prompts[i]), ids, mask)) {
        sdw_cli_report_error("tokenize");
        rc = 1;
        break;
      }
      out_line(&o, ids, want_mask ? mask : NULL);
    }
    if (o.p) out_flush(&o);
    free(o.p);
  }
  sdw_tokenizer_free(tok);
  free(prompts);
  if (fflush(stdout) != 0 && !rc) {
    fprintf(stderr, "sdw: tokenize: cannot write the output\n");
    rc = 1;
  }
  return rc;
}
