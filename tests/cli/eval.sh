#!/usr/bin/env bash
# `sdw eval`: the retrieval metric recomputed in numpy from what eval saw.
# A tiny demo run (40 emoji, 2 optimizer steps: the model barely differs
# from noise, which is fine: the test is about the measuring, not the
# model) gives MODEL and DATA; eval --images writes each sample next to its
# nearest training image. Python then reads the samples back (the
# nearest-neighbour upscale to 128 pixels undone exactly), the training images from the
# latent store's chunks with the `safetensors` package (F16 latents in
# [-1, 1]), pools both to 16x16 in float64, ranks by L2 and recomputes top-1
# and top-k per caption: every query's rank (training images closer than its
# own) and the fractions must equal eval's JSON (features agree to
# ~1e-6, a tie within that is improbable with 768 float features); chance
# must be k over the store's count; the report's counts and format fixed;
# the mean PSNR of each sample to its caption's own image as numpy finds it.
# Then usage errors (exit 2) and a model that does not exist (exit 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"
export SDW_ASSETS="$PWD/assets"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SDW" demo --headless --space pixels --dir "$tmp/demo" --limit 40 --steps 2 --no-eval \
  --preview-steps 2 \
  >"$tmp/demo.txt" 2>&1 || { cat "$tmp/demo.txt"; exit 1; }
"$SDW" eval --help | grep -- --no-baseline >/dev/null
"$SDW" eval "$tmp/demo/run" --data "$tmp/demo/data" --count 6 --k 3 --steps 2 --batch 4 \
  --json "$tmp/eval.json" --images "$tmp/img" >"$tmp/eval.txt"
grep "chance" "$tmp/eval.txt" >/dev/null

"$PY" - "$tmp/eval.json" "$tmp/img" "$tmp/demo/data/latents/train" <<'EOF'
import glob, json, os, sys
import numpy as np
from PIL import Image
from safetensors.numpy import load_file

rep, img_dir, store = sys.argv[1:4]
r = json.load(open(rep))
index = json.load(open(os.path.join(store, "index.json")))
lat, caps = [], []
for c in index["chunks"]:
    t = load_file(os.path.join(store, c["file"]))
    lat.append(t["latents"].astype(np.float64))
    b, off = t["captions.bytes"].tobytes(), t["captions.offsets"]
    caps += [b[off[i]:off[i + 1]].decode() for i in range(len(off) - 1)]
lat = np.concatenate(lat)
n = lat.shape[0]
assert r["format"] == "sdw-eval/1" and r["gallery"] == n == index["count"], (r, n)
assert r["k"] == 3 and r["count"] == 6 and r["steps"] == 2
assert abs(r["chance"]["topk"] - 3 / n) < 1e-12 and abs(r["chance"]["top1"] - 1 / n) < 1e-12
S = index["latent_shape"][2]  # the demo's images: 16x16 (32x32 before)
fac = S // 16
pool = lambda x: x.reshape(x.shape[0], 3, 16, fac, 16, fac).mean(axis=(3, 5)).reshape(x.shape[0], -1)
gal = pool(lat)
files = sorted(glob.glob(os.path.join(img_dir, "trained-*.png")))
assert len(files) == 6, files
top1 = topk = 0
psnr = []
for q, f in enumerate(files):
    im = Image.open(f)
    prompt = im.text["parameters"]
    up = 128 // S  # each cell is the image scaled up x(128 / S), nearest
    a = np.asarray(im.convert("RGB")).astype(np.float64)[:, :128][::up, ::up]  # the sample
    x = (a / 127.5 - 1.0).transpose(2, 0, 1)[None]
    d = ((gal - pool(x)) ** 2).sum(axis=1)
    own = min(d[i] for i in range(n) if caps[i] == prompt)
    mse = own / gal.shape[1]
    psnr.append(10 * np.log10(4 / mse) if mse > 4e-6 else 60.0)
    rank = sum(1 for i in range(n) if d[i] < own and caps[i] != prompt)
    assert r["trained"]["ranks"][q] == rank, (q, prompt, r["trained"]["ranks"][q], rank)
    top1 += rank < 1
    topk += rank < 3
assert abs(r["trained"]["top1"] - top1 / 6) < 1e-9, (r["trained"], top1)
assert abs(r["trained"]["topk"] - topk / 6) < 1e-9, (r["trained"], topk)
# the PSNR to the caption's own image: the PNG holds the sample rounded to
# 8 bits (+-1/255 on [-1, 1] values), worth well under 0.1 dB at these errors
assert abs(r["trained"]["own_psnr_db"] - np.mean(psnr)) < 0.1, (r["trained"], np.mean(psnr))
assert np.isfinite(r["untrained"]["own_psnr_db"])
assert 0 <= r["untrained"]["top1"] <= r["untrained"]["topk"] <= 1
assert len(r["untrained"]["ranks"]) == 6
print("eval: ranks %s, top-1 %d/6, top-3 %d/6 as numpy recomputes them"
      % (r["trained"]["ranks"], top1, topk))
EOF

rc=0
"$SDW" eval --data "$tmp/demo/data" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "no MODEL: exit $rc"; exit 1; }
rc=0
"$SDW" eval "$tmp/demo/run" --data "$tmp/demo/data" --count 0 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "--count 0: exit $rc"; exit 1; }
rc=0
"$SDW" eval "$tmp/nothing" --data "$tmp/demo/data" 2>"$tmp/err.txt" || rc=$?
[ "$rc" = 1 ] || { echo "missing model: exit $rc"; exit 1; }
grep nothing "$tmp/err.txt" >/dev/null
echo "eval: ok"
