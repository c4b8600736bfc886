#!/usr/bin/env python3
"""Writes small WebDataset shards of textured JPEGs for the encode tests
(tests/cli/encode.sh), with numpy + PIL (.venv-test) and tarfile.

    gen_encode_shards.py --out DIR --count N [--per-shard K] [--seed S]

DIR/shards/NNNNN.tar holds <key>.jpg (a smooth random texture of one of a few
sizes: wider, taller, smaller and larger than the test's crop size, so both
the area shrink and the cubic enlargement run) and <key>.txt (a caption).
Deterministic (fixed mtimes, seeded RNG)."""
import argparse
import io
import os
import tarfile

import numpy as np
from PIL import Image

SIZES = [(96, 72), (50, 70), (64, 64), (130, 90), (40, 40), (81, 123)]
WORDS = ["red", "blue", "cat", "dog", "tree", "house", "sunset", "river", "mountain", "car",
         "portrait", "city", "flower", "ocean", "forest", "bird"]


def image(rng, w, h):
    # smooth texture: low-resolution noise upsampled, plus a gradient
    small = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
    a = np.asarray(img).astype(np.int32)
    a = (a + np.linspace(0, 40, w)[None, :, None]).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def add(tar, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1700000000
    ti.mode = 0o444
    tar.addfile(ti, io.BytesIO(data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(os.path.join(a.out, "shards"), exist_ok=True)
    n = 0
    shard = 0
    while n < a.count:
        with tarfile.open(os.path.join(a.out, "shards", "%05d.tar" % shard), "w",
                          format=tarfile.PAX_FORMAT) as tar:
            for i in range(min(a.per_shard, a.count - n)):
                key = "%05d%04d" % (shard, i)
                w, h = SIZES[n % len(SIZES)]
                add(tar, key + ".jpg", image(rng, w, h))
                cap = "a photo of a %s %s and a %s, number %d" % tuple(
                    [WORDS[int(x)] for x in rng.integers(0, len(WORDS), 3)] + [n])
                add(tar, key + ".txt", cap.encode())
                n += 1
        shard += 1


if __name__ == "__main__":
    main()
