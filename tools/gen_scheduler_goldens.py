#!/usr/bin/env python3
"""Regenerates two golden bundles used by the C tests:

  tests/data/goldens/samplers/   diffusers v0.25.1 Euler / DPM++ 2M / DDIM full
                                 sampling loops with a fixed fake denoiser
  tests/data/goldens/torch_rng/  torch.Generator("cpu").manual_seed(s) +
                                 torch.randn(...) values, both torch CPU kernels

Setup (Debian's torch, no PyPI torch wheels):
  apt-get install -y python3-torch
  /usr/bin/python3 -m venv --system-site-packages .venv-tools
  .venv-tools/bin/pip install diffusers==0.25.1 --no-deps
  .venv-tools/bin/pip install packaging filelock importlib_metadata safetensors \
      huggingface_hub==0.20.3
  .venv-tools/bin/python tools/gen_scheduler_goldens.py [--out tests/data/goldens]

The torch_rng bundle needs torch's portable ("DEFAULT" capability) normal
kernel as well as the AVX2 one; the script re-runs itself with
ATEN_CPU_CAPABILITY=default for that part.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

SD_KW = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
             beta_schedule="scaled_linear")


def cpu_capability():
    txt = torch.__config__.show()
    for line in txt.splitlines():
        if "CPU capability usage" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def torch_desc():
    """torch.__version__ plus the Debian package version when there is one
    (Debian's 1.13.1+dfsg reports itself as 1.13.0a0)."""
    try:
        deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3-torch"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return f"{torch.__version__} (Debian python3-torch {deb}, CPU)"
    except (OSError, subprocess.CalledProcessError):
        return f"{torch.__version__} (CPU)"


def shape_str(shape):
    return "x".join(str(d) for d in shape)


# --------------------------------------------------------------------------- torch RNG

RNG_SEEDS = [0, 42, 2**32 - 1]
RNG_SHAPES_AVX2 = [(1, 4, 64, 64), (2, 4, 8, 8), (7,), (17,)]
RNG_SHAPES_SCALAR = [(1, 4, 16, 16), (2, 4, 8, 8), (7,), (17,)]
SEQ_SHAPES = [(7,), (7,), (3,), (17,), (2, 4, 8, 8), (1,), (33,), (16,)]


def rng_tensors(kernel):
    """Tensors for one torch normal kernel ('avx2' or 'scalar')."""
    out = {}
    shapes = RNG_SHAPES_AVX2 if kernel == "avx2" else RNG_SHAPES_SCALAR
    for seed in RNG_SEEDS:
        for shape in shapes:
            g = torch.Generator("cpu").manual_seed(seed)
            out[f"randn.{kernel}.s{seed}.{shape_str(shape)}"] = torch.randn(shape, generator=g)
    g = torch.Generator("cpu").manual_seed(1234)
    for k, shape in enumerate(SEQ_SHAPES):
        out[f"seq.{kernel}.s1234.k{k}"] = torch.randn(shape, generator=g)
    if kernel == "avx2":
        # src/inference.py: torch.Generator("cpu").manual_seed(args.seed + i) for
        # the batch starting at prompt i, then randn((B, 4, H/8, W/8)); here
        # --seed 42, batch size 2, 256x256 images, batches i = 0 and i = 2.
        for i in (0, 2):
            g = torch.Generator("cpu").manual_seed(42 + i)
            out[f"inference.seed42.i{i}"] = torch.randn((2, 4, 32, 32), generator=g)
        g = torch.Generator("cpu").manual_seed(0)
        out["rand.s0.5"] = torch.rand((5,), generator=g)
    return {k: v.contiguous() for k, v in out.items()}


def rng_child(path):
    from safetensors.torch import save_file
    save_file(rng_tensors("scalar"), path)
    print(cpu_capability())


def write_rng(out_dir):
    from safetensors.torch import load_file, save_file
    os.makedirs(out_dir, exist_ok=True)
    cap = cpu_capability()
    if cap != "AVX2" and cap != "AVX512":
        sys.exit(f"torch reports CPU capability {cap}; the AVX2 kernel needs an AVX2 machine")
    tensors = rng_tensors("avx2")
    tmp = os.path.join(out_dir, "scalar.tmp.safetensors")
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default")
    res = subprocess.run([sys.executable, __file__, "--rng-child", tmp], env=env, check=True,
                         capture_output=True, text=True)
    child_cap = res.stdout.strip().splitlines()[-1]
    if child_cap not in ("NO AVX", "DEFAULT"):
        sys.exit(f"ATEN_CPU_CAPABILITY=default run reports {child_cap}")
    tensors.update(load_file(tmp))
    os.remove(tmp)
    meta = {"torch": torch.__version__, "capability_avx2_run": cap,
            "capability_scalar_run": child_cap}
    save_file(tensors, os.path.join(out_dir, "io.safetensors"), metadata=meta)
    lines = [
        "torch_rng: torch.Generator('cpu').manual_seed(s) + torch.randn(shape, generator=g), float32",
        "=" * 88,
        "",
        f"Made by tools/gen_scheduler_goldens.py with torch {torch_desc()},",
        "numpy " + np.__version__ + ".",
        f"'avx2' tensors: torch's default dispatch on this x86-64 machine (it reports CPU capability {cap};",
        "normal_stub has no AVX512 kernel, so AVX512 machines run the AVX2 one too).",
        f"'scalar' tensors: the same calls with ATEN_CPU_CAPABILITY=default (torch reports '{child_cap}'):",
        "torch's portable normal_fill_16 with libm logf/cosf/sinf.",
        "numel < 16 goes through at::normal_distribution<double> in both.",
        "",
        "Names",
        "-----",
        "randn.{kernel}.s{seed}.{shape}  fresh generator seeded with seed, one randn(shape)",
        f"    seeds {RNG_SEEDS}; avx2 shapes {[list(s) for s in RNG_SHAPES_AVX2]};",
        f"    scalar shapes {[list(s) for s in RNG_SHAPES_SCALAR]}",
        "seq.{kernel}.s1234.k{k}  one generator seeded with 1234, successive randn calls of shapes",
        f"    {[list(s) for s in SEQ_SHAPES]} (k = call index; exercises the cached",
        "    Box-Muller value across calls and the state advancing between the two paths)",
        "inference.seed42.i{i}  the seed's src/inference.py noise: manual_seed(42 + i), randn((2,4,32,32))",
        "    for the batches starting at prompts i = 0 and 2 (--seed 42, batch size 2, 256x256)",
        "rand.s0.5  manual_seed(0), torch.rand((5,)) (the float uniform)",
        "",
        "Tensors",
        "-------",
    ]
    for k, v in tensors.items():
        lines.append(f"{k} | F32 | {list(v.shape)}")
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- samplers

def fake_denoiser(x_in, t):
    """eps = 0.1 * x_in + (0.5 + t/1000) * C, in x_in's dtype."""
    w = 0.5 + float(t) / 1000.0
    return 0.1 * x_in + w * FAKE_C.to(x_in.dtype)


FAKE_C = None


def run_loop(sched, latents0, n, f64, eta=None, noises=None):
    """The StableDiffusionPipeline denoising loop (without guidance). Returns the
    final latents and the latents after steps 1 and 2."""
    from diffusers import DDIMScheduler
    sched.set_timesteps(n)
    if f64:
        if isinstance(sched, DDIMScheduler):
            sched.alphas_cumprod = sched.alphas_cumprod.double()
            sched.final_alpha_cumprod = sched.final_alpha_cumprod.double()
        else:
            sched.sigmas = sched.sigmas.double()
    dtype = torch.float64 if f64 else torch.float32
    init_sigma = sched.init_noise_sigma
    latents = latents0.to(dtype) * (init_sigma.to(dtype) if torch.is_tensor(init_sigma) else init_sigma)
    after = []
    for i, t in enumerate(sched.timesteps):
        x_in = sched.scale_model_input(latents, t)
        eps = fake_denoiser(x_in, t)
        if isinstance(sched, DDIMScheduler):
            kw = dict(eta=eta)
            if eta and eta > 0:
                kw["variance_noise"] = noises[i].to(dtype)
            latents = sched.step(eps, t, latents, **kw).prev_sample
        else:
            latents = sched.step(eps, t, latents).prev_sample
        after.append(latents.clone())
    return latents, after


def write_samplers(out_dir):
    global FAKE_C
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
    import diffusers
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    shape = (2, 4, 8, 8)
    x_T = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(42))
    FAKE_C = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(7))
    tensors = {"x_T": x_T, "C": FAKE_C}
    # Schedules other than SD's (torch's float32 linspace / cumprod).
    from diffusers import DDPMScheduler
    for tag, kw in [("linear", dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                    beta_schedule="linear")),
                    ("scaled_linear.T777", dict(SD_KW, num_train_timesteps=777))]:
        ddpm = DDPMScheduler(**kw)
        tensors[f"schedule.{tag}.betas"] = ddpm.betas
        tensors[f"schedule.{tag}.alphas_cumprod"] = ddpm.alphas_cumprod
    configs = []
    for spacing, karras, n, off in [("linspace", False, 10, 0), ("linspace", False, 25, 0),
                                    ("linspace", True, 10, 0), ("linspace", True, 25, 0),
                                    ("leading", False, 10, 1), ("trailing", False, 10, 0)]:
        tag = "karras" if karras else spacing
        configs.append((f"euler.{tag}.n{n}", EulerDiscreteScheduler,
                        dict(SD_KW, timestep_spacing=spacing, use_karras_sigmas=karras,
                             steps_offset=off), n, None))
        configs.append((f"dpmpp.{tag}.n{n}", DPMSolverMultistepScheduler,
                        dict(SD_KW, algorithm_type="dpmsolver++", solver_order=2,
                             solver_type="midpoint", lower_order_final=True,
                             timestep_spacing=spacing, use_karras_sigmas=karras,
                             steps_offset=off), n, None))
    ddim_kw = dict(SD_KW, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                   timestep_spacing="leading", prediction_type="epsilon")
    configs.append(("ddim.leading.n10.eta0", DDIMScheduler, ddim_kw, 10, 0.0))
    configs.append(("ddim.leading.n10.eta1", DDIMScheduler, ddim_kw, 10, 1.0))
    configs.append(("ddim.trailing.n10.eta0", DDIMScheduler,
                    dict(ddim_kw, timestep_spacing="trailing", steps_offset=0), 10, 0.0))
    configs.append(("ddim.linspace.n10.eta0", DDIMScheduler,
                    dict(ddim_kw, timestep_spacing="linspace", steps_offset=0), 10, 0.0))
    stats = {}
    readme_cfg = []
    for name, cls, kw, n, eta in configs:
        noises = None
        if eta is not None and eta > 0:
            # The eta noise a pipeline draws with generator=manual_seed(1234):
            # one randn(shape) per step (diffusers' randn_tensor on the CPU).
            g = torch.Generator("cpu").manual_seed(1234)
            noises = [torch.randn(shape, generator=g) for _ in range(n)]
        s32 = cls(**kw)
        final32, after32 = run_loop(s32, x_T, n, False, eta, noises)
        s64 = cls(**kw)
        final64, after64 = run_loop(s64, x_T, n, True, eta, noises)
        ts = s32.timesteps
        tensors[f"{name}.timesteps"] = ts.to(torch.float32) if ts.is_floating_point() else ts.to(torch.int64)
        if not isinstance(s32, DDIMScheduler):
            tensors[f"{name}.sigmas"] = s32.sigmas.to(torch.float32)
        tensors[f"{name}.final"] = final32.to(torch.float32)
        tensors[f"{name}.final_f64"] = final64
        tensors[f"{name}.step1_f64"] = after64[0]
        tensors[f"{name}.step2_f64"] = after64[1]
        d = (final32.double() - final64).abs().max().item() / final64.abs().max().item()
        stats[name] = d
        readme_cfg.append(f"{name} | {cls.__name__}({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
                          f" | n={n}" + (f" | eta={eta}" if eta is not None else ""))
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"torch": torch.__version__, "diffusers": diffusers.__version__}
    save_file(tensors, os.path.join(out_dir, "io.safetensors"), metadata=meta)
    lines = [
        "samplers: full diffusers sampling loops with a fixed fake denoiser",
        "=" * 66,
        "",
        f"Made by tools/gen_scheduler_goldens.py with diffusers {diffusers.__version__} (PyPI, --no-deps),",
        f"torch {torch_desc()}, numpy {np.__version__}.",
        "",
        "Loop (StableDiffusionPipeline's, no guidance):",
        "  latents = x_T * scheduler.init_noise_sigma",
        "  for t in scheduler.timesteps:",
        "      x_in = scheduler.scale_model_input(latents, t)",
        "      eps = 0.1 * x_in + (0.5 + float(t)/1000) * C       (the fake denoiser)",
        "      latents = scheduler.step(eps, t, latents[, eta, variance_noise]).prev_sample",
        "x_T = torch.randn((2,4,8,8), generator=manual_seed(42)); C = randn(same shape, manual_seed(7)).",
        "DDIM eta=1: variance_noise[i] = the i-th randn((2,4,8,8)) of one generator seeded 1234 (what a",
        "pipeline with generator=manual_seed(1234) draws per step, the initial latents aside).",
        "",
        "{name}.final is the loop as diffusers runs it (float32). {name}.final_f64 / step1_f64 / step2_f64",
        "(latents after the last, first and second step) are the same loop in float64: the schedule",
        "tables (Euler/DPM sigmas, DDIM alphas_cumprod and final_alpha_cumprod) are the float32 values",
        "upcast, and every operation after that is float64 (EulerDiscreteScheduler.step still rounds the",
        "sample to float32 on entry, as the library does).",
        "{name}.timesteps: scheduler.timesteps after set_timesteps (F32 for Euler, I64 otherwise);",
        "{name}.sigmas: scheduler.sigmas (F32, n+1 entries) for Euler and DPM++.",
        "schedule.linear.*: DDPMScheduler(1000 steps, beta_start=0.0001, beta_end=0.02, 'linear') betas and",
        "alphas_cumprod; schedule.scaled_linear.T777.*: the SD schedule with num_train_timesteps=777.",
        "",
        "Configs (name | scheduler | steps | eta)",
        "----------------------------------------",
    ] + readme_cfg + [
        "",
        "float32 loop vs float64 loop: max|final - final_f64| / max|final_f64|",
        "--------------------------------------------------------------------",
    ] + [f"{k} | {v:.3e}" for k, v in stats.items()] + [
        "",
        "Tensors",
        "-------",
    ] + [f"{k} | {str(v.dtype).replace('torch.', '')} | {list(v.shape)}" for k, v in tensors.items()]
    with open(os.path.join(out_dir, "README.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "errors.json"), "w") as f:
        json.dump(stats, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/goldens")
    ap.add_argument("--rng-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rng_child:
        rng_child(args.rng_child)
        return
    torch.set_num_threads(1)
    write_rng(os.path.join(args.out, "torch_rng"))
    write_samplers(os.path.join(args.out, "samplers"))


if __name__ == "__main__":
    main()
