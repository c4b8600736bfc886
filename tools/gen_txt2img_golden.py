#!/usr/bin/env python3
"""Writes tests/data/goldens/txt2img-tiny: whole text-to-image runs of diffusers'
StableDiffusionPipeline (v0.25.1) on the tiny golden parts, the reference of
tests/cli/sample.sh (`sdw sample` end to end).

Parts (all from tests/data/goldens, random weights):
  unet          sd15-unet-tiny   diffusers UNet2DConditionModel (SD 1.x blocks)
  text_encoder  clip-text-tiny   transformers CLIPTextModel (64 wide, 2 layers)
  vae           vae-tiny         diffusers AutoencoderKL (2 levels: f = 2)
Every Attention module uses diffusers' classic AttnProcessor (torch 1.13 has no
scaled_dot_product_attention anyway).

Each case runs the pipeline as `sdw sample --tokenizer clip --rng torch-cpu` promises to:
  ids       open_clip's tokenizer (openai/CLIP's simple_tokenizer: sdw's --tokenizer clip),
            padded with 49407 after the end-of-text token as SD 1.x does
  embeds    CLIPTextModel(ids).last_hidden_state (no attention mask, as the SD pipeline)
            for the prompt and the negative prompt ("" when none)
  g         torch.Generator("cpu").manual_seed(seed)
  latents   torch.randn([1, 4, H/2, W/2], generator=g)
  image     pipe(prompt_embeds, negative_prompt_embeds, latents=latents, generator=g,
                 num_inference_steps, guidance_scale, eta, output_type="np")
            (g, already past the starting noise, gives DDIM's variance noise when eta > 0)
  schedulers, from SD 1.x's scheduler config (scaled_linear 0.00085..0.012, steps_offset 1,
  set_alpha_to_one false, clip_sample false):
    ddim      DDIMScheduler (leading spacing)
    euler     EulerDiscreteScheduler (its default linspace spacing)
    dpmpp-2m  DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint), optionally Karras

Each case is run twice: in float32 (image_u8: numpy_to_pil's round(x * 255), what a
diffusers user gets) and in float64 (everything .double(), the same latents upcast:
image_f64, the postprocessed values in [0, 1] before rounding). README.txt records how
far the float32 run lands from the float64 one, in 8-bit levels.

Setup: Debian's python3-torch, diffusers==0.25.1, transformers, open_clip_torch in
.venv-tools (see tools/gen_clip_goldens.py). Usage:
  .venv-tools/bin/python tools/gen_txt2img_golden.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffusers
import open_clip
import transformers
from diffusers import (AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler,
                       EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel)
from diffusers.models.attention_processor import AttnProcessor
from transformers import CLIPTextConfig, CLIPTextModel

G = "tests/data/goldens"
SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                    beta_schedule="scaled_linear", steps_offset=1, set_alpha_to_one=False,
                    clip_sample=False)

# name, prompt, negative, seed, sampler, karras, steps, cfg, eta, width, height
CASES = [
    ("ddim_s0", "a red fox in the snow, photograph", "", 0, "ddim", False, 4, 7.5, 0.0, 64, 64),
    ("ddim_s42", "a red fox in the snow, photograph", "", 42, "ddim", False, 4, 7.5, 0.0, 64, 64),
    ("ddim_s43", "a red fox in the snow, photograph", "", 43, "ddim", False, 4, 7.5, 0.0, 64, 64),
    ("ddim_eta", "a lighthouse at dusk", "blurry, low quality", 42, "ddim", False, 4, 7.5, 1.0,
     64, 48),
    ("euler_smax", "a bowl of ramen", "", 4294967295, "euler", False, 5, 5.0, 0.0, 48, 64),
    ("dpmpp_karras", "an astronaut riding a horse", "cartoon", 42, "dpmpp-2m", True, 5, 7.5,
     0.0, 64, 64),
]


def load_parts(dtype):
    ucfg = {k: v for k, v in json.load(open(G + "/sd15-unet-tiny/config.json")).items()
            if not k.startswith("_")}
    unet = UNet2DConditionModel(**ucfg).eval()
    unet.load_state_dict(load_file(G + "/sd15-unet-tiny/weights.safetensors"))
    vcfg = {k: v for k, v in json.load(open(G + "/vae-tiny/config.json")).items()
            if not k.startswith("_")}
    vae = AutoencoderKL(**vcfg).eval()
    vae.load_state_dict(load_file(G + "/vae-tiny/weights.safetensors"))
    te = CLIPTextModel(CLIPTextConfig.from_pretrained(G + "/clip-text-tiny")).eval()
    missing, unexpected = te.load_state_dict(load_file(G + "/clip-text-tiny/weights.safetensors"),
                                             strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    unet.set_attn_processor(AttnProcessor())
    vae.set_attn_processor(AttnProcessor())
    return unet.to(dtype), vae.to(dtype), te.to(dtype)


def token_ids(tok, text):
    ids = tok.encode(text)[:75]
    ids = [49406] + ids + [49407]
    return torch.tensor([ids + [49407] * (77 - len(ids))])


def scheduler(name, karras):
    if name == "ddim":
        return DDIMScheduler(**SD_SCHEDULER)
    if name == "euler":
        return EulerDiscreteScheduler(**{k: v for k, v in SD_SCHEDULER.items()
                                         if k not in ("set_alpha_to_one", "clip_sample")})
    return DPMSolverMultistepScheduler(
        use_karras_sigmas=karras, **{k: v for k, v in SD_SCHEDULER.items()
                                     if k not in ("set_alpha_to_one", "clip_sample")})


def randn_as_f32(orig):
    """DDIM's variance noise drawn as float32 values whatever the run's dtype, so the
    float64 run sees the float32 run's noise upcast (torch's float64 randn differs)."""
    def randn(shape, generator=None, device=None, dtype=None, layout=None):
        return orig(shape, generator=generator, device=device, dtype=torch.float32,
                    layout=layout).to(dtype)
    return randn


diffusers.schedulers.scheduling_ddim.randn_tensor = randn_as_f32(
    diffusers.schedulers.scheduling_ddim.randn_tensor)


def run(parts, dtype, case, tok):
    name, prompt, negative, seed, sampler, karras, steps, cfg, eta, W, H = case
    unet, vae, te = parts
    # transformers' causal mask is filled with finfo(default dtype).min
    torch.set_default_dtype(dtype)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=None, unet=unet,
                                   scheduler=scheduler(sampler, karras), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        pe = te(token_ids(tok, prompt))[0]
        ne = te(token_ids(tok, negative))[0]
        g = torch.Generator("cpu").manual_seed(seed)
        latents = torch.randn([1, 4, H // 2, W // 2], generator=g, dtype=torch.float32)
        out = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, latents=latents.to(dtype),
                   generator=g, num_inference_steps=steps, guidance_scale=cfg, eta=eta,
                   height=H, width=W, output_type="np")
    torch.set_default_dtype(torch.float32)
    return out.images[0], latents  # [H, W, 3] in [0, 1]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else G + "/txt2img-tiny"
    os.makedirs(out_dir, exist_ok=True)
    tok = open_clip.tokenizer.SimpleTokenizer()
    p32, p64 = load_parts(torch.float32), load_parts(torch.float64)
    tensors, cases, lines = {}, [], []
    for case in CASES:
        name = case[0]
        img32, lat = run(p32, torch.float32, case, tok)
        img64, _ = run(p64, torch.float64, case, tok)
        u8 = (img32 * 255).round().astype(np.uint8)  # diffusers' numpy_to_pil
        tensors[name + ".image_u8"] = torch.from_numpy(u8.copy())
        tensors[name + ".image_f64"] = torch.from_numpy(img64.astype(np.float64).copy())
        tensors[name + ".noise"] = lat.contiguous()
        dev = np.abs(img32.astype(np.float64) - img64) * 255
        flips = int((u8 != np.round(img64 * 255)).sum())
        lines.append("%-13s max |f32 - f64| %.3g levels, u8 differs from round(f64) at %d of %d"
                     % (name, dev.max(), flips, u8.size))
        cases.append(dict(zip(["name", "prompt", "negative", "seed", "sampler", "karras",
                               "steps", "cfg", "eta", "width", "height"], case)))
    save_file(tensors, out_dir + "/io.safetensors",
              metadata={"torch": torch.__version__, "diffusers": diffusers.__version__,
                        "transformers": transformers.__version__})
    json.dump(cases, open(out_dir + "/cases.json", "w"), indent=1)
    with open(out_dir + "/README.txt", "w") as f:
        f.write("txt2img-tiny: diffusers StableDiffusionPipeline on the tiny golden parts\n")
        f.write("=" * 74 + "\n\n")
        f.write((__doc__.split("Setup:")[0]).strip() + "\n\n")
        f.write("Made by tools/gen_txt2img_golden.py with torch %s, diffusers %s, "
                "transformers %s, open_clip %s.\n\n" % (torch.__version__, diffusers.__version__,
                                                       transformers.__version__,
                                                       open_clip.__version__))
        f.write("cases.json: the settings of each case. io.safetensors per case NAME:\n"
                "  NAME.image_u8   U8  [H, W, 3] float32 run, round(x * 255)\n"
                "  NAME.image_f64  F64 [H, W, 3] float64 run, postprocessed, in [0, 1]\n"
                "  NAME.noise      F32 [1, 4, H/2, W/2] the starting latents (torch.randn)\n\n"
                "float32 vs float64 (8-bit levels):\n")
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
