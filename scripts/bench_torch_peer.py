#!/usr/bin/env python3
"""swift-moe against PyTorch on the same shapes, in the same run (BENCHMARKS.md: peers side by side).

Run in a throwaway virtual environment with torch and numpy (the product and its tests never need them):

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch numpy
    /tmp/peer/bin/python scripts/bench_torch_peer.py .build/release/moe [--runs 5]

It runs `moe bench core --json` and `moe bench layer --json`, then the same work in torch (threads = the cores
swift-moe uses), each figure the median of --runs after a warm-up (11 for matrix products), and prints both as
ratios to swift-moe's sgemm / copy ceilings of that run (the kernel that matches the CPU's vector ISA). The MoE
layers in torch are the eager expert loop of Hugging Face's Mixtral and Qwen2-MoE modules (router, softmax, top-k,
a loop over the experts with index_add_), which is what a transformers user runs on a CPU. FLOPs are counted as
in BENCHMARKS.md: useful ones only, the same formula for both.
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F


def median_stats(samples):
    s = sorted(samples)
    n = len(s)
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return med, s[0], s[-1]


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def rate(work, seconds):
    """Median, min and max rate from time samples."""
    med, lo, hi = median_stats(seconds)
    return work / med, work / hi, work / lo


def moe_layer(d, f, e, k, normalize, shared, n, gen):
    router = (torch.randn(e, d, generator=gen) * 0.02).requires_grad_()
    w1 = (torch.randn(e, f, d, generator=gen) * 0.02).requires_grad_()
    w3 = (torch.randn(e, f, d, generator=gen) * 0.02).requires_grad_()
    w2 = (torch.randn(e, d, f, generator=gen) * 0.02).requires_grad_()
    sw = None
    if shared:
        sw = [(torch.randn(shared, d, generator=gen) * 0.02).requires_grad_(),
              (torch.randn(shared, d, generator=gen) * 0.02).requires_grad_(),
              (torch.randn(d, shared, generator=gen) * 0.02).requires_grad_()]

    def forward(x):
        logits = x @ router.t()
        probs = F.softmax(logits, dim=-1, dtype=torch.float)
        weights, selected = torch.topk(probs, k, dim=-1)
        if normalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(selected, num_classes=e).permute(2, 1, 0)  # [E, K, N], as transformers does
        for ex in range(e):
            slot, tok = torch.where(mask[ex])
            if tok.numel() == 0:
                continue
            xs = x[tok]
            h = F.silu(xs @ w1[ex].t()) * (xs @ w3[ex].t())
            out.index_add_(0, tok, (h @ w2[ex].t()) * weights[tok, slot, None])
        if sw is not None:
            out = out + (F.silu(x @ sw[0].t()) * (x @ sw[1].t())) @ sw[2].t()
        return out

    params = [router, w1, w3, w2] + (sw or [])
    flops = 2 * n * d * e + n * k * 6 * d * f + (n * 6 * d * shared if shared else 0)
    return forward, params, flops


def torch_figures(runs):
    gen = torch.Generator().manual_seed(1)
    figs = {}
    n = 2048
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    figs["sgemm 2048^3"] = ("GFLOP/s", rate(2 * n ** 3 / 1e9, timed(lambda: a @ b.t(), max(runs, 11))), "sgemm")
    count = 16 << 20
    x, y = torch.randn(count, generator=gen), torch.randn(count, generator=gen)
    figs["elementwise add"] = ("GB/s", rate(3 * count * 4 / 1e9, timed(lambda: x + y, runs)), "copy")
    figs["elementwise silu"] = ("GB/s", rate(2 * count * 4 / 1e9, timed(lambda: F.silu(x), runs)), "copy")
    rows = x.view(count // 1024, 1024)
    figs["softmax"] = ("GB/s", rate(2 * count * 4 / 1e9, timed(lambda: F.softmax(rows, dim=-1), runs)), "copy")
    t, hq, hkv, dh = 512, 16, 8, 64
    q = torch.randn(1, hq, t, dh, generator=gen, requires_grad=True)
    kk = torch.randn(1, hkv, t, dh, generator=gen, requires_grad=True)
    vv = torch.randn(1, hkv, t, dh, generator=gen, requires_grad=True)
    go = torch.randn(1, hq, t, dh, generator=gen)
    attn_flops = hq * (t * (t + 1) // 2) * dh * 4 / 1e9  # visible keys only, as swift-moe counts

    def attn():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=True)

    def attn_fb():
        F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=True).backward(go)

    figs["attention forward"] = ("GFLOP/s", rate(attn_flops, timed(attn, runs)), "sgemm")
    figs["attention forward+backward"] = ("GFLOP/s", rate(3 * attn_flops, timed(attn_fb, runs)), "sgemm")
    for name, (d, f, e, k, normalize, shared) in {
        "L1": (512, 1408, 8, 2, True, 0), "L2": (512, 176, 64, 6, False, 352),
    }.items():
        nt = 4096
        fwd, params, flops = moe_layer(d, f, e, k, normalize, shared, nt, gen)
        xin = torch.randn(nt, d, generator=gen)
        gout = torch.randn(nt, d, generator=gen)

        def run_fwd():
            with torch.no_grad():
                fwd(xin)

        def run_fb():
            xg = xin.clone().requires_grad_()
            fwd(xg).backward(gout)
            for p in params:
                p.grad = None

        figs[f"{name} forward"] = ("GFLOP/s", rate(flops / 1e9, timed(run_fwd, runs)), "sgemm")
        figs[f"{name} forward+backward"] = ("GFLOP/s", rate(3 * flops / 1e9, timed(run_fb, runs)), "sgemm")
    return figs


def moe_figures(moe, runs):
    core = json.loads(subprocess.run([moe, "bench", "core", "--json", "--runs", str(runs)], check=True,
                                     capture_output=True, text=True).stdout)
    layer = json.loads(subprocess.run([moe, "bench", "layer", "--json", "--shape", "all", "--runs", str(runs)], check=True,
                                      capture_output=True, text=True).stdout)
    by = {}
    for f in core["figures"]:
        key = {"elementwise add": "elementwise add", "elementwise silu": "elementwise silu", "softmax (last axis)": "softmax",
               "attention forward (causal)": "attention forward", "attention forward+backward": "attention forward+backward"}.get(f["name"])
        if f["name"] == "matmul, tensor API" and f["shape"].startswith("2048"):
            key = "sgemm 2048^3"
        if key:
            by[key] = f
    for f in layer["figures"]:
        if f["name"].startswith(("L1 ", "L2 ")):
            by[f["name"]] = f
    return core, layer, by


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("moe", help="path of the moe executable (release build)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cores = int(os.environ.get("MOE_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(cores)
    core, layer, ours = moe_figures(args.moe, args.runs)
    theirs = torch_figures(args.runs)
    machine = core["machine"]
    ceil = {"sgemm": core["ceilings"]["sgemm (GFLOP/s)"]["median"], "copy": core["ceilings"]["copy (GB/s)"]["median"]}
    layer_sgemm = layer["ceilings"]["sgemm (GFLOP/s)"]["median"]
    print(f"CPU: {machine['cpu']['model']} ({machine['cpu']['isa']}); swift-moe: {machine['blas']['library']} "
          f"{machine['blas']['kernel']} kernels; torch {torch.__version__} "
          f"({'MKL' if torch.backends.mkl.is_available() else 'no MKL'}, {torch.backends.cpu.get_cpu_capability()}), "
          f"{cores} threads")
    print(f"ceilings (swift-moe's run, the matching kernel): sgemm {ceil['sgemm']:.1f} GFLOP/s (layer run {layer_sgemm:.1f}), "
          f"copy {ceil['copy']:.1f} GB/s; median of {args.runs} (11 for sgemm) after a warm-up")
    print(f"{'figure':30}{'unit':9}{'swift-moe median (min-max)':30}{'ratio':8}{'torch median (min-max)':30}{'ratio':8}{'swift-moe / torch':>17}")
    for key in ["sgemm 2048^3", "elementwise add", "elementwise silu", "softmax", "attention forward",
                "attention forward+backward", "L1 forward", "L1 forward+backward", "L2 forward", "L2 forward+backward"]:
        unit, (tm, tlo, thi), which = theirs[key]
        f = ours[key]
        c = layer_sgemm if key.startswith("L") else ceil[which]
        om, olo, ohi = f["value"]["median"], f["value"]["min"], f["value"]["max"]
        print(f"{key:30}{unit:9}{f'{om:.1f} ({olo:.1f}-{ohi:.1f})':30}{om / c:<8.3f}{f'{tm:.1f} ({tlo:.1f}-{thi:.1f})':30}"
              f"{tm / c:<8.3f}{om / tm:>17.2f}")


if __name__ == "__main__":
    main()
