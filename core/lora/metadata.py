"""kohya-compatible ``ss_*`` training metadata (what A1111/Forge and kohya's tools read)."""
from __future__ import annotations

import json
import re
import time

# LyCORIS algorithms are saved for kohya/A1111 as the "lycoris.kohya" network module with an algo arg.
NETWORK_MODULES = {"lora": "networks.lora"}


def network_module_for(algorithm: str) -> str:
    return NETWORK_MODULES.get(algorithm, "lycoris.kohya")


# modelspec (Stability AI's ModelSpec, the modelspec.* keys kohya's sd-scripts and musubi-tuner write and
# model browsers read) per model family string (host.families names them from the loaded MODEL):
# family -> (architecture, implementation, default training resolution (w, h), prediction type or None).
# Architectures are the strings sd-scripts (SD, SDXL, SD3, Flux.1, Chroma, Lumina 2) and musubi-tuner
# (Flux.2, Qwen-Image, Z-Image, Wan) write; HiDream has no trainer convention, so its repository name is used.
# Flow-matching families get no prediction type, as sd-scripts writes none for Flux.
_SAI = "https://github.com/Stability-AI/generative-models"
MODELSPEC_ARCHITECTURE: dict[str, tuple[str, str, tuple[int, int], str | None]] = {
    "sd1": ("stable-diffusion-v1", "diffusers", (512, 512), "epsilon"),
    "sd2": ("stable-diffusion-v2-512", "diffusers", (512, 512), "epsilon"),
    "sd2-v": ("stable-diffusion-v2-768-v", "diffusers", (768, 768), "v"),
    "sdxl": ("stable-diffusion-xl-v1-base", _SAI, (1024, 1024), "epsilon"),
    "sd3": ("stable-diffusion-3", _SAI, (1024, 1024), None),
    "flux1-dev": ("flux-1-dev", "https://github.com/black-forest-labs/flux", (1024, 1024), None),
    "flux1-schnell": ("flux-1-schnell", "https://github.com/black-forest-labs/flux", (1024, 1024), None),
    "chroma": ("chroma", "https://huggingface.co/lodestones/Chroma", (1024, 1024), None),
    "flux2": ("Flux.2-dev", "https://github.com/black-forest-labs/flux2", (1024, 1024), None),
    "qwen-image": ("Qwen-Image", "https://github.com/QwenLM/Qwen-Image", (1328, 1328), None),
    "z-image": ("Z-Image", "https://github.com/Tongyi-MAI/Z-Image", (1024, 1024), None),
    "wan": ("wan2.1", "https://github.com/Wan-Video/Wan2.1", (1280, 720), None),
    # Wan 2.2: the TI2V 5B (its own 48-channel latent) and the A14B high/low-noise experts (Wan 2.1's layout).
    "wan2.2-5b": ("wan2.2-ti2v-5b", "https://github.com/Wan-Video/Wan2.2", (1280, 704), None),
    "wan2.2-a14b": ("wan2.2-a14b", "https://github.com/Wan-Video/Wan2.2", (1280, 720), None),
    "lumina2": ("lumina-2", "https://github.com/Alpha-VLLM/Lumina-Image-2.0", (1024, 1024), None),
    "hidream": ("hidream-i1", "https://github.com/HiDream-ai/HiDream-I1", (1024, 1024), None),
    # The 2026 host's families with their own tables.
    "ltxv": ("ltx-video", "https://github.com/Lightricks/LTX-Video", (768, 512), None),
    "ltx2": ("ltx-2", "https://github.com/Lightricks/LTX-2", (768, 512), None),
    "hunyuan-video": ("hunyuan-video", "https://github.com/Tencent-Hunyuan/HunyuanVideo", (1280, 720), None),
    "hunyuan-video-1.5": ("hunyuan-video-1.5", "https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5", (1280, 720),
                          None),
    "hunyuan-image-2.1": ("hunyuan-image-2.1", "https://github.com/Tencent-Hunyuan/HunyuanImage-2.1", (2048, 2048),
                          None),
    "kandinsky5": ("kandinsky-5-video", "https://github.com/kandinskylab/kandinsky-5", (768, 512), None),
    "kandinsky5-image": ("kandinsky-5-image", "https://github.com/kandinskylab/kandinsky-5", (1024, 1024), None),
    "krea2": ("krea-2", "https://huggingface.co/krea", (1024, 1024), None),
    "ideogram4": ("ideogram-4", "https://ideogram.ai", (1024, 1024), None),
    "chroma-radiance": ("chroma-radiance", "https://huggingface.co/lodestones/Chroma1-Radiance", (1024, 1024), None),
    "hidreamo1": ("hidream-o1-image", "https://github.com/HiDream-ai", (1024, 1024), None),
}

# kohya's ss_base_model_version -> family string, for files that name only the former (extract, resize,
# merge inputs).
FAMILY_OF_BASE_MODEL_VERSION = {
    "sd_v1": "sd1", "sd_v2": "sd2", "sdxl_base_v1-0": "sdxl", "sdxl_refiner_v1-0": "sdxl", "sd3": "sd3",
    "flux1": "flux1-dev", "chroma": "chroma", "flux2": "flux2", "qwen_image": "qwen-image", "z_image": "z-image",
    "wan": "wan", "wan2.2_5b": "wan2.2-5b", "wan2.2_a14b": "wan2.2-a14b", "lumina2": "lumina2", "hidream": "hidream",
    "ltxv": "ltxv", "ltx2": "ltx2", "hunyuan_video": "hunyuan-video", "hunyuan_video_1_5": "hunyuan-video-1.5",
    "hunyuan_image_2_1": "hunyuan-image-2.1", "kandinsky5": "kandinsky5", "kandinsky5_image": "kandinsky5-image",
    "krea2": "krea2", "ideogram4": "ideogram4", "chroma_radiance": "chroma-radiance", "hidream_o1_image": "hidreamo1",
}


def modelspec_metadata(family: str, *, title: str, created_at: float, resolution: int | tuple[int, int] | None = None,
                       v_parameterization: bool = False, clip_skip: int | None = None,
                       timestep_range: tuple[int, int] | None = None, trigger_phrase: str = "",
                       tags: str = "") -> dict[str, str]:
    """The modelspec.* keys of a LoRA for ``family`` (empty for a family the table does not know)."""
    key = "sd2-v" if family == "sd2" and v_parameterization else family
    if key not in MODELSPEC_ARCHITECTURE:
        return {}
    arch, impl, default_reso, prediction = MODELSPEC_ARCHITECTURE[key]
    if prediction == "epsilon" and v_parameterization:
        prediction = "v"
    w, h = (resolution, resolution) if isinstance(resolution, int) else (resolution or default_reso)
    meta = {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": f"{arch}/lora",
        "modelspec.implementation": impl,
        "modelspec.title": title,
        "modelspec.resolution": f"{w}x{h}",
        "modelspec.date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(created_at))),
        "modelspec.implementation_version": "kiln",
    }
    if prediction:
        meta["modelspec.prediction_type"] = prediction
    if clip_skip is not None:
        meta["modelspec.encoder_layer"] = str(clip_skip)
    if timestep_range is not None:
        meta["modelspec.timestep_range"] = f"{timestep_range[0]},{timestep_range[1]}"
    if trigger_phrase:
        meta["modelspec.trigger_phrase"] = trigger_phrase
    if tags:
        meta["modelspec.tags"] = tags
    return meta


def training_metadata(*, network, optimizer, train, dataset_meta: dict, base_model_version: str,
                      output_name: str, steps: int, epoch: int, total_steps: int, started_at: float,
                      model_name: str = "", clip_skip: int | None = None, v_parameterization: bool = False,
                      extra: dict | None = None, family: str = "", modules: dict | None = None) -> dict[str, str]:
    """kohya's ss_* keys and the modelspec.* keys (``family``, or the family ss_base_model_version names).
    ``modules`` (kohya module name -> its saved tensors) lets the network keys say the ranks the file holds."""
    args = {"algo": network.algorithm} if network_module_for(network.algorithm) != "networks.lora" else {}
    if network.conv_rank > 0:
        args.update(conv_dim=str(network.conv_rank), conv_alpha=str(network.conv_alpha))
    if network.dropout:
        args["dropout"] = str(network.dropout)
    if network.rank_dropout:
        args["rank_dropout"] = str(network.rank_dropout)
    if network.module_dropout:
        args["module_dropout"] = str(network.module_dropout)
    if network.dora:
        args["dora_wd"] = "True"
    dim, alpha = network.rank, network.alpha
    if modules and (network.block_rank_weights or network.block_lr_weights):
        shape_args, dim, alpha = block_network_args(network, modules)
        args.update(shape_args)
    obj = train.objective
    meta = {
        "ss_session_id": str(int(started_at * 1000) % 2 ** 31),
        "ss_training_started_at": str(started_at),
        "ss_training_finished_at": str(time.time()),
        "ss_output_name": output_name,
        "ss_base_model_version": base_model_version,
        "ss_sd_model_name": model_name,
        "ss_v2": str(base_model_version.startswith("sd_v2")),
        "ss_v_parameterization": str(v_parameterization),
        "ss_network_module": network_module_for(network.algorithm),
        "ss_network_dim": str(dim),
        "ss_network_alpha": str(alpha),
        "ss_network_args": json.dumps(args),
        "ss_network_dropout": str(network.dropout),
        "ss_learning_rate": str(optimizer.lr),
        "ss_unet_lr": str(optimizer.lr),
        "ss_text_encoder_lr": str(optimizer.text_encoder_lr if network.train_text_encoder else 0.0),
        "ss_optimizer": optimizer.name,
        "ss_lr_scheduler": optimizer.scheduler,
        "ss_lr_warmup_steps": str(optimizer.warmup_steps),
        "ss_max_grad_norm": str(optimizer.max_grad_norm),
        "ss_max_train_steps": str(total_steps),
        "ss_steps": str(steps),
        "ss_epoch": str(epoch),
        "ss_num_epochs": str(train.epochs),
        "ss_batch_size_per_device": str(train.batch_size),
        "ss_gradient_accumulation_steps": str(train.grad_accum),
        "ss_gradient_checkpointing": str(train.gradient_checkpointing),
        "ss_mixed_precision": train.mixed_precision,
        "ss_seed": str(train.seed),
        "ss_noise_offset": str(obj.noise_offset),
        "ss_multires_noise_iterations": str(obj.multires_noise_iterations),
        "ss_multires_noise_discount": str(obj.multires_noise_discount),
        "ss_min_snr_gamma": str(obj.min_snr_gamma),
        "ss_debiased_estimation": str(obj.debiased_estimation),
        "ss_loss_type": obj.loss,
        "ss_huber_c": str(obj.huber_c),
        "ss_training_comment": "trained with Kiln",
    }
    if clip_skip is not None:
        meta["ss_clip_skip"] = str(clip_skip)
    meta.update({k: str(v) for k, v in dataset_meta.items()})
    m = re.match(r"\((\d+), (\d+)\)", meta.get("ss_resolution", ""))
    t = train.objective
    meta.update(modelspec_metadata(
        family or FAMILY_OF_BASE_MODEL_VERSION.get(base_model_version, ""), title=output_name, created_at=started_at,
        resolution=(int(m.group(1)), int(m.group(2))) if m else None, v_parameterization=v_parameterization,
        clip_skip=clip_skip,
        timestep_range=(round(t.min_timestep * 1000), round(t.max_timestep * 1000))
        if (t.min_timestep, t.max_timestep) != (0.0, 1.0) else None))
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    return meta


def _weights_text(weights) -> str:
    return ",".join(f"{block}={factor:g}" for block, factor in weights)


def block_network_args(network, modules: dict) -> tuple[dict[str, str], int, float]:
    """With block weights, the file's ranks differ from the network's rank: ss_network_args gets the weights as set
    (``block_rank_weights``, ``block_lr_weights``, Kiln's block names) and the rank each block holds
    (``block_dims`` for linear and 1x1 layers, ``conv_block_dims`` for larger kernels, ``BLOCK=rank`` pairs in
    block order; ``a/b`` where a block's layers differ), and ss_network_dim / alpha are the largest linear rank in
    the file and its alpha (kohya's meaning: the rank a reader should expect at most)."""
    from ..net.blocks import block_of_kohya, block_order
    from .algorithms import rank_of
    args = {}
    if network.block_rank_weights:
        args["block_rank_weights"] = _weights_text(network.block_rank_weights)
    if network.block_lr_weights:
        args["block_lr_weights"] = _weights_text(network.block_lr_weights)
    linear, conv, best = {}, {}, (0, network.alpha)
    for module, parts in modules.items():
        rank = rank_of(parts)
        if not rank:
            continue
        down = parts.get("lora_down.weight")
        is_conv = down is not None and down.dim() == 4 and down.shape[-1] > 1
        (conv if is_conv else linear).setdefault(block_of_kohya(module), set()).add(rank)
        if not is_conv and rank > best[0]:
            best = (rank, float(parts["alpha"]) if "alpha" in parts else float(rank))
    for key, table in (("block_dims", linear), ("conv_block_dims", conv)):
        if table:
            args[key] = ",".join(f"{b}={'/'.join(str(r) for r in sorted(table[b]))}"
                                 for b in sorted(table, key=block_order))
    dim, alpha = best if best[0] else (network.rank, network.alpha)
    return args, dim, round(alpha, 6)


def training_adapter_metadata(name: str, strength: float, tensor_hash: str) -> dict[str, str]:
    """The ss_* keys naming the training adapter a run was trained on top of (its file name, the sha256 of
    its tensor data as kohya's sshs_model_hash is computed, and its strength); never its weights."""
    return {"ss_training_adapter": name, "ss_training_adapter_hash": tensor_hash,
            "ss_training_adapter_strength": str(strength)}
