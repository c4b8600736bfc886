#!/usr/bin/env python3
"""The SD 1.x VAE decoder, sdw vs diffusers, in one run.

Runs `build/sdw-bench vae_decode_512` (bench/bench_vae.c: the sd-vae-ft-mse
architecture with random weights, a 64x64 latent -> 512x512 image, batch 1, best-of
timing) and then diffusers' AutoencoderKL.decode with the same configuration, random
weights, the same shape and torch.set_num_threads(THREADS), alternating the two
--rounds times and keeping the best of each, and prints milliseconds, GFLOP/s, peak
memory and the ratio.

Setup (Debian's torch; never PyPI's torch wheels):
  apt-get install -y python3-torch
  /usr/bin/python3 -m venv --system-site-packages .venv-tools
  .venv-tools/bin/pip install --no-deps diffusers==0.25.1 huggingface_hub==0.25.2 \\
      safetensors filelock packaging tqdm fsspec importlib_metadata zipp
(numpy, regex, requests, pyyaml and Pillow come from Debian's python3 packages.)
Usage:
  make build/sdw-bench
  .venv-tools/bin/python tools/bench_vae.py [--sdw-bench build/sdw-bench] [--threads 2]
      [--rounds 2]
"""
import argparse
import re
import resource
import subprocess
import sys
import time

# FLOPs of one decode of a 64x64 latent: 2 x multiply-adds of every Conv2d and Linear
# of diffusers' model (forward hooks) + 4 T^2 C for the attention; bench_vae.c prints
# the same number. sdw executes fewer (its upsamplers run as 2x2 phase convolutions),
# so GFLOP/s below are "effective": this count over each one's time.
DECODE_FLOPS = 2514518933504


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Diffusers:
    """diffusers' AutoencoderKL with the sd-vae-ft-mse configuration, random weights."""

    def __init__(self, threads):
        import diffusers
        import torch
        from diffusers import AutoencoderKL

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.rss0 = rss_mib()
        self.vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                                 block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                 down_block_types=("DownEncoderBlock2D",) * 4,
                                 up_block_types=("UpDecoderBlock2D",) * 4,
                                 norm_num_groups=32, sample_size=512).eval()
        self.z = torch.randn(1, 4, 64, 64)
        self.versions = (diffusers.__version__, torch.__version__,
                         type(self.vae.decoder.mid_block.attentions[0].processor).__name__)
        with torch.no_grad():
            self.vae.decode(self.z)  # warm-up

    def time_decode(self):
        with self.torch.no_grad():
            t0 = time.perf_counter()
            self.vae.decode(self.z)
            return (time.perf_counter() - t0) * 1e3


def run_sdw(sdw_bench, threads):
    out = subprocess.run([sdw_bench, "vae_decode_512"], check=True, capture_output=True,
                         text=True, env={"OMP_NUM_THREADS": str(threads),
                                         "PATH": "/usr/bin:/bin"}).stdout
    m = re.search(r"vae_decode 512x512: ([0-9.]+) ms", out)
    if not m:
        sys.exit("could not read sdw-bench's output:\n" + out)
    return float(m.group(1)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdw-bench", default="build/sdw-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2,
                    help="alternate sdw and diffusers this many times and keep the best of each "
                         "(robust to other load on the machine)")
    args = ap.parse_args()

    ref = Diffusers(args.threads)
    sdw_best, ref_best, outs = 1e30, 1e30, []
    for r in range(args.rounds):
        ms, out = run_sdw(args.sdw_bench, args.threads)
        outs.append(out)
        sdw_best = min(sdw_best, ms)
        ref_ms = ref.time_decode()
        ref_best = min(ref_best, ref_ms)
        print("round %d: sdw %.0f ms, diffusers %.0f ms" % (r + 1, ms, ref_ms), flush=True)
    best_out = min(outs, key=lambda o: float(re.search(r"512x512: ([0-9.]+) ms", o).group(1)))
    sys.stdout.write(best_out)
    mem = re.search(r"peak RSS ([0-9.]+) MiB", best_out)
    arena = re.search(r"activation arena peak ([0-9.]+) MiB", best_out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    dv, tv, proc = ref.versions
    print("\ndiffusers %s AutoencoderKL.decode (torch %s, %d threads, %s), best of %d" %
          (dv, tv, args.threads, proc, args.rounds))
    print("decode 64x64 -> 512x512: sdw %.0f ms (%.1f effective GFLOP/s)  diffusers %.0f ms "
          "(%.1f GFLOP/s)  ratio sdw/diffusers %.2f (sdw %.2fx faster)" %
          (sdw_best, DECODE_FLOPS / sdw_best / 1e6, ref_best, DECODE_FLOPS / ref_best / 1e6,
           sdw_best / ref_best, ref_best / sdw_best))
    print("memory: sdw peak RSS %s MiB (decoder only; activation arena %s MiB); diffusers RSS "
          "%.0f MiB with the model (%.0f MiB before it), peak %.0f MiB (whole AutoencoderKL)" %
          (mem.group(1) if mem else "?", arena.group(1) if arena else "?", rss_mib(), ref.rss0,
           peak))


if __name__ == "__main__":
    main()
