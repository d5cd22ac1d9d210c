"""Full / diff fine-tuning of the targeted layers: the delta is a full matrix. File key ``diff`` (the
host's and LyCORIS's full-weight-difference format)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register_algorithm
from .weighted import DeltaWeightModule


@register_algorithm("full")
class FullModule(DeltaWeightModule):
    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.diff = nn.Parameter(torch.zeros(base.weight.shape))

    @property
    def scale(self) -> float:
        return 1.0

    def delta_weight(self):
        return self.diff

    def export(self):
        return {"diff": self.diff.detach().clone()}

    def load_exported(self, tensors):
        with torch.no_grad():
            self.diff.copy_(tensors["diff"])
