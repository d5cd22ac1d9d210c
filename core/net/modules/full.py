"""Full / diff fine-tuning of the targeted layers: the delta is a full matrix, and the bias is trained too
when the layer has one (as LyCORIS's "full" does). File keys ``diff`` and ``diff_b``, which the host loads
as weight and bias differences (A1111 and LyCORIS's tools read them too)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ...lora.algorithms import FullLayout
from ..registry import register_algorithm
from .weighted import DeltaWeightModule, require


@register_algorithm("full")
class FullModule(DeltaWeightModule):
    layout = FullLayout

    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.diff = nn.Parameter(torch.zeros(base.weight.shape))
        has_bias = getattr(base, "bias", None) is not None
        self.diff_b = nn.Parameter(torch.zeros(self.out_dim)) if has_bias else None

    @property
    def scale(self) -> float:
        return 1.0

    def delta_weight(self):
        return self.diff

    def delta_forward(self, x, base):
        out = super().delta_forward(x, base)
        if self.diff_b is None:
            return out
        # In place on the fresh F.linear/conv output, which its backward does not keep: no second copy.
        return out.add_(self.diff_b.to(out.dtype).view((-1, 1, 1) if self.is_conv else (-1,)))

    def export(self):
        out = {"diff": self.diff.detach().clone()}
        if self.diff_b is not None:
            out["diff_b"] = self.diff_b.detach().clone()
        return out

    def load_exported(self, tensors):
        require(tensors, FullLayout.keys + (("diff_b",) if self.diff_b is not None else ()), self.name, "full")
        with torch.no_grad():
            self.diff.copy_(tensors["diff"].reshape(self.diff.shape))
            if self.diff_b is not None:
                self.diff_b.copy_(tensors["diff_b"].reshape(self.diff_b.shape))
