#!/usr/bin/env bash
# `make demo`'s path, shortened (40 emoji, 20 train-vae steps): `sdw demo`
# at a real terminal (tmux) runs the pipeline, starts the training and opens the workbench on
# it; the previewer it starts writes demo-step-N.png previews; q leaves the
# workbench with status 0 while the training goes on; `sdw ctl stop` then
# stops it (a checkpoint first), and neither rank outlives it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SDW=$(realpath "${SDW:-build/sdw}")
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
sock=sdwdemo$$
T() { tmux -L "$sock" -f /dev/null "$@"; }
cleanup() {
  T kill-server 2>/dev/null || true
  pkill -KILL -f -- "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export LANG=C.UTF-8 LC_ALL=C.UTF-8
R=$tmp/demo/run

fail() {
  echo "FAIL: $*"
  echo "--- screen:"
  T capture-pane -p -t demo 2>/dev/null || true
  echo "--- train.log:"
  tail -n 5 "$R/train.log" 2>/dev/null || true
  exit 1
}
job_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$R/job.json" "$1"; }
wait_for() { # seconds, then a command that must succeed
  local s=$1
  shift
  for _ in $(seq $((s * 5))); do
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  return 1
}
screen_has() { T capture-pane -p -t demo | grep -F -- "$1" >/dev/null; }
previews() { compgen -G "$R/samples/demo-step-*.png" >/dev/null; }
step_past() { [ "$(job_field step)" -gt "$1" ]; }
state_is() { [ "$(job_field state)" = "$1" ]; }
run_gone() { ! pgrep -f -- "$R" >/dev/null; }

T new-session -d -s demo -x 120 -y 40 \
  "'$SDW' demo --dir '$tmp/demo' --limit 40 --vae-steps 20 --steps 100000 --preview-steps 2; echo \$? >'$tmp/exit'; sleep 60"
wait_for 120 test -s "$R/job.json" || fail "no job.json"
wait_for 60 screen_has "1 Pipeline" || fail "the workbench did not open"
wait_for 60 screen_has "smoothed" || fail "no loss curve on the workbench"
wait_for 30 state_is running || fail "job state $(job_field state)"
wait_for 120 previews || fail "no demo-step preview"
pid=$(job_field pid)

T send-keys -t demo q
wait_for 20 test -s "$tmp/exit" || fail "q did not leave the workbench"
[ "$(cat "$tmp/exit")" = 0 ] || fail "sdw demo exited $(cat "$tmp/exit")"
step=$(job_field step)
wait_for 30 step_past "$step" || fail "the training stopped with the workbench"
kill -0 "$pid" || fail "the job died with the workbench"

"$SDW" ctl "$R" stop >/dev/null
wait_for 60 state_is stopped || fail "state $(job_field state) after stop"
wait_for 30 run_gone || fail "a process of the run is left: $(pgrep -af -- "$R")"
echo "demo_tui: ok"
