"""What a training run ("a bake") is told besides the network, optimizer and loop settings: where and how
it saves, what it samples while training, and what it hands back. Plain values, so the host's bake
(host/bake.py), the nodes, the command line and the benchmarks share them without importing the host."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lora.value import KilnLora
from .estimate import Preflight
from .loop import TrainResult
from .prompts import SamplePrompt


@dataclass(frozen=True)
class SaveSpec:
    output_name: str = "kiln_lora"
    save_dtype: str = "fp16"        # fp16 | bf16 | fp32
    keep_last: int = 3              # periodic saves kept (the final one always stays)
    save_state: bool = True         # write a resumable state beside each save
    resume_from: str = ""           # a state folder written by an earlier run
    cache_latents_to_disk: bool = False   # keep encoded latents across runs (keyed by content and settings)


@dataclass(frozen=True)
class SampleSpec:
    prompts: tuple[SamplePrompt, ...] = ()
    sampler: str = "euler"
    scheduler: str = "normal"


@dataclass
class BakeResult:
    """A finished bake: the host's MODEL and CLIP with the LoRA applied (opaque here), the LoRA value,
    the loop's result and what was written along the way."""
    model: object
    clip: object
    lora: KilnLora
    result: TrainResult
    loss_image: np.ndarray
    preflight: Preflight | None = None
    samples: list = field(default_factory=list)       # [H, W, 3] float arrays
    sample_files: list = field(default_factory=list)
    sample_keys: list = field(default_factory=list)   # (step, prompt index) of each sample file
    saved_files: list = field(default_factory=list)
    save_errors: list = field(default_factory=list)   # saves that failed (path and reason); the LoRA is still output
