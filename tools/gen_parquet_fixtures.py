#!/usr/bin/env python3
"""Generates the parquet reader's test fixtures with PyPI pyarrow.

    .venv-test/bin/python tools/gen_parquet_fixtures.py [--out tests/data/parquet]
                                                       [--seeds tests/fuzz/seeds/parquet]

Writes small parquet files in every combination of codec (none, snappy,
gzip, zstd) x dictionary (on, off) x data page version (1.0, 2.0) x
nullability (nullable with nulls, required), all with the same LAION-like
table (URL, TEXT with empty and non-ASCII strings, WIDTH/HEIGHT, similarity,
punsafe, pwatermark, AESTHETIC_SCORE, hash) plus every physical type
(BOOLEAN, INT32, INT64, FLOAT, DOUBLE with NaN/inf/-0.0/subnormals,
BYTE_ARRAY binary), in 3 row groups of several small pages each. Extra files
cover a dictionary that falls back to PLAIN mid-chunk, the DELTA_* and
BYTE_STREAM_SPLIT encodings, LZ4_RAW, logical types (int8/uint32/date/
timestamps/decimal/fixed binary/INT96), nested struct leaves, a LIST column
(reported unsupported), all-null columns, a table with no rows, page
checksums + page index + bloom filters, and a pandas file with an index.

expected.json holds what pyarrow itself reads back from each file (never
our reader's output): per table, each column's physical/logical type and
its values in physical form (integers as decimal strings, floats as IEEE
bit patterns in hex, byte arrays as hex, null as null); per file, its
table, codec, row group sizes and per-column encodings from the footer.
The C test (tests/test_parquet.c) compares exactly.
"""
import argparse
import datetime
import decimal
import json
import os
import random
import struct
import sys

import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 240
ROW_GROUP = 100  # -> row groups of 100, 100, 40


def laion_columns(nullable, rng):
    """The LAION-like table as a dict of (arrow type, python values)."""
    words = ["a", "photo", "of", "the", "cat", "sunset", "over", "mountains", "café",
             "日本語", "🎨", "portrait", "oil", "painting", "ß", "naïve", "—"]
    urls, texts, ws, hs, sims, punsafe, pwm, aes, hashes = [], [], [], [], [], [], [], [], []
    for i in range(ROWS):
        urls.append("https://img%d.example.com/i/%06d/%s.jpg" % (i % 7, rng.randrange(10**6),
                                                                 "x" * (i % 13)))
        if i % 17 == 0:
            texts.append("")
        elif i % 29 == 0:
            texts.append("nul\x00inside " + str(i))
        else:
            texts.append(" ".join(rng.choice(words) for _ in range(1 + i % 11)))
        ws.append(rng.choice([256, 512, 640, 768, 1024, 2048, 4000]) + i % 3)
        hs.append(rng.choice([256, 512, 683, 768, 1024]) + i % 5)
        sims.append(rng.random() * 0.5)
        punsafe.append(rng.random())
        pwm.append(rng.random())
        aes.append(4 + 4 * rng.random())
        hashes.append(rng.randrange(-2**63, 2**63))
    f32_special = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-40, 3.4028234663852886e38,
                   -1.17549435e-38]
    f64_special = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 5e-324, 1e-310,
                   1.7976931348623157e308]
    b, i32, i64, f32, f64, binv, key = [], [], [], [], [], [], []
    for i in range(ROWS):
        b.append(i % 3 == 0 or i % 5 == 1)
        i32.append([-2**31, 2**31 - 1, 0, -1][i % 4] if i < 8 else rng.randrange(-2**31, 2**31))
        i64.append([-2**63, 2**63 - 1, 0, -1][i % 4] if i < 8 else rng.randrange(-2**63, 2**63))
        f32.append(f32_special[i] if i < len(f32_special) else rng.uniform(-1e6, 1e6))
        f64.append(f64_special[i] if i < len(f64_special) else rng.gauss(0, 1e3))
        binv.append(bytes(rng.randrange(256) for _ in range(i % 9)) + b"\x00\xff")
        key.append(["cat", "dog", "bird", "fish", "", "émoji🙂"][rng.randrange(6)])
    cols = {
        "URL": (pa.string(), urls),
        "TEXT": (pa.string(), texts),
        "WIDTH": (pa.int64(), ws),
        "HEIGHT": (pa.int64(), hs),
        "similarity": (pa.float64(), sims),
        "punsafe": (pa.float32(), punsafe),
        "pwatermark": (pa.float32(), pwm),
        "AESTHETIC_SCORE": (pa.float32(), aes),
        "hash": (pa.int64(), hashes),
        "b": (pa.bool_(), b),
        "i32": (pa.int32(), i32),
        "i64": (pa.int64(), i64),
        "f32": (pa.float32(), f32),
        "f64": (pa.float64(), f64),
        "bin": (pa.binary(), binv),
        "key": (pa.string(), key),
    }
    if nullable:
        for c, (name, (t, vals)) in enumerate(cols.items()):
            # a different pattern per column, ~1/6 nulls, and a run of nulls
            cols[name] = (t, [None if ((i * 7 + c * 3) % 6 == 0 or 50 <= i < 60 + c) else v
                              for i, v in enumerate(vals)])
    return cols


def make_table(cols, nullable):
    fields = [pa.field(n, t, nullable=nullable) for n, (t, _) in cols.items()]
    return pa.table({n: pa.array(v, type=t) for n, (t, v) in cols.items()},
                    schema=pa.schema(fields))


def hexbytes(v):
    return v.hex()


def physical_values(arr, pq_col):
    """pyarrow's read-back of one column, in the physical form the C reader
    returns: ints as decimal strings, floats as IEEE bits, bytes as hex."""
    t = arr.type
    phys = pq_col.physical_type
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_float32(t):
        return ["%08x" % v if v is not None else None for v in arr.view(pa.uint32()).to_pylist()]
    if pa.types.is_float64(t):
        return ["%016x" % v if v is not None else None for v in arr.view(pa.uint64()).to_pylist()]
    if pa.types.is_boolean(t):
        return arr.to_pylist()
    if phys in ("INT32", "INT64"):
        bits = 32 if phys == "INT32" else 64
        if pa.types.is_date32(t):
            vals = arr.cast(pa.int32()).to_pylist()
        elif pa.types.is_timestamp(t) or pa.types.is_time(t):
            vals = arr.cast(pa.int64()).to_pylist()
        elif pa.types.is_null(t):
            vals = [None] * len(arr)
        else:
            vals = arr.to_pylist()
        out = []
        for v in vals:
            if v is None:
                out.append(None)
            else:
                v = int(v)
                if v >= 2**(bits - 1):  # unsigned stored as the signed bit pattern
                    v -= 2**bits
                out.append(str(v))
        return out
    if phys == "FIXED_LEN_BYTE_ARRAY" and pa.types.is_decimal(t):
        n = pq_col.length
        out = []
        for v in arr.to_pylist():
            if v is None:
                out.append(None)
            else:
                unscaled = int(v.scaleb(t.scale))
                out.append(unscaled.to_bytes(n, "big", signed=True).hex())
        return out
    if phys == "INT96":
        out = []
        for v in arr.cast(pa.int64()).to_pylist():  # nanoseconds since the epoch
            if v is None:
                out.append(None)
            else:
                days, nanos = divmod(v, 86400 * 10**9)
                out.append((struct.pack("<q", nanos) + struct.pack("<i", days + 2440588)).hex())
        return out
    if phys in ("BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"):
        out = []
        for v in arr.to_pylist():
            if v is None:
                out.append(None)
            elif isinstance(v, str):
                out.append(v.encode("utf-8").hex())
            else:
                out.append(bytes(v).hex())
        return out
    raise SystemExit("unhandled type %s (%s)" % (t, phys))


def logical_name(pq_col):
    lt = pq_col.logical_type.type
    return {"NONE": "none", "STRING": "STRING", "INT": "INTEGER", "DATE": "DATE",
            "TIMESTAMP": "TIMESTAMP", "DECIMAL": "DECIMAL", "TIME": "TIME",
            "UNKNOWN": "NULL", "JSON": "JSON", "UUID": "UUID", "ENUM": "ENUM"}.get(lt, lt)


def describe_table(path):
    """What pyarrow reads back from path, as the JSON the C test compares."""
    pf = pq.ParquetFile(path)
    table = pf.read()
    schema = pf.schema
    cols = []
    for i in range(len(schema)):
        c = schema.column(i)
        entry = {"name": c.path, "physical": c.physical_type, "logical": logical_name(c),
                 "nullable": c.max_definition_level > 0,
                 "max_def": c.max_definition_level, "max_rep": c.max_repetition_level,
                 "type_length": c.length if c.physical_type == "FIXED_LEN_BYTE_ARRAY" else 0}
        if c.max_repetition_level == 0:
            parts = c.path.split(".")
            arr = table.column(parts[0])
            for p in parts[1:]:  # a leaf in a struct: the struct's nulls are the leaf's too
                arr = pa.chunked_array([pa.compute.struct_field(ch, p) for ch in arr.chunks],
                                       type=arr.type.field(p).type)
            entry["values"] = physical_values(arr, c)
        cols.append(entry)
    return {"num_rows": pf.metadata.num_rows, "columns": cols}


def file_entry(path, table_name, **extra):
    md = pq.ParquetFile(path).metadata
    rgs = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
    encs = {}
    codec = None
    if md.num_row_groups:
        rg = md.row_group(0)
        for c in range(rg.num_columns):
            cc = rg.column(c)
            encs[cc.path_in_schema] = list(cc.encodings)
            # pyarrow names parquet's LZ4_RAW (codec 7) "LZ4" and the
            # Hadoop-framed LZ4 (codec 5) "LZ4_HADOOP"; use parquet's names
            codec = {"LZ4": "LZ4_RAW", "LZ4_HADOOP": "LZ4"}.get(cc.compression, cc.compression)
    e = {"file": os.path.basename(path), "table": table_name, "row_groups": rgs,
         "codec": codec, "encodings": encs}
    e.update(extra)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/parquet")
    ap.add_argument("--seeds", default="tests/fuzz/seeds/parquet")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.seeds, exist_ok=True)
    for f in os.listdir(args.out):
        if f.endswith(".parquet"):
            os.remove(os.path.join(args.out, f))
    tables, files = {}, []

    def record(path, table_name, **extra):
        got = describe_table(path)
        if table_name in tables:
            # every file of one table must read back identically in pyarrow
            if tables[table_name] != got:
                raise SystemExit("%s reads back differently from its table" % path)
        else:
            tables[table_name] = got
        files.append(file_entry(path, table_name, **extra))

    # -- the matrix --------------------------------------------------------------------
    for nullable in (True, False):
        tname = "laion_nullable" if nullable else "laion_required"
        table = make_table(laion_columns(nullable, random.Random(1234)), nullable)
        for codec in ("none", "snappy", "gzip", "zstd"):
            for dictionary in (True, False):
                for version in ("1.0", "2.0"):
                    name = "laion_%s_%s_v%s_%s.parquet" % (
                        codec, "dict" if dictionary else "plain", version[0],
                        "nullable" if nullable else "required")
                    path = os.path.join(args.out, name)
                    pq.write_table(table, path, row_group_size=ROW_GROUP, compression=codec,
                                   use_dictionary=dictionary, data_page_version=version,
                                   data_page_size=512, write_batch_size=16)
                    record(path, tname, codec_arg=codec, dictionary=dictionary,
                           page_version=version, multi_page=True)

    # -- dictionary falling back to PLAIN mid-chunk -------------------------------------
    table = make_table(laion_columns(True, random.Random(1234)), True)
    path = os.path.join(args.out, "fallback_snappy_v1.parquet")
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression="snappy",
                   use_dictionary=True, dictionary_pagesize_limit=200, data_page_size=512,
                   write_batch_size=16)
    record(path, "laion_nullable", fallback=True)

    # -- DELTA_* and BYTE_STREAM_SPLIT ---------------------------------------------------
    enc = {"URL": "DELTA_LENGTH_BYTE_ARRAY", "TEXT": "DELTA_BYTE_ARRAY",
           "key": "DELTA_BYTE_ARRAY", "bin": "DELTA_LENGTH_BYTE_ARRAY",
           "WIDTH": "DELTA_BINARY_PACKED", "HEIGHT": "DELTA_BINARY_PACKED",
           "hash": "DELTA_BINARY_PACKED", "i32": "DELTA_BINARY_PACKED",
           "i64": "DELTA_BINARY_PACKED", "f32": "BYTE_STREAM_SPLIT", "f64": "BYTE_STREAM_SPLIT",
           "similarity": "BYTE_STREAM_SPLIT", "punsafe": "BYTE_STREAM_SPLIT",
           "pwatermark": "PLAIN", "AESTHETIC_SCORE": "BYTE_STREAM_SPLIT", "b": "PLAIN"}
    for nullable in (True, False):
        table = make_table(laion_columns(nullable, random.Random(1234)), nullable)
        for version in ("1.0", "2.0"):
            path = os.path.join(args.out, "delta_zstd_v%s_%s.parquet" % (
                version[0], "nullable" if nullable else "required"))
            pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd",
                           use_dictionary=False, column_encoding=enc, data_page_version=version,
                           data_page_size=512, write_batch_size=16)
            record(path, "laion_nullable" if nullable else "laion_required", delta=True)

    # -- LZ4_RAW -------------------------------------------------------------------------
    table = make_table(laion_columns(True, random.Random(1234)), True)
    path = os.path.join(args.out, "lz4_v2.parquet")
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression="lz4",
                   data_page_version="2.0", data_page_size=512, write_batch_size=16)
    record(path, "laion_nullable")

    # -- checksums, page index, bloom filters, statistics --------------------------------
    path = os.path.join(args.out, "extras_snappy.parquet")
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression="snappy",
                   write_page_checksum=True, write_page_index=True,
                   bloom_filter_options={"URL": {"ndv": 300}, "WIDTH": True},
                   data_page_size=512, write_batch_size=16)
    record(path, "laion_nullable")

    # -- logical types, nesting, lists ---------------------------------------------------
    rng = random.Random(99)
    n = 50
    utc = datetime.timezone.utc
    ts = [datetime.datetime(2001, 1, 1, tzinfo=utc) + datetime.timedelta(
        seconds=rng.randrange(10**9), microseconds=rng.randrange(10**6)) for _ in range(n)]
    logical = pa.table({
        "i8": pa.array([rng.randrange(-128, 128) if i % 5 else None for i in range(n)], pa.int8()),
        "i16": pa.array([rng.randrange(-2**15, 2**15) for _ in range(n)], pa.int16()),
        "u32": pa.array([rng.randrange(0, 2**32) for _ in range(n)], pa.uint32()),
        "u64": pa.array([rng.randrange(0, 2**64) for _ in range(n)], pa.uint64()),
        "date": pa.array([datetime.date(1970, 1, 1) + datetime.timedelta(days=rng.randrange(-9999, 40000))
                          for _ in range(n)], pa.date32()),
        "ts_ms": pa.array([t.replace(microsecond=t.microsecond // 1000 * 1000) for t in ts],
                          pa.timestamp("ms")),
        "ts_us_utc": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "dec": pa.array([decimal.Decimal(rng.randrange(-10**9, 10**9)).scaleb(-2) if i % 4 else None
                         for i in range(n)], pa.decimal128(10, 2)),
        "fixed": pa.array([bytes(rng.randrange(256) for _ in range(4)) for _ in range(n)],
                          pa.binary(4)),
        "s": pa.array([None if i % 6 == 0 else {"a": i if i % 4 else None, "b": "v%d" % i}
                       for i in range(n)],
                      pa.struct([("a", pa.int32()), ("b", pa.string())])),
        "lst": pa.array([[i, i + 1][: i % 3] if i % 7 else None for i in range(n)],
                        pa.list_(pa.int64())),
        "after_list": pa.array(["after %d" % i for i in range(n)], pa.string()),
        "allnull": pa.array([None] * n, pa.null()),
        "nullstr": pa.array([None] * n, pa.string()),
    })
    for dictionary in (True, False):
        path = os.path.join(args.out, "logical_%s.parquet" % ("dict" if dictionary else "plain"))
        pq.write_table(logical, path, compression="snappy", use_dictionary=dictionary,
                       row_group_size=20, store_schema=True)
        record(path, "logical")
    path = os.path.join(args.out, "int96.parquet")
    pq.write_table(pa.table({"ts": pa.array(ts[:20], pa.timestamp("ns"))}), path,
                   use_deprecated_int96_timestamps=True, compression="none")
    record(path, "int96")

    # -- no rows --------------------------------------------------------------------------
    empty = make_table({k: (t, []) for k, (t, v) in laion_columns(False, random.Random(1)).items()},
                       True)
    path = os.path.join(args.out, "empty.parquet")
    pq.write_table(empty, path)
    record(path, "empty")

    # -- pandas with an index -------------------------------------------------------------
    import pandas as pd
    df = pd.DataFrame({"URL": ["https://e.com/%d.png" % i for i in range(30)],
                       "similarity": [i / 64 for i in range(30)]},
                      index=[100 + 3 * i for i in range(30)])
    path = os.path.join(args.out, "pandas_index.parquet")
    df.to_parquet(path, engine="pyarrow")
    record(path, "pandas_index")

    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump({"generator": "tools/gen_parquet_fixtures.py",
                   "pyarrow": pa.__version__, "tables": tables, "files": files}, f,
                  indent=0, sort_keys=True, ensure_ascii=True)
        f.write("\n")

    # -- fuzz seeds: small valid files of each kind ----------------------------------------
    small = make_table({k: (t, v[:24]) for k, (t, v) in
                        laion_columns(True, random.Random(5)).items()}, True)
    for codec in ("none", "snappy", "gzip", "zstd", "lz4"):
        for version in ("1.0", "2.0"):
            pq.write_table(small, os.path.join(args.seeds, "%s_v%s.parquet" % (codec, version[0])),
                           row_group_size=10, compression=codec, data_page_version=version,
                           data_page_size=128, write_batch_size=8)
    pq.write_table(small, os.path.join(args.seeds, "delta.parquet"), use_dictionary=False,
                   column_encoding=enc, compression="none", data_page_version="2.0",
                   row_group_size=12)
    pq.write_table(logical.slice(0, 12), os.path.join(args.seeds, "logical.parquet"),
                   compression="none")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print("wrote %d files, %d bytes, to %s" % (len(files) + 1, total, args.out))


if __name__ == "__main__":
    sys.exit(main())
