/* JSON text exactly as Python's json.dumps(obj, indent=4) writes it, for the
 * files img2dataset's tools expect byte for byte: the per-sample <key>.json
 * members and the <shard>_stats.json files of the download stage.
 *
 * Python's rules reproduced: ensure_ascii (every non-ASCII character as
 * \uXXXX with lowercase hex, astral ones as a surrogate pair; '"', '\\',
 * \n \r \t \b \f by name, other control characters as \u00XX), floats as
 * repr() (the shortest text that reads back to the same double; fixed
 * notation with ".0" when the decimal exponent is in [-4, 16), else
 * "1e+16" / "1.5e-05"), NaN / Infinity / -Infinity, None as null, ", " never
 * (indent mode ends items with "," and a newline), ": " after keys, empty
 * objects as "{}". Bytes that are not valid UTF-8 are written as U+FFFD
 * (Python strings cannot hold them; pyarrow would refuse such a caption).
 *
 * Implemented in pipeline/pyjson.c. */
#ifndef SDW_PIPELINE_PYJSON_H
#define SDW_PIPELINE_PYJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SDW_PYJSON_MAX_DEPTH = 8 };

/* A growing text buffer. data is malloc'd (owned by the builder until taken:
 * free(j.data) when done); a failed allocation sets failed and the rest of
 * the calls do nothing. */
typedef struct sdw_pyjson {
  char *data;
  size_t size, cap;
  int depth;
  int items[SDW_PYJSON_MAX_DEPTH]; /* members written in each open object */
  bool failed;
} sdw_pyjson;

void sdw_pyjson_init(sdw_pyjson *j);
void sdw_pyjson_free(sdw_pyjson *j);
/* Objects (nested up to SDW_PYJSON_MAX_DEPTH). Inside an object, every
 * value is preceded by sdw_pyjson_key. */
void sdw_pyjson_begin_object(sdw_pyjson *j);
void sdw_pyjson_end_object(sdw_pyjson *j);
void sdw_pyjson_key(sdw_pyjson *j, const char *key);
void sdw_pyjson_string(sdw_pyjson *j, const char *s, size_t len);
void sdw_pyjson_cstring(sdw_pyjson *j, const char *s); /* NULL writes null */
void sdw_pyjson_null(sdw_pyjson *j);
void sdw_pyjson_int(sdw_pyjson *j, int64_t v);
void sdw_pyjson_float(sdw_pyjson *j, double v);

/* Python's repr(float) into out (at least 32 bytes). */
void sdw_py_float_repr(double v, char *out);

#ifdef __cplusplus
}
#endif
#endif
