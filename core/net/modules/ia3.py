"""(IA)^3: the layer's output channels are rescaled, y = W x * (1 + w) (+ bias), so delta = W * w per row.

Saved as ``diff`` (that delta as a full matrix). ComfyUI has no IA3 loader: LyCORIS's compact form
(``weight`` + ``on_input``, one vector per layer) would be left unloaded there, with a "lora key not
loaded" warning and no effect. ``diff`` applies exactly in ComfyUI, and A1111/Forge and LyCORIS's tools read
it too. The price is size: a full matrix per layer instead of a vector (about a full fine-tune of the
targeted layers; save in fp16 to halve it), and an A1111 user sees a "full" network, not IA3. kohya's
sd-scripts has no IA3 at all. The trained vector is recovered from the file exactly (least squares per row
against the same base weight), so resume works from the saved file.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...lora.algorithms import FullLayout
from ..registry import register_algorithm
from .weighted import DeltaWeightModule, require


@register_algorithm("ia3")
class IA3Module(DeltaWeightModule):
    layout = FullLayout    # saved as its delta (diff): the host has no IA3 loader

    def __init__(self, name, base, rank, alpha, generator=None, **kw):
        super().__init__(name, base, rank, alpha, **kw)
        self.scale_vector = nn.Parameter(torch.zeros(self.out_dim))

    @property
    def scale(self) -> float:
        return 1.0

    def forward(self, x, base_out, base):
        # Bypass on the output: W x is the base output minus its bias, so nothing is recomputed.
        if self.skips_this_step():
            return base_out
        shape = (1, -1, 1, 1) if self.is_conv else (-1,)
        if self.training and self.dropout:
            # Neuron dropout acts on the adapter's input, so W x is formed again from the dropped input
            # (one extra pass of the base layer, only while this dropout is on; LyCORIS's IA3 ignores it).
            w = base.weight.detach().to(x.dtype)
            xd = self._apply_dropout(x)
            wx = (F.conv2d(xd, w, None, self.stride, self.padding, self.dilation, self.groups) if self.is_conv
                  else F.linear(xd, w)).to(base_out.dtype)
        else:
            bias = base.bias if getattr(base, "bias", None) is not None else None
            wx = base_out - (bias.view(shape).to(base_out.dtype) if bias is not None else 0)
        vec = self.scale_vector
        if self.training and self.rank_dropout:
            vec = self._drop_rows(vec)
        # Into the base output in place (its layer's backward does not read it): beside it only W x is
        # kept, which the scale vector's gradient needs, not a product and a sum as well.
        return base_out.addcmul_(wx, (vec * self.multiplier).view(shape).to(base_out.dtype))

    def delta_weight(self):
        w = self.base_weight.detach().float()
        return w * self.scale_vector.view(-1, *([1] * (w.dim() - 1)))

    def export(self):
        return {"diff": self.delta_weight().detach().clone()}

    def load_exported(self, tensors):
        require(tensors, FullLayout.keys, self.name, "IA3")
        with torch.no_grad():
            w = self.base_weight.detach().float().reshape(self.out_dim, -1)
            d = tensors["diff"].float().reshape(self.out_dim, -1)
            self.scale_vector.copy_((d * w).sum(1) / (w * w).sum(1).clamp_min(1e-12))
