"""LoRA / LoCon: delta = up @ down * alpha / rank, trained in bypass (x -> down -> up, added to the base output).

Conv layers: ``down`` is a conv with the base kernel/stride/padding and ``up`` a 1x1 conv, which is the
layout kohya and the host load for LoCon (4-D tensors).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...lora.algorithms import LoRALayout
from ..registry import register_algorithm
from .base import AdapterModule, kaiming_uniform_
from .fused import ConvLoRAAdd, LinearLoRAAdd, fusable, unviewed


@register_algorithm("lora")
class LoRAModule(AdapterModule):
    layout = LoRALayout

    def __init__(self, name, base, rank, alpha, generator: torch.Generator | None = None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        if self.is_conv:
            kh, kw_ = self.kernel_size
            down = torch.empty(rank, self.in_dim // self.groups, kh, kw_)
            up = torch.zeros(self.out_dim, rank, 1, 1)
        else:
            down = torch.empty(rank, self.in_dim)
            up = torch.zeros(self.out_dim, rank)
        # kohya's init: kaiming-uniform down, zero up, so training starts from the base model exactly.
        kaiming_uniform_(down, generator)
        self.lora_down = nn.Parameter(down)
        self.lora_up = nn.Parameter(up)

    def forward(self, x, base_out, base):
        if self.skips_this_step():
            return base_out
        if not self._fused_call(x, base_out):
            return self._add_delta(x, base_out, base)
        scale = self.scale * self.multiplier
        if self.is_conv:
            return ConvLoRAAdd.apply(base_out, x, self.lora_down, self.lora_up, scale,
                                     (self.stride, self.padding, self.dilation, self.groups))
        target = unviewed(base_out)   # no CopySlices node (fused.unviewed)
        return LinearLoRAAdd.apply(target, x, self.lora_down, self.lora_up, scale).view(base_out.shape)

    def _fused_call(self, x, base_out) -> bool:
        """The branch as one in-place node (modules/fused.py): plain LoRA (no dropouts drawn this step, no
        subclass's own delta) on an output it can add into, a conv with numeric padding."""
        return (type(self).delta_forward is LoRAModule.delta_forward
                and not (self.training and (self.dropout or self.rank_dropout))
                and not (self.is_conv and isinstance(self.padding, str)) and fusable(x, base_out))

    def delta_forward(self, x, base):
        x = self._apply_dropout(x)
        down = self.lora_down.to(x.dtype)
        up = self.lora_up.to(x.dtype)
        if self.is_conv:
            h = F.conv2d(x, down, None, self.stride, self.padding, self.dilation, self.groups)
            return F.conv2d(self._rank_mask(h) * self.scale, up)
        # The scale goes on the rank-wide h, not on the output-wide result: no output-sized copy.
        return F.linear(self._rank_mask(F.linear(x, down)) * self.scale, up)

    def export(self):
        return {"lora_down.weight": self.lora_down.detach().clone(),
                "lora_up.weight": self.lora_up.detach().clone(),
                "alpha": self.alpha_tensor()}

    def load_exported(self, tensors):
        with torch.no_grad():
            self.lora_down.copy_(tensors["lora_down.weight"].reshape(self.lora_down.shape))
            self.lora_up.copy_(tensors["lora_up.weight"].reshape(self.lora_up.shape))
            self.alpha = float(tensors["alpha"])
