#!/usr/bin/env bash
# `sdw run vae-encode` / `sdw run vae-decode` on the golden bundle
# tests/data/goldens/vae-tiny (diffusers AutoencoderKL, see its README.txt):
# posterior mean and logvar, decoded latents and the encode -> decode round
# trip within 1e-5 normwise relative error of the float64 reference
# (PyTorch's own float32 run is at 7e-7 .. 1.5e-6; tests/test_vae.c
# explains the bound). Also --tile, --config with a lone weights file, and
# bad inputs: one error line, exit status 1 (2 for usage errors), no output
# file.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=tests/data/goldens/vae-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Normwise relative error max|a-b|/max|b| of tensor A in file 1 vs tensor B
# in file 2, read with the standard library only (safetensors: u64 header
# length, JSON header, raw little-endian data).
compare() { # file1 name1 file2 name2 tol
  python3 - "$@" <<'EOF'
import json, struct, sys
def load(path, name):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    e = head[name]
    b, t = e["data_offsets"]
    code = {"F32": "f", "F64": "d"}[e["dtype"]]
    data = raw[8 + n + b:8 + n + t]
    return e["shape"], struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)
f1, n1, f2, n2, tol = sys.argv[1:]
s1, a = load(f1, n1)
s2, b = load(f2, n2)
assert s1 == s2, "%s %s vs %s %s" % (n1, s1, n2, s2)
err = max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b)
print("%s vs %s: %.3g" % (n1, n2, err))
sys.exit(0 if err <= float(tol) else 1)
EOF
}

# Copies tensors out of a safetensors file under new names (name=newname),
# standard library only.
extract() { # in out name=newname...
  python3 - "$@" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
out_head, blobs, off = {}, [], 0
for spec in sys.argv[3:]:
    src, dst = spec.split("=")
    e = head[src]
    b, t = e["data_offsets"]
    out_head[dst] = {"dtype": e["dtype"], "shape": e["shape"], "data_offsets": [off, off + t - b]}
    blobs.append(raw[8 + n + b:8 + n + t])
    off += t - b
h = json.dumps(out_head).encode()
h += b" " * (-(8 + len(h)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
}

extract "$G/io.safetensors" "$tmp/image.safetensors" image=image
extract "$G/io.safetensors" "$tmp/latents.safetensors" latents=latents

"$SDW" run vae-encode --model "$G" --in "$tmp/image.safetensors" --out "$tmp/enc.safetensors"
compare "$tmp/enc.safetensors" mean "$G/io.safetensors" posterior_mean_f64 1e-5
compare "$tmp/enc.safetensors" logvar "$G/io.safetensors" posterior_logvar_f64 1e-5

"$SDW" run vae-decode --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/dec.safetensors"
compare "$tmp/dec.safetensors" image "$G/io.safetensors" decoded_f64 1e-5

# The round trip: decode the encoder's mean.
extract "$tmp/enc.safetensors" "$tmp/mean.safetensors" mean=latents
"$SDW" run vae-decode --model "$G" --in "$tmp/mean.safetensors" --out "$tmp/round.safetensors"
compare "$tmp/round.safetensors" image "$G/io.safetensors" decoded_from_mean_f64 1e-5
# (decoding the other latents is far from it: the comparison discriminates)
if compare "$tmp/dec.safetensors" image "$G/io.safetensors" decoded_from_mean_f64 1e-2 \
  >/dev/null; then
  echo "decoded and decoded_from_mean agree: the comparison cannot fail"
  exit 1
fi

# The golden's io.safetensors itself is a valid input (other tensors ignored).
"$SDW" run vae-decode --model "$G" --in "$G/io.safetensors" --out "$tmp/io_dec.safetensors"
compare "$tmp/io_dec.safetensors" image "$tmp/dec.safetensors" image 0

# A lone weights file with --config.
"$SDW" run vae-decode --model "$G/weights.safetensors" --config "$G/config.json" \
  --in "$tmp/latents.safetensors" --out "$tmp/file.safetensors"
compare "$tmp/file.safetensors" image "$tmp/dec.safetensors" image 0

# Tiling: a 16x16 latent with 16-pixel tiles (8-latent tiles, 2x2 grid and
# blending) runs and differs from the untiled decode; a tile as large as
# the input is the untiled decode itself.
"$SDW" run vae-decode --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/tiled.safetensors" \
  --tile 16
if compare "$tmp/tiled.safetensors" image "$tmp/dec.safetensors" image 1e-4 >/dev/null; then
  echo "--tile 16 made no difference"
  exit 1
fi
"$SDW" run vae-decode --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/tiled32.safetensors" \
  --tile=32 --tile-overlap 0.25
compare "$tmp/tiled32.safetensors" image "$tmp/dec.safetensors" image 0
"$SDW" run vae-encode --model "$G" --in "$tmp/image.safetensors" --out "$tmp/enc_tiled.safetensors" \
  --tile 16
compare "$tmp/enc_tiled.safetensors" mean "$G/io.safetensors" posterior_mean_f64 1 >/dev/null

# Errors: one line starting "sdw: ", the expected status, nothing written.
expect_error() { # status pattern component args...
  local want=$1 pattern=$2 comp=$3
  shift 3
  set +e
  err=$("$SDW" run "$comp" "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -ne "$want" ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] ||
    ! grep -q -- "^sdw: .*$pattern" <<<"$err"; then
    echo "sdw run $comp $*: exit $rc (want $want), stderr:"
    echo "$err"
    exit 1
  fi
  if [ -e "$tmp/bad.safetensors" ]; then
    echo "sdw run $comp $*: wrote an output despite the error"
    exit 1
  fi
}
expect_error 1 "missing.safetensors" vae-encode \
  --model "$G" --in "$tmp/missing.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "no tensor named 'image'" vae-encode \
  --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "no tensor named 'latents'" vae-decode \
  --model "$G" --in "$tmp/image.safetensors" --out "$tmp/bad.safetensors"
# latents are 4-channel: as an image they have the wrong channel count
extract "$G/io.safetensors" "$tmp/wrong.safetensors" latents=image
expect_error 1 "'image' must be image, a float tensor \[batch, 3," vae-encode \
  --model "$G" --in "$tmp/wrong.safetensors" --out "$tmp/bad.safetensors"
# an odd-sized image
python3 - "$tmp/odd.safetensors" <<'EOF'
import json, struct, sys
h = json.dumps({"image": {"dtype": "F32", "shape": [1, 3, 5, 4],
                          "data_offsets": [0, 240]}}).encode()
h += b" " * (-(8 + len(h)) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(240))
EOF
expect_error 1 "image is 5x4; height and width must be multiples of 2" vae-encode \
  --model "$G" --in "$tmp/odd.safetensors" --out "$tmp/bad.safetensors"
mkdir "$tmp/trunc"
cp "$G/config.json" "$tmp/trunc/"
head -c 100000 "$G/weights.safetensors" >"$tmp/trunc/weights.safetensors"
expect_error 1 "weights.safetensors" vae-decode \
  --model "$tmp/trunc" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "no weights in this folder" vae-decode \
  --model "$tmp" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors"
# A lone weights file is taken for the SD 1.x VAE unless --config says otherwise.
expect_error 1 "has shape \[64, 4, 3, 3\], expected \[512, 4, 3, 3\].*give --config" vae-decode \
  --model "$G/weights.safetensors" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "model_type 'clip_text_model' is not a VAE" vae-decode \
  --model "$G" --config tests/data/goldens/clip-text-tiny/config.json \
  --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors"
expect_error 2 "unknown argument '--frobnicate'" vae-decode \
  --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors" --frobnicate
expect_error 2 "are required" vae-encode --model "$G"
expect_error 2 "tile" vae-decode \
  --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors" --tile -3
expect_error 2 "tile-overlap" vae-decode \
  --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors" --tile 16 \
  --tile-overlap 1
expect_error 2 "not a multiple" vae-decode \
  --model "$G" --in "$tmp/latents.safetensors" --out "$tmp/bad.safetensors" --tile 15
"$SDW" run vae-encode --help | grep >/dev/null '^usage: sdw run vae-encode'
"$SDW" run vae-decode --help | grep >/dev/null '^usage: sdw run vae-decode'
"$SDW" run --help | grep >/dev/null 'vae-decode'
