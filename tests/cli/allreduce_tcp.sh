#!/usr/bin/env bash
# The tcp data-parallel engine across processes: three `sdw run
# allreduce-check` ranks started by hand with SDW_DIST_INIT / SDW_WORLD_SIZE
# / SDW_RANK (rank 0 started last: the others retry until it listens). Each
# checks its mean against a double-precision reference (the rounding bound
# in core/cli/run_allreduce.c), the exact f64 sum, a broadcast, and bit
# identity with rank 0. A rank that fails makes the others fail (exit 1,
# no hang), and a wrong rank is one error line, exit 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SDW_DIST_INIT=tcp://127.0.0.1:$port SDW_WORLD_SIZE=3 SDW_DIST_TIMEOUT=60 OMP_NUM_THREADS=1
for r in 2 1 0; do
  SDW_RANK=$r "$SDW" run allreduce-check --n 1048579 >"$tmp/out.$r" 2>"$tmp/err.$r" &
  pids+=($!)
done
fail=0
for i in 0 1 2; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  [ "$rc" -eq 0 ] || { echo "rank $((2 - i)) exited $rc"; fail=1; }
done
pids=()
for r in 0 1 2; do
  if [ "$fail" -ne 0 ] || ! grep -E "^allreduce-check: engine tcp rank $r world 3 n 1048579 .* identical yes .* ok$" "$tmp/out.$r" >/dev/null; then
    cat "$tmp/out.$r" "$tmp/err.$r"
    fail=1
  fi
done
[ "$fail" -eq 0 ]

# a rank that fails: the others see its connection close and fail too
pids=()
for r in 2 1 0; do
  SDW_RANK=$r timeout 60 "$SDW" run allreduce-check --fail-rank 1 >"$tmp/out.$r" 2>"$tmp/err.$r" &
  pids+=($!)
done
for i in 0 1 2; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  [ "$rc" -eq 1 ] || { echo "fail-rank: rank $((2 - i)) exited $rc"; cat "$tmp/err.$((2 - i))"; exit 1; }
done
pids=()
grep -F "did it exit?" "$tmp/err.0" >/dev/null

rc=0
SDW_RANK=3 "$SDW" run allreduce-check --engine tcp >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ]
[ "$(wc -l <"$tmp/err")" -eq 1 ]
grep -F "SDW_RANK" "$tmp/err" >/dev/null
echo ok
