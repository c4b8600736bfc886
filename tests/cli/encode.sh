#!/usr/bin/env bash
# `sdw pipeline encode` on shards of generated JPEGs (tools/gen_encode_shards.py:
# sizes above and below the crop size) through preprocess and build, with the
# vae-tiny golden bundle (tests/data/goldens/vae-tiny, downscale 2) at 64 px:
#  - preprocessing: --vae pixels stores the cropped images; every one equals
#    OpenCV's "shorter side -> 64 (INTER_AREA down, INTER_CUBIC up) + center
#    crop" of the same JPEG within 1 level, mean under 0.05 levels (sdw's
#    resize reimplements cv2's fixed-point kernels; see latent_check.py);
#  - latents: samples of the VAE store equal `sdw run vae-encode` of the same
#    preprocessed pixels, mean x 0.18215, within 1e-3 normwise (the store is
#    f16: 2^-11 relative rounding, 4.9e-4; vae-encode itself is checked
#    against diffusers in run_vae.sh), and a different sample is far off;
#  - keys, captions, ids and masks are the dataset's rows in order (pyarrow);
#  - kill -9 at random moments, rerun until done: the same bytes (sha256 of
#    every chunk and index.json) as an uninterrupted run; no temporaries left;
#  - two processes (--num-shards 2) give the same store; --finish-only;
#  - an undecodable image fails the stage naming shard and key; --skip-bad
#    leaves it out and counts it; other settings on an existing store are
#    refused; usage errors exit 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.venv-test/bin/python
V=tests/data/goldens/vae-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# the same thread count for every run (the VAE's sums are deterministic for
# a given count); one keeps the test quick on a loaded 2-core machine
export OMP_NUM_THREADS=1

D=$tmp/d
$P tools/gen_encode_shards.py --out "$D" --count 60 --per-shard 20
"$SDW" pipeline preprocess --data "$D" --min-size 0 --image-size 64 --workers 2 >/dev/null
"$SDW" pipeline build --data "$D" --val-size 6 >/dev/null
cp -r "$D" "$tmp/base" # dataset and shards, no latents

enc() { "$SDW" pipeline encode --image-size 64 --chunk-size 8 --batch 3 "$@"; }

# --- preprocessing against OpenCV ---------------------------------------------
enc --data "$D" --vae pixels
$P tests/cli/latent_check.py pixels "$D/latents/train" "$D/shards" 64
$P tests/cli/latent_check.py pixels "$D/latents/val" "$D/shards" 64
$P tests/cli/latent_check.py keys "$D/latents/train" "$D/dataset/train.parquet"
$P tests/cli/latent_check.py keys "$D/latents/val" "$D/dataset/val.parquet"
grep -F '"scaling_factor":	1,' "$D/latents/train/index.json" >/dev/null

# --- latents against sdw run vae-encode on the same pixels -----------------------
R=$tmp/ref
cp -r "$tmp/base" "$R"
enc --data "$R" --vae "$V"
$P tests/cli/latent_check.py keys "$R/latents/train" "$R/dataset/train.parquet"
grep -F '"latent_shape":	[4, 32, 32]' "$R/latents/train/index.json" >/dev/null
for i in 0 9 17; do # 17: the last batch of a chunk (8 = 3 + 3 + 2)
  $P tests/cli/latent_check.py image "$D/latents/train" $i "$tmp/img.safetensors"
  "$SDW" run vae-encode --model "$V" --in "$tmp/img.safetensors" --out "$tmp/enc.safetensors"
  $P tests/cli/latent_check.py compare "$R/latents/train" $i "$tmp/enc.safetensors" 0.18215 1e-3
done
if $P tests/cli/latent_check.py compare "$R/latents/train" 5 "$tmp/enc.safetensors" 0.18215 0.1 \
  >/dev/null; then
  echo "a different sample's latent matched: the comparison cannot fail"
  exit 1
fi
$P tests/cli/latent_check.py sums "$R/latents/train" "$R/latents/val" |
  awk '{print $1, $2}' >"$tmp/ref.sums"
grep -F '"state":	"done"' "$R/manifests/encode.json" >/dev/null ||
  grep -F '"state": "done"' "$R/manifests/encode.json" >/dev/null

# a rerun of a complete store does nothing and changes nothing, but removes
# the temporary file of a process that is gone (pids stay below 2^22)
: >"$R/latents/train/.chunk-00001.safetensors.tmp.4194305"
enc --data "$R" --vae "$V"
[ ! -e "$R/latents/train/.chunk-00001.safetensors.tmp.4194305" ]
$P tests/cli/latent_check.py sums "$R/latents/train" "$R/latents/val" | awk '{print $1, $2}' |
  cmp - "$tmp/ref.sums"

# --- kill -9 anywhere, rerun: the same bytes ------------------------------------------
# (--batch 1 here and in the reference: the batch changes the VAE's float sums
# in the last bits, so it is held fixed)
K=$tmp/kill
cp -r "$tmp/base" "$K"
mid=0
for attempt in 1 2 3 4; do
  # (the binary itself in the background, so that $! is its pid)
  "$SDW" pipeline encode --image-size 64 --chunk-size 8 --data "$K" --vae "$V" --batch 1 \
    2>/dev/null &
  pid=$!
  sleep "0.$((RANDOM % 4 + 1))"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null && break || true
  if [ ! -e "$K/latents/val/index.json" ]; then mid=$((mid + 1)); fi
done
enc --data "$K" --vae "$V" --batch 1 >/dev/null
echo "kill -9 mid-run: $mid times"
[ "$mid" -ge 1 ]
K2=$tmp/kill-ref
cp -r "$tmp/base" "$K2"
enc --data "$K2" --vae "$V" --batch 1
$P tests/cli/latent_check.py sums "$K2/latents/train" "$K2/latents/val" | awk '{print $1, $2}' \
  >"$tmp/k2.sums"
$P tests/cli/latent_check.py sums "$K/latents/train" "$K/latents/val" | awk '{print $1, $2}' |
  cmp - "$tmp/k2.sums"
if ls -a "$K/latents/train" "$K/latents/val" | grep -F '.tmp.' >/dev/null; then
  echo "temporaries left behind"
  exit 1
fi

# --- SIGINT: the chunk in progress is abandoned, exit 130, state interrupted --------
I=$tmp/int
cp -r "$tmp/base" "$I"
"$SDW" pipeline encode --image-size 64 --chunk-size 8 --data "$I" --vae "$V" --batch 1 \
  2>/dev/null &
pid=$!
sleep 0.3
kill -INT $pid 2>/dev/null || true
rc=0
wait $pid || rc=$?
if [ $rc -ne 0 ]; then # (0: it had finished before the signal came)
  [ $rc -eq 130 ]
  grep -E '"state":[[:space:]]*"interrupted"' "$I/manifests/encode.json" >/dev/null
  [ ! -e "$I/latents/val/index.json" ]
fi

# --- two processes -------------------------------------------------------------------
M=$tmp/multi
cp -r "$tmp/base" "$M"
enc --data "$M" --vae "$V" --num-shards 2 --shard-index 0
[ ! -e "$M/latents/train/index.json" ]
if enc --data "$M" --vae "$V" --finish-only 2>"$tmp/err"; then
  echo "--finish-only succeeded with chunks missing"
  exit 1
fi
grep -F 'not every chunk exists' "$tmp/err" >/dev/null
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 enc --data "$M" --vae "$V"
[ -e "$M/manifests/encode-0-of-2.json" ] && [ -e "$M/manifests/encode-1-of-2.json" ]
$P tests/cli/latent_check.py sums "$M/latents/train" "$M/latents/val" | awk '{print $1, $2}' |
  cmp - "$tmp/ref.sums"
enc --data "$M" --vae "$V" --finish-only

# --- settings changed on an existing store --------------------------------------------
if "$SDW" pipeline encode --data "$R" --vae "$V" --image-size 32 --chunk-size 8 2>"$tmp/err"; then
  echo "a store of another image size was reused"
  exit 1
fi
grep -F 'other settings' "$tmp/err" >/dev/null

# --- an undecodable image ---------------------------------------------------------------
B=$tmp/bad
cp -r "$tmp/base" "$B"
read -r shard key <<<"$($P - "$B" <<'EOF'
import sys, pyarrow.parquet as pq
d = sys.argv[1]
t = pq.read_table(d + "/dataset/train.parquet").to_pydict()
i = 3
with open(d + "/shards/" + t["shard"][i], "r+b") as f:
    f.seek(t["image_offset"][i])
    f.write(b"X" * t["image_size"][i])
print(t["shard"][i], t["image_key"][i])
EOF
)"
set +e
enc --data "$B" --vae "$V" 2>"$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ]
[ "$(wc -l <"$tmp/err")" -eq 1 ]
grep -F "$shard" "$tmp/err" >/dev/null && grep -F "$key" "$tmp/err" >/dev/null
grep -F "decode_error" "$tmp/err" >/dev/null
enc --data "$B" --vae "$V" --skip-bad 2>/dev/null && {
  echo "--skip-bad on a store begun without it was accepted"
  exit 1
}
rm -rf "$B/latents"
enc --data "$B" --vae "$V" --skip-bad
n=$($P -c "import json,sys; print(json.load(open(sys.argv[1]))['count'])" "$B/latents/train/index.json")
m=$($P -c "import json,sys; print(json.load(open(sys.argv[1]))['count'])" "$R/latents/train/index.json")
[ "$n" -eq $((m - 1)) ]
$P - "$B/manifests/encode.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["state"] == "done" and m["failures"] == {"decode_error": 1}, m
EOF

# --- captions that are not UTF-8 (preprocess keeps the bytes as they are): the
# store holds U+FFFD for each bad byte, as Python's decode(errors="replace"),
# and a rerun recognises the finished chunk
U=$tmp/utf
$P - "$U" <<'EOF'
import io, os, sys, tarfile
import numpy as np
from PIL import Image
d = sys.argv[1]
os.makedirs(d + "/shards")
rng = np.random.default_rng(2)
with tarfile.open(d + "/shards/00000.tar", "w") as t:
    for i, cap in enumerate([b"caf\xe9 au lait on a table", b"a plain caption here",
                             b"nul \x00 inside the caption"]):
        b = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(b, "PNG")
        for n, x in (("%03d.jpg" % i, b.getvalue()), ("%03d.txt" % i, cap)):
            ti = tarfile.TarInfo(n)
            ti.size = len(x)
            t.addfile(ti, io.BytesIO(x))
EOF
"$SDW" pipeline preprocess --data "$U" --min-size 0 --image-size 16 >/dev/null
"$SDW" pipeline build --data "$U" --val-size 0 >/dev/null
"$SDW" pipeline encode --data "$U" --vae pixels --image-size 16
"$SDW" pipeline encode --data "$U" --vae pixels --image-size 16
grep -E '"skipped":[[:space:]]*3' "$U/manifests/encode.json" >/dev/null
$P - "$U/latents/train" <<'EOF'
import sys
sys.path.insert(0, "tests/cli")
from latent_check import store
caps = sorted(s["caption"] for s in store(sys.argv[1])[1])
assert caps == ["a plain caption here", "caf\ufffd au lait on a table",
                "nul \ufffd inside the caption"], caps
EOF

# --- usage -------------------------------------------------------------------------------
set +e
"$SDW" pipeline encode --data "$D" 2>/dev/null
[ $? -eq 2 ] || exit 1
"$SDW" pipeline encode --data "$D" --vae pixels --split nope 2>/dev/null
[ $? -eq 2 ] || exit 1
"$SDW" pipeline encode --data "$tmp/none" --vae pixels 2>"$tmp/err"
[ $? -eq 1 ] || exit 1
set -e
grep -F 'sdw pipeline build' "$tmp/err" >/dev/null
echo "encode: ok"
