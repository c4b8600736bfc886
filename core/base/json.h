/* JSON helpers over cJSON for configuration files (diffusers / transformers
 * config.json, scheduler configs, our own run files).
 *
 * A document is parsed once (sdw_json_load_file / sdw_json_parse) and read
 * through sdw_json_obj handles, which remember the document name and the
 * path of the object so that every error names both:
 *
 *   sdw_json_doc *doc;
 *   sdw_json_obj root;
 *   int64_t hidden;
 *   SDW_TRY(sdw_json_load_file("config.json", &doc));
 *   sdw_json_root(doc, &root);        // (check the status)
 *   sdw_json_get_int(&root, "hidden_size", &hidden);
 *     -> SDW_ERR_FORMAT "config.json: key hidden_size must be an integer (found a string)"
 *
 * Parsing is stricter than cJSON alone: the text must be valid UTF-8 without
 * NUL bytes, nothing but whitespace may follow the value, and an object may
 * not repeat a key (Python keeps the last, cJSON the first: refusing is the
 * only answer that cannot silently disagree with the file's author).
 *
 * Getters: the plain form requires the key (SDW_ERR_NOT_FOUND "missing key
 * ...") and the type (SDW_ERR_FORMAT); the _or form returns the default when
 * the key is absent or null (Python's None) and SDW_ERR_FORMAT for a present
 * value of the wrong type. Strings returned point into the document and stay
 * valid until sdw_json_free. Integers must be integral numbers of magnitude
 * at most 2^53 (exact in the double cJSON stores); 3.0 is accepted as 3.
 */
#ifndef SDW_BASE_JSON_H
#define SDW_BASE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_json_doc sdw_json_doc;

/* A view of one JSON object inside a document (no ownership; valid while the
 * document lives). */
typedef struct sdw_json_obj {
  const cJSON *item; /* a cJSON object */
  const char *doc;   /* the document's name, for messages */
  char path[192];    /* "" at the root, else "unet.block" style, for messages */
} sdw_json_obj;

/* Reads and parses path; the document's name is path's last component.
 * *out is owned by the caller (sdw_json_free). SDW_ERR_NOT_FOUND / IO from
 * reading, SDW_ERR_FORMAT "<name>: invalid JSON at line L, column C" ... */
sdw_status sdw_json_load_file(const char *path, sdw_json_doc **out);
/* Parses size bytes of text (need not be NUL-terminated); name is used in
 * messages (copied). */
sdw_status sdw_json_parse(const char *text, size_t size, const char *name, sdw_json_doc **out);
void sdw_json_free(sdw_json_doc *doc);

/* The whole parsed value (any type) and the name used in messages. */
const cJSON *sdw_json_doc_value(const sdw_json_doc *doc);
const char *sdw_json_doc_name(const sdw_json_doc *doc);

/* The top-level object; SDW_ERR_FORMAT when the document is not an object. */
sdw_status sdw_json_root(const sdw_json_doc *doc, sdw_json_obj *out);

/* The raw member (NULL when absent); present-and-not-null test. */
const cJSON *sdw_json_find(const sdw_json_obj *obj, const char *key);
bool sdw_json_has(const sdw_json_obj *obj, const char *key);

sdw_status sdw_json_get_object(const sdw_json_obj *obj, const char *key, sdw_json_obj *out);

sdw_status sdw_json_get_int(const sdw_json_obj *obj, const char *key, int64_t *out);
sdw_status sdw_json_get_int_or(const sdw_json_obj *obj, const char *key, int64_t def, int64_t *out);
sdw_status sdw_json_get_double(const sdw_json_obj *obj, const char *key, double *out);
sdw_status sdw_json_get_double_or(const sdw_json_obj *obj, const char *key, double def,
                                  double *out);
sdw_status sdw_json_get_bool(const sdw_json_obj *obj, const char *key, bool *out);
sdw_status sdw_json_get_bool_or(const sdw_json_obj *obj, const char *key, bool def, bool *out);
sdw_status sdw_json_get_string(const sdw_json_obj *obj, const char *key, const char **out);
sdw_status sdw_json_get_string_or(const sdw_json_obj *obj, const char *key, const char *def,
                                  const char **out);

/* Arrays into caller storage out[cap]; *count receives the length.
 * SDW_ERR_FORMAT when the value is not an array, an element has the wrong
 * type, or the array has more than cap elements. */
sdw_status sdw_json_get_int_array(const sdw_json_obj *obj, const char *key, int64_t *out,
                                  size_t cap, size_t *count);
sdw_status sdw_json_get_double_array(const sdw_json_obj *obj, const char *key, double *out,
                                     size_t cap, size_t *count);
sdw_status sdw_json_get_string_array(const sdw_json_obj *obj, const char *key, const char **out,
                                     size_t cap, size_t *count);

/* True when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). */
bool sdw_utf8_valid(const void *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
