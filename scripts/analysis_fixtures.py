#!/usr/bin/env python3
"""Independent values for the static analyses of `moe analyze` (Lo et al. 2024), computed with numpy and scipy
from the weights of two Hugging Face fixtures, written to Tests/Fixtures/analysis/expected.json. The Swift tests
read that file and need no Python.

Run in a throwaway virtual environment, never from the product or its tests:
    python3 -m venv /tmp/ana && /tmp/ana/bin/pip install numpy scipy
    /tmp/ana/bin/python scripts/analysis_fixtures.py

What it computes, per MoE layer and per matrix (gate [F, D], up [F, D], down [D, F]):
  - matrix level: cosine similarity of the experts' flattened matrices;
  - neuron level: each matrix averaged over its input axis (gate, up) or output axis (down), one value per neuron,
    then compared by cosine;
  - aligned: for each pair of experts, scipy.optimize.linear_sum_assignment (maximize) over the cosine similarities
    of their neurons (rows of gate/up, columns of down), the cosine of the flattened matrices after the second
    expert's neurons are permuted, and scipy.stats.kendalltau of the permutation against the identity;
  - router: cosine similarity of the router's rows, and scipy.stats.linregress of the router similarities
    (y) against the neuron-level similarities (x), both over the pairs of distinct experts;
  - PCA: numpy's SVD of the z-normalized (ddof=1) experts (matrix level, [E, F*D], down transposed to [F, D]) and
    neurons (neuron level, [E*F, D]), the first two coordinates (compared up to sign) and explained shares.
It also solves random assignment problems (square and rectangular, min and max) as plain cases.

And the dynamic analyses, from a forward of each fixture written here in numpy (float64; checked against the
logits transformers wrote into the fixture's expected.json): a fixed text of 12 tokens in windows of 8 (8 + 4,
each from an empty cache), and per MoE layer every expert on every token of the layer's input: the mean cosine and
angular similarity of the experts' outputs, the router score rank against output norm rank counts, the routing
weights, load and REAP saliency, the gate activations at positions 0 and 5, the loss, the loss with each expert
removed from the router's choice, and with top-k = 1 ... E in every layer.
"""
import json
import os
import struct
import sys

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import kendalltau, linregress

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "Fixtures")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


NAMES = {
    "mixtral": ("model.layers.{l}.block_sparse_moe.experts.{e}.{m}.weight", {"gate": "w1", "up": "w3", "down": "w2"},
                "model.layers.{l}.block_sparse_moe.gate.weight"),
    "qwen2_moe": ("model.layers.{l}.mlp.experts.{e}.{m}_proj.weight", {"gate": "gate", "up": "up", "down": "down"},
                  "model.layers.{l}.mlp.gate.weight"),
}


def cosine_matrix(vectors):
    v = np.array(vectors)
    g = v @ v.T
    d = np.sqrt(np.outer(np.diag(g), np.diag(g)))
    c = np.where(d > 0, g / np.where(d > 0, d, 1), 0.0)
    np.fill_diagonal(c, 1.0)
    return c


def neuron_vectors(m, matrix):
    return m.T if matrix == "down" else m  # each row one neuron, D long


def pca(x, k=2):
    x = np.array(x, dtype=np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
    z = np.where(sd > 0, (x - mean) / np.where(sd > 0, sd, 1), 0.0)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    coords = u[:, :k] * s[:k]
    total = (s ** 2).sum()
    return coords.tolist(), ((s[:k] ** 2) / total).tolist()


def analyse(family):
    d = os.path.join(FIXTURES, "hf", family)
    config = json.load(open(os.path.join(d, "config.json")))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    pattern, spelled, router_name = NAMES[family]
    layers = []
    for l in range(config["num_hidden_layers"]):
        if router_name.format(l=l) not in w:
            continue
        experts = config.get("num_local_experts") or config.get("num_experts")
        router = w[router_name.format(l=l)]
        router_cos = cosine_matrix(router)
        entry = {"layer": l, "router": router_cos.tolist(), "matrices": []}
        for matrix in ("gate", "up", "down"):
            ms = [w[pattern.format(l=l, e=e, m=spelled[matrix])] for e in range(experts)]
            flat = cosine_matrix([m.ravel() for m in ms])
            means = cosine_matrix([m.mean(axis=1) if matrix != "down" else m.mean(axis=0) for m in ms])
            aligned = []
            for i in range(experts):
                for j in range(i + 1, experts):
                    a, b = neuron_vectors(ms[i], matrix), neuron_vectors(ms[j], matrix)
                    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
                    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
                    rows, cols = linear_sum_assignment(ua @ ub.T, maximize=True)
                    bp = b[cols]
                    sim = float((a * bp).sum() / (np.linalg.norm(a) * np.linalg.norm(bp)))
                    tau = float(kendalltau(cols, np.arange(len(cols))).statistic)
                    aligned.append({"a": i, "b": j, "similarity": sim, "kendall_tau": tau, "permutation": cols.tolist()})
            lower = np.tril_indices(experts, -1)
            reg = linregress(means[lower], router_cos[lower])
            matrix_pca, matrix_share = pca([neuron_vectors(m, matrix).ravel() for m in ms])
            neuron_pca, neuron_share = pca(np.concatenate([neuron_vectors(m, matrix) for m in ms]))
            entry["matrices"].append({
                "matrix": matrix, "cosine": flat.tolist(), "neuron_cosine": means.tolist(), "aligned": aligned,
                "router_regression": {"slope": reg.slope, "intercept": reg.intercept, "r2": reg.rvalue ** 2},
                "pca_experts": matrix_pca, "pca_experts_explained": matrix_share,
                "pca_neurons": neuron_pca, "pca_neurons_explained": neuron_share,
            })
        layers.append(entry)
    return {"family": family, "layers": layers}


DYNAMIC_TOKENS = [3, 17, 99, 4, 56, 23, 77, 8, 120, 64, 5, 33]
DYNAMIC_CONTEXT = 8
ACTIVATION_POSITIONS = [0, 5]


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1 + np.exp(-x))


def rope(x, positions, theta):
    # x [T, H, Dh], rotate-half layout
    dh = x.shape[-1]
    half = dh // 2
    inv = 1.0 / theta ** (np.arange(half, dtype=np.float64) * 2 / dh)
    ang = np.outer(positions, inv)  # [T, half]
    c, s_ = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * c - b * s_, b * c + a * s_], axis=-1)


class Forward:
    """The fixture's model in numpy (mixtral and qwen2_moe layouts), with the MoE inputs captured per layer."""

    def __init__(self, family, config, w):
        self.f, self.c, self.w = family, config, w
        self.pattern, self.spelled, self.router = NAMES[family]
        self.theta = config["rope_parameters"]["rope_theta"]
        self.eps = config["rms_norm_eps"]
        self.k = config["num_experts_per_tok"]
        self.e = config.get("num_local_experts") or config.get("num_experts")
        self.normalize = True if family == "mixtral" else config.get("norm_topk_prob", False)

    def expert(self, l, e, h):
        g = self.w[self.pattern.format(l=l, e=e, m=self.spelled["gate"])]
        u = self.w[self.pattern.format(l=l, e=e, m=self.spelled["up"])]
        d = self.w[self.pattern.format(l=l, e=e, m=self.spelled["down"])]
        act = silu(h @ g.T)
        return (act * (h @ u.T)) @ d.T, act

    def route(self, l, h, k, removed):
        logits = h @ self.w[self.router.format(l=l)].T
        for e in removed:
            logits[:, e] = -1e30
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        weights = np.take_along_axis(p, top, axis=1)
        if self.normalize:
            weights = weights / weights.sum(axis=1, keepdims=True)
        return p, top, weights

    def run(self, ids, k=None, removed=None, capture=None):
        c, w = self.c, self.w
        t, d = len(ids), c["hidden_size"]
        hq, hkv, dh = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        x = w["model.embed_tokens.weight"][ids]
        pos = np.arange(t)
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            a = p + "self_attn."
            h = rms(x, w[p + "input_layernorm.weight"], self.eps)
            def proj(name):
                y = h @ w[a + name + ".weight"].T
                return y + w[a + name + ".bias"] if (a + name + ".bias") in w else y
            q = rope(proj("q_proj").reshape(t, hq, dh), pos, self.theta)
            kk = rope(proj("k_proj").reshape(t, hkv, dh), pos, self.theta)
            v = proj("v_proj").reshape(t, hkv, dh)
            out = np.zeros((t, hq, dh))
            for head in range(hq):
                g = head // (hq // hkv)
                sc = q[:, head] @ kk[:, g].T / np.sqrt(dh)
                sc = np.where(np.tril(np.ones((t, t))) > 0, sc, -np.inf)
                pr = np.exp(sc - sc.max(axis=1, keepdims=True))
                pr /= pr.sum(axis=1, keepdims=True)
                out[:, head] = pr @ v[:, g]
            x = x + out.reshape(t, hq * dh) @ w[a + "o_proj.weight"].T
            h = rms(x, w[p + "post_attention_layernorm.weight"], self.eps)
            probs, top, weights = self.route(l, h, k or self.k, (removed or {}).get(l, []))
            moe = np.zeros((t, d))
            for r in range(t):
                for j in range(top.shape[1]):
                    moe[r] += weights[r, j] * self.expert(l, top[r, j], h[r:r + 1])[0][0]
            if self.f == "qwen2_moe":
                sp = p + "mlp.shared_expert."
                shared = (silu(h @ w[sp + "gate_proj.weight"].T) * (h @ w[sp + "up_proj.weight"].T)) @ w[sp + "down_proj.weight"].T
                moe += (1 / (1 + np.exp(-(h @ w[p + "mlp.shared_expert_gate.weight"].T)))) * shared
            if capture is not None:
                capture.append((l, h, probs, top, weights))
            x = x + moe
        x = rms(x, w["model.norm.weight"], self.eps)
        return x @ w["lm_head.weight"].T

    def loss(self, ids, **kw):
        total, count = 0.0, 0
        for start in range(0, len(ids), DYNAMIC_CONTEXT):
            part = ids[start:start + DYNAMIC_CONTEXT]
            if len(part) < 2:
                continue
            logits = self.run(part, **kw)
            for i in range(len(part) - 1):
                row = logits[i]
                m = row.max()
                total += m + np.log(np.exp(row - m).sum()) - row[part[i + 1]]
                count += 1
        return total / count


def dynamic(family):
    d = os.path.join(FIXTURES, "hf", family)
    config = json.load(open(os.path.join(d, "config.json")))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    fw = Forward(family, config, w)
    # The numpy forward against transformers' logits for the fixture's own inputs.
    golden = json.load(open(os.path.join(d, "expected.json")))
    ids0 = golden["input_ids"][0]
    err = np.abs(fw.run(ids0) - np.array(golden["logits"][0])).max()
    assert err < 1e-4, (family, err)
    e, layers = fw.e, config["num_hidden_layers"]
    sums = {l: {"cos": np.zeros((e, e)), "ang": np.zeros((e, e)), "counts": np.zeros((e, e), dtype=int), "top": 0, "n": 0,
                "weights": [], "load": np.zeros(e, dtype=int), "sal": np.zeros(e), "act": []} for l in range(layers)}
    ids = DYNAMIC_TOKENS
    for start in range(0, len(ids), DYNAMIC_CONTEXT):
        part = ids[start:start + DYNAMIC_CONTEXT]
        captured = []
        fw.run(part, capture=captured)
        for l, h, probs, top, weights in captured:
            acc = sums[l]
            outs = [fw.expert(l, x, h) for x in range(e)]
            y = np.stack([o[0] for o in outs])  # [E, T, D]
            norms = np.linalg.norm(y, axis=2)  # [E, T]
            for r in range(len(part)):
                u = y[:, r, :] / np.where(norms[:, r:r + 1] > 0, norms[:, r:r + 1], 1)
                c = np.clip(u @ u.T, -1, 1)
                np.fill_diagonal(c, 1.0)
                acc["cos"] += c
                acc["ang"] += 1 - np.arccos(c) / np.pi
                by_score = np.argsort(-probs[r], kind="stable")
                norm_rank = np.empty(e, dtype=int)
                norm_rank[np.argsort(-norms[:, r], kind="stable")] = np.arange(e)
                for i, x in enumerate(by_score):
                    acc["counts"][i, norm_rank[x]] += 1
                acc["top"] += int(norm_rank[by_score[0]] == 0)
                row = np.zeros(e)
                for j in range(top.shape[1]):
                    row[top[r, j]] += weights[r, j]
                    acc["load"][top[r, j]] += 1
                    acc["sal"][top[r, j]] += weights[r, j] * norms[top[r, j], r]
                acc["weights"].append(row.tolist())
            for p in ACTIVATION_POSITIONS:
                if start <= p < start + len(part):
                    acc["act"].append({"token": p, "values": [outs[x][1][p - start].tolist() for x in range(e)]})
            acc["n"] += len(part)
    out = {"family": family, "tokens": ids, "context": DYNAMIC_CONTEXT, "loss": fw.loss(ids), "layers": []}
    for l in range(layers):
        acc, n = sums[l], sums[l]["n"]
        ang = acc["ang"] / n
        out["layers"].append({
            "layer": l, "cosine": (acc["cos"] / n).tolist(), "angular": ang.tolist(),
            "mean_angular": float((ang.sum() - np.trace(ang)) / (e * (e - 1))),
            "counts": acc["counts"].tolist(), "top_score_largest_norm": acc["top"] / n,
            "weights": acc["weights"], "load": acc["load"].tolist(),
            "saliency": [float(acc["sal"][x] / acc["load"][x]) if acc["load"][x] else 0.0 for x in range(e)],
            "activations": acc["act"],
            "removal": [fw.loss(ids, removed={l: [x]}) for x in range(e)],
        })
    out["top_k"] = [fw.loss(ids, k=k) for k in range(1, e + 1)]
    return out


def assignment_cases():
    rng = np.random.default_rng(12)
    cases = []
    for n, m in [(7, 7), (5, 9), (9, 5), (1, 4), (40, 40)]:
        cost = rng.normal(size=(n, m))
        for maximize in (False, True):
            r, c = linear_sum_assignment(cost, maximize=maximize)
            cases.append({"rows": n, "columns": m, "maximize": maximize, "cost": cost.ravel().tolist(),
                          "assigned_rows": r.tolist(), "assigned_columns": c.tolist(), "total": float(cost[r, c].sum())})
    perm = rng.permutation(50)
    return cases, {"permutation": perm.tolist(), "tau": float(kendalltau(perm, np.arange(50)).statistic)}


def main():
    cases, tau = assignment_cases()
    out = {"generator": "scripts/analysis_fixtures.py", "numpy": np.__version__,
           "scipy": __import__("scipy").__version__, "assignment": cases, "kendall": tau,
           "models": [analyse("mixtral"), analyse("qwen2_moe")], "dynamic": [dynamic("mixtral"), dynamic("qwen2_moe")]}
    path = os.path.join(FIXTURES, "analysis", "expected.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
