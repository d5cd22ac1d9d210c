"""(IA)^3: the layer's output channels are rescaled, y = W x * (1 + w), so delta = W * w per output row.

Saved as ``diff`` (that delta as a full matrix): the host has no IA3 loader and applies ``diff`` exactly,
and A1111/Forge and LyCORIS's tools read ``diff`` too. The cost is file size (one full matrix per layer
instead of one vector); the small LyCORIS-native ``weight``/``on_input`` form would be silently ignored
by ComfyUI's LoraLoader."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register_algorithm
from .weighted import DeltaWeightModule


@register_algorithm("ia3")
class IA3Module(DeltaWeightModule):
    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.base_weight = base.weight   # read-only reference (no copy) for the delta and the export
        self.scale_vector = nn.Parameter(torch.zeros(self.out_dim))

    @property
    def scale(self) -> float:
        return 1.0

    def delta_forward(self, x, base):
        return None  # see forward: the output itself is rescaled

    def forward(self, x, base_out, base):
        if self.training and self.module_dropout and torch.rand(()) < self.module_dropout:
            return base_out
        shape = (1, -1, 1, 1) if self.is_conv else (-1,)
        bias = base.bias if getattr(base, "bias", None) is not None else None
        # Only the weight's contribution is rescaled (the bias is not part of W x).
        wx = base_out - (bias.view(shape).to(base_out.dtype) if bias is not None else 0)
        return base_out + wx * (self.scale_vector * self.multiplier).view(shape).to(base_out.dtype)

    def delta_weight(self):
        w = self.base_weight.detach().float()
        return w * self.scale_vector.view(-1, *([1] * (w.dim() - 1)))

    def export(self):
        return {"diff": self.delta_weight().detach().clone()}

    def load_exported(self, tensors):
        # The file holds W * w; w is recovered per row by least squares (exact up to rounding).
        with torch.no_grad():
            w = self.base_weight.detach().float().reshape(self.out_dim, -1)
            d = tensors["diff"].float().reshape(self.out_dim, -1)
            self.scale_vector.copy_((d * w).sum(1) / (w * w).sum(1).clamp_min(1e-12))
