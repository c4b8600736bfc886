#!/usr/bin/env python3
"""Generates core/model/unicode_tables.{h,c}: the Unicode and text-cleaning data
that the CLIP tokenizer (core/model/tokenizer.c, core/model/text_clean.c) needs.

Run it with the Python that defines the reference behaviour:

    /usr/bin/python3 tools/gen_unicode_tables.py        # Debian 12: Python 3.11.2,
                                                        # python3-regex 2022.10.31

That is the environment the CLIP goldens (shared/data/clip) were made in:
openai/CLIP's simple_tokenizer.py uses the `regex` module for its pattern
(\\p{L}, \\p{N}, \\s, IGNORECASE) and Python's own str.lower(), str.strip(),
str.isspace(), unicodedata NFC/NFKC and html.unescape; ftfy 6.3.1 uses the
standard `re` module (\\s, \\w, \\d) and the codecs named below. Every table is
derived here by asking those very functions, character by character, so the C
code reproduces them without re-deriving Unicode rules:

  flags        per code point, two-stage table (see unicode_tables.h)
  lower        str.lower() for every code point it changes (full mappings:
               'İ' -> 'i' U+0307); U+03A3 is left to the final-sigma rule,
               whose 'cased' / 'case-ignorable' inputs are probed through
               str.lower() itself
  nfc          canonical one-level decompositions, canonical combining classes,
               primary composites (composition pairs), Hangul done in C
  width        ftfy's fix_character_width map: U+FF01..U+FFEF -> NFKC
  html         html.entities.html5 (Python's html.unescape table), ftfy's
               upper-case aliases, html's invalid charrefs / code points
  ftfy         the ten single-byte codecs ftfy tries (sloppy-windows-125x as
               ftfy builds them), and the character classes of ftfy's
               mojibake heuristic (ftfy/badness.py MOJIBAKE_CATEGORIES and
               ftfy/chardata.py UTF8_CLUES, ftfy 6.3.1, Apache-2.0; the
               character lists below are transcribed from there)

`--check-ftfy` (needs ftfy importable) asserts that the transcribed ftfy
classes equal the installed ftfy's.
"""

import argparse
import html
import html.entities
import os
import re
import sys
import unicodedata

import regex

MAX_CP = 0x110000

# --- ftfy's character classes (transcribed from ftfy 6.3.1) ---------------------
N = lambda name: unicodedata.lookup(name)  # noqa: E731


def chars(*items):
    """items: characters, names (len > 1, looked up) or (first, last) ranges."""
    out = set()
    for it in items:
        if isinstance(it, tuple):
            a, b = it
            a = ord(a) if isinstance(a, str) else a
            b = ord(b) if isinstance(b, str) else b
            out.update(range(a, b + 1))
        elif len(it) == 1:
            out.add(ord(it))
        else:
            out.add(ord(N(it)))
    return out


BADNESS = {
    "common": chars("NO-BREAK SPACE", "SOFT HYPHEN", "MIDDLE DOT", "ACUTE ACCENT", "EN DASH",
                    "EM DASH", "HORIZONTAL BAR", "HORIZONTAL ELLIPSIS",
                    "RIGHT SINGLE QUOTATION MARK"),
    "c1": chars((0x80, 0x9F)),
    "bad": chars("BROKEN BAR", "CURRENCY SIGN", "DIAERESIS", "NOT SIGN", "MACRON", "CEDILLA",
                 "LATIN SMALL LETTER F WITH HOOK", "MODIFIER LETTER CIRCUMFLEX ACCENT", "CARON",
                 "BREVE", "OGONEK", "SMALL TILDE", "DAGGER", "DOUBLE DAGGER", "PER MILLE SIGN",
                 "REVERSED NOT SIGN", "LOZENGE", "\ufffd", "FEMININE ORDINAL INDICATOR",
                 "MASCULINE ORDINAL INDICATOR"),
    "law": chars("PILCROW SIGN", "SECTION SIGN"),
    "currency": chars("CENT SIGN", "POUND SIGN", "YEN SIGN", "PESETA SIGN", "EURO SIGN"),
    "start_punctuation": chars(
        "INVERTED EXCLAMATION MARK", "LEFT-POINTING DOUBLE ANGLE QUOTATION MARK",
        "INVERTED QUESTION MARK", "COPYRIGHT SIGN", "GREEK TONOS", "GREEK DIALYTIKA TONOS",
        "LEFT SINGLE QUOTATION MARK", "SINGLE LOW-9 QUOTATION MARK", "LEFT DOUBLE QUOTATION MARK",
        "DOUBLE LOW-9 QUOTATION MARK", "BULLET", "SINGLE LEFT-POINTING ANGLE QUOTATION MARK",
        "\uf8ff"),
    "end_punctuation": chars(
        "REGISTERED SIGN", "RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK", "DOUBLE ACUTE ACCENT",
        "RIGHT DOUBLE QUOTATION MARK", "SINGLE RIGHT-POINTING ANGLE QUOTATION MARK",
        "TRADE MARK SIGN"),
    "numeric": chars(
        "SUPERSCRIPT TWO", "SUPERSCRIPT THREE", "SUPERSCRIPT ONE", "PLUS-MINUS SIGN",
        "VULGAR FRACTION ONE QUARTER", "VULGAR FRACTION ONE HALF", "VULGAR FRACTION THREE QUARTERS",
        "MULTIPLICATION SIGN", "MICRO SIGN", "DIVISION SIGN", "FRACTION SLASH",
        "PARTIAL DIFFERENTIAL", "INCREMENT", "N-ARY PRODUCT", "N-ARY SUMMATION", "SQUARE ROOT",
        "INFINITY", "INTERSECTION", "INTEGRAL", "ALMOST EQUAL TO", "NOT EQUAL TO", "IDENTICAL TO",
        "LESS-THAN OR EQUAL TO", "GREATER-THAN OR EQUAL TO", "NUMERO SIGN"),
    "kaomoji": chars(("Ò", "Ö"), ("Ù", "Ü"), ("ò", "ö"), ("ø", "ü"),
                     "LATIN CAPITAL LETTER O WITH DOUBLE ACUTE", "LATIN CAPITAL LETTER O WITH MACRON",
                     "LATIN CAPITAL LETTER U WITH MACRON", "LATIN CAPITAL LETTER U WITH OGONEK",
                     "DEGREE SIGN"),
    "upper_accented": chars(
        (0xC0, 0xD1), "LATIN CAPITAL LETTER O WITH STROKE", "LATIN CAPITAL LETTER U WITH DIAERESIS",
        "LATIN CAPITAL LETTER Y WITH ACUTE", "LATIN CAPITAL LETTER A WITH BREVE",
        "LATIN CAPITAL LETTER A WITH MACRON", "LATIN CAPITAL LETTER A WITH OGONEK",
        "LATIN CAPITAL LETTER C WITH ACUTE", "LATIN CAPITAL LETTER C WITH CARON",
        "LATIN CAPITAL LETTER D WITH CARON", "LATIN CAPITAL LETTER D WITH STROKE",
        "LATIN CAPITAL LETTER E WITH OGONEK", "LATIN CAPITAL LETTER E WITH CARON",
        "LATIN CAPITAL LETTER E WITH MACRON", "LATIN CAPITAL LETTER E WITH DOT ABOVE",
        "LATIN CAPITAL LETTER G WITH BREVE", "LATIN CAPITAL LETTER G WITH CEDILLA",
        "LATIN CAPITAL LETTER I WITH DOT ABOVE", "LATIN CAPITAL LETTER I WITH MACRON",
        "LATIN CAPITAL LETTER K WITH CEDILLA", "LATIN CAPITAL LETTER L WITH ACUTE",
        "LATIN CAPITAL LETTER L WITH CARON", "LATIN CAPITAL LETTER L WITH STROKE",
        "LATIN CAPITAL LETTER L WITH CEDILLA", "LATIN CAPITAL LETTER N WITH ACUTE",
        "LATIN CAPITAL LETTER N WITH CARON", "LATIN CAPITAL LETTER N WITH CEDILLA",
        "LATIN CAPITAL LIGATURE OE", "LATIN CAPITAL LETTER R WITH CARON",
        "LATIN CAPITAL LETTER S WITH ACUTE", "LATIN CAPITAL LETTER S WITH CEDILLA",
        "LATIN CAPITAL LETTER S WITH CARON", "LATIN CAPITAL LETTER T WITH CEDILLA",
        "LATIN CAPITAL LETTER T WITH CARON", "LATIN CAPITAL LETTER U WITH RING ABOVE",
        "LATIN CAPITAL LETTER U WITH DOUBLE ACUTE", "LATIN CAPITAL LETTER Y WITH DIAERESIS",
        "LATIN CAPITAL LETTER Z WITH ACUTE", "LATIN CAPITAL LETTER Z WITH DOT ABOVE",
        "LATIN CAPITAL LETTER Z WITH CARON", "CYRILLIC CAPITAL LETTER GHE WITH UPTURN"),
    "lower_accented": chars(
        "LATIN SMALL LETTER SHARP S", (0xE0, 0xF1), "LATIN SMALL LETTER A WITH BREVE",
        "LATIN SMALL LETTER A WITH OGONEK", "LATIN SMALL LETTER A WITH MACRON",
        "LATIN SMALL LETTER C WITH ACUTE", "LATIN SMALL LETTER C WITH CARON",
        "LATIN SMALL LETTER D WITH CARON", "LATIN SMALL LETTER D WITH STROKE",
        "LATIN SMALL LETTER E WITH OGONEK", "LATIN SMALL LETTER E WITH CARON",
        "LATIN SMALL LETTER E WITH MACRON", "LATIN SMALL LETTER E WITH DOT ABOVE",
        "LATIN SMALL LETTER G WITH BREVE", "LATIN SMALL LETTER G WITH CEDILLA",
        "LATIN SMALL LETTER I WITH OGONEK", "LATIN SMALL LETTER I WITH MACRON",
        "LATIN SMALL LETTER K WITH CEDILLA", "LATIN SMALL LETTER L WITH ACUTE",
        "LATIN SMALL LETTER L WITH CARON", "LATIN SMALL LETTER L WITH STROKE",
        "LATIN SMALL LETTER L WITH CEDILLA", "LATIN SMALL LIGATURE OE",
        "LATIN SMALL LETTER R WITH ACUTE", "LATIN SMALL LETTER S WITH ACUTE",
        "LATIN SMALL LETTER S WITH CEDILLA", "LATIN SMALL LETTER S WITH CARON",
        "LATIN SMALL LETTER T WITH CARON", "LATIN SMALL LETTER U WITH DIAERESIS",
        "LATIN SMALL LETTER Z WITH ACUTE", "LATIN SMALL LETTER Z WITH DOT ABOVE",
        "LATIN SMALL LETTER Z WITH CARON", "CYRILLIC SMALL LETTER GHE WITH UPTURN",
        "LATIN SMALL LIGATURE FI", "LATIN SMALL LIGATURE FL"),
    "upper_common": chars(
        "LATIN CAPITAL LETTER THORN", ("Α", "Ω"), "GREEK CAPITAL LETTER ALPHA WITH TONOS",
        "GREEK CAPITAL LETTER EPSILON WITH TONOS", "GREEK CAPITAL LETTER ETA WITH TONOS",
        "GREEK CAPITAL LETTER IOTA WITH TONOS", "GREEK CAPITAL LETTER OMICRON WITH TONOS",
        "GREEK CAPITAL LETTER UPSILON WITH TONOS", "GREEK CAPITAL LETTER OMEGA WITH TONOS",
        "GREEK CAPITAL LETTER IOTA WITH DIALYTIKA", "GREEK CAPITAL LETTER UPSILON WITH DIALYTIKA",
        ("Ё", "Я")),
    "lower_common": chars(
        ("α", "ω"), "GREEK SMALL LETTER ALPHA WITH TONOS", "GREEK SMALL LETTER EPSILON WITH TONOS",
        "GREEK SMALL LETTER ETA WITH TONOS", "GREEK SMALL LETTER IOTA WITH TONOS",
        "GREEK SMALL LETTER UPSILON WITH DIALYTIKA AND TONOS", ("а", "џ")),
    "box": chars(*"│┌┐┘├┤┬┼", ("═", "╬"), *"▀▄█▌▐░▒▓"),
}

# UTF8_CLUES: ftfy lists these characters one by one; each is what some byte
# decodes to in one of the Latin-1-like codecs (latin-1, windows-1250/1251/
# 1252/1253/1254/1257). Transcribed as code points.
UTF8_FIRST_OF_2 = {
    0x102, 0xC2, 0xC4, 0x100, 0xC5, 0xC3, 0xC6, 0x106, 0x10C, 0xC7, 0x10E, 0x110, 0xC9, 0x11A,
    0xCA, 0xCB, 0x116, 0xC8, 0x112, 0x118, 0xD0, 0x11E, 0x122, 0xCD, 0xCE, 0xCF, 0x130, 0xCC,
    0x12A, 0x136, 0x139, 0x13B, 0x141, 0x143, 0x147, 0x145, 0xD1, 0xD3, 0xD4, 0xD6, 0x150, 0xD2,
    0x14C, 0xD8, 0xD5, 0x158, 0x15A, 0x160, 0x15E, 0x162, 0xDE, 0xDA, 0xDB, 0xDC, 0x170, 0xD9,
    0x16A, 0x172, 0x16E, 0xDD, 0x179, 0x17D, 0x17B, 0xDF, 0xD7,
} | set(range(0x392, 0x3A2)) | set(range(0x3A3, 0x3AC)) | {0x3AC, 0x3AD, 0x3AE, 0x3AF} \
  | set(range(0x412, 0x430))
UTF8_FIRST_OF_3 = {
    0xE1, 0x103, 0xE2, 0xE4, 0xE0, 0x101, 0x105, 0xE5, 0xE3, 0xE6, 0x107, 0x10D, 0xE7, 0x10F,
    0xE9, 0x11B, 0xEA, 0xEB, 0x117, 0xE8, 0x113, 0x119, 0x123, 0xED, 0xEE, 0xEF, 0xEC, 0x12B,
    0x12F, 0x137, 0x13A, 0x13C, 0x155, 0x17A, 0x3B0,
} | set(range(0x3B1, 0x3C0)) | set(range(0x430, 0x440))
UTF8_FIRST_OF_4 = {0x111, 0xF0, 0x11F, 0xF3, 0x161, 0x3C0, 0x3C3, 0x440, 0x443}
_CONT_STRICT_EXTRA = {
    0x104, 0xC6, 0x13D, 0x141, 0xD8, 0x156, 0x15A, 0x160, 0x15E, 0x164, 0x178, 0x179, 0x17D,
    0x17B, 0x152, 0x105, 0xE6, 0x192, 0x13E, 0x142, 0xF8, 0x157, 0x15B, 0x161, 0x15F, 0x165,
    0x17A, 0x17E, 0x17C, 0x153, 0x2C6, 0x2C7, 0x2D8, 0x2DB, 0x2DC, 0x2DD, 0x384, 0x385, 0x386,
    0x388, 0x389, 0x38A, 0x38C, 0x38E, 0x38F, 0x401, 0x402, 0x403, 0x404, 0x405, 0x406, 0x407,
    0x408, 0x409, 0x40A, 0x40B, 0x40C, 0x40E, 0x40F, 0x451, 0x452, 0x453, 0x454, 0x455, 0x456,
    0x457, 0x458, 0x459, 0x45A, 0x45B, 0x45C, 0x45E, 0x45F, 0x490, 0x491, 0x2020, 0x2021,
    0x2030, 0x2039, 0x203A, 0x20AC, 0x2116, 0x2122,
}
UTF8_CONTINUATION_STRICT = set(range(0x80, 0xC0)) | _CONT_STRICT_EXTRA
UTF8_CONTINUATION = UTF8_CONTINUATION_STRICT | {
    0x20, 0x2013, 0x2014, 0x2015, 0x2018, 0x2019, 0x201A, 0x201C, 0x201D, 0x201E, 0x2022, 0x2026,
}

# Bit layout of the ftfy mask (must match unicode_tables.h).
FTFY_BITS = [
    ("c1", "SDW_FTFY_C1"), ("bad", "SDW_FTFY_BAD"), ("law", "SDW_FTFY_LAW"),
    ("currency", "SDW_FTFY_CUR"), ("start_punctuation", "SDW_FTFY_SP"),
    ("end_punctuation", "SDW_FTFY_EP"), ("numeric", "SDW_FTFY_NUM"), ("kaomoji", "SDW_FTFY_KAO"),
    ("upper_accented", "SDW_FTFY_UA"), ("lower_accented", "SDW_FTFY_LA"),
    ("upper_common", "SDW_FTFY_UC"), ("lower_common", "SDW_FTFY_LC"), ("box", "SDW_FTFY_BOX"),
    ("common", "SDW_FTFY_COM"), ("first2", "SDW_FTFY_F2"), ("first3", "SDW_FTFY_F3"),
    ("first4", "SDW_FTFY_F4"), ("cont", "SDW_FTFY_CONT"), ("cont_strict", "SDW_FTFY_CONTS"),
]

FTFY_CODECS = [
    ("latin-1", "latin-1"), ("sloppy-windows-1252", "windows-1252"),
    ("sloppy-windows-1251", "windows-1251"), ("sloppy-windows-1250", "windows-1250"),
    ("sloppy-windows-1253", "windows-1253"), ("sloppy-windows-1254", "windows-1254"),
    ("sloppy-windows-1257", "windows-1257"), ("iso-8859-2", "iso-8859-2"),
    ("macroman", "mac-roman"), ("cp437", "cp437"),
]


def codec_table(name, base):
    """The 256 code points ftfy's codec `name` decodes bytes 0..255 to."""
    allb = bytes(range(256))
    if name.startswith("sloppy-"):
        # ftfy's make_sloppy_codec: bytes the codec leaves undefined decode as
        # Latin-1, and byte 0x1A stands for U+FFFD.
        table = list(allb.decode("latin-1"))
        for i, ch in enumerate(allb.decode(base, errors="replace")):
            if ch != "\ufffd":
                table[i] = ch
        table[0x1A] = "\ufffd"
    else:
        table = list(allb.decode(base))
    return [ord(c) for c in table]


def check_ftfy():
    import ftfy.badness as fb
    import ftfy.chardata as fc

    for name, want in BADNESS.items():
        got = set()
        spec = fb.MOJIBAKE_CATEGORIES[name]
        for c in range(0x10000):
            if re.fullmatch("[" + spec + "]", chr(c)):
                got.add(c)
        assert got == want, (name, sorted(got ^ want))
    clue_map = {"utf8_first_of_2": UTF8_FIRST_OF_2, "utf8_first_of_3": UTF8_FIRST_OF_3,
                "utf8_first_of_4": UTF8_FIRST_OF_4, "utf8_continuation": UTF8_CONTINUATION,
                "utf8_continuation_strict": UTF8_CONTINUATION_STRICT}
    for name, want in clue_map.items():
        spec = fc.UTF8_CLUES[name]
        got = {c for c in range(0x3000) if re.fullmatch("[" + spec + "]", chr(c))}
        assert got == want, (name, sorted(got ^ want))
    import ftfy.bad_codecs  # noqa: F401  (registers the sloppy codecs)
    for name, base in FTFY_CODECS:
        want = codec_table(name, base)
        got = [ord(c) for c in bytes(range(256)).decode(name)]
        assert got == want, name
    print("ftfy classes: identical to the installed ftfy", fc.__file__, file=sys.stderr)


# --- helpers -------------------------------------------------------------------------
def c_array(name, ctype, values, per_line=16, fmt="{}"):
    lines = [f"const {ctype} {name}[{len(values)}] = {{"]
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(fmt.format(v) for v in values[i:i + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "..", "core",
                                                      "model"))
    ap.add_argument("--check-ftfy", action="store_true")
    args = ap.parse_args()
    if args.check_ftfy:
        check_ftfy()

    # ---- flags ----
    rx_L = regex.compile(r"(?i)[\p{L}]")
    rx_N = regex.compile(r"(?i)[\p{N}]")
    rx_O = regex.compile(r"(?i)[^\s\p{L}\p{N}]")
    rx_S = regex.compile(r"\s")
    re_w = re.compile(r"\w")
    re_d = re.compile(r"\d")

    flag_names = ["SDW_UC_L", "SDW_UC_N", "SDW_UC_O", "SDW_UC_RX_SPACE", "SDW_UC_PY_SPACE",
                  "SDW_UC_PY_WORD", "SDW_UC_PY_DIGIT", "SDW_UC_CASE_IGNORABLE", "SDW_UC_CASED",
                  "SDW_UC_HAS_LOWER", "SDW_UC_NFC_SENSITIVE", "SDW_UC_FTFY"]
    BIT = {n: 1 << i for i, n in enumerate(flag_names)}

    # composition pairs and 'second' characters
    decomp = {}
    comp_pairs = {}
    ccc = {}
    for c in range(MAX_CP):
        ch = chr(c)
        k = unicodedata.combining(ch)
        if k:
            ccc[c] = k
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            decomp[c] = parts
            if len(parts) == 2 and unicodedata.normalize("NFC", ch) == ch:
                comp_pairs[(parts[0], parts[1])] = c
    seconds = {b for (_, b) in comp_pairs}
    seconds |= set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # Hangul V, T

    ftfy_mask = {}
    for bit, (key, _) in enumerate(FTFY_BITS):
        if key in BADNESS:
            members = BADNESS[key]
        else:
            members = {"first2": UTF8_FIRST_OF_2, "first3": UTF8_FIRST_OF_3,
                       "first4": UTF8_FIRST_OF_4, "cont": UTF8_CONTINUATION,
                       "cont_strict": UTF8_CONTINUATION_STRICT}[key]
        for c in members:
            ftfy_mask[c] = ftfy_mask.get(c, 0) | (1 << bit)

    flags = [0] * MAX_CP
    lower = {}
    sigma = "\u03a3"
    for c in range(MAX_CP):
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF:
            continue  # surrogates never reach the tokenizer
        f = 0
        if rx_L.match(ch):
            f |= BIT["SDW_UC_L"]
        if rx_N.match(ch):
            f |= BIT["SDW_UC_N"]
        if rx_O.match(ch):
            f |= BIT["SDW_UC_O"]
        if rx_S.match(ch):
            f |= BIT["SDW_UC_RX_SPACE"]
        if ch.isspace():
            f |= BIT["SDW_UC_PY_SPACE"]
        if re_w.match(ch):
            f |= BIT["SDW_UC_PY_WORD"]
        if re_d.match(ch):
            f |= BIT["SDW_UC_PY_DIGIT"]
        # Final-sigma context probes (CPython's handle_capital_sigma): a
        # case-ignorable character is skipped in both directions; otherwise
        # what counts is whether it is cased.
        if c != 0x3A3:
            before = (ch + sigma).lower()[-1] == "\u03c2"   # cased and not ignorable
            between = ("A" + ch + sigma).lower()[-1] == "\u03c2"  # ignorable or cased
            if before:
                f |= BIT["SDW_UC_CASED"]
            elif between:
                f |= BIT["SDW_UC_CASE_IGNORABLE"]
            lo = ch.lower()
            if lo != ch:
                f |= BIT["SDW_UC_HAS_LOWER"]
                lower[c] = [ord(x) for x in lo]
        else:
            f |= BIT["SDW_UC_HAS_LOWER"] | BIT["SDW_UC_CASED"]
        if ccc.get(c, 0) or unicodedata.normalize("NFC", ch) != ch or c in seconds:
            f |= BIT["SDW_UC_NFC_SENSITIVE"]
        if c in ftfy_mask:
            f |= BIT["SDW_UC_FTFY"]
        flags[c] = f
    # sanity: the probes above must agree with str.lower() on real strings
    assert "ΟΔΟΣ".lower() == "οδος" and "ΟΔΟΣ Α".lower() == "οδος α"
    assert lower[0x130] == [0x69, 0x307]

    # two-stage table
    blocks = {}
    stage1 = []
    stage2 = []
    for hi in range(MAX_CP >> 8):
        blk = tuple(flags[hi << 8:(hi + 1) << 8])
        if blk not in blocks:
            blocks[blk] = len(blocks)
            stage2.extend(blk)
        stage1.append(blocks[blk])

    # ---- lowercase ----
    lower_keys = sorted(lower)
    lower_pool = []
    lower_entries = []
    for c in lower_keys:
        m = lower[c]
        assert 1 <= len(m) <= 3
        lower_entries.append((c, len(lower_pool), len(m)))
        lower_pool.extend(m)

    # ---- NFC ----
    decomp_keys = sorted(decomp)
    for c in decomp_keys:
        assert 1 <= len(decomp[c]) <= 2
    ccc_ranges = []
    for c in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][1] == c - 1 and ccc_ranges[-1][2] == ccc[c]:
            ccc_ranges[-1][1] = c
        else:
            ccc_ranges.append([c, c, ccc[c]])
    comp_keys = sorted(comp_pairs)

    # ---- width map (ftfy fix_character_width) ----
    width = []
    for c in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(c))
        if alt == chr(c):
            width.append((0, 0, 0))
        else:
            assert 1 <= len(alt) <= 2
            width.append((len(alt), ord(alt[0]), ord(alt[1]) if len(alt) > 1 else 0))

    # ---- HTML ----
    html5 = html.entities.html5
    ent_names = sorted(html5)
    for n in ent_names:
        assert n.isascii() and 1 <= len(html5[n]) <= 2
    # ftfy's _build_html_entities: upper-case aliases of all-lower-case names.
    ftfy_upper = {}
    for name, char in html5.items():
        if name.endswith(";") and name == name.lower():
            up = "&" + name.upper()
            if html.unescape(up) == up:
                ftfy_upper[name.upper()] = char.upper()
    for v in ftfy_upper.values():
        assert 1 <= len(v) <= 3
    up_names = sorted(ftfy_upper)
    invalid_charrefs = sorted(html._invalid_charrefs.items())
    invalid_cps = sorted(html._invalid_codepoints)

    # ---- ftfy codecs ----
    codec_tabs = [codec_table(n, b) for n, b in FTFY_CODECS]
    strict1252_undefined = []
    for b in range(0x80, 0xA0):
        try:
            bytes([b]).decode("windows-1252")
        except UnicodeDecodeError:
            strict1252_undefined.append(b)
    inv = []
    for t in codec_tabs:
        # charmap_build keeps the last byte for a duplicated character
        d = {}
        for b, cp in enumerate(t):
            d[cp] = b
        inv.append(sorted(d.items()))

    # ---- letters matched case-insensitively by the regex module ----
    fold_alts = {}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        p = regex.compile("(?i)" + ch)
        alts = [c for c in range(MAX_CP)
                if chr(c) not in (ch, ch.upper()) and not (0xD800 <= c <= 0xDFFF)
                and p.fullmatch(chr(c))]
        assert len(alts) <= 1
        fold_alts[ch] = alts[0] if alts else 0

    # ---- write ----
    versions = (f"Python {sys.version.split()[0]}, unicodedata {unicodedata.unidata_version}, "
                f"regex {getattr(regex, '__version__', '?')}")
    try:
        import importlib.metadata as md
        versions += f" (package {md.version('regex')})"
    except Exception:
        pass

    out_c = []
    out_c.append("/* GENERATED by tools/gen_unicode_tables.py -- do not edit.\n"
                 f" * Source: {versions}.\n"
                 " * ftfy classes transcribed from ftfy 6.3.1 (Apache-2.0); HTML tables from\n"
                 " * Python's html module. */")
    out_c.append('#include "core/model/unicode_tables.h"\n\n/* clang-format off */')
    out_c.append(c_array("sdw_uc_stage1", "uint16_t", stage1))
    out_c.append(c_array("sdw_uc_stage2", "uint16_t", stage2, fmt="0x{:x}"))
    out_c.append(c_array("sdw_uc_lower_keys", "uint32_t", [e[0] for e in lower_entries],
                         fmt="0x{:x}"))
    out_c.append(c_array("sdw_uc_lower_ref", "uint16_t", [(e[1] << 2) | e[2] for e in lower_entries]))
    out_c.append(c_array("sdw_uc_lower_pool", "uint32_t", lower_pool, fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_uc_lower_count = {len(lower_entries)};")
    out_c.append(c_array("sdw_uc_decomp_keys", "uint32_t", decomp_keys, fmt="0x{:x}"))
    out_c.append(c_array("sdw_uc_decomp_vals", "uint32_t",
                         [x for c in decomp_keys for x in (decomp[c] + [0])[:2]], fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_uc_decomp_count = {len(decomp_keys)};")
    out_c.append(c_array("sdw_uc_ccc_ranges", "uint32_t",
                         [x for r in ccc_ranges for x in r], fmt="0x{:x}", per_line=12))
    out_c.append(f"const size_t sdw_uc_ccc_count = {len(ccc_ranges)};")
    out_c.append(c_array("sdw_uc_comp_keys", "uint64_t",
                         [(a << 21) | b for (a, b) in comp_keys], fmt="0x{:x}u", per_line=8))
    out_c.append(c_array("sdw_uc_comp_vals", "uint32_t", [comp_pairs[k] for k in comp_keys],
                         fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_uc_comp_count = {len(comp_keys)};")
    out_c.append(c_array("sdw_uc_width_map", "uint32_t", [x for w in width for x in w],
                         fmt="0x{:x}", per_line=15))

    def emit_entities(prefix, names, values):
        blob = ""
        offs = []
        for n in names:
            offs.append(len(blob))
            blob += n + "\0"
        vals = []
        for n in names:
            v = [ord(x) for x in values[n]]
            vals.extend((v + [0, 0, 0])[:3])
        s = []
        s.append(f"static const char {prefix}_blob[] =")
        chunk = ""
        for n in names:
            chunk += n.replace("\\", "\\\\").replace('"', '\\"') + "\\0"
            if len(chunk) > 80:
                s.append(f'    "{chunk}"')
                chunk = ""
        if chunk:
            s.append(f'    "{chunk}"')
        s[-1] += ";"
        out_c.append("\n".join(s))
        out_c.append(c_array(f"{prefix}_name_off", "uint16_t", offs))
        out_c.append(f"const char *const {prefix}_names = {prefix}_blob;")
        out_c.append(c_array(f"{prefix}_vals", "uint32_t", vals, fmt="0x{:x}", per_line=15))
        out_c.append(f"const size_t {prefix}_count = {len(names)};")

    emit_entities("sdw_uc_html5", ent_names, html5)
    emit_entities("sdw_uc_ftfy_upper", up_names, ftfy_upper)
    out_c.append(c_array("sdw_uc_invalid_charref_keys", "uint32_t",
                         [k for k, _ in invalid_charrefs], fmt="0x{:x}"))
    out_c.append(c_array("sdw_uc_invalid_charref_vals", "uint32_t",
                         [ord(v) for _, v in invalid_charrefs], fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_uc_invalid_charref_count = {len(invalid_charrefs)};")
    out_c.append(c_array("sdw_uc_invalid_codepoints", "uint32_t", invalid_cps, fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_uc_invalid_codepoint_count = {len(invalid_cps)};")

    out_c.append(c_array("sdw_ftfy_codec_decode", "uint16_t",
                         [x for t in codec_tabs for x in t], fmt="0x{:x}"))
    out_c.append(c_array("sdw_ftfy_codec_inv", "uint32_t",
                         [(cp << 8) | b for t in inv for (cp, b) in t], fmt="0x{:x}", per_line=10))
    out_c.append(c_array("sdw_ftfy_codec_inv_off", "uint16_t",
                         [sum(len(t) for t in inv[:i]) for i in range(len(inv) + 1)]))
    out_c.append(c_array("sdw_ftfy_strict1252_undefined", "uint8_t", strict1252_undefined,
                         fmt="0x{:x}"))
    out_c.append(f"const size_t sdw_ftfy_strict1252_undefined_count = {len(strict1252_undefined)};")
    mk = sorted(ftfy_mask)
    out_c.append(c_array("sdw_ftfy_mask_keys", "uint32_t", mk, fmt="0x{:x}"))
    out_c.append(c_array("sdw_ftfy_mask_vals", "uint32_t", [ftfy_mask[c] for c in mk],
                         fmt="0x{:x}", per_line=10))
    out_c.append(f"const size_t sdw_ftfy_mask_count = {len(mk)};")
    out_c.append(c_array("sdw_uc_fold_alt", "uint32_t",
                         [fold_alts[ch] for ch in "abcdefghijklmnopqrstuvwxyz"], fmt="0x{:x}"))

    h = []
    h.append("/* GENERATED by tools/gen_unicode_tables.py -- do not edit.\n"
             f" * Source: {versions}.\n"
             " *\n"
             " * Unicode and text-cleaning data for the CLIP tokenizer. The lookups that\n"
             " * use these tables live in core/model/text_clean.c. */")
    h.append("#ifndef SDW_MODEL_UNICODE_TABLES_H\n#define SDW_MODEL_UNICODE_TABLES_H\n")
    h.append("#include <stddef.h>\n#include <stdint.h>\n\n/* clang-format off */")
    h.append("/* Per-code-point flags, from the two-stage table below. */\nenum {")
    comments = {
        "SDW_UC_L": "regex module (?i)[\\p{L}] (the pre-tokenizer's letters)",
        "SDW_UC_N": "regex module (?i)[\\p{N}]",
        "SDW_UC_O": "regex module (?i)[^\\s\\p{L}\\p{N}]",
        "SDW_UC_RX_SPACE": "regex module \\s (whitespace_clean)",
        "SDW_UC_PY_SPACE": "str.isspace() (str.strip(), re \\s)",
        "SDW_UC_PY_WORD": "re \\w (ftfy's badness)",
        "SDW_UC_PY_DIGIT": "re \\d (ftfy's terminal escapes)",
        "SDW_UC_CASE_IGNORABLE": "skipped by the final-sigma rule",
        "SDW_UC_CASED": "cased and not case-ignorable (final sigma)",
        "SDW_UC_HAS_LOWER": "str.lower() changes it (see sdw_uc_lower_*)",
        "SDW_UC_NFC_SENSITIVE": "NFC_QC not Yes, or ccc != 0",
        "SDW_UC_FTFY": "in one of ftfy's mojibake classes (sdw_ftfy_mask_*)",
    }
    for n in flag_names:
        h.append(f"  {n} = 0x{BIT[n]:x}, /* {comments[n]} */")
    h.append("};\n")
    h.append("/* ftfy mojibake classes (bits of sdw_ftfy_mask_vals). */\nenum {")
    for i, (key, cname) in enumerate(FTFY_BITS):
        h.append(f"  {cname} = 0x{1 << i:x}, /* {key} */")
    h.append("};\n")
    h.append(f"enum {{ SDW_FTFY_CODEC_COUNT = {len(FTFY_CODECS)} }};")
    h.append("/* Codec order (ftfy's CHARMAP_ENCODINGS): " +
             ", ".join(n for n, _ in FTFY_CODECS) + ". */")
    h.append("enum { SDW_FTFY_LATIN1 = 0, SDW_FTFY_MACROMAN = 8 };")
    h.append("static inline int sdw_ftfy_codec_is_sloppy(int i) { return i >= 1 && i <= 6; }\n")
    h.append(f"extern const uint16_t sdw_uc_stage1[{len(stage1)}];")
    h.append(f"extern const uint16_t sdw_uc_stage2[{len(stage2)}];")
    h.append("static inline unsigned sdw_uc_flags(uint32_t cp) {\n"
             "  if (cp >= 0x110000u) return 0;\n"
             "  return sdw_uc_stage2[((size_t)sdw_uc_stage1[cp >> 8] << 8) | (cp & 0xffu)];\n}\n")
    decls = [
        ("uint32_t", "sdw_uc_lower_keys[]", "sorted code points that str.lower() changes"),
        ("uint16_t", "sdw_uc_lower_ref[]", "(offset into pool << 2) | length (1..3)"),
        ("uint32_t", "sdw_uc_lower_pool[]", ""),
        ("size_t", "sdw_uc_lower_count", ""),
        ("uint32_t", "sdw_uc_decomp_keys[]", "sorted; canonical one-level decompositions"),
        ("uint32_t", "sdw_uc_decomp_vals[]", "two per key, second 0 for singletons"),
        ("size_t", "sdw_uc_decomp_count", ""),
        ("uint32_t", "sdw_uc_ccc_ranges[]", "(first, last, ccc) triples, sorted"),
        ("size_t", "sdw_uc_ccc_count", ""),
        ("uint64_t", "sdw_uc_comp_keys[]", "sorted (first << 21 | second) of primary composites"),
        ("uint32_t", "sdw_uc_comp_vals[]", ""),
        ("size_t", "sdw_uc_comp_count", ""),
        ("uint32_t", "sdw_uc_width_map[]", "U+FF01..U+FFEF: (length, c0, c1) NFKC, length 0 = same"),
        ("char *const", "sdw_uc_html5_names", "html.entities.html5 keys, sorted, NUL-separated"),
        ("uint16_t", "sdw_uc_html5_name_off[]", ""),
        ("uint32_t", "sdw_uc_html5_vals[]", "three code points per name, 0-padded"),
        ("size_t", "sdw_uc_html5_count", ""),
        ("char *const", "sdw_uc_ftfy_upper_names", "ftfy's upper-case aliases ('AACUTE;')"),
        ("uint16_t", "sdw_uc_ftfy_upper_name_off[]", ""),
        ("uint32_t", "sdw_uc_ftfy_upper_vals[]", ""),
        ("size_t", "sdw_uc_ftfy_upper_count", ""),
        ("uint32_t", "sdw_uc_invalid_charref_keys[]", "html._invalid_charrefs"),
        ("uint32_t", "sdw_uc_invalid_charref_vals[]", ""),
        ("size_t", "sdw_uc_invalid_charref_count", ""),
        ("uint32_t", "sdw_uc_invalid_codepoints[]", "html._invalid_codepoints, sorted"),
        ("size_t", "sdw_uc_invalid_codepoint_count", ""),
        ("uint16_t", "sdw_ftfy_codec_decode[]", "256 code points per codec"),
        ("uint32_t", "sdw_ftfy_codec_inv[]", "(cp << 8 | byte), sorted per codec"),
        ("uint16_t", "sdw_ftfy_codec_inv_off[]", "codec i: [off[i], off[i+1])"),
        ("uint8_t", "sdw_ftfy_strict1252_undefined[]", "bytes strict windows-1252 rejects"),
        ("size_t", "sdw_ftfy_strict1252_undefined_count", ""),
        ("uint32_t", "sdw_ftfy_mask_keys[]", "sorted"),
        ("uint32_t", "sdw_ftfy_mask_vals[]", "SDW_FTFY_* bits"),
        ("size_t", "sdw_ftfy_mask_count", ""),
        ("uint32_t", "sdw_uc_fold_alt[26]",
         "the one non-ASCII code point that (?i)<letter> also matches, 0 if none"),
    ]
    for t, n, cmt in decls:
        h.append(f"extern const {t} {n};" + (f" /* {cmt} */" if cmt else ""))
    h.append("/* clang-format on */\n\n#endif")

    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "unicode_tables.h"), "w") as f:
        f.write("\n".join(h) + "\n")
    with open(os.path.join(args.out_dir, "unicode_tables.c"), "w") as f:
        f.write("\n\n".join(out_c) + "\n/* clang-format on */\n")
    print(f"unicode_tables: {len(blocks)} blocks, {len(lower_entries)} lower, "
          f"{len(decomp_keys)} decomp, {len(comp_keys)} comp, {len(ent_names)} entities, "
          f"{len(up_names)} ftfy aliases, {len(mk)} ftfy chars ({versions})", file=sys.stderr)


if __name__ == "__main__":
    main()
