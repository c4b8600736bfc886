"""Compares a data-parallel run with its one-process twin (train_mpi.sh,
train_local_ranks.sh): TMP/one (batch 2B, 1 process), TMP/TWO (batch B on 2
ranks) and TMP/init (the initial weights), 4 steps each, checkpoints at
step 4. The tolerances and why: train_mpi.sh's header.

usage: data_parallel_compare.py TMP TWO"""
import json, sys
import numpy as np
from safetensors.numpy import load_file
tmp, two_name = sys.argv[1], sys.argv[2]
def losses(run):
    lines = [json.loads(l) for l in open(f"{tmp}/{run}/metrics.jsonl")]
    return [(l["step"], l["loss"]) for l in lines if "loss" in l]
one, two = losses("one"), losses(two_name)
assert [s for s, _ in two] == [1, 2, 3, 4], two  # each step once: rank 0 alone logs
assert [s for s, _ in one] == [1, 2, 3, 4], one
for (s, a), (_, b) in zip(one, two):
    assert abs(a - b) <= 1e-5 * abs(a), (s, a, b)
ck = "checkpoints/step-00000004.safetensors"
A, B = load_file(f"{tmp}/one/{ck}"), load_file(f"{tmp}/{two_name}/{ck}")
W0 = load_file(f"{tmp}/init/checkpoints/step-00000001.safetensors")
assert A.keys() == B.keys()
def flat(d, prefix):
    ks = sorted(k for k in d if k.startswith(prefix))
    return np.concatenate([d[k].astype(np.float64).ravel() for k in ks])
w0 = flat(W0, "model.")
for prefix, tol, rel_to_update in (("model.", 1e-3, True), ("ema.", 1e-3, True),
                                    ("adam_m.", 1e-5, False), ("adam_v.", 1e-5, False)):
    a, b = flat(A, prefix), flat(B, prefix)
    den = np.linalg.norm(a - w0) if rel_to_update else np.linalg.norm(a)
    rel = np.linalg.norm(b - a) / den
    print(f"{prefix:8s} normwise difference {rel:.3g} (tolerance {tol:g})")
    assert rel <= tol, (prefix, rel)
