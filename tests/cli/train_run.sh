#!/usr/bin/env bash
# `sdw train` in the foreground on a tiny seed UNet (seed-tiny, 704,836
# parameters) and a synthetic latent store (tools/make_latent_store.py: 64
# samples of 4x8x8 in 4 classes with their own caption token):
#  - the run directory: config.ini (re-readable), job.json finished, events.log,
#    metrics.jsonl, TensorBoard events read back by tensorboard's own reader,
#    checkpoints/ with latest, validation grids with an A1111 infotext;
#  - learning: with Min-SNR off the loss is the plain MSE of the noise
#    prediction. The UNet's output conv starts at zero (the seed's init), so
#    the first step predicts 0 and its loss is E[noise^2] = 1 (within 0.15:
#    the mean of 4 x 256 squared normals has std ~0.04). Predicting zero is
#    the best a model that learned nothing can do, so a loss well below 1
#    means it learned the data: the mean of the last 16 steps must be < 0.5
#    (measured 0.34) and the validation loss on a held-out store (fixed noise
#    and timesteps, EMA weights) must fall every epoch and end < 0.5
#    (measured 0.72 -> 0.34);
#  - the same config twice gives the same bytes of weights (determinism);
#  - --export-ema gives a UNet folder that sdw sample opens, and sdw sample
#    --model RUN (or a checkpoint) gives the same image (EMA), another with --no-ema;
#  - NaN data: skipped steps logged, max_nonfinite in a row fail the run with
#    the last good checkpoint intact;
#  - usage errors: unknown key (names file:line), missing --run: status 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" tools/make_latent_store.py "$tmp/store" --count 64
"$PY" tools/make_latent_store.py "$tmp/val" --count 16 --seed 99
cat >"$tmp/tiny.ini" <<EOF
# the tiny test run
[model]
model = seed-tiny
text_encoder = $G/clip-text-tiny
vae = $G/vae-tiny
[data]
train_data = $tmp/store
val_data = $tmp/val
[train]
batch_size = 4
grad_accum = 1
epochs = 4
lr = 1e-3
warmup = 5
min_snr = off
log_every = 1
threads = 1
val_steps = 5
arena_gb = 4
EOF

"$SDW" train --config "$tmp/tiny.ini" --run "$tmp/run" --quiet 2>"$tmp/err" || {
  cat "$tmp/err"
  exit 1
}
R=$tmp/run
for f in config.ini job.json events.log metrics.jsonl checkpoints/latest \
  checkpoints/step-00000064.safetensors samples/val-step-00000064.png; do
  [ -s "$R/$f" ] || { echo "missing $f"; exit 1; }
done
ls "$R"/events.out.tfevents.* >/dev/null
grep -E '^[0-9T:-]+Z INFO finished at step 64$' "$R/events.log" >/dev/null
test "$(cat "$R/checkpoints/latest")" = step-00000064.safetensors
# keep_last 3: steps 32, 48, 64 remain
test "$(ls "$R/checkpoints" | grep -c safetensors)" = 3

"$PY" - "$R" <<'EOF'
import json, math, os, sys
run = sys.argv[1]
job = json.load(open(os.path.join(run, "job.json")))
assert job["format"] == "sdw-job/1" and job["state"] == "finished", job
assert job["step"] == 64 and job["total_steps"] == 64 and job["epoch"] == 4, job
assert job["last_checkpoint"] == "checkpoints/step-00000064.safetensors", job
lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
train = [l for l in lines if "loss" in l]
val = [l for l in lines if "val_loss" in l]
assert [l["step"] for l in train] == list(range(1, 65)), [l["step"] for l in train]
for l in train:
    for k in ("epoch", "lr", "grad_norm", "img_per_s", "step_ms", "mem_mb", "time"):
        assert k in l and math.isfinite(l[k]), (k, l)
first, last16 = train[0]["loss"], sum(l["loss"] for l in train[-16:]) / 16
assert abs(first - 1.0) < 0.15, f"first loss {first}: the zero-init UNet predicts 0"
assert last16 < 0.5, f"last 16 steps average {last16}: not learning"
v = [l["val_loss"] for l in val]
assert len(v) == 4 and all(b < a for a, b in zip(v, v[1:])) and v[-1] < 0.5, v
print(f"loss: first step {first:.3f}, last 16 steps {last16:.3f}; val {v}")

# TensorBoard's own reader sees the same scalars
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(run)
ea.Reload()
tags = ea.Tags()["scalars"]
for t in ("train/loss", "train/lr", "train/grad_norm", "train/val_loss"):
    assert t in tags, (t, tags)
tb = ea.Scalars("train/loss")
assert [e.step for e in tb] == list(range(1, 65))
import numpy as np
assert all(np.float32(e.value) == np.float32(l["loss"]) for e, l in zip(tb, train))

# the validation grid: 4 images of 16x16 with 2-pixel padding, A1111 infotext
from PIL import Image
im = Image.open(os.path.join(run, "samples/val-step-00000064.png"))
assert im.size == (4 * 16 + 5 * 2, 16 + 2 * 2), im.size
info = im.info["parameters"]
assert info.startswith("epic mountain landscape") and "Steps: 5" in info and "Seed: 42" in info, info
EOF

# config.ini is the resolved config and reads back to the same text
"$SDW" train --print-config --config "$R/config.ini" >"$tmp/again.ini"
grep -v '^#' "$R/config.ini" >"$tmp/a"
grep -v '^#' "$tmp/again.ini" >"$tmp/b"
cmp "$tmp/a" "$tmp/b"

# the same config again: the same weights, bit for bit
"$SDW" train --config "$tmp/tiny.ini" --run "$tmp/run2" --quiet --set vae= 2>/dev/null
"$PY" - "$R/checkpoints/step-00000064.safetensors" "$tmp/run2/checkpoints/step-00000064.safetensors" <<'EOF'
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys()
assert all(a[k].tobytes() == b[k].tobytes() for k in a), "runs differ"
EOF

# a finished run asked to continue stays finished
"$SDW" train --run "$R" --quiet 2>/dev/null
test "$(grep -c 'finished at step 64' "$R/events.log")" = 2

# export the EMA weights and sample from them
"$SDW" train --export-ema "$R" "$tmp/ema" 2>/dev/null
[ -s "$tmp/ema/config.json" ] && [ -s "$tmp/ema/weights.safetensors" ]
# and on to the LDM and diffusers layouts through sdw convert
"$SDW" convert "$tmp/ema" "$tmp/ema-ldm.safetensors" --format ldm 2>/dev/null
"$SDW" convert "$tmp/ema" "$tmp/ema-diffusers" --format diffusers 2>/dev/null
[ -s "$tmp/ema-ldm.safetensors" ] && [ -s "$tmp/ema-diffusers/unet/config.json" ]
"$SDW" sample --threads 1 --model "$tmp/ema" --text-encoder "$G/clip-text-tiny" --vae "$G/vae-tiny" \
  --width 16 --height 16 --steps 3 --prompt "class 1" --out "$tmp/s.png" 2>/dev/null
[ -s "$tmp/s.png" ]
# sdw sample straight from the run (its latest checkpoint; text encoder and VAE
# from its config.ini): the EMA weights by default, the raw ones with --no-ema
"$SDW" sample --threads 1 --model "$R" --width 16 --height 16 --steps 3 --prompt "class 1" \
  --out "$tmp/run-ema.png" 2>/dev/null
# without -W/-H a run samples at its training images' size (the store's
# image_size: 16, its latents 8x8 through the f=2 VAE), not at 512
"$SDW" sample --threads 1 --model "$R" --steps 1 --prompt "class 1" --out "$tmp/run-size.png" \
  2>/dev/null
"$PY" -c "from PIL import Image; import sys; s=Image.open(sys.argv[1]).size; assert s==(16,16), s" \
  "$tmp/run-size.png"
"$SDW" sample --threads 1 --model "$R/checkpoints/step-00000064.safetensors" --no-ema --width 16 \
  --height 16 --steps 3 --prompt "class 1" --out "$tmp/run-raw.png" 2>/dev/null
"$PY" - "$tmp/s.png" "$tmp/run-ema.png" "$tmp/run-raw.png" <<'EOF'
import sys
import numpy as np
from PIL import Image
exported, ema, raw = (np.asarray(Image.open(p)) for p in sys.argv[1:])
assert (exported == ema).all(), "the run's EMA sample differs from the exported EMA weights'"
assert not (ema == raw).all(), "--no-ema gave the EMA image"
EOF

# non-finite steps: a store of NaN latents on top of the finished run (2 more
# epochs): each step is skipped and logged, max_nonfinite = 3 in a row fail the
# run, and the last good checkpoint stays the latest, byte for byte
"$PY" tools/make_latent_store.py "$tmp/nan" --count 64 --nan
cp "$R/checkpoints/step-00000064.safetensors" "$tmp/good.safetensors"
set +e
"$SDW" train --run "$R" --quiet --set train_data="$tmp/nan" --set epochs=6 --set max_nonfinite=3 \
  2>"$tmp/err"
rc=$?
set -e
test $rc = 1
grep -F "3 non-finite steps in a row" "$tmp/err" >/dev/null
grep -E '"state":"failed"' "$R/job.json" >/dev/null
test "$(grep -c '"skipped":true' "$R/metrics.jsonl")" = 3
test "$(grep -c 'WARN step 6[5-7] skipped: non-finite loss' "$R/events.log")" = 3
test "$(cat "$R/checkpoints/latest")" = step-00000064.safetensors
cmp "$R/checkpoints/step-00000064.safetensors" "$tmp/good.safetensors"

# usage errors
set +e
printf 'lr = 1\nbogus_key = 2\n' >"$tmp/bad.ini"
"$SDW" train --config "$tmp/bad.ini" --run "$tmp/x" 2>"$tmp/err"
rc=$?
set -e
test $rc = 2
grep -F "bad.ini:2" "$tmp/err" >/dev/null
grep -F "bogus_key" "$tmp/err" >/dev/null
set +e
"$SDW" train --config "$tmp/tiny.ini" 2>/dev/null
rc=$?
"$SDW" train --config "$tmp/tiny.ini" --run "$tmp/y" --set nokey 2>/dev/null
rc2=$?
set -e
test $rc = 2 && test $rc2 = 2
[ ! -e "$tmp/x" ] && [ ! -e "$tmp/y" ]

# every configuration key is documented in sdw.conf(5) with its default
conf=$(mandoc -T utf8 man/sdw.conf.5 | sed 's/.\x08//g')
"$SDW" train --print-config | grep -v '^#' | while read -r key _ value; do
  grep -E "^ +$key \(default: (‘${value//./\\.}’|empty)\)" <<<"$conf" >/dev/null ||
    { echo "sdw.conf.5 lacks '$key' with default '$value'"; exit 1; }
done
