#!/usr/bin/env python3
"""Regenerates tests/data/goldens/clip-text-tiny/grads.safetensors: the
gradients of transformers' CLIPTextModel (the clip-text-tiny golden model,
its weights.safetensors and io.safetensors' input_ids / attention_mask) for
tests/test_clip_train.c.

Loss = sum(last_hidden_state * R), R = torch.randn([3, 77, 64]) from seed
2024, so dLoss/dlast_hidden_state = R. For mask in (none, the golden's
attention_mask) the backward runs by autograd in float64 (the reference) and
in float32 (what float32 rounding costs: the test's tolerance is set from
it). Stored, with suffix "" (no mask) or "_masked":
  R                                F32 [3,77,64]
  grad<sfx>.<param>                F64, every parameter's gradient except the
                                   token embedding (transformers' names)
  token_grad_rows<sfx>             F64 [U,64]: the token embedding gradient's
                                   rows of the U distinct input ids
  token_ids                        I64 [U]: those ids, ascending
  f32_rel<sfx>                     F64 [1]: the largest error of the float32
                                   run against float64 over all gradients,
                                   each max|f32 - f64| / max(max|f64|, S)
                                   with S = 1e-3 x the largest gradient
                                   element of all (the k_proj biases'
                                   gradients are zero in exact arithmetic:
                                   softmax ignores a per-query constant)

Setup: tools/test-venv's .venv-tools (torch, transformers 4.45).
Run: .venv-tools/bin/python tools/gen_clip_backward_golden.py
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "tests", "data", "goldens", "clip-text-tiny")
TOKEN = "text_model.embeddings.token_embedding.weight"


def grads(model, ids, mask, R):
    # transformers builds its causal mask with torch.full(..., finfo(dtype).min)
    # in the default dtype: float64 needs float64 as the default
    torch.set_default_dtype(next(model.parameters()).dtype)
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    (out * R.to(out.dtype)).sum().backward()
    return {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def main():
    cfg = CLIPTextConfig(**json.load(open(os.path.join(GOLD, "config.json"))))
    cfg._attn_implementation = "eager"
    weights = load_file(os.path.join(GOLD, "weights.safetensors"))
    io = load_file(os.path.join(GOLD, "io.safetensors"))
    ids, attention_mask = io["input_ids"], io["attention_mask"]
    torch.manual_seed(2024)
    R = torch.randn(3, 77, cfg.hidden_size)
    models = {}
    for dtype in (torch.float64, torch.float32):
        m = CLIPTextModel(cfg).to(dtype)
        missing, unexpected = m.load_state_dict({k: v.to(dtype) for k, v in weights.items()},
                                                strict=False)
        assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
        m.eval()
        models[dtype] = m
    token_ids = torch.unique(ids)  # ascending
    out = {"R": R.contiguous(), "token_ids": token_ids.to(torch.int64)}
    for sfx, mask in (("", None), ("_masked", attention_mask)):
        g64 = grads(models[torch.float64], ids, mask, R)
        g32 = grads(models[torch.float32], ids, mask, R)
        worst = 0.0
        S = 1e-3 * max(float(t.abs().max()) for t in g64.values())
        for k in g64:
            a, b = g64[k], g32[k].double()
            worst = max(worst, float((a - b).abs().max()) / max(float(a.abs().max()), S))
            if k == TOKEN:
                out["token_grad_rows" + sfx] = a[token_ids].contiguous()
                rest = torch.ones(a.shape[0], dtype=torch.bool)
                rest[token_ids] = False
                assert float(a[rest].abs().max()) == 0.0
            else:
                out["grad%s.%s" % (sfx, k)] = a.contiguous()
        out["f32_rel" + sfx] = torch.tensor([worst], dtype=torch.float64)
        print("mask" if mask is not None else "no mask",
              "float32 vs float64, worst normwise over the gradients: %.3g" % worst)
    save_file(out, os.path.join(GOLD, "grads.safetensors"))


if __name__ == "__main__":
    main()
