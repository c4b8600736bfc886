#!/usr/bin/env python3
"""Writes a full-size Stable Diffusion 1.5 pipeline folder with random
weights (diffusers layout: model_index.json, unet/, vae/, text_encoder/,
tokenizer/), for memory and speed measurements of `sdw sample` where the real
weights cannot be downloaded. Sizes are SD 1.5's: UNet 859.5M, VAE 83.7M,
CLIP ViT-L/14 text 123.1M parameters.

  .venv-tools/bin/python tools/make_random_sd15.py OUT_DIR
"""
import json
import os
import shutil
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    unet.save_pretrained(os.path.join(out, "unet"), safe_serialization=True)
    del unet
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4)
    vae.save_pretrained(os.path.join(out, "vae"), safe_serialization=True)
    del vae
    te = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu"))
    te.save_pretrained(os.path.join(out, "text_encoder"), safe_serialization=True)
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.25.1",
                   "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"],
                   "text_encoder": ["transformers", "CLIPTextModel"]}, f)


if __name__ == "__main__":
    main()
