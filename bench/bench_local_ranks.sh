#!/usr/bin/env bash
# Data parallel on one machine (local_ranks, sdw.conf(5)) against one
# process: the demo's training (assets/demo/train.ini: the demo set at
# 16x16, global batch 32) for --steps optimizer steps, timed end to end
# (process start and the last checkpoint included) as
#   one process, OpenMP's threads     (the baseline: batch 32)
#   one process, one thread           (batch 32)
#   local_ranks = R, threads / R each (batch 32 / R per rank)
# in the same run on the same data, and prints steps/s, the ratio to the
# baseline and each run's loss at the last step (the same global batch, the
# same samples and noise: equal up to float summation order).
#
#   bench/bench_local_ranks.sh [--steps N] [--ranks R] [--keep DIR]
#
# Defaults: 200 steps, 2 ranks. The data set comes from `sdw demo` (its
# pipeline stages and text encoder, one training step) in DIR/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=200 ranks=2 keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: bench/bench_local_ranks.sh [--steps N] [--ranks R] [--keep DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "${SDW:-}" ]; then
  make --no-print-directory build/sdw >/dev/null
  SDW=build/sdw
fi
SDW=$(realpath "$SDW")
if [ -n "$keep" ]; then
  tmp=$keep
  mkdir -p "$tmp"
else
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
fi
if [ ! -s "$tmp/demo/data/latents/train/index.json" ]; then
  "$SDW" demo --headless --dir "$tmp/demo" --steps 1 --no-eval --preview-steps 1 >"$tmp/demo.log" 2>&1 || {
    cat "$tmp/demo.log"
    exit 1
  }
fi
batch=32
common=(--config assets/demo/train.ini --set "model=$PWD/assets/demo/unet.json"
  --set "train_data=$tmp/demo/data/latents/train" --set "text_encoder=$tmp/demo/text_encoder"
  --set "max_steps=$steps" --set save_steps=100000 --set save_every=0 --set val_every=0
  --set log_every=1 --no-tui --quiet)
export OMP_WAIT_POLICY=passive

run() { # label, then --set arguments
  local label=$1
  shift
  rm -rf "$tmp/run-$label"
  local t0 t1
  t0=$(date +%s.%N)
  "$SDW" train --run "$tmp/run-$label" "${common[@]}" "$@" >"$tmp/$label.log" 2>&1 || {
    cat "$tmp/$label.log"
    exit 1
  }
  t1=$(date +%s.%N)
  python3 - "$label" "$t0" "$t1" "$steps" "$tmp/run-$label/metrics.jsonl" <<'PY' >>"$tmp/results"
import json, sys
label, t0, t1, steps, metrics = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
last = [json.loads(l) for l in open(metrics) if '"loss"' in l][-1]
assert last["step"] == steps, last
print(label, t1 - t0, last["loss"])
PY
}
: >"$tmp/results"
run baseline --set "batch_size=$batch" --set local_ranks=1 --set threads=0
run one-thread --set "batch_size=$batch" --set local_ranks=1 --set threads=1
run ranks --set "batch_size=$((batch / ranks))" --set "local_ranks=$ranks" --set threads=0

python3 - "$tmp/results" "$steps" "$ranks" "$(nproc)" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
steps, ranks, cpus = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
base = float(rows[0][1])
names = {"baseline": "one process, OpenMP threads (baseline)",
         "one-thread": "one process, one thread",
         "ranks": "local_ranks = %d" % ranks}
print("demo training, %d steps of 32 images, %s CPUs" % (steps, cpus))
for label, secs, loss in rows:
    secs = float(secs)
    print("  %-40s %7.1f s  %6.2f steps/s  x%.2f  loss at step %d %.6f"
          % (names[label], secs, steps / secs, base / secs, steps, float(loss)))
PY
