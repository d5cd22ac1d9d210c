"""Training nodes: the Train node, its objective and sample-preview configs, and the LoRA save/apply nodes."""
from __future__ import annotations

import logging
import uuid

import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image

from .. import host
from ..core.lora.io import lora_file_in_folder, save_lora
from ..core.net.spec import NetworkSpec
from ..core.plots import loss_plot, timeline_image, to_uint8
from ..core.plots.timeline import load_entries
from ..core.tools.merge import check_against_model
from ..core.train.experts import ExpertSpec
from ..core.train.loop import TrainConfig
from ..core.train.objective import LOSSES, TIMESTEP_SAMPLINGS, ObjectiveSpec
from ..core.train.optim import OptimizerSpec
from ..core.train.presets import VRAM_CLASSES, apply_vram_class
from ..core.train.sample_prompts import SamplePrompt, parse_prompts, sample_controls
from ..core.train.family_presets import PRESETS, apply_family_preset
from ..core.train.family_presets import NONE as NO_PRESET
from ..core.train.specs import SampleSpec, SaveSpec, TrainingAdapterSpec
from ..host.adapter import NO_ADAPTER
from ..host.bake import bake, bake_experts
from ..host.families import family_of
from ..host.distributed import is_main_process
from ..host.training import apply_lora, layer_shapes
from .schema import (Dataset, Lora, Loss, Network, Objective, Optimizer, Samples, config_values, from_field,
                     node_input, output)

log = logging.getLogger("kiln")

NO_VRAM_PRESET = "none"   # the VRAM_CLASSES entry that leaves batch size, checkpointing and precision as set


def _loss_ui(report) -> dict:
    """The report as the frontend's loss chart reads it (plain JSON: steps, losses, probes, validation)."""
    return {"steps": report.steps, "loss": report.loss_values, "probe_start": report.probe_start,
            "probe_end": report.probe_end, "seconds": report.seconds,
            "validation": [list(v) for v in report.validation]}


def _ui_image(array: np.ndarray, prefix: str) -> dict:
    """Write an image to the host's temp folder and return the UI reference the frontend shows."""
    folder = host.temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(to_uint8(array)).save(folder / name)
    return {"filename": name, "subfolder": "", "type": "temp"}


def train_ui(loss_image: np.ndarray, samples: list, report) -> dict:
    """What the Train node shows: the loss chart and the last four training-time samples. A video sample is its
    animated WebP (the file the bake wrote in the output folder), flagged as the host's animated-image nodes flag
    theirs, so the node plays it; a still sample is its picture."""
    out = host.output_dir()
    images, animated = [_ui_image(loss_image, "kiln_loss")], [False]
    for record in samples[-4:]:
        if record.animation is not None and record.animation.is_file():
            images.append({"filename": record.animation.name, "type": "output",
                           "subfolder": str(record.animation.parent.relative_to(out))})
            animated.append(True)
        else:
            images.append(_ui_image(record.image, "kiln_sample"))
            animated.append(False)
    ui = {"images": images, "kiln_loss": [_loss_ui(report)]}
    if any(animated):
        ui["animated"] = tuple(animated)
    return ui


class KilnTrainingObjective(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        required = ("huber_c", "min_snr_gamma", "debiased_estimation", "noise_offset", "multires_noise_iterations",
                    "multires_noise_discount", "min_timestep", "max_timestep")
        # The loss and min-SNR are what the guides change; the rest is folded away as advanced.
        return io.Schema(
            node_id="KilnTrainingObjective", display_name="Kiln Training Objective", category="Kiln/Training",
            description="Loss, noise and timestep settings for the Train node.",
            inputs=[
                from_field(ObjectiveSpec, "loss", options=list(LOSSES)),
                *(from_field(ObjectiveSpec, name, advanced=name not in ("min_snr_gamma", "noise_offset"))
                  for name in required),
                from_field(ObjectiveSpec, "timestep_sampling", options=list(TIMESTEP_SAMPLINGS), optional=True),
                from_field(ObjectiveSpec, "logit_mean", optional=True, advanced=True),
                from_field(ObjectiveSpec, "logit_std", optional=True, advanced=True),
            ],
            outputs=[output(Objective, "objective")])

    @classmethod
    def execute(cls, **inputs):
        return io.NodeOutput(ObjectiveSpec(**config_values(ObjectiveSpec, inputs)))


class KilnSamplePrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnSamplePrompts", display_name="Kiln Sample Prompts", category="Kiln/Training",
            description="Prompts sampled during training with the current LoRA, through the host's sampler.",
            inputs=[
                node_input(io.String, "prompts", multiline=True, default="kiln shapes, red circle --d 1",
                           tooltip="One prompt per line; kohya's --n --w --h --d --l --s options work."),
                from_field(SamplePrompt, "negative"),
                from_field(SamplePrompt, "width"),
                from_field(SamplePrompt, "height"),
                from_field(SamplePrompt, "steps"),
                from_field(SamplePrompt, "cfg"),
                from_field(SamplePrompt, "seed", control_after_generate=False),
                node_input(io.Combo, "sampler_name", options=host.sampler_names(), default="euler",
                           tooltip="The host's sampler."),
                node_input(io.Combo, "scheduler", options=host.scheduler_names(), default="normal",
                           tooltip="The host's noise schedule."),
                io.Image.Input("control_images", optional=True,
                               tooltip="Edit LoRAs: the picture each prompt edits, in the prompts' order (one picture "
                                       "serves every prompt); sampled as the host's ReferenceLatent does."),
            ],
            outputs=[output(Samples, "samples")])

    @classmethod
    def execute(cls, prompts, negative, width, height, steps, cfg, seed, sampler_name, scheduler,
                control_images=None):
        defaults = SamplePrompt(prompt="", negative=negative, width=width, height=height, seed=seed, cfg=cfg,
                                steps=steps)
        parsed = tuple(parse_prompts(prompts, defaults))
        if not parsed:
            raise ValueError("Kiln Sample Prompts: no prompt given; write at least one line.")
        return io.NodeOutput(SampleSpec(parsed, sampler_name, scheduler, sample_controls(control_images, len(parsed))))


# The Train node's short path: what a user sets on every run stays in view (model, clip, vae, dataset and the
# config sockets, output name, epochs or steps, batch size, sampling and saving cadence); the rest is advanced.
TRAIN_ADVANCED = {"gradient_accumulation", "seed", "mixed_precision", "gradient_checkpointing", "save_every_n_epochs",
                  "keep_last", "save_dtype", "resume_from", "vram_preset", "ema_decay", "validation_split",
                  "validation_every_n_steps", "cache_latents_to_disk", "masked_loss", "checkpoint_depth"}


def _train_field(config, name, input_name=None, **kw):
    input_name = input_name or name
    return from_field(config, name, id=input_name, advanced=input_name in TRAIN_ADVANCED, **kw)


class KilnTrainLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnTrainLora", display_name="Kiln Train LoRA", category="Kiln/Training",
            description="Train a LoRA on the connected model and dataset, then output the model with it applied.",
            hidden=[io.Hidden.unique_id],   # the live chart is sent under this node's id
            inputs=[
                node_input(io.Model, "model", tooltip="The loaded base model (from a checkpoint loader); its memory "
                                                      "manager is reused."),
                node_input(io.Clip, "clip", tooltip="The text encoder that encodes the captions (CLIP skip set "
                                                    "upstream applies)."),
                node_input(io.Vae, "vae", tooltip="Encodes the images to latents once (cached)."),
                node_input(Dataset, "dataset", tooltip="From Kiln Load Dataset."),
                _train_field(SaveSpec, "output_name"),
                _train_field(TrainConfig, "epochs"),
                _train_field(TrainConfig, "max_steps"),
                _train_field(TrainConfig, "batch_size"),
                _train_field(TrainConfig, "grad_accum", "gradient_accumulation"),
                _train_field(TrainConfig, "seed"),
                _train_field(TrainConfig, "mixed_precision"),
                _train_field(TrainConfig, "gradient_checkpointing"),
                node_input(Network, "network", optional=True,
                           tooltip="From Kiln Network (default: LoRA dim 32 alpha 16 on attention+MLP)."),
                node_input(Optimizer, "optimizer", optional=True,
                           tooltip="From Kiln Optimizer (default: AdamW 1e-4, cosine with restarts)."),
                node_input(Objective, "objective", optional=True,
                           tooltip="From Kiln Training Objective (default: plain L2)."),
                node_input(Samples, "sample_prompts", optional=True,
                           tooltip="From Kiln Sample Prompts: preview images while training."),
                _train_field(TrainConfig, "sample_every_n_steps", optional=True),
                _train_field(TrainConfig, "save_every_n_steps", optional=True),
                _train_field(TrainConfig, "save_every_n_epochs", optional=True),
                _train_field(SaveSpec, "keep_last", optional=True),
                _train_field(SaveSpec, "save_dtype", optional=True),
                _train_field(SaveSpec, "resume_from", optional=True),
                node_input(io.Combo, "vram_preset", options=list(VRAM_CLASSES), default=NO_VRAM_PRESET, optional=True,
                           advanced=True, tooltip="Set batch size, gradient checkpointing and precision together for a "
                                                  "GPU memory class (overrides those inputs)."),
                _train_field(TrainConfig, "ema_decay", optional=True),
                _train_field(TrainConfig, "validation_split", optional=True),
                _train_field(TrainConfig, "validation_every_n_steps", optional=True),
                _train_field(SaveSpec, "cache_latents_to_disk", optional=True),
                _train_field(TrainConfig, "masked_loss", optional=True),
                _train_field(TrainConfig, "checkpoint_depth", optional=True),
                # New inputs go last so saved workflows keep their widget order: distilled models' adapter and presets,
                node_input(io.Combo, "preset", options=list(PRESETS), default=NO_PRESET, optional=True,
                           tooltip="auto: the model family's learning rate, rank/alpha, timestep sampling and steps "
                                   "(from ai-toolkit / musubi-tuner / kohya defaults), filled in wherever a value "
                                   "was left at its default; none: as set."),
                node_input(io.Combo, "training_adapter", options=[NO_ADAPTER, *host.lora_names()],
                           default=NO_ADAPTER, optional=True, advanced=True,
                           tooltip="A distilled model's de-distillation LoRA (e.g. ostris' Z-Image Turbo or FLUX.1 "
                                   "schnell training adapter), merged into the base for this run only: never in "
                                   "the saved or output LoRA, left out of the samples."),
                from_field(TrainingAdapterSpec, "strength", id="training_adapter_strength", optional=True,
                           advanced=True),
                # two-expert models (Wan 2.2 A14B).
                from_field(ExpertSpec, "expert", optional=True, advanced=True),
                from_field(ExpertSpec, "boundary", id="expert_boundary", optional=True, advanced=True),
                node_input(io.Model, "model_low_noise", optional=True,
                           tooltip="Wan 2.2 A14B's low-noise expert: with it, `model` trains as the high-noise expert "
                                   "and this one as the low-noise expert, one after the other, each LoRA named for its "
                                   "expert (<output_name>_high_noise, <output_name>_low_noise)."),
            ],
            outputs=[
                output(io.Model, "model", "The model with the trained LoRA applied: wire it into KSampler."),
                output(io.Clip, "clip", "The CLIP, with the LoRA applied when the text encoder trained."),
                output(Lora, "lora", "The trained LoRA, for Save / Resize / Merge / Apply."),
                output(Loss, "loss", "Loss per step."),
                output(io.Image, "loss_plot", "The loss chart."),
                output(io.Model, "model_low_noise", "With model_low_noise connected: that expert with its LoRA."),
                output(Lora, "lora_low_noise", "With model_low_noise connected: the low-noise expert's LoRA."),
            ])

    @classmethod
    def execute(cls, model, clip, vae, dataset, output_name, epochs, max_steps, batch_size, gradient_accumulation,
                seed, mixed_precision, gradient_checkpointing, network=None, optimizer=None, objective=None,
                sample_prompts=None, vram_preset=NO_VRAM_PRESET, preset=NO_PRESET, training_adapter=NO_ADAPTER,
                training_adapter_strength=1.0, model_low_noise=None, **options):
        # Optional inputs a saved workflow lacks keep their config field's default.
        cfg = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=gradient_accumulation,
                          seed=seed, mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                          objective=objective or ObjectiveSpec(), **config_values(TrainConfig, options))
        cfg = apply_vram_class(cfg, vram_preset)
        saving = config_values(SaveSpec, options)
        saving["resume_from"] = saving.get("resume_from", "").strip()
        save = SaveSpec(output_name=output_name, **saving)
        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        network, optimizer, cfg, note = apply_family_preset(preset, family_of(model), network or NetworkSpec(),
                                                            optimizer or OptimizerSpec(), cfg)
        if note:
            log.info("Kiln: %s", note)
        adapter = TrainingAdapterSpec(training_adapter, training_adapter_strength)
        expert = ExpertSpec(options.get("expert", "none"), options.get("expert_boundary", 0.875))
        if model_low_noise is not None:
            result, low = bake_experts(model, model_low_noise, clip, vae, dataset, network, optimizer, cfg, save,
                                       sample_prompts, node_id=node_id, expert=expert, adapter_spec=adapter)
        else:
            low = None
            result = bake(model, clip, vae, dataset, network, optimizer, cfg, save, sample_prompts, node_id=node_id,
                          expert=expert, adapter_spec=adapter)
        report = result.report
        plot = torch.from_numpy(result.loss_image)[None]
        return io.NodeOutput(result.model, result.clip, result.lora, report, plot,
                             low.model if low else model_low_noise, low.lora if low else None,
                             ui=train_ui(result.loss_image, report.samples, report))


class KilnSaveLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnSaveLora", display_name="Kiln Save LoRA", category="Kiln/LoRA", is_output_node=True,
            description="Save a LoRA as .safetensors with kohya key names and ss_* metadata into the loras folder.",
            inputs=[
                node_input(Lora, "lora", tooltip="A LoRA from the Train, Resize, Merge or Load node."),
                node_input(io.String, "filename", default="kiln_lora",
                           tooltip="File name in the loras folder (LoraLoader lists it); '.safetensors' is added. "
                                   "Subfolders allowed."),
                node_input(io.Boolean, "overwrite", default=True,
                           tooltip="Replace an existing file of that name (written atomically); off adds a counter "
                                   "instead."),
            ],
            outputs=[output(io.String, "lora_name", "The name LoraLoader knows the file by.")])

    @classmethod
    def execute(cls, lora, filename, overwrite):
        root = host.loras_dir()
        target = lora_file_in_folder(root, filename, overwrite)   # names capped as training saves are
        if is_main_process():   # under torchrun every rank runs the graph; rank 0 writes the file
            save_lora(lora, target)
        name = target.relative_to(root.resolve()).as_posix()
        log.info("Kiln: saved LoRA %s", target)
        return io.NodeOutput(name, ui={"text": [name],
                                       "kiln_files": [{"filename": name, "subfolder": "", "type": "loras"}]})


class KilnApplyLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnApplyLora", display_name="Kiln Apply LoRA", category="Kiln/LoRA",
            description="Apply a Kiln LoRA value the way LoraLoader applies a file.",
            inputs=[
                node_input(io.Model, "model", tooltip="The model to apply the LoRA to."),
                node_input(Lora, "lora", tooltip="A LoRA value from any Kiln node."),
                node_input(io.Float, "strength_model", default=1.0, min=-10.0, max=10.0, step=0.01,
                           tooltip="Strength on the diffusion model."),
                node_input(io.Clip, "clip", optional=True,
                           tooltip="The text encoder, if the LoRA has text-encoder modules."),
                node_input(io.Float, "strength_clip", default=1.0, min=-10.0, max=10.0, step=0.01, optional=True,
                           tooltip="Strength on the text encoder."),
            ],
            # unnamed, as the classic node's were: shown and saved as MODEL and CLIP
            outputs=[io.Model.Output(), io.Clip.Output()])

    @classmethod
    def execute(cls, model, lora, strength_model, clip=None, strength_clip=1.0):
        # The host's loader only logs a module that does not fit and skips it; check first, as Merge LoRA
        # Into Model does, so a wrong-shaped or damaged module stops here with its name.
        check_against_model(lora, layer_shapes(model, clip))
        return io.NodeOutput(*apply_lora(model, clip, lora, strength_model,
                                         strength_clip if clip is not None else 0.0))


class KilnLossPlot(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnLossPlot", display_name="Kiln Loss Plot", category="Kiln/Training",
            description="Draw a loss history as an image (raw and smoothed).",
            inputs=[node_input(Loss, "loss", tooltip="Loss history from the Train node."),
                    node_input(io.String, "title", default="loss", tooltip="Chart title.")],
            outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, loss, title):
        return io.NodeOutput(torch.from_numpy(loss_plot(list(loss.losses), title=title,
                                                        validation=loss.validation))[None])


class KilnSampleTimeline(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="KilnSampleTimeline", display_name="Kiln Sample Timeline", category="Kiln/Training",
            description="Samples over time: each sample prompt's images across the training steps, as one image.",
            inputs=[
                node_input(Loss, "loss",
                           tooltip="The Train node's loss output (it lists the samples taken while training)."),
                node_input(io.Int, "max_columns", default=12, min=2, max=64,
                           tooltip="Most sample steps shown (the first and the latest ones)."),
                node_input(io.Int, "cell_size", default=160, min=32, max=1024, step=8,
                           tooltip="Pixel size of each sample in the grid."),
            ],
            outputs=[output(io.Image, "timeline", "One row per sample prompt, one column per sample step, "
                                                  "labelled: wire it to Save Image.")])

    @classmethod
    def execute(cls, loss, max_columns, cell_size):
        entries = load_entries(loss.samples)
        if loss.samples and not entries:
            log.warning("Kiln Sample Timeline: none of the %d sample files exist any more (output folder cleaned?)",
                        len(loss.samples))
        image = timeline_image(entries, loss.prompts, cell=cell_size, max_columns=max_columns)
        return io.NodeOutput(torch.from_numpy(image)[None])


NODES = (KilnTrainingObjective, KilnSamplePrompts, KilnTrainLora, KilnSaveLora, KilnApplyLora, KilnLossPlot,
         KilnSampleTimeline)
