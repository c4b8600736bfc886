#!/usr/bin/env bash
# `sdw pipeline emoji` against references nobody here wrote:
#  - which emoji and their names/groups: emoji-test.txt parsed in Python
#    (the first 400 fully-qualified lines, in order: the font draws them all,
#    single code points, U+FE0F forms and ZWJ sequences alike);
#  - captions: name + CLDR keywords (en.xml read by xml.etree, U+FE0F
#    stripped as CLDR writes its keys) + group, lower case;
#  - pixels: Pillow's FreeType rendering of the same emoji (with raqm
#    shaping for sequences, embedded colour) at the strike's 109 ppem on
#    white; the non-white bounding boxes must have the same size and the
#    pixels inside must agree within 2 levels (Pillow and img2dataset's
#    matting round alpha blending differently by at most 1 level; 2 leaves
#    margin, while a wrong glyph, strike or ligature differs by 100s);
#  - metadata: read by pyarrow; URLs point at the PNGs written;
#  - --captions names: TEXT is the name column; --only: the emoji of the
#    named group / subgroup (counted from emoji-test.txt in Python).
# Then errors: a corrupt font, a missing file (exit 1), usage (exit 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"
FONT=/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
TEST=/usr/share/unicode/emoji/emoji-test.txt
CLDR=/usr/share/unicode/cldr/common/annotations/en.xml
for f in "$FONT" "$TEST" "$CLDR"; do
  [ -r "$f" ] || { echo "missing $f: run make deps"; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SDW" pipeline emoji --help | grep -- --url-base >/dev/null
"$SDW" pipeline emoji --data "$tmp/d" --limit 400 >"$tmp/out.txt"
grep "400 images" "$tmp/out.txt" >/dev/null

"$PY" - "$tmp/d" "$TEST" "$CLDR" "$FONT" <<'EOF'
import json, os, sys, xml.etree.ElementTree as ET
import numpy as np, pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

d, test, cldr, font = sys.argv[1:5]
out = os.path.join(d, "emoji")
want = []
group = subgroup = ""
for line in open(test, encoding="utf-8"):
    line = line.rstrip("\n")
    if line.startswith("# group: "): group = line[9:]
    elif line.startswith("# subgroup: "): subgroup = line[12:]
    elif line and not line.startswith("#") and "; fully-qualified" in line:
        cps = [int(x, 16) for x in line.split(";")[0].split()]
        name = line.split("#", 1)[1].strip().split(" ", 2)[2]
        want.append((cps, name, group, subgroup))
want = want[:400]
kw = {}
for a in ET.parse(cldr).getroot().iter("annotation"):
    if a.get("type") != "tts":
        kw[a.get("cp").replace("\ufe0f", "")] = [k.strip() for k in a.text.split("|")]

t = pq.read_table(os.path.join(out, "metadata.parquet")).to_pylist()
assert len(t) == 400, len(t)
man = json.load(open(os.path.join(d, "manifests", "emoji.json")))
assert man["state"] == "done" and man["counts"]["out"] == 400 and man["counts"]["failed"] == 0, man
font109 = ImageFont.truetype(font, 109)
compared = 0
for i, (row, (cps, name, grp, sub)) in enumerate(zip(t, want)):
    key = "-".join("%04x" % c for c in cps)
    assert row["key"] == key, (row["key"], key)
    assert (row["name"], row["group"], row["subgroup"]) == (name, grp, sub), row
    assert row["codepoints"] == " ".join("U+%04X" % c for c in cps)
    emoji = "".join(map(chr, cps))
    parts = [name] + [k for k in kw.get(emoji.replace("\ufe0f", ""), []) if k and k != name] + [grp]
    assert row["TEXT"] == ", ".join(parts).lower(), (row["TEXT"], parts)
    path = os.path.join(out, "images", key + ".png")
    assert row["URL"] == "file://" + os.path.realpath(path), row["URL"]
    im = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert im.shape == (row["HEIGHT"], row["WIDTH"], 3) == (136, 136, 3), im.shape
    assert (row["similarity"], row["aesthetic_score"], row["pwatermark"], row["punsafe"]) == (1, 5, 0, 0)
    if i % 8 == 0 or len(cps) > 2:
        ref = Image.new("RGB", (200, 200), "white")
        ImageDraw.Draw(ref).text((20, 20), emoji, font=font109, embedded_color=True)
        ref = np.asarray(ref).astype(int)
        def crop(a):
            ys, xs = np.nonzero((a < 250).any(axis=2))
            return a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        a, b = crop(im), crop(ref)
        assert a.shape == b.shape, (key, a.shape, b.shape)
        diff = np.abs(a - b).max()
        assert diff <= 2, (key, diff)
        compared += 1
assert compared >= 50, compared
print("emoji: 400 rows match emoji-test.txt and CLDR; %d images match Pillow's rendering" % compared)
EOF

# --captions names: the TEXT column is the name column, nothing else
"$SDW" pipeline emoji --data "$tmp/n" --limit 30 --captions names >/dev/null
"$PY" - "$tmp/n/emoji/metadata.parquet" <<'EOF'
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pylist()
assert len(t) == 30 and all(r["TEXT"] == r["name"] for r in t), t[:3]
print("emoji: --captions names gives the names")
EOF
# --only: the groups and subgroups named, as emoji-test.txt assigns them
"$SDW" pipeline emoji --data "$tmp/o" --single --only "food & drink, transport-air" >/dev/null
"$PY" - "$tmp/o/emoji/metadata.parquet" "$TEST" <<'EOF'
import sys, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1]).to_pylist()
want, grp, sub = 0, None, None
for line in open(sys.argv[2], encoding="utf-8"):
    if line.startswith("# group: "):
        grp = line[9:].strip()
    elif line.startswith("# subgroup: "):
        sub = line[12:].strip()
    elif "; fully-qualified" in line:
        cps = [c for c in line.split(";")[0].split() if c != "FE0F"]
        want += len(cps) == 1 and (grp == "Food & Drink" or sub == "transport-air")
assert len(t) == want and want > 100, (len(t), want)
assert all(r["group"] == "Food & Drink" or r["subgroup"] == "transport-air" for r in t)
print("emoji: --only keeps the %d emoji of those groups" % want)
EOF
rc=0
"$SDW" pipeline emoji --data "$tmp/n" --captions short 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "bad --captions: exit $rc"; exit 1; }

# a corrupt font: one clear line, exit 1, no metadata
head -c 5000 "$FONT" >"$tmp/bad.ttf"
rc=0
"$SDW" pipeline emoji --data "$tmp/e" --font "$tmp/bad.ttf" 2>"$tmp/err.txt" || rc=$?
[ "$rc" = 1 ] || { echo "corrupt font: exit $rc"; exit 1; }
grep "bad.ttf" "$tmp/err.txt" >/dev/null
[ ! -e "$tmp/e/emoji/metadata.parquet" ]
rc=0
"$SDW" pipeline emoji --data "$tmp/e" --emoji-test "$tmp/none.txt" 2>"$tmp/err.txt" || rc=$?
[ "$rc" = 1 ] || { echo "missing emoji-test: exit $rc"; exit 1; }
grep "none.txt" "$tmp/err.txt" >/dev/null
rc=0
"$SDW" pipeline emoji --data "$tmp/e" --limit x 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "bad --limit: exit $rc"; exit 1; }
rc=0
"$SDW" pipeline emoji 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "no --data: exit $rc"; exit 1; }
echo "emoji: ok"
