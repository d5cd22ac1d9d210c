"""Resize a LoRA to a fixed or dynamic rank, layer by layer, with a report.

LoRA/LoCon layers use the exact spectrum from the factors (lowrank.factored_svd); LoHa, LoKr and diff
layers build their delta and use a randomized SVD. The result is a kohya LoRA with alpha = rank per
module (scale 1, the factors carry the singular values split evenly)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..lora.formats import algorithm_of, to_kohya
from ..lora.value import KilnLora
from .lowrank import FactoredSVD, choose_rank, kept_energy, lora_factors, module_delta, randomized_svd


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
    """(singular values, top(k) -> (u, s, vh), delta shape, old rank, algorithm) for one module."""
    algo = algorithm_of(parts)
    if algo in ("lora", "locon", "dora"):
        f = lora_factors(parts)
        svd = FactoredSVD(f)
        return svd.s.float(), svd.top, f.shape, f.down.shape[0], algo
    delta = module_delta(parts, module)
    shape = tuple(delta.shape)
    m = delta.reshape(shape[0], -1)
    k = min(max_needed, *m.shape)
    u, s, vh = randomized_svd(m, k, spec.oversample, spec.power_iters, generator)
    return s, (lambda r: (u[:, :r], s[:r], vh[:r])), shape, min(m.shape), algo


def resize_lora(lora: KilnLora, spec: ResizeSpec, seed: int = 0) -> tuple[KilnLora, list[LayerReport]]:
    lora = to_kohya(lora)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    report = []
    needed = int(spec.value) if spec.method == "fixed" else spec.max_rank
    for module, parts in sorted(lora.modules.items()):
        s, top, shape, old_rank, algo = layer_spectrum(parts, module, spec, needed, gen)
        rank = choose_rank(s, spec.method, spec.value, min(spec.max_rank, len(s)))
        u, s_top, vh = top(rank)
        for k, v in factors_to_lora(u, s_top, vh, shape, rank).items():
            out[f"{module}.{k}"] = v
        if "dora_scale" in parts:
            out[f"{module}.dora_scale"] = parts["dora_scale"]
        report.append(LayerReport(module, algo, old_rank, rank, kept_energy(s, rank)))
    ranks = [r.new_rank for r in report]
    meta = dict(lora.metadata)
    meta.update(ss_network_dim=str(max(ranks)), ss_network_alpha=str(float(max(ranks))),
                ss_network_module="networks.lora",
                kiln_resize=json.dumps({"method": spec.method, "value": spec.value, "min_rank": min(ranks),
                                        "max_rank": max(ranks)}))
    return KilnLora(out, meta), report


def format_report(report: list[LayerReport]) -> str:
    lines = [f"{'module':70} {'algo':6} {'old':>5} {'new':>5} {'kept':>8}"]
    for r in report:
        lines.append(f"{r.module[:70]:70} {r.algorithm:6} {r.old_rank:5d} {r.new_rank:5d} {r.kept_energy:8.2%}")
    mean = sum(r.kept_energy for r in report) / max(1, len(report))
    lines.append(f"{len(report)} layers, mean kept energy {mean:.2%}")
    return "\n".join(lines)
