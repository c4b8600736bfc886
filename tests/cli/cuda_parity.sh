#!/usr/bin/env bash
# sdw run cuda-parity without a GPU: SKIP and exit 0 (no CUDA backend, or no
# device); with SDW_PARITY_SELF=1 the harness itself runs (the CPU backend
# against itself, small cases): every case PASS and bit-identical, the
# summary line, exit 0; usage errors exit 2. The CUDA comparison proper runs
# in `make test-cuda` on a GPU (tests/cuda/run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if ! "$SDW" info | grep '^  cuda:[0-9]' >/dev/null; then
  "$SDW" run cuda-parity >"$tmp/skip.log"
  grep '^SKIP: ' "$tmp/skip.log" >/dev/null
fi

for filter in "[2,5,7,9]" "[2,32,9,7]" "B2 Tq37" "n=1001" "embedding"; do
  SDW_PARITY_SELF=1 "$SDW" run cuda-parity "$filter" >"$tmp/self.log"
  if grep -v '^PASS\|cases, 0 failed' "$tmp/self.log"; then
    echo "unexpected lines for '$filter'"
    exit 1
  fi
  grep '^PASS' "$tmp/self.log" >/dev/null
  # equal inputs on equal code: every compared output bit for bit
  if grep '^PASS' "$tmp/self.log" | grep -v 'bit-identical\|sum_squares\|out of range'; then
    echo "a self-comparison was not bit-identical for '$filter'"
    exit 1
  fi
done
grep 'embedding_forward id out of range' "$tmp/self.log" >/dev/null
# several substrings: the union of their cases
SDW_PARITY_SELF=1 "$SDW" run cuda-parity "fill [2,5,7,9]" "copy [2,5,7,9]" >"$tmp/two.log"
[ "$(grep -c '^PASS' "$tmp/two.log")" -eq 2 ]

set +e
"$SDW" run cuda-parity --bogus >/dev/null 2>&1
rc=$?
set -e
[ $rc -eq 2 ]
"$SDW" run cuda-parity --help | grep '^usage: sdw run cuda-parity' >/dev/null
echo "cuda-parity: ok"
