"""What a training run ("a bake") is told besides the network, optimizer and loop settings: where and how
it saves, what it samples while training, and what it hands back. Plain values, so the host's bake
(host/bake.py), the nodes, the command line and the benchmarks share them without importing the host."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..fields import setting
from ..lora.value import KilnLora
from .estimate import Preflight
from .loop import TrainResult
from .prompts import SamplePrompt


@dataclass(frozen=True)
class SaveSpec:
    output_name: str = setting("kiln_lora", "Name for the saves under loras/kiln_checkpoints/<name>/.")
    save_dtype: str = setting("fp16", "Precision of the saved LoRA files.", choices=("fp16", "bf16", "fp32"))
    keep_last: int = setting(3, "How many periodic saves to keep (the final one always stays).", min=1, max=1000)
    save_state: bool = True         # write a resumable state beside each save
    resume_from: str = setting("", "A '<name>-<step>-state' folder from an earlier run, to continue it exactly.")
    cache_latents_to_disk: bool = setting(
        False, "Keep encoded latents on disk (ComfyUI's kiln_latent_cache folder) so later runs skip the VAE; the key "
        "covers content, bucket, crop, flip, VAE and settings.")


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


@dataclass(frozen=True)
class TrainingAdapterSpec:
    """A LoRA merged into the base model for the run only (a distilled model's de-distillation "training
    adapter"): never part of the saved or in-graph LoRA. ``name`` is its file in the loras folder ("" none)."""
    name: str = ""
    strength: float = setting(1.0, "Strength the training adapter is merged at while training (ai-toolkit merges "
                                   "its Z-Image Turbo and FLUX.1 schnell adapters at 1.0).",
                              min=-10.0, max=10.0, step=0.05)
