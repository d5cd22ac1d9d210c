"""One training run ("a bake") on the host's loaded model: the orchestration behind the Train node.

Pieces from core (dataset, network, loop, metadata) are wired to the host's ModelPatcher, VAE, CLIP,
sampler, progress bar and interrupt here, so the node itself stays a thin adapter.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

import comfy.model_management as mm
import comfy.sample
import comfy.utils
import folder_paths
import node_helpers

from ..core.lora.io import short_file_stem
from ..core.lora.metadata import training_metadata
from ..core.lora.value import KilnLora, module_groups
from ..core.net.network import Network
from ..core.net.spec import NetworkSpec
from ..core.train.loop import TrainConfig, Trainer, TrainHooks
from ..core.train.optim import OptimizerSpec
from ..core.train.estimate import Preflight, adapter_bytes
from ..core.train.experts import ExpertSpec, for_expert
from ..core.data.controls import control_side, control_size
from ..core.data.images import to_float, to_uint8
from ..core.plots.loss_chart import loss_plot
from ..core.plots.timeline import sample_file_name
from ..core.train.saves import NoSaver, RunSaver
from ..core.train import family_sampling
from ..core.train.specs import (BakeResult, SampleRecord, SampleSpec, SaveSpec, TrainingAdapterSpec,
                                TrainingReport)
from ..core.train.state import load_state
from . import adapter as training_adapter, families, live, reference
from .distributed import agreed_interrupt, join_training
from .placement import place_for_training
from .checkpointing import gradient_checkpointing
from .training import (HostDiffusionModel, apply_lora, check_clips, check_text_encoder_trainable,
                       latent_spatial_ratio, target_layers, text_encoder_grad_safe, vae_encoder, vae_temporal_ratio)

log = logging.getLogger("kiln")


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def base_model_version(model) -> str:
    """kohya's ss_base_model_version for the MODEL's family (host.families)."""
    return families.base_model_version(model)


def checkpoint_name(model) -> str:
    """The checkpoint file the MODEL was loaded from (kohya's ss_sd_model_name: its file name), where the
    host records it; "" otherwise."""
    return families.model_file_name(model)


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


def _frames(decoded: torch.Tensor) -> torch.Tensor:
    """The first sample's frames [F, H, W, C] of a VAE decode ([B, H, W, C] images, [B, F, H, W, C] videos)."""
    decoded = decoded[0]
    while decoded.dim() > 4:
        decoded = decoded[0]
    return decoded[None] if decoded.dim() == 3 else decoded


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image.float().cpu().numpy()))


class _Sampler:
    """Sample images through the host's own sampler with the adapters attached (the current LoRA)."""

    def __init__(self, spec: SampleSpec, hm: HostDiffusionModel, clip, vae, run_name: str,
                 control_side: int | None = None):
        self.spec, self.hm, self.clip, self.vae = spec, hm, clip, vae
        # Edit samples take their control as training did: at the run's control_resolution side (None: the prompt's
        # size), and on Qwen-Image-Edit with the prompt encoded with its picture.
        self.control_side = control_side
        self.text_sees_controls = bool(spec.controls) and reference.text_sees_controls(clip, hm.family)
        # The family's own cfg/steps/scheduler where the prompts kept the generic defaults, and its distilled
        # guidance (Flux dev, FLUX.2) set on the conditioning as the FluxGuidance node sets it.
        self.spec, self.guidance, note = family_sampling.for_family(spec, hm.family)
        if note:
            log.info("Kiln: %s", note)
        if spec.controls and hm.family not in reference.EDIT_FAMILIES:
            log.warning("Kiln: the sample prompts' control images are left out: %s is not an edit family (%s take "
                        "them)", hm.family, reference.edit_families_text())
        # Named like the run's save folder (<name>, <name>_run2, ...): a second run of the same name keeps
        # its samples apart from the first run's, and a resumed run adds to its own run's samples.
        self.dir = Path(folder_paths.get_output_directory()) / "kiln_samples" / run_name
        self.records: list[SampleRecord] = []
        self.control_latents: dict[tuple[int, int, int], torch.Tensor] = {}   # (prompt, width, height) -> latent

    def empty_latent(self, width: int, height: int) -> torch.Tensor:
        """The empty latent the host's own Empty Latent Image + KSampler give for ``width`` x ``height``: a 1/8
        latent rescaled to the family's latent ratio (16 for FLUX.2 and Wan 2.2, whose latents a 1/8 latent would
        sample at twice the size, 4x the tokens), as its latent nodes' downscale_ratio_spacial makes it."""
        ratio = latent_spatial_ratio(self.hm.patcher, self.vae)
        cells = [max(1, round((side // 8) * 8 / ratio)) for side in (height, width)]
        return torch.zeros([1, 4, *cells])

    def __call__(self, step: int) -> list[Image.Image]:
        out = []
        with torch.no_grad():
            for i, p in enumerate(self.spec.prompts):
                if self.text_sees_controls:
                    # Qwen-Image-Edit: the prompt is encoded with its picture, as TextEncodeQwenImageEditPlus does
                    pos = reference.encode_with_controls(self.clip, p.prompt, [self.spec.controls[i]])
                else:
                    pos = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(p.prompt))
                if self.spec.controls:
                    pos = self.with_control(pos, i, p)
                if self.guidance is not None:
                    pos = node_helpers.conditioning_set_values(pos, {"guidance": self.guidance})
                neg = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(p.negative))
                latent = comfy.sample.fix_empty_latent_channels(self.hm.patcher, self.empty_latent(p.width, p.height))
                latent = self.with_frames(latent, p.frames)
                noise = comfy.sample.prepare_noise(latent, p.seed)
                samples = comfy.sample.sample(self.hm.patcher, noise, p.steps, p.cfg, self.spec.sampler,
                                              self.spec.scheduler, pos, neg, latent, seed=p.seed, disable_pbar=True)
                if samples.dim() == 5 and getattr(self.vae, "latent_dim", 2) == 2:
                    samples = samples[:, :, 0]   # a one-frame video latent on an image VAE (a TAE preview VAE)
                frames = [_to_pil(f) for f in _frames(self.vae.decode(samples))]
                path = self.save(frames, step, i)
                self.records.append(SampleRecord(step, i, path, to_float(frames[0]),
                                                 path.with_suffix(".webp") if len(frames) > 1 else None))
                out.append(frames[0])
        return out

    def with_control(self, conditioning, index: int, p):
        """The picture prompt ``index`` edits, as the host's VAEEncode -> ReferenceLatent gives it: at the prompt's
        size, or at the size the run's control_resolution gave the training controls for that target size (Qwen-Image-
        Edit's ~1 Mpx, as TextEncodeQwenImageEditPlus scales its references); encoded once per run."""
        if self.hm.family not in reference.EDIT_FAMILIES:
            return conditioning
        width, height = control_size((p.width, p.height), self.control_side)
        key = (index, width, height)
        if key not in self.control_latents:
            image = self.spec.controls[index]
            pixels = comfy.utils.common_upscale(image[..., :3].movedim(-1, 1), width, height, "bilinear",
                                                "center").movedim(1, -1)
            latent = self.vae.encode(pixels)
            if getattr(self.hm.base.latent_format, "latent_dimensions", 2) == 3 and latent.dim() == 4:
                latent = latent.unsqueeze(2)     # an image VAE's latent on a video-latent family (one frame)
            self.control_latents[key] = latent
        return reference.reference_conditioning(conditioning, [self.control_latents[key]])

    def with_frames(self, latent: torch.Tensor, frames: int) -> torch.Tensor:
        """A video family's empty latent for ``frames`` frames (the VAE's (frames - 1) / temporal + 1 latent
        frames, as the host's empty video latent nodes make it); still families keep theirs."""
        temporal = vae_temporal_ratio(self.vae)
        if frames <= 1 or latent.dim() != 5 or not temporal:
            return latent
        return latent.repeat(1, 1, (frames - 1) // temporal + 1, 1, 1)

    def save(self, frames: list[Image.Image], step: int, index: int) -> Path:
        """The first frame as the sample's PNG (the timeline's cell); a video's frames also as an animated WebP
        beside it. Both written atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / sample_file_name(step, index)
        tmp = path.with_suffix(".tmp.png")
        frames[0].save(tmp)
        tmp.replace(path)
        if len(frames) > 1:
            tmp = path.with_suffix(".tmp.webp")
            frames[0].save(tmp, format="WEBP", save_all=True, append_images=frames[1:], duration=62, loop=0,
                           lossless=False, quality=90)
            tmp.replace(path.with_suffix(".webp"))
        return path


def latent_cache(encode, encoder_id, on_disk: bool = False):
    from ..core.data.cache import LatentCache
    disk = Path(folder_paths.get_temp_directory()).parent / "kiln_latent_cache" if on_disk else None
    return LatentCache(encode, encoder_id, str(disk) if disk else None)


def bake(model, clip, vae, dataset, net: NetworkSpec, opt: OptimizerSpec, cfg: TrainConfig, save: SaveSpec,
         samples: SampleSpec | None = None, on_step=None, node_id: str | None = None,
         expert: ExpertSpec = ExpertSpec(), adapter_spec: TrainingAdapterSpec | None = None) -> BakeResult:
    """One training run on the host's MODEL (see ``Bake``). ``node_id``: the Train node's id in the frontend's graph
    (the V3 hidden UNIQUE_ID), which the live loss chart and sample timeline are sent under; None sends nothing.
    ``expert``: one expert of a two-expert model (Wan 2.2 A14B) trains its own noise levels only; ``adapter_spec``:
    a distilled model's training adapter, merged into the base for this run only (host.adapter)."""
    return Bake(model, clip, vae, dataset, net, opt, cfg, save, samples, on_step, node_id, expert, adapter_spec).run()


def bake_experts(high, low, clip, vae, dataset, net: NetworkSpec, opt: OptimizerSpec, cfg: TrainConfig,
                 save: SaveSpec, samples: SampleSpec | None = None, node_id: str | None = None,
                 expert: ExpertSpec = ExpertSpec(), adapter_spec: TrainingAdapterSpec | None = None):
    """Both experts of a two-expert model (Wan 2.2 A14B), one run each on its side of ``expert.boundary``, each
    LoRA named for its expert (<output_name>_low_noise, <output_name>_high_noise). Returns (high, low)."""
    low_result = bake(low, clip, vae, dataset, net, opt, cfg,
                      replace(save, output_name=f"{save.output_name}_low_noise"), samples, node_id=node_id,
                      expert=replace(expert, expert="low_noise"), adapter_spec=adapter_spec)
    high_result = bake(high, clip, vae, dataset, net, opt, cfg,
                       replace(save, output_name=f"{save.output_name}_high_noise"), samples, node_id=node_id,
                       expert=replace(expert, expert="high_noise"), adapter_spec=adapter_spec)
    return high_result, low_result


class Bake:
    """A bake's steps, in order: check the inputs, prepare the model, build the network and trainer, place the
    model (cache latents and captions, unload the encoders, load with the memory training needs), run, save, and
    apply the LoRA to the graph's MODEL/CLIP. What the steps share lives on the object; what the run wrote comes
    back as a ``TrainingReport``."""

    def __init__(self, model, clip, vae, dataset, net: NetworkSpec, opt: OptimizerSpec, cfg: TrainConfig,
                 save: SaveSpec, samples: SampleSpec | None = None, on_step=None, node_id: str | None = None,
                 expert: ExpertSpec = ExpertSpec(), adapter_spec: TrainingAdapterSpec | None = None):
        self.model, self.clip, self.vae, self.dataset = model, clip, vae, dataset
        self.expert, self.adapter_spec, self.adapter = expert, adapter_spec, None
        self.net, self.opt, self.cfg, self.save, self.samples = net, opt, cfg, save, samples
        self.on_step, self.node_id = on_step, node_id
        self.started = time.time()
        self.validation = None
        self.edit = False   # the dataset's control images train through the host's reference latents
        self.trainer: Trainer | None = None
        self.sampler: _Sampler | None = None
        self.placement = None
        self.preflight: Preflight | None = None
        self.checkpointing = None          # host.checkpointing.CheckpointStats of the run
        self.last_preview = None
        self.last_lora = None              # (step, KilnLora) of the last make_lora
        self.pbar = comfy.utils.ProgressBar(1)

    def run(self) -> BakeResult:
        self.check_inputs()
        with torch.inference_mode(False):
            self.prepare_model()
            self.build()
            self.place()
            result = self.train()
            lora = self.make_lora(result.step)
            mm.soft_empty_cache()
        return self.apply(result, lora)

    def check_inputs(self) -> None:
        if self.net.train_text_encoder and self.clip is None:
            raise ValueError("Text-encoder training is on but no CLIP is connected to the train node; "
                             "connect the checkpoint's CLIP or turn text-encoder training off.")
        if self.clip is None:
            raise ValueError("The train node needs the checkpoint's CLIP to encode the captions; connect it.")
        if self.net.train_text_encoder:
            check_text_encoder_trainable(self.clip)
        self.dataset = check_clips(self.dataset, self.model, self.vae)
        note = families.clip_note(families.family_of(self.model)) if self.dataset.has_clips else ""
        if note:    # what clips hold that this family does not train (LTX-2's audio)
            log.info("Kiln: %s", note)
        self.edit = reference.check_controls(self.dataset, self.model, self.clip)   # on a family without: refused
        if self.edit:
            self.dataset = reference.for_family(self.dataset, self.model)   # control_resolution "family"
        # None without one; a misfit file is refused here, before any step.
        self.adapter = training_adapter.apply_training_adapter(self.model, self.adapter_spec)
        if self.cfg.validation_split > 0:
            self.dataset, self.validation = self.dataset.split_validation(self.cfg.validation_split, self.cfg.seed)

    def prepare_model(self) -> None:
        """The host's MODEL cloned (loaded later, by ``place``), and the adapters' network on its layers."""
        trained = self.adapter.model if self.adapter else self.model   # the base with the training adapter patched in
        self.hm = HostDiffusionModel(trained, self.clip, self.net.train_text_encoder, load=False)
        if self.expert.expert != "none":
            objective = for_expert(self.cfg.objective, self.expert, self.hm.percent_to_sigma)
            self.cfg = replace(self.cfg, objective=objective)
            log.info("Kiln: training the %s expert: noise levels %.3f-%.3f of the schedule", self.expert.expert,
                     self.cfg.objective.min_timestep, self.cfg.objective.max_timestep)
        make_autograd_safe(self.hm.base.diffusion_model)   # before the pre-flight trace runs a fake backward
        self.shard = join_training(self.hm.device)   # Shard(0, 1) unless under torchrun
        if self.net.train_text_encoder:
            make_autograd_safe(self.clip.cond_stage_model)
        self.network = Network(self.net, target_layers(self.hm.patcher if self.net.train_unet else None,
                                                       self.clip if self.net.train_text_encoder else None),
                               device=self.hm.device)

    def build(self) -> None:
        """Saver, sampler, hooks and trainer."""
        from . import interrupt_exception_type, throw_if_interrupted
        encode, encoder_id = vae_encoder(self.vae)
        latents = latent_cache(encode, encoder_id, self.save.cache_latents_to_disk)
        if self.edit:   # each batch's control latents go to the model as the host's reference latents
            self.hm.references = reference.References()
            latents = reference.EditLatents(latents, self.hm.references)
            if reference.text_sees_controls(self.clip, self.hm.family):   # Qwen-Image-Edit's vision tower
                self.hm.encode_text_with_controls = reference.ControlText(self.clip, self.net.train_text_encoder)
        main = self.shard.is_main
        self.saver = (RunSaver(self.save, checkpoint_dir(self.save.output_name), self.make_lora, self.make_state)
                      if main else NoSaver())
        if self.samples and self.samples.prompts and main:
            # Samples without the training adapter, as ai-toolkit's (host/adapter.py).
            self.sampler = _Sampler(self.samples, training_adapter.for_samples(self.hm, self.model, self.adapter),
                                    self.clip, self.vae, self.saver.dir.name,
                                    control_side(self.dataset.config.control_resolution))
        hooks = TrainHooks(progress=self.progress,
                           check_interrupt=agreed_interrupt(throw_if_interrupted, self.shard, self.hm.device,
                                                            interrupt_exception_type()),
                           interrupt_types=(interrupt_exception_type(),), save=self.saver,
                           sample=self.sample if self.sampler else (lambda step: None), log=log.info,
                           validation=lambda step, loss: live.validation(self.node_id, step, loss),
                           first_micro=self.first_micro)
        self.trainer = Trainer(self.cfg, self.dataset, self.network, self.opt, self.hm, latents, hooks,
                               validation=self.validation, shard=self.shard)
        log.info("Kiln: %s", self.trainer.plan_text(len(self.dataset)))

    def place(self) -> None:
        """Latents and captions cached, the VAE and text encoder off the device, the model loaded with the memory
        training needs (partially, streamed, where it does not fit); weights the load brought in under inference mode
        made safe for autograd again."""
        self.placement = place_for_training(self.hm, self.network, self.trainer, self.opt.name, clip=self.clip,
                                            vae=self.vae)
        if self.placement.checkpointing_turned_on:   # a clip step that cannot run without it (placement.fit_clips)
            self.cfg = self.trainer.cfg = replace(self.cfg, gradient_checkpointing=True)
        if make_autograd_safe(self.hm.base.diffusion_model):
            log.debug("Kiln: the host's load left inference tensors in the model; swapped")
        self.meter = PreflightMeter(self.trainer, self.hm, self.opt)

    def train(self):
        cfg = self.cfg
        self.pbar.update_absolute(0, self.trainer.total_steps)
        live.start(self.node_id, self.trainer.total_steps, self.save.output_name)
        resume = load_state(self.save.resume_from) if self.save.resume_from else None
        try:
            with self.network, gradient_checkpointing(self.hm.patcher, cfg.gradient_checkpointing,
                                                      cfg.checkpoint_depth, self.placement.called) as stats, \
                    self.placement.training(self.hm, cfg.gradient_checkpointing), \
                    text_encoder_grad_safe(self.clip, self.net.train_text_encoder):
                self.checkpointing = stats
                result = self.trainer.run(resume)
                self.saver(result.step, True)
                if self.sampler is not None and (not cfg.sample_every_n_steps
                                                 or result.step % cfg.sample_every_n_steps):
                    self.sample(result.step)
        finally:
            live.finish(self.node_id)
        if result.step:
            log.info("Kiln: trained %d steps in %.1f s (%.2f steps/s)", len(result.losses), result.seconds,
                     len(result.losses) / max(result.seconds, 1e-9))
        return result

    def apply(self, result, lora: KilnLora) -> BakeResult:
        """The in-graph value is exactly what was saved, so LoraLoader on the file gives the same model."""
        te = self.net.train_text_encoder
        out_model, out_clip = apply_lora(self.model, self.clip, lora, 1.0, 1.0 if te else 0.0)
        report = TrainingReport(
            losses=list(result.losses), validation=list(result.validation), probe_start=result.probe_start,
            probe_end=result.probe_end, seconds=result.seconds,
            samples=list(self.sampler.records) if self.sampler else [],
            prompts=[p.prompt for p in self.sampler.spec.prompts] if self.sampler else [],
            saved_files=list(self.saver.files), save_errors=list(self.saver.errors), placement=self.placement,
            preflight=self.preflight, checkpointing=self.checkpointing)
        return BakeResult(out_model, out_clip if te else self.clip, lora, result, report,
                          loss_plot(result.losses, title=f"{self.save.output_name} loss",
                                    validation=result.validation))

    # --- what the loop calls back -------------------------------------------------------------------------------
    def make_lora(self, step: int) -> KilnLora:
        """The LoRA (tensors in the save dtype, metadata) at ``step``; the final save's is reused for the in-graph
        value rather than exported and converted a second time (the weights of a step do not change after it)."""
        if self.last_lora is not None and self.last_lora[0] == step:
            return self.last_lora[1]
        lora = self._export_lora(step)
        self.last_lora = (step, lora)
        return lora

    def _export_lora(self, step: int) -> KilnLora:
        with self.trainer.ema_applied():
            tensors = self.network.export(_DTYPES[self.save.save_dtype])
        meta = training_metadata(
            network=self.net, optimizer=self.opt, train=self.cfg, dataset_meta=self.dataset.training_metadata(),
            base_model_version=base_model_version(self.model), output_name=self.save.output_name, steps=step,
            model_name=checkpoint_name(self.model), epoch=self.trainer.epochs_done(step),
            total_steps=self.trainer.total_steps, started_at=self.started,
            clip_skip=(-self.clip.layer_idx if getattr(self.clip, "layer_idx", None) else None),
            v_parameterization=self.hm.kind == "v", family=families.release_of(self.model),
            extra=self.adapter.metadata if self.adapter else None, modules=module_groups(tensors))
        return KilnLora(tensors, meta)

    def make_state(self, step: int):
        return self.trainer.state(step, {"output_name": self.save.output_name, "algorithm": self.net.algorithm})

    def progress(self, step: int, total: int, loss: float) -> None:
        if not self.shard.is_main:
            return
        self.pbar.update_absolute(step, total, self.last_preview)
        live.step(self.node_id, step, total, loss, self.trainer.epoch_of_step(step))
        if self.on_step:
            self.on_step(step, total, loss)

    def sample(self, step: int) -> None:
        with self.trainer.ema_applied():
            pils = self.sampler(step)
        self.placement.restore(self.hm, self.clip, self.vae)   # sampling loaded the encoders and the whole model again
        if not pils:
            return
        self.last_preview = ("JPEG", pils[-1], 512)
        out_dir = Path(folder_paths.get_output_directory())
        live.samples(self.node_id, [{"filename": r.file.name, "subfolder": str(r.file.parent.relative_to(out_dir)),
                                     "type": "output", "step": r.step, "prompt": r.prompt}
                                    for r in self.sampler.records[-len(pils):]],
                     [p.prompt for p in self.sampler.spec.prompts])

    def first_micro(self, seconds: float) -> None:
        self.preflight = replace(self.meter.finish(seconds), memory=self.placement.estimate)
        log.info("Kiln: %s", self.preflight.summary(self.trainer.total_steps))


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
