"""DoRA (weight-decomposed LoRA): W' = m * (W + s B A) / ||W + s B A||, the norm taken per input column
as in the DoRA paper. Saved as LoRA keys plus ``dora_scale`` of shape (1, in[, 1, 1]): for that axis the
host's weight_decompose normalises the updated weight column-wise, exactly this module's maths."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_algorithm
from .lora import LoRAModule


def column_norm(w: torch.Tensor) -> torch.Tensor:
    """||w[:, j]|| for each input channel j, shaped (1, in, 1, 1) or (1, in)."""
    wt = w.transpose(0, 1).reshape(w.shape[1], -1)
    return wt.norm(dim=1).reshape(1, w.shape[1], *([1] * (w.dim() - 2)))


@register_algorithm("dora")
class DoRAModule(LoRAModule):
    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, generator=generator, **kw)
        self.base_weight = base.weight   # reference, no copy
        self.base_bias = getattr(base, "bias", None)
        with torch.no_grad():
            m = column_norm(base.weight.detach().float())
        self.dora_scale = nn.Parameter(m.clone())

    def merged_weight(self) -> torch.Tensor:
        w = self.base_weight.float()
        delta = (self.lora_up.reshape(self.out_dim, -1) @ self.lora_down.reshape(self.rank, -1)).reshape(w.shape)
        calc = w + delta * self.scale
        # The host adds its dtype's eps to the norm; the base weight's dtype decides it there too.
        eps = torch.finfo(self.base_weight.dtype).eps
        return calc * (self.dora_scale / (column_norm(calc) + eps))

    def forward(self, x, base_out, base):
        if self.training and self.module_dropout and torch.rand(()) < self.module_dropout:
            return base_out
        w = self.merged_weight().to(x.dtype)
        bias = self.base_bias.to(x.dtype) if self.base_bias is not None else None
        if self.is_conv:
            out = F.conv2d(x, w, bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            out = F.linear(x, w, bias)
        if self.multiplier != 1.0:
            out = base_out + (out - base_out) * self.multiplier
        return out.to(base_out.dtype)

    def export(self):
        out = super().export()
        out["dora_scale"] = self.dora_scale.detach().clone()
        return out

    def load_exported(self, tensors):
        super().load_exported(tensors)
        with torch.no_grad():
            self.dora_scale.copy_(tensors["dora_scale"].reshape(self.dora_scale.shape))
