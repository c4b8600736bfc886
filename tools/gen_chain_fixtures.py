#!/usr/bin/env python3
"""Fixtures of the whole-chain test (tests/cli/pipeline_chain.sh): N small
JPEGs served by tools/http_test_server.py and LAION-style metadata pointing
at them (.venv-test: numpy, PIL, pyarrow).

    gen_chain_fixtures.py --www DIR --meta FILE --port PORT --count N [--seed S]

DIR/img-NNNNNN.jpg: smooth random textures, 64x64 or 96x72 (the download's
center crop then has work to do). FILE: a parquet of LAION's columns
(URL, TEXT, WIDTH, HEIGHT, similarity, AESTHETIC_SCORE, pwatermark, punsafe)
with one row per image plus rows the filter must drop (every 10th row low
aesthetic, every 13th a watermark, every 17th a duplicate URL) and a few
URLs the server answers with 404, so that every stage has failures to
count. Deterministic."""
import argparse
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

WORDS = ["red", "blue", "green", "cat", "dog", "tree", "house", "sunset", "river", "mountain",
         "car", "portrait", "city", "flower", "ocean", "forest", "bird", "bridge", "castle"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--www", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.www, exist_ok=True)
    rows = {k: [] for k in ("URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "AESTHETIC_SCORE",
                            "pwatermark", "punsafe")}

    def row(url, text, aes=7.0, wm=0.1):
        rows["URL"].append(url)
        rows["TEXT"].append(text)
        rows["WIDTH"].append(1024)
        rows["HEIGHT"].append(768)
        rows["similarity"].append(0.31)
        rows["AESTHETIC_SCORE"].append(aes)
        rows["pwatermark"].append(wm)
        rows["punsafe"].append(0.01)

    for i in range(a.count):
        w, h = (64, 64) if i % 3 else (96, 72)
        small = rng.integers(0, 256, size=(h // 8, w // 8, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR)).astype(np.int32)
        img = (img + np.linspace(0, 30, w)[None, :, None]).clip(0, 255).astype(np.uint8)
        name = "img-%06d.jpg" % i
        Image.fromarray(img).save(os.path.join(a.www, name), quality=90)
        url = "http://127.0.0.1:%s/img/%s" % (a.port, name)
        text = "a picture of a %s %s near the %s, image %d" % tuple(
            [WORDS[int(x)] for x in rng.integers(0, len(WORDS), 3)] + [i])
        row(url, text, aes=5.0 if i % 10 == 9 else 7.0, wm=0.9 if i % 13 == 12 else 0.1)
        if i % 17 == 16:
            row(url, text)  # duplicate URL
        if i % 50 == 25:
            row("http://127.0.0.1:%s/img/missing-%d.jpg" % (a.port, i), "a picture that is not there %d" % i)
    pq.write_table(pa.table(rows), a.meta)


if __name__ == "__main__":
    main()
