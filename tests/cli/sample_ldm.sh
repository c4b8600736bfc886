#!/usr/bin/env bash
# `sdw sample` from LDM single files (core/model/unet_ldm.h):
#  - an SD 1.x single file made of the tiny golden parts (UNet sd15-unet-tiny in
#    the CompVis names, VAE vae-tiny in the LDM names under first_stage_model.,
#    CLIP clip-text-tiny under cond_stage_model.transformer., plus the schedule
#    and position_ids tensors real files carry), renamed by the Python below (a
#    port of diffusers' convert_from_ckpt.py numbering, independent of sdw's
#    code), with the parts' config.json files in unet/, vae/ and text_encoder/
#    beside it: its image equals the diffusers-pipeline-folder run's pixel for
#    pixel and diffusers' float64 run of txt2img-tiny (same criterion as
#    sample.sh), the infotext names the file and hashes the whole file;
#  - a seed UNet exported by `sdw convert --format ldm` (with its unet/config.json
#    beside it) samples exactly like the seed bundle it came from;
#  - errors: an LDM file without its configuration (the sd15 preset does not fit
#    the tiny UNet), a UNet-only LDM file without --vae, --ema on a file without
#    an EMA copy.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/tests/data/goldens
T=$G/txt2img-tiny
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { "$SDW" sample --threads 1 "$@" 2>>"$tmp/stderr.log"; }

# --- an SD 1.x single file from the tiny parts ------------------------------------------
mkdir -p "$tmp/repo/unet" "$tmp/repo/vae" "$tmp/repo/text_encoder"
cp "$G/sd15-unet-tiny/config.json" "$tmp/repo/unet/"
cp "$G/vae-tiny/config.json" "$tmp/repo/vae/"
cp "$G/clip-text-tiny/config.json" "$tmp/repo/text_encoder/"
python3 - "$G" "$tmp/repo/tiny-v1.safetensors" <<'EOF'
import json, struct, sys
g, out = sys.argv[1:]

def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    head.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in head.items()}

# UNet: diffusers' numbering (convert_ldm_unet_checkpoint, read backwards).
cfg = json.load(open(g + "/sd15-unet-tiny/config.json"))
L, lpb = len(cfg["block_out_channels"]), cfg["layers_per_block"]
resnet = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
          ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection.")]
blocks = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
          "time_embedding.linear_2.": "time_embed.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
          "mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1.",
          "mid_block.resnets.1.": "middle_block.2."}
for i in range(L):
    for j in range(lpb):
        n = 1 + i * (lpb + 1) + j
        blocks["down_blocks.%d.resnets.%d." % (i, j)] = "input_blocks.%d.0." % n
        blocks["down_blocks.%d.attentions.%d." % (i, j)] = "input_blocks.%d.1." % n
    blocks["down_blocks.%d.downsamplers.0.conv." % i] = "input_blocks.%d.0.op." % (1 + i * (lpb + 1) + lpb)
    attn = cfg["up_block_types"][i].startswith("CrossAttn")
    for j in range(lpb + 1):
        n = i * (lpb + 1) + j
        blocks["up_blocks.%d.resnets.%d." % (i, j)] = "output_blocks.%d.0." % n
        blocks["up_blocks.%d.attentions.%d." % (i, j)] = "output_blocks.%d.1." % n
    blocks["up_blocks.%d.upsamplers.0.conv." % i] = "output_blocks.%d.%d.conv." % (
        i * (lpb + 1) + lpb, 2 if attn else 1)

def unet_name(k):
    (src, dst), = [(s, d) for s, d in blocks.items() if k.startswith(s)]
    rest = k[len(src):]
    if ".resnets." in src:
        (a, b), = [(a, b) for a, b in resnet if rest.startswith(a)]
        rest = b + rest[len(a):]
    return "model.diffusion_model." + dst + rest

# VAE: convert_ldm_vae_checkpoint backwards (decoder levels numbered from the
# full-resolution one; attention as 1x1 convs).
vcfg = json.load(open(g + "/vae-tiny/config.json"))
VL = len(vcfg["block_out_channels"])
def vae_name(k, shape):
    import re
    k = k.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
    k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
    k = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
               lambda m: "decoder.up.%d.block." % (VL - 1 - int(m.group(1))), k)
    k = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
               lambda m: "decoder.up.%d.upsample." % (VL - 1 - int(m.group(1))), k)
    k = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: "mid.block_%d." % (int(m.group(1)) + 1), k)
    for a, b in [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]:
        k = k.replace("mid_block.attentions.0." + a + ".", "mid.attn_1." + b + ".")
    if ".attn_1." in k and k.endswith("weight") and len(shape) == 2:
        shape = shape + [1, 1]
    return "first_stage_model." + k, shape

tensors = {"cond_stage_model.transformer.text_model.embeddings.position_ids":
           ("I64", [1, 77], b"".join(struct.pack("<q", i) for i in range(77))),
           "alphas_cumprod": ("F32", [3], struct.pack("<3f", 0.99, 0.98, 0.97))}
for k, (dt, shape, data) in read(g + "/sd15-unet-tiny/weights.safetensors").items():
    tensors[unet_name(k)] = (dt, shape, data)
for k, (dt, shape, data) in read(g + "/vae-tiny/weights.safetensors").items():
    name, shape = vae_name(k, shape)
    tensors[name] = (dt, shape, data)
for k, v in read(g + "/clip-text-tiny/weights.safetensors").items():
    tensors["cond_stage_model.transformer." + k] = v

head, blobs, off = {}, [], 0
for k in sorted(tensors, key=lambda k: tensors[k][0] != "I64"):  # 8-byte first: aligned
    dt, shape, data = tensors[k]
    head[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
    blobs.append(data)
    off += len(data)
h = json.dumps(head).encode()
h += b" " * (-(8 + len(h)) % 8)
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF

# The same parts as a diffusers pipeline folder: the reference run.
mkdir "$tmp/pipe"
echo '{"_class_name": "StableDiffusionPipeline"}' >"$tmp/pipe/model_index.json"
ln -s "$G/sd15-unet-tiny" "$tmp/pipe/unet"
ln -s "$G/clip-text-tiny" "$tmp/pipe/text_encoder"
ln -s "$G/vae-tiny" "$tmp/pipe/vae"

# compare_golden PNG CASE: as in sample.sh (the 8-bit value must be the float64
# reference's rounding, up to 0.01 levels near a rounding boundary; half the
# pixels unclamped).
compare_golden() {
  python3 - "$1" "$T/io.safetensors" "$2" <<'EOF'
import json, struct, sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png
png, golden, case = sys.argv[1:]
raw = open(golden, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
e = head[case + ".image_f64"]
b, t = e["data_offsets"]
f64 = struct.unpack("<%dd" % ((t - b) // 8), raw[8 + n + b:8 + n + t])
w, h, px, _ = read_png(png)
assert [h, w, 3] == e["shape"], (png, [h, w, 3], e["shape"])
worst = max(abs(p - 255 * v) for p, v in zip(px, f64))
inside = sum(1 for v in f64 if 0 < v < 1)
print("%s vs %s: max |sdw - 255 x_f64| = %.4f levels, %d of %d unclamped" %
      (png.split("/")[-1], case, worst, inside, len(f64)))
sys.exit(0 if worst <= 0.51 and inside * 2 >= len(f64) else 1)
EOF
}

# same_pixels A B: the two PNGs hold the same image (their infotexts differ).
same_pixels() {
  python3 - "$1" "$2" <<'EOF'
import sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png
a, b = (read_png(p) for p in sys.argv[1:])
if a[:3] != b[:3]:
    print("%s and %s differ" % tuple(sys.argv[1:]))
    sys.exit(1)
EOF
}

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

fox="a red fox in the snow, photograph"
LDM=$tmp/repo/tiny-v1.safetensors
for m in "$LDM" "$tmp/pipe"; do
  tag=$(basename "$m")
  run --model "$m" --tokenizer clip --rng torch-cpu --prompt "$fox" --seed 0 --steps 4 \
    -W 64 -H 64 --out "$tmp/ddim_$tag.png" >/dev/null
  run --model "$m" --tokenizer clip --rng torch-cpu --prompt "an astronaut riding a horse" \
    --negative cartoon --seed 42 --steps 5 --sampler dpmpp-2m --karras -W 64 -H 64 \
    --out "$tmp/dpmpp_$tag.png" >/dev/null
done
compare_golden "$tmp/ddim_tiny-v1.safetensors.png" ddim_s0
compare_golden "$tmp/dpmpp_tiny-v1.safetensors.png" dpmpp_karras
same_pixels "$tmp/ddim_tiny-v1.safetensors.png" "$tmp/ddim_pipe.png"
same_pixels "$tmp/dpmpp_tiny-v1.safetensors.png" "$tmp/dpmpp_pipe.png"
expect_fields "$tmp/ddim_tiny-v1.safetensors.png" "Model=tiny-v1" "Seed=0" \
  "Model hash=$(sha256sum "$LDM" | cut -c1-10)"
grep -q "tiny-v1.safetensors: LDM single file, CompVis UNet names, configuration: .*unet/config.json" \
  "$tmp/stderr.log"

# --- a seed UNet exported by sdw convert --format ldm ---------------------------------------
mkdir -p "$tmp/seed/unet"
"$SDW" convert "$G/seed-unet-tiny/weights.safetensors" "$tmp/seed/seed-ldm.safetensors" \
  --format ldm >/dev/null 2>&1
cp "$G/seed-unet-tiny/config.json" "$tmp/seed/unet/"
for m in "$tmp/seed/seed-ldm.safetensors" "$G/seed-unet-tiny"; do
  run --model "$m" --text-encoder "$G/clip-text-tiny" --vae "$G/vae-tiny" --prompt "$fox" \
    --steps 3 -W 32 -H 32 --out "$tmp/seed_$(basename "$m").png" >/dev/null
done
same_pixels "$tmp/seed_seed-ldm.safetensors.png" "$tmp/seed_seed-unet-tiny.png"

# --- errors ------------------------------------------------------------------------------------
expect_error() { # pattern args...
  local pattern=$1
  shift
  set +e
  err=$("$SDW" sample --threads 1 --prompt x --steps 1 -W 16 -H 16 --out "$tmp/bad.png" "$@" \
    2>&1 >/dev/null)
  rc=$?
  set -e
  if [ "$rc" -ne 1 ] || [ "$(printf '%s\n' "$err" | grep -c '^sdw: ')" -ne 1 ] ||
    ! grep -q -- "^sdw: .*$pattern" <<<"$err" || [ -e "$tmp/bad.png" ]; then
    echo "sdw sample $*: exit $rc (want 1), stderr:"
    echo "$err"
    exit 1
  fi
}
# without unet/config.json the UNet is taken for SD 1.5, which the shapes refute
mkdir "$tmp/bare"
ln -s "$LDM" "$tmp/bare/tiny-v1.safetensors"
expect_error "input_blocks.0.0.weight' has shape \[32, 4, 3, 3\], but the UNet configuration (the sd15 preset.*) expects \[320, 4, 3, 3\]" \
  --model "$tmp/bare/tiny-v1.safetensors"
# sdw convert's LDM files hold only a UNet
expect_error "without a VAE — give --vae" --model "$tmp/seed/seed-ldm.safetensors" \
  --text-encoder "$G/clip-text-tiny"
expect_error "holds no EMA copy of the UNet" --model "$LDM" --ema
