#!/usr/bin/env python3
"""Helper of bench/bench_download.sh (run with the img2dataset venv's python).

    bench_download.py gen DIR N PORT     N JPEGs' worth of URLs: DIR/www/*.jpg (distinct
                                         images of LAION-like sizes) and DIR/urls.parquet
                                         (URL, TEXT) pointing at the loopback server
    bench_download.py compare SDW_DIR I2D_DIR
                                         the two outputs sample by sample

compare reads both shard sets (tarfile; img2dataset writes members in
completion order, sdw in key order) and counts samples whose jpg / json /
txt members are byte-identical, and per-shard parquet rows that agree on
key, status, width, height, original size and sha256.
"""
import glob
import json
import os
import sys
import tarfile


def gen(d, n, port):
    import cv2
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    www = os.path.join(d, "www")
    os.makedirs(www, exist_ok=True)
    rng = np.random.default_rng(1234)
    distinct = min(n, 200)
    for i in range(distinct):
        # LAION-aesthetic-like: mostly 0.5-2 Mpx photos, some smaller than 512
        if i % 10 == 0:
            w, h = int(rng.integers(300, 500)), int(rng.integers(300, 500))
        else:
            w, h = int(rng.integers(700, 1400)), int(rng.integers(500, 1100))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        planes = []
        for c in range(3):
            fx, fy, ph = rng.uniform(1, 12, 3)
            p = 128 + 70 * np.sin(x / w * fx + ph) * np.cos(y / h * fy + c) \
                + rng.normal(0, 12, (h, w)).astype(np.float32)
            planes.append(p)
        img = np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)
        img = cv2.GaussianBlur(img, (3, 3), 0)  # photo-like noise spectrum
        cv2.imwrite(os.path.join(www, "b%03d.jpg" % i), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    base = "http://127.0.0.1:%d/img/" % port
    # distinct URLs (the query makes each unique; the server ignores it)
    urls = [base + "b%03d.jpg?i=%d" % (i % distinct, i) for i in range(n)]
    texts = ["a benchmark photo number %d" % i for i in range(n)]
    pq.write_table(pa.table({"URL": urls, "TEXT": texts}), os.path.join(d, "urls.parquet"))
    sizes = [os.path.getsize(os.path.join(www, "b%03d.jpg" % i)) for i in range(distinct)]
    print("gen: %d URLs over %d distinct JPEGs, mean %.0f KB" % (n, distinct, sum(sizes) / len(sizes) / 1024))


def read_tars(d):
    samples = {}
    for path in sorted(glob.glob(os.path.join(d, "*.tar"))):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                key, ext = m.name.rsplit(".", 1)
                samples.setdefault((os.path.basename(path), key), {})[ext] = tf.extractfile(m).read()
    return samples


def compare(a, b):
    import pyarrow.parquet as pq

    sa, sb = read_tars(a), read_tars(b)
    same = {"jpg": 0, "json": 0, "txt": 0}
    for k in sa.keys() & sb.keys():
        for ext in same:
            if sa[k].get(ext) == sb[k].get(ext):
                same[ext] += 1
    rows_a, rows_b = {}, {}
    for d, rows in ((a, rows_a), (b, rows_b)):
        for path in sorted(glob.glob(os.path.join(d, "*.parquet"))):
            for r in pq.read_table(path).to_pylist():
                rows[r["key"]] = r
    cols = ["status", "width", "height", "original_width", "original_height", "sha256", "exif"]
    agree = sum(1 for k in rows_a.keys() & rows_b.keys()
                if all(rows_a[k][c] == rows_b[k][c] for c in cols))
    stats_a = sorted(os.path.basename(p) for p in glob.glob(os.path.join(a, "*_stats.json")))
    stats_b = sorted(os.path.basename(p) for p in glob.glob(os.path.join(b, "*_stats.json")))
    out = {"samples_sdw": len(sa), "samples_img2dataset": len(sb),
           "common": len(sa.keys() & sb.keys()), "identical_jpg": same["jpg"],
           "identical_json": same["json"], "identical_txt": same["txt"],
           "parquet_rows_sdw": len(rows_a), "parquet_rows_img2dataset": len(rows_b),
           "parquet_rows_agreeing": agree, "stats_files_same_names": stats_a == stats_b}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command")
