#!/usr/bin/env bash
# `sdw convert` on the golden seed checkpoint tests/data/goldens/seed-checkpoint-tiny
# (torch.save of the seed's checkpoint dict, see its README.txt): every output
# tensor must equal PyTorch's own contiguous copy in checkpoint.safetensors
# BIT FOR BIT (EMA weights by default, the model's with --no-ema), under the
# names of the chosen layout; fp16/bf16 outputs must be those values rounded
# to nearest even (Python's struct 'e' for fp16); the diffusers config must
# equal the golden config.json. Errors: one line "sdw: convert: ...", exit 1
# (2 for usage errors), no output file.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=tests/data/goldens/seed-checkpoint-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# check OUT GOLDEN_PREFIX OUT_PREFIX DTYPE: OUT holds exactly the golden
# tensors GOLDEN_PREFIX<name> as OUT_PREFIX<name> in DTYPE (standard library
# only: u64 header length, JSON header, raw little-endian data).
check() {
  python3 - "$G/checkpoint.safetensors" "$@" <<'EOF'
import json, struct, sys
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in head.items()}, meta
gold, _ = load(sys.argv[1])
out, meta = load(sys.argv[2])
gp, op, dtype = sys.argv[3], sys.argv[4], sys.argv[5]
want = {k[len(gp):]: v for k, v in gold.items() if k.startswith(gp)}
assert len(want) == 158, len(want)
got = {k[len(op):]: v for k, v in out.items() if k.startswith(op)}
assert len(got) == len(out), "names without the prefix %r" % op
assert set(got) == set(want), sorted(set(got) ^ set(want))[:5]
assert meta.get("format") == "pt", meta
for name, (gd, gshape, gdata) in want.items():
    od, oshape, odata = got[name]
    assert oshape == gshape and od == dtype, (name, od, oshape, gshape)
    if dtype == "F32":
        assert odata == gdata, name
        continue
    vals = struct.unpack("<%df" % (len(gdata) // 4), gdata)
    if dtype == "F16":
        expect = b"".join(struct.pack("<e", v) for v in vals)
    else:
        bits = struct.unpack("<%dI" % len(vals), gdata)
        expect = struct.pack("<%dH" % len(bits),
                             *[((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF for b in bits])
    assert odata == expect, name
print("%s: %d tensors as %s%s in %s match %s*" % (sys.argv[2].split("/")[-1], len(got), op, "*",
                                                   dtype, gp))
EOF
}

"$SDW" convert "$G/checkpoint.pt" "$tmp/ema.safetensors"
check "$tmp/ema.safetensors" ema.shadow. "" F32
"$SDW" convert "$G/checkpoint.pt" "$tmp/model.safetensors" --no-ema
check "$tmp/model.safetensors" unet_state_dict. "" F32
"$SDW" convert --ema "$G/checkpoint.pt" "$tmp/ema2.safetensors"
cmp "$tmp/ema.safetensors" "$tmp/ema2.safetensors"
"$SDW" convert "$G/checkpoint.pt" "$tmp/ldm.safetensors" --format ldm
check "$tmp/ldm.safetensors" ema.shadow. model.diffusion_model. F32
"$SDW" convert "$G/checkpoint.pt" "$tmp/half.safetensors" --dtype fp16 --no-ema
check "$tmp/half.safetensors" unet_state_dict. "" F16
"$SDW" convert "$G/checkpoint.pt" "$tmp/bf.safetensors" --dtype=bf16
check "$tmp/bf.safetensors" ema.shadow. "" BF16

# diffusers: unet/ with the weights and the seed's constructor arguments
"$SDW" convert "$G/checkpoint.pt" "$tmp/diffusers" --format diffusers --heads 2 2>"$tmp/log"
check "$tmp/diffusers/unet/diffusion_pytorch_model.safetensors" ema.shadow. "" F32
python3 - "$G/config.json" "$tmp/diffusers/unet/config.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a == b, (a, b)
EOF
# without --heads the config says 8 (the seed's) and a note says so
"$SDW" convert "$G/checkpoint.pt" "$tmp/d8" --format diffusers 2>"$tmp/log"
grep -q "note: the weights do not store the number of attention heads" "$tmp/log"
grep -q '"heads": 8' "$tmp/d8/unet/config.json"
# --config is checked against the weights and copied
"$SDW" convert "$G/checkpoint.pt" "$tmp/dc" --format diffusers --config "$G/config.json"
cmp "$G/config.json" "$tmp/dc/unet/config.json"

# the other layouts are inputs too: back to native names, losslessly
"$SDW" convert "$tmp/ldm.safetensors" "$tmp/from_ldm.safetensors"
check "$tmp/from_ldm.safetensors" ema.shadow. "" F32
"$SDW" convert "$tmp/diffusers" "$tmp/d2" --format diffusers
cmp "$tmp/diffusers/unet/config.json" "$tmp/d2/unet/config.json"
check "$tmp/d2/unet/diffusion_pytorch_model.safetensors" ema.shadow. "" F32

# Errors: one line starting "sdw: convert: ", the expected status, nothing written.
expect_error() { # status pattern args...
  local want=$1 pattern=$2
  shift 2
  set +e
  err=$("$SDW" convert "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -ne "$want" ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] ||
    ! grep -q -- "^sdw: convert: .*$pattern" <<<"$err"; then
    echo "sdw convert $*: exit $rc (want $want), stderr:"
    echo "$err"
    exit 1
  fi
  if [ -e "$tmp/bad" ] || [ -e "$tmp/bad.safetensors" ]; then
    echo "sdw convert $*: wrote an output despite the error"
    exit 1
  fi
}
expect_error 1 "missing.pt.*No such file" "$tmp/missing.pt" "$tmp/bad.safetensors"
head -c 5000000 "$G/checkpoint.pt" >"$tmp/trunc.pt"
expect_error 1 "trunc.pt: not a valid ZIP archive" "$tmp/trunc.pt" "$tmp/bad.safetensors"
# hostile and EMA-less checkpoints, written with the standard library
# (pickling a reduce to os.system does not run it; the canary shows that
# sdw did not either)
python3 - "$tmp" <<'EOF'
import os, pickle, sys, zipfile
tmp = sys.argv[1]
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(tmp, "pwned"),))
for name, obj in (("evil.pt", {"unet_state_dict": Evil()}), ("noema.pt", {"epoch": 1})):
    with zipfile.ZipFile(os.path.join(tmp, name), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        z.writestr("archive/version", "3\n")
EOF
expect_error 1 "evil.pt: refuses to load: the pickle asks for 'posix.system' (only tensors" \
  "$tmp/evil.pt" "$tmp/bad.safetensors"
[ ! -e "$tmp/pwned" ]
expect_error 1 "no EMA weights.*--no-ema" "$tmp/noema.pt" "$tmp/bad.safetensors" --ema
expect_error 1 "no model weights" "$tmp/noema.pt" "$tmp/bad.safetensors"
expect_error 1 "no tensor 'downs.1.time_mlp.1.weight'" "$G/checkpoint.pt" "$tmp/bad" \
  --format diffusers --config tests/data/goldens/seed-unet-small/config.json
expect_error 2 "unknown option '--frobnicate'" "$G/checkpoint.pt" "$tmp/bad.safetensors" --frobnicate
expect_error 2 "IN and OUT are required" "$G/checkpoint.pt"
expect_error 2 "--dtype is fp32, fp16 or bf16, not 'f8'" "$G/checkpoint.pt" "$tmp/bad.safetensors" \
  --dtype f8
expect_error 2 "--format is safetensors, diffusers or ldm" "$G/checkpoint.pt" "$tmp/bad" --format ckpt
expect_error 2 "--config is for --format diffusers" "$G/checkpoint.pt" "$tmp/bad.safetensors" \
  --config "$G/config.json"
"$SDW" convert --help | grep >/dev/null '^usage: sdw convert IN OUT'
