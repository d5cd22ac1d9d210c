"""One training run ("a bake") on the host's loaded model: the orchestration behind the Train node.

Pieces from core (dataset, network, loop, metadata) are wired to the host's ModelPatcher, VAE, CLIP,
sampler, progress bar and interrupt here, so the node itself stays a thin adapter.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import comfy.model_management as mm
import comfy.sample
import comfy.utils
import folder_paths
import node_helpers

from ..core.lora.io import short_file_stem
from ..core.lora.metadata import training_metadata
from ..core.lora.value import KilnLora
from ..core.net.network import Network
from ..core.net.spec import NetworkSpec
from ..core.train.loop import TrainConfig, Trainer, TrainHooks
from ..core.train.optim import OptimizerSpec
from ..core.train.estimate import Preflight, adapter_bytes
from ..core.plots.images import to_float, to_uint8
from ..core.plots.loss_chart import loss_plot
from ..core.plots.timeline import sample_file_name
from ..core.train.saves import NoSaver, RunSaver
from ..core.train import family_sampling
from ..core.train.specs import BakeResult, SampleSpec, SaveSpec, TrainingAdapterSpec
from ..core.train.state import load_state
from . import adapter as training_adapter, families, live
from .distributed import agreed_interrupt, join_training
from .placement import place_for_training
from .memory import gradient_checkpointing
from .training import HostDiffusionModel, apply_lora, target_layers, text_encoder_grad_safe, vae_encoder

log = logging.getLogger("kiln")


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def base_model_version(model) -> str:
    """kohya's ss_base_model_version for the MODEL's family (host.families)."""
    return families.base_model_version(model)


def checkpoint_name(model) -> str:
    """The checkpoint file the MODEL was loaded from (kohya's ss_sd_model_name: its file name), where the
    host records it (ModelPatcher.cached_patcher_init holds the loader and its path); "" otherwise."""
    init = getattr(model, "cached_patcher_init", None)
    if isinstance(init, tuple) and len(init) > 1 and init[1] and isinstance(init[1][0], str):
        return Path(init[1][0]).name
    return ""


def make_autograd_safe(module: torch.nn.Module) -> int:
    """Swap inference-mode tensors (the host loads weights under inference_mode) for normal ones in place.

    Autograd refuses to save inference tensors for backward; each swap replaces the tensor, so memory
    stays the same (no second copy of the base weights survives). Returns how many were swapped."""
    swapped = 0
    with torch.inference_mode(False), torch.no_grad():
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if p is not None and p.is_inference():
                    sub._parameters[name] = torch.nn.Parameter(p.clone(), requires_grad=False)
                    swapped += 1
            for name, b in list(sub._buffers.items()):
                if b is not None and b.is_inference():
                    sub._buffers[name] = b.clone()
                    swapped += 1
    return swapped


def _safe_name(name: str) -> str:
    """The output name as a file-name stem: unsafe characters replaced, and names too long for a file
    system (a 250-byte or 90-CJK-character name) shortened with a hash (see short_file_stem)."""
    return short_file_stem(name)


def checkpoint_dir(output_name: str) -> Path:
    """The first run's folder for ``output_name``; later runs of the same name get ``<name>_runN``."""
    return Path(folder_paths.get_folder_paths("loras")[0]) / "kiln_checkpoints" / _safe_name(output_name)


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image.float().cpu().numpy()))


class _Sampler:
    """Sample images through the host's own sampler with the adapters attached (the current LoRA)."""

    def __init__(self, spec: SampleSpec, hm: HostDiffusionModel, clip, vae, run_name: str):
        self.spec, self.hm, self.clip, self.vae = spec, hm, clip, vae
        # The family's own cfg/steps/scheduler where the prompts kept the generic defaults, and its distilled
        # guidance (Flux dev, FLUX.2) set on the conditioning as the FluxGuidance node sets it.
        self.spec, self.guidance, note = family_sampling.for_family(spec, hm.family)
        if note:
            log.info("Kiln: %s", note)
        # Named like the run's save folder (<name>, <name>_run2, ...): a second run of the same name keeps
        # its samples apart from the first run's, and a resumed run adds to its own run's samples.
        self.dir = Path(folder_paths.get_output_directory()) / "kiln_samples" / run_name
        self.images: list[np.ndarray] = []
        self.files: list[Path] = []
        self.keys: list[tuple[int, int]] = []

    def __call__(self, step: int) -> list[Image.Image]:
        out = []
        with torch.no_grad():
            for i, p in enumerate(self.spec.prompts):
                pos = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(p.prompt))
                if self.guidance is not None:
                    pos = node_helpers.conditioning_set_values(pos, {"guidance": self.guidance})
                neg = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(p.negative))
                latent = torch.zeros([1, 4, p.height // 8, p.width // 8])
                latent = comfy.sample.fix_empty_latent_channels(self.hm.patcher, latent)
                noise = comfy.sample.prepare_noise(latent, p.seed)
                samples = comfy.sample.sample(self.hm.patcher, noise, p.steps, p.cfg, self.spec.sampler,
                                              self.spec.scheduler, pos, neg, latent, seed=p.seed, disable_pbar=True)
                image = self.vae.decode(samples)[0]
                while image.dim() > 3:
                    image = image[0]
                pil = _to_pil(image)
                self.dir.mkdir(parents=True, exist_ok=True)
                path = self.dir / sample_file_name(step, i)
                tmp = path.with_suffix(".tmp.png")
                pil.save(tmp)
                tmp.replace(path)
                self.files.append(path)
                self.keys.append((step, i))
                self.images.append(to_float(pil))
                out.append(pil)
        return out


def _latent_cache(encode, encoder_id, on_disk: bool = False):
    from ..core.data.cache import LatentCache
    disk = Path(folder_paths.get_temp_directory()).parent / "kiln_latent_cache" if on_disk else None
    return LatentCache(encode, encoder_id, str(disk) if disk else None)


def bake(model, clip, vae, dataset, net: NetworkSpec, opt: OptimizerSpec, cfg: TrainConfig, save: SaveSpec,
         samples: SampleSpec | None = None, on_step=None, node_id: str | None = None,
         adapter_spec: TrainingAdapterSpec | None = None) -> BakeResult:
    """``node_id``: the Train node's id in the frontend's graph (the V3 hidden UNIQUE_ID), which the live loss chart
    and sample timeline are sent under; None (headless, tests) sends nothing."""
    from . import interrupt_exception_type, throw_if_interrupted
    if net.train_text_encoder and clip is None:
        raise ValueError("Text-encoder training is on but no CLIP is connected to the train node; "
                         "connect the checkpoint's CLIP or turn text-encoder training off.")
    if clip is None:
        raise ValueError("The train node needs the checkpoint's CLIP to encode the captions; connect it.")
    adapter = training_adapter.apply_training_adapter(model, adapter_spec)   # None without one; refused if misfit
    started = time.time()
    validation = None
    if cfg.validation_split > 0:
        dataset, validation = dataset.split_validation(cfg.validation_split, cfg.seed)
    with torch.inference_mode(False):
        hm = HostDiffusionModel(adapter.model if adapter else model, clip, net.train_text_encoder,
                                load=False)   # loaded by place_for_training
        make_autograd_safe(hm.base.diffusion_model)
        shard = join_training(hm.device)   # Shard(0, 1) unless under torchrun
        if net.train_text_encoder:
            make_autograd_safe(clip.cond_stage_model)
        network = Network(net, target_layers(hm.patcher if net.train_unet else None,
                                             clip if net.train_text_encoder else None), device=hm.device)
        encode, encoder_id = vae_encoder(vae)
        latents = _latent_cache(encode, encoder_id, save.cache_latents_to_disk)
        pbar = comfy.utils.ProgressBar(1)
        trainer_box = {}

        def make_lora(step):
            meta = training_metadata(
                network=net, optimizer=opt, train=cfg, dataset_meta=dataset.training_metadata(),
                base_model_version=base_model_version(model), output_name=save.output_name, steps=step,
                model_name=checkpoint_name(model),
                epoch=trainer_box["t"].epochs_done(step), total_steps=trainer_box["t"].total_steps, started_at=started,
                clip_skip=(-clip.layer_idx if getattr(clip, "layer_idx", None) else None),
                v_parameterization=hm.kind == "v", family=hm.family, extra=adapter.metadata if adapter else None)
            with trainer_box["t"].ema_applied():
                return KilnLora(network.export(_DTYPES[save.save_dtype]), meta)

        def make_state(step):
            return trainer_box["t"].state(step, {"output_name": save.output_name, "algorithm": net.algorithm})

        saver = RunSaver(save, checkpoint_dir(save.output_name), make_lora, make_state) if shard.is_main \
            else NoSaver()
        # Samples without the training adapter, as ai-toolkit's (host/adapter.py).
        sampler = _Sampler(samples, training_adapter.for_samples(hm, model, adapter), clip, vae, saver.dir.name) \
            if samples and samples.prompts and shard.is_main else None
        last_preview = [None]

        def progress(step, total, loss):
            if not shard.is_main:
                return
            pbar.update_absolute(step, total, last_preview[0])
            live.step(node_id, step, total, loss, trainer_box["t"].epoch_of_step(step))
            if on_step:
                on_step(step, total, loss)

        def sample(step):
            with trainer_box["t"].ema_applied():
                pils = sampler(step)
            placement.restore(hm, clip, vae)   # sampling loaded the encoders and the whole model again
            if pils:
                last_preview[0] = ("JPEG", pils[-1], 512)
                out_dir = Path(folder_paths.get_output_directory())
                live.samples(node_id, [{"filename": f.name, "subfolder": str(f.parent.relative_to(out_dir)),
                                        "type": "output", "step": k[0], "prompt": k[1]}
                                       for f, k in zip(sampler.files[-len(pils):], sampler.keys[-len(pils):])],
                             [p.prompt for p in sampler.spec.prompts])

        hooks = TrainHooks(progress=progress,
                           check_interrupt=agreed_interrupt(throw_if_interrupted, shard, hm.device,
                                                            interrupt_exception_type()),
                           interrupt_types=(interrupt_exception_type(),), save=saver,
                           sample=sample if sampler else (lambda step: None), log=log.info,
                           validation=lambda step, loss: live.validation(node_id, step, loss))
        trainer = Trainer(cfg, dataset, network, opt, hm, latents, hooks, validation=validation, shard=shard)
        log.info("Kiln: %s", trainer.plan_text(len(dataset)))
        # Latents and captions cached, the VAE and text encoder off the device, the model loaded with the
        # memory training needs (partially, streamed, where it does not fit).
        placement = place_for_training(hm, network, trainer, opt.name, clip=clip, vae=vae)
        make_autograd_safe(hm.base.diffusion_model)
        checks: list[Preflight] = []
        measure = PreflightMeter(trainer, hm, opt)

        def first_micro(seconds):
            checks.append(replace(measure.finish(seconds), memory=placement.estimate))
            log.info("Kiln: %s", checks[0].summary(trainer.total_steps))
        hooks.first_micro = first_micro
        trainer_box["t"] = trainer
        pbar.update_absolute(0, trainer.total_steps)
        live.start(node_id, trainer.total_steps, save.output_name)
        resume = load_state(save.resume_from) if save.resume_from else None
        try:
            with network, gradient_checkpointing(hm.patcher, cfg.gradient_checkpointing, cfg.checkpoint_depth,
                                                     placement.called), \
                    placement.training(hm, cfg.gradient_checkpointing), \
                    text_encoder_grad_safe(clip, net.train_text_encoder):
                result = trainer.run(resume)
                saver(result.step, True)
                if sampler is not None and (not cfg.sample_every_n_steps or result.step % cfg.sample_every_n_steps):
                    sample(result.step)
        finally:
            live.finish(node_id)
        if result.step:
            log.info("Kiln: trained %d steps in %.1f s (%.2f steps/s)", len(result.losses), result.seconds,
                     len(result.losses) / max(result.seconds, 1e-9))
        # The in-graph value is exactly what was saved, so LoraLoader on the file gives the same model.
        lora = make_lora(result.step)
        mm.soft_empty_cache()
    out_model, out_clip = apply_lora(model, clip, lora, 1.0, 1.0 if net.train_text_encoder else 0.0)
    return BakeResult(out_model, out_clip if net.train_text_encoder else clip, lora, result, preflight=checks[0] if checks else None,
                      loss_image=
                      loss_plot(result.losses, title=f"{save.output_name} loss", validation=result.validation),
                      samples=list(sampler.images) if sampler else [],
                      sample_files=list(sampler.files) if sampler else [],
                      sample_keys=list(sampler.keys) if sampler else [], saved_files=list(saver.files),
                      save_errors=list(saver.errors))


class _NoNetwork:
    """Stands in for a network when only measuring a model's loss."""

    training = False

    def train(self, mode=True):
        return self

    def eval(self):
        return self


def fixed_sample_loss(model, clip, vae, dataset, samples: int = 8, seed: int = 0, space: str = "native") -> float:
    """Kiln's fixed-sample loss (same images, noise and noise levels every time) of any MODEL, e.g. one
    trained by another node: the common ground for comparing trainers. ``space`` "native" measures the
    residual in the family's own target (eps, v or flow: what Kiln trains), "x0" the MSE of the denoised
    latent (what the host's TrainLoraNode minimises), so each trainer can also be graded on its own terms."""
    if space not in ("native", "x0"):
        raise ValueError(f"space must be 'native' or 'x0', not {space!r}")
    with torch.inference_mode(False):
        hm = HostDiffusionModel(model, clip, False)
        if space == "x0":
            hm.kind = "x0"
        encode, encoder_id = vae_encoder(vae)
        trainer = Trainer(TrainConfig(seed=seed, probe_samples=samples), dataset, _NoNetwork(), OptimizerSpec(), hm,
                          _latent_cache(encode, encoder_id))
        return trainer.probe_loss(samples)


class PreflightMeter:
    """Time and peak memory of the first micro-batch of the real run (no extra step is spent on it),
    turned into the estimate shown at the start: time per step, total time, memory against free memory."""

    def __init__(self, trainer: Trainer, hm: HostDiffusionModel, opt: OptimizerSpec):
        self.trainer, self.hm, self.opt = trainer, hm, opt
        self.cuda = hm.device.type == "cuda"
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(hm.device)
            self.base = torch.cuda.memory_allocated(hm.device)

    def finish(self, seconds: float) -> Preflight:
        if self.cuda:
            torch.cuda.synchronize()
        seconds *= self.trainer.cfg.grad_accum
        n = self.trainer.network.num_trainable()
        extra = adapter_bytes(n, self.opt.name)
        peak = (torch.cuda.max_memory_allocated(self.hm.device) - self.base + extra) if self.cuda else None
        free = mm.get_free_memory(self.hm.device) if self.cuda else None
        return Preflight(seconds, seconds * self.trainer.total_steps, n, extra, peak, free)
