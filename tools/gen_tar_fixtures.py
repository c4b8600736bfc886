#!/usr/bin/env python3
"""Writes the tar fixtures of tests/test_tar.c into tests/data/tar/ with
Python's own tarfile and webdataset (the writers sdw must interoperate with).

    .venv-test/bin/python tools/gen_tar_fixtures.py [OUT_DIR]

Every archive's expected reading is recorded in expected.json:
  {"file": {"members": [{"name", "size", "fnv1a"}]}}  or  {"file": {"error": true}}
where members lists the regular files only, in archive order, and fnv1a is
the 32-bit FNV-1a hash of the member's bytes. The webdataset shards
(wds_*.tar) are also what sdw's writer must reproduce byte for byte: their
samples are listed under "samples" with the mtime used.
"""
import io
import json
import os
import sys
import tarfile

import webdataset as wds


def fnv1a(data):
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def payload(name, size):
    """Deterministic bytes for a member (the C test rebuilds them)."""
    seed = fnv1a(name.encode("utf-8"))
    out = bytearray(size)
    for i in range(size):
        seed = (seed * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (seed >> 16) & 0xFF
    return bytes(out)


def regular(tf, name, size, mtime=1700000000):
    ti = tarfile.TarInfo(name)
    data = payload(name, size)
    ti.size = len(data)
    ti.mtime = mtime
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))
    return {"name": name, "size": size, "fnv1a": fnv1a(data)}


def special(tf, name, type_, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.linkname = linkname
    ti.mtime = 1700000000
    tf.addfile(ti)


def build(path, fmt, fill, pax_headers=None):
    buf = io.BytesIO()
    kw = {"format": fmt}
    if pax_headers:
        kw["pax_headers"] = pax_headers
    with tarfile.open(fileobj=buf, mode="w", **kw) as tf:
        members = fill(tf)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return members


LONG = "shard-0001/" + "a" * 60 + "/" + "b" * 70 + "/000000042.jpg"  # 157 bytes
UNICODE = "ünïcödé/名前-caption.txt"
SAMPLES = [
    {"__key__": "000000000", "jpg": payload("000000000.jpg", 1500), "txt": "a red bicycle",
     "json": json.dumps({"url": "http://example.com/x.jpg", "key": "000000000"}, indent=4)},
    {"__key__": "000000001", "jpg": payload("000000001.jpg", 512), "txt": "",
     "json": json.dumps({"caption": "ünïcode ✓"}, indent=4)},
    {"__key__": "x" * 120, "jpg": payload("long.jpg", 7), "txt": "long key",
     "json": "{}"},
]
MTIMES = [1700000000.25, 1795639230.0703351, 1700000000.0, 1234567890.5]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tar")
    os.makedirs(out, exist_ok=True)
    expected = {}

    def reg(path, members):
        expected[os.path.basename(path)] = {"members": members}

    def bad(path):
        expected[os.path.basename(path)] = {"error": True}

    p = os.path.join(out, "ustar.tar")
    reg(p, build(p, tarfile.USTAR_FORMAT, lambda tf: [
        regular(tf, "a.txt", 0), regular(tf, "dir/b.bin", 511), regular(tf, "dir/c.bin", 512),
        regular(tf, "d.bin", 513), regular(tf, LONG, 1000)]))  # LONG: ustar prefix + name

    p = os.path.join(out, "pax_long.tar")
    reg(p, build(p, tarfile.PAX_FORMAT, lambda tf: [
        regular(tf, LONG + "-pax" * 30, 10), regular(tf, UNICODE, 33),
        regular(tf, "short.txt", 5, mtime=1700000000.75)]))

    p = os.path.join(out, "pax_global.tar")
    reg(p, build(p, tarfile.PAX_FORMAT, lambda tf: [regular(tf, "g.txt", 3)],
                 pax_headers={"comment": "global header", "sdw": "x" * 300}))

    p = os.path.join(out, "gnu_long.tar")
    reg(p, build(p, tarfile.GNU_FORMAT, lambda tf: [
        regular(tf, LONG + "-gnu" * 30, 20), regular(tf, "plain.txt", 2)]))

    def links(tf):
        m = [regular(tf, "real.txt", 4)]
        special(tf, "dir", tarfile.DIRTYPE)
        special(tf, "dir/link", tarfile.SYMTYPE, "../real.txt")
        special(tf, "hard", tarfile.LNKTYPE, "real.txt")
        special(tf, "fifo", tarfile.FIFOTYPE)
        special(tf, "long-link", tarfile.SYMTYPE, "t" * 200)  # a PAX linkpath
        m.append(regular(tf, "dir/after.txt", 6))
        return m
    p = os.path.join(out, "links.tar")
    reg(p, build(p, tarfile.PAX_FORMAT, links))

    p = os.path.join(out, "evil_dotdot.tar")
    build(p, tarfile.PAX_FORMAT, lambda tf: [regular(tf, "ok.txt", 1), regular(tf, "../evil", 4)])
    bad(p)
    p = os.path.join(out, "evil_inner_dotdot.tar")
    build(p, tarfile.PAX_FORMAT, lambda tf: [regular(tf, "a/../../evil", 4)])
    bad(p)
    p = os.path.join(out, "evil_absolute.tar")
    build(p, tarfile.PAX_FORMAT, lambda tf: [regular(tf, "/etc/passwd", 4)])
    bad(p)
    p = os.path.join(out, "evil_symlink.tar")  # even a skipped member may not be hostile
    build(p, tarfile.GNU_FORMAT, lambda tf: [special(tf, "../link", tarfile.SYMTYPE, "/etc/passwd")])
    bad(p)

    # corruptions of a good archive
    good = open(os.path.join(out, "ustar.tar"), "rb").read()
    p = os.path.join(out, "bad_checksum.tar")
    b = bytearray(good)
    b[512 + 1] ^= 0x01  # a byte of the second header's name
    open(p, "wb").write(bytes(b))
    bad(p)
    p = os.path.join(out, "truncated.tar")
    open(p, "wb").write(good[:512 + 200])  # inside the second member's data... first is empty
    bad(p)

    # webdataset shards as img2dataset writes them; one per mtime
    samples_json = []
    for i, mt in enumerate(MTIMES):
        p = os.path.join(out, f"wds_{i}.tar")
        with open(p, "wb") as f:
            w = wds.TarWriter(f, mtime=mt)
            for s in SAMPLES:
                w.write(dict(s))
            w.close()
        members = []
        for s in SAMPLES:
            for k in sorted(s):
                if k == "__key__":
                    continue
                v = s[k].encode("utf-8") if isinstance(s[k], str) else s[k]
                members.append({"name": s["__key__"] + "." + k, "size": len(v), "fnv1a": fnv1a(v)})
        reg(p, members)
        expected[os.path.basename(p)]["mtime"] = mt
        expected[os.path.basename(p)]["mtime_repr"] = repr(mt)
    for s in SAMPLES:
        samples_json.append({"key": s["__key__"], "members": [
            {"ext": k, "text": s[k] if isinstance(s[k], str) else None,
             "payload": None if isinstance(s[k], str) else {
                 "000000000": "000000000.jpg", "000000001": "000000001.jpg"}.get(s["__key__"], "long.jpg"),
             "size": len(s[k].encode("utf-8") if isinstance(s[k], str) else s[k])}
            for k in sorted(s) if k != "__key__"]})
    expected["samples"] = samples_json

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
