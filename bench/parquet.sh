#!/usr/bin/env bash
# Parquet read + filter benchmark: sdw's reader versus pandas + pyarrow on a
# 1M-row LAION-like file written by pyarrow (see tools/bench_parquet.py).
#   bench/parquet.sh [--rows N] [--rounds R]
# The first run sets up .venv-test/ (pyarrow, pandas) and the file under
# build/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/sdw-bench >/dev/null
exec python3 tools/bench_parquet.py "$@"
