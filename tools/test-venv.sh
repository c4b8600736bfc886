#!/usr/bin/env bash
# Creates .venv-test/ with the reference Python packages the interop tests use
# (pyarrow, pandas, webdataset, img2dataset: tools/test-requirements.txt).
# Idempotent and quick when everything is there; fails loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" tools/test-requirements.txt; then
  exit 0
fi
echo "test-venv: installing the reference packages into $venv (tools/test-requirements.txt)"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tools/test-requirements.txt
cp tools/test-requirements.txt "$stamp"
