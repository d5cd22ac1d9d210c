"""The training adapter of a distilled model (Z-Image Turbo, FLUX.1 schnell, FLUX.2 klein): a LoRA merged into
the base model for the run only, so the LoRA trains against the de-distilled weights, and left out of
everything the run hands back.

What this follows is ai-toolkit's "assistant LoRA" (toolkit/models/base_model.py generate_images,
extensions_built_in/diffusion_models/z_image/z_image.py load_training_adapter, toolkit/assistant_lora.py):
the adapter is applied at multiplier 1.0 while training, and for the training-time samples it is taken out
again (Z-Image: merged, then sampled with the adapter at -1.0; FLUX.1 schnell: the adapter network
deactivated), so the previews show the distilled model with the trained LoRA, as LoraLoader will later.
Here the adapter goes through the host's own loader (comfy.sd.load_lora_for_models: every format the host
reads) as ModelPatcher patches on the clone the bake trains. The host applies those patches to the weights
when it loads the clone; layers its partial loading leaves on the CPU get them per forward through its
weight functions; so Kiln's bypass adapters see the patched weights either way. Samples run on a clone of
the MODEL without the adapter (the host swaps the patched weights back while sampling), and the bake's
in-graph output is built on the MODEL as given, so neither carries the adapter.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import comfy.sd
import folder_paths

from ..core.lora.io import load_lora_file
from ..core.lora.metadata import training_adapter_metadata
from ..core.train.specs import TrainingAdapterSpec
from ..core.tools.merge import check_against_model
from .training import layer_shapes

log = logging.getLogger("kiln")

NO_ADAPTER = "none"


@dataclass
class TrainingAdapter:
    name: str
    strength: float
    model: object          # the MODEL clone with the adapter's patches: what the bake trains on
    metadata: dict         # ss_training_adapter* keys for the saved file


def adapter_path(name: str) -> Path:
    path = folder_paths.get_full_path("loras", name)
    if path is None:
        raise FileNotFoundError(f"training_adapter {name!r}: no such file in ComfyUI's loras folders; put the "
                                "adapter there (the list refreshes with the page) or choose 'none'.")
    return Path(path)


def file_hash(path: Path) -> str:
    """sha256 of the file's tensor data (the safetensors header skipped, as kohya's sshs_model_hash), read in
    chunks so a large adapter is never held twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        header = int.from_bytes(fh.read(8), "little")
        fh.seek(8 + header)
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def apply_training_adapter(model, spec: TrainingAdapterSpec | None) -> TrainingAdapter | None:
    """The MODEL with the adapter patched in (a clone), or None without one. A file whose modules do not fit
    the model is refused here, before any step, with the file named (Kiln Apply LoRA's fit check)."""
    if spec is None or not spec.name or spec.name == NO_ADAPTER:
        return None
    path = adapter_path(spec.name)
    lora = load_lora_file(path)    # safetensors only: never unpickles
    try:
        text_encoder = check_against_model(lora, layer_shapes(model), what="the model being trained")
    except ValueError as exc:
        raise ValueError(f"training_adapter {spec.name!r} does not fit this model: {exc} Choose the adapter made "
                         "for this base model.") from exc
    if text_encoder:
        log.warning("Kiln: training_adapter %s: its %d text-encoder modules are not applied (the adapter is "
                    "merged into the diffusion model only)", spec.name, len(text_encoder))
    patched, _ = comfy.sd.load_lora_for_models(model, None, dict(lora.tensors), spec.strength, 0.0)
    log.info("Kiln: training on top of the training adapter %s at strength %g (left out of the saved LoRA and "
             "of the samples)", spec.name, spec.strength)
    return TrainingAdapter(spec.name, spec.strength, patched,
                           training_adapter_metadata(spec.name, spec.strength, file_hash(path)))


class WithoutAdapter:
    """The bake's HostDiffusionModel as the sampler sees it: the same everything, but the patcher is a
    clone of the MODEL without the adapter (Kiln's adapters are hooks on the shared layers, so the current
    LoRA is still there)."""

    def __init__(self, hm, model):
        self._hm = hm
        self.patcher = model.clone()

    def __getattr__(self, name):
        return getattr(self._hm, name)


def for_samples(hm, model, adapter: TrainingAdapter | None):
    return WithoutAdapter(hm, model) if adapter is not None else hm
