#!/usr/bin/env bash
# A detached `sdw train` driven by `sdw ctl` (tiny seed UNet, synthetic store):
#  - --detach prints "RUN PID", the job runs in its own session, survives
#    SIGHUP, and writes its output to RUN/train.log;
#  - status answers; pause really stops the step counter (job.json and status
#    show the same step over 1.5 s) and resume continues it;
#  - checkpoint replies with the path of a file that exists;
#  - sample --wait writes a PNG with an infotext under samples/;
#  - a second `sdw train` on the same RUN is refused while the job lives;
#  - stop checkpoints and ends the job (state stopped, the process gone), and
#    `sdw ls` lists the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PY" tools/make_latent_store.py "$tmp/store" --count 32
cat >"$tmp/c.ini" <<EOF
model = seed-tiny
text_encoder = $G/clip-text-tiny
vae = $G/vae-tiny
train_data = $tmp/store
batch_size = 4
grad_accum = 1
epochs = 100000
lr = 1e-3
log_every = 5
val_every = 0
sample_steps = 3
threads = 1
arena_gb = 4
EOF
R=$tmp/run
out=$("$SDW" train --config "$tmp/c.ini" --run "$R" --detach)
read -r run pid <<<"$out"
test "$run" = "$R"
kill -0 "$pid"
# its own session, so the terminal's hangup does not reach it
test "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" || test "$(ps -o sid= -p "$pid" | tr -d ' ')" != "$(ps -o sid= -p $$ | tr -d ' ')"
kill -HUP "$pid"

step_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$R/job.json"; }
state_of() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["state"])' "$R/job.json"; }
for _ in $(seq 1 300); do
  [ -S "$R/control.sock" ] && [ "$(state_of 2>/dev/null || true)" = running ] && break
  sleep 0.05
done
kill -0 "$pid" # survived SIGHUP
"$SDW" ctl "$R" status >"$tmp/status"
# an active state: the job may be writing its epoch-end checkpoint just now
grep -E "^state +(running|checkpointing|sampling)$" "$tmp/status" >/dev/null

# a second job on the same run is refused
set +e
"$SDW" train --config "$tmp/c.ini" --run "$R" --quiet 2>"$tmp/err"
rc=$?
set -e
test $rc = 1
grep -F "another job owns" "$tmp/err" >/dev/null

# pause: the step counter stands still
"$SDW" ctl "$R" pause >/dev/null
test "$(state_of)" = paused
s1=$(step_of)
js1=$("$SDW" ctl --json "$R" status | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"]["step"])')
sleep 1.5
s2=$(step_of)
js2=$("$SDW" ctl --json "$R" status | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["status"]["step"])')
test "$s1" = "$s2" && test "$js1" = "$js2" && test "$js1" = "$s1"
# a checkpoint while paused: the reply names a file that exists
"$SDW" ctl "$R" checkpoint >"$tmp/ck"
ck=$(grep -oE 'checkpoints/step-[0-9]+\.safetensors' "$tmp/ck" | head -n1)
[ -s "$R/$ck" ]
test "$ck" = "checkpoints/step-$(printf %08d "$s1").safetensors"
# resume: steps again
"$SDW" ctl "$R" resume >/dev/null
for _ in $(seq 1 200); do
  [ "$(step_of)" -gt "$s1" ] && break
  sleep 0.05
done
test "$(step_of)" -gt "$s1"

# a sample with the EMA weights
"$SDW" ctl --timeout 60000 "$R" sample "class 2" --seed 7 --steps 3 --wait >"$tmp/sample"
png=$(grep -oE 'samples/sample-step-[0-9]+-7\.png' "$tmp/sample" | head -n1)
[ -s "$R/$png" ]
"$PY" - "$R/$png" <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1])
assert im.size == (16, 16), im.size
assert im.info["parameters"].startswith("class 2") and "Seed: 7" in im.info["parameters"]
EOF

# protocol abuse: malformed lines, bad sample arguments, random bytes and an
# oversized line get error replies or a closed connection, never a dead job
"$PY" - "$R/control.sock" <<'EOF2'
import json, random, socket, sys
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(20)
    return s, s.makefile("rb")
s, f = conn()
bad = [b"not json", b'{"id":1}', b"[1,2]", b'{"id":2,"cmd":"bogus"}', b'{"id":3,"cmd":"sample"}',
       b'{"id":4,"cmd":"sample","prompt":"x","steps":-1}',
       b'{"id":5,"cmd":"sample","prompt":"x","seed":"abc"}',
       b'{"id":6,"cmd":"sample","prompt":"x","ema":1}',
       b'{"id":7,"cmd":"sample","prompt":"x","cfg":1e9}',
       b'{"id":8,"cmd":"sample","prompt":5}']
rng = random.Random(5)
for _ in range(200):
    bad.append(bytes(rng.choice(b'{}[]":,abcdmstop0123\\ \t\xff\xc3') for _ in range(rng.randint(1, 60))))
for line in bad:
    s.sendall(line + b"\n")
    r = f.readline()
    assert r, ("connection closed on", line)
    rep = json.loads(r)
    assert rep.get("ok") is False and rep.get("error"), (line, rep)
s.sendall(b"x" * 70000 + b"\n")
try:
    f.read()  # the server closes the connection (read returns at EOF; a timeout fails)
except ConnectionResetError:
    pass
s.close()
s, f = conn()
s.sendall(b'{"id":42,"cmd":"status"}\n')
rep = json.loads(f.readline())
assert rep["ok"] is True and rep["id"] == 42 and rep["status"]["state"] in ("running", "sampling", "checkpointing"), rep
print(f"protocol abuse: {len(bad)} bad lines answered with errors, job still {rep['status']['state']}")
EOF2
kill -0 "$pid"
s3=$(step_of)
sleep 0.5
test "$(step_of)" -gt "$s3"

# stop: checkpoint, then the process ends
"$SDW" ctl "$R" stop >/dev/null
for _ in $(seq 1 200); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
! kill -0 "$pid" 2>/dev/null
pid=
test "$(state_of)" = stopped
last=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["last_checkpoint"])' "$R/job.json")
test "$last" = "checkpoints/$(cat "$R/checkpoints/latest")"
[ ! -e "$R/control.sock" ]
grep -F "stop requested" "$R/events.log" >/dev/null
[ -s "$R/train.log" ]
"$SDW" ls "$tmp" >"$tmp/ls"
grep -F "stopped" "$tmp/ls" >/dev/null
