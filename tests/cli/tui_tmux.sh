#!/usr/bin/env bash
# The workbench in a real terminal: tmux runs `sdw attach` against a real
# tiny CPU training run (`sdw train --detach`, seed-tiny on a synthetic
# latent store) and a real pipeline stage, and the test types keys and reads
# the screen back (send-keys, capture-pane):
#  - panels render at 80x24 and 200x60 (every panel title and its content);
#  - p pauses (job.json says paused, the step counter stops) and p resumes
#    (the step moves on); c writes a checkpoint file; s + a prompt + Enter
#    writes a sample PNG under samples/ that the preview then shows;
#  - r on the pipeline's emoji row starts `sdw pipeline emoji` as its own
#    process, whose manifest the panel follows (stopped by the test);
#  - a resize storm (tmux resize-window in a loop) does not kill the viewer;
#  - q detaches with status 0 while the job goes on; attaching again works
#    under TERM=screen, tmux-256color and linux, with NO_COLOR, and without
#    a UTF-8 locale (ASCII stand-ins);
#  - two viewers at once; plain `sdw` at a terminal; the terminal restored
#    (alternate screen off, cursor on) after SIGTERM and SIGSEGV;
#  - a job that died (kill -9) shows "job not running (last seen ...)";
#  - Q asks, and y stops the job.
# With TUI_SCREENS=DIR the screens are also saved there (for the docs).
set -euo pipefail
cd "$(dirname "$0")/../.."
SDW=$(realpath "${SDW:-build/sdw}")
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
sock=sdwtui$$
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
ulimit -c 0 # the SIGSEGV check below must not leave a core file

"$PY" tools/make_latent_store.py "$tmp/store" --count 64 >/dev/null
mkdir -p "$tmp/data"
cat >"$tmp/tiny.ini" <<INI
[model]
model = seed-tiny
text_encoder = $G/clip-text-tiny
vae = $G/vae-tiny
[data]
train_data = $tmp/store
[train]
batch_size = 4
grad_accum = 1
epochs = 100000
lr = 1e-3
warmup = 5
log_every = 1
threads = 1
save_every = 0
val_every = 0
sample_steps = 4
arena_gb = 2
INI
R=$tmp/run
"$SDW" train --config "$tmp/tiny.ini" --run "$R" --detach >"$tmp/detach.out"
awk '{print $2}' "$tmp/detach.out" >"$tmp/job.pid"
job_pid=$(cat "$tmp/job.pid")

fail() {
  echo "FAIL: $*"
  echo "--- screen:"
  T capture-pane -p -t ui 2>/dev/null || true
  echo "--- viewer stderr:"
  cat "$tmp/viewer.err" 2>/dev/null || true
  echo "--- events.log:"
  tail -n 5 "$R/events.log" 2>/dev/null || true
  echo "--- the viewer's log panel:"
  T send-keys -t ui Escape 5 2>/dev/null && sleep 0.5 && T capture-pane -p -t ui 2>/dev/null || true
  ls -R "$tmp/data" 2>/dev/null | head -20
  exit 1
}
job_field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$R/job.json" "$1"; }
steps_logged() {
  local n
  n=$(grep -c '"loss"' "$R/metrics.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
# wait_for SECONDS CMD...: polls every 0.2 s until CMD succeeds.
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
screen_lacks() { ! screen_has "$1"; }
json_has() { grep -F -- "$2" "$1" >/dev/null 2>&1; }
more_steps_than() { [ "$(steps_logged)" -gt "$1" ]; }
checkpoints() {
  local n
  n=$(ls "$R/checkpoints" 2>/dev/null | grep -c 'safetensors$') || true
  echo "${n:-0}"
}
more_checkpoints_than() { [ "$(checkpoints)" -gt "$1" ]; }
has_sample() { ls "$R/samples" 2>/dev/null | grep -E '^sample-.*\.png$' >/dev/null; }
job_gone() { ! kill -0 "$job_pid" 2>/dev/null; }
shot() {
  if [ -n "${TUI_SCREENS:-}" ]; then
    mkdir -p "$TUI_SCREENS"
    T capture-pane -p -t ui >"$TUI_SCREENS/$1.txt"
  fi
}
# attach [ENV...]: a new tmux session "ui" running the viewer on $R; its
# exit status lands in $tmp/exit.
attach() {
  rm -f "$tmp/exit"
  T kill-session -t ui 2>/dev/null || true
  T new-session -d -s ui -x "${W:-80}" -y "${H:-24}" \
    "env $* $SDW attach --data $tmp/data $R 2>$tmp/viewer.err; echo \$? >$tmp/exit; sleep 600"
}

# A session that lives as long as the test: killing "ui" never ends the
# server (which would race with the next new-session).
T new-session -d -s keep -x 80 -y 24 "sleep 3600"
wait_for 60 test -s "$R/job.json" || fail "no job.json from sdw train --detach"
wait_for 60 more_steps_than 2 || fail "the job logs no steps"

# --- 80 x 24: every panel ---------------------------------------------------------
attach TERM=tmux-256color
wait_for 15 screen_has "2 Curves:" || fail "curves panel at 80x24"
wait_for 15 screen_has "RUNNING" || fail "status line"
wait_for 10 screen_has "loss" || fail "loss chart"
# Braille cells (U+2801..U+28FF: UTF-8 E2 A0..A3 xx).
T capture-pane -p -t ui | LC_ALL=C grep -E $'\xe2[\xa0-\xa3]' >/dev/null ||
  fail "no braille on the curves panel"
shot 80x24-curves
T send-keys -t ui 1
wait_for 10 screen_has "1 Pipeline" || fail "pipeline panel"
screen_has "emoji" && screen_has "metadata" && screen_has "encode" || fail "pipeline stages"
shot 80x24-pipeline
T send-keys -t ui 3
wait_for 10 screen_has "3 Devices" || fail "devices panel"
wait_for 10 screen_has "CPU" || fail "devices: host CPU"
shot 80x24-devices
T send-keys -t ui 5
wait_for 10 screen_has "5 Log" || fail "log panel"
wait_for 10 screen_has "INFO" || fail "log lines"
shot 80x24-log
T send-keys -t ui 4
wait_for 10 screen_has "4 Preview" || fail "preview panel"
T send-keys -t ui '?'
wait_for 10 screen_has "detach (the run goes on)" || fail "help overlay"
shot 80x24-help
T send-keys -t ui x
wait_for 10 screen_lacks "any key closes" || fail "help does not close"

# --- p pauses: the step counter stops; p resumes ------------------------------------
T send-keys -t ui 2 p
wait_for 30 json_has "$R/job.json" '"state":"paused"' || fail "p did not pause"
wait_for 10 screen_has "PAUSED" || fail "status line does not say PAUSED"
s1=$(job_field step)
n1=$(steps_logged)
sleep 2
s2=$(job_field step)
n2=$(steps_logged)
[ "$s1" = "$s2" ] && [ "$n1" = "$n2" ] || fail "the step moved while paused ($s1 -> $s2)"
shot 80x24-paused
T send-keys -t ui p
wait_for 30 json_has "$R/job.json" '"state":"running"' || fail "p did not resume"
wait_for 30 more_steps_than "$n2" || fail "no step after resume"

# --- c: a checkpoint file -------------------------------------------------------------
ck0=$(checkpoints)
T send-keys -t ui c
wait_for 60 more_checkpoints_than "$ck0" || fail "c wrote no checkpoint"
wait_for 20 screen_has "checkpoint" || fail "no checkpoint message"

# --- s: the sample dialog, a PNG under samples/ --------------------------------------
T send-keys -t ui s
wait_for 10 screen_has "Prompt" || fail "sample dialog"
T send-keys -t ui -l "class 1"
T send-keys -t ui Tab Tab Tab Tab
T send-keys -t ui -l 7
wait_for 5 screen_has "class 1" || fail "typed prompt not shown"
shot 80x24-sample-dialog
T send-keys -t ui Enter
wait_for 120 has_sample || fail "s wrote no sample PNG"
T send-keys -t ui 4
wait_for 20 screen_has "sample-step-" || fail "the preview does not show the sample"
shot 80x24-preview

# --- r: a real pipeline stage as its own process --------------------------------------
T send-keys -t ui 1
wait_for 10 screen_has ">emoji" || fail "emoji is not the selected stage"
T send-keys -t ui r
wait_for 30 test -s "$tmp/data/manifests/emoji.json" || fail "r did not start the emoji stage"
test -f "$tmp/data/logs/emoji.log" || fail "no stage log"
wait_for 10 screen_has "running" || fail "the pipeline panel does not follow the stage"
stage_pid=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' \
  "$tmp/data/manifests/emoji.json")
echo "$stage_pid" >"$tmp/stage.pid"
emoji_in() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["in"])' \
  "$tmp/data/manifests/emoji.json"; }
stage_has_images() { [ "$(emoji_in)" -ge 3 ]; }
wait_for 60 stage_has_images || fail "the emoji stage makes no progress"
shot 80x24-pipeline-running
kill -TERM "$stage_pid" 2>/dev/null || true
wait_for 30 screen_has "interrupted" || screen_has "dead" || fail "stage end not shown"
T send-keys -t ui Enter
wait_for 10 screen_has "emoji report" || fail "stage report"
wait_for 10 screen_has "image 1: " || fail "no sample image of the stage in its report"
T send-keys -t ui Right
wait_for 10 screen_has "image 2: " || fail "Right does not show the next image"
shot 80x24-pipeline-report
T send-keys -t ui Escape

# --- resize storm, then 200 x 60 (every panel at once) --------------------------------
for i in $(seq 1 40); do
  T resize-window -t ui -x $((20 + (i * 37) % 250)) -y $((5 + (i * 13) % 90))
done
T resize-window -t ui -x 200 -y 60
sleep 1
[ ! -e "$tmp/exit" ] || fail "the viewer exited during the resize storm ($(cat "$tmp/exit"))"
for title in "1 Pipeline" "2 Curves" "3 Devices" "4 Preview" "5 Log"; do
  wait_for 10 screen_has "$title" || fail "200x60 lacks $title"
done
shot 200x60-all
T resize-window -t ui -x 160 -y 48
sleep 1
shot 160x48-all

# --- q detaches, the job goes on --------------------------------------------------------
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not exit"
[ "$(cat "$tmp/exit")" = 0 ] || fail "exit status $(cat "$tmp/exit") after q"
kill -0 "$job_pid" || fail "the job died with the viewer"
n3=$(steps_logged)
wait_for 30 more_steps_than "$n3" || fail "the job stopped after q"

# --- attach again under other terminals, and without colour ------------------------------
for env in TERM=screen TERM=tmux-256color TERM=linux "TERM=xterm-256color NO_COLOR=1" \
  "TERM=screen LC_ALL=C LANG=C"; do
  attach $env
  wait_for 15 screen_has "Curves" || fail "no screen with $env"
  wait_for 15 screen_has "RUNNING" || fail "no status with $env"
  [ "$env" != TERM=linux ] || shot 80x24-term-linux
  [ "$env" = "${env#*NO_COLOR}" ] || shot 80x24-no-color
  if [ "$env" != "${env#*LC_ALL=C }" ]; then
    # No UTF-8: ASCII borders and curves.
    screen_has "+ 2 Curves" || fail "no ASCII border without UTF-8"
    shot 80x24-ascii
  fi
  T send-keys -t ui q
  wait_for 10 test -s "$tmp/exit" || fail "q did not exit with $env"
done

# A terminal without cursor addressing: a clear error, status 1.
attach TERM=dumb
wait_for 10 test -s "$tmp/exit" || fail "TERM=dumb: the viewer did not exit"
[ "$(cat "$tmp/exit")" = 1 ] || fail "TERM=dumb: exit status $(cat "$tmp/exit")"
grep -F "cannot drive this terminal" "$tmp/viewer.err" >/dev/null || fail "TERM=dumb: no message"

# --- two viewers at once ----------------------------------------------------------------
attach TERM=screen
T new-session -d -s ui2 -x 100 -y 30 "$SDW attach $R; echo \$? >$tmp/exit2; sleep 600"
wait_for 15 screen_has "RUNNING" || fail "first of two viewers"
ui2_has() { T capture-pane -p -t ui2 | grep -F -- "$1" >/dev/null; }
wait_for 15 ui2_has "RUNNING" || fail "second of two viewers"
T send-keys -t ui2 q
wait_for 10 test -s "$tmp/exit2" || fail "q did not exit the second viewer"
screen_has "RUNNING" || fail "the first viewer did not survive the second's exit"
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not exit the first viewer"

# --- plain `sdw` at a terminal opens the workbench on the current directory -------------
rm -f "$tmp/exit"
T kill-session -t ui 2>/dev/null || true
T new-session -d -s ui -x 80 -y 24 -c "$R" "$SDW; echo \$? >$tmp/exit; sleep 600"
wait_for 15 screen_has "RUNNING" || fail "plain sdw in the run directory"
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not exit (plain sdw)"
# Without a terminal: the usage, as before; attach refuses politely.
"$SDW" </dev/null | grep -F "usage: sdw" >/dev/null || fail "sdw without a tty does not print usage"
rc=0
"$SDW" attach "$R" </dev/null >/dev/null 2>"$tmp/notty.err" || rc=$?
[ $rc = 1 ] && grep -F "needs a terminal" "$tmp/notty.err" >/dev/null || fail "attach without a tty: $rc"
rc=0
"$SDW" attach "$tmp/no-such-run" 2>"$tmp/norun.err" || rc=$?
[ $rc = 1 ] && grep -F "no such run directory" "$tmp/norun.err" >/dev/null || fail "attach to nothing: $rc"
rc=0
"$SDW" attach --panel nope "$R" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "attach --panel nope: status $rc"

# --- the terminal is restored after a signal or a crash ----------------------------------
viewer_pid() { pgrep -P "$(T display -p -t ui '#{pane_pid}')" | head -n1; }
for sig in TERM SEGV; do
  attach TERM=screen
  wait_for 15 screen_has "RUNNING" || fail "no screen before SIG$sig"
  [ "$(T display -p -t ui '#{alternate_on}')" = 1 ] || fail "the viewer is not on the alternate screen"
  vp=$(viewer_pid)
  [ -n "$vp" ] || fail "no viewer process"
  kill -"$sig" "$vp"
  wait_for 10 test -s "$tmp/exit" || fail "SIG$sig did not end the viewer"
  [ "$(T display -p -t ui '#{alternate_on}')" = 0 ] || fail "alternate screen left on after SIG$sig"
  [ "$(T display -p -t ui '#{cursor_flag}')" = 1 ] || fail "cursor left hidden after SIG$sig"
  want=143
  [ $sig = TERM ] || want=139
  [ "$(cat "$tmp/exit")" = $want ] || fail "exit status $(cat "$tmp/exit") after SIG$sig"
done
kill -0 "$job_pid" || fail "the job died with a viewer's signal"

# --- a job that died: the viewer says so and keeps the last state -----------------------
D=$tmp/dead
mkdir -p "$D"
cp "$R/config.ini" "$R/metrics.jsonl" "$R/events.log" "$R/job.json" "$D/"
sleep 60 &
dead_pid=$!
kill -9 $dead_pid
wait $dead_pid 2>/dev/null || true
"$PY" - "$D/job.json" "$dead_pid" <<'PYEOF'
import json, sys
j = json.load(open(sys.argv[1]))
j.update(state="running", pid=int(sys.argv[2]))
json.dump(j, open(sys.argv[1], "w"))
PYEOF
R0=$R
R=$D
attach TERM=screen
wait_for 15 screen_has "job not running (last seen" || fail "a dead job is not reported"
screen_has "NOT RUNNING" || fail "status line of a dead job"
screen_has "loss" || fail "the last state is not kept"
shot 80x24-dead-job
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not exit (dead job)"
R=$R0

# --- Q asks, y stops the job ---------------------------------------------------------------
attach TERM=screen
wait_for 15 screen_has "RUNNING" || fail "no screen before Q"
T send-keys -t ui Q
wait_for 10 screen_has "stop the run?" || fail "Q did not ask"
T send-keys -t ui y
wait_for 120 job_gone || fail "y did not stop the job"
state=$(job_field state)
[ "$state" = stopped ] || [ "$state" = finished ] || fail "job state after stop: $state"
wait_for 15 screen_has "job $state" || fail "the viewer does not show the job $state"
T send-keys -t ui q
wait_for 10 test -s "$tmp/exit" || fail "q did not exit after stop"
echo "tui_tmux: ok"
