#include "core/base/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/fsutil.h"

struct sdw_json_doc {
  cJSON *root;
  char *name;
};

bool sdw_utf8_valid(const void *s, size_t n) {
  const unsigned char *p = s;
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0; /* overlong */
      if (c == 0xED) hi = 0x9F; /* UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90; /* overlong */
      if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
      return false; /* continuation byte, overlong C0/C1, or F5..FF */
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; k++)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

/* --- parsing --------------------------------------------------------------- */

static int compare_keys(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Finds a key repeated inside one object anywhere in the tree (depth is
 * bounded by cJSON's nesting limit). Returns the repeated key or NULL; *oom
 * is set when the scratch array cannot be allocated. */
static const char *find_duplicate_key(const cJSON *item, bool *oom) {
  if (cJSON_IsObject(item)) {
    size_t n = 0;
    for (const cJSON *c = item->child; c; c = c->next)
      n++;
    if (n > 1) {
      const char **keys = malloc(n * sizeof *keys);
      if (!keys) {
        *oom = true;
        return NULL;
      }
      size_t k = 0;
      for (const cJSON *c = item->child; c; c = c->next)
        keys[k++] = c->string;
      qsort(keys, n, sizeof *keys, compare_keys);
      const char *dup = NULL;
      for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
      free(keys);
      if (dup) return dup;
    }
  }
  if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
    for (const cJSON *c = item->child; c; c = c->next) {
      const char *dup = find_duplicate_key(c, oom);
      if (dup || *oom) return dup;
    }
  }
  return NULL;
}

sdw_status sdw_json_parse(const char *text, size_t size, const char *name, sdw_json_doc **out) {
  *out = NULL;
  if (memchr(text, '\0', size))
    return sdw_fail(SDW_ERR_FORMAT, "%s: not a JSON text (it contains a NUL byte at offset %zu)",
                    name, (size_t)((const char *)memchr(text, '\0', size) - text));
  if (!sdw_utf8_valid(text, size)) return sdw_fail(SDW_ERR_FORMAT, "%s: not valid UTF-8", name);
  /* cJSON's own trailing check wants a NUL inside the length; check the
   * rest by hand instead: only whitespace may follow the value. */
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, 0);
  if (root && end) {
    const char *p = end;
    while (p < text + size && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
      p++;
    if (p != text + size) {
      cJSON_Delete(root);
      root = NULL;
      end = p;
    }
  }
  if (!root) {
    if (!end || end < text || end > text + size) end = text + size;
    size_t line = 1, col = 1;
    for (const char *p = text; p < end; p++) {
      if (*p == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
    if (size == 0) return sdw_fail(SDW_ERR_FORMAT, "%s: empty file, expected JSON", name);
    return sdw_fail(SDW_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu", name, line, col);
  }
  bool oom = false;
  const char *dup = find_duplicate_key(root, &oom);
  if (dup || oom) {
    sdw_status st =
        oom ? sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", name)
            : sdw_fail(SDW_ERR_FORMAT, "%s: key \"%s\" appears twice in one object", name, dup);
    cJSON_Delete(root);
    return st;
  }
  sdw_json_doc *doc = calloc(1, sizeof *doc);
  char *copy = strdup(name);
  if (!doc || !copy) {
    free(doc);
    free(copy);
    cJSON_Delete(root);
    return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
  }
  doc->root = root;
  doc->name = copy;
  *out = doc;
  return SDW_OK;
}

sdw_status sdw_json_load_file(const char *path, sdw_json_doc **out) {
  *out = NULL;
  void *data;
  size_t size;
  SDW_TRY(sdw_read_file(path, &data, &size));
  const char *slash = strrchr(path, '/');
  const char *name = slash && slash[1] ? slash + 1 : path;
  sdw_status st = sdw_json_parse(data, size, name, out);
  free(data);
  return st;
}

void sdw_json_free(sdw_json_doc *doc) {
  if (!doc) return;
  cJSON_Delete(doc->root);
  free(doc->name);
  free(doc);
}

const cJSON *sdw_json_doc_value(const sdw_json_doc *doc) { return doc->root; }
const char *sdw_json_doc_name(const sdw_json_doc *doc) { return doc->name; }

sdw_status sdw_json_root(const sdw_json_doc *doc, sdw_json_obj *out) {
  memset(out, 0, sizeof *out);
  out->doc = doc->name;
  if (!cJSON_IsObject(doc->root))
    return sdw_fail(SDW_ERR_FORMAT, "%s: expected a JSON object at the top level", doc->name);
  out->item = doc->root;
  return SDW_OK;
}

/* --- getters --------------------------------------------------------------- */

static const char *type_name(const cJSON *v) {
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsBool(v)) return v->type & cJSON_True ? "true" : "false";
  if (cJSON_IsNull(v)) return "null";
  if (cJSON_IsArray(v)) return "an array";
  if (cJSON_IsObject(v)) return "an object";
  return "an invalid value";
}

/* "key" at the root, "parent.key" below it. */
static void key_path(const sdw_json_obj *obj, const char *key, char *buf, size_t size) {
  /* Long paths are cut; checking the result keeps -Wformat-truncation quiet. */
  int n =
      obj->path[0] ? snprintf(buf, size, "%s.%s", obj->path, key) : snprintf(buf, size, "%s", key);
  if (n < 0 && size > 0) buf[0] = '\0';
}

static sdw_status type_error(const sdw_json_obj *obj, const char *key, const char *want,
                             const cJSON *got) {
  char path[256];
  key_path(obj, key, path, sizeof path);
  return sdw_fail(SDW_ERR_FORMAT, "%s: key %s must be %s (found %s)", obj->doc, path, want,
                  type_name(got));
}

static sdw_status missing(const sdw_json_obj *obj, const char *key) {
  char path[256];
  key_path(obj, key, path, sizeof path);
  return sdw_fail(SDW_ERR_NOT_FOUND, "%s: missing key %s", obj->doc, path);
}

const cJSON *sdw_json_find(const sdw_json_obj *obj, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(obj->item, key);
}

bool sdw_json_has(const sdw_json_obj *obj, const char *key) {
  const cJSON *v = sdw_json_find(obj, key);
  return v && !cJSON_IsNull(v);
}

sdw_status sdw_json_get_object(const sdw_json_obj *obj, const char *key, sdw_json_obj *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!cJSON_IsObject(v)) return type_error(obj, key, "an object", v);
  memset(out, 0, sizeof *out);
  out->item = v;
  out->doc = obj->doc;
  key_path(obj, key, out->path, sizeof out->path);
  return SDW_OK;
}

/* Integral and exact in a double: |x| <= 2^53. */
static bool as_int(const cJSON *v, int64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double x = v->valuedouble;
  if (!isfinite(x) || x != floor(x) || fabs(x) > 9007199254740992.0) return false;
  *out = (int64_t)x;
  return true;
}

static sdw_status int_error(const sdw_json_obj *obj, const char *key, const cJSON *v,
                            const char *what) {
  char path[256];
  key_path(obj, key, path, sizeof path);
  if (cJSON_IsNumber(v))
    return sdw_fail(SDW_ERR_FORMAT, "%s: key %s must be an integer (found %.17g)%s", obj->doc, path,
                    v->valuedouble, what);
  return sdw_fail(SDW_ERR_FORMAT, "%s: key %s must be an integer (found %s)%s", obj->doc, path,
                  type_name(v), what);
}

sdw_status sdw_json_get_int(const sdw_json_obj *obj, const char *key, int64_t *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!as_int(v, out)) return int_error(obj, key, v, "");
  return SDW_OK;
}

sdw_status sdw_json_get_int_or(const sdw_json_obj *obj, const char *key, int64_t def,
                               int64_t *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return SDW_OK;
  }
  if (!as_int(v, out)) return int_error(obj, key, v, "");
  return SDW_OK;
}

sdw_status sdw_json_get_double(const sdw_json_obj *obj, const char *key, double *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!cJSON_IsNumber(v)) return type_error(obj, key, "a number", v);
  *out = v->valuedouble;
  return SDW_OK;
}

sdw_status sdw_json_get_double_or(const sdw_json_obj *obj, const char *key, double def,
                                  double *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return SDW_OK;
  }
  if (!cJSON_IsNumber(v)) return type_error(obj, key, "a number", v);
  *out = v->valuedouble;
  return SDW_OK;
}

sdw_status sdw_json_get_bool(const sdw_json_obj *obj, const char *key, bool *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!cJSON_IsBool(v)) return type_error(obj, key, "true or false", v);
  *out = cJSON_IsTrue(v);
  return SDW_OK;
}

sdw_status sdw_json_get_bool_or(const sdw_json_obj *obj, const char *key, bool def, bool *out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return SDW_OK;
  }
  if (!cJSON_IsBool(v)) return type_error(obj, key, "true or false", v);
  *out = cJSON_IsTrue(v);
  return SDW_OK;
}

sdw_status sdw_json_get_string(const sdw_json_obj *obj, const char *key, const char **out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!cJSON_IsString(v)) return type_error(obj, key, "a string", v);
  *out = v->valuestring;
  return SDW_OK;
}

sdw_status sdw_json_get_string_or(const sdw_json_obj *obj, const char *key, const char *def,
                                  const char **out) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return SDW_OK;
  }
  if (!cJSON_IsString(v)) return type_error(obj, key, "a string", v);
  *out = v->valuestring;
  return SDW_OK;
}

/* Common part of the array getters: the array and its length checked
 * against cap. */
static sdw_status get_array(const sdw_json_obj *obj, const char *key, const char *what, size_t cap,
                            const cJSON **arr, size_t *count) {
  const cJSON *v = sdw_json_find(obj, key);
  if (!v) return missing(obj, key);
  if (!cJSON_IsArray(v)) return type_error(obj, key, what, v);
  size_t n = 0;
  for (const cJSON *c = v->child; c; c = c->next)
    n++;
  if (n > cap) {
    char path[256];
    key_path(obj, key, path, sizeof path);
    return sdw_fail(SDW_ERR_FORMAT, "%s: key %s has %zu elements, at most %zu are supported",
                    obj->doc, path, n, cap);
  }
  *arr = v;
  *count = n;
  return SDW_OK;
}

static sdw_status element_error(const sdw_json_obj *obj, const char *key, size_t i,
                                const char *want, const cJSON *got) {
  char path[256];
  key_path(obj, key, path, sizeof path);
  return sdw_fail(SDW_ERR_FORMAT, "%s: key %s[%zu] must be %s (found %s)", obj->doc, path, i, want,
                  type_name(got));
}

sdw_status sdw_json_get_int_array(const sdw_json_obj *obj, const char *key, int64_t *out,
                                  size_t cap, size_t *count) {
  const cJSON *arr;
  size_t n;
  *count = 0;
  SDW_TRY(get_array(obj, key, "an array of integers", cap, &arr, &n));
  size_t i = 0;
  for (const cJSON *c = arr->child; c; c = c->next, i++)
    if (!as_int(c, &out[i])) return element_error(obj, key, i, "an integer", c);
  *count = n;
  return SDW_OK;
}

sdw_status sdw_json_get_double_array(const sdw_json_obj *obj, const char *key, double *out,
                                     size_t cap, size_t *count) {
  const cJSON *arr;
  size_t n;
  *count = 0;
  SDW_TRY(get_array(obj, key, "an array of numbers", cap, &arr, &n));
  size_t i = 0;
  for (const cJSON *c = arr->child; c; c = c->next, i++) {
    if (!cJSON_IsNumber(c)) return element_error(obj, key, i, "a number", c);
    out[i] = c->valuedouble;
  }
  *count = n;
  return SDW_OK;
}

sdw_status sdw_json_get_string_array(const sdw_json_obj *obj, const char *key, const char **out,
                                     size_t cap, size_t *count) {
  const cJSON *arr;
  size_t n;
  *count = 0;
  SDW_TRY(get_array(obj, key, "an array of strings", cap, &arr, &n));
  size_t i = 0;
  for (const cJSON *c = arr->child; c; c = c->next, i++) {
    if (!cJSON_IsString(c)) return element_error(obj, key, i, "a string", c);
    out[i] = c->valuestring;
  }
  *count = n;
  return SDW_OK;
}
