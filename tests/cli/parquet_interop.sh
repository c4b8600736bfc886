#!/usr/bin/env bash
# Parquet written by sdw (pipeline/parquet_writer.c) must be read by PyPI
# pyarrow: the unit test `parquet_writer_interop` writes its files into
# $SDW_PARQUET_OUT (snappy / gzip / uncompressed, several row groups, small
# pages, an empty file, the array API), then pyarrow checks the schema
# (types, nullability, STRING annotation), the row groups, the footer
# metadata and every value (floats bit for bit, nulls where they belong)
# against the same formulas the C test used (tests/test_parquet.c, w_*).
#
# pyarrow comes from .venv-test/, created here when missing (idempotent);
# if it cannot be installed the test fails rather than skipping.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TEST_BIN:=build/sdw-tests}"
venv=.venv-test
if ! "$venv/bin/python" -c 'import pyarrow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyarrow
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

out=$(SDW_PARQUET_OUT="$tmp" "$TEST_BIN" parquet_writer_interop 2>&1)
echo "$out" | grep -qx '1 passed, 0 failed' || { echo "$out"; exit 1; }

"$venv/bin/python" - "$tmp" <<'EOF'
import math, os, struct, sys
import pyarrow as pa
import pyarrow.parquet as pq

d = sys.argv[1]

def null(c, i):
    return {"i32": i % 7 == 3, "f64": i % 5 == 0, "flag": i % 11 == 0, "TEXT": i % 13 == 4,
            "bin": i % 17 == 16 or 600 <= i < 700}.get(c, False)

def i32(i):
    v = (i * 2654435761) & 0xffffffff
    return v - 2**32 if v >= 2**31 else v

def f64(i):
    return {1: -0.0, 2: math.inf, 3: -math.inf}.get(i, i / 8.0 - 3.25)

def text(i):
    if i % 10 == 0:
        return ""
    return "".join("caption %d \u00e9 \u65e5\u672c \U0001F642 " % i for _ in range(i % 4 + 1))

def value(c, i):
    if null(c, i):
        return None
    return {"id": lambda: i, "i32": lambda: i32(i), "f32": lambda: i * 0.5 - 100.0,
            "f64": lambda: f64(i), "flag": lambda: i % 3 == 0,
            "URL": lambda: "https://example.com/img/%d.jpg" % i, "TEXT": lambda: text(i),
            "bin": lambda: bytes((i * j) & 0xff for j in range(i % 6))}[c]()

want_schema = pa.schema([
    pa.field("id", pa.int64(), nullable=False), pa.field("i32", pa.int32()),
    pa.field("f32", pa.float32(), nullable=False), pa.field("f64", pa.float64()),
    pa.field("flag", pa.bool_()), pa.field("URL", pa.string(), nullable=False),
    pa.field("TEXT", pa.string()), pa.field("bin", pa.binary())])

cases = {"interop_snappy.parquet": (1000, [400, 400, 200], "SNAPPY"),
         "interop_none.parquet": (1000, [1000], "UNCOMPRESSED"),
         "interop_gzip.parquet": (1000, [300, 300, 300, 100], "GZIP"),
         "interop_pages.parquet": (1000, [700, 300], "SNAPPY"),
         "interop_empty.parquet": (0, [], None),
         "interop_arrays.parquet": (1000, [300, 150, 550], "SNAPPY")}
assert sorted(os.listdir(d)) == sorted(cases), sorted(os.listdir(d))
for name, (rows, groups, codec) in cases.items():
    path = os.path.join(d, name)
    pf = pq.ParquetFile(path)
    md = pf.metadata
    t = pf.read()
    assert t.schema.remove_metadata() == want_schema, (name, t.schema)
    assert md.num_rows == rows and t.num_rows == rows, (name, md.num_rows)
    assert [md.row_group(g).num_rows for g in range(md.num_row_groups)] == groups, name
    assert md.created_by.startswith("sdw version"), md.created_by
    if name != "interop_arrays.parquet":
        assert md.metadata[b"sdw.test"] == b"interop", md.metadata
    for g in range(md.num_row_groups):
        for c in range(md.num_columns):
            cc = md.row_group(g).column(c)
            assert cc.compression == codec, (name, cc.compression)
            st = cc.statistics
            col = cc.path_in_schema
            lo = sum(groups[:g])
            want_nulls = sum(null(col, i) for i in range(lo, lo + groups[g]))
            assert st is not None and st.null_count == want_nulls, (name, col, g)
    if name == "interop_pages.parquet":  # 200-byte pages: several per chunk
        assert md.row_group(0).column(5).total_uncompressed_size > 5000
    for c in want_schema.names:
        got = t.column(c).to_pylist()
        for i in range(rows):
            w = value(c, i)
            g = got[i]
            if c in ("f32", "f64") and w is not None:
                fmt = "<f" if c == "f32" else "<d"
                ok = struct.pack(fmt, g) == struct.pack(fmt, w)
            else:
                ok = g == w and type(g) == type(w)
            assert ok, (name, c, i, g, w)
print("pyarrow %s read %d sdw files" % (pa.__version__, len(cases)))
EOF
