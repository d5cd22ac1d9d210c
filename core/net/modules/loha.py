"""LoHa: delta = (w1a @ w1b) * (w2a @ w2b) * alpha / rank (Hadamard product of two low-rank matrices).

The weight maths is lycoris-lora's (``lycoris.functional.loha.diff_weight``): its autograd function keeps
only the four factors for backward and rebuilds the two products there, so no full-size product is held
between forward and backward. File keys hada_w1_a/hada_w1_b/hada_w2_a/hada_w2_b/alpha, with every factor
2-D (conv kernels flattened into hada_w*_b), which is what the host's ``torch.mm`` and A1111 read; the host
scales by alpha / hada_w1_b.shape[0], the rank.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from lycoris.functional.loha import diff_weight as hada_diff_weight

from ...lora.algorithms import LoHaLayout
from ..registry import register_algorithm
from .weighted import DeltaWeightModule, require

KEYS = LoHaLayout.keys


@register_algorithm("loha")
class LoHaModule(DeltaWeightModule):
    layout = LoHaLayout

    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.shape = tuple(base.weight.shape)
        out_dim, in_flat = self.shape[0], math.prod(self.shape[1:])
        # LyCORIS LohaModule's init: w2a at zero so training starts from the base model exactly.
        self.hada_w1_a = nn.Parameter(torch.randn(out_dim, rank, generator=generator) * 0.1)
        self.hada_w1_b = nn.Parameter(torch.randn(rank, in_flat, generator=generator))
        self.hada_w2_a = nn.Parameter(torch.zeros(out_dim, rank))
        self.hada_w2_b = nn.Parameter(torch.randn(rank, in_flat, generator=generator))

    def delta_weight(self):
        # lycoris names the factors (down, up): w1d = hada_w1_b, w1u = hada_w1_a. gamma must be a tensor
        # there (its autograd function saves it); backend "torch" keeps the host's exact maths and never
        # starts a torch.compile inside the host process.
        gamma = self.hada_w1_a.new_full((), self.scale)   # a fill on the device, no copy or sync
        d = hada_diff_weight(self.hada_w1_b, self.hada_w1_a, self.hada_w2_b, self.hada_w2_a, None, None,
                             gamma=gamma, backend="torch")
        return d.reshape(self.shape)

    def export(self):
        out = {k: getattr(self, k).detach().clone() for k in KEYS}
        out["alpha"] = self.alpha_tensor()
        return out

    def load_exported(self, tensors):
        require(tensors, KEYS + ("alpha",), self.name, "LoHa")
        with torch.no_grad():
            for k in KEYS:
                getattr(self, k).copy_(tensors[k].reshape(getattr(self, k).shape))
            self.alpha = float(tensors["alpha"])
