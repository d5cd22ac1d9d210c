"""Mixture-of-experts video models trained one expert at a time: Wan 2.2 A14B is two diffusion models of Wan 2.1's
layout, a high-noise expert for the early, noisy part of sampling and a low-noise expert for the rest, switched at a
boundary on the (shifted) noise level: 0.875 for text-to-video, 0.9 for image-to-video (Wan 2.2's own values;
musubi-tuner's --timestep_boundary 875 / 900, ai-toolkit's switch boundary). Each expert's LoRA trains only the
noise levels that expert sees."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..fields import setting
from .objective import ObjectiveSpec

EXPERTS = ("none", "high_noise", "low_noise")


@dataclass(frozen=True)
class ExpertSpec:
    expert: str = setting("none", "Which expert of a two-expert model this run trains (Wan 2.2 A14B): high_noise = "
                          "the noisy start of sampling, low_noise = the rest; none trains every noise level. With "
                          "model_low_noise connected, both train, one after the other.", choices=EXPERTS)
    boundary: float = setting(0.875, "The noise level where the experts switch: 0.875 for Wan 2.2 text-to-video, "
                              "0.9 for image-to-video.", min=0.01, max=0.99, step=0.005)

    def __post_init__(self):
        if self.expert not in EXPERTS:
            raise ValueError(f"expert {self.expert!r}: use one of {', '.join(EXPERTS)}")


def boundary_percent(boundary: float, percent_to_sigma: Callable[[float], float], sigma_max: float = 1.0) -> float:
    """The schedule fraction (0 = noisiest) whose noise level is ``boundary`` x the noisiest level, by bisection
    (the model's percent_to_sigma falls as the fraction grows and carries its shift)."""
    target = boundary * sigma_max
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if percent_to_sigma(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def for_expert(objective: ObjectiveSpec, spec: ExpertSpec, percent_to_sigma: Callable[[float], float]) -> ObjectiveSpec:
    """The objective with its noise-level range narrowed to the expert's part of the schedule."""
    if spec.expert == "none":
        return objective
    cut = boundary_percent(spec.boundary, percent_to_sigma, percent_to_sigma(0.0))
    lo, hi = (0.0, cut) if spec.expert == "high_noise" else (cut, 1.0)
    lo, hi = max(lo, objective.min_timestep), min(hi, objective.max_timestep)
    if not lo < hi:
        raise ValueError(f"the {spec.expert} expert's noise levels ({'above' if spec.expert == 'high_noise' else 'below'}"
                         f" the boundary {spec.boundary}) lie outside the objective's min/max timestep range: widen "
                         "the range on Kiln Training Objective")
    return replace(objective, min_timestep=lo, max_timestep=hi)
