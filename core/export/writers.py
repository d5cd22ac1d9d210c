"""The config files each trainer reads, from an ExportRecipe.

Key names follow each tool's documentation and argument parsers: kohya sd-scripts (``train_network.py``
and its family scripts, ``--config_file`` TOML of argument names, ``--dataset_config`` TOML of
[general]/[[datasets]]/[[datasets.subsets]]), musubi-tuner (the same ``--config_file`` mechanism, its
dataset TOML with ``image_directory``/``cache_directory``), accelerate (``default_config.yaml``) and
diffusion-pipe (``examples/main_example.toml`` and ``examples/dataset.toml``). A family a tool does not
train is skipped with a note; a path the graph cannot give (a Diffusers folder, a separate text
encoder) is written empty and named in HOW_TO_RUN.txt."""
from __future__ import annotations

import logging
from pathlib import Path

from ..lora.io import atomic_write_bytes
from ..data.controls import control_base
from .media import (concept_media, diffusion_pipe_frame_buckets, media_notes, musubi_control_keys,
                    musubi_video_keys)
from .recipe import ExportError, ExportRecipe
from .toml_text import dumps

FORMATS = ("kohya", "musubi", "accelerate", "diffusion-pipe")

# kohya sd-scripts: family -> (training script, LoRA network module)
KOHYA_SCRIPTS = {
    "sd1": ("train_network.py", "networks.lora"), "sd2": ("train_network.py", "networks.lora"),
    "sdxl": ("sdxl_train_network.py", "networks.lora"), "sd3": ("sd3_train_network.py", "networks.lora_sd3"),
    "flux1-dev": ("flux_train_network.py", "networks.lora_flux"),
    "flux1-schnell": ("flux_train_network.py", "networks.lora_flux"),
    "chroma": ("flux_train_network.py", "networks.lora_flux"),
    "lumina2": ("lumina_train_network.py", "networks.lora_lumina"),
}
# musubi-tuner: family -> (script stem under src/musubi_tuner, network module)
MUSUBI_SCRIPTS = {
    "wan": ("wan", "networks.lora_wan"), "qwen-image": ("qwen_image", "networks.lora_qwen_image"),
    "z-image": ("zimage", "networks.lora_zimage"), "flux2": ("flux_2", "networks.lora_flux_2"),
    # docs/hunyuan_video_1_5.md: hv_1_5_train_network.py, networks.lora_hv_1_5. LTX-2: musubi-tuner has no script.
    "hunyuan-video-1.5": ("hv_1_5", "networks.lora_hv_1_5"),
}
# Families whose musubi-tuner dataset takes control images (docs/dataset_config.md: FLUX.1 Kontext, FLUX.2,
# Qwen-Image-Edit).
MUSUBI_EDIT_FAMILIES = ("flux1-dev", "flux2", "qwen-image")
# diffusion-pipe [model] type per family (docs/supported_models.md)
DIFFUSION_PIPE_TYPES = {
    "sdxl": "sdxl", "flux1-dev": "flux", "flux1-schnell": "flux", "chroma": "chroma", "sd3": "sd3",
    "lumina2": "lumina_2", "wan": "wan", "hidream": "hidream", "qwen-image": "qwen_image",
}

KOHYA_OPTIMIZERS = {"adamw": "AdamW", "adamw8bit": "AdamW8bit", "prodigy": "Prodigy", "lion": "Lion",
                    "adafactor": "Adafactor", "came": "pytorch_optimizer.CAME", "sgd": "torch.optim.SGD",
                    "schedulefree_adamw": "AdamWScheduleFree"}
DIFFUSION_PIPE_OPTIMIZERS = {"adamw": "adamw_optimi", "adamw8bit": "AdamW8bitKahan", "prodigy": "Prodigy",
                             "lion": "Lion", "adafactor": "AdaFactor", "came": "CAME",
                             "schedulefree_adamw": "ScheduleFreeAdamW", "sgd": "SGD"}
# diffusion-pipe model types that train edit datasets (control_path): Flux Kontext (type flux), Qwen-Image-Edit.
DIFFUSION_PIPE_EDIT_TYPES = ("flux", "qwen_image")
LYCORIS_ALGOS = {"loha": "loha", "lokr": "lokr", "ia3": "ia3", "dora": "lora", "full": "full"}
_PRECISION = {"fp16": "fp16", "bf16": "bf16", "fp32": "float"}
_TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}

log = logging.getLogger("kiln")


def _mixed_precision(r: ExportRecipe) -> str:
    # Kiln's "auto" is bf16 on a GPU that has it: the big trainers run on such GPUs.
    return {"auto": "bf16", "fp32": "no"}.get(r.train.mixed_precision, r.train.mixed_precision)


def _concepts(r: ExportRecipe) -> list[dict]:
    """One entry per N_name folder (or the flat folder), as the Load Dataset node reads them, with what it holds
    (images, clips, control folders: media.concept_media); control folders are not concepts."""
    from ..data.controls import control_names
    from ..data.scan import find_concepts
    base = control_base(r.dataset.controls)
    skip = tuple(control_names(base)) if base else ()
    out = []
    for path, repeats, is_reg in ((r.dataset.path, r.dataset.repeats, False),
                                  (r.dataset.reg_path, r.dataset.reg_repeats, True)):
        if not path:
            continue
        root = Path(path)
        if not root.is_dir():
            raise ExportError(f"dataset folder {root} does not exist; fix the Load Dataset node's path")
        for c in find_concepts(root, repeats, log.warning, skip):
            out.append({"dir": str(c.folder), "repeats": c.repeats, "class_text": c.class_text, "is_reg": is_reg,
                        **concept_media(c.folder, r.dataset.controls)})
    if not any(not c["is_reg"] for c in out):
        raise ExportError(f"dataset folder {r.dataset.path} holds no images (N_name folders or images)")
    return out


def _steps_or_epochs(r: ExportRecipe, steps_key: str, epochs_key: str) -> dict:
    return {steps_key: r.train.max_steps} if r.train.max_steps > 0 else {epochs_key: r.train.epochs}


def _optimizer_args(r: ExportRecipe) -> list[str]:
    o = r.optimizer
    args = [f"weight_decay={o.weight_decay}"]
    if o.name in ("adamw", "adamw8bit", "prodigy", "lion", "schedulefree_adamw"):
        args.append(f"betas={o.betas[0]},{o.betas[1]}")
    if o.name == "adafactor":
        args += ["relative_step=False", "scale_parameter=False", "warmup_init=False"]
    if o.name == "sgd":
        args.append("momentum=0.9")
    return args


def _caption_ext(r: ExportRecipe, notes: list) -> str:
    if r.dataset.caption_source == "files":
        return r.dataset.caption_extension
    # No caption files: kohya falls back to the subset's class_tokens for an image without one.
    notes.append(f"captions come from '{r.dataset.caption_source}' in Kiln; the exported subsets use class_tokens "
                 "and a caption extension no file has")
    return ".kiln-no-caption"


# -- kohya sd-scripts ------------------------------------------------------------------------------
def kohya_files(r: ExportRecipe, out_dir: str, notes: list) -> dict[str, str]:
    if r.family not in KOHYA_SCRIPTS:
        notes.append(f"kohya sd-scripts has no LoRA script for {r.family}; no kohya files written")
        return {}
    script, module = KOHYA_SCRIPTS[r.family]
    module, network_args = _kohya_network(r, module, notes)
    args = _kohya_args(r, out_dir, module, network_args, notes)
    header = (f"kohya sd-scripts training arguments exported by Kiln ({r.family}).\n"
              f"accelerate launch --config_file {out_dir}/accelerate_config.yaml {script} --config_file {out_dir}/kohya_args.toml")
    out = {"kohya_dataset.toml": dumps(_kohya_dataset(r, notes), header="kohya sd-scripts dataset config exported by Kiln"),
           "kohya_args.toml": dumps(args, header=header)}
    if r.sample_prompts:
        out["kohya_prompts.txt"] = "\n".join(r.sample_prompts) + "\n"
    return out


def _kohya_dataset(r: ExportRecipe, notes: list) -> dict:
    d = r.dataset
    ext = _caption_ext(r, notes)
    concepts = _concepts(r)
    media_notes(concepts, "kohya sd-scripts", notes, clips=False, controls=False)
    phrase = d.caption_phrase if d.caption_source == "phrase" else ""
    subsets = [{"image_dir": c["dir"], "num_repeats": c["repeats"], "is_reg": c["is_reg"],
                "class_tokens": phrase or c["class_text"] if d.caption_source != "none" else "",
                "caption_extension": ext} for c in concepts]
    return {
        "general": {"shuffle_caption": d.shuffle_caption, "keep_tokens": d.keep_tokens,
                    "keep_tokens_separator": d.keep_tokens_separator or None, "flip_aug": d.flip_aug,
                    "color_aug": d.color_aug, "random_crop": d.random_crop,
                    "caption_prefix": d.caption_prefix or None, "caption_suffix": d.caption_suffix or None,
                    "caption_dropout_rate": d.caption_dropout_rate, "caption_tag_dropout_rate": d.tag_dropout_rate},
        "datasets": [{"resolution": d.resolution, "batch_size": r.train.batch_size, "enable_bucket": d.enable_buckets,
                      "min_bucket_reso": d.min_bucket_reso, "max_bucket_reso": d.max_bucket_reso,
                      "bucket_reso_steps": d.bucket_reso_steps, "bucket_no_upscale": d.bucket_no_upscale,
                      "subsets": subsets}],
    }


def _kohya_network(r: ExportRecipe, module: str, notes: list) -> tuple[str, list[str]]:
    """The network module and its network_args (LyCORIS for its algorithms, kohya's own otherwise)."""
    net = r.network
    network_args = []
    if net.algorithm in LYCORIS_ALGOS:
        module = "lycoris.kohya"
        network_args.append(f"algo={LYCORIS_ALGOS[net.algorithm]}")
        if net.dora:
            network_args.append("dora_wd=True")
        if net.algorithm == "lokr":
            network_args.append(f"factor={net.factor}")
        if net.targets == "attn":
            network_args.append("preset=attn-only")
        elif net.targets == "full":
            network_args.append("preset=full")
    elif net.algorithm == "dylora" and r.family in ("sd1", "sd2", "sdxl"):
        module = "networks.dylora"
    elif net.algorithm != "lora":
        notes.append(f"algorithm {net.algorithm} has no kohya module; plain LoRA written")
    if net.conv_rank > 0:
        network_args += [f"conv_dim={net.conv_rank}", f"conv_alpha={net.conv_alpha}"]
    if net.rank_dropout:
        network_args.append(f"rank_dropout={net.rank_dropout}")
    if net.module_dropout:
        network_args.append(f"module_dropout={net.module_dropout}")
    if net.targets != "attn_mlp" and module.startswith("networks."):
        notes.append(f"kohya's {module} trains attention+MLP; the graph's '{net.targets}' targets are not expressible there")
    if net.block_rank_weights or net.block_lr_weights:
        notes.append("block weights are not exported (kohya's down_lr_weight/block_dims differ per script)")
    return module, network_args


def _kohya_args(r: ExportRecipe, out_dir: str, module: str, network_args: list, notes: list) -> dict:
    """kohya_args.toml: the flat table of sd-scripts options, then each family's own."""
    d, net, o, obj = r.dataset, r.network, r.optimizer, r.train.objective
    files = r.model_files
    args = {
        "pretrained_model_name_or_path": files.get("checkpoint") or files.get("diffusion_model", ""),
        "dataset_config": f"{out_dir}/kohya_dataset.toml",
        "output_dir": f"{out_dir}/output", "output_name": r.output_name, "save_model_as": "safetensors",
        "save_precision": _PRECISION.get(r.save_dtype, "fp16"),
        "network_module": module, "network_dim": net.rank, "network_alpha": net.alpha,
        "network_dropout": net.dropout or None, "network_args": network_args or None,
        "network_train_unet_only": (not net.train_text_encoder) or None,
        "network_train_text_encoder_only": (not net.train_unet) or None,
        "optimizer_type": KOHYA_OPTIMIZERS.get(o.name, o.name), "optimizer_args": _optimizer_args(r),
        "learning_rate": o.lr, "unet_lr": o.lr,
        "text_encoder_lr": o.text_encoder_lr if net.train_text_encoder else None,
        "lr_scheduler": o.scheduler, "lr_warmup_steps": o.warmup_steps or None,
        "lr_scheduler_num_cycles": o.num_cycles if o.scheduler == "cosine_with_restarts" else None,
        "lr_scheduler_power": o.power if o.scheduler == "polynomial" else None,
        "lr_scheduler_min_lr_ratio": o.min_lr_ratio or None,
        "max_grad_norm": o.max_grad_norm,
        **_steps_or_epochs(r, "max_train_steps", "max_train_epochs"),
        "train_batch_size": r.train.batch_size, "gradient_accumulation_steps": r.train.grad_accum,
        "seed": r.train.seed, "mixed_precision": _mixed_precision(r),
        "gradient_checkpointing": r.train.gradient_checkpointing,
        "cache_latents": not d.color_aug and not d.random_crop,
        "cache_latents_to_disk": (r.cache_latents_to_disk and not d.color_aug and not d.random_crop) or None,
        "save_every_n_steps": r.train.save_every_n_steps or None,
        "save_every_n_epochs": r.train.save_every_n_epochs or None, "save_state": True,
        "loss_type": obj.loss, "huber_c": obj.huber_c if obj.loss in ("huber", "smooth_l1") else None,
        "min_snr_gamma": obj.min_snr_gamma or None, "debiased_estimation_loss": obj.debiased_estimation or None,
        "noise_offset": obj.noise_offset or None,
        "multires_noise_iterations": obj.multires_noise_iterations or None,
        "multires_noise_discount": obj.multires_noise_discount if obj.multires_noise_iterations else None,
        "min_timestep": int(round(obj.min_timestep * 1000)) if obj.min_timestep > 0 else None,
        "max_timestep": int(round(obj.max_timestep * 1000)) if obj.max_timestep < 1 else None,
        "masked_loss": r.train.masked_loss or None,
        "prior_loss_weight": d.prior_loss_weight if d.reg_path else None,
    }
    if o.warmup_steps == 0 and o.warmup_ratio > 0:
        args["lr_warmup_steps"] = o.warmup_ratio   # a float < 1 is a ratio of the total steps in sd-scripts
    if r.family in ("flux1-dev", "flux1-schnell", "chroma"):
        args.update({"clip_l": files.get("text_encoder", ""), "t5xxl": files.get("text_encoder_2", ""),
                     "ae": files.get("vae", ""), "model_prediction_type": "raw", "timestep_sampling": "uniform",
                     "guidance_scale": 1.0 if r.family == "flux1-dev" else None,
                     "model_type": "chroma" if r.family == "chroma" else None})
        notes.append("kohya Flux training reads the text encoders (clip_l, t5xxl) and the ae from their own files: "
                     "check those paths in kohya_args.toml")
    if r.family == "sd3":
        args.update({"clip_l": files.get("text_encoder", ""), "clip_g": files.get("text_encoder_2", ""),
                     "t5xxl": files.get("text_encoder_3", "")})
    if r.family == "lumina2":
        args.update({"gemma2": files.get("text_encoder", ""), "ae": files.get("vae", "")})
    if r.sample_prompts:
        args.update({"sample_prompts": f"{out_dir}/kohya_prompts.txt",
                     "sample_every_n_steps": r.train.sample_every_n_steps or None, "sample_sampler": "euler"})
    if r.resume_from:
        notes.append("resume_from points at a Kiln state; kohya resumes only its own (--resume <state folder>)")
    return args


# -- musubi-tuner -------------------------------------------------------------------------------------
def _musubi_script(r: ExportRecipe) -> tuple[str, str] | None:
    """(script stem, network module); FLUX.1 dev with edit controls trains as FLUX.1 Kontext
    (musubi-tuner docs/flux_kontext.md: flux_kontext_train_network.py, networks.lora_flux)."""
    if r.family == "flux1-dev" and control_base(r.dataset.controls):
        return "flux_kontext", "networks.lora_flux"
    return MUSUBI_SCRIPTS.get(r.family)


def _musubi_datasets(r: ExportRecipe, out_dir: str, notes: list) -> list[dict]:
    """One [[datasets]] entry per concept and kind: an image dataset for its images, a video dataset for its clips
    (musubi-tuner keeps the two apart), each with its own cache folder and the concept's controls."""
    concepts = [c for c in _concepts(r) if not c["is_reg"]]
    media_notes(concepts, "musubi-tuner", notes, controls=r.family in MUSUBI_EDIT_FAMILIES)
    out = []
    for c in concepts:
        controls = musubi_control_keys(c, r.dataset, r.family, notes) if r.family in MUSUBI_EDIT_FAMILIES else {}
        if c["images"] or not c["clips"]:
            out.append({"image_directory": c["dir"], "num_repeats": c["repeats"], **controls})
        if c["clips"]:
            out.append({"video_directory": c["dir"], "num_repeats": c["repeats"],
                        **musubi_video_keys(r.dataset, notes)})
    for i, entry in enumerate(out):
        entry["cache_directory"] = f"{out_dir}/musubi_cache/{i}"
    return out


def _musubi_family_args(r: ExportRecipe, stem: str, notes: list) -> dict:
    """The model files and family options of musubi-tuner's scripts (docs/wan.md, qwen_image.md,
    flux_kontext.md, hunyuan_video_1_5.md)."""
    files = r.model_files
    if r.family == "wan":
        return _musubi_wan_args(r, notes)
    if stem == "flux_kontext":
        notes.append("musubi-tuner FLUX.1 Kontext: set dit to the Kontext model, text_encoder1 (T5) and "
                     "text_encoder2 (CLIP-L)")
        return {"text_encoder1": files.get("text_encoder_2", ""), "text_encoder2": files.get("text_encoder", ""),
                "timestep_sampling": "flux_shift"}
    args = {"text_encoder": files.get("text_encoder", "")}
    if r.family == "qwen-image" and control_base(r.dataset.controls):
        args["model_version"] = "edit"
        notes.append("musubi-tuner Qwen-Image-Edit: model_version is 'edit'; use edit-2509 or edit-2511 for those "
                     "checkpoints (several controls need one of them)")
    if r.family == "hunyuan-video-1.5":
        args.update({"task": "t2v", "byt5": ""})
        notes.append("musubi-tuner HunyuanVideo 1.5: set byt5 to the ByT5 text encoder file")
    return args


def _musubi_wan_args(r: ExportRecipe, notes: list) -> dict:
    """Wan 2.1 / 2.2: the task and, for a Wan 2.2 A14B expert, its DiT files and timestep range (musubi-tuner
    docs/wan.md: --task t2v-A14B / i2v-A14B, --dit low noise + --dit_high_noise, --timestep_boundary; one expert
    alone: --min_timestep / --max_timestep 0-1000 with --preserve_distribution_shape)."""
    files = r.model_files
    low = files.get("diffusion_model_low_noise") or files.get("checkpoint_low_noise")
    args = {"task": "t2v-14B", "t5": files.get("text_encoder", "")}
    if r.expert == "none" and not low:
        notes.append("musubi-tuner Wan: check 'task' (t2v-14B, t2v-A14B, ...) against your checkpoint")
        return args
    boundary = int(round(r.expert_boundary * 1000))
    args["task"] = "i2v-A14B" if boundary == 900 else "t2v-A14B"
    notes.append(f"musubi-tuner Wan 2.2: task {args['task']} from the boundary {r.expert_boundary} (0.9 is "
                 "image-to-video's); check it against your checkpoint")
    if low:
        # Kiln trains `model` as the high-noise expert and model_low_noise as the low-noise one.
        args.update({"dit": low, "dit_high_noise": files.get("diffusion_model") or files.get("checkpoint", ""),
                     "timestep_boundary": boundary})
    elif r.expert == "high_noise":
        args.update({"min_timestep": boundary, "max_timestep": 1000, "preserve_distribution_shape": True})
    else:
        args.update({"min_timestep": 0, "max_timestep": boundary, "preserve_distribution_shape": True})
    return args


def musubi_files(r: ExportRecipe, out_dir: str, notes: list) -> dict[str, str]:
    script = _musubi_script(r)
    if script is None:
        notes.append(f"musubi-tuner does not train {r.family} LoRAs; no musubi files written")
        return {}
    stem, module = script
    d, net, o = r.dataset, r.network, r.optimizer
    ext = _caption_ext(r, notes)
    dataset_doc = {"general": {"resolution": [d.resolution, d.resolution], "caption_extension": ext,
                               "batch_size": r.train.batch_size, "enable_bucket": d.enable_buckets,
                               "bucket_no_upscale": d.bucket_no_upscale},
                   "datasets": _musubi_datasets(r, out_dir, notes)}
    if d.reg_path:
        notes.append("musubi-tuner has no regularization images; the reg folder is left out")
    files = r.model_files
    args = {"dit": files.get("diffusion_model") or files.get("checkpoint", ""), "vae": files.get("vae", ""),
            "dataset_config": f"{out_dir}/musubi_dataset.toml",
            "output_dir": f"{out_dir}/output", "output_name": r.output_name,
            "network_module": module, "network_dim": net.rank, "network_alpha": net.alpha,
            "optimizer_type": KOHYA_OPTIMIZERS.get(o.name, o.name), "optimizer_args": _optimizer_args(r),
            "learning_rate": o.lr, "lr_scheduler": o.scheduler, "lr_warmup_steps": o.warmup_steps or None,
            "max_grad_norm": o.max_grad_norm,
            **_steps_or_epochs(r, "max_train_steps", "max_train_epochs"),
            "gradient_accumulation_steps": r.train.grad_accum, "seed": r.train.seed,
            "mixed_precision": _mixed_precision(r), "gradient_checkpointing": r.train.gradient_checkpointing,
            "sdpa": True, "timestep_sampling": "shift", "discrete_flow_shift": 3.0,
            "save_every_n_steps": r.train.save_every_n_steps or None,
            "save_every_n_epochs": r.train.save_every_n_epochs or None, "save_state": True}
    args.update(_musubi_family_args(r, stem, notes))
    if net.algorithm != "lora" or net.conv_rank:
        notes.append(f"musubi-tuner export writes plain LoRA ({net.algorithm} not carried over)")
    cache = (f"python src/musubi_tuner/{stem}_cache_latents.py --dataset_config {out_dir}/musubi_dataset.toml --vae <vae>\n"
             f"python src/musubi_tuner/{stem}_cache_text_encoder_outputs.py --dataset_config {out_dir}/musubi_dataset.toml")
    header = (f"musubi-tuner training arguments exported by Kiln ({r.family}). Cache first:\n{cache}\nthen\n"
              f"accelerate launch --config_file {out_dir}/accelerate_config.yaml src/musubi_tuner/{stem}_train_network.py "
              f"--config_file {out_dir}/musubi_args.toml")
    return {"musubi_dataset.toml": dumps(dataset_doc, header="musubi-tuner dataset config exported by Kiln"),
            "musubi_args.toml": dumps(args, header=header)}


# -- accelerate -------------------------------------------------------------------------------------
def accelerate_config(r: ExportRecipe, num_processes: int = 1, num_machines: int = 1) -> str:
    """accelerate's config YAML (what ``accelerate config`` writes): MULTI_GPU for more than one process."""
    multi = num_processes * num_machines > 1
    items = [("compute_environment", "LOCAL_MACHINE"), ("debug", False),
             ("distributed_type", "MULTI_GPU" if multi else "'NO'"), ("downcast_bf16", "'no'"),
             ("gpu_ids", "all"), ("machine_rank", 0), ("main_training_function", "main"),
             ("mixed_precision", _mixed_precision(r)), ("num_machines", num_machines),
             ("num_processes", num_processes * num_machines), ("rdzv_backend", "static"), ("same_network", True),
             ("tpu_env", "[]"), ("tpu_use_cluster", False), ("tpu_use_sudo", False), ("use_cpu", False)]
    if num_machines > 1:
        items += [("main_process_ip", "''"), ("main_process_port", 29500)]
    lines = ["# accelerate config exported by Kiln; on several machines set main_process_ip and machine_rank"]
    for k, v in items:
        lines.append(f"{k}: {str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(lines) + "\n"


# -- diffusion-pipe ---------------------------------------------------------------------------------
def _diffusion_pipe_dataset(r: ExportRecipe, kind: str, notes: list) -> dict:
    """dataset.toml: the concept folders, frame buckets for clips, and control_path for an edit dataset (Flux
    Kontext and Qwen-Image-Edit: examples/flux_kontext_dataset.toml, one control with the target's stem)."""
    d = r.dataset
    concepts = [c for c in _concepts(r) if not c["is_reg"]]
    media_notes(concepts, "diffusion-pipe", notes, controls=kind in DIFFUSION_PIPE_EDIT_TYPES)
    directories = []
    for c in concepts:
        entry = {"path": c["dir"], "num_repeats": c["repeats"]}
        if c["controls"] and kind in DIFFUSION_PIPE_EDIT_TYPES:
            entry["control_path"] = c["controls"][0]
            if len(c["controls"]) > 1:
                notes.append(f"{c['dir']}: diffusion-pipe takes one control image per target; only "
                             f"{Path(c['controls'][0]).name} is exported")
        directories.append(entry)
    if any(c["controls"] for c in concepts) and kind in DIFFUSION_PIPE_EDIT_TYPES and d.control_resolution != "target":
        notes.append("diffusion-pipe resizes each control to its target's bucket; control_resolution is not carried over")
    ar = (d.min_bucket_reso / d.max_bucket_reso, d.max_bucket_reso / d.min_bucket_reso)
    return {"resolutions": [d.resolution], "enable_ar_bucket": d.enable_buckets,
            "min_ar": round(max(ar[0], 0.25), 4), "max_ar": round(min(ar[1], 4.0), 4), "num_ar_buckets": 7,
            "frame_buckets": diffusion_pipe_frame_buckets(concepts, d, notes) or [1], "directory": directories}


def _diffusion_pipe_expert(r: ExportRecipe, notes: list) -> dict:
    """Wan 2.2 A14B: one expert's timestep range (docs/supported_models.md, Wan2.2: min_t / max_t, t = 1 is pure
    noise; diffusion-pipe trains one expert per run)."""
    low = r.model_files.get("diffusion_model_low_noise") or r.model_files.get("checkpoint_low_noise")
    if low:
        notes.append("diffusion-pipe trains one Wan 2.2 expert per run: the export trains the high-noise expert; "
                     f"for the low-noise one set transformer_path = {low!r}, min_t = 0, max_t = {r.expert_boundary}")
        return {"min_t": r.expert_boundary, "max_t": 1.0}
    if r.expert == "high_noise":
        return {"min_t": r.expert_boundary, "max_t": 1.0}
    if r.expert == "low_noise":
        return {"min_t": 0.0, "max_t": r.expert_boundary}
    return {}


def diffusion_pipe_files(r: ExportRecipe, out_dir: str, notes: list, pipeline_stages: int = 1) -> dict[str, str]:
    if r.family not in DIFFUSION_PIPE_TYPES:
        notes.append(f"diffusion-pipe does not train {r.family}; no diffusion-pipe files written")
        return {}
    d, net, o, obj = r.dataset, r.network, r.optimizer, r.train.objective
    if d.caption_source != "files" or d.caption_extension != ".txt":
        notes.append("diffusion-pipe reads .txt captions beside the images only")
    kind = DIFFUSION_PIPE_TYPES[r.family]
    dataset_doc = _diffusion_pipe_dataset(r, kind, notes)
    files = r.model_files
    model = {"type": kind, "dtype": "bfloat16"}
    if kind == "sdxl":
        model.update({"checkpoint_path": files.get("checkpoint", ""), "unet_lr": o.lr,
                      "min_snr_gamma": obj.min_snr_gamma or None,
                      "debiased_estimation_loss": obj.debiased_estimation or None})
        if net.train_text_encoder:
            model.update({"text_encoder_1_lr": o.text_encoder_lr, "text_encoder_2_lr": o.text_encoder_lr})
    elif kind in ("flux", "chroma"):
        model.update({"diffusers_path": "", "transformer_path": files.get("diffusion_model") or files.get("checkpoint", ""),
                      "flux_shift": True})
        notes.append(f"diffusion-pipe {kind}: set diffusers_path to a FLUX.1 Diffusers folder (VAE, text encoders)")
    elif kind in ("sd3", "hidream"):
        model["diffusers_path"] = ""
        notes.append(f"diffusion-pipe {kind}: set diffusers_path to the model's Diffusers folder")
    elif kind == "lumina_2":
        model.update({"transformer_path": files.get("diffusion_model", ""), "llm_path": files.get("text_encoder", ""),
                      "vae_path": files.get("vae", ""), "lumina_shift": True})
    elif kind == "wan":
        model.update({"ckpt_path": "", "transformer_path": files.get("diffusion_model", ""),
                      "llm_path": files.get("text_encoder", ""), "timestep_sample_method": "logit_normal",
                      **_diffusion_pipe_expert(r, notes)})
        notes.append("diffusion-pipe wan: set ckpt_path to the original Wan checkpoint folder (VAE and configs)")
    elif kind == "qwen_image":
        model.update({"transformer_path": files.get("diffusion_model", ""),
                      "text_encoder_path": files.get("text_encoder", ""), "vae_path": "",
                      "timestep_sample_method": "logit_normal"})
        notes.append("diffusion-pipe qwen_image: vae_path must be the Diffusers VAE file")
    adapter = None
    if net.algorithm in ("lora", "lokr", "dora"):
        adapter = {"type": "lokr" if net.algorithm == "lokr" else "lora", "rank": net.rank, "dtype": "bfloat16"}
        if net.alpha != net.rank:
            notes.append(f"diffusion-pipe LoRAs use alpha = rank; the graph's alpha {net.alpha} is not carried over")
    else:
        adapter = {"type": "lora", "rank": net.rank, "dtype": "bfloat16"}
        notes.append(f"diffusion-pipe trains lora/lokr; {net.algorithm} written as lora")
    schedule = "linear" if o.scheduler == "linear" else None
    if o.scheduler not in ("constant", "constant_with_warmup", "linear"):
        notes.append(f"diffusion-pipe schedules are constant or linear; {o.scheduler} written as constant")
    optimizer = {"type": DIFFUSION_PIPE_OPTIMIZERS.get(o.name, o.name), "lr": o.lr, "weight_decay": o.weight_decay}
    if o.name in ("adamw", "adamw8bit", "lion", "prodigy", "schedulefree_adamw"):
        optimizer["betas"] = list(o.betas)
    if o.name in ("adamw", "adamw8bit"):
        optimizer["eps"] = o.eps
    main = {"output_dir": f"{out_dir}/diffusion_pipe_runs", "dataset": f"{out_dir}/diffusion_pipe_dataset.toml",
            "epochs": r.train.epochs, "max_steps": r.train.max_steps or None,
            "micro_batch_size_per_gpu": r.train.batch_size, "pipeline_stages": pipeline_stages,
            "gradient_accumulation_steps": r.train.grad_accum, "gradient_clipping": o.max_grad_norm,
            "warmup_steps": o.warmup_steps, "lr_scheduler": schedule,
            "save_every_n_epochs": r.train.save_every_n_epochs or (None if r.train.save_every_n_steps else 1),
            "save_every_n_steps": r.train.save_every_n_steps or None,
            "checkpoint_every_n_epochs": 1, "activation_checkpointing": r.train.gradient_checkpointing,
            "partition_method": "parameters", "save_dtype": _TORCH_DTYPE.get(r.save_dtype, "bfloat16"),
            "caching_batch_size": 1, "steps_per_print": 1,
            "video_clip_mode": "single_beginning" if len(dataset_doc["frame_buckets"]) > 1 else None,
            "pseudo_huber_c": obj.huber_c if obj.loss == "huber" else None,
            "model": {k: v for k, v in model.items() if v is not None}, "adapter": adapter, "optimizer": optimizer}
    header = ("diffusion-pipe config exported by Kiln; pipeline_stages splits one model over that many GPUs.\n"
              f"deepspeed --num_gpus=N train.py --deepspeed --config {out_dir}/diffusion_pipe.toml")
    return {"diffusion_pipe.toml": dumps(main, header=header),
            "diffusion_pipe_dataset.toml": dumps(dataset_doc, header="diffusion-pipe dataset config exported by Kiln")}


def export_files(r: ExportRecipe, out_dir: str, formats=FORMATS, num_processes: int = 1, num_machines: int = 1,
                 pipeline_stages: int = 1) -> tuple[dict[str, str], list[str]]:
    """(file name -> text, notes) for the chosen formats; nothing is written."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")
    notes = list(r.notes)
    out: dict[str, str] = {}
    if "kohya" in formats:
        out.update(kohya_files(r, out_dir, notes))
    if "musubi" in formats:
        out.update(musubi_files(r, out_dir, notes))
    if "accelerate" in formats:
        out["accelerate_config.yaml"] = accelerate_config(r, num_processes, num_machines)
    if "diffusion-pipe" in formats:
        out.update(diffusion_pipe_files(r, out_dir, notes, pipeline_stages))
    guide = [f"Kiln export of '{r.output_name}' ({r.family}). Files: {', '.join(sorted(out))}.", ""]
    guide += [line for name in sorted(out) if name.endswith(".toml")
              for line in out[name].splitlines() if line.startswith("# ") and ("launch" in line or "python" in line
                                                                                or "deepspeed" in line)]
    if notes:
        guide += ["", "Check before running:"] + [f"- {n}" for n in notes]
    out["HOW_TO_RUN.txt"] = "\n".join(guide) + "\n"
    return out, notes


def write_export(r: ExportRecipe, folder: str | Path, formats=FORMATS, num_processes: int = 1,
                 num_machines: int = 1, pipeline_stages: int = 1) -> list[Path]:
    """Write the files atomically into ``folder``; returns their paths."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    texts, _ = export_files(r, folder.as_posix(), formats, num_processes, num_machines, pipeline_stages)
    paths = []
    for name, text in texts.items():
        atomic_write_bytes(folder / name, text.encode("utf-8"))
        paths.append(folder / name)
    return paths
