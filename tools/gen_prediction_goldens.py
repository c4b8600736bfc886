#!/usr/bin/env python3
"""Regenerates tests/data/goldens/prediction/: what diffusers does with a
v-prediction or x0-prediction ("sample") model, for tests/test_prediction.c.

  - DDPMScheduler.get_velocity(x0, noise, t): the v training target;
  - full sampling loops (DDIM, Euler, DPM++ 2M; no guidance) whose fake model
    output is read as prediction_type v_prediction or sample, so our
    conversion to epsilon (sdw_prediction_to_epsilon at the timestep the model
    was called with, fractional for Euler's linspace spacing) is checked
    against the library's own handling of each prediction type.

Setup: the .venv-tools of tools/gen_scheduler_goldens.py (Debian's torch,
diffusers 0.25.1). Run: .venv-tools/bin/python tools/gen_prediction_goldens.py
"""
import argparse
import os

import numpy as np
import torch

SD_KW = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
             beta_schedule="scaled_linear")
SHAPE = (2, 3, 8, 8)


def fake_model(x_in, t, c):
    """out = 0.1 * x_in + (0.5 + t/1000) * C: the samplers bundle's denoiser,
    its output read as v or x0 here."""
    return 0.1 * x_in + (0.5 + float(t) / 1000.0) * c


def run_loop(sched, x_T, n, c):
    from diffusers import DDIMScheduler
    sched.set_timesteps(n)
    init_sigma = sched.init_noise_sigma
    latents = x_T * init_sigma
    for t in sched.timesteps:
        x_in = sched.scale_model_input(latents, t)
        out = fake_model(x_in, t, c)
        kw = dict(eta=0.0) if isinstance(sched, DDIMScheduler) else {}
        latents = sched.step(out, t, latents, **kw).prev_sample
    return latents, sched.timesteps


def main():
    from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                           EulerDiscreteScheduler)
    import diffusers
    from safetensors.torch import save_file
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/goldens/prediction")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x0 = torch.rand(SHAPE, generator=torch.Generator("cpu").manual_seed(1)) * 2 - 1
    noise = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(2))
    t = torch.tensor([3, 517], dtype=torch.int64)
    ddpm = DDPMScheduler(**SD_KW)
    tensors = {"x0": x0, "noise": noise, "t": t,
               "velocity": ddpm.get_velocity(x0, noise, t),
               "noisy": ddpm.add_noise(x0, noise, t)}
    x_T = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(42))
    c = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(7))
    tensors["x_T"], tensors["C"] = x_T, c
    readme = []
    for pred in ("v_prediction", "sample"):
        configs = [
            ("ddim.leading.n10", DDIMScheduler,
             dict(SD_KW, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                  timestep_spacing="leading")),
            ("euler.linspace.n10", EulerDiscreteScheduler,
             dict(SD_KW, timestep_spacing="linspace")),
            ("dpmpp.linspace.n10", DPMSolverMultistepScheduler,
             dict(SD_KW, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                  lower_order_final=True, timestep_spacing="linspace")),
        ]
        for name, cls, kw in configs:
            kw = dict(kw, prediction_type=pred)
            final, ts = run_loop(cls(**kw), x_T, 10, c)
            key = f"{pred}.{name}"
            tensors[f"{key}.final"] = final.to(torch.float32)
            tensors[f"{key}.timesteps"] = ts.to(torch.float64)
            readme.append(f"{key} | {cls.__name__}({', '.join(f'{k}={v!r}' for k, v in kw.items())})")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, os.path.join(args.out, "io.safetensors"),
              metadata={"torch": torch.__version__, "diffusers": diffusers.__version__})
    lines = [
        "prediction: diffusers' handling of v_prediction and sample (x0) models",
        "=" * 70,
        "",
        f"Made by tools/gen_prediction_goldens.py with diffusers {diffusers.__version__},",
        f"torch {torch.__version__} (CPU), float32 throughout.",
        "",
        "x0 = rand(2,3,8,8; seed 1)*2-1, noise = randn(seed 2), t = [3, 517];",
        "velocity = DDPMScheduler(SD schedule).get_velocity(x0, noise, t);",
        "noisy = add_noise(x0, noise, t).",
        "",
        "Loops (no guidance): latents = x_T * init_noise_sigma; for t in timesteps:",
        "  out = 0.1 * scale_model_input(latents, t) + (0.5 + t/1000) * C;",
        "  latents = step(out, t, latents).prev_sample",
        "with x_T = randn(seed 42), C = randn(seed 7), 10 steps, prediction_type as named.",
        "{pred}.{config}.final: the final latents; .timesteps: scheduler.timesteps (F64).",
        "",
    ] + readme + ["", "Tensors", "-------"] + [
        f"{k} | {str(v.dtype).replace('torch.', '')} | {list(v.shape)}" for k, v in tensors.items()]
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
