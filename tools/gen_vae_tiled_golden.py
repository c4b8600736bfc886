#!/usr/bin/env python3
"""Writes tests/data/vae/tiled.safetensors: diffusers' own tiled VAE outputs for the
vae-tiny golden model, the reference of tests/test_vae.c's vae_tiled_matches_diffusers.

diffusers v0.25.1 AutoencoderKL with tests/data/goldens/vae-tiny's config and weights,
classic AttnProcessor, run in float64 with enable_tiling() (its sample_size 32 gives
32-pixel / 16-latent tiles, overlap 0.25):

  latents        F32 [1, 4, 40, 36]  torch.manual_seed(0); randn
  decoded_f64    F64 [1, 3, 80, 72]  vae.decode(latents).sample        (a 4 x 3 tile grid)
  image          F32 [1, 3, 72, 56]  rand * 2 - 1 (same generator, after the latents)
  mean_f64       F64 [1, 4, 36, 28]  vae.encode(image).latent_dist.mean   (3 x 3 tiles)
  logvar_f64     F64 [1, 4, 36, 28]  vae.encode(image).latent_dist.logvar (clamped)
  untiled_f64    F64 [1, 3, 80, 72]  the same decode without tiling (for scale: the two
                                     differ by ~0.3 normwise, every tile having its own
                                     GroupNorm statistics)

Setup: Debian's python3-torch and diffusers==0.25.1 in .venv-tools (see
tools/bench_vae.py). Usage: .venv-tools/bin/python tools/gen_vae_tiled_golden.py [OUT]
"""
import json
import sys

import torch
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import AttnProcessor
from safetensors.torch import load_file, save_file

G = "tests/data/goldens/vae-tiny"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/vae/tiled.safetensors"
    cfg = {k: v for k, v in json.load(open(G + "/config.json")).items() if not k.startswith("_")}
    vae = AutoencoderKL(**cfg).eval()
    vae.load_state_dict(load_file(G + "/weights.safetensors"))
    vae.set_attn_processor(AttnProcessor())
    vae = vae.double()
    torch.manual_seed(0)
    z = torch.randn(1, 4, 40, 36)
    x = torch.rand(1, 3, 72, 56) * 2 - 1
    with torch.no_grad():
        vae.enable_tiling()
        dec = vae.decode(z.double()).sample
        post = vae.encode(x.double()).latent_dist
        vae.disable_tiling()
        untiled = vae.decode(z.double()).sample
    save_file({"latents": z.contiguous(), "decoded_f64": dec.contiguous(), "image": x.contiguous(),
               "mean_f64": post.mean.contiguous(), "logvar_f64": post.logvar.contiguous(),
               "untiled_f64": untiled.contiguous()}, out,
              metadata={"diffusers": __import__("diffusers").__version__,
                        "torch": torch.__version__})
    print("wrote", out, "tiled vs untiled:",
          ((dec - untiled).abs().max() / untiled.abs().max()).item())


if __name__ == "__main__":
    main()
