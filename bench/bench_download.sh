#!/usr/bin/env bash
# Download benchmark: the same URL list, served by the same loopback server
# (tools/http_test_server.py), through `sdw pipeline download` and through
# img2dataset 1.47 (PyPI) with the seed's settings (512 center_crop, only if
# bigger, JPEG q95, 1000 per shard, timeout 10, retries 2), on the same
# machine in the same run. Prints images/s and CPU seconds per image (user +
# system of the process and its children, from /usr/bin/time; the server is
# not counted) and the ratios, then compares the two outputs sample by sample.
#
#   bench/bench_download.sh [--count N] [--rounds R] [--keep DIR]
#
# Defaults: 2000 URLs, 1 round (each round runs both, interleaved: sdw first
# in odd rounds, img2dataset first in even ones; the best of each is kept and
# the per-round ratios are summarised: median, min, max). SDW=path runs that
# binary instead of a freshly built build/sdw. img2dataset gets processes_count = online CPUs and thread_count 64,
# sdw --concurrency 64 and one worker per CPU. The first run creates
# .venv-bench/img2dataset/ (pip install img2dataset==1.47.0).
set -euo pipefail
cd "$(dirname "$0")/.."
count=2000 rounds=1 keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: bench/bench_download.sh [--count N] [--rounds R] [--keep DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "${SDW:-}" ]; then
  make --no-print-directory build/sdw >/dev/null
  SDW=build/sdw
fi
venv=.venv-bench/img2dataset
if ! "$venv/bin/python" -c 'import img2dataset, cv2, pyarrow' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q img2dataset==1.47.0
fi
export NO_ALBUMENTATIONS_UPDATE=1
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost # all traffic stays on loopback
PY="$PWD/$venv/bin/python"
cpus=$(nproc)

tmp=${keep:-$(mktemp -d)}
mkdir -p "$tmp/www"
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$keep" ] || rm -rf "$tmp"
}
trap cleanup EXIT
rm -f "$tmp/port"
python3 tools/http_test_server.py --root "$tmp/www" --port-file "$tmp/port" &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port")
"$PY" tools/bench_download.py gen "$tmp" "$count" "$port"

best_sdw= best_i2d=
run_sdw() {
  rm -rf "$tmp/sdw"
  /usr/bin/time -f "%e %U %S" -o "$tmp/sdw.time" "$SDW" pipeline download --data "$tmp/sdw" \
    --input "$tmp/urls.parquet" --concurrency 64 --workers "$cpus" 2>"$tmp/sdw.log"
  read -r wall user sys <"$tmp/sdw.time"
  ok=$(grep -o 'done: [0-9]* of' "$tmp/sdw.log" | grep -o '[0-9]*')
  echo "$wall $user $sys $ok"
}
run_i2d() {
  rm -rf "$tmp/i2d"
  /usr/bin/time -f "%e %U %S" -o "$tmp/i2d.time" "$venv/bin/img2dataset" \
    --url_list "$tmp/urls.parquet" --input_format parquet --url_col URL --caption_col TEXT \
    --output_format webdataset --output_folder "$tmp/i2d" --processes_count "$cpus" \
    --thread_count 64 --image_size 512 --resize_mode center_crop --resize_only_if_bigger True \
    --encode_format jpg --encode_quality 95 --number_sample_per_shard 1000 --timeout 10 \
    --retries 2 --incremental_mode incremental --distributor multiprocessing \
    >"$tmp/i2d.log" 2>&1
  read -r wall user sys <"$tmp/i2d.time"
  ok=$("$PY" -c 'import glob, json, sys
print(sum(json.load(open(p))["successes"] for p in glob.glob(sys.argv[1] + "/*_stats.json")))' "$tmp/i2d")
  echo "$wall $user $sys $ok"
}
better() { # keeps the faster of two "wall user sys ok" lines
  if [ -z "$1" ]; then echo "$2"; else
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); print (y[1] < x[1] ? b : a) }'
  fi
}
ratio() { # "images/s ratio" "CPU per image ratio" of one sdw and one img2dataset line
  awk -v s="$1" -v i="$2" 'BEGIN { split(s, a, " "); split(i, b, " ");
    printf "%.3f %.3f\n", (a[4] / a[1]) / (b[4] / b[1]), ((b[2] + b[3]) / b[4]) / ((a[2] + a[3]) / a[4]) }'
}
: >"$tmp/ratios"
for r in $(seq "$rounds"); do
  # interleaved (A B A B ...), the order swapped every other round
  if [ $((r % 2)) -eq 1 ]; then
    s=$(run_sdw); echo "round $r sdw:         wall/user/sys/images $s"
    i=$(run_i2d); echo "round $r img2dataset: wall/user/sys/images $i"
  else
    i=$(run_i2d); echo "round $r img2dataset: wall/user/sys/images $i"
    s=$(run_sdw); echo "round $r sdw:         wall/user/sys/images $s"
  fi
  ratio "$s" "$i" | tee -a "$tmp/ratios" | awk '{ printf "round %d ratios: %.2fx images/s, %.2fx less CPU per image\n", r, $1, $2 }' r="$r"
  best_sdw=$(better "$best_sdw" "$s")
  best_i2d=$(better "$best_i2d" "$i")
done

echo
echo "download benchmark: $count URLs from 127.0.0.1, 512 center_crop, q95, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
awk -v s="$best_sdw" -v i="$best_i2d" 'BEGIN {
  split(s, a, " "); split(i, b, " ");
  sr = a[4] / a[1]; ir = b[4] / b[1];
  sc = (a[2] + a[3]) / a[4]; ic = (b[2] + b[3]) / b[4];
  printf "%-12s %8s %8s %10s %14s\n", "", "images", "wall s", "images/s", "CPU s/image";
  printf "%-12s %8d %8.2f %10.1f %14.4f\n", "sdw", a[4], a[1], sr, sc;
  printf "%-12s %8d %8.2f %10.1f %14.4f\n", "img2dataset", b[4], b[1], ir, ic;
  printf "ratios: %.2fx images/s, %.2fx less CPU per image (target >= 2x)\n", sr / ir, ic / sc;
}'
stats() { # median, min, max of one column of numbers
  sort -n | awk '{ v[NR] = $1 } END { printf "median %.2fx (min %.2fx, max %.2fx)", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2, v[1], v[NR] }'
}
echo "per round ($rounds): images/s ratio $(cut -d' ' -f1 "$tmp/ratios" | stats); CPU per image ratio $(cut -d' ' -f2 "$tmp/ratios" | stats)"
echo "outputs compared: $("$PY" tools/bench_download.py compare "$tmp/sdw/shards" "$tmp/i2d")"
