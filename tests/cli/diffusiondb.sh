#!/usr/bin/env bash
# `sdw pipeline diffusiondb` on two tiny part zips built here with Python's
# zipfile + PIL (PNG images larger and smaller than the crop, one without a
# prompt, one corrupt, a JSON of {name: {p, se, c, st, sa}}):
#  - shards read back with Python's tarfile: members <stem>.jpg/.json/.txt in
#    name order, .txt = the prompt, .json with the generation fields;
#  - every JPEG is OpenCV's "shorter side -> 64 (INTER_AREA down, LANCZOS4
#    up) + center crop" of the PNG within JPEG q95's loss, compared on luma
#    (4:2:0 subsampling blurs chroma by design): mean |diff| <= 1.5 levels
#    (measured below 1; another image's is ~50);
#  - per-shard parquet (pyarrow): one row per image with status and reason;
#    DIR/metadata/diffusiondb.parquet: the successes with image_key/URL/TEXT;
#  - manifest failures no_prompt 1, decode_error 1; preprocess + build run on
#    the shards; a rerun skips done zips; a redone zip gives the same bytes
#    (SOURCE_DATE_EPOCH); usage errors.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.venv-test/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000
D=$tmp/d
mkdir -p "$tmp/zips"
$P - "$tmp/zips" <<'EOF'
import io, json, sys, zipfile
import numpy as np
from PIL import Image
out = sys.argv[1]
rng = np.random.default_rng(11)
sizes = [(96, 80), (40, 60), (64, 64), (120, 50), (70, 90)]
for part in (1, 2):
    name = "part-%06d" % part
    meta = {}
    with zipfile.ZipFile("%s/%s.zip" % (out, name), "w") as z:
        for i in range(5):
            fn = "%08x-%d.png" % (part * 1000 + i, i)
            w, h = sizes[i]
            small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, "PNG")
            data = buf.getvalue()
            if part == 2 and i == 3:
                data = data[:40]  # corrupt
            z.writestr(fn, data)
            if not (part == 1 and i == 4):  # no prompt for this one
                meta[fn] = {"p": "a generated picture number %d of part %d" % (i, part),
                            "se": 1000 + i, "c": 7.5, "st": 50, "sa": "k_lms"}
        z.writestr(name + ".json", json.dumps(meta))
EOF

"$SDW" pipeline diffusiondb --data "$D" --input "$tmp/zips" --image-size 64
ls "$D/shards" >"$tmp/ls"
for f in part-000001.tar part-000001.parquet part-000001_stats.json part-000002.tar; do
  grep -Fx "$f" "$tmp/ls" >/dev/null
done

$P - "$D" "$tmp/zips" <<'EOF'
import io, json, sys, tarfile, zipfile
import cv2, numpy as np, pyarrow.parquet as pq
d, zdir = sys.argv[1], sys.argv[2]

def ref(data, size=64):
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                       cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    s = size / min(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LANCZOS4)
    y, x = (nh - size) // 2, (nw - size) // 2
    return gray(img[y:y + size, x:x + size])

def gray(rgb):
    # luma only: JPEG's 4:2:0 chroma subsampling blurs colour edges by design
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.int32)

def dec(data):
    return gray(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB))

meta_rows = []
for part in (1, 2):
    name = "part-%06d" % part
    z = zipfile.ZipFile("%s/%s.zip" % (zdir, name))
    prompts = json.loads(z.read(name + ".json"))
    with tarfile.open("%s/shards/%s.tar" % (d, name)) as t:
        names = t.getnames()
        files = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    expect_ok = [n for n in sorted(z.namelist()) if n.endswith(".png") and n in prompts
                 and not (part == 2 and n.startswith("%08x" % 2003))]
    stems = [n[:-4] for n in expect_ok]
    assert names == [s + e for s in stems for e in (".jpg", ".json", ".txt")], names
    worst = 0
    for n, s in zip(expect_ok, stems):
        assert files[s + ".txt"].decode() == prompts[n]["p"]
        j = json.loads(files[s + ".json"])
        assert j["caption"] == prompts[n]["p"] and j["seed"] == prompts[n]["se"], j
        assert j["cfg"] == 7.5 and j["steps"] == 50 and j["sampler"] == "k_lms" and j["key"] == s
        got = dec(files[s + ".jpg"])
        assert got.shape == (64, 64), got.shape
        r = ref(z.read(n))
        worst = max(worst, np.abs(got - r).mean())
        meta_rows.append(("%s.tar::%s" % (name, s), "diffusiondb://%s/%s" % (name, n),
                          prompts[n]["p"]))
    # the comparison can fail: another image is far off
    other = ref(z.read(expect_ok[1]))
    first = dec(files[stems[0] + ".jpg"])
    far = np.abs(first - other).mean()
    print("%s: %d images, mean |sdw - cv2| worst %.3f levels (another image: %.1f)"
          % (name, len(stems), worst, far))
    assert worst <= 1.5 and far > 10
    t = pq.read_table("%s/shards/%s.parquet" % (d, name)).to_pydict()
    assert len(t["key"]) == 5 and t["key"] == sorted(t["key"])
    st = dict(zip(t["key"], t["status"]))
    assert sum(v == "success" for v in st.values()) == len(stems)
    bad = [k for k, v in st.items() if v != "success"]
    assert len(bad) == 1, st
    stats = json.load(open("%s/shards/%s_stats.json" % (d, name)))
    assert stats["count"] == 5 and stats["successes"] == len(stems), stats
m = pq.read_table(d + "/metadata/diffusiondb.parquet").to_pydict()
assert list(zip(m["image_key"], m["URL"], m["TEXT"])) == meta_rows, m
assert set(m["source"]) == {"diffusiondb"}
man = json.load(open(d + "/manifests/diffusiondb.json"))
assert man["state"] == "done" and man["failures"] == {"no_prompt": 1, "decode_error": 1}, man
print("metadata: %d rows" % len(meta_rows))
EOF

# preprocess and build take the shards as downloaded ones
"$SDW" pipeline preprocess --data "$D" --min-size 0 --image-size 64 >/dev/null
"$SDW" pipeline build --data "$D" --val-size 1 >/dev/null
$P -c "
import sys, pyarrow.parquet as pq
n = sum(pq.read_table(sys.argv[1] + '/dataset/%s.parquet' % s).num_rows for s in ('train', 'val'))
assert n == 8, n
" "$D"

# rerun: done zips are skipped; a redone zip has the same bytes
sha256sum "$D/shards/part-000002.tar" >"$tmp/sum"
"$SDW" pipeline diffusiondb --data "$D" --input "$tmp/zips" --image-size 64
grep -E '"skipped":[[:space:]]*2' "$D/manifests/diffusiondb.json" >/dev/null
rm "$D/shards/part-000002_stats.json"
"$SDW" pipeline diffusiondb --data "$D" --input "$tmp/zips/part-000001.zip" \
  --input "$tmp/zips/part-000002.zip" --image-size 64
sha256sum -c "$tmp/sum" >/dev/null

set +e
"$SDW" pipeline diffusiondb --data "$D" 2>/dev/null
[ $? -eq 2 ] || exit 1
"$SDW" pipeline diffusiondb --data "$D" --input "$tmp/nothing.zip" 2>/dev/null
[ $? -eq 1 ] || exit 1
echo "not a zip" >"$tmp/bad.zip"
"$SDW" pipeline diffusiondb --data "$tmp/e" --input "$tmp/bad.zip" 2>"$tmp/err"
[ $? -eq 1 ] || exit 1
set -e
[ "$(wc -l <"$tmp/err")" -eq 1 ]
echo "diffusiondb: ok"
