#!/usr/bin/env python3
"""Parquet filter benchmark: sdw's reader versus pandas + pyarrow on the same
LAION-like file, same machine, same run (issue 6, item 11).

    bench/parquet.sh [--rows N] [--rounds R]

The file (build/bench/laion_<N>.parquet, made once): N rows (default 1M) of
URL and TEXT strings, WIDTH/HEIGHT int64 (1% null), similarity float64,
hash int64, punsafe/pwatermark/aesthetic float32, written by pyarrow with
its defaults (snappy, dictionary encoding with PLAIN fallback, data page
v1, one row group per 1Mi rows).

The filter: similarity >= 0.28 and WIDTH >= 512 and HEIGHT >= 512 (a null
fails), counting kept rows; both sides must agree on the count. Two modes:
  filter-cols  read only those three columns
               (pd.read_parquet(path, columns=[...]) + boolean mask);
  all-cols     read every column, as the seed's 02_filter_metadata.py does
               (pd.read_parquet(path) + boolean mask).
sdw runs through `build/sdw-bench parquet_filter` (bench/bench_parquet.c,
OpenMP over column chunks); pandas/pyarrow use their default thread pool.
Each side reports its best of several timed runs after a warm-up (the file
is in the page cache for both). pyarrow alone (pq.read_table + compute)
is shown for reference.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-test")


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    ok = os.path.exists(py) and subprocess.call(
        [py, "-c", "import pyarrow, pandas"], stderr=subprocess.DEVNULL) == 0
    if not ok:
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "pyarrow",
                               "pandas"])
    # a venv's python is a symlink to the system one: compare prefixes
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(py, [py] + sys.argv)


def make_file(path, rows):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(2024)
    words = np.array("a photo of the cat dog sunset over mountains beautiful portrait oil painting "
                     "woman man in on with red blue green vintage poster illustration city night "
                     "stock image background art print".split())
    nw = rng.integers(3, 30, rows)
    picks = words[rng.integers(0, len(words), int(nw.sum()))]
    ends = np.cumsum(nw)
    texts = [" ".join(picks[e - n:e]) for e, n in zip(ends.tolist(), nw.tolist())]
    ids = rng.integers(0, 10**9, rows)
    hosts = rng.integers(0, 5000, rows)
    urls = ["https://cdn%d.example%d.com/images/%d/%d.jpg" % (h % 7, h, i, k)
            for k, (h, i) in enumerate(zip(hosts.tolist(), ids.tolist()))]

    def sizes():
        v = rng.choice([256, 300, 400, 500, 512, 600, 640, 768, 800, 1024, 1200, 1600, 2048],
                       rows).astype(np.int64)
        return pa.array(v, mask=rng.random(rows) < 0.01)

    table = pa.table({
        "URL": pa.array(urls, pa.string()),
        "TEXT": pa.array(texts, pa.string()),
        "WIDTH": sizes(),
        "HEIGHT": sizes(),
        "similarity": pa.array(rng.random(rows) * 0.45 + 0.05),
        "hash": pa.array(rng.integers(-2**63, 2**63 - 1, rows, dtype=np.int64)),
        "punsafe": pa.array(rng.random(rows).astype(np.float32)),
        "pwatermark": pa.array(rng.random(rows).astype(np.float32)),
        "aesthetic": pa.array((4 + 4 * rng.random(rows)).astype(np.float32)),
    })
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def best_of(fn, rounds):
    fn()  # warm-up
    best, result = 1e30, None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ensure_venv()
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = os.path.join(ROOT, "build", "bench", "laion_%d.parquet" % args.rows)
    if not os.path.exists(path):
        t0 = time.time()
        make_file(path, args.rows)
        print("generated %s in %.1f s" % (path, time.time() - t0))
    md = pq.ParquetFile(path).metadata
    print("file: %s, %d rows, %d row groups, %.1f MB, written by %s" % (
        os.path.relpath(path, ROOT), md.num_rows, md.num_row_groups,
        os.path.getsize(path) / 1e6, md.created_by))

    cols = ["similarity", "WIDTH", "HEIGHT"]

    def pandas_filter(all_cols):
        df = pd.read_parquet(path, columns=None if all_cols else cols)
        return int(((df["similarity"] >= 0.28) & (df["WIDTH"] >= 512) &
                    (df["HEIGHT"] >= 512)).sum())

    def arrow_filter(all_cols):
        t = pq.read_table(path, columns=None if all_cols else cols)
        m = pc.and_(pc.and_(pc.greater_equal(t["similarity"], 0.28),
                            pc.greater_equal(t["WIDTH"], 512)),
                    pc.greater_equal(t["HEIGHT"], 512))
        return int(pc.sum(pc.fill_null(m, False)).as_py() or 0)

    subprocess.check_call(["make", "--no-print-directory", "-C", ROOT, "build/sdw-bench"],
                          stdout=subprocess.DEVNULL)
    env = dict(os.environ, SDW_BENCH_PARQUET=path)
    out = subprocess.run([os.path.join(ROOT, "build", "sdw-bench"), "parquet_filter"],
                         env=env, check=True, capture_output=True, text=True).stdout
    sdw = {}
    for m in re.finditer(r"parquet rows/s: sdw (\S+) (\S+) kept (\d+) seconds (\S+)", out):
        sdw[m.group(1)] = (float(m.group(2)), int(m.group(3)), float(m.group(4)))
    if len(sdw) != 2:
        print(out)
        raise SystemExit("bench_parquet: no result from build/sdw-bench")

    print("%-12s %14s %14s %14s %8s" % ("mode", "sdw rows/s", "pandas rows/s", "pyarrow rows/s",
                                        "sdw/pandas"))
    for mode in ("filter-cols", "all-cols"):
        all_cols = mode == "all-cols"
        tp, kept_p = best_of(lambda: pandas_filter(all_cols), args.rounds)
        ta, kept_a = best_of(lambda: arrow_filter(all_cols), args.rounds)
        rate, kept_s, _ = sdw[mode]
        if not (kept_s == kept_p == kept_a):
            raise SystemExit("kept rows differ: sdw %d, pandas %d, pyarrow %d" % (
                kept_s, kept_p, kept_a))
        rp, ra = md.num_rows / tp, md.num_rows / ta
        print("%-12s %14.3e %14.3e %14.3e %7.2fx   (kept %d)" % (mode, rate, rp, ra, rate / rp,
                                                               kept_s))
    print("pyarrow %s, pandas %s, %d CPU threads" % (pa.__version__, pd.__version__,
                                                     pa.cpu_count()))


if __name__ == "__main__":
    main()
