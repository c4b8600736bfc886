#!/usr/bin/env bash
# `sdw train` at a terminal opens the workbench on the job it starts (the
# job itself detached): tmux runs `sdw train --config ... --run RUN` in a
# pane and the test reads the screen back. Checks: the workbench shows the
# new run (curves panel, RUNNING); q exits 0 and the job goes on taking
# steps; `sdw ctl RUN stop` then ends it (state stopped). Without a
# terminal (stdin /dev/null, stdout a file) the job runs in the foreground
# as before, and --no-tui at a terminal does too.
set -euo pipefail
cd "$(dirname "$0")/../.."
SDW=$(realpath "${SDW:-build/sdw}")
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
sock=sdwtrt$$
T() { tmux -L "$sock" -f /dev/null "$@"; }
cleanup() {
  T kill-server 2>/dev/null || true
  for f in "$tmp"/*.pid; do
    [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
export LANG=C.UTF-8 LC_ALL=C.UTF-8

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
epochs = 100000
lr = 1e-3
log_every = 1
threads = 1
save_every = 0
val_every = 0
arena_gb = 2
INI
R=$tmp/run

fail() {
  echo "FAIL: $*"
  echo "--- screen:"
  T capture-pane -p -t ui 2>/dev/null || true
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
screen_has() { T capture-pane -p -t ui | grep -F -- "$1" >/dev/null; }
job_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$R/job.json" "$1"; }
steps_logged() {
  local n
  n=$(grep -c '"loss"' "$R/metrics.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
more_steps_than() { [ "$(steps_logged)" -gt "$1" ]; }
job_gone() { ! kill -0 "$(cat "$tmp/job.pid")" 2>/dev/null; }

T new-session -d -s keep -x 80 -y 24 "sleep 3600"
T new-session -d -s ui -x 100 -y 30 \
  "$SDW train --config $tmp/tiny.ini --run $R 2>$tmp/train.err; echo \$? >$tmp/exit; sleep 600"
wait_for 60 test -s "$R/job.json" || fail "no job.json"
job_field pid >"$tmp/job.pid"
wait_for 20 screen_has "2 Curves:" || fail "sdw train at a terminal shows no workbench"
wait_for 30 screen_has "RUNNING" || fail "the workbench does not show the job running"
wait_for 60 more_steps_than 2 || fail "the job takes no steps"
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not leave the workbench"
[ "$(cat "$tmp/exit")" = 0 ] || fail "exit status $(cat "$tmp/exit") after q"
grep -F "the job goes on in" "$tmp/train.err" >/dev/null || fail "no word that the job goes on"
kill -0 "$(cat "$tmp/job.pid")" || fail "the job died with the workbench"
n=$(steps_logged)
wait_for 30 more_steps_than "$n" || fail "the job stopped taking steps after q"
"$SDW" ctl "$R" stop >/dev/null || fail "sdw ctl stop"
wait_for 60 job_gone || fail "sdw ctl stop did not end the job"
[ "$(job_field state)" = stopped ] || fail "state after stop: $(job_field state)"

# Without a terminal: the foreground job (a bounded run, no workbench).
rc=0
"$SDW" train --config "$tmp/tiny.ini" --run "$tmp/fg" --set max_steps=2 </dev/null \
  >"$tmp/fg.out" 2>"$tmp/fg.err" || rc=$?
[ $rc = 0 ] || fail "foreground run without a terminal: status $rc"
grep -F "step 2/" "$tmp/fg.err" >/dev/null || fail "no progress lines without a terminal"
# --no-tui at a terminal: the foreground job too.
rm -f "$tmp/exit"
T kill-session -t ui
T new-session -d -s ui -x 100 -y 30 \
  "$SDW train --no-tui --config $tmp/tiny.ini --run $tmp/fg2 --set max_steps=2; echo \$? >$tmp/exit; sleep 600"
wait_for 60 test -s "$tmp/exit" || fail "--no-tui did not run in the foreground"
[ "$(cat "$tmp/exit")" = 0 ] || fail "--no-tui: status $(cat "$tmp/exit")"
screen_has "step 2/" || fail "--no-tui: no progress lines on the terminal"
echo "train_tui: ok"
