#!/usr/bin/env bash
# The workbench's prompt sampler (sdw attach --model / sdw --model) in a real
# terminal: tmux (100x30) runs the viewer with the tiny SD 1.x pipeline made
# of the golden parts (as sample.sh does) in a scratch directory, and the test
# types keys and reads the screen back:
#  - s opens the dialog without any run or job; a prompt, steps 3, Enter runs
#    `sdw sample`, whose PNG lands in ./samples with the prompt, steps and size
#    in its AUTOMATIC1111 infotext; the preview panel then names the file and
#    the log panel notes the path;
#  - plain `sdw --model` with a folder that is no model: the failure's last
#    line ("sdw: ...") shows in the log panel, and the viewer goes on;
#  - with a run attached (no job), the PNG goes to RUN/samples;
#  - q while a sample runs exits 0, names it, and the sample still writes its PNG;
#  - q exits 0; without a terminal, and for a bad --size, a one-line error.
set -euo pipefail
cd "$(dirname "$0")/../.."
SDW=$(realpath "${SDW:-build/sdw}")
G=$PWD/tests/data/goldens
tmp=$(mktemp -d)
sock=sdwsampler$$
T() { tmux -L "$sock" -f /dev/null "$@"; }
cleanup() {
  T kill-server 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
export LANG=C.UTF-8 LC_ALL=C.UTF-8

mkdir "$tmp/pipe" "$tmp/work" "$tmp/work2" "$tmp/empty"
echo '{"_class_name": "StableDiffusionPipeline"}' >"$tmp/pipe/model_index.json"
ln -s "$G/sd15-unet-tiny" "$tmp/pipe/unet"
ln -s "$G/clip-text-tiny" "$tmp/pipe/text_encoder"
ln -s "$G/vae-tiny" "$tmp/pipe/vae"

fail() {
  echo "FAIL: $*"
  echo "--- screen:"
  T capture-pane -p -t ui 2>/dev/null || true
  echo "--- viewer stderr:"
  cat "$tmp/viewer.err" 2>/dev/null || true
  for l in "$tmp"/work*/samples/sample.log; do
    [ -f "$l" ] && echo "--- $l:" && tail -n 5 "$l"
  done
  exit 1
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
has_png() { ls "$1" 2>/dev/null | grep -E '\.png$' >/dev/null; }
exited() { test -s "$tmp/exit"; }
# viewer DIR ARGS...: the viewer in DIR, in a new session "ui"; its exit
# status lands in $tmp/exit. One OpenMP thread (inherited by the sampler):
# the tiny model gains nothing from more, and spinning threads on a busy
# machine slow it down many times.
viewer() {
  local dir=$1
  shift
  rm -f "$tmp/exit"
  T kill-session -t ui 2>/dev/null || true
  T new-session -d -s ui -x 100 -y 30 \
    "cd $dir && env TERM=tmux-256color OMP_NUM_THREADS=1 $SDW $* 2>$tmp/viewer.err; echo \$? >$tmp/exit; sleep 600"
}
T new-session -d -s keep -x 80 -y 24 "sleep 3600"

# --- sdw attach --model: a sample without any run -----------------------------------
# 64x64: the tiny model takes minutes at sdw sample's default 512x512.
viewer "$tmp/work" attach --no-probe --model "$tmp/pipe" --size 64x64
wait_for 15 screen_has "1 Pipeline" || fail "the workbench did not open"
T send-keys -t ui s
wait_for 10 screen_has "Prompt" || fail "no sample dialog without a job"
T send-keys -t ui -l "a red fox"
# prompt -> negative -> steps; ^U clears the default 20
T send-keys -t ui Tab Tab C-u
T send-keys -t ui -l 3
T send-keys -t ui Enter
# The status line while it runs (about a second here, longer on a busy machine).
wait_for 30 screen_has "sampling… " || has_png "$tmp/work/samples" ||
  fail "no 'sampling…' in the status line"
wait_for 60 has_png "$tmp/work/samples" || fail "no PNG in ./samples"
png=$(ls "$tmp"/work/samples/*.png)
[ "$(basename "$png")" = "0000_a red fox.png" ] || fail "unexpected file $png"
python3 - "$png" <<'PY' || fail "infotext"
import sys
sys.path.insert(0, "tests/cli")
from a1111_infotext import read_png, parse_generation_parameters
w, h, _, texts = read_png(sys.argv[1])
got = parse_generation_parameters(texts["parameters"])
want = {"Prompt": "a red fox", "Steps": "3", "Size-1": "64", "Size-2": "64", "CFG scale": "7.5"}
bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
assert (w, h) == (64, 64) and not bad, ((w, h), bad)
PY
wait_for 20 screen_has "0000_a red fox.png" || fail "the preview does not name the PNG"
screen_has "4 Preview" || fail "the preview panel does not have the focus"
T send-keys -t ui 5
wait_for 10 screen_has "sample ready: $tmp/work/samples/0000_a red fox.png" ||
  fail "the log panel does not note the path"
screen_has "sampling:" || fail "the log panel does not note the start"
T send-keys -t ui q
wait_for 10 exited || fail "q did not exit"
[ "$(cat "$tmp/exit")" = 0 ] || fail "q: exit status $(cat "$tmp/exit")"

# --- q while sampling: the child (its own session) finishes and writes its PNG ---------
viewer "$tmp/work" attach --no-probe --model "$tmp/pipe" --size 64x64
wait_for 15 screen_has "1 Pipeline" || fail "the workbench did not open again"
T send-keys -t ui s
wait_for 10 screen_has "Prompt" || fail "no sample dialog (second time)"
T send-keys -t ui -l "a blue owl"
T send-keys -t ui Tab Tab C-u
T send-keys -t ui -l 40
T send-keys -t ui Enter
wait_for 30 screen_has "sampling… " || fail "no 'sampling…' for the long sample"
T send-keys -t ui q
wait_for 10 exited || fail "q did not exit while sampling"
[ "$(cat "$tmp/exit")" = 0 ] || fail "q while sampling: exit status $(cat "$tmp/exit")"
grep "^sdw: the sample goes on (pid [0-9]*; its log: $tmp/work/samples/sample.log)" \
  "$tmp/viewer.err" >/dev/null || fail "the exit message does not name the sample"
[ ! -e "$tmp/work/samples/0000_a blue owl.png" ] || echo "(the sample finished before q)"
wait_for 300 test -s "$tmp/work/samples/0000_a blue owl.png" ||
  fail "the sample did not finish after the viewer exited"

# --- with a run (no job): the PNG goes to RUN/samples ---------------------------------
mkdir "$tmp/run"
printf '[model]\nmodel = seed-tiny\n' >"$tmp/run/config.ini"
viewer "$tmp/work2" attach --no-probe --model "$tmp/pipe" --size 64x64 "$tmp/run"
wait_for 15 screen_has "2 Curves" || fail "the workbench did not open on the run"
T send-keys -t ui s
wait_for 10 screen_has "Prompt" || fail "no sample dialog on a run without a job"
T send-keys -t ui -l "a green frog"
T send-keys -t ui Tab Tab C-u
T send-keys -t ui -l 2
T send-keys -t ui Enter
wait_for 60 test -s "$tmp/run/samples/0000_a green frog.png" || fail "no PNG in RUN/samples"
wait_for 20 screen_has "0000_a green frog.png" || fail "the preview does not show the run's PNG"
[ ! -e "$tmp/work2/samples" ] || fail "./samples made while a run is attached"
T send-keys -t ui q
wait_for 10 exited || fail "q did not exit (run)"
[ "$(cat "$tmp/exit")" = 0 ] || fail "q (run): exit status $(cat "$tmp/exit")"

# --- sdw --model: a failing sample shows its last line --------------------------------
viewer "$tmp/work2" --model "$tmp/empty" --no-probe --size 64x64
wait_for 15 screen_has "1 Pipeline" || fail "sdw --model did not open the workbench"
T send-keys -t ui s
wait_for 10 screen_has "Prompt" || fail "no sample dialog (sdw --model)"
T send-keys -t ui -l "a cat"
T send-keys -t ui Enter
wait_for 30 screen_has "sample failed" || fail "no failure message"
T send-keys -t ui 5
wait_for 10 screen_has "sample failed (status 1): sdw: " || fail "the failure's last line"
[ -s "$tmp/work2/samples/sample.log" ] || fail "no sample.log"
T send-keys -t ui q
wait_for 10 exited || fail "q did not exit (sdw --model)"
[ "$(cat "$tmp/exit")" = 0 ] || fail "q: exit status $(cat "$tmp/exit")"

# --- errors -------------------------------------------------------------------------
set +e
err=$("$SDW" --model "$tmp/pipe" </dev/null 2>&1 >/dev/null)
rc=$?
err2=$("$SDW" attach --model "$tmp/pipe" --size 60x64 </dev/null 2>&1 >/dev/null)
rc2=$?
err3=$("$SDW" attach --model "$tmp/no-such" </dev/null 2>&1 >/dev/null)
rc3=$?
set -e
[ "$rc" = 1 ] && grep "^sdw: attach: the workbench needs a terminal" <<<"$err" >/dev/null ||
  fail "sdw --model without a terminal: $rc $err"
[ "$rc2" = 2 ] && grep "^sdw: attach: --size takes WxH" <<<"$err2" >/dev/null ||
  fail "bad --size: $rc2 $err2"
[ "$rc3" = 1 ] && grep "no such model" <<<"$err3" >/dev/null || fail "missing model: $rc3 $err3"
"$SDW" attach --help | grep -- "--model PATH" >/dev/null
echo "tui_sampler: ok"
