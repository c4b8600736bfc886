#!/usr/bin/env python3
"""Writes a minimal colour-bitmap sfnt font, built by hand from the OpenType
spec (struct.pack, no font library), for tests/test_sfnt.c and as the seed
of tests/fuzz/sfnt.c:

  cmap: format 4 (platform 3/1) and format 12 (platform 3/10) subtables:
        U+0041 -> glyph 1, U+1F34E -> glyph 2, U+200D -> glyph 3,
        U+1F600..U+1F602 -> glyphs 4..6
  maxp: 8 glyphs
  CBLC: one 32-bit strike of ppem 20, index subtable format 1 for glyphs
        1..2 and format 3 for glyphs 4..7 (glyph 5 has no bitmap)
  CBDT: glyph 1 format 17, glyph 2 format 18, glyphs 4, 6 format 17,
        glyph 7 format 19, each "PNG" a distinct byte string
  GSUB: lookup 0 type 7 (extension) wrapping type 4: 2 3 2 -> 7
        lookup 1 type 4: 4 5 -> 6

Usage: gen_sfnt_fixture.py OUT.ttf   (also prints the expected facts)"""
import struct, sys

def u16(*v): return struct.pack(">" + "H" * len(v), *v)
def u32(*v): return struct.pack(">" + "I" * len(v), *v)

# --- cmap ---------------------------------------------------------------------------------
def fmt4(mapping):
    segs = [(c, c, (g - c) & 0xFFFF) for c, g in sorted(mapping.items())] + [(0xFFFF, 0xFFFF, 1)]
    n = len(segs)
    body = u16(*[e for _, e, _ in segs]) + u16(0) + u16(*[s for s, _, _ in segs]) + \
        u16(*[d for _, _, d in segs]) + u16(*[0] * n)
    length = 14 + len(body)
    return u16(4, length, 0, 2 * n, 0, 0, 0) + body

def fmt12(groups):
    body = b"".join(u32(s, e, g) for s, e, g in groups)
    return u16(12, 0) + u32(16 + len(body), 0, len(groups)) + body

sub4 = fmt4({0x41: 1, 0x200D: 3})
sub12 = fmt12([(0x41, 0x41, 1), (0x200D, 0x200D, 3), (0x1F34E, 0x1F34E, 2), (0x1F600, 0x1F602, 4)])
cmap = u16(0, 2) + u16(3, 1) + u32(4 + 16) + u16(3, 10) + u32(4 + 16 + len(sub4)) + sub4 + sub12

maxp = u32(0x00005000) + u16(8)

# --- CBDT / CBLC --------------------------------------------------------------------------
pngs = {1: b"\x89PNG-one", 2: b"\x89PNG-two-big", 4: b"\x89PNG-four", 6: b"\x89PNG-six!", 7: b"\x89PNG-seven"}
cbdt = bytearray(u16(3, 0))
off = {}
def add(g, fmt):
    off[g] = len(cbdt)
    if fmt == 17: cbdt.extend(bytes([10, 12, 0, 10, 12]))       # smallGlyphMetrics
    if fmt == 18: cbdt.extend(bytes([10, 12, 0, 10, 12, 0, 0, 12]))  # bigGlyphMetrics
    cbdt.extend(u32(len(pngs[g])) + pngs[g])
add(1, 17); add(2, 18)
end12 = len(cbdt)
add(4, 17)
start5 = len(cbdt)      # glyph 5: empty range
add(6, 17)
add(7, 19)
end47 = len(cbdt)

# index subtable 1 (format 1, image format 17; glyph 2's data is format 18
# in a real font this would be a separate subtable: the reader takes the
# subtable's image format, so glyph 2 lives in its own subtable below)
base1 = 0
ist_a = u16(1, 17) + u32(base1) + u32(off[1], end12 - (end12 - off[2]))   # glyph 1 only
ist_b = u16(1, 18) + u32(base1) + u32(off[2], end12)                       # glyph 2 only
# format 3 (16-bit offsets from imageDataOffset) for glyphs 4..6, image format 17
b3 = off[4]
ist_c = u16(3, 17) + u32(b3) + u16(0, start5 - b3, start5 - b3, off[7] - b3)
ist_d = u16(1, 19) + u32(0) + u32(off[7], end47)                           # glyph 7
subs = [(1, 1, ist_a), (2, 2, ist_b), (4, 6, ist_c), (7, 7, ist_d)]
array = b""
blobs = b""
arr_len = 8 * len(subs)
for first, last, blob in subs:
    array += u16(first, last) + u32(arr_len + len(blobs))
    blobs += blob + b"\0" * (-len(blob) % 4)
ist_array_off = 8 + 48
strike = u32(ist_array_off, len(array) + len(blobs), len(subs), 0) + bytes(24) + \
    u16(1, 7) + bytes([20, 20, 32, 1])
cblc = u16(3, 0) + u32(1) + strike + array + blobs

# --- GSUB ----------------------------------------------------------------------------------
def coverage(glyphs): return u16(1, len(glyphs), *glyphs)
def lig_subst(first, comps, lig):
    lig_t = u16(lig, len(comps) + 1, *comps)
    ligset = u16(1, 4) + lig_t
    cov = coverage([first])
    head_len = 8
    return u16(1, head_len + len(ligset), 1, head_len) + ligset + cov
sub_a = lig_subst(2, [3, 2], 7)
ext = u16(1, 4) + u32(8) + sub_a
lookup0 = u16(7, 0, 1, 8) + ext
sub_b = lig_subst(4, [5], 6)
lookup1 = u16(4, 0, 1, 8) + sub_b
ll_head = 2 + 2 * 2
lookup_list = u16(2, ll_head, ll_head + len(lookup0)) + lookup0 + lookup1
gsub = u16(1, 0) + u16(10, 10, 10) + lookup_list   # empty script/feature lists share offset 10
gsub = u16(1, 0) + u16(10, 12, 14) + u16(0) + u16(0) + lookup_list

tables = {b"CBDT": bytes(cbdt), b"CBLC": cblc, b"GSUB": gsub, b"cmap": cmap, b"maxp": maxp}
n = len(tables)
out = bytearray(u32(0x00010000) + u16(n, 64, 2, n * 16 - 64))
offset = 12 + 16 * n
recs, data = b"", b""
for tag in sorted(tables):
    t = tables[tag]
    recs += tag + u32(0, offset + len(data), len(t))
    data += t + b"\0" * (-len(t) % 4)
out += recs + data
open(sys.argv[1], "wb").write(out)
print("glyphs: A->1 U+1F34E->2 U+200D->3 U+1F600->4 U+1F601->5 U+1F602->6")
print("pngs:", {g: p.decode("latin1") for g, p in pngs.items()})
print("ligatures: 2 3 2 -> 7; 4 5 -> 6")
