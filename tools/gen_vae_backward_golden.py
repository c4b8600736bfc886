#!/usr/bin/env python3
"""Regenerates tests/data/goldens/vae-tiny/grads.safetensors: the gradients of
the VAE training loss (what the C VAE trainer implements) for diffusers'
AutoencoderKL with the vae-tiny golden model's config.json and
weights.safetensors (diffusers names, loaded strict), classic AttnProcessor
(so float64 runs), eval() (there is no dropout: train() gives the same).

Inputs, drawn here and stored: torch.manual_seed(2025);
image = rand(2,3,32,32)*2-1, then noise = randn(2,4,16,16) from the same
stream; kl_weight = 0.25. Loss, N = 2:
  moments      = quant_conv(encoder(x))                 [N, 8, 16, 16]
  mean, logvar = moments.chunk(2, dim=1); logvar clamped to [-30, 20]
  z            = mean + exp(0.5 * logvar) * noise
  recon        = decoder(post_quant_conv(z))            [N, 3, 32, 32]
  rec          = sum((recon - x)^2) / N                 (per-sample sum, batch mean)
  kl           = sum(0.5 * (mean^2 + exp(logvar) - 1 - logvar)) / N
  loss         = rec + kl_weight * kl
The script asserts (float64) that this loss equals diffusers' own route,
vae.encode(x).latent_dist .sample() (its randn_tensor made to return noise)
and .kl(), then vae.decode(z).sample, to 1e-12 relative.

The backward runs by autograd in float64 (model .double(), inputs upcast: the
reference) and in float32 (what float32 rounding costs: the test's tolerance
is set from it). Stored:
  image               F32 [2,3,32,32]
  noise               F32 [2,4,16,16]
  kl_weight           F64 [1]          0.25
  loss, rec, kl       F64 [1]          float64 run
  grad.<param>        F64              every parameter's gradient of loss,
                                       float64 run (model.named_parameters()
                                       names, diffusers')
  f32_rel             F64 [1]          the largest error of the float32 run
                                       against float64 over all gradients,
                                       each max|g32 - g64| / max(max|g64|, S)
                                       with S = 1e-3 x the largest gradient
                                       element of all
  recon_f64           F64 [2,3,32,32]  the float64 reconstruction (debugging)

Setup: Debian's python3-torch and diffusers==0.25.1 in .venv-tools (see
tools/bench_vae.py).
Run: .venv-tools/bin/python tools/gen_vae_backward_golden.py
"""
import json
import os

import torch
import diffusers.models.autoencoders.vae as dvae
from diffusers import AutoencoderKL
from diffusers.models.attention_processor import AttnProcessor
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "tests", "data", "goldens", "vae-tiny")
KL_WEIGHT = 0.25


def build(dtype):
    cfg = {k: v for k, v in json.load(open(os.path.join(GOLD, "config.json"))).items()
           if not k.startswith("_")}
    m = AutoencoderKL(**cfg)
    m.load_state_dict(load_file(os.path.join(GOLD, "weights.safetensors")), strict=True)
    m.set_attn_processor(AttnProcessor())
    return m.to(dtype).eval()


def vae_loss(model, x, noise, kl_weight):
    n = x.shape[0]
    moments = model.quant_conv(model.encoder(x))
    mean, logvar = moments.chunk(2, dim=1)
    logvar = logvar.clamp(-30, 20)
    std = torch.exp(0.5 * logvar)
    z = mean + std * noise
    recon = model.decoder(model.post_quant_conv(z))
    rec = ((recon - x) ** 2).sum() / n
    kl = (0.5 * (mean ** 2 + torch.exp(logvar) - 1 - logvar)).sum() / n
    return rec + kl_weight * kl, rec, kl, recon


def diffusers_loss(model, x, noise, kl_weight):
    """The same loss through diffusers' encode / DiagonalGaussianDistribution / decode."""
    saved = dvae.randn_tensor
    dvae.randn_tensor = lambda shape, **kw: noise
    try:
        post = model.encode(x).latent_dist
        z = post.sample()
    finally:
        dvae.randn_tensor = saved
    recon = model.decode(z).sample
    n = x.shape[0]
    rec = ((recon - x) ** 2).sum() / n
    kl = post.kl().sum() / n
    return rec + kl_weight * kl


def grads(model, x, noise):
    dtype = next(model.parameters()).dtype
    model.zero_grad()
    loss, rec, kl, recon = vae_loss(model, x.to(dtype), noise.to(dtype), KL_WEIGHT)
    loss.backward()
    g = {k: p.grad.detach().clone() for k, p in model.named_parameters()}
    return g, loss.detach(), rec.detach(), kl.detach(), recon.detach()


def main():
    torch.manual_seed(2025)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    noise = torch.randn(2, 4, 16, 16)

    m64, m32 = build(torch.float64), build(torch.float32)
    g64, loss, rec, kl, recon = grads(m64, image, noise)
    g32, loss32, _, _, _ = grads(m32, image, noise)

    with torch.no_grad():
        ref = diffusers_loss(m64, image.double(), noise.double(), KL_WEIGHT)
    d = abs(float(ref) - float(loss))
    print("self-check: |loss - diffusers route| = %.3g (loss %.17g)" % (d, float(loss)))
    assert d <= 1e-12 * max(1.0, abs(float(loss))), (float(loss), float(ref))

    S = 1e-3 * max(float(t.abs().max()) for t in g64.values())
    worst, worst_k = 0.0, None
    for k in g64:
        a, b = g64[k], g32[k].double()
        r = float((a - b).abs().max()) / max(float(a.abs().max()), S)
        if r > worst:
            worst, worst_k = r, k

    out = {
        "image": image.contiguous(),
        "noise": noise.contiguous(),
        "kl_weight": torch.tensor([KL_WEIGHT], dtype=torch.float64),
        "loss": loss.reshape(1).double(),
        "rec": rec.reshape(1).double(),
        "kl": kl.reshape(1).double(),
        "f32_rel": torch.tensor([worst], dtype=torch.float64),
        "recon_f64": recon.contiguous(),
    }
    for k, a in g64.items():
        out["grad." + k] = a.contiguous()
    path = os.path.join(GOLD, "grads.safetensors")
    save_file(out, path, metadata={"diffusers": __import__("diffusers").__version__,
                                   "torch": torch.__version__})

    print("loss %.17g  rec %.17g  kl %.17g  (float32 loss %.9g)"
          % (float(loss), float(rec), float(kl), float(loss32)))
    print("gradient tensors: %d (%d values)" % (len(g64), sum(t.numel() for t in g64.values())))
    print("f32_rel (float32 vs float64, worst normwise over the gradients): %.3g  [%s]"
          % (worst, worst_k))
    tops = {}
    for k, a in g64.items():
        top = k.split(".")[0]
        tops[top] = max(tops.get(top, 0.0), float(a.abs().max()))
    for top, v in tops.items():
        print("  max|grad| %-16s %.6g" % (top, v))
    print("wrote %s (%d bytes, %d tensors)" % (os.path.normpath(path), os.path.getsize(path), len(out)))


if __name__ == "__main__":
    main()
