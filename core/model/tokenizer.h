/* The CLIP byte-level BPE tokenizer (SD 1.x text conditioning).
 *
 * Two behaviours, chosen when the tokenizer is loaded:
 *
 *   SDW_TOKENIZER_HF (the default, what the seed used): Hugging Face's
 *     Python ("slow") CLIPTokenizer, as in
 *     CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14") called
 *     with padding="max_length", max_length=77, truncation=True. The literal
 *     strings "<|startoftext|>" / "<|endoftext|>" are split off the raw text
 *     first (added tokens); every other piece gets ftfy.fix_text, whitespace
 *     collapse and lower() - no html.unescape.
 *   SDW_TOKENIZER_CLIP: openai/CLIP's simple_tokenizer.py: ftfy.fix_text,
 *     html.unescape twice, strip, whitespace collapse, lower(). The goldens in
 *     shared/data/clip/tokenizer_cases.tsv follow this one.
 *
 * The two differ only when an HTML entity survives ftfy (no ';', or a '<'
 * earlier in the text): HF keeps the entity text, CLIP decodes it.
 * Both then pre-tokenize with CLIP's regex, byte-encode and apply the BPE
 * merges of bpe_simple_vocab_16e6.txt.gz. encode() returns
 *   [49406] + content + [49407], cut to 77 keeping 49407 last (at most 75
 *   content tokens), padded with 49407;
 *   mask[i] = 1 for the SOT, the content kept and the closing EOT, else 0
 *   (Hugging Face's attention_mask, what the seed stored and fed to CLIP).
 *   This is "1 up to and including the first EOT" except when the prompt
 *   itself contains the literal "<|endoftext|>": HF counts that one as a
 *   content token and so does this mask.
 *
 * Text is UTF-8 (invalid bytes read as U+FFFD) or code points (UTF-32, lone
 * surrogates allowed: a JSON "\ud800" becomes U+FFFD through ftfy as in
 * Python).
 *
 * Thread safety: a loaded tokenizer is read-only; encode calls may run
 * concurrently from any number of threads (each thread gets its own BPE
 * cache and scratch buffers, owned by the tokenizer and reused by later
 * threads). sdw_tokenizer_free must not race with encodes. */
#ifndef SDW_MODEL_TOKENIZER_H
#define SDW_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

enum {
  SDW_CLIP_CONTEXT = 77, /* tokens per prompt */
  SDW_CLIP_SOT = 49406,  /* <|startoftext|> */
  SDW_CLIP_EOT = 49407,  /* <|endoftext|>, also the padding */
  SDW_CLIP_VOCAB_SIZE = 49408,
};

typedef enum sdw_tokenizer_mode {
  SDW_TOKENIZER_HF = 0,   /* Hugging Face slow CLIPTokenizer (default) */
  SDW_TOKENIZER_CLIP = 1, /* openai/CLIP simple_tokenizer.py */
} sdw_tokenizer_mode;

typedef struct sdw_tokenizer sdw_tokenizer;

/* The vocabulary file name, found under <assets>/clip/. */
#define SDW_CLIP_VOCAB_FILE "bpe_simple_vocab_16e6.txt.gz"

/* Finds the default vocabulary: $SDW_ASSETS/clip/<file> when SDW_ASSETS is
 * set; otherwise next to the executable (<exe dir>/../assets/clip,
 * <exe dir>/../../assets/clip for build/ and build/san/ in a source tree,
 * <exe dir>/../share/sdw/clip for an install). Writes the path into buf.
 * SDW_ERR_NOT_FOUND names the places tried and the fix. */
sdw_status sdw_tokenizer_default_vocab(char *buf, size_t size);

/* Loads bpe_simple_vocab_16e6.txt.gz (gzip) from vocab_path, or from the
 * default place when vocab_path is NULL. *out is owned by the caller. */
sdw_status sdw_tokenizer_load(const char *vocab_path, sdw_tokenizer_mode mode, sdw_tokenizer **out);
void sdw_tokenizer_free(sdw_tokenizer *tok);
sdw_tokenizer_mode sdw_tokenizer_get_mode(const sdw_tokenizer *tok);
/* "hf" or "clip". */
const char *sdw_tokenizer_mode_name(sdw_tokenizer_mode mode);

/* ids[77], mask[77] (mask may be NULL): see the top of this file. */
sdw_status sdw_tokenizer_encode(sdw_tokenizer *tok, const char *utf8, size_t len,
                                int32_t ids[SDW_CLIP_CONTEXT], int32_t mask[SDW_CLIP_CONTEXT]);
sdw_status sdw_tokenizer_encode_cps(sdw_tokenizer *tok, const uint32_t *cps, size_t n,
                                    int32_t ids[SDW_CLIP_CONTEXT], int32_t mask[SDW_CLIP_CONTEXT]);

/* The content tokens alone (no SOT/EOT, no truncation): writes the first
 * min(count, cap) ids to ids (may be NULL when cap is 0) and the total count
 * to *count - for counting how long a prompt is. */
sdw_status sdw_tokenizer_encode_raw(sdw_tokenizer *tok, const char *utf8, size_t len, int32_t *ids,
                                    size_t cap, size_t *count);

/* The vocabulary string of a token (byte-level symbols as UTF-8, "</w>"
 * marking a word end), or NULL for an id out of range. */
const char *sdw_tokenizer_token_text(const sdw_tokenizer *tok, int32_t id);

/* The BPE merge step alone, for tests: byte-level BPE of one pre-token
 * (its UTF-8 bytes). use_heap selects the O(n log n) algorithm used for long
 * pre-tokens instead of openai's loop. Returns the number of ids written
 * (ids must hold len entries), or -1 when out of memory. */
long sdw_tokenizer_bpe_word(const sdw_tokenizer *tok, const uint8_t *bytes, size_t len,
                            int use_heap, int32_t *ids);

#endif
