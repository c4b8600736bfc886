/* A reader of the parts of an OpenType/TrueType (sfnt) font that colour
 * bitmap emoji need, for `sdw pipeline emoji`:
 *
 *  - the table directory;
 *  - cmap: character -> glyph through a format 12 (full Unicode) or format 4
 *    (BMP) subtable, Unicode platforms preferred;
 *  - CBLC/CBDT (Google's colour bitmaps): index subtables of formats 1 and 3
 *    (per-glyph 32-/16-bit offsets), glyph images of formats 17, 18 and 19
 *    (PNG data with small, big or shared metrics), the strike with the most
 *    pixels per em;
 *  - GSUB LigatureSubst (lookup type 4, also behind extension type 7): the
 *    multi-code-point emoji (ZWJ sequences, flags, keycaps, skin tones) are
 *    ligatures of their code points' glyphs. sdw_sfnt_ligate applies every
 *    ligature lookup in lookup-list order over the whole glyph string, the
 *    way a shaper applies ccmp/liga to a run (no features or scripts are
 *    consulted: the emoji font's lookups are all meant to apply).
 *
 * The font is untrusted input: every offset and count is checked against
 * the file's size before it is read, loops are bounded by the data, and a
 * malformed table gives SDW_ERR_FORMAT naming it (tests/fuzz/sfnt.c).
 * The font bytes are borrowed: they must outlive the object. */
#ifndef SDW_PIPELINE_SFNT_H
#define SDW_PIPELINE_SFNT_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdw_sfnt sdw_sfnt;

/* Parses the table directory and cmap (and finds CBLC/CBDT/GSUB when
 * present). data[size] is borrowed. *out: sdw_sfnt_close. */
sdw_status sdw_sfnt_open(const uint8_t *data, size_t size, sdw_sfnt **out);
void sdw_sfnt_close(sdw_sfnt *f);

/* Number of glyphs the font declares (maxp), 0 when it has no maxp. */
int sdw_sfnt_glyph_count(const sdw_sfnt *f);

/* The glyph of code point cp; 0 (.notdef) when the font has none. */
uint32_t sdw_sfnt_glyph(const sdw_sfnt *f, uint32_t cp);

/* The colour bitmap of glyph g from the largest strike: *png points into
 * the font (png_size bytes), *ppem receives the strike's pixels per em.
 * SDW_ERR_NOT_FOUND when the glyph has no bitmap (or the font no CBLC),
 * SDW_ERR_FORMAT for a malformed table, SDW_ERR_UNSUPPORTED for an index
 * or image format other than those above. */
sdw_status sdw_sfnt_color_png(const sdw_sfnt *f, uint32_t g, const uint8_t **png, size_t *png_size,
                              int *ppem);

/* Applies the GSUB ligatures to glyphs[*count] in place (the string only
 * shrinks). SDW_OK with *count unchanged when the font has no GSUB;
 * SDW_ERR_FORMAT for a malformed GSUB. */
sdw_status sdw_sfnt_ligate(const sdw_sfnt *f, uint32_t *glyphs, int *count);

#ifdef __cplusplus
}
#endif
#endif
