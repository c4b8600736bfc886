#!/usr/bin/env bash
# `sdw run clip-text` on the golden bundle tests/data/goldens/clip-text-tiny
# (transformers CLIPTextModel, see its README.txt), unmasked and masked:
# last_hidden_state and pooler_output within 1e-5 normwise relative error of
# the float64 reference (PyTorch's own float32 run is at ~6e-7; the C API
# test tests/test_clip.c explains the bound). Also --clip-skip, and bad
# inputs: one error line, exit status 1 (2 for usage errors), no output file.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=tests/data/goldens/clip-text-tiny
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

"$SDW" run clip-text --model "$G" --in "$G/io.safetensors" --out "$tmp/plain.safetensors"
compare "$tmp/plain.safetensors" last_hidden_state "$G/io.safetensors" last_hidden_state_f64 1e-5
compare "$tmp/plain.safetensors" pooler_output "$G/io.safetensors" pooler_output_f64 1e-5

"$SDW" run clip-text --model "$G" --in "$G/io.safetensors" --out "$tmp/masked.safetensors" \
  --attention-mask
compare "$tmp/masked.safetensors" last_hidden_state "$G/io.safetensors" \
  last_hidden_state_masked_f64 1e-5
compare "$tmp/masked.safetensors" pooler_output "$G/io.safetensors" pooler_output_masked_f64 1e-5
# The two differ at the padding positions (so the flag really does something).
if compare "$tmp/masked.safetensors" last_hidden_state "$G/io.safetensors" \
  last_hidden_state_f64 1e-3 >/dev/null; then
  echo "--attention-mask made no difference"
  exit 1
fi

# --clip-skip 1 is the default; --clip-skip 2 is not the last layer.
"$SDW" run clip-text --model "$G" --in "$G/io.safetensors" --out "$tmp/skip1.safetensors" \
  --clip-skip=1
compare "$tmp/skip1.safetensors" last_hidden_state "$tmp/plain.safetensors" last_hidden_state 0
"$SDW" run clip-text --model "$G" --in "$G/io.safetensors" --out "$tmp/skip2.safetensors" \
  --clip-skip 2
if compare "$tmp/skip2.safetensors" last_hidden_state "$G/io.safetensors" \
  last_hidden_state_f64 1e-3 >/dev/null; then
  echo "--clip-skip 2 gave the last layer"
  exit 1
fi

# Errors: one line starting "sdw: ", the expected status, nothing written.
expect_error() { # status pattern args...
  local want=$1 pattern=$2
  shift 2
  set +e
  err=$("$SDW" run clip-text "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -ne "$want" ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] ||
    ! grep -q -- "^sdw: .*$pattern" <<<"$err"; then
    echo "sdw run clip-text $*: exit $rc (want $want), stderr:"
    echo "$err"
    exit 1
  fi
  if [ -e "$tmp/bad.safetensors" ]; then
    echo "sdw run clip-text $*: wrote an output despite the error"
    exit 1
  fi
}
expect_error 1 "missing.safetensors: cannot open" \
  --model "$G" --in "$tmp/missing.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "no tensor named 'input_ids'" \
  --model "$G" --in "$tmp/plain.safetensors" --out "$tmp/bad.safetensors"
# input_ids alone (copied out of the golden with the standard library).
python3 - "$G/io.safetensors" "$tmp/ids.safetensors" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
e = json.loads(raw[8:8 + n])["input_ids"]
b, t = e["data_offsets"]
head = json.dumps({"input_ids": dict(e, data_offsets=[0, t - b])}).encode()
head += b" " * (-(8 + len(head)) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(head)) + head + raw[8 + n + b:8 + n + t])
EOF
"$SDW" run clip-text --model "$G" --in "$tmp/ids.safetensors" --out "$tmp/ids_out.safetensors"
compare "$tmp/ids_out.safetensors" last_hidden_state "$tmp/plain.safetensors" last_hidden_state 0
expect_error 1 "no tensor named 'attention_mask'" \
  --model "$G" --in "$tmp/ids.safetensors" --out "$tmp/bad.safetensors" --attention-mask
mkdir "$tmp/trunc"
cp "$G/config.json" "$tmp/trunc/"
head -c 100000 "$G/weights.safetensors" >"$tmp/trunc/weights.safetensors"
expect_error 1 "weights.safetensors" \
  --model "$tmp/trunc" --in "$G/io.safetensors" --out "$tmp/bad.safetensors"
expect_error 1 "no weights in this folder" \
  --model "$tmp" --in "$G/io.safetensors" --out "$tmp/bad.safetensors"
# A lone weights file is taken for ViT-L/14 unless --config says otherwise.
expect_error 1 "has shape \[49408, 64\], expected \[49408, 768\].*give --config" \
  --model "$G/weights.safetensors" --in "$G/io.safetensors" --out "$tmp/bad.safetensors"
"$SDW" run clip-text --model "$G/weights.safetensors" --config "$G/config.json" \
  --in "$G/io.safetensors" --out "$tmp/file.safetensors"
compare "$tmp/file.safetensors" last_hidden_state "$tmp/plain.safetensors" last_hidden_state 0
expect_error 2 "unknown argument '--frobnicate'" \
  --model "$G" --in "$G/io.safetensors" --out "$tmp/bad.safetensors" --frobnicate
expect_error 2 "are required" --model "$G"
expect_error 2 "clip-skip" \
  --model "$G" --in "$G/io.safetensors" --out "$tmp/bad.safetensors" --clip-skip 0
expect_error 2 "more than the model's 2 layers" \
  --model "$G" --in "$G/io.safetensors" --out "$tmp/bad.safetensors" --clip-skip 3
"$SDW" run clip-text --help | grep >/dev/null '^usage: sdw run clip-text'
set +e
"$SDW" run no-such-component >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 2 ]
