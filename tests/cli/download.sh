#!/usr/bin/env bash
# `sdw pipeline download` against a real HTTP server on 127.0.0.1
# (tools/http_test_server.py) started here:
#  1. the case matrix: images (JPEG, PNG, WebP, gray, alpha, EXIF), slow and
#     stalled responses, redirects within and beyond the limit, 403/404/429/500,
#     retries, huge bodies (Content-Length and chunked), HTML, truncated JPEG,
#     a PNG bomb, X-Robots-Tag opt-outs (img2dataset's rule), refused
#     connections, non-http URLs, a null URL; every image byte-identical to
#     img2dataset's own Resizer, every member and file in img2dataset's
#     layout, read back with tarfile, webdataset and pyarrow
#     (tests/cli/download_cases.py);
#  2. kill -9 after some shards, then a rerun: the same shards as a clean run
#     (byte for byte: SOURCE_DATE_EPOCH fixes the tar mtimes);
#  3. a second process for the same node is refused; SIGINT: exit 130,
#     manifest "interrupted", a rerun finishes the same;
#  4. two nodes (--node-rank 0/1 of 2) together write the clean run's shards.
# Creates .venv-test/ (webdataset, pyarrow, img2dataset from PyPI) when
# missing; FAILS when it cannot.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")

venv=.venv-test
if ! "$venv/bin/python" -c 'import webdataset, pyarrow, img2dataset, cv2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q webdataset pyarrow img2dataset==1.47.0
fi
PY="$PWD/$venv/bin/python"
export NO_ALBUMENTATIONS_UPDATE=1 # no version check over the network
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost # all traffic stays on loopback
CASES="$PWD/tests/cli/download_cases.py"

tmp=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/www"
python3 tools/http_test_server.py --root "$tmp/www" --port-file "$tmp/port" &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port")
"$PY" "$CASES" make "$tmp" "$port"

export SOURCE_DATE_EPOCH=1700000000

# --- 1. the matrix --------------------------------------------------------------------
"$SDW" pipeline download --data "$tmp/m" --input "$tmp/matrix.parquet" --image-size 256 \
  --number-sample-per-shard 10 --timeout 2 --retries 1 --max-redirects 3 --max-bytes 2000000 \
  --concurrency 16 2>"$tmp/m.log" || { cat "$tmp/m.log"; exit 1; }
server_stats() { # the server's request counts (the harness's own user agent is left out)
  python3 -c 'import sys, urllib.request
r = urllib.request.Request(sys.argv[1], headers={"User-Agent": "test-harness"})
sys.stdout.write(urllib.request.urlopen(r, timeout=10).read().decode())' "http://127.0.0.1:$port/stats"
}
server_stats >"$tmp/stats.json"
"$PY" "$CASES" check "$tmp" "$tmp/m/shards" "$tmp/m/manifests/download.json" "$tmp/stats.json"
"$SDW" pipeline status "$tmp/m" | grep >/dev/null '^download  *done'

# a second run finds every shard done and downloads nothing
requests() { # what the server saw, less the harness's own /stats calls
  server_stats | python3 -c 'import json, sys
d = json.load(sys.stdin); d["hits"].pop("/stats", None); d["agents"].pop("test-harness", None)
print(json.dumps(d, sort_keys=True))'
}
before=$(requests)
"$SDW" pipeline download --data "$tmp/m" --input "$tmp/matrix.parquet" --image-size 256 \
  --number-sample-per-shard 10 2>"$tmp/m2.log"
grep -q '4 shards done already, 0 to do' "$tmp/m2.log"
after=$(requests)
[ "$before" = "$after" ] || { echo "an incremental rerun made requests"; exit 1; }

# --- 2. kill -9 and resume ----------------------------------------------------------------
args=(--input "$tmp/resume.parquet" --number-sample-per-shard 20 --image-size 128
      --concurrency 4 --timeout 5)
"$SDW" pipeline download --data "$tmp/clean" "${args[@]}" 2>/dev/null

"$SDW" pipeline download --data "$tmp/k" "${args[@]}" 2>/dev/null &
pid=$!
at=$((2 + RANDOM % 3)) # kill after 2, 3 or 4 shards
for _ in $(seq 500); do
  [ "$(ls "$tmp/k/shards" 2>/dev/null | grep -c '_stats.json$')" -ge "$at" ] && break
  sleep 0.01
done
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
done_before=$(ls "$tmp/k/shards" | grep -c '_stats.json$')
[ "$done_before" -ge 2 ] && [ "$done_before" -lt 9 ] \
  || { echo "kill -9 came after $done_before of 9 shards"; exit 1; }
"$PY" "$CASES" readable "$tmp/k/shards" # no partial file under a final name
"$SDW" pipeline download --data "$tmp/k" "${args[@]}" 2>"$tmp/k.log"
grep -q "$done_before shards done already" "$tmp/k.log"
if ls -a "$tmp/k/shards" | grep -q '\.tmp\.'; then
  echo "temporary files left behind:"; ls -a "$tmp/k/shards"; exit 1
fi
"$PY" "$CASES" same "$tmp/clean/shards" "$tmp/k/shards"
echo "kill -9 after $done_before of 9 shards, then a rerun: same as a clean run"

# --- 3. SIGINT ----------------------------------------------------------------------------
"$SDW" pipeline download --data "$tmp/i" "${args[@]}" 2>/dev/null &
pid=$!
for _ in $(seq 400); do
  [ "$(ls "$tmp/i/shards" 2>/dev/null | grep -c '_stats.json$')" -ge 2 ] && break
  sleep 0.02
done
# a second process for the same node and directory is refused
rc=0
"$SDW" pipeline download --data "$tmp/i" "${args[@]}" 2>"$tmp/i2.log" || rc=$?
[ "$rc" = 1 ] && grep -q 'another sdw pipeline download' "$tmp/i2.log" \
  || { echo "a concurrent run was not refused (exit $rc)"; cat "$tmp/i2.log"; exit 1; }
kill -INT "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { echo "SIGINT: exit $rc, expected 130"; exit 1; }
grep -q '"state":[[:space:]]*"interrupted"' "$tmp/i/manifests/download.json"
"$SDW" pipeline download --data "$tmp/i" "${args[@]}" 2>/dev/null
"$PY" "$CASES" same "$tmp/clean/shards" "$tmp/i/shards"

# --- 4. two nodes ---------------------------------------------------------------------------
"$SDW" pipeline download --data "$tmp/n" --node-rank 0 --num-nodes 2 "${args[@]}" 2>/dev/null
[ "$(ls "$tmp/n/shards" | grep -c '_stats.json$')" = 5 ]
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 \
  "$SDW" pipeline download --data "$tmp/n" "${args[@]}" 2>/dev/null
test -s "$tmp/n/manifests/download.0.json" && test -s "$tmp/n/manifests/download.1.json"
"$PY" "$CASES" same "$tmp/clean/shards" "$tmp/n/shards"
echo "download: matrix, kill -9 / SIGINT resume and two nodes OK"
