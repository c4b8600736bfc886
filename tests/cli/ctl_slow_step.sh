#!/usr/bin/env bash
# Control replies during long optimizer steps: a real job whose every step
# takes 6 s longer (SDW_TRAIN_STEP_DELAY_MS, the trainer's testing knob;
# a full-size CPU step takes minutes) must still answer `sdw ctl status`
# within 2 s (--timeout 2000 fails the call otherwise), several times in a
# row so some requests land mid-step, also while a pause from another
# client is waiting for the step to end. The pause then takes effect at the
# step boundary (its reply only then), status says paused, sample is
# queued at once, and stop ends the job (state stopped). A job that served
# its socket only between steps fails this: a request sent during the 6 s
# wait would be answered seconds later.
set -euo pipefail
cd "$(dirname "$0")/../.."
SDW=$(realpath "${SDW:-build/sdw}")
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
cleanup() {
  [ -s "$tmp/job.pid" ] && kill -9 "$(cat "$tmp/job.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PY" tools/make_latent_store.py "$tmp/store" --count 32 >/dev/null
cat >"$tmp/tiny.ini" <<INI
[model]
model = seed-tiny
text_encoder = $G/clip-text-tiny
vae = $G/vae-tiny
[data]
train_data = $tmp/store
[train]
batch_size = 4
epochs = 1000
log_every = 1
threads = 1
save_every = 0
val_every = 0
sample_steps = 2
arena_gb = 2
INI
R=$tmp/run
fail() {
  echo "FAIL: $*"
  tail -n 5 "$R/events.log" "$R/train.log" 2>/dev/null || true
  exit 1
}
wait_for() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
job_has() { grep -F -- "$1" "$R/job.json" >/dev/null 2>&1; }

SDW_TRAIN_STEP_DELAY_MS=6000 "$SDW" train --config "$tmp/tiny.ini" --run "$R" --detach >"$tmp/detach.out"
awk '{print $2}' "$tmp/detach.out" >"$tmp/job.pid"
wait_for 60 job_has '"state":"running"' || fail "the job does not start"

for i in 1 2 3; do
  "$SDW" ctl --timeout 2000 "$R" status >"$tmp/status$i" || fail "status $i not answered within 2 s"
  grep -F "running" "$tmp/status$i" >/dev/null || fail "status $i: $(cat "$tmp/status$i")"
  sleep 1
done

# pause waits for the step boundary; status does not wait for the pause.
"$SDW" ctl "$R" pause >"$tmp/pause.out" 2>&1 &
pause_pid=$!
sleep 0.5
"$SDW" ctl --timeout 2000 "$R" status >/dev/null || fail "status not answered while a pause waits"
"$SDW" ctl --timeout 2000 "$R" sample "class 1" >"$tmp/sample.out" || fail "sample not queued at once"
grep -Fx queued "$tmp/sample.out" >/dev/null || fail "sample reply: $(cat "$tmp/sample.out")"
wait $pause_pid || fail "pause: $(cat "$tmp/pause.out")"
grep -Fx paused "$tmp/pause.out" >/dev/null || fail "pause reply: $(cat "$tmp/pause.out")"
"$SDW" ctl --json --timeout 2000 "$R" status >"$tmp/paused.json" || fail "status while paused"
grep -F '"state":"paused"' "$tmp/paused.json" >/dev/null ||
  grep -F '"state":"sampling"' "$tmp/paused.json" >/dev/null || fail "not paused: $(cat "$tmp/paused.json")"

"$SDW" ctl "$R" stop >/dev/null || fail "stop"
job_gone() { ! kill -0 "$(cat "$tmp/job.pid")" 2>/dev/null; }
wait_for 120 job_gone || fail "stop did not end the job"
job_has '"state":"stopped"' || fail "state after stop: $(cat "$R/job.json")"
ls "$R/samples" | grep -E '^sample-step-.*\.png$' >/dev/null || fail "the queued sample was not written"
echo "ctl_slow_step: ok"
