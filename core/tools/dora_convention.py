"""DoRA files in the two conventions other tools read, and the exact conversion between them.

A DoRA module stores LoRA factors plus a magnitude ``dora_scale``; the layer's weight becomes
``m * V / ||V||`` with ``V = W + scale * up @ down``. Tools disagree on which axis the norm runs over:

- ``comfyui`` (input axis): ``dora_scale`` shaped (1, in[, 1, 1]), ``||V||`` per input column. What Kiln
  trains (the DoRA paper's maths), and what ComfyUI's ``weight_decompose`` and A1111/Forge's
  ``apply_weight_decompose`` apply as trained.
- ``lycoris`` (output axis): ``dora_scale`` shaped (out, 1[, 1, 1]), ``||V||`` per output row. What
  lycoris-lora's modules (``wd_on_out=True``, the only axis its ``create_network_from_weights`` builds)
  apply. ComfyUI reads such a file with the norm of the ORIGINAL weight, and A1111 broadcasts it against
  columns, so neither applies it as trained.

The two are different functions of the factors: no reshaping of ``dora_scale`` turns one into the other.
The conversion therefore needs the base weights: it forms the layer's final weight ``W'`` under the
file's convention, stores ``W' - W`` as new LoRA factors (exact: every singular value above float noise;
or truncated to ``rank``) and sets ``dora_scale`` to ``W'``'s norms on the target axis, so the target
tool's normalisation gives back ``W'``. Exact files are larger (the delta is no longer low rank, since the
magnitude rescales every column or row)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..lora.value import KilnLora, module_groups
from ..lora.algorithms import lora_factors
from .resize import factors_to_lora

CONVENTIONS = ("comfyui", "lycoris")
_EPS = torch.finfo(torch.float32).eps   # both tools add float32's eps to the norm (they decompose in float32)
_EXACT = 1e-7                           # singular values below this fraction of the largest are float noise


@dataclass(frozen=True)
class DoraReport:
    module: str
    rank: int                  # rank of the converted factors
    relative_error: float      # ||W'_converted - W'|| / ||W' - W||: 0 up to float noise when exact


def convention_of(dora_scale: torch.Tensor, weight_shape) -> str:
    """Which convention a module's ``dora_scale`` follows, from its shape against the weight's."""
    out_dim, in_dim = weight_shape[0], weight_shape[1]
    shape = tuple(dora_scale.shape)
    if out_dim != in_dim:
        if dora_scale.numel() == in_dim and (len(shape) < 2 or shape[0] == 1):
            return "comfyui"
        if dora_scale.numel() == out_dim:
            return "lycoris"
    elif len(shape) >= 2:
        # Square layer: the shape says which axis is kept, (1, n, ...) input, (n, 1, ...) output.
        return "comfyui" if shape[0] == 1 else "lycoris"
    raise ValueError(f"dora_scale shaped {shape} fits neither axis of a weight shaped {tuple(weight_shape)}")


def _norms(v: torch.Tensor, convention: str) -> torch.Tensor:
    """||v|| per input column (comfyui) or output row (lycoris), shaped to broadcast against v."""
    if convention == "comfyui":
        flat = v.transpose(0, 1).reshape(v.shape[1], -1)
        return flat.norm(dim=1).reshape(1, v.shape[1], *[1] * (v.dim() - 2))
    return v.reshape(v.shape[0], -1).norm(dim=1).reshape(v.shape[0], *[1] * (v.dim() - 1))


def dora_weight(base: torch.Tensor, delta: torch.Tensor, dora_scale: torch.Tensor, convention: str) -> torch.Tensor:
    """The layer weight a DoRA module means under ``convention`` (float32, strength 1)."""
    v = base.float() + delta.float().reshape(base.shape)
    m = dora_scale.float().reshape(_norms(v, convention).shape)
    return v * (m / (_norms(v, convention) + _EPS))


def _convert_module(name: str, parts: dict, base: torch.Tensor, convention: str, rank: int | None):
    if "lora_mid.weight" in parts or "lora_up.weight" not in parts:
        raise ValueError(f"{name}: only plain DoRA (lora_up/lora_down + dora_scale) converts; this module has "
                         f"{sorted(parts)}.")
    factors = lora_factors(parts, name)
    if tuple(factors.shape)[:2] != tuple(base.shape)[:2] or factors.up.shape[0] * factors.down.shape[1] != base.numel():
        raise ValueError(f"{name}: the LoRA is shaped for a weight {tuple(factors.shape)} but the base weight is "
                         f"{tuple(base.shape)}; give the base model the LoRA was trained on.")
    base = base.float().reshape(factors.shape)
    source = convention_of(parts["dora_scale"], base.shape)
    target_weight = dora_weight(base, factors.up @ factors.down, parts["dora_scale"], source)
    delta = (target_weight - base).reshape(base.shape[0], -1)
    u, s, vh = (t.float() for t in torch.linalg.svd(delta.double(), full_matrices=False))
    keep = int((s > s[0] * _EXACT).sum()) if s.numel() and float(s[0]) > 0 else 1
    keep = max(1, min(keep, rank) if rank else keep)
    out = factors_to_lora(u, s, vh, base.shape, keep)
    # The magnitude is the final weight's own norm on the target axis, so the target tool's normalisation
    # returns that weight exactly (and, when the factors are truncated, still gives each row/column its norm).
    out["dora_scale"] = _norms(target_weight, convention)
    dtype = parts["lora_up.weight"].dtype   # the file's precision; the error below is measured after it
    out = {k: (v.to(dtype) if k != "alpha" else v) for k, v in out.items()}
    new_delta = out["lora_up.weight"].float().reshape(base.shape[0], keep) @ \
        out["lora_down.weight"].float().reshape(keep, -1)
    applied = dora_weight(base, new_delta, out["dora_scale"], convention)
    denom = float((target_weight - base).norm()) or 1.0
    return out, DoraReport(name, keep, float((applied - target_weight).norm()) / denom)


def convert_dora(lora: KilnLora, base_weights: Mapping[str, torch.Tensor], convention: str,
                 rank: int | None = None) -> tuple[KilnLora, list[DoraReport]]:
    """``lora`` with every DoRA module in ``convention`` (see the module doc). ``base_weights`` maps a kohya
    module name to the base model's weight for it (only DoRA modules are looked up); other modules pass
    through unchanged, as do DoRA modules already in ``convention``. ``rank`` caps the new factors (lossy;
    the report gives each module's error); None keeps them exact."""
    if convention not in CONVENTIONS:
        raise ValueError(f"DoRA convention must be one of {', '.join(CONVENTIONS)}, not {convention!r}")
    groups = module_groups(lora.tensors)
    tensors: dict[str, torch.Tensor] = {}
    reports: list[DoraReport] = []
    missing = []
    for name, parts in groups.items():
        converted = parts
        if "dora_scale" in parts:
            if name not in base_weights:
                missing.append(name)
                continue
            base = base_weights[name]
            if convention_of(parts["dora_scale"], base.shape) != convention:
                converted, report = _convert_module(name, parts, base, convention, rank)
                reports.append(report)
        tensors.update({f"{name}.{k}": v for k, v in converted.items()})
    if missing:
        raise ValueError(f"the base model has no weight for DoRA module(s) {', '.join(missing[:5])}"
                         f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''}; give the base model "
                         "(checkpoint) the LoRA was trained on.")
    meta = dict(lora.metadata)
    if reports:
        meta["kiln_dora_convention"] = convention
    return KilnLora(tensors, meta), reports


def format_dora_report(reports: list[DoraReport], convention: str) -> str:
    if not reports:
        return f"no DoRA module needed converting (all already in the {convention} convention)"
    worst = max(reports, key=lambda r: r.relative_error)
    return (f"{len(reports)} DoRA modules converted to the {convention} convention; ranks "
            f"{min(r.rank for r in reports)}-{max(r.rank for r in reports)}; worst relative error "
            f"{worst.relative_error:.2e} ({worst.module})")


def base_weight_keys(keys) -> dict[str, str]:
    """kohya module name -> weight key in a base model file: SD-family checkpoints by kohya's diffusers-style
    UNet names and CLIP-L text-encoder names (core.tools.extract.checkpoint_names); for any other layout
    (a Flux, SD3, Wan... diffusion-model file, with or without the ``model.diffusion_model.`` prefix),
    ``lora_unet_`` + the module path with '_' for '.', the names Kiln trains those families under."""
    from .extract import checkpoint_names
    keys = list(keys)
    names = checkpoint_names(keys)
    for k in keys:
        if not k.endswith(".weight"):
            continue
        path = k[: -len(".weight")]
        for prefix in ("model.diffusion_model.", "diffusion_model."):
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        names.setdefault("lora_unet_" + path.replace(".", "_"), k)
    return names
