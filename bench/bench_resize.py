"""Resize an SDXL-shaped rank-128 LoRA (kohya key layout, random factors) to rank 32: Kiln's exact
factored path (QR of the factors + SVD of the r x r core) against a full-matrix SVD per layer (what the
usual resize scripts do), in one run. Target: >= 100x faster, same singular values to 1e-4 relative.

    .venv/bin/python bench/bench_resize.py [--baseline-layers 36]

The full SVD of all 722 layers takes many minutes on 2 cores, so the baseline runs on every k-th layer
(all shape kinds included) and the ratio compares both paths on exactly those layers; the Kiln path also
runs on the whole LoRA.
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
from kiln.core.lora.value import KilnLora  # noqa: E402
from kiln.core.lora.algorithms import lora_factors  # noqa: E402
from kiln.core.tools.lowrank import FactoredSVD  # noqa: E402
from kiln.core.tools.resize import ResizeSpec, resize_lora  # noqa: E402
from shapes import sdxl_unet_lora_layers  # noqa: E402


def make_lora(rank: int) -> KilnLora:
    g = torch.Generator().manual_seed(0)
    t = {}
    for name, (out_dim, in_dim) in sdxl_unet_lora_layers():
        t[f"{name}.lora_down.weight"] = torch.randn(rank, in_dim, generator=g) / in_dim ** 0.5
        t[f"{name}.lora_up.weight"] = torch.randn(out_dim, rank, generator=g) * 0.01
        t[f"{name}.alpha"] = torch.tensor(rank / 2.0)
    return KilnLora(t, {"ss_network_dim": str(rank)})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--to", type=int, default=32)
    p.add_argument("--baseline-layers", type=int, default=36)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lora = make_lora(args.rank)
    modules = sorted(lora.modules.items())
    step = max(1, len(modules) // args.baseline_layers)
    subset = modules[::step]
    # Baseline: rebuild each layer's full matrix, take its SVD and keep the top singular triplets
    # (what a resize script does per layer).
    t = time.perf_counter()
    full_s = {}
    for name, parts in subset:
        f = lora_factors(parts)
        u, s, vh = torch.linalg.svd(f.up @ f.down, full_matrices=False)
        full_s[name] = s
        up, down = u[:, :args.to] * s[:args.to], vh[:args.to]
    t_full = time.perf_counter() - t
    # Kiln: the same triplets from the factors.
    t = time.perf_counter()
    fast_s = {}
    for name, parts in subset:
        svd = FactoredSVD(lora_factors(parts))
        u, s, vh = svd.top(args.to)
        fast_s[name] = svd.s.float()
    t_fast = time.perf_counter() - t
    worst = max(float(((fast_s[n][:args.to] - full_s[n][:args.to]).abs() / full_s[n][:args.to]).max()) for n, _ in subset)
    t = time.perf_counter()
    out, report = resize_lora(lora, ResizeSpec("fixed", args.to))
    t_all = time.perf_counter() - t
    print(f"SDXL-shaped LoRA: {len(modules)} modules, rank {args.rank} -> {args.to}")
    print(f"on {len(subset)} layers: full-matrix SVD {t_full:.2f} s, Kiln factored SVD {t_fast:.3f} s")
    print(f"speed ratio kiln/full: {t_full / t_fast:.0f}x (target >= 100)")
    print(f"largest relative difference of the top-{args.to} singular values: {worst:.2e} (target <= 1e-4)")
    print(f"whole LoRA resized by Kiln in {t_all:.2f} s (full SVD of every layer, extrapolated: "
          f"{t_full / len(subset) * len(modules):.0f} s); output dim {out.metadata['ss_network_dim']}")


if __name__ == "__main__":
    main()
