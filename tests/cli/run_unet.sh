#!/usr/bin/env bash
# `sdw run unet` on the golden bundles (tests/data/goldens/*/README.txt):
# the seed's UNetModel (seed-unet-tiny, with and without context) and
# diffusers' UNet2DConditionModel (sd15-unet-tiny), each within 1e-4
# normwise relative error of the float64 reference (tests/test_unet.c
# explains the bound; measured ~1e-6). Also a broadcast scalar timestep, and
# bad inputs: one error line, exit status 1 (2 for usage errors), no output.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Normwise relative error max|a-b|/max|b| of tensor A in file 1 vs tensor B
# in file 2 (standard library only).
compare() { # file1 name1 file2 name2 tol
  python3 - "$@" <<'EOF'
import json, struct, sys
def load(path, name):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    e = json.loads(raw[8:8 + n])[name]
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

G=tests/data/goldens/seed-unet-tiny
"$SDW" run unet --model "$G" --in "$G/io.safetensors" --out "$tmp/seed.safetensors"
compare "$tmp/seed.safetensors" out "$G/io.safetensors" eps_f64 1e-4
"$SDW" run unet --model "$G" --in "$G/io.safetensors" --out "$tmp/seed_noctx.safetensors" \
  --no-context
compare "$tmp/seed_noctx.safetensors" out "$G/io.safetensors" eps_noctx_f64 1e-4

G=tests/data/goldens/sd15-unet-tiny
"$SDW" run unet --model "$G" --in "$G/io.safetensors" --out "$tmp/sd15.safetensors"
compare "$tmp/sd15.safetensors" out "$G/io.safetensors" out_sample_f64 1e-4

# An input with the canonical names and a scalar timestep broadcast to the
# batch gives the same result as the per-sample timesteps when they agree.
python3 - "$G/io.safetensors" "$tmp/scalar.safetensors" "$tmp/pair.safetensors" <<'EOF'
import json, struct, sys
src, scalar_out, pair_out = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
def get(name):
    b, e = head[name]["data_offsets"]
    return head[name], raw[8 + n + b:8 + n + e]
def write(path, tensors):
    header, off, blobs = {}, 0, []
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
s_meta, s = get("sample")
c_meta, c = get("encoder_hidden_states")
write(scalar_out, [("sample", "F32", s_meta["shape"], s), ("timestep", "I64", [], struct.pack("<q", 500)),
                   ("context", "F32", c_meta["shape"], c)])
write(pair_out, [("sample", "F32", s_meta["shape"], s), ("timestep", "F32", [2], struct.pack("<2f", 500, 500)),
                 ("context", "F32", c_meta["shape"], c)])
EOF
"$SDW" run unet --model "$G" --in "$tmp/scalar.safetensors" --out "$tmp/scalar_out.safetensors"
"$SDW" run unet --model "$G" --in "$tmp/pair.safetensors" --out "$tmp/pair_out.safetensors"
compare "$tmp/scalar_out.safetensors" out "$tmp/pair_out.safetensors" out 0

# Errors: SD 1.x without a context, a missing input, a missing model; usage.
status=0
"$SDW" run unet --model "$G" --in "$G/io.safetensors" --out "$tmp/bad.safetensors" \
  --no-context 2>"$tmp/err" || status=$?
[ "$status" = 1 ] && grep -q "needs a context" "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ]
[ ! -e "$tmp/bad.safetensors" ]
status=0
"$SDW" run unet --model "$G" --in "$G/config.json" --out "$tmp/bad.safetensors" 2>"$tmp/err" ||
  status=$?
[ "$status" = 1 ] && [ ! -e "$tmp/bad.safetensors" ]
status=0
"$SDW" run unet --model "$tmp/nowhere" --in "$G/io.safetensors" --out "$tmp/bad.safetensors" \
  2>"$tmp/err" || status=$?
[ "$status" = 1 ] && grep -q nowhere "$tmp/err" && [ ! -e "$tmp/bad.safetensors" ]
status=0
"$SDW" run unet --model "$G" --in "$G/io.safetensors" 2>"$tmp/err" || status=$?
[ "$status" = 2 ]
status=0
"$SDW" run unet --bogus 2>"$tmp/err" || status=$?
[ "$status" = 2 ]
echo "run unet: ok"
