#!/usr/bin/env bash
# Lints every man page with mandoc at warning level; any message fails.
set -euo pipefail
cd "$(dirname "$0")/.."
pages=(man/*.[1-9])
out=$(mandoc -T lint -W warning "${pages[@]}" 2>&1 || true)
if [ -n "$out" ]; then
  echo "$out"
  echo "man: mandoc lint found problems"
  exit 1
fi
echo "man: ${#pages[@]} page(s) lint-clean"
