#!/usr/bin/env python3
"""Writes a small synthetic latent store (the format of core/base/latent_store.h,
sdw-formats(5)) for trainer tests, with numpy alone (safetensors written by
hand: an independent writer, so sdw's reader is checked against it too).

Sample i has class k = i % 4: its latent is a fixed smooth pattern of that
class (plus a little noise) and its caption "class k" has the token 320 + k,
so a UNet can learn to denoise it and to tell the classes apart.

With --pixels the store is a pixel-space one (`sdw pipeline encode --vae
pixels`): 3 channels in [-1, 1], scaling factor 1, image_size = HW.

usage: make_latent_store.py DIR [--count N] [--size HW] [--chunk M] [--seed S] [--nan] [--pixels]
"""
import argparse
import hashlib
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    # larger elements first, as the reference writer (keeps alignment)
    order = sorted(tensors.items(), key=lambda kv: -kv[1].dtype.itemsize)
    names = {np.dtype("float16"): "F16", np.dtype("int32"): "I32",
             np.dtype("int64"): "I64", np.dtype("uint8"): "U8"}
    for name, arr in order:
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def strings(items):
    data = [s.encode() for s in items]
    off = np.zeros(len(data) + 1, dtype=np.int64)
    off[1:] = np.cumsum([len(d) for d in data])
    return np.frombuffer(b"".join(data), dtype=np.uint8).copy(), off


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--nan", action="store_true", help="every latent NaN (non-finite step tests)")
    ap.add_argument("--pixels", action="store_true", help="a pixel-space store (3 channels)")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    hw, L = a.size, 77
    C = 3 if a.pixels else 4
    y, x = np.meshgrid(np.arange(hw), np.arange(hw), indexing="ij")
    chunks = []
    for ci, start in enumerate(range(0, a.count, a.chunk)):
        n = min(a.chunk, a.count - start)
        lat = np.zeros((n, C, hw, hw), dtype=np.float32)
        ids = np.full((n, L), 49407, dtype=np.int32)
        mask = np.zeros((n, L), dtype=np.int32)
        keys, caps = [], []
        for j in range(n):
            i = start + j
            k = i % 4
            for c in range(C):
                lat[j, c] = 0.8 * np.sin(0.7 * (k + 1) * x + 0.5 * c) * np.cos(0.4 * (k + 1) * y - c)
            lat[j] += 0.05 * rng.standard_normal((C, hw, hw))
            if a.pixels:
                lat[j] = np.clip(lat[j], -1, 1)
            if a.nan:
                lat[j] = np.nan
            ids[j, 0], ids[j, 1] = 49406, 320 + k
            mask[j, :3] = 1
            keys.append(f"synthetic::{i:06d}")
            caps.append(f"class {k}")
        kb, ko = strings(keys)
        cb, co = strings(caps)
        name = f"chunk-{ci:05d}.safetensors"
        path = os.path.join(a.dir, name)
        write_safetensors(path, {"latents": lat.astype(np.float16), "input_ids": ids,
                                 "attention_mask": mask, "keys.bytes": kb, "keys.offsets": ko,
                                 "captions.bytes": cb, "captions.offsets": co},
                          {"format": "sdw-latent-chunk/1"})
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        chunks.append({"file": name, "count": n, "bytes": os.path.getsize(path), "sha256": digest})
    index = {"format": "sdw-latents/1", "split": "train", "count": a.count,
             "latent_shape": [C, hw, hw], "dtype": "F16",
             "scaling_factor": 1 if a.pixels else 0.18215,
             "seq_len": L, "context_dim": 0, "image_size": hw if a.pixels else 2 * hw,
             "vae": "pixels" if a.pixels else "synthetic",
             "chunks": chunks}
    with open(os.path.join(a.dir, "index.json.tmp"), "w") as f:
        json.dump(index, f, indent=1)
    os.replace(os.path.join(a.dir, "index.json.tmp"), os.path.join(a.dir, "index.json"))


if __name__ == "__main__":
    main()
