#!/usr/bin/env python3
"""Cases and checks for tests/cli/download.sh (run with .venv-test's python:
webdataset, pyarrow, img2dataset 1.47 and its OpenCV).

    download_cases.py make DIR PORT        images in DIR/www, URL lists and expectations
    download_cases.py check DIR SHARDS MANIFEST STATS_JSON
    download_cases.py same SHARDS_A SHARDS_B   two runs wrote the same shards
    download_cases.py readable SHARDS          every file there reads to its end

The expected image bytes are not ours: they are what img2dataset's own
Resizer (OpenCV + albumentations) makes of the served file with the same
settings, and the expected member JSON is Python's json.dumps(meta,
indent=4) of the meta dict img2dataset builds, in its key order.
"""
import glob
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tarfile
import zlib

IMAGE_SIZE = 256
PER_SHARD = 10
MAX_BYTES = 2000000


def make_images(www, repo):
    import cv2
    import numpy as np

    os.makedirs(www, exist_ok=True)

    def pattern(w, h, seed, channels=3):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        planes = []
        for c in range(channels):
            fx, fy = rng.uniform(2, 9, 2)
            p = 127.5 + 90 * np.sin(x / w * fx + c) * np.cos(y / h * fy) + rng.normal(0, 6, (h, w))
            p[(x - w / 3) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 5) ** 2] = 40 * c + 30
            planes.append(p)
        return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)

    cv2.imwrite(www + "/land.jpg", pattern(640, 480, 1), [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(www + "/tall.png", pattern(300, 700, 2))
    cv2.imwrite(www + "/small.jpg", pattern(200, 150, 3))
    rgba = pattern(400, 400, 4, 4)
    rgba[..., 3] = np.linspace(0, 255, 400, dtype=np.float64)[None, :].astype(np.uint8)
    cv2.imwrite(www + "/rgba.png", rgba)
    cv2.imwrite(www + "/photo.webp", pattern(512, 384, 5), [cv2.IMWRITE_WEBP_QUALITY, 80])
    cv2.imwrite(www + "/gray.jpg", pattern(320, 320, 6, 1)[..., 0])
    shutil.copy(repo + "/tests/data/image/exif_rotated.jpg", www + "/exif.jpg")
    land = open(www + "/land.jpg", "rb").read()
    open(www + "/trunc.jpg", "wb").write(land[: len(land) * 6 // 10])
    # a PNG whose header claims 100000 x 100000 pixels in a few bytes
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    open(www + "/bomb.png", "wb").write(bomb)
    open(www + "/page.html", "wb").write(b"<!doctype html><html><body>not an image</body></html>\n")
    open(www + "/empty.jpg", "wb").write(b"")
    # the kill/resume list's images: many sizes, all quick
    for i in range(12):
        cv2.imwrite(www + "/k%02d.jpg" % i, pattern(180 + 37 * i, 420 - 19 * i, 100 + i))


def matrix(base, closed_port):
    """(url, caption, expectation) rows of the main run."""
    ok = lambda name, **kw: dict(status="success", file=name, **kw)
    dl = lambda reason, msg=None, hits=None: dict(status="failed_to_download", reason=reason,
                                                  message=msg, hits=hits)
    rs = lambda reason: dict(status="failed_to_resize", reason=reason)
    b = base
    rows = [
        (b + "/img/land.jpg", "a landscape photo, jpeg 640x480", ok("land.jpg")),
        (b + "/img/tall.png", "a tall png", ok("tall.png")),
        (b + "/img/small.jpg", "smaller than the target: kept", ok("small.jpg")),
        (b + "/img/rgba.png", "alpha matted on white", ok("rgba.png")),
        (b + "/img/photo.webp", "lossy webp", ok("photo.webp")),
        (b + "/img/gray.jpg", "grayscale jpeg", ok("gray.jpg")),
        (b + "/img/exif.jpg", "a jpeg with exif data", ok("exif.jpg", exif=None)),
        (b + "/slow/400/land.jpg", "slow but under the timeout", ok("land.jpg")),
        (b + "/redirect/2/small.jpg", "two redirects", ok("small.jpg")),
        (b + "/redirect/6/small.jpg", "six redirects", dl("redirect_limit")),
        (b + "/status/404", "gone", dl("http_404", "HTTP Error 404: Not Found", 1)),
        (b + "/status/500", "server error, retried", dl("http_5xx", "HTTP Error 500: Internal Server Error", 2)),
        (b + "/status/403", "forbidden", dl("http_403", "HTTP Error 403: Forbidden", 1)),
        (b + "/status/429", "too many requests, retried", dl("http_429", "HTTP Error 429: Too Many Requests", 2)),
        (b + "/stall/land.jpg", "stalls after half the body", dl("timeout", "timed out", 2)),
        (b + "/stall-headers/x", "never answers", dl("timeout", "timed out", 2)),
        (b + "/big-cl/50000000", "Content-Length over the limit", dl("too_large", None, 1)),
        (b + "/big-chunked/5000000", "chunked body over the limit", dl("too_large", None, 1)),
        (b + "/img/page.html", "html, not an image", rs("not_an_image")),
        (b + "/img/trunc.jpg", "truncated jpeg", rs("truncated_image")),
        (b + "/img/bomb.png", "decompression bomb", rs("image_too_large")),
        (b + "/img/empty.jpg", "empty body", rs("not_an_image")),
        (b + "/optout/noai/land.jpg", "opted out", dl("opted_out", "Use of image disallowed by X-Robots-Tag directive")),
        (b + "/optout/img2dataset%3A%20noimageai/land.jpg", "opted out for img2dataset",
         dl("opted_out", "Use of image disallowed by X-Robots-Tag directive")),
        (b + "/optout/googlebot%3A%20noai/small.jpg", "opted out for another bot only", ok("small.jpg")),
        (b + "/optout/NoIndex%2C%20nofollow/small.jpg", "noindex in capitals",
         dl("opted_out", "Use of image disallowed by X-Robots-Tag directive")),
        (b + "/optout/sdw%3A%20noai/small.jpg", "opted out for sdw",
         dl("opted_out", "Use of image disallowed by X-Robots-Tag directive")),
        (b + "/optout/nofollow%7Cotherbot%3A%20noai/small.jpg", "harmless directives", ok("small.jpg")),
        (b + "/flaky/1/a/small.jpg", "fails once, then works", ok("small.jpg", hits=2)),
        ("http://127.0.0.1:%d/x.jpg" % closed_port, "nobody listens", dl("connect_error", None, None)),
        ("ftp://127.0.0.1/x.jpg", "not http", dl("bad_url")),
        ("file:///etc/passwd", "a local file", dl("bad_url")),
        (None, "no url at all", dl("bad_url", "no URL")),
        (b + "/img/missing.jpg", "404 from the image path", dl("http_404", "HTTP Error 404: Not Found", 1)),
        (b + "/img/land.jpg", None, ok("land.jpg")),
        (b + "/img/small.jpg", 'caf\u00e9 \u2615 \U0001d11e "q" \\ \n\ttab', ok("small.jpg")),
    ]
    return rows


def resume_rows(base):
    rows = []
    for i in range(180):
        if i % 37 == 5:
            rows.append((base + "/status/404", "missing %d" % i))
        elif i % 53 == 7:
            rows.append((base + "/optout/noai/k03.jpg", "opted out %d" % i))
        else:
            rows.append((base + "/slow/40/k%02d.jpg" % (i % 12), "image %d \u00e9" % i))
    return rows


def cmd_make(d, port):
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    make_images(d + "/www", repo)
    base = "http://127.0.0.1:%d" % port
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()  # nobody listens there now
    rows = matrix(base, closed_port)
    # an extra column that the download ignores, as LAION files have
    pq.write_table(pa.table({"URL": [r[0] for r in rows], "TEXT": [r[1] for r in rows],
                             "similarity": [0.3] * len(rows)}), d + "/matrix.parquet")
    json.dump([r[2] for r in rows], open(d + "/expect.json", "w"))
    rr = resume_rows(base)
    pq.write_table(pa.table({"URL": [r[0] for r in rr], "TEXT": [r[1] for r in rr]}),
                   d + "/resume.parquet", row_group_size=100)


def key_of(shard, i, per_shard):
    oom = 0
    while 10 ** oom < per_shard:
        oom += 1
    return "%0*d" % (oom + 5, shard * 10 ** oom + i)


def cmd_check(d, shards, manifest_path, stats_path):
    import pyarrow.parquet as pq
    import webdataset as wds
    from img2dataset.resizer import Resizer

    expect = json.load(open(d + "/expect.json"))
    table = pq.read_table(d + "/matrix.parquet").to_pylist()
    resizer = Resizer(image_size=IMAGE_SIZE, resize_mode="center_crop", resize_only_if_bigger=True,
                      encode_quality=95, encode_format="jpg")
    hits = json.load(open(stats_path))["hits"]
    agents = json.load(open(stats_path))["agents"]
    errors = []
    reasons = {}
    n = len(table)
    nshards = (n + PER_SHARD - 1) // PER_SHARD
    names = sorted(n for n in os.listdir(shards) if not n.startswith("."))
    want = sorted(["%05d%s" % (s, e) for s in range(nshards) for e in (".tar", ".parquet", "_stats.json")])
    if names != want:
        errors.append("shard files %s, expected %s" % (names, want))
    for s in range(nshards):
        rows = table[s * PER_SHARD:(s + 1) * PER_SHARD]
        exp = expect[s * PER_SHARD:(s + 1) * PER_SHARD]
        keys = [key_of(s, i, PER_SHARD) for i in range(len(rows))]
        # --- parquet: img2dataset's schema, one row per URL in key order
        pt = pq.read_table("%s/%05d.parquet" % (shards, s))
        cols = [f.name for f in pt.schema]
        want_cols = ["caption", "url", "key", "status", "error_message", "width", "height",
                     "original_width", "original_height", "exif", "sha256"]
        if cols != want_cols:
            errors.append("shard %d parquet columns %s" % (s, cols))
        types = [str(f.type) for f in pt.schema]
        if types != ["string"] * 5 + ["int32"] * 4 + ["string"] * 2:
            errors.append("shard %d parquet types %s" % (s, types))
        prow = pt.to_pylist()
        if [r["key"] for r in prow] != keys:
            errors.append("shard %d parquet keys %s" % (s, [r["key"] for r in prow]))
        # --- tar: members in key order, jpg/json/txt per success
        members = {}
        order = []
        with tarfile.open("%s/%05d.tar" % (shards, s)) as tf:
            for m in tf.getmembers():
                order.append(m.name)
                members[m.name] = tf.extractfile(m).read()
                if m.mode != 0o444 or m.uname != "bigdata":
                    errors.append("%s: mode %o uname %s" % (m.name, m.mode, m.uname))
        want_order = []
        successes = 0
        for i, (row, e, key, pr) in enumerate(zip(rows, exp, keys, prow)):
            where = "row %d (%s)" % (s * PER_SHARD + i, row["URL"])
            if pr["url"] != row["URL"] or pr["caption"] != row["TEXT"]:
                errors.append("%s: parquet url/caption %r %r" % (where, pr["url"], pr["caption"]))
            if pr["status"] != e["status"]:
                errors.append("%s: status %s (%s), expected %s" % (where, pr["status"], pr["error_message"], e["status"]))
                continue
            if e["status"] != "success":
                reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
                if e.get("message") and pr["error_message"] != e["message"]:
                    errors.append("%s: error %r, expected %r" % (where, pr["error_message"], e["message"]))
                if not pr["error_message"]:
                    errors.append("%s: no error message" % where)
                if any(pr[c] is not None for c in ("width", "height", "exif", "sha256")):
                    errors.append("%s: failed row with values %s" % (where, pr))
                if e.get("hits") is not None:
                    path = row["URL"].split("127.0.0.1:", 1)[1].split("/", 1)[1]
                    got = hits.get("/" + path, 0)
                    if got != e["hits"]:
                        errors.append("%s: %d requests, expected %d" % (where, got, e["hits"]))
                continue
            successes += 1
            want_order += [key + ".jpg", key + ".json", key + ".txt"]
            body = open(d + "/www/" + e["file"], "rb").read()
            img, w, h, ow, oh, err = resizer(io.BytesIO(body))
            assert err is None, err
            jpg = members.get(key + ".jpg")
            gray = e["file"] == "gray.jpg"
            if jpg != img:
                # state how far off it is: decoded pixels
                import cv2
                import numpy as np
                a = cv2.imdecode(np.frombuffer(jpg or b"", np.uint8), cv2.IMREAD_COLOR)
                b_ = cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR)
                diff = "shape %s vs %s" % (None if a is None else a.shape, b_.shape)
                maxdiff = None
                if a is not None and a.shape == b_.shape:
                    maxdiff = np.abs(a.astype(int) - b_.astype(int)).max()
                    diff = "max pixel difference %d" % maxdiff
                # OpenCV writes a gray image as a one-channel JPEG; pipeline/image.h
                # decodes to RGB and so writes three equal channels: the pixels
                # must still be exactly the same
                if not (gray and maxdiff == 0):
                    errors.append("%s: jpg differs from img2dataset's Resizer (%s)" % (where, diff))
            meta = {"caption": row["TEXT"], "url": row["URL"], "key": key, "status": "success",
                    "error_message": None, "width": w, "height": h, "original_width": ow,
                    "original_height": oh, "exif": e.get("exif", "{}"),
                    "sha256": hashlib.sha256(body).hexdigest()}
            text = json.dumps(meta, indent=4).encode()
            if members.get(key + ".json") != text:
                errors.append("%s: json member\n%s\nexpected\n%s" % (where, members.get(key + ".json"), text))
            txt = (row["TEXT"] if row["TEXT"] is not None else "").encode()
            if members.get(key + ".txt") != txt:
                errors.append("%s: txt member %r" % (where, members.get(key + ".txt")))
            for c, v in (("width", w), ("height", h), ("original_width", ow), ("original_height", oh),
                         ("exif", meta["exif"]), ("sha256", meta["sha256"]), ("error_message", None)):
                if pr[c] != v:
                    errors.append("%s: parquet %s = %r, expected %r" % (where, c, pr[c], v))
            if e.get("hits") is not None:
                path = row["URL"].split("127.0.0.1:", 1)[1].split("/", 1)[1]
                if hits.get("/" + path, 0) != e["hits"]:
                    errors.append("%s: %d requests, expected %d" % (where, hits.get("/" + path, 0), e["hits"]))
        if order != want_order:
            errors.append("shard %d members %s, expected %s" % (s, order, want_order))
        # --- stats: img2dataset's fields, in its order, as json.dump(indent=4) writes them
        text = open("%s/%05d_stats.json" % (shards, s)).read()
        st = json.loads(text)
        if json.dumps(st, indent=4) != text:
            errors.append("shard %d stats not in json.dump(indent=4) form" % s)
        if list(st) != ["count", "successes", "failed_to_download", "failed_to_resize", "duration",
                        "start_time", "end_time", "status_dict"]:
            errors.append("shard %d stats keys %s" % (s, list(st)))
        fd = sum(1 for e in exp if e["status"] == "failed_to_download")
        fr = sum(1 for e in exp if e["status"] == "failed_to_resize")
        if (st["count"], st["successes"], st["failed_to_download"], st["failed_to_resize"]) != (len(rows), successes, fd, fr):
            errors.append("shard %d stats counts %s" % (s, st))
        sd = {}
        for pr in prow:
            k = "success" if pr["status"] == "success" else pr["error_message"]
            sd[k] = sd.get(k, 0) + 1
        if st["status_dict"] != sd:
            errors.append("shard %d status_dict %s, expected %s" % (s, st["status_dict"], sd))
        if not (st["start_time"] <= st["end_time"] and abs(st["duration"] - (st["end_time"] - st["start_time"])) < 1e-6):
            errors.append("shard %d stats times %s" % (s, st))
    # --- webdataset reads the shards as a training loader does
    urls = sorted(glob.glob(shards + "/*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    want_keys = [key_of(i // PER_SHARD, i % PER_SHARD, PER_SHARD) for i, e in enumerate(expect)
                 if e["status"] == "success"]
    if [x["__key__"] for x in samples] != want_keys:
        errors.append("webdataset keys %s" % [x["__key__"] for x in samples])
    for x in samples:
        if set(x) - {"__key__", "__url__", "__local_path__"} != {"jpg", "json", "txt"}:
            errors.append("webdataset sample %s has %s" % (x["__key__"], sorted(x)))
    # --- manifest: counts and the failure histogram by reason
    m = json.load(open(manifest_path))
    total_ok = sum(1 for e in expect if e["status"] == "success")
    if m["state"] != "done" or m["counts"]["in"] != n or m["counts"]["out"] != total_ok \
            or m["counts"]["failed"] != n - total_ok or m["total"] != n:
        errors.append("manifest %s %s total %s" % (m["state"], m["counts"], m["total"]))
    if m["failures"] != reasons:
        errors.append("manifest failures %s, expected %s" % (m["failures"], reasons))
    # --- the user agent names sdw and the img2dataset token
    agents = [a for a in agents if a != "test-harness"]
    if not agents or not all("sdw/" in a and "(compatible; img2dataset;" in a for a in agents):
        errors.append("user agents %s" % list(agents))
    if errors:
        print("\n".join(errors))
        sys.exit("download check: %d problem(s)" % len(errors))
    print("download check: %d URLs in %d shards: %d images identical to img2dataset's Resizer, "
          "%d failures by reason %s" % (n, nshards, total_ok, n - total_ok, reasons))


def cmd_same(a, b):
    """Same file names; tar members with the same names and bytes (and the
    whole tar equal: SOURCE_DATE_EPOCH fixes mtimes); parquet tables equal;
    stats equal but for the times."""
    import pyarrow.parquet as pq

    # (dot files: the per-node lock files)
    na = sorted(n for n in os.listdir(a) if not n.startswith("."))
    nb = sorted(n for n in os.listdir(b) if not n.startswith("."))
    if na != nb:
        sys.exit("different files:\n%s\n%s" % (na, nb))
    for name in na:
        pa_, pb = os.path.join(a, name), os.path.join(b, name)
        if name.endswith(".tar"):
            ta = {m.name: tarfile.open(pa_).extractfile(m).read() for m in tarfile.open(pa_).getmembers()}
            tb = {m.name: tarfile.open(pb).extractfile(m).read() for m in tarfile.open(pb).getmembers()}
            if ta != tb:
                sys.exit("%s: members differ" % name)
            if open(pa_, "rb").read() != open(pb, "rb").read():
                sys.exit("%s: same members but different bytes" % name)
        elif name.endswith(".parquet"):
            if not pq.read_table(pa_).equals(pq.read_table(pb)):
                sys.exit("%s: tables differ" % name)
        elif name.endswith("_stats.json"):
            sa, sb = json.load(open(pa_)), json.load(open(pb))
            for s in (sa, sb):
                for k in ("duration", "start_time", "end_time"):
                    s.pop(k)
            if sa != sb:
                sys.exit("%s: %s vs %s" % (name, sa, sb))
        else:
            sys.exit("unexpected file %s" % name)
    print("same: %d files" % len(na))


def cmd_readable(d):
    """Whatever a killed run left under the final names is complete."""
    import pyarrow.parquet as pq

    n = 0
    for path in sorted(glob.glob(os.path.join(d, "*"))):
        if path.endswith(".tar"):
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    tf.extractfile(m).read()
        elif path.endswith(".parquet"):
            pq.read_table(path)
        elif path.endswith("_stats.json"):
            json.load(open(path))
        n += 1
    print("readable: %d files" % n)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        cmd_make(sys.argv[2], int(sys.argv[3]))
    elif cmd == "check":
        cmd_check(*sys.argv[2:6])
    elif cmd == "readable":
        cmd_readable(sys.argv[2])
    elif cmd == "same":
        cmd_same(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
