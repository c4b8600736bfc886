#!/usr/bin/env bash
# sdw's TensorBoard writer (core/train/tfevents.c) read back by PyPI
# tensorboard's own EventAccumulator: every tag, step and value exactly (the
# values compared as float32 bit patterns, since that is what the file holds).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv-test/bin/python
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I. tests/cli/tfevents_write.c \
  core/train/tfevents.c core/base/status.c -o "$tmp/write"
mkdir "$tmp/run"
"$tmp/write" "$tmp/run" >"$tmp/expected.txt"
ls "$tmp/run"/events.out.tfevents.* >/dev/null

"$PY" - "$tmp/run" "$tmp/expected.txt" <<'PYEOF'
import sys
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run, expected_path = sys.argv[1], sys.argv[2]
expected = {}
for line in open(expected_path):
    tag, step, value = line.split()
    expected.setdefault(tag, []).append((int(step), np.float32(float(value))))

acc = EventAccumulator(run, size_guidance={"scalars": 0})
acc.Reload()
tags = sorted(acc.Tags()["scalars"])
assert tags == sorted(expected), (tags, sorted(expected))
for tag, want in expected.items():
    got = [(e.step, np.float32(e.value)) for e in acc.Scalars(tag)]
    assert len(got) == len(want), (tag, len(got), len(want))
    for (gs, gv), (ws, wv) in zip(got, want):
        assert gs == ws, (tag, gs, ws)
        assert gv.view(np.uint32) == wv.view(np.uint32), (tag, gs, float(gv), float(wv))
print("tfevents: %d tags, %d scalars read back exactly" % (len(tags), sum(map(len, expected.values()))))
PYEOF
