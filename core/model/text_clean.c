/* Text cleaning for the CLIP tokenizer: ftfy.fix_text, html.unescape,
 * str.strip/lower, NFC, whitespace_clean. See text_clean.h.
 *
 * The ftfy port follows ftfy 6.3.1 (ftfy/__init__.py, fixes.py, chardata.py,
 * badness.py, bad_codecs/) step by step; each regular expression of ftfy is
 * written out as a scanner with the same leftmost-first semantics. */
#include "core/model/text_clean.h"

#include <stdlib.h>
#include <string.h>

#include "core/model/unicode_tables.h"

/* --- sdw_ustr ----------------------------------------------------------------------- */
void sdw_ustr_free(sdw_ustr *s) {
  free(s->p);
  s->p = NULL;
  s->n = s->cap = 0;
}

sdw_status sdw_ustr_reserve(sdw_ustr *s, size_t cap) {
  if (cap <= s->cap) return SDW_OK;
  size_t c = s->cap ? s->cap : 64;
  while (c < cap)
    c *= 2;
  uint32_t *p = realloc(s->p, c * sizeof *p);
  if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for %zu code points", cap);
  s->p = p;
  s->cap = c;
  return SDW_OK;
}

sdw_status sdw_ustr_set(sdw_ustr *s, const uint32_t *cps, size_t n) {
  SDW_TRY(sdw_ustr_reserve(s, n + 1));
  if (n) memmove(s->p, cps, n * sizeof *cps);
  s->n = n;
  return SDW_OK;
}

static void ustr_swap(sdw_ustr *a, sdw_ustr *b) {
  sdw_ustr t = *a;
  *a = *b;
  *b = t;
}

static inline sdw_status ustr_push(sdw_ustr *s, uint32_t c) {
  if (s->n == s->cap) SDW_TRY(sdw_ustr_reserve(s, s->n + 1));
  s->p[s->n++] = c;
  return SDW_OK;
}

static sdw_status ustr_append(sdw_ustr *s, const uint32_t *c, size_t n) {
  SDW_TRY(sdw_ustr_reserve(s, s->n + n));
  if (n) memcpy(s->p + s->n, c, n * sizeof *c);
  s->n += n;
  return SDW_OK;
}

static bool ustr_equal(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* --- UTF-8 ---------------------------------------------------------------------------- */
sdw_status sdw_ustr_from_utf8(sdw_ustr *s, const char *utf8, size_t len) {
  SDW_TRY(sdw_ustr_reserve(s, len + 1));
  const uint8_t *b = (const uint8_t *)utf8;
  size_t i = 0, o = 0;
  while (i < len) {
    uint32_t c = b[i];
    if (c < 0x80) {
      s->p[o++] = c;
      i++;
      continue;
    }
    /* Valid ranges of the second byte per lead byte (Unicode Table 3-7);
     * the rest of the continuation bytes are 80..BF. */
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      c &= 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
      c &= 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
      c &= 0x07;
    } else {
      s->p[o++] = 0xFFFD;
      i++;
      continue;
    }
    size_t j = i + 1;
    int k = 0;
    for (; k < need; k++, j++) {
      if (j >= len) break;
      uint8_t x = b[j];
      if (k == 0 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) break;
      c = (c << 6) | (x & 0x3F);
    }
    if (k == need) {
      s->p[o++] = c;
      i = j;
    } else {
      s->p[o++] = 0xFFFD; /* one U+FFFD per maximal invalid subpart */
      i = j;
    }
  }
  s->n = o;
  return SDW_OK;
}

size_t sdw_utf8_encode(const uint32_t *cps, size_t n, uint8_t *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = cps[i];
    if (c < 0x80) {
      out[o++] = (uint8_t)c;
    } else if (c < 0x800) {
      out[o++] = (uint8_t)(0xC0 | (c >> 6));
      out[o++] = (uint8_t)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out[o++] = (uint8_t)(0xE0 | (c >> 12));
      out[o++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
      out[o++] = (uint8_t)(0x80 | (c & 0x3F));
    } else {
      out[o++] = (uint8_t)(0xF0 | (c >> 18));
      out[o++] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
      out[o++] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
      out[o++] = (uint8_t)(0x80 | (c & 0x3F));
    }
  }
  return o;
}

/* --- byte strings (only the mojibake path uses them) ------------------------------------ */
typedef struct bstr {
  uint8_t *p;
  size_t n, cap;
} bstr;

static void bstr_free(bstr *b) {
  free(b->p);
  b->p = NULL;
  b->n = b->cap = 0;
}

static sdw_status bstr_reserve(bstr *b, size_t cap) {
  if (cap <= b->cap) return SDW_OK;
  size_t c = b->cap ? b->cap : 64;
  while (c < cap)
    c *= 2;
  uint8_t *p = realloc(b->p, c);
  if (!p) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes", cap);
  b->p = p;
  b->cap = c;
  return SDW_OK;
}

/* --- table lookups -------------------------------------------------------------------- */
static inline bool is_py_space(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
  return sdw_uc_flags(c) & SDW_UC_PY_SPACE;
}

static uint32_t ftfy_mask(uint32_t c) {
  if (!(sdw_uc_flags(c) & SDW_UC_FTFY)) return 0;
  size_t lo = 0, hi = sdw_ftfy_mask_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (sdw_ftfy_mask_keys[mid] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < sdw_ftfy_mask_count && sdw_ftfy_mask_keys[lo] == c ? sdw_ftfy_mask_vals[lo] : 0;
}

static bool sorted_u32_contains(const uint32_t *a, size_t n, uint32_t c) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a[mid] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n && a[lo] == c;
}

/* Compares code points with a NUL-terminated ASCII name. */
static int name_cmp(const uint32_t *s, size_t n, const char *name) {
  size_t i = 0;
  for (; i < n && name[i]; i++) {
    uint32_t a = s[i], b = (uint8_t)name[i];
    if (a != b) return a < b ? -1 : 1;
  }
  if (i == n) return name[i] ? -1 : 0;
  return 1;
}

/* Entity lookup in a generated table; returns the value (up to 3 code points,
 * 0-padded) or NULL. */
static const uint32_t *entity_find(const char *names, const uint16_t *off, const uint32_t *vals,
                                   size_t count, const uint32_t *s, size_t n) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = name_cmp(s, n, names + off[mid]);
    if (c == 0) return vals + 3 * mid;
    if (c > 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

static const uint32_t *html5_find(const uint32_t *s, size_t n) {
  return entity_find(sdw_uc_html5_names, sdw_uc_html5_name_off, sdw_uc_html5_vals,
                     sdw_uc_html5_count, s, n);
}

static sdw_status append_entity_value(sdw_ustr *out, const uint32_t *v) {
  for (int k = 0; k < 3 && v[k]; k++)
    SDW_TRY(ustr_push(out, v[k]));
  return SDW_OK;
}

/* --- html.unescape ------------------------------------------------------------------ */
static bool ascii_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool ascii_hex(uint32_t c) {
  return ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool ascii_alnum(uint32_t c) {
  return ascii_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool ascii_letter(uint32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* html._replace_charref for a numeric reference with value num (saturated
 * above 0x10FFFF). */
static sdw_status append_charref(sdw_ustr *out, uint32_t num) {
  for (size_t k = 0; k < sdw_uc_invalid_charref_count; k++)
    if (sdw_uc_invalid_charref_keys[k] == num)
      return ustr_push(out, sdw_uc_invalid_charref_vals[k]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return ustr_push(out, 0xFFFD);
  if (sorted_u32_contains(sdw_uc_invalid_codepoints, sdw_uc_invalid_codepoint_count, num))
    return SDW_OK;
  return ustr_push(out, num);
}

/* Python's html.unescape of t[0..n), appended to out. The pattern is
 * &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?). */
static sdw_status html_unescape_append(const uint32_t *t, size_t n, sdw_ustr *out) {
  size_t i = 0;
  while (i < n) {
    uint32_t c = t[i];
    if (c != '&') {
      SDW_TRY(ustr_push(out, c));
      i++;
      continue;
    }
    size_t j = i + 1;
    if (j < n && t[j] == '#') {
      size_t k;
      uint32_t num = 0;
      if (j + 1 < n && ascii_digit(t[j + 1])) {
        for (k = j + 1; k < n && ascii_digit(t[k]); k++) {
          num = num * 10 + (t[k] - '0');
          if (num > 0x110000) num = 0x110000;
        }
      } else if (j + 2 < n && (t[j + 1] == 'x' || t[j + 1] == 'X') && ascii_hex(t[j + 2])) {
        for (k = j + 2; k < n && ascii_hex(t[k]); k++) {
          uint32_t d = t[k] <= '9' ? t[k] - '0' : (t[k] | 0x20) - 'a' + 10;
          num = num * 16 + d;
          if (num > 0x110000) num = 0x110000;
        }
      } else {
        SDW_TRY(ustr_push(out, '&'));
        i++;
        continue;
      }
      if (k < n && t[k] == ';') k++;
      SDW_TRY(append_charref(out, num));
      i = k;
      continue;
    }
    size_t k = j;
    while (k < n && k - j < 32) {
      uint32_t x = t[k];
      if (x == '\t' || x == '\n' || x == '\f' || x == ' ' || x == '<' || x == '&' || x == '#' ||
          x == ';')
        break;
      k++;
    }
    if (k == j) {
      SDW_TRY(ustr_push(out, '&'));
      i++;
      continue;
    }
    if (k < n && t[k] == ';') k++;
    /* s = t[j..k): the whole name, else the longest prefix of length >= 2. */
    size_t len = k - j;
    const uint32_t *v = html5_find(t + j, len);
    if (v) {
      SDW_TRY(append_entity_value(out, v));
    } else {
      size_t x = len - 1;
      for (; x >= 2; x--) {
        v = html5_find(t + j, x);
        if (v) break;
      }
      if (v) {
        SDW_TRY(append_entity_value(out, v));
        SDW_TRY(ustr_append(out, t + j + x, len - x));
      } else {
        SDW_TRY(ustr_push(out, '&'));
        SDW_TRY(ustr_append(out, t + j, len));
      }
    }
    i = k;
  }
  return SDW_OK;
}

sdw_status sdw_html_unescape(sdw_ustr *text, sdw_ustr *tmp) {
  bool amp = false;
  for (size_t i = 0; i < text->n && !amp; i++)
    amp = text->p[i] == '&';
  if (!amp) return SDW_OK;
  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, text->n + 1));
  SDW_TRY(html_unescape_append(text->p, text->n, tmp));
  ustr_swap(text, tmp);
  return SDW_OK;
}

/* --- strip / whitespace / lower ------------------------------------------------------- */
void sdw_py_strip(sdw_ustr *text) {
  size_t a = 0, b = text->n;
  while (a < b && is_py_space(text->p[a]))
    a++;
  while (b > a && is_py_space(text->p[b - 1]))
    b--;
  if (a) memmove(text->p, text->p + a, (b - a) * sizeof *text->p);
  text->n = b - a;
}

static inline bool is_rx_space(uint32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r');
  return sdw_uc_flags(c) & SDW_UC_RX_SPACE;
}

void sdw_whitespace_clean(sdw_ustr *text) {
  size_t o = 0, n = text->n;
  uint32_t *t = text->p;
  for (size_t i = 0; i < n;) {
    if (is_rx_space(t[i])) {
      while (i < n && is_rx_space(t[i]))
        i++;
      t[o++] = ' ';
    } else {
      t[o++] = t[i++];
    }
  }
  text->n = o;
  sdw_py_strip(text);
}

/* CPython's handle_capital_sigma. */
static uint32_t final_sigma(const uint32_t *t, size_t n, size_t i) {
  size_t j = i;
  unsigned f = 0;
  while (j > 0) {
    f = sdw_uc_flags(t[j - 1]);
    if (!(f & SDW_UC_CASE_IGNORABLE)) break;
    j--;
  }
  bool fin = j > 0 && (f & SDW_UC_CASED);
  if (fin) {
    size_t k = i + 1;
    while (k < n && (sdw_uc_flags(t[k]) & SDW_UC_CASE_IGNORABLE))
      k++;
    fin = k == n || !(sdw_uc_flags(t[k]) & SDW_UC_CASED);
  }
  return fin ? 0x3C2 : 0x3C3;
}

static uint16_t lower_ref(uint32_t c) {
  size_t lo = 0, hi = sdw_uc_lower_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (sdw_uc_lower_keys[mid] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  return sdw_uc_lower_ref[lo];
}

sdw_status sdw_py_lower(sdw_ustr *text, sdw_ustr *tmp) {
  size_t n = text->n;
  uint32_t *t = text->p;
  bool sigma = false;
  for (size_t k = 0; k < n; k++)
    sigma |= t[k] == 0x3A3; /* no early exit: vectorizes */
  size_t i = 0;
  /* Without a capital sigma nothing depends on context: map in place until
   * the first full mapping that needs more room (U+0130 -> 'i' U+0307). */
  if (!sigma) {
    for (; i < n; i++) {
      uint32_t c = t[i];
      if (c < 0x80) {
        if (c >= 'A' && c <= 'Z') t[i] = c + 32;
        continue;
      }
      if (!(sdw_uc_flags(c) & SDW_UC_HAS_LOWER)) continue;
      uint16_t ref = lower_ref(c);
      if ((ref & 3) != 1) break;
      t[i] = sdw_uc_lower_pool[ref >> 2];
    }
    if (i == n) return SDW_OK;
  }
  /* General path from i on; final sigma reads the unmodified neighbours
   * (only reached with i == 0 when a sigma is present). */
  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, n * 3 + 1));
  memcpy(tmp->p, t, i * sizeof *t);
  size_t o = i;
  for (; i < n; i++) {
    uint32_t c = t[i];
    if (c < 0x80) {
      tmp->p[o++] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
      continue;
    }
    if (!(sdw_uc_flags(c) & SDW_UC_HAS_LOWER)) {
      tmp->p[o++] = c;
    } else if (c == 0x3A3) {
      tmp->p[o++] = final_sigma(t, n, i);
    } else {
      uint16_t ref = lower_ref(c);
      for (unsigned k = 0; k < (ref & 3u); k++)
        tmp->p[o++] = sdw_uc_lower_pool[(ref >> 2) + k];
    }
  }
  tmp->n = o;
  ustr_swap(text, tmp);
  return SDW_OK;
}

/* --- NFC ------------------------------------------------------------------------------ */
enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7 };
enum { HANGUL_LCOUNT = 19, HANGUL_VCOUNT = 21, HANGUL_TCOUNT = 28, HANGUL_NCOUNT = 588 };
enum { HANGUL_SCOUNT = 11172 };

static unsigned ccc_of(uint32_t c) {
  if (c < 0x300) return 0;
  size_t lo = 0, hi = sdw_uc_ccc_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (sdw_uc_ccc_ranges[3 * mid + 1] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < sdw_uc_ccc_count && sdw_uc_ccc_ranges[3 * lo] <= c) return sdw_uc_ccc_ranges[3 * lo + 2];
  return 0;
}

static int decomp_of(uint32_t c, uint32_t out[2]) {
  size_t lo = 0, hi = sdw_uc_decomp_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (sdw_uc_decomp_keys[mid] < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == sdw_uc_decomp_count || sdw_uc_decomp_keys[lo] != c) return 0;
  out[0] = sdw_uc_decomp_vals[2 * lo];
  out[1] = sdw_uc_decomp_vals[2 * lo + 1];
  return out[1] ? 2 : 1;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V &&
      b < HANGUL_V + HANGUL_VCOUNT)
    return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
  if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
      b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
    return a + (b - HANGUL_T);
  uint64_t key = ((uint64_t)a << 21) | b;
  size_t lo = 0, hi = sdw_uc_comp_count;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (sdw_uc_comp_keys[mid] < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < sdw_uc_comp_count && sdw_uc_comp_keys[lo] == key ? sdw_uc_comp_vals[lo] : 0;
}

static sdw_status decompose_append(uint32_t c, sdw_ustr *out) {
  if (c >= HANGUL_S && c < HANGUL_S + HANGUL_SCOUNT) {
    uint32_t s = c - HANGUL_S;
    SDW_TRY(ustr_push(out, HANGUL_L + s / HANGUL_NCOUNT));
    SDW_TRY(ustr_push(out, HANGUL_V + (s % HANGUL_NCOUNT) / HANGUL_TCOUNT));
    if (s % HANGUL_TCOUNT) SDW_TRY(ustr_push(out, HANGUL_T + s % HANGUL_TCOUNT));
    return SDW_OK;
  }
  uint32_t d[2];
  int k = decomp_of(c, d);
  if (!k) return ustr_push(out, c);
  SDW_TRY(decompose_append(d[0], out));
  if (k == 2) SDW_TRY(decompose_append(d[1], out));
  return SDW_OK;
}

sdw_status sdw_nfc(sdw_ustr *text, sdw_ustr *tmp, bool *changed) {
  *changed = false;
  size_t n = text->n;
  bool quick = true; /* the NFC quick check: nothing can change */
  for (size_t i = 0; i < n && quick; i++)
    if (sdw_uc_flags(text->p[i]) & SDW_UC_NFC_SENSITIVE) quick = false;
  if (quick) return SDW_OK;

  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, n + 16));
  for (size_t i = 0; i < n; i++)
    SDW_TRY(decompose_append(text->p[i], tmp));
  /* Canonical ordering: stable sort of each run of non-starters by ccc. */
  uint32_t *d = tmp->p;
  size_t m = tmp->n;
  for (size_t i = 1; i < m; i++) {
    unsigned ci = ccc_of(d[i]);
    if (!ci) continue;
    size_t j = i;
    uint32_t c = d[i];
    while (j > 0) {
      unsigned cj = ccc_of(d[j - 1]);
      if (cj <= ci) break;
      d[j] = d[j - 1];
      j--;
    }
    d[j] = c;
  }
  /* Canonical composition (UAX #15): a character combines with the last
   * starter when nothing between them blocks it. */
  size_t o = 0;
  long starter = -1;
  unsigned last_ccc = 0;
  for (size_t i = 0; i < m; i++) {
    uint32_t c = d[i];
    unsigned cc = ccc_of(c);
    if (starter >= 0) {
      bool adjacent = (size_t)starter == o - 1;
      if (adjacent || (last_ccc != 0 && last_ccc < cc)) {
        uint32_t comp = compose_pair(d[starter], c);
        if (comp) {
          d[starter] = comp;
          continue;
        }
      }
    }
    if (cc == 0) starter = (long)o;
    last_ccc = cc;
    d[o++] = c;
  }
  tmp->n = o;
  if (!ustr_equal(tmp->p, tmp->n, text->p, text->n)) {
    *changed = true;
    ustr_swap(text, tmp);
  }
  return SDW_OK;
}

/* --- ftfy: the mojibake heuristic (badness.py) -------------------------------------- */
enum {
  M_C1 = SDW_FTFY_C1,
  M_BAD = SDW_FTFY_BAD,
  M_LAW = SDW_FTFY_LAW,
  M_CUR = SDW_FTFY_CUR,
  M_SP = SDW_FTFY_SP,
  M_EP = SDW_FTFY_EP,
  M_NUM = SDW_FTFY_NUM,
  M_KAO = SDW_FTFY_KAO,
  M_UA = SDW_FTFY_UA,
  M_LA = SDW_FTFY_LA,
  M_UC = SDW_FTFY_UC,
  M_LC = SDW_FTFY_LC,
  M_BOX = SDW_FTFY_BOX,
  M_COM = SDW_FTFY_COM,
};

static bool in_list(uint32_t c, const uint32_t *list, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (list[i] == c) return true;
  return false;
}
#define IN(c, ...)                                                                                 \
  in_list((c), (const uint32_t[]){__VA_ARGS__},                                                    \
          sizeof((const uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t))

static bool is_lower_ascii(uint32_t c) { return c >= 'a' && c <= 'z'; }

/* Does one alternative of ftfy's BADNESS_RE match at position i? */
static bool badness_at(const uint32_t *t, size_t n, size_t i) {
  uint32_t c0 = t[i];
  uint32_t m0 = ftfy_mask(c0);
  uint32_t c1 = i + 1 < n ? t[i + 1] : 0xFFFFFFFFu;
  uint32_t m1 = i + 1 < n ? ftfy_mask(c1) : 0;
  bool h1 = i + 1 < n, h2 = i + 2 < n, h3 = i + 3 < n;
  uint32_t c2 = h2 ? t[i + 2] : 0xFFFFFFFFu, m2 = h2 ? ftfy_mask(c2) : 0;

  if (m0 & M_C1) return true;
  if (!h1) return false;
  const uint32_t MIX = M_LA | M_UA | M_BOX | M_SP | M_EP | M_CUR | M_NUM | M_LAW;
  if ((m0 & (M_BAD | MIX)) && (m1 & M_BAD)) return true;
  if (ascii_letter(c0) && (m1 & (M_LC | M_UC)) && (m2 & M_BAD)) return true;
  if ((m0 & M_BAD) && (m1 & MIX)) return true;
  if ((m0 & (M_LA | M_LC | M_BOX | M_EP | M_CUR | M_NUM)) && (m1 & M_UA)) return true;
  if ((m0 & (M_BOX | M_EP | M_CUR | M_NUM)) && (m1 & M_LA)) return true;
  if ((m0 & (M_LA | M_BOX | M_EP)) && (m1 & M_CUR)) return true;
  if (is_py_space(c0) && (m1 & M_UA) && (m2 & M_CUR)) return true;
  if ((m0 & (M_UA | M_BOX)) && (m1 & (M_NUM | M_LAW))) return true;
  if ((m0 & (M_LA | M_UA | M_BOX | M_CUR | M_EP)) && (m1 & M_SP) && (m2 & M_NUM)) return true;
  if ((m0 & (M_LA | M_UA | M_CUR | M_NUM | M_BOX | M_LAW)) && (m1 & M_EP) && (m2 & M_SP))
    return true;
  if ((m0 & (M_CUR | M_NUM | M_BOX)) && (m1 & M_SP)) return true;
  if (is_lower_ascii(c0) && (m1 & M_UA) && (m2 & (M_SP | M_CUR))) return true;
  if ((m0 & M_BOX) && (m1 & M_KAO)) return true;
  if ((m0 & (M_LA | M_UA | M_CUR | M_NUM | M_SP | M_EP | M_LAW)) && (m1 & M_BOX)) return true;
  if ((m0 & M_BOX) && (m1 & M_EP)) return true;
  if ((m0 & (M_LA | M_UA)) && (m1 & (M_SP | M_EP)) && h2 && (sdw_uc_flags(c2) & SDW_UC_PY_WORD))
    return true;
  /* [Œœ][^A-Za-z] */
  if ((c0 == 0x152 || c0 == 0x153) && !ascii_letter(c1)) return true;
  /* [{upper_accented}]° */
  if ((m0 & M_UA) && c1 == 0xB0) return true;
  /* [ÂÃÎÐ][€œŠš¢£Ÿž\xa0\xad®©°·»{start_punctuation}{end_punctuation}–—´] */
  if (IN(c0, 0xC2, 0xC3, 0xCE, 0xD0) &&
      (IN(c1, 0x20AC, 0x153, 0x160, 0x161, 0xA2, 0xA3, 0x178, 0x17E, 0xA0, 0xAD, 0xAE, 0xA9, 0xB0,
          0xB7, 0xBB, 0x2013, 0x2014, 0xB4) ||
       (m1 & (M_SP | M_EP))))
    return true;
  /* × [²³] */
  if (c0 == 0xD7 && (c1 == 0xB2 || c1 == 0xB3)) return true;
  /* [ØÙ] [X] [ØÙ] [X] (Windows-1252 mojibake of Arabic) */
  if (h3 && (c0 == 0xD8 || c0 == 0xD9) && (c2 == 0xD8 || c2 == 0xD9)) {
    const uint32_t X = M_COM | M_CUR | M_BAD | M_NUM | M_SP;
    uint32_t c3 = t[i + 3];
    bool x1 = (m1 & X) || IN(c1, 0x178, 0x160, 0xAE, 0xB0, 0xB5, 0xBB);
    bool x3 = (ftfy_mask(c3) & X) || IN(c3, 0x178, 0x160, 0xAE, 0xB0, 0xB5, 0xBB);
    if (x1 && x3) return true;
  }
  /* à[²µ¹¼½¾] */
  if (c0 == 0xE0 && IN(c1, 0xB2, 0xB5, 0xB9, 0xBC, 0xBD, 0xBE)) return true;
  /* √[±∂†≠®™´≤≥¥µø] */
  if (c0 == 0x221A &&
      IN(c1, 0xB1, 0x2202, 0x2020, 0x2260, 0xAE, 0x2122, 0xB4, 0x2264, 0x2265, 0xA5, 0xB5, 0xF8))
    return true;
  /* ≈[°¢] */
  if (c0 == 0x2248 && (c1 == 0xB0 || c1 == 0xA2)) return true;
  /* ‚Ä[ìîïòôúùû†°¢π] */
  if (c0 == 0x201A && c1 == 0xC4 && h2 &&
      IN(c2, 0xEC, 0xEE, 0xEF, 0xF2, 0xF4, 0xFA, 0xF9, 0xFB, 0x2020, 0xB0, 0xA2, 0x3C0))
    return true;
  /* ‚[âó][àä°ê] */
  if (c0 == 0x201A && (c1 == 0xE2 || c1 == 0xF3) && h2 && IN(c2, 0xE0, 0xE4, 0xB0, 0xEA))
    return true;
  /* вЂ */
  if (c0 == 0x432 && c1 == 0x402) return true;
  /* [ВГРС][{c1}{bad}{start}{end}{currency}°µ][ВГРС] */
  if (IN(c0, 0x412, 0x413, 0x420, 0x421) &&
      ((m1 & (M_C1 | M_BAD | M_SP | M_EP | M_CUR)) || c1 == 0xB0 || c1 == 0xB5) && h2 &&
      IN(c2, 0x412, 0x413, 0x420, 0x421))
    return true;
  /* ГўВЂВ.[A-Za-z ] */
  if (c0 == 0x413 && c1 == 0x45E && i + 6 < n && t[i + 2] == 0x412 && t[i + 3] == 0x402 &&
      t[i + 4] == 0x412 && t[i + 5] != '\n' && (ascii_letter(t[i + 6]) || t[i + 6] == ' '))
    return true;
  /* Ã[\xa0¡] */
  if (c0 == 0xC3 && (c1 == 0xA0 || c1 == 0xA1)) return true;
  /* [a-z]\s?[ÃÂ][ ] */
  if (is_lower_ascii(c0)) {
    if (is_py_space(c1) && h3 && (c2 == 0xC3 || c2 == 0xC2) && t[i + 3] == ' ') return true;
    if ((c1 == 0xC3 || c1 == 0xC2) && c2 == ' ') return true;
  }
  /* ^[ÃÂ][ ] */
  if (i == 0 && (c0 == 0xC3 || c0 == 0xC2) && c1 == ' ') return true;
  /* [a-z.,?!{end_punctuation}] Â [ {start_punctuation}{end_punctuation}] */
  if ((is_lower_ascii(c0) || IN(c0, '.', ',', '?', '!') || (m0 & M_EP)) && c1 == 0xC2 && h2 &&
      (c2 == ' ' || (m2 & (M_SP | M_EP))))
    return true;
  /* β€[™\xa0Ά\xad®°] */
  if (c0 == 0x3B2 && c1 == 0x20AC && h2 && IN(c2, 0x2122, 0xA0, 0x386, 0xAD, 0xAE, 0xB0))
    return true;
  /* [ΒΓΞΟ][{c1}{bad}{start}{end}{currency}°][ΒΓΞΟ] */
  if (IN(c0, 0x392, 0x393, 0x39E, 0x39F) &&
      ((m1 & (M_C1 | M_BAD | M_SP | M_EP | M_CUR)) || c1 == 0xB0) && h2 &&
      IN(c2, 0x392, 0x393, 0x39E, 0x39F))
    return true;
  /* ā€ */
  if (c0 == 0x101 && c1 == 0x20AC) return true;
  return false;
}

bool sdw_ftfy_is_bad(const uint32_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    /* Every alternative starts with a non-ASCII character except the ones
     * starting with [a-zA-Z], [a-z.,?!] or \s, which need a non-ASCII
     * character right after; skip pure-ASCII pairs quickly. */
    if (t[i] < 0x80 && (i + 1 >= n || t[i + 1] < 0x80) && !(i + 2 < n && t[i + 2] >= 0x80))
      continue;
    if (badness_at(t, n, i)) return true;
  }
  return false;
}

/* --- ftfy: codecs ---------------------------------------------------------------------- */
/* Byte for code point c in codec k, or -1 when c cannot be encoded. */
static int codec_encode_char(int k, uint32_t c) {
  if (c < 0x80) return (sdw_ftfy_codec_is_sloppy(k) && c == 0x1A) ? -1 : (int)c;
  const uint32_t *inv = sdw_ftfy_codec_inv + sdw_ftfy_codec_inv_off[k];
  size_t lo = 0, hi = (size_t)(sdw_ftfy_codec_inv_off[k + 1] - sdw_ftfy_codec_inv_off[k]);
  size_t count = hi;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if ((inv[mid] >> 8) < c)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < count && (inv[lo] >> 8) == c) return (int)(inv[lo] & 0xFF);
  return -1;
}

static bool codec_possible(int k, const uint32_t *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (codec_encode_char(k, t[i]) < 0) return false;
  return true;
}

/* ALTERED_UTF8_RE at position i: match length or 0. */
static size_t altered_at(const uint8_t *b, size_t n, size_t i) {
#define X_(v)    ((v) >= 0x80 && (v) <= 0xBF && (v) != 0x85 && (v) != 0xA0)
#define CONT_(v) ((v) >= 0x80 && (v) <= 0xBF)
  uint8_t c = b[i];
  size_t r = n - i;
  if (r >= 2 && (c == 0xC2 || c == 0xC3 || c == 0xC5 || c == 0xCE || c == 0xD0 || c == 0xD9) &&
      b[i + 1] == ' ')
    return 2;
  if (r >= 3 && (c == 0xE2 || c == 0xE3) && b[i + 1] == ' ' && X_(b[i + 2])) return 3;
  if (r >= 3 && c >= 0xE0 && c <= 0xE3 && X_(b[i + 1]) && b[i + 2] == ' ') return 3;
  if (r >= 4 && c == 0xF0) {
    if (b[i + 1] == ' ' && CONT_(b[i + 2]) && CONT_(b[i + 3])) return 4;
    if (CONT_(b[i + 1]) && b[i + 2] == ' ' && CONT_(b[i + 3])) return 4;
    if (CONT_(b[i + 1]) && CONT_(b[i + 2]) && b[i + 3] == ' ') return 4;
  }
  return 0;
#undef X_
#undef CONT_
}

static bool starts_with(const uint8_t *b, size_t n, size_t i, const char *s) {
  size_t l = strlen(s);
  return n - i >= l && memcmp(b + i, s, l) == 0;
}

/* fixes.restore_byte_a0: out = restored bytes of in. */
static sdw_status restore_byte_a0(const bstr *in, bstr *out) {
  bstr mid = {0};
  sdw_status st = bstr_reserve(&mid, in->n * 2 + 1);
  if (st) return st;
  /* A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 " */
  size_t n = in->n;
  for (size_t i = 0; i < n;) {
    if (in->p[i] == 0xC3 && i + 1 < n && in->p[i + 1] == ' ' &&
        !(starts_with(in->p, n, i + 2, " ") || starts_with(in->p, n, i + 2, "quele") ||
          starts_with(in->p, n, i + 2, "quela") || starts_with(in->p, n, i + 2, "quilo") ||
          starts_with(in->p, n, i + 2, "s "))) {
      mid.p[mid.n++] = 0xC3;
      mid.p[mid.n++] = 0xA0;
      mid.p[mid.n++] = ' ';
      i += 2;
    } else {
      mid.p[mid.n++] = in->p[i++];
    }
  }
  st = bstr_reserve(out, mid.n + 1);
  if (st) {
    bstr_free(&mid);
    return st;
  }
  out->n = 0;
  for (size_t i = 0; i < mid.n;) {
    size_t l = altered_at(mid.p, mid.n, i);
    if (l) {
      for (size_t k = 0; k < l; k++)
        out->p[out->n++] = mid.p[i + k] == ' ' ? 0xA0 : mid.p[i + k];
      i += l;
    } else {
      out->p[out->n++] = mid.p[i++];
    }
  }
  bstr_free(&mid);
  return SDW_OK;
}

/* LOSSY_UTF8_RE at position i: match length or 0. */
static size_t lossy_at(const uint8_t *b, size_t n, size_t i) {
#define SUB(v) ((v) == 0x1A)
#define SQ(v)  ((v) == 0x1A || (v) == '?')
#define SC(v)  ((v) == 0x1A || ((v) >= 0x80 && (v) <= 0xBF))
#define SQC(v) ((v) == 0x1A || (v) == '?' || ((v) >= 0x80 && (v) <= 0xBF))
  uint8_t c = b[i];
  size_t r = n - i;
  if (r >= 2 && c >= 0xC2 && c <= 0xDF && SUB(b[i + 1])) return 2;
  if (r >= 2 && (c == 0xC2 || c == 0xC3) && b[i + 1] == '?') return 2;
  if (r >= 6 && c == 0xED && b[i + 1] >= 0xA0 && b[i + 1] <= 0xAF && b[i + 3] == 0xED &&
      b[i + 4] >= 0xB0 && b[i + 4] <= 0xBF) {
    if (SQ(b[i + 2]) && SQC(b[i + 5])) return 6;
    if (SQC(b[i + 2]) && SQ(b[i + 5])) return 6;
  }
  if (r >= 3 && c >= 0xE0 && c <= 0xEF) {
    if (SQ(b[i + 1]) && SC(b[i + 2])) return 3;
    if (SC(b[i + 1]) && SQ(b[i + 2])) return 3;
  }
  if (r >= 4 && c >= 0xF0 && c <= 0xF4) {
    if (SQ(b[i + 1]) && SC(b[i + 2]) && SC(b[i + 3])) return 4;
    if (SC(b[i + 1]) && SQ(b[i + 2]) && SC(b[i + 3])) return 4;
    if (SC(b[i + 1]) && SC(b[i + 2]) && SQ(b[i + 3])) return 4;
  }
  if (SUB(c)) return 1;
  return 0;
#undef SUB
#undef SQ
#undef SC
#undef SQC
}

static sdw_status replace_lossy(bstr *b, bstr *tmp) {
  SDW_TRY(bstr_reserve(tmp, b->n * 3 + 1));
  tmp->n = 0;
  bool any = false;
  for (size_t i = 0; i < b->n;) {
    size_t l = lossy_at(b->p, b->n, i);
    if (l) {
      tmp->p[tmp->n++] = 0xEF;
      tmp->p[tmp->n++] = 0xBF;
      tmp->p[tmp->n++] = 0xBD;
      i += l;
      any = true;
    } else {
      tmp->p[tmp->n++] = b->p[i++];
    }
  }
  if (any) {
    bstr t = *b;
    *b = *tmp;
    *tmp = t;
  }
  return SDW_OK;
}

/* Python's strict UTF-8 decoding, plus ftfy's "utf-8-variants" (Java's C0 80
 * for NUL and CESU-8 surrogate pairs) when variants is set. Returns false
 * when Python would raise UnicodeDecodeError. */
static bool decode_utf8_strict(const uint8_t *b, size_t n, bool variants, sdw_ustr *out,
                               sdw_status *st) {
  out->n = 0;
  *st = sdw_ustr_reserve(out, n + 1);
  if (*st) return false;
    /* `$` in ftfy's byte patterns also matches right before a final '\n'. */
#define AT_END(p) ((p) == n || ((p) == n - 1 && b[n - 1] == '\n'))
  size_t i = 0;
  while (i < n) {
    uint8_t c = b[i];
    if (c < 0x80) {
      out->p[out->n++] = c;
      i++;
      continue;
    }
    if (variants && c == 0xC0) {
      if (i + 1 < n && (b[i + 1] == 0x80 || AT_END(i + 1))) {
        out->p[out->n++] = 0;
        i += 2;
        continue;
      }
      return false;
    }
    if (variants && c == 0xED && (i + 1 == n || AT_END(i + 1) || (b[i + 1] >= 0xA0))) {
      /* A surrogate: only a full CESU-8 pair decodes. */
      if (n - i < 6) return false;
      bool m = b[i + 1] >= 0xA0 && b[i + 1] <= 0xAF && b[i + 2] >= 0x80 && b[i + 2] <= 0xBF &&
               b[i + 3] == 0xED && b[i + 4] >= 0xB0 && b[i + 4] <= 0xBF &&
               ((b[i + 5] >= 0x80 && b[i + 5] <= 0xBF) || AT_END(i + 5));
      if (!m) return false;
      uint32_t cp = (((uint32_t)b[i + 1] & 0x0F) << 16) + (((uint32_t)b[i + 2] & 0x3F) << 10) +
                    (((uint32_t)b[i + 4] & 0x0F) << 6) + ((uint32_t)b[i + 5] & 0x3F) + 0x10000;
      out->p[out->n++] = cp;
      i += 6;
      continue;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= (size_t)need) return false;
    for (int k = 1; k <= need; k++) {
      uint8_t x = b[i + k];
      if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) return false;
      cp = (cp << 6) | (x & 0x3F);
    }
    out->p[out->n++] = cp;
    i += need + 1;
  }
#undef AT_END
  return true;
}

/* --- ftfy: UTF8_DETECTOR_RE and decode_inconsistent_utf8 ----------------------------- */
static size_t detector_at(const uint32_t *t, size_t n, size_t i) {
  if (i > 0 && (ftfy_mask(t[i - 1]) & SDW_FTFY_CONTS)) return 0;
  size_t j = i;
  for (;;) {
    if (j >= n) break;
    uint32_t m = ftfy_mask(t[j]);
#define CONT(k) (ftfy_mask(t[k]) & SDW_FTFY_CONT)
    if ((m & SDW_FTFY_F2) && j + 1 < n && CONT(j + 1)) {
      j += 2;
      continue;
    }
    if ((m & SDW_FTFY_F3) && j + 2 < n && CONT(j + 1) && CONT(j + 2)) {
      j += 3;
      continue;
    }
    if ((m & SDW_FTFY_F4) && j + 3 < n && CONT(j + 1) && CONT(j + 2) && CONT(j + 3)) {
      j += 4;
      continue;
    }
#undef CONT
    break;
  }
  return j - i;
}

static sdw_status fix_encoding_impl(sdw_ustr *text);

static sdw_status decode_inconsistent_utf8(const sdw_ustr *text, sdw_ustr *out) {
  const uint32_t *t = text->p;
  size_t n = text->n;
  out->n = 0;
  SDW_TRY(sdw_ustr_reserve(out, n + 1));
  size_t i = 0;
  while (i < n) {
    size_t s = i, len = 0;
    for (; s < n; s++)
      if ((len = detector_at(t, n, s)) > 0) break;
    SDW_TRY(ustr_append(out, t + i, s - i));
    if (s >= n) break;
    if (len < n && sdw_ftfy_is_bad(t + s, len)) {
      sdw_ustr sub = {0};
      sdw_status st = sdw_ustr_set(&sub, t + s, len);
      if (!st) st = fix_encoding_impl(&sub);
      if (!st) st = ustr_append(out, sub.p, sub.n);
      sdw_ustr_free(&sub);
      SDW_TRY(st);
    } else {
      SDW_TRY(ustr_append(out, t + s, len));
    }
    i = s + len;
  }
  return SDW_OK;
}

/* fixes.fix_c1_controls: U+0080..U+009F as sloppy Windows-1252. */
static bool fix_c1_controls_inplace(sdw_ustr *text) {
  bool changed = false;
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (c >= 0x80 && c <= 0x9F) {
      uint32_t d = sdw_ftfy_codec_decode[256 * 1 + c]; /* sloppy-windows-1252 */
      if (d != c) {
        text->p[i] = d;
        changed = true;
      }
    }
  }
  return changed;
}

/* _fix_encoding_one_step_and_explain: result in out (may equal text). */
static sdw_status fix_encoding_one_step(const sdw_ustr *text, sdw_ustr *out) {
  const uint32_t *t = text->p;
  size_t n = text->n;
  SDW_TRY(sdw_ustr_set(out, t, n));
  if (n == 0) return SDW_OK;
  bool ascii = true;
  for (size_t i = 0; i < n && ascii; i++)
    ascii = t[i] < 0x80;
  if (ascii || !sdw_ftfy_is_bad(t, n)) return SDW_OK;

  bool latin1_possible = false;
  bstr enc = {0}, tmp = {0};
  sdw_status st = SDW_OK;
  for (int k = 0; k < SDW_FTFY_CODEC_COUNT; k++) {
    if (!codec_possible(k, t, n)) continue;
    if (k == SDW_FTFY_LATIN1) latin1_possible = true;
    if ((st = bstr_reserve(&enc, n + 1))) goto done;
    enc.n = 0;
    for (size_t i = 0; i < n; i++)
      enc.p[enc.n++] = (uint8_t)codec_encode_char(k, t[i]);
    if (k != SDW_FTFY_MACROMAN) {
      bool altered = false;
      for (size_t i = 0; i < enc.n && !altered; i++)
        altered = altered_at(enc.p, enc.n, i) != 0;
      if (altered) {
        if ((st = restore_byte_a0(&enc, &tmp))) goto done;
        bstr sw = enc;
        enc = tmp;
        tmp = sw;
      }
    }
    if (sdw_ftfy_codec_is_sloppy(k) && (st = replace_lossy(&enc, &tmp))) goto done;
    bool variants = memchr(enc.p, 0xED, enc.n) || memchr(enc.p, 0xC0, enc.n);
    sdw_ustr dec = {0};
    bool ok = decode_utf8_strict(enc.p, enc.n, variants, &dec, &st);
    if (ok) {
      st = sdw_ustr_set(out, dec.p, dec.n);
      sdw_ustr_free(&dec);
      goto done;
    }
    sdw_ustr_free(&dec);
    if (st) goto done;
  }

  bool detected = false;
  for (size_t i = 0; i < n && !detected; i++)
    detected = detector_at(t, n, i) > 0;
  if (detected) {
    sdw_ustr fixed = {0};
    st = decode_inconsistent_utf8(text, &fixed);
    if (!st && !ustr_equal(fixed.p, fixed.n, t, n)) {
      st = sdw_ustr_set(out, fixed.p, fixed.n);
      sdw_ustr_free(&fixed);
      goto done;
    }
    sdw_ustr_free(&fixed);
    if (st) goto done;
  }

  if (latin1_possible) {
    /* text.encode('latin-1').decode('windows-1252') (strict) */
    bool decodable = true, differs = false;
    for (size_t i = 0; i < n && decodable; i++) {
      uint32_t c = t[i];
      if (c >= 0x80 && c <= 0x9F) {
        for (size_t u = 0; u < sdw_ftfy_strict1252_undefined_count; u++)
          if (sdw_ftfy_strict1252_undefined[u] == c) decodable = false;
        differs = true;
      }
    }
    if (decodable && differs) {
      fix_c1_controls_inplace(out); /* same mapping for the defined bytes */
      goto done;
    }
  }
  fix_c1_controls_inplace(out);
done:
  bstr_free(&enc);
  bstr_free(&tmp);
  return st;
}

static sdw_status fix_encoding_impl(sdw_ustr *text) {
  sdw_ustr next = {0};
  sdw_status st = SDW_OK;
  for (;;) {
    if ((st = fix_encoding_one_step(text, &next))) break;
    if (ustr_equal(next.p, next.n, text->p, text->n)) break;
    ustr_swap(text, &next);
  }
  sdw_ustr_free(&next);
  return st;
}

sdw_status sdw_ftfy_fix_encoding(sdw_ustr *text) { return fix_encoding_impl(text); }

/* Cheap pre-check of fix_encoding: it changes nothing for ASCII text, and
 * nothing unless the text 'is bad'. */
static sdw_status fix_encoding_step(sdw_ustr *text, bool *changed) {
  bool ascii = true;
  for (size_t i = 0; i < text->n && ascii; i++)
    ascii = text->p[i] < 0x80;
  if (ascii || !sdw_ftfy_is_bad(text->p, text->n)) return SDW_OK;
  sdw_ustr orig = {0};
  sdw_status st = sdw_ustr_set(&orig, text->p, text->n);
  if (!st) st = fix_encoding_impl(text);
  if (!st && !ustr_equal(orig.p, orig.n, text->p, text->n)) *changed = true;
  sdw_ustr_free(&orig);
  return st;
}

/* --- ftfy: the table-driven fixes ------------------------------------------------------ */
/* fixes.unescape_html: &#?[0-9A-Za-z]{1,24}; replaced by ftfy's entity table
 * (HTML5 names ending in ';' and upper-case aliases) or, for numeric
 * references, html.unescape when the result has no ';'. */
static sdw_status ftfy_unescape_html(sdw_ustr *text, sdw_ustr *tmp, bool *changed) {
  const uint32_t *t = text->p;
  size_t n = text->n;
  bool amp = false;
  for (size_t i = 0; i < n && !amp; i++)
    amp = t[i] == '&';
  if (!amp) return SDW_OK;
  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, n + 1));
  bool any = false;
  for (size_t i = 0; i < n;) {
    if (t[i] != '&') {
      SDW_TRY(ustr_push(tmp, t[i++]));
      continue;
    }
    size_t j = i + 1;
    bool hash = j < n && t[j] == '#';
    if (hash) j++;
    size_t k = j;
    while (k < n && k - j < 25 && ascii_alnum(t[k]))
      k++;
    size_t cnt = k - j;
    if (cnt < 1 || cnt > 24 || k >= n || t[k] != ';') {
      SDW_TRY(ustr_push(tmp, t[i++]));
      continue;
    }
    size_t end = k + 1; /* the match is t[i..end) */
    const uint32_t *v = hash ? NULL : html5_find(t + i + 1, end - i - 1);
    if (!v && !hash)
      v = entity_find(sdw_uc_ftfy_upper_names, sdw_uc_ftfy_upper_name_off, sdw_uc_ftfy_upper_vals,
                      sdw_uc_ftfy_upper_count, t + i + 1, end - i - 1);
    if (v) {
      SDW_TRY(append_entity_value(tmp, v));
      any = true;
    } else if (hash) {
      size_t mark = tmp->n;
      SDW_TRY(html_unescape_append(t + i, end - i, tmp));
      bool semi = false;
      for (size_t q = mark; q < tmp->n; q++)
        semi |= tmp->p[q] == ';';
      if (semi) {
        tmp->n = mark;
        SDW_TRY(ustr_append(tmp, t + i, end - i));
      } else {
        any = true;
      }
    } else {
      SDW_TRY(ustr_append(tmp, t + i, end - i));
    }
    i = end;
  }
  if (any && !ustr_equal(tmp->p, tmp->n, t, n)) {
    *changed = true;
    ustr_swap(text, tmp);
  }
  return SDW_OK;
}

/* fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
 * fix_surrogates, remove_terminal_escapes, remove_control_chars: each
 * rewrites tmp from text and swaps when something changed. */
static sdw_status ftfy_ligatures(sdw_ustr *text, sdw_ustr *tmp, bool *changed) {
  static const struct {
    uint32_t from;
    uint32_t to[3];
  } lig[] = {
      {0x132, {'I', 'J'}},       {0x133, {'i', 'j'}},       {0x149, {0x2BC, 'n'}},
      {0x1F1, {'D', 'Z'}},       {0x1F2, {'D', 'z'}},       {0x1F3, {'d', 'z'}},
      {0x1C4, {'D', 0x17D}},     {0x1C5, {'D', 0x17E}},     {0x1C6, {'d', 0x17E}},
      {0x1C7, {'L', 'J'}},       {0x1C8, {'L', 'j'}},       {0x1C9, {'l', 'j'}},
      {0x1CA, {'N', 'J'}},       {0x1CB, {'N', 'j'}},       {0x1CC, {'n', 'j'}},
      {0xFB00, {'f', 'f'}},      {0xFB01, {'f', 'i'}},      {0xFB02, {'f', 'l'}},
      {0xFB03, {'f', 'f', 'i'}}, {0xFB04, {'f', 'f', 'l'}}, {0xFB05, {0x17F, 't'}},
      {0xFB06, {'s', 't'}},
  };
  enum { NLIG = sizeof lig / sizeof lig[0] };
  bool any = false;
  for (size_t i = 0; i < text->n && !any; i++) {
    uint32_t c = text->p[i];
    any = (c >= 0x132 && c <= 0x1F3) || (c >= 0xFB00 && c <= 0xFB06);
  }
  if (!any) return SDW_OK;
  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, text->n * 3 + 1));
  bool ch = false;
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    int hit = -1;
    if ((c >= 0x132 && c <= 0x1F3) || (c >= 0xFB00 && c <= 0xFB06))
      for (int k = 0; k < NLIG; k++)
        if (lig[k].from == c) hit = k;
    if (hit < 0) {
      tmp->p[tmp->n++] = c;
    } else {
      for (int k = 0; k < 3 && lig[hit].to[k]; k++)
        tmp->p[tmp->n++] = lig[hit].to[k];
      ch = true;
    }
  }
  if (ch) {
    *changed = true;
    ustr_swap(text, tmp);
  }
  return SDW_OK;
}

static sdw_status ftfy_width(sdw_ustr *text, sdw_ustr *tmp, bool *changed) {
  bool any = false;
  for (size_t i = 0; i < text->n && !any; i++) {
    uint32_t c = text->p[i];
    any = c == 0x3000 || (c >= 0xFF01 && c <= 0xFFEF && sdw_uc_width_map[3 * (c - 0xFF01)]);
  }
  if (!any) return SDW_OK;
  tmp->n = 0;
  SDW_TRY(sdw_ustr_reserve(tmp, text->n * 2 + 1));
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (c == 0x3000) {
      tmp->p[tmp->n++] = ' ';
    } else if (c >= 0xFF01 && c <= 0xFFEF && sdw_uc_width_map[3 * (c - 0xFF01)]) {
      const uint32_t *w = sdw_uc_width_map + 3 * (c - 0xFF01);
      for (uint32_t k = 0; k < w[0]; k++)
        tmp->p[tmp->n++] = w[1 + k];
    } else {
      tmp->p[tmp->n++] = c;
    }
  }
  *changed = true;
  ustr_swap(text, tmp);
  return SDW_OK;
}

static void ftfy_uncurl(sdw_ustr *text, bool *changed) {
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) {
      text->p[i] = '\'';
      *changed = true;
    } else if (c >= 0x201C && c <= 0x201F) {
      text->p[i] = '"';
      *changed = true;
    }
  }
}

static void ftfy_line_breaks(sdw_ustr *text, bool *changed) {
  size_t o = 0;
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (c == '\r') {
      if (i + 1 < text->n && text->p[i + 1] == '\n') i++;
      c = '\n';
      *changed = true;
    } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
      c = '\n';
      *changed = true;
    }
    text->p[o++] = c;
  }
  text->n = o;
}

static void ftfy_surrogates(sdw_ustr *text, bool *changed) {
  size_t o = 0;
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (c >= 0xD800 && c <= 0xDFFF) {
      *changed = true;
      if (c <= 0xDBFF && i + 1 < text->n && text->p[i + 1] >= 0xDC00 && text->p[i + 1] <= 0xDFFF) {
        c = 0x10000 + (c - 0xD800) * 0x400 + (text->p[i + 1] - 0xDC00);
        i++;
      } else {
        c = 0xFFFD;
      }
    }
    text->p[o++] = c;
  }
  text->n = o;
}

static void ftfy_terminal_escapes(sdw_ustr *text, bool *changed) {
  size_t o = 0;
  for (size_t i = 0; i < text->n;) {
    if (text->p[i] == 0x1B && i + 1 < text->n && text->p[i + 1] == '[') {
      size_t k = i + 2;
      while (k < text->n && (text->p[k] == ';' || (sdw_uc_flags(text->p[k]) & SDW_UC_PY_DIGIT)))
        k++;
      if (k < text->n && ascii_letter(text->p[k])) {
        i = k + 1;
        *changed = true;
        continue;
      }
    }
    text->p[o++] = text->p[i++];
  }
  text->n = o;
}

static bool is_removed_control(uint32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
         (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static void ftfy_control_chars(sdw_ustr *text, bool *changed) {
  size_t o = 0;
  for (size_t i = 0; i < text->n; i++) {
    uint32_t c = text->p[i];
    if (is_removed_control(c)) {
      *changed = true;
      continue;
    }
    text->p[o++] = c;
  }
  text->n = o;
}

/* fix_and_explain for one segment: apply every fix until nothing changes. */
static sdw_status ftfy_fix_segment(sdw_ustr *seg, sdw_ustr *tmp, sdw_ustr *orig, bool unescape) {
  for (;;) {
    SDW_TRY(sdw_ustr_set(orig, seg->p, seg->n));
    bool changed = false;
    if (unescape) SDW_TRY(ftfy_unescape_html(seg, tmp, &changed));
    SDW_TRY(fix_encoding_step(seg, &changed));
    changed |= fix_c1_controls_inplace(seg);
    SDW_TRY(ftfy_ligatures(seg, tmp, &changed));
    SDW_TRY(ftfy_width(seg, tmp, &changed));
    ftfy_uncurl(seg, &changed);
    ftfy_line_breaks(seg, &changed);
    ftfy_surrogates(seg, &changed);
    ftfy_terminal_escapes(seg, &changed);
    ftfy_control_chars(seg, &changed);
    bool nfc_changed = false;
    SDW_TRY(sdw_nfc(seg, tmp, &nfc_changed));
    changed |= nfc_changed;
    if (!changed || ustr_equal(seg->p, seg->n, orig->p, orig->n)) return SDW_OK;
  }
}

/* True when ftfy.fix_text cannot change the text: printable ASCII, TAB, LF
 * and FF only, and no '&'. */
static bool ftfy_trivial(const uint32_t *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t c = t[i];
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\f') || c >= 0x7F || c == '&') return false;
  }
  return true;
}

void sdw_text_scratch_free(sdw_text_scratch *s) {
  sdw_ustr_free(&s->tmp);
  sdw_ustr_free(&s->out);
  sdw_ustr_free(&s->seg);
  sdw_ustr_free(&s->orig);
}

sdw_status sdw_ftfy_fix_text(sdw_ustr *text, sdw_text_scratch *s) {
  if (ftfy_trivial(text->p, text->n)) return SDW_OK;
  enum { MAX_DECODE_LENGTH = 1000000 };
  bool unescape = true;
  /* One segment (no line break before the end): fix it where it is. */
  size_t first_break = 0;
  while (first_break < text->n && text->p[first_break] != '\n')
    first_break++;
  if (first_break + 1 >= text->n && text->n <= MAX_DECODE_LENGTH) {
    for (size_t i = 0; i < text->n && unescape; i++)
      if (text->p[i] == '<') unescape = false;
    return ftfy_fix_segment(text, &s->tmp, &s->orig, unescape);
  }
  s->out.n = 0;
  SDW_TRY(sdw_ustr_reserve(&s->out, text->n + 1));
  size_t pos = 0;
  while (pos < text->n) {
    size_t end = pos;
    while (end < text->n && text->p[end] != '\n')
      end++;
    end = end < text->n ? end + 1 : text->n;
    if (end - pos > MAX_DECODE_LENGTH) end = pos + MAX_DECODE_LENGTH;
    for (size_t i = pos; i < end && unescape; i++)
      if (text->p[i] == '<') unescape = false;
    SDW_TRY(sdw_ustr_set(&s->seg, text->p + pos, end - pos));
    SDW_TRY(ftfy_fix_segment(&s->seg, &s->tmp, &s->orig, unescape));
    SDW_TRY(ustr_append(&s->out, s->seg.p, s->seg.n));
    pos = end;
  }
  ustr_swap(text, &s->out);
  return SDW_OK;
}
