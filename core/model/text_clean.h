/* Text cleaning for the CLIP tokenizer, exactly as Python does it.
 *
 * Everything works on code-point strings (sdw_ustr, UTF-32). The functions
 * reproduce, for arbitrary Unicode input:
 *   - ftfy 6.3.1 fix_text() with its default settings (line-by-line segments,
 *     unescape_html "auto" with the '<' rule, fix_encoding with its mojibake
 *     heuristic, C1 controls, Latin ligatures, character width, quotes, line
 *     breaks, surrogates, terminal escapes, control characters, NFC), ported
 *     from ftfy's source (Apache-2.0) - see sdw_ftfy_fix_text;
 *   - Python's html.unescape();
 *   - str.strip(), str.lower() (full mappings, final sigma), unicodedata NFC;
 *   - openai/CLIP's whitespace_clean (`regex` \s+ -> ' ', then strip).
 * The Unicode data comes from core/model/unicode_tables.c, generated from
 * Python 3.11 / regex 2022.10.31 by tools/gen_unicode_tables.py.
 *
 * Lone UTF-16 surrogates (U+D800..U+DFFF) may appear in an sdw_ustr (a JSON
 * "\ud800" decodes to one, as in Python); ftfy's fix_surrogates turns them
 * into U+FFFD like Python does.
 *
 * Memory: an sdw_ustr owns its buffer (free with sdw_ustr_free). Functions
 * that transform a string in place take one scratch string `tmp` that they
 * may swap with the result, so steady-state use allocates nothing. All are
 * thread-safe (no global state). */
#ifndef SDW_MODEL_TEXT_CLEAN_H
#define SDW_MODEL_TEXT_CLEAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

typedef struct sdw_ustr {
  uint32_t *p;
  size_t n, cap;
} sdw_ustr;

void sdw_ustr_free(sdw_ustr *s);
sdw_status sdw_ustr_reserve(sdw_ustr *s, size_t cap);
sdw_status sdw_ustr_set(sdw_ustr *s, const uint32_t *cps, size_t n);
/* Decodes UTF-8; each maximal invalid subsequence becomes one U+FFFD (what
 * Python's bytes.decode('utf-8', 'replace') does). */
sdw_status sdw_ustr_from_utf8(sdw_ustr *s, const char *utf8, size_t len);
/* Appends the UTF-8 encoding of cps[0..n) to out (a surrogate is written as
 * its three-byte form); returns the number of bytes written. out must hold
 * 4 * n bytes. */
size_t sdw_utf8_encode(const uint32_t *cps, size_t n, uint8_t *out);

/* Scratch strings reused across calls (one per thread). */
typedef struct sdw_text_scratch {
  sdw_ustr tmp, out, seg, orig;
} sdw_text_scratch;
void sdw_text_scratch_free(sdw_text_scratch *s);

/* ftfy.fix_text(text) with the default TextFixerConfig. */
sdw_status sdw_ftfy_fix_text(sdw_ustr *text, sdw_text_scratch *scratch);
/* Python's html.unescape(text). */
sdw_status sdw_html_unescape(sdw_ustr *text, sdw_ustr *tmp);
/* str.strip() (the str.isspace() set). */
void sdw_py_strip(sdw_ustr *text);
/* re.sub(r'\s+', ' ', text).strip() with the `regex` module's \s. */
void sdw_whitespace_clean(sdw_ustr *text);
/* str.lower(). */
sdw_status sdw_py_lower(sdw_ustr *text, sdw_ustr *tmp);
/* unicodedata.normalize('NFC', text); *changed says whether it differs. */
sdw_status sdw_nfc(sdw_ustr *text, sdw_ustr *tmp, bool *changed);

/* Pieces of ftfy exposed for tests. */
bool sdw_ftfy_is_bad(const uint32_t *t, size_t n);
sdw_status sdw_ftfy_fix_encoding(sdw_ustr *text);

#endif
