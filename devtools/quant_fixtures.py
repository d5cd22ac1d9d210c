"""Diffusion-model files for quantized-base training tests: one state dict written three ways.

- ``<stem>-fp16.safetensors``: plain, for UNETLoader with ``weight_dtype`` default / fp8_e4m3fn / fp8_e5m2;
- ``<stem>-scaled-fp8.safetensors``: the host's "scaled fp8" layout (a ``scaled_fp8`` marker tensor and a
  ``scale_weight`` per fp8 Linear weight), which both hosts load;
- ``<stem>-mixed-fp8.safetensors``: the 2026 host's mixed-precision layout (fp8 weights, a ``weight_scale``
  each and ``_quantization_metadata`` in the file's metadata, see its QUANTIZATION.md).

Every Linear weight of the transformer blocks is quantized per tensor (absmax / 448, the e4m3 range); the
rest stays fp16, as the published mixed-precision checkpoints keep norms, convs and embeddings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.lora.io import atomic_write_bytes

E4M3_MAX = 448.0


def quantizable(key: str, tensor: torch.Tensor, min_width: int = 16) -> bool:
    """A transformer Linear weight worth quantizing (the published checkpoints skip small and 1-D ones)."""
    return (key.endswith(".weight") and tensor.dim() == 2 and min(tensor.shape) >= min_width
            and ("transformer_blocks" in key or "blocks." in key))


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 e4m3 weight, float32 scalar scale) with weight ~= fp8 * scale."""
    scale = (weight.detach().float().abs().max() / E4M3_MAX).clamp_min(1e-12)
    return (weight.float() / scale).to(torch.float8_e4m3fn), scale.reshape(()).float()


@dataclass(frozen=True)
class QuantizedFiles:
    fp16: str          # names as UNETLoader lists them
    scaled_fp8: str
    mixed_fp8: str
    quantized_layers: tuple[str, ...]   # layer names (no ".weight") stored as fp8


def write_quantized_unet_files(folder: Path, unet_sd: dict[str, torch.Tensor], stem: str) -> QuantizedFiles:
    """Write the three files for a diffusion-model state dict (keys without ``model.diffusion_model.``)."""
    from safetensors.torch import save
    folder.mkdir(parents=True, exist_ok=True)
    plain = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in unet_sd.items()}
    scaled: dict[str, torch.Tensor] = {}
    mixed: dict[str, torch.Tensor] = {}
    layers: list[str] = []
    for k, v in unet_sd.items():
        if quantizable(k, v):
            q, s = quantize_fp8(v)
            layer = k[: -len(".weight")]
            layers.append(layer)
            scaled[k], scaled[layer + ".scale_weight"] = q, s
            mixed[k], mixed[layer + ".weight_scale"] = q, s.clone()
        else:
            scaled[k] = mixed[k] = plain[k]
    if not layers:
        raise ValueError(f"{stem}: no Linear weight of a transformer block to quantize in this state dict")
    scaled["scaled_fp8"] = torch.tensor([], dtype=torch.float8_e4m3fn)
    meta = {"_quantization_metadata": json.dumps(
        {"format_version": "1.0", "layers": {name: {"format": "float8_e4m3fn"} for name in layers}})}
    names = QuantizedFiles(f"{stem}-fp16.safetensors", f"{stem}-scaled-fp8.safetensors",
                           f"{stem}-mixed-fp8.safetensors", tuple(layers))
    for name, sd, md in ((names.fp16, plain, None), (names.scaled_fp8, scaled, None), (names.mixed_fp8, mixed, meta)):
        path = folder / name
        if not path.is_file():
            atomic_write_bytes(path, save({k: t.contiguous() for k, t in sd.items()}, md))
    return names


def host_loads_mixed_precision() -> bool:
    """The 2026 host's quantized mixed-precision checkpoints (QuantizedTensor weights); feature-detected."""
    import comfy.utils
    try:
        import comfy.quant_ops  # noqa: F401
    except ImportError:
        return False
    return hasattr(comfy.utils, "convert_old_quants")


def weight_storage(module: torch.nn.Module) -> str:
    """How a host layer holds its weight: 'quantized' (a QuantizedTensor), or the tensor's dtype name."""
    w = module.weight
    if type(w).__name__ == "QuantizedTensor" or type(getattr(w, "data", None)).__name__ == "QuantizedTensor":
        return "quantized"
    return str(w.dtype).replace("torch.", "")
