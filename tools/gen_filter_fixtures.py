#!/usr/bin/env python3
"""Generates inputs for `sdw pipeline filter` and what the seed's rules keep.

    .venv-test/bin/python tools/gen_filter_fixtures.py --out DIR [--rows N]

Writes into DIR/in/ four parquet files with pyarrow, in the column namings
the seed normalises (SEED.md §3.2):
  a.parquet      LAION style: URL, TEXT, WIDTH, HEIGHT (int64), similarity,
                 punsafe, pwatermark (double), AESTHETIC_SCORE (float32),
                 several row groups, nulls sprinkled, dictionary pages;
  b.parquet      url, caption, width, height (int32), clip_sim (float32),
                 aesthetic (double), watermark, nsfw (strings UNLIKELY /
                 unlikely / LIKELY / VERY_LIKELY / null), zstd, pages v2;
  sub/c.parquet  URL, TEXT, similarity, aesthetic_score, is_nsfw (bool);
                 no width/height/watermark (those filters do not apply);
  d.parquet      no aesthetic column (the seed's KeyError: file skipped).
Values straddle every threshold (exact 6.5, 0.28, 512, aspect 0.5/2.0,
caption 20/300 characters with non-ASCII text, watermark 0.5, punsafe 0.2)
and URLs repeat within and across files.

DIR/expected.json holds, computed here with pandas (an implementation of the
rules independent of sdw's): for the default options and for
--max-samples 37 (the file order shuffled with np.random.seed(42)), the
per-filter rejection counts (first filter that rejects a row), the rows in,
kept and skipped, and the kept URLs in order.
"""
import argparse
import json
import os
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = ["sunset", "forest", "mountain", "über", "café", "naïve", "日本", "city", "a", "painting",
         "of", "the", "lake", "at", "night", "🙂", "portrait", "oil"]


def caption(rng):
    r = rng.random()
    if r < 0.03:
        return None
    if r < 0.2:  # around the 20-character limit, in code points
        n = rng.choice([18, 19, 20, 21])
        return "".join(rng.choice("aé日🙂b ") for _ in range(n))
    if r < 0.3:  # around 300
        n = rng.choice([299, 300, 301])
        return "".join(rng.choice("xü日 ") for _ in range(n))
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14)))


def around(rng, edge, spread, good=1):
    """edge exactly, a value on the passing side (good: +1 above, -1 below), or either side."""
    r = rng.random()
    if r < 0.08:
        return edge
    if r < 0.8:
        return edge + good * rng.uniform(0.001, spread)
    return edge + rng.uniform(-spread, spread)


def maybe_null(rng, v, p=0.03):
    return None if rng.random() < p else v


def dims(rng):
    if rng.random() < 0.6:
        return rng.choice([512, 768, 1024]), rng.choice([512, 640, 1024])
    w = rng.choice([400, 511, 512, 513, 600, 1024, 1025, 2048, 300])
    h = rng.choice([256, 511, 512, 700, 1024, 2048, 2049, 1000])
    return w, h


def url(rng, pool):
    if pool and rng.random() < 0.15:
        return rng.choice(pool)  # a repeat, maybe from another file
    u = "http://img.example/%d.jpg" % rng.randrange(10**9)
    pool.append(u)
    return u


def make(out, rows):
    rng = random.Random(1234)
    pool = []
    os.makedirs(os.path.join(out, "in", "sub"), exist_ok=True)
    # a.parquet
    cols = {k: [] for k in ["URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "punsafe", "pwatermark",
                            "AESTHETIC_SCORE"]}
    for _ in range(rows):
        w, h = dims(rng)
        cols["URL"].append(maybe_null(rng, url(rng, pool)))
        cols["TEXT"].append(caption(rng))
        cols["WIDTH"].append(maybe_null(rng, w))
        cols["HEIGHT"].append(h)
        cols["similarity"].append(maybe_null(rng, around(rng, 0.28, 0.05)))
        cols["punsafe"].append(maybe_null(rng, around(rng, 0.2, 0.2, -1)))
        cols["pwatermark"].append(maybe_null(rng, around(rng, 0.5, 0.3, -1)))
        cols["AESTHETIC_SCORE"].append(maybe_null(rng, around(rng, 6.5, 0.6)))
    t = pa.table({
        "URL": pa.array(cols["URL"], pa.string()), "TEXT": pa.array(cols["TEXT"], pa.string()),
        "WIDTH": pa.array(cols["WIDTH"], pa.int64()), "HEIGHT": pa.array(cols["HEIGHT"], pa.int64()),
        "similarity": pa.array(cols["similarity"], pa.float64()),
        "punsafe": pa.array(cols["punsafe"], pa.float64()),
        "pwatermark": pa.array(cols["pwatermark"], pa.float64()),
        "AESTHETIC_SCORE": pa.array(cols["AESTHETIC_SCORE"], pa.float32())})
    pq.write_table(t, os.path.join(out, "in", "a.parquet"), row_group_size=max(1, rows // 3))
    # b.parquet
    cols = {k: [] for k in ["url", "caption", "width", "height", "clip_sim", "aesthetic", "watermark",
                            "nsfw"]}
    for _ in range(rows):
        w, h = dims(rng)
        cols["url"].append(url(rng, pool))
        cols["caption"].append(caption(rng))
        cols["width"].append(w)
        cols["height"].append(maybe_null(rng, h))
        cols["clip_sim"].append(around(rng, 0.28, 0.05))
        cols["aesthetic"].append(around(rng, 6.5, 0.6))
        cols["watermark"].append(around(rng, 0.5, 0.3, -1))
        cols["nsfw"].append(rng.choice(["UNLIKELY", "unlikely", "UNLIKELY", "unlikely", "UNLIKELY", "LIKELY", "VERY_LIKELY",
                                        "Unlikely", None]))
    t = pa.table({
        "url": pa.array(cols["url"], pa.string()), "caption": pa.array(cols["caption"], pa.string()),
        "width": pa.array(cols["width"], pa.int32()), "height": pa.array(cols["height"], pa.int32()),
        "clip_sim": pa.array(cols["clip_sim"], pa.float32()),
        "aesthetic": pa.array(cols["aesthetic"], pa.float64()),
        "watermark": pa.array(cols["watermark"], pa.float64()),
        "nsfw": pa.array(cols["nsfw"], pa.string())})
    pq.write_table(t, os.path.join(out, "in", "b.parquet"), compression="zstd",
                   data_page_version="2.0")
    # sub/c.parquet
    n = rows // 2
    t = pa.table({
        "URL": pa.array([url(rng, pool) for _ in range(n)], pa.string()),
        "TEXT": pa.array([caption(rng) for _ in range(n)], pa.string()),
        "similarity": pa.array([around(rng, 0.28, 0.05) for _ in range(n)], pa.float64()),
        "aesthetic_score": pa.array([around(rng, 6.5, 0.6) for _ in range(n)], pa.float64()),
        "is_nsfw": pa.array([rng.random() < 0.2 for _ in range(n)], pa.bool_())})
    pq.write_table(t, os.path.join(out, "in", "sub", "c.parquet"), compression="gzip")
    # d.parquet: no aesthetic column
    n = 10
    t = pa.table({"URL": ["http://img.example/d%d.jpg" % i for i in range(n)],
                  "TEXT": ["a caption long enough to pass %d" % i for i in range(n)],
                  "similarity": [0.5] * n})
    pq.write_table(t, os.path.join(out, "in", "d.parquet"))


ALIASES = [("URL", ["url"]), ("TEXT", ["text", "caption"]), ("WIDTH", ["width"]),
           ("HEIGHT", ["height"]), ("similarity", ["similarity", "clip_sim"]),
           ("aesthetic_score", ["aesthetic_score", "aesthetic"]),
           ("pwatermark", ["pwatermark", "watermark", "watermark_score"]),
           ("NSFW", ["nsfw", "punsafe", "is_nsfw"])]


def normalise(df):
    lower = {c.lower(): c for c in reversed(list(df.columns))}
    ren = {}
    for canon, names in ALIASES:
        for n in names:
            if n in lower:
                ren[lower[n]] = canon
                break
    return df.rename(columns=ren)


DEFAULTS = dict(min_aesthetic=6.5, min_similarity=0.28, min_width=512, min_height=512,
                min_aspect=0.5, max_aspect=2.0, min_caption=20, max_caption=300, max_watermark=0.5,
                max_punsafe=0.2, allow_nsfw=False, dedup=True)
# --min-aesthetic 6.2 --min-similarity 0.26 --min-width 500 --min-height 600 --min-aspect 0.8
# --max-aspect 1.5 --min-caption 10 --max-caption 200 --max-watermark 0.6 --max-punsafe 0.3
LOOSE = dict(min_aesthetic=6.2, min_similarity=0.26, min_width=500, min_height=600, min_aspect=0.8,
             max_aspect=1.5, min_caption=10, max_caption=200, max_watermark=0.6, max_punsafe=0.3,
             allow_nsfw=False, dedup=True)
FREE = dict(DEFAULTS, allow_nsfw=True, dedup=False)  # --allow-nsfw --no-dedup


def expected(files, max_samples=None, seed=42, o=DEFAULTS):
    files = sorted(files)
    if max_samples is not None:
        np.random.seed(seed)
        np.random.shuffle(files)
    reasons = {}
    seen = set()
    kept = []
    texts = []
    rows_in = skipped = 0
    for f in files:
        df = normalise(pd.read_parquet(f))
        if any(c not in df.columns for c in ["URL", "TEXT", "aesthetic_score", "similarity"]):
            rows_in += len(df)
            reasons["missing_column"] = reasons.get("missing_column", 0) + len(df)
            continue
        reason = pd.Series(None, index=df.index, dtype=object)
        steps = [("null", df.URL.notna() & df.TEXT.notna()),
                 ("aesthetic", df.aesthetic_score >= o["min_aesthetic"]),
                 ("similarity", df.similarity >= o["min_similarity"])]
        if "WIDTH" in df.columns and "HEIGHT" in df.columns:
            steps.append(("size", (df.WIDTH >= o["min_width"]) & (df.HEIGHT >= o["min_height"])))
            asp = df.WIDTH / df.HEIGHT
            steps.append(("aspect", (asp >= o["min_aspect"]) & (asp <= o["max_aspect"])))
        ln = df.TEXT.str.len()
        steps.append(("caption", (ln >= o["min_caption"]) & (ln <= o["max_caption"])))
        if "pwatermark" in df.columns:
            steps.append(("watermark", df.pwatermark < o["max_watermark"]))
        if "NSFW" in df.columns and not o["allow_nsfw"]:
            if df.NSFW.dtype == object:
                steps.append(("nsfw", df.NSFW.isin(["UNLIKELY", "unlikely"])))
            else:
                steps.append(("nsfw", df.NSFW < o["max_punsafe"]))
        for name, mask in steps:
            rej = reason.isna() & ~mask.fillna(False).astype(bool)
            reason[rej] = name
        for k, i in enumerate(df.index):
            if max_samples is not None and len(kept) >= max_samples:
                rows_in += len(df) - k
                skipped += len(df) - k
                break
            rows_in += 1
            r = reason[i]
            if pd.isna(r):
                u = df.URL[i]
                if o["dedup"] and u in seen:
                    r = "duplicate"
                else:
                    seen.add(u)
                    kept.append(u)
                    texts.append(df.TEXT[i])
                    continue
            reasons[r] = reasons.get(r, 0) + 1
    return {"files": files, "reasons": reasons, "kept": kept, "text": texts, "in": rows_in, "skipped": skipped}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=300)
    a = ap.parse_args()
    make(a.out, a.rows)
    ind = os.path.join(a.out, "in")
    files = []
    for root, _, names in os.walk(ind):
        files += [os.path.join(root, n) for n in names if n.endswith(".parquet")]
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    res = {"total": total, "default": expected(files), "max37": expected(files, 37),
           "max37seed7": expected(files, 37, 7), "loose": expected(files, o=LOOSE),
           "free": expected(files, o=FREE)}
    for k in ["default", "max37", "max37seed7", "loose", "free"]:
        res[k]["files"] = [os.path.relpath(f, ind) for f in res[k]["files"]]
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
