#!/usr/bin/env bash
# make test-cuda: CUDA-vs-CPU parity. Without a GPU (or without a CUDA build)
# it says SKIP and exits 0, so CI never depends on a GPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
if ! "$SDW" info | grep -q '^  cuda:[0-9]'; then
  echo "SKIP: no CUDA device visible ('$SDW info' lists none)"
  exit 0
fi
if ! "$SDW" info | grep -q '^backends: .*cuda'; then
  echo "SKIP: a GPU is present but this build has no CUDA op backend yet (issue 8)"
  exit 0
fi
echo "FAIL: the CUDA parity suite is not written yet"
exit 1
