"""Merging LoRAs exactly: the merged delta is the weighted sum of the deltas, by concatenating factors
(kohya's merge_lora sums up and down factors separately, which is not the sum of the effects).

Each source's alpha / rank scale is folded into its up factor, so the merged module has alpha = its new
rank (scale 1). Optionally compressed to a rank by the same exact factored SVD, and weighted per block.
Also the checks for merging into a model: every module must name a layer of the model with its shape."""
from __future__ import annotations

import torch

from ..lora.formats import to_kohya
from ..lora.io import check_finite
from ..lora.value import KilnLora
from ..net.blocks import weight_for
from ..lora.algorithms import Factored, lora_factors, module_delta
from .lowrank import FactoredSVD
from .resize import factors_to_lora, network_metadata

_FAMILIES = ("sdxl", "sd_v1", "sd_v2", "sd3", "flux", "sd_v3")


def base_family(metadata) -> str | None:
    """The base-model family a LoRA declares (kohya's ss_base_model_version), None when it declares none."""
    v = str(metadata.get("ss_base_model_version", "") or "").lower()
    if not v:
        return "sd_v2" if str(metadata.get("ss_v2", "")).lower() == "true" else None
    return next((f for f in _FAMILIES if v.startswith(f)), v)


def check_same_base(loras: list[tuple[str, KilnLora]]) -> None:
    declared = [(name, base_family(l.metadata)) for name, l in loras]
    families = {f for _, f in declared if f}
    if len(families) > 1:
        listing = ", ".join(f"{n}: {f or 'undeclared'}" for n, f in declared)
        raise ValueError(f"The LoRAs were trained on different base models ({listing}); their layers don't "
                         "correspond. Merge LoRAs of one base model.")


def merge_loras(items: list[tuple[KilnLora, float]], rank: int | None = None,
                block_weights: dict[str, float] | tuple | None = None, names: list[str] | None = None) -> KilnLora:
    """items: (lora, weight). Without ``rank`` the result is exact (rank = sum of ranks per module).
    block_weights: NAME=factor pairs (blocks such as IN04/MID/OUT11/TE, or module-name patterns)."""
    if not items:
        raise ValueError("merge: give at least one LoRA.")
    block_weights = block_weights or {}
    names = names or [f"LoRA {i + 1}" for i in range(len(items))]
    loras = [(to_kohya(l), w) for l, w in items]
    check_same_base([(n, l) for n, (l, _) in zip(names, loras)])
    modules = sorted({m for l, _ in loras for m in l.modules})
    out: dict[str, torch.Tensor] = {}
    ranks, shapes = {}, {}
    for module in modules:
        ups, downs, shape, dense, bias = [], [], None, None, None
        for name, (lora, weight) in zip(names, loras):
            parts = lora.modules.get(module)
            if parts is None:
                continue
            w = weight * weight_for(module, block_weights)
            if "dora_scale" in parts:
                raise ValueError(f"{module} ({name}): DoRA layers can't be merged exactly (their scale depends on "
                                 "the base weight); resize it, or merge it into a model instead.")
            if "diff_b" in parts:
                bias = parts["diff_b"].float() * w if bias is None else bias + parts["diff_b"].float() * w
                if len(parts) == 1:
                    continue
            if "lora_up.weight" in parts:
                f = lora_factors(parts, module)
                this, d = f.shape, None
                ups.append(f.up * w)
                downs.append(f.down)
            else:
                d = module_delta(parts, module)
                this = tuple(d.shape)
            if shape is not None and int(torch.Size(shape).numel()) != int(torch.Size(this).numel()) or (
                    shape is not None and shape[0] != this[0]):
                raise ValueError(f"{module}: shapes differ between the LoRAs ({tuple(shape)} vs {tuple(this)} in "
                                 f"{name}); they were trained on different base models.")
            if shape is None or len(this) > len(shape):   # LoHa/LoKr deltas are 2-D; a LoRA knows the kernel
                shape = tuple(this)
            if d is not None:
                d = d.reshape(d.shape[0], -1) * w
                dense = d if dense is None else dense + d
        if bias is not None:
            out[f"{module}.diff_b"] = bias
        if shape is None:
            continue
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
            ranks[module], shapes[module] = r, shape
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
            r = rank
            u, s, vh = FactoredSVD(Factored(up, down, shape)).top(rank)
            for k, v in factors_to_lora(u, s, vh, shape, rank).items():
                out[f"{module}.{k}"] = v
        ranks[module], shapes[module] = r, shape
    meta = network_metadata(dict(loras[0][0].metadata), ranks, shapes) if ranks else dict(loras[0][0].metadata)
    meta["kiln_merge"] = str([(n, w) for n, (_, w) in zip(names, items)])
    return KilnLora(out, meta)


def check_against_model(lora: KilnLora, weight_shapes: dict[str, tuple], what: str = "the model") -> list[str]:
    """Before merging a LoRA into a model: every module must name a layer of the model and its delta must
    have that layer's shape (a clear error naming the module otherwise). weight_shapes: kohya module name ->
    the model's weight shape. Returns the modules the model has no layer for (text-encoder modules when no
    CLIP was given); the caller reports them."""
    lora = to_kohya(lora)
    check_finite(lora.tensors, "the LoRA")
    missing, unknown = [], []
    for module, parts in sorted(lora.modules.items()):
        if module not in weight_shapes:
            (missing if module.startswith("lora_te") else unknown).append(module)
            continue
        want = tuple(weight_shapes[module])
        if "lora_up.weight" in parts:
            got = lora_factors(parts, module).shape
        elif set(parts) <= {"diff_b", "alpha"}:
            continue
        else:
            got = tuple(module_delta(parts, module).shape)
        if got[0] != want[0] or torch.Size(got).numel() != torch.Size(want).numel():
            raise ValueError(f"{module}: the LoRA's delta is {tuple(got)} but {what}'s weight is {want}; "
                             "the LoRA was trained for a different base model.")
    if unknown:
        raise ValueError(f"{len(unknown)} LoRA modules have no layer in {what} (first: {unknown[0]}); the LoRA was "
                         "trained for a different base model (e.g. SDXL vs SD1.5).")
    return missing


def without_modules(lora: KilnLora, modules) -> KilnLora:
    drop = set(modules)
    lora = to_kohya(lora)
    return KilnLora({k: v for k, v in lora.tensors.items() if k.partition(".")[0] not in drop}, lora.metadata)
