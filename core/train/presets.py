"""Presets users expect: network sizes from the guides, and VRAM classes that set the memory-relevant
training options together."""
from __future__ import annotations

from dataclasses import replace

from ..net.spec import NetworkSpec
from .loop import TrainConfig

# name -> (rank, alpha, conv_rank, conv_alpha); alpha at half the dim is the guides' habit.
NETWORK_SIZES = {
    "custom": None,
    "small (dim 8, alpha 4)": (8, 4.0, 0, 1.0),
    "standard (dim 32, alpha 16)": (32, 16.0, 0, 1.0),
    "large (dim 64, alpha 32)": (64, 32.0, 0, 1.0),
    "locon style (dim 32/16, conv 16/8)": (32, 16.0, 16, 8.0),
}

# name -> the TrainConfig fields a VRAM budget decides (SD1.5-class models at 512 px; SDXL needs the
# next class up).
VRAM_CLASSES = {
    "none": {},
    "8 GB": {"batch_size": 1, "gradient_checkpointing": True, "mixed_precision": "auto"},
    "12 GB": {"batch_size": 2, "gradient_checkpointing": True, "mixed_precision": "auto"},
    "16 GB": {"batch_size": 4, "gradient_checkpointing": False, "mixed_precision": "auto"},
    "24 GB": {"batch_size": 8, "gradient_checkpointing": False, "mixed_precision": "auto"},
}


def apply_network_size(spec: NetworkSpec, preset: str) -> NetworkSpec:
    if preset not in NETWORK_SIZES:
        raise ValueError(f"unknown network size preset {preset!r}; choose one of {list(NETWORK_SIZES)}")
    sizes = NETWORK_SIZES[preset]
    if sizes is None:
        return spec
    rank, alpha, conv_rank, conv_alpha = sizes
    return replace(spec, rank=rank, alpha=alpha, conv_rank=conv_rank, conv_alpha=conv_alpha)


def apply_vram_class(cfg: TrainConfig, preset: str) -> TrainConfig:
    if preset not in VRAM_CLASSES:
        raise ValueError(f"unknown VRAM preset {preset!r}; choose one of {list(VRAM_CLASSES)}")
    return replace(cfg, **VRAM_CLASSES[preset])
