"""What the captioner needs from the host: the device and dtype it runs models on, room made in its
memory manager before a model loads, and the memory handed back afterwards."""
from __future__ import annotations

from pathlib import Path

import torch

from . import model_management


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """The host's torch device; bf16 or fp16 where the host would use them there, else fp32."""
    device = model_management.get_torch_device()
    if device.type == "cpu":
        return device, torch.float32
    if model_management.should_use_bf16(device):
        return device, torch.bfloat16
    if model_management.should_use_fp16(device):
        return device, torch.float16
    return device, torch.float32


def weights_bytes(folder: Path, dtype: torch.dtype) -> int:
    """About what the model takes on the device: its weight files, rescaled from fp32/bf16 storage."""
    files = list(Path(folder).glob("*.safetensors")) or list(Path(folder).glob("*.bin"))
    stored = sum(f.stat().st_size for f in files)
    return int(stored * (2 if dtype in (torch.float16, torch.bfloat16) else 1) * 1.2)


def make_room(nbytes: int, device: torch.device) -> None:
    """Ask the host to unload its cached models until ``nbytes`` fit (a no-op on CPU)."""
    if device.type != "cpu":
        model_management.free_memory(nbytes, device)


def release() -> None:
    """After the captioner dropped its model: give the freed device memory back for the host's models."""
    model_management.soft_empty_cache()
