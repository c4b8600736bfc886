#!/usr/bin/env python3
"""The CLIP ViT-L/14 text encoder, sdw vs transformers, in one run.

Runs `build/sdw-bench clip_text` (bench/bench_clip.c: random weights, batch 1 and 2
prompts x 77 tokens, best-of timing) and then transformers' CLIPTextModel with the
same configuration, random weights, the same batches and torch.set_num_threads(2),
and prints milliseconds per prompt, peak memory and the ratio. With --rounds N the two
alternate N times and the best time of each is kept (the machine may be shared).

Setup: see tools/gen_clip_goldens.py (Debian's python3-torch + transformers in
.venv-tools). Usage:
  make build/sdw-bench
  .venv-tools/bin/python tools/bench_clip.py [--sdw-bench build/sdw-bench] [--threads 2]
"""
import argparse
import re
import resource
import subprocess
import sys
import time


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def bench_torch(threads, batches, min_seconds):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rss0 = rss_mib()
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2)
    model = CLIPTextModel(cfg).eval()  # random initialisation
    result = {}
    for b in batches:
        ids = torch.randint(0, 49406, (b, 77))
        ids[:, 0] = 49406
        ids[:, 20] = 49407
        with torch.no_grad():
            model(input_ids=ids)  # warm-up
            best, start, reps = 1e30, time.perf_counter(), 0
            while reps < 3 or time.perf_counter() - start < min_seconds:
                t0 = time.perf_counter()
                model(input_ids=ids)
                best = min(best, time.perf_counter() - t0)
                reps += 1
        result[b] = best * 1e3 / b
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result, rss0, rss_mib(), peak, torch.__version__, model.config._attn_implementation


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sdw-bench", default="build/sdw-bench")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    sdw, ref = {}, {}
    for _ in range(args.rounds):
        out = subprocess.run([args.sdw_bench, "clip_text"], check=True, capture_output=True,
                             text=True, env={"OMP_NUM_THREADS": str(args.threads),
                                             "PATH": "/usr/bin:/bin"}).stdout
        sys.stdout.write(out)
        for m in re.finditer(r"batch (\d+): ([0-9.]+) ms per prompt", out):
            b = int(m.group(1))
            sdw[b] = min(sdw.get(b, 1e30), float(m.group(2)))
        mem = re.search(r"peak RSS ([0-9.]+) MiB", out)
        rss = re.search(r"RSS ([0-9.]+) MiB \(([0-9.]+) MiB before", out)
        if not sdw:
            sys.exit("could not read sdw-bench's output")
        r, rss0, rss1, peak, tv, attn = bench_torch(args.threads, sorted(sdw), args.min_seconds)
        for b, t in r.items():
            ref[b] = min(ref.get(b, 1e30), t)
    print("\ntransformers CLIPTextModel (torch %s, %d threads, %s attention)" %
          (tv, args.threads, attn))
    for b in sorted(sdw):
        print("batch %d: sdw %8.2f ms/prompt  transformers %8.2f ms/prompt  "
              "ratio sdw/transformers %.2f (sdw %.2fx faster)" %
              (b, sdw[b], ref[b], sdw[b] / ref[b], ref[b] / sdw[b]))
    print("memory: sdw RSS %s MiB (model + activations: %s MiB), peak %s MiB; "
          "transformers RSS %.1f MiB (model + activations: %.1f MiB), peak %.1f MiB" %
          (rss.group(1) if rss else "?",
           "%.1f" % (float(rss.group(1)) - float(rss.group(2))) if rss else "?",
           mem.group(1) if mem else "?", rss1, rss1 - rss0, peak))


if __name__ == "__main__":
    main()
