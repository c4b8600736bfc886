#!/usr/bin/env bash
# sdw info runs without a GPU, exits 0 and says what it found; --help and
# --version work; an unknown command is a clear error with exit status 2.
set -euo pipefail
out=$("$SDW" info)
echo "$out" | grep -q '^sdw [0-9]'
echo "$out" | grep -q '^backends: *cpu'
echo "$out" | grep -q 'blas: *OpenBLAS'
echo "$out" | grep -q 'openmp: *[0-9]* threads'
if [ -x "$(command -v nvidia-smi || true)" ] && nvidia-smi -L >/dev/null 2>&1; then
  echo "$out" | grep -q '^  cuda:0:'
else
  echo "$out" | grep -q 'gpu: *none'
fi
"$SDW" --version | grep >/dev/null '^sdw [0-9]'
"$SDW" --help | grep >/dev/null '^usage: sdw'
set +e
err=$("$SDW" no-such-command 2>&1)
rc=$?
set -e
[ "$rc" -eq 2 ]
[ "$(echo "$err" | wc -l)" -eq 1 ]
echo "$err" | grep -q "unknown command 'no-such-command'"
# When the CUDA toolkit is on this machine the build must have compiled the
# .cu sources with nvcc and linked the CUDA libraries.
# (Sanitizer builds are CPU-only by design and say so.)
if [ -n "${SANITIZE:-}" ]; then
  echo "$out" | grep -q 'not compiled in (sanitizer builds are CPU-only)'
elif command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "$out" | grep -q '^  runtime: *[0-9]'
  echo "$out" | grep -q '^  cudnn: *[0-9]'
fi
