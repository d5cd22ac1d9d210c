"""Resize a LoRA to a fixed or dynamic rank, layer by layer, with a report.

LoRA/LoCon layers use the exact spectrum from the factors (lowrank.factored_svd); LoHa, LoKr and diff
layers build their delta and use a randomized SVD. The result is a kohya LoRA with alpha = rank per
module (scale 1, the factors carry the singular values split evenly)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..lora.algorithms import algorithm_of
from ..lora.formats import to_kohya
from ..lora.value import KilnLora
from ..lora.algorithms import lora_factors, module_delta
from .lowrank import FactoredSVD, choose_rank, kept_energy, randomized_svd


@dataclass(frozen=True)
class ResizeSpec:
    method: str = "fixed"          # fixed | sv_ratio | sv_fro | sv_cumulative
    value: float = 32              # the rank for fixed; the ratio / energy fraction otherwise
    max_rank: int = 1024
    oversample: int = 10           # randomized SVD (non-LoRA layers)
    power_iters: int = 2


@dataclass(frozen=True)
class LayerReport:
    module: str
    algorithm: str
    old_rank: int
    new_rank: int
    kept_energy: float             # fraction of the layer's Frobenius energy kept


def factors_to_lora(u, s, vh, shape, rank: int) -> dict[str, torch.Tensor]:
    root = torch.sqrt(s[:rank].clamp_min(0))
    up = u[:, :rank] * root
    down = root[:, None] * vh[:rank]
    if len(shape) == 4:
        up = up.reshape(shape[0], rank, 1, 1)
        down = down.reshape(rank, *shape[1:])
    return {"lora_up.weight": up.contiguous(), "lora_down.weight": down.contiguous(),
            "alpha": torch.tensor(float(rank))}


def layer_spectrum(parts: dict, module: str, spec: ResizeSpec, max_needed: int, generator=None):
    """(singular values, top(k) -> (u, s, vh), delta shape, old rank, algorithm, total energy) for one
    module. The total energy (||delta||_F^2) is exact even where s is a truncated (randomized) spectrum."""
    algo = algorithm_of(parts)
    if "lora_up.weight" in parts:
        f = lora_factors(parts, module)
        svd = FactoredSVD(f)
        s = svd.s.float()
        return s, svd.top, f.shape, f.down.shape[0], algo, float((svd.s ** 2).sum())
    delta = module_delta(parts, module)
    shape = tuple(delta.shape)
    m = delta.reshape(shape[0], -1)
    total = float((m.double() ** 2).sum())
    if spec.method == "sv_cumulative":       # needs the sum of every singular value: the whole spectrum
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
    else:
        u, s, vh = randomized_svd(m, min(max_needed, *m.shape), spec.oversample, spec.power_iters, generator)
    return s, (lambda r: (u[:, :r], s[:r], vh[:r])), shape, min(m.shape), algo, total


def network_metadata(meta: dict, ranks: dict[str, int], shapes: dict[str, tuple]) -> dict:
    """ss_* fields of a plain kohya LoRA/LoCon with alpha = rank per module: the largest linear rank as
    ss_network_dim/alpha, conv ranks in ss_network_args (LyCORIS algo arguments dropped)."""
    linear = [ranks[m] for m in ranks if len(shapes[m]) != 4 or tuple(shapes[m][2:]) == (1, 1)]
    conv = [ranks[m] for m in ranks if len(shapes[m]) == 4 and tuple(shapes[m][2:]) != (1, 1)]
    dim = max(linear or conv or [0])
    args = {"conv_dim": str(max(conv)), "conv_alpha": str(float(max(conv)))} if conv else {}
    meta = dict(meta)
    meta.update(ss_network_module="networks.lora", ss_network_dim=str(dim), ss_network_alpha=str(float(dim)),
                ss_network_args=json.dumps(args))
    return meta


def resize_lora(lora: KilnLora, spec: ResizeSpec, seed: int = 0, progress=None) -> tuple[KilnLora, list[LayerReport]]:
    """progress: optional callable run after each module (the host's progress bar and interrupt check)."""
    if spec.method not in ("fixed", "sv_ratio", "sv_fro", "sv_cumulative"):
        raise ValueError(f"unknown resize method {spec.method!r}; use fixed, sv_ratio, sv_fro or sv_cumulative")
    if spec.method == "fixed" and int(spec.value) < 1:
        raise ValueError(f"resize: a fixed rank must be >= 1 (got {spec.value})")
    lora = to_kohya(lora)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    report, ranks, shapes = [], {}, {}
    needed = int(spec.value) if spec.method == "fixed" else spec.max_rank
    for module, parts in sorted(lora.modules.items()):
        if "diff_b" in parts and len(parts) == 1:      # a bias-only module: nothing to factor, kept as is
            out[f"{module}.diff_b"] = parts["diff_b"]
            continue
        s, top, shape, old_rank, algo, total = layer_spectrum(parts, module, spec, needed, gen)
        rank = choose_rank(s, spec.method, spec.value, min(spec.max_rank, len(s)), total)
        u, s_top, vh = top(rank)
        for k, v in factors_to_lora(u, s_top, vh, shape, rank).items():
            out[f"{module}.{k}"] = v
        for extra in ("dora_scale", "diff_b"):   # DoRA magnitudes and bias changes travel unchanged
            if extra in parts:
                out[f"{module}.{extra}"] = parts[extra]
        ranks[module], shapes[module] = rank, shape
        report.append(LayerReport(module, algo, old_rank, rank, kept_energy(s, rank, total)))
        if progress:
            progress()
    if not report:
        raise ValueError("resize: the LoRA has no weight deltas to resize.")
    meta = network_metadata(dict(lora.metadata), ranks, shapes)
    meta["kiln_resize"] = json.dumps({"method": spec.method, "value": spec.value, "min_rank": min(ranks.values()),
                                      "max_rank": max(ranks.values())})
    return KilnLora(out, meta), report


def format_report(report: list[LayerReport]) -> str:
    lines = [f"{'module':70} {'algo':6} {'old':>5} {'new':>5} {'kept':>8}"]
    for r in report:
        lines.append(f"{r.module[:70]:70} {r.algorithm:6} {r.old_rank:5d} {r.new_rank:5d} {r.kept_energy:8.2%}")
    mean = sum(r.kept_energy for r in report) / max(1, len(report))
    lines.append(f"{len(report)} layers, mean kept energy {mean:.2%}")
    return "\n".join(lines)
