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
           "models": [analyse("mixtral"), analyse("qwen2_moe")]}
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
