"""Extract a rank-32 LoRA from two SD1.5-shaped UNets (random weights of the real shapes; the tuned one
differs from the base by a decaying-spectrum change plus small full-rank noise, like a fine-tune): Kiln's
randomized SVD against a full SVD per layer, in one run. Target: >= 5x faster while keeping >= 99% of the
full SVD's captured energy at the same rank.

    .venv/bin/python bench/bench_extract.py [--rank 32] [--conv] [--all]

The full SVD of all 192 transformer layers takes 5-8 minutes on 2 cores, so by default both methods run on
the first two layers of every distinct shape (30 layers, every shape kind of the UNet); --all runs them all.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cli  # noqa: E402

cli.load_pack()
from kiln.core.tools.lowrank import randomized_svd  # noqa: E402
from shapes import sd15_unet_layers  # noqa: E402


def pair(shape, g):
    out_dim = shape[0]
    cols = int(torch.tensor(shape[1:]).prod())
    base = torch.randn(out_dim, cols, generator=g) / cols ** 0.5
    k = min(96, out_dim, cols)
    spectrum = 0.05 * torch.exp(-torch.arange(k, dtype=torch.float32) / 12.0)
    qa, _ = torch.linalg.qr(torch.randn(out_dim, k, generator=g))
    qb, _ = torch.linalg.qr(torch.randn(cols, k, generator=g))
    tuned = base + (qa * spectrum) @ qb.T + 1e-4 * torch.randn(out_dim, cols, generator=g)
    return tuned, base


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--conv", action="store_true", help="include the ResNet 3x3 convs")
    p.add_argument("--oversample", type=int, default=16)
    p.add_argument("--power-iters", type=int, default=6)
    p.add_argument("--all", action="store_true", help="every layer instead of two per distinct shape")
    p.add_argument("--per-shape", type=int, default=2)
    args = p.parse_args()
    every = sd15_unet_layers(conv=args.conv)
    layers, seen = [], {}
    for name, shape in every:
        seen[shape] = seen.get(shape, 0) + 1
        if args.all or seen[shape] <= args.per_shape:
            layers.append((name, shape))
    g = torch.Generator().manual_seed(0)
    t_full = t_fast = 0.0
    e_full = e_fast = 0.0
    worst, worst_name = 1.0, ""
    for name, shape in layers:
        tuned, base = pair(shape, g)
        t = time.perf_counter()
        delta = tuned - base
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        full_up, full_down = u[:, :args.rank] * s[:args.rank], vh[:args.rank]
        t_full += time.perf_counter() - t
        t = time.perf_counter()
        delta = tuned - base
        ru, rs, rvh = randomized_svd(delta, args.rank, args.oversample, args.power_iters, g)
        fast_up, fast_down = ru * rs, rvh
        t_fast += time.perf_counter() - t
        total = float((delta.double() ** 2).sum())
        ef = total - float(((delta - full_up @ full_down).double() ** 2).sum())
        er = total - float(((delta - fast_up @ fast_down).double() ** 2).sum())
        e_full += ef
        e_fast += er
        if er / ef < worst:
            worst, worst_name = er / ef, f"{name} {tuple(shape)}"
    print(f"SD1.5-shaped UNet pair: {len(layers)} of {len(every)} layers{' (with 3x3 convs)' if args.conv else ''}, rank {args.rank}")
    print(f"full SVD per layer: {t_full:.2f} s; Kiln randomized SVD (oversample {args.oversample}, "
          f"{args.power_iters} power iterations): {t_fast:.2f} s")
    print(f"speed ratio kiln/full: {t_full / t_fast:.1f}x (target >= 5)")
    print(f"captured energy, Kiln / full SVD at the same rank: {e_fast / e_full:.4%} overall, "
          f"worst layer {worst:.4%} ({worst_name}) (target >= 99%)")


if __name__ == "__main__":
    main()
