"""kohya-compatible ``ss_*`` training metadata (what A1111/Forge and kohya's tools read)."""
from __future__ import annotations

import json
import time

# LyCORIS algorithms are saved for kohya/A1111 as the "lycoris.kohya" network module with an algo arg.
NETWORK_MODULES = {"lora": "networks.lora"}


def network_module_for(algorithm: str) -> str:
    return NETWORK_MODULES.get(algorithm, "lycoris.kohya")


def training_metadata(*, network, optimizer, train, dataset_meta: dict, base_model_version: str,
                      output_name: str, steps: int, epoch: int, total_steps: int, started_at: float,
                      model_name: str = "", clip_skip: int | None = None, v_parameterization: bool = False,
                      extra: dict | None = None) -> dict[str, str]:
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
        "ss_network_dim": str(network.rank),
        "ss_network_alpha": str(network.alpha),
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
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    return meta
