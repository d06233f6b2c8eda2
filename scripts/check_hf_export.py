#!/usr/bin/env python3
"""Checks `moe export --to hf` against transformers: loads the exported directory with AutoModelForCausalLM
and compares its logits with the logits swift-moe computes from the original checkpoint.

    moe logits --model runs/default --ids 1,2,3,4 --ids 5,6,7,8 > /tmp/swift.json
    moe export --checkpoint runs/default --to hf /tmp/hf
    /tmp/moe-ref/bin/python scripts/check_hf_export.py /tmp/hf /tmp/swift.json 1,2,3,4 5,6,7,8

Run it in a throwaway virtual environment (torch, transformers); prints the family and the max abs difference,
and exits non-zero above 1e-4.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    out_dir, swift_json, *seqs = sys.argv[1:]
    ids = torch.tensor([[int(t) for t in s.split(",")] for s in seqs])
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        ref = model(ids).logits
    with open(swift_json) as f:
        ours = torch.tensor(json.load(f)["logits"])
    diff = (ref - ours).abs().max().item()
    print(f"{model.config.model_type} ({type(model).__name__}): logits {list(ref.shape)}, max abs difference {diff:.3e}")
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
