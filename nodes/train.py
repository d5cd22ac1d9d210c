"""Training nodes: the Train node, its objective and sample-preview configs, and the LoRA save/apply nodes."""
from __future__ import annotations

import logging
import uuid

import numpy as np
import torch
from PIL import Image

from .. import host
from ..core.lora.io import lora_file_in_folder, save_lora
from ..core.net.spec import NetworkSpec
from ..core.plots import to_uint8
from ..core.train.loop import TrainConfig
from ..core.train.objective import LOSSES, TIMESTEP_SAMPLINGS, ObjectiveSpec
from ..core.train.optim import OptimizerSpec
from ..core.train.presets import VRAM_CLASSES, apply_vram_class
from ..core.train.prompts import SamplePrompt, parse_prompts
from ..host.bake import SampleSpec, SaveSpec, bake
from ..host.distributed import is_main_process
from ..host.training import apply_lora

log = logging.getLogger("kiln")


def _ui_image(array: np.ndarray, prefix: str) -> dict:
    """Write an image to the host's temp folder and return the UI reference the frontend shows."""
    folder = host.temp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}.png"
    Image.fromarray(to_uint8(array)).save(folder / name)
    return {"filename": name, "subfolder": "", "type": "temp"}


class KilnTrainingObjective:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "loss": (list(LOSSES), {"default": "l2", "tooltip": "Loss on the model's native target (eps, v or flow velocity)."}),
            "huber_c": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 10.0, "step": 0.01, "tooltip": "Huber / smooth-L1 threshold."}),
            "min_snr_gamma": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.5, "tooltip": "Min-SNR weighting gamma (5 is usual); 0 turns it off."}),
            "debiased_estimation": ("BOOLEAN", {"default": False, "tooltip": "Weight the loss by 1/sqrt(SNR) (debiased estimation)."}),
            "noise_offset": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Noise offset (0.05-0.1 helps very dark/bright images)."}),
            "multires_noise_iterations": ("INT", {"default": 0, "min": 0, "max": 10, "tooltip": "Multi-resolution (pyramid) noise iterations; 0 off, 6 usual."}),
            "multires_noise_discount": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "Discount per pyramid level."}),
            "min_timestep": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Lowest noise level trained, as a fraction of the schedule."}),
            "max_timestep": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Highest noise level trained, as a fraction of the schedule."}),
        }, "optional": {
            "timestep_sampling": (list(TIMESTEP_SAMPLINGS), {"default": "auto", "tooltip": "How noise levels are drawn: auto = the model family's default (SD3 logit-normal, Flux/Chroma/FLUX.2 sigmoid, others uniform; flow families get their shift from the model), uniform, logit_normal, sigmoid."}),
            "logit_mean": ("FLOAT", {"default": 0.0, "min": -5.0, "max": 5.0, "step": 0.05, "tooltip": "logit_normal/sigmoid: mean of the normal draw (positive trains noisier)."}),
            "logit_std": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 5.0, "step": 0.05, "tooltip": "logit_normal/sigmoid: spread of the normal draw (kohya's sigmoid_scale)."}),
        }}

    RETURN_TYPES = ("KILN_OBJECTIVE",)
    RETURN_NAMES = ("objective",)
    FUNCTION = "build"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Loss, noise and timestep settings for the Train node."

    def build(self, **kw):
        return (ObjectiveSpec(**kw),)


class KilnSamplePrompts:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "prompts": ("STRING", {"multiline": True, "default": "kiln shapes, red circle --d 1", "tooltip": "One prompt per line; kohya's --n --w --h --d --l --s options work."}),
            "negative": ("STRING", {"default": "", "tooltip": "Default negative prompt (a line's --n overrides it)."}),
            "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip": "Default width."}),
            "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8, "tooltip": "Default height."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 200, "tooltip": "Default sampling steps."}),
            "cfg": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 30.0, "step": 0.5, "tooltip": "Default CFG scale."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": False, "tooltip": "Default seed (a line's --d overrides it)."}),
            "sampler_name": (host.sampler_names(), {"default": "euler", "tooltip": "The host's sampler."}),
            "scheduler": (host.scheduler_names(), {"default": "normal", "tooltip": "The host's noise schedule."}),
        }}

    RETURN_TYPES = ("KILN_SAMPLES",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "build"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Prompts sampled during training with the current LoRA, through the host's sampler."

    def build(self, prompts, negative, width, height, steps, cfg, seed, sampler_name, scheduler):
        defaults = SamplePrompt(prompt="", negative=negative, width=width, height=height, seed=seed, cfg=cfg, steps=steps)
        parsed = tuple(parse_prompts(prompts, defaults))
        if not parsed:
            raise ValueError("Kiln Sample Prompts: no prompt given; write at least one line.")
        return (SampleSpec(parsed, sampler_name, scheduler),)


class KilnTrainLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The loaded base model (from a checkpoint loader); its memory manager is reused."}),
            "clip": ("CLIP", {"tooltip": "The text encoder that encodes the captions (CLIP skip set upstream applies)."}),
            "vae": ("VAE", {"tooltip": "Encodes the images to latents once (cached)."}),
            "dataset": ("KILN_DATASET", {"tooltip": "From Kiln Load Dataset."}),
            "output_name": ("STRING", {"default": "kiln_lora", "tooltip": "Name for the saves under loras/kiln_checkpoints/<name>/."}),
            "epochs": ("INT", {"default": 10, "min": 1, "max": 10000, "tooltip": "Passes over the dataset (each image repeats N times per epoch, from its N_name folder)."}),
            "max_steps": ("INT", {"default": 0, "min": 0, "max": 1000000, "tooltip": "If > 0, train exactly this many steps instead of the epochs."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": "Images per step (mixed captions are fine)."}),
            "gradient_accumulation": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip": "Micro-batches per optimizer step (the loss is divided)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Seed for noise, timesteps, shuffles and dropout; a CPU run repeats exactly."}),
            "mixed_precision": (["auto", "fp32", "bf16", "fp16"], {"default": "auto", "tooltip": "auto: bf16 on a GPU that supports it, fp32 otherwise. fp16 uses a gradient scaler."}),
            "gradient_checkpointing": ("BOOLEAN", {"default": False, "tooltip": "Trade compute for memory by recomputing blocks in backward."}),
        }, "optional": {
            "network": ("KILN_NETWORK", {"tooltip": "From Kiln Network (default: LoRA dim 32 alpha 16 on attention+MLP)."}),
            "optimizer": ("KILN_OPTIMIZER", {"tooltip": "From Kiln Optimizer (default: AdamW 1e-4, cosine with restarts)."}),
            "objective": ("KILN_OBJECTIVE", {"tooltip": "From Kiln Training Objective (default: plain L2)."}),
            "sample_prompts": ("KILN_SAMPLES", {"tooltip": "From Kiln Sample Prompts: preview images while training."}),
            "sample_every_n_steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Sample the prompts every N steps (0: only at the end)."}),
            "save_every_n_steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "Save LoRA + resumable state every N steps (0: only at the end or on interrupt)."}),
            "save_every_n_epochs": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": "Save every N epochs (0: off)."}),
            "keep_last": ("INT", {"default": 3, "min": 1, "max": 1000, "tooltip": "How many periodic saves to keep."}),
            "save_dtype": (["fp16", "bf16", "fp32"], {"default": "fp16", "tooltip": "Precision of the saved LoRA files."}),
            "resume_from": ("STRING", {"default": "", "tooltip": "A '<name>-<step>-state' folder from an earlier run, to continue it exactly."}),
            "vram_preset": (list(VRAM_CLASSES), {"default": "none", "tooltip": "Set batch size, gradient checkpointing and precision together for a GPU memory class (overrides those inputs)."}),
            "ema_decay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.99999, "step": 0.0001, "tooltip": "Keep an exponential moving average of the LoRA weights (e.g. 0.999) and save that; 0 turns it off."}),
            "validation_split": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.5, "step": 0.05, "tooltip": "Hold out this fraction of the images and report their loss (fixed noise) during training."}),
            "validation_every_n_steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "How often to compute the validation loss (0: never)."}),
            "cache_latents_to_disk": ("BOOLEAN", {"default": False, "tooltip": "Keep encoded latents on disk (ComfyUI's kiln_latent_cache folder) so later runs skip the VAE; the key covers content, bucket, crop, flip, VAE and settings."}),
            "masked_loss": ("BOOLEAN", {"default": False, "tooltip": "Weight the loss by each image's mask (its alpha channel or a mask file beside it)."}),
            "checkpoint_depth": ("INT", {"default": 1, "min": 1, "max": 5, "tooltip": "With gradient checkpointing: 1 recomputes each block in backward, 2 each part of a block (attention, MLP), ... Deeper keeps less alive while a block is recomputed."}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP", "KILN_LORA", "KILN_LOSS", "IMAGE")
    RETURN_NAMES = ("model", "clip", "lora", "loss", "loss_plot")
    OUTPUT_TOOLTIPS = ("The model with the trained LoRA applied: wire it into KSampler.",
                       "The CLIP, with the LoRA applied when the text encoder trained.",
                       "The trained LoRA, for Save / Resize / Merge / Apply.",
                       "Loss per step.", "The loss chart.")
    FUNCTION = "train"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Train a LoRA on the connected model and dataset, then output the model with it applied."

    def train(self, model, clip, vae, dataset, output_name, epochs, max_steps, batch_size, gradient_accumulation,
              seed, mixed_precision, gradient_checkpointing, network=None, optimizer=None, objective=None,
              sample_prompts=None, sample_every_n_steps=0, save_every_n_steps=0, save_every_n_epochs=0,
              keep_last=3, save_dtype="fp16", resume_from="", vram_preset="none", ema_decay=0.0, masked_loss=False,
              validation_split=0.0, validation_every_n_steps=0, cache_latents_to_disk=False, checkpoint_depth=1):
        cfg = TrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=gradient_accumulation,
                          seed=seed, mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                          checkpoint_depth=checkpoint_depth,
                          objective=objective or ObjectiveSpec(), save_every_n_steps=save_every_n_steps,
                          save_every_n_epochs=save_every_n_epochs, sample_every_n_steps=sample_every_n_steps,
                          ema_decay=ema_decay, masked_loss=masked_loss, validation_split=validation_split,
                          validation_every_n_steps=validation_every_n_steps)
        cfg = apply_vram_class(cfg, vram_preset)
        save = SaveSpec(output_name=output_name, save_dtype=save_dtype, keep_last=keep_last,
                        resume_from=resume_from.strip(), cache_latents_to_disk=cache_latents_to_disk)
        result = bake(model, clip, vae, dataset, network or NetworkSpec(), optimizer or OptimizerSpec(), cfg, save,
                      sample_prompts)
        r = result.result
        losses = {"steps": [s for s, _ in r.losses], "loss": [v for _, v in r.losses],
                  "probe_start": r.probe_start, "probe_end": r.probe_end, "seconds": r.seconds,
                  "validation": [list(v) for v in r.validation],
                  # Where each sample image is, so Kiln Sample Timeline can draw prompts across steps.
                  "samples": [{"step": k[0], "prompt": k[1], "file": str(f)}
                              for f, k in zip(result.sample_files, result.sample_keys)],
                  "prompts": [p.prompt for p in sample_prompts.prompts] if sample_prompts else []}
        plot = torch.from_numpy(result.loss_image)[None]
        ui_images = [_ui_image(result.loss_image, "kiln_loss")] + [_ui_image(s, "kiln_sample") for s in result.samples[-4:]]
        return {"ui": {"images": ui_images, "kiln_loss": [losses]},
                "result": (result.model, result.clip, result.lora, losses, plot)}


class KilnSaveLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "lora": ("KILN_LORA", {"tooltip": "A LoRA from the Train, Resize, Merge or Load node."}),
            "filename": ("STRING", {"default": "kiln_lora", "tooltip": "File name in the loras folder (LoraLoader lists it); '.safetensors' is added. Subfolders allowed."}),
            "overwrite": ("BOOLEAN", {"default": True, "tooltip": "Replace an existing file of that name (written atomically); off adds a counter instead."}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("lora_name",)
    OUTPUT_TOOLTIPS = ("The name LoraLoader knows the file by.",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Save a LoRA as .safetensors with kohya key names and ss_* metadata into the loras folder."

    def save(self, lora, filename, overwrite):
        root = host.loras_dir()
        target = lora_file_in_folder(root, filename, overwrite)   # names capped as training saves are
        if is_main_process():   # under torchrun every rank runs the graph; rank 0 writes the file
            save_lora(lora, target)
        name = target.relative_to(root.resolve()).as_posix()
        log.info("Kiln: saved LoRA %s", target)
        return {"ui": {"text": [name], "kiln_files": [{"filename": name, "subfolder": "", "type": "loras"}]},
                "result": (name,)}


class KilnApplyLora:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to apply the LoRA to."}),
            "lora": ("KILN_LORA", {"tooltip": "A LoRA value from any Kiln node."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Strength on the diffusion model."}),
        }, "optional": {
            "clip": ("CLIP", {"tooltip": "The text encoder, if the LoRA has text-encoder modules."}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01, "tooltip": "Strength on the text encoder."}),
        }}

    RETURN_TYPES = ("MODEL", "CLIP")
    FUNCTION = "apply"
    CATEGORY = "Kiln/LoRA"
    DESCRIPTION = "Apply a Kiln LoRA value the way LoraLoader applies a file."

    def apply(self, model, lora, strength_model, clip=None, strength_clip=1.0):
        # The host's loader only logs a module that does not fit and skips it; check first, as Merge LoRA
        # Into Model does, so a wrong-shaped or damaged module stops here with its name.
        from ..core.tools.merge import check_against_model
        from .tools import _layer_shapes
        check_against_model(lora, _layer_shapes(model, clip))
        return apply_lora(model, clip, lora, strength_model, strength_clip if clip is not None else 0.0)


class KilnLossPlot:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"loss": ("KILN_LOSS", {"tooltip": "Loss history from the Train node."}),
                             "title": ("STRING", {"default": "loss", "tooltip": "Chart title."})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "plot"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Draw a loss history as an image (raw and smoothed)."

    def plot(self, loss, title):
        from ..core.train.plot import loss_plot
        return (torch.from_numpy(loss_plot(list(zip(loss["steps"], loss["loss"])), title=title,
                                           validation=loss.get("validation")))[None],)


class KilnSampleTimeline:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"loss": ("KILN_LOSS", {"tooltip": "The Train node's loss output (it lists the samples taken while training)."}),
                             "max_columns": ("INT", {"default": 12, "min": 2, "max": 64, "tooltip": "Most sample steps shown (the first and the latest ones)."}),
                             "cell_size": ("INT", {"default": 160, "min": 32, "max": 1024, "step": 8, "tooltip": "Pixel size of each sample in the grid."})}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("timeline",)
    OUTPUT_TOOLTIPS = ("One row per sample prompt, one column per sample step, labelled: wire it to Save Image.",)
    FUNCTION = "draw"
    CATEGORY = "Kiln/Training"
    DESCRIPTION = "Samples over time: each sample prompt's images across the training steps, as one image."

    def draw(self, loss, max_columns, cell_size):
        from ..core.train.timeline import load_entries, timeline_image
        entries = load_entries(loss.get("samples", []))
        if loss.get("samples") and not entries:
            log.warning("Kiln Sample Timeline: none of the %d sample files exist any more (output folder cleaned?)",
                        len(loss["samples"]))
        image = timeline_image(entries, loss.get("prompts", []), cell=cell_size, max_columns=max_columns)
        return (torch.from_numpy(image)[None],)


NODE_CLASS_MAPPINGS = {"KilnSampleTimeline": KilnSampleTimeline, "KilnTrainLora": KilnTrainLora, "KilnTrainingObjective": KilnTrainingObjective,
                       "KilnSamplePrompts": KilnSamplePrompts, "KilnSaveLora": KilnSaveLora,
                       "KilnApplyLora": KilnApplyLora, "KilnLossPlot": KilnLossPlot}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnTrainLora": "Kiln Train LoRA", "KilnTrainingObjective": "Kiln Training Objective",
                              "KilnSamplePrompts": "Kiln Sample Prompts", "KilnSaveLora": "Kiln Save LoRA",
                              "KilnApplyLora": "Kiln Apply LoRA", "KilnLossPlot": "Kiln Loss Plot",
                              "KilnSampleTimeline": "Kiln Sample Timeline"}
