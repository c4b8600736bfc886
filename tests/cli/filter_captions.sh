#!/usr/bin/env bash
# `sdw pipeline filter-captions` on a tiny dataset + latent store (shards of
# 16x16 noise images with chosen captions -> preprocess -> build -> encode
# --vae pixels). Expected results come from Python's re (whole-word,
# case-insensitive: (?<!\w)term(?!\w)) over the dataset's captions, read
# with pyarrow; every kept sample's latent, tokens and caption must be the
# source store's sample of the same key (the linking the seed's step never
# achieved), in dataset order; per-reason counts match; a rerun writes the
# same bytes; a source without latents gives the dataset only; usage errors.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.venv-test/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1
D=$tmp/src

$P - "$D" <<'EOF'
import io, os, sys, tarfile
import numpy as np
from PIL import Image
caps = ["A cat on the mat", "Cats are great pets", "a bobcat in the snow",
        "CAT! sitting quietly here", "stephen colbert on a stage with a cat",
        "a naked tree in winter with a cat", "cat", "tiny cat here", "the dog_cat hybrid",
        "un chat tr\u00e8s mignon, cat", "dog-friendly park photo", "lingerie advert with a dog",
        "Stephen  Colbert alone"]
d = sys.argv[1]
os.makedirs(d + "/shards")
rng = np.random.default_rng(3)
with tarfile.open(d + "/shards/00000.tar", "w", format=tarfile.PAX_FORMAT) as t:
    for i in range(39):
        key = "%09d" % i
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        for name, data in ((key + ".jpg", buf.getvalue()),
                           (key + ".txt", caps[i % len(caps)].encode())):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1700000000
            t.addfile(ti, io.BytesIO(data))
EOF
"$SDW" pipeline preprocess --data "$D" --min-size 0 --min-caption 1 --image-size 16 >/dev/null
"$SDW" pipeline build --data "$D" --val-size 4 >/dev/null
"$SDW" pipeline encode --data "$D" --vae pixels --image-size 16 --chunk-size 5 >/dev/null

# the reference: which keys each rule set keeps, and the reasons
check() { # out_dir rule-args-as-python-literal
  $P - "$D" "$1" "$2" <<'EOF'
import collections, json, os, re, struct, sys
import numpy as np, pyarrow.parquet as pq
src, out, rules = sys.argv[1], sys.argv[2], eval(sys.argv[3])
sys.path.insert(0, "tests/cli")
from latent_check import store

def has(text, term):
    return re.search(r"(?<!\w)" + re.escape(term) + r"(?!\w)", text) is not None

def judge(cap):
    c = cap.strip().lower()
    if len(c) < rules.get("min_chars", 0): return "too_short"
    if len(c.split()) < rules.get("min_words", 0): return "too_few_words"
    if any(has(c, t) for t in rules.get("exclude", [])): return "excluded"
    kw = rules.get("keywords", [])
    if kw and not any(has(c, t) for t in kw): return "no_keyword"
    return None

reasons = collections.Counter()
for split in ("train", "val"):
    t = pq.read_table("%s/dataset/%s.parquet" % (src, split)).to_pydict()
    want = []
    for i, cap in enumerate(t["caption"]):
        r = judge(cap)
        if r: reasons[r] += 1
        else: want.append(i)
    o = pq.read_table("%s/dataset/%s.parquet" % (out, split)).to_pydict()
    for col in t:
        assert o[col] == [t[col][i] for i in want], (split, col)
    if not want:
        assert not os.path.exists("%s/latents/%s/index.json" % (out, split))
        continue
    _, s_src = store("%s/latents/%s" % (src, split))
    by_key = {s["key"]: s for s in s_src}
    _, s_out = store("%s/latents/%s" % (out, split))
    assert [s["key"] for s in s_out] == [t["image_key"][i] for i in want], split
    for s in s_out:
        r = by_key[s["key"]]
        assert s["latent"].tobytes() == r["latent"].tobytes(), s["key"]
        assert s["ids"].tobytes() == r["ids"].tobytes() and s["caption"] == r["caption"]
    print("%s: kept %d of %d" % (split, len(want), len(t["caption"])))
m = json.load(open(out + "/manifests/filter-captions.json"))
assert m["state"] == "done" and m["failures"] == dict(reasons), (m["failures"], reasons)
cfg = json.load(open(out + "/dataset/dataset_config.json"))
assert cfg["filter"]["stage"] == "filter-captions"
print("reasons", dict(reasons))
EOF
}

O=$tmp/a
"$SDW" pipeline filter-captions --data "$D" --out "$O" --keywords "cat, Dog" \
  --exclude "stephen colbert" --chunk-size 3
check "$O" '{"keywords": ["cat", "dog"], "exclude": ["stephen colbert"]}'
# a rerun writes the same bytes
sum() { (cd "$1" && find dataset latents -type f | sort | xargs sha256sum); }
sum "$O" >"$tmp/a.sums"
"$SDW" pipeline filter-captions --data "$D" --out "$O" --keywords "cat, Dog" \
  --exclude "stephen colbert" --chunk-size 3
sum "$O" | cmp - "$tmp/a.sums"

O=$tmp/b
"$SDW" pipeline filter-captions --data "$D" --out "$O" --seed-rules
check "$O" '{"min_chars": 12, "min_words": 3, "exclude": ["nude", "naked", "nsfw", "explicit",
  "xxx", "erotic", "porn", "topless", "lingerie", "underwear"]}'

# no latents in the source: the dataset only
N=$tmp/nolat
mkdir -p "$N"
cp -r "$D/dataset" "$N/"
"$SDW" pipeline filter-captions --data "$N" --out "$tmp/c" --keywords cat
[ -s "$tmp/c/dataset/train.parquet" ] && [ ! -e "$tmp/c/latents" ]

set +e
"$SDW" pipeline filter-captions --data "$D" --out "$tmp/d" 2>/dev/null
[ $? -eq 2 ] || exit 1
"$SDW" pipeline filter-captions --data "$D" --out "$D" --keywords cat 2>/dev/null
[ $? -eq 2 ] || exit 1
"$SDW" pipeline filter-captions --data "$tmp/none" --out "$tmp/e" --keywords cat 2>"$tmp/err"
[ $? -eq 1 ] || exit 1
set -e
grep -F 'sdw pipeline build' "$tmp/err" >/dev/null
echo "filter-captions: ok"
