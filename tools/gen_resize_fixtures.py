#!/usr/bin/env python3
"""Writes the resize fixtures of tests/test_image_resize.c into
tests/data/resize/: small RGB inputs and what OpenCV (cv2.resize) and
img2dataset's own Resizer make of them.

    .venv-test/bin/python tools/gen_resize_fixtures.py [OUT_DIR]

(.venv-test: pip install opencv-python-headless numpy pillow img2dataset)

cases.json lists each case: {"input", "expected", "op", ...} where op is
"area" / "cubic" / "lanczos" (cv2.resize to "width" x "height" with
INTER_AREA / INTER_CUBIC / INTER_LANCZOS4) or "resizer" (img2dataset.Resizer
with "mode", "size", "only_if_bigger", "upscale", encoding PNG so the pixels
come back losslessly). Images are PNG, RGB, 8-bit. The versions of the tools
are recorded in the file.
"""
import io
import json
import os
import sys

import cv2
import numpy as np
from PIL import Image


def natural(w, h, seed):
    """Smooth shading, a few sinusoids, a hard edge, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = (110 + 60 * np.sin(x / (5 + 3 * c) + c) * np.cos(y / (7 + c))
                       + 50 * (x / w) - 30 * (y / h))
    img[(x - w / 3) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2] = [250, 30, 20]
    img[:, int(w * 0.75):] *= 0.4
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def noise(w, h, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def edges(w, h):
    y, x = np.mgrid[0:h, 0:w]
    img = np.where(((x // 4) + (y // 3)) % 2 == 0, 255, 0).astype(np.uint8)
    out = np.stack([img, 255 - img, (img // 2) + 64], axis=-1)
    return out.astype(np.uint8)


def png_bytes(rgb):
    b = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(b, format="PNG")
    return b.getvalue()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "resize")
    os.makedirs(out, exist_ok=True)
    from img2dataset.resizer import Resizer
    import img2dataset
    import albumentations

    inputs = {
        "noise_37x23": noise(37, 23, 1),
        "natural_97x61": natural(97, 61, 2),
        "natural_120x90": natural(120, 90, 3),
        "edges_64x48": edges(64, 48),
        "tall_20x70": natural(20, 70, 4),
        "tiny_1x1": noise(1, 1, 5),
        "tiny_2x3": noise(2, 3, 6),
        "natural_160x100": natural(160, 100, 7),
    }
    for name, img in inputs.items():
        with open(os.path.join(out, name + ".png"), "wb") as f:
            f.write(png_bytes(img))

    cases = []
    n = 0

    def add_cv(op, inp, w, h):
        nonlocal n
        flag = {"area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}[op]
        res = cv2.resize(inputs[inp], (w, h), interpolation=flag)
        name = "out_%03d.png" % n
        n += 1
        Image.fromarray(res, "RGB").save(os.path.join(out, name))
        cases.append({"input": inp + ".png", "expected": name, "op": op, "width": w, "height": h})

    for inp, w, h in [("natural_120x90", 60, 45), ("natural_120x90", 40, 30),
                      ("natural_120x90", 30, 30), ("natural_160x100", 80, 50),
                      ("natural_97x61", 50, 31), ("natural_97x61", 33, 20),
                      ("natural_97x61", 96, 60), ("noise_37x23", 11, 7), ("edges_64x48", 21, 16),
                      ("natural_160x100", 113, 71), ("tall_20x70", 7, 26),
                      # enlarging: OpenCV's bilinear variant of INTER_AREA
                      ("noise_37x23", 50, 40), ("edges_64x48", 64, 96), ("tiny_2x3", 5, 7)]:
        add_cv("area", inp, w, h)
    for op in ("cubic", "lanczos"):
        for inp, w, h in [("noise_37x23", 80, 50), ("natural_97x61", 150, 100),
                          ("natural_97x61", 50, 31), ("edges_64x48", 100, 70),
                          ("tiny_1x1", 5, 3), ("tiny_2x3", 7, 9), ("tall_20x70", 41, 143),
                          ("natural_160x100", 256, 160)]:
            add_cv(op, inp, w, h)

    def add_resizer(inp, mode, size, only_if_bigger, upscale="lanczos"):
        nonlocal n
        r = Resizer(image_size=size, resize_mode=mode, resize_only_if_bigger=only_if_bigger,
                    upscale_interpolation=upscale, encode_format="png", encode_quality=1)
        img_str, w, h, ow, oh, err = r(io.BytesIO(png_bytes(inputs[inp])))
        assert err is None, err
        name = "out_%03d.png" % n
        n += 1
        with open(os.path.join(out, name), "wb") as f:
            f.write(img_str)
        cases.append({"input": inp + ".png", "expected": name, "op": "resizer", "mode": mode,
                      "size": size, "only_if_bigger": only_if_bigger, "upscale": upscale,
                      "width": w, "height": h})

    for inp in ("natural_97x61", "tall_20x70", "natural_160x100"):
        for mode in ("center_crop", "keep_ratio", "border", "keep_ratio_largest"):
            add_resizer(inp, mode, 48, True)
            add_resizer(inp, mode, 128, False)
    add_resizer("natural_97x61", "center_crop", 128, True)  # left alone
    add_resizer("natural_97x61", "border", 128, True)  # left alone too: no pad
    add_resizer("natural_97x61", "center_crop", 128, False, "cubic")
    add_resizer("tall_20x70", "keep_ratio", 61, False, "cubic")
    add_resizer("natural_160x100", "center_crop", 64, False)
    add_resizer("natural_160x100", "no", 64, False)

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"opencv": cv2.__version__, "img2dataset": getattr(img2dataset, "__version__", "?"),
                   "albumentations": albumentations.__version__, "numpy": np.__version__,
                   "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
