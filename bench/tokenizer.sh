#!/usr/bin/env bash
# Tokenizer benchmark and reference check: sdw tokenize versus open_clip
# (openai/CLIP's tokenizer) and Hugging Face (tokenizers, transformers) on
# 100k generated LAION-like captions and the 158 golden cases.
#   bench/tokenizer.sh [--count N] [--seed S]
# The first run sets up .venv-bench/ (see tools/bench_tokenizer.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory build/sdw >/dev/null
exec python3 tools/bench_tokenizer.py "$@"
