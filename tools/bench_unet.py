#!/usr/bin/env python3
"""UNet forward, sdw vs PyTorch, on the same random weights and threads.

One classifier-free-guidance step: batch 2, 64x64 latent, 77-token context,
fp32, for
  seed : the seed project's UNetModel (780,718,404 parameters), re-implemented
         below from ../shared/SEED.md section 1 (the seed's code is not
         vendored here); --check verifies this re-implementation against the
         seed-unet-tiny golden, which the seed's own code produced;
  sd15 : diffusers 0.25.1 UNet2DConditionModel with the SD 1.5 config.
For each model: a child process builds the PyTorch model with random weights
(uniform +-0.03, seeded) and saves it as a bundle (config.json +
weights.safetensors) in a temporary folder; `sdw-bench unet_<model>` runs on
that bundle (SDW_BENCH_UNET_WEIGHTS); a second child loads the same weights
into PyTorch and times torch.no_grad() forwards. Both report the best time of
at least two forwards after a warm-up, and the peak RSS during the forwards
(VmHWM reset through /proc/self/clear_refs just before; weights included).

Setup: Debian's python3-torch with diffusers in a --system-site-packages venv:
  python3 -m venv --system-site-packages .venv-tools
  .venv-tools/bin/pip install --no-deps diffusers==0.25.1 safetensors huggingface_hub
Usage:
  make build/sdw-bench
  .venv-tools/bin/python tools/bench_unet.py [--model seed|sd15|both] [--threads 2]
  .venv-tools/bin/python tools/bench_unet.py --check
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

N, H, W, S = 2, 64, 64, 77


# --- the seed's UNetModel (SEED.md 1.1-1.7), module order = state_dict order ---

def seed_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def sdpa(q, k, v, scale):
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, scale=scale)
        # torch < 2.0: the exact formula (as the goldens' generator did)
        return torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1) @ v

    class CrossAttention(nn.Module):
        def __init__(self, q_dim, c_dim, heads):
            super().__init__()
            self.heads, self.head_dim = heads, q_dim // heads
            self.scale = self.head_dim ** -0.5
            self.to_q = nn.Linear(q_dim, q_dim, bias=False)
            self.to_k = nn.Linear(c_dim, q_dim, bias=False)
            self.to_v = nn.Linear(c_dim, q_dim, bias=False)
            self.to_out = nn.Linear(q_dim, q_dim)

        def forward(self, x, ctx=None):
            ctx = x if ctx is None else ctx
            b, n, c = x.shape

            def split(t):
                return t.view(b, -1, self.heads, self.head_dim).transpose(1, 2)

            out = sdpa(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)),
                       self.scale)
            return self.to_out(out.transpose(1, 2).reshape(b, n, c))

    class TransformerBlock(nn.Module):
        def __init__(self, dim, ctx_dim, heads):
            super().__init__()
            self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.self_attn = CrossAttention(dim, dim, heads)
            self.cross_attn = CrossAttention(dim, ctx_dim, heads)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x, ctx):
            x = x + self.self_attn(self.ln1(x))
            if ctx is not None:
                x = x + self.cross_attn(self.ln2(x), ctx)
            return x + self.mlp(self.ln3(x))

    class SpatialTransformer(nn.Module):
        def __init__(self, c, ctx_dim, heads):
            super().__init__()
            self.norm = nn.GroupNorm(32, c)
            self.proj_in = nn.Conv2d(c, c, 1)
            self.proj_out = nn.Conv2d(c, c, 1)
            self.tfm = TransformerBlock(c, ctx_dim, heads)

        def forward(self, x, ctx):
            b, c, h, w = x.shape
            y = self.proj_in(self.norm(x)).view(b, c, h * w).transpose(1, 2)
            y = self.tfm(y, ctx)
            return self.proj_out(y.transpose(1, 2).reshape(b, c, h, w)) + x

    class UNetResBlock(nn.Module):
        def __init__(self, in_ch, out_ch, t_dim, ctx_dim, heads, use_attn):
            super().__init__()
            self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(t_dim, out_ch))
            self.norm1 = nn.GroupNorm(32, in_ch)
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            self.norm2 = nn.GroupNorm(32, out_ch)
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
            self.tfm = SpatialTransformer(out_ch, ctx_dim, heads) if use_attn else None

        def forward(self, x, t, ctx):
            h = self.conv1(F.silu(self.norm1(x))) + self.time_mlp(t)[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            if self.tfm is not None and ctx is not None:
                h = self.tfm(h, ctx)
            return h + self.skip(x)

    class UNetModel(nn.Module):
        def __init__(self, in_ch=4, out_ch=4, ch=320, res_blks=2, attn_lvls=(1, 2, 3),
                     ch_mults=(1, 2, 4, 4), heads=8, t_dim=320, ctx_dim=768, grad_ckpt=False):
            super().__init__()
            self.t_dim = t_dim
            self.t_emb = nn.Sequential(nn.Linear(t_dim, 4 * t_dim), nn.SiLU(),
                                       nn.Linear(4 * t_dim, t_dim))
            self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)
            self.downs = nn.ModuleList()
            cur, widths = ch, []
            for lvl, m in enumerate(ch_mults):
                for _ in range(res_blks):
                    self.downs.append(UNetResBlock(cur, ch * m, t_dim, ctx_dim, heads,
                                                   lvl in attn_lvls))
                    cur = ch * m
                    widths.append(cur)
                if lvl < len(ch_mults) - 1:
                    self.downs.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
            self.mid = nn.ModuleList([UNetResBlock(cur, cur, t_dim, ctx_dim, heads, True),
                                      UNetResBlock(cur, cur, t_dim, ctx_dim, heads, False)])
            self.ups = nn.ModuleList()
            for lvl in reversed(range(len(ch_mults))):
                for _ in range(res_blks):
                    self.ups.append(UNetResBlock(cur + widths.pop(), ch * ch_mults[lvl], t_dim,
                                                 ctx_dim, heads, lvl in attn_lvls))
                    cur = ch * ch_mults[lvl]
                if lvl > 0:
                    self.ups.append(nn.ConvTranspose2d(cur, cur, 4, stride=2, padding=1))
            self.norm_out = nn.GroupNorm(32, cur)
            self.conv_out = nn.Conv2d(cur, out_ch, 3, padding=1)

        def sinusoid(self, t):
            half = self.t_dim // 2
            freq = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) /
                             (half - 1))
            ang = t.float()[:, None] * freq[None, :]
            return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)

        def forward(self, x, t, ctx=None):
            temb = self.t_emb(self.sinusoid(t))
            h, skips = self.conv_in(x), []
            for m in self.downs:
                if isinstance(m, UNetResBlock):
                    h = m(h, temb, ctx)
                    skips.append(h)
                else:
                    h = m(h)
            for m in self.mid:
                h = m(h, temb, ctx)
            for m in self.ups:
                h = m(torch.cat([h, skips.pop()], dim=1), temb, ctx) if isinstance(
                    m, UNetResBlock) else m(h)
            return self.conv_out(F.silu(self.norm_out(h)))

    return UNetModel


SEED_DEFAULTS = dict(in_ch=4, out_ch=4, ch=320, res_blks=2, attn_lvls=[1, 2, 3],
                     ch_mults=[1, 2, 4, 4], heads=8, t_dim=320, ctx_dim=768, grad_ckpt=False)


def build(kind, config=None):
    if kind == "seed":
        cfg = dict(config or SEED_DEFAULTS)
        cfg.pop("_class_name", None)
        return seed_modules()(**cfg).eval(), dict(_class_name="SeedUNetModel", **cfg)
    from diffusers import UNet2DConditionModel
    if config is None:
        model = UNet2DConditionModel(cross_attention_dim=768)  # the SD 1.5 layout
    else:
        model = UNet2DConditionModel.from_config(config)
    return model.eval(), None


def rss_peak_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def child_prepare(kind, folder):
    import torch
    from safetensors.torch import save_file
    torch.manual_seed(1234)
    model, cfg = build(kind)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.03, 0.03)
    if cfg is None:
        model.save_config(folder)
    else:
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, "weights.safetensors"))


def child_time(kind, folder, threads, min_seconds):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    model, _ = build(kind, config)
    model.load_state_dict(load_file(os.path.join(folder, "weights.safetensors")), strict=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, H, W, generator=g)
    t = torch.full((N,), 999, dtype=torch.long)
    ctx = torch.randn(N, S, 768, generator=g)
    import gc
    gc.collect()
    rss_peak_reset()
    with torch.no_grad():
        def fwd():
            if kind == "seed":
                return model(x, t, ctx)
            return model(x, t, encoder_hidden_states=ctx).sample
        fwd()  # warm-up
        best, reps, start = float("inf"), 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - start < min_seconds:
            t0 = time.perf_counter()
            fwd()
            best = min(best, time.perf_counter() - t0)
            reps += 1
    print(json.dumps({"ms": best * 1e3, "peak_mib": rss_peak_mib(), "reps": reps,
                      "torch": torch.__version__}))


def run_sdw(bench, kind, folder, threads):
    env = dict(os.environ, SDW_BENCH_UNET_WEIGHTS=folder, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([bench, "unet_" + kind], env=env, check=True, capture_output=True,
                         text=True).stdout
    sys.stdout.write(out)
    m = re.search(r"unet \w+: ([\d.]+) ms/forward, ([\d.]+) GFLOP per forward.*"
                  r"peak RSS during the forwards ([\d.]+) MiB", out)
    ceiling = re.search(r"= ([\d.]+) GFLOP/s", out)
    if not m:
        raise SystemExit("could not read sdw-bench's output")
    return (float(m.group(1)), float(m.group(2)), float(m.group(3)),
            float(ceiling.group(1)) if ceiling else float("nan"))


def check_seed():
    """The re-implementation against the seed's own outputs (golden)."""
    import torch
    from safetensors.torch import load_file
    ok = True
    for bundle in ("seed-unet-tiny", "seed-unet-small"):
        g = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "goldens", bundle)
        with open(os.path.join(g, "config.json")) as f:
            model, _ = build("seed", json.load(f))
        model.load_state_dict(load_file(os.path.join(g, "weights.safetensors")), strict=True)
        io = load_file(os.path.join(g, "io.safetensors"))
        with torch.no_grad():
            for ctx, ref in ((io["ctx"], "eps"), (None, "eps_noctx")):
                out = model(io["x"], io["t"], ctx)
                err = ((out.double() - io[ref + "_f64"]).abs().max() /
                       io[ref + "_f64"].abs().max()).item()
                print("seed re-implementation vs %s %s: normwise rel err %.3g" % (bundle, ref, err))
                ok &= err < 1e-4
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["seed", "sd15", "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sdw-bench", default="build/sdw-bench")
    ap.add_argument("--min-seconds", type=float, default=5.0)
    ap.add_argument("--check", action="store_true", help="check the seed re-implementation")
    ap.add_argument("--child", nargs=2, metavar=("ACTION", "KIND"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check_seed() else 1)
    if args.child:
        action, kind = args.child
        if action == "prepare":
            child_prepare(kind, args.folder)
        else:
            child_time(kind, args.folder, args.threads, args.min_seconds)
        return
    kinds = ["seed", "sd15"] if args.model == "both" else [args.model]
    rows = []
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="sdw-bench-unet-") as folder:
            me = [sys.executable, os.path.abspath(__file__), "--folder", folder,
                  "--threads", str(args.threads), "--min-seconds", str(args.min_seconds)]
            subprocess.run(me + ["--child", "prepare", kind], check=True)
            sdw_ms, gflop, sdw_peak, ceiling = run_sdw(args.sdw_bench, kind, folder, args.threads)
            out = subprocess.run(me + ["--child", "time", kind], check=True, capture_output=True,
                                 text=True).stdout
            torch_res = json.loads(out.strip().splitlines()[-1])
            rows.append((kind, sdw_ms, torch_res["ms"], gflop, sdw_peak, torch_res["peak_mib"],
                         ceiling, torch_res["torch"]))
    print("\nUNet forward, batch %d, %dx%d latent, %d-token context, fp32, %d threads" %
          (N, H, W, S, args.threads))
    print("%-5s %12s %12s %8s %10s %10s %14s %14s" % ("model", "sdw ms", "torch ms", "speedup",
                                                     "sdw GF/s", "torch GF/s", "sdw peak MiB",
                                                     "torch peak MiB"))
    for kind, sm, tm, gf, sp, tp, ceil, tv in rows:
        print("%-5s %12.1f %12.1f %7.2fx %10.1f %10.1f %14.0f %14.0f" %
              (kind, sm, tm, tm / sm, gf / sm * 1e3, gf / tm * 1e3, sp, tp))
    print("(sgemm ceiling in the sdw run: %.1f GFLOP/s; torch %s)" % (rows[-1][6], rows[-1][7]))


if __name__ == "__main__":
    main()
