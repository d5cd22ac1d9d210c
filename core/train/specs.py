"""What a training run ("a bake") is told besides the network, optimizer and loop settings: where and how
it saves, what it samples while training, and what it hands back. Plain values, so the host's bake
(host/bake.py), the nodes, the command line and the benchmarks share them without importing the host."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..fields import setting
from ..lora.value import KilnLora
from .estimate import Preflight
from .loop import TrainResult
from .sample_prompts import SamplePrompt


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
    # Edit families: the picture each prompt edits (one IMAGE [1, H, W, 3] per prompt, in order; opaque here), given
    # to the sampler as the host's reference latents so the timeline shows the edit being learned.
    controls: tuple = ()


@dataclass(frozen=True)
class SampleRecord:
    """One training-time sample: the step, which prompt, the file written, and the image ([H, W, 3] floats)."""
    step: int
    prompt: int
    file: Path
    image: np.ndarray                   # the first frame
    animation: Path | None = None       # a video sample's frames, as an animated WebP beside ``file``


@dataclass
class TrainingReport:
    """What a bake did, for the Train node's ``loss`` output and its readers (Loss Plot, Sample Timeline):
    the loss history, the training-time samples, the saves, and where the model was placed."""
    losses: list = field(default_factory=list)          # (step, loss)
    validation: list = field(default_factory=list)      # (step, validation loss)
    probe_start: float | None = None                    # fixed-sample loss before / after training
    probe_end: float | None = None
    seconds: float = 0.0
    samples: list[SampleRecord] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)    # the sample prompts, by index
    saved_files: list[Path] = field(default_factory=list)
    save_errors: list = field(default_factory=list)     # saves that failed (path and reason); the LoRA is still output
    placement: object = None                            # host.placement.Placement (opaque here)
    preflight: Preflight | None = None
    checkpointing: object = None                        # host.checkpointing.CheckpointStats (opaque here)

    @property
    def steps(self) -> list[int]:
        return [s for s, _ in self.losses]

    @property
    def loss_values(self) -> list[float]:
        return [v for _, v in self.losses]


@dataclass
class BakeResult:
    """A finished bake: the host's MODEL and CLIP with the LoRA applied (opaque here), the LoRA value,
    the loop's result, what the run did (``report``) and the loss chart."""
    model: object
    clip: object
    lora: KilnLora
    result: TrainResult
    report: TrainingReport
    loss_image: np.ndarray

    @property
    def samples(self) -> list[np.ndarray]:
        return [r.image for r in self.report.samples]

    @property
    def sample_files(self) -> list[Path]:
        return [r.file for r in self.report.samples]

    @property
    def saved_files(self) -> list[Path]:
        return self.report.saved_files

    @property
    def save_errors(self) -> list:
        return self.report.save_errors

    @property
    def preflight(self) -> Preflight | None:
        return self.report.preflight


@dataclass(frozen=True)
class TrainingAdapterSpec:
    """A LoRA merged into the base model for the run only (a distilled model's de-distillation "training
    adapter"): never part of the saved or in-graph LoRA. ``name`` is its file in the loras folder ("" none)."""
    name: str = ""
    strength: float = setting(1.0, "Strength the training adapter is merged at while training (ai-toolkit merges "
                                   "its Z-Image Turbo and FLUX.1 schnell adapters at 1.0).",
                              min=-10.0, max=10.0, step=0.05)
