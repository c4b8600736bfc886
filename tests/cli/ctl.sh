#!/usr/bin/env bash
# sdw ctl and sdw ls against a real tiny training job (sdw train --detach on a
# synthetic latent store, tiny UNet, the golden tiny CLIP and VAE):
#  - ls lists it as running; a second job on the same run is refused;
#  - pause really stops the step counter (same step 1 s later), resume moves it;
#  - checkpoint prints the path of a file that exists; sample --wait prints the
#    path of a PNG carrying the prompt in its infotext;
#  - events --json streams metric events;
#  - malformed JSON, an unknown command and an oversized line sent by hand get
#    error replies (the oversized one also a closed connection) and the job
#    goes on;
#  - stop ends the job: state stopped, a checkpoint, ctl then exits 3;
#  - tensorboard's EventAccumulator reads the run's train/loss back and it
#    equals metrics.jsonl's loss as float32 (within one float32 ulp, see
#    below), step by step;
#  - a job killed with -9 shows as "dead" in ls, ctl exits 3 on it, and a new
#    job on that run replaces the stale socket;
#  - usage errors exit 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
case $SDW in /*) ;; *) SDW=$PWD/$SDW ;; esac # used from other directories below
PY=.venv-test/bin/python
G=$PWD/tests/data/goldens
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PY" tools/make_latent_store.py "$tmp/store" --count 16 --size 8 >/dev/null
cat >"$tmp/tiny.ini" <<INI
model = custom
unet_ch = 32
unet_ch_mults = 1,2
unet_attn_lvls = 1
unet_res_blks = 1
unet_heads = 2
unet_ctx_dim = 64
train_data = $tmp/store
text_encoder = $G/clip-text-tiny
vae = $G/vae-tiny
vocab = $PWD/assets/clip/bpe_simple_vocab_16e6.txt.gz
batch_size = 4
grad_accum = 1
epochs = 100000
warmup = 10
log_every = 1
val_every = 0
save_every = 0
threads = 1
arena_gb = 1
sample_steps = 2
INI

fail() {
  echo "FAIL: $*"
  exit 1
}
field() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["status"][sys.argv[2]])' "$1" "$2"; }
# start RUN: a detached job; waits until it answers status (at most 60 s).
start() {
  local out
  out=$("$SDW" train --config "$tmp/tiny.ini" --run "$1" --detach --quiet)
  pids+=("$(echo "$out" | awk '{print $NF}')")
  for _ in $(seq 600); do
    if "$SDW" ctl --timeout 2000 "$1" status >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  cat "$1/train.log" || true
  fail "the job in $1 did not come up"
}
# wait_for CMD...: retries for up to 30 s.
wait_for() {
  for _ in $(seq 300); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  fail "timed out waiting for: $*"
}

R=$tmp/runs/a
mkdir -p "$tmp/runs"
start "$R"
(cd "$tmp" && "$SDW" ls) >"$tmp/ls.txt"
grep -E '^runs/a +running ' "$tmp/ls.txt" >/dev/null || { cat "$tmp/ls.txt"; fail "ls: runs/a running"; }
if "$SDW" train --config "$tmp/tiny.ini" --run "$R" --quiet 2>"$tmp/second.err"; then
  fail "a second job on a live run was accepted"
fi
grep "another job owns" "$tmp/second.err" >/dev/null || { cat "$tmp/second.err"; fail "second job message"; }

# pause stops the steps; resume continues
[ "$("$SDW" ctl "$R" pause)" = paused ] || fail "pause"
s1=$(field "$("$SDW" ctl --json "$R" status)" step)
[ "$(field "$("$SDW" ctl --json "$R" status)" state)" = paused ] || fail "state after pause"
sleep 1
s2=$(field "$("$SDW" ctl --json "$R" status)" step)
[ "$s1" = "$s2" ] || fail "steps went on while paused ($s1 -> $s2)"
[ "$("$SDW" ctl "$R" resume)" = resumed ] || fail "resume"
moved() { [ "$(field "$("$SDW" ctl --json "$R" status)" step)" -gt "$s2" ]; }
wait_for moved

# checkpoint and sample
ck=$("$SDW" ctl "$R" checkpoint)
[[ "$ck" == checkpoints/step-*.safetensors ]] || fail "checkpoint printed '$ck'"
[ -s "$R/$ck" ] || fail "checkpoint $ck missing"
png=$("$SDW" ctl "$R" sample "class 2 sample" --steps 2 --seed 7 --cfg 3 --no-ema --wait)
[[ "$png" == samples/*.png ]] || fail "sample printed '$png'"
[ "$(head -c 8 "$R/$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG"
grep -a "class 2 sample" "$R/$png" >/dev/null || fail "the PNG's infotext lacks the prompt"
[ "$("$SDW" ctl "$R" sample "queued one" --steps 1)" = queued ] || fail "sample without --wait"

# the event stream (timeout ends it: exit 124)
ev=$(timeout 3 "$SDW" ctl --json "$R" events || true)
grep '"event":"metric"' <<<"$ev" >/dev/null || fail "no metric events: $ev"

# hostile lines by hand: error replies, the job goes on
"$PY" - "$R/control.sock" <<'PYEOF'
import json, socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.settimeout(10)
    return s, s.makefile("rb")
s, f = conn()
for line, want in [(b"{nope\n", "malformed"), (b'{"id":3,"cmd":"fly"}\n', "unknown command"),
                   (b"[]\n", "object")]:
    s.sendall(line)
    r = json.loads(f.readline())
    assert r["ok"] is False and want in r["error"], (line, r)
s.sendall(b'{"id":4,"cmd":"status"}\n')
r = json.loads(f.readline())
assert r["ok"] is True and r["id"] == 4 and r["status"]["state"] == "running", r
s2, f2 = conn()
s2.sendall(b'{"cmd":"status","pad":"' + b"x" * 70000 + b'"}\n')
r = json.loads(f2.readline())
assert r["ok"] is False and "longer than" in r["error"], r
assert f2.readline() == b"", "the oversized client was not disconnected"
s.sendall(b'{"id":5,"cmd":"status"}\n')  # the first connection is still served
assert json.loads(f.readline())["id"] == 5
PYEOF

# stop: checkpoint, then exit
[ "$("$SDW" ctl "$R" stop)" = stopping ] || fail "stop"
stopped() { grep '"state":"stopped"' "$R/job.json" >/dev/null && ! kill -0 "${pids[0]}" 2>/dev/null; }
wait_for stopped
last=$(cat "$R/checkpoints/latest")
[ -s "$R/checkpoints/$(basename "$last")" ] || fail "no checkpoint after stop ($last)"
set +e
"$SDW" ctl "$R" status 2>/dev/null
rc=$?
set -e
[ $rc -eq 3 ] || fail "ctl on a stopped job exited $rc, not 3"
(cd "$tmp" && "$SDW" ls runs) | grep -E '^runs/a +stopped ' >/dev/null || fail "ls: stopped"

# TensorBoard reads back what metrics.jsonl says
"$PY" - "$R" <<'PYEOF'
import json, sys
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run = sys.argv[1]
want = {}
for line in open(run + "/metrics.jsonl"):
    m = json.loads(line)
    if "loss" in m:
        want[m["step"]] = np.float32(m["loss"])
acc = EventAccumulator(run, size_guidance={"scalars": 0})
acc.Reload()
assert "train/loss" in acc.Tags()["scalars"], acc.Tags()
got = {e.step: np.float32(e.value) for e in acc.Scalars("train/loss")}
# metrics.jsonl holds the double as cJSON prints it (15 significant digits when
# those read back within DBL_EPSILON), so its float32 rounding may land one
# float32 ulp away from the writer's (float)loss; one ulp is the tolerance.
bad = [(s, got.get(s), w) for s, w in want.items()
       if got.get(s) is None or abs(got[s] - w) > np.spacing(w)]
assert len(want) > 10 and not bad and len(got) == len(want), (len(got), len(want), bad[:5])
PYEOF

# kill -9: dead in ls, exit 3, then a new job replaces the stale socket
B=$tmp/runs/b
start "$B"
kill -9 "${pids[-1]}"
dead() { (cd "$tmp" && "$SDW" ls) | grep -E '^runs/b +dead ' >/dev/null; }
wait_for dead
[ -S "$B/control.sock" ] || fail "expected the killed job's socket file to remain"
set +e
"$SDW" ctl "$B" status 2>/dev/null
rc=$?
set -e
[ $rc -eq 3 ] || fail "ctl on a dead job exited $rc, not 3"
start "$B"
"$SDW" ctl "$B" stop >/dev/null
stopped_b() { grep '"state":"stopped"' "$B/job.json" >/dev/null && ! kill -0 "${pids[-1]}" 2>/dev/null; }
wait_for stopped_b

# usage errors
for args in "" "$R" "$R bogus" "$R status extra" "$R sample" "$R pause --seed 3" \
  "$R sample x --steps 0" "--frobnicate $R status"; do
  set +e
  # shellcheck disable=SC2086
  "$SDW" ctl $args 2>/dev/null
  rc=$?
  set -e
  [ $rc -eq 2 ] || fail "sdw ctl $args exited $rc, not 2"
done
echo "ctl: ok"
