#!/usr/bin/env python3
"""Writes the codec fixtures of tests/test_image_codec.c into
tests/data/image/: encoded images in the variants the web serves (written by
Pillow and OpenCV), what img2dataset's Resizer decodes from each
(cv2.imdecode IMREAD_UNCHANGED + its alpha matting on white, gray expanded
to RGB), cv2.imencode JPEG bytes, and crafted decompression bombs.

    .venv-test/bin/python tools/gen_image_fixtures.py [OUT_DIR]

cases.json: {"decode": [{"file", "expected" (RGB PNG) | "error": true,
"width", "height", "note"}], "encode": [{"input" (RGB PNG), "quality",
"expected" (cv2.imencode bytes)}], "versions": {...}}
"""
import io
import json
import os
import struct
import sys
import zlib

import cv2
import numpy as np
from PIL import Image


def natural(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = 120 + 70 * np.sin(x / (6 + 2 * c) + c) * np.cos(y / (5 + c)) + 40 * x / w
    img[(x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 5) ** 2] = [240, 20, 40]
    img += rng.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def img2dataset_pixels(data):
    """What img2dataset's Resizer holds after decoding, as RGB."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    if img.ndim == 3 and img.shape[-1] == 4:
        alpha = img[:, :, 3, np.newaxis]
        img = alpha / 255 * img[..., :3] + 255 - alpha
        img = np.rint(img.clip(min=0, max=255)).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    assert img.dtype == np.uint8, img.dtype
    return img[..., ::-1].copy()  # BGR -> RGB


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "image")
    os.makedirs(out, exist_ok=True)
    rgb = natural(61, 43, 1)
    rng = np.random.default_rng(2)
    alpha = np.clip(np.linspace(0, 300, 61)[None, :] - np.linspace(0, 40, 43)[:, None], 0,
                    255).astype(np.uint8)
    alpha[5:9, :] = 0
    alpha[10:12, :] = 255
    rgba = np.dstack([rgb, alpha])
    gray = rgb.mean(axis=2).astype(np.uint8)
    cases = {"decode": [], "encode": []}

    def save(name, data, note, expect_pixels=True, cv_pixels=True):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        c = {"file": name, "note": note}
        if expect_pixels:
            px = img2dataset_pixels(data) if cv_pixels is True else cv_pixels
            exp = name.replace(".", "_") + ".expected.png"
            Image.fromarray(px, "RGB").save(os.path.join(out, exp))
            c.update(expected=exp, width=px.shape[1], height=px.shape[0])
        else:
            c["error"] = True
        cases["decode"].append(c)

    def pil(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, format=fmt, **kw)
        return b.getvalue()

    im = Image.fromarray(rgb, "RGB")
    save("rgb420.jpg", pil(im, "JPEG", quality=90), "Pillow 4:2:0")
    save("rgb444.jpg", pil(im, "JPEG", quality=90, subsampling=0), "Pillow 4:4:4")
    save("rgb422.jpg", pil(im, "JPEG", quality=80, subsampling=1), "Pillow 4:2:2")
    save("progressive.jpg", pil(im, "JPEG", quality=85, progressive=True), "progressive")
    save("gray.jpg", pil(Image.fromarray(gray, "L"), "JPEG", quality=90), "grayscale")
    cmyk = im.convert("CMYK")
    save("cmyk.jpg", pil(cmyk, "JPEG", quality=90), "CMYK (Adobe)")
    ok, enc = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70,
                                                    cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    save("restart.jpg", enc.tobytes(), "OpenCV with restart markers")
    # EXIF orientation 6 (rotate 90): img2dataset does not apply it
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotated.jpg", pil(im, "JPEG", quality=90, exif=exif.tobytes()), "EXIF orientation 6")
    full = pil(im, "JPEG", quality=90)
    save("truncated.jpg", full[: len(full) // 2], "cut in half (OpenCV returns gray fill)",
         expect_pixels=False)
    save("corrupt.jpg", full[:200] + bytes(rng.integers(0, 256, 300, dtype=np.uint8)),
         "random bytes after the headers", expect_pixels=False)

    save("rgb.png", pil(im, "PNG"), "RGB")
    save("rgba.png", pil(Image.fromarray(rgba, "RGBA"), "PNG"), "RGBA, matted on white")
    save("gray.png", pil(Image.fromarray(gray, "L"), "PNG"), "gray")
    save("gray_alpha.png", pil(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"), "gray+alpha")
    pal = im.quantize(colors=37)
    save("palette.png", pil(pal, "PNG"), "palette")
    pal_t = pal.copy()
    pal_t.info["transparency"] = bytes([0, 128] + [255] * 35)
    save("palette_trns.png", pil(pal_t, "PNG", transparency=pal_t.info["transparency"]),
         "palette + tRNS")
    save("bilevel.png", pil(Image.fromarray(gray > 128).convert("1"), "PNG"), "1-bit gray")
    save("opencv.png", cv2.imencode(".png", rgb[..., ::-1])[1].tobytes(), "OpenCV PNG")
    rows16 = (rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape)).astype(">u2")
    raw = b"".join(b"\x00" + rows16[y].tobytes() for y in range(rows16.shape[0]))
    png16 = (b"\x89PNG\r\n\x1a\n" +
             png_chunk(b"IHDR", struct.pack(">IIBBBBB", 61, 43, 16, 2, 0, 0, 0)) +
             png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    # 16-bit: OpenCV keeps 16 bits (img2dataset then saturates on encode); we scale with
    # rounding, as round(v / 257)
    save("rgb16.png", png16, "16-bit RGB", cv_pixels=np.rint(rows16.astype(np.float64) / 257)
         .astype(np.uint8))
    # Pillow does not write interlaced PNGs: a hand-made Adam7 5x4 image
    small = natural(5, 4, 3)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, 5, dx))
        ys = list(range(y0, 4, dy))
        if not xs or not ys:
            continue
        for y in ys:
            raw += b"\x00" + b"".join(small[y, x].tobytes() for x in xs)
    adam7 = (b"\x89PNG\r\n\x1a\n" +
             png_chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 8, 2, 0, 0, 1)) +
             png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    save("adam7.png", adam7, "Adam7 interlaced RGB")
    png = pil(im, "PNG")
    save("truncated.png", png[: len(png) // 2], "cut in half", expect_pixels=False)
    bad_crc = bytearray(png)
    bad_crc[40] ^= 0xFF
    save("bad_crc.png", bytes(bad_crc), "IDAT corrupted", expect_pixels=False)
    # bombs: headers that claim huge images, with tiny data
    bomb = (b"\x89PNG\r\n\x1a\n" +
            png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))
    save("bomb.png", bomb, "IHDR 100000x100000", expect_pixels=False)
    jb = bytearray(full)
    sof = jb.find(b"\xff\xc0")
    struct.pack_into(">HH", jb, sof + 5, 60000, 60000)
    save("bomb.jpg", bytes(jb), "SOF 60000x60000", expect_pixels=False)

    save("lossy.webp", pil(im, "WEBP", quality=80), "lossy")
    save("lossless.webp", pil(im, "WEBP", lossless=True), "lossless")
    save("alpha.webp", pil(Image.fromarray(rgba, "RGBA"), "WEBP", quality=80), "lossy + alpha")
    save("alpha_lossless.webp", pil(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True),
         "lossless + alpha")
    wb = pil(im, "WEBP", quality=80)
    save("truncated.webp", wb[: len(wb) // 2], "cut in half", expect_pixels=False)
    frames = [Image.fromarray(natural(16, 16, s), "RGB") for s in range(2)]
    an = io.BytesIO()
    frames[0].save(an, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    save("animated.webp", an.getvalue(), "animated", expect_pixels=False)
    save("not_an_image.gif", pil(im, "GIF"), "GIF", expect_pixels=False)

    # encoding: cv2.imencode(".jpg", [IMWRITE_JPEG_QUALITY, q]) as img2dataset calls it
    for name, img in (("enc_natural", natural(64, 48, 4)), ("enc_odd", natural(37, 29, 5))):
        Image.fromarray(img, "RGB").save(os.path.join(out, name + ".png"))
        for q in (95, 75):
            enc = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()
            exp = "%s_q%d.jpg" % (name, q)
            with open(os.path.join(out, exp), "wb") as f:
                f.write(enc)
            cases["encode"].append({"input": name + ".png", "quality": q, "expected": exp})

    import PIL
    cases["versions"] = {"opencv": cv2.__version__, "pillow": PIL.__version__}
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
