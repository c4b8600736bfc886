#!/usr/bin/env bash
# `sdw demo --headless` (the default, --space vae), shortened (60 emoji, 40 train-vae
# steps, 4 optimizer steps, 2-step previews, a 4-caption report):
#  - eight stages, each manifest done: the pixel store (encode-pixels), the
#    VAE (train-vae) and the latent store it encodes (encode);
#  - the latent store holds 4x8x8 latents of the 16x16 images, scaled by the
#    scaling factor in the VAE's config.json, as many as the pixel store;
#  - the run trains unet-vae.json (4 channels) with vae = the trained VAE,
#    and its grid shows 16x16 images (5 cells of 128 pixels);
#  - the report's gallery is the pixel store (chance 5 / its images);
#  - `sdw sample` on the run gives the grid's "red apple" pixel for pixel
#    (the run's VAE and v-prediction, as the demo's previews);
#  - the same directory with --space pixels is a one-line refusal.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SDW" demo --headless --dir "$tmp/demo" --limit 60 --vae-steps 40 --steps 4 \
  --minutes 5 --preview-steps 2 --eval-count 4 --eval-steps 2 >"$tmp/out.txt" 2>&1 ||
  { cat "$tmp/out.txt"; exit 1; }
grep "\[7/8\] pipeline train-vae" "$tmp/out.txt" >/dev/null
grep "sample grid" "$tmp/out.txt" >/dev/null

"$PY" - "$tmp/demo" <<'PYEOF'
import json, os, sys
import numpy as np
from PIL import Image
from safetensors.numpy import load_file

d = sys.argv[1]
data = os.path.join(d, "data")
for s in ["emoji", "filter", "download", "preprocess", "build", "encode-pixels", "train-vae",
          "encode"]:
    m = json.load(open(os.path.join(data, "manifests", s + ".json")))
    assert m["state"] == "done", (s, m["state"])
pix = json.load(open(os.path.join(data, "pixels", "train", "index.json")))
lat = json.load(open(os.path.join(data, "latents", "train", "index.json")))
vae = json.load(open(os.path.join(data, "vae", "config.json")))
assert pix["latent_shape"] == [3, 16, 16] and pix["vae"] == "pixels", pix
assert lat["latent_shape"] == [4, 8, 8] and lat["image_size"] == 16, lat
assert lat["count"] == pix["count"] == 60, (lat["count"], pix["count"])
assert vae["_class_name"] == "AutoencoderKL" and vae["block_out_channels"] == [32, 64], vae
assert abs(lat["scaling_factor"] - vae["scaling_factor"]) < 1e-6 * vae["scaling_factor"]
assert lat["vae"].split(" (")[0] == os.path.realpath(os.path.join(data, "vae")), lat["vae"]
t = load_file(os.path.join(data, "latents", "train", lat["chunks"][0]["file"]))
z = t["latents"].astype(np.float32)
assert z.shape[1:] == (4, 8, 8) and np.isfinite(z).all() and 0.2 < z.std() < 5, z.std()

config = dict(l.split(" = ", 1) for l in open(os.path.join(d, "run", "config.ini")).read().splitlines()
              if " = " in l and not l.startswith("#"))
assert config["model"].endswith("unet-vae.json"), config["model"]
assert os.path.realpath(config["vae"]) == os.path.realpath(os.path.join(data, "vae")), config
g = Image.open(os.path.join(d, "demo-grid.png"))
assert g.size == (5 * 128 + 4 * 2, 128), g.size
assert "Size: 16x16" in g.text["parameters"], g.text["parameters"]
r = json.load(open(os.path.join(d, "eval.json")))
assert r["format"] == "sdw-eval/1" and r["count"] == 4
assert os.path.realpath(r["store"]) == os.path.realpath(os.path.join(data, "pixels", "train"))
assert abs(r["chance"]["topk"] - 5 / 60) < 1e-12, r["chance"]
print("demo --space vae: stages, stores, VAE, run, grid and report as documented")
PYEOF

# sdw sample on the run decodes through the same VAE with the run's
# prediction type: the grid's first cell, pixel for pixel
"$SDW" sample --model "$tmp/demo/run" -W 16 -H 16 --steps 2 --cfg 1 --seed 42 \
  --prompt "red apple" --out "$tmp/apple.png" >/dev/null 2>&1
"$PY" - "$tmp/demo/demo-grid.png" "$tmp/apple.png" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
cell = np.asarray(Image.open(sys.argv[1]).convert("RGB"))[:128, :128][::8, ::8].astype(int)
one = np.asarray(Image.open(sys.argv[2]).convert("RGB")).astype(int)
assert one.shape == (16, 16, 3) and np.abs(cell - one).max() == 0, np.abs(cell - one).max()
PYEOF

rc=0
"$SDW" demo --headless --space pixels --dir "$tmp/demo" --steps 6 --no-eval >"$tmp/err.txt" 2>&1 ||
  rc=$?
[ "$rc" = 2 ] && grep -- "--space" "$tmp/err.txt" >/dev/null ||
  { echo "pixels over a VAE demo: exit $rc"; cat "$tmp/err.txt"; exit 1; }
echo "demo_vae: ok"
