#!/usr/bin/env bash
# The whole data chain, issue 6's "done when": LAION-style metadata pointing
# at images on a loopback HTTP server (tools/gen_chain_fixtures.py,
# tools/http_test_server.py) -> filter -> download -> preprocess -> build ->
# encode (vae-tiny golden bundle, 64 px) into a latent store; then again
# from scratch with kill -9 at random points of every stage (each stage is
# started three times and killed at a uniformly random moment of the first
# 70% of its uninterrupted duration, then run until it finishes). The final outputs must be
# byte-identical: the filtered parquet, every shard tar, the dataset parquet
# files and dataset_config.json, every latent chunk and index.json (sha256).
# Also: the latent store matches the dataset rows (keys, captions, tokens)
# and the manifests of every stage say done.
#
# 300 images by default (about a minute on a loaded 2-core machine);
# SDW_LONG_TESTS=1 runs 2000.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=$PWD/.venv-test/bin/python
V=$PWD/tests/data/goldens/vae-tiny
SDW=$(realpath "$SDW")
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
export SOURCE_DATE_EPOCH=1700000000
export OMP_NUM_THREADS=1 # the same VAE sums in every run
N=300
[ "${SDW_LONG_TESTS:-0}" = 1 ] && N=2000

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
$P tools/gen_chain_fixtures.py --www "$tmp/www" --meta "$tmp/meta.parquet" --port "$port" \
  --count $N

# stage NAME DIR: the stage's command line
stage_args() {
  case $1 in
    filter) echo "pipeline filter --data $2 --input $tmp/meta.parquet" ;;
    download) echo "pipeline download --data $2 --input $2/filtered/filtered.parquet \
      --image-size 64 --number-sample-per-shard 40 --concurrency 8 --timeout 5 --retries 1" ;;
    preprocess) echo "pipeline preprocess --data $2 --min-size 0 --image-size 64 --workers 2" ;;
    build) echo "pipeline build --data $2 --val-size 20" ;;
    encode) echo "pipeline encode --data $2 --vae $V --image-size 64 --chunk-size 16 --batch 4" ;;
  esac
}
STAGES="filter download preprocess build encode"
now_ms() { date +%s%3N; }

# --- run A: uninterrupted, timing each stage ---------------------------------------------
A=$tmp/a
declare -A dur
for s in $STAGES; do
  t0=$(now_ms)
  # shellcheck disable=SC2046
  "$SDW" $(stage_args $s "$A") >/dev/null 2>"$tmp/err" || {
    cat "$tmp/err"
    exit 1
  }
  dur[$s]=$(($(now_ms) - t0))
done
echo "uninterrupted run (ms): filter ${dur[filter]} download ${dur[download]}" \
  "preprocess ${dur[preprocess]} build ${dur[build]} encode ${dur[encode]}"

# --- run B: kill -9 at random moments of every stage --------------------------------------
B=$tmp/b
kills=0 killed=
for s in $STAGES; do
  for k in 1 2 3; do
    # shellcheck disable=SC2046
    "$SDW" $(stage_args $s "$B") >/dev/null 2>&1 &
    pid=$!
    ms=$((RANDOM % (dur[$s] * 7 / 10 + 1))) # (a rerun has less left to do)
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 $pid 2>/dev/null || true
    rc=0
    wait $pid 2>/dev/null || rc=$?
    # 137: it died of the SIGKILL (not finished before it came)
    if [ $rc -eq 137 ]; then kills=$((kills + 1)) && killed="$killed $s"; fi
  done
  # shellcheck disable=SC2046
  "$SDW" $(stage_args $s "$B") >/dev/null 2>"$tmp/err" || {
    cat "$tmp/err"
    exit 1
  }
done
echo "run with kill -9: $kills processes killed mid-run:$killed"
[ "$kills" -ge 1 ]

# --- identical outputs -----------------------------------------------------------------------
sums() {
  (cd "$1" && find filtered shards dataset latents -type f \
    \( -name '*.tar' -o -name '*.parquet' -o -name 'dataset_config.json' -o -name 'chunk-*' \
    -o -name 'index.json' \) ! -path 'shards/*.parquet' | sort | xargs sha256sum)
}
sums "$A" >"$tmp/a.sums"
sums "$B" >"$tmp/b.sums"
if ! cmp -s "$tmp/a.sums" "$tmp/b.sums"; then
  echo "outputs differ after kill -9 and resume:"
  diff "$tmp/a.sums" "$tmp/b.sums" | head -20
  exit 1
fi
echo "identical: $(wc -l <"$tmp/a.sums") files"
grep -E 'latents/train/chunk-' "$tmp/a.sums" >/dev/null
grep -E 'shards/00000.tar' "$tmp/a.sums" >/dev/null

# the store is the dataset, and every stage says done
$P tests/cli/latent_check.py keys "$A/latents/train" "$A/dataset/train.parquet"
$P tests/cli/latent_check.py keys "$B/latents/val" "$B/dataset/val.parquet"
$P - "$A" "$B" <<'EOF'
import json, sys
for d in sys.argv[1:]:
    for s in ("filter", "download", "preprocess", "build", "encode"):
        m = json.load(open("%s/manifests/%s.json" % (d, s)))
        assert m["state"] == "done", (d, s, m["state"])
m = json.load(open(sys.argv[1] + "/manifests/download.json"))
assert m["failures"], m  # the 404s were counted
print("manifests: done; download failures", m["failures"])
EOF
