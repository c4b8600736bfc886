#!/usr/bin/env bash
# Shards written by sdw (pipeline/tar.c) are read by Python's tarfile and by
# webdataset exactly as img2dataset's own shards are, and are byte for byte
# what webdataset.TarWriter writes for the same samples and mtimes.
# Creates .venv-test/ (webdataset from PyPI) when missing; FAILS when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TEST_BIN:=build/sdw-tests}"

venv=.venv-test
if ! "$venv/bin/python" -c 'import webdataset' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q webdataset
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SDW_TAR_INTEROP_DIR="$tmp" "$TEST_BIN" tar_writer_interop_shards | tee "$tmp/log"
grep -q '^1 passed, 0 failed' "$tmp/log"
test -s "$tmp/00000.tar"

"$venv/bin/python" - "$tmp" <<'EOF'
import io, json, sys, tarfile
import webdataset as wds

d = sys.argv[1]
path = d + "/00000.tar"

def payload(name, size):  # tools/gen_tar_fixtures.py's, which the C test mirrors
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    out = bytearray(size)
    for i in range(size):
        h = (h * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (h >> 16) & 0xFF
    return bytes(out)

keys = ["%09d" % i for i in range(50)]
keys[7] = "k-ünï-" + "0123456789" * 8

# 1. tarfile: every member, its metadata and bytes
with tarfile.open(path) as tf:
    members = tf.getmembers()
    assert len(members) == 150, len(members)
    for i, key in enumerate(keys):
        for j, ext in enumerate(["jpg", "json", "txt"]):
            m = members[3 * i + j]
            assert m.name == key + "." + ext, (m.name, key, ext)
            assert m.isreg() and m.mode == 0o444 and m.uid == 0 and m.gid == 0
            assert m.uname == "bigdata" and m.gname == "bigdata"
            assert m.mtime == 1700000000.125 + i, m.mtime
            data = tf.extractfile(m).read()
            if ext == "jpg":
                assert data == payload(key + ".jpg", i * 97 % 3000)
            elif ext == "json":
                assert json.loads(data) == {"key": str(i)}
            else:
                assert data == ("caption %d" % i).encode()

# 2. webdataset: samples grouped by key as a training loader sees them
samples = list(wds.WebDataset(path, shardshuffle=False))
assert [s["__key__"] for s in samples] == keys, [s["__key__"] for s in samples][:3]
for i, s in enumerate(samples):
    assert s["txt"] == ("caption %d" % i).encode()
    assert s["jpg"] == payload(keys[i] + ".jpg", i * 97 % 3000)

# 3. the same shard from webdataset.TarWriter (img2dataset's writer), byte for byte
buf = io.BytesIO()
w = wds.TarWriter(buf)
for i, key in enumerate(keys):
    w.mtime = 1700000000.125 + i
    w.write({"__key__": key, "jpg": payload(key + ".jpg", i * 97 % 3000),
             "json": json.dumps({"key": str(i)}), "txt": "caption %d" % i})
w.close()
ours = open(path, "rb").read()
theirs = buf.getvalue()
if ours != theirs:
    first = next((k for k in range(min(len(ours), len(theirs))) if ours[k] != theirs[k]), None)
    sys.exit("sdw's shard differs from webdataset.TarWriter's: %d vs %d bytes, first at %s"
             % (len(ours), len(theirs), first))
print("tar interop: tarfile, webdataset and byte identity OK (%d bytes)" % len(ours))
EOF
