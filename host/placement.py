"""Where a bake's models live on the device: the host's memory manager decides, told what training needs.

Before training, every latent and caption the run will use is encoded and cached, so the VAE and the text
encoders (unless the text encoder trains) leave the device; during training only the diffusion model and
the adapters hold device memory. The pre-flight estimate (host.preflight, core.train.estimate) is then
passed to the host as ``memory_required`` when it loads the diffusion model, as the host's own nodes pass
the memory their work needs; where the weights and that memory don't fit, the host loads the model
partially (its lowvram path): the layers left on the CPU are cast onto the device in each forward by the
host's own ops, and Kiln fetches their weight again in backward instead of keeping the device copy for
the whole step (host.checkpointing.recast_weights_in_backward), so only the layers being computed hold weights.

``KILN_DEVICE_BUDGET_MB`` caps the device memory a bake plans with (e.g. to leave room for another
program); on a CPU-only machine it turns on the same partial loading, which is how the tests run it.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import os
from dataclasses import dataclass, field, replace

import torch

import comfy.model_management as mm

from ..core.train.estimate import (MemoryEstimate, TrainingSettings, adapter_bytes, checkpointing_needed,
                                   checkpointing_note, clip_fit_error, heaviest_batch)
from .checkpointing import RefetchStats, recast_layers, recast_weights_in_backward
from .preflight import trace_training_step

log = logging.getLogger("kiln")

BUDGET_ENV = "KILN_DEVICE_BUDGET_MB"


def device_budget(patcher) -> int | None:
    """Bytes of device memory the bake may use: ``KILN_DEVICE_BUDGET_MB`` when set, else on an accelerator
    the host's free memory plus what this model already holds there, less the host's reserve; None on CPU."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            return int(float(raw) * 2 ** 20)
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={raw!r} is not a number of MiB; set it like {BUDGET_ENV}=8000 "
                             "or unset it") from None
    device = patcher.load_device
    if mm.is_device_cpu(device):
        return None
    return int(mm.get_free_memory(device) + patcher.loaded_size() - mm.extra_reserved_memory())


def unload_from_device(*patchers) -> list:
    """Unload these models (and their clones) through the host's own LoadedModel.model_unload, as the host
    does when it frees memory; returns the unloaded models' classes' names."""
    wanted = [p for p in patchers if p is not None]
    names = []
    for i in range(len(mm.current_loaded_models) - 1, -1, -1):
        loaded = mm.current_loaded_models[i]
        model = loaded.model
        if model is None or not any(model is p or model.is_clone(p) for p in wanted):
            continue
        loaded.model_unload()
        mm.current_loaded_models.pop(i)
        names.append(type(model.model).__name__)
    if names:
        mm.soft_empty_cache()
    return names


def precache(trainer, cache_latents: bool = True, cache_captions: bool = True) -> tuple[bool, bool]:
    """Encode every latent and caption of the run's plan now (only the misses are encoded). Returns whether
    the VAE and the text encoder are no longer needed by training: not when colour augmentation changes
    the pixels every step, nor when captions change per step or the text encoder trains."""
    dataset = trainer.dataset
    latents_done = cache_latents and not getattr(dataset.config, "color_aug", False)
    captions_done = cache_captions and not dataset.captions_vary() and \
        not getattr(trainer.model, "train_text_encoder", False)
    if not (latents_done or captions_done):
        return False, False
    for _, _, refs in trainer.micro_batches(0):
        if latents_done:
            trainer.latents.get(dataset, refs)
        if captions_done:   # only the misses are encoded (per caption, or per caption and controls)
            trainer.encode_captions([dataset.caption(r, 0) for r in refs], refs)
    return latents_done, captions_done


def weight_settings(patcher, batch_size: int, checkpointing: bool) -> tuple[int, TrainingSettings]:
    params = list(patcher.model.diffusion_model.parameters())
    count = sum(p.numel() for p in params)
    stored = sum((getattr(p, "_qdata", p)).numel() * (getattr(p, "_qdata", p)).element_size() for p in params)
    return count, TrainingSettings(batch_size, checkpointing, stored / max(1, count))


def streamed_layers(patcher) -> list:
    """Layers the host left off the device (its partial load): cast onto the device per forward."""
    device = patcher.load_device
    out = []
    for module in patcher.model.diffusion_model.modules():
        weight = getattr(module, "weight", None)
        if not getattr(module, "comfy_cast_weights", False) or not isinstance(weight, torch.Tensor) or \
                type(weight).__name__ == "QuantizedTensor":
            continue
        if weight.device != device or getattr(module, "comfy_patched_weights", True) is False:
            out.append(module)
    return out


@dataclass
class Placement:
    estimate: MemoryEstimate | None = None
    memory_required: int = 0           # passed to the host's load_models_gpu
    unloaded: list = field(default_factory=list)        # models sent off the device after caching
    latents_cached: bool = False       # every latent of the run encoded: the VAE can leave the device
    captions_cached: bool = False      # every caption encoded and the text encoder not trained: it can too
    offloaded_bytes: int = 0           # weights the host keeps off the device (streamed per forward)
    streamed: list = field(default_factory=list)        # the layers streamed
    forward_fetches: int = 0           # streamed layers' forwards while training (weights brought over)
    backward: RefetchStats = field(default_factory=RefetchStats)
    called: set | None = None          # modules whose forward the traced step ran (checkpoint units among them)
    checkpointing_turned_on: bool = False   # clips whose step cannot run without it (fit_clips)

    @property
    def streaming(self) -> bool:
        return bool(self.streamed)

    @contextlib.contextmanager
    def training(self, hm, checkpointing: bool):
        """Training's memory savers on the placed model: low-precision weights re-cast and streamed weights
        fetched again in backward (gradient checkpointing does both itself by recomputing)."""
        layers = list(dict.fromkeys(recast_layers(hm.patcher) + self.streamed))
        handles = [m.register_forward_pre_hook(self._count_fetch) for m in self.streamed]
        try:
            with recast_weights_in_backward(hm.patcher, not checkpointing, layers=layers, stats=self.backward):
                yield self
        finally:
            for h in handles:
                h.remove()

    def restore(self, hm, clip=None, vae=None) -> None:
        """After sampling (which loads the encoders and the whole model for inference): the training
        placement again, with the same memory_required."""
        unload_from_device(vae.patcher if vae is not None and self.latents_cached else None,
                           clip.patcher if clip is not None and self.captions_cached else None)
        offloaded, streamed = load_for_training(hm, self.memory_required,
                                                self.estimate.budget_bytes if self.estimate else None)
        if [id(m) for m in streamed] != [id(m) for m in self.streamed]:
            log.warning("Kiln: after sampling the host streams %d layers instead of %d", len(streamed),
                        len(self.streamed))

    def _count_fetch(self, module, args):
        if torch.is_grad_enabled():
            self.forward_fetches += 1


def load_for_training(hm, memory_required: int, budget: int | None) -> tuple[int, list]:
    """Ask the host to load the diffusion model leaving ``memory_required`` free for training; where a budget
    is known and the loaded weights still leave too little, the host unloads part of them (its own
    partially_unload, the path it takes when another model needs room). Returns (bytes offloaded, streamed
    layers)."""
    patcher = hm.patcher
    if "memory_required" in inspect.signature(mm.load_models_gpu).parameters:
        mm.load_models_gpu([patcher], memory_required=memory_required)
    else:
        mm.load_models_gpu([patcher])
    offloaded = 0
    if budget is not None:
        excess = patcher.loaded_size() + memory_required - budget
        if excess > 0:
            offloaded = patcher.partially_unload(patcher.offload_device, excess) or 0
    offloaded = max(offloaded, patcher.model_size() - patcher.loaded_size())
    return int(offloaded), streamed_layers(patcher)


def fit_clips(hm, network, trainer, placement: Placement, refs) -> None:
    """A clip run on the device: gradient checkpointing turned on (and said once) where one step cannot run without
    it (core.train.estimate.checkpointing_needed); a window that cannot fit even so is refused before the first
    step, naming the clip, its frames and size, and what would fit. The caller applies the changed setting."""
    estimate = placement.estimate
    entry = max((trainer.dataset.images[r.index] for r in refs), key=lambda e: len(e.frames))
    frames = max(1, len(entry.frames))
    if checkpointing_needed(estimate):
        placement.checkpointing_turned_on = True
        placement.estimate = replace(estimate, settings=replace(estimate.settings, checkpointing=True))
        depth = trainer.cfg.checkpoint_depth
        if depth > 1:   # units below whole blocks are the parts whose forward runs: trace again to find them
            placement.called = set()
            placement.estimate = replace(placement.estimate, trace=trace_training_step(
                hm, network, trainer, refs, depth, placement.called))
        log.info("Kiln: %s", checkpointing_note(estimate, frames, entry.bucket))
    reason = clip_fit_error(placement.estimate, frames, entry.bucket)
    if reason:
        raise ValueError(f"{entry.path}: {reason}")


def place_for_training(hm, network, trainer, optimizer: str, clip=None, vae=None,
                       cache_latents: bool = True) -> Placement:
    """Cache, unload the encoders, estimate, and load the diffusion model for training (see the module)."""
    cfg = trainer.cfg
    placement = Placement()
    placement.latents_cached, placement.captions_cached = precache(trainer, cache_latents=cache_latents)
    placement.unloaded = unload_from_device(
        vae.patcher if (placement.latents_cached and vae is not None) else None,
        clip.patcher if (placement.captions_cached and clip is not None) else None)
    if placement.unloaded:
        log.info("Kiln: latents and captions cached; %s unloaded from the device for training",
                 ", ".join(placement.unloaded))
    first = next(iter(trainer.micro_batches(0)), None)
    if first is not None and trainer.dataset.has_clips:
        # Price the heaviest batch (the longest clip window at the largest bucket), not whichever came first.
        first = (*first[:2], heaviest_batch(trainer.dataset, trainer.dataset.epoch_plan(
            0, trainer.plan_batch, cfg.seed)))
    trace = None
    if first is not None:
        try:
            # Below whole blocks, only parts whose forward runs can be checkpoint units: find them (one more
            # fake forward) so the trace and the training wrap the same units.
            called = set() if cfg.gradient_checkpointing and cfg.checkpoint_depth > 1 else None
            trace = trace_training_step(hm, network, trainer, first[2], cfg.checkpoint_depth, called)
            placement.called = called
        except Exception as exc:   # noqa: BLE001 - an estimate that can't be made must not stop the bake
            log.warning("Kiln: the pre-flight memory trace failed on this model (%s: %s); the host loads it "
                        "without an estimate of what training needs", type(exc).__name__, exc)
            trace = None
    if first is not None and trace is not None:
        count, settings = weight_settings(hm.patcher, cfg.batch_size, cfg.gradient_checkpointing)
        placement.estimate = MemoryEstimate(trace, count, adapter_bytes(network.num_trainable(), optimizer),
                                            settings, device_budget(hm.patcher))
        if trainer.dataset.has_clips:
            fit_clips(hm, network, trainer, placement, first[2])
        placement.memory_required = placement.estimate.training_bytes()
        log.info("Kiln: %s", placement.estimate.summary())
    placement.offloaded_bytes, placement.streamed = load_for_training(hm, placement.memory_required,
                                                                      placement.estimate.budget_bytes
                                                                      if placement.estimate else None)
    if placement.streamed:
        log.info("Kiln: %.0f MiB of weights stay off the device (%d layers streamed in forward and backward)",
                 placement.offloaded_bytes / 2 ** 20, len(placement.streamed))
    return placement
