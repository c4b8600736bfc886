#!/usr/bin/env bash
# `sdw pipeline train-vae` on a small pixel-space store
# (tools/make_latent_store.py --pixels):
#  - the folder it writes is a diffusers vae folder: config.json an
#    AutoencoderKL config, the weights exactly the key set and shapes that
#    diffusers' own AutoencoderKL of that config has (the vae-tiny golden,
#    written by diffusers, has the default 32,64 config), F32;
#  - it learns: the logged reconstruction error falls by more than half,
#    and the final PSNR is reported in the manifest;
#  - a run stopped by SIGTERM (exit 130, state saved) and run again ends
#    with the same weights, byte for byte, as an uninterrupted run;
#  - a rerun of a finished folder does nothing; other settings, or a store
#    that is not pixel space, are one-line errors that change nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"
GOLD="$PWD/tests/data/goldens/vae-tiny"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SDW" pipeline train-vae --help | grep -- --kl-weight >/dev/null
"$PY" tools/make_latent_store.py "$tmp/d/pix/train" --count 24 --size 16 --pixels >/dev/null
"$PY" tools/make_latent_store.py "$tmp/d/lat/train" --count 8 --size 8 >/dev/null
run() { "$SDW" pipeline train-vae --data "$tmp/d" --images pix --batch 2 "$@"; }

# an uninterrupted run
run --out a --steps 300 --save-every 20 >"$tmp/a.txt" 2>&1 || { cat "$tmp/a.txt"; exit 1; }
grep "reconstruction PSNR" "$tmp/a.txt" >/dev/null
"$PY" - "$tmp/d" "$GOLD" "$tmp/a.txt" <<'PYEOF'
import json, os, re, sys
from safetensors.numpy import load_file
d, gold, log = sys.argv[1:4]
cfg = json.load(open(os.path.join(d, "a", "config.json")))
ref = json.load(open(os.path.join(gold, "config.json")))
for k, v in ref.items():
    if k not in ("_diffusers_version", "scaling_factor", "sample_size"):
        assert cfg[k] == v, (k, cfg[k], v)
assert cfg["sample_size"] == 16 and 0 < cfg["scaling_factor"] < 100, cfg
w = load_file(os.path.join(d, "a", "diffusion_pytorch_model.safetensors"))
g = load_file(os.path.join(gold, "weights.safetensors"))
assert set(w) == set(g), sorted(set(w) ^ set(g))[:8]
for k in g:
    assert w[k].shape == g[k].shape and str(w[k].dtype) == "float32", k
mse = [float(m) for m in re.findall(r"mse ([0-9.]+)", open(log).read())]
assert len(mse) >= 2 and mse[-1] < 0.5 * mse[0], mse
man = json.load(open(os.path.join(d, "manifests", "train-vae.json")))
assert man["state"] == "done" and man["extra"]["steps_done"] == 300, man
assert man["extra"]["psnr_db"] > 10, man["extra"]
rec = json.load(open(os.path.join(d, "a", "train-vae.json")))
assert rec["scaling_factor"] == man["extra"]["scaling_factor"]
assert abs(rec["scaling_factor"] - cfg["scaling_factor"]) < 1e-6 * cfg["scaling_factor"]
assert not os.path.exists(os.path.join(d, "a", "train-state.safetensors"))
PYEOF

# stopped and resumed: the same bytes
# (sdw itself in the background: $! must be its pid, not a subshell's)
"$SDW" pipeline train-vae --data "$tmp/d" --images pix --batch 2 --out b --steps 300 \
  --save-every 20 >"$tmp/b1.txt" 2>&1 &
pid=$!
for _ in $(seq 200); do
  [ -e "$tmp/d/b/train-state.safetensors" ] && break
  sleep 0.05
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 130 ] || { echo "expected exit 130 from the stopped run, got $rc"; cat "$tmp/b1.txt"; exit 1; }
grep "interrupted at step" "$tmp/b1.txt" >/dev/null
run --out b --steps 300 --save-every 20 >"$tmp/b2.txt" 2>&1 || { cat "$tmp/b2.txt"; exit 1; }
grep "resuming at step" "$tmp/b2.txt" >/dev/null
cmp "$tmp/d/a/diffusion_pytorch_model.safetensors" "$tmp/d/b/diffusion_pytorch_model.safetensors"
cmp "$tmp/d/a/config.json" "$tmp/d/b/config.json"

# --minutes ends training early and says so; the folder is still complete
run --out m --steps 100000 --minutes 0.002 >"$tmp/m.txt" 2>&1 || { cat "$tmp/m.txt"; exit 1; }
grep "cut by --minutes" "$tmp/m.txt" >/dev/null
"$PY" - "$tmp/d" <<'PYEOF'
import json, os, sys
d = sys.argv[1]
man = json.load(open(os.path.join(d, "manifests", "train-vae.json")))
assert man["state"] == "done" and man["extra"]["cut_by_minutes"] is True, man["extra"]
assert 0 < man["extra"]["steps_done"] < 100000, man["extra"]
assert os.path.exists(os.path.join(d, "m", "config.json"))
PYEOF

# a finished folder is left alone (the data dir given another way too);
# other settings and a latent store are errors
before=$(sha256sum "$tmp/d/a/diffusion_pytorch_model.safetensors")
run --out a --steps 300 --save-every 20 | grep "already trained" >/dev/null
(cd "$tmp" && "$SDW" pipeline train-vae --data d/../d --images pix --batch 2 --out a --steps 300 \
  --save-every 20 | grep "already trained" >/dev/null)
rc=0
run --out a --steps 301 >"$tmp/e1.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$tmp/e1.txt")" = 1 ] && grep "other settings" "$tmp/e1.txt" >/dev/null
[ "$before" = "$(sha256sum "$tmp/d/a/diffusion_pytorch_model.safetensors")" ]
rc=0
"$SDW" pipeline train-vae --data "$tmp/d" --images lat --out c >"$tmp/e2.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$tmp/e2.txt")" = 1 ] && grep "not a pixel-space store" "$tmp/e2.txt" >/dev/null
[ ! -e "$tmp/d/c" ]
rc=0
"$SDW" pipeline train-vae --data "$tmp/d" --images pix --channels 32,x >"$tmp/e3.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -- "--channels" "$tmp/e3.txt" >/dev/null
echo "train-vae: ok"
