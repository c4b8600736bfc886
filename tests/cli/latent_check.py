#!/usr/bin/env python3
"""Checks of latent stores written by `sdw pipeline encode`, for
tests/cli/encode.sh and tests/cli/pipeline_chain.sh (.venv-test: numpy, cv2).
Every file is read with our own safetensors parser below (8-byte header
length, JSON header, raw little-endian data), never with sdw.

  latent_check.py pixels STORE SHARDS SIZE
      STORE was encoded with --vae pixels: every sample's [3, S, S] must be the
      reference preprocessing of its image, computed here from the shard with
      OpenCV as the seed's encode_latents.py does (cv2.imdecode, BGR->RGB,
      shorter side -> S with round(), INTER_AREA to shrink / INTER_CUBIC to
      enlarge, center crop at (side - S) // 2, x / 127.5 - 1).
  latent_check.py image STORE INDEX OUT
      sample INDEX of a pixel store as OUT.safetensors {"image": F32 [1,3,S,S]},
      the exact f32 values encode fed its VAE
  latent_check.py compare STORE INDEX VAE_OUT SCALE TOL
      latent INDEX of STORE (f16) against VAE_OUT's "mean" x SCALE (sdw run
      vae-encode's output): normwise max|a-b| / max|b| <= TOL
  latent_check.py keys STORE DATASET_PARQUET
      the store's keys, captions, input_ids and masks are the dataset's rows,
      in order (pyarrow reads the dataset)
  latent_check.py sums DIR...
      sha256 of every chunk and index.json of each store, one line each
"""
import glob
import hashlib
import io
import json
import os
import struct
import sys
import tarfile

import numpy as np

DT = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, e in head.items():
        if k == "__metadata__":
            continue
        b, t = e["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + b:8 + n + t], dtype=DT[e["dtype"]]).reshape(e["shape"])
    return out, head.get("__metadata__", {})


def store(dirpath):
    idx = json.load(open(os.path.join(dirpath, "index.json")))
    samples = []
    for c in idx["chunks"]:
        t, meta = load(os.path.join(dirpath, c["file"]))
        assert meta.get("format") == "sdw-latent-chunk/1", meta
        ko, kb = t["keys.offsets"], t["keys.bytes"].tobytes()
        co, cb = t["captions.offsets"], t["captions.bytes"].tobytes()
        for i in range(t["latents"].shape[0]):
            samples.append({"latent": t["latents"][i], "ids": t["input_ids"][i],
                            "mask": t["attention_mask"][i],
                            "key": kb[ko[i]:ko[i + 1]].decode(),
                            "caption": cb[co[i]:co[i + 1]].decode()})
    assert len(samples) == idx["count"], (len(samples), idx["count"])
    return idx, samples


def ref_pixels(data, size):
    import cv2
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    y, x = (nh - size) // 2, (nw - size) // 2
    return img[y:y + size, x:x + size]


def cmd_pixels(st, shards, size):
    size = int(size)
    idx, samples = store(st)
    assert idx["latent_shape"] == [3, size, size] and idx["scaling_factor"] == 1.0, idx
    members = {}
    worst, total = 0, 0.0
    for s in samples:
        shard, base = s["key"].split("::")
        if shard not in members:
            with tarfile.open(os.path.join(shards, shard)) as t:
                members[shard] = {m.name: t.extractfile(m).read() for m in t.getmembers()}
        ref = ref_pixels(members[shard][base + ".jpg"], size).astype(np.int32)
        # values k/127.5 - 1 are exact to well under half a level in f16, so
        # the 8-bit value comes back exactly
        got = np.rint((s["latent"].astype(np.float64) + 1) * 127.5).astype(np.int32)
        got = got.transpose(1, 2, 0)
        d = np.abs(got - ref)
        worst = max(worst, int(d.max()))
        total += float(d.mean())
    mean = total / len(samples)
    print("pixels: %d samples, max |sdw - cv2| %d levels, mean %.4f" % (len(samples), worst, mean))
    # sdw's resize reimplements cv2's fixed-point INTER_AREA/INTER_CUBIC
    # (tests/test_image_resize.c): at most 1 level of rounding difference,
    # and rarely (mean well under 0.05 levels)
    return worst <= 1 and mean <= 0.05


def cmd_image(st, index, out):
    _, samples = store(st)
    # the exact f32 input encode computed (p / 127.5f - 1 of the 8-bit value),
    # not the f16-rounded copy the pixel store holds
    v = np.rint((samples[int(index)]["latent"].astype(np.float64) + 1) * 127.5)
    x = (v.astype(np.float32) / np.float32(127.5) - np.float32(1))[None]
    head = {"image": {"dtype": "F32", "shape": list(x.shape), "data_offsets": [0, x.nbytes]}}
    h = json.dumps(head).encode()
    h += b" " * (-(8 + len(h)) % 8)
    open(out, "wb").write(struct.pack("<Q", len(h)) + h + x.tobytes())
    return True


def cmd_compare(st, index, vae_out, scale, tol):
    _, samples = store(st)
    a = samples[int(index)]["latent"].astype(np.float64)
    t, _ = load(vae_out)
    b = t["mean"][0].astype(np.float32) * np.float32(scale)
    b = b.astype(np.float64)
    err = np.abs(a - b).max() / np.abs(b).max()
    print("latent %s vs vae-encode mean x %s: %.3g" % (index, scale, err))
    return err <= float(tol)


def cmd_keys(st, parquet):
    import pyarrow.parquet as pq
    _, samples = store(st)
    t = pq.read_table(parquet).to_pydict()
    assert len(samples) == len(t["image_key"]), (len(samples), len(t["image_key"]))
    for i, s in enumerate(samples):
        assert s["key"] == t["image_key"][i], (i, s["key"], t["image_key"][i])
        assert s["caption"] == t["caption"][i], i
        assert s["ids"].tobytes() == t["input_ids"][i], i
        assert s["mask"].tobytes() == t["attention_mask"][i], i
    print("keys: %d samples match %s" % (len(samples), parquet))
    return True


def cmd_sums(*dirs):
    for d in dirs:
        for f in sorted(glob.glob(os.path.join(d, "chunk-*.safetensors")) +
                        [os.path.join(d, "index.json")]):
            print(hashlib.sha256(open(f, "rb").read()).hexdigest(), os.path.relpath(f, d), d)
    return True


if __name__ == "__main__":
    cmd = {"pixels": cmd_pixels, "image": cmd_image, "compare": cmd_compare, "keys": cmd_keys,
           "sums": cmd_sums}[sys.argv[1]]
    sys.exit(0 if cmd(*sys.argv[2:]) else 1)
