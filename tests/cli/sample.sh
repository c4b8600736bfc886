#!/usr/bin/env bash
# `sdw sample` end to end on the tiny golden parts (tests/data/goldens):
#  - images equal diffusers' StableDiffusionPipeline (golden txt2img-tiny, made by
#    tools/gen_txt2img_golden.py) for DDIM, DDIM with eta 1, Euler and DPM++ 2M
#    Karras, torch-cpu noise at seeds 0, 42, 43 and 2^32-1, with and without
#    negative prompts;
#  - the "parameters" text read back by AUTOMATIC1111's parser (a1111_infotext.py)
#    gives the prompt, negative, steps, sampler, CFG, seed, size, model hash;
#  - several images: NNNN_<prompt>.png files with seed + i, and grid.png;
#  - same settings -> identical bytes; philox and torch-cpu noise differ;
#    --low-memory gives the same bytes;
#  - a seed UNet bundle with --text-encoder / --vae, the seed's .pt when its golden
#    is in the tree;
#  - errors: one line "sdw: ...", status 2 for usage errors, 1 otherwise, 130 after
#    SIGINT, and no PNG left behind.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/tests/data/goldens
T=$G/txt2img-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# One thread: the tiny models gain nothing from more, and the test machine may be
# busy (results do not depend on the thread count).
run() { "$SDW" sample --threads 1 "$@" 2>>"$tmp/stderr.log"; }

# An SD 1.x pipeline folder made of the golden parts.
mkdir "$tmp/pipe"
echo '{"_class_name": "StableDiffusionPipeline"}' >"$tmp/pipe/model_index.json"
ln -s "$G/sd15-unet-tiny" "$tmp/pipe/unet"
ln -s "$G/clip-text-tiny" "$tmp/pipe/text_encoder"
ln -s "$G/vae-tiny" "$tmp/pipe/vae"

# compare_golden PNG CASE: sdw's pixels against the float64 diffusers run. sdw's
# 8-bit value must be the float64 value x*255 rounded, up to 0.01 levels: a pixel
# within 0.01 of a rounding boundary may go either way, any other must round as
# the float64 run does. diffusers' own float32 run stays within 0.0015 levels of
# its float64 run on these cases (README.txt), sdw's float32 error is of the same
# kind (~1e-5 relative through UNet, VAE and sampler), so 0.01 leaves ~7x margin
# while a wrong token, noise value, timestep or guidance term moves pixels by
# whole levels. Also at least half the pixels must be unclamped (0 < x < 1), so
# the comparison is not one of saturated images.
compare_golden() {
  python3 - "$1" "$T/io.safetensors" "$2" <<'EOF'
import json, struct, sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png
png, golden, case = sys.argv[1:]
raw = open(golden, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
def get(name):
    e = head[name]
    b, t = e["data_offsets"]
    code = {"F64": "d", "U8": "B"}[e["dtype"]]
    data = raw[8 + n + b:8 + n + t]
    return e["shape"], struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)
shape, f64 = get(case + ".image_f64")
w, h, px, _ = read_png(png)
assert [h, w, 3] == shape, (png, [h, w, 3], shape)
worst = max(abs(p - 255 * v) for p, v in zip(px, f64))
inside = sum(1 for v in f64 if 0 < v < 1)
print("%s vs %s: max |sdw - 255 x_f64| = %.4f levels, %d of %d unclamped" %
      (png.split("/")[-1], case, worst, inside, len(f64)))
sys.exit(0 if worst <= 0.51 and inside * 2 >= len(f64) else 1)
EOF
}

# expect_fields PNG KEY=VALUE...: what AUTOMATIC1111's parser reads from the PNG's
# "parameters" text must match ("<absent>" for a key it does not find).
expect_fields() {
  python3 - "$@" <<'EOF'
import sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png, parse_generation_parameters
_, _, _, texts = read_png(sys.argv[1])
got = parse_generation_parameters(texts["parameters"])
bad = 0
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if got.get(k, "<absent>") != v:
        print("%s: %r reads back as %r, want %r" % (sys.argv[1], k, got.get(k, "<absent>"), v))
        bad = 1
sys.exit(bad)
EOF
}

unet_hash=$(sha256sum "$G/sd15-unet-tiny/weights.safetensors" | cut -c1-10)

# --- the golden cases, one image each -----------------------------------------------
fox="a red fox in the snow, photograph"
run --model "$tmp/pipe" --tokenizer clip --rng torch-cpu --prompt "$fox" --seed 0 --steps 4 \
  -W 64 -H 64 --out "$tmp/ddim_s0.png" >/dev/null
compare_golden "$tmp/ddim_s0.png" ddim_s0
run --model "$tmp/pipe" --tokenizer clip --rng torch-cpu --prompt "a lighthouse at dusk" \
  --negative "blurry, low quality" --seed 42 --steps 4 --eta 1 -W 64 -H 48 \
  --out "$tmp/ddim_eta.png" >/dev/null
compare_golden "$tmp/ddim_eta.png" ddim_eta
run --model "$tmp/pipe" --tokenizer clip --rng torch-cpu --prompt "a bowl of ramen" \
  --seed 4294967295 --steps 5 --cfg 5 --sampler euler --width=48 -H64 \
  --out "$tmp/euler_smax.png" >/dev/null
compare_golden "$tmp/euler_smax.png" euler_smax
run --model "$tmp/pipe" --tokenizer clip --rng=torch-cpu --prompt "an astronaut riding a horse" \
  --negative cartoon --seed 42 --steps 5 --sampler dpmpp-2m --karras -W 64 -H 64 \
  --out "$tmp/dpmpp_karras.png" >/dev/null
compare_golden "$tmp/dpmpp_karras.png" dpmpp_karras

# What AUTOMATIC1111 reads back.
p=$tmp/ddim_eta.png
expect_fields "$p" "Prompt=a lighthouse at dusk" "Negative prompt=blurry, low quality" "Steps=4" \
  "Sampler=DDIM" "CFG scale=7.5" "Seed=42" "Size-1=64" "Size-2=48" "Eta DDIM=1" \
  "Model hash=$unet_hash" "Model=pipe" "RNG=CPU"
p=$tmp/dpmpp_karras.png
expect_fields "$p" "Sampler=DPM++ 2M" "Schedule type=Karras" "Seed=42" "Negative prompt=cartoon"
p=$tmp/euler_smax.png
expect_fields "$p" "Sampler=Euler" "CFG scale=5" "Seed=4294967295" "Negative prompt=" \
  "Eta DDIM=<absent>"

# --- several images: names, seeds, grid ---------------------------------------------
run --model "$tmp/pipe" --tokenizer clip --rng torch-cpu --prompt "$fox" -n 2 --seed 42 \
  --steps 4 -W 64 -H 64 --out "$tmp/two" >"$tmp/two.list"
want="$tmp/two/0000_a red fox in the snow_ photograph.png
$tmp/two/0001_a red fox in the snow_ photograph.png
$tmp/two/grid.png"
if [ "$(cat "$tmp/two.list")" != "$want" ]; then
  echo "files written:"
  cat "$tmp/two.list"
  exit 1
fi
compare_golden "$tmp/two/0000_a red fox in the snow_ photograph.png" ddim_s42
compare_golden "$tmp/two/0001_a red fox in the snow_ photograph.png" ddim_s43
expect_fields "$tmp/two/0001_a red fox in the snow_ photograph.png" "Seed=43"
expect_fields "$tmp/two/grid.png" "Seed=42"
python3 - "$tmp/two" <<'EOF'
import sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png
d = sys.argv[1]
w, h, grid, _ = read_png(d + "/grid.png")
_, _, a, _ = read_png(d + "/0000_a red fox in the snow_ photograph.png")
_, _, b, _ = read_png(d + "/0001_a red fox in the snow_ photograph.png")
assert (w, h) == (128, 64), (w, h)
for y in range(64):
    row = grid[y * 384:(y + 1) * 384]
    assert row[:192] == a[y * 192:(y + 1) * 192] and row[192:] == b[y * 192:(y + 1) * 192], y
EOF

# Five prompts from a file (blank lines skipped), negatives paired with them: a
# 4 + 1 grid with a black cell, the seed's file naming (tricky characters).
printf 'a cat, sitting\n\n  café: "naïve"/art  \nx\n!!!\nthe end\n' >"$tmp/prompts.txt"
run --model "$tmp/pipe" --prompts-file "$tmp/prompts.txt" --negative n1 --negative n2 \
  --negative n3 --negative n4 --negative n5 --steps 1 -W 16 -H 16 --seed 7 \
  --out "$tmp/five/" >"$tmp/five.list"
want="$tmp/five/0000_a cat_ sitting.png
$tmp/five/0001_café_ _naïve__art.png
$tmp/five/0002_x.png
$tmp/five/0003____.png
$tmp/five/0004_the end.png
$tmp/five/grid.png"
if [ "$(cat "$tmp/five.list")" != "$want" ]; then
  echo "files written:"
  cat "$tmp/five.list"
  exit 1
fi
expect_fields "$tmp/five/0001_café_ _naïve__art.png" 'Prompt=café: "naïve"/art' \
  "Negative prompt=n2"
expect_fields "$tmp/five/0004_the end.png" "Seed=11"
python3 - "$tmp/five/grid.png" <<'EOF'
import sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png
w, h, px, _ = read_png(sys.argv[1])
assert (w, h) == (64, 32), (w, h)
# the last row's cells 1..3 are empty: black
assert all(px[(16 + y) * 192 + 48 + i] == 0 for y in range(16) for i in range(144))
EOF

# --low-memory (one part in memory at a time, each reopened per batch) makes the
# same bytes, also with batches of 2 and with the seed's .pt-free bundle layout.
run --model "$tmp/pipe" --prompts-file "$tmp/prompts.txt" --negative n1 --negative n2 \
  --negative n3 --negative n4 --negative n5 --steps 1 -W 16 -H 16 --seed 7 --low-memory \
  --out "$tmp/five-low/" >/dev/null
for f in "$tmp"/five/*.png; do cmp "$f" "$tmp/five-low/$(basename "$f")"; done
run --model "$tmp/pipe" --prompts-file "$tmp/prompts.txt" --steps 2 -W 16 -H 16 -n 2 \
  --out "$tmp/b2/" >/dev/null
run --model "$tmp/pipe" --prompts-file "$tmp/prompts.txt" --steps 2 -W 16 -H 16 -n 2 \
  --low-memory --out "$tmp/b2-low/" >/dev/null
for f in "$tmp"/b2/*.png; do cmp "$f" "$tmp/b2-low/$(basename "$f")"; done

# Prompts with separators survive the round trip through the infotext.
odd='a "quoted" cat: 50%, with \backslash'
run --model "$tmp/pipe" --prompt "$odd" --negative 'ugly, "bad": x' --steps 2 -W 16 -H 16 \
  --out "$tmp/odd.png" >/dev/null
expect_fields "$tmp/odd.png" "Prompt=$odd" 'Negative prompt=ugly, "bad": x' "RNG=philox"

# --- determinism ----------------------------------------------------------------------
run --model "$tmp/pipe" --prompt "$fox" --steps 3 -W 32 -H 32 --out "$tmp/d1.png" >/dev/null
run --model "$tmp/pipe" --prompt "$fox" --steps 3 -W 32 -H 32 --out "$tmp/d2.png" >/dev/null
cmp "$tmp/d1.png" "$tmp/d2.png"
run --model "$tmp/pipe" --prompt "$fox" --steps 3 -W 32 -H 32 --rng torch-cpu \
  --out "$tmp/d3.png" >/dev/null
if cmp -s "$tmp/d1.png" "$tmp/d3.png"; then
  echo "philox and torch-cpu noise gave the same image"
  exit 1
fi

# --- the seed's UNet, parts given separately ------------------------------------------
run --model "$G/seed-unet-tiny" --text-encoder "$G/clip-text-tiny" --vae "$G/vae-tiny" \
  --prompt "$fox" --steps 3 -W 32 -H 32 --out "$tmp/seed.png" >/dev/null
expect_fields "$tmp/seed.png" "Model=seed-unet-tiny" \
  "Model hash=$(sha256sum "$G/seed-unet-tiny/weights.safetensors" | cut -c1-10)"
grep -q "seed-unet-tiny: seed UNet, 704,836 parameters.*ddim (seed)" "$tmp/stderr.log"
# The flavour can be overridden, and it matters.
run --model "$G/seed-unet-tiny" --text-encoder "$G/clip-text-tiny" --vae "$G/vae-tiny" \
  --prompt "$fox" --steps 3 -W 32 -H 32 --scheduler-flavor diffusers \
  --out "$tmp/seed-diffusers.png" >/dev/null
if cmp -s "$tmp/seed.png" "$tmp/seed-diffusers.png"; then
  echo "--scheduler-flavor diffusers changed nothing"
  exit 1
fi
CK=$G/seed-checkpoint-tiny
if [ -f "$CK/checkpoint.pt" ]; then
  for w in --ema --no-ema; do
    run --model "$CK/checkpoint.pt" --text-encoder "$G/clip-text-tiny" --vae "$G/vae-tiny" \
      --prompt "$fox" --steps 2 -W 32 -H 32 $w --out "$tmp/pt$w.png" >/dev/null
  done
  if cmp -s "$tmp/pt--ema.png" "$tmp/pt--no-ema.png"; then
    echo "--ema and --no-ema gave the same image"
    exit 1
  fi
fi

# --- errors ---------------------------------------------------------------------------
expect_error() { # status pattern args...
  local want=$1 pattern=$2
  shift 2
  set +e
  err=$("$SDW" sample --threads 1 "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -ne "$want" ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] ||
    ! grep -q -- "^sdw: .*$pattern" <<<"$err"; then
    echo "sdw sample $*: exit $rc (want $want), stderr:"
    echo "$err"
    exit 1
  fi
  if [ -e "$tmp/bad.png" ] || [ -e "$tmp/bad" ]; then
    echo "sdw sample $*: wrote an output despite the error"
    exit 1
  fi
}
expect_error 2 "-W takes a multiple of 8" --model "$tmp/pipe" --prompt x -W 100 \
  --out "$tmp/bad.png"
expect_error 2 "multiples of 16" --model "$tmp/pipe" --prompt x -W 72 -H 64 --out "$tmp/bad.png"
expect_error 1 "no-such-model: No such file or directory" --model "$tmp/no-such-model" \
  --prompt x --out "$tmp/bad.png"
expect_error 1 "without a VAE — give --vae" --model "$G/seed-unet-tiny" \
  --text-encoder "$G/clip-text-tiny" --prompt x --out "$tmp/bad.png"
expect_error 2 "--model is required" --prompt x --out "$tmp/bad.png"
expect_error 2 "give --prompt" --model "$tmp/pipe" --out "$tmp/bad.png"
expect_error 2 "unknown argument '--frobnicate'" --model "$tmp/pipe" --prompt x --frobnicate
expect_error 2 "--sampler takes" --model "$tmp/pipe" --prompt x --sampler plms
expect_error 2 "--rng takes" --model "$tmp/pipe" --prompt x --rng cuda
expect_error 2 "2 negative prompts for 3 prompts" --model "$tmp/pipe" --prompt a --prompt b \
  --prompt c --negative x --negative y
expect_error 2 "names one file but 2 images" --model "$tmp/pipe" --prompt x -n 2 \
  --out "$tmp/bad.png"
expect_error 2 "eta applies to the DDIM sampler only" --model "$tmp/pipe" --prompt x \
  --sampler euler --eta 0.5 --out "$tmp/bad.png"
expect_error 2 "Karras sigmas apply to euler and dpmpp-2m" --model "$tmp/pipe" --prompt x \
  --karras --out "$tmp/bad.png"
# diffusers' DDIM at 1000 steps would need timestep 1000 (steps_offset 1)
expect_error 2 "outside \[0, 1000) .* use fewer steps" --model "$tmp/pipe" --prompt x \
  --steps 1000 --out "$tmp/bad.png"
expect_error 2 "option --steps needs a value" --model "$tmp/pipe" --prompt x --steps

# --- Ctrl-C -----------------------------------------------------------------------------
# A long run (999 steps); SIGINT once the first step is reported: status 130, the
# image being made is not written, no temporary file is left.
mkdir "$tmp/int"
"$SDW" sample --threads 1 --model "$tmp/pipe" --prompt x --steps 999 -W 64 -H 64 \
  --out "$tmp/int/x.png" 2>"$tmp/int.log" &
pid=$!
for _ in $(seq 600); do
  grep -q "step 1/999" "$tmp/int.log" && break
  sleep 0.05
done
kill -INT "$pid"
set +e
wait "$pid"
rc=$?
set -e
if [ "$rc" -ne 130 ] || [ -n "$(ls -A "$tmp/int")" ]; then
  echo "after SIGINT: exit $rc (want 130), files: $(ls -A "$tmp/int")"
  cat "$tmp/int.log"
  exit 1
fi
grep -q "^sdw: sample: interrupted — 0 of 1 images were written" "$tmp/int.log"

"$SDW" sample --help | grep >/dev/null '^usage: sdw sample'
