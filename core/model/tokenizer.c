/* The CLIP byte-level BPE tokenizer; see tokenizer.h.
 *
 * Pipeline per prompt: UTF-8 -> code points -> text cleaning (text_clean.c)
 * -> pre-tokenizer (CLIP's regex, written out as a scanner) -> each
 * pre-token's UTF-8 bytes as byte-level symbols -> BPE merges (cached per
 * thread) -> ids. */
#include "core/model/tokenizer.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "core/model/text_clean.h"
#include "core/model/unicode_tables.h"

enum {
  MERGE_COUNT = 49152 - 256 - 2, /* merges used by simple_tokenizer.py: 48894 */
  PAIR_BITS = 17,                /* pair hash table: 2^17 slots for 48894 pairs */
  CACHE_BITS = 16,               /* per-thread BPE cache slots */
  CACHE_MAX_ENTRIES = 1 << 15,   /* cleared when full: the cache is bounded */
  CACHE_MAX_KEY = 64,            /* longer pre-tokens are not cached */
  CACHE_ARENA_BYTES = 1 << 20,
  CACHE_ARENA_IDS = 1 << 18,
  HEAP_MIN_LEN = 48, /* pre-tokens at least this long use the heap BPE */
};

/* --- per-thread state ------------------------------------------------------------------ */
typedef struct cache_slot {
  uint64_t hash; /* 0 = empty */
  uint32_t key_off, val_off;
  uint16_t key_len, val_len;
} cache_slot;

typedef struct tok_thread {
  struct tok_thread *next; /* all states of the tokenizer */
  struct sdw_tokenizer *tok;
  bool in_use;
  sdw_text_scratch scratch;
  sdw_ustr text, chunk, tmp;
  uint8_t *bytes;
  size_t bytes_cap;
  int32_t *word, *word2;
  uint32_t *heap_aux; /* prev/next links and heap for long words */
  size_t word_cap;
  int32_t *ids; /* content ids of the prompt being encoded */
  size_t ids_n, ids_cap;
  cache_slot *slots;
  size_t cache_count;
  uint8_t *key_arena;
  size_t key_n;
  int32_t *val_arena;
  size_t val_n;
} tok_thread;

struct sdw_tokenizer {
  sdw_tokenizer_mode mode;
  char *pool;                             /* vocabulary strings, NUL-terminated, UTF-8 */
  uint32_t offs[SDW_CLIP_VOCAB_SIZE + 1]; /* offs[id + 1] - offs[id] = length + 1 */
  int32_t byte_id[256], byte_eow_id[256];
  uint64_t *pair_keys; /* (left << 32 | right); UINT64_MAX = empty */
  uint32_t *pair_rank;
  int32_t *pair_result;
  bool heap_ok; /* merges are creation-ordered: the heap BPE equals openai's loop */
  pthread_key_t key;
  pthread_mutex_t lock;
  tok_thread *threads;
};

static void thread_state_free(tok_thread *st) {
  sdw_text_scratch_free(&st->scratch);
  sdw_ustr_free(&st->text);
  sdw_ustr_free(&st->chunk);
  sdw_ustr_free(&st->tmp);
  free(st->bytes);
  free(st->word);
  free(st->word2);
  free(st->heap_aux);
  free(st->ids);
  free(st->slots);
  free(st->key_arena);
  free(st->val_arena);
  free(st);
}

/* Thread exit: the state goes back to the tokenizer for another thread. */
static void thread_state_release(void *p) {
  tok_thread *st = p;
  pthread_mutex_lock(&st->tok->lock);
  st->in_use = false;
  pthread_mutex_unlock(&st->tok->lock);
}

static tok_thread *thread_state(sdw_tokenizer *tok) {
  tok_thread *st = pthread_getspecific(tok->key);
  if (st) return st;
  pthread_mutex_lock(&tok->lock);
  for (tok_thread *t = tok->threads; t; t = t->next)
    if (!t->in_use) {
      st = t;
      break;
    }
  if (!st) {
    st = calloc(1, sizeof *st);
    if (st) {
      st->slots = calloc((size_t)1 << CACHE_BITS, sizeof *st->slots);
      st->key_arena = malloc(CACHE_ARENA_BYTES);
      st->val_arena = malloc(CACHE_ARENA_IDS * sizeof(int32_t));
      if (!st->slots || !st->key_arena || !st->val_arena) {
        thread_state_free(st);
        st = NULL;
      } else {
        st->tok = tok;
        st->next = tok->threads;
        tok->threads = st;
      }
    }
  }
  if (st) st->in_use = true;
  pthread_mutex_unlock(&tok->lock);
  if (st) pthread_setspecific(tok->key, st);
  return st;
}

/* --- hashing ----------------------------------------------------------------------------- */
static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  memcpy(&v, p, n);
  h = (h ^ v) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 32;
  return h | 1; /* never 0: 0 marks an empty cache slot */
}

static inline size_t pair_slot(uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - PAIR_BITS));
}

/* Rank of the pair (a, b), or UINT32_MAX; *result gets the merged id. */
static inline uint32_t pair_find(const sdw_tokenizer *tok, int32_t a, int32_t b, int32_t *result) {
  uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
  size_t mask = ((size_t)1 << PAIR_BITS) - 1;
  for (size_t s = pair_slot(key);; s = (s + 1) & mask) {
    uint64_t k = tok->pair_keys[s];
    if (k == key) {
      *result = tok->pair_result[s];
      return tok->pair_rank[s];
    }
    if (k == UINT64_MAX) return UINT32_MAX;
  }
}

/* --- BPE ------------------------------------------------------------------------------------ */
/* openai's bpe(): repeatedly merge every occurrence (left to right) of the
 * adjacent pair with the lowest rank. w holds m ids; returns the new length. */
static size_t bpe_loop(const sdw_tokenizer *tok, int32_t *w, size_t m, int32_t *w2) {
  while (m > 1) {
    uint32_t best = UINT32_MAX;
    int32_t first = 0, second = 0, merged = 0;
    for (size_t k = 0; k + 1 < m; k++) {
      int32_t res;
      uint32_t r = pair_find(tok, w[k], w[k + 1], &res);
      if (r < best) {
        best = r;
        first = w[k];
        second = w[k + 1];
        merged = res;
      }
    }
    if (best == UINT32_MAX) break;
    size_t j = 0;
    for (size_t k = 0; k < m;) {
      if (k + 1 < m && w[k] == first && w[k + 1] == second) {
        w2[j++] = merged;
        k += 2;
      } else {
        w2[j++] = w[k++];
      }
    }
    memcpy(w, w2, j * sizeof *w);
    m = j;
  }
  return m;
}

/* The same result in O(m log m): a min-heap of (rank, position) over the
 * live adjacent pairs of a linked list. Equal to bpe_loop when every merge's
 * parts are created by earlier merges (checked at load: tok->heap_ok):
 * then a merge never creates a pair ranked below the one just merged, so
 * popping (rank, leftmost position) visits the merges in openai's order.
 * aux holds 4 * m entries. */
static size_t bpe_heap(const sdw_tokenizer *tok, int32_t *w, size_t m, uint32_t *aux) {
  if (m < 2) return m;
  uint32_t *prev = aux, *next = aux + m;
  uint64_t *heap = (uint64_t *)(aux + 2 * m); /* (rank << 32 | pos), room for 3m entries */
  size_t hn = 0;
  const uint32_t NONE = UINT32_MAX;
  for (size_t k = 0; k < m; k++) {
    prev[k] = k ? (uint32_t)(k - 1) : NONE;
    next[k] = k + 1 < m ? (uint32_t)(k + 1) : NONE;
  }
#define HEAP_PUSH(v)                                                                               \
  do {                                                                                             \
    size_t i_ = hn++;                                                                              \
    uint64_t v_ = (v);                                                                             \
    while (i_ > 0 && heap[(i_ - 1) / 2] > v_) {                                                    \
      heap[i_] = heap[(i_ - 1) / 2];                                                               \
      i_ = (i_ - 1) / 2;                                                                           \
    }                                                                                              \
    heap[i_] = v_;                                                                                 \
  } while (0)
  for (size_t k = 0; k + 1 < m; k++) {
    int32_t res = 0;
    uint32_t r = pair_find(tok, w[k], w[k + 1], &res);
    if (r != UINT32_MAX) HEAP_PUSH(((uint64_t)r << 32) | k);
  }
  while (hn > 0) {
    uint64_t top = heap[0];
    uint64_t last = heap[--hn];
    size_t i = 0;
    for (;;) { /* sift the last entry down from the root */
      size_t c = 2 * i + 1;
      if (c >= hn) break;
      if (c + 1 < hn && heap[c + 1] < heap[c]) c++;
      if (heap[c] >= last) break;
      heap[i] = heap[c];
      i = c;
    }
    if (hn > 0) heap[i] = last;
    uint32_t rank = (uint32_t)(top >> 32), pos = (uint32_t)top;
    if (w[pos] < 0 || next[pos] == NONE) continue; /* merged away since */
    uint32_t right = next[pos];
    int32_t res = 0;
    if (pair_find(tok, w[pos], w[right], &res) != rank) continue; /* stale */
    w[pos] = res;
    w[right] = -1;
    next[pos] = next[right];
    if (next[right] != NONE) prev[next[right]] = pos;
    /* Each merge removes one symbol, so at most m - 1 merges and 2 pushes
     * each after the initial m - 1: the heap never needs more than 3m. */
    if (prev[pos] != NONE) {
      uint32_t r = pair_find(tok, w[prev[pos]], w[pos], &res);
      if (r != UINT32_MAX) HEAP_PUSH(((uint64_t)r << 32) | prev[pos]);
    }
    if (next[pos] != NONE) {
      uint32_t r = pair_find(tok, w[pos], w[next[pos]], &res);
      if (r != UINT32_MAX) HEAP_PUSH(((uint64_t)r << 32) | pos);
    }
  }
#undef HEAP_PUSH
  size_t j = 0;
  for (uint32_t k = 0; k != NONE; k = next[k])
    w[j++] = w[k];
  return j;
}

/* ids of one pre-token given as UTF-8 bytes, into w (room for len ids). */
static size_t bpe_word(const sdw_tokenizer *tok, const uint8_t *b, size_t len, int32_t *w,
                       int32_t *w2, uint32_t *aux, bool use_heap) {
  for (size_t k = 0; k + 1 < len; k++)
    w[k] = tok->byte_id[b[k]];
  w[len - 1] = tok->byte_eow_id[b[len - 1]];
  if (use_heap) return bpe_heap(tok, w, len, aux);
  return bpe_loop(tok, w, len, w2);
}

static bool grow_word(tok_thread *st, size_t len) {
  if (len <= st->word_cap) return true;
  size_t c = st->word_cap ? st->word_cap : 256;
  while (c < len)
    c *= 2;
  int32_t *a = realloc(st->word, c * sizeof *a);
  if (a) st->word = a;
  int32_t *b = realloc(st->word2, c * sizeof *b);
  if (b) st->word2 = b;
  /* prev + next (2c u32) and a heap of up to 3c u64 entries */
  uint32_t *x = realloc(st->heap_aux, c * 8 * sizeof *x);
  if (x) st->heap_aux = x;
  if (!a || !b || !x) return false;
  st->word_cap = c;
  return true;
}

long sdw_tokenizer_bpe_word(const sdw_tokenizer *tok, const uint8_t *bytes, size_t len,
                            int use_heap, int32_t *ids) {
  if (len == 0) return 0;
  int32_t *w2 = malloc(len * sizeof *w2);
  uint32_t *aux = malloc(len * 8 * sizeof *aux);
  long r = -1;
  if (w2 && aux) r = (long)bpe_word(tok, bytes, len, ids, w2, aux, use_heap && tok->heap_ok);
  free(w2);
  free(aux);
  return r;
}

/* --- the per-thread cache --------------------------------------------------------------- */
static void cache_clear(tok_thread *st) {
  memset(st->slots, 0, ((size_t)1 << CACHE_BITS) * sizeof *st->slots);
  st->cache_count = 0;
  st->key_n = 0;
  st->val_n = 0;
}

static const cache_slot *cache_get(const tok_thread *st, uint64_t h, const uint8_t *key,
                                   size_t len) {
  size_t mask = ((size_t)1 << CACHE_BITS) - 1;
  for (size_t s = (size_t)(h >> (64 - CACHE_BITS));; s = (s + 1) & mask) {
    const cache_slot *e = &st->slots[s];
    if (e->hash == 0) return NULL;
    if (e->hash == h && e->key_len == len && memcmp(st->key_arena + e->key_off, key, len) == 0)
      return e;
  }
}

static void cache_put(tok_thread *st, uint64_t h, const uint8_t *key, size_t len,
                      const int32_t *ids, size_t n) {
  if (st->cache_count >= CACHE_MAX_ENTRIES || st->key_n + len > CACHE_ARENA_BYTES ||
      st->val_n + n > CACHE_ARENA_IDS)
    cache_clear(st);
  size_t mask = ((size_t)1 << CACHE_BITS) - 1;
  size_t s = (size_t)(h >> (64 - CACHE_BITS));
  while (st->slots[s].hash != 0)
    s = (s + 1) & mask;
  cache_slot *e = &st->slots[s];
  e->hash = h;
  e->key_off = (uint32_t)st->key_n;
  e->key_len = (uint16_t)len;
  e->val_off = (uint32_t)st->val_n;
  e->val_len = (uint16_t)n;
  memcpy(st->key_arena + st->key_n, key, len);
  memcpy(st->val_arena + st->val_n, ids, n * sizeof *ids);
  st->key_n += len;
  st->val_n += n;
  st->cache_count++;
}

/* --- pre-tokenizer ---------------------------------------------------------------------- */
static sdw_status ids_push(tok_thread *st, const int32_t *ids, size_t n) {
  if (st->ids_n + n > st->ids_cap) {
    size_t c = st->ids_cap ? st->ids_cap : 256;
    while (c < st->ids_n + n)
      c *= 2;
    int32_t *p = realloc(st->ids, c * sizeof *p);
    if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for %zu token ids", c);
    st->ids = p;
    st->ids_cap = c;
  }
  memcpy(st->ids + st->ids_n, ids, n * sizeof *ids);
  st->ids_n += n;
  return SDW_OK;
}

/* One pre-token (code points) -> ids appended to st->ids. */
static sdw_status emit_piece(sdw_tokenizer *tok, tok_thread *st, const uint32_t *cp, size_t n) {
  if (4 * n > st->bytes_cap) {
    size_t c = st->bytes_cap ? st->bytes_cap : 256;
    while (c < 4 * n)
      c *= 2;
    uint8_t *p = realloc(st->bytes, c);
    if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for a %zu-byte word", c);
    st->bytes = p;
    st->bytes_cap = c;
  }
  size_t len = sdw_utf8_encode(cp, n, st->bytes);
  const uint8_t *b = st->bytes;
  /* simple_tokenizer.py seeds its cache with the two special strings. */
  static const char sot[] = "<|startoftext|>", eot[] = "<|endoftext|>";
  if (len == sizeof sot - 1 && memcmp(b, sot, len) == 0)
    return ids_push(st, (int32_t[]){SDW_CLIP_SOT}, 1);
  if (len == sizeof eot - 1 && memcmp(b, eot, len) == 0)
    return ids_push(st, (int32_t[]){SDW_CLIP_EOT}, 1);
  if (len == 1) return ids_push(st, &tok->byte_eow_id[b[0]], 1);
  uint64_t h = 0;
  if (len <= CACHE_MAX_KEY) {
    h = hash_bytes(b, len);
    const cache_slot *e = cache_get(st, h, b, len);
    if (e) return ids_push(st, st->val_arena + e->val_off, e->val_len);
  }
  if (!grow_word(st, len)) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for BPE");
  size_t m =
      bpe_word(tok, b, len, st->word, st->word2, st->heap_aux, tok->heap_ok && len >= HEAP_MIN_LEN);
  if (len <= CACHE_MAX_KEY) cache_put(st, h, b, len, st->word, m);
  return ids_push(st, st->word, m);
}

/* Pre-tokenizer class of a code point (SDW_UC_L, _N or _O, 0 for none). */
static inline unsigned pre_class(uint32_t c) {
  if (c < 0x80) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return SDW_UC_L;
    if (c >= '0' && c <= '9') return SDW_UC_N;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return 0;
    return SDW_UC_O;
  }
  return sdw_uc_flags(c) & (SDW_UC_L | SDW_UC_N | SDW_UC_O);
}

/* Case-insensitive match of an ASCII literal as the `regex` module does it
 * under IGNORECASE (simple case folding: 's' also matches U+017F). */
static bool match_literal_ci(const uint32_t *t, size_t n, size_t i, const char *lit) {
  for (size_t k = 0; lit[k]; k++, i++) {
    if (i >= n) return false;
    uint32_t c = t[i], l = (uint8_t)lit[k];
    if (c == l) continue;
    if (l >= 'a' && l <= 'z' && (c == l - 32 || (c == sdw_uc_fold_alt[l - 'a'] && c))) continue;
    return false;
  }
  return true;
}

/* findall of CLIP's pattern over t (already cleaned and lower-cased):
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (IGNORECASE). Stops once st->ids holds `limit` ids. */
static sdw_status pretokenize(sdw_tokenizer *tok, tok_thread *st, const uint32_t *t, size_t n,
                              size_t limit) {
  static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  size_t i = 0;
  while (i < n && st->ids_n < limit) {
    uint32_t c = t[i];
    size_t len = 0;
    if (c == '<') {
      if (match_literal_ci(t, n, i, "<|startoftext|>"))
        len = 15;
      else if (match_literal_ci(t, n, i, "<|endoftext|>"))
        len = 13;
    } else if (c == '\'') {
      for (size_t k = 0; k < 7 && !len; k++)
        if (match_literal_ci(t, n, i, contractions[k])) len = strlen(contractions[k]);
    }
    if (!len) {
      unsigned f = pre_class(c);
      if (f == SDW_UC_L) {
        len = 1;
        while (i + len < n && pre_class(t[i + len]) == SDW_UC_L)
          len++;
      } else if (f == SDW_UC_N) {
        len = 1;
      } else if (f == SDW_UC_O) {
        len = 1;
        while (i + len < n && pre_class(t[i + len]) == SDW_UC_O)
          len++;
      } else {
        i++; /* whitespace (or U+0345, which no branch matches): no token */
        continue;
      }
    }
    SDW_TRY(emit_piece(tok, st, t + i, len));
    i += len;
  }
  return SDW_OK;
}

/* --- encoding ---------------------------------------------------------------------------- */
/* Cleans st->text in place the way the mode does and appends its tokens. */
static sdw_status clean_and_tokenize(sdw_tokenizer *tok, tok_thread *st, sdw_ustr *text,
                                     size_t limit) {
  SDW_TRY(sdw_ftfy_fix_text(text, &st->scratch));
  if (tok->mode == SDW_TOKENIZER_CLIP) {
    SDW_TRY(sdw_html_unescape(text, &st->tmp));
    SDW_TRY(sdw_html_unescape(text, &st->tmp));
    sdw_py_strip(text);
  }
  sdw_whitespace_clean(text);
  SDW_TRY(sdw_py_lower(text, &st->tmp));
  return pretokenize(tok, st, text->p, text->n, limit);
}

/* Finds the next literal "<|startoftext|>" / "<|endoftext|>" at or after i:
 * returns its position (n if none) and sets *id and *len. */
static size_t find_special(const uint32_t *t, size_t n, size_t i, int32_t *id, size_t *len) {
  for (; i < n; i++) {
    if (t[i] != '<') continue;
    static const char sot[] = "<|startoftext|>", eot[] = "<|endoftext|>";
    const char *lits[2] = {sot, eot};
    for (int k = 0; k < 2; k++) {
      size_t l = strlen(lits[k]), j = 0;
      while (j < l && i + j < n && t[i + j] == (uint8_t)lits[k][j])
        j++;
      if (j == l) {
        *id = k ? SDW_CLIP_EOT : SDW_CLIP_SOT;
        *len = l;
        return i;
      }
    }
  }
  return n;
}

/* st->text holds the prompt; fills st->ids with up to `limit` content ids
 * (all of them when limit is SIZE_MAX). */
static sdw_status encode_text(sdw_tokenizer *tok, tok_thread *st, size_t limit) {
  st->ids_n = 0;
  if (tok->mode == SDW_TOKENIZER_CLIP) return clean_and_tokenize(tok, st, &st->text, limit);
  /* Hugging Face: the added tokens are split off the raw text first; each
   * piece between them is cleaned and tokenized on its own. */
  const uint32_t *t = st->text.p;
  size_t n = st->text.n, pos = 0;
  while (pos < n && st->ids_n < limit) {
    int32_t id = 0;
    size_t len = 0;
    size_t at = find_special(t, n, pos, &id, &len);
    if (at > pos) {
      SDW_TRY(sdw_ustr_set(&st->chunk, t + pos, at - pos));
      SDW_TRY(clean_and_tokenize(tok, st, &st->chunk, limit));
    }
    if (at < n && st->ids_n < limit) SDW_TRY(ids_push(st, &id, 1));
    pos = at + len;
  }
  return SDW_OK;
}

static void finish_ids(const tok_thread *st, int32_t ids[SDW_CLIP_CONTEXT],
                       int32_t mask[SDW_CLIP_CONTEXT]) {
  size_t content = st->ids_n < SDW_CLIP_CONTEXT - 2 ? st->ids_n : SDW_CLIP_CONTEXT - 2;
  ids[0] = SDW_CLIP_SOT;
  if (content) memcpy(ids + 1, st->ids, content * sizeof *ids);
  for (size_t k = content + 1; k < SDW_CLIP_CONTEXT; k++)
    ids[k] = SDW_CLIP_EOT;
  if (mask)
    for (size_t k = 0; k < SDW_CLIP_CONTEXT; k++)
      mask[k] = k < content + 2;
}

static tok_thread *thread_state_or_fail(sdw_tokenizer *tok) {
  tok_thread *st = thread_state(tok);
  if (!st) sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the tokenizer's thread state");
  return st;
}

sdw_status sdw_tokenizer_encode(sdw_tokenizer *tok, const char *utf8, size_t len,
                                int32_t ids[SDW_CLIP_CONTEXT], int32_t mask[SDW_CLIP_CONTEXT]) {
  tok_thread *st = thread_state_or_fail(tok);
  if (!st) return SDW_ERR_OUT_OF_MEMORY;
  SDW_TRY(sdw_ustr_from_utf8(&st->text, utf8, len));
  /* 75 content tokens survive the cut; later pre-tokens cannot change them. */
  SDW_TRY(encode_text(tok, st, SDW_CLIP_CONTEXT - 2));
  finish_ids(st, ids, mask);
  return SDW_OK;
}

sdw_status sdw_tokenizer_encode_cps(sdw_tokenizer *tok, const uint32_t *cps, size_t n,
                                    int32_t ids[SDW_CLIP_CONTEXT], int32_t mask[SDW_CLIP_CONTEXT]) {
  tok_thread *st = thread_state_or_fail(tok);
  if (!st) return SDW_ERR_OUT_OF_MEMORY;
  SDW_TRY(sdw_ustr_set(&st->text, cps, n));
  SDW_TRY(encode_text(tok, st, SDW_CLIP_CONTEXT - 2));
  finish_ids(st, ids, mask);
  return SDW_OK;
}

sdw_status sdw_tokenizer_encode_raw(sdw_tokenizer *tok, const char *utf8, size_t len, int32_t *ids,
                                    size_t cap, size_t *count) {
  tok_thread *st = thread_state_or_fail(tok);
  if (!st) return SDW_ERR_OUT_OF_MEMORY;
  SDW_TRY(sdw_ustr_from_utf8(&st->text, utf8, len));
  SDW_TRY(encode_text(tok, st, SIZE_MAX));
  size_t k = st->ids_n < cap ? st->ids_n : cap;
  if (k) memcpy(ids, st->ids, k * sizeof *ids);
  *count = st->ids_n;
  return SDW_OK;
}

/* --- loading ------------------------------------------------------------------------------ */
sdw_tokenizer_mode sdw_tokenizer_get_mode(const sdw_tokenizer *tok) { return tok->mode; }

const char *sdw_tokenizer_mode_name(sdw_tokenizer_mode mode) {
  return mode == SDW_TOKENIZER_CLIP ? "clip" : "hf";
}

const char *sdw_tokenizer_token_text(const sdw_tokenizer *tok, int32_t id) {
  if (id < 0 || id >= SDW_CLIP_VOCAB_SIZE) return NULL;
  return tok->pool + tok->offs[id];
}

static bool file_readable(const char *path) { return access(path, R_OK) == 0; }

sdw_status sdw_tokenizer_default_vocab(char *buf, size_t size) {
  SDW_ASSERT(buf && size > 0);
  const char *env = getenv("SDW_ASSETS");
  if (env && *env) {
    snprintf(buf, size, "%s/clip/%s", env, SDW_CLIP_VOCAB_FILE);
    if (file_readable(buf)) return SDW_OK;
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "SDW_ASSETS is '%s' but %s is not readable; copy assets/clip/ of the sdw "
                    "sources there or unset SDW_ASSETS",
                    env, buf);
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "cannot find the CLIP vocabulary (/proc/self/exe unreadable); pass its path "
                    "(--vocab) or set SDW_ASSETS to the folder holding clip/%s",
                    SDW_CLIP_VOCAB_FILE);
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  static const char *const rel[] = {"../assets/clip", "../../assets/clip", "../share/sdw/clip"};
  for (size_t k = 0; k < sizeof rel / sizeof rel[0]; k++) {
    snprintf(buf, size, "%s/%s/%s", exe, rel[k], SDW_CLIP_VOCAB_FILE);
    if (file_readable(buf)) return SDW_OK;
  }
  return sdw_fail(SDW_ERR_NOT_FOUND,
                  "the CLIP vocabulary %s is not in %s/../assets/clip, %s/../../assets/clip or "
                  "%s/../share/sdw/clip; reinstall sdw (make install copies it), pass its path "
                  "(--vocab) or set SDW_ASSETS to the folder holding clip/",
                  SDW_CLIP_VOCAB_FILE, exe, exe, exe);
}

static sdw_status read_gz(const char *path, char **out, size_t *out_len) {
  gzFile f = gzopen(path, "rb");
  if (!f)
    return sdw_fail(SDW_ERR_IO, "%s: cannot open the CLIP vocabulary (%s)", path,
                    "missing or unreadable");
  size_t cap = 1 << 21, n = 0;
  char *buf = malloc(cap + 1);
  sdw_status st = SDW_OK;
  for (;;) {
    if (!buf) {
      st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
      break;
    }
    if (n == cap) {
      if (cap >= ((size_t)64 << 20)) {
        st = sdw_fail(SDW_ERR_FORMAT,
                      "%s: decompresses to more than 64 MiB; not the CLIP "
                      "vocabulary",
                      path);
        break;
      }
      char *nb = realloc(buf, 2 * cap + 1);
      if (!nb) {
        free(buf);
        buf = NULL;
        continue;
      }
      buf = nb;
      cap *= 2;
    }
    int r = gzread(f, buf + n, (unsigned)(cap - n));
    if (r < 0) {
      int errnum;
      const char *msg = gzerror(f, &errnum);
      st = sdw_fail(SDW_ERR_FORMAT, "%s: not a valid gzip file (%s)", path, msg);
      break;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  gzclose(f);
  if (st) {
    free(buf);
    return st;
  }
  buf[n] = '\0';
  *out = buf;
  *out_len = n;
  return SDW_OK;
}

/* string -> id map used while loading (last id wins, like dict(zip(vocab, range))). */
typedef struct str_map {
  const char *pool;
  const uint32_t *offs;
  int32_t *slots;
  size_t mask;
} str_map;

static int32_t str_map_get(const str_map *m, const char *s, size_t len) {
  uint64_t h = hash_bytes((const uint8_t *)s, len);
  for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
    int32_t id = m->slots[i];
    if (id < 0) return -1;
    const char *t = m->pool + m->offs[id];
    if (m->offs[id + 1] - m->offs[id] == len + 1 && memcmp(t, s, len) == 0) return id;
  }
}

static void str_map_put(str_map *m, int32_t id) {
  const char *s = m->pool + m->offs[id];
  size_t len = m->offs[id + 1] - m->offs[id] - 1;
  uint64_t h = hash_bytes((const uint8_t *)s, len);
  for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
    int32_t cur = m->slots[i];
    if (cur < 0 || (m->offs[cur + 1] - m->offs[cur] == len + 1 &&
                    memcmp(m->pool + m->offs[cur], s, len) == 0)) {
      m->slots[i] = id;
      return;
    }
  }
}

/* UTF-8 of code point c into p; returns its length. */
static size_t put_utf8(char *p, uint32_t c) { return sdw_utf8_encode(&c, 1, (uint8_t *)p); }

static sdw_status build_vocab(sdw_tokenizer *tok, const char *path, char *text, size_t text_len,
                              char **lines, char *(*parts)[2]) {
  /* Lines 1..48894 of the file are the merges "left right". */
  size_t line = 0;
  char *p = text, *end = text + text_len;
  char *nl = memchr(p, '\n', (size_t)(end - p));
  if (!nl) return sdw_fail(SDW_ERR_FORMAT, "%s: no header line; not the CLIP vocabulary", path);
  p = nl + 1;
  while (line < MERGE_COUNT && p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) nl = end;
    *nl = '\0';
    lines[line++] = p;
    p = nl + 1;
  }
  if (line < MERGE_COUNT)
    return sdw_fail(SDW_ERR_FORMAT,
                    "%s: %zu merge lines, expected at least %d; not the CLIP "
                    "vocabulary bpe_simple_vocab_16e6.txt.gz",
                    path, line, MERGE_COUNT);

  /* bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the
   * other 68 bytes for U+0100.. in byte order. */
  uint32_t byte_cp[256];
  int order[256], n_order = 0;
  for (int b = 0; b < 256; b++) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (printable) {
      byte_cp[b] = (uint32_t)b;
      order[n_order++] = b;
    }
  }
  int extra = 0;
  for (int b = 0; b < 256; b++) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (!printable) {
      byte_cp[b] = 256u + (uint32_t)extra++;
      order[n_order++] = b;
    }
  }

  /* The vocabulary strings in id order. */
  size_t pool_cap = 256 * 3 + 256 * 7 + text_len + 64;
  tok->pool = malloc(pool_cap);
  if (!tok->pool) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
  size_t pn = 0;
  int32_t id = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < 256; k++) {
      tok->offs[id++] = (uint32_t)pn;
      pn += put_utf8(tok->pool + pn, byte_cp[order[k]]);
      if (pass) {
        memcpy(tok->pool + pn, "</w>", 4);
        pn += 4;
      }
      tok->pool[pn++] = '\0';
    }
  for (size_t r = 0; r < MERGE_COUNT; r++) {
    /* merge.split(): exactly two whitespace-separated parts */
    char *s = lines[r], *save = NULL;
    char *a = strtok_r(s, " \t\r\v\f", &save);
    char *b = a ? strtok_r(NULL, " \t\r\v\f", &save) : NULL;
    char *c = b ? strtok_r(NULL, " \t\r\v\f", &save) : NULL;
    if (!a || !b || c)
      return sdw_fail(SDW_ERR_FORMAT, "%s: line %zu is not a merge 'left right'", path, r + 2);
    parts[r][0] = a;
    parts[r][1] = b;
    tok->offs[id++] = (uint32_t)pn;
    size_t la = strlen(a), lb = strlen(b);
    memcpy(tok->pool + pn, a, la);
    memcpy(tok->pool + pn + la, b, lb);
    pn += la + lb;
    tok->pool[pn++] = '\0';
  }
  tok->offs[id++] = (uint32_t)pn;
  memcpy(tok->pool + pn, "<|startoftext|>", 16);
  pn += 16;
  tok->offs[id++] = (uint32_t)pn;
  memcpy(tok->pool + pn, "<|endoftext|>", 14);
  pn += 14;
  tok->offs[id] = (uint32_t)pn;

  str_map map = {tok->pool, tok->offs, NULL, ((size_t)1 << 17) - 1};
  map.slots = malloc(((size_t)1 << 17) * sizeof *map.slots);
  int32_t *created = malloc(SDW_CLIP_VOCAB_SIZE * sizeof *created);
  int32_t *part_id = malloc(2 * MERGE_COUNT * sizeof *part_id);
  tok->pair_keys = malloc(((size_t)1 << PAIR_BITS) * sizeof *tok->pair_keys);
  tok->pair_rank = malloc(((size_t)1 << PAIR_BITS) * sizeof *tok->pair_rank);
  tok->pair_result = malloc(((size_t)1 << PAIR_BITS) * sizeof *tok->pair_result);
  if (!map.slots || !created || !part_id || !tok->pair_keys || !tok->pair_rank ||
      !tok->pair_result) {
    free(map.slots);
    free(created);
    free(part_id);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
  }
  memset(map.slots, 0xFF, ((size_t)1 << 17) * sizeof *map.slots);
  for (int32_t k = 0; k < SDW_CLIP_VOCAB_SIZE; k++)
    str_map_put(&map, k);

  char sym[16];
  for (int b = 0; b < 256; b++) {
    size_t l = put_utf8(sym, byte_cp[b]);
    tok->byte_id[b] = str_map_get(&map, sym, l);
    memcpy(sym + l, "</w>", 4);
    tok->byte_eow_id[b] = str_map_get(&map, sym, l + 4);
  }

  /* bpe_ranks = dict(zip(merges, range(len(merges)))): the last rank of a
   * repeated pair wins. A part that is no vocabulary string can never occur
   * in a word, so its merge is dropped. */
  memset(tok->pair_keys, 0xFF, ((size_t)1 << PAIR_BITS) * sizeof *tok->pair_keys);
  size_t pmask = ((size_t)1 << PAIR_BITS) - 1;
  for (int32_t k = 0; k < SDW_CLIP_VOCAB_SIZE; k++)
    created[k] = INT32_MAX;
  for (int32_t k = 0; k < 512; k++)
    created[k] = -1;
  tok->heap_ok = true;
  char joined[1024];
  for (size_t r = 0; r < MERGE_COUNT; r++) {
    const char *a = parts[r][0], *b = parts[r][1];
    size_t la = strlen(a), lb = strlen(b);
    int32_t lid = str_map_get(&map, a, la), rid = str_map_get(&map, b, lb);
    part_id[2 * r] = lid;
    part_id[2 * r + 1] = rid;
    if (lid < 0 || rid < 0 || la + lb >= sizeof joined) {
      tok->heap_ok = false;
      continue;
    }
    memcpy(joined, a, la);
    memcpy(joined + la, b, lb);
    int32_t res = str_map_get(&map, joined, la + lb);
    uint64_t key = ((uint64_t)(uint32_t)lid << 32) | (uint32_t)rid;
    size_t s = pair_slot(key);
    while (tok->pair_keys[s] != UINT64_MAX && tok->pair_keys[s] != key)
      s = (s + 1) & pmask;
    if (tok->pair_keys[s] == key) tok->heap_ok = false; /* a repeated pair */
    tok->pair_keys[s] = key;
    tok->pair_rank[s] = (uint32_t)r;
    tok->pair_result[s] = res;
    if (created[res] != INT32_MAX) tok->heap_ok = false; /* made by two merges */
    if (created[res] == INT32_MAX) created[res] = (int32_t)r;
  }
  for (size_t r = 0; r < MERGE_COUNT && tok->heap_ok; r++) {
    int32_t lid = part_id[2 * r], rid = part_id[2 * r + 1];
    if (created[lid] >= (int32_t)r || created[rid] >= (int32_t)r) tok->heap_ok = false;
  }
  free(map.slots);
  free(created);
  free(part_id);
  for (int b = 0; b < 256; b++)
    if (tok->byte_id[b] < 0 || tok->byte_eow_id[b] < 0)
      return sdw_fail(SDW_ERR_INTERNAL, "%s: byte symbol %d missing from the vocabulary", path, b);
  return SDW_OK;
}

static sdw_status build(sdw_tokenizer *tok, const char *path, char *text, size_t text_len) {
  char **lines = malloc(MERGE_COUNT * sizeof *lines);
  char *(*parts)[2] = malloc(MERGE_COUNT * sizeof *parts);
  sdw_status st = lines && parts
                      ? build_vocab(tok, path, text, text_len, lines, parts)
                      : sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
  free(lines);
  free(parts);
  return st;
}

sdw_status sdw_tokenizer_load(const char *vocab_path, sdw_tokenizer_mode mode,
                              sdw_tokenizer **out) {
  *out = NULL;
  char def[4096];
  if (!vocab_path) {
    SDW_TRY(sdw_tokenizer_default_vocab(def, sizeof def));
    vocab_path = def;
  }
  char *text = NULL;
  size_t text_len = 0;
  SDW_TRY(read_gz(vocab_path, &text, &text_len));
  sdw_tokenizer *tok = calloc(1, sizeof *tok);
  if (!tok) {
    free(text);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for the tokenizer");
  }
  tok->mode = mode;
  sdw_status st = build(tok, vocab_path, text, text_len);
  free(text);
  if (!st && pthread_key_create(&tok->key, thread_state_release) != 0)
    st = sdw_fail(SDW_ERR_INTERNAL, "pthread_key_create failed for the tokenizer");
  if (st) {
    free(tok->pool);
    free(tok->pair_keys);
    free(tok->pair_rank);
    free(tok->pair_result);
    free(tok);
    return st;
  }
  pthread_mutex_init(&tok->lock, NULL);
  *out = tok;
  return SDW_OK;
}

void sdw_tokenizer_free(sdw_tokenizer *tok) {
  if (!tok) return;
  pthread_key_delete(tok->key); /* no destructor runs after this */
  for (tok_thread *t = tok->threads; t;) {
    tok_thread *next = t->next;
    thread_state_free(t);
    t = next;
  }
  pthread_mutex_destroy(&tok->lock);
  free(tok->pool);
  free(tok->pair_keys);
  free(tok->pair_rank);
  free(tok->pair_result);
  free(tok);
}
