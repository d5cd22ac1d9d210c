"""What a LoRA file holds (modules, ranks, alphas, norms, algorithm, metadata), per-block norms, and
comparisons between two LoRAs (per-module cosine similarity and norm ratio)."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..lora.algorithms import algorithm_of, lora_factors, module_delta, rank_of
from ..lora.formats import detect_format, to_kohya
from ..lora.value import KilnLora
from ..plots.bars import bar_chart
from ..net.blocks import block_of_kohya, block_order


@dataclass(frozen=True)
class ModuleInfo:
    module: str
    algorithm: str
    rank: int
    alpha: float | None
    norm: float          # Frobenius norm of the delta (scale included)
    block: str


def delta_norm(parts: dict, module: str = "") -> float:
    if "lora_up.weight" in parts:
        f = lora_factors(parts, module)
        # ||U D||_F from the factors: the r x r Gram matrices are enough.
        return math.sqrt(max(0.0, float(((f.up.T @ f.up) * (f.down @ f.down.T)).sum())))
    return float(module_delta(parts, module).norm())


def module_infos(lora: KilnLora) -> list[ModuleInfo]:
    lora = to_kohya(lora)
    infos = []
    for module, parts in sorted(lora.modules.items()):
        algo = algorithm_of(parts)
        rank = rank_of(parts)
        alpha = float(parts["alpha"]) if "alpha" in parts else None
        infos.append(ModuleInfo(module, algo, rank, alpha, delta_norm(parts, module), block_of_kohya(module)))
    return infos


def inspect_text(lora: KilnLora, name: str = "") -> str:
    infos = module_infos(lora)
    meta = dict(lora.metadata)
    algos = sorted({i.algorithm for i in infos})
    ranks = sorted({i.rank for i in infos})
    alphas = sorted({i.alpha for i in infos if i.alpha is not None})
    lines = [f"{name or 'LoRA'}: {len(infos)} modules, format {detect_format(lora.tensors)}, algorithm(s) {', '.join(algos)}",
             f"ranks {ranks[0]}..{ranks[-1]}" + (f", alphas {alphas[0]:g}..{alphas[-1]:g}" if alphas else "")
             if ranks else "no ranked modules",
             f"base model: {meta.get('ss_base_model_version', 'unknown')}, network module: "
             f"{meta.get('ss_network_module', 'unknown')}, dim {meta.get('ss_network_dim', '?')}, "
             f"alpha {meta.get('ss_network_alpha', '?')}",
             f"text encoder modules: {sum(i.module.startswith('lora_te') for i in infos)}, "
             f"unet modules: {sum(i.module.startswith('lora_unet') for i in infos)}", "", "per block (sum of delta norms):"]
    for block, total in block_norms(infos).items():
        lines.append(f"  {block:6} {total:10.4f}")
    lines += ["", f"{'module':72} {'algo':6} {'rank':>4} {'alpha':>7} {'norm':>9}"]
    for i in infos:
        lines.append(f"{i.module[:72]:72} {i.algorithm:6} {i.rank:4d} {'' if i.alpha is None else f'{i.alpha:7g}':>7} {i.norm:9.4f}")
    ss = {k: v for k, v in meta.items() if k.startswith("ss_") or k.startswith("sshs_")}
    if ss:
        lines += ["", "metadata:"]
        for k in sorted(ss):
            v = ss[k]
            lines.append(f"  {k}: {v[:200]}{'…' if len(v) > 200 else ''}")
    return "\n".join(lines)


def block_norms(infos: list[ModuleInfo]) -> "OrderedDict[str, float]":
    totals: dict[str, float] = {}
    for i in infos:
        totals[i.block] = totals.get(i.block, 0.0) + i.norm
    return OrderedDict(sorted(totals.items(), key=lambda kv: block_order(kv[0])))


def _inner(pa: dict, pb: dict) -> float:
    if "lora_up.weight" in pa and "lora_up.weight" in pb:
        fa, fb = lora_factors(pa), lora_factors(pb)
        return float(((fa.up.T @ fb.up) * (fa.down @ fb.down.T)).sum())
    da, db = module_delta(pa), module_delta(pb)
    return float((da.flatten().double() * db.flatten().double()).sum())


@dataclass(frozen=True)
class Comparison:
    module: str
    cosine: float | None      # None when the module is only in one of the two
    norm_ratio: float | None  # ||B|| / ||A||


def compare_loras(a: KilnLora, b: KilnLora) -> list[Comparison]:
    a, b = to_kohya(a), to_kohya(b)
    ma, mb = a.modules, b.modules
    out = []
    for module in sorted(set(ma) | set(mb)):
        if module not in ma or module not in mb:
            out.append(Comparison(module, None, None))
            continue
        na, nb = delta_norm(ma[module]), delta_norm(mb[module])
        cos = _inner(ma[module], mb[module]) / (na * nb) if na > 0 and nb > 0 else 0.0
        out.append(Comparison(module, cos, nb / na if na > 0 else math.inf))
    return out


def comparison_text(rows: list[Comparison]) -> str:
    both = [r for r in rows if r.cosine is not None]
    lines = [f"{len(both)} shared modules, {len(rows) - len(both)} in only one",
             f"mean cosine {np.mean([r.cosine for r in both]):.4f}" if both else "no shared modules", "",
             f"{'module':72} {'cosine':>8} {'B/A norm':>9}"]
    for r in rows:
        if r.cosine is None:
            lines.append(f"{r.module[:72]:72} {'only one':>8}")
        else:
            lines.append(f"{r.module[:72]:72} {r.cosine:8.4f} {r.norm_ratio:9.4f}")
    return "\n".join(lines)


def comparison_plot(rows: list[Comparison], width: int = 720, height: int = 320) -> np.ndarray:
    per_block: dict[str, list[float]] = {}
    for r in rows:
        if r.cosine is not None:
            per_block.setdefault(block_of_kohya(r.module), []).append(r.cosine)
    means = OrderedDict((k, float(np.mean(v)) * 0.5 + 0.5) for k, v in sorted(per_block.items(), key=lambda kv: block_order(kv[0])))
    return bar_chart(means, "mean cosine per block (bar 0 = -1, full = +1)", width, height)


def metadata_json(lora: KilnLora) -> str:
    return json.dumps(dict(lora.metadata), indent=1)
