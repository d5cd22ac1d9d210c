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

from ..fields import setting


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = setting("adamw", "adamw8bit needs bitsandbytes and CUDA; prodigy takes lr as a multiplier (use 1.0).")
    lr: float = setting(1e-4, "UNet learning rate (the guides' default 1e-4).", min=0.0, max=10.0, step=1e-6)
    text_encoder_lr: float = setting(5e-5, "Text-encoder learning rate (used when the network trains it).",
                                     min=0.0, max=10.0, step=1e-6)
    weight_decay: float = setting(0.01, "Decoupled weight decay.", min=0.0, max=1.0, step=0.001)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = setting(1.0, "Clip gradients to this norm (0: no clipping).", min=0.0, max=100.0, step=0.1)
    scheduler: str = setting("cosine_with_restarts", "Learning-rate schedule.")
    warmup_steps: int = setting(0, "Linear warm-up steps (0: use warmup_ratio).", min=0, max=100000)
    warmup_ratio: float = setting(0.0, "Warm-up as a fraction of all steps, when warmup_steps is 0.",
                                  min=0.0, max=1.0, step=0.01)
    num_cycles: int = setting(1, "Restarts for cosine_with_restarts.", min=1, max=100)
    power: float = setting(1.0, "Exponent for the polynomial schedule.", min=0.0, max=10.0, step=0.1)
    min_lr_ratio: float = setting(0.0, "Floor of the decaying schedules, as a fraction of the learning rate.",
                                  min=0.0, max=1.0, step=0.01)

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
