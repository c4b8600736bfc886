/* `sdw pipeline emoji`: the demo's data set, from files Debian ships.
 *
 * Noto Color Emoji (fonts-noto-color-emoji) holds every emoji as a PNG in
 * its CBDT table; unicode-data's emoji-test.txt names them (fully-qualified
 * lines, with their group and subgroup); unicode-cldr-core's annotations
 * give English keywords. For each fully-qualified emoji the font can draw,
 * the stage
 *   - maps the code points to glyphs (cmap) and ligates sequences (GSUB);
 *     a variation selector U+FE0F the font has no glyph for is dropped;
 *   - decodes the glyph's PNG, mattes it on white (pipeline/image.h, as
 *     img2dataset does), pads it to a square on white (136x128 -> 136x136,
 *     so no later centre crop cuts the emoji) and writes
 *     OUT/images/<code points>.png;
 *   - writes OUT/metadata.parquet in LAION's layout: URL (URL base + the
 *     image's path under OUT), TEXT (the caption), WIDTH, HEIGHT,
 *     similarity, aesthetic_score, pwatermark, punsafe, plus key, name,
 *     group, subgroup, codepoints.
 * Caption: "<name>, <keywords...>, <group>" lower case, e.g. "red apple,
 * apple, fruit, red, food & drink" (the name first: a prompt that is just
 * the name shares the caption's first tokens under CLIP's causal mask).
 * With --captions names the caption is the name alone ("red apple").
 * The quality columns are constants (similarity 1: the caption is the
 * image's own name; aesthetic 5, watermark 0, unsafe 0) so `filter` runs
 * on the set with thresholds the demo config relaxes.
 * Rerunning rewrites the outputs (atomically) from the inputs: it is quick. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/fsutil.h"
#include "core/base/parse.h"
#include "core/base/png_image.h"
#include "pipeline/image.h"
#include "pipeline/manifest.h"
#include "pipeline/parquet_writer.h"
#include "pipeline/sfnt.h"
#include "pipeline/stages.h"

#define DEFAULT_FONT "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
#define DEFAULT_TEST "/usr/share/unicode/emoji/emoji-test.txt"
#define DEFAULT_CLDR "/usr/share/unicode/cldr/common/annotations/en.xml"

enum { MAX_CPS = 16 };

typedef struct emoji_options {
  const char *data, *output, *font, *test, *cldr, *url_base;
  bool single;      /* single code point emoji only (plus U+FE0F) */
  bool names_only;  /* --captions names: the caption is the name alone */
  const char *only; /* --only: comma list of groups / subgroups to keep (NULL: all) */
  int64_t limit;    /* at most this many (0: all) */
} emoji_options;

static void usage(FILE *f) {
  fprintf(f, "usage: sdw pipeline emoji --data DIR [options]\n"
             "\n"
             "Extracts the colour emoji of Noto Color Emoji as PNGs on white, captioned by\n"
             "their Unicode names, group and CLDR keywords, and writes LAION-style metadata\n"
             "(OUT/metadata.parquet: URL, TEXT, WIDTH, HEIGHT, similarity, aesthetic_score,\n"
             "pwatermark, punsafe, key, name, group, subgroup, codepoints) that the filter and\n"
             "download stages read.\n"
             "\n"
             "  --data DIR          data directory (manifest in DIR/manifests)\n"
             "  --output DIR        (default DIR/emoji): images/ and metadata.parquet\n"
             "  --font PATH         (default " DEFAULT_FONT ")\n"
             "  --emoji-test PATH   (default " DEFAULT_TEST ")\n"
             "  --annotations PATH  CLDR annotations (default " DEFAULT_CLDR ")\n"
             "  --url-base URL      prefix of the URL column, followed by images/NAME.png\n"
             "                      (default file://OUT/)\n"
             "  --single            single code point emoji only (U+FE0F allowed)\n"
             "  --limit N           at most N emoji, in emoji-test.txt order (default: all)\n"
             "  --captions full|names  the caption: name, keywords and group (default), or\n"
             "                      the name alone (\"red apple\": what a prompt says)\n"
             "  --only LIST         only emoji whose group or subgroup is in the comma list\n"
             "                      (case-insensitive, e.g. \"Food & Drink,transport-air\")\n"
             "  --help              this text\n");
}

static int parse_options(int argc, char **argv, emoji_options *o) {
  memset(o, 0, sizeof *o);
  o->font = DEFAULT_FONT;
  o->test = DEFAULT_TEST;
  o->cldr = DEFAULT_CLDR;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 1;
    if (strcmp(a, "--single") == 0) {
      o->single = true;
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "sdw: pipeline emoji: %s needs a value (or is unknown; see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    bool ok = true;
    if (strcmp(a, "--data") == 0)
      o->data = v;
    else if (strcmp(a, "--output") == 0)
      o->output = v;
    else if (strcmp(a, "--font") == 0)
      o->font = v;
    else if (strcmp(a, "--emoji-test") == 0)
      o->test = v;
    else if (strcmp(a, "--annotations") == 0)
      o->cldr = v;
    else if (strcmp(a, "--url-base") == 0)
      o->url_base = v;
    else if (strcmp(a, "--limit") == 0)
      ok = sdw_parse_i64(v, 0, INT64_MAX, &o->limit);
    else if (strcmp(a, "--only") == 0)
      o->only = v;
    else if (strcmp(a, "--captions") == 0) {
      ok = strcmp(v, "full") == 0 || strcmp(v, "names") == 0;
      o->names_only = strcmp(v, "names") == 0;
    } else {
      fprintf(stderr, "sdw: pipeline emoji: unknown option %s (see --help)\n", a);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "sdw: pipeline emoji: bad value for %s: %s\n", a, v);
      return 2;
    }
  }
  if (!o->data) {
    fprintf(stderr, "sdw: pipeline emoji: --data is required (see --help)\n");
    return 2;
  }
  return 0;
}

/* --- text helpers ------------------------------------------------------------------------- */

static size_t utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* XML text with the five predefined entities and numeric references
 * decoded, into out (NUL-terminated, truncated to size). */
static void xml_unescape(const char *s, size_t n, char *out, size_t size) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < size;) {
    if (s[i] != '&') {
      out[o++] = s[i++];
      continue;
    }
    static const struct {
      const char *name;
      char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (size_t e = 0; e < 5 && !done; e++) {
      size_t len = strlen(ents[e].name);
      if (n - i >= len && memcmp(s + i, ents[e].name, len) == 0) {
        out[o++] = ents[e].c;
        i += len;
        done = true;
      }
    }
    if (!done && n - i > 3 && s[i + 1] == '#') {
      char *end = NULL;
      char num[16];
      size_t k = 0;
      for (size_t j = i + 2; j < n && k + 1 < sizeof num && s[j] != ';'; j++)
        num[k++] = s[j];
      num[k] = '\0';
      unsigned long cp = num[0] == 'x' ? strtoul(num + 1, &end, 16) : strtoul(num, &end, 10);
      if (end && *end == '\0' && k > 0 && cp > 0 && cp < 0x110000 && i + 3 + k <= n) {
        o += utf8_put((uint32_t)cp, out + o);
        i += 3 + k;
        done = true;
      }
    }
    if (!done) out[o++] = s[i++];
  }
  out[o] = '\0';
}

/* --- CLDR keywords ----------------------------------------------------------------------- */

typedef struct keyword_entry {
  char *cp;       /* the emoji's UTF-8 without U+FE0F */
  char *keywords; /* "apple | fruit | red" */
} keyword_entry;

typedef struct keyword_table {
  keyword_entry *e;
  size_t n, cap;
} keyword_table;

static void strip_fe0f(const char *in, char *out, size_t size) {
  size_t o = 0;
  for (size_t i = 0; in[i] && o + 1 < size;) {
    if ((unsigned char)in[i] == 0xEF && (unsigned char)in[i + 1] == 0xB8 &&
        (unsigned char)in[i + 2] == 0x8F) {
      i += 3;
      continue;
    }
    out[o++] = in[i++];
  }
  out[o] = '\0';
}

/* Reads lines <annotation cp="X">a | b | c</annotation> (not type="tts"). */
static sdw_status keywords_load(const char *path, keyword_table *t) {
  void *data = NULL;
  size_t size = 0;
  SDW_TRY(sdw_read_file(path, &data, &size));
  const char *s = data, *end = s + size;
  static const char open[] = "<annotation cp=\"";
  sdw_status st = SDW_OK;
  while (st == SDW_OK) {
    const char *p = memmem(s, (size_t)(end - s), open, sizeof open - 1);
    if (!p) break;
    p += sizeof open - 1;
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (!q || q + 1 >= end) break;
    s = q + 1;
    if (*s != '>') continue; /* type="tts" or another attribute */
    const char *text = s + 1;
    const char *close = memmem(text, (size_t)(end - text), "</annotation>", 13);
    if (!close) break;
    s = close;
    char cp[128], cp_plain[128], kw[2048];
    xml_unescape(p, (size_t)(q - p), cp, sizeof cp);
    strip_fe0f(cp, cp_plain, sizeof cp_plain);
    xml_unescape(text, (size_t)(close - text), kw, sizeof kw);
    if (t->n == t->cap) {
      size_t cap = t->cap ? 2 * t->cap : 1024;
      keyword_entry *e = realloc(t->e, cap * sizeof *e);
      if (!e) {
        st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
        break;
      }
      t->e = e;
      t->cap = cap;
    }
    t->e[t->n].cp = strdup(cp_plain);
    t->e[t->n].keywords = strdup(kw);
    if (!t->e[t->n].cp || !t->e[t->n].keywords) st = sdw_fail(SDW_ERR_OUT_OF_MEMORY, "oom");
    t->n++;
  }
  free(data);
  return st;
}

static void keywords_free(keyword_table *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->e[i].cp);
    free(t->e[i].keywords);
  }
  free(t->e);
}

static const char *keywords_find(const keyword_table *t, const char *emoji) {
  char plain[128];
  strip_fe0f(emoji, plain, sizeof plain);
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->e[i].cp, plain) == 0) return t->e[i].keywords;
  return NULL;
}

static void lower_ascii(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

static void append(char *buf, size_t size, const char *text) {
  size_t n = strlen(buf);
  snprintf(buf + n, size - n, "%s%s", n ? ", " : "", text);
}

/* "<name>, <keywords other than the name>, <group>" */
static void make_caption(const char *name, const char *keywords, const char *group, char *out,
                         size_t size) {
  out[0] = '\0';
  append(out, size, name);
  if (keywords) {
    char kw[2048];
    snprintf(kw, sizeof kw, "%s", keywords);
    char *save = NULL;
    for (char *tok = strtok_r(kw, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
      while (*tok == ' ')
        tok++;
      size_t n = strlen(tok);
      while (n && tok[n - 1] == ' ')
        tok[--n] = '\0';
      if (n && strcmp(tok, name) != 0) append(out, size, tok);
    }
  }
  if (group && *group) append(out, size, group);
  lower_ascii(out);
}

/* --- one emoji ---------------------------------------------------------------------------- */

typedef struct emoji_run {
  const emoji_options *o;
  sdw_sfnt *font;
  keyword_table kw;
  sdw_parquet_writer *w;
  sdw_manifest *m;
  char out_dir[4096], url_base[8192];
  int64_t written;
} emoji_run;

/* The font's image for cps[n] on white, padded square; SDW_ERR_NOT_FOUND
 * (reason set) when the font cannot draw it. */
static sdw_status render(emoji_run *r, const uint32_t *cps, int n, sdw_image *out,
                         const char **reason) {
  uint32_t glyphs[MAX_CPS];
  int count = 0;
  for (int i = 0; i < n; i++) {
    uint32_t g = sdw_sfnt_glyph(r->font, cps[i]);
    if (g == 0 && cps[i] == 0xFE0F) continue;
    if (g == 0) {
      *reason = "no_glyph";
      return SDW_ERR_NOT_FOUND;
    }
    glyphs[count++] = g;
  }
  SDW_TRY(sdw_sfnt_ligate(r->font, glyphs, &count));
  if (count != 1) {
    *reason = "no_ligature";
    return SDW_ERR_NOT_FOUND;
  }
  const uint8_t *png = NULL;
  size_t png_size = 0;
  sdw_status st = sdw_sfnt_color_png(r->font, glyphs[0], &png, &png_size, NULL);
  if (st == SDW_ERR_NOT_FOUND) {
    *reason = "no_bitmap";
    return st;
  }
  SDW_TRY(st);
  sdw_image img = {0};
  sdw_image_limits lim = {.max_pixels = 4096 * 4096, .max_side = 4096};
  st = sdw_image_decode(png, png_size, &lim, &img, NULL);
  if (st != SDW_OK) {
    *reason = "bad_png";
    return SDW_ERR_NOT_FOUND;
  }
  const int side = img.width > img.height ? img.width : img.height;
  st = sdw_image_alloc(side, side, out);
  if (st == SDW_OK) {
    memset(out->pixels, 255, (size_t)side * side * 3);
    const int x0 = (side - img.width) / 2, y0 = (side - img.height) / 2;
    for (int y = 0; y < img.height; y++)
      memcpy(out->pixels + ((size_t)(y + y0) * side + x0) * 3,
             img.pixels + (size_t)y * img.width * 3, (size_t)img.width * 3);
  }
  sdw_image_free(&img);
  return st;
}

static sdw_status one_emoji(emoji_run *r, const uint32_t *cps, int n, const char *name,
                            const char *group, const char *subgroup) {
  sdw_manifest_count_in(r->m, 1);
  char key[MAX_CPS * 9 + 1] = "", points[MAX_CPS * 9 + 1] = "", emoji[MAX_CPS * 4 + 1];
  size_t e = 0;
  for (int i = 0; i < n; i++) {
    size_t k = strlen(key), p = strlen(points);
    snprintf(key + k, sizeof key - k, "%s%04x", i ? "-" : "", cps[i]);
    snprintf(points + p, sizeof points - p, "%sU+%04X", i ? " " : "", cps[i]);
    e += utf8_put(cps[i], emoji + e);
  }
  emoji[e] = '\0';
  sdw_image img = {0};
  const char *reason = NULL;
  sdw_status st = render(r, cps, n, &img, &reason);
  if (st == SDW_ERR_NOT_FOUND && reason) {
    sdw_manifest_count_failed(r->m, reason);
    return SDW_OK;
  }
  SDW_TRY(st);
  char path[8192], url[8400], caption[4096];
  snprintf(path, sizeof path, "%s/images/%s.png", r->out_dir, key);
  st = sdw_png_write(path, img.pixels, img.width, img.height, 3, NULL, 0);
  if (st == SDW_OK) {
    snprintf(url, sizeof url, "%simages/%s.png", r->url_base, key);
    if (r->o->names_only)
      snprintf(caption, sizeof caption, "%s", name);
    else
      make_caption(name, keywords_find(&r->kw, emoji), group, caption, sizeof caption);
    sdw_parquet_writer_set_str(r->w, 0, url);
    sdw_parquet_writer_set_str(r->w, 1, caption);
    sdw_parquet_writer_set_i64(r->w, 2, img.width);
    sdw_parquet_writer_set_i64(r->w, 3, img.height);
    sdw_parquet_writer_set_f64(r->w, 4, 1.0);
    sdw_parquet_writer_set_f64(r->w, 5, 5.0);
    sdw_parquet_writer_set_f64(r->w, 6, 0.0);
    sdw_parquet_writer_set_f64(r->w, 7, 0.0);
    sdw_parquet_writer_set_str(r->w, 8, key);
    sdw_parquet_writer_set_str(r->w, 9, name);
    sdw_parquet_writer_set_str(r->w, 10, group);
    sdw_parquet_writer_set_str(r->w, 11, subgroup);
    sdw_parquet_writer_set_str(r->w, 12, points);
    st = sdw_parquet_writer_end_row(r->w);
  }
  sdw_image_free(&img);
  if (st == SDW_OK) {
    sdw_manifest_count_out(r->m, 1);
    r->written++;
    sdw_manifest_flush(r->m, false);
  }
  return st;
}

/* Whether name is one of the comma-separated entries of list (spaces around
 * entries ignored, ASCII case folded). */
static bool in_list(const char *list, const char *name) {
  const size_t nl = strlen(name);
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == ',')
      p++;
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && p[len - 1] == ' ')
      len--;
    if (len && len == nl && strncasecmp(p, name, len) == 0) return true;
    if (!end) break;
    p = end + 1;
  }
  return false;
}

/* emoji-test.txt: "# group: X", "# subgroup: Y", then lines
 * "1F34E ; fully-qualified # 🍎 E0.6 red apple". */
static sdw_status walk_test_file(emoji_run *r) {
  FILE *f = fopen(r->o->test, "r");
  if (!f)
    return sdw_fail(SDW_ERR_NOT_FOUND,
                    "cannot read %s: %s — install unicode-data (make deps) or give --emoji-test",
                    r->o->test, strerror(errno));
  char line[2048], group[2048] = "", subgroup[2048] = "";
  sdw_status st = SDW_OK;
  while (st == SDW_OK && fgets(line, sizeof line, f)) {
    if (r->o->limit && r->written >= r->o->limit) break;
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "# group: ", 9) == 0) {
      snprintf(group, sizeof group, "%s", line + 9);
      continue;
    }
    if (strncmp(line, "# subgroup: ", 12) == 0) {
      snprintf(subgroup, sizeof subgroup, "%s", line + 12);
      continue;
    }
    if (line[0] == '#' || line[0] == '\0') continue;
    char *semi = strchr(line, ';'), *hash = strchr(line, '#');
    if (!semi || !hash || hash < semi) continue;
    char status[64];
    if (sscanf(semi + 1, " %63s", status) != 1 || strcmp(status, "fully-qualified") != 0) continue;
    uint32_t cps[MAX_CPS];
    int n = 0, real = 0;
    bool ok = true;
    for (char *p = line; p < semi && ok;) {
      while (p < semi && *p == ' ')
        p++;
      if (p >= semi) break;
      char *end = NULL;
      unsigned long v = strtoul(p, &end, 16);
      if (end == p || v == 0 || v > 0x10FFFF || n == MAX_CPS) ok = false;
      if (ok) {
        cps[n++] = (uint32_t)v;
        real += v != 0xFE0F;
        p = end;
      }
    }
    if (!ok || n == 0) continue;
    if (r->o->single && real != 1) continue;
    if (r->o->only && !in_list(r->o->only, group) && !in_list(r->o->only, subgroup)) continue;
    /* the name follows the emoji and its version "E0.6 " */
    const char *name = strstr(hash, " E");
    if (!name) continue;
    name = strchr(name + 2, ' ');
    if (!name) continue;
    name++;
    st = one_emoji(r, cps, n, name, group, subgroup);
  }
  fclose(f);
  return st;
}

static sdw_status run_emoji(const emoji_options *o) {
  emoji_run r;
  memset(&r, 0, sizeof r);
  r.o = o;
  if (o->output)
    snprintf(r.out_dir, sizeof r.out_dir, "%s", o->output);
  else
    snprintf(r.out_dir, sizeof r.out_dir, "%s/emoji", o->data);
  char images[8192], meta[8192];
  snprintf(images, sizeof images, "%s/images", r.out_dir);
  snprintf(meta, sizeof meta, "%s/metadata.parquet", r.out_dir);
  SDW_TRY(sdw_mkdir_p(images));
  if (o->url_base) {
    size_t n = strlen(o->url_base);
    snprintf(r.url_base, sizeof r.url_base, "%s%s", o->url_base,
             n && o->url_base[n - 1] == '/' ? "" : "/");
  } else {
    char abs[PATH_MAX];
    if (!realpath(r.out_dir, abs))
      return sdw_fail(SDW_ERR_IO, "cannot resolve %s: %s", r.out_dir, strerror(errno));
    snprintf(r.url_base, sizeof r.url_base, "file://%s/", abs);
  }

  void *font = NULL;
  size_t font_size = 0;
  sdw_status st = sdw_read_file(o->font, &font, &font_size);
  if (st != SDW_OK)
    return sdw_fail(st,
                    "cannot read the emoji font %s — install fonts-noto-color-emoji (make deps) "
                    "or give --font",
                    o->font);
  st = sdw_sfnt_open(font, font_size, &r.font);
  if (st != SDW_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    free(font);
    return sdw_fail(st, "%s: %s", o->font, msg);
  }
  st = keywords_load(o->cldr, &r.kw);
  if (st != SDW_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sdw_last_error());
    st =
        sdw_fail(st, "%s (CLDR annotations: install unicode-cldr-core or give --annotations)", msg);
  }
  sdw_manifest m;
  bool have_m = false;
  if (st == SDW_OK && (st = sdw_manifest_begin(&m, o->data, "emoji")) == SDW_OK) {
    have_m = true;
    r.m = &m;
    sdw_manifest_add_input(&m, o->font, false);
    sdw_manifest_add_input(&m, o->test, false);
    sdw_manifest_add_input(&m, o->cldr, false);
    sdw_manifest_add_output(&m, meta);
  }
  static const sdw_parquet_field fields[] = {
      {"URL", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"TEXT", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"WIDTH", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
      {"HEIGHT", SDW_PARQUET_INT64, SDW_PARQUET_LOGICAL_NONE, false},
      {"similarity", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
      {"aesthetic_score", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
      {"pwatermark", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
      {"punsafe", SDW_PARQUET_DOUBLE, SDW_PARQUET_LOGICAL_NONE, false},
      {"key", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"name", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"group", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"subgroup", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
      {"codepoints", SDW_PARQUET_BYTE_ARRAY, SDW_PARQUET_LOGICAL_STRING, false},
  };
  if (st == SDW_OK) st = sdw_parquet_writer_open(meta, fields, 13, NULL, &r.w);
  if (st == SDW_OK) st = walk_test_file(&r);
  if (r.w) {
    if (st == SDW_OK)
      st = sdw_parquet_writer_close(r.w);
    else
      sdw_parquet_writer_abort(r.w);
  }
  if (st == SDW_OK && r.written == 0)
    st = sdw_fail(SDW_ERR_FORMAT, "%s drew none of the emoji of %s", o->font, o->test);
  if (have_m) {
    if (st != SDW_OK) sdw_manifest_set_message(&m, "%s", sdw_last_error());
    cJSON_AddNumberToObject(m.extra, "emoji", (double)r.written);
    sdw_status fs = sdw_manifest_finish(&m, st == SDW_OK ? "done" : "failed");
    if (st == SDW_OK) st = fs;
  }
  if (st == SDW_OK) printf("emoji: %lld images and %s\n", (long long)r.written, meta);
  keywords_free(&r.kw);
  sdw_sfnt_close(r.font);
  free(font);
  return st;
}

int sdw_pipeline_emoji_main(int argc, char **argv) {
  emoji_options o;
  int p = parse_options(argc, argv, &o);
  if (p == 1) {
    usage(stdout);
    return 0;
  }
  if (p) return 2;
  sdw_status st = run_emoji(&o);
  if (st != SDW_OK) {
    fprintf(stderr, "sdw: pipeline emoji: %s\n", sdw_last_error());
    return 1;
  }
  return 0;
}
