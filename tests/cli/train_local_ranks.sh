#!/usr/bin/env bash
# Data parallel training on one machine without a launcher: `sdw train` with
# local_ranks = 2 starts its second rank itself (core/cli/local_ranks.h),
# over the TCP engine on loopback.
#  - it takes the same steps as one process with twice the batch (the
#    comparison and tolerances of train_mpi.sh, in data_parallel_compare.py:
#    losses within 1e-5 relative, weights normwise within 1e-3 of the update);
#  - rank 0 alone writes: each step once in metrics.jsonl, "finished" once;
#  - stopped at step 2 and continued (the run's config.ini keeps
#    local_ranks), the step-4 checkpoint is bit for bit the uninterrupted one;
#  - no rank outlives the run;
#  - local_ranks with allreduce = single is a usage error, one line.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
trap 'pkill -KILL -f -- "$tmp" 2>/dev/null || true; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1

"$PY" tools/make_latent_store.py "$tmp/store" --count 32
cat >"$tmp/tiny.ini" <<EOF
model = seed-tiny
text_encoder = $G/clip-text-tiny
train_data = $tmp/store
grad_accum = 2
max_steps = 4
lr = 1e-3
warmup = 2
cfg_dropout = 0.25
log_every = 1
save_steps = 2
threads = 1
arena_gb = 4
EOF

run() { # name, then sdw train arguments
  local name=$1
  shift
  timeout 300 "$SDW" train --config "$tmp/tiny.ini" --run "$tmp/$name" --quiet "$@" \
    >"$tmp/$name.out" 2>&1 || {
    cat "$tmp/$name.out"
    echo "$name failed"
    exit 1
  }
}
run one --set batch_size=4 --set allreduce=single --set save_steps=4
run two --set batch_size=2 --set local_ranks=2
run init --set batch_size=4 --set allreduce=single --set lr=1e-30 --set max_steps=1 \
  --set save_steps=1
[ "$(grep -c ' INFO finished at step 4$' "$tmp/two/events.log")" -eq 1 ]
"$PY" tests/cli/data_parallel_compare.py "$tmp" two

# stopped at step 2, continued to 4 with the run's own config.ini
run half --set batch_size=2 --set local_ranks=2 --set max_steps=2
grep -F 'local_ranks = 2' "$tmp/half/config.ini" >/dev/null
timeout 300 "$SDW" train --run "$tmp/half" --set max_steps=4 --quiet >"$tmp/half2.out" 2>&1 || {
  cat "$tmp/half2.out"
  exit 1
}
"$PY" - "$tmp/two/checkpoints/step-00000004.safetensors" \
  "$tmp/half/checkpoints/step-00000004.safetensors" <<'PY'
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys()
for k in a:
    assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"
print(f"continued run: {len(a)} tensors bit for bit the uninterrupted run's")
PY

# no rank left behind
if pgrep -f -- "$tmp" >/dev/null; then
  pgrep -af -- "$tmp"
  echo "a rank outlived its run"
  exit 1
fi

rc=0
"$SDW" train --config "$tmp/tiny.ini" --run "$tmp/bad" --set local_ranks=2 --set allreduce=single \
  --quiet >"$tmp/bad.out" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { cat "$tmp/bad.out"; echo "exit $rc"; exit 1; }
[ "$(wc -l <"$tmp/bad.out")" -eq 1 ]
grep -F "local_ranks" "$tmp/bad.out" >/dev/null
[ ! -e "$tmp/bad" ]
echo ok
