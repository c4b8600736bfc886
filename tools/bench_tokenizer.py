#!/usr/bin/env python3
"""Benchmark and reference check of `sdw tokenize` against the Python tokenizers.

    python3 tools/bench_tokenizer.py [--count 100000] [--sdw build/sdw] [--seed 1]

It generates `--count` LAION-like captions (deterministic: a seeded mix of
short and long captions, shop listings, SD-style prompts, punctuation,
numbers, URLs, file names, HTML entities, a little Unicode: accents, CJK,
Cyrillic, emoji, curly quotes, mojibake), then, in the same run on the same
captions:

  * times `sdw tokenize --jsonl` (clip and hf modes; all OpenMP threads and
    OMP_NUM_THREADS=1), including process start and vocabulary load;
  * times openai/CLIP's tokenizer as packaged by open_clip_torch
    (open_clip.tokenizer.SimpleTokenizer, `tokenizer(texts)`, and its
    encode() one caption at a time);
  * times Hugging Face: the Rust `tokenizers` library through
    CLIPTokenizerFast, and the Python CLIPTokenizer (the seed's tokenizer),
    both built from the same vocabulary (no download);
  * checks the ids: sdw --tokenizer clip against open_clip on every caption
    (a reference check: open_clip runs openai/CLIP's code with ftfy 6.3.1 and
    regex), sdw --tokenizer hf against transformers' CLIPTokenizer (ids and
    attention mask), and reports how often the Rust fast tokenizer agrees;
  * does the same on the 158 cases of tests/data/clip/tokenizer_cases.tsv.

open_clip's SimpleTokenizer differs from openai/CLIP in one way that matters
here: its special tokens are spelled "<start_of_text>"/"<end_of_text>", so a
caption that types "<|endoftext|>" literally is tokenized as text there
(case 124 of the goldens); the generated captions never contain those
strings, and the 158-case check reports that line separately.

Environment (created idempotently on first run, then reused):
  Debian 12 packages (APT below: python3-torch 1.13 CPU, python3-regex
  2022.10.31 - the goldens' versions -, numpy, yaml, requests; installed with
  apt-get when run as root), and a
  virtual environment .venv-bench/ (git-ignored) made with
      /usr/bin/python3 -m venv --system-site-packages .venv-bench
  holding, installed with pip --no-deps, the pinned packages in PINS below
  (no PyPI torch: its CUDA wheels are gigabytes). The script re-executes
  itself inside that environment.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV = os.path.join(ROOT, ".venv-bench")
VOCAB = os.path.join(ROOT, "assets", "clip", "bpe_simple_vocab_16e6.txt.gz")
CASES = os.path.join(ROOT, "tests", "data", "clip", "tokenizer_cases.tsv")
APT = ["python3-torch", "python3-torchvision", "python3-regex", "python3-numpy", "python3-yaml",
       "python3-requests", "python3-typing-extensions", "python3-venv"]
PINS = [
    "open_clip_torch==3.3.0", "ftfy==6.3.1", "wcwidth==0.9.4", "tokenizers==0.20.3",
    "transformers==4.46.3", "huggingface_hub==0.26.5", "safetensors==0.8.0", "packaging==26.4",
    "filelock==4.3.1", "tqdm==4.70.1", "fsspec==2026.9.0",
]


# --- environment ------------------------------------------------------------------------
def ensure_env():
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    probe = "import torch, torchvision, regex, numpy, yaml, requests, typing_extensions"
    if subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode != 0:
        if os.geteuid() != 0:
            sys.exit("bench_tokenizer: needs the Debian packages " + " ".join(APT) +
                     "; run: sudo apt-get install -y " + " ".join(APT))
        subprocess.check_call(["apt-get", "install", "-y", "-q"] + APT)
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call(["/usr/bin/python3", "-m", "venv", "--system-site-packages", VENV])
    stamp = os.path.join(VENV, ".pins-" + hashlib.sha256(" ".join(PINS).encode()).hexdigest()[:12])
    if not os.path.exists(stamp):
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--no-deps"] + PINS)
        open(stamp, "w").close()
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


# --- captions ------------------------------------------------------------------------------
ADJ = ("red blue green black white golden vintage modern rustic cozy beautiful small large tiny "
       "huge old new wooden metal glass leather cotton silk abstract minimalist colorful dark "
       "bright misty sunny snowy ancient futuristic elegant cute happy lonely").split()
NOUN = ("cat dog house car tree mountain lake river city street beach forest flower garden "
        "chair table lamp sofa bed kitchen bathroom dress shirt shoes bag watch ring necklace "
        "painting poster print mug bottle cake pizza burger salad coffee tea bird horse girl "
        "boy woman man portrait landscape sunset sunrise skyline bridge castle church temple "
        "boat ship train plane bicycle guitar piano book phone laptop camera").split()
VERB = ("sitting standing running walking sleeping playing reading eating looking flying "
        "swimming posing smiling").split()
PLACE = ("on the beach|in the park|at night|in the snow|under the rain|in a field of flowers|"
         "on a wooden table|in the kitchen|near the window|in New York|in Paris|in Tokyo|"
         "on a white background|in the forest|by the lake").split("|")
BRAND = "Nike Adidas IKEA Canon Sony Apple Samsung Lego Disney Marvel Ford Toyota".split()
STYLE = ("highly detailed|trending on artstation|octane render|8k|4k|unreal engine|"
         "concept art|digital painting|sharp focus|by greg rutkowski|studio lighting|"
         "bokeh|cinematic|masterpiece|best quality|(masterpiece:1.2)|[blurry]|<lora:detail:0.8>").split("|")
UNICODE = ("café|naïve|Schön|Größe|crème brûlée|São Paulo|jalapeño|Zürich|Ærø|Kraków|façade|"
           "東京タワー|北京|서울|Москва|привет|Ελλάδα|שלום|مرحبا|नमस्ते|สวัสดี|"
           "😀|👍🏽|🇫🇷|❤️|🔥🔥|✨|™|©|®|€19.99|£10|½|°C|—|–|…|“quoted”|‘single’|•|×").split("|")
MOJIBAKE = ["cafÃ©", "SchÃ¶ne GrÃ¼ÃŸe", "donâ€™t", "â€œquotedâ€\x9d", "naÃ¯ve", "MÃ¼nchen",
            "Ã  la carte", "â€“ sale"]
SIZES = ["Black/White", "Navy", "XL", "32GB", '24"x36"', "10 oz"]
ENTITY = ["&amp;", "&quot;", "&#39;", "&nbsp;", "&amp", "&lt;3", "&hellip;", "&copy; 2019",
          "&#8217;", "&eacute;"]


def caption(r):
    k = r.random()
    if k < 0.30:  # plain caption
        s = f"{r.choice(['a', 'the', 'A', 'The'])} {r.choice(ADJ)} {r.choice(NOUN)} " \
            f"{r.choice(VERB)} {r.choice(PLACE)}"
    elif k < 0.45:  # shop listing
        s = (f"{r.choice(BRAND)} {r.choice(ADJ).title()} {r.choice(NOUN).title()} "
             f"{r.choice(['-', '|', '–', ':'])} Size {r.randint(1, 14)} "
             f"{r.choice(SIZES)} "
             f"${r.randint(5, 500)}.{r.randint(0, 99):02d}")
    elif k < 0.60:  # SD-style prompt
        parts = [f"{r.choice(ADJ)} {r.choice(NOUN)}" for _ in range(r.randint(1, 4))]
        parts += r.sample(STYLE, r.randint(1, 6))
        s = ", ".join(parts)
    elif k < 0.70:  # photo file / URL style
        s = r.choice([f"IMG_{r.randint(1000, 9999)}.JPG",
                      f"https://www.example.com/{r.choice(NOUN)}-{r.randint(1, 999)}.html",
                      f"DSC{r.randint(10000, 99999)}_edit-2.jpg",
                      f"@{r.choice(NOUN)}_{r.randint(1, 99)} #{r.choice(NOUN)} #{r.choice(ADJ)}"])
        if r.random() < 0.5:
            s = f"{r.choice(ADJ)} {r.choice(NOUN)} {s}"
    else:  # long description, sometimes past 77 tokens
        n = r.randint(8, 60)
        words = []
        for _ in range(n):
            words.append(r.choice(ADJ + NOUN + VERB + ["and", "with", "of", "in", "a", "the"]))
        s = " ".join(words)
        s = s[0].upper() + s[1:] + r.choice([".", "!", "...", "", " :)"])
    extras = r.random()
    if extras < 0.10:
        s += " " + r.choice(UNICODE)
    elif extras < 0.13:
        s = r.choice(UNICODE) + " " + s
    elif extras < 0.15:
        s = s.replace(" ", " " + r.choice(ENTITY) + " ", 1)
    elif extras < 0.16:
        s += " " + r.choice(MOJIBAKE)
    elif extras < 0.17:
        s = s.upper()
    elif extras < 0.18:
        s = "  " + s + "\n"
    if r.random() < 0.05:
        s += r.choice(["!!!", "???", " ;-)", " (2019)", " [HD]", " #1", " - 50% OFF"])
    return s


def make_captions(n, seed):
    r = random.Random(seed)
    return [caption(r) for _ in range(n)]


# --- tokenizers -------------------------------------------------------------------------
def ids77(encoded):
    e = [49406] + encoded + [49407]
    if len(e) > 77:
        e = e[:77]
        e[76] = 49407
    return e + [49407] * (77 - len(e))


def hf_files(tmp):
    """vocab.json / merges.txt of openai/clip-vit-large-patch14, built from the gz."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    syms = [chr(c) for c in cs]
    merges = gzip.open(VOCAB).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    vocab = syms + [s + "</w>" for s in syms] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(tmp, "vocab.json"), "w") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(tmp, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")


def run_sdw(sdw, jsonl, mode, threads=None, mask=False, parse=True):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sdw, "tokenize", "--tokenizer", mode, "--jsonl"] + (["--mask"] if mask else [])
    best = None
    out = None
    for _ in range(3):
        with open(jsonl, "rb") as fin:
            t0 = time.perf_counter()
            res = subprocess.run(cmd, stdin=fin, capture_output=True, env=env)
            dt = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(f"sdw tokenize failed: {res.stderr.decode()}")
        best = dt if best is None else min(best, dt)
        out = res.stdout
    rows = []
    if not parse:
        return best, rows
    for line in out.decode().splitlines():
        if mask:
            a, b = line.split("\t")
            rows.append((list(map(int, a.split())), list(map(int, b.split()))))
        else:
            rows.append(list(map(int, line.split())))
    return best, rows


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def bench(label, texts, sdw, tmp, results):
    import torch  # noqa: F401  (open_clip imports it anyway; keep the import cost out of timings)
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer, CLIPTokenizerFast

    n = len(texts)
    jsonl = os.path.join(tmp, f"{label}.jsonl")
    with open(jsonl, "w") as f:
        for t in texts:
            f.write(json.dumps(t) + "\n")

    print(f"\n== {label}: {n} captions ==")
    rows = []

    def row(name, seconds, note=""):
        rows.append((name, seconds))
        print(f"  {name:<44} {seconds:8.3f} s {n / seconds:12.0f} captions/s  {note}")

    t_clip, sdw_clip = run_sdw(sdw, jsonl, "clip")
    row("sdw tokenize --tokenizer clip (all threads)", t_clip, f"OMP threads {os.cpu_count()}")
    t_clip1, _ = run_sdw(sdw, jsonl, "clip", threads=1, parse=False)
    row("sdw tokenize --tokenizer clip (1 thread)", t_clip1)
    t_hf, sdw_hf = run_sdw(sdw, jsonl, "hf", mask=True)
    row("sdw tokenize --tokenizer hf --mask", t_hf)
    t_hf1, _ = run_sdw(sdw, jsonl, "hf", threads=1, parse=False)
    row("sdw tokenize --tokenizer hf (1 thread)", t_hf1)

    oc = SimpleTokenizer(VOCAB)
    t_oc, _ = timed(lambda: oc(texts))
    row("open_clip SimpleTokenizer(texts)", t_oc, "openai/CLIP code, 1 thread")
    oc2 = SimpleTokenizer(VOCAB)
    t_oce, oc_ids = timed(lambda: [ids77(oc2.encode(t)) for t in texts])
    row("open_clip SimpleTokenizer.encode per caption", t_oce)

    vocab_json, merges_txt = hf_files(tmp)
    fast = CLIPTokenizerFast(vocab_json, merges_txt, model_max_length=77)
    kw = dict(padding="max_length", max_length=77, truncation=True)
    t_fast, fast_enc = timed(lambda: fast(texts, **kw))
    row("HF tokenizers (CLIPTokenizerFast, batch)", t_fast,
        f"Rust, RAYON threads {os.environ.get('RAYON_NUM_THREADS', 'default')}")
    raw = fast.backend_tokenizer
    t_raw, _ = timed(lambda: raw.encode_batch(texts))
    row("HF tokenizers Tokenizer.encode_batch", t_raw, "no padding/truncation")
    slow = CLIPTokenizer(vocab_json, merges_txt, model_max_length=77)
    t_slow, slow_enc = timed(lambda: slow(texts, **kw))
    row("HF CLIPTokenizer (Python, the seed's)", t_slow)

    # Start-up (process, vocabulary) cancels in the difference between the
    # captions given R times and once (R brings small sets to 200k lines).
    reps = max(4, -(-200000 // n))
    jsonl_r = os.path.join(tmp, f"{label}.rep.jsonl")
    with open(jsonl_r, "w") as f:
        f.write(open(jsonl).read() * reps)
    t_r, _ = run_sdw(sdw, jsonl_r, "clip", parse=False)
    t1, _ = run_sdw(sdw, jsonl, "clip", parse=False)
    net = max(t_r - t1, 1e-9) / (reps - 1)
    print(f"  sdw clip without start-up ((t({reps}x) - t(1x)) / {reps - 1}): {net:.4f} s, "
          f"{n / net:.0f} captions/s; start-up about {max(t1 - net, 0):.3f} s")
    print("  ratios (sdw all threads / 1 thread, start-up included):")
    for name, sec in rows[4:]:
        print(f"    vs {name:<42} {sec / t_clip:7.1f}x / {sec / t_clip1:6.1f}x faster")

    # reference checks
    bad_oc = [i for i in range(n) if sdw_clip[i] != oc_ids[i]]
    bad_hf = [i for i in range(n) if sdw_hf[i][0] != slow_enc["input_ids"][i]
              or sdw_hf[i][1] != slow_enc["attention_mask"][i]]
    agree_fast = sum(sdw_hf[i][0] == fast_enc["input_ids"][i] for i in range(n))
    print(f"  sdw clip == open_clip:                 {n - len(bad_oc)}/{n}")
    for i in bad_oc[:5]:
        print(f"    line {i + 1}: {json.dumps(texts[i])[:100]}")
    print(f"  sdw hf == transformers CLIPTokenizer:  {n - len(bad_hf)}/{n} (ids and mask)")
    for i in bad_hf[:5]:
        print(f"    line {i + 1}: {json.dumps(texts[i])[:100]}")
    print(f"  HF fast (Rust, no ftfy) == slow:        {agree_fast}/{n} (for information)")
    results[label] = dict(n=n, bad_open_clip=[i + 1 for i in bad_oc],
                          bad_hf=[i + 1 for i in bad_hf])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sdw", default=os.path.join(ROOT, "build", "sdw"))
    ap.add_argument("--no-env", action="store_true", help="use the running Python as it is")
    args = ap.parse_args()
    if not args.no_env:
        ensure_env()
    if not os.access(args.sdw, os.X_OK):
        sys.exit(f"bench_tokenizer: {args.sdw} is missing; run make first")
    import ftfy
    import regex
    import tokenizers
    import transformers
    from importlib.metadata import version
    print(f"python {sys.version.split()[0]}, ftfy {ftfy.__version__}, regex {version('regex')}, "
          f"open_clip_torch {version('open_clip_torch')}, tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}, CPU cores {os.cpu_count()}")
    del regex
    captions = make_captions(args.count, args.seed)
    cases = [json.loads(line.split("\t")[0]) for line in open(CASES)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        bench("laion-like", captions, args.sdw, tmp, results)
        bench("tokenizer_cases.tsv", cases, args.sdw, tmp, results)
    ok = (not results["laion-like"]["bad_open_clip"] and not results["laion-like"]["bad_hf"]
          and results["tokenizer_cases.tsv"]["bad_open_clip"] == [124]
          and not results["tokenizer_cases.tsv"]["bad_hf"])
    print("\n(case 124 types <|endoftext|>, which open_clip spells <end_of_text>: expected)")
    print("reference checks:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
