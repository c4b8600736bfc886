/* sfnt reader for colour bitmap emoji (see sfnt.h). Every read goes through
 * span_u16/span_u32/span_sub, which check the offset against the span's
 * size: a malformed font can only make a lookup fail, never read outside
 * the file. */
#include "pipeline/sfnt.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct span {
  const uint8_t *p;
  size_t n;
} span;

static bool span_u8(span s, size_t off, uint32_t *v) {
  if (off >= s.n) return false;
  *v = s.p[off];
  return true;
}

static bool span_u16(span s, size_t off, uint32_t *v) {
  if (off > s.n || s.n - off < 2) return false;
  *v = (uint32_t)s.p[off] << 8 | s.p[off + 1];
  return true;
}

static bool span_u32(span s, size_t off, uint32_t *v) {
  if (off > s.n || s.n - off < 4) return false;
  *v = (uint32_t)s.p[off] << 24 | (uint32_t)s.p[off + 1] << 16 | (uint32_t)s.p[off + 2] << 8 |
       s.p[off + 3];
  return true;
}

/* The bytes [off, off + len) of s; len SIZE_MAX: to the end. */
static bool span_sub(span s, size_t off, size_t len, span *out) {
  if (off > s.n) return false;
  if (len == SIZE_MAX) len = s.n - off;
  if (s.n - off < len) return false;
  out->p = s.p + off;
  out->n = len;
  return true;
}

struct sdw_sfnt {
  span file;
  span cmap_sub; /* the chosen cmap subtable */
  int cmap_format;
  int num_glyphs;
  span cblc, cbdt, gsub;
  bool has_cblc, has_gsub;
  /* the chosen strike */
  uint32_t strike_array, strike_count;
  int strike_ppem;
};

static bool find_table(span file, const char *tag, span *out) {
  uint32_t num = 0;
  if (!span_u16(file, 4, &num)) return false;
  for (uint32_t i = 0; i < num; i++) {
    size_t rec = 12 + 16 * (size_t)i;
    uint32_t off = 0, len = 0;
    if (rec + 16 > file.n) return false;
    if (memcmp(file.p + rec, tag, 4) != 0) continue;
    if (!span_u32(file, rec + 8, &off) || !span_u32(file, rec + 12, &len)) return false;
    return span_sub(file, off, len, out);
  }
  return false;
}

/* cmap: format 12 on a Unicode full-repertoire encoding beats format 4 on
 * a BMP one; each candidate is checked to lie within the table. */
static sdw_status open_cmap(sdw_sfnt *f) {
  span cmap;
  if (!find_table(f->file, "cmap", &cmap))
    return sdw_fail(SDW_ERR_FORMAT, "the font has no (readable) cmap table");
  uint32_t num = 0;
  if (!span_u16(cmap, 2, &num)) return sdw_fail(SDW_ERR_FORMAT, "truncated cmap table");
  int best = 0;
  for (uint32_t i = 0; i < num; i++) {
    uint32_t platform = 0, encoding = 0, off = 0, format = 0, len = 0;
    size_t rec = 4 + 8 * (size_t)i;
    if (!span_u16(cmap, rec, &platform) || !span_u16(cmap, rec + 2, &encoding) ||
        !span_u32(cmap, rec + 4, &off))
      return sdw_fail(SDW_ERR_FORMAT, "truncated cmap encoding records");
    if (!span_u16(cmap, off, &format)) continue;
    const bool unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
    if (!unicode) continue;
    span sub;
    int score = 0;
    if (format == 12) {
      uint32_t groups = 0;
      if (!span_u32(cmap, (size_t)off + 4, &len) || !span_u32(cmap, (size_t)off + 12, &groups) ||
          !span_sub(cmap, off, len, &sub) || len < 16 || (len - 16) / 12 < groups)
        continue;
      score = 2;
    } else if (format == 4) {
      uint32_t seg2 = 0;
      if (!span_u16(cmap, (size_t)off + 2, &len) || !span_sub(cmap, off, len, &sub) ||
          !span_u16(sub, 6, &seg2) || seg2 % 2 || 16 + 4 * (size_t)seg2 > sub.n)
        continue;
      score = 1;
    } else {
      continue;
    }
    if (score > best) {
      best = score;
      f->cmap_sub = sub;
      f->cmap_format = (int)format;
    }
  }
  if (!best)
    return sdw_fail(SDW_ERR_FORMAT, "the font's cmap has no Unicode subtable of format 4 or 12");
  return SDW_OK;
}

/* CBLC: the strike with the largest ppem among the colour (32-bit) ones. */
static sdw_status open_cblc(sdw_sfnt *f) {
  uint32_t major = 0, sizes = 0;
  if (!span_u16(f->cblc, 0, &major) || !span_u32(f->cblc, 4, &sizes))
    return sdw_fail(SDW_ERR_FORMAT, "truncated CBLC table");
  if (major != 2 && major != 3)
    return sdw_fail(SDW_ERR_UNSUPPORTED, "CBLC version %u (2 or 3 supported)", major);
  if (sizes > (f->cblc.n - 8) / 48) return sdw_fail(SDW_ERR_FORMAT, "CBLC strikes past its end");
  for (uint32_t i = 0; i < sizes; i++) {
    size_t rec = 8 + 48 * (size_t)i;
    uint32_t array = 0, count = 0, ppem = 0, depth = 0;
    span_u32(f->cblc, rec, &array);
    span_u32(f->cblc, rec + 8, &count);
    span_u8(f->cblc, rec + 44, &ppem);
    span_u8(f->cblc, rec + 46, &depth);
    if (depth != 32 || (int)ppem <= f->strike_ppem) continue;
    if (array > f->cblc.n || count > (f->cblc.n - array) / 8)
      return sdw_fail(SDW_ERR_FORMAT, "CBLC strike %u: index subtables past the table's end", i);
    f->strike_array = array;
    f->strike_count = count;
    f->strike_ppem = (int)ppem;
    f->has_cblc = true;
  }
  return SDW_OK;
}

sdw_status sdw_sfnt_open(const uint8_t *data, size_t size, sdw_sfnt **out) {
  *out = NULL;
  span file = {data, size};
  uint32_t version = 0, num = 0;
  if (!span_u32(file, 0, &version) || !span_u16(file, 4, &num))
    return sdw_fail(SDW_ERR_FORMAT, "not a font (too short)");
  if (version != 0x00010000u && version != 0x4F54544Fu /* OTTO */ &&
      version != 0x74727565u /* true */)
    return sdw_fail(SDW_ERR_FORMAT, "not an sfnt font (version tag %08x)", version);
  if (12 + 16 * (size_t)num > size) return sdw_fail(SDW_ERR_FORMAT, "truncated table directory");
  sdw_sfnt *f = calloc(1, sizeof *f);
  if (!f) return sdw_fail(SDW_ERR_OUT_OF_MEMORY, "out of memory");
  f->file = file;
  sdw_status st = open_cmap(f);
  span maxp;
  uint32_t glyphs = 0;
  if (find_table(file, "maxp", &maxp) && span_u16(maxp, 4, &glyphs)) f->num_glyphs = (int)glyphs;
  if (st == SDW_OK && find_table(file, "CBLC", &f->cblc) && find_table(file, "CBDT", &f->cbdt))
    st = open_cblc(f);
  f->has_gsub = find_table(file, "GSUB", &f->gsub);
  if (st != SDW_OK) {
    free(f);
    return st;
  }
  *out = f;
  return SDW_OK;
}

void sdw_sfnt_close(sdw_sfnt *f) { free(f); }

int sdw_sfnt_glyph_count(const sdw_sfnt *f) { return f->num_glyphs; }

static uint32_t cmap12(span s, uint32_t cp) {
  uint32_t groups = 0;
  span_u32(s, 12, &groups);
  /* groups are sorted by start code (the spec's requirement); a font that
   * breaks it only gets wrong answers */
  uint32_t lo = 0, hi = groups;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2, start = 0, end = 0, glyph = 0;
    size_t rec = 16 + 12 * (size_t)mid;
    if (!span_u32(s, rec, &start) || !span_u32(s, rec + 4, &end) || !span_u32(s, rec + 8, &glyph))
      return 0;
    if (cp < start)
      hi = mid;
    else if (cp > end)
      lo = mid + 1;
    else
      return glyph + (cp - start);
  }
  return 0;
}

static uint32_t cmap4(span s, uint32_t cp) {
  if (cp > 0xFFFF) return 0;
  uint32_t seg2 = 0;
  span_u16(s, 6, &seg2);
  const size_t segs = seg2 / 2, ends = 14, starts = 16 + seg2, deltas = starts + seg2,
               ranges = deltas + seg2;
  for (size_t i = 0; i < segs; i++) {
    uint32_t end = 0, start = 0, delta = 0, range = 0;
    if (!span_u16(s, ends + 2 * i, &end)) return 0;
    if (end < cp) continue;
    if (!span_u16(s, starts + 2 * i, &start) || start > cp) return 0;
    if (!span_u16(s, deltas + 2 * i, &delta) || !span_u16(s, ranges + 2 * i, &range)) return 0;
    if (range == 0) return (cp + delta) & 0xFFFF;
    uint32_t glyph = 0;
    if (!span_u16(s, ranges + 2 * i + range + 2 * (size_t)(cp - start), &glyph) || glyph == 0)
      return 0;
    return (glyph + delta) & 0xFFFF;
  }
  return 0;
}

uint32_t sdw_sfnt_glyph(const sdw_sfnt *f, uint32_t cp) {
  return f->cmap_format == 12 ? cmap12(f->cmap_sub, cp) : cmap4(f->cmap_sub, cp);
}

sdw_status sdw_sfnt_color_png(const sdw_sfnt *f, uint32_t g, const uint8_t **png, size_t *png_size,
                              int *ppem) {
  *png = NULL;
  *png_size = 0;
  if (ppem) *ppem = f->strike_ppem;
  if (!f->has_cblc) return sdw_fail(SDW_ERR_NOT_FOUND, "the font has no colour bitmaps");
  for (uint32_t i = 0; i < f->strike_count; i++) {
    size_t rec = f->strike_array + 8 * (size_t)i;
    uint32_t first = 0, last = 0, add = 0;
    span_u16(f->cblc, rec, &first);
    span_u16(f->cblc, rec + 2, &last);
    span_u32(f->cblc, rec + 4, &add);
    if (g < first || g > last) continue;
    const size_t sub = (size_t)f->strike_array + add;
    uint32_t index_format = 0, image_format = 0, image_base = 0, a = 0, b = 0;
    if (!span_u16(f->cblc, sub, &index_format) || !span_u16(f->cblc, sub + 2, &image_format) ||
        !span_u32(f->cblc, sub + 4, &image_base))
      return sdw_fail(SDW_ERR_FORMAT, "CBLC index subtable of glyph %u past the table's end", g);
    const size_t k = g - first;
    bool ok;
    if (index_format == 1)
      ok = span_u32(f->cblc, sub + 8 + 4 * k, &a) && span_u32(f->cblc, sub + 12 + 4 * k, &b);
    else if (index_format == 3)
      ok = span_u16(f->cblc, sub + 8 + 2 * k, &a) && span_u16(f->cblc, sub + 10 + 2 * k, &b);
    else
      return sdw_fail(SDW_ERR_UNSUPPORTED, "CBLC index format %u (1 and 3 supported)",
                      index_format);
    if (!ok) return sdw_fail(SDW_ERR_FORMAT, "CBLC offsets of glyph %u past the table's end", g);
    if (b < a) return sdw_fail(SDW_ERR_FORMAT, "CBLC offsets of glyph %u decrease", g);
    if (b == a) return sdw_fail(SDW_ERR_NOT_FOUND, "glyph %u has no bitmap", g);
    span img;
    if (!span_sub(f->cbdt, (size_t)image_base + a, b - a, &img))
      return sdw_fail(SDW_ERR_FORMAT, "CBDT data of glyph %u past the table's end", g);
    size_t head;
    if (image_format == 17)
      head = 5; /* smallGlyphMetrics */
    else if (image_format == 18)
      head = 8; /* bigGlyphMetrics */
    else if (image_format == 19)
      head = 0; /* metrics in CBLC */
    else
      return sdw_fail(SDW_ERR_UNSUPPORTED, "CBDT image format %u (17, 18, 19 supported)",
                      image_format);
    uint32_t len = 0;
    span data;
    if (!span_u32(img, head, &len) || !span_sub(img, head + 4, len, &data))
      return sdw_fail(SDW_ERR_FORMAT, "CBDT image of glyph %u is truncated", g);
    *png = data.p;
    *png_size = data.n;
    return SDW_OK;
  }
  return sdw_fail(SDW_ERR_NOT_FOUND, "glyph %u has no bitmap", g);
}

/* --- GSUB ligatures ----------------------------------------------------------------------- */

/* Coverage index of glyph g, -1 when not covered or malformed. */
static long coverage_index(span cov, uint32_t g) {
  uint32_t format = 0, count = 0;
  if (!span_u16(cov, 0, &format) || !span_u16(cov, 2, &count)) return -1;
  for (uint32_t i = 0; i < count; i++) {
    if (format == 1) {
      uint32_t v = 0;
      if (!span_u16(cov, 4 + 2 * (size_t)i, &v)) return -1;
      if (v == g) return (long)i;
    } else if (format == 2) {
      uint32_t start = 0, end = 0, base = 0;
      size_t rec = 4 + 6 * (size_t)i;
      if (!span_u16(cov, rec, &start) || !span_u16(cov, rec + 2, &end) ||
          !span_u16(cov, rec + 4, &base))
        return -1;
      if (g >= start && g <= end) return (long)(base + (g - start));
    } else {
      return -1;
    }
  }
  return -1;
}

/* Tries the ligatures of one LigatureSubst subtable at glyphs[pos]; on a
 * match replaces the components and returns true. */
static bool ligature_at(span subst, uint32_t *glyphs, int *count, int pos) {
  uint32_t format = 0, cov_off = 0, sets = 0;
  span cov, set;
  if (!span_u16(subst, 0, &format) || format != 1 || !span_u16(subst, 2, &cov_off) ||
      !span_u16(subst, 4, &sets) || !span_sub(subst, cov_off, SIZE_MAX, &cov))
    return false;
  long ci = coverage_index(cov, glyphs[pos]);
  uint32_t set_off = 0, ligs = 0;
  if (ci < 0 || (uint32_t)ci >= sets || !span_u16(subst, 6 + 2 * (size_t)ci, &set_off) ||
      !span_sub(subst, set_off, SIZE_MAX, &set) || !span_u16(set, 0, &ligs))
    return false;
  for (uint32_t l = 0; l < ligs; l++) {
    uint32_t lig_off = 0, lig_glyph = 0, comps = 0;
    span lig;
    if (!span_u16(set, 2 + 2 * (size_t)l, &lig_off) || !span_sub(set, lig_off, SIZE_MAX, &lig) ||
        !span_u16(lig, 0, &lig_glyph) || !span_u16(lig, 2, &comps))
      return false;
    if (comps < 1 || (long)pos + comps > *count) continue;
    bool match = true;
    for (uint32_t c = 1; c < comps && match; c++) {
      uint32_t v = 0;
      match = span_u16(lig, 4 + 2 * (size_t)(c - 1), &v) && v == glyphs[pos + (int)c];
    }
    if (!match) continue;
    glyphs[pos] = lig_glyph;
    const int removed = (int)comps - 1;
    memmove(glyphs + pos + 1, glyphs + pos + 1 + removed,
            (size_t)(*count - pos - 1 - removed) * sizeof *glyphs);
    *count -= removed;
    return true;
  }
  return false;
}

/* The LigatureSubst subtable i of a lookup (type 4, or type 7 wrapping 4);
 * false for other types or malformed data. */
static bool lookup_subtable(span lookup, uint32_t type, uint32_t i, span *out) {
  uint32_t off = 0;
  span sub;
  if (!span_u16(lookup, 6 + 2 * (size_t)i, &off) || !span_sub(lookup, off, SIZE_MAX, &sub))
    return false;
  if (type == 4) {
    *out = sub;
    return true;
  }
  uint32_t format = 0, ext_type = 0, ext_off = 0;
  if (type != 7 || !span_u16(sub, 0, &format) || format != 1 || !span_u16(sub, 2, &ext_type) ||
      ext_type != 4 || !span_u32(sub, 4, &ext_off))
    return false;
  return span_sub(sub, ext_off, SIZE_MAX, out);
}

sdw_status sdw_sfnt_ligate(const sdw_sfnt *f, uint32_t *glyphs, int *count) {
  if (!f->has_gsub || *count < 2) return SDW_OK;
  uint32_t major = 0, list_off = 0, lookups = 0;
  span list;
  if (!span_u16(f->gsub, 0, &major) || major != 1 || !span_u16(f->gsub, 8, &list_off) ||
      !span_sub(f->gsub, list_off, SIZE_MAX, &list) || !span_u16(list, 0, &lookups))
    return sdw_fail(SDW_ERR_FORMAT, "malformed GSUB header");
  /* lookup flags (ignore marks, ...) are not honoured: the emoji font's
   * ligature lookups have none that matter for whole-sequence strings */
  for (uint32_t k = 0; k<lookups && * count> 1; k++) {
    uint32_t off = 0, type = 0, subs = 0;
    span lookup;
    if (!span_u16(list, 2 + 2 * (size_t)k, &off) || !span_sub(list, off, SIZE_MAX, &lookup) ||
        !span_u16(lookup, 0, &type) || !span_u16(lookup, 4, &subs))
      return sdw_fail(SDW_ERR_FORMAT, "GSUB lookup %u past the table's end", k);
    if (type != 4 && type != 7) continue;
    for (int pos = 0; pos < *count - 1; pos++)
      for (uint32_t i = 0; i < subs; i++) {
        span sub;
        if (lookup_subtable(lookup, type, i, &sub) && ligature_at(sub, glyphs, count, pos)) break;
      }
  }
  return SDW_OK;
}
