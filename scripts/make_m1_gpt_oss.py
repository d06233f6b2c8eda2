#!/usr/bin/env python3
"""Writes M1's sizes (../shared/BENCHMARKS.md: vocab 32000, D 1024, 8 layers, 16 heads, 8 KV heads, head dim 64,
8 experts of width 2816, top-2) as a gpt-oss checkpoint, for `moe bench model` on the gpt_oss engine path:
attention with biases and sinks, sliding windows of 128 on every other layer, YaRN as the released models set it
(theta 150000, factor 32 over 4096), a biased router, biased experts with the clamped SwiGLU, and the experts in
MXFP4 as the released checkpoints store them (`*_blocks` [E, rows, cols/32, 16], `*_scales` [E, rows, cols/32],
rows the output features, gate and up rows interleaved). Random normal(0, 0.02) weights from a fixed seed, norms 1,
biases normal(0, 0.02), sinks 0; everything but the experts in BF16 (as released). numpy only.

The MXFP4 coding: per block of 32, the scale is the smallest power of two that brings the largest magnitude within
6 (FP4 E2M1's largest value); codes round to the nearest FP4 value; the even element sits in the low nibble.

Usage: make_m1_gpt_oss.py OUTDIR"""
import json, os, struct, sys
import numpy as np

out = sys.argv[1]
D, F, E, K, L, V, H, KV, Dh = 1024, 2816, 8, 2, 8, 32000, 16, 8, 64
cfg = {
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": D, "intermediate_size": F,
    "num_local_experts": E, "num_experts_per_tok": K, "num_hidden_layers": L, "vocab_size": V, "num_attention_heads": H,
    "num_key_value_heads": KV, "head_dim": Dh, "attention_bias": True, "hidden_act": "silu", "rms_norm_eps": 1e-5,
    "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * (L // 2),
    "max_position_embeddings": 131072, "rope_parameters": {"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
    "beta_fast": 32.0, "beta_slow": 1.0, "original_max_position_embeddings": 4096, "truncate": False},
    "swiglu_alpha": 1.702, "swiglu_limit": 7.0, "router_aux_loss_coef": 0.9, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "initializer_range": 0.02,
    "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
}
FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float32)


def mxfp4(w):
    """w [E, rows, cols] f32 -> (blocks uint8 [E, rows, cols/32, 16], scales uint8 [E, rows, cols/32])."""
    e, rows, cols = w.shape
    x = w.reshape(e, rows, cols // 32, 32)
    amax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 2.0 ** -120)
    exp = np.ceil(np.log2(amax / 6.0))
    scaled = x / np.exp2(exp)
    idx = np.abs(np.abs(scaled)[..., None] - FP4).argmin(axis=-1).astype(np.uint8)
    codes = idx + 8 * (scaled < 0).astype(np.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.astype(np.uint8), (exp[..., 0] + 127).astype(np.uint8)


def bf16(a):
    b = a.astype(np.float32).view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


rng = np.random.default_rng(0)
tensors = {}  # name -> (dtype, array)
def normal(shape, std=0.02):
    return rng.standard_normal(shape, dtype=np.float32) * std
tensors["model.embed_tokens.weight"] = ("BF16", bf16(normal((V, D))))
tensors["lm_head.weight"] = ("BF16", bf16(normal((V, D))))
tensors["model.norm.weight"] = ("BF16", bf16(np.ones(D, np.float32)))
for l in range(L):
    p = f"model.layers.{l}."
    a = p + "self_attn."
    for n, rows, cols in (("q_proj", H * Dh, D), ("k_proj", KV * Dh, D), ("v_proj", KV * Dh, D), ("o_proj", D, H * Dh)):
        tensors[a + n + ".weight"] = ("BF16", bf16(normal((rows, cols))))
        tensors[a + n + ".bias"] = ("BF16", bf16(normal((rows,))))
    tensors[a + "sinks"] = ("BF16", bf16(np.zeros(H, np.float32)))
    tensors[p + "input_layernorm.weight"] = ("BF16", bf16(np.ones(D, np.float32)))
    tensors[p + "post_attention_layernorm.weight"] = ("BF16", bf16(np.ones(D, np.float32)))
    tensors[p + "mlp.router.weight"] = ("BF16", bf16(normal((E, D))))
    tensors[p + "mlp.router.bias"] = ("BF16", bf16(normal((E,))))
    x = p + "mlp.experts."
    for n, rows, cols in (("gate_up_proj", 2 * F, D), ("down_proj", D, F)):
        blocks, scales = mxfp4(normal((E, rows, cols)))
        tensors[x + n + "_blocks"] = ("U8", blocks)
        tensors[x + n + "_scales"] = ("U8", scales)
        tensors[x + n + "_bias"] = ("BF16", bf16(normal((E, rows))))
names = sorted(tensors)
header, off = {}, 0
for n in names:
    dt, arr = tensors[n]
    header[n] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + arr.nbytes]}
    off += arr.nbytes
header["__metadata__"] = {"format": "pt"}
hb = json.dumps(header).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
os.makedirs(out, exist_ok=True)
tmp = os.path.join(out, "model.safetensors.tmp")
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(hb))); f.write(hb)
    for n in names:
        f.write(np.ascontiguousarray(tensors[n][1]).tobytes())
    f.flush(); os.fsync(f.fileno())
os.replace(tmp, os.path.join(out, "model.safetensors"))
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=1)
print(out, off / 1e9, "GB")
