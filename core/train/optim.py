"""Optimizer and scheduler registry, built from a small value object.

Optimizers come from torch and pytorch-optimizer (and bitsandbytes for AdamW 8-bit on CUDA). Schedulers
are LambdaLR with the diffusers/kohya formulas: a LambdaLR's state is a few numbers, which makes resume
exact, and the formulas are short enough that a dependency would add nothing.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Callable

import torch


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adamw"
    lr: float = 1e-4                  # UNet learning rate (the guides' default)
    text_encoder_lr: float = 5e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0        # 0 = no clipping
    scheduler: str = "cosine_with_restarts"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0         # used when warmup_steps is 0
    num_cycles: int = 1               # cosine with restarts
    power: float = 1.0                # polynomial
    min_lr_ratio: float = 0.0

    def replace(self, **changes) -> "OptimizerSpec":
        return replace(self, **changes)

    def warmup_for(self, total_steps: int) -> int:
        return self.warmup_steps if self.warmup_steps > 0 else int(round(self.warmup_ratio * total_steps))


def _adamw(spec, groups, device):
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def _adamw8bit(spec, groups, device):
    if getattr(device, "type", str(device)) != "cuda":
        raise ValueError("AdamW 8-bit needs bitsandbytes on a CUDA GPU; this run is on "
                         f"{device}. Choose 'adamw' (same maths, 32-bit state) instead.")
    try:
        import bitsandbytes as bnb
    except ImportError as exc:
        raise ValueError("AdamW 8-bit needs the optional package bitsandbytes: pip install bitsandbytes") from exc
    return bnb.optim.AdamW8bit(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def _po(name, **fixed):
    def build(spec, groups, device):
        import pytorch_optimizer as po
        cls = getattr(po, name)
        kwargs = {"lr": spec.lr, "weight_decay": spec.weight_decay}
        kwargs.update(fixed)
        if name in ("Lion", "ScheduleFreeAdamW", "Prodigy"):
            kwargs["betas"] = spec.betas
        return cls(groups, **kwargs)
    return build


def _sgd(spec, groups, device):
    return torch.optim.SGD(groups, lr=spec.lr, momentum=0.9, weight_decay=spec.weight_decay)


OPTIMIZERS: dict[str, Callable] = {
    "adamw": _adamw,
    "adamw8bit": _adamw8bit,
    "prodigy": _po("Prodigy"),          # lr is a multiplier: the guides use 1.0
    "lion": _po("Lion"),
    # The guides run Adafactor with a learning rate; relative_step=True would replace it with its own.
    "adafactor": _po("AdaFactor", relative_step=False, scale_parameter=False, warmup_init=False),
    "came": _po("CAME"),
    "sgd": _sgd,
    "schedulefree_adamw": _po("ScheduleFreeAdamW"),
}


def build_optimizer(spec: OptimizerSpec, param_groups: list[dict], device="cpu") -> torch.optim.Optimizer:
    if spec.name == "prodigy" and len({g.get("lr") for g in param_groups}) > 1:
        # Prodigy steps every group with one adapted lr: the UNet/TE split and block lr weights don't apply.
        logging.getLogger("kiln").warning(
            "Kiln: Prodigy adapts one learning rate for all parameters; the text-encoder lr and block lr "
            "weights are ignored (give them the same lr, or use AdamW for separate rates).")
    try:
        factory = OPTIMIZERS[spec.name]
    except KeyError:
        raise ValueError(f"Unknown optimizer {spec.name!r}; choose one of {sorted(OPTIMIZERS)}") from None
    return factory(spec, param_groups, torch.device(device) if isinstance(device, str) else device)


def _lambda(spec: OptimizerSpec, total: int) -> Callable[[int], float]:
    warm = spec.warmup_for(total)
    floor = spec.min_lr_ratio
    name = spec.scheduler

    def progress(step):
        return min(1.0, max(0.0, (step - warm) / max(1, total - warm)))

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm if name != "constant" else 1.0
        p = progress(step)
        if name in ("constant", "constant_with_warmup"):
            return 1.0
        if name == "linear":
            return floor + (1 - floor) * (1.0 - p)
        if name == "cosine":
            return floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
        if name == "cosine_with_restarts":
            if p >= 1.0:
                return floor
            return floor + (1 - floor) * 0.5 * (1.0 + math.cos(math.pi * ((spec.num_cycles * p) % 1.0)))
        if name == "polynomial":
            return floor + (1 - floor) * (1.0 - p) ** spec.power
        raise ValueError(f"Unknown scheduler {name!r}; choose one of {SCHEDULERS}")
    return f


SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


def build_scheduler(spec: OptimizerSpec, optimizer: torch.optim.Optimizer, total_steps: int):
    if spec.scheduler not in SCHEDULERS:
        raise ValueError(f"Unknown scheduler {spec.scheduler!r}; choose one of {SCHEDULERS}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _lambda(spec, max(1, total_steps)))
