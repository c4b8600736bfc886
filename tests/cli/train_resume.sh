#!/usr/bin/env bash
# Checkpoints that never lose work (issue 5), with the tiny seed UNet on a
# synthetic store (tools/make_latent_store.py):
#  - resume is bit-identical (and so are the losses in metrics.jsonl): N steps straight == the same run killed with
#    SIGKILL partway (after its step-4 checkpoint), resumed by `sdw train --run`,
#    and continued to N: every tensor of the final checkpoint (weights, EMA,
#    AdamW m and v) compared byte for byte. N = 48 over 3 epochs, so the
#    resumed part starts mid-epoch and crosses epochs;
#  - a damaged newest checkpoint (one flipped bit) is refused with a warning and
#    the run resumes from the one before, reaching the same bits again;
#  - SIGTERM writes a checkpoint and exits 143; resuming from it is exact too;
#  - SIGKILL at random moments of a run that checkpoints every step (so most
#    kills land inside a checkpoint write), 20 times: every time, latest names
#    a checkpoint whose SHA-256 metadata an independent reader (Python)
#    verifies, no temporary is left behind after the next run, and the
#    next run resumes from it; then 10 kills aimed inside checkpoint writes
#    (SIGKILL the moment the job's temporary appears), the same checks.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/tests/data/goldens
PY=${PYTHON:-.venv-test/bin/python}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

"$PY" tools/make_latent_store.py "$tmp/store" --count 64
cat >"$tmp/c.ini" <<EOF
model = seed-tiny
text_encoder = $G/clip-text-tiny
train_data = $tmp/store
batch_size = 4
grad_accum = 2
epochs = 6
lr = 1e-3
warmup = 3
save_steps = 4
keep_last = 2
threads = 1
arena_gb = 4
EOF

# compare A B: every tensor byte-identical
compare() {
  "$PY" - "$1" "$2" <<'EOF'
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys(), "different tensors"
sets = {}
for k in a:
    assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"
    s = k.split(".")[0]
    sets[s] = sets.get(s, 0) + a[k].nbytes
print("identical:", ", ".join(f"{s} {n} bytes" for s, n in sorted(sets.items())))
EOF
}

# verify CK: the checkpoint's SHA-256 metadata against its tensors
verify() {
  "$PY" - "$1" <<'EOF'
import hashlib, json, struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
n = struct.unpack("<Q", data[:8])[0]
hdr = json.loads(data[8:8 + n])
meta = hdr.pop("__metadata__")
assert meta["format"] == "sdw-checkpoint/1", meta["format"]
base = 8 + n
for s in ("model", "ema", "adam_m", "adam_v"):
    ents = sorted((v["data_offsets"], k) for k, v in hdr.items() if k.startswith(s + "."))
    h = hashlib.sha256()
    for (b, e), k in ents:
        h.update(data[base + b:base + e])
    assert h.hexdigest() == meta["sha256." + s], f"{path}: {s} hash mismatch"
EOF
}

# 1. straight through
"$SDW" train --config "$tmp/c.ini" --run "$tmp/a" --quiet --set epochs=3 2>/dev/null
test "$(cat "$tmp/a/checkpoints/latest")" = step-00000024.safetensors

# 2. killed with SIGKILL after its first checkpoints, resumed, continued
"$SDW" train --config "$tmp/c.ini" --run "$tmp/b" --quiet --set epochs=3 --set save_steps=4 \
  --set max_steps=24 2>/dev/null &
pid=$!
pids+=("$pid")
# wait for the step-4 checkpoint, then kill at once (the run goes on meanwhile)
for _ in $(seq 1 600); do
  [ -e "$tmp/b/checkpoints/latest" ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
killed_at=$(cat "$tmp/b/checkpoints/latest")
echo "killed; latest was $killed_at"
"$SDW" train --run "$tmp/b" --quiet 2>/dev/null
grep -E "resumed from checkpoints/step-" "$tmp/b/events.log" >/dev/null
compare "$tmp/a/checkpoints/step-00000024.safetensors" "$tmp/b/checkpoints/step-00000024.safetensors"
# metrics.jsonl holds each step once (the killed run's later lines dropped on
# resume), with the same losses as the straight run
"$PY" - "$tmp/a/metrics.jsonl" "$tmp/b/metrics.jsonl" <<'EOF'
import json, sys
a, b = ([(l["step"], l["loss"]) for l in map(json.loads, open(p)) if "loss" in l] for p in sys.argv[1:])
assert a == b, (a, b)
EOF

# a damaged newest checkpoint: a warning, and the previous one is used
"$PY" - "$tmp/b/checkpoints/step-00000024.safetensors" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x10
open(p, "wb").write(b)
EOF
"$SDW" train --run "$tmp/b" --quiet --set max_steps=0 --set epochs=3 2>/dev/null
grep -E "WARN checkpoint step-00000024.safetensors is not usable .*SHA-256" "$tmp/b/events.log" >/dev/null
grep -E "resumed from checkpoints/step-00000020.safetensors" "$tmp/b/events.log" >/dev/null
compare "$tmp/a/checkpoints/step-00000024.safetensors" "$tmp/b/checkpoints/step-00000024.safetensors"

# 3. SIGTERM: checkpoint, exit 143, resume exactly
"$SDW" train --config "$tmp/c.ini" --run "$tmp/c" --quiet --set epochs=3 --set save_steps=0 \
  --set max_steps=24 2>/dev/null &
pid=$!
pids+=("$pid")
for _ in $(seq 1 600); do
  grep -E '"step":[1-9]' "$tmp/c/job.json" >/dev/null 2>&1 && break
  sleep 0.02
done
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
if [ "$rc" = 143 ]; then
  grep -E '"state":"stopped"' "$tmp/c/job.json" >/dev/null
  [ -s "$tmp/c/checkpoints/latest" ]
else
  test "$rc" = 0 # it finished before the signal arrived (a very fast machine)
fi
"$SDW" train --run "$tmp/c" --quiet 2>/dev/null
compare "$tmp/a/checkpoints/step-00000024.safetensors" "$tmp/c/checkpoints/step-00000024.safetensors"

# 4. SIGKILL during checkpoint writes, 20 times (after a first checkpoint exists)
start_k() {
  "$SDW" train --config "$tmp/c.ini" --run "$tmp/k" --quiet --set save_steps=1 --set keep_last=2 \
    --set epochs=100 2>/dev/null &
  pid=$!
  pids+=("$pid")
}
start_k
for _ in $(seq 1 600); do
  [ -e "$tmp/k/checkpoints/latest" ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
ok=0 torn=0
for i in $(seq 1 20); do
  start_k
  sleep "0.$(( (RANDOM % 6) + 3 ))$(( RANDOM % 10 ))"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # a temporary of this process left behind: the kill landed inside a write
  if ls -A "$tmp/k/checkpoints" | grep -F ".tmp.$pid" >/dev/null; then torn=$((torn + 1)); fi
  name=$(cat "$tmp/k/checkpoints/latest")
  [ -s "$tmp/k/checkpoints/$name" ] || { echo "kill $i: latest names missing $name"; exit 1; }
  verify "$tmp/k/checkpoints/$name" || { echo "kill $i: $name is corrupt"; exit 1; }
  ok=$((ok + 1))
done
echo "kill -9 during a run checkpointing every step: $ok/20 left a valid latest ($torn inside a write)"
test "$ok" = 20
# and 10 more kills aimed inside writes: the moment a checkpoint temporary of
# the job appears in checkpoints/, SIGKILL
"$PY" - "$SDW" "$tmp/c.ini" "$tmp/k" <<'EOF'
import hashlib, json, os, signal, struct, subprocess, sys, time
sdw, ini, run = sys.argv[1:]

def verify(path):  # the checkpoint's SHA-256 metadata against its tensors
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__")
    for s in ("model", "ema", "adam_m", "adam_v"):
        h = hashlib.sha256()
        for (b, e), k in sorted((v["data_offsets"], k) for k, v in hdr.items()
                                if k.startswith(s + ".")):
            h.update(data[8 + n + b:8 + n + e])
        assert h.hexdigest() == meta["sha256." + s], f"{path}: {s} hash mismatch"

ck = os.path.join(run, "checkpoints")
hits = 0
for i in range(10):
    p = subprocess.Popen([sdw, "train", "--config", ini, "--run", run, "--quiet", "--set",
                          "save_steps=1", "--set", "keep_last=2", "--set", "epochs=100"],
                         stderr=subprocess.DEVNULL)
    tag = f".tmp.{p.pid}"
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        if any(n.endswith(tag) and n.startswith(".step-") for n in os.listdir(ck)):
            os.kill(p.pid, signal.SIGKILL)
            hits += 1
            break
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()
    with open(os.path.join(ck, "latest")) as f:
        name = f.read().strip()
    verify(os.path.join(ck, name))
print(f"kill -9 on seeing a checkpoint temporary: {hits}/10 kills inside a write")
assert hits >= 8, hits
EOF
# the run resumes from it, and prunes the dead writers' temporaries
steps_before=$(sed 's/step-0*\([0-9]*\).*/\1/' "$tmp/k/checkpoints/latest")
"$SDW" train --run "$tmp/k" --quiet --set max_steps=$((steps_before + 2)) 2>/dev/null
grep -E "resumed from checkpoints/step-0*$steps_before\.safetensors" "$tmp/k/events.log" >/dev/null
test -z "$(ls -A "$tmp/k/checkpoints" | grep '\.tmp\.' || true)"
