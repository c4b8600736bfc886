#!/usr/bin/env bash
# `sdw pipeline preprocess` and `sdw pipeline build` on shards with known
# content (tools/gen_test_shards.py: Python's tarfile + a zlib/struct PNG
# writer; every sample kind of the seed's rules: undecodable, too small, flat,
# dark, bright images, empty/short/oversize captions, missing members,
# captions from .txt and from .json). The expected verdicts come from the
# generator, never from sdw. Checks:
#  - the manifest's in/out/failed counts and per-reason histogram;
#  - the token cache read by pyarrow: image_key "<shard>::<key>" and the
#    stripped caption of every kept sample in (shard, key) order, the image
#    member's offset/size (compared with Python's tarfile), input_ids and
#    attention_mask (308-byte little-endian int32) equal to `sdw tokenize
#    --mask` of the caption (the tokenizer itself is tested against
#    transformers' goldens in tests/cli/tokenize.sh);
#  - build: split sizes min(val_size, n/10) / rest, train+val = every kept
#    sample exactly once, dataset_config.json, pyarrow reads both files;
#  - determinism: a second clean run (other --workers) gives identical files;
#  - kill -9 of preprocess (--workers 1, 40 shards) after its first output,
#    then a rerun: identical token cache and dataset to the clean run;
#  - SIGINT: exit 130, state interrupted, a rerun completes the same cache;
#  - a corrupt shard counts as bad_shard and gets no output; usage errors.
# Creates .venv-test/ (pyarrow) when missing; FAILS when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")

venv=.venv-test
if ! "$venv/bin/python" -c 'import pyarrow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyarrow
fi
PY="$PWD/$venv/bin/python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}

# --- 1. every kind, three shards --------------------------------------------------
python3 tools/gen_test_shards.py --out "$tmp/a" --shards 3
"$SDW" pipeline preprocess --data "$tmp/a" --workers 2 || fail "preprocess exit $?"
"$SDW" pipeline build --data "$tmp/a" --val-size 1000 || fail "build exit $?"

# the captions kept, one JSON string per line, for `sdw tokenize --jsonl`
"$PY" -c '
import json, sys
for k, c in json.load(open(sys.argv[1]))["kept"]: print(json.dumps(c))
' "$tmp/a/expected.json" >"$tmp/a/captions.jsonl"
"$SDW" tokenize --mask --jsonl <"$tmp/a/captions.jsonl" >"$tmp/a/tokens.txt"

check_cache() { # DIR
  "$PY" - "$1" <<'EOF'
import glob, json, os, struct, sys, tarfile
import pyarrow.parquet as pq
d = sys.argv[1]
exp = json.load(open(os.path.join(d, "expected.json")))
def fail(msg): sys.exit("FAIL cache %s: %s" % (d, msg))
m = json.load(open(os.path.join(d, "manifests", "preprocess.json")))
if m["state"] != "done": fail("state %s" % m["state"])
c = m["counts"]
nkept = len(exp["kept"])
want = {"in": exp["in"], "out": nkept, "failed": sum(exp["reasons"].values()), "skipped": 0}
for k, v in want.items():
    if c[k] != v: fail("counts.%s = %s, expected %s" % (k, c[k], v))
if m["failures"] != exp["reasons"]: fail("failures %s != %s" % (m["failures"], exp["reasons"]))
rows = []
for f in sorted(glob.glob(os.path.join(d, "tokens", "*.parquet"))):
    t = pq.read_table(f)
    names = ["image_key", "caption", "input_ids", "attention_mask", "shard", "image_offset",
             "image_size"]
    if t.schema.names != names: fail("schema %s" % t.schema.names)
    if pq.ParquetFile(f).schema_arrow.metadata[b"sdw.tokenizer"] != b"hf": fail("tokenizer meta")
    rows += t.to_pylist()
if [[r["image_key"], r["caption"]] for r in rows] != exp["kept"]:
    fail("kept keys/captions differ")
# image member offset/size against Python's tarfile
tars = {}
for r in rows:
    if r["shard"] not in tars:
        with tarfile.open(os.path.join(d, "shards", r["shard"])) as tf:
            tars[r["shard"]] = {mi.name: (mi.offset_data, mi.size) for mi in tf.getmembers()}
    key = r["image_key"].split("::", 1)[1]
    if tars[r["shard"]][key + ".jpg"] != (r["image_offset"], r["image_size"]):
        fail("%s: offset/size %s != %s" % (r["image_key"], (r["image_offset"], r["image_size"]),
                                           tars[r["shard"]][key + ".jpg"]))
# token ids and mask against `sdw tokenize --mask`
lines = open(os.path.join(d, "tokens.txt")).read().splitlines() if os.path.exists(
    os.path.join(d, "tokens.txt")) else None
if lines is not None:
    if len(lines) != len(rows): fail("%d tokenize lines for %d rows" % (len(lines), len(rows)))
    for r, line in zip(rows, lines):
        ids, mask = line.split("\t")
        if len(r["input_ids"]) != 308 or len(r["attention_mask"]) != 308: fail("not 308 bytes")
        if list(struct.unpack("<77i", r["input_ids"])) != [int(x) for x in ids.split()]:
            fail("%s: input_ids differ from sdw tokenize" % r["image_key"])
        if list(struct.unpack("<77i", r["attention_mask"])) != [int(x) for x in mask.split()]:
            fail("%s: attention_mask differs from sdw tokenize" % r["image_key"])
print("ok cache %s: %d of %d kept" % (d, len(rows), exp["in"]))
EOF
}

check_dataset() { # DIR VAL_SIZE SEED
  "$PY" - "$1" "$2" "$3" <<'EOF'
import json, os, sys
import pyarrow.parquet as pq
d, val_size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def fail(msg): sys.exit("FAIL dataset %s: %s" % (d, msg))
exp = json.load(open(os.path.join(d, "expected.json")))
n = len(exp["kept"])
nval = min(val_size, n // 10)
tr = pq.read_table(os.path.join(d, "dataset", "train.parquet")).to_pylist()
va = pq.read_table(os.path.join(d, "dataset", "val.parquet")).to_pylist()
if len(va) != nval or len(tr) != n - nval: fail("sizes %d/%d, expected %d/%d" % (len(tr), len(va), n - nval, nval))
keys = sorted(r["image_key"] for r in tr + va)
if keys != sorted(k for k, _ in exp["kept"]): fail("train+val is not the kept set exactly once")
cap = dict((k, c) for k, c in exp["kept"])
if any(cap[r["image_key"]] != r["caption"] for r in tr + va): fail("captions moved between rows")
order = [r["image_key"] for r in va + tr]
if n > 3 and order == [k for k, _ in exp["kept"]]: fail("not shuffled")
cfg = json.load(open(os.path.join(d, "dataset", "dataset_config.json")))
for k, v in {"train_size": n - nval, "val_size": nval, "val_size_requested": val_size,
             "seed": seed, "tokenizer": "hf", "mode": "standard"}.items():
    if cfg.get(k) != v: fail("config %s = %s, expected %s" % (k, cfg.get(k), v))
if sum(s["rows"] for s in cfg["sources"]) != n: fail("config sources rows")
print("ok dataset %s: train %d, val %d" % (d, len(tr), len(va)))
EOF
}

check_cache "$tmp/a"
check_dataset "$tmp/a" 1000 42

# rerun of preprocess: every shard skipped, nothing rewritten
before=$(cat "$tmp"/a/tokens/*.parquet | md5sum)
"$SDW" pipeline preprocess --data "$tmp/a" --workers 2
[ "$(cat "$tmp"/a/tokens/*.parquet | md5sum)" = "$before" ] || fail "rerun changed the cache"
"$PY" -c '
import json, sys
m = json.load(open(sys.argv[1]))
n = len(json.load(open(sys.argv[2]))["kept"])
assert m["counts"]["skipped"] == n and m["counts"]["in"] == 0, m["counts"]
' "$tmp/a/manifests/preprocess.json" "$tmp/a/expected.json" ||
  fail "rerun manifest counts"

# --- 2. many shards: determinism, other --val-size/--seed, kill -9 and resume ------
python3 tools/gen_test_shards.py --out "$tmp/clean" --shards 40 --per-shard 5
cp -r "$tmp/clean" "$tmp/killed"
cp -r "$tmp/clean" "$tmp/w3"
"$SDW" pipeline preprocess --data "$tmp/clean" --workers 1
"$SDW" pipeline preprocess --data "$tmp/w3" --workers 3
for v in clean w3; do "$SDW" pipeline build --data "$tmp/$v" --val-size 4 --seed 7; done
check_cache "$tmp/clean"
check_dataset "$tmp/clean" 4 7
for f in tokens/00000.parquet tokens/00039.parquet dataset/train.parquet dataset/val.parquet \
  dataset/dataset_config.json; do
  cmp "$tmp/clean/$f" "$tmp/w3/$f" || fail "$f differs between --workers 1 and 3"
done
cp "$tmp/clean/dataset/val.parquet" "$tmp/val7"
"$SDW" pipeline build --data "$tmp/clean" --val-size 4 --seed 8
check_dataset "$tmp/clean" 4 8
if cmp -s "$tmp/val7" "$tmp/clean/dataset/val.parquet"; then fail "seed 8 gives seed 7's split"; fi
"$SDW" pipeline build --data "$tmp/clean" --val-size 4 --seed 7
cmp "$tmp/val7" "$tmp/clean/dataset/val.parquet" || fail "build is not deterministic"

"$SDW" pipeline preprocess --data "$tmp/killed" --workers 1 &
pid=$!
for _ in $(seq 1 2000); do
  compgen -G "$tmp/killed/tokens/*.parquet" >/dev/null && break
  sleep 0.005
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
ndone=$(ls "$tmp/killed/tokens" | grep -c '\.parquet$' || true)
echo "killed after $ndone of 40 shards ($(ls -A "$tmp/killed/tokens" | grep -c tmp || true) temporary)"
[ "$ndone" -ge 1 ] || fail "no output before the kill"
"$SDW" pipeline preprocess --data "$tmp/killed" --workers 1
"$SDW" pipeline build --data "$tmp/killed" --val-size 4 --seed 7
[ "$(ls -A "$tmp/killed/tokens")" = "$(ls -A "$tmp/clean/tokens")" ] ||
  fail "resumed file list differs (a temporary left behind?)"
for f in "$tmp"/clean/tokens/*.parquet; do
  cmp "$f" "$tmp/killed/tokens/$(basename "$f")" || fail "resumed $(basename "$f") differs"
done
for f in train.parquet val.parquet dataset_config.json; do
  cmp "$tmp/clean/dataset/$f" "$tmp/killed/dataset/$f" || fail "resumed dataset $f differs"
done

# SIGINT: the shard in progress is finished, state "interrupted", exit 130;
# a rerun completes the same cache
rm -rf "$tmp/killed/tokens" "$tmp/killed/dataset"
"$SDW" pipeline preprocess --data "$tmp/killed" --workers 1 &
pid=$!
for _ in $(seq 1 2000); do
  compgen -G "$tmp/killed/tokens/*.parquet" >/dev/null && break
  sleep 0.005
done
kill -INT "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
if [ "$rc" -eq 130 ]; then
  grep -q '"state":	"interrupted"' "$tmp/killed/manifests/preprocess.json" ||
    fail "SIGINT: state is not interrupted"
else
  [ "$rc" -eq 0 ] || fail "SIGINT: exit $rc"
  echo "note: preprocess finished before SIGINT arrived"
fi
"$SDW" pipeline preprocess --data "$tmp/killed" --workers 1
for f in "$tmp"/clean/tokens/*.parquet; do
  cmp "$f" "$tmp/killed/tokens/$(basename "$f")" || fail "after SIGINT $(basename "$f") differs"
done

# --- 3. a corrupt shard, usage errors ---------------------------------------------
mkdir -p "$tmp/bad/shards"
cp "$tmp/a/shards/00000.tar" "$tmp/bad/shards/"
head -c 3000 "$tmp/a/shards/00001.tar" >"$tmp/bad/shards/00001.tar"
printf 'x%.0s' $(seq 1 600) >>"$tmp/bad/shards/00001.tar"
"$SDW" pipeline preprocess --data "$tmp/bad" 2>"$tmp/bad/err" || fail "corrupt shard stops the run"
[ -f "$tmp/bad/tokens/00000.parquet" ] && [ ! -e "$tmp/bad/tokens/00001.parquet" ] ||
  fail "corrupt shard: outputs"
grep -q '"bad_shard":	1' "$tmp/bad/manifests/preprocess.json" || fail "no bad_shard count"

"$SDW" pipeline preprocess --help | grep >/dev/null -- --workers || fail "preprocess --help"
"$SDW" pipeline build --help | grep >/dev/null -- --val-size || fail "build --help"
set +e
"$SDW" pipeline preprocess --data "$tmp/a" --bogus 1 2>/dev/null
[ $? -eq 2 ] || fail "unknown option: exit 2 expected"
"$SDW" pipeline preprocess 2>/dev/null
[ $? -eq 2 ] || fail "missing --data: exit 2 expected"
"$SDW" pipeline build --data "$tmp/a" --val-size -1 2>/dev/null
[ $? -eq 2 ] || fail "bad --val-size: exit 2 expected"
"$SDW" pipeline build --data "$tmp/nothing" 2>/dev/null
[ $? -eq 1 ] || fail "build without a token cache: exit 1 expected"
set -e
echo "ok preprocess/build"
