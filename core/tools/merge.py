"""Merging LoRAs exactly: the merged delta is the weighted sum of the deltas, by concatenating factors
(kohya's merge_lora sums up and down factors separately, which is not the sum of the effects).
Optionally compressed to a rank by the same exact factored SVD, and weighted per block."""
from __future__ import annotations

import fnmatch

import torch

from ..lora.formats import algorithm_of, to_kohya
from ..lora.value import KilnLora
from .lowrank import Factored, FactoredSVD, lora_factors, module_delta
from .resize import factors_to_lora


def block_weight(module: str, block_weights: dict[str, float]) -> float:
    """The last matching pattern wins (patterns are fnmatch-style on kohya module names, e.g.
    'lora_te_*' or 'lora_unet_up_blocks_1_*')."""
    w = 1.0
    for pattern, value in block_weights.items():
        if fnmatch.fnmatchcase(module, pattern) or module.startswith(pattern):
            w = value
    return w


def merge_loras(items: list[tuple[KilnLora, float]], rank: int | None = None,
                block_weights: dict[str, float] | None = None) -> KilnLora:
    """items: (lora, weight). Without ``rank`` the result is exact (rank = sum of ranks per module)."""
    block_weights = block_weights or {}
    loras = [(to_kohya(l), w) for l, w in items]
    modules = sorted({m for l, _ in loras for m in l.modules})
    out: dict[str, torch.Tensor] = {}
    for module in modules:
        ups, downs, shape = [], [], None
        dense = None
        for lora, weight in loras:
            parts = lora.modules.get(module)
            if parts is None:
                continue
            w = weight * block_weight(module, block_weights)
            if "dora_scale" in parts:
                raise ValueError(f"{module}: DoRA layers can't be merged exactly (their scale depends on the base "
                                 "weight); resize or apply them to a model instead.")
            if algorithm_of(parts) in ("lora", "locon"):
                f = lora_factors(parts)
                if shape is not None and tuple(shape) != tuple(f.shape):
                    raise ValueError(f"{module}: shapes differ between the LoRAs ({shape} vs {f.shape}); "
                                     "they were trained on different base models.")
                shape = f.shape
                ups.append(f.up * w)
                downs.append(f.down)
            else:
                d = module_delta(parts, module)
                dense = d.reshape(d.shape[0], -1) * w if dense is None else dense + d.reshape(d.shape[0], -1) * w
                shape = shape or tuple(d.shape)
        if dense is not None:
            # A non-factored layer is involved: keep the exact sum as a full diff unless a rank was asked.
            if ups:
                dense = dense + torch.cat(ups, 1) @ torch.cat(downs, 0)
            if rank is None:
                out[f"{module}.diff"] = dense.reshape(shape)
                continue
            u, s, vh = torch.linalg.svd(dense.double(), full_matrices=False)
            r = min(rank, len(s))
            for k, v in factors_to_lora(u.float(), s.float(), vh.float(), shape, r).items():
                out[f"{module}.{k}"] = v
            continue
        up, down = torch.cat(ups, 1), torch.cat(downs, 0)
        if rank is None or rank >= up.shape[1]:
            r = up.shape[1]
            if len(shape) == 4:
                out[f"{module}.lora_up.weight"] = up.reshape(shape[0], r, 1, 1).contiguous()
                out[f"{module}.lora_down.weight"] = down.reshape(r, *shape[1:]).contiguous()
            else:
                out[f"{module}.lora_up.weight"] = up.contiguous()
                out[f"{module}.lora_down.weight"] = down.contiguous()
            out[f"{module}.alpha"] = torch.tensor(float(r))
        else:
            u, s, vh = FactoredSVD(Factored(up, down, shape)).top(rank)
            for k, v in factors_to_lora(u, s, vh, shape, rank).items():
                out[f"{module}.{k}"] = v
    meta = dict(loras[0][0].metadata) if loras else {}
    ranks = [t.shape[0] for k, t in out.items() if k.endswith("lora_down.weight")]
    meta.update(ss_network_module="networks.lora", ss_network_dim=str(max(ranks) if ranks else 0),
                ss_network_alpha=str(float(max(ranks)) if ranks else 0.0),
                kiln_merge=str([w for _, w in items]))
    return KilnLora(out, meta)
