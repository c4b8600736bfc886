#!/usr/bin/env bash
# The workbench's preview end to end: `sdw attach --panel preview` in a
# pseudo-terminal. With a terminal that answers DA1 with sixel and a cell
# size, the raw output's sixel image is decoded (by an independent decoder in
# tui_sixel.py); with COLORTERM=truecolor and no sixel, the half-block cells
# are read back. Both must match the run's sample PNG resampled in double
# precision (tolerance 2 levels for sixel, 1 for truecolor; see the script).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
PY=.venv-test/bin/python
[ -x "$PY" ] || PY=python3
[ -x "$SDW" ] || { echo "FAIL: $SDW is not built" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" tests/cli/tui_sixel.py "$(realpath "$SDW")" "$work/sixel" sixel
"$PY" tests/cli/tui_sixel.py "$(realpath "$SDW")" "$work/blocks" truecolor
