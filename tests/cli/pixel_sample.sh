#!/usr/bin/env bash
# Pixel-space runs (vae = pixels) sample everywhere. A tiny emoji set and its
# random CLIP come from `sdw demo --headless --limit 40 --steps 1` (its own
# run is not used); the UNet is assets/demo/unet.json (3 channels in and out).
#  - train with vae = pixels, val_prompts = a|b|c, val_every = 1: each epoch's
#    samples/val-step-*.png is one row of 3 images of 16x16 with 2-pixel
#    padding (PNG header read by Python: 3*16 + 4*2 = 56 wide, 16 + 2*2 = 20
#    high), the cells are not blank and the infotext names prompt "a";
#  - a detached pixel run, paused: `sdw ctl RUN sample x --seed 7 --steps 5
#    --wait` writes a 16x16 PNG; after a checkpoint at that same step, `sdw
#    sample --model RUN --prompt x --seed 7 --steps 5` (no -W/-H: the store's
#    16x16) writes a 16x16 PNG with the same pixels. The cross-check is the
#    trainer's in-process sampler (sdw_trainer_sample: the optimizer's EMA
#    buffer, the CLIP and tokenizer the trainer opened) against sdw sample's
#    path (demo_model.c: everything read back from the checkpoint file). Both
#    run on one thread, so the same float operations give the same bytes:
#    exact equality, no tolerance (seed 8 must differ: the check can fail);
#  - bad cases: --vae with a pixel model is a usage error (exit 2) naming
#    pixel space; vae = pixels on a VAE-latent store, and a VAE path on a
#    pixel store, refuse to start naming the key and the store; 17 val_prompts
#    and an empty one are configuration errors (exit 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"
export SDW_ASSETS="$PWD/assets"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

"$SDW" demo --headless --space pixels --dir "$tmp/demo" --limit 40 --steps 1 --no-eval \
  --preview-steps 1 \
  >"$tmp/demo.txt" 2>&1 || { cat "$tmp/demo.txt"; fail "demo"; }
store=$tmp/demo/data/latents/train
common=(--config assets/demo/train.ini --set "model=$PWD/assets/demo/unet.json"
  --set "train_data=$store" --set "text_encoder=$tmp/demo/text_encoder" --set threads=1
  --set batch_size=32 --set local_ranks=1
  --set arena_gb=1)

# validation grids: 36 images, batch 32: one step per epoch, a grid per epoch
"$SDW" train "${common[@]}" --run "$tmp/val" --set vae=pixels --set 'val_prompts=a|b|c' \
  --set val_every=1 --set max_steps=2 --set val_steps=2 --quiet
"$PY" - "$tmp/val/samples" <<'EOF'
import struct, sys, zlib
from PIL import Image
import numpy as np
for step in (1, 2):
    path = "%s/val-step-%08d.png" % (sys.argv[1], step)
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    w, h = struct.unpack(">II", head[16:24])
    assert (w, h) == (3 * 16 + 4 * 2, 16 + 2 * 2), (w, h)
    im = Image.open(path)
    assert im.text["parameters"].startswith("a\nSteps: 2,"), im.text
    a = np.asarray(im.convert("RGB")).astype(int)
    for i in range(3):  # each cell holds an image, not the black padding
        cell = a[2:18, 2 + 18 * i:18 + 18 * i]
        assert cell.std() > 1, (path, i, cell.std())
print("pixel_sample: val grids of 3 images, 56x20")
EOF

# control-socket samples on a paused, detached pixel run
R=$tmp/run
out=$("$SDW" train "${common[@]}" --run "$R" --set vae=pixels --set val_every=0 \
  --set save_every=0 --set sample_cfg=7.5 --detach --quiet)
pids+=("$(echo "$out" | awk '{print $NF}')")
up=0
for _ in $(seq 600); do
  if "$SDW" ctl --timeout 2000 "$R" status >/dev/null 2>&1; then
    up=1
    break
  fi
  sleep 0.1
done
[ $up = 1 ] || { cat "$R/train.log" || true; fail "the job did not come up"; }
[ "$("$SDW" ctl "$R" pause)" = paused ] || fail "pause"
ck=$("$SDW" ctl "$R" checkpoint)
[[ "$ck" == checkpoints/step-*.safetensors ]] || fail "checkpoint printed '$ck'"
png=$("$SDW" ctl "$R" sample x --seed 7 --steps 5 --cfg 7.5 --wait)
[[ "$png" == samples/sample-step-*.png ]] || fail "ctl sample printed '$png'"
"$SDW" ctl "$R" stop >/dev/null
for _ in $(seq 300); do
  grep -E '"state": *"stopped"' "$R/job.json" >/dev/null && break
  sleep 0.1
done
grep -E '"state": *"stopped"' "$R/job.json" >/dev/null || fail "the job did not stop"

# sdw sample from the run: no VAE, 16x16 (the training size) by default, the trainer's pixels
"$SDW" sample --model "$R" --prompt x --seed 7 --steps 5 --threads 1 --out "$tmp/cli.png" \
  >/dev/null 2>"$tmp/sample.err" || { cat "$tmp/sample.err"; fail "sdw sample"; }
grep "pixel space" "$tmp/sample.err" >/dev/null || fail "sample did not say pixel space"
# another seed: the comparison below can fail
"$SDW" sample --model "$R" --prompt x --seed 8 --steps 5 --threads 1 --out "$tmp/seed8.png" \
  >/dev/null 2>&1
"$PY" - "$R/$png" "$tmp/cli.png" "$tmp/seed8.png" <<'EOF'
import struct, sys
from PIL import Image
import numpy as np
assert (np.asarray(Image.open(sys.argv[1])) != np.asarray(Image.open(sys.argv[3]))).any()
for p in sys.argv[1:3]:
    w, h = struct.unpack(">II", open(p, "rb").read(24)[16:24])
    assert (w, h) == (16, 16), (p, w, h)
a, b = (np.asarray(Image.open(p).convert("RGB")) for p in sys.argv[1:3])
assert a.std() > 1, "blank sample"
assert (a == b).all(), ("the trainer and sdw sample differ", int(np.abs(a.astype(int) - b).max()))
info = Image.open(sys.argv[2]).text["parameters"]
assert info.startswith("x\nSteps: 5,") and "Seed: 7" in info and "Size: 16x16" in info, info
print("pixel_sample: ctl sample == sdw sample (16x16, exact)")
EOF

# the demo trains v-prediction: exporting its weights says so (a UNet folder
# holds no scheduler)
"$SDW" train --export-ema "$R" "$tmp/exported" 2>"$tmp/export.err" || fail "export"
grep "prediction_type = v_prediction" "$tmp/export.err" >/dev/null || fail "no export warning"
[ -f "$tmp/exported/weights.safetensors" ] || fail "export wrote no weights"

# bad cases
rc=0
"$SDW" sample --model "$R" --prompt x --vae tests/data/goldens/vae-tiny --out "$tmp/no.png" \
  2>"$tmp/err" || rc=$?
[ $rc = 2 ] || fail "--vae with a pixel model: exit $rc"
grep "pixel-space" "$tmp/err" >/dev/null || { cat "$tmp/err"; fail "--vae message"; }
[ ! -e "$tmp/no.png" ] || fail "--vae wrote an image"

"$PY" tools/make_latent_store.py "$tmp/latents" --count 8 --size 8 >/dev/null
rc=0
"$SDW" train "${common[@]}" --run "$tmp/bad1" --set "train_data=$tmp/latents" --set vae=pixels \
  --set max_steps=1 --quiet 2>"$tmp/err" || rc=$?
[ $rc != 0 ] || fail "vae = pixels on a VAE-latent store started"
grep "vae = pixels" "$tmp/err" >/dev/null && grep -F "$tmp/latents" "$tmp/err" >/dev/null ||
  { cat "$tmp/err"; fail "vae = pixels on latents: message"; }
rc=0
"$SDW" train "${common[@]}" --run "$tmp/bad2" --set vae=tests/data/goldens/vae-tiny \
  --set max_steps=1 --quiet 2>"$tmp/err" || rc=$?
[ $rc != 0 ] || fail "a VAE on a pixel store started"
grep "vae = pixels" "$tmp/err" >/dev/null && grep -F "$store" "$tmp/err" >/dev/null ||
  { cat "$tmp/err"; fail "VAE on pixels: message"; }
for bad in '1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17' 'a||b'; do
  rc=0
  "$SDW" train "${common[@]}" --run "$tmp/bad3" --set "val_prompts=$bad" --quiet \
    2>"$tmp/err" || rc=$?
  [ $rc = 2 ] || fail "val_prompts=$bad: exit $rc"
  grep val_prompts "$tmp/err" >/dev/null || { cat "$tmp/err"; fail "val_prompts message"; }
done
echo "pixel_sample: ok"
