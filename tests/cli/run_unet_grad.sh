#!/usr/bin/env bash
# `sdw run unet-grad` on the train-step golden (tests/data/goldens/train-step/
# README.txt: PyTorch autograd through the seed's UNetModel, initial weights
# seed-unet-tiny): the loss within 1e-6 of the float64 reference and the
# gradients of a few parameters (both ends of the network, the time MLP,
# a transformer, the upsampler) within 1e-4 normwise relative error of
# torch's (the bound and its reasons: tests/test_train_step.c; measured
# ~1e-5 at worst). Also --checkpoint (byte-identical output), --no-context
# (exactly the transformers' gradients vanish) and bad inputs: one error
# line, exit status 1 (2 for usage errors), no output file.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=tests/data/goldens/train-step
M=tests/data/goldens/seed-unet-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# safetensors read/write with the standard library only (u64 header length,
# JSON header, raw little-endian data).
cat >"$tmp/st.py" <<'PY'
import json, struct
def load_all(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, e in head.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        out[name] = (e["dtype"], e["shape"], raw[8 + n + b:8 + n + t])
    return out
def values(entry):
    dtype, shape, data = entry
    code = {"F32": "f", "F64": "d", "I64": "q"}[dtype]
    return shape, struct.unpack("<%d%s" % (len(data) // struct.calcsize(code), code), data)
def write(path, tensors):
    header, off, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY
export PYTHONPATH="$tmp"

# The golden's batch 0 under the component's input names.
python3 - "$G/io.safetensors" "$tmp/in.safetensors" <<'PY'
import sys
from st import load_all, write
src = load_all(sys.argv[1])
write(sys.argv[2], {"sample": src["batch0.x_t"], "timestep": src["batch0.t"],
                    "context": src["batch0.ctx"], "target": src["batch0.noise"]})
PY

# compare FILE1 NAME1 FILE2 NAME2 TOL: normwise relative error max|a-b|/max|b|
compare() {
  python3 - "$@" <<'PY'
import sys
from st import load_all, values
f1, n1, f2, n2, tol = sys.argv[1:]
s1, a = values(load_all(f1)[n1])
s2, b = values(load_all(f2)[n2])
assert s1 == s2, "%s %s vs %s %s" % (n1, s1, n2, s2)
err = max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(y) for y in b), 1e-300)
print("%s vs %s: %.3g" % (n1, n2, err))
sys.exit(0 if err <= float(tol) else 1)
PY
}

"$SDW" run unet-grad --model "$M" --in "$tmp/in.safetensors" --out "$tmp/grad.safetensors"
compare "$tmp/grad.safetensors" loss "$G/io.safetensors" loss_f64 1e-6
compare "$tmp/grad.safetensors" out "$G/io.safetensors" eps_pred_f64 1e-4
for p in conv_in.weight t_emb.0.weight conv_out.weight conv_out.bias; do
  compare "$tmp/grad.safetensors" "grad.$p" "$G/io.safetensors" "grad.${p}_f64" 1e-4
done
for p in downs.2.tfm.tfm.cross_attn.to_k.weight mid.0.conv1.weight ups.1.weight \
  ups.2.skip.weight norm_out.weight; do
  compare "$tmp/grad.safetensors" "grad.$p" "$G/io.safetensors" "grad.$p" 1e-4
done
# every parameter has its gradient (158 of them, as in the golden)
python3 - "$tmp/grad.safetensors" "$G/io.safetensors" <<'PY'
import sys
from st import load_all
ours = {k for k in load_all(sys.argv[1]) if k.startswith("grad.")}
gold = {k for k in load_all(sys.argv[2]) if k.startswith("grad.") and not k.endswith("_f64")}
assert ours == gold and len(ours) == 158, (len(ours), sorted(gold ^ ours)[:5])
PY

# Gradient checkpointing: the same bytes.
"$SDW" run unet-grad --model "$M" --in "$tmp/in.safetensors" --out "$tmp/ckpt.safetensors" \
  --checkpoint
cmp "$tmp/grad.safetensors" "$tmp/ckpt.safetensors"

# Without the context the seed skips its transformers: exactly their
# gradients are 0, every other one is not.
"$SDW" run unet-grad --model "$M" --in "$tmp/in.safetensors" --out "$tmp/noctx.safetensors" \
  --no-context
python3 - "$tmp/noctx.safetensors" <<'PY'
import sys
from st import load_all, values
g = load_all(sys.argv[1])
for k in g:
    if k.startswith("grad."):
        _, v = values(g[k])
        zero = all(x == 0.0 for x in v)
        assert zero == (".tfm." in k), k
PY

# Errors: no target, a missing model, usage.
python3 - "$tmp/in.safetensors" "$tmp/notarget.safetensors" <<'PY'
import sys
from st import load_all, write
src = load_all(sys.argv[1])
del src["target"]
write(sys.argv[2], src)
PY
status=0
"$SDW" run unet-grad --model "$M" --in "$tmp/notarget.safetensors" --out "$tmp/bad.safetensors" \
  2>"$tmp/err" || status=$?
[ "$status" = 1 ] && grep -q target "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ]
[ ! -e "$tmp/bad.safetensors" ]
status=0
"$SDW" run unet-grad --model "$tmp/nowhere" --in "$tmp/in.safetensors" \
  --out "$tmp/bad.safetensors" 2>"$tmp/err" || status=$?
[ "$status" = 1 ] && grep -q nowhere "$tmp/err" && [ ! -e "$tmp/bad.safetensors" ]
status=0
"$SDW" run unet-grad --model "$M" --in "$tmp/in.safetensors" 2>"$tmp/err" || status=$?
[ "$status" = 2 ]
status=0
"$SDW" run unet-grad --bogus 2>"$tmp/err" || status=$?
[ "$status" = 2 ]
echo "run unet-grad: ok"
