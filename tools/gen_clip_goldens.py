#!/usr/bin/env python3
"""Regenerates CLIP text-encoder golden bundles (like tests/data/goldens/clip-text-tiny)
with transformers' CLIPTextModel and torch, and optionally checks `sdw run clip-text`
against them.

A bundle is a folder with
  config.json          transformers' save_pretrained form of the config
  weights.safetensors  the state dict (keys 'text_model.*'; position_ids is not saved)
  io.safetensors       input_ids, attention_mask (I64 [B,77]); last_hidden_state,
                       pooler_output (F32) with and without the attention mask
                       ('_masked' suffix), the same from a float64 run ('_f64'), and
                       hidden_states.K (F32, unmasked run)
  README.txt           what was run, and float32-vs-float64 errors

Prompts are tokenized with open_clip's tokenizer (openai/CLIP's simple_tokenizer,
the reference for sdw's tokenizer), padded with 49407 after the end-of-text token as
Stable Diffusion 1.x does (open_clip itself pads with 0); the mask is 1 up to and
including the first end-of-text token.

Setup (Debian's torch; never PyPI's torch wheels):
  apt-get install -y python3-torch
  /usr/bin/python3 -m venv --system-site-packages .venv-tools
  .venv-tools/bin/pip install --no-deps transformers==4.45.2 tokenizers==0.20.3 \\
      huggingface_hub==0.25.2 open_clip_torch==3.3.0 ftfy wcwidth safetensors \\
      filelock packaging tqdm fsspec
(numpy, regex, requests and pyyaml come from Debian's python3 packages.)

Examples:
  # the tiny bundle's config with fresh random weights and more prompts:
  .venv-tools/bin/python tools/gen_clip_goldens.py --out /tmp/clip-more \\
      --prompts-file /work/shared/data/clip/tokenizer_cases.tsv --check build/sdw
  # reproduce the committed bundle's outputs from its own weights:
  .venv-tools/bin/python tools/gen_clip_goldens.py --out /tmp/clip-same \\
      --weights tests/data/goldens/clip-text-tiny/weights.safetensors --check build/sdw

--check SDW runs `SDW tokenize --tokenizer clip --jsonl` on the prompts and compares
its ids and mask with open_clip's, then runs `SDW run clip-text` on the new bundle
(masked and unmasked) and prints the normwise relative error max|sdw - f64| / max|f64|
of each output; it exits 1 on a token mismatch or when an error exceeds 1e-5.
"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file, save_file

import open_clip
import transformers
from transformers import CLIPTextConfig, CLIPTextModel

DEFAULT_PROMPTS = [
    "a stack of pancakes with syrup and berries",
    "highly detailed photo of an abandoned subway station, moss, god rays, 35mm film grain",
    "a highly detailed matte painting of a sprawling fantasy city built into the side of a "
    "cliff, with waterfalls cascading between towers, airships drifting through golden "
    "clouds, tiny people walking across rope bridges, lanterns glowing in the windows, lush "
    "vegetation, dramatic sunset lighting, volumetric fog, by greg rutkowski and thomas "
    "kinkade, trending on artstation, unreal engine, octane render, 8k resolution, "
    "masterpiece, sharp focus",
    "",
    "A Close-Up of a RED fox &amp; its cub, 4K!!",
    "東京の夜景 neon lights, カメラ",
]

PRESETS = {
    # the committed bundle
    "tiny": dict(vocab_size=49408, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=128, max_position_embeddings=77, hidden_act="quick_gelu"),
    # openai/clip-vit-large-patch14's text tower (SD 1.x), legacy eos rule
    "vit-l14": dict(vocab_size=49408, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072,
                    max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2,
                    bos_token_id=0, pad_token_id=1),
}

EOT = 49407


def tokenize(prompts):
    """open_clip's tokenization, padded with EOT; returns ids, mask (I64 [B,77])."""
    ids = open_clip.tokenize(prompts, context_length=77).to(torch.int64)
    mask = torch.zeros_like(ids)
    for b in range(ids.shape[0]):
        row = ids[b].tolist()
        end = row.index(EOT)
        mask[b, :end + 1] = 1
        ids[b, end + 1:] = EOT
    return ids, mask


def randomize_(model, seed):
    """Re-draws every parameter (the README's scheme): LayerNorm weight 1+0.1*randn,
    biases 0.1*randn, embeddings 0.1*randn, Linear weights randn/sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "layer_norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * r)
            elif name.endswith("bias") or "embedding" in name:
                p.copy_(0.1 * r)
            else:
                p.copy_(r / p.shape[1] ** 0.5)


def rel_err(got, want):
    got, want = got.double(), want.double()
    return ((got - want).abs().max() / want.abs().max()).item()


def run(model, ids, mask, hidden=False):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=hidden)
    return out


def sdw_tokens_check(sdw, prompts, ids, mask):
    """Compares `sdw tokenize --tokenizer clip --jsonl --mask` with open_clip."""
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in prompts)
    out = subprocess.run([sdw, "tokenize", "--tokenizer", "clip", "--jsonl", "--mask"],
                         input=text, capture_output=True, text=True, check=True).stdout
    bad = special = 0
    for b, line in enumerate(out.splitlines()):
        got_ids, got_mask = line.split("\t")
        if ([int(t) for t in got_ids.split()] == ids[b].tolist() and
                [int(t) for t in got_mask.split()] == mask[b].tolist()):
            continue
        # open_clip 3.x splits the literal strings <|startoftext|> / <|endoftext|>
        # typed in a prompt into ordinary tokens, where openai/CLIP's tokenizer
        # (the reference, and sdw) maps them to 49406 / 49407: not counted.
        if "<|startoftext|>" in prompts[b] or "<|endoftext|>" in prompts[b]:
            special += 1
            print("row %d differs from open_clip (a literal special token, expected): %s" %
                  (b, json.dumps(prompts[b])))
            continue
        bad += 1
        if bad <= 5:
            print("token mismatch, row %d: %s" % (b, json.dumps(prompts[b])))
    print("sdw tokenize vs open_clip: %d of %d prompts identical (%d with literal special "
          "tokens differ as expected)" % (len(prompts) - bad - special, len(prompts), special))
    return bad


def sdw_check(sdw, out_dir):
    """Runs `sdw run clip-text` on the bundle and compares with the f64 outputs."""
    ref = load_file(os.path.join(out_dir, "io.safetensors"))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for masked in (False, True):
            path = os.path.join(tmp, "out.safetensors")
            cmd = [sdw, "run", "clip-text", "--model", out_dir, "--in",
                   os.path.join(out_dir, "io.safetensors"), "--out", path]
            if masked:
                cmd.append("--attention-mask")
            subprocess.run(cmd, check=True)
            got = load_file(path)
            sfx = "_masked" if masked else ""
            for name in ("last_hidden_state", "pooler_output"):
                e = rel_err(got[name], ref[name + sfx + "_f64"])
                worst = max(worst, e)
                print("sdw %-18s %-8s rel err vs f64 %.3g" %
                      (name, "masked" if masked else "unmasked", e))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="bundle folder to write")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--weights", help="load these weights (a bundle's weights.safetensors) "
                    "instead of drawing random ones")
    ap.add_argument("--prompts-file", help="one prompt per line (a .tsv: the first column, "
                    "JSON-quoted as in shared/data/clip/tokenizer_cases.tsv)")
    ap.add_argument("--limit", type=int, default=0, help="use at most this many prompts")
    ap.add_argument("--hidden-states", action="store_true", default=True)
    ap.add_argument("--check", metavar="SDW", help="run this sdw binary on the bundle")
    args = ap.parse_args()

    prompts = DEFAULT_PROMPTS
    if args.prompts_file:
        prompts = []
        with open(args.prompts_file, encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    continue
                if args.prompts_file.endswith(".tsv"):
                    line = json.loads(line.split("\t")[0])
                prompts.append(line)
    if args.limit:
        prompts = prompts[:args.limit]

    torch.manual_seed(args.seed)
    config = CLIPTextConfig(**PRESETS[args.preset], attn_implementation="eager")
    model = CLIPTextModel(config).eval()
    if args.weights:
        state = load_file(args.weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            sys.exit("weights do not fit: missing %s, unexpected %s" % (missing, unexpected))
    else:
        randomize_(model, args.seed)
    model.config._attn_implementation = "eager"
    model.config.architectures = ["CLIPTextModel"]
    model.config.torch_dtype = "float32"

    ids, mask = tokenize(prompts)
    tensors = {"input_ids": ids, "attention_mask": mask}
    model64 = copy.deepcopy(model).double()
    lines = []
    for masked in (False, True):
        m = mask if masked else None
        sfx = "_masked" if masked else ""
        out = run(model, ids, m, hidden=not masked)
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # the f64 causal-mask fill value
        try:
            out64 = run(model64, ids, m)
        finally:
            torch.set_default_dtype(prev)
        for name in ("last_hidden_state", "pooler_output"):
            tensors[name + sfx] = getattr(out, name).float().contiguous()
            tensors[name + sfx + "_f64"] = getattr(out64, name).contiguous()
            e = rel_err(tensors[name + sfx], tensors[name + sfx + "_f64"])
            lines.append("%-26s max|f32-f64|/max|f64| = %.3g" % (name + sfx, e))
        if not masked:
            for k, h in enumerate(out.hidden_states):
                tensors["hidden_states.%d" % k] = h.float().contiguous()

    os.makedirs(args.out, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not k.endswith("position_ids")}
    save_file(state, os.path.join(args.out, "weights.safetensors"))
    save_file(tensors, os.path.join(args.out, "io.safetensors"))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        f.write(model.config.to_json_string())
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write("CLIP text bundle from tools/gen_clip_goldens.py\n\n")
        f.write("transformers %s, torch %s, open_clip %s; preset %s, %s\n" % (
            transformers.__version__, torch.__version__, open_clip.__version__, args.preset,
            "weights from " + args.weights if args.weights else "seed %d" % args.seed))
        f.write("eager attention, eos_token_id %s\n\nprompts:\n" % model.config.eos_token_id)
        for i, p in enumerate(prompts):
            f.write("  row %d: %s\n" % (i, json.dumps(p, ensure_ascii=False)))
        f.write("\nfloat32 vs float64:\n")
        for line in lines:
            f.write("  " + line + "\n")
    print("\n".join(lines))
    print("wrote %s (%d prompts)" % (args.out, len(prompts)))

    if args.weights and os.path.exists(os.path.join(os.path.dirname(args.weights),
                                                    "io.safetensors")):
        old = load_file(os.path.join(os.path.dirname(args.weights), "io.safetensors"))
        if old["input_ids"].shape == ids.shape and torch.equal(old["input_ids"], ids):
            for name in ("last_hidden_state", "pooler_output", "last_hidden_state_masked"):
                print("vs the committed %s: rel err %.3g" %
                      (name, rel_err(tensors[name + "_f64"], old[name + "_f64"])))
    if args.check:
        bad = sdw_tokens_check(args.check, prompts, ids, mask)
        worst = sdw_check(args.check, args.out)
        if bad or worst > 1e-5:
            sys.exit("sdw differs: %d token mismatches, worst error %.3g" % (bad, worst))


if __name__ == "__main__":
    main()
