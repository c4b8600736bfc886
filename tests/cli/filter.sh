#!/usr/bin/env bash
# `sdw pipeline filter` on parquet files written by pyarrow
# (tools/gen_filter_fixtures.py: four files in the column namings the seed
# normalises, values on both sides of every threshold, repeated URLs within
# and across files, a file without an aesthetic column). The expected rows
# come from the generator's pandas implementation of the seed's rules, never
# from sdw. Checks, for the defaults, every threshold flag changed, --allow-
# nsfw --no-dedup, and --max-samples with two seeds: the manifest's in/out/
# skipped counts and per-filter histogram, and the output read by pyarrow
# (schema, the kept URLs in order, their captions). Then resume (an
# unchanged rerun does nothing; a touched input or a changed option
# recomputes), usage errors (exit 2) and a missing input (exit 1).
# Creates .venv-test/ (pyarrow, pandas) when missing; FAILS when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")

venv=.venv-test
if ! "$venv/bin/python" -c 'import pyarrow, pandas, numpy' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pyarrow pandas numpy
fi
PY="$PWD/$venv/bin/python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tools/gen_filter_fixtures.py --out "$tmp" --rows 300

# check CASE DATA_DIR OUTPUT: manifest and output against expected.json[CASE]
check() {
  "$PY" - "$tmp/expected.json" "$1" "$2/manifests/filter.json" "$3" <<'EOF'
import json, sys
import pyarrow.parquet as pq
exp_all = json.load(open(sys.argv[1]))
exp = exp_all[sys.argv[2]]
m = json.load(open(sys.argv[3]))
def fail(msg):
    sys.exit("FAIL %s: %s" % (sys.argv[2], msg))
if m["state"] != "done": fail("state %s" % m["state"])
if m["total"] != exp_all["total"]: fail("total %s != %s" % (m["total"], exp_all["total"]))
c = m["counts"]
want = {"in": exp["in"], "out": len(exp["kept"]), "skipped": exp["skipped"],
        "failed": sum(exp["reasons"].values())}
for k, v in want.items():
    if c[k] != v: fail("counts.%s = %s, expected %s" % (k, c[k], v))
if m["failures"] != exp["reasons"]: fail("failures %s != %s" % (m["failures"], exp["reasons"]))
got_files = [i["path"].split("/in/", 1)[1] for i in m["inputs"]]
if got_files != exp["files"]: fail("file order %s != %s" % (got_files, exp["files"]))
t = pq.read_table(sys.argv[4])
if t.schema.names != ["URL", "TEXT", "aesthetic_score", "similarity"]: fail("schema %s" % t.schema)
if t.column("URL").to_pylist() != exp["kept"]: fail("kept URLs differ")
if t.column("TEXT").to_pylist() != exp["text"]: fail("captions differ")
print("ok %s: %d of %d rows kept" % (sys.argv[2], t.num_rows, exp_all["total"]))
EOF
}

run() { # DATA_DIR args...
  local d=$1
  shift
  "$SDW" pipeline filter --data "$d" --input "$tmp/in" "$@" 2>"$tmp/log" || {
    cat "$tmp/log"
    exit 1
  }
}

run "$tmp/d1"
grep -q 'd.parquet: no aesthetic_score column: file skipped' "$tmp/log"
check default "$tmp/d1" "$tmp/d1/filtered/filtered.parquet"
"$SDW" pipeline status "$tmp/d1" | grep >/dev/null '^filter  *done'

run "$tmp/d2" --output "$tmp/loose.parquet" --min-aesthetic 6.2 --min-similarity 0.26 \
  --min-width 500 --min-height 600 --min-aspect 0.8 --max-aspect 1.5 --min-caption 10 \
  --max-caption 200 --max-watermark 0.6 --max-punsafe 0.3
check loose "$tmp/d2" "$tmp/loose.parquet"

run "$tmp/d3" --output "$tmp/free.parquet" --allow-nsfw --no-dedup
check free "$tmp/d3" "$tmp/free.parquet"

run "$tmp/d4" --output "$tmp/m37.parquet" --max-samples 37
check max37 "$tmp/d4" "$tmp/m37.parquet"
run "$tmp/d5" --output "$tmp/m37s7.parquet" --max-samples 37 --seed 7
check max37seed7 "$tmp/d5" "$tmp/m37s7.parquet"

# --- resume -------------------------------------------------------------------------
out="$tmp/d1/filtered/filtered.parquet"
before=$(stat -c %Y.%i "$out")
sleep 1.1
run "$tmp/d1"
grep -q 'up to date' "$tmp/log"
[ "$(stat -c %Y.%i "$out")" = "$before" ] || { echo "FAIL: an up-to-date output was rewritten"; exit 1; }
touch "$tmp/in/a.parquet"
run "$tmp/d1"
! grep -q 'up to date' "$tmp/log" || { echo "FAIL: a touched input did not recompute"; exit 1; }
check default "$tmp/d1" "$out"
run "$tmp/d1" --no-dedup --allow-nsfw
! grep -q 'up to date' "$tmp/log" || { echo "FAIL: changed options did not recompute"; exit 1; }
check free "$tmp/d1" "$out"
rm "$out"
run "$tmp/d1"
check default "$tmp/d1" "$out"

# --- errors ---------------------------------------------------------------------------
set +e
"$SDW" pipeline filter --data "$tmp/e" --input "$tmp/in" --min-width abc 2>/dev/null
[ $? -eq 2 ] || { echo "FAIL: a bad value is not a usage error"; exit 1; }
"$SDW" pipeline filter --data "$tmp/e" 2>/dev/null
[ $? -eq 2 ] || { echo "FAIL: a missing --input is not a usage error"; exit 1; }
"$SDW" pipeline filter --data "$tmp/e" --input "$tmp/nope.parquet" 2>"$tmp/err"
[ $? -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] || { echo "FAIL: missing input"; cat "$tmp/err"; exit 1; }
"$SDW" pipeline filter --help | grep >/dev/null -- '--max-samples'
echo "filter: ok"
