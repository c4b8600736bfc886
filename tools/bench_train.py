#!/usr/bin/env python3
"""One training step of the seed's UNet, sdw vs PyTorch, same weights, same threads.

The step: forward, F.mse_loss against a noise target, backward,
clip_grad_norm_(1.0), AdamW(lr 1e-5, weight decay 1e-2) -- the seed's
train.py step without the EMA, mixed precision, DDP or channels_last
(fp32 on the CPU). Two sizes, as bench/bench_train.c:
  small: the seed-unet-small golden's model (ch 32, 7.8M parameters),
         batch 2, 16x16 latent, 77 x 64 context;
  full : the seed's UNetModel (780,718,404 parameters), batch 1, 32x32
         latent, 77 x 768 context.
each without and with per-ResBlock gradient checkpointing (the seed's
default: torch.utils.checkpoint(use_reentrant=False) around every
UNetResBlock). The seed's model is tools/bench_unet.py's re-implementation
(checked against the seed's own outputs by `tools/bench_unet.py --check`).

A child process builds the PyTorch model with random weights (uniform
+-0.03, seeded) and saves it as a bundle; `sdw-bench train_seed_small|_full`
runs on that bundle (SDW_BENCH_TRAIN_WEIGHTS); a second child times the same
step in PyTorch. Both report the best step time over at least two steps
after a warm-up, and the peak RSS during the steps (VmHWM reset through
/proc/self/clear_refs just before; weights, gradients, moments included).

Setup: Debian's python3-torch in a --system-site-packages venv (see
tools/bench_unet.py). Usage:
  make build/sdw-bench
  .venv-tools/bin/python tools/bench_train.py [--size small|full|both] [--threads 2]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_unet  # noqa: E402  (the seed re-implementation and RSS helpers)

SIZES = {
    "small": dict(bench="train_seed_small", n=2, hw=16, s=77,
                  config=dict(in_ch=4, out_ch=4, ch=32, res_blks=2, attn_lvls=[1, 2, 3],
                              ch_mults=[1, 2, 4, 4], heads=8, t_dim=32, ctx_dim=64,
                              grad_ckpt=False)),
    "full": dict(bench="train_seed_full", n=1, hw=32, s=77, config=dict(bench_unet.SEED_DEFAULTS)),
}


def child_prepare(size, folder):
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(1234)
    model = bench_unet.seed_modules()(**SIZES[size]["config"])
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.03, 0.03)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(_class_name="SeedUNetModel", **SIZES[size]["config"]), f, indent=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, "weights.safetensors"))


def child_time(size, folder, threads, min_seconds, ckpt):
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from torch.utils.checkpoint import checkpoint
    torch.set_num_threads(threads)
    sz = SIZES[size]
    UNetModel = bench_unet.seed_modules()
    model = UNetModel(**sz["config"])
    model.load_state_dict(load_file(os.path.join(folder, "weights.safetensors")), strict=True)
    model.train()
    if ckpt:  # the seed: checkpoint(self._forward, x, t, ctx, use_reentrant=False) per ResBlock
        for m in model.modules():
            if type(m).__name__ == "UNetResBlock":
                inner = m.forward
                m.forward = (lambda f: lambda x, t, c: checkpoint(f, x, t, c,
                                                                  use_reentrant=False))(inner)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=1e-2)
    g = torch.Generator().manual_seed(0)
    n, hw = sz["n"], sz["hw"]
    x = torch.randn(n, 4, hw, hw, generator=g)
    noise = torch.randn(n, 4, hw, hw, generator=g)
    t = torch.tensor([(100 + 397 * i) % 1000 for i in range(n)], dtype=torch.long)
    ctx = torch.randn(n, sz["s"], sz["config"]["ctx_dim"], generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x, t, ctx), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    import gc
    gc.collect()
    bench_unet.rss_peak_reset()
    step()  # warm-up (also allocates the AdamW state)
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    print(json.dumps({"ms": best * 1e3, "peak_mib": bench_unet.rss_peak_mib(), "reps": reps,
                      "torch": torch.__version__}))


def run_sdw(bench, size, folder, threads, ckpt):
    env = dict(os.environ, SDW_BENCH_TRAIN_WEIGHTS=folder, OMP_NUM_THREADS=str(threads),
               SDW_BENCH_TRAIN_CKPT=str(int(ckpt)))
    out = subprocess.run([bench, SIZES[size]["bench"]], env=env, check=True, capture_output=True,
                         text=True).stdout
    sys.stdout.write(out)
    label = "seed_small" if size == "small" else "seed"
    m = re.search(r"  train " + label + r"( ckpt)?: ([\d.]+) ms/step.*?([\d.]+) GFLOP per step.*"
                  r"peak RSS during the steps ([\d.]+) MiB", out)
    ceiling = re.search(r"= ([\d.]+) GFLOP/s", out)
    if not m:
        raise SystemExit("could not read sdw-bench's output")
    return (float(m.group(2)), float(m.group(3)), float(m.group(4)),
            float(ceiling.group(1)) if ceiling else float("nan"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=["small", "full", "both"], default="both")
    ap.add_argument("--ckpt", choices=["off", "on", "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sdw-bench", default="build/sdw-bench")
    ap.add_argument("--min-seconds", type=float, default=5.0)
    ap.add_argument("--child", nargs=2, metavar=("ACTION", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--child-ckpt", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        action, size = args.child
        if action == "prepare":
            child_prepare(size, args.folder)
        else:
            child_time(size, args.folder, args.threads, args.min_seconds, bool(args.child_ckpt))
        return
    sizes = ["small", "full"] if args.size == "both" else [args.size]
    modes = [False, True] if args.ckpt == "both" else [args.ckpt == "on"]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="sdw-bench-train-") as folder:
            me = [sys.executable, os.path.abspath(__file__), "--folder", folder,
                  "--threads", str(args.threads), "--min-seconds", str(args.min_seconds)]
            subprocess.run(me + ["--child", "prepare", size], check=True)
            for ckpt in modes:
                sdw_ms, gflop, sdw_peak, ceiling = run_sdw(args.sdw_bench, size, folder,
                                                           args.threads, ckpt)
                out = subprocess.run(me + ["--child", "time", size, "--child-ckpt",
                                           str(int(ckpt))], check=True, capture_output=True,
                                     text=True).stdout
                tr = json.loads(out.strip().splitlines()[-1])
                rows.append((size, ckpt, sdw_ms, tr["ms"], gflop, sdw_peak, tr["peak_mib"],
                             ceiling, tr["torch"]))
    print("\nTraining step (forward + MSE + backward + clip + AdamW), fp32, %d threads" %
          args.threads)
    print("%-5s %4s %11s %11s %8s %9s %10s %13s %14s" % (
        "size", "ckpt", "sdw ms", "torch ms", "speedup", "sdw GF/s", "torch GF/s",
        "sdw peak MiB", "torch peak MiB"))
    for size, ck, sm, tm, gf, sp, tp, ceil, tv in rows:
        print("%-5s %4s %11.1f %11.1f %7.2fx %9.1f %10.1f %13.0f %14.0f" % (
            size, "on" if ck else "off", sm, tm, tm / sm, gf / sm * 1e3, gf / tm * 1e3, sp, tp))
    print("(sgemm ceiling in the last sdw run: %.1f GFLOP/s; torch %s)" % (rows[-1][7],
                                                                          rows[-1][8]))


if __name__ == "__main__":
    main()
