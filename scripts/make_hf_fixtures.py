#!/usr/bin/env python3
"""Writes the project's own golden Hugging Face fixtures: for each supported family a tiny randomly initialized
checkpoint (config.json, generation_config.json, model.safetensors) and expected.json with transformers'
outputs: logits, router logits, the experts each token was sent to with their weights, every hidden state and
greedy generation (checked equal with and without the KV cache).

Run it in a throwaway virtual environment, outside the repository; the tests read the committed output and
never need Python:

    python3 -m venv /tmp/moe-ref && /tmp/moe-ref/bin/pip install torch transformers safetensors
    /tmp/moe-ref/bin/python scripts/make_hf_fixtures.py Tests/Fixtures/hf [family ...]
"""
import json
import math
import os
import sys

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

# Small on purpose (the whole set is committed): hidden 32, 2 layers, 4 query / 2 KV heads of 8, vocab 128,
# 4 routed experts of width 16, top-2.
COMMON = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              head_dim=8, max_position_embeddings=64, bos_token_id=0, eos_token_id=1, pad_token_id=None,
              tie_word_embeddings=False, num_experts_per_tok=2)
DEEPSEEK_MLA = dict(num_key_value_heads=4, kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, head_dim=4,
                    n_routed_experts=4, moe_intermediate_size=16, intermediate_size=48, n_shared_experts=1,
                    first_k_dense_replace=1)
FAMILIES = {
    "mixtral": dict(num_local_experts=4, intermediate_size=16),
    "qwen2_moe": dict(num_experts=4, moe_intermediate_size=16, intermediate_size=48, shared_expert_intermediate_size=24,
                      norm_topk_prob=True),
    "qwen3_moe": dict(num_experts=4, moe_intermediate_size=16, intermediate_size=48, norm_topk_prob=True),
    "olmoe": dict(num_experts=4, intermediate_size=16, norm_topk_prob=False),
    "deepseek_v2": dict(DEEPSEEK_MLA, q_lora_rank=12, topk_method="group_limited_greedy", n_group=2, topk_group=1,
                        routed_scaling_factor=2.0),
    "deepseek_v3": dict(DEEPSEEK_MLA, q_lora_rank=12, n_group=2, topk_group=1, norm_topk_prob=True,
                        routed_scaling_factor=2.5),
    "glm4_moe_lite": dict(DEEPSEEK_MLA, q_lora_rank=12, n_group=1, topk_group=1, norm_topk_prob=True,
                          routed_scaling_factor=1.8),
    "phimoe": dict(num_local_experts=4, intermediate_size=16),
    "granitemoe": dict(num_local_experts=4, intermediate_size=16, embedding_multiplier=12.0, attention_multiplier=0.0625,
                       residual_multiplier=0.22, logits_scaling=6.0),
    "granitemoeshared": dict(num_local_experts=4, intermediate_size=16, shared_intermediate_size=24,
                             embedding_multiplier=12.0, attention_multiplier=0.0625, residual_multiplier=0.22,
                             logits_scaling=6.0),
    "dbrx": dict(d_model=32, n_heads=4, n_layers=2, max_seq_len=64,
                 attn_config=dict(kv_n_heads=2, clip_qkv=8.0, rope_theta=10000.0),
                 ffn_config=dict(ffn_hidden_size=16, moe_num_experts=4, moe_top_k=2)),
    "glm4_moe": dict(n_routed_experts=4, moe_intermediate_size=16, intermediate_size=48, n_shared_experts=1,
                     first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True, use_qk_norm=True,
                     partial_rotary_factor=0.5),
    "dots1": dict(n_routed_experts=4, moe_intermediate_size=16, intermediate_size=48, n_shared_experts=1,
                  first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True),
    "solar_open": dict(n_routed_experts=4, moe_intermediate_size=16, n_shared_experts=1, n_group=1, topk_group=1,
                       norm_topk_prob=True),
    "minimax_m2": dict(num_local_experts=4, intermediate_size=16),
    "flex_olmo": dict(num_experts=4, intermediate_size=16, norm_topk_prob=False),
    "ernie4_5_moe": dict(moe_num_experts=4, moe_k=2, moe_intermediate_size=16, intermediate_size=48,
                         moe_num_shared_experts=1, moe_layer_start_index=1, moe_layer_end_index=1, moe_layer_interval=1),
    "hunyuan_v1_moe": dict(num_experts=4, moe_topk=2, intermediate_size=16, use_qk_norm=True),
    # A window of 4 over 8 prompt tokens (and the generated ones), NoPE on the full-attention layer.
    "exaone_moe": dict(num_hidden_layers=3, num_experts=4, moe_intermediate_size=16, intermediate_size=48,
                       num_shared_experts=1, n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.0,
                       sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                       mlp_layer_types=["dense", "sparse", "sparse"], first_k_dense_replace=1),
    # Sinks, biases, the clamped SwiGLU with a limit the tiny model's pre-activations cross, YaRN with an original
    # context short enough that the ramp falls inside a head of 8 (untruncated, as gpt-oss ships), a window of 4;
    # experts 32 wide, so that both expert matrices split into MXFP4 blocks of 32 (gpt_oss_mxfp4).
    "gpt_oss": dict(num_local_experts=4, intermediate_size=32, swiglu_limit=0.5, sliding_window=4, max_position_embeddings=8192,
                    layer_types=["sliding_attention", "full_attention"],
                    rope_parameters=dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, beta_fast=32.0, beta_slow=1.0,
                                         original_max_position_embeddings=256, truncate=False)),
}


def draw(model, seed):
    """Random weights (std 0.08, so the tiny model's decisions are not all ties), norms and biases perturbed
    away from their constant initial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # gpt-oss's sinks at the scale of attention logits, so they take a real share of each row.
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 if name.endswith(".sinks") else 0.08))
        # Norm scales (by module type: DBRX's attention sits under a module named norm_attn_norm).
        for module in model.modules():
            if "Norm" in type(module).__name__ and getattr(module, "weight", None) is not None:
                module.weight.copy_(1 + torch.randn(module.weight.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.05)


def run(model, ids):
    captured = []

    def hook(module, args, kwargs):
        a = list(args) + [kwargs[k] for k in ("hidden_states", "top_k_index", "top_k_weights") if k in kwargs]
        if len(a) >= 3:
            captured.append({"module": type(module).__name__, "top_k_index": a[1].tolist(), "top_k_weights": a[2].tolist()})

    # The experts modules receive (hidden_states, top_k_index, top_k_weights) after routing.
    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in model.modules()
               if type(m).__name__.endswith("Experts")]
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True, output_router_logits=True, use_cache=False)
    for h in handles:
        h.remove()
    return out, captured


def margins_ok(out, gen_scores, floor=1e-4):
    """Every greedy pick and every router decision clear of a tie by `floor`."""
    for step in gen_scores:
        top = torch.topk(step[0], 2).values
        if (top[0] - top[1]).item() < floor:
            return False
    for rl in out.router_logits or []:
        s = torch.sort(rl.float(), dim=-1, descending=True).values
        if (s[:, :-1] - s[:, 1:]).min().item() < floor:
            return False
    return True


def well_conditioned(model, ids, logits32, limit=2e-5):
    """The float32 reference itself within `limit` of float64: a draw whose float32 rounding alone moves the
    logits by a sizeable part of the 1e-4 tolerance makes a poor fixture."""
    with torch.no_grad():
        logits64 = model.double()(input_ids=ids, use_cache=False).logits
    model.float()
    return (logits64 - logits32.double()).abs().max().item() < limit


def write_expected(d, expected):
    """expected.json, atomically (temp file, fsync, rename)."""
    tmp = os.path.join(d, "expected.json.tmp")
    with open(tmp, "w") as f:
        json.dump(expected, f, allow_nan=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(d, "expected.json"))


def make(family, root, seed=1234):
    overrides = dict(COMMON)
    if family == "dbrx":
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                  "max_position_embeddings", "num_experts_per_tok"):
            overrides.pop(k)
    overrides.update(FAMILIES[family])
    ids = torch.randint(2, 128, (2, 8), generator=torch.Generator().manual_seed(7))
    for attempt in range(50):
        config = AutoConfig.for_model(family, **overrides)
        config._attn_implementation = "eager"
        config._experts_implementation = "eager"  # the per-expert loop, plain float32 (and float64) matmuls
        torch.manual_seed(seed + attempt)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        draw(model, seed + 7919 * attempt)
        out, routing = run(model, ids)
        with torch.no_grad():
            gen = model.generate(ids[:1], max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=True,
                                 output_scores=True, return_dict_in_generate=True)
            nocache = model.generate(ids[:1], max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=False)
        if margins_ok(out, gen.scores) and torch.equal(gen.sequences, nocache) and well_conditioned(model, ids, out.logits):
            break
    else:
        raise SystemExit(f"{family}: no draw with clear margins in 50 attempts")
    d = os.path.join(root, family)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    new = gen.sequences[0, ids.shape[1]:].tolist()
    expected = {
        "fixture_set": "swift-moe", "arch": family, "model_class": type(model).__name__, "seed": seed + attempt,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "input_ids": ids.tolist(),
        "logits": out.logits.tolist(),
        "router_logits": [r.tolist() for r in (out.router_logits or [])],
        "routing": routing,
        "hidden_states_seq0": [h[0].tolist() for h in out.hidden_states],
        "generation": {"new_tokens": new, "max_new_tokens": 6, "greedy": True, "min_new_tokens": 6},
        "config": config.to_dict(),
    }
    write_expected(d, expected)
    print(f"{family}: {type(model).__name__}, attempt {attempt}, new tokens {new}")


FP4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


def to_mxfp4(w):
    """w [..., rows, cols] -> (blocks uint8 [..., rows, cols / 32, 16], scales uint8 [..., rows, cols / 32]) as the
    released gpt-oss checkpoints store experts: blocks of 32 along the input, an E8M0 scale 2^(s - 127) each, and
    FP4 (E2M1) codes two per byte, the even element in the low nibble. Each block's scale is the smallest power of
    two that brings its largest magnitude within 6; codes round to the nearest FP4 value."""
    *prefix, rows, cols = w.shape
    x = w.reshape(*prefix, rows, cols // 32, 32).double()
    amax = x.abs().amax(dim=-1, keepdim=True).clamp_min(2.0 ** -120)
    e = torch.ceil(torch.log2(amax / 6.0))
    scaled = x / torch.exp2(e)
    lut = torch.tensor(FP4_VALUES[:8], dtype=torch.float64)
    idx = (scaled.abs().unsqueeze(-1) - lut).abs().argmin(dim=-1)
    codes = (idx + 8 * (scaled < 0).long()).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (e.squeeze(-1) + 127).to(torch.uint8).contiguous()


def make_mxfp4(root, source="gpt_oss", name="gpt_oss_mxfp4"):
    """The gpt_oss fixture with its experts in MXFP4, laid out as the released checkpoints are (experts as
    [E, out, in] blocks, gate/up rows interleaved), and transformers' outputs on it (it dequantizes MXFP4 on a
    CPU: Mxfp4Config(dequantize=True))."""
    from safetensors.torch import load_file, save_file
    from transformers import Mxfp4Config
    src, d = os.path.join(root, source), os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    out = {}
    for k, v in tensors.items():
        if k.endswith("mlp.experts.gate_up_proj") or k.endswith("mlp.experts.down_proj"):
            out[k + "_blocks"], out[k + "_scales"] = to_mxfp4(v.transpose(1, 2))  # [E, in, out] -> [E, out, in]
        else:
            out[k] = v
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    for extra in ("generation_config.json",):
        with open(os.path.join(src, extra)) as f, open(os.path.join(d, extra), "w") as g:
            g.write(f.read())
    model = AutoModelForCausalLM.from_pretrained(d, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32).eval()
    model.config._attn_implementation = "eager"
    with open(os.path.join(src, "expected.json")) as f:
        ids = torch.tensor(json.load(f)["input_ids"])
    got, routing = run(model, ids)
    with torch.no_grad():
        gen = model.generate(ids[:1], max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=True,
                             output_scores=True, return_dict_in_generate=True)
    if not margins_ok(got, gen.scores):
        print(f"{name}: warning: a decision within 1e-4 of a tie")
    expected = {
        "fixture_set": "swift-moe", "arch": "gpt_oss", "model_class": type(model).__name__, "source": source,
        "note": "experts quantized to MXFP4 by scripts/make_hf_fixtures.py; outputs from transformers' dequantized model",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "input_ids": ids.tolist(), "logits": got.logits.tolist(),
        "router_logits": [r.tolist() for r in (got.router_logits or [])], "routing": routing,
        "hidden_states_seq0": [h[0].tolist() for h in got.hidden_states],
        "generation": {"new_tokens": gen.sequences[0, ids.shape[1]:].tolist(), "max_new_tokens": 6, "greedy": True, "min_new_tokens": 6},
        "config": config,
    }
    write_expected(d, expected)
    print(f"{name}: new tokens {expected['generation']['new_tokens']}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    root = sys.argv[1]
    for family in sys.argv[2:] or list(FAMILIES) + ["gpt_oss_mxfp4"]:
        if family == "gpt_oss_mxfp4":
            make_mxfp4(root)
        else:
            make(family, root)
