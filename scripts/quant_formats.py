#!/usr/bin/env python3
"""Quantization error of candidate 4- and 8-bit block formats on real weight matrices, for choosing swift-moe's
formats (README, "Quantized experts"). Run in a throwaway virtual environment with numpy and gguf; never a
dependency of the product or its tests.

    python scripts/quant_formats.py M1_F32_DIR [Q4_K.gguf] [SWIFT_MOE_Q4_DIR] [MORE_F32_DIRS...]

For each model directory (f32 safetensors) it takes the first two layers' expert matrices and reports, per format,
the bits per weight and the relative RMS error ||W - Q(W)|| / ||W||:
  ggml Q8_0, Q4_0, Q4_1 (gguf-py's reference quantizers), MLX affine 4-bit with group 64 and group 32 (numpy, the
  formula of mlx.core.quantize: scale = (max - min) / 15, bias = min, both f16), and ggml Q4_K when a GGUF made by
  llama-quantize is given (dequantized with gguf-py). With SWIFT_MOE_Q4_DIR (from `moe quantize --to q4`), the
  file swift-moe wrote is decoded here too (its groups are MLX's affine coding or, where that has a smaller error,
  a narrower range or Q4_0's symmetric one, all stored as scale and minimum)."""
import json, struct, sys
import numpy as np
import gguf
from gguf import quants

def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    return raw, hdr, 8 + n

def expert_matrices(d, layers=2):
    raw, hdr, base = read_safetensors(d + "/model.safetensors")
    names = sorted(k for k in hdr if k != "__metadata__" and ".experts." in k and int(k.split(".")[2]) < layers)
    out = {}
    for k in names:
        a, b = hdr[k]["data_offsets"]
        out[k] = np.frombuffer(raw[base + a:base + b], dtype=np.float32).reshape(hdr[k]["shape"])
    return out

def affine(w, group):
    g = w.reshape(-1, group)
    lo, hi = g.min(1, keepdims=True), g.max(1, keepdims=True)
    s = ((hi - lo) / 15).astype(np.float16).astype(np.float32)
    m = lo.astype(np.float16).astype(np.float32)
    q = np.clip(np.rint((g - m) / np.where(s > 0, s, 1)), 0, 15)
    return (q * s + m).reshape(w.shape)

def ggml(w, t):
    return quants.dequantize(quants.quantize(w, t), t).reshape(w.shape)

def rel(w, q):
    return float(np.linalg.norm(w - q) / np.linalg.norm(w))

def decode_swift_q4(d):
    raw, hdr, base = read_safetensors(d + "/model.safetensors")
    meta = json.loads(hdr["__metadata__"]["swift_moe.quantization"])
    out = {}
    for k, info in meta.items():
        if ".experts." not in k or int(k.split(".")[2]) >= 2:
            continue
        rows, cols = int(np.prod(info["shape"][:-1])), info["shape"][-1]
        a, b = hdr[k]["data_offsets"]
        buf = np.frombuffer(raw[base + a:base + b], dtype=np.uint8).reshape(rows, -1)
        codes, sm = buf[:, :cols // 2].reshape(rows, cols // 64, 32), buf[:, cols // 2:].copy().view(np.float16).astype(np.float32)
        lo, hi = codes & 15, codes >> 4
        q = np.concatenate([lo, hi], axis=2).astype(np.float32)
        s, m = sm[:, 0::2][:, :, None], sm[:, 1::2][:, :, None]
        out[k] = (q * s + m).reshape(info["shape"])
    return out

def main():
    args = sys.argv[1:]
    dirs = [a for a in args if not a.endswith(".gguf")]
    q4k = next((a for a in args if a.endswith(".gguf")), None)
    swift_q4 = next((d for d in dirs if "quantization" in open(d + "/config.json").read()), None)
    dirs = [d for d in dirs if d != swift_q4]
    for d in dirs:
        mats = expert_matrices(d)
        w = np.concatenate([m.ravel() for m in mats.values()])
        print(f"{d}: {len(mats)} expert matrices, {w.size} weights")
        rows = [("ggml Q8_0", 8.5, lambda x: ggml(x, gguf.GGMLQuantizationType.Q8_0)),
                ("ggml Q4_0", 4.5, lambda x: ggml(x, gguf.GGMLQuantizationType.Q4_0)),
                ("ggml Q4_1", 5.0, lambda x: ggml(x, gguf.GGMLQuantizationType.Q4_1)),
                ("MLX affine 4-bit, group 64", 4.5, lambda x: affine(x, 64)),
                ("MLX affine 4-bit, group 32", 5.0, lambda x: affine(x, 32))]
        for name, bits, f in rows:
            q = np.concatenate([f(m.reshape(-1, m.shape[-1])).ravel() for m in mats.values()])
            print(f"  {name:30s} {bits:4.2f} bits/weight  relative RMS error {rel(w, q):.5f}")
        if q4k and d == dirs[0]:
            reader = gguf.GGUFReader(q4k)
            got = []
            for t in reader.tensors:
                if "_exps" in t.name and int(t.name.split(".")[1]) < 2:
                    got.append((t.name, quants.dequantize(t.data, t.tensor_type)))
            # GGUF stacks each layer's experts ([E, F, D] per projection); match by layer and projection.
            proj = {"ffn_gate_exps": "w1", "ffn_up_exps": "w3", "ffn_down_exps": "w2"}
            ref, deq, types = [], [], set()
            for name, q in got:
                layer, kind = int(name.split(".")[1]), proj[name.split(".")[2]]
                for e in range(q.shape[0]):
                    ref.append(mats[f"model.layers.{layer}.block_sparse_moe.experts.{e}.{kind}.weight"].ravel())
                    deq.append(q[e].ravel())
            types = {t.tensor_type.name for t in reader.tensors if "_exps" in t.name}
            print(f"  {'ggml Q4_K (llama-quantize)':30s} {4.5:4.2f} bits/weight  relative RMS error {rel(np.concatenate(ref), np.concatenate(deq)):.5f}  ({', '.join(sorted(types))})")
        if swift_q4 and d == dirs[0]:
            got = decode_swift_q4(swift_q4)
            w2 = np.concatenate([mats[k].ravel() for k in got])
            q2 = np.concatenate([got[k].ravel() for k in got])
            print(f"  {'swift-moe q4 (its file)':30s} {4.5:4.2f} bits/weight  relative RMS error {rel(w2, q2):.5f}")

if __name__ == "__main__":
    main()
