#!/usr/bin/env bash
# `sdw demo --headless --space pixels` (the pixel-space recipe; the default,
# --space vae, is demo_vae.sh's), shortened (4 optimizer steps, 2-step previews, a
# 4-caption report): the whole chain runs and leaves what the man page
# promises, checked with other readers than sdw's:
#  - the demo set: the emoji of the documented subgroups, as many as
#    Unicode's emoji-test.txt lists there (single code point, fully
#    qualified), the five demo prompts among the training captions, no
#    validation split;
#  - every pipeline stage's manifest says done; the latent store's index and
#    chunk (read by the `safetensors` package) hold 3x16x16 pixel-space
#    images in [-1, 1] with their captions;
#  - the text encoder folder: config.json a CLIPTextConfig, the weights
#    under transformers' names with the config's shapes;
#  - the run: job.json finished, checkpoints/latest names a file, two local
#    ranks of 16;
#  - the grid: a 5-image PNG (5 x 128 + 4 x 2 wide) whose infotext names the
#    five demo prompts and the run's sample_cfg (Pillow);
#  - the report: sdw-eval/1 JSON with chance = 5 / training images, sampled
#    with the run's sample_cfg;
#  - a second run continues: no pipeline, "continuing", more steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
SDW=$(realpath "$SDW")
PY="$PWD/.venv-test/bin/python"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$SDW" demo --help | grep -- --headless >/dev/null
"$SDW" demo --headless --space pixels --dir "$tmp/demo" --steps 4 --minutes 5 --preview-steps 2 \
  --eval-count 4 --eval-steps 2 >"$tmp/out1.txt" 2>&1 || { cat "$tmp/out1.txt"; exit 1; }
for s in emoji filter download preprocess build encode; do
  grep "pipeline $s" "$tmp/out1.txt" >/dev/null || { echo "no $s stage"; exit 1; }
done
grep "sample grid" "$tmp/out1.txt" >/dev/null

"$PY" - "$tmp/demo" <<'EOF'
import json, os, sys
import numpy as np
from PIL import Image
from safetensors.numpy import load_file

d = sys.argv[1]
data = os.path.join(d, "data")
for s in ["emoji", "filter", "download", "preprocess", "build", "encode"]:
    m = json.load(open(os.path.join(data, "manifests", s + ".json")))
    assert m["state"] == "done", (s, m["state"])
idx = json.load(open(os.path.join(data, "latents", "train", "index.json")))
assert idx["latent_shape"] == [3, 16, 16] and idx["scaling_factor"] == 1, idx
t = load_file(os.path.join(data, "latents", "train", idx["chunks"][0]["file"]))
lat = t["latents"].astype(np.float32)
assert lat.shape[1:] == (3, 16, 16) and lat.min() >= -1.001 and lat.max() <= 1.001
assert lat.mean() > 0.3, lat.mean()  # emoji on white: mostly bright
caps = t["captions.bytes"].tobytes().decode()
assert "face" in caps, caps[:200]

# the demo set (sdw-demo(1)) against Unicode's own list
import pyarrow.parquet as pq
subgroups = {"food-fruit", "food-vegetable", "food-prepared", "food-sweet", "heart",
             "transport-air", "animal-mammal", "animal-bird", "animal-marine", "face-smiling",
             "face-affection", "plant-flower", "sport"}
want, sub = set(), None
for line in open("/usr/share/unicode/emoji/emoji-test.txt", encoding="utf-8"):
    if line.startswith("# subgroup:"):
        sub = line.split(":", 1)[1].strip()
    elif ";" in line and not line.startswith("#") and "fully-qualified" in line:
        cps = [c for c in line.split(";")[0].split() if c != "FE0F"]
        if len(cps) == 1 and sub in subgroups:
            want.add(line.split("#", 1)[1].split(None, 2)[2].strip())
meta = pq.read_table(os.path.join(data, "emoji", "metadata.parquet")).to_pydict()
assert set(meta["subgroup"]) <= subgroups, set(meta["subgroup"]) - subgroups
assert set(meta["name"]) == want, (sorted(want - set(meta["name"]))[:5],
                                   sorted(set(meta["name"]) - want)[:5])
assert idx["count"] == len(want), (idx["count"], len(want))
for p in ["red apple", "rocket", "cat face", "pizza", "red heart"]:
    assert p in meta["TEXT"], p
ds = json.load(open(os.path.join(data, "dataset", "dataset_config.json")))
assert ds["val_size"] == 0 and ds["train_size"] == len(want), ds

te = os.path.join(d, "text_encoder")
cfg = json.load(open(os.path.join(te, "config.json")))
assert cfg["model_type"] == "clip_text_model" and cfg["hidden_size"] == 64
assert cfg["num_hidden_layers"] == 2 and cfg["max_position_embeddings"] == 77
w = load_file(os.path.join(te, "model.safetensors"))
assert w["text_model.embeddings.token_embedding.weight"].shape == (cfg["vocab_size"], 64)
assert w["text_model.encoder.layers.1.mlp.fc1.weight"].shape == (cfg["intermediate_size"], 64)
assert abs(w["text_model.embeddings.token_embedding.weight"].std() - 0.02) < 0.001

run = os.path.join(d, "run")
job = json.load(open(os.path.join(run, "job.json")))
assert job["state"] in ("finished", "stopped") and job["step"] == 4, job
latest = open(os.path.join(run, "checkpoints", "latest")).read().strip()
assert os.path.exists(os.path.join(run, "checkpoints", latest)), latest
config = dict(l.split(" = ", 1) for l in open(os.path.join(run, "config.ini")).read().splitlines()
              if " = " in l and not l.startswith("#"))
assert config["local_ranks"] == "2" and config["batch_size"] == "16", config
sample_cfg = float(config["sample_cfg"])

g = Image.open(os.path.join(d, "demo-grid.png"))
assert g.size == (5 * 128 + 4 * 2, 128), g.size
info = g.text["parameters"]
for p in ["red apple", "rocket", "cat face", "pizza", "red heart"]:
    assert p in info, info
assert f"CFG scale: {sample_cfg:g}," in info, (sample_cfg, info)

r = json.load(open(os.path.join(d, "eval.json")))
assert r["format"] == "sdw-eval/1" and r["count"] == 4 and r["k"] == 5
assert abs(r["chance"]["topk"] - 5 / idx["count"]) < 1e-12
assert r["trained"]["step"] == 4
assert r["cfg"] == sample_cfg, (r["cfg"], sample_cfg)
print("demo: stages, store, text encoder, run, grid and report as documented")
EOF

# again, without --space: the directory keeps its pixel space, the data set
# is reused and the run continues
"$SDW" demo --headless --dir "$tmp/demo" --steps 6 --minutes 5 --preview-steps 2 --no-eval \
  >"$tmp/out2.txt" 2>&1 || { cat "$tmp/out2.txt"; exit 1; }
grep "pipeline skipped" "$tmp/out2.txt" >/dev/null
grep "continuing in it" "$tmp/out2.txt" >/dev/null
grep "continuing the run" "$tmp/out2.txt" >/dev/null
"$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['step']==6, j" \
  "$tmp/demo/run/job.json"

rc=0
"$SDW" demo --bogus 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "unknown option: exit $rc"; exit 1; }
echo "demo: ok"
