#!/usr/bin/env python3
"""Writes small WebDataset shards with known content for the preprocess/build
tests (tests/cli/preprocess_build.sh), with the standard library only:
tarfile for the shards and a zlib+struct PNG writer for the images (named
<key>.jpg: decoders sniff the bytes, as PIL does).

Each shard cycles through sample kinds, one per key, and expected.json says
what the seed's rules (SEED.md §3.4) make of each:
  ok          a textured 260x300 image and a caption in <key>.txt
  ok_json     caption only in <key>.json ("caption"), non-ASCII text
  ok_text     caption only in <key>.json ("TEXT")
  ok_padded   caption with surrounding ASCII and Unicode whitespace (stored
              stripped, as str.strip() does)
  ok_long     a 400-character caption (kept, tokens truncated to 77)
  decode      <key>.jpg holds bytes that are no image       -> decode_error
  small       a 200x300 image (a side < 256)                -> too_small
  flat        a uniform gray image                          -> low_variance
  dark        black with sparse white pixels (mean < 2)     -> too_dark
  bright      white with sparse black pixels (mean > 253)   -> too_bright
  empty       caption of spaces only                        -> empty_caption
  short       a 5-character caption                         -> short_caption
  huge        a 70,000-byte caption                         -> caption_too_long
  noimage     <key>.txt only                                -> no_image
  nocaption   <key>.jpg only                                -> no_caption

Usage: gen_test_shards.py --out DIR --shards N [--per-shard K]
Writes DIR/shards/NNNNN.tar and DIR/expected.json:
  {"reasons": {reason: count}, "kept": [[image_key, caption], ...] in
   (shard, key) order, "in": samples}
Everything is deterministic (fixed mtimes, no randomness)."""
import argparse
import io
import json
import os
import struct
import tarfile
import zlib

KINDS = ["ok", "decode", "ok_json", "small", "flat", "ok_padded", "dark", "empty", "bright",
         "ok_text", "short", "huge", "noimage", "nocaption", "ok_long"]
REASON = {"decode": "decode_error", "small": "too_small", "flat": "low_variance",
          "dark": "too_dark", "bright": "too_bright", "empty": "empty_caption",
          "short": "short_caption", "huge": "caption_too_long", "noimage": "no_image",
          "nocaption": "no_caption"}


def png(width, height, pixel):
    """RGB 8-bit PNG; pixel(x, y) -> (r, g, b)."""
    raw = bytearray()
    for y in range(height):
        raw.append(0)
        for x in range(width):
            raw.extend(pixel(x, y))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw), 6))
            + chunk(b"IEND", b""))


_TEX = {}


def textured(seed, w, h):
    # 16 distinct textures, cached: the pure-Python pixel loop is slow.
    seed %= 16
    if (seed, w, h) not in _TEX:
        _TEX[(seed, w, h)] = _textured(seed, w, h)
    return _TEX[(seed, w, h)]


def _textured(seed, w, h):
    return png(w, h, lambda x, y: ((x * 7 + y * 3 + seed) % 256, (x * y + seed * 5) % 256,
                                   (y * 11 + seed) % 256))


_SPARSE = {}


def sparse(base, dot):
    if (base, dot) not in _SPARSE:
        _SPARSE[(base, dot)] = _sparse(base, dot)
    return _SPARSE[(base, dot)]


def _sparse(base, dot):
    # One pixel in 256 (x % 16 == 0 and y % 16 == 0) differs: mean about 1 or
    # 254, std about 16 over the 512x512 image (no resize: it is already 512).
    return png(512, 512, lambda x, y: dot if (x % 16 == 0 and y % 16 == 0) else base)


def sample(kind, i):
    """Members {ext: bytes} and the expected stored caption (None: rejected)."""
    cap = "a photo of thing number %d on a table" % i
    img = textured(i, 260, 300)
    m = {}
    if kind == "ok":
        m = {"jpg": img, "txt": cap.encode()}
    elif kind == "ok_json":
        cap = "caf\u00e9 \u2615 & <b>bold</b> &amp; %d \U0001F600 \u00a0x" % i
        m = {"jpg": img, "json": json.dumps({"caption": cap, "url": "http://x/%d" % i}).encode()}
    elif kind == "ok_text":
        m = {"jpg": img, "json": json.dumps({"TEXT": cap}).encode()}
    elif kind == "ok_padded":
        m = {"jpg": img, "txt": ("  \t\u3000" + cap + " \xa0\n").encode()}
    elif kind == "ok_long":
        cap = ("word%d " % i) * 60
        cap = cap.strip()
        m = {"jpg": img, "txt": cap.encode()}
    elif kind == "decode":
        m = {"jpg": b"this is not an image at all" * 10, "txt": cap.encode()}
    elif kind == "small":
        m = {"jpg": textured(i, 200, 300), "txt": cap.encode()}
    elif kind == "flat":
        m = {"jpg": png(300, 300, lambda x, y: (128, 128, 128)), "txt": cap.encode()}
    elif kind == "dark":
        m = {"jpg": sparse((0, 0, 0), (255, 255, 255)), "txt": cap.encode()}
    elif kind == "bright":
        m = {"jpg": sparse((255, 255, 255), (0, 0, 0)), "txt": cap.encode()}
    elif kind == "empty":
        m = {"jpg": img, "txt": b"   \n "}
    elif kind == "short":
        m = {"jpg": img, "txt": b"short"}
    elif kind == "huge":
        m = {"jpg": img, "txt": ("x" * 70000).encode()}
    elif kind == "noimage":
        m = {"txt": cap.encode()}
    elif kind == "nocaption":
        m = {"jpg": img}
    return m, (cap if kind.startswith("ok") else None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--per-shard", type=int, default=len(KINDS))
    ap.add_argument("--first-kind", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.out, "shards"), exist_ok=True)
    reasons, kept, n = {}, [], 0
    for s in range(a.shards):
        name = "%05d.tar" % s
        path = os.path.join(a.out, "shards", name)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            for k in range(a.per_shard):
                kind = KINDS[(a.first_kind + s * a.per_shard + k) % len(KINDS)]
                i = s * 10000 + k
                key = "%05d%04d" % (s, k)
                members, cap = sample(kind, i)
                n += 1
                for ext in ("jpg", "txt", "json"):
                    if ext not in members:
                        continue
                    ti = tarfile.TarInfo("%s.%s" % (key, ext))
                    ti.size = len(members[ext])
                    ti.mtime = 1700000000
                    ti.mode = 0o444
                    tf.addfile(ti, io.BytesIO(members[ext]))
                if cap is None:
                    r = REASON[kind]
                    reasons[r] = reasons.get(r, 0) + 1
                else:
                    kept.append(["%s::%s" % (name, key), cap])
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump({"reasons": reasons, "kept": kept, "in": n}, f)


if __name__ == "__main__":
    main()
