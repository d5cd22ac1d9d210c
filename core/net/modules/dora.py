"""DoRA (weight-decomposed LoRA): W' = m * (W + s B A) / (||W + s B A|| + eps), the norm per input column.

Saved as LoRA keys plus ``dora_scale`` shaped (1, in[, 1, 1]). The host's ``weight_decompose`` picks its
axis from that shape: on the input axis it takes the norm of the UPDATED weight column-wise, which is this
module's maths (and the DoRA paper's); on the output axis it would take the norm of the ORIGINAL weight, so
a file saved that way would not apply as trained. eps is float32's: the host patches weights in float32
(ModelPatcher casts each weight to float32 before ``calculate_weight``), so it adds float32's eps whatever
the model's dtype. The decomposition itself is lycoris-lora's ``weight_decompose`` (input axis).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from lycoris.functional.general import weight_decompose

from ..registry import register_algorithm
from .lora import LoRAModule
from .weighted import require


def column_norm(w: torch.Tensor) -> torch.Tensor:
    """||w[:, j]|| for each input channel j, shaped (1, in, 1, 1) or (1, in)."""
    wt = w.transpose(0, 1).reshape(w.shape[1], -1)
    return wt.norm(dim=1).reshape(1, w.shape[1], *([1] * (w.dim() - 2)))


@register_algorithm("dora")
class DoRAModule(LoRAModule):
    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, generator=generator, **kw)
        with torch.no_grad():
            m = column_norm(base.weight.detach().float())
        self.dora_scale = nn.Parameter(m.clone())

    def merged_weight(self) -> torch.Tensor:
        w = self.base_weight.detach().float()
        up = self.lora_up.reshape(self.out_dim, -1)
        if self.training and self.rank_dropout:
            keep = (torch.rand(self.rank, device=up.device) > self.rank_dropout).to(up.dtype)
            up = up * keep / (1.0 - self.rank_dropout)
        delta = (up @ self.lora_down.reshape(self.rank, -1)).reshape(w.shape)
        calc = w + delta * self.scale
        # backend "torch": the host's eager maths exactly (float32 eps), and no torch.compile in the host.
        return weight_decompose(calc, self.dora_scale, 1, wd_on_out=False, backend="torch")

    def forward(self, x, base_out, base):
        if self.skips_this_step():
            return base_out
        x = self._apply_dropout(x)
        w = self.merged_weight().to(x.dtype)
        bias = self.base_bias.to(x.dtype) if self.base_bias is not None else None
        if self.is_conv:
            out = F.conv2d(x, w, bias, self.stride, self.padding, self.dilation, self.groups)
        else:
            out = F.linear(x, w, bias)
        if self.multiplier != 1.0:   # the host's strength: W + s (W' - W)
            out = base_out + (out - base_out) * self.multiplier
        return out.to(base_out.dtype)

    def export(self):
        out = super().export()
        out["dora_scale"] = self.dora_scale.detach().clone()
        return out

    def load_exported(self, tensors):
        require(tensors, self.layout.keys + ("dora_scale",), self.name, "DoRA")
        if tensors["dora_scale"].numel() != self.in_dim:
            raise ValueError(f"{self.name}.dora_scale has shape {tuple(tensors['dora_scale'].shape)}; Kiln's DoRA "
                             f"keeps it per input channel ({self.in_dim}). Files with the output-axis scale "
                             "cannot continue training here.")
        super().load_exported(tensors)
        with torch.no_grad():
            self.dora_scale.copy_(tensors["dora_scale"].reshape(self.dora_scale.shape))
